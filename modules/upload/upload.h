/* mod_upload: XEP-0363 HTTP File Upload, shared declarations.
 *
 * upload.c         options, the service domain (disco, slot requests), signing
 * upload_http.c    the HTTP side: PUT into a file, GET/HEAD out of it
 * upload_files.c   metadata in storage, quota, expiry, account deletion, disk work
 *
 * Layout: files live in DIR/HOSTDIR/USERDIR/RANDOM, where DIR is the
 * `path` option (default DATA_DIR/upload), USERDIR a hash of the
 * uploader's localpart (so an account's files go with one directory) and
 * the slot id in URLs is USERDIR-RANDOM. Metadata: store "upload", under
 * the uploader (key: slot id) for quota, and under "" (same key) for
 * downloads and expiry. */
#ifndef MOD_UPLOAD_H
#define MOD_UPLOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <xmppd/xmppd.h>

#define UPLOAD_NS "urn:xmpp:http:upload:0"
#define UPLOAD_USERDIR_LEN 16 /* hex characters of the user's directory */
#define UPLOAD_RANDOM_LEN 24  /* hex characters: 96 random bits */
#define UPLOAD_SLOT_LEN (UPLOAD_USERDIR_LEN + 1 + UPLOAD_RANDOM_LEN)
#define UPLOAD_MAX_NAME 255

typedef struct upload_conf {
    const char *domain;           /* NULL: upload.HOST */
    const char *dir;              /* NULL: DATA_DIR/upload */
    const char *url_path;         /* "/upload" */
    long long max_file_size;      /* bytes */
    long long quota;              /* bytes per account; 0: none */
    long long expire_after;       /* ms; 0: never */
    long long slot_timeout;       /* ms a PUT URL stays valid */
    long long cleanup_interval;   /* ms between expiry sweeps */
    const char *const *allow;     /* domains or bare JIDs; NULL: the host's accounts */
    const char *const *cors_origins;
    const char *secret;           /* slot signing key; NULL: random per start */
} upload_conf;

typedef struct upload_mod {
    xmppd_module *m;
    const upload_conf *conf;
    xmppd_host *host;
    char *domain;                 /* the service's domain (nameprepped) */
    char *dir;                    /* DIR/HOSTDIR, created at load */
    xmppd_store *store;
    unsigned char key[32];        /* HMAC key for slots */
    size_t key_len;
    xmppd_timer *sweep;
    int in_flight;                /* uploads being written */
} upload_mod;

/* upload.c */
/* The hex HMAC-SHA256 over a slot's facts (the PUT URL's proof), into out
 * (65 bytes). */
void upload_sign(const upload_mod *um, const char *slot, const char *name, long long size,
                 const char *ctype, const char *user, long long expires, char out[65]);
/* The user's directory name (hash of the localpart), into out (17 bytes). */
void upload_userdir(const upload_mod *um, const char *user, char out[UPLOAD_USERDIR_LEN + 1]);
/* Would a browser run this content type (scripts, markup)? Such files are
 * served as attachments. */
bool upload_type_active(const char *ctype);

/* upload_http.c */
int upload_http_start(upload_mod *um);

/* upload_files.c */
/* Quota: calls back with the bytes the user stores now (-1: storage error,
 * -2: the module unloads: free ud). */
typedef void (*upload_usage_cb)(long long used, void *ud);
void upload_usage(upload_mod *um, const char *user, upload_usage_cb cb, void *ud);
/* A finished upload's metadata, written under the user and under "";
 * cb(status, ud) once both are durable. */
void upload_record(upload_mod *um, const char *user, const char *slot, const char *name,
                   const char *ctype, long long size, xmppd_store_done_cb cb, void *ud);
/* Metadata of a slot for a download: cb(status, value, ud). */
void upload_lookup(upload_mod *um, const char *slot, xmppd_kv_get_cb cb, void *ud);
/* Expiry sweeps (timer) and account deletion (hook). */
int upload_files_start(upload_mod *um);
/* DIR/HOSTDIR/USERDIR/RANDOM for slot into out; false when the slot id is
 * malformed. */
bool upload_file_path(const upload_mod *um, const char *slot, char *out, size_t len);
/* Makes dir and its parents (0700). 0 or -1. */
int upload_mkdirs(const char *dir);

#endif
