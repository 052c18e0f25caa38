/* mod_push's pure parts: reading <enable/> (XEP-0357 §5), what wakes a
 * phone, and the publish request with its summary and publish-options
 * (§7). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../modules/push/push_rules.h"

static xmppd_stanza *parse(const char *xml)
{
    xmppd_stanza *s = xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT);
    assert_non_null(s);
    return s;
}

/* NULL when parsed (r filled), else the condition. */
static const char *enable(const char *xml, push_reg_req *r)
{
    xmppd_stanza *s = parse(xml);
    const char *cond = NULL, *text = NULL;
    int rc = push_parse_enable(s, r, &cond, &text);
    xmppd_stanza_unref(s);
    if (rc == 0)
        return NULL;
    assert_non_null(cond);
    return cond;
}

#define OPTS "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>" \
             "<value>http://jabber.org/protocol/pubsub#publish-options</value></field>"

static void test_enable(void **state)
{
    (void)state;
    push_reg_req r;
    assert_null(enable("<enable xmlns='urn:xmpp:push:0' jid='Push.Example' node='n1'/>", &r));
    assert_string_equal(r.jid, "push.example");
    assert_string_equal(r.node, "n1");
    assert_int_equal(json_object_size(r.options), 0);
    push_reg_req_clear(&r);
    assert_null(enable("<enable xmlns='urn:xmpp:push:0' jid='push.example' node='n2'>" OPTS
                       "<field var='secret'><value>s3</value></field>"
                       "<field var='endpoint'><value>a</value><value>b</value></field></x></enable>", &r));
    assert_int_equal(json_object_size(r.options), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r.options, "secret"), 0)), "s3");
    assert_int_equal(json_array_size(json_object_get(r.options, "endpoint")), 2);
    push_reg_req_clear(&r);
}

static void test_enable_errors(void **state)
{
    (void)state;
    push_reg_req r;
    assert_string_equal(enable("<enable xmlns='urn:xmpp:push:0' node='n'/>", &r), "bad-request");
    assert_string_equal(enable("<enable xmlns='urn:xmpp:push:0' jid='a@@b' node='n'/>", &r), "bad-request");
    assert_string_equal(enable("<enable xmlns='urn:xmpp:push:0' jid='push.example'/>", &r), "bad-request");
    assert_string_equal(enable("<enable xmlns='urn:xmpp:push:0' jid='push.example' node=''/>", &r), "bad-request");
    /* the form must be submitted publish-options */
    assert_string_equal(enable("<enable xmlns='urn:xmpp:push:0' jid='p' node='n'><x xmlns='jabber:x:data' "
                               "type='submit'><field var='FORM_TYPE'><value>urn:other</value></field></x></enable>", &r),
                        "bad-request");
    assert_string_equal(enable("<enable xmlns='urn:xmpp:push:0' jid='p' node='n'><x xmlns='jabber:x:data' "
                               "type='form'><field var='FORM_TYPE'><value>"
                               "http://jabber.org/protocol/pubsub#publish-options</value></field></x></enable>", &r),
                        "bad-request");
    /* limits */
    char *big = malloc(PUSH_OPTION_VALUE + 400);
    strcpy(big, "<enable xmlns='urn:xmpp:push:0' jid='p' node='n'>" OPTS "<field var='s'><value>");
    size_t n = strlen(big);
    memset(big + n, 'v', PUSH_OPTION_VALUE + 1);
    strcpy(big + n + PUSH_OPTION_VALUE + 1, "</value></field></x></enable>");
    assert_string_equal(enable(big, &r), "bad-request");
    free(big);
}

static bool wanted(const char *xml)
{
    xmppd_stanza *s = parse(xml);
    bool w = push_message_wanted(s);
    xmppd_stanza_unref(s);
    return w;
}

static void test_wanted(void **state)
{
    (void)state;
    assert_true(wanted("<message type='chat'><body>hi</body></message>"));
    assert_true(wanted("<message><body>hi</body></message>"));
    assert_true(wanted("<message type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>"));
    assert_true(wanted("<message><propose xmlns='urn:xmpp:jingle-message:0' id='c'/></message>"));
    assert_false(wanted("<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"));
    assert_false(wanted("<message><received xmlns='urn:xmpp:receipts' id='x'/></message>"));
    assert_false(wanted("<message type='error'><body>bounced</body></message>"));
    assert_false(wanted("<message type='headline'><body>news</body></message>"));
    assert_false(wanted("<message type='groupchat'><body>room</body></message>"));
    assert_false(wanted("<presence/>"));
}

static void test_publish_iq(void **state)
{
    (void)state;
    json_t *opts = json_pack("{s:[s]}", "secret", "s3");
    push_summary sum = { 2, 0, "juliet@capulet.example", "Wherefore art thou?" };
    xmppd_stanza *iq = push_publish_iq("romeo@montague.example", "push.example", "n1", opts, &sum);
    assert_non_null(iq);
    char *s = xmppd_stanza_to_string(iq, XMPPD_NS_CLIENT, NULL);
    assert_string_equal(s,
        "<iq type='set' from='romeo@montague.example' to='push.example'>"
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n1'><item>"
        "<notification xmlns='urn:xmpp:push:0'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:push:summary</value></field>"
        "<field var='message-count'><value>2</value></field>"
        "<field var='last-message-sender'><value>juliet@capulet.example</value></field>"
        "<field var='last-message-body'><value>Wherefore art thou?</value></field>"
        "</x></notification></item></publish>"
        "<publish-options><x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
        "<field var='secret'><value>s3</value></field></x></publish-options></pubsub></iq>");
    free(s);
    xmppd_stanza_unref(iq);
    /* no options, a subscription request, no body */
    push_summary sub = { 0, 1, "nurse@capulet.example", NULL };
    json_t *none = json_object();
    iq = push_publish_iq("romeo@montague.example", "push.example", "n1", none, &sub);
    s = xmppd_stanza_to_string(iq, XMPPD_NS_CLIENT, NULL);
    assert_null(strstr(s, "publish-options"));
    assert_null(strstr(s, "message-count"));
    assert_non_null(strstr(s, "<field var='pending-subscription-count'><value>1</value></field>"));
    free(s);
    xmppd_stanza_unref(iq);
    json_decref(none);
    json_decref(opts);
}

static void test_body_cut_at_character(void **state)
{
    (void)state;
    char body[PUSH_BODY_MAX + 8];
    memset(body, 'a', PUSH_BODY_MAX - 1);
    strcpy(body + PUSH_BODY_MAX - 1, "\xc3\xa9tail"); /* é straddles the limit */
    push_summary sum = { 1, 0, NULL, body };
    xmppd_stanza *iq = push_publish_iq("a@b", "p", "n", NULL, &sum);
    char *s = xmppd_stanza_to_string(iq, XMPPD_NS_CLIENT, NULL);
    const char *v = strstr(s, "last-message-body'><value>") + strlen("last-message-body'><value>");
    assert_int_equal(strchr(v, '<') - v, PUSH_BODY_MAX - 1);
    free(s);
    xmppd_stanza_unref(iq);
}

static void test_key(void **state)
{
    (void)state;
    char *k = push_key("push.example", "node 1");
    assert_string_equal(k, "push.example node 1");
    free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enable),
        cmocka_unit_test(test_enable_errors),
        cmocka_unit_test(test_wanted),
        cmocka_unit_test(test_publish_iq),
        cmocka_unit_test(test_body_cut_at_character),
        cmocka_unit_test(test_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
