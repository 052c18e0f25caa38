/* libFuzzer target: what a SASL2 client sends before it is authenticated:
 * the <authenticate/> element (XEP-0388 with Bind2 and FAST children,
 * c2s/sasl2_req.c) over any element the stanza parser accepts, and the HT
 * initial response (XEP-0484, sasl/ht.c) over the raw bytes. Besides
 * memory safety, checks what the c2s layer relies on: a parsed request has
 * a mechanism, its strings are within their limits, and the HT user is
 * non-empty and NUL-free. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "c2s/sasl2_req.h"
#include "sasl/sasl.h"

static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

static void fuzz_request(const uint8_t *data, size_t size)
{
    xmppd_stanza *el = xmppd_stanza_from_string((const char *)data, size, XMPPD_NS_CLIENT);
    if (!el)
        return;
    sasl2_request *r;
    const char *cond = NULL, *text = NULL;
    if (sasl2_request_parse(el, &r, &cond, &text) == 0) {
        check(r->mechanism && *r->mechanism && strlen(r->mechanism) <= SASL2_MECH_MAX);
        check(!r->ua_id || (*r->ua_id && strlen(r->ua_id) <= SASL2_UA_ID_MAX));
        check(!r->software || strlen(r->software) <= SASL2_UA_TEXT_MAX);
        check(!r->has_initial || r->initial);
        check(!r->has_count || r->count <= (1ULL << 53));
        int left = 0;
        for (xmppd_stanza *c = xmppd_stanza_first(r->el); c; c = xmppd_stanza_next(c))
            left += !sasl2_request_known(c);
        check(left <= SASL2_INLINE_MAX);
        sasl2_request_free(r);
    } else {
        check(cond != NULL);
    }
    xmppd_stanza_unref(el);
}

static void fuzz_ht(const uint8_t *data, size_t size)
{
    char *user;
    unsigned char hash[HT_HASH_LEN];
    if (ht_parse_initial(data, size, &user, hash) == 0) {
        check(*user && strlen(user) + 1 + HT_HASH_LEN == size);
        free(user);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_request(data, size);
    fuzz_ht(data, size);
    return 0;
}
