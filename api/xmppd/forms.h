/* Data forms (XEP-0004) and result set management (XEP-0059): parsing what
 * an entity submits and building what a module answers. Shared by every
 * module that speaks forms (MAM queries, room configuration, ad-hoc
 * commands, publish-options) so each parses them the same way.
 *
 * Every function here is pure: usable from worker threads on trees the
 * caller owns. */
#ifndef XMPPD_FORMS_H
#define XMPPD_FORMS_H

#include <stdbool.h>
#include <stddef.h>
#include "stanza.h"

#define XMPPD_NS_DATA "jabber:x:data"
#define XMPPD_NS_RSM "http://jabber.org/protocol/rsm"

/* What a parsed form holds at most; more is refused as malformed. */
#define XMPPD_FORM_MAX_FIELDS 256
#define XMPPD_FORM_MAX_VALUES 1024 /* per field */

/* ---- reading a form ---------------------------------------------------- */

/* A parsed form: a copy of its fields and values, owned by the caller
 * (xmppd_form_free). */
typedef struct xmppd_form xmppd_form;

/* Parses x, an <x xmlns='jabber:x:data'/> element. NULL when it is not a
 * valid form, with a static reason in *why_r (may be NULL): another
 * element, a type other than form/submit/cancel/result, a field without
 * 'var' (fixed fields excepted), the same var twice, or more fields or
 * values than the limits above. Also NULL on OOM (*why_r "out of memory"). */
xmppd_form *xmppd_form_parse(const xmppd_stanza *x, const char **why_r);
void xmppd_form_free(xmppd_form *f); /* NULL is a no-op */

/* The form's type attribute: "form", "submit", "cancel" or "result". */
const char *xmppd_form_type(const xmppd_form *f);
/* The value of the hidden FORM_TYPE field, or NULL without one. */
const char *xmppd_form_form_type(const xmppd_form *f);

/* Fields in document order (FORM_TYPE included): count, then var and the
 * field's type attribute (NULL when absent) of field i. */
size_t xmppd_form_nfields(const xmppd_form *f);
const char *xmppd_form_field_var(const xmppd_form *f, size_t i);
const char *xmppd_form_field_type(const xmppd_form *f, size_t i);

/* Is the field var present (with or without values)? */
bool xmppd_form_has(const xmppd_form *f, const char *var);
/* First value of var: NULL when the field is absent, "" when it is present
 * without a value. Owned by f. */
const char *xmppd_form_value(const xmppd_form *f, const char *var);
/* Every value of var, NULL-terminated (a field without values: an empty
 * list), *n_r (may be NULL) their count; NULL when the field is absent.
 * Owned by f. */
const char *const *xmppd_form_values(const xmppd_form *f, const char *var, size_t *n_r);
/* A boolean field (XEP-0004 §3.3: "1"/"true", "0"/"false"): 0 and *out
 * set, 1 when absent or empty (*out untouched), -1 when not a boolean. */
int xmppd_form_bool(const xmppd_form *f, const char *var, bool *out);

/* ---- building a form ----------------------------------------------------- */

/* <x xmlns='jabber:x:data' type=type> with a hidden FORM_TYPE field when
 * form_type is not NULL, and a <title/> when title is not NULL. New tree,
 * one reference held by the caller; NULL on OOM. */
xmppd_stanza *xmppd_form_new(const char *type, const char *form_type, const char *title);
/* Appends <field var type label> to x and, when value is not NULL, one
 * <value/>. type and label may be NULL. Returns the field (borrowed from
 * x) or NULL on OOM. */
xmppd_stanza *xmppd_form_add_field(xmppd_stanza *x, const char *var, const char *type,
                                   const char *label, const char *value);
/* Appends one more <value/> (multi-value fields), or an <option> with its
 * label (may be NULL) and value (list fields). 0 or -1 on OOM. */
int xmppd_form_add_value(xmppd_stanza *field, const char *value);
int xmppd_form_add_option(xmppd_stanza *field, const char *label, const char *value);

/* ---- result set management (XEP-0059) ----------------------------------- */

typedef struct xmppd_rsm {
    bool present;  /* a <set/> was given */
    long max;      /* <max/>, or -1 when not given */
    long index;    /* <index/>, or -1 when not given */
    char *after;   /* <after/> text, or NULL when not given */
    char *before;  /* <before/> text; "" for an empty <before/> (the last
                      page), NULL when not given */
} xmppd_rsm;

/* Reads the <set xmlns=rsm/> child of parent into *out (cleared first;
 * present false when there is none). -1 when it is malformed (a max or
 * index that is not a non-negative integer, after or before empty where
 * a value is needed, after and before both given, an element twice),
 * with a static reason in *why_r (may be NULL); out then holds nothing
 * to free. After 0, free with xmppd_rsm_clear. */
int xmppd_rsm_parse(const xmppd_stanza *parent, xmppd_rsm *out, const char **why_r);
void xmppd_rsm_clear(xmppd_rsm *r);
/* Appends <set xmlns=rsm> to parent: <first index=first_index> (index
 * omitted when negative) and <last> when first is not NULL (an empty
 * page has neither), <count> when count >= 0. Returns the set (borrowed)
 * or NULL on OOM. */
xmppd_stanza *xmppd_rsm_answer(xmppd_stanza *parent, const char *first, long first_index,
                               const char *last, long count);

#endif
