/* Sessions, the session table and the router.
 *
 * A session (the xmppd_session modules see through api/xmppd/router.h) is
 * the logical client: its host, account, bound JID, presence and module
 * slots. It does not know how its bytes travel: a transport (c2s over TCP
 * in c2s/, later WebSocket and BOSH) owns the connection and is reached
 * through session_transport, so this layer never calls upward.
 *
 * Ownership: session_new returns a session with one reference, which the
 * transport's connection holds until it calls session_detach and drops it.
 * Anyone else keeping a session takes a reference (xmppd_session_ref). The
 * connection pointer is the transport's; the session only borrows it until
 * session_detach. */
#ifndef XMPPD_SESSION_H
#define XMPPD_SESSION_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

/* What the session layer needs from the connection that carries it. */
typedef struct session_transport {
    const char *name; /* "c2s", ... for logs */
    /* Queues one element (serialised once); *len_r gets its size. 0, or -1
     * when nothing was queued (closing, OOM). */
    int (*write)(void *conn, const xmppd_stanza *st, size_t *len_r);
    /* Stream error (condition NULL: clean close) and the closing handshake;
     * the transport calls session_detach later, from the loop. */
    void (*close)(void *conn, const char *condition, const char *text);
    /* Bytes read from the client so far (after TLS). */
    uint64_t (*bytes_in)(void *conn);
    /* conn now carries session now (a resumption, xmppd_session_resume):
     * the transport takes a reference on now, drops the one it held, and,
     * when now is bound, treats its stream as bound. */
    void (*rebind)(void *conn, xmppd_session *now);
    /* Bind2 (xmppd_bind2_hold), may be NULL: while conn's "bind2-bound"
     * handlers run, holds its SASL2 <success/> and returns a token for
     * bind2_release; NULL when it cannot. */
    void *(*bind2_hold)(void *conn);
    void (*bind2_release)(void *token);
    /* Output position in bytes: written so far (sent false), or handed to
     * the kernel's socket (sent true, never ahead of the truth). The
     * transport calls session_sent_progress when the latter moves. */
    uint64_t (*out_pos)(void *conn, bool sent);
} session_transport;

typedef struct session_sent_wait session_sent_wait; /* sent.c */
typedef struct session_commits session_commits;     /* committed.c */

struct module_slot {
    const xmppd_module *m;
    void *data;
};

struct xmppd_session {
    int refs;
    const session_transport *tr;
    void *conn;                 /* the transport's; NULL once detached */
    const char *transport;      /* static: "c2s", "websocket", "bosh" (metrics) */
    bool closing;               /* closing or ended: reads as closed */
    bool hibernated;            /* its connection is gone, a module keeps it (XEP-0198) */
    char ip[INET6_ADDRSTRLEN];
    char tag[LOG_CONN_TAG_MAX]; /* "ip #N": its connection in log lines */
    bool secure;                /* TLS on */
    bool authenticated;
    bool in_sm;                 /* registered in the host's session table */
    bool bound;                 /* a resource was bound at some point */
    /* bound on another node of the cluster (cluster/): its transport
     * forwards what is written to it to that node, which fires the
     * delivery hooks; it never detaches and fires no session events here */
    bool remote;

    xmppd_host *host;           /* from the first header's 'to' */
    char *user;                 /* nodeprepped, after SASL */
    xmppd_jid *jid;             /* full JID after bind */

    /* presence (RFC 6121 §4) */
    bool available;
    int priority;
    xmppd_stanza *presence;

    struct module_slot *slots;
    size_t n_slots;
    /* xmppd_session_mark (cstate.c): space-separated names, NULL when none;
     * a remote session's are its node's */
    char *marks;

    session_sent_wait *sent_waits; /* xmppd_session_when_sent, in order (sent.c) */
    session_commits *commits;      /* storage holds and their waiters, from the first hold (committed.c) */

    /* links in the host's per-user list (sm.c) */
    xmppd_session *next_resource;
};

/* ---- session.c: lifetime and transport ------------------------------------ */
/* A new session carried by conn; one reference, the connection's. NULL on
 * OOM. */
xmppd_session *session_new(const session_transport *tr, void *conn, const char *ip);
/* The connection is gone: the session stops writing. A bound session whose
 * connection was lost (the server did not close it: s->closing is false)
 * is offered to "session-detach" handlers, which may keep it hibernated
 * (XEP-0198); otherwise it leaves the session table and "session-closed"
 * fires when it was bound. The caller then drops the connection's
 * reference. */
void session_detach(xmppd_session *s);
/* Writes st to the connection (nothing once closing); a stanza written to
 * a bound session fires "stanza-out". */
void session_write(xmppd_session *s, const xmppd_stanza *st);
/* Ends the stream (see session_transport.close); no-op once closing. */
void session_close(xmppd_session *s, const char *condition, const char *text);
/* Shutdown: ends every hibernated session ("session-closed" fires). */
void session_shutdown_all(void);
/* Registers the session layer with the core (host teardown, reload slot
 * hand-over) and the router's kernel hooks. Once per process. */
void session_layer_init(void);

/* ---- sent.c: waiting for output to reach the socket ---------------------- */
/* The transport's sent position moved: answers the waiters it reached. */
void session_sent_progress(xmppd_session *s);
/* The connection is going (or changing): waiters it reached get OK, the
 * others XMPPD_SENT_LOST. */
void session_sent_lost(xmppd_session *s);

/* ---- sm.c: the bound resources of each account ---------------------------- */
/* What the cluster layer (cluster/) hears about local sessions: bound (in
 * the table), unbound (out of it), and a new own presence. Each may be
 * NULL; remote sessions are never reported. */
typedef struct session_observer {
    void (*bound)(xmppd_session *s);
    void (*unbound)(xmppd_session *s);
    void (*presence)(xmppd_session *s); /* also: its marks changed (cstate.c) */
} session_observer;
/* Registered at start-up by a layer above; NULL: none (one node). */
void session_set_observer(const session_observer *ob);
extern const session_observer *g_session_observer;

/* Binds s as node@host/resource; an existing session with that resource
 * is replaced (it gets <conflict/>). -1 when max_resources is reached. */
int sm_bind(xmppd_session *s, const char *resource);
void sm_unbind(xmppd_session *s);
/* Bound local sessions of h (NULL: every host). */
size_t sm_count(const xmppd_host *h);
/* The session table of h (freed with the host). */
void sm_host_free(xmppd_host *h);
/* Reload: the session slots of instance `from` pass to `to`, the instance
 * replacing it (where `to` has none of its own); to NULL drops them (after
 * an unload, so a later instance at the same address never sees them). */
void sm_slots_move(const xmppd_module *from, const xmppd_module *to);

/* ---- router.c ---------------------------------------------------------------- */
/* A stanza from a bound client session; from already stamped. */
void router_from_client(xmppd_session *s, xmppd_stanza *st);
/* The rest of router_from_client for a checked stanza: "pre-route", then
 * by address (ev: session, stanza, from, to set; changed on the way). */
void router_pre_route(xmppd_event *ev);
/* The error reply to orig (xmppd_stanza_error_reply); a message error keeps
 * the original payload (RFC 6120 §8.3.1) so the sender's client can tell
 * which message failed. New tree, caller owns; NULL on OOM. */
xmppd_stanza *router_error_reply(const xmppd_stanza *orig, const char *type, const char *cond,
                                 const char *text);

/* ---- cstate.c: per-session and per-account state across nodes -------------- */
/* What the cluster layer (cluster/) offers the SDK calls of
 * api/xmppd/cluster.h; registered at its start, NULL when it stops. */
typedef struct session_cluster {
    const char *node; /* this node's name */
    /* the other nodes drop module's state for account bare; 0 or -1 */
    int (*invalidate)(xmppd_host *h, const char *bare, const char *module);
    /* ev, an IQ answer, goes to node (which asked): true when sent */
    bool (*answer)(const char *node, xmppd_event *ev);
    /* st came in a frame from another node and is being handled */
    bool (*arrived)(const xmppd_stanza *st);
} session_cluster;
void session_set_cluster(const session_cluster *c);
extern const session_cluster *g_session_cluster;
/* A remote session's marks as its node published them ("a b", may be
 * empty or NULL). */
void session_marks_set(xmppd_session *s, const char *marks);
/* The IQ ids of xmppd_iq_request carry the node that asked, so an answer
 * that reaches another node goes back there (iq_request.c): the node's
 * name from an id, into buf; false when id names none. */
bool session_id_node(const char *id, char *buf, size_t size);

/* iq_request.c: an IQ result or error answering a request of
 * xmppd_iq_request (same id, from the entity asked, to the asker) is
 * taken: true. Called before the IQ is delivered. */
bool iq_requests_answer(xmppd_event *ev);

/* Routes for domains that are not local hosts, registered by the layers
 * above (they are called, never call back into registration):
 * - components: NONE when no component serves to's domain; DONE when the
 *   stanza was written (or dropped by rule); OFFLINE when the component is
 *   configured but not connected (the router bounces service-unavailable);
 * - remote (s2s): true when the stanza was taken (sent, queued or bounced
 *   by s2s itself); false: remote-server-not-found. */
enum { ROUTE_NONE = 0, ROUTE_DONE, ROUTE_OFFLINE };
/* The cluster (cluster/): a stanza for an account of a local host (ev->to
 * has a node) is offered before any hook runs; true when it was taken (it
 * is routed on the node where the account's sessions are). */
void router_set_cluster_route(bool (*fn)(xmppd_event *ev));
void router_set_component_route(int (*fn)(const xmppd_jid *to, xmppd_stanza *st));
void router_set_remote_route(bool (*fn)(xmppd_event *ev));

#endif
