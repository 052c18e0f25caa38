/* XML stream parser: a libxml2 SAX2 push parser that turns the bytes of one
 * <stream:stream> into a header callback and one element tree per top-level
 * child (RFC 6120 §4). Restricted XML (RFC 6120 §11.1): a DTD, entity
 * declaration or reference other than the five predefined ones and
 * character references, comment or processing instruction is an error
 * "restricted-xml". Limits: a top-level element over max_stanza bytes, or
 * nesting deeper than max_depth, is "policy-violation". Malformed input is
 * "not-well-formed"; a root element that is not stream:stream in
 * http://etherx.jabber.org/streams is "invalid-namespace".
 *
 * Fuzzable: no I/O, no global state besides libxml2's. */
#ifndef XMPPD_XMLSTREAM_H
#define XMPPD_XMLSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include "xmppd/stanza.h"

#define XS_NS_STREAM "http://etherx.jabber.org/streams"

typedef struct xs_parser xs_parser;

/* Stream header attributes; strings borrowed for the call, NULL if absent. */
typedef struct xs_header {
    const char *to, *from, *id, *version, *lang;
    const char *default_ns; /* xmlns of the stream (jabber:client, ...) */
} xs_header;

typedef struct xs_callbacks {
    /* The opening <stream:stream> tag. Return nonzero to stop parsing. */
    int (*open)(void *ud, const xs_header *h);
    /* A complete top-level element; ownership of st passes to the callee.
     * Its namespace is resolved (default: the stream's default_ns). Return
     * nonzero to stop parsing: the rest of the fed bytes is discarded. */
    int (*element)(void *ud, xmppd_stanza *st);
    /* </stream:stream>. */
    void (*close)(void *ud);
    /* A stream error condition (RFC 6120 §4.9.3 element name); parsing has
     * stopped and every later xs_feed returns -1 until xs_reset. */
    void (*error)(void *ud, const char *condition);
} xs_callbacks;

xs_parser *xs_new(const xs_callbacks *cb, void *ud, size_t max_stanza, unsigned max_depth);
/* Feeds bytes. 0: all consumed (or discarded after a callback asked to
 * stop); -1: a stream error was reported (or had been before). Callbacks
 * run from inside this call and must not free the parser; xs_reset is
 * allowed from element() when it returns nonzero. */
int xs_feed(xs_parser *p, const char *buf, size_t len);
/* Elements open, the stream root included: 1 between top-level elements
 * (one element per WebSocket message is checked with it, RFC 7395). */
unsigned xs_depth(const xs_parser *p);
/* Forget all state for a stream restart (after STARTTLS or SASL). */
void xs_reset(xs_parser *p);
/* Frees the libxml2 context (its input buffer, dictionary and stacks:
 * about 14 KB) of a stream sitting between top-level elements, with
 * nothing but whitespace buffered; the next xs_feed builds a new context
 * and feeds it the stream root's namespace declarations again, without
 * calling open(), so parsing goes on exactly as before. For idle streams:
 * the rebuild costs a few microseconds. Refused (false) inside a feed,
 * mid-element, before the header, after an error or stop, and for a
 * root whose declarations cannot be replayed safely (see xmlstream.c). */
bool xs_shrink(xs_parser *p);
void xs_free(xs_parser *p);

/* Element construction for the parser (defined in stanza.c): one allocation
 * holds the element, room for n_attrs attributes and str_bytes bytes of
 * attribute strings. ns (ns_len bytes, not NUL-terminated; NULL: no
 * namespace) is copied. stanza_put_attr copies "prefix:local" (prefix may be
 * NULL) and value_len bytes of value into that room: each attribute takes
 * strlen(prefix)+1 (if any) + strlen(local)+1 + value_len+1 bytes. -1 when
 * the room is exhausted. */
xmppd_stanza *stanza_alloc_parsed(const char *name, const char *ns, size_t ns_len,
                                  size_t n_attrs, size_t str_bytes);
int stanza_put_attr(xmppd_stanza *s, const char *prefix, const char *local,
                    const char *value, size_t value_len);

#endif
