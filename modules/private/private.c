/* XEP-0049 Private XML Storage (and so XEP-0048 bookmarks): an account
 * stores and reads XML fragments of its own, keyed by the fragment's
 * element name and namespace. Kept in keyval store "private", key
 * "name|namespace", value the serialised element (a JSON string). Other
 * modules read and write fragments through the API "private" and hear of
 * changes by "private-changed" (private_api.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "private_api.h"

#ifndef XMPPD_STORE_CANCELLED
#define XMPPD_STORE_CANCELLED (-2) /* the module unloaded before the answer (storage.h) */
#endif

#define PRIVATE_NS "jabber:iq:private"
#define PRIVATE_KEY_MAX 1024

/* Module data; api first, so the API pointer is the state. */
typedef struct private_state {
    private_api api;
    xmppd_module *m;
    xmppd_store *store;
} private_state;

/* A get answered after the storage callback. */
typedef struct private_req {
    xmppd_pending *p;     /* the request, answered once */
    xmppd_stanza *wanted; /* the requested (empty) element, reference */
} private_req;

/* ---- checks ----------------------------------------------------------------- */

/* Namespaces XEP-0049 §3 reserves: storing under them is refused. */
static bool private_ns_refused(const char *ns)
{
    static const char *const refused[] = { "", XMPPD_NS_CLIENT, XMPPD_NS_SERVER,
                                           PRIVATE_NS, "http://etherx.jabber.org/streams" };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        if (strcmp(ns, refused[i]) == 0)
            return true;
    return false;
}

/* The one child of <query/> to store or fetch, after checking the request
 * is the account's own and well-formed; NULL when *err_r names the error
 * condition to answer. */
static xmppd_stanza *private_item(const xmppd_event *ev, const char **err_r)
{
    xmppd_stanza *q = xmppd_stanza_child(ev->stanza, "query", PRIVATE_NS);
    if (!ev->from || !ev->from->node || (ev->to && !xmppd_jid_bare_equal(ev->from, ev->to))) {
        *err_r = "forbidden";
        return NULL;
    }
    xmppd_stanza *item = q ? xmppd_stanza_first(q) : NULL;
    if (!item || xmppd_stanza_next(item)) {
        *err_r = "bad-request";
        return NULL;
    }
    const char *ns = xmppd_stanza_ns(item);
    if (!ns || private_ns_refused(ns)) {
        *err_r = "not-acceptable";
        return NULL;
    }
    return item;
}

/* The item of a checked request, its key ("name|namespace") in key; NULL
 * after answering the error. */
static xmppd_stanza *private_request(xmppd_event *ev, char key[PRIVATE_KEY_MAX])
{
    const char *err = NULL;
    xmppd_stanza *item = private_item(ev, &err);
    if (!item) {
        xmppd_reply_error(ev, NULL, err, NULL);
        return NULL;
    }
    int n = snprintf(key, PRIVATE_KEY_MAX, "%s|%s", xmppd_stanza_name(item), xmppd_stanza_ns(item));
    if (n <= 0 || n >= PRIVATE_KEY_MAX) {
        xmppd_reply_error(ev, NULL, "not-acceptable", "Namespace too long");
        return NULL;
    }
    return item;
}

/* ---- get ---------------------------------------------------------------------- */

static void private_on_loaded(int status, json_t *value, void *ud)
{
    private_req *r = ud;
    if (status == XMPPD_STORE_CANCELLED) {
        xmppd_pending_drop(r->p);
        xmppd_stanza_unref(r->wanted);
        free(r);
        return;
    }
    const char *xml = json_string_value(value);
    xmppd_stanza *item = NULL;
    if (status == XMPPD_STORE_OK && xml)
        item = xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT);
    else if (status == XMPPD_STORE_NOT_FOUND)
        item = xmppd_stanza_copy(r->wanted); /* nothing stored: echo it empty */
    xmppd_stanza *reply = item ? xmppd_stanza_reply(xmppd_pending_event(r->p)->stanza) : NULL;
    xmppd_stanza *q = reply ? xmppd_stanza_tag(reply, "query", PRIVATE_NS) : NULL;
    if (!q || !xmppd_stanza_add(q, item)) {
        if (!q)
            xmppd_stanza_unref(item);
        xmppd_stanza_unref(reply);
        reply = NULL; /* answers internal-server-error */
    }
    xmppd_pending_reply(r->p, reply);
    xmppd_stanza_unref(r->wanted);
    free(r);
}

static int private_on_get(xmppd_event *ev, void *ud)
{
    private_state *st = ud;
    char key[PRIVATE_KEY_MAX];
    xmppd_stanza *item = private_request(ev, key);
    if (!item)
        return XMPPD_HANDLED;
    private_req *r = calloc(1, sizeof(*r));
    if (!r || !(r->p = xmppd_pending_new(ev))) {
        free(r);
        return XMPPD_FAIL;
    }
    r->wanted = xmppd_stanza_ref(item);
    xmppd_kv_get(st->store, ev->from->node, key, private_on_loaded, r);
    return XMPPD_HANDLED;
}

/* ---- set ---------------------------------------------------------------------- */

/* A write in flight: who asked (an IQ or a module) and what was written. */
typedef struct private_write {
    private_state *st;
    char *user;
    xmppd_stanza *element;
    xmppd_pending *p;    /* an IQ to answer, or NULL */
    private_done_cb cb;  /* a module to tell, or NULL */
    void *ud;
    xmppd_call *call;    /* that module's claim on the answer */
    bool by_module;
} private_write;

static void private_write_free(private_write *w)
{
    xmppd_call_finish(w->call);
    xmppd_pending_drop(w->p);
    xmppd_stanza_unref(w->element);
    free(w->user);
    free(w);
}

static void private_on_saved(int status, void *ud)
{
    private_write *w = ud;
    bool ok = status == XMPPD_STORE_OK;
    bool tell = w->cb && xmppd_call_finish(w->call);
    w->call = NULL;
    if (status == XMPPD_STORE_CANCELLED) {
        if (tell)
            w->cb(-1, w->ud);
        private_write_free(w);
        return;
    }
    if (w->p) {
        if (ok)
            xmppd_pending_reply(w->p, xmppd_stanza_reply(xmppd_pending_event(w->p)->stanza));
        else
            xmppd_pending_error(w->p, NULL, "internal-server-error", NULL);
        w->p = NULL;
    }
    if (tell)
        w->cb(ok ? 0 : -1, w->ud);
    if (ok) {
        private_change ch = { .user = w->user, .element = w->element, .by_module = w->by_module };
        xmppd_notify(xmppd_module_host(w->st->m), PRIVATE_EVENT_CHANGED, NULL, &ch);
    }
    private_write_free(w);
}

/* Stores item (borrowed) under key for user; w says who to tell. -1 on OOM
 * (w untouched). */
static int private_store(private_state *st, const char *user, const char *key,
                         const xmppd_stanza *item, private_write *w)
{
    char *xml = xmppd_stanza_to_string(item, XMPPD_NS_CLIENT, NULL);
    json_t *v = xml ? json_string(xml) : NULL;
    free(xml);
    if (!v || !(w->user = strdup(user)) || !(w->element = xmppd_stanza_copy(item))) {
        json_decref(v);
        free(w->user);
        w->user = NULL;
        return -1;
    }
    w->st = st;
    xmppd_kv_set(st->store, user, key, v, private_on_saved, w);
    json_decref(v);
    return 0;
}

static int private_on_set(xmppd_event *ev, void *ud)
{
    private_state *st = ud;
    char key[PRIVATE_KEY_MAX];
    xmppd_stanza *item = private_request(ev, key);
    if (!item)
        return XMPPD_HANDLED;
    private_write *w = calloc(1, sizeof(*w));
    if (!w || !(w->p = xmppd_pending_new(ev)) || private_store(st, ev->from->node, key, item, w) < 0) {
        if (w)
            xmppd_pending_drop(w->p);
        free(w);
        return XMPPD_FAIL;
    }
    return XMPPD_HANDLED;
}

/* ---- API for other modules (private_api.h) ----------------------------------------- */

static int private_key(char key[PRIVATE_KEY_MAX], const char *name, const char *ns)
{
    int n = snprintf(key, PRIVATE_KEY_MAX, "%s|%s", name, ns);
    return n > 0 && n < PRIVATE_KEY_MAX ? 0 : -1;
}

typedef struct private_api_get {
    private_get_cb cb; /* NULL once the caller went away */
    void *ud;
    xmppd_call *call;
} private_api_get;

/* The caller unloads first: it hears of the failure now, never later. */
static void private_api_get_cancelled(void *p)
{
    private_api_get *g = p;
    g->cb(-1, NULL, g->ud);
    g->cb = NULL;
}

static void private_api_on_loaded(int status, json_t *value, void *ud)
{
    private_api_get *g = ud;
    bool tell = xmppd_call_finish(g->call) && g->cb;
    const char *xml = json_string_value(value);
    xmppd_stanza *el = tell && status == XMPPD_STORE_OK && xml
                           ? xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT)
                           : NULL;
    if (tell)
        g->cb(status == XMPPD_STORE_OK || status == XMPPD_STORE_NOT_FOUND ? 0 : -1, el, g->ud);
    xmppd_stanza_unref(el);
    free(g);
}

static void private_api_get_one(const private_api *api, xmppd_module *caller, const char *user,
                                const char *name, const char *ns, private_get_cb cb, void *ud)
{
    const private_state *st = (const private_state *)api;
    char key[PRIVATE_KEY_MAX];
    private_api_get *g = private_key(key, name, ns) == 0 ? calloc(1, sizeof(*g)) : NULL;
    if (g)
        *g = (private_api_get){ cb, ud, xmppd_call_new(caller, private_api_get_cancelled, g) };
    if (!g || !g->call) {
        free(g);
        cb(-1, NULL, ud);
        return;
    }
    xmppd_kv_get(st->store, user, key, private_api_on_loaded, g);
}

/* The caller of a write unloads first: told now, never later (the write
 * itself goes on). */
static void private_write_cancelled(void *p)
{
    private_write *w = p;
    w->cb(-1, w->ud);
    w->cb = NULL;
}

static void private_api_set(const private_api *api, xmppd_module *caller, const char *user,
                            const xmppd_stanza *element, private_done_cb cb, void *ud)
{
    private_state *st = (private_state *)api;
    char key[PRIVATE_KEY_MAX];
    private_write *w = calloc(1, sizeof(*w));
    if (w) {
        w->cb = cb;
        w->ud = ud;
        w->by_module = true;
    }
    if (!w || (cb && !(w->call = xmppd_call_new(caller, private_write_cancelled, w))) ||
        private_key(key, xmppd_stanza_name(element), xmppd_stanza_ns(element)) < 0 ||
        private_store(st, user, key, element, w) < 0) {
        if (w)
            private_write_free(w);
        if (cb)
            cb(-1, ud);
        return;
    }
}

/* ---- module ------------------------------------------------------------------- */

static void private_unload(xmppd_module *m)
{
    free(xmppd_module_data(m));
    xmppd_module_set_data(m, NULL);
}

static int private_load(xmppd_module *m, const void *conf)
{
    private_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -1;
    st->api = (private_api){ PRIVATE_API_VERSION, sizeof(private_api), private_api_get_one,
                             private_api_set };
    st->m = m;
    xmppd_module_set_data(m, st);
    st->store = xmppd_store_open(m, "private", XMPPD_STORE_KEYVAL);
    if (!st->store || xmppd_provide(m, "private", &st->api) < 0 ||
        xmppd_event_declare(m, PRIVATE_EVENT_CHANGED, XMPPD_EVENT_ALL,
                            "data: const private_change * (private_api.h): an account's private "
                            "XML fragment was stored") < 0 ||
        xmppd_iq_handle(m, "get", PRIVATE_NS, XMPPD_IQ_BARE, private_on_get, st) < 0 ||
        xmppd_iq_handle(m, "set", PRIVATE_NS, XMPPD_IQ_BARE, private_on_set, st) < 0 ||
        xmppd_disco_feature(m, PRIVATE_NS) < 0) {
        private_unload(m);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(private,
    .version = "1.0",
    .summary = "XEP-0049 Private XML Storage (XEP-0048 bookmarks)",
    .specs = (const char *const[]){ "XEP-0049", "XEP-0048", NULL },
    .load = private_load,
    .unload = private_unload);
