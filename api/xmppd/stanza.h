/* Element trees: every stanza, and every element inside one, is an
 * xmppd_stanza. Trees are reference counted: a tree handed to a handler is
 * borrowed for the call; take xmppd_stanza_ref() to keep it. Children belong
 * to their parent: never unref a child obtained from a query function.
 *
 * Namespaces: each element stores its namespace URI. An element created with
 * ns NULL takes its parent's namespace when added (top-level default:
 * "jabber:client"). The serialiser writes xmlns only where it differs from
 * the parent's (or from default_ns at the top), so a stanza moves between
 * jabber:client and jabber:server streams without rewriting. Attribute names
 * in the xml: namespace are written with their prefix ("xml:lang"). */
#ifndef XMPPD_STANZA_H
#define XMPPD_STANZA_H

#include <stdbool.h>
#include <stddef.h>
#include "module.h"

#define XMPPD_NS_CLIENT "jabber:client"
#define XMPPD_NS_SERVER "jabber:server"
#define XMPPD_NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define XMPPD_NS_STREAMS "urn:ietf:params:xml:ns:xmpp-streams"

/* Threading: trees are not locked. The loop thread may use any tree; a
 * worker (xmppd_offload) only trees no one else can reach.
 *
 * New element with one reference held by the caller. NULL on OOM. */
xmppd_stanza *xmppd_stanza_new(const char *name, const char *ns);
/* Takes one more reference (returns s); each is dropped with unref, and
 * the tree is freed with its last one. */
xmppd_stanza *xmppd_stanza_ref(xmppd_stanza *s);
void xmppd_stanza_unref(xmppd_stanza *s); /* NULL is a no-op */
/* Deep copy, detached from any parent, one reference held by the caller. */
xmppd_stanza *xmppd_stanza_copy(const xmppd_stanza *s);
/* A copy of s with 'to' set to `to` (NULL: removed), for fan-out: copies
 * made this way from the same top-level s, while s is unchanged, share
 * one copy of its elements and are serialised once for all recipients
 * (the text of the first one written, with each one's 'to' put in). A
 * copy is still the caller's own tree: it may be changed freely (the
 * first change, or the first call that returns one of its elements, gives
 * it elements of its own), and changing s afterwards changes no copy.
 * Caller owns the copy. NULL on OOM. ABI 2.5. */
xmppd_stanza *xmppd_stanza_copy_to(const xmppd_stanza *s, const char *to);

/* Local name and namespace URI. Owned by the element, valid while it lives
 * (never NULL; the namespace of an element built with ns NULL is its
 * parent's once added). */
const char *xmppd_stanza_name(const xmppd_stanza *s);
const char *xmppd_stanza_ns(const xmppd_stanza *s);
/* Attribute value or NULL; owned by the element, valid until that
 * attribute changes. */
const char *xmppd_stanza_attr(const xmppd_stanza *s, const char *name);
/* Set (copying value) or, with value NULL, remove. 0 or -1 on OOM. */
int xmppd_stanza_set_attr(xmppd_stanza *s, const char *name, const char *value);

/* First element child matching name and ns (either NULL matches any). */
xmppd_stanza *xmppd_stanza_child(const xmppd_stanza *s, const char *name, const char *ns);
/* Element children in document order: first, then next until NULL. */
xmppd_stanza *xmppd_stanza_first(const xmppd_stanza *s);
xmppd_stanza *xmppd_stanza_next(const xmppd_stanza *child);
/* Parent element or NULL. */
xmppd_stanza *xmppd_stanza_parent(const xmppd_stanza *s);

/* Appends child; the parent takes over the caller's reference. Returns child,
 * or NULL (and drops the reference) if child already has a parent. */
xmppd_stanza *xmppd_stanza_add(xmppd_stanza *parent, xmppd_stanza *child);
/* Creates and appends <name xmlns=ns/>; returns it, borrowed from parent. */
xmppd_stanza *xmppd_stanza_tag(xmppd_stanza *parent, const char *name, const char *ns);
/* Detaches child from its parent and drops the parent's reference. */
void xmppd_stanza_remove(xmppd_stanza *parent, xmppd_stanza *child);
/* Appends character data (copied, unescaped text). 0 or -1 on OOM. */
int xmppd_stanza_add_text(xmppd_stanza *s, const char *text, size_t len);
/* Replaces the element's direct character data with text (copied; NULL or
 * "": none). Children stay, after the new text. 0 or -1 on OOM. */
int xmppd_stanza_set_text(xmppd_stanza *s, const char *text);
/* The element's direct character data ("" when none). Owned by the element,
 * valid until the element is modified. */
const char *xmppd_stanza_text(const xmppd_stanza *s);
/* Text of the first matching child, or NULL when there is no such child. */
const char *xmppd_stanza_child_text(const xmppd_stanza *s, const char *name, const char *ns);

/* Serialises to a malloc'd NUL-terminated string the caller frees; *len_r
 * (may be NULL) gets its length. Escapes & < > ' " as XML requires. */
char *xmppd_stanza_to_string(const xmppd_stanza *s, const char *default_ns, size_t *len_r);
/* Parses one element (restricted XML: no DTD, entities, comments or PIs).
 * Returns a new tree with one reference, or NULL if the text is not exactly
 * one well-formed element. Top-level default namespace: default_ns. */
xmppd_stanza *xmppd_stanza_from_string(const char *xml, size_t len, const char *default_ns);
/* Parses many texts in a row, each as xmppd_stanza_from_string would
 * (same rules, same results), with one parser: for stored stanzas read in
 * bulk. A reader is used by one caller at a time; the caller frees it.
 * new: NULL on OOM. parse: a new tree with one reference, or NULL (not
 * exactly one well-formed element, or OOM). ABI 2.6. A stanza with a 'to'
 * keeps a copy of the text it was parsed from and, until it is changed,
 * a stream writes that text (with a xmppd_stanza_copy_to copy's own 'to'
 * put in) instead of serialising the tree again: the same element,
 * written as it was stored. */
typedef struct xmppd_stanza_reader xmppd_stanza_reader;
xmppd_stanza_reader *xmppd_stanza_reader_new(const char *default_ns);
xmppd_stanza *xmppd_stanza_reader_parse(xmppd_stanza_reader *r, const char *xml, size_t len);
void xmppd_stanza_reader_free(xmppd_stanza_reader *r);

/* <iq type='result'> (or same name for other kinds) addressed back to the
 * sender of s: to = s.from, from = s.to, same id. New tree, caller owns. */
xmppd_stanza *xmppd_stanza_reply(const xmppd_stanza *s);
/* Error reply per RFC 6120 §8.3: to/from swapped, type='error', id kept,
 * <error type=T><condition xmlns=urn:...:xmpp-stanzas/>[<text>]</error>.
 * type NULL picks the condition's default from RFC 6120 §8.3.3. New tree,
 * caller owns. */
xmppd_stanza *xmppd_stanza_error_reply(const xmppd_stanza *s, const char *type,
                                       const char *condition, const char *text);

#endif
