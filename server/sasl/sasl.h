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
#define SASL_CREDENTIALS_EXPIRED "credentials-expired"

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

/* XEP-0474 (SSDP): adds the optional attribute h=ssdp_b64 (from
 * scram_ssdp_hash, copied) to the server-first-message, so a client can
 * see whether the mechanism and channel-binding lists it received were
 * changed on the way. Call before scram_server_first(). 0, or -1. */
int scram_server_set_ssdp(scram_server *s, const char *ssdp_b64);
/* XEP-0474 §5.1: base64 of H(S), H the SCRAM mechanism's hash, S the
 * offered mechanisms sorted by octets and joined by 0x1E, then, when
 * channel-binding types were advertised (XEP-0440; cbs not NULL, n_cbs
 * may be 0), 0x1F and those types sorted and joined by 0x1E. Only the
 * mechanisms of the SASL profile in use count (RFC 6120 or XEP-0388).
 * malloc'd; NULL on OOM. */
char *scram_ssdp_hash(enum xmppd_hash h, const char *const *mechs, size_t n_mechs,
                      const char *const *cbs, size_t n_cbs);

/* ---- HT (draft-schmaus-kitten-sasl-ht): the FAST mechanisms (XEP-0484) ---- */
enum ht_cb { HT_NONE = 0, HT_UNIQ, HT_ENDP, HT_EXPR };
#define HT_COUNT 4
#define HT_HASH_LEN 32 /* HMAC-SHA-256 */
#define HT_CB_MAX 64   /* bytes of channel binding data, at most */
/* "HT-SHA-256-NONE", ... (static), NULL for an unknown value. */
const char *ht_mech_name(enum ht_cb cb);
/* "tls-unique" (UNIQ), "tls-server-end-point" (ENDP), "tls-exporter"
 * (EXPR); NULL for NONE. */
const char *ht_cb_type(enum ht_cb cb);
/* *cb_r for an HT mechanism name: 0, or -1 (not one of the four). */
int ht_mech_parse(const char *name, enum ht_cb *cb_r);
/* Splits the initial response authcid NUL initiator-hashed-token:
 * *authcid_r malloc'd (1 to 1023 bytes, not prepared), hash copied. 0, or
 * -1 when malformed (no NUL, empty authcid, a hash not 32 bytes long). */
int ht_parse_initial(const unsigned char *msg, size_t len, char **authcid_r,
                     unsigned char hash[HT_HASH_LEN]);
/* HMAC-SHA-256(token, "Initiator" || cb) (initiator) or "Responder" || cb:
 * the client's proof and the server's answer. cb_len at most HT_CB_MAX.
 * 0 or -1. */
int ht_hash(const char *token, size_t token_len, bool initiator, const unsigned char *cb,
            size_t cb_len, unsigned char out[HT_HASH_LEN]);

/* Tests only (RFC test vectors): use server_nonce (printable, no ',';
 * copied) as the server part of the nonce instead of 24 random bytes.
 * Call before scram_server_first(). 0, or -1 when not acceptable. */
int scram_server_set_nonce_for_test(scram_server *s, const char *server_nonce);

#endif
