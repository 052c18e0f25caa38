/* The SASL2 <authenticate/> parser (XEP-0388 §2.3, with XEP-0386 Bind2 and
 * XEP-0484 FAST elements): what it takes out, and the condition each bad
 * request gets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "c2s/sasl2_req.h"
#include "sasl/sasl.h"

#define AUTH(body) "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-1'>" body "</authenticate>"

static xmppd_stanza *el_of(const char *xml)
{
    xmppd_stanza *el = xmppd_stanza_from_string(xml, strlen(xml), "jabber:client");
    assert_non_null(el);
    return el;
}

/* Parses xml: the request, or NULL with *cond_r set. */
static sasl2_request *parse(const char *xml, const char **cond_r)
{
    xmppd_stanza *el = el_of(xml);
    sasl2_request *r = NULL;
    const char *text = NULL;
    *cond_r = NULL;
    if (sasl2_request_parse(el, &r, cond_r, &text) < 0) {
        assert_null(r);
        assert_non_null(*cond_r);
    }
    xmppd_stanza_unref(el); /* the request keeps its own reference */
    return r;
}

static void test_xep0388_2_3_full_request(void **state)
{
    (void)state;
    const char *cond;
    sasl2_request *r = parse(AUTH("<initial-response>\n  biwsbj11c2VyLHI9YWJj\n</initial-response>"
                                  "<user-agent id='d4565fa7-4d72-4749-b3d3-740edbf87770'>"
                                  "<software>AwesomeXMPP</software><device>Kiva's Phone</device>"
                                  "</user-agent>"
                                  "<bind xmlns='urn:xmpp:bind:0'><tag>AwesomeXMPP</tag>"
                                  "<enable xmlns='urn:xmpp:sm:3'/></bind>"
                                  "<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>"
                                  "<fast xmlns='urn:xmpp:fast:0' count='123' invalidate='true'/>"
                                  "<resume xmlns='urn:xmpp:sm:3' previd='x' h='1'/>"),
                             &cond);
    assert_non_null(r);
    assert_string_equal(r->mechanism, "SCRAM-SHA-1");
    assert_true(r->has_initial);
    assert_int_equal(r->initial_len, 15);
    assert_memory_equal(r->initial, "n,,n=user,r=abc", 15);
    assert_string_equal(r->ua_id, "d4565fa7-4d72-4749-b3d3-740edbf87770");
    assert_string_equal(r->software, "AwesomeXMPP");
    assert_string_equal(r->device, "Kiva's Phone");
    assert_non_null(r->bind);
    assert_string_equal(r->tag, "AwesomeXMPP");
    assert_string_equal(r->request_token, "HT-SHA-256-NONE");
    assert_true(r->fast && r->fast_invalidate && r->has_count);
    assert_int_equal(r->count, 123);
    /* what the kernel serves, and what goes to "sasl2-inline" */
    int inline_children = 0;
    for (xmppd_stanza *c = xmppd_stanza_first(r->el); c; c = xmppd_stanza_next(c))
        inline_children += !sasl2_request_known(c);
    assert_int_equal(inline_children, 1);
    sasl2_request_free(r);
}

static void test_xep0388_2_3_minimal_request(void **state)
{
    (void)state;
    const char *cond;
    sasl2_request *r = parse(AUTH(""), &cond);
    assert_non_null(r);
    assert_false(r->has_initial);
    assert_null(r->ua_id);
    assert_null(r->bind);
    assert_false(r->fast);
    sasl2_request_free(r);
    /* an empty <initial-response/> is an empty initial response */
    r = parse(AUTH("<initial-response/>"), &cond);
    assert_true(r->has_initial);
    assert_int_equal(r->initial_len, 0);
    sasl2_request_free(r);
}

static void test_xep0388_2_6_2_bad_requests(void **state)
{
    (void)state;
    static const struct {
        const char *xml, *cond;
    } bad[] = {
        { "<authenticate xmlns='urn:xmpp:sasl:2'/>", SASL_INVALID_MECHANISM },
        { "<authenticate xmlns='urn:xmpp:sasl:2' mechanism=''/>", SASL_INVALID_MECHANISM },
        { "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'/>",
          SASL_INVALID_MECHANISM },
        { AUTH("<initial-response>not base64!</initial-response>"), SASL_INCORRECT_ENCODING },
        { AUTH("<initial-response>YQ==</initial-response><initial-response/>"), SASL_MALFORMED },
        { AUTH("<user-agent id=''/>"), SASL_MALFORMED },
        { AUTH("<user-agent id='a'/><user-agent id='b'/>"), SASL_MALFORMED },
        { AUTH("<bind xmlns='urn:xmpp:bind:0'/><bind xmlns='urn:xmpp:bind:0'/>"), SASL_MALFORMED },
        { AUTH("<bind xmlns='urn:xmpp:bind:0'><tag>a</tag><tag>b</tag></bind>"), SASL_MALFORMED },
        { AUTH("<request-token xmlns='urn:xmpp:fast:0'/>"), SASL_MALFORMED },
        { AUTH("<fast xmlns='urn:xmpp:fast:0' count='-1'/>"), SASL_MALFORMED },
        { AUTH("<fast xmlns='urn:xmpp:fast:0' count='99999999999999999'/>"), SASL_MALFORMED },
        { AUTH("<fast xmlns='urn:xmpp:fast:0' invalidate='maybe'/>"), SASL_MALFORMED },
        { AUTH("<fast xmlns='urn:xmpp:fast:0'/><fast xmlns='urn:xmpp:fast:0'/>"), SASL_MALFORMED },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *cond;
        sasl2_request *r = parse(bad[i].xml, &cond);
        assert_null(r);
        assert_string_equal(cond, bad[i].cond);
    }
}

static void test_limits(void **state)
{
    (void)state;
    const char *cond;
    char xml[4096];
    char id[SASL2_UA_ID_MAX + 2];
    memset(id, 'i', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    snprintf(xml, sizeof(xml), AUTH("<user-agent id='%s'/>"), id);
    assert_null(parse(xml, &cond)); /* 129 bytes */
    id[SASL2_UA_ID_MAX] = '\0';
    snprintf(xml, sizeof(xml), AUTH("<user-agent id='%s'/>"), id);
    sasl2_request *r = parse(xml, &cond);
    assert_non_null(r); /* 128 bytes */
    sasl2_request_free(r);
    /* more inline requests than SASL2_INLINE_MAX */
    size_t n = (size_t)snprintf(xml, sizeof(xml), "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='X'>");
    for (int i = 0; i <= SASL2_INLINE_MAX; i++)
        n += (size_t)snprintf(xml + n, sizeof(xml) - n, "<x%d xmlns='urn:example'/>", i);
    snprintf(xml + n, sizeof(xml) - n, "</authenticate>");
    assert_null(parse(xml, &cond));
    assert_string_equal(cond, SASL_MALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xep0388_2_3_full_request),
        cmocka_unit_test(test_xep0388_2_3_minimal_request),
        cmocka_unit_test(test_xep0388_2_6_2_bad_requests),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
