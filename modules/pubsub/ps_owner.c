/* Owner use cases (XEP-0060 §8): create (with configure), configure,
 * default configuration, delete, purge, and managing subscriptions and
 * affiliations. */
#include <stdlib.h>
#include <string.h>

#include "ps_proto.h"

/* A submitted node_config form under parent's <x/>: 0 with *f_r (NULL for
 * a cancel form or none when optional), or -1 after answering. */
static int ps_config_form_of(ps_req *r, const xmppd_stanza *parent, bool optional, xmppd_form **f_r)
{
    const xmppd_stanza *x = parent ? xmppd_stanza_child(parent, "x", XMPPD_NS_DATA) : NULL;
    *f_r = NULL;
    if (!x) {
        if (optional)
            return 0;
        ps_req_error(r, "modify", "bad-request", NULL, "A data form is required");
        return -1;
    }
    const char *why = NULL;
    xmppd_form *f = xmppd_form_parse(x, &why);
    const char *ft = f ? xmppd_form_form_type(f) : NULL;
    if (f && strcmp(xmppd_form_type(f), "cancel") == 0) {
        xmppd_form_free(f);
        return 0;
    }
    if (f && (strcmp(xmppd_form_type(f), "submit") != 0 || (ft && strcmp(ft, PS_FORM_NODE_CONFIG) != 0))) {
        why = "Expected a submit form of FORM_TYPE " PS_FORM_NODE_CONFIG;
        xmppd_form_free(f);
        f = NULL;
    }
    if (!f) {
        ps_req_error(r, "modify", "bad-request", NULL, why);
        return -1;
    }
    *f_r = f;
    return 0;
}

/* The node of an owner request: exists and the requester owns it. NULL
 * after answering. */
static ps_node *ps_owned_node(ps_req *r, const xmppd_stanza *action)
{
    ps_node *n = ps_req_node(r, action);
    if (n && ps_affiliation_of(n, ps_req_bare(r)) != PS_AFF_OWNER) {
        ps_req_error(r, "auth", "forbidden", NULL, NULL);
        return NULL;
    }
    return n;
}

/* Drops items beyond a lowered max_items, oldest first. */
static void ps_trim(ps_req *r, ps_node *n)
{
    long max = ps_node_max_items(n);
    while (n->first && (long)n->n_items > max) {
        if (n->cfg.persist_items && r->svc->ops->drop_item)
            r->svc->ops->drop_item(r->svc, n, n->first->id, r->ctx);
        ps_item_remove(n, n->first);
    }
}

/* ---- create (§8.1) -------------------------------------------------------------------------- */

void ps_op_create(ps_req *r, const xmppd_stanza *pubsub, const xmppd_stanza *action)
{
    ps_service *s = r->svc;
    const char *name = xmppd_stanza_attr(action, "node");
    char instant[33];
    if (name && (!*name || strlen(name) > PS_NAME_MAX)) {
        ps_req_error(r, "modify", "bad-request", NULL, "Node names have 1 to 1023 bytes");
        return;
    }
    if (!s->ops->may_create || !s->ops->may_create(s, r->ev->from, r->ctx)) {
        ps_req_error(r, "auth", "forbidden", NULL, "You may not create nodes here");
        return;
    }
    if (name && ps_node_find(s, name)) {
        ps_req_error(r, "cancel", "conflict", NULL, "The node exists");
        return;
    }
    xmppd_form *f;
    if (ps_config_form_of(r, xmppd_stanza_child(pubsub, "configure", NULL), true, &f) < 0)
        return;
    ps_config cfg;
    ps_config_copy(&cfg, &s->defaults);
    const char *why = NULL;
    int rc = f ? ps_config_apply(&cfg, f, s->lim, s->pep, &why) : 0;
    xmppd_form_free(f);
    if (rc < 0) {
        ps_config_clear(&cfg);
        ps_req_form_error(r, rc, why);
        return;
    }
    if (!name) { /* instant node (§8.1.2) */
        ps_new_id(instant);
        name = instant;
    }
    ps_node *n = ps_req_create(r, name, &cfg);
    ps_config_clear(&cfg);
    if (!n)
        return;
    xmppd_stanza *ps = NULL;
    if (name == instant)
        ps_req_list(PS_NS, "create", n->name, &ps);
    ps_req_result(r, ps);
}

/* ---- configure (§8.2) and default (§8.3) -------------------------------------------------- */

static void ps_configure_get(ps_req *r, const xmppd_stanza *action)
{
    ps_node *n = ps_owned_node(r, action);
    if (!n)
        return;
    xmppd_stanza *ps;
    xmppd_stanza *c = ps_req_list(PS_NS_OWNER, "configure", n->name, &ps);
    xmppd_stanza *x = c ? ps_config_form(&n->cfg, "form", r->svc->lim, r->svc->pep) : NULL;
    if (x)
        xmppd_stanza_add(c, x);
    ps_req_result(r, ps);
}

static void ps_configure_set(ps_req *r, const xmppd_stanza *action)
{
    ps_node *n = ps_owned_node(r, action);
    xmppd_form *f;
    if (!n || ps_config_form_of(r, action, false, &f) < 0)
        return;
    if (!f) { /* cancelled (§8.2.6) */
        ps_req_result(r, NULL);
        return;
    }
    const char *why = NULL;
    int rc = ps_config_apply(&n->cfg, f, r->svc->lim, r->svc->pep, &why);
    xmppd_form_free(f);
    if (rc < 0) {
        ps_req_form_error(r, rc, why);
        return;
    }
    ps_trim(r, n);
    if (r->svc->ops->store_node)
        r->svc->ops->store_node(r->svc, n, r->ctx);
    ps_req_result(r, NULL);
    ps_notify_config(r->svc, n, r->ctx);
}

static void ps_default_get(ps_req *r)
{
    xmppd_stanza *ps;
    xmppd_stanza *d = ps_req_list(PS_NS_OWNER, "default", NULL, &ps);
    xmppd_stanza *x = d ? ps_config_form(&r->svc->defaults, "form", r->svc->lim, r->svc->pep) : NULL;
    if (x)
        xmppd_stanza_add(d, x);
    ps_req_result(r, ps);
}

/* ---- delete (§8.4) and purge (§8.5) --------------------------------------------------------- */

static void ps_delete(ps_req *r, const xmppd_stanza *action)
{
    ps_node *n = ps_owned_node(r, action);
    if (!n)
        return;
    ps_req_result(r, NULL);
    ps_notify_delete(r->svc, n, r->ctx);
    if (r->svc->ops->drop_node)
        r->svc->ops->drop_node(r->svc, n, r->ctx);
    if (r->svc->ops->changed)
        r->svc->ops->changed(r->svc, n, "delete", NULL, NULL, r->ctx);
    ps_node_remove(r->svc, n);
}

static void ps_purge(ps_req *r, const xmppd_stanza *action)
{
    ps_node *n = ps_owned_node(r, action);
    if (!n)
        return;
    while (n->first) {
        if (n->cfg.persist_items && r->svc->ops->drop_item)
            r->svc->ops->drop_item(r->svc, n, n->first->id, r->ctx);
        ps_item_remove(n, n->first);
    }
    ps_req_result(r, NULL);
    ps_notify_purge(r->svc, n, r->ctx);
    if (r->svc->ops->changed)
        r->svc->ops->changed(r->svc, n, "purge", NULL, NULL, r->ctx);
}

/* ---- subscriptions (§8.8) ------------------------------------------------------------------- */

static void ps_subscriptions_get(ps_req *r, const xmppd_stanza *action)
{
    ps_node *n = ps_owned_node(r, action);
    if (!n)
        return;
    xmppd_stanza *ps;
    xmppd_stanza *list = ps_req_list(PS_NS_OWNER, "subscriptions", n->name, &ps);
    for (const ps_sub *sub = n->subs; list && sub; sub = sub->next) {
        xmppd_stanza *el = xmppd_stanza_tag(list, "subscription", NULL);
        if (el) {
            xmppd_stanza_set_attr(el, "jid", sub->jid);
            xmppd_stanza_set_attr(el, "subid", sub->subid);
            xmppd_stanza_set_attr(el, "subscription", "subscribed");
        }
    }
    ps_req_result(r, ps);
}

/* Each <subscription jid subscription='subscribed|none'/> (§8.8.2); the
 * whole request is checked before anything changes. */
static void ps_subscriptions_set(ps_req *r, const xmppd_stanza *action)
{
    ps_node *n = ps_owned_node(r, action);
    if (!n)
        return;
    for (xmppd_stanza *c = xmppd_stanza_first(action); c; c = xmppd_stanza_next(c)) {
        const char *jid = xmppd_stanza_attr(c, "jid"), *state = xmppd_stanza_attr(c, "subscription");
        xmppd_jid *j = jid ? xmppd_jid_parse(jid) : NULL;
        bool ok = j && state && (strcmp(state, "subscribed") == 0 || strcmp(state, "none") == 0) &&
                  strcmp(xmppd_stanza_name(c), "subscription") == 0;
        xmppd_jid_free(j);
        if (!ok) {
            ps_req_error(r, "modify", "bad-request", NULL, "Each <subscription/> needs a valid jid "
                         "and subscription 'subscribed' or 'none'");
            return;
        }
    }
    for (xmppd_stanza *c = xmppd_stanza_first(action); c; c = xmppd_stanza_next(c)) {
        xmppd_jid *j = xmppd_jid_parse(xmppd_stanza_attr(c, "jid"));
        ps_sub *sub = j ? ps_sub_find(n, j->full) : NULL;
        char subid[33];
        if (j && strcmp(xmppd_stanza_attr(c, "subscription"), "none") == 0) {
            if (sub)
                ps_sub_remove(n, sub);
        } else if (j && !sub && n->n_subs < r->svc->lim->max_subscriptions &&
                   (sub = calloc(1, sizeof(*sub)))) {
            ps_new_id(subid);
            sub->jid = strdup(j->full);
            sub->subid = strdup(subid);
            sub->deliver = true;
            if (sub->jid && sub->subid) {
                sub->next = n->subs;
                n->subs = sub;
                n->n_subs++;
            } else {
                free(sub->jid);
                free(sub->subid);
                free(sub);
            }
        }
        xmppd_jid_free(j);
    }
    if (r->svc->ops->store_node)
        r->svc->ops->store_node(r->svc, n, r->ctx);
    ps_req_result(r, NULL);
}

/* ---- affiliations (§8.9) -------------------------------------------------------------------- */

static void ps_affiliations_get(ps_req *r, const xmppd_stanza *action)
{
    ps_node *n = ps_owned_node(r, action);
    if (!n)
        return;
    xmppd_stanza *ps;
    xmppd_stanza *list = ps_req_list(PS_NS_OWNER, "affiliations", n->name, &ps);
    if (list && r->svc->pep) { /* the account owns every node of its service */
        xmppd_stanza *el = xmppd_stanza_tag(list, "affiliation", NULL);
        if (el) {
            xmppd_stanza_set_attr(el, "jid", r->svc->jid);
            xmppd_stanza_set_attr(el, "affiliation", "owner");
        }
    }
    for (const ps_affiliation *a = n->affs; list && a; a = a->next) {
        xmppd_stanza *el = xmppd_stanza_tag(list, "affiliation", NULL);
        if (el) {
            xmppd_stanza_set_attr(el, "jid", a->jid);
            xmppd_stanza_set_attr(el, "affiliation", ps_aff_name(a->aff));
        }
    }
    ps_req_result(r, ps);
}

/* Would the changes in action leave n without an owner (a service node)? */
static bool ps_leaves_no_owner(const ps_node *n, const xmppd_stanza *action)
{
    if (n->svc->pep)
        return false;
    for (const ps_affiliation *a = n->affs; a; a = a->next) {
        if (a->aff != PS_AFF_OWNER)
            continue;
        bool changed = false;
        for (xmppd_stanza *c = xmppd_stanza_first(action); c && !changed; c = xmppd_stanza_next(c)) {
            xmppd_jid *j = xmppd_jid_parse(xmppd_stanza_attr(c, "jid"));
            changed = j && strcmp(j->bare, a->jid) == 0 &&
                      strcmp(xmppd_stanza_attr(c, "affiliation"), "owner") != 0;
            xmppd_jid_free(j);
        }
        if (!changed)
            return false;
    }
    for (xmppd_stanza *c = xmppd_stanza_first(action); c; c = xmppd_stanza_next(c))
        if (strcmp(xmppd_stanza_attr(c, "affiliation"), "owner") == 0)
            return false;
    return true;
}

/* Each <affiliation jid affiliation/> (§8.9.2), checked before any change.
 * PEP: the account stays the one owner. */
static void ps_affiliations_set(ps_req *r, const xmppd_stanza *action)
{
    ps_node *n = ps_owned_node(r, action);
    if (!n)
        return;
    for (xmppd_stanza *c = xmppd_stanza_first(action); c; c = xmppd_stanza_next(c)) {
        const char *jid = xmppd_stanza_attr(c, "jid");
        int aff = ps_aff_parse(xmppd_stanza_attr(c, "affiliation"));
        xmppd_jid *j = jid ? xmppd_jid_parse(jid) : NULL;
        bool ok = j && aff >= 0 && strcmp(xmppd_stanza_name(c), "affiliation") == 0;
        bool pep_owner = ok && r->svc->pep && (aff == PS_AFF_OWNER || strcmp(j->bare, r->svc->jid) == 0);
        xmppd_jid_free(j);
        if (!ok) {
            ps_req_error(r, "modify", "bad-request", NULL, "Each <affiliation/> needs a valid jid "
                         "and affiliation");
            return;
        }
        if (pep_owner) {
            ps_req_error(r, "modify", "not-acceptable", NULL,
                         "A personal service has one owner: the account");
            return;
        }
    }
    if (ps_leaves_no_owner(n, action)) {
        ps_req_error(r, "modify", "not-acceptable", NULL, "A node needs an owner");
        return;
    }
    for (xmppd_stanza *c = xmppd_stanza_first(action); c; c = xmppd_stanza_next(c)) {
        xmppd_jid *j = xmppd_jid_parse(xmppd_stanza_attr(c, "jid"));
        int aff = ps_aff_parse(xmppd_stanza_attr(c, "affiliation"));
        if (j)
            ps_aff_set(n, j->bare, aff);
        /* An outcast loses its subscriptions (§8.9.2.3). */
        for (ps_sub *sub = n->subs, *next; j && aff == PS_AFF_OUTCAST && sub; sub = next) {
            next = sub->next;
            if (ps_jid_is_of(sub->jid, j->bare))
                ps_sub_remove(n, sub);
        }
        xmppd_jid_free(j);
    }
    if (r->svc->ops->store_node)
        r->svc->ops->store_node(r->svc, n, r->ctx);
    ps_req_result(r, NULL);
}

/* ---- dispatch ------------------------------------------------------------------------------- */

void ps_op_owner(ps_req *r, const xmppd_stanza *action, bool set)
{
    const char *name = xmppd_stanza_name(action);
    if (strcmp(name, "configure") == 0)
        set ? ps_configure_set(r, action) : ps_configure_get(r, action);
    else if (!set && strcmp(name, "default") == 0)
        ps_default_get(r);
    else if (set && strcmp(name, "delete") == 0)
        ps_delete(r, action);
    else if (set && strcmp(name, "purge") == 0)
        ps_purge(r, action);
    else if (strcmp(name, "subscriptions") == 0)
        set ? ps_subscriptions_set(r, action) : ps_subscriptions_get(r, action);
    else if (strcmp(name, "affiliations") == 0)
        set ? ps_affiliations_set(r, action) : ps_affiliations_get(r, action);
    else
        ps_req_error(r, "modify", "bad-request", NULL, "Unknown pubsub#owner request");
}
