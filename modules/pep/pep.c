/* XEP-0163 Personal Eventing Protocol: every account is a publish-subscribe
 * service at its bare JID (the engine in modules/pubsub, one ps_service
 * per account, pep_cache.c), whose nodes are created on first publication,
 * stored in the keyval store "pep", and whose events reach the account's
 * resources and contacts by their caps (pep_notify.c). Other modules use it
 * through the API "pep" (pep_api.h). */
#include <stdlib.h>
#include <string.h>

#include "pep.h"

#define PEP_NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define PEP_NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

typedef struct pep_conf {
    long long max_nodes;
    long long max_items;
    long long max_item_size;
    long long max_total_items;
    long long max_subscriptions;
    long long cache_size;
    long long max_remote_entities;
} pep_conf;

static const xmppd_option pep_options[] = {
    { "max_nodes", XMPPD_OPT_INT, XMPPD_OFF(pep_conf, max_nodes), "64", 1, 100000, NULL, 0,
      "nodes one account may have (more: <not-allowed/> with <max-nodes-exceeded/>)" },
    { "max_items", XMPPD_OPT_INT, XMPPD_OFF(pep_conf, max_items), "256", 1, 100000, NULL, 0,
      "items one node may keep; what pubsub#max_items \"max\" means" },
    { "max_item_size", XMPPD_OPT_SIZE, XMPPD_OFF(pep_conf, max_item_size), "128k", 256,
      16 * 1024 * 1024, NULL, 0,
      "largest item payload, serialised (more: <not-acceptable/> with <payload-too-big/>)" },
    { "max_total_items", XMPPD_OPT_INT, XMPPD_OFF(pep_conf, max_total_items), "2000", 1, 10000000,
      NULL, 0, "items one account may store over all its nodes (more: <not-allowed/> with "
      "<max-items-exceeded/>)" },
    { "max_subscriptions", XMPPD_OPT_INT, XMPPD_OFF(pep_conf, max_subscriptions), "1000", 1,
      1000000, NULL, 0, "explicit subscriptions one node may have" },
    { "cache_size", XMPPD_OPT_INT, XMPPD_OFF(pep_conf, cache_size), "1000", 1, 10000000, NULL, 0,
      "services of accounts without a session kept in memory (those with one always are)" },
    { "max_remote_entities", XMPPD_OPT_INT, XMPPD_OFF(pep_conf, max_remote_entities), "100", 0,
      100000, NULL, 0, "other servers' resources one account tracks for notifications" },
    { NULL }
};

/* ---- IQs: the engine on a loaded service ----------------------------------------------- */

typedef struct pep_iq {
    pep_state *st;
    xmppd_pending *p;
    char *user;
} pep_iq;

static void pep_iq_free(void *ud)
{
    pep_iq *q = ud;
    xmppd_pending_drop(q->p);
    free(q->user);
    free(q);
}

static void pep_iq_reply(ps_req *r, xmppd_stanza *reply)
{
    pep_iq *q = r->ud;
    xmppd_pending_reply(q->p, reply);
    q->p = NULL;
}

static void pep_iq_run(pep_ctx *ctx, void *ud);

static int pep_has_session(xmppd_session *s, void *ud)
{
    (void)s;
    (void)ud;
    return 1;
}

static void pep_on_exists(int result, void *ud)
{
    pep_iq *q = ud;
    pep_svc *svc = pep_cached(q->st, q->user);
    if (result != XMPPD_AUTH_OK) {
        /* RFC 6121 §8.5.1: no such account. */
        xmppd_pending_error(q->p, NULL, result == XMPPD_AUTH_USER_UNKNOWN ? "service-unavailable"
                                                                          : "internal-server-error",
                            NULL);
        q->p = NULL;
        pep_iq_free(q);
        return;
    }
    if (svc)
        svc->known = true;
    pep_with_service(q->st, q->user, true, pep_iq_run, pep_iq_free, q);
}

static void pep_iq_run(pep_ctx *ctx, void *ud)
{
    pep_iq *q = ud;
    if (!ctx) {
        xmppd_pending_error(q->p, NULL, "internal-server-error", NULL);
        q->p = NULL;
        pep_iq_free(q);
        return;
    }
    const xmppd_event *ev = xmppd_pending_event(q->p);
    pep_svc *svc = ctx->svc;
    svc->known = svc->known || xmppd_user_sessions(ctx->st->host, svc->user, pep_has_session, NULL) > 0;
    if (!svc->known) {
        xmppd_auth_exists(ctx->st->m, ctx->st->host, svc->user, pep_on_exists, q);
        return;
    }
    /* The engine goes on after its reply (notifications, a last item),
     * which frees the kept request: it works on a copy. */
    xmppd_event req = *ev;
    xmppd_jid *from = ev->from ? xmppd_jid_dup(ev->from) : NULL;
    xmppd_jid *to = ev->to ? xmppd_jid_dup(ev->to) : NULL;
    req.from = from;
    req.to = to;
    req.stanza = xmppd_stanza_ref(ev->stanza);
    if ((ev->from && !from) || (ev->to && !to)) {
        xmppd_pending_error(q->p, NULL, "internal-server-error", NULL);
        q->p = NULL;
    } else {
        ctx->publisher_full = from ? from->full : NULL;
        ps_req r = { .svc = svc->ps, .ev = &req, .ctx = ctx, .reply = pep_iq_reply, .ud = q };
        ps_handle_iq(&r);
    }
    xmppd_stanza_unref(req.stanza);
    xmppd_jid_free(from);
    xmppd_jid_free(to);
    pep_iq_free(q);
}

static int pep_on_iq(xmppd_event *ev, void *ud)
{
    pep_state *st = ud;
    const char *user = ev->to ? ev->to->node : ev->from ? ev->from->node : NULL;
    if (!user || (!ev->to && ev->from && strcmp(ev->from->domain, xmppd_host_name(st->host)) != 0))
        return xmppd_reply_error(ev, NULL, "bad-request", NULL);
    pep_iq *q = calloc(1, sizeof(*q));
    if (!q || !(q->user = strdup(user)) || !(q->p = xmppd_pending_new(ev))) {
        if (q)
            free(q->user);
        free(q);
        return XMPPD_FAIL;
    }
    q->st = st;
    pep_with_service(st, user, true, pep_iq_run, pep_iq_free, q);
    return XMPPD_HANDLED;
}

/* ---- service discovery (XEP-0163 §6, XEP-0060 §5) ---------------------------------------- */

/* mod_disco's API "disco", version 2 (modules/disco/README.md). */
typedef struct pep_disco_api {
    uint32_t version, size;
    xmppd_stanza *(*host_info)(const struct pep_disco_api *api);
    unsigned long (*hold)(const struct pep_disco_api *api);
    void (*release)(const struct pep_disco_api *api, unsigned long token);
} pep_disco_api;

static const pep_disco_api *pep_disco(const pep_state *st)
{
    const pep_disco_api *a = xmppd_use(st->host, "disco");
    return a && a->version >= 2 && a->size >= sizeof(*a) ? a : NULL;
}

typedef struct pep_disco_wait {
    pep_state *st;
    unsigned long token;
} pep_disco_wait;

static void pep_disco_loaded(pep_ctx *ctx, void *ud)
{
    pep_disco_wait *w = ud;
    const pep_disco_api *d = pep_disco(w->st);
    (void)ctx;
    if (d)
        d->release(d, w->token);
    free(w);
}

/* The account's service for a disco answer: cached, or NULL after asking
 * mod_disco to wait while it loads (the answer is then built again). */
static pep_svc *pep_disco_service(pep_state *st, const char *user)
{
    pep_svc *svc = pep_cached(st, user);
    const pep_disco_api *d = svc ? NULL : pep_disco(st);
    unsigned long token = d ? d->hold(d) : 0;
    pep_disco_wait *w = token ? calloc(1, sizeof(*w)) : NULL;
    if (w) {
        *w = (pep_disco_wait){ st, token };
        pep_with_service(st, user, false, pep_disco_loaded, free, w);
    } else if (token) {
        d->release(d, token);
    }
    return svc;
}

/* The account a disco request is about, its node attribute in *node_r. */
static const char *pep_disco_target(const xmppd_event *ev, pep_state *st, const char **node_r)
{
    const char *node = xmppd_stanza_attr(ev->stanza, "node");
    *node_r = node && *node ? node : NULL;
    if (!ev->to || !ev->to->node || strcmp(ev->to->domain, xmppd_host_name(st->host)) != 0)
        return NULL;
    return ev->to->node;
}

/* mod_disco answers another account's disco only to those with a presence
 * subscription to it: the presence access model admits them. */
static pep_ctx pep_disco_ctx(pep_state *st, pep_svc *svc, const xmppd_event *ev)
{
    return (pep_ctx){ .st = st, .svc = svc, .presence_bare = ev->from ? ev->from->bare : NULL };
}

static int pep_on_disco_info(xmppd_event *ev, void *ud)
{
    pep_state *st = ud;
    const char *node;
    const char *user = pep_disco_target(ev, st, &node);
    if (!user)
        return XMPPD_PASS;
    if (!node) {
        xmppd_stanza *id = xmppd_stanza_tag(ev->stanza, "identity", NULL);
        if (id) {
            xmppd_stanza_set_attr(id, "category", "pubsub");
            xmppd_stanza_set_attr(id, "type", "pep");
        }
        ps_disco_features(true, ev->stanza);
        return XMPPD_PASS;
    }
    pep_svc *svc = pep_disco_service(st, user);
    if (svc) {
        pep_ctx ctx = pep_disco_ctx(st, svc, ev);
        ps_disco_info(svc->ps, ev->stanza, node, ev->from ? ev->from->bare : "", &ctx);
    }
    return XMPPD_PASS;
}

static int pep_on_disco_items(xmppd_event *ev, void *ud)
{
    pep_state *st = ud;
    const char *node;
    const char *user = pep_disco_target(ev, st, &node);
    pep_svc *svc = user ? pep_disco_service(st, user) : NULL;
    if (svc) {
        pep_ctx ctx = pep_disco_ctx(st, svc, ev);
        ps_disco_items(svc->ps, ev->stanza, node, ev->from ? ev->from->bare : "", &ctx);
    }
    return XMPPD_PASS;
}

/* ---- accounts ----------------------------------------------------------------------------- */

static int pep_on_user_deleted(xmppd_event *ev, void *ud)
{
    if (ev->data)
        pep_forget(ud, ev->data);
    return XMPPD_PASS;
}

static int pep_on_invalidate(xmppd_event *ev, void *ud)
{
    if (ev->to && ev->data && strcmp(ev->data, "pep") == 0)
        pep_invalidated(ud, ev->to->node);
    return XMPPD_PASS;
}

/* ---- module ------------------------------------------------------------------------------- */

static void pep_unload(xmppd_module *m)
{
    pep_state *st = xmppd_module_data(m);
    if (!st)
        return;
    pep_cache_free(st);
    ps_config_clear(&st->defaults);
    free(st);
    xmppd_module_set_data(m, NULL);
}

/* XEP-0163 §5 and XEP-0060's defaults, with the last item sent on
 * subscription and presence (§4.3.4). */
static void pep_set_defaults(ps_config *d)
{
    *d = (ps_config){ .access = PS_ACCESS_PRESENCE, .publish_model = PS_PUBLISH_PUBLISHERS,
                      .send_last = PS_SENDLAST_ON_SUB_AND_PRESENCE, .max_items = 1,
                      .persist_items = true, .deliver_notifications = true,
                      .deliver_payloads = true, .notify_retract = true, .notify_delete = true };
}

static int pep_register(xmppd_module *m, pep_state *st)
{
    static const char *const nss[] = { PS_NS, PS_NS_OWNER };
    for (size_t i = 0; i < 2; i++)
        if (xmppd_iq_handle(m, "get", nss[i], XMPPD_IQ_BARE, pep_on_iq, st) < 0 ||
            xmppd_iq_handle(m, "set", nss[i], XMPPD_IQ_BARE, pep_on_iq, st) < 0)
            return -1;
    if (xmppd_hook(m, "presence/broadcast", pep_on_presence, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "presence/bare", pep_on_presence_in, XMPPD_PRIO_DEFAULT + 20, st) < 0 ||
        xmppd_hook(m, CAPS_EVENT_RESOLVED, pep_on_caps_resolved, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "user-deleted", pep_on_user_deleted, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "cluster-invalidate", pep_on_invalidate, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "disco-info", pep_on_disco_info, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "disco-items", pep_on_disco_items, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_event_declare(m, PEP_EVENT_CHANGED, XMPPD_EVENT_ALL,
                            "data: const pep_change * (pep_api.h): an account's PEP node changed "
                            "(items published or retracted, purged, deleted)") < 0 ||
        xmppd_provide(m, "pep", &st->api) < 0)
        return -1;
    return 0;
}

static int pep_load(xmppd_module *m, const void *conf)
{
    const pep_conf *c = conf;
    pep_state *st = calloc(1, sizeof(*st));
    if (!st)
        return xmppd_module_refuse(m, "out of memory");
    st->m = m;
    st->host = xmppd_module_host(m);
    st->lim = (ps_limits){ .max_nodes = (size_t)c->max_nodes, .max_items = (long)c->max_items,
                           .max_item_bytes = (size_t)c->max_item_size,
                           .max_total_items = (size_t)c->max_total_items,
                           .max_subscriptions = (size_t)c->max_subscriptions };
    st->max_svc = (size_t)c->cache_size;
    st->max_remotes = (size_t)c->max_remote_entities;
    pep_set_defaults(&st->defaults);
    st->ops = (ps_ops){ .presence_sub = pep_presence_sub, .in_groups = pep_in_groups,
                        .may_create = pep_may_create, .store_node = pep_store_node,
                        .store_item = pep_store_item, .drop_item = pep_drop_item,
                        .drop_node = pep_drop_node, .send = pep_send, .notify = pep_notify,
                        .changed = pep_changed };
    pep_api_init(st);
    xmppd_module_set_data(m, st);
    st->store = xmppd_store_open(m, "pep", XMPPD_STORE_KEYVAL);
    if (!st->store) {
        pep_unload(m);
        return xmppd_module_refuse(m, "no storage driver is loaded");
    }
    if (pep_register(m, st) < 0) {
        pep_unload(m);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(pep,
    .version = "1.0",
    .summary = "XEP-0163 personal eventing: a XEP-0060 service on every account",
    .depends = (const char *const[]){ "roster", "caps", NULL },
    .specs = (const char *const[]){ "XEP-0060", "XEP-0163", "XEP-0223", "XEP-0172", NULL },
    .options = pep_options,
    .conf_size = sizeof(pep_conf),
    .load = pep_load,
    .unload = pep_unload);
