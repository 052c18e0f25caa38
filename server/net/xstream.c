/* An XML stream over a bufferevent: see xstream.h. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/metrics.h"
#include "net/xstream_io.h"

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

static void input_ready(xstream *x)
{
    if (x->ops->input)
        x->ops->input(x->owner);
    else
        xstream_pump(x);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    xstream *x = arg;
    if (x->closing)
        return;
    xidle_touch(x);
    /* Under TLS the first bytes are the handshake's. */
    if (x->ssl && !xtls_handshake(x))
        return;
    input_ready(x);
}

static void close_when_flushed(xstream *x);

static void on_write(struct bufferevent *bev, void *arg)
{
    xstream *x = arg;
    xout_drained(x);
    if (x->closing)
        close_when_flushed(x);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    xstream *x = arg;
    if (what & BEV_EVENT_CONNECTED) {
        /* An outgoing connection: what was written while connecting can
         * go; with direct TLS the owner hears "connected" after the
         * handshake instead. */
        x->connected = true;
        xout_mark(x);
        if (x->ssl && x->tls == XT_HANDSHAKE) {
            xtls_handshake(x);
            return;
        }
    }
    if (x->closing && !x->ops->events_while_closing)
        return;
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

/* ---- carried streams: queued input --------------------------------------------- */

enum { IN_HEADER, IN_ELEMENT, IN_CLOSE, IN_ERROR };

struct xstream_input {
    struct xstream_input *next;
    int kind;
    xmppd_stanza *el;           /* IN_ELEMENT */
    const char *condition;      /* IN_ERROR: a static condition name */
    char *to, *from, *version, *lang, *ns; /* IN_HEADER */
};

static void input_free(struct xstream_input *in)
{
    xmppd_stanza_unref(in->el);
    free(in->to);
    free(in->from);
    free(in->version);
    free(in->lang);
    free(in->ns);
    free(in);
}

static void enqueue(xstream *x, struct xstream_input *in)
{
    if (x->in_tail)
        x->in_tail->next = in;
    else
        x->in_head = in;
    x->in_tail = in;
    if (x->ops->input)
        x->ops->input(x->owner);
    else
        xstream_pump(x);
}

static struct xstream_input *new_input(xstream *x, int kind)
{
    if (!x->carrier)
        return NULL;
    struct xstream_input *in = calloc(1, sizeof(*in));
    if (in)
        in->kind = kind;
    return in;
}

void xstream_carrier_header(xstream *x, const xs_header *h)
{
    struct xstream_input *in = new_input(x, IN_HEADER);
    if (!in)
        return;
    in->to = h->to ? strdup(h->to) : NULL;
    in->from = h->from ? strdup(h->from) : NULL;
    in->version = h->version ? strdup(h->version) : NULL;
    in->lang = h->lang ? strdup(h->lang) : NULL;
    in->ns = h->default_ns ? strdup(h->default_ns) : NULL;
    enqueue(x, in);
}

void xstream_carrier_element(xstream *x, xmppd_stanza *el)
{
    struct xstream_input *in = new_input(x, IN_ELEMENT);
    if (!in) {
        xmppd_stanza_unref(el);
        return;
    }
    in->el = el;
    enqueue(x, in);
}

void xstream_carrier_close(xstream *x)
{
    struct xstream_input *in = new_input(x, IN_CLOSE);
    if (in)
        enqueue(x, in);
}

void xstream_carrier_error(xstream *x, const char *condition)
{
    struct xstream_input *in = new_input(x, IN_ERROR);
    if (in) {
        in->condition = condition;
        enqueue(x, in);
    }
}

void xstream_carrier_lost(xstream *x)
{
    if (x->carrier)
        x->ops->event(x->owner, NULL, BEV_EVENT_EOF);
}

/* Hands queued input to the owner while it can take it; stops at a
 * header or element callback asking to stop. */
static void pump_carried(xstream *x)
{
    while (x->carrier && x->in_head && x->ops->readable(x->owner)) {
        struct xstream_input *in = x->in_head;
        x->in_head = in->next;
        if (!x->in_head)
            x->in_tail = NULL;
        int stop = 0;
        if (in->kind == IN_HEADER) {
            xs_header h = { .to = in->to, .from = in->from, .version = in->version,
                            .lang = in->lang, .default_ns = in->ns };
            stop = x->ops->header(x->owner, &h);
        } else if (in->kind == IN_ELEMENT) {
            xmppd_stanza *el = in->el;
            in->el = NULL;
            stop = x->ops->element(x->owner, el);
        } else {
            x->ops->close(x->owner, in->kind == IN_ERROR ? in->condition : NULL, NULL);
            stop = 1;
        }
        input_free(in);
        if (stop)
            break;
    }
}

/* ---- lifetime --------------------------------------------------------------- */

void xio_install(xstream *x, struct bufferevent *bev)
{
    x->bev = bev;
    bufferevent_setcb(bev, on_read, on_write, on_event, x);
    /* Writes go out by the flush (xstream_out.c); the bufferevent watches
     * for writability only while the socket is full. */
    bufferevent_disable(bev, EV_WRITE);
    bufferevent_enable(bev, EV_READ);
}

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
    x->parser = xs_new(&parser_cbs, x, g_server.cfg->limits.max_stanza_size,
                       g_server.cfg->limits.max_depth);
    x->timer = evtimer_new(loop_base(), on_timeout, x);
    if (!x->bev || !x->parser || !x->timer) {
        SSL_free(ssl);
        return -1;
    }
    arm(x->timer, timeout_ms);
    /* An accepted socket is connected; an outgoing one is told so. */
    x->connected = bufferevent_getfd(bev) >= 0;
    xio_install(x, bev);
    xidle_touch(x);
    if (ssl && xtls_attach(x, ssl, SSL_is_server(ssl)) < 0)
        return -1;
    return 0;
}

int xstream_open_carrier(xstream *x, const xstream_ops *ops, void *owner,
                         const xstream_carrier *car, void *cud, SSL *ssl, uint64_t timeout_ms)
{
    xstream_init(x, ops, owner);
    x->carrier = car;
    x->cud = cud;
    x->ssl = ssl;
    x->timer = evtimer_new(loop_base(), on_timeout, x);
    if (!x->timer)
        return -1;
    arm(x->timer, timeout_ms);
    return 0;
}

void xstream_stop_timer(xstream *x)
{
    if (x->timer)
        event_free(x->timer);
    x->timer = NULL;
}

void xstream_release(xstream *x)
{
    xstream_stop_timer(x);
    xout_forget(x);
    xidle_remove(x);
    if (x->bev && x->closing) /* the socket closes when the peer has our last bytes */
        net_linger(dup(bufferevent_getfd(x->bev)));
    if (x->bev) {
        bufferevent_free(x->bev); /* and the socket */
        SSL_free(x->ssl);         /* a carried stream's is the carrier's */
    } else if (x->parked) {
        xidle_unpark_close(x);    /* nothing in flight: closed at once */
    }
    x->bev = NULL;
    x->ssl = NULL;
    x->tls = XT_NONE;
    xs_free(x->parser);
    x->parser = NULL;
    if (x->carrier) {
        const xstream_carrier *car = x->carrier;
        x->carrier = NULL;
        car->release(x->cud);
        x->cud = NULL;
    }
    while (x->in_head) {
        struct xstream_input *in = x->in_head;
        x->in_head = in->next;
        input_free(in);
    }
    x->in_tail = NULL;
}

/* ---- output ------------------------------------------------------------------- */

void xstream_write_raw(xstream *x, const char *data, size_t len)
{
    if (xidle_wake(x))
        xout_append(x, data, len);
}

void xstream_send_header(xstream *x, const char *xml, size_t len, const char *id,
                         const char *from)
{
    if (x->carrier)
        x->carrier->header(x->cud, id, from);
    else
        xstream_write_raw(x, xml, len);
    x->header_sent = true;
}

void xstream_pause_input(xstream *x)
{
    if (xidle_wake(x))
        bufferevent_disable(x->bev, EV_READ);
}

void xstream_resume_input(xstream *x)
{
    if (xidle_wake(x))
        bufferevent_enable(x->bev, EV_READ);
    /* What arrived meanwhile is read already: no read event comes for it. */
    if (x->ssl && x->bev && !xtls_handshake(x))
        return;
    input_ready(x);
}

void xstream_restart(xstream *x)
{
    x->header_sent = false;
    if (x->parser)
        xs_reset(x->parser);
}

/* A carried element: serialised against the carrier's namespace. */
static int queue_carried(xstream *x, const xmppd_stanza *st, size_t *len_r)
{
    xbuf b = { 0 };
    if (stanza_serialise(&b, st, x->carrier->default_ns) < 0)
        return -1;
    size_t len = b.len;
    xbuf_put(&b, "", 1); /* the carrier takes a C string */
    if (b.oom) {
        xbuf_free(&b);
        return -1;
    }
    if (len_r)
        *len_r = len;
    if (x->carrier->element(x->cud, b.p, len) < 0)
        return -1;
    x->out_total = x->out_flushed = x->out_sent = x->out_total + len;
    return 0;
}

int xstream_queue(xstream *x, const xmppd_stanza *st, size_t *len_r)
{
    if (x->carrier && !x->closing)
        return queue_carried(x, st, len_r);
    if (x->closing || !xidle_wake(x))
        return -1;
    size_t before = x->out.len;
    if (stanza_serialise(&x->out, st, x->ops->default_ns) < 0)
        return -1;
    if (len_r)
        *len_r = x->out.len - before;
    x->out_total += x->out.len - before;
    xout_mark(x);
    return 0;
}

size_t xstream_backlog(xstream *x)
{
    if (x->carrier)
        return x->carrier->backlog(x->cud);
    if (!x->bev)
        return 0;
    /* This turn's output, and what the socket did not take yet (under TLS,
     * records: a reader that stopped leaves its bytes there). */
    return x->out.len + evbuffer_get_length(bufferevent_get_output(x->bev));
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

/* RFC 7395 §3.3.3, XEP-0206 §6: the features element declares its
 * prefix, as there is no stream root to have done so. */
static void write_features_carried(xstream *x, const xmppd_stanza *f)
{
    static const char open[] = "<stream:features xmlns:stream='" XS_NS_STREAM "'>";
    static const char close[] = "</stream:features>";
    size_t cap = sizeof(open) + sizeof(close), len = 0;
    char *buf = malloc(cap);
    if (buf) {
        memcpy(buf, open, sizeof(open) - 1);
        len = sizeof(open) - 1;
    }
    for (xmppd_stanza *c = xmppd_stanza_first(f); buf && c; c = xmppd_stanza_next(c)) {
        size_t n;
        char *xml = xmppd_stanza_to_string(c, x->carrier->default_ns, &n);
        char *grown = xml ? realloc(buf, cap + n) : NULL;
        if (!grown) {
            free(xml);
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap += n;
        memcpy(buf + len, xml, n);
        len += n;
        free(xml);
    }
    if (!buf)
        return;
    memcpy(buf + len, close, sizeof(close) - 1);
    len += sizeof(close) - 1;
    x->carrier->element(x->cud, buf, len);
}

void xstream_write_features(xstream *x, const xmppd_stanza *f)
{
    if (x->carrier) {
        write_features_carried(x, f);
        return;
    }
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
    if (x->carrier && !x->flushed && xmppd_now_ms() < x->close_deadline) {
        struct timeval tv = { 0, 10000 };
        evtimer_assign(x->timer, loop_base(), on_close_check, x);
        evtimer_add(x->timer, &tv);
        return;
    }
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

size_t xstream_error_xml(char *buf, size_t len, const char *condition, const char *text,
                         bool declare)
{
    int n = snprintf(buf, len, "<stream:error%s><%s xmlns='%s'/>%s%s%s</stream:error>",
                     declare ? " xmlns:stream='" XS_NS_STREAM "'" : "", condition, XMPPD_NS_STREAMS,
                     text ? "<text xmlns='" XMPPD_NS_STREAMS "'>" : "", text ? text : "",
                     text ? "</text>" : "");
    return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

void xstream_carrier_flushed(xstream *x)
{
    x->flushed = true;
}

void xstream_close(xstream *x, const char *condition, const char *text)
{
    if (x->carrier) {
        /* The carrier writes the error and its own end of stream, after
         * our header as on a socket (RFC 6120 §4.9.1.1). */
        if (!x->header_sent)
            x->ops->send_header(x->owner);
        x->carrier->close(x->cud, condition, text);
        schedule_close_check(x, XSTREAM_CLOSE_GRACE_MS);
        return;
    }
    if (!x->header_sent)
        x->ops->send_header(x->owner);
    if (condition) {
        char buf[768];
        xstream_write_raw(x, buf, xstream_error_xml(buf, sizeof(buf), condition, text, false));
    }
    xstream_write_raw(x, "</stream:stream>", 16);
    if (x->bev)
        bufferevent_disable(x->bev, EV_READ);
    schedule_close_check(x, XSTREAM_CLOSE_GRACE_MS);
}

void xstream_drop(xstream *x)
{
    schedule_close_check(x, 0);
}

/* ---- input ------------------------------------------------------------------------ */

void xstream_pump(xstream *x)
{
    if (x->carrier) {
        pump_carried(x);
        return;
    }
    if (x->ssl) {
        xtls_pump(x);
        return;
    }
    struct evbuffer *in = x->bev ? bufferevent_get_input(x->bev) : NULL;
    while (in && x->ops->readable(x->owner) && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t n = v.iov_len;
        x->bytes_in += n;
        metrics_bytes(METRICS_IN, n);
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
    if (!ssl || x->ssl) {
        SSL_free(ssl);
        return -1;
    }
    /* <proceed/> (or our <starttls/>) leaves before the first record. */
    xout_flush(x);
    if (xtls_attach(x, ssl, accepting) < 0)
        return -1;
    x->header_sent = false; /* a new stream starts: errors need its header */
    xs_reset(x->parser);
    return 0;
}

bool xstream_has_socket(const xstream *x)
{
    return x->bev || x->parked;
}

bool xstream_input_pending(const xstream *x)
{
    if (x->carrier)
        return x->in_head != NULL;
    return x->bev && (evbuffer_get_length(bufferevent_get_input(x->bev)) > 0 || xtls_pending(x));
}

unsigned long xstream_tls_error(const xstream *x)
{
    return x->tls_error;
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
