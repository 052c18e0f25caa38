/* auth_ldap: escaping and templates (modules/auth_ldap/ldap_text.c).
 *
 * Vectors: the examples of RFC 4515 §4 (filter values) and RFC 4514 §4
 * (DN values). Cross-checks against libldap, an independent
 * implementation: its ldap_bv2escaped_filter_value must give the same
 * filter escaping, and its DN parser (ldap_str2dn) must read back exactly
 * the value our DN escaping was given, for every printable character and
 * for random strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <ldap.h>

#include "../../modules/auth_ldap/ldap_text.h"

static void expect_filter(const char *in, const char *want)
{
    char *out = lt_escape_filter(in);
    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
}

static void expect_dn(const char *in, const char *want)
{
    char *out = lt_escape_dn(in);
    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
}

/* RFC 4515 §4: the examples' assertion values. */
static void test_rfc4515_examples(void **state)
{
    expect_filter("Parens R Us (for all your parenthetical needs)",
                  "Parens R Us \\28for all your parenthetical needs\\29");
    expect_filter("*", "\\2a");
    expect_filter("C:\\MyFile", "C:\\5cMyFile");
    expect_filter("Lu\xc4\x8di\xc4\x87", "Lu\xc4\x8di\xc4\x87"); /* UTF-8 stays */
    expect_filter("a\x01z\x7f", "a\\01z\\7f");                   /* control bytes too */
    expect_filter("", "");
}

/* libldap escapes the same characters. */
static void test_filter_matches_libldap(void **state)
{
    srand(4515);
    for (int round = 0; round < 2000; round++) {
        char in[24];
        size_t n = (size_t)(rand() % 20);
        for (size_t i = 0; i < n; i++)
            in[i] = (char)(0x20 + rand() % 0x5f); /* printable ASCII */
        in[n] = '\0';
        struct berval bv = { n, in }, esc = { 0, NULL };
        assert_int_equal(ldap_bv2escaped_filter_value(&bv, &esc), 0);
        char *ours = lt_escape_filter(in);
        assert_non_null(ours);
        /* libldap writes the hex digits in upper case, the RFC's examples
         * (and we) in lower case: both are valid */
        assert_int_equal(strcasecmp(ours, esc.bv_val ? esc.bv_val : ""), 0);
        free(ours);
        ber_memfree(esc.bv_val);
    }
}

/* RFC 4514 §4 examples and §2.4 rules. */
static void test_rfc4514_examples(void **state)
{
    expect_dn("Sue, Grabbit and Runn", "Sue\\, Grabbit and Runn");
    expect_dn("Before\rAfter", "Before\\0dAfter");
    expect_dn("#hash", "\\#hash");
    expect_dn("a#b", "a#b");
    expect_dn(" lead", "\\ lead");
    expect_dn("trail ", "trail\\ ");
    expect_dn(" ", "\\ ");
    expect_dn("a+b;c<d>e\"f\\g=h", "a\\+b\\;c\\<d\\>e\\\"f\\\\g\\=h");
}

/* "uid=" + escaped value parses back (ldap_str2dn) to exactly the value. */
static void expect_dn_round_trip(const char *value)
{
    char *esc = lt_escape_dn(value);
    assert_non_null(esc);
    size_t n = strlen(esc) + 32;
    char *dn = malloc(n);
    assert_non_null(dn);
    snprintf(dn, n, "uid=%s,ou=people", esc);
    LDAPDN parsed = NULL;
    assert_int_equal(ldap_str2dn(dn, &parsed, LDAP_DN_FORMAT_LDAPV3), LDAP_SUCCESS);
    assert_non_null(parsed[0]);
    assert_non_null(parsed[1]);       /* still two RDNs: nothing leaked out */
    assert_null(parsed[2]);
    assert_non_null(parsed[0][0]);
    assert_null(parsed[0][1]);        /* one AVA: no '+' got through */
    LDAPAVA *ava = parsed[0][0];
    assert_int_equal(ava->la_value.bv_len, strlen(value));
    assert_memory_equal(ava->la_value.bv_val, value, strlen(value));
    ldap_dnfree(parsed);
    free(dn);
    free(esc);
}

static void test_dn_round_trip_libldap(void **state)
{
    char one[2] = { 0, 0 };
    for (int c = 0x20; c < 0x7f; c++) {
        one[0] = (char)c;
        expect_dn_round_trip(one);
    }
    expect_dn_round_trip("comma,user");
    expect_dn_round_trip("back\\slash");
    expect_dn_round_trip("alice,ou=admins");
    expect_dn_round_trip("x+cn=root");
    srand(4514);
    for (int round = 0; round < 2000; round++) {
        char in[24];
        size_t n = 1 + (size_t)(rand() % 20);
        for (size_t i = 0; i < n; i++)
            in[i] = (char)(0x20 + rand() % 0x5f);
        in[n] = '\0';
        expect_dn_round_trip(in);
    }
}

/* ---- templates ---- */

static char *expand(const char *tpl, enum lt_escape esc, const char *user, bool any)
{
    lt_template t;
    char err[256];
    assert_int_equal(lt_compile(tpl, LT_ALL, esc, &t, err, sizeof err), 0);
    lt_values v = { user, "example.org", any };
    char *out = lt_expand(&t, &v);
    lt_free(&t);
    assert_non_null(out);
    return out;
}

static void expect_expand(const char *tpl, enum lt_escape esc, const char *user, bool any, const char *want)
{
    char *out = expand(tpl, esc, user, any);
    assert_string_equal(out, want);
    free(out);
}

static void test_template_expansion(void **state)
{
    const char *f = "(&(objectClass=person)(uid=%u))";
    expect_expand(f, LT_FILTER, "alice", false, "(&(objectClass=person)(uid=alice))");
    /* injection attempts stay inside the assertion value */
    expect_expand(f, LT_FILTER, "*)(uid=*", false, "(&(objectClass=person)(uid=\\2a\\29\\28uid=\\2a))");
    expect_expand(f, LT_FILTER, "x)(|(objectClass=*", false,
                  "(&(objectClass=person)(uid=x\\29\\28|\\28objectClass=\\2a))");
    /* listing: %u matches any value */
    expect_expand(f, LT_FILTER, NULL, true, "(&(objectClass=person)(uid=*))");
    expect_expand("(mail=%u@%d)", LT_FILTER, NULL, true, "(mail=*@example.org)");
    expect_expand("(userPrincipalName=%{jid})", LT_FILTER, "a*", false, "(userPrincipalName=a\\2a@example.org)");
    expect_expand("(&(uid=%{user})(o=100%%))", LT_FILTER, "bob", false, "(&(uid=bob)(o=100%))");
    expect_expand("uid=%u,ou=people,dc=example,dc=org", LT_DN, "a,ou=admins", false,
                  "uid=a\\,ou\\=admins,ou=people,dc=example,dc=org");
    expect_expand("%u@corp.example.org", LT_RAW, "dave", false, "dave@corp.example.org");
}

static void expect_compile_error(const char *tpl, unsigned allowed, enum lt_escape esc, const char *msg)
{
    lt_template t;
    char err[256];
    assert_int_equal(lt_compile(tpl, allowed, esc, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, msg));
}

static void test_template_errors(void **state)
{
    expect_compile_error("(uid=%x)", LT_ALL, LT_FILTER, "unknown variable %x");
    expect_compile_error("(uid=%{nope})", LT_ALL, LT_FILTER, "unknown variable %{nope}");
    expect_compile_error("(uid=%{user)", LT_ALL, LT_FILTER, "unknown variable");
    expect_compile_error("(uid=%", LT_ALL, LT_FILTER, "unknown variable");
    expect_compile_error("(uid=%{jid})", LT_BIT(LT_USER), LT_FILTER, "cannot be used here");
    expect_compile_error("uid=%u", LT_ALL, LT_FILTER, "not one parenthesised");
    expect_compile_error("(uid=%u", LT_ALL, LT_FILTER, "not one parenthesised");
    expect_compile_error("(uid=%u))", LT_ALL, LT_FILTER, "not one parenthesised");
    expect_compile_error("(a=1)(b=%u)", LT_ALL, LT_FILTER, "not one parenthesised");
    lt_template t;
    char err[256];
    assert_int_equal(lt_compile("(uid=%u)", LT_ALL, LT_FILTER, &t, err, sizeof err), 0);
    assert_int_equal(t.used, LT_BIT(LT_USER));
    lt_free(&t);
    assert_int_equal(lt_compile("uid=%u,dc=x", LT_ALL, LT_DN, &t, err, sizeof err), 0); /* DNs need no parens */
    lt_free(&t);
}

static void test_account_name(void **state)
{
    char out[16];
    assert_true(lt_account_name("alice", out, sizeof out));
    assert_string_equal(out, "alice");
    assert_true(lt_account_name("dave@corp.example.org", out, sizeof out));
    assert_string_equal(out, "dave");
    assert_true(lt_account_name("back\\slash", out, sizeof out));
    assert_string_equal(out, "back\\slash");
    assert_false(lt_account_name("@corp", out, sizeof out));
    assert_false(lt_account_name("", out, sizeof out));
    assert_false(lt_account_name("a-name-far-too-long", out, sizeof out));
}

/* Active Directory: userAccountControl flags and bind diagnostics. */
static void test_active_directory(void **state)
{
    assert_false(lt_ad_account_disabled("512"));   /* NORMAL_ACCOUNT */
    assert_true(lt_ad_account_disabled("514"));    /* + ACCOUNTDISABLE */
    assert_true(lt_ad_account_disabled("66050"));  /* + DONT_EXPIRE_PASSWORD */
    assert_false(lt_ad_account_disabled("66048"));
    assert_false(lt_ad_account_disabled("abc"));
#define AD_DIAG "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data %s, v4563"
    char diag[200];
    const char *disabled[] = { "533", "701", "775" }, *not_disabled[] = { "52e", "525", "532", "773", "5330" };
    for (size_t i = 0; i < 3; i++) {
        snprintf(diag, sizeof diag, AD_DIAG, disabled[i]);
        assert_true(lt_ad_bind_disabled(diag));
    }
    for (size_t i = 0; i < 5; i++) {
        snprintf(diag, sizeof diag, AD_DIAG, not_disabled[i]);
        assert_false(lt_ad_bind_disabled(diag));
    }
    assert_false(lt_ad_bind_disabled(NULL));
    assert_false(lt_ad_bind_disabled("Invalid credentials"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4515_examples),
        cmocka_unit_test(test_filter_matches_libldap),
        cmocka_unit_test(test_rfc4514_examples),
        cmocka_unit_test(test_dn_round_trip_libldap),
        cmocka_unit_test(test_template_expansion),
        cmocka_unit_test(test_template_errors),
        cmocka_unit_test(test_account_name),
        cmocka_unit_test(test_active_directory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
