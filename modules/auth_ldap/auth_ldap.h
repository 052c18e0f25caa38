/* auth_ldap: the module's insides, shared by auth_ldap.c (options,
 * lookups, the auth provider), la_scram.c (SCRAM keys kept after PLAIN
 * logins) and la_api.c (the "directory" API for other modules). */
#ifndef AUTH_LDAP_H
#define AUTH_LDAP_H

#include <xmppd/xmppd.h>

#include "directory_api.h"
#include "ldap_pool.h"
#include "ldap_text.h"

typedef struct la_conf {
    const char *const *uris;
    bool starttls;
    const char *tls_ca_file;
    const char *bind_dn, *bind_password;
    const char *base;
    int scope; /* DIRECTORY_SCOPE_* (XMPPD_OPT_INDEX) */
    const char *filter;
    const char *user_attribute;
    const char *bind_dn_template;
    const char *disabled_attribute;
    const char *const *disabled_values;
    bool active_directory;
    long long search_connections, bind_connections;
    long long connect_timeout, timeout, reconnect_max;
    long long page_size, max_entries;
    bool scram;
    const char *password_changed_attribute;
    long long iterations;
} la_conf;

typedef struct la_req la_req;

/* One instance (per host). api first: the API pointer is the instance. */
typedef struct la_ctx {
    directory_api api;
    xmppd_module *m;
    const la_conf *conf;
    const char *host;
    lp_conf pc;
    lp_pool *pool;
    lt_template filter;    /* the user search */
    lt_template bind_name; /* direct bind: the DN (or name) template */
    bool by_dn;            /* direct bind with a DN template: lookups read that DN */
    xmppd_store *store;    /* SCRAM keys (scram on) */
    unsigned mechs;
    xmppd_auth_provider provider;
    const char *lookup_attrs[4]; /* what every lookup reads: disabled, AD flags, password marker */
    la_req *reqs;          /* live requests */
} la_ctx;

enum la_op { LA_PLAIN, LA_SCRAM, LA_EXISTS, LA_LIST, LA_API };

/* The SCRAM hashes kept and offered: those clients implement. Offering
 * SCRAM-SHA-512 (and -PLUS) too would make a client that falls back to
 * PLAIN fail five mechanisms first, the default auth_attempts. */
#define LA_SCRAM_HASH(h) ((h) == XMPPD_HASH_SHA1 || (h) == XMPPD_HASH_SHA256)

/* One request. It always waits on exactly one thing: the pool, storage,
 * a worker, a deferred answer; each comes back once or cancels it (the
 * pool with LP_CLOSED in unload()). */
struct la_req {
    la_req *next, *prev;    /* in ctx->reqs */
    la_ctx *ctx;
    enum la_op op;
    char *user;
    char *password;         /* secret: wiped */
    enum xmppd_hash hash;   /* SCRAM: asked */
    char *marker;           /* the entry's DN and password-change attribute */
    xmppd_scram_keys keys[XMPPD_HASH_COUNT]; /* wiped */
    lp_req *lp;             /* pending in the pool */
    int result;             /* a deferred answer */
    bool answered;          /* the asker has its answer (an upgrade may go on) */
    union {
        xmppd_auth_cb res;
        xmppd_auth_scram_cb scram;
        xmppd_auth_list_cb list;
        directory_cb api;
    } cb;
    void *ud;
    xmppd_call *call;       /* LA_API: the caller */
};

/* ---- auth_ldap.c ---- */
la_req *la_req_new(la_ctx *ctx, enum la_op op, const char *user, const char *password, void *ud);
void la_req_free(la_req *r);
/* Answers r's asker with result (keys: SCRAM, may be NULL) unless it was
 * answered already; r stays. */
void la_answer(la_req *r, int result, const xmppd_scram_keys *keys);
/* la_answer, then frees r. */
void la_finish(la_req *r, int result);
/* Reads user's entry (the user search, or the DN of a DN template) with
 * attrs; cb gets the pool's result. -1 on OOM. */
int la_lookup(la_req *r, const char *const *attrs, lp_cb cb);
/* The lookup's outcome: 0 found (*e_r), 1 no such account, -1 failed
 * (logged), -2 the pool closed (the module unloads). */
int la_lookup_result(la_req *r, const lp_result *res, const directory_entry **e_r);
/* The account an entry names (user_attribute), nodeprepped, malloc'd. */
char *la_entry_user(const la_ctx *ctx, const directory_entry *e);

/* ---- la_scram.c ---- */
/* The version of the entry's password that SCRAM keys are tied to: its DN
 * and password_changed_attribute, malloc'd; NULL without that attribute. */
char *la_marker(const la_ctx *ctx, const directory_entry *e);
/* get_scram once the directory says the account may log in: the stored
 * keys when they belong to r->marker. Answers and frees r. */
void la_scram_lookup(la_req *r);
/* After a successful PLAIN login (r answered): stores fresh SCRAM keys
 * unless those stored belong to r->marker already. Frees r. */
void la_scram_upgrade(la_req *r);
/* Forgets user's keys (the directory no longer knows the account). */
void la_scram_forget(la_ctx *ctx, const char *user);

/* ---- la_api.c ---- */
void la_api_init(la_ctx *ctx);

#endif
