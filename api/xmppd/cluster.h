/* Clustering, as modules see it (docs/cluster.md).
 *
 * Several nodes may serve one domain. A module keeps state in memory for
 * the accounts online on its node; a session bound on another node is a
 * remote session here (xmppd_session_remote) with no module slots. The
 * calls below let a module's instances on different nodes agree on that
 * state. Every call works the same on a single server (no cluster): marks
 * are kept on the session, invalidations go nowhere, placement says
 * "mine", and replicas are not made (NULL, or a failure status). */
#ifndef XMPPD_CLUSTER_API_H
#define XMPPD_CLUSTER_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
/* A service at its own domain (ABI 2.8; a pubsub service, XEP-0060):
 * the domain itself and every JID at it live on one live node, the one
 * rendezvous hashing of the domain's name picks, as above (stanzas for the
 * domain go there too). For a module that keeps the whole service's state
 * in memory: it holds it only while xmppd_cluster_mine(domain). 0, or -1
 * when domain is not served or on OOM. */
int xmppd_cluster_place_service(xmppd_module *m, const char *domain, void (*moved)(void *ud),
                                void *ud);
/* Is bare (node@domain of a placed domain, or a domain placed whole) placed
 * on this node now? true without a cluster and for JIDs of domains nobody
 * placed. */
bool xmppd_cluster_mine(const char *bare);

/* ---- Directory of placed JIDs (issue 20, rooms; ABI 2.8) ----------------------------- *
 *
 * For answers about a placed domain as a whole (a room service's room
 * list, its room counts): each node lists the JIDs of the domain it holds,
 * each with a short value, and any node reads every live node's list.
 * The lists live in Redis (hash NAME:placed:NODE, one per node), written
 * in order with everything else the node sends Redis, written again when
 * Redis comes back, and dropped with their node when it dies. */

/* Lists bare (a JID with a localpart of a domain m placed) as held here,
 * with value (at most 4096 bytes, copied); value NULL takes it out. An
 * entry goes when m unloads (a newer instance's own entries stay). Without
 * a cluster it is kept here only. 0, or -1 on bad arguments or OOM. */
int xmppd_cluster_publish(xmppd_module *m, const char *bare, const char *value);

enum { XMPPD_DIR_OK = 0, XMPPD_DIR_ERROR = 1, XMPPD_DIR_CANCELLED = -2 };
/* jids and values (borrowed for the call) of every live node for the
 * domain, sorted by JID (byte order), each JID once (a JID two nodes list
 * for a moment, while it moves, comes with one of the values); n 0 unless
 * OK. ERROR: Redis failed meanwhile. CANCELLED: m unloads first. */
typedef void (*xmppd_cluster_dir_cb)(int status, size_t n, const char *const *jids,
                                     const char *const *values, void *ud);
/* Reads the directory of domain (placed by m); cb runs once, never from
 * inside this call. 0, or -1 (no cluster runs, Redis is away, domain is
 * not placed by m, OOM): cb never runs, and the module answers from what
 * this node holds. */
int xmppd_cluster_directory(xmppd_module *m, const char *domain, xmppd_cluster_dir_cb cb, void *ud);

/* ---- Replicas: session state that outlives its node (XEP-0198 resumption
 * across nodes; issue 20, part "csm", ABI 2.7) ----
 *
 * A module keeps a replica of a session's stream-management state in
 * Redis while the session runs, so that another node can resume the
 * session when this one dies: the count of stanzas handled from the
 * client, and each stanza sent to it until the client acknowledges it.
 * Writes are batched and pipelined: what a replica changes in one loop
 * turn leaves in one write with every other replica's changes (for a
 * stanza that came from another node, before that node's frame is
 * acknowledged in Redis, so a frame taken by a node that then dies is in
 * the replica or is bounced by its sender).
 *
 * id: the stream-management id (letters, digits, '-', '_'; at most 64).
 * The replica lives in Redis for ttl_ms after the last write or
 * refresh (the node refreshes it while the session lives). */
typedef struct xmppd_replica xmppd_replica;

/* release(ud): another node resumes this session (its client came back
 * there): the module ends the session here quietly, without re-routing
 * what it holds and with xmppd_replica_free(r, false). NULL when no
 * cluster runs, or on OOM (the session is then resumable here only). */
xmppd_replica *xmppd_replica_new(xmppd_module *m, xmppd_session *sess, const char *id,
                                 uint64_t ttl_ms, void (*release)(void *ud), void *ud);
/* Stanzas handled from the client so far (XEP-0198 h, inbound). */
void xmppd_replica_set_in(xmppd_replica *r, uint32_t in_h);
/* A stanza sent to the client, number seq (its h once acknowledged). */
void xmppd_replica_push(xmppd_replica *r, uint32_t seq, const xmppd_stanza *st);
/* The client acknowledged the n oldest stanzas pushed: they go. */
void xmppd_replica_drop(xmppd_replica *r, size_t n);
/* Everything pushed goes (the module is about to push its queue again). */
void xmppd_replica_restart(xmppd_replica *r);
/* The session ended here: erase (its state is gone from Redis: it ended
 * for good) or not (another node took it over, or the module unloads
 * while another instance goes on). NULL: nothing. */
void xmppd_replica_free(xmppd_replica *r, bool erase);

/* A replica taken over by this node (xmppd_replica_take): borrowed for
 * the callback. */
typedef struct xmppd_replica_state {
    const char *jid;                /* the session's full JID */
    uint32_t in_h;                  /* stanzas handled from its client */
    uint64_t ttl_ms;                /* as given to xmppd_replica_new */
    size_t n;                       /* stanzas not acknowledged, oldest first */
    const uint32_t *seq;            /* their numbers */
    xmppd_stanza *const *stanzas;
    int priority;                   /* its last presence (RFC 6121 §4.7.2.3) */
    xmppd_stanza *presence;         /* NULL when it was not available */
} xmppd_replica_state;

enum { XMPPD_REPLICA_FOUND = 0, XMPPD_REPLICA_NONE = 1, XMPPD_REPLICA_ERROR = 2,
       XMPPD_REPLICA_CANCELLED = -2 };
typedef void (*xmppd_replica_cb)(int status, const xmppd_replica_state *st, void *ud);
/* Takes over the replica id of the account user@host for this node:
 * FOUND (st set; it is this node's now: the old node, if alive, ended its
 * session first), NONE (no such replica, another account's, or its node
 * did not let it go), ERROR (Redis failed meanwhile), or CANCELLED when m
 * unloads first. Never from inside this call. 0, or -1 (no cluster, Redis
 * away, OOM): cb never runs. */
int xmppd_replica_take(xmppd_module *m, xmppd_host *host, const char *user, const char *id,
                       xmppd_replica_cb cb, void *ud);
/* fresh (an authenticated, unbound login of the same account, typically
 * the one that sent <resume/>) becomes the session st describes: bound
 * to st->jid (an older session with that resource, here or on another
 * node, ends with <conflict/>), "resource-bind" and "resource-bound" as
 * at a bind. Its presence is restored by xmppd_replica_announce. 0, or
 * -1 (refused by a resource-bind handler or max_resources; nothing
 * changed). */
int xmppd_replica_adopt(xmppd_session *fresh, const xmppd_replica_state *st);
/* The adopted session's last presence, sent again as its initial
 * presence (RFC 6121 §4.2: to its contacts, probes, offline messages),
 * for contacts that were told it went unavailable when its node died. No-op
 * when it was not available. */
void xmppd_replica_announce(xmppd_session *sess, const xmppd_replica_state *st);

#endif
