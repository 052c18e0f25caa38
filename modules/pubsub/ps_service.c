/* Services, nodes, items, affiliations and subscriptions in memory. */
#include <stdlib.h>
#include <string.h>

#include "ps.h"

ps_service *ps_service_new(const char *jid, bool pep, const ps_ops *ops, const ps_limits *lim,
                           const ps_config *defaults)
{
    ps_service *s = calloc(1, sizeof(*s));
    if (!s || !(s->jid = strdup(jid))) {
        free(s);
        return NULL;
    }
    s->pep = pep;
    s->ops = ops;
    s->lim = lim;
    ps_config_copy(&s->defaults, defaults);
    return s;
}

static void ps_node_free(ps_node *n)
{
    while (n->first)
        ps_item_remove(n, n->first);
    while (n->subs)
        ps_sub_remove(n, n->subs);
    for (ps_affiliation *a = n->affs, *next; a; a = next) {
        next = a->next;
        free(a->jid);
        free(a);
    }
    ps_config_clear(&n->cfg);
    free(n->name);
    free(n);
}

void ps_service_free(ps_service *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_nodes; i++)
        ps_node_free(s->nodes[i]);
    free(s->nodes);
    ps_config_clear(&s->defaults);
    free(s->jid);
    free(s);
}

ps_node *ps_node_find(const ps_service *s, const char *name)
{
    for (size_t i = 0; name && i < s->n_nodes; i++)
        if (strcmp(s->nodes[i]->name, name) == 0)
            return s->nodes[i];
    return NULL;
}

ps_node *ps_node_add(ps_service *s, const char *name, const ps_config *cfg)
{
    if (s->n_nodes == s->cap_nodes) {
        size_t cap = s->cap_nodes ? s->cap_nodes * 2 : 8;
        ps_node **v = realloc(s->nodes, cap * sizeof(*v));
        if (!v)
            return NULL;
        s->nodes = v;
        s->cap_nodes = cap;
    }
    ps_node *n = calloc(1, sizeof(*n));
    if (!n || !(n->name = strdup(name))) {
        free(n);
        return NULL;
    }
    ps_config_copy(&n->cfg, cfg);
    n->svc = s;
    s->nodes[s->n_nodes++] = n;
    return n;
}

void ps_node_remove(ps_service *s, ps_node *n)
{
    for (size_t i = 0; i < s->n_nodes; i++)
        if (s->nodes[i] == n) {
            s->nodes[i] = s->nodes[--s->n_nodes];
            break;
        }
    ps_node_free(n); /* its items leave s->n_items one by one */
}

/* ---- items ------------------------------------------------------------------------ */

void ps_item_free(ps_item *it)
{
    if (!it)
        return;
    xmppd_stanza_unref(it->payload);
    free(it->id);
    free(it->publisher);
    free(it);
}

ps_item *ps_item_find(const ps_node *n, const char *id)
{
    /* Newest first: a client replacing the current item finds it at once. */
    for (ps_item *it = n->last; it && id; it = it->prev)
        if (strcmp(it->id, id) == 0)
            return it;
    return NULL;
}

void ps_item_remove(ps_node *n, ps_item *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        n->first = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        n->last = it->prev;
    n->n_items--;
    n->svc->n_items--;
    ps_item_free(it);
}

long ps_node_max_items(const ps_node *n)
{
    long cap = n->svc->lim->max_items;
    long v = n->cfg.max_items;
    return v == PS_MAX_ITEMS_MAX || v > cap ? cap : v;
}

void ps_item_put(ps_node *n, ps_item *it, void *ctx)
{
    ps_service *s = n->svc;
    ps_item *old = ps_item_find(n, it->id);
    if (old)
        ps_item_remove(n, old);
    it->prev = n->last;
    it->next = NULL;
    if (n->last)
        n->last->next = it;
    else
        n->first = it;
    n->last = it;
    n->n_items++;
    s->n_items++;
    long max = ps_node_max_items(n);
    while (n->first && (long)n->n_items > max) {
        ps_item *gone = n->first;
        if (n->cfg.persist_items && s->ops->drop_item)
            s->ops->drop_item(s, n, gone->id, ctx);
        ps_item_remove(n, gone);
    }
}

/* ---- affiliations ------------------------------------------------------------------ */

int ps_aff_get(const ps_node *n, const char *bare)
{
    for (const ps_affiliation *a = n->affs; a && bare; a = a->next)
        if (strcmp(a->jid, bare) == 0)
            return a->aff;
    return PS_AFF_NONE;
}

int ps_aff_set(ps_node *n, const char *bare, int aff)
{
    for (ps_affiliation **p = &n->affs; *p; p = &(*p)->next)
        if (strcmp((*p)->jid, bare) == 0) {
            ps_affiliation *a = *p;
            if (aff != PS_AFF_NONE) {
                a->aff = aff;
            } else {
                *p = a->next;
                free(a->jid);
                free(a);
            }
            return 0;
        }
    if (aff == PS_AFF_NONE)
        return 0;
    ps_affiliation *a = calloc(1, sizeof(*a));
    if (!a || !(a->jid = strdup(bare))) {
        free(a);
        return -1;
    }
    a->aff = aff;
    /* Appended: listings keep the order affiliations were given. */
    ps_affiliation **p = &n->affs;
    while (*p)
        p = &(*p)->next;
    *p = a;
    return 0;
}

/* ---- subscriptions ------------------------------------------------------------------ */

ps_sub *ps_sub_find(const ps_node *n, const char *jid)
{
    for (ps_sub *sub = n->subs; sub && jid; sub = sub->next)
        if (strcmp(sub->jid, jid) == 0)
            return sub;
    return NULL;
}

bool ps_node_subscribed(const ps_node *n, const char *full, const char *bare)
{
    for (const ps_sub *sub = n->subs; sub; sub = sub->next)
        if (sub->deliver && ((full && strcmp(sub->jid, full) == 0) || (bare && strcmp(sub->jid, bare) == 0)))
            return true;
    return false;
}

void ps_sub_remove(ps_node *n, ps_sub *sub)
{
    for (ps_sub **p = &n->subs; *p; p = &(*p)->next)
        if (*p == sub) {
            *p = sub->next;
            n->n_subs--;
            break;
        }
    free(sub->jid);
    free(sub->subid);
    free(sub);
}
