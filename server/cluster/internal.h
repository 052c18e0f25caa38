/* The cluster layer's parts (cluster.h): node.c (membership, heartbeat,
 * status), link.c (signed frames), queue.c (each node's Redis stream of
 * frames: delivery or a bounce), registry.c (the session registry and
 * remote sessions). */
#ifndef XMPPD_CLUSTER_INTERNAL_H
#define XMPPD_CLUSTER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "cluster/redis.h"
#include "core/config.h"

/* Another live node, as seen at the last heartbeat. */
typedef struct peer {
    char *name;
    char *version;
    long long sessions;
    bool synced;   /* its sessions were loaded since our subscriber came up */
    bool seen;     /* listed at the current heartbeat */
    char *hosts;   /* the hosts it serves (sorted, space-separated), or NULL */
} peer;

typedef struct cluster {
    /* our copy of the configuration's section (a reload frees the
     * configuration; reload.c applies the timing of a new one); NULL when
     * no cluster runs */
    const cluster_conf *conf;
    cluster_conf copy;
    redis_servers srv;
    redis_conn *cmd;           /* commands */
    redis_conn *sub;           /* SUBSCRIBE: the reg channel */
    redis_conn *reader;        /* XREADGROUP BLOCK on our stream */
    char *k_nodes;             /* set of node names */
    char *k_node;              /* our registration: expires without heartbeats */
    char *k_sessions;          /* our sessions: full JID -> "PRIO AVAIL\n<presence/>" */
    char *ch_reg;              /* registry changes, to every node */
    char *client_name;         /* "NAME:NODE": our connections' names in Redis */
    char *k_queue;             /* our stream: frames for us */
    struct event *beat;
    char *hosts;               /* our hosts, sorted, space-separated */
    bool checked;              /* the live nodes serve our hosts: we registered */
    bool checking;             /* a hosts check awaits its answer */
    bool starting;             /* cluster_start waits for the check */
    char *refused;             /* why the check failed (cluster_start's error) */
    peer *peers;
    size_t n_peers;
} cluster;

extern cluster g_cluster;

/* "NAME:" + a + b, malloc'd (NULL on OOM). */
char *cluster_key(const char *a, const char *b);

/* ---- link.c ---- */
/* kind/arg/body (body may be binary, blen bytes) with hop count hops as a
 * frame signed with the cluster's secret, malloc'd (*len bytes), or NULL
 * on OOM. */
char *link_frame(const char *kind, const char *arg, const char *body, size_t blen, int hops,
                 size_t *len);
/* The hop count of a frame made now (one more than the frame being
 * handled, if any). */
int link_hops(void);
/* Publishes a frame on channel (every node). 0 or -1 (Redis down, OOM). */
int link_publish(const char *channel, const char *kind, const char *arg, const char *body,
                 size_t blen);
/* Into node's stream (queue.c); st (may be NULL): the stanza body is, for
 * sending a fan-out as one frame. 0 or -1 (Redis down, OOM). */
int link_send(const char *node, const char *kind, const char *arg, const char *body, size_t blen,
              const struct xmppd_stanza *st);
/* A verified frame's parts (all borrowed for the call). */
typedef void (*link_handler)(void *ud, const char *kind, const char *node, const char *arg,
                             const char *body, size_t blen);
/* Verifies and parses a frame (where: for logs) and calls fn with the
 * frame's hop count in force; false (logged) when it is forged, malformed
 * or has gone round too often. */
bool link_open(const char *where, const char *msg, size_t len, link_handler fn, void *ud);
/* The subscriber's message callback (redis_conn_ops.message). */
void link_on_message(void *ud, const char *channel, size_t clen, const char *msg, size_t len);

/* ---- queue.c ---- */
/* Connects the reader of our stream (its pending entries first). 0 or -1
 * on OOM. */
int queue_start(void);
void queue_stop(void);
/* A frame for node, sent at the end of this loop turn with the others for
 * node in one XADD; "route" frames of copies of one fan-out (st made with
 * xmppd_stanza_copy_to) become one "routes" frame naming the recipients.
 * 0 or -1 (OOM). */
int queue_put(const char *node, const char *kind, const char *arg, const char *body, size_t blen,
              const struct xmppd_stanza *st, int hops);
/* Every heartbeat: frames we sent that their node has not taken within
 * cluster.delivery_timeout are taken back and bounced (registry_unsent). */
void queue_check(void);
/* node was found dead: its stream is checked too for a while, so frames
 * whose sender died as well are bounced. */
void queue_watch(const char *node);

/* ---- registry.c ---- */
void registry_start(void);
void registry_stop(void);
/* A verified frame from node (never us). */
void registry_frame(const char *kind, const char *node, const char *arg, const char *body,
                    size_t blen);
/* HGETALL of node's sessions hash: its remote sessions become exactly those. */
void registry_load(const char *node, const struct redisReply *r);
/* node died or left: its remote sessions go; with closed, "session-closed"
 * fires for each first (the node that found it dead speaks for it). */
void registry_drop_node(const char *node, bool closed);
/* Redis is back: our sessions are written again. */
void registry_republish(void);
/* A frame we sent to node that it did not take in time (queue.c): its
 * stanza is bounced or, for an account, handled here. */
void registry_unsent(const char *node, const char *kind, const char *arg, const char *body,
                     size_t blen);
/* st is the stanza a frame from another node brought, being handled. */
bool registry_arrived(const xmppd_stanza *st);
/* Remote sessions of node now (for logs and tests). */
size_t registry_count(const char *node);

/* ---- cstate.c ---- */
/* The SDK calls of api/xmppd/cluster.h reach the cluster (session_cluster). */
void cstate_start(void);
void cstate_stop(void);
/* Redis is back: invalidations made while it was away are sent. */
void cstate_redis_up(void);
/* An "inval" frame that did not leave (or was not taken): kept for then. */
void cstate_unsent(const char *bare, const char *module, size_t mlen);
/* An "inval" frame from node: "cluster-invalidate" fires for bare's module
 * (body, blen bytes). */
void cstate_inval(const char *node, const char *bare, const char *body, size_t blen);

/* ---- reload.c ---- */
/* The live nodes' hosts against cfg's (reload.c): NULL when they match
 * (or no other node is known), else why not (malloc'd). */
char *node_hosts_mismatch(const xmppd_config *cfg);

/* ---- pdir.c: the directory of placed JIDs (session/place.h dir_*) ---- */
void pdir_start(void);
void pdir_stop(void);
void pdir_publish(const char *bare, const char *value);
int pdir_read(const char *domain,
              void (*done)(void *req, bool ok, size_t n, const char *const *jids,
                           const char *const *values),
              void *req);
/* Redis is back (or we registered): our entries are written anew. */
void pdir_republish(void);
/* node died: the node that speaks for it deletes its hash. */
void pdir_forget(const char *node);

/* ---- place.c: rooms and components across nodes ---- */
void place_start(void);
void place_stop(void);
/* The peers changed (at a heartbeat, or one left): when the set of live
 * nodes is not what it was, placed JIDs move (place_moved). */
void place_nodes(void);
/* node's components hash, read with its sessions. */
void place_load(const char *node);
/* node died or left (closed: we speak for it and delete its hash). */
void place_forget(const char *node, bool closed);
/* Redis is back or we joined: our components are written again. */
void place_republish(void);
/* A frame of place.c's kinds ("place", "comp", "uncomp"): true when it
 * was one. */
bool place_frame(const char *kind, const char *node, const char *arg, const char *body,
                 size_t blen);
/* The component domains attached to node (this node's own included), for
 * `xmppctl cluster status`: fn once per domain, in no particular order. */
void place_components_of(const char *node, void (*fn)(const char *domain, void *ud), void *ud);
/* Was st brought by a "place" frame (routed here now)? */
bool place_arrived(const xmppd_stanza *st);
/* One we sent that node did not take in time: true when it was ours. */
bool place_unsent(const char *node, const char *kind, const char *arg, const char *body,
                  size_t blen);

/* ---- smrep.c: stream-management replicas (api/xmppd/cluster.h) ---- */
int smrep_start(void);
void smrep_stop(void);
/* The replicas changed in this turn, on c, before the reader acknowledges
 * the frames it routed (queue.c). */
void smrep_before_ack(redis_conn *c);
/* Redis is back: every replica is written whole. */
void smrep_republish(void);
/* Frames "smrel" (node resumes our session id) and "smgone" (the node we
 * asked let it go). */
void smrep_release(const char *id, const char *node);
void smrep_gone(const char *id);
/* node was found dead by us: its replicas are ours to watch; those not
 * resumed within their ttl fire "replica-expired" here. */
void smrep_orphans(const char *node);

/* ---- node.c ---- */
/* cfg's hosts, sorted, space-separated (malloc'd, NULL on OOM). */
char *cluster_hosts_of(const xmppd_config *cfg);
/* A peer announced it is leaving, or was found dead (closed: by us, who
 * then speak for its sessions). */
void node_forget(const char *name, bool closed);
/* A peer wrote its sessions anew: load them again at the next heartbeat. */
void node_resync(const char *name);

#endif
