/* The module side of HTTP (api/xmppd/http.h): the route registry and the
 * request object modules hold. The HTTP layer (server/http/) parses
 * requests, looks their route up here and fills an xmppd_http_request;
 * the answer a module gives goes back down through http_request_ops, which
 * that layer registers (core never calls upward).
 *
 * Ownership: a request is created by the HTTP layer (http_request_new)
 * and freed by http_request_end, once both the module (or kernel) is done
 * with it and the connection let it go (refs). */
#ifndef XMPPD_CORE_HTTP_H
#define XMPPD_CORE_HTTP_H

#include <stdbool.h>
#include <stdint.h>
#include "core/core.h"
#include "xmppd/http.h"

typedef struct http_route http_route;

/* What the HTTP layer does with a module's answer (conn: its connection). */
typedef struct http_request_ops {
    /* The head: status, Content-Type, length (-1: chunked), the request's
     * response headers. 0 or -1. */
    int (*start)(void *conn, xmppd_http_request *req, int status, const char *ctype,
                 long long length);
    int (*write)(void *conn, xmppd_http_request *req, const void *data, size_t len);
    int (*write_file)(void *conn, xmppd_http_request *req, int fd, int64_t off, int64_t len);
    /* The answer is complete. */
    void (*end)(void *conn, xmppd_http_request *req);
    void (*pause)(void *conn, bool paused);
} http_request_ops;

typedef struct http_header {
    char *name, *value;
} http_header;

struct xmppd_http_request {
    const http_request_ops *ops;
    void *conn;               /* the HTTP layer's; NULL once it let go */
    int refs;                 /* the connection's + the module's */
    http_route *route;        /* NULL: no module holds it (kernel answers) */
    const xmppd_http_cors *cors; /* the route's policy for the answer, or NULL */
    unsigned method;
    char *path, *query, *host, *ip;
    char *prefix;             /* the listener's path_prefix (NULL: none) */
    bool secure;
    long long content_length;
    http_header *in;          /* request headers */
    size_t n_in;
    http_header *out;         /* response headers set by the module */
    size_t n_out;
    char *body;               /* buffered body */
    size_t body_len;
    void *data;               /* the module's */
    bool started;             /* head sent */
    bool finished;            /* the answer is complete (or cancelled) */
    bool head_only;           /* HEAD, 204, 304: no body bytes */
    int status;
    xmppd_http_request *next_active, *prev_active; /* the route's requests */
};

/* The route of a request: the longest prefix of path among the routes
 * for host (lower case, no port); when no route names host, those of
 * http.default_host (the first host by default). NULL when none. */
http_route *http_route_find(const char *host, const char *path);
/* The kernel's own endpoints (BOSH, host-meta) are routes without a
 * module, for every Host; they live until http_routes_kernel_free. 0 or -1. */
int http_route_kernel(const xmppd_http_route *def);
void http_routes_kernel_free(void);
/* What a route is, for the HTTP layer. */
const xmppd_http_route *http_route_def(const http_route *r);
const char *http_route_prefix(const http_route *r);

/* A request for the connection conn (one reference, the connection's). */
xmppd_http_request *http_request_new(const http_request_ops *ops, void *conn);
/* Hands req to its route's module (handler), taking the module's
 * reference; route must be alive. */
void http_request_dispatch(xmppd_http_request *req, http_route *route);
/* STREAM_BODY bytes (len 0, data NULL: the end) for the route's body
 * callback; nothing once the module answered or is gone. */
void http_request_body(xmppd_http_request *req, const char *data, size_t len);
/* The connection is gone or done with req: a module still holding it
 * hears cancel; the connection's reference is dropped. */
void http_request_release(xmppd_http_request *req);
/* Adds a header read from the request (copied; a repeated name is joined
 * with ", "). 0 or -1. */
int http_request_add_header(xmppd_http_request *req, const char *name, size_t nlen,
                            const char *value, size_t vlen);
/* Header lookup, for the HTTP layer itself (the same as the SDK's). */
const char *http_request_header(const xmppd_http_request *req, const char *name);
/* Kernel answers (not through a route): as xmppd_http_respond. */
int http_request_respond(xmppd_http_request *req, int status, const char *ctype, const void *body,
                         size_t len);
/* Reason phrase of a status ("Not Found"); "" when unknown. */
const char *http_status_text(int status);
/* Is a method in the mask? HEAD counts as GET when the mask has GET. */
bool http_method_allowed(unsigned mask, unsigned method);
/* "GET, HEAD, ..." for an Allow header, into buf. */
void http_methods_text(unsigned mask, char *buf, size_t len);

#endif
