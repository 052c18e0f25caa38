/* Retention passes: every cleanup_interval, the host's accounts are
 * listed (auth provider) and visited cleanup_rate per second: items older
 * than expire_after are deleted (one indexed range delete per account),
 * then items beyond max_items (a count, then the oldest surplus). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* tdestroy */
#endif
#include <search.h>
#include <stdlib.h>
#include <string.h>

#include "mam_expire.h"

#define MAM_TICK_MS 1000

typedef struct mam_expire {
    char **users;  /* the pass's accounts (owned), visited from pos */
    size_t n, pos;
    bool listing;  /* the account list is being read */
    void *trimming; /* tsearch set of nodes (owned strings) with a trim in
                       flight: one at a time per account, or two counts
                       taken before either delete would both delete */
} mam_expire;

static void free_users(mam_expire *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->users[i]);
    free(e->users);
    e->users = NULL;
    e->n = e->pos = 0;
}

/* ---- the item limit ------------------------------------------------------ */

typedef struct trim_req {
    mam_mod *mod; /* alive unless CANCELLED */
    char *node;   /* owned by mod->expire->trimming, unless CANCELLED */
} trim_req;

static int node_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The trim of t ends (t freed); CANCELLED: the instance is gone with its
 * set, which freed the node. */
static void trim_end(trim_req *t, int status)
{
    if (status != XMPPD_STORE_CANCELLED) {
        tdelete(t->node, &t->mod->expire->trimming, node_cmp);
        free(t->node);
    }
    free(t);
}

static void on_trimmed(int status, void *ud)
{
    trim_end(ud, status);
}

static void on_count(int status, size_t n, void *ud)
{
    trim_req *t = ud;
    mam_mod *mod = t->mod;
    long long limit = status == XMPPD_STORE_OK ? mod->conf->max_items : 0;
    if (limit <= 0 || (long long)n <= limit) {
        trim_end(t, status);
        return;
    }
    xmppd_archive_filter q = { .max = n - (size_t)limit }; /* the oldest first */
    xmppd_log(mod->m, XMPPD_LOG_DEBUG, "archive of %s: deleting %zu items beyond the limit", t->node,
              n - (size_t)limit);
    xmppd_archive_delete(mod->archive, t->node, &q, on_trimmed, t);
}

void mam_expire_trim(mam_mod *mod, const char *node)
{
    mam_expire *e = mod->expire;
    if (tfind(node, &e->trimming, node_cmp))
        return;
    trim_req *t = malloc(sizeof *t);
    if (!t || !(t->node = strdup(node)) || !tsearch(t->node, &e->trimming, node_cmp)) {
        if (t)
            free(t->node);
        free(t);
        return;
    }
    t->mod = mod;
    xmppd_archive_count(mod->archive, node, on_count, t);
}

/* ---- passes --------------------------------------------------------------------- */

static void visit(mam_mod *mod, const char *node)
{
    const mam_conf *c = mod->conf;
    if (c->expire_after > 0) {
        xmppd_archive_filter q = { .end_ms = xmppd_wallclock_ms() - c->expire_after };
        xmppd_archive_delete(mod->archive, node, &q, NULL, NULL);
    }
    if (c->max_items > 0)
        mam_expire_trim(mod, node);
}

static uint64_t tick(void *ud)
{
    mam_mod *mod = ud;
    mam_expire *e = mod->expire;
    for (long long k = 0; e->pos < e->n && k < mod->conf->cleanup_rate; k++)
        visit(mod, e->users[e->pos++]);
    if (e->pos < e->n)
        return MAM_TICK_MS;
    free_users(e);
    return 0;
}

static void on_users(int result, const char *const *users, size_t n, void *ud)
{
    mam_mod *mod = ud;
    mam_expire *e = mod->expire;
    e->listing = false;
    if (result == XMPPD_AUTH_CANCELLED)
        return; /* unloading */
    if (result != XMPPD_AUTH_OK) {
        xmppd_log(mod->m, XMPPD_LOG_WARN, "retention pass skipped: accounts cannot be listed (%s)",
                  xmppd_auth_result_str(result));
        return;
    }
    free_users(e);
    if (!(e->users = calloc(n ? n : 1, sizeof *e->users)))
        return;
    for (; e->n < n; e->n++)
        if (!(e->users[e->n] = strdup(users[e->n])))
            break;
    if (!xmppd_timer_add(mod->m, 0, tick, mod))
        free_users(e);
}

static uint64_t pass(void *ud)
{
    mam_mod *mod = ud;
    mam_expire *e = mod->expire;
    /* a pass still running (huge host, slow rate) is not started twice */
    if (!e->listing && !e->users) {
        e->listing = true;
        xmppd_auth_list(mod->m, mod->host, on_users, mod);
    }
    return (uint64_t)mod->conf->cleanup_interval;
}

int mam_expire_start(mam_mod *mod)
{
    if (!(mod->expire = calloc(1, sizeof *mod->expire)))
        return -1;
    if (mod->conf->expire_after <= 0 && mod->conf->max_items <= 0)
        return 0;
    /* the first pass soon after start (a minute, or sooner when the
     * interval is shorter), then every cleanup_interval */
    long long first = mod->conf->cleanup_interval < 60000 ? mod->conf->cleanup_interval : 60000;
    return xmppd_timer_add(mod->m, (uint64_t)first, pass, mod) ? 0 : -1;
}

void mam_expire_free(mam_mod *mod)
{
    if (mod->expire) {
        free_users(mod->expire);
        tdestroy(mod->expire->trimming, free);
    }
    free(mod->expire);
    mod->expire = NULL;
}
