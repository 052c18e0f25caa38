/* Per-session and per-account state across nodes: the cluster side of
 * api/xmppd/cluster.h (session/cstate.c keeps the marks and the SDK calls).
 *
 * - Marks travel in the session's registry entry (registry.c value_of and
 *   set_presence): "PRIO AVAIL MARKS\n<presence/>".
 * - An invalidation is an "inval" frame (arg: the account's bare JID, body:
 *   the module's name) put in the stream of every live node, where it is
 *   ordered with the stanzas we send that node afterwards: a stanza routed
 *   there after a change is judged with the change (its module reloads,
 *   holding stanzas meanwhile). Streams, not pub/sub: a node whose
 *   subscriber is reconnecting would miss it and keep a stale copy.
 * - An answer to an IQ request of another node (its id names the node,
 *   iq_request.c) is routed there, where the request waits. */
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "core/core.h"
#include "session/session.h"

static bool live(const char *node)
{
    for (size_t i = 0; i < g_cluster.n_peers; i++)
        if (strcmp(g_cluster.peers[i].name, node) == 0)
            return true;
    return false;
}

static int invalidate(xmppd_host *h, const char *bare, const char *module)
{
    int rc = 0;
    for (size_t i = 0; i < g_cluster.n_peers; i++)
        if (link_send(g_cluster.peers[i].name, "inval", bare, module, strlen(module), NULL) < 0)
            rc = -1;
    if (rc < 0)
        /* Redis is away: nothing reaches the other nodes. Said in the log,
         * so an operator knows why a node may answer from an old copy. */
        log_kernel("cluster", XMPPD_LOG_WARN, "%s: the other nodes could not be told that %s "
                   "changed (Redis down): their copy may be stale until it leaves memory", bare,
                   module);
    return rc;
}

static bool answer(const char *node, xmppd_event *ev)
{
    if (!live(node) || !ev->to)
        return false;
    size_t len = 0;
    char *xml = xmppd_stanza_to_string(ev->stanza, "jabber:client", &len);
    int rc = xml ? link_send(node, "route", ev->to->full, xml, len, NULL) : -1;
    free(xml);
    if (rc == 0)
        log_kernel("cluster", XMPPD_LOG_DEBUG, "an answer to node %s's request %s: sent there",
                   node, xmppd_stanza_attr(ev->stanza, "id"));
    return rc == 0;
}

void cstate_inval(const char *node, const char *bare, const char *body, size_t blen)
{
    char module[64];
    xmppd_jid *jid = xmppd_jid_parse(bare);
    xmppd_host *h = jid && jid->node && !jid->resource ? xmppd_host_find(jid->domain) : NULL;
    if (h && blen > 0 && blen < sizeof(module)) {
        memcpy(module, body, blen);
        module[blen] = '\0';
        log_kernel("cluster", XMPPD_LOG_DEBUG, "%s of %s changed on node %s", module, bare, node);
        xmppd_event ev = { .name = "cluster-invalidate", .host = h, .to = jid, .data = module };
        xmppd_fire_all(&ev);
    }
    xmppd_jid_free(jid);
}

static session_cluster g_ops = { .invalidate = invalidate, .answer = answer,
                                 .arrived = registry_arrived };

void cstate_start(void)
{
    g_ops.node = g_cluster.conf->node;
    session_set_cluster(&g_ops);
}

void cstate_stop(void)
{
    session_set_cluster(NULL);
}
