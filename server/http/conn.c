/* HTTP/1.1 connections: bytes in through http-parser, one request at a
 * time (pipelined requests wait in the input buffer), answers out with
 * Content-Length or chunked framing, keep-alive, the idle timeout.
 *
 * A request's body goes, as its route says, into the request (buffered,
 * up to the route's max_body) or to the module as it arrives. An answer
 * given before the body is complete discards the rest of the body; when
 * more than a little is left, the connection closes after the answer
 * instead of reading it all. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <limits.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/http.h"
#include "net/xstream.h"

#define READ_HIGH_WATER (256 * 1024) /* input buffered while an answer is awaited */
#define DISCARD_MAX (64 * 1024)      /* body left unread after an early answer: read it */

enum conn_state {
    C_READING, /* waiting for or reading a request */
    C_WAITING, /* the request is complete; its answer is awaited */
    C_CLOSING, /* flushing the last answer, then closing */
    C_GONE,    /* socket freed; the struct lives while referenced */
};

struct http_conn {
    int refs;
    enum conn_state state;
    struct bufferevent *bev;
    SSL *ssl;
    const listener_conf *lc;
    char peer[INET6_ADDRSTRLEN];
    http_parser parser;
    struct event *idle;       /* idle timeout while reading */
    struct event *kick;       /* continue parsing on a later loop turn */
    http_conn *prev, *next;   /* every connection, for shutdown */

    /* the request being read or answered */
    xmppd_http_request *req;
    http_route *route;
    char *url, *hname, *hvalue;
    size_t url_len, hname_len, hvalue_len;
    bool in_value;            /* the last header callback was a value */
    size_t head_bytes;
    long long max_body;
    size_t body_len;
    bool stream_body;
    bool answered_early;      /* answered before its body was read: discard the body */
    bool too_large;           /* a chunked body went over max_body */
    bool head_failed;         /* 431 or OOM while reading the head */
    bool msg_done;            /* the whole request was read */
    bool answer_done;         /* the answer is complete */
    bool chunked_out;
    bool keep_alive;
    bool paused;              /* the module asked for no more body for now */
    bool upgrade;             /* the WebSocket endpoint takes the connection */
};

static http_conn *g_conns;
static const http_parser_settings *parser_settings(void);
static void conn_feed(http_conn *c);
static void conn_close(http_conn *c);

/* ---- lifetime --------------------------------------------------------------------- */

static void conn_unref(http_conn *c)
{
    if (--c->refs > 0)
        return;
    free(c->url);
    free(c->hname);
    free(c->hvalue);
    free(c);
}

static void request_forget(http_conn *c)
{
    xmppd_http_request *req = c->req;
    c->req = NULL;
    c->route = NULL;
    if (req)
        http_request_release(req);
}

/* Frees the connection side (socket, timers); pending module work hears
 * cancel through the request's release. */
static void conn_free(http_conn *c)
{
    if (c->state == C_GONE)
        return;
    c->state = C_GONE;
    if (c->prev)
        c->prev->next = c->next;
    else if (g_conns == c)
        g_conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (c->idle)
        event_free(c->idle);
    if (c->kick)
        event_free(c->kick);
    c->idle = c->kick = NULL;
    if (c->bev)
        bufferevent_free(c->bev);
    c->bev = NULL;
    c->ssl = NULL;
    conn_ip_release(c->peer);
    request_forget(c);
    conn_unref(c);
}

static void arm_idle(http_conn *c)
{
    uint64_t ms = (uint64_t)g_server.cfg->http.idle_timeout;
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    if (c->idle)
        evtimer_add(c->idle, &tv);
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    http_conn *c = arg;
    log_kernel("http", XMPPD_LOG_DEBUG, "%s: idle connection closed", c->peer);
    conn_free(c);
}

/* ---- accessors for the layer ----------------------------------------------------------- */

const listener_conf *http_conn_listener(const http_conn *c)
{
    return c->lc;
}

const char *http_conn_peer(const http_conn *c)
{
    return c->peer;
}

SSL *http_conn_ssl(const http_conn *c)
{
    return c->ssl;
}

struct bufferevent *http_conn_take(http_conn *c)
{
    if (c->state == C_GONE || !c->bev)
        return NULL;
    struct bufferevent *bev = c->bev;
    char peer[INET6_ADDRSTRLEN];
    snprintf(peer, sizeof(peer), "%s", c->peer);
    c->bev = NULL;
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    conn_free(c);
    /* The address stays counted: the WebSocket connection holds it now
     * (released just above, so this cannot fail on the limit). */
    conn_ip_acquire(peer);
    return bev;
}

/* ---- writing answers --------------------------------------------------------------------- */

static void on_flushed_close(struct bufferevent *bev, void *arg)
{
    http_conn *c = arg;
    struct bufferevent *under = bufferevent_get_underlying(bev);
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0 &&
        (!under || evbuffer_get_length(bufferevent_get_output(under)) == 0))
        conn_free(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    http_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    conn_free(c);
}

/* Closes once what is queued is out (or the peer is gone). */
static void conn_close(http_conn *c)
{
    if (c->state == C_GONE || c->state == C_CLOSING)
        return;
    c->state = C_CLOSING;
    if (c->idle)
        evtimer_del(c->idle);
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setcb(c->bev, NULL, on_flushed_close, on_event, c);
    /* A reader that stopped reading cannot keep the connection. */
    struct timeval tv = { g_server.cfg->http.idle_timeout / 1000, 0 };
    bufferevent_set_timeouts(c->bev, NULL, &tv);
    on_flushed_close(c->bev, c);
}

static int op_start(void *conn, xmppd_http_request *req, int status, const char *ctype,
                    long long length)
{
    http_conn *c = conn;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    bool v11 = c->parser.http_major == 1 && c->parser.http_minor >= 1;
    char date[64];
    http_date(date, sizeof(date));
    if (!c->msg_done && !c->answered_early) {
        /* Answered before the body was read: read the rest only when it is small. */
        c->answered_early = true;
        /* No Content-Length and not chunked: no body (RFC 7230 §3.3.3). */
        long long left = c->parser.content_length == ULLONG_MAX ? 0
                                                                : (long long)c->parser.content_length;
        if ((c->parser.flags & F_CHUNKED) || left > DISCARD_MAX)
            c->keep_alive = false;
    }
    c->chunked_out = length < 0 && !req->head_only && v11;
    if (length < 0 && !req->head_only && !v11)
        c->keep_alive = false; /* HTTP/1.0: the end of the body is the end of the connection */
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, http_status_text(status), date);
    if (ctype)
        evbuffer_add_printf(out, "Content-Type: %s\r\n", ctype);
    if (c->chunked_out)
        evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
    else if (length >= 0 && status != 204 && status != 304)
        evbuffer_add_printf(out, "Content-Length: %lld\r\n", length);
    if (!c->keep_alive)
        evbuffer_add_printf(out, "Connection: close\r\n");
    http_cors_headers(req, c->route, out);
    for (size_t i = 0; i < req->n_out; i++)
        evbuffer_add_printf(out, "%s: %s\r\n", req->out[i].name, req->out[i].value);
    evbuffer_add(out, "\r\n", 2);
    return 0;
}

static int op_write(void *conn, xmppd_http_request *req, const void *data, size_t len)
{
    http_conn *c = conn;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->chunked_out)
        evbuffer_add_printf(out, "%zx\r\n", len);
    int rc = evbuffer_add(out, data, len);
    if (c->chunked_out)
        evbuffer_add(out, "\r\n", 2);
    return rc;
}

static int op_write_file(void *conn, xmppd_http_request *req, int fd, int64_t off, int64_t len)
{
    http_conn *c = conn;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->chunked_out)
        evbuffer_add_printf(out, "%llx\r\n", (unsigned long long)len);
    /* The evbuffer owns fd from here (closed once sent), also on failure. */
    int rc = evbuffer_add_file(out, fd, off, len);
    if (c->chunked_out)
        evbuffer_add(out, "\r\n", 2);
    return rc;
}

/* Parsing goes on from a later loop turn: never from inside a module's
 * call, nor inside the parser. */
static void kick(http_conn *c)
{
    if (c->kick)
        event_active(c->kick, 0, 0);
}

static void op_end(void *conn, xmppd_http_request *req)
{
    http_conn *c = conn;
    if (c->chunked_out)
        evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
    c->answer_done = true;
    kick(c);
}

static void op_pause(void *conn, bool paused)
{
    http_conn *c = conn;
    c->paused = paused;
    if (c->state != C_READING)
        return;
    if (paused) {
        bufferevent_disable(c->bev, EV_READ);
    } else {
        bufferevent_enable(c->bev, EV_READ);
        kick(c);
    }
}

static const http_request_ops conn_ops = {
    .start = op_start, .write = op_write, .write_file = op_write_file, .end = op_end,
    .pause = op_pause,
};

/* ---- the next request --------------------------------------------------------------------- */

static void reset_request(http_conn *c)
{
    request_forget(c);
    free(c->url);
    free(c->hname);
    free(c->hvalue);
    c->url = c->hname = c->hvalue = NULL;
    c->url_len = c->hname_len = c->hvalue_len = 0;
    c->in_value = c->stream_body = c->answered_early = c->too_large = c->head_failed = false;
    c->msg_done = c->answer_done = c->chunked_out = c->paused = false;
    c->head_bytes = c->body_len = 0;
    c->max_body = 0;
}

/* The answer is complete: the next request, or the end. */
static void request_finished(http_conn *c)
{
    if (!c->keep_alive || !c->msg_done) {
        request_forget(c);
        conn_close(c);
        return;
    }
    reset_request(c);
    c->state = C_READING;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    bufferevent_enable(c->bev, EV_READ);
    arm_idle(c);
    conn_feed(c);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    http_conn *c = arg;
    if (c->state == C_GONE || c->state == C_CLOSING)
        return;
    if (c->answer_done && (c->msg_done || c->answered_early)) {
        if (c->msg_done || !c->keep_alive) {
            request_finished(c);
            return;
        }
        /* Answered early: read and discard the rest of the body. */
    }
    conn_feed(c);
}

/* ---- parser callbacks ------------------------------------------------------------------------ */

static int append(char **buf, size_t *len, const char *at, size_t n)
{
    char *b = realloc(*buf, *len + n + 1);
    if (!b)
        return -1;
    memcpy(b + *len, at, n);
    *len += n;
    b[*len] = '\0';
    *buf = b;
    return 0;
}

/* Head bytes count against http.max_header_size. */
static bool head_over(http_conn *c, size_t n)
{
    c->head_bytes += n;
    if (c->head_bytes <= (size_t)g_server.cfg->http.max_header_size)
        return false;
    c->head_failed = true;
    return true;
}

static int on_message_begin(http_parser *p)
{
    http_conn *c = p->data;
    c->req = http_request_new(&conn_ops, c);
    if (c->idle)
        arm_idle(c);
    return c->req ? 0 : -1;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    http_conn *c = p->data;
    if (head_over(c, n) || append(&c->url, &c->url_len, at, n) < 0)
        return -1;
    return 0;
}

static int flush_header(http_conn *c)
{
    if (!c->hname)
        return 0;
    /* RFC 7230 §3.2.4: no whitespace is left around the value. */
    size_t vl = c->hvalue_len;
    const char *v = c->hvalue ? c->hvalue : "";
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    int rc = http_request_add_header(c->req, c->hname, c->hname_len, v, vl);
    free(c->hname);
    free(c->hvalue);
    c->hname = c->hvalue = NULL;
    c->hname_len = c->hvalue_len = 0;
    return rc;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    http_conn *c = p->data;
    if (head_over(c, n))
        return -1;
    if (c->in_value && flush_header(c) < 0)
        return -1;
    c->in_value = false;
    return append(&c->hname, &c->hname_len, at, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    http_conn *c = p->data;
    if (head_over(c, n))
        return -1;
    c->in_value = true;
    return append(&c->hvalue, &c->hvalue_len, at, n);
}

static int on_headers_complete(http_parser *p)
{
    http_conn *c = p->data;
    if (flush_header(c) < 0)
        return -1;
    c->keep_alive = http_should_keep_alive(p) != 0;
    http_route *route = NULL;
    int action = http_dispatch_head(c, c->req, p, c->url ? c->url : "", c->url_len, p->upgrade,
                                    &route, &c->max_body);
    if (action == HTTP_UPGRADE) {
        c->upgrade = true;
        return 0;
    }
    if (p->upgrade)
        c->keep_alive = false; /* what follows the head is not HTTP */
    if (action == HTTP_ANSWERED)
        return 0;
    c->route = route;
    c->stream_body = (http_route_def(route)->flags & XMPPD_HTTP_STREAM_BODY) != 0;
    if (c->stream_body)
        http_request_dispatch(c->req, route);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    http_conn *c = p->data;
    xmppd_http_request *req = c->req;
    if (c->answered_early || c->too_large || !c->route)
        return 0;
    if (c->body_len + n > (size_t)c->max_body) {
        /* Only a chunked body gets here: a Content-Length over the limit
         * was refused with the head. */
        c->too_large = true;
        if (!req->started && !req->route)
            http_request_respond(req, 413, "text/plain", "413 Payload Too Large\n", 22);
        return 0;
    }
    c->body_len += n;
    if (c->stream_body) {
        http_request_body(req, at, n);
        return 0;
    }
    char *b = realloc(req->body, req->body_len + n);
    if (!b)
        return -1;
    memcpy(b + req->body_len, at, n);
    req->body = b;
    req->body_len += n;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_conn *c = p->data;
    c->msg_done = true;
    if (c->idle)
        evtimer_del(c->idle);
    if (c->route && !c->answered_early && !c->too_large) {
        if (c->stream_body)
            http_request_body(c->req, NULL, 0);
        else
            http_request_dispatch(c->req, c->route);
    }
    /* One request at a time: the next one waits for this answer. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings *parser_settings(void)
{
    static const http_parser_settings s = {
        .on_message_begin = on_message_begin,
        .on_url = on_url,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
    };
    return &s;
}

/* ---- input --------------------------------------------------------------------------------- */

/* A request that cannot be parsed: its answer, then the end. */
static void bad_request(http_conn *c, int status)
{
    c->keep_alive = false;
    xmppd_http_request *req = c->req;
    if (!req && !(req = c->req = http_request_new(&conn_ops, c))) {
        conn_free(c);
        return;
    }
    if (!req->started && !req->route) {
        char text[64];
        int n = snprintf(text, sizeof(text), "%d %s\n", status, http_status_text(status));
        http_request_respond(req, status, "text/plain; charset=utf-8", text, (size_t)n);
    }
    request_forget(c);
    conn_close(c);
}

static void conn_feed(http_conn *c)
{
    c->refs++;
    struct evbuffer *in = c->bev ? bufferevent_get_input(c->bev) : NULL;
    while (c->state == C_READING && !c->paused && in && evbuffer_get_length(in) > 0) {
        if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED) {
            if (!c->answer_done)
                break;
            http_parser_pause(&c->parser, 0);
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t n = http_parser_execute(&c->parser, parser_settings(), v.iov_base, v.iov_len);
        if (c->state == C_GONE)
            break;
        evbuffer_drain(in, n);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (c->upgrade) {
            c->keep_alive = false; /* a refused handshake ends the connection */
            ws_upgrade(c, c->req); /* takes the connection, or answers */
            break;
        }
        if (e == HPE_PAUSED) {
            c->state = c->answer_done ? C_READING : C_WAITING;
            if (c->answer_done)
                request_finished(c);
            break;
        }
        if (e != HPE_OK) {
            bad_request(c, c->head_failed ? 431 : e == HPE_INVALID_METHOD ? 501 : 400);
            break;
        }
    }
    /* An early answer that closes: nothing more to read. */
    if (c->state == C_READING && c->answer_done && c->answered_early && !c->keep_alive) {
        request_forget(c);
        conn_close(c);
    }
    conn_unref(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    http_conn *c = arg;
    if (c->state == C_READING)
        conn_feed(c);
}

/* ---- accept and shutdown --------------------------------------------------------------------- */

void http_accept(int fd, const struct sockaddr *sa, int socklen, const listener_conf *lc)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    xstream_peer_addr(sa, ip);
    if (!conn_ip_acquire(ip)) {
        log_kernel("http", XMPPD_LOG_WARN, "%s: too many connections from this address", ip);
        evutil_closesocket(fd);
        return;
    }
    http_conn *c = calloc(1, sizeof(*c));
    SSL *ssl = lc->tls == LISTEN_TLS_DIRECT ? tls_new_server_ssl() : NULL;
    if (!c || (lc->tls == LISTEN_TLS_DIRECT && !ssl)) {
        free(c);
        SSL_free(ssl);
        conn_ip_release(ip);
        evutil_closesocket(fd);
        return;
    }
    c->refs = 1;
    c->lc = lc;
    snprintf(c->peer, sizeof(c->peer), "%s", ip);
    evutil_make_socket_nonblocking(fd);
    if (ssl)
        c->bev = bufferevent_openssl_socket_new(loop_base(), fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    else
        c->bev = bufferevent_socket_new(loop_base(), fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    c->ssl = ssl;
    c->idle = evtimer_new(loop_base(), on_idle, c);
    c->kick = event_new(loop_base(), -1, 0, on_kick, c);
    c->next = g_conns;
    if (g_conns)
        g_conns->prev = c;
    g_conns = c;
    if (!c->bev) {
        SSL_free(ssl);
        evutil_closesocket(fd);
        c->ssl = NULL;
    }
    if (!c->bev || !c->idle || !c->kick) {
        conn_free(c);
        return;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH_WATER);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    arm_idle(c);
}

void http_shutdown_all(void)
{
    ws_shutdown_all();
    bosh_shutdown_all();
    while (g_conns)
        conn_free(g_conns);
    http_rate_free();
}
