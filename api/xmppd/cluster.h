/* Clustering, as modules see it (docs/cluster.md).
 *
 * Several nodes may serve one domain. A module keeps state in memory for
 * the accounts online on its node; a session bound on another node is a
 * remote session here (xmppd_session_remote) with no module slots. The
 * calls below let a module's instances on different nodes agree on that
 * state. Every call works the same on a single server (no cluster): marks
 * are kept on the session, invalidations go nowhere. */
#ifndef XMPPD_CLUSTER_API_H
#define XMPPD_CLUSTER_API_H

#include <stdbool.h>

#include "module.h"
#include "stanza.h"

/* ---- per-session and per-account state across nodes (cstate) ---------------------- */

/* This node's name (cluster.node), or NULL when no cluster runs. Modules
 * use it to skip shortcuts that only hold on one node (a count of local
 * sessions with some state, say). */
const char *xmppd_cluster_node(void);

/* Marks: a few short names (letters, digits and ".:-_", at most 64
 * characters) a module sets on a local session for what the other nodes
 * must know of it ("carbons enabled", "asked for the roster"). They travel
 * with the session's registry entry, so on every node the session (remote
 * there) answers xmppd_session_marked as on its own node, in order with the
 * stanzas its node sends. Setting one a session already has (or clearing
 * one it has not) changes nothing. 0, or -1 on a bad name, OOM or a remote
 * session (its own node marks it). */
int xmppd_session_mark(xmppd_session *s, const char *mark, bool on);
bool xmppd_session_marked(const xmppd_session *s, const char *mark);

/* Was st routed here by another node (handled now because a frame
 * brought it)? Such a stanza passed its sender's node first: a client's
 * stanza its outbound rules there ("pre-route"), an error the decision
 * that made it. false on a single server. */
bool xmppd_cluster_arrived(const xmppd_stanza *st);

/* Invalidation: m changed (and stored) what it keeps for the account
 * node@(m's host). The other nodes fire "cluster-invalidate" on that host
 * with ev->to the account's bare JID and ev->data the module's name (const
 * char *): the instance of the same module there drops or reloads its
 * copy. Call it once the change is stored, so a node that reloads reads
 * it. Frames to each node travel in order with the stanzas this node
 * sends it afterwards. 0 (also without a cluster), -1 on bad arguments or
 * OOM. */
int xmppd_cluster_invalidate(xmppd_module *m, const char *node);

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
