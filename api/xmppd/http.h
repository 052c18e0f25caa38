/* HTTP routes for modules (ABI 2.3).
 *
 * The kernel serves HTTP and HTTPS on listeners of type "http" (see the
 * configuration's "listeners" and "http" keys). A module answers the
 * requests under a path prefix it registers, the way a Prosody module
 * "provides http": file upload, an admin API, metrics. The kernel parses
 * the requests, applies the limits (header size; the route's body size,
 * before any of the body is read; requests per second per address; idle
 * time), answers CORS preflights for routes that have a CORS policy, and
 * answers by itself what reaches no route (404), a method the route does
 * not take (405 with Allow), a body over the route's limit (413) and a
 * client over its rate (429).
 *
 * One request at a time per connection, answered asynchronously: the
 * handler may answer at once or keep the request (storage, auth) and
 * answer later. Every request a handler receives ends exactly once,
 * either
 *   - by the module: xmppd_http_respond(), or xmppd_http_start() ... then
 *     xmppd_http_end(); or
 *   - by the kernel: route->cancel(req, ud) runs when the client went away
 *     before the answer was complete, or when the module unloads first
 *     (before its unload(); the kernel then answers 503 itself).
 * After either, req is invalid: forget it (a module with work in flight
 * marks its own per-request state, xmppd_http_data(), as cancelled).
 * cancel may be NULL only for routes that always finish inside their
 * handler (and body callback).
 *
 * Everything here runs on the loop thread. Strings passed in are copied;
 * strings returned are borrowed from req until it ends. */
#ifndef XMPPD_HTTP_H
#define XMPPD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "module.h"

typedef struct xmppd_http_request xmppd_http_request; /* kernel-owned, one per request */

/* Methods, as a mask in routes and as the value of xmppd_http_method(). */
enum {
    XMPPD_HTTP_GET = 1 << 0,
    XMPPD_HTTP_HEAD = 1 << 1,
    XMPPD_HTTP_POST = 1 << 2,
    XMPPD_HTTP_PUT = 1 << 3,
    XMPPD_HTTP_DELETE = 1 << 4,
    XMPPD_HTTP_OPTIONS = 1 << 5,
    XMPPD_HTTP_PATCH = 1 << 6,
};

/* Cross-origin access for browser clients (the Fetch standard's CORS). A
 * request with an Origin among `origins` ("*": any) gets
 * Access-Control-Allow-Origin; a preflight (OPTIONS with
 * Access-Control-Request-Method) is answered by the kernel with the
 * route's methods, `headers` and `max_age_s`. */
typedef struct xmppd_http_cors {
    const char *const *origins;  /* NULL-terminated; NULL: no CORS at all */
    const char *const *headers;  /* request headers scripts may send (NULL: none beyond the
                                    CORS-safelisted ones) */
    const char *const *expose;   /* response headers scripts may read (NULL: none) */
    bool credentials;            /* Access-Control-Allow-Credentials (never with "*") */
    long long max_age_s;         /* preflight cache time; 0: the browser's default */
} xmppd_http_cors;

/* Route flags. */
#define XMPPD_HTTP_STREAM_BODY 0x1u /* body given to `body` as it arrives (else buffered) */

typedef struct xmppd_http_route {
    /* Path prefix, beginning with '/': "/upload/" takes "/upload/x/y";
     * "/metrics" takes "/metrics" and "/metrics/..." (also "?..."). The
     * longest matching prefix wins. Matched after the listener's
     * path_prefix is removed. */
    const char *path;
    /* The Host this route answers: NULL is the module's host (every Host
     * for a global module), "*" every Host; a domain the module serves
     * (upload.example.org) works too. Requests whose Host matches no
     * route's domain go to http.default_host's routes. */
    const char *domain;
    unsigned methods;  /* XMPPD_HTTP_* mask; HEAD is answered like GET without a body when
                          only GET is given */
    long long max_body; /* bytes of body accepted; 0: none (a body gets 413) */
    unsigned flags;     /* XMPPD_HTTP_STREAM_BODY */
    const xmppd_http_cors *cors; /* NULL: no CORS (copied) */
    /* The request head arrived (and, without STREAM_BODY, the whole body:
     * xmppd_http_body). Answer now or later. */
    void (*handler)(xmppd_http_request *req, void *ud);
    /* STREAM_BODY only: body bytes as they arrive (borrowed for the call),
     * then once with data NULL and len 0 when the body is complete. Not
     * called any more once the module answered. */
    void (*body)(xmppd_http_request *req, const char *data, size_t len, void *ud);
    /* The request ends without the module's answer (see above). */
    void (*cancel)(xmppd_http_request *req, void *ud);
    void *ud;
} xmppd_http_route;

/* Registers route r (copied, cors included) for m, from load() on;
 * released when m unloads. 0, or -1: bad route (path not starting with
 * '/', no handler, STREAM_BODY without body), the same domain and path
 * taken by another module (a newer instance of the same module, a
 * reload, takes it over), OOM, or m unloading. */
int xmppd_http_route_add(xmppd_module *m, const xmppd_http_route *r);

/* ---- the request ----------------------------------------------------------- */
unsigned xmppd_http_method(const xmppd_http_request *req);  /* one XMPPD_HTTP_* */
/* The path, percent-decoded, with the listener's path_prefix removed
 * (begins with '/'; never contains NUL: such requests get 400). */
const char *xmppd_http_path(const xmppd_http_request *req);
/* The raw query string after '?', or NULL. */
const char *xmppd_http_query(const xmppd_http_request *req);
/* A request header's value (name case-insensitive; repeated headers
 * joined with ", "), or NULL. */
const char *xmppd_http_header(const xmppd_http_request *req, const char *name);
/* Host header (lower case, without port). */
const char *xmppd_http_host(const xmppd_http_request *req);
/* The client's address: the peer's, or for a listener with
 * trusted_proxies the last address in X-Forwarded-For not among them. */
const char *xmppd_http_remote_ip(const xmppd_http_request *req);
/* HTTPS as the client sees it (TLS on the listener, or a trusted proxy
 * said X-Forwarded-Proto: https). */
bool xmppd_http_secure(const xmppd_http_request *req);
/* Content-Length of the body, or -1 when unknown (chunked). */
long long xmppd_http_content_length(const xmppd_http_request *req);
/* Without STREAM_BODY: the whole body (not NUL-terminated; NULL, len 0 when
 * empty). Borrowed until the request ends. */
const char *xmppd_http_body(const xmppd_http_request *req, size_t *len_r);
/* STREAM_BODY: stop and restart delivering body bytes (flow control while
 * the module writes them somewhere slow). */
void xmppd_http_pause(xmppd_http_request *req);
void xmppd_http_resume(xmppd_http_request *req);
/* One pointer of the module's per-request state (NULL until set). */
void xmppd_http_set_data(xmppd_http_request *req, void *data);
void *xmppd_http_data(const xmppd_http_request *req);

/* ---- the answer ---------------------------------------------------------------
 * Headers first (before respond/start): name and value are copied; CR and
 * LF are refused (-1). Date, Server, Content-Length, Transfer-Encoding,
 * Connection and the CORS headers are the kernel's. */
int xmppd_http_set_header(xmppd_http_request *req, const char *name, const char *value);
/* The whole answer: status (100..599 but 101), Content-Type (NULL: none),
 * body (copied; ignored for HEAD and 204/304). Ends the request. 0, or
 * -1 when it could not be sent (the client went away: the request ends
 * all the same). */
int xmppd_http_respond(xmppd_http_request *req, int status, const char *content_type,
                       const void *body, size_t len);
/* A streamed answer: the head now, the body in pieces. length >= 0 is its
 * Content-Length (exactly that many bytes must follow); -1: chunked. Then
 * any number of writes, then xmppd_http_end(), which ends the request.
 * Writes after a HEAD request or a 204/304 are dropped. 0 or -1. */
int xmppd_http_start(xmppd_http_request *req, int status, const char *content_type,
                     long long length);
int xmppd_http_write(xmppd_http_request *req, const void *data, size_t len);
/* len bytes of file fd from offset, sent without passing through the
 * module (sendfile where the connection allows); fd is taken (closed once
 * sent or on failure). */
int xmppd_http_write_file(xmppd_http_request *req, int fd, int64_t offset, int64_t len);
int xmppd_http_end(xmppd_http_request *req);
/* A plain-text error answer ("413 Payload Too Large\n"), ending the
 * request: for `return xmppd_http_error(req, 403);`-style handlers. 0. */
int xmppd_http_error(xmppd_http_request *req, int status);

/* The URL at which clients reach path on an HTTP listener, for links sent
 * over XMPP (upload slots): http.external_url when configured, else
 * "https://DOMAIN:PORT" (or http:) of the first http listener, with its
 * path_prefix; domain NULL: m's host. path begins with '/'. malloc'd, the
 * caller frees; NULL when no http listener is configured. */
char *xmppd_http_url(const xmppd_module *m, const char *domain, const char *path);

#endif
