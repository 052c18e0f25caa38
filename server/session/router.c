/* The router: every stanza from a client, and every stanza a module routes,
 * goes through here. Address rules per RFC 6120 §10 and RFC 6121 §8.5;
 * events per api/xmppd/router.h. */
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "session/place.h"
#include "session/session.h"
#include "xml/fanout.h"
#include "xml/serialise.h"

enum kind { K_MESSAGE, K_PRESENCE, K_IQ };
static const char *const kind_names[] = { "message", "presence", "iq" };

/* Pre-built event names: "message/bare" etc., no formatting per stanza. */
static const char *const ev_host[] = { "message/host", "presence/host", "iq/host" };
static const char *const ev_bare[] = { "message/bare", "presence/bare", "iq/bare" };
static const char *const ev_full[] = { "message/full", "presence/full", "iq/full" };

static int kind_of(const xmppd_stanza *st)
{
    const char *n = xmppd_stanza_name(st);
    for (int k = 0; k < 3; k++)
        if (strcmp(n, kind_names[k]) == 0)
            return k;
    return -1;
}

static bool type_is(const xmppd_stanza *st, const char *t)
{
    const char *v = xmppd_stanza_attr(st, "type");
    return v && strcmp(v, t) == 0;
}

/* A message's type, "normal" when absent (RFC 6121 §5.2.2). */
static const char *msg_type(const xmppd_stanza *st)
{
    const char *v = xmppd_stanza_attr(st, "type");
    return v ? v : "normal";
}

/* Routes to domains that are not hosts: set by the layers above. */
static int (*component_route)(const xmppd_jid *to, xmppd_stanza *st);
static bool (*remote_route)(xmppd_event *ev);
static bool (*cluster_route)(xmppd_event *ev);

void router_set_component_route(int (*fn)(const xmppd_jid *to, xmppd_stanza *st))
{
    component_route = fn;
}

void router_set_remote_route(bool (*fn)(xmppd_event *ev))
{
    remote_route = fn;
}

void router_set_cluster_route(bool (*fn)(xmppd_event *ev))
{
    cluster_route = fn;
}

/* ---- output to sessions -------------------------------------------------- */

XMPPD_EXPORT int xmppd_session_write(xmppd_session *s, xmppd_stanza *st)
{
    if (xmppd_session_closed(s))
        return -1;
    session_write(s, st);
    return 0;
}

XMPPD_EXPORT int xmppd_session_send(xmppd_session *s, xmppd_stanza *st)
{
    if (xmppd_session_closed(s))
        return -1;
    if (s->remote) {
        /* its node fires "deliver" for it */
        session_write(s, st);
        return 0;
    }
    xmppd_event ev = { .name = "deliver", .host = s->host, .session = s, .stanza = st, .data = s };
    if (xmppd_fire(&ev) == XMPPD_HANDLED)
        return 0;
    session_write(s, st);
    return 0;
}

/* ---- errors ---------------------------------------------------------------- */

/* A message error carries the original payload (RFC 6120 §8.3.1 allows it)
 * so the sender's client can show which message failed; other kinds carry
 * only the <error/>. Also used by s2s_out.c for its bounces. */
xmppd_stanza *router_error_reply(const xmppd_stanza *orig, const char *type, const char *cond,
                                 const char *text)
{
    xmppd_stanza *bare = xmppd_stanza_error_reply(orig, type, cond, text);
    if (!bare || kind_of(orig) != K_MESSAGE)
        return bare;
    xmppd_stanza *e = xmppd_stanza_copy(orig);
    xmppd_stanza *err = xmppd_stanza_child(bare, "error", NULL);
    if (!e || !err) {
        xmppd_stanza_unref(e);
        return bare;
    }
    static const char *const attrs[] = { "to", "from", "type", "id" };
    for (size_t i = 0; i < sizeof(attrs) / sizeof(*attrs); i++)
        xmppd_stanza_set_attr(e, attrs[i], xmppd_stanza_attr(bare, attrs[i]));
    xmppd_stanza_add(e, xmppd_stanza_copy(err));
    xmppd_stanza_unref(bare);
    return e;
}

/* Sends a stanza error back to the sender. Errors are never answered with
 * errors (RFC 6120 §8.3.1). */
static void bounce(xmppd_event *ev, const char *type, const char *cond, const char *text)
{
    if (type_is(ev->stanza, "error") || (kind_of(ev->stanza) == K_IQ && type_is(ev->stanza, "result")))
        return;
    xmppd_stanza *e = router_error_reply(ev->stanza, type, cond, text);
    if (!e)
        return;
    log_kernel("router", XMPPD_LOG_DEBUG, "bounce: %s %s from %s to %s: %s", xmppd_stanza_name(ev->stanza),
               xmppd_stanza_attr(ev->stanza, "id") ? xmppd_stanza_attr(ev->stanza, "id") : "(no id)",
               ev->from ? ev->from->full : "?", ev->to ? ev->to->full : "(none)", cond);
    /* A stanza without 'to' was for the account itself: its error carries
     * no 'from' (RFC 6120 §10.3.3). */
    if (!xmppd_stanza_attr(e, "from") && ev->to)
        xmppd_stanza_set_attr(e, "from", ev->to->full);
    if (ev->session && !xmppd_session_closed(ev->session) && ev->from &&
        ev->session->jid && xmppd_jid_equal(ev->from, ev->session->jid))
        xmppd_session_send(ev->session, e);
    else
        xmppd_route(ev->host, e);
    xmppd_stanza_unref(e);
}

XMPPD_EXPORT int xmppd_reply(xmppd_event *ev, xmppd_stanza *reply)
{
    /* A request without 'to' was addressed to the account itself: its answer
     * carries no 'from' (RFC 6120 §10.3.3). */
    if (!xmppd_stanza_attr(reply, "from") && ev->to)
        xmppd_stanza_set_attr(reply, "from", ev->to->full);
    if (!xmppd_stanza_attr(reply, "to") && ev->from)
        xmppd_stanza_set_attr(reply, "to", ev->from->full);
    int rc;
    if (ev->session && ev->from && ev->session->jid && xmppd_jid_equal(ev->from, ev->session->jid)) {
        rc = xmppd_session_send(ev->session, reply);
    } else {
        if (!xmppd_stanza_attr(reply, "from") && ev->host)
            xmppd_stanza_set_attr(reply, "from", ev->host->name);
        rc = xmppd_route(ev->host, reply);
    }
    xmppd_stanza_unref(reply);
    return rc;
}

XMPPD_EXPORT int xmppd_reply_error(xmppd_event *ev, const char *type, const char *condition, const char *text)
{
    bounce(ev, type, condition, text);
    return XMPPD_HANDLED;
}

/* ---- deferred replies ------------------------------------------------------ */

struct xmppd_pending {
    xmppd_event ev;       /* points into the fields below */
    char *name;           /* owned copy, or NULL */
    xmppd_jid *from, *to; /* owned copies, or NULL */
};

XMPPD_EXPORT void xmppd_pending_drop(xmppd_pending *p)
{
    if (!p)
        return;
    xmppd_session_unref(p->ev.session);
    xmppd_stanza_unref(p->ev.stanza);
    xmppd_jid_free(p->from);
    xmppd_jid_free(p->to);
    free(p->name);
    free(p);
}

XMPPD_EXPORT xmppd_pending *xmppd_pending_new(const xmppd_event *ev)
{
    xmppd_pending *p = ev && ev->stanza ? calloc(1, sizeof(*p)) : NULL;
    if (!p)
        return NULL;
    p->name = ev->name ? strdup(ev->name) : NULL;
    p->from = ev->from ? xmppd_jid_dup(ev->from) : NULL;
    p->to = ev->to ? xmppd_jid_dup(ev->to) : NULL;
    p->ev = (xmppd_event){ .name = p->name, .host = ev->host, .stanza = xmppd_stanza_ref(ev->stanza),
                           .session = ev->session ? xmppd_session_ref(ev->session) : NULL,
                           .from = p->from, .to = p->to };
    if ((ev->name && !p->name) || (ev->from && !p->from) || (ev->to && !p->to)) {
        xmppd_pending_drop(p);
        return NULL;
    }
    return p;
}

XMPPD_EXPORT const xmppd_event *xmppd_pending_event(const xmppd_pending *p)
{
    return p ? &p->ev : NULL;
}

/* Was the request's session closed meanwhile? Its answer is then dropped. */
static bool pending_gone(const xmppd_pending *p)
{
    return p->ev.session && xmppd_session_closed(p->ev.session);
}

XMPPD_EXPORT int xmppd_pending_reply(xmppd_pending *p, xmppd_stanza *reply)
{
    int rc = -1;
    if (!p || pending_gone(p))
        xmppd_stanza_unref(reply);
    else if (!reply)
        xmppd_reply_error(&p->ev, NULL, "internal-server-error", NULL);
    else
        rc = xmppd_reply(&p->ev, reply);
    xmppd_pending_drop(p);
    return rc;
}

XMPPD_EXPORT int xmppd_pending_error(xmppd_pending *p, const char *type, const char *condition, const char *text)
{
    if (!p)
        return -1;
    if (!pending_gone(p))
        xmppd_reply_error(&p->ev, type, condition, text);
    xmppd_pending_drop(p);
    return XMPPD_HANDLED;
}

/* ---- delivery to local accounts (RFC 6121 §8.5) ---------------------------- */

struct best {
    int prio;
    int n;
    xmppd_session *v[64];
};

static int collect_best(xmppd_session *s, void *ud)
{
    struct best *b = ud;
    if (!xmppd_session_available(s) || s->priority < 0)
        return 0;
    if (s->priority > b->prio) {
        b->prio = s->priority;
        b->n = 0;
    }
    if (s->priority == b->prio && b->n < 64)
        b->v[b->n++] = s;
    return 0;
}

static int send_to_available(xmppd_session *s, void *ud)
{
    if (xmppd_session_available(s))
        xmppd_session_send(s, ud);
    return 0;
}

/* After a message went to sessions of one account: modules that copy it to
 * the account's other sessions (carbons) learn which ones got it. */
static void delivered(xmppd_event *ev, xmppd_host *h, xmppd_session *const *v, size_t n)
{
    xmppd_delivery d = { v, n };
    xmppd_event de = *ev;
    de.name = "message/delivered";
    de.host = h;
    de.data = &d;
    xmppd_fire_all(&de);
}

/* §8.5.2: message to a bare JID. */
static void deliver_message_bare(xmppd_event *ev, xmppd_host *h)
{
    const char *t = msg_type(ev->stanza);
    if (strcmp(t, "error") == 0)
        return;
    if (strcmp(t, "groupchat") == 0) {
        bounce(ev, NULL, "service-unavailable", NULL);
        return;
    }
    struct best b = { .prio = -1 };
    xmppd_user_sessions(h, ev->to->node, collect_best, &b);
    if (b.n > 0) {
        for (int i = 0; i < b.n; i++)
            xmppd_session_ref(b.v[i]); /* a delivery may close a session */
        for (int i = 0; i < b.n; i++)
            xmppd_session_send(b.v[i], ev->stanza);
        delivered(ev, h, b.v, (size_t)b.n);
        for (int i = 0; i < b.n; i++)
            xmppd_session_unref(b.v[i]);
        return;
    }
    if (strcmp(t, "headline") == 0)
        return;
    xmppd_event off = *ev;
    off.name = "message/offline";
    off.host = h;
    if (xmppd_fire(&off) == XMPPD_HANDLED)
        return;
    bounce(ev, NULL, "service-unavailable", NULL);
}

/* IQ handlers first, then the iq/<target> event; nobody answering means
 * service-unavailable (RFC 6120 §8.4), a failing handler internal-server-error. */
static void dispatch_iq(xmppd_event *ev, xmppd_host *h, unsigned target)
{
    if (target == XMPPD_IQ_BARE && ev->to) {
        /* Handlers answer on the account's behalf (a vCard, say): the
         * account's own filters (privacy, blocking) decide first. */
        const char *name = ev->name;
        ev->name = "iq/bare/filter";
        int rc = xmppd_fire(ev);
        ev->name = name;
        if (rc != XMPPD_PASS)
            return;
    }
    int rc = iq_dispatch(h, ev, target);
    if (rc == XMPPD_PASS)
        rc = xmppd_fire(ev);
    if (rc == XMPPD_PASS)
        bounce(ev, NULL, "service-unavailable", NULL);
    else if (rc == XMPPD_FAIL)
        bounce(ev, NULL, "internal-server-error", NULL);
}

static void route_local(xmppd_event *ev, xmppd_host *h, int kind)
{
    const xmppd_jid *to = ev->to;
    ev->host = h;
    if (kind == K_IQ && iq_requests_answer(ev))
        return;
    if (!to->node) {
        ev->name = ev_host[kind];
        if (kind == K_IQ) {
            dispatch_iq(ev, h, XMPPD_IQ_HOST);
            return;
        }
        int rc = xmppd_fire(ev);
        if (rc == XMPPD_PASS && kind == K_MESSAGE && strcmp(msg_type(ev->stanza), "headline") != 0)
            bounce(ev, NULL, "service-unavailable", NULL);
        return;
    }
    /* The account's own node runs its hooks (its modules hold the
     * account's state in memory: roster, privacy lists). */
    if (cluster_route && cluster_route(ev))
        return;
    if (to->resource) {
        ev->name = ev_full[kind];
        int rc = xmppd_fire(ev);
        if (rc != XMPPD_PASS)
            return;
        xmppd_session *s = xmppd_session_find(to);
        if (s) {
            xmppd_session_ref(s);
            xmppd_session_send(s, ev->stanza);
            if (kind == K_MESSAGE)
                delivered(ev, h, &s, 1);
            xmppd_session_unref(s);
            return;
        }
        /* §8.5.3.2: no such resource. */
        if (kind == K_IQ) {
            bounce(ev, NULL, "service-unavailable", NULL);
        } else if (kind == K_MESSAGE) {
            const char *t = msg_type(ev->stanza);
            if (strcmp(t, "normal") == 0 || strcmp(t, "chat") == 0) {
                xmppd_jid *bare = xmppd_jid_to_bare(to);
                if (bare) {
                    xmppd_event b = *ev;
                    b.to = bare;
                    b.name = ev_bare[kind];
                    if (xmppd_fire(&b) == XMPPD_PASS)
                        deliver_message_bare(&b, h);
                    xmppd_jid_free(bare);
                }
            } else if (strcmp(t, "groupchat") == 0) {
                bounce(ev, NULL, "service-unavailable", NULL);
            }
        }
        /* Presence to an unavailable resource is dropped (§8.5.3.2.2). */
        return;
    }
    ev->name = ev_bare[kind];
    if (kind == K_IQ) {
        dispatch_iq(ev, h, XMPPD_IQ_BARE);
        return;
    }
    int rc = xmppd_fire(ev);
    if (rc != XMPPD_PASS)
        return;
    if (kind == K_MESSAGE) {
        deliver_message_bare(ev, h);
    } else {
        /* Without a presence module, available/unavailable presence reaches
         * every available resource; subscription requests go nowhere. */
        const char *t = xmppd_stanza_attr(ev->stanza, "type");
        if (!t || strcmp(t, "unavailable") == 0)
            xmppd_user_sessions(h, to->node, send_to_available, ev->stanza);
    }
}

/* Names the serving module's handler sees; not hook events (no hook runs). */
static const char *const served_names[] = { "message/domain", "presence/domain", "iq/domain" };

/* A domain a module serves (xmppd_domain_serve): its handler answers what
 * needs an answer; one that passes gets what an absent component gets
 * (service-unavailable, presence dropped), one that fails an
 * internal-server-error. false when no module serves the domain. */
static bool route_served(xmppd_event *ev, int kind)
{
    const char *name = ev->name;
    /* a room (say) placed on another node of a cluster goes there */
    if (place_route(ev))
        return true;
    ev->name = served_names[kind];
    int rc = domains_dispatch(ev);
    if (rc == DOMAINS_NONE) {
        ev->name = name;
        return false;
    }
    if (rc == XMPPD_PASS && kind != K_PRESENCE)
        bounce(ev, NULL, "service-unavailable", NULL);
    else if (rc == XMPPD_FAIL && kind == K_IQ)
        bounce(ev, NULL, "internal-server-error", NULL);
    return true;
}

/* Routes ev->stanza by ev->to (which must be set). */
static void route(xmppd_event *ev, int kind)
{
    xmppd_host *h = xmppd_host_find(ev->to->domain);
    if (h) {
        route_local(ev, h, kind);
        return;
    }
    if (route_served(ev, kind))
        return;
    /* XEP-0114 external components (s2s/component.c), here or attached
     * to another node of a cluster. */
    if (place_component(ev))
        return;
    int comp = component_route ? component_route(ev->to, ev->stanza) : ROUTE_NONE;
    if (comp == ROUTE_OFFLINE)
        bounce(ev, NULL, "service-unavailable", NULL);
    if (comp != ROUTE_NONE)
        return;
    ev->name = "route/remote";
    if (xmppd_fire(ev) == XMPPD_PASS && !(remote_route && remote_route(ev)))
        bounce(ev, NULL, "remote-server-not-found", NULL);
}

XMPPD_EXPORT int xmppd_route(xmppd_host *h, xmppd_stanza *st)
{
    int kind = kind_of(st);
    const char *to_s = xmppd_stanza_attr(st, "to"), *from_s = xmppd_stanza_attr(st, "from");
    if (kind < 0 || !to_s || !from_s)
        return -1;
    /* The copies of one fan-out share their sender's parsed JID. */
    xmppd_stanza *hold;
    const xmppd_jid *shared_from = stanza_fanout_from(st, &hold);
    xmppd_jid *to = xmppd_jid_parse(to_s), *from = shared_from ? NULL : xmppd_jid_parse(from_s);
    int rc = -1;
    if (to && (shared_from || from)) {
        xmppd_event ev = { .host = h, .stanza = st, .from = shared_from ? shared_from : from, .to = to };
        route(&ev, kind);
        rc = 0;
    }
    xmppd_jid_free(to);
    xmppd_jid_free(from);
    xmppd_stanza_unref(hold);
    return rc;
}

/* ---- stanzas from clients --------------------------------------------------- */

/* What a session keeps of its last available presence (a reference).
 * Most clients send a bare <presence/>, which the session would keep as a
 * tree of its own with the 'from' we stamped (three allocations, about
 * 240 bytes for every idle session): all such sessions share one
 * <presence/> instead. Its readers (xmppd_session_presence) copy it and
 * set 'from' and 'to' themselves, as they do for any kept presence. */
static xmppd_stanza *kept_presence(xmppd_stanza *st)
{
    static xmppd_stanza *bare; /* lives as long as the process */
    const char *ns = xmppd_stanza_ns(st);
    if (!ns || strcmp(ns, XMPPD_NS_CLIENT) != 0 || !stanza_is_empty(st, "from"))
        return xmppd_stanza_ref(st);
    if (!bare && !(bare = xmppd_stanza_new("presence", XMPPD_NS_CLIENT)))
        return xmppd_stanza_ref(st);
    return xmppd_stanza_ref(bare);
}

/* Presence without 'to' is the session's own broadcast (RFC 6121 §4.2, §4.4). */
static void own_presence(xmppd_event *ev)
{
    xmppd_session *s = ev->session;
    const char *t = xmppd_stanza_attr(ev->stanza, "type");
    xmppd_presence_info info = { .was_available = s->available };
    if (!t) {
        const char *p = xmppd_stanza_child_text(ev->stanza, "priority", NULL);
        long prio = p ? strtol(p, NULL, 10) : 0;
        s->priority = prio < -128 ? -128 : prio > 127 ? 127 : (int)prio;
        s->available = true;
    } else if (strcmp(t, "unavailable") == 0) {
        s->available = false;
    } else {
        /* subscription types need a 'to'; probes and errors have no meaning
         * here. */
        return;
    }
    info.initial = !info.was_available && s->available;
    xmppd_stanza_unref(s->presence);
    s->presence = s->available ? kept_presence(ev->stanza) : NULL;
    if (g_session_observer && g_session_observer->presence)
        g_session_observer->presence(s);
    ev->name = "presence/broadcast";
    ev->data = &info;
    xmppd_fire(ev);
}

void router_from_client(xmppd_session *s, xmppd_stanza *st)
{
    int kind = kind_of(st);
    metrics_stanza(METRICS_C2S, METRICS_IN, xmppd_stanza_name(st));
    xmppd_event ev = { .name = "pre-route", .host = s->host, .session = s, .stanza = st,
                       .from = s->jid };
    const char *to_s = xmppd_stanza_attr(st, "to");
    xmppd_jid *to = NULL;
    if (to_s) {
        to = xmppd_jid_parse(to_s);
        if (!to) {
            bounce(&ev, "modify", "jid-malformed", NULL);
            return;
        }
        if (strcmp(to_s, to->full) != 0) /* already prepared: most are */
            xmppd_stanza_set_attr(st, "to", to->full);
    }
    ev.to = to;
    if (kind == K_IQ) {
        const char *t = xmppd_stanza_attr(st, "type");
        /* RFC 6120 §8.2.3: an IQ needs an id and a valid type; get and set
         * carry exactly one child. */
        bool ok = t && xmppd_stanza_attr(st, "id") &&
                  (strcmp(t, "get") == 0 || strcmp(t, "set") == 0 || strcmp(t, "result") == 0 ||
                   strcmp(t, "error") == 0);
        if (ok && (strcmp(t, "get") == 0 || strcmp(t, "set") == 0)) {
            xmppd_stanza *c = xmppd_stanza_first(st);
            ok = c && !xmppd_stanza_next(c);
        }
        if (!ok) {
            bounce(&ev, "modify", "bad-request", NULL);
            xmppd_jid_free(to);
            return;
        }
    }
    router_pre_route(&ev);
    xmppd_jid_free(to);
}

void router_pre_route(xmppd_event *ev)
{
    xmppd_session *s = ev->session;
    int kind = kind_of(ev->stanza);
    /* The access rule "send": who a local client may address. Stanzas
     * without 'to' are about the account itself and always pass. */
    if (ev->to && xmppd_access_to(s->host, "send", ev->from, s->ip, ev->to) == XMPPD_ACCESS_DENY) {
        bounce(ev, "cancel", "not-allowed", "The server's policy does not allow this address");
        return;
    }
    ev->name = "pre-route";
    if (xmppd_fire(ev) != XMPPD_PASS)
        return;
    if (!ev->to) {
        if (kind == K_PRESENCE) {
            own_presence(ev);
        } else {
            /* RFC 6120 §10.3: no 'to' means the account's bare JID; the
             * handler sees ev->to NULL and answers from the server side. */
            xmppd_jid *bare = xmppd_jid_to_bare(ev->from);
            if (bare) {
                ev->to = bare;
                if (kind == K_IQ) {
                    /* Handlers see to == NULL: "the account itself". */
                    ev->name = ev_bare[K_IQ];
                    ev->to = NULL;
                    dispatch_iq(ev, s->host, XMPPD_IQ_BARE);
                } else {
                    route_local(ev, s->host, kind);
                }
                ev->to = NULL;
                xmppd_jid_free(bare);
            }
        }
        return;
    }
    route(ev, kind);
}
