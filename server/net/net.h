/* Network side of the kernel: TLS contexts and connections, listening
 * sockets and per-address accounting, and (xstream.h) the XML stream layer
 * every stream kind shares. */
#ifndef XMPPD_NET_H
#define XMPPD_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include "core/core.h"
#include "core/loop.h"

typedef struct ssl_st SSL;

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
/* What a listener of each type does with an accepted socket: set by the
 * layer that serves the type (c2s, s2s, components) before
 * listeners_start; direct_tls: the listener's tls is "direct". */
typedef void (*listener_accept_fn)(int fd, const struct sockaddr *sa, int socklen, bool direct_tls);
void listener_set_acceptor(enum listener_type type, listener_accept_fn fn);
/* http listeners need their whole configuration (trusted proxies, path
 * prefix): lc is the listener's own copy, valid until listeners_stop. */
typedef void (*listener_accept_conf_fn)(int fd, const struct sockaddr *sa, int socklen,
                                        const listener_conf *lc);
void listener_set_http_acceptor(listener_accept_conf_fn fn);
/* Opens every listener of cfg. A type without an acceptor is an error.
 * 0, or -1 with a one-line message in err. */
int listeners_start(const xmppd_config *cfg, char *err, size_t errlen);
void listeners_stop(void);
/* ---- proxy.c ---- */
/* A listener with proxy_protocol: fd's source must be in trusted (CIDRs),
 * else it is closed and logged; then its PROXY v1 or v2 header is read
 * (at most 5 s) and done runs with the client's address (the source's for
 * a LOCAL or UNKNOWN header), or the connection is closed. */
typedef void (*proxy_done_fn)(void *ud, int fd, const struct sockaddr *sa, int socklen);
void proxy_accept(int fd, const struct sockaddr *sa, int socklen, const char *const *trusted,
                  proxy_done_fn done, void *ud);
/* Closes the connections whose header is still awaited. */
void proxy_stop(void);

/* TCP_NODELAY on a stream socket (every accepted and outgoing one). */
void net_nodelay(int fd);
/* ---- linger.c ---- */
/* Ends a connection without a reset (linger.c says why): shuts fd for
 * writing and reads and discards its input for a few seconds, until the
 * peer closes or a byte budget is spent; takes fd and closes it. */
void net_linger(int fd);
/* At exit: closes every lingering socket; later ones close at once. */
void net_linger_stop(void);
/* Connection accounting per IP (limits.connections_per_ip). */
bool conn_ip_acquire(const char *ip);
void conn_ip_release(const char *ip);

#endif
