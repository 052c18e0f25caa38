/* Serialising into a buffer the caller owns (a stream's output of one loop
 * turn), and the serialisation shared by fan-out copies.
 *
 * A fan-out (presence broadcast, PEP notification, group chat message)
 * makes one copy per recipient with xmppd_stanza_copy_to, equal but for
 * 'to'. Those copies share one stanza_share, hung on the source: the first
 * one written is serialised into it with the place of its 'to' value
 * noted, and every copy written later is that text with its own 'to' put
 * in. Any change through the API drops a tree's share (stanza.c:
 * touched), so a handler that adds to a stanza on its way (a stanza-id, a
 * delay) gets its own serialisation. The copies share their elements too
 * (copy-on-write: stanza.c). */
#ifndef XMPPD_SERIALISE_H
#define XMPPD_SERIALISE_H

#include <stdbool.h>
#include <stddef.h>

#include "xmppd/stanza.h"

/* A growable byte buffer; zero-initialised is empty. oom: a put failed
 * (later puts do nothing). */
typedef struct xbuf {
    char *p;
    size_t len, cap;
    bool oom;
} xbuf;

void xbuf_put(xbuf *b, const char *s, size_t n);
/* Frees the bytes; the buffer is empty again. */
void xbuf_free(xbuf *b);

/* Appends st serialised against default_ns, exactly as
 * xmppd_stanza_to_string writes it (without the NUL). 0, or -1 on OOM
 * (b is then as it was before the call). */
int stanza_serialise(xbuf *b, const xmppd_stanza *st, const char *default_ns);

/* The shared serialisation: reference counted, held by the source and by
 * every copy using it. */
typedef struct stanza_share stanza_share;
stanza_share *stanza_share_new(void);
void stanza_share_unref(stanza_share *sh); /* NULL is a no-op */
/* The share st uses, as an identity: two stanzas with the same non-NULL
 * one are equal but for 'to' (cluster/queue.c sends such a fan-out to
 * another node as one stanza naming its recipients). Valid while st
 * lives unchanged. */
const stanza_share *stanza_share_of(const xmppd_stanza *st);

/* Is st an element without children, text, or attributes other than
 * `but` (NULL: none)? Then it serialises as <name xmlns=ns/> plus that
 * attribute, and a shared empty element can stand in for it (the router
 * keeps one for every session whose last presence is a bare
 * <presence/>). */
bool stanza_is_empty(const xmppd_stanza *st, const char *but);

#endif
