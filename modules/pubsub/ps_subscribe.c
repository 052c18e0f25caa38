/* Subscriptions: subscribe (XEP-0060 §6.1), unsubscribe (§6.2), options
 * (§6.3), and an entity's own subscriptions and affiliations (§5.6, §5.7). */
#include <stdlib.h>
#include <string.h>

#include "ps_proto.h"

/* ---- subscription options ------------------------------------------------------------- */

/* Applies a subscribe_options form to *deliver; -1 when it is not one or
 * has a field we do not offer (invalid-options). */
static int ps_sub_options_apply(const xmppd_stanza *x, bool *deliver)
{
    xmppd_form *f = x ? xmppd_form_parse(x, NULL) : NULL;
    const char *ft = f ? xmppd_form_form_type(f) : NULL;
    int rc = f && strcmp(xmppd_form_type(f), "submit") == 0 && ft &&
                     strcmp(ft, PS_FORM_SUB_OPTIONS) == 0 ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < xmppd_form_nfields(f); i++) {
        const char *var = xmppd_form_field_var(f, i);
        if (strcmp(var, "FORM_TYPE") != 0 && strcmp(var, "pubsub#deliver") != 0)
            rc = -1;
    }
    if (rc == 0 && xmppd_form_bool(f, "pubsub#deliver", deliver) < 0)
        rc = -1;
    xmppd_form_free(f);
    return rc;
}

static xmppd_stanza *ps_sub_options_form(const ps_sub *sub)
{
    xmppd_stanza *x = xmppd_form_new("form", PS_FORM_SUB_OPTIONS, NULL);
    if (x)
        xmppd_form_add_field(x, "pubsub#deliver", "boolean", "Receive event notifications",
                             sub->deliver ? "1" : "0");
    return x;
}

/* ---- common checks ------------------------------------------------------------------------ */

/* The 'jid' of action, prepared into *j_r; false after answering. For
 * others' subscriptions (not bare-equal to the requester) only an owner of
 * n may act; anyone else gets invalid-jid (subscribing, §6.1.3.1) or
 * forbidden (the other use cases). */
static bool ps_sub_jid(ps_req *r, const xmppd_stanza *action, const ps_node *n, xmppd_jid **j_r,
                       bool mismatch_is_invalid)
{
    const char *v = xmppd_stanza_attr(action, "jid");
    xmppd_jid *j = v ? xmppd_jid_parse(v) : NULL;
    if (!v) {
        ps_req_error(r, "modify", "bad-request", "jid-required", NULL);
        return false;
    }
    if (!j) {
        ps_req_error(r, "modify", "bad-request", "invalid-jid", NULL);
        return false;
    }
    if (strcmp(j->bare, ps_req_bare(r)) != 0 &&
        (!n || ps_affiliation_of(n, ps_req_bare(r)) != PS_AFF_OWNER)) {
        if (mismatch_is_invalid)
            ps_req_error(r, "modify", "bad-request", "invalid-jid",
                         "The JID to subscribe is not the requester's");
        else
            ps_req_error(r, "auth", "forbidden", NULL, NULL);
        xmppd_jid_free(j);
        return false;
    }
    *j_r = j;
    return true;
}

static xmppd_stanza *ps_subscription_el(xmppd_stanza *parent, const ps_node *n, const ps_sub *sub,
                                        bool with_node)
{
    xmppd_stanza *el = xmppd_stanza_tag(parent, "subscription", NULL);
    if (!el)
        return NULL;
    if (with_node)
        xmppd_stanza_set_attr(el, "node", n->name);
    xmppd_stanza_set_attr(el, "jid", sub->jid);
    xmppd_stanza_set_attr(el, "subid", sub->subid);
    xmppd_stanza_set_attr(el, "subscription", "subscribed");
    return el;
}

/* ---- subscribe (§6.1) ------------------------------------------------------------------------ */

/* The node j may subscribe to with the request's options (into
 * *deliver); NULL after answering. */
static ps_node *ps_subscribe_node(ps_req *r, const xmppd_stanza *pubsub,
                                  const xmppd_stanza *action, const xmppd_jid *j, bool *deliver)
{
    const xmppd_stanza *opts = xmppd_stanza_child(pubsub, "options", NULL);
    const char *type, *cond, *ps_cond;
    if (opts && ps_sub_options_apply(xmppd_stanza_child(opts, "x", XMPPD_NS_DATA), deliver) < 0) {
        ps_req_error(r, "modify", "bad-request", "invalid-options", NULL);
        return NULL;
    }
    ps_node *n = ps_req_node(r, action);
    if (n && ps_may_read(n, j->bare, r->ctx, &type, &cond, &ps_cond) < 0) {
        ps_req_error(r, type, cond, ps_cond, NULL);
        return NULL;
    }
    return n;
}

void ps_op_subscribe(ps_req *r, const xmppd_stanza *pubsub, const xmppd_stanza *action)
{
    const char *name = xmppd_stanza_attr(action, "node");
    if (!name || !*name) {
        ps_req_error(r, "modify", "bad-request", "nodeid-required", NULL);
        return;
    }
    xmppd_jid *j;
    if (!ps_sub_jid(r, action, NULL, &j, true))
        return;
    bool deliver = true;
    ps_node *n = ps_subscribe_node(r, pubsub, action, j, &deliver);
    if (!n) {
        xmppd_jid_free(j);
        return;
    }
    ps_sub *sub = ps_sub_find(n, j->full);
    if (!sub && n->n_subs >= r->svc->lim->max_subscriptions) {
        ps_req_error(r, "cancel", "policy-violation", "too-many-subscriptions", NULL);
        xmppd_jid_free(j);
        return;
    }
    char subid[33];
    if (!sub && (sub = calloc(1, sizeof(*sub)))) {
        ps_new_id(subid);
        sub->jid = strdup(j->full);
        sub->subid = strdup(subid);
        if (!sub->jid || !sub->subid) {
            free(sub->jid);
            free(sub->subid);
            free(sub);
            sub = NULL;
        } else {
            sub->next = n->subs;
            n->subs = sub;
            n->n_subs++;
        }
    }
    xmppd_jid_free(j);
    if (!sub) {
        ps_req_error(r, "wait", "internal-server-error", NULL, NULL);
        return;
    }
    sub->deliver = deliver;
    if (r->svc->ops->store_node)
        r->svc->ops->store_node(r->svc, n, r->ctx);
    xmppd_stanza *ps = ps_req_pubsub(PS_NS);
    if (ps)
        ps_subscription_el(ps, n, sub, true);
    ps_req_result(r, ps);
    if (n->cfg.send_last != PS_SENDLAST_NEVER)
        ps_send_last(r->svc, n, sub->jid, r->ctx);
}

/* ---- unsubscribe (§6.2) --------------------------------------------------------------------- */

/* The subscription of action's jid on n; NULL after answering. */
static ps_sub *ps_req_sub(ps_req *r, const xmppd_stanza *action, ps_node *n)
{
    xmppd_jid *j;
    if (!ps_sub_jid(r, action, n, &j, false))
        return NULL;
    ps_sub *sub = ps_sub_find(n, j->full);
    xmppd_jid_free(j);
    const char *subid = xmppd_stanza_attr(action, "subid");
    if (!sub)
        ps_req_error(r, "cancel", "unexpected-request", "not-subscribed", NULL);
    else if (subid && strcmp(subid, sub->subid) != 0)
        ps_req_error(r, "modify", "not-acceptable", "invalid-subid", NULL);
    else
        return sub;
    return NULL;
}

void ps_op_unsubscribe(ps_req *r, const xmppd_stanza *action)
{
    ps_node *n = ps_req_node(r, action);
    ps_sub *sub = n ? ps_req_sub(r, action, n) : NULL;
    if (!sub)
        return;
    ps_sub_remove(n, sub);
    if (r->svc->ops->store_node)
        r->svc->ops->store_node(r->svc, n, r->ctx);
    ps_req_result(r, NULL);
}

/* ---- options (§6.3) ------------------------------------------------------------------------- */

void ps_op_options(ps_req *r, const xmppd_stanza *action, bool set)
{
    ps_node *n = ps_req_node(r, action);
    ps_sub *sub = n ? ps_req_sub(r, action, n) : NULL;
    if (!sub)
        return;
    if (set) {
        bool deliver = sub->deliver;
        if (ps_sub_options_apply(xmppd_stanza_child(action, "x", XMPPD_NS_DATA), &deliver) < 0) {
            ps_req_error(r, "modify", "bad-request", "invalid-options", NULL);
            return;
        }
        sub->deliver = deliver;
        if (r->svc->ops->store_node)
            r->svc->ops->store_node(r->svc, n, r->ctx);
        ps_req_result(r, NULL);
        return;
    }
    xmppd_stanza *ps;
    xmppd_stanza *o = ps_req_list(PS_NS, "options", n->name, &ps);
    xmppd_stanza *x = o ? ps_sub_options_form(sub) : NULL;
    if (x) {
        xmppd_stanza_set_attr(o, "jid", sub->jid);
        xmppd_stanza_set_attr(o, "subid", sub->subid);
        xmppd_stanza_add(o, x);
    }
    ps_req_result(r, ps);
}

/* ---- an entity's own subscriptions and affiliations (§5.6, §5.7) ---------------------------- */

void ps_op_subscriptions(ps_req *r, const xmppd_stanza *action)
{
    const char *only = xmppd_stanza_attr(action, "node");
    xmppd_stanza *ps;
    xmppd_stanza *list = ps_req_list(PS_NS, "subscriptions", only, &ps);
    for (size_t i = 0; list && i < r->svc->n_nodes; i++) {
        const ps_node *n = r->svc->nodes[i];
        if (only && strcmp(only, n->name) != 0)
            continue;
        for (const ps_sub *sub = n->subs; sub; sub = sub->next)
            if (ps_jid_is_of(sub->jid, ps_req_bare(r)))
                ps_subscription_el(list, n, sub, true);
    }
    ps_req_result(r, ps);
}

void ps_op_affiliations(ps_req *r, const xmppd_stanza *action)
{
    const char *only = xmppd_stanza_attr(action, "node");
    xmppd_stanza *ps;
    xmppd_stanza *list = ps_req_list(PS_NS, "affiliations", only, &ps);
    for (size_t i = 0; list && i < r->svc->n_nodes; i++) {
        const ps_node *n = r->svc->nodes[i];
        int aff = ps_affiliation_of(n, ps_req_bare(r));
        if ((only && strcmp(only, n->name) != 0) || aff == PS_AFF_NONE)
            continue;
        xmppd_stanza *el = xmppd_stanza_tag(list, "affiliation", NULL);
        if (el) {
            xmppd_stanza_set_attr(el, "node", n->name);
            xmppd_stanza_set_attr(el, "affiliation", ps_aff_name(aff));
        }
    }
    ps_req_result(r, ps);
}
