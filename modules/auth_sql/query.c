/* auth_sql: query compilation and the asynchronous PostgreSQL client.
 *
 * The client keeps a small pool of connections, each driven by the event
 * loop (PQconnectStartParams/PQconnectPoll, PQsendQueryPrepared,
 * PQconsumeInput/PQisBusy/PQgetResult on xmppd_io watches). Requests wait
 * in one FIFO queue; an idle connection takes the next. Statements are
 * prepared on a connection at its first use. A broken connection fails its
 * request and reconnects at once; a failed attempt backs off (250 ms
 * doubling up to reconnect_max), and while every connection is down
 * requests fail at once instead of waiting (the client then hears
 * temporary-auth-failure). Requests waiting or running longer than
 * query_timeout fail (a running one drops its connection).
 *
 * Ownership: an aq_req owns a copy of its parameter values (wiped when
 * freed: they can be password hashes or SCRAM keys). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "query.h"

#define AQ_BACKOFF_FIRST_MS 250
#define AQ_TICK_MS 250

/* ---- compiling ---- */

static const struct {
    const char *name;
    enum aq_var var;
} aq_var_names[] = {
    { "localpart", AQ_LOCALPART }, { "username", AQ_LOCALPART }, { "domain", AQ_DOMAIN },
    { "user", AQ_USER }, { "password_hash", AQ_PASSWORD_HASH }, { "scram_sha1", AQ_SCRAM_SHA1 },
    { "scram_sha256", AQ_SCRAM_SHA256 }, { "scram_sha512", AQ_SCRAM_SHA512 },
};

/* Variables of the design that this module never binds. */
static const char *const aq_unavailable[] = { "password", "remote_ip", "mechanism", NULL };

static const char *aq_var_name(enum aq_var v)
{
    for (size_t i = 0; i < sizeof aq_var_names / sizeof aq_var_names[0]; i++)
        if (aq_var_names[i].var == v)
            return aq_var_names[i].name;
    return "?";
}

typedef struct aq_buf {
    char *p;
    size_t len, cap;
} aq_buf;

static int aq_put(aq_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int aq_compile(const char *text, unsigned allowed, aq_query *q, bool *quoted_r, char *err, size_t errlen)
{
    aq_buf b = { 0 };
    int slot[AQ_VAR_COUNT];
    memset(q, 0, sizeof *q);
    q->stmt = -1;
    for (int i = 0; i < AQ_VAR_COUNT; i++)
        slot[i] = 0;
    if (quoted_r)
        *quoted_r = false;
    if (aq_put(&b, "", 0) != 0)
        goto oom;
    for (const char *s = text; *s;) {
        if (*s == '$' && isdigit((unsigned char)s[1])) {
            snprintf(err, errlen, "write variables (%%n, %%d, %%u, %%{name}), not $%c parameters", s[1]);
            goto fail;
        }
        if (*s != '%') {
            if (aq_put(&b, s, 1) != 0)
                goto oom;
            s++;
            continue;
        }
        enum aq_var var;
        const char *next;
        if (s[1] == '%') {
            if (aq_put(&b, "%", 1) != 0)
                goto oom;
            s += 2;
            continue;
        } else if (s[1] == 'n') {
            var = AQ_LOCALPART;
            next = s + 2;
        } else if (s[1] == 'd') {
            var = AQ_DOMAIN;
            next = s + 2;
        } else if (s[1] == 'u') {
            var = AQ_USER;
            next = s + 2;
        } else if (s[1] == '{') {
            const char *end = strchr(s + 2, '}');
            size_t n = end ? (size_t)(end - s - 2) : 0;
            bool found = false;
            for (size_t i = 0; end && i < sizeof aq_var_names / sizeof aq_var_names[0]; i++) {
                if (strlen(aq_var_names[i].name) == n && strncmp(aq_var_names[i].name, s + 2, n) == 0) {
                    var = aq_var_names[i].var;
                    found = true;
                    break;
                }
            }
            if (!found) {
                for (size_t i = 0; end && aq_unavailable[i]; i++) {
                    if (strlen(aq_unavailable[i]) == n && strncmp(aq_unavailable[i], s + 2, n) == 0) {
                        snprintf(err, errlen, "%%{%s} is not available to auth_sql queries", aq_unavailable[i]);
                        goto fail;
                    }
                }
                snprintf(err, errlen, "unknown variable %%{%.*s}", end ? (int)n : 20, s + 2);
                goto fail;
            }
            next = end + 1;
        } else {
            snprintf(err, errlen, "unknown variable %%%c (write %%%% for a literal %%)", s[1] ? s[1] : ' ');
            goto fail;
        }
        if (!(allowed & AQ_BIT(var))) {
            snprintf(err, errlen, "variable %%{%s} cannot be used in this query", aq_var_name(var));
            goto fail;
        }
        if (!slot[var]) {
            if (q->n_params == AQ_MAX_PARAMS) {
                snprintf(err, errlen, "too many variables");
                goto fail;
            }
            q->params[q->n_params++] = var;
            slot[var] = q->n_params;
            q->used |= AQ_BIT(var);
        }
        /* '%n' in quotes: the quotes would make it a literal "$1" */
        if (b.len > 0 && b.p[b.len - 1] == '\'' && *next == '\'') {
            b.p[--b.len] = '\0';
            next++;
            if (quoted_r)
                *quoted_r = true;
        }
        char num[16];
        snprintf(num, sizeof num, "$%d", slot[var]);
        if (aq_put(&b, num, strlen(num)) != 0)
            goto oom;
        s = next;
    }
    q->sql = b.p;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    free(b.p);
    memset(q, 0, sizeof *q);
    return -1;
}

void aq_free(aq_query *q)
{
    free(q->sql);
    memset(q, 0, sizeof *q);
}

/* ---- the client ---- */

typedef struct aq_req aq_req;
struct aq_req {
    aq_req *next;
    int stmt;
    int n;
    char **values;   /* n strings (NULL allowed), in this allocation */
    size_t alloc;    /* bytes of this allocation (for wiping) */
    uint64_t queued_at;
    aq_cb cb;
    void *ud;
};

enum aq_state { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };

typedef struct aq_conn {
    aq_client *cl;
    int index;
    enum aq_state state;
    PGconn *pc;
    xmppd_io *io;
    int io_fd;
    aq_req *cur;
    bool preparing;
    PGresult *res;
    uint64_t since;
    unsigned failures;
    bool was_up;
    xmppd_timer *retry;
    unsigned char *prepared; /* per statement */
} aq_conn;

struct aq_client {
    xmppd_module *m;
    aq_client_conf conf;
    char *conninfo;
    char **sql;              /* per statement (owned copies) */
    int *nparams;
    int n_stmts;
    aq_conn *conns;
    int n_conns;
    aq_req *queue, **queue_tail;
    aq_req *failed, **failed_tail; /* failed inside aq_exec: answered by a timer */
    xmppd_timer *fail_timer;
    xmppd_timer *tick;
};

static void aq_conn_start(aq_conn *c);
static void aq_dispatch(aq_client *cl);

static void aq_req_free(aq_req *r)
{
    xmppd_wipe(r, r->alloc);
    free(r);
}

static void aq_log_pq(aq_client *cl, int level, const char *what, const char *msg)
{
    xmppd_log(cl->m, level, "%s: %.*s", what, (int)strcspn(msg, "\n"), msg);
}

static const char *aq_conn_error(const aq_conn *c)
{
    const char *e = c->pc ? PQerrorMessage(c->pc) : "out of memory";
    return e && *e ? e : "unknown error";
}

/* ---- answering ---- */

static uint64_t aq_fail_fired(void *ud)
{
    aq_client *cl = ud;
    cl->fail_timer = NULL;
    while (cl->failed) {
        aq_req *r = cl->failed;
        cl->failed = r->next;
        if (!cl->failed)
            cl->failed_tail = &cl->failed;
        r->cb(NULL, "", r->ud);
        aq_req_free(r);
    }
    return 0;
}

/* Fails r on a later loop turn. */
static void aq_fail_later(aq_client *cl, aq_req *r)
{
    r->next = NULL;
    *cl->failed_tail = r;
    cl->failed_tail = &r->next;
    if (!cl->fail_timer && !(cl->fail_timer = xmppd_timer_add(cl->m, 0, aq_fail_fired, cl)))
        xmppd_log(cl->m, XMPPD_LOG_ERROR, "out of memory: an account query is not answered");
}

/* ---- connections ---- */

static void aq_conn_event(aq_conn *c, int ready);

static void aq_io_fired(int fd, int ready, void *ud)
{
    aq_conn_event(ud, ready);
}

static void aq_watch(aq_conn *c, int events)
{
    int fd = c->pc ? PQsocket(c->pc) : -1;
    if (c->io && fd != c->io_fd) {
        xmppd_io_remove(c->io);
        c->io = NULL;
    }
    if (fd < 0)
        return;
    if (!c->io) {
        c->io_fd = fd;
        if (!(c->io = xmppd_io_add(c->cl->m, fd, events, aq_io_fired, c)))
            xmppd_log(c->cl->m, XMPPD_LOG_ERROR, "cannot watch the database socket");
    } else {
        xmppd_io_modify(c->io, events);
    }
}

static void aq_conn_close(aq_conn *c)
{
    if (c->io)
        xmppd_io_remove(c->io);
    c->io = NULL;
    c->io_fd = -1;
    PQclear(c->res);
    c->res = NULL;
    if (c->pc)
        PQfinish(c->pc);
    c->pc = NULL;
    memset(c->prepared, 0, (size_t)c->cl->n_stmts);
    c->preparing = false;
}

static bool aq_all_down(const aq_client *cl)
{
    for (int i = 0; i < cl->n_conns; i++)
        if (cl->conns[i].state != C_DOWN)
            return false;
    return true;
}

static void aq_fail_queue_if_down(aq_client *cl)
{
    if (!aq_all_down(cl))
        return;
    while (cl->queue) {
        aq_req *r = cl->queue;
        cl->queue = r->next;
        aq_fail_later(cl, r);
    }
    cl->queue_tail = &cl->queue;
}

static uint64_t aq_retry_fired(void *ud)
{
    aq_conn *c = ud;
    c->retry = NULL;
    if (c->state == C_DOWN)
        aq_conn_start(c);
    return 0;
}

static void aq_conn_failed(aq_conn *c, const char *why)
{
    aq_client *cl = c->cl;
    if (c->failures == 0 || c->was_up)
        aq_log_pq(cl, XMPPD_LOG_ERROR, "cannot connect to the user database (retrying with back-off)", why);
    c->was_up = false;
    aq_conn_close(c);
    c->state = C_DOWN;
    c->failures++;
    uint64_t delay = AQ_BACKOFF_FIRST_MS;
    for (unsigned i = 1; i < c->failures && delay < (uint64_t)cl->conf.reconnect_max_ms; i++)
        delay *= 2;
    if (delay > (uint64_t)cl->conf.reconnect_max_ms)
        delay = (uint64_t)cl->conf.reconnect_max_ms;
    if (!c->retry)
        c->retry = xmppd_timer_add(cl->m, delay, aq_retry_fired, c);
    aq_fail_queue_if_down(cl);
}

static void aq_conn_start(aq_conn *c)
{
    static const char *const keys[] = { "application_name", "keepalives", "keepalives_idle",
                                        "keepalives_interval", "keepalives_count", "dbname", NULL };
    const char *vals[] = { "xmppd-auth", "1", "30", "10", "3", c->cl->conninfo, NULL };
    aq_conn_close(c);
    c->state = C_CONNECTING;
    c->since = xmppd_now_ms();
    c->pc = PQconnectStartParams(keys, vals, 1);
    if (!c->pc || PQstatus(c->pc) == CONNECTION_BAD) {
        aq_conn_failed(c, aq_conn_error(c));
        return;
    }
    aq_watch(c, XMPPD_IO_WRITE);
}

static void aq_conn_broken(aq_conn *c, const char *why)
{
    aq_log_pq(c->cl, XMPPD_LOG_WARN, "user database connection lost", why);
    aq_req *r = c->cur;
    c->cur = NULL;
    c->was_up = true;
    c->failures = 0;
    aq_conn_start(c);
    if (r)
        aq_fail_later(c->cl, r);
}

/* Sends the running request's statement (or its PREPARE first). */
static void aq_conn_send(aq_conn *c)
{
    aq_client *cl = c->cl;
    aq_req *r = c->cur;
    char name[32];
    snprintf(name, sizeof name, "xmppd_auth_%d", r->stmt);
    int ok;
    if (!c->prepared[r->stmt]) {
        c->preparing = true;
        ok = PQsendPrepare(c->pc, name, cl->sql[r->stmt], cl->nparams[r->stmt], NULL);
    } else {
        c->preparing = false;
        ok = PQsendQueryPrepared(c->pc, name, r->n, (const char *const *)r->values, NULL, NULL, 0);
    }
    if (!ok) {
        aq_conn_broken(c, aq_conn_error(c));
        return;
    }
    c->state = C_BUSY;
    c->since = xmppd_now_ms();
    int fl = PQflush(c->pc);
    if (fl < 0) {
        aq_conn_broken(c, aq_conn_error(c));
        return;
    }
    aq_watch(c, XMPPD_IO_READ | (fl ? XMPPD_IO_WRITE : 0));
}

static void aq_dispatch(aq_client *cl)
{
    for (int i = 0; i < cl->n_conns && cl->queue; i++) {
        aq_conn *c = &cl->conns[i];
        if (c->state != C_IDLE)
            continue;
        aq_req *r = cl->queue;
        cl->queue = r->next;
        if (!cl->queue)
            cl->queue_tail = &cl->queue;
        r->next = NULL;
        c->cur = r;
        aq_conn_send(c);
    }
}

/* All results of the running command are in. */
static void aq_conn_done(aq_conn *c, PGresult *res)
{
    aq_client *cl = c->cl;
    aq_req *r = c->cur;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    bool good = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (good && c->preparing) {
        PQclear(res);
        c->prepared[r->stmt] = 1;
        aq_conn_send(c);
        return;
    }
    c->cur = NULL;
    c->state = C_IDLE;
    if (!good) {
        const char *msg = res ? PQresultErrorMessage(res) : aq_conn_error(c);
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        /* a unique violation is an answer (the account exists), not a fault */
        if (!state || strcmp(state, "23505") != 0)
            aq_log_pq(cl, XMPPD_LOG_ERROR, "user database query failed", msg && *msg ? msg : "unknown error");
        r->cb(NULL, state ? state : "", r->ud);
    } else {
        r->cb(res, "", r->ud);
    }
    PQclear(res);
    aq_req_free(r);
}

static void aq_conn_event(aq_conn *c, int ready)
{
    aq_client *cl = c->cl;
    switch (c->state) {
    case C_DOWN:
        return;
    case C_CONNECTING:
        switch (PQconnectPoll(c->pc)) {
        case PGRES_POLLING_READING: aq_watch(c, XMPPD_IO_READ); return;
        case PGRES_POLLING_WRITING: aq_watch(c, XMPPD_IO_WRITE); return;
        case PGRES_POLLING_OK:
            if (PQsetnonblocking(c->pc, 1) != 0) {
                aq_conn_failed(c, aq_conn_error(c));
                return;
            }
            if (c->failures > 0 || c->was_up)
                xmppd_log(cl->m, XMPPD_LOG_INFO, "user database connection %d re-established", c->index);
            c->failures = 0;
            c->was_up = false;
            c->state = C_IDLE;
            aq_watch(c, XMPPD_IO_READ);
            aq_dispatch(cl);
            return;
        default:
            aq_conn_failed(c, aq_conn_error(c));
            return;
        }
        return;
    case C_IDLE:
        if ((ready & XMPPD_IO_READ) && (!PQconsumeInput(c->pc) || PQstatus(c->pc) == CONNECTION_BAD)) {
            aq_conn_broken(c, aq_conn_error(c));
            return;
        }
        {
            PGnotify *n;
            while ((n = PQnotifies(c->pc)))
                PQfreemem(n);
        }
        return;
    case C_BUSY:
        break;
    }
    if (ready & XMPPD_IO_WRITE) {
        int fl = PQflush(c->pc);
        if (fl < 0) {
            aq_conn_broken(c, aq_conn_error(c));
            return;
        }
        aq_watch(c, XMPPD_IO_READ | (fl ? XMPPD_IO_WRITE : 0));
    }
    if (!(ready & XMPPD_IO_READ))
        return;
    if (!PQconsumeInput(c->pc)) {
        aq_conn_broken(c, aq_conn_error(c));
        return;
    }
    while (!PQisBusy(c->pc)) {
        PGresult *r = PQgetResult(c->pc);
        if (!r) {
            PGresult *first = c->res;
            c->res = NULL;
            if (PQstatus(c->pc) == CONNECTION_BAD) {
                PQclear(first);
                aq_conn_broken(c, aq_conn_error(c));
                return;
            }
            aq_conn_done(c, first);
            aq_dispatch(cl);
            return;
        }
        if (!c->res)
            c->res = r;
        else
            PQclear(r);
    }
}

static uint64_t aq_tick(void *ud)
{
    aq_client *cl = ud;
    uint64_t now = xmppd_now_ms();
    uint64_t qt = (uint64_t)cl->conf.query_timeout_ms;
    for (int i = 0; i < cl->n_conns; i++) {
        aq_conn *c = &cl->conns[i];
        if (c->state == C_CONNECTING && now - c->since > (uint64_t)cl->conf.connect_timeout_ms)
            aq_conn_failed(c, "timed out");
        else if (c->state == C_BUSY && now - c->since > qt)
            aq_conn_broken(c, "query timed out");
    }
    aq_req **pp = &cl->queue;
    while (*pp) {
        aq_req *r = *pp;
        if (now - r->queued_at > qt) {
            *pp = r->next;
            xmppd_log(cl->m, XMPPD_LOG_WARN, "account query timed out waiting for the user database");
            aq_fail_later(cl, r);
        } else {
            pp = &r->next;
        }
    }
    cl->queue_tail = pp;
    return AQ_TICK_MS;
}

void aq_exec(aq_client *cl, const aq_query *q, const char *const *values, aq_cb cb, void *ud)
{
    size_t len = sizeof(aq_req) + (size_t)q->n_params * sizeof(char *);
    for (int i = 0; i < q->n_params; i++)
        len += values[i] ? strlen(values[i]) + 1 : 0;
    aq_req *r = calloc(1, len);
    if (!r) {
        xmppd_log(cl->m, XMPPD_LOG_ERROR, "out of memory: account query dropped");
        return;
    }
    r->alloc = len;
    r->stmt = q->stmt;
    r->n = q->n_params;
    r->values = (char **)(r + 1);
    char *pos = (char *)(r->values + q->n_params);
    for (int i = 0; i < q->n_params; i++) {
        if (!values[i])
            continue;
        size_t n = strlen(values[i]) + 1;
        memcpy(pos, values[i], n);
        r->values[i] = pos;
        pos += n;
    }
    r->cb = cb;
    r->ud = ud;
    r->queued_at = xmppd_now_ms();
    if (aq_all_down(cl)) {
        aq_fail_later(cl, r);
        return;
    }
    *cl->queue_tail = r;
    cl->queue_tail = &r->next;
    aq_dispatch(cl);
}

/* ---- opening: check every query once (blocking, at load) ---- */

void aq_names_free(char **names)
{
    for (size_t i = 0; names && names[i]; i++)
        free(names[i]);
    free(names);
}

/* The database's own message for a failed result, without "ERROR:  ". */
static const char *aq_result_msg(const PGresult *r)
{
    const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!m || !*m)
        m = r ? PQresultErrorMessage(r) : "";
    return m && *m ? m : "unknown error";
}

static int aq_check(PGconn *pc, aq_query *q, const char *name, char ***cols_r, char *err, size_t errlen)
{
    PGresult *r = PQprepare(pc, "", q->sql, q->n_params, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        const char *msg = aq_result_msg(r);
        snprintf(err, errlen, "option %s: %.*s", name, (int)strcspn(msg, "\n"), msg);
        PQclear(r);
        return -1;
    }
    PQclear(r);
    r = PQdescribePrepared(pc, "");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        const char *msg = aq_result_msg(r);
        snprintf(err, errlen, "option %s: %.*s", name, (int)strcspn(msg, "\n"), msg);
        PQclear(r);
        return -1;
    }
    int n = PQnfields(r);
    char **cols = calloc((size_t)n + 1, sizeof *cols);
    for (int i = 0; cols && i < n; i++) {
        if (!(cols[i] = strdup(PQfname(r, i)))) {
            aq_names_free(cols);
            cols = NULL;
        }
    }
    PQclear(r);
    if (!cols) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *cols_r = cols;
    return 0;
}

static void aq_client_free(aq_client *cl)
{
    if (!cl)
        return;
    for (int i = 0; cl->conns && i < cl->n_conns; i++) {
        aq_conn_close(&cl->conns[i]);
        free(cl->conns[i].prepared);
    }
    free(cl->conns);
    for (int i = 0; cl->sql && i < cl->n_stmts; i++)
        free(cl->sql[i]);
    free(cl->sql);
    free(cl->nparams);
    while (cl->queue) {
        aq_req *r = cl->queue;
        cl->queue = r->next;
        aq_req_free(r);
    }
    while (cl->failed) {
        aq_req *r = cl->failed;
        cl->failed = r->next;
        aq_req_free(r);
    }
    if (cl->conninfo) {
        xmppd_wipe(cl->conninfo, strlen(cl->conninfo));
        free(cl->conninfo);
    }
    free(cl);
}

aq_client *aq_client_open(xmppd_module *m, const aq_client_conf *conf, aq_query *const *queries,
                          const char *const *names, size_t n, char ***cols_r, char *err, size_t errlen)
{
    aq_client *cl = calloc(1, sizeof *cl);
    if (!cl)
        goto oom;
    cl->m = m;
    cl->conf = *conf;
    cl->queue_tail = &cl->queue;
    cl->failed_tail = &cl->failed;
    cl->n_conns = conf->pool_size;
    if (!(cl->conninfo = strdup(conf->conninfo)) || !(cl->sql = calloc(n + 1, sizeof *cl->sql)) ||
        !(cl->nparams = calloc(n + 1, sizeof *cl->nparams)) ||
        !(cl->conns = calloc((size_t)cl->n_conns, sizeof *cl->conns)))
        goto oom;
    for (int i = 0; i < cl->n_conns; i++) {
        cl->conns[i] = (aq_conn){ .cl = cl, .index = i, .state = C_DOWN, .io_fd = -1 };
        if (!(cl->conns[i].prepared = calloc(n + 1, 1)))
            goto oom;
    }

    char ct[24];
    snprintf(ct, sizeof ct, "%lld", (conf->connect_timeout_ms + 999) / 1000);
    static const char *const keys[] = { "application_name", "connect_timeout", "dbname", NULL };
    const char *vals[] = { "xmppd-auth", ct, conf->conninfo, NULL };
    PGconn *pc = PQconnectdbParams(keys, vals, 1);
    if (!pc || PQstatus(pc) != CONNECTION_OK) {
        const char *msg = pc ? PQerrorMessage(pc) : "out of memory";
        snprintf(err, errlen, "cannot connect to the user database: %.*s", (int)strcspn(msg, "\n"), msg);
        PQfinish(pc);
        aq_client_free(cl);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        cols_r[i] = NULL;
        if (!queries[i]->sql)
            continue;
        if (aq_check(pc, queries[i], names[i], &cols_r[i], err, errlen) != 0) {
            for (size_t k = 0; k < i; k++) {
                aq_names_free(cols_r[k]);
                cols_r[k] = NULL;
            }
            PQfinish(pc);
            aq_client_free(cl);
            return NULL;
        }
        queries[i]->stmt = cl->n_stmts;
        cl->nparams[cl->n_stmts] = queries[i]->n_params;
        if (!(cl->sql[cl->n_stmts++] = strdup(queries[i]->sql))) {
            PQfinish(pc);
            goto oom;
        }
    }
    PQfinish(pc);
    if (!(cl->tick = xmppd_timer_add(m, AQ_TICK_MS, aq_tick, cl)))
        goto oom;
    for (int i = 0; i < cl->n_conns; i++)
        aq_conn_start(&cl->conns[i]);
    return cl;
oom:
    snprintf(err, errlen, "out of memory");
    aq_client_free(cl);
    return NULL;
}

/* At unload the kernel has released our watches and timers already. */
void aq_client_close(aq_client *cl)
{
    if (!cl)
        return;
    for (int i = 0; i < cl->n_conns; i++) {
        cl->conns[i].io = NULL;
        cl->conns[i].retry = NULL;
        if (cl->conns[i].cur) {
            aq_req_free(cl->conns[i].cur);
            cl->conns[i].cur = NULL;
        }
    }
    cl->tick = NULL;
    cl->fail_timer = NULL;
    aq_client_free(cl);
}
