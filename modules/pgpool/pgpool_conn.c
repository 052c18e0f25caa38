/* pgpool: one connection's state machine (down, connecting, idle, busy),
 * driven by socket events from the loop or from the pool's own poll()
 * while it drains. Answers go through pgp_answer (pgpool.c), which runs
 * no callback here: the entry point that got the event settles when it
 * ends. */
#include <stdio.h>
#include <string.h>

#include "pgpool_int.h"

static const char *pgp_conn_error(const pgp_conn *c)
{
    const char *e = c->pc ? PQerrorMessage(c->pc) : "out of memory";
    return e && *e ? e : "unknown error";
}

static void pgp_io_fired(int fd, int ready, void *ud)
{
    pgp_conn *c = ud;
    pgpool *p = c->p;
    (void)fd;
    pgp_enter(p);
    pgp_conn_event(c, ready);
    pgp_leave(p);
}

/* Watches the connection's current socket (libpq may change it while
 * connecting). While the pool is closing only c->want is kept, for poll(). */
void pgp_conn_watch(pgp_conn *c, int events)
{
    int fd = c->pc ? PQsocket(c->pc) : -1;
    c->want = events;
    if (c->p->closing)
        return;
    if (c->io && (fd != c->io_fd || fd < 0)) {
        xmppd_io_remove(c->io);
        c->io = NULL;
    }
    if (fd < 0)
        return;
    if (!c->io) {
        c->io = xmppd_io_add(c->p->m, fd, events, pgp_io_fired, c);
        c->io_fd = fd;
        if (!c->io)
            xmppd_log(c->p->m, XMPPD_LOG_ERROR, "cannot watch the %s socket", c->p->conf.what);
    } else {
        xmppd_io_modify(c->io, events);
    }
}

void pgp_conn_close(pgp_conn *c)
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
    memset(c->prepared, 0, (size_t)c->p->conf.n_statements);
    c->preparing = false;
}

uint64_t pgp_retry_fired(void *ud)
{
    pgp_conn *c = ud;
    c->retry = NULL;
    if (c->state == PGP_DOWN) {
        pgp_enter(c->p);
        pgp_conn_start(c);
        pgp_leave(c->p);
    }
    return 0;
}

/* A connection attempt failed: down (its queue fails) until the back-off
 * delay has passed. The first failure after being up is an error line,
 * the retries that follow only debug lines. */
void pgp_conn_failed(pgp_conn *c, const char *why)
{
    pgpool *p = c->p;
    char what[96];
    if (c->failures == 0 || c->was_up) {
        snprintf(what, sizeof what, "cannot connect to the %s (retrying with back-off)", p->conf.what);
        pgp_log_pq(p, XMPPD_LOG_ERROR, what, why);
    } else {
        pgp_log_pq(p, XMPPD_LOG_DEBUG, "connection attempt failed", why);
    }
    c->was_up = false;
    pgp_conn_close(c);
    c->state = PGP_DOWN;
    c->failures++;
    pgp_fail_queue(c, PGPOOL_ERROR);
    uint64_t delay = PGP_BACKOFF_FIRST_MS;
    for (unsigned i = 1; i < c->failures && delay < p->conf.reconnect_max_ms; i++)
        delay *= 2;
    if (delay > p->conf.reconnect_max_ms)
        delay = p->conf.reconnect_max_ms;
    if (!p->closing && !c->retry)
        c->retry = xmppd_timer_add(p->m, delay, pgp_retry_fired, c);
}

/* Starts connecting, asynchronously. What conninfo says wins over the
 * settings added here (expand_dbname). */
void pgp_conn_start(pgp_conn *c)
{
    pgpool *p = c->p;
    static const char *const keys[] = { "application_name", "keepalives", "keepalives_idle",
                                        "keepalives_interval", "keepalives_count", "dbname", NULL };
    const char *vals[] = { p->conf.application_name, "1", "30", "10", "3", p->conf.conninfo, NULL };
    pgp_conn_close(c);
    c->state = PGP_CONNECTING;
    c->since = xmppd_now_ms();
    c->pc = PQconnectStartParams(keys, vals, 1);
    if (!c->pc || PQstatus(c->pc) == CONNECTION_BAD) {
        pgp_conn_failed(c, pgp_conn_error(c));
        return;
    }
    pgp_conn_watch(c, XMPPD_IO_WRITE);
}

/* The connection broke (or its statement timed out): the running query
 * fails; reconnect at once (a failure then backs off), keeping the queue. */
void pgp_conn_broken(pgp_conn *c, const char *why)
{
    pgpool *p = c->p;
    char what[96];
    snprintf(what, sizeof what, "%s connection lost", p->conf.what);
    pgp_log_pq(p, XMPPD_LOG_WARN, what, why);
    if (c->cur) {
        pgp_answer(p, c->cur, NULL, PGPOOL_ERROR, NULL);
        c->cur = NULL;
    }
    c->was_up = true;
    c->failures = 0;
    if (p->closing) {
        pgp_conn_close(c);
        c->state = PGP_DOWN;
        pgp_fail_queue(c, PGPOOL_ERROR);
        return;
    }
    pgp_conn_start(c);
}

/* Sends the running query's statement, or its PREPARE first. */
static void pgp_conn_send(pgp_conn *c)
{
    pgpool *p = c->p;
    pgp_req *r = c->cur;
    char name[64], sqlbuf[1024];
    int ok;
    snprintf(name, sizeof name, "%s%d", p->conf.stmt_prefix, r->stmt);
    c->preparing = !c->prepared[r->stmt];
    if (c->preparing)
        ok = PQsendPrepare(c->pc, name, p->conf.sql(r->stmt, sqlbuf, sizeof sqlbuf, p->conf.sql_ud),
                           p->conf.n_types, p->conf.types);
    else
        ok = PQsendQueryPrepared(c->pc, name, r->n_values, (const char *const *)r->values, NULL, NULL, 0);
    if (!ok) {
        if (PQstatus(c->pc) == CONNECTION_BAD) {
            pgp_conn_broken(c, pgp_conn_error(c));
        } else {
            pgp_log_pq(p, XMPPD_LOG_ERROR, "sending a statement", pgp_conn_error(c));
            c->cur = NULL;
            c->state = PGP_IDLE;
            pgp_answer(p, r, NULL, PGPOOL_ERROR, NULL);
        }
        return;
    }
    c->state = PGP_BUSY;
    c->since = xmppd_now_ms();
    int fl = PQflush(c->pc);
    if (fl < 0) {
        pgp_conn_broken(c, pgp_conn_error(c));
        return;
    }
    pgp_conn_watch(c, XMPPD_IO_READ | (fl ? XMPPD_IO_WRITE : 0));
}

/* An idle connection takes its next query: its own shards' first, then
 * the pool's PGPOOL_ANY queue. */
void pgp_conn_dispatch(pgp_conn *c)
{
    pgpool *p = c->p;
    while (c->state == PGP_IDLE) {
        pgp_req *r;
        if (c->queue) {
            r = c->queue;
            if (!(c->queue = r->next))
                c->queue_tail = &c->queue;
        } else if (p->any) {
            r = p->any;
            if (!(p->any = r->next))
                p->any_tail = &p->any;
        } else {
            return;
        }
        r->next = NULL;
        c->cur = r;
        pgp_conn_send(c);
    }
}

/* The running command's results are all in (res: its first, taken). */
static void pgp_conn_command_done(pgp_conn *c, PGresult *res)
{
    pgp_req *r = c->cur;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    bool good = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (good && c->preparing) {
        PQclear(res);
        c->prepared[r->stmt] = 1;
        pgp_conn_send(c);
        return;
    }
    c->cur = NULL;
    c->state = PGP_IDLE;
    if (!res)
        pgp_answer(c->p, r, c, PGPOOL_ERROR, NULL);
    else
        pgp_answer(c->p, r, c, good ? PGPOOL_OK : PGPOOL_FAILED, res);
}

static void pgp_conn_connected(pgp_conn *c)
{
    if (PQsetnonblocking(c->pc, 1) != 0) {
        pgp_conn_failed(c, pgp_conn_error(c));
        return;
    }
    if (c->failures > 0 || c->was_up)
        xmppd_log(c->p->m, XMPPD_LOG_INFO, "%s connection %d re-established", c->p->conf.what, c->index);
    c->failures = 0;
    c->was_up = false;
    c->state = PGP_IDLE;
    pgp_conn_watch(c, XMPPD_IO_READ);
}

/* Reads what the server sent while a statement runs. */
static void pgp_conn_read(pgp_conn *c)
{
    if (!PQconsumeInput(c->pc)) {
        pgp_conn_broken(c, pgp_conn_error(c));
        return;
    }
    while (!PQisBusy(c->pc)) {
        PGresult *r = PQgetResult(c->pc);
        if (!r) {
            PGresult *first = c->res;
            c->res = NULL;
            if (PQstatus(c->pc) == CONNECTION_BAD) {
                PQclear(first);
                pgp_conn_broken(c, pgp_conn_error(c));
                return;
            }
            pgp_conn_command_done(c, first);
            return;
        }
        if (!c->res)
            c->res = r;
        else
            PQclear(r);
    }
}

/* Socket events (from the loop, or from the pool's poll()). */
void pgp_conn_event(pgp_conn *c, int ready)
{
    switch (c->state) {
    case PGP_DOWN:
        return;
    case PGP_CONNECTING:
        switch (PQconnectPoll(c->pc)) {
        case PGRES_POLLING_READING: pgp_conn_watch(c, XMPPD_IO_READ); break;
        case PGRES_POLLING_WRITING: pgp_conn_watch(c, XMPPD_IO_WRITE); break;
        case PGRES_POLLING_OK: pgp_conn_connected(c); break;
        default: pgp_conn_failed(c, pgp_conn_error(c)); break;
        }
        return;
    case PGP_IDLE:
        /* nothing expected: a notice, or the server closing the socket */
        if ((ready & XMPPD_IO_READ) && (!PQconsumeInput(c->pc) || PQstatus(c->pc) == CONNECTION_BAD)) {
            pgp_conn_broken(c, pgp_conn_error(c));
            return;
        }
        for (PGnotify *n; (n = PQnotifies(c->pc));)
            PQfreemem(n);
        return;
    case PGP_BUSY:
        break;
    }
    if (ready & XMPPD_IO_WRITE) {
        int fl = PQflush(c->pc);
        if (fl < 0) {
            pgp_conn_broken(c, pgp_conn_error(c));
            return;
        }
        pgp_conn_watch(c, XMPPD_IO_READ | (fl ? XMPPD_IO_WRITE : 0));
    }
    if (ready & XMPPD_IO_READ)
        pgp_conn_read(c);
}
