/* Server-to-server streams (RFC 6120, XEP-0220 dialback, XEP-0178 SASL
 * EXTERNAL, XEP-0368 direct TLS): internals shared by s2s.c (connection
 * plumbing), s2s_in.c (receiving side), s2s_out.c (initiating side),
 * dialback.c (keys) and resolver.c (DNS through c-ares).
 *
 * A connection (s2s_conn) is one TCP stream in one direction. Outgoing
 * streams belong to an s2s_out: one per (local domain, remote domain) pair,
 * which owns the stanza queue while the stream is being set up and is the
 * one connection reused for all traffic of that pair. Incoming streams keep
 * the (local, remote) pairs the peer authenticated, by SASL EXTERNAL or
 * dialback; stanzas are accepted only inside those. */
#ifndef XMPPD_S2S_H
#define XMPPD_S2S_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/net.h"
#include "net/xstream.h"
#include "s2s/federation.h"
#include "session/session.h"

struct bufferevent;
struct event;

#define NS_S2S_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_S2S_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_DIALBACK "jabber:server:dialback"
#define NS_DIALBACK_FEATURE "urn:xmpp:features:dialback"
#define NS_BIDI "urn:xmpp:bidi"
#define NS_BIDI_FEATURE "urn:xmpp:features:bidi"

/* Bounds on what a peer can make us hold. */
#define S2S_MAX_PAIRS 256         /* authenticated domain pairs per incoming stream */
#define S2S_MAX_PENDING_DB 32     /* dialback requests in flight per incoming stream */
#define S2S_MAX_DB_KEY 256        /* bytes of a dialback key we accept */

enum s2s_state {
    S2S_CONNECTING, /* outgoing: TCP (and direct TLS) in progress */
    S2S_HEADER,     /* waiting for the peer's stream header */
    S2S_OPEN,       /* headers exchanged: negotiating, then stanzas */
    S2S_CLOSING,    /* our </stream:stream> is queued */
    S2S_CLOSED      /* socket gone; struct lives while referenced */
};

typedef struct s2s_out s2s_out;

typedef struct s2s_pair {
    char *local;   /* our domain */
    char *remote;  /* the peer's authenticated domain */
} s2s_pair;

typedef struct s2s_conn {
    int refs;
    bool outgoing;
    enum s2s_state state;
    xstream x;                 /* socket, TLS, parser; timer: negotiation /
                                * attempt timeout, then the close check */
    struct event *idle;        /* idle check once stanzas flow */
    uint64_t last_active;
    double tokens;             /* stanza budget (s2s_stanza_allowed) */
    uint64_t tokens_at;        /* monotonic ms of its last update; 0: never */      /* monotonic ms of the last stanza either way */
    char ip[INET6_ADDRSTRLEN];
    char tag[LOG_CONN_TAG_MAX]; /* "ip #N" for log lines */
    int port;
    char stream_id[128];       /* incoming: ours (32 chars); outgoing: the peer's */
    bool secure;
    bool direct_tls;
    bool starttls_pending;     /* <proceed/> sent or received: TLS starts next */
    bool restart_pending;      /* outgoing: SASL success, a new header is due */
    bool ip_counted;           /* incoming: holds a conn_ip_acquire slot */
    bool shutdown;             /* closed by s2s_shutdown_all */
    int cert_valid;            /* -1 not checked, 0 no, 1 valid for `remote` */
    bool bidi;                 /* XEP-0288 negotiated: stanzas flow both ways */
    char *local;               /* our domain on this stream */
    char *remote;              /* outgoing: the target; incoming: header 'from' */

    /* incoming */
    s2s_pair *pairs;
    size_t n_pairs;
    unsigned n_db_pending;
    bool sasl_done;
    bool features_db_errors;   /* we offered XEP-0220 error handling */

    /* outgoing */
    s2s_out *out;              /* the pair this stream serves; NULL once detached */
    bool peer_db_errors;       /* the peer supports dialback errors */
    bool db_sent;              /* our <db:result/> is out */
    bool sasl_sent;
    bool authenticated;

    struct s2s_conn *prev, *next; /* every stream, for shutdown */
} s2s_conn;

/* The router's remote route (router_set_remote_route): a stanza for a
 * domain we do not serve (ev->to, ev->from set). true when taken (sent,
 * queued, or bounced by s2s itself). */
bool s2s_out_route(xmppd_event *ev);

/* ---- s2s.c: connection plumbing -------------------------------------------- */
s2s_conn *s2s_conn_new(bool outgoing);
void s2s_conn_ref(s2s_conn *c);
void s2s_conn_unref(s2s_conn *c);
/* Installs bev (and ssl, when TLS) on c with the shared callbacks and a new
 * parser; arms the negotiation timer for ms. 0 or -1. */
int s2s_conn_attach(s2s_conn *c, struct bufferevent *bev, SSL *ssl, uint64_t timeout_ms);
void s2s_write_raw(s2s_conn *c, const char *data, size_t len);
/* Serialises el as an element of a jabber:server stream and queues it. */
void s2s_write(s2s_conn *c, const xmppd_stanza *el);
/* Our stream header: from = c->local, to = c->remote (when known). */
void s2s_send_header(s2s_conn *c);
/* Stream error (condition NULL: clean close), then </stream:stream>. The
 * connection is torn down on a later loop turn. */
void s2s_close(s2s_conn *c, const char *condition, const char *text);
/* Starts TLS over the current socket (STARTTLS). 0 or -1 (torn down). */
int s2s_start_tls(s2s_conn *c, SSL *ssl, bool accepting);
/* Stanzas flow: the negotiation timer stops and the idle timer starts. */
void s2s_mark_ready(s2s_conn *c);
void s2s_touch(s2s_conn *c);
/* A stanza from the peer on c: true when within s2s.stanza_rate and
 * stanza_burst (a token bucket per stream); false when c was closed with
 * policy-violation for flooding. */
bool s2s_stanza_allowed(s2s_conn *c);
/* Checks the peer certificate against c->remote (cached in cert_valid). */
bool s2s_cert_valid(s2s_conn *c);
/* Is domain one we serve (a host, a domain a module serves or a configured
 * component)? Returns our canonical spelling (borrowed from the
 * configuration or the registration: copy it to keep it) or NULL. */
const char *s2s_served_domain(const char *domain);
/* May local federate with remote (the access rule "s2s"; ip: the peer's
 * address, NULL when unknown)? Logs a denial. */
bool s2s_allowed(const char *local, const char *remote, const char *ip);
/* XEP-0288: an incoming bidirectional stream on which the peer
 * authenticated remote for local, to carry stanzas from local to remote
 * (borrowed), or NULL. */
s2s_conn *s2s_bidi_stream(const char *local, const char *remote);
/* Random stream id into c->stream_id. */
void s2s_new_stream_id(s2s_conn *c);
/* A dialback element (name "result" or "verify") to write: serialised as
 * <db:NAME>, the prefix our stream headers declare (XEP-0220 examples;
 * ejabberd recognises only this form). Incoming dialback is matched by
 * namespace, so both forms are accepted. */
xmppd_stanza *s2s_dialback_new(const char *name);
/* "<error type='cancel'><cond xmlns=stanzas/></error>" child for dialback
 * errors (XEP-0220 §2.4). */
void s2s_add_error(xmppd_stanza *el, const char *type, const char *cond);

/* Protocol callbacks, one set per direction. */
int s2s_in_on_header(s2s_conn *c, const xs_header *h);
int s2s_in_on_element(s2s_conn *c, xmppd_stanza *el);
/* Has the peer authenticated remote for local on incoming stream c? */
bool s2s_in_has_pair(const s2s_conn *c, const char *local, const char *remote);
void s2s_in_tls_ready(s2s_conn *c);
void s2s_in_teardown(s2s_conn *c);
int s2s_out_on_header(s2s_conn *c, const xs_header *h);
int s2s_out_on_element(s2s_conn *c, xmppd_stanza *el);
void s2s_out_connected(s2s_conn *c);
void s2s_out_tls_ready(s2s_conn *c);
/* The outgoing stream ended (error, EOF, timeout, close); timeout: it
 * ended because a timer expired. */
void s2s_out_conn_lost(s2s_conn *c, bool timeout);

/* ---- backoff.c: remote domains that could not be reached ----------------------- */
/* key: the s2s_out's "remote local". While the pair backs off, the
 * condition to bounce its stanzas with (static) and *left_ms (may be NULL)
 * the time left; else NULL. */
const char *s2s_backoff_active(const char *key, uint64_t *left_ms);
/* An attempt failed with cond (static): the next wait, in ms (0: none). */
uint64_t s2s_backoff_failed(const char *key, const char *cond);
/* A stream was authenticated: the pair is forgotten. */
void s2s_backoff_succeeded(const char *key);
/* Shutdown: forgets everything. */
void s2s_backoff_clear(void);

/* ---- s2s_out.c ------------------------------------------------------------------ */
/* Asks the authoritative server of `remote` whether `key` is the one it
 * gave for stream `id` (XEP-0220 §2.3), over the outgoing stream local ->
 * remote; the answer goes to s2s_in_dialback_done on `in`. */
void s2s_out_verify(const char *local, const char *remote, const char *id, const char *key,
                    s2s_conn *in);
void s2s_out_shutdown(void);

/* ---- s2s_in.c ------------------------------------------------------------------- */
/* Result of a dialback verification started by `in` for (local, remote):
 * cond NULL and valid: authenticated; cond NULL and !valid: the key was
 * wrong; cond set: the authoritative server could not be asked. */
void s2s_in_dialback_done(s2s_conn *in, const char *local, const char *remote, bool valid,
                          const char *cond);

/* ---- dialback.c: keys (XEP-0185) --------------------------------------------------- */
/* secret NULL: a random one for this process. 0 or -1. */
int dialback_init(const char *secret);
void dialback_free(void);
/* key = hex(HMAC-SHA256(hex(SHA256(secret)), "receiving originating id")) */
void dialback_key(const char *receiving, const char *originating, const char *id, char out[65]);
bool dialback_key_ok(const char *receiving, const char *originating, const char *id,
                     const char *key);

/* ---- resolver.c: DNS through c-ares, driven by the event loop ----------------------- */
typedef struct s2s_target {
    char *host;
    int port;
    bool direct_tls;           /* from _xmpps-server (XEP-0368) */
    unsigned short priority, weight;
} s2s_target;

typedef struct resolver_query resolver_query;
/* Ordered targets of domain (RFC 6120 §3.2.1, XEP-0368): both SRV services
 * merged by priority and weight, else the domain itself on 5269. error is
 * set (and n 0) when the domain refuses the service (SRV target "."). The
 * array is the callee's: s2s_targets_free. Never called from inside
 * resolver_srv. */
typedef void (*resolver_srv_cb)(void *ud, s2s_target *t, size_t n, const char *error);
resolver_query *resolver_srv(const char *domain, resolver_srv_cb cb, void *ud);
/* A and AAAA of host (IP literals too), port set in each address. */
typedef void (*resolver_addr_cb)(void *ud, const struct sockaddr_storage *a, size_t n,
                                 const char *error);
resolver_query *resolver_addrs(const char *host, int port, resolver_addr_cb cb, void *ud);
/* The callback will not be called. */
void resolver_cancel(resolver_query *q);
void s2s_targets_free(s2s_target *t, size_t n);
/* servers: c-ares CSV ("127.0.0.1:5353,[::1]:53") or NULL for the system's. */
int resolver_start(const char *servers, char *err, size_t errlen);
void resolver_stop(void);
/* RFC 2782 order: priority ascending, then within each priority repeated
 * weighted draws over the running sums of the entries left (zero-weight
 * entries placed first, so they win only a draw of 0). rnd(n) returns a
 * uniform integer in [0, n]. */
void resolver_order(s2s_target *t, size_t n, uint32_t (*rnd)(uint32_t n));

#endif
