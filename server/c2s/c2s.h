/* Client-to-server streams over TCP (RFC 6120): the entry points the
 * listeners and the shutdown sequence use. */
#ifndef XMPPD_C2S_H
#define XMPPD_C2S_H

#include <stdbool.h>
#include <sys/socket.h>

/* A connection accepted on a c2s listener (direct_tls: XEP-0368). */
void c2s_accept(int fd, const struct sockaddr *sa, int socklen, bool direct_tls);
/* Sends <system-shutdown/> to every stream and closes it. */
void c2s_shutdown_all(void);

#endif
