/* The Hashed Token mechanisms HT-SHA-256-{NONE,UNIQ,ENDP,EXPR}
 * (draft-schmaus-kitten-sasl-ht), the FAST mechanisms of XEP-0484, as pure
 * functions: the names, the initial response, and the two hashes.
 *
 *   initial response  = authcid NUL initiator-hashed-token
 *   initiator hash    = HMAC-SHA-256(token, "Initiator" || cb-data)
 *   responder hash    = HMAC-SHA-256(token, "Responder" || cb-data)
 *
 * cb-data is empty for NONE, else the channel binding of the TLS
 * connection: tls-unique (UNIQ, RFC 5929), tls-server-end-point (ENDP,
 * RFC 5929), tls-exporter (EXPR, RFC 9266). The token is the string the
 * server issued, as bytes. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sasl/sasl.h"

#define AUTHCID_MAX 1023 /* bytes, as a JID localpart */

static const struct {
    const char *name;
    const char *cb_type;
} g_ht[HT_COUNT] = {
    [HT_NONE] = { "HT-SHA-256-NONE", NULL },
    [HT_UNIQ] = { "HT-SHA-256-UNIQ", "tls-unique" },
    [HT_ENDP] = { "HT-SHA-256-ENDP", "tls-server-end-point" },
    [HT_EXPR] = { "HT-SHA-256-EXPR", "tls-exporter" },
};

const char *ht_mech_name(enum ht_cb cb)
{
    return (unsigned)cb < HT_COUNT ? g_ht[cb].name : NULL;
}

const char *ht_cb_type(enum ht_cb cb)
{
    return (unsigned)cb < HT_COUNT ? g_ht[cb].cb_type : NULL;
}

int ht_mech_parse(const char *name, enum ht_cb *cb_r)
{
    for (int i = 0; name != NULL && i < HT_COUNT; i++)
        if (strcmp(name, g_ht[i].name) == 0) {
            *cb_r = (enum ht_cb)i;
            return 0;
        }
    return -1;
}

int ht_parse_initial(const unsigned char *msg, size_t len, char **authcid_r,
                     unsigned char hash[HT_HASH_LEN])
{
    *authcid_r = NULL;
    const unsigned char *nul = msg != NULL ? memchr(msg, '\0', len) : NULL;
    if (nul == NULL)
        return -1;
    size_t al = (size_t)(nul - msg), hl = len - al - 1;
    /* The hash is binary and may hold NULs; its length is fixed. */
    if (al == 0 || al > AUTHCID_MAX || hl != HT_HASH_LEN)
        return -1;
    char *a = malloc(al + 1);
    if (a == NULL)
        return -1;
    memcpy(a, msg, al);
    a[al] = '\0';
    memcpy(hash, nul + 1, HT_HASH_LEN);
    *authcid_r = a;
    return 0;
}

int ht_hash(const char *token, size_t token_len, bool initiator, const unsigned char *cb,
            size_t cb_len, unsigned char out[HT_HASH_LEN])
{
    unsigned char msg[9 + HT_CB_MAX];
    unsigned int n = 0;
    if (token == NULL || token_len == 0 || token_len > INT_MAX || cb_len > HT_CB_MAX
        || (cb_len > 0 && cb == NULL))
        return -1;
    memcpy(msg, initiator ? "Initiator" : "Responder", 9);
    if (cb_len > 0)
        memcpy(msg + 9, cb, cb_len);
    return HMAC(EVP_sha256(), token, (int)token_len, msg, 9 + cb_len, out, &n) != NULL
                   && n == HT_HASH_LEN
               ? 0
               : -1;
}
