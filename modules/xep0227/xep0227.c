/* mod_xep0227: the module, its control commands and their batches
 * (pie.h). A command names a host; the instance of that host does the
 * work with its own stores and auth calls. Every request in flight is a
 * pie_batch in a list all instances share (the list lives as long as the
 * code): when the instance that registered the commands unloads, the
 * kernel has answered its requests, and their batches finish silently. */
#include <stdlib.h>
#include <string.h>

#include "pie.h"

#define PIE_MAX_BATCH 10000 /* users per request */

static pie_batch *pie_batches;

static void batch_unlink(pie_batch *b)
{
    for (pie_batch **p = &pie_batches; *p; p = &(*p)->next)
        if (*p == b) {
            *p = b->next;
            return;
        }
}

void pie_batch_done(pie_batch *b)
{
    if (--b->pending > 0)
        return;
    batch_unlink(b);
    if (b->req && b->error)
        xmppd_ctl_error(b->req, "%s", b->error);
    else if (b->req)
        xmppd_ctl_reply(b->req, json_pack("{s:O}", b->key, b->results));
    json_decref(b->results);
    free(b);
}

/* The instance serving host name, or NULL after answering req. */
static pie_mod *host_instance(xmppd_ctl_request *req, const json_t *args)
{
    const char *name = json_string_value(json_array_get(args, 0));
    char *domain = name ? xmppd_nameprep(name) : NULL;
    xmppd_host *h = domain ? xmppd_host_find(domain) : NULL;
    const pie_mod *mod = h ? xmppd_use(h, "xep0227") : NULL;
    if (!name)
        xmppd_ctl_error(req, "a host is needed");
    else if (!h)
        xmppd_ctl_error(req, "%s is not a host of this server", name);
    else if (!mod || mod->api.version != PIE_API_VERSION)
        xmppd_ctl_error(req, "module xep0227 is not loaded on %s", domain);
    free(domain);
    return h && mod && mod->api.version == PIE_API_VERSION ? (pie_mod *)mod : NULL;
}

/* A batch of n users for req, or NULL after answering it. */
static pie_batch *batch_new(xmppd_ctl_request *req, pie_mod *serving, size_t n, const char *key)
{
    if (n == 0 || n > PIE_MAX_BATCH) {
        xmppd_ctl_error(req, "between 1 and %d users per request", PIE_MAX_BATCH);
        return NULL;
    }
    pie_batch *b = calloc(1, sizeof(*b));
    if (!b || !(b->results = json_array())) {
        free(b);
        xmppd_ctl_error(req, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        json_array_append_new(b->results, json_null());
    b->req = req;
    b->serving = serving;
    b->key = key;
    /* one for this caller: nothing is answered before every job started */
    b->pending = n + 1;
    b->next = pie_batches;
    pie_batches = b;
    return b;
}

/* ---- xep0227-users HOST ------------------------------------------------------------ */

static void on_users(int result, const char *const *users, size_t n, void *ud)
{
    xmppd_ctl_request *req = ud;
    if (result == XMPPD_AUTH_CANCELLED)
        return; /* the kernel answers: the asking instance unloads */
    if (result != XMPPD_AUTH_OK) {
        xmppd_ctl_error(req, "listing the accounts: %s", xmppd_auth_result_str(result));
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++)
        json_array_append_new(list, json_string(users[i]));
    xmppd_ctl_reply(req, json_pack("{s:o*}", "users", list));
}

static void cmd_users(xmppd_ctl_request *req, const json_t *args, void *ud)
{
    pie_mod *serving = ud;
    pie_mod *mod = host_instance(req, args);
    if (!mod)
        return;
    /* Asked as the serving instance: its unloading answers the request. */
    xmppd_auth_list(serving->m, mod->host, on_users, req);
}

/* ---- xep0227-export HOST USER... ----------------------------------------------------- */

static void cmd_export(xmppd_ctl_request *req, const json_t *args, void *ud)
{
    pie_mod *mod = host_instance(req, args);
    if (!mod)
        return;
    pie_batch *b = batch_new(req, ud, json_array_size(args) - 1, "users");
    if (!b)
        return;
    for (size_t i = 1; i < json_array_size(args); i++) {
        const char *user = json_string_value(json_array_get(args, i));
        if (!user) {
            json_array_set_new(b->results, i - 1, json_pack("{s:s}", "error", "not a string"));
            pie_batch_done(b);
            continue;
        }
        pie_export_user(mod, b, i - 1, user);
    }
    pie_batch_done(b);
}

/* ---- xep0227-import HOST XML... ------------------------------------------------------ */

/* Each argument after the host is one element called name (<user/>,
 * <room/>), parsed and handed to import (which takes it). */
static void import_each(xmppd_ctl_request *req, const json_t *args, pie_mod *serving,
                        const char *name, void (*import)(pie_mod *, pie_batch *, size_t, xmppd_stanza *))
{
    pie_mod *mod = host_instance(req, args);
    if (!mod)
        return;
    pie_batch *b = batch_new(req, serving, json_array_size(args) - 1, "results");
    if (!b)
        return;
    for (size_t i = 1; i < json_array_size(args); i++) {
        const json_t *x = json_array_get(args, i);
        xmppd_stanza *el = json_is_string(x)
            ? xmppd_stanza_from_string(json_string_value(x), json_string_length(x), PIE_NS) : NULL;
        if (!el || strcmp(xmppd_stanza_name(el), name) != 0) {
            xmppd_stanza_unref(el);
            json_array_set_new(b->results, i - 1, json_pack("{s:s, s:s++}", "status", "failed",
                                                            "reason", "not a <", name, "/> element"));
            pie_batch_done(b);
            continue;
        }
        import(mod, b, i - 1, el);
    }
    pie_batch_done(b);
}

static void cmd_import(xmppd_ctl_request *req, const json_t *args, void *ud)
{
    import_each(req, args, ud, "user", pie_import_user);
}

/* ---- rooms: xep0227-rooms HOST, -export-rooms HOST JID..., -import-rooms HOST XML... ---- */

/* The list replaces the batch's results (a batch of one read, so that
 * the serving instance unloading is handled as for the others). */
static void on_rooms(int status, json_t *value, void *ud)
{
    pie_batch *b = ud;
    if (status == XMPPD_STORE_OK) {
        json_decref(b->results);
        b->results = json_incref(value);
    } else {
        b->error = status == XMPPD_STORE_CANCELLED ? "cancelled: the module unloaded"
                                                   : "listing the rooms: storage error";
    }
    pie_batch_done(b);
}

static void cmd_rooms(xmppd_ctl_request *req, const json_t *args, void *ud)
{
    pie_mod *mod = host_instance(req, args);
    pie_batch *b = mod ? batch_new(req, ud, 1, "rooms") : NULL;
    if (!b)
        return;
    xmppd_kv_users(mod->rooms, on_rooms, b);
    pie_batch_done(b);
}

static void cmd_export_rooms(xmppd_ctl_request *req, const json_t *args, void *ud)
{
    pie_mod *mod = host_instance(req, args);
    if (!mod)
        return;
    pie_batch *b = batch_new(req, ud, json_array_size(args) - 1, "rooms");
    if (!b)
        return;
    for (size_t i = 1; i < json_array_size(args); i++) {
        const char *jid = json_string_value(json_array_get(args, i));
        if (jid) {
            pie_export_room(mod, b, i - 1, jid);
        } else {
            json_array_set_new(b->results, i - 1, json_pack("{s:s}", "error", "not a string"));
            pie_batch_done(b);
        }
    }
    pie_batch_done(b);
}

static void cmd_import_rooms(xmppd_ctl_request *req, const json_t *args, void *ud)
{
    import_each(req, args, ud, "room", pie_import_room);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

static int pie_load(xmppd_module *m, const void *conf)
{
    pie_mod *mod = calloc(1, sizeof(*mod));
    if (!mod)
        return xmppd_module_refuse(m, "out of memory");
    mod->api.version = PIE_API_VERSION;
    mod->api.size = sizeof(mod->api);
    mod->m = m;
    mod->host = xmppd_module_host(m);
    /* The other modules' stores, by the names their READMEs give. */
    const char *why = NULL;
    if (!(mod->roster = xmppd_store_open(m, "roster", XMPPD_STORE_KEYVAL)) ||
        !(mod->vcard = xmppd_store_open(m, "vcard", XMPPD_STORE_KEYVAL)) ||
        !(mod->private_xml = xmppd_store_open(m, "private", XMPPD_STORE_KEYVAL)) ||
        !(mod->pep = xmppd_store_open(m, "pep", XMPPD_STORE_KEYVAL)) ||
        !(mod->offline = xmppd_store_open(m, "offline", XMPPD_STORE_ARCHIVE)) ||
        !(mod->mam = xmppd_store_open(m, "mam", XMPPD_STORE_ARCHIVE)) ||
        !(mod->rooms = xmppd_store_open(m, "muc_rooms", XMPPD_STORE_KEYVAL)) ||
        !(mod->room_archive = xmppd_store_open(m, "muc_archive", XMPPD_STORE_ARCHIVE)))
        why = "no storage: load a storage driver module";
    else if (xmppd_provide(m, "xep0227", mod) < 0)
        why = "cannot publish its API";
    if (why) {
        free(mod);
        return xmppd_module_refuse(m, "%s", why);
    }
    xmppd_module_set_data(m, mod);
    /* The first instance serves the commands for every host. */
    xmppd_ctl_command(m, "xep0227-users", "HOST", "accounts of HOST (for xmppctl export)",
                      cmd_users, mod);
    xmppd_ctl_command(m, "xep0227-export", "HOST USER...",
                      "accounts as XEP-0227 <user/> elements (for xmppctl export)", cmd_export, mod);
    xmppd_ctl_command(m, "xep0227-import", "HOST XML...",
                      "import XEP-0227 <user/> elements (for xmppctl import)", cmd_import, mod);
    xmppd_ctl_command(m, "xep0227-rooms", "HOST", "persistent group chat rooms of HOST's service",
                      cmd_rooms, mod);
    xmppd_ctl_command(m, "xep0227-export-rooms", "HOST JID...",
                      "rooms as <room/> elements (for xmppctl export)", cmd_export_rooms, mod);
    xmppd_ctl_command(m, "xep0227-import-rooms", "HOST XML...",
                      "import <room/> elements into a stopped server's data (for xmppctl import)",
                      cmd_import_rooms, mod);
    return 0;
}

static void pie_unload(xmppd_module *m)
{
    pie_mod *mod = xmppd_module_data(m);
    /* The kernel answered this instance's requests; their jobs (on other
     * hosts' instances) finish without answering. */
    for (pie_batch *b = pie_batches; b; b = b->next)
        if (b->serving == mod) {
            b->req = NULL;
            b->serving = NULL;
        }
    free(mod);
    xmppd_module_set_data(m, NULL);
}

XMPPD_MODULE(xep0227,
    .version = "1.0",
    .summary = "XEP-0227 portable import/export of accounts and their data (xmppctl export, import)",
    .specs = (const char *const[]){ "XEP-0227", NULL },
    .load = pie_load,
    .unload = pie_unload);
