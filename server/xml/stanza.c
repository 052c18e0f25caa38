/* Element trees (api/xmppd/stanza.h).
 *
 * Memory layout, chosen so that a parsed element costs one allocation
 * (plus one for its text, if any):
 *
 *   [struct xmppd_stanza][attribute table][name\0][ns\0][attribute strings]
 *
 * The namespace is either in that block, a pointer to a static string
 * (a handful of namespaces that occur in nearly every stanza, so elements
 * inheriting them need no copy), or a separate allocation (ns_own) when an
 * element created with ns NULL inherits an uncommon namespace on add.
 * Attributes set later through the API live in their own "name\0value\0"
 * block (stanza_attr.own); the table moves to the heap when it must grow.
 *
 * Text: an element keeps all its direct character data in one buffer, and
 * each child remembers how much of its parent's text came before it
 * (text_off). That keeps xmppd_stanza_text() a plain pointer and still lets
 * the serialiser reproduce mixed content (XHTML-IM) in document order.
 *
 * Fan-out copies (xmppd_stanza_copy_to) are copy-on-write: a copy is one
 * block holding its own top element (name, namespace, attributes with its
 * own 'to') and a reference to a frozen tree (`shared`) whose children and
 * text it shows. The frozen tree is a deep copy of the source made once,
 * at its first copy_to, and cached on the source until the source changes
 * (touched), so a broadcast to n recipients copies the tree once, not n
 * times. Nobody but the copies can reach a frozen tree, and a copy hands
 * out no pointer into it: a call that returns one of its elements
 * (first, child) or changes its content (add, text) gives that copy a
 * private tree first (unshare). Reads that return strings (text,
 * child_text) and serialisation read the frozen tree. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xmppd/stanza.h"
#include "xml/fanout.h"
#include "xml/serialise.h"
#include "xml/xmlstream.h"

#define API XMPPD_EXPORT /* part of the module API: visible to dlopen'ed modules */

typedef struct stanza_attr {
    const char *name;
    const char *value;
    char *own; /* malloc'd "name\0value\0" block, or NULL: in the element block */
} stanza_attr;

struct xmppd_stanza {
    xmppd_stanza *parent, *first, *last, *next;
    const char *name; /* in this block */
    const char *ns;   /* static, in this block, or ns_own */
    char *ns_own;
    stanza_attr *attrs; /* in this block while attrs_inline */
    size_t n_attrs, cap_attrs;
    char *fill;       /* parser construction: free attribute string space */
    size_t fill_left;
    char *text;       /* NULL when empty; NUL-terminated */
    size_t text_len, text_cap;
    size_t text_off;  /* parent's text_len when this child was appended */
    stanza_share *share; /* a fan-out copy's shared serialisation (serialise.h) */
    /* cow: the frozen tree whose children and text this copy shows (it
     * has none of its own). Otherwise: the frozen tree cached for copies
     * of this top-level element, or NULL. A reference either way. */
    xmppd_stanza *shared;
    xmppd_jid *from_jid; /* a frozen tree's: its 'from' parsed (fanout.h), or NULL */
    int refs;
    bool attrs_inline;
    bool ns_implicit; /* created with ns NULL: follows the parent it is added to */
    bool cow;
};

/* The serialisation shared by the copies of one fan-out: the text of the
 * first copy written, and where its 'to' value is in it. */
struct stanza_share {
    int refs;
    enum { SHARE_EMPTY, SHARE_READY, SHARE_NONE } state; /* NONE: cannot be shared */
    char *scope;       /* the default namespace it was written against */
    char *xml;
    size_t len, to_off, to_end;
    bool one_block;    /* scope and xml are in this block (a parsed text's: reader_share) */
};

/* Namespaces shared by pointer. Content namespaces first: see is_content_ns. */
static const char *const common_ns[] = {
    XMPPD_NS_CLIENT, XMPPD_NS_SERVER, "jabber:component:accept",
    XMPPD_NS_STANZAS, XMPPD_NS_STREAMS, XS_NS_STREAM,
    "urn:ietf:params:xml:ns:xmpp-tls", "urn:ietf:params:xml:ns:xmpp-sasl",
    "urn:ietf:params:xml:ns:xmpp-bind", "urn:ietf:params:xml:ns:xmpp-session",
    "jabber:iq:roster", "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items", "urn:xmpp:ping", "urn:xmpp:delay",
    "http://jabber.org/protocol/caps", "http://jabber.org/protocol/chatstates",
    "urn:xmpp:receipts", "urn:xmpp:carbons:2", "urn:xmpp:forward:0", "urn:xmpp:sm:3",
};
#define N_CONTENT_NS 3

static const char *common_ns_find(const char *ns, size_t len)
{
    for (size_t i = 0; i < sizeof(common_ns) / sizeof(common_ns[0]); i++)
        if (common_ns[i][0] == ns[0] && strlen(common_ns[i]) == len &&
            memcmp(common_ns[i], ns, len) == 0)
            return common_ns[i];
    return NULL;
}

static bool ns_eq(const char *a, const char *b)
{
    return a == b || strcmp(a, b) == 0;
}

/* jabber:client, jabber:server and jabber:component:accept name the same
 * stanzas on different kinds of streams (RFC 6120 §4.8.3, XEP-0114): a
 * top-level stanza is written without xmlns on any of them. */
static bool is_content_ns(const char *ns)
{
    for (size_t i = 0; i < N_CONTENT_NS; i++)
        if (ns_eq(ns, common_ns[i]))
            return true;
    return false;
}

/* The element whose children and text s shows: its frozen tree for a
 * copy-on-write copy, itself otherwise. */
static inline const xmppd_stanza *content(const xmppd_stanza *s)
{
    return s->cow ? s->shared : s;
}

/* Every change through the API ends a tree's use of its shared
 * serialisation (the share describes the tree as it was) and of the
 * frozen tree cached for its copies (copies made before keep theirs). */
static void touched(xmppd_stanza *s)
{
    while (s->parent)
        s = s->parent;
    if (s->share) {
        stanza_share_unref(s->share);
        s->share = NULL;
    }
    if (!s->cow && s->shared) {
        xmppd_stanza_unref(s->shared);
        s->shared = NULL;
    }
}

static int unshare(xmppd_stanza *s);

/* ---- construction ------------------------------------------------------ */

/* One block: struct, room for n_attrs attributes, name, ns (unless common)
 * and str_bytes more bytes of attribute strings. */
static xmppd_stanza *stanza_alloc(const char *name, size_t name_len, const char *ns,
                                  size_t ns_len, size_t n_attrs, size_t str_bytes)
{
    const char *shared = ns ? common_ns_find(ns, ns_len) : NULL;
    size_t ns_bytes = (ns && !shared) ? ns_len + 1 : 0;
    if (n_attrs > SIZE_MAX / 4 / sizeof(stanza_attr) || str_bytes > SIZE_MAX / 4 ||
        name_len > SIZE_MAX / 4 || ns_bytes > SIZE_MAX / 4)
        return NULL;
    size_t size = sizeof(xmppd_stanza) + n_attrs * sizeof(stanza_attr) + name_len + 1 +
                  ns_bytes + str_bytes;
    xmppd_stanza *s = malloc(size);
    if (!s)
        return NULL;
    memset(s, 0, sizeof(*s));
    s->refs = 1;
    s->attrs = (stanza_attr *)(s + 1);
    s->cap_attrs = n_attrs;
    s->attrs_inline = true;
    char *p = (char *)(s->attrs + n_attrs);
    memcpy(p, name, name_len);
    p[name_len] = '\0';
    s->name = p;
    p += name_len + 1;
    if (shared) {
        s->ns = shared;
    } else if (ns) {
        memcpy(p, ns, ns_len);
        p[ns_len] = '\0';
        s->ns = p;
        p += ns_len + 1;
    } else {
        s->ns = XMPPD_NS_CLIENT; /* top-level default until added */
        s->ns_implicit = true;
    }
    s->fill = p;
    s->fill_left = str_bytes;
    return s;
}

xmppd_stanza *stanza_alloc_parsed(const char *name, const char *ns, size_t ns_len,
                                  size_t n_attrs, size_t str_bytes)
{
    return stanza_alloc(name, strlen(name), ns ? ns : "", ns ? ns_len : 0, n_attrs, str_bytes);
}

int stanza_put_attr(xmppd_stanza *s, const char *prefix, const char *local,
                    const char *value, size_t value_len)
{
    size_t plen = prefix ? strlen(prefix) + 1 : 0, llen = strlen(local);
    size_t need = plen + llen + 1 + value_len + 1;
    if (s->n_attrs >= s->cap_attrs || !s->attrs_inline || need > s->fill_left)
        return -1;
    char *p = s->fill;
    stanza_attr *a = &s->attrs[s->n_attrs++];
    a->name = p;
    a->own = NULL;
    if (prefix) {
        memcpy(p, prefix, plen - 1);
        p[plen - 1] = ':';
        p += plen;
    }
    memcpy(p, local, llen);
    p[llen] = '\0';
    p += llen + 1;
    memcpy(p, value, value_len);
    p[value_len] = '\0';
    a->value = p;
    s->fill = p + value_len + 1;
    s->fill_left -= need;
    return 0;
}

API xmppd_stanza *xmppd_stanza_new(const char *name, const char *ns)
{
    if (!name)
        return NULL;
    return stanza_alloc(name, strlen(name), ns, ns ? strlen(ns) : 0, 0, 0);
}

API xmppd_stanza *xmppd_stanza_ref(xmppd_stanza *s)
{
    if (s)
        s->refs++;
    return s;
}

/* Drops s's children and text (a child someone else still references
 * survives, detached): when s is freed, and to take back what
 * copy_content added after a failure. */
static void drop_content(xmppd_stanza *s)
{
    xmppd_stanza *k = s->first;
    while (k) {
        xmppd_stanza *next = k->next;
        k->parent = NULL;
        k->next = NULL;
        xmppd_stanza_unref(k);
        k = next;
    }
    s->first = s->last = NULL;
    free(s->text);
    s->text = NULL;
    s->text_len = s->text_cap = 0;
}

static void stanza_free(xmppd_stanza *s)
{
    drop_content(s);
    for (size_t i = 0; i < s->n_attrs; i++)
        free(s->attrs[i].own);
    if (!s->attrs_inline)
        free(s->attrs);
    free(s->ns_own);
    stanza_share_unref(s->share);
    xmppd_stanza_unref(s->shared);
    xmppd_jid_free(s->from_jid);
    free(s);
}

API void xmppd_stanza_unref(xmppd_stanza *s)
{
    if (s && --s->refs == 0)
        stanza_free(s);
}

/* ---- queries ----------------------------------------------------------- */

API const char *xmppd_stanza_name(const xmppd_stanza *s) { return s->name; }
API const char *xmppd_stanza_ns(const xmppd_stanza *s) { return s->ns; }

bool stanza_is_empty(const xmppd_stanza *st, const char *but)
{
    const xmppd_stanza *c = content(st);
    if (c->first || c->text_len)
        return false;
    for (size_t i = 0; i < st->n_attrs; i++)
        if (!but || strcmp(st->attrs[i].name, but) != 0)
            return false;
    return true;
}
/* A copy-on-write copy gets its own tree before it hands out one of its
 * elements, which the caller may change (a cache of the copy, not its
 * content: hence the cast). NULL when that fails (out of memory). */
API xmppd_stanza *xmppd_stanza_first(const xmppd_stanza *s)
{
    if (s->cow && unshare((xmppd_stanza *)s) < 0)
        return NULL;
    return s->first;
}

API xmppd_stanza *xmppd_stanza_next(const xmppd_stanza *c) { return c->next; }
API xmppd_stanza *xmppd_stanza_parent(const xmppd_stanza *s) { return s->parent; }

static stanza_attr *attr_find(const xmppd_stanza *s, const char *name)
{
    for (size_t i = 0; i < s->n_attrs; i++)
        if (strcmp(s->attrs[i].name, name) == 0)
            return &s->attrs[i];
    return NULL;
}

API const char *xmppd_stanza_attr(const xmppd_stanza *s, const char *name)
{
    const stanza_attr *a = attr_find(s, name);
    return a ? a->value : NULL;
}

static xmppd_stanza *child_find(const xmppd_stanza *s, const char *name, const char *ns)
{
    for (xmppd_stanza *c = s->first; c; c = c->next)
        if ((!name || strcmp(c->name, name) == 0) && (!ns || ns_eq(c->ns, ns)))
            return c;
    return NULL;
}

API xmppd_stanza *xmppd_stanza_child(const xmppd_stanza *s, const char *name, const char *ns)
{
    /* As xmppd_stanza_first; a copy without such a child stays shared. */
    if (s->cow && (!child_find(s->shared, name, ns) || unshare((xmppd_stanza *)s) < 0))
        return NULL;
    return child_find(s, name, ns);
}

API const char *xmppd_stanza_text(const xmppd_stanza *s)
{
    s = content(s);
    return s->text ? s->text : "";
}

/* Reads through a copy's frozen tree: a string, no element handed out. */
API const char *xmppd_stanza_child_text(const xmppd_stanza *s, const char *name, const char *ns)
{
    const xmppd_stanza *c = child_find(content(s), name, ns);
    return c ? xmppd_stanza_text(c) : NULL;
}

/* ---- modification ------------------------------------------------------ */

static int attrs_grow(xmppd_stanza *s)
{
    size_t cap = s->cap_attrs ? s->cap_attrs * 2 : 4;
    stanza_attr *t = malloc(cap * sizeof(*t));
    if (!t)
        return -1;
    if (s->n_attrs)
        memcpy(t, s->attrs, s->n_attrs * sizeof(*t));
    if (!s->attrs_inline)
        free(s->attrs);
    s->attrs = t;
    s->cap_attrs = cap;
    s->attrs_inline = false;
    return 0;
}

/* Sets or removes an attribute; the caller decides whether it counts as a
 * change (see touched). */
static int set_attr(xmppd_stanza *s, const char *name, const char *value)
{
    stanza_attr *a = attr_find(s, name);
    if (!value) {
        if (a) {
            free(a->own);
            *a = s->attrs[--s->n_attrs]; /* order of attributes carries no meaning */
        }
        return 0;
    }
    size_t nlen = strlen(name), vlen = strlen(value);
    char *own = malloc(nlen + vlen + 2);
    if (!own)
        return -1;
    memcpy(own, name, nlen + 1);
    memcpy(own + nlen + 1, value, vlen + 1);
    if (!a) {
        if (s->n_attrs == s->cap_attrs && attrs_grow(s) < 0) {
            free(own);
            return -1;
        }
        a = &s->attrs[s->n_attrs++];
    } else {
        free(a->own);
    }
    a->name = own;
    a->value = own + nlen + 1;
    a->own = own;
    return 0;
}

API int xmppd_stanza_set_attr(xmppd_stanza *s, const char *name, const char *value)
{
    touched(s);
    return set_attr(s, name, value);
}

/* An implicit-namespace subtree takes the namespace of the element it is
 * attached to; it stays implicit while that element is itself implicit. */
static int ns_inherit(xmppd_stanza *s, const xmppd_stanza *from)
{
    if (!s->ns_implicit)
        return 0;
    const char *shared = common_ns_find(from->ns, strlen(from->ns));
    char *own = NULL;
    if (!shared && !(own = strdup(from->ns)))
        return -1;
    free(s->ns_own);
    s->ns_own = own;
    s->ns = shared ? shared : own;
    s->ns_implicit = from->ns_implicit;
    for (xmppd_stanza *c = s->first; c; c = c->next)
        if (ns_inherit(c, s) < 0)
            return -1;
    return 0;
}

API xmppd_stanza *xmppd_stanza_add(xmppd_stanza *parent, xmppd_stanza *child)
{
    if (!child)
        return NULL;
    /* Refuse a second parent and cycles (child an ancestor of parent). */
    bool ok = parent && !child->parent;
    for (const xmppd_stanza *a = parent; ok && a; a = a->parent)
        ok = a != child;
    /* A fan-out copy becoming a child is no copy any more: it takes its
     * own tree (ns_inherit may change its elements). */
    if (ok) {
        touched(child);
        ok = unshare(child) == 0 && unshare(parent) == 0;
    }
    if (!ok || ns_inherit(child, parent) < 0) {
        xmppd_stanza_unref(child);
        return NULL;
    }
    touched(parent);
    child->parent = parent;
    child->text_off = parent->text_len;
    if (parent->last)
        parent->last->next = child;
    else
        parent->first = child;
    parent->last = child;
    return child;
}

API xmppd_stanza *xmppd_stanza_tag(xmppd_stanza *parent, const char *name, const char *ns)
{
    return xmppd_stanza_add(parent, xmppd_stanza_new(name, ns));
}

API void xmppd_stanza_remove(xmppd_stanza *parent, xmppd_stanza *child)
{
    if (!child || child->parent != parent)
        return;
    touched(parent);
    xmppd_stanza *prev = NULL;
    for (xmppd_stanza *c = parent->first; c != child; c = c->next)
        prev = c;
    if (prev)
        prev->next = child->next;
    else
        parent->first = child->next;
    if (parent->last == child)
        parent->last = prev;
    child->parent = NULL;
    child->next = NULL;
    xmppd_stanza_unref(child);
}

/* Appends to the element's own text; no change is recorded (see touched). */
static int text_append(xmppd_stanza *s, const char *text, size_t len)
{
    if (len == 0)
        return 0;
    if (len >= SIZE_MAX / 2 - s->text_len)
        return -1;
    size_t need = s->text_len + len + 1;
    if (need > s->text_cap) {
        /* First chunk: exact (most text arrives in one piece); then double. */
        size_t cap = s->text ? s->text_cap * 2 : need;
        if (cap < need)
            cap = need;
        char *t = realloc(s->text, cap);
        if (!t)
            return -1;
        s->text = t;
        s->text_cap = cap;
    }
    memcpy(s->text + s->text_len, text, len);
    s->text_len += len;
    s->text[s->text_len] = '\0';
    return 0;
}

API int xmppd_stanza_add_text(xmppd_stanza *s, const char *text, size_t len)
{
    if (len == 0)
        return 0;
    if (unshare(s) < 0)
        return -1;
    touched(s);
    return text_append(s, text, len);
}

API int xmppd_stanza_set_text(xmppd_stanza *s, const char *text)
{
    if (unshare(s) < 0)
        return -1;
    touched(s);
    s->text_len = 0;
    if (s->text)
        s->text[0] = '\0';
    if (text && xmppd_stanza_add_text(s, text, strlen(text)) < 0)
        return -1;
    for (xmppd_stanza *c = s->first; c; c = c->next)
        c->text_off = s->text_len;
    return 0;
}

/* ---- copy -------------------------------------------------------------- */

/* s's top element alone: name, namespace and attributes in one block, with
 * room for one more attribute of to_bytes bytes. */
static xmppd_stanza *copy_one(const xmppd_stanza *s, size_t to_bytes)
{
    size_t str_bytes = to_bytes;
    for (size_t i = 0; i < s->n_attrs; i++)
        str_bytes += strlen(s->attrs[i].name) + strlen(s->attrs[i].value) + 2;
    xmppd_stanza *c = stanza_alloc(s->name, strlen(s->name), s->ns, strlen(s->ns),
                                   s->n_attrs + (to_bytes ? 1 : 0), str_bytes);
    if (!c)
        return NULL;
    c->ns_implicit = s->ns_implicit;
    for (size_t i = 0; i < s->n_attrs; i++) {
        const stanza_attr *a = &s->attrs[i];
        stanza_put_attr(c, NULL, a->name, a->value, strlen(a->value));
    }
    return c;
}

/* Appends deep copies of from's text and children to c (which has none). */
static int copy_content(xmppd_stanza *c, const xmppd_stanza *from);

static xmppd_stanza *copy_tree(const xmppd_stanza *s)
{
    xmppd_stanza *c = copy_one(s, 0);
    if (c && copy_content(c, content(s)) < 0) {
        xmppd_stanza_unref(c);
        return NULL;
    }
    return c;
}

static int copy_content(xmppd_stanza *c, const xmppd_stanza *from)
{
    if (text_append(c, from->text, from->text_len) < 0)
        return -1;
    for (const xmppd_stanza *k = from->first; k; k = k->next) {
        xmppd_stanza *kc = copy_tree(k);
        if (!kc)
            return -1;
        /* Append directly: namespaces are already resolved in the copy. */
        kc->parent = c;
        kc->text_off = k->text_off;
        if (c->last)
            c->last->next = kc;
        else
            c->first = kc;
        c->last = kc;
    }
    return 0;
}

API xmppd_stanza *xmppd_stanza_copy(const xmppd_stanza *s)
{
    return s ? copy_tree(s) : NULL;
}

/* A copy-on-write copy takes a private tree: deep copies of the frozen
 * tree's text and children. Its serialisation share stays (the content is
 * the same). 0, or -1 on OOM (the copy is then unchanged). */
static int unshare(xmppd_stanza *s)
{
    if (!s->cow)
        return 0;
    if (copy_content(s, s->shared) < 0) {
        drop_content(s);
        return -1;
    }
    s->cow = false;
    xmppd_stanza_unref(s->shared);
    s->shared = NULL;
    return 0;
}

/* The frozen tree copies of s show, with a reference for the caller: a
 * copy's own, the one cached on a top-level s, or a new one (an element
 * inside a tree is not cached: its changes are the root's). Only the
 * text and children of a frozen tree are used. */
static xmppd_stanza *frozen_of(xmppd_stanza *s)
{
    if (s->cow || (!s->parent && s->shared))
        return xmppd_stanza_ref(s->shared);
    /* The source's 'from' goes with it, for stanza_fanout_from. */
    const char *from = xmppd_stanza_attr(s, "from");
    size_t from_bytes = from ? strlen("from") + strlen(from) + 2 : 0;
    xmppd_stanza *f = stanza_alloc(s->name, strlen(s->name), NULL, 0, from ? 1 : 0, from_bytes);
    if (f && from)
        stanza_put_attr(f, NULL, "from", from, strlen(from));
    if (f && copy_content(f, s) < 0) {
        xmppd_stanza_unref(f);
        return NULL;
    }
    if (f && !s->parent)
        s->shared = xmppd_stanza_ref(f);
    return f;
}

/* The copy's own 'to' goes where a deep copy with set_attr would put it:
 * in place of the source's, or last; removal as set_attr does it. */
static int copy_set_to(xmppd_stanza *c, const char *to)
{
    if (!to)
        return set_attr(c, "to", NULL);
    stanza_attr *a = attr_find(c, "to");
    if (!a)
        return stanza_put_attr(c, NULL, "to", to, strlen(to));
    size_t n = strlen(to) + 1;
    memcpy(c->fill, to, n); /* room made by copy_one */
    a->value = c->fill;
    c->fill += n;
    c->fill_left -= n;
    return 0;
}

API xmppd_stanza *xmppd_stanza_copy_to(const xmppd_stanza *s, const char *to)
{
    if (!s)
        return NULL;
    /* The frozen tree and the share hang on the source (caches, not
     * content: hence the cast), so every copy made from it until it
     * changes uses the same tree and text. Only a top-level source:
     * touched() drops the caches of a tree's root, not of an element
     * inside it. */
    xmppd_stanza *src = (xmppd_stanza *)s;
    xmppd_stanza *frozen = frozen_of(src);
    xmppd_stanza *c = frozen ? copy_one(s, to ? strlen("to") + strlen(to) + 2 : 0) : NULL;
    if (!c || copy_set_to(c, to) < 0) {
        xmppd_stanza_unref(c);
        xmppd_stanza_unref(frozen);
        return NULL;
    }
    c->cow = true;
    c->shared = frozen;
    if (to && !src->parent && (src->share || (src->share = stanza_share_new()))) {
        src->share->refs++;
        c->share = src->share;
    }
    return c;
}

const xmppd_jid *stanza_fanout_from(const xmppd_stanza *st, xmppd_stanza **hold)
{
    *hold = NULL;
    if (!st->cow)
        return NULL;
    xmppd_stanza *f = st->shared;
    const char *mine = xmppd_stanza_attr(st, "from"), *src = xmppd_stanza_attr(f, "from");
    if (!mine || !src || strcmp(mine, src) != 0)
        return NULL;
    if (!f->from_jid && !(f->from_jid = xmppd_jid_parse(src)))
        return NULL;
    *hold = xmppd_stanza_ref(f);
    return f->from_jid;
}

/* ---- serialisation ----------------------------------------------------- */

static bool sb_room(xbuf *b, size_t n)
{
    if (b->oom)
        return false;
    if (n <= b->cap - b->len)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2) {
            b->oom = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void xbuf_put(xbuf *b, const char *s, size_t n)
{
    if (n && sb_room(b, n)) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

void xbuf_free(xbuf *b)
{
    free(b->p);
    *b = (xbuf){ 0 };
}

/* The serialiser writes a stanza in many small pieces: the common case,
 * room enough, is inlined here; xbuf_put grows the buffer. */
static inline void sb_put(xbuf *b, const char *s, size_t n)
{
    if (n && !b->oom && n <= b->cap - b->len) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    } else {
        xbuf_put(b, s, n);
    }
}
static void sb_puts(xbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* Which bytes need escaping: bit ESC_TEXT in character data, bit ESC_ATTR
 * in attribute values (written in single quotes, but both quotes are
 * escaped so the output can be embedded either way). */
enum { ESC_TEXT = 1, ESC_ATTR = 2 };
static const unsigned char esc_class[256] = {
    [0x00 ... 0x08] = ESC_TEXT | ESC_ATTR, ['\t'] = ESC_ATTR, ['\n'] = ESC_ATTR,
    [0x0b ... 0x1f] = ESC_TEXT | ESC_ATTR, ['&'] = ESC_TEXT | ESC_ATTR,
    ['<'] = ESC_TEXT | ESC_ATTR, ['>'] = ESC_TEXT | ESC_ATTR,
    ['\''] = ESC_ATTR, ['"'] = ESC_ATTR,
};

/* What an escaped byte becomes. CR (and TAB, LF in attributes) are written
 * as references so the receiving parser's normalisation keeps them. Other
 * control characters are dropped: XML 1.0 cannot carry them, and writing
 * them would make the peer close the stream. ">" is escaped so "]]>" never
 * appears in text. */
static const char *escape_of(unsigned char c)
{
    switch (c) {
    case '&': return "&amp;";
    case '<': return "&lt;";
    case '>': return "&gt;";
    case '\'': return "&apos;";
    case '"': return "&quot;";
    case '\r': return "&#13;";
    case '\n': return "&#10;";
    case '\t': return "&#9;";
    default: return "";
    }
}

/* Copies runs of plain bytes in one memcpy each; the scan for the next
 * byte to escape looks at four bytes per step (most text has none). */
static void sb_escaped(xbuf *b, const char *s, size_t n, int mode)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0, i = 0;
    for (;;) {
        while (i + 4 <= n && !((esc_class[u[i]] | esc_class[u[i + 1]] | esc_class[u[i + 2]] |
                                esc_class[u[i + 3]]) & mode))
            i += 4;
        while (i < n && !(esc_class[u[i]] & mode))
            i++;
        if (i >= n)
            break;
        sb_put(b, s + run, i - run);
        sb_puts(b, escape_of(u[i]));
        run = ++i;
    }
    sb_put(b, s + run, n - run);
}

/* mark (may be NULL): gets the offsets in b where the escaped value
 * starts and ends. */
static void sb_attr(xbuf *b, const char *name, const char *value, size_t mark[2])
{
    sb_put(b, " ", 1);
    sb_puts(b, name);
    sb_put(b, "='", 2);
    if (mark)
        mark[0] = b->len;
    sb_escaped(b, value, strlen(value), ESC_ATTR);
    if (mark)
        mark[1] = b->len;
    sb_put(b, "'", 1);
}

#define NS_XML "http://www.w3.org/XML/1998/namespace"

/* parent_ns: the default namespace in scope where s is written. The xml
 * namespace is bound to its prefix and may never be declared as a default
 * (Namespaces in XML §3), so an element in it keeps "xml:" and leaves the
 * default namespace in scope unchanged for its children. to_mark (NULL
 * below the top): where the value of s's 'to' attribute went. */
static void ser_element(xbuf *b, const xmppd_stanza *s, const char *parent_ns, size_t to_mark[2])
{
    bool in_xml_ns = s->ns && strcmp(s->ns, NS_XML) == 0;
    const char *inner_ns = in_xml_ns ? parent_ns : s->ns;
    const xmppd_stanza *k = content(s); /* children and text */
    sb_put(b, "<", 1);
    if (in_xml_ns)
        sb_put(b, "xml:", 4);
    sb_puts(b, s->name);
    if (!in_xml_ns && !ns_eq(s->ns, parent_ns))
        sb_attr(b, "xmlns", s->ns, NULL);
    for (size_t i = 0; i < s->n_attrs; i++) {
        const char *name = s->attrs[i].name;
        if (strcmp(name, "xmlns") != 0) /* the namespace is s->ns */
            sb_attr(b, name, s->attrs[i].value,
                    to_mark && strcmp(name, "to") == 0 ? to_mark : NULL);
    }
    if (!k->first && !k->text_len) {
        sb_put(b, "/>", 2);
        return;
    }
    sb_put(b, ">", 1);
    size_t done = 0;
    for (const xmppd_stanza *c = k->first; c; c = c->next) {
        size_t off = c->text_off < k->text_len ? c->text_off : k->text_len;
        if (off > done) {
            sb_escaped(b, k->text + done, off - done, ESC_TEXT);
            done = off;
        }
        ser_element(b, c, inner_ns, NULL);
    }
    if (k->text_len > done)
        sb_escaped(b, k->text + done, k->text_len - done, ESC_TEXT);
    sb_put(b, "</", 2);
    if (in_xml_ns)
        sb_put(b, "xml:", 4);
    sb_puts(b, s->name);
    sb_put(b, ">", 1);
}

/* The default namespace a top-level element is written against. */
static const char *top_scope(const xmppd_stanza *s, const char *default_ns)
{
    if (!default_ns)
        default_ns = XMPPD_NS_CLIENT;
    return is_content_ns(s->ns) && is_content_ns(default_ns) ? s->ns : default_ns;
}

API char *xmppd_stanza_to_string(const xmppd_stanza *s, const char *default_ns, size_t *len_r)
{
    xbuf b = {0};
    ser_element(&b, s, top_scope(s, default_ns), NULL);
    sb_put(&b, "", 1); /* NUL */
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (len_r)
        *len_r = b.len - 1;
    return b.p;
}

/* ---- shared serialisations of fan-out copies (serialise.h) ------------- */

stanza_share *stanza_share_new(void)
{
    stanza_share *sh = calloc(1, sizeof(*sh));
    if (sh)
        sh->refs = 1;
    return sh;
}

const stanza_share *stanza_share_of(const xmppd_stanza *st)
{
    return st ? st->share : NULL;
}

void stanza_share_unref(stanza_share *sh)
{
    if (!sh || --sh->refs > 0)
        return;
    if (!sh->one_block) {
        free(sh->xml);
        free(sh->scope);
    }
    free(sh);
}

/* The share takes the text of the first tree written that has a 'to',
 * with the place of its value. */
static void share_fill(stanza_share *sh, const xmppd_stanza *s, const char *scope)
{
    xbuf b = {0};
    size_t mark[2] = { 0, 0 };
    sh->state = SHARE_NONE;
    ser_element(&b, s, scope, mark);
    if (b.oom || mark[1] == 0 || !(sh->scope = strdup(scope))) {
        free(b.p);
        return;
    }
    sh->xml = b.p;
    sh->len = b.len;
    sh->to_off = mark[0];
    sh->to_end = mark[1];
    sh->state = SHARE_READY;
}

int stanza_serialise(xbuf *b, const xmppd_stanza *s, const char *default_ns)
{
    size_t start = b->len;
    if (b->oom)
        return -1;
    const char *scope = top_scope(s, default_ns);
    stanza_share *sh = s->share;
    const char *to = xmppd_stanza_attr(s, "to");
    if (sh && to && sh->state == SHARE_EMPTY)
        share_fill(sh, s, scope);
    if (sh && to && sh->state == SHARE_READY && ns_eq(sh->scope, scope)) {
        sb_put(b, sh->xml, sh->to_off);
        sb_escaped(b, to, strlen(to), ESC_ATTR);
        sb_put(b, sh->xml + sh->to_end, sh->len - sh->to_end);
    } else {
        ser_element(b, s, scope, NULL);
    }
    if (b->oom) {
        b->len = start;
        b->oom = false;
        return -1;
    }
    return 0;
}

/* ---- parsing one element ----------------------------------------------- */

typedef struct one_element {
    xmppd_stanza *st;
    bool bad, closed;
} one_element;

static int one_on_element(void *ud, xmppd_stanza *st)
{
    one_element *o = ud;
    if (o->st) {
        xmppd_stanza_unref(st);
        o->bad = true;
        return 1;
    }
    o->st = st;
    return 0;
}

static void one_on_close(void *ud) { ((one_element *)ud)->closed = true; }
static void one_on_error(void *ud, const char *cond) { ((one_element *)ud)->bad = true; }

/* The synthetic stream header a parsed text goes after. */
static void one_stream_head(xbuf *head, const char *default_ns)
{
    sb_puts(head, "<stream:stream xmlns:stream='" XS_NS_STREAM "'");
    sb_attr(head, "xmlns", default_ns ? default_ns : XMPPD_NS_CLIENT, NULL);
    sb_put(head, ">", 1);
}

/* Reuses the stream parser by wrapping the text in a synthetic stream, so
 * both follow exactly the same restricted-XML rules. */
API xmppd_stanza *xmppd_stanza_from_string(const char *xml, size_t len, const char *default_ns)
{
    static const xs_callbacks cb = {
        .element = one_on_element, .close = one_on_close, .error = one_on_error,
    };
    one_element o = {0};
    xbuf head = {0};
    one_stream_head(&head, default_ns);
    xs_parser *p = head.oom ? NULL : xs_new(&cb, &o, 0, 0);
    if (p && xs_feed(p, head.p, head.len) == 0 && xs_feed(p, xml, len) == 0 && !o.closed &&
        !o.bad) {
        static const char tail[] = "</stream:stream>";
        if (xs_feed(p, tail, sizeof(tail) - 1) < 0 || !o.closed)
            o.bad = true;
    } else {
        o.bad = true;
    }
    xs_free(p);
    free(head.p);
    if (o.bad || !o.st) {
        xmppd_stanza_unref(o.st);
        return NULL;
    }
    return o.st;
}

/* ---- parsing elements in a row ------------------------------------------- */

/* One stream parser for a run of elements: the libxml2 context (the
 * costly part of xmppd_stanza_from_string) is built once. A text that is
 * not exactly one element drops the parser, and a text that fails in a
 * used parser is tried again in a fresh one, so each result is what
 * xmppd_stanza_from_string gives for the same text. */
struct xmppd_stanza_reader {
    xs_parser *p; /* NULL: none yet, or dropped after a bad text */
    one_element o;
    char *ns;
};

API xmppd_stanza_reader *xmppd_stanza_reader_new(const char *default_ns)
{
    xmppd_stanza_reader *r = calloc(1, sizeof(*r));
    if (r && !(r->ns = strdup(default_ns ? default_ns : XMPPD_NS_CLIENT))) {
        free(r);
        return NULL;
    }
    return r;
}

/* The parser, with the synthetic stream header fed; NULL on OOM. */
static xs_parser *reader_parser(xmppd_stanza_reader *r)
{
    static const xs_callbacks cb = {
        .element = one_on_element, .close = one_on_close, .error = one_on_error,
    };
    if (r->p)
        return r->p;
    xbuf head = {0};
    one_stream_head(&head, r->ns);
    r->o = (one_element){0};
    r->p = head.oom ? NULL : xs_new(&cb, &r->o, 0, 0);
    if (r->p && (xs_feed(r->p, head.p, head.len) < 0 || r->o.bad)) {
        xs_free(r->p);
        r->p = NULL;
    }
    free(head.p);
    return r->p;
}

static bool xml_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Where the value of the 'to' attribute of the start tag t (well-formed:
 * the parser took it) is, as offsets into t; false when the tag has no
 * 'to' or declares a namespace (then the text is not the tree written
 * against its scope, as ser_element would). */
static bool start_tag_to(const char *t, size_t len, size_t mark[2])
{
    bool found = false;
    size_t i = 1;
    while (i < len && !xml_space(t[i]) && t[i] != '/' && t[i] != '>')
        i++;
    for (;;) {
        while (i < len && xml_space(t[i]))
            i++;
        if (i >= len || t[i] == '/' || t[i] == '>')
            return found;
        size_t name = i;
        while (i < len && t[i] != '=' && !xml_space(t[i]))
            i++;
        size_t name_len = i - name;
        while (i < len && t[i] != '\'' && t[i] != '"')
            i++;
        if (i >= len)
            return false;
        char q = t[i++];
        size_t value = i;
        while (i < len && t[i] != q)
            i++;
        if (i >= len)
            return false;
        if (name_len >= 5 && memcmp(t + name, "xmlns", 5) == 0)
            return false;
        if (name_len == 2 && memcmp(t + name, "to", 2) == 0) {
            mark[0] = value;
            mark[1] = i;
            found = true;
        }
        i++;
    }
}

/* Hangs the text st was parsed from (trimmed: one element) on st as its
 * ready serialisation, in the form of a fan-out share: written as it is
 * while st is unchanged (any change drops it, touched), with the 'to' of
 * a xmppd_stanza_copy_to copy put in. Parsed against the reader's
 * namespace, the text is the same elements, attributes and text as the
 * tree. Nothing is hung (and st is written by ser_element) when the text
 * has no 'to' or the memory is short. */
static void reader_share(xmppd_stanza *st, const char *xml, size_t len, const char *ns)
{
    size_t mark[2];
    while (len && xml_space(*xml)) {
        xml++;
        len--;
    }
    if (!len || *xml != '<' || !start_tag_to(xml, len, mark))
        return;
    const char *scope = top_scope(st, ns);
    size_t scope_len = strlen(scope);
    stanza_share *sh = malloc(sizeof(*sh) + len + scope_len + 1);
    if (!sh)
        return;
    *sh = (stanza_share){ .refs = 1, .state = SHARE_READY, .one_block = true, .len = len,
                          .to_off = mark[0], .to_end = mark[1] };
    sh->xml = (char *)(sh + 1);
    memcpy(sh->xml, xml, len);
    sh->scope = sh->xml + len;
    memcpy(sh->scope, scope, scope_len + 1);
    st->share = sh;
}

API xmppd_stanza *xmppd_stanza_reader_parse(xmppd_stanza_reader *r, const char *xml, size_t len)
{
    /* Text after the element ("<a/>text") would wait in libxml2 for the
     * next one; xmppd_stanza_from_string refuses it: so does this. */
    size_t end = len;
    while (end > 0 && (xml[end - 1] == ' ' || xml[end - 1] == '\t' || xml[end - 1] == '\r' ||
                       xml[end - 1] == '\n'))
        end--;
    if (end == 0 || xml[end - 1] != '>')
        return NULL;
    for (int fresh = r->p ? 0 : 1; fresh < 2; fresh++) {
        xs_parser *p = reader_parser(r);
        if (!p)
            return NULL;
        r->o = (one_element){0};
        /* Back between top-level elements with one element parsed: the
         * text was that element and nothing more. */
        if (xs_feed(p, xml, len) == 0 && !r->o.bad && !r->o.closed && r->o.st && xs_depth(p) == 1) {
            reader_share(r->o.st, xml, end, r->ns);
            return r->o.st;
        }
        xmppd_stanza_unref(r->o.st);
        r->o.st = NULL;
        xs_free(p);
        r->p = NULL;
    }
    return NULL;
}

API void xmppd_stanza_reader_free(xmppd_stanza_reader *r)
{
    if (!r)
        return;
    xs_free(r->p);
    free(r->ns);
    free(r);
}

/* ---- replies ------------------------------------------------------------ */

/* The reply's attributes are known up front: build it in one block. */
static xmppd_stanza *reply_typed(const xmppd_stanza *s, const char *type)
{
    const char *names[4] = {"to", "from", "id", "type"};
    const char *values[4] = {xmppd_stanza_attr(s, "from"), xmppd_stanza_attr(s, "to"),
                             xmppd_stanza_attr(s, "id"), type};
    size_t n = 0, bytes = 0;
    for (size_t i = 0; i < 4; i++)
        if (values[i]) {
            n++;
            bytes += strlen(names[i]) + strlen(values[i]) + 2;
        }
    xmppd_stanza *r = stanza_alloc(s->name, strlen(s->name), s->ns, strlen(s->ns), n, bytes);
    if (!r)
        return NULL;
    r->ns_implicit = s->ns_implicit;
    for (size_t i = 0; i < 4; i++)
        if (values[i])
            stanza_put_attr(r, NULL, names[i], values[i], strlen(values[i]));
    return r;
}

API xmppd_stanza *xmppd_stanza_reply(const xmppd_stanza *s)
{
    return reply_typed(s, strcmp(s->name, "iq") == 0 ? "result" : xmppd_stanza_attr(s, "type"));
}

/* RFC 6120 §8.3.3: the error type each defined condition is shown with. */
static const char *default_error_type(const char *condition)
{
    static const struct { const char *cond, *type; } table[] = {
        {"bad-request", "modify"},           {"conflict", "cancel"},
        {"feature-not-implemented", "cancel"}, {"forbidden", "auth"},
        {"gone", "cancel"},                  {"internal-server-error", "cancel"},
        {"item-not-found", "cancel"},        {"jid-malformed", "modify"},
        {"not-acceptable", "modify"},        {"not-allowed", "cancel"},
        {"not-authorized", "auth"},          {"policy-violation", "modify"},
        {"recipient-unavailable", "wait"},   {"redirect", "modify"},
        {"registration-required", "auth"},   {"remote-server-not-found", "cancel"},
        {"remote-server-timeout", "wait"},   {"resource-constraint", "wait"},
        {"service-unavailable", "cancel"},   {"subscription-required", "auth"},
        {"undefined-condition", "modify"},   {"unexpected-request", "wait"},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strcmp(table[i].cond, condition) == 0)
            return table[i].type;
    return "cancel";
}

API xmppd_stanza *xmppd_stanza_error_reply(const xmppd_stanza *s, const char *type,
                                           const char *condition, const char *text)
{
    if (!condition)
        condition = "undefined-condition";
    xmppd_stanza *r = reply_typed(s, "error");
    if (!r)
        return NULL;
    xmppd_stanza *err = xmppd_stanza_tag(r, "error", NULL);
    if (!err || xmppd_stanza_set_attr(err, "type", type ? type : default_error_type(condition)) < 0 ||
        !xmppd_stanza_tag(err, condition, XMPPD_NS_STANZAS))
        goto fail;
    if (text) {
        xmppd_stanza *t = xmppd_stanza_tag(err, "text", XMPPD_NS_STANZAS);
        if (!t || xmppd_stanza_add_text(t, text, strlen(text)) < 0)
            goto fail;
    }
    return r;
fail:
    xmppd_stanza_unref(r);
    return NULL;
}
