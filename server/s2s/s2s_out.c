/* Outgoing server-to-server streams: the initiating side (RFC 6120 §3.2
 * connection, §5 STARTTLS, XEP-0178 SASL EXTERNAL, XEP-0220 dialback).
 *
 * One s2s_out per (local domain, remote domain) pair holds the stanzas
 * queued while its stream is set up and, once the stream is authenticated,
 * carries all traffic of the pair. Targets come from a static route or DNS
 * (resolver.c); every address of every target is tried in order, each
 * attempt bounded by s2s.connect_timeout. When none works, queued stanzas
 * bounce with remote-server-timeout (an attempt timed out) or
 * remote-server-not-found. The same stream carries our dialback
 * verification requests to the remote domain's authoritative server. */
#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s2s/s2s.h"
#include "util/strmap.h"

#define MAX_ADDRS 16

typedef struct verify_req {
    struct verify_req *next;
    s2s_conn *in;     /* ref: the incoming stream waiting for the answer */
    char *id;
    char *key;
    bool sent;
} verify_req;

struct s2s_out {
    char *map_key;    /* "remote local" */
    char *local, *remote;
    s2s_conn *conn;   /* current attempt or established stream */
    bool started;     /* an attempt is under way */
    bool ready;       /* conn is authenticated: stanzas go straight out */
    xmppd_stanza **q; /* refs, oldest first */
    size_t qn, qcap;
    verify_req *verifies;
    resolver_query *rq;
    s2s_target *targets;
    size_t n_targets, ti;
    const s2s_target *cur;
    struct sockaddr_storage addrs[MAX_ADDRS];
    size_t n_addrs, ai;
    bool timed_out;   /* some attempt ended by a timeout */
};

static strmap *outs;

static const s2s_conf *conf(void)
{
    return &g_server.cfg->s2s;
}

static void next_target(s2s_out *o);
static void next_addr(s2s_out *o);

/* ---- bounces ---------------------------------------------------------------- */

/* RFC 6120 §8.3: an error back to the local sender; errors and IQ results
 * are never answered. */
static void bounce(const char *local, xmppd_stanza *st, const char *type, const char *cond)
{
    const char *t = xmppd_stanza_attr(st, "type");
    if (t && (strcmp(t, "error") == 0 ||
              (strcmp(xmppd_stanza_name(st), "iq") == 0 && strcmp(t, "result") == 0)))
        return;
    xmppd_stanza *e = router_error_reply(st, type, cond, NULL);
    if (!e)
        return;
    xmppd_route(xmppd_host_find(local), e);
    xmppd_stanza_unref(e);
}

/* ---- the map ------------------------------------------------------------------ */

static s2s_out *out_get(const char *local, const char *remote, bool create)
{
    size_t n = strlen(local) + strlen(remote) + 2;
    char *key = malloc(n);
    if (!key)
        return NULL;
    snprintf(key, n, "%s %s", remote, local);
    s2s_out *o = outs ? strmap_get(outs, key) : NULL;
    if (o || !create) {
        free(key);
        return o;
    }
    if ((!outs && !(outs = strmap_new())) || !(o = calloc(1, sizeof(*o)))) {
        free(key);
        return NULL;
    }
    o->map_key = key;
    o->local = strdup(local);
    o->remote = strdup(remote);
    if (!o->local || !o->remote || strmap_put(outs, key, o) < 0) {
        free(o->local);
        free(o->remote);
        free(key);
        free(o);
        return NULL;
    }
    return o;
}

/* Frees o; its stream (if any) is left to close on its own. */
static void out_destroy(s2s_out *o)
{
    strmap_del(outs, o->map_key);
    resolver_cancel(o->rq);
    if (o->conn) {
        s2s_conn *c = o->conn;
        c->out = NULL;
        o->conn = NULL;
        s2s_close(c, NULL, NULL);
    }
    for (size_t i = 0; i < o->qn; i++)
        xmppd_stanza_unref(o->q[i]);
    free(o->q);
    while (o->verifies) {
        verify_req *v = o->verifies;
        o->verifies = v->next;
        s2s_conn_unref(v->in);
        free(v->id);
        free(v->key);
        free(v);
    }
    s2s_targets_free(o->targets, o->n_targets);
    free(o->local);
    free(o->remote);
    free(o->map_key);
    free(o);
}

/* Nothing more can be tried: everything waiting is answered with cond. */
static void out_fail(s2s_out *o, const char *cond, const char *reason)
{
    uint64_t wait = s2s_backoff_failed(o->map_key, cond);
    log_kernel("s2s-out", XMPPD_LOG_INFO, "%s: cannot establish a stream from %s: %s (%zu "
               "stanza%s bounced with %s; next attempt in %llu ms at the earliest)", o->remote,
               o->local, reason, o->qn, o->qn == 1 ? "" : "s", cond, (unsigned long long)wait);
    strmap_del(outs, o->map_key); /* new stanzas start afresh */
    /* Take the lists first: answers route stanzas, which may reach s2s
     * again (a new s2s_out for the same pair). */
    xmppd_stanza **q = o->q;
    size_t qn = o->qn;
    verify_req *vs = o->verifies;
    o->q = NULL;
    o->qn = o->qcap = 0;
    o->verifies = NULL;
    char *local = strdup(o->local), *remote = strdup(o->remote);
    out_destroy(o);
    for (size_t i = 0; i < qn; i++) {
        if (local)
            bounce(local, q[i], NULL, cond);
        xmppd_stanza_unref(q[i]);
    }
    free(q);
    while (vs) {
        verify_req *v = vs;
        vs = v->next;
        if (local && remote)
            s2s_in_dialback_done(v->in, local, remote, false, cond);
        s2s_conn_unref(v->in);
        free(v->id);
        free(v->key);
        free(v);
    }
    free(local);
    free(remote);
}

/* The peer refused us or broke the protocol: no other address will do
 * better. The stream is closed (with condition, when one is given). */
static void auth_fail(s2s_conn *c, const char *condition, const char *reason)
{
    s2s_out *o = c->out;
    if (o) {
        c->out = NULL;
        o->conn = NULL;
        out_fail(o, "remote-server-not-found", reason);
    }
    s2s_close(c, condition, NULL);
}

/* ---- sending ------------------------------------------------------------------------ */

static void send_verifies(s2s_out *o)
{
    s2s_conn *c = o->conn;
    if (!c || c->state != S2S_OPEN || !(c->db_sent || c->authenticated))
        return;
    for (verify_req *v = o->verifies; v; v = v->next) {
        if (v->sent)
            continue;
        xmppd_stanza *el = s2s_dialback_new("verify");
        if (!el)
            return;
        xmppd_stanza_set_attr(el, "from", o->local);
        xmppd_stanza_set_attr(el, "to", o->remote);
        xmppd_stanza_set_attr(el, "id", v->id);
        xmppd_stanza_add_text(el, v->key, strlen(v->key));
        s2s_write(c, el);
        xmppd_stanza_unref(el);
        v->sent = true;
    }
}

static void became_ready(s2s_conn *c, const char *how)
{
    s2s_out *o = c->out;
    c->authenticated = true;
    s2s_mark_ready(c);
    log_kernel("s2s-out", XMPPD_LOG_INFO, "%s [%s]:%d: stream from %s authenticated by %s%s",
               c->remote, c->ip, c->port, c->local, how, c->secure ? " over TLS" : "");
    if (!o)
        return;
    s2s_backoff_succeeded(o->map_key);
    o->ready = true;
    o->started = false;
    /* The queue is taken first: a write may close the stream (a slow
     * reader), which detaches or frees o. What can no longer be written is
     * answered, never dropped. */
    xmppd_stanza **q = o->q;
    size_t qn = o->qn;
    o->q = NULL;
    o->qn = o->qcap = 0;
    char *local = strdup(c->local);
    for (size_t i = 0; i < qn; i++) {
        if (c->state == S2S_OPEN)
            s2s_write(c, q[i]);
        else if (local)
            bounce(local, q[i], "wait", "remote-server-timeout");
        xmppd_stanza_unref(q[i]);
    }
    free(q);
    free(local);
    if (c->out == o)
        send_verifies(o);
}

/* A server without an s2s listener does not federate: peers could not
 * dial back to it, and its operator asked for no server-to-server traffic. */
static bool federating(void)
{
    const xmppd_config *cfg = g_server.cfg;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        if (cfg->listeners[i].type == LISTEN_S2S)
            return true;
    return false;
}

bool s2s_out_route(xmppd_event *ev)
{
    const char *local = s2s_served_domain(ev->from->domain);
    if (!local || !federating())
        return false; /* not ours to relay: the router bounces it */
    if (!s2s_allowed(local, ev->to->domain, NULL)) {
        bounce(local, ev->stanza, "cancel", "not-allowed");
        return true;
    }
    s2s_out *o = out_get(local, ev->to->domain, false);
    s2s_conn *bidi = o && o->ready ? NULL : s2s_bidi_stream(local, ev->to->domain);
    if (bidi) {
        /* XEP-0288: the peer's own stream carries our stanzas back. */
        s2s_touch(bidi);
        s2s_write(bidi, ev->stanza);
        return true;
    }
    if (!o)
        o = out_get(local, ev->to->domain, true);
    if (!o) {
        bounce(local, ev->stanza, NULL, "internal-server-error");
        return true;
    }
    if (o->ready && o->conn && o->conn->state == S2S_OPEN) {
        /* The write may close the stream (a slow reader), which frees o:
         * touch first. */
        s2s_conn *c = o->conn;
        s2s_touch(c);
        s2s_write(c, ev->stanza);
        return true;
    }
    if (o->qn >= (size_t)conf()->max_queue) {
        bounce(local, ev->stanza, "wait", "resource-constraint");
        return true;
    }
    if (o->qn == o->qcap) {
        size_t cap = o->qcap ? o->qcap * 2 : 8;
        xmppd_stanza **q = realloc(o->q, cap * sizeof(*q));
        if (!q) {
            bounce(local, ev->stanza, "wait", "resource-constraint");
            return true;
        }
        o->q = q;
        o->qcap = cap;
    }
    if (!o->started && !o->conn) {
        uint64_t left = 0;
        const char *cond = s2s_backoff_active(o->map_key, &left);
        if (cond) {
            /* The last attempt failed a moment ago: no new one yet. */
            log_kernel("s2s-out", XMPPD_LOG_DEBUG, "%s: backing off for %llu ms more: %s bounced",
                       o->remote, (unsigned long long)left, xmppd_stanza_name(ev->stanza));
            bounce(local, ev->stanza, NULL, cond);
            if (o->qn == 0 && !o->verifies)
                out_destroy(o);
            return true;
        }
    }
    o->q[o->qn++] = xmppd_stanza_ref(ev->stanza);
    if (!o->started && !o->conn) {
        o->started = true;
        o->ready = false;
        next_target(o); /* may fail at once: o is gone then */
    }
    return true;
}

/* ---- resolution and connection attempts ---------------------------------------------------- */

static void on_addrs(void *ud, const struct sockaddr_storage *a, size_t n, const char *error)
{
    s2s_out *o = ud;
    o->rq = NULL;
    if (n == 0) {
        log_kernel("s2s-out", XMPPD_LOG_INFO, "%s: %s: %s", o->remote, o->cur->host, error);
        next_target(o);
        return;
    }
    o->n_addrs = n < MAX_ADDRS ? n : MAX_ADDRS;
    memcpy(o->addrs, a, o->n_addrs * sizeof(*a));
    o->ai = 0;
    next_addr(o);
}

static void on_srv(void *ud, s2s_target *t, size_t n, const char *error)
{
    s2s_out *o = ud;
    o->rq = NULL;
    if (n == 0) {
        s2s_targets_free(t, n);
        out_fail(o, "remote-server-not-found", error ? error : "no target");
        return;
    }
    o->targets = t;
    o->n_targets = n;
    o->ti = 0;
    for (size_t i = 0; i < n; i++)
        log_kernel("s2s-out", XMPPD_LOG_DEBUG, "%s: target %zu: %s:%d%s (priority %u, weight %u)",
                   o->remote, i + 1, t[i].host, t[i].port, t[i].direct_tls ? " direct TLS" : "",
                   t[i].priority, t[i].weight);
    next_target(o);
}

static const s2s_route_conf *static_route(const char *domain)
{
    const s2s_conf *sc = conf();
    for (size_t i = 0; i < sc->n_routes; i++)
        if (strcmp(sc->routes[i].domain, domain) == 0)
            return &sc->routes[i];
    return NULL;
}

static void next_target(s2s_out *o)
{
    if (!o->targets) {
        const s2s_route_conf *r = static_route(o->remote);
        if (r) {
            o->targets = calloc(1, sizeof(*o->targets));
            if (o->targets && (o->targets[0].host = strdup(r->host))) {
                o->targets[0].port = r->port;
                o->n_targets = 1;
            }
            if (!o->n_targets) {
                out_fail(o, "internal-server-error", "out of memory");
                return;
            }
        } else {
            if (!(o->rq = resolver_srv(o->remote, on_srv, o)))
                out_fail(o, "remote-server-not-found", "the resolver is not available");
            return;
        }
    }
    while (o->ti < o->n_targets) {
        o->cur = &o->targets[o->ti++];
        if ((o->rq = resolver_addrs(o->cur->host, o->cur->port, on_addrs, o)))
            return;
    }
    out_fail(o, o->timed_out ? "remote-server-timeout" : "remote-server-not-found",
             o->timed_out ? "no answer in time" : "no address could be reached");
}

static bool connect_to(s2s_out *o, const struct sockaddr_storage *sa)
{
    s2s_conn *c = s2s_conn_new(true);
    if (!c)
        return false;
    socklen_t len = sa->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    c->port = xstream_peer_addr((const struct sockaddr *)sa, c->ip);
    log_conn_tag(c->tag, c->ip);
    c->local = strdup(o->local);
    c->remote = strdup(o->remote);
    bool direct = o->cur->direct_tls;
    SSL *ssl = direct ? tls_new_client_ssl(o->local, o->remote, true) : NULL;
    struct bufferevent *bev = NULL;
    if (c->local && c->remote && (!direct || ssl))
        bev = bufferevent_socket_new(loop_base(), -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev) {
        if (ssl)
            SSL_free(ssl);
        s2s_close(c, NULL, NULL);
        return false;
    }
    c->secure = c->direct_tls = direct;
    if (s2s_conn_attach(c, bev, ssl, conf()->connect_timeout) < 0 ||
        bufferevent_socket_connect(bev, (const struct sockaddr *)sa, (int)len) < 0) {
        log_kernel("s2s-out", XMPPD_LOG_INFO, "%s [%s]:%d: cannot connect", o->remote, c->ip, c->port);
        s2s_close(c, NULL, NULL);
        return false;
    }
    net_nodelay(bufferevent_getfd(bev));
    log_kernel("s2s-out", XMPPD_LOG_DEBUG, "%s: connecting to [%s]:%d%s", o->remote, c->ip,
               c->port, direct ? " (direct TLS)" : "");
    c->out = o;
    o->conn = c;
    return true;
}

static void next_addr(s2s_out *o)
{
    while (o->ai < o->n_addrs)
        if (connect_to(o, &o->addrs[o->ai++]))
            return;
    next_target(o);
}

void s2s_out_conn_lost(s2s_conn *c, bool timeout)
{
    s2s_out *o = c->out;
    if (!o)
        return;
    c->out = NULL;
    o->conn = NULL;
    if (o->ready) {
        /* An established stream ended (idle, or the peer closed it). */
        o->ready = false;
        if (o->qn == 0 && !o->verifies) {
            out_destroy(o);
            return;
        }
        for (verify_req *v = o->verifies; v; v = v->next)
            v->sent = false; /* ask again on the next stream */
        s2s_targets_free(o->targets, o->n_targets);
        o->targets = NULL;
        o->n_targets = o->ti = 0;
        o->timed_out = false;
        o->started = true;
        next_target(o);
        return;
    }
    if (timeout) {
        o->timed_out = true;
        log_kernel("s2s-out", XMPPD_LOG_INFO, "%s [%s]:%d: no stream within %llu ms", o->remote,
                   c->ip, c->port, (unsigned long long)conf()->connect_timeout);
    }
    for (verify_req *v = o->verifies; v; v = v->next)
        v->sent = false;
    next_addr(o);
}

void s2s_out_verify(const char *local, const char *remote, const char *id, const char *key,
                    s2s_conn *in)
{
    s2s_out *o = out_get(local, remote, true);
    verify_req *v = o ? calloc(1, sizeof(*v)) : NULL;
    if (!v || !(v->id = strdup(id)) || !(v->key = strdup(key))) {
        if (v) {
            free(v->id);
            free(v);
        }
        s2s_in_dialback_done(in, local, remote, false, "internal-server-error");
        return;
    }
    s2s_conn_ref(in);
    v->in = in;
    verify_req **pp = &o->verifies;
    while (*pp)
        pp = &(*pp)->next;
    *pp = v;
    if (o->conn) {
        send_verifies(o);
    } else if (!o->started) {
        o->started = true;
        next_target(o);
    }
}

/* ---- the stream ---------------------------------------------------------------------------------- */

void s2s_out_connected(s2s_conn *c)
{
    log_kernel("s2s-out", XMPPD_LOG_DEBUG, "%s: connected to [%s]:%d", c->remote, c->ip, c->port);
    s2s_send_header(c);
}

void s2s_out_tls_ready(s2s_conn *c)
{
    s2s_send_header(c);
}

int s2s_out_on_header(s2s_conn *c, const xs_header *h)
{
    if (!h->default_ns || strcmp(h->default_ns, XMPPD_NS_SERVER) != 0) {
        auth_fail(c, "invalid-namespace", "the peer's stream is not jabber:server");
        return 1;
    }
    if (!h->version || strtol(h->version, NULL, 10) < 1) {
        auth_fail(c, "unsupported-version", "the peer does not speak XMPP 1.0");
        return 1;
    }
    c->stream_id[0] = '\0';
    if (h->id && strlen(h->id) < sizeof(c->stream_id))
        snprintf(c->stream_id, sizeof(c->stream_id), "%s", h->id);
    c->state = S2S_OPEN;
    return 0;
}

static void start_dialback(s2s_conn *c)
{
    if (!c->stream_id[0]) {
        auth_fail(c, "undefined-condition", "the peer's stream has no usable id for dialback");
        return;
    }
    char key[65];
    dialback_key(c->remote, c->local, c->stream_id, key);
    xmppd_stanza *el = s2s_dialback_new("result");
    if (!el || !key[0]) {
        xmppd_stanza_unref(el);
        auth_fail(c, "internal-server-error", "cannot make a dialback key");
        return;
    }
    xmppd_stanza_set_attr(el, "from", c->local);
    xmppd_stanza_set_attr(el, "to", c->remote);
    xmppd_stanza_add_text(el, key, strlen(key));
    s2s_write(c, el);
    xmppd_stanza_unref(el);
    xmppd_wipe(key, sizeof(key));
    c->db_sent = true;
    if (c->out)
        send_verifies(c->out);
}

static bool offers_external(const xmppd_stanza *f)
{
    xmppd_stanza *m = xmppd_stanza_child(f, "mechanisms", NS_S2S_SASL);
    for (xmppd_stanza *e = m ? xmppd_stanza_first(m) : NULL; e; e = xmppd_stanza_next(e))
        if (strcmp(xmppd_stanza_name(e), "mechanism") == 0 &&
            strcmp(xmppd_stanza_text(e), "EXTERNAL") == 0)
            return true;
    return false;
}

static int handle_features(s2s_conn *c, xmppd_stanza *f)
{
    const s2s_conf *sc = conf();
    if (!c->secure) {
        if (xmppd_stanza_child(f, "starttls", NS_S2S_TLS)) {
            s2s_write_raw(c, "<starttls xmlns='" NS_S2S_TLS "'/>", 17 + sizeof(NS_S2S_TLS) + 2);
            return 0;
        }
        if (sc->require_encryption) {
            auth_fail(c, "policy-violation", "the peer offers no TLS (s2s.require_encryption)");
            return 1;
        }
    }
    if (sc->bidi && !c->bidi && xmppd_stanza_child(f, "bidi", NS_BIDI_FEATURE)) {
        /* XEP-0288 §2.2: asked for before SASL or dialback. */
        s2s_write_raw(c, "<bidi xmlns='" NS_BIDI "'/>", 13 + sizeof(NS_BIDI) + 2);
        c->bidi = true;
    }
    if (c->sasl_done) {
        became_ready(c, "SASL EXTERNAL");
        return 0;
    }
    xmppd_stanza *db = xmppd_stanza_child(f, "dialback", NS_DIALBACK_FEATURE);
    c->peer_db_errors = db && xmppd_stanza_child(db, "errors", NS_DIALBACK_FEATURE);
    bool cert_ok = c->secure && s2s_cert_valid(c);
    if (sc->authentication == S2S_AUTH_EXTERNAL && !cert_ok) {
        auth_fail(c, "policy-violation",
                  "the peer's certificate does not validate (s2s.authentication is \"external\")");
        return 1;
    }
    if (sc->authentication != S2S_AUTH_DIALBACK && c->secure && !c->sasl_sent &&
        offers_external(f)) {
        /* XEP-0178 §3: the authorization identity is our domain. */
        char *b64 = xmppd_base64_encode(c->local, strlen(c->local));
        xmppd_stanza *a = b64 ? xmppd_stanza_new("auth", NS_S2S_SASL) : NULL;
        if (!a) {
            free(b64);
            auth_fail(c, "internal-server-error", "out of memory");
            return 1;
        }
        xmppd_stanza_set_attr(a, "mechanism", "EXTERNAL");
        xmppd_stanza_add_text(a, b64, strlen(b64));
        s2s_write(c, a);
        xmppd_stanza_unref(a);
        free(b64);
        c->sasl_sent = true;
        return 0;
    }
    if (sc->authentication == S2S_AUTH_EXTERNAL) {
        auth_fail(c, "policy-violation",
                  "the peer does not accept our certificate (no SASL EXTERNAL offered)");
        return 1;
    }
    start_dialback(c);
    return 0;
}

static void handle_db_verify_answer(s2s_conn *c, xmppd_stanza *el)
{
    s2s_out *o = c->out;
    const char *id = xmppd_stanza_attr(el, "id"), *type = xmppd_stanza_attr(el, "type");
    const char *from = xmppd_stanza_attr(el, "from");
    verify_req **pp = o ? &o->verifies : NULL;
    while (pp && *pp && !((*pp)->sent && id && strcmp((*pp)->id, id) == 0))
        pp = &(*pp)->next;
    if (!pp || !*pp || !from || strcmp(from, c->remote) != 0) {
        /* Only answers to our own requests count (XEP-0220 §4). */
        log_kernel("s2s-out", XMPPD_LOG_INFO, "%s [%s]: unexpected dialback verification answer",
                   c->remote, c->tag);
        return;
    }
    verify_req *v = *pp;
    *pp = v->next;
    const char *cond = NULL;
    if (type && strcmp(type, "error") == 0) {
        xmppd_stanza *e = xmppd_stanza_child(el, "error", NULL);
        xmppd_stanza *k = e ? xmppd_stanza_first(e) : NULL;
        cond = k && strcmp(xmppd_stanza_ns(k), XMPPD_NS_STANZAS) == 0 ? xmppd_stanza_name(k)
                                                                        : "undefined-condition";
    }
    bool valid = type && strcmp(type, "valid") == 0;
    /* cond points into el, which outlives the call. */
    s2s_in_dialback_done(v->in, o->local, o->remote, valid, cond);
    s2s_conn_unref(v->in);
    free(v->id);
    free(v->key);
    free(v);
}

/* XEP-0288 §2.2: on our bidirectional stream the peer may send stanzas from
 * the domain we connected to (whose server we reached and, with TLS,
 * whose certificate we checked) to the domain we authenticated as. */
static int handle_bidi_stanza(s2s_conn *c, xmppd_stanza *el)
{
    const char *from_s = xmppd_stanza_attr(el, "from"), *to_s = xmppd_stanza_attr(el, "to");
    xmppd_jid *from = from_s ? xmppd_jid_parse(from_s) : NULL;
    xmppd_jid *to = to_s ? xmppd_jid_parse(to_s) : NULL;
    int stop = 1;
    if (!from || !to)
        s2s_close(c, "improper-addressing", NULL);
    else if (strcmp(to->domain, c->local) != 0)
        s2s_close(c, "host-unknown", "This stream carries stanzas for its own domain only");
    else if (strcmp(from->domain, c->remote) != 0)
        s2s_close(c, "invalid-from", "This stream carries stanzas of its own domain only");
    else if (s2s_stanza_allowed(c)) {
        s2s_touch(c);
        xmppd_stanza_set_attr(el, "from", from->full);
        xmppd_stanza_set_attr(el, "to", to->full);
        xmppd_route(xmppd_host_find(c->local), el);
        stop = 0;
    }
    xmppd_jid_free(from);
    xmppd_jid_free(to);
    return stop;
}

int s2s_out_on_element(s2s_conn *c, xmppd_stanza *el)
{
    const char *name = xmppd_stanza_name(el), *ns = xmppd_stanza_ns(el);
    if (strcmp(ns, XS_NS_STREAM) == 0 && strcmp(name, "features") == 0)
        return handle_features(c, el);
    if (strcmp(ns, XS_NS_STREAM) == 0 && strcmp(name, "error") == 0) {
        xmppd_stanza *k = xmppd_stanza_first(el);
        char reason[160];
        snprintf(reason, sizeof(reason), "stream error from the peer: %s",
                 k ? xmppd_stanza_name(k) : "(none)");
        if (c->authenticated) {
            log_kernel("s2s-out", XMPPD_LOG_INFO, "%s [%s]: %s", c->remote, c->tag, reason);
            s2s_close(c, NULL, NULL);
        } else {
            auth_fail(c, NULL, reason);
        }
        return 1;
    }
    if (strcmp(ns, NS_S2S_TLS) == 0) {
        if (strcmp(name, "proceed") == 0 && !c->secure) {
            c->starttls_pending = true;
            return 1;
        }
        auth_fail(c, NULL, "the peer refused STARTTLS");
        return 1;
    }
    if (strcmp(ns, NS_S2S_SASL) == 0 && c->sasl_sent && !c->sasl_done) {
        if (strcmp(name, "success") == 0) {
            c->sasl_done = true;
            c->restart_pending = true; /* RFC 6120 §6.4.6 */
            return 1;
        }
        if (strcmp(name, "failure") == 0 && conf()->authentication == S2S_AUTH_BOTH) {
            log_kernel("s2s-out", XMPPD_LOG_INFO, "%s [%s]: SASL EXTERNAL refused, trying dialback",
                       c->remote, c->tag);
            start_dialback(c);
            return 0;
        }
        auth_fail(c, NULL, "the peer refused SASL EXTERNAL");
        return 1;
    }
    if (strcmp(ns, NS_DIALBACK) == 0 && strcmp(name, "result") == 0 && c->db_sent &&
        !c->authenticated) {
        const char *type = xmppd_stanza_attr(el, "type"), *from = xmppd_stanza_attr(el, "from");
        const char *to = xmppd_stanza_attr(el, "to");
        if (!from || !to || strcmp(from, c->remote) != 0 || strcmp(to, c->local) != 0)
            return 0; /* not about our request */
        if (type && strcmp(type, "valid") == 0) {
            became_ready(c, "dialback");
            return 0;
        }
        auth_fail(c, NULL, type && strcmp(type, "error") == 0 ? "dialback error from the peer"
                                                               : "the peer refused our dialback key");
        return 1;
    }
    if (strcmp(ns, NS_DIALBACK) == 0 && strcmp(name, "verify") == 0 && xmppd_stanza_attr(el, "type")) {
        handle_db_verify_answer(c, el);
        return 0;
    }
    if (c->bidi && c->authenticated && strcmp(ns, XMPPD_NS_SERVER) == 0 &&
        (strcmp(name, "message") == 0 || strcmp(name, "presence") == 0 || strcmp(name, "iq") == 0))
        return handle_bidi_stanza(c, el);
    if (c->bidi && c->authenticated && strcmp(ns, NS_DIALBACK) == 0 && strcmp(name, "result") == 0 &&
        !xmppd_stanza_attr(el, "type")) {
        /* XEP-0288 §2.2: the peer may ask to add domains on our stream; we
         * authenticate only the pair we opened it for (XEP-0220 §2.4 error). */
        xmppd_stanza *r = s2s_dialback_new("result");
        if (r) {
            xmppd_stanza_set_attr(r, "from", xmppd_stanza_attr(el, "to"));
            xmppd_stanza_set_attr(r, "to", xmppd_stanza_attr(el, "from"));
            xmppd_stanza_set_attr(r, "type", "error");
            s2s_add_error(r, "cancel", "feature-not-implemented");
            s2s_write(c, r);
            xmppd_stanza_unref(r);
        }
        return 0;
    }
    /* RFC 6120 §2.5: without XEP-0288, stanzas travel the other way. */
    s2s_close(c, "unsupported-stanza-type", NULL);
    return 1;
}

struct collect {
    s2s_out **v;
    size_t n;
};

static int collect_one(const char *key, void *value, void *ud)
{
    struct collect *col = ud;
    col->v[col->n++] = value;
    return 0;
}

void s2s_out_shutdown(void)
{
    s2s_backoff_clear();
    if (!outs)
        return;
    size_t n = strmap_count(outs);
    struct collect col = { calloc(n ? n : 1, sizeof(s2s_out *)), 0 };
    if (col.v)
        strmap_foreach(outs, collect_one, &col);
    for (size_t i = 0; i < col.n; i++) {
        s2s_out *o = col.v[i];
        if (o->conn) {
            /* The stream gets <system-shutdown/> with all the others. */
            o->conn->out = NULL;
            o->conn = NULL;
        }
        out_destroy(o);
    }
    free(col.v);
    strmap_free(outs);
    outs = NULL;
}
