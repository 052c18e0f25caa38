/* Publishing (XEP-0060 §7.1, publish-options §7.1.5 with XEP-0223's
 * preconditions) and retracting (§7.2), from an IQ or from a module. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_proto.h"

/* An error to answer: type, condition, pubsub#errors child, text. */
typedef struct ps_err {
    const char *type, *cond, *ps_cond;
    char text[160];
} ps_err;

static int ps_fail(ps_err *e, const char *type, const char *cond, const char *ps_cond,
                   const char *text)
{
    e->type = type;
    e->cond = cond;
    e->ps_cond = ps_cond;
    snprintf(e->text, sizeof(e->text), "%s", text ? text : "");
    return -1;
}

static int ps_form_fail(ps_err *e, int rc, const char *why)
{
    if (rc == -3)
        return ps_fail(e, "modify", "not-acceptable", "unsupported-access-model", why);
    return ps_fail(e, "modify", rc == -2 ? "not-acceptable" : "bad-request", NULL, why);
}

/* The node to publish to: found (its preconditions checked), or created
 * with the defaults and options (auto-create, §7.1.4). NULL with *e set. */
static ps_node *ps_publish_node(ps_service *s, const char *name, const xmppd_jid *from,
                                const xmppd_form *options, void *ctx, ps_err *e)
{
    const char *why = NULL;
    ps_node *n = ps_node_find(s, name);
    if (n) {
        int rc = options ? ps_config_check(&n->cfg, options, s->lim, &why) : 0;
        if (rc == 1)
            ps_fail(e, "cancel", "conflict", "precondition-not-met",
                    "The node's configuration does not match the publish-options");
        else if (rc < 0)
            ps_form_fail(e, rc, why);
        return rc == 0 ? n : NULL;
    }
    if (!s->ops->may_create || !s->ops->may_create(s, from, ctx)) {
        ps_fail(e, "cancel", "item-not-found", NULL, "No such node");
        return NULL;
    }
    if (s->n_nodes >= s->lim->max_nodes) {
        char text[96];
        snprintf(text, sizeof(text), "This service holds at most %zu nodes", s->lim->max_nodes);
        ps_fail(e, "cancel", "not-allowed", "max-nodes-exceeded", text);
        return NULL;
    }
    ps_config cfg;
    ps_config_copy(&cfg, &s->defaults);
    int rc = options ? ps_config_apply(&cfg, options, s->lim, s->pep, &why) : 0;
    n = rc == 0 ? ps_node_add(s, name, &cfg) : NULL;
    ps_config_clear(&cfg);
    if (rc < 0)
        ps_form_fail(e, rc, why);
    else if (!n || (!s->pep && from && ps_aff_set(n, from->bare, PS_AFF_OWNER) < 0))
        ps_fail(e, "wait", "internal-server-error", NULL, NULL);
    else if (s->ops->store_node)
        s->ops->store_node(s, n, ctx);
    return rc == 0 ? n : NULL;
}

/* Would one more item on n (replacing id or not) go beyond the service's
 * total? */
static bool ps_over_total(const ps_service *s, const ps_node *n, const char *id)
{
    if (ps_item_find(n, id) || (long)n->n_items + 1 > ps_node_max_items(n))
        return false; /* replaces one, or pushes the oldest out */
    return s->n_items + 1 > s->lim->max_total_items;
}

/* Publishes payload (referenced, may be NULL) as item id on node name. 0
 * with *n_r and *it_r, or -1 with *e. */
static int ps_do_publish(ps_service *s, const char *name, const xmppd_jid *from, const char *id,
                         xmppd_stanza *payload, size_t bytes, const xmppd_form *options, void *ctx,
                         ps_err *e, ps_node **n_r, ps_item **it_r)
{
    ps_node *n = ps_publish_node(s, name, from, options, ctx, e);
    if (!n)
        return -1;
    if (from && !ps_may_publish(n, from->bare, from->full))
        return ps_fail(e, "auth", "forbidden", NULL, "Only publishers may publish here");
    if (bytes > s->lim->max_item_bytes)
        return ps_fail(e, "modify", "not-acceptable", "payload-too-big", "The item is too large");
    if (!payload && (n->cfg.persist_items || n->cfg.deliver_payloads))
        return ps_fail(e, "modify", "bad-request", "payload-required", NULL);
    char gen[33];
    if (!id) {
        ps_new_id(gen);
        id = gen;
    }
    if (ps_over_total(s, n, id)) {
        char text[96];
        snprintf(text, sizeof(text), "This service stores at most %zu items",
                 s->lim->max_total_items);
        return ps_fail(e, "cancel", "not-allowed", "max-items-exceeded", text);
    }
    ps_item *it = calloc(1, sizeof(*it));
    if (!it || !(it->id = strdup(id)) ||
        (from && !(it->publisher = strdup(from->bare)))) {
        ps_item_free(it);
        return ps_fail(e, "wait", "internal-server-error", NULL, NULL);
    }
    it->payload = payload ? xmppd_stanza_ref(payload) : NULL;
    it->bytes = bytes;
    it->when_ms = xmppd_wallclock_ms();
    it->seq = ++s->seq;
    ps_item_put(n, it, ctx);
    if (n->cfg.persist_items && s->ops->store_item)
        s->ops->store_item(s, n, it, ctx);
    *n_r = n;
    *it_r = it;
    return 0;
}

/* What a publication causes once answered. */
static void ps_published(ps_service *s, ps_node *n, ps_item *it, void *ctx)
{
    ps_notify_publish(s, n, it, ctx);
    if (s->ops->changed)
        s->ops->changed(s, n, "items", it, NULL, ctx);
}

/* The serialised size of payload. */
static size_t ps_bytes(const xmppd_stanza *payload)
{
    size_t len = 0;
    char *xml = payload ? xmppd_stanza_to_string(payload, XMPPD_NS_CLIENT, &len) : NULL;
    free(xml);
    return len;
}

/* ---- from an IQ ----------------------------------------------------------------------- */

/* The publish-options form of a request: NULL without one (ok stays true),
 * or NULL with ok false after answering bad-request. */
static xmppd_form *ps_publish_options(ps_req *r, const xmppd_stanza *pubsub, bool *ok)
{
    const xmppd_stanza *po = xmppd_stanza_child(pubsub, "publish-options", NULL);
    const xmppd_stanza *x = po ? xmppd_stanza_child(po, "x", XMPPD_NS_DATA) : NULL;
    *ok = true;
    if (!po || (!x && !xmppd_stanza_first(po)))
        return NULL; /* an empty <publish-options/>: nothing asked */
    const char *why = "publish-options needs a data form";
    xmppd_form *f = x ? xmppd_form_parse(x, &why) : NULL;
    const char *ft = f ? xmppd_form_form_type(f) : NULL;
    if (f && (strcmp(xmppd_form_type(f), "submit") != 0 || !ft ||
              strcmp(ft, PS_FORM_PUBLISH_OPTIONS) != 0)) {
        why = "publish-options needs a submit form of FORM_TYPE " PS_FORM_PUBLISH_OPTIONS;
        xmppd_form_free(f);
        f = NULL;
    }
    if (!f) {
        *ok = false;
        ps_req_error(r, "modify", "bad-request", NULL, why);
    }
    return f;
}

void ps_op_publish(ps_req *r, const xmppd_stanza *pubsub, const xmppd_stanza *action)
{
    const char *name = xmppd_stanza_attr(action, "node");
    const xmppd_stanza *item = xmppd_stanza_child(action, "item", NULL);
    xmppd_stanza *payload = item ? xmppd_stanza_first(item) : NULL;
    const char *id = item ? xmppd_stanza_attr(item, "id") : NULL;
    if (!name || !*name) {
        ps_req_error(r, "modify", "bad-request", "nodeid-required", NULL);
        return;
    }
    if (!item) {
        ps_req_error(r, "modify", "bad-request", "item-required", NULL);
        return;
    }
    if (xmppd_stanza_next(item) || (payload && xmppd_stanza_next(payload))) {
        ps_req_error(r, "modify", "bad-request", "invalid-payload",
                     "Publish one <item/> with one payload element");
        return;
    }
    if (id && (!*id || strlen(id) > PS_NAME_MAX)) {
        ps_req_error(r, "modify", "bad-request", NULL, "Item ids have 1 to 1023 bytes");
        return;
    }
    bool ok;
    xmppd_form *options = ps_publish_options(r, pubsub, &ok);
    if (!ok)
        return;
    ps_err e;
    ps_node *n;
    ps_item *it;
    int rc = ps_do_publish(r->svc, name, r->ev->from, id, payload, ps_bytes(payload), options,
                           r->ctx, &e, &n, &it);
    xmppd_form_free(options);
    if (rc < 0) {
        ps_req_error(r, e.type, e.cond, e.ps_cond, e.text[0] ? e.text : NULL);
        return;
    }
    xmppd_stanza *ps;
    xmppd_stanza *pub = ps_req_list(PS_NS, "publish", n->name, &ps);
    xmppd_stanza *rit = pub ? xmppd_stanza_tag(pub, "item", NULL) : NULL;
    if (rit)
        xmppd_stanza_set_attr(rit, "id", it->id);
    ps_req_result(r, ps);
    ps_published(r->svc, n, it, r->ctx);
}

/* §7.2: one or more <item id/>; the notification follows the 'notify'
 * attribute when given, else the node's pubsub#notify_retract. */
void ps_op_retract(ps_req *r, const xmppd_stanza *action)
{
    ps_node *n = ps_req_node(r, action);
    if (!n)
        return;
    const char *bare = ps_req_bare(r);
    int aff = ps_affiliation_of(n, bare);
    size_t count = 0;
    for (xmppd_stanza *c = xmppd_stanza_first(action); c; c = xmppd_stanza_next(c)) {
        const char *id = xmppd_stanza_attr(c, "id");
        ps_item *it = ps_item_find(n, id);
        if (strcmp(xmppd_stanza_name(c), "item") != 0 || !id) {
            ps_req_error(r, "modify", "bad-request", "item-required", NULL);
            return;
        }
        if (aff != PS_AFF_OWNER && aff != PS_AFF_PUBLISHER &&
            !(aff == PS_AFF_PUBLISH_ONLY && it && it->publisher && strcmp(it->publisher, bare) == 0)) {
            ps_req_error(r, "auth", "forbidden", NULL, NULL);
            return;
        }
        if (!it) {
            ps_req_error(r, "cancel", "item-not-found", NULL, "No such item");
            return;
        }
        count++;
    }
    if (count == 0) {
        ps_req_error(r, "modify", "bad-request", "item-required", NULL);
        return;
    }
    const char *notify = xmppd_stanza_attr(action, "notify");
    bool tell = notify ? strcmp(notify, "true") == 0 || strcmp(notify, "1") == 0
                       : n->cfg.notify_retract;
    ps_req_result(r, NULL);
    for (xmppd_stanza *c = xmppd_stanza_first(action); c; c = xmppd_stanza_next(c)) {
        ps_item *it = ps_item_find(n, xmppd_stanza_attr(c, "id"));
        if (!it)
            continue; /* the same id twice */
        char *id = strdup(it->id);
        if (!id)
            continue;
        if (n->cfg.persist_items && r->svc->ops->drop_item)
            r->svc->ops->drop_item(r->svc, n, id, r->ctx);
        ps_item_remove(n, it);
        if (tell && n->cfg.deliver_notifications)
            ps_notify_retract(r->svc, n, id, r->ctx);
        if (r->svc->ops->changed)
            r->svc->ops->changed(r->svc, n, "retract", NULL, id, r->ctx);
        free(id);
    }
}

/* ---- from a module -------------------------------------------------------------------- */

int ps_publish(ps_service *s, const char *node, const char *publisher, const char *id,
               const xmppd_stanza *payload, const xmppd_form *options, void *ctx,
               const char **err_r)
{
    xmppd_jid *from = publisher ? xmppd_jid_parse(publisher) : NULL;
    xmppd_stanza *copy = payload ? xmppd_stanza_copy(payload) : NULL;
    ps_err e = { 0 };
    ps_node *n = NULL;
    ps_item *it = NULL;
    int rc = (publisher && !from) || (payload && !copy)
                 ? ps_fail(&e, "wait", "internal-server-error", NULL, NULL)
                 : ps_do_publish(s, node, from, id, copy, ps_bytes(copy), options, ctx, &e, &n, &it);
    xmppd_stanza_unref(copy);
    xmppd_jid_free(from);
    if (rc < 0) {
        if (err_r)
            *err_r = e.ps_cond ? e.ps_cond : e.cond;
        return -1;
    }
    ps_published(s, n, it, ctx);
    return 0;
}

int ps_retract(ps_service *s, const char *node, const char *id, void *ctx)
{
    ps_node *n = ps_node_find(s, node);
    ps_item *it = n ? ps_item_find(n, id) : NULL;
    char *copy = it ? strdup(it->id) : NULL;
    if (!copy)
        return -1;
    if (n->cfg.persist_items && s->ops->drop_item)
        s->ops->drop_item(s, n, copy, ctx);
    ps_item_remove(n, it);
    ps_notify_retract(s, n, copy, ctx);
    if (s->ops->changed)
        s->ops->changed(s, n, "retract", NULL, copy, ctx);
    free(copy);
    return 0;
}
