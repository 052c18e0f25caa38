/* Cryptographic helpers (api/xmppd/crypto.h) on OpenSSL 3. SCRAM key
 * derivation (xmppd_scram_derive) lives with the SCRAM code in scram.c. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "xmppd/crypto.h"
#include "xmppd/module.h" /* XMPPD_EXPORT */

XMPPD_EXPORT size_t xmppd_hash_len(enum xmppd_hash h)
{
    switch (h) {
    case XMPPD_HASH_SHA1:
        return 20;
    case XMPPD_HASH_SHA256:
        return 32;
    case XMPPD_HASH_SHA512:
        return 64;
    }
    return 0;
}

XMPPD_EXPORT const char *xmppd_hash_scram_name(enum xmppd_hash h)
{
    switch (h) {
    case XMPPD_HASH_SHA1:
        return "SCRAM-SHA-1";
    case XMPPD_HASH_SHA256:
        return "SCRAM-SHA-256";
    case XMPPD_HASH_SHA512:
        return "SCRAM-SHA-512";
    }
    return NULL;
}

XMPPD_EXPORT int xmppd_digest(enum xmppd_hash h, const void *data, size_t n, unsigned char *out)
{
    const EVP_MD *md = h == XMPPD_HASH_SHA1     ? EVP_sha1()
                       : h == XMPPD_HASH_SHA256 ? EVP_sha256()
                       : h == XMPPD_HASH_SHA512 ? EVP_sha512()
                                                : NULL;
    return md && EVP_Digest(data, n, out, NULL, md, NULL) == 1 ? 0 : -1;
}

XMPPD_EXPORT int xmppd_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(p, chunk) != 1)
            return -1;
        p += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

XMPPD_EXPORT bool xmppd_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

XMPPD_EXPORT void xmppd_wipe(void *p, size_t n)
{
    if (p != NULL)
        OPENSSL_cleanse(p, n);
}

/* ---- base64 --------------------------------------------------------- */

XMPPD_EXPORT char *xmppd_base64_encode(const void *in, size_t n)
{
    /* Whole 3-byte groups per EVP_EncodeBlock call keep its int length
     * argument in range and the output free of inner padding. */
    enum { CHUNK = 3 * (1 << 20) };
    if (n / 3 >= (SIZE_MAX - 1) / 4)
        return NULL;
    size_t out_len = (n + 2) / 3 * 4;
    char *out = malloc(out_len + 1);
    if (out == NULL)
        return NULL;
    const unsigned char *src = in;
    size_t done = 0;
    char *dst = out;
    while (done < n) {
        size_t chunk = n - done > CHUNK ? CHUNK : n - done;
        dst += EVP_EncodeBlock((unsigned char *)dst, src + done, (int)chunk);
        done += chunk;
    }
    *dst = '\0';
    return out;
}

/* Value of a base64 alphabet character, or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes one 4-character quantum into out; returns the number of bytes
 * (1..3) or -1. Padding is allowed only when last is true, and the bits a
 * padded quantum drops must be zero (canonical encoding). */
static int b64_quantum(const unsigned char *q, bool last, unsigned char *out)
{
    int pad = 0;
    if (last && q[3] == '=')
        pad = q[2] == '=' ? 2 : 1;
    int v[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < 4 - pad; i++)
        if ((v[i] = b64_value(q[i])) < 0)
            return -1;
    uint32_t bits = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
    if ((pad == 1 && (bits & 0xff) != 0) || (pad == 2 && (bits & 0xffff) != 0))
        return -1;
    out[0] = (unsigned char)(bits >> 16);
    out[1] = (unsigned char)(bits >> 8);
    out[2] = (unsigned char)bits;
    return 3 - pad;
}

XMPPD_EXPORT int xmppd_base64_decode(const char *in, size_t n, unsigned char **out_r,
                                     size_t *outlen_r)
{
    *out_r = NULL;
    *outlen_r = 0;
    if (n % 4 != 0 || (n > 0 && in == NULL))
        return -1;
    unsigned char *out = malloc(n / 4 * 3 + 1);
    if (out == NULL)
        return -1;
    size_t len = 0;
    for (size_t i = 0; i < n; i += 4) {
        int got = b64_quantum((const unsigned char *)in + i, i + 4 == n, out + len);
        if (got < 0) {
            xmppd_wipe(out, n / 4 * 3 + 1); /* may hold part of a secret */
            free(out);
            return -1;
        }
        len += (size_t)got;
    }
    out[len] = '\0';
    *out_r = out;
    *outlen_r = len;
    return 0;
}
