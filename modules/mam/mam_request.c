/* Reading a MAM query. Every field a client may send is checked here, so
 * the engine only runs queries that make sense. */
#include <stdlib.h>
#include <string.h>

#include <xmppd/jid.h>

#include "mam_request.h"
#include "mam_time.h"

void mam_request_clear(mam_request *r)
{
    free(r->queryid);
    free(r->with);
    free(r->after_id);
    free(r->before_id);
    for (size_t i = 0; i < r->n_ids; i++)
        free(r->ids[i]);
    free(r->ids);
    xmppd_rsm_clear(&r->rsm);
    memset(r, 0, sizeof *r);
}

static int fail(mam_request *r, const char *cond, const char *text, const char **cond_r,
                const char **text_r)
{
    mam_request_clear(r);
    *cond_r = cond;
    *text_r = text;
    return -1;
}

/* A non-empty id field value copied into *out; NULL text when fine. */
static const char *take_id(const xmppd_form *f, const char *var, char **out)
{
    const char *v = xmppd_form_value(f, var);
    if (!v)
        return NULL;
    if (!*v)
        return "an id field is empty";
    if (!(*out = strdup(v)))
        return "out of memory";
    return NULL;
}

static const char *take_time(const xmppd_form *f, const char *var, bool *has, int64_t *ms)
{
    const char *v = xmppd_form_value(f, var);
    if (!v)
        return NULL;
    if (mam_time_parse(v, ms) != 0)
        return "'start' and 'end' take XEP-0082 date-times (e.g. 2024-05-01T12:00:00Z)";
    *has = true;
    return NULL;
}

/* The form's fields into r. NULL, or the condition (text in *text_r). */
static const char *read_form(const xmppd_form *f, mam_request *r, const char **text_r)
{
    static const char *const known[] = { "FORM_TYPE", "with", "start", "end", "after-id",
                                         "before-id", "ids", NULL };
    const char *t = xmppd_form_type(f);
    const char *ft = xmppd_form_form_type(f);
    if (strcmp(t, "submit") != 0 && strcmp(t, "form") != 0)
        return *text_r = "the query form must be of type 'submit'", "bad-request";
    if (xmppd_form_has(f, "FORM_TYPE") && (!ft || strcmp(ft, MAM_NS) != 0))
        return *text_r = "the form's FORM_TYPE must be urn:xmpp:mam:2", "bad-request";
    for (size_t i = 0; i < xmppd_form_nfields(f); i++) {
        const char *var = xmppd_form_field_var(f, i), *const *k = known;
        while (*k && strcmp(*k, var) != 0)
            k++;
        if (!*k)
            return *text_r = "unknown field in the query form", "feature-not-implemented";
    }
    const char *w = xmppd_form_value(f, "with");
    if (w && *w) {
        xmppd_jid *j = xmppd_jid_parse(w);
        if (!j)
            return *text_r = "'with' is not a valid JID", "bad-request";
        r->with = strdup(j->full);
        xmppd_jid_free(j);
        if (!r->with)
            return *text_r = "out of memory", "internal-server-error";
    }
    const char *why;
    if ((why = take_time(f, "start", &r->has_start, &r->start_ms)) ||
        (why = take_time(f, "end", &r->has_end, &r->end_ms)) ||
        (why = take_id(f, "after-id", &r->after_id)) || (why = take_id(f, "before-id", &r->before_id)))
        return *text_r = why, "bad-request";
    size_t n;
    const char *const *ids = xmppd_form_values(f, "ids", &n);
    if (!ids)
        return NULL;
    if (n > MAM_MAX_IDS)
        return *text_r = "too many ids in one query", "policy-violation";
    if (!(r->ids = calloc(n ? n : 1, sizeof *r->ids)))
        return *text_r = "out of memory", "internal-server-error";
    for (; r->n_ids < n; r->n_ids++) {
        if (!*ids[r->n_ids])
            return *text_r = "an id field is empty", "bad-request";
        if (!(r->ids[r->n_ids] = strdup(ids[r->n_ids])))
            return *text_r = "out of memory", "internal-server-error";
    }
    return NULL;
}

int mam_request_parse(const xmppd_stanza *query, mam_request *out, const char **cond_r,
                      const char **text_r)
{
    memset(out, 0, sizeof *out);
    const char *qid = xmppd_stanza_attr(query, "queryid");
    if (qid && !(out->queryid = strdup(qid)))
        return fail(out, "internal-server-error", NULL, cond_r, text_r);
    const char *why = NULL;
    if (xmppd_rsm_parse(query, &out->rsm, &why) != 0)
        return fail(out, "bad-request", why, cond_r, text_r);
    if (out->rsm.index >= 0)
        return fail(out, "feature-not-implemented", "paging by index is not supported", cond_r, text_r);
    out->flip = xmppd_stanza_child(query, "flip-page", MAM_NS) != NULL;
    xmppd_stanza *x = xmppd_stanza_child(query, "x", XMPPD_NS_DATA);
    if (!x)
        return 0;
    xmppd_form *f = xmppd_form_parse(x, &why);
    if (!f)
        return fail(out, "bad-request", why, cond_r, text_r);
    const char *text = NULL, *cond = read_form(f, out, &text);
    xmppd_form_free(f);
    if (cond)
        return fail(out, cond, text, cond_r, text_r);
    return 0;
}
