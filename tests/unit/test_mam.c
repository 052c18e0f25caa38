/* mod_mam's pure parts: XEP-0082 times, reading MAM queries (XEP-0313
 * §4), archiving preferences (XEP-0441). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../../modules/mam/mam_prefs.h"
#include "../../modules/mam/mam_request.h"
#include "../../modules/mam/mam_time.h"

static void test_time_parse(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(mam_time_parse("1970-01-01T00:00:00Z", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(mam_time_parse("2024-02-29T12:34:56.789Z", &ms), 0);
    assert_int_equal(ms, 1709210096789LL);
    assert_int_equal(mam_time_parse("2024-02-29T14:34:56.7891+02:00", &ms), 0);
    assert_int_equal(ms, 1709210096789LL);
    assert_int_equal(mam_time_parse("2024-02-29T07:04:56.7-05:30", &ms), 0);
    assert_int_equal(ms, 1709210096700LL);
    assert_int_equal(mam_time_parse("1969-12-31T23:59:59Z", &ms), 0);
    assert_int_equal(ms, -1000);
    assert_int_equal(mam_time_parse("2016-12-31T23:59:60Z", &ms), 0); /* leap second */
    const char *bad[] = { "", "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z",
                          "2024-01-01T24:00:00Z", "2024-01-01T00:60:00Z", "2024-01-01 00:00:00Z",
                          "2024-01-01T00:00:00", "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00Zx",
                          "2024-01-01T00:00:00+2:00", "2024-01-01T00:00:00+02:60", "24-01-01T00:00:00Z",
                          "2024-1-01T00:00:00Z", NULL };
    for (int i = 0; bad[i]; i++)
        assert_int_equal(mam_time_parse(bad[i], &ms), -1);
    assert_int_equal(mam_time_parse(NULL, &ms), -1);
}

static void test_time_format(void **state)
{
    (void)state;
    char buf[MAM_TIME_LEN];
    mam_time_format(1709210096789LL, buf, sizeof buf);
    assert_string_equal(buf, "2024-02-29T12:34:56.789Z");
    mam_time_format(-59645289599877LL, buf, sizeof buf); /* four digits before 1000 */
    assert_string_equal(buf, "0079-12-01T00:00:00.123Z");
    mam_time_format(-1, buf, sizeof buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
    int64_t ms;
    assert_int_equal(mam_time_parse(buf, &ms), 0);
    assert_int_equal(ms, -1);
}

/* Parses a query given as XML; returns the condition (NULL: parsed). */
static const char *parse(const char *xml, mam_request *r)
{
    xmppd_stanza *q = xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT);
    assert_non_null(q);
    const char *cond = NULL, *text = NULL;
    int rc = mam_request_parse(q, r, &cond, &text);
    xmppd_stanza_unref(q);
    if (rc == 0)
        return NULL;
    assert_non_null(cond);
    return cond;
}

#define Q(inner) "<query xmlns='urn:xmpp:mam:2' queryid='q1'>" inner "</query>"
#define F(fields) "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>" \
                  "<value>urn:xmpp:mam:2</value></field>" fields "</x>"

static void test_request_fields(void **state)
{
    (void)state;
    mam_request r;
    assert_null(parse(Q(F("<field var='with'><value>Juliet@Capulet.lit/Balcony</value></field>"
                          "<field var='start'><value>2010-06-07T00:00:00Z</value></field>"
                          "<field var='end'><value>2010-07-07T13:23:54Z</value></field>"
                          "<field var='after-id'><value>a1</value></field>"
                          "<field var='before-id'><value>b1</value></field>"
                          "<field var='ids'><value>x</value><value>y</value></field>")
                        "<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set>"
                        "<flip-page/>"), &r));
    assert_string_equal(r.queryid, "q1");
    assert_string_equal(r.with, "juliet@capulet.lit/Balcony");
    assert_true(r.has_start && r.has_end);
    assert_int_equal(r.start_ms, 1275868800000LL);
    assert_string_equal(r.after_id, "a1");
    assert_string_equal(r.before_id, "b1");
    assert_int_equal(r.n_ids, 2);
    assert_string_equal(r.ids[1], "y");
    assert_int_equal(r.rsm.max, 10);
    assert_string_equal(r.rsm.before, "");
    assert_true(r.flip);
    mam_request_clear(&r);

    /* nothing at all: everything */
    assert_null(parse(Q(""), &r));
    assert_null(r.with);
    assert_false(r.has_start || r.flip || r.rsm.present);
    mam_request_clear(&r);
}

static void test_request_errors(void **state)
{
    (void)state;
    mam_request r;
    static const struct { const char *xml, *cond; } cases[] = {
        { Q("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:1</value>"
            "</field></x>"), "bad-request" },
        { Q("<x xmlns='jabber:x:data' type='result'/>"), "bad-request" },
        { Q("<x xmlns='jabber:x:data' type='bogus'/>"), "bad-request" },
        { Q(F("<field var='with'><value>a@b</value></field><field var='with'><value>c@d</value></field>")),
          "bad-request" },
        { Q(F("<field var='with'><value>@nodomain</value></field>")), "bad-request" },
        { Q(F("<field var='start'><value>yesterday</value></field>")), "bad-request" },
        { Q(F("<field var='end'><value>2010-07-07</value></field>")), "bad-request" },
        { Q(F("<field var='after-id'><value></value></field>")), "bad-request" },
        { Q(F("<field var='ids'><value>a</value><value></value></field>")), "bad-request" },
        { Q(F("<field var='{urn:example}search'><value>x</value></field>")), "feature-not-implemented" },
        { Q("<set xmlns='http://jabber.org/protocol/rsm'><max>x</max></set>"), "bad-request" },
        { Q("<set xmlns='http://jabber.org/protocol/rsm'><after>a</after><before>b</before></set>"),
          "bad-request" },
        { Q("<set xmlns='http://jabber.org/protocol/rsm'><index>2</index></set>"), "feature-not-implemented" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *cond = parse(cases[i].xml, &r);
        assert_non_null(cond);
        assert_string_equal(cond, cases[i].cond);
    }
    /* more ids than allowed */
    char xml[16384];
    size_t off = (size_t)snprintf(xml, sizeof xml, "%s",
                                  "<query xmlns='urn:xmpp:mam:2'>" F("<field var='ids'>"));
    off -= strlen("</x>");
    for (int i = 0; i <= MAM_MAX_IDS; i++)
        off += (size_t)snprintf(xml + off, sizeof xml - off, "<value>i%d</value>", i);
    snprintf(xml + off, sizeof xml - off, "</field></x></query>");
    assert_string_equal(parse(xml, &r), "policy-violation");
}

static void test_prefs(void **state)
{
    (void)state;
    const char *xml = "<prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>Romeo@Montague.lit</jid>"
                      "<jid>romeo@montague.lit</jid></always><never><jid>tybalt@capulet.lit/sword</jid>"
                      "</never></prefs>";
    xmppd_stanza *x = xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT);
    mam_prefs p;
    const char *cond, *text;
    assert_int_equal(mam_prefs_parse(x, &p, &cond, &text), 0);
    xmppd_stanza_unref(x);
    assert_int_equal(p.def, MAM_ROSTER);
    assert_int_equal(p.n_always, 1); /* prepared, no duplicates */
    assert_string_equal(p.always[0], "romeo@montague.lit");

    xmppd_jid *romeo = xmppd_jid_parse("romeo@montague.lit/orchard");
    xmppd_jid *sword = xmppd_jid_parse("tybalt@capulet.lit/sword");
    xmppd_jid *dagger = xmppd_jid_parse("tybalt@capulet.lit/dagger");
    assert_int_equal(mam_prefs_decide(&p, romeo), 1);
    assert_int_equal(mam_prefs_decide(&p, sword), 0);
    assert_int_equal(mam_prefs_decide(&p, dagger), -1); /* roster decides */

    json_t *doc = mam_prefs_json(&p);
    mam_prefs back;
    assert_int_equal(mam_prefs_from_json(doc, &back), 0);
    json_decref(doc);
    assert_int_equal(back.def, MAM_ROSTER);
    assert_int_equal(back.n_never, 1);
    xmppd_stanza *out = mam_prefs_xml(&back);
    char *s = xmppd_stanza_to_string(out, XMPPD_NS_CLIENT, NULL);
    assert_string_equal(s, "<prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>romeo@montague.lit</jid>"
                           "</always><never><jid>tybalt@capulet.lit/sword</jid></never></prefs>");
    free(s);
    xmppd_stanza_unref(out);

    /* never wins over always; always/never defaults */
    p.def = MAM_NEVER;
    assert_int_equal(mam_prefs_decide(&p, dagger), 0);
    p.def = MAM_ALWAYS;
    assert_int_equal(mam_prefs_decide(&p, dagger), 1);
    mam_prefs_clear(&back);
    mam_prefs_clear(&p);
    xmppd_jid_free(romeo);
    xmppd_jid_free(sword);
    xmppd_jid_free(dagger);

    const char *bad[] = { "<prefs xmlns='urn:xmpp:mam:2'/>", "<prefs xmlns='urn:xmpp:mam:2' default='some'/>",
                          "<prefs xmlns='urn:xmpp:mam:2' default='always'><never><jid>@x</jid></never></prefs>",
                          NULL };
    for (int i = 0; bad[i]; i++) {
        x = xmppd_stanza_from_string(bad[i], strlen(bad[i]), XMPPD_NS_CLIENT);
        assert_int_equal(mam_prefs_parse(x, &p, &cond, &text), -1);
        assert_string_equal(cond, "bad-request");
        xmppd_stanza_unref(x);
    }
    json_t *junk = json_pack("{s:s, s:[i]}", "default", "always", "always", 1);
    assert_int_equal(mam_prefs_from_json(junk, &p), -1);
    json_decref(junk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_parse),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_request_fields),
        cmocka_unit_test(test_request_errors),
        cmocka_unit_test(test_prefs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
