/* auth_ldap: accounts from an LDAP directory (OpenLDAP, Active Directory).
 *
 * PLAIN logins are checked by binding to the directory as the user:
 * either directly with a DN template (bind_dn_template), or after a
 * search with the service account finds the user's entry (filter; the
 * localpart escaped per RFC 4515). Accounts the entry marks as disabled
 * (disabled_attribute, AD's userAccountControl) are refused. With
 * scram on, a successful PLAIN login stores SCRAM keys locally, tied to
 * the entry's password version (la_scram.c), so later logins can use
 * SCRAM while the directory stays the authority: every SCRAM login first
 * asks the directory whether the account exists and may log in.
 *
 * Everything runs on the connection pool (ldap_pool.h): asynchronous on
 * the event loop, never blocking it. The provider is read-only: accounts
 * are managed in the directory. Other modules (vcard_ldap, shared_roster)
 * search the directory through the API "directory" (directory_api.h, la_api.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth_ldap.h"

/* ---- options ---- */

static const char *const la_scopes[] = { "base", "one", "sub", NULL };

static const xmppd_option la_options[] = {
    { "uris", XMPPD_OPT_LIST, XMPPD_OFF(la_conf, uris), NULL, 0, 0, NULL, XMPPD_OPT_REQUIRED,
      "directory servers, ldap:// or ldaps:// URIs, tried in order (fail-over)" },
    { "starttls", XMPPD_OPT_BOOL, XMPPD_OFF(la_conf, starttls), "false", 0, 0, NULL, 0,
      "require StartTLS (RFC 4513 section 3) on ldap:// URIs" },
    { "tls_ca_file", XMPPD_OPT_PATH, XMPPD_OFF(la_conf, tls_ca_file), NULL, 0, 0, NULL, 0,
      "PEM file of the CAs the directory's certificate must chain to (unset: the system's)" },
    { "bind_dn", XMPPD_OPT_STRING, XMPPD_OFF(la_conf, bind_dn), NULL, 0, 0, NULL, 0,
      "service account that searches the directory (unset: anonymous)" },
    { "bind_password", XMPPD_OPT_STRING, XMPPD_OFF(la_conf, bind_password), NULL, 0, 0, NULL, XMPPD_OPT_SECRET,
      "password of the service account" },
    { "base", XMPPD_OPT_STRING, XMPPD_OFF(la_conf, base), NULL, 0, 0, NULL, XMPPD_OPT_REQUIRED,
      "DN under which accounts are searched" },
    { "scope", XMPPD_OPT_ENUM, XMPPD_OFF(la_conf, scope), "sub", 0, 0, la_scopes, XMPPD_OPT_INDEX,
      "search scope under base: base, one or sub" },
    { "filter", XMPPD_OPT_STRING, XMPPD_OFF(la_conf, filter), "(&(objectClass=person)(uid=%u))", 0, 0, NULL, 0,
      "finds an account's entry; %u the localpart (escaped, RFC 4515), %d the host, %{jid}" },
    { "user_attribute", XMPPD_OPT_STRING, XMPPD_OFF(la_conf, user_attribute), "uid", 0, 0, NULL, 0,
      "attribute holding the account name (its part before any @ is the localpart)" },
    { "bind_dn_template", XMPPD_OPT_STRING, XMPPD_OFF(la_conf, bind_dn_template), NULL, 0, 0, NULL, 0,
      "direct bind: the user's DN (uid=%u,ou=people,...) or bind name (%u@example.org); unset: search then bind" },
    { "disabled_attribute", XMPPD_OPT_STRING, XMPPD_OFF(la_conf, disabled_attribute), NULL, 0, 0, NULL, 0,
      "attribute whose value (one of disabled_values) marks an account as disabled" },
    { "disabled_values", XMPPD_OPT_LIST, XMPPD_OFF(la_conf, disabled_values), "[\"TRUE\"]", 0, 0, NULL, 0,
      "values of disabled_attribute that disable an account (case-insensitive)" },
    { "active_directory", XMPPD_OPT_BOOL, XMPPD_OFF(la_conf, active_directory), "false", 0, 0, NULL, 0,
      "Active Directory: userAccountControl ACCOUNTDISABLE and AD's bind errors (disabled, locked, expired)" },
    { "search_connections", XMPPD_OPT_INT, XMPPD_OFF(la_conf, search_connections), "2", 1, 32, NULL, 0,
      "connections bound as the service account, each carrying many searches" },
    { "bind_connections", XMPPD_OPT_INT, XMPPD_OFF(la_conf, bind_connections), "2", 1, 64, NULL, 0,
      "connections checking passwords, one bind at a time each" },
    { "connect_timeout", XMPPD_OPT_DURATION, XMPPD_OFF(la_conf, connect_timeout), "5s", 100, 600000, NULL, 0,
      "a connection not ready (TCP, TLS, service bind) after this long tries the next URI" },
    { "timeout", XMPPD_OPT_DURATION, XMPPD_OFF(la_conf, timeout), "5s", 100, 600000, NULL, 0,
      "a lookup or bind not answered after this long fails (temporary-auth-failure)" },
    { "reconnect_max", XMPPD_OPT_DURATION, XMPPD_OFF(la_conf, reconnect_max), "10s", 100, 600000, NULL, 0,
      "longest pause between rounds of attempts when no server answers" },
    { "page_size", XMPPD_OPT_INT, XMPPD_OFF(la_conf, page_size), "500", 1, 100000, NULL, 0,
      "entries per page of large searches (RFC 2696; AD answers at most 1000)" },
    { "max_entries", XMPPD_OPT_INT, XMPPD_OFF(la_conf, max_entries), "100000", 1, 10000000, NULL, 0,
      "most entries one search (account list, groups) may return" },
    { "scram", XMPPD_OPT_BOOL, XMPPD_OFF(la_conf, scram), "false", 0, 0, NULL, 0,
      "after a PLAIN login store SCRAM keys locally and offer SCRAM (the directory stays the authority)" },
    { "password_changed_attribute", XMPPD_OPT_STRING, XMPPD_OFF(la_conf, password_changed_attribute),
      "modifyTimestamp", 0, 0, NULL, 0,
      "attribute that changes with the password (pwdChangedTime, AD: pwdLastSet): stored SCRAM keys follow it" },
    { "iterations", XMPPD_OPT_INT, XMPPD_OFF(la_conf, iterations), "10000", 4096, 10000000, NULL, 0,
      "PBKDF2 iterations of the SCRAM keys stored after PLAIN logins" },
    { NULL }
};

/* ---- requests ---- */

la_req *la_req_new(la_ctx *ctx, enum la_op op, const char *user, const char *password, void *ud)
{
    la_req *r = calloc(1, sizeof *r);
    if (!r || (user && !(r->user = strdup(user))) || (password && !(r->password = strdup(password)))) {
        if (r)
            free(r->user);
        free(r);
        xmppd_log(ctx->m, XMPPD_LOG_ERROR, "out of memory: account request dropped");
        return NULL;
    }
    r->ctx = ctx;
    r->op = op;
    r->ud = ud;
    r->next = ctx->reqs;
    if (ctx->reqs)
        ctx->reqs->prev = r;
    ctx->reqs = r;
    return r;
}

void la_req_free(la_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        r->ctx->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    if (r->lp)
        lp_cancel(r->lp);
    if (r->password) {
        xmppd_wipe(r->password, strlen(r->password));
        free(r->password);
    }
    xmppd_wipe(r->keys, sizeof r->keys);
    xmppd_call_finish(r->call);
    free(r->marker);
    free(r->user);
    free(r);
}

void la_answer(la_req *r, int result, const xmppd_scram_keys *keys)
{
    if (r->answered)
        return;
    r->answered = true;
    switch (r->op) {
    case LA_SCRAM:
        r->cb.scram(result, result == XMPPD_AUTH_OK ? keys : NULL, r->ud);
        break;
    case LA_LIST:
        r->cb.list(result, NULL, 0, r->ud);
        break;
    case LA_API:
        if (xmppd_call_finish(r->call))
            r->cb.api(DIRECTORY_ERROR, NULL, 0, r->ud);
        r->call = NULL;
        break;
    default:
        r->cb.res(result, r->ud);
        break;
    }
}

void la_finish(la_req *r, int result)
{
    la_answer(r, result, NULL);
    la_req_free(r);
}

static void la_deferred(void *ud)
{
    la_req *r = ud;
    la_finish(r, r->result);
}

static void la_defer_cancelled(void *ud)
{
    la_req_free(ud);
}

/* Answers r on a later loop turn (never inside the provider call). */
static void la_finish_later(la_req *r, int result)
{
    r->result = result;
    if (xmppd_defer(r->ctx->m, la_deferred, la_defer_cancelled, r) != 0)
        la_req_free(r); /* unloading: the kernel answers the asker */
}

/* The pool closed (the module unloads): the kernel answers providers'
 * askers itself; API callers hear DIRECTORY_ERROR. */
static void la_closed(la_req *r)
{
    if (r->op == LA_API)
        la_answer(r, XMPPD_AUTH_INTERNAL, NULL);
    la_req_free(r);
}

/* ---- lookups ---- */

int la_lookup(la_req *r, const char *const *attrs, lp_cb cb)
{
    la_ctx *ctx = r->ctx;
    lt_values v = { r->user, ctx->host, false };
    char *text = lt_expand(ctx->by_dn ? &ctx->bind_name : &ctx->filter, &v);
    if (!text)
        return -1;
    if (ctx->by_dn)
        r->lp = lp_search(ctx->pool, text, DIRECTORY_SCOPE_BASE, "(objectClass=*)", attrs, 1, cb, r);
    else
        r->lp = lp_search(ctx->pool, ctx->conf->base, ctx->conf->scope, text, attrs, 1, cb, r);
    free(text);
    return r->lp ? 0 : -1;
}

int la_lookup_result(la_req *r, const lp_result *res, const directory_entry **e_r)
{
    la_ctx *ctx = r->ctx;
    r->lp = NULL;
    if (res->code == LP_CLOSED)
        return -2;
    if (res->code == LDAP_SUCCESS) {
        if (res->n == 0)
            return 1;
        *e_r = &res->entries[0];
        return 0;
    }
    if (res->code == LDAP_NO_SUCH_OBJECT && ctx->by_dn)
        return 1;
    if (res->code == LDAP_SIZELIMIT_EXCEEDED)
        xmppd_log(ctx->m, XMPPD_LOG_ERROR, "%s@%s: the filter matches more than one entry: refused", r->user,
                  ctx->host);
    else
        xmppd_log(ctx->m, XMPPD_LOG_WARN, "looking up %s@%s failed: %s%s%s", r->user, ctx->host,
                  lp_code_str(res->code), *res->diag ? ": " : "", res->diag);
    return -1;
}

char *la_entry_user(const la_ctx *ctx, const directory_entry *e)
{
    const directory_attr *at = directory_attr_get(e, ctx->conf->user_attribute);
    char name[1024];
    if (!at || at->n == 0 || strlen(at->vals[0].val) != at->vals[0].len ||
        !lt_account_name(at->vals[0].val, name, sizeof name))
        return NULL;
    return xmppd_nodeprep(name);
}

/* Does the entry say the account may not log in? */
static bool la_disabled(const la_ctx *ctx, const directory_entry *e)
{
    const la_conf *c = ctx->conf;
    const directory_attr *at = c->disabled_attribute ? directory_attr_get(e, c->disabled_attribute) : NULL;
    for (size_t i = 0; at && i < at->n; i++)
        for (const char *const *v = c->disabled_values; v && *v; v++)
            if (strcasecmp(at->vals[i].val, *v) == 0)
                return true;
    if (c->active_directory && (at = directory_attr_get(e, "userAccountControl")) && at->n > 0)
        return lt_ad_account_disabled(at->vals[0].val);
    return false;
}

/* The result of a user's bind that failed on its credentials: AD tells a
 * disabled, locked or expired account apart in its diagnostic. */
static int la_bind_refused(const la_ctx *ctx, const lp_result *res)
{
    if (ctx->conf->active_directory && lt_ad_bind_disabled(res->diag))
        return XMPPD_AUTH_DISABLED;
    return XMPPD_AUTH_MISMATCH;
}

/* ---- verify_plain ---- */

/* A successful login: answered now; SCRAM keys may follow. */
static void la_plain_ok(la_req *r, const directory_entry *e)
{
    la_ctx *ctx = r->ctx;
    if (e && la_disabled(ctx, e)) {
        la_finish(r, XMPPD_AUTH_DISABLED);
        return;
    }
    if (e && !r->marker)
        r->marker = la_marker(ctx, e);
    la_answer(r, XMPPD_AUTH_OK, NULL);
    if (ctx->conf->scram && r->marker)
        la_scram_upgrade(r);
    else
        la_req_free(r);
}

static void la_on_user_bound(const lp_result *res, void *ud);

/* After a direct bind with a bind name that is not a DN: the entry (for
 * the disabled check and SCRAM) comes from the user search. */
static void la_on_direct_entry(const lp_result *res, void *ud)
{
    la_req *r = ud;
    const directory_entry *e = NULL;
    int rc = la_lookup_result(r, res, &e);
    if (rc == -2)
        la_closed(r);
    else if (rc == -1)
        la_finish(r, XMPPD_AUTH_INTERNAL);
    else
        la_plain_ok(r, e);
}

static void la_on_user_bound(const lp_result *res, void *ud)
{
    la_req *r = ud;
    la_ctx *ctx = r->ctx;
    r->lp = NULL;
    switch (res->code) {
    case LDAP_SUCCESS:
        break;
    case LP_CLOSED:
        la_closed(r);
        return;
    case LDAP_INVALID_CREDENTIALS:
        la_finish(r, la_bind_refused(ctx, res));
        return;
    default:
        xmppd_log(ctx->m, XMPPD_LOG_WARN, "bind of %s@%s failed: %s%s%s", r->user, ctx->host,
                  lp_code_str(res->code), *res->diag ? ": " : "", res->diag);
        la_finish(r, XMPPD_AUTH_INTERNAL);
        return;
    }
    bool need_entry = ctx->conf->disabled_attribute || ctx->conf->active_directory || ctx->conf->scram;
    if (ctx->conf->bind_dn_template && !ctx->by_dn && need_entry && !r->marker) {
        if (la_lookup(r, ctx->lookup_attrs, la_on_direct_entry) != 0)
            la_finish(r, XMPPD_AUTH_INTERNAL);
        return;
    }
    la_plain_ok(r, res->n > 0 ? &res->entries[0] : NULL);
}

/* The entry a login's lookup found, when the account may log in (r's
 * marker then set); otherwise r is answered (no such account, disabled,
 * directory failing) or dropped (the module unloads), and NULL. */
static const directory_entry *la_login_entry(la_req *r, const lp_result *res)
{
    const directory_entry *e = NULL;
    switch (la_lookup_result(r, res, &e)) {
    case 0:
        break;
    case 1:
        if (r->op == LA_SCRAM) /* gone from the directory: its keys go too */
            la_scram_forget(r->ctx, r->user);
        la_finish(r, XMPPD_AUTH_USER_UNKNOWN);
        return NULL;
    case -2:
        la_closed(r);
        return NULL;
    default:
        la_finish(r, XMPPD_AUTH_INTERNAL);
        return NULL;
    }
    if (la_disabled(r->ctx, e)) {
        la_finish(r, XMPPD_AUTH_DISABLED);
        return NULL;
    }
    r->marker = la_marker(r->ctx, e);
    return e;
}

/* Search then bind: the entry was found, its DN is bound with the password. */
static void la_on_plain_entry(const lp_result *res, void *ud)
{
    la_req *r = ud;
    const directory_entry *e = la_login_entry(r, res);
    if (!e)
        return;
    r->lp = lp_bind(r->ctx->pool, e->dn, r->password, NULL, la_on_user_bound, r);
    if (!r->lp)
        la_finish(r, XMPPD_AUTH_INTERNAL);
}

static void la_verify_plain(void *pd, const char *user, const char *password, xmppd_auth_cb cb, void *ud)
{
    la_ctx *ctx = pd;
    la_req *r = la_req_new(ctx, LA_PLAIN, user ? user : "", password, ud);
    if (!r)
        return;
    r->cb.res = cb;
    if (!user || !*user) {
        la_finish_later(r, XMPPD_AUTH_USER_UNKNOWN);
        return;
    }
    /* RFC 4513 §5.1.2: a simple bind with an empty password is an
     * "unauthenticated" bind that many servers accept: never send one. */
    if (!password || !*password) {
        la_finish_later(r, XMPPD_AUTH_MISMATCH);
        return;
    }
    if (!ctx->conf->bind_dn_template) {
        if (la_lookup(r, ctx->lookup_attrs, la_on_plain_entry) != 0)
            la_finish_later(r, XMPPD_AUTH_INTERNAL);
        return;
    }
    lt_values v = { user, ctx->host, false };
    char *name = lt_expand(&ctx->bind_name, &v);
    if (name)
        r->lp = lp_bind(ctx->pool, name, password, ctx->by_dn ? ctx->lookup_attrs : NULL, la_on_user_bound, r);
    free(name);
    if (!r->lp)
        la_finish_later(r, XMPPD_AUTH_INTERNAL);
}

/* ---- get_scram / exists ---- */

static void la_on_scram_entry(const lp_result *res, void *ud)
{
    la_req *r = ud;
    if (la_login_entry(r, res))
        la_scram_lookup(r);
}

static void la_get_scram(void *pd, const char *user, enum xmppd_hash h, xmppd_auth_scram_cb cb, void *ud)
{
    la_ctx *ctx = pd;
    la_req *r = la_req_new(ctx, LA_SCRAM, user ? user : "", NULL, ud);
    if (!r)
        return;
    r->cb.scram = cb;
    r->hash = h;
    if (!LA_SCRAM_HASH(h) || !ctx->conf->scram)
        la_finish_later(r, XMPPD_AUTH_NO_SCHEME);
    else if (!user || !*user)
        la_finish_later(r, XMPPD_AUTH_USER_UNKNOWN);
    else if (la_lookup(r, ctx->lookup_attrs, la_on_scram_entry) != 0)
        la_finish_later(r, XMPPD_AUTH_INTERNAL);
}

static void la_on_exists(const lp_result *res, void *ud)
{
    la_req *r = ud;
    const directory_entry *e = NULL;
    switch (la_lookup_result(r, res, &e)) {
    case 0:
        la_finish(r, XMPPD_AUTH_OK);
        break;
    case 1:
        la_finish(r, XMPPD_AUTH_USER_UNKNOWN);
        break;
    case -2:
        la_closed(r);
        break;
    default:
        la_finish(r, XMPPD_AUTH_INTERNAL);
        break;
    }
}

static void la_exists(void *pd, const char *user, xmppd_auth_cb cb, void *ud)
{
    la_ctx *ctx = pd;
    la_req *r = la_req_new(ctx, LA_EXISTS, user ? user : "", NULL, ud);
    if (!r)
        return;
    r->cb.res = cb;
    if (!user || !*user)
        la_finish_later(r, XMPPD_AUTH_USER_UNKNOWN);
    else if (la_lookup(r, NULL, la_on_exists) != 0)
        la_finish_later(r, XMPPD_AUTH_INTERNAL);
}

/* ---- list ---- */

static int la_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void la_on_list(const lp_result *res, void *ud)
{
    la_req *r = ud;
    la_ctx *ctx = r->ctx;
    r->lp = NULL;
    if (res->code == LP_CLOSED) {
        la_closed(r);
        return;
    }
    if (res->code != LDAP_SUCCESS) {
        xmppd_log(ctx->m, XMPPD_LOG_WARN, "listing the accounts failed: %s%s%s", lp_code_str(res->code),
                  *res->diag ? ": " : "", res->diag);
        la_finish(r, XMPPD_AUTH_INTERNAL);
        return;
    }
    char **names = calloc(res->n + 1, sizeof *names);
    size_t k = 0;
    for (size_t i = 0; names && i < res->n; i++)
        if ((names[k] = la_entry_user(ctx, &res->entries[i])))
            k++;
    if (!names) {
        la_finish(r, XMPPD_AUTH_INTERNAL);
        return;
    }
    qsort(names, k, sizeof *names, la_name_cmp);
    size_t u = 0; /* two entries may name one account */
    for (size_t i = 0; i < k; i++) {
        if (u > 0 && strcmp(names[u - 1], names[i]) == 0)
            free(names[i]);
        else
            names[u++] = names[i];
    }
    r->answered = true;
    r->cb.list(XMPPD_AUTH_OK, (const char *const *)names, u, r->ud);
    for (size_t i = 0; i < u; i++)
        free(names[i]);
    free(names);
    la_req_free(r);
}

static void la_list(void *pd, xmppd_auth_list_cb cb, void *ud)
{
    la_ctx *ctx = pd;
    la_req *r = la_req_new(ctx, LA_LIST, NULL, NULL, ud);
    if (!r)
        return;
    r->cb.list = cb;
    lt_values v = { NULL, ctx->host, true };
    char *filter = lt_expand(&ctx->filter, &v);
    const char *attrs[] = { ctx->conf->user_attribute, NULL };
    if (filter)
        r->lp = lp_search(ctx->pool, ctx->conf->base, ctx->conf->scope, filter, attrs, 0, la_on_list, r);
    free(filter);
    if (!r->lp)
        la_finish_later(r, XMPPD_AUTH_INTERNAL);
}

static unsigned la_mechanisms(void *pd)
{
    return ((la_ctx *)pd)->mechs;
}

/* ---- module ---- */

static void la_ctx_free(la_ctx *ctx)
{
    lt_free(&ctx->filter);
    lt_free(&ctx->bind_name);
    free(ctx);
}

static int la_compile(la_ctx *ctx, char *err, size_t errlen)
{
    const la_conf *c = ctx->conf;
    char why[400];
    if (lt_compile(c->filter, LT_ALL, LT_FILTER, &ctx->filter, why, sizeof why) != 0) {
        snprintf(err, errlen, "option filter: %s", why);
        return -1;
    }
    if (c->bind_dn_template) {
        /* a DN has attribute=value pairs; anything else is a bind name
         * (user@realm, REALM\user) that AD takes as it is */
        bool dn = strchr(c->bind_dn_template, '=') != NULL;
        if (lt_compile(c->bind_dn_template, LT_ALL, dn ? LT_DN : LT_RAW, &ctx->bind_name, why, sizeof why) != 0) {
            snprintf(err, errlen, "option bind_dn_template: %s", why);
            return -1;
        }
        ctx->by_dn = dn;
    }
    if (!(ctx->filter.used & (LT_BIT(LT_USER) | LT_BIT(LT_JID)))) {
        snprintf(err, errlen, "option filter: it must name the user (%%u or %%{jid})");
        return -1;
    }
    if (c->bind_dn_template && !(ctx->bind_name.used & (LT_BIT(LT_USER) | LT_BIT(LT_JID)))) {
        snprintf(err, errlen, "option bind_dn_template: it must name the user (%%u or %%{jid})");
        return -1;
    }
    return 0;
}

static void la_lookup_attrs_init(la_ctx *ctx)
{
    const la_conf *c = ctx->conf;
    size_t n = 0;
    if (c->disabled_attribute)
        ctx->lookup_attrs[n++] = c->disabled_attribute;
    if (c->active_directory)
        ctx->lookup_attrs[n++] = "userAccountControl";
    if (c->scram)
        ctx->lookup_attrs[n++] = c->password_changed_attribute;
    ctx->lookup_attrs[n] = NULL;
}

static int la_load(xmppd_module *m, const void *conf)
{
    const la_conf *c = conf;
    char err[512];
    la_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return xmppd_module_refuse(m, "out of memory");
    ctx->m = m;
    ctx->conf = c;
    ctx->host = xmppd_host_name(xmppd_module_host(m));
    if (la_compile(ctx, err, sizeof err) != 0) {
        la_ctx_free(ctx);
        return xmppd_module_refuse(m, "%s", err);
    }
    if (c->scram && !(ctx->store = xmppd_store_open(m, "auth_ldap", XMPPD_STORE_KEYVAL))) {
        la_ctx_free(ctx);
        return xmppd_module_refuse(m, "scram needs a storage driver for the keys");
    }
    la_lookup_attrs_init(ctx);
    ctx->pc = (lp_conf){
        .uris = c->uris, .starttls = c->starttls, .ca_file = c->tls_ca_file,
        .bind_dn = c->bind_dn, .bind_password = c->bind_password,
        .search_connections = (int)c->search_connections, .bind_connections = (int)c->bind_connections,
        .connect_timeout_ms = c->connect_timeout, .timeout_ms = c->timeout,
        .reconnect_max_ms = c->reconnect_max, .page_size = (int)c->page_size, .max_entries = c->max_entries,
    };
    if (!(ctx->pool = lp_open(m, &ctx->pc, err, sizeof err))) {
        la_ctx_free(ctx);
        return xmppd_module_refuse(m, "%s", err);
    }
    ctx->mechs = XMPPD_AUTH_CAN_PLAIN;
    for (int h = 0; c->scram && h < XMPPD_HASH_COUNT; h++)
        if (LA_SCRAM_HASH(h))
            ctx->mechs |= XMPPD_AUTH_CAN_SCRAM(h);
    ctx->provider = (xmppd_auth_provider){
        .version = XMPPD_AUTH_PROVIDER_VERSION,
        .size = sizeof(xmppd_auth_provider),
        .name = "ldap",
        .mechanisms = la_mechanisms,
        .verify_plain = la_verify_plain,
        .get_scram = la_get_scram,
        .exists = la_exists,
        .list = la_list,
    };
    la_api_init(ctx);
    xmppd_module_set_data(m, ctx);
    if (xmppd_auth_provide(m, &ctx->provider, ctx) != 0 || xmppd_provide(m, "directory", &ctx->api) != 0) {
        xmppd_module_set_data(m, NULL);
        lp_close(ctx->pool, false);
        la_ctx_free(ctx);
        return xmppd_module_refuse(m, "this host already has an auth provider");
    }
    xmppd_log(m, XMPPD_LOG_INFO, "accounts from the directory (%s%s), PLAIN%s", c->uris[0],
              c->uris[1] ? " and fail-over" : "",
              c->scram ? " and SCRAM after a first PLAIN login" : " only");
    return 0;
}

/* Storage, worker and deferred requests were cancelled before this (their
 * cancel paths freed them); those on the pool hear LP_CLOSED now. */
static void la_unload(xmppd_module *m)
{
    la_ctx *ctx = xmppd_module_data(m);
    if (!ctx)
        return;
    lp_close(ctx->pool, true);
    while (ctx->reqs)
        la_req_free(ctx->reqs);
    xmppd_module_set_data(m, NULL);
    la_ctx_free(ctx);
}

XMPPD_MODULE(auth_ldap,
    .version = "1.0",
    .summary = "accounts from an LDAP directory or Active Directory (bind, search then bind, SCRAM after PLAIN)",
    .specs = (const char *const[]){ "RFC 4511", "RFC 4513", "RFC 4515", "RFC 2696", NULL },
    .options = la_options,
    .conf_size = sizeof(la_conf),
    .load = la_load,
    .unload = la_unload);
