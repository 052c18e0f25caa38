/* The HTTP layer: HTTP/1.1 on "http" listeners (HTTPS with SNI, or plain
 * behind a reverse proxy), the routes of modules (core/http.h), and the
 * kernel's own endpoints: XMPP over WebSocket (RFC 7395), over BOSH
 * (XEP-0124, XEP-0206) and the XEP-0156 host-meta documents.
 *
 * Requests are parsed by http-parser (the parser Node.js was built on)
 * over a bufferevent on the kernel's loop; WebSocket frames by wslay.
 * docs/architecture.md says why these and not libevent's evhttp.
 *
 * Ownership: a connection (http_conn) owns its bufferevent (and with it
 * the socket and SSL) until a WebSocket upgrade hands both to the
 * WebSocket side; it holds one reference to the request it is reading or
 * answering (xmppd_http_request, core/http.h). */
#ifndef XMPPD_HTTP_LAYER_H
#define XMPPD_HTTP_LAYER_H

#include <http_parser.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/core.h"
#include "core/http.h"
#include "net/net.h"

struct bufferevent;
struct event;
struct evbuffer;

/* ---- conn.c: connections ------------------------------------------------------------ */
typedef struct http_conn http_conn;

/* A connection accepted on an http listener (lc: the listener's own copy
 * of its configuration, valid until listeners_stop). */
void http_accept(int fd, const struct sockaddr *sa, int socklen, const listener_conf *lc);
/* Shutdown: every connection is closed (WebSocket and BOSH streams first
 * get <system-shutdown/> through c2s). */
void http_shutdown_all(void);

/* What dispatch.c and the endpoints read of a connection. */
const listener_conf *http_conn_listener(const http_conn *c);
const char *http_conn_peer(const http_conn *c);
SSL *http_conn_ssl(const http_conn *c);
/* The WebSocket upgrade takes the connection's bufferevent (with any
 * bytes already read after the request head) and frees the rest; the
 * caller owns bev from then on. NULL when the connection cannot be taken. */
struct bufferevent *http_conn_take(http_conn *c);

/* ---- dispatch.c: what a request head leads to ----------------------------------------- */
enum http_action {
    HTTP_DISPATCH, /* a route takes it (req->route set by http_request_dispatch) */
    HTTP_ANSWERED, /* answered already (error, preflight): discard any body */
    HTTP_UPGRADE,  /* the WebSocket endpoint: ws_upgrade takes the connection */
};
/* Fills req (method, path, query, host, client address, security) from
 * the parsed head and decides. *route_r: the route to dispatch to;
 * *max_body_r: bytes of body it accepts. url: the request target. */
int http_dispatch_head(http_conn *c, xmppd_http_request *req, const http_parser *p,
                       const char *url, size_t url_len, bool upgrade, http_route **route_r,
                       long long *max_body_r);
/* The CORS headers for an answer to req (into the output buffer, each
 * line ending in CRLF). */
void http_cors_headers(const xmppd_http_request *req, const http_route *route,
                       struct evbuffer *out);
/* Registers the kernel's endpoints (BOSH, host-meta) as routes; 0 or -1. */
int http_endpoints_start(void);

/* ---- ratelimit.c ------------------------------------------------------------------------ */
/* One request from ip: false when it is over http.requests_per_second
 * (with http.burst). */
bool http_rate_take(const char *ip);
void http_rate_free(void);

/* ---- ws.c: WebSocket ----------------------------------------------------------------- */
/* The WebSocket handshake (RFC 6455 §4.2) for req on c's connection; an
 * invalid one is answered with an HTTP error; a valid one is answered 101
 * and c's bufferevent becomes a WebSocket connection carrying an XMPP
 * stream (RFC 7395). req's answer is complete either way. */
void ws_upgrade(http_conn *c, xmppd_http_request *req);
void ws_shutdown_all(void);

/* ---- ws_msg.c: one WebSocket message, one element (RFC 7395 §3.3.3) ---- */
typedef struct ws_msg ws_msg;
enum { WS_MSG_OK = 0, WS_MSG_STREAM_ERROR = -1, WS_MSG_BAD_UTF8 = -2 };
/* A parser for a connection's messages (limits as the stream parser's). */
ws_msg *ws_msg_new(size_t max_stanza, unsigned max_depth);
void ws_msg_free(ws_msg *m);
/* One text message: WS_MSG_OK with *el_r the element (the caller's
 * reference; NULL for a blank message), WS_MSG_STREAM_ERROR with *cond_r
 * the stream error condition (restricted-xml, policy-violation,
 * not-well-formed for anything but one whole element), or
 * WS_MSG_BAD_UTF8. After an error the parser refuses everything. */
int ws_msg_feed(ws_msg *m, const uint8_t *data, size_t len, xmppd_stanza **el_r,
                const char **cond_r);

/* ---- bosh.c ---------------------------------------------------------------------------- */
/* The BOSH endpoint's route handlers (XEP-0124, XEP-0206). */
void bosh_handle(xmppd_http_request *req, void *ud);
void bosh_cancel(xmppd_http_request *req, void *ud);
void bosh_shutdown_all(void);
/* The <body/> of a request (XEP-0124 §4) with the stream parser's
 * restrictions and limits; NULL when it is not exactly one body element
 * in the httpbind namespace. New tree, the caller's. */
xmppd_stanza *bosh_parse_body(const char *data, size_t len, size_t max, unsigned max_depth);

/* ---- hostmeta.c ------------------------------------------------------------------------ */
/* /.well-known/host-meta and host-meta.json (XEP-0156). */
void hostmeta_handle(xmppd_http_request *req, void *ud);

/* ---- util.c ------------------------------------------------------------------------------ */
/* Is data valid UTF-8 (RFC 3629: no overlongs, surrogates or values past
 * U+10FFFF)? */
bool http_utf8_valid(const unsigned char *data, size_t len);
/* Percent-decodes src (len bytes) into a new string; NULL for a bad
 * escape or an encoded NUL. */
char *http_pct_decode(const char *src, size_t len);
/* Is ip (text) within one of the CIDRs or addresses of list? */
bool http_ip_in(const char *ip, const char *const *list);
/* The RFC 7231 date of now ("Sun, 06 Nov 1994 08:49:37 GMT"). */
void http_date(char *buf, size_t len);

#endif
