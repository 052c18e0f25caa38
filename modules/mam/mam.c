/* mod_mam: XEP-0313 Message Archive Management (urn:xmpp:mam:2 and
 * #extended) for the host's accounts, with XEP-0359 stanza-ids, XEP-0441
 * preferences and retention; and the same query engine for other modules'
 * archives (mam_api.h, "mam").
 *
 * Files: mam_users.c decides what is archived (and holds what waits for
 * that decision), mam_engine.c answers queries and archives, mam_request.c
 * reads queries, mam_prefs.c preferences, mam_expire.c retention,
 * mam_time.c XEP-0082 times. This file: options, IQ handlers, wiring. */
#ifndef _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>

#include "mam_bind2.h"
#include "mam_expire.h"
#include "mam_mod.h"
#include "mam_request.h"
#include "mam_users.h"

#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define MAM_SWEEP_MS 30000

static const char *const mam_policies[] = { "always", "roster", "never", NULL };

static const xmppd_option mam_options[] = {
    { "default_policy", XMPPD_OPT_ENUM, XMPPD_OFF(mam_conf, default_policy), "\"always\"", 0, 0,
      mam_policies, 0,
      "what is archived for an account that set no preferences: always, roster (contacts only), never" },
    { "page_size", XMPPD_OPT_INT, XMPPD_OFF(mam_conf, page_size), "50", 1, 1000, NULL, 0,
      "results per page when a query gives no RSM max" },
    { "max_page_size", XMPPD_OPT_INT, XMPPD_OFF(mam_conf, max_page_size), "250", 1, 1000, NULL, 0,
      "largest page a query gets; a larger RSM max is lowered to it" },
    { "expire_after", XMPPD_OPT_DURATION, XMPPD_OFF(mam_conf, expire_after), "0", 0, 315360000000LL,
      NULL, 0, "delete archived messages older than this (e.g. \"365d\"); 0: keep them" },
    { "max_items", XMPPD_OPT_INT, XMPPD_OFF(mam_conf, max_items), "0", 0, 1000000000, NULL, 0,
      "messages kept per account, the oldest deleted first; 0: no limit" },
    { "cleanup_interval", XMPPD_OPT_DURATION, XMPPD_OFF(mam_conf, cleanup_interval), "1h", 1000,
      604800000, NULL, 0, "how often a retention pass visits the host's accounts" },
    { "cleanup_rate", XMPPD_OPT_INT, XMPPD_OFF(mam_conf, cleanup_rate), "100", 1, 100000, NULL, 0,
      "accounts a retention pass visits per second" },
    { NULL }
};

/* ---- preferences (XEP-0441) ------------------------------------------------------ */

typedef struct prefs_job {
    mam_mod *mod;     /* alive unless CANCELLED */
    xmppd_pending *p;
    mam_prefs prefs;  /* set: what is being stored */
} prefs_job;

static void prefs_job_end(prefs_job *j)
{
    mam_prefs_clear(&j->prefs);
    free(j);
}

static void prefs_reply(prefs_job *j, const mam_prefs *p)
{
    xmppd_stanza *iq = xmppd_stanza_reply(xmppd_pending_event(j->p)->stanza);
    xmppd_stanza *x = iq ? mam_prefs_xml(p) : NULL;
    if (x)
        xmppd_stanza_add(iq, x);
    else
        xmppd_stanza_unref(iq);
    xmppd_pending_reply(j->p, x ? iq : NULL);
}

static void prefs_got(int status, json_t *value, void *ud)
{
    prefs_job *j = ud;
    if (status == XMPPD_STORE_CANCELLED) {
        xmppd_pending_drop(j->p);
    } else if (status == XMPPD_STORE_NOT_FOUND) { /* never set: the module's default */
        mam_prefs p = { .def = j->mod->def };
        prefs_reply(j, &p);
    } else if (status == XMPPD_STORE_OK && mam_prefs_from_json(value, &j->prefs) == 0) {
        prefs_reply(j, &j->prefs);
    } else {
        xmppd_pending_error(j->p, "wait", "internal-server-error", "preferences unavailable");
    }
    prefs_job_end(j);
}

static void prefs_stored(int status, void *ud)
{
    prefs_job *j = ud;
    if (status == XMPPD_STORE_CANCELLED) {
        xmppd_pending_drop(j->p);
    } else if (status != XMPPD_STORE_OK) {
        xmppd_pending_error(j->p, "wait", "internal-server-error", "preferences not stored");
    } else {
        const xmppd_event *ev = xmppd_pending_event(j->p);
        mam_users_prefs_changed(j->mod, ev->from->node, &j->prefs);
        prefs_reply(j, &j->prefs);
    }
    prefs_job_end(j);
}

static int prefs_iq(mam_mod *mod, xmppd_event *ev, const xmppd_stanza *prefs, bool set)
{
    prefs_job *j = calloc(1, sizeof *j);
    const char *cond, *text;
    if (!j)
        return XMPPD_FAIL;
    j->mod = mod;
    if (set && mam_prefs_parse(prefs, &j->prefs, &cond, &text) != 0) {
        free(j);
        return xmppd_reply_error(ev, "modify", cond, text);
    }
    json_t *doc = set ? mam_prefs_json(&j->prefs) : NULL;
    if ((set && !doc) || !(j->p = xmppd_pending_new(ev))) {
        json_decref(doc);
        prefs_job_end(j);
        return XMPPD_FAIL;
    }
    if (set)
        xmppd_kv_set(mod->prefs, ev->from->node, "", doc, prefs_stored, j);
    else
        xmppd_kv_get(mod->prefs, ev->from->node, "", prefs_got, j);
    json_decref(doc);
    return XMPPD_HANDLED;
}

/* ---- IQs on an account's archive --------------------------------------------------- */

/* urn:xmpp:mam:2 IQs to an account's bare JID (or without 'to'): queries,
 * the query form, metadata and preferences, for the account itself only
 * (XEP-0313 §8.1: an archive is private). */
static int mam_on_iq(xmppd_event *ev, void *ud)
{
    mam_mod *mod = ud;
    if (!ev->from || !ev->from->node || (ev->to && !xmppd_jid_bare_equal(ev->to, ev->from)) ||
        strcmp(ev->from->domain, xmppd_host_name(mod->host)) != 0)
        return xmppd_reply_error(ev, "cancel", "forbidden", "only the account itself may use its archive");
    xmppd_stanza *c = xmppd_stanza_first(ev->stanza);
    bool set = strcmp(xmppd_stanza_attr(ev->stanza, "type"), "set") == 0;
    if (c && strcmp(xmppd_stanza_name(c), "prefs") == 0)
        return prefs_iq(mod, ev, c, set);
    mam_archive a = { mod->archive, ev->from->node, ev->from->bare };
    int rc = mam_engine_iq(&mod->ctx, ev, &a);
    if (rc == XMPPD_PASS)
        return xmppd_reply_error(ev, "cancel", "feature-not-implemented", NULL);
    return rc;
}

/* XEP-0313 §7: an account's bare JID advertises the archive. */
static int mam_on_disco_info(xmppd_event *ev, void *ud)
{
    (void)ud;
    if (!ev->to || !ev->to->node || xmppd_stanza_attr(ev->stanza, "node"))
        return XMPPD_PASS;
    static const char *const features[] = { MAM_NS, MAM_NS_EXTENDED };
    for (size_t i = 0; i < 2; i++) {
        xmppd_stanza *f = xmppd_stanza_tag(ev->stanza, "feature", NS_DISCO_INFO);
        if (f)
            xmppd_stanza_set_attr(f, "var", features[i]);
    }
    return XMPPD_PASS;
}

static uint64_t mam_sweep(void *ud)
{
    mam_users_sweep(ud);
    return MAM_SWEEP_MS;
}

/* ---- the API for other modules' archives (mam_api.h) ------------------------------ */

static int api_handle_iq(const mam_api *api, xmppd_event *ev, const mam_archive *a)
{
    const mam_mod *mod = (const mam_mod *)api;
    return mam_engine_iq(&mod->ctx, ev, a);
}

static int api_archive(const mam_api *api, const mam_archive *a, xmppd_stanza *msg, const char *with)
{
    const mam_mod *mod = (const mam_mod *)api;
    return mam_engine_archive(&mod->ctx, a, msg, with);
}

static void api_strip(const mam_api *api, xmppd_stanza *msg, const char *jid)
{
    (void)api;
    mam_strip_ids(msg, jid);
}

/* ---- module ---------------------------------------------------------------------- */

static void mam_unload(xmppd_module *m)
{
    mam_mod *mod = xmppd_module_data(m);
    if (!mod)
        return;
    mam_users_free(mod);
    mam_expire_free(mod);
    free(mod);
    xmppd_module_set_data(m, NULL);
}

static int mam_register(xmppd_module *m, mam_mod *mod)
{
    /* after the filters (privacy, blocking: a refused message is not
     * archived, XEP-0313 §5.1), before delivery and offline storage */
    int prio = XMPPD_PRIO_DEFAULT + 100;
    if (!(mod->archive = xmppd_store_open(m, "mam", XMPPD_STORE_ARCHIVE)) ||
        !(mod->prefs = xmppd_store_open(m, "mam_prefs", XMPPD_STORE_KEYVAL)))
        return xmppd_module_refuse(m, "no storage driver for the archive");
    if (xmppd_hook(m, "message/bare", mam_users_inbound, prio, mod) < 0 ||
        xmppd_hook(m, "message/full", mam_users_inbound, prio, mod) < 0 ||
        xmppd_hook(m, "pre-route", mam_users_outbound, prio, mod) < 0 ||
        xmppd_hook(m, "resource-bound", mam_users_bound, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "bind2-bound", mam_bind2_bound, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "user-created", mam_users_forget, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "user-deleted", mam_users_forget, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "disco-info", mam_on_disco_info, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_iq_handle(m, "get", MAM_NS, XMPPD_IQ_BARE, mam_on_iq, mod) < 0 ||
        xmppd_iq_handle(m, "set", MAM_NS, XMPPD_IQ_BARE, mam_on_iq, mod) < 0 ||
        xmppd_provide(m, "mam", &mod->api) < 0 || !xmppd_timer_add(m, MAM_SWEEP_MS, mam_sweep, mod) ||
        mam_expire_start(mod) < 0)
        return xmppd_module_refuse(m, "cannot register (out of memory, or another module handles %s)",
                                   MAM_NS);
    return 0;
}

static int mam_load(xmppd_module *m, const void *conf)
{
    const mam_conf *c = conf;
    if (c->page_size > c->max_page_size)
        return xmppd_module_refuse(m, "page_size (%lld) is larger than max_page_size (%lld)", c->page_size,
                                   c->max_page_size);
    mam_mod *mod = calloc(1, sizeof *mod);
    if (!mod)
        return xmppd_module_refuse(m, "out of memory");
    mod->api = (mam_api){ .version = MAM_API_VERSION, .size = sizeof(mam_api),
                          .handle_iq = api_handle_iq, .archive = api_archive, .strip = api_strip };
    mod->m = m;
    mod->host = xmppd_module_host(m);
    mod->conf = c;
    mod->def = (enum mam_default)mam_default_parse(c->default_policy);
    mod->ctx = (mam_ctx){ m, (long)c->page_size, (long)c->max_page_size };
    xmppd_module_set_data(m, mod);
    int rc = mam_register(m, mod);
    if (rc != 0)
        mam_unload(m); /* a refused load gets no unload() call */
    return rc;
}

XMPPD_MODULE(mam,
    .version = "1.0",
    .summary = "XEP-0313 message archive (stanza-ids, preferences, retention) and its engine for other archives",
    .specs = (const char *const[]){ "XEP-0313", "XEP-0359", "XEP-0441", "XEP-0059", NULL },
    .options = mam_options,
    .conf_size = sizeof(mam_conf),
    .load = mam_load,
    .unload = mam_unload);
