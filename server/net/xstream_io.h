/* Inside the stream layer: what xstream.c, xstream_out.c and xstream_tls.c
 * share (nothing outside server/net includes this).
 *
 * Output. Everything written to a socket stream during a loop turn (raw
 * bytes, stream headers, serialised stanzas) is appended to the stream's
 * `out` buffer, and the stream joins the list of streams with output. Once
 * the events of the turn have run, one flush hands each stream's bytes to
 * the socket: under TLS one SSL_write, so one record for all of them, and
 * one write(2). Only what the socket does not take waits in the socket
 * bufferevent's output, with EV_WRITE enabled until it is drained; the
 * rest of the time the bufferevent does not watch for writability at all
 * (no epoll_ctl per write).
 *
 * TLS. The SSL of a stream sits directly on the socket bufferevent
 * through a BIO of our own (xstream_tls.c): records are read from the
 * socket's input buffer, and written to the socket by the flush. There is
 * no second bufferevent and no buffer of plaintext. */
#ifndef XMPPD_XSTREAM_IO_H
#define XMPPD_XSTREAM_IO_H

#include "net/xstream.h"

/* ---- xstream_out.c ---- */
/* x has bytes in out (or in its socket buffer, written under TLS while
 * reading): flush them at the end of this loop turn. */
void xout_mark(xstream *x);
/* Appends len bytes to x's output of this turn; -1 on OOM. */
int xout_append(xstream *x, const char *data, size_t len);
/* Bytes for the socket (ciphertext, or plain): straight to the socket when
 * nothing waits for it and it is connected, else behind what waits. */
void xout_socket(xstream *x, const char *data, size_t len);
/* Hands x's output to the socket now (STARTTLS: the <proceed/> must leave
 * in plaintext before the handshake starts). */
void xout_flush(xstream *x);
/* The socket bufferevent wrote everything that waited. */
void xout_drained(xstream *x);
/* x is released: its output is dropped and it leaves the list. */
void xout_forget(xstream *x);

/* ---- xstream.c ---- */
/* Makes bev x's socket bufferevent, with the stream's callbacks, reading
 * and not watching for writability. */
void xio_install(xstream *x, struct bufferevent *bev);

/* ---- xstream_idle.c ---- */
/* Input on x (a socket stream with a parser): its parser is shrunk once
 * nothing more came for XSTREAM_IDLE_MS, and x is parked if nothing waits
 * in its buffers: the bufferevent (about 0.9 KiB with its two evbuffers)
 * is freed and one read event on the socket stands in for it. */
void xidle_touch(xstream *x);
/* x is released: off the list. */
void xidle_remove(xstream *x);
/* Before anything uses x->bev outside the input path: a parked x gets a
 * new bufferevent on its socket. True when x has its bufferevent (false:
 * released, carried, or parked and out of memory: it stays parked and
 * what the caller meant to write is lost, as with any output OOM). */
bool xidle_wake(xstream *x);
/* xstream_release of a parked x: closes its socket, frees the SSL. */
void xidle_unpark_close(xstream *x);

/* ---- xstream_tls.c ---- */
/* Puts ssl (taken) on x's socket, as the server (accepting) or the
 * client, whose handshake starts at once when x is connected (the
 * ClientHello), else when it connects. 0, or -1 (ssl freed). */
int xtls_attach(xstream *x, SSL *ssl, bool accepting);
/* Drives the handshake with what arrived; true once it is done (the
 * owner got BEV_EVENT_CONNECTED). A failure reaches the owner as a
 * deferred BEV_EVENT_ERROR. */
bool xtls_handshake(xstream *x);
/* Feeds decrypted input to the parser while the owner can take it. */
void xtls_pump(xstream *x);
/* Encrypts len bytes of x's output into records for the socket. 0, or
 * -1 (the owner hears of the error). */
int xtls_write(xstream *x, const char *data, size_t len);
/* Decrypted bytes waiting inside the SSL. */
bool xtls_pending(const xstream *x);

#endif
