/* mod_privacy: users' own filtering rules. XEP-0016 privacy lists (named,
 * ordered allow/deny items by JID, roster group or subscription, a default
 * list per account and an active list per session), enforced in the
 * kernel's routing hooks, and the engine behind XEP-0191 blocking: the
 * blocklist is a view of the default list (privacy_api.h; mod_blocking
 * speaks the protocol).
 *
 * Where rules apply:
 *   "pre-route"        a client's outbound stanza, its session's list; a
 *                      denied stanza gets <not-acceptable/> (XEP-0191
 *                      §3.3: plus <blocked/> when blocking is loaded);
 *   "message|presence|iq/bare|full"
 *                      an inbound stanza for a local account: the default
 *                      list (bare) or the target session's list (full); a
 *                      denied message or IQ get/set gets
 *                      <service-unavailable/>, anything else is dropped.
 *                      Stanzas the server routes on an account's behalf
 *                      (presence broadcasts) skipped "pre-route", so the
 *                      sender's outbound rules are checked here as well;
 *   "deliver"          the target session's own list, for what reaches a
 *                      session without routing (silently dropped).
 * Stanzas between an account and itself or its server are never filtered.
 *
 * Lists must be in memory when a stanza is judged. They load when a client
 * authenticates and stay while the account has sessions; a stanza for an
 * account whose lists (or, for group and subscription items, roster) are
 * not in memory is held (xmppd_hold), the data loaded, and the stanza
 * judged then: refused, or let go on.
 *
 * Storage: keyval store "privacy", key "" per account:
 *   {"default": name|null,
 *    "lists": [{"name": s, "items": [{"type": "jid"|"group"|"subscription",
 *               "value": s, "action": "allow"|"deny", "order": n,
 *               "kinds": ["message","iq","presence-in","presence-out"]}]}]} */
#define _GNU_SOURCE /* tdestroy */
#include <errno.h>
#include <jansson.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "../roster/roster_api.h"
#include "privacy_api.h"
#include "privacy_match.h"

#define NS_PRIVACY "jabber:iq:privacy"
#define NS_BLOCKING_ERRORS "urn:xmpp:blocking:errors"
#define PV_NAME_MAX 1023
#define PV_HELD_MAX 256       /* stanzas held per account while loading */
#define PV_BLOCKLIST_NAME "blocklist"

typedef struct pv_conf {
    long long max_lists;
    long long max_items;
    bool xep0016;
} pv_conf;

static const xmppd_option pv_options[] = {
    { "max_lists", XMPPD_OPT_INT, XMPPD_OFF(pv_conf, max_lists), "20", 1, 1000, NULL, 0,
      "Most privacy lists one account may keep" },
    { "max_items", XMPPD_OPT_INT, XMPPD_OFF(pv_conf, max_items), "500", 1, 100000, NULL, 0,
      "Most items one privacy list (or the blocklist) may hold" },
    { "xep0016", XMPPD_OPT_BOOL, XMPPD_OFF(pv_conf, xep0016), "true", 0, 0, NULL, 0,
      "Offer the XEP-0016 privacy list protocol (off: lists serve only as the blocklist)" },
    { NULL },
};

enum pv_type { PV_ALL, PV_JID, PV_GROUP, PV_SUB };
static const char *const pv_type_names[] = { NULL, "jid", "group", "subscription" };
static const char *const pv_kind_names[] = { "message", "iq", "presence-in", "presence-out" };
static const char *const pv_sub_names[] = { "none", "to", "from", "both" };

typedef struct pv_item {
    enum pv_type type;
    char *value;        /* owned; NULL for PV_ALL */
    xmppd_jid *jid;     /* PV_JID, owned */
    unsigned sub;       /* PV_SUB: ROSTER_SUB_* bits (0: none) */
    bool deny;
    unsigned long order;
    unsigned kinds;     /* XM_KIND_* bits; 0: every stanza */
} pv_item;

typedef struct pv_list {
    char *name;         /* owned */
    pv_item *items;     /* owned, sorted by order */
    size_t n;
    bool needs_roster;  /* has group or subscription items */
} pv_list;

typedef struct pv_held {
    xmppd_held *h;      /* owned */
    bool deliver;       /* held at "deliver", else inbound */
} pv_held;

typedef struct pv_mod pv_mod;

typedef struct pv_acct {
    char *node;         /* owned; the tree key */
    pv_mod *mod;
    pv_list **lists;    /* owned */
    size_t n_lists;
    pv_list *def;       /* one of lists, or NULL */
    bool loading, loaded;
    bool stale;         /* another node changed the lists meanwhile: load again */
    int busy;           /* callbacks running with it */
    pv_held *held;      /* owned ring of stanzas waiting for the load */
    size_t n_held;
    struct pv_waiter *waiters;
} pv_acct;

/* A caller waiting for an account's lists; its xmppd_call tells whether
 * it is still there when the load ends. */
typedef struct pv_waiter {
    struct pv_waiter *next;
    privacy_load_cb cb;
    void *ud;
    xmppd_call *call;
} pv_waiter;

static void pv_waiter_cancelled(void *p)
{
    pv_waiter *w = p;
    w->cb(false, w->ud);
}

/* Per session: the active list's name (NULL: the default list applies). */
typedef struct pv_sess {
    char *active;
} pv_sess;

/* XEP-0016 §2.6 and §2.8 in a cluster: whether a resource on another node
 * has a list active is known from its session marks. A list's name is
 * free text and a mark a short word, so the mark is a digest of the name:
 * "privacy-active:" and 16 hex digits of its SHA-256 (two names of one
 * account sharing 64 bits would only make a change refused as in use). */
#define PV_MARK_PREFIX "privacy-active:"
#define PV_MARK_LEN (sizeof(PV_MARK_PREFIX) - 1 + 16)

static void pv_mark_of(const char *list, char out[PV_MARK_LEN + 1])
{
    unsigned char d[XMPPD_HASH_MAX_LEN];
    memcpy(out, PV_MARK_PREFIX, sizeof(PV_MARK_PREFIX) - 1);
    char *p = out + sizeof(PV_MARK_PREFIX) - 1;
    if (xmppd_digest(XMPPD_HASH_SHA256, list, strlen(list), d) < 0)
        memset(d, 0, 8);
    for (size_t i = 0; i < 8; i++, p += 2)
        snprintf(p, 3, "%02x", d[i]);
}

/* ps->active becomes name (owned; NULL: none), and the session's mark
 * follows (on a remote session's own node; ignored on one server). */
static void pv_sess_activate(xmppd_session *s, pv_sess *ps, char *name)
{
    char mark[PV_MARK_LEN + 1];
    if (ps->active) {
        pv_mark_of(ps->active, mark);
        xmppd_session_mark(s, mark, false);
    }
    free(ps->active);
    ps->active = name;
    if (name) {
        pv_mark_of(name, mark);
        if (xmppd_session_mark(s, mark, true) < 0)
            xmppd_log(NULL, XMPPD_LOG_WARN, "privacy: an active list of %s is not known to the "
                      "other nodes (too many session marks)", xmppd_session_user(s));
    }
}

struct pv_mod {
    privacy_api api;    /* first: API calls find their instance */
    xmppd_module *m;
    xmppd_host *host;
    xmppd_store *store;
    const pv_conf *conf;
    void *accts;        /* tsearch tree of pv_acct *, by node */
    unsigned push_seq;
};

/* An error this module generated: not filtered again. Shared by every
 * instance (every host) of the module, which is what makes cross-host
 * checks see it. */
static const xmppd_stanza *pv_exempt;

/* ---- lists -------------------------------------------------------------- */

static void pv_list_free(pv_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].value);
        xmppd_jid_free(l->items[i].jid);
    }
    free(l->items);
    free(l->name);
    free(l);
}

static pv_list *pv_list_find(const pv_acct *a, const char *name)
{
    for (size_t i = 0; name && i < a->n_lists; i++)
        if (strcmp(a->lists[i]->name, name) == 0)
            return a->lists[i];
    return NULL;
}

static int pv_item_cmp(const void *x, const void *y)
{
    const pv_item *a = x, *b = y;
    return a->order < b->order ? -1 : a->order > b->order;
}

static void pv_list_sort(pv_list *l)
{
    qsort(l->items, l->n, sizeof(*l->items), pv_item_cmp);
    l->needs_roster = false;
    for (size_t i = 0; i < l->n; i++)
        if (l->items[i].type == PV_GROUP || l->items[i].type == PV_SUB)
            l->needs_roster = true;
}

/* Fills it from type/value/action/order strings (XML or storage). NULL or
 * the stanza error condition. */
static const char *pv_item_set(pv_item *it, const char *type, const char *value, const char *action,
                               const char *order)
{
    memset(it, 0, sizeof(*it));
    if (!action || !order)
        return "bad-request";
    if (strcmp(action, "deny") == 0)
        it->deny = true;
    else if (strcmp(action, "allow") != 0)
        return "bad-request";
    char *end;
    errno = 0;
    unsigned long long o = strtoull(order, &end, 10);
    if (!*order || *end || errno || order[0] == '-' || o > 0xffffffffULL)
        return "bad-request";
    it->order = (unsigned long)o;
    if (!type) {
        if (value)
            return "bad-request";
        it->type = PV_ALL;
        return NULL;
    }
    if (!value || !*value || strlen(value) > 3 * XMPPD_JID_PART_MAX + 2)
        return "bad-request";
    if (strcmp(type, "jid") == 0) {
        it->type = PV_JID;
        if (!(it->jid = xmppd_jid_parse(value)))
            return "jid-malformed";
        it->value = strdup(it->jid->full);
    } else if (strcmp(type, "group") == 0) {
        it->type = PV_GROUP;
        it->value = strdup(value);
    } else if (strcmp(type, "subscription") == 0) {
        it->type = PV_SUB;
        unsigned i;
        for (i = 0; i < 4 && strcmp(value, pv_sub_names[i]) != 0; i++)
            ;
        if (i == 4)
            return "bad-request";
        it->sub = i;
        it->value = strdup(value);
    } else {
        return "bad-request";
    }
    return it->value ? NULL : "internal-server-error";
}

static void pv_item_clear(pv_item *it)
{
    free(it->value);
    xmppd_jid_free(it->jid);
    memset(it, 0, sizeof(*it));
}

static unsigned pv_kind_bit(const char *name)
{
    for (unsigned i = 0; i < 4; i++)
        if (strcmp(name, pv_kind_names[i]) == 0)
            return 1u << i;
    return 0;
}

static pv_list *pv_list_new(const char *name)
{
    pv_list *l = calloc(1, sizeof(*l));
    if (l && !(l->name = strdup(name))) {
        free(l);
        return NULL;
    }
    return l;
}

/* Orders must be unique within a list (XEP-0016 §2.2). */
static bool pv_orders_unique(const pv_list *l)
{
    for (size_t i = 1; i < l->n; i++)
        if (l->items[i].order == l->items[i - 1].order)
            return false;
    return true;
}

static pv_list *pv_list_copy(const pv_list *src, const char *name)
{
    pv_list *l = pv_list_new(name ? name : src->name);
    if (!l)
        return NULL;
    l->items = calloc(src->n + 1, sizeof(*l->items));
    if (!l->items) {
        pv_list_free(l);
        return NULL;
    }
    for (size_t i = 0; i < src->n; i++) {
        pv_item *d = &l->items[i];
        *d = src->items[i];
        d->value = src->items[i].value ? strdup(src->items[i].value) : NULL;
        d->jid = src->items[i].jid ? xmppd_jid_dup(src->items[i].jid) : NULL;
        l->n++;
        if ((src->items[i].value && !d->value) || (src->items[i].jid && !d->jid)) {
            pv_list_free(l);
            return NULL;
        }
    }
    l->needs_roster = src->needs_roster;
    return l;
}

/* ---- evaluation (XEP-0016 §2.1, §2.10 - §2.14) ----------------------------- */

static const roster_api *pv_roster_api(const xmppd_host *h)
{
    const roster_api *api = xmppd_use(h, "roster");
    if (!api || api->version != ROSTER_API_VERSION || api->size < sizeof(roster_api))
        return NULL;
    return api;
}

/* Does list l of account node deny st exchanged with peer (kind as
 * xm_kind gives it)? First matching item decides; no match allows. */
static bool pv_denies(const pv_mod *mod, const char *node, const pv_list *l, const xmppd_jid *peer,
                      unsigned kind)
{
    if (!l || !peer)
        return false;
    const roster_api *ra = NULL;
    roster *r = NULL;
    if (l->needs_roster && (ra = pv_roster_api(mod->host)))
        r = ra->cached(ra, node);
    for (size_t i = 0; i < l->n; i++) {
        const pv_item *it = &l->items[i];
        if (it->kinds && !(it->kinds & kind))
            continue;
        bool match = false;
        roster_item ri;
        switch (it->type) {
        case PV_ALL:
            match = true;
            break;
        case PV_JID:
            match = xm_jid_matches(it->jid, peer);
            break;
        case PV_GROUP:
            match = r && ra->in_group(r, peer->bare, it->value);
            break;
        case PV_SUB:
            /* A peer not in the roster has subscription "none". */
            if (r && ra->get(r, peer->bare, &ri))
                match = (ri.sub & 3) == it->sub;
            else
                match = it->sub == 0;
            break;
        }
        if (match)
            return it->deny;
    }
    return false;
}

/* The blocklist view: is `it` a blocked-JID item (XEP-0191 §5)? */
static bool pv_is_block_item(const pv_item *it)
{
    return it->type == PV_JID && it->deny && it->kinds == 0;
}

static bool pv_list_blocks(const pv_list *l, const char *jid)
{
    for (size_t i = 0; l && i < l->n; i++)
        if (pv_is_block_item(&l->items[i]) && strcmp(l->items[i].value, jid) == 0)
            return true;
    return false;
}

/* ---- accounts ------------------------------------------------------------- */

static int pv_acct_cmp(const void *a, const void *b)
{
    return strcmp(((const pv_acct *)a)->node, ((const pv_acct *)b)->node);
}

static pv_acct *pv_acct_find(pv_mod *mod, const char *node)
{
    pv_acct key = { .node = (char *)node };
    pv_acct **p = tfind(&key, &mod->accts, pv_acct_cmp);
    return p ? *p : NULL;
}

static void pv_acct_clear_lists(pv_acct *a)
{
    for (size_t i = 0; i < a->n_lists; i++)
        pv_list_free(a->lists[i]);
    free(a->lists);
    a->lists = NULL;
    a->n_lists = 0;
    a->def = NULL;
}

static void pv_acct_free(void *p)
{
    pv_acct *a = p;
    pv_acct_clear_lists(a);
    /* unloading: a new instance, if any, judges them */
    for (size_t i = 0; i < a->n_held; i++)
        xmppd_held_resume(a->held[i].h);
    free(a->held);
    while (a->waiters) {
        pv_waiter *w = a->waiters;
        a->waiters = w->next;
        if (xmppd_call_finish(w->call))
            w->cb(false, w->ud);
        free(w);
    }
    free(a->node);
    free(a);
}

static int pv_any_session(xmppd_session *s, void *ud)
{
    return 1;
}

/* Drops a from memory when nothing needs it: no load or callback running,
 * nothing held, no bound session. */
static void pv_acct_release(pv_acct *a)
{
    if (a->busy > 0 || a->loading || a->n_held > 0)
        return;
    if (xmppd_user_sessions(a->mod->host, a->node, pv_any_session, NULL) > 0)
        return;
    tdelete(a, &a->mod->accts, pv_acct_cmp);
    pv_acct_free(a);
}

/* Parses the stored document into a's lists; false when it is unusable. */
static bool pv_acct_parse(pv_acct *a, const json_t *doc)
{
    size_t i, j;
    json_t *jl, *ji;
    json_array_foreach(json_object_get(doc, "lists"), i, jl) {
        const char *name = json_string_value(json_object_get(jl, "name"));
        if (!name || pv_list_find(a, name))
            continue;
        pv_list *l = pv_list_new(name);
        json_t *items = json_object_get(jl, "items");
        pv_list **v = l ? realloc(a->lists, (a->n_lists + 1) * sizeof(*v)) : NULL;
        if (!v || !(l->items = calloc(json_array_size(items) + 1, sizeof(*l->items)))) {
            pv_list_free(l);
            if (v)
                a->lists = v;
            return false;
        }
        a->lists = v;
        a->lists[a->n_lists++] = l;
        json_array_foreach(items, j, ji) {
            char order[24];
            snprintf(order, sizeof(order), "%lld", json_integer_value(json_object_get(ji, "order")));
            pv_item *it = &l->items[l->n];
            if (pv_item_set(it, json_string_value(json_object_get(ji, "type")),
                            json_string_value(json_object_get(ji, "value")),
                            json_string_value(json_object_get(ji, "action")), order)) {
                pv_item_clear(it);
                continue;
            }
            size_t k;
            json_t *jk;
            json_array_foreach(json_object_get(ji, "kinds"), k, jk)
                it->kinds |= pv_kind_bit(json_string_value(jk) ? json_string_value(jk) : "");
            l->n++;
        }
        pv_list_sort(l);
    }
    a->def = pv_list_find(a, json_string_value(json_object_get(doc, "default")));
    return true;
}

static json_t *pv_acct_json(const pv_acct *a)
{
    json_t *lists = json_array();
    json_t *doc = json_pack("{s:o?, s:o}", "default", a->def ? json_string(a->def->name) : NULL,
                            "lists", lists);
    if (!doc)
        return NULL;
    for (size_t i = 0; i < a->n_lists; i++) {
        const pv_list *l = a->lists[i];
        json_t *items = json_array();
        for (size_t j = 0; items && j < l->n; j++) {
            const pv_item *it = &l->items[j];
            json_t *kinds = json_array();
            for (unsigned k = 0; kinds && k < 4; k++)
                if (it->kinds & (1u << k))
                    json_array_append_new(kinds, json_string(pv_kind_names[k]));
            json_t *ji = json_pack("{s:s, s:I, s:o}", "action", it->deny ? "deny" : "allow", "order",
                                   (json_int_t)it->order, "kinds", kinds ? kinds : json_array());
            if (ji && it->type != PV_ALL) {
                json_object_set_new(ji, "type", json_string(pv_type_names[it->type]));
                json_object_set_new(ji, "value", json_string(it->value));
            }
            json_array_append_new(items, ji);
        }
        json_array_append_new(lists, json_pack("{s:s, s:o}", "name", l->name, "items",
                                               items ? items : json_array()));
    }
    return doc;
}

typedef struct pv_save_req {
    pv_mod *mod;
    privacy_done_cb done;
    void *ud;
    xmppd_call *call; /* the caller of done */
    char *node;       /* the account: the other nodes of a cluster are told */
} pv_save_req;

static void pv_save_cancelled(void *p)
{
    pv_save_req *q = p;
    q->done(-1, q->ud);
}

static void pv_saved(int status, void *ud)
{
    pv_save_req *q = ud;
    if (status != XMPPD_STORE_OK && status != XMPPD_STORE_CANCELLED)
        xmppd_log(q->mod->m, XMPPD_LOG_ERROR, "cannot store privacy lists");
    if (status == XMPPD_STORE_OK)
        xmppd_cluster_invalidate(q->mod->m, q->node);
    if (q->done && xmppd_call_finish(q->call))
        q->done(status == XMPPD_STORE_OK ? 0 : -1, q->ud);
    free(q->node);
    free(q);
}

/* Writes a's lists; done (may be NULL) gets the outcome later, unless
 * caller (NULL: this module) unloads first (then done hears -1 at once). */
static void pv_acct_save(pv_acct *a, xmppd_module *caller, privacy_done_cb done, void *ud)
{
    json_t *doc = pv_acct_json(a);
    pv_save_req *q = malloc(sizeof(*q));
    char *node = strdup(a->node);
    xmppd_call *call = q && done ? xmppd_call_new(caller, pv_save_cancelled, q) : NULL;
    if (!doc || !q || !node || (done && !call)) {
        json_decref(doc);
        free(q);
        free(node);
        xmppd_log(a->mod->m, XMPPD_LOG_ERROR, "cannot store privacy lists: out of memory");
        if (done)
            done(-1, ud);
        return;
    }
    *q = (pv_save_req){ a->mod, done, ud, call, node };
    /* An account with no lists and no default keeps no row. */
    xmppd_kv_set(a->mod->store, a->node, "", a->n_lists ? doc : NULL, pv_saved, q);
    json_decref(doc);
}

/* ---- holding stanzas while an account loads --------------------------------- */

/* Holds ev's stanza until the account's data is in memory; false when it
 * cannot (too many held, OOM). */
static bool pv_hold(pv_acct *a, const xmppd_event *ev, bool deliver)
{
    if (a->n_held >= PV_HELD_MAX)
        return false;
    if (!a->held && !(a->held = calloc(PV_HELD_MAX, sizeof(*a->held))))
        return false;
    xmppd_held *h = xmppd_hold(ev);
    if (!h)
        return false;
    a->held[a->n_held++] = (pv_held){ h, deliver };
    return true;
}

static bool pv_judge_inbound(pv_mod *mod, pv_acct *a, const xmppd_event *ev);
static bool pv_judge_deliver(pv_mod *mod, pv_acct *a, const xmppd_event *ev);
static void pv_refuse_inbound(pv_mod *mod, const xmppd_event *ev);

/* Judges every held stanza, in arrival order, now that the account's
 * data is in memory (or could not be read: then nothing is denied). */
static void pv_release_held(pv_acct *a)
{
    pv_held *held = a->held;
    size_t n = a->n_held;
    a->held = NULL;
    a->n_held = 0;
    for (size_t i = 0; i < n; i++) {
        const xmppd_event *ev = xmppd_held_event(held[i].h);
        bool deny = a->loaded && (held[i].deliver ? pv_judge_deliver(a->mod, a, ev)
                                                  : pv_judge_inbound(a->mod, a, ev));
        if (!deny) {
            xmppd_held_resume(held[i].h);
            continue;
        }
        if (!held[i].deliver)
            pv_refuse_inbound(a->mod, ev);
        xmppd_held_free(held[i].h);
    }
    free(held);
}

static bool pv_needs_roster(const pv_acct *a)
{
    for (size_t i = 0; i < a->n_lists; i++)
        if (a->lists[i]->needs_roster)
            return true;
    return false;
}

static void pv_reload(pv_acct *a);

static void pv_finish_load(pv_acct *a)
{
    if (a->stale) { /* what was read may predate another node's change */
        pv_reload(a);
        return;
    }
    a->busy++;
    pv_release_held(a);
    while (a->waiters) {
        pv_waiter *w = a->waiters;
        a->waiters = w->next;
        if (xmppd_call_finish(w->call))
            w->cb(a->loaded, w->ud);
        free(w);
    }
    a->busy--;
    pv_acct_release(a);
}

/* The roster is in memory while this runs: judge the held stanzas now. */
static void pv_roster_loaded(roster *r, void *ud)
{
    pv_acct *a = ud;
    a->busy--;
    pv_finish_load(a);
}

static void pv_on_loaded(int status, json_t *value, void *ud)
{
    pv_acct *a = ud;
    a->loading = false;
    if (status == XMPPD_STORE_OK || status == XMPPD_STORE_NOT_FOUND) {
        a->loaded = status == XMPPD_STORE_NOT_FOUND || pv_acct_parse(a, value);
        if (!a->loaded)
            pv_acct_clear_lists(a);
    }
    if (!a->loaded && status != XMPPD_STORE_CANCELLED)
        xmppd_log(a->mod->m, XMPPD_LOG_ERROR, "cannot load the privacy lists of %s", a->node);
    const roster_api *ra = pv_roster_api(a->mod->host);
    if (a->loaded && a->n_held > 0 && pv_needs_roster(a) && ra && !ra->cached(ra, a->node)) {
        a->busy++;
        ra->load(ra, a->mod->m, a->node, pv_roster_loaded, a);
        return;
    }
    pv_finish_load(a);
}

/* Reads a's lists again (another node of the cluster changed them);
 * stanzas for the account are held meanwhile, as at the first load. */
static void pv_reload(pv_acct *a)
{
    a->stale = false;
    pv_acct_clear_lists(a);
    a->loaded = false;
    a->loading = true;
    xmppd_kv_get(a->mod->store, a->node, "", pv_on_loaded, a);
}

/* The account's entry, created (and its load started) when absent. */
static pv_acct *pv_acct_get(pv_mod *mod, const char *node)
{
    pv_acct *a = pv_acct_find(mod, node);
    if (a)
        return a;
    a = calloc(1, sizeof(*a));
    if (!a || !(a->node = strdup(node)) || !tsearch(a, &mod->accts, pv_acct_cmp)) {
        if (a)
            free(a->node);
        free(a);
        return NULL;
    }
    a->mod = mod;
    a->loading = true;
    xmppd_kv_get(mod->store, node, "", pv_on_loaded, a);
    return a;
}

/* ---- sessions ------------------------------------------------------------ */

static pv_sess *pv_sess_of(const pv_mod *mod, const xmppd_session *s)
{
    return s ? xmppd_session_get(s, mod->m) : NULL;
}

/* The list in force for session s of account a (its active list, else
 * the default list). s NULL: the default. */
static const pv_list *pv_effective(const pv_mod *mod, const pv_acct *a, const xmppd_session *s)
{
    pv_sess *ps = pv_sess_of(mod, s);
    if (ps && ps->active) {
        const pv_list *l = pv_list_find(a, ps->active);
        if (l)
            return l;
    }
    return a->def;
}

static bool pv_uses(const pv_mod *mod, const pv_acct *a, const xmppd_session *s, const pv_list *l)
{
    return pv_effective(mod, a, s) == l;
}

/* ---- errors ---------------------------------------------------------------- */

/* An error reply to st (RFC 6120 §8.3; a message keeps its payload), with
 * an application condition element when app_ns is given. */
static xmppd_stanza *pv_error(const xmppd_stanza *st, const char *cond, const char *app,
                              const char *app_ns)
{
    xmppd_stanza *e = xmppd_stanza_error_reply(st, NULL, cond, NULL);
    if (!e)
        return NULL;
    xmppd_stanza *err = xmppd_stanza_child(e, "error", NULL);
    if (app && err)
        xmppd_stanza_tag(err, app, app_ns);
    if (xm_stanza_of(st) != XM_MESSAGE || !err)
        return e;
    xmppd_stanza *m = xmppd_stanza_copy(st);
    if (!m)
        return e;
    static const char *const attrs[] = { "to", "from", "type", "id" };
    for (size_t i = 0; i < 4; i++)
        xmppd_stanza_set_attr(m, attrs[i], xmppd_stanza_attr(e, attrs[i]));
    xmppd_stanza_add(m, xmppd_stanza_copy(err));
    xmppd_stanza_unref(e);
    return m;
}

/* Is st one that gets no error (errors, IQ results: RFC 6120 §8.3.1)? */
static bool pv_no_error(const xmppd_stanza *st)
{
    const char *t = xmppd_stanza_attr(st, "type");
    if (t && strcmp(t, "error") == 0)
        return true;
    return xm_stanza_of(st) == XM_IQ && t && strcmp(t, "result") == 0;
}

/* Sends e (consumed) back to the sender of ev; the error is exempt from
 * filtering (the sender's rules would otherwise drop the answer). */
static void pv_send_back(pv_mod *mod, const xmppd_event *ev, xmppd_stanza *e)
{
    if (!e)
        return;
    const xmppd_stanza *prev = pv_exempt;
    pv_exempt = e;
    const xmppd_jid *sj = ev->session ? xmppd_session_jid(ev->session) : NULL;
    if (sj && ev->from && xmppd_jid_equal(sj, ev->from))
        xmppd_session_send(ev->session, e);
    else
        xmppd_route(ev->host ? ev->host : mod->host, e);
    pv_exempt = prev;
    xmppd_stanza_unref(e);
}

/* ---- the checks --------------------------------------------------------------- */

/* Never filtered: the account with itself, or with its own server. */
static bool pv_self(const xmppd_jid *account, const xmppd_jid *peer)
{
    if (!account || !peer)
        return true;
    if (strcmp(account->domain, peer->domain) != 0)
        return false;
    return !peer->node || (account->node && strcmp(account->node, peer->node) == 0);
}

/* Outbound rules of the local account `from` (any host with privacy) for
 * a stanza to `to`, judged with the lists in memory. */
static bool pv_out_denied(const xmppd_jid *from, const xmppd_jid *to, const xmppd_stanza *st,
                          xmppd_session *sender)
{
    if (!from->node || pv_self(from, to))
        return false;
    xmppd_host *h = xmppd_host_find(from->domain);
    pv_mod *smod = h ? (pv_mod *)xmppd_use(h, "privacy") : NULL;
    if (!smod || smod->api.version != PRIVACY_API_VERSION)
        return false;
    pv_acct *a = pv_acct_find(smod, from->node);
    if (!a || !a->loaded)
        return false;
    if (!sender && from->resource)
        sender = xmppd_session_find(from);
    return pv_denies(smod, from->node, pv_effective(smod, a, sender), to, xm_kind(st, false));
}

/* pre-route: a client's own stanza going out. */
static int pv_on_pre_route(xmppd_event *ev, void *ud)
{
    pv_mod *mod = ud;
    if (!ev->session || !ev->from || !ev->to || !ev->from->node || pv_self(ev->from, ev->to))
        return XMPPD_PASS;
    pv_acct *a = pv_acct_find(mod, ev->from->node);
    if (!a || !a->loaded)
        return XMPPD_PASS;
    const pv_list *l = pv_effective(mod, a, ev->session);
    if (!pv_denies(mod, ev->from->node, l, ev->to, xm_kind(ev->stanza, false)))
        return XMPPD_PASS;
    if (!pv_no_error(ev->stanza)) {
        bool blocking = xmppd_host_has_module(mod->host, "blocking") && l == a->def &&
                        pv_list_blocks(l, ev->to->full) + pv_list_blocks(l, ev->to->bare) +
                                pv_list_blocks(l, ev->to->domain) > 0;
        pv_send_back(mod, ev, pv_error(ev->stanza, "not-acceptable", blocking ? "blocked" : NULL,
                                       NS_BLOCKING_ERRORS));
    }
    return XMPPD_HANDLED;
}

/* Answers (or drops) a stanza denied on the way in (XEP-0016 §2.13,
 * XEP-0191 §3.3): messages and IQ get/set learn service-unavailable, the
 * rest is dropped without a word. */
static void pv_refuse_inbound(pv_mod *mod, const xmppd_event *ev)
{
    enum xm_stanza k = xm_stanza_of(ev->stanza);
    const char *t = xmppd_stanza_attr(ev->stanza, "type");
    bool answer = !pv_no_error(ev->stanza) &&
                  (k == XM_MESSAGE || (k == XM_IQ && t && (strcmp(t, "get") == 0 || strcmp(t, "set") == 0)));
    if (answer)
        pv_send_back(mod, ev, pv_error(ev->stanza, "service-unavailable", NULL, NULL));
}

/* The list that judges an inbound stanza to a loaded account: the target
 * session's (full JID) or the default one. */
static const pv_list *pv_inbound_list(pv_mod *mod, pv_acct *a, const xmppd_event *ev)
{
    xmppd_session *target = ev->to->resource ? xmppd_session_find(ev->to) : NULL;
    return pv_effective(mod, a, target);
}

/* Is an inbound stanza to a loaded account denied? */
static bool pv_judge_inbound(pv_mod *mod, pv_acct *a, const xmppd_event *ev)
{
    return pv_denies(mod, ev->to->node, pv_inbound_list(mod, a, ev), ev->from, xm_kind(ev->stanza, true));
}

/* A stanza that cannot be held is refused for now (RFC 6120 §8.3.3.18). */
static int pv_hold_or_wait(pv_acct *a, xmppd_event *ev)
{
    if (pv_hold(a, ev, false))
        return XMPPD_HANDLED;
    return pv_no_error(ev->stanza) ? XMPPD_HANDLED : xmppd_reply_error(ev, "wait", "resource-constraint", NULL);
}

/* message|presence|iq/bare|full for a local account. */
static int pv_on_inbound(xmppd_event *ev, void *ud)
{
    pv_mod *mod = ud;
    const xmppd_jid *to = ev->to, *from = ev->from;
    if (!to || !to->node || !from || ev->stanza == pv_exempt || pv_self(to, from))
        return XMPPD_PASS;
    /* Stanzas that skipped pre-route: the sender's outbound rules. Not for
     * an error another node of the cluster made and sent here: it was
     * decided there (this module's own errors, exempt there, must reach a
     * blocked sender: XEP-0191 §3.5). */
    const xmppd_jid *sj = ev->session ? xmppd_session_jid(ev->session) : NULL;
    bool decided = pv_no_error(ev->stanza) && xmppd_cluster_arrived(ev->stanza);
    if (!(sj && xmppd_jid_equal(sj, from)) && !decided && pv_out_denied(from, to, ev->stanza, NULL))
        return XMPPD_HANDLED;
    pv_acct *a = pv_acct_get(mod, to->node);
    if (a && a->loading)
        return pv_hold_or_wait(a, ev);
    if (!a || !a->loaded)
        return XMPPD_PASS;
    const pv_list *l = pv_inbound_list(mod, a, ev);
    const roster_api *ra = l && l->needs_roster ? pv_roster_api(mod->host) : NULL;
    if (ra && !ra->cached(ra, to->node)) {
        /* Judged once the roster is in memory (the roster module shares
         * concurrent loads of one account). */
        int rc = pv_hold_or_wait(a, ev);
        if (a->n_held == 1 && rc == XMPPD_HANDLED) {
            a->busy++;
            ra->load(ra, a->mod->m, to->node, pv_roster_loaded, a);
        }
        return rc;
    }
    if (!pv_judge_inbound(mod, a, ev))
        return XMPPD_PASS;
    pv_refuse_inbound(mod, ev);
    return XMPPD_HANDLED;
}

/* Is what reaches session s (of a loaded account) denied by its list? */
static bool pv_judge_deliver(pv_mod *mod, pv_acct *a, const xmppd_event *ev)
{
    xmppd_session *s = ev->data;
    const xmppd_jid *me = xmppd_session_jid(s);
    const pv_list *l = me ? pv_effective(mod, a, s) : NULL;
    if (!l || l->n == 0)
        return false;
    const char *from_s = xmppd_stanza_attr(ev->stanza, "from");
    xmppd_jid *from = from_s ? xmppd_jid_parse(from_s) : NULL;
    bool deny = from && !pv_self(me, from) && pv_denies(mod, me->node, l, from, xm_kind(ev->stanza, true));
    xmppd_jid_free(from);
    return deny;
}

/* deliver: what reaches one session, judged by that session's list. */
static int pv_on_deliver(xmppd_event *ev, void *ud)
{
    pv_mod *mod = ud;
    xmppd_session *s = ev->data;
    const xmppd_jid *me = s ? xmppd_session_jid(s) : NULL;
    if (!me || ev->stanza == pv_exempt)
        return XMPPD_PASS;
    pv_acct *a = pv_acct_find(mod, me->node);
    if (!a)
        return XMPPD_PASS;
    if (a->loading)
        return pv_hold(a, ev, true) ? XMPPD_HANDLED : XMPPD_PASS;
    return pv_judge_deliver(mod, a, ev) ? XMPPD_HANDLED : XMPPD_PASS;
}

/* ---- presence on changes (XEP-0191 §3.3, §3.4) ------------------------------ */

typedef struct pv_presence_ctx {
    pv_mod *mod;
    pv_acct *a;
    const char *contact;      /* bare JID */
    const pv_list *old_def;   /* the default list before the change */
    bool unavailable;         /* send unavailable (block) or current presence */
} pv_presence_ctx;

static int pv_presence_one(xmppd_session *s, void *ud)
{
    pv_presence_ctx *c = ud;
    pv_sess *ps = pv_sess_of(c->mod, s);
    xmppd_stanza *cur = xmppd_session_presence(s);
    if (!xmppd_session_available(s) || !cur || (ps && ps->active && pv_list_find(c->a, ps->active)))
        return 0; /* a session with its own active list is not affected */
    xmppd_stanza *p = c->unavailable ? xmppd_stanza_new("presence", XMPPD_NS_CLIENT)
                                     : xmppd_stanza_copy(cur);
    if (!p)
        return 0;
    if (c->unavailable)
        xmppd_stanza_set_attr(p, "type", "unavailable");
    xmppd_stanza_set_attr(p, "from", xmppd_session_jid(s)->full);
    xmppd_stanza_set_attr(p, "to", c->contact);
    xmppd_route(c->mod->host, p);
    xmppd_stanza_unref(p);
    return 0;
}

/* Sends unavailable (or the current) presence of every available
 * resource to contact, when the roster lets contact see it. */
static void pv_presence_to(pv_mod *mod, pv_acct *a, const char *contact, bool unavailable)
{
    const roster_api *ra = pv_roster_api(mod->host);
    roster *r = ra ? ra->cached(ra, a->node) : NULL;
    roster_item it;
    xmppd_jid *j = xmppd_jid_parse(contact);
    bool ok = j && r && ra->get(r, j->bare, &it) && (it.sub & ROSTER_SUB_FROM);
    if (ok) {
        pv_presence_ctx c = { mod, a, j->bare, NULL, unavailable };
        xmppd_user_sessions(mod->host, a->node, pv_presence_one, &c);
    }
    xmppd_jid_free(j);
}

/* The JIDs blocked by l (the blocklist view). */
typedef struct pv_strv {
    const char **v;
    size_t n;
} pv_strv;

static void pv_blocked_of(const pv_list *l, pv_strv *out)
{
    out->v = NULL;
    out->n = 0;
    if (!l || !(out->v = calloc(l->n + 1, sizeof(char *))))
        return;
    for (size_t i = 0; i < l->n; i++)
        if (pv_is_block_item(&l->items[i]))
            out->v[out->n++] = l->items[i].value;
}

static bool pv_strv_has(const pv_strv *v, const char *s)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->v[i], s) == 0)
            return true;
    return false;
}

/* Installs new_def as a's default list (replacing old_def in the lists
 * when replace) around the presence XEP-0191 asks for, and announces the
 * blocklist change. new_def may be a's current list (already in place).
 * unblock_all: the change is an XEP-0191 §3.5 "unblock all" request, whose
 * push carries no items; any other change names the JIDs it unblocked
 * (§3.4), even when it leaves the list empty. */
static void pv_change_default(pv_mod *mod, pv_acct *a, pv_list *old_def, pv_list *new_def,
                              bool unblock_all, void (*install)(pv_acct *a, void *ud), void *ud)
{
    pv_strv before, after;
    pv_blocked_of(old_def, &before);
    pv_blocked_of(new_def, &after);
    /* Contacts newly blocked see the account go offline first, while the
     * old rules still let that presence through. */
    for (size_t i = 0; i < after.n; i++)
        if (!pv_strv_has(&before, after.v[i]))
            pv_presence_to(mod, a, after.v[i], true);
    /* The strings of `before` die with old_def: keep copies. */
    char **gone = calloc(before.n + 1, sizeof(char *));
    size_t n_gone = 0;
    for (size_t i = 0; gone && i < before.n; i++)
        if (!pv_strv_has(&after, before.v[i]) && (gone[n_gone] = strdup(before.v[i])))
            n_gone++;
    char **added = calloc(after.n + 1, sizeof(char *));
    size_t n_added = 0;
    for (size_t i = 0; added && i < after.n; i++)
        if (!pv_strv_has(&before, after.v[i]) && (added[n_added] = strdup(after.v[i])))
            n_added++;
    bool all = unblock_all && before.n > 0 && after.n == 0;
    free(before.v);
    free(after.v);
    install(a, ud);
    for (size_t i = 0; i < n_gone; i++)
        pv_presence_to(mod, a, gone[i], false);
    if (n_added || n_gone) {
        privacy_blocklist_change ch = { a->node, (const char *const *)added, n_added,
                                        (const char *const *)gone, n_gone, all };
        xmppd_event ev = { .name = "blocklist-changed", .host = mod->host, .data = &ch };
        xmppd_fire_all(&ev);
    }
    for (size_t i = 0; i < n_gone; i++)
        free(gone[i]);
    for (size_t i = 0; i < n_added; i++)
        free(added[i]);
    free(gone);
    free(added);
}

/* ---- list pushes (XEP-0016 §2.6) ------------------------------------------ */

typedef struct pv_push_ctx {
    pv_mod *mod;
    const char *name;
} pv_push_ctx;

static int pv_push_one(xmppd_session *s, void *ud)
{
    pv_push_ctx *c = ud;
    if (xmppd_session_closed(s))
        return 0;
    xmppd_stanza *iq = xmppd_stanza_new("iq", XMPPD_NS_CLIENT);
    if (!iq)
        return 0;
    char id[32];
    snprintf(id, sizeof(id), "privacy%u", ++c->mod->push_seq);
    xmppd_stanza_set_attr(iq, "type", "set");
    xmppd_stanza_set_attr(iq, "id", id);
    xmppd_stanza_set_attr(iq, "to", xmppd_session_jid(s)->full);
    xmppd_stanza *q = xmppd_stanza_tag(iq, "query", NS_PRIVACY);
    xmppd_stanza_set_attr(xmppd_stanza_tag(q, "list", NS_PRIVACY), "name", c->name);
    xmppd_session_send(s, iq);
    xmppd_stanza_unref(iq);
    return 0;
}

static void pv_push(pv_mod *mod, const char *node, const char *name)
{
    if (!mod->conf->xep0016)
        return;
    pv_push_ctx c = { mod, name };
    xmppd_user_sessions(mod->host, node, pv_push_one, &c);
}

/* ---- API for blocking ------------------------------------------------------- */

static void pv_api_load(const privacy_api *api, xmppd_module *caller, const char *node,
                        privacy_load_cb cb, void *ud)
{
    pv_mod *mod = (pv_mod *)api;
    pv_acct *a = pv_acct_get(mod, node);
    if (!a) {
        cb(false, ud);
        return;
    }
    if (!a->loading) {
        a->busy++;
        cb(a->loaded, ud);
        a->busy--;
        pv_acct_release(a);
        return;
    }
    pv_waiter *w = calloc(1, sizeof(*w));
    if (!w || !(w->call = xmppd_call_new(caller, pv_waiter_cancelled, w))) {
        free(w);
        cb(false, ud);
        return;
    }
    w->cb = cb;
    w->ud = ud;
    w->next = a->waiters;
    a->waiters = w;
}

static size_t pv_api_blocklist(const privacy_api *api, const char *node,
                               void (*fn)(const char *jid, void *ud), void *ud)
{
    pv_acct *a = pv_acct_find((pv_mod *)api, node);
    size_t n = 0;
    const pv_list *l = a && a->loaded ? a->def : NULL;
    for (size_t i = 0; l && i < l->n; i++)
        if (pv_is_block_item(&l->items[i])) {
            if (fn)
                fn(l->items[i].value, ud);
            n++;
        }
    return n;
}

/* A fresh name for the list blocking creates when there is no default. */
static void pv_fresh_name(const pv_acct *a, char *buf, size_t len)
{
    snprintf(buf, len, "%s", PV_BLOCKLIST_NAME);
    for (unsigned i = 2; pv_list_find(a, buf); i++)
        snprintf(buf, len, "%s-%u", PV_BLOCKLIST_NAME, i);
}

/* Renumbers l's items 1, 2, ... in their current order. */
static void pv_renumber(pv_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        l->items[i].order = (unsigned long)(i + 1);
}

typedef struct pv_swap {
    pv_list *old_def; /* NULL: new list is added */
    pv_list *new_def;
} pv_swap;

static void pv_install_swap(pv_acct *a, void *ud)
{
    pv_swap *sw = ud;
    for (size_t i = 0; sw->old_def && i < a->n_lists; i++)
        if (a->lists[i] == sw->old_def) {
            a->lists[i] = sw->new_def;
            pv_list_free(sw->old_def);
            sw->old_def = NULL;
            break;
        }
    if (sw->old_def == NULL && pv_list_find(a, sw->new_def->name) != sw->new_def)
        a->lists[a->n_lists++] = sw->new_def; /* room reserved by the caller */
    a->def = sw->new_def;
}

static int pv_api_block(const privacy_api *api, xmppd_module *caller, const char *node,
                        const char *const *jids, size_t n, privacy_done_cb done, void *ud,
                        const char **cond_r)
{
    pv_mod *mod = (pv_mod *)api;
    pv_acct *a = pv_acct_find(mod, node);
    *cond_r = "internal-server-error";
    if (!a || !a->loaded)
        return -1;
    pv_list *old = a->def, *nl;
    if (old) {
        nl = pv_list_copy(old, NULL);
    } else {
        if ((long long)a->n_lists >= mod->conf->max_lists) {
            *cond_r = "resource-constraint";
            return -1;
        }
        char name[64];
        pv_fresh_name(a, name, sizeof(name));
        nl = pv_list_new(name);
    }
    pv_item *items = nl ? calloc(nl->n + n + 1, sizeof(*items)) : NULL;
    pv_list **lists = realloc(a->lists, (a->n_lists + 1) * sizeof(*lists));
    if (lists)
        a->lists = lists;
    if (!items || !lists) {
        free(items);
        pv_list_free(nl);
        return -1;
    }
    /* Blocked JIDs come first (XEP-0191 §5), new ones ahead of old ones. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (pv_list_blocks(nl, jids[i]))
            continue;
        bool dup = false;
        for (size_t j = 0; j < k; j++)
            dup = dup || strcmp(items[j].value, jids[i]) == 0;
        if (dup || pv_item_set(&items[k], "jid", jids[i], "deny", "0"))
            continue;
        k++;
    }
    if ((long long)(nl->n + k) > mod->conf->max_items) {
        for (size_t j = 0; j < k; j++)
            pv_item_clear(&items[j]);
        free(items);
        pv_list_free(nl);
        *cond_r = "resource-constraint";
        return -1;
    }
    if (nl->n)
        memcpy(items + k, nl->items, nl->n * sizeof(*items));
    free(nl->items);
    nl->items = items;
    nl->n += k;
    pv_renumber(nl);
    pv_list_sort(nl);
    pv_swap sw = { old, nl };
    pv_change_default(mod, a, old, nl, false, pv_install_swap, &sw);
    pv_acct_save(a, caller, done, ud);
    pv_push(mod, node, nl->name);
    return 0;
}

static int pv_api_unblock(const privacy_api *api, xmppd_module *caller, const char *node,
                          const char *const *jids, size_t n, privacy_done_cb done, void *ud,
                          const char **cond_r)
{
    pv_mod *mod = (pv_mod *)api;
    pv_acct *a = pv_acct_find(mod, node);
    *cond_r = "internal-server-error";
    if (!a || !a->loaded)
        return -1;
    pv_list *old = a->def;
    if (!old) {
        if (done)
            done(0, ud);
        return 0;
    }
    pv_list *nl = pv_list_copy(old, NULL);
    if (!nl)
        return -1;
    size_t j = 0;
    for (size_t i = 0; i < nl->n; i++) {
        pv_item *it = &nl->items[i];
        bool drop = false;
        if (pv_is_block_item(it)) {
            drop = n == 0;
            for (size_t x = 0; !drop && x < n; x++)
                drop = strcmp(it->value, jids[x]) == 0;
        }
        if (drop)
            pv_item_clear(it);
        else
            nl->items[j++] = *it;
    }
    nl->n = j;
    pv_renumber(nl);
    pv_swap sw = { old, nl };
    pv_change_default(mod, a, old, nl, n == 0, pv_install_swap, &sw);
    pv_acct_save(a, caller, done, ud);
    pv_push(mod, node, nl->name);
    return 0;
}

/* ---- XEP-0016 protocol ------------------------------------------------------ */

/* An IQ about the sender's own account waiting for its lists. */
typedef struct pv_req {
    pv_mod *mod;
    xmppd_session *sess; /* ref */
    xmppd_stanza *iq;    /* ref */
    char *node;
} pv_req;

static void pv_req_free(pv_req *q)
{
    xmppd_session_unref(q->sess);
    xmppd_stanza_unref(q->iq);
    free(q->node);
    free(q);
}

static void pv_req_send(pv_req *q, xmppd_stanza *reply)
{
    if (reply && !xmppd_session_closed(q->sess))
        xmppd_session_send(q->sess, reply);
    xmppd_stanza_unref(reply);
}

static void pv_req_error(pv_req *q, const char *cond, const char *text)
{
    pv_req_send(q, xmppd_stanza_error_reply(q->iq, NULL, cond, text));
}

static bool pv_own_request(const xmppd_event *ev)
{
    if (!ev->session || !ev->from || !ev->from->node)
        return false;
    return !ev->to || (!ev->to->resource && xmppd_jid_bare_equal(ev->to, ev->from));
}

static void pv_list_xml(xmppd_stanza *q, const pv_list *l)
{
    xmppd_stanza *le = xmppd_stanza_tag(q, "list", NS_PRIVACY);
    xmppd_stanza_set_attr(le, "name", l->name);
    for (size_t i = 0; i < l->n; i++) {
        const pv_item *it = &l->items[i];
        xmppd_stanza *x = xmppd_stanza_tag(le, "item", NS_PRIVACY);
        char order[24];
        snprintf(order, sizeof(order), "%lu", it->order);
        if (it->type != PV_ALL) {
            xmppd_stanza_set_attr(x, "type", pv_type_names[it->type]);
            xmppd_stanza_set_attr(x, "value", it->value);
        }
        xmppd_stanza_set_attr(x, "action", it->deny ? "deny" : "allow");
        xmppd_stanza_set_attr(x, "order", order);
        for (unsigned k = 0; k < 4; k++)
            if (it->kinds & (1u << k))
                xmppd_stanza_tag(x, pv_kind_names[k], NS_PRIVACY);
    }
}

/* Element children of q other than whitespace; *first_r the first. */
static size_t pv_children(const xmppd_stanza *q, xmppd_stanza **first_r)
{
    size_t n = 0;
    *first_r = NULL;
    for (xmppd_stanza *c = xmppd_stanza_first(q); c; c = xmppd_stanza_next(c)) {
        if (!*first_r)
            *first_r = c;
        n++;
    }
    return n;
}

static void pv_get_loaded(bool ok, void *ud)
{
    pv_req *q = ud;
    pv_acct *a = pv_acct_find(q->mod, q->node);
    if (!ok || !a) {
        pv_req_error(q, "internal-server-error", NULL);
        pv_req_free(q);
        return;
    }
    xmppd_stanza *query = xmppd_stanza_first(q->iq), *child;
    size_t n = pv_children(query, &child);
    xmppd_stanza *reply = xmppd_stanza_reply(q->iq);
    xmppd_stanza *rq = reply ? xmppd_stanza_tag(reply, "query", NS_PRIVACY) : NULL;
    if (!rq) {
        xmppd_stanza_unref(reply);
        pv_req_free(q);
        return;
    }
    if (n == 0) {
        /* §2.3: the names of every list, the active and the default. */
        pv_sess *ps = pv_sess_of(q->mod, q->sess);
        xmppd_stanza *act = xmppd_stanza_tag(rq, "active", NS_PRIVACY);
        if (ps && ps->active)
            xmppd_stanza_set_attr(act, "name", ps->active);
        xmppd_stanza *def = xmppd_stanza_tag(rq, "default", NS_PRIVACY);
        if (a->def)
            xmppd_stanza_set_attr(def, "name", a->def->name);
        for (size_t i = 0; i < a->n_lists; i++)
            xmppd_stanza_set_attr(xmppd_stanza_tag(rq, "list", NS_PRIVACY), "name", a->lists[i]->name);
        pv_req_send(q, reply);
    } else if (n > 1 || strcmp(xmppd_stanza_name(child), "list") != 0) {
        xmppd_stanza_unref(reply);
        pv_req_error(q, "bad-request", NULL); /* §2.4: one list at a time */
    } else {
        const pv_list *l = pv_list_find(a, xmppd_stanza_attr(child, "name"));
        if (!l) {
            xmppd_stanza_unref(reply);
            pv_req_error(q, "item-not-found", NULL);
        } else {
            pv_list_xml(rq, l);
            pv_req_send(q, reply);
        }
    }
    pv_req_free(q);
}

static pv_req *pv_req_new(pv_mod *mod, xmppd_event *ev)
{
    pv_req *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->mod = mod;
    q->sess = xmppd_session_ref(ev->session);
    q->iq = xmppd_stanza_ref(ev->stanza);
    if (!(q->node = strdup(ev->from->node))) {
        pv_req_free(q);
        return NULL;
    }
    return q;
}

static int pv_on_get(xmppd_event *ev, void *ud)
{
    pv_mod *mod = ud;
    if (!pv_own_request(ev))
        return xmppd_reply_error(ev, "auth", "forbidden", NULL);
    pv_req *q = pv_req_new(mod, ev);
    if (!q)
        return XMPPD_FAIL;
    pv_api_load(&mod->api, NULL, q->node, pv_get_loaded, q);
    return XMPPD_HANDLED;
}

/* Parses <list/> into a new pv_list; NULL with *cond_r on error. */
static pv_list *pv_parse_list(const pv_mod *mod, const xmppd_stanza *le, const char **cond_r)
{
    const char *name = xmppd_stanza_attr(le, "name");
    *cond_r = "bad-request";
    if (!name || !*name || strlen(name) > PV_NAME_MAX)
        return NULL;
    size_t n = 0;
    for (xmppd_stanza *c = xmppd_stanza_first(le); c; c = xmppd_stanza_next(c))
        n++;
    if ((long long)n > mod->conf->max_items) {
        *cond_r = "resource-constraint";
        return NULL;
    }
    pv_list *l = pv_list_new(name);
    if (!l || !(l->items = calloc(n + 1, sizeof(*l->items)))) {
        pv_list_free(l);
        *cond_r = "internal-server-error";
        return NULL;
    }
    for (xmppd_stanza *c = xmppd_stanza_first(le); c; c = xmppd_stanza_next(c)) {
        if (strcmp(xmppd_stanza_name(c), "item") != 0) {
            pv_list_free(l);
            return NULL;
        }
        pv_item *it = &l->items[l->n];
        const char *err = pv_item_set(it, xmppd_stanza_attr(c, "type"), xmppd_stanza_attr(c, "value"),
                                      xmppd_stanza_attr(c, "action"), xmppd_stanza_attr(c, "order"));
        if (!err) {
            for (xmppd_stanza *k = xmppd_stanza_first(c); k; k = xmppd_stanza_next(k)) {
                unsigned bit = pv_kind_bit(xmppd_stanza_name(k));
                if (!bit) {
                    err = "bad-request";
                    break;
                }
                it->kinds |= bit;
            }
        }
        l->n++;
        if (err) {
            pv_list_free(l);
            *cond_r = err;
            return NULL;
        }
    }
    pv_list_sort(l);
    if (!pv_orders_unique(l)) {
        pv_list_free(l);
        return NULL;
    }
    return l;
}

typedef struct pv_set_ctx {
    pv_req *q;
    pv_acct *a;
    const char *cond;
} pv_set_ctx;

/* Is list l applied to a session of the account other than `except`? */
typedef struct pv_in_use_ctx {
    pv_mod *mod;
    pv_acct *a;
    const pv_list *l;
    xmppd_session *except;
    bool active_only;
    bool found;
} pv_in_use_ctx;

static int pv_in_use_one(xmppd_session *s, void *ud)
{
    pv_in_use_ctx *c = ud;
    if (s == c->except)
        return 0;
    bool active;
    if (xmppd_session_remote(s)) {
        /* its node marks the session with its active list (pv_sess_activate) */
        char mark[PV_MARK_LEN + 1];
        pv_mark_of(c->l->name, mark);
        active = xmppd_session_marked(s, mark);
    } else {
        pv_sess *ps = pv_sess_of(c->mod, s);
        active = ps && ps->active && pv_list_find(c->a, ps->active) == c->l;
    }
    if (active || (!c->active_only && pv_uses(c->mod, c->a, s, c->l))) {
        c->found = true;
        return 1;
    }
    return 0;
}

static bool pv_in_use(pv_mod *mod, pv_acct *a, const pv_list *l, xmppd_session *except, bool active_only)
{
    pv_in_use_ctx c = { mod, a, l, except, active_only, false };
    xmppd_user_sessions(mod->host, a->node, pv_in_use_one, &c);
    return c.found;
}

static void pv_set_saved(int status, void *ud)
{
    pv_req *q = ud;
    if (status != 0)
        pv_req_error(q, "internal-server-error", NULL);
    else
        pv_req_send(q, xmppd_stanza_reply(q->iq));
    pv_req_free(q);
}

static void pv_install_default(pv_acct *a, void *ud)
{
    a->def = ud;
}

/* <active/>: §2.5. Session state only: answered at once. */
static const char *pv_set_active(pv_req *q, pv_acct *a, const xmppd_stanza *el)
{
    const char *name = xmppd_stanza_attr(el, "name");
    pv_sess *ps = pv_sess_of(q->mod, q->sess);
    if (!name) {
        if (ps)
            pv_sess_activate(q->sess, ps, NULL);
        return NULL;
    }
    if (!pv_list_find(a, name))
        return "item-not-found";
    if (!ps) {
        if (!(ps = calloc(1, sizeof(*ps))))
            return "internal-server-error";
        xmppd_session_set(q->sess, q->mod->m, ps);
    }
    char *c = strdup(name);
    if (!c)
        return "internal-server-error";
    pv_sess_activate(q->sess, ps, c);
    return NULL;
}

/* <default/>: §2.6. */
static const char *pv_set_default(pv_req *q, pv_acct *a, const xmppd_stanza *el, bool *stored)
{
    const char *name = xmppd_stanza_attr(el, "name");
    pv_list *l = NULL;
    if (name && !(l = pv_list_find(a, name)))
        return "item-not-found";
    if (l == a->def)
        return NULL;
    /* Another resource applies the current default as its active list. */
    if (a->def && pv_in_use(q->mod, a, a->def, q->sess, true))
        return "conflict";
    pv_change_default(q->mod, a, a->def, l, false, pv_install_default, l);
    pv_acct_save(a, NULL, pv_set_saved, q);
    *stored = true;
    return NULL;
}

static void pv_install_list(pv_acct *a, void *ud)
{
    pv_swap *sw = ud;
    /* Like a swap, but the new list does not become the default unless it
     * replaces it. */
    bool was_def = a->def == sw->old_def && sw->old_def;
    for (size_t i = 0; sw->old_def && i < a->n_lists; i++)
        if (a->lists[i] == sw->old_def) {
            a->lists[i] = sw->new_def;
            pv_list_free(sw->old_def);
            sw->old_def = NULL;
            if (was_def)
                a->def = sw->new_def;
            return;
        }
    a->lists[a->n_lists++] = sw->new_def;
}

static void pv_install_remove(pv_acct *a, void *ud)
{
    pv_list *l = ud;
    for (size_t i = 0; i < a->n_lists; i++)
        if (a->lists[i] == l) {
            a->lists[i] = a->lists[--a->n_lists];
            break;
        }
    if (a->def == l)
        a->def = NULL;
    pv_list_free(l);
}

/* <list/>: §2.7 - §2.9: create, replace, or (no items) remove. */
static const char *pv_set_list(pv_req *q, pv_acct *a, const xmppd_stanza *el, bool *stored)
{
    pv_mod *mod = q->mod;
    const char *name = xmppd_stanza_attr(el, "name");
    if (!name)
        return "bad-request";
    pv_list *old = pv_list_find(a, name);
    xmppd_stanza *dummy;
    if (pv_children(el, &dummy) == 0) {
        if (!old)
            return "item-not-found";
        if (old == a->def || pv_in_use(mod, a, old, q->sess, true))
            return "conflict";
        pv_sess *ps = pv_sess_of(mod, q->sess);
        if (ps && ps->active && strcmp(ps->active, name) == 0)
            pv_sess_activate(q->sess, ps, NULL);
        char *nm = strdup(name);
        pv_install_remove(a, old);
        pv_acct_save(a, NULL, pv_set_saved, q);
        *stored = true;
        if (nm)
            pv_push(mod, a->node, nm);
        free(nm);
        return NULL;
    }
    const char *cond;
    pv_list *nl = pv_parse_list(mod, el, &cond);
    if (!nl)
        return cond;
    if (!old && (long long)a->n_lists >= mod->conf->max_lists) {
        pv_list_free(nl);
        return "resource-constraint";
    }
    pv_list **v = realloc(a->lists, (a->n_lists + 1) * sizeof(*v));
    if (!v) {
        pv_list_free(nl);
        return "internal-server-error";
    }
    a->lists = v;
    pv_swap sw = { old, nl };
    if (old && old == a->def)
        pv_change_default(mod, a, old, nl, false, pv_install_list, &sw);
    else
        pv_install_list(a, &sw);
    pv_acct_save(a, NULL, pv_set_saved, q);
    *stored = true;
    pv_push(mod, a->node, name);
    return NULL;
}

static void pv_set_loaded(bool ok, void *ud)
{
    pv_req *q = ud;
    pv_acct *a = pv_acct_find(q->mod, q->node);
    if (!ok || !a) {
        pv_req_error(q, "internal-server-error", NULL);
        pv_req_free(q);
        return;
    }
    xmppd_stanza *el;
    size_t n = pv_children(xmppd_stanza_first(q->iq), &el);
    const char *err = NULL;
    bool stored = false;
    if (n != 1) {
        err = "bad-request"; /* §2.5 - §2.9: exactly one of active, default, list */
    } else if (strcmp(xmppd_stanza_name(el), "active") == 0) {
        err = pv_set_active(q, a, el);
    } else if (strcmp(xmppd_stanza_name(el), "default") == 0) {
        err = pv_set_default(q, a, el, &stored);
    } else if (strcmp(xmppd_stanza_name(el), "list") == 0) {
        err = pv_set_list(q, a, el, &stored);
    } else {
        err = "bad-request";
    }
    if (stored)
        return; /* answered once durable */
    if (err)
        pv_req_error(q, err, NULL);
    else
        pv_req_send(q, xmppd_stanza_reply(q->iq));
    pv_req_free(q);
}

static int pv_on_set(xmppd_event *ev, void *ud)
{
    pv_mod *mod = ud;
    if (!pv_own_request(ev))
        return xmppd_reply_error(ev, "auth", "forbidden", NULL);
    pv_req *q = pv_req_new(mod, ev);
    if (!q)
        return XMPPD_FAIL;
    pv_api_load(&mod->api, NULL, q->node, pv_set_loaded, q);
    return XMPPD_HANDLED;
}

/* ---- session events -------------------------------------------------------- */

/* Lists load as soon as the client authenticates, so they are in memory
 * before its first stanza. */
static int pv_on_auth(xmppd_event *ev, void *ud)
{
    pv_mod *mod = ud;
    const char *user = ev->session ? xmppd_session_user(ev->session) : NULL;
    if (user)
        pv_acct_get(mod, user);
    return XMPPD_PASS;
}

static int pv_on_bound(xmppd_event *ev, void *ud)
{
    return pv_on_auth(ev, ud);
}

static int pv_on_closed(xmppd_event *ev, void *ud)
{
    pv_mod *mod = ud;
    if (!ev->session)
        return XMPPD_PASS;
    pv_sess *ps = xmppd_session_get(ev->session, mod->m);
    if (ps) {
        xmppd_session_set(ev->session, mod->m, NULL);
        free(ps->active);
        free(ps);
    }
    const char *user = xmppd_session_user(ev->session);
    pv_acct *a = user ? pv_acct_find(mod, user) : NULL;
    if (a)
        pv_acct_release(a);
    return XMPPD_PASS;
}

/* Storage is purged by the kernel; forget what is in memory. */
static int pv_on_user_deleted(xmppd_event *ev, void *ud)
{
    pv_mod *mod = ud;
    pv_acct *a = ev->data ? pv_acct_find(mod, ev->data) : NULL;
    if (a && !a->loading && a->busy == 0)
        pv_acct_clear_lists(a);
    return XMPPD_PASS;
}

/* Another node of the cluster stored a change of the account's lists: read
 * them again now, or once the load or callback running ends. */
static int pv_on_invalidate(xmppd_event *ev, void *ud)
{
    pv_mod *mod = ud;
    pv_acct *a = ev->to && ev->data && strcmp(ev->data, "privacy") == 0
                     ? pv_acct_find(mod, ev->to->node) : NULL;
    if (!a)
        return XMPPD_PASS;
    if (a->loading || a->busy > 0)
        a->stale = true;
    else
        pv_reload(a);
    return XMPPD_PASS;
}

/* ---- lifecycle ---------------------------------------------------------------- */

static void pv_unload(xmppd_module *m);

static int pv_load_hooks(xmppd_module *m, pv_mod *mod);

static int pv_load(xmppd_module *m, const void *conf)
{
    pv_mod *mod = calloc(1, sizeof(*mod));
    if (!mod)
        return -1;
    mod->api = (privacy_api){
        .version = PRIVACY_API_VERSION,
        .size = sizeof(privacy_api),
        .load = pv_api_load,
        .blocklist = pv_api_blocklist,
        .block = pv_api_block,
        .unblock = pv_api_unblock,
    };
    mod->m = m;
    mod->host = xmppd_module_host(m);
    mod->conf = conf;
    xmppd_module_set_data(m, mod);
    if (pv_load_hooks(m, mod) < 0) {
        pv_unload(m); /* a refused load gets no unload() call */
        return -1;
    }
    return 0;
}

static int pv_load_hooks(xmppd_module *m, pv_mod *mod)
{
    if (!(mod->store = xmppd_store_open(m, "privacy", XMPPD_STORE_KEYVAL)))
        return -1;
    /* Users' rules run just before the operator's filter (FILTER), so a
     * stanza held for a load is seen by the filter once. */
    int prio = XMPPD_PRIO_FILTER + 10;
    /* "iq/bare/filter" comes before the IQ handlers that answer for an
     * account (vCard, last activity), so lists hide those too. */
    static const char *const inbound[] = { "message/bare", "message/full", "presence/bare",
                                           "presence/full", "iq/bare/filter", "iq/full" };
    for (size_t i = 0; i < sizeof(inbound) / sizeof(*inbound); i++)
        if (xmppd_hook(m, inbound[i], pv_on_inbound, prio, mod) < 0)
            return -1;
    if (xmppd_hook(m, "pre-route", pv_on_pre_route, prio, mod) < 0 ||
        xmppd_hook(m, "deliver", pv_on_deliver, prio, mod) < 0 ||
        xmppd_hook(m, "auth-success", pv_on_auth, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "resource-bound", pv_on_bound, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "session-closed", pv_on_closed, XMPPD_PRIO_FALLBACK, mod) < 0 ||
        xmppd_hook(m, "user-deleted", pv_on_user_deleted, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "cluster-invalidate", pv_on_invalidate, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_provide(m, "privacy", &mod->api) < 0)
        return -1;
    if (mod->conf->xep0016 &&
        (xmppd_iq_handle(m, "get", NS_PRIVACY, XMPPD_IQ_BARE, pv_on_get, mod) < 0 ||
         xmppd_iq_handle(m, "set", NS_PRIVACY, XMPPD_IQ_BARE, pv_on_set, mod) < 0 ||
         xmppd_disco_feature(m, NS_PRIVACY) < 0))
        return -1;
    return 0;
}

static int pv_free_slot(xmppd_session *s, void *ud)
{
    pv_mod *mod = ud;
    pv_sess *ps = xmppd_session_get(s, mod->m);
    if (ps) {
        xmppd_session_set(s, mod->m, NULL);
        pv_sess_activate(s, ps, NULL); /* its list no longer applies */
        free(ps);
    }
    return 0;
}

static void pv_unload_acct(const void *nodep, VISIT which, void *closure)
{
    if (which != postorder && which != leaf)
        return;
    pv_acct *a = *(pv_acct *const *)nodep;
    xmppd_user_sessions(a->mod->host, a->node, pv_free_slot, a->mod);
}

/* Loads in flight keep their account: storage never calls back an unloaded
 * module, so those accounts (and held stanzas) are freed here. */
static void pv_unload(xmppd_module *m)
{
    pv_mod *mod = xmppd_module_data(m);
    if (!mod)
        return;
    twalk_r(mod->accts, pv_unload_acct, NULL);
    tdestroy(mod->accts, pv_acct_free);
    free(mod);
    xmppd_module_set_data(m, NULL);
}

XMPPD_MODULE(privacy,
    .version = "1.0",
    .summary = "Users' filtering rules: XEP-0016 privacy lists, the engine behind blocking",
    .depends = (const char *const[]){ "roster", NULL },
    .specs = (const char *const[]){ "XEP-0016", NULL },
    .options = pv_options,
    .conf_size = sizeof(pv_conf),
    .load = pv_load,
    .unload = pv_unload);
