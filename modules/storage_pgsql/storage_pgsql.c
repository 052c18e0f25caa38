/* storage_pgsql: the PostgreSQL storage driver ("pgsql").
 *
 * The storage API's calls become sqs_ops (modules/sqlstore, shared with
 * storage_sqlite); this file turns each into prepared statements run on
 * the asynchronous connection pool of modules/pgpool: the loop never waits
 * for the database. The only blocking work is at load (one connection
 * that applies schema migrations), at flush, and while the module unloads
 * (the pool finishes what is queued, for at most PG_DRAIN_MS).
 *
 * Ordering: an op's statements go to the pool shard of its (host, user),
 * and a shard's statements run on one connection in the order submitted,
 * so the operations on one user's data run in the order they were made,
 * like storage_sqlite's. An archive query or delete naming ids resolves
 * them first (ST_AR_RESOLVE) and runs right after on the same connection
 * (pgpool_continue). Every statement runs in autocommit: the callback of a
 * write runs after PostgreSQL reported its commit.
 *
 * Failure (pgpool.h): a connection that breaks fails its running operation
 * with XMPPD_STORE_ERROR and reconnects at once; a connection attempt that
 * fails leaves the connection down, retried with exponential back-off, and
 * while it is down its operations fail at once (never silently dropped)
 * rather than wait. Operations waiting longer than query_timeout fail; a
 * statement running longer than that drops its connection.
 *
 * Statements are prepared lazily per connection, named with the schema
 * version.
 *
 * Ownership: an op is the pool's (as the ud of its query) from submit until
 * its answer, which answers the caller and frees it (sqs_op_done). */
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xmppd/xmppd.h"
#include "../pgpool/pgpool.h"
#include "../sqlstore/sqlstore.h"

#define PG_OID_TEXT 25
#define PG_OID_INT8 20
#define PG_MAX_PARAMS 12
#define PG_LOCK_KEY "7889426"          /* advisory lock held by a migration */
#define PG_DRAIN_MS 10000              /* unload, flush: longest wait for queued work */

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
    /* 2 -> 3: queue stores (offline messages: read whole at login, deleted
     * from the front) in a table of their own with one index, not the five
     * the archive keeps for MAM's queries; rows move with their ids (the
     * identity continues above the archive's, so ids stay unique) */
    "CREATE TABLE xmppd_queue ("
    " id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " host text NOT NULL, store text NOT NULL, username text NOT NULL,"
    " with_jid text, when_ms bigint NOT NULL, value jsonb NOT NULL, key text, with_res text);"
    "CREATE INDEX xmppd_queue_by_id ON xmppd_queue (host, store, username, id);"
    "CREATE UNIQUE INDEX xmppd_queue_by_key ON xmppd_queue (host, store, username, key)"
    " WHERE key IS NOT NULL;"
    "INSERT INTO xmppd_queue (id, host, store, username, with_jid, when_ms, value, key, with_res)"
    " SELECT id, host, store, username, with_jid, when_ms, value, key, with_res FROM xmppd_archive"
    " WHERE store = '" SQS_QUEUE_STORE "' ORDER BY id;"
    "SELECT setval(pg_get_serial_sequence('xmppd_queue', 'id'),"
    " GREATEST((SELECT max(id) FROM xmppd_archive), 1));"
    "DELETE FROM xmppd_archive WHERE store = '" SQS_QUEUE_STORE "';",
};
#define PG_SCHEMA_VERSION ((int)(sizeof pg_migrations / sizeof pg_migrations[0]))
/* ---- statements ---- */

enum pg_stmt_id {
    ST_KV_GET, ST_KV_PUT, ST_KV_DEL, ST_KV_ALL, ST_KV_USERS,
    ST_AR_APPEND, ST_AR_COUNT, ST_AR_RESOLVE, ST_AR_REPLACE, ST_PURGE,
    ST_FIXED
};

/* ids: fixed ones, then a query and a delete variant per combination of
 * archive conditions (qmask, SQS_Q_*) */
#define ST_QUERY(mask) (ST_FIXED + (int)(mask))
#define ST_DELETE(mask) (ST_FIXED + SQS_Q_VARIANTS + (int)(mask))
#define ST_TABLE_COUNT (ST_FIXED + 2 * SQS_Q_VARIANTS)
/* the same statements again on xmppd_queue, for queue stores (sqlstore.h) */
#define ST_IN_QUEUE(id) (ST_TABLE_COUNT + (id))
#define ST_COUNT (2 * ST_TABLE_COUNT)

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
    [ST_PURGE] = "WITH k AS (DELETE FROM xmppd_kv WHERE host=$1 AND username=$3),"
                 " q AS (DELETE FROM xmppd_queue WHERE host=$1 AND username=$3)"
                 " DELETE FROM xmppd_archive WHERE host=$1 AND username=$3",
};

/* $5 and $6 are text, cast in the SQL to what each statement needs. */
static const Oid pg_param_types[PG_MAX_PARAMS] = {
    PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT,
    PG_OID_INT8, PG_OID_INT8, PG_OID_INT8, PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT
};

static const char *pg_table_sql(int id, char *buf, size_t len);

/* The SQL text of statement id (into buf); for the pool. A queue store's
 * statement is the archive's with the other table. */
static const char *pg_stmt_sql(int id, char *buf, size_t len, void *ud)
{
    (void)ud;
    if (id < ST_TABLE_COUNT)
        return pg_table_sql(id, buf, len);
    char sql[1024];
    return sqs_sql_table(pg_table_sql(id - ST_TABLE_COUNT, sql, sizeof sql), "xmppd_archive", "xmppd_queue",
                         buf, len);
}

/* The SQL text of statement id on xmppd_archive. */
static const char *pg_table_sql(int id, char *buf, size_t len)
{
    if (id < ST_FIXED)
        return pg_fixed_sql[id];
    bool del = id >= ST_FIXED + SQS_Q_VARIANTS;
    unsigned mask = (unsigned)(id - ST_FIXED - (del ? SQS_Q_VARIANTS : 0));
    char where[400];
    snprintf(where, sizeof where,
             "host=$1 AND store=$2 AND username=$3%s%s%s%s%s%s%s ORDER BY id %s LIMIT $9",
             mask & SQS_Q_WITH ? " AND with_jid=$4" : "",
             mask & SQS_Q_WITH_RES ? " AND with_res=$11" : "",
             mask & SQS_Q_START ? " AND when_ms>=$5::bigint" : "",
             mask & SQS_Q_END ? " AND when_ms<=$6::bigint" : "",
             mask & SQS_Q_AFTER ? " AND id>$7" : "",
             mask & SQS_Q_BEFORE ? " AND id<$8" : "",
             mask & SQS_Q_IDS ? " AND id = ANY($12::bigint[])" : "",
             mask & SQS_Q_REVERSE ? "DESC" : "ASC");
    if (del)
        snprintf(buf, len, "DELETE FROM xmppd_archive WHERE id IN (SELECT id FROM xmppd_archive WHERE %s)", where);
    else
        snprintf(buf, len, "SELECT COALESCE(key, id::text), when_ms, CASE WHEN with_res IS NULL"
                 " THEN with_jid ELSE with_jid || '/' || with_res END, value FROM xmppd_archive"
                 " WHERE %s", where);
    return buf;
}

/* ---- the driver instance ---- */

typedef struct pg_db {
    sqs_driver base;           /* first: the sqlstore entry points find us */
    pgpool *pool;
    char stmt_prefix[24];      /* "xmppd<schema version>_" */
} pg_db;

/* ---- statements for an op ---- */

static int pg_archive_stmt(const sqs_op *op);

/* The statement op runs next: on xmppd_queue for a queue store's archive
 * operations. */
static int pg_op_stmt(const sqs_op *op)
{
    int id = pg_archive_stmt(op);
    bool archive_op = op->kind == SQS_AR_APPEND || op->kind == SQS_AR_QUERY || op->kind == SQS_AR_DELETE ||
                      op->kind == SQS_AR_COUNT || op->kind == SQS_AR_REPLACE;
    return archive_op && sqs_queue_store(op->store) ? ST_IN_QUEUE(id) : id;
}

/* The statement op runs next, on xmppd_archive. */
static int pg_archive_stmt(const sqs_op *op)
{
    switch (op->kind) {
    case SQS_KV_GET: return ST_KV_GET;
    case SQS_KV_SET: return op->text ? ST_KV_PUT : ST_KV_DEL;
    case SQS_KV_GET_ALL: return ST_KV_ALL;
    case SQS_KV_USERS: return ST_KV_USERS;
    case SQS_AR_APPEND: return ST_AR_APPEND;
    case SQS_AR_COUNT: return ST_AR_COUNT;
    case SQS_PURGE: return ST_PURGE;
    case SQS_AR_REPLACE: return ST_AR_REPLACE;
    case SQS_AR_DELETE:
        return !op->resolved && op->id_list ? ST_AR_RESOLVE : ST_DELETE(op->qmask);
    case SQS_AR_QUERY:
        return !op->resolved && op->id_list ? ST_AR_RESOLVE : ST_QUERY(op->qmask);
    }
    return ST_KV_GET;
}

static const char *pg_num(char buf[24], int64_t n)
{
    snprintf(buf, 24, "%" PRId64, n);
    return buf;
}

/* The parameters of stmt for op (see pg_fixed_sql); numbers are written
 * into num. */
static void pg_op_params(const sqs_op *op, int stmt, const char *v[PG_MAX_PARAMS], char num[5][24])
{
    int64_t row;
    memset(v, 0, sizeof(const char *) * PG_MAX_PARAMS);
    v[0] = op->host;
    v[1] = op->store;
    v[2] = op->user;
    if (stmt == ST_AR_APPEND) {
        v[3] = op->with;
        v[4] = pg_num(num[0], op->when_ms);
        v[5] = op->text;
        v[9] = op->key;
        v[10] = op->with_res;
    } else if (stmt == ST_AR_REPLACE) {
        v[5] = op->text;
        if (sqs_parse_id(op->after_s, &row)) /* else only an appender's id can name the item */
            v[6] = pg_num(num[0], row);
        v[9] = op->after_s;
    } else if (op->kind == SQS_KV_SET || op->kind == SQS_KV_GET) {
        v[3] = op->key;
        v[4] = op->text;
    } else if (op->kind == SQS_AR_QUERY || op->kind == SQS_AR_DELETE) {
        v[3] = op->with;
        if (op->qmask & SQS_Q_START)
            v[4] = pg_num(num[0], op->start_ms);
        if (op->qmask & SQS_Q_END)
            v[5] = pg_num(num[1], op->end_ms);
        if (op->resolved && (op->qmask & SQS_Q_AFTER))
            v[6] = pg_num(num[2], op->after_row);
        if (op->resolved && (op->qmask & SQS_Q_BEFORE))
            v[7] = pg_num(num[3], op->before_row);
        if (op->max) /* a query asks one row more: it tells whether the page is complete */
            v[8] = pg_num(num[4], (int64_t)op->max + (op->kind == SQS_AR_QUERY ? 1 : 0));
        v[9] = op->id_list;
        v[10] = op->with_res;
        v[11] = op->row_list;
    }
}

/* ---- reading results into an op ---- */

/* Fills op from res. 0, or -1 when the rows are unreadable. */
static int pg_op_take_result(sqs_op *op, const PGresult *res)
{
    int rows = PQntuples(res);
    switch (op->kind) {
    case SQS_KV_GET:
        if (rows == 0) {
            op->status = XMPPD_STORE_NOT_FOUND;
            return 0;
        }
        return sqs_set_value(op, PQgetvalue(res, 0, 0));
    case SQS_KV_GET_ALL:
        if (!(op->value = json_object()))
            return -1;
        for (int i = 0; i < rows; i++)
            if (sqs_add_pair(op, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1)) != 0)
                return -1;
        return 0;
    case SQS_KV_USERS:
        if (!(op->value = json_array()))
            return -1;
        for (int i = 0; i < rows; i++)
            if (sqs_add_user(op, PQgetvalue(res, i, 0)) != 0)
                return -1;
        return 0;
    case SQS_AR_APPEND:
        if (rows != 1 || PQgetisnull(res, 0, 0))
            return -1;
        if (!op->key)
            snprintf(op->new_id, sizeof op->new_id, "%s", PQgetvalue(res, 0, 0));
        return 0;
    case SQS_AR_COUNT:
        if (rows != 1)
            return -1;
        op->count = (size_t)strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        return 0;
    case SQS_AR_QUERY:
        op->complete = !op->max || (size_t)rows <= op->max; /* the extra row only says: more exist */
        for (int i = 0; i < rows && (!op->max || (size_t)i < op->max); i++)
            if (sqs_add_item(op, PQgetvalue(res, i, 0), strtoll(PQgetvalue(res, i, 1), NULL, 10),
                             PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2), NULL,
                             PQgetvalue(res, i, 3)) != 0)
                return -1;
        return 0;
    case SQS_AR_REPLACE:
        if (rows == 0)
            op->status = XMPPD_STORE_NOT_FOUND;
        return 0;
    case SQS_KV_SET:
    case SQS_AR_DELETE:
    case SQS_PURGE:
        return 0;
    }
    return -1;
}

/* Takes the rows ST_AR_RESOLVE found for the ids op names (after, before,
 * then the filter's): the after/before rows into op->after_row and
 * before_row, the ids' rows into op->row_list. 1 all found, 0 one names no
 * item, -1 OOM. */
static int pg_op_take_rows(sqs_op *op, const PGresult *res)
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
            op->after_row = strtoll(row, NULL, 10);
        else
            op->before_row = strtoll(row, NULL, 10);
    }
    snprintf(rows + off, len - off, "}");
    free(op->row_list);
    op->row_list = rows;
    return 1;
}

/* The ids op names (after, before, then the filter's) as $10, a text[]
 * literal, and as numbers (NULL where an id is not one) in $12, for
 * ST_AR_RESOLVE. false on OOM. */
static bool pg_op_names(sqs_op *op)
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
        if (sqs_parse_id(v[i], &num))
            off += (size_t)snprintf(nums + off, nlen - off, "%s%" PRId64, i ? "," : "", num);
        else
            off += (size_t)snprintf(nums + off, nlen - off, "%sNULL", i ? "," : "");
    }
    *p++ = '}';
    *p = '\0';
    snprintf(nums + off, nlen - off, "}");
    op->id_list = names;
    op->row_list = nums;
    return true;
}

/* ---- running an op ---- */

static void pg_run(pg_db *d, sqs_op *op, bool next);

/* Answers op's caller (status: an XMPPD_STORE_*) and frees op. */
static void pg_finish(sqs_op *op, int status)
{
    if (status != XMPPD_STORE_OK)
        sqs_op_reset(op, status);
    sqs_op_done(op);
}

static void pg_log_failed(pg_db *d, const sqs_op *op, const PGresult *res)
{
    const char *msg = PQresultErrorMessage(res);
    xmppd_log(d->base.m, XMPPD_LOG_ERROR, "store \"%s\" of %s: statement failed: %.*s",
              op->store ? op->store : "*", op->host && *op->host ? op->host : "(global)",
              (int)strcspn(msg, "\n"), *msg ? msg : "unknown error");
}

/* The pool's answer to op's statement. Anything but OK fails op (the
 * pool's CANCELLED too: the driver unloads, and nothing more runs). */
static void pg_answered(int status, const PGresult *res, void *ud)
{
    sqs_op *op = ud;
    pg_db *d = op->dd;
    if (status != PGPOOL_OK) {
        if (status == PGPOOL_FAILED)
            pg_log_failed(d, op, res);
        pg_finish(op, XMPPD_STORE_ERROR);
        return;
    }
    if (pg_archive_stmt(op) == ST_AR_RESOLVE) {
        int found = pg_op_take_rows(op, res);
        /* an id naming no item: a query is NOT_FOUND (RSM item-not-found),
         * a delete matches nothing */
        if (found != 1) {
            pg_finish(op, found < 0 ? XMPPD_STORE_ERROR
                          : op->kind == SQS_AR_QUERY ? XMPPD_STORE_NOT_FOUND : XMPPD_STORE_OK);
            return;
        }
        op->resolved = true;
        pg_run(d, op, true);
        return;
    }
    if (pg_op_take_result(op, res) != 0) {
        xmppd_log(d->base.m, XMPPD_LOG_ERROR, "store \"%s\": unreadable result (out of memory or bad JSON)",
                  op->store ? op->store : "*");
        pg_finish(op, XMPPD_STORE_ERROR);
        return;
    }
    pg_finish(op, op->status);
}

static void pg_fail_fired(void *ud)
{
    pg_finish(ud, XMPPD_STORE_ERROR);
}

/* op cannot run: ERROR on a later loop turn (or, the module unloading
 * first, while it unloads). */
static void pg_fail_later(void *dd, sqs_op *op)
{
    pg_db *d = dd;
    if (xmppd_defer(d->base.m, pg_fail_fired, pg_fail_fired, op) != 0) {
        xmppd_log(d->base.m, XMPPD_LOG_ERROR, "out of memory: storage operation dropped");
        sqs_op_free(op);
    }
}

/* Hands op's next statement to the pool: on its user's shard, or (next)
 * right after the statement just answered, on the same connection. */
static void pg_run(pg_db *d, sqs_op *op, bool next)
{
    char num[5][24];
    const char *v[PG_MAX_PARAMS];
    pg_op_params(op, pg_archive_stmt(op), v, num);
    pgpool_query q = { .stmt = pg_op_stmt(op), .shard = pgpool_shard(op->host, op->user), .n_values = PG_MAX_PARAMS,
                       .values = v };
    if ((next ? pgpool_continue : pgpool_submit)(d->pool, &q, pg_answered, op) != 0)
        pg_fail_later(d, op);
}

static void pg_submit(void *dd, sqs_op *op)
{
    if ((op->kind == SQS_AR_QUERY || op->kind == SQS_AR_DELETE) && !pg_op_names(op))
        pg_fail_later(dd, op);
    else
        pg_run(dd, op, false);
}

/* Blocks until every queued write is done. */
static void pg_flush(void *dd)
{
    pg_db *d = dd;
    pgpool_flush(d->pool);
}

static const xmppd_storage_driver pg_driver = {
    SQLSTORE_DRIVER_OPS,
    .name = "pgsql",
    .flush = pg_flush,
};

static const sqs_backend pg_backend = { .submit = pg_submit, .fail_later = pg_fail_later };


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
static int pg_migrate(xmppd_module *m, PGconn *pc, char *err, size_t errlen)
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
        xmppd_log(m, XMPPD_LOG_INFO, "database schema now at version %d", v + 1);
    }
    PQclear(PQexec(pc, "ROLLBACK"));
    return -1;
}

static int pg_setup_schema(xmppd_module *m, const pgpool_conf *pc, char *err, size_t errlen)
{
    PGconn *db = pgpool_connect_now(pc, err, errlen);
    if (!db)
        return -1;
    int rc = pg_migrate(m, db, err, errlen);
    PQfinish(db);
    return rc;
}

/* ---- module ---- */

static int pg_load(xmppd_module *m, const void *conf)
{
    const pg_conf *c = conf;
    char err[512];
    pg_db *d = calloc(1, sizeof *d);
    if (!d)
        return xmppd_module_refuse(m, "out of memory");
    d->base = (sqs_driver){ &pg_backend, m };
    snprintf(d->stmt_prefix, sizeof d->stmt_prefix, "xmppd%d_", PG_SCHEMA_VERSION);
    pgpool_conf pc = {
        .conninfo = c->connect, .application_name = "xmppd", .what = "database", .size = (int)c->pool_size,
        .connect_timeout_ms = (uint64_t)c->connect_timeout, .query_timeout_ms = (uint64_t)c->query_timeout,
        .reconnect_max_ms = (uint64_t)c->reconnect_max, .drain_ms = PG_DRAIN_MS,
        .n_statements = ST_COUNT, .stmt_prefix = d->stmt_prefix, .sql = pg_stmt_sql,
        .n_types = PG_MAX_PARAMS, .types = pg_param_types,
    };
    if (pg_setup_schema(m, &pc, err, sizeof err) != 0) {
        free(d);
        return xmppd_module_refuse(m, "%s", err);
    }
    /* the pool before the driver's registration: unloading, the driver is
     * gone from the registry before the pool finishes its queue */
    if (!(d->pool = pgpool_open(m, &pc))) {
        free(d);
        return xmppd_module_refuse(m, "out of memory");
    }
    if (xmppd_storage_provide(m, &pg_driver, d) != 0) {
        pgpool_free(d->pool);
        free(d);
        return xmppd_module_refuse(m, "a storage driver named \"pgsql\" is already loaded");
    }
    xmppd_module_set_data(m, d);
    xmppd_log(m, XMPPD_LOG_INFO, "PostgreSQL storage, schema version %d, %d connections",
              PG_SCHEMA_VERSION, (int)c->pool_size);
    return 0;
}

/* Before this, the pool finished what was queued (at most PG_DRAIN_MS)
 * and failed the rest. */
static void pg_unload(xmppd_module *m)
{
    pg_db *d = xmppd_module_data(m);
    if (!d)
        return;
    pgpool_free(d->pool);
    xmppd_module_set_data(m, NULL);
    free(d);
}

XMPPD_MODULE(storage_pgsql,
    .version = "1.0",
    .summary = "PostgreSQL storage driver \"pgsql\" (libpq, asynchronous, connection pool)",
    .flags = XMPPD_MOD_GLOBAL,
    .options = pg_options,
    .conf_size = sizeof(pg_conf),
    .load = pg_load,
    .unload = pg_unload);
