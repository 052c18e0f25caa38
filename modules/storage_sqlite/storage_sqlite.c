/* storage_sqlite: the default storage driver ("sqlite"), one SQLite file in
 * WAL mode.
 *
 * Threading: every SQLite call runs on one thread owned by the driver. The
 * loop thread queues operations (sq_submit); the driver thread takes all
 * that is queued (up to SQ_BATCH_MAX), runs it in one transaction, commits,
 * and hands the finished batch back to the loop thread with one
 * xmppd_loop_post, where each callback runs in submission order. A callback
 * therefore never runs before its write is committed. If a batch fails as a
 * whole, it is rolled back and each operation is retried in a transaction of
 * its own, so one bad operation does not fail the others.
 *
 * The storage API's calls become sqs_ops (modules/sqlstore, shared with
 * storage_pgsql), which this file runs. Ownership: the queue owns queued
 * ops, the driver thread the running batch, the done list the finished
 * ones until sq_deliver answers and frees them. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr, RTLD_NODELETE */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "xmppd/xmppd.h"
#include "../sqlstore/sqlstore.h"

#define SQ_BATCH_MAX 4096 /* ops per transaction */

/* ---- options ---- */

typedef struct sq_conf {
    const char *path;
    const char *synchronous;
    long long busy_timeout; /* ms */
    long long cache_size;   /* bytes of page cache */
} sq_conf;

static const char *const sq_sync_choices[] = { "full", "normal", NULL };

static const xmppd_option sq_options[] = {
    { "path", XMPPD_OPT_PATH, XMPPD_OFF(sq_conf, path), "xmppd.sqlite", 0, 0, NULL,
      XMPPD_OPT_DATA, "database file; a relative path is taken from data_dir" },
    { "synchronous", XMPPD_OPT_ENUM, XMPPD_OFF(sq_conf, synchronous), "full", 0, 0,
      sq_sync_choices, 0,
      "full: every commit survives power loss; normal: faster, a power loss may drop the last commits" },
    { "busy_timeout", XMPPD_OPT_DURATION, XMPPD_OFF(sq_conf, busy_timeout), "5s", 0, 600000,
      NULL, 0, "how long to wait for another process (xmppctl) holding the write lock" },
    { "cache_size", XMPPD_OPT_SIZE, XMPPD_OFF(sq_conf, cache_size), "32M", 1LL << 20, 1LL << 34, NULL, 0,
      "SQLite page cache (filled as used): a login's offline queue or a MAM page read again from it,"
      " not from the file" },
    { NULL }
};

/* ---- schema ---- */

/* migration i brings PRAGMA user_version from i to i + 1; each runs in its
 * own transaction. Append only: never edit a released step. */
static const char *const sq_migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE kv ("
    " host TEXT NOT NULL, store TEXT NOT NULL, user TEXT NOT NULL, key TEXT NOT NULL,"
    " value TEXT NOT NULL,"
    " PRIMARY KEY (host, store, user, key)) WITHOUT ROWID;"
    "CREATE TABLE archive ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " host TEXT NOT NULL, store TEXT NOT NULL, user TEXT NOT NULL,"
    " with_jid TEXT, when_ms INTEGER NOT NULL, value TEXT NOT NULL);"
    "CREATE INDEX archive_by_id ON archive (host, store, user, id);"
    "CREATE INDEX archive_by_when ON archive (host, store, user, when_ms);",
    /* 1 -> 2: ids chosen by the appender (MAM stanza-ids), the peer's
     * resource apart from its bare JID, and the indexes that keep id
     * lookups and peer filters to an index range on big archives */
    "ALTER TABLE archive ADD COLUMN key TEXT;"
    "ALTER TABLE archive ADD COLUMN with_res TEXT;"
    "UPDATE archive SET with_res = substr(with_jid, instr(with_jid, '/') + 1),"
    " with_jid = substr(with_jid, 1, instr(with_jid, '/') - 1) WHERE instr(with_jid, '/') > 0;"
    "CREATE UNIQUE INDEX archive_by_key ON archive (host, store, user, key);"
    "CREATE INDEX archive_by_with ON archive (host, store, user, with_jid, id);",
    /* 2 -> 3: queue stores (offline messages: read whole at login, deleted
     * from the front) in a table of their own with one index, not the four
     * that MAM's queries need on the archive (each deleted row updated
     * five b-trees); the rows move with their ids, so order and ids stay */
    "CREATE TABLE queue ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " host TEXT NOT NULL, store TEXT NOT NULL, user TEXT NOT NULL,"
    " with_jid TEXT, when_ms INTEGER NOT NULL, value TEXT NOT NULL, key TEXT, with_res TEXT);"
    "CREATE INDEX queue_by_id ON queue (host, store, user, id);"
    /* appenders' ids stay unique; rows without one (offline messages)
     * are not in this index at all */
    "CREATE UNIQUE INDEX queue_by_key ON queue (host, store, user, key) WHERE key IS NOT NULL;"
    "INSERT INTO queue (id, host, store, user, with_jid, when_ms, value, key, with_res)"
    " SELECT id, host, store, user, with_jid, when_ms, value, key, with_res FROM archive"
    " WHERE store = '" SQS_QUEUE_STORE "' ORDER BY id;"
    "DELETE FROM archive WHERE store = '" SQS_QUEUE_STORE "';",
};
#define SQ_SCHEMA_VERSION ((int)(sizeof sq_migrations / sizeof sq_migrations[0]))

/* cached statements */
enum sq_stmt_id {
    ST_BEGIN, ST_BEGIN_W, ST_COMMIT, ST_ROLLBACK,
    ST_KV_GET, ST_KV_PUT, ST_KV_DEL, ST_KV_ALL, ST_KV_USERS,
    ST_AR_APPEND, ST_AR_COUNT, ST_AR_HAS_ID, ST_AR_BY_KEY, ST_AR_REPLACE, ST_PURGE_KV, ST_PURGE_AR,
    ST_COUNT
};

/* The archive statements, written for table "archive", run on "queue"
 * for a queue store (sqs_queue_store). */
enum sq_table { SQ_ARCHIVE, SQ_QUEUE, SQ_TABLES };
static const char *const sq_table_name[SQ_TABLES] = { "archive", "queue" };

static const char *const sq_stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_BEGIN_W] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_KV_GET] = "SELECT value FROM kv WHERE host=?1 AND store=?2 AND user=?3 AND key=?4",
    [ST_KV_PUT] = "INSERT INTO kv (host, store, user, key, value) VALUES (?1, ?2, ?3, ?4, ?5)"
                  " ON CONFLICT (host, store, user, key) DO UPDATE SET value=excluded.value",
    [ST_KV_DEL] = "DELETE FROM kv WHERE host=?1 AND store=?2 AND user=?3 AND key=?4",
    [ST_KV_ALL] = "SELECT key, value FROM kv WHERE host=?1 AND store=?2 AND user=?3",
    [ST_KV_USERS] = "SELECT DISTINCT user FROM kv WHERE host=?1 AND store=?2 ORDER BY user",
    [ST_AR_APPEND] = "INSERT INTO archive (host, store, user, key, with_jid, when_ms, value, with_res)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_AR_COUNT] = "SELECT count(*) FROM archive WHERE host=?1 AND store=?2 AND user=?3",
    /* a driver-assigned id names only an item without an appender's id */
    [ST_AR_HAS_ID] = "SELECT 1 FROM archive WHERE id=?4 AND host=?1 AND store=?2 AND user=?3"
                     " AND key IS NULL",
    [ST_AR_BY_KEY] = "SELECT id FROM archive WHERE host=?1 AND store=?2 AND user=?3 AND key=?4",
    [ST_AR_REPLACE] = "UPDATE archive SET value=?5 WHERE id=?4 AND host=?1 AND store=?2 AND user=?3",
    [ST_PURGE_KV] = "DELETE FROM kv WHERE host=?1 AND user=?3",
    [ST_PURGE_AR] = "DELETE FROM archive WHERE host=?1 AND user=?3",
};

/* ---- the driver instance ---- */

typedef struct sq_db {
    sqs_driver base;           /* first: the sqlstore entry points find us */
    sqlite3 *db;               /* used by the driver thread only (after open) */
    sqlite3_stmt *stmt[SQ_TABLES][ST_COUNT];
    sqlite3_stmt *query_stmt[SQ_TABLES][SQS_Q_VARIANTS];
    sqlite3_stmt *delete_stmt[SQ_TABLES][SQS_Q_VARIANTS];

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t wake;       /* queue non-empty or stopping */
    pthread_cond_t idle;       /* queue drained and nothing running */
    /* under lock: */
    sqs_op *queue, **queue_tail;
    size_t queued;
    bool busy;                 /* the thread is running a batch */
    bool stopping;
    sqs_op *done, **done_tail; /* finished, waiting for sq_deliver */
    bool posted;               /* an sq_deliver is pending on the loop */
    bool orphaned;             /* unloaded: the last sq_deliver frees us */
} sq_db;

static void sq_log_db(sq_db *d, int level, const char *what)
{
    xmppd_log(d->base.m, level, "%s: %s", what, sqlite3_errmsg(d->db));
}

/* ---- statements ---- */

static sqlite3_stmt *sq_prepare(sq_db *d, sqlite3_stmt **slot, const char *sql)
{
    if (!*slot && sqlite3_prepare_v3(d->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL) != SQLITE_OK) {
        sq_log_db(d, XMPPD_LOG_ERROR, "prepare");
        *slot = NULL;
    }
    return *slot;
}

/* The table op's archive store lives in. */
static enum sq_table sq_table_of(const sqs_op *op)
{
    bool archive_op = op && (op->kind == SQS_AR_APPEND || op->kind == SQS_AR_QUERY || op->kind == SQS_AR_DELETE ||
                             op->kind == SQS_AR_COUNT || op->kind == SQS_AR_REPLACE);
    return archive_op && sqs_queue_store(op->store) ? SQ_QUEUE : SQ_ARCHIVE;
}

/* A cached statement of table t, reset, bound with the op's
 * host/store/user/key as ?1..?4 where the statement has them. NULL on
 * error. */
static sqlite3_stmt *sq_stmt_in(sq_db *d, enum sq_stmt_id id, enum sq_table t, const sqs_op *op)
{
    char sql[400];
    sqlite3_stmt **slot = &d->stmt[t][id];
    if (!*slot)
        sqs_sql_table(sq_stmt_sql[id], "archive", sq_table_name[t], sql, sizeof sql);
    sqlite3_stmt *st = sq_prepare(d, slot, sql);
    if (!st)
        return NULL;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (op) {
        int n = sqlite3_bind_parameter_count(st);
        const char *v[] = { op->host, op->store, op->user, op->key };
        for (int i = 0; i < n && i < 4; i++)
            if (v[i] && sqlite3_bind_text(st, i + 1, v[i], -1, SQLITE_STATIC) != SQLITE_OK)
                return NULL;
    }
    return st;
}

/* As sq_stmt_in, in the table of op's store. */
static sqlite3_stmt *sq_stmt(sq_db *d, enum sq_stmt_id id, const sqs_op *op)
{
    return sq_stmt_in(d, id, sq_table_of(op), op);
}

/* Steps a statement that returns no rows. */
static int sq_exec_stmt(sq_db *d, sqlite3_stmt *st)
{
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        sq_log_db(d, XMPPD_LOG_ERROR, "step");
        return -1;
    }
    return 0;
}

/* Builds the WHERE ... ORDER BY ... LIMIT of an archive query variant.
 * after/before/ids are driver ids here (resolved first, sq_resolve_ids). */
static void sq_query_tail(char *buf, size_t len, unsigned mask)
{
    snprintf(buf, len, "host=?1 AND store=?2 AND user=?3%s%s%s%s%s%s%s ORDER BY id %s LIMIT ?9",
             mask & SQS_Q_WITH ? " AND with_jid=?4" : "",
             mask & SQS_Q_WITH_RES ? " AND with_res=?11" : "",
             mask & SQS_Q_START ? " AND when_ms>=?5" : "",
             mask & SQS_Q_END ? " AND when_ms<=?6" : "",
             mask & SQS_Q_AFTER ? " AND id>?7" : "",
             mask & SQS_Q_BEFORE ? " AND id<?8" : "",
             mask & SQS_Q_IDS ? " AND id IN (SELECT value FROM json_each(?10))" : "",
             mask & SQS_Q_REVERSE ? "DESC" : "ASC");
}

/* The cached query (select) or delete statement for op's conditions, bound,
 * with LIMIT limit (-1: none). */
static sqlite3_stmt *sq_query_stmt(sq_db *d, const sqs_op *op, bool del, long long limit)
{
    char tail[400], sql[600] = "";
    enum sq_table t = sq_table_of(op);
    const char *table = sq_table_name[t];
    sqlite3_stmt **slot = del ? &d->delete_stmt[t][op->qmask] : &d->query_stmt[t][op->qmask];
    if (!*slot) {
        sq_query_tail(tail, sizeof tail, op->qmask);
        if (del)
            snprintf(sql, sizeof sql, "DELETE FROM %s WHERE id IN (SELECT id FROM %s WHERE %s)", table, table,
                     tail);
        else
            snprintf(sql, sizeof sql, "SELECT id, when_ms, with_jid, value, key, with_res FROM %s"
                     " WHERE %s", table, tail);
    }
    sqlite3_stmt *st = sq_prepare(d, slot, sql);
    if (!st)
        return NULL;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    int rc = sqlite3_bind_text(st, 1, op->host, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 2, op->store, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 3, op->user, -1, SQLITE_STATIC);
    if (op->qmask & SQS_Q_WITH)
        rc |= sqlite3_bind_text(st, 4, op->with, -1, SQLITE_STATIC);
    if (op->qmask & SQS_Q_START)
        rc |= sqlite3_bind_int64(st, 5, op->start_ms);
    if (op->qmask & SQS_Q_END)
        rc |= sqlite3_bind_int64(st, 6, op->end_ms);
    if (op->qmask & SQS_Q_AFTER)
        rc |= sqlite3_bind_int64(st, 7, op->after_row);
    if (op->qmask & SQS_Q_BEFORE)
        rc |= sqlite3_bind_int64(st, 8, op->before_row);
    if (op->qmask & SQS_Q_IDS)
        rc |= sqlite3_bind_text(st, 10, op->row_list, -1, SQLITE_STATIC);
    if (op->qmask & SQS_Q_WITH_RES)
        rc |= sqlite3_bind_text(st, 11, op->with_res, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(st, 9, limit);
    return rc == SQLITE_OK ? st : NULL;
}

static const char *sq_column(sqlite3_stmt *st, int col)
{
    return (const char *)sqlite3_column_text(st, col);
}

/* ---- running one op on the driver thread: 0, or -1 (status ERROR) ---- */

static int sq_run_kv_get(sq_db *d, sqs_op *op)
{
    sqlite3_stmt *st = sq_stmt(d, ST_KV_GET, op);
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (sqs_set_value(op, sq_column(st, 0)) != 0)
            op->status = XMPPD_STORE_ERROR;
    } else if (rc == SQLITE_DONE) {
        op->status = XMPPD_STORE_NOT_FOUND;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sq_log_db(d, XMPPD_LOG_ERROR, "kv_get");
        return -1;
    }
    return 0;
}

static int sq_run_kv_set(sq_db *d, sqs_op *op)
{
    sqlite3_stmt *st = sq_stmt(d, op->text ? ST_KV_PUT : ST_KV_DEL, op);
    if (!st)
        return -1;
    if (op->text && sqlite3_bind_text(st, 5, op->text, -1, SQLITE_STATIC) != SQLITE_OK)
        return -1;
    return sq_exec_stmt(d, st);
}

static int sq_run_kv_get_all(sq_db *d, sqs_op *op)
{
    sqlite3_stmt *st = sq_stmt(d, ST_KV_ALL, op);
    if (!st || !(op->value = json_object()))
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqs_add_pair(op, sq_column(st, 0), sq_column(st, 1)) != 0) {
            rc = SQLITE_ERROR;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sq_run_kv_users(sq_db *d, sqs_op *op)
{
    sqlite3_stmt *st = sq_stmt(d, ST_KV_USERS, op);
    if (!st || !(op->value = json_array()))
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqs_add_user(op, sq_column(st, 0)) != 0) {
            rc = SQLITE_ERROR;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sq_run_append(sq_db *d, sqs_op *op)
{
    /* ?4 is the appender's id (op->key), bound by sq_stmt when given */
    sqlite3_stmt *st = sq_stmt(d, ST_AR_APPEND, op);
    if (!st)
        return -1;
    int rc = op->with ? sqlite3_bind_text(st, 5, op->with, -1, SQLITE_STATIC) : SQLITE_OK;
    rc |= sqlite3_bind_int64(st, 6, op->when_ms);
    rc |= sqlite3_bind_text(st, 7, op->text, -1, SQLITE_STATIC);
    if (op->with_res)
        rc |= sqlite3_bind_text(st, 8, op->with_res, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK || sq_exec_stmt(d, st) != 0)
        return -1;
    snprintf(op->new_id, sizeof op->new_id, "%" PRId64, (int64_t)sqlite3_last_insert_rowid(d->db));
    return 0;
}

/* The row of the item whose id is `id` in op's archive: an appender's id,
 * else a driver-assigned one. 1 found (*row_r), 0 none, -1 error. */
static int sq_resolve(sq_db *d, const sqs_op *op, const char *id, int64_t *row_r)
{
    sqlite3_stmt *st = sq_stmt(d, ST_AR_BY_KEY, op);
    if (!st || sqlite3_bind_text(st, 4, id, -1, SQLITE_STATIC) != SQLITE_OK)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *row_r = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return rc == SQLITE_ROW ? 1 : -1;
    int64_t n;
    if (!sqs_parse_id(id, &n))
        return 0;
    if (!(st = sq_stmt(d, ST_AR_HAS_ID, op)) || sqlite3_bind_int64(st, 4, n) != SQLITE_OK)
        return -1;
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        *row_r = n;
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Resolves the ids op names (after, before, ids) to rows. 1 when one of
 * them names no item of this archive (RSM item-not-found), 0 done, -1
 * error. */
static int sq_resolve_ids(sq_db *d, sqs_op *op)
{
    int rc = 1;
    if (op->after_s && (rc = sq_resolve(d, op, op->after_s, &op->after_row)) != 1)
        return rc < 0 ? -1 : 1;
    if (op->before_s && (rc = sq_resolve(d, op, op->before_s, &op->before_row)) != 1)
        return rc < 0 ? -1 : 1;
    if (!(op->qmask & SQS_Q_IDS))
        return 0;
    free(op->row_list);
    op->row_list = NULL;
    json_t *rows = json_array();
    for (size_t i = 0; rows && i < op->n_ids; i++) {
        int64_t row;
        if ((rc = sq_resolve(d, op, op->ids[i], &row)) != 1 ||
            json_array_append_new(rows, json_integer(row)) != 0) {
            json_decref(rows);
            return rc == 0 ? 1 : -1;
        }
    }
    op->row_list = rows ? json_dumps(rows, JSON_COMPACT) : NULL;
    json_decref(rows);
    return op->row_list ? 0 : -1;
}

static int sq_run_query(sq_db *d, sqs_op *op)
{
    int missing = sq_resolve_ids(d, op);
    if (missing != 0) {
        op->status = XMPPD_STORE_NOT_FOUND;
        op->complete = true;
        return missing < 0 ? -1 : 0;
    }
    /* one row beyond max tells whether the result is complete */
    sqlite3_stmt *st = sq_query_stmt(d, op, false, op->max ? (long long)op->max + 1 : -1);
    if (!st)
        return -1;
    int rc;
    op->complete = true;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (op->max && op->n_items == op->max) {
            op->complete = false;
            rc = SQLITE_DONE;
            break;
        }
        /* the item's id: the appender's (key), else the row's */
        char row[24];
        const char *key = sq_column(st, 4);
        snprintf(row, sizeof row, "%" PRId64, (int64_t)sqlite3_column_int64(st, 0));
        if (sqs_add_item(op, key ? key : row, sqlite3_column_int64(st, 1), sq_column(st, 2), sq_column(st, 5),
                         sq_column(st, 3)) != 0) {
            rc = SQLITE_ERROR;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sq_run_delete(sq_db *d, sqs_op *op)
{
    int missing = sq_resolve_ids(d, op);
    if (missing != 0) /* nothing can match an id that names no item */
        return missing < 0 ? -1 : 0;
    return sq_exec_stmt(d, sq_query_stmt(d, op, true, op->max ? (long long)op->max : -1));
}

static int sq_run_count(sq_db *d, sqs_op *op)
{
    sqlite3_stmt *st = sq_stmt(d, ST_AR_COUNT, op);
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        op->count = (size_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* The item named by after_s (either kind of id) gets op's value. */
static int sq_run_replace(sq_db *d, sqs_op *op)
{
    int rc = sq_resolve(d, op, op->after_s, &op->after_row);
    if (rc <= 0) {
        op->status = XMPPD_STORE_NOT_FOUND;
        return rc;
    }
    sqlite3_stmt *st = sq_stmt(d, ST_AR_REPLACE, op);
    if (!st || sqlite3_bind_int64(st, 4, op->after_row) != SQLITE_OK ||
        sqlite3_bind_text(st, 5, op->text, -1, SQLITE_STATIC) != SQLITE_OK || sq_exec_stmt(d, st) != 0)
        return -1;
    if (sqlite3_changes(d->db) == 0)
        op->status = XMPPD_STORE_NOT_FOUND;
    return 0;
}

static int sq_run_purge(sq_db *d, sqs_op *op)
{
    if (sq_exec_stmt(d, sq_stmt(d, ST_PURGE_KV, op)) != 0 ||
        sq_exec_stmt(d, sq_stmt_in(d, ST_PURGE_AR, SQ_QUEUE, op)) != 0)
        return -1;
    return sq_exec_stmt(d, sq_stmt_in(d, ST_PURGE_AR, SQ_ARCHIVE, op));
}

static int sq_run_op(sq_db *d, sqs_op *op)
{
    sqs_op_reset(op, XMPPD_STORE_OK);
    int rc = -1;
    switch (op->kind) {
    case SQS_KV_GET: rc = sq_run_kv_get(d, op); break;
    case SQS_KV_SET: rc = sq_run_kv_set(d, op); break;
    case SQS_KV_GET_ALL: rc = sq_run_kv_get_all(d, op); break;
    case SQS_KV_USERS: rc = sq_run_kv_users(d, op); break;
    case SQS_AR_APPEND: rc = sq_run_append(d, op); break;
    case SQS_AR_QUERY: rc = sq_run_query(d, op); break;
    case SQS_AR_DELETE: rc = sq_run_delete(d, op); break;
    case SQS_AR_COUNT: rc = sq_run_count(d, op); break;
    case SQS_PURGE: rc = sq_run_purge(d, op); break;
    case SQS_AR_REPLACE: rc = sq_run_replace(d, op); break;
    }
    return rc;
}

static bool sq_op_writes(const sqs_op *op)
{
    return op->kind == SQS_KV_SET || op->kind == SQS_AR_APPEND || op->kind == SQS_AR_DELETE ||
           op->kind == SQS_PURGE || op->kind == SQS_AR_REPLACE;
}

/* Runs ops first..end (exclusive) in one transaction. 0 when committed. */
static int sq_run_txn(sq_db *d, sqs_op *first, sqs_op *end)
{
    bool writes = false;
    for (sqs_op *op = first; op != end; op = op->next)
        writes = writes || sq_op_writes(op);
    if (sq_exec_stmt(d, sq_stmt(d, writes ? ST_BEGIN_W : ST_BEGIN, NULL)) != 0)
        return -1;
    for (sqs_op *op = first; op != end; op = op->next) {
        if (sq_run_op(d, op) != 0) {
            sq_exec_stmt(d, sq_stmt(d, ST_ROLLBACK, NULL));
            return -1;
        }
    }
    if (sq_exec_stmt(d, sq_stmt(d, ST_COMMIT, NULL)) != 0) {
        if (!sqlite3_get_autocommit(d->db))
            sq_exec_stmt(d, sq_stmt(d, ST_ROLLBACK, NULL));
        return -1;
    }
    return 0;
}

/* Runs a batch; on failure retries each op alone so that only the bad ones
 * report ERROR. */
static void sq_run_batch(sq_db *d, sqs_op *batch)
{
    if (!batch->next) {
        if (sq_run_txn(d, batch, NULL) != 0)
            sqs_op_reset(batch, XMPPD_STORE_ERROR);
        return;
    }
    if (sq_run_txn(d, batch, NULL) == 0)
        return;
    xmppd_log(d->base.m, XMPPD_LOG_WARN, "batch failed, retrying its operations one by one");
    for (sqs_op *op = batch; op; op = op->next)
        if (sq_run_txn(d, op, op->next) != 0)
            sqs_op_reset(op, XMPPD_STORE_ERROR);
}

/* ---- completion on the loop thread ---- */

static void sq_db_free(sq_db *d);

/* Posted by the driver thread: runs the callbacks of every finished op. */
static void sq_deliver(void *ud)
{
    sq_db *d = ud;
    pthread_mutex_lock(&d->lock);
    sqs_op *list = d->done;
    d->done = NULL;
    d->done_tail = &d->done;
    d->posted = false;
    bool orphaned = d->orphaned;
    pthread_mutex_unlock(&d->lock);
    while (list) {
        sqs_op *next = list->next;
        sqs_op_done(list);
        list = next;
    }
    if (orphaned)
        sq_db_free(d);
}

/* ---- the driver thread ---- */

static void *sq_thread_main(void *arg)
{
    sq_db *d = arg;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        while (!d->queue && !d->stopping)
            pthread_cond_wait(&d->wake, &d->lock);
        if (!d->queue)
            break;
        /* take up to SQ_BATCH_MAX ops */
        sqs_op *batch = d->queue, *last = batch;
        size_t n = 1;
        while (last->next && n < SQ_BATCH_MAX) {
            last = last->next;
            n++;
        }
        d->queue = last->next;
        if (!d->queue)
            d->queue_tail = &d->queue;
        d->queued -= n;
        last->next = NULL;
        d->busy = true;
        pthread_mutex_unlock(&d->lock);

        sq_run_batch(d, batch);

        pthread_mutex_lock(&d->lock);
        d->busy = false;
        *d->done_tail = batch;
        d->done_tail = &last->next;
        bool post = !d->posted;
        d->posted = true;
        if (!d->queue)
            pthread_cond_broadcast(&d->idle);
        if (post) {
            pthread_mutex_unlock(&d->lock);
            xmppd_loop_post(sq_deliver, d);
            pthread_mutex_lock(&d->lock);
        }
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* Queues op (taking ownership); the loop-thread side of every driver call
 * (sqlstore.h). */
static void sq_submit(void *dd, sqs_op *op)
{
    sq_db *d = dd;
    pthread_mutex_lock(&d->lock);
    *d->queue_tail = op;
    d->queue_tail = &op->next;
    d->queued++;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
}

/* Reports an op that cannot run as ERROR, still later. */
static void sq_fail_later(void *dd, sqs_op *op)
{
    sq_db *d = dd;
    sqs_op_reset(op, XMPPD_STORE_ERROR);
    pthread_mutex_lock(&d->lock);
    *d->done_tail = op;
    d->done_tail = &op->next;
    bool post = !d->posted;
    d->posted = true;
    pthread_mutex_unlock(&d->lock);
    if (post)
        xmppd_loop_post(sq_deliver, d);
}

/* Blocks until nothing is queued or running: every accepted write is then
 * committed. Callbacks still run later on the loop. */
static void sq_flush(void *dd)
{
    sq_db *d = dd;
    pthread_mutex_lock(&d->lock);
    while (d->queue || d->busy)
        pthread_cond_wait(&d->idle, &d->lock);
    pthread_mutex_unlock(&d->lock);
}

static const xmppd_storage_driver sq_driver = {
    SQLSTORE_DRIVER_OPS,
    .name = "sqlite",
    .flush = sq_flush,
};

static const sqs_backend sq_backend = { .submit = sq_submit, .fail_later = sq_fail_later };

/* ---- opening: schema and pragmas (loop thread, before the thread starts) ---- */

static int sq_exec(sq_db *d, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(d->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(d->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int sq_user_version(sq_db *d, int *v_r)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *v_r = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* Brings the schema to SQ_SCHEMA_VERSION, one transaction per step (each
 * re-reads the version under the write lock, so two processes starting at
 * once do not both migrate); refuses a file written by a newer xmppd. */
static int sq_migrate(sq_db *d, char *err, size_t errlen)
{
    char msg[128];
    for (;;) {
        int v;
        if (sq_exec(d, "BEGIN IMMEDIATE", msg, sizeof msg) != 0) {
            snprintf(err, errlen, "%s", msg);
            return -1;
        }
        if (sq_user_version(d, &v) != 0) {
            snprintf(err, errlen, "reading schema version: %s", sqlite3_errmsg(d->db));
            break;
        }
        if (v > SQ_SCHEMA_VERSION) {
            snprintf(err, errlen, "schema version %d is newer than this xmppd supports (%d)",
                     v, SQ_SCHEMA_VERSION);
            break;
        }
        if (v == SQ_SCHEMA_VERSION)
            return sq_exec(d, "COMMIT", err, errlen);
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        if (sq_exec(d, sq_migrations[v], msg, sizeof msg) != 0 ||
            sq_exec(d, bump, msg, sizeof msg) != 0 || sq_exec(d, "COMMIT", msg, sizeof msg) != 0) {
            snprintf(err, errlen, "schema migration to version %d: %s", v + 1, msg);
            break;
        }
        xmppd_log(d->base.m, XMPPD_LOG_INFO, "database schema now at version %d", v + 1);
    }
    if (!sqlite3_get_autocommit(d->db))
        sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* Creates the file readable by its owner only (it holds account keys);
 * SQLite gives its -wal and -shm files the same mode. */
static int sq_create_private(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

static int sq_setup(sq_db *d, const char *path, bool sync_full, long long busy_ms, long long cache_bytes,
                    char *err, size_t errlen)
{
    if (access(path, F_OK) != 0 && sq_create_private(path, err, errlen) != 0)
        return -1;
    if (sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, d->db ? sqlite3_errmsg(d->db) : "out of memory");
        return -1;
    }
    sqlite3_busy_timeout(d->db, (int)busy_ms);
    sqlite3_extended_result_codes(d->db, 1);
    char msg[200], cache[64];
    /* SQLite's default 2 MB cache did not hold a login's offline queue:
     * the SELECT and the DELETE after it read the same pages from the
     * file (pread was a seventh of the delivery's CPU). Negative: KiB. */
    snprintf(cache, sizeof cache, "PRAGMA cache_size=-%lld", cache_bytes / 1024);
    if (sq_exec(d, "PRAGMA journal_mode=WAL", msg, sizeof msg) != 0 || sq_exec(d, cache, msg, sizeof msg) != 0 ||
        sq_exec(d, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", msg, sizeof msg) != 0 ||
        sq_migrate(d, msg, sizeof msg) != 0) {
        snprintf(err, errlen, "%s: %s", path, msg);
        return -1;
    }
    return 0;
}

/* Frees d; the thread must be stopped. */
static void sq_db_free(sq_db *d)
{
    for (int t = 0; t < SQ_TABLES; t++) {
        for (int i = 0; i < ST_COUNT; i++)
            sqlite3_finalize(d->stmt[t][i]);
        for (int i = 0; i < SQS_Q_VARIANTS; i++) {
            sqlite3_finalize(d->query_stmt[t][i]);
            sqlite3_finalize(d->delete_stmt[t][i]);
        }
    }
    if (d->db && sqlite3_close(d->db) != SQLITE_OK)
        xmppd_log(d->base.m, XMPPD_LOG_ERROR, "close: %s", sqlite3_errmsg(d->db));
    while (d->done) {
        sqs_op *next = d->done->next;
        sqs_op_free(d->done);
        d->done = next;
    }
    pthread_cond_destroy(&d->wake);
    pthread_cond_destroy(&d->idle);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

/* Opens (creating or migrating) the database at path and starts the driver
 * thread. NULL with a one-line message in err. m may be NULL. */
static sq_db *sq_open(xmppd_module *m, const char *path, bool sync_full, long long busy_ms,
                      long long cache_bytes, char *err, size_t errlen)
{
    sq_db *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->base = (sqs_driver){ &sq_backend, m };
    d->queue_tail = &d->queue;
    d->done_tail = &d->done;
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->wake, NULL);
    pthread_cond_init(&d->idle, NULL);
    if (sq_setup(d, path, sync_full, busy_ms, cache_bytes, err, errlen) != 0) {
        sq_db_free(d);
        return NULL;
    }
    int rc = pthread_create(&d->thread, NULL, sq_thread_main, d);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the storage thread: %s", strerror(rc));
        sq_db_free(d);
        return NULL;
    }
    d->thread_started = true;
    return d;
}

/* Keeps this module's code mapped after unload: an sq_deliver is still
 * queued on the loop and will run it. */
static void sq_pin_module(void)
{
    Dl_info info;
    if (dladdr((void *)sq_deliver, &info) && info.dli_fname)
        dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

/* Runs what is queued, stops the thread, and frees d, or leaves that to the
 * pending sq_deliver (which then still runs the callbacks on the loop). */
static void sq_close(sq_db *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    d->stopping = true;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
    if (d->thread_started)
        pthread_join(d->thread, NULL);
    pthread_mutex_lock(&d->lock);
    bool pending = d->posted;
    d->orphaned = pending;
    pthread_mutex_unlock(&d->lock);
    if (pending)
        sq_pin_module();
    else
        sq_db_free(d);
}

/* ---- module ---- */

static int sq_load(xmppd_module *m, const void *conf)
{
    const sq_conf *c = conf;
    char err[512];
    bool full = !c->synchronous || strcmp(c->synchronous, "normal") != 0;
    if (!c->path) {
        xmppd_log(m, XMPPD_LOG_ERROR, "no database path");
        return -1;
    }
    sq_db *d = sq_open(m, c->path, full, c->busy_timeout, c->cache_size, err, sizeof err);
    if (!d) {
        xmppd_log(m, XMPPD_LOG_ERROR, "%s", err);
        return -1;
    }
    xmppd_module_set_data(m, d);
    if (xmppd_storage_provide(m, &sq_driver, d) != 0) {
        xmppd_log(m, XMPPD_LOG_ERROR, "a storage driver named \"sqlite\" is already loaded");
        xmppd_module_set_data(m, NULL);
        sq_close(d);
        return -1;
    }
    xmppd_log(m, XMPPD_LOG_INFO, "using %s (synchronous=%s)", c->path, full ? "full" : "normal");
    return 0;
}

static void sq_unload(xmppd_module *m)
{
    sq_close(xmppd_module_data(m));
    xmppd_module_set_data(m, NULL);
}

XMPPD_MODULE(storage_sqlite,
    .version = "1.0",
    .summary = "SQLite storage driver \"sqlite\" (WAL, one file, batched transactions)",
    .specs = (const char *const[]){ NULL }, /* a storage driver: no protocol */
    .flags = XMPPD_MOD_GLOBAL,
    .options = sq_options,
    .conf_size = sizeof(sq_conf),
    .load = sq_load,
    .unload = sq_unload);
