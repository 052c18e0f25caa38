/* The <pubsub/> IQ: dispatch by namespace, type and action element, the
 * helpers every operation shares, and item retrieval (XEP-0060 §6.5). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_proto.h"

/* ---- answering ------------------------------------------------------------------------ */

xmppd_stanza *ps_error_reply(const xmppd_stanza *iq, const char *type, const char *cond,
                             const char *ps_cond, const char *text)
{
    xmppd_stanza *e = xmppd_stanza_error_reply(iq, type, cond, text);
    xmppd_stanza *err = e ? xmppd_stanza_child(e, "error", NULL) : NULL;
    if (err && ps_cond)
        xmppd_stanza_tag(err, ps_cond, PS_NS_ERRORS);
    return e;
}

const char *ps_req_bare(const ps_req *r)
{
    return r->ev->from ? r->ev->from->bare : "";
}

void ps_req_error(ps_req *r, const char *type, const char *cond, const char *ps_cond,
                  const char *text)
{
    r->reply(r, ps_error_reply(r->ev->stanza, type, cond, ps_cond, text));
}

void ps_req_result(ps_req *r, xmppd_stanza *payload)
{
    xmppd_stanza *res = xmppd_stanza_reply(r->ev->stanza);
    if (res && payload && !xmppd_stanza_add(res, payload)) {
        xmppd_stanza_unref(res);
        res = NULL;
    } else if (!res) {
        xmppd_stanza_unref(payload);
    }
    if (!res)
        res = ps_error_reply(r->ev->stanza, "wait", "internal-server-error", NULL, NULL);
    r->reply(r, res);
}

xmppd_stanza *ps_req_pubsub(const char *ns)
{
    return xmppd_stanza_new("pubsub", ns);
}

xmppd_stanza *ps_req_list(const char *ns, const char *name, const char *node, xmppd_stanza **ps_r)
{
    *ps_r = ps_req_pubsub(ns);
    xmppd_stanza *list = *ps_r ? xmppd_stanza_tag(*ps_r, name, NULL) : NULL;
    if (list && node)
        xmppd_stanza_set_attr(list, "node", node);
    return list;
}

ps_node *ps_req_node(ps_req *r, const xmppd_stanza *action)
{
    const char *name = xmppd_stanza_attr(action, "node");
    if (!name || !*name) {
        ps_req_error(r, "modify", "bad-request", "nodeid-required", NULL);
        return NULL;
    }
    ps_node *n = ps_node_find(r->svc, name);
    if (!n)
        ps_req_error(r, "cancel", "item-not-found", NULL, "No such node");
    return n;
}

bool ps_jid_is_of(const char *jid, const char *bare)
{
    size_t n = strlen(bare);
    return strncmp(jid, bare, n) == 0 && (jid[n] == '\0' || jid[n] == '/');
}

void ps_new_id(char buf[33])
{
    unsigned char rnd[16];
    if (xmppd_random(rnd, sizeof(rnd)) < 0)
        memset(rnd, 0, sizeof(rnd));
    for (int i = 0; i < 16; i++)
        snprintf(buf + 2 * i, 3, "%02x", rnd[i]);
}

void ps_req_form_error(ps_req *r, int rc, const char *why)
{
    if (rc == -3)
        ps_req_error(r, "modify", "not-acceptable", "unsupported-access-model", why);
    else if (rc == -2)
        ps_req_error(r, "modify", "not-acceptable", NULL, why);
    else
        ps_req_error(r, "modify", "bad-request", NULL, why);
}

ps_node *ps_req_create(ps_req *r, const char *name, const ps_config *cfg)
{
    ps_service *s = r->svc;
    if (s->n_nodes >= s->lim->max_nodes) {
        char text[96];
        snprintf(text, sizeof(text), "This service holds at most %zu nodes", s->lim->max_nodes);
        ps_req_error(r, "cancel", "not-allowed", "max-nodes-exceeded", text);
        return NULL;
    }
    ps_node *n = ps_node_add(s, name, cfg);
    if (n && !s->pep && ps_aff_set(n, ps_req_bare(r), PS_AFF_OWNER) < 0) {
        ps_node_remove(s, n);
        n = NULL;
    }
    if (!n) {
        ps_req_error(r, "wait", "internal-server-error", NULL, NULL);
        return NULL;
    }
    if (s->ops->store_node)
        s->ops->store_node(s, n, r->ctx);
    return n;
}

/* ---- items (§6.5) ---------------------------------------------------------------------- */

/* max_items of a retrieval: -1 absent, 0 on a bad value. */
static long ps_max_attr(const xmppd_stanza *items)
{
    const char *v = xmppd_stanza_attr(items, "max_items");
    if (!v)
        return -1;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    return *v && !*end && !errno && n > 0 ? n : 0;
}

static void ps_op_items(ps_req *r, const xmppd_stanza *action)
{
    long max = ps_max_attr(action);
    if (max == 0) {
        ps_req_error(r, "modify", "bad-request", NULL, "max_items must be a positive integer");
        return;
    }
    ps_node *n = ps_req_node(r, action);
    const char *type, *cond, *ps_cond;
    if (!n)
        return;
    if (ps_may_read(n, ps_req_bare(r), r->ctx, &type, &cond, &ps_cond) < 0) {
        ps_req_error(r, type, cond, ps_cond, NULL);
        return;
    }
    xmppd_stanza *ps;
    xmppd_stanza *items = ps_req_list(PS_NS, "items", n->name, &ps);
    if (!items) {
        xmppd_stanza_unref(ps);
        ps_req_error(r, "wait", "internal-server-error", NULL, NULL);
        return;
    }
    bool wanted = false; /* specific items asked for (§6.5.8) */
    for (xmppd_stanza *c = xmppd_stanza_first(action); c; c = xmppd_stanza_next(c)) {
        const char *id = strcmp(xmppd_stanza_name(c), "item") == 0 ? xmppd_stanza_attr(c, "id") : NULL;
        ps_item *it = ps_item_find(n, id);
        wanted = wanted || id;
        if (it)
            xmppd_stanza_add(items, ps_item_element(it, PS_NS, true, !r->svc->pep));
    }
    if (!wanted) {
        /* The newest max items, in publication order (§6.5.7). */
        ps_item *from = n->first;
        for (long skip = max > 0 ? (long)n->n_items - max : 0; skip > 0 && from; skip--)
            from = from->next;
        for (ps_item *it = from; it; it = it->next)
            xmppd_stanza_add(items, ps_item_element(it, PS_NS, true, !r->svc->pep));
    }
    ps_req_result(r, ps);
}

/* ---- dispatch --------------------------------------------------------------------------- */

/* Elements of XEP-0060 this engine does not do, for <unsupported/>. */
static void ps_unsupported(ps_req *r, const char *feature)
{
    xmppd_stanza *e = ps_error_reply(r->ev->stanza, "cancel", "feature-not-implemented", NULL, NULL);
    xmppd_stanza *err = e ? xmppd_stanza_child(e, "error", NULL) : NULL;
    xmppd_stanza *u = err ? xmppd_stanza_tag(err, "unsupported", PS_NS_ERRORS) : NULL;
    if (u)
        xmppd_stanza_set_attr(u, "feature", feature);
    r->reply(r, e);
}

static void ps_dispatch_user(ps_req *r, const xmppd_stanza *pubsub, const xmppd_stanza *action,
                             bool set)
{
    const char *name = xmppd_stanza_name(action);
    if (!set && strcmp(name, "items") == 0)
        ps_op_items(r, action);
    else if (set && strcmp(name, "publish") == 0)
        ps_op_publish(r, pubsub, action);
    else if (set && strcmp(name, "retract") == 0)
        ps_op_retract(r, action);
    else if (set && strcmp(name, "create") == 0)
        ps_op_create(r, pubsub, action);
    else if (set && strcmp(name, "subscribe") == 0)
        ps_op_subscribe(r, pubsub, action);
    else if (set && strcmp(name, "unsubscribe") == 0)
        ps_op_unsubscribe(r, action);
    else if (strcmp(name, "options") == 0)
        ps_op_options(r, action, set);
    else if (!set && strcmp(name, "subscriptions") == 0)
        ps_op_subscriptions(r, action);
    else if (!set && strcmp(name, "affiliations") == 0)
        ps_op_affiliations(r, action);
    else if (!set && strcmp(name, "default") == 0)
        ps_unsupported(r, "retrieve-default-sub");
    else
        ps_req_error(r, "modify", "bad-request", NULL, "Unknown pubsub request");
}

void ps_handle_iq(ps_req *r)
{
    const xmppd_stanza *iq = r->ev->stanza;
    const char *type = xmppd_stanza_attr(iq, "type");
    const xmppd_stanza *pubsub = xmppd_stanza_first(iq);
    bool set = type && strcmp(type, "set") == 0;
    bool owner = pubsub && strcmp(xmppd_stanza_ns(pubsub), PS_NS_OWNER) == 0;
    const xmppd_stanza *action = pubsub ? xmppd_stanza_first(pubsub) : NULL;
    if (!pubsub || strcmp(xmppd_stanza_name(pubsub), "pubsub") != 0 || !action) {
        ps_req_error(r, "modify", "bad-request", NULL, "Expected <pubsub/> with a request");
        return;
    }
    if (owner)
        ps_op_owner(r, action, set);
    else
        ps_dispatch_user(r, pubsub, action, set);
}
