/* Client-to-server streams (RFC 6120): stream header, features, STARTTLS,
 * SASL, resource binding, then stanzas into the router.
 *
 * A session is reference counted: the connection holds one reference until
 * its socket is gone; callbacks that may outlive it (auth provider answers,
 * timers) hold their own and check c->state. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c2s/c2s.h"
#include "net/net.h"
#include "net/xstream.h"
#include "sasl/sasl.h"
#include "session/session.h"

#define NS_STREAM XS_NS_STREAM
#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_SASL_CB "urn:xss:sasl-cb:0"

/* Channel bindings advertised (XEP-0440), then one more accepted when a
 * client asks for it (see tls_channel_binding). */
static const char *const cb_types[] = { "tls-exporter", "tls-server-end-point", "tls-unique" };
#define CB_ADVERTISED 2
#define CB_ACCEPTED 3

enum c2s_state {
    C2S_HEADER,    /* waiting for the (next) stream header */
    C2S_OPEN,      /* header exchanged, negotiating (TLS, SASL, bind) */
    C2S_BOUND,     /* resource bound: stanzas flow */
    C2S_CLOSING,   /* our </stream:stream> is queued; waiting to flush */
    C2S_CLOSED     /* socket gone; struct lives on while referenced */
};

/* One client connection: the stream and its negotiation. The session it
 * carries (c->s) is the session layer's; the connection holds one reference
 * from accept to teardown. The struct is reference counted because
 * callbacks (auth provider answers, the failure delay) may outlive the
 * socket; they hold a reference and check c->state. */
typedef struct c2s_conn {
    int refs;
    enum c2s_state state;
    xmppd_session *s;
    xstream x;                  /* socket, TLS, parser; timer: negotiation
                                 * timeout, then the close check */
    struct event *delay;        /* delayed SASL failure */
    char stream_id[24];
    bool direct_tls;
    bool counted_ip;            /* holds a connection of its address (TCP; carriers count theirs) */
    bool starttls_pending;      /* <proceed/> sent: discard input, start TLS */

    /* SASL in progress */
    const char *mech;           /* static name or NULL */
    scram_server *scram;
    enum xmppd_hash scram_hash;
    bool sasl_busy;             /* waiting for the auth provider */
    bool plus_offered;
    unsigned auth_failures;
    char *pending_authzid;
} c2s_conn;

/* Every open stream, for shutdown. */
struct c2s_list {
    c2s_conn **v;
    size_t n, cap;
};
static struct c2s_list streams;
static unsigned char fake_secret[32]; /* SCRAM fake salts for unknown users */
static bool shutting_down;

static void s_teardown(c2s_conn *c);
static void send_features(c2s_conn *c);
static void process_input(c2s_conn *c);
static void resume_input(c2s_conn *c);

/* ---- references ---------------------------------------------------------- */

static c2s_conn *conn_ref(c2s_conn *c)
{
    c->refs++;
    return c;
}

static void conn_unref(c2s_conn *c)
{
    if (!c || --c->refs > 0)
        return;
    xmppd_session_unref(c->s);
    free(c->pending_authzid);
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

/* Negotiation elements (SASL, bind results): not stanzas of the session. */
static void c2s_write(c2s_conn *c, const xmppd_stanza *st)
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

static void c2s_close(c2s_conn *c, const char *condition, const char *text)
{
    if (c->state == C2S_CLOSING || c->state == C2S_CLOSED)
        return;
    c->s->closing = true;
    xstream_close(&c->x, condition, text);
    if (condition)
        log_kernel("c2s", XMPPD_LOG_INFO, "%s: stream error %s%s%s", c->s->ip, condition,
                   text ? ": " : "", text ? text : "");
    c->state = C2S_CLOSING;
}

/* Frees the connection side of c; the struct lives while referenced. */
static void s_teardown(c2s_conn *c)
{
    if (c->state == C2S_CLOSED)
        return;
    c->state = C2S_CLOSED;
    streams_remove(c);
    if (c->delay)
        event_free(c->delay);
    c->delay = NULL;
    xstream_release(&c->x);
    scram_server_free(c->scram);
    c->scram = NULL;
    if (c->counted_ip)
        conn_ip_release(c->s->ip);
    session_detach(c->s);
    conn_unref(c);
}

/* ---- the session's transport ------------------------------------------------- */

static int tr_write(void *conn, const xmppd_stanza *st, size_t *len_r)
{
    c2s_conn *c = conn;
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

static const session_transport c2s_transport = {
    .name = "c2s", .write = tr_write, .close = tr_close, .bytes_in = tr_bytes_in,
    .rebind = tr_rebind,
};

/* ---- stream header --------------------------------------------------------- */

static int on_header(void *ud, const xs_header *h)
{
    c2s_conn *c = ud;
    xmppd_host *host = h->to ? xmppd_host_find(h->to) : NULL;
    /* Answer with a header (ours) before any error, RFC 6120 §4.9.1.1. */
    if (!c->s->host)
        c->s->host = host;
    xstream_random_id(c->stream_id, sizeof(c->stream_id)); /* a new id per stream, restarts too */
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
    send_header(c);
    c->state = C2S_OPEN;
    send_features(c);
    return 0;
}

/* ---- features ---------------------------------------------------------------- */

/* Never on carried streams: WebSocket and BOSH have TLS below HTTP or
 * none (RFC 7395 §3.7, XEP-0206 §4). */
static bool tls_available(const c2s_conn *c)
{
    return !c->s->secure && c->s->host && c->s->host->ssl_ctx && !c->x.carrier;
}

static bool cb_available(c2s_conn *c, const char *type)
{
    unsigned char buf[XMPPD_HASH_MAX_LEN];
    size_t len = sizeof(buf);
    return c->s->secure && tls_channel_binding(c->x.ssl, type, buf, &len) == 0;
}

static void add_mechanisms(c2s_conn *c, xmppd_stanza *features)
{
    unsigned can = xmppd_auth_mechanisms(c->s->host);
    xmppd_stanza *mechs = xmppd_stanza_tag(features, "mechanisms", NS_SASL);
    bool any_cb = cb_available(c, cb_types[0]) || cb_available(c, cb_types[1]);
    static const enum xmppd_hash order[] = { XMPPD_HASH_SHA512, XMPPD_HASH_SHA256, XMPPD_HASH_SHA1 };
    c->plus_offered = false;
    for (int plus = 1; plus >= 0; plus--) {
        if (plus && !any_cb)
            continue;
        for (size_t i = 0; i < 3; i++) {
            if (!(can & XMPPD_AUTH_CAN_SCRAM(order[i])))
                continue;
            char name[32];
            snprintf(name, sizeof(name), "%s%s", xmppd_hash_scram_name(order[i]), plus ? "-PLUS" : "");
            xmppd_stanza *m = xmppd_stanza_tag(mechs, "mechanism", NS_SASL);
            xmppd_stanza_add_text(m, name, strlen(name));
            if (plus)
                c->plus_offered = true;
        }
    }
    /* PLAIN reveals the password to the server: only inside TLS. */
    if ((can & XMPPD_AUTH_CAN_PLAIN) && c->s->secure)
        xmppd_stanza_add_text(xmppd_stanza_tag(mechs, "mechanism", NS_SASL), "PLAIN", 5);
    if (any_cb) {
        /* XEP-0440: tell the client which channel bindings we support. */
        xmppd_stanza *cb = xmppd_stanza_tag(features, "sasl-channel-binding", NS_SASL_CB);
        for (size_t i = 0; i < CB_ADVERTISED; i++)
            if (cb_available(c, cb_types[i]))
                xmppd_stanza_set_attr(xmppd_stanza_tag(cb, "channel-binding", NS_SASL_CB), "type",
                                      cb_types[i]);
    }
}

static void send_features(c2s_conn *c)
{
    xmppd_stanza *f = xmppd_stanza_new("features", NS_STREAM);
    bool tls_required = g_server.cfg->c2s.require_encryption;
    if (!c->s->authenticated) {
        if (tls_available(c)) {
            xmppd_stanza *st = xmppd_stanza_tag(f, "starttls", NS_TLS);
            if (tls_required)
                xmppd_stanza_tag(st, "required", NS_TLS);
        }
        /* RFC 6120 §5.3.1: with TLS mandatory, offer nothing else before it. */
        if (c->s->secure || !tls_required)
            add_mechanisms(c, f);
    } else {
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

/* ---- SASL ------------------------------------------------------------------------ */

static void sasl_send(c2s_conn *c, const char *name, const unsigned char *data, size_t len)
{
    xmppd_stanza *el = xmppd_stanza_new(name, NS_SASL);
    if (data && len) {
        char *b = xmppd_base64_encode(data, len);
        if (b)
            xmppd_stanza_add_text(el, b, strlen(b));
        free(b);
    } else if (data) {
        xmppd_stanza_add_text(el, "=", 1); /* RFC 6120 §6.4.2: empty response */
    }
    c2s_write(c, el);
    xmppd_stanza_unref(el);
}

static void sasl_reset(c2s_conn *c)
{
    scram_server_free(c->scram);
    c->scram = NULL;
    c->mech = NULL;
    free(c->pending_authzid);
    c->pending_authzid = NULL;
}

static void send_failure_now(c2s_conn *c, const char *cond)
{
    xmppd_stanza *f = xmppd_stanza_new("failure", NS_SASL);
    xmppd_stanza_tag(f, cond, NS_SASL);
    c2s_write(c, f);
    xmppd_stanza_unref(f);
    if (c->auth_failures >= g_server.cfg->limits.auth_attempts)
        c2s_close(c, "policy-violation", "Too many failed authentication attempts");
}

struct delayed_failure {
    c2s_conn *c;
    const char *cond;
};

static void on_failure_delay(evutil_socket_t fd, short what, void *arg)
{
    struct delayed_failure *d = arg;
    c2s_conn *c = d->c;
    event_free(c->delay);
    c->delay = NULL;
    if (c->state != C2S_CLOSED && c->state != C2S_CLOSING) {
        send_failure_now(c, d->cond);
        resume_input(c);
    }
    free(d);
}

/* Failed credentials slow the stream down (the delay doubles per failure),
 * so guessing passwords over one stream is slow. */
static void sasl_fail(c2s_conn *c, const char *cond)
{
    bool credential = strcmp(cond, SASL_NOT_AUTHORIZED) == 0 || strcmp(cond, SASL_INVALID_AUTHZID) == 0;
    sasl_reset(c);
    if (!credential) {
        send_failure_now(c, cond);
        return;
    }
    c->auth_failures++;
    log_kernel("c2s", XMPPD_LOG_INFO, "%s: authentication failed (%s) on %s", c->s->ip, cond,
               c->s->host->name);
    /* Per-address counting and policies (data NULL: no secret is passed). */
    xmppd_notify(c->s->host, "auth-failure", c->s, NULL);
    if (c->state == C2S_CLOSING || c->state == C2S_CLOSED)
        return;
    uint64_t ms = g_server.cfg->limits.auth_failure_delay;
    for (unsigned i = 1; i < c->auth_failures && ms < 60000; i++)
        ms *= 2;
    struct delayed_failure *d = malloc(sizeof(*d));
    if (!ms || !d || !(c->delay = evtimer_new(loop_base(), on_failure_delay, d))) {
        free(d);
        send_failure_now(c, cond);
        return;
    }
    d->c = c;
    d->cond = cond;
    xstream_pause_input(&c->x);
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(c->delay, &tv);
}

static void sasl_succeed(c2s_conn *c, const char *user, const unsigned char *extra, size_t len)
{
    free(c->s->user);
    c->s->user = strdup(user);
    c->s->authenticated = c->s->user != NULL;
    sasl_reset(c);
    sasl_send(c, "success", extra, len);
    c->state = C2S_HEADER;
    xstream_restart(&c->x);
    log_kernel("c2s", XMPPD_LOG_INFO, "%s: authenticated as %s@%s", c->s->ip, user, c->s->host->name);
    xmppd_notify(c->s->host, "auth-success", c->s, (void *)user);
}

/* An authzid is acceptable only when it names the authenticating account
 * (RFC 6120 §6.4.6); clients commonly send their own bare or full JID. */
static bool authzid_ok(c2s_conn *c, const char *authzid, const char *user)
{
    if (!authzid || !*authzid)
        return true;
    xmppd_jid *j = xmppd_jid_parse(authzid);
    bool ok = j && j->node && strcmp(j->node, user) == 0 && strcmp(j->domain, c->s->host->name) == 0;
    xmppd_jid_free(j);
    return ok;
}

static int map_auth_result(int r)
{
    return r == XMPPD_AUTH_DISABLED ? 1 : r == XMPPD_AUTH_INTERNAL ? 2 : 0;
}

static const char *auth_failure_cond(int r)
{
    static const char *const conds[] = { SASL_NOT_AUTHORIZED, SASL_ACCOUNT_DISABLED,
                                         SASL_TEMPORARY_FAILURE };
    return conds[map_auth_result(r)];
}

struct plain_req {
    c2s_conn *c;
    char *user;
};

static void on_plain_verified(int result, void *ud)
{
    struct plain_req *r = ud;
    c2s_conn *c = r->c;
    if (c->state == C2S_OPEN && c->sasl_busy) {
        c->sasl_busy = false;
        if (result == XMPPD_AUTH_OK)
            sasl_succeed(c, r->user, NULL, 0);
        else
            sasl_fail(c, auth_failure_cond(result));
        resume_input(c);
    }
    conn_unref(c);
    free(r->user);
    free(r);
}

static void sasl_plain(c2s_conn *c, const unsigned char *msg, size_t len)
{
    char *authzid = NULL, *authcid = NULL, *pass = NULL;
    if (sasl_plain_parse(msg, len, &authzid, &authcid, &pass) < 0) {
        sasl_fail(c, SASL_MALFORMED);
        return;
    }
    char *user = xmppd_nodeprep(authcid);
    if (!user) {
        sasl_fail(c, SASL_NOT_AUTHORIZED);
    } else if (!authzid_ok(c, authzid, user)) {
        sasl_fail(c, SASL_INVALID_AUTHZID);
    } else {
        struct plain_req *r = malloc(sizeof(*r));
        if (!r) {
            sasl_fail(c, SASL_TEMPORARY_FAILURE);
        } else {
            r->c = conn_ref(c);
            r->user = user;
            user = NULL;
            c->sasl_busy = true;
            /* No more input until the provider answers: keeps order simple. */
            xstream_pause_input(&c->x);
            xmppd_auth_verify_plain(NULL, c->s->host, r->user, pass, on_plain_verified, r);
        }
    }
    free(user);
    free(authzid);
    free(authcid);
    if (pass) {
        xmppd_wipe(pass, strlen(pass));
        free(pass);
    }
}

static void on_scram_keys(int result, const xmppd_scram_keys *keys, void *ud)
{
    c2s_conn *c = ud;
    if (c->state == C2S_OPEN && c->sasl_busy && c->scram) {
        c->sasl_busy = false;
        if (result == XMPPD_AUTH_OK || result == XMPPD_AUTH_USER_UNKNOWN ||
            result == XMPPD_AUTH_NO_SCHEME) {
            /* Unknown users get a fake challenge and fail at the proof, so
             * the exchange does not reveal which accounts exist. */
            size_t len;
            char *first = scram_server_first(c->scram, result == XMPPD_AUTH_OK ? keys : NULL,
                                             fake_secret, sizeof(fake_secret), &len);
            if (first) {
                sasl_send(c, "challenge", (unsigned char *)first, len);
                free(first);
            } else {
                sasl_fail(c, SASL_TEMPORARY_FAILURE);
            }
        } else {
            sasl_fail(c, auth_failure_cond(result));
        }
        resume_input(c);
    }
    conn_unref(c);
}

static void sasl_scram_first(c2s_conn *c, const unsigned char *msg, size_t len)
{
    scram_cb cbs[CB_ACCEPTED];
    unsigned char data[CB_ACCEPTED][XMPPD_HASH_MAX_LEN];
    size_t n = 0;
    for (size_t i = 0; i < CB_ACCEPTED && c->s->secure; i++) {
        size_t dl = sizeof(data[i]);
        if (tls_channel_binding(c->x.ssl, cb_types[i], data[i], &dl) == 0)
            cbs[n++] = (scram_cb){ cb_types[i], data[i], dl };
    }
    bool plus = strstr(c->mech, "-PLUS") != NULL;
    c->scram = scram_server_new(c->scram_hash, plus, c->plus_offered, cbs, n);
    const char *user = NULL, *authzid = NULL, *cond = NULL;
    if (!c->scram ||
        scram_server_client_first(c->scram, (const char *)msg, len, &user, &authzid, &cond) < 0) {
        sasl_fail(c, cond ? cond : SASL_TEMPORARY_FAILURE);
        return;
    }
    char *node = xmppd_nodeprep(user);
    if (!node) {
        sasl_fail(c, SASL_NOT_AUTHORIZED);
        return;
    }
    if (!authzid_ok(c, authzid, node)) {
        free(node);
        sasl_fail(c, SASL_INVALID_AUTHZID);
        return;
    }
    free(c->pending_authzid);
    c->pending_authzid = node; /* the account, confirmed at the final step */
    c->sasl_busy = true;
    xstream_pause_input(&c->x);
    xmppd_auth_get_scram(NULL, c->s->host, node, c->scram_hash, on_scram_keys, conn_ref(c));
}

static void sasl_scram_final(c2s_conn *c, const unsigned char *msg, size_t len)
{
    const char *cond = NULL;
    size_t outlen;
    char *final = scram_server_client_final(c->scram, (const char *)msg, len, &outlen, &cond);
    if (!final) {
        sasl_fail(c, cond ? cond : SASL_NOT_AUTHORIZED);
        return;
    }
    char *user = c->pending_authzid;
    c->pending_authzid = NULL;
    sasl_succeed(c, user, (unsigned char *)final, outlen);
    free(final);
    free(user);
}

static bool decode_payload(xmppd_stanza *el, unsigned char **out, size_t *len)
{
    const char *t = xmppd_stanza_text(el);
    if (strcmp(t, "=") == 0 || !*t) {
        *out = (unsigned char *)strdup("");
        *len = 0;
        return *out != NULL;
    }
    return xmppd_base64_decode(t, strlen(t), out, len) == 0;
}

static int parse_mech(const char *name, enum xmppd_hash *h)
{
    for (int i = 0; i < XMPPD_HASH_COUNT; i++) {
        const char *base = xmppd_hash_scram_name((enum xmppd_hash)i);
        size_t bl = strlen(base);
        if (strncmp(name, base, bl) == 0 && (!name[bl] || strcmp(name + bl, "-PLUS") == 0)) {
            *h = (enum xmppd_hash)i;
            return 1;
        }
    }
    return strcmp(name, "PLAIN") == 0 ? 0 : -1;
}

/* Is `name` among what send_features offered on this stream? */
static bool mech_offered(c2s_conn *c, const char *name, enum xmppd_hash h, int kind)
{
    unsigned can = xmppd_auth_mechanisms(c->s->host);
    if (kind == 0)
        return (can & XMPPD_AUTH_CAN_PLAIN) && c->s->secure;
    if (!(can & XMPPD_AUTH_CAN_SCRAM(h)))
        return false;
    return !strstr(name, "-PLUS") || c->plus_offered;
}

static void handle_sasl(c2s_conn *c, xmppd_stanza *el)
{
    const char *name = xmppd_stanza_name(el);
    if (c->s->authenticated || c->sasl_busy) {
        sasl_fail(c, SASL_MALFORMED);
        return;
    }
    if (strcmp(name, "abort") == 0) {
        sasl_fail(c, SASL_ABORTED);
        return;
    }
    unsigned char *msg = NULL;
    size_t len = 0;
    if (strcmp(name, "auth") == 0) {
        if (c->mech) {
            sasl_fail(c, SASL_MALFORMED);
            return;
        }
        if (!c->s->secure && g_server.cfg->c2s.require_encryption) {
            send_failure_now(c, SASL_ENCRYPTION_REQUIRED);
            return;
        }
        const char *mech = xmppd_stanza_attr(el, "mechanism");
        enum xmppd_hash h = XMPPD_HASH_SHA1;
        int kind = mech ? parse_mech(mech, &h) : -1;
        if (kind < 0 || !mech_offered(c, mech, h, kind)) {
            send_failure_now(c, SASL_INVALID_MECHANISM);
            return;
        }
        if (!decode_payload(el, &msg, &len)) {
            sasl_fail(c, SASL_INCORRECT_ENCODING);
            return;
        }
        c->scram_hash = h;
        if (kind == 0) {
            c->mech = "PLAIN";
            sasl_plain(c, msg, len);
        } else if (len == 0) {
            /* SCRAM is client-first: an empty initial response asks us
             * for an empty challenge (RFC 6120 §6.4.2). */
            c->mech = strstr(mech, "-PLUS") ? "SCRAM-PLUS" : "SCRAM";
            sasl_send(c, "challenge", (const unsigned char *)"", 0);
        } else {
            c->mech = strstr(mech, "-PLUS") ? "SCRAM-PLUS" : "SCRAM";
            sasl_scram_first(c, msg, len);
        }
    } else if (strcmp(name, "response") == 0) {
        if (!c->mech) {
            sasl_fail(c, SASL_MALFORMED);
            return;
        }
        if (!decode_payload(el, &msg, &len)) {
            sasl_fail(c, SASL_INCORRECT_ENCODING);
            return;
        }
        if (!c->scram)
            sasl_scram_first(c, msg, len);
        else
            sasl_scram_final(c, msg, len);
    } else {
        sasl_fail(c, SASL_MALFORMED);
    }
    if (msg) {
        xmppd_wipe(msg, len);
        free(msg);
    }
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
    xmppd_jid *jid = res ? xmppd_jid_make(c->s->user, c->s->host->name, res) : NULL;
    free(res);
    if (!jid) {
        iq_error(c, iq, "modify", "bad-request");
        return;
    }
    xmppd_jid_free(c->s->jid);
    c->s->jid = jid;
    xmppd_event ev = { .name = "resource-bind", .host = c->s->host, .session = c->s, .stanza = iq };
    if (xmppd_fire(&ev) != XMPPD_PASS) {
        iq_error(c, iq, "cancel", "not-allowed");
        return;
    }
    if (sm_bind(c->s, jid->resource) < 0) {
        iq_error(c, iq, "wait", "resource-constraint");
        return;
    }
    c->state = C2S_BOUND;
    c->s->bound = true;
    xstream_stop_timer(&c->x); /* negotiation finished in time */
    xmppd_stanza *r = xmppd_stanza_new("iq", XMPPD_NS_CLIENT);
    xmppd_stanza_set_attr(r, "type", "result");
    xmppd_stanza_set_attr(r, "id", xmppd_stanza_attr(iq, "id"));
    xmppd_stanza *j = xmppd_stanza_tag(xmppd_stanza_tag(r, "bind", NS_BIND), "jid", NS_BIND);
    xmppd_stanza_add_text(j, jid->full, strlen(jid->full));
    c2s_write(c, r);
    xmppd_stanza_unref(r);
    log_kernel("c2s", XMPPD_LOG_INFO, "%s: bound %s", c->s->ip, jid->full);
    xmppd_notify(c->s->host, "resource-bound", c->s, NULL);
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
        handle_sasl(c, el);
        return c->s->authenticated ? 1 : 0;
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
    /* RFC 6120 §8.1.2.1: the server stamps the full JID of the session. */
    xmppd_stanza_set_attr(el, "from", c->s->jid->full);
    router_from_client(c->s, el);
}

static int on_element(void *ud, xmppd_stanza *el)
{
    c2s_conn *c = ud;
    int stop = 0;
    if (c->state == C2S_BOUND)
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
    conn_ref(c);
    xstream_pump(&c->x);
    if (c->starttls_pending && c->state != C2S_CLOSED)
        start_tls(c);
    conn_unref(c);
}

/* Input resumes after an asynchronous step finished. */
static void resume_input(c2s_conn *c)
{
    if (c->state != C2S_OPEN && c->state != C2S_HEADER)
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
    if (what & BEV_EVENT_ERROR)
        log_kernel("c2s", XMPPD_LOG_DEBUG, "%s: connection error", c->s->ip);
    /* EOF or error: nothing can be written any more. */
    s_teardown(c);
}

static void on_negotiation_timeout(void *arg)
{
    c2s_close(arg, "connection-timeout", "Stream negotiation took too long");
}

static void on_close(void *arg, const char *condition, const char *text)
{
    c2s_close(arg, condition, text);
}

static void on_send_header(void *arg)
{
    send_header(arg);
}

static void on_closed(void *arg)
{
    s_teardown(arg);
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
    struct bufferevent *bev;
    if (direct_tls) {
        bev = bufferevent_openssl_socket_new(loop_base(), fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        c->s->secure = c->direct_tls = true;
    } else {
        bev = bufferevent_socket_new(loop_base(), fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    }
    if (!bev) {
        SSL_free(ssl);
        evutil_closesocket(fd);
        ssl = NULL;
    }
    if (xstream_open(&c->x, &stream_ops, c, bev, ssl, g_server.cfg->limits.negotiation_timeout) < 0) {
        c->state = C2S_OPEN;
        streams_add(c);
        s_teardown(c);
        return;
    }
    streams_add(c);
    if (fake_secret[0] == 0 && fake_secret[1] == 0)
        xmppd_random(fake_secret, sizeof(fake_secret));
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
    if (xstream_open_carrier(&c->x, &stream_ops, c, car, cud, secure ? ssl : NULL,
                             g_server.cfg->limits.negotiation_timeout) < 0) {
        c->x.carrier = NULL; /* the carrier learns of the failure from NULL */
        xstream_release(&c->x);
        session_detach(c->s);
        conn_unref(c);
        return NULL;
    }
    streams_add(c);
    if (fake_secret[0] == 0 && fake_secret[1] == 0)
        xmppd_random(fake_secret, sizeof(fake_secret));
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
