/* libFuzzer target: data forms (XEP-0004) and RSM (XEP-0059) parsing over
 * any element the stanza parser accepts. Besides memory safety, checks
 * what callers rely on: every field reported has a var, values lists end
 * with NULL and match their count, RSM after/before never both set, and a
 * form built from the parsed values parses back to the same values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xmppd/forms.h"

static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

static void check_form(const xmppd_stanza *x)
{
    xmppd_form *f = xmppd_form_parse(x, NULL);
    if (!f)
        return;
    xmppd_stanza *copy = xmppd_form_new(xmppd_form_type(f), NULL, NULL);
    check(copy != NULL);
    for (size_t i = 0; i < xmppd_form_nfields(f); i++) {
        const char *var = xmppd_form_field_var(f, i);
        check(var != NULL && xmppd_form_has(f, var));
        size_t n;
        const char *const *v = xmppd_form_values(f, var, &n);
        check(v != NULL && v[n] == NULL && n <= XMPPD_FORM_MAX_VALUES);
        xmppd_stanza *field = xmppd_form_add_field(copy, var, xmppd_form_field_type(f, i), NULL, NULL);
        check(field != NULL);
        for (size_t k = 0; k < n; k++)
            check(xmppd_form_add_value(field, v[k]) == 0);
    }
    xmppd_form *again = xmppd_form_parse(copy, NULL);
    check(again != NULL && xmppd_form_nfields(again) == xmppd_form_nfields(f));
    for (size_t i = 0; i < xmppd_form_nfields(f); i++) {
        const char *var = xmppd_form_field_var(f, i);
        size_t n1, n2;
        const char *const *a = xmppd_form_values(f, var, &n1);
        const char *const *b = xmppd_form_values(again, var, &n2);
        check(n1 == n2);
        for (size_t k = 0; k < n1; k++)
            check(strcmp(a[k], b[k]) == 0);
    }
    xmppd_form_free(again);
    xmppd_stanza_unref(copy);
    xmppd_form_free(f);
}

static void walk(const xmppd_stanza *el, int depth)
{
    if (depth > 8)
        return;
    check_form(el);
    xmppd_rsm r;
    if (xmppd_rsm_parse(el, &r, NULL) == 0) {
        check(!(r.after && r.before));
        check(r.max >= -1 && r.index >= -1);
        xmppd_rsm_clear(&r);
    }
    for (xmppd_stanza *c = xmppd_stanza_first(el); c; c = xmppd_stanza_next(c))
        walk(c, depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xmppd_stanza *el = xmppd_stanza_from_string((const char *)data, size, XMPPD_NS_CLIENT);
    if (el) {
        walk(el, 0);
        xmppd_stanza_unref(el);
    }
    return 0;
}
