/* Data forms (XEP-0004) and result set management (XEP-0059): parsing,
 * limits and building (api/xmppd/forms.h), and xmppd_stanza_set_text. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "xmppd/forms.h"

static xmppd_stanza *parse(const char *xml)
{
    xmppd_stanza *s = xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT);
    assert_non_null(s);
    return s;
}

static void assert_xml(const xmppd_stanza *s, const char *expected)
{
    char *out = xmppd_stanza_to_string(s, XMPPD_NS_CLIENT, NULL);
    assert_non_null(out);
    assert_string_equal(out, expected);
    free(out);
}

/* Refused with exactly this reason. */
static void assert_form_bad(const char *xml, const char *reason)
{
    xmppd_stanza *x = parse(xml);
    const char *why = NULL;
    assert_null(xmppd_form_parse(x, &why));
    assert_non_null(why);
    assert_string_equal(why, reason);
    xmppd_stanza_unref(x);
}

/* XEP-0004 §3: a submitted form with single, multi, empty and boolean
 * fields; a fixed field without var is skipped. */
static void form_values(void **state)
{
    xmppd_stanza *x = parse(
        "<x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>"
        "<field type='fixed'><value>label</value></field>"
        "<field var='with'><value>juliet@capulet.lit</value></field>"
        "<field var='ids' type='text-multi'><value>a</value><value>b</value><value>c</value></field>"
        "<field var='empty'/>"
        "<field var='yes' type='boolean'><value>true</value></field>"
        "<field var='no' type='boolean'><value>0</value></field>"
        "<field var='maybe' type='boolean'><value>perhaps</value></field>"
        "</x>");
    const char *why = NULL;
    xmppd_form *f = xmppd_form_parse(x, &why);
    assert_non_null(f);
    assert_string_equal(xmppd_form_type(f), "submit");
    assert_string_equal(xmppd_form_form_type(f), "urn:xmpp:mam:2");
    assert_int_equal(xmppd_form_nfields(f), 7);
    assert_string_equal(xmppd_form_field_var(f, 1), "with");
    assert_null(xmppd_form_field_type(f, 1));
    assert_string_equal(xmppd_form_field_type(f, 2), "text-multi");
    assert_null(xmppd_form_field_var(f, 7));
    assert_string_equal(xmppd_form_value(f, "with"), "juliet@capulet.lit");
    assert_string_equal(xmppd_form_value(f, "empty"), "");
    assert_null(xmppd_form_value(f, "absent"));
    assert_true(xmppd_form_has(f, "empty"));
    assert_false(xmppd_form_has(f, "absent"));
    size_t n = 99;
    const char *const *ids = xmppd_form_values(f, "ids", &n);
    assert_int_equal(n, 3);
    assert_string_equal(ids[0], "a");
    assert_string_equal(ids[2], "c");
    assert_null(ids[3]);
    const char *const *none = xmppd_form_values(f, "empty", &n);
    assert_int_equal(n, 0);
    assert_null(none[0]);
    assert_null(xmppd_form_values(f, "absent", &n));
    assert_int_equal(n, 0);
    bool b = false;
    assert_int_equal(xmppd_form_bool(f, "yes", &b), 0);
    assert_true(b);
    assert_int_equal(xmppd_form_bool(f, "no", &b), 0);
    assert_false(b);
    assert_int_equal(xmppd_form_bool(f, "empty", &b), 1);
    assert_int_equal(xmppd_form_bool(f, "absent", &b), 1);
    assert_int_equal(xmppd_form_bool(f, "maybe", &b), -1);
    xmppd_form_free(f);
    xmppd_stanza_unref(x);
}

/* Malformed forms are refused with a reason, never half-parsed. */
static void form_errors(void **state)
{
    assert_form_bad("<x xmlns='urn:other' type='submit'/>", "not a jabber:x:data form");
    assert_form_bad("<y xmlns='jabber:x:data' type='submit'/>", "not a jabber:x:data form");
    assert_form_bad("<x xmlns='jabber:x:data'/>", "form type must be form, submit, cancel or result");
    assert_form_bad("<x xmlns='jabber:x:data' type='sumbit'/>",
                    "form type must be form, submit, cancel or result");
    assert_form_bad("<x xmlns='jabber:x:data' type='submit'><field><value>1</value></field></x>",
                    "a field has no var");
    assert_form_bad("<x xmlns='jabber:x:data' type='submit'><field var='a'/><field var='a'/></x>",
                    "a field var appears twice");

    /* Limits: fields and values per field. */
    size_t cap = 64 + 24 * (XMPPD_FORM_MAX_VALUES + 1);
    char *big = malloc(cap);
    size_t used = (size_t)snprintf(big, cap, "<x xmlns='jabber:x:data' type='submit'><field var='v'>");
    for (int i = 0; i <= XMPPD_FORM_MAX_VALUES; i++)
        used += (size_t)snprintf(big + used, cap - used, "<value>%d</value>", i);
    snprintf(big + used, cap - used, "</field></x>");
    assert_form_bad(big, "too many values in a field");
    cap = 64 + 32 * (XMPPD_FORM_MAX_FIELDS + 1);
    big = realloc(big, cap);
    used = (size_t)snprintf(big, cap, "<x xmlns='jabber:x:data' type='submit'>");
    for (int i = 0; i <= XMPPD_FORM_MAX_FIELDS; i++)
        used += (size_t)snprintf(big + used, cap - used, "<field var='f%d'/>", i);
    snprintf(big + used, cap - used, "</x>");
    assert_form_bad(big, "too many fields");
    free(big);
}

/* Building: FORM_TYPE first, title, options, multi values; parses back. */
static void form_build(void **state)
{
    xmppd_stanza *x = xmppd_form_new("form", "http://jabber.org/protocol/muc#roomconfig", "Room");
    assert_non_null(x);
    xmppd_stanza *f = xmppd_form_add_field(x, "muc#roomconfig_whois", "list-single", "Who", "moderators");
    assert_non_null(f);
    assert_int_equal(xmppd_form_add_option(f, "Moderators", "moderators"), 0);
    assert_int_equal(xmppd_form_add_option(f, NULL, "anyone"), 0);
    f = xmppd_form_add_field(x, "admins", "jid-multi", NULL, NULL);
    assert_int_equal(xmppd_form_add_value(f, "a@b"), 0);
    assert_int_equal(xmppd_form_add_value(f, "c&d"), 0);
    assert_xml(x, "<x xmlns='jabber:x:data' type='form'><title>Room</title>"
                  "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
                  "<field var='muc#roomconfig_whois' type='list-single' label='Who'><value>moderators</value>"
                  "<option label='Moderators'><value>moderators</value></option><option><value>anyone</value></option></field>"
                  "<field var='admins' type='jid-multi'><value>a@b</value><value>c&amp;d</value></field></x>");
    xmppd_form *p = xmppd_form_parse(x, NULL);
    assert_non_null(p);
    size_t n;
    assert_string_equal(xmppd_form_values(p, "admins", &n)[1], "c&d");
    assert_int_equal(n, 2);
    xmppd_form_free(p);
    xmppd_stanza_unref(x);
}

/* XEP-0059 §2: max, after, before (empty = last page), index. */
static void rsm_parse(void **state)
{
    xmppd_rsm r;
    xmppd_stanza *q = parse("<query xmlns='urn:xmpp:mam:2'/>");
    assert_int_equal(xmppd_rsm_parse(q, &r, NULL), 0);
    assert_false(r.present);
    assert_int_equal(r.max, -1);
    xmppd_stanza_unref(q);

    q = parse("<query><set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set></query>");
    assert_int_equal(xmppd_rsm_parse(q, &r, NULL), 0);
    assert_true(r.present);
    assert_int_equal(r.max, 10);
    assert_string_equal(r.before, "");
    assert_null(r.after);
    xmppd_rsm_clear(&r);
    xmppd_stanza_unref(q);

    q = parse("<query><set xmlns='http://jabber.org/protocol/rsm'><after>id-1</after><index>7</index></set></query>");
    assert_int_equal(xmppd_rsm_parse(q, &r, NULL), 0);
    assert_string_equal(r.after, "id-1");
    assert_int_equal(r.index, 7);
    assert_int_equal(r.max, -1);
    xmppd_rsm_clear(&r);
    xmppd_stanza_unref(q);

    static const struct { const char *set, *why; } bad[] = {
        { "<max>-1</max>", "RSM max and index must be non-negative integers" },
        { "<max>ten</max>", "RSM max and index must be non-negative integers" },
        { "<max></max>", "RSM max and index must be non-negative integers" },
        { "<max>99999999999</max>", "RSM max and index must be non-negative integers" },
        { "<max>1</max><max>2</max>", "an RSM element appears twice" },
        { "<after/>", "RSM after needs an id" },
        { "<after>a</after><before>b</before>", "RSM after and before cannot both be given" },
        { "<before>a</before><before>b</before>", "an RSM element appears twice" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char xml[256];
        snprintf(xml, sizeof(xml), "<q><set xmlns='http://jabber.org/protocol/rsm'>%s</set></q>", bad[i].set);
        q = parse(xml);
        const char *why = NULL;
        assert_int_equal(xmppd_rsm_parse(q, &r, &why), -1);
        assert_string_equal(why, bad[i].why);
        assert_null(r.after);
        assert_null(r.before);
        xmppd_stanza_unref(q);
    }
}

/* XEP-0059 §2.5: first with index, last, count; an empty page has only
 * the count. */
static void rsm_answer(void **state)
{
    xmppd_stanza *fin = xmppd_stanza_new("fin", "urn:xmpp:mam:2");
    assert_non_null(xmppd_rsm_answer(fin, "a", 0, "z", 30));
    assert_xml(fin, "<fin xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'>"
                    "<first index='0'>a</first><last>z</last><count>30</count></set></fin>");
    xmppd_stanza_unref(fin);
    fin = xmppd_stanza_new("fin", "urn:xmpp:mam:2");
    assert_non_null(xmppd_rsm_answer(fin, NULL, -1, NULL, 0));
    assert_xml(fin, "<fin xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'>"
                    "<count>0</count></set></fin>");
    xmppd_stanza_unref(fin);
}

/* set_text replaces the direct text, keeps children after it. */
static void stanza_set_text(void **state)
{
    xmppd_stanza *s = parse("<a>one<b/>two</a>");
    assert_int_equal(xmppd_stanza_set_text(s, "x<y"), 0);
    assert_string_equal(xmppd_stanza_text(s), "x<y");
    assert_xml(s, "<a>x&lt;y<b/></a>");
    assert_int_equal(xmppd_stanza_set_text(s, NULL), 0);
    assert_xml(s, "<a><b/></a>");
    xmppd_stanza_unref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(form_values),
        cmocka_unit_test(form_errors),
        cmocka_unit_test(form_build),
        cmocka_unit_test(rsm_parse),
        cmocka_unit_test(rsm_answer),
        cmocka_unit_test(stanza_set_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
