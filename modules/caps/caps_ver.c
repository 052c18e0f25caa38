/* XEP-0115 §5.1: the verification string of a disco#info answer, and its
 * digest, for the server's own caps and to check what clients announce. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caps.h"

/* A growing string; on OOM it turns NULL and stays so. */
typedef struct caps_buf {
    char *p;
    size_t len, cap;
} caps_buf;

static void caps_put(caps_buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (!b->p && b->cap)
        return; /* failed earlier */
    if (b->len + n + 2 > b->cap) {
        size_t cap = (b->cap ? b->cap : 256);
        while (cap < b->len + n + 2)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            free(b->p);
            b->p = NULL;
            b->cap = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s ? s : "", n);
    b->len += n;
    b->p[b->len++] = '<';
    b->p[b->len] = '\0';
}

static int caps_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Children of parent named name (in ns) as an array, NULL-terminated. */
static xmppd_stanza **caps_children(const xmppd_stanza *parent, const char *name, const char *ns,
                                    size_t *n_r)
{
    size_t n = 0;
    for (xmppd_stanza *c = xmppd_stanza_first(parent); c; c = xmppd_stanza_next(c))
        n += strcmp(xmppd_stanza_name(c), name) == 0 && (!ns || strcmp(xmppd_stanza_ns(c), ns) == 0);
    xmppd_stanza **v = calloc(n + 1, sizeof(*v));
    size_t i = 0;
    for (xmppd_stanza *c = xmppd_stanza_first(parent); c && v; c = xmppd_stanza_next(c))
        if (strcmp(xmppd_stanza_name(c), name) == 0 && (!ns || strcmp(xmppd_stanza_ns(c), ns) == 0))
            v[i++] = c;
    *n_r = v ? n : 0;
    return v;
}

static const char *caps_attr(const xmppd_stanza *s, const char *name)
{
    const char *v = xmppd_stanza_attr(s, name);
    return v ? v : "";
}

static int caps_cmp_identity(const void *a, const void *b)
{
    const xmppd_stanza *x = *(xmppd_stanza *const *)a, *y = *(xmppd_stanza *const *)b;
    static const char *const keys[] = { "category", "type", "xml:lang", "name" };
    for (size_t i = 0; i < 4; i++) {
        int c = strcmp(caps_attr(x, keys[i]), caps_attr(y, keys[i]));
        if (c)
            return c;
    }
    return 0;
}

/* The FORM_TYPE value of a form, or NULL. */
static const char *caps_form_type(const xmppd_stanza *x)
{
    for (xmppd_stanza *f = xmppd_stanza_first(x); f; f = xmppd_stanza_next(f))
        if (strcmp(caps_attr(f, "var"), "FORM_TYPE") == 0)
            return xmppd_stanza_child_text(f, "value", NULL);
    return NULL;
}

static int caps_cmp_form(const void *a, const void *b)
{
    const char *x = caps_form_type(*(xmppd_stanza *const *)a);
    const char *y = caps_form_type(*(xmppd_stanza *const *)b);
    return strcmp(x ? x : "", y ? y : "");
}

static int caps_cmp_field(const void *a, const void *b)
{
    return strcmp(caps_attr(*(xmppd_stanza *const *)a, "var"),
                  caps_attr(*(xmppd_stanza *const *)b, "var"));
}

/* field var, then its values sorted. */
static void caps_put_field(caps_buf *b, const xmppd_stanza *field)
{
    size_t n;
    xmppd_stanza **values = caps_children(field, "value", NULL, &n);
    const char **texts = values ? calloc(n + 1, sizeof(*texts)) : NULL;
    caps_put(b, caps_attr(field, "var"));
    for (size_t i = 0; texts && i < n; i++)
        texts[i] = xmppd_stanza_text(values[i]);
    if (texts)
        qsort(texts, n, sizeof(*texts), caps_cmp_str);
    for (size_t i = 0; texts && i < n; i++)
        caps_put(b, texts[i]);
    free(texts);
    free(values);
}

static void caps_put_form(caps_buf *b, const xmppd_stanza *x)
{
    size_t n;
    xmppd_stanza **fields = caps_children(x, "field", NULL, &n);
    caps_put(b, caps_form_type(x));
    if (!fields)
        return;
    qsort(fields, n, sizeof(*fields), caps_cmp_field);
    for (size_t i = 0; i < n; i++)
        if (strcmp(caps_attr(fields[i], "var"), "FORM_TYPE") != 0)
            caps_put_field(b, fields[i]);
    free(fields);
}

/* The string S of XEP-0115 §5.1 for a disco#info <query/>; malloc'd. */
char *caps_string(const xmppd_stanza *q)
{
    caps_buf b = { 0 };
    size_t n_id, n_feat, n_form;
    xmppd_stanza **ids = caps_children(q, "identity", NULL, &n_id);
    xmppd_stanza **feats = caps_children(q, "feature", NULL, &n_feat);
    xmppd_stanza **forms = caps_children(q, "x", CAPS_DATA_NS, &n_form);
    const char **vars = calloc(n_feat + 1, sizeof(*vars));
    if (ids && feats && forms && vars) {
        qsort(ids, n_id, sizeof(*ids), caps_cmp_identity);
        for (size_t i = 0; i < n_id; i++) {
            char one[1024];
            snprintf(one, sizeof(one), "%s/%s/%s/%s", caps_attr(ids[i], "category"),
                     caps_attr(ids[i], "type"), caps_attr(ids[i], "xml:lang"),
                     caps_attr(ids[i], "name"));
            caps_put(&b, one);
        }
        for (size_t i = 0; i < n_feat; i++)
            vars[i] = caps_attr(feats[i], "var");
        qsort(vars, n_feat, sizeof(*vars), caps_cmp_str);
        for (size_t i = 0; i < n_feat; i++)
            caps_put(&b, vars[i]);
        qsort(forms, n_form, sizeof(*forms), caps_cmp_form);
        for (size_t i = 0; i < n_form; i++)
            if (caps_form_type(forms[i]))
                caps_put_form(&b, forms[i]);
    } else {
        free(b.p);
        b.p = NULL;
    }
    free(ids);
    free(feats);
    free(forms);
    free(vars);
    return b.p ? b.p : (b.cap ? NULL : strdup(""));
}

/* base64(SHA-1(S)), malloc'd; NULL on failure. */
/* base64(H(s)) for a XEP-0115 hash name (the IANA names "sha-1",
 * "sha-256", "sha-512"), malloc'd; NULL for another hash or on failure. */
char *caps_digest(const char *s, const char *hash)
{
    const EVP_MD *md = NULL;
    if (strcmp(hash, "sha-1") == 0)
        md = EVP_sha1();
    else if (strcmp(hash, "sha-256") == 0)
        md = EVP_sha256();
    else if (strcmp(hash, "sha-512") == 0)
        md = EVP_sha512();
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!md || EVP_Digest(s, strlen(s), out, &len, md, NULL) != 1)
        return NULL;
    return xmppd_base64_encode(out, len);
}
