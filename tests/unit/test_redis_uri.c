/* Redis URIs of the cluster's "redis" option (server/util/redis_uri.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/redis_uri.h"

static void test_tcp(void **state)
{
    redis_uri u;
    const char *why;
    char where[64];
    assert_int_equal(redis_uri_parse("redis://127.0.0.1", &u, &why), 0);
    assert_false(u.tls);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6379);
    assert_null(u.user);
    assert_null(u.password);
    assert_int_equal(u.db, 0);
    assert_string_equal(redis_uri_where(&u, where, sizeof(where)), "127.0.0.1:6379");
    redis_uri_clear(&u);

    /* an empty user: AUTH with the password alone; %40 and %3A decoded */
    assert_int_equal(redis_uri_parse("rediss://:p%40ss%3Aword@redis.example.org:6380/2", &u, &why), 0);
    assert_true(u.tls);
    assert_string_equal(u.host, "redis.example.org");
    assert_int_equal(u.port, 6380);
    assert_null(u.user);
    assert_string_equal(u.password, "p@ss:word");
    assert_int_equal(u.db, 2);
    redis_uri_clear(&u);
    assert_null(u.password);

    assert_int_equal(redis_uri_parse("redis://xmppd:secret@[::1]:7000", &u, &why), 0);
    assert_string_equal(u.user, "xmppd");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_string_equal(redis_uri_where(&u, where, sizeof(where)), "[::1]:7000");
    redis_uri_clear(&u);
}

static void test_unix(void **state)
{
    redis_uri u;
    const char *why;
    assert_int_equal(redis_uri_parse("unix://:pw@/run/redis/redis.sock?db=3", &u, &why), 0);
    assert_null(u.host);
    assert_string_equal(u.path, "/run/redis/redis.sock");
    assert_string_equal(u.password, "pw");
    assert_int_equal(u.db, 3);
    redis_uri_clear(&u);
}

static void test_refused(void **state)
{
    static const char *const bad[] = {
        "http://127.0.0.1",         /* another scheme */
        "redis://",                 /* no host */
        "redis://host:0",           /* port out of range */
        "redis://host:65536",
        "redis://host:6379/x",      /* the path is a database number */
        "redis://user@host",        /* credentials without ':' */
        "redis://user:@host",       /* empty password */
        "redis://:p%4@host",        /* bad escape */
        "redis://:p%00@host",       /* NUL */
        "redis://[::1",             /* unclosed IPv6 */
        "unix://relative/path",
        "unix:///tmp/r.sock?timeout=1",
        NULL,
    };
    for (size_t i = 0; bad[i]; i++) {
        redis_uri u;
        const char *why = NULL;
        assert_int_equal(redis_uri_parse(bad[i], &u, &why), -1);
        assert_non_null(why);
        assert_null(u.host);
        assert_null(u.password);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_unix),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
