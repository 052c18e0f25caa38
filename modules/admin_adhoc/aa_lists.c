/* XEP-0133 commands that read the host's state, and the announcement:
 * get-user-roster (§4.9, the items with their groups), get-registered-users-num (§4.15),
 * get-online-users-num (§4.17), get-active-users-num (§4.18),
 * get-registered-users-list (§4.20), get-online-users-list (§4.22),
 * get-active-users (§4.23), announce (§4.25).
 *
 * "Online" accounts have a bound session; "active" ones have a session
 * that sent available presence (RFC 6121 §4.2). Lists name bare JIDs,
 * sorted, cut to the max_items the requester chose. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../roster/roster_api.h"
#include "admin_adhoc.h"

#define AA_ANNOUNCE_MAX 10000 /* bytes of an announcement */

/* ---- results ------------------------------------------------------------------------ */

static void complete_num(const adhoc_api *api, adhoc_session *s, const char *var, const char *label,
                         size_t n)
{
    char num[32];
    snprintf(num, sizeof(num), "%zu", n);
    xmppd_stanza *x = aa_form("result", NULL, NULL);
    if (!x || !xmppd_form_add_field(x, var, NULL, label, num)) {
        xmppd_stanza_unref(x);
        api->error(s, "wait", "resource-constraint", NULL);
        return;
    }
    api->complete(s, x);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* max_items of a list request: "none" or absent is no limit; -1: invalid. */
static long max_items(const xmppd_form *f)
{
    const char *v = xmppd_form_value(f, "max_items");
    if (!v || !*v || strcmp(v, "none") == 0)
        return 0;
    char *end;
    long n = strtol(v, &end, 10);
    return *end || n <= 0 ? -1 : n;
}

/* Completes with a jid-multi of the names (sorted, deduplicated, cut to
 * max; with the host appended when with_host). */
static void complete_list(const adhoc_api *api, adhoc_session *s, const char *var, const char *label,
                          const char **names, size_t n, long max, const char *host)
{
    qsort(names, n, sizeof(*names), cmp_str);
    xmppd_stanza *x = aa_form("result", NULL, NULL);
    xmppd_stanza *field = x ? xmppd_form_add_field(x, var, "jid-multi", label, NULL) : NULL;
    size_t shown = 0;
    char jid[2100];
    for (size_t i = 0; field && i < n && (max == 0 || (long)shown < max); i++) {
        if (i > 0 && strcmp(names[i], names[i - 1]) == 0)
            continue;
        if (host)
            snprintf(jid, sizeof(jid), "%s@%s", names[i], host);
        if (xmppd_form_add_value(field, host ? jid : names[i]) < 0)
            field = NULL;
        shown++;
    }
    if (!field) {
        xmppd_stanza_unref(x);
        api->error(s, "wait", "resource-constraint", NULL);
        return;
    }
    api->complete(s, x);
}

static xmppd_stanza *list_form(void)
{
    xmppd_stanza *x = aa_form("form", "Requesting a List", "How many accounts should be listed?");
    xmppd_stanza *f = x ? xmppd_form_add_field(x, "max_items", "list-single", "Maximum number of items",
                                               "100")
                        : NULL;
    static const char *const opts[] = { "25", "50", "75", "100", "150", "200", "none", NULL };
    for (size_t i = 0; f && opts[i]; i++)
        if (xmppd_form_add_option(f, NULL, opts[i]) < 0)
            f = NULL;
    if (!f) {
        xmppd_stanza_unref(x);
        return NULL;
    }
    return x;
}

/* ---- sessions: online and active accounts ------------------------------------------------ */

typedef struct aa_names {
    const char **v;
    size_t n, cap;
    bool active_only;
    bool oom;
} aa_names;

static int name_one(xmppd_session *sess, void *ud)
{
    aa_names *c = ud;
    const xmppd_jid *j = xmppd_session_jid(sess);
    if (!j || !j->node || xmppd_session_closed(sess) ||
        (c->active_only && !xmppd_session_available(sess)))
        return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        const char **v = realloc(c->v, cap * sizeof(*v));
        if (!v) {
            c->oom = true;
            return 1;
        }
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = j->node; /* valid during this loop turn: the sessions stay */
    return 0;
}

/* Distinct accounts among the collected names (sorted in place). */
static size_t distinct(aa_names *c)
{
    qsort(c->v, c->n, sizeof(*c->v), cmp_str);
    size_t d = 0;
    for (size_t i = 0; i < c->n; i++)
        if (i == 0 || strcmp(c->v[i], c->v[i - 1]) != 0)
            d++;
    return d;
}

static void sessions_cmd(const adhoc_api *api, adhoc_session *s, aa_state *st, bool active,
                         bool list, long max)
{
    aa_names c = { .active_only = active };
    xmppd_host_sessions(st->host, name_one, &c);
    if (c.oom)
        api->error(s, "wait", "resource-constraint", NULL);
    else if (!list)
        complete_num(api, s, active ? "activeusersnum" : "onlineusersnum",
                     active ? "The number of active users" : "The number of online users",
                     distinct(&c));
    else
        complete_list(api, s, active ? "activeuserjids" : "onlineuserjids",
                      active ? "The list of active users" : "The list of online users", c.v, c.n, max,
                      xmppd_host_name(st->host));
    free(c.v);
}

static void online_num_step(const adhoc_api *api, adhoc_session *s, unsigned action,
                            const xmppd_form *form, void *ud)
{
    (void)action, (void)form;
    sessions_cmd(api, s, ud, false, false, 0);
}

static void active_num_step(const adhoc_api *api, adhoc_session *s, unsigned action,
                            const xmppd_form *form, void *ud)
{
    (void)action, (void)form;
    sessions_cmd(api, s, ud, true, false, 0);
}

static void list_step(const adhoc_api *api, adhoc_session *s, unsigned action, const xmppd_form *form,
                      aa_state *st, bool active)
{
    const xmppd_form *f = aa_stage(api, s, action, form, list_form);
    if (!f)
        return;
    long max = max_items(f);
    if (max < 0)
        api->error(s, "modify", "bad-request", "max_items: a positive number or none");
    else
        sessions_cmd(api, s, st, active, true, max);
}

static void online_list_step(const adhoc_api *api, adhoc_session *s, unsigned action,
                             const xmppd_form *form, void *ud)
{
    list_step(api, s, action, form, ud, false);
}

static void active_list_step(const adhoc_api *api, adhoc_session *s, unsigned action,
                             const xmppd_form *form, void *ud)
{
    list_step(api, s, action, form, ud, true);
}

/* ---- registered accounts ---------------------------------------------------------------- */

static void registered_done(int result, const char *const *users, size_t n, void *ud)
{
    aa_run *r = ud;
    if (!aa_run_back(r) || result == XMPPD_AUTH_CANCELLED)
        return;
    if (result == XMPPD_AUTH_UNSUPPORTED) {
        r->api->error(r->s, "cancel", "feature-not-implemented",
                      "the host's auth backend cannot list its accounts");
        return;
    }
    if (result != XMPPD_AUTH_OK) {
        r->api->error(r->s, "wait", "internal-server-error", xmppd_auth_result_str(result));
        return;
    }
    if (!r->list) {
        complete_num(r->api, r->s, "registeredusersnum", "The number of registered users", n);
        return;
    }
    const char **v = malloc((n ? n : 1) * sizeof(*v));
    if (!v) {
        r->api->error(r->s, "wait", "resource-constraint", NULL);
        return;
    }
    memcpy(v, users, n * sizeof(*v));
    complete_list(r->api, r->s, "registereduserjids", "The list of all users", v, n,
                  r->max, xmppd_host_name(r->st->host));
    free(v);
}

/* The count, or (list) the list of at most max (0: all) accounts. */
static void registered_cmd(const adhoc_api *api, adhoc_session *s, aa_state *st, bool list, long max)
{
    aa_run *r = aa_run_get(st, api, s);
    if (!r) {
        api->error(s, "wait", "resource-constraint", NULL);
        return;
    }
    r->list = list;
    r->max = max;
    r->waiting++;
    xmppd_auth_list(st->m, st->host, registered_done, r);
}

static void registered_num_step(const adhoc_api *api, adhoc_session *s, unsigned action,
                                const xmppd_form *form, void *ud)
{
    (void)action, (void)form;
    registered_cmd(api, s, ud, false, 0);
}

static void registered_list_step(const adhoc_api *api, adhoc_session *s, unsigned action,
                                 const xmppd_form *form, void *ud)
{
    const xmppd_form *f = aa_stage(api, s, action, form, list_form);
    if (!f)
        return;
    long max = max_items(f);
    if (max < 0)
        api->error(s, "modify", "bad-request", "max_items: a positive number or none");
    else
        registered_cmd(api, s, ud, true, max);
}

/* ---- get-user-roster ---------------------------------------------------------------------- */

static xmppd_stanza *roster_form(void)
{
    xmppd_stanza *x = aa_form("form", "Getting a User's Roster",
                              "Fill out this form to get a user's roster.");
    if (x && !aa_field(x, "accountjid", "jid-single", "The Jabber ID for which to retrieve the roster",
                       true)) {
        xmppd_stanza_unref(x);
        return NULL;
    }
    return x;
}

typedef struct aa_roster_xml {
    const roster_api *rapi;
    const roster *ro;
    xmppd_stanza *query;
} aa_roster_xml;

static int group_add(const char *group, void *ud)
{
    xmppd_stanza *g = xmppd_stanza_tag(ud, "group", NULL);
    if (!g || xmppd_stanza_add_text(g, group, strlen(group)) < 0)
        return 1;
    return 0;
}

/* One <item/> as RFC 6121 §2.1.2 writes it, with its <group/>s. */
static int roster_item_add(const roster_item *it, void *ud)
{
    aa_roster_xml *x = ud;
    xmppd_stanza *el = xmppd_stanza_tag(x->query, "item", NULL);
    if (!el)
        return 1;
    static const char *const subs[] = { "none", "to", "from", "both" };
    xmppd_stanza_set_attr(el, "jid", it->jid);
    if (it->name)
        xmppd_stanza_set_attr(el, "name", it->name);
    xmppd_stanza_set_attr(el, "subscription", subs[it->sub & 3]);
    if (it->ask)
        xmppd_stanza_set_attr(el, "ask", "subscribe");
    if (x->rapi->version >= 4)
        x->rapi->groups(x->ro, it->jid, group_add, el);
    return 0;
}

static void roster_loaded(roster *ro, void *ud)
{
    aa_run *r = ud;
    if (!aa_run_back(r))
        return;
    const roster_api *rapi = xmppd_use(r->st->host, "roster");
    if (!ro || !rapi) {
        r->api->error(r->s, "wait", "internal-server-error", "the roster could not be loaded");
        return;
    }
    char jid[2100];
    snprintf(jid, sizeof(jid), "%s@%s", r->users[0], xmppd_host_name(r->st->host));
    xmppd_stanza *x = aa_form("result", NULL, NULL);
    xmppd_stanza *q = x && xmppd_form_add_field(x, "accountjid", "jid-single", NULL, jid)
                          ? xmppd_stanza_tag(x, "query", "jabber:iq:roster")
                          : NULL;
    if (!q) {
        xmppd_stanza_unref(x);
        r->api->error(r->s, "wait", "resource-constraint", NULL);
        return;
    }
    aa_roster_xml rx = { rapi, ro, q };
    rapi->foreach(ro, roster_item_add, &rx);
    r->api->complete(r->s, x);
}

static void roster_exists(int result, void *ud)
{
    aa_run *r = ud;
    if (!aa_run_back(r) || result == XMPPD_AUTH_CANCELLED)
        return;
    const roster_api *rapi = xmppd_use(r->st->host, "roster");
    if (result == XMPPD_AUTH_USER_UNKNOWN)
        r->api->error(r->s, "cancel", "item-not-found", "no such account");
    else if (result != XMPPD_AUTH_OK)
        r->api->error(r->s, "wait", "internal-server-error", xmppd_auth_result_str(result));
    else if (!rapi || rapi->version < 2 || rapi->size < sizeof(roster_api))
        r->api->error(r->s, "cancel", "service-unavailable", "the roster module is not loaded");
    else {
        r->waiting++;
        rapi->load(rapi, r->st->m, r->users[0], roster_loaded, r);
    }
}

static void roster_step(const adhoc_api *api, adhoc_session *s, unsigned action,
                        const xmppd_form *form, void *ud)
{
    aa_state *st = ud;
    const xmppd_form *f = NULL;
    aa_run *r = aa_begin(st, api, s, action, form, roster_form, "accountjid", false, &f);
    if (!r)
        return;
    r->waiting++;
    xmppd_auth_exists(st->m, st->host, r->users[0], roster_exists, r);
}

/* ---- announce ----------------------------------------------------------------------------- */

static xmppd_stanza *announce_form(void)
{
    xmppd_stanza *x = aa_form("form", "Making an Announcement",
                              "Fill out this form to make an announcement to all active users "
                              "of this service.");
    if (x && (!aa_field(x, "subject", "text-single", "Subject", false) ||
              !aa_field(x, "announcement", "text-multi", "Announcement", true))) {
        xmppd_stanza_unref(x);
        return NULL;
    }
    return x;
}

typedef struct aa_announce {
    xmppd_stanza *msg;
    size_t sent;
} aa_announce;

static int announce_one(xmppd_session *sess, void *ud)
{
    aa_announce *a = ud;
    const xmppd_jid *j = xmppd_session_jid(sess);
    if (!j || xmppd_session_closed(sess))
        return 0;
    /* A copy each: a deliver handler may keep what it is given. */
    xmppd_stanza *m = xmppd_stanza_copy(a->msg);
    if (m && xmppd_stanza_set_attr(m, "to", j->full) == 0 && xmppd_session_send(sess, m) == 0)
        a->sent++;
    xmppd_stanza_unref(m);
    return 0;
}

static void announce_step(const adhoc_api *api, adhoc_session *s, unsigned action,
                          const xmppd_form *form, void *ud)
{
    aa_state *st = ud;
    const xmppd_form *f = aa_stage(api, s, action, form, announce_form);
    if (!f)
        return;
    char *body = adhoc_form_text(f, "announcement");
    const char *subject = xmppd_form_value(f, "subject");
    if (!body || !*body || strlen(body) > AA_ANNOUNCE_MAX) {
        free(body);
        api->error(s, "modify", "bad-request", "announcement: 1 to 10000 bytes of text");
        return;
    }
    aa_announce a = { .msg = xmppd_stanza_new("message", XMPPD_NS_CLIENT) };
    xmppd_stanza *b = a.msg ? xmppd_stanza_tag(a.msg, "body", NULL) : NULL;
    if (!b || xmppd_stanza_add_text(b, body, strlen(body)) < 0 ||
        (subject && *subject && !xmppd_stanza_tag(a.msg, "subject", NULL))) {
        xmppd_stanza_unref(a.msg);
        free(body);
        api->error(s, "wait", "resource-constraint", NULL);
        return;
    }
    if (subject && *subject)
        xmppd_stanza_add_text(xmppd_stanza_child(a.msg, "subject", NULL), subject, strlen(subject));
    xmppd_stanza_set_attr(a.msg, "type", "headline");
    xmppd_stanza_set_attr(a.msg, "from", xmppd_host_name(st->host));
    xmppd_host_sessions(st->host, announce_one, &a);
    xmppd_stanza_unref(a.msg);
    free(body);
    char text[64];
    snprintf(text, sizeof(text), "Announcement sent to %zu session(s)", a.sent);
    api->note(s, "info", text);
    api->complete(s, NULL);
}

const aa_command aa_list_commands[] = {
    { "get-user-roster", "Get User Roster", roster_step },
    { "get-registered-users-num", "Get Number of Registered Users", registered_num_step },
    { "get-online-users-num", "Get Number of Online Users", online_num_step },
    { "get-active-users-num", "Get Number of Active Users", active_num_step },
    { "get-registered-users-list", "Get List of Registered Users", registered_list_step },
    { "get-online-users-list", "Get List of Online Users", online_list_step },
    { "get-active-users", "Get List of Active Users", active_list_step },
    { "announce", "Send Announcement to Online Users", announce_step },
    { NULL, NULL, NULL },
};
