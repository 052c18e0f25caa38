/* Service discovery of a pubsub service (XEP-0060 §5.1 to §5.5). */
#include <stdio.h>
#include <string.h>

#include "ps.h"

static void ps_feature(xmppd_stanza *q, const char *var)
{
    xmppd_stanza *f = xmppd_stanza_tag(q, "feature", NULL);
    if (f)
        xmppd_stanza_set_attr(f, "var", var);
}

static void ps_identity(xmppd_stanza *q, const char *type)
{
    xmppd_stanza *id = xmppd_stanza_tag(q, "identity", NULL);
    if (id) {
        xmppd_stanza_set_attr(id, "category", "pubsub");
        xmppd_stanza_set_attr(id, "type", type);
    }
}

void ps_disco_features(bool pep, xmppd_stanza *q)
{
    /* §10 (features), in the registry's spelling. */
    static const char *const common[] = {
        "access-open", "access-whitelist", "auto-create", "config-node", "config-node-max",
        "create-and-configure", "create-nodes", "delete-items", "delete-nodes", "instant-nodes",
        "item-ids", "last-published", "manage-subscriptions", "member-affiliation", "meta-data",
        "modify-affiliations", "outcast-affiliation", "persistent-items", "publish",
        "publish-only-affiliation", "publish-options", "publisher-affiliation", "purge-nodes",
        "retract-items", "retrieve-affiliations", "retrieve-default", "retrieve-items",
        "retrieve-subscriptions", "subscribe", "subscription-options", NULL
    };
    /* XEP-0163 §4, §6.1: what a personal service adds. */
    static const char *const pep_only[] = { "access-presence", "access-roster", "auto-subscribe",
                                       "filtered-notifications", "presence-notifications",
                                       "presence-subscribe", NULL };
    char var[128];
    ps_feature(q, PS_NS);
    for (const char *const *f = common; *f; f++) {
        snprintf(var, sizeof(var), "%s#%s", PS_NS, *f);
        ps_feature(q, var);
    }
    for (const char *const *f = pep_only; pep && *f; f++) {
        snprintf(var, sizeof(var), "%s#%s", PS_NS, *f);
        ps_feature(q, var);
    }
}

/* The node if it exists and the requester may see it. */
static ps_node *ps_visible(const ps_service *s, const char *node, const char *from_bare, void *ctx)
{
    const char *type, *cond, *ps_cond;
    ps_node *n = ps_node_find(s, node);
    return n && ps_may_read(n, from_bare, ctx, &type, &cond, &ps_cond) == 0 ? n : NULL;
}

bool ps_disco_info(ps_service *s, xmppd_stanza *q, const char *node, const char *from_bare,
                   void *ctx)
{
    if (!node) {
        ps_identity(q, s->pep ? "pep" : "service");
        ps_disco_features(s->pep, q);
        return true;
    }
    ps_node *n = ps_visible(s, node, from_bare, ctx);
    if (!n)
        return false;
    ps_identity(q, "leaf");
    ps_feature(q, PS_NS);
    xmppd_stanza *x = ps_meta_form(n);
    if (x)
        xmppd_stanza_add(q, x);
    return true;
}

bool ps_disco_items(ps_service *s, xmppd_stanza *q, const char *node, const char *from_bare,
                    void *ctx)
{
    if (!node) {
        for (size_t i = 0; i < s->n_nodes; i++) {
            const ps_node *n = ps_visible(s, s->nodes[i]->name, from_bare, ctx);
            xmppd_stanza *it = n ? xmppd_stanza_tag(q, "item", NULL) : NULL;
            if (!it)
                continue;
            xmppd_stanza_set_attr(it, "jid", s->jid);
            xmppd_stanza_set_attr(it, "node", n->name);
            if (n->cfg.title)
                xmppd_stanza_set_attr(it, "name", n->cfg.title);
        }
        return true;
    }
    ps_node *n = ps_visible(s, node, from_bare, ctx);
    if (!n)
        return false;
    for (const ps_item *i = n->first; i; i = i->next) {
        xmppd_stanza *it = xmppd_stanza_tag(q, "item", NULL);
        if (it) {
            xmppd_stanza_set_attr(it, "jid", s->jid);
            xmppd_stanza_set_attr(it, "name", i->id);
        }
    }
    return true;
}
