/* Routing stanzas and reading session state.
 *
 * Stanzas from clients enter through the kernel: `from` stamped, then
 * "stanza-in", "pre-route", then by address:
 *   message/host  message/bare  message/full
 *   presence/host presence/bare presence/full  presence/broadcast (no 'to')
 *   IQ handlers (hooks.h), then iq/host, iq/bare, iq/full.
 * Delivery to a local session fires "deliver" first (data: target session).
 * A message to an account with no available resource fires
 * "message/offline" before the kernel answers service-unavailable.
 * Every message, presence or IQ written to a client stream fires
 * "stanza-out" (all handlers, read-only; data: const size_t * with the
 * serialised size in bytes). */
#ifndef XMPPD_ROUTER_H
#define XMPPD_ROUTER_H

#include <stdbool.h>
#include <stdint.h>
#include "hooks.h"
#include "jid.h"
#include "module.h"

/* data of "presence/broadcast" (a client's presence without 'to'): the
 * session's availability before this stanza, and whether this is its
 * initial presence (RFC 6121 §4.2), which is when offline messages flush. */
typedef struct xmppd_presence_info {
    bool was_available;
    bool initial;
} xmppd_presence_info;

/* data of "message/delivered" (fired after a message was written to local
 * sessions of one account, to its full JID or as the RFC 6121 §8.5.2
 * delivery to its bare JID): the sessions that got it, for modules that
 * copy it to the account's other sessions (XEP-0280 carbons). Borrowed. */
typedef struct xmppd_delivery {
    xmppd_session *const *sessions;
    size_t n;
} xmppd_delivery;

/* Routes a server-generated stanza by its 'to' (which must be set; 'from'
 * must be set by the caller). Borrowed: the caller keeps its reference, and
 * the router may deliver it to several sessions (never change it after).
 * Goes through the same address rules as client stanzas (no pre-route).
 * 0 routed, -1 when the 'to' or 'from' is missing or invalid. */
int xmppd_route(xmppd_host *h, xmppd_stanza *s);

/* Holding a stanza while something loads. A handler of "pre-route",
 * "deliver", "route/remote", "iq/bare/filter", "iq/full" or
 * message|presence /host|bare|full that
 * cannot judge a stanza yet (its data is being read) calls xmppd_hold and
 * returns XMPPD_HANDLED; later it either lets the stanza go on, and
 * routing resumes right after its handler (the handlers before it, and
 * itself, do not see it again), or drops it. The handle keeps the
 * stanza, the session and copies of the addresses.
 *   xmppd_hold(ev): in such a handler only; NULL when the event cannot be
 *     held or on OOM (judge it now, or refuse it).
 *   xmppd_held_event(h): the event as held (stanza, from, to, host,
 *     session; for "deliver", data is the target session); borrowed
 *     until h ends. A session may read closed by then.
 *   xmppd_held_resume(h): routing goes on (a delivery to a session that
 *     closed meanwhile is dropped, as xmppd_session_send does); frees h.
 *   xmppd_held_free(h): drops it (answer the sender first if it needs an
 *     error); frees h.
 * A module resumes or drops what it holds before its unload() ends. */
typedef struct xmppd_held xmppd_held;
xmppd_held *xmppd_hold(const xmppd_event *ev);
const xmppd_event *xmppd_held_event(const xmppd_held *h);
void xmppd_held_resume(xmppd_held *h);
void xmppd_held_free(xmppd_held *h);

/* Bind2 (XEP-0386, ABI 2.5): a "bind2-bound" handler whose answer into
 * <bound/> (ev->data) must be read first (an archive's metadata) calls
 * xmppd_bind2_hold(ev) and returns; the SASL2 <success/> and everything
 * written to the session meanwhile wait, and the client's input is
 * paused, until xmppd_bind2_release(h). The handler appends its answer to
 * the <bound/> element before releasing (it stays valid until then).
 * A "sasl2-inline" handler (ABI 2.8) may hold the same way, answering into
 * <success/> (ev->data) later: Bind2 then runs once every inline hold is
 * released, unless the handler bound the session meanwhile. NULL
 * outside such a handler or on OOM: answer at once. Every hold is
 * released exactly once, soon (the client waits), and before the module's
 * unload() ends; after the stream closed, release only frees h. */
typedef struct xmppd_bind2_wait xmppd_bind2_wait;
xmppd_bind2_wait *xmppd_bind2_hold(const xmppd_event *ev);
void xmppd_bind2_release(xmppd_bind2_wait *h);

/* Sends an IQ request (type get or set, 'from' and 'to' set; an 'id' is
 * set when absent) and calls back exactly once with its answer, never from
 * inside this call: XMPPD_IQ_RESULT or XMPPD_IQ_ERROR with the answer
 * (borrowed for the call; only an answer from the entity asked, to the
 * address that asked, counts), XMPPD_IQ_TIMEOUT after timeout_ms without
 * one, or XMPPD_IQ_CANCELLED (reply NULL) when m unloads first, before its
 * unload(). iq is routed like xmppd_route and stays the caller's. 0, or -1
 * (nothing sent, cb never runs): not a get/set, bad addresses, an id
 * already waiting, OOM, or m unloading. */
enum { XMPPD_IQ_RESULT = 0, XMPPD_IQ_ERROR = 1, XMPPD_IQ_TIMEOUT = 2, XMPPD_IQ_CANCELLED = -2 };
typedef void (*xmppd_iq_cb)(int status, xmppd_stanza *reply, void *ud);
int xmppd_iq_request(xmppd_module *m, xmppd_stanza *iq, uint64_t timeout_ms, xmppd_iq_cb cb, void *ud);

/* Writes s to this session's stream as it is, firing "deliver" (whose
 * handlers may take it over). Borrowed. 0, or -1 when the session is
 * closed (nothing is sent). */
int xmppd_session_send(xmppd_session *sess, xmppd_stanza *s);
/* Writes s without firing "deliver" (for deliver handlers themselves). */
int xmppd_session_write(xmppd_session *sess, xmppd_stanza *s);
/* Calls back once everything written to sess so far has been handed to
 * the kernel's socket (under TLS: encrypted and sent; on WebSocket and
 * BOSH: taken by the HTTP connection), never from inside this call:
 * XMPPD_SENT_OK; XMPPD_SENT_LOST when the connection ended, was lost or
 * was replaced first, or the session has none (hibernated): some of it
 * may not have left; XMPPD_SENT_CANCELLED when m unloads first (while it
 * unloads, before its unload()). For "delete only once it is out":
 * stored messages (mod_offline) survive a crash until the kernel has
 * them. 0, or -1 (OOM, m unloading): cb never runs. ABI 2.5. */
enum { XMPPD_SENT_OK = 0, XMPPD_SENT_LOST = 1, XMPPD_SENT_CANCELLED = -2 };
typedef void (*xmppd_sent_cb)(int status, void *ud);
int xmppd_session_when_sent(xmppd_module *m, xmppd_session *sess, xmppd_sent_cb cb, void *ud);

/* Durability before acknowledgement: a module that takes a stanza from
 * sess and answers for it once its storage write is committed (offline
 * messages) takes a hold on sess and releases it when the write reports
 * (committed, failed or cancelled). Stream management (XEP-0198) answers
 * the client's <r/> only when the holds taken before it are released, so
 * an acknowledged stanza survives a crash (kill -9). The hold keeps a
 * reference on sess; release it exactly once. NULL on OOM or sess NULL
 * (release(NULL) is a no-op). Loop thread. ABI 2.7. */
typedef struct xmppd_commit_hold xmppd_commit_hold;
xmppd_commit_hold *xmppd_session_hold_commit(xmppd_session *sess);
void xmppd_commit_release(xmppd_commit_hold *h);
/* Whether sess has holds not yet released. */
bool xmppd_session_commits_pending(const xmppd_session *sess);
/* Calls back XMPPD_COMMITTED_OK once every hold taken on sess before this
 * call is released (on the next loop turn when none is out), never from
 * inside this call; XMPPD_COMMITTED_CANCELLED when m unloads first (while
 * it unloads, before its unload()). 0, or -1 (OOM, m unloading): cb never
 * runs. ABI 2.7. */
enum { XMPPD_COMMITTED_OK = 0, XMPPD_COMMITTED_CANCELLED = -2 };
typedef void (*xmppd_committed_cb)(int status, void *ud);
int xmppd_session_when_committed(xmppd_module *m, xmppd_session *sess, xmppd_committed_cb cb, void *ud);

/* Sessions are kernel-owned; a handler may use ev->session during the call.
 * To keep one across a callback, take a reference; after the stream closes
 * the session reads as closed and sends are dropped. */
xmppd_session *xmppd_session_ref(xmppd_session *sess);
void xmppd_session_unref(xmppd_session *sess);
bool xmppd_session_closed(const xmppd_session *sess);

/* Session accessors: loop thread, on a session the caller holds (the
 * event's, or a reference). Returned pointers are kernel-owned and valid
 * while the caller holds the session (strings: until it changes them).
 * The full JID; NULL before bind (and after the session left the table). */
const xmppd_jid *xmppd_session_jid(const xmppd_session *sess);
/* The host the client connected to (never NULL). */
xmppd_host *xmppd_session_host(const xmppd_session *sess);
/* Initial presence sent and not yet unavailable (RFC 6121 §4.2). */
bool xmppd_session_available(const xmppd_session *sess);
/* Priority of its last available presence (RFC 6121 §4.7.2.3), -128..127. */
int xmppd_session_priority(const xmppd_session *sess);
/* The last broadcast presence of the session (borrowed, read-only: it may
 * be shared between sessions) or NULL. Its 'from' and 'to' are not
 * guaranteed: a copy sent on sets both. */
xmppd_stanza *xmppd_session_presence(const xmppd_session *sess);
/* Remote address as text, for logs and rate limits. */
const char *xmppd_session_ip(const xmppd_session *sess);
bool xmppd_session_secure(const xmppd_session *sess); /* TLS on */
/* Bytes read from the client so far (after TLS decryption), for rate
 * limits: a module compares the value between two stanzas. */
uint64_t xmppd_session_bytes_in(const xmppd_session *sess);
/* SASL done (the account is known: xmppd_session_user), maybe not bound. */
bool xmppd_session_authenticated(const xmppd_session *sess);
/* A session bound on another node of a cluster (docs/cluster.md): account
 * walks (xmppd_user_sessions, xmppd_session_find) include it so routing and
 * resource limits see the whole cluster, and what is sent to it reaches it
 * through its node. It has no module slots and fires no session events
 * here: state a module keeps for online accounts belongs to the node where
 * the account has a session, so "is it online here" skips remote ones. */
bool xmppd_session_remote(const xmppd_session *sess);
/* The account's localpart after SASL, NULL before. */
const char *xmppd_session_user(const xmppd_session *sess);
/* Per-module-instance slot for session state; NULL until set. The module
 * frees what it stores when "session-closed" fires, and what is left in its
 * unload() (walk with xmppd_host_sessions). A reload drops the old
 * instance's slots after its unload(), or hands them to the new instance
 * when the module has XMPPD_MOD_KEEP_SLOTS (module.h). set with NULL clears;
 * set may silently fail on OOM (get then returns NULL). */
void *xmppd_session_get(const xmppd_session *sess, const xmppd_module *m);
void xmppd_session_set(xmppd_session *sess, const xmppd_module *m, void *data);
/* Ends the stream with a stream error condition (RFC 6120 §4.9.3), e.g.
 * "conflict", "policy-violation"; text may be NULL. Both are written as
 * they are: pass a fixed condition name and XML-escaped text. The session
 * reads as closed at once; "session-closed" fires later, from the loop. */
void xmppd_session_close(xmppd_session *sess, const char *condition, const char *text);

/* Sessions that outlive their connection (XEP-0198 stream management).
 * When the connection of a bound session is lost (the server did not end
 * it: a dropped TCP connection, a read error), "session-detach" fires
 * (first HANDLED wins). A handler returning HANDLED keeps the session
 * hibernated: it stays bound and available, other resources see nothing,
 * and whatever is written to it goes to "session-held" handlers (stanza:
 * the element) instead of a connection, until it is resumed or closed.
 * xmppd_session_close on a hibernated session ends it ("session-closed"
 * fires). */
bool xmppd_session_detached(const xmppd_session *sess);
/* Resumes old (bound, hibernated or with a connection still half-open)
 * on the connection of fresh: an authenticated, not yet bound login of the
 * same account on the same host (typically the session of a <resume/>).
 * The connection carries old from now on, as a bound stream; fresh is
 * closed quietly (it was never bound); a connection old still had is
 * closed with <conflict/>. 0, or -1 when the two do not fit (nothing
 * changes). */
int xmppd_session_resume(xmppd_session *fresh, xmppd_session *old);

/* Calls fn for every bound session of node@host (all resources); stops
 * early when fn returns nonzero. Returns the number of sessions visited. */
int xmppd_user_sessions(xmppd_host *h, const char *node,
                        int (*fn)(xmppd_session *s, void *ud), void *ud);
/* Calls fn for every bound session of host h (NULL: of every host), in no
 * particular order; stops early when fn returns nonzero. fn may close
 * sessions. Returns the number of sessions visited. For work over all
 * sessions (a module's unload() freeing its session slots, statistics). */
int xmppd_host_sessions(xmppd_host *h, int (*fn)(xmppd_session *s, void *ud), void *ud);
/* The session bound to this full JID, or NULL. */
xmppd_session *xmppd_session_find(const xmppd_jid *full);

/* Services on domains of their own (ABI 2.2): a module serves a domain
 * that is not a host, e.g. conference.example.org for group chat,
 * pubsub.example.org, upload.example.org. Every stanza the router sees for
 * that domain or any JID at it (from local clients, other modules,
 * external components and other servers; pre-route has run for client
 * stanzas) goes to fn, and nowhere else: no hooks, no IQ handlers. fn gets
 * an event named "message/domain", "presence/domain" or "iq/domain" with
 * host = m's host (NULL for a global module), session = the sender's
 * session when it is a local client (else NULL), stanza, from and to
 * (to->domain is the served domain). fn answers what needs an answer
 * (xmppd_reply, xmppd_reply_error: replies come from the address asked)
 * and returns HANDLED; PASS makes the kernel answer as for an absent
 * component (service-unavailable for messages and IQs, presence dropped),
 * FAIL an IQ get/set with internal-server-error. Stanzas the service sends
 * (xmppd_route, 'from' at its domain) are routed like any other. The
 * domain also counts as served locally for server-to-server streams.
 *
 * From load() on; domain is prepared (nameprep) and copied. 0, or -1 when
 * it is not a valid domain, is a host or a configured component, or
 * another module serves it (logged); a newer instance of the same module
 * (a reload) takes the domain over. Released when m unloads. */
int xmppd_domain_serve(xmppd_module *m, const char *domain, xmppd_handler fn, void *ud);

#endif
