/* Clustering: several xmppd nodes serving the same hosts (docs/cluster.md).
 *
 * Redis holds who is where and carries stanzas between nodes; storage is
 * shared (PostgreSQL). Every node keeps a copy of the whole session
 * registry in memory: a session bound on another node is a "remote"
 * session in the local session table (session/session.h), whose transport
 * forwards what is written to it to its node. So the router's RFC 6121
 * §8.5 rules, resource conflicts, session limits and the modules' walks
 * over an account's sessions give the same answers as on one node, with
 * no Redis round trip on the routing path.
 *
 * Nothing here runs when the configuration has no "cluster" section. */
#ifndef XMPPD_CLUSTER_H
#define XMPPD_CLUSTER_H

#include <stddef.h>

#include "core/config.h"

/* Connects to Redis (asynchronously: the node works locally until Redis
 * answers), registers the node and its heartbeat, subscribes to its
 * channels, and the "cluster-status" control command. 0 (also when cfg has
 * no cluster), or -1 with a one-line message. */
int cluster_start(const xmppd_config *cfg, char *err, size_t errlen);
/* A reload (server_reload): before anything of cfg applies, a change of
 * the hosts is checked against the live nodes' (-1 with a message: the
 * reload is refused); once cfg is in force (old still readable), the
 * cluster's timing applies and a changed identity is logged (reload.c). */
int cluster_reload_check(const xmppd_config *cfg, char *err, size_t errlen);
void cluster_reload(const xmppd_config *old, const xmppd_config *cfg);
/* After every local session ended: the node leaves Redis (best effort,
 * bounded wait) and drops the remote sessions. */
void cluster_stop(void);

#endif
