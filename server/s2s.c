/* Server-to-server streams: what both directions share. Buffers, the XML
 * parser, STARTTLS, closing, timers and the list of every stream; the
 * protocol lives in s2s_in.c and s2s_out.c. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "s2s.h"

static s2s_conn *all_conns;
static size_t n_conns;
static bool shutting_down;

static void teardown(s2s_conn *c);
static void process_input(s2s_conn *c);

/* ---- lifetime ------------------------------------------------------------ */

s2s_conn *s2s_conn_new(bool outgoing)
{
    s2s_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->refs = 1; /* the connection's own, dropped by teardown */
    c->outgoing = outgoing;
    c->state = outgoing ? S2S_CONNECTING : S2S_HEADER;
    c->cert_valid = -1;
    c->next = all_conns;
    if (all_conns)
        all_conns->prev = c;
    all_conns = c;
    n_conns++;
    return c;
}

void s2s_conn_ref(s2s_conn *c)
{
    c->refs++;
}

void s2s_conn_unref(s2s_conn *c)
{
    if (!c || --c->refs > 0)
        return;
    for (size_t i = 0; i < c->n_pairs; i++) {
        free(c->pairs[i].local);
        free(c->pairs[i].remote);
    }
    free(c->pairs);
    free(c->local);
    free(c->remote);
    free(c);
}

static void list_remove(s2s_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (all_conns == c)
        all_conns = c->next;
    else
        return; /* not listed */
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    n_conns--;
    if (shutting_down && n_conns == 0)
        loop_break();
}

/* ---- output ------------------------------------------------------------------ */

static void free_serialised(const void *data, size_t len, void *extra)
{
    free((void *)data);
}

void s2s_write_raw(s2s_conn *c, const char *data, size_t len)
{
    if (c->bev && c->state != S2S_CLOSED)
        bufferevent_write(c->bev, data, len);
}

void s2s_write(s2s_conn *c, const xmppd_stanza *el)
{
    if (!c->bev || c->state == S2S_CLOSED || c->state == S2S_CLOSING)
        return;
    size_t len;
    char *xml = xmppd_stanza_to_string(el, XMPPD_NS_SERVER, &len);
    if (!xml)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_add_reference(out, xml, len, free_serialised, NULL) < 0) {
        free(xml);
        return;
    }
    if (evbuffer_get_length(out) > g_server.cfg->limits.max_send_buffer)
        s2s_close(c, "policy-violation", "Too much data queued for a slow reader");
}

/* Appends s to buf with XML attribute escaping. */
static size_t put_escaped(char *buf, size_t cap, size_t n, const char *s)
{
    for (; *s && n + 7 < cap; s++) {
        const char *e = NULL;
        switch (*s) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '\'': e = "&apos;"; break;
        case '"': e = "&quot;"; break;
        default: buf[n++] = *s; continue;
        }
        size_t el = strlen(e);
        memcpy(buf + n, e, el);
        n += el;
    }
    buf[n] = '\0';
    return n;
}

void s2s_send_header(s2s_conn *c)
{
    char buf[3 * 1024 * 6 + 512];
    size_t n = (size_t)snprintf(buf, sizeof(buf),
                                "<?xml version='1.0'?><stream:stream xmlns='" XMPPD_NS_SERVER
                                "' xmlns:stream='" XS_NS_STREAM "' xmlns:db='" NS_DIALBACK "'");
    if (!c->outgoing) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, " id='%s'", c->stream_id);
    }
    if (c->local) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, " from='");
        n = put_escaped(buf, sizeof(buf), n, c->local);
        buf[n++] = '\'';
    }
    if (c->remote) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, " to='");
        n = put_escaped(buf, sizeof(buf), n, c->remote);
        buf[n++] = '\'';
    }
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, " version='1.0'>");
    s2s_write_raw(c, buf, n);
    c->header_sent = true;
}

void s2s_add_error(xmppd_stanza *el, const char *type, const char *cond)
{
    xmppd_stanza *e = xmppd_stanza_tag(el, "error", NS_DIALBACK);
    if (!e)
        return;
    xmppd_stanza_set_attr(e, "type", type);
    xmppd_stanza_tag(e, cond, XMPPD_NS_STANZAS);
}

/* ---- closing ------------------------------------------------------------------ */

static size_t pending_below(s2s_conn *c)
{
    struct bufferevent *under = bufferevent_get_underlying(c->bev);
    return under ? evbuffer_get_length(bufferevent_get_output(under)) : 0;
}

static void on_close_check(evutil_socket_t fd, short what, void *arg);

static void close_when_flushed(s2s_conn *c)
{
    if (!c->bev ||
        (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 && pending_below(c) == 0) ||
        xmppd_now_ms() >= c->close_deadline) {
        teardown(c);
        return;
    }
    struct timeval tv = { 0, 10000 };
    evtimer_assign(c->timer, loop_base(), on_close_check, c);
    evtimer_add(c->timer, &tv);
}

static void on_close_check(evutil_socket_t fd, short what, void *arg)
{
    close_when_flushed(arg);
}

static void on_flushed(struct bufferevent *bev, void *arg)
{
    s2s_conn *c = arg;
    if (c->state == S2S_CLOSING)
        close_when_flushed(c);
}

static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

void s2s_close(s2s_conn *c, const char *condition, const char *text)
{
    if (c->state == S2S_CLOSING || c->state == S2S_CLOSED)
        return;
    if (c->outgoing)
        s2s_out_conn_lost(c, false); /* new stanzas need a new stream */
    if (c->state == S2S_CONNECTING || !c->bev) {
        /* Nothing was said yet: just drop the socket (on a later turn). */
        c->state = S2S_CLOSING;
        c->close_deadline = 0;
    } else {
        if (!c->header_sent)
            s2s_send_header(c);
        if (condition) {
            char buf[768];
            int n = snprintf(buf, sizeof(buf),
                             "<stream:error><%s xmlns='%s'/>%s%s%s</stream:error>", condition,
                             XMPPD_NS_STREAMS,
                             text ? "<text xmlns='" XMPPD_NS_STREAMS "'>" : "", text ? text : "",
                             text ? "</text>" : "");
            s2s_write_raw(c, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
            log_kernel(c->outgoing ? "s2s-out" : "s2s-in", XMPPD_LOG_INFO,
                       "%s [%s]: stream error %s%s%s", c->remote ? c->remote : "?", c->ip,
                       condition, text ? ": " : "", text ? text : "");
        }
        s2s_write_raw(c, "</stream:stream>", 16);
        c->state = S2S_CLOSING;
        bufferevent_disable(c->bev, EV_READ);
        bufferevent_setcb(c->bev, NULL, on_flushed, on_event, c);
        c->close_deadline = xmppd_now_ms() + S2S_CLOSE_GRACE_MS;
    }
    if (c->idle) {
        event_free(c->idle);
        c->idle = NULL;
    }
    if (c->timer)
        event_free(c->timer);
    /* Never tear down here: s2s_close runs inside parser callbacks. */
    c->timer = evtimer_new(loop_base(), on_close_check, c);
    struct timeval tv = { 0, 0 };
    if (c->timer)
        evtimer_add(c->timer, &tv);
}

static void teardown(s2s_conn *c)
{
    if (c->state == S2S_CLOSED)
        return;
    c->state = S2S_CLOSED;
    list_remove(c);
    if (c->timer)
        event_free(c->timer);
    if (c->idle)
        event_free(c->idle);
    c->timer = c->idle = NULL;
    if (c->bev)
        bufferevent_free(c->bev); /* the SSL and the socket too */
    c->bev = NULL;
    c->ssl = NULL;
    xs_free(c->parser);
    c->parser = NULL;
    if (c->ip_counted)
        conn_ip_release(c->ip);
    c->ip_counted = false;
    if (c->outgoing)
        s2s_out_conn_lost(c, false);
    else
        s2s_in_teardown(c);
    s2s_conn_unref(c);
}

/* ---- timers ---------------------------------------------------------------------- */

static void on_negotiation_timeout(evutil_socket_t fd, short what, void *arg)
{
    s2s_conn *c = arg;
    event_free(c->timer);
    c->timer = NULL;
    if (c->outgoing)
        s2s_out_conn_lost(c, true); /* bounces with remote-server-timeout first */
    s2s_close(c, "connection-timeout", "Stream negotiation took too long");
}

static void arm(struct event *ev, uint64_t ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(ev, &tv);
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    s2s_conn *c = arg;
    uint64_t limit = g_server.cfg->s2s.idle_timeout, now = xmppd_now_ms();
    if (now - c->last_active < limit) {
        arm(c->idle, limit - (now - c->last_active));
        return;
    }
    log_kernel(c->outgoing ? "s2s-out" : "s2s-in", XMPPD_LOG_INFO,
               "%s [%s]: closing the stream, idle for %llu ms", c->remote ? c->remote : "?",
               c->ip, (unsigned long long)(now - c->last_active));
    s2s_close(c, NULL, NULL);
}

void s2s_touch(s2s_conn *c)
{
    c->last_active = xmppd_now_ms();
}

void s2s_mark_ready(s2s_conn *c)
{
    s2s_touch(c);
    if (c->timer && c->state == S2S_OPEN) {
        event_free(c->timer);
        c->timer = NULL;
    }
    if (!c->idle && (c->idle = evtimer_new(loop_base(), on_idle, c)))
        arm(c->idle, g_server.cfg->s2s.idle_timeout);
}

/* ---- parser callbacks --------------------------------------------------------------- */

static int on_header(void *ud, const xs_header *h)
{
    s2s_conn *c = ud;
    return c->outgoing ? s2s_out_on_header(c, h) : s2s_in_on_header(c, h);
}

static int on_element(void *ud, xmppd_stanza *el)
{
    s2s_conn *c = ud;
    int stop = 0;
    if (c->state == S2S_OPEN)
        stop = c->outgoing ? s2s_out_on_element(c, el) : s2s_in_on_element(c, el);
    xmppd_stanza_unref(el);
    return stop || c->state == S2S_CLOSING || c->state == S2S_CLOSED || c->starttls_pending ||
           c->restart_pending;
}

static void on_stream_close(void *ud)
{
    s2s_close(ud, NULL, NULL);
}

static void on_parse_error(void *ud, const char *condition)
{
    s2s_close(ud, condition, NULL);
}

static const xs_callbacks parser_cbs = {
    .open = on_header,
    .element = on_element,
    .close = on_stream_close,
    .error = on_parse_error,
};

/* ---- socket events ---------------------------------------------------------------------- */

int s2s_start_tls(s2s_conn *c, SSL *ssl, bool accepting)
{
    c->starttls_pending = false;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    /* Bytes after <starttls/> or <proceed/> were sent in plaintext: drop. */
    evbuffer_drain(in, evbuffer_get_length(in));
    struct bufferevent *tls = ssl ? bufferevent_openssl_filter_new(
        loop_base(), c->bev, ssl,
        accepting ? BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING,
        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS) : NULL;
    if (!tls) {
        if (ssl)
            SSL_free(ssl);
        s2s_close(c, "internal-server-error", NULL);
        return -1;
    }
    c->bev = tls;
    c->ssl = ssl;
    c->state = S2S_HEADER;
    c->header_sent = false;
    xs_reset(c->parser);
    bufferevent_setcb(tls, on_read, NULL, on_event, c);
    bufferevent_enable(tls, EV_READ | EV_WRITE);
    if (!accepting)
        return 0; /* the client side speaks first once the handshake is done */
    return 0;
}

static void process_input(s2s_conn *c)
{
    s2s_conn_ref(c);
    struct evbuffer *in = c->bev ? bufferevent_get_input(c->bev) : NULL;
    while (in && (c->state == S2S_HEADER || c->state == S2S_OPEN) && !c->starttls_pending &&
           !c->restart_pending && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t n = v.iov_len;
        int rc = xs_feed(c->parser, v.iov_base, n);
        if (c->state == S2S_CLOSED)
            break;
        evbuffer_drain(in, n);
        if (rc < 0)
            break;
    }
    if (c->state == S2S_HEADER || c->state == S2S_OPEN) {
        if (c->starttls_pending) {
            SSL *ssl = c->outgoing ? tls_new_client_ssl(c->local, c->remote, false)
                                   : tls_new_s2s_server_ssl();
            if (s2s_start_tls(c, ssl, !c->outgoing) == 0) {
                c->secure = true;
                c->cert_valid = -1;
            }
        } else if (c->restart_pending) {
            /* SASL success (outgoing): a fresh stream over the same TLS. */
            c->restart_pending = false;
            xs_reset(c->parser);
            c->state = S2S_HEADER;
            s2s_send_header(c);
            if (evbuffer_get_length(in) > 0)
                process_input(c);
        }
    }
    s2s_conn_unref(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    process_input(arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    s2s_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (c->state == S2S_CONNECTING) {
            c->state = S2S_HEADER;
            s2s_out_connected(c);
        } else if (c->ssl && c->outgoing) {
            s2s_out_tls_ready(c);
        } else if (c->ssl) {
            s2s_in_tls_ready(c);
        }
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        unsigned long e = bufferevent_get_openssl_error(bev);
        int se = EVUTIL_SOCKET_ERROR();
        log_kernel(c->outgoing ? "s2s-out" : "s2s-in", XMPPD_LOG_INFO, "%s [%s]: connection %s: %s",
                   c->remote ? c->remote : "?", c->ip,
                   c->state == S2S_CONNECTING ? "failed" : "error",
                   e ? ERR_reason_error_string(e) : evutil_socket_error_to_string(se));
    }
    teardown(c);
}

int s2s_conn_attach(s2s_conn *c, struct bufferevent *bev, SSL *ssl, uint64_t timeout_ms)
{
    c->bev = bev;
    c->ssl = ssl;
    c->parser = xs_new(&parser_cbs, c, g_server.cfg->limits.max_stanza_size,
                       g_server.cfg->limits.max_depth);
    c->timer = evtimer_new(loop_base(), on_negotiation_timeout, c);
    if (!c->parser || !c->timer)
        return -1;
    arm(c->timer, timeout_ms);
    bufferevent_setcb(bev, on_read, NULL, on_event, c);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------------ */

bool s2s_cert_valid(s2s_conn *c)
{
    if (c->cert_valid < 0) {
        const char *why = NULL;
        c->cert_valid = c->remote && c->ssl && tls_peer_verify(c->ssl, c->remote, &why);
        if (c->remote && c->ssl)
            log_kernel(c->outgoing ? "s2s-out" : "s2s-in", XMPPD_LOG_DEBUG,
                       "%s [%s]: certificate %s%s", c->remote, c->ip,
                       c->cert_valid ? "valid" : "not valid: ", c->cert_valid ? "" : why);
    }
    return c->cert_valid == 1;
}

const char *s2s_served_domain(const char *domain)
{
    xmppd_host *h = xmppd_host_find(domain);
    if (h)
        return h->name;
    const xmppd_config *cfg = g_server.cfg;
    for (size_t i = 0; i < cfg->n_components; i++)
        if (strcasecmp(cfg->components[i].domain, domain) == 0)
            return cfg->components[i].domain;
    return NULL;
}

void s2s_new_stream_id(s2s_conn *c)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char rnd[32];
    xmppd_random(rnd, sizeof(rnd));
    for (size_t i = 0; i < sizeof(rnd); i++)
        c->stream_id[i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
    c->stream_id[sizeof(rnd)] = '\0';
}

/* ---- start / stop ---------------------------------------------------------------------------- */

int s2s_start(char *err, size_t errlen)
{
    if (dialback_init(g_server.cfg->s2s.dialback_secret) < 0) {
        snprintf(err, errlen, "s2s: cannot make a dialback secret");
        return -1;
    }
    return resolver_start(g_server.cfg->s2s.dns_servers, err, errlen);
}

void s2s_reload(void)
{
    char err[256];
    /* Queries in flight end with ARES_EDESTRUCTION and fail their attempt. */
    resolver_stop();
    if (resolver_start(g_server.cfg->s2s.dns_servers, err, sizeof(err)) < 0)
        log_kernel("s2s", XMPPD_LOG_ERROR, "%s", err);
    if (g_server.cfg->s2s.dialback_secret)
        dialback_init(g_server.cfg->s2s.dialback_secret);
}

void s2s_shutdown_all(void)
{
    s2s_out_shutdown(); /* queued stanzas are dropped: their senders are leaving too */
    for (s2s_conn *c = all_conns; c; c = c->next)
        if (c->state != S2S_CLOSING && c->state != S2S_CLOSED) {
            c->shutdown = true;
            s2s_close(c, "system-shutdown", NULL);
        }
    shutting_down = true;
    if (n_conns > 0)
        loop_run();
    while (all_conns)
        teardown(all_conns);
    shutting_down = false;
    resolver_stop();
    dialback_free();
}
