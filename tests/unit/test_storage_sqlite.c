/* The SQLite storage driver against a temporary file: the driver source is
 * included so its table and sq_open/sq_close are reachable; completions come
 * back through the real event loop (loop_init/loop_run/loop_break). */
#define _GNU_SOURCE /* for the included driver: dladdr */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "../../modules/storage_sqlite/storage_sqlite.c"
#include "core/loop.h"
#include "core/core.h"

static char g_dir[] = "/tmp/xmppd-test-sqlite-XXXXXX";
static char g_path[512];

/* ---- waiting for callbacks ---- */

typedef struct result {
    int calls;         /* callbacks received */
    int expect;        /* loop_break when calls reaches it */
    int status;
    json_t *value;     /* owned ref */
    char ids[64][24];  /* append ids, query ids */
    int64_t whens[64];
    size_t n;
    bool complete;
} result;

static void result_reset(result *r, int expect)
{
    json_decref(r->value);
    memset(r, 0, sizeof *r);
    r->expect = expect;
}

static void result_hit(result *r)
{
    if (++r->calls == r->expect)
        loop_break();
}

static void wait_for(result *r)
{
    while (r->calls < r->expect)
        loop_run();
}

static void on_done(int status, void *ud)
{
    result *r = ud;
    r->status = status;
    result_hit(r);
}

static void on_get(int status, json_t *value, void *ud)
{
    result *r = ud;
    r->status = status;
    json_decref(r->value);
    r->value = json_incref(value);
    result_hit(r);
}

static void on_append(int status, const char *id, void *ud)
{
    result *r = ud;
    r->status = status;
    if (status == XMPPD_STORE_OK && r->n < 64)
        snprintf(r->ids[r->n++], sizeof r->ids[0], "%s", id);
    result_hit(r);
}

static void on_query(int status, const xmppd_archive_item *items, size_t n, bool complete, void *ud)
{
    result *r = ud;
    r->status = status;
    r->n = 0;
    r->complete = complete;
    json_decref(r->value);
    r->value = json_array();
    for (size_t i = 0; i < n && i < 64; i++) {
        snprintf(r->ids[i], sizeof r->ids[0], "%s", items[i].id);
        r->whens[i] = items[i].when_ms;
        json_array_append(r->value, items[i].value);
        r->n++;
    }
    result_hit(r);
}

static void on_count(int status, size_t n, void *ud)
{
    result *r = ud;
    r->status = status;
    r->n = n;
    result_hit(r);
}

/* ---- fixtures ---- */

/* The archive store the tests use: every archive test runs once on the
 * archive table ("mam") and once on the queue table ("offline",
 * sqs_queue_store). */
static const char *g_store = "mam";

static sq_db *open_db(void)
{
    char err[512] = "";
    sq_db *d = sq_open(NULL, g_path, true, 5000, 32 << 20, err, sizeof err);
    if (!d)
        fail_msg("sq_open: %s", err);
    return d;
}

static int setup(void **state)
{
    static int n;
    snprintf(g_path, sizeof g_path, "%s/db%d.sqlite", g_dir, n++);
    *state = open_db();
    return 0;
}

static int teardown(void **state)
{
    sq_close(*state);
    return 0;
}

static void kv_set(sq_db *d, const char *host, const char *store, const char *user,
                   const char *key, json_t *v)
{
    result r = { .expect = 1 };
    sq_driver.kv_set(d, host, store, user, key, v, on_done, &r);
    wait_for(&r);
    assert_int_equal(r.status, XMPPD_STORE_OK);
    json_decref(v);
}

/* Appends one item, returns its id in id (24 bytes). */
static void append(sq_db *d, const char *user, const char *with, int64_t when, int n, char *id)
{
    result r = { .expect = 1 };
    json_t *v = json_pack("{si}", "n", n);
    sq_driver.archive_append(d, "h", g_store, user, with, when, v, on_append, &r);
    json_decref(v);
    wait_for(&r);
    assert_int_equal(r.status, XMPPD_STORE_OK);
    if (id)
        snprintf(id, 24, "%s", r.ids[0]);
}

static void query(sq_db *d, const char *user, const xmppd_archive_filter *q, result *r)
{
    result_reset(r, 1);
    sq_driver.archive_query(d, "h", g_store, user, q, on_query, r);
    wait_for(r);
}

/* The "n" values of a query result, as "1,2,3". */
static const char *ns(const result *r)
{
    static char buf[512];
    size_t off = 0;
    buf[0] = 0;
    for (size_t i = 0; i < r->n; i++)
        off += snprintf(buf + off, sizeof buf - off, "%s%lld", i ? "," : "",
                        json_integer_value(json_object_get(json_array_get(r->value, i), "n")));
    return buf;
}

/* ---- keyval ---- */

static void test_kv(void **state)
{
    sq_db *d = *state;
    result r = { .expect = 1 };

    kv_set(d, "h", "roster", "alice", "", json_pack("{s[ss]}", "items", "bob", "carol"));
    kv_set(d, "h", "roster", "alice", "x", json_string("é\"\\"));
    kv_set(d, "h", "roster", "bob", "", json_integer(7));
    kv_set(d, "other", "roster", "zed", "", json_true());
    kv_set(d, "h", "vcard", "dave", "", json_object());

    sq_driver.kv_get(d, "h", "roster", "alice", "", on_get, &r);
    wait_for(&r);
    assert_int_equal(r.status, XMPPD_STORE_OK);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r.value, "items"), 1)), "carol");

    result_reset(&r, 1);
    sq_driver.kv_get(d, "h", "roster", "alice", "x", on_get, &r);
    wait_for(&r);
    assert_string_equal(json_string_value(r.value), "é\"\\");

    result_reset(&r, 1);
    sq_driver.kv_get(d, "h", "roster", "nobody", "", on_get, &r);
    wait_for(&r);
    assert_int_equal(r.status, XMPPD_STORE_NOT_FOUND);
    assert_null(r.value);

    /* overwrite */
    kv_set(d, "h", "roster", "bob", "", json_integer(8));
    result_reset(&r, 1);
    sq_driver.kv_get(d, "h", "roster", "bob", "", on_get, &r);
    wait_for(&r);
    assert_int_equal(json_integer_value(r.value), 8);

    result_reset(&r, 1);
    sq_driver.kv_get_all(d, "h", "roster", "alice", on_get, &r);
    wait_for(&r);
    assert_int_equal(r.status, XMPPD_STORE_OK);
    assert_int_equal(json_object_size(r.value), 2);
    assert_non_null(json_object_get(r.value, ""));
    assert_non_null(json_object_get(r.value, "x"));

    result_reset(&r, 1);
    sq_driver.kv_get_all(d, "h", "roster", "nobody", on_get, &r);
    wait_for(&r);
    assert_true(json_is_object(r.value));
    assert_int_equal(json_object_size(r.value), 0);

    result_reset(&r, 1);
    sq_driver.kv_users(d, "h", "roster", on_get, &r);
    wait_for(&r);
    assert_int_equal(json_array_size(r.value), 2);
    assert_string_equal(json_string_value(json_array_get(r.value, 0)), "alice");
    assert_string_equal(json_string_value(json_array_get(r.value, 1)), "bob");

    /* delete */
    kv_set(d, "h", "roster", "bob", "", NULL);
    result_reset(&r, 1);
    sq_driver.kv_get(d, "h", "roster", "bob", "", on_get, &r);
    wait_for(&r);
    assert_int_equal(r.status, XMPPD_STORE_NOT_FOUND);
    result_reset(&r, 1);
    sq_driver.kv_users(d, "h", "roster", on_get, &r);
    wait_for(&r);
    assert_int_equal(json_array_size(r.value), 1);

    /* deleting a missing key is fine; callback may be NULL */
    kv_set(d, "h", "roster", "ghost", "", NULL);
    sq_driver.kv_set(d, "h", "roster", "ghost", "", NULL, NULL, NULL);
    sq_flush(d);
    result_reset(&r, 0);
}

/* ---- archive ---- */

static void fill_archive(sq_db *d, char ids[10][24])
{
    /* n = 1..10, when = n * 1000, with alternating */
    for (int n = 1; n <= 10; n++)
        append(d, "alice", n % 2 ? "odd@x" : "even@x", n * 1000, n, ids[n - 1]);
}

static void test_archive_append_order(void **state)
{
    sq_db *d = *state;
    result r = { .expect = 50 };
    /* queued at once: one batch; ids and callbacks in submission order */
    for (int n = 0; n < 50; n++) {
        json_t *v = json_pack("{si}", "n", n);
        sq_driver.archive_append(d, "h", g_store, "bob", NULL, 5000 - n, v, on_append, &r);
        json_decref(v);
    }
    wait_for(&r);
    assert_int_equal(r.n, 50);
    for (int i = 1; i < 50; i++)
        assert_true(strtoll(r.ids[i], NULL, 10) > strtoll(r.ids[i - 1], NULL, 10));

    xmppd_archive_filter q = { 0 };
    query(d, "bob", &q, &r);
    assert_int_equal(r.status, XMPPD_STORE_OK);
    assert_int_equal(r.n, 50);
    assert_true(r.complete);
    assert_int_equal(r.whens[0], 5000);
    assert_int_equal(r.whens[49], 4951);
    result_reset(&r, 0);
}

/* Stored strings come back as they were, whether or not their JSON text
 * has escapes (plain ones are read without the JSON parser). */
static void test_archive_strings(void **state)
{
    sq_db *d = *state;
    static const char *const texts[] = {
        "<message to='b@h'><body>caf\u00e9 &amp; \xe2\x82\xac</body></message>",
        "quote \" and backslash \\ and / slash",
        "line\nbreak\tand tab",
        "",
        /* plain ASCII read eight bytes at a time: every kind of byte that
         * ends a run, at offsets in and past the first eight */
        "<message to='b@h/r'><body>0123456789abcdefghij</body></message>",
        "01234567\"9", "012345678\\", "0123456789abcde\x1f", "0123456789abcdef\xc3\xa9",
        "\x7f~ 0123456789", "0123456\xe2\x82\xac",
    };
    const size_t n = sizeof texts / sizeof texts[0];
    result r = { .expect = (int)n };
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_string(texts[i]);
        sq_driver.archive_append(d, "h", g_store, "sam", NULL, 1000 + (int64_t)i, v, on_append, &r);
        json_decref(v);
    }
    wait_for(&r);
    xmppd_archive_filter q = { 0 };
    query(d, "sam", &q, &r);
    assert_int_equal(r.status, XMPPD_STORE_OK);
    assert_int_equal(r.n, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(json_string_value(json_array_get(r.value, i)), texts[i]);
    result_reset(&r, 0);
}

static void test_archive_query(void **state)
{
    sq_db *d = *state;
    char ids[10][24];
    result r = { 0 };
    fill_archive(d, ids);
    append(d, "carol", NULL, 1500, 99, NULL);

    query(d, "alice", NULL, &r);
    assert_string_equal(ns(&r), "1,2,3,4,5,6,7,8,9,10");
    assert_true(r.complete);
    assert_string_equal(r.ids[3], ids[3]);

    xmppd_archive_filter q = { .start_ms = 3000, .end_ms = 6000 };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "3,4,5,6");

    q = (xmppd_archive_filter){ .with = "even@x" };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "2,4,6,8,10");

    q = (xmppd_archive_filter){ .with = "odd@x", .start_ms = 4000 };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "5,7,9");

    q = (xmppd_archive_filter){ .after_id = ids[6] };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "8,9,10");

    q = (xmppd_archive_filter){ .before_id = ids[2] };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "1,2");

    q = (xmppd_archive_filter){ .after_id = ids[1], .before_id = ids[5] };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "3,4,5");

    /* paging forward */
    q = (xmppd_archive_filter){ .max = 4 };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "1,2,3,4");
    assert_false(r.complete);
    q = (xmppd_archive_filter){ .max = 4, .after_id = ids[7] };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "9,10");
    assert_true(r.complete);
    q = (xmppd_archive_filter){ .max = 2, .after_id = ids[7] };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "9,10");
    assert_true(r.complete);

    /* the last page, newest first, then paging backwards */
    q = (xmppd_archive_filter){ .max = 3, .reverse = true };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "10,9,8");
    assert_false(r.complete);
    q = (xmppd_archive_filter){ .max = 3, .reverse = true, .before_id = ids[2] };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "2,1");
    assert_true(r.complete);

    /* max 0: everything */
    q = (xmppd_archive_filter){ .reverse = true, .end_ms = 2000 };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "2,1");

    /* ids that are not items of this archive: NOT_FOUND */
    const char *bad[] = { "abc", "0", "-1", "99999", "12x", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        q = (xmppd_archive_filter){ .after_id = bad[i] };
        query(d, "alice", &q, &r);
        assert_int_equal(r.status, XMPPD_STORE_NOT_FOUND);
        assert_int_equal(r.n, 0);
    }
    /* an id of another user's archive */
    query(d, "carol", NULL, &r);
    assert_int_equal(r.n, 1);
    char carol_id[24];
    snprintf(carol_id, sizeof carol_id, "%s", r.ids[0]);
    q = (xmppd_archive_filter){ .before_id = carol_id };
    query(d, "alice", &q, &r);
    assert_int_equal(r.status, XMPPD_STORE_NOT_FOUND);

    /* empty archive */
    query(d, "nobody", NULL, &r);
    assert_int_equal(r.status, XMPPD_STORE_OK);
    assert_int_equal(r.n, 0);
    assert_true(r.complete);
    result_reset(&r, 0);
}

/* Appends with an id the caller chose (ABI 2.1); returns the status. */
static int append_id(sq_db *d, const char *user, const char *id, const char *with, int64_t when, int n)
{
    result r = { .expect = 1 };
    json_t *v = json_pack("{si}", "n", n);
    sq_driver.archive_append_id(d, "h", g_store, user, id, with, when, v, on_append, &r);
    json_decref(v);
    wait_for(&r);
    if (r.status == XMPPD_STORE_OK)
        assert_string_equal(r.ids[0], id);
    return r.status;
}

/* Chosen ids name items in queries (after, before, ids), keep append
 * order, must be unique per archive; a full JID as 'with' is kept and
 * matched exactly, its bare JID matches every resource. */
static void test_archive_chosen_ids(void **state)
{
    sq_db *d = *state;
    result r = { 0 };
    const char *with[] = { "bob@x/phone", "bob@x", "bob@x/pc", "eve@y", "bob@x/phone" };
    const char *ids[] = { "zz", "aa", "mm", "10", "b\"'%" };
    for (int i = 0; i < 5; i++)
        assert_int_equal(append_id(d, "alice", ids[i], with[i], 1000 * (i + 1), i + 1), XMPPD_STORE_OK);
    /* the same id again: refused, nothing stored; another archive may use it */
    assert_int_equal(append_id(d, "alice", "aa", NULL, 9000, 99), XMPPD_STORE_ERROR);
    assert_int_equal(append_id(d, "carol", "aa", NULL, 9000, 99), XMPPD_STORE_OK);

    query(d, "alice", NULL, &r);
    assert_string_equal(ns(&r), "1,2,3,4,5");
    assert_string_equal(r.ids[0], "zz");
    assert_string_equal(r.ids[4], "b\"'%");

    xmppd_archive_filter q = { .after_id = "aa" };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "3,4,5");
    q = (xmppd_archive_filter){ .before_id = "10", .reverse = true, .max = 2 };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "3,2");
    assert_false(r.complete);

    /* ids: archive order, with the other conditions */
    const char *some[] = { "b\"'%", "zz", "mm" };
    q = (xmppd_archive_filter){ .ids = some, .n_ids = 3 };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "1,3,5");
    q = (xmppd_archive_filter){ .ids = some, .n_ids = 3, .start_ms = 2000, .max = 1 };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "3");
    assert_false(r.complete);
    const char *missing[] = { "zz", "nope" };
    q = (xmppd_archive_filter){ .ids = missing, .n_ids = 2 };
    query(d, "alice", &q, &r);
    assert_int_equal(r.status, XMPPD_STORE_NOT_FOUND);
    /* a chosen id is not found through another user's archive */
    q = (xmppd_archive_filter){ .after_id = "mm" };
    query(d, "carol", &q, &r);
    assert_int_equal(r.status, XMPPD_STORE_NOT_FOUND);

    /* peers: bare matches all resources, full only itself */
    q = (xmppd_archive_filter){ .with = "bob@x" };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "1,2,3,5");
    q = (xmppd_archive_filter){ .with = "bob@x/phone" };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "1,5");

    /* deleting by a chosen id */
    result dr = { .expect = 1 };
    q = (xmppd_archive_filter){ .before_id = "mm" };
    sq_driver.archive_delete(d, "h", g_store, "alice", &q, on_done, &dr);
    wait_for(&dr);
    assert_int_equal(dr.status, XMPPD_STORE_OK);
    query(d, "alice", NULL, &r);
    assert_string_equal(ns(&r), "3,4,5");
    result_reset(&r, 0);
}

static size_t count(sq_db *d, const char *host, const char *user)
{
    result r = { .expect = 1 };
    sq_driver.archive_count(d, host, g_store, user, on_count, &r);
    wait_for(&r);
    assert_int_equal(r.status, XMPPD_STORE_OK);
    return r.n;
}

static void test_archive_count_delete(void **state)
{
    sq_db *d = *state;
    char ids[10][24];
    result r = { 0 };
    fill_archive(d, ids);
    append(d, "carol", NULL, 1500, 99, NULL);
    assert_int_equal(count(d, "h", "alice"), 10);
    assert_int_equal(count(d, "h", "nobody"), 0);

    xmppd_archive_filter q = { .end_ms = 3000 };
    result_reset(&r, 1);
    sq_driver.archive_delete(d, "h", g_store, "alice", &q, on_done, &r);
    wait_for(&r);
    assert_int_equal(r.status, XMPPD_STORE_OK);
    assert_int_equal(count(d, "h", "alice"), 7);

    /* the oldest two of what remains */
    q = (xmppd_archive_filter){ .max = 2 };
    result_reset(&r, 1);
    sq_driver.archive_delete(d, "h", g_store, "alice", &q, on_done, &r);
    wait_for(&r);
    query(d, "alice", NULL, &r);
    assert_string_equal(ns(&r), "6,7,8,9,10");

    q = (xmppd_archive_filter){ .with = "even@x" };
    result_reset(&r, 1);
    sq_driver.archive_delete(d, "h", g_store, "alice", &q, on_done, &r);
    wait_for(&r);
    query(d, "alice", NULL, &r);
    assert_string_equal(ns(&r), "7,9");

    result_reset(&r, 1);
    sq_driver.archive_delete(d, "h", g_store, "alice", NULL, on_done, &r);
    wait_for(&r);
    assert_int_equal(r.status, XMPPD_STORE_OK);
    assert_int_equal(count(d, "h", "alice"), 0);
    assert_int_equal(count(d, "h", "carol"), 1);

    /* ids are never reused */
    char id[24];
    append(d, "alice", NULL, 1, 1, id);
    assert_true(strtoll(id, NULL, 10) > strtoll(ids[9], NULL, 10));
    result_reset(&r, 0);
}

/* archive_replace: the item keeps its id, time and place; only its value
 * changes; another user's item or a malformed id is NOT_FOUND; ids the
 * appender chose work as well. */
static void test_archive_replace(void **state)
{
    sq_db *d = *state;
    char ids[10][24], other[24];
    result r = { 0 };
    fill_archive(d, ids);
    append(d, "carol", NULL, 1500, 99, other);

    json_t *v = json_pack("{si}", "n", 42);
    result_reset(&r, 1);
    sq_driver.archive_replace(d, "h", g_store, "alice", ids[4], v, on_done, &r);
    wait_for(&r);
    assert_int_equal(r.status, XMPPD_STORE_OK);
    query(d, "alice", NULL, &r);
    assert_string_equal(ns(&r), "1,2,3,4,42,6,7,8,9,10");
    assert_string_equal(r.ids[4], ids[4]);

    static const char *const missing[] = { NULL, "x1", "0", "99999999" };
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        result_reset(&r, 1);
        sq_driver.archive_replace(d, "h", g_store, "alice", missing[i] ? missing[i] : other, v,
                                  on_done, &r);
        wait_for(&r);
        assert_int_equal(r.status, XMPPD_STORE_NOT_FOUND);
    }
    query(d, "carol", NULL, &r);
    assert_string_equal(ns(&r), "99");

    /* an id the appender chose names its item, also one reading as a number */
    assert_int_equal(append_id(d, "dave", "m-1", NULL, 100, 1), XMPPD_STORE_OK);
    assert_int_equal(append_id(d, "dave", "7", NULL, 200, 2), XMPPD_STORE_OK);
    static const char *const chosen[] = { "m-1", "7" };
    for (size_t i = 0; i < 2; i++) {
        result_reset(&r, 1);
        sq_driver.archive_replace(d, "h", g_store, "dave", chosen[i], v, on_done, &r);
        wait_for(&r);
        assert_int_equal(r.status, XMPPD_STORE_OK);
    }
    query(d, "dave", NULL, &r);
    assert_string_equal(ns(&r), "42,42");
    assert_string_equal(r.ids[0], "m-1");
    json_decref(v);
    result_reset(&r, 0);
}

static void test_purge_user(void **state)
{
    sq_db *d = *state;
    result r = { .expect = 1 };
    kv_set(d, "h", "roster", "alice", "", json_true());
    kv_set(d, "h", "vcard", "alice", "", json_true());
    kv_set(d, "h", "roster", "bob", "", json_true());
    kv_set(d, "other", "roster", "alice", "", json_true());
    append(d, "alice", NULL, 1, 1, NULL);
    append(d, "bob", NULL, 1, 1, NULL);

    sq_driver.purge_user(d, "h", "alice", on_done, &r);
    wait_for(&r);
    assert_int_equal(r.status, XMPPD_STORE_OK);

    result_reset(&r, 1);
    sq_driver.kv_get_all(d, "h", "vcard", "alice", on_get, &r);
    wait_for(&r);
    assert_int_equal(json_object_size(r.value), 0);
    result_reset(&r, 1);
    sq_driver.kv_get(d, "h", "roster", "alice", "", on_get, &r);
    wait_for(&r);
    assert_int_equal(r.status, XMPPD_STORE_NOT_FOUND);
    assert_int_equal(count(d, "h", "alice"), 0);
    /* others untouched */
    assert_int_equal(count(d, "h", "bob"), 1);
    result_reset(&r, 1);
    sq_driver.kv_get(d, "other", "roster", "alice", "", on_get, &r);
    wait_for(&r);
    assert_int_equal(r.status, XMPPD_STORE_OK);
    result_reset(&r, 0);
}

/* flush returns only once the writes are committed: another connection sees
 * them although no callback has run yet. */
static void test_flush_durable(void **state)
{
    sq_db *d = *state;
    result r = { .expect = 200 };
    for (int n = 0; n < 200; n++) {
        json_t *v = json_integer(n);
        sq_driver.archive_append(d, "h", g_store, "erin", NULL, n, v, on_append, &r);
        json_decref(v);
    }
    sq_flush(d);
    assert_int_equal(r.calls, 0);

    sqlite3 *raw;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(g_path, &raw), SQLITE_OK);
    char sql[100];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE user='erin'",
             sqs_queue_store(g_store) ? "queue" : "archive");
    assert_int_equal(sqlite3_prepare_v2(raw, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 200);
    sqlite3_finalize(st);
    sqlite3_close(raw);
    wait_for(&r);
    assert_int_equal(r.n, 64); /* the first 64 ids were kept */
}

static void test_persistence(void **state)
{
    sq_db *d = *state;
    result r = { .expect = 1 };
    kv_set(d, "h", "accounts", "alice", "", json_pack("{si}", "v", 1));
    append(d, "alice", "x@y", 42, 1, NULL);
    sq_close(d);

    *state = d = open_db();
    sq_driver.kv_get(d, "h", "accounts", "alice", "", on_get, &r);
    wait_for(&r);
    assert_int_equal(r.status, XMPPD_STORE_OK);
    assert_int_equal(json_integer_value(json_object_get(r.value, "v")), 1);
    query(d, "alice", NULL, &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.whens[0], 42);
    result_reset(&r, 0);

    /* unload with callbacks still pending: they run later, then d is freed */
    result p = { .expect = 1 };
    sq_driver.kv_set(d, "h", "accounts", "bob", "", json_true(), on_done, &p);
    sq_close(d);
    *state = NULL;
    wait_for(&p);
    assert_int_equal(p.status, XMPPD_STORE_OK);
    *state = open_db();
}

static void test_schema_version(void **state)
{
    sq_close(*state);
    *state = NULL;
    sqlite3 *raw;
    assert_int_equal(sqlite3_open(g_path, &raw), SQLITE_OK);
    int v = -1;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    assert_int_equal(v, SQ_SCHEMA_VERSION);
    assert_int_equal(sqlite3_exec(raw, "PRAGMA user_version = 1000", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);

    char err[512] = "";
    assert_null(sq_open(NULL, g_path, true, 100, 1 << 20, err, sizeof err));
    assert_non_null(strstr(err, "newer"));

    /* not a database at all */
    char junk[600];
    snprintf(junk, sizeof junk, "%s/junk.sqlite", g_dir);
    FILE *f = fopen(junk, "w");
    fputs("this is not a database, not even close to one, definitely not\n", f);
    for (int i = 0; i < 100; i++)
        fputs("padding padding padding padding padding padding\n", f);
    fclose(f);
    err[0] = 0;
    assert_null(sq_open(NULL, junk, true, 100, 1 << 20, err, sizeof err));
    assert_non_null(strstr(err, junk));
    unlink(junk);
}

/* A version 2 file keeps offline messages in the archive table: they move
 * to the queue table with their ids and order; other archives stay. */
static void test_migration_from_v2(void **state)
{
    sq_close(*state);
    *state = NULL;
    unlink(g_path);
    sqlite3 *raw;
    assert_int_equal(sqlite3_open(g_path, &raw), SQLITE_OK);
    char *err = NULL;
    assert_int_equal(sqlite3_exec(raw, sq_migrations[0], NULL, NULL, &err), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw, sq_migrations[1], NULL, NULL, &err), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw, "PRAGMA user_version = 2;"
                                       "INSERT INTO archive (id, host, store, user, with_jid, when_ms, value)"
                                       " VALUES (7, 'h', 'offline', 'alice', 'bob@x', 1, '{\"n\":1}'),"
                                       " (8, 'h', 'mam', 'alice', 'bob@x', 2, '{\"n\":2}'),"
                                       " (9, 'h', 'offline', 'alice', 'bob@x', 3, '{\"n\":3}')",
                                 NULL, NULL, &err), SQLITE_OK);
    sqlite3_close(raw);
    sq_db *d = *state = open_db();
    result r = { 0 };
    const char *group_store = g_store;
    g_store = "offline";
    query(d, "alice", NULL, &r);
    assert_string_equal(ns(&r), "1,3");
    assert_string_equal(r.ids[0], "7");
    assert_string_equal(r.ids[1], "9");
    char id[32];
    append(d, "alice", NULL, 4, 4, id); /* ids go on above the moved ones */
    assert_string_equal(id, "10");
    g_store = "mam";
    query(d, "alice", NULL, &r);
    assert_string_equal(ns(&r), "2");
    g_store = group_store;
    result_reset(&r, 0);
}

/* A version 1 file (before chosen ids) is migrated: its items keep their
 * driver ids, full JIDs in with_jid are split. */
static void test_migration_from_v1(void **state)
{
    sq_close(*state);
    *state = NULL;
    unlink(g_path);
    sqlite3 *raw;
    assert_int_equal(sqlite3_open(g_path, &raw), SQLITE_OK);
    char *err = NULL;
    assert_int_equal(sqlite3_exec(raw, sq_migrations[0], NULL, NULL, &err), SQLITE_OK);
    char sql[400];
    snprintf(sql, sizeof sql, "PRAGMA user_version = 1;"
             "INSERT INTO archive (host, store, user, with_jid, when_ms, value)"
             " VALUES ('h', '%s', 'alice', 'bob@x/phone', 1, '{\"n\":1}'),"
             " ('h', '%s', 'alice', 'bob@x', 2, '{\"n\":2}')", g_store, g_store);
    assert_int_equal(sqlite3_exec(raw, sql, NULL, NULL, &err), SQLITE_OK);
    sqlite3_close(raw);
    sq_db *d = *state = open_db();
    result r = { 0 };
    xmppd_archive_filter q = { .with = "bob@x/phone" };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "1");
    q = (xmppd_archive_filter){ .after_id = "1" };
    query(d, "alice", &q, &r);
    assert_string_equal(ns(&r), "2");
    result_reset(&r, 0);
}

static void test_new_file_private(void **state)
{
    struct stat sb;
    assert_int_equal(stat(g_path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
}

static void rm_dir(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_append_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_chosen_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_count_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_durable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_file_private, setup, teardown),
    };
    log_open(NULL, XMPPD_LOG_WARN);
    if (!mkdtemp(g_dir) || loop_init() != 0)
        return 1;
    int rc = cmocka_run_group_tests_name("archive table", tests, NULL, NULL);
    g_store = "offline";
    rc |= cmocka_run_group_tests_name("queue table", tests, NULL, NULL);
    loop_free();
    rm_dir();
    return rc;
}
