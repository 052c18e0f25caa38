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
 * Ownership: an sq_op owns its copies of every string and its results; the
 * queue owns queued ops, the driver thread the running batch, the done list
 * the finished ones until sq_deliver frees them. */
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

#define SQ_BATCH_MAX 4096 /* ops per transaction */

/* ---- options ---- */

typedef struct sq_conf {
    const char *path;
    const char *synchronous;
    long long busy_timeout; /* ms */
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
};
#define SQ_SCHEMA_VERSION ((int)(sizeof sq_migrations / sizeof sq_migrations[0]))

/* ---- operations ---- */

enum sq_kind {
    SQ_KV_GET, SQ_KV_SET, SQ_KV_GET_ALL, SQ_KV_USERS,
    SQ_AR_APPEND, SQ_AR_QUERY, SQ_AR_DELETE, SQ_AR_COUNT, SQ_PURGE, SQ_AR_REPLACE,
};

/* Which conditions an archive query has: bits of a statement cache index. */
enum {
    SQ_Q_WITH = 1, SQ_Q_START = 2, SQ_Q_END = 4, SQ_Q_AFTER = 8, SQ_Q_BEFORE = 16,
    SQ_Q_REVERSE = 32, SQ_Q_WITH_RES = 64, SQ_Q_IDS = 128, SQ_Q_VARIANTS = 256
};

typedef struct sq_item {
    int64_t id;
    int64_t when_ms;
    char *key;    /* owned: the appender's id, or NULL */
    char *with;   /* owned: the peer as appended (bare/resource joined), may be NULL */
    json_t *value; /* owned */
} sq_item;

typedef struct sq_op sq_op;
struct sq_op {
    sq_op *next;
    enum sq_kind kind;
    /* input: strings point into the same allocation as the op (or are NULL);
     * key is the kv key, or the item id of an append; with is a bare JID
     * and with_res its resource */
    const char *host, *store, *user, *key, *with, *with_res;
    const char *after_s, *before_s; /* ids a query/delete names; after_s: the item replaced */
    char **ids;          /* owned array of owned copies (filter ids) */
    size_t n_ids;
    char *text;          /* value as compact JSON (owned); NULL: delete */
    int64_t when_ms;
    int64_t start_ms, end_ms;
    int64_t after_id, before_id; /* resolved from after_s/before_s */
    char *ids_json;      /* owned: the filter ids resolved, as a JSON array */
    size_t max;
    unsigned qmask;      /* SQ_Q_* of an archive query/delete */
    /* output */
    int status;
    json_t *result;      /* kv_get/get_all/users */
    int64_t new_id;      /* archive_append */
    sq_item *items;      /* archive_query, n_items entries */
    size_t n_items;
    bool complete;
    size_t count;        /* archive_count */
    /* completion */
    union {
        xmppd_store_done_cb done;
        xmppd_kv_get_cb get;
        xmppd_archive_append_cb append;
        xmppd_archive_query_cb query;
        xmppd_archive_count_cb count;
    } cb;
    void *ud;
};

/* cached statements */
enum sq_stmt_id {
    ST_BEGIN, ST_BEGIN_W, ST_COMMIT, ST_ROLLBACK,
    ST_KV_GET, ST_KV_PUT, ST_KV_DEL, ST_KV_ALL, ST_KV_USERS,
    ST_AR_APPEND, ST_AR_COUNT, ST_AR_HAS_ID, ST_AR_BY_KEY, ST_AR_REPLACE, ST_PURGE_KV, ST_PURGE_AR,
    ST_COUNT
};

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
    xmppd_module *m;           /* for logs; NULL in unit tests */
    sqlite3 *db;               /* used by the driver thread only (after open) */
    sqlite3_stmt *stmt[ST_COUNT];
    sqlite3_stmt *query_stmt[SQ_Q_VARIANTS];
    sqlite3_stmt *delete_stmt[SQ_Q_VARIANTS];

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t wake;       /* queue non-empty or stopping */
    pthread_cond_t idle;       /* queue drained and nothing running */
    /* under lock: */
    sq_op *queue, **queue_tail;
    size_t queued;
    bool busy;                 /* the thread is running a batch */
    bool stopping;
    sq_op *done, **done_tail;  /* finished, waiting for sq_deliver */
    bool posted;               /* an sq_deliver is pending on the loop */
    bool orphaned;             /* unloaded: the last sq_deliver frees us */
} sq_db;

static void sq_log_db(sq_db *d, int level, const char *what)
{
    xmppd_log(d->m, level, "%s: %s", what, sqlite3_errmsg(d->db));
}

/* ---- op lifetime ---- */

static char *sq_put_str(char **pos, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *dst = *pos;
    memcpy(dst, s, n);
    *pos += n;
    return dst;
}

/* One allocation for the op and its input strings (any may be NULL).
 * with may be a full JID: it is kept as its bare JID (with) and resource
 * (with_res). after/before: the ids a query or delete names. */
static sq_op *sq_op_new(enum sq_kind kind, const char *host, const char *store, const char *user,
                        const char *key, const char *with, const char *after, const char *before)
{
    const char *strs[] = { host, store, user, key, with, after, before };
    size_t len = sizeof(sq_op);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        len += strs[i] ? strlen(strs[i]) + 2 : 0;
    sq_op *op = calloc(1, len);
    if (!op)
        return NULL;
    char *pos = (char *)(op + 1);
    op->kind = kind;
    op->host = sq_put_str(&pos, host);
    op->store = sq_put_str(&pos, store);
    op->user = sq_put_str(&pos, user);
    op->key = sq_put_str(&pos, key);
    char *w = sq_put_str(&pos, with);
    char *slash = w ? strchr(w, '/') : NULL;
    if (slash) { /* "bare/res" -> "bare\0res": one more byte was reserved */
        *slash = '\0';
        op->with_res = slash + 1;
    }
    op->with = w;
    op->after_s = sq_put_str(&pos, after);
    op->before_s = sq_put_str(&pos, before);
    return op;
}

static void sq_op_clear_results(sq_op *op)
{
    json_decref(op->result);
    op->result = NULL;
    for (size_t i = 0; i < op->n_items; i++) {
        free(op->items[i].key);
        free(op->items[i].with);
        json_decref(op->items[i].value);
    }
    free(op->items);
    op->items = NULL;
    op->n_items = 0;
    op->complete = false;
    op->count = 0;
    op->new_id = 0;
}

static void sq_op_free(sq_op *op)
{
    sq_op_clear_results(op);
    for (size_t i = 0; i < op->n_ids; i++)
        free(op->ids[i]);
    free(op->ids);
    free(op->ids_json);
    free(op->text);
    free(op);
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

/* A cached statement, reset, bound with the op's host/store/user/key as
 * ?1..?4 where the statement has them. NULL on error. */
static sqlite3_stmt *sq_stmt(sq_db *d, enum sq_stmt_id id, const sq_op *op)
{
    sqlite3_stmt *st = sq_prepare(d, &d->stmt[id], sq_stmt_sql[id]);
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
             mask & SQ_Q_WITH ? " AND with_jid=?4" : "",
             mask & SQ_Q_WITH_RES ? " AND with_res=?11" : "",
             mask & SQ_Q_START ? " AND when_ms>=?5" : "",
             mask & SQ_Q_END ? " AND when_ms<=?6" : "",
             mask & SQ_Q_AFTER ? " AND id>?7" : "",
             mask & SQ_Q_BEFORE ? " AND id<?8" : "",
             mask & SQ_Q_IDS ? " AND id IN (SELECT value FROM json_each(?10))" : "",
             mask & SQ_Q_REVERSE ? "DESC" : "ASC");
}

/* The cached query (select) or delete statement for op's conditions, bound,
 * with LIMIT limit (-1: none). */
static sqlite3_stmt *sq_query_stmt(sq_db *d, const sq_op *op, bool del, long long limit)
{
    char tail[400], sql[600] = "";
    sqlite3_stmt **slot = del ? &d->delete_stmt[op->qmask] : &d->query_stmt[op->qmask];
    if (!*slot) {
        sq_query_tail(tail, sizeof tail, op->qmask);
        if (del)
            snprintf(sql, sizeof sql, "DELETE FROM archive WHERE id IN (SELECT id FROM archive WHERE %s)", tail);
        else
            snprintf(sql, sizeof sql, "SELECT id, when_ms, with_jid, value, key, with_res FROM archive"
                     " WHERE %s", tail);
    }
    sqlite3_stmt *st = sq_prepare(d, slot, sql);
    if (!st)
        return NULL;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    int rc = sqlite3_bind_text(st, 1, op->host, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 2, op->store, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, 3, op->user, -1, SQLITE_STATIC);
    if (op->qmask & SQ_Q_WITH)
        rc |= sqlite3_bind_text(st, 4, op->with, -1, SQLITE_STATIC);
    if (op->qmask & SQ_Q_START)
        rc |= sqlite3_bind_int64(st, 5, op->start_ms);
    if (op->qmask & SQ_Q_END)
        rc |= sqlite3_bind_int64(st, 6, op->end_ms);
    if (op->qmask & SQ_Q_AFTER)
        rc |= sqlite3_bind_int64(st, 7, op->after_id);
    if (op->qmask & SQ_Q_BEFORE)
        rc |= sqlite3_bind_int64(st, 8, op->before_id);
    if (op->qmask & SQ_Q_IDS)
        rc |= sqlite3_bind_text(st, 10, op->ids_json, -1, SQLITE_STATIC);
    if (op->qmask & SQ_Q_WITH_RES)
        rc |= sqlite3_bind_text(st, 11, op->with_res, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(st, 9, limit);
    return rc == SQLITE_OK ? st : NULL;
}

static json_t *sq_column_json(sqlite3_stmt *st, int col)
{
    const char *text = (const char *)sqlite3_column_text(st, col);
    return text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
}

/* ---- running one op on the driver thread: 0, or -1 (status ERROR) ---- */

static int sq_run_kv_get(sq_db *d, sq_op *op)
{
    sqlite3_stmt *st = sq_stmt(d, ST_KV_GET, op);
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        op->result = sq_column_json(st, 0);
        op->status = op->result ? XMPPD_STORE_OK : XMPPD_STORE_ERROR;
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

static int sq_run_kv_set(sq_db *d, sq_op *op)
{
    sqlite3_stmt *st = sq_stmt(d, op->text ? ST_KV_PUT : ST_KV_DEL, op);
    if (!st)
        return -1;
    if (op->text && sqlite3_bind_text(st, 5, op->text, -1, SQLITE_STATIC) != SQLITE_OK)
        return -1;
    return sq_exec_stmt(d, st);
}

static int sq_run_kv_get_all(sq_db *d, sq_op *op)
{
    sqlite3_stmt *st = sq_stmt(d, ST_KV_ALL, op);
    if (!st || !(op->result = json_object()))
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *v = sq_column_json(st, 1);
        const char *key = (const char *)sqlite3_column_text(st, 0);
        if (!v || !key || json_object_set_new(op->result, key, v) != 0) {
            json_decref(v);
            rc = SQLITE_ERROR;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sq_run_kv_users(sq_db *d, sq_op *op)
{
    sqlite3_stmt *st = sq_stmt(d, ST_KV_USERS, op);
    if (!st || !(op->result = json_array()))
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *u = (const char *)sqlite3_column_text(st, 0);
        if (!u || json_array_append_new(op->result, json_string(u)) != 0) {
            rc = SQLITE_ERROR;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sq_run_append(sq_db *d, sq_op *op)
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
    op->new_id = sqlite3_last_insert_rowid(d->db);
    return 0;
}

/* Archive ids the driver assigns are positive decimal integers. */
static bool sq_parse_id(const char *s, int64_t *id_r)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0)
        return false;
    *id_r = v;
    return true;
}

/* The row of the item whose id is `id` in op's archive: an appender's id,
 * else a driver-assigned one. 1 found (*row_r), 0 none, -1 error. */
static int sq_resolve(sq_db *d, const sq_op *op, const char *id, int64_t *row_r)
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
    if (!sq_parse_id(id, &n))
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
static int sq_resolve_ids(sq_db *d, sq_op *op)
{
    int rc = 1;
    if (op->after_s && (rc = sq_resolve(d, op, op->after_s, &op->after_id)) != 1)
        return rc < 0 ? -1 : 1;
    if (op->before_s && (rc = sq_resolve(d, op, op->before_s, &op->before_id)) != 1)
        return rc < 0 ? -1 : 1;
    if (!(op->qmask & SQ_Q_IDS))
        return 0;
    free(op->ids_json);
    op->ids_json = NULL;
    json_t *rows = json_array();
    for (size_t i = 0; rows && i < op->n_ids; i++) {
        int64_t row;
        if ((rc = sq_resolve(d, op, op->ids[i], &row)) != 1 ||
            json_array_append_new(rows, json_integer(row)) != 0) {
            json_decref(rows);
            return rc == 0 ? 1 : -1;
        }
    }
    op->ids_json = rows ? json_dumps(rows, JSON_COMPACT) : NULL;
    json_decref(rows);
    return op->ids_json ? 0 : -1;
}

static int sq_run_query(sq_db *d, sq_op *op)
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
    size_t cap = 0;
    int rc;
    op->complete = true;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (op->max && op->n_items == op->max) {
            op->complete = false;
            rc = SQLITE_DONE;
            break;
        }
        if (op->n_items == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            sq_item *ni = realloc(op->items, ncap * sizeof *ni);
            if (!ni) {
                rc = SQLITE_NOMEM;
                break;
            }
            op->items = ni;
            cap = ncap;
        }
        sq_item *it = &op->items[op->n_items];
        const char *with = (const char *)sqlite3_column_text(st, 2);
        const char *key = (const char *)sqlite3_column_text(st, 4);
        const char *res = (const char *)sqlite3_column_text(st, 5);
        it->id = sqlite3_column_int64(st, 0);
        it->when_ms = sqlite3_column_int64(st, 1);
        it->key = key ? strdup(key) : NULL;
        it->with = NULL;
        if (with && res && asprintf(&it->with, "%s/%s", with, res) < 0)
            it->with = NULL;
        else if (with && !res)
            it->with = strdup(with);
        it->value = sq_column_json(st, 3);
        op->n_items++;
        if ((with && !it->with) || (key && !it->key) || !it->value) {
            rc = SQLITE_ERROR;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sq_run_delete(sq_db *d, sq_op *op)
{
    int missing = sq_resolve_ids(d, op);
    if (missing != 0) /* nothing can match an id that names no item */
        return missing < 0 ? -1 : 0;
    return sq_exec_stmt(d, sq_query_stmt(d, op, true, op->max ? (long long)op->max : -1));
}

static int sq_run_count(sq_db *d, sq_op *op)
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
static int sq_run_replace(sq_db *d, sq_op *op)
{
    int rc = sq_resolve(d, op, op->after_s, &op->after_id);
    if (rc <= 0) {
        op->status = XMPPD_STORE_NOT_FOUND;
        return rc;
    }
    sqlite3_stmt *st = sq_stmt(d, ST_AR_REPLACE, op);
    if (!st || sqlite3_bind_int64(st, 4, op->after_id) != SQLITE_OK ||
        sqlite3_bind_text(st, 5, op->text, -1, SQLITE_STATIC) != SQLITE_OK || sq_exec_stmt(d, st) != 0)
        return -1;
    if (sqlite3_changes(d->db) == 0)
        op->status = XMPPD_STORE_NOT_FOUND;
    return 0;
}

static int sq_run_purge(sq_db *d, sq_op *op)
{
    if (sq_exec_stmt(d, sq_stmt(d, ST_PURGE_KV, op)) != 0)
        return -1;
    return sq_exec_stmt(d, sq_stmt(d, ST_PURGE_AR, op));
}

static int sq_run_op(sq_db *d, sq_op *op)
{
    sq_op_clear_results(op);
    op->status = XMPPD_STORE_OK;
    int rc = -1;
    switch (op->kind) {
    case SQ_KV_GET: rc = sq_run_kv_get(d, op); break;
    case SQ_KV_SET: rc = sq_run_kv_set(d, op); break;
    case SQ_KV_GET_ALL: rc = sq_run_kv_get_all(d, op); break;
    case SQ_KV_USERS: rc = sq_run_kv_users(d, op); break;
    case SQ_AR_APPEND: rc = sq_run_append(d, op); break;
    case SQ_AR_QUERY: rc = sq_run_query(d, op); break;
    case SQ_AR_DELETE: rc = sq_run_delete(d, op); break;
    case SQ_AR_COUNT: rc = sq_run_count(d, op); break;
    case SQ_PURGE: rc = sq_run_purge(d, op); break;
    case SQ_AR_REPLACE: rc = sq_run_replace(d, op); break;
    }
    return rc;
}

static bool sq_op_writes(const sq_op *op)
{
    return op->kind == SQ_KV_SET || op->kind == SQ_AR_APPEND || op->kind == SQ_AR_DELETE ||
           op->kind == SQ_PURGE || op->kind == SQ_AR_REPLACE;
}

/* Runs ops first..end (exclusive) in one transaction. 0 when committed. */
static int sq_run_txn(sq_db *d, sq_op *first, sq_op *end)
{
    bool writes = false;
    for (sq_op *op = first; op != end; op = op->next)
        writes = writes || sq_op_writes(op);
    if (sq_exec_stmt(d, sq_stmt(d, writes ? ST_BEGIN_W : ST_BEGIN, NULL)) != 0)
        return -1;
    for (sq_op *op = first; op != end; op = op->next) {
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

static void sq_fail_op(sq_op *op)
{
    sq_op_clear_results(op);
    op->status = XMPPD_STORE_ERROR;
}

/* Runs a batch; on failure retries each op alone so that only the bad ones
 * report ERROR. */
static void sq_run_batch(sq_db *d, sq_op *batch)
{
    if (!batch->next) {
        if (sq_run_txn(d, batch, NULL) != 0)
            sq_fail_op(batch);
        return;
    }
    if (sq_run_txn(d, batch, NULL) == 0)
        return;
    xmppd_log(d->m, XMPPD_LOG_WARN, "batch failed, retrying its operations one by one");
    for (sq_op *op = batch; op; op = op->next)
        if (sq_run_txn(d, op, op->next) != 0)
            sq_fail_op(op);
}

/* ---- completion on the loop thread ---- */

static void sq_complete(sq_op *op)
{
    char idbuf[24];
    switch (op->kind) {
    case SQ_KV_GET:
    case SQ_KV_GET_ALL:
    case SQ_KV_USERS:
        op->cb.get(op->status, op->status == XMPPD_STORE_OK ? op->result : NULL, op->ud);
        break;
    case SQ_KV_SET:
    case SQ_AR_DELETE:
    case SQ_AR_REPLACE:
    case SQ_PURGE:
        if (op->cb.done)
            op->cb.done(op->status, op->ud);
        break;
    case SQ_AR_APPEND:
        snprintf(idbuf, sizeof idbuf, "%" PRId64, op->new_id);
        if (op->cb.append)
            op->cb.append(op->status, op->status != XMPPD_STORE_OK ? NULL : op->key ? op->key : idbuf,
                          op->ud);
        break;
    case SQ_AR_COUNT:
        op->cb.count(op->status, op->count, op->ud);
        break;
    case SQ_AR_QUERY: {
        /* ids as text in one buffer; items borrowed for the call */
        xmppd_archive_item *items = op->n_items ? calloc(op->n_items, sizeof *items) : NULL;
        char (*ids)[24] = op->n_items ? calloc(op->n_items, sizeof *ids) : NULL;
        if (op->n_items && (!items || !ids)) {
            free(items);
            free(ids);
            op->cb.query(XMPPD_STORE_ERROR, NULL, 0, true, op->ud);
            break;
        }
        for (size_t i = 0; i < op->n_items; i++) {
            snprintf(ids[i], sizeof ids[i], "%" PRId64, op->items[i].id);
            items[i] = (xmppd_archive_item){ op->items[i].key ? op->items[i].key : ids[i],
                                             op->items[i].when_ms, op->items[i].with,
                                             op->items[i].value };
        }
        if (op->status == XMPPD_STORE_OK)
            op->cb.query(op->status, items, op->n_items, op->complete, op->ud);
        else
            op->cb.query(op->status, NULL, 0, true, op->ud);
        free(items);
        free(ids);
        break;
    }
    }
}

static void sq_db_free(sq_db *d);

/* Posted by the driver thread: runs the callbacks of every finished op. */
static void sq_deliver(void *ud)
{
    sq_db *d = ud;
    pthread_mutex_lock(&d->lock);
    sq_op *list = d->done;
    d->done = NULL;
    d->done_tail = &d->done;
    d->posted = false;
    bool orphaned = d->orphaned;
    pthread_mutex_unlock(&d->lock);
    while (list) {
        sq_op *next = list->next;
        sq_complete(list);
        sq_op_free(list);
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
        sq_op *batch = d->queue, *last = batch;
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

/* Queues op (taking ownership); the loop-thread side of every driver call. */
static void sq_submit(sq_db *d, sq_op *op)
{
    pthread_mutex_lock(&d->lock);
    *d->queue_tail = op;
    d->queue_tail = &op->next;
    d->queued++;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
}

/* Reports an op that could not be queued (OOM) as ERROR, still later. */
static void sq_fail_later(sq_db *d, sq_op *op)
{
    sq_fail_op(op);
    pthread_mutex_lock(&d->lock);
    *d->done_tail = op;
    d->done_tail = &op->next;
    bool post = !d->posted;
    d->posted = true;
    pthread_mutex_unlock(&d->lock);
    if (post)
        xmppd_loop_post(sq_deliver, d);
}

/* ---- driver entry points (loop thread) ---- */

/* Without memory for the op there is no way to call back later: log it. The
 * caller's callback is then lost, which only happens on OOM. */
static bool sq_check_alloc(sq_db *d, sq_op *op)
{
    if (!op)
        xmppd_log(d->m, XMPPD_LOG_ERROR, "out of memory: storage operation dropped");
    return op != NULL;
}

static void sq_kv_get(void *dd, const char *host, const char *store, const char *user,
                      const char *key, xmppd_kv_get_cb cb, void *ud)
{
    sq_op *op = sq_op_new(SQ_KV_GET, host, store, user, key, NULL, NULL, NULL);
    if (!sq_check_alloc(dd, op))
        return;
    op->cb.get = cb;
    op->ud = ud;
    sq_submit(dd, op);
}

static void sq_kv_set(void *dd, const char *host, const char *store, const char *user,
                      const char *key, json_t *value, xmppd_store_done_cb cb, void *ud)
{
    sq_op *op = sq_op_new(SQ_KV_SET, host, store, user, key, NULL, NULL, NULL);
    if (!sq_check_alloc(dd, op))
        return;
    op->cb.done = cb;
    op->ud = ud;
    if (value && !(op->text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY))) {
        sq_fail_later(dd, op);
        return;
    }
    sq_submit(dd, op);
}

static void sq_kv_get_all(void *dd, const char *host, const char *store, const char *user,
                          xmppd_kv_get_cb cb, void *ud)
{
    sq_op *op = sq_op_new(SQ_KV_GET_ALL, host, store, user, NULL, NULL, NULL, NULL);
    if (!sq_check_alloc(dd, op))
        return;
    op->cb.get = cb;
    op->ud = ud;
    sq_submit(dd, op);
}

static void sq_kv_users(void *dd, const char *host, const char *store, xmppd_kv_get_cb cb, void *ud)
{
    sq_op *op = sq_op_new(SQ_KV_USERS, host, store, NULL, NULL, NULL, NULL, NULL);
    if (!sq_check_alloc(dd, op))
        return;
    op->cb.get = cb;
    op->ud = ud;
    sq_submit(dd, op);
}

static void sq_archive_append_id(void *dd, const char *host, const char *store, const char *user,
                                 const char *id, const char *with, int64_t when_ms, json_t *value,
                                 xmppd_archive_append_cb cb, void *ud)
{
    sq_op *op = sq_op_new(SQ_AR_APPEND, host, store, user, id, with, NULL, NULL);
    if (!sq_check_alloc(dd, op))
        return;
    op->cb.append = cb;
    op->ud = ud;
    op->when_ms = when_ms;
    if (!value || !(op->text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY))) {
        sq_fail_later(dd, op);
        return;
    }
    sq_submit(dd, op);
}

static void sq_archive_append(void *dd, const char *host, const char *store, const char *user,
                              const char *with, int64_t when_ms, json_t *value,
                              xmppd_archive_append_cb cb, void *ud)
{
    sq_archive_append_id(dd, host, store, user, NULL, with, when_ms, value, cb, ud);
}

/* Copies the filter's ids into op. false on OOM or too many. */
static bool sq_take_ids(sq_op *op, const xmppd_archive_filter *q)
{
    if (q->n_ids > XMPPD_ARCHIVE_MAX_IDS || !(op->ids = calloc(q->n_ids ? q->n_ids : 1, sizeof *op->ids)))
        return false;
    for (; op->n_ids < q->n_ids; op->n_ids++)
        if (!q->ids[op->n_ids] || !(op->ids[op->n_ids] = strdup(q->ids[op->n_ids])))
            return false;
    op->qmask |= SQ_Q_IDS;
    return true;
}

/* Builds a query/delete op from q (NULL: everything of user); NULL on OOM,
 * *bad_r when q cannot be run (too many ids). */
static sq_op *sq_query_op(enum sq_kind kind, const char *host, const char *store, const char *user,
                          const xmppd_archive_filter *q, bool *bad_r)
{
    sq_op *op = sq_op_new(kind, host, store, user, NULL, q ? q->with : NULL, q ? q->after_id : NULL,
                          q ? q->before_id : NULL);
    *bad_r = false;
    if (!op || !q)
        return op;
    if (q->ids && !sq_take_ids(op, q))
        *bad_r = true;
    if (q->with)
        op->qmask |= SQ_Q_WITH | (op->with_res ? SQ_Q_WITH_RES : 0);
    if (q->start_ms) {
        op->qmask |= SQ_Q_START;
        op->start_ms = q->start_ms;
    }
    if (q->end_ms) {
        op->qmask |= SQ_Q_END;
        op->end_ms = q->end_ms;
    }
    if (q->after_id)
        op->qmask |= SQ_Q_AFTER;
    if (q->before_id)
        op->qmask |= SQ_Q_BEFORE;
    if (q->reverse)
        op->qmask |= SQ_Q_REVERSE;
    op->max = q->max;
    return op;
}

static void sq_archive_query(void *dd, const char *host, const char *store, const char *user,
                             const xmppd_archive_filter *q, xmppd_archive_query_cb cb, void *ud)
{
    bool bad;
    sq_op *op = sq_query_op(SQ_AR_QUERY, host, store, user, q, &bad);
    if (!sq_check_alloc(dd, op))
        return;
    op->cb.query = cb;
    op->ud = ud;
    if (bad)
        sq_fail_later(dd, op);
    else
        sq_submit(dd, op);
}

static void sq_archive_delete(void *dd, const char *host, const char *store, const char *user,
                              const xmppd_archive_filter *q, xmppd_store_done_cb cb, void *ud)
{
    bool bad;
    sq_op *op = sq_query_op(SQ_AR_DELETE, host, store, user, q, &bad);
    if (!sq_check_alloc(dd, op))
        return;
    op->cb.done = cb;
    op->ud = ud;
    if (bad)
        sq_fail_later(dd, op);
    else
        sq_submit(dd, op);
}

static void sq_archive_count(void *dd, const char *host, const char *store, const char *user,
                             xmppd_archive_count_cb cb, void *ud)
{
    sq_op *op = sq_op_new(SQ_AR_COUNT, host, store, user, NULL, NULL, NULL, NULL);
    if (!sq_check_alloc(dd, op))
        return;
    op->cb.count = cb;
    op->ud = ud;
    sq_submit(dd, op);
}

/* The item id's value becomes value; NOT_FOUND when the archive has no such
 * item (a malformed id included). */
static void sq_archive_replace(void *dd, const char *host, const char *store, const char *user,
                               const char *id, json_t *value, xmppd_store_done_cb cb, void *ud)
{
    sq_op *op = sq_op_new(SQ_AR_REPLACE, host, store, user, NULL, NULL, id, NULL);
    if (!sq_check_alloc(dd, op))
        return;
    op->cb.done = cb;
    op->ud = ud;
    if (!(op->text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY))) {
        sq_fail_later(dd, op);
        return;
    }
    sq_submit(dd, op);
}

static void sq_purge_user(void *dd, const char *host, const char *user, xmppd_store_done_cb cb, void *ud)
{
    sq_op *op = sq_op_new(SQ_PURGE, host, NULL, user, NULL, NULL, NULL, NULL);
    if (!sq_check_alloc(dd, op))
        return;
    op->cb.done = cb;
    op->ud = ud;
    sq_submit(dd, op);
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
    .version = XMPPD_STORAGE_DRIVER_VERSION,
    .size = sizeof(xmppd_storage_driver),
    .name = "sqlite",
    .kv_get = sq_kv_get,
    .kv_set = sq_kv_set,
    .kv_get_all = sq_kv_get_all,
    .kv_users = sq_kv_users,
    .archive_append = sq_archive_append,
    .archive_query = sq_archive_query,
    .archive_delete = sq_archive_delete,
    .archive_replace = sq_archive_replace,
    .archive_count = sq_archive_count,
    .purge_user = sq_purge_user,
    .flush = sq_flush,
    .archive_append_id = sq_archive_append_id,
};

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
        xmppd_log(d->m, XMPPD_LOG_INFO, "database schema now at version %d", v + 1);
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

static int sq_setup(sq_db *d, const char *path, bool sync_full, long long busy_ms,
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
    char msg[200];
    if (sq_exec(d, "PRAGMA journal_mode=WAL", msg, sizeof msg) != 0 ||
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
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(d->stmt[i]);
    for (int i = 0; i < SQ_Q_VARIANTS; i++) {
        sqlite3_finalize(d->query_stmt[i]);
        sqlite3_finalize(d->delete_stmt[i]);
    }
    if (d->db && sqlite3_close(d->db) != SQLITE_OK)
        xmppd_log(d->m, XMPPD_LOG_ERROR, "close: %s", sqlite3_errmsg(d->db));
    while (d->done) {
        sq_op *next = d->done->next;
        sq_op_free(d->done);
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
                      char *err, size_t errlen)
{
    sq_db *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->m = m;
    d->queue_tail = &d->queue;
    d->done_tail = &d->done;
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->wake, NULL);
    pthread_cond_init(&d->idle, NULL);
    if (sq_setup(d, path, sync_full, busy_ms, err, errlen) != 0) {
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
    sq_db *d = sq_open(m, c->path, full, c->busy_timeout, err, sizeof err);
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
