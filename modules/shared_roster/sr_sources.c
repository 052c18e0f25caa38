/* shared_roster: reading the sources of a refresh: the host's account
 * list (all_users groups) and the directory, through auth_ldap's API
 * (user entries: DNs, account names, contact names, attribute groups; then
 * group entries: member DNs and memberUid values). A source that fails
 * keeps its last good answer (sr_state). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared_roster.h"

/* One refresh: the sources it waits for. Each answers once (or with a
 * CANCELLED status while the module unloads); the last one builds. */
struct sr_refresh {
    sr_state *st;
    int pending;
    bool cancelled;
    char **all;           /* accounts, when the list came */
    size_t n_all;
    bool all_ok;
    sr_lgroups ldap;      /* groups, when the directory answered */
    bool ldap_ok;
    char **dns;           /* users: normalised DN, bare JID, ... sorted by DN */
    size_t n_dns;
    const char **jids;    /* the users' bare JIDs (borrowed from dns), sorted */
    size_t n_jids;
};

static void sr_refresh_free(sr_refresh *r)
{
    sr_strs_free(r->all, r->n_all);
    sr_lgroups_free(&r->ldap);
    sr_strs_free(r->dns, r->n_dns);
    free(r->jids);
    free(r);
}

/* One source answered: the last one puts the new groups in force. */
static void sr_step_done(sr_refresh *r)
{
    if (--r->pending > 0)
        return;
    sr_state *st = r->st;
    if (!r->cancelled) {
        st->running = NULL;
        if (r->all_ok) {
            sr_strs_free(st->all, st->n_all);
            st->all = r->all;
            st->n_all = r->n_all;
            r->all = NULL;
            r->n_all = 0;
        }
        if (r->ldap_ok) {
            sr_lgroups_free(&st->ldap);
            st->ldap = r->ldap;
            memset(&r->ldap, 0, sizeof(r->ldap));
        }
        sr_rebuild(st);
    }
    sr_refresh_free(r);
}

static void sr_on_accounts(int result, const char *const *users, size_t n, void *ud)
{
    sr_refresh *r = ud;
    if (result == XMPPD_AUTH_CANCELLED) {
        r->cancelled = true;
    } else if (result != XMPPD_AUTH_OK) {
        xmppd_log(r->st->m, XMPPD_LOG_WARN, "listing the accounts for all_users groups failed (%s): the last "
                  "list stays", xmppd_auth_result_str(result));
    } else if ((r->all = calloc(n + 1, sizeof(*r->all)))) {
        r->all_ok = true;
        for (size_t i = 0; i < n && r->all_ok; i++) {
            size_t len = strlen(users[i]) + strlen(r->st->domain) + 2;
            if ((r->all[i] = malloc(len)))
                snprintf(r->all[i], len, "%s@%s", users[i], r->st->domain);
            else
                r->all_ok = false;
            r->n_all = i + 1;
        }
    }
    sr_step_done(r);
}

/* A DN as compared here: lower case, no spaces after separators. AD and
 * OpenLDAP return member DNs as they return entry DNs, up to that. */
static char *sr_dn_norm(const char *dn)
{
    char *out = malloc(strlen(dn) + 1), *o = out;
    for (const char *p = dn; out && *p; p++) {
        if (*p == ' ' && o > out && (o[-1] == ',' || o[-1] == '=' || o[-1] == '+'))
            continue;
        if (*p == '\\' && p[1]) { /* an escaped character stays as it is */
            *o++ = *p++;
            *o++ = *p;
            continue;
        }
        *o++ = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    }
    if (out)
        *o = '\0';
    return out;
}

static const directory_api *sr_directory(const sr_state *st)
{
    const directory_api *d = xmppd_use(st->host, "directory");
    return d && d->version >= DIRECTORY_API_VERSION && d->size >= sizeof(directory_api) ? d : NULL;
}

static int sr_pair_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts pairs (key, value, key, value...) by key. */
static void sr_pairs_sort(char **pairs, size_t n)
{
    qsort(pairs, n / 2, 2 * sizeof(*pairs), sr_pair_cmp);
}

static int sr_lgroup_add(sr_lgroups *l, const char *id, const char *name)
{
    sr_lgroup *ng = realloc(l->g, (l->n + 1) * sizeof(*ng));
    if (!ng)
        return -1;
    l->g = ng;
    sr_lgroup *g = &ng[l->n];
    memset(g, 0, sizeof(*g));
    if (!(g->id = strdup(id)) || !(g->name = strdup(name ? name : id))) {
        free(g->id);
        free(g->name);
        return -1;
    }
    l->n++;
    return 0;
}

static int sr_lgroup_member(sr_lgroup *g, const char *jid)
{
    char **nm = realloc(g->members, (g->n + 1) * sizeof(*nm));
    if (!nm)
        return -1;
    g->members = nm;
    if (!(nm[g->n] = strdup(jid)))
        return -1;
    g->n++;
    return 0;
}

static sr_lgroup *sr_lgroup_find(sr_lgroups *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->g[i].id, id) == 0)
            return &l->g[i];
    return NULL;
}

static const char *sr_first(const directory_entry *e, const char *attr)
{
    const directory_attr *a = attr ? directory_attr_get(e, attr) : NULL;
    return a && a->n > 0 && strlen(a->vals[0].val) == a->vals[0].len ? a->vals[0].val : NULL;
}

/* Group entries: members by DN (through the users' DNs) or by name. */
static void sr_on_groups(int status, const directory_entry *entries, size_t n, void *ud)
{
    sr_refresh *r = ud;
    const sr_ldap_conf *lc = &r->st->conf->ldap;
    if (status == DIRECTORY_CANCELLED)
        r->cancelled = true;
    else if (status != DIRECTORY_OK)
        r->ldap_ok = false;
    for (size_t i = 0; r->ldap_ok && status == DIRECTORY_OK && i < n; i++) {
        const char *id = sr_first(&entries[i], lc->id_attribute);
        if (!id || sr_lgroup_find(&r->ldap, id) || sr_lgroup_add(&r->ldap, id, sr_first(&entries[i], lc->name_attribute)))
            continue;
        sr_lgroup *g = &r->ldap.g[r->ldap.n - 1];
        for (const char *const *ma = lc->member_attributes; ma && *ma; ma++) {
            const directory_attr *a = directory_attr_get(&entries[i], *ma);
            for (size_t k = 0; a && k < a->n; k++) {
                char *dn = sr_dn_norm(a->vals[k].val);
                const char *jid = dn ? sr_pair_find(r->dns, r->n_dns, dn) : NULL;
                if (jid)
                    sr_lgroup_member(g, jid);
                free(dn);
            }
        }
        for (const char *const *ua = lc->member_uid_attributes; ua && *ua; ua++) {
            const directory_attr *a = directory_attr_get(&entries[i], *ua);
            for (size_t k = 0; a && k < a->n; k++) {
                char *jid = sr_account_jid(r->st, a->vals[k].val);
                /* only accounts the directory has */
                if (jid && r->n_jids && bsearch(&jid, r->jids, r->n_jids, sizeof(*r->jids), sr_pair_cmp))
                    sr_lgroup_member(g, jid);
                free(jid);
            }
        }
    }
    if (status != DIRECTORY_OK && status != DIRECTORY_CANCELLED)
        xmppd_log(r->st->m, XMPPD_LOG_WARN, "reading the directory's groups failed: the last ones stay");
    sr_step_done(r);
}

/* One user entry: its DN for group entries, its groups by attribute,
 * its contact name. */
static void sr_user_entry(sr_refresh *r, const directory_api *dir, const directory_entry *e, char **names,
                          size_t *n_names)
{
    const sr_ldap_conf *lc = &r->st->conf->ldap;
    char *jid = NULL, *name = NULL;
    char *user = dir->entry_user(dir, e);
    if (user)
        jid = sr_account_jid(r->st, user);
    free(user);
    char *dn = jid ? sr_dn_norm(e->dn) : NULL;
    if (dn && jid && (name = strdup(jid))) {
        r->dns[r->n_dns++] = dn;
        r->dns[r->n_dns++] = name;
        dn = NULL;
    }
    free(dn);
    const char *cn = jid ? sr_first(e, lc->contact_name_attribute) : NULL;
    if (cn && (names[*n_names] = strdup(jid)) && (names[*n_names + 1] = strdup(cn)))
        *n_names += 2;
    else if (cn)
        free(names[*n_names]);
    const directory_attr *ga = jid && lc->user_group_attribute ? directory_attr_get(e, lc->user_group_attribute)
                                                               : NULL;
    for (size_t k = 0; ga && k < ga->n; k++) {
        const char *id = ga->vals[k].val;
        if (strlen(id) != ga->vals[k].len || !*id)
            continue;
        sr_lgroup *g = sr_lgroup_find(&r->ldap, id);
        if (!g && sr_lgroup_add(&r->ldap, id, NULL) == 0)
            g = &r->ldap.g[r->ldap.n - 1];
        if (g)
            sr_lgroup_member(g, jid);
    }
    free(jid);
}

static void sr_on_users(int status, const directory_entry *entries, size_t n, void *ud)
{
    sr_refresh *r = ud;
    const directory_api *dir = sr_directory(r->st);
    const sr_ldap_conf *lc = &r->st->conf->ldap;
    if (status != DIRECTORY_OK || !dir) {
        if (status == DIRECTORY_CANCELLED)
            r->cancelled = true;
        else
            xmppd_log(r->st->m, XMPPD_LOG_WARN, "reading the directory's users failed: the last groups stay");
        sr_step_done(r);
        return;
    }
    char **names = calloc(2 * n + 1, sizeof(*names));
    r->dns = calloc(2 * n + 1, sizeof(*r->dns));
    if (!names || !r->dns) {
        free(names);
        sr_step_done(r);
        return;
    }
    r->ldap_ok = true;
    size_t n_names = 0;
    for (size_t i = 0; i < n; i++)
        sr_user_entry(r, dir, &entries[i], names, &n_names);
    sr_pairs_sort(r->dns, r->n_dns);
    sr_pairs_sort(names, n_names);
    if ((r->jids = calloc(r->n_dns / 2 + 1, sizeof(*r->jids)))) {
        for (size_t i = 1; i < r->n_dns; i += 2)
            r->jids[r->n_jids++] = r->dns[i];
        qsort(r->jids, r->n_jids, sizeof(*r->jids), sr_pair_cmp);
    }
    r->ldap.names = names;
    r->ldap.n_names = n_names;
    if (!lc->filter) {
        sr_step_done(r);
        return;
    }
    const char *attrs[16];
    size_t k = 0;
    attrs[k++] = lc->id_attribute;
    if (lc->name_attribute)
        attrs[k++] = lc->name_attribute;
    for (const char *const *a = lc->member_attributes; a && *a && k < 14; a++)
        attrs[k++] = *a;
    for (const char *const *a = lc->member_uid_attributes; a && *a && k < 15; a++)
        attrs[k++] = *a;
    attrs[k] = NULL;
    dir->search(dir, r->st->m, lc->base, DIRECTORY_SCOPE_SUB, lc->filter, attrs, sr_on_groups, r);
}

void sr_refresh_start(sr_state *st)
{
    sr_refresh *r = calloc(1, sizeof(*r));
    if (!r)
        return;
    r->st = st;
    r->pending = 1; /* this function's own share: no source answers before it is done */
    st->running = r;
    if (st->needs_all) {
        r->pending++;
        xmppd_auth_list(st->m, st->host, sr_on_accounts, r);
    }
    const sr_ldap_conf *lc = &st->conf->ldap;
    const directory_api *dir = lc->enabled ? sr_directory(st) : NULL;
    if (lc->enabled && !dir)
        xmppd_log(st->m, XMPPD_LOG_WARN, "ldap.enabled but no directory (load auth_ldap on this host)");
    if (dir) {
        const char *attrs[] = { lc->user_group_attribute, lc->contact_name_attribute, NULL };
        if (!attrs[0]) {
            attrs[0] = attrs[1];
            attrs[1] = NULL;
        }
        r->pending++;
        dir->users(dir, st->m, attrs, sr_on_users, r);
    }
    sr_step_done(r);
}
