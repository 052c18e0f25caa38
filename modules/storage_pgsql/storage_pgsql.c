/* storage_pgsql: the PostgreSQL storage driver ("pgsql").
 *
 * Threading: none of its own. Every connection of the pool is driven by the
 * event loop through libpq's asynchronous API (PQconnectStartParams /
 * PQconnectPoll, PQsendQueryPrepared, PQconsumeInput, PQisBusy, PQgetResult)
 * and xmppd_io watches on the connection sockets; the loop never waits for
 * the database. The only blocking work is at load (one connection that
 * applies schema migrations) and at unload (finishing what is queued).
 *
 * Ordering: an operation goes to the connection chosen by a hash of its
 * (host, user), and each connection runs its queue in order, one statement
 * at a time, so the operations on one user's data run in the order they were
 * made, like storage_sqlite's. Every statement runs in autocommit: the
 * callback of a write runs after PostgreSQL reported its commit.
 *
 * Failure: a connection that breaks fails its running operation with
 * XMPPD_STORE_ERROR and reconnects at once; a connection attempt that fails
 * leaves the connection down, retried with exponential back-off, and while
 * it is down its operations fail at once (never silently dropped) rather
 * than wait. Operations waiting longer than query_timeout fail; a statement
 * running longer than that drops its connection.
 *
 * Statements are prepared lazily per connection (PQsendPrepare on first
 * use), named with the schema version.
 *
 * Ownership: a pg_op owns its copies of the input strings, its PGresult and
 * what was parsed from it. It is owned by a connection queue, then by the
 * connection while it runs, then by the done list until pg_deliver has
 * called its callback and freed it. */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xmppd/xmppd.h"

#define PG_OID_TEXT 25
#define PG_OID_INT8 20
#define PG_MAX_PARAMS 12
#define PG_LOCK_KEY "7889426"          /* advisory lock held by a migration */
#define PG_BACKOFF_FIRST_MS 250
#define PG_TICK_MS 250
#define PG_DRAIN_MS 10000              /* unload: longest wait for queued work */

/* ---- options ---- */

typedef struct pg_conf {
    const char *connect;
    long long pool_size;
    long long connect_timeout;   /* ms */
    long long query_timeout;     /* ms */
    long long reconnect_max;     /* ms */
} pg_conf;

static const xmppd_option pg_options[] = {
    { "connect", XMPPD_OPT_STRING, XMPPD_OFF(pg_conf, connect), NULL, 0, 0, NULL,
      XMPPD_OPT_REQUIRED | XMPPD_OPT_SECRET,
      "libpq connection string or URI, e.g. \"host=/run/postgresql dbname=xmppd\"" },
    { "pool_size", XMPPD_OPT_INT, XMPPD_OFF(pg_conf, pool_size), "4", 1, 64, NULL, 0,
      "connections kept open; each runs one statement at a time" },
    { "connect_timeout", XMPPD_OPT_DURATION, XMPPD_OFF(pg_conf, connect_timeout), "10s", 100, 600000,
      NULL, 0, "give up a connection attempt after this long" },
    { "query_timeout", XMPPD_OPT_DURATION, XMPPD_OFF(pg_conf, query_timeout), "10s", 100, 600000,
      NULL, 0, "fail an operation that waited or ran this long (a running statement drops its connection)" },
    { "reconnect_max", XMPPD_OPT_DURATION, XMPPD_OFF(pg_conf, reconnect_max), "10s", 100, 600000,
      NULL, 0, "longest pause between attempts to reach a database that is down (back-off from 250ms)" },
    { NULL }
};

/* ---- schema ---- */

/* migration i brings xmppd_schema.version from i to i + 1, in one
 * transaction. Append only: never edit a released step. */
static const char *const pg_migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE xmppd_kv ("
    " host text NOT NULL, store text NOT NULL, username text NOT NULL, key text NOT NULL,"
    " value jsonb NOT NULL,"
    " PRIMARY KEY (host, store, username, key));"
    "CREATE INDEX xmppd_kv_by_user ON xmppd_kv (host, username);"
    "CREATE TABLE xmppd_archive ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " host text NOT NULL, store text NOT NULL, username text NOT NULL,"
    " with_jid text, when_ms bigint NOT NULL, value jsonb NOT NULL);"
    "CREATE INDEX xmppd_archive_by_id ON xmppd_archive (host, store, username, id);"
    "CREATE INDEX xmppd_archive_by_when ON xmppd_archive (host, store, username, when_ms);"
    "CREATE INDEX xmppd_archive_by_user ON xmppd_archive (host, username);",
    /* 1 -> 2: ids chosen by the appender (MAM stanza-ids), the peer's
     * resource apart from its bare JID, and the indexes that keep id
     * lookups and peer filters to an index range on big archives */
    "ALTER TABLE xmppd_archive ADD COLUMN key text, ADD COLUMN with_res text;"
    "UPDATE xmppd_archive SET with_res = substr(with_jid, strpos(with_jid, '/') + 1),"
    " with_jid = substr(with_jid, 1, strpos(with_jid, '/') - 1) WHERE strpos(with_jid, '/') > 0;"
    "CREATE UNIQUE INDEX xmppd_archive_by_key ON xmppd_archive (host, store, username, key);"
    "CREATE INDEX xmppd_archive_by_with ON xmppd_archive (host, store, username, with_jid, id);",
};
#define PG_SCHEMA_VERSION ((int)(sizeof pg_migrations / sizeof pg_migrations[0]))

/* ---- statements ---- */

enum pg_stmt_id {
    ST_KV_GET, ST_KV_PUT, ST_KV_DEL, ST_KV_ALL, ST_KV_USERS,
    ST_AR_APPEND, ST_AR_COUNT, ST_AR_RESOLVE, ST_AR_REPLACE, ST_PURGE,
    ST_FIXED
};

/* Archive query conditions: bits of a variant index. */
enum {
    PG_Q_WITH = 1, PG_Q_START = 2, PG_Q_END = 4, PG_Q_AFTER = 8, PG_Q_BEFORE = 16,
    PG_Q_REVERSE = 32, PG_Q_WITH_RES = 64, PG_Q_IDS = 128, PG_Q_VARIANTS = 256
};
/* ids: fixed ones, then query variants, then delete variants */
#define ST_QUERY(mask) (ST_FIXED + (int)(mask))
#define ST_DELETE(mask) (ST_FIXED + PG_Q_VARIANTS + (int)(mask))
#define ST_COUNT (ST_FIXED + 2 * PG_Q_VARIANTS)

/* Parameters, the same for every statement (unused ones are NULL):
 * $1 host, $2 store, $3 username, $4 key or with_jid, $5 value / start_ms /
 * when_ms, $6 end_ms / value, $7 after row id, $8 before row id, $9 limit,
 * $10 the appender's item id, or the ids to resolve (text[]), $11 with_res,
 * $12 the ids to resolve as numbers, or the rows of an ids filter (bigint[]).
 * An item's id is its key (chosen by the appender) or else its row id. */
static const char *const pg_fixed_sql[ST_FIXED] = {
    [ST_KV_GET] = "SELECT value FROM xmppd_kv WHERE host=$1 AND store=$2 AND username=$3 AND key=$4",
    [ST_KV_PUT] = "INSERT INTO xmppd_kv (host, store, username, key, value) VALUES ($1, $2, $3, $4, $5::jsonb)"
                  " ON CONFLICT (host, store, username, key) DO UPDATE SET value = EXCLUDED.value",
    [ST_KV_DEL] = "DELETE FROM xmppd_kv WHERE host=$1 AND store=$2 AND username=$3 AND key=$4",
    [ST_KV_ALL] = "SELECT key, value FROM xmppd_kv WHERE host=$1 AND store=$2 AND username=$3",
    [ST_KV_USERS] = "SELECT DISTINCT username FROM xmppd_kv WHERE host=$1 AND store=$2 ORDER BY username",
    [ST_AR_APPEND] = "INSERT INTO xmppd_archive (host, store, username, with_jid, when_ms, value, key,"
                     " with_res) VALUES ($1, $2, $3, $4, $5::bigint, $6::jsonb, $10, $11)"
                     " RETURNING COALESCE(key, id::text)",
    [ST_AR_COUNT] = "SELECT count(*) FROM xmppd_archive WHERE host=$1 AND store=$2 AND username=$3",
    /* per id named: the row whose key it is, the row whose number it is (a
     * row without key), in the order named; each an index lookup */
    [ST_AR_RESOLVE] = "SELECT (SELECT a.id FROM xmppd_archive a WHERE a.host=$1 AND a.store=$2"
                      " AND a.username=$3 AND a.key=k.t),"
                      " (SELECT a.id FROM xmppd_archive a WHERE a.id=k.n AND a.key IS NULL"
                      " AND a.host=$1 AND a.store=$2 AND a.username=$3)"
                      " FROM unnest($10::text[], $12::bigint[]) WITH ORDINALITY AS k(t, n, i)"
                      " ORDER BY k.i",
    /* the item's row as ST_AR_RESOLVE finds it: by key, else by number */
    [ST_AR_REPLACE] = "UPDATE xmppd_archive SET value=$6::jsonb WHERE id=COALESCE("
                      "(SELECT a.id FROM xmppd_archive a WHERE a.host=$1 AND a.store=$2"
                      " AND a.username=$3 AND a.key=$10),"
                      " (SELECT a.id FROM xmppd_archive a WHERE a.id=$7 AND a.key IS NULL"
                      " AND a.host=$1 AND a.store=$2 AND a.username=$3)) RETURNING id",
    [ST_PURGE] = "WITH k AS (DELETE FROM xmppd_kv WHERE host=$1 AND username=$3)"
                 " DELETE FROM xmppd_archive WHERE host=$1 AND username=$3",
};

/* $5 and $6 are text, cast in the SQL to what each statement needs. */
static const unsigned int pg_param_types[PG_MAX_PARAMS] = {
    PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT,
    PG_OID_INT8, PG_OID_INT8, PG_OID_INT8, PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT
};

/* The SQL text of statement id into buf. */
static const char *pg_stmt_sql(int id, char *buf, size_t len)
{
    if (id < ST_FIXED)
        return pg_fixed_sql[id];
    bool del = id >= ST_FIXED + PG_Q_VARIANTS;
    unsigned mask = (unsigned)(id - ST_FIXED - (del ? PG_Q_VARIANTS : 0));
    char where[400];
    snprintf(where, sizeof where,
             "host=$1 AND store=$2 AND username=$3%s%s%s%s%s%s%s ORDER BY id %s LIMIT $9",
             mask & PG_Q_WITH ? " AND with_jid=$4" : "",
             mask & PG_Q_WITH_RES ? " AND with_res=$11" : "",
             mask & PG_Q_START ? " AND when_ms>=$5::bigint" : "",
             mask & PG_Q_END ? " AND when_ms<=$6::bigint" : "",
             mask & PG_Q_AFTER ? " AND id>$7" : "",
             mask & PG_Q_BEFORE ? " AND id<$8" : "",
             mask & PG_Q_IDS ? " AND id = ANY($12::bigint[])" : "",
             mask & PG_Q_REVERSE ? "DESC" : "ASC");
    if (del)
        snprintf(buf, len, "DELETE FROM xmppd_archive WHERE id IN (SELECT id FROM xmppd_archive WHERE %s)", where);
    else
        snprintf(buf, len, "SELECT COALESCE(key, id::text), when_ms, CASE WHEN with_res IS NULL"
                 " THEN with_jid ELSE with_jid || '/' || with_res END, value FROM xmppd_archive"
                 " WHERE %s", where);
    return buf;
}

static void pg_stmt_name(int id, char *buf, size_t len)
{
    snprintf(buf, len, "xmppd%d_%d", PG_SCHEMA_VERSION, id);
}

/* ---- operations ---- */

enum pg_kind {
    PG_KV_GET, PG_KV_SET, PG_KV_GET_ALL, PG_KV_USERS,
    PG_AR_APPEND, PG_AR_QUERY, PG_AR_DELETE, PG_AR_COUNT, PG_PURGE, PG_AR_REPLACE,
};

typedef struct pg_op pg_op;
struct pg_op {
    pg_op *next;
    enum pg_kind kind;
    /* in the op's allocation, or NULL: key is the kv key or the item id of
     * an append; with a bare JID and with_res its resource; after_s,
     * before_s the ids a query or delete names (after_s: the item a
     * replace changes) */
    const char *host, *store, *user, *key, *with, *with_res, *after_s, *before_s;
    char **ids;                /* owned copies of the filter's ids */
    size_t n_ids;
    char *names;               /* owned: $10, the ids to resolve (text[] literal) */
    char *rows;                /* owned: $12, their numbers, then the ids' rows */
    char *text;                /* JSON value (owned); NULL: delete */
    char num[5][24];           /* when/start, end, after, before, limit as text */
    bool has_num[5];
    unsigned qmask;
    bool checked;              /* archive query/delete: ids resolved */
    uint64_t queued_at;        /* ms, monotonic */
    /* result */
    int status;
    PGresult *res;             /* owned */
    json_t *value;             /* kv results */
    xmppd_archive_item *items; /* query, pointing into res */
    size_t n_items;
    bool complete;
    size_t count;
    union {
        xmppd_store_done_cb done;
        xmppd_kv_get_cb get;
        xmppd_archive_append_cb append;
        xmppd_archive_query_cb query;
        xmppd_archive_count_cb count;
    } cb;
    void *ud;
};
enum { N_WHEN, N_END, N_AFTER, N_BEFORE, N_LIMIT };

/* ---- the pool ---- */

enum pg_state { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };

typedef struct pg_db pg_db;

typedef struct pg_conn {
    pg_db *d;
    int index;
    enum pg_state state;
    PGconn *pc;
    xmppd_io *io;
    int io_fd;
    int want;                  /* IO events wanted */
    pg_op *queue, **queue_tail;
    pg_op *cur;                /* running op */
    int cur_stmt;
    bool preparing;            /* cur_stmt's PREPARE is running */
    PGresult *res;             /* first result of the running command */
    uint64_t since;            /* ms: connect started / statement sent */
    unsigned failures;         /* consecutive failed connection attempts */
    bool was_up;               /* has been connected since the last failure log */
    xmppd_timer *retry;
    unsigned char prepared[ST_COUNT];
} pg_conn;

struct pg_db {
    xmppd_module *m;
    const pg_conf *conf;
    pg_conn *conns;
    int n_conns;
    pg_op *done, **done_tail;
    xmppd_timer *deliver;      /* pending 0 ms timer running pg_deliver */
    xmppd_timer *tick;
    bool closing;              /* unload: no more io/timers; drive by poll() */
    int lost_logged;           /* connections reported down (for one log line) */
};

static void pg_conn_dispatch(pg_conn *c);
static void pg_conn_start(pg_conn *c);
static void pg_conn_event(pg_conn *c, int ready);

/* ---- op lifetime ---- */

static char *pg_put_str(char **pos, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *dst = *pos;
    memcpy(dst, s, n);
    *pos += n;
    return dst;
}

/* with may be a full JID: kept as its bare JID (with) and resource
 * (with_res). */
static pg_op *pg_op_new(enum pg_kind kind, const char *host, const char *store, const char *user,
                        const char *key, const char *with, const char *after, const char *before)
{
    const char *strs[] = { host, store, user, key, with, after, before };
    size_t len = sizeof(pg_op);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        len += strs[i] ? strlen(strs[i]) + 1 : 0;
    pg_op *op = calloc(1, len);
    if (!op)
        return NULL;
    char *pos = (char *)(op + 1);
    op->kind = kind;
    op->host = pg_put_str(&pos, host);
    op->store = pg_put_str(&pos, store);
    op->user = pg_put_str(&pos, user);
    op->key = pg_put_str(&pos, key);
    char *w = pg_put_str(&pos, with);
    char *slash = w ? strchr(w, '/') : NULL;
    if (slash) {
        *slash = '\0';
        op->with_res = slash + 1;
    }
    op->with = w;
    op->after_s = pg_put_str(&pos, after);
    op->before_s = pg_put_str(&pos, before);
    return op;
}

static void pg_op_clear(pg_op *op)
{
    PQclear(op->res);
    op->res = NULL;
    json_decref(op->value);
    op->value = NULL;
    for (size_t i = 0; i < op->n_items; i++)
        json_decref(op->items[i].value);
    free(op->items);
    op->items = NULL;
    op->n_items = 0;
}

static void pg_op_free(pg_op *op)
{
    pg_op_clear(op);
    for (size_t i = 0; i < op->n_ids; i++)
        free(op->ids[i]);
    free(op->ids);
    free(op->names);
    free(op->rows);
    free(op->text);
    free(op);
}

static void pg_set_num(pg_op *op, int which, int64_t v)
{
    snprintf(op->num[which], sizeof op->num[which], "%" PRId64, v);
    op->has_num[which] = true;
}

/* ---- completion ---- */

static uint64_t pg_deliver_timer(void *ud);

/* Calls op's callback with its results. */
static void pg_complete(pg_op *op)
{
    bool ok = op->status == XMPPD_STORE_OK;
    switch (op->kind) {
    case PG_KV_GET:
    case PG_KV_GET_ALL:
    case PG_KV_USERS:
        op->cb.get(op->status, ok ? op->value : NULL, op->ud);
        break;
    case PG_KV_SET:
    case PG_AR_DELETE:
    case PG_AR_REPLACE:
    case PG_PURGE:
        if (op->cb.done)
            op->cb.done(op->status, op->ud);
        break;
    case PG_AR_APPEND:
        if (op->cb.append)
            op->cb.append(op->status, ok && op->res ? PQgetvalue(op->res, 0, 0) : NULL, op->ud);
        break;
    case PG_AR_COUNT:
        op->cb.count(op->status, ok ? op->count : 0, op->ud);
        break;
    case PG_AR_QUERY:
        if (ok)
            op->cb.query(op->status, op->items, op->n_items, op->complete, op->ud);
        else
            op->cb.query(op->status, NULL, 0, true, op->ud);
        break;
    }
}

/* Runs the callbacks of every finished op, in order. */
static void pg_deliver(pg_db *d)
{
    while (d->done) {
        pg_op *op = d->done;
        d->done = op->next;
        if (!d->done)
            d->done_tail = &d->done;
        pg_complete(op);
        pg_op_free(op);
    }
}

static uint64_t pg_deliver_timer(void *ud)
{
    pg_db *d = ud;
    d->deliver = NULL;
    pg_deliver(d);
    return 0;
}

/* Queues op's callback for a later loop turn (never inside the caller's
 * call, and never inside another op's callback chain). */
static void pg_finish(pg_db *d, pg_op *op, int status)
{
    if (status != XMPPD_STORE_OK)
        pg_op_clear(op);
    op->status = status;
    op->next = NULL;
    *d->done_tail = op;
    d->done_tail = &op->next;
    if (!d->deliver && !d->closing && !(d->deliver = xmppd_timer_add(d->m, 0, pg_deliver_timer, d)))
        xmppd_log(d->m, XMPPD_LOG_ERROR, "out of memory: storage results delayed");
}

/* ---- reading results into an op ---- */

static json_t *pg_json(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return NULL;
    return json_loads(PQgetvalue(r, row, col), JSON_DECODE_ANY, NULL);
}

/* Fills op from res (taking it). 0, or -1 when the rows are unreadable. */
static int pg_op_take_result(pg_op *op, PGresult *res)
{
    op->res = res;
    int rows = PQntuples(res);
    switch (op->kind) {
    case PG_KV_GET:
        if (rows == 0) {
            op->status = XMPPD_STORE_NOT_FOUND;
            return 0;
        }
        return (op->value = pg_json(res, 0, 0)) ? 0 : -1;
    case PG_KV_GET_ALL:
        if (!(op->value = json_object()))
            return -1;
        for (int i = 0; i < rows; i++) {
            json_t *v = pg_json(res, i, 1);
            if (!v || json_object_set_new(op->value, PQgetvalue(res, i, 0), v) != 0)
                return -1;
        }
        return 0;
    case PG_KV_USERS:
        if (!(op->value = json_array()))
            return -1;
        for (int i = 0; i < rows; i++)
            if (json_array_append_new(op->value, json_string(PQgetvalue(res, i, 0))) != 0)
                return -1;
        return 0;
    case PG_AR_APPEND:
        return rows == 1 && !PQgetisnull(res, 0, 0) ? 0 : -1;
    case PG_AR_COUNT:
        if (rows != 1)
            return -1;
        op->count = (size_t)strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        return 0;
    case PG_AR_QUERY: {
        size_t n = (size_t)rows;
        op->complete = true;
        if (op->has_num[N_LIMIT] && n > strtoull(op->num[N_LIMIT], NULL, 10) - 1) {
            n--; /* the extra row only says: more exist */
            op->complete = false;
        }
        if (n && !(op->items = calloc(n, sizeof *op->items)))
            return -1;
        for (size_t i = 0; i < n; i++) {
            xmppd_archive_item *it = &op->items[i];
            it->id = PQgetvalue(res, (int)i, 0);
            it->when_ms = strtoll(PQgetvalue(res, (int)i, 1), NULL, 10);
            it->with = PQgetisnull(res, (int)i, 2) ? NULL : PQgetvalue(res, (int)i, 2);
            op->n_items = i + 1;
            if (!(it->value = pg_json(res, (int)i, 3)))
                return -1;
        }
        return 0;
    }
    case PG_AR_REPLACE:
        if (rows == 0)
            op->status = XMPPD_STORE_NOT_FOUND;
        return 0;
    case PG_KV_SET:
    case PG_AR_DELETE:
    case PG_PURGE:
        return 0;
    }
    return -1;
}

/* ---- statements for an op ---- */

/* The statement op runs next. */
static int pg_op_stmt(const pg_op *op)
{
    switch (op->kind) {
    case PG_KV_GET: return ST_KV_GET;
    case PG_KV_SET: return op->text ? ST_KV_PUT : ST_KV_DEL;
    case PG_KV_GET_ALL: return ST_KV_ALL;
    case PG_KV_USERS: return ST_KV_USERS;
    case PG_AR_APPEND: return ST_AR_APPEND;
    case PG_AR_COUNT: return ST_AR_COUNT;
    case PG_PURGE: return ST_PURGE;
    case PG_AR_REPLACE: return ST_AR_REPLACE;
    case PG_AR_DELETE:
        return !op->checked && op->names ? ST_AR_RESOLVE : ST_DELETE(op->qmask);
    case PG_AR_QUERY:
        return !op->checked && op->names ? ST_AR_RESOLVE : ST_QUERY(op->qmask);
    }
    return ST_KV_GET;
}

static void pg_op_params(const pg_op *op, int stmt, const char *v[PG_MAX_PARAMS])
{
    memset(v, 0, sizeof(const char *) * PG_MAX_PARAMS);
    v[0] = op->host;
    v[1] = op->store;
    v[2] = op->user;
    if (stmt == ST_AR_APPEND) {
        v[3] = op->with;
        v[4] = op->num[N_WHEN];
        v[5] = op->text;
        v[9] = op->key;
        v[10] = op->with_res;
        return;
    }
    if (stmt == ST_AR_REPLACE) {
        v[5] = op->text;
        v[6] = op->has_num[N_AFTER] ? op->num[N_AFTER] : NULL;
        v[9] = op->after_s;
        return;
    }
    if (op->kind == PG_KV_SET || op->kind == PG_KV_GET) {
        v[3] = op->key;
        v[4] = op->text;
        return;
    }
    if (op->kind == PG_AR_QUERY || op->kind == PG_AR_DELETE) {
        v[3] = op->with;
        v[4] = op->has_num[N_WHEN] ? op->num[N_WHEN] : NULL;
        v[5] = op->has_num[N_END] ? op->num[N_END] : NULL;
        v[6] = op->has_num[N_AFTER] ? op->num[N_AFTER] : NULL;
        v[7] = op->has_num[N_BEFORE] ? op->num[N_BEFORE] : NULL;
        v[8] = op->has_num[N_LIMIT] ? op->num[N_LIMIT] : NULL;
        v[9] = op->names;
        v[10] = op->with_res;
        v[11] = op->rows;
    }
}

/* ---- connection plumbing ---- */

static const char *pg_conn_error(const pg_conn *c)
{
    const char *e = c->pc ? PQerrorMessage(c->pc) : "out of memory";
    return e && *e ? e : "unknown error";
}

/* One line of a libpq message (they end with a newline). */
static void pg_log_pq(pg_db *d, int level, const char *what, const char *msg)
{
    size_t n = strcspn(msg, "\n");
    xmppd_log(d->m, level, "%s: %.*s", what, (int)n, msg);
}

static void pg_io_fired(int fd, int ready, void *ud)
{
    pg_conn_event(ud, ready);
}

/* Watches the connection's current socket for events. */
static void pg_watch(pg_conn *c, int events)
{
    int fd = c->pc ? PQsocket(c->pc) : -1;
    c->want = events;
    if (c->d->closing)
        return;
    if (c->io && (fd != c->io_fd || fd < 0)) {
        xmppd_io_remove(c->io);
        c->io = NULL;
    }
    if (fd < 0)
        return;
    if (!c->io) {
        c->io = xmppd_io_add(c->d->m, fd, events, pg_io_fired, c);
        c->io_fd = fd;
        if (!c->io)
            xmppd_log(c->d->m, XMPPD_LOG_ERROR, "cannot watch the database socket");
    } else {
        xmppd_io_modify(c->io, events);
    }
}

static void pg_conn_close(pg_conn *c)
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
    memset(c->prepared, 0, sizeof c->prepared);
    c->preparing = false;
}

/* Fails every queued op of c. */
static void pg_conn_fail_queue(pg_conn *c)
{
    while (c->queue) {
        pg_op *op = c->queue;
        c->queue = op->next;
        pg_finish(c->d, op, XMPPD_STORE_ERROR);
    }
    c->queue_tail = &c->queue;
}

static uint64_t pg_retry_fired(void *ud)
{
    pg_conn *c = ud;
    c->retry = NULL;
    if (c->state == C_DOWN)
        pg_conn_start(c);
    return 0;
}

/* A connection attempt failed: down until the back-off delay passed. */
static void pg_conn_failed(pg_conn *c, const char *why)
{
    pg_db *d = c->d;
    if (c->failures == 0 || c->was_up)
        pg_log_pq(d, XMPPD_LOG_ERROR, "cannot connect to the database (retrying with back-off)", why);
    else
        pg_log_pq(d, XMPPD_LOG_DEBUG, "connection attempt failed", why);
    c->was_up = false;
    pg_conn_close(c);
    c->state = C_DOWN;
    c->failures++;
    pg_conn_fail_queue(c);
    uint64_t delay = PG_BACKOFF_FIRST_MS;
    for (unsigned i = 1; i < c->failures && delay < (uint64_t)d->conf->reconnect_max; i++)
        delay *= 2;
    if (delay > (uint64_t)d->conf->reconnect_max)
        delay = (uint64_t)d->conf->reconnect_max;
    if (!d->closing && !c->retry)
        c->retry = xmppd_timer_add(d->m, delay, pg_retry_fired, c);
}

/* Starts connecting (asynchronously). */
static void pg_conn_start(pg_conn *c)
{
    pg_db *d = c->d;
    static const char *const keys[] = { "application_name", "keepalives", "keepalives_idle",
                                        "keepalives_interval", "keepalives_count", "dbname", NULL };
    const char *vals[] = { "xmppd", "1", "30", "10", "3", d->conf->connect, NULL };
    pg_conn_close(c);
    c->state = C_CONNECTING;
    c->since = xmppd_now_ms();
    c->pc = PQconnectStartParams(keys, vals, 1);
    if (!c->pc || PQstatus(c->pc) == CONNECTION_BAD) {
        pg_conn_failed(c, pg_conn_error(c));
        return;
    }
    pg_watch(c, XMPPD_IO_WRITE);
}

/* The running statement's connection broke (or timed out): its op fails;
 * reconnect at once (a failure then backs off). */
static void pg_conn_broken(pg_conn *c, const char *why)
{
    pg_db *d = c->d;
    pg_log_pq(d, XMPPD_LOG_WARN, "database connection lost", why);
    if (c->cur) {
        pg_finish(d, c->cur, XMPPD_STORE_ERROR);
        c->cur = NULL;
    }
    c->was_up = true;
    c->failures = 0;
    if (d->closing) {
        pg_conn_close(c);
        c->state = C_DOWN;
        pg_conn_fail_queue(c);
        return;
    }
    pg_conn_start(c);
}

/* Sends cur's next statement (its PREPARE first when needed). */
static void pg_conn_send(pg_conn *c)
{
    pg_op *op = c->cur;
    int stmt = pg_op_stmt(op);
    char name[32], sqlbuf[800];
    pg_stmt_name(stmt, name, sizeof name);
    int ok;
    c->cur_stmt = stmt;
    if (!c->prepared[stmt]) {
        c->preparing = true;
        ok = PQsendPrepare(c->pc, name, pg_stmt_sql(stmt, sqlbuf, sizeof sqlbuf), PG_MAX_PARAMS,
                           pg_param_types);
    } else {
        const char *v[PG_MAX_PARAMS];
        pg_op_params(op, stmt, v);
        c->preparing = false;
        ok = PQsendQueryPrepared(c->pc, name, PG_MAX_PARAMS, v, NULL, NULL, 0);
    }
    if (!ok) {
        if (PQstatus(c->pc) == CONNECTION_BAD) {
            pg_conn_broken(c, pg_conn_error(c));
        } else {
            pg_log_pq(c->d, XMPPD_LOG_ERROR, "sending a statement", pg_conn_error(c));
            c->cur = NULL;
            c->state = C_IDLE;
            pg_finish(c->d, op, XMPPD_STORE_ERROR);
        }
        return;
    }
    c->state = C_BUSY;
    c->since = xmppd_now_ms();
    int fl = PQflush(c->pc);
    if (fl < 0) {
        pg_conn_broken(c, pg_conn_error(c));
        return;
    }
    pg_watch(c, XMPPD_IO_READ | (fl ? XMPPD_IO_WRITE : 0));
}

/* Starts the next queued op on an idle connection. */
static void pg_conn_dispatch(pg_conn *c)
{
    while (c->state == C_IDLE && c->queue) {
        pg_op *op = c->queue;
        c->queue = op->next;
        if (!c->queue)
            c->queue_tail = &c->queue;
        op->next = NULL;
        c->cur = op;
        pg_conn_send(c);
    }
}

/* Takes the rows ST_AR_RESOLVE found for op's names (after, before, then
 * the filter's ids): the after/before rows into op->num and the ids' rows
 * into op->rows. 1 all found, 0 one names no item, -1 OOM. */
static int pg_op_take_rows(pg_op *op, const PGresult *res)
{
    size_t first_id = (op->after_s ? 1 : 0) + (op->before_s ? 1 : 0);
    if ((size_t)PQntuples(res) != first_id + op->n_ids)
        return 0;
    size_t len = 3 + 21 * op->n_ids, off;
    char *rows = malloc(len);
    if (!rows)
        return -1;
    off = (size_t)snprintf(rows, len, "{");
    for (int i = 0; i < PQntuples(res); i++) {
        int col = PQgetisnull(res, i, 0) ? 1 : 0;
        if (PQgetisnull(res, i, col)) {
            free(rows);
            return 0;
        }
        const char *row = PQgetvalue(res, i, col);
        if ((size_t)i >= first_id)
            off += (size_t)snprintf(rows + off, len - off, "%s%s", (size_t)i > first_id ? "," : "", row);
        else if (i == 0 && op->after_s)
            pg_set_num(op, N_AFTER, strtoll(row, NULL, 10));
        else
            pg_set_num(op, N_BEFORE, strtoll(row, NULL, 10));
    }
    snprintf(rows + off, len - off, "}");
    free(op->rows);
    op->rows = rows;
    return 1;
}

/* The running command's results are all in (res: its first result). */
static void pg_conn_command_done(pg_conn *c, PGresult *res)
{
    pg_db *d = c->d;
    pg_op *op = c->cur;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    bool good = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!good) {
        const char *msg = res ? PQresultErrorMessage(res) : pg_conn_error(c);
        char what[160];
        snprintf(what, sizeof what, "store \"%s\" of %s: %s", op->store ? op->store : "*",
                 op->host && *op->host ? op->host : "(global)",
                 c->preparing ? "preparing a statement" : "statement failed");
        pg_log_pq(d, XMPPD_LOG_ERROR, what, msg && *msg ? msg : "unknown error");
        PQclear(res);
        c->cur = NULL;
        c->state = C_IDLE;
        pg_finish(d, op, XMPPD_STORE_ERROR);
        return;
    }
    if (c->preparing) {
        PQclear(res);
        c->prepared[c->cur_stmt] = 1;
        c->state = C_IDLE;
        pg_conn_send(c);
        return;
    }
    if (c->cur_stmt == ST_AR_RESOLVE) {
        int found = pg_op_take_rows(op, res);
        PQclear(res);
        c->state = C_IDLE;
        if (found != 1) {
            /* an id naming no item: a query is NOT_FOUND (RSM item-not-found),
             * a delete matches nothing */
            c->cur = NULL;
            op->complete = true;
            pg_finish(d, op, found < 0 ? XMPPD_STORE_ERROR
                             : op->kind == PG_AR_QUERY ? XMPPD_STORE_NOT_FOUND : XMPPD_STORE_OK);
            return;
        }
        op->checked = true;
        pg_conn_send(c);
        return;
    }
    c->cur = NULL;
    c->state = C_IDLE;
    op->status = XMPPD_STORE_OK;
    if (pg_op_take_result(op, res) != 0) {
        xmppd_log(d->m, XMPPD_LOG_ERROR, "store \"%s\": unreadable result (out of memory or bad JSON)",
                  op->store ? op->store : "*");
        pg_finish(d, op, XMPPD_STORE_ERROR);
        return;
    }
    pg_finish(d, op, op->status);
}

static void pg_conn_connected(pg_conn *c)
{
    pg_db *d = c->d;
    if (PQsetnonblocking(c->pc, 1) != 0) {
        pg_conn_failed(c, pg_conn_error(c));
        return;
    }
    if (c->failures > 0 || c->was_up)
        xmppd_log(d->m, XMPPD_LOG_INFO, "database connection %d re-established", c->index);
    c->failures = 0;
    c->was_up = false;
    c->state = C_IDLE;
    pg_watch(c, XMPPD_IO_READ);
    pg_conn_dispatch(c);
}

/* Socket events (or a poll from the drain loop). */
static void pg_conn_event(pg_conn *c, int ready)
{
    switch (c->state) {
    case C_DOWN:
        return;
    case C_CONNECTING:
        switch (PQconnectPoll(c->pc)) {
        case PGRES_POLLING_READING: pg_watch(c, XMPPD_IO_READ); break;
        case PGRES_POLLING_WRITING: pg_watch(c, XMPPD_IO_WRITE); break;
        case PGRES_POLLING_OK: pg_conn_connected(c); break;
        default: pg_conn_failed(c, pg_conn_error(c)); break;
        }
        return;
    case C_IDLE:
        /* nothing expected: a notice, or the server closing the socket */
        if ((ready & XMPPD_IO_READ) && (!PQconsumeInput(c->pc) || PQstatus(c->pc) == CONNECTION_BAD)) {
            pg_conn_broken(c, pg_conn_error(c));
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
            pg_conn_broken(c, pg_conn_error(c));
            return;
        }
        pg_watch(c, XMPPD_IO_READ | (fl ? XMPPD_IO_WRITE : 0));
    }
    if (!(ready & XMPPD_IO_READ))
        return;
    if (!PQconsumeInput(c->pc)) {
        pg_conn_broken(c, pg_conn_error(c));
        return;
    }
    while (!PQisBusy(c->pc)) {
        PGresult *r = PQgetResult(c->pc);
        if (!r) {
            PGresult *first = c->res;
            c->res = NULL;
            if (PQstatus(c->pc) == CONNECTION_BAD) {
                PQclear(first);
                pg_conn_broken(c, pg_conn_error(c));
                return;
            }
            pg_conn_command_done(c, first);
            /* the op's callback runs later; go on with the queue */
            pg_conn_dispatch(c);
            return;
        }
        if (!c->res)
            c->res = r;
        else
            PQclear(r);
    }
}

/* ---- timeouts ---- */

static uint64_t pg_tick(void *ud)
{
    pg_db *d = ud;
    uint64_t now = xmppd_now_ms();
    uint64_t qt = (uint64_t)d->conf->query_timeout;
    for (int i = 0; i < d->n_conns; i++) {
        pg_conn *c = &d->conns[i];
        if (c->state == C_CONNECTING && now - c->since > (uint64_t)d->conf->connect_timeout)
            pg_conn_failed(c, "timed out");
        else if (c->state == C_BUSY && now - c->since > qt)
            pg_conn_broken(c, "statement timed out");
        /* ops waiting too long behind a slow connection or a reconnect */
        pg_op **pp = &c->queue;
        while (*pp) {
            pg_op *op = *pp;
            if (now - op->queued_at > qt) {
                *pp = op->next;
                xmppd_log(d->m, XMPPD_LOG_WARN, "store \"%s\": operation timed out waiting for the database",
                          op->store ? op->store : "*");
                pg_finish(d, op, XMPPD_STORE_ERROR);
            } else {
                pp = &op->next;
            }
        }
        c->queue_tail = pp;
    }
    return PG_TICK_MS;
}

/* ---- driver entry points (loop thread) ---- */

static uint32_t pg_hash(const char *host, const char *user)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *s = host ? host : ""; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    h = (h ^ 0xff) * 16777619u;
    for (const char *s = user ? user : ""; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Queues op (taking it) on its connection; a connection that is down
 * fails it at once (later). */
static void pg_submit(pg_db *d, pg_op *op)
{
    pg_conn *c = &d->conns[pg_hash(op->host, op->user) % (uint32_t)d->n_conns];
    op->queued_at = xmppd_now_ms();
    op->next = NULL;
    if (c->state == C_DOWN) {
        pg_finish(d, op, XMPPD_STORE_ERROR);
        return;
    }
    *c->queue_tail = op;
    c->queue_tail = &op->next;
    pg_conn_dispatch(c);
}

static bool pg_check_alloc(pg_db *d, pg_op *op)
{
    if (!op)
        xmppd_log(d->m, XMPPD_LOG_ERROR, "out of memory: storage operation dropped");
    return op != NULL;
}

static void pg_kv_get(void *dd, const char *host, const char *store, const char *user,
                      const char *key, xmppd_kv_get_cb cb, void *ud)
{
    pg_op *op = pg_op_new(PG_KV_GET, host, store, user, key, NULL, NULL, NULL);
    if (!pg_check_alloc(dd, op))
        return;
    op->cb.get = cb;
    op->ud = ud;
    pg_submit(dd, op);
}

static void pg_kv_set(void *dd, const char *host, const char *store, const char *user,
                      const char *key, json_t *value, xmppd_store_done_cb cb, void *ud)
{
    pg_op *op = pg_op_new(PG_KV_SET, host, store, user, key, NULL, NULL, NULL);
    if (!pg_check_alloc(dd, op))
        return;
    op->cb.done = cb;
    op->ud = ud;
    if (value && !(op->text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY))) {
        pg_finish(dd, op, XMPPD_STORE_ERROR);
        return;
    }
    pg_submit(dd, op);
}

static void pg_kv_get_all(void *dd, const char *host, const char *store, const char *user,
                          xmppd_kv_get_cb cb, void *ud)
{
    pg_op *op = pg_op_new(PG_KV_GET_ALL, host, store, user, NULL, NULL, NULL, NULL);
    if (!pg_check_alloc(dd, op))
        return;
    op->cb.get = cb;
    op->ud = ud;
    pg_submit(dd, op);
}

static void pg_kv_users(void *dd, const char *host, const char *store, xmppd_kv_get_cb cb, void *ud)
{
    pg_op *op = pg_op_new(PG_KV_USERS, host, store, NULL, NULL, NULL, NULL, NULL);
    if (!pg_check_alloc(dd, op))
        return;
    op->cb.get = cb;
    op->ud = ud;
    pg_submit(dd, op);
}

static void pg_archive_append_id(void *dd, const char *host, const char *store, const char *user,
                                 const char *id, const char *with, int64_t when_ms, json_t *value,
                                 xmppd_archive_append_cb cb, void *ud)
{
    pg_op *op = pg_op_new(PG_AR_APPEND, host, store, user, id, with, NULL, NULL);
    if (!pg_check_alloc(dd, op))
        return;
    op->cb.append = cb;
    op->ud = ud;
    pg_set_num(op, N_WHEN, when_ms);
    if (!value || !(op->text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY))) {
        pg_finish(dd, op, XMPPD_STORE_ERROR);
        return;
    }
    pg_submit(dd, op);
}

static void pg_archive_append(void *dd, const char *host, const char *store, const char *user,
                              const char *with, int64_t when_ms, json_t *value,
                              xmppd_archive_append_cb cb, void *ud)
{
    pg_archive_append_id(dd, host, store, user, NULL, with, when_ms, value, cb, ud);
}

/* Archive ids the driver assigns are positive decimal integers. */
static bool pg_parse_id(const char *s, int64_t *id_r)
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

/* The ids op names (after, before, then the filter's) as $10, a text[]
 * literal, and as numbers (NULL where an id is not one) in $12, for
 * ST_AR_RESOLVE. false on OOM. */
static bool pg_op_names(pg_op *op)
{
    const char *v[XMPPD_ARCHIVE_MAX_IDS + 2];
    size_t n = 0, len = 3, nlen = 3;
    if (op->after_s)
        v[n++] = op->after_s;
    if (op->before_s)
        v[n++] = op->before_s;
    for (size_t i = 0; i < op->n_ids; i++)
        v[n++] = op->ids[i];
    if (n == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        len += 2 * strlen(v[i]) + 3;
        nlen += 21;
    }
    char *names = malloc(len), *nums = malloc(nlen), *p = names;
    size_t off = 0;
    if (!names || !nums) {
        free(names);
        free(nums);
        return false;
    }
    *p++ = '{';
    off += (size_t)snprintf(nums, nlen, "{");
    for (size_t i = 0; i < n; i++) {
        int64_t num;
        if (i)
            *p++ = ',';
        *p++ = '"'; /* array element syntax: quote, backslash before " and \ */
        for (const char *c = v[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                *p++ = '\\';
            *p++ = *c;
        }
        *p++ = '"';
        if (pg_parse_id(v[i], &num))
            off += (size_t)snprintf(nums + off, nlen - off, "%s%" PRId64, i ? "," : "", num);
        else
            off += (size_t)snprintf(nums + off, nlen - off, "%sNULL", i ? "," : "");
    }
    *p++ = '}';
    *p = '\0';
    snprintf(nums + off, nlen - off, "}");
    op->names = names;
    op->rows = nums;
    return true;
}

/* Copies the filter's ids into op. false on OOM or too many. */
static bool pg_take_ids(pg_op *op, const xmppd_archive_filter *q)
{
    if (q->n_ids > XMPPD_ARCHIVE_MAX_IDS || !(op->ids = calloc(q->n_ids ? q->n_ids : 1, sizeof *op->ids)))
        return false;
    for (; op->n_ids < q->n_ids; op->n_ids++)
        if (!q->ids[op->n_ids] || !(op->ids[op->n_ids] = strdup(q->ids[op->n_ids])))
            return false;
    op->qmask |= PG_Q_IDS;
    return true;
}

/* A query/delete op for q (NULL: everything of user); NULL on OOM, *bad_r
 * when q cannot be run (too many ids, OOM on its parts). */
static pg_op *pg_query_op(enum pg_kind kind, const char *host, const char *store, const char *user,
                          const xmppd_archive_filter *q, bool *bad_r)
{
    pg_op *op = pg_op_new(kind, host, store, user, NULL, q ? q->with : NULL, q ? q->after_id : NULL,
                          q ? q->before_id : NULL);
    *bad_r = false;
    if (!op || !q)
        return op;
    if ((q->ids && !pg_take_ids(op, q)) || !pg_op_names(op))
        *bad_r = true;
    if (q->with)
        op->qmask |= PG_Q_WITH | (op->with_res ? PG_Q_WITH_RES : 0);
    if (q->start_ms) {
        op->qmask |= PG_Q_START;
        pg_set_num(op, N_WHEN, q->start_ms);
    }
    if (q->end_ms) {
        op->qmask |= PG_Q_END;
        pg_set_num(op, N_END, q->end_ms);
    }
    if (q->after_id)
        op->qmask |= PG_Q_AFTER;
    if (q->before_id)
        op->qmask |= PG_Q_BEFORE;
    if (q->reverse)
        op->qmask |= PG_Q_REVERSE;
    if (q->max)
        /* a query asks one row more: it tells whether the page is complete */
        pg_set_num(op, N_LIMIT, (int64_t)q->max + (kind == PG_AR_QUERY ? 1 : 0));
    return op;
}

static void pg_archive_query(void *dd, const char *host, const char *store, const char *user,
                             const xmppd_archive_filter *q, xmppd_archive_query_cb cb, void *ud)
{
    bool bad;
    pg_op *op = pg_query_op(PG_AR_QUERY, host, store, user, q, &bad);
    if (!pg_check_alloc(dd, op))
        return;
    op->cb.query = cb;
    op->ud = ud;
    if (bad)
        pg_finish(dd, op, XMPPD_STORE_ERROR);
    else
        pg_submit(dd, op);
}

static void pg_archive_delete(void *dd, const char *host, const char *store, const char *user,
                              const xmppd_archive_filter *q, xmppd_store_done_cb cb, void *ud)
{
    bool bad;
    pg_op *op = pg_query_op(PG_AR_DELETE, host, store, user, q, &bad);
    if (!pg_check_alloc(dd, op))
        return;
    op->cb.done = cb;
    op->ud = ud;
    if (bad)
        pg_finish(dd, op, XMPPD_STORE_ERROR);
    else
        pg_submit(dd, op);
}

static void pg_archive_count(void *dd, const char *host, const char *store, const char *user,
                             xmppd_archive_count_cb cb, void *ud)
{
    pg_op *op = pg_op_new(PG_AR_COUNT, host, store, user, NULL, NULL, NULL, NULL);
    if (!pg_check_alloc(dd, op))
        return;
    op->cb.count = cb;
    op->ud = ud;
    pg_submit(dd, op);
}

/* The item id's value becomes value; NOT_FOUND when the archive has no such
 * item (a malformed id included). */
static void pg_archive_replace(void *dd, const char *host, const char *store, const char *user,
                               const char *id, json_t *value, xmppd_store_done_cb cb, void *ud)
{
    pg_op *op = pg_op_new(PG_AR_REPLACE, host, store, user, NULL, NULL, id, NULL);
    if (!pg_check_alloc(dd, op))
        return;
    op->cb.done = cb;
    op->ud = ud;
    int64_t n;
    if (pg_parse_id(id, &n)) /* else only an appender's id can name it */
        pg_set_num(op, N_AFTER, n);
    if (!(op->text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY))) {
        pg_finish(dd, op, XMPPD_STORE_ERROR);
        return;
    }
    pg_submit(dd, op);
}

static void pg_purge_user(void *dd, const char *host, const char *user, xmppd_store_done_cb cb, void *ud)
{
    pg_op *op = pg_op_new(PG_PURGE, host, NULL, user, NULL, NULL, NULL, NULL);
    if (!pg_check_alloc(dd, op))
        return;
    op->cb.done = cb;
    op->ud = ud;
    pg_submit(dd, op);
}

static bool pg_pending(const pg_db *d)
{
    for (int i = 0; i < d->n_conns; i++)
        if (d->conns[i].queue || d->conns[i].cur)
            return true;
    return false;
}

/* Runs the pool with poll() until nothing is queued or running, or
 * PG_DRAIN_MS passed (then what is left fails). Callbacks run here. For
 * unload and shutdown, when the loop no longer runs. */
static void pg_drain(pg_db *d)
{
    uint64_t deadline = xmppd_now_ms() + PG_DRAIN_MS;
    for (;;) {
        pg_deliver(d);
        for (int i = 0; i < d->n_conns; i++) {
            pg_conn *c = &d->conns[i];
            if (c->state == C_DOWN)
                pg_conn_fail_queue(c);
        }
        if (!pg_pending(d))
            break;
        uint64_t now = xmppd_now_ms();
        if (now >= deadline) {
            xmppd_log(d->m, XMPPD_LOG_ERROR, "database did not finish the queued operations in time");
            for (int i = 0; i < d->n_conns; i++) {
                pg_conn *c = &d->conns[i];
                if (c->cur) {
                    pg_finish(d, c->cur, XMPPD_STORE_ERROR);
                    c->cur = NULL;
                }
                pg_conn_close(c);
                c->state = C_DOWN;
                pg_conn_fail_queue(c);
            }
            continue;
        }
        struct pollfd fds[64];
        pg_conn *who[64];
        nfds_t n = 0;
        for (int i = 0; i < d->n_conns && n < 64; i++) {
            pg_conn *c = &d->conns[i];
            if ((c->state == C_CONNECTING || c->state == C_BUSY) && c->pc && PQsocket(c->pc) >= 0) {
                fds[n] = (struct pollfd){ PQsocket(c->pc),
                                          (short)(((c->want & XMPPD_IO_READ) ? POLLIN : 0) |
                                                  ((c->want & XMPPD_IO_WRITE) ? POLLOUT : 0)), 0 };
                who[n++] = c;
            } else if (c->state == C_IDLE) {
                pg_conn_dispatch(c);
            }
        }
        if (n == 0)
            continue;
        int rc = poll(fds, n, (int)(deadline - now));
        if (rc < 0 && errno != EINTR)
            deadline = now;
        for (nfds_t i = 0; rc > 0 && i < n; i++) {
            int ready = ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) ? XMPPD_IO_READ : 0) |
                        ((fds[i].revents & POLLOUT) ? XMPPD_IO_WRITE : 0);
            if (ready)
                pg_conn_event(who[i], ready);
        }
    }
    pg_deliver(d);
}

/* Blocks until every queued write is done. */
static void pg_flush(void *dd)
{
    pg_db *d = dd;
    if (d->closing)
        return;
    /* drive the sockets here, not through the loop */
    for (int i = 0; i < d->n_conns; i++) {
        xmppd_io_remove(d->conns[i].io);
        d->conns[i].io = NULL;
        d->conns[i].io_fd = -1;
    }
    d->closing = true;
    pg_drain(d);
    d->closing = false;
    for (int i = 0; i < d->n_conns; i++) {
        pg_conn *c = &d->conns[i];
        if (c->state != C_DOWN)
            pg_watch(c, c->want);
        else if (!c->retry)
            c->retry = xmppd_timer_add(d->m, PG_BACKOFF_FIRST_MS, pg_retry_fired, c);
    }
}

static const xmppd_storage_driver pg_driver = {
    .version = XMPPD_STORAGE_DRIVER_VERSION,
    .size = sizeof(xmppd_storage_driver),
    .name = "pgsql",
    .kv_get = pg_kv_get,
    .kv_set = pg_kv_set,
    .kv_get_all = pg_kv_get_all,
    .kv_users = pg_kv_users,
    .archive_append = pg_archive_append,
    .archive_query = pg_archive_query,
    .archive_delete = pg_archive_delete,
    .archive_count = pg_archive_count,
    .archive_append_id = pg_archive_append_id,
    .archive_replace = pg_archive_replace,
    .purge_user = pg_purge_user,
    .flush = pg_flush,
};

/* ---- schema migration at load (blocking, before the loop serves) ---- */

static int pg_exec(PGconn *pc, const char *sql, PGresult **res_r, char *err, size_t errlen)
{
    PGresult *r = PQexec(pc, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(pc);
        snprintf(err, errlen, "%.*s", (int)strcspn(msg, "\n"), msg);
        PQclear(r);
        return -1;
    }
    if (res_r)
        *res_r = r;
    else
        PQclear(r);
    return 0;
}

/* Brings the schema to PG_SCHEMA_VERSION, one transaction per step, each
 * under an advisory lock (two processes starting at once do not both
 * migrate); refuses a schema written by a newer xmppd. */
static int pg_migrate(pg_db *d, PGconn *pc, char *err, size_t errlen)
{
    char msg[300];
    for (;;) {
        PGresult *r = NULL;
        if (pg_exec(pc, "BEGIN", NULL, msg, sizeof msg) != 0 ||
            pg_exec(pc, "SELECT pg_advisory_xact_lock(" PG_LOCK_KEY ")", NULL, msg, sizeof msg) != 0 ||
            pg_exec(pc, "SET LOCAL client_min_messages = warning", NULL, msg, sizeof msg) != 0 ||
            pg_exec(pc, "CREATE TABLE IF NOT EXISTS xmppd_schema (version integer NOT NULL)", NULL,
                    msg, sizeof msg) != 0 ||
            pg_exec(pc, "SELECT max(version) FROM xmppd_schema", &r, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "reading the schema version: %s", msg);
            break;
        }
        int v = PQgetisnull(r, 0, 0) ? 0 : atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (v > PG_SCHEMA_VERSION) {
            snprintf(err, errlen, "database schema version %d is newer than this xmppd supports (%d):"
                     " refusing to start", v, PG_SCHEMA_VERSION);
            break;
        }
        if (v == PG_SCHEMA_VERSION) {
            if (pg_exec(pc, "COMMIT", NULL, msg, sizeof msg) != 0) {
                snprintf(err, errlen, "%s", msg);
                break;
            }
            return 0;
        }
        char bump[96];
        snprintf(bump, sizeof bump, "DELETE FROM xmppd_schema; INSERT INTO xmppd_schema VALUES (%d)", v + 1);
        if (pg_exec(pc, pg_migrations[v], NULL, msg, sizeof msg) != 0 ||
            pg_exec(pc, bump, NULL, msg, sizeof msg) != 0 || pg_exec(pc, "COMMIT", NULL, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "schema migration to version %d: %s", v + 1, msg);
            break;
        }
        xmppd_log(d->m, XMPPD_LOG_INFO, "database schema now at version %d", v + 1);
    }
    PQclear(PQexec(pc, "ROLLBACK"));
    return -1;
}

static int pg_setup_schema(pg_db *d, char *err, size_t errlen)
{
    static const char *const keys[] = { "application_name", "connect_timeout", "dbname", NULL };
    char ct[24];
    snprintf(ct, sizeof ct, "%lld", (d->conf->connect_timeout + 999) / 1000);
    const char *vals[] = { "xmppd", ct, d->conf->connect, NULL };
    PGconn *pc = PQconnectdbParams(keys, vals, 1);
    if (!pc || PQstatus(pc) != CONNECTION_OK) {
        const char *msg = pc ? PQerrorMessage(pc) : "out of memory";
        snprintf(err, errlen, "cannot connect to the database: %.*s", (int)strcspn(msg, "\n"), msg);
        PQfinish(pc);
        return -1;
    }
    int rc = pg_migrate(d, pc, err, errlen);
    PQfinish(pc);
    return rc;
}

/* ---- module ---- */

static void pg_db_free(pg_db *d)
{
    for (int i = 0; i < d->n_conns; i++)
        pg_conn_close(&d->conns[i]);
    free(d->conns);
    free(d);
}

static int pg_load(xmppd_module *m, const void *conf)
{
    const pg_conf *c = conf;
    char err[512];
    pg_db *d = calloc(1, sizeof *d);
    if (!d || !(d->conns = calloc((size_t)c->pool_size, sizeof *d->conns))) {
        free(d);
        xmppd_log(m, XMPPD_LOG_ERROR, "out of memory");
        return -1;
    }
    d->m = m;
    d->conf = c;
    d->n_conns = (int)c->pool_size;
    d->done_tail = &d->done;
    for (int i = 0; i < d->n_conns; i++) {
        d->conns[i] = (pg_conn){ .d = d, .index = i, .state = C_DOWN, .io_fd = -1 };
        d->conns[i].queue_tail = &d->conns[i].queue;
    }
    if (pg_setup_schema(d, err, sizeof err) != 0) {
        xmppd_log(m, XMPPD_LOG_ERROR, "%s", err);
        pg_db_free(d);
        return -1;
    }
    if (xmppd_storage_provide(m, &pg_driver, d) != 0) {
        xmppd_log(m, XMPPD_LOG_ERROR, "a storage driver named \"pgsql\" is already loaded");
        pg_db_free(d);
        return -1;
    }
    if (!(d->tick = xmppd_timer_add(m, PG_TICK_MS, pg_tick, d))) {
        xmppd_log(m, XMPPD_LOG_ERROR, "out of memory");
        pg_db_free(d);
        return -1;
    }
    xmppd_module_set_data(m, d);
    for (int i = 0; i < d->n_conns; i++)
        pg_conn_start(&d->conns[i]);
    xmppd_log(m, XMPPD_LOG_INFO, "PostgreSQL storage, schema version %d, %d connections",
              PG_SCHEMA_VERSION, d->n_conns);
    return 0;
}

/* The kernel has released our io watches and timers already: finish what
 * is queued by polling the sockets here, then close. */
static void pg_unload(xmppd_module *m)
{
    pg_db *d = xmppd_module_data(m);
    if (!d)
        return;
    d->closing = true;
    d->tick = NULL;
    d->deliver = NULL;
    for (int i = 0; i < d->n_conns; i++) {
        d->conns[i].io = NULL;
        d->conns[i].retry = NULL;
    }
    pg_drain(d);
    xmppd_module_set_data(m, NULL);
    pg_db_free(d);
}

XMPPD_MODULE(storage_pgsql,
    .version = "1.0",
    .summary = "PostgreSQL storage driver \"pgsql\" (libpq, asynchronous, connection pool)",
    .flags = XMPPD_MOD_GLOBAL,
    .options = pg_options,
    .conf_size = sizeof(pg_conf),
    .load = pg_load,
    .unload = pg_unload);
