/* Data forms (XEP-0004) and result set management (XEP-0059):
 * api/xmppd/forms.h. A parsed form copies its vars and values into one
 * list, so callers never walk the tree and every field is checked once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmppd/forms.h"

#define API XMPPD_EXPORT

typedef struct form_field {
    char *var;
    char *type;            /* NULL when absent */
    char **values;         /* NULL-terminated */
    size_t n_values;
} form_field;

struct xmppd_form {
    char *type;
    form_field *fields;
    size_t n_fields;
};

static void field_clear(form_field *f)
{
    free(f->var);
    free(f->type);
    for (size_t i = 0; i < f->n_values; i++)
        free(f->values[i]);
    free(f->values);
}

API void xmppd_form_free(xmppd_form *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_fields; i++)
        field_clear(&f->fields[i]);
    free(f->fields);
    free(f->type);
    free(f);
}

static bool is_data(const xmppd_stanza *el, const char *name)
{
    return strcmp(xmppd_stanza_name(el), name) == 0 &&
           strcmp(xmppd_stanza_ns(el), XMPPD_NS_DATA) == 0;
}

static const form_field *field_find(const xmppd_form *f, const char *var)
{
    for (size_t i = 0; i < f->n_fields; i++)
        if (strcmp(f->fields[i].var, var) == 0)
            return &f->fields[i];
    return NULL;
}

/* Copies the <value/> children of el into fd. 0, or -1 with *why. */
static int field_values(const xmppd_stanza *el, form_field *fd, const char **why)
{
    size_t n = 0;
    for (xmppd_stanza *v = xmppd_stanza_first(el); v; v = xmppd_stanza_next(v))
        if (is_data(v, "value"))
            n++;
    if (n > XMPPD_FORM_MAX_VALUES) {
        *why = "too many values in a field";
        return -1;
    }
    if (!(fd->values = calloc(n + 1, sizeof(char *)))) {
        *why = "out of memory";
        return -1;
    }
    for (xmppd_stanza *v = xmppd_stanza_first(el); v; v = xmppd_stanza_next(v)) {
        if (!is_data(v, "value"))
            continue;
        if (!(fd->values[fd->n_values] = strdup(xmppd_stanza_text(v)))) {
            *why = "out of memory";
            return -1;
        }
        fd->n_values++;
    }
    return 0;
}

API xmppd_form *xmppd_form_parse(const xmppd_stanza *x, const char **why_r)
{
    static const char *const types[] = { "form", "submit", "cancel", "result", NULL };
    const char *dummy, **why = why_r ? why_r : &dummy;
    if (!is_data(x, "x")) {
        *why = "not a jabber:x:data form";
        return NULL;
    }
    const char *type = xmppd_stanza_attr(x, "type");
    const char *const *t = types;
    while (*t && (!type || strcmp(*t, type) != 0))
        t++;
    if (!*t) {
        *why = "form type must be form, submit, cancel or result";
        return NULL;
    }
    size_t n = 0;
    for (xmppd_stanza *c = xmppd_stanza_first(x); c; c = xmppd_stanza_next(c))
        if (is_data(c, "field"))
            n++;
    if (n > XMPPD_FORM_MAX_FIELDS) {
        *why = "too many fields";
        return NULL;
    }
    xmppd_form *f = calloc(1, sizeof(*f));
    if (!f || !(f->type = strdup(type)) || !(f->fields = calloc(n ? n : 1, sizeof(form_field)))) {
        xmppd_form_free(f);
        *why = "out of memory";
        return NULL;
    }
    for (xmppd_stanza *c = xmppd_stanza_first(x); c; c = xmppd_stanza_next(c)) {
        if (!is_data(c, "field"))
            continue;
        const char *var = xmppd_stanza_attr(c, "var");
        const char *ftype = xmppd_stanza_attr(c, "type");
        if (!var) {
            if (ftype && strcmp(ftype, "fixed") == 0)
                continue; /* XEP-0004 §3.2: fixed fields are labels, var optional */
            *why = "a field has no var";
            goto bad;
        }
        if (field_find(f, var)) {
            *why = "a field var appears twice";
            goto bad;
        }
        form_field *fd = &f->fields[f->n_fields++];
        if (!(fd->var = strdup(var)) || (ftype && !(fd->type = strdup(ftype)))) {
            *why = "out of memory";
            goto bad;
        }
        if (field_values(c, fd, why) < 0)
            goto bad;
    }
    return f;
bad:
    xmppd_form_free(f);
    return NULL;
}

API const char *xmppd_form_type(const xmppd_form *f)
{
    return f->type;
}

API const char *xmppd_form_form_type(const xmppd_form *f)
{
    return xmppd_form_value(f, "FORM_TYPE");
}

API size_t xmppd_form_nfields(const xmppd_form *f)
{
    return f->n_fields;
}

API const char *xmppd_form_field_var(const xmppd_form *f, size_t i)
{
    return i < f->n_fields ? f->fields[i].var : NULL;
}

API const char *xmppd_form_field_type(const xmppd_form *f, size_t i)
{
    return i < f->n_fields ? f->fields[i].type : NULL;
}

API bool xmppd_form_has(const xmppd_form *f, const char *var)
{
    return field_find(f, var) != NULL;
}

API const char *xmppd_form_value(const xmppd_form *f, const char *var)
{
    const form_field *fd = field_find(f, var);
    if (!fd)
        return NULL;
    return fd->n_values ? fd->values[0] : "";
}

API const char *const *xmppd_form_values(const xmppd_form *f, const char *var, size_t *n_r)
{
    const form_field *fd = field_find(f, var);
    if (n_r)
        *n_r = fd ? fd->n_values : 0;
    return fd ? (const char *const *)fd->values : NULL;
}

API int xmppd_form_bool(const xmppd_form *f, const char *var, bool *out)
{
    const char *v = xmppd_form_value(f, var);
    if (!v || !*v)
        return 1;
    if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0) {
        *out = false;
        return 0;
    }
    return -1;
}

/* ---- building ------------------------------------------------------------- */

static int add_text_child(xmppd_stanza *parent, const char *name, const char *text)
{
    xmppd_stanza *el = xmppd_stanza_tag(parent, name, NULL);
    return el && xmppd_stanza_set_text(el, text) == 0 ? 0 : -1;
}

API xmppd_stanza *xmppd_form_new(const char *type, const char *form_type, const char *title)
{
    xmppd_stanza *x = xmppd_stanza_new("x", XMPPD_NS_DATA);
    if (!x || xmppd_stanza_set_attr(x, "type", type) < 0 ||
        (title && add_text_child(x, "title", title) < 0) ||
        (form_type && !xmppd_form_add_field(x, "FORM_TYPE", "hidden", NULL, form_type))) {
        xmppd_stanza_unref(x);
        return NULL;
    }
    return x;
}

API xmppd_stanza *xmppd_form_add_field(xmppd_stanza *x, const char *var, const char *type,
                                       const char *label, const char *value)
{
    xmppd_stanza *field = xmppd_stanza_tag(x, "field", NULL);
    if (!field || (var && xmppd_stanza_set_attr(field, "var", var) < 0) ||
        (type && xmppd_stanza_set_attr(field, "type", type) < 0) ||
        (label && xmppd_stanza_set_attr(field, "label", label) < 0) ||
        (value && xmppd_form_add_value(field, value) < 0))
        return NULL;
    return field;
}

API int xmppd_form_add_value(xmppd_stanza *field, const char *value)
{
    return add_text_child(field, "value", value);
}

API int xmppd_form_add_option(xmppd_stanza *field, const char *label, const char *value)
{
    xmppd_stanza *opt = xmppd_stanza_tag(field, "option", NULL);
    if (!opt || (label && xmppd_stanza_set_attr(opt, "label", label) < 0))
        return -1;
    return add_text_child(opt, "value", value);
}

/* ---- result set management --------------------------------------------------- */

API void xmppd_rsm_clear(xmppd_rsm *r)
{
    free(r->after);
    free(r->before);
    memset(r, 0, sizeof(*r));
    r->max = r->index = -1;
}

/* A non-negative decimal integer below 2^31. */
static int parse_count(const char *s, long *out)
{
    if (!*s || strlen(s) > 10)
        return -1;
    long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
    }
    if (v > 0x7fffffffL)
        return -1;
    *out = v;
    return 0;
}

API int xmppd_rsm_parse(const xmppd_stanza *parent, xmppd_rsm *out, const char **why_r)
{
    const char *dummy, **why = why_r ? why_r : &dummy;
    memset(out, 0, sizeof(*out));
    out->max = out->index = -1;
    const xmppd_stanza *set = xmppd_stanza_child(parent, "set", XMPPD_NS_RSM);
    if (!set)
        return 0;
    out->present = true;
    bool seen_max = false, seen_index = false;
    for (xmppd_stanza *c = xmppd_stanza_first(set); c; c = xmppd_stanza_next(c)) {
        if (strcmp(xmppd_stanza_ns(c), XMPPD_NS_RSM) != 0)
            continue;
        const char *name = xmppd_stanza_name(c), *text = xmppd_stanza_text(c);
        if (strcmp(name, "max") == 0 || strcmp(name, "index") == 0) {
            bool *seen = name[0] == 'm' ? &seen_max : &seen_index;
            if (*seen || parse_count(text, name[0] == 'm' ? &out->max : &out->index) < 0) {
                *why = *seen ? "an RSM element appears twice" : "RSM max and index must be non-negative integers";
                goto bad;
            }
            *seen = true;
        } else if (strcmp(name, "after") == 0 || strcmp(name, "before") == 0) {
            char **slot = name[0] == 'a' ? &out->after : &out->before;
            if (*slot) {
                *why = "an RSM element appears twice";
                goto bad;
            }
            if (name[0] == 'a' && !*text) {
                *why = "RSM after needs an id";
                goto bad;
            }
            if (!(*slot = strdup(text))) {
                *why = "out of memory";
                goto bad;
            }
        }
    }
    if (out->after && out->before) {
        *why = "RSM after and before cannot both be given";
        goto bad;
    }
    return 0;
bad:
    xmppd_rsm_clear(out);
    return -1;
}

API xmppd_stanza *xmppd_rsm_answer(xmppd_stanza *parent, const char *first, long first_index,
                                   const char *last, long count)
{
    xmppd_stanza *set = xmppd_stanza_tag(parent, "set", XMPPD_NS_RSM);
    if (!set)
        return NULL;
    if (first) {
        xmppd_stanza *f = xmppd_stanza_tag(set, "first", NULL);
        char num[24];
        if (!f || xmppd_stanza_set_text(f, first) < 0)
            return NULL;
        if (first_index >= 0) {
            snprintf(num, sizeof(num), "%ld", first_index);
            if (xmppd_stanza_set_attr(f, "index", num) < 0)
                return NULL;
        }
        if (add_text_child(set, "last", last ? last : first) < 0)
            return NULL;
    }
    if (count >= 0) {
        char num[24];
        snprintf(num, sizeof(num), "%ld", count);
        if (add_text_child(set, "count", num) < 0)
            return NULL;
    }
    return set;
}
