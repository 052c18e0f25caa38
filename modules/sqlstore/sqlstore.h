/* sqlstore: what the SQL storage drivers (storage_sqlite, storage_pgsql)
 * share. Not a module: a library linked into both (libsqlstore.la).
 *
 * Every call of the storage API (api/xmppd/storage.h) becomes one sqs_op:
 * its arguments copied, its archive filter turned into conditions (qmask),
 * and room for its result. The driver entry points here build the op and
 * hand it to the driver's submit; the driver runs it (SQL, a thread, a
 * connection pool), fills in status and results with the helpers below,
 * and calls sqs_op_done on the loop thread, which answers the caller and
 * frees the op. So a driver holds only what is its own: schema, SQL and
 * how statements run.
 *
 * Ownership: an op owns its copies of the arguments and its results; the
 * driver owns it from submit (or fail_later) until it calls sqs_op_done. */
#ifndef XMPPD_SQLSTORE_H
#define XMPPD_SQLSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <xmppd/xmppd.h>

enum sqs_kind {
    SQS_KV_GET, SQS_KV_SET, SQS_KV_GET_ALL, SQS_KV_USERS,
    SQS_AR_APPEND, SQS_AR_QUERY, SQS_AR_DELETE, SQS_AR_COUNT, SQS_PURGE, SQS_AR_REPLACE,
};

/* The conditions of an archive query or delete: bits of sqs_op.qmask,
 * which the drivers also use to number their statement variants. */
enum {
    SQS_Q_WITH = 1, SQS_Q_START = 2, SQS_Q_END = 4, SQS_Q_AFTER = 8, SQS_Q_BEFORE = 16,
    SQS_Q_REVERSE = 32, SQS_Q_WITH_RES = 64, SQS_Q_IDS = 128, SQS_Q_VARIANTS = 256
};

typedef union sqs_cb {
    xmppd_store_done_cb done;
    xmppd_kv_get_cb get;
    xmppd_archive_append_cb append;
    xmppd_archive_query_cb query;
    xmppd_archive_count_cb count;
} sqs_cb;

typedef struct sqs_op sqs_op;
struct sqs_op {
    sqs_op *next;               /* for the driver's queues */
    void *dd;                   /* the driver instance that runs it */
    enum sqs_kind kind;
    /* in the op's allocation, or NULL: key is the kv key, or the id an
     * appender chose; with a bare JID and with_res its resource; after_s
     * and before_s the ids a query or delete names (after_s: the item a
     * replace changes) */
    const char *host, *store, *user, *key, *with, *with_res, *after_s, *before_s;
    char **ids;                 /* owned copies of the filter's ids */
    size_t n_ids;
    char *text;                 /* the value as compact JSON (owned); NULL: delete */
    int64_t when_ms;            /* append */
    int64_t start_ms, end_ms;   /* filter bounds, as qmask says */
    size_t max;                 /* filter: most items (0: no limit) */
    unsigned qmask;             /* SQS_Q_* */
    /* the driver's, for resolving the ids named (after, before, ids) to
     * rows before the query or delete runs */
    bool resolved;
    int64_t after_row, before_row;
    char *id_list;              /* owned: the ids as the driver binds them to resolve them */
    char *row_list;             /* owned: the rows of ids as the driver binds them */
    /* the result */
    int status;                 /* XMPPD_STORE_*; OK when the driver took the op */
    json_t *value;              /* kv_get, kv_get_all, kv_users (owned) */
    xmppd_archive_item *items;  /* query: each with its strings in one allocation at its id */
    size_t n_items, cap_items;
    bool complete;              /* query: nothing more matches beyond max */
    size_t count;               /* count */
    char new_id[24];            /* append: the id the driver gave, when the appender chose none */
    /* the caller */
    sqs_cb cb;                  /* the member kind says */
    void *ud;
};

/* How a driver takes ops. Called on the loop thread. */
typedef struct sqs_backend {
    /* Takes op (status OK) to run it; sqs_op_done(op) later, never from
     * inside this call. */
    void (*submit)(void *dd, sqs_op *op);
    /* Takes op, which cannot run (status ERROR); sqs_op_done(op) on a
     * later loop turn. */
    void (*fail_later)(void *dd, sqs_op *op);
} sqs_backend;

/* A driver's instance (the dd of its storage driver table) begins with
 * this, so that the entry points below find the driver. */
typedef struct sqs_driver {
    const sqs_backend *be;
    xmppd_module *m;            /* for logs; NULL in unit tests */
} sqs_driver;

/* The entry points of xmppd_storage_driver (storage.h), for a driver
 * table: { SQLSTORE_DRIVER_OPS, .name = "sqlite", .flush = sq_flush }. */
void sqs_kv_get(void *dd, const char *host, const char *store, const char *user, const char *key,
                xmppd_kv_get_cb cb, void *ud);
void sqs_kv_set(void *dd, const char *host, const char *store, const char *user, const char *key,
                json_t *value, xmppd_store_done_cb cb, void *ud);
void sqs_kv_get_all(void *dd, const char *host, const char *store, const char *user, xmppd_kv_get_cb cb,
                    void *ud);
void sqs_kv_users(void *dd, const char *host, const char *store, xmppd_kv_get_cb cb, void *ud);
void sqs_archive_append(void *dd, const char *host, const char *store, const char *user, const char *with,
                        int64_t when_ms, json_t *value, xmppd_archive_append_cb cb, void *ud);
void sqs_archive_append_id(void *dd, const char *host, const char *store, const char *user, const char *id,
                           const char *with, int64_t when_ms, json_t *value, xmppd_archive_append_cb cb,
                           void *ud);
void sqs_archive_query(void *dd, const char *host, const char *store, const char *user,
                       const xmppd_archive_filter *q, xmppd_archive_query_cb cb, void *ud);
void sqs_archive_delete(void *dd, const char *host, const char *store, const char *user,
                        const xmppd_archive_filter *q, xmppd_store_done_cb cb, void *ud);
void sqs_archive_count(void *dd, const char *host, const char *store, const char *user,
                       xmppd_archive_count_cb cb, void *ud);
void sqs_archive_replace(void *dd, const char *host, const char *store, const char *user, const char *id,
                         json_t *value, xmppd_store_done_cb cb, void *ud);
void sqs_purge_user(void *dd, const char *host, const char *user, xmppd_store_done_cb cb, void *ud);

#define SQLSTORE_DRIVER_OPS                                                                   \
    .version = XMPPD_STORAGE_DRIVER_VERSION, .size = sizeof(xmppd_storage_driver),            \
    .kv_get = sqs_kv_get, .kv_set = sqs_kv_set, .kv_get_all = sqs_kv_get_all,                 \
    .kv_users = sqs_kv_users, .archive_append = sqs_archive_append,                           \
    .archive_append_id = sqs_archive_append_id, .archive_query = sqs_archive_query,           \
    .archive_delete = sqs_archive_delete, .archive_count = sqs_archive_count,                 \
    .archive_replace = sqs_archive_replace, .purge_user = sqs_purge_user

/* Answers op's caller with its status and results, then frees op. Loop
 * thread. */
void sqs_op_done(sqs_op *op);

/* Frees op without answering (a driver closing with ops it never ran). */
void sqs_op_free(sqs_op *op);

/* Drops op's results (a retry starts over) and sets its status. */
void sqs_op_reset(sqs_op *op, int status);

/* Filling in results (any thread; each -1 on OOM or a value that is not
 * JSON). json: a stored value's text. */
int sqs_set_value(sqs_op *op, const char *json);              /* kv_get */
int sqs_add_pair(sqs_op *op, const char *key, const char *json); /* kv_get_all */
int sqs_add_user(sqs_op *op, const char *user);               /* kv_users */
/* query: one item; with_res (may be NULL) is joined to with as
 * "with/with_res". Strings are copied. */
int sqs_add_item(sqs_op *op, const char *id, int64_t when_ms, const char *with, const char *with_res,
                 const char *json);

/* Queue stores: archive stores that are only appended to, read whole and
 * deleted from the front (mod_offline's "offline"). The SQL drivers keep
 * them in a table of their own with one index (by user and id), so that
 * delivering a login's queue does not update the indexes MAM's queries
 * need on the archive table; every archive operation works on them the
 * same (peer, time and id filters scan the user's queue). */
#define SQS_QUEUE_STORE "offline"
bool sqs_queue_store(const char *store);
/* sql with every `from` (a table name) made `to`, into buf (truncated to
 * len); returns buf. */
const char *sqs_sql_table(const char *sql, const char *from, const char *to, char *buf, size_t len);

/* Archive ids the drivers assign are positive decimal integers: true with
 * *id_r when s is one. */
bool sqs_parse_id(const char *s, int64_t *id_r);

#endif
