/* Redis server addresses as URIs (the cluster's "redis" option):
 *
 *   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]     plain TCP (port 6379)
 *   rediss://[[USER]:PASSWORD@]HOST[:PORT][/DB]    TLS
 *   unix://[[USER]:PASSWORD@]/PATH[?db=DB]         a Unix socket
 *
 * HOST is a name, an IPv4 address or [an IPv6 address]; USER and
 * PASSWORD are percent-decoded (a password with ':' or '@' is written
 * %3A, %40); an empty USER with a password means Redis's default user
 * (AUTH PASSWORD). Pure: no I/O.
 *
 * Ownership: the strings of a parsed redis_uri are malloc'd and freed by
 * redis_uri_clear (which wipes the password first). */
#ifndef XMPPD_REDIS_URI_H
#define XMPPD_REDIS_URI_H

#include <stdbool.h>

typedef struct redis_uri {
    bool tls;
    char *host;     /* TCP: name or address (no brackets); NULL for a socket */
    int port;
    char *path;     /* unix: the socket's path; NULL for TCP */
    char *user;     /* NULL: none (AUTH with the password alone) */
    char *password; /* NULL: no AUTH */
    int db;         /* SELECT when not 0 */
} redis_uri;

/* Parses s into *u (zeroed first). 0, or -1 with a short reason in *why
 * (static text) and nothing to free. */
int redis_uri_parse(const char *s, redis_uri *u, const char **why);
void redis_uri_clear(redis_uri *u);
/* "host:port" or the socket path, without credentials, into buf (for logs). */
const char *redis_uri_where(const redis_uri *u, char *buf, unsigned long len);

#endif
