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

/* ---- sm.c: sessions of bound resources ---- */
sm_host *sm_host_new(void);
void sm_host_free(sm_host *sm);
/* Binds sess as node@host/resource; an existing session with that resource
 * is replaced (it gets <conflict/>). -1 when max_resources is reached. */
int sm_bind(xmppd_session *sess, const char *resource);
void sm_unbind(xmppd_session *sess);

/* ---- router.c ---- */
/* A stanza from a bound client session; from already stamped. */
void router_from_client(xmppd_session *sess, xmppd_stanza *st);

#endif
