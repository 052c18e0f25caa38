/* Element trees: build, query, serialise, escape, parse, copy, replies. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "xml/fanout.h"
#include "xml/serialise.h"
#include "xmppd/stanza.h"

/* Serialises s for a stream whose default namespace is ns, compares, frees. */
static void assert_xml(const xmppd_stanza *s, const char *ns, const char *expected)
{
    size_t len = 0;
    char *out = xmppd_stanza_to_string(s, ns, &len);
    assert_non_null(out);
    assert_string_equal(out, expected);
    assert_int_equal(len, strlen(expected));
    free(out);
}

static xmppd_stanza *parse(const char *xml)
{
    return xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT);
}

static void build_and_serialise(void **state)
{
    xmppd_stanza *m = xmppd_stanza_new("message", NULL);
    assert_int_equal(xmppd_stanza_set_attr(m, "to", "juliet@example.com"), 0);
    assert_int_equal(xmppd_stanza_set_attr(m, "type", "chat"), 0);
    xmppd_stanza *body = xmppd_stanza_tag(m, "body", NULL);
    assert_int_equal(xmppd_stanza_add_text(body, "Art thou", 8), 0);
    assert_int_equal(xmppd_stanza_add_text(body, " not Romeo?", 11), 0);
    assert_xml(m, XMPPD_NS_CLIENT,
               "<message to='juliet@example.com' type='chat'><body>Art thou not Romeo?</body></message>");
    assert_string_equal(xmppd_stanza_name(m), "message");
    assert_string_equal(xmppd_stanza_ns(body), XMPPD_NS_CLIENT);
    assert_string_equal(xmppd_stanza_attr(m, "type"), "chat");
    assert_null(xmppd_stanza_attr(m, "id"));
    assert_string_equal(xmppd_stanza_child_text(m, "body", NULL), "Art thou not Romeo?");
    assert_null(xmppd_stanza_child_text(m, "subject", NULL));
    assert_string_equal(xmppd_stanza_text(m), "");
    assert_ptr_equal(xmppd_stanza_parent(body), m);
    assert_ptr_equal(xmppd_stanza_first(m), body);
    assert_null(xmppd_stanza_next(body));
    xmppd_stanza_unref(m);
}

static void attributes_replace_and_remove(void **state)
{
    xmppd_stanza *s = xmppd_stanza_new("iq", NULL);
    for (int i = 0; i < 10; i++) { /* grows the attribute table */
        char name[8] = {'a', (char)('0' + i), 0};
        assert_int_equal(xmppd_stanza_set_attr(s, name, name), 0);
    }
    assert_int_equal(xmppd_stanza_set_attr(s, "a3", "three"), 0);
    assert_string_equal(xmppd_stanza_attr(s, "a3"), "three");
    assert_int_equal(xmppd_stanza_set_attr(s, "a3", NULL), 0);
    assert_null(xmppd_stanza_attr(s, "a3"));
    assert_string_equal(xmppd_stanza_attr(s, "a9"), "a9");
    assert_int_equal(xmppd_stanza_set_attr(s, "missing", NULL), 0);
    xmppd_stanza_unref(s);

    /* Replacing an attribute of a parsed element (stored in its block). */
    xmppd_stanza *p = parse("<iq type='get' id='1'/>");
    assert_int_equal(xmppd_stanza_set_attr(p, "type", "result"), 0);
    assert_int_equal(xmppd_stanza_set_attr(p, "to", "a@b"), 0);
    assert_xml(p, XMPPD_NS_CLIENT, "<iq type='result' id='1' to='a@b'/>");
    xmppd_stanza_unref(p);
}

/* RFC 6120 §11.5 / XML 1.0 §2.4: & < > escaped in text, quotes in attributes. */
static void rfc6120_11_escaping_round_trip(void **state)
{
    const char *nasty = "a&b<c>d'e\"f]]>g";
    xmppd_stanza *m = xmppd_stanza_new("message", NULL);
    xmppd_stanza_set_attr(m, "id", nasty);
    xmppd_stanza *b = xmppd_stanza_tag(m, "body", NULL);
    xmppd_stanza_add_text(b, nasty, strlen(nasty));
    size_t len;
    char *out = xmppd_stanza_to_string(m, NULL, &len);
    assert_string_equal(out, "<message id='a&amp;b&lt;c&gt;d&apos;e&quot;f]]&gt;g'>"
                             "<body>a&amp;b&lt;c&gt;d'e\"f]]&gt;g</body></message>");
    xmppd_stanza *back = xmppd_stanza_from_string(out, len, NULL);
    assert_non_null(back);
    assert_string_equal(xmppd_stanza_attr(back, "id"), nasty);
    assert_string_equal(xmppd_stanza_child_text(back, "body", NULL), nasty);
    free(out);
    xmppd_stanza_unref(back);
    xmppd_stanza_unref(m);
}

/* The escaper scans four bytes per step: every escapable byte is found at
 * every offset of text and attribute values of every length up to 41,
 * alone and next to another one (RFC 6120 §11.5). */
static void rfc6120_11_escaping_at_every_offset(void **state)
{
    for (size_t n = 1; n <= 41; n++) {
        for (size_t at = 0; at < n; at++) {
            for (int pair = 0; pair < 2; pair++) {
                char text[48], want[512];
                memset(text, 'x', n);
                text[n] = '\0';
                text[at] = '<';
                if (pair && at + 1 < n)
                    text[at + 1] = '"';
                xmppd_stanza *m = xmppd_stanza_new("m", NULL);
                xmppd_stanza_set_attr(m, "v", text);
                xmppd_stanza_add_text(m, text, n);
                size_t w = 0;
                w += (size_t)snprintf(want + w, sizeof(want) - w, "<m v='");
                for (size_t i = 0; i < n; i++)
                    w += (size_t)snprintf(want + w, sizeof(want) - w, "%s",
                                          text[i] == '<' ? "&lt;" : text[i] == '"' ? "&quot;" : "x");
                w += (size_t)snprintf(want + w, sizeof(want) - w, "'>");
                for (size_t i = 0; i < n; i++)
                    w += (size_t)snprintf(want + w, sizeof(want) - w, "%s",
                                          text[i] == '<' ? "&lt;" : text[i] == '"' ? "\"" : "x");
                snprintf(want + w, sizeof(want) - w, "</m>");
                char *out = xmppd_stanza_to_string(m, NULL, NULL);
                assert_string_equal(out, want);
                free(out);
                xmppd_stanza_unref(m);
            }
        }
    }
}

/* Whitespace in attribute values and CR in text survive a round trip;
 * control characters XML cannot carry are dropped, not sent. */
static void xml_1_0_normalisation_survives_round_trip(void **state)
{
    xmppd_stanza *m = xmppd_stanza_new("x", "urn:t");
    xmppd_stanza_set_attr(m, "v", "a\tb\nc\rd");
    xmppd_stanza_add_text(m, "1\r\n2\x01", 5);
    size_t len;
    char *out = xmppd_stanza_to_string(m, NULL, &len);
    assert_string_equal(out, "<x xmlns='urn:t' v='a&#9;b&#10;c&#13;d'>1&#13;\n2</x>");
    xmppd_stanza *back = xmppd_stanza_from_string(out, len, NULL);
    assert_non_null(back);
    assert_string_equal(xmppd_stanza_attr(back, "v"), "a\tb\nc\rd");
    assert_string_equal(xmppd_stanza_text(back), "1\r\n2");
    free(out);
    xmppd_stanza_unref(back);
    xmppd_stanza_unref(m);
}

/* RFC 6120 §4.8.3: xmlns only where the namespace changes. */
static void rfc6120_4_8_3_child_namespaces(void **state)
{
    xmppd_stanza *iq = xmppd_stanza_new("iq", XMPPD_NS_CLIENT);
    xmppd_stanza *q = xmppd_stanza_tag(iq, "query", "jabber:iq:roster");
    xmppd_stanza_tag(q, "item", NULL);                /* inherits jabber:iq:roster */
    xmppd_stanza_tag(q, "group", "jabber:iq:roster"); /* same ns, no xmlns */
    xmppd_stanza_tag(iq, "x", "urn:example:unknown");
    xmppd_stanza_tag(iq, "y", XMPPD_NS_CLIENT);
    assert_string_equal(xmppd_stanza_ns(xmppd_stanza_child(q, "item", NULL)), "jabber:iq:roster");
    assert_xml(iq, XMPPD_NS_CLIENT,
               "<iq><query xmlns='jabber:iq:roster'><item/><group/></query>"
               "<x xmlns='urn:example:unknown'/><y/></iq>");
    assert_non_null(xmppd_stanza_child(iq, "query", "jabber:iq:roster"));
    assert_null(xmppd_stanza_child(iq, "query", "jabber:iq:private"));
    xmppd_stanza_unref(iq);
}

/* RFC 6120 §4.8.3: the same stanza is written without xmlns on a
 * jabber:client and on a jabber:server stream; other top-level elements
 * carry theirs. */
static void rfc6120_4_8_3_client_vs_server_default(void **state)
{
    xmppd_stanza *m = parse("<message to='a@b'><body>hi</body></message>");
    assert_string_equal(xmppd_stanza_ns(m), XMPPD_NS_CLIENT);
    assert_xml(m, XMPPD_NS_CLIENT, "<message to='a@b'><body>hi</body></message>");
    assert_xml(m, XMPPD_NS_SERVER, "<message to='a@b'><body>hi</body></message>");
    xmppd_stanza_unref(m);

    xmppd_stanza *s = xmppd_stanza_from_string("<presence/>", 11, XMPPD_NS_SERVER);
    assert_string_equal(xmppd_stanza_ns(s), XMPPD_NS_SERVER);
    assert_xml(s, XMPPD_NS_CLIENT, "<presence/>");
    xmppd_stanza_unref(s);

    xmppd_stanza *f = xmppd_stanza_new("starttls", "urn:ietf:params:xml:ns:xmpp-tls");
    assert_xml(f, XMPPD_NS_CLIENT, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    xmppd_stanza_unref(f);

    /* A forwarded jabber:client message keeps its namespace below others. */
    xmppd_stanza *w = parse("<message><forwarded xmlns='urn:xmpp:forward:0'>"
                            "<message xmlns='jabber:client'/></forwarded></message>");
    assert_xml(w, XMPPD_NS_SERVER, "<message><forwarded xmlns='urn:xmpp:forward:0'>"
                                   "<message xmlns='jabber:client'/></forwarded></message>");
    xmppd_stanza_unref(w);
}

/* An implicit-namespace subtree follows the element it is finally added to. */
static void implicit_namespace_follows_parent(void **state)
{
    xmppd_stanza *err = xmppd_stanza_new("error", NULL);
    xmppd_stanza *inner = xmppd_stanza_tag(err, "inner", NULL);
    xmppd_stanza *q = xmppd_stanza_new("query", "urn:example:q");
    assert_non_null(xmppd_stanza_add(q, err));
    assert_string_equal(xmppd_stanza_ns(err), "urn:example:q");
    assert_string_equal(xmppd_stanza_ns(inner), "urn:example:q");
    assert_xml(q, NULL, "<query xmlns='urn:example:q'><error><inner/></error></query>");
    xmppd_stanza_unref(q);
}

static void mixed_content_keeps_document_order(void **state)
{
    const char *xml = "<body xmlns='http://www.w3.org/1999/xhtml'>Hello <b>big</b> "
                      "<i>world</i>!</body>";
    xmppd_stanza *s = parse(xml);
    assert_non_null(s);
    assert_string_equal(xmppd_stanza_text(s), "Hello  !");
    assert_xml(s, NULL, xml);
    xmppd_stanza *c = xmppd_stanza_copy(s);
    assert_xml(c, NULL, xml);
    xmppd_stanza_unref(c);
    xmppd_stanza_unref(s);
}

static void copy_is_deep_and_detached(void **state)
{
    xmppd_stanza *m = parse("<message xml:lang='en' xmlns:a='urn:a' a:x='1'><body>x</body></message>");
    xmppd_stanza *body = xmppd_stanza_child(m, "body", NULL);
    xmppd_stanza *c = xmppd_stanza_copy(body);
    assert_null(xmppd_stanza_parent(c));
    assert_string_equal(xmppd_stanza_ns(c), XMPPD_NS_CLIENT);
    xmppd_stanza *all = xmppd_stanza_copy(m);
    xmppd_stanza_add_text(xmppd_stanza_child(all, "body", NULL), "y", 1);
    assert_string_equal(xmppd_stanza_child_text(m, "body", NULL), "x");
    assert_xml(all, NULL, "<message xml:lang='en' a:x='1' xmlns:a='urn:a'><body>xy</body></message>");
    assert_xml(m, NULL, "<message xml:lang='en' a:x='1' xmlns:a='urn:a'><body>x</body></message>");
    xmppd_stanza_unref(all);
    xmppd_stanza_unref(m);
    assert_xml(c, NULL, "<body>x</body>");
    xmppd_stanza_unref(c);
}

static void refcount_child_outlives_parent(void **state)
{
    xmppd_stanza *m = xmppd_stanza_new("message", NULL);
    xmppd_stanza *b = xmppd_stanza_ref(xmppd_stanza_tag(m, "body", "urn:x"));
    xmppd_stanza_unref(m);
    assert_null(xmppd_stanza_parent(b));
    assert_string_equal(xmppd_stanza_name(b), "body");
    xmppd_stanza_unref(b);
    xmppd_stanza_unref(NULL);
}

static void add_refuses_second_parent_and_cycles(void **state)
{
    xmppd_stanza *a = xmppd_stanza_new("a", NULL), *b = xmppd_stanza_new("b", NULL);
    xmppd_stanza *c = xmppd_stanza_tag(a, "c", NULL);
    xmppd_stanza_ref(c);
    assert_null(xmppd_stanza_add(b, c)); /* drops the extra reference */
    xmppd_stanza_ref(a);
    assert_null(xmppd_stanza_add(c, a)); /* would be a cycle */
    xmppd_stanza_remove(a, c);
    assert_null(xmppd_stanza_first(a));
    xmppd_stanza_tag(a, "d", NULL);
    xmppd_stanza_tag(a, "e", NULL);
    xmppd_stanza_remove(a, xmppd_stanza_child(a, "e", NULL));
    xmppd_stanza_tag(a, "f", NULL);
    assert_xml(a, NULL, "<a><d/><f/></a>");
    xmppd_stanza_unref(a);
    xmppd_stanza_unref(b);
}

/* RFC 6120 §11.1: no DTD, entities, comments or PIs in a parsed element;
 * exactly one element. */
static void rfc6120_11_1_from_string_is_restricted(void **state)
{
    static const char *bad[] = {
        "<a><!-- c --></a>", "<a><?pi x?></a>", "<a>&foo;</a>", "<a/><b/>", "<a>", "text",
        "", "<a/>text", "<a/></stream:stream>", "<?xml version='1.0'?><a/>", "<a b='1' b='2'/>",
        "<p:a/>",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        xmppd_stanza *s = parse(bad[i]);
        if (s)
            fail_msg("accepted: %s", bad[i]);
    }
    xmppd_stanza *ok = parse("  <a>&amp;&lt;&#65;&#x42;<![CDATA[<x>]]></a>\n");
    assert_non_null(ok);
    assert_string_equal(xmppd_stanza_text(ok), "&<AB<x>");
    xmppd_stanza_unref(ok);
    /* libxml2 hands '&' in attributes over as "&#38;": a literal "&#38;"
     * written as "&amp;#38;" must stay literal. */
    ok = parse("<a v='x&amp;#38;y&#38;z'/>");
    assert_non_null(ok);
    assert_string_equal(xmppd_stanza_attr(ok, "v"), "x&#38;y&z");
    xmppd_stanza_unref(ok);
}

static void reply_swaps_addresses(void **state)
{
    xmppd_stanza *iq = parse("<iq from='a@b/c' to='b' id='x1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>");
    xmppd_stanza *r = xmppd_stanza_reply(iq);
    assert_xml(r, NULL, "<iq to='a@b/c' from='b' id='x1' type='result'/>");
    xmppd_stanza_unref(r);
    xmppd_stanza_unref(iq);

    xmppd_stanza *m = parse("<message from='a@b' type='chat'/>");
    r = xmppd_stanza_reply(m);
    assert_xml(r, NULL, "<message to='a@b' type='chat'/>");
    xmppd_stanza_unref(r);
    xmppd_stanza_unref(m);
}

/* RFC 6120 §8.3.2 shape and §8.3.3 default types. */
static void rfc6120_8_3_error_reply(void **state)
{
    xmppd_stanza *iq = parse("<iq from='a@b/c' to='b' id='x1' type='set'><q xmlns='urn:q'/></iq>");
    xmppd_stanza *e = xmppd_stanza_error_reply(iq, NULL, "service-unavailable", NULL);
    assert_xml(e, XMPPD_NS_SERVER,
               "<iq to='a@b/c' from='b' id='x1' type='error'><error type='cancel'>"
               "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
    xmppd_stanza_unref(e);

    e = xmppd_stanza_error_reply(iq, "modify", "bad-request", "a < b");
    assert_xml(e, NULL,
               "<iq to='a@b/c' from='b' id='x1' type='error'><error type='modify'>"
               "<bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
               "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>a &lt; b</text></error></iq>");
    xmppd_stanza_unref(e);

    static const char *expect[][2] = {
        {"bad-request", "modify"}, {"conflict", "cancel"}, {"feature-not-implemented", "cancel"},
        {"forbidden", "auth"}, {"gone", "cancel"}, {"internal-server-error", "cancel"},
        {"item-not-found", "cancel"}, {"jid-malformed", "modify"}, {"not-acceptable", "modify"},
        {"not-allowed", "cancel"}, {"not-authorized", "auth"}, {"policy-violation", "modify"},
        {"recipient-unavailable", "wait"}, {"redirect", "modify"},
        {"registration-required", "auth"}, {"remote-server-not-found", "cancel"},
        {"remote-server-timeout", "wait"}, {"resource-constraint", "wait"},
        {"service-unavailable", "cancel"}, {"subscription-required", "auth"},
        {"undefined-condition", "modify"}, {"unexpected-request", "wait"},
    };
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        e = xmppd_stanza_error_reply(iq, NULL, expect[i][0], NULL);
        xmppd_stanza *err = xmppd_stanza_child(e, "error", NULL);
        assert_non_null(err);
        assert_string_equal(xmppd_stanza_attr(err, "type"), expect[i][1]);
        assert_non_null(xmppd_stanza_child(err, expect[i][0], XMPPD_NS_STANZAS));
        assert_string_equal(xmppd_stanza_ns(err), XMPPD_NS_CLIENT);
        xmppd_stanza_unref(e);
    }
    xmppd_stanza_unref(iq);
}

/* Namespaces in XML §3: an element in the xml namespace (the xml: prefix)
 * cannot be written with a default-namespace declaration of that namespace;
 * it keeps its prefix, its children keep their own namespaces, and the
 * output parses back to the same tree (found by fuzz_stream). */
static void test_xml_namespace_element_round_trip(void **state)
{
    (void)state;
    const char *in = "<iq type='get' id='1'><xml:q xmlns='urn:a'><c/><d xmlns='urn:b'/></xml:q></iq>";
    xmppd_stanza *st = xmppd_stanza_from_string(in, strlen(in), XMPPD_NS_CLIENT);
    assert_non_null(st);
    size_t len;
    char *out = xmppd_stanza_to_string(st, XMPPD_NS_CLIENT, &len);
    assert_string_equal(out, "<iq type='get' id='1'><xml:q><c xmlns='urn:a'/><d xmlns='urn:b'/></xml:q></iq>");
    xmppd_stanza *back = xmppd_stanza_from_string(out, len, XMPPD_NS_CLIENT);
    assert_non_null(back);
    xmppd_stanza *q = xmppd_stanza_first(back);
    assert_string_equal(xmppd_stanza_ns(q), "http://www.w3.org/XML/1998/namespace");
    assert_string_equal(xmppd_stanza_ns(xmppd_stanza_first(q)), "urn:a");
    xmppd_stanza_unref(back);
    xmppd_stanza_unref(st);
    free(out);
}

/* What a stream writes (stanza_serialise, the shared text of fan-out
 * copies) is byte for byte what xmppd_stanza_to_string writes. */
static void assert_stream_xml(const xmppd_stanza *s, const char *ns, const char *expected)
{
    xbuf b = { 0 };
    xbuf_put(&b, "x", 1); /* appends after what is there */
    assert_int_equal(stanza_serialise(&b, s, ns), 0);
    assert_int_equal(b.len, 1 + strlen(expected));
    assert_memory_equal(b.p + 1, expected, strlen(expected));
    xbuf_free(&b);
    assert_xml(s, ns, expected);
}

/* RFC 6120 §8.1.1.1: each copy of a broadcast carries its own recipient,
 * though the copies share one serialisation. */
static void copy_to_shares_text_with_own_to(void **state)
{
    xmppd_stanza *p = parse("<presence from='a@x/r'><show>away</show><status>a &amp; b</status></presence>");
    xmppd_stanza *c1 = xmppd_stanza_copy_to(p, "b@x");
    xmppd_stanza *c2 = xmppd_stanza_copy_to(p, "o'&<@x");
    assert_stream_xml(c1, NULL, "<presence from='a@x/r' to='b@x'><show>away</show><status>a &amp; b</status></presence>");
    assert_stream_xml(c2, NULL, "<presence from='a@x/r' to='o&apos;&amp;&lt;@x'><show>away</show>"
                                "<status>a &amp; b</status></presence>");
    /* on a server stream the content namespace is the stream's own */
    assert_stream_xml(c2, XMPPD_NS_SERVER, "<presence from='a@x/r' to='o&apos;&amp;&lt;@x'>"
                                           "<show>away</show><status>a &amp; b</status></presence>");
    /* a namespace that is not a content one is a different text */
    assert_stream_xml(c2, "urn:example:other",
                      "<presence xmlns='jabber:client' from='a@x/r' to='o&apos;&amp;&lt;@x'>"
                      "<show>away</show><status>a &amp; b</status></presence>");
    /* the source itself has no 'to': written as it is */
    assert_stream_xml(p, NULL, "<presence from='a@x/r'><show>away</show><status>a &amp; b</status></presence>");
    /* a copy changed after it was made leaves the share, the others stay */
    xmppd_stanza_add(c1, xmppd_stanza_new("delay", "urn:xmpp:delay"));
    assert_stream_xml(c1, NULL, "<presence from='a@x/r' to='b@x'><show>away</show><status>a &amp; b</status>"
                                "<delay xmlns='urn:xmpp:delay'/></presence>");
    xmppd_stanza_set_attr(xmppd_stanza_child(c2, "show", NULL), "x", "1");
    assert_stream_xml(c2, NULL, "<presence from='a@x/r' to='o&apos;&amp;&lt;@x'><show x='1'>away</show>"
                                "<status>a &amp; b</status></presence>");
    /* the source changed: copies made afterwards show the change */
    xmppd_stanza_set_text(xmppd_stanza_child(p, "show", NULL), "dnd");
    xmppd_stanza *c3 = xmppd_stanza_copy_to(p, "c@x");
    assert_stream_xml(c3, NULL, "<presence from='a@x/r' to='c@x'><show>dnd</show><status>a &amp; b</status></presence>");
    /* NULL removes 'to' */
    xmppd_stanza *c4 = xmppd_stanza_copy_to(c3, NULL);
    assert_stream_xml(c4, NULL, "<presence from='a@x/r'><show>dnd</show><status>a &amp; b</status></presence>");
    xmppd_stanza_unref(p);
    xmppd_stanza_unref(c1);
    xmppd_stanza_unref(c2);
    xmppd_stanza_unref(c3);
    xmppd_stanza_unref(c4);
}

/* A source with a 'to' of its own: copies replace it in place. An element
 * inside a tree is copied without a share (its changes are the root's). */
static void copy_to_replaces_to_and_child_source(void **state)
{
    xmppd_stanza *m = parse("<message to='room@x' type='groupchat' id='1'><body>hi</body></message>");
    xmppd_stanza *c1 = xmppd_stanza_copy_to(m, "u1@x/r");
    xmppd_stanza *c2 = xmppd_stanza_copy_to(m, "u2@x/r");
    assert_stream_xml(c1, NULL, "<message to='u1@x/r' type='groupchat' id='1'><body>hi</body></message>");
    assert_stream_xml(m, NULL, "<message to='room@x' type='groupchat' id='1'><body>hi</body></message>");
    assert_stream_xml(c2, NULL, "<message to='u2@x/r' type='groupchat' id='1'><body>hi</body></message>");
    xmppd_stanza *body = xmppd_stanza_child(m, "body", NULL);
    xmppd_stanza *b1 = xmppd_stanza_copy_to(body, "z");
    assert_stream_xml(b1, NULL, "<body to='z'>hi</body>");
    xmppd_stanza_set_text(body, "changed");
    xmppd_stanza *b2 = xmppd_stanza_copy_to(body, "z");
    assert_stream_xml(b2, NULL, "<body to='z'>changed</body>");
    xmppd_stanza_unref(b1);
    xmppd_stanza_unref(b2);
    xmppd_stanza_unref(c1);
    xmppd_stanza_unref(c2);
    xmppd_stanza_unref(m);
}

/* The reference a copy-on-write copy must equal: a deep copy with its
 * 'to' set. */
static xmppd_stanza *deep_copy_to(const xmppd_stanza *s, const char *to)
{
    xmppd_stanza *c = xmppd_stanza_copy(s);
    assert_non_null(c);
    assert_int_equal(xmppd_stanza_set_attr(c, "to", to), 0);
    return c;
}

/* Both serialisations of a and b, on a client and a server stream, are
 * the same bytes. */
static void assert_same_xml(const xmppd_stanza *a, const xmppd_stanza *b)
{
    static const char *const scopes[] = { XMPPD_NS_CLIENT, XMPPD_NS_SERVER, "urn:example:other" };
    for (size_t i = 0; i < 3; i++) {
        char *x = xmppd_stanza_to_string(a, scopes[i], NULL);
        char *y = xmppd_stanza_to_string(b, scopes[i], NULL);
        assert_non_null(x);
        assert_non_null(y);
        assert_string_equal(x, y);
        xbuf bx = { 0 }, by = { 0 };
        assert_int_equal(stanza_serialise(&bx, a, scopes[i]), 0);
        assert_int_equal(stanza_serialise(&by, b, scopes[i]), 0);
        assert_int_equal(bx.len, strlen(x));
        assert_int_equal(by.len, strlen(x));
        assert_memory_equal(bx.p, x, bx.len);
        assert_memory_equal(by.p, x, by.len);
        xbuf_free(&bx);
        xbuf_free(&by);
        free(x);
        free(y);
    }
}

#define COW_SOURCE                                                                               \
    "<message from='a@x/r' to='room@x' type='groupchat' id='m1' xml:lang='en'>hello "          \
    "<body>a &amp; b</body> world<html xmlns='http://jabber.org/protocol/xhtml-im'>"          \
    "<body xmlns='http://www.w3.org/1999/xhtml'><p>a <em>b</em> c</p></body></html>"          \
    "<x xmlns='urn:example:x' n='1'><y/></x></message>"

/* Fan-out copies are copy-on-write (stanza.c): they share one frozen tree
 * (the same text pointers) yet serialise, byte for byte, as deep copies
 * with their own 'to' would (RFC 6120 §8.1.1.1). */
static void cow_copies_share_and_equal_deep_copies(void **state)
{
    xmppd_stanza *p = parse(COW_SOURCE);
    const char *tos[] = { "u1@x/r", "o'&<@x", NULL };
    for (size_t i = 0; i < 3; i++) {
        xmppd_stanza *c = xmppd_stanza_copy_to(p, tos[i]);
        xmppd_stanza *d = deep_copy_to(p, tos[i]);
        assert_same_xml(c, d);
        /* a copy of a copy, deep or copy-on-write, is the same again */
        xmppd_stanza *cc = xmppd_stanza_copy_to(c, "v@x");
        xmppd_stanza *dd = deep_copy_to(d, "v@x");
        xmppd_stanza *cd = xmppd_stanza_copy(c);
        assert_same_xml(cc, dd);
        assert_same_xml(cd, d);
        assert_string_equal(xmppd_stanza_text(c), "hello  world");
        assert_string_equal(xmppd_stanza_attr(c, "type"), "groupchat");
        xmppd_stanza_unref(cc);
        xmppd_stanza_unref(dd);
        xmppd_stanza_unref(cd);
        xmppd_stanza_unref(c);
        xmppd_stanza_unref(d);
    }
    /* reads that return strings come from the one frozen tree */
    xmppd_stanza *c1 = xmppd_stanza_copy_to(p, "u1@x");
    xmppd_stanza *c2 = xmppd_stanza_copy_to(p, "u2@x");
    xmppd_stanza *c3 = xmppd_stanza_copy_to(c2, "u3@x");
    assert_ptr_equal(xmppd_stanza_child_text(c1, "body", NULL), xmppd_stanza_child_text(c2, "body", NULL));
    assert_ptr_equal(xmppd_stanza_text(c1), xmppd_stanza_text(c3));
    assert_ptr_not_equal(xmppd_stanza_text(c1), xmppd_stanza_text(p));
    assert_string_equal(xmppd_stanza_child_text(c1, "body", NULL), "a & b");
    assert_null(xmppd_stanza_child_text(c1, "subject", NULL));
    /* looking for a child a copy lacks keeps it shared */
    assert_null(xmppd_stanza_child(c1, "subject", NULL));
    assert_ptr_equal(xmppd_stanza_text(c1), xmppd_stanza_text(c2));
    /* an element handed out is the copy's own, with the copy as parent */
    xmppd_stanza *x = xmppd_stanza_child(c1, "x", "urn:example:x");
    assert_non_null(x);
    assert_ptr_equal(xmppd_stanza_parent(x), c1);
    assert_ptr_not_equal(xmppd_stanza_text(c1), xmppd_stanza_text(c2));
    assert_string_equal(xmppd_stanza_text(c1), xmppd_stanza_text(c2));
    xmppd_stanza_unref(c1);
    xmppd_stanza_unref(c2);
    xmppd_stanza_unref(c3);
    xmppd_stanza_unref(p);
}

/* A change made to one copy is that copy's alone: the source and the
 * other copies (made before or after) are untouched, and the changed copy
 * is what a deep copy changed the same way would be. */
static void cow_change_to_a_copy_stays_in_it(void **state)
{
    xmppd_stanza *p = parse(COW_SOURCE);
    char *before = xmppd_stanza_to_string(p, NULL, NULL);
    xmppd_stanza *c[6], *d[6];
    for (int i = 0; i < 6; i++) {
        char to[16];
        snprintf(to, sizeof(to), "u%d@x/r", i);
        c[i] = xmppd_stanza_copy_to(p, to);
        d[i] = deep_copy_to(p, to);
    }
    /* 0: an attribute of the top element (no tree of its own needed) */
    for (int k = 0; k < 2; k++) {
        xmppd_stanza *s = k ? d[0] : c[0];
        xmppd_stanza_set_attr(s, "from", "room@x/nick");
        xmppd_stanza_set_attr(s, "id", NULL);
    }
    /* 1: an element deep inside, found with child */
    for (int k = 0; k < 2; k++) {
        xmppd_stanza *s = k ? d[1] : c[1];
        xmppd_stanza *em = xmppd_stanza_child(xmppd_stanza_child(xmppd_stanza_child(
            xmppd_stanza_child(s, "html", NULL), "body", NULL), "p", NULL), "em", NULL);
        assert_non_null(em);
        xmppd_stanza_set_text(em, "B");
        xmppd_stanza_set_attr(em, "class", "k");
    }
    /* 2: a child added (a stanza-id, a delay) */
    for (int k = 0; k < 2; k++) {
        xmppd_stanza *s = k ? d[2] : c[2];
        xmppd_stanza *id = xmppd_stanza_tag(s, "stanza-id", "urn:xmpp:sid:0");
        xmppd_stanza_set_attr(id, "id", "abc");
    }
    /* 3: a child removed, found with first/next */
    for (int k = 0; k < 2; k++) {
        xmppd_stanza *s = k ? d[3] : c[3];
        xmppd_stanza *b = xmppd_stanza_first(s);
        xmppd_stanza_remove(s, xmppd_stanza_next(b));
    }
    /* 4: text of the top element */
    for (int k = 0; k < 2; k++) {
        xmppd_stanza *s = k ? d[4] : c[4];
        xmppd_stanza_add_text(s, "!", 1);
        xmppd_stanza *y = xmppd_stanza_tag(s, "y", NULL);
        xmppd_stanza_add_text(y, "z", 1);
    }
    /* 5: the copy inside another tree (a carbon's <forwarded/>) */
    xmppd_stanza *fw[2];
    for (int k = 0; k < 2; k++) {
        fw[k] = xmppd_stanza_new("forwarded", "urn:xmpp:forward:0");
        assert_non_null(xmppd_stanza_add(fw[k], xmppd_stanza_ref(k ? d[5] : c[5])));
        xmppd_stanza_set_text(xmppd_stanza_child(k ? d[5] : c[5], "body", NULL), "fw");
    }
    assert_same_xml(fw[0], fw[1]);
    for (int i = 0; i < 6; i++)
        assert_same_xml(c[i], d[i]);
    char *after = xmppd_stanza_to_string(p, NULL, NULL);
    assert_string_equal(before, after);
    /* a copy made now is still the source's */
    xmppd_stanza *late = xmppd_stanza_copy_to(p, "late@x");
    xmppd_stanza *late_d = deep_copy_to(p, "late@x");
    assert_same_xml(late, late_d);
    xmppd_stanza_unref(p); /* copies outlive their source */
    for (int i = 0; i < 6; i++)
        assert_same_xml(c[i], d[i]);
    for (int i = 0; i < 6; i++) {
        xmppd_stanza_unref(c[i]);
        xmppd_stanza_unref(d[i]);
    }
    assert_same_xml(fw[0], fw[1]);
    xmppd_stanza_unref(fw[0]);
    xmppd_stanza_unref(fw[1]);
    assert_same_xml(late, late_d);
    xmppd_stanza_unref(late);
    xmppd_stanza_unref(late_d);
    free(before);
    free(after);
}

/* Changing the source after copying changes none of the copies; copies
 * made afterwards show the change. */
static void cow_change_to_the_source_stays_in_it(void **state)
{
    xmppd_stanza *p = parse(COW_SOURCE);
    xmppd_stanza *c1 = xmppd_stanza_copy_to(p, "u1@x");
    xmppd_stanza *d1 = deep_copy_to(p, "u1@x");
    xmppd_stanza *x = xmppd_stanza_child(p, "x", NULL);
    xmppd_stanza_set_attr(x, "n", "2");
    xmppd_stanza *c2 = xmppd_stanza_copy_to(p, "u2@x");
    xmppd_stanza *d2 = deep_copy_to(p, "u2@x");
    xmppd_stanza_add_text(xmppd_stanza_child(x, "y", NULL), "t", 1);
    xmppd_stanza_remove(p, xmppd_stanza_child(p, "body", NULL));
    xmppd_stanza_set_attr(p, "type", "chat");
    xmppd_stanza_set_text(p, NULL);
    xmppd_stanza *c3 = xmppd_stanza_copy_to(p, "u3@x");
    xmppd_stanza *d3 = deep_copy_to(p, "u3@x");
    /* the source becomes a child elsewhere */
    xmppd_stanza *wrap = xmppd_stanza_new("wrap", "urn:example:w");
    xmppd_stanza_add(wrap, p);
    xmppd_stanza_tag(p, "late", NULL);
    assert_same_xml(c1, d1);
    assert_same_xml(c2, d2);
    assert_same_xml(c3, d3);
    assert_string_equal(xmppd_stanza_child_text(c3, "body", NULL) ? "found" : "none", "none");
    assert_string_equal(xmppd_stanza_attr(xmppd_stanza_child(c1, "x", NULL), "n"), "1");
    xmppd_stanza_unref(wrap);
    xmppd_stanza_unref(c1);
    xmppd_stanza_unref(d1);
    assert_same_xml(c2, d2);
    xmppd_stanza_unref(c2);
    xmppd_stanza_unref(d2);
    xmppd_stanza_unref(c3);
    xmppd_stanza_unref(d3);
}

/* The router parses a fan-out's sender once (xml/fanout.h): the copies
 * share the JID; a copy whose 'from' changed, or a stanza that is no copy,
 * gets none (the router parses its own). The hold keeps the JID alive
 * while a hook changes the copy and the source is gone. */
static void cow_copies_share_the_parsed_sender(void **state)
{
    xmppd_stanza *p = parse("<message from='Romeo@Example.net/Orchard' type='chat'><body>x</body></message>");
    xmppd_stanza *c1 = xmppd_stanza_copy_to(p, "a@x");
    xmppd_stanza *c2 = xmppd_stanza_copy_to(p, "b@x");
    xmppd_stanza *h1, *h2, *h3, *h4;
    const xmppd_jid *j1 = stanza_fanout_from(c1, &h1);
    const xmppd_jid *j2 = stanza_fanout_from(c2, &h2);
    assert_non_null(j1);
    assert_ptr_equal(j1, j2);
    assert_string_equal(j1->full, "romeo@example.net/Orchard");
    assert_null(stanza_fanout_from(p, &h3));
    assert_null(h3);
    xmppd_stanza_set_attr(c2, "from", "other@x");
    assert_null(stanza_fanout_from(c2, &h4));
    assert_null(h4);
    xmppd_stanza_unref(p);
    xmppd_stanza_tag(c1, "x", "urn:example:x"); /* c1 takes its own tree */
    assert_null(stanza_fanout_from(c1, &h4));
    xmppd_stanza_unref(c1);
    xmppd_stanza_unref(c2);
    assert_string_equal(j1->bare, "romeo@example.net"); /* still held */
    xmppd_stanza_unref(h1);
    xmppd_stanza_unref(h2);
    /* an invalid sender: the router parses (and refuses) it itself */
    xmppd_stanza *bad = parse("<message from='a@@b' to='c@d'/>");
    xmppd_stanza *bc = xmppd_stanza_copy_to(bad, "e@f");
    assert_null(stanza_fanout_from(bc, &h3));
    assert_null(h3);
    xmppd_stanza_unref(bc);
    xmppd_stanza_unref(bad);
}

/* A reader gives what xmppd_stanza_from_string gives, text after text,
 * whatever came before (a bad text must not spoil the next good one). */
static void reader_parses_like_from_string(void **state)
{
    static const char *bad[] = {
        "<a><!-- c --></a>", "<a><?pi x?></a>", "<a>&foo;</a>", "<a/><b/>", "<a>", "text",
        "", "<a/>text", "<a/></stream:stream>", "<?xml version='1.0'?><a/>", "<a b='1' b='2'/>",
        "<p:a/>", "</a>", "<a/> <",
    };
    xmppd_stanza_reader *r = xmppd_stanza_reader_new(XMPPD_NS_CLIENT);
    assert_non_null(r);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *good = "<message xmlns:x='urn:x' to='b@h'><body>hi &amp; <x:y/></body></message>\n";
        xmppd_stanza *s = xmppd_stanza_reader_parse(r, good, strlen(good));
        assert_non_null(s);
        assert_string_equal(xmppd_stanza_ns(s), XMPPD_NS_CLIENT);
        assert_string_equal(xmppd_stanza_child_text(s, "body", XMPPD_NS_CLIENT), "hi & ");
        assert_non_null(xmppd_stanza_child(xmppd_stanza_child(s, "body", XMPPD_NS_CLIENT), "y", "urn:x"));
        xmppd_stanza_unref(s);
        /* the prefix was the previous element's only */
        s = xmppd_stanza_reader_parse(r, "<x:y/>", 6);
        assert_null(s);
        s = xmppd_stanza_reader_parse(r, bad[i], strlen(bad[i]));
        if (s)
            fail_msg("accepted: %s", bad[i]);
    }
    xmppd_stanza *s = xmppd_stanza_reader_parse(r, "<presence/>", 11);
    assert_non_null(s);
    assert_string_equal(xmppd_stanza_name(s), "presence");
    xmppd_stanza_unref(s);
    xmppd_stanza_reader_free(r);
}

/* Writes s as a stream does, against ns, into a NUL-terminated string. */
static char *stream_text(const xmppd_stanza *s, const char *ns)
{
    xbuf b = { 0 };
    assert_int_equal(stanza_serialise(&b, s, ns), 0);
    xbuf_put(&b, "", 1);
    assert_false(b.oom);
    return b.p;
}

/* Issue 18: a stored stanza read back is written as the text it was
 * stored as (double quotes and a character reference show that it is not
 * serialised again), a fan-out copy of it with its own 'to', and any
 * change, anywhere in the tree, makes it serialised from the tree. */
static void reader_text_is_the_ready_serialisation(void **state)
{
    static const char stored[] =
        " <message to=\"b@h/r\" type='chat'><body>h&#105; &amp; &quot;</body>"
        "<delay xmlns=\"urn:xmpp:delay\" stamp='2026-12-03T00:00:00.000Z'/></message>\n";
    const size_t trimmed_len = sizeof(stored) - 3; /* no leading space, no newline */
    xmppd_stanza_reader *r = xmppd_stanza_reader_new(XMPPD_NS_CLIENT);
    assert_non_null(r);
    xmppd_stanza *s = xmppd_stanza_reader_parse(r, stored, strlen(stored));
    assert_non_null(s);
    /* the same on c2s and s2s streams, as the tree would be */
    for (int i = 0; i < 2; i++) {
        char *out = stream_text(s, i ? XMPPD_NS_SERVER : XMPPD_NS_CLIENT);
        assert_int_equal(strlen(out), trimmed_len);
        assert_memory_equal(out, stored + 1, trimmed_len);
        free(out);
    }
    /* a fan-out copy: the stored text with its own 'to' (escaped) */
    xmppd_stanza *c = xmppd_stanza_copy_to(s, "c@h/'x");
    char *out = stream_text(c, XMPPD_NS_CLIENT);
    assert_string_equal(out, "<message to=\"c@h/&apos;x\" type='chat'><body>h&#105; &amp; &quot;</body>"
                             "<delay xmlns=\"urn:xmpp:delay\" stamp='2026-12-03T00:00:00.000Z'/></message>");
    free(out);
    xmppd_stanza_unref(c);
    /* a change inside drops the text: written from the tree */
    assert_int_equal(xmppd_stanza_set_attr(xmppd_stanza_child(s, "delay", "urn:xmpp:delay"), "from", "h"), 0);
    assert_stream_xml(s, XMPPD_NS_CLIENT,
                      "<message to='b@h/r' type='chat'><body>hi &amp; \"</body>"
                      "<delay xmlns='urn:xmpp:delay' stamp='2026-12-03T00:00:00.000Z' from='h'/></message>");
    xmppd_stanza_unref(s);
    /* a namespace declared on the top element, or no 'to': from the tree */
    static const char *const own[] = {
        "<message xmlns='jabber:client' to=\"b@h\"><body>x</body></message>",
        "<message xmlns:x='urn:x' to=\"b@h\"><x:y/></message>",
        "<message type=\"chat\"><body>x</body></message>",
    };
    static const char *const want[] = {
        "<message to='b@h'><body>x</body></message>",
        "<message to='b@h'><y xmlns='urn:x'/></message>",
        "<message type='chat'><body>x</body></message>",
    };
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        s = xmppd_stanza_reader_parse(r, own[i], strlen(own[i]));
        assert_non_null(s);
        assert_stream_xml(s, XMPPD_NS_CLIENT, want[i]);
        xmppd_stanza_unref(s);
    }
    xmppd_stanza_reader_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(build_and_serialise),
        cmocka_unit_test(attributes_replace_and_remove),
        cmocka_unit_test(rfc6120_11_escaping_round_trip),
        cmocka_unit_test(rfc6120_11_escaping_at_every_offset),
        cmocka_unit_test(xml_1_0_normalisation_survives_round_trip),
        cmocka_unit_test(rfc6120_4_8_3_child_namespaces),
        cmocka_unit_test(rfc6120_4_8_3_client_vs_server_default),
        cmocka_unit_test(implicit_namespace_follows_parent),
        cmocka_unit_test(mixed_content_keeps_document_order),
        cmocka_unit_test(copy_is_deep_and_detached),
        cmocka_unit_test(refcount_child_outlives_parent),
        cmocka_unit_test(add_refuses_second_parent_and_cycles),
        cmocka_unit_test(rfc6120_11_1_from_string_is_restricted),
        cmocka_unit_test(reply_swaps_addresses),
        cmocka_unit_test(rfc6120_8_3_error_reply),
        cmocka_unit_test(test_xml_namespace_element_round_trip),
        cmocka_unit_test(copy_to_shares_text_with_own_to),
        cmocka_unit_test(copy_to_replaces_to_and_child_source),
        cmocka_unit_test(cow_copies_share_and_equal_deep_copies),
        cmocka_unit_test(cow_change_to_a_copy_stays_in_it),
        cmocka_unit_test(cow_change_to_the_source_stays_in_it),
        cmocka_unit_test(cow_copies_share_the_parsed_sender),
        cmocka_unit_test(reader_parses_like_from_string),
        cmocka_unit_test(reader_text_is_the_ready_serialisation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
