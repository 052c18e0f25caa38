/* A configuration reload (SIGHUP, `xmppctl reload`) seen by the cluster
 * (docs/cluster.md "Reload").
 *
 * - heartbeat, node_timeout, delivery_timeout and queue_max apply at once:
 *   they are this node's timing and limits, which the others do not rely
 *   on being equal (each renews its own registration, checks the frames it
 *   sent, bounds the streams it writes to);
 * - name, node, redis, secret, ca_file, cert and key are the node's
 *   identity and its link: the others route to its stream by its name and
 *   check its frames with the secret, and its sessions are registered under
 *   them. Changing them on a running node would orphan what is in flight,
 *   so they are kept and the log says to restart the node (the rest of the
 *   reload applies). Adding or removing the section likewise;
 * - a change of the hosts is compared with the hosts the live nodes serve
 *   (their registrations, read at every heartbeat): a node serving other
 *   hosts than the others would route their stanzas wrongly (to s2s, or
 *   answer for accounts the others do not have), so such a reload is
 *   refused as a whole and the old hosts stay. A node alone, or whose
 *   peers already serve the new list, takes it, and publishes it at its
 *   next heartbeat. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "cluster/internal.h"
#include "core/core.h"

char *node_hosts_mismatch(const xmppd_config *cfg)
{
    char *ours = cluster_hosts_of(cfg);
    char *why = NULL;
    for (size_t i = 0; ours && !why && i < g_cluster.n_peers; i++) {
        const peer *p = &g_cluster.peers[i];
        if (!p->hosts || strcmp(p->hosts, ours) == 0)
            continue;
        size_t n = strlen(ours) + strlen(p->hosts) + strlen(p->name) + 160;
        if ((why = malloc(n)))
            snprintf(why, n, "cluster: the new hosts \"%s\" are not those of node %s (\"%s\"): "
                     "the nodes of a cluster serve the same hosts", ours, p->name, p->hosts);
    }
    if (!ours)
        why = strdup("cluster: out of memory");
    free(ours);
    return why;
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool same_list(const char *const *a, const char *const *b)
{
    for (; a && b && *a && *b; a++, b++)
        if (strcmp(*a, *b) != 0)
            return false;
    return (!a || !*a) && (!b || !*b);
}

/* The first identity key that differs, or NULL. */
static const char *identity_changed(const cluster_conf *old, const cluster_conf *now)
{
    if (!same_str(old->name, now->name))
        return "name";
    if (!same_str(old->node, now->node))
        return "node";
    if (!same_list(old->redis, now->redis))
        return "redis";
    if (!same_str(old->secret, now->secret))
        return "secret";
    if (!same_str(old->ca_file, now->ca_file) || !same_str(old->cert, now->cert) ||
        !same_str(old->key, now->key))
        return "ca_file/cert/key";
    return NULL;
}

int cluster_reload_check(const xmppd_config *cfg, char *err, size_t errlen)
{
    if (!g_cluster.conf || !cfg->cluster.enabled)
        return 0;
    char *ours = cluster_hosts_of(cfg);
    bool same = ours && strcmp(ours, g_cluster.hosts) == 0;
    free(ours);
    char *why = same ? NULL : node_hosts_mismatch(cfg);
    if (!why)
        return 0;
    log_kernel("cluster", XMPPD_LOG_ERROR, "reload refused: %s; this node keeps serving \"%s\"",
               why, g_cluster.hosts);
    snprintf(err, errlen, "%s", why);
    free(why);
    return -1;
}

void cluster_reload(const xmppd_config *old, const xmppd_config *cfg)
{
    if (old->cluster.enabled != cfg->cluster.enabled) {
        log_kernel("cluster", XMPPD_LOG_ERROR, "reload: the \"cluster\" section was %s: not "
                   "applied, restart the node to %s the cluster",
                   cfg->cluster.enabled ? "added" : "removed",
                   cfg->cluster.enabled ? "join" : "leave");
        return;
    }
    if (!g_cluster.conf)
        return;
    char *ours = cluster_hosts_of(cfg); /* checked by cluster_reload_check */
    if (ours && strcmp(ours, g_cluster.hosts) != 0) {
        log_kernel("cluster", XMPPD_LOG_INFO, "reload: this node now serves \"%s\" (was \"%s\")",
                   ours, g_cluster.hosts);
        free(g_cluster.hosts);
        g_cluster.hosts = ours; /* published at the next heartbeat */
        ours = NULL;
    }
    free(ours);
    const char *key = identity_changed(&old->cluster, &cfg->cluster);
    if (key)
        log_kernel("cluster", XMPPD_LOG_ERROR, "reload: cluster.%s changed: not applied (the "
                   "other nodes know this node, its stream and its frames by it); restart the "
                   "node to apply it", key);
    cluster_conf *cc = &g_cluster.copy;
    if (cc->heartbeat != cfg->cluster.heartbeat) {
        struct timeval tv = { cfg->cluster.heartbeat / 1000,
                              (cfg->cluster.heartbeat % 1000) * 1000 };
        if (event_del(g_cluster.beat) < 0 || event_add(g_cluster.beat, &tv) < 0)
            log_kernel("cluster", XMPPD_LOG_ERROR, "reload: cannot reschedule the heartbeat");
    }
    if (cc->heartbeat != cfg->cluster.heartbeat || cc->node_timeout != cfg->cluster.node_timeout ||
        cc->delivery_timeout != cfg->cluster.delivery_timeout ||
        cc->queue_max != cfg->cluster.queue_max)
        log_kernel("cluster", XMPPD_LOG_INFO, "reload: heartbeat %lld ms, node_timeout %lld ms, "
                   "delivery_timeout %lld ms, queue_max %lld", cfg->cluster.heartbeat,
                   cfg->cluster.node_timeout, cfg->cluster.delivery_timeout,
                   cfg->cluster.queue_max);
    cc->heartbeat = cfg->cluster.heartbeat;
    cc->node_timeout = cfg->cluster.node_timeout;
    cc->delivery_timeout = cfg->cluster.delivery_timeout;
    cc->queue_max = cfg->cluster.queue_max;
}
