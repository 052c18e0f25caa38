/* libFuzzer target for the XML stream parser (server/xml/xmlstream.c) and the
 * element trees it builds (server/xml/stanza.c). The first two input bytes pick
 * where the rest is split into up to three xs_feed calls, so buffer
 * boundaries inside tags, references and UTF-8 sequences get exercised.
 * Every element is serialised, reparsed and copied; the element callback
 * stops and resets now and then to exercise the deferred reset. The input
 * is parsed a second time with xs_shrink tried after every feed: what the
 * callbacks see must not change (issue 18: idle streams are shrunk). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xml/xmlstream.h"

typedef struct fuzz_state {
    xs_parser *p;
    unsigned n;
    uint64_t seen; /* FNV-1a of every callback and its data */
} fuzz_state;

static void note(fuzz_state *f, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        f->seen = (f->seen ^ (unsigned char)s[i]) * 1099511628211u;
    f->seen = (f->seen ^ 0xff) * 1099511628211u;
}

static int on_open(void *ud, const xs_header *h)
{
    note(ud, "open", 4);
    return 0;
}

static int on_element(void *ud, xmppd_stanza *st)
{
    fuzz_state *f = ud;
    size_t len;
    char *s = xmppd_stanza_to_string(st, XMPPD_NS_SERVER, &len);
    note(f, s ? s : "(oom)", s ? len : 5);
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

static void on_close(void *ud) { note(ud, "close", 5); }
static void on_error(void *ud, const char *cond) { note(ud, cond, strlen(cond)); }

/* The three feeds; with shrink, xs_shrink is tried after each. */
static uint64_t parse(const char *in, size_t a, size_t b, size_t body, bool shrink)
{
    static const xs_callbacks cb = {on_open, on_element, on_close, on_error};
    fuzz_state f = { .seen = 14695981039346656037u };
    f.p = xs_new(&cb, &f, 4096, 32);
    if (!f.p)
        return 0;
    const size_t cut[4] = { 0, a, b, body };
    for (int i = 0; i < 3; i++) {
        xs_feed(f.p, in + cut[i], cut[i + 1] - cut[i]);
        if (shrink)
            xs_shrink(f.p);
    }
    xs_free(f.p);
    return f.seen;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
    if (parse(in, a, b, body, false) != parse(in, a, b, body, true))
        abort(); /* a shrink changed what the stream means */
    /* The one-element parser on the same bytes. */
    xmppd_stanza_unref(xmppd_stanza_from_string(in, body, NULL));
    return 0;
}
