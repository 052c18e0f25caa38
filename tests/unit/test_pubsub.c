/* The XEP-0060 engine (modules/pubsub) without sockets: node configuration
 * forms and publish-options preconditions (XEP-0223), the stored layout of
 * a service and its round trip, item limits, a publication through the
 * protocol, and the bookmarks conversion (modules/bookmarks). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../modules/bookmarks/bm.h"
#include "../../modules/pubsub/ps.h"

static const ps_limits lim = { .max_nodes = 4, .max_items = 10, .max_item_bytes = 1000,
                               .max_total_items = 20, .max_subscriptions = 5 };

static xmppd_stanza *parse(const char *xml)
{
    xmppd_stanza *s = xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT);
    assert_non_null(s);
    return s;
}

static xmppd_form *form(const char *fields)
{
    char xml[2048];
    snprintf(xml, sizeof(xml), "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
                               "<value>" PS_FORM_PUBLISH_OPTIONS "</value></field>%s</x>", fields);
    xmppd_stanza *x = parse(xml);
    xmppd_form *f = xmppd_form_parse(x, NULL);
    xmppd_stanza_unref(x);
    assert_non_null(f);
    return f;
}

static ps_config defaults(void)
{
    return (ps_config){ .access = PS_ACCESS_PRESENCE, .max_items = 1, .persist_items = true,
                        .send_last = PS_SENDLAST_ON_SUB_AND_PRESENCE,
                        .deliver_notifications = true, .deliver_payloads = true };
}

/* XEP-0060 §16.4.4: fields apply; bad values, unknown fields, values above
 * a limit and access models not offered are refused with their codes, and
 * leave the configuration as it was. */
static void config_apply(void **state)
{
    (void)state;
    ps_config c = defaults();
    const char *why = NULL;
    xmppd_form *f = form("<field var='pubsub#access_model'><value>whitelist</value></field>"
                         "<field var='pubsub#max_items'><value>max</value></field>"
                         "<field var='pubsub#title'><value>T</value></field>"
                         "<field var='pubsub#roster_groups_allowed'><value>a</value><value>b</value></field>");
    assert_int_equal(ps_config_apply(&c, f, &lim, true, &why), 0);
    xmppd_form_free(f);
    assert_int_equal(c.access, PS_ACCESS_WHITELIST);
    assert_int_equal(c.max_items, PS_MAX_ITEMS_MAX);
    assert_string_equal(c.title, "T");
    assert_string_equal(c.groups[1], "b");
    static const struct { const char *field; int rc; } bad[] = {
        { "<field var='pubsub#bogus'><value>1</value></field>", -1 },
        { "<field var='pubsub#persist_items'><value>perhaps</value></field>", -1 },
        { "<field var='pubsub#max_items'><value>0</value></field>", -1 },
        { "<field var='pubsub#max_items'><value>11</value></field>", -2 },
        { "<field var='pubsub#node_type'><value>collection</value></field>", -2 },
        { "<field var='pubsub#access_model'><value>authorize</value></field>", -3 },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        f = form(bad[i].field);
        assert_int_equal(ps_config_apply(&c, f, &lim, true, &why), bad[i].rc);
        xmppd_form_free(f);
    }
    f = form("<field var='pubsub#access_model'><value>presence</value></field>");
    assert_int_equal(ps_config_apply(&c, f, &lim, false, &why), -3); /* a service, not PEP */
    xmppd_form_free(f);
    assert_int_equal(c.access, PS_ACCESS_WHITELIST);
    ps_config_clear(&c);
}

/* XEP-0060 §7.1.5 / XEP-0223: preconditions compare; "max" equals the
 * limit itself. */
static void config_preconditions(void **state)
{
    (void)state;
    ps_config c = defaults();
    c.max_items = 10;
    const char *why = NULL;
    xmppd_form *f = form("<field var='pubsub#max_items'><value>max</value></field>"
                         "<field var='pubsub#persist_items'><value>1</value></field>");
    assert_int_equal(ps_config_check(&c, f, &lim, &why), 0);
    xmppd_form_free(f);
    f = form("<field var='pubsub#access_model'><value>open</value></field>");
    assert_int_equal(ps_config_check(&c, f, &lim, &why), 1);
    xmppd_form_free(f);
    f = form("<field var='pubsub#send_last_published_item'><value>never</value></field>");
    assert_int_equal(ps_config_check(&c, f, &lim, &why), 1);
    xmppd_form_free(f);
    f = form("<field var='pubsub#nope'><value>1</value></field>");
    assert_int_equal(ps_config_check(&c, f, &lim, &why), -1);
    xmppd_form_free(f);
    ps_config_clear(&c);
}

/* ---- storage layout --------------------------------------------------------------- */

static int dropped;
static void count_drop(ps_service *s, const ps_node *n, const char *id, void *ctx)
{
    (void)s, (void)n, (void)id, (void)ctx;
    dropped++;
}

static ps_item *item(const char *id, const char *payload, uint64_t seq)
{
    ps_item *it = calloc(1, sizeof(*it));
    assert_non_null(it);
    it->id = strdup(id);
    it->publisher = strdup("a@example.org");
    it->payload = parse(payload);
    it->seq = seq;
    it->when_ms = 1000 * (int64_t)seq;
    return it;
}

/* Keys cannot collide whatever node names and ids hold. */
static void store_keys(void **state)
{
    (void)state;
    char *a = ps_key_item("a\nb", "c"), *b = ps_key_item("a", "\nbc"), *n = ps_key_node("x");
    assert_string_not_equal(a, b);
    assert_string_equal(n, "n:x");
    assert_string_equal(a, "i:3:a\nbc");
    free(a);
    free(b);
    free(n);
}

/* A service written as keyval entries and read back: configuration,
 * affiliations, subscriptions, items in publication order. max_items keeps
 * the newest, dropping the others through ops->drop_item. */
static void store_round_trip(void **state)
{
    (void)state;
    ps_ops ops = { .drop_item = count_drop };
    ps_config d = defaults();
    ps_service *s = ps_service_new("a@example.org", true, &ops, &lim, &d);
    ps_config cfg = d;
    cfg.max_items = 2;
    cfg.access = PS_ACCESS_OPEN;
    ps_node *n = ps_node_add(s, "urn:x", &cfg);
    assert_non_null(n);
    assert_int_equal(ps_aff_set(n, "b@example.org", PS_AFF_MEMBER), 0);
    dropped = 0;
    ps_item_put(n, item("1", "<x xmlns='urn:x'>1</x>", 1), NULL);
    ps_item_put(n, item("2", "<x xmlns='urn:x'>2</x>", 2), NULL);
    ps_item_put(n, item("3", "<x xmlns='urn:x'>3&amp;</x>", 3), NULL);
    assert_int_equal(dropped, 1);
    assert_int_equal(n->n_items, 2);
    assert_string_equal(n->first->id, "2");

    json_t *all = json_object();
    json_object_set_new(all, "n:urn:x", ps_node_json(n));
    for (ps_item *it = n->first; it; it = it->next) {
        char *k = ps_key_item(n->name, it->id);
        json_object_set_new(all, k, ps_item_json(it));
        free(k);
    }
    json_object_set_new(all, "i:9:bad", json_string("not an item"));
    ps_service *t = ps_service_new("a@example.org", true, &ops, &lim, &d);
    size_t bad = 0;
    assert_int_equal(ps_service_load(t, all, &bad), 0);
    assert_int_equal(bad, 1);
    ps_node *m = ps_node_find(t, "urn:x");
    assert_non_null(m);
    assert_int_equal(m->cfg.access, PS_ACCESS_OPEN);
    assert_int_equal(m->cfg.max_items, 2);
    assert_int_equal(ps_aff_get(m, "b@example.org"), PS_AFF_MEMBER);
    assert_int_equal(m->n_items, 2);
    assert_string_equal(m->first->id, "2");
    assert_string_equal(m->last->id, "3");
    assert_string_equal(xmppd_stanza_text(m->last->payload), "3&");
    assert_int_equal(t->seq, 3);
    json_decref(all);
    ps_service_free(s);
    ps_service_free(t);
}

/* ---- the protocol ------------------------------------------------------------------ */

static xmppd_stanza *last_reply;
static void keep_reply(ps_req *r, xmppd_stanza *reply)
{
    (void)r;
    xmppd_stanza_unref(last_reply);
    last_reply = reply;
}

static bool may_create(const ps_service *s, const xmppd_jid *from, void *ctx)
{
    (void)ctx;
    return !from || strcmp(from->bare, s->jid) == 0;
}

static void request(ps_service *s, const char *xml)
{
    xmppd_stanza *iq = parse(xml);
    xmppd_jid *from = xmppd_jid_parse("a@example.org/r");
    xmppd_event ev = { .name = "iq/bare", .stanza = iq, .from = from };
    ps_req r = { .svc = s, .ev = &ev, .reply = keep_reply };
    ps_handle_iq(&r);
    xmppd_jid_free(from);
    xmppd_stanza_unref(iq);
    assert_non_null(last_reply);
}

static const char *reply_type(void)
{
    return xmppd_stanza_attr(last_reply, "type");
}

/* XEP-0060 §7.1.4 auto-create with publish-options, §7.1.5 an unmet
 * precondition (<conflict/> + <precondition-not-met/>), §6.5 retrieval. */
static void protocol_publish(void **state)
{
    (void)state;
    ps_ops ops = { .may_create = may_create };
    ps_config d = defaults();
    ps_service *s = ps_service_new("a@example.org", true, &ops, &lim, &d);
    request(s, "<iq type='set' id='1'><pubsub xmlns='" PS_NS "'><publish node='n'><item id='i'>"
               "<x xmlns='urn:x'/></item></publish><publish-options><x xmlns='jabber:x:data' "
               "type='submit'><field var='FORM_TYPE'><value>" PS_FORM_PUBLISH_OPTIONS "</value>"
               "</field><field var='pubsub#access_model'><value>open</value></field></x>"
               "</publish-options></pubsub></iq>");
    assert_string_equal(reply_type(), "result");
    assert_int_equal(ps_node_find(s, "n")->cfg.access, PS_ACCESS_OPEN);
    request(s, "<iq type='set' id='2'><pubsub xmlns='" PS_NS "'><publish node='n'><item id='j'>"
               "<x xmlns='urn:x'/></item></publish><publish-options><x xmlns='jabber:x:data' "
               "type='submit'><field var='FORM_TYPE'><value>" PS_FORM_PUBLISH_OPTIONS "</value>"
               "</field><field var='pubsub#access_model'><value>whitelist</value></field></x>"
               "</publish-options></pubsub></iq>");
    assert_string_equal(reply_type(), "error");
    xmppd_stanza *err = xmppd_stanza_child(last_reply, "error", NULL);
    assert_string_equal(xmppd_stanza_attr(err, "type"), "cancel");
    assert_non_null(xmppd_stanza_child(err, "conflict", XMPPD_NS_STANZAS));
    assert_non_null(xmppd_stanza_child(err, "precondition-not-met", PS_NS_ERRORS));
    request(s, "<iq type='get' id='3'><pubsub xmlns='" PS_NS "'><items node='n'/></pubsub></iq>");
    assert_string_equal(reply_type(), "result");
    xmppd_stanza *items = xmppd_stanza_child(xmppd_stanza_first(last_reply), "items", NULL);
    assert_string_equal(xmppd_stanza_attr(xmppd_stanza_first(items), "id"), "i");
    assert_null(xmppd_stanza_next(xmppd_stanza_first(items)));
    request(s, "<iq type='set' id='4'><pubsub xmlns='" PS_NS "'><publish/></pubsub></iq>");
    err = xmppd_stanza_child(last_reply, "error", NULL);
    assert_non_null(xmppd_stanza_child(err, "nodeid-required", PS_NS_ERRORS));
    xmppd_stanza_unref(last_reply);
    last_reply = NULL;
    ps_service_free(s);
}

/* ---- bookmarks ---------------------------------------------------------------------- */

/* XEP-0048 <storage/> to XEP-0402 items and back: the same rooms, names,
 * autojoin, nicks; <url/>s of the old storage kept; an item's
 * <extensions/> kept when the XEP-0048 side cannot carry them. */
static void bookmarks_conversion(void **state)
{
    (void)state;
    xmppd_stanza *st = parse("<storage xmlns='storage:bookmarks'>"
                             "<conference jid='Room@Chat.Example' name='R' autojoin='1'><nick>n</nick></conference>"
                             "<conference jid='not a jid' name='bad'/>"
                             "<url name='u' url='https://example.org/'/></storage>");
    bm_list l;
    assert_int_equal(bm_from_storage(st, &l), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].jid, "room@chat.example");
    assert_true(l.v[0].autojoin);
    xmppd_stanza *items = parse("<items xmlns='" PS_NS "' node='urn:xmpp:bookmarks:1'>"
                                "<item id='room@chat.example'><conference xmlns='urn:xmpp:bookmarks:1' "
                                "name='R' autojoin='true'><nick>n</nick><extensions><p xmlns='urn:p'/>"
                                "</extensions></conference></item></items>");
    bm_list have;
    assert_int_equal(bm_from_items(items, &have), 0);
    assert_true(bm_same(&l.v[0], bm_find(&have, "room@chat.example")));
    xmppd_stanza *conf = bm_to_conference(&l.v[0], bm_find(&have, "room@chat.example"));
    xmppd_stanza *ext = xmppd_stanza_child(conf, "extensions", "urn:xmpp:bookmarks:1");
    assert_non_null(ext);
    assert_non_null(xmppd_stanza_child(ext, "p", "urn:p"));
    xmppd_stanza *back = bm_to_storage(&have, st);
    char *xml = xmppd_stanza_to_string(back, XMPPD_NS_CLIENT, NULL);
    assert_string_equal(xml, "<storage xmlns='storage:bookmarks'><conference jid='room@chat.example' "
                             "name='R' autojoin='true'><nick>n</nick></conference><url name='u' "
                             "url='https://example.org/'/></storage>");
    free(xml);
    xmppd_stanza_unref(back);
    xmppd_stanza_unref(conf);
    xmppd_stanza_unref(items);
    xmppd_stanza_unref(st);
    bm_list_clear(&l);
    bm_list_clear(&have);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_apply),
        cmocka_unit_test(config_preconditions),
        cmocka_unit_test(store_keys),
        cmocka_unit_test(store_round_trip),
        cmocka_unit_test(protocol_publish),
        cmocka_unit_test(bookmarks_conversion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
