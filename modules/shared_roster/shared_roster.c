/* shared_roster: puts the members of groups into each other's rosters
 * (what Prosody's mod_groups and ejabberd's mod_shared_roster do).
 *
 * Groups come from the configuration (members listed, or every account
 * of the host) and from the directory through auth_ldap's API (group
 * entries with member DNs or memberUid values, or the values of an
 * attribute on user entries, such as departmentNumber). Every `refresh`
 * the module reads its sources and builds a new model (sr_model.c); the
 * roster module merges the model's items into rosters through the
 * roster overlay this module publishes (roster_api.h): never stored,
 * subscriptions implied (`both` for a group shown to itself) without any
 * subscription request. When a refresh changes what an online account
 * sees, the changed items are pushed to it (RFC 6121 §2.1.6) and
 * presence follows: its available resources' presence goes to a contact
 * that now sees it, unavailable presence to one that no longer does.
 *
 * A source that cannot be read (directory down) keeps its last good
 * groups: contacts never vanish because of an outage. */
#define _GNU_SOURCE /* tdestroy, twalk_r */
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared_roster.h"

/* ---- options (their structs: shared_roster.h) ---- */

static const xmppd_option sr_group_fields[] = {
    { "name", XMPPD_OPT_STRING, XMPPD_OFF(sr_group_conf, name), NULL, 0, 0, NULL, 0,
      "roster group its members appear in (default: the group's id)" },
    { "members", XMPPD_OPT_LIST, XMPPD_OFF(sr_group_conf, members), "[]", 0, 0, NULL, 0,
      "accounts of the host: localparts or bare JIDs" },
    { "all_users", XMPPD_OPT_BOOL, XMPPD_OFF(sr_group_conf, all_users), "false", 0, 0, NULL, 0,
      "every account of the host is a member (the auth provider's list)" },
    { "shows", XMPPD_OPT_LIST, XMPPD_OFF(sr_group_conf, shows), NULL, 0, 0, NULL, 0,
      "ids of the groups (configured or from the directory) its members see (default: itself; [] none)" },
    { NULL }
};

static const xmppd_option sr_ldap_fields[] = {
    { "enabled", XMPPD_OPT_BOOL, XMPPD_OFF(sr_ldap_conf, enabled), "false", 0, 0, NULL, 0,
      "read groups from the directory of auth_ldap" },
    { "base", XMPPD_OPT_STRING, XMPPD_OFF(sr_ldap_conf, base), NULL, 0, 0, NULL, 0,
      "DN under which group entries are searched (default: auth_ldap's base)" },
    { "filter", XMPPD_OPT_STRING, XMPPD_OFF(sr_ldap_conf, filter),
      "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup)(objectClass=group))",
      0, 0, NULL, 0, "group entries (null: no group entries, only user_group_attribute)" },
    { "id_attribute", XMPPD_OPT_STRING, XMPPD_OFF(sr_ldap_conf, id_attribute), "cn", 0, 0, NULL, 0,
      "attribute naming a group entry (its id)" },
    { "name_attribute", XMPPD_OPT_STRING, XMPPD_OFF(sr_ldap_conf, name_attribute), "description", 0, 0, NULL, 0,
      "attribute with the group's display name (absent: the id)" },
    { "member_attributes", XMPPD_OPT_LIST, XMPPD_OFF(sr_ldap_conf, member_attributes),
      "[\"member\", \"uniqueMember\"]", 0, 0, NULL, 0, "attributes holding the DNs of members" },
    { "member_uid_attributes", XMPPD_OPT_LIST, XMPPD_OFF(sr_ldap_conf, member_uid_attributes), "[\"memberUid\"]",
      0, 0, NULL, 0, "attributes holding the account names of members" },
    { "user_group_attribute", XMPPD_OPT_STRING, XMPPD_OFF(sr_ldap_conf, user_group_attribute), NULL, 0, 0, NULL,
      0, "attribute of user entries whose every value is a group of that user (departmentNumber, AD: department)" },
    { "contact_name_attribute", XMPPD_OPT_STRING, XMPPD_OFF(sr_ldap_conf, contact_name_attribute), "displayName",
      0, 0, NULL, 0, "attribute of user entries shown as the contact's name (absent: no name)" },
    { NULL }
};

static const xmppd_option sr_options[] = {
    { "refresh", XMPPD_OPT_DURATION, XMPPD_OFF(sr_conf, refresh), "5m", 1000, 86400000, NULL, 0,
      "how often the groups are read again (membership changes are pushed then)" },
    { "max_group_size", XMPPD_OPT_INT, XMPPD_OFF(sr_conf, max_group_size), "5000", 1, 1000000, NULL, 0,
      "a group with more members is left out (logged): rosters that large help nobody" },
    { "groups", XMPPD_OPT_MAP, XMPPD_OFF(sr_conf, groups), "{}", 0, 0, NULL, 0,
      "groups by id: name, members, all_users, shows", sr_group_fields, sizeof(sr_group_conf) },
    { "ldap", XMPPD_OPT_SECTION, XMPPD_OFF(sr_conf, ldap), NULL, 0, 0, NULL, 0,
      "groups from the directory (auth_ldap)", sr_ldap_fields },
    { NULL }
};

void sr_strs_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void sr_lgroups_free(sr_lgroups *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->g[i].id);
        free(l->g[i].name);
        sr_strs_free(l->g[i].members, l->g[i].n);
    }
    free(l->g);
    sr_strs_free(l->names, l->n_names);
    memset(l, 0, sizeof(*l));
}

/* node@host of the host's account node, in the state's buffer. */
static const char *sr_bare(sr_state *st, const char *node)
{
    snprintf(st->user_buf, sizeof(st->user_buf), "%s@%s", node, st->domain);
    return st->user_buf;
}

char *sr_account_jid(const sr_state *st, const char *name)
{
    char *node = xmppd_nodeprep(name);
    char *jid = NULL;
    if (node && *node) {
        size_t len = strlen(node) + strlen(st->domain) + 2;
        if ((jid = malloc(len)))
            snprintf(jid, len, "%s@%s", node, st->domain);
    }
    free(node);
    return jid;
}

const char *sr_pair_find(char **pairs, size_t n, const char *key)
{
    size_t a = 0, b = n / 2;
    while (a < b) {
        size_t mid = (a + b) / 2;
        int c = strcmp(pairs[2 * mid], key);
        if (c == 0)
            return pairs[2 * mid + 1];
        if (c < 0)
            a = mid + 1;
        else
            b = mid;
    }
    return NULL;
}

/* ---- the overlay the roster module reads ---- */

/* The contact's name from the directory (contact_name_attribute). */
static const char *sr_contact_name(const sr_state *st, const char *jid)
{
    return sr_pair_find(st->ldap.names, st->ldap.n_names, jid);
}

static unsigned sr_roster_bits(unsigned sub)
{
    return ((sub & SR_TO) ? ROSTER_SUB_TO : 0) | ((sub & SR_FROM) ? ROSTER_SUB_FROM : 0);
}

static bool sr_ov_get(const roster_overlay *ov, const char *node, const char *jid, roster_contact *c)
{
    sr_state *st = (sr_state *)ov;
    unsigned sub = sr_model_item(st->model, sr_bare(st, node), jid, st->names, st->names_max);
    if (!sub)
        return false;
    *c = (roster_contact){ jid, sr_contact_name(st, jid), st->names, sr_roster_bits(sub) };
    return true;
}

typedef struct sr_each {
    sr_state *st;
    int (*fn)(const roster_contact *c, void *ud);
    void *ud;
} sr_each;

static int sr_each_contact(const char *jid, unsigned sub, const char *const *names, void *ud)
{
    sr_each *e = ud;
    roster_contact c = { jid, sr_contact_name(e->st, jid), names, sr_roster_bits(sub) };
    return e->fn(&c, e->ud);
}

static void sr_ov_foreach(const roster_overlay *ov, const char *node, int (*fn)(const roster_contact *c, void *ud),
                          void *ud)
{
    sr_state *st = (sr_state *)ov;
    sr_each e = { st, fn, ud };
    char user[sizeof(st->user_buf)];
    snprintf(user, sizeof(user), "%s", sr_bare(st, node));
    if (sr_model_contacts(st->model, user, sr_each_contact, &e) != 0)
        xmppd_log(st->m, XMPPD_LOG_ERROR, "out of memory listing the shared contacts of %s", user);
}

static const char *sr_ov_token(const roster_overlay *ov, const char *node)
{
    const sr_state *st = (const sr_state *)ov;
    return sr_model_groups(st->model) ? sr_model_token(st->model) : "";
}

/* ---- a refresh changes what online accounts see ---- */

typedef struct sr_item {
    const char *jid;
    unsigned sub;
    char *names; /* the group names, sorted, joined */
} sr_item;

typedef struct sr_items {
    sr_item *v;
    size_t n, cap;
} sr_items;

static int sr_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int sr_collect_item(const char *jid, unsigned sub, const char *const *names, void *ud)
{
    sr_items *it = ud;
    size_t n = 0, len = 1;
    while (names[n])
        len += strlen(names[n++]) + 1;
    const char **sorted = calloc(n + 1, sizeof(*sorted));
    char *joined = malloc(len);
    if (it->n == it->cap) {
        size_t cap = it->cap ? it->cap * 2 : 16;
        sr_item *nv = realloc(it->v, cap * sizeof(*nv));
        if (nv) {
            it->v = nv;
            it->cap = cap;
        }
    }
    if (!sorted || !joined || it->n == it->cap) {
        free(sorted);
        free(joined);
        return 1;
    }
    memcpy(sorted, names, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), sr_name_cmp);
    joined[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strcat(joined, sorted[i]);
        strcat(joined, "\n");
    }
    free(sorted);
    it->v[it->n++] = (sr_item){ jid, sub, joined };
    return 0;
}

static void sr_items_free(sr_items *it)
{
    for (size_t i = 0; i < it->n; i++)
        free(it->v[i].names);
    free(it->v);
}

typedef struct sr_presence_ctx {
    sr_state *st;
    const char *to;
    bool unavailable;
} sr_presence_ctx;

static int sr_send_presence(xmppd_session *s, void *ud)
{
    sr_presence_ctx *c = ud;
    const xmppd_stanza *last = xmppd_session_presence(s);
    if (!xmppd_session_available(s) || !xmppd_session_jid(s) || (!last && !c->unavailable))
        return 0;
    xmppd_stanza *p = c->unavailable ? xmppd_stanza_new("presence", XMPPD_NS_CLIENT) : xmppd_stanza_copy(last);
    if (!p)
        return 0;
    if (c->unavailable)
        xmppd_stanza_set_attr(p, "type", "unavailable");
    xmppd_stanza_set_attr(p, "from", xmppd_session_jid(s)->full);
    xmppd_stanza_set_attr(p, "to", c->to);
    xmppd_route(c->st->host, p);
    xmppd_stanza_unref(p);
    return 0;
}

static const roster_api *sr_roster(const sr_state *st)
{
    const roster_api *a = xmppd_use(st->host, "roster");
    return a && a->version >= 3 && a->size >= sizeof(roster_api) ? a : NULL;
}

/* One changed item of node: pushed, and node's presence follows what jid
 * may now see (from: the contact sees the account). */
static void sr_item_changed(sr_state *st, const roster_api *ra, const char *node, const char *jid, unsigned old_sub,
                            unsigned new_sub)
{
    ra->overlay_changed(ra, node, jid);
    sr_presence_ctx c = { st, jid, false };
    if ((new_sub & SR_FROM) && !(old_sub & SR_FROM)) {
        xmppd_user_sessions(st->host, node, sr_send_presence, &c);
    } else if ((old_sub & SR_FROM) && !(new_sub & SR_FROM)) {
        roster *r = ra->cached(ra, node);
        roster_item it;
        if (!(r && ra->get(r, jid, &it) && (it.sub & ROSTER_SUB_FROM))) { /* no stored subscription either */
            c.unavailable = true;
            xmppd_user_sessions(st->host, node, sr_send_presence, &c);
        }
    }
}

/* node's overlay items in the old and the new model, compared. */
static void sr_user_changed(sr_state *st, const roster_api *ra, const sr_model *old, const char *node)
{
    sr_items a = { 0 }, b = { 0 };
    char user[sizeof(st->user_buf)];
    snprintf(user, sizeof(user), "%s@%s", node, st->domain);
    if (sr_model_contacts(old, user, sr_collect_item, &a) != 0 ||
        sr_model_contacts(st->model, user, sr_collect_item, &b) != 0)
        xmppd_log(st->m, XMPPD_LOG_ERROR, "out of memory comparing the shared contacts of %s", user);
    size_t i = 0, k = 0;
    while (i < a.n || k < b.n) {
        int c = i == a.n ? 1 : k == b.n ? -1 : strcmp(a.v[i].jid, b.v[k].jid);
        if (c < 0) {
            sr_item_changed(st, ra, node, a.v[i].jid, a.v[i].sub, 0);
            i++;
        } else if (c > 0) {
            sr_item_changed(st, ra, node, b.v[k].jid, 0, b.v[k].sub);
            k++;
        } else {
            if (a.v[i].sub != b.v[k].sub || strcmp(a.v[i].names, b.v[k].names) != 0)
                sr_item_changed(st, ra, node, b.v[k].jid, a.v[i].sub, b.v[k].sub);
            i++;
            k++;
        }
    }
    sr_items_free(&a);
    sr_items_free(&b);
}

static int sr_str_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int sr_online_one(xmppd_session *s, void *ud)
{
    void **tree = ud;
    const char *user = xmppd_session_user(s);
    char *dup = user ? strdup(user) : NULL;
    char **found = dup ? tsearch(dup, tree, sr_str_cmp) : NULL;
    if (!found || *found != dup)
        free(dup);
    return 0;
}

typedef struct sr_walk {
    sr_state *st;
    const roster_api *ra;
    const sr_model *old;
} sr_walk;

static void sr_walk_user(const void *node, VISIT v, void *ud)
{
    sr_walk *w = ud;
    if (v == postorder || v == leaf)
        sr_user_changed(w->st, w->ra, w->old, *(char *const *)node);
}

/* The model changed from old: tell every online account what differs. */
static void sr_announce(sr_state *st, const sr_model *old)
{
    const roster_api *ra = sr_roster(st);
    if (!ra || strcmp(sr_model_token(old), sr_model_token(st->model)) == 0)
        return;
    void *online = NULL;
    xmppd_host_sessions(st->host, sr_online_one, &online);
    sr_walk w = { st, ra, old };
    twalk_r(online, sr_walk_user, &w);
    tdestroy(online, free);
}

/* ---- building a model ---- */

static size_t sr_count(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

/* Adds n members to group g (id for the log) unless that makes it larger
 * than max_group_size. 0, or -1 on OOM. */
static int sr_add_members(sr_state *st, sr_model *m, int g, char *const *jids, size_t n, size_t *added,
                          const char *id)
{
    if ((long long)(*added + n) > st->conf->max_group_size) {
        xmppd_log(st->m, XMPPD_LOG_WARN, "group %s has more members than max_group_size (%lld): the rest are "
                  "left out", id, st->conf->max_group_size);
        n = *added < (size_t)st->conf->max_group_size ? (size_t)st->conf->max_group_size - *added : 0;
    }
    for (size_t i = 0; i < n; i++)
        if (sr_model_member(m, g, jids[i]) != 0)
            return -1;
    *added += n;
    return 0;
}

/* The model from the directory's groups, then the configured ones (a
 * configured group with a directory group's id adds its members, and its
 * name and shows when given). NULL on OOM. */
static sr_model *sr_build(sr_state *st)
{
    sr_model *m = sr_model_new();
    const sr_group_conf *gc = st->conf->groups.items;
    for (size_t i = 0; m && i < st->ldap.n; i++) {
        const sr_lgroup *lg = &st->ldap.g[i];
        size_t added = 0;
        int g = sr_model_group(m, lg->id, lg->name, NULL);
        if (g < 0 || sr_add_members(st, m, g, lg->members, lg->n, &added, lg->id) != 0)
            goto oom;
    }
    for (size_t i = 0; m && i < st->conf->groups.n; i++) {
        size_t added = 0;
        int g = sr_model_group(m, gc[i].id, gc[i].name, gc[i].shows);
        if (g < 0 ||
            sr_add_members(st, m, g, st->config_members[i], sr_count(st->config_members[i]), &added, gc[i].id) ||
            (gc[i].all_users && sr_add_members(st, m, g, st->all, st->n_all, &added, gc[i].id) != 0))
            goto oom;
    }
    const char *unknown = NULL;
    if (!m || sr_model_finish(m, &unknown) != 0)
        goto oom;
    if (unknown && (!st->last_unknown || strcmp(st->last_unknown, unknown) != 0)) {
        xmppd_log(st->m, XMPPD_LOG_WARN, "a group shows \"%s\", which no source has: ignored", unknown);
        free(st->last_unknown);
        st->last_unknown = strdup(unknown);
    }
    return m;
oom:
    sr_model_free(m);
    xmppd_log(st->m, XMPPD_LOG_ERROR, "out of memory building the shared groups");
    return NULL;
}

void sr_rebuild(sr_state *st)
{
    sr_model *m = sr_build(st);
    if (!m)
        return;
    size_t n = sr_model_groups(m);
    const char **names = calloc(n + 1, sizeof(*names));
    if (!names) {
        sr_model_free(m);
        return;
    }
    sr_model *old = st->model;
    bool changed = strcmp(sr_model_token(old), sr_model_token(m)) != 0;
    st->model = m;
    free(st->names);
    st->names = names;
    st->names_max = n + 1;
    if (changed)
        xmppd_log(st->m, XMPPD_LOG_INFO, "shared groups: %zu in force (%s)", n, sr_model_token(m));
    sr_announce(st, old);
    sr_model_free(old);
}

static uint64_t sr_on_timer(void *ud)
{
    sr_state *st = ud;
    if (!st->running)
        sr_refresh_start(st);
    return (uint64_t)st->conf->refresh;
}

/* ---- module ---- */

/* The configured members as bare JIDs of this host; -1 (refused, logged)
 * for one that is not. */
static int sr_config_members(sr_state *st)
{
    const sr_group_conf *gc = st->conf->groups.items;
    if (!(st->config_members = calloc(st->conf->groups.n + 1, sizeof(*st->config_members))))
        return xmppd_module_refuse(st->m, "out of memory");
    for (size_t i = 0; i < st->conf->groups.n; i++) {
        size_t n = 0;
        while (gc[i].members && gc[i].members[n])
            n++;
        if (!(st->config_members[i] = calloc(n + 1, sizeof(char *))))
            return xmppd_module_refuse(st->m, "out of memory");
        st->needs_all |= gc[i].all_users;
        for (size_t k = 0; k < n; k++) {
            const char *mem = gc[i].members[k];
            xmppd_jid *j = strchr(mem, '@') ? xmppd_jid_parse(mem) : NULL;
            bool ok = strchr(mem, '@') ? j && j->node && !j->resource && strcmp(j->domain, st->domain) == 0 : true;
            char *jid = ok ? sr_account_jid(st, j ? j->node : mem) : NULL;
            xmppd_jid_free(j);
            if (!jid)
                return xmppd_module_refuse(st->m, "option groups.%s.members: \"%s\" is not an account of %s",
                                           gc[i].id, mem, st->domain);
            st->config_members[i][k] = jid;
        }
    }
    return 0;
}

static void sr_unload(xmppd_module *m)
{
    sr_state *st = xmppd_module_data(m);
    if (!st)
        return;
    for (size_t i = 0; st->config_members && st->config_members[i]; i++)
        sr_strs_free(st->config_members[i], sr_count(st->config_members[i]));
    free(st->config_members);
    sr_model_free(st->model);
    free(st->names);
    sr_strs_free(st->all, st->n_all);
    sr_lgroups_free(&st->ldap);
    free(st->last_unknown);
    free(st);
    xmppd_module_set_data(m, NULL);
}

static int sr_load(xmppd_module *m, const void *conf)
{
    sr_state *st = calloc(1, sizeof(*st));
    if (!st)
        return xmppd_module_refuse(m, "out of memory");
    st->ov = (roster_overlay){ ROSTER_OVERLAY_VERSION, sizeof(roster_overlay), sr_ov_get, sr_ov_foreach,
                               sr_ov_token };
    st->m = m;
    st->host = xmppd_module_host(m);
    st->domain = xmppd_host_name(st->host);
    st->conf = conf;
    xmppd_module_set_data(m, st);
    if (sr_config_members(st) != 0) {
        sr_unload(m);
        return -1;
    }
    /* the configured groups at once; the sources' on the first refresh */
    const char *unknown = NULL;
    if (!(st->model = sr_model_new()) || sr_model_finish(st->model, &unknown) != 0 ||
        !(st->names = calloc(1, sizeof(*st->names)))) {
        sr_unload(m);
        return xmppd_module_refuse(m, "out of memory");
    }
    st->names_max = 1;
    sr_rebuild(st);
    if (xmppd_provide(m, "roster_overlay", &st->ov) != 0 || !xmppd_timer_add(m, 0, sr_on_timer, st)) {
        sr_unload(m);
        return xmppd_module_refuse(m, "another roster overlay is loaded on this host");
    }
    return 0;
}

XMPPD_MODULE(shared_roster,
    .version = "1.0",
    .summary = "shared roster groups: members of groups (configured or from the directory) in each other's rosters",
    .depends = (const char *const[]){ "roster", NULL },
    .specs = (const char *const[]){ "RFC 6121", NULL },
    .options = sr_options,
    .conf_size = sizeof(sr_conf),
    .load = sr_load,
    .unload = sr_unload);
