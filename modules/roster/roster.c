/* mod_roster: the account's contact list (RFC 6121 §2): roster get, set and
 * remove, roster pushes to interested resources, roster versioning (§2.6),
 * and the "roster" API other modules use (roster_api.h).
 *
 * Storage: keyval store "roster", key "" per account:
 *   {"ver": n,
 *    "items": {bare_jid: {"name": s, "groups": [s], "subscription": "none",
 *                         "ask": bool, "approved": bool}},
 *    "pending": {bare_jid: "<presence type='subscribe' .../>"}}
 *
 * Memory: one `struct roster` per account in use, in a tsearch tree per
 * host. Accounts with bound sessions keep theirs until the last session
 * closes; rosters loaded for others are dropped once their callbacks ran.
 * In memory, an empty "items" or "pending" object is left out of the
 * document (most idle accounts' pending list is empty, many rosters are):
 * readers get NULL, which Jansson's getters and iterators treat as empty;
 * writers go through rs_items_w/rs_pending_w, and a save writes the full
 * shape above.
 *
 * A roster overlay (roster_api.h, e.g. mod_shared_roster) adds items that
 * are never stored: every view below merges them in (rs_merged). */
#define _GNU_SOURCE /* tdestroy, open_memstream */
#include <jansson.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "roster_api.h"

#define NS_ROSTER "jabber:iq:roster"
#define NS_ROSTERVER "urn:xmpp:features:rosterver"
#define RS_TEXT_MAX 1023 /* bytes of an item name or a group name */

typedef struct rs_conf {
    long long max_items;
    bool versioning;
} rs_conf;

static const xmppd_option rs_options[] = {
    { "max_items", XMPPD_OPT_INT, XMPPD_OFF(rs_conf, max_items), "1000", 1, 1000000, NULL, 0,
      "Most items one roster may hold" },
    { "versioning", XMPPD_OPT_BOOL, XMPPD_OFF(rs_conf, versioning), "true", 0, 0, NULL, 0,
      "Offer roster versioning (RFC 6121 section 2.6)" },
    { NULL },
};

/* Instance data; api comes first so API calls find their instance. */
typedef struct rs_mod {
    roster_api api;
    xmppd_module *m;
    xmppd_host *host;
    xmppd_store *store;
    const rs_conf *conf;
    void *cache;        /* tsearch tree of struct roster *, by node */
    unsigned push_seq;
} rs_mod;

/* A caller waiting for a roster to load. Its xmppd_call tells whether the
 * caller is still there when the load ends (a caller that unloads first
 * is answered NULL while it unloads). */
typedef struct rs_waiter {
    struct rs_waiter *next;
    roster_load_cb cb;
    void *ud;
    xmppd_call *call;
} rs_waiter;

static void rs_waiter_cancelled(void *p)
{
    rs_waiter *w = p;
    w->cb(NULL, w->ud);
}

struct roster {
    char *node;          /* owned; the tree key */
    rs_mod *mod;
    json_t *doc;         /* owned; NULL while loading */
    int busy;            /* callbacks running with it */
    bool loading;
    bool detached;       /* out of the tree: freed when no longer busy */
    rs_waiter *waiters;  /* owned; called when the load ends */
    rs_waiter **wtail;
};

/* Interested-resource marker stored in the session slot (nothing to free),
 * and the session mark that tells the other nodes of a cluster. */
static const char rs_interested = 1;
#define RS_MARK "roster"

/* Did s request the roster (§2.1.6: it gets pushes)? A session on another
 * node says so with its mark. */
static bool rs_is_interested(const rs_mod *mod, const xmppd_session *s)
{
    return xmppd_session_remote(s) ? xmppd_session_marked(s, RS_MARK)
                                   : xmppd_session_get(s, mod->m) != NULL;
}

static const char *const rs_sub_names[] = { "none", "to", "from", "both" };

/* ---- cache ------------------------------------------------------------- */

static int rs_cmp(const void *a, const void *b)
{
    return strcmp(((const roster *)a)->node, ((const roster *)b)->node);
}

static roster *rs_find(rs_mod *mod, const char *node)
{
    roster key = { .node = (char *)node };
    roster **p = tfind(&key, &mod->cache, rs_cmp);
    return p ? *p : NULL;
}

static void rs_free(void *p)
{
    roster *r = p;
    while (r->waiters) {
        rs_waiter *w = r->waiters;
        r->waiters = w->next;
        if (xmppd_call_finish(w->call))
            w->cb(NULL, w->ud);
        free(w);
    }
    json_decref(r->doc);
    free(r->node);
    free(r);
}

static void rs_detach(roster *r)
{
    if (!r->detached) {
        tdelete(r, &r->mod->cache, rs_cmp);
        r->detached = true;
    }
}

static int rs_local_session(xmppd_session *s, void *ud)
{
    bool *local = ud;
    *local = !xmppd_session_remote(s);
    return *local;
}

/* A roster stays in memory while its account has a session on this node
 * (in a cluster, the nodes where it has none load it when they need it,
 * so they never use a copy another node changed). */
static bool rs_online(const rs_mod *mod, const char *node)
{
    bool local = false;
    xmppd_user_sessions(mod->host, node, rs_local_session, &local);
    return local;
}

/* Drops r when nobody uses it any more: no callback running, no load in
 * flight, and (unless detached) no bound session of the account. */
static void rs_release(roster *r)
{
    if (r->busy > 0 || r->loading)
        return;
    if (!r->detached && rs_online(r->mod, r->node))
        return;
    rs_detach(r);
    rs_free(r);
}

static void rs_call(roster *r, roster_load_cb cb, void *ud)
{
    r->busy++;
    cb(r->doc ? r : NULL, ud);
    r->busy--;
}

/* Drops doc's member key unless it is a non-empty object: what is left
 * out reads as empty (see "Memory" above). */
static void rs_doc_compact(json_t *doc, const char *key)
{
    json_t *v = json_object_get(doc, key);
    if (v && (!json_is_object(v) || json_object_size(v) == 0))
        json_object_del(doc, key);
}

/* Makes sure doc has the expected shape; false when it cannot. */
static bool rs_doc_fix(json_t *doc)
{
    if (!json_is_integer(json_object_get(doc, "ver")) &&
        json_object_set_new(doc, "ver", json_integer(0)) < 0)
        return false;
    rs_doc_compact(doc, "items");
    rs_doc_compact(doc, "pending");
    return true;
}

static void rs_on_loaded(int status, json_t *value, void *ud)
{
    roster *r = ud;
    if (status == XMPPD_STORE_OK && json_is_object(value))
        r->doc = json_deep_copy(value);
    else if (status == XMPPD_STORE_NOT_FOUND || status == XMPPD_STORE_OK)
        r->doc = json_object();
    else if (status != XMPPD_STORE_CANCELLED)
        xmppd_log(r->mod->m, XMPPD_LOG_ERROR, "cannot load the roster of %s", r->node);
    if (r->doc && !rs_doc_fix(r->doc)) {
        json_decref(r->doc);
        r->doc = NULL;
    }
    r->loading = false;
    if (!r->doc)
        rs_detach(r); /* the next use tries storage again */
    r->busy++;
    while (r->waiters) {
        rs_waiter *w = r->waiters;
        r->waiters = w->next;
        if (xmppd_call_finish(w->call))
            rs_call(r, w->cb, w->ud);
        free(w);
    }
    r->busy--;
    rs_release(r);
}

static void rs_api_load(const roster_api *api, xmppd_module *caller, const char *node,
                        roster_load_cb cb, void *ud)
{
    rs_mod *mod = (rs_mod *)api;
    roster *r = rs_find(mod, node);
    if (r && !r->loading) {
        rs_call(r, cb, ud);
        rs_release(r);
        return;
    }
    rs_waiter *w = calloc(1, sizeof(*w));
    if (!w || !mod->store || !(w->call = xmppd_call_new(caller, rs_waiter_cancelled, w))) {
        free(w);
        cb(NULL, ud);
        return;
    }
    w->cb = cb;
    w->ud = ud;
    if (r) {
        *r->wtail = w;
        r->wtail = &w->next;
        return;
    }
    r = calloc(1, sizeof(*r));
    if (!r || !(r->node = strdup(node)) || !tsearch(r, &mod->cache, rs_cmp)) {
        if (r)
            free(r->node);
        free(r);
        free(w);
        cb(NULL, ud);
        return;
    }
    r->mod = mod;
    r->loading = true;
    r->waiters = w;
    r->wtail = &w->next;
    xmppd_kv_get(mod->store, node, "", rs_on_loaded, r);
}

static roster *rs_api_cached(const roster_api *api, const char *node)
{
    roster *r = rs_find((rs_mod *)api, node);
    return r && r->doc ? r : NULL;
}

/* ---- the document ------------------------------------------------------ */

static json_t *rs_items(const roster *r)
{
    return json_object_get(r->doc, "items");
}

static json_t *rs_pending(const roster *r)
{
    return json_object_get(r->doc, "pending");
}

/* The member key of r's document for writing: created when left out;
 * NULL when it cannot be. */
static json_t *rs_member_w(roster *r, const char *key)
{
    json_t *v = json_object_get(r->doc, key);
    if (!v && json_object_set_new(r->doc, key, json_object()) == 0)
        v = json_object_get(r->doc, key);
    return v;
}

static json_t *rs_items_w(roster *r)
{
    return rs_member_w(r, "items");
}

static json_t *rs_pending_w(roster *r)
{
    return rs_member_w(r, "pending");
}

static long long rs_ver(const roster *r)
{
    return json_integer_value(json_object_get(r->doc, "ver"));
}

static const roster_overlay *rs_overlay(const rs_mod *mod)
{
    const roster_overlay *ov = xmppd_use(mod->host, "roster_overlay");
    return ov && ov->version >= ROSTER_OVERLAY_VERSION && ov->size >= sizeof(roster_overlay) ? ov : NULL;
}

#define RS_VER_MAX 96
/* The version a client sees (§2.6): the stored one, and the overlay's
 * token when there is one ("7-ab12..."), so an overlay change while the
 * client was away gives it the whole roster. */
static void rs_ver_text(const rs_mod *mod, const char *node, long long ver, char buf[RS_VER_MAX])
{
    const roster_overlay *ov = rs_overlay(mod);
    const char *tok = ov ? ov->token(ov, node) : NULL;
    if (tok && *tok)
        snprintf(buf, RS_VER_MAX, "%lld-%.64s", ver, tok);
    else
        snprintf(buf, RS_VER_MAX, "%lld", ver);
}

/* The four names differ in their first letter: one comparison, not up to
 * four (this runs for every item of every roster walk). */
static unsigned rs_sub_bits(const char *s)
{
    unsigned i = !s ? 0 : *s == 't' ? 1 : *s == 'f' ? 2 : *s == 'b' ? 3 : 0;
    return s && strcmp(s, rs_sub_names[i]) == 0 ? i : 0;
}

/* One pass over the item's (at most five) members rather than a hash
 * lookup per field: every presence broadcast and PEP notification views
 * each item of the roster, and this is ~700 instructions an item instead
 * of ~1,200 (issue 18, docs/benchmarks.md "Fan-out per delivery"). The
 * walk only reads: the cast is for jansson's iterator, which takes no
 * const. */
static void rs_view(const char *jid, const json_t *it, roster_item *v)
{
    *v = (roster_item){ .jid = jid };
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)it, k, val) {
        if (strcmp(k, "subscription") == 0)
            v->sub = rs_sub_bits(json_string_value(val));
        else if (strcmp(k, "ask") == 0)
            v->ask = json_is_true(val);
        else if (strcmp(k, "approved") == 0)
            v->approved = json_is_true(val);
        else if (strcmp(k, "name") == 0)
            v->name = json_string_value(val);
    }
}

static void rs_on_saved(int status, void *ud)
{
    rs_mod *mod = ud;
    if (status != XMPPD_STORE_OK && status != XMPPD_STORE_CANCELLED)
        xmppd_log(mod->m, XMPPD_LOG_ERROR, "cannot store a roster change");
}

/* A write in flight: once stored, the other nodes of a cluster drop their
 * copy of the roster (they load it again when they need it). */
typedef struct rs_saving {
    rs_mod *mod;
    char *node;
    xmppd_store_done_cb cb;
    void *ud;
} rs_saving;

static void rs_saved_then(int status, void *ud)
{
    rs_saving *w = ud;
    if (status == XMPPD_STORE_OK)
        xmppd_cluster_invalidate(w->mod->m, w->node);
    w->cb(status, w->ud);
    free(w->node);
    free(w);
}

/* Writes r's document; cb (or a logging default) gets the outcome. */
static void rs_save(roster *r, xmppd_store_done_cb cb, void *ud)
{
    if (!cb) {
        cb = rs_on_saved;
        ud = r->mod;
    }
    rs_saving *w = xmppd_cluster_node() ? calloc(1, sizeof(*w)) : NULL;
    if (w && (w->node = strdup(r->node))) {
        *w = (rs_saving){ r->mod, w->node, cb, ud };
        cb = rs_saved_then;
        ud = w;
    } else {
        free(w); /* no cluster (or no memory: the others' copy may lag) */
    }
    /* stored with its full shape, as other readers of the store
     * (mod_xep0227) expect; without memory for it, what is left out still
     * loads as empty */
    rs_items_w(r);
    rs_pending_w(r);
    xmppd_kv_set(r->mod->store, r->node, "", r->doc, cb, ud);
}

static long long rs_bump(roster *r)
{
    long long ver = rs_ver(r) + 1;
    json_object_set_new(r->doc, "ver", json_integer(ver));
    return ver;
}

/* ---- XML --------------------------------------------------------------- */

static bool rs_stored_in_group(const json_t *it, const char *group)
{
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(it, "groups"), i, g) {
        const char *t = json_string_value(g);
        if (t && strcmp(t, group) == 0)
            return true;
    }
    return false;
}

static void rs_group_xml(xmppd_stanza *x, const char *t)
{
    xmppd_stanza *ge = t ? xmppd_stanza_tag(x, "group", NULL) : NULL;
    if (ge)
        xmppd_stanza_add_text(ge, t, strlen(t));
}

/* Appends the <item/> node sees for jid: the stored item it (NULL: none)
 * merged with the overlay's (oc, NULL: none); subscription='remove' when
 * there is neither. */
static void rs_item_xml(xmppd_stanza *query, const char *jid, const json_t *it, const roster_contact *oc)
{
    xmppd_stanza *x = xmppd_stanza_tag(query, "item", NULL);
    if (!x)
        return;
    xmppd_stanza_set_attr(x, "jid", jid);
    if (!it && !oc) {
        xmppd_stanza_set_attr(x, "subscription", "remove");
        return;
    }
    roster_item v = { .jid = jid };
    if (it)
        rs_view(jid, it, &v);
    if (oc) {
        v.sub |= oc->sub;
        if (!v.name)
            v.name = oc->name;
    }
    if (v.name)
        xmppd_stanza_set_attr(x, "name", v.name);
    xmppd_stanza_set_attr(x, "subscription", rs_sub_names[v.sub & 3]);
    if (v.ask && !(oc && (oc->sub & ROSTER_SUB_TO)))
        xmppd_stanza_set_attr(x, "ask", "subscribe");
    if (v.approved)
        xmppd_stanza_set_attr(x, "approved", "true");
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(it, "groups"), i, g)
        rs_group_xml(x, json_string_value(g));
    for (const char *const *og = oc ? oc->groups : NULL; og && *og; og++)
        if (!rs_stored_in_group(it, *og))
            rs_group_xml(x, *og);
}

/* rs_item_xml with the overlay's item of node for jid looked up. */
static void rs_item_xml_merged(const rs_mod *mod, const char *node, xmppd_stanza *query, const char *jid,
                               const json_t *it)
{
    const roster_overlay *ov = rs_overlay(mod);
    roster_contact oc;
    rs_item_xml(query, jid, it, ov && ov->get(ov, node, jid, &oc) ? &oc : NULL);
}

static xmppd_stanza *rs_query_new(const rs_mod *mod, const char *node, long long ver)
{
    xmppd_stanza *q = xmppd_stanza_new("query", NS_ROSTER);
    if (q && mod->conf->versioning) {
        char buf[RS_VER_MAX];
        rs_ver_text(mod, node, ver, buf);
        xmppd_stanza_set_attr(q, "ver", buf);
    }
    return q;
}

/* ---- pushes (§2.1.6) ---------------------------------------------------- */

typedef struct rs_push_ctx {
    rs_mod *mod;
    const xmppd_stanza *iq; /* template without 'to' */
} rs_push_ctx;

static int rs_push_one(xmppd_session *s, void *ud)
{
    rs_push_ctx *c = ud;
    if (!rs_is_interested(c->mod, s) || xmppd_session_closed(s))
        return 0;
    xmppd_stanza *iq = xmppd_stanza_copy(c->iq);
    if (!iq)
        return 0;
    xmppd_stanza_set_attr(iq, "to", xmppd_session_jid(s)->full);
    xmppd_session_send(s, iq);
    xmppd_stanza_unref(iq);
    return 0;
}

/* Pushes one item (it: the stored part, NULL: none; the overlay's part is
 * merged in) to node's interested resources. */
static void rs_push(rs_mod *mod, const char *node, long long ver, const char *jid, const json_t *it)
{
    xmppd_stanza *iq = xmppd_stanza_new("iq", XMPPD_NS_CLIENT);
    xmppd_stanza *q = rs_query_new(mod, node, ver);
    if (!iq || !q) {
        xmppd_stanza_unref(iq);
        xmppd_stanza_unref(q);
        return;
    }
    char id[32];
    snprintf(id, sizeof(id), "push%u", ++mod->push_seq);
    xmppd_stanza_set_attr(iq, "type", "set");
    xmppd_stanza_set_attr(iq, "id", id);
    rs_item_xml_merged(mod, node, q, jid, it);
    xmppd_stanza_add(iq, q);
    rs_push_ctx c = { mod, iq };
    xmppd_user_sessions(mod->host, node, rs_push_one, &c);
    xmppd_stanza_unref(iq);
}

/* ---- API for other modules ---------------------------------------------- */

/* The item r's account sees for jid: stored (it, may be NULL) merged with
 * the overlay's (oc, may be NULL). */
static void rs_merged(const char *jid, const json_t *it, const roster_contact *oc, roster_item *v)
{
    *v = (roster_item){ .jid = jid };
    if (it)
        rs_view(jid, it, v);
    if (oc) {
        v->sub |= oc->sub;
        if (!v->name)
            v->name = oc->name;
    }
}

static bool rs_api_get(const roster *r, const char *jid, roster_item *it_r)
{
    json_t *items = rs_items(r);
    void *iter = json_object_iter_at(items, jid);
    const roster_overlay *ov = rs_overlay(r->mod);
    roster_contact oc;
    bool in_ov = ov && ov->get(ov, r->node, jid, &oc);
    if (!iter && !in_ov)
        return false;
    rs_merged(iter ? json_object_iter_key(iter) : oc.jid, iter ? json_object_iter_value(iter) : NULL,
              in_ov ? &oc : NULL, it_r);
    return true;
}

typedef struct rs_each {
    const roster *r;
    int (*fn)(const roster_item *it, void *ud);
    void *ud;
} rs_each;

/* The overlay's items that are not stored (the stored ones were seen). */
static int rs_each_overlay(const roster_contact *c, void *ud)
{
    rs_each *e = ud;
    if (json_object_get(rs_items(e->r), c->jid))
        return 0;
    roster_item v;
    rs_merged(c->jid, NULL, c, &v);
    return e->fn(&v, e->ud);
}

static void rs_api_foreach(const roster *r, int (*fn)(const roster_item *it, void *ud), void *ud)
{
    const roster_overlay *ov = rs_overlay(r->mod);
    const char *jid;
    json_t *it;
    json_object_foreach(rs_items(r), jid, it) {
        roster_contact oc;
        roster_item v;
        rs_merged(jid, it, ov && ov->get(ov, r->node, jid, &oc) ? &oc : NULL, &v);
        if (fn(&v, ud))
            return;
    }
    rs_each e = { r, fn, ud };
    if (ov)
        ov->foreach(ov, r->node, rs_each_overlay, &e);
}

static json_t *rs_item_new(void)
{
    return json_pack("{s:s, s:[], s:b, s:b}", "subscription", "none", "groups", "ask", 0,
                     "approved", 0);
}

static int rs_api_set_state(roster *r, const char *jid, unsigned sub, bool ask, bool approved)
{
    json_t *items = rs_items(r);
    json_t *it = json_object_get(items, jid);
    const roster_overlay *ov = rs_overlay(r->mod);
    roster_contact oc;
    if (ov && ov->get(ov, r->node, jid, &oc)) {
        /* sub is the merged view the caller saw, changed: the bits the
         * overlay implies are not stored (a stored bit there stays only
         * while the caller keeps it), the others are */
        roster_item old;
        rs_merged(jid, it, &oc, &old);
        if (old.sub == sub && old.ask == ask && old.approved == approved)
            return 0;
        unsigned stored = 0;
        if (it)
            stored = rs_sub_bits(json_string_value(json_object_get(it, "subscription")));
        sub = (sub & ~oc.sub) | (stored & oc.sub & sub);
        if (!it && sub == 0 && !ask && !approved)
            return 0;
    }
    if (!it) {
        if ((long long)json_object_size(items) >= r->mod->conf->max_items)
            return -1;
        if (!(items = rs_items_w(r)) || json_object_set_new(items, jid, rs_item_new()) < 0)
            return -1;
        it = json_object_get(items, jid);
    } else {
        roster_item v;
        rs_view(jid, it, &v);
        if (v.sub == sub && v.ask == ask && v.approved == approved)
            return 0;
    }
    json_object_set_new(it, "subscription", json_string(rs_sub_names[sub & 3]));
    json_object_set_new(it, "ask", json_boolean(ask));
    json_object_set_new(it, "approved", json_boolean(approved));
    long long ver = rs_bump(r);
    rs_save(r, NULL, NULL);
    rs_push(r->mod, r->node, ver, jid, it);
    return 1;
}

static int rs_api_pending_add(roster *r, const char *jid, const xmppd_stanza *req)
{
    char *xml = xmppd_stanza_to_string(req, XMPPD_NS_CLIENT, NULL);
    if (!xml)
        return -1;
    json_t *pending = rs_pending_w(r);
    int rc = pending ? json_object_set_new(pending, jid, json_string(xml)) : -1;
    free(xml);
    if (rc < 0)
        return -1;
    rs_save(r, NULL, NULL);
    return 0;
}

static int rs_api_pending_remove(roster *r, const char *jid)
{
    if (json_object_del(rs_pending(r), jid) == 0)
        rs_save(r, NULL, NULL);
    return 0;
}

static bool rs_api_pending_has(const roster *r, const char *jid)
{
    return json_object_get(rs_pending(r), jid) != NULL;
}

static void rs_api_pending_foreach(const roster *r,
                                   void (*fn)(const char *jid, xmppd_stanza *req, void *ud), void *ud)
{
    const char *jid;
    json_t *v;
    json_object_foreach(rs_pending(r), jid, v) {
        const char *xml = json_string_value(v);
        xmppd_stanza *st = xml ? xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT) : NULL;
        if (!st)
            continue;
        fn(jid, st, ud);
        xmppd_stanza_unref(st);
    }
}

static bool rs_api_in_group(const roster *r, const char *jid, const char *group)
{
    if (rs_stored_in_group(json_object_get(rs_items(r), jid), group))
        return true;
    const roster_overlay *ov = rs_overlay(r->mod);
    roster_contact oc;
    for (const char *const *g = ov && ov->get(ov, r->node, jid, &oc) ? oc.groups : NULL; g && *g; g++)
        if (strcmp(*g, group) == 0)
            return true;
    return false;
}

static void rs_api_overlay_changed(const roster_api *api, const char *node, const char *jid)
{
    rs_mod *mod = (rs_mod *)api;
    roster *r = rs_find(mod, node);
    if (r && r->doc)
        rs_push(mod, node, rs_ver(r), jid, json_object_get(rs_items(r), jid));
}

/* ---- IQ requests --------------------------------------------------------- */

/* A roster get or set waiting for storage: holds the session and the IQ. */
typedef struct rs_req {
    rs_mod *mod;
    xmppd_session *sess; /* ref */
    xmppd_stanza *iq;    /* ref */
    char *node;          /* the account (owned) */
    char *jid;           /* set: the item's bare JID (owned) */
    json_t *item;        /* set: new name and groups; NULL: remove (owned) */
    json_t *pushed;      /* set: the item as stored, pushed once durable */
    long long ver;
    bool remove;
} rs_req;

static void rs_req_free(rs_req *q)
{
    xmppd_session_unref(q->sess);
    xmppd_stanza_unref(q->iq);
    json_decref(q->item);
    json_decref(q->pushed);
    free(q->node);
    free(q->jid);
    free(q);
}

static rs_req *rs_req_new(rs_mod *mod, xmppd_event *ev)
{
    rs_req *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->mod = mod;
    q->sess = xmppd_session_ref(ev->session);
    q->iq = xmppd_stanza_ref(ev->stanza);
    q->node = strdup(ev->from->node);
    if (!q->node) {
        rs_req_free(q);
        return NULL;
    }
    return q;
}

/* Sends reply (consumed) to the requesting session unless it closed. */
static void rs_req_send(rs_req *q, xmppd_stanza *reply)
{
    if (reply && !xmppd_session_closed(q->sess))
        xmppd_session_send(q->sess, reply);
    xmppd_stanza_unref(reply);
}

static void rs_req_error(rs_req *q, const char *type, const char *cond, const char *text)
{
    rs_req_send(q, xmppd_stanza_error_reply(q->iq, type, cond, text));
}

/* §2.1.5 / §2.3.3: only the account itself reads and writes its roster. */
static bool rs_own_request(const xmppd_event *ev)
{
    if (!ev->session || !ev->from || !ev->from->node)
        return false;
    return !ev->to || (!ev->to->resource && xmppd_jid_bare_equal(ev->to, ev->from));
}

/* ---- roster get (§2.1.3, §2.6) -------------------------------------------- */

typedef struct rs_xml_ctx {
    const roster *r;
    xmppd_stanza *query;
} rs_xml_ctx;

/* The overlay's items that are not stored, into a roster result. */
static int rs_overlay_xml(const roster_contact *c, void *ud)
{
    rs_xml_ctx *x = ud;
    if (!json_object_get(rs_items(x->r), c->jid))
        rs_item_xml(x->query, c->jid, NULL, c);
    return 0;
}

static void rs_get_loaded(roster *r, void *ud)
{
    rs_req *q = ud;
    if (xmppd_session_closed(q->sess)) {
        rs_req_free(q);
        return;
    }
    if (!r) {
        rs_req_error(q, "wait", "internal-server-error", NULL);
        rs_req_free(q);
        return;
    }
    xmppd_session_set(q->sess, q->mod->m, (void *)&rs_interested);
    xmppd_session_mark(q->sess, RS_MARK, true);
    xmppd_stanza *reply = xmppd_stanza_reply(q->iq);
    const char *ver = xmppd_stanza_attr(xmppd_stanza_first(q->iq), "ver");
    char cur[RS_VER_MAX];
    rs_ver_text(q->mod, r->node, rs_ver(r), cur);
    /* §2.6.3: the client's version is current: empty result, pushes follow. */
    if (reply && !(q->mod->conf->versioning && ver && strcmp(ver, cur) == 0)) {
        xmppd_stanza *query = rs_query_new(q->mod, r->node, rs_ver(r));
        const char *jid;
        json_t *it;
        if (query) {
            json_object_foreach(rs_items(r), jid, it)
                rs_item_xml_merged(q->mod, r->node, query, jid, it);
            const roster_overlay *ov = rs_overlay(q->mod);
            rs_xml_ctx x = { r, query };
            if (ov)
                ov->foreach(ov, r->node, rs_overlay_xml, &x);
            xmppd_stanza_add(reply, query);
        }
    }
    rs_req_send(q, reply);
    rs_req_free(q);
}

static int rs_on_get(xmppd_event *ev, void *ud)
{
    rs_mod *mod = ud;
    if (!rs_own_request(ev))
        return xmppd_reply_error(ev, "auth", "forbidden", NULL);
    rs_req *q = rs_req_new(mod, ev);
    if (!q)
        return XMPPD_FAIL;
    mod->api.load(&mod->api, NULL, q->node, rs_get_loaded, q);
    return XMPPD_HANDLED;
}

/* ---- roster set (§2.3, §2.5) ---------------------------------------------- */

/* Reads <group/>s of item into a new array (*groups_r); NULL or an error. */
static const char *rs_parse_groups(const xmppd_stanza *item, json_t **groups_r)
{
    json_t *groups = json_array();
    if (!groups)
        return "internal-server-error";
    for (xmppd_stanza *g = xmppd_stanza_first(item); g; g = xmppd_stanza_next(g)) {
        if (strcmp(xmppd_stanza_name(g), "group") != 0)
            continue;
        const char *t = xmppd_stanza_text(g);
        const char *err = NULL;
        if (!*t || strlen(t) > RS_TEXT_MAX)
            err = "not-acceptable";
        size_t i;
        json_t *seen;
        json_array_foreach(groups, i, seen)
            if (!err && strcmp(json_string_value(seen), t) == 0)
                err = "bad-request";
        if (!err && json_array_append_new(groups, json_string(t)) < 0)
            err = "internal-server-error";
        if (err) {
            json_decref(groups);
            return err;
        }
    }
    *groups_r = groups;
    return NULL;
}

/* Checks a roster set and fills q; NULL or the error condition. */
static const char *rs_parse_set(const xmppd_stanza *query, rs_req *q)
{
    xmppd_stanza *item = NULL;
    for (xmppd_stanza *c = xmppd_stanza_first(query); c; c = xmppd_stanza_next(c)) {
        if (strcmp(xmppd_stanza_name(c), "item") != 0)
            continue;
        if (item)
            return "bad-request"; /* one item per set */
        item = c;
    }
    const char *jid_s = item ? xmppd_stanza_attr(item, "jid") : NULL;
    if (!jid_s)
        return "bad-request";
    xmppd_jid *jid = xmppd_jid_parse(jid_s);
    if (!jid)
        return "jid-malformed";
    q->jid = strdup(jid->bare);
    xmppd_jid_free(jid);
    if (!q->jid)
        return "internal-server-error";
    const char *sub = xmppd_stanza_attr(item, "subscription");
    if (sub && strcmp(sub, "remove") == 0) {
        q->remove = true;
        return NULL;
    }
    /* Clients echo the item's current state (slixmpp does): the four state
     * names are ignored, anything else is refused. 'ask' is ignored. */
    if (sub && rs_sub_bits(sub) == 0 && strcmp(sub, "none") != 0)
        return "bad-request";
    const char *name = xmppd_stanza_attr(item, "name");
    if (name && strlen(name) > RS_TEXT_MAX)
        return "not-acceptable";
    json_t *groups = NULL;
    const char *err = rs_parse_groups(item, &groups);
    if (err)
        return err;
    q->item = json_pack("{s:o}", "groups", groups);
    if (q->item && name && *name)
        json_object_set_new(q->item, "name", json_string(name));
    return q->item ? NULL : "internal-server-error";
}

static void rs_set_saved(int status, void *ud)
{
    rs_req *q = ud;
    if (status != XMPPD_STORE_OK) {
        if (status != XMPPD_STORE_CANCELLED)
            xmppd_log(q->mod->m, XMPPD_LOG_ERROR, "cannot store the roster of %s", q->node);
        rs_req_error(q, "wait", "internal-server-error", NULL);
    } else {
        rs_req_send(q, xmppd_stanza_reply(q->iq));
        rs_push(q->mod, q->node, q->ver, q->jid, q->pushed);
    }
    rs_req_free(q);
}

/* Routes <presence type=type from=from to=to/>. */
static void rs_send_presence(xmppd_host *h, const char *type, const char *from, const char *to)
{
    xmppd_stanza *p = xmppd_stanza_new("presence", XMPPD_NS_CLIENT);
    if (!p)
        return;
    if (type)
        xmppd_stanza_set_attr(p, "type", type);
    xmppd_stanza_set_attr(p, "from", from);
    xmppd_stanza_set_attr(p, "to", to);
    xmppd_route(h, p);
    xmppd_stanza_unref(p);
}

typedef struct rs_unavail_ctx {
    xmppd_host *host;
    const char *to;
} rs_unavail_ctx;

static int rs_unavail_one(xmppd_session *s, void *ud)
{
    rs_unavail_ctx *c = ud;
    if (xmppd_session_available(s))
        rs_send_presence(c->host, "unavailable", xmppd_session_jid(s)->full, c->to);
    return 0;
}

/* §2.5.2: removing an item cancels the subscriptions both ways. */
static void rs_removed_notify(rs_mod *mod, const char *node, const char *jid,
                              const roster_item *old, bool pending_in)
{
    char bare[2 * XMPPD_JID_PART_MAX + 2];
    snprintf(bare, sizeof(bare), "%s@%s", node, xmppd_host_name(mod->host));
    if ((old->sub & ROSTER_SUB_TO) || old->ask)
        rs_send_presence(mod->host, "unsubscribe", bare, jid);
    if ((old->sub & ROSTER_SUB_FROM) || pending_in)
        rs_send_presence(mod->host, "unsubscribed", bare, jid);
    if (old->sub & ROSTER_SUB_FROM) {
        rs_unavail_ctx c = { mod->host, jid };
        xmppd_user_sessions(mod->host, node, rs_unavail_one, &c);
    }
}

/* Applies q to r; NULL or the error condition. */
static const char *rs_apply_set(roster *r, rs_req *q)
{
    json_t *items = rs_items(r);
    json_t *it = json_object_get(items, q->jid);
    if (q->remove) {
        const roster_overlay *ov = rs_overlay(q->mod);
        roster_contact oc;
        if (ov && ov->get(ov, r->node, q->jid, &oc))
            return "not-allowed"; /* a shared group's member: it would come back */
        if (!it)
            return "item-not-found";
        roster_item old;
        rs_view(q->jid, it, &old);
        bool pending_in = json_object_get(rs_pending(r), q->jid) != NULL;
        rs_removed_notify(q->mod, r->node, q->jid, &old, pending_in);
        json_object_del(items, q->jid);
        json_object_del(rs_pending(r), q->jid);
        return NULL;
    }
    if (!it) {
        if ((long long)json_object_size(items) >= q->mod->conf->max_items)
            return "not-allowed";
        if (!(items = rs_items_w(r)) || json_object_set_new(items, q->jid, rs_item_new()) < 0)
            return "internal-server-error";
        it = json_object_get(items, q->jid);
    }
    json_object_del(it, "name");
    if (json_object_update(it, q->item) < 0)
        return "internal-server-error";
    q->pushed = json_incref(it);
    return NULL;
}

static void rs_set_loaded(roster *r, void *ud)
{
    rs_req *q = ud;
    if (!r) {
        rs_req_error(q, "wait", "internal-server-error", NULL);
        rs_req_free(q);
        return;
    }
    const char *err = rs_apply_set(r, q);
    if (err) {
        rs_req_error(q, NULL, err,
                     strcmp(err, "not-allowed") != 0 ? NULL
                     : q->remove ? "This contact comes from a shared group" : "The roster is full");
        rs_req_free(q);
        return;
    }
    q->ver = rs_bump(r);
    rs_save(r, rs_set_saved, q);
}

static int rs_on_set(xmppd_event *ev, void *ud)
{
    rs_mod *mod = ud;
    if (!rs_own_request(ev))
        return xmppd_reply_error(ev, "auth", "forbidden", NULL);
    rs_req *q = rs_req_new(mod, ev);
    if (!q)
        return XMPPD_FAIL;
    const char *err = rs_parse_set(xmppd_stanza_first(ev->stanza), q);
    if (err) {
        rs_req_free(q);
        return xmppd_reply_error(ev, NULL, err, NULL);
    }
    mod->api.load(&mod->api, NULL, q->node, rs_set_loaded, q);
    return XMPPD_HANDLED;
}

/* ---- API version 4: an administrator's writes ----------------------------- */

/* One write of another module, answered once stored (its xmppd_call ties
 * it to the caller). */
typedef struct rs_write {
    rs_mod *mod;
    char *node, *jid;
    json_t *pushed; /* the item as stored; NULL: removed */
    long long ver;
    xmppd_call *call;
    roster_done_cb done;
    void *ud;
} rs_write;

static void rs_write_cancel(void *p)
{
    rs_write *w = p;
    w->done(ROSTER_CANCELLED, w->ud);
}

static void rs_write_saved(int status, void *ud)
{
    rs_write *w = ud;
    if (status == XMPPD_STORE_OK)
        rs_push(w->mod, w->node, w->ver, w->jid, w->pushed);
    else if (status != XMPPD_STORE_CANCELLED)
        xmppd_log(w->mod->m, XMPPD_LOG_ERROR, "cannot store the roster of %s", w->node);
    if (xmppd_call_finish(w->call))
        w->done(status == XMPPD_STORE_OK ? ROSTER_DONE : ROSTER_FAILED, w->ud);
    free(w->node);
    free(w->jid);
    json_decref(w->pushed);
    free(w);
}

static rs_write *rs_write_new(roster *r, xmppd_module *caller, const char *jid, roster_done_cb done,
                              void *ud)
{
    rs_write *w = calloc(1, sizeof(*w));
    if (!w || !(w->node = strdup(r->node)) || !(w->jid = strdup(jid)) ||
        !(w->call = xmppd_call_new(caller, rs_write_cancel, w))) {
        if (w) {
            free(w->node);
            free(w->jid);
        }
        free(w);
        return NULL;
    }
    w->mod = r->mod;
    w->done = done;
    w->ud = ud;
    return w;
}

static void rs_write_go(roster *r, rs_write *w, json_t *it)
{
    w->pushed = it ? json_incref(it) : NULL;
    w->ver = rs_bump(r);
    rs_save(r, rs_write_saved, w);
}

static int rs_api_set_item(const roster_api *api, xmppd_module *caller, roster *r, const char *jid,
                           const char *name, const char *const *groups, size_t n_groups, int sub,
                           roster_done_cb done, void *ud)
{
    (void)api;
    if (!jid || !done || (name && strlen(name) > RS_TEXT_MAX) || (sub > 3))
        return -1;
    json_t *g = json_array();
    for (size_t i = 0; g && i < n_groups; i++) {
        bool again = false;
        for (size_t k = 0; k < i; k++)
            again |= strcmp(groups[k], groups[i]) == 0;
        size_t len = groups[i] ? strlen(groups[i]) : 0;
        if (again || len == 0 || len > RS_TEXT_MAX || json_array_append_new(g, json_string(groups[i])) < 0) {
            json_decref(g);
            return -1;
        }
    }
    json_t *items = rs_items(r);
    json_t *it = json_object_get(items, jid);
    if (!g || (!it && (long long)json_object_size(items) >= r->mod->conf->max_items)) {
        json_decref(g);
        return -1;
    }
    rs_write *w = rs_write_new(r, caller, jid, done, ud);
    if (!w || (!it && (!(items = rs_items_w(r)) || json_object_set_new(items, jid, rs_item_new()) < 0))) {
        json_decref(g);
        if (w) {
            xmppd_call_finish(w->call);
            free(w->node);
            free(w->jid);
            free(w);
        }
        return -1;
    }
    it = json_object_get(items, jid);
    json_object_set_new(it, "groups", g);
    if (name && *name)
        json_object_set_new(it, "name", json_string(name));
    else
        json_object_del(it, "name");
    if (sub >= 0)
        json_object_set_new(it, "subscription", json_string(rs_sub_names[sub & 3]));
    rs_write_go(r, w, it);
    return 0;
}

static int rs_api_remove_item(const roster_api *api, xmppd_module *caller, roster *r,
                              const char *jid, roster_done_cb done, void *ud)
{
    (void)api;
    const roster_overlay *ov = rs_overlay(r->mod);
    roster_contact oc;
    json_t *items = rs_items(r);
    json_t *it = jid ? json_object_get(items, jid) : NULL;
    if (!jid || !done || (ov && ov->get(ov, r->node, jid, &oc)))
        return -1;
    if (!it)
        return 1;
    rs_write *w = rs_write_new(r, caller, jid, done, ud);
    if (!w)
        return -1;
    roster_item old;
    rs_view(jid, it, &old);
    rs_removed_notify(r->mod, r->node, jid, &old, json_object_get(rs_pending(r), jid) != NULL);
    json_object_del(items, jid);
    json_object_del(rs_pending(r), jid);
    rs_write_go(r, w, NULL);
    return 0;
}

static void rs_api_groups(const roster *r, const char *jid, int (*fn)(const char *group, void *ud),
                          void *ud)
{
    size_t i;
    json_t *g;
    json_t *stored = json_object_get(json_object_get(rs_items(r), jid), "groups");
    json_array_foreach(stored, i, g)
        if (json_string_value(g) && fn(json_string_value(g), ud))
            return;
    const roster_overlay *ov = rs_overlay(r->mod);
    roster_contact oc;
    for (const char *const *o = ov && ov->get(ov, r->node, jid, &oc) ? oc.groups : NULL; o && *o; o++)
        if (!rs_stored_in_group(json_object_get(rs_items(r), jid), *o) && fn(*o, ud))
            return;
}

/* ---- `xmppctl roster JID list|add|remove` (api/xmppd/ctl.h) ---------------- */

#define RS_CTL_USAGE "JID list | JID add CONTACT [--name N] [--group G]... " \
                     "[--subscription none|to|from|both] | JID remove CONTACT"

/* One admin request: every field owned. req is the kernel's until answered
 * (NULL then, or once the serving instance unloads: the kernel answered).
 * Every asynchronous call is made for the serving instance, so its
 * cancellation (newest cleanups first) comes before the kernel's answer. */
typedef struct rs_ctl {
    struct rs_ctl *next;  /* in rs_ctl_pending */
    xmppd_ctl_request *req;
    rs_mod *serving;    /* the instance that registered the command */
    rs_mod *mod;        /* the instance of the account's host */
    char *node, *contact;
    enum { RS_CTL_LIST, RS_CTL_ADD, RS_CTL_REMOVE } op;
    json_t *item;       /* add: name, groups, subscription */
    long long ver;
    json_t *pushed;     /* the stored item (add), NULL (remove) */
} rs_ctl;

/* Requests in flight, of every instance: the list outlives any one of them
 * (the code stays mapped while an instance is loaded). */
static rs_ctl *rs_ctl_pending;

static void rs_ctl_free(rs_ctl *c)
{
    for (rs_ctl **p = &rs_ctl_pending; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    free(c->node);
    free(c->contact);
    json_decref(c->item);
    json_decref(c->pushed);
    free(c);
}

static void rs_ctl_saved(int status, void *ud)
{
    rs_ctl *c = ud;
    if (!c->req) {
    } else if (status != XMPPD_STORE_OK) {
        xmppd_ctl_error(c->req, "cannot store the roster of %s", c->node);
    } else {
        rs_push(c->mod, c->node, c->ver, c->contact, c->pushed);
        xmppd_ctl_reply(c->req, json_pack("{s:s}", "text", c->op == RS_CTL_ADD ? "added" : "removed"));
    }
    rs_ctl_free(c);
}

static void rs_ctl_list(rs_ctl *c, roster *r)
{
    json_t *items = json_array();
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    const char *jid;
    json_t *it;
    json_object_foreach(rs_items(r), jid, it) {
        roster_item v;
        rs_view(jid, it, &v);
        json_t *groups = json_object_get(it, "groups");
        json_array_append_new(items, json_pack("{s:s, s:s?, s:s, s:b, s:O?}", "jid", jid, "name",
                                               v.name, "subscription", rs_sub_names[v.sub & 3],
                                               "ask", v.ask, "groups", groups));
        if (out) {
            fprintf(out, "%s\t%s\t%s%s", jid, rs_sub_names[v.sub & 3], v.name ? v.name : "-",
                    v.ask ? "\task" : "");
            size_t i;
            json_t *g;
            json_array_foreach(groups, i, g)
                fprintf(out, "%s%s", i ? "," : "\t", json_string_value(g));
            fputc('\n', out);
        }
    }
    if (out)
        fclose(out);
    if (!items || !text)
        xmppd_ctl_error(c->req, "out of memory");
    else
        xmppd_ctl_reply(c->req, json_pack("{s:o, s:s}", "items", items, "text", text));
    free(text);
}

static void rs_ctl_loaded(roster *r, void *ud)
{
    rs_ctl *c = ud;
    if (!r || !c->req) {
        if (c->req)
            xmppd_ctl_error(c->req, "cannot load the roster of %s", c->node);
        rs_ctl_free(c);
        return;
    }
    if (c->op == RS_CTL_LIST) {
        rs_ctl_list(c, r);
        rs_ctl_free(c);
        return;
    }
    json_t *items = rs_items(r);
    json_t *it = json_object_get(items, c->contact);
    if (c->op == RS_CTL_REMOVE) {
        if (!it) {
            xmppd_ctl_error(c->req, "%s is not in the roster of %s@%s", c->contact, c->node,
                            xmppd_host_name(c->mod->host));
            rs_ctl_free(c);
            return;
        }
        roster_item old;
        rs_view(c->contact, it, &old);
        rs_removed_notify(c->mod, r->node, c->contact, &old,
                          json_object_get(rs_pending(r), c->contact) != NULL);
        json_object_del(items, c->contact);
        json_object_del(rs_pending(r), c->contact);
    } else {
        if (!it) {
            if ((long long)json_object_size(items) >= c->mod->conf->max_items) {
                xmppd_ctl_error(c->req, "the roster of %s is full (max_items)", c->node);
                rs_ctl_free(c);
                return;
            }
            if ((items = rs_items_w(r)))
                json_object_set_new(items, c->contact, rs_item_new());
            it = json_object_get(items, c->contact);
        }
        if (!it || json_object_update(it, c->item) < 0) {
            xmppd_ctl_error(c->req, "out of memory");
            rs_ctl_free(c);
            return;
        }
        c->pushed = json_incref(it);
    }
    c->ver = rs_bump(r);
    rs_save(r, rs_ctl_saved, c);
}

static void rs_ctl_exists(int result, void *ud)
{
    rs_ctl *c = ud;
    if (!c->req) {
        rs_ctl_free(c);
        return;
    }
    if (result != XMPPD_AUTH_OK) {
        xmppd_ctl_error(c->req, "%s@%s: %s", c->node, xmppd_host_name(c->mod->host),
                        xmppd_auth_result_str(result));
        rs_ctl_free(c);
        return;
    }
    c->mod->api.load(&c->mod->api, c->serving->m, c->node, rs_ctl_loaded, c);
}

/* Reads the options of "add" into c->item; NULL or why not. */
static const char *rs_ctl_add_options(rs_ctl *c, const json_t *args, size_t from)
{
    json_t *groups = json_array();
    c->item = json_pack("{s:o, s:s}", "groups", groups, "subscription", "none");
    if (!c->item)
        return "out of memory";
    for (size_t i = from; i < json_array_size(args); i += 2) {
        const char *opt = json_string_value(json_array_get(args, i));
        const char *val = json_string_value(json_array_get(args, i + 1));
        if (!opt || !val)
            return "an option without its value";
        if (strlen(val) > RS_TEXT_MAX || !*val)
            return "a name or group must have 1 to 1023 bytes";
        if (strcmp(opt, "--name") == 0) {
            json_object_set_new(c->item, "name", json_string(val));
        } else if (strcmp(opt, "--group") == 0) {
            size_t k;
            json_t *g;
            json_array_foreach(groups, k, g)
                if (strcmp(json_string_value(g), val) == 0)
                    return "the same group twice";
            json_array_append_new(groups, json_string(val));
        } else if (strcmp(opt, "--subscription") == 0) {
            if (rs_sub_bits(val) == 0 && strcmp(val, "none") != 0)
                return "--subscription is none, to, from or both";
            json_object_set_new(c->item, "subscription", json_string(val));
        } else {
            return "unknown option (--name, --group, --subscription)";
        }
    }
    return NULL;
}

static void rs_ctl_command(xmppd_ctl_request *req, const json_t *args, void *ud)
{
    rs_mod *self = ud;
    const char *jid_s = json_string_value(json_array_get(args, 0));
    const char *op = json_string_value(json_array_get(args, 1));
    const char *contact_s = json_string_value(json_array_get(args, 2));
    xmppd_jid *jid = jid_s ? xmppd_jid_parse(jid_s) : NULL;
    xmppd_jid *contact = contact_s ? xmppd_jid_parse(contact_s) : NULL;
    xmppd_host *h = jid && jid->node && !jid->resource ? xmppd_host_find(jid->domain) : NULL;
    const roster_api *api = h ? xmppd_use(h, "roster") : NULL;
    rs_ctl *c = calloc(1, sizeof(*c));
    const char *why = NULL;
    if (!c)
        why = "out of memory";
    else if (!op || (strcmp(op, "list") != 0 && strcmp(op, "add") != 0 && strcmp(op, "remove") != 0))
        why = "usage: roster " RS_CTL_USAGE;
    else if (!jid || !jid->node || jid->resource)
        why = "not an account address (user@host)";
    else if (!h)
        why = "not an account of a host of this server";
    else if (!api || api->version != ROSTER_API_VERSION)
        why = "the roster module is not loaded on that host";
    else if (strcmp(op, "list") != 0 && (!contact || contact->resource))
        why = "the contact must be a bare JID";
    else if (strcmp(op, "list") == 0 && json_array_size(args) != 2)
        why = "usage: roster JID list";
    else if (strcmp(op, "remove") == 0 && json_array_size(args) != 3)
        why = "usage: roster JID remove CONTACT";
    if (!why) {
        c->req = req;
        c->serving = self;
        c->mod = (rs_mod *)api; /* same module: api is the instance's first member */
        c->op = strcmp(op, "list") == 0 ? RS_CTL_LIST : strcmp(op, "add") == 0 ? RS_CTL_ADD
                                                                               : RS_CTL_REMOVE;
        c->node = strdup(jid->node);
        c->contact = contact ? strdup(contact->bare) : NULL;
        if (!c->node || (contact && !c->contact))
            why = "out of memory";
        else if (c->op == RS_CTL_ADD)
            why = rs_ctl_add_options(c, args, 3);
    }
    xmppd_jid_free(jid);
    xmppd_jid_free(contact);
    if (why) {
        xmppd_ctl_error(req, "%s", why);
        if (c)
            rs_ctl_free(c);
        return;
    }
    c->next = rs_ctl_pending;
    rs_ctl_pending = c;
    xmppd_auth_exists(self->m, c->mod->host, c->node, rs_ctl_exists, c);
}

/* ---- events ------------------------------------------------------------- */

static void rs_noop_loaded(roster *r, void *ud)
{
}

/* Loads the roster as a resource binds, so presence finds it in memory. */
static int rs_on_bound(xmppd_event *ev, void *ud)
{
    rs_mod *mod = ud;
    const char *user = ev->session ? xmppd_session_user(ev->session) : NULL;
    if (user)
        mod->api.load(&mod->api, NULL, user, rs_noop_loaded, NULL);
    return XMPPD_PASS;
}

/* Runs late (FALLBACK) so other modules' handlers still find the roster. */
static int rs_on_closed(xmppd_event *ev, void *ud)
{
    rs_mod *mod = ud;
    if (!ev->session)
        return XMPPD_PASS;
    xmppd_session_set(ev->session, mod->m, NULL);
    const char *user = xmppd_session_user(ev->session);
    roster *r = user ? rs_find(mod, user) : NULL;
    if (r)
        rs_release(r);
    return XMPPD_PASS;
}

/* Storage is purged by the kernel; forget the cached copy. */
static int rs_on_user_deleted(xmppd_event *ev, void *ud)
{
    rs_mod *mod = ud;
    roster *r = ev->data ? rs_find(mod, ev->data) : NULL;
    if (r) {
        rs_detach(r);
        rs_release(r);
    }
    return XMPPD_PASS;
}

/* Another node of the cluster stored a change of this roster: our copy
 * goes (a load in flight finishes for its waiters, then goes too). */
static int rs_on_invalidate(xmppd_event *ev, void *ud)
{
    rs_mod *mod = ud;
    roster *r = ev->to && ev->data && strcmp(ev->data, "roster") == 0
                    ? rs_find(mod, ev->to->node) : NULL;
    if (r) {
        rs_detach(r);
        rs_release(r);
    }
    return XMPPD_PASS;
}

static int rs_on_features(xmppd_event *ev, void *ud)
{
    rs_mod *mod = ud;
    if (mod->conf->versioning && ev->session && xmppd_session_authenticated(ev->session) && ev->stanza)
        xmppd_stanza_tag(ev->stanza, "ver", NS_ROSTERVER);
    return XMPPD_PASS;
}

/* ---- lifecycle ---------------------------------------------------------- */

static int rs_load(xmppd_module *m, const void *conf)
{
    rs_mod *mod = calloc(1, sizeof(*mod));
    if (!mod)
        return -1;
    mod->api = (roster_api){
        .version = ROSTER_API_VERSION,
        .size = sizeof(roster_api),
        .load = rs_api_load,
        .cached = rs_api_cached,
        .get = rs_api_get,
        .foreach = rs_api_foreach,
        .set_state = rs_api_set_state,
        .pending_add = rs_api_pending_add,
        .pending_remove = rs_api_pending_remove,
        .pending_has = rs_api_pending_has,
        .pending_foreach = rs_api_pending_foreach,
        .in_group = rs_api_in_group,
        .overlay_changed = rs_api_overlay_changed,
        .set_item = rs_api_set_item,
        .remove_item = rs_api_remove_item,
        .groups = rs_api_groups,
    };
    mod->m = m;
    mod->host = xmppd_module_host(m);
    mod->conf = conf;
    xmppd_module_set_data(m, mod);
    mod->store = xmppd_store_open(m, "roster", XMPPD_STORE_KEYVAL);
    if (!mod->store)
        return -1;
    if (xmppd_iq_handle(m, "get", NS_ROSTER, XMPPD_IQ_BARE, rs_on_get, mod) < 0 ||
        xmppd_iq_handle(m, "set", NS_ROSTER, XMPPD_IQ_BARE, rs_on_set, mod) < 0 ||
        xmppd_hook(m, "resource-bound", rs_on_bound, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "session-closed", rs_on_closed, XMPPD_PRIO_FALLBACK, mod) < 0 ||
        xmppd_hook(m, "user-deleted", rs_on_user_deleted, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "cluster-invalidate", rs_on_invalidate, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "stream-features", rs_on_features, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_provide(m, "roster", &mod->api) < 0)
        return -1;
    /* One command for every host: it finds the account's host's instance.
     * Taken by the first host's instance; the others' attempts fail. */
    xmppd_ctl_command(m, "roster", RS_CTL_USAGE, "list, add or remove an account's contacts",
                      rs_ctl_command, mod);
    return 0;
}

/* Rosters still loading keep their waiters' data: storage never calls back
 * an unloaded module, so that data (requests with session refs) is lost. */
static void rs_unload(xmppd_module *m)
{
    rs_mod *mod = xmppd_module_data(m);
    if (!mod)
        return;
    /* The kernel answered the requests this instance served; those waiting
     * on another host's instance finish without an answer. */
    for (rs_ctl *c = rs_ctl_pending; c; c = c->next)
        if (c->serving == mod) {
            c->req = NULL;
            c->serving = NULL;
        }
    tdestroy(mod->cache, rs_free);
    free(mod);
    xmppd_module_set_data(m, NULL);
}

XMPPD_MODULE(roster,
    .version = "1.0",
    .summary = "Contact lists: roster get/set, pushes, versioning (RFC 6121 section 2)",
    .specs = (const char *const[]){ "RFC 6121", NULL },
    .flags = XMPPD_MOD_KEEP_SLOTS, /* the interested-resource marks survive a reload */
    .options = rs_options,
    .conf_size = sizeof(rs_conf),
    .load = rs_load,
    .unload = rs_unload);
