/* mod_carbons' pure parts: XEP-0280 §6 eligibility with XEP-0334 hints,
 * XEP-0297 wrapping, and the Bind2 inline request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../modules/carbons/carbons_rules.h"

static xmppd_stanza *parse_ns(const char *xml, const char *ns)
{
    xmppd_stanza *s = xmppd_stanza_from_string(xml, strlen(xml), ns);
    assert_non_null(s);
    return s;
}

static xmppd_stanza *parse(const char *xml)
{
    return parse_ns(xml, XMPPD_NS_CLIENT);
}

static bool eligible(const char *xml)
{
    xmppd_stanza *s = parse(xml);
    bool r = carbons_eligible(s);
    xmppd_stanza_unref(s);
    return r;
}

static void test_eligible_types(void **state)
{
    (void)state;
    /* §6: chat always, normal with a body */
    assert_true(eligible("<message type='chat'><body>hi</body></message>"));
    assert_true(eligible("<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"));
    assert_true(eligible("<message><body>hi</body></message>"));
    assert_true(eligible("<message type='normal'><body>hi</body></message>"));
    assert_false(eligible("<message type='normal'><received xmlns='urn:xmpp:receipts' id='x'/></message>"));
    assert_false(eligible("<message type='groupchat'><body>hi</body></message>"));
    assert_false(eligible("<message type='headline'><body>news</body></message>"));
    assert_false(eligible("<message type='error'><body>hi</body></message>")); /* judged by the module */
    assert_false(eligible("<presence/>"));
    assert_false(eligible("<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"));
}

static void test_eligible_hints_and_rooms(void **state)
{
    (void)state;
    /* §7 and XEP-0334 */
    assert_false(eligible("<message type='chat'><body>x</body><private xmlns='urn:xmpp:carbons:2'/></message>"));
    assert_false(eligible("<message type='chat'><body>x</body><no-copy xmlns='urn:xmpp:hints'/></message>"));
    assert_true(eligible("<message type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>"));
    /* a room's private message is not copied; its invitation is */
    assert_false(eligible("<message type='chat'><body>pm</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>"));
    assert_true(eligible("<message><x xmlns='http://jabber.org/protocol/muc#user'><invite from='a@b'/></x></message>"));
    /* a carbon is never copied again */
    assert_false(eligible("<message type='chat'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
                          "<message type='chat'><body>x</body></message></forwarded></sent></message>"));
}

static void test_wrapper_and_private(void **state)
{
    (void)state;
    xmppd_stanza *s = parse("<message><received xmlns='urn:xmpp:carbons:2'/></message>");
    assert_non_null(carbons_wrapper_of(s));
    xmppd_stanza_unref(s);
    s = parse("<message><sent xmlns='urn:xmpp:carbons:2'/><private xmlns='urn:xmpp:carbons:2'/></message>");
    assert_non_null(carbons_wrapper_of(s));
    assert_non_null(carbons_private_of(s));
    xmppd_stanza_unref(s);
    s = parse("<message><received xmlns='urn:xmpp:carbons:1'/><private/></message>");
    assert_null(carbons_wrapper_of(s));
    assert_null(carbons_private_of(s));
    xmppd_stanza_unref(s);
}

static char *wrap_str(xmppd_stanza *msg, const char *dir)
{
    xmppd_stanza *w = carbons_wrap(msg, dir, "romeo@montague.example", "romeo@montague.example/home");
    assert_non_null(w);
    char *out = xmppd_stanza_to_string(w, XMPPD_NS_CLIENT, NULL);
    xmppd_stanza_unref(w);
    return out;
}

static void test_wrap(void **state)
{
    (void)state;
    xmppd_stanza *m = parse("<message from='juliet@capulet.example/balcony' to='romeo@montague.example/garden' "
                            "type='chat'><body>Wherefore</body><thread>t1</thread></message>");
    char *out = wrap_str(m, "received");
    assert_string_equal(out,
        "<message from='romeo@montague.example' to='romeo@montague.example/home' type='chat'>"
        "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
        "<message xmlns='jabber:client' from='juliet@capulet.example/balcony' to='romeo@montague.example/garden' "
        "type='chat'><body>Wherefore</body><thread>t1</thread></message></forwarded></received></message>");
    free(out);
    xmppd_stanza_unref(m);
    /* no type: none on the wrapper either */
    m = parse("<message to='juliet@capulet.example'><body>x</body></message>");
    out = wrap_str(m, "sent");
    assert_non_null(strstr(out, "<message from='romeo@montague.example' to='romeo@montague.example/home'><sent "));
    free(out);
    xmppd_stanza_unref(m);
}

static void test_wrap_server_stream_message(void **state)
{
    (void)state;
    /* A message read from a server-to-server stream is in jabber:server:
     * inside <forwarded/> on a client stream it must read jabber:client. */
    xmppd_stanza *m = parse_ns("<message from='juliet@capulet.example/b' to='romeo@montague.example' type='chat'>"
                               "<body>from afar</body></message>", XMPPD_NS_SERVER);
    assert_string_equal(xmppd_stanza_ns(m), XMPPD_NS_SERVER);
    char *out = wrap_str(m, "received");
    assert_non_null(strstr(out, "<message xmlns='jabber:client' from='juliet@capulet.example/b'"));
    assert_null(strstr(out, "jabber:server"));
    free(out);
    xmppd_stanza_unref(m);
}

static void test_inline_enable(void **state)
{
    (void)state;
    xmppd_stanza *e = parse_ns("<enable xmlns='urn:xmpp:carbons:2'/>", "urn:xmpp:bind:0");
    assert_true(carbons_inline_enable(e));
    xmppd_stanza_unref(e);
    e = parse_ns("<enable xmlns='urn:xmpp:sm:3'/>", "urn:xmpp:bind:0");
    assert_false(carbons_inline_enable(e));
    xmppd_stanza_unref(e);
    e = parse_ns("<disable xmlns='urn:xmpp:carbons:2'/>", "urn:xmpp:bind:0");
    assert_false(carbons_inline_enable(e));
    xmppd_stanza_unref(e);
    assert_false(carbons_inline_enable(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eligible_types),
        cmocka_unit_test(test_eligible_hints_and_rooms),
        cmocka_unit_test(test_wrapper_and_private),
        cmocka_unit_test(test_wrap),
        cmocka_unit_test(test_wrap_server_stream_message),
        cmocka_unit_test(test_inline_enable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
