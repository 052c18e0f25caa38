/* libFuzzer target: SASL message parsers (SCRAM client-first and
 * client-final against fixed credentials, PLAIN) and strict base64.
 *
 * Input: one control byte, then the message(s).
 *   control & 0x03: 3 = PLAIN + base64 decode of the rest; else the hash
 *   control & 0x04: -PLUS mechanism         & 0x08: PLUS advertised
 *   control & 0x10: unknown user (keys NULL) & 0x20: random server nonce
 * For SCRAM the rest is client-first '\n' client-final; with a fixed
 * server nonce ("SNONCE") the fuzzer can reach the proof check. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sasl/sasl.h"
#include "xmppd/crypto.h"

static const unsigned char CB_EXPORTER[32] = "tls-exporter data for fuzzing..";
static const unsigned char FAKE_SECRET[16] = "fuzz fake secret";
static xmppd_scram_keys keys[XMPPD_HASH_COUNT];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const unsigned char salt[16] = "fuzz salt 123456";
    for (int h = 0; h < XMPPD_HASH_COUNT; h++)
        if (xmppd_scram_derive((enum xmppd_hash)h, "pencil", salt, sizeof(salt), 1, &keys[h]) != 0)
            abort();
    return 0;
}

static void fuzz_plain(const uint8_t *data, size_t size)
{
    char *z, *c, *p;
    if (sasl_plain_parse(data, size, &z, &c, &p) == 0) {
        free(z);
        free(c);
        xmppd_wipe(p, strlen(p));
        free(p);
    }
    unsigned char *out;
    size_t n;
    if (xmppd_base64_decode((const char *)data, size, &out, &n) == 0) {
        char *back = xmppd_base64_encode(out, n);
        /* strict decoding means canonical input: it must round-trip */
        if (back == NULL || strlen(back) != size || memcmp(back, data, size) != 0)
            __builtin_trap();
        free(back);
        free(out);
    }
}

static void fuzz_scram(uint8_t ctl, const uint8_t *data, size_t size)
{
    const scram_cb cbs[1] = { { "tls-exporter", CB_EXPORTER, sizeof(CB_EXPORTER) } };
    enum xmppd_hash h = (enum xmppd_hash)(ctl & 0x03);
    scram_server *s = scram_server_new(h, ctl & 0x04, ctl & 0x08, cbs, 1);
    if (s == NULL)
        return;
    const uint8_t *nl = memchr(data, '\n', size);
    size_t first_len = nl ? (size_t)(nl - data) : size;
    const char *user, *authzid, *cond = NULL;
    size_t len;
    if (!(ctl & 0x20))
        scram_server_set_nonce_for_test(s, "SNONCE");
    if (scram_server_client_first(s, (const char *)data, first_len, &user, &authzid, &cond) != 0) {
        if (cond == NULL)
            __builtin_trap();
        goto out;
    }
    char *sf = scram_server_first(s, (ctl & 0x10) ? NULL : &keys[h], FAKE_SECRET,
                                  sizeof(FAKE_SECRET), &len);
    if (sf == NULL)
        goto out;
    free(sf);
    if (nl != NULL) {
        char *fin = scram_server_client_final(s, (const char *)nl + 1, size - first_len - 1, &len,
                                              &cond);
        if (fin == NULL && cond == NULL)
            __builtin_trap();
        free(fin);
    }
out:
    scram_server_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if ((data[0] & 0x03) == 3)
        fuzz_plain(data + 1, size - 1);
    else
        fuzz_scram(data[0], data + 1, size - 1);
    return 0;
}
