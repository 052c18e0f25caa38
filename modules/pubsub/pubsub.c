/* mod_pubsub: a XEP-0060 publish-subscribe service at a domain of its own
 * (default "pubsub." + the host), for public nodes with owner, publisher,
 * publish-only, member and outcast affiliations and subscription options.
 * The engine is the one mod_pep uses (ps.h); the service is one ps_service
 * stored in the keyval store "pubsub" (user "", ps_store.c's keys), loaded
 * when the module loads. The kernel hands it every stanza for its domain
 * (xmppd_domain_serve); the host's disco#items lists it. */
#define _GNU_SOURCE /* asprintf */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps.h"

#ifndef XMPPD_STORE_CANCELLED
#define XMPPD_STORE_CANCELLED (-2) /* the module unloaded before the answer (storage.h) */
#endif

#define PUBSUB_MAX_WAITING 1000

typedef struct pubsub_conf {
    const char *domain;
    const char *name;
    const char *const *admins;
    const char *create;
    const char *access_model;
    long long max_nodes;
    long long max_items;
    long long max_item_size;
    long long max_total_items;
    long long max_subscriptions;
} pubsub_conf;

static const char *const pubsub_create_choices[] = { "local", "anyone", "admins", NULL };
static const char *const pubsub_access_choices[] = { "open", "whitelist", NULL };

static const xmppd_option pubsub_options[] = {
    { "domain", XMPPD_OPT_STRING, XMPPD_OFF(pubsub_conf, domain), NULL, 0, 0, NULL, 0,
      "the service's domain (default: \"pubsub.\" followed by the host)" },
    { "name", XMPPD_OPT_STRING, XMPPD_OFF(pubsub_conf, name), "\"Publish-Subscribe\"", 0, 0, NULL,
      0, "the service's name in disco" },
    { "admins", XMPPD_OPT_LIST, XMPPD_OFF(pubsub_conf, admins), "[]", 0, 0, NULL, 0,
      "bare JIDs owning every node" },
    { "create", XMPPD_OPT_ENUM, XMPPD_OFF(pubsub_conf, create), "local", 0, 0, pubsub_create_choices,
      0, "who may create nodes: the host's accounts, anyone, or only admins" },
    { "default_access_model", XMPPD_OPT_ENUM, XMPPD_OFF(pubsub_conf, access_model), "open", 0, 0,
      pubsub_access_choices, 0, "access model of new nodes" },
    { "max_nodes", XMPPD_OPT_INT, XMPPD_OFF(pubsub_conf, max_nodes), "1000", 1, 10000000, NULL, 0,
      "nodes the service holds (more: <not-allowed/> with <max-nodes-exceeded/>)" },
    { "max_items", XMPPD_OPT_INT, XMPPD_OFF(pubsub_conf, max_items), "1000", 1, 1000000, NULL, 0,
      "items one node may keep; what pubsub#max_items \"max\" means" },
    { "max_item_size", XMPPD_OPT_SIZE, XMPPD_OFF(pubsub_conf, max_item_size), "128k", 256,
      16 * 1024 * 1024, NULL, 0, "largest item payload, serialised" },
    { "max_total_items", XMPPD_OPT_INT, XMPPD_OFF(pubsub_conf, max_total_items), "100000", 1,
      100000000, NULL, 0, "items the whole service stores (more: <not-allowed/> with "
      "<max-items-exceeded/>)" },
    { "max_subscriptions", XMPPD_OPT_INT, XMPPD_OFF(pubsub_conf, max_subscriptions), "10000", 1,
      10000000, NULL, 0, "subscriptions one node may have" },
    { NULL }
};

/* A request that came before the service was loaded. */
typedef struct pubsub_wait {
    xmppd_pending *p;
    struct pubsub_wait *next;
} pubsub_wait;

typedef struct pubsub_state {
    xmppd_module *m;
    xmppd_host *host;
    xmppd_store *store;
    char *domain;
    char **admins;           /* prepared bare JIDs, NULL-terminated */
    ps_limits lim;
    ps_config defaults;
    ps_ops ops;
    ps_service *svc;         /* NULL until loaded */
    bool loading;
    bool failed;             /* the load failed: requests get internal-server-error */
    pubsub_wait *waiting, **waiting_tail;
    size_t n_waiting;
} pubsub_state;

/* ---- storage (ps_ops) -------------------------------------------------------------------- */

static void pubsub_on_written(int status, void *ud)
{
    pubsub_state *st = ud;
    if (status != XMPPD_STORE_OK && status != XMPPD_STORE_CANCELLED)
        xmppd_log(st->m, XMPPD_LOG_ERROR, "a pubsub change could not be stored");
}

static void pubsub_set(pubsub_state *st, char *key, json_t *value)
{
    if (key)
        xmppd_kv_set(st->store, "", key, value, pubsub_on_written, st);
    else
        pubsub_on_written(XMPPD_STORE_ERROR, st);
    json_decref(value);
    free(key);
}

static void pubsub_store_node(ps_service *s, const ps_node *n, void *ctx)
{
    (void)ctx;
    json_t *j = ps_node_json(n);
    if (j)
        pubsub_set(s->ud, ps_key_node(n->name), j);
}

static void pubsub_store_item(ps_service *s, const ps_node *n, const ps_item *it, void *ctx)
{
    (void)ctx;
    json_t *j = ps_item_json(it);
    if (j)
        pubsub_set(s->ud, ps_key_item(n->name, it->id), j);
}

static void pubsub_drop_item(ps_service *s, const ps_node *n, const char *id, void *ctx)
{
    (void)ctx;
    pubsub_set(s->ud, ps_key_item(n->name, id), NULL);
}

static void pubsub_drop_node(ps_service *s, const ps_node *n, void *ctx)
{
    for (const ps_item *it = n->first; it && n->cfg.persist_items; it = it->next)
        pubsub_drop_item(s, n, it->id, ctx);
    pubsub_set(s->ud, ps_key_node(n->name), NULL);
}

/* ---- policy and delivery (ps_ops) ----------------------------------------------------------- */

static bool pubsub_may_create(const ps_service *s, const xmppd_jid *from, void *ctx)
{
    (void)ctx;
    pubsub_state *st = s->ud;
    const pubsub_conf *c = xmppd_module_conf(st->m);
    for (char **a = st->admins; from && *a; a++)
        if (strcmp(*a, from->bare) == 0)
            return true;
    if (strcmp(c->create, "anyone") == 0)
        return from != NULL;
    return strcmp(c->create, "local") == 0 && from && from->node &&
           strcmp(from->domain, xmppd_host_name(st->host)) == 0;
}

static void pubsub_send(ps_service *s, const char *to, xmppd_stanza *msg, void *ctx)
{
    (void)ctx;
    pubsub_state *st = s->ud;
    xmppd_stanza *c = xmppd_stanza_copy(msg);
    if (c && xmppd_stanza_set_attr(c, "to", to) == 0)
        xmppd_route(st->host, c);
    xmppd_stanza_unref(c);
}

/* ---- requests --------------------------------------------------------------------------------- */

static void pubsub_reply(ps_req *r, xmppd_stanza *reply)
{
    xmppd_reply((xmppd_event *)r->ev, reply);
}

/* disco#info / disco#items of the service or a node (XEP-0060 §5). */
static void pubsub_disco(pubsub_state *st, xmppd_event *ev, xmppd_stanza *query, bool info)
{
    const pubsub_conf *c = xmppd_module_conf(st->m);
    const char *node = xmppd_stanza_attr(query, "node");
    if (node && !*node)
        node = NULL;
    xmppd_stanza *reply = xmppd_stanza_reply(ev->stanza);
    xmppd_stanza *q = reply ? xmppd_stanza_tag(reply, "query", xmppd_stanza_ns(query)) : NULL;
    if (!q) {
        xmppd_stanza_unref(reply);
        xmppd_reply_error(ev, NULL, "internal-server-error", NULL);
        return;
    }
    if (node)
        xmppd_stanza_set_attr(q, "node", node);
    const char *from = ev->from ? ev->from->bare : "";
    bool ok = info ? ps_disco_info(st->svc, q, node, from, NULL)
                   : ps_disco_items(st->svc, q, node, from, NULL);
    if (!ok) {
        xmppd_stanza_unref(reply);
        xmppd_reply_error(ev, NULL, "item-not-found", NULL);
        return;
    }
    if (info && !node) {
        xmppd_stanza *id = xmppd_stanza_child(q, "identity", NULL);
        if (id && c->name)
            xmppd_stanza_set_attr(id, "name", c->name);
        xmppd_stanza *f = xmppd_stanza_tag(q, "feature", NULL);
        if (f)
            xmppd_stanza_set_attr(f, "var", PS_NS_DISCO_INFO);
        if ((f = xmppd_stanza_tag(q, "feature", NULL)))
            xmppd_stanza_set_attr(f, "var", PS_NS_DISCO_ITEMS);
    }
    xmppd_reply(ev, reply);
}

/* An IQ get/set to the service (the service is loaded). */
static void pubsub_iq(pubsub_state *st, xmppd_event *ev)
{
    xmppd_stanza *child = xmppd_stanza_first(ev->stanza);
    const char *ns = child ? xmppd_stanza_ns(child) : "";
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    bool get = type && strcmp(type, "get") == 0;
    if (ev->to->node || ev->to->resource) {
        xmppd_reply_error(ev, NULL, "service-unavailable", NULL);
    } else if (get && strcmp(ns, PS_NS_DISCO_INFO) == 0) {
        pubsub_disco(st, ev, child, true);
    } else if (get && strcmp(ns, PS_NS_DISCO_ITEMS) == 0) {
        pubsub_disco(st, ev, child, false);
    } else if (strcmp(ns, PS_NS) == 0 || strcmp(ns, PS_NS_OWNER) == 0) {
        ps_req r = { .svc = st->svc, .ev = ev, .reply = pubsub_reply, .ud = st };
        ps_handle_iq(&r);
    } else {
        xmppd_reply_error(ev, NULL, "service-unavailable", NULL);
    }
}

static void pubsub_load_service(pubsub_state *st);
static void pubsub_drop_service(pubsub_state *st);

static int pubsub_on_stanza(xmppd_event *ev, void *ud)
{
    pubsub_state *st = ud;
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    bool request = strcmp(xmppd_stanza_name(ev->stanza), "iq") == 0 && type &&
                   (strcmp(type, "get") == 0 || strcmp(type, "set") == 0);
    if (!request)
        /* Answers and errors (a bounced notification) end here; other
         * messages and presence get the kernel's default. */
        return type && (strcmp(type, "error") == 0 || strcmp(type, "result") == 0) ? XMPPD_HANDLED
                                                                                   : XMPPD_PASS;
    /* In a cluster, a request routed here by a node whose view of the live
     * nodes is a heartbeat ahead of or behind ours: serving it here would
     * change a copy the service's node does not see (RFC 6120 §8.3.3.13:
     * wait, retry). */
    if (!xmppd_cluster_mine(st->domain))
        return xmppd_reply_error(ev, "wait", "recipient-unavailable",
                                 "The service is moving to another node: retry");
    if (st->failed)
        return xmppd_reply_error(ev, NULL, "internal-server-error", "The service's data could not be loaded");
    if (st->svc) {
        pubsub_iq(st, ev);
        return XMPPD_HANDLED;
    }
    pubsub_wait *w = st->n_waiting < PUBSUB_MAX_WAITING ? calloc(1, sizeof(*w)) : NULL;
    if (!w || !(w->p = xmppd_pending_new(ev))) {
        free(w);
        return xmppd_reply_error(ev, NULL, "resource-constraint", "The service is starting");
    }
    *st->waiting_tail = w;
    st->waiting_tail = &w->next;
    st->n_waiting++;
    pubsub_load_service(st); /* placed here a moment ago: loading, or about to */
    return XMPPD_HANDLED;
}

/* ---- loading ------------------------------------------------------------------------------------- */

static void pubsub_on_loaded(int status, json_t *value, void *ud)
{
    pubsub_state *st = ud;
    if (status == XMPPD_STORE_CANCELLED)
        return;
    st->loading = false;
    size_t bad = 0;
    ps_service *s = status == XMPPD_STORE_OK
                        ? ps_service_new(st->domain, false, &st->ops, &st->lim, &st->defaults)
                        : NULL;
    if (s) {
        s->ud = st;
        s->admins = (const char *const *)st->admins;
        if (ps_service_load(s, value, &bad) < 0) {
            ps_service_free(s);
            s = NULL;
        }
    }
    if (bad)
        xmppd_log(st->m, XMPPD_LOG_WARN, "%zu stored pubsub entries do not parse", bad);
    if (!s)
        xmppd_log(st->m, XMPPD_LOG_ERROR, "cannot load the pubsub service's data");
    st->svc = s;
    st->failed = !s;
    while (st->waiting) {
        pubsub_wait *w = st->waiting;
        st->waiting = w->next;
        xmppd_event ev = *xmppd_pending_event(w->p);
        if (s)
            pubsub_iq(st, &ev);
        else
            xmppd_reply_error(&ev, NULL, "internal-server-error", NULL);
        xmppd_pending_drop(w->p);
        free(w);
    }
    st->waiting_tail = &st->waiting;
    st->n_waiting = 0;
    /* placed on another node meanwhile: a copy kept here would go stale */
    if (!xmppd_cluster_mine(st->domain))
        pubsub_drop_service(st);
}

static void pubsub_load_service(pubsub_state *st)
{
    if (st->svc || st->loading)
        return;
    st->loading = true;
    st->failed = false;
    xmppd_kv_get_all(st->store, "", pubsub_on_loaded, st);
}

static void pubsub_drop_service(pubsub_state *st)
{
    if (!st->svc)
        return;
    ps_service_free(st->svc);
    st->svc = NULL;
    xmppd_log(st->m, XMPPD_LOG_INFO, "%s is served by another node now", st->domain);
}

/* A cluster's live nodes changed (the service is placed whole, issue 20):
 * the node it is placed on holds it in memory and no other, so that
 * subscriptions, items and notifications have one copy. */
static void pubsub_moved(void *ud)
{
    pubsub_state *st = ud;
    if (xmppd_cluster_mine(st->domain))
        pubsub_load_service(st);
    else if (!st->loading)
        pubsub_drop_service(st);
}

/* ---- the host's disco#items --------------------------------------------------------------------- */

static int pubsub_on_disco_items(xmppd_event *ev, void *ud)
{
    pubsub_state *st = ud;
    const pubsub_conf *c = xmppd_module_conf(st->m);
    if (!ev->to || ev->to->node || xmppd_stanza_attr(ev->stanza, "node"))
        return XMPPD_PASS;
    xmppd_stanza *it = xmppd_stanza_tag(ev->stanza, "item", NULL);
    if (it) {
        xmppd_stanza_set_attr(it, "jid", st->domain);
        if (c->name)
            xmppd_stanza_set_attr(it, "name", c->name);
    }
    return XMPPD_PASS;
}

/* ---- module -------------------------------------------------------------------------------------- */

static void pubsub_unload(xmppd_module *m)
{
    pubsub_state *st = xmppd_module_data(m);
    if (!st)
        return;
    while (st->waiting) {
        pubsub_wait *w = st->waiting;
        st->waiting = w->next;
        xmppd_pending_drop(w->p);
        free(w);
    }
    ps_service_free(st->svc);
    for (char **a = st->admins; a && *a; a++)
        free(*a);
    free(st->admins);
    ps_config_clear(&st->defaults);
    free(st->domain);
    free(st);
    xmppd_module_set_data(m, NULL);
}

/* The configured admins as prepared bare JIDs; -1 (refused) on a bad one. */
static int pubsub_admins(xmppd_module *m, pubsub_state *st, const char *const *admins)
{
    size_t n = 0;
    while (admins && admins[n])
        n++;
    if (!(st->admins = calloc(n + 1, sizeof(*st->admins))))
        return xmppd_module_refuse(m, "out of memory");
    for (size_t i = 0; i < n; i++) {
        xmppd_jid *j = xmppd_jid_parse(admins[i]);
        if (!j || j->resource) {
            xmppd_jid_free(j);
            return xmppd_module_refuse(m, "option admins: \"%s\" is not a bare JID", admins[i]);
        }
        st->admins[i] = strdup(j->bare);
        xmppd_jid_free(j);
        if (!st->admins[i])
            return xmppd_module_refuse(m, "out of memory");
    }
    return 0;
}

static int pubsub_setup(xmppd_module *m, pubsub_state *st, const pubsub_conf *c)
{
    char *domain = NULL;
    if (c->domain)
        domain = xmppd_nameprep(c->domain);
    else if (asprintf(&domain, "pubsub.%s", xmppd_host_name(st->host)) < 0)
        domain = NULL;
    if (!domain)
        return xmppd_module_refuse(m, "option domain: \"%s\" is not a domain", c->domain);
    st->domain = domain;
    if (pubsub_admins(m, st, c->admins) < 0)
        return -1;
    st->store = xmppd_store_open(m, "pubsub", XMPPD_STORE_KEYVAL);
    if (!st->store)
        return xmppd_module_refuse(m, "no storage driver is loaded");
    if (xmppd_domain_serve(m, st->domain, pubsub_on_stanza, st) < 0)
        return xmppd_module_refuse(m, "cannot serve %s (a host, a component, or served already)",
                                   st->domain);
    if (xmppd_hook(m, "disco-items", pubsub_on_disco_items, XMPPD_PRIO_DEFAULT, st) < 0)
        return -1;
    /* In a cluster the service lives on one node (its state is in memory);
     * without one, it is this node's. */
    if (xmppd_cluster_place_service(m, st->domain, pubsub_moved, st) < 0)
        return xmppd_module_refuse(m, "cannot place %s on the cluster's nodes", st->domain);
    if (xmppd_cluster_mine(st->domain))
        pubsub_load_service(st);
    return 0;
}

static int pubsub_load(xmppd_module *m, const void *conf)
{
    const pubsub_conf *c = conf;
    pubsub_state *st = calloc(1, sizeof(*st));
    if (!st)
        return xmppd_module_refuse(m, "out of memory");
    st->m = m;
    st->host = xmppd_module_host(m);
    st->waiting_tail = &st->waiting;
    st->lim = (ps_limits){ .max_nodes = (size_t)c->max_nodes, .max_items = (long)c->max_items,
                           .max_item_bytes = (size_t)c->max_item_size,
                           .max_total_items = (size_t)c->max_total_items,
                           .max_subscriptions = (size_t)c->max_subscriptions };
    /* XEP-0060's defaults for a generic service. */
    st->defaults = (ps_config){ .access = strcmp(c->access_model, "open") == 0 ? PS_ACCESS_OPEN
                                                                             : PS_ACCESS_WHITELIST,
                                .publish_model = PS_PUBLISH_PUBLISHERS, .max_items = 10,
                                .send_last = PS_SENDLAST_NEVER, .persist_items = true,
                                .deliver_notifications = true, .deliver_payloads = true,
                                .notify_retract = true, .notify_delete = true };
    st->ops = (ps_ops){ .may_create = pubsub_may_create, .store_node = pubsub_store_node,
                        .store_item = pubsub_store_item, .drop_item = pubsub_drop_item,
                        .drop_node = pubsub_drop_node, .send = pubsub_send };
    xmppd_module_set_data(m, st);
    if (pubsub_setup(m, st, c) < 0) {
        pubsub_unload(m);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(pubsub,
    .version = "1.0",
    .summary = "XEP-0060 publish-subscribe service at its own domain (pubsub.HOST)",
    .depends = (const char *const[]){ "disco", NULL },
    .specs = (const char *const[]){ "XEP-0060", NULL },
    .options = pubsub_options,
    .conf_size = sizeof(pubsub_conf),
    .load = pubsub_load,
    .unload = pubsub_unload);
