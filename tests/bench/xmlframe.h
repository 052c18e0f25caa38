/* Framing of XMPP traffic for the benchmark's own programs (loadgen,
 * tls-relay): tags are found by looking for '<' and the '>' that ends it
 * outside quotes, and attributes are read from the opening tag as they are
 * written. Nothing is parsed, checked or unescaped: enough for talking to
 * servers under test, never for a server. Header-only; every pointer
 * returned points into the caller's buffer. Includers define _GNU_SOURCE
 * (memmem) before their first include. */
#ifndef XMPPD_BENCH_XMLFRAME_H
#define XMPPD_BENCH_XMLFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef enum {
    XF_MORE,   /* no complete tag from *pos on: read more, try again at *pos */
    XF_SKIP,   /* a comment or processing instruction */
    XF_OPEN,   /* <x ...> */
    XF_EMPTY,  /* <x .../> */
    XF_CLOSE   /* </x> */
} xf_tag;

/* The next tag of p[*pos, n): its kind, and for OPEN, EMPTY and CLOSE its
 * first byte '<' at *at and its '>' at *end. *pos moves past what was
 * consumed. */
static inline xf_tag xf_next(const char *p, size_t n, size_t *pos, size_t *at, size_t *end)
{
    const char *lt = *pos < n ? memchr(p + *pos, '<', n - *pos) : NULL;
    if (!lt) {
        *pos = n;
        return XF_MORE;
    }
    size_t i = (size_t)(lt - p);
    if (i + 1 >= n) {
        *pos = i;
        return XF_MORE;
    }
    if (p[i + 1] == '!') {
        const char *e = memmem(p + i, n - i, "-->", 3);
        *pos = e ? (size_t)(e - p) + 3 : i;
        return e ? XF_SKIP : XF_MORE;
    }
    size_t j;
    char q = 0;
    for (j = i + 1; j < n; j++) {
        char ch = p[j];
        if (q) {
            if (ch == q)
                q = 0;
        } else if (ch == '"' || ch == '\'')
            q = ch;
        else if (ch == '>')
            break;
    }
    if (j >= n) {
        *pos = i;
        return XF_MORE;
    }
    *pos = j + 1;
    *at = i;
    *end = j;
    if (p[i + 1] == '?')
        return XF_SKIP;
    if (p[i + 1] == '/')
        return XF_CLOSE;
    return p[j - 1] == '/' ? XF_EMPTY : XF_OPEN;
}

/* Index of the '>' that ends el's opening tag (len when there is none). */
static inline size_t xf_open_tag_end(const char *el, size_t len)
{
    size_t pos = 0, at, end;
    xf_tag t = xf_next(el, len, &pos, &at, &end);
    return t == XF_OPEN || t == XF_EMPTY ? end : len;
}

/* The value of attribute name in el's opening tag, as written. */
static inline bool xf_attr(const char *el, size_t len, const char *name, const char **v,
                           size_t *vn)
{
    size_t end = xf_open_tag_end(el, len), nl = strlen(name);
    for (size_t i = 1; i + nl + 2 < end; i++) {
        if (el[i] == '\'' || el[i] == '"') {   /* another attribute's value */
            const char *q = memchr(el + i + 1, el[i], end - i - 1);
            if (!q)
                return false;
            i = (size_t)(q - el);
            continue;
        }
        if ((el[i - 1] == ' ' || el[i - 1] == '\t' || el[i - 1] == '\n' || el[i - 1] == '\r') &&
            memcmp(el + i, name, nl) == 0 && el[i + nl] == '=' &&
            (el[i + nl + 1] == '\'' || el[i + nl + 1] == '"')) {
            const char *s = el + i + nl + 2, *e = memchr(s, el[i + nl + 1], end - (i + nl + 2));
            if (!e)
                return false;
            *v = s;
            *vn = (size_t)(e - s);
            return true;
        }
    }
    return false;
}

/* The text of a simple element <x ...>TEXT</x>: empty for <x/>; false when
 * el has no closing tag after its opening one. */
static inline bool xf_text(const char *el, size_t len, const char **s, size_t *n)
{
    size_t a = xf_open_tag_end(el, len);
    if (a >= len || el[a - 1] == '/') {
        *s = el + len;
        *n = 0;
        return true;
    }
    size_t b = len;
    while (b > a && el[b - 1] != '<')
        b--;
    if (b <= a + 1)
        return false;
    *s = el + a + 1;
    *n = (b - 1) - (a + 1);
    return true;
}

#endif
