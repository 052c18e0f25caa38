/* FAST token records: storage and the per-account lock (fast_tokens.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fast_tokens.h"
#include "util/strmap.h"

/* A held lock: "user@host" -> lock (a localpart cannot hold '@'). */
typedef struct fast_lock {
    bool revoked; /* the account's tokens were revoked meanwhile */
} fast_lock;

static strmap *g_locks;

static char *lock_key(const xmppd_host *h, const char *user)
{
    size_t n = strlen(user) + strlen(h->name) + 2;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%s@%s", user, h->name);
    return k;
}

static void unlock(const xmppd_host *h, const char *user)
{
    char *k = lock_key(h, user);
    free(k && g_locks ? strmap_del(g_locks, k) : NULL);
    free(k);
}

/* ---- load ---------------------------------------------------------------- */

typedef struct load_req {
    fast_records_cb cb;
    void *ud;
} load_req;

static void on_loaded(int status, json_t *value, void *ud)
{
    load_req *r = ud;
    json_t *rec = NULL;
    if (status == XMPPD_STORE_OK && json_is_object(value))
        rec = json_deep_copy(value);
    else if (status == XMPPD_STORE_NOT_FOUND || status == XMPPD_STORE_OK)
        rec = json_object(); /* none yet, or a value of another shape: start afresh */
    r->cb(rec ? XMPPD_STORE_OK : XMPPD_STORE_ERROR, rec, r->ud);
    free(r);
}

int fast_records_acquire(xmppd_host *h, const char *user, fast_records_cb cb, void *ud)
{
    if (!g_locks && !(g_locks = strmap_new()))
        return -1;
    char *k = lock_key(h, user);
    fast_lock *l = k && !strmap_get(g_locks, k) ? calloc(1, sizeof(*l)) : NULL;
    load_req *r = l ? malloc(sizeof(*r)) : NULL;
    if (!r || strmap_put(g_locks, k, l) < 0) {
        free(k);
        free(l);
        free(r);
        return -1;
    }
    free(k);
    *r = (load_req){ cb, ud };
    storage_kernel_kv_get(h, FAST_STORE, user, "", on_loaded, r);
    return 0;
}

/* ---- write back and unlock ----------------------------------------------------- */

typedef struct release_req {
    xmppd_host *h;
    char *user;
    int status;
    xmppd_store_done_cb done;
    void *ud;
} release_req;

static void release_finish(release_req *r)
{
    unlock(r->h, r->user);
    if (r->done)
        r->done(r->status, r->ud);
    free(r->user);
    free(r);
}

static void on_written(int status, void *ud)
{
    release_req *r = ud;
    r->status = status;
    release_finish(r);
}

static void on_nothing_written(void *ud)
{
    release_finish(ud);
}

void fast_records_release(xmppd_host *h, const char *user, json_t *records,
                          xmppd_store_done_cb done, void *ud)
{
    char *k = lock_key(h, user);
    fast_lock *l = k && g_locks ? strmap_get(g_locks, k) : NULL;
    free(k);
    release_req *r = malloc(sizeof(*r));
    if (r && !(r->user = strdup(user))) {
        free(r);
        r = NULL;
    }
    if (!r) {
        log_kernel("fast", XMPPD_LOG_ERROR, "out of memory: tokens of %s not written", user);
        unlock(h, user);
        if (done)
            done(XMPPD_STORE_ERROR, ud);
        return;
    }
    r->h = h;
    r->done = done;
    r->ud = ud;
    r->status = XMPPD_STORE_OK;
    if (l && l->revoked) {
        r->status = XMPPD_STORE_ERROR;
        records = NULL;
    }
    if (!records) {
        xmppd_loop_post(on_nothing_written, r);
        return;
    }
    storage_kernel_kv_set(h, FAST_STORE, user, "", json_object_size(records) ? records : NULL,
                          on_written, r);
}

/* ---- revocation --------------------------------------------------------------------- */

typedef struct revoke_req {
    char *who;
    xmppd_store_done_cb done;
    void *ud;
} revoke_req;

static void on_revoked(int status, void *ud)
{
    revoke_req *r = ud;
    if (status != XMPPD_STORE_OK)
        log_kernel("fast", XMPPD_LOG_ERROR, "could not delete the FAST tokens of %s",
                   r->who ? r->who : "an account");
    r->done(status, r->ud);
    free(r->who);
    free(r);
}

void fast_records_revoke(xmppd_host *h, const char *user, xmppd_store_done_cb done, void *ud)
{
    revoke_req *r = malloc(sizeof(*r));
    char *k = lock_key(h, user);
    fast_lock *l = k && g_locks ? strmap_get(g_locks, k) : NULL;
    if (l)
        l->revoked = true;
    if (!r) {
        free(k);
        log_kernel("fast", XMPPD_LOG_ERROR, "out of memory: FAST tokens of %s not revoked", user);
        storage_kernel_kv_set(h, FAST_STORE, user, "", NULL, NULL, NULL);
        done(XMPPD_STORE_ERROR, ud);
        return;
    }
    *r = (revoke_req){ k, done, ud };
    storage_kernel_kv_set(h, FAST_STORE, user, "", NULL, on_revoked, r);
}
