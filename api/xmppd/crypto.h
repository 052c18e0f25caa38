/* Cryptographic helpers shared by the kernel and modules (OpenSSL inside). */
#ifndef XMPPD_CRYPTO_H
#define XMPPD_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

enum xmppd_hash { XMPPD_HASH_SHA1 = 0, XMPPD_HASH_SHA256 = 1, XMPPD_HASH_SHA512 = 2 };
#define XMPPD_HASH_COUNT 3
#define XMPPD_HASH_MAX_LEN 64

/* Every function here is pure and thread-safe: usable from xmppd_offload
 * work functions. */

/* Digest length in bytes: 20, 32 or 64. */
size_t xmppd_hash_len(enum xmppd_hash h);
/* "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512" */
const char *xmppd_hash_scram_name(enum xmppd_hash h);

/* The digest of n bytes (ABI 2.5) into out (xmppd_hash_len(h) bytes):
 * tokens kept hashed at rest. 0 or -1. */
int xmppd_digest(enum xmppd_hash h, const void *data, size_t n, unsigned char *out);
/* Cryptographically strong random bytes. 0 or -1. */
int xmppd_random(void *buf, size_t n);
/* Standard base64 with padding; malloc'd, NUL-terminated; NULL on OOM. */
char *xmppd_base64_encode(const void *in, size_t n);
/* Strict decoding (padding required, no whitespace). *out_r is malloc'd and
 * NUL-terminated for convenience. 0, or -1 when the input is not base64. */
int xmppd_base64_decode(const char *in, size_t n, unsigned char **out_r, size_t *outlen_r);
/* Constant-time comparison of two n-byte buffers. */
bool xmppd_ct_equal(const void *a, const void *b, size_t n);
/* Overwrite a secret before freeing it (not optimised away). */
void xmppd_wipe(void *p, size_t n);

/* SCRAM credentials (RFC 5802 §3) for one hash. */
typedef struct xmppd_scram_keys {
    enum xmppd_hash hash;
    unsigned iterations;
    size_t salt_len;
    unsigned char salt[64];
    unsigned char stored_key[XMPPD_HASH_MAX_LEN];
    unsigned char server_key[XMPPD_HASH_MAX_LEN];
} xmppd_scram_keys;

/* SaltedPassword = PBKDF2(SASLprep(password), salt, iterations); fills *out
 * with StoredKey and ServerKey. CPU-heavy: call from a worker (loop.h).
 * 0, or -1 when the password fails SASLprep or salt_len > 64. */
int xmppd_scram_derive(enum xmppd_hash h, const char *password,
                       const unsigned char *salt, size_t salt_len,
                       unsigned iterations, xmppd_scram_keys *out);

#endif
