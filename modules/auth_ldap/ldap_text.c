/* auth_ldap: templates and escaping (ldap_text.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ldap_text.h"

static const char *const lt_names[LT_VAR_COUNT] = { "user", "domain", "jid" };

/* The variable at p (just after '%'): its index and the length of its
 * name, or -1 (unknown: *len_r covers what was read, for the message). */
static int lt_var_at(const char *p, size_t *len_r)
{
    if (*p == 'u' || *p == 'd') {
        *len_r = 1;
        return *p == 'u' ? LT_USER : LT_DOMAIN;
    }
    if (*p != '{') {
        *len_r = *p ? 1 : 0;
        return -1;
    }
    const char *end = strchr(p, '}');
    if (!end) {
        *len_r = strlen(p);
        return -1;
    }
    *len_r = (size_t)(end - p) + 1;
    for (int v = 0; v < LT_VAR_COUNT; v++)
        if (strlen(lt_names[v]) == (size_t)(end - p - 1) && strncmp(p + 1, lt_names[v], (size_t)(end - p - 1)) == 0)
            return v;
    return -1;
}

/* A filter is one "( ... )" with balanced parentheses (escapes are \XX,
 * so a literal parenthesis in a value is never a bare one). */
static bool lt_filter_shape(const char *text)
{
    int depth = 0;
    size_t n = strlen(text);
    if (n < 2 || text[0] != '(' || text[n - 1] != ')')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '(')
            depth++;
        else if (text[i] == ')' && --depth < 0)
            return false;
        if (depth == 0 && i + 1 < n)
            return false; /* "(a)(b)": two expressions */
    }
    return depth == 0;
}

int lt_compile(const char *text, unsigned allowed, enum lt_escape esc, lt_template *t, char *err,
               size_t errlen)
{
    memset(t, 0, sizeof *t);
    for (const char *p = text; *p; p++) {
        if (*p != '%')
            continue;
        if (p[1] == '%') {
            p++;
            continue;
        }
        size_t len;
        int v = lt_var_at(p + 1, &len);
        if (v < 0) {
            snprintf(err, errlen, "unknown variable %%%.*s (use %%u, %%d, %%{user}, %%{domain}, %%{jid} or %%%%)",
                     (int)(len > 40 ? 40 : len), p + 1);
            return -1;
        }
        if (!(allowed & LT_BIT(v))) {
            snprintf(err, errlen, "variable %%{%s} cannot be used here", lt_names[v]);
            return -1;
        }
        t->used |= LT_BIT(v);
        p += len;
    }
    if (esc == LT_FILTER && !lt_filter_shape(text)) {
        snprintf(err, errlen, "\"%s\" is not one parenthesised LDAP filter (RFC 4515)", text);
        return -1;
    }
    t->esc = esc;
    if (!(t->text = strdup(text))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

void lt_free(lt_template *t)
{
    free(t->text);
    t->text = NULL;
}

/* ---- escaping ---- */

/* A growing string; ok false once an allocation failed. */
typedef struct lt_buf {
    char *s;
    size_t len, cap;
    bool ok;
} lt_buf;

static void lt_put(lt_buf *b, const char *s, size_t n)
{
    if (!b->ok)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->ok = false;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void lt_put_hex(lt_buf *b, unsigned char c)
{
    char hex[4];
    snprintf(hex, sizeof hex, "\\%02x", c);
    lt_put(b, hex, 3);
}

/* RFC 4515 §3: * ( ) \ NUL must be escaped; control bytes are escaped too
 * (allowed: any octet may be written as \XX). UTF-8 stays as it is. */
static void lt_put_filter(lt_buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '*' || *p == '(' || *p == ')' || *p == '\\' || *p < 0x20 || *p == 0x7f)
            lt_put_hex(b, *p);
        else
            lt_put(b, (const char *)p, 1);
    }
}

/* RFC 4514 §2.4: " + , ; < > \ escaped anywhere (and =, which §3 allows
 * escaping), # and space at the start, space at the end; control bytes as
 * \XX (a hexpair). */
static void lt_put_dn(lt_buf *b, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            lt_put_hex(b, c);
            continue;
        }
        if (strchr("\"+,;<>\\=", c) || (i == 0 && (c == '#' || c == ' ')) || (i == n - 1 && c == ' '))
            lt_put(b, "\\", 1);
        lt_put(b, (const char *)&s[i], 1);
    }
}

static void lt_put_value(lt_buf *b, const char *s, enum lt_escape esc)
{
    if (esc == LT_FILTER)
        lt_put_filter(b, s);
    else if (esc == LT_DN)
        lt_put_dn(b, s);
    else
        lt_put(b, s, strlen(s));
}

static char *lt_done(lt_buf *b)
{
    if (b->ok && !b->s)
        lt_put(b, "", 0);
    if (!b->ok) {
        free(b->s);
        return NULL;
    }
    return b->s;
}

char *lt_escape_filter(const char *s)
{
    lt_buf b = { .ok = true };
    lt_put_filter(&b, s);
    return lt_done(&b);
}

char *lt_escape_dn(const char *s)
{
    lt_buf b = { .ok = true };
    lt_put_dn(&b, s);
    return lt_done(&b);
}

/* ---- expansion ---- */

static void lt_put_var(lt_buf *b, int v, const lt_values *vals, enum lt_escape esc)
{
    const char *user = vals->user ? vals->user : "";
    const char *domain = vals->domain ? vals->domain : "";
    switch (v) {
    case LT_USER:
        if (vals->any_user)
            lt_put(b, "*", 1);
        else
            lt_put_value(b, user, esc);
        break;
    case LT_DOMAIN:
        lt_put_value(b, domain, esc);
        break;
    case LT_JID:
        if (vals->any_user)
            lt_put(b, "*", 1);
        else
            lt_put_value(b, user, esc);
        lt_put(b, "@", 1);
        lt_put_value(b, domain, esc);
        break;
    default:
        break;
    }
}

char *lt_expand(const lt_template *t, const lt_values *v)
{
    lt_buf b = { .ok = true };
    for (const char *p = t->text; *p; p++) {
        if (*p != '%') {
            lt_put(&b, p, 1);
            continue;
        }
        if (p[1] == '%') {
            lt_put(&b, "%", 1);
            p++;
            continue;
        }
        size_t len;
        int var = lt_var_at(p + 1, &len); /* checked by lt_compile */
        lt_put_var(&b, var, v, t->esc);
        p += len;
    }
    return lt_done(&b);
}

bool lt_account_name(const char *value, char *out, size_t outlen)
{
    const char *start = value, *end = value + strlen(value);
    const char *at = strchr(start, '@');
    if (at)
        end = at;
    size_t n = (size_t)(end - start);
    if (n == 0 || n + 1 > outlen)
        return false;
    memcpy(out, start, n);
    out[n] = '\0';
    return true;
}

bool lt_ad_account_disabled(const char *uac)
{
    char *end = NULL;
    unsigned long long v = strtoull(uac, &end, 10);
    return end != uac && (v & 0x2u) != 0;
}

bool lt_ad_bind_disabled(const char *diag)
{
    static const char *const codes[] = { "533", "701", "775" };
    const char *p = diag ? strstr(diag, "data ") : NULL;
    if (!p)
        return false;
    p += 5;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strncmp(p, codes[i], 3) == 0 && !isxdigit((unsigned char)p[3]))
            return true;
    return false;
}
