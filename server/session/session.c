/* Sessions: lifetime, the link to the transport that carries them, and
 * the accessors modules use (api/xmppd/router.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "session/session.h"

#define API XMPPD_EXPORT

static const core_layer session_layer = {
    .host_free = sm_host_free,
    .module_replaced = sm_slots_move,
};

/* xmppd_sessions{transport, host}: bound sessions, counted when asked. */
static int count_session(xmppd_session *s, void *ud)
{
    xmppd_metric_add(ud, (const char *[]){ s->transport, s->host->name }, 1);
    return 0;
}

static int zero_host(xmppd_host *h, void *ud)
{
    static const char *const transports[] = { "c2s", "websocket", "bosh" };
    for (size_t i = 0; i < 3; i++)
        xmppd_metric_set(ud, (const char *[]){ transports[i], h->name }, 0);
    return 0;
}

static void collect_sessions(void *ud)
{
    xmppd_host_foreach(zero_host, ud);
    xmppd_host_sessions(NULL, count_session, ud);
}

void session_layer_init(void)
{
    core_register_layer(&session_layer);
    static const char *const labels[] = { "transport", "host", NULL };
    xmppd_metric *mt = xmppd_metric_new(NULL, "xmppd_sessions", XMPPD_METRIC_GAUGE,
                                        "Bound client sessions by transport and host", labels,
                                        NULL, 0);
    if (mt)
        xmppd_metrics_collector(NULL, collect_sessions, mt);
}

/* ---- lifetime --------------------------------------------------------------- */

xmppd_session *session_new(const session_transport *tr, void *conn, const char *ip)
{
    xmppd_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->refs = 1;
    s->tr = tr;
    s->conn = conn;
    s->transport = tr->name;
    snprintf(s->ip, sizeof(s->ip), "%s", ip);
    log_conn_tag(s->tag, ip);
    return s;
}

API xmppd_session *xmppd_session_ref(xmppd_session *s)
{
    s->refs++;
    return s;
}

API void xmppd_session_unref(xmppd_session *s)
{
    if (!s || --s->refs > 0)
        return;
    xmppd_jid_free(s->jid);
    free(s->user);
    xmppd_stanza_unref(s->presence);
    free(s->slots);
    free(s->marks);
    free(s->commits); /* holds and waiters held references: none is left */
    free(s);
}

/* The session is over: out of the table, and modules hear of it. A
 * hibernated session's own reference goes last (s may be freed then). */
static void session_end(xmppd_session *s)
{
    bool was_hibernated = s->hibernated;
    s->closing = true;
    s->hibernated = false;
    if (s->bound) {
        sm_unbind(s); /* no-op when a newer login replaced it already */
        /* Modules broadcast unavailable, flush state, free their slots. */
        xmppd_notify(s->host, "session-closed", s, NULL);
        log_kernel("session", XMPPD_LOG_INFO, "%s: session %s closed", s->tag, s->jid->full);
    }
    if (was_hibernated)
        xmppd_session_unref(s);
}

void session_detach(xmppd_session *s)
{
    if (!s->conn)
        return;
    session_sent_lost(s);
    s->conn = NULL;
    if (!s->closing && s->in_sm) {
        /* Lost, not closed: stream management may keep it for a resume. */
        xmppd_event ev = { .name = "session-detach", .host = s->host, .session = s };
        if (xmppd_fire(&ev) == XMPPD_HANDLED && !s->closing && s->in_sm) {
            /* Hibernation holds the session (the table holds no reference)
             * until it ends or is resumed. */
            s->hibernated = true;
            xmppd_session_ref(s);
            log_kernel("session", XMPPD_LOG_INFO, "%s: session %s hibernated", s->ip, s->jid->full);
            return;
        }
    }
    session_end(s);
}

/* ---- the transport ------------------------------------------------------------ */

static bool is_stanza(const char *name)
{
    return strcmp(name, "message") == 0 || strcmp(name, "presence") == 0 || strcmp(name, "iq") == 0;
}

void session_write(xmppd_session *s, const xmppd_stanza *st)
{
    size_t len;
    if (s->closing)
        return;
    if (s->hibernated) {
        /* No connection: the module keeping the session holds it. */
        xmppd_event ev = { .name = "session-held", .host = s->host, .session = s,
                           .stanza = (xmppd_stanza *)st, .to = s->jid };
        xmppd_fire_all(&ev);
        return;
    }
    if (s->tr->write(s->conn, st, &len) < 0)
        return;
    metrics_bytes(METRICS_OUT, len);
    metrics_stanza(METRICS_C2S, METRICS_OUT, xmppd_stanza_name(st));
    if (s->in_sm && !s->remote && is_stanza(xmppd_stanza_name(st))) {
        /* Read-only observers (audit logs); data: the serialised size. */
        xmppd_event ev = { .name = "stanza-out", .host = s->host, .session = s,
                           .stanza = (xmppd_stanza *)st, .to = s->jid, .data = &len };
        xmppd_fire_all(&ev);
    }
}

void session_close(xmppd_session *s, const char *condition, const char *text)
{
    if (s->closing)
        return;
    if (!s->conn) {
        session_end(s); /* hibernated: nothing to say, nobody to say it to */
        return;
    }
    s->closing = true;
    s->tr->close(s->conn, condition, text);
}

/* Shutdown: hibernated sessions end like the others ("session-closed"),
 * while every module is still there to hear it. */
static int end_hibernated(xmppd_session *s, void *ud)
{
    if (s->hibernated)
        session_end(s);
    return 0;
}

void session_shutdown_all(void)
{
    xmppd_host_sessions(NULL, end_hibernated, NULL);
}

API bool xmppd_session_detached(const xmppd_session *s)
{
    return s->hibernated;
}

API int xmppd_session_resume(xmppd_session *fresh, xmppd_session *old)
{
    if (fresh == old || !fresh->conn || fresh->closing || !fresh->authenticated || fresh->bound ||
        !old->in_sm || old->closing || fresh->host != old->host || !fresh->user || !old->user ||
        strcmp(fresh->user, old->user) != 0)
        return -1;
    void *conn = fresh->conn, *stale = old->conn;
    const session_transport *tr = fresh->tr, *stale_tr = old->tr;
    bool was_hibernated = old->hibernated;
    /* Output positions are the connection's: waiters on either session
     * end with it. */
    session_sent_lost(old);
    session_sent_lost(fresh);
    /* The new connection carries the old session from now on. */
    xmppd_session_ref(old);
    xmppd_session_ref(fresh);
    old->conn = conn;
    old->tr = tr;
    old->hibernated = false;
    old->secure = fresh->secure;
    snprintf(old->ip, sizeof(old->ip), "%s", fresh->ip);
    fresh->conn = NULL;
    fresh->closing = true;
    tr->rebind(conn, old);
    /* A half-open old connection is told why it ends; it carries the
     * empty husk of the new login, so its end touches nothing. */
    if (stale) {
        fresh->conn = stale;
        fresh->tr = stale_tr;
        fresh->closing = false;
        stale_tr->rebind(stale, fresh);
        session_close(fresh, "conflict", "The session was resumed on another connection");
    }
    if (was_hibernated)
        xmppd_session_unref(old); /* the connection holds it now */
    xmppd_session_unref(fresh);
    xmppd_session_unref(old);
    log_kernel("session", XMPPD_LOG_INFO, "%s: session %s resumed", old->ip, old->jid->full);
    return 0;
}

/* ---- Bind2: <success/> waiting for a module's answer ---------------------- */

struct xmppd_bind2_wait {
    void (*release)(void *token);
    void *token;
};

API xmppd_bind2_wait *xmppd_bind2_hold(const xmppd_event *ev)
{
    xmppd_session *s = ev ? ev->session : NULL;
    if (!s || !ev->name || (strcmp(ev->name, "bind2-bound") != 0 &&
                            strcmp(ev->name, "sasl2-inline") != 0) ||
        !s->conn || !s->tr->bind2_hold)
        return NULL;
    xmppd_bind2_wait *w = calloc(1, sizeof(*w));
    if (w && !(w->token = s->tr->bind2_hold(s->conn))) {
        free(w);
        return NULL;
    }
    if (w)
        w->release = s->tr->bind2_release;
    return w;
}

API void xmppd_bind2_release(xmppd_bind2_wait *w)
{
    if (!w)
        return;
    w->release(w->token);
    free(w);
}

/* ---- accessors ----------------------------------------------------------- */

API bool xmppd_session_closed(const xmppd_session *s)
{
    return s->closing;
}

XMPPD_EXPORT const xmppd_jid *xmppd_session_jid(const xmppd_session *s)
{
    return s->in_sm || !s->conn ? s->jid : NULL;
}

XMPPD_EXPORT xmppd_host *xmppd_session_host(const xmppd_session *s)
{
    return s->host;
}

API bool xmppd_session_available(const xmppd_session *s)
{
    return s->available && !xmppd_session_closed(s);
}

API int xmppd_session_priority(const xmppd_session *s)
{
    return s->priority;
}

XMPPD_EXPORT xmppd_stanza *xmppd_session_presence(const xmppd_session *s)
{
    return s->presence;
}

XMPPD_EXPORT const char *xmppd_session_ip(const xmppd_session *s)
{
    return s->ip;
}

API bool xmppd_session_secure(const xmppd_session *s)
{
    return s->secure;
}

API bool xmppd_session_authenticated(const xmppd_session *s)
{
    return s->authenticated;
}

API bool xmppd_session_remote(const xmppd_session *s)
{
    return s->remote;
}

XMPPD_EXPORT const char *xmppd_session_user(const xmppd_session *s)
{
    return s->user;
}

XMPPD_EXPORT void *xmppd_session_get(const xmppd_session *s, const xmppd_module *m)
{
    for (size_t i = 0; i < s->n_slots; i++)
        if (s->slots[i].m == m)
            return s->slots[i].data;
    return NULL;
}

API void xmppd_session_set(xmppd_session *s, const xmppd_module *m, void *data)
{
    for (size_t i = 0; i < s->n_slots; i++)
        if (s->slots[i].m == m) {
            s->slots[i].data = data;
            return;
        }
    if (!data)
        return;
    struct module_slot *v = realloc(s->slots, (s->n_slots + 1) * sizeof(*v));
    if (!v)
        return;
    s->slots = v;
    s->slots[s->n_slots++] = (struct module_slot){ m, data };
}

API void xmppd_session_close(xmppd_session *s, const char *condition, const char *text)
{
    session_close(s, condition, text);
}

API uint64_t xmppd_session_bytes_in(const xmppd_session *s)
{
    return s->conn ? s->tr->bytes_in(s->conn) : 0;
}

