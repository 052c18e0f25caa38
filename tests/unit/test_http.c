/* The HTTP layer's pure parts: UTF-8 validation (RFC 3629, for RFC 6455
 * §8.1), percent-decoding, trusted-proxy address matching, one element per
 * WebSocket message (RFC 7395 §3.3.3) and BOSH body parsing (XEP-0124 §4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "http/http.h"

static bool utf8(const char *s)
{
    return http_utf8_valid((const unsigned char *)s, strlen(s));
}

static void test_utf8(void **state)
{
    assert_true(utf8("plain ascii"));
    assert_true(utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    assert_false(utf8("\xc3\x28"));              /* bad continuation */
    assert_false(utf8("\xc0\xaf"));              /* overlong '/' */
    assert_false(utf8("\xe0\x80\xaf"));          /* overlong */
    assert_false(utf8("\xed\xa0\x80"));          /* surrogate U+D800 */
    assert_false(utf8("\xf4\x90\x80\x80"));      /* past U+10FFFF */
    assert_false(utf8("\xe2\x82"));              /* truncated */
    assert_false(utf8("\xff"));
}

static void test_pct_decode(void **state)
{
    char *s = http_pct_decode("/a%20b/%C3%A9", 13);
    assert_string_equal(s, "/a b/\xc3\xa9");
    free(s);
    assert_null(http_pct_decode("/%00", 4));
    assert_null(http_pct_decode("/%zz", 4));
    assert_null(http_pct_decode("/%4", 3));
}

static void test_ip_in(void **state)
{
    const char *const list[] = { "127.0.0.1", "10.0.0.0/8", "2001:db8::/32", NULL };
    assert_true(http_ip_in("127.0.0.1", list));
    assert_false(http_ip_in("127.0.0.2", list));
    assert_true(http_ip_in("10.200.3.4", list));
    assert_false(http_ip_in("11.0.0.1", list));
    assert_true(http_ip_in("2001:db8:1::5", list));
    assert_false(http_ip_in("2001:db9::1", list));
    assert_false(http_ip_in("not an address", list));
}

static int feed(ws_msg *m, const char *text, xmppd_stanza **el, const char **cond)
{
    return ws_msg_feed(m, (const uint8_t *)text, strlen(text), el, cond);
}

static void test_ws_messages(void **state)
{
    ws_msg *m = ws_msg_new(1000, 8);
    xmppd_stanza *el;
    const char *cond;
    assert_int_equal(feed(m, "<message xmlns='jabber:client'><body>x</body></message>", &el, &cond),
                     WS_MSG_OK);
    assert_string_equal(xmppd_stanza_name(el), "message");
    xmppd_stanza_unref(el);
    assert_int_equal(feed(m, "  \n", &el, &cond), WS_MSG_OK); /* blank: nothing */
    assert_null(el);
    assert_int_equal(feed(m, "<a/><b/>", &el, &cond), WS_MSG_STREAM_ERROR);
    assert_string_equal(cond, "not-well-formed");
    ws_msg_free(m);

    m = ws_msg_new(1000, 8);
    assert_int_equal(feed(m, "<a>", &el, &cond), WS_MSG_STREAM_ERROR); /* partial */
    ws_msg_free(m);
    m = ws_msg_new(1000, 8);
    assert_int_equal(feed(m, "<!-- no -->", &el, &cond), WS_MSG_STREAM_ERROR);
    assert_string_equal(cond, "restricted-xml");
    ws_msg_free(m);
    m = ws_msg_new(100, 8);
    char big[300];
    memset(big, 'x', sizeof(big));
    memcpy(big, "<a>", 3);
    strcpy(big + sizeof(big) - 5, "</a>");
    assert_int_equal(feed(m, big, &el, &cond), WS_MSG_STREAM_ERROR);
    assert_string_equal(cond, "policy-violation");
    ws_msg_free(m);
    m = ws_msg_new(1000, 8);
    assert_int_equal(feed(m, "<a>\xc3\x28</a>", &el, &cond), WS_MSG_BAD_UTF8);
    ws_msg_free(m);
}

static void test_bosh_body(void **state)
{
    const char *ok = "<body rid='1' xmlns='http://jabber.org/protocol/httpbind'>"
                     "<message xmlns='jabber:client'/></body>";
    xmppd_stanza *b = bosh_parse_body(ok, strlen(ok), 10000, 8);
    assert_non_null(b);
    assert_string_equal(xmppd_stanza_attr(b, "rid"), "1");
    assert_string_equal(xmppd_stanza_ns(xmppd_stanza_first(b)), "jabber:client");
    xmppd_stanza_unref(b);
    static const char *const bad[] = {
        "<body xmlns='urn:other'/>", "<notbody xmlns='http://jabber.org/protocol/httpbind'/>",
        "<body xmlns='http://jabber.org/protocol/httpbind'>", "",
        "<?xml version='1.0'?><!DOCTYPE body><body xmlns='http://jabber.org/protocol/httpbind'/>",
        "<body xmlns='http://jabber.org/protocol/httpbind'/><body xmlns='http://jabber.org/protocol/httpbind'/>",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_null(bosh_parse_body(bad[i], strlen(bad[i]), 10000, 8));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_ip_in),
        cmocka_unit_test(test_ws_messages),
        cmocka_unit_test(test_bosh_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
