/* mod_admin_api: a JSON HTTP API for the site's own tools, shaped like
 * ejabberd's mod_http_api (POST PATH/COMMAND with a JSON object; the
 * commands are in api_commands.c).
 *
 * Who may call: an administrator with HTTP Basic credentials (the JID and
 * the account's password, checked by the host's auth provider: no second
 * password store), acting on the hosts the access rule "admin_api" allows
 * them (default: the hosts they administer; server-wide commands: the
 * server-wide administrators), or a bearer token from the configuration,
 * limited to its hosts and commands. Only loopback clients unless
 * loopback_only is false or the rule "admin_api" allows the address.
 * Every call is logged (command, caller, address, status), is an audit
 * line (../log/audit.h: caller, command, target, result), and the latest
 * are kept for audit_log (api_audit.c). The command login trades
 * an administrator's password for a short-lived token (api_login.c: the
 * web console's way in). A POST from a web page of another origin is
 * refused (Origin, Sec-Fetch-Site), so a browser that cached Basic
 * credentials cannot be made to call the API by a foreign page. GET
 * PATH/openapi.json serves the API's OpenAPI document (api_openapi.c). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../log/audit.h"
#include "admin_api.h"

#define API_MAX_BODY (64 * 1024)

static const xmppd_option api_token_fields[] = {
    { "name", XMPPD_OPT_STRING, XMPPD_OFF(api_token, name), NULL },
    { "token", XMPPD_OPT_STRING, XMPPD_OFF(api_token, token), NULL, 24, 0, NULL, XMPPD_OPT_SECRET,
      "the bearer token in clear (at least 24 characters; send \"Authorization: Bearer TOKEN\")" },
    { "sha256", XMPPD_OPT_STRING, XMPPD_OFF(api_token, sha256), NULL, 0, 0, NULL, 0,
      "instead of token: its SHA-256 in hex, as `xmppctl token NAME` prints it" },
    { "expires", XMPPD_OPT_STRING, XMPPD_OFF(api_token, expires), NULL, 0, 0, NULL, 0,
      "when it stops working: a date (2027-01-31) or a UTC time (2027-01-31T12:00:00Z)" },
    { "hosts", XMPPD_OPT_LIST, XMPPD_OFF(api_token, hosts), NULL, 0, 0, NULL, 0,
      "the hosts it may act on (default: all, and the server-wide commands)" },
    { "commands", XMPPD_OPT_LIST, XMPPD_OFF(api_token, commands), NULL, 0, 0, NULL, 0,
      "the commands it may run (default: all)" },
    { NULL }
};

static const xmppd_option api_options[] = {
    { "path", XMPPD_OPT_STRING, XMPPD_OFF(api_conf, path), "\"/api\"", 2, 0, NULL, 0,
      "the URL path under which the commands are (PATH/register, ...)" },
    { "loopback_only", XMPPD_OPT_BOOL, XMPPD_OFF(api_conf, loopback_only), "true", 0, 0, NULL, 0,
      "serve only clients on loopback addresses (and those the access rule admin_api allows)" },
    { "tokens", XMPPD_OPT_MAP, XMPPD_OFF(api_conf, tokens), "{}", 0, 0, NULL, 0,
      "bearer tokens by name: token or sha256, expires, hosts, commands", api_token_fields, sizeof(api_token) },
    { "login_lifetime", XMPPD_OPT_DURATION, XMPPD_OFF(api_conf, login_lifetime), "\"1h\"", 60000,
      86400000, NULL, 0,
      "how long a token from the login command (the web console's) stands for its administrator" },
    { "recent_calls", XMPPD_OPT_INT, XMPPD_OFF(api_conf, recent_calls), "200", 0, 10000, NULL, 0,
      "how many of the latest calls the audit_log command shows (kept in memory; 0: none)" },
    { NULL }
};

/* ---- answers ---------------------------------------------------------------------- */

static void call_free(api_call *c)
{
    for (api_call **pp = &c->st->calls; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    json_decref(c->args);
    json_decref(c->ctl_req);
    xmppd_jid_free(c->admin);
    free(c->ip);
    free(c->user);
    free(c);
}

static const char *caller_name(const api_call *c)
{
    return c->admin ? c->admin->bare : c->token ? c->token->name : "nobody";
}

/* One audit line per call: what it was about (an account, else the
 * host, recipient or module its arguments name), never a password. */
static void audit(api_call *c, int status, const json_t *body)
{
    char actor[1100], target[2100], result[600];
    snprintf(actor, sizeof(actor), "%s%s", c->token ? "token:" : "", caller_name(c));
    static const char *const keys[] = { "to", "host", "module", NULL };
    const char *t = NULL;
    for (size_t i = 0; !c->user && c->args && keys[i] && !t; i++)
        t = json_string_value(json_object_get(c->args, keys[i]));
    if (c->user && c->host)
        snprintf(target, sizeof(target), "%s@%s", c->user, xmppd_host_name(c->host));
    else
        snprintf(target, sizeof(target), "%.1000s", t ? t : "");
    const char *msg = status == 200 ? NULL : json_string_value(json_object_get(body, "message"));
    if (status == 200)
        snprintf(result, sizeof(result), "ok");
    else
        snprintf(result, sizeof(result), "%d: %.500s", status, msg ? msg : "failed");
    log_audit_entry e = { .via = "api", .actor = actor, .ip = c->ip,
                          .command = c->cmd ? c->cmd->name : "-", .target = *target ? target : NULL,
                          .result = result };
    log_audit(c->host, &e);
}

static void respond(api_call *c, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    audit(c, text ? status : 500, body);
    json_decref(body);
    xmppd_log(c->st->m, XMPPD_LOG_INFO, "%s by %s from %s: %d", c->cmd ? c->cmd->name : "-",
              caller_name(c), c->ip, text ? status : 500);
    api_audit_add(c->st, c->cmd ? c->cmd->name : "-", caller_name(c), c->ip, text ? status : 500);
    if (c->req) {
        xmppd_http_set_header(c->req, "Cache-Control", "no-store");
        if (text)
            xmppd_http_respond(c->req, status, "application/json", text, strlen(text));
        else
            xmppd_http_error(c->req, 500);
    }
    free(text);
    c->req = NULL;
    if (c->waiting == 0)
        call_free(c);
}

void api_ok(api_call *c, json_t *result)
{
    respond(c, 200, result ? result : json_null());
}

void api_fail(api_call *c, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Bearer only to a bearer or login request: a Basic challenge would
     * make a browser (the console's fetch) prompt for a password. */
    if (status == 401 && c->req)
        xmppd_http_set_header(c->req, "WWW-Authenticate",
                              c->bearer ? "Bearer realm=\"xmppd\""
                                        : "Basic realm=\"xmppd\", Bearer realm=\"xmppd\"");
    respond(c, status, json_pack("{s:s, s:i, s:s}", "status", "error", "code", status, "message", msg));
}

bool api_back(api_call *c)
{
    c->waiting--;
    if (c->req)
        return true;
    if (c->waiting == 0)
        call_free(c);
    return false;
}

/* ---- arguments and permissions ------------------------------------------------------ */

const char *api_str(api_call *c, const char *key)
{
    const char *v = json_string_value(json_object_get(c->args, key));
    if (!v || !*v) {
        api_fail(c, 400, "\"%s\": a string is required", key);
        return NULL;
    }
    return v;
}

static bool listed(const char *const *list, const char *s)
{
    for (size_t i = 0; list && list[i]; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

bool api_may(const api_call *c, const xmppd_host *h)
{
    if (c->token) {
        if (c->token->hosts && (!h || !listed(c->token->hosts, xmppd_host_name(h))))
            return false;
        return xmppd_access(h, "admin_api", NULL, c->ip) != XMPPD_ACCESS_DENY;
    }
    return c->admin &&
           xmppd_access_allowed(h, "admin_api", c->admin, c->ip, xmppd_is_admin(h, c->admin));
}

int api_account(api_call *c)
{
    return api_account_named(c, "user", "host");
}

int api_account_named(api_call *c, const char *user_key, const char *host_key)
{
    const char *user = api_str(c, user_key);
    const char *host = user ? api_str(c, host_key) : NULL;
    if (!host)
        return -1;
    char *d = xmppd_nameprep(host);
    c->host = d ? xmppd_host_find(d) : NULL;
    free(d);
    if (!c->host) {
        api_fail(c, 404, "unknown host %s", host);
        return -1;
    }
    if (!api_may(c, c->host)) {
        api_fail(c, 403, "not allowed on %s", xmppd_host_name(c->host));
        return -1;
    }
    c->user = xmppd_nodeprep(user);
    if (!c->user) {
        api_fail(c, 400, "\"%s\": not a valid user name", user_key);
        return -1;
    }
    return 0;
}

/* ---- control commands ------------------------------------------------------------------- */

static void on_ctl(int status, const json_t *resp, void *ud)
{
    api_call *c = ud;
    if (!api_back(c) || status != XMPPD_CTL_DONE)
        return;
    if (!resp) {
        api_fail(c, 500, "out of memory");
        return;
    }
    if (!json_is_true(json_object_get(resp, "ok"))) {
        const char *why = json_string_value(json_object_get(resp, "error"));
        why = why ? why : "failed";
        api_fail(c, strstr(why, "unknown") || strstr(why, "no such") ? 404
                    : strstr(why, "cannot disable") ? 501 : 400, "%s", why);
        return;
    }
    if (c->ctl_fn) {
        api_ok(c, c->ctl_fn(c, resp));
        return;
    }
    json_t *out = json_deep_copy(resp);
    json_object_del(out, "ok");
    api_ok(c, out);
}

/* On the loop turn after the request's handler: a command that unloads
 * this module (module_reload admin_api, reload_config) does so outside
 * the handler, and the kernel answers the request then (503). */
static void ctl_go(void *ud)
{
    api_call *c = ud;
    json_t *req = c->ctl_req;
    c->ctl_req = NULL;
    if (!api_back(c)) {
        json_decref(req);
        return;
    }
    c->waiting++;
    int rc = xmppd_ctl_run(c->st->m, c->ctl_name, req, on_ctl, c);
    json_decref(req);
    if (rc < 0) {
        c->waiting--;
        api_fail(c, 500, "cannot run %s", c->ctl_name);
    }
}

static void ctl_dropped(void *ud)
{
    api_call *c = ud;
    json_decref(c->ctl_req);
    c->ctl_req = NULL;
    api_back(c);
}

void api_ctl(api_call *c, const char *name, json_t *req, json_t *(*fn)(api_call *c, const json_t *resp))
{
    c->ctl_fn = fn;
    c->ctl_name = name;
    c->ctl_req = req;
    c->waiting++;
    if (!req || xmppd_defer(c->st->m, ctl_go, ctl_dropped, c) < 0) {
        c->waiting--;
        json_decref(req);
        c->ctl_req = NULL;
        api_fail(c, 500, "cannot run %s", name);
    }
}

/* ---- requests ------------------------------------------------------------------------- */

static bool loopback(const char *ip)
{
    return ip && (strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0 ||
                  strncmp(ip, "::ffff:127.", 11) == 0);
}

static void run_command(api_call *c)
{
    if (c->cmd->flags & API_SELF) {
        c->cmd->run(c);
        return;
    }
    if (c->token && c->token->commands && !listed(c->token->commands, c->cmd->name)) {
        api_fail(c, 403, "the token may not run %s", c->cmd->name);
        return;
    }
    if (!c->cmd->per_host && !api_may(c, NULL)) {
        api_fail(c, 403, "%s is a server-wide command", c->cmd->name);
        return;
    }
    for (const api_arg *a = c->cmd->args; a && a->name; a++)
        if (a->required && !api_str(c, a->name))
            return; /* answered 400 */
    c->cmd->run(c);
}

static void on_verified(int result, void *ud)
{
    api_call *c = ud;
    if (!api_back(c) || result == XMPPD_AUTH_CANCELLED)
        return;
    if (result == XMPPD_AUTH_OK)
        run_command(c);
    else if (result == XMPPD_AUTH_MISMATCH || result == XMPPD_AUTH_USER_UNKNOWN ||
             result == XMPPD_AUTH_DISABLED)
        api_fail(c, 401, "wrong credentials");
    else
        api_fail(c, 503, "the credentials cannot be checked now: %s", xmppd_auth_result_str(result));
}

/* HTTP Basic with an account's JID and password: checked by its host. */
static void basic_auth(api_call *c, const char *b64)
{
    unsigned char *raw = NULL;
    size_t len = 0;
    char *colon = NULL;
    if (xmppd_base64_decode(b64, strlen(b64), &raw, &len) == 0 && strlen((char *)raw) == len)
        colon = strchr((char *)raw, ':');
    if (colon)
        *colon = '\0';
    c->admin = colon ? xmppd_jid_parse((char *)raw) : NULL;
    xmppd_host *h = c->admin && c->admin->node && !c->admin->resource
                        ? xmppd_host_find(c->admin->domain) : NULL;
    if (!h) {
        xmppd_jid_free(c->admin);
        c->admin = NULL;
        if (raw)
            xmppd_wipe(raw, len);
        free(raw);
        api_fail(c, 401, "expected the credentials of an account of this server (user@host)");
        return;
    }
    c->waiting++;
    xmppd_auth_verify_plain(c->st->m, h, c->admin->node, colon + 1, on_verified, c);
    xmppd_wipe(raw, len);
    free(raw);
}

/* Is the request from a web page of another origin (a forged cross-site
 * request)? Browsers send Origin with every POST from a page and, lately,
 * Sec-Fetch-Site; scripts and curl send neither. */
static bool cross_site(xmppd_http_request *req)
{
    const char *site = xmppd_http_header(req, "Sec-Fetch-Site");
    if (site && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)
        return true;
    const char *origin = xmppd_http_header(req, "Origin");
    const char *host = xmppd_http_header(req, "Host");
    if (!origin)
        return false;
    const char *sep = strstr(origin, "://");
    return !sep || !host || strcasecmp(sep + 3, host) != 0 ||
           (strncasecmp(origin, "https:", 6) == 0) != xmppd_http_secure(req);
}

static void on_request(xmppd_http_request *req, void *ud)
{
    api_state *st = ud;
    const api_conf *conf = xmppd_module_conf(st->m);
    const char *ip = xmppd_http_remote_ip(req);
    api_call *c = calloc(1, sizeof(*c));
    if (!c || !(c->ip = strdup(ip ? ip : "-"))) {
        free(c);
        xmppd_http_error(req, 503);
        return;
    }
    c->st = st;
    c->req = req;
    c->next = st->calls;
    st->calls = c;
    xmppd_http_set_data(req, c);
    if (conf->loopback_only && !loopback(ip) &&
        xmppd_access(NULL, "admin_api", NULL, ip) != XMPPD_ACCESS_ALLOW) {
        api_fail(c, 403, "the API serves loopback clients only");
        return;
    }
    const char *name = xmppd_http_path(req) + strlen(conf->path);
    name += *name == '/';
    if (xmppd_http_method(req) != XMPPD_HTTP_POST) { /* GET (or HEAD) */
        if (strcmp(name, "openapi.json") == 0)
            respond(c, 200, api_openapi(conf->path));
        else {
            xmppd_http_set_header(req, "Allow", "POST");
            api_fail(c, 405, "commands are POSTed; GET serves only openapi.json");
        }
        return;
    }
    for (const api_cmd *k = api_commands; k->name; k++)
        if (strcmp(k->name, name) == 0)
            c->cmd = k;
    if (!c->cmd) {
        api_fail(c, 404, "no command \"%.100s\"", name);
        return;
    }
    if (cross_site(req)) {
        api_fail(c, 403, "a request from another site's page (Origin, Sec-Fetch-Site)");
        return;
    }
    size_t len = 0;
    const char *body = xmppd_http_body(req, &len);
    json_error_t jerr;
    c->args = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : json_object();
    if (!json_is_object(c->args)) {
        api_fail(c, 400, "expected a JSON object%s%s", c->args ? "" : ": ",
                 c->args ? "" : jerr.text);
        return;
    }
    const char *auth = xmppd_http_header(req, "Authorization");
    if (c->cmd->flags & API_OPEN) {
        c->bearer = true;
        c->cmd->run(c);
    } else if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        bool expired = false;
        const xmppd_jid *admin = api_login_find(st, auth + 7);
        c->bearer = true;
        c->token = admin ? NULL : api_token_find(st, auth + 7, &expired);
        if (admin) {
            c->login_token = auth + 7;
            if (!(c->admin = xmppd_jid_dup(admin)))
                api_fail(c, 500, "out of memory");
            else
                run_command(c);
        } else if (!c->token)
            api_fail(c, 401, "unknown or expired token");
        else if (expired)
            api_fail(c, 401, "the token %s expired", c->token->name);
        else
            run_command(c);
    } else if (auth && strncasecmp(auth, "Basic ", 6) == 0) {
        basic_auth(c, auth + 6);
    } else {
        api_fail(c, 401, "credentials required (HTTP Basic with an administrator's JID, or a token)");
    }
}

/* The client went away, or the module unloads: callbacks still due free
 * the call. */
static void on_cancel(xmppd_http_request *req, void *ud)
{
    (void)ud;
    api_call *c = xmppd_http_data(req);
    if (!c)
        return;
    c->req = NULL;
    if (c->waiting == 0)
        call_free(c);
}

/* An account deleted, disabled or given a new password loses its login
 * tokens, whichever way it happened (the API, xmppctl, XEP-0133): an
 * administrator barred from logging in, or whose password leaked, is barred
 * from the API too. */
static const char *const revoking_events[] = { "user-deleted", "user-disabled", "password-changed" };

static int on_account_changed(xmppd_event *ev, void *ud)
{
    if (ev->host && ev->data)
        api_logins_revoke(ud, ev->data, xmppd_host_name(ev->host));
    return XMPPD_PASS;
}

/* The path and the tokens were checked by api_check before this. */
static int api_load(xmppd_module *m, const void *conf_)
{
    const api_conf *conf = conf_;
    api_state *st = calloc(1, sizeof(*st));
    if (!st)
        return xmppd_module_refuse(m, "out of memory");
    st->m = m;
    xmppd_module_set_data(m, st);
    if (api_audit_init(st, conf->recent_calls) < 0) {
        free(st);
        return xmppd_module_refuse(m, "out of memory");
    }
    int rc = api_tokens_load(st, conf); /* refuses with the reason */
    if (rc == 0 && api_tokens_command(st) < 0)
        rc = xmppd_module_refuse(m, "cannot register the control command \"token\"");
    if (rc < 0) {
        api_audit_free(st);
        free(st->keys);
        free(st);
        return rc;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/", conf->path);
    xmppd_http_route r = { .path = path, .domain = "*", .methods = XMPPD_HTTP_POST | XMPPD_HTTP_GET,
                           .max_body = API_MAX_BODY, .handler = on_request, .cancel = on_cancel,
                           .ud = st };
    bool hooked = xmppd_http_route_add(m, &r) == 0;
    for (size_t i = 0; hooked && i < sizeof(revoking_events) / sizeof(*revoking_events); i++)
        hooked = xmppd_hook(m, revoking_events[i], on_account_changed, XMPPD_PRIO_DEFAULT, st) == 0;
    if (!hooked) {
        api_audit_free(st);
        free(st->keys);
        free(st);
        return xmppd_module_refuse(m, "cannot register the route %s and its hooks", path);
    }
    return 0;
}

/* xmppctl check, reloads and loads: the tokens as a load checks them. */
static int api_check(const void *conf_, char *err, size_t errlen)
{
    const api_conf *conf = conf_;
    if (conf->path[0] != '/' || conf->path[strlen(conf->path) - 1] == '/') {
        snprintf(err, errlen, "path: expected a path such as /api, got %s", conf->path);
        return -1;
    }
    return api_tokens_check(conf, NULL, err, errlen);
}

static void api_unload(xmppd_module *m)
{
    api_state *st = xmppd_module_data(m);
    while (st->calls) /* every request and callback ended; what is left is ours */
        call_free(st->calls);
    api_logins_free(st);
    api_audit_free(st);
    free(st->keys);
    free(st);
}

XMPPD_MODULE(admin_api, .version = "1.0",
             .summary = "JSON HTTP administration API (ejabberd mod_http_api style)",
             .flags = XMPPD_MOD_GLOBAL, .options = api_options, .conf_size = sizeof(api_conf),
             .load = api_load, .unload = api_unload, .check = api_check);
