/* mod_presence: presence subscriptions and presence broadcast (RFC 6121
 * §3, §4 and Appendix A), on top of the roster module's API.
 *
 * Outbound subscription stanzas (from a client) are stamped and applied to
 * the sender's roster in "pre-route", then routed; inbound ones (to a local
 * account) are applied to the recipient's roster in "presence/bare" and
 * "presence/full". A local contact therefore goes through both halves, a
 * remote one (s2s, later) through one each side.
 *
 * Per session the module keeps the list of entities that received directed
 * presence (§4.6), freed when the session closes. */
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "../roster/roster_api.h"

#define NS_PREAPPROVAL "urn:xmpp:features:pre-approval"

enum pr_kind { PR_NONE, PR_SUBSCRIBE, PR_SUBSCRIBED, PR_UNSUBSCRIBE, PR_UNSUBSCRIBED, PR_PROBE };

typedef struct pr_mod {
    xmppd_module *m;
    xmppd_host *host;
} pr_mod;

/* Per session: full or bare JIDs that got directed presence (owned). */
typedef struct pr_sess {
    char **jids;
    size_t n, cap;
} pr_sess;

/* One piece of work waiting for a roster. */
typedef struct pr_job {
    pr_mod *mod;
    enum pr_kind kind;
    xmppd_stanza *st;     /* ref or NULL */
    xmppd_session *sess;  /* ref or NULL */
    pr_sess *directed;    /* a closed session's state (owned) or NULL */
    char *peer;           /* the other party's bare JID (owned) */
    char *peer_full;      /* probe: the prober's address (owned) */
    bool initial;         /* broadcast: initial presence */
    bool closing;         /* broadcast: the session closed */
} pr_job;

/* ---- small helpers ------------------------------------------------------- */

static enum pr_kind pr_kind_of(const char *type)
{
    static const char *const names[] = { "subscribe", "subscribed", "unsubscribe", "unsubscribed",
                                         "probe" };
    for (int i = 0; type && i < 5; i++)
        if (strcmp(type, names[i]) == 0)
            return (enum pr_kind)(i + 1);
    return PR_NONE;
}

static const roster_api *pr_roster(const pr_mod *mod)
{
    const roster_api *api = xmppd_use(mod->host, "roster");
    if (!api || api->version != ROSTER_API_VERSION || api->size < sizeof(roster_api))
        return NULL;
    return api;
}

static void pr_sess_free(pr_sess *ps)
{
    if (!ps)
        return;
    for (size_t i = 0; i < ps->n; i++)
        free(ps->jids[i]);
    free(ps->jids);
    free(ps);
}

static pr_job *pr_job_new(pr_mod *mod, enum pr_kind kind, xmppd_stanza *st, xmppd_session *sess)
{
    pr_job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->mod = mod;
    j->kind = kind;
    j->st = st ? xmppd_stanza_ref(st) : NULL;
    j->sess = sess ? xmppd_session_ref(sess) : NULL;
    return j;
}

static void pr_job_free(pr_job *j)
{
    xmppd_stanza_unref(j->st);
    if (j->sess)
        xmppd_session_unref(j->sess);
    pr_sess_free(j->directed);
    free(j->peer);
    free(j->peer_full);
    free(j);
}

/* Routes a copy of st with from and to replaced (NULL: kept). */
static void pr_route_copy(xmppd_host *h, const xmppd_stanza *st, const char *from, const char *to)
{
    xmppd_stanza *c = xmppd_stanza_copy(st);
    if (!c)
        return;
    if (from)
        xmppd_stanza_set_attr(c, "from", from);
    if (to)
        xmppd_stanza_set_attr(c, "to", to);
    xmppd_route(h, c);
    xmppd_stanza_unref(c);
}

/* Routes <presence type=type from=from to=to/> (type NULL: available). */
static void pr_route_new(xmppd_host *h, const char *type, const char *from, const char *to)
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

/* ---- delivery to an account's available resources ------------------------ */

static int pr_send_available(xmppd_session *s, void *ud)
{
    if (xmppd_session_available(s))
        xmppd_session_send(s, ud);
    return 0;
}

/* Delivers st to every available resource of node (§8.5.2.1.2). */
static void pr_deliver(pr_mod *mod, const char *node, xmppd_stanza *st)
{
    xmppd_user_sessions(mod->host, node, pr_send_available, st);
}

typedef struct pr_from_ctx {
    xmppd_host *host;
    const char *to;
    const xmppd_session *skip;
    int n;
} pr_from_ctx;

static int pr_presence_of_one(xmppd_session *s, void *ud)
{
    pr_from_ctx *c = ud;
    xmppd_stanza *p = xmppd_session_presence(s);
    if (s == c->skip || !xmppd_session_available(s) || !p)
        return 0;
    pr_route_copy(c->host, p, xmppd_session_jid(s)->full, c->to);
    c->n++;
    return 0;
}

/* Routes the current presence of each available resource of node to `to`;
 * returns how many there were. */
static int pr_presence_of(pr_mod *mod, const char *node, const char *to)
{
    pr_from_ctx c = { mod->host, to, NULL, 0 };
    xmppd_user_sessions(mod->host, node, pr_presence_of_one, &c);
    return c.n;
}

static int pr_unavailable_of_one(xmppd_session *s, void *ud)
{
    pr_from_ctx *c = ud;
    if (xmppd_session_available(s))
        pr_route_new(c->host, "unavailable", xmppd_session_jid(s)->full, c->to);
    return 0;
}

/* Routes unavailable presence from each available resource of node. */
static void pr_unavailable_of(pr_mod *mod, const char *node, const char *to)
{
    pr_from_ctx c = { mod->host, to, NULL, 0 };
    xmppd_user_sessions(mod->host, node, pr_unavailable_of_one, &c);
}

/* ---- outbound subscription stanzas (§3.1.2, §3.2.2, §3.3.2, §3.4) --------- */

static void pr_outbound_subscribe(pr_job *j, const roster_api *api, roster *r, const roster_item *it)
{
    if (!(it->sub & ROSTER_SUB_TO) && !it->ask &&
        api->set_state(r, j->peer, it->sub, true, it->approved) < 0) {
        xmppd_log(j->mod->m, XMPPD_LOG_INFO, "subscription to %s refused: roster full", j->peer);
        return;
    }
    xmppd_route(j->mod->host, j->st);
}

static void pr_outbound_subscribed(pr_job *j, const roster_api *api, roster *r, const roster_item *it,
                                   const char *node)
{
    if (api->pending_has(r, j->peer)) {
        api->pending_remove(r, j->peer);
        api->set_state(r, j->peer, it->sub | ROSTER_SUB_FROM, it->ask, false);
        xmppd_route(j->mod->host, j->st);
        pr_presence_of(j->mod, node, j->peer); /* §3.1.5 */
    } else if (!(it->sub & ROSTER_SUB_FROM) && !it->approved) {
        api->set_state(r, j->peer, it->sub, it->ask, true); /* §3.4: pre-approval */
    }
}

static void pr_outbound_unsubscribed(pr_job *j, const roster_api *api, roster *r,
                                     const roster_item *it, const char *node)
{
    bool had_from = it->sub & ROSTER_SUB_FROM;
    api->pending_remove(r, j->peer);
    if (had_from || it->approved)
        api->set_state(r, j->peer, it->sub & ~ROSTER_SUB_FROM, it->ask, false);
    xmppd_route(j->mod->host, j->st);
    if (had_from)
        pr_unavailable_of(j->mod, node, j->peer); /* §3.2.2 */
}

static void pr_outbound_loaded(roster *r, void *ud)
{
    pr_job *j = ud;
    const roster_api *api = pr_roster(j->mod);
    const xmppd_jid *me = j->sess ? xmppd_session_jid(j->sess) : NULL;
    if (!r || !api || !me) {
        pr_job_free(j);
        return;
    }
    roster_item it = { .jid = j->peer };
    api->get(r, j->peer, &it);
    switch (j->kind) {
    case PR_SUBSCRIBE:
        pr_outbound_subscribe(j, api, r, &it);
        break;
    case PR_SUBSCRIBED:
        pr_outbound_subscribed(j, api, r, &it, me->node);
        break;
    case PR_UNSUBSCRIBE:
        if ((it.sub & ROSTER_SUB_TO) || it.ask)
            api->set_state(r, j->peer, it.sub & ~ROSTER_SUB_TO, false, it.approved);
        xmppd_route(j->mod->host, j->st);
        break;
    case PR_UNSUBSCRIBED:
        pr_outbound_unsubscribed(j, api, r, &it, me->node);
        break;
    default:
        break;
    }
    pr_job_free(j);
}

/* A client's subscription stanza: stamp (§3.1.2: 'to' bare, 'from' the
 * account's bare JID), update its roster, then route. */
static int pr_outbound(pr_mod *mod, xmppd_event *ev, enum pr_kind kind)
{
    const roster_api *api = pr_roster(mod);
    if (xmppd_jid_bare_equal(ev->to, ev->from))
        return XMPPD_HANDLED; /* with oneself: nothing to do */
    xmppd_stanza_set_attr(ev->stanza, "to", ev->to->bare);
    xmppd_stanza_set_attr(ev->stanza, "from", ev->from->bare);
    if (!api)
        return XMPPD_PASS;
    pr_job *j = pr_job_new(mod, kind, ev->stanza, ev->session);
    if (!j || !(j->peer = strdup(ev->to->bare))) {
        if (j)
            pr_job_free(j);
        return XMPPD_FAIL;
    }
    api->load(api, mod->m, ev->from->node, pr_outbound_loaded, j);
    return XMPPD_HANDLED;
}

/* ---- directed presence (§4.6) ------------------------------------------- */

static pr_sess *pr_sess_get(pr_mod *mod, xmppd_session *s, bool create)
{
    pr_sess *ps = xmppd_session_get(s, mod->m);
    if (!ps && create) {
        ps = calloc(1, sizeof(*ps));
        if (ps)
            xmppd_session_set(s, mod->m, ps);
    }
    return ps;
}

static void pr_directed_add(pr_sess *ps, const char *jid)
{
    for (size_t i = 0; i < ps->n; i++)
        if (strcmp(ps->jids[i], jid) == 0)
            return;
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? 2 * ps->cap : 4;
        char **v = realloc(ps->jids, cap * sizeof(*v));
        if (!v)
            return;
        ps->jids = v;
        ps->cap = cap;
    }
    char *c = strdup(jid);
    if (c)
        ps->jids[ps->n++] = c;
}

static void pr_directed_remove(pr_sess *ps, const char *jid)
{
    for (size_t i = 0; i < ps->n; i++) {
        if (strcmp(ps->jids[i], jid) == 0) {
            free(ps->jids[i]);
            ps->jids[i] = ps->jids[--ps->n];
            return;
        }
    }
}

/* Whether node's roster (in memory) lets bare see node's presence. */
static bool pr_has_from(const pr_mod *mod, const char *node, const char *bare)
{
    const roster_api *api = pr_roster(mod);
    roster *r = api ? api->cached(api, node) : NULL;
    roster_item it;
    return r && api->get(r, bare, &it) && (it.sub & ROSTER_SUB_FROM);
}

/* Remembers who got directed available presence from this session (a
 * contact with a 'from' subscription gets broadcasts anyway). */
static void pr_track_directed(pr_mod *mod, xmppd_event *ev, bool available)
{
    if (xmppd_jid_bare_equal(ev->to, ev->from))
        return;
    pr_sess *ps = pr_sess_get(mod, ev->session, available);
    if (!ps)
        return;
    if (!available)
        pr_directed_remove(ps, ev->to->full);
    else if (!pr_has_from(mod, ev->from->node, ev->to->bare))
        pr_directed_add(ps, ev->to->full);
}

static int pr_on_pre_route(xmppd_event *ev, void *ud)
{
    pr_mod *mod = ud;
    if (!ev->session || !ev->to || !ev->from || !ev->from->node ||
        strcmp(xmppd_stanza_name(ev->stanza), "presence") != 0)
        return XMPPD_PASS;
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    enum pr_kind kind = pr_kind_of(type);
    if (kind != PR_NONE && kind != PR_PROBE)
        return pr_outbound(mod, ev, kind);
    if (!type || strcmp(type, "unavailable") == 0)
        pr_track_directed(mod, ev, !type);
    return XMPPD_PASS;
}

/* ---- inbound subscription stanzas (§3.1.3, §3.1.6, §3.2.3, §3.3.3) --------- */

static void pr_inbound_subscribe(pr_job *j, const roster_api *api, roster *r, const roster_item *it,
                                 const char *node, const char *me)
{
    if (it->sub & ROSTER_SUB_FROM) {
        pr_route_new(j->mod->host, "subscribed", me, j->peer); /* already subscribed */
        return;
    }
    if (it->approved) {
        api->set_state(r, j->peer, it->sub | ROSTER_SUB_FROM, it->ask, false);
        pr_route_new(j->mod->host, "subscribed", me, j->peer);
        pr_presence_of(j->mod, node, j->peer);
        return;
    }
    api->pending_add(r, j->peer, j->st);
    pr_deliver(j->mod, node, j->st);
}

static void pr_inbound_loaded(roster *r, void *ud)
{
    pr_job *j = ud;
    const roster_api *api = pr_roster(j->mod);
    xmppd_jid *to = xmppd_jid_parse(xmppd_stanza_attr(j->st, "to"));
    if (!r || !api || !to || !to->node) {
        xmppd_jid_free(to);
        pr_job_free(j);
        return;
    }
    roster_item it = { .jid = j->peer };
    bool known = api->get(r, j->peer, &it);
    switch (j->kind) {
    case PR_SUBSCRIBE:
        pr_inbound_subscribe(j, api, r, &it, to->node, to->bare);
        break;
    case PR_SUBSCRIBED:
        if (known && it.ask && !(it.sub & ROSTER_SUB_TO)) {
            api->set_state(r, j->peer, it.sub | ROSTER_SUB_TO, false, it.approved);
            pr_deliver(j->mod, to->node, j->st);
        }
        break;
    case PR_UNSUBSCRIBE:
        if ((known && (it.sub & ROSTER_SUB_FROM)) || api->pending_has(r, j->peer)) {
            api->pending_remove(r, j->peer);
            if (known)
                api->set_state(r, j->peer, it.sub & ~ROSTER_SUB_FROM, it.ask, false);
            pr_deliver(j->mod, to->node, j->st);
            /* §3.3.3: the former subscriber learns that the contact's
             * resources are gone from its view. */
            if (known && (it.sub & ROSTER_SUB_FROM))
                pr_unavailable_of(j->mod, to->node, j->peer);
        }
        break;
    case PR_UNSUBSCRIBED:
        if (known && ((it.sub & ROSTER_SUB_TO) || it.ask)) {
            api->set_state(r, j->peer, it.sub & ~ROSTER_SUB_TO, false, it.approved);
            pr_deliver(j->mod, to->node, j->st);
        }
        break;
    default:
        break;
    }
    xmppd_jid_free(to);
    pr_job_free(j);
}

/* The recipient of a request is offline: make sure the account exists
 * before its roster (and a stored request) is created. */
static void pr_exists_done(int result, void *ud)
{
    pr_job *j = ud;
    const roster_api *api = pr_roster(j->mod);
    xmppd_jid *to = xmppd_jid_parse(xmppd_stanza_attr(j->st, "to"));
    if (api && to && to->node && (result == XMPPD_AUTH_OK || result == XMPPD_AUTH_DISABLED)) {
        api->load(api, j->mod->m, to->node, pr_inbound_loaded, j);
    } else {
        xmppd_log(j->mod->m, XMPPD_LOG_DEBUG, "subscription request dropped: %s",
                  result == XMPPD_AUTH_CANCELLED ? "the module unloads" : "no such account");
        pr_job_free(j);
    }
    xmppd_jid_free(to);
}

/* A subscription stanza for a local account: addressed bare to bare. */
static int pr_inbound(pr_mod *mod, xmppd_event *ev, enum pr_kind kind)
{
    const roster_api *api = pr_roster(mod);
    if (!api || !ev->from || xmppd_jid_bare_equal(ev->from, ev->to))
        return XMPPD_HANDLED;
    xmppd_stanza *st = xmppd_stanza_copy(ev->stanza);
    pr_job *j = st ? pr_job_new(mod, kind, st, NULL) : NULL;
    xmppd_stanza_unref(st);
    if (!j || !(j->peer = strdup(ev->from->bare))) {
        if (j)
            pr_job_free(j);
        return XMPPD_FAIL;
    }
    xmppd_stanza_set_attr(j->st, "from", ev->from->bare);
    xmppd_stanza_set_attr(j->st, "to", ev->to->bare);
    if (kind == PR_SUBSCRIBE && !api->cached(api, ev->to->node))
        xmppd_auth_exists(mod->m, mod->host, ev->to->node, pr_exists_done, j);
    else
        api->load(api, mod->m, ev->to->node, pr_inbound_loaded, j);
    return XMPPD_HANDLED;
}

/* ---- probes (§4.3.2) ------------------------------------------------------ */

static void pr_probe_loaded(roster *r, void *ud)
{
    pr_job *j = ud;
    const roster_api *api = pr_roster(j->mod);
    xmppd_jid *to = xmppd_jid_parse(xmppd_stanza_attr(j->st, "to"));
    roster_item it;
    /* Only a contact with a subscription to the account is answered. */
    if (r && api && to && to->node && api->get(r, j->peer, &it) && (it.sub & ROSTER_SUB_FROM)) {
        if (pr_presence_of(j->mod, to->node, j->peer_full) == 0)
            pr_route_new(j->mod->host, "unavailable", to->bare, j->peer_full);
    }
    xmppd_jid_free(to);
    pr_job_free(j);
}

static int pr_probe(pr_mod *mod, xmppd_event *ev)
{
    const roster_api *api = pr_roster(mod);
    if (!api || !ev->from || xmppd_jid_bare_equal(ev->from, ev->to))
        return XMPPD_HANDLED;
    pr_job *j = pr_job_new(mod, PR_PROBE, ev->stanza, NULL);
    if (!j || !(j->peer = strdup(ev->from->bare)) || !(j->peer_full = strdup(ev->from->full))) {
        if (j)
            pr_job_free(j);
        return XMPPD_FAIL;
    }
    api->load(api, mod->m, ev->to->node, pr_probe_loaded, j);
    return XMPPD_HANDLED;
}

/* presence/bare and presence/full: subscription stanzas and probes are ours;
 * available, unavailable and error presence take the kernel's delivery. */
static int pr_on_inbound(xmppd_event *ev, void *ud)
{
    pr_mod *mod = ud;
    if (!ev->to || !ev->to->node)
        return XMPPD_PASS;
    enum pr_kind kind = pr_kind_of(xmppd_stanza_attr(ev->stanza, "type"));
    if (kind == PR_PROBE)
        return pr_probe(mod, ev);
    if (kind != PR_NONE)
        return pr_inbound(mod, ev, kind);
    return XMPPD_PASS;
}

/* ---- broadcast (§4.2, §4.4, §4.5) ---------------------------------------- */

typedef struct pr_bc_ctx {
    pr_job *j;
    const char *me_full;
    const char *me_bare;
    const xmppd_stanza *st; /* the presence from me_full: copied per recipient */
} pr_bc_ctx;

/* st's copy for one recipient: the copies of one broadcast are serialised
 * once (xmppd_stanza_copy_to). */
static void pr_bc_route(xmppd_host *h, const xmppd_stanza *st, const char *to)
{
    xmppd_stanza *p = xmppd_stanza_copy_to(st, to);
    if (p)
        xmppd_route(h, p);
    xmppd_stanza_unref(p);
}

/* Contacts with 'from' get the presence; on initial presence, contacts
 * with 'to' get a probe from the new resource. */
static int pr_bc_contact(const roster_item *it, void *ud)
{
    pr_bc_ctx *c = ud;
    xmppd_host *h = c->j->mod->host;
    if (it->sub & ROSTER_SUB_FROM)
        pr_bc_route(h, c->st, it->jid);
    if (c->j->initial && (it->sub & ROSTER_SUB_TO))
        pr_route_new(h, "probe", c->me_full, it->jid);
    return 0;
}

/* The account's own available resources get the presence too. */
static int pr_bc_self(xmppd_session *s, void *ud)
{
    pr_bc_ctx *c = ud;
    if (!xmppd_session_available(s))
        return 0;
    xmppd_stanza *p = xmppd_stanza_copy_to(c->st, xmppd_session_jid(s)->full);
    if (!p)
        return 0;
    xmppd_session_send(s, p);
    xmppd_stanza_unref(p);
    return 0;
}

static void pr_send_pending(const char *jid, xmppd_stanza *req, void *ud)
{
    xmppd_session *s = ud;
    xmppd_session_send(s, req);
}

/* §4.2.2: the new resource learns about the account's other resources. */
static int pr_other_to_new(xmppd_session *o, void *ud)
{
    xmppd_session *s = ud;
    xmppd_stanza *p = xmppd_session_presence(o);
    if (o == s || !xmppd_session_available(o) || !p)
        return 0;
    xmppd_stanza *c = xmppd_stanza_copy(p);
    if (!c)
        return 0;
    xmppd_stanza_set_attr(c, "from", xmppd_session_jid(o)->full);
    xmppd_stanza_set_attr(c, "to", xmppd_session_jid(s)->full);
    xmppd_session_send(s, c);
    xmppd_stanza_unref(c);
    return 0;
}

/* Unavailable to directed-presence targets that are not 'from' contacts,
 * then forgets them (§4.6.3). */
static void pr_directed_flush(pr_job *j, pr_sess *ps, const roster_api *api, roster *r,
                              const char *me_full)
{
    for (size_t i = 0; ps && i < ps->n; i++) {
        xmppd_jid *t = xmppd_jid_parse(ps->jids[i]);
        roster_item it;
        bool from = t && r && api && api->get(r, t->bare, &it) && (it.sub & ROSTER_SUB_FROM);
        if (t && !from)
            pr_route_new(j->mod->host, "unavailable", me_full, ps->jids[i]);
        xmppd_jid_free(t);
        free(ps->jids[i]);
    }
    if (ps)
        ps->n = 0;
}

static void pr_broadcast_loaded(roster *r, void *ud)
{
    pr_job *j = ud;
    const roster_api *api = pr_roster(j->mod);
    const xmppd_jid *me = xmppd_session_jid(j->sess);
    /* A session that closed meanwhile was (or will be) announced
     * unavailable by the session-closed path. */
    if (!me || (!j->closing && xmppd_session_closed(j->sess))) {
        pr_job_free(j);
        return;
    }
    xmppd_stanza *out = xmppd_stanza_copy(j->st);
    if (!out || xmppd_stanza_set_attr(out, "from", me->full) < 0) {
        xmppd_stanza_unref(out);
        pr_job_free(j); /* OOM */
        return;
    }
    pr_bc_ctx c = { j, me->full, me->bare, out };
    if (r && api)
        api->foreach(r, pr_bc_contact, &c);
    xmppd_user_sessions(j->mod->host, me->node, pr_bc_self, &c);
    xmppd_stanza_unref(out);
    if (j->initial) {
        xmppd_user_sessions(j->mod->host, me->node, pr_other_to_new, j->sess);
        if (r && api)
            api->pending_foreach(r, pr_send_pending, j->sess); /* §3.1.3 */
    }
    if (xmppd_stanza_attr(j->st, "type")) {
        pr_sess *ps = j->closing ? j->directed : pr_sess_get(j->mod, j->sess, false);
        pr_directed_flush(j, ps, api, r, me->full);
    }
    pr_job_free(j);
}

static void pr_broadcast(pr_mod *mod, pr_job *j, const char *node)
{
    const roster_api *api = pr_roster(mod);
    if (api)
        api->load(api, mod->m, node, pr_broadcast_loaded, j);
    else
        pr_broadcast_loaded(NULL, j);
}

static int pr_on_broadcast(xmppd_event *ev, void *ud)
{
    pr_mod *mod = ud;
    const xmppd_presence_info *info = ev->data;
    const char *user = ev->session ? xmppd_session_user(ev->session) : NULL;
    if (!user || !ev->stanza)
        return XMPPD_PASS;
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    if (type && strcmp(type, "unavailable") != 0)
        return XMPPD_PASS;
    if (type && info && !info->was_available)
        return XMPPD_PASS; /* unavailable while not available: nothing to say */
    pr_job *j = pr_job_new(mod, PR_NONE, ev->stanza, ev->session);
    if (!j)
        return XMPPD_PASS;
    j->initial = !type && info && info->initial;
    pr_broadcast(mod, j, user);
    return XMPPD_PASS;
}

/* §4.6.3 and unclean logouts: a session that ends while available is
 * announced unavailable. */
static int pr_on_closed(xmppd_event *ev, void *ud)
{
    pr_mod *mod = ud;
    xmppd_session *s = ev->session;
    if (!s)
        return XMPPD_PASS;
    pr_sess *ps = xmppd_session_get(s, mod->m);
    xmppd_session_set(s, mod->m, NULL);
    const char *user = xmppd_session_user(s);
    if (!user || !xmppd_session_presence(s) || !xmppd_session_jid(s)) {
        pr_sess_free(ps);
        return XMPPD_PASS;
    }
    xmppd_stanza *p = xmppd_stanza_new("presence", XMPPD_NS_CLIENT);
    pr_job *j = p ? pr_job_new(mod, PR_NONE, p, s) : NULL;
    xmppd_stanza_unref(p);
    if (!j) {
        pr_sess_free(ps);
        return XMPPD_PASS;
    }
    xmppd_stanza_set_attr(j->st, "type", "unavailable");
    xmppd_stanza_set_attr(j->st, "from", xmppd_session_jid(s)->full);
    j->closing = true;
    j->directed = ps;
    pr_broadcast(mod, j, user);
    return XMPPD_PASS;
}

static int pr_on_features(xmppd_event *ev, void *ud)
{
    if (ev->session && xmppd_session_authenticated(ev->session) && ev->stanza)
        xmppd_stanza_tag(ev->stanza, "sub", NS_PREAPPROVAL);
    return XMPPD_PASS;
}

/* ---- lifecycle ------------------------------------------------------------ */

static int pr_load(xmppd_module *m, const void *conf)
{
    pr_mod *mod = calloc(1, sizeof(*mod));
    if (!mod)
        return -1;
    mod->m = m;
    mod->host = xmppd_module_host(m);
    xmppd_module_set_data(m, mod);
    if (xmppd_hook(m, "pre-route", pr_on_pre_route, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "presence/bare", pr_on_inbound, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "presence/full", pr_on_inbound, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "presence/broadcast", pr_on_broadcast, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "session-closed", pr_on_closed, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "stream-features", pr_on_features, XMPPD_PRIO_DEFAULT, mod) < 0)
        return -1;
    return 0;
}

static int pr_free_slot(xmppd_session *s, void *ud)
{
    const xmppd_module *m = ud;
    pr_sess_free(xmppd_session_get(s, m));
    xmppd_session_set(s, m, NULL);
    return 0;
}

static void pr_unload(xmppd_module *m)
{
    /* After a reload the slots already belong to the new instance
     * (XMPPD_MOD_KEEP_SLOTS) and this finds none; a plain unload frees them. */
    xmppd_host_sessions(xmppd_module_host(m), pr_free_slot, m);
    free(xmppd_module_data(m));
    xmppd_module_set_data(m, NULL);
}

XMPPD_MODULE(presence,
    .version = "1.0",
    .summary = "Presence subscriptions, probes and broadcast (RFC 6121 sections 3 and 4)",
    .depends = (const char *const[]){ "roster", NULL },
    .specs = (const char *const[]){ "RFC 6121", NULL },
    .flags = XMPPD_MOD_KEEP_SLOTS, /* directed-presence lists survive a reload */
    .load = pr_load,
    .unload = pr_unload);
