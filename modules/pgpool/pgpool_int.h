/* pgpool's own types, shared by pgpool.c (queries, answers, the owner's
 * unload) and pgpool_conn.c (one connection's state machine). Not for
 * users of the pool: see pgpool.h.
 *
 * Ownership: a request is owned by the queue it waits in (a connection's,
 * or the pool's PGPOOL_ANY queue), then by the connection running it,
 * then by the done list (with its result) until its callback ran and it
 * is freed. */
#ifndef XMPPD_PGPOOL_INT_H
#define XMPPD_PGPOOL_INT_H

#include <stdbool.h>

#include "pgpool.h"

#define PGP_BACKOFF_FIRST_MS 250 /* first pause before reconnecting */

typedef struct pgp_req pgp_req;
typedef struct pgp_conn pgp_conn;

struct pgp_req {
    pgp_req *next;
    int stmt;
    int n_values;
    char **values;       /* n_values strings (NULL allowed), in this allocation */
    size_t alloc;        /* bytes of this allocation (wiped when freed) */
    uint64_t queued_at;  /* ms, monotonic */
    pgpool_cb cb;
    void *ud;
    /* the answer, once on the done list */
    int status;
    PGresult *res;       /* owned */
    pgp_conn *by;        /* the connection that answered, or NULL */
};

enum pgp_state { PGP_DOWN, PGP_CONNECTING, PGP_IDLE, PGP_BUSY };

struct pgp_conn {
    pgpool *p;
    int index;
    enum pgp_state state;
    PGconn *pc;
    xmppd_io *io;
    int io_fd;
    int want;                  /* XMPPD_IO_* events wanted */
    pgp_req *queue, **queue_tail; /* queries of its shards */
    pgp_req *cur;              /* the running query */
    bool preparing;            /* cur's PREPARE is running */
    PGresult *res;             /* first result of the running command */
    uint64_t since;            /* ms: connect started / statement sent */
    unsigned failures;         /* consecutive failed connection attempts */
    bool was_up;               /* connected since the last failure was logged */
    xmppd_timer *retry;
    unsigned char *prepared;   /* per statement */
};

struct pgpool {
    xmppd_module *m;
    pgpool_conf conf;          /* conninfo: an owned copy */
    pgp_conn *conns;
    int n_conns;
    pgp_req *any, **any_tail;  /* PGPOOL_ANY queries waiting */
    pgp_req *done, **done_tail; /* answered, callbacks not run yet */
    xmppd_timer *deliver;      /* 0 ms: answers decided outside the loop's events */
    xmppd_timer *tick;         /* timeouts */
    xmppd_call *owner_call;    /* tells us when the owner unloads */
    int depth;                 /* in a pool entry point that settles when it ends */
    bool closing;              /* no watches or timers: driven by poll() (flush, unload) */
    bool gone;                 /* the owner unloaded: everything was answered */
    pgp_conn *answering;       /* in a callback: the connection that answered */
};

/* pgpool.c. An entry point (socket event, timer) brackets its work with
 * pgp_enter / pgp_leave; the outermost pgp_leave settles: it runs the
 * callbacks of what was answered, then lets idle connections take queued
 * queries. pgp_answer queues an answer (status, res taken, by: the
 * connection that answered, for pgpool_continue). */
void pgp_enter(pgpool *p);
void pgp_leave(pgpool *p);
void pgp_answer(pgpool *p, pgp_req *r, pgp_conn *by, int status, PGresult *res);
/* Answers c's queue with status, and the PGPOOL_ANY queue too when every
 * connection is down. */
void pgp_fail_queue(pgp_conn *c, int status);
void pgp_log_pq(pgpool *p, int level, const char *what, const char *msg);

/* pgpool_conn.c */
void pgp_conn_start(pgp_conn *c);
void pgp_conn_close(pgp_conn *c);
void pgp_conn_event(pgp_conn *c, int ready);
void pgp_conn_dispatch(pgp_conn *c);
void pgp_conn_broken(pgp_conn *c, const char *why);
void pgp_conn_failed(pgp_conn *c, const char *why);
void pgp_conn_watch(pgp_conn *c, int events);
uint64_t pgp_retry_fired(void *ud);

#endif
