/* sqlstore: the storage API's calls as ops, their results and answers
 * (sqlstore.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlstore.h"

/* ---- op lifetime ---- */

static char *sqs_put_str(char **pos, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *dst = *pos;
    memcpy(dst, s, n);
    *pos += n;
    return dst;
}

/* What a call names, copied into its op: host, store, user, the kv key or
 * an appender's id, the peer, and the ids after / before. */
typedef struct sqs_names {
    const char *host, *store, *user, *key, *with, *after, *before;
} sqs_names;

/* One allocation for the op and its strings (any may be NULL). with may be
 * a full JID: kept as its bare JID (with) and resource (with_res). NULL on
 * OOM. */
static sqs_op *sqs_op_new(void *dd, enum sqs_kind kind, const sqs_names *n, sqs_cb cb, void *ud)
{
    const char *strs[] = { n->host, n->store, n->user, n->key, n->with, n->after, n->before };
    size_t len = sizeof(sqs_op);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        len += strs[i] ? strlen(strs[i]) + 1 : 0;
    sqs_op *op = calloc(1, len);
    if (!op)
        return NULL;
    char *pos = (char *)(op + 1);
    *op = (sqs_op){ .dd = dd, .kind = kind, .cb = cb, .ud = ud };
    op->host = sqs_put_str(&pos, n->host);
    op->store = sqs_put_str(&pos, n->store);
    op->user = sqs_put_str(&pos, n->user);
    op->key = sqs_put_str(&pos, n->key);
    char *w = sqs_put_str(&pos, n->with);
    char *slash = w ? strchr(w, '/') : NULL;
    if (slash) {
        *slash = '\0';
        op->with_res = slash + 1;
    }
    op->with = w;
    op->after_s = sqs_put_str(&pos, n->after);
    op->before_s = sqs_put_str(&pos, n->before);
    return op;
}

void sqs_op_reset(sqs_op *op, int status)
{
    json_decref(op->value);
    op->value = NULL;
    for (size_t i = 0; i < op->n_items; i++) {
        free((char *)op->items[i].id);
        json_decref(op->items[i].value);
    }
    free(op->items);
    op->items = NULL;
    op->n_items = op->cap_items = 0;
    op->complete = false;
    op->count = 0;
    op->new_id[0] = '\0';
    op->status = status;
}

void sqs_op_free(sqs_op *op)
{
    sqs_op_reset(op, XMPPD_STORE_ERROR);
    for (size_t i = 0; i < op->n_ids; i++)
        free(op->ids[i]);
    free(op->ids);
    free(op->id_list);
    free(op->row_list);
    free(op->text);
    free(op);
}

void sqs_op_done(sqs_op *op)
{
    bool ok = op->status == XMPPD_STORE_OK;
    switch (op->kind) {
    case SQS_KV_GET:
    case SQS_KV_GET_ALL:
    case SQS_KV_USERS:
        op->cb.get(op->status, ok ? op->value : NULL, op->ud);
        break;
    case SQS_KV_SET:
    case SQS_AR_DELETE:
    case SQS_AR_REPLACE:
    case SQS_PURGE:
        if (op->cb.done)
            op->cb.done(op->status, op->ud);
        break;
    case SQS_AR_APPEND:
        if (op->cb.append)
            op->cb.append(op->status, !ok ? NULL : op->key ? op->key : op->new_id, op->ud);
        break;
    case SQS_AR_COUNT:
        op->cb.count(op->status, ok ? op->count : 0, op->ud);
        break;
    case SQS_AR_QUERY:
        if (ok)
            op->cb.query(op->status, op->items, op->n_items, op->complete, op->ud);
        else
            op->cb.query(op->status, NULL, 0, true, op->ud);
        break;
    }
    sqs_op_free(op);
}

/* ---- results ---- */

/* Bytes a JSON string holds as they are, without a check of their UTF-8:
 * ASCII from 0x20, but for '"' and '\\'. */
static bool sqs_plain_byte(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

#define SQS_ONES 0x0101010101010101ull
#define SQS_HIGHS 0x8080808080808080ull

/* Non-zero when a byte of v is zero (exact as a yes or no). */
static inline uint64_t sqs_zero_byte(uint64_t v)
{
    return (v - SQS_ONES) & ~v & SQS_HIGHS;
}

/* How many bytes of s[0..n) from the start are plain (sqs_plain_byte),
 * eight at a time while they are (a stored stanza is hundreds of bytes,
 * and a byte at a time was a tenth of an offline delivery's
 * instructions, issue 18). */
static size_t sqs_plain_run(const char *s, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        uint64_t odd = (v & SQS_HIGHS) | ((v - SQS_ONES * 0x20) & ~v & SQS_HIGHS) |
                       sqs_zero_byte(v ^ (SQS_ONES * '"')) | sqs_zero_byte(v ^ (SQS_ONES * '\\'));
        if (odd)
            break;
    }
    while (i < n && sqs_plain_byte((unsigned char)s[i]))
        i++;
    return i;
}

/* A stored value back as JSON (new reference), NULL when it is not JSON.
 * Most values read in bulk are one string without escapes (a serialised
 * stanza: mod_offline, mod_mam), which needs no JSON parser: its text is
 * the string itself. Plain ASCII is taken as it is; a string with other
 * bytes goes through json_stringn, which checks the UTF-8; a control
 * character (invalid raw in JSON) or an escape goes to the parser. */
static json_t *sqs_json(const char *json)
{
    if (!json)
        return NULL;
    if (json[0] == '"') {
        const char *t = json + 1;
        size_t n = strlen(t), run = sqs_plain_run(t, n);
        if (run + 1 == n && t[run] == '"')
            return json_stringn_nocheck(t, run);
        const char *p = t + run;
        while (*p && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
            p++;
        if (*p == '"' && p[1] == '\0')
            return json_stringn(t, (size_t)(p - t));
    }
    return json_loads(json, JSON_DECODE_ANY, NULL);
}

int sqs_set_value(sqs_op *op, const char *json)
{
    json_decref(op->value);
    op->value = sqs_json(json);
    return op->value ? 0 : -1;
}

int sqs_add_pair(sqs_op *op, const char *key, const char *json)
{
    if (!op->value && !(op->value = json_object()))
        return -1;
    json_t *v = sqs_json(json);
    return v && key && json_object_set_new(op->value, key, v) == 0 ? 0 : -1;
}

int sqs_add_user(sqs_op *op, const char *user)
{
    if (!op->value && !(op->value = json_array()))
        return -1;
    return user && json_array_append_new(op->value, json_string(user)) == 0 ? 0 : -1;
}

int sqs_add_item(sqs_op *op, const char *id, int64_t when_ms, const char *with, const char *with_res,
                 const char *json)
{
    if (op->n_items == op->cap_items) {
        size_t cap = op->cap_items ? op->cap_items * 2 : 16;
        xmppd_archive_item *items = realloc(op->items, cap * sizeof *items);
        if (!items)
            return -1;
        op->items = items;
        op->cap_items = cap;
    }
    /* "id\0with[/with_res]\0" in one allocation, at the item's id */
    size_t idn = strlen(id) + 1, wn = with ? strlen(with) + 1 : 0, rn = with && with_res ? strlen(with_res) + 1 : 0;
    char *s = malloc(idn + wn + rn);
    json_t *value = sqs_json(json);
    if (!s || !value) {
        free(s);
        json_decref(value);
        return -1;
    }
    memcpy(s, id, idn);
    if (with)
        snprintf(s + idn, wn + rn, rn ? "%s/%s" : "%s", with, with_res);
    op->items[op->n_items++] = (xmppd_archive_item){ s, when_ms, with ? s + idn : NULL, value };
    return 0;
}

bool sqs_queue_store(const char *store)
{
    return store && strcmp(store, SQS_QUEUE_STORE) == 0;
}

const char *sqs_sql_table(const char *sql, const char *from, const char *to, char *buf, size_t len)
{
    size_t n = 0, fl = strlen(from), tl = strlen(to);
    while (*sql && n + 1 < len) {
        if (strncmp(sql, from, fl) == 0 && n + tl < len) {
            memcpy(buf + n, to, tl);
            n += tl;
            sql += fl;
        } else {
            buf[n++] = *sql++;
        }
    }
    buf[n] = '\0';
    return buf;
}

bool sqs_parse_id(const char *s, int64_t *id_r)
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

/* ---- the entry points ---- */

/* Hands op (from sqs_op_new: NULL on OOM) to the driver. Without memory
 * for an op there is no way to call back later: that is logged, and the
 * caller's callback is lost (only on OOM). */
static void sqs_start(void *dd, sqs_op *op, bool runnable)
{
    sqs_driver *d = dd;
    if (!op) {
        xmppd_log(d->m, XMPPD_LOG_ERROR, "out of memory: storage operation dropped");
        return;
    }
    op->status = runnable ? XMPPD_STORE_OK : XMPPD_STORE_ERROR;
    if (runnable)
        d->be->submit(dd, op);
    else
        d->be->fail_later(dd, op);
}

/* op's value as compact JSON; false on OOM. */
static bool sqs_take_value(sqs_op *op, json_t *value)
{
    return (op->text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY)) != NULL;
}

void sqs_kv_get(void *dd, const char *host, const char *store, const char *user, const char *key,
                xmppd_kv_get_cb cb, void *ud)
{
    sqs_names n = { host, store, user, .key = key };
    sqs_start(dd, sqs_op_new(dd, SQS_KV_GET, &n, (sqs_cb){ .get = cb }, ud), true);
}

void sqs_kv_set(void *dd, const char *host, const char *store, const char *user, const char *key,
                json_t *value, xmppd_store_done_cb cb, void *ud)
{
    sqs_names n = { host, store, user, .key = key };
    sqs_op *op = sqs_op_new(dd, SQS_KV_SET, &n, (sqs_cb){ .done = cb }, ud);
    sqs_start(dd, op, op && (!value || sqs_take_value(op, value)));
}

void sqs_kv_get_all(void *dd, const char *host, const char *store, const char *user, xmppd_kv_get_cb cb,
                    void *ud)
{
    sqs_names n = { host, store, user };
    sqs_start(dd, sqs_op_new(dd, SQS_KV_GET_ALL, &n, (sqs_cb){ .get = cb }, ud), true);
}

void sqs_kv_users(void *dd, const char *host, const char *store, xmppd_kv_get_cb cb, void *ud)
{
    sqs_names n = { host, store };
    sqs_start(dd, sqs_op_new(dd, SQS_KV_USERS, &n, (sqs_cb){ .get = cb }, ud), true);
}

void sqs_archive_append_id(void *dd, const char *host, const char *store, const char *user, const char *id,
                           const char *with, int64_t when_ms, json_t *value, xmppd_archive_append_cb cb,
                           void *ud)
{
    sqs_names n = { host, store, user, .key = id, .with = with };
    sqs_op *op = sqs_op_new(dd, SQS_AR_APPEND, &n, (sqs_cb){ .append = cb }, ud);
    if (op)
        op->when_ms = when_ms;
    sqs_start(dd, op, op && value && sqs_take_value(op, value));
}

void sqs_archive_append(void *dd, const char *host, const char *store, const char *user, const char *with,
                        int64_t when_ms, json_t *value, xmppd_archive_append_cb cb, void *ud)
{
    sqs_archive_append_id(dd, host, store, user, NULL, with, when_ms, value, cb, ud);
}

/* Copies the filter's ids into op. false on OOM or too many. */
static bool sqs_take_ids(sqs_op *op, const xmppd_archive_filter *q)
{
    if (q->n_ids > XMPPD_ARCHIVE_MAX_IDS || !(op->ids = calloc(q->n_ids ? q->n_ids : 1, sizeof *op->ids)))
        return false;
    for (; op->n_ids < q->n_ids; op->n_ids++)
        if (!q->ids[op->n_ids] || !(op->ids[op->n_ids] = strdup(q->ids[op->n_ids])))
            return false;
    op->qmask |= SQS_Q_IDS;
    return true;
}

/* Starts a query or delete of what q matches (NULL: everything of user);
 * q cannot run with too many ids (or OOM on its parts). */
static void sqs_start_query(void *dd, enum sqs_kind kind, const char *host, const char *store, const char *user,
                            const xmppd_archive_filter *q, sqs_cb cb, void *ud)
{
    sqs_names n = { host, store, user, .with = q ? q->with : NULL, .after = q ? q->after_id : NULL,
                    .before = q ? q->before_id : NULL };
    sqs_op *op = sqs_op_new(dd, kind, &n, cb, ud);
    if (!op || !q) {
        sqs_start(dd, op, true);
        return;
    }
    bool bad = q->ids && !sqs_take_ids(op, q);
    if (q->with)
        op->qmask |= SQS_Q_WITH | (op->with_res ? SQS_Q_WITH_RES : 0);
    if (q->start_ms)
        op->qmask |= SQS_Q_START;
    if (q->end_ms)
        op->qmask |= SQS_Q_END;
    if (q->after_id)
        op->qmask |= SQS_Q_AFTER;
    if (q->before_id)
        op->qmask |= SQS_Q_BEFORE;
    if (q->reverse)
        op->qmask |= SQS_Q_REVERSE;
    op->start_ms = q->start_ms;
    op->end_ms = q->end_ms;
    op->max = q->max;
    sqs_start(dd, op, !bad);
}

void sqs_archive_query(void *dd, const char *host, const char *store, const char *user,
                       const xmppd_archive_filter *q, xmppd_archive_query_cb cb, void *ud)
{
    sqs_start_query(dd, SQS_AR_QUERY, host, store, user, q, (sqs_cb){ .query = cb }, ud);
}

void sqs_archive_delete(void *dd, const char *host, const char *store, const char *user,
                        const xmppd_archive_filter *q, xmppd_store_done_cb cb, void *ud)
{
    sqs_start_query(dd, SQS_AR_DELETE, host, store, user, q, (sqs_cb){ .done = cb }, ud);
}

void sqs_archive_count(void *dd, const char *host, const char *store, const char *user,
                       xmppd_archive_count_cb cb, void *ud)
{
    sqs_names n = { host, store, user };
    sqs_start(dd, sqs_op_new(dd, SQS_AR_COUNT, &n, (sqs_cb){ .count = cb }, ud), true);
}

/* The item id (after_s) gets value; NOT_FOUND when the archive has no
 * such item (a malformed id included). */
void sqs_archive_replace(void *dd, const char *host, const char *store, const char *user, const char *id,
                         json_t *value, xmppd_store_done_cb cb, void *ud)
{
    sqs_names n = { host, store, user, .after = id };
    sqs_op *op = sqs_op_new(dd, SQS_AR_REPLACE, &n, (sqs_cb){ .done = cb }, ud);
    sqs_start(dd, op, op && sqs_take_value(op, value));
}

void sqs_purge_user(void *dd, const char *host, const char *user, xmppd_store_done_cb cb, void *ud)
{
    sqs_names n = { host, .user = user };
    sqs_start(dd, sqs_op_new(dd, SQS_PURGE, &n, (sqs_cb){ .done = cb }, ud), true);
}
