/* Network side of the kernel: the event loop, TLS, listeners, client
 * streams, the router and the session manager. */
#ifndef XMPPD_NET_H
#define XMPPD_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include "core.h"

struct event_base;
typedef struct ssl_st SSL;

/* ---- loop.c ---- */
int loop_init(void);              /* 0 or -1; also starts the worker pool */
void loop_run(void);              /* until loop_break */
void loop_break(void);
void loop_free(void);             /* joins workers */
struct event_base *loop_base(void);

/* ---- tls.c ---- */
/* Builds each host's SSL_CTX from its tls_conf (SNI picks one; the first
 * host's is the default). 0, or -1 with a one-line message in err. */
int tls_start(char *err, size_t errlen);
void tls_stop(void);
/* A server-side SSL for a new connection, or NULL when no host has a cert. */
SSL *tls_new_server_ssl(void);
/* Channel binding data of an established connection (RFC 5929, RFC 9266).
 * type: "tls-exporter" (TLS 1.3 only) or "tls-server-end-point". Writes up
 * to *len bytes; 0 or -1 when the type is not available on this connection. */
int tls_channel_binding(SSL *ssl, const char *type, unsigned char *out, size_t *len);
/* s2s: a server-side SSL that asks the peer for its certificate (checked
 * later with tls_peer_verify); a client SSL for an outgoing stream from
 * local (its certificate presented when it has one) with SNI = remote and,
 * for direct TLS, ALPN "xmpp-server". NULL on failure. */
SSL *tls_new_s2s_server_ssl(void);
SSL *tls_new_client_ssl(const char *local, const char *remote, bool direct_tls);
/* Does the peer's certificate chain validate against the trust store (the
 * system's plus s2s.ca_file) with domain as reference identity (RFC 6125
 * DNS-ID)? On false, *why says why (static text). */
bool tls_peer_verify(SSL *ssl, const char *domain, const char **why);

/* ---- listener.c ---- */
int listeners_start(const xmppd_config *cfg, char *err, size_t errlen);
void listeners_stop(void);
/* Connection accounting per IP (limits.connections_per_ip). */
bool conn_ip_acquire(const char *ip);
void conn_ip_release(const char *ip);

/* ---- c2s.c ---- */
void c2s_accept(int fd, const struct sockaddr *sa, int socklen, bool direct_tls);
/* Sends <system-shutdown/> to every stream and closes it. */
void c2s_shutdown_all(void);

/* ---- s2s: server-to-server streams (s2s*.c, dialback.c, resolver.c) ---- */
void s2s_accept(int fd, const struct sockaddr *sa, int socklen, bool direct_tls);
/* Resolver and dialback secret from g_server.cfg. 0, or -1 with a message. */
int s2s_start(char *err, size_t errlen);
/* SIGHUP: the resolver follows the new s2s.dns_servers. */
void s2s_reload(void);
/* Sends <system-shutdown/> on every s2s stream, waits for them, frees all. */
void s2s_shutdown_all(void);
/* Router: a stanza for a domain we do not serve (ev->to, ev->from set).
 * true when taken (sent, queued, or bounced by s2s itself). */
bool s2s_out_route(xmppd_event *ev);
/* ---- component.c: XEP-0114 external components ---- */
void component_accept(int fd, const struct sockaddr *sa, int socklen);
/* For the router: a stanza addressed to `to` (already parsed; not a local
 * host). NONE: no component serves that domain; DONE: written to the
 * connected component (or a presence dropped while it is offline);
 * OFFLINE: configured but not connected, the router answers
 * service-unavailable. st is borrowed. */
enum { COMPONENT_NONE = 0, COMPONENT_DONE, COMPONENT_OFFLINE };
int component_route(const xmppd_jid *to, xmppd_stanza *st);
/* After SIGHUP: streams of components no longer configured get <host-gone/>. */
void component_reconfigured(void);
/* Sends <system-shutdown/> to every component stream and closes it. */
void component_shutdown_all(void);

/* ---- domains.c: domains served by modules (xmppd_domain_serve) ---- */
/* The served domain's own (nameprepped) name, or NULL when no loaded module
 * serves domain: for s2s, which accepts streams and stanzas for it. */
const char *domains_served(const char *domain);
/* For the router: hands ev (to, from, stanza set; not a local host) to the
 * module serving ev->to->domain. NONE: no module serves it; DONE: handled;
 * PASSED: the module left it to the kernel's default answer; FAILED: the
 * handler failed (internal-server-error to an IQ get/set). */
enum { DOMAIN_NONE = 0, DOMAIN_DONE, DOMAIN_PASSED, DOMAIN_FAILED };
int domains_route(xmppd_event *ev);
/* At exit, once every module is unloaded. */
void domains_free(void);

/* ---- sm.c: sessions of bound resources ---- */
sm_host *sm_host_new(void);
void sm_host_free(sm_host *sm);
/* Binds sess as node@host/resource; an existing session with that resource
 * is replaced (it gets <conflict/>). -1 when max_resources is reached. */
int sm_bind(xmppd_session *sess, const char *resource);
void sm_unbind(xmppd_session *sess);
/* Bound sessions of h (NULL: every host). */
size_t sm_count(const xmppd_host *h);
/* Reload: the session slots of instance `from` pass to `to`, the instance
 * replacing it (where `to` has none of its own); to NULL drops them (after
 * an unload, so a later instance at the same address never sees them). */
void sm_slots_move(const xmppd_module *from, const xmppd_module *to);

/* ---- router.c ---- */
/* A stanza from a bound client session; from already stamped. */
void router_from_client(xmppd_session *sess, xmppd_stanza *st);
/* The error reply to orig (xmppd_stanza_error_reply); a message error keeps
 * the original payload (RFC 6120 §8.3.1) so the sender's client can tell
 * which message failed. New tree, caller owns; NULL on OOM. */
xmppd_stanza *router_error_reply(const xmppd_stanza *orig, const char *type, const char *cond,
                                 const char *text);

#endif
