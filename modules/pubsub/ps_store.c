/* A service as keyval entries (one service per store user):
 *
 *   "n:NODE"          {"config": {...}, "affiliations": {"jid": "owner"},
 *                      "subscriptions": [{"jid", "subid", "deliver"}]}
 *   "i:LEN:NODEID"    {"node", "id", "publisher", "when", "seq", "xml"}
 *
 * The item key puts the node name's length first, so no node name or item
 * id (both may hold any character) can make two keys alike. One write per
 * publication: the item alone, never the node. */
#define _GNU_SOURCE /* asprintf, strndup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps.h"

char *ps_key_node(const char *node)
{
    char *k = NULL;
    return asprintf(&k, "n:%s", node) < 0 ? NULL : k;
}

char *ps_key_item(const char *node, const char *id)
{
    char *k = NULL;
    return asprintf(&k, "i:%zu:%s%s", strlen(node), node, id) < 0 ? NULL : k;
}

json_t *ps_node_json(const ps_node *n)
{
    json_t *affs = json_object(), *subs = json_array();
    for (const ps_affiliation *a = n->affs; affs && a; a = a->next)
        json_object_set_new(affs, a->jid, json_string(ps_aff_name(a->aff)));
    for (const ps_sub *s = n->subs; subs && s; s = s->next)
        json_array_append_new(subs, json_pack("{s:s, s:s, s:b}", "jid", s->jid, "subid", s->subid,
                                              "deliver", s->deliver));
    return json_pack("{s:o?, s:o?, s:o?}", "config", ps_config_json(&n->cfg), "affiliations", affs,
                     "subscriptions", subs);
}

json_t *ps_item_json(const ps_item *it)
{
    char *xml = it->payload ? xmppd_stanza_to_string(it->payload, XMPPD_NS_CLIENT, NULL) : NULL;
    json_t *j = json_pack("{s:s, s:s?, s:I, s:I, s:s?}", "id", it->id, "publisher", it->publisher,
                          "when", (json_int_t)it->when_ms, "seq", (json_int_t)it->seq, "xml", xml);
    free(xml);
    return j;
}

/* ---- loading --------------------------------------------------------------------------- */

static int ps_load_node(ps_service *s, const char *name, const json_t *j)
{
    ps_config cfg;
    ps_config_from_json(&cfg, json_object_get(j, "config"), &s->defaults);
    ps_node *n = ps_node_add(s, name, &cfg);
    ps_config_clear(&cfg);
    if (!n)
        return -1;
    const char *jid;
    json_t *v;
    json_object_foreach(json_object_get(j, "affiliations"), jid, v) {
        int aff = ps_aff_parse(json_string_value(v));
        if (aff >= 0)
            ps_aff_set(n, jid, aff);
    }
    size_t i;
    json_array_foreach(json_object_get(j, "subscriptions"), i, v) {
        const char *sj = json_string_value(json_object_get(v, "jid"));
        const char *subid = json_string_value(json_object_get(v, "subid"));
        ps_sub *sub = sj && subid ? calloc(1, sizeof(*sub)) : NULL;
        if (!sub || !(sub->jid = strdup(sj)) || !(sub->subid = strdup(subid))) {
            if (sub)
                free(sub->jid);
            free(sub);
            continue;
        }
        sub->deliver = !json_is_false(json_object_get(v, "deliver"));
        sub->next = n->subs;
        n->subs = sub;
        n->n_subs++;
    }
    return 0;
}

/* One stored item into *it_r, its node's name (malloc'd) into *node_r;
 * -1 when it does not parse. */
static int ps_load_item(const char *key, const json_t *j, ps_item **it_r, char **node_r)
{
    /* "i:LEN:NODEID" */
    char *end;
    unsigned long len = strtoul(key + 2, &end, 10);
    const char *id = json_string_value(json_object_get(j, "id"));
    const char *xml = json_string_value(json_object_get(j, "xml"));
    if (*end != ':' || !id || strlen(end + 1) < len)
        return -1;
    ps_item *it = calloc(1, sizeof(*it));
    if (!it || !(it->id = strdup(id)) || !(*node_r = strndup(end + 1, len))) {
        ps_item_free(it);
        return -1;
    }
    const char *pub = json_string_value(json_object_get(j, "publisher"));
    it->publisher = pub ? strdup(pub) : NULL;
    it->when_ms = (int64_t)json_integer_value(json_object_get(j, "when"));
    it->seq = (uint64_t)json_integer_value(json_object_get(j, "seq"));
    if (xml) {
        it->bytes = strlen(xml);
        it->payload = xmppd_stanza_from_string(xml, it->bytes, XMPPD_NS_CLIENT);
    }
    if (xml && !it->payload) {
        ps_item_free(it);
        free(*node_r);
        return -1;
    }
    *it_r = it;
    return 0;
}

typedef struct ps_loaded {
    ps_item *it;
    char *node;
} ps_loaded;

static int ps_loaded_cmp(const void *a, const void *b)
{
    uint64_t x = ((const ps_loaded *)a)->it->seq, y = ((const ps_loaded *)b)->it->seq;
    return x < y ? -1 : x > y;
}

int ps_service_load(ps_service *s, const json_t *all, size_t *bad_r)
{
    const char *key;
    json_t *v;
    size_t bad = 0, n_items = 0;
    json_object_foreach((json_t *)all, key, v) {
        if (strncmp(key, "n:", 2) == 0 && ps_load_node(s, key + 2, v) < 0)
            return -1;
        n_items += strncmp(key, "i:", 2) == 0;
    }
    ps_loaded *items = calloc(n_items + 1, sizeof(*items));
    if (!items)
        return -1;
    size_t k = 0;
    json_object_foreach((json_t *)all, key, v) {
        if (strncmp(key, "i:", 2) != 0)
            continue;
        if (ps_load_item(key, v, &items[k].it, &items[k].node) < 0)
            bad++;
        else
            k++;
    }
    qsort(items, k, sizeof(*items), ps_loaded_cmp);
    for (size_t i = 0; i < k; i++) {
        ps_node *n = ps_node_find(s, items[i].node);
        if (n) {
            ps_item_put(n, items[i].it, NULL);
            if (items[i].it->seq > s->seq)
                s->seq = items[i].it->seq;
        } else {
            ps_item_free(items[i].it);
            bad++;
        }
        free(items[i].node);
    }
    free(items);
    if (bad_r)
        *bad_r = bad;
    return 0;
}
