/* auth_ldap: TLS to the directory (LDAPS and StartTLS) driven by the event
 * loop. libldap's own TLS start blocks in a poll loop until the handshake
 * is done, so the module runs the handshake itself with OpenSSL on the
 * non-blocking socket, then hands the finished TLS session to libldap as a
 * transport layer of its Sockbuf (lber's Sockbuf_IO): libldap reads and
 * writes LDAP messages through it and never blocks. */
#ifndef AUTH_LDAP_TLS_H
#define AUTH_LDAP_TLS_H

#include <ldap.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

/* A client context that verifies the server's chain against ca_file (a
 * PEM file; NULL: the system's trust store), TLS 1.2 at least. NULL with a
 * one-line reason in err. Free with SSL_CTX_free. */
SSL_CTX *ltls_ctx_new(const char *ca_file, char *err, size_t errlen);

/* A session on connected socket fd that checks the certificate names host
 * (a DNS name: SAN dNSName, RFC 6125; an address: SAN iPAddress) and sends
 * it as SNI when it is a name. NULL on OOM. */
SSL *ltls_new(SSL_CTX *ctx, int fd, const char *host);

enum { LTLS_DONE = 1, LTLS_WANT_READ = 2, LTLS_WANT_WRITE = 3, LTLS_FAILED = -1 };
/* One step of the handshake: LTLS_DONE, LTLS_WANT_* (call again when the
 * socket is ready), or LTLS_FAILED with the reason (the verification
 * error, the alert) in err. */
int ltls_handshake(SSL *ssl, char *err, size_t errlen);

/* Puts ssl (handshake done) under ld's Sockbuf as its transport layer. ld
 * owns ssl from then on (freed with ld). 0, or -1 (ssl still the
 * caller's). */
int ltls_install(LDAP *ld, SSL *ssl);

#endif
