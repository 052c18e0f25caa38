/* Accounts' services in memory: loaded from the keyval store "pep" (one
 * user per account, ps_store.c's keys) on first use, shared by the jobs
 * that wait for the load, written back change by change, and dropped
 * oldest-first beyond cache_size when no job uses them and the account has
 * no session. */
#define _GNU_SOURCE /* tdestroy */
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pep.h"

struct pep_waiter {
    pep_fn fn;
    void (*drop)(void *ud);
    void *ud;
    bool with_roster;
    pep_waiter *next;
};

/* What the storage callback of a load gets: the service is looked up again
 * (it may be gone: account deleted, module unloading). */
typedef struct pep_load {
    pep_state *st;
    char *user;
} pep_load;

/* A job waiting for the owner's roster. */
typedef struct pep_roster_job {
    pep_svc *svc;
    pep_fn fn;
    void *ud;
} pep_roster_job;

static int pep_cmp(const void *a, const void *b)
{
    return strcmp(((const pep_svc *)a)->user, ((const pep_svc *)b)->user);
}

static pep_svc *pep_find(pep_state *st, const char *user)
{
    pep_svc key = { .user = (char *)user };
    pep_svc **p = tfind(&key, &st->tree, pep_cmp);
    return p ? *p : NULL;
}

pep_svc *pep_cached(pep_state *st, const char *user)
{
    pep_svc *svc = user ? pep_find(st, user) : NULL;
    return svc && svc->ps ? svc : NULL;
}

/* ---- use order ------------------------------------------------------------------------ */

static void pep_unlink(pep_svc *svc)
{
    pep_state *st = svc->st;
    if (svc->older)
        svc->older->newer = svc->newer;
    else
        st->oldest = svc->newer;
    if (svc->newer)
        svc->newer->older = svc->older;
    else
        st->newest = svc->older;
    svc->older = svc->newer = NULL;
}

static void pep_touch(pep_svc *svc)
{
    pep_state *st = svc->st;
    if (st->newest == svc)
        return;
    if (svc->older || svc->newer || st->oldest == svc)
        pep_unlink(svc);
    svc->older = st->newest;
    if (st->newest)
        st->newest->newer = svc;
    else
        st->oldest = svc;
    st->newest = svc;
}

static void pep_svc_free(void *p)
{
    pep_svc *svc = p;
    for (pep_waiter *w = svc->waiters, *next; w; w = next) {
        next = w->next;
        if (w->drop)
            w->drop(w->ud);
        free(w);
    }
    pep_remotes_free(svc);
    ps_service_free(svc->ps);
    free(svc->user);
    free(svc);
}

static void pep_remove(pep_svc *svc)
{
    pep_state *st = svc->st;
    tdelete(svc, &st->tree, pep_cmp);
    pep_unlink(svc);
    st->n_svc--;
    pep_svc_free(svc);
}

static int pep_any_session(xmppd_session *s, void *ud)
{
    (void)s;
    (void)ud;
    return 1;
}

/* Drops the oldest idle services beyond the cache size. */
static void pep_evict(pep_state *st)
{
    pep_svc *svc = st->oldest;
    while (svc && st->n_svc > st->max_svc) {
        pep_svc *next = svc->newer;
        if (svc->busy == 0 && !svc->loading &&
            xmppd_user_sessions(st->host, svc->user, pep_any_session, NULL) == 0)
            pep_remove(svc);
        svc = next;
    }
}

/* ---- running jobs --------------------------------------------------------------------- */

static const roster_api *pep_roster_api(pep_state *st)
{
    const roster_api *a = xmppd_use(st->host, "roster");
    return a && a->version == ROSTER_API_VERSION && a->size >= sizeof(roster_api) ? a : NULL;
}

static void pep_remove(pep_svc *svc);

static void pep_done(pep_svc *svc)
{
    pep_state *st = svc->st;
    if (--svc->busy == 0 && svc->stale && !svc->loading)
        pep_remove(svc);
    pep_evict(st);
}

static void pep_on_roster(roster *r, void *ud)
{
    pep_roster_job *job = ud;
    pep_svc *svc = job->svc;
    pep_ctx ctx = { .st = svc->st, .svc = svc, .r = r, .rapi = pep_roster_api(svc->st) };
    job->fn(&ctx, job->ud);
    free(job);
    pep_done(svc);
}

static void pep_run(pep_svc *svc, bool with_roster, pep_fn fn, void *ud)
{
    pep_state *st = svc->st;
    const roster_api *rapi = with_roster ? pep_roster_api(st) : NULL;
    pep_roster_job *job = rapi ? calloc(1, sizeof(*job)) : NULL;
    pep_touch(svc);
    svc->busy++;
    if (job) {
        *job = (pep_roster_job){ .svc = svc, .fn = fn, .ud = ud };
        rapi->load(rapi, st->m, svc->user, pep_on_roster, job);
        return;
    }
    pep_ctx ctx = { .st = st, .svc = svc };
    fn(&ctx, ud);
    pep_done(svc);
}

/* ---- loading ----------------------------------------------------------------------------- */

static void pep_on_loaded(int status, json_t *value, void *ud)
{
    pep_load *load = ud;
    pep_state *st = load->st;
    if (status == XMPPD_STORE_CANCELLED) {
        free(load->user);
        free(load);
        return;
    }
    pep_svc *svc = pep_find(st, load->user);
    free(load->user);
    free(load);
    if (!svc || !svc->loading)
        return; /* forgotten meanwhile (account deleted) */
    char *jid = NULL;
    size_t bad = 0;
    if (status == XMPPD_STORE_OK && asprintf(&jid, "%s@%s", svc->user, xmppd_host_name(st->host)) >= 0 &&
        (svc->ps = ps_service_new(jid, true, &st->ops, &st->lim, &st->defaults))) {
        svc->ps->ud = svc;
        if (ps_service_load(svc->ps, value, &bad) < 0) {
            ps_service_free(svc->ps);
            svc->ps = NULL;
        }
    }
    free(jid);
    if (bad)
        xmppd_log(st->m, XMPPD_LOG_WARN, "PEP data of %s: %zu stored entries do not parse",
                  svc->user, bad);
    svc->loading = false;
    svc->known = svc->known || json_object_size(value) > 0;
    pep_waiter *w = svc->waiters;
    svc->waiters = NULL;
    if (!svc->ps) {
        xmppd_log(st->m, XMPPD_LOG_ERROR, "cannot load the PEP data of %s", svc->user);
        svc->busy++; /* stays while the waiters answer */
        for (pep_waiter *next; w; w = next) {
            next = w->next;
            w->fn(NULL, w->ud);
            free(w);
        }
        svc->busy--;
        pep_remove(svc);
        return;
    }
    svc->busy++; /* a waiter's job must not evict the others' service */
    for (pep_waiter *next; w; w = next) {
        next = w->next;
        pep_run(svc, w->with_roster, w->fn, w->ud);
        free(w);
    }
    pep_done(svc);
}

void pep_with_service(pep_state *st, const char *user, bool with_roster, pep_fn fn,
                      void (*drop)(void *ud), void *ud)
{
    pep_svc *svc = pep_find(st, user);
    if (svc && svc->ps) {
        pep_run(svc, with_roster, fn, ud);
        return;
    }
    pep_waiter *w = calloc(1, sizeof(*w));
    if (!svc && w && (svc = calloc(1, sizeof(*svc)))) {
        svc->st = st;
        svc->loading = true;
        pep_load *load = calloc(1, sizeof(*load));
        if (!(svc->user = strdup(user)) || !load || !(load->user = strdup(user)) ||
            tsearch(svc, &st->tree, pep_cmp) == NULL) {
            free(load);
            free(svc->user);
            free(svc);
            svc = NULL;
        } else {
            load->st = st;
            st->n_svc++;
            pep_touch(svc);
            xmppd_kv_get_all(st->store, user, pep_on_loaded, load);
        }
    }
    if (!svc || !w) {
        free(w);
        fn(NULL, ud);
        return;
    }
    *w = (pep_waiter){ .fn = fn, .drop = drop, .ud = ud, .with_roster = with_roster };
    pep_waiter **p = &svc->waiters;
    while (*p)
        p = &(*p)->next;
    *p = w;
}

void pep_forget(pep_state *st, const char *user)
{
    pep_svc *svc = pep_find(st, user);
    if (svc && svc->busy == 0 && !svc->loading)
        pep_remove(svc);
}

void pep_invalidated(pep_state *st, const char *user)
{
    pep_svc *svc = pep_find(st, user);
    if (svc && svc->busy == 0 && !svc->loading)
        pep_remove(svc);
    else if (svc)
        svc->stale = true;
}

void pep_foreach(pep_state *st, int (*fn)(pep_svc *svc, void *ud), void *ud)
{
    for (pep_svc *svc = st->oldest, *next; svc; svc = next) {
        next = svc->newer;
        if (svc->ps && fn(svc, ud))
            return;
    }
}

void pep_cache_free(pep_state *st)
{
    tdestroy(st->tree, pep_svc_free);
    st->tree = NULL;
    st->oldest = st->newest = NULL;
    st->n_svc = 0;
}

/* ---- writing ----------------------------------------------------------------------------- */

/* A write in flight: once stored, the other nodes of a cluster drop their
 * copy of the service. */
typedef struct pep_write {
    pep_state *st;
    char *user;
} pep_write;

static void pep_on_written(int status, void *ud)
{
    pep_write *w = ud;
    if (status != XMPPD_STORE_OK && status != XMPPD_STORE_CANCELLED)
        xmppd_log(w->st->m, XMPPD_LOG_ERROR, "a PEP change could not be stored");
    if (status == XMPPD_STORE_OK && w->user)
        xmppd_cluster_invalidate(w->st->m, w->user);
    free(w->user);
    free(w);
}

static void pep_kv_set(pep_state *st, const char *user, char *key, json_t *value)
{
    pep_write *w = calloc(1, sizeof(*w));
    if (!key || !w) {
        json_decref(value);
        free(key);
        xmppd_log(st->m, XMPPD_LOG_ERROR, "a PEP change could not be stored");
        free(w);
        return;
    }
    w->st = st;
    w->user = xmppd_cluster_node() ? strdup(user) : NULL; /* no cluster: nobody to tell */
    xmppd_kv_set(st->store, user, key, value, pep_on_written, w);
    json_decref(value);
    free(key);
}

void pep_store_node(ps_service *s, const ps_node *n, void *ctx)
{
    (void)ctx;
    pep_svc *svc = s->ud;
    json_t *j = ps_node_json(n);
    if (j)
        pep_kv_set(svc->st, svc->user, ps_key_node(n->name), j);
}

void pep_store_item(ps_service *s, const ps_node *n, const ps_item *it, void *ctx)
{
    (void)ctx;
    pep_svc *svc = s->ud;
    json_t *j = ps_item_json(it);
    if (j)
        pep_kv_set(svc->st, svc->user, ps_key_item(n->name, it->id), j);
}

void pep_drop_item(ps_service *s, const ps_node *n, const char *id, void *ctx)
{
    (void)ctx;
    pep_svc *svc = s->ud;
    pep_kv_set(svc->st, svc->user, ps_key_item(n->name, id), NULL);
}

void pep_drop_node(ps_service *s, const ps_node *n, void *ctx)
{
    for (const ps_item *it = n->first; it; it = it->next)
        if (n->cfg.persist_items)
            pep_drop_item(s, n, it->id, ctx);
    pep_svc *svc = s->ud;
    pep_kv_set(svc->st, svc->user, ps_key_node(n->name), NULL);
}
