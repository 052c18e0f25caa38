/* Administrators and access rules: compiling the configuration's "admins",
 * "groups" and "access" (and each host's "admins" and "access") and
 * answering xmppd_access() (api/xmppd/access.h describes the model). */
#include <stdlib.h>
#include <string.h>

#include "core/access.h"
#include "core/core.h"
#include "core/options.h"
#include "util/cidr.h"
#include "xmppd/access.h"

const access_action access_actions[] = {
    { "register", "register", "actor: the account asked for (user@host); ip: the client's address",
      "mod_register's allow_registration option (false: nobody)" },
    { "s2s", "kernel", "actor: the remote domain; ip: the peer's address (incoming streams)",
      "allowed: a denied domain's streams end with <policy-violation/>, stanzas to it bounce "
      "with <not-allowed/>" },
    { "send", "kernel", "actor: the local sender; target: the stanza's 'to' (none: its own "
      "account); ip: the client's address",
      "allowed: a denied message, presence or IQ is bounced with <not-allowed/>" },
    { "create_room", "muc", "actor: the user creating a room; ip: a local client's address",
      "mod_muc's create_rooms option (with create_rooms \"access\": local accounts)" },
    { "upload", "upload", "actor: the user asking for a slot; ip: a local client's address",
      "mod_upload's allow option (default: the accounts of the host)" },
    { "admin_api", "admin_api", "actor: the account logging in to the API; ip: the HTTP client",
      "administrators only" },
    { "service_admin", "admin_adhoc", "actor: the user running a XEP-0133 command",
      "administrators only" },
    { "metrics", "metrics", "ip: the address asking for /metrics (no actor)",
      "loopback addresses only (127.0.0.0/8, ::1), unless a token is given" },
    { NULL, NULL, NULL, NULL }
};

/* ---- compiled form ------------------------------------------------------------------ */

typedef struct strs {
    char **v;
    size_t n;
} strs;

enum { KW_CONDS = 0, KW_ALL, KW_NONE, KW_ADMIN, KW_LOCAL, KW_REMOTE };
static const char *const g_keywords[] = { "", "all", "none", "admin", "local", "remote", NULL };

typedef struct match {
    int keyword;                 /* KW_*; KW_CONDS: the conditions below */
    strs jid, domain, group;     /* actor */
    strs to_jid, to_domain, to_group;
    cidr *ip;
    size_t n_ip;
    int admin, local, to_local;  /* -1: not given */
} match;

typedef struct entry {
    bool allow;
    match m;
} entry;

typedef struct rule {
    char *action;
    entry *e;
    size_t n;
} rule;

typedef struct group {
    char *name;
    strs members;                /* bare JIDs */
} group;

struct access_table {
    strs admins;                 /* bare JIDs */
    group *groups;               /* server-wide table only */
    size_t n_groups;
    rule *rules;
    size_t n_rules;
};

static void strs_free(strs *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

static void match_free(match *m)
{
    strs *all[] = { &m->jid, &m->domain, &m->group, &m->to_jid, &m->to_domain, &m->to_group };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        strs_free(all[i]);
    free(m->ip);
}

void access_free(access_table *t)
{
    if (!t)
        return;
    strs_free(&t->admins);
    for (size_t i = 0; i < t->n_groups; i++) {
        free(t->groups[i].name);
        strs_free(&t->groups[i].members);
    }
    free(t->groups);
    for (size_t i = 0; i < t->n_rules; i++) {
        for (size_t j = 0; j < t->rules[i].n; j++)
            match_free(&t->rules[i].e[j].m);
        free(t->rules[i].e);
        free(t->rules[i].action);
    }
    free(t->rules);
    free(t);
}

/* ---- compiling ------------------------------------------------------------------------ */

typedef struct cctx {
    xmppd_config *cfg;
    opt_errors *errs;
    const access_table *global; /* for group names (NULL while compiling it) */
} cctx;

#define ERR(c, key, ...) opt_error((c)->errs, (c)->cfg, (key), __VA_ARGS__)
#define KEY_MAX 600

/* "a.b" into out (KEY_MAX bytes), cut when too long: keys are only for
 * messages. */
static void join_key(char *out, const char *a, const char *b)
{
    size_t la = strnlen(a, KEY_MAX - 2), lb = strnlen(b, KEY_MAX - 2 - la);
    memmove(out, a, la); /* out may be a */
    out[la] = '.';
    memcpy(out + la + 1, b, lb);
    out[la + 1 + lb] = '\0';
}

/* "a.I" into out (KEY_MAX bytes). */
static void index_key(char *out, const char *a, size_t i)
{
    char num[24];
    snprintf(num, sizeof(num), "%zu", i);
    join_key(out, a, num);
}

static int strs_add(strs *s, char *v)
{
    char **n = v ? realloc(s->v, (s->n + 1) * sizeof(*n)) : NULL;
    if (!n) {
        free(v);
        return -1;
    }
    s->v = n;
    s->v[s->n++] = v;
    return 0;
}

/* A string or a list of strings: calls each(value, key of that value). */
static int foreach_string(cctx *c, const json_t *v, const char *key,
                          int (*each)(cctx *c, const char *s, const char *key, void *ud), void *ud)
{
    char sub[KEY_MAX];
    if (json_is_string(v))
        return each(c, json_string_value(v), key, ud);
    if (!json_is_array(v) || json_array_size(v) == 0) {
        char got[64];
        opt_describe_value(v, got, sizeof(got));
        ERR(c, key, "expected a string or a non-empty list of strings, got %s", got);
        return -1;
    }
    size_t i;
    json_t *it;
    int rc = 0;
    json_array_foreach(v, i, it) {
        index_key(sub, key, i);
        if (!json_is_string(it)) {
            char got[64];
            opt_describe_value(it, got, sizeof(got));
            ERR(c, sub, "expected a string, got %s", got);
            rc = -1;
        } else if (each(c, json_string_value(it), sub, ud) < 0) {
            rc = -1;
        }
    }
    return rc;
}

/* A bare JID (an account or a domain), prepared. */
static int add_bare(cctx *c, const char *s, const char *key, void *ud)
{
    xmppd_jid *j = xmppd_jid_parse(s);
    if (!j || j->resource) {
        xmppd_jid_free(j);
        ERR(c, key, "expected a bare JID (user@example.org or example.org), got \"%s\"", s);
        return -1;
    }
    int rc = strs_add(ud, strdup(j->bare));
    xmppd_jid_free(j);
    if (rc < 0)
        ERR(c, key, "out of memory");
    return rc;
}

/* A domain, or "*.domain" for its subdomains; kept prepared ("*." kept). */
static int add_domain(cctx *c, const char *s, const char *key, void *ud)
{
    bool wild = strncmp(s, "*.", 2) == 0;
    xmppd_jid *j = xmppd_jid_parse(wild ? s + 2 : s);
    if (!j || j->node || j->resource) {
        xmppd_jid_free(j);
        ERR(c, key, "expected a domain (example.org, or *.example.org for its subdomains), got \"%s\"", s);
        return -1;
    }
    size_t n = strlen(j->domain) + 3;
    char *d = malloc(n);
    if (d)
        snprintf(d, n, "%s%s", wild ? "*." : "", j->domain);
    xmppd_jid_free(j);
    if (strs_add(ud, d) < 0) {
        ERR(c, key, "out of memory");
        return -1;
    }
    return 0;
}

static const group *find_group(const access_table *t, const char *name)
{
    for (size_t i = 0; t && i < t->n_groups; i++)
        if (strcmp(t->groups[i].name, name) == 0)
            return &t->groups[i];
    return NULL;
}

static int add_group_ref(cctx *c, const char *s, const char *key, void *ud)
{
    if (!find_group(c->global, s)) {
        ERR(c, key, "no group \"%s\" in \"groups\"", s);
        return -1;
    }
    if (strs_add(ud, strdup(s)) < 0) {
        ERR(c, key, "out of memory");
        return -1;
    }
    return 0;
}

static int add_ip(cctx *c, const char *s, const char *key, void *ud)
{
    match *m = ud;
    cidr p;
    if (cidr_parse(s, &p) < 0) {
        ERR(c, key, "expected an IP address or CIDR (\"10.0.0.0/8\", \"::1\"), got \"%s\"", s);
        return -1;
    }
    cidr *v = realloc(m->ip, (m->n_ip + 1) * sizeof(*v));
    if (!v) {
        ERR(c, key, "out of memory");
        return -1;
    }
    m->ip = v;
    m->ip[m->n_ip++] = p;
    return 0;
}

static int get_bool(cctx *c, const json_t *v, const char *key, int *out)
{
    if (!json_is_boolean(v)) {
        char got[64];
        opt_describe_value(v, got, sizeof(got));
        ERR(c, key, "expected true or false, got %s", got);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

static const char *const g_conditions[] = { "jid", "domain", "group", "admin", "local", "ip",
                                            "to_jid", "to_domain", "to_group", "to_local", NULL };

static int compile_condition(cctx *c, match *m, const char *name, const json_t *v, const char *key)
{
    if (strcmp(name, "jid") == 0)
        return foreach_string(c, v, key, add_bare, &m->jid);
    if (strcmp(name, "to_jid") == 0)
        return foreach_string(c, v, key, add_bare, &m->to_jid);
    if (strcmp(name, "domain") == 0)
        return foreach_string(c, v, key, add_domain, &m->domain);
    if (strcmp(name, "to_domain") == 0)
        return foreach_string(c, v, key, add_domain, &m->to_domain);
    if (strcmp(name, "group") == 0)
        return foreach_string(c, v, key, add_group_ref, &m->group);
    if (strcmp(name, "to_group") == 0)
        return foreach_string(c, v, key, add_group_ref, &m->to_group);
    if (strcmp(name, "ip") == 0)
        return foreach_string(c, v, key, add_ip, m);
    if (strcmp(name, "admin") == 0)
        return get_bool(c, v, key, &m->admin);
    if (strcmp(name, "local") == 0)
        return get_bool(c, v, key, &m->local);
    if (strcmp(name, "to_local") == 0)
        return get_bool(c, v, key, &m->to_local);
    const char *hint = opt_suggest(name, g_conditions, sizeof(g_conditions) / sizeof(*g_conditions) - 1);
    ERR(c, key, "unknown condition \"%s\"%s%s%s (conditions: jid, domain, group, admin, local, "
        "ip, to_jid, to_domain, to_group, to_local)", name, hint ? "; did you mean \"" : "",
        hint ? hint : "", hint ? "\"?" : "");
    return -1;
}

static int compile_match(cctx *c, match *m, const json_t *v, const char *key)
{
    m->admin = m->local = m->to_local = -1;
    if (json_is_string(v)) {
        for (int k = KW_ALL; g_keywords[k]; k++)
            if (strcmp(json_string_value(v), g_keywords[k]) == 0) {
                m->keyword = k;
                return 0;
            }
        ERR(c, key, "unknown keyword \"%s\" (all, none, admin, local, remote; or an object of "
            "conditions)", json_string_value(v));
        return -1;
    }
    if (!json_is_object(v) || json_object_size(v) == 0) {
        char got[64];
        opt_describe_value(v, got, sizeof(got));
        ERR(c, key, "expected \"all\", \"none\", \"admin\", \"local\", \"remote\" or an object "
            "of conditions, got %s", got);
        return -1;
    }
    const char *name;
    json_t *cv;
    int rc = 0;
    json_object_foreach((json_t *)v, name, cv) {
        char sub[KEY_MAX];
        join_key(sub, key, name);
        if (compile_condition(c, m, name, cv, sub) < 0)
            rc = -1;
    }
    return rc;
}

static bool known_action(const char *name)
{
    for (const access_action *a = access_actions; a->name; a++)
        if (strcmp(a->name, name) == 0)
            return true;
    /* A module's own action: "MODULE.NAME". */
    const char *dot = strchr(name, '.');
    return dot && dot != name && dot[1] && !strchr(dot + 1, '.');
}

static void compile_rule(cctx *c, access_table *t, const char *action, const json_t *list,
                         const char *key)
{
    if (!known_action(action)) {
        const char *names[16];
        size_t n = 0;
        for (const access_action *a = access_actions; a->name && n < 16; a++)
            names[n++] = a->name;
        const char *hint = opt_suggest(action, names, n);
        ERR(c, key, "unknown action \"%s\"%s%s%s (the server's: register, s2s, send, "
            "create_room, upload, admin_api, service_admin, metrics; a module's own: "
            "\"MODULE.NAME\")", action, hint ? "; did you mean \"" : "", hint ? hint : "",
            hint ? "\"?" : "");
        return;
    }
    if (!json_is_array(list)) {
        char got[64];
        opt_describe_value(list, got, sizeof(got));
        ERR(c, key, "expected a list of {\"allow\": ...} or {\"deny\": ...} entries, got %s", got);
        return;
    }
    rule *r = realloc(t->rules, (t->n_rules + 1) * sizeof(*r));
    if (!r) {
        ERR(c, key, "out of memory");
        return;
    }
    t->rules = r;
    r = &t->rules[t->n_rules];
    memset(r, 0, sizeof(*r));
    r->action = strdup(action);
    r->e = calloc(json_array_size(list) + 1, sizeof(*r->e));
    if (!r->action || !r->e) {
        free(r->action);
        free(r->e);
        ERR(c, key, "out of memory");
        return;
    }
    t->n_rules++;
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it) {
        char sub[KEY_MAX];
        index_key(sub, key, i);
        const json_t *allow = json_object_get(it, "allow"), *deny = json_object_get(it, "deny");
        if (!json_is_object(it) || json_object_size(it) != 1 || (!allow && !deny)) {
            ERR(c, sub, "expected {\"allow\": MATCH} or {\"deny\": MATCH}");
            continue;
        }
        entry *e = &r->e[r->n];
        e->allow = allow != NULL;
        char mkey[KEY_MAX];
        join_key(mkey, sub, allow ? "allow" : "deny");
        if (compile_match(c, &e->m, allow ? allow : deny, mkey) < 0) {
            match_free(&e->m);
            memset(e, 0, sizeof(*e));
            continue;
        }
        r->n++;
    }
}

static void compile_rules(cctx *c, access_table *t, const json_t *given, const char *key)
{
    if (!given)
        return;
    if (!json_is_object(given)) {
        char got[64];
        opt_describe_value(given, got, sizeof(got));
        ERR(c, key, "expected an object: action -> list of entries, got %s", got);
        return;
    }
    const char *action;
    json_t *list;
    json_object_foreach((json_t *)given, action, list) {
        char sub[KEY_MAX];
        join_key(sub, key, action);
        compile_rule(c, t, action, list, sub);
    }
}

static void compile_admins(cctx *c, access_table *t, const char *const *given, const char *key)
{
    bool list = json_is_array(json_object_get(c->cfg->root, "admins")) || strcmp(key, "admins") != 0;
    for (size_t i = 0; given && given[i]; i++) {
        char sub[KEY_MAX];
        if (list)
            index_key(sub, key, i);
        else
            snprintf(sub, sizeof(sub), "%.*s", KEY_MAX - 1, key);
        xmppd_jid *j = xmppd_jid_parse(given[i]);
        if (!j || !j->node || j->resource)
            ERR(c, sub, "expected an account's bare JID (admin@example.org), got \"%s\"", given[i]);
        else if (strs_add(&t->admins, strdup(j->bare)) < 0)
            ERR(c, sub, "out of memory");
        xmppd_jid_free(j);
    }
}

static void compile_groups(cctx *c, access_table *t, const json_t *given)
{
    if (!given)
        return;
    if (!json_is_object(given)) {
        char got[64];
        opt_describe_value(given, got, sizeof(got));
        ERR(c, "groups", "expected an object: group name -> list of bare JIDs, got %s", got);
        return;
    }
    t->groups = calloc(json_object_size(given) + 1, sizeof(*t->groups));
    if (!t->groups) {
        ERR(c, "groups", "out of memory");
        return;
    }
    const char *name;
    json_t *members;
    json_object_foreach((json_t *)given, name, members) {
        char key[KEY_MAX];
        join_key(key, "groups", name);
        group *g = &t->groups[t->n_groups];
        if (!(g->name = strdup(name))) {
            ERR(c, key, "out of memory");
            continue;
        }
        t->n_groups++;
        if (!json_is_array(members) || json_array_size(members) > 0) /* [] is an empty group */
            foreach_string(c, members, key, add_bare, &g->members);
    }
}

void access_compile(xmppd_config *cfg, opt_errors *errs)
{
    cctx c = { cfg, errs, NULL };
    access_table *t = calloc(1, sizeof(*t));
    if (!t) {
        opt_error(errs, cfg, "access", "out of memory");
        return;
    }
    cfg->access = t;
    compile_admins(&c, t, cfg->admins_given, "admins");
    compile_groups(&c, t, cfg->groups_given);
    c.global = t;
    compile_rules(&c, t, cfg->access_given, "access");
    for (size_t i = 0; i < cfg->n_hosts; i++) {
        host_conf *h = &cfg->hosts[i];
        access_table *ht = calloc(1, sizeof(*ht));
        if (!ht) {
            opt_error(errs, cfg, "hosts", "out of memory");
            return;
        }
        h->access = ht;
        char key[KEY_MAX];
        join_key(key, "hosts", h->name);
        join_key(key, key, "admins");
        compile_admins(&c, ht, h->admins_given, key);
        join_key(key, "hosts", h->name);
        join_key(key, key, "access");
        compile_rules(&c, ht, h->access_given, key);
    }
}

void access_print_markdown(FILE *out)
{
    fprintf(out, "| action | checked by | actor, address, target | without a deciding rule |\n"
                 "|---|---|---|---|\n");
    for (const access_action *a = access_actions; a->name; a++)
        fprintf(out, "| `%s` | %s | %s | %s |\n", a->name, a->checked_by, a->actor, a->fallback);
}

/* ---- evaluating ------------------------------------------------------------------------ */

static bool strs_has(const strs *s, const char *v)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], v) == 0)
            return true;
    return false;
}

static bool domain_in(const strs *s, const char *domain)
{
    size_t dl = strlen(domain);
    for (size_t i = 0; i < s->n; i++) {
        const char *d = s->v[i];
        if (strncmp(d, "*.", 2) == 0) {
            size_t sl = strlen(d + 1); /* ".example.org" */
            if (dl > sl && strcmp(domain + dl - sl, d + 1) == 0)
                return true;
        } else if (strcmp(d, domain) == 0) {
            return true;
        }
    }
    return false;
}

static bool in_groups(const strs *names, const char *bare)
{
    const access_table *g = g_server.cfg ? g_server.cfg->access : NULL;
    for (size_t i = 0; i < names->n; i++) {
        const group *gr = find_group(g, names->v[i]);
        if (gr && strs_has(&gr->members, bare))
            return true;
    }
    return false;
}

/* Served here: a host, a domain a module serves (conference.HOST) or a
 * configured component. */
static bool is_local(const xmppd_jid *j)
{
    if (xmppd_host_find(j->domain) || domains_name(j->domain))
        return true;
    const xmppd_config *cfg = g_server.cfg;
    for (size_t i = 0; cfg && i < cfg->n_components; i++)
        if (strcmp(cfg->components[i].domain, j->domain) == 0)
            return true;
    return false;
}

/* The conditions about one party (actor or target); j NULL holds none. */
static bool party_holds(const strs *jid, const strs *domain, const strs *grp, int local,
                        const xmppd_jid *j)
{
    if ((jid->n || domain->n || grp->n || local >= 0) && !j)
        return false;
    if (jid->n && !strs_has(jid, j->bare))
        return false;
    if (domain->n && !domain_in(domain, j->domain))
        return false;
    if (grp->n && !in_groups(grp, j->bare))
        return false;
    return local < 0 || (local == 1) == is_local(j);
}

static bool holds(const match *m, const xmppd_host *h, const xmppd_jid *actor, const char *ip,
                  const xmppd_jid *target)
{
    switch (m->keyword) {
    case KW_ALL: return true;
    case KW_NONE: return false;
    case KW_ADMIN: return actor && xmppd_is_admin(h, actor);
    case KW_LOCAL: return actor && is_local(actor);
    case KW_REMOTE: return actor && !is_local(actor);
    default: break;
    }
    if (!party_holds(&m->jid, &m->domain, &m->group, m->local, actor) ||
        !party_holds(&m->to_jid, &m->to_domain, &m->to_group, m->to_local, target))
        return false;
    if (m->admin >= 0 && (!actor || (m->admin == 1) != xmppd_is_admin(h, actor)))
        return false;
    if (m->n_ip) {
        bool in = false;
        for (size_t i = 0; ip && !in && i < m->n_ip; i++)
            in = cidr_contains(&m->ip[i], ip);
        if (!in)
            return false;
    }
    return true;
}

static const rule *find_rule(const access_table *t, const char *action)
{
    for (size_t i = 0; t && i < t->n_rules; i++)
        if (strcmp(t->rules[i].action, action) == 0)
            return &t->rules[i];
    return NULL;
}

XMPPD_EXPORT int xmppd_access_to(const xmppd_host *h, const char *action, const xmppd_jid *actor,
                                 const char *ip, const xmppd_jid *target)
{
    if (!g_server.cfg || !action)
        return XMPPD_ACCESS_DEFAULT;
    const rule *r = h && h->conf ? find_rule(h->conf->access, action) : NULL;
    if (!r)
        r = find_rule(g_server.cfg->access, action);
    for (size_t i = 0; r && i < r->n; i++)
        if (holds(&r->e[i].m, h, actor, ip, target))
            return r->e[i].allow ? XMPPD_ACCESS_ALLOW : XMPPD_ACCESS_DENY;
    return XMPPD_ACCESS_DEFAULT;
}

XMPPD_EXPORT bool xmppd_access_has_rule(const xmppd_host *h, const char *action)
{
    if (!g_server.cfg || !action)
        return false;
    return (h && h->conf && find_rule(h->conf->access, action)) ||
           find_rule(g_server.cfg->access, action);
}

XMPPD_EXPORT int xmppd_access(const xmppd_host *h, const char *action, const xmppd_jid *actor,
                              const char *ip)
{
    return xmppd_access_to(h, action, actor, ip, NULL);
}

XMPPD_EXPORT bool xmppd_access_allowed(const xmppd_host *h, const char *action,
                                       const xmppd_jid *actor, const char *ip, bool def)
{
    int a = xmppd_access(h, action, actor, ip);
    return a == XMPPD_ACCESS_DEFAULT ? def : a == XMPPD_ACCESS_ALLOW;
}

XMPPD_EXPORT bool xmppd_is_admin(const xmppd_host *h, const xmppd_jid *jid)
{
    if (!jid || !jid->node || !g_server.cfg)
        return false;
    if (g_server.cfg->access && strs_has(&g_server.cfg->access->admins, jid->bare))
        return true;
    return h && h->conf && h->conf->access && strs_has(&h->conf->access->admins, jid->bare);
}

XMPPD_EXPORT void xmppd_admins_foreach(const xmppd_host *h, void (*fn)(const char *bare, void *ud),
                                       void *ud)
{
    const access_table *g = g_server.cfg ? g_server.cfg->access : NULL;
    for (size_t i = 0; g && i < g->admins.n; i++)
        fn(g->admins.v[i], ud);
    const access_table *t = h && h->conf ? h->conf->access : NULL;
    for (size_t i = 0; t && i < t->admins.n; i++)
        if (!g || !strs_has(&g->admins, t->admins.v[i]))
            fn(t->admins.v[i], ud);
}
