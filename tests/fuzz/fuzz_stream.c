/* libFuzzer target for the XML stream parser (server/xml/xmlstream.c) and the
 * element trees it builds (server/xml/stanza.c). The first two input bytes pick
 * where the rest is split into up to three xs_feed calls, so buffer
 * boundaries inside tags, references and UTF-8 sequences get exercised.
 * Every element is serialised, reparsed and copied; the element callback
 * stops and resets now and then to exercise the deferred reset. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xml/xmlstream.h"

typedef struct fuzz_state {
    xs_parser *p;
    unsigned n;
} fuzz_state;

static int on_open(void *ud, const xs_header *h) { return 0; }

static int on_element(void *ud, xmppd_stanza *st)
{
    fuzz_state *f = ud;
    size_t len;
    char *s = xmppd_stanza_to_string(st, XMPPD_NS_SERVER, &len);
    if (s) {
        /* What we write must parse again. */
        xmppd_stanza *back = xmppd_stanza_from_string(s, len, XMPPD_NS_SERVER);
        if (!back)
            abort();
        xmppd_stanza_unref(back);
        free(s);
    }
    xmppd_stanza *c = xmppd_stanza_copy(st);
    xmppd_stanza_unref(xmppd_stanza_error_reply(c, NULL, "bad-request", "x"));
    xmppd_stanza_unref(c);
    xmppd_stanza_unref(st);
    if (++f->n % 7 == 0) {
        xs_reset(f->p);
        return 1;
    }
    return 0;
}

static void on_close(void *ud) {}
static void on_error(void *ud, const char *cond) {}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const xs_callbacks cb = {on_open, on_element, on_close, on_error};
    if (size < 2)
        return 0;
    size_t body = size - 2;
    size_t a = body ? data[0] % (body + 1) : 0;
    size_t b = body ? data[1] % (body + 1) : 0;
    if (a > b) {
        size_t t = a;
        a = b;
        b = t;
    }
    const char *in = (const char *)data + 2;
    fuzz_state f = {0};
    f.p = xs_new(&cb, &f, 4096, 32);
    if (!f.p)
        return 0;
    xs_feed(f.p, in, a);
    xs_feed(f.p, in + a, b - a);
    xs_feed(f.p, in + b, body - b);
    xs_free(f.p);
    /* The one-element parser on the same bytes. */
    xmppd_stanza_unref(xmppd_stanza_from_string(in, body, NULL));
    return 0;
}
