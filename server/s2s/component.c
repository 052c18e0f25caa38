/* External components (XEP-0114, jabber:component:accept).
 *
 * A component connects to a "component" listener and opens a stream whose
 * 'to' names its domain, one of the configured "components". We answer with
 * a header carrying a fresh stream id; the component proves the shared
 * secret with <handshake>hex(SHA-1(id + secret))</handshake> and gets an
 * empty <handshake/>. From then on:
 *  - stanzas it sends must come from its domain (or a subdomain when the
 *    configuration allows it), otherwise the stream ends with <invalid-from/>;
 *    they go through the kernel router like any other stanza;
 *  - stanzas the router sees for that domain (component_route) are written
 *    to its stream; while no component is connected, messages and IQs are
 *    answered service-unavailable and presence is dropped.
 *
 * Errors: a header that is not jabber:component:accept is <invalid-namespace/>,
 * an unknown domain <host-unknown/>, a wrong handshake <not-authorized/>
 * (after limits.auth_failure_delay), a second connection for a domain that
 * is already connected <conflict/> (the established stream stays: XEP-0114
 * defines no takeover), a domain removed by SIGHUP <host-gone/>.
 *
 * Teardown never happens inside parser callbacks: closing queues the
 * stream error and tears down on a later loop turn (as in c2s.c). */
#include <arpa/inet.h>
#include <ctype.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "net/xstream.h"
#include "s2s/federation.h"
#include "session/place.h"
#include "session/session.h"
#include "util/strmap.h"

#define NS_COMPONENT "jabber:component:accept"
#define SHA1_HEX_LEN 40

enum comp_state {
    COMP_HEADER,   /* waiting for the stream header */
    COMP_AUTH,     /* header answered, waiting for <handshake/> */
    COMP_FAILING,  /* wrong handshake: input stopped, error after a delay */
    COMP_READY,    /* authenticated: stanzas flow both ways */
    COMP_CLOSING,  /* our </stream:stream> is queued; waiting to flush */
};

typedef struct comp_stream {
    enum comp_state state;
    xstream x;                 /* timer: negotiation timeout, failure delay, close check */
    char ip[INET6_ADDRSTRLEN];
    char tag[LOG_CONN_TAG_MAX]; /* "ip #N" for log lines */
    char stream_id[24];
    char *domain;              /* the header's 'to', nameprepped */
    bool registered;           /* the connected stream of its domain */
    struct comp_stream *prev, *next; /* every open stream, for shutdown */
} comp_stream;

static comp_stream *streams;   /* every open stream */
static strmap *connected;      /* domain -> READY comp_stream */
static bool shutting_down;

static void comp_teardown(comp_stream *c);

/* ---- configuration lookups ------------------------------------------------ */

/* The component serving domain: configured for it exactly, or for a parent
 * domain with "subdomains"; the most specific one wins. NULL: none. */
static const component_conf *conf_for(const char *domain)
{
    const xmppd_config *cfg = g_server.cfg;
    if (!cfg || cfg->n_components == 0)
        return NULL;
    for (const char *d = domain; d && *d;) {
        for (size_t i = 0; i < cfg->n_components; i++) {
            const component_conf *cc = &cfg->components[i];
            if ((d == domain || cc->subdomains) && strcmp(cc->domain, d) == 0)
                return cc;
        }
        d = strchr(d, '.');
        if (d)
            d++;
    }
    return NULL;
}

static const component_conf *conf_exact(const char *domain)
{
    const xmppd_config *cfg = g_server.cfg;
    for (size_t i = 0; cfg && i < cfg->n_components; i++)
        if (strcmp(cfg->components[i].domain, domain) == 0)
            return &cfg->components[i];
    return NULL;
}

/* ---- output ------------------------------------------------------------------ */

static void write_raw(comp_stream *c, const char *data, size_t len)
{
    xstream_write_raw(&c->x, data, len);
}

/* XEP-0114 §3: the server's header has no version and no features. */
static void send_header(comp_stream *c)
{
    char buf[1400];
    int n = snprintf(buf, sizeof(buf),
                     "<?xml version='1.0'?><stream:stream xmlns='" NS_COMPONENT "' "
                     "xmlns:stream='" XS_NS_STREAM "' id='%s'%s%s%s>",
                     c->stream_id, c->domain ? " from='" : "", c->domain ? c->domain : "",
                     c->domain ? "'" : "");
    if (n > 0 && (size_t)n < sizeof(buf))
        write_raw(c, buf, (size_t)n);
    c->x.header_sent = true;
}

/* ---- closing ----------------------------------------------------------------- */

/* The domain has no connected component any more. */
static void unregister(comp_stream *c)
{
    if (!c->registered)
        return;
    strmap_del(connected, c->domain);
    c->registered = false;
    place_component_detached(c->domain);
    log_kernel("component", XMPPD_LOG_INFO, "%s: component %s disconnected", c->tag, c->domain);
}

/* Stream error (condition NULL: a clean close), then teardown on a later
 * loop turn once the bytes are out or the grace period ended. condition and
 * text come from kernel code, never from the peer. */
static void comp_close(comp_stream *c, const char *condition, const char *text)
{
    if (c->state == COMP_CLOSING)
        return;
    xstream_close(&c->x, condition, text);
    if (condition)
        log_kernel("component", XMPPD_LOG_INFO, "%s: %s%s%sstream error %s%s%s", c->tag,
                   c->domain ? "component " : "", c->domain ? c->domain : "",
                   c->domain ? ": " : "", condition, text ? ": " : "", text ? text : "");
    /* From now on the domain reads as offline: stanzas for it are answered,
     * not queued to a stream that is going away. */
    unregister(c);
    c->state = COMP_CLOSING;
}

/* Frees the stream. Never called from inside the parser's callbacks. */
static void comp_teardown(comp_stream *c)
{
    unregister(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        streams = c->next;
    if (c->next)
        c->next->prev = c->prev;
    xstream_release(&c->x);
    conn_ip_release(c->ip);
    free(c->domain);
    free(c);
    if (shutting_down && !streams)
        loop_break();
}

/* ---- stream header and handshake --------------------------------------------- */

static int on_header(void *ud, const xs_header *h)
{
    comp_stream *c = ud;
    xstream_random_id(c->stream_id, sizeof(c->stream_id));
    if (!h->default_ns || strcmp(h->default_ns, NS_COMPONENT) != 0) {
        comp_close(c, "invalid-namespace", NULL);
        return 1;
    }
    if (!h->to || !*h->to) {
        comp_close(c, "improper-addressing", "A 'to' attribute naming the component is required");
        return 1;
    }
    char *domain = xmppd_nameprep(h->to);
    if (!domain || !conf_exact(domain)) {
        free(domain);
        comp_close(c, "host-unknown", NULL);
        return 1;
    }
    c->domain = domain;
    send_header(c);
    c->state = COMP_AUTH;
    return 0;
}

static void on_failure_delay(evutil_socket_t fd, short what, void *arg)
{
    comp_close(arg, "not-authorized", NULL);
}

/* hex(SHA-1(stream id + secret)), lower case, NUL-terminated. 0 or -1. */
static int expected_handshake(const comp_stream *c, const char *secret, char out[SHA1_HEX_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, c->stream_id, strlen(c->stream_id)) == 1 &&
             EVP_DigestUpdate(ctx, secret, strlen(secret)) == 1 &&
             EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen * 2 == SHA1_HEX_LEN;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[SHA1_HEX_LEN] = '\0';
    xmppd_wipe(md, sizeof(md));
    return 0;
}

/* The component proved the secret: it takes over the domain, unless another
 * stream has it already. */
static void handshake_ok(comp_stream *c)
{
    /* one stream per domain, in a cluster too */
    if (strmap_get(connected, c->domain) || place_component_elsewhere(c->domain)) {
        comp_close(c, "conflict", "This component is already connected");
        return;
    }
    if (strmap_put(connected, c->domain, c) < 0) {
        comp_close(c, "resource-constraint", NULL);
        return;
    }
    c->registered = true;
    const component_conf *cc = conf_exact(c->domain);
    place_component_attached(c->domain, cc && cc->subdomains);
    c->state = COMP_READY;
    xstream_stop_timer(&c->x); /* negotiation finished in time */
    write_raw(c, "<handshake/>", 12);
    log_kernel("component", XMPPD_LOG_INFO, "%s: component %s connected", c->tag, c->domain);
}

static void handle_handshake(comp_stream *c, xmppd_stanza *el)
{
    const component_conf *cc = conf_exact(c->domain);
    if (!cc) { /* removed by a reload since the header */
        comp_close(c, "host-gone", NULL);
        return;
    }
    char want[SHA1_HEX_LEN + 1], got[SHA1_HEX_LEN + 1];
    const char *text = xmppd_stanza_text(el);
    size_t len = strlen(text);
    /* Tolerate surrounding whitespace and upper-case hex digits. */
    while (len && isspace((unsigned char)*text)) {
        text++;
        len--;
    }
    while (len && isspace((unsigned char)text[len - 1]))
        len--;
    bool ok = len == SHA1_HEX_LEN && expected_handshake(c, cc->secret, want) == 0;
    if (ok) {
        for (size_t i = 0; i < SHA1_HEX_LEN; i++)
            got[i] = (char)tolower((unsigned char)text[i]);
        ok = xmppd_ct_equal(got, want, SHA1_HEX_LEN);
    }
    xmppd_wipe(want, sizeof(want));
    if (ok) {
        handshake_ok(c);
        return;
    }
    log_kernel("component", XMPPD_LOG_WARN, "%s: component %s: wrong handshake", c->tag, c->domain);
    uint64_t delay = g_server.cfg->limits.auth_failure_delay;
    if (delay == 0) {
        comp_close(c, "not-authorized", NULL);
        return;
    }
    /* Slow down guessing: no input is read, the error comes later. */
    c->state = COMP_FAILING;
    xstream_pause_input(&c->x);
    xstream_stop_timer(&c->x);
    c->x.timer = evtimer_new(loop_base(), on_failure_delay, c);
    struct timeval tv = { (time_t)(delay / 1000), (suseconds_t)(delay % 1000) * 1000 };
    if (c->x.timer)
        evtimer_add(c->x.timer, &tv);
    else
        comp_close(c, "not-authorized", NULL);
}

/* ---- stanzas from the component ------------------------------------------------ */

static bool is_stanza(const char *name)
{
    return strcmp(name, "message") == 0 || strcmp(name, "presence") == 0 || strcmp(name, "iq") == 0;
}

/* A stanza error straight back to the component (errors are not answered). */
static void reject(comp_stream *c, xmppd_stanza *st, const char *type, const char *cond)
{
    const char *t = xmppd_stanza_attr(st, "type");
    if (t && (strcmp(t, "error") == 0 ||
              (strcmp(xmppd_stanza_name(st), "iq") == 0 && strcmp(t, "result") == 0)))
        return;
    xmppd_stanza *e = xmppd_stanza_error_reply(st, type, cond, NULL);
    if (e) {
        xstream_write(&c->x, e);
        xmppd_stanza_unref(e);
    }
}

/* RFC 6120 §8.2.3: an IQ has an id and a known type; get and set carry
 * exactly one child. */
static bool iq_valid(xmppd_stanza *st)
{
    const char *t = xmppd_stanza_attr(st, "type");
    if (!t || !xmppd_stanza_attr(st, "id"))
        return false;
    if (strcmp(t, "get") == 0 || strcmp(t, "set") == 0) {
        xmppd_stanza *ch = xmppd_stanza_first(st);
        return ch && !xmppd_stanza_next(ch);
    }
    return strcmp(t, "result") == 0 || strcmp(t, "error") == 0;
}

static void handle_stanza(comp_stream *c, xmppd_stanza *st)
{
    const char *name = xmppd_stanza_name(st);
    if (!is_stanza(name) || strcmp(xmppd_stanza_ns(st), NS_COMPONENT) != 0) {
        comp_close(c, "unsupported-stanza-type", NULL);
        return;
    }
    const char *from_s = xmppd_stanza_attr(st, "from"), *to_s = xmppd_stanza_attr(st, "to");
    if (!from_s || !to_s) {
        comp_close(c, "improper-addressing", "Stanzas from a component need 'from' and 'to'");
        return;
    }
    xmppd_jid *from = xmppd_jid_parse(from_s);
    if (!from) {
        comp_close(c, "improper-addressing", "The 'from' address is not a valid JID");
        return;
    }
    /* Its own domain, or a subdomain routed to it (never a local host's,
     * nor one a module serves). */
    const component_conf *cc = conf_for(from->domain);
    if (!cc || strcmp(cc->domain, c->domain) != 0 || xmppd_host_find(from->domain) ||
        domains_name(from->domain)) {
        xmppd_jid_free(from);
        comp_close(c, "invalid-from", NULL);
        return;
    }
    xmppd_jid *to = xmppd_jid_parse(to_s);
    if (!to) {
        reject(c, st, "modify", "jid-malformed");
    } else if (strcmp(name, "iq") == 0 && !iq_valid(st)) {
        reject(c, st, "modify", "bad-request");
    } else {
        xmppd_stanza_set_attr(st, "from", from->full);
        xmppd_stanza_set_attr(st, "to", to->full);
        xmppd_route(NULL, st);
    }
    xmppd_jid_free(to);
    xmppd_jid_free(from);
}

/* ---- parser callbacks -------------------------------------------------------- */

static int on_element(void *ud, xmppd_stanza *el)
{
    comp_stream *c = ud;
    if (c->state == COMP_READY) {
        handle_stanza(c, el);
    } else if (c->state == COMP_AUTH) {
        if (strcmp(xmppd_stanza_name(el), "handshake") == 0 &&
            strcmp(xmppd_stanza_ns(el), NS_COMPONENT) == 0)
            handle_handshake(c, el);
        else
            comp_close(c, "not-authorized", NULL);
    }
    xmppd_stanza_unref(el);
    return c->state != COMP_READY && c->state != COMP_AUTH;
}

/* ---- socket events ------------------------------------------------------------ */

static bool readable(void *arg)
{
    comp_stream *c = arg;
    return c->state == COMP_HEADER || c->state == COMP_AUTH || c->state == COMP_READY;
}

static void on_event(void *arg, struct bufferevent *bev, short what)
{
    comp_stream *c = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if (what & BEV_EVENT_ERROR)
        log_kernel("component", XMPPD_LOG_DEBUG, "%s: connection error", c->tag);
    comp_teardown(c); /* EOF or error: nothing can be written any more */
}

static void on_negotiation_timeout(void *arg)
{
    comp_close(arg, "connection-timeout", "The handshake took too long");
}

static void on_close(void *arg, const char *condition, const char *text)
{
    comp_close(arg, condition, text);
}

static void on_send_header(void *arg)
{
    send_header(arg);
}

static void on_closed(void *arg)
{
    comp_teardown(arg);
}

static const xstream_ops stream_ops = {
    .default_ns = NS_COMPONENT,
    .header = on_header,
    .element = on_element,
    .close = on_close,
    .send_header = on_send_header,
    .readable = readable,
    .timeout = on_negotiation_timeout,
    .event = on_event,
    .teardown = on_closed,
};

void component_accept(int fd, const struct sockaddr *sa, int socklen)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    xstream_peer_addr(sa, ip);
    if (shutting_down || !conn_ip_acquire(ip)) {
        if (!shutting_down)
            log_kernel("component", XMPPD_LOG_WARN, "%s: too many connections from this address", ip);
        evutil_closesocket(fd);
        return;
    }
    comp_stream *c = calloc(1, sizeof(*c));
    if (!connected)
        connected = strmap_new();
    if (!c || !connected) {
        free(c);
        conn_ip_release(ip);
        evutil_closesocket(fd);
        return;
    }
    snprintf(c->ip, sizeof(c->ip), "%s", ip);
    log_conn_tag(c->tag, ip);
    c->next = streams;
    if (streams)
        streams->prev = c;
    streams = c;
    evutil_make_socket_nonblocking(fd);
    struct bufferevent *bev =
        bufferevent_socket_new(loop_base(), fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev)
        evutil_closesocket(fd);
    if (xstream_open(&c->x, &stream_ops, c, bev, NULL, g_server.cfg->limits.negotiation_timeout) < 0)
        comp_teardown(c);
}

/* ---- routing, reload, shutdown -------------------------------------------------- */

static int component_route(const xmppd_jid *to, xmppd_stanza *st)
{
    const component_conf *cc = conf_for(to->domain);
    if (!cc)
        return ROUTE_NONE;
    comp_stream *c = connected ? strmap_get(connected, cc->domain) : NULL;
    if (c) {
        xstream_write(&c->x, st);
        return ROUTE_DONE;
    }
    /* Presence to an absent service is dropped, like presence to an
     * unknown account (RFC 6121 §8.5.1); messages and IQs get an answer. */
    return strcmp(xmppd_stanza_name(st), "presence") == 0 ? ROUTE_DONE : ROUTE_OFFLINE;
}

void component_start(void)
{
    router_set_component_route(component_route);
}

void component_reconfigured(void)
{
    for (comp_stream *c = streams; c; c = c->next)
        if (c->domain && c->state != COMP_CLOSING && !conf_exact(c->domain))
            comp_close(c, "host-gone", "This component is no longer configured");
}

void component_shutdown_all(void)
{
    shutting_down = true;
    for (comp_stream *c = streams; c; c = c->next)
        comp_close(c, "system-shutdown", NULL);
    /* Let the loop deliver the errors; each stream leaves the list when its
     * bytes are out or its grace period ends. */
    if (streams)
        loop_run();
    while (streams)
        comp_teardown(streams);
    strmap_free(connected);
    connected = NULL;
}
