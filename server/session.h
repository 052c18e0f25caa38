/* A client stream and, once bound, its session. Private to c2s.c, sm.c and
 * router.c; modules see the opaque xmppd_session through api/xmppd/router.h. */
#ifndef XMPPD_SESSION_H
#define XMPPD_SESSION_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "net.h"
#include "xstream.h"

struct event;
typedef struct scram_server scram_server;

enum c2s_state {
    C2S_HEADER,    /* waiting for the (next) stream header */
    C2S_OPEN,      /* header exchanged, negotiating (TLS, SASL, bind) */
    C2S_BOUND,     /* resource bound: stanzas flow */
    C2S_CLOSING,   /* our </stream:stream> is queued; waiting to flush */
    C2S_CLOSED     /* socket gone; struct lives on while referenced */
};

struct module_slot {
    const xmppd_module *m;
    void *data;
};

struct xmppd_session {
    int refs;
    enum c2s_state state;
    xstream x;                  /* socket, TLS, parser; timer: negotiation
                                 * timeout, then the close check */
    struct event *delay;        /* delayed SASL failure */
    char ip[INET6_ADDRSTRLEN];
    char stream_id[24];
    bool secure;
    bool direct_tls;
    bool starttls_pending;      /* <proceed/> sent: discard input, start TLS */
    bool authenticated;
    bool in_sm;                 /* registered in the host's session table */
    bool bound;                 /* a resource was bound at some point */

    xmppd_host *host;           /* from the first header's 'to' */
    char *user;                 /* nodeprepped, after SASL */
    xmppd_jid *jid;             /* full JID after bind */

    /* SASL in progress */
    const char *mech;           /* static name or NULL */
    scram_server *scram;
    enum xmppd_hash scram_hash;
    bool sasl_busy;             /* waiting for the auth provider */
    bool plus_offered;
    unsigned auth_failures;
    char *pending_authzid;

    /* presence (RFC 6121 §4) */
    bool available;
    int priority;
    xmppd_stanza *presence;

    struct module_slot *slots;
    size_t n_slots;

    /* links in the host's per-user list (sm.c) */
    xmppd_session *next_resource;
};

/* c2s.c: write one stanza/element to the stream (serialised once). */
void c2s_write(xmppd_session *s, const xmppd_stanza *st);
/* c2s.c: stream error + close (condition NULL: clean close). */
void c2s_close(xmppd_session *s, const char *condition, const char *text);

#endif
