/* A client connection, shared by the files of the c2s layer (not beyond):
 *
 *   c2s.c        the stream: header, features, STARTTLS, binding, dispatch,
 *                the session's transport
 *   c2s_sasl.c   SASL mechanisms (SCRAM, PLAIN) for both profiles, RFC 6120
 *                SASL elements, failures and their delay
 *   sasl2.c      SASL2 (XEP-0388): <authenticate/>, inline features,
 *                <success/> without a stream restart
 *   sasl2_req.c  the parsed <authenticate/> (pure, fuzzed)
 *   bind2.c      Bind2 (XEP-0386): device-stable resources, <bound/>
 *   fast.c       FAST (XEP-0484): HT mechanisms, token issue and rotation
 *   c2s_key.c    the key of the keyed hashes behind resources and tokens
 *
 * A connection is reference counted: the socket holds one reference until
 * it is gone; callbacks that may outlive it (auth provider and storage
 * answers, the failure delay) hold their own and check c->state. */
#ifndef XMPPD_C2S_CONN_H
#define XMPPD_C2S_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "c2s/c2s.h"
#include "c2s/sasl2_req.h"
#include "net/net.h"
#include "net/xstream.h"
#include "sasl/sasl.h"
#include "session/session.h"

#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_SASL2 "urn:xmpp:sasl:2"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_BIND2 "urn:xmpp:bind:0"
#define NS_FAST "urn:xmpp:fast:0"
#define NS_SASL_CB "urn:xss:sasl-cb:0"

/* Channel bindings advertised (XEP-0440): the first CB_ADVERTISED; one
 * more is accepted when a client asks for it (see tls_channel_binding). */
extern const char *const c2s_cb_types[];
#define CB_ADVERTISED 2
#define CB_ACCEPTED 3

enum c2s_state {
    C2S_HEADER,    /* waiting for the (next) stream header */
    C2S_OPEN,      /* header exchanged, negotiating (TLS, SASL, bind) */
    C2S_BOUND,     /* resource bound: stanzas flow */
    C2S_CLOSING,   /* our </stream:stream> is queued; waiting to flush */
    C2S_CLOSED     /* socket gone; struct lives on while referenced */
};

/* Mechanisms offered on a stream (c2s_conn.offered): a SCRAM hash h is
 * bit h, its -PLUS variant bit h + 3, PLAIN bit 6. */
#define OFFER_SCRAM(h) (1u << (h))
#define OFFER_PLUS(h) (1u << ((h) + 3))
#define OFFER_PLAIN (1u << 6)

typedef struct fast_grant fast_grant;

typedef struct c2s_conn {
    int refs;
    enum c2s_state state;
    xmppd_session *s;
    xstream x;                  /* socket, TLS, parser; timer: negotiation
                                 * timeout, then the close check */
    struct event *delay;        /* delayed SASL failure */
    char stream_id[24];
    char lang[36];              /* the client's header xml:lang (BCP 47), or "" */
    char *stream_from;          /* the last header's 'from', or NULL */
    bool direct_tls;
    bool counted_ip;            /* holds a connection of its address (TCP; carriers count theirs) */
    bool starttls_pending;      /* <proceed/> sent: discard input, start TLS */

    /* what the last features offered */
    unsigned offered;           /* OFFER_* */
    unsigned cb_offered;        /* bit i: c2s_cb_types[i] advertised (XEP-0440) */
    unsigned fast_offered;      /* bit i: HT mechanism enum ht_cb i (XEP-0484) */

    /* SASL in progress */
    const char *mech;           /* static name or NULL */
    bool sasl2;                 /* the exchange is SASL2's (XEP-0388) */
    scram_server *scram;
    enum xmppd_hash scram_hash;
    bool sasl_busy;             /* waiting for the auth provider or storage */
    unsigned auth_failures;
    char *pending_authzid;
    sasl2_request *req;         /* SASL2: the <authenticate/> being served */
    fast_grant *grant;          /* FAST: what the exchange did to the tokens */
    char *sasl2_data;           /* SASL2: base64 additional data for <success/> */

    /* Writes to the session wait here (copies) while a SASL2 <success/>
     * is built, so that everything it says comes first (sasl2.c); kept as
     * elements, as a carrier (WebSocket, BOSH) frames each one. */
    bool corked;
    xmppd_stanza **cork;
    size_t n_cork, cap_cork;
    /* Bind2: "bind2-bound" handlers still preparing their answer
     * (xmppd_bind2_hold); <success/> waits in held_success meanwhile. */
    unsigned bind2_holds;
    xmppd_stanza *held_success;
    /* the holds were taken by "sasl2-inline" handlers (a XEP-0198
     * resumption of another node's session): Bind2 runs once they end */
    bool inline_held;
    uint64_t cork_bytes;        /* their serialised size */
} c2s_conn;

/* ---- c2s.c ---- */
c2s_conn *c2s_ref(c2s_conn *c);
void c2s_unref(c2s_conn *c);
/* Negotiation elements (SASL, bind results): not stanzas of the session. */
void c2s_write(c2s_conn *c, const xmppd_stanza *st);
void c2s_close(c2s_conn *c, const char *condition, const char *text);
void c2s_send_features(c2s_conn *c);
/* No input until c2s_resume_input: an asynchronous step is running. */
void c2s_pause_input(c2s_conn *c);
void c2s_resume_input(c2s_conn *c);
/* Still negotiating (not closing, not bound). */
bool c2s_negotiating(const c2s_conn *c);
/* Channel binding data of type on this connection (TLS only); 0 or -1. */
int c2s_channel_binding(c2s_conn *c, const char *type, unsigned char *out, size_t *len);
/* Binds resource (prepared) to the authenticated session: "resource-bind"
 * (request: the element asking, for its handlers), the session table,
 * "resource-bound" after done(). NULL, or the stanza error condition
 * (not-allowed, resource-constraint, bad-request). done runs between the
 * bind and "resource-bound" (answers go first): may be NULL. */
const char *c2s_bind(c2s_conn *c, const char *resource, xmppd_stanza *request,
                     void (*done)(c2s_conn *c, void *ud), void *ud);

/* ---- c2s_sasl.c ---- */
/* The <mechanisms/> feature (and XEP-0440's <sasl-channel-binding/>)
 * into features, recording what was offered; the names offered go to
 * sasl2.c for its <authentication/> too. */
void sasl_add_mechanisms(c2s_conn *c, xmppd_stanza *features);
/* The names in c->offered, in offering order, into names (at most 7);
 * buffers for the -PLUS names come from bufs. Returns the count. */
size_t sasl_offered_names(const c2s_conn *c, const char *names[7], char bufs[3][32]);
/* An RFC 6120 <auth/>, <response/> or <abort/>. */
void sasl_handle(c2s_conn *c, xmppd_stanza *el);
/* Is mech one of the SCRAM/PLAIN mechanisms offered? Sets *h for SCRAM. */
bool sasl_mech_offered(const c2s_conn *c, const char *mech, enum xmppd_hash *h);
/* Starts mech (offered) with an initial response (initial: one was sent,
 * possibly empty) or without (an empty challenge asks for it). */
void sasl_begin(c2s_conn *c, const char *mech, enum xmppd_hash h, bool initial,
                const unsigned char *msg, size_t len);
/* A response to our challenge. */
void sasl_continue(c2s_conn *c, const unsigned char *msg, size_t len);
/* <challenge/> (or success data) in the profile of the exchange. */
void sasl_send(c2s_conn *c, const char *name, const unsigned char *data, size_t len);
/* Ends the exchange with cond; failed credentials count and are delayed. */
void sasl_fail(c2s_conn *c, const char *cond);
void sasl_fail_text(c2s_conn *c, const char *cond, const char *text);
/* The mechanism proved user: the session is authenticated; the profile
 * goes on (RFC 6120: <success/> and a restart; SASL2: sasl2_authenticated).
 * extra: additional data for <success/>. */
void sasl_succeed(c2s_conn *c, const char *user, const unsigned char *extra, size_t len);
/* Drops the mechanism state (and the SASL2 request). */
void sasl_reset(c2s_conn *c);
/* The failure condition for an auth provider result. */
const char *sasl_auth_failure_cond(int result);

/* ---- sasl2.c ---- */
/* The <authentication/> feature (XEP-0388) with its inline features. */
void sasl2_add_feature(c2s_conn *c, xmppd_stanza *features);
/* A SASL2 element (<authenticate/>, <response/>, <abort/>). */
void sasl2_handle(c2s_conn *c, xmppd_stanza *el);
/* After sasl_succeed in SASL2: tokens, inline features, Bind2, <success/>. */
void sasl2_authenticated(c2s_conn *c, const unsigned char *extra, size_t len);
/* Failure in SASL2's form (cond: an RFC 6120 §6.5 condition). */
void sasl2_write_failure(c2s_conn *c, const char *cond, const char *text);
/* The held session writes go out (after <success/>), and writes flow again. */
void sasl2_uncork(c2s_conn *c);
/* The last hold was released: Bind2 (after inline holds), then the held
 * <success/> goes out. */
void sasl2_bound_ready(c2s_conn *c);
/* Are c's "sasl2-inline" handlers running (they may hold <success/>)? */
bool sasl2_inline_firing(const c2s_conn *c);

/* ---- bind2.c ---- */
/* The Bind2 feature inside SASL2's <inline/> ("bind2-features"). */
void bind2_add_feature(c2s_conn *c, xmppd_stanza *inline_el);
/* Binds a resource for the client's <bind/> and puts <bound/> into
 * success; false when no resource could be bound (the client can bind the
 * RFC 6120 way). */
bool bind2_bind(c2s_conn *c, xmppd_stanza *bind, xmppd_stanza *success);
/* The transport's bind2_hold / bind2_release (session.h). */
void *bind2_hold(void *conn);
void bind2_release(void *token);

/* ---- fast.c ---- */
/* The <fast/> feature inside SASL2's <inline/>, over TLS. */
void fast_add_feature(c2s_conn *c, xmppd_stanza *inline_el);
/* Is mech an HT mechanism offered on this stream? */
bool fast_mech_offered(const c2s_conn *c, const char *mech);
/* Authenticates with a token (mech: an offered HT mechanism). */
void fast_begin(c2s_conn *c, const char *mech);
/* After a successful SASL2 authentication: issues or rotates a token as
 * the request and the token used ask, then calls next (maybe at once). */
void fast_finish(c2s_conn *c, void (*next)(c2s_conn *c));
/* The <token/> for <success/>, if one was issued. */
void fast_add_token(c2s_conn *c, xmppd_stanza *success);
void fast_grant_free(fast_grant *g);

/* ---- c2s_key.c ---- */
/* HMAC-SHA-256 under the c2s key (c2s.secret, else DATA_DIR/c2s.key) of
 * the parts joined by NUL bytes. 0, or -1 (logged) without a key. */
int c2s_keyed_hash(const char *const *parts, size_t n, unsigned char out[32]);
/* base64url without padding (RFC 4648 §5): letters that need no escaping
 * in resources and attributes. malloc'd; NULL on OOM. */
char *c2s_b64url(const unsigned char *in, size_t len);

#endif
