/* Modules in a cluster of xmppd nodes (docs/cluster.md). Without a
 * "cluster" section every call here answers as for one node. */
#ifndef XMPPD_CLUSTER_API_H
#define XMPPD_CLUSTER_API_H

#include <stdbool.h>
#include "module.h"

/* ---- placement by hash (part "cplace": components, rooms, s2s) ------------------------ */

/* Every JID with a localpart at domain (node@domain, a room of a room
 * service say), a domain m serves (xmppd_domain_serve), lives on one live
 * node at a time: the one rendezvous hashing of its bare JID over the live
 * nodes' names picks. A stanza for it reaching any node is routed to that
 * node, where m's handler gets it; stanzas for the domain itself stay on
 * the node they reach. When the set of live nodes changes (a node died,
 * left or joined) moved(ud) runs on every node, on the loop: the module
 * lets go of what is no longer its own (xmppd_cluster_mine) and takes up
 * from storage what now is. Without a cluster every JID is this node's
 * and moved never runs. From load() on, after xmppd_domain_serve; withdrawn
 * when m unloads. 0, or -1 when domain is not served or on OOM. */
int xmppd_cluster_place(xmppd_module *m, const char *domain, void (*moved)(void *ud), void *ud);
/* Is bare (node@domain of a placed domain) placed on this node now? true
 * without a cluster and for JIDs of domains nobody placed. */
bool xmppd_cluster_mine(const char *bare);

#endif
