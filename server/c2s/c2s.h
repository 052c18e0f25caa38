/* Client-to-server streams over TCP (RFC 6120): the entry points the
 * listeners and the shutdown sequence use. */
#ifndef XMPPD_C2S_H
#define XMPPD_C2S_H

#include <stdbool.h>
#include <sys/socket.h>

#include "net/xstream.h"

/* A connection accepted on a c2s listener (direct_tls: XEP-0368). */
void c2s_accept(int fd, const struct sockaddr *sa, int socklen, bool direct_tls);
/* A client stream on a carrier (WebSocket, BOSH: server/http): the same
 * negotiation (SASL, binding) and session as over TCP. ip: the client's
 * address; secure: TLS under the carrier (HTTPS, or a trusted proxy's);
 * ssl: that TLS connection when it is ours alone (channel binding), else
 * NULL. Returns the stream the carrier feeds (xstream_carrier_*), which it
 * may use until the carrier's release op runs; NULL on OOM. */
xstream *c2s_open_carried(const xstream_carrier *car, void *cud, const char *ip, bool secure,
                          SSL *ssl);
/* Sends <system-shutdown/> to every stream and closes it. */
void c2s_shutdown_all(void);

#endif
