/* Dialback keys (XEP-0185, as recommended by XEP-0220 §2.1.2):
 *
 *   key = HEX( HMAC-SHA256( HEX(SHA256(secret)), receiving " " originating " " id ) )
 *
 * The secret is s2s.dialback_secret, or random per process start, which is
 * enough: a key only has to be checked by the process that made it, while
 * its stream is being authenticated. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "s2s/s2s.h"

static char hmac_key[65]; /* HEX(SHA256(secret)): the secret itself is not kept */
static bool ready;

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int dialback_init(const char *secret)
{
    unsigned char rnd[32], digest[32];
    unsigned int dl = 0;
    const void *data = secret;
    size_t len = secret ? strlen(secret) : 0;
    if (!secret) {
        if (xmppd_random(rnd, sizeof(rnd)) < 0)
            return -1;
        data = rnd;
        len = sizeof(rnd);
    }
    int ok = EVP_Digest(data, len, digest, &dl, EVP_sha256(), NULL);
    xmppd_wipe(rnd, sizeof(rnd));
    if (ok != 1 || dl != 32)
        return -1;
    to_hex(digest, 32, hmac_key);
    xmppd_wipe(digest, sizeof(digest));
    ready = true;
    return 0;
}

void dialback_free(void)
{
    xmppd_wipe(hmac_key, sizeof(hmac_key));
    ready = false;
}

void dialback_key(const char *receiving, const char *originating, const char *id, char out[65])
{
    unsigned char mac[32];
    unsigned int ml = 0;
    out[0] = '\0';
    if (!ready)
        return;
    size_t rl = strlen(receiving), ol = strlen(originating), il = strlen(id);
    size_t n = rl + ol + il + 2;
    char buf[3 * 1024 + 64];
    if (n >= sizeof(buf))
        return; /* domains are at most 1023 bytes, ids are ours or bounded */
    memcpy(buf, receiving, rl);
    buf[rl] = ' ';
    memcpy(buf + rl + 1, originating, ol);
    buf[rl + 1 + ol] = ' ';
    memcpy(buf + rl + ol + 2, id, il);
    if (!HMAC(EVP_sha256(), hmac_key, 64, (const unsigned char *)buf, n, mac, &ml) || ml != 32)
        return;
    to_hex(mac, 32, out);
}

bool dialback_key_ok(const char *receiving, const char *originating, const char *id,
                     const char *key)
{
    char want[65];
    dialback_key(receiving, originating, id, want);
    return want[0] && strlen(key) == 64 && xmppd_ct_equal(want, key, 64);
}
