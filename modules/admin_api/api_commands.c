/* The commands of the HTTP admin API, named and shaped like ejabberd's
 * (its arguments; answers as JSON). Accounts go through the host's auth
 * provider; what `xmppctl` does (deluser with its session drain, passwd,
 * kick, sessions, status, modules, reload) through the control commands
 * (xmppd_ctl_run), so both behave the same. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../roster/roster_api.h"
#include "admin_api.h"

#define API_ROSTER_GROUPS 32 /* groups add_rosteritem may give one item */

/* ---- accounts ------------------------------------------------------------------------ */

static void on_created(int result, void *ud)
{
    api_call *c = ud;
    if (!api_back(c) || result == XMPPD_AUTH_CANCELLED)
        return;
    if (result == XMPPD_AUTH_OK)
        api_ok(c, json_sprintf("User %s@%s successfully registered", c->user,
                               xmppd_host_name(c->host)));
    else if (result == XMPPD_AUTH_EXISTS)
        api_fail(c, 409, "user %s@%s already registered", c->user, xmppd_host_name(c->host));
    else if (result == XMPPD_AUTH_INVALID)
        api_fail(c, 400, "the user name or password was refused");
    else if (result == XMPPD_AUTH_UNSUPPORTED)
        api_fail(c, 501, "the host's accounts cannot be created here");
    else
        api_fail(c, 503, "%s", xmppd_auth_result_str(result));
}

static void cmd_register(api_call *c)
{
    const char *pw;
    if (api_account(c) < 0 || !(pw = api_str(c, "password")))
        return;
    c->waiting++;
    xmppd_auth_create(c->st->m, c->host, c->user, pw, on_created, c);
}

static json_t *account_req(api_call *c, const char *pw)
{
    char jid[2100];
    snprintf(jid, sizeof(jid), "%s@%s", c->user, xmppd_host_name(c->host));
    return pw ? json_pack("{s:s, s:s}", "jid", jid, "password", pw) : json_pack("{s:s}", "jid", jid);
}

/* The account's login tokens end with it or with its old password
 * (admin_api.c, on the kernel's events). */
static void cmd_unregister(api_call *c)
{
    if (api_account(c) < 0)
        return;
    api_ctl(c, "deluser", account_req(c, NULL), NULL);
}

static void cmd_change_password(api_call *c)
{
    const char *pw;
    if (api_account(c) < 0 || !(pw = api_str(c, "newpass")))
        return;
    api_ctl(c, "passwd", account_req(c, pw), NULL);
}

/* ban_account (ejabberd's name): the account may not log in (RFC 6120
 * §6.5.1 <account-disabled/>) and its sessions end; unban_account lets it
 * in again. Through the control commands, as `xmppctl disable/enable`. */
static void cmd_ban_account(api_call *c)
{
    if (api_account(c) < 0)
        return;
    json_t *req = account_req(c, NULL);
    const char *reason = json_string_value(json_object_get(c->args, "reason"));
    if (req && reason && *reason)
        json_object_set_new(req, "reason", json_string(reason));
    api_ctl(c, "disable", req, NULL);
}

static void cmd_unban_account(api_call *c)
{
    if (api_account(c) == 0)
        api_ctl(c, "enable", account_req(c, NULL), NULL);
}

static void on_disabled(int result, void *ud)
{
    api_call *c = ud;
    if (!api_back(c) || result == XMPPD_AUTH_CANCELLED)
        return;
    if (result == XMPPD_AUTH_OK || result == XMPPD_AUTH_DISABLED)
        api_ok(c, json_pack("{s:b}", "disabled", result == XMPPD_AUTH_DISABLED));
    else if (result == XMPPD_AUTH_USER_UNKNOWN)
        api_fail(c, 404, "user unknown");
    else if (result == XMPPD_AUTH_UNSUPPORTED)
        api_fail(c, 501, "the host's auth provider cannot tell");
    else
        api_fail(c, 503, "%s", xmppd_auth_result_str(result));
}

static void cmd_account_disabled(api_call *c)
{
    if (api_account(c) < 0)
        return;
    c->waiting++;
    xmppd_auth_is_disabled(c->st->m, c->host, c->user, on_disabled, c);
}

static void on_exists(int result, void *ud)
{
    api_call *c = ud;
    if (!api_back(c) || result == XMPPD_AUTH_CANCELLED)
        return;
    if (result == XMPPD_AUTH_OK || result == XMPPD_AUTH_USER_UNKNOWN)
        api_ok(c, json_pack("{s:b}", "exists", result == XMPPD_AUTH_OK));
    else
        api_fail(c, 503, "%s", xmppd_auth_result_str(result));
}

static void cmd_check_account(api_call *c)
{
    if (api_account(c) < 0)
        return;
    c->waiting++;
    xmppd_auth_exists(c->st->m, c->host, c->user, on_exists, c);
}

/* A host named by "host" that the caller may act on, or NULL after
 * answering. */
static xmppd_host *arg_host(api_call *c)
{
    const char *host = api_str(c, "host");
    char *d = host ? xmppd_nameprep(host) : NULL;
    xmppd_host *h = d ? xmppd_host_find(d) : NULL;
    free(d);
    if (host && !h)
        api_fail(c, 404, "unknown host %s", host);
    else if (h && !api_may(c, h)) {
        api_fail(c, 403, "not allowed on %s", xmppd_host_name(h));
        h = NULL;
    }
    return h;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void on_listed(int result, const char *const *users, size_t n, void *ud)
{
    api_call *c = ud;
    if (!api_back(c) || result == XMPPD_AUTH_CANCELLED)
        return;
    if (result == XMPPD_AUTH_UNSUPPORTED) {
        api_fail(c, 501, "the host's auth backend cannot list its accounts");
        return;
    }
    if (result != XMPPD_AUTH_OK) {
        api_fail(c, 503, "%s", xmppd_auth_result_str(result));
        return;
    }
    const char *stat = json_string_value(json_object_get(c->args, "name"));
    if (stat) { /* stats registeredusers */
        api_ok(c, json_pack("{s:I}", "stat", (json_int_t)n));
        return;
    }
    const char **sorted = malloc((n ? n : 1) * sizeof(*sorted));
    json_t *list = sorted ? json_array() : NULL;
    if (!list) {
        free(sorted);
        api_fail(c, 500, "out of memory");
        return;
    }
    memcpy(sorted, users, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_str);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_string(sorted[i]));
    free(sorted);
    api_ok(c, list);
}

static void cmd_registered_users(api_call *c)
{
    xmppd_host *h = arg_host(c); /* NULL: answered (c may be gone) */
    if (!h)
        return;
    c->host = h;
    c->waiting++;
    xmppd_auth_list(c->st->m, c->host, on_listed, c);
}

/* ---- sessions ---------------------------------------------------------------------------- */

static json_t *sessions_jids(api_call *c, const json_t *resp)
{
    (void)c;
    json_t *out = json_array();
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(resp, "sessions"), i, s)
        json_array_append(out, json_object_get(s, "jid"));
    return out;
}

static json_t *sessions_info(api_call *c, const json_t *resp)
{
    (void)c;
    return json_deep_copy(json_object_get(resp, "sessions"));
}

static json_t *sessions_number(api_call *c, const json_t *resp)
{
    (void)c;
    return json_pack("{s:I}", "num_sessions",
                     (json_int_t)json_array_size(json_object_get(resp, "sessions")));
}

static void cmd_connected_users(api_call *c)
{
    api_ctl(c, "sessions", json_object(), sessions_jids);
}

static void cmd_connected_users_info(api_call *c)
{
    api_ctl(c, "sessions", json_object(), sessions_info);
}

static void cmd_connected_users_number(api_call *c)
{
    api_ctl(c, "sessions", json_object(), sessions_number);
}

static json_t *kicked(api_call *c, const json_t *resp)
{
    (void)c;
    return json_pack("{s:O}", "kicked", json_object_get(resp, "kicked"));
}

static void cmd_kick_session(api_call *c)
{
    const char *res;
    if (api_account(c) < 0 || !(res = api_str(c, "resource")))
        return;
    char jid[3200];
    snprintf(jid, sizeof(jid), "%s@%s/%s", c->user, xmppd_host_name(c->host), res);
    const char *reason = json_string_value(json_object_get(c->args, "reason"));
    api_ctl(c, "kick", json_pack("{s:s, s:s?}", "jid", jid, "reason", reason), kicked);
}

static int count_one(xmppd_session *s, void *ud)
{
    (void)s, (void)ud;
    return 0;
}

static void cmd_kick_user(api_call *c)
{
    if (api_account(c) < 0)
        return;
    if (xmppd_user_sessions(c->host, c->user, count_one, NULL) == 0) {
        api_ok(c, json_pack("{s:i}", "kicked", 0)); /* nobody to kick is no error here */
        return;
    }
    char jid[2100];
    snprintf(jid, sizeof(jid), "%s@%s", c->user, xmppd_host_name(c->host));
    api_ctl(c, "kick", json_pack("{s:s}", "jid", jid), kicked);
}

/* ---- stanzas ------------------------------------------------------------------------------- */

/* Routes s (consumed) from "from" (an address at one of the hosts the
 * caller may act on) to "to". */
static void route_from(api_call *c, xmppd_stanza *s, const char *from, const char *to)
{
    xmppd_jid *f = xmppd_jid_parse(from), *t = xmppd_jid_parse(to);
    xmppd_host *h = f ? xmppd_host_find(f->domain) : NULL;
    if (!f || !t)
        api_fail(c, 400, "\"%s\": not a JID", f ? "to" : "from");
    else if (!h)
        api_fail(c, 400, "\"from\": %s is not at a host of this server", f->full);
    else if (!api_may(c, h))
        api_fail(c, 403, "not allowed on %s", xmppd_host_name(h));
    else if (xmppd_stanza_set_attr(s, "from", f->full) < 0 ||
             xmppd_stanza_set_attr(s, "to", t->full) < 0 || xmppd_route(h, s) < 0)
        api_fail(c, 400, "the stanza could not be routed");
    else
        api_ok(c, json_integer(0));
    xmppd_jid_free(f);
    xmppd_jid_free(t);
    xmppd_stanza_unref(s);
}

static void cmd_send_message(api_call *c)
{
    const char *from = api_str(c, "from");
    const char *to = from ? api_str(c, "to") : NULL;
    const char *body = to ? api_str(c, "body") : NULL;
    if (!body)
        return;
    const char *type = json_string_value(json_object_get(c->args, "type"));
    const char *subject = json_string_value(json_object_get(c->args, "subject"));
    static const char *const types[] = { "chat", "normal", "headline", "groupchat", NULL };
    bool known = !type;
    for (size_t i = 0; type && types[i]; i++)
        known |= strcmp(type, types[i]) == 0;
    if (!known) {
        api_fail(c, 400, "\"type\": chat, normal, headline or groupchat");
        return;
    }
    xmppd_stanza *m = xmppd_stanza_new("message", XMPPD_NS_CLIENT);
    xmppd_stanza *b = m ? xmppd_stanza_tag(m, "body", NULL) : NULL;
    xmppd_stanza *sub = b && subject && *subject ? xmppd_stanza_tag(m, "subject", NULL) : NULL;
    if (!b || xmppd_stanza_add_text(b, body, strlen(body)) < 0 || (subject && *subject && !sub) ||
        (sub && xmppd_stanza_add_text(sub, subject, strlen(subject)) < 0) ||
        xmppd_stanza_set_attr(m, "type", type && strcmp(type, "normal") != 0 ? type : NULL) < 0) {
        xmppd_stanza_unref(m);
        api_fail(c, 500, "out of memory");
        return;
    }
    route_from(c, m, from, to);
}

static void cmd_send_stanza(api_call *c)
{
    const char *from = api_str(c, "from");
    const char *to = from ? api_str(c, "to") : NULL;
    const char *text = to ? api_str(c, "stanza") : NULL;
    if (!text)
        return;
    xmppd_stanza *s = xmppd_stanza_from_string(text, strlen(text), XMPPD_NS_CLIENT);
    const char *name = s ? xmppd_stanza_name(s) : "";
    if (!s || strcmp(xmppd_stanza_ns(s), XMPPD_NS_CLIENT) != 0 ||
        (strcmp(name, "message") != 0 && strcmp(name, "presence") != 0 && strcmp(name, "iq") != 0)) {
        xmppd_stanza_unref(s);
        api_fail(c, 400, "\"stanza\": expected one <message/>, <presence/> or <iq/> element");
        return;
    }
    route_from(c, s, from, to);
}

/* ---- rosters --------------------------------------------------------------------------------- */

/* get_roster, add_rosteritem, delete_rosteritem: the account exists, its
 * roster is loaded (roster_api.h), then the command's step runs. */

typedef struct roster_list {
    const roster_api *rapi;
    const roster *r;
    json_t *list;
} roster_list;

static int group_one(const char *group, void *ud)
{
    json_array_append_new(ud, json_string(group));
    return 0;
}

static int roster_one(const roster_item *it, void *ud)
{
    static const char *const subs[] = { "none", "to", "from", "both" };
    roster_list *l = ud;
    json_t *groups = json_array();
    l->rapi->groups(l->r, it->jid, group_one, groups);
    json_array_append_new(l->list, json_pack("{s:s, s:s, s:s, s:s, s:o}", "jid", it->jid, "nick",
                                             it->name ? it->name : "", "subscription",
                                             subs[it->sub & 3], "ask", it->ask ? "subscribe" : "none",
                                             "groups", groups));
    return 0;
}

static void on_roster_written(int result, void *ud)
{
    api_call *c = ud;
    if (!api_back(c) || result == ROSTER_CANCELLED)
        return;
    if (result == ROSTER_DONE)
        api_ok(c, json_integer(0));
    else
        api_fail(c, 503, "the roster could not be stored");
}

/* The contact ("user"@"host", a bare JID), prepared: malloc'd, or NULL
 * after answering. */
static char *contact_arg(api_call *c)
{
    const char *user = api_str(c, "user");
    const char *host = user ? api_str(c, "host") : NULL;
    if (!host)
        return NULL;
    char text[2100];
    snprintf(text, sizeof(text), "%s@%s", user, host);
    xmppd_jid *j = xmppd_jid_parse(text);
    char *bare = j && !j->resource ? strdup(j->bare) : NULL;
    xmppd_jid_free(j);
    if (!bare)
        api_fail(c, 400, "\"user\"@\"host\": not a JID");
    return bare;
}

/* add_rosteritem's groups and subs; -1 after answering. */
static int roster_args(api_call *c, const char **groups, size_t *n_r, int *sub_r)
{
    const json_t *g = json_object_get(c->args, "groups");
    size_t i;
    const json_t *v;
    *n_r = 0;
    if (g && (!json_is_array(g) || json_array_size(g) > API_ROSTER_GROUPS)) {
        api_fail(c, 400, "\"groups\": an array of at most %d group names", API_ROSTER_GROUPS);
        return -1;
    }
    json_array_foreach(g, i, v) {
        if (!json_string_value(v) || !*json_string_value(v) || strlen(json_string_value(v)) > 1023) {
            api_fail(c, 400, "\"groups\": each a name of 1 to 1023 bytes");
            return -1;
        }
        groups[(*n_r)++] = json_string_value(v);
    }
    const char *subs = json_string_value(json_object_get(c->args, "subs"));
    static const char *const names[] = { "none", "to", "from", "both" };
    *sub_r = subs ? -1 : 0;
    for (int k = 0; subs && k < 4; k++)
        if (strcmp(subs, names[k]) == 0)
            *sub_r = k;
    if (*sub_r < 0) {
        api_fail(c, 400, "\"subs\": none, to, from or both");
        return -1;
    }
    return 0;
}

static void on_roster(roster *r, void *ud)
{
    api_call *c = ud;
    if (!api_back(c))
        return;
    const roster_api *rapi = xmppd_use(c->host, "roster");
    if (!r || !rapi) {
        api_fail(c, 503, "the roster could not be loaded");
        return;
    }
    if (strcmp(c->cmd->name, "get_roster") == 0) {
        roster_list l = { rapi, r, json_array() };
        if (!l.list) {
            api_fail(c, 500, "out of memory");
            return;
        }
        rapi->foreach(r, roster_one, &l);
        api_ok(c, l.list);
        return;
    }
    char *contact = contact_arg(c);
    if (!contact)
        return;
    const char *groups[API_ROSTER_GROUPS];
    size_t n = 0;
    int sub = 0, rc;
    bool del = strcmp(c->cmd->name, "delete_rosteritem") == 0;
    if (!del && roster_args(c, groups, &n, &sub) < 0) {
        free(contact);
        return; /* answered */
    }
    const char *nick = json_string_value(json_object_get(c->args, "nick"));
    c->waiting++;
    rc = del ? rapi->remove_item(rapi, c->st->m, r, contact, on_roster_written, c)
             : rapi->set_item(rapi, c->st->m, r, contact, nick, groups, n, sub, on_roster_written, c);
    if (rc != 0)
        c->waiting--;
    if (rc == 1)
        api_fail(c, 404, "%s is not in the roster", contact);
    else if (rc == -1)
        api_fail(c, 400, "the roster refused the change (a bad nick or group, a full roster, "
                 "or a contact of a shared group)");
    free(contact);
}

static void on_roster_exists(int result, void *ud)
{
    api_call *c = ud;
    if (!api_back(c) || result == XMPPD_AUTH_CANCELLED)
        return;
    const roster_api *rapi = xmppd_use(c->host, "roster");
    if (result == XMPPD_AUTH_USER_UNKNOWN)
        api_fail(c, 404, "user unknown");
    else if (result != XMPPD_AUTH_OK)
        api_fail(c, 503, "%s", xmppd_auth_result_str(result));
    else if (!rapi || rapi->version < 4 || rapi->size < sizeof(roster_api))
        api_fail(c, 501, "mod_roster is not loaded on %s", xmppd_host_name(c->host));
    else {
        c->waiting++;
        rapi->load(rapi, c->st->m, c->user, on_roster, c);
    }
}

static void roster_command(api_call *c, const char *user_key, const char *host_key)
{
    if (api_account_named(c, user_key, host_key) < 0)
        return;
    c->waiting++;
    xmppd_auth_exists(c->st->m, c->host, c->user, on_roster_exists, c);
}

static void cmd_get_roster(api_call *c)
{
    roster_command(c, "user", "host");
}

/* ejabberd's add_rosteritem / delete_rosteritem: the account is
 * localuser@localhost, the contact user@host. */
static void cmd_roster_item(api_call *c)
{
    roster_command(c, "localuser", "localhost");
}

/* ---- the server -------------------------------------------------------------------------------- */

static json_t *online_stat(api_call *c, const json_t *resp)
{
    const char *host = json_string_value(json_object_get(c->args, "host"));
    size_t n = 0, i;
    const json_t *s;
    json_array_foreach(json_object_get(resp, "sessions"), i, s)
        n += !host || strcmp(json_string_value(json_object_get(s, "host")), host) == 0;
    return json_pack("{s:I}", "stat", (json_int_t)n);
}

static json_t *uptime_stat(api_call *c, const json_t *resp)
{
    (void)c;
    return json_pack("{s:O}", "stat", json_object_get(resp, "uptime"));
}

/* stats {"name": registeredusers (with "host") | onlineusers | uptimeseconds} */
static void cmd_stats(api_call *c)
{
    const char *name = api_str(c, "name");
    if (!name)
        return;
    bool with_host = json_object_get(c->args, "host") != NULL;
    if (strcmp(name, "registeredusers") == 0) {
        xmppd_host *h = arg_host(c); /* NULL: answered (c may be gone) */
        if (h) {
            c->host = h;
            c->waiting++;
            xmppd_auth_list(c->st->m, c->host, on_listed, c);
        }
    } else if (strcmp(name, "onlineusers") == 0) {
        if (with_host ? arg_host(c) != NULL : api_may(c, NULL))
            api_ctl(c, "sessions", json_object(), online_stat);
        else if (!with_host)
            api_fail(c, 403, "without \"host\", a server-wide statistic");
    } else if (strcmp(name, "uptimeseconds") == 0) {
        api_ctl(c, "status", json_object(), uptime_stat);
    } else {
        api_fail(c, 400, "\"name\": registeredusers, onlineusers or uptimeseconds");
    }
}

static void cmd_status(api_call *c)
{
    api_ctl(c, "status", json_object(), NULL);
}

static void cmd_modules(api_call *c)
{
    api_ctl(c, "module-list", json_object(), NULL);
}

static void cmd_module_reload(api_call *c)
{
    const char *mod = api_str(c, "module");
    if (!mod)
        return;
    const char *host = json_string_value(json_object_get(c->args, "host"));
    api_ctl(c, "module-reload", json_pack("{s:s, s:s?}", "module", mod, "host", host), NULL);
}

static void cmd_reload_config(api_call *c)
{
    api_ctl(c, "reload", json_object(), NULL);
}

static json_t *s2s_streams(api_call *c, const json_t *resp)
{
    (void)c;
    return json_deep_copy(json_object_get(resp, "streams"));
}

static void cmd_s2s_connections(api_call *c)
{
    api_ctl(c, "s2s", json_object(), s2s_streams);
}

#define USER { "user", true, "the account's localpart" }
#define HOST { "host", true, "a host of this server" }
#define END { NULL, false, NULL }

static const api_arg a_account[] = { USER, HOST, END };
static const api_arg a_register[] = { USER, HOST, { "password", true, "the password" }, END };
static const api_arg a_ban[] = { USER, HOST, { "reason", false, "why (kept where the auth "
                                                          "provider can keep it)" }, END };
static const api_arg a_passwd[] = { USER, HOST, { "newpass", true, "the new password" }, END };
static const api_arg a_host[] = { HOST, END };
static const api_arg a_rosteritem[] = {
    { "localuser", true, "the account's localpart" }, { "localhost", true, "the account's host" },
    { "user", true, "the contact's localpart" }, { "host", true, "the contact's domain" },
    { "nick", false, "the contact's name in the roster" },
    { "groups", false, "the item's groups (at most 32)", true },
    { "subs", false, "the subscription: none (the default), to, from or both" }, END };
static const api_arg a_rosteritem_del[] = {
    { "localuser", true, "the account's localpart" }, { "localhost", true, "the account's host" },
    { "user", true, "the contact's localpart" }, { "host", true, "the contact's domain" }, END };
static const api_arg a_kick[] = { USER, HOST, { "resource", true, "the session's resource" },
                                  { "reason", false, "the text of the stream error" }, END };
static const api_arg a_message[] = {
    { "from", true, "an address at a host the caller may act on" },
    { "to", true, "the recipient" }, { "body", true, "the text" },
    { "type", false, "chat, normal (the default), headline or groupchat" },
    { "subject", false, "the subject" }, END };
static const api_arg a_stanza[] = {
    { "from", true, "an address at a host the caller may act on" },
    { "to", true, "the recipient" },
    { "stanza", true, "one <message/>, <presence/> or <iq/> in jabber:client" }, END };
static const api_arg a_stats[] = {
    { "name", true, "registeredusers (with host), onlineusers (host optional) or uptimeseconds" },
    { "host", false, "a host of this server" }, END };
static const api_arg a_login[] = { { "jid", true, "an administrator's bare JID" },
                                   { "password", true, "its password" }, END };
static const api_arg a_audit[] = { { "limit", false, "at most this many (the newest)" }, END };
static const api_arg a_metrics[] = { { "name", false, "only the metrics whose name begins so "
                                                     "(xmppd_stanzas_total)" }, END };
static const api_arg a_module[] = { { "module", true, "the module's name" },
                                    { "host", false, "the host (none: a global module, or every host)" },
                                    END };

const api_cmd api_commands[] = {
    { "register", "create an account", a_register, "a sentence", true, cmd_register },
    { "unregister", "delete an account and its data; its sessions end first", a_account,
      "{\"sessions_closed\": N}", true, cmd_unregister },
    { "change_password", "set an account's password; its sessions end", a_passwd,
      "{\"sessions_closed\": N}", true, cmd_change_password },
    { "ban_account", "disable an account: it may not log in (account-disabled); its sessions end",
      a_ban, "{\"sessions_closed\": N}", true, cmd_ban_account },
    { "unban_account", "let a disabled account log in again", a_account,
      "{\"sessions_closed\": 0}", true, cmd_unban_account },
    { "account_disabled", "is an account disabled (ban_account)?", a_account,
      "{\"disabled\": true|false}", true, cmd_account_disabled },
    { "check_account", "does an account exist?", a_account, "{\"exists\": true|false}", true,
      cmd_check_account },
    { "registered_users", "the host's accounts", a_host, "the localparts, sorted", true,
      cmd_registered_users },
    { "connected_users", "bound sessions of every host", NULL, "their full JIDs", false,
      cmd_connected_users },
    { "connected_users_info", "bound sessions of every host, in detail", NULL,
      "[{jid, host, ip, secure, available, priority, show}]", false, cmd_connected_users_info },
    { "connected_users_number", "how many sessions are bound", NULL, "{\"num_sessions\": N}", false,
      cmd_connected_users_number },
    { "kick_session", "end one session (<policy-violation/>)", a_kick, "{\"kicked\": 1}", true,
      cmd_kick_session },
    { "kick_user", "end every session of an account", a_account, "{\"kicked\": N}", true,
      cmd_kick_user },
    { "send_message", "route a message", a_message, "0", true, cmd_send_message },
    { "send_stanza", "route a stanza", a_stanza, "0", true, cmd_send_stanza },
    { "get_roster", "an account's roster", a_account, "[{jid, nick, subscription, ask, groups}]",
      true, cmd_get_roster },
    { "add_rosteritem", "add or change an item of localuser@localhost's roster (pushed to its "
      "online resources)", a_rosteritem, "0", true, cmd_roster_item },
    { "delete_rosteritem", "remove an item from localuser@localhost's roster (pushed to its "
      "online resources)", a_rosteritem_del, "0", true, cmd_roster_item },
    { "stats", "a statistic", a_stats, "{\"stat\": N}", true, cmd_stats },
    { "status", "version, uptime, hosts, sessions, modules", NULL, "what xmppctl -j status prints",
      false, cmd_status },
    { "modules", "the loaded modules", NULL, "what xmppctl -j module list prints", false,
      cmd_modules },
    { "module_reload", "replace a module by a new instance", a_module, "{\"message\": ...}", false,
      cmd_module_reload },
    { "reload_config", "read the configuration again (as SIGHUP)", NULL, "what the reload said", false,
      cmd_reload_config },
    { "s2s_connections", "server-to-server streams", NULL,
      "[{direction, state, local, remote, ip, port, secure, bidi, authenticated, pairs}]", false,
      cmd_s2s_connections },
    { "metrics", "the server's metrics (as at /metrics)", a_metrics,
      "[{name, labels, value}]", false, api_cmd_metrics },
    { "audit_log", "the latest calls of this API (in memory, newest first)", a_audit,
      "[{time, command, caller, ip, status}]", false, api_cmd_audit_log },
    { "login", "trade an administrator's JID and password for a token (no Authorization header)",
      a_login, "{token, jid, expires_in, server_wide, hosts}", false, api_cmd_login, API_OPEN },
    { "logout", "end the login token presented", NULL, "{\"logged_out\": true|false}", false,
      api_cmd_logout, API_SELF },
    { NULL, NULL, NULL, NULL, false, NULL },
};
