/* HMAC-SHA256 as lower-case hex: the cluster's frame signatures and the
 * secrets derived from cluster.secret. Kernel only (not in the SDK). */
#ifndef XMPPD_UTIL_HMAC_H
#define XMPPD_UTIL_HMAC_H

#include <stdbool.h>
#include <stddef.h>

#define HMAC_SHA256_HEX 64

/* hex(HMAC-SHA256(key, data)) into out (HMAC_SHA256_HEX + 1 bytes, NUL
 * terminated); false on an OpenSSL failure. */
bool hmac_sha256_hex(const char *key, const void *data, size_t len,
                     char out[HMAC_SHA256_HEX + 1]);

#endif
