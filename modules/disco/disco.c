/* XEP-0030 Service Discovery for the host and for one's own account, with
 * XEP-0128 extended info and XEP-0157 contact addresses.
 *
 * disco#info of the host lists the identities and features every module
 * registered (xmppd_disco_identity / xmppd_disco_feature), then the
 * contact-address form; disco#items lists the configured items. Both then
 * fire "disco-info" / "disco-items" (fire_all) so modules add dynamic
 * content or answer nodes:
 *   ev->stanza  the result <query/> being built (add children to it)
 *   ev->to      the entity asked about (the host, or the account's bare JID)
 *   ev->from, ev->session  the requester (NULL when built for the server
 *               itself, e.g. the caps hash)
 *   ev->data    the request <iq/> (NULL when built for the server itself)
 * A query with a node that no module filled is answered <item-not-found/>.
 *
 * Another account's disco (XEP-0163 §6.2: a contact discovering its PEP
 * nodes) is answered to those with a presence subscription to it ('from'
 * in its roster, RFC 6121), as Prosody does; others get
 * <service-unavailable/>.
 *
 * A handler whose answer needs data it has to load (an account's PEP
 * service, the account's roster here) holds the request (API "hold"): the
 * answer is built again once every holder released it, at most once more.
 *
 * The module publishes the API "disco" (struct disco_api below) so caps
 * can hash exactly what disco#info serves. */
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "../roster/roster_api.h"

#define DISCO_INFO_NS "http://jabber.org/protocol/disco#info"
#define DISCO_ITEMS_NS "http://jabber.org/protocol/disco#items"
#define DISCO_DATA_NS "jabber:x:data"
#define DISCO_SERVERINFO "http://jabber.org/network/serverinfo"
#define DISCO_MAX_ROUNDS 2 /* answers built again after holds: loads that need loads */

typedef struct disco_conf {
    const char *name;         /* the server identity's name */
    const json_t *items;      /* [ "jid" | {"jid","name","node"} ] */
    const json_t *contact;    /* XEP-0157 {"abuse-addresses": [..], ..} */
} disco_conf;

static const xmppd_option disco_options[] = {
    { "name", XMPPD_OPT_STRING, XMPPD_OFF(disco_conf, name), "xmppd", 0, 0, NULL, 0,
      "name of the server identity (category server, type im)" },
    { "items", XMPPD_OPT_JSON, XMPPD_OFF(disco_conf, items), "[]", 0, 0, NULL, 0,
      "disco#items of the host: JIDs, or objects {\"jid\", \"name\", \"node\"}" },
    { "contact_info", XMPPD_OPT_JSON, XMPPD_OFF(disco_conf, contact), "{}", 0, 0, NULL, 0,
      "XEP-0157 addresses, e.g. {\"admin-addresses\": [\"mailto:a@example.org\"]}" },
    { NULL }
};

/* The "disco" API, version 2. Users check version and size. */
#define DISCO_API_VERSION 2
typedef struct disco_api {
    uint32_t version, size;
    /* The host's disco#info <query/> (no node) as served to clients, built
     * for the server itself. New tree, caller owns; NULL on OOM. */
    xmppd_stanza *(*host_info)(const struct disco_api *api);
    /* Version 2. From a "disco-info"/"disco-items" handler: the answer
     * being built waits until release(token) (data the handler must load
     * first), then is built again and every handler runs again (twice at
     * most). 0 when it cannot be held (answer with what you have). A token
     * released after the request is gone is ignored. */
    unsigned long (*hold)(const struct disco_api *api);
    void (*release)(const struct disco_api *api, unsigned long token);
} disco_api;

/* A request being answered: held while a module (or this one) loads what
 * the answer needs. */
typedef struct disco_build {
    unsigned long id;        /* the hold token */
    xmppd_pending *p;        /* the request, once held */
    int holds;
    int rounds;              /* answers built so far */
    bool info;               /* disco#info (else items) */
    int allowed;             /* another account's disco: -1 unknown, 0 no, 1 yes */
    struct disco_build *next;
} disco_build;

/* Module data; api first, so the API pointer is the state. */
typedef struct disco_state {
    disco_api api;
    xmppd_module *m;
    disco_build *building;   /* the answer being built (during the events) */
    disco_build *held;       /* requests waiting for releases */
    unsigned long last_id;
} disco_state;

/* XEP-0157 fields, sorted (the form lists them in this order). */
static const char *const disco_contact_fields[] = {
    "abuse-addresses", "admin-addresses", "feedback-addresses", "sales-addresses",
    "security-addresses", "status-addresses", "support-addresses", NULL
};

/* ---- building answers ---------------------------------------------------- */

static void disco_add_identity(const char *category, const char *type, const char *name, void *ud)
{
    xmppd_stanza *id = xmppd_stanza_tag(ud, "identity", NULL);
    if (!id)
        return;
    xmppd_stanza_set_attr(id, "category", category);
    xmppd_stanza_set_attr(id, "type", type);
    if (name)
        xmppd_stanza_set_attr(id, "name", name);
}

static void disco_add_feature(const char *var, void *ud)
{
    xmppd_stanza *f = xmppd_stanza_tag(ud, "feature", NULL);
    if (f)
        xmppd_stanza_set_attr(f, "var", var);
}

static void disco_field(xmppd_stanza *form, const char *var, const char *type,
                        const json_t *values)
{
    xmppd_stanza *field = xmppd_stanza_tag(form, "field", NULL);
    if (!field)
        return;
    xmppd_stanza_set_attr(field, "var", var);
    if (type)
        xmppd_stanza_set_attr(field, "type", type);
    size_t i;
    const json_t *v;
    json_array_foreach(values, i, v) {
        xmppd_stanza *value = xmppd_stanza_tag(field, "value", NULL);
        const char *s = json_string_value(v);
        if (value && s)
            xmppd_stanza_add_text(value, s, strlen(s));
    }
}

/* XEP-0157: the contact addresses as a XEP-0128 form. */
static void disco_add_contact_form(xmppd_stanza *q, const json_t *contact)
{
    if (!contact || json_object_size(contact) == 0)
        return;
    xmppd_stanza *x = xmppd_stanza_tag(q, "x", DISCO_DATA_NS);
    json_t *ft = json_pack("[s]", DISCO_SERVERINFO);
    if (!x || !ft) {
        json_decref(ft);
        return;
    }
    xmppd_stanza_set_attr(x, "type", "result");
    disco_field(x, "FORM_TYPE", "hidden", ft);
    json_decref(ft);
    for (size_t i = 0; disco_contact_fields[i]; i++) {
        const json_t *v = json_object_get(contact, disco_contact_fields[i]);
        if (v)
            disco_field(x, disco_contact_fields[i], NULL, v);
    }
}

/* Fires name (fire_all) about q being built; req may be NULL. */
static void disco_fire(disco_state *st, const char *name, xmppd_stanza *q, const xmppd_jid *about,
                       const xmppd_event *req)
{
    xmppd_event ev = { .name = name, .host = xmppd_module_host(st->m), .stanza = q, .to = about };
    if (req) {
        ev.session = req->session;
        ev.from = req->from;
        ev.data = req->stanza;
    }
    xmppd_fire_all(&ev);
}

/* The host's info <query/>; node NULL: the host itself. req may be NULL. */
static xmppd_stanza *disco_host_info(disco_state *st, const char *node, const xmppd_event *req)
{
    const disco_conf *c = xmppd_module_conf(st->m);
    xmppd_host *h = xmppd_module_host(st->m);
    xmppd_jid *host_jid = xmppd_jid_make(NULL, xmppd_host_name(h), NULL);
    xmppd_stanza *q = host_jid ? xmppd_stanza_new("query", DISCO_INFO_NS) : NULL;
    if (!q) {
        xmppd_jid_free(host_jid);
        return NULL;
    }
    if (node) {
        xmppd_stanza_set_attr(q, "node", node);
    } else {
        xmppd_disco_foreach_identity(h, disco_add_identity, q);
        xmppd_disco_foreach_feature(h, disco_add_feature, q);
        disco_add_contact_form(q, c->contact);
    }
    disco_fire(st, "disco-info", q, host_jid, req);
    xmppd_jid_free(host_jid);
    return q;
}

static xmppd_stanza *disco_api_host_info(const disco_api *api)
{
    return disco_host_info((disco_state *)api, NULL, NULL);
}

/* The account's own info <query/>: identity account/registered. */
static xmppd_stanza *disco_account_info(disco_state *st, const char *node, const xmppd_jid *account,
                                        const xmppd_event *req)
{
    xmppd_stanza *q = xmppd_stanza_new("query", DISCO_INFO_NS);
    if (!q)
        return NULL;
    if (node) {
        xmppd_stanza_set_attr(q, "node", node);
    } else {
        disco_add_identity("account", "registered", NULL, q);
        disco_add_feature(DISCO_INFO_NS, q);
        disco_add_feature(DISCO_ITEMS_NS, q);
    }
    disco_fire(st, "disco-info", q, account, req);
    return q;
}

static void disco_add_items(xmppd_stanza *q, const json_t *items)
{
    size_t i;
    const json_t *v;
    json_array_foreach(items, i, v) {
        xmppd_stanza *item = xmppd_stanza_tag(q, "item", NULL);
        if (!item)
            return;
        if (json_is_string(v)) {
            xmppd_stanza_set_attr(item, "jid", json_string_value(v));
            continue;
        }
        static const char *const attrs[] = { "jid", "name", "node" };
        for (size_t k = 0; k < 3; k++) {
            const char *s = json_string_value(json_object_get(v, attrs[k]));
            if (s)
                xmppd_stanza_set_attr(item, attrs[k], s);
        }
    }
}

/* ---- IQ handlers -------------------------------------------------------------- */

/* The account a request to a bare JID is about (no 'to': the requester's
 * own), as a new JID; NULL when there is none. */
static xmppd_jid *disco_account(const xmppd_event *ev)
{
    if (ev->to)
        return ev->to->node ? xmppd_jid_to_bare(ev->to) : NULL;
    return ev->from && ev->from->node ? xmppd_jid_to_bare(ev->from) : NULL;
}

/* The answer: q (consumed) as the IQ's payload, or item-not-found when a
 * node was asked and nobody filled it. New tree; NULL on OOM. */
static xmppd_stanza *disco_result(const xmppd_event *ev, xmppd_stanza *q, const char *node)
{
    if (!q)
        return NULL;
    if (node && !xmppd_stanza_first(q)) {
        xmppd_stanza_unref(q);
        return xmppd_stanza_error_reply(ev->stanza, NULL, "item-not-found", NULL);
    }
    xmppd_stanza *r = xmppd_stanza_reply(ev->stanza);
    if (!r || !xmppd_stanza_add(r, q)) {
        if (!r)
            xmppd_stanza_unref(q);
        xmppd_stanza_unref(r);
        return NULL;
    }
    return r;
}

static const char *disco_node(const xmppd_event *ev, const char *ns)
{
    const char *node = xmppd_stanza_attr(xmppd_stanza_child(ev->stanza, "query", ns), "node");
    return node && *node ? node : NULL;
}

static const roster_api *disco_roster(const disco_state *st)
{
    const roster_api *a = xmppd_use(xmppd_module_host(st->m), "roster");
    return a && a->version >= 1 ? a : NULL;
}

/* ---- holding requests ------------------------------------------------------------- */

static disco_build *disco_held(disco_state *st, unsigned long id)
{
    for (disco_build *b = st->held; b; b = b->next)
        if (b->id == id)
            return b;
    return NULL;
}

static unsigned long disco_api_hold(const disco_api *api)
{
    disco_state *st = (disco_state *)api;
    disco_build *b = st->building;
    if (!b || b->rounds >= DISCO_MAX_ROUNDS)
        return 0;
    b->holds++;
    return b->id;
}

static void disco_serve(disco_state *st, disco_build *b, xmppd_event *ev);

static void disco_api_release(const disco_api *api, unsigned long token)
{
    disco_state *st = (disco_state *)api;
    disco_build *b = token && st->building && st->building->id == token ? st->building
                                                                          : disco_held(st, token);
    if (!b || b->holds == 0 || --b->holds > 0 || !b->p)
        return; /* unknown, still held, or released while being built */
    for (disco_build **pp = &st->held; *pp; pp = &(*pp)->next)
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    b->rounds++;
    xmppd_event ev = *xmppd_pending_event(b->p);
    disco_serve(st, b, &ev);
}

typedef struct disco_roster_wait {
    disco_state *st;
    unsigned long token;
    char *requester;   /* bare JID */
} disco_roster_wait;

/* The account's roster is loaded: may the requester see its disco? */
static void disco_on_roster(roster *r, void *ud)
{
    disco_roster_wait *w = ud;
    disco_state *st = w->st;
    const roster_api *rapi = disco_roster(st);
    disco_build *b = disco_held(st, w->token);
    if (!b && st->building && st->building->id == w->token)
        b = st->building;
    roster_item it;
    if (b)
        b->allowed = r && rapi && rapi->get(r, w->requester, &it) && (it.sub & ROSTER_SUB_FROM);
    free(w->requester);
    free(w);
    disco_api_release(&st->api, b ? b->id : 0);
}

/* May the request see the account's disco: its own, or a presence
 * subscriber's (the account's roster says 'from'). 1 yes, 0 no, -1 the
 * roster is being loaded (b is held). */
static int disco_allowed(disco_state *st, disco_build *b, const xmppd_event *ev,
                         const xmppd_jid *account)
{
    if (ev->from && xmppd_jid_bare_equal(ev->from, account))
        return 1;
    if (b->allowed >= 0 || !ev->from)
        return b->allowed > 0;
    const roster_api *rapi = disco_roster(st);
    roster *r = rapi && strcmp(account->domain, xmppd_host_name(xmppd_module_host(st->m))) == 0
                    ? rapi->cached(rapi, account->node)
                    : NULL;
    roster_item it;
    if (r)
        return rapi->get(r, ev->from->bare, &it) && (it.sub & ROSTER_SUB_FROM);
    disco_roster_wait *w = rapi && b->rounds == 0 ? calloc(1, sizeof(*w)) : NULL;
    if (!w || !(w->requester = strdup(ev->from->bare))) {
        free(w);
        return 0;
    }
    w->st = st;
    w->token = disco_api_hold(&st->api);
    rapi->load(rapi, st->m, account->node, disco_on_roster, w);
    return b->allowed >= 0 ? b->allowed > 0 : -1; /* the roster may have come at once */
}

/* ---- answering --------------------------------------------------------------------- */

static xmppd_stanza *disco_info_answer(disco_state *st, disco_build *b, xmppd_event *ev)
{
    const char *node = disco_node(ev, DISCO_INFO_NS);
    if (ev->to && !ev->to->node)
        return disco_result(ev, disco_host_info(st, node, ev), node);
    xmppd_jid *account = disco_account(ev);
    int allowed = account ? disco_allowed(st, b, ev, account) : 0;
    /* While the roster loads, the events still run: their handlers start
     * their own loads meanwhile (the answer is built again anyway). */
    xmppd_stanza *r = allowed != 0 ? disco_result(ev, disco_account_info(st, node, account, ev), node)
                                   : xmppd_stanza_error_reply(ev->stanza, NULL, "service-unavailable",
                                                              NULL);
    xmppd_jid_free(account);
    return r;
}

static xmppd_stanza *disco_items_answer(disco_state *st, disco_build *b, xmppd_event *ev)
{
    const disco_conf *c = xmppd_module_conf(st->m);
    const char *node = disco_node(ev, DISCO_ITEMS_NS);
    xmppd_jid *about = NULL;
    if (ev->to && !ev->to->node) {
        about = xmppd_jid_make(NULL, xmppd_host_name(xmppd_module_host(st->m)), NULL);
    } else {
        about = disco_account(ev);
        if (!about || disco_allowed(st, b, ev, about) == 0) { /* -1: as for disco#info */
            xmppd_jid_free(about);
            return xmppd_stanza_error_reply(ev->stanza, NULL, "service-unavailable", NULL);
        }
    }
    xmppd_stanza *q = about ? xmppd_stanza_new("query", DISCO_ITEMS_NS) : NULL;
    if (q && node)
        xmppd_stanza_set_attr(q, "node", node);
    else if (q && !about->node)
        disco_add_items(q, c->items);
    if (q)
        disco_fire(st, "disco-items", q, about, ev);
    xmppd_jid_free(about);
    /* An empty list is a fine answer without a node; a node needs content. */
    return disco_result(ev, q, node);
}

/* Builds b's answer and sends it, or keeps the request while it is held. */
static void disco_serve(disco_state *st, disco_build *b, xmppd_event *ev)
{
    disco_build *outer = st->building;
    st->building = b;
    xmppd_stanza *r = b->info ? disco_info_answer(st, b, ev) : disco_items_answer(st, b, ev);
    st->building = outer;
    if (b->holds > 0 && (b->p || (b->p = xmppd_pending_new(ev)))) {
        xmppd_stanza_unref(r); /* built again once released */
        b->next = st->held;
        st->held = b;
        return;
    }
    if (b->p)
        xmppd_pending_reply(b->p, r);
    else if (r)
        xmppd_reply(ev, r);
    else
        xmppd_reply_error(ev, NULL, "internal-server-error", NULL);
    free(b);
}

static int disco_on_request(xmppd_event *ev, disco_state *st, bool info)
{
    disco_build *b = calloc(1, sizeof(*b));
    if (!b)
        return XMPPD_FAIL;
    b->id = ++st->last_id;
    b->info = info;
    b->allowed = -1;
    disco_serve(st, b, ev);
    return XMPPD_HANDLED;
}

static int disco_on_info(xmppd_event *ev, void *ud)
{
    return disco_on_request(ev, ud, true);
}

static int disco_on_items(xmppd_event *ev, void *ud)
{
    return disco_on_request(ev, ud, false);
}

/* ---- options ---------------------------------------------------------------- */

static bool disco_valid_jid(const char *s)
{
    xmppd_jid *j = s ? xmppd_jid_parse(s) : NULL;
    xmppd_jid_free(j);
    return j != NULL;
}

static int disco_check_items(xmppd_module *m, const json_t *items)
{
    if (items && !json_is_array(items)) {
        xmppd_log(m, XMPPD_LOG_ERROR, "option items: expected an array");
        return -1;
    }
    size_t i;
    const json_t *v;
    json_array_foreach(items, i, v) {
        const char *jid = json_is_string(v) ? json_string_value(v)
                                            : json_string_value(json_object_get(v, "jid"));
        if (!disco_valid_jid(jid)) {
            xmppd_log(m, XMPPD_LOG_ERROR, "option items[%zu]: expected a JID or an object with a "
                      "valid \"jid\"", i);
            return -1;
        }
    }
    return 0;
}

static bool disco_known_field(const char *key)
{
    for (size_t i = 0; disco_contact_fields[i]; i++)
        if (strcmp(key, disco_contact_fields[i]) == 0)
            return true;
    return false;
}

static int disco_check_contact(xmppd_module *m, const json_t *contact)
{
    if (contact && !json_is_object(contact)) {
        xmppd_log(m, XMPPD_LOG_ERROR, "option contact_info: expected an object");
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)contact, key, v) {
        if (!disco_known_field(key)) {
            xmppd_log(m, XMPPD_LOG_ERROR, "option contact_info: unknown field \"%s\" (XEP-0157 "
                      "knows abuse-, admin-, feedback-, sales-, security-, status-, support-addresses)",
                      key);
            return -1;
        }
        size_t i;
        const json_t *a;
        bool ok = json_is_array(v);
        json_array_foreach(v, i, a)
            ok = ok && json_is_string(a);
        if (!ok) {
            xmppd_log(m, XMPPD_LOG_ERROR, "option contact_info.%s: expected an array of URIs", key);
            return -1;
        }
    }
    return 0;
}

/* ---- module ------------------------------------------------------------------- */

static void disco_unload(xmppd_module *m)
{
    disco_state *st = xmppd_module_data(m);
    if (!st)
        return;
    while (st->held) {
        disco_build *b = st->held;
        st->held = b->next;
        xmppd_pending_drop(b->p);
        free(b);
    }
    free(st);
    xmppd_module_set_data(m, NULL);
}

static int disco_load(xmppd_module *m, const void *conf)
{
    const disco_conf *c = conf;
    if (disco_check_items(m, c->items) < 0 || disco_check_contact(m, c->contact) < 0)
        return -1;
    disco_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -1;
    st->api = (disco_api){ DISCO_API_VERSION, sizeof(disco_api), disco_api_host_info, disco_api_hold,
                           disco_api_release };
    st->m = m;
    xmppd_module_set_data(m, st);
    unsigned targets = XMPPD_IQ_HOST | XMPPD_IQ_BARE;
    if (xmppd_disco_identity(m, "server", "im", c->name) < 0 ||
        xmppd_disco_feature(m, DISCO_INFO_NS) < 0 || xmppd_disco_feature(m, DISCO_ITEMS_NS) < 0 ||
        xmppd_iq_handle(m, "get", DISCO_INFO_NS, targets, disco_on_info, st) < 0 ||
        xmppd_iq_handle(m, "get", DISCO_ITEMS_NS, targets, disco_on_items, st) < 0 ||
        xmppd_provide(m, "disco", &st->api) < 0) {
        disco_unload(m);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(disco,
    .version = "1.0",
    .summary = "XEP-0030 service discovery (with XEP-0128 forms, XEP-0157 contacts)",
    .specs = (const char *const[]){ "XEP-0030", "XEP-0128", "XEP-0157", NULL },
    .options = disco_options,
    .conf_size = sizeof(disco_conf),
    .load = disco_load,
    .unload = disco_unload);
