/* Archiving preferences: parsing, serialising, deciding. */
#include <stdlib.h>
#include <string.h>

#include "mam_prefs.h"
#include "mam_request.h"

static const char *const g_defaults[] = { "always", "never", "roster" };

int mam_default_parse(const char *s)
{
    for (int i = 0; s && i < 3; i++)
        if (strcmp(s, g_defaults[i]) == 0)
            return i;
    return -1;
}

const char *mam_default_name(enum mam_default d)
{
    return (unsigned)d < 3 ? g_defaults[d] : NULL;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void mam_prefs_clear(mam_prefs *p)
{
    free_list(p->always, p->n_always);
    free_list(p->never, p->n_never);
    memset(p, 0, sizeof *p);
}

/* Appends a prepared copy of jid to *v (no duplicates). 0, -1 not a JID,
 * -2 list full or OOM. */
static int list_add(char ***v, size_t *n, const char *jid)
{
    xmppd_jid *j = xmppd_jid_parse(jid);
    if (!j)
        return -1;
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*v)[i], j->full) == 0) {
            xmppd_jid_free(j);
            return 0;
        }
    }
    char **nv = *n < MAM_PREFS_MAX_JIDS ? realloc(*v, (*n + 1) * sizeof *nv) : NULL;
    char *copy = nv ? strdup(j->full) : NULL;
    xmppd_jid_free(j);
    if (nv)
        *v = nv;
    if (!copy)
        return -2;
    (*v)[(*n)++] = copy;
    return 0;
}

static int read_list(const xmppd_stanza *prefs, const char *name, char ***v, size_t *n,
                     const char **cond_r, const char **text_r)
{
    const xmppd_stanza *l = xmppd_stanza_child(prefs, name, MAM_NS);
    for (const xmppd_stanza *c = l ? xmppd_stanza_first(l) : NULL; c; c = xmppd_stanza_next(c)) {
        if (strcmp(xmppd_stanza_name(c), "jid") != 0 || strcmp(xmppd_stanza_ns(c), MAM_NS) != 0)
            continue;
        int rc = list_add(v, n, xmppd_stanza_text(c));
        if (rc == -1) {
            *cond_r = "bad-request";
            *text_r = "a <jid/> of the preferences is not a JID";
            return -1;
        }
        if (rc == -2) {
            *cond_r = "policy-violation";
            *text_r = "too many JIDs in a preferences list";
            return -1;
        }
    }
    return 0;
}

int mam_prefs_parse(const xmppd_stanza *prefs, mam_prefs *out, const char **cond_r,
                    const char **text_r)
{
    memset(out, 0, sizeof *out);
    int d = mam_default_parse(xmppd_stanza_attr(prefs, "default"));
    if (d < 0) {
        *cond_r = "bad-request";
        *text_r = "'default' must be always, never or roster";
        return -1;
    }
    out->def = (enum mam_default)d;
    if (read_list(prefs, "always", &out->always, &out->n_always, cond_r, text_r) != 0 ||
        read_list(prefs, "never", &out->never, &out->n_never, cond_r, text_r) != 0) {
        mam_prefs_clear(out);
        return -1;
    }
    return 0;
}

static int xml_list(xmppd_stanza *prefs, const char *name, char *const *v, size_t n)
{
    xmppd_stanza *l = xmppd_stanza_tag(prefs, name, MAM_NS);
    for (size_t i = 0; l && i < n; i++) {
        xmppd_stanza *j = xmppd_stanza_tag(l, "jid", MAM_NS);
        if (!j || xmppd_stanza_set_text(j, v[i]) != 0)
            return -1;
    }
    return l ? 0 : -1;
}

xmppd_stanza *mam_prefs_xml(const mam_prefs *p)
{
    xmppd_stanza *x = xmppd_stanza_new("prefs", MAM_NS);
    if (!x || xmppd_stanza_set_attr(x, "default", mam_default_name(p->def)) != 0 ||
        xml_list(x, "always", p->always, p->n_always) != 0 ||
        xml_list(x, "never", p->never, p->n_never) != 0) {
        xmppd_stanza_unref(x);
        return NULL;
    }
    return x;
}

static json_t *json_list(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        if (json_array_append_new(a, json_string(v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

json_t *mam_prefs_json(const mam_prefs *p)
{
    return json_pack("{s:s, s:o*, s:o*}", "default", mam_default_name(p->def), "always",
                     json_list(p->always, p->n_always), "never", json_list(p->never, p->n_never));
}

static int json_to_list(const json_t *a, char ***v, size_t *n)
{
    size_t i;
    json_t *e;
    if (a && !json_is_array(a))
        return -1;
    json_array_foreach(a, i, e)
        if (!json_is_string(e) || list_add(v, n, json_string_value(e)) != 0)
            return -1;
    return 0;
}

int mam_prefs_from_json(const json_t *doc, mam_prefs *out)
{
    memset(out, 0, sizeof *out);
    int d = mam_default_parse(json_string_value(json_object_get(doc, "default")));
    if (d < 0)
        return -1;
    out->def = (enum mam_default)d;
    if (json_to_list(json_object_get(doc, "always"), &out->always, &out->n_always) != 0 ||
        json_to_list(json_object_get(doc, "never"), &out->never, &out->n_never) != 0) {
        mam_prefs_clear(out);
        return -1;
    }
    return 0;
}

/* Does peer match a list entry (XEP-0441 §2.3.1: an entry with a resource
 * compares the full JID, a bare one the peer's bare JID)? */
static bool list_has(char *const *v, size_t n, const xmppd_jid *peer)
{
    for (size_t i = 0; i < n; i++) {
        const char *want = strchr(v[i], '/') ? peer->full : peer->bare;
        if (strcmp(v[i], want) == 0)
            return true;
    }
    return false;
}

int mam_prefs_decide(const mam_prefs *p, const xmppd_jid *peer)
{
    if (list_has(p->never, p->n_never, peer))
        return 0;
    if (list_has(p->always, p->n_always, peer))
        return 1;
    return p->def == MAM_ALWAYS ? 1 : p->def == MAM_NEVER ? 0 : -1;
}
