/* Node configuration (XEP-0060 §8.2, §16.4.4): the pubsub#node_config
 * fields, their forms, publish-options preconditions (§7.1.5, XEP-0223)
 * and the stored JSON. One table of names per enumerated field serves the
 * form, the parser and the JSON. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps.h"

static const char *const ps_access_names[] = { "open", "presence", "roster", "whitelist", NULL };
static const char *const ps_publish_names[] = { "publishers", "subscribers", "open", NULL };
static const char *const ps_sendlast_names[] = { "never", "on_sub", "on_sub_and_presence", NULL };
static const char *const ps_aff_names[] = { "outcast", "none", "member", "publish-only", "publisher",
                                            "owner", NULL };
static const char *const ps_notif_names[] = { "headline", "normal", NULL };

static int ps_name_index(const char *const *names, const char *s)
{
    for (int i = 0; s && names[i]; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

const char *ps_access_name(int access)
{
    return ps_access_names[access];
}

const char *ps_aff_name(int aff)
{
    return ps_aff_names[aff];
}

int ps_aff_parse(const char *s)
{
    return ps_name_index(ps_aff_names, s);
}

/* ---- copies ------------------------------------------------------------------------ */

static char **ps_strv_dup(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    if (!v)
        return NULL;
    char **out = calloc(n + 1, sizeof(*out));
    for (size_t i = 0; out && i < n; i++)
        if (!(out[i] = strdup(v[i]))) {
            while (i > 0)
                free(out[--i]);
            free(out);
            return NULL;
        }
    return out;
}

static void ps_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static char *ps_strdup0(const char *s)
{
    return s ? strdup(s) : NULL;
}

void ps_config_copy(ps_config *dst, const ps_config *src)
{
    *dst = *src;
    dst->title = ps_strdup0(src->title);
    dst->description = ps_strdup0(src->description);
    dst->payload_type = ps_strdup0(src->payload_type);
    dst->groups = ps_strv_dup(src->groups);
}

void ps_config_clear(ps_config *c)
{
    free(c->title);
    free(c->description);
    free(c->payload_type);
    ps_strv_free(c->groups);
    memset(c, 0, sizeof(*c));
}

/* ---- reading a form ------------------------------------------------------------------- */

/* A boolean value per XEP-0004 §3.3; -1 when it is none. */
static int ps_bool(const char *v)
{
    if (v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0))
        return 1;
    if (v && (strcmp(v, "0") == 0 || strcmp(v, "false") == 0))
        return 0;
    return -1;
}

static int ps_set_text(char **dst, const char *v)
{
    char *s = v && *v ? strdup(v) : NULL;
    if (v && *v && !s)
        return -1;
    free(*dst);
    *dst = s;
    return 0;
}

/* "max" or an integer from 1 to the limit. */
static int ps_parse_max_items(const char *v, const ps_limits *lim, long *out, const char **why_r)
{
    if (v && strcmp(v, "max") == 0) {
        *out = PS_MAX_ITEMS_MAX;
        return 0;
    }
    char *end;
    errno = 0;
    long n = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || n < 1) {
        *why_r = "pubsub#max_items must be a positive integer or \"max\"";
        return -1;
    }
    if (n > lim->max_items) {
        *why_r = "pubsub#max_items is above this service's limit";
        return -2;
    }
    *out = n;
    return 0;
}

/* Sets one field of c; 0, -1 (bad value or unknown field), -2 (a value
 * this service does not offer), -3 (an access model it does not offer). */
static int ps_set_field(ps_config *c, const xmppd_form *f, const char *var, const ps_limits *lim,
                        bool pep, const char **why_r)
{
    const char *v = xmppd_form_value(f, var);
    int idx, b;
    *why_r = "a value is not valid for its field";
    if (strcmp(var, "pubsub#title") == 0)
        return ps_set_text(&c->title, v);
    if (strcmp(var, "pubsub#description") == 0)
        return ps_set_text(&c->description, v);
    if (strcmp(var, "pubsub#type") == 0)
        return ps_set_text(&c->payload_type, v);
    if (strcmp(var, "pubsub#max_items") == 0)
        return ps_parse_max_items(v, lim, &c->max_items, why_r);
    if (strcmp(var, "pubsub#access_model") == 0) {
        if ((idx = ps_name_index(ps_access_names, v)) < 0) {
            *why_r = "pubsub#access_model: not an access model (authorize is not offered)";
            return v && strcmp(v, "authorize") == 0 ? -3 : -1;
        }
        if (!pep && (idx == PS_ACCESS_PRESENCE || idx == PS_ACCESS_ROSTER)) {
            *why_r = "pubsub#access_model: presence and roster need an account's roster (PEP)";
            return -3;
        }
        c->access = idx;
        return 0;
    }
    if (strcmp(var, "pubsub#publish_model") == 0)
        return (idx = ps_name_index(ps_publish_names, v)) < 0 ? -1 : (c->publish_model = idx, 0);
    if (strcmp(var, "pubsub#send_last_published_item") == 0)
        return (idx = ps_name_index(ps_sendlast_names, v)) < 0 ? -1 : (c->send_last = idx, 0);
    if (strcmp(var, "pubsub#notification_type") == 0)
        return (idx = ps_name_index(ps_notif_names, v)) < 0 ? -1 : (c->notification_normal = idx, 0);
    if (strcmp(var, "pubsub#node_type") == 0) {
        *why_r = "pubsub#node_type: only leaf nodes are offered (no collections)";
        return v && strcmp(v, "leaf") == 0 ? 0 : -2;
    }
    if (strcmp(var, "pubsub#roster_groups_allowed") == 0) {
        size_t n;
        const char *const *vals = xmppd_form_values(f, var, &n);
        char **g = ps_strv_dup((char *const *)vals);
        if (!g)
            return -1;
        ps_strv_free(c->groups);
        c->groups = g;
        return 0;
    }
    static const struct { const char *var; size_t off; } bools[] = {
        { "pubsub#persist_items", offsetof(ps_config, persist_items) },
        { "pubsub#deliver_notifications", offsetof(ps_config, deliver_notifications) },
        { "pubsub#deliver_payloads", offsetof(ps_config, deliver_payloads) },
        { "pubsub#notify_retract", offsetof(ps_config, notify_retract) },
        { "pubsub#notify_delete", offsetof(ps_config, notify_delete) },
        { "pubsub#notify_config", offsetof(ps_config, notify_config) },
    };
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++)
        if (strcmp(var, bools[i].var) == 0) {
            if ((b = ps_bool(v)) < 0)
                return -1;
            *(bool *)((char *)c + bools[i].off) = b;
            return 0;
        }
    *why_r = "the form has a field this service does not know";
    return -1;
}

int ps_config_apply(ps_config *c, const xmppd_form *f, const ps_limits *lim, bool pep,
                    const char **why_r)
{
    ps_config tmp;
    ps_config_copy(&tmp, c);
    for (size_t i = 0; i < xmppd_form_nfields(f); i++) {
        const char *var = xmppd_form_field_var(f, i);
        if (strcmp(var, "FORM_TYPE") == 0)
            continue;
        int rc = ps_set_field(&tmp, f, var, lim, pep, why_r);
        if (rc < 0) {
            ps_config_clear(&tmp);
            return rc;
        }
    }
    ps_config_clear(c);
    *c = tmp;
    return 0;
}

static bool ps_str_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool ps_strv_eq(char *const *a, char *const *b)
{
    size_t i = 0;
    for (; a && b && a[i] && b[i]; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return (!a || !a[i]) && (!b || !b[i]);
}

static long ps_effective_max(long v, const ps_limits *lim)
{
    return v == PS_MAX_ITEMS_MAX || v > lim->max_items ? lim->max_items : v;
}

int ps_config_check(const ps_config *c, const xmppd_form *f, const ps_limits *lim,
                    const char **why_r)
{
    ps_config want;
    ps_config_copy(&want, c);
    int rc = ps_config_apply(&want, f, lim, true, why_r);
    if (rc == 0) {
        bool same = ps_str_eq(want.title, c->title) && ps_str_eq(want.description, c->description) &&
                    ps_str_eq(want.payload_type, c->payload_type) && want.access == c->access &&
                    want.publish_model == c->publish_model && want.send_last == c->send_last &&
                    ps_effective_max(want.max_items, lim) == ps_effective_max(c->max_items, lim) &&
                    want.persist_items == c->persist_items &&
                    want.deliver_notifications == c->deliver_notifications &&
                    want.deliver_payloads == c->deliver_payloads &&
                    want.notify_retract == c->notify_retract &&
                    want.notify_delete == c->notify_delete &&
                    want.notify_config == c->notify_config &&
                    want.notification_normal == c->notification_normal &&
                    ps_strv_eq(want.groups, c->groups);
        rc = same ? 0 : 1;
    }
    ps_config_clear(&want);
    return rc;
}

/* ---- building forms -------------------------------------------------------------------- */

static void ps_field_list(xmppd_stanza *x, const char *var, const char *label,
                          const char *const *names, int value, bool with_options)
{
    xmppd_stanza *f = xmppd_form_add_field(x, var, "list-single", label, names[value]);
    for (int i = 0; f && with_options && names[i]; i++)
        xmppd_form_add_option(f, NULL, names[i]);
}

static void ps_field_bool(xmppd_stanza *x, const char *var, const char *label, bool v)
{
    xmppd_form_add_field(x, var, "boolean", label, v ? "1" : "0");
}

xmppd_stanza *ps_config_form(const ps_config *c, const char *type, const ps_limits *lim, bool pep)
{
    bool opts = strcmp(type, "form") == 0;
    xmppd_stanza *x = xmppd_form_new(type, PS_FORM_NODE_CONFIG, NULL);
    if (!x)
        return NULL;
    char max[32];
    if (c->max_items == PS_MAX_ITEMS_MAX)
        snprintf(max, sizeof(max), "max");
    else
        snprintf(max, sizeof(max), "%ld", c->max_items);
    xmppd_form_add_field(x, "pubsub#title", "text-single", "A friendly name for the node", c->title);
    xmppd_form_add_field(x, "pubsub#description", "text-single", "A description of the node",
                         c->description);
    xmppd_form_add_field(x, "pubsub#type", "text-single", "The type of node data (its namespace)",
                         c->payload_type);
    char label[96];
    snprintf(label, sizeof(label), "Max number of items to keep (up to %ld, or \"max\")",
             lim->max_items);
    xmppd_form_add_field(x, "pubsub#max_items", "text-single", label, max);
    ps_field_bool(x, "pubsub#persist_items", "Keep items in storage", c->persist_items);
    xmppd_stanza *f = xmppd_form_add_field(x, "pubsub#access_model", "list-single",
                                           "Who may subscribe and retrieve items",
                                           ps_access_names[c->access]);
    for (int i = 0; f && opts && ps_access_names[i]; i++)
        if (pep || (i != PS_ACCESS_PRESENCE && i != PS_ACCESS_ROSTER))
            xmppd_form_add_option(f, NULL, ps_access_names[i]);
    f = xmppd_form_add_field(x, "pubsub#roster_groups_allowed", "list-multi",
                             "Roster groups allowed (access model roster)", NULL);
    for (size_t i = 0; f && c->groups && c->groups[i]; i++)
        xmppd_form_add_value(f, c->groups[i]);
    ps_field_list(x, "pubsub#publish_model", "Who may publish", ps_publish_names, c->publish_model,
                  opts);
    ps_field_list(x, "pubsub#send_last_published_item", "When to send the last published item",
                  ps_sendlast_names, c->send_last, opts);
    ps_field_bool(x, "pubsub#deliver_notifications", "Deliver event notifications",
                  c->deliver_notifications);
    ps_field_bool(x, "pubsub#deliver_payloads", "Deliver payloads with event notifications",
                  c->deliver_payloads);
    ps_field_bool(x, "pubsub#notify_retract", "Notify subscribers when items are removed",
                  c->notify_retract);
    ps_field_bool(x, "pubsub#notify_delete", "Notify subscribers when the node is deleted",
                  c->notify_delete);
    ps_field_bool(x, "pubsub#notify_config", "Notify subscribers when the configuration changes",
                  c->notify_config);
    ps_field_list(x, "pubsub#notification_type", "Message type of notifications", ps_notif_names,
                  c->notification_normal, opts);
    return x;
}

xmppd_stanza *ps_meta_form(const ps_node *n)
{
    xmppd_stanza *x = xmppd_form_new("result", PS_FORM_META, NULL);
    if (!x)
        return NULL;
    xmppd_form_add_field(x, "pubsub#title", NULL, NULL, n->cfg.title);
    xmppd_form_add_field(x, "pubsub#description", NULL, NULL, n->cfg.description);
    xmppd_form_add_field(x, "pubsub#type", NULL, NULL, n->cfg.payload_type);
    xmppd_form_add_field(x, "pubsub#access_model", NULL, NULL, ps_access_names[n->cfg.access]);
    xmppd_form_add_field(x, "pubsub#publish_model", NULL, NULL,
                         ps_publish_names[n->cfg.publish_model]);
    char count[32];
    snprintf(count, sizeof(count), "%zu", n->n_items);
    xmppd_form_add_field(x, "pubsub#num_items", NULL, NULL, count);
    xmppd_stanza *owners = xmppd_form_add_field(x, "pubsub#owner", "jid-multi", NULL, NULL);
    for (const ps_affiliation *a = n->affs; owners && a; a = a->next)
        if (a->aff == PS_AFF_OWNER)
            xmppd_form_add_value(owners, a->jid);
    return x;
}

/* ---- stored JSON --------------------------------------------------------------------- */

json_t *ps_config_json(const ps_config *c)
{
    json_t *j = json_pack("{s:s?, s:s?, s:s?, s:s, s:s, s:s, s:b, s:b, s:b, s:b, s:b, s:b, s:s}",
                          "title", c->title, "description", c->description, "type",
                          c->payload_type, "access", ps_access_names[c->access], "publish",
                          ps_publish_names[c->publish_model], "send_last",
                          ps_sendlast_names[c->send_last], "persist", c->persist_items,
                          "deliver_notifications", c->deliver_notifications, "deliver_payloads",
                          c->deliver_payloads, "notify_retract", c->notify_retract,
                          "notify_delete", c->notify_delete, "notify_config", c->notify_config,
                          "notification_type", ps_notif_names[c->notification_normal]);
    if (!j)
        return NULL;
    json_object_set_new(j, "max_items", c->max_items == PS_MAX_ITEMS_MAX
                                            ? json_string("max")
                                            : json_integer(c->max_items));
    if (c->groups) {
        json_t *g = json_array();
        for (size_t i = 0; g && c->groups[i]; i++)
            json_array_append_new(g, json_string(c->groups[i]));
        json_object_set_new(j, "groups", g);
    }
    return j;
}

static int ps_json_enum(const json_t *j, const char *key, const char *const *names, int def)
{
    int i = ps_name_index(names, json_string_value(json_object_get(j, key)));
    return i < 0 ? def : i;
}

static bool ps_json_bool(const json_t *j, const char *key, bool def)
{
    const json_t *v = json_object_get(j, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static char *ps_json_str(const json_t *j, const char *key)
{
    return ps_strdup0(json_string_value(json_object_get(j, key)));
}

void ps_config_from_json(ps_config *c, const json_t *j, const ps_config *d)
{
    memset(c, 0, sizeof(*c));
    c->title = ps_json_str(j, "title");
    c->description = ps_json_str(j, "description");
    c->payload_type = ps_json_str(j, "type");
    c->access = ps_json_enum(j, "access", ps_access_names, d->access);
    c->publish_model = ps_json_enum(j, "publish", ps_publish_names, d->publish_model);
    c->send_last = ps_json_enum(j, "send_last", ps_sendlast_names, d->send_last);
    c->notification_normal = ps_json_enum(j, "notification_type", ps_notif_names,
                                          d->notification_normal);
    const json_t *max = json_object_get(j, "max_items");
    c->max_items = json_is_integer(max) && json_integer_value(max) >= 1
                       ? (long)json_integer_value(max)
                       : json_is_string(max) ? PS_MAX_ITEMS_MAX : d->max_items;
    c->persist_items = ps_json_bool(j, "persist", d->persist_items);
    c->deliver_notifications = ps_json_bool(j, "deliver_notifications", d->deliver_notifications);
    c->deliver_payloads = ps_json_bool(j, "deliver_payloads", d->deliver_payloads);
    c->notify_retract = ps_json_bool(j, "notify_retract", d->notify_retract);
    c->notify_delete = ps_json_bool(j, "notify_delete", d->notify_delete);
    c->notify_config = ps_json_bool(j, "notify_config", d->notify_config);
    const json_t *g = json_object_get(j, "groups");
    if (json_is_array(g)) {
        size_t n = json_array_size(g), k = 0;
        c->groups = calloc(n + 1, sizeof(*c->groups));
        for (size_t i = 0; c->groups && i < n; i++) {
            const char *s = json_string_value(json_array_get(g, i));
            if (s && (c->groups[k] = strdup(s)))
                k++;
        }
    }
}
