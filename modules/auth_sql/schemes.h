/* Password schemes of existing user databases (auth_sql).
 *
 * A stored password is read from its {SCHEME} prefix, else the row's scheme
 * column, else recognised by its shape ($2b$, $6$, $y$, pbkdf2_sha256$, ...),
 * else the configured default scheme. The functions marked "worker" are
 * CPU-heavy and call only pure code (libcrypt, OpenSSL, crypto.h): run
 * them through xmppd_offload. */
#ifndef AUTH_SQL_SCHEMES_H
#define AUTH_SQL_SCHEMES_H

#include <stdbool.h>
#include "xmppd/crypto.h"

enum as_kind {
    AS_UNKNOWN = 0,   /* not recognised: nothing can be verified */
    AS_PLAIN,         /* cleartext: only with allow_plaintext */
    AS_CRYPT,         /* crypt(3): bcrypt, sha256/512-crypt, yescrypt, scrypt, (weak: md5, des) */
    AS_DJANGO,        /* pbkdf2_sha256$iter$salt$b64 (Django), pbkdf2_sha1$... */
    AS_DOVECOT_PBKDF2,/* {PBKDF2}$1$salt$rounds$hex (Dovecot, HMAC-SHA1) */
    AS_SCRAM,         /* iter,salt,StoredKey,ServerKey (base64) */
    AS_UNSUPPORTED,   /* known but refused (unsalted digests, argon2, ...) */
};

typedef struct as_hash {
    enum as_kind kind;
    const char *name;     /* scheme name for logs (static) */
    bool weak;            /* md5-crypt, des-crypt: refused unless allow_weak */
    enum xmppd_hash hash; /* DJANGO, DOVECOT_PBKDF2 (SHA1), SCRAM */
    const char *value;    /* the stored text after any {SCHEME} prefix (borrowed) */
} as_hash;

/* Reads stored (borrowed into out->value). scheme: the row's scheme column
 * or NULL; def: the default scheme or NULL. */
void as_parse(const char *stored, const char *scheme, const char *def, as_hash *out);

/* Is name a scheme as_parse knows (for validating default_scheme)? */
bool as_scheme_known(const char *name);

/* worker: 1 the password matches, 0 it does not, -1 the stored value is
 * malformed. */
int as_verify(const as_hash *h, const char *password);

/* SCRAM keys for hash `want` that the stored value provides without the
 * password: a SCRAM entry of that hash, or a PBKDF2 value whose output is
 * SCRAM's SaltedPassword (Dovecot PBKDF2 and Django pbkdf2_sha1 for
 * SCRAM-SHA-1, Django pbkdf2_sha256 for SCRAM-SHA-256). 0, or -1. Cheap. */
int as_scram_from_hash(const as_hash *h, enum xmppd_hash want, xmppd_scram_keys *out);

/* "iter,salt,StoredKey,ServerKey" (base64; an optional {SCRAM-SHA-x}
 * prefix) for hash h. 0, or -1 when malformed. */
int as_scram_parse(const char *s, enum xmppd_hash h, xmppd_scram_keys *out);
/* The text form of k (malloc'd), NULL on OOM. */
char *as_scram_format(const xmppd_scram_keys *k);

/* Scheme names for new hashes (hash_scheme option). */
#define AS_NEW_SCHEMES { "bcrypt", "sha512-crypt", "yescrypt", "pbkdf2_sha256", NULL }
/* worker: a new hash of password in scheme (one of AS_NEW_SCHEMES), with a
 * fresh salt; malloc'd, NULL on failure. iterations: PBKDF2 only. */
char *as_hash_new(const char *scheme, const char *password, unsigned iterations);

#endif
