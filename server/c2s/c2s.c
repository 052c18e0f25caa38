/* Client-to-server streams (RFC 6120): stream header, features, STARTTLS,
 * resource binding, element dispatch, then stanzas into the router; the
 * session's transport. SASL (both profiles), Bind2 and FAST live in the
 * other files of this folder (c2s_conn.h lists them).
 *
 * A connection is reference counted: the socket holds one reference until
 * it is gone; callbacks that may outlive it (auth provider answers,
 * timers) hold their own and check c->state. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c2s/c2s_conn.h"

#define NS_STREAM XS_NS_STREAM
#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"

const char *const c2s_cb_types[] = { "tls-exporter", "tls-server-end-point", "tls-unique" };

/* Every open stream, for shutdown. */
struct c2s_list {
    c2s_conn **v;
    size_t n, cap;
};
static struct c2s_list streams;
static bool shutting_down;

static void s_teardown(c2s_conn *c);
static void process_input(c2s_conn *c);

/* ---- references ---------------------------------------------------------- */

c2s_conn *c2s_ref(c2s_conn *c)
{
    c->refs++;
    return c;
}

void c2s_unref(c2s_conn *c)
{
    if (!c || --c->refs > 0)
        return;
    xmppd_session_unref(c->s);
    sasl_reset(c);
    xmppd_stanza_unref(c->held_success);
    free(c->sasl2_data);
    free(c->stream_from);
    free(c);
}

static void streams_add(c2s_conn *c)
{
    if (streams.n == streams.cap) {
        size_t cap = streams.cap ? streams.cap * 2 : 64;
        c2s_conn **v = realloc(streams.v, cap * sizeof(*v));
        if (!v)
            return; /* only shutdown notification is lost */
        streams.v = v;
        streams.cap = cap;
    }
    streams.v[streams.n++] = c;
}

static void streams_remove(c2s_conn *c)
{
    for (size_t i = 0; i < streams.n; i++)
        if (streams.v[i] == c) {
            streams.v[i] = streams.v[--streams.n];
            break;
        }
    if (shutting_down && streams.n == 0)
        loop_break();
}

/* ---- output -------------------------------------------------------------- */

static void write_raw(c2s_conn *c, const char *data, size_t len)
{
    xstream_write_raw(&c->x, data, len);
}

void c2s_write(c2s_conn *c, const xmppd_stanza *st)
{
    xstream_write(&c->x, st);
}

static void send_header(c2s_conn *c)
{
    char buf[512];
    const char *from = c->s->host ? c->s->host->name : NULL;
    int n = snprintf(buf, sizeof(buf),
                     "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                     "xmlns:stream='" NS_STREAM "' id='%s'%s%s%s version='1.0' xml:lang='en'>",
                     c->stream_id, from ? " from='" : "", from ? from : "", from ? "'" : "");
    xstream_send_header(&c->x, buf, (size_t)n, c->stream_id, from);
}

/* ---- closing ------------------------------------------------------------- */

void c2s_close(c2s_conn *c, const char *condition, const char *text)
{
    if (c->state == C2S_CLOSING || c->state == C2S_CLOSED)
        return;
    c->s->closing = true;
    xstream_close(&c->x, condition, text);
    if (condition)
        log_kernel("c2s", XMPPD_LOG_INFO, "%s: stream error %s%s%s", c->s->tag, condition,
                   text ? ": " : "", text ? text : "");
    else
        log_kernel("c2s", XMPPD_LOG_DEBUG, "%s: closing the stream cleanly", c->s->tag);
    c->state = C2S_CLOSING;
}

/* Frees the connection side of c; the struct lives while referenced. */
static void s_teardown(c2s_conn *c)
{
    if (c->state == C2S_CLOSED)
        return;
    log_kernel("c2s", XMPPD_LOG_DEBUG, "%s: connection closed (%s)", c->s->tag,
               c->state == C2S_CLOSING ? "after the closing handshake" : "dropped without one");
    c->state = C2S_CLOSED;
    streams_remove(c);
    if (c->delay)
        event_free(c->delay);
    c->delay = NULL;
    c->corked = false;
    for (size_t i = 0; i < c->n_cork; i++)
        xmppd_stanza_unref(c->cork[i]); /* nobody left to read them */
    free(c->cork);
    c->cork = NULL;
    c->n_cork = c->cap_cork = 0;
    c->cork_bytes = 0;
    xstream_release(&c->x);
    sasl_reset(c);
    if (c->counted_ip)
        conn_ip_release(c->s->ip);
    session_detach(c->s);
    c2s_unref(c);
}

/* ---- the session's transport ------------------------------------------------- */

/* While a SASL2 <success/> is built, the session's writes wait after it. */
static int cork_write(c2s_conn *c, const xmppd_stanza *st, size_t *len_r)
{
    if (c->x.closing)
        return -1;
    if (c->n_cork == c->cap_cork) {
        size_t cap = c->cap_cork ? c->cap_cork * 2 : 8;
        xmppd_stanza **v = realloc(c->cork, cap * sizeof(*v));
        if (!v)
            return -1;
        c->cork = v;
        c->cap_cork = cap;
    }
    size_t len;
    char *xml = xmppd_stanza_to_string(st, XMPPD_NS_CLIENT, &len);
    xmppd_stanza *copy = xml ? xmppd_stanza_copy(st) : NULL;
    free(xml);
    if (!copy)
        return -1;
    c->cork[c->n_cork++] = copy;
    c->cork_bytes += len;
    if (len_r)
        *len_r = len;
    return 0;
}

static int tr_write(void *conn, const xmppd_stanza *st, size_t *len_r)
{
    c2s_conn *c = conn;
    if (c->corked)
        return cork_write(c, st, len_r);
    if (xstream_queue(&c->x, st, len_r) < 0)
        return -1;
    xstream_check_backlog(&c->x);
    return 0;
}

static void tr_close(void *conn, const char *condition, const char *text)
{
    c2s_close(conn, condition, text);
}

static uint64_t tr_bytes_in(void *conn)
{
    return ((c2s_conn *)conn)->x.bytes_in;
}

/* A resumption moved a session onto this connection (or the husk of the
 * new login onto the old one, which closes next). */
static void tr_rebind(void *conn, xmppd_session *now)
{
    c2s_conn *c = conn;
    xmppd_session_ref(now);
    xmppd_session_unref(c->s);
    c->s = now;
    if (now->bound && c->state == C2S_OPEN) {
        c->state = C2S_BOUND;
        xstream_stop_timer(&c->x); /* negotiation finished in time */
    }
}

/* Corked writes come after what is written now (sasl2_uncork), so they
 * count as written already. */
static uint64_t tr_out_pos(void *conn, bool sent)
{
    c2s_conn *c = conn;
    return sent ? c->x.out_sent : c->x.out_total + c->cork_bytes;
}

static const session_transport c2s_transport = {
    .name = "c2s", .write = tr_write, .close = tr_close, .bytes_in = tr_bytes_in,
    .rebind = tr_rebind, .bind2_hold = bind2_hold, .bind2_release = bind2_release,
    .out_pos = tr_out_pos,
};

/* ---- stream header --------------------------------------------------------- */

/* RFC 6120 §4.7.4: the language the client declared for its stream, kept
 * when it has the shape of a language tag (letters, digits, '-'). */
static void set_stream_lang(c2s_conn *c, const char *lang)
{
    size_t n = lang ? strspn(lang, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") : 0;
    if (!lang || n == 0 || lang[n] || n >= sizeof(c->lang))
        c->lang[0] = '\0';
    else
        memcpy(c->lang, lang, n + 1);
}

static int on_header(void *ud, const xs_header *h)
{
    c2s_conn *c = ud;
    xmppd_host *host = h->to ? xmppd_host_find(h->to) : NULL;
    /* Answer with a header (ours) before any error, RFC 6120 §4.9.1.1. */
    if (!c->s->host)
        c->s->host = host;
    xstream_random_id(c->stream_id, sizeof(c->stream_id)); /* a new id per stream, restarts too */
    free(c->stream_from);
    c->stream_from = h->from ? strdup(h->from) : NULL;
    if (!h->default_ns || strcmp(h->default_ns, XMPPD_NS_CLIENT) != 0) {
        c2s_close(c, "invalid-namespace", NULL);
        return 1;
    }
    if (!h->to) {
        c2s_close(c, "improper-addressing", "A 'to' attribute is required");
        return 1;
    }
    if (!host) {
        c2s_close(c, "host-unknown", NULL);
        return 1;
    }
    if (host != c->s->host) {
        /* A restarted stream may not move to another host. */
        c2s_close(c, "host-unknown", "The stream restart named another host");
        return 1;
    }
    if (!h->version || strtol(h->version, NULL, 10) < 1) {
        c2s_close(c, "unsupported-version", NULL);
        return 1;
    }
    set_stream_lang(c, h->lang);
    send_header(c);
    c->state = C2S_OPEN;
    c2s_send_features(c);
    return 0;
}

/* ---- features ---------------------------------------------------------------------------- */

/* Never on carried streams: WebSocket and BOSH have TLS below HTTP or
 * none (RFC 7395 §3.7, XEP-0206 §4). */
static bool tls_available(const c2s_conn *c)
{
    return !c->s->secure && c->s->host && c->s->host->ssl_ctx && !c->x.carrier;
}

int c2s_channel_binding(c2s_conn *c, const char *type, unsigned char *out, size_t *len)
{
    return c->s->secure ? tls_channel_binding(c->x.ssl, type, out, len) : -1;
}

void c2s_send_features(c2s_conn *c)
{
    xmppd_stanza *f = xmppd_stanza_new("features", NS_STREAM);
    bool tls_required = g_server.cfg->c2s.require_encryption;
    c->offered = c->cb_offered = c->fast_offered = 0;
    if (!c->s->authenticated) {
        if (tls_available(c)) {
            xmppd_stanza *st = xmppd_stanza_tag(f, "starttls", NS_TLS);
            if (tls_required)
                xmppd_stanza_tag(st, "required", NS_TLS);
        }
        /* RFC 6120 §5.3.1: with TLS mandatory, offer nothing else before it. */
        if (c->s->secure || !tls_required) {
            sasl_add_mechanisms(c, f);
            sasl2_add_feature(c, f);
        }
    } else if (!c->s->bound) {
        /* Bound already: SASL2 with Bind2 or a resumption (XEP-0388 §2.6.1). */
        xmppd_stanza_tag(f, "bind", NS_BIND);
        xmppd_stanza *sess = xmppd_stanza_tag(f, "session", NS_SESSION);
        xmppd_stanza_tag(sess, "optional", NS_SESSION);
    }
    xmppd_event ev = { .name = "stream-features", .host = c->s->host, .session = c->s, .stanza = f };
    xmppd_fire_all(&ev);
    if (c->state == C2S_CLOSING || c->state == C2S_CLOSED) {
        /* A handler refused the stream (per-address limits). */
        xmppd_stanza_unref(f);
        return;
    }

    xstream_write_features(&c->x, f);
    xmppd_stanza_unref(f);
}

/* ---- STARTTLS ------------------------------------------------------------------- */

static int handle_starttls(c2s_conn *c, xmppd_stanza *el)
{
    if (!tls_available(c)) {
        write_raw(c, "<failure xmlns='" NS_TLS "'/>", 16 + sizeof(NS_TLS) + 2);
        c2s_close(c, NULL, NULL);
        return 1;
    }
    write_raw(c, "<proceed xmlns='" NS_TLS "'/>", 16 + sizeof(NS_TLS) + 2);
    /* Everything already received after <starttls/> is plaintext an attacker
     * may have injected: on_read discards it before TLS starts. */
    c->starttls_pending = true;
    return 1;
}

static void start_tls(c2s_conn *c)
{
    c->starttls_pending = false;
    if (xstream_start_tls(&c->x, tls_new_server_ssl(), true) < 0) {
        s_teardown(c);
        return;
    }
    c->s->secure = true;
    c->state = C2S_HEADER;
}

/* ---- resource binding -------------------------------------------------------------- */

static void iq_error(c2s_conn *c, xmppd_stanza *iq, const char *type, const char *cond)
{
    xmppd_stanza *e = xmppd_stanza_error_reply(iq, type, cond, NULL);
    if (e) {
        xmppd_stanza_set_attr(e, "from", NULL);
        c2s_write(c, e);
        xmppd_stanza_unref(e);
    }
}

const char *c2s_bind(c2s_conn *c, const char *resource, xmppd_stanza *request,
                     void (*done)(c2s_conn *c, void *ud), void *ud)
{
    xmppd_jid *jid = xmppd_jid_make(c->s->user, c->s->host->name, resource);
    if (!jid)
        return "bad-request";
    xmppd_jid_free(c->s->jid);
    c->s->jid = jid;
    xmppd_event ev = { .name = "resource-bind", .host = c->s->host, .session = c->s,
                       .stanza = request };
    if (xmppd_fire(&ev) != XMPPD_PASS)
        return "not-allowed";
    if (sm_bind(c->s, jid->resource) < 0)
        return "resource-constraint";
    c->state = C2S_BOUND;
    c->s->bound = true;
    xstream_stop_timer(&c->x); /* negotiation finished in time */
    if (done)
        done(c, ud);
    log_kernel("c2s", XMPPD_LOG_INFO, "%s: bound %s", c->s->tag, jid->full);
    xmppd_notify(c->s->host, "resource-bound", c->s, NULL);
    return NULL;
}

static void write_bind_result(c2s_conn *c, void *iq)
{
    xmppd_stanza *r = xmppd_stanza_new("iq", XMPPD_NS_CLIENT);
    xmppd_stanza_set_attr(r, "type", "result");
    xmppd_stanza_set_attr(r, "id", xmppd_stanza_attr(iq, "id"));
    xmppd_stanza *j = xmppd_stanza_tag(xmppd_stanza_tag(r, "bind", NS_BIND), "jid", NS_BIND);
    xmppd_stanza_add_text(j, c->s->jid->full, strlen(c->s->jid->full));
    c2s_write(c, r);
    xmppd_stanza_unref(r);
}

/* RFC 6120 §7: the resource the client asks for, or a random one. */
static void handle_bind(c2s_conn *c, xmppd_stanza *iq, xmppd_stanza *bind)
{
    const char *want = xmppd_stanza_child_text(bind, "resource", NS_BIND);
    char *res = NULL;
    if (want && *want) {
        res = xmppd_resourceprep(want);
        if (!res) {
            iq_error(c, iq, "modify", "bad-request");
            return;
        }
    } else {
        char id[17];
        xstream_random_id(id, sizeof(id));
        res = strdup(id);
    }
    const char *cond = res ? c2s_bind(c, res, iq, write_bind_result, iq) : "bad-request";
    free(res);
    if (cond)
        iq_error(c, iq, strcmp(cond, "not-allowed") == 0 ? "cancel"
                        : strcmp(cond, "resource-constraint") == 0 ? "wait" : "modify", cond);
}

/* The RFC 3921 session IQ: a no-op kept for old clients (RFC 6121 §1.4). */
static bool is_session_iq(xmppd_stanza *el)
{
    return strcmp(xmppd_stanza_name(el), "iq") == 0 &&
           xmppd_stanza_child(el, "session", NS_SESSION) != NULL;
}

static void answer_session_iq(c2s_conn *c, xmppd_stanza *iq)
{
    xmppd_stanza *r = xmppd_stanza_reply(iq);
    if (r) {
        xmppd_stanza_set_attr(r, "from", NULL);
        xmppd_stanza_set_attr(r, "to", NULL);
        c2s_write(c, r);
        xmppd_stanza_unref(r);
    }
}

/* ---- element dispatch --------------------------------------------------------------- */

static bool is_stanza(const char *name)
{
    return strcmp(name, "message") == 0 || strcmp(name, "presence") == 0 || strcmp(name, "iq") == 0;
}

static int handle_negotiation(c2s_conn *c, xmppd_stanza *el)
{
    const char *name = xmppd_stanza_name(el), *ns = xmppd_stanza_ns(el);
    if (strcmp(ns, NS_TLS) == 0 && strcmp(name, "starttls") == 0)
        return handle_starttls(c, el);
    if (strcmp(ns, NS_SASL) == 0) {
        bool was = c->s->authenticated;
        sasl_handle(c, el);
        /* A success restarts the stream: nothing after it is this one's. */
        return c->s->authenticated && !was ? 1 : 0;
    }
    if (strcmp(ns, NS_SASL2) == 0) {
        sasl2_handle(c, el); /* no restart (XEP-0388 §2.6.1) */
        return 0;
    }
    if (c->s->authenticated && strcmp(name, "iq") == 0 && strcmp(ns, XMPPD_NS_CLIENT) == 0) {
        xmppd_stanza *bind = xmppd_stanza_child(el, "bind", NS_BIND);
        const char *type = xmppd_stanza_attr(el, "type");
        if (bind && type && strcmp(type, "set") == 0) {
            handle_bind(c, el, bind);
            return 0;
        }
        if (is_session_iq(el)) {
            iq_error(c, el, "wait", "not-allowed");
            return 0;
        }
    }
    xmppd_event ev = { .name = "stream-element", .host = c->s->host, .session = c->s, .stanza = el };
    if (xmppd_fire(&ev) == XMPPD_HANDLED)
        return 0;
    if (is_stanza(name) || !c->s->authenticated)
        c2s_close(c, "not-authorized", NULL);
    else
        c2s_close(c, "unsupported-stanza-type", NULL);
    return 1;
}

static void handle_bound(c2s_conn *c, xmppd_stanza *el)
{
    const char *name = xmppd_stanza_name(el);
    xmppd_event ev = { .name = "stanza-in", .host = c->s->host, .session = c->s, .stanza = el,
                       .from = c->s->jid };
    if (xmppd_fire(&ev) == XMPPD_HANDLED)
        return;
    if (!is_stanza(name) || strcmp(xmppd_stanza_ns(el), XMPPD_NS_CLIENT) != 0) {
        c2s_close(c, "unsupported-stanza-type", NULL);
        return;
    }
    if (is_session_iq(el)) {
        answer_session_iq(c, el);
        return;
    }
    /* RFC 6120 §8.1.2.1: the server stamps the full JID of the session;
     * §8.1.5: and the stream's language on a stanza that declares none. */
    xmppd_stanza_set_attr(el, "from", c->s->jid->full);
    if (c->lang[0] && !xmppd_stanza_attr(el, "xml:lang"))
        xmppd_stanza_set_attr(el, "xml:lang", c->lang);
    router_from_client(c->s, el);
}

static int on_element(void *ud, xmppd_stanza *el)
{
    c2s_conn *c = ud;
    int stop = 0;
    if (c->state == C2S_OPEN && c->req && c->sasl2 && strcmp(xmppd_stanza_ns(el), NS_SASL2) != 0) {
        /* XEP-0388 §2.5: during SASL2, nothing but its elements. */
        c2s_close(c, "policy-violation", "Only SASL2 elements during SASL2 authentication");
    } else if (c->state == C2S_BOUND)
        handle_bound(c, el);
    else if (c->state == C2S_OPEN)
        stop = handle_negotiation(c, el);
    else if (c->state == C2S_HEADER)
        /* Only a carried stream can send an element before its header (a
         * WebSocket message before <open/>): as a socket stream whose
         * first element is not stream:stream. */
        c2s_close(c, "invalid-namespace", NULL);
    xmppd_stanza_unref(el);
    return stop || c->state == C2S_CLOSING || c->state == C2S_CLOSED;
}

/* ---- socket events ------------------------------------------------------------------ */

/* Feeds buffered input to the parser until it is empty or the stream has to
 * wait (TLS about to start, an auth provider answer, a failure delay). */
static void process_input(c2s_conn *c)
{
    c2s_ref(c);
    xstream_pump(&c->x);
    if (c->starttls_pending && c->state != C2S_CLOSED)
        start_tls(c);
    c2s_unref(c);
}

bool c2s_negotiating(const c2s_conn *c)
{
    return c->state == C2S_OPEN;
}

void c2s_pause_input(c2s_conn *c)
{
    xstream_pause_input(&c->x);
}

/* Input resumes after an asynchronous step finished. */
void c2s_resume_input(c2s_conn *c)
{
    if (c->state != C2S_OPEN && c->state != C2S_HEADER && c->state != C2S_BOUND)
        return;
    xstream_resume_input(&c->x);
}

static bool readable(void *arg)
{
    c2s_conn *c = arg;
    return (c->state == C2S_HEADER || c->state == C2S_OPEN || c->state == C2S_BOUND) &&
           !c->starttls_pending && !c->sasl_busy && !c->delay;
}

static void on_input(void *arg)
{
    process_input(arg);
}

static void on_event(void *arg, struct bufferevent *bev, short what)
{
    c2s_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    log_kernel("c2s", XMPPD_LOG_DEBUG, "%s: %s", c->s->tag,
               what & BEV_EVENT_ERROR ? "connection error" : "the client closed the connection");
    /* EOF or error: nothing can be written any more. */
    s_teardown(c);
}

static void on_negotiation_timeout(void *arg)
{
    c2s_close(arg, "connection-timeout", "Stream negotiation took too long");
}

static void on_close(void *arg, const char *condition, const char *text)
{
    c2s_conn *c = arg;
    if (!condition) /* the peer's </stream:stream> (our own reasons have one) */
        log_kernel("c2s", XMPPD_LOG_DEBUG, "%s: the client closed the stream", c->s->tag);
    c2s_close(c, condition, text);
}

static void on_send_header(void *arg)
{
    send_header(arg);
}

static void on_closed(void *arg)
{
    s_teardown(arg);
}

/* More output reached the socket: waiters of the session may be done. */
static void on_sent(void *owner)
{
    c2s_conn *c = owner;
    if (c->s)
        session_sent_progress(c->s);
}

static const xstream_ops stream_ops = {
    .default_ns = XMPPD_NS_CLIENT,
    .header = on_header,
    .element = on_element,
    .close = on_close,
    .send_header = on_send_header,
    .input = on_input,
    .readable = readable,
    .timeout = on_negotiation_timeout,
    .event = on_event,
    .teardown = on_closed,
    .sent = on_sent,
};

void c2s_accept(int fd, const struct sockaddr *sa, int socklen, bool direct_tls)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    xstream_peer_addr(sa, ip);
    if (!conn_ip_acquire(ip)) {
        log_kernel("c2s", XMPPD_LOG_WARN, "%s: too many connections from this address", ip);
        evutil_closesocket(fd);
        return;
    }
    c2s_conn *c = calloc(1, sizeof(*c));
    SSL *ssl = direct_tls ? tls_new_server_ssl() : NULL;
    if (!c || !(c->s = session_new(&c2s_transport, c, ip)) || (direct_tls && !ssl)) {
        if (c)
            xmppd_session_unref(c->s);
        free(c);
        SSL_free(ssl);
        conn_ip_release(ip);
        evutil_closesocket(fd);
        return;
    }
    c->refs = 1;
    c->counted_ip = true;
    evutil_make_socket_nonblocking(fd);
    struct bufferevent *bev =
        bufferevent_socket_new(loop_base(), fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    c->s->secure = c->direct_tls = direct_tls;
    if (!bev)
        evutil_closesocket(fd);
    if (xstream_open(&c->x, &stream_ops, c, bev, ssl, g_server.cfg->limits.negotiation_timeout) < 0) {
        c->state = C2S_OPEN;
        streams_add(c);
        s_teardown(c);
        return;
    }
    streams_add(c);
}

xstream *c2s_open_carried(const xstream_carrier *car, void *cud, const char *ip, bool secure,
                          SSL *ssl)
{
    c2s_conn *c = calloc(1, sizeof(*c));
    if (!c || !(c->s = session_new(&c2s_transport, c, ip))) {
        free(c);
        return NULL;
    }
    c->refs = 1;
    c->s->secure = secure;
    if (car->name)
        c->s->transport = car->name;
    if (xstream_open_carrier(&c->x, &stream_ops, c, car, cud, secure ? ssl : NULL,
                             g_server.cfg->limits.negotiation_timeout) < 0) {
        c->x.carrier = NULL; /* the carrier learns of the failure from NULL */
        xstream_release(&c->x);
        session_detach(c->s);
        c2s_unref(c);
        return NULL;
    }
    streams_add(c);
    return &c->x;
}

void c2s_shutdown_all(void)
{
    for (size_t i = 0; i < streams.n; i++)
        c2s_close(streams.v[i], "system-shutdown", NULL);
    /* Let the loop deliver the errors; each stream leaves the list when its
     * bytes are out or its grace period ends. */
    shutting_down = true;
    if (streams.n > 0)
        loop_run();
    while (streams.n > 0)
        s_teardown(streams.v[streams.n - 1]);
    free(streams.v);
    streams.v = NULL;
    streams.cap = 0;
}
