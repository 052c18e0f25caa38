/* An XML stream over a bufferevent: see xstream.h. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "net/xstream.h"

/* ---- parser and socket callbacks ------------------------------------------ */

static int on_header(void *ud, const xs_header *h)
{
    xstream *x = ud;
    return x->ops->header(x->owner, h);
}

static int on_element(void *ud, xmppd_stanza *el)
{
    xstream *x = ud;
    return x->ops->element(x->owner, el);
}

static void on_stream_close(void *ud)
{
    xstream *x = ud;
    /* RFC 6120 §4.4: answer the closing tag with ours, then close. */
    x->ops->close(x->owner, NULL, NULL);
}

static void on_parse_error(void *ud, const char *condition)
{
    xstream *x = ud;
    x->ops->close(x->owner, condition, NULL);
}

static const xs_callbacks parser_cbs = {
    .open = on_header,
    .element = on_element,
    .close = on_stream_close,
    .error = on_parse_error,
};

static void on_read(struct bufferevent *bev, void *arg)
{
    xstream *x = arg;
    if (x->ops->input)
        x->ops->input(x->owner);
    else
        xstream_pump(x);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    xstream *x = arg;
    x->ops->event(x->owner, bev, what);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    xstream *x = arg;
    event_free(x->timer);
    x->timer = NULL;
    x->ops->timeout(x->owner);
}

static void arm(struct event *ev, uint64_t ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(ev, &tv);
}

/* ---- lifetime --------------------------------------------------------------- */

void xstream_init(xstream *x, const xstream_ops *ops, void *owner)
{
    x->ops = ops;
    x->owner = owner;
}

int xstream_open(xstream *x, const xstream_ops *ops, void *owner, struct bufferevent *bev,
                 SSL *ssl, uint64_t timeout_ms)
{
    xstream_init(x, ops, owner);
    x->bev = bev;
    x->ssl = ssl;
    x->parser = xs_new(&parser_cbs, x, g_server.cfg->limits.max_stanza_size,
                       g_server.cfg->limits.max_depth);
    x->timer = evtimer_new(loop_base(), on_timeout, x);
    if (!x->bev || !x->parser || !x->timer)
        return -1;
    arm(x->timer, timeout_ms);
    bufferevent_setcb(bev, on_read, NULL, on_event, x);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    return 0;
}

void xstream_stop_timer(xstream *x)
{
    if (x->timer)
        event_free(x->timer);
    x->timer = NULL;
}

/* Reads and discards what the peer sent after we stopped reading (at most
 * XSTREAM_DRAIN_MAX bytes): closing a socket with unread input makes the
 * kernel send a reset instead of a FIN, and the reset destroys what we
 * wrote last (the stream error that says why) before the peer reads it. */
static void drain_unread(xstream *x)
{
    evutil_socket_t fd = bufferevent_getfd(x->bev);
    char buf[16384];
    size_t total = 0;
    while (fd >= 0 && total < XSTREAM_DRAIN_MAX) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
}

void xstream_release(xstream *x)
{
    xstream_stop_timer(x);
    if (x->bev && x->closing)
        drain_unread(x);
    if (x->bev)
        bufferevent_free(x->bev); /* the SSL and the socket too */
    x->bev = NULL;
    x->ssl = NULL;
    xs_free(x->parser);
    x->parser = NULL;
}

/* ---- output ------------------------------------------------------------------- */

static void free_serialised(const void *data, size_t len, void *extra)
{
    free((void *)data);
}

void xstream_write_raw(xstream *x, const char *data, size_t len)
{
    if (x->bev)
        bufferevent_write(x->bev, data, len);
}

int xstream_queue(xstream *x, const xmppd_stanza *st, size_t *len_r)
{
    if (!x->bev || x->closing)
        return -1;
    size_t len;
    char *xml = xmppd_stanza_to_string(st, x->ops->default_ns, &len);
    if (!xml)
        return -1;
    /* The serialised bytes are handed over, not copied. */
    if (evbuffer_add_reference(bufferevent_get_output(x->bev), xml, len, free_serialised, NULL) < 0) {
        free(xml);
        return -1;
    }
    if (len_r)
        *len_r = len;
    return 0;
}

/* Bytes still queued below the TLS filter (in the socket bufferevent). */
static size_t pending_below(xstream *x)
{
    struct bufferevent *under = bufferevent_get_underlying(x->bev);
    return under ? evbuffer_get_length(bufferevent_get_output(under)) : 0;
}

size_t xstream_backlog(xstream *x)
{
    if (!x->bev)
        return 0;
    /* A STARTTLS filter encrypts whatever it is given into the socket
     * bufferevent below it, so a reader that stopped leaves its bytes there,
     * not above: both count. */
    return evbuffer_get_length(bufferevent_get_output(x->bev)) + pending_below(x);
}

void xstream_check_backlog(xstream *x)
{
    if (!x->closing && xstream_backlog(x) > (size_t)g_server.cfg->limits.max_send_buffer)
        x->ops->close(x->owner, "policy-violation", "Too much data queued for a slow reader");
}

void xstream_write(xstream *x, const xmppd_stanza *st)
{
    if (xstream_queue(x, st, NULL) == 0)
        xstream_check_backlog(x);
}

void xstream_write_features(xstream *x, const xmppd_stanza *f)
{
    xstream_write_raw(x, "<stream:features>", 17);
    for (xmppd_stanza *c = xmppd_stanza_first(f); c; c = xmppd_stanza_next(c))
        xstream_write(x, c);
    xstream_write_raw(x, "</stream:features>", 18);
}

/* ---- closing ------------------------------------------------------------------- */

static void on_close_check(evutil_socket_t fd, short what, void *arg);

/* Tear down once everything we queued reached the socket, or when the grace
 * period ends (a peer that stopped reading cannot hold the stream). */
static void close_when_flushed(xstream *x)
{
    if (!x->bev || xstream_backlog(x) == 0 ||
        xmppd_now_ms() >= x->close_deadline) {
        x->ops->teardown(x->owner);
        return;
    }
    struct timeval tv = { 0, 10000 };
    evtimer_assign(x->timer, loop_base(), on_close_check, x);
    evtimer_add(x->timer, &tv);
}

static void on_close_check(evutil_socket_t fd, short what, void *arg)
{
    close_when_flushed(arg);
}

static void on_flushed(struct bufferevent *bev, void *arg)
{
    xstream *x = arg;
    if (x->closing)
        close_when_flushed(x);
}

/* The check runs on a later loop turn: closing happens inside parser
 * callbacks, and the parser must outlive them. */
static void schedule_close_check(xstream *x, uint64_t grace_ms)
{
    x->closing = true;
    xstream_stop_timer(x);
    x->close_deadline = grace_ms ? xmppd_now_ms() + grace_ms : 0;
    x->timer = evtimer_new(loop_base(), on_close_check, x);
    struct timeval tv = { 0, 0 };
    if (x->timer)
        evtimer_add(x->timer, &tv);
}

void xstream_close(xstream *x, const char *condition, const char *text)
{
    if (!x->header_sent)
        x->ops->send_header(x->owner);
    if (condition) {
        char buf[768];
        int n = snprintf(buf, sizeof(buf), "<stream:error><%s xmlns='%s'/>%s%s%s</stream:error>",
                         condition, XMPPD_NS_STREAMS,
                         text ? "<text xmlns='" XMPPD_NS_STREAMS "'>" : "", text ? text : "",
                         text ? "</text>" : "");
        xstream_write_raw(x, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
    }
    xstream_write_raw(x, "</stream:stream>", 16);
    if (x->bev) {
        bufferevent_disable(x->bev, EV_READ);
        bufferevent_setcb(x->bev, NULL, on_flushed, x->ops->events_while_closing ? on_event : NULL,
                          x);
    }
    schedule_close_check(x, XSTREAM_CLOSE_GRACE_MS);
}

void xstream_drop(xstream *x)
{
    schedule_close_check(x, 0);
}

/* ---- input ------------------------------------------------------------------------ */

void xstream_pump(xstream *x)
{
    struct evbuffer *in = x->bev ? bufferevent_get_input(x->bev) : NULL;
    while (in && x->ops->readable(x->owner) && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t n = v.iov_len;
        x->bytes_in += n;
        int rc = xs_feed(x->parser, v.iov_base, n);
        if (!x->bev)
            break; /* torn down: in is gone */
        evbuffer_drain(in, n);
        if (rc < 0)
            break;
    }
}

int xstream_start_tls(xstream *x, SSL *ssl, bool accepting)
{
    struct evbuffer *in = bufferevent_get_input(x->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    struct bufferevent *tls = ssl ? bufferevent_openssl_filter_new(
        loop_base(), x->bev, ssl, accepting ? BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING,
        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS) : NULL;
    if (!tls) {
        if (ssl)
            SSL_free(ssl);
        return -1;
    }
    x->bev = tls;
    x->ssl = ssl;
    x->header_sent = false; /* a new stream starts: errors need its header */
    xs_reset(x->parser);
    bufferevent_setcb(tls, on_read, NULL, on_event, x);
    bufferevent_enable(tls, EV_READ | EV_WRITE);
    return 0;
}

/* ---- ids and addresses ---------------------------------------------------------------- */

void xstream_random_id(char *out, size_t n)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char rnd[32];
    if (n > sizeof(rnd) + 1)
        n = sizeof(rnd) + 1;
    xmppd_random(rnd, n - 1);
    for (size_t i = 0; i + 1 < n; i++)
        out[i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
    out[n - 1] = '\0';
}

int xstream_peer_addr(const struct sockaddr *sa, char ip[INET6_ADDRSTRLEN])
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, INET6_ADDRSTRLEN);
        return ntohs(s4->sin_port);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, INET6_ADDRSTRLEN);
        return ntohs(s6->sin6_port);
    }
    return 0;
}
