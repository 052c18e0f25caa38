/* auth_ldap: a pool of directory connections driven by the event loop.
 *
 * Two kinds of connections, because a bind changes who a connection is
 * and RFC 4511 §4.2.1 lets nothing else run on it meanwhile:
 *  - search connections, bound once as the service account (or
 *    anonymous), carry many searches at a time (message ids);
 *  - bind connections check users' passwords, one bind at a time, and
 *    after a successful bind may read the user's own entry.
 *
 * Each connection resolves its server's name on the worker pool (the one
 * call that would block), then connects, runs TLS (LDAPS or StartTLS,
 * ldap_tls.h) and binds without blocking, its socket watched by the loop;
 * libldap's asynchronous calls (ldap_search_ext, ldap_sasl_bind,
 * ldap_result with a zero timeout) do the LDAP part. A connection that
 * fails or drops tries the next server URI; when every URI failed it
 * waits (growing pauses up to reconnect_max) and starts again from the
 * first. While no server is reachable, requests fail at once instead of
 * waiting. Requests wait at most `timeout` for an answer, queued or on
 * the wire; a connection that stayed silent for that long is dropped. */
#ifndef AUTH_LDAP_POOL_H
#define AUTH_LDAP_POOL_H

#include <ldap.h>
#include <stdbool.h>
#include <stddef.h>

#include <xmppd/xmppd.h>

#include "directory_api.h"

typedef struct lp_pool lp_pool;
typedef struct lp_req lp_req;

typedef struct lp_conf {
    const char *const *uris;   /* ldap:// or ldaps:// URIs, tried in order */
    bool starttls;             /* StartTLS on ldap:// URIs (required, never optional) */
    const char *ca_file;       /* PEM CA certificates (NULL: the system's) */
    const char *bind_dn;       /* service account of the search connections (NULL: anonymous) */
    const char *bind_password;
    int search_connections, bind_connections;
    long long connect_timeout_ms, timeout_ms, reconnect_max_ms;
    int page_size;             /* RFC 2696 page size of paged searches */
    long long max_entries;     /* most entries one search may return */
} lp_conf;

/* Outcomes: an LDAP result code (LDAP_SUCCESS, LDAP_INVALID_CREDENTIALS,
 * LDAP_NO_SUCH_OBJECT, ...), a libldap client code (LDAP_SERVER_DOWN,
 * LDAP_TIMEOUT, LDAP_SIZELIMIT_EXCEEDED, ...) or LP_CLOSED when the pool
 * closed first. */
#define LP_CLOSED (-1000)

/* A finished request: entries (borrowed for the callback), the result
 * code, and the server's diagnostic message ("" when none). */
typedef struct lp_result {
    int code;
    const directory_entry *entries;
    size_t n;
    const char *diag;
} lp_result;
typedef void (*lp_cb)(const lp_result *res, void *ud);

/* Checks conf (URIs, CA file) and starts connecting. conf and the strings
 * it points to must outlive the pool. NULL with a one-line reason. */
lp_pool *lp_open(xmppd_module *m, const lp_conf *conf, char *err, size_t errlen);
/* Closes every connection; waiting requests get LP_CLOSED now.
 * unloading: the module's loop registrations (watches, timer) are already
 * gone (called from unload()). */
void lp_close(lp_pool *p, bool unloading);

/* A search. base, filter, attrs are copied (attrs NULL or empty: no
 * attributes, the entries' DNs only); scope DIRECTORY_SCOPE_*;
 * limit: most entries wanted (the server is asked for one more, and a
 * result with more is LDAP_SIZELIMIT_EXCEEDED; 0: max_entries, paged).
 * cb runs exactly once, later (never inside the call), unless
 * lp_cancel. NULL on OOM (cb never runs). */
lp_req *lp_search(lp_pool *p, const char *base, int scope, const char *filter, const char *const *attrs,
                  size_t limit, lp_cb cb, void *ud);
/* A simple bind as dn with password (copied, wiped after use) on a bind
 * connection; with attrs (not empty), a successful bind then reads dn's own entry
 * (as that user) into the result. As lp_search otherwise. */
lp_req *lp_bind(lp_pool *p, const char *dn, const char *password, const char *const *attrs, lp_cb cb,
                void *ud);
/* The callback will not run; the request is dropped. */
void lp_cancel(lp_req *r);

/* A one-line text of an outcome, for logs. */
const char *lp_code_str(int code);

#endif
