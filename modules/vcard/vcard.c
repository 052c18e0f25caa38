/* XEP-0054 vcard-temp: an account sets its own vCard; anyone may read a
 * local account's vCard (to = its bare JID; no 'to' reads one's own).
 * Stored as the serialised <vCard/> (a JSON string) in keyval store
 * "vcard", key "". Other modules read and write vCards through the API
 * "vcard" and hear of changes by "vcard-changed" (vcard_api.h). */
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "vcard_api.h"

#ifndef XMPPD_STORE_CANCELLED
#define XMPPD_STORE_CANCELLED (-2) /* the module unloaded before the answer (storage.h) */
#endif

#define VCARD_NS "vcard-temp"

typedef struct vcard_conf {
    long long max_size; /* bytes of the serialised <vCard/> */
} vcard_conf;

static const xmppd_option vcard_options[] = {
    { "max_size", XMPPD_OPT_SIZE, XMPPD_OFF(vcard_conf, max_size), "64k", 256, 16 * 1024 * 1024,
      NULL, 0, "largest vCard (serialised XML, photo included) an account may store" },
    { NULL }
};

/* Module data; api first, so the API pointer is the state. */
typedef struct vcard_state {
    vcard_api api;
    xmppd_module *m;
    xmppd_store *store;
} vcard_state;

/* An IQ answered after a storage or auth callback. */
typedef struct vcard_req {
    vcard_state *st;
    xmppd_pending *p; /* the request, answered once */
} vcard_req;

/* ---- deferred replies --------------------------------------------------- */

/* The account an IQ to a bare JID is about: its 'to', or the sender's own. */
static const char *vcard_target(const xmppd_event *ev)
{
    if (ev->to)
        return ev->to->node;
    return ev->from ? ev->from->node : NULL;
}

/* Replies with vcard (consumed; NULL: an empty <vCard/>) and frees r. */
static void vcard_send(vcard_req *r, xmppd_stanza *vcard)
{
    xmppd_stanza *reply = xmppd_stanza_reply(xmppd_pending_event(r->p)->stanza);
    if (!vcard)
        vcard = xmppd_stanza_new("vCard", VCARD_NS);
    if (!reply || !vcard || !xmppd_stanza_add(reply, vcard)) {
        if (!reply)
            xmppd_stanza_unref(vcard);
        xmppd_stanza_unref(reply);
        reply = NULL; /* answers internal-server-error */
    }
    xmppd_pending_reply(r->p, reply);
    free(r);
}

/* Answers r with a stanza error and frees it. */
static void vcard_error(vcard_req *r, const char *condition)
{
    xmppd_pending_error(r->p, NULL, condition, NULL);
    free(r);
}

/* Keeps ev for an answer from a storage callback; NULL on OOM. */
static vcard_req *vcard_req_new(vcard_state *st, xmppd_event *ev)
{
    vcard_req *r = calloc(1, sizeof(*r));
    if (r && !(r->p = xmppd_pending_new(ev))) {
        free(r);
        return NULL;
    }
    if (r)
        r->st = st;
    return r;
}

/* ---- get ---------------------------------------------------------------------- */

static void vcard_on_exists(int result, void *ud)
{
    vcard_req *r = ud;
    if (result == XMPPD_AUTH_OK)
        vcard_send(r, NULL);
    else
        vcard_error(r, result == XMPPD_AUTH_USER_UNKNOWN ? "service-unavailable"
                                                         : "internal-server-error");
}

static void vcard_on_loaded(int status, json_t *value, void *ud)
{
    vcard_req *r = ud;
    if (status == XMPPD_STORE_CANCELLED) {
        xmppd_pending_drop(r->p);
        free(r);
        return;
    }
    const xmppd_event *ev = xmppd_pending_event(r->p);
    const char *user = vcard_target(ev); /* checked by vcard_on_get */
    const char *xml = json_string_value(value);
    if (status == XMPPD_STORE_NOT_FOUND) {
        /* Nothing stored: an empty vCard, if the account exists. */
        if (ev->from && ev->from->node && strcmp(ev->from->node, user) == 0 &&
            strcmp(ev->from->domain, xmppd_host_name(ev->host)) == 0)
            vcard_send(r, NULL);
        else
            xmppd_auth_exists(r->st->m, ev->host, user, vcard_on_exists, r);
    } else if (status != XMPPD_STORE_OK || !xml) {
        vcard_error(r, "internal-server-error");
    } else {
        xmppd_stanza *vc = xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT);
        if (!vc)
            xmppd_log(r->st->m, XMPPD_LOG_WARN, "stored vCard of %s does not parse", user);
        vcard_send(r, vc);
    }
}

static int vcard_on_get(xmppd_event *ev, void *ud)
{
    vcard_state *st = ud;
    const char *user = vcard_target(ev);
    if (!user)
        return xmppd_reply_error(ev, NULL, "bad-request", NULL);
    vcard_req *r = vcard_req_new(st, ev);
    if (!r)
        return XMPPD_FAIL;
    xmppd_kv_get(st->store, user, "", vcard_on_loaded, r);
    return XMPPD_HANDLED;
}

/* ---- set ---------------------------------------------------------------------- */

/* A write in flight: who asked (an IQ or a module), and what to tell. */
typedef struct vcard_write {
    vcard_state *st;
    char *user;
    xmppd_stanza *vcard;    /* the new one, NULL: removed */
    xmppd_pending *p;       /* an IQ to answer, or NULL */
    vcard_done_cb cb;       /* a module to tell, or NULL */
    void *ud;
    bool by_module;         /* written through the API */
} vcard_write;

static void vcard_write_free(vcard_write *w)
{
    xmppd_pending_drop(w->p);
    xmppd_stanza_unref(w->vcard);
    free(w->user);
    free(w);
}

static void vcard_on_saved(int status, void *ud)
{
    vcard_write *w = ud;
    if (status == XMPPD_STORE_CANCELLED) {
        vcard_write_free(w);
        return;
    }
    bool ok = status == XMPPD_STORE_OK;
    if (w->p) {
        if (ok)
            xmppd_pending_reply(w->p, xmppd_stanza_reply(xmppd_pending_event(w->p)->stanza));
        else
            xmppd_pending_error(w->p, NULL, "internal-server-error", NULL);
        w->p = NULL;
    }
    if (w->cb)
        w->cb(ok ? 0 : -1, w->ud);
    if (ok) {
        vcard_change ch = { .user = w->user, .vcard = w->vcard, .by_module = w->by_module };
        xmppd_notify(xmppd_module_host(w->st->m), VCARD_EVENT_CHANGED, NULL, &ch);
    }
    vcard_write_free(w);
}

/* Stores vc (borrowed; NULL or empty: removes) as user's vCard; w carries
 * who to tell. -1 (nothing written, w untouched) when it is too large or on
 * OOM, with *cond_r the error condition. */
static int vcard_store(vcard_state *st, const char *user, const xmppd_stanza *vc, vcard_write *w,
                       const char **cond_r)
{
    const vcard_conf *c = xmppd_module_conf(st->m);
    bool empty = !vc || !xmppd_stanza_first(vc);
    size_t len = 0;
    char *xml = empty ? NULL : xmppd_stanza_to_string(vc, XMPPD_NS_CLIENT, &len);
    *cond_r = "internal-server-error";
    if (!empty && !xml)
        return -1;
    if ((long long)len > c->max_size) {
        free(xml);
        *cond_r = "not-acceptable";
        return -1;
    }
    json_t *v = xml ? json_string(xml) : NULL;
    free(xml);
    if ((!empty && !v) || !(w->user = strdup(user)) ||
        (!empty && !(w->vcard = xmppd_stanza_copy(vc)))) {
        json_decref(v);
        free(w->user);
        w->user = NULL;
        return -1;
    }
    w->st = st;
    xmppd_kv_set(st->store, user, "", v, vcard_on_saved, w);
    json_decref(v);
    return 0;
}

/* Is the IQ from the account it addresses (or without 'to')? */
static bool vcard_own(const xmppd_event *ev)
{
    if (!ev->from || !ev->from->node)
        return false;
    return ev->to ? xmppd_jid_bare_equal(ev->from, ev->to) : true;
}

static int vcard_on_set(xmppd_event *ev, void *ud)
{
    vcard_state *st = ud;
    if (!vcard_own(ev))
        return xmppd_reply_error(ev, NULL, "forbidden", "Only your own vCard can be changed");
    xmppd_stanza *vc = xmppd_stanza_child(ev->stanza, "vCard", VCARD_NS);
    if (!vc)
        return xmppd_reply_error(ev, NULL, "bad-request", NULL);
    vcard_write *w = calloc(1, sizeof(*w));
    const char *cond = "internal-server-error";
    if (!w || !(w->p = xmppd_pending_new(ev)) || vcard_store(st, ev->from->node, vc, w, &cond) < 0) {
        if (w)
            xmppd_pending_drop(w->p);
        free(w);
        return xmppd_reply_error(ev, NULL, cond,
                                 strcmp(cond, "not-acceptable") == 0 ? "The vCard is too large" : NULL);
    }
    return XMPPD_HANDLED;
}

/* ---- API for other modules (vcard_api.h) ------------------------------------------ */

typedef struct vcard_api_get {
    vcard_get_cb cb;
    void *ud;
} vcard_api_get;

static void vcard_api_on_loaded(int status, json_t *value, void *ud)
{
    vcard_api_get *g = ud;
    if (status == XMPPD_STORE_CANCELLED) {
        free(g);
        return;
    }
    const char *xml = json_string_value(value);
    xmppd_stanza *vc = status == XMPPD_STORE_OK && xml ? xmppd_stanza_from_string(xml, strlen(xml),
                                                                                 XMPPD_NS_CLIENT)
                                                       : NULL;
    g->cb(status == XMPPD_STORE_OK || status == XMPPD_STORE_NOT_FOUND ? 0 : -1, vc, g->ud);
    xmppd_stanza_unref(vc);
    free(g);
}

static void vcard_api_get_one(const vcard_api *api, const char *user, vcard_get_cb cb, void *ud)
{
    const vcard_state *st = (const vcard_state *)api;
    vcard_api_get *g = calloc(1, sizeof(*g));
    if (!g) {
        cb(-1, NULL, ud);
        return;
    }
    *g = (vcard_api_get){ cb, ud };
    xmppd_kv_get(st->store, user, "", vcard_api_on_loaded, g);
}

static void vcard_api_set(const vcard_api *api, const char *user, const xmppd_stanza *vcard,
                          vcard_done_cb cb, void *ud)
{
    vcard_state *st = (vcard_state *)api;
    vcard_write *w = calloc(1, sizeof(*w));
    const char *cond;
    if (!w || vcard_store(st, user, vcard, w, &cond) < 0) {
        free(w);
        if (cb)
            cb(-1, ud);
        return;
    }
    w->cb = cb;
    w->ud = ud;
    w->by_module = true;
}

/* ---- module ------------------------------------------------------------------- */

static void vcard_unload(xmppd_module *m)
{
    free(xmppd_module_data(m));
    xmppd_module_set_data(m, NULL);
}

static int vcard_load(xmppd_module *m, const void *conf)
{
    vcard_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -1;
    st->api = (vcard_api){ VCARD_API_VERSION, sizeof(vcard_api), vcard_api_get_one, vcard_api_set };
    st->m = m;
    xmppd_module_set_data(m, st);
    st->store = xmppd_store_open(m, "vcard", XMPPD_STORE_KEYVAL);
    if (!st->store || xmppd_provide(m, "vcard", &st->api) < 0 ||
        xmppd_event_declare(m, VCARD_EVENT_CHANGED, XMPPD_EVENT_ALL,
                            "data: const vcard_change * (vcard_api.h): an account's vCard was "
                            "stored or removed") < 0 ||
        xmppd_iq_handle(m, "get", VCARD_NS, XMPPD_IQ_BARE, vcard_on_get, st) < 0 ||
        xmppd_iq_handle(m, "set", VCARD_NS, XMPPD_IQ_BARE, vcard_on_set, st) < 0 ||
        xmppd_disco_feature(m, VCARD_NS) < 0) {
        vcard_unload(m);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(vcard,
    .version = "1.0",
    .summary = "XEP-0054 vcard-temp: store and serve accounts' vCards",
    .specs = (const char *const[]){ "XEP-0054", NULL },
    .options = vcard_options,
    .conf_size = sizeof(vcard_conf),
    .load = vcard_load,
    .unload = vcard_unload);
