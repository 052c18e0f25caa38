/* XML stream parser (xmlstream.h) on libxml2's SAX2 push interface.
 *
 * libxml2 context options: XML_PARSE_NONET; no entity substitution, no DTD
 * loading, and libxml2's own size and depth limits stay on (no
 * XML_PARSE_HUGE). Everything
 * RFC 6120 §11.1 forbids is caught by a SAX callback before libxml2 acts on
 * it: a DOCTYPE reports internalSubset before its declarations are read, and
 * a reference to anything but the five predefined entities asks getEntity.
 *
 * Stopping: a callback that ends parsing (error, or open/element returning
 * nonzero) calls xmlStopParser, which makes libxml2 drop what it buffered,
 * and sets a flag so xs_feed drops the rest of its input. After a stop,
 * xs_feed discards everything until xs_reset: bytes after <starttls/> are
 * never parsed. xs_reset from inside a callback only marks the reset; the
 * context is freed once xmlParseChunk has returned.
 *
 * Size limit: pending = bytes fed since the end of the previous top-level
 * element (or of the stream header, or stream-level whitespace). Input is
 * handed to libxml2 in slices of at most max_stanza - pending + 1 bytes, so
 * an oversized element is caught even while libxml2 is still buffering an
 * unfinished start tag.
 *
 * Shrinking (xs_shrink): between top-level elements the only state of the
 * libxml2 context that matters for the rest of the stream is the root's
 * namespace declarations (its children may use any prefix the root
 * declared) and its qualified name, which the closing tag must match.
 * stream_open keeps both as a start tag (`root`); after a shrink, the next
 * feed creates a context and feeds it that tag first (`replaying`: no
 * open() callback, offsets start after it). A root with a namespace
 * value that would need escaping to be written back (& < ' or a
 * whitespace character other than a space: none of them occurs in real
 * namespaces) or longer than XS_ROOT_MAX is not kept: such a stream is
 * never shrunk. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>

#include "xml/xmlstream.h"

#define XS_SLICE_MAX (1u << 30) /* xmlParseChunk takes an int length */
#define XS_ROOT_MAX 1024         /* the replayed root start tag */

struct xs_parser {
    xs_callbacks cb;
    void *ud;
    size_t max_stanza; /* SIZE_MAX: no limit */
    unsigned max_depth; /* of a top-level element's tree (it is depth 1); 0: no limit */
    xmlParserCtxtPtr ctxt; /* NULL until the first byte of a stream */
    unsigned depth;     /* open elements, stream root included */
    xmppd_stanza *top;  /* top-level element being built (owned) */
    xmppd_stanza *cur;  /* its deepest open element (borrowed) */
    size_t fed;         /* bytes handed to ctxt */
    size_t mark;        /* stream offset where pending bytes start */
    char *scratch;      /* decoded attribute values */
    size_t scratch_cap;
    const char *root;   /* the root's start tag to replay, or NULL */
    size_t root_len;
    bool root_owned;    /* root is malloc'd (else one of common_roots) */
    bool in_feed, failed, stopped, reset_pending, replaying;
};

/* ---- state -------------------------------------------------------------- */

unsigned xs_depth(const xs_parser *p)
{
    return p->depth;
}

static void drop_partial(xs_parser *p)
{
    xmppd_stanza_unref(p->top);
    p->top = p->cur = NULL;
}

/* Ends parsing of the rest of the stream (until xs_reset). */
static void stop(xs_parser *p)
{
    p->stopped = true;
    if (p->ctxt)
        xmlStopParser(p->ctxt);
}

/* Reports a stream error once; later input is refused until xs_reset. */
static void fail(xs_parser *p, const char *condition)
{
    if (p->failed || p->stopped)
        return;
    if (p->replaying) /* our own start tag: only resources can fail it */
        condition = "internal-server-error";
    p->failed = true;
    drop_partial(p);
    if (p->ctxt)
        xmlStopParser(p->ctxt);
    if (p->cb.error)
        p->cb.error(p->ud, condition);
}

static size_t consumed(const xs_parser *p)
{
    long n = xmlByteConsumed(p->ctxt);
    return n < 0 ? p->fed : (size_t)n;
}

static void *scratch(xs_parser *p, size_t n)
{
    if (n > p->scratch_cap) {
        size_t cap = n < 256 ? 256 : n;
        char *s = realloc(p->scratch, cap);
        if (!s)
            return NULL;
        p->scratch = s;
        p->scratch_cap = cap;
    }
    return p->scratch;
}

/* libxml2 without entity substitution hands a '&' in an attribute value
 * over as "&#38;" (every other reference is already replaced), so that is
 * the one sequence to undo. Writes the value to dst; returns its length. */
static size_t attr_decode(char *dst, const char *v, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        dst[o++] = v[i];
        if (v[i] == '&' && n - i >= 5 && memcmp(v + i, "&#38;", 5) == 0)
            i += 4;
    }
    return o;
}

/* ---- restricted XML (RFC 6120 §11.1) ------------------------------------- */

static void restricted(void *ud) { fail(ud, "restricted-xml"); }

static void on_subset(void *ud, const xmlChar *name, const xmlChar *ext, const xmlChar *sys)
{
    restricted(ud);
}

static void on_entity_decl(void *ud, const xmlChar *name, int type, const xmlChar *pub,
                           const xmlChar *sys, xmlChar *content)
{
    restricted(ud);
}

static void on_notation_decl(void *ud, const xmlChar *name, const xmlChar *pub,
                             const xmlChar *sys)
{
    restricted(ud);
}

static void on_unparsed_entity_decl(void *ud, const xmlChar *name, const xmlChar *pub,
                                    const xmlChar *sys, const xmlChar *notation)
{
    restricted(ud);
}

/* Asked only for entities other than the five predefined ones. */
static xmlEntityPtr on_get_entity(void *ud, const xmlChar *name)
{
    restricted(ud);
    return NULL;
}

static xmlParserInputPtr on_resolve_entity(void *ud, const xmlChar *pub, const xmlChar *sys)
{
    restricted(ud);
    return NULL;
}

static void on_reference(void *ud, const xmlChar *name) { restricted(ud); }
static void on_comment(void *ud, const xmlChar *value) { restricted(ud); }

/* The XML declaration is not a processing instruction for libxml2. */
static void on_pi(void *ud, const xmlChar *target, const xmlChar *data) { restricted(ud); }

#if LIBXML_VERSION >= 21200
static void on_error(void *ud, const xmlError *e)
#else
static void on_error(void *ud, xmlErrorPtr e)
#endif
{
    switch (e->code) {
    case XML_ERR_USER_STOP: /* our own xmlStopParser */
        return;
    case XML_ERR_UNDECLARED_ENTITY:
    case XML_WAR_UNDECLARED_ENTITY:
        restricted(ud);
        return;
    case XML_ERR_UNSUPPORTED_ENCODING:
        fail(ud, "unsupported-encoding");
        return;
    default:
        if (e->level >= XML_ERR_ERROR) /* warnings (non-absolute ns URI...) are fine */
            fail(ud, "not-well-formed");
    }
}

/* Called after the XML declaration, if any. RFC 6120 §11.6: UTF-8 only;
 * libxml2 installs an encoder for a UTF-16 byte order or declared encoding. */
static void on_start_document(void *ud)
{
    xs_parser *p = ud;
    xmlParserInputPtr in = p->ctxt->input;
    const xmlChar *declared = p->ctxt->encoding ? p->ctxt->encoding : in ? in->encoding : NULL;
    if ((in && in->buf && in->buf->encoder) ||
        (declared && xmlStrcasecmp(declared, BAD_CAST "UTF-8") != 0))
        fail(p, "unsupported-encoding");
}

/* ---- elements -------------------------------------------------------------- */

/* The start tags nearly every stream has: kept by pointer rather than as a
 * copy per stream (about 100 bytes for each idle session). */
#define XS_NS_STREAMS_DECL " xmlns:stream='http://etherx.jabber.org/streams'"
static const char *const common_roots[] = {
    "<stream:stream xmlns='jabber:client'" XS_NS_STREAMS_DECL ">",
    "<stream:stream" XS_NS_STREAMS_DECL " xmlns='jabber:client'>",
    "<stream:stream xmlns='jabber:server'" XS_NS_STREAMS_DECL ">",
    "<stream:stream xmlns='jabber:server'" XS_NS_STREAMS_DECL
    " xmlns:db='jabber:server:dialback'>",
};

static void root_drop(xs_parser *p)
{
    if (p->root_owned)
        free((char *)p->root);
    p->root = NULL;
    p->root_owned = false;
}

/* Keeps the root's start tag with its namespace declarations (libxml2
 * passes them as prefix, URI pairs; a NULL prefix is the default
 * namespace) in p->root, or none when one cannot be written back as it
 * was read (see the top). */
static void root_keep(xs_parser *p, int nb_ns, const xmlChar **ns)
{
    static const char open[] = "<stream:stream", close[] = ">";
    char t[XS_ROOT_MAX + 1];
    root_drop(p);
    size_t len = sizeof(open) - 1 + sizeof(close) - 1;
    for (int i = 0; i < nb_ns; i++) {
        const char *pfx = (const char *)ns[2 * i], *uri = (const char *)ns[2 * i + 1];
        if (!uri || strpbrk(uri, "&<'\t\n\r"))
            return;
        len += strlen(" xmlns='") + (pfx ? strlen(pfx) + 1 : 0) + strlen(uri) + 1;
    }
    if (len > XS_ROOT_MAX)
        return;
    size_t o = (size_t)sprintf(t, "%s", open);
    for (int i = 0; i < nb_ns; i++) {
        const char *pfx = (const char *)ns[2 * i], *uri = (const char *)ns[2 * i + 1];
        o += (size_t)sprintf(t + o, " xmlns%s%s='%s'", pfx ? ":" : "", pfx ? pfx : "", uri);
    }
    memcpy(t + o, close, sizeof(close));
    for (size_t i = 0; i < sizeof(common_roots) / sizeof(common_roots[0]); i++)
        if (strcmp(t, common_roots[i]) == 0) {
            p->root = common_roots[i];
            p->root_len = len;
            return;
        }
    char *copy = malloc(len + 1);
    if (!copy)
        return;
    memcpy(copy, t, len + 1);
    p->root = copy;
    p->root_len = len;
    p->root_owned = true;
}

/* Stream header: checks the root and passes its attributes to open(). */
static void stream_open(xs_parser *p, const xmlChar *localname, const xmlChar *prefix,
                        const xmlChar *uri, int nb_ns, const xmlChar **ns, int nb_attrs,
                        const xmlChar **attrs)
{
    if (!uri || strcmp((const char *)uri, XS_NS_STREAM) != 0 ||
        strcmp((const char *)localname, "stream") != 0) {
        fail(p, "invalid-namespace");
        return;
    }
    if (!prefix || strcmp((const char *)prefix, "stream") != 0) {
        fail(p, "bad-namespace-prefix"); /* RFC 6120 §4.8.5 */
        return;
    }
    xs_header h = {0};
    for (int i = 0; i < nb_ns; i++)
        if (!ns[2 * i])
            h.default_ns = (const char *)ns[2 * i + 1];

    /* The values are not NUL-terminated: decode them all into scratch. */
    size_t total = 0;
    for (int i = 0; i < nb_attrs; i++)
        total += (size_t)(attrs[5 * i + 4] - attrs[5 * i + 3]) + 1;
    char *out = scratch(p, total);
    if (!out && total) {
        fail(p, "resource-constraint");
        return;
    }
    for (int i = 0; i < nb_attrs; i++) {
        const char *local = (const char *)attrs[5 * i], *pfx = (const char *)attrs[5 * i + 1];
        const char *v = (const char *)attrs[5 * i + 3];
        const char **slot = NULL;
        if (!pfx) {
            slot = !strcmp(local, "to") ? &h.to : !strcmp(local, "from") ? &h.from
                 : !strcmp(local, "id") ? &h.id : !strcmp(local, "version") ? &h.version : NULL;
        } else if (!strcmp(pfx, "xml") && !strcmp(local, "lang")) {
            slot = &h.lang;
        }
        if (!slot)
            continue;
        size_t n = attr_decode(out, v, (size_t)((const char *)attrs[5 * i + 4] - v));
        out[n] = '\0';
        *slot = out;
        out += n + 1;
    }
    /* Kept for xs_shrink (none: the stream is never shrunk). */
    root_keep(p, nb_ns, ns);
    /* The header is not part of the first stanza; libxml2 reports the
     * start tag before stepping over its closing '>'. */
    p->mark = consumed(p) + 1;
    if (p->cb.open && p->cb.open(p->ud, &h) != 0)
        stop(p);
}

/* Does an earlier attribute of the same element use this prefix? Names
 * come from the context's dictionary, so equal strings are equal pointers. */
static bool prefix_seen(const xmlChar **attrs, int upto, const xmlChar *prefix)
{
    for (int i = 0; i < upto; i++)
        if (attrs[5 * i + 1] == prefix)
            return true;
    return false;
}

static bool needs_ns_decl(const xmlChar **attrs, int i)
{
    const xmlChar *prefix = attrs[5 * i + 1];
    return prefix && !xmlStrEqual(prefix, BAD_CAST "xml") && !prefix_seen(attrs, i, prefix);
}

/* One element in one allocation (stanza_alloc_parsed). A prefixed
 * attribute keeps "prefix:local"; its prefix is declared again on this
 * element (xmlns:prefix) so the element serialises correctly on its own.
 * The xml: prefix is predeclared and needs nothing. */
static xmppd_stanza *build_element(xs_parser *p, const xmlChar *localname, const xmlChar *uri,
                                   int nb_attrs, const xmlChar **attrs)
{
    size_t n = 0, bytes = 0;
    for (int i = 0; i < nb_attrs; i++) {
        const xmlChar **a = attrs + 5 * i;
        bytes += (a[1] ? strlen((const char *)a[1]) + 1 : 0) + strlen((const char *)a[0]) + 1 +
                 (size_t)(a[4] - a[3]) + 1;
        n++;
        if (needs_ns_decl(attrs, i)) {
            bytes += strlen("xmlns:") + strlen((const char *)a[1]) + 1 +
                     (a[2] ? strlen((const char *)a[2]) : 0) + 1;
            n++;
        }
    }
    const char *ns = (const char *)uri;
    xmppd_stanza *el = stanza_alloc_parsed((const char *)localname, ns, ns ? strlen(ns) : 0, n,
                                           bytes);
    if (!el)
        return NULL;
    for (int i = 0; i < nb_attrs; i++) {
        const xmlChar **a = attrs + 5 * i;
        const char *v = (const char *)a[3];
        size_t vlen = (size_t)(a[4] - a[3]);
        if (memchr(v, '&', vlen)) {
            char *d = scratch(p, vlen);
            if (!d) {
                xmppd_stanza_unref(el);
                return NULL;
            }
            vlen = attr_decode(d, v, vlen);
            v = d;
        }
        int rc = stanza_put_attr(el, (const char *)a[1], (const char *)a[0], v, vlen);
        if (rc == 0 && needs_ns_decl(attrs, i)) {
            const char *u = a[2] ? (const char *)a[2] : "";
            rc = stanza_put_attr(el, "xmlns", (const char *)a[1], u, strlen(u));
        }
        if (rc < 0) {
            xmppd_stanza_unref(el);
            return NULL;
        }
    }
    return el;
}

static void on_start_element(void *ud, const xmlChar *localname, const xmlChar *prefix,
                             const xmlChar *uri, int nb_ns, const xmlChar **ns, int nb_attrs,
                             int nb_defaulted, const xmlChar **attrs)
{
    xs_parser *p = ud;
    if (p->failed || p->stopped)
        return;
    p->depth++;
    if (p->depth == 1) {
        if (!p->replaying)
            stream_open(p, localname, prefix, uri, nb_ns, ns, nb_attrs, attrs);
        return;
    }
    if (p->max_depth && p->depth - 1 > p->max_depth) {
        fail(p, "policy-violation");
        return;
    }
    xmppd_stanza *el = build_element(p, localname, uri, nb_attrs, attrs);
    if (!el) {
        fail(p, "resource-constraint");
        return;
    }
    if (p->depth == 2)
        p->top = el;
    else
        xmppd_stanza_add(p->cur, el); /* fresh element, explicit ns: cannot fail */
    p->cur = el;
}

static void on_end_element(void *ud, const xmlChar *localname, const xmlChar *prefix,
                           const xmlChar *uri)
{
    xs_parser *p = ud;
    if (p->failed || p->stopped)
        return;
    p->depth--;
    if (p->depth == 0) {
        if (p->cb.close)
            p->cb.close(p->ud);
        return;
    }
    if (p->depth > 1) {
        p->cur = xmppd_stanza_parent(p->cur);
        return;
    }
    /* A complete top-level element. */
    xmppd_stanza *st = p->top;
    p->top = p->cur = NULL;
    size_t end = consumed(p);
    if (end - p->mark > p->max_stanza) {
        xmppd_stanza_unref(st);
        fail(p, "policy-violation");
        return;
    }
    p->mark = end;
    if (!p->cb.element) {
        xmppd_stanza_unref(st);
        return;
    }
    if (p->cb.element(p->ud, st) != 0 || p->reset_pending)
        stop(p);
}

static bool all_space(const xmlChar *s, int len)
{
    for (int i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

static void on_characters(void *ud, const xmlChar *ch, int len)
{
    xs_parser *p = ud;
    if (p->failed || p->stopped)
        return;
    if (p->depth >= 2) {
        if (xmppd_stanza_add_text(p->cur, (const char *)ch, (size_t)len) < 0)
            fail(p, "resource-constraint");
        return;
    }
    /* Between stanzas only whitespace (keepalives) may appear; it does not
     * count towards the next stanza's size, however long the session. */
    if (!all_space(ch, len))
        fail(p, "not-well-formed");
    else
        p->mark = consumed(p);
}

/* Strict UTF-8 of XML characters (RFC 3629, XML 1.0 §2.2): no overlong
 * forms, surrogates, values over U+10FFFF, C0 controls but TAB LF CR, or
 * U+FFFE/U+FFFF. */
static bool utf8_xml_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], len, min;
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
                return false;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            len = 2, min = 0x80, c &= 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            len = 3, min = 0x800, c &= 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            len = 4, min = 0x10000, c &= 0x07;
        else
            return false;
        if (n - i < len)
            return false;
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (s[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff) || c == 0xfffe ||
            c == 0xffff)
            return false;
        i += len;
    }
    return true;
}

/* libxml2 2.9 checks CDATA content more loosely than other text (it takes
 * overlong forms such as C0 BC for '<'), so CDATA gets its own check
 * instead of arriving as characters. */
static void on_cdata(void *ud, const xmlChar *ch, int len)
{
    xs_parser *p = ud;
    if (p->failed || p->stopped)
        return;
    if (p->depth < 2 || !utf8_xml_valid(ch, (size_t)len))
        fail(p, "not-well-formed");
    else if (xmppd_stanza_add_text(p->cur, (const char *)ch, (size_t)len) < 0)
        fail(p, "resource-constraint");
}

/* Copied by libxml2 into each context. attributeDecl and elementDecl stay
 * NULL on purpose: libxml2 then frees their arguments itself, and they can
 * only occur inside a DOCTYPE, which on_subset refuses first. */
static xmlSAXHandler sax = {
    .internalSubset = on_subset,
    .externalSubset = on_subset,
    .getEntity = on_get_entity,
    .getParameterEntity = on_get_entity,
    .resolveEntity = on_resolve_entity,
    .entityDecl = on_entity_decl,
    .notationDecl = on_notation_decl,
    .unparsedEntityDecl = on_unparsed_entity_decl,
    .startDocument = on_start_document,
    .reference = on_reference,
    .characters = on_characters,
    .ignorableWhitespace = on_characters,
    .cdataBlock = on_cdata,
    .comment = on_comment,
    .processingInstruction = on_pi,
    .startElementNs = on_start_element,
    .endElementNs = on_end_element,
    .serror = on_error,
    .initialized = XML_SAX2_MAGIC,
};

/* ---- public ---------------------------------------------------------------- */

/* libxml2 sends errors it cannot tie to a context (encoding conversion,
 * I/O) to a generic handler that prints on stderr; the parser reports
 * them through check_ctxt instead, so peers cannot fill the log. */
static void ignore_generic(void *ctx, const char *msg, ...) {}

xs_parser *xs_new(const xs_callbacks *cb, void *ud, size_t max_stanza, unsigned max_depth)
{
    xs_parser *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    xmlInitParser(); /* idempotent; libxml2 wants it before the first context */
    xmlSetGenericErrorFunc(NULL, ignore_generic); /* per thread in libxml2 */
    p->cb = *cb;
    p->ud = ud;
    p->max_stanza = max_stanza ? max_stanza : SIZE_MAX;
    p->max_depth = max_depth;
    return p;
}

static void check_ctxt(xs_parser *p);

/* A context for a new stream, or (after xs_shrink) for the rest of an open
 * one: its root start tag goes first, and the stream's bytes count from
 * its end. -1 with the stream failed. */
static int create_ctxt(xs_parser *p)
{
    p->ctxt = xmlCreatePushParserCtxt(&sax, p, NULL, 0, NULL);
    if (!p->ctxt) {
        fail(p, "resource-constraint");
        return -1;
    }
    xmlCtxtUseOptions(p->ctxt, XML_PARSE_NONET);
    if (!p->root || p->depth == 0)
        return 0;
    p->depth = 0; /* on_start_element counts the root again */
    p->replaying = true;
    xmlParseChunk(p->ctxt, p->root, (int)p->root_len, 0);
    check_ctxt(p);
    p->replaying = false;
    if (!p->failed && (p->depth != 1 || consumed(p) != p->root_len))
        fail(p, "internal-server-error"); /* not where the stream was: never go on */
    p->fed = p->mark = p->root_len;
    return p->failed ? -1 : 0;
}

static void do_reset(xs_parser *p)
{
    drop_partial(p);
    if (p->ctxt)
        xmlFreeParserCtxt(p->ctxt);
    p->ctxt = NULL; /* created again by the next xs_feed */
    root_drop(p);
    p->depth = 0;
    p->fed = p->mark = 0;
    p->failed = p->stopped = p->reset_pending = false;
}

bool xs_shrink(xs_parser *p)
{
    if (!p->ctxt || !p->root || p->in_feed || p->failed || p->stopped || p->reset_pending ||
        p->depth != 1 || p->top || p->ctxt->instate != XML_PARSER_CONTENT)
        return false;
    /* What libxml2 holds unparsed (it waits for the '<' that ends a run
     * of text): only whitespace between elements, which is dropped as
     * on_characters would drop it. */
    xmlParserInputPtr in = p->ctxt->input;
    if (!in || !in->cur || !in->end || in->end < in->cur ||
        consumed(p) + (size_t)(in->end - in->cur) != p->fed ||
        !all_space(in->cur, (int)(in->end - in->cur)))
        return false;
    xmlFreeParserCtxt(p->ctxt);
    p->ctxt = NULL; /* rebuilt by the next xs_feed */
    p->fed = p->mark = 0;
    free(p->scratch);
    p->scratch = NULL;
    p->scratch_cap = 0;
    return true;
}

/* Errors libxml2 recorded without telling on_error (defensive). */
static void check_ctxt(xs_parser *p)
{
    if (!p->failed && !p->stopped &&
        (!p->ctxt->wellFormed || p->ctxt->instate == XML_PARSER_EOF))
        fail(p, "not-well-formed");
}

int xs_feed(xs_parser *p, const char *buf, size_t len)
{
    if (p->in_feed || p->failed)
        return -1;
    if (p->stopped)
        return 0;
    if (len == 0)
        return 0;
    p->in_feed = true; /* also while a replay runs (an error callback may reset) */
    if (!p->ctxt)
        create_ctxt(p);
    while (p->ctxt && len > 0 && !p->failed && !p->stopped) {
        size_t room = p->max_stanza - (p->fed - p->mark); /* pending <= max_stanza */
        size_t n = len <= room ? len : room + 1;
        if (n > XS_SLICE_MAX)
            n = XS_SLICE_MAX;
        p->fed += n;
        xmlParseChunk(p->ctxt, buf, (int)n, 0);
        buf += n;
        len -= n;
        check_ctxt(p);
        if (!p->failed && !p->stopped && p->fed - p->mark > p->max_stanza)
            fail(p, "policy-violation");
    }
    p->in_feed = false;
    bool failed = p->failed;
    if (p->reset_pending)
        do_reset(p);
    return failed ? -1 : 0;
}

void xs_reset(xs_parser *p)
{
    if (p->in_feed) {
        /* Never free the context under xmlParseChunk: finish in xs_feed. */
        p->reset_pending = true;
        if (!p->failed && !p->stopped)
            stop(p);
        return;
    }
    do_reset(p);
}

void xs_free(xs_parser *p)
{
    if (!p)
        return;
    do_reset(p);
    free(p->scratch);
    free(p);
}
