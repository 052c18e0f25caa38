/* Server-to-server streams: what both directions share. Buffers, the XML
 * parser, STARTTLS, closing, timers and the list of every stream; the
 * protocol lives in s2s_in.c and s2s_out.c. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/metrics.h"
#include "s2s/s2s.h"

static s2s_conn *all_conns;
static size_t n_conns;
static bool shutting_down;

static void teardown(s2s_conn *c);
static void process_input(s2s_conn *c);
static const xstream_ops stream_ops;

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
    xstream_init(&c->x, &stream_ops, c);
    snprintf(c->tag, sizeof(c->tag), "?"); /* until its address is known */
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

void s2s_write_raw(s2s_conn *c, const char *data, size_t len)
{
    xstream_write_raw(&c->x, data, len);
}

void s2s_write(s2s_conn *c, const xmppd_stanza *el)
{
    metrics_stanza(METRICS_S2S, METRICS_OUT, xmppd_stanza_name(el));
    xstream_write(&c->x, el);
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
    c->x.header_sent = true;
}

xmppd_stanza *s2s_dialback_new(const char *name)
{
    /* Built as the prefixed name in the stream's default namespace, so the
     * serialiser writes <db:NAME> and declares nothing: the element is only
     * ever written, never matched or routed. */
    char qname[16];
    snprintf(qname, sizeof(qname), "db:%s", name);
    return xmppd_stanza_new(qname, XMPPD_NS_SERVER);
}

s2s_conn *s2s_bidi_stream(const char *local, const char *remote)
{
    for (s2s_conn *c = all_conns; c; c = c->next)
        if (!c->outgoing && c->bidi && c->state == S2S_OPEN && s2s_in_has_pair(c, local, remote))
            return c;
    return NULL;
}

void s2s_add_error(xmppd_stanza *el, const char *type, const char *cond)
{
    /* XEP-0220 §2.4: the <error/> of a dialback element is a stanza error
     * of the stream's default namespace. */
    xmppd_stanza *e = xmppd_stanza_tag(el, "error", XMPPD_NS_SERVER);
    if (!e)
        return;
    xmppd_stanza_set_attr(e, "type", type);
    xmppd_stanza_tag(e, cond, XMPPD_NS_STANZAS);
}

/* ---- closing ------------------------------------------------------------------ */

void s2s_close(s2s_conn *c, const char *condition, const char *text)
{
    if (c->state == S2S_CLOSING || c->state == S2S_CLOSED)
        return;
    if (c->outgoing)
        s2s_out_conn_lost(c, false); /* new stanzas need a new stream */
    if (c->state == S2S_CONNECTING || !xstream_has_socket(&c->x)) {
        /* Nothing was said yet: just drop the socket (on a later turn). */
        c->state = S2S_CLOSING;
        xstream_drop(&c->x);
    } else {
        xstream_close(&c->x, condition, text);
        if (condition)
            log_kernel(c->outgoing ? "s2s-out" : "s2s-in", XMPPD_LOG_INFO,
                       "%s [%s]: stream error %s%s%s", c->remote ? c->remote : "?", c->tag,
                       condition, text ? ": " : "", text ? text : "");
        c->state = S2S_CLOSING;
    }
    if (c->idle) {
        event_free(c->idle);
        c->idle = NULL;
    }
}

static void teardown(s2s_conn *c)
{
    if (c->state == S2S_CLOSED)
        return;
    c->state = S2S_CLOSED;
    list_remove(c);
    if (c->idle)
        event_free(c->idle);
    c->idle = NULL;
    xstream_release(&c->x);
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

static void on_negotiation_timeout(void *arg)
{
    s2s_conn *c = arg;
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
               c->tag, (unsigned long long)(now - c->last_active));
    s2s_close(c, NULL, NULL);
}

void s2s_touch(s2s_conn *c)
{
    c->last_active = xmppd_now_ms();
}

bool s2s_stanza_allowed(s2s_conn *c)
{
    const s2s_conf *sc = &g_server.cfg->s2s;
    if (sc->stanza_rate <= 0)
        return true;
    uint64_t now = xmppd_now_ms();
    if (!c->tokens_at)
        c->tokens = (double)sc->stanza_burst;
    else
        c->tokens += (double)(now - c->tokens_at) * (double)sc->stanza_rate / 1000.0;
    if (c->tokens > (double)sc->stanza_burst)
        c->tokens = (double)sc->stanza_burst;
    c->tokens_at = now;
    if (c->tokens >= 1.0) {
        c->tokens -= 1.0;
        return true;
    }
    log_kernel(c->outgoing ? "s2s-out" : "s2s-in", XMPPD_LOG_WARN,
               "%s [%s]: more than %lld stanzas/s (burst %lld): stream closed", c->remote ? c->remote : "?",
               c->tag, sc->stanza_rate, sc->stanza_burst);
    s2s_close(c, "policy-violation", "Too many stanzas");
    return false;
}

void s2s_mark_ready(s2s_conn *c)
{
    s2s_touch(c);
    if (c->state == S2S_OPEN)
        xstream_stop_timer(&c->x);
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


/* ---- socket events ---------------------------------------------------------------------- */

int s2s_start_tls(s2s_conn *c, SSL *ssl, bool accepting)
{
    c->starttls_pending = false;
    /* Bytes after <starttls/> or <proceed/> were sent in plaintext: dropped. */
    if (xstream_start_tls(&c->x, ssl, accepting) < 0) {
        s2s_close(c, "internal-server-error", NULL);
        return -1;
    }
    c->state = S2S_HEADER;
    return 0;
}

static void process_input(s2s_conn *c)
{
    s2s_conn_ref(c);
    xstream_pump(&c->x);
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
            xs_reset(c->x.parser);
            c->state = S2S_HEADER;
            s2s_send_header(c);
            if (xstream_input_pending(&c->x))
                process_input(c);
        }
    }
    s2s_conn_unref(c);
}

static bool readable(void *arg)
{
    s2s_conn *c = arg;
    return (c->state == S2S_HEADER || c->state == S2S_OPEN) && !c->starttls_pending &&
           !c->restart_pending;
}

static void on_input(void *arg)
{
    process_input(arg);
}

static void on_event(void *arg, struct bufferevent *bev, short what)
{
    s2s_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (c->state == S2S_CONNECTING) {
            c->state = S2S_HEADER;
            s2s_out_connected(c);
        } else if (c->x.ssl && c->outgoing) {
            s2s_out_tls_ready(c);
        } else if (c->x.ssl) {
            s2s_in_tls_ready(c);
        }
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        unsigned long e = xstream_tls_error(&c->x);
        int se = EVUTIL_SOCKET_ERROR();
        log_kernel(c->outgoing ? "s2s-out" : "s2s-in", XMPPD_LOG_INFO, "%s [%s]: connection %s: %s",
                   c->remote ? c->remote : "?", c->tag,
                   c->state == S2S_CONNECTING ? "failed" : "error",
                   e ? ERR_reason_error_string(e) : evutil_socket_error_to_string(se));
    }
    teardown(c);
}

int s2s_conn_attach(s2s_conn *c, struct bufferevent *bev, SSL *ssl, uint64_t timeout_ms)
{
    return xstream_open(&c->x, &stream_ops, c, bev, ssl, timeout_ms);
}

static void on_close(void *arg, const char *condition, const char *text)
{
    s2s_close(arg, condition, text);
}

static void on_send_header(void *arg)
{
    s2s_send_header(arg);
}

static void on_closed(void *arg)
{
    teardown(arg);
}

static const xstream_ops stream_ops = {
    .default_ns = XMPPD_NS_SERVER,
    .header = on_header,
    .element = on_element,
    .close = on_close,
    .send_header = on_send_header,
    .input = on_input,
    .readable = readable,
    .timeout = on_negotiation_timeout,
    .event = on_event,
    .teardown = on_closed,
    .events_while_closing = true,
};

/* ---- helpers ------------------------------------------------------------------------------ */

bool s2s_cert_valid(s2s_conn *c)
{
    if (c->cert_valid < 0) {
        const char *why = NULL;
        c->cert_valid = c->remote && c->x.ssl && tls_peer_verify(c->x.ssl, c->remote, &why);
        if (c->remote && c->x.ssl)
            log_kernel(c->outgoing ? "s2s-out" : "s2s-in", XMPPD_LOG_DEBUG,
                       "%s [%s]: certificate %s%s", c->remote, c->tag,
                       c->cert_valid ? "valid" : "not valid: ", c->cert_valid ? "" : why);
    }
    return c->cert_valid == 1;
}

const char *s2s_served_domain(const char *domain)
{
    xmppd_host *h = xmppd_host_find(domain);
    if (h)
        return h->name;
    const char *served = domains_name(domain);
    if (served)
        return served;
    const xmppd_config *cfg = g_server.cfg;
    for (size_t i = 0; i < cfg->n_components; i++)
        if (strcasecmp(cfg->components[i].domain, domain) == 0)
            return cfg->components[i].domain;
    return NULL;
}

bool s2s_allowed(const char *local, const char *remote, const char *ip)
{
    /* A domain JID without a parse: remote is already prepared. */
    xmppd_jid peer = { .domain = remote, .bare = remote, .full = remote };
    xmppd_host *h = xmppd_host_find(local);
    if (xmppd_access(h, "s2s", &peer, ip) != XMPPD_ACCESS_DENY)
        return true;
    log_kernel("s2s", XMPPD_LOG_INFO, "%s -> %s: denied by the access rule \"s2s\"", local, remote);
    return false;
}

void s2s_new_stream_id(s2s_conn *c)
{
    xstream_random_id(c->stream_id, 33); /* 32 characters */
}

void s2s_streams_foreach(void (*fn)(const s2s_stream_info *i, void *ud), void *ud)
{
    static const char *const states[] = { [S2S_CONNECTING] = "connecting",
                                           [S2S_HEADER] = "negotiating",
                                           [S2S_OPEN] = "open", [S2S_CLOSING] = "closing" };
    for (const s2s_conn *c = all_conns; c; c = c->next) {
        if (c->state == S2S_CLOSED)
            continue;
        bool auth = c->outgoing ? c->authenticated : c->n_pairs > 0;
        s2s_stream_info i = { .outgoing = c->outgoing,
                              .state = c->state == S2S_OPEN && !auth ? "negotiating"
                                                                     : states[c->state],
                              .local = c->local, .remote = c->remote, .ip = c->ip,
                              .port = c->port, .secure = c->secure, .bidi = c->bidi,
                              .authenticated = auth, .n_pairs = c->n_pairs };
        if (!c->outgoing && !i.remote && c->n_pairs)
            i.remote = c->pairs[0].remote;
        fn(&i, ud);
    }
}

/* ---- start / stop ---------------------------------------------------------------------------- */

/* xmppd_s2s_streams{direction}: open server-to-server streams. */
static void collect_streams(void *ud)
{
    size_t n[2] = { 0, 0 };
    for (const s2s_conn *c = all_conns; c; c = c->next)
        if (c->state != S2S_CLOSED)
            n[c->outgoing]++;
    xmppd_metric_set(ud, (const char *[]){ "in" }, (double)n[0]);
    xmppd_metric_set(ud, (const char *[]){ "out" }, (double)n[1]);
}

int s2s_start(char *err, size_t errlen)
{
    static const char *const labels[] = { "direction", NULL };
    xmppd_metric *mt = xmppd_metric_new(NULL, "xmppd_s2s_streams", XMPPD_METRIC_GAUGE,
                                        "Server-to-server streams by direction", labels, NULL, 0);
    if (mt)
        xmppd_metrics_collector(NULL, collect_streams, mt);
    router_set_remote_route(s2s_out_route);
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
