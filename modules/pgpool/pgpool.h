/* pgpool: an asynchronous PostgreSQL connection pool on the event loop,
 * shared by the modules that talk to PostgreSQL (storage_pgsql, auth_sql).
 * Not a module: a library linked into each (libpgpool.la), so each keeps
 * its own copy, and a pool belongs to the module that opened it (its
 * owner).
 *
 * Connections: conf.size of them, made with libpq's non-blocking API
 * (PQconnectStartParams / PQconnectPoll) and driven by xmppd_io watches on
 * their sockets (PQsendQueryPrepared, PQconsumeInput, PQisBusy,
 * PQgetResult): the loop never waits for the database. Each connection
 * runs one statement at a time.
 *
 * Statements: the owner numbers them 0 .. n_statements - 1 and hands out
 * their SQL through conf.sql. A connection prepares a statement the first
 * time it runs it (PQsendPrepare, named stmt_prefix + number), and again
 * after a reconnect.
 *
 * Queries name a statement, its text parameters (copied, and wiped when
 * done: they may be password hashes) and a shard. The queries of one
 * shard run on one connection, one at a time, in the order submitted (so
 * storage keeps each user's operations in order); PGPOOL_ANY queries go to
 * whichever connection is idle first.
 *
 * Failure:
 *  - a connection that breaks fails its running query with PGPOOL_ERROR
 *    and reconnects at once; its queued queries wait for the new one;
 *  - a connection attempt that fails (or takes connect_timeout_ms) leaves
 *    the connection down, retried with back-off (250 ms doubling up to
 *    reconnect_max_ms). While it is down the queries of its shards fail at
 *    once, and those it had queued fail too; PGPOOL_ANY queries fail so
 *    while every connection is down. Nothing waits on a dead database;
 *  - a query that waited or ran longer than query_timeout_ms fails; a
 *    statement running that long drops its connection (which reconnects).
 *
 * Answers: the callback of an accepted query runs exactly once, on the
 * loop thread, never from inside pgpool_submit: from the loop (socket
 * events, timers), from pgpool_flush, or while the owner unloads.
 *
 * The owner unloading: before its unload() runs (the SDK's rule for
 * asynchronous calls), the pool stops using the loop, finishes what is
 * queued and running for at most conf.drain_ms by polling the sockets
 * itself (0: not at all), answers every query still pending with
 * PGPOOL_CANCELLED, and closes its connections. The owner's unload() then
 * calls pgpool_free. */
#ifndef XMPPD_PGPOOL_H
#define XMPPD_PGPOOL_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include <xmppd/xmppd.h>

typedef struct pgpool pgpool;

typedef struct pgpool_conf {
    const char *conninfo;         /* libpq connection string or URI (copied; wiped when freed) */
    const char *application_name; /* reported to the server: "xmppd" */
    const char *what;             /* the database in log lines: "database", "user database" */
    int size;                     /* connections, at least 1 */
    uint64_t connect_timeout_ms;  /* a connection attempt taking longer fails */
    uint64_t query_timeout_ms;    /* a query waiting or running longer fails */
    uint64_t reconnect_max_ms;    /* longest pause between connection attempts */
    uint64_t drain_ms;            /* owner unloading, pgpool_flush: longest wait for pending work */
    /* statements */
    int n_statements;
    const char *stmt_prefix;      /* statement i is named stmt_prefix + i ("xmppd2_") */
    /* The SQL of statement i: a string that lives as long as the pool, or
     * buf (len bytes) filled in. Called when a connection first runs i. */
    const char *(*sql)(int i, char *buf, size_t len, void *sql_ud);
    void *sql_ud;
    int n_types;                  /* parameter types given to every PREPARE; */
    const Oid *types;             /* NULL: the server infers them */
} pgpool_conf;
/* The strings of a conf other than conninfo, types and sql_ud are borrowed
 * and must live as long as the pool (string literals, the module's conf). */

enum pgpool_status {
    PGPOOL_OK = 0,         /* res: the statement's result (PGRES_COMMAND_OK or PGRES_TUPLES_OK) */
    PGPOOL_FAILED = 1,     /* the database refused it: res holds its error (PQresultErrorField) */
    PGPOOL_ERROR = -1,     /* no answer: database down, connection lost, timed out; res NULL */
    PGPOOL_CANCELLED = -2  /* the owner unloads: res NULL; free ud, start nothing */
};

/* status: an enum pgpool_status; res borrowed for the call (NULL unless
 * OK or FAILED). */
typedef void (*pgpool_cb)(int status, const PGresult *res, void *ud);

#define PGPOOL_ANY (-1) /* shard: any idle connection */

typedef struct pgpool_query {
    int stmt;                   /* 0 .. conf.n_statements - 1 */
    int shard;                  /* pgpool_shard(), or PGPOOL_ANY */
    int n_values;
    const char *const *values;  /* $1.. as text, NULL for SQL NULL; copied */
} pgpool_query;

/* The shard of the work on (a, b) (either may be NULL): the same pair
 * always gives the same shard, >= 0. */
int pgpool_shard(const char *a, const char *b);

/* One blocking connection with conf's settings (conninfo, application_name,
 * connect_timeout_ms), for what load() does before serving: migrating a
 * schema, checking queries. The caller PQfinishes it. NULL with a one-line
 * reason in err ("cannot connect to the <what>: ..."). */
PGconn *pgpool_connect_now(const pgpool_conf *conf, char *err, size_t errlen);

/* Opens a pool for owner (from its load()) and starts connecting. conf is
 * copied (see above for its strings). NULL on OOM. */
pgpool *pgpool_open(xmppd_module *owner, const pgpool_conf *conf);

/* Queues q. 0: cb runs exactly once (see Answers). -1 on OOM, or once the
 * owner unloads: cb never runs, the caller answers its own request. */
int pgpool_submit(pgpool *p, const pgpool_query *q, pgpool_cb cb, void *ud);

/* From inside a pool callback: as pgpool_submit, but q runs next on the
 * connection that gave the answer being handled, before what is queued
 * there, whatever q->shard says (a statement that must follow the one just
 * answered with nothing of its shard in between). Elsewhere: pgpool_submit. */
int pgpool_continue(pgpool *p, const pgpool_query *q, pgpool_cb cb, void *ud);

/* Blocks until nothing is queued or running, for at most conf.drain_ms
 * (what is left then fails with PGPOOL_ERROR and its connection is reset).
 * Callbacks run inside. For shutdown and xmppctl; not from a callback. */
void pgpool_flush(pgpool *p);

/* Closes the connections and frees p: from the owner's unload() (every
 * query was answered before it), or from load() giving up (queries still
 * pending are dropped unanswered). NULL is fine. */
void pgpool_free(pgpool *p);

#endif
