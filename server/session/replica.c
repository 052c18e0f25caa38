/* The SDK's replicas (api/xmppd/cluster.h): calls passed to the cluster
 * layer's backend, and the adoption of a session taken over from another
 * node, which is the session layer's own business (binding, presence). */
#include <stdlib.h>
#include <string.h>

#include "session/replica.h"

#define API XMPPD_EXPORT

static const replica_backend *g_backend;

void replica_set_backend(const replica_backend *b)
{
    g_backend = b;
}

API xmppd_replica *xmppd_replica_new(xmppd_module *m, xmppd_session *s, const char *id,
                                     uint64_t ttl_ms, void (*release)(void *ud), void *ud)
{
    return g_backend && s && !s->remote ? g_backend->open(m, s, id, ttl_ms, release, ud) : NULL;
}

API void xmppd_replica_set_in(xmppd_replica *r, uint32_t in_h)
{
    if (r && g_backend)
        g_backend->set_in(r, in_h);
}

API void xmppd_replica_push(xmppd_replica *r, uint32_t seq, const xmppd_stanza *st)
{
    if (r && g_backend)
        g_backend->push(r, seq, st);
}

API void xmppd_replica_drop(xmppd_replica *r, size_t n)
{
    if (r && g_backend && n)
        g_backend->drop(r, n);
}

API void xmppd_replica_restart(xmppd_replica *r)
{
    if (r && g_backend)
        g_backend->restart(r);
}

API void xmppd_replica_free(xmppd_replica *r, bool erase)
{
    if (r && g_backend)
        g_backend->close(r, erase);
}

API int xmppd_replica_take(xmppd_module *m, xmppd_host *h, const char *user, const char *id,
                           xmppd_replica_cb cb, void *ud)
{
    return g_backend && h && user && id ? g_backend->take(m, h, user, id, cb, ud) : -1;
}

API int xmppd_replica_adopt(xmppd_session *s, const xmppd_replica_state *st)
{
    if (!s->conn || s->closing || !s->authenticated || s->bound || !s->user || !st->jid)
        return -1;
    xmppd_jid *jid = xmppd_jid_parse(st->jid);
    if (!jid || !jid->node || !jid->resource || strcmp(jid->node, s->user) != 0 ||
        strcmp(jid->domain, s->host->name) != 0) {
        xmppd_jid_free(jid);
        return -1;
    }
    xmppd_jid_free(s->jid);
    s->jid = jid;
    xmppd_event ev = { .name = "resource-bind", .host = s->host, .session = s };
    if (xmppd_fire(&ev) != XMPPD_PASS || sm_bind(s, jid->resource) < 0)
        return -1;
    s->bound = true;
    s->priority = st->priority;
    /* the connection treats its stream as bound from now on */
    s->tr->rebind(s->conn, s);
    log_kernel("session", XMPPD_LOG_INFO, "%s: session %s taken over from another node", s->tag,
               jid->full);
    xmppd_notify(s->host, "resource-bound", s, NULL);
    return 0;
}

API void xmppd_replica_announce(xmppd_session *s, const xmppd_replica_state *st)
{
    if (!st->presence || s->closing || !s->in_sm)
        return;
    xmppd_stanza *p = xmppd_stanza_copy(st->presence);
    if (p && xmppd_stanza_set_attr(p, "to", NULL) == 0 &&
        xmppd_stanza_set_attr(p, "from", s->jid->full) == 0)
        router_from_client(s, p);
    xmppd_stanza_unref(p);
}
