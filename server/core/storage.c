/* Storage front end (api/xmppd/storage.h): the registry of storage drivers
 * and the store handles modules open. Each call is forwarded to the driver
 * the store was opened on, with the host name ("" for global modules) and
 * the store name; the caller's callback is wrapped so that, when the
 * opening module unloads before the answer comes, it runs once with
 * XMPPD_STORE_CANCELLED (before the module's unload()) and the driver's
 * answer, when it comes, is dropped. A driver that has not answered within
 * storage_timeout (a database that hangs, a driver thread stuck on a lock)
 * gets the same treatment: the caller is answered XMPPD_STORE_ERROR then,
 * and the late answer is dropped (a write may still have been done). */
#include <event2/event.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/core.h"
#include "core/loop.h"

/* A registered driver; owned by the registry, released when its module
 * unloads. */
typedef struct storage_reg {
    struct storage_reg *next;
    const xmppd_storage_driver *drv; /* borrowed from the driver module */
    void *dd;
    xmppd_module *m;
} storage_reg;

static storage_reg *g_drivers;

/* An open store; owned by the kernel, freed when its module unloads. */
struct xmppd_store {
    xmppd_module *m;
    enum xmppd_store_kind kind;
    char *name;
    char *driver; /* driver name picked at open */
};

/* ---- registry ---- */

static storage_reg *storage_find(const char *name)
{
    for (storage_reg *r = g_drivers; r; r = r->next)
        if (strcmp(r->drv->name, name) == 0)
            return r;
    return NULL;
}

static const char *storage_configured(void)
{
    return g_server.cfg && g_server.cfg->storage ? g_server.cfg->storage : "sqlite";
}

static void storage_release(void *p)
{
    storage_reg *reg = p;
    for (storage_reg **rp = &g_drivers; *rp; rp = &(*rp)->next) {
        if (*rp == reg) {
            *rp = reg->next;
            break;
        }
    }
    free(reg);
}

XMPPD_EXPORT int xmppd_storage_provide(xmppd_module *m, const xmppd_storage_driver *d, void *dd)
{
    /* A table built against ABI 2.0 ends before archive_append_id. */
    if (!d || !d->name || d->version != XMPPD_STORAGE_DRIVER_VERSION ||
        d->size < offsetof(xmppd_storage_driver, archive_append_id)) {
        xmppd_log(m, XMPPD_LOG_ERROR, "storage driver table of an unsupported version");
        return -1;
    }
    /* One driver per name; a newer instance of the same module (a reload
     * loads it before the old one unloads) takes over: the registry is
     * searched newest first. */
    storage_reg *old = storage_find(d->name);
    if (old && (old->m == m || strcmp(old->m->def->name, m->def->name) != 0)) {
        xmppd_log(m, XMPPD_LOG_ERROR, "storage driver \"%s\" is already provided by %s", d->name,
                  old->m->tag);
        return -1;
    }
    storage_reg *reg = calloc(1, sizeof *reg);
    if (!reg)
        return -1;
    *reg = (storage_reg){ g_drivers, d, dd, m };
    if (!module_cleanup_add(m, storage_release, reg)) {
        free(reg);
        return -1;
    }
    g_drivers = reg;
    return 0;
}

/* ---- store handles ---- */

static void store_free(void *p)
{
    xmppd_store *st = p;
    free(st->name);
    free(st->driver);
    free(st);
}

XMPPD_EXPORT xmppd_store *xmppd_store_open(xmppd_module *m, const char *name, enum xmppd_store_kind kind)
{
    const char *driver = storage_configured();
    if (!storage_find(driver)) {
        xmppd_log(m, XMPPD_LOG_ERROR, "cannot open store \"%s\": storage driver \"%s\" is not loaded",
                  name, driver);
        return NULL;
    }
    xmppd_store *st = calloc(1, sizeof *st);
    if (!st || !(st->name = strdup(name)) || !(st->driver = strdup(driver))) {
        if (st)
            store_free(st);
        return NULL;
    }
    st->m = m;
    st->kind = kind;
    if (!module_cleanup_add(m, store_free, st)) {
        store_free(st);
        return NULL;
    }
    return st;
}

static const char *store_host(const xmppd_store *st)
{
    return st->m->host ? st->m->host->name : "";
}

/* ---- wrapped callbacks ---- */

enum store_op { OP_DONE, OP_GET, OP_APPEND, OP_QUERY, OP_COUNT };

/* The module's callback of one call; op says which member is set. */
typedef union store_cb {
    xmppd_store_done_cb done;
    xmppd_kv_get_cb get;
    xmppd_archive_append_cb append;
    xmppd_archive_query_cb query;
    xmppd_archive_count_cb count;
} store_cb;

/* One pending call: holds a ref on the opening module. Freed after the
 * driver's answer (or the deferred failure) has been handled. */
typedef struct store_call {
    xmppd_module *m;
    module_cleanup *cleanup; /* cancels the call when m unloads first */
    struct event *timer;     /* storage_timeout; NULL once fired or without one */
    char *what;              /* "store NAME": for the timeout's log line */
    bool cancelled;          /* the caller was answered (CANCELLED, or ERROR on timeout) */
    enum store_op op;
    store_cb cb;
    void *ud;
    char driver[16];         /* for the latency histogram */
    uint64_t started_ns;
} store_call;

/* xmppd_storage_seconds{driver, op}: from the call to the driver's answer
 * (op: the shape of the call: read, write, append, query, count). */
static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void observe_latency(const store_call *c)
{
    static xmppd_metric *mt;
    static const char *const labels[] = { "driver", "op", NULL };
    static const char *const ops[] = { [OP_DONE] = "write", [OP_GET] = "read",
                                       [OP_APPEND] = "append", [OP_QUERY] = "query",
                                       [OP_COUNT] = "count" };
    if (!mt)
        mt = xmppd_metric_new(NULL, "xmppd_storage_seconds", XMPPD_METRIC_HISTOGRAM,
                              "Latency of storage operations answered by the driver", labels,
                              NULL, 0);
    xmppd_metric_observe(mt, (const char *[]){ c->driver, ops[c->op] },
                         (double)(mono_ns() - c->started_ns) / 1e9);
}

/* Calls c's callback with status (and nothing else). */
static void call_answer_bare(store_call *c, int status)
{
    switch (c->op) {
    case OP_DONE:
        if (c->cb.done)
            c->cb.done(status, c->ud);
        break;
    case OP_GET: c->cb.get(status, NULL, c->ud); break;
    case OP_APPEND:
        if (c->cb.append)
            c->cb.append(status, NULL, c->ud);
        break;
    case OP_QUERY: c->cb.query(status, NULL, 0, true, c->ud); break;
    case OP_COUNT: c->cb.count(status, 0, c->ud); break;
    }
}

/* The opening module unloads: its callback learns so now, while the module
 * still runs; the driver's answer is dropped when it comes. */
static void call_stop_timer(store_call *c)
{
    if (c->timer)
        event_free(c->timer);
    c->timer = NULL;
}

static void call_cancel(void *p)
{
    store_call *c = p;
    c->cleanup = NULL;
    c->cancelled = true;
    call_stop_timer(c);
    call_answer_bare(c, XMPPD_STORE_CANCELLED);
}

/* The driver took too long: the caller gets ERROR now and, like a
 * cancelled call, nothing when the driver answers. The record stays until
 * then (the driver still holds it). */
static void on_call_timeout(evutil_socket_t fd, short what, void *arg)
{
    store_call *c = arg;
    call_stop_timer(c);
    if (c->cleanup) {
        module_cleanup_cancel(c->m, c->cleanup);
        c->cleanup = NULL;
    }
    c->cancelled = true;
    xmppd_log(c->m, XMPPD_LOG_ERROR, "%s: the storage driver did not answer within %lld ms: "
              "answered as failed", c->what ? c->what : "store",
              g_server.cfg ? g_server.cfg->storage_timeout : 0);
    call_answer_bare(c, XMPPD_STORE_ERROR);
}

/* Arms c's timeout when one is configured (failure to arm: no timeout). */
static void call_arm(store_call *c, const xmppd_store *st)
{
    long long ms = g_server.cfg ? g_server.cfg->storage_timeout : 0;
    if (ms <= 0 || !loop_base())
        return;
    size_t n = strlen(st->name) + 8;
    if ((c->what = malloc(n)))
        snprintf(c->what, n, "store %s", st->name);
    if (!(c->timer = evtimer_new(loop_base(), on_call_timeout, c)))
        return;
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(c->timer, &tv);
}

static store_call *call_new(xmppd_store *st, enum store_op op, void *ud)
{
    store_call *c = calloc(1, sizeof *c);
    if (!c) {
        xmppd_log(st->m, XMPPD_LOG_ERROR, "out of memory: store \"%s\" operation dropped", st->name);
        return NULL;
    }
    c->m = st->m;
    c->op = op;
    c->ud = ud;
    snprintf(c->driver, sizeof(c->driver), "%s", st->driver);
    c->started_ns = mono_ns();
    if (!(c->cleanup = module_cleanup_add(c->m, call_cancel, c))) {
        xmppd_log(st->m, XMPPD_LOG_ERROR, "out of memory: store \"%s\" operation dropped", st->name);
        free(c);
        return NULL;
    }
    module_ref(c->m);
    return c;
}

/* Whether the caller still waits for this answer. */
static bool call_live(const store_call *c)
{
    return !c->cancelled;
}

static void call_end(store_call *c)
{
    if (c->cleanup)
        module_cleanup_cancel(c->m, c->cleanup);
    call_stop_timer(c);
    module_unref(c->m);
    free(c->what);
    free(c);
}

/* Each answer first leaves the module's cleanup list, so a callback that
 * unloads its own module cannot cancel the call it is answering. */
static store_call *call_take_quiet(void *ud)
{
    store_call *c = ud;
    call_stop_timer(c);
    if (c->cleanup) {
        module_cleanup_cancel(c->m, c->cleanup);
        c->cleanup = NULL;
    }
    return c;
}

/* The driver answered. */
static store_call *call_take(void *ud)
{
    observe_latency(ud);
    return call_take_quiet(ud);
}

static void on_done(int status, void *ud)
{
    store_call *c = call_take(ud);
    if (call_live(c) && c->cb.done)
        c->cb.done(status, c->ud);
    call_end(c);
}

static void on_get(int status, json_t *value, void *ud)
{
    store_call *c = call_take(ud);
    if (call_live(c))
        c->cb.get(status, value, c->ud);
    call_end(c);
}

static void on_append(int status, const char *id, void *ud)
{
    store_call *c = call_take(ud);
    if (call_live(c) && c->cb.append)
        c->cb.append(status, id, c->ud);
    call_end(c);
}

static void on_query(int status, const xmppd_archive_item *items, size_t n, bool complete, void *ud)
{
    store_call *c = call_take(ud);
    if (call_live(c))
        c->cb.query(status, items, n, complete, c->ud);
    call_end(c);
}

static void on_count(int status, size_t n, void *ud)
{
    store_call *c = call_take(ud);
    if (call_live(c))
        c->cb.count(status, n, c->ud);
    call_end(c);
}

/* Posted: answers c with ERROR (no driver, wrong store kind). */
static void call_fail(void *ud)
{
    store_call *c = call_take_quiet(ud);
    if (call_live(c))
        call_answer_bare(c, XMPPD_STORE_ERROR);
    call_end(c);
}

/* The driver of st, or NULL after arranging an ERROR answer for c (which
 * may be NULL: nobody to answer). */
static const storage_reg *store_driver(xmppd_store *st, enum xmppd_store_kind kind, store_call *c)
{
    storage_reg *reg = storage_find(st->driver);
    if (reg && st->kind == kind)
        return reg;
    if (!reg)
        xmppd_log(st->m, XMPPD_LOG_ERROR, "store \"%s\": storage driver \"%s\" is not loaded",
                  st->name, st->driver);
    else
        xmppd_log(st->m, XMPPD_LOG_ERROR, "store \"%s\" used as the wrong kind of store", st->name);
    if (c)
        xmppd_loop_post(call_fail, c);
    return NULL;
}

/* Every request goes this way: the call record for the module's callback
 * (none for a write whose caller wants no answer: cb NULL with OP_DONE or
 * OP_APPEND) and the driver to forward to. NULL: nothing to forward (out
 * of memory, or an ERROR answer is on its way). */
static const storage_reg *call_start(xmppd_store *st, enum xmppd_store_kind kind,
                                     enum store_op op, store_cb cb, void *ud, store_call **cp)
{
    store_call *c = NULL;
    /* A write made while the module unloads (from its unload(), say) is
     * carried out but not answered: there is nobody left to answer. A read
     * then has no point at all. */
    bool writes = op == OP_DONE || op == OP_APPEND;
    if (!st->m->loaded && !writes)
        return NULL;
    bool unanswered = (op == OP_DONE && !cb.done) || (op == OP_APPEND && !cb.append) ||
                      !st->m->loaded;
    if (!unanswered) {
        if (!(c = call_new(st, op, ud)))
            return NULL;
        c->cb = cb;
        call_arm(c, st);
    }
    *cp = c;
    return store_driver(st, kind, c);
}

/* ---- keyval ---- */

XMPPD_EXPORT void xmppd_kv_get(xmppd_store *st, const char *user, const char *key, xmppd_kv_get_cb cb, void *ud)
{
    store_call *c;
    const storage_reg *r = call_start(st, XMPPD_STORE_KEYVAL, OP_GET, (store_cb){ .get = cb }, ud, &c);
    if (r)
        r->drv->kv_get(r->dd, store_host(st), st->name, user ? user : "", key ? key : "", on_get, c);
}

XMPPD_EXPORT void xmppd_kv_set(xmppd_store *st, const char *user, const char *key, json_t *value,
                  xmppd_store_done_cb cb, void *ud)
{
    store_call *c;
    const storage_reg *r = call_start(st, XMPPD_STORE_KEYVAL, OP_DONE, (store_cb){ .done = cb }, ud, &c);
    if (r)
        r->drv->kv_set(r->dd, store_host(st), st->name, user ? user : "", key ? key : "", value,
                       c ? on_done : NULL, c);
}

XMPPD_EXPORT void xmppd_kv_get_all(xmppd_store *st, const char *user, xmppd_kv_get_cb cb, void *ud)
{
    store_call *c;
    const storage_reg *r = call_start(st, XMPPD_STORE_KEYVAL, OP_GET, (store_cb){ .get = cb }, ud, &c);
    if (r)
        r->drv->kv_get_all(r->dd, store_host(st), st->name, user ? user : "", on_get, c);
}

XMPPD_EXPORT void xmppd_kv_users(xmppd_store *st, xmppd_kv_get_cb cb, void *ud)
{
    store_call *c;
    const storage_reg *r = call_start(st, XMPPD_STORE_KEYVAL, OP_GET, (store_cb){ .get = cb }, ud, &c);
    if (r)
        r->drv->kv_users(r->dd, store_host(st), st->name, on_get, c);
}

/* ---- archive ---- */

XMPPD_EXPORT void xmppd_archive_append(xmppd_store *st, const char *user, const char *with, int64_t when_ms,
                          json_t *value, xmppd_archive_append_cb cb, void *ud)
{
    store_call *c;
    const storage_reg *r =
        call_start(st, XMPPD_STORE_ARCHIVE, OP_APPEND, (store_cb){ .append = cb }, ud, &c);
    if (r)
        r->drv->archive_append(r->dd, store_host(st), st->name, user ? user : "", with, when_ms,
                               value, c ? on_append : NULL, c);
}

/* Does the driver's table have the optional operation field (set)? A
 * driver built against older headers has a shorter table. */
#define DRIVER_HAS(drv, field)                                                                  \
    ((drv)->size >= offsetof(xmppd_storage_driver, field) + sizeof((drv)->field) && (drv)->field)

XMPPD_EXPORT void xmppd_archive_append_id(xmppd_store *st, const char *user, const char *id,
                                          const char *with, int64_t when_ms, json_t *value,
                                          xmppd_archive_append_cb cb, void *ud)
{
    store_call *c;
    const storage_reg *r =
        call_start(st, XMPPD_STORE_ARCHIVE, OP_APPEND, (store_cb){ .append = cb }, ud, &c);
    if (!r)
        return;
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > XMPPD_ARCHIVE_ID_MAX || !DRIVER_HAS(r->drv, archive_append_id)) {
        xmppd_log(st->m, XMPPD_LOG_ERROR, "store \"%s\": %s", st->name,
                  n == 0 || n > XMPPD_ARCHIVE_ID_MAX ? "archive item id of a wrong length"
                                                     : "the storage driver cannot append with an id");
        if (c)
            xmppd_loop_post(call_fail, c);
        return;
    }
    r->drv->archive_append_id(r->dd, store_host(st), st->name, user ? user : "", id, with, when_ms,
                              value, c ? on_append : NULL, c);
}

/* The filter as the driver reads it: a module built against ABI 2.0 has a
 * shorter struct, copied into a zeroed full one (like module descriptors). */
static const xmppd_archive_filter *filter_for(const xmppd_store *st, const xmppd_archive_filter *q,
                                              xmppd_archive_filter *copy)
{
    if (!q || (st->m->def->abi & 0xffffu) >= 1)
        return q;
    memset(copy, 0, sizeof *copy);
    memcpy(copy, q, offsetof(xmppd_archive_filter, ids));
    return copy;
}

XMPPD_EXPORT void xmppd_archive_query(xmppd_store *st, const char *user, const xmppd_archive_filter *q,
                         xmppd_archive_query_cb cb, void *ud)
{
    store_call *c;
    xmppd_archive_filter copy;
    const storage_reg *r =
        call_start(st, XMPPD_STORE_ARCHIVE, OP_QUERY, (store_cb){ .query = cb }, ud, &c);
    if (r)
        r->drv->archive_query(r->dd, store_host(st), st->name, user ? user : "",
                              filter_for(st, q, &copy), on_query, c);
}

XMPPD_EXPORT void xmppd_archive_delete(xmppd_store *st, const char *user, const xmppd_archive_filter *q,
                          xmppd_store_done_cb cb, void *ud)
{
    store_call *c;
    xmppd_archive_filter copy;
    const storage_reg *r =
        call_start(st, XMPPD_STORE_ARCHIVE, OP_DONE, (store_cb){ .done = cb }, ud, &c);
    if (r)
        r->drv->archive_delete(r->dd, store_host(st), st->name, user ? user : "",
                               filter_for(st, q, &copy), c ? on_done : NULL, c);
}

XMPPD_EXPORT void xmppd_archive_count(xmppd_store *st, const char *user, xmppd_archive_count_cb cb, void *ud)
{
    store_call *c;
    const storage_reg *r =
        call_start(st, XMPPD_STORE_ARCHIVE, OP_COUNT, (store_cb){ .count = cb }, ud, &c);
    if (r)
        r->drv->archive_count(r->dd, store_host(st), st->name, user ? user : "", on_count, c);
}

XMPPD_EXPORT void xmppd_archive_replace(xmppd_store *st, const char *user, const char *id,
                                        json_t *value, xmppd_store_done_cb cb, void *ud)
{
    store_call *c;
    const storage_reg *r =
        call_start(st, XMPPD_STORE_ARCHIVE, OP_DONE, (store_cb){ .done = cb }, ud, &c);
    if (!r)
        return;
    if (!DRIVER_HAS(r->drv, archive_replace) || !id || !value) {
        if (!DRIVER_HAS(r->drv, archive_replace))
            xmppd_log(st->m, XMPPD_LOG_ERROR, "store \"%s\": storage driver \"%s\" cannot replace "
                      "archive items", st->name, st->driver);
        if (c)
            xmppd_loop_post(call_fail, c);
        return;
    }
    r->drv->archive_replace(r->dd, store_host(st), st->name, user ? user : "", id, value,
                            c ? on_done : NULL, c);
}

/* ---- account deletion ---- */

/* A purge with no driver loaded: nothing is stored, so nothing to remove. */
typedef struct purge_nop {
    xmppd_store_done_cb cb;
    void *ud;
} purge_nop;

static void purge_nop_done(void *p)
{
    purge_nop *n = p;
    n->cb(XMPPD_STORE_OK, n->ud);
    free(n);
}

XMPPD_EXPORT void xmppd_storage_purge_user(xmppd_host *h, const char *user, xmppd_store_done_cb cb, void *ud)
{
    storage_reg *r = storage_find(storage_configured());
    if (r) {
        r->drv->purge_user(r->dd, h ? h->name : "", user, cb, ud);
        return;
    }
    if (!cb)
        return;
    purge_nop *n = malloc(sizeof *n);
    if (!n) {
        log_kernel("storage", XMPPD_LOG_ERROR, "out of memory: purge of %s not answered", user);
        return;
    }
    *n = (purge_nop){ cb, ud };
    xmppd_loop_post(purge_nop_done, n);
}

/* ---- the kernel's own stores ---- */

/* A kernel call with no driver to take it: answered ERROR on the loop. */
typedef struct kernel_nodrv {
    xmppd_kv_get_cb get;
    xmppd_store_done_cb done;
    void *ud;
} kernel_nodrv;

static void kernel_nodrv_answer(void *p)
{
    kernel_nodrv *k = p;
    if (k->get)
        k->get(XMPPD_STORE_ERROR, NULL, k->ud);
    else
        k->done(XMPPD_STORE_ERROR, k->ud);
    free(k);
}

/* The configured driver, or NULL after arranging the ERROR answer. */
static storage_reg *kernel_driver(const char *store, xmppd_kv_get_cb get, xmppd_store_done_cb done,
                                  void *ud)
{
    storage_reg *r = storage_find(storage_configured());
    if (r)
        return r;
    log_kernel("storage", XMPPD_LOG_ERROR, "store \"%s\": storage driver \"%s\" is not loaded", store,
               storage_configured());
    if (!get && !done)
        return NULL; /* nobody to answer */
    kernel_nodrv *k = malloc(sizeof *k);
    if (!k) {
        log_kernel("storage", XMPPD_LOG_ERROR, "out of memory: store \"%s\" operation not answered",
                   store);
        return NULL;
    }
    *k = (kernel_nodrv){ get, done, ud };
    xmppd_loop_post(kernel_nodrv_answer, k);
    return NULL;
}

void storage_kernel_kv_get(const xmppd_host *h, const char *store, const char *user, const char *key,
                           xmppd_kv_get_cb cb, void *ud)
{
    storage_reg *r = kernel_driver(store, cb, NULL, ud);
    if (r)
        r->drv->kv_get(r->dd, h->name, store, user, key, cb, ud);
}

void storage_kernel_kv_set(const xmppd_host *h, const char *store, const char *user, const char *key,
                           json_t *value, xmppd_store_done_cb cb, void *ud)
{
    storage_reg *r = kernel_driver(store, NULL, cb, ud);
    if (r)
        r->drv->kv_set(r->dd, h->name, store, user, key, value, cb, ud);
}
