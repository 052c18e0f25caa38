/* Who hears of an account's events (XEP-0163 §4):
 *
 *  - the account's own available resources, and contacts with a presence
 *    subscription to it ('from' in its roster, §4.1 auto-subscribe) that
 *    the node's access model admits, each resource only when its caps
 *    announce NODE+notify (§4.2 filtered notifications, XEP-0115 through
 *    mod_caps). Local contacts' resources are found in the session table
 *    (available, priority >= 0, §4.3.2); other servers' entities are known
 *    from the presence they send to the account (kept per service);
 *  - explicit subscribers (the engine serves them; nobody twice);
 *  - never a contact the account blocks (§4.3.3; the privacy module's
 *    blocklist).
 *
 * The last item of each node a resource wants goes to it when it comes
 * online, once its caps are known (§4.3.4), and to other servers' entities
 * when their available presence arrives. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../privacy/privacy_api.h"
#include "pep.h"

#define PEP_NS_ADDRESS "http://jabber.org/protocol/address"
#define PEP_NS_CAPS "http://jabber.org/protocol/caps"
#define PEP_FEATURE_MAX (PS_NAME_MAX + 8)

static const caps_api *pep_caps(const pep_state *st)
{
    const caps_api *a = xmppd_use(st->host, "caps");
    return a && a->version >= 2 && a->size >= sizeof(caps_api) ? a : NULL;
}

/* "NODE+notify" into buf; false when it does not fit. */
static bool pep_notify_feature(const char *node, char buf[PEP_FEATURE_MAX])
{
    int n = snprintf(buf, PEP_FEATURE_MAX, "%s+notify", node);
    return n > 0 && n < PEP_FEATURE_MAX;
}

/* ---- access facts (ps_ops) ---------------------------------------------------------------- */

bool pep_presence_sub(const ps_service *s, const char *bare, void *ctx)
{
    (void)s;
    const pep_ctx *c = ctx;
    roster_item it;
    if (c && c->presence_bare && strcmp(c->presence_bare, bare) == 0)
        return true;
    return c && c->r && c->rapi && c->rapi->get(c->r, bare, &it) && (it.sub & ROSTER_SUB_FROM);
}

bool pep_in_groups(const ps_service *s, const char *bare, char *const *groups, void *ctx)
{
    (void)s;
    const pep_ctx *c = ctx;
    for (size_t i = 0; c && c->r && c->rapi && c->rapi->in_group && groups[i]; i++)
        if (c->rapi->in_group(c->r, bare, groups[i]))
            return true;
    return false;
}

bool pep_may_create(const ps_service *s, const xmppd_jid *from, void *ctx)
{
    (void)ctx;
    return !from || strcmp(from->bare, s->jid) == 0; /* a module, or the account */
}

/* ---- sending --------------------------------------------------------------------------- */

/* msg with a XEP-0033 replyto naming the publishing resource, as contacts
 * sharing presence get it (XEP-0163 §4.3.1). Made once per notification,
 * so the copies for all contacts share one tree and one serialisation
 * (xmppd_stanza_copy_to). NULL on OOM. */
static xmppd_stanza *pep_with_replyto(const xmppd_stanza *msg, const char *replyto)
{
    xmppd_stanza *c = xmppd_stanza_copy(msg);
    xmppd_stanza *addrs = c ? xmppd_stanza_tag(c, "addresses", PEP_NS_ADDRESS) : NULL;
    xmppd_stanza *a = addrs ? xmppd_stanza_tag(addrs, "address", NULL) : NULL;
    if (!a || xmppd_stanza_set_attr(a, "type", "replyto") < 0 ||
        xmppd_stanza_set_attr(a, "jid", replyto) < 0) {
        xmppd_stanza_unref(c);
        return NULL;
    }
    return c;
}

void pep_send(ps_service *s, const char *to, xmppd_stanza *msg, void *ctx)
{
    pep_svc *svc = s->ud;
    (void)ctx;
    xmppd_stanza *c = xmppd_stanza_copy_to(msg, to);
    if (c)
        xmppd_route(svc->st->host, c);
    xmppd_stanza_unref(c);
}

/* The account's blocklist while one notification goes out. */
typedef struct pep_blocked {
    char **v;
    size_t n, cap;
} pep_blocked;

static void pep_blocked_add(const char *jid, void *ud)
{
    pep_blocked *b = ud;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        char **v = realloc(b->v, cap * sizeof(*v));
        if (!v)
            return;
        b->v = v;
        b->cap = cap;
    }
    if ((b->v[b->n] = strdup(jid)))
        b->n++;
}

static void pep_blocked_load(const pep_state *st, const char *user, pep_blocked *b)
{
    const privacy_api *p = xmppd_use(st->host, "privacy");
    if (p && p->version >= 1 && p->size >= sizeof(privacy_api))
        p->blocklist(p, user, pep_blocked_add, b);
}

static void pep_blocked_free(pep_blocked *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->v[i]);
    free(b->v);
}

/* Is the contact (bare JID, its domain) blocked (XEP-0191 §3.1 matching)? */
static bool pep_is_blocked(const pep_blocked *b, const char *bare, const char *domain)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->v[i], bare) == 0 || strcmp(b->v[i], domain) == 0)
            return true;
    return false;
}

/* One notification on its way to the implicit recipients. */
typedef struct pep_fanout {
    pep_ctx *ctx;
    const ps_node *n;
    const ps_notification *nf;
    const caps_api *caps;
    char feature[PEP_FEATURE_MAX];
    xmppd_stanza *contact_msg; /* what contacts get: with the replyto, if any */
    const char *contact_bare;
    bool owner;                /* sending to the account's own resources */
    pep_blocked blocked;
} pep_fanout;

static int pep_to_session(xmppd_session *s, void *ud)
{
    pep_fanout *f = ud;
    const xmppd_jid *jid = xmppd_session_jid(s);
    if (!jid || !xmppd_session_available(s) || (!f->owner && xmppd_session_priority(s) < 0))
        return 0;
    if (f->caps->session_has_feature(f->caps, s, f->feature) != CAPS_YES)
        return 0;
    if (ps_node_subscribed(f->n, jid->full, jid->bare))
        return 0; /* an explicit subscriber: served already */
    xmppd_stanza *c = xmppd_stanza_copy_to(f->owner ? f->nf->msg : f->contact_msg, jid->full);
    if (c)
        xmppd_session_send(s, c);
    xmppd_stanza_unref(c);
    return 0;
}

/* The other servers' entities of contact bare that want the node. */
static void pep_to_remotes(pep_fanout *f, const char *bare)
{
    pep_svc *svc = f->ctx->svc;
    for (const pep_remote *r = svc->remotes; r; r = r->next) {
        if (!r->ver || strncmp(r->jid, bare, strlen(bare)) != 0 || r->jid[strlen(bare)] != '/')
            continue;
        if (f->caps->jid_has_feature(f->caps, r->jid, r->node, r->ver, r->hash, f->feature) != CAPS_YES ||
            ps_node_subscribed(f->n, r->jid, bare))
            continue;
        xmppd_stanza *c = xmppd_stanza_copy_to(f->contact_msg, r->jid);
        if (c)
            xmppd_route(svc->st->host, c);
        xmppd_stanza_unref(c);
    }
}

static int pep_to_contact(const roster_item *it, void *ud)
{
    pep_fanout *f = ud;
    const char *type, *cond, *ps_cond;
    const char *at = strchr(it->jid, '@');
    const char *domain = at ? at + 1 : it->jid;
    if (!(it->sub & ROSTER_SUB_FROM) || pep_is_blocked(&f->blocked, it->jid, domain))
        return 0;
    f->ctx->presence_bare = it->jid; /* 'from': presence access granted without a lookup */
    int may = ps_may_read(f->n, it->jid, f->ctx, &type, &cond, &ps_cond);
    f->ctx->presence_bare = NULL;
    if (may < 0)
        return 0;
    const pep_state *st = f->ctx->st;
    if (at && strcmp(domain, xmppd_host_name(st->host)) == 0) {
        char node[XMPPD_JID_PART_MAX + 1];
        size_t len = (size_t)(at - it->jid);
        if (len > XMPPD_JID_PART_MAX)
            return 0;
        memcpy(node, it->jid, len);
        node[len] = '\0';
        xmppd_user_sessions(st->host, node, pep_to_session, f);
    } else {
        pep_to_remotes(f, it->jid);
    }
    return 0;
}

void pep_notify(ps_service *s, const ps_node *n, const ps_notification *nf, void *ctx)
{
    pep_ctx *c = ctx;
    pep_svc *svc = s->ud;
    pep_fanout f = { .ctx = c, .n = n, .nf = nf, .caps = pep_caps(c->st) };
    if (!f.caps || !pep_notify_feature(n->name, f.feature))
        return; /* without caps nobody announced interest */
    f.owner = true;
    xmppd_user_sessions(c->st->host, svc->user, pep_to_session, &f);
    f.owner = false;
    const char *replyto = nf->item ? c->publisher_full : NULL;
    f.contact_msg = replyto ? pep_with_replyto(nf->msg, replyto) : xmppd_stanza_ref(nf->msg);
    if (c->r && c->rapi && f.contact_msg) {
        pep_blocked_load(c->st, svc->user, &f.blocked);
        c->rapi->foreach(c->r, pep_to_contact, &f);
        pep_blocked_free(&f.blocked);
    }
    xmppd_stanza_unref(f.contact_msg);
}

/* ---- last items when a resource comes online (§4.3.4) ------------------------------------- */

/* Where the last items go: a local session (s) or another server's entity. */
typedef struct pep_last_job {
    pep_state *st;
    xmppd_session *s;      /* reference, or NULL for a remote entity */
    char *full, *bare;
    char *node, *ver, *hash; /* remote entity's caps */
    bool own;              /* the account's own service */
    bool roster_pass;      /* second pass: only nodes of access model roster */
} pep_last_job;

static void pep_last_job_free(void *ud)
{
    pep_last_job *j = ud;
    if (j->s)
        xmppd_session_unref(j->s);
    free(j->full);
    free(j->bare);
    free(j->node);
    free(j->ver);
    free(j->hash);
    free(j);
}

static pep_last_job *pep_last_job_new(pep_state *st, xmppd_session *s, const char *full, bool own)
{
    pep_last_job *j = calloc(1, sizeof(*j));
    xmppd_jid *jid = j ? xmppd_jid_parse(full) : NULL;
    if (!jid || !(j->full = strdup(jid->full)) || !(j->bare = strdup(jid->bare))) {
        xmppd_jid_free(jid);
        if (j)
            pep_last_job_free(j);
        return NULL;
    }
    xmppd_jid_free(jid);
    j->st = st;
    j->s = s ? xmppd_session_ref(s) : NULL;
    j->own = own;
    return j;
}

/* Does the job's entity want node (its caps)? */
static int pep_wants(const pep_last_job *j, const caps_api *caps, const char *feature)
{
    if (j->s)
        return xmppd_session_closed(j->s) ? CAPS_NO : caps->session_has_feature(caps, j->s, feature);
    return caps->jid_has_feature(caps, j->full, j->node, j->ver, j->hash, feature);
}

static void pep_last_run(pep_ctx *ctx, void *ud)
{
    pep_last_job *j = ud;
    const caps_api *caps = ctx ? pep_caps(ctx->st) : NULL;
    bool needs_roster = false;
    for (size_t i = 0; caps && i < ctx->svc->ps->n_nodes; i++) {
        const ps_node *n = ctx->svc->ps->nodes[i];
        char feature[PEP_FEATURE_MAX];
        const char *type, *cond, *ps_cond;
        if (n->cfg.send_last != PS_SENDLAST_ON_SUB_AND_PRESENCE || !n->last ||
            (j->roster_pass && n->cfg.access != PS_ACCESS_ROSTER) ||
            !pep_notify_feature(n->name, feature) || pep_wants(j, caps, feature) != CAPS_YES)
            continue;
        if (!j->own && n->cfg.access == PS_ACCESS_ROSTER && !ctx->r) {
            needs_roster = true; /* asked again with the roster below */
            continue;
        }
        ctx->presence_bare = j->own ? NULL : j->bare;
        int may = ps_may_read(n, j->bare, ctx, &type, &cond, &ps_cond);
        ctx->presence_bare = NULL;
        if (may == 0 && !ps_node_subscribed(n, j->full, j->bare))
            ps_send_last(ctx->svc->ps, n, j->full, ctx);
    }
    if (needs_roster) {
        j->roster_pass = true;
        pep_with_service(ctx->st, ctx->svc->user, true, pep_last_run, pep_last_job_free, j);
        return;
    }
    pep_last_job_free(j);
}

/* The walk over a new resource's roster: each local contact it sees. */
typedef struct pep_contacts_walk {
    pep_state *st;
    xmppd_session *s;      /* reference */
    char *full;
} pep_contacts_walk;

static void pep_walk_free(pep_contacts_walk *w)
{
    xmppd_session_unref(w->s);
    free(w->full);
    free(w);
}

static int pep_last_from_contact(const roster_item *it, void *ud)
{
    pep_contacts_walk *w = ud;
    const char *at = strchr(it->jid, '@');
    char node[XMPPD_JID_PART_MAX + 1];
    size_t len = at ? (size_t)(at - it->jid) : 0;
    if (!(it->sub & ROSTER_SUB_TO) || !at || len > XMPPD_JID_PART_MAX ||
        strcmp(at + 1, xmppd_host_name(w->st->host)) != 0)
        return 0; /* other servers send their own accounts' last items */
    memcpy(node, it->jid, len);
    node[len] = '\0';
    pep_last_job *j = pep_last_job_new(w->st, w->s, w->full, false);
    if (j)
        pep_with_service(w->st, node, false, pep_last_run, pep_last_job_free, j);
    return 0;
}

static void pep_on_own_roster(roster *r, void *ud)
{
    pep_contacts_walk *w = ud;
    const roster_api *rapi = xmppd_use(w->st->host, "roster");
    if (r && rapi && !xmppd_session_closed(w->s))
        rapi->foreach(r, pep_last_from_contact, w);
    pep_walk_free(w);
}

/* Own service, then every local contact the account sees ('to'). */
static void pep_last_items_to(pep_state *st, xmppd_session *s)
{
    const char *user = xmppd_session_user(s);
    const xmppd_jid *jid = xmppd_session_jid(s);
    const caps_api *caps = pep_caps(st);
    if (!user || !jid || !caps || caps->session_has_feature(caps, s, NULL) != CAPS_YES)
        return; /* no caps, no interest; unknown: "caps-resolved" comes */
    pep_last_job *j = pep_last_job_new(st, s, jid->full, true);
    if (j)
        pep_with_service(st, user, false, pep_last_run, pep_last_job_free, j);
    const roster_api *rapi = xmppd_use(st->host, "roster");
    bool usable = rapi && rapi->version == ROSTER_API_VERSION && rapi->size >= sizeof(roster_api);
    pep_contacts_walk *w = usable ? calloc(1, sizeof(*w)) : NULL;
    if (!w || !(w->full = strdup(jid->full))) {
        free(w);
        return;
    }
    w->st = st;
    w->s = xmppd_session_ref(s);
    rapi->load(rapi, st->m, user, pep_on_own_roster, w);
}

int pep_on_presence(xmppd_event *ev, void *ud)
{
    const xmppd_presence_info *info = ev->data;
    if (ev->session && info && info->initial)
        pep_last_items_to(ud, ev->session);
    return XMPPD_PASS;
}

/* ---- other servers' entities --------------------------------------------------------------- */

void pep_remotes_free(pep_svc *svc)
{
    for (pep_remote *r = svc->remotes, *next; r; r = next) {
        next = r->next;
        free(r->jid);
        free(r->node);
        free(r->ver);
        free(r->hash);
        free(r);
    }
    svc->remotes = NULL;
    svc->n_remotes = 0;
}

static void pep_remote_drop(pep_svc *svc, const char *jid)
{
    for (pep_remote **p = &svc->remotes; *p; p = &(*p)->next)
        if (strcmp((*p)->jid, jid) == 0) {
            pep_remote *r = *p;
            *p = r->next;
            free(r->jid);
            free(r->node);
            free(r->ver);
            free(r->hash);
            free(r);
            svc->n_remotes--;
            return;
        }
}

static char *pep_dup0(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Keeps (or updates) what j says of a remote entity; false when the
 * account does not share its presence with it or the list is full. */
static bool pep_remote_keep(pep_ctx *ctx, const pep_last_job *j)
{
    pep_svc *svc = ctx->svc;
    roster_item it;
    if (!ctx->r || !ctx->rapi || !ctx->rapi->get(ctx->r, j->bare, &it) || !(it.sub & ROSTER_SUB_FROM))
        return false;
    pep_remote_drop(svc, j->full);
    if (svc->n_remotes >= ctx->st->max_remotes)
        return false;
    pep_remote *r = calloc(1, sizeof(*r));
    if (!r || !(r->jid = strdup(j->full))) {
        free(r);
        return false;
    }
    r->node = pep_dup0(j->node);
    r->ver = pep_dup0(j->ver);
    r->hash = pep_dup0(j->hash);
    r->next = svc->remotes;
    svc->remotes = r;
    svc->n_remotes++;
    return true;
}

static void pep_remote_run(pep_ctx *ctx, void *ud)
{
    pep_last_job *j = ud;
    const caps_api *caps = ctx ? pep_caps(ctx->st) : NULL;
    if (ctx && pep_remote_keep(ctx, j) && caps && j->ver &&
        caps->jid_has_feature(caps, j->full, j->node, j->ver, j->hash, NULL) == CAPS_YES) {
        pep_last_run(ctx, j); /* consumes j */
        return;
    }
    pep_last_job_free(j);
}

int pep_on_presence_in(xmppd_event *ev, void *ud)
{
    pep_state *st = ud;
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    if (!ev->from || !ev->to || !ev->to->node || !ev->from->resource ||
        strcmp(ev->from->domain, xmppd_host_name(st->host)) == 0)
        return XMPPD_PASS; /* local contacts are found in the session table */
    if (type && strcmp(type, "unavailable") == 0) {
        pep_svc *svc = pep_cached(st, ev->to->node);
        if (svc)
            pep_remote_drop(svc, ev->from->full);
        return XMPPD_PASS;
    }
    if (type)
        return XMPPD_PASS;
    const xmppd_stanza *c = xmppd_stanza_child(ev->stanza, "c", PEP_NS_CAPS);
    pep_last_job *j = pep_last_job_new(st, NULL, ev->from->full, false);
    if (!j)
        return XMPPD_PASS;
    const char *node = c ? xmppd_stanza_attr(c, "node") : NULL, *ver = c ? xmppd_stanza_attr(c, "ver") : NULL;
    if (node && ver) {
        const char *hash = xmppd_stanza_attr(c, "hash");
        j->node = strdup(node);
        j->ver = strdup(ver);
        j->hash = strdup(hash ? hash : "");
    }
    pep_with_service(st, ev->to->node, true, pep_remote_run, pep_last_job_free, j);
    return XMPPD_PASS;
}

/* ---- caps answered ---------------------------------------------------------------------------- */

typedef struct pep_resolved {
    pep_state *st;
    const char *full;
} pep_resolved;

/* A remote entity's caps are known: each account it shares presence with
 * sends it the last items it wants. */
static int pep_resolved_remote(pep_svc *svc, void *ud)
{
    pep_resolved *res = ud;
    for (const pep_remote *r = svc->remotes; r; r = r->next) {
        if (strcmp(r->jid, res->full) != 0)
            continue;
        pep_last_job *j = pep_last_job_new(res->st, NULL, r->jid, false);
        if (j && r->ver) {
            j->node = pep_dup0(r->node);
            j->ver = pep_dup0(r->ver);
            j->hash = pep_dup0(r->hash);
            pep_with_service(res->st, svc->user, false, pep_last_run, pep_last_job_free, j);
        } else if (j) {
            pep_last_job_free(j);
        }
        break;
    }
    return 0;
}

int pep_on_caps_resolved(xmppd_event *ev, void *ud)
{
    pep_state *st = ud;
    if (ev->session) {
        if (xmppd_session_available(ev->session))
            pep_last_items_to(st, ev->session);
    } else if (ev->from) {
        pep_resolved res = { st, ev->from->full };
        pep_foreach(st, pep_resolved_remote, &res);
    }
    return XMPPD_PASS;
}
