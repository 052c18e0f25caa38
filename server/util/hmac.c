/* HMAC-SHA256 in hex (hmac.h). */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "util/hmac.h"
#include "xmppd/crypto.h"

bool hmac_sha256_hex(const char *key, const void *data, size_t len,
                     char out[HMAC_SHA256_HEX + 1])
{
    unsigned char mac[32];
    unsigned int ml = 0;
    if (!HMAC(EVP_sha256(), key, (int)strlen(key), data, len, mac, &ml) || ml != sizeof(mac))
        return false;
    for (size_t i = 0; i < sizeof(mac); i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    xmppd_wipe(mac, sizeof(mac));
    return true;
}
