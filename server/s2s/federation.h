/* Server-to-server federation and XEP-0114 components: the entry points
 * the listeners, the start-up and shutdown sequence and the control socket
 * use. The internals are in s2s.h. */
#ifndef XMPPD_FEDERATION_H
#define XMPPD_FEDERATION_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* A connection accepted on an s2s listener (direct_tls: XEP-0368). */
void s2s_accept(int fd, const struct sockaddr *sa, int socklen, bool direct_tls);
/* Resolver and dialback secret from g_server.cfg; registers the remote
 * route with the router. 0, or -1 with a message. */
int s2s_start(char *err, size_t errlen);
/* SIGHUP: the resolver follows the new s2s.dns_servers. */
void s2s_reload(void);
/* Sends <system-shutdown/> on every s2s stream, waits for them, frees all. */
void s2s_shutdown_all(void);

/* One open s2s stream as the control socket lists it (strings borrowed
 * for the callback). */
typedef struct s2s_stream_info {
    bool outgoing;
    const char *state;  /* "connecting", "negotiating", "open", "closing" */
    const char *local;  /* our domain (NULL before the header says it) */
    const char *remote; /* outgoing: the target; incoming: the header's 'from' (may be NULL) */
    const char *ip;
    int port;
    bool secure;        /* TLS */
    bool bidi;          /* XEP-0288 */
    bool authenticated; /* outgoing: we may send; incoming: at least one domain pair verified */
    size_t n_pairs;     /* incoming: the domain pairs verified on it */
} s2s_stream_info;
/* Calls fn for every stream not yet closed. */
void s2s_streams_foreach(void (*fn)(const s2s_stream_info *i, void *ud), void *ud);

/* A connection accepted on a component listener. */
void component_accept(int fd, const struct sockaddr *sa, int socklen);
/* Registers the component route with the router. */
void component_start(void);
/* After SIGHUP: streams of components no longer configured get <host-gone/>. */
void component_reconfigured(void);
/* Sends <system-shutdown/> to every component stream and closes it. */
void component_shutdown_all(void);

#endif
