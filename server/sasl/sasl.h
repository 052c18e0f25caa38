/* SASL mechanisms, server side, as pure state machines (no I/O, no
 * accounts): the c2s stream asks the host's auth provider for credentials
 * between steps. Fuzzable. RFC 5802 (SCRAM), RFC 7677 (SCRAM-SHA-256),
 * RFC 5929/9266 channel binding, RFC 4616 (PLAIN). */
#ifndef XMPPD_SASL_H
#define XMPPD_SASL_H

#include <stdbool.h>
#include <stddef.h>
#include "xmppd/crypto.h"

/* Failure conditions, names of RFC 6120 §6.5 elements. */
#define SASL_MALFORMED "malformed-request"
#define SASL_INCORRECT_ENCODING "incorrect-encoding"
#define SASL_NOT_AUTHORIZED "not-authorized"
#define SASL_INVALID_AUTHZID "invalid-authzid"
#define SASL_INVALID_MECHANISM "invalid-mechanism"
#define SASL_ENCRYPTION_REQUIRED "encryption-required"
#define SASL_ABORTED "aborted"
#define SASL_ACCOUNT_DISABLED "account-disabled"
#define SASL_TEMPORARY_FAILURE "temporary-auth-failure"

/* ---- PLAIN ---- */
/* Splits authzid NUL authcid NUL passwd. Each out string is malloc'd (authzid
 * NULL when empty); 0, or -1 (malformed: wrong NUL count, empty authcid or
 * password, a part over 1023 bytes, embedded NUL). */
int sasl_plain_parse(const unsigned char *msg, size_t len,
                     char **authzid_r, char **authcid_r, char **passwd_r);

/* ---- SCRAM ---- */
typedef struct scram_server scram_server;

/* Channel binding the TLS layer offers for this connection. */
typedef struct scram_cb {
    const char *type;           /* "tls-exporter" or "tls-server-end-point"; NULL: no TLS */
    const unsigned char *data;  /* channel binding data for that type */
    size_t len;
} scram_cb;

/* plus: the -PLUS variant was selected. advertised_plus: the server offered
 * -PLUS mechanisms on this stream (downgrade detection, RFC 5802 §6: a 'y'
 * flag while we offered PLUS fails). cbs: the channel binding types this
 * connection supports (n_cbs entries, may be 0). Copies what it keeps. */
scram_server *scram_server_new(enum xmppd_hash h, bool plus, bool advertised_plus,
                               const scram_cb *cbs, size_t n_cbs);
void scram_server_free(scram_server *s);

/* Step 1: client-first-message. On success *user_r is the username
 * (decoded from =2C/=3D, not prepared; borrowed from s), *authzid_r the
 * authzid or NULL. Returns 0, or -1 with *cond_r a failure condition. */
int scram_server_client_first(scram_server *s, const char *msg, size_t len,
                              const char **user_r, const char **authzid_r, const char **cond_r);
/* Step 2: server-first-message from the user's credentials. keys NULL:
 * unknown user; a stable fake salt is derived from fake_secret (HMAC of the
 * username) so the answer does not reveal whether the account exists, and
 * the exchange fails at step 3. Returns a malloc'd message (*len_r), NULL on OOM. */
char *scram_server_first(scram_server *s, const xmppd_scram_keys *keys,
                         const unsigned char *fake_secret, size_t fake_len, size_t *len_r);
/* Step 3: client-final-message: checks channel binding, nonce and proof.
 * Returns a malloc'd server-final-message "v=..." (*len_r) on success, or
 * NULL with *cond_r set. */
char *scram_server_client_final(scram_server *s, const char *msg, size_t len,
                                size_t *len_r, const char **cond_r);

/* Tests only (RFC test vectors): use server_nonce (printable, no ',';
 * copied) as the server part of the nonce instead of 24 random bytes.
 * Call before scram_server_first(). 0, or -1 when not acceptable. */
int scram_server_set_nonce_for_test(scram_server *s, const char *server_nonce);

#endif
