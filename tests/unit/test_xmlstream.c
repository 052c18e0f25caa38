/* Stream parser: fed whole, byte by byte and in random splits; restricted
 * XML, limits, stop/reset, close. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "xml/xmlstream.h"

#define HEADER "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' " \
               "to='example.com' version='1.0' xml:lang='en'>"

/* What the callbacks saw, as text: "open(to,from,id,version,lang,ns)",
 * each element serialised, "close", "error(cond)". */
typedef struct rec {
    char log[16384];
    xs_parser *p;
    int stop_after;  /* element() returns nonzero for the n-th element (1-based) */
    bool reset_on_stop;
    int elements;
} rec;

static void logf_(rec *r, const char *s)
{
    size_t n = strlen(r->log);
    snprintf(r->log + n, sizeof(r->log) - n, "%s|", s);
}

#define OR(x) ((x) ? (x) : "-")
static int on_open(void *ud, const xs_header *h)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "open(%s,%s,%s,%s,%s,%s)", OR(h->to), OR(h->from), OR(h->id),
             OR(h->version), OR(h->lang), OR(h->default_ns));
    logf_(ud, buf);
    return 0;
}

static int on_element(void *ud, xmppd_stanza *st)
{
    rec *r = ud;
    char *s = xmppd_stanza_to_string(st, XMPPD_NS_CLIENT, NULL);
    logf_(r, s);
    free(s);
    xmppd_stanza_unref(st);
    if (++r->elements == r->stop_after) {
        if (r->reset_on_stop)
            xs_reset(r->p);
        return 1;
    }
    return 0;
}

static void on_close(void *ud) { logf_(ud, "close"); }

static void on_error(void *ud, const char *cond)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "error(%s)", cond);
    logf_(ud, buf);
}

static const xs_callbacks cbs = {on_open, on_element, on_close, on_error};

static xs_parser *new_parser(rec *r, size_t max_stanza, unsigned max_depth)
{
    memset(r, 0, sizeof(*r));
    r->p = xs_new(&cbs, r, max_stanza, max_depth);
    assert_non_null(r->p);
    return r->p;
}

/* Feeds text in pieces of sizes chosen by split(); returns the last rc. */
static int feed_split(xs_parser *p, const char *text, size_t (*split)(size_t left))
{
    size_t len = strlen(text), off = 0;
    int rc = 0;
    while (off < len) {
        size_t n = split ? split(len - off) : len - off;
        rc = xs_feed(p, text + off, n);
        off += n;
    }
    return rc;
}

static size_t one_byte(size_t left) { return 1; }

static unsigned rng_state;
static size_t random_split(size_t left)
{
    rng_state = rng_state * 1103515245u + 12345u; /* fixed seed: reproducible */
    size_t n = 1 + (rng_state >> 16) % 17;
    return n < left ? n : left;
}

/* Parses text and returns what the callbacks saw (caller frees). */
static char *run(const char *text, size_t (*split)(size_t), size_t max_stanza, unsigned max_depth)
{
    rec r;
    xs_parser *p = new_parser(&r, max_stanza, max_depth);
    feed_split(p, text, split);
    xs_free(p);
    return strdup(r.log);
}

static void expect(const char *text, size_t max_stanza, unsigned max_depth, const char *log)
{
    char *got = run(text, NULL, max_stanza, max_depth);
    assert_string_equal(got, log);
    free(got);
}

static const char *const session =
    "<?xml version='1.0'?>\n" HEADER
    "<message to='romeo@example.net' id='m1' type='chat' xml:lang='en'>"
    "<body>Wherefore &amp; why? &lt;3 &#x263A;</body>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>\n  "
    "<iq type='get' id='p&amp;1'><query xmlns='jabber:iq:roster' xmlns:x='urn:x' x:ver='a&amp;b'/></iq>"
    "<presence><![CDATA[<raw>]]></presence> \n"
    "</stream:stream>";

static const char *const session_log =
    "open(example.com,-,-,1.0,en,jabber:client)|"
    "<message to='romeo@example.net' id='m1' type='chat' xml:lang='en'>"
    "<body>Wherefore &amp; why? &lt;3 \xe2\x98\xba</body>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>|"
    "<iq type='get' id='p&amp;1'><query xmlns='jabber:iq:roster' x:ver='a&amp;b' xmlns:x='urn:x'/></iq>|"
    "<presence>&lt;raw&gt;</presence>|close|";

/* RFC 6120 §4.2-4.4: header, stanzas, close, with the XML declaration. */
static void rfc6120_4_stream_fed_whole(void **state)
{
    expect(session, 0, 0, session_log);
}

static void rfc6120_4_stream_fed_byte_by_byte(void **state)
{
    char *got = run(session, one_byte, 0, 0);
    assert_string_equal(got, session_log);
    free(got);
}

static void rfc6120_4_stream_fed_in_random_splits(void **state)
{
    for (unsigned seed = 1; seed <= 50; seed++) {
        rng_state = seed;
        char *got = run(session, random_split, 0, 0);
        assert_string_equal(got, session_log);
        free(got);
    }
}

/* Same trees on a jabber:server stream: a stanza stays in its namespace. */
static void rfc6120_4_8_3_server_stream_default_ns(void **state)
{
    expect("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
           "from='a.example' id='s1'><message/><db:result xmlns:db='jabber:server:dialback'/>",
           0, 0,
           "open(-,a.example,s1,-,-,jabber:server)|<message/>|"
           "<result xmlns='jabber:server:dialback'/>|");
}

/* RFC 6120 §11.1: each construct restricted XML forbids. */
static void rfc6120_11_1_doctype_is_restricted(void **state)
{
    expect("<?xml version='1.0'?><!DOCTYPE stream>" HEADER, 0, 0, "error(restricted-xml)|");
}

static void rfc6120_11_1_entity_declaration_is_restricted(void **state)
{
    expect("<!DOCTYPE s [<!ENTITY x 'boom'>]>" HEADER "<message>&x;</message>", 0, 0,
           "error(restricted-xml)|");
}

static void rfc6120_11_1_undefined_entity_is_restricted(void **state)
{
    expect(HEADER "<message>&nbsp;</message>", 0, 0,
           "open(example.com,-,-,1.0,en,jabber:client)|error(restricted-xml)|");
    expect(HEADER "<message to='&x;'/>", 0, 0,
           "open(example.com,-,-,1.0,en,jabber:client)|error(restricted-xml)|");
}

static void rfc6120_11_1_comment_is_restricted(void **state)
{
    expect(HEADER "<message><!-- hi --></message>", 0, 0,
           "open(example.com,-,-,1.0,en,jabber:client)|error(restricted-xml)|");
    expect("<!-- before -->" HEADER, 0, 0, "error(restricted-xml)|");
}

static void rfc6120_11_1_processing_instruction_is_restricted(void **state)
{
    expect(HEADER "<message><?php evil() ?></message>", 0, 0,
           "open(example.com,-,-,1.0,en,jabber:client)|error(restricted-xml)|");
}

/* RFC 6120 §4.9.3.13 */
static void rfc6120_4_9_3_13_not_well_formed(void **state)
{
    static const char *bad[] = {
        "<message><body></message>", "<message a='1' a='2'/>", "<p:message/>",
        "<message>\x80\x81</message>", "<message a=1/>",
        "<message><![CDATA[\xc0\xbc]]></message>", "<message><![CDATA[\xed\xa0\x80]]></message>",
        "<message><![CDATA[\xe0\x80\xbc]]></message>", "<message>\xc0\xbc</message>",
        "stray text<a/>", "<message/>&#0;",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char buf[256];
        snprintf(buf, sizeof(buf), "%s%s", HEADER, bad[i]);
        char *got = run(buf, NULL, 0, 0);
        const char *tail = strstr(got, "error(not-well-formed)|");
        if (!tail || tail[strlen("error(not-well-formed)|")] != '\0')
            fail_msg("%s -> %s", bad[i], got);
        free(got);
    }
}

/* RFC 6120 §4.9.3.10 */
static void rfc6120_4_9_3_10_wrong_root_is_invalid_namespace(void **state)
{
    expect("<stream:stream xmlns:stream='urn:wrong'>", 0, 0, "error(invalid-namespace)|");
    expect("<stream xmlns='jabber:client'>", 0, 0, "error(invalid-namespace)|");
    expect("<message/>", 0, 0, "error(invalid-namespace)|");
}

/* RFC 6120 §11.6: UTF-8 only. */
static void rfc6120_11_6_other_encoding_is_unsupported(void **state)
{
    expect("<?xml version='1.0' encoding='ISO-8859-1'?>" HEADER, 0, 0,
           "error(unsupported-encoding)|");
    /* UTF-16 (byte order mark) is refused as well. */
    rec r;
    xs_parser *p = new_parser(&r, 0, 0);
    assert_int_equal(xs_feed(p, "\xff\xfe<\0s\0t\0r\0e\0a\0m\0", 14), -1);
    assert_string_equal(r.log, "error(unsupported-encoding)|");
    xs_free(p);
    /* Undecodable UCS-4 ends the stream, quietly. */
    p = new_parser(&r, 0, 0);
    assert_int_equal(xs_feed(p, "\0\0\0<\0\0\0a\xff\xff\xff\xff", 12), -1);
    xs_free(p);
}

/* RFC 6120 §13.12 (resource exhaustion): stanza size and depth limits. */
static void rfc6120_13_12_max_stanza_is_policy_violation(void **state)
{
    /* The header counts too (nothing may exceed the limit): use 300 bytes.
     * "<message><body>" + n + "</body></message>" is 32 + n bytes. */
    char ok[1024], big[1024];
    snprintf(ok, sizeof(ok), HEADER "<message><body>%0268d</body></message>", 0);
    snprintf(big, sizeof(big), HEADER "<message><body>%0269d</body></message>", 0);
    char *got = run(ok, NULL, 300, 0);
    assert_non_null(strstr(got, "</message>|"));
    free(got);
    got = run(big, NULL, 300, 0);
    assert_non_null(strstr(got, "error(policy-violation)|"));
    assert_null(strstr(got, "</message>"));
    free(got);
    rng_state = 7;
    got = run(big, random_split, 300, 0);
    assert_non_null(strstr(got, "error(policy-violation)|"));
    free(got);
    /* Many small stanzas in one feed, together far over the limit, are fine. */
    char many[2048] = HEADER;
    for (int i = 0; i < 300; i++)
        strcat(many, "<a/>");
    strcat(many, "<m/>");
    got = run(many, NULL, strlen(HEADER) + 8, 0);
    assert_null(strstr(got, "error"));
    assert_non_null(strstr(got, "<m/>|"));
    free(got);
}

/* A start tag that never ends is caught while libxml2 still buffers it. */
static void rfc6120_13_12_unfinished_start_tag_is_policy_violation(void **state)
{
    rec r;
    xs_parser *p = new_parser(&r, 1000, 0);
    assert_int_equal(xs_feed(p, HEADER, strlen(HEADER)), 0);
    assert_int_equal(xs_feed(p, "<message to='", 13), 0);
    char junk[100];
    memset(junk, 'a', sizeof(junk));
    int rc = 0;
    for (int i = 0; i < 20 && rc == 0; i++)
        rc = xs_feed(p, junk, sizeof(junk));
    assert_int_equal(rc, -1);
    assert_non_null(strstr(r.log, "error(policy-violation)|"));
    assert_int_equal(xs_feed(p, "<a/>", 4), -1); /* stays failed */
    xs_free(p);
}

/* Whitespace keepalives between stanzas never add up to a violation
 * (libxml2 hands whitespace over in runs of up to 300 bytes). */
static void rfc6120_4_6_1_whitespace_keepalives_do_not_count(void **state)
{
    rec r;
    xs_parser *p = new_parser(&r, 1000, 0);
    assert_int_equal(xs_feed(p, HEADER, strlen(HEADER)), 0);
    for (int i = 0; i < 5000; i++)
        assert_int_equal(xs_feed(p, " ", 1), 0);
    assert_int_equal(xs_feed(p, "<message/>", 10), 0);
    assert_non_null(strstr(r.log, "<message/>|"));
    xs_free(p);
}

static void rfc6120_13_12_max_depth_is_policy_violation(void **state)
{
    expect(HEADER "<a><b><c/></b></a>", 0, 3,
           "open(example.com,-,-,1.0,en,jabber:client)|<a><b><c/></b></a>|");
    expect(HEADER "<a><b><c><d/></c></b></a>", 0, 3,
           "open(example.com,-,-,1.0,en,jabber:client)|error(policy-violation)|");
}

/* RFC 6120 §5.4.3.3: after <starttls/> the rest of the read is discarded,
 * and the parser restarts (reset from inside the callback) for a new stream. */
static void rfc6120_5_4_3_3_stop_and_reset_discards_rest(void **state)
{
    rec r;
    xs_parser *p = new_parser(&r, 0, 0);
    r.stop_after = 1;
    r.reset_on_stop = true;
    const char *in = HEADER "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
                            "<message><body>injected</body></message>";
    assert_int_equal(xs_feed(p, in, strlen(in)), 0);
    assert_null(strstr(r.log, "injected"));
    /* New stream on the reset parser. */
    assert_int_equal(xs_feed(p, HEADER "<presence/>", strlen(HEADER "<presence/>")), 0);
    assert_string_equal(r.log,
                        "open(example.com,-,-,1.0,en,jabber:client)|"
                        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>|"
                        "open(example.com,-,-,1.0,en,jabber:client)|<presence/>|");
    xs_free(p);
}

/* Without a reset, everything after a stop is discarded. */
static void stop_without_reset_discards_until_reset(void **state)
{
    rec r;
    xs_parser *p = new_parser(&r, 0, 0);
    r.stop_after = 1;
    assert_int_equal(xs_feed(p, HEADER "<a/><b/>", strlen(HEADER "<a/><b/>")), 0);
    assert_int_equal(xs_feed(p, "<c/>", 4), 0);
    assert_null(strstr(r.log, "<b/>"));
    assert_null(strstr(r.log, "<c/>"));
    xs_reset(p);
    assert_int_equal(xs_feed(p, HEADER "<d/>", strlen(HEADER "<d/>")), 0);
    assert_non_null(strstr(r.log, "<d/>|"));
    xs_free(p);
}

/* RFC 6120 §4.4: </stream:stream> closes; an open element is dropped
 * cleanly when the parser is freed mid-stanza. */
static void rfc6120_4_4_close_callback(void **state)
{
    expect(HEADER "</stream:stream>", 0, 0,
           "open(example.com,-,-,1.0,en,jabber:client)|close|");
    rec r;
    xs_parser *p = new_parser(&r, 0, 0);
    assert_int_equal(xs_feed(p, HEADER "<message><body>half", strlen(HEADER) + 19), 0);
    xs_free(p);
}

static void reset_after_error_allows_new_stream(void **state)
{
    rec r;
    xs_parser *p = new_parser(&r, 0, 0);
    assert_int_equal(xs_feed(p, "<bad", 4), 0);
    assert_int_equal(xs_feed(p, "/>", 2), -1);
    xs_reset(p);
    assert_int_equal(xs_feed(p, HEADER, strlen(HEADER)), 0);
    assert_string_equal(r.log, "error(invalid-namespace)|open(example.com,-,-,1.0,en,jabber:client)|");
    xs_free(p);
}

/* ---- xs_shrink: an idle stream's context is freed and rebuilt ------------- */

/* Parses text fed by split(), trying xs_shrink after every feed; returns
 * what the callbacks saw (caller frees) and counts the shrinks done. */
static char *run_shrinking(const char *text, size_t (*split)(size_t), size_t max_stanza,
                           unsigned max_depth, unsigned *shrinks)
{
    rec r;
    xs_parser *p = new_parser(&r, max_stanza, max_depth);
    size_t len = strlen(text), off = 0;
    *shrinks = 0;
    while (off < len) {
        size_t n = split ? split(len - off) : len - off;
        xs_feed(p, text + off, n);
        off += n;
        unsigned depth = xs_depth(p);
        if (xs_shrink(p)) {
            (*shrinks)++;
            assert_int_equal(xs_depth(p), depth); /* invisible to the owner */
            assert_int_equal(depth, 1);
        }
    }
    xs_free(p);
    return strdup(r.log);
}

/* The same callbacks with and without shrinking, fed byte by byte (a
 * shrink at every point where one is allowed) and in random splits. */
static void expect_same_when_shrunk(const char *text, size_t max_stanza, unsigned max_depth,
                                    unsigned min_shrinks)
{
    char *plain = run(text, NULL, max_stanza, max_depth);
    unsigned shrinks;
    char *got = run_shrinking(text, one_byte, max_stanza, max_depth, &shrinks);
    assert_string_equal(got, plain);
    if (shrinks < min_shrinks)
        fail_msg("%u shrinks: %s", shrinks, plain);
    free(got);
    rng_state = 7;
    got = run_shrinking(text, random_split, max_stanza, max_depth, &shrinks);
    assert_string_equal(got, plain);
    free(got);
    free(plain);
}

/* Issue 18: a stream shrunk between stanzas parses the rest exactly as
 * before, stanzas, entities, CDATA and the closing tag included. */
static void issue18_shrunk_stream_parses_the_same(void **state)
{
    expect_same_when_shrunk(session, 0, 0, 3);
}

/* Prefixes the root declared stay declared for later stanzas (RFC 6120
 * §4.8.4: the dialback prefix on an s2s stream root). */
static void issue18_shrink_keeps_root_namespace_declarations(void **state)
{
    static const char s2s[] =
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
        "xmlns:db='jabber:server:dialback' to='b.example' version='1.0'>"
        "<db:result from='a.example' to='b.example'>key1</db:result>\n"
        "<db:verify from='a.example' to='b.example' id='i'>key2</db:verify>"
        "<message from='u@a.example' to='v@b.example'><body>x</body></message>"
        "</stream:stream>";
    expect_same_when_shrunk(s2s, 0, 0, 2);
    unsigned shrinks;
    char *got = run_shrinking(s2s, one_byte, 0, 0, &shrinks);
    assert_non_null(strstr(got, "|<result xmlns='jabber:server:dialback' from='a.example' "
                                "to='b.example'>key1</result>|"));
    free(got);
}

/* Issue 18: the common stream roots are replayed from one shared copy,
 * any other from the stream's own: both in either order of the
 * declarations, with a prefix only the uncommon root declares used by a
 * later stanza. */
static void issue18_shrink_replays_common_and_other_roots(void **state)
{
    static const char *const streams[] = {
        "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' "
        "to='example.com' version='1.0'><presence/>\n<message><body>a</body></message>"
        "</stream:stream>",
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
        "xmlns:x='urn:example:x' to='example.com' version='1.0'><presence/>\n"
        "<message><x:y>b</x:y></message></stream:stream>",
    };
    for (size_t i = 0; i < 2; i++)
        expect_same_when_shrunk(streams[i], 0, 0, 2);
    unsigned shrinks;
    char *got = run_shrinking(streams[1], one_byte, 0, 0, &shrinks);
    assert_non_null(strstr(got, "<y xmlns='urn:example:x'>b</y>"));
    free(got);
}

/* Limits count the same after a shrink: max_stanza from the end of the
 * previous element, max_depth from the stream root. */
static void issue18_shrink_keeps_limits(void **state)
{
#define TEXT50 "01234567890123456789012345678901234567890123456789"
    /* <b> is 157 bytes, <c> 207: over 200 */
    expect_same_when_shrunk(HEADER "<a/><b>" TEXT50 TEXT50 TEXT50 "</b><c>" TEXT50 TEXT50 TEXT50
                            TEXT50 "</c>", 200, 0, 1);
    expect_same_when_shrunk(HEADER "<a/><b>" TEXT50 TEXT50 TEXT50 "</b>", 200, 0, 1);
    expect_same_when_shrunk(HEADER "<a><b/></a> <a><b><c/></b></a>", 0, 2, 1);
    expect_same_when_shrunk(HEADER "<a/>\n  <b/>    ", 0, 0, 1);
}

/* Errors after a shrink are the same errors. */
static void issue18_shrink_keeps_errors(void **state)
{
    expect_same_when_shrunk(HEADER "<a/></stream:other>", 0, 0, 1);
    expect_same_when_shrunk(HEADER "<a/></wrong>", 0, 0, 1);
    expect_same_when_shrunk(HEADER "<a/>text", 0, 0, 1);
    expect_same_when_shrunk(HEADER "<a/><!-- c -->", 0, 0, 1);
    expect_same_when_shrunk(HEADER "<a/><b>&foo;</b>", 0, 0, 1);
    expect_same_when_shrunk(HEADER "<a/><x:b/>", 0, 0, 1);
    expect_same_when_shrunk(HEADER "<a/><b/></stream:stream><c/>", 0, 0, 1);
}

static void issue18_shrink_is_refused_where_state_matters(void **state)
{
    rec r;
    xs_parser *p = new_parser(&r, 0, 0);
    assert_false(xs_shrink(p)); /* nothing parsed yet */
    static const char head[] = "<stream:stream xmlns:stream='" XS_NS_STREAM "'";
    assert_int_equal(xs_feed(p, head, sizeof(head) - 1), 0);
    assert_false(xs_shrink(p)); /* inside the header */
    assert_int_equal(xs_feed(p, ">", 1), 0);
    assert_true(xs_shrink(p));
    assert_false(xs_shrink(p)); /* nothing left to free */
    assert_int_equal(xs_feed(p, "<message><body>hi", 17), 0);
    assert_false(xs_shrink(p)); /* mid-element */
    assert_int_equal(xs_feed(p, "</body></message><pres", 22), 0);
    assert_false(xs_shrink(p)); /* a start tag is buffered */
    assert_int_equal(xs_feed(p, "ence/>", 6), 0);
    assert_true(xs_shrink(p));
    assert_int_equal(xs_feed(p, "</stream:stream>", 16), 0);
    assert_false(xs_shrink(p)); /* closed */
    assert_string_equal(r.log, "open(-,-,-,-,-,-)|<message xmlns=''><body>hi</body></message>|"
                               "<presence xmlns=''/>|close|");
    xs_reset(p);
    assert_int_equal(xs_feed(p, "<bad/>", 6), -1);
    assert_false(xs_shrink(p)); /* failed */
    xs_free(p);
}

/* A namespace that cannot be written back as it was read (here one with
 * '&') keeps its context: the stream goes on, unshrunk. */
static void issue18_unreplayable_root_is_never_shrunk(void **state)
{
    static const char odd[] =
        "<stream:stream xmlns='urn:a&amp;b' xmlns:stream='http://etherx.jabber.org/streams'>"
        "<x/><y/>";
    rec r;
    xs_parser *p = new_parser(&r, 0, 0);
    assert_int_equal(xs_feed(p, odd, strlen(odd)), 0);
    assert_false(xs_shrink(p));
    assert_int_equal(xs_feed(p, "<z/>", 4), 0);
    assert_null(strstr(r.log, "error"));
    xs_free(p);
}

/* A reset after a shrink starts a new stream with its own header. */
static void issue18_reset_after_shrink(void **state)
{
    rec r;
    xs_parser *p = new_parser(&r, 0, 0);
    assert_int_equal(xs_feed(p, HEADER "<a/>", strlen(HEADER) + 4), 0);
    assert_true(xs_shrink(p));
    xs_reset(p);
    assert_int_equal(xs_depth(p), 0);
    assert_int_equal(xs_feed(p, HEADER "<b/>", strlen(HEADER) + 4), 0);
    assert_string_equal(r.log, "open(example.com,-,-,1.0,en,jabber:client)|<a/>|"
                               "open(example.com,-,-,1.0,en,jabber:client)|<b/>|");
    xs_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc6120_4_stream_fed_whole),
        cmocka_unit_test(rfc6120_4_stream_fed_byte_by_byte),
        cmocka_unit_test(rfc6120_4_stream_fed_in_random_splits),
        cmocka_unit_test(rfc6120_4_8_3_server_stream_default_ns),
        cmocka_unit_test(rfc6120_11_1_doctype_is_restricted),
        cmocka_unit_test(rfc6120_11_1_entity_declaration_is_restricted),
        cmocka_unit_test(rfc6120_11_1_undefined_entity_is_restricted),
        cmocka_unit_test(rfc6120_11_1_comment_is_restricted),
        cmocka_unit_test(rfc6120_11_1_processing_instruction_is_restricted),
        cmocka_unit_test(rfc6120_4_9_3_13_not_well_formed),
        cmocka_unit_test(rfc6120_4_9_3_10_wrong_root_is_invalid_namespace),
        cmocka_unit_test(rfc6120_11_6_other_encoding_is_unsupported),
        cmocka_unit_test(rfc6120_13_12_max_stanza_is_policy_violation),
        cmocka_unit_test(rfc6120_13_12_unfinished_start_tag_is_policy_violation),
        cmocka_unit_test(rfc6120_4_6_1_whitespace_keepalives_do_not_count),
        cmocka_unit_test(rfc6120_13_12_max_depth_is_policy_violation),
        cmocka_unit_test(rfc6120_5_4_3_3_stop_and_reset_discards_rest),
        cmocka_unit_test(stop_without_reset_discards_until_reset),
        cmocka_unit_test(rfc6120_4_4_close_callback),
        cmocka_unit_test(reset_after_error_allows_new_stream),
        cmocka_unit_test(issue18_shrunk_stream_parses_the_same),
        cmocka_unit_test(issue18_shrink_keeps_root_namespace_declarations),
        cmocka_unit_test(issue18_shrink_replays_common_and_other_roots),
        cmocka_unit_test(issue18_shrink_keeps_limits),
        cmocka_unit_test(issue18_shrink_keeps_errors),
        cmocka_unit_test(issue18_shrink_is_refused_where_state_matters),
        cmocka_unit_test(issue18_unreplayable_root_is_never_shrunk),
        cmocka_unit_test(issue18_reset_after_shrink),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
