/* s2s pieces without sockets: RFC 2782 ordering of SRV targets (as used by
 * RFC 6120 §3.2.1 and XEP-0368) with a scripted random source, and
 * XEP-0185 dialback keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "s2s/s2s.h"

/* Scripted "random" numbers, each reduced into [0, n] like the real one. */
static const uint32_t *script;
static size_t script_len, script_pos;
static uint32_t scripted(uint32_t n)
{
    uint32_t v = script_pos < script_len ? script[script_pos++] : 0;
    return v > n ? n : v;
}

static void order(s2s_target *t, size_t n, const uint32_t *vals, size_t nvals)
{
    script = vals;
    script_len = nvals;
    script_pos = 0;
    resolver_order(t, n, scripted);
}

#define T(name, prio, w) { (char *)(name), 0, false, (prio), (w) }

/* RFC 2782: lower priority first, whatever the weights. */
static void test_rfc2782_priority_first(void **state)
{
    s2s_target t[] = { T("c", 30, 100), T("a", 10, 0), T("b", 20, 65535) };
    order(t, 3, NULL, 0);
    assert_string_equal(t[0].host, "a");
    assert_string_equal(t[1].host, "b");
    assert_string_equal(t[2].host, "c");
}

/* RFC 2782: within a priority, the first entry whose running sum reaches
 * the random number [0, sum] is taken; zero weights are placed first, so
 * they are only taken for 0. */
static void test_rfc2782_weighted_selection(void **state)
{
    /* sum 0+10+30 = 40; r = 25 -> running sums 0, 10, 40: "w30" */
    s2s_target t[] = { T("w10", 5, 10), T("w30", 5, 30), T("w0", 5, 0) };
    const uint32_t r1[] = { 25, 0 };
    order(t, 3, r1, 2);
    assert_string_equal(t[0].host, "w30");
    /* left: w0, w10 (sum 10); r = 0 -> w0 (running sum 0 >= 0) */
    assert_string_equal(t[1].host, "w0");
    assert_string_equal(t[2].host, "w10");

    s2s_target u[] = { T("w10", 5, 10), T("w30", 5, 30), T("w0", 5, 0) };
    const uint32_t r2[] = { 1, 5 };
    order(u, 3, r2, 2);
    assert_string_equal(u[0].host, "w10"); /* 1 <= 10 */
    assert_string_equal(u[1].host, "w30"); /* left w0, w30: 5 <= 30 */
    assert_string_equal(u[2].host, "w0");
}

/* Priorities are ordered independently: weights never move an entry into
 * another priority group. */
static void test_rfc2782_groups_independent(void **state)
{
    s2s_target t[] = { T("p2a", 2, 1), T("p1a", 1, 50), T("p2b", 2, 99), T("p1b", 1, 50) };
    const uint32_t r[] = { 100, 99 }; /* p1: sum 100 -> last; p2: sum 100, 99 -> p2b */
    order(t, 4, r, 2);
    assert_int_equal(t[0].priority, 1);
    assert_int_equal(t[1].priority, 1);
    assert_int_equal(t[2].priority, 2);
    assert_int_equal(t[3].priority, 2);
    assert_string_equal(t[2].host, "p2b");
    assert_string_equal(t[3].host, "p2a");
}

/* Over many draws a weight-3 target leads about three times as often as a
 * weight-1 one (the distribution RFC 2782 asks for). */
static uint32_t lcg_state = 12345;
static uint32_t lcg(uint32_t n)
{
    lcg_state = lcg_state * 1103515245u + 12345u;
    return (lcg_state >> 8) % (n + 1);
}

static void test_rfc2782_distribution(void **state)
{
    int first_heavy = 0;
    for (int i = 0; i < 4000; i++) {
        s2s_target t[] = { T("light", 0, 1), T("heavy", 0, 3) };
        resolver_order(t, 2, lcg);
        if (strcmp(t[0].host, "heavy") == 0)
            first_heavy++;
    }
    /* expected 3000 (the selection in [0, 4]: 0 and 1 pick light) -> 2400..3300 */
    assert_in_range(first_heavy, 2200, 3300);
}

/* XEP-0185 §2 formula; the expected value was computed independently
 * (Python hashlib/hmac):
 * HMAC-SHA256(hex(SHA256("s3cr3tf0rd14lb4ck")),
 *             "example.net example.com D60000229F") */
static void test_xep0185_key(void **state)
{
    assert_int_equal(dialback_init("s3cr3tf0rd14lb4ck"), 0);
    char key[65];
    dialback_key("example.net", "example.com", "D60000229F", key);
    assert_string_equal(key, "008c689ff366b50c63d69a3e2d2c0e0e1f8404b0118eb688a0102c87cb691bdc");
    assert_true(dialback_key_ok("example.net", "example.com", "D60000229F", key));
    assert_false(dialback_key_ok("example.net", "example.com", "D60000229G", key));
    assert_false(dialback_key_ok("example.com", "example.net", "D60000229F", key));
    key[10] ^= 1;
    assert_false(dialback_key_ok("example.net", "example.com", "D60000229F", key));
    assert_false(dialback_key_ok("example.net", "example.com", "D60000229F", ""));
    dialback_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc2782_priority_first),
        cmocka_unit_test(test_rfc2782_weighted_selection),
        cmocka_unit_test(test_rfc2782_groups_independent),
        cmocka_unit_test(test_rfc2782_distribution),
        cmocka_unit_test(test_xep0185_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
