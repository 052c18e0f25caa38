/* PEP services in XEP-0227 (§ "PEP", as Prosody writes them):
 *
 *   <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
 *     <configure node='N'><x xmlns='jabber:x:data' type='submit'>...</x></configure>
 *     <affiliations node='N'><affiliation jid='J' affiliation='member'/></affiliations>
 *   </pubsub>
 *   <pubsub xmlns='http://jabber.org/protocol/pubsub'>
 *     <items node='N'><item id='I' publisher='J'>payload</item>...</items>
 *   </pubsub>
 *
 * and the keyval entries of mod_pep's store "pep" (modules/pubsub/ps_store.c):
 * "n:NODE" {config, affiliations, subscriptions} and "i:LEN:NODEID" {id,
 * publisher, when, seq, xml}. The configuration goes through the pubsub
 * engine's own form code, so both directions name fields as the engine
 * does. Subscriptions are not exported: PEP's are the contacts' presence
 * subscriptions, and explicit ones name other servers' sessions. */
#define _GNU_SOURCE /* asprintf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pubsub/ps.h"
#include "pie.h"

/* Limits for the forms only: what the file says is taken as it is. */
static const ps_limits pie_lim = { 100000, 100000, 16u << 20, 10000000, 1000000 };

/* The node name of an item key "i:LEN:NODEID" (malloc'd), or NULL. */
static char *item_node(const char *key)
{
    char *end;
    unsigned long len = strtoul(key + 2, &end, 10);
    if (*end != ':' || strlen(end + 1) < len)
        return NULL;
    return strndup(end + 1, len);
}

static xmppd_stanza *child_with_node(xmppd_stanza *parent, const char *name, const char *node)
{
    for (xmppd_stanza *c = xmppd_stanza_first(parent); c; c = xmppd_stanza_next(c)) {
        const char *n = xmppd_stanza_attr(c, "node");
        if (strcmp(xmppd_stanza_name(c), name) == 0 && n && strcmp(n, node) == 0)
            return c;
    }
    xmppd_stanza *c = xmppd_stanza_tag(parent, name, NULL);
    if (c)
        xmppd_stanza_set_attr(c, "node", node);
    return c;
}

/* Items oldest first (by seq), as a node keeps them. */
static int by_seq(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "seq"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "seq"));
    return x < y ? -1 : x > y;
}

int pie_pep_export(const json_t *all, xmppd_stanza *user_el)
{
    if (!json_object_size(all))
        return 0;
    xmppd_stanza *owner = xmppd_stanza_new("pubsub", PIE_NS_PUBSUB_OWNER);
    xmppd_stanza *pubsub = xmppd_stanza_new("pubsub", PIE_NS_PUBSUB);
    size_t n_items = 0, k = 0;
    json_t **items = calloc(json_object_size(all) + 1, sizeof(*items));
    if (!owner || !pubsub || !items)
        goto oom;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)all, key, v) {
        if (strncmp(key, "i:", 2) == 0) {
            items[n_items++] = v;
            continue;
        }
        if (strncmp(key, "n:", 2) != 0)
            continue;
        const char *node = key + 2;
        ps_config cfg, none;
        memset(&none, 0, sizeof(none));
        ps_config_from_json(&cfg, json_object_get(v, "config"), &none);
        xmppd_stanza *form = ps_config_form(&cfg, "submit", &pie_lim, true);
        ps_config_clear(&cfg);
        xmppd_stanza *conf = child_with_node(owner, "configure", node);
        if (!form || !conf) {
            xmppd_stanza_unref(form);
            goto oom;
        }
        xmppd_stanza_add(conf, form); /* takes our reference */
        const char *jid;
        json_t *aff;
        xmppd_stanza *affs = NULL;
        json_object_foreach(json_object_get(v, "affiliations"), jid, aff) {
            if (!affs && !(affs = child_with_node(owner, "affiliations", node)))
                goto oom;
            xmppd_stanza *a = xmppd_stanza_tag(affs, "affiliation", NULL);
            if (!a)
                goto oom;
            xmppd_stanza_set_attr(a, "jid", jid);
            xmppd_stanza_set_attr(a, "affiliation", json_string_value(aff));
        }
    }
    qsort(items, n_items, sizeof(*items), by_seq);
    for (k = 0; k < n_items; k++) {
        const char *ikey = NULL;
        json_t *iv;
        json_object_foreach((json_t *)all, ikey, iv)
            if (iv == items[k])
                break;
        char *node = ikey ? item_node(ikey) : NULL;
        xmppd_stanza *list = node ? child_with_node(pubsub, "items", node) : NULL;
        free(node);
        xmppd_stanza *it = list ? xmppd_stanza_tag(list, "item", NULL) : NULL;
        if (!it)
            goto oom;
        xmppd_stanza_set_attr(it, "id", json_string_value(json_object_get(items[k], "id")));
        const char *pub = json_string_value(json_object_get(items[k], "publisher"));
        if (pub)
            xmppd_stanza_set_attr(it, "publisher", pub);
        const char *xml = json_string_value(json_object_get(items[k], "xml"));
        xmppd_stanza *payload = xml ? xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT) : NULL;
        if (payload) {
            xmppd_stanza_add(it, payload);
        }
    }
    /* the user element takes a non-empty one's reference */
    if (xmppd_stanza_first(owner))
        xmppd_stanza_add(user_el, owner);
    else
        xmppd_stanza_unref(owner);
    if (xmppd_stanza_first(pubsub))
        xmppd_stanza_add(user_el, pubsub);
    else
        xmppd_stanza_unref(pubsub);
    free(items);
    return 0;
oom:
    xmppd_stanza_unref(owner);
    xmppd_stanza_unref(pubsub);
    free(items);
    return -1;
}

/* The stored configuration of a node from its configure form: only the
 * fields the form names, so the others keep mod_pep's defaults. */
static json_t *config_from_form(const xmppd_stanza *configure, json_t *skipped, const char *node)
{
    json_t *out = json_object();
    const xmppd_stanza *x = xmppd_stanza_child(configure, "x", "jabber:x:data");
    if (!x || !out)
        return out;
    const char *why = NULL;
    xmppd_form *f = xmppd_form_parse(x, &why);
    ps_config c;
    memset(&c, 0, sizeof(c));
    c.max_items = 1;
    if (!f || ps_config_apply(&c, f, &pie_lim, true, &why) != 0) {
        json_array_append_new(skipped, json_sprintf("pep node %s: configuration (%s)", node,
                                                    why ? why : "not a data form"));
        xmppd_form_free(f);
        ps_config_clear(&c);
        return out;
    }
    json_t *all = ps_config_json(&c);
    static const struct { const char *var, *key; } map[] = {
        { "pubsub#title", "title" }, { "pubsub#description", "description" },
        { "pubsub#type", "type" }, { "pubsub#access_model", "access" },
        { "pubsub#publish_model", "publish" }, { "pubsub#send_last_published_item", "send_last" },
        { "pubsub#persist_items", "persist" }, { "pubsub#max_items", "max_items" },
        { "pubsub#deliver_notifications", "deliver_notifications" },
        { "pubsub#deliver_payloads", "deliver_payloads" },
        { "pubsub#notify_retract", "notify_retract" }, { "pubsub#notify_delete", "notify_delete" },
        { "pubsub#notify_config", "notify_config" },
        { "pubsub#notification_type", "notification_type" },
        { "pubsub#roster_groups_allowed", "groups" },
    };
    for (size_t i = 0; all && i < sizeof(map) / sizeof(map[0]); i++) {
        json_t *v = json_object_get(all, map[i].key);
        if (xmppd_form_has(f, map[i].var) && v)
            json_object_set(out, map[i].key, v);
    }
    json_decref(all);
    xmppd_form_free(f);
    ps_config_clear(&c);
    return out;
}

static json_t *node_entry(json_t *entries, const char *node)
{
    char *key = ps_key_node(node);
    json_t *e = key ? json_object_get(entries, key) : NULL;
    if (key && !e) {
        e = json_pack("{s:{}, s:{}, s:[]}", "config", "affiliations", "subscriptions");
        json_object_set_new(entries, key, e);
    }
    free(key);
    return e;
}

json_t *pie_pep_import(const xmppd_stanza *user_el, json_t *skipped, size_t *items_r)
{
    json_t *entries = json_object();
    *items_r = 0;
    if (!entries)
        return NULL;
    for (xmppd_stanza *ps = xmppd_stanza_first(user_el); ps; ps = xmppd_stanza_next(ps)) {
        if (strcmp(xmppd_stanza_name(ps), "pubsub") != 0)
            continue;
        bool is_owner = strcmp(xmppd_stanza_ns(ps), PIE_NS_PUBSUB_OWNER) == 0;
        if (!is_owner && strcmp(xmppd_stanza_ns(ps), PIE_NS_PUBSUB) != 0)
            continue;
        for (xmppd_stanza *c = xmppd_stanza_first(ps); c; c = xmppd_stanza_next(c)) {
            const char *node = xmppd_stanza_attr(c, "node");
            const char *what = xmppd_stanza_name(c);
            if (!node || !*node || strlen(node) > PS_NAME_MAX) {
                json_array_append_new(skipped, json_sprintf("pep: <%s/> without a usable node name",
                                                            what));
                continue;
            }
            json_t *e = node_entry(entries, node);
            if (!e)
                goto oom;
            if (is_owner && strcmp(what, "configure") == 0) {
                json_object_set_new(e, "config", config_from_form(c, skipped, node));
            } else if (is_owner && strcmp(what, "affiliations") == 0) {
                for (xmppd_stanza *a = xmppd_stanza_first(c); a; a = xmppd_stanza_next(a)) {
                    const char *jid = xmppd_stanza_attr(a, "jid");
                    const char *aff = xmppd_stanza_attr(a, "affiliation");
                    if (jid && aff && ps_aff_parse(aff) >= 0)
                        json_object_set_new(json_object_get(e, "affiliations"), jid, json_string(aff));
                }
            } else if (!is_owner && strcmp(what, "items") == 0) {
                for (xmppd_stanza *it = xmppd_stanza_first(c); it; it = xmppd_stanza_next(it)) {
                    const char *id = xmppd_stanza_attr(it, "id");
                    if (strcmp(xmppd_stanza_name(it), "item") != 0 || !id || !*id ||
                        strlen(id) > PS_NAME_MAX) {
                        json_array_append_new(skipped, json_sprintf("pep node %s: an item without "
                                                                    "a usable id", node));
                        continue;
                    }
                    xmppd_stanza *payload = xmppd_stanza_first(it);
                    char *xml = payload ? xmppd_stanza_to_string(payload, XMPPD_NS_CLIENT, NULL) : NULL;
                    char *key = ps_key_item(node, id);
                    (*items_r)++;
                    json_t *v = json_pack("{s:s, s:s?, s:I, s:I, s:s?}", "id", id, "publisher",
                                          xmppd_stanza_attr(it, "publisher"), "when",
                                          (json_int_t)xmppd_now_ms(), "seq", (json_int_t)*items_r,
                                          "xml", xml);
                    free(xml);
                    if (!key || !v) {
                        free(key);
                        json_decref(v);
                        goto oom;
                    }
                    json_object_set_new(entries, key, v);
                    free(key);
                }
            } else {
                json_array_append_new(skipped, json_sprintf("pep node %s: <%s/> (not supported)",
                                                            node, what));
            }
        }
    }
    return entries;
oom:
    json_decref(entries);
    return NULL;
}
