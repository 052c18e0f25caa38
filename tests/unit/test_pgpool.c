/* The asynchronous libpq pool (modules/pgpool) against a fake PostgreSQL
 * server in this process: a thread speaking just enough of the wire
 * protocol (startup, Parse/Bind/Describe/Execute/Sync) for libpq, whose
 * statements behave by their SQL text:
 *   "echo"  one row: "<connection number>:<$1>"
 *   "fail"  an error, SQLSTATE 23505
 *   "hang"  no answer ever
 *   "close" the server closes the connection
 * The pool runs on the real event loop (loop_run / loop_break). What is
 * checked is pgpool.h's contract: lazy prepare per connection, a shard's
 * queries on one connection in order, values copied, every callback once
 * and never from inside pgpool_submit, the failure behaviour (a broken
 * connection fails its running query and reconnects, queries fail at once
 * while the server is down, timeouts), and the owner unloading: queries
 * still pending come back CANCELLED before its unload(), after a bounded
 * drain. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/core.h"
#include "core/loop.h"
#include "../../modules/pgpool/pgpool.h"

/* ---- the fake server ------------------------------------------------------------ */

#define FAKE_MAX_CONNS 64

typedef struct fake {
    pthread_mutex_t lock;
    int lfd, port;
    pthread_t thread;
    int fds[FAKE_MAX_CONNS];   /* open connections, -1: closed */
    int accepted;              /* connections accepted so far */
    int parses;                /* Parse messages seen */
} fake;

static fake F = { .lock = PTHREAD_MUTEX_INITIALIZER, .lfd = -1 };

static int read_full(int fd, void *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void put32(char *p, uint32_t v)
{
    v = htonl(v);
    memcpy(p, &v, 4);
}

static void put16(char *p, uint16_t v)
{
    v = htons(v);
    memcpy(p, &v, 2);
}

/* Sends message type t with body (n bytes). */
static void msg(int fd, char t, const void *body, size_t n)
{
    char head[5];
    head[0] = t;
    put32(head + 1, (uint32_t)n + 4);
    if (write(fd, head, 5) != 5 || (n && write(fd, body, n) != (ssize_t)n))
        return;
}

static void param_status(int fd, const char *k, const char *v)
{
    char b[128];
    size_t n = (size_t)snprintf(b, sizeof b, "%s", k) + 1;
    n += (size_t)snprintf(b + n, sizeof b - n, "%s", v) + 1;
    msg(fd, 'S', b, n);
}

static void error_response(int fd, const char *state, const char *text)
{
    char b[256];
    size_t n = (size_t)snprintf(b, sizeof b, "SERROR%cC%s%cM%s%c", 0, state, 0, text, 0);
    b[n++] = 0;
    msg(fd, 'E', b, n);
}

typedef struct fake_conn {
    int fd, id;
    char names[16][32], sqls[16][16]; /* prepared statements */
    int n_stmts;
    const char *sql;                  /* of the bound portal */
    char p1[128];                     /* its $1 */
} fake_conn;

static const char *fake_sql_of(fake_conn *c, const char *name)
{
    for (int i = 0; i < c->n_stmts; i++)
        if (strcmp(c->names[i], name) == 0)
            return c->sqls[i];
    return "";
}

/* Bind: the statement's SQL and its first parameter. */
static void fake_bind(fake_conn *c, const char *b, size_t n)
{
    const char *p = b + strlen(b) + 1; /* portal */
    c->sql = fake_sql_of(c, p);
    p += strlen(p) + 1;
    uint16_t nf, np;
    memcpy(&nf, p, 2);
    p += 2 + 2 * ntohs(nf);
    memcpy(&np, p, 2);
    p += 2;
    snprintf(c->p1, sizeof c->p1, "-");
    if (ntohs(np) > 0 && p + 4 <= b + n) {
        int32_t len;
        memcpy(&len, p, 4);
        len = (int32_t)ntohl((uint32_t)len);
        if (len < 0)
            snprintf(c->p1, sizeof c->p1, "NULL");
        else
            snprintf(c->p1, sizeof c->p1, "%.*s", len, p + 4);
    }
}

/* Execute: what the statement's SQL says. 1: stop serving c. */
static int fake_execute(fake_conn *c, bool *skip)
{
    char b[256];
    if (strcmp(c->sql, "echo") == 0) {
        char v[160];
        int vn = snprintf(v, sizeof v, "%d:%s", c->id, c->p1);
        put16(b, 1);
        put32(b + 2, (uint32_t)vn);
        memcpy(b + 6, v, (size_t)vn);
        msg(c->fd, 'D', b, 6 + (size_t)vn);
        msg(c->fd, 'C', "SELECT 1", 9);
    } else if (strcmp(c->sql, "fail") == 0) {
        error_response(c->fd, "23505", "duplicate key value");
        *skip = true;
    } else if (strcmp(c->sql, "hang") == 0) {
        while (read(c->fd, b, sizeof b) > 0) /* until the client gives up */
            ;
        return 1;
    } else if (strcmp(c->sql, "close") == 0) {
        return 1;
    } else {
        msg(c->fd, 'C', "SELECT 0", 9);
    }
    return 0;
}

/* Describe (portal): one text column for "echo", else no data. */
static void fake_describe(fake_conn *c)
{
    char b[64];
    if (strcmp(c->sql, "echo") != 0) {
        msg(c->fd, 'n', NULL, 0);
        return;
    }
    put16(b, 1);
    memcpy(b + 2, "v", 2);
    put32(b + 4, 0);
    put16(b + 8, 0);
    put32(b + 10, 25); /* text */
    put16(b + 14, (uint16_t)-1);
    put32(b + 16, (uint32_t)-1);
    put16(b + 20, 0);
    msg(c->fd, 'T', b, 22);
}

static void fake_serve(fake_conn *c)
{
    char startup[512];
    uint32_t len;
    if (read_full(c->fd, &len, 4) != 0 || ntohl(len) < 8 || ntohl(len) > sizeof startup ||
        read_full(c->fd, startup, ntohl(len) - 4) != 0)
        return;
    char ok[4] = { 0 };
    msg(c->fd, 'R', ok, 4);
    param_status(c->fd, "server_version", "15.0");
    param_status(c->fd, "client_encoding", "UTF8");
    param_status(c->fd, "standard_conforming_strings", "on");
    param_status(c->fd, "integer_datetimes", "on");
    char key[8] = { 0 };
    msg(c->fd, 'K', key, 8);
    msg(c->fd, 'Z', "I", 1);
    bool skip = false; /* after an error: until Sync */
    for (;;) {
        char t, body[4096];
        if (read_full(c->fd, &t, 1) != 0 || read_full(c->fd, &len, 4) != 0 || ntohl(len) < 4 ||
            ntohl(len) - 4 > sizeof body - 1 || read_full(c->fd, body, ntohl(len) - 4) != 0)
            return;
        size_t n = ntohl(len) - 4;
        body[n] = '\0';
        if (t == 'X')
            return;
        if (t == 'S') {
            skip = false;
            msg(c->fd, 'Z', "I", 1);
            continue;
        }
        if (skip)
            continue;
        if (t == 'P') {
            pthread_mutex_lock(&F.lock);
            F.parses++;
            pthread_mutex_unlock(&F.lock);
            if (c->n_stmts < 16) {
                snprintf(c->names[c->n_stmts], sizeof c->names[0], "%s", body);
                snprintf(c->sqls[c->n_stmts++], sizeof c->sqls[0], "%s", body + strlen(body) + 1);
            }
            msg(c->fd, '1', NULL, 0);
        } else if (t == 'B') {
            fake_bind(c, body, n);
            msg(c->fd, '2', NULL, 0);
        } else if (t == 'D') {
            fake_describe(c);
        } else if (t == 'E' && fake_execute(c, &skip)) {
            return;
        }
    }
}

static void *fake_conn_main(void *arg)
{
    fake_conn *c = arg;
    fake_serve(c);
    pthread_mutex_lock(&F.lock);
    if (F.fds[c->id] >= 0)
        close(F.fds[c->id]);
    F.fds[c->id] = -1;
    pthread_mutex_unlock(&F.lock);
    free(c);
    return NULL;
}

static void *fake_accept_main(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        fake_conn *c = calloc(1, sizeof *c);
        pthread_mutex_lock(&F.lock);
        c->fd = fd;
        c->id = F.accepted++;
        bool full = c->id >= FAKE_MAX_CONNS;
        if (!full)
            F.fds[c->id] = fd;
        pthread_mutex_unlock(&F.lock);
        if (full) {
            close(fd);
            free(c);
            continue;
        }
        pthread_t t;
        pthread_create(&t, NULL, fake_conn_main, c);
        pthread_detach(t);
    }
}

/* Listens (again) on F.port, or a new port when 0. */
static void fake_start(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)F.port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    F.lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(F.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    assert_int_equal(bind(F.lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(F.lfd, 16), 0);
    socklen_t al = sizeof a;
    getsockname(F.lfd, (struct sockaddr *)&a, &al);
    F.port = ntohs(a.sin_port);
    pthread_create(&F.thread, NULL, fake_accept_main, (void *)(intptr_t)F.lfd);
}

/* Stops listening and drops every connection: the database is down. */
static void fake_stop(void)
{
    shutdown(F.lfd, SHUT_RDWR);
    close(F.lfd);
    pthread_join(F.thread, NULL);
    pthread_mutex_lock(&F.lock);
    for (int i = 0; i < F.accepted; i++)
        if (F.fds[i] >= 0)
            shutdown(F.fds[i], SHUT_RDWR);
    pthread_mutex_unlock(&F.lock);
}

static int fake_count(const int *what)
{
    pthread_mutex_lock(&F.lock);
    int n = *what;
    pthread_mutex_unlock(&F.lock);
    return n;
}

/* ---- the pool's side ----------------------------------------------------------- */

static const char *const g_sql[] = { "echo", "echo", "fail", "hang", "close" };
enum { S_ECHO, S_ECHO2, S_FAIL, S_HANG, S_CLOSE };

static const char *test_sql(int i, char *buf, size_t len, void *ud)
{
    (void)buf;
    (void)len;
    (void)ud;
    return g_sql[i];
}

static char g_conninfo[128];

/* A query timeout far above any test's wait: on a loaded machine (CI runs
 * distcheck next to the integration suites) queries queued behind a
 * connection's start-up waited more than 400 ms and failed; test_query_timeout
 * sets its own. */
static pgpool_conf test_conf(int size)
{
    snprintf(g_conninfo, sizeof g_conninfo,
             "host=127.0.0.1 port=%d user=x dbname=x sslmode=disable gssencmode=disable", F.port);
    return (pgpool_conf){ .conninfo = g_conninfo, .application_name = "test", .what = "database",
                          .size = size, .connect_timeout_ms = 2000, .query_timeout_ms = 5000,
                          .reconnect_max_ms = 300, .drain_ms = 0, .n_statements = 5, .stmt_prefix = "t_",
                          .sql = test_sql };
}

/* One answer. */
typedef struct answer {
    int calls;
    int status;
    char value[160];   /* echo: "conn:$1" */
    char state[8];     /* FAILED: the SQLSTATE */
    uint64_t at;       /* ms */
} answer;

static int g_pending;      /* answers still expected; the loop breaks at 0 */
static bool g_in_submit;   /* inside pgpool_submit: no callback may run */
static const answer *g_order[64];
static int g_n_order;

static void on_answer(int status, const PGresult *res, void *ud)
{
    answer *a = ud;
    assert_false(g_in_submit);
    a->calls++;
    a->status = status;
    a->at = xmppd_now_ms();
    if (status == PGPOOL_OK && PQntuples(res) == 1)
        snprintf(a->value, sizeof a->value, "%s", PQgetvalue(res, 0, 0));
    if (status == PGPOOL_FAILED)
        snprintf(a->state, sizeof a->state, "%s", PQresultErrorField(res, PG_DIAG_SQLSTATE));
    if (g_n_order < 64)
        g_order[g_n_order++] = a;
    if (--g_pending == 0)
        loop_break();
}

static void submit(pgpool *p, int stmt, int shard, const char *v, answer *a)
{
    const char *vals[] = { v };
    pgpool_query q = { .stmt = stmt, .shard = shard, .n_values = 1, .values = vals };
    g_pending++;
    g_in_submit = true;
    assert_int_equal(pgpool_submit(p, &q, on_answer, a), 0);
    g_in_submit = false;
}

static uint64_t give_up(void *ud)
{
    *(bool *)ud = true;
    loop_break();
    return 0;
}

/* Runs the loop until every answer came (true), or ms passed. */
static bool wait_all(uint64_t ms)
{
    bool late = false;
    xmppd_timer *t = xmppd_timer_add(NULL, ms, give_up, &late);
    while (g_pending > 0 && !late)
        loop_run();
    if (!late)
        xmppd_timer_cancel(t);
    return g_pending == 0;
}

/* Lets the loop run for ms. */
static void run_for(uint64_t ms)
{
    bool late = false;
    xmppd_timer_add(NULL, ms, give_up, &late);
    while (!late)
        loop_run();
}

/* Two keys whose shards land on different connections of a pool of 2. */
static void two_shards(int *a, int *b)
{
    *a = pgpool_shard("h", "alice");
    char user[16];
    for (int i = 0;; i++) {
        snprintf(user, sizeof user, "u%d", i);
        if ((*b = pgpool_shard("h", user)) % 2 != *a % 2)
            return;
    }
}

static int setup(void **state)
{
    (void)state;
    g_pending = 0;
    g_n_order = 0;
    return 0;
}

/* ---- tests -------------------------------------------------------------------- */

/* A shard's queries run on one connection in submission order; the other
 * shard's on the other; each statement is prepared once per connection
 * that runs it; values are copied at submit. */
static void test_shards_order_and_lazy_prepare(void **state)
{
    (void)state;
    pgpool_conf c = test_conf(2);
    pgpool *p = pgpool_open(NULL, &c);
    assert_non_null(p);
    int sa, sb;
    two_shards(&sa, &sb);
    int parses0 = fake_count(&F.parses);
    answer a[10] = { 0 }, b[10] = { 0 };
    for (int i = 0; i < 10; i++) {
        char v[16];
        snprintf(v, sizeof v, "a%d", i);
        submit(p, S_ECHO, sa, v, &a[i]);
        snprintf(v, sizeof v, "b%d", i);
        submit(p, S_ECHO, sb, v, &b[i]);
        memset(v, 'x', sizeof v - 1); /* the pool has its copy */
    }
    assert_true(wait_all(5000));
    int ia = -1, ib = -1;
    for (int i = 0; i < 10; i++) {
        char want[16];
        assert_int_equal(a[i].calls, 1);
        assert_int_equal(a[i].status, PGPOOL_OK);
        snprintf(want, sizeof want, "a%d", i);
        assert_string_equal(strchr(a[i].value, ':') + 1, want);
        if (i > 0)
            assert_int_equal(atoi(a[i].value), atoi(a[0].value)); /* one connection */
        assert_int_equal(b[i].status, PGPOOL_OK);
        assert_int_equal(atoi(b[i].value), atoi(b[0].value));
    }
    assert_int_not_equal(atoi(a[0].value), atoi(b[0].value));
    for (int i = 0; i < g_n_order; i++) { /* each shard answered in order */
        for (int k = 0; k < 10; k++) {
            if (g_order[i] == &a[k]) {
                assert_true(k == ia + 1);
                ia = k;
            } else if (g_order[i] == &b[k]) {
                assert_true(k == ib + 1);
                ib = k;
            }
        }
    }
    assert_int_equal(fake_count(&F.parses) - parses0, 2); /* S_ECHO once per connection */
    answer x = { 0 };
    submit(p, S_ECHO2, sa, NULL, &x);
    assert_true(wait_all(5000));
    assert_int_equal(x.status, PGPOOL_OK);
    assert_string_equal(strchr(x.value, ':') + 1, "NULL");
    assert_int_equal(fake_count(&F.parses) - parses0, 3);
    pgpool_free(p);
}

/* PGPOOL_ANY queries use every connection; a statement the database
 * refuses comes back FAILED with its error and the connection stays. */
static void test_any_and_refused(void **state)
{
    (void)state;
    pgpool_conf c = test_conf(2);
    pgpool *p = pgpool_open(NULL, &c);
    answer a[6] = { 0 }, f = { 0 }, after = { 0 };
    for (int i = 0; i < 6; i++)
        submit(p, S_ECHO, PGPOOL_ANY, "any", &a[i]);
    assert_true(wait_all(5000));
    for (int i = 0; i < 6; i++)
        assert_int_equal(a[i].status, PGPOOL_OK);
    int accepted = fake_count(&F.accepted);
    submit(p, S_FAIL, 7, "x", &f);
    submit(p, S_ECHO, 7, "after", &after);
    assert_true(wait_all(5000));
    assert_int_equal(f.status, PGPOOL_FAILED);
    assert_string_equal(f.state, "23505");
    assert_int_equal(after.status, PGPOOL_OK);
    assert_int_equal(fake_count(&F.accepted), accepted); /* no reconnect */
    pgpool_free(p);
}

/* pgpool.h Failure: a connection that breaks fails its running query and
 * reconnects at once; the query queued behind it runs on the new
 * connection. */
static void test_broken_connection_fails_running_query(void **state)
{
    (void)state;
    pgpool_conf c = test_conf(1);
    pgpool *p = pgpool_open(NULL, &c);
    answer first = { 0 }, broken = { 0 }, queued = { 0 };
    submit(p, S_ECHO, 1, "first", &first);
    submit(p, S_CLOSE, 1, "x", &broken);
    submit(p, S_ECHO, 1, "queued", &queued);
    assert_true(wait_all(5000));
    assert_int_equal(first.status, PGPOOL_OK);
    assert_int_equal(broken.calls, 1);
    assert_int_equal(broken.status, PGPOOL_ERROR);
    assert_int_equal(queued.status, PGPOOL_OK);
    assert_string_equal(strchr(queued.value, ':') + 1, "queued");
    assert_int_not_equal(atoi(queued.value), atoi(first.value)); /* a new connection */
    pgpool_free(p);
}

/* pgpool.h Failure: with the database down, queries fail at once (a loop
 * turn later, not after query_timeout), and once it is back the pool
 * reconnects on its own (back-off capped at reconnect_max). */
static void test_down_fails_at_once_then_recovers(void **state)
{
    (void)state;
    pgpool_conf c = test_conf(2);
    pgpool *p = pgpool_open(NULL, &c);
    answer up = { 0 };
    submit(p, S_ECHO, PGPOOL_ANY, "up", &up);
    assert_true(wait_all(5000));
    fake_stop();
    run_for(300); /* the connections notice, fail to reconnect: down */
    answer s = { 0 }, any = { 0 };
    uint64_t t0 = xmppd_now_ms();
    submit(p, S_ECHO, 3, "x", &s);
    submit(p, S_ECHO, PGPOOL_ANY, "x", &any);
    assert_true(wait_all(1000));
    assert_int_equal(s.status, PGPOOL_ERROR);
    assert_int_equal(any.status, PGPOOL_ERROR);
    assert_true(s.at - t0 < 200 && any.at - t0 < 200);
    fake_start(); /* the same port */
    answer back = { 0 };
    uint64_t deadline = xmppd_now_ms() + 3000;
    do {
        run_for(100);
        back = (answer){ 0 };
        submit(p, S_ECHO, 3, "back", &back);
        assert_true(wait_all(2000));
    } while (back.status != PGPOOL_OK && xmppd_now_ms() < deadline);
    assert_int_equal(back.status, PGPOOL_OK);
    pgpool_free(p);
}

/* pgpool.h Failure: a statement running longer than query_timeout fails
 * and drops its connection; what waited that long behind it fails too;
 * the pool goes on with a new connection. */
static void test_query_timeout(void **state)
{
    (void)state;
    pgpool_conf c = test_conf(1);
    c.query_timeout_ms = 400;
    pgpool *p = pgpool_open(NULL, &c);
    answer hang = { 0 }, behind = { 0 }, later = { 0 };
    uint64_t t0 = xmppd_now_ms();
    submit(p, S_HANG, 1, "x", &hang);
    submit(p, S_ECHO, 1, "behind", &behind);
    assert_true(wait_all(3000));
    assert_int_equal(hang.status, PGPOOL_ERROR);
    assert_int_equal(behind.status, PGPOOL_ERROR);
    assert_true(hang.at - t0 >= 400 && hang.at - t0 < 1500);
    submit(p, S_ECHO, 1, "later", &later);
    assert_true(wait_all(3000));
    assert_int_equal(later.status, PGPOOL_OK);
    pgpool_free(p);
}

/* pgpool_flush answers everything queued before it returns. */
static void test_flush(void **state)
{
    (void)state;
    pgpool_conf c = test_conf(2);
    c.drain_ms = 2000;
    pgpool *p = pgpool_open(NULL, &c);
    answer a[8] = { 0 };
    for (int i = 0; i < 8; i++)
        submit(p, S_ECHO, i, "f", &a[i]);
    pgpool_flush(p);
    assert_int_equal(g_pending, 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(a[i].status, PGPOOL_OK);
    answer after = { 0 }; /* still serving on the loop */
    submit(p, S_ECHO, 1, "after", &after);
    assert_true(wait_all(3000));
    assert_int_equal(after.status, PGPOOL_OK);
    pgpool_free(p);
}

/* ---- the owner unloading ---------------------------------------------------------- */

static pgpool *g_owned;
static uint64_t g_drain_ms;
static int g_at_unload = -1; /* answers still pending when unload() ran */

static int owner_load(xmppd_module *m, const void *conf)
{
    (void)conf;
    pgpool_conf c = test_conf(2);
    c.drain_ms = g_drain_ms;
    return (g_owned = pgpool_open(m, &c)) ? 0 : -1;
}

static void owner_unload(xmppd_module *m)
{
    (void)m;
    g_at_unload = g_pending;
    pgpool_free(g_owned);
    g_owned = NULL;
}

static const xmppd_module_def def_owner = {
    XMPPD_MODULE_HEAD("pgowner"), .version = "1", .flags = XMPPD_MOD_GLOBAL,
    .load = owner_load, .unload = owner_unload,
};

static char g_dir[] = "/tmp/xmppd-test-pgpool-XXXXXX";

static xmppd_config *owner_start(void)
{
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/xmppd.json", g_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{ \"hosts\": { \"a.example\": {} }, \"modules\": { \"pgowner\": {} } }\n", f);
    fclose(f);
    xmppd_config *cfg = config_read(path, err, sizeof err);
    if (!cfg || modules_start(cfg, err, sizeof err) != 0)
        fail_msg("%s", err);
    g_at_unload = -1;
    return cfg;
}

static void owner_stop(xmppd_config *cfg)
{
    modules_stop();
    config_free(cfg);
}

/* SDK async rule (docs/modules.md): the owner unloading with queries
 * running and queued, each comes back once, CANCELLED, before its
 * unload() runs. */
static void test_owner_unload_cancels(void **state)
{
    (void)state;
    g_drain_ms = 0;
    xmppd_config *cfg = owner_start();
    int sa, sb;
    two_shards(&sa, &sb);
    answer hang = { 0 }, behind = { 0 }, other = { 0 }, ok = { 0 };
    submit(g_owned, S_ECHO, sb, "ok", &ok);
    assert_true(wait_all(3000));
    submit(g_owned, S_HANG, sa, "x", &hang);
    submit(g_owned, S_ECHO, sa, "behind", &behind);
    submit(g_owned, S_ECHO, PGPOOL_ANY, "any", &other);
    run_for(100); /* hang is running now */
    char err[256];
    assert_int_equal(module_unload_one("pgowner", NULL, err, sizeof err), 0);
    assert_int_equal(g_at_unload, 0);
    assert_int_equal(g_pending, 0);
    answer *all[] = { &hang, &behind };
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(all[i]->calls, 1);
        assert_int_equal(all[i]->status, PGPOOL_CANCELLED);
    }
    assert_int_equal(other.calls, 1); /* ran before, or cancelled */
    assert_true(other.status == PGPOOL_OK || other.status == PGPOOL_CANCELLED);
    owner_stop(cfg);
}

/* pgpool.h: with a drain bound, what the database answers within it is
 * answered for real while the owner unloads (still before unload()); what
 * it does not answer in time comes back CANCELLED. */
static void test_owner_unload_drains(void **state)
{
    (void)state;
    g_drain_ms = 600;
    xmppd_config *cfg = owner_start();
    int sa, sb;
    two_shards(&sa, &sb);
    answer ready = { 0 };
    submit(g_owned, S_ECHO, PGPOOL_ANY, "ready", &ready);
    assert_true(wait_all(3000));
    answer a[6] = { 0 }, hang = { 0 };
    for (int i = 0; i < 6; i++)
        submit(g_owned, S_ECHO, i % 2 ? sa : sb, "d", &a[i]);
    submit(g_owned, S_HANG, sa, "x", &hang);
    uint64_t t0 = xmppd_now_ms();
    char err[256];
    assert_int_equal(module_unload_one("pgowner", NULL, err, sizeof err), 0);
    assert_int_equal(g_at_unload, 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(a[i].status, PGPOOL_OK);
    assert_int_equal(hang.calls, 1);
    assert_int_equal(hang.status, PGPOOL_CANCELLED);
    assert_true(xmppd_now_ms() - t0 >= 600 && xmppd_now_ms() - t0 < 3000);
    owner_stop(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_shards_order_and_lazy_prepare, setup),
        cmocka_unit_test_setup(test_any_and_refused, setup),
        cmocka_unit_test_setup(test_broken_connection_fails_running_query, setup),
        cmocka_unit_test_setup(test_query_timeout, setup),
        cmocka_unit_test_setup(test_flush, setup),
        cmocka_unit_test_setup(test_owner_unload_cancels, setup),
        cmocka_unit_test_setup(test_owner_unload_drains, setup),
        cmocka_unit_test_setup(test_down_fails_at_once_then_recovers, setup),
    };
    for (int i = 0; i < FAKE_MAX_CONNS; i++)
        F.fds[i] = -1;
    log_open(NULL, XMPPD_LOG_ERROR);
    if (!mkdtemp(g_dir) || loop_init() != 0 || modules_add_builtin(&def_owner) != 0)
        return 1;
    fake_start();
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fake_stop();
    loop_free();
    char path[128];
    snprintf(path, sizeof path, "%s/xmppd.json", g_dir);
    unlink(path);
    rmdir(g_dir);
    return rc;
}
