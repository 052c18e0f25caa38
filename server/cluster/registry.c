/* The session registry: our sessions in Redis, the others' as remote
 * sessions in the local session table.
 *
 * Redis: NAME:sessions:NODE is a hash, full JID -> "PRIO AVAIL\n<presence/>",
 * written by NODE alone and expiring with its heartbeat, so the sessions of
 * a node that died vanish with it even if no node cleans up. Every change
 * is also published on the reg channel and put in the known nodes'
 * streams (announce), which the other nodes apply to their copy; a node
 * (re)loads a peer's hash when it first sees it and after its own
 * subscriber reconnected (it may have missed changes).
 *
 * A remote session's transport publishes what is written to it to its
 * node ("deliver"), where it is sent to the session as if routed there;
 * closing it asks its node to close it ("kick", a resource conflict or an
 * admin's kick). */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "session/session.h"
#include "util/strmap.h"

typedef struct entry {
    char *node;
    xmppd_session *s;
} entry;

static strmap *g_mirror; /* full JID -> entry: remote sessions */
/* The stanza a frame from another node brought, while it is routed here:
 * it is never sent on to a third node (our copy of the registry may be
 * stale), so a stanza is never passed back and forth. Stanzas made while
 * handling it travel on, with the frame's hop count (link.c) bounding
 * chains of them. */
static const xmppd_stanza *g_arrived;

/* ---- remote sessions ------------------------------------------------------ */

/* A stanza that could not be sent to its session's node (Redis is away) is
 * not lost in silence: a message or a request gets <recipient-unavailable/>
 * (RFC 6120 §8.3.3.13, type wait: the client may try again), as an
 * unreachable server's would; presence is dropped, errors and results are
 * never answered. */
static void bounce_unsent(xmppd_host *h, const char *full, const xmppd_stanza *st)
{
    const char *name = xmppd_stanza_name(st), *type = xmppd_stanza_attr(st, "type");
    if (strcmp(name, "presence") == 0 || (type && strcmp(type, "error") == 0) ||
        (strcmp(name, "iq") == 0 && type && strcmp(type, "result") == 0) ||
        !xmppd_stanza_attr(st, "from"))
        return;
    xmppd_stanza *err = router_error_reply(st, "wait", "recipient-unavailable",
                                           "the node of this session cannot be reached");
    if (!err)
        return;
    if (!xmppd_stanza_attr(err, "from"))
        xmppd_stanza_set_attr(err, "from", full);
    xmppd_route(h, err);
    xmppd_stanza_unref(err);
}

static int remote_write(void *conn, const xmppd_stanza *st, size_t *len_r)
{
    entry *e = conn;
    if (st == g_arrived) {
        log_kernel("cluster", XMPPD_LOG_WARN, "%s: a stanza from another node is for a session "
                   "that moved again; dropped", e->s->jid->full);
        return -1;
    }
    size_t len = 0;
    char *xml = xmppd_stanza_to_string(st, "jabber:client", &len);
    int rc = xml ? link_send(e->node, "deliver", e->s->jid->full, xml, len, NULL) : -1;
    log_kernel("cluster", XMPPD_LOG_DEBUG, "%s to %s on node %s", xmppd_stanza_name(st),
               e->s->jid->full, e->node);
    free(xml);
    if (rc < 0) {
        log_kernel("cluster", XMPPD_LOG_WARN, "%s: cannot forward to node %s (Redis down)",
                   e->s->jid->full, e->node);
        bounce_unsent(e->s->host, e->s->jid->full, st);
    }
    *len_r = len;
    return rc;
}

static void remote_close(void *conn, const char *condition, const char *text)
{
    entry *e = conn;
    link_send(e->node, "kick", e->s->jid->full, condition ? condition : "",
              condition ? strlen(condition) : 0, NULL);
}

static uint64_t remote_bytes_in(void *conn)
{
    return 0;
}

static void remote_rebind(void *conn, xmppd_session *now)
{
    /* remote sessions are never resumed here: their node resumes them */
}

static const session_transport remote_transport = {
    .name = "cluster",
    .write = remote_write,
    .close = remote_close,
    .bytes_in = remote_bytes_in,
    .rebind = remote_rebind,
};

static void entry_free(entry *e)
{
    if (e->s) {
        sm_unbind(e->s); /* no-op once a local bind replaced it */
        e->s->closing = true;
        e->s->conn = NULL;
        xmppd_session_unref(e->s);
    }
    free(e->node);
    free(e);
}

static void drop(const char *full)
{
    entry *e = strmap_del(g_mirror, full);
    if (e)
        entry_free(e);
}

/* "PRIO AVAIL[ MARKS]\n<presence/>" onto s (the marks: cstate.c). */
static void set_presence(xmppd_session *s, const char *v, size_t len)
{
    char head[576];
    const char *nl = memchr(v, '\n', len);
    size_t hl = nl ? (size_t)(nl - v) : len;
    if (hl >= sizeof(head))
        return;
    memcpy(head, v, hl);
    head[hl] = '\0';
    int prio = 0, avail = 0, end = 0;
    if (sscanf(head, "%d %d%n", &prio, &avail, &end) != 2)
        return;
    session_marks_set(s, head[end] == ' ' ? head + end + 1 : NULL);
    s->priority = prio < -128 ? -128 : prio > 127 ? 127 : prio;
    s->available = avail != 0;
    xmppd_stanza_unref(s->presence);
    s->presence = NULL;
    if (s->available && nl && (size_t)(nl + 1 - v) < len)
        s->presence = xmppd_stanza_from_string(nl + 1, len - (size_t)(nl + 1 - v), "jabber:client");
}

/* node has full bound (or changed its presence): our copy follows. */
static void remote_bound(const char *node, const char *full, const char *v, size_t len)
{
    entry *e = strmap_get(g_mirror, full);
    if (e && strcmp(e->node, node) == 0) {
        set_presence(e->s, v, len);
        return;
    }
    if (e)
        drop(full); /* it moved: the node it left is told by its own conflict */
    xmppd_jid *jid = xmppd_jid_parse(full);
    xmppd_host *h = jid && jid->node && jid->resource ? xmppd_host_find(jid->domain) : NULL;
    if (!h) {
        xmppd_jid_free(jid);
        return; /* not one of our hosts: the nodes' host lists differ */
    }
    e = calloc(1, sizeof(*e));
    xmppd_session *s = e ? session_new(&remote_transport, e, node) : NULL;
    if (!s || !(e->node = strdup(node)) || !(s->user = strdup(jid->node))) {
        if (s)
            xmppd_session_unref(s);
        free(e ? e->node : NULL);
        free(e);
        xmppd_jid_free(jid);
        return;
    }
    e->s = s;
    s->remote = s->authenticated = s->bound = s->secure = true;
    s->host = h;
    s->jid = jid;
    set_presence(s, v, len);
    /* A local session with this resource is older: it ends with <conflict/>
     * (RFC 6120 §7.7.2.2), as when both were here. */
    if (sm_bind(s, jid->resource) < 0 || strmap_put(g_mirror, full, e) < 0) {
        log_kernel("cluster", XMPPD_LOG_WARN, "%s on node %s: over limits.max_resources here",
                   full, node);
        entry_free(e);
    }
}

static void remote_unbound(const char *node, const char *full)
{
    entry *e = strmap_get(g_mirror, full);
    if (e && strcmp(e->node, node) == 0)
        drop(full);
}

/* ---- routing to the account's node ------------------------------------------ */

typedef struct home {
    bool local;          /* the account has a session here */
    const entry *best;   /* else: its best remote session */
} home;

static int pick_home(xmppd_session *s, void *ud)
{
    home *h = ud;
    if (!s->remote) {
        h->local = true;
        return 1;
    }
    const entry *e = s->conn;
    if (e && (!h->best || (s->available && !h->best->s->available) ||
              (s->available == h->best->s->available && s->priority > h->best->s->priority)))
        h->best = e;
    return 0;
}

/* router_set_cluster_route: a stanza for an account whose sessions are all
 * on other nodes (or for a full JID bound on another node) is routed
 * there, hooks included, so the account's modules run where its state is
 * in memory. An account with a session here, or none anywhere (offline
 * storage is shared), is handled here. */
static bool route_to_home(xmppd_event *ev)
{
    if (ev->stanza == g_arrived)
        return false;
    const entry *target = NULL;
    if (ev->to->resource) {
        xmppd_session *s = xmppd_session_find(ev->to);
        if (!s || !s->remote)
            return false;
        target = s->conn;
    } else {
        home h = { 0 };
        xmppd_user_sessions(ev->host, ev->to->node, pick_home, &h);
        if (h.local || !h.best)
            return false;
        target = h.best;
    }
    size_t len = 0;
    char *xml = target ? xmppd_stanza_to_string(ev->stanza, "jabber:client", &len) : NULL;
    int rc = xml ? link_send(target->node, "route", ev->to->full, xml, len, ev->stanza) : -1;
    free(xml);
    if (rc == 0)
        log_kernel("cluster", XMPPD_LOG_DEBUG, "%s to %s: routed on node %s",
                   xmppd_stanza_name(ev->stanza), ev->to->full, target->node);
    return rc == 0; /* Redis down: handled here, as for an account offline */
}

/* ---- frames ----------------------------------------------------------------- */

/* A stanza another node routes here: its hooks and delivery run here. */
static void route_stanza_here(const char *to, const xmppd_stanza *st)
{
    xmppd_jid *j = xmppd_jid_parse(to);
    xmppd_host *h = j ? xmppd_host_find(j->domain) : NULL;
    if (st && h) {
        const xmppd_stanza *outer = g_arrived;
        g_arrived = st;
        xmppd_route(h, (xmppd_stanza *)st);
        g_arrived = outer;
    } else {
        log_kernel("cluster", XMPPD_LOG_WARN, "a stanza for %s from another node was dropped "
                   "(%s)", to, st ? "not one of our hosts" : "unparsable");
    }
    xmppd_jid_free(j);
}

static void route_here(const char *to, const char *xml, size_t len)
{
    xmppd_stanza *st = xmppd_stanza_from_string(xml, len, "jabber:client");
    route_stanza_here(to, st);
    xmppd_stanza_unref(st);
}

typedef void (*each_fn)(const char *to, const xmppd_stanza *st, void *ud);

/* A "routes" body: "JID JID...\n<stanza/>", one fan-out for several
 * recipients here; fn runs with each one's copy (serialised once). */
static void each_recipient(const char *body, size_t blen, each_fn fn, void *ud)
{
    const char *nl = memchr(body, '\n', blen);
    xmppd_stanza *st = nl ? xmppd_stanza_from_string(nl + 1, blen - (size_t)(nl + 1 - body),
                                                     "jabber:client") : NULL;
    if (!st) {
        log_kernel("cluster", XMPPD_LOG_WARN, "a fan-out frame was dropped (unparsable)");
        return;
    }
    for (const char *p = body; p < nl;) {
        const char *sp = memchr(p, ' ', (size_t)(nl - p));
        const char *end = sp ? sp : nl;
        char to[3072];
        if ((size_t)(end - p) < sizeof(to)) {
            memcpy(to, p, (size_t)(end - p));
            to[end - p] = '\0';
            xmppd_stanza *c = xmppd_stanza_copy_to(st, to);
            if (c)
                fn(to, c, ud);
            xmppd_stanza_unref(c);
        }
        p = end + 1;
    }
    xmppd_stanza_unref(st);
}

static void route_each(const char *to, const xmppd_stanza *st, void *ud)
{
    route_stanza_here(to, st);
}

static void deliver(const char *full, const char *xml, size_t len)
{
    xmppd_stanza *st = xmppd_stanza_from_string(xml, len, "jabber:client");
    xmppd_jid *to = xmppd_jid_parse(full);
    xmppd_session *s = to ? xmppd_session_find(to) : NULL;
    log_kernel("cluster", XMPPD_LOG_DEBUG, "%s for %s from another node%s",
               st ? xmppd_stanza_name(st) : "unparsable stanza", full,
               s && !s->remote ? "" : ": no such session here");
    const xmppd_stanza *outer = g_arrived;
    g_arrived = st;
    if (st && s && !s->remote) {
        xmppd_session_send(s, st);
    } else if (st && to) {
        /* The session ended meanwhile: the stanza is routed here as one for
         * a resource that is gone (RFC 6121 §8.5.3.2: offline storage, an
         * error, or nothing for presence). */
        xmppd_route(xmppd_host_find(to->domain), st);
    }
    g_arrived = outer;
    xmppd_stanza_unref(st);
    xmppd_jid_free(to);
}

static void kick(const char *full, const char *cond, size_t len)
{
    xmppd_jid *to = xmppd_jid_parse(full);
    xmppd_session *s = to ? xmppd_session_find(to) : NULL;
    char c[64];
    snprintf(c, sizeof(c), "%.*s", (int)(len < sizeof(c) ? len : sizeof(c) - 1), cond);
    if (s && !s->remote) {
        log_kernel("cluster", XMPPD_LOG_INFO, "%s: closed by another node (%s)", full,
                   c[0] ? c : "kick");
        session_close(s, c[0] ? c : NULL,
                      strcmp(c, "conflict") == 0 ? "Replaced by new connection" : NULL);
    }
    xmppd_jid_free(to);
}

void registry_frame(const char *kind, const char *node, const char *arg, const char *body,
                    size_t blen)
{
    if (strcmp(kind, "bind") == 0 || strcmp(kind, "pres") == 0)
        remote_bound(node, arg, body, blen);
    else if (strcmp(kind, "unbind") == 0)
        remote_unbound(node, arg);
    else if (strcmp(kind, "deliver") == 0)
        deliver(arg, body, blen);
    else if (strcmp(kind, "route") == 0)
        route_here(arg, body, blen);
    else if (strcmp(kind, "routes") == 0) {
        log_kernel("cluster", XMPPD_LOG_DEBUG, "a fan-out for %s recipients from node %s", arg,
                   node);
        each_recipient(body, blen, route_each, NULL);
    }
    else if (strcmp(kind, "kick") == 0)
        kick(arg, body, blen);
    else if (strcmp(kind, "inval") == 0)
        cstate_inval(node, arg, body, blen);
    else if (strcmp(kind, "smrel") == 0)
        smrep_release(arg, node);
    else if (strcmp(kind, "smgone") == 0)
        smrep_gone(arg);
    else if (strcmp(kind, "reset") == 0)
        node_resync(node);
    else if (strcmp(kind, "bye") == 0)
        node_forget(node, false); /* its sessions ended there, with their events */
    else if (!place_frame(kind, node, arg, body, blen))
        log_kernel("cluster", XMPPD_LOG_DEBUG, "unknown frame %s from %s", kind, node);
}

/* A frame node did not take within delivery_timeout (queue.c). A stanza
 * for a session there (a full JID) gets <recipient-unavailable/> as when
 * Redis is away; one for an account (a bare JID: a message, a subscription
 * request) is handled here as for an account with no session on that
 * node: its other resources, else offline storage (RFC 6121 §8.5.2.2), as
 * a stanza a local session could not take. Its sessions there go from our
 * copy first; a node that is alive after all is reloaded at the next
 * heartbeat. */
static void unsent_one(const char *node, bool deliver, const char *to_s, const xmppd_stanza *st)
{
    xmppd_jid *to = xmppd_jid_parse(to_s);
    xmppd_host *h = to ? xmppd_host_find(to->domain) : NULL;
    if (st && h) {
        log_kernel("cluster", XMPPD_LOG_INFO, "%s for %s: not taken by node %s in time: %s",
                   xmppd_stanza_name(st), to_s, node,
                   deliver || to->resource ? "bounced" : "handled here");
        if (deliver || to->resource) {
            bounce_unsent(h, to->full, st);
        } else {
            registry_drop_node(node, false);
            node_resync(node);
            xmppd_route(h, (xmppd_stanza *)st);
        }
    }
    xmppd_jid_free(to);
}

static void unsent_each(const char *to, const xmppd_stanza *st, void *ud)
{
    unsent_one(ud, false, to, st);
}

void registry_unsent(const char *node, const char *kind, const char *arg, const char *body,
                     size_t blen)
{
    if (place_unsent(node, kind, arg, body, blen))
        return;
    if (strcmp(kind, "routes") == 0) {
        each_recipient(body, blen, unsent_each, (void *)node);
        return;
    }
    if (strcmp(kind, "inval") == 0) {
        cstate_unsent(arg, body, blen); /* sent again when Redis is back */
        return;
    }
    bool deliver = strcmp(kind, "deliver") == 0;
    if (!deliver && strcmp(kind, "route") != 0)
        return; /* a kick: the session ends with its node anyway */
    xmppd_stanza *st = xmppd_stanza_from_string(body, blen, "jabber:client");
    unsent_one(node, deliver, arg, st);
    xmppd_stanza_unref(st);
}

/* ---- a peer's whole hash ----------------------------------------------------- */

typedef struct keyvec {
    char **v;
    size_t n;
    const char *node;
} keyvec;

static int collect_node(const char *key, void *value, void *ud)
{
    keyvec *kv = ud;
    const entry *e = value;
    if (!kv->node || strcmp(e->node, kv->node) == 0) {
        char **v = realloc(kv->v, (kv->n + 1) * sizeof(*v));
        if (!v)
            return 1;
        kv->v = v;
        if ((v[kv->n] = strdup(key)))
            kv->n++;
    }
    return 0;
}

void registry_load(const char *node, const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return;
    keyvec kv = { .node = node };
    strmap_foreach(g_mirror, collect_node, &kv);
    for (size_t i = 0; i < kv.n; i++) {
        bool listed = false;
        for (size_t k = 0; k + 1 < r->elements && !listed; k += 2)
            listed = strcmp(r->element[k]->str, kv.v[i]) == 0;
        if (!listed)
            drop(kv.v[i]);
        free(kv.v[i]);
    }
    free(kv.v);
    for (size_t k = 0; k + 1 < r->elements; k += 2)
        remote_bound(node, r->element[k]->str, r->element[k + 1]->str, r->element[k + 1]->len);
}

void registry_drop_node(const char *node, bool closed)
{
    keyvec kv = { .node = node };
    strmap_foreach(g_mirror, collect_node, &kv);
    if (kv.n && node)
        log_kernel("cluster", XMPPD_LOG_INFO, "node %s: its %zu sessions are gone%s", node, kv.n,
                   closed ? " (their contacts are told)" : "");
    for (size_t i = 0; i < kv.n; i++) {
        entry *e = strmap_get(g_mirror, kv.v[i]);
        if (closed && e && e->s->in_sm) {
            /* As when a session ends here: out of the table, then modules
             * broadcast unavailable on its behalf (RFC 6121 §4.5.2). */
            xmppd_session *s = xmppd_session_ref(e->s);
            sm_unbind(s);
            s->closing = true;
            s->conn = NULL; /* detached, like a local session that ended */
            xmppd_notify(s->host, "session-closed", s, NULL);
            xmppd_session_unref(s);
        }
        drop(kv.v[i]);
        free(kv.v[i]);
    }
    free(kv.v);
}

typedef struct counter {
    const char *node;
    size_t n;
} counter;

static int count_node(const char *key, void *value, void *ud)
{
    const entry *e = value;
    counter *c = ud;
    if (!c->node || strcmp(e->node, c->node) == 0)
        c->n++;
    return 0;
}

bool registry_arrived(const xmppd_stanza *st)
{
    return st == g_arrived || place_arrived(st);
}

size_t registry_count(const char *node)
{
    counter c = { node, 0 };
    if (g_mirror)
        strmap_foreach(g_mirror, count_node, &c);
    return c.n;
}

/* ---- our sessions ------------------------------------------------------------- */

/* "PRIO AVAIL[ MARKS]\n<presence/>" for s, malloc'd. */
static char *value_of(const xmppd_session *s, size_t *len)
{
    size_t xl = 0;
    char *xml = s->available && s->presence
                    ? xmppd_stanza_to_string(s->presence, "jabber:client", &xl) : NULL;
    char head[576];
    int hl = snprintf(head, sizeof(head), "%d %d%s%s\n", s->priority, s->available ? 1 : 0,
                      s->marks ? " " : "", s->marks ? s->marks : "");
    if (hl < 0 || (size_t)hl >= sizeof(head)) {
        free(xml);
        return NULL;
    }
    char *v = malloc((size_t)hl + xl + 1);
    if (v) {
        memcpy(v, head, (size_t)hl);
        if (xl)
            memcpy(v + hl, xml, xl);
        v[(size_t)hl + xl] = '\0';
        *len = (size_t)hl + xl;
    }
    free(xml);
    return v;
}

/* A registry change goes to every node over pub/sub (a node we do not
 * know yet hears it too) and into the stream of each node we know, where
 * it is ordered with the stanzas we send that node: a stanza from a
 * session that just bound reaches no node before its bind, so an answer
 * to its full JID finds it. Applying a change twice changes nothing. */
static void announce(const char *kind, const char *full, const char *v, size_t len)
{
    link_publish(g_cluster.ch_reg, kind, full, v, len);
    for (size_t i = 0; i < g_cluster.n_peers; i++)
        link_send(g_cluster.peers[i].name, kind, full, v, len, NULL);
}

static void publish_session(xmppd_session *s, const char *kind)
{
    size_t len = 0;
    char *v = value_of(s, &len);
    if (!v)
        return;
    const char *argv[] = { "HSET", g_cluster.k_sessions, s->jid->full, v };
    size_t lens[] = { 4, strlen(g_cluster.k_sessions), strlen(s->jid->full), len };
    if (redis_conn_up(g_cluster.cmd)) {
        redis_command(g_cluster.cmd, NULL, NULL, 4, argv, lens);
        announce(kind, s->jid->full, v, len);
    }
    free(v);
}

static void on_bound(xmppd_session *s)
{
    drop(s->jid->full); /* a remote session it replaced (it was kicked) */
    publish_session(s, "bind");
}

static void on_unbound(xmppd_session *s)
{
    if (!redis_conn_up(g_cluster.cmd))
        return;
    const char *argv[] = { "HDEL", g_cluster.k_sessions, s->jid->full };
    redis_command(g_cluster.cmd, NULL, NULL, 3, argv, NULL);
    announce("unbind", s->jid->full, NULL, 0);
}

static void on_presence(xmppd_session *s)
{
    if (s->in_sm)
        publish_session(s, "pres");
}

static int republish_one(xmppd_session *s, void *ud)
{
    publish_session(s, "bind");
    return 0;
}

void registry_republish(void)
{
    /* Sessions that ended while Redis was away are in the old hash and in
     * the others' copies: the hash is written anew, and "reset" makes the
     * others load it again. */
    redis_commandf(g_cluster.cmd, NULL, NULL, "DEL %s", g_cluster.k_sessions);
    xmppd_host_sessions(NULL, republish_one, NULL);
    place_republish();
    link_publish(g_cluster.ch_reg, "reset", "", NULL, 0);
}

static const session_observer observer = {
    .bound = on_bound,
    .unbound = on_unbound,
    .presence = on_presence,
};

void registry_start(void)
{
    g_mirror = strmap_new();
    session_set_observer(&observer);
    router_set_cluster_route(route_to_home);
}

void registry_stop(void)
{
    session_set_observer(NULL);
    router_set_cluster_route(NULL);
    if (!g_mirror)
        return;
    registry_drop_node(NULL, false);
    strmap_free(g_mirror);
    g_mirror = NULL;
}
