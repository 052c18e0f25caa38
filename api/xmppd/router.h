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

/* Routes a server-generated stanza by its 'to' (which must be set; 'from'
 * must be set by the caller). Borrowed: the caller keeps its reference, and
 * the router may deliver it to several sessions (never change it after).
 * Goes through the same address rules as client stanzas (no pre-route).
 * 0 routed, -1 when the 'to' or 'from' is missing or invalid. */
int xmppd_route(xmppd_host *h, xmppd_stanza *s);

/* Serving a domain that is not a host: a module's service at an address
 * such as "pubsub.example.org", "conference.example.org" or
 * "upload.example.org". From load() on, every stanza routed to domain or to
 * any JID at it (from local clients after "pre-route", from modules with
 * xmppd_route, from components and other servers) is handed to fn with an
 * event named "message/domain", "presence/domain" or "iq/domain": host is
 * m's host (NULL for a global module), session the sender's session when it
 * is a local client (else NULL), stanza, from and to borrowed for the call.
 * fn returns XMPPD_HANDLED (answered or consumed), XMPPD_PASS (the kernel
 * answers messages and IQ get/set with service-unavailable and drops
 * presence) or XMPPD_FAIL (an IQ get/set gets internal-server-error). The
 * service sends with xmppd_route, 'from' at its domain; other servers may
 * open streams to it like to a host (TLS certificates and DNS for the name
 * are the operator's). Only the stanzas' routing is provided: disco items
 * listing the service are the module's (the "disco-items" event).
 * domain is nameprepped; a host, a configured component or a domain
 * another module serves is refused. 0, or -1 (logged). Released when m
 * unloads; during a reload the new instance may serve the same domain and
 * takes it over (the old one gets it back if the new one fails to load). */
int xmppd_domain_serve(xmppd_module *m, const char *domain, xmppd_handler fn, void *ud);

/* Writes s to this session's stream as it is, firing "deliver" (whose
 * handlers may take it over). Borrowed. 0, or -1 when the session is
 * closed (nothing is sent). */
int xmppd_session_send(xmppd_session *sess, xmppd_stanza *s);
/* Writes s without firing "deliver" (for deliver handlers themselves). */
int xmppd_session_write(xmppd_session *sess, xmppd_stanza *s);

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
/* The last broadcast presence of the session (borrowed) or NULL. */
xmppd_stanza *xmppd_session_presence(const xmppd_session *sess);
/* Remote address as text, for logs and rate limits. */
const char *xmppd_session_ip(const xmppd_session *sess);
bool xmppd_session_secure(const xmppd_session *sess); /* TLS on */
/* Bytes read from the client so far (after TLS decryption), for rate
 * limits: a module compares the value between two stanzas. */
uint64_t xmppd_session_bytes_in(const xmppd_session *sess);
/* SASL done (the account is known: xmppd_session_user), maybe not bound. */
bool xmppd_session_authenticated(const xmppd_session *sess);
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

#endif
