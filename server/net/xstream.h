/* An XML stream over a bufferevent: the plumbing every stream kind shares
 * (c2s.c client streams, s2s*.c server-to-server streams, component.c
 * XEP-0114 components). Writing stanzas (serialised once, handed over
 * without a copy), raw writes, stream errors, the closing handshake, the
 * input pump into the parser, the STARTTLS switch and random ids.
 *
 * Ownership: an xstream is embedded in its owner's struct (xmppd_session,
 * s2s_conn, comp_stream). It owns the bufferevent (which owns the socket
 * and the SSL: BEV_OPT_CLOSE_ON_FREE), the parser and `timer`; ssl is a
 * borrowed view of the SSL inside bev. xstream_release frees what it owns.
 * The owner keeps its protocol state and is called back through
 * xstream_ops (owner pointer first):
 *  - header, element: the parser's open and element callbacks (the
 *    element's reference passes to the callee; nonzero stops feeding);
 *  - close: the owner's close (stream error then xstream_close), for a parse
 *    error (condition), the peer's </stream:stream> (NULL) and an overfull
 *    send buffer (policy-violation);
 *  - send_header: our stream header, when a stream error must come first;
 *  - input: bytes arrived; the owner calls xstream_pump (holding its own
 *    reference where it has one) and handles what the pump stopped for;
 *  - readable: may the pump feed input now (the owner's state allows it)?
 *  - timeout: `timer`, armed by xstream_open, expired (already freed);
 *  - event: a bufferevent event (connected, EOF, error);
 *  - teardown: the closing handshake finished (everything flushed, also
 *    the TLS records, or the grace period ended): the owner frees its
 *    side and calls xstream_release. Runs on a later loop turn than
 *    xstream_close, never inside parser callbacks.
 * The owner may use `timer` for its own purposes (negotiation, delays)
 * until it closes: xstream_close takes it over. */
#ifndef XMPPD_XSTREAM_H
#define XMPPD_XSTREAM_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net/net.h"
#include "xml/serialise.h"
#include "xml/xmlstream.h"

struct bufferevent;
struct event;

#define XSTREAM_CLOSE_GRACE_MS 5000
/* A socket stream without input for this long gives its parser's libxml2
 * context back (xstream_idle.c, xs_shrink) and, when nothing waits in
 * either direction, its bufferevent (the stream is parked). */
#define XSTREAM_IDLE_MS 1000

/* A stream that does not travel as one XML document over a socket: XMPP
 * over WebSocket (RFC 7395: one element per message, <open/> and <close/>
 * for the stream tags) or over BOSH (XEP-0206: elements inside HTTP
 * bodies). The carrier (server/http) turns what arrives into input events
 * (xstream_carrier_*) and gets what the owner writes through these ops,
 * one serialised top-level element at a time. cud is the carrier's. */
typedef struct xstream_carrier {
    /* The default namespace top-level elements are serialised against
     * (NULL: every element carries its xmlns, as RFC 7395 wants). */
    const char *default_ns;
    /* Our stream header: its id and from (may be NULL). */
    void (*header)(void *cud, const char *id, const char *from);
    /* One serialised element; xml (malloc'd, len bytes) is taken. 0 or -1. */
    int (*element)(void *cud, char *xml, size_t len);
    /* The closing handshake: a stream error (condition NULL: none), then
     * the stream's end; the carrier flushes and then calls
     * xstream_carrier_flushed. */
    void (*close)(void *cud, const char *condition, const char *text);
    /* Bytes written but not yet taken by the peer (slow readers). */
    size_t (*backlog)(void *cud);
    /* The stream side is released: the carrier must not call into x any
     * more and frees its side when it is done. */
    void (*release)(void *cud);
    /* The transport's name for metrics ("websocket", "bosh"). */
    const char *name;
} xstream_carrier;

struct xstream_input; /* queued carrier input, xstream.c */

typedef struct xstream_ops {
    const char *default_ns; /* serialisation: jabber:client, jabber:server, ... */
    int (*header)(void *owner, const xs_header *h);
    int (*element)(void *owner, xmppd_stanza *el);
    void (*close)(void *owner, const char *condition, const char *text);
    void (*send_header)(void *owner);
    void (*input)(void *owner);
    bool (*readable)(void *owner);
    void (*timeout)(void *owner);
    void (*event)(void *owner, struct bufferevent *bev, short what);
    void (*teardown)(void *owner);
    /* Optional: out_sent moved on (more of the output reached the kernel).
     * Runs from the flush; the owner must not write or close from it. */
    void (*sent)(void *owner);
    bool events_while_closing; /* keep `event` during the closing handshake */
} xstream_ops;

/* TLS on a socket stream (xstream.ssl). */
enum { XT_NONE, XT_HANDSHAKE, XT_OPEN, XT_FAILED };

typedef struct xstream {
    const xstream_ops *ops;
    void *owner;
    struct bufferevent *bev;  /* the socket (its ciphertext under TLS); NULL
                               * while parked */
    struct event *parked;     /* an idle stream's socket without its
                               * bufferevent: one read event (xstream_idle.c) */
    SSL *ssl;                 /* TLS on the socket (xstream_tls.c), owned; on a
                               * carried stream the carrier's, borrowed */
    xs_parser *parser;
    struct event *timer;      /* the owner's until closing, then the close check */
    uint64_t close_deadline;  /* closing: tear down by then (monotonic ms) */
    uint64_t bytes_in;        /* bytes fed to the parser (after TLS) */
    /* Output positions, in bytes written by the owner (before TLS): out_total
     * written so far, out_sent of them handed to the kernel's socket (under
     * TLS: encrypted and sent). out_sent moves only when nothing waits for
     * the socket, so it is exact, never ahead. A carried stream counts what
     * its carrier took as sent. */
    uint64_t out_total, out_flushed, out_sent;
    /* output of this loop turn, written by one flush (xstream_io.h) */
    xbuf out;
    struct xstream *flush_prev, *flush_next;
    struct xstream *idle_prev, *idle_next; /* by last input (xstream_idle.c) */
    uint64_t idle_since;      /* time of the last input (coarse monotonic ms) */
    unsigned long tls_error;  /* the OpenSSL error that ended TLS, or 0 */
    unsigned char tls;        /* XT_* */
    bool flush_listed;        /* in the list of streams to flush */
    bool in_flush;
    bool connected;           /* the socket is connected: writes may go */
    bool write_armed;         /* the socket was full: the bufferevent writes */
    bool header_sent;         /* our <stream:stream> went out */
    bool closing;             /* our </stream:stream> is queued (or nothing will be) */
    bool idle_listed;         /* on the list of xstream_idle.c */
    /* carried streams (bev NULL): */
    const xstream_carrier *carrier;
    void *cud;
    struct xstream_input *in_head, *in_tail; /* input not yet taken by the owner */
    bool flushed;             /* the carrier finished the closing handshake */
} xstream;

/* Binds x to its owner before there is a socket, so that xstream_drop
 * works on a stream that never opened. */
void xstream_init(xstream *x, const xstream_ops *ops, void *owner);
/* Installs bev, a socket bufferevent (connected, or connecting for an
 * outgoing stream), with the shared callbacks, a new parser and `timer`
 * armed for timeout_ms (ops->timeout). ssl (or NULL) is TLS from the
 * start (XEP-0368 direct TLS): the server side when it is a server SSL.
 * bev and ssl are taken even on failure (-1: the owner tears down). */
int xstream_open(xstream *x, const xstream_ops *ops, void *owner, struct bufferevent *bev,
                 SSL *ssl, uint64_t timeout_ms);
/* A carried stream: as xstream_open, with the carrier instead of a
 * socket (ssl: the TLS connection under it for channel binding, or NULL).
 * 0 or -1 (the owner tears down). */
int xstream_open_carrier(xstream *x, const xstream_ops *ops, void *owner,
                         const xstream_carrier *car, void *cud, SSL *ssl, uint64_t timeout_ms);
/* Input from the carrier, in order; the owner gets it through its header,
 * element and close callbacks as xstream_pump feeds (while readable).
 * header: a stream header (the <open/> or the BOSH body's attributes),
 * copied; element: taken; close: the peer ended the stream; error: a
 * framing error, the stream ends with condition; lost: the connection is
 * gone without a close (the owner's event callback gets EOF). */
void xstream_carrier_header(xstream *x, const xs_header *h);
void xstream_carrier_element(xstream *x, xmppd_stanza *el);
void xstream_carrier_close(xstream *x);
void xstream_carrier_error(xstream *x, const char *condition);
void xstream_carrier_lost(xstream *x);
/* The carrier's closing handshake is done: teardown follows. */
void xstream_carrier_flushed(xstream *x);
/* Frees bev (socket, SSL), parser and timer (carried streams: tells the
 * carrier, drops queued input). */
void xstream_release(xstream *x);
/* Frees `timer` (negotiation finished in time). */
void xstream_stop_timer(xstream *x);

/* Bytes as they are (no-op once released, and on carried streams). Like
 * everything written to a socket stream, they leave with the flush at the
 * end of the loop turn (one TLS record and one write for all of them). */
void xstream_write_raw(xstream *x, const char *data, size_t len);
/* <stream:error><condition/>[<text/>]</stream:error> into buf (len bytes,
 * truncated to fit); declare: with its own xmlns:stream, for carried
 * streams that have no stream root. Returns the length written. */
size_t xstream_error_xml(char *buf, size_t len, const char *condition, const char *text,
                         bool declare);
/* Our stream header: xml (len bytes) on a socket, or the carrier's form
 * of it with id and from. Sets header_sent. */
void xstream_send_header(xstream *x, const char *xml, size_t len, const char *id,
                         const char *from);
/* Input flow control while the owner waits (SASL, a failure delay):
 * pause stops reading; resume reads again and feeds what is buffered
 * through ops->input. */
void xstream_pause_input(xstream *x);
void xstream_resume_input(xstream *x);
/* A stream restart (after SASL): the parser starts a new document. */
void xstream_restart(xstream *x);
/* Serialises st against ops->default_ns into the output of this turn (a
 * fan-out copy's shared text with its 'to' put in, serialise.h). 0, or -1
 * when nothing was queued (closing, released, OOM). *len_r (may be NULL)
 * gets the serialised size. */
int xstream_queue(xstream *x, const xmppd_stanza *st, size_t *len_r);
/* Bytes queued and not yet taken by the socket: this turn's output and
 * what waits in the socket bufferevent (under TLS, records). */
size_t xstream_backlog(xstream *x);
/* After a queue: more than limits.max_send_buffer waiting for a slow
 * reader (xstream_backlog) closes the stream with policy-violation (through ops->close). */
void xstream_check_backlog(xstream *x);
/* xstream_queue, then xstream_check_backlog. */
void xstream_write(xstream *x, const xmppd_stanza *st);

/* <stream:features> with the children of f (its own name and namespace
 * are not written: the wrapper uses the stream: prefix our header
 * declared), each child serialised like xstream_write. f is borrowed. */
void xstream_write_features(xstream *x, const xmppd_stanza *f);

/* The closing handshake: our header if none went out yet, <stream:error>
 * with condition (and text) unless condition is NULL, </stream:stream>;
 * reads stop and ops->teardown runs on a later loop turn once everything
 * is flushed or after XSTREAM_CLOSE_GRACE_MS. condition and text come from
 * kernel code, never from the peer. The owner checks and sets its own
 * state and logs. */
void xstream_close(xstream *x, const char *condition, const char *text);
/* Nothing to say (no stream yet): ops->teardown on the next loop turn. */
void xstream_drop(xstream *x);

/* Feeds buffered input to the parser chunk by chunk while ops->readable
 * holds; stops after a parse error or when the stream is released. */
void xstream_pump(xstream *x);
/* STARTTLS: discards buffered plaintext (a peer may have injected it after
 * <starttls/>/<proceed/>), sends what was written so far in plaintext,
 * starts TLS on the socket and resets the parser for the new stream
 * (header_sent false). ssl is taken (freed on failure; NULL fails). The
 * owner's event callback gets BEV_EVENT_CONNECTED once the handshake is
 * done, and BEV_EVENT_ERROR (deferred) when it fails. 0 or -1; on -1 the
 * owner closes or tears down. */
int xstream_start_tls(xstream *x, SSL *ssl, bool accepting);
/* The stream has its socket (open, parked or not; false before
 * xstream_open, after xstream_release and on carried streams). */
bool xstream_has_socket(const xstream *x);
/* Input received and not yet fed to the parser (socket bytes, or
 * decrypted bytes inside the SSL). */
bool xstream_input_pending(const xstream *x);
/* The OpenSSL error that ended the stream's TLS, for logs; 0 if none. */
unsigned long xstream_tls_error(const xstream *x);

/* n-1 random characters from [A-Za-z0-9] and a NUL (n at most 33). */
void xstream_random_id(char *out, size_t n);
/* The peer's address as text into ip (left unchanged for other families);
 * returns its port, 0 when unknown. */
int xstream_peer_addr(const struct sockaddr *sa, char ip[INET6_ADDRSTRLEN]);

#endif
