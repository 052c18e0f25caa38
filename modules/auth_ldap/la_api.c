/* auth_ldap: the "directory" API other modules search the directory with
 * (directory_api.h). Each call is a request of the module tied to its caller
 * by an xmppd_call. */
#include <stdlib.h>
#include <string.h>

#include "auth_ldap.h"

/* The caller unloads first: it hears CANCELLED now, nothing later. */
static void la_api_cancelled(void *p)
{
    la_req *r = p;
    r->answered = true;
    r->cb.api(DIRECTORY_CANCELLED, NULL, 0, r->ud);
}

static la_req *la_api_req(const directory_api *api, xmppd_module *caller, const char *user, directory_cb cb, void *ud)
{
    la_ctx *ctx = (la_ctx *)api;
    la_req *r = la_req_new(ctx, LA_API, user, NULL, ud);
    if (r) {
        r->cb.api = cb;
        if (!(r->call = xmppd_call_new(caller, la_api_cancelled, r))) {
            la_req_free(r);
            r = NULL;
        }
    }
    if (!r)
        cb(DIRECTORY_ERROR, NULL, 0, ud); /* cannot even be kept (OOM, caller unloading) */
    return r;
}

/* Answers r with the search's entries and frees it. */
static void la_api_answer(la_req *r, int status, const directory_entry *entries, size_t n)
{
    r->answered = true;
    if (xmppd_call_finish(r->call))
        r->cb.api(status, entries, n, r->ud);
    r->call = NULL;
    la_req_free(r);
}

static void la_api_on_user(const lp_result *res, void *ud)
{
    la_req *r = ud;
    const directory_entry *e = NULL;
    switch (la_lookup_result(r, res, &e)) {
    case 0:
        la_api_answer(r, DIRECTORY_OK, e, 1);
        break;
    case 1:
        la_api_answer(r, DIRECTORY_OK, NULL, 0);
        break;
    default:
        la_api_answer(r, DIRECTORY_ERROR, NULL, 0);
        break;
    }
}

static void la_api_on_search(const lp_result *res, void *ud)
{
    la_req *r = ud;
    r->lp = NULL;
    if (res->code == LDAP_SUCCESS) {
        la_api_answer(r, DIRECTORY_OK, res->entries, res->n);
        return;
    }
    if (res->code != LP_CLOSED)
        xmppd_log(r->ctx->m, XMPPD_LOG_WARN, "directory search for %s failed: %s%s%s",
                  xmppd_module_name(r->ctx->m), lp_code_str(res->code), *res->diag ? ": " : "", res->diag);
    la_api_answer(r, DIRECTORY_ERROR, NULL, 0);
}

static void la_api_user_entry(const directory_api *api, xmppd_module *caller, const char *user,
                              const char *const *attrs, directory_cb cb, void *ud)
{
    la_req *r = la_api_req(api, caller, user ? user : "", cb, ud);
    if (r && la_lookup(r, attrs, la_api_on_user) != 0)
        la_api_answer(r, DIRECTORY_ERROR, NULL, 0);
}

static void la_api_users(const directory_api *api, xmppd_module *caller, const char *const *attrs, directory_cb cb,
                         void *ud)
{
    la_ctx *ctx = (la_ctx *)api;
    la_req *r = la_api_req(api, caller, NULL, cb, ud);
    if (!r)
        return;
    size_t n = 0;
    while (attrs && attrs[n])
        n++;
    const char **all = calloc(n + 2, sizeof *all);
    lt_values v = { NULL, ctx->host, true };
    char *filter = lt_expand(&ctx->filter, &v);
    if (all && filter) {
        all[0] = ctx->conf->user_attribute;
        for (size_t i = 0; i < n; i++)
            all[i + 1] = attrs[i];
        r->lp = lp_search(ctx->pool, ctx->conf->base, ctx->conf->scope, filter, all, 0, la_api_on_search, r);
    }
    free(all);
    free(filter);
    if (!r->lp)
        la_api_answer(r, DIRECTORY_ERROR, NULL, 0);
}

static void la_api_search(const directory_api *api, xmppd_module *caller, const char *base, int scope,
                          const char *filter, const char *const *attrs, directory_cb cb, void *ud)
{
    la_ctx *ctx = (la_ctx *)api;
    la_req *r = la_api_req(api, caller, NULL, cb, ud);
    if (!r)
        return;
    if (filter)
        r->lp = lp_search(ctx->pool, base ? base : ctx->conf->base, scope, filter, attrs, 0, la_api_on_search, r);
    if (!r->lp)
        la_api_answer(r, DIRECTORY_ERROR, NULL, 0);
}

static char *la_api_entry_user(const directory_api *api, const directory_entry *e)
{
    return la_entry_user((const la_ctx *)api, e);
}

void la_api_init(la_ctx *ctx)
{
    ctx->api = (directory_api){
        .version = DIRECTORY_API_VERSION,
        .size = sizeof(directory_api),
        .user_entry = la_api_user_entry,
        .users = la_api_users,
        .search = la_api_search,
        .entry_user = la_api_entry_user,
        .escape_filter = lt_escape_filter,
    };
}
