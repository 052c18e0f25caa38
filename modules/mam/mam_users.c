/* Which messages go into an account's archive, and the account state that
 * decides it.
 *
 * An incoming message must carry its <stanza-id/> when it is delivered (or
 * stored offline), so the decision is taken while it is routed. It needs
 * the account's preferences, whether the account exists, and for
 * default='roster' its roster: while any of these loads, the account's
 * incoming messages are held (xmppd_hold, in arrival order) and go on
 * once judged. Outgoing messages are not stamped: a copy
 * is judged and archived when the state is there, the message itself goes
 * on at once. An account's state stays cached while it has sessions and
 * for a minute after its last use.
 *
 * Order: while anything of an account waits, later messages of that
 * account queue behind it, so its archive keeps their order. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* twalk_r, tdestroy */
#endif
#include <search.h>
#include <stdlib.h>
#include <string.h>

#include "../roster/roster_api.h"
#include "mam_expire.h"
#include "mam_users.h"

#define MAM_QUEUE_MAX 256     /* messages waiting per account */
#define MAM_IDLE_MS 60000     /* an account without sessions stays cached this long */
#define NS_HINTS "urn:xmpp:hints"

typedef struct mam_entry {
    xmppd_stanza *st; /* incoming: the held message (borrowed from held); outgoing: a copy (ref) */
    xmppd_held *held; /* incoming only */
    bool inbound;
} mam_entry;

typedef struct mam_user {
    char *node;
    char *jid;        /* node@host: the archive's address */
    mam_mod *mod;
    bool loading;     /* existence and preferences being read */
    bool loaded;
    bool exists;
    bool roster_wait; /* a roster load is in flight */
    bool stale;       /* account created or deleted: forget once idle */
    mam_prefs prefs;  /* stored ones, or the module's default */
    mam_entry *q;     /* waiting messages: q[head .. head + n) */
    size_t head, n, cap;
    uint64_t used_ms;
    unsigned long appended; /* since the last item-limit check */
} mam_user;

/* The last message stamped (a message to an unavailable full JID goes
 * on from "message/full" to "message/bare": it is archived once). Shared
 * by every instance, as routing crosses hosts. */
static xmppd_stanza *g_last_stamped; /* ref */

/* ---- the accounts table ------------------------------------------------- */

static int user_cmp(const void *a, const void *b)
{
    return strcmp(((const mam_user *)a)->node, ((const mam_user *)b)->node);
}

static mam_user *user_find(mam_mod *mod, const char *node)
{
    mam_user key = { .node = (char *)node };
    mam_user **found = tfind(&key, &mod->users, user_cmp);
    return found ? *found : NULL;
}

static void entry_end(mam_entry *e);

static void user_free(void *p)
{
    mam_user *u = p;
    for (size_t i = 0; i < u->n; i++)
        entry_end(&u->q[u->head + i]);
    free(u->q);
    mam_prefs_clear(&u->prefs);
    free(u->node);
    free(u->jid);
    free(u);
}

static void user_load(mam_user *u);

/* The account's entry, created (and its loading started) when missing;
 * NULL on OOM. */
static mam_user *user_get(mam_mod *mod, const char *node)
{
    mam_user *u = user_find(mod, node);
    if (u) {
        u->used_ms = xmppd_now_ms();
        return u;
    }
    if (!(u = calloc(1, sizeof *u)))
        return NULL;
    if (!(u->node = strdup(node)) || asprintf(&u->jid, "%s@%s", node, xmppd_host_name(mod->host)) < 0) {
        u->jid = NULL;
        user_free(u);
        return NULL;
    }
    u->mod = mod;
    u->used_ms = xmppd_now_ms();
    u->prefs.def = mod->def;
    if (!tsearch(u, &mod->users, user_cmp)) {
        user_free(u);
        return NULL;
    }
    user_load(u);
    return u;
}

static int any_session(xmppd_session *s, void *ud)
{
    (void)s;
    (void)ud;
    return 1;
}

static bool user_online(const mam_user *u)
{
    return xmppd_user_sessions(u->mod->host, u->node, any_session, NULL) > 0;
}

/* Forgets u unless something of it is in flight or waiting. */
static void user_release(mam_user *u, bool force)
{
    if (u->loading || u->roster_wait || u->n)
        return;
    if (!force && !u->stale && (user_online(u) || xmppd_now_ms() - u->used_ms < MAM_IDLE_MS))
        return;
    tdelete(u, &u->mod->users, user_cmp);
    user_free(u);
}

/* ---- judging --------------------------------------------------------------- */

/* XEP-0313 §5.1.1: chat and normal messages with a body, or marked
 * storable (XEP-0334 <store/>, end-to-end encrypted payloads), unless
 * marked not to be stored. */
static bool storable(const xmppd_stanza *m)
{
    const char *t = xmppd_stanza_attr(m, "type");
    if (strcmp(xmppd_stanza_name(m), "message") != 0 || (t && strcmp(t, "chat") != 0 && strcmp(t, "normal") != 0))
        return false;
    if (xmppd_stanza_child(m, "no-store", NS_HINTS) || xmppd_stanza_child(m, "no-permanent-store", NS_HINTS))
        return false;
    return xmppd_stanza_child(m, "body", NULL) || xmppd_stanza_child(m, "store", NS_HINTS) ||
           xmppd_stanza_child(m, "encrypted", "eu.siacs.conversations.axolotl") ||
           xmppd_stanza_child(m, "encrypted", "urn:xmpp:omemo:2");
}

static const roster_api *roster_of(const mam_mod *mod)
{
    const roster_api *ra = xmppd_use(mod->host, "roster");
    return ra && ra->version == ROSTER_API_VERSION && ra->size >= sizeof(roster_api) ? ra : NULL;
}

/* Is the message (incoming: from the peer, outgoing: to it) archived? 1
 * yes, 0 no, -1 only the roster can say and it is not in memory (r: a
 * roster handed to a load callback, else NULL). */
static int judge(const mam_user *u, const mam_entry *e, roster *r)
{
    if (!u->exists)
        return 0;
    xmppd_jid *peer = xmppd_jid_parse(xmppd_stanza_attr(e->st, e->inbound ? "from" : "to"));
    if (!peer)
        return 0;
    int d = mam_prefs_decide(&u->prefs, peer);
    if (d < 0) {
        const roster_api *ra = roster_of(u->mod);
        roster *rr = r ? r : ra ? ra->cached(ra, u->node) : NULL;
        roster_item it;
        d = !ra ? 0 : !rr ? -1 : ra->get(rr, peer->bare, &it) ? 1 : 0;
    }
    xmppd_jid_free(peer);
    return d;
}

/* Archives the message of e (judged yes) into u's archive. */
static void archive(mam_user *u, mam_entry *e)
{
    mam_mod *mod = u->mod;
    mam_archive a = { mod->archive, u->node, u->jid };
    const char *peer = xmppd_stanza_attr(e->st, e->inbound ? "from" : "to");
    if (mam_engine_archive(&mod->ctx, &a, e->st, peer) != 0) {
        xmppd_log(mod->m, XMPPD_LOG_ERROR, "cannot archive a message of %s: out of memory", u->jid);
        return;
    }
    if (e->inbound) {
        xmppd_stanza_unref(g_last_stamped);
        g_last_stamped = xmppd_stanza_ref(e->st);
    }
    mam_users_appended(mod, u->node);
}

/* ---- waiting messages ------------------------------------------------------ */

/* Lets a held incoming message go on (judged, or never to be), or drops
 * an outgoing copy. */
static void entry_end(mam_entry *e)
{
    if (e->inbound)
        xmppd_held_resume(e->held);
    else
        xmppd_stanza_unref(e->st);
}

/* Queues an outgoing copy (st, a new ref taken) or a held incoming
 * message (held, taken over); false when the account has too many. */
static bool queue_push(mam_user *u, xmppd_stanza *st, xmppd_held *held)
{
    if (u->n >= MAM_QUEUE_MAX)
        return false;
    if (u->head + u->n == u->cap) {
        if (u->head > 0) {
            memmove(u->q, u->q + u->head, u->n * sizeof *u->q);
            u->head = 0;
        } else {
            size_t cap = u->cap ? u->cap * 2 : 8;
            mam_entry *nq = realloc(u->q, cap * sizeof *nq);
            if (!nq)
                return false;
            u->q = nq;
            u->cap = cap;
        }
    }
    if (held)
        u->q[u->head + u->n++] = (mam_entry){ xmppd_held_event(held)->stanza, held, true };
    else
        u->q[u->head + u->n++] = (mam_entry){ xmppd_stanza_ref(st), NULL, false };
    return true;
}

/* A call about an account (to auth, roster or storage). Every one comes
 * back before the instance's unload() (CANCELLED, or a roster NULL), so
 * it names the instance directly. */
typedef struct mam_req {
    mam_mod *mod;
    char *node;
} mam_req;

static mam_req *req_new(mam_user *u)
{
    mam_req *q = calloc(1, sizeof *q);
    if (!q || !(q->node = strdup(u->node))) {
        free(q);
        return NULL;
    }
    q->mod = u->mod;
    return q;
}

/* Frees q; the account it names, or NULL (account forgotten). */
static mam_user *req_end(mam_req *q)
{
    mam_user *u = user_find(q->mod, q->node);
    free(q->node);
    free(q);
    return u;
}

static void roster_loaded(roster *r, void *ud);

/* Judges the waiting messages in order, archiving and releasing them,
 * until one needs a roster that is not in memory (then loads it). */
static void run_queue(mam_user *u, roster *r)
{
    while (u->n && u->loaded) {
        mam_entry *e = &u->q[u->head];
        int d = judge(u, e, r);
        if (d < 0) {
            const roster_api *ra = roster_of(u->mod);
            mam_req *q = u->roster_wait || !ra ? NULL : req_new(u);
            if (q) {
                u->roster_wait = true;
                ra->load(ra, u->mod->m, u->node, roster_loaded, q);
            } else if (!u->roster_wait) {
                d = 0; /* OOM: not archived rather than held for ever */
            }
            if (d < 0)
                return;
        }
        mam_entry done = *e;
        u->head++;
        u->n--;
        if (d)
            archive(u, &done);
        entry_end(&done);
    }
    if (!u->n)
        u->head = 0;
}

/* The roster is in memory while this runs (r NULL: it could not be
 * loaded, and the messages that needed it are not archived). */
static void roster_loaded(roster *r, void *ud)
{
    mam_user *u = req_end(ud);
    if (!u)
        return;
    u->roster_wait = false;
    if (!r) {
        xmppd_log(u->mod->m, XMPPD_LOG_WARN, "roster of %s unavailable: messages not archived", u->jid);
        while (u->n && judge(u, &u->q[u->head], NULL) < 0) {
            mam_entry done = u->q[u->head++];
            u->n--;
            entry_end(&done);
        }
    }
    run_queue(u, r);
    user_release(u, false);
}

/* ---- loading an account's state ---------------------------------------------- */

static void prefs_loaded(int status, json_t *value, void *ud)
{
    mam_req *q = ud;
    if (status == XMPPD_STORE_CANCELLED) { /* the instance is going: nothing to update */
        free(q->node);
        free(q);
        return;
    }
    mam_user *u = req_end(q);
    if (!u)
        return;
    u->loading = false;
    u->loaded = true;
    mam_prefs p;
    if (status == XMPPD_STORE_OK && mam_prefs_from_json(value, &p) == 0) {
        mam_prefs_clear(&u->prefs);
        u->prefs = p;
    } else if (status != XMPPD_STORE_NOT_FOUND) {
        /* unreadable or unavailable: the module's default applies */
        xmppd_log(u->mod->m, XMPPD_LOG_ERROR, "archiving preferences of %s unavailable", u->jid);
    }
    run_queue(u, NULL);
    user_release(u, false);
}

static void exists_answered(int result, void *ud)
{
    mam_req *q = ud;
    mam_mod *mod = q->mod;
    mam_user *u = user_find(mod, q->node);
    if (!u || result == XMPPD_AUTH_CANCELLED) {
        req_end(q); /* unloading: mam_users_free sends what waits */
        return;
    }
    /* RFC 6121 §8.5.2.2.1: nothing is kept for an account that does not
     * exist (a backend failure reads the same: nothing archived) */
    u->exists = result == XMPPD_AUTH_OK;
    if (!u->exists) {
        req_end(q);
        u->loading = false;
        u->loaded = true;
        run_queue(u, NULL);
        user_release(u, false);
        return;
    }
    xmppd_kv_get(mod->prefs, u->node, "", prefs_loaded, q);
}

/* Reads whether the account exists (known when it has a session) and its
 * preferences; messages wait meanwhile. */
static void user_load(mam_user *u)
{
    mam_req *q = req_new(u);
    if (!q) { /* OOM: judged as not archived */
        u->loaded = true;
        return;
    }
    u->loading = true;
    if (user_online(u))
        exists_answered(XMPPD_AUTH_OK, q);
    else
        xmppd_auth_exists(u->mod->m, u->mod->host, u->node, exists_answered, q);
}

/* ---- hooks ------------------------------------------------------------------- */

int mam_users_inbound(xmppd_event *ev, void *ud)
{
    mam_mod *mod = ud;
    xmppd_stanza *st = ev->stanza;
    if (!ev->to || !ev->to->node || !ev->from || st == g_last_stamped ||
        strcmp(xmppd_stanza_name(st), "message") != 0)
        return XMPPD_PASS;
    /* XEP-0359 §6: a stanza-id claiming to be from this archive is forged */
    mam_strip_ids(st, ev->to->bare);
    if (!storable(st))
        return XMPPD_PASS;
    mam_user *u = user_get(mod, ev->to->node);
    if (!u)
        return XMPPD_PASS;
    mam_entry e = { st, NULL, true };
    int d = u->loaded && !u->n ? judge(u, &e, NULL) : -1;
    if (d >= 0) {
        if (d)
            archive(u, &e);
        return XMPPD_PASS;
    }
    xmppd_held *held = u->n < MAM_QUEUE_MAX ? xmppd_hold(ev) : NULL;
    if (!held || !queue_push(u, NULL, held)) {
        xmppd_log(mod->m, XMPPD_LOG_WARN, "too many messages waiting for %s: one not archived", u->jid);
        xmppd_held_free(held);
        return XMPPD_PASS;
    }
    run_queue(u, NULL);
    return XMPPD_HANDLED; /* goes on once judged */
}

int mam_users_outbound(xmppd_event *ev, void *ud)
{
    mam_mod *mod = ud;
    xmppd_stanza *st = ev->stanza;
    /* no 'to', or to the account itself: archived once, as incoming */
    if (!ev->session || !ev->to || !ev->from || !ev->from->node || xmppd_jid_bare_equal(ev->to, ev->from) ||
        !storable(st))
        return XMPPD_PASS;
    mam_user *u = user_get(mod, ev->from->node);
    xmppd_stanza *copy = u ? xmppd_stanza_copy(st) : NULL;
    if (!copy)
        return XMPPD_PASS;
    mam_entry e = { copy, NULL, false };
    int d = u->loaded && !u->n ? judge(u, &e, NULL) : -1;
    if (d > 0)
        archive(u, &e);
    else if (d < 0 && queue_push(u, copy, NULL))
        run_queue(u, NULL);
    else if (d < 0)
        xmppd_log(mod->m, XMPPD_LOG_WARN, "too many messages waiting for %s: one not archived", u->jid);
    xmppd_stanza_unref(copy);
    return XMPPD_PASS;
}

int mam_users_bound(xmppd_event *ev, void *ud)
{
    const char *node = ev->session ? xmppd_session_user(ev->session) : NULL;
    if (node)
        user_get(ud, node);
    return XMPPD_PASS;
}

int mam_users_forget(xmppd_event *ev, void *ud)
{
    mam_user *u = ev->data ? user_find(ud, ev->data) : NULL;
    if (u) {
        /* nothing more goes into a deleted account's archive (the kernel
         * purges it next); a created account is looked up again once the
         * entry, idle, is gone */
        u->exists = false;
        u->stale = true;
        user_release(u, true);
    }
    return XMPPD_PASS;
}

void mam_users_prefs_changed(mam_mod *mod, const char *node, const mam_prefs *p)
{
    mam_user *u = user_find(mod, node);
    mam_prefs copy;
    json_t *doc = u && u->loaded ? mam_prefs_json(p) : NULL;
    if (doc && mam_prefs_from_json(doc, &copy) == 0) {
        mam_prefs_clear(&u->prefs);
        u->prefs = copy;
    } else if (u && u->loaded) {
        user_release(u, true); /* reloaded on next use */
    }
    json_decref(doc);
}

void mam_users_appended(mam_mod *mod, const char *node)
{
    mam_user *u = user_find(mod, node);
    long long limit = mod->conf->max_items;
    /* checked every 1/64 of the limit: an archive exceeds it by at most that */
    if (u && limit > 0 && ++u->appended >= (unsigned long)(limit / 64 + 1)) {
        u->appended = 0;
        mam_expire_trim(mod, node);
    }
}

/* ---- sweeping and unloading ----------------------------------------------------- */

typedef struct sweep_ctx {
    mam_user **v;
    size_t n, cap;
} sweep_ctx;

static void collect(const void *nodep, VISIT which, void *closure)
{
    sweep_ctx *c = closure;
    if (which != postorder && which != leaf)
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        mam_user **v = realloc(c->v, cap * sizeof *v);
        if (!v)
            return;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = *(mam_user *const *)nodep;
}

void mam_users_sweep(mam_mod *mod)
{
    sweep_ctx c = { 0 };
    twalk_r(mod->users, collect, &c);
    for (size_t i = 0; i < c.n; i++)
        user_release(c.v[i], false);
    free(c.v);
}

void mam_users_free(mam_mod *mod)
{
    sweep_ctx c = { 0 };
    twalk_r(mod->users, collect, &c);
    /* held messages still reach their recipients, unarchived */
    for (size_t i = 0; i < c.n; i++) {
        mam_user *u = c.v[i];
        for (; u->n; u->n--, u->head++)
            entry_end(&u->q[u->head]);
    }
    free(c.v);
    tdestroy(mod->users, user_free);
    mod->users = NULL;
    xmppd_stanza_unref(g_last_stamped);
    g_last_stamped = NULL;
}
