/* Sessions: lifetime, the link to the transport that carries them, and
 * the accessors modules use (api/xmppd/router.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session/session.h"

#define API XMPPD_EXPORT

static const core_layer session_layer = {
    .host_free = sm_host_free,
    .module_replaced = sm_slots_move,
};

void session_layer_init(void)
{
    core_register_layer(&session_layer);
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
    free(s);
}

void session_detach(xmppd_session *s)
{
    if (!s->conn)
        return;
    s->conn = NULL;
    s->closing = true;
    if (s->bound) {
        sm_unbind(s); /* no-op when a newer login replaced it already */
        /* Modules broadcast unavailable, flush state, free their slots. */
        xmppd_notify(s->host, "session-closed", s, NULL);
        log_kernel("session", XMPPD_LOG_INFO, "%s: session %s closed", s->tag, s->jid->full);
    }
}

/* ---- the transport ------------------------------------------------------------ */

static bool is_stanza(const char *name)
{
    return strcmp(name, "message") == 0 || strcmp(name, "presence") == 0 || strcmp(name, "iq") == 0;
}

void session_write(xmppd_session *s, const xmppd_stanza *st)
{
    size_t len;
    if (s->closing || s->tr->write(s->conn, st, &len) < 0)
        return;
    if (s->in_sm && is_stanza(xmppd_stanza_name(st))) {
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
    s->closing = true;
    s->tr->close(s->conn, condition, text);
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

