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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "core/core.h"
#include "session/session.h"
#include "util/strmap.h"

/* Invalidations made while Redis was away ("MODULE\nBARE" -> non-NULL),
 * sent when it is back: the others' copies may be stale meanwhile, but
 * not for longer. Bounded: beyond PENDING_MAX changed accounts the rest
 * is only logged. */
#define PENDING_MAX 10000
static strmap *g_pending;
static bool g_overflow;

static bool live(const char *node)
{
    for (size_t i = 0; i < g_cluster.n_peers; i++)
        if (strcmp(g_cluster.peers[i].name, node) == 0)
            return true;
    return false;
}

static int send_all(const char *bare, const char *module)
{
    int rc = 0;
    for (size_t i = 0; i < g_cluster.n_peers; i++)
        if (link_send(g_cluster.peers[i].name, "inval", bare, module, strlen(module), NULL) < 0)
            rc = -1;
    return rc;
}

/* Kept for when Redis is back. */
static void keep(const char *bare, const char *module)
{
    char key[3200];
    snprintf(key, sizeof(key), "%s\n%s", module, bare);
    if (!g_pending && !(g_pending = strmap_new()))
        return;
    if (strmap_count(g_pending) == 0)
        log_kernel("cluster", XMPPD_LOG_WARN, "Redis is away: changes of accounts' data are "
                   "told to the other nodes when it is back");
    if (strmap_count(g_pending) >= PENDING_MAX && !strmap_get(g_pending, key))
        g_overflow = true;
    else
        strmap_put(g_pending, key, g_pending);
}

void cstate_unsent(const char *bare, const char *module, size_t mlen)
{
    char m[64];
    if (mlen == 0 || mlen >= sizeof(m))
        return;
    memcpy(m, module, mlen);
    m[mlen] = '\0';
    keep(bare, m);
}

static int invalidate(xmppd_host *h, const char *bare, const char *module)
{
    if (g_cluster.n_peers == 0)
        return 0;
    if (!redis_conn_up(g_cluster.cmd) || send_all(bare, module) < 0) {
        keep(bare, module);
        return -1;
    }
    return 0;
}

static int send_kept(const char *key, void *value, void *ud)
{
    const char *nl = strchr(key, '\n');
    char module[64];
    if (nl && (size_t)(nl - key) < sizeof(module)) {
        memcpy(module, key, (size_t)(nl - key));
        module[nl - key] = '\0';
        send_all(nl + 1, module);
    }
    return 0;
}

void cstate_redis_up(void)
{
    if (!g_pending || strmap_count(g_pending) == 0)
        return;
    log_kernel("cluster", XMPPD_LOG_INFO, "Redis is back: the other nodes are told of %zu "
               "accounts' changes made meanwhile%s", strmap_count(g_pending),
               g_overflow ? " (more were made: their copies on other nodes stay until they "
                            "leave memory)" : "");
    strmap_foreach(g_pending, send_kept, NULL);
    strmap_free(g_pending);
    g_pending = NULL;
    g_overflow = false;
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
    strmap_free(g_pending);
    g_pending = NULL;
    g_overflow = false;
}
