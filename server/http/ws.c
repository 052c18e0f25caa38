/* XMPP over WebSocket (RFC 7395): the opening handshake (RFC 6455 §4.2),
 * frames through wslay, and the XMPP framing as a carrier of a c2s
 * stream (net/xstream.h), so a WebSocket client is an ordinary c2s
 * session: the same SASL, binding, stream management and modules.
 *
 * Each text message must hold exactly one complete element (§3.3.3,
 * checked by ws_msg.c). <open/> and <close/> (urn:ietf:params:xml:ns:
 * xmpp-framing) become the stream header and end. Binary messages are
 * refused with close code 1003, invalid UTF-8 with 1007, messages over
 * limits.max_stanza_size with 1009 (RFC 6455 §7.4.1). An idle connection
 * is pinged every http.websocket.ping_interval; one that does not answer
 * within another interval is lost (stream management may resume it). */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

#include "c2s/c2s.h"
#include "http/http.h"
#include "xml/xmlstream.h"

#define NS_FRAMING "urn:ietf:params:xml:ns:xmpp-framing"
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef struct ws_conn ws_conn;
struct ws_conn {
    struct bufferevent *bev;
    wslay_event_context_ptr ctx;
    xstream *x;              /* the c2s stream; NULL once it released us */
    ws_msg *msgs;            /* the messages' parser (ws_msg.c) */
    struct event *ping;
    uint64_t last_rx;        /* monotonic ms of the last frame received */
    bool ping_out;           /* a ping is unanswered */
    bool closing;            /* our close frame is queued (or waits, close_code) */
    uint16_t close_code;     /* a close frame to send once the messages before it are out */
    bool in_recv;            /* inside wslay_event_recv: flush and lose after it */
    bool lingering;          /* our close is out: reading until the peer's, briefly */
    bool lost;               /* the stream is to be dropped once out of wslay */
    bool freed;              /* resources gone; the struct lives while refs > 0 */
    int refs;                /* 1 for the connection + callbacks running */
    char ip[INET6_ADDRSTRLEN];
    ws_conn *prev, *next;
};

static ws_conn *g_ws;

static void ws_free(ws_conn *w);
static void ws_flush(ws_conn *w);
static void ws_done_if_flushed(ws_conn *w);

static void ws_unref(ws_conn *w)
{
    if (--w->refs == 0)
        free(w);
}

/* ---- the opening handshake ---------------------------------------------------------- */

/* Does the comma-separated header value list hold token (case-insensitive)? */
static bool has_token(const char *list, const char *token)
{
    size_t tl = strlen(token);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == tl && strncasecmp(p, token, tl) == 0)
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

static void refuse(xmppd_http_request *req, int status, const char *why)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "%d %s\n%s\n", status, http_status_text(status), why);
    http_request_respond(req, status, "text/plain; charset=utf-8", body, (size_t)n);
}

/* Sec-WebSocket-Accept (RFC 6455 §4.2.2): base64(SHA-1(key + GUID)). */
static char *accept_of(const char *key)
{
    char in[128];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int n = snprintf(in, sizeof(in), "%s%s", key, WS_GUID);
    if (n < 0 || (size_t)n >= sizeof(in) ||
        !EVP_Digest(in, (size_t)n, md, &mdlen, EVP_sha1(), NULL))
        return NULL;
    return xmppd_base64_encode(md, mdlen);
}

/* 0, or the status and reason of a handshake to refuse. */
static int check_handshake(const xmppd_http_request *req, const char **why)
{
    const char *upgrade = http_request_header(req, "Upgrade");
    const char *connection = http_request_header(req, "Connection");
    const char *version = http_request_header(req, "Sec-WebSocket-Version");
    const char *key = http_request_header(req, "Sec-WebSocket-Key");
    const char *proto = http_request_header(req, "Sec-WebSocket-Protocol");
    unsigned char *raw = NULL;
    size_t rawlen = 0;
    int status = 0;
    if (req->method != XMPPD_HTTP_GET)
        *why = "a WebSocket handshake is a GET request", status = 400;
    else if (!has_token(upgrade, "websocket") || !has_token(connection, "upgrade"))
        *why = "expected Upgrade: websocket and Connection: Upgrade", status = 400;
    else if (!version || strcmp(version, "13") != 0)
        *why = "this server speaks WebSocket version 13", status = 426;
    else if (!key || xmppd_base64_decode(key, strlen(key), &raw, &rawlen) < 0 || rawlen != 16)
        *why = "Sec-WebSocket-Key must be 16 bytes in base64", status = 400;
    else if (!has_token(proto, "xmpp"))
        /* RFC 7395 §3.1: the endpoint speaks only the xmpp subprotocol. */
        *why = "this endpoint speaks the xmpp subprotocol (RFC 7395): send "
               "Sec-WebSocket-Protocol: xmpp", status = 400;
    free(raw);
    return status;
}

/* ---- wslay I/O over the bufferevent -------------------------------------------------- */

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    ws_conn *w = ud;
    int n = evbuffer_remove(bufferevent_get_input(w->bev), buf, len);
    if (n <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    return n;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    ws_conn *w = ud;
    if (evbuffer_add(bufferevent_get_output(w->bev), data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void ws_queue_text(ws_conn *w, const char *text, size_t len)
{
    struct wslay_event_msg msg = { WSLAY_TEXT_FRAME, (const uint8_t *)text, len };
    if (wslay_event_queue_msg(w->ctx, &msg) == 0)
        ws_flush(w);
}

/* A close frame with a reason goes out at once (a failed connection);
 * a normal one after the messages queued before it (wslay sends control
 * frames first). */
static void ws_close_frame(ws_conn *w, uint16_t code, const char *reason)
{
    if (w->closing)
        return;
    w->closing = true;
    if (reason || code != WSLAY_CODE_NORMAL_CLOSURE)
        wslay_event_queue_close(w->ctx, code, (const uint8_t *)reason, reason ? strlen(reason) : 0);
    else
        w->close_code = code;
    ws_flush(w);
}

static void ws_flush(ws_conn *w)
{
    if (!w->ctx || w->in_recv)
        return;
    if (wslay_event_want_write(w->ctx))
        wslay_event_send(w->ctx);
    if (w->close_code && wslay_event_get_queued_msg_count(w->ctx) == 0) {
        wslay_event_queue_close(w->ctx, w->close_code, NULL, 0);
        w->close_code = 0;
        wslay_event_send(w->ctx);
    }
}

/* ---- the carrier (what c2s writes) --------------------------------------------------------- */

static void car_header(void *cud, const char *id, const char *from)
{
    ws_conn *w = cud;
    char buf[512];
    int n = snprintf(buf, sizeof(buf),
                     "<open xmlns='" NS_FRAMING "' id='%s'%s%s%s version='1.0' xml:lang='en'/>", id,
                     from ? " from='" : "", from ? from : "", from ? "'" : "");
    ws_queue_text(w, buf, (size_t)n);
}

static int car_element(void *cud, char *xml, size_t len)
{
    ws_conn *w = cud;
    ws_queue_text(w, xml, len); /* wslay copies it */
    free(xml);
    return 0;
}

static void car_close(void *cud, const char *condition, const char *text)
{
    ws_conn *w = cud;
    if (condition) {
        char buf[768];
        ws_queue_text(w, buf, xstream_error_xml(buf, sizeof(buf), condition, text, true));
    }
    static const char close_el[] = "<close xmlns='" NS_FRAMING "'/>";
    ws_queue_text(w, close_el, sizeof(close_el) - 1);
    ws_close_frame(w, WSLAY_CODE_NORMAL_CLOSURE, NULL);
}

static size_t car_backlog(void *cud)
{
    ws_conn *w = cud;
    return evbuffer_get_length(bufferevent_get_output(w->bev)) +
           wslay_event_get_queued_msg_length(w->ctx);
}

/* The c2s side is gone: the connection ends once our close is out. */
static void car_release(void *cud)
{
    ws_conn *w = cud;
    w->x = NULL;
    if (!w->closing)
        ws_free(w);
    else
        ws_done_if_flushed(w);
}

static const xstream_carrier ws_carrier = {
    .name = "websocket",
    .default_ns = NS_FRAMING, /* so every element carries its xmlns (§3.3.3) */
    .header = car_header,
    .element = car_element,
    .close = car_close,
    .backlog = car_backlog,
    .release = car_release,
};

/* ---- messages in ------------------------------------------------------------------------------ */

/* A whole message's element: the stream header, its end, or a stanza. */
static void dispatch_element(ws_conn *w, xmppd_stanza *el)
{
    const char *ns = xmppd_stanza_ns(el), *name = xmppd_stanza_name(el);
    if (strcmp(ns, NS_FRAMING) == 0 && strcmp(name, "open") == 0) {
        xs_header h = { .to = xmppd_stanza_attr(el, "to"), .from = xmppd_stanza_attr(el, "from"),
                        .version = xmppd_stanza_attr(el, "version"),
                        .lang = xmppd_stanza_attr(el, "xml:lang"), .default_ns = XMPPD_NS_CLIENT };
        const char *other = g_server.cfg->http.websocket.see_other_uri;
        if (other) {
            /* RFC 7395 §3.6.1: answer the open, then send the client elsewhere. */
            char buf[1024];
            const char *to = h.to && !strpbrk(h.to, "'<&\"") ? h.to : "";
            int n = snprintf(buf, sizeof(buf), "<open xmlns='" NS_FRAMING "' from='%s' id='redirect' "
                             "version='1.0' xml:lang='en'/>", to);
            if (n > 0 && (size_t)n < sizeof(buf))
                ws_queue_text(w, buf, (size_t)n);
            n = snprintf(buf, sizeof(buf), "<close xmlns='" NS_FRAMING "' see-other-uri='%s'/>", other);
            ws_queue_text(w, buf, (size_t)n);
            ws_close_frame(w, WSLAY_CODE_NORMAL_CLOSURE, NULL);
        } else if (w->x) {
            xstream_carrier_header(w->x, &h);
        }
        xmppd_stanza_unref(el);
    } else if (strcmp(ns, NS_FRAMING) == 0 && strcmp(name, "close") == 0) {
        if (w->x)
            xstream_carrier_close(w->x);
        xmppd_stanza_unref(el);
    } else if (w->x) {
        xstream_carrier_element(w->x, el);
    } else {
        xmppd_stanza_unref(el);
    }
}

/* The stream ends with a stream error the c2s side writes (it may be gone). */
static void stream_error(ws_conn *w, const char *condition)
{
    if (w->x)
        xstream_carrier_error(w->x, condition);
    else
        ws_close_frame(w, WSLAY_CODE_PROTOCOL_ERROR, NULL);
}

static void on_text(ws_conn *w, const uint8_t *msg, size_t len)
{
    xmppd_stanza *el = NULL;
    const char *cond = NULL;
    int rc = ws_msg_feed(w->msgs, msg, len, &el, &cond);
    if (rc == WS_MSG_BAD_UTF8) {
        /* RFC 6455 §8.1: fail the connection with 1007. */
        ws_close_frame(w, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8");
        wslay_event_shutdown_read(w->ctx);
        w->lost = true;
    } else if (rc == WS_MSG_STREAM_ERROR) {
        stream_error(w, cond);
    } else if (el) {
        dispatch_element(w, el);
    }
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *ud)
{
    ws_conn *w = ud;
    w->last_rx = xmppd_now_ms();
    w->ping_out = false;
    if (arg->opcode == WSLAY_TEXT_FRAME) {
        on_text(w, arg->msg, arg->msg_length);
    } else if (arg->opcode == WSLAY_BINARY_FRAME) {
        /* RFC 7395 §3.2: XMPP travels in text frames only. */
        ws_close_frame(w, WSLAY_CODE_UNSUPPORTED_DATA, "binary frames are not XMPP");
        wslay_event_shutdown_read(ctx);
        w->lost = true;
    } else if (arg->opcode == WSLAY_CONNECTION_CLOSE && !w->closing) {
        /* A close frame without <close/>: the stream was not ended, it
         * was dropped (stream management may keep the session). */
        w->lost = true;
    }
}

/* ---- the connection ---------------------------------------------------------------------------- */

static void ws_done_if_flushed(ws_conn *w)
{
    if (w->freed)
        return;
    bool out_empty = evbuffer_get_length(bufferevent_get_output(w->bev)) == 0 &&
                     !wslay_event_want_write(w->ctx) && !w->close_code;
    if (!out_empty)
        return;
    if (w->x && w->closing) {
        xstream_carrier_flushed(w->x);
    } else if (!w->x && w->closing && !w->lingering &&
               !wslay_event_get_close_received(w->ctx)) {
        /* RFC 6455 §7.1.1: the peer may still be sending; read (and drop)
         * until its close frame, or a short while, before closing TCP. */
        w->lingering = true;
        bufferevent_enable(w->bev, EV_READ);
        struct timeval tv = { 2, 0 };
        evtimer_add(w->ping, &tv);
    } else if (!w->x && w->closing && !w->lingering) {
        ws_free(w);
    }
}

/* The connection is over for the stream: c2s tears down (and its release
 * frees w), or w goes at once when no stream is left. */
static void lose(ws_conn *w)
{
    if (w->x)
        xstream_carrier_lost(w->x);
    else
        ws_free(w);
}

static void on_read_held(ws_conn *w);

static void on_read(struct bufferevent *bev, void *arg)
{
    ws_conn *w = arg;
    w->refs++;
    on_read_held(w);
    ws_unref(w);
}

static void on_read_held(ws_conn *w)
{
    if (w->lingering) {
        if (wslay_event_get_read_enabled(w->ctx))
            wslay_event_recv(w->ctx);
        struct evbuffer *in = bufferevent_get_input(w->bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        if (wslay_event_get_close_received(w->ctx))
            ws_free(w);
        return;
    }
    w->in_recv = true;
    int rc = wslay_event_recv(w->ctx);
    w->in_recv = false;
    /* Oversize messages: wslay queued close 1009 and stopped reading. */
    if (wslay_event_get_close_sent(w->ctx) && !w->closing) {
        w->closing = true;
        w->lost = true;
    }
    ws_flush(w);
    if (rc != 0 || w->lost) {
        if (!w->closing || rc != 0) {
            lose(w);
            return;
        }
        /* Our close frame goes out first; the stream ends now. */
        w->lost = false;
        if (w->x) {
            xstream *x = w->x;
            w->x = NULL;
            xstream_carrier_lost(x);
        }
        ws_done_if_flushed(w);
    }
}

static void on_write(struct bufferevent *bev, void *arg)
{
    ws_conn *w = arg;
    w->refs++;
    ws_flush(w);
    ws_done_if_flushed(w);
    ws_unref(w);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    ws_conn *w = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    lose(w);
}

static void on_ping(evutil_socket_t fd, short what, void *arg)
{
    ws_conn *w = arg;
    if (w->lingering) {
        ws_free(w);
        return;
    }
    uint64_t every = (uint64_t)g_server.cfg->http.websocket.ping_interval;
    uint64_t idle = xmppd_now_ms() - w->last_rx;
    if (idle >= every && w->ping_out && idle >= 2 * every) {
        log_kernel("websocket", XMPPD_LOG_INFO, "%s: no answer to ping", w->ip);
        lose(w);
        return;
    }
    if (idle >= every && !w->ping_out && !w->closing) {
        struct wslay_event_msg ping = { WSLAY_PING, NULL, 0 };
        wslay_event_queue_msg(w->ctx, &ping);
        ws_flush(w);
        w->ping_out = true;
    }
    struct timeval tv = { (time_t)(every / 2000), (suseconds_t)((every / 2) % 1000) * 1000 };
    evtimer_add(w->ping, &tv);
}

static void ws_free(ws_conn *w)
{
    if (w->freed)
        return;
    w->freed = true;
    if (w->prev)
        w->prev->next = w->next;
    else
        g_ws = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    if (w->x) {
        xstream *x = w->x;
        w->x = NULL;
        xstream_carrier_lost(x); /* c2s tears down; its release finds w freed */
    }
    if (w->ping)
        event_free(w->ping);
    if (w->bev)
        bufferevent_free(w->bev);
    conn_ip_release(w->ip);
    wslay_event_context_free(w->ctx);
    w->ctx = NULL;
    ws_msg_free(w->msgs);
    w->msgs = NULL;
    w->bev = NULL;
    w->ping = NULL;
    ws_unref(w);
}

static int ws_start(ws_conn *w, struct bufferevent *bev, SSL *ssl, const xmppd_http_request *req)
{
    static const struct wslay_event_callbacks cbs = {
        .recv_callback = ws_recv, .send_callback = ws_send, .on_msg_recv_callback = on_msg,
    };
    w->bev = bev;
    snprintf(w->ip, sizeof(w->ip), "%s", req->ip);
    w->last_rx = xmppd_now_ms();
    if (wslay_event_context_server_init(&w->ctx, &cbs, w) != 0)
        return -1;
    wslay_event_config_set_max_recv_msg_length(w->ctx, (uint64_t)g_server.cfg->limits.max_stanza_size);
    w->msgs = ws_msg_new((size_t)g_server.cfg->limits.max_stanza_size,
                         (unsigned)g_server.cfg->limits.max_depth);
    w->ping = evtimer_new(loop_base(), on_ping, w);
    if (!w->msgs || !w->ping)
        return -1;
    w->x = c2s_open_carried(&ws_carrier, w, req->ip, req->secure, ssl);
    if (!w->x)
        return -1;
    bufferevent_setcb(bev, on_read, on_write, on_event, w);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    uint64_t every = (uint64_t)g_server.cfg->http.websocket.ping_interval;
    struct timeval tv = { (time_t)(every / 2000), (suseconds_t)((every / 2) % 1000) * 1000 };
    evtimer_add(w->ping, &tv);
    return 0;
}

void ws_upgrade(http_conn *c, xmppd_http_request *req)
{
    const char *why = NULL;
    int status = check_handshake(req, &why);
    if (status) {
        if (status == 426)
            xmppd_http_set_header(req, "Sec-WebSocket-Version", "13");
        refuse(req, status, why);
        return;
    }
    char *accept = accept_of(http_request_header(req, "Sec-WebSocket-Key"));
    SSL *ssl = http_conn_ssl(c);
    ws_conn *w = accept ? calloc(1, sizeof(*w)) : NULL;
    if (!w) {
        free(accept);
        refuse(req, 500, "out of memory");
        return;
    }
    w->refs = 1;
    w->next = g_ws;
    if (g_ws)
        g_ws->prev = w;
    g_ws = w;
    /* The request's facts are needed after the HTTP side is gone. */
    req->refs++;
    struct bufferevent *bev = http_conn_take(c);
    if (!bev) {
        w->freed = true; /* nothing to free but the struct */
        g_ws = w->next;
        if (g_ws)
            g_ws->prev = NULL;
        free(w);
        free(accept);
        http_request_release(req);
        return;
    }
    evbuffer_add_printf(bufferevent_get_output(bev),
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                        "Sec-WebSocket-Protocol: xmpp\r\n\r\n", accept);
    free(accept);
    if (ws_start(w, bev, ssl, req) < 0) {
        log_kernel("websocket", XMPPD_LOG_WARN, "%s: cannot start the stream", req->ip);
        ws_free(w);
    } else {
        log_kernel("websocket", XMPPD_LOG_DEBUG, "%s: WebSocket stream opened", req->ip);
        /* Frames that came with the handshake. */
        if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
            on_read(bev, w);
    }
    http_request_release(req);
}

void ws_shutdown_all(void)
{
    while (g_ws)
        ws_free(g_ws);
}
