/* pgpool: queries, their queues and answers, timeouts, flushing, and the
 * owner unloading (pgpool.h). The connections themselves: pgpool_conn.c. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgpool_int.h"

#define PGP_TICK_MS 250
#define PGP_POLL_MAX 64 /* connections one poll() watches while draining */

/* ---- requests ---- */

static pgp_req *pgp_req_new(const pgpool_query *q, pgpool_cb cb, void *ud)
{
    size_t len = sizeof(pgp_req) + (size_t)q->n_values * sizeof(char *);
    for (int i = 0; i < q->n_values; i++)
        len += q->values[i] ? strlen(q->values[i]) + 1 : 0;
    pgp_req *r = calloc(1, len);
    if (!r)
        return NULL;
    r->alloc = len;
    r->stmt = q->stmt;
    r->n_values = q->n_values;
    r->values = (char **)(r + 1);
    char *pos = (char *)(r->values + q->n_values);
    for (int i = 0; i < q->n_values; i++) {
        if (!q->values[i])
            continue;
        size_t n = strlen(q->values[i]) + 1;
        memcpy(pos, q->values[i], n);
        r->values[i] = pos;
        pos += n;
    }
    r->cb = cb;
    r->ud = ud;
    r->queued_at = xmppd_now_ms();
    return r;
}

static void pgp_req_free(pgp_req *r)
{
    PQclear(r->res);
    xmppd_wipe(r, r->alloc);
    free(r);
}

static void pgp_free_list(pgp_req *r)
{
    while (r) {
        pgp_req *next = r->next;
        pgp_req_free(r);
        r = next;
    }
}

void pgp_log_pq(pgpool *p, int level, const char *what, const char *msg)
{
    xmppd_log(p->m, level, "%s: %.*s", what, (int)strcspn(msg, "\n"), msg);
}

/* ---- answers ---- */

static uint64_t pgp_deliver_fired(void *ud)
{
    pgpool *p = ud;
    p->deliver = NULL;
    pgp_enter(p);
    pgp_leave(p);
    return 0;
}

void pgp_answer(pgpool *p, pgp_req *r, pgp_conn *by, int status, PGresult *res)
{
    r->status = status;
    r->res = res;
    r->by = by;
    r->next = NULL;
    *p->done_tail = r;
    p->done_tail = &r->next;
    /* outside an entry point (inside pgpool_submit): answer on a later turn */
    if (p->depth == 0 && !p->closing && !p->deliver &&
        !(p->deliver = xmppd_timer_add(p->m, 0, pgp_deliver_fired, p)))
        xmppd_log(p->m, XMPPD_LOG_ERROR, "out of memory: %s answers delayed", p->conf.what);
}

static void pgp_deliver(pgpool *p)
{
    while (p->done) {
        pgp_req *r = p->done;
        if (!(p->done = r->next))
            p->done_tail = &p->done;
        p->answering = r->by;
        r->cb(r->status, r->res, r->ud);
        p->answering = NULL;
        pgp_req_free(r);
    }
}

/* Callbacks first, then idle connections take work (a callback's
 * pgpool_continue goes ahead of the queue that way). */
static void pgp_settle(pgpool *p)
{
    p->depth++;
    do {
        pgp_deliver(p);
        for (int i = 0; i < p->n_conns; i++)
            pgp_conn_dispatch(&p->conns[i]);
    } while (p->done);
    p->depth--;
}

void pgp_enter(pgpool *p)
{
    p->depth++;
}

void pgp_leave(pgpool *p)
{
    if (p->depth == 1)
        pgp_settle(p);
    p->depth--;
}

static bool pgp_all_down(const pgpool *p)
{
    for (int i = 0; i < p->n_conns; i++)
        if (p->conns[i].state != PGP_DOWN)
            return false;
    return true;
}

static void pgp_answer_list(pgpool *p, pgp_req **head, pgp_req ***tail, int status)
{
    while (*head) {
        pgp_req *r = *head;
        *head = r->next;
        pgp_answer(p, r, NULL, status, NULL);
    }
    *tail = head;
}

void pgp_fail_queue(pgp_conn *c, int status)
{
    pgp_answer_list(c->p, &c->queue, &c->queue_tail, status);
    if (pgp_all_down(c->p))
        pgp_answer_list(c->p, &c->p->any, &c->p->any_tail, status);
}

/* ---- timeouts ---- */

/* Fails the queries of a queue that waited longer than the query timeout. */
static void pgp_expire(pgpool *p, pgp_req **head, pgp_req ***tail, uint64_t now)
{
    pgp_req **pp = head;
    while (*pp) {
        pgp_req *r = *pp;
        if (now - r->queued_at > p->conf.query_timeout_ms) {
            *pp = r->next;
            xmppd_log(p->m, XMPPD_LOG_WARN, "a query timed out waiting for the %s", p->conf.what);
            pgp_answer(p, r, NULL, PGPOOL_ERROR, NULL);
        } else {
            pp = &r->next;
        }
    }
    *tail = pp;
}

static uint64_t pgp_tick(void *ud)
{
    pgpool *p = ud;
    uint64_t now = xmppd_now_ms();
    pgp_enter(p);
    for (int i = 0; i < p->n_conns; i++) {
        pgp_conn *c = &p->conns[i];
        if (c->state == PGP_CONNECTING && now - c->since > p->conf.connect_timeout_ms)
            pgp_conn_failed(c, "timed out");
        else if (c->state == PGP_BUSY && now - c->since > p->conf.query_timeout_ms)
            pgp_conn_broken(c, "statement timed out");
        pgp_expire(p, &c->queue, &c->queue_tail, now);
    }
    pgp_expire(p, &p->any, &p->any_tail, now);
    pgp_leave(p);
    return PGP_TICK_MS;
}

/* ---- submitting ---- */

int pgpool_shard(const char *a, const char *b)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *s = a ? a : ""; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    h = (h ^ 0xff) * 16777619u;
    for (const char *s = b ? b : ""; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return (int)(h & 0x7fffffff);
}

int pgpool_submit(pgpool *p, const pgpool_query *q, pgpool_cb cb, void *ud)
{
    pgp_req *r = p->gone ? NULL : pgp_req_new(q, cb, ud);
    if (!r)
        return -1;
    pgp_conn *c = q->shard == PGPOOL_ANY ? NULL : &p->conns[(unsigned)q->shard % (unsigned)p->n_conns];
    if (c ? c->state == PGP_DOWN : pgp_all_down(p)) {
        pgp_answer(p, r, NULL, PGPOOL_ERROR, NULL);
        return 0;
    }
    if (c) {
        *c->queue_tail = r;
        c->queue_tail = &r->next;
    } else {
        *p->any_tail = r;
        p->any_tail = &r->next;
    }
    /* inside an entry point (a callback, say), its settle dispatches */
    if (p->depth == 0)
        for (int i = 0; i < p->n_conns; i++)
            if (!c || c == &p->conns[i])
                pgp_conn_dispatch(&p->conns[i]);
    return 0;
}

int pgpool_continue(pgpool *p, const pgpool_query *q, pgpool_cb cb, void *ud)
{
    pgp_conn *c = p->answering;
    if (!c)
        return pgpool_submit(p, q, cb, ud);
    pgp_req *r = p->gone ? NULL : pgp_req_new(q, cb, ud);
    if (!r)
        return -1;
    if (c->state == PGP_DOWN) {
        pgp_answer(p, r, NULL, PGPOOL_ERROR, NULL);
        return 0;
    }
    if (!(r->next = c->queue))
        c->queue_tail = &r->next;
    c->queue = r;
    return 0;
}

/* ---- draining: flush, and the owner unloading ---- */

static bool pgp_pending(const pgpool *p)
{
    if (p->any || p->done)
        return true;
    for (int i = 0; i < p->n_conns; i++)
        if (p->conns[i].queue || p->conns[i].cur)
            return true;
    return false;
}

/* Every connection closed; what was running or queued is answered with
 * status. */
static void pgp_close_all(pgpool *p, int status)
{
    for (int i = 0; i < p->n_conns; i++) {
        pgp_conn *c = &p->conns[i];
        if (c->cur) {
            pgp_answer(p, c->cur, NULL, status, NULL);
            c->cur = NULL;
        }
        pgp_conn_close(c);
        c->state = PGP_DOWN;
        pgp_fail_queue(c, status);
    }
}

/* Waits up to wait_ms for the sockets of the connections that have work,
 * and handles what they say. -1 when poll() fails. */
static int pgp_poll(pgpool *p, uint64_t wait_ms)
{
    struct pollfd fds[PGP_POLL_MAX];
    pgp_conn *who[PGP_POLL_MAX];
    nfds_t n = 0;
    for (int i = 0; i < p->n_conns && n < PGP_POLL_MAX; i++) {
        pgp_conn *c = &p->conns[i];
        if ((c->state == PGP_CONNECTING || c->state == PGP_BUSY) && c->pc && PQsocket(c->pc) >= 0) {
            fds[n] = (struct pollfd){ PQsocket(c->pc),
                                      (short)(((c->want & XMPPD_IO_READ) ? POLLIN : 0) |
                                              ((c->want & XMPPD_IO_WRITE) ? POLLOUT : 0)), 0 };
            who[n++] = c;
        }
    }
    if (n == 0)
        return 0;
    int rc = poll(fds, n, (int)wait_ms);
    for (nfds_t i = 0; rc > 0 && i < n; i++) {
        int ready = ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) ? XMPPD_IO_READ : 0) |
                    ((fds[i].revents & POLLOUT) ? XMPPD_IO_WRITE : 0);
        if (ready)
            pgp_conn_event(who[i], ready);
    }
    return rc < 0 && errno != EINTR ? -1 : 0;
}

/* Runs the pool with poll() (the loop does not serve it now) until nothing
 * is pending, or conf.drain_ms passed: then what is left is answered with
 * left. A connection that is down gets no retry meanwhile, so its queue
 * fails. Callbacks run here. */
static void pgp_drain(pgpool *p, int left)
{
    uint64_t deadline = xmppd_now_ms() + p->conf.drain_ms;
    p->depth++;
    for (;;) {
        pgp_settle(p);
        for (int i = 0; i < p->n_conns; i++)
            if (p->conns[i].state == PGP_DOWN)
                pgp_fail_queue(&p->conns[i], PGPOOL_ERROR);
        if (p->done)
            continue;
        if (!pgp_pending(p))
            break;
        uint64_t now = xmppd_now_ms();
        if (now >= deadline) {
            xmppd_log(p->m, XMPPD_LOG_ERROR, "the %s did not finish the queued queries in time", p->conf.what);
            pgp_close_all(p, left);
            continue;
        }
        if (pgp_poll(p, deadline - now) != 0)
            deadline = now;
    }
    p->depth--;
}

void pgpool_flush(pgpool *p)
{
    if (!p || p->gone || p->closing || p->depth)
        return;
    for (int i = 0; i < p->n_conns; i++) {
        xmppd_io_remove(p->conns[i].io);
        p->conns[i].io = NULL;
        p->conns[i].io_fd = -1;
    }
    p->closing = true;
    pgp_drain(p, PGPOOL_ERROR);
    p->closing = false;
    for (int i = 0; i < p->n_conns; i++) {
        pgp_conn *c = &p->conns[i];
        if (c->state != PGP_DOWN)
            pgp_conn_watch(c, c->want);
        else if (!c->retry)
            c->retry = xmppd_timer_add(p->m, PGP_BACKOFF_FIRST_MS, pgp_retry_fired, c);
    }
}

/* The owner unloads (before its unload()): the kernel has released the
 * pool's watches and timers already, all made after owner_call. Finish
 * what can be finished in drain_ms, cancel the rest. */
static void pgp_owner_unloading(void *ud)
{
    pgpool *p = ud;
    p->tick = NULL;
    p->deliver = NULL;
    for (int i = 0; i < p->n_conns; i++) {
        p->conns[i].io = NULL;
        p->conns[i].io_fd = -1;
        p->conns[i].retry = NULL;
    }
    p->closing = true;
    if (p->conf.drain_ms)
        pgp_drain(p, PGPOOL_CANCELLED);
    pgp_close_all(p, PGPOOL_CANCELLED);
    for (pgp_req *r = p->done; r; r = r->next) {
        PQclear(r->res);
        r->res = NULL;
        r->status = PGPOOL_CANCELLED;
    }
    p->depth++;
    pgp_deliver(p);
    p->depth--;
    p->gone = true;
}

/* ---- opening and closing ---- */

PGconn *pgpool_connect_now(const pgpool_conf *conf, char *err, size_t errlen)
{
    static const char *const keys[] = { "application_name", "connect_timeout", "dbname", NULL };
    char ct[24];
    snprintf(ct, sizeof ct, "%llu", (unsigned long long)(conf->connect_timeout_ms + 999) / 1000);
    const char *vals[] = { conf->application_name, ct, conf->conninfo, NULL };
    PGconn *pc = PQconnectdbParams(keys, vals, 1);
    if (!pc || PQstatus(pc) != CONNECTION_OK) {
        const char *msg = pc ? PQerrorMessage(pc) : "out of memory";
        snprintf(err, errlen, "cannot connect to the %s: %.*s", conf->what, (int)strcspn(msg, "\n"), msg);
        PQfinish(pc);
        return NULL;
    }
    return pc;
}

pgpool *pgpool_open(xmppd_module *owner, const pgpool_conf *conf)
{
    pgpool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->m = owner;
    p->conf = *conf;
    p->n_conns = conf->size;
    p->any_tail = &p->any;
    p->done_tail = &p->done;
    if (!(p->conf.conninfo = strdup(conf->conninfo)) ||
        !(p->conns = calloc((size_t)p->n_conns, sizeof *p->conns)))
        goto fail;
    for (int i = 0; i < p->n_conns; i++) {
        p->conns[i] = (pgp_conn){ .p = p, .index = i, .state = PGP_DOWN, .io_fd = -1 };
        p->conns[i].queue_tail = &p->conns[i].queue;
        if (!(p->conns[i].prepared = calloc((size_t)conf->n_statements + 1, 1)))
            goto fail;
    }
    /* first, so that the watches and timers below are released before it
     * runs (the kernel runs a module's cleanups newest first) */
    if (!(p->owner_call = xmppd_call_new(owner, pgp_owner_unloading, p)) ||
        !(p->tick = xmppd_timer_add(owner, PGP_TICK_MS, pgp_tick, p)))
        goto fail;
    for (int i = 0; i < p->n_conns; i++)
        pgp_conn_start(&p->conns[i]);
    return p;
fail:
    pgpool_free(p);
    return NULL;
}

void pgpool_free(pgpool *p)
{
    if (!p)
        return;
    if (p->tick)
        xmppd_timer_cancel(p->tick);
    if (p->deliver)
        xmppd_timer_cancel(p->deliver);
    for (int i = 0; p->conns && i < p->n_conns; i++) {
        pgp_conn *c = &p->conns[i];
        if (c->retry)
            xmppd_timer_cancel(c->retry);
        if (c->prepared)
            pgp_conn_close(c);
        if (c->cur)
            pgp_req_free(c->cur);
        pgp_free_list(c->queue);
        free(c->prepared);
    }
    pgp_free_list(p->any);
    pgp_free_list(p->done);
    xmppd_call_finish(p->owner_call);
    free(p->conns);
    if (p->conf.conninfo) {
        xmppd_wipe((char *)p->conf.conninfo, strlen(p->conf.conninfo));
        free((char *)p->conf.conninfo);
    }
    free(p);
}
