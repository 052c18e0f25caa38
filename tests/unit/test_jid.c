/* JID parsing and preparation: RFC 7622 §3 (address format) and the
 * stringprep profiles (Nodeprep, Nameprep, Resourceprep). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <stringprep.h>

#include "xmppd/jid.h"

/* A valid input and its expected prepared parts (NULL: absent). */
typedef struct valid_case {
    const char *in, *node, *domain, *resource, *bare, *full;
} valid_case;

static const valid_case valid_cases[] = {
    /* RFC 7622 §3.5 examples of valid JIDs */
    { "juliet@example.com", "juliet", "example.com", NULL, "juliet@example.com", "juliet@example.com" },
    { "juliet@example.com/foo", "juliet", "example.com", "foo", "juliet@example.com",
      "juliet@example.com/foo" },
    { "juliet@example.com/foo bar", "juliet", "example.com", "foo bar", "juliet@example.com",
      "juliet@example.com/foo bar" },
    { "juliet@example.com/foo@bar", "juliet", "example.com", "foo@bar", "juliet@example.com",
      "juliet@example.com/foo@bar" },
    { "foo\\20bar@example.com", "foo\\20bar", "example.com", NULL, "foo\\20bar@example.com",
      "foo\\20bar@example.com" },
    { "fussball@example.com", "fussball", "example.com", NULL, "fussball@example.com",
      "fussball@example.com" },
    { "fu\xc3\x9f" "ball@example.com", "fussball", "example.com", NULL, "fussball@example.com",
      "fussball@example.com" }, /* Nodeprep case folding maps sharp s to "ss" */
    { "\xcf\x80@example.com", "\xcf\x80", "example.com", NULL, "\xcf\x80@example.com",
      "\xcf\x80@example.com" },
    { "\xce\xa3@example.com/foo", "\xcf\x83", "example.com", "foo", "\xcf\x83@example.com",
      "\xcf\x83@example.com/foo" }, /* capital sigma folds to small sigma */
    /* final sigma: RFC 7622 (PRECIS) keeps it, Nodeprep (RFC 3454 B.2)
     * folds it to small sigma, as Prosody and ejabberd do */
    { "\xcf\x82@example.com", "\xcf\x83", "example.com", NULL, "\xcf\x83@example.com",
      "\xcf\x83@example.com" },
    { "king@example.com/\xe2\x99\x9a", "king", "example.com", "\xe2\x99\x9a",
      "king@example.com", "king@example.com/\xe2\x99\x9a" },
    { "example.com", NULL, "example.com", NULL, "example.com", "example.com" },
    { "example.com/foobar", NULL, "example.com", "foobar", "example.com", "example.com/foobar" },
    { "a.example.com/b@example.net", NULL, "a.example.com", "b@example.net", "a.example.com",
      "a.example.com/b@example.net" },
    /* case: node and domain fold, resource keeps its case */
    { "Juliet@Example.COM/Balcony", "juliet", "example.com", "Balcony", "juliet@example.com",
      "juliet@example.com/Balcony" },
    /* RFC 7622 §3.2: one trailing dot is stripped */
    { "juliet@example.com./r", "juliet", "example.com", "r", "juliet@example.com",
      "juliet@example.com/r" },
    /* IP literals (RFC 7622 §3.2.1) */
    { "user@192.0.2.1", "user", "192.0.2.1", NULL, "user@192.0.2.1", "user@192.0.2.1" },
    { "user@[2001:db8::1]/r", "user", "[2001:db8::1]", "r", "user@[2001:db8::1]",
      "user@[2001:db8::1]/r" },
    { "[2001:DB8::A]", NULL, "[2001:db8::a]", NULL, "[2001:db8::a]", "[2001:db8::a]" },
    /* a resource may hold '/' */
    { "a@b/c/d", "a", "b", "c/d", "a@b", "a@b/c/d" },
};

/* RFC 7622 §3.5 invalid examples plus structural edge cases. */
static const char *const invalid_cases[] = {
    "\"juliet\"@example.com", /* '"' prohibited by Nodeprep */
    "foo bar@example.com",    /* space prohibited in the localpart */
    "@example.com",           /* empty localpart */
    "user@",                  /* empty domainpart */
    "user@/res",
    "example.com/",           /* empty resourcepart */
    "user@example.com/",
    "@",
    "/",
    "@/",
    "",
    ".",                      /* only the stripped dot */
    "user@example..com",      /* empty label */
    "user@.example.com",
    "user@example.com..",     /* only one trailing dot is stripped */
    "a@b@c",
    "user@exa mple.com",
    "user@exa<mple.com",
    "user@[2001:db8::1",
    "user@[not-an-ip]",
    "user@[2001:db8::1%eth0]",
    "user@[]",
    "user@example.com/\x07",  /* control character in the resource */
    "user\xff@example.com",   /* invalid UTF-8 */
    "user@example.com/\xc3",
    "user@\xd8\xa7\x61.example", /* bidi: RAL and L in one label */
};

static void assert_jid_parts(const xmppd_jid *j, const valid_case *c)
{
    assert_non_null(j);
    if (c->node)
        assert_string_equal(j->node, c->node);
    else
        assert_null(j->node);
    assert_string_equal(j->domain, c->domain);
    if (c->resource)
        assert_string_equal(j->resource, c->resource);
    else
        assert_null(j->resource);
    assert_string_equal(j->bare, c->bare);
    assert_string_equal(j->full, c->full);
}

static void test_rfc7622_3_5_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
        xmppd_jid *j = xmppd_jid_parse(valid_cases[i].in);
        if (j == NULL)
            fail_msg("rejected valid JID #%zu: %s", i, valid_cases[i].in);
        assert_jid_parts(j, &valid_cases[i]);
        xmppd_jid_free(j);
    }
}

static void test_rfc7622_3_5_invalid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(invalid_cases) / sizeof(invalid_cases[0]); i++) {
        xmppd_jid *j = xmppd_jid_parse(invalid_cases[i]);
        if (j != NULL)
            fail_msg("accepted invalid JID #%zu: %s -> %s", i, invalid_cases[i], j->full);
    }
}

/* NFKC (RFC 3454 §4, used by all three profiles): U+2163 ROMAN NUMERAL
 * FOUR becomes "iv" in the localpart (compatibility mapping + folding). */
static void test_rfc3454_nfkc_localpart(void **state)
{
    (void)state;
    xmppd_jid *j = xmppd_jid_parse("henry\xe2\x85\xa3@example.com");
    assert_non_null(j);
    assert_string_equal(j->node, "henryiv");
    xmppd_jid_free(j);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static xmppd_jid *parse_fmt3(const char *a, const char *sep1, const char *b, const char *sep2,
                             const char *c)
{
    size_t n = strlen(a) + strlen(sep1) + strlen(b) + strlen(sep2) + strlen(c) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    strcpy(s, a);
    strcat(s, sep1);
    strcat(s, b);
    strcat(s, sep2);
    strcat(s, c);
    xmppd_jid *j = xmppd_jid_parse(s);
    free(s);
    return j;
}

/* RFC 7622 §3.3.1, §3.4.1: each part at most 1023 bytes after preparation. */
static void test_rfc7622_3_part_length_limits(void **state)
{
    (void)state;
    char *p1023 = repeat('a', 1023), *p1024 = repeat('a', 1024);

    xmppd_jid *j = parse_fmt3(p1023, "@", "example.com", "/", p1023);
    assert_non_null(j);
    assert_int_equal(strlen(j->node), 1023);
    assert_int_equal(strlen(j->resource), 1023);
    xmppd_jid_free(j);

    assert_null(parse_fmt3(p1024, "@", "example.com", "", ""));
    assert_null(parse_fmt3("u", "@", "example.com", "/", p1024));

    /* Upper case input of 1023 bytes still fits once folded. */
    char *upper = repeat('A', 1023);
    j = parse_fmt3(upper, "@", "example.com", "", "");
    assert_non_null(j);
    assert_string_equal(j->node, p1023);
    xmppd_jid_free(j);

    /* 512 sharp s (1024 bytes) fold to 1024 bytes of "ss": too long. */
    char sharp[1025];
    for (int i = 0; i < 512; i++)
        memcpy(sharp + 2 * i, "\xc3\x9f", 2);
    sharp[1024] = '\0';
    assert_null(parse_fmt3(sharp, "@", "example.com", "", ""));

    free(p1023);
    free(p1024);
    free(upper);
}

/* RFC 7622 §3.2: domain labels of at most 63 bytes, the domain at most 1023. */
static void test_rfc7622_3_2_domain_limits(void **state)
{
    (void)state;
    char *l63 = repeat('a', 63), *l64 = repeat('a', 64);
    xmppd_jid *j = parse_fmt3("u", "@", l63, ".example", "");
    assert_non_null(j);
    xmppd_jid_free(j);
    assert_null(parse_fmt3("u", "@", l64, ".example", ""));

    /* 16 labels of 63 + dots = 1023 bytes: accepted; one more byte is not. */
    char dom[1100] = "";
    for (int i = 0; i < 16; i++) {
        strcat(dom, l63);
        if (i < 15)
            strcat(dom, ".");
    }
    assert_int_equal(strlen(dom), 1023);
    j = xmppd_jid_parse(dom);
    assert_non_null(j);
    xmppd_jid_free(j);

    /* 15 labels of 63, one of 62, one of 1: 1024 bytes, every label valid. */
    dom[0] = '\0';
    for (int i = 0; i < 15; i++) {
        strcat(dom, l63);
        strcat(dom, ".");
    }
    strncat(dom, l63, 62);
    strcat(dom, ".a");
    assert_int_equal(strlen(dom), 1024);
    assert_null(xmppd_jid_parse(dom));
    dom[1022] = '\0'; /* drop ".a": 1022 bytes, accepted */
    j = xmppd_jid_parse(dom);
    assert_non_null(j);
    xmppd_jid_free(j);
    free(l63);
    free(l64);
}

static void test_jid_equality(void **state)
{
    (void)state;
    xmppd_jid *a = xmppd_jid_parse("Romeo@Example.NET/Orchard");
    xmppd_jid *b = xmppd_jid_parse("romeo@example.net./Orchard");
    xmppd_jid *c = xmppd_jid_parse("romeo@example.net/orchard");
    xmppd_jid *d = xmppd_jid_parse("romeo@example.net");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_non_null(d);
    assert_true(xmppd_jid_equal(a, b));
    assert_false(xmppd_jid_equal(a, c)); /* resources are case-sensitive */
    assert_true(xmppd_jid_bare_equal(a, c));
    assert_false(xmppd_jid_equal(a, d));
    assert_true(xmppd_jid_bare_equal(a, d));
    assert_false(xmppd_jid_equal(a, NULL));
    assert_true(xmppd_jid_equal(NULL, NULL));
    xmppd_jid_free(a);
    xmppd_jid_free(b);
    xmppd_jid_free(c);
    xmppd_jid_free(d);
}

static void test_jid_make_dup_to_bare(void **state)
{
    (void)state;
    xmppd_jid *j = xmppd_jid_make("Juliet", "EXAMPLE.com", "Balcony");
    assert_non_null(j);
    assert_string_equal(j->full, "juliet@example.com/Balcony");

    xmppd_jid *d = xmppd_jid_dup(j);
    assert_non_null(d);
    assert_true(d != j);
    assert_true(xmppd_jid_equal(d, j));

    xmppd_jid *b = xmppd_jid_to_bare(j);
    assert_non_null(b);
    assert_null(b->resource);
    assert_string_equal(b->full, "juliet@example.com");
    assert_string_equal(b->bare, "juliet@example.com");

    xmppd_jid *h = xmppd_jid_make(NULL, "example.com", NULL);
    assert_non_null(h);
    assert_null(h->node);
    assert_string_equal(h->full, "example.com");

    assert_null(xmppd_jid_make("", "example.com", NULL));
    assert_null(xmppd_jid_make("a", "", NULL));
    assert_null(xmppd_jid_make("a", "example.com", ""));
    assert_null(xmppd_jid_make("a@b", "example.com", NULL));
    assert_null(xmppd_jid_make("a", NULL, NULL));

    xmppd_jid_free(j);
    xmppd_jid_free(d);
    xmppd_jid_free(b);
    xmppd_jid_free(h);
    xmppd_jid_free(NULL);
}

static void test_rfc3920_appendix_prep_helpers(void **state)
{
    (void)state;
    char *s = xmppd_nodeprep("JuLiEt");
    assert_string_equal(s, "juliet");
    free(s);
    assert_null(xmppd_nodeprep("jul'iet"));
    assert_null(xmppd_nodeprep(""));
    assert_null(xmppd_nodeprep(NULL));

    s = xmppd_nameprep("Example.COM.");
    assert_string_equal(s, "example.com");
    free(s);
    assert_null(xmppd_nameprep("exa mple.com"));

    s = xmppd_resourceprep("Foo Bar");
    assert_string_equal(s, "Foo Bar");
    free(s);
    /* U+00AD SOFT HYPHEN is mapped to nothing (RFC 3454 B.1) */
    s = xmppd_resourceprep("a\xc2\xad" "b");
    assert_string_equal(s, "ab");
    free(s);
    assert_null(xmppd_resourceprep("\xc2\xad")); /* empty after mapping */
}

/* What libidn itself says for one part: the reference the ASCII fast
 * path in jid.c must agree with. NULL when the profile rejects it. */
static char *libidn_prep(const char *in, const Stringprep_profile *profile)
{
    char buf[XMPPD_JID_PART_MAX + 1];
    if (strlen(in) >= sizeof(buf))
        return NULL;
    strcpy(buf, in);
    if (stringprep(buf, sizeof(buf), 0, profile) != STRINGPREP_OK || !*buf)
        return NULL;
    return strdup(buf);
}

static void check_same(const char *in, char *(*ours)(const char *), const Stringprep_profile *p)
{
    char *a = ours(in), *b = libidn_prep(in, p);
    if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
        fail_msg("\"%s\": ours \"%s\", libidn \"%s\"", in, a ? a : "(rejected)",
                 b ? b : "(rejected)");
    free(a);
    free(b);
}

/* RFC 3920 Appendix A/B: for printable ASCII, Nodeprep and Resourceprep
 * (the fast path) give exactly what libidn's full profiles give. Random
 * strings over the whole printable range, biased to the special ones. */
static void test_rfc3920_ascii_fast_path_matches_libidn(void **state)
{
    (void)state;
    static const char special[] = " \"&'/:<>@AZaz09.-_";
    unsigned seed = 7;
    char s[24];
    for (int n = 0; n < 50000; n++) {
        size_t len = 1 + (seed = seed * 1103515245u + 12345u) % (sizeof(s) - 1);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            s[i] = (seed >> 16) % 3 == 0 ? special[(seed >> 8) % (sizeof(special) - 1)]
                                         : (char)(0x20 + (seed >> 8) % 95);
        }
        s[len] = '\0';
        check_same(s, xmppd_nodeprep, stringprep_xmpp_nodeprep);
        check_same(s, xmppd_resourceprep, stringprep_xmpp_resourceprep);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7622_3_5_valid),
        cmocka_unit_test(test_rfc7622_3_5_invalid),
        cmocka_unit_test(test_rfc3454_nfkc_localpart),
        cmocka_unit_test(test_rfc7622_3_part_length_limits),
        cmocka_unit_test(test_rfc7622_3_2_domain_limits),
        cmocka_unit_test(test_jid_equality),
        cmocka_unit_test(test_jid_make_dup_to_bare),
        cmocka_unit_test(test_rfc3920_appendix_prep_helpers),
        cmocka_unit_test(test_rfc3920_ascii_fast_path_matches_libidn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
