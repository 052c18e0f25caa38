/* XEP-0054 vcard-temp: an account sets its own vCard; anyone may read a
 * local account's vCard (to = its bare JID; no 'to' reads one's own).
 * Stored as the serialised <vCard/> (a JSON string) in keyval store
 * "vcard", key "". Other modules read and write vCards through the API
 * "vcard" and hear of changes by "vcard-changed" (vcard_api.h).
 *
 * A vCard source (vcard_source.h, e.g. vcard_ldap) may stand beside
 * storage: then every vCard served goes through it (it merges its fields
 * into the stored vCard, or replaces it), and a read-only source makes
 * sets <not-allowed/>. */
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "vcard_api.h"
#include "vcard_source.h"

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

static const vcard_source *vcard_src(const vcard_state *st)
{
    const vcard_source *s = xmppd_use(xmppd_module_host(st->m), "vcard_source");
    return s && s->version >= VCARD_SOURCE_VERSION && s->size >= sizeof(vcard_source) ? s : NULL;
}

/* ---- the served vCard: stored, then through the source ------------------- */

enum { VC_OK = 0, VC_FAILED = -1, VC_CANCELLED = -2 /* this module unloads */ };

typedef struct vc_load vc_load;
/* served: borrowed for the call (NULL: none); the loader frees l after. */
typedef void (*vc_loaded_fn)(vc_load *l, int status, const xmppd_stanza *served);

struct vc_load {
    vcard_state *st;
    char *user;
    vc_loaded_fn fn;
    void *ud;
};

static void vc_load_end(vc_load *l, int status, const xmppd_stanza *served)
{
    l->fn(l, status, served);
    free(l->user);
    free(l);
}

static void vc_on_served(int status, const xmppd_stanza *vc, void *ud)
{
    vc_load *l = ud;
    if (status == VCARD_SOURCE_OK)
        vc_load_end(l, VC_OK, vc);
    else
        vc_load_end(l, status == VCARD_SOURCE_CANCELLED ? VC_CANCELLED : VC_FAILED, NULL);
}

static void vc_on_stored(int status, json_t *value, void *ud)
{
    vc_load *l = ud;
    if (status == XMPPD_STORE_CANCELLED || (status != XMPPD_STORE_OK && status != XMPPD_STORE_NOT_FOUND)) {
        vc_load_end(l, status == XMPPD_STORE_CANCELLED ? VC_CANCELLED : VC_FAILED, NULL);
        return;
    }
    const char *xml = json_string_value(value);
    xmppd_stanza *stored = xml ? xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT) : NULL;
    if (xml && !stored)
        xmppd_log(l->st->m, XMPPD_LOG_WARN, "stored vCard of %s does not parse", l->user);
    const vcard_source *src = vcard_src(l->st);
    if (src)
        src->serve(src, l->st->m, l->user, stored, vc_on_served, l);
    else
        vc_load_end(l, VC_OK, stored);
    xmppd_stanza_unref(stored);
}

/* Loads the vCard served for user; fn runs exactly once, later. -1 on
 * OOM (fn never runs). */
static int vc_load_start(vcard_state *st, const char *user, vc_loaded_fn fn, void *ud)
{
    vc_load *l = calloc(1, sizeof(*l));
    if (!l || !(l->user = strdup(user))) {
        free(l);
        return -1;
    }
    l->st = st;
    l->fn = fn;
    l->ud = ud;
    xmppd_kv_get(st->store, user, "", vc_on_stored, l);
    return 0;
}

/* ---- "vcard-changed" ------------------------------------------------------ */

static void vc_notify(vcard_state *st, const char *user, const xmppd_stanza *vc, bool by_module)
{
    vcard_change ch = { .user = user, .vcard = vc && xmppd_stanza_first(vc) ? vc : NULL, .by_module = by_module };
    xmppd_notify(xmppd_module_host(st->m), VCARD_EVENT_CHANGED, NULL, &ch);
}

static void vc_changed_loaded(vc_load *l, int status, const xmppd_stanza *served)
{
    if (status == VC_OK)
        vc_notify(l->st, l->user, served, *(bool *)l->ud);
}

/* user's vCard changed: tell with what is served now. A source merges
 * the change first (later); without one the stored vCard is it. */
static void vc_changed(vcard_state *st, const char *user, const xmppd_stanza *stored, bool by_module)
{
    static bool yes = true, no = false;
    if (!vcard_src(st))
        vc_notify(st, user, stored, by_module);
    else if (vc_load_start(st, user, vc_changed_loaded, by_module ? &yes : &no) < 0)
        xmppd_log(st->m, XMPPD_LOG_ERROR, "out of memory: change of %s's vCard not announced", user);
}

/* The source's part of a vCard changed. */
static int vc_on_source_changed(xmppd_event *ev, void *ud)
{
    if (ev->data)
        vc_changed(ud, ev->data, NULL, true);
    return XMPPD_PASS;
}

/* ---- get ------------------------------------------------------------------- */

/* The account an IQ to a bare JID is about: its 'to', or the sender's own. */
static const char *vcard_target(const xmppd_event *ev)
{
    if (ev->to)
        return ev->to->node;
    return ev->from ? ev->from->node : NULL;
}

/* Replies to p with a copy of vcard (NULL: an empty <vCard/>). */
static void vcard_send(xmppd_pending *p, const xmppd_stanza *vcard)
{
    xmppd_stanza *reply = xmppd_stanza_reply(xmppd_pending_event(p)->stanza);
    xmppd_stanza *vc = vcard ? xmppd_stanza_copy(vcard) : xmppd_stanza_new("vCard", VCARD_NS);
    if (!reply || !vc || !xmppd_stanza_add(reply, vc)) {
        if (!reply)
            xmppd_stanza_unref(vc);
        xmppd_stanza_unref(reply);
        reply = NULL; /* answers internal-server-error */
    }
    xmppd_pending_reply(p, reply);
}

static void vcard_on_exists(int result, void *ud)
{
    xmppd_pending *p = ud;
    if (result == XMPPD_AUTH_CANCELLED)
        xmppd_pending_drop(p);
    else if (result == XMPPD_AUTH_OK)
        vcard_send(p, NULL);
    else
        xmppd_pending_error(p, NULL, result == XMPPD_AUTH_USER_UNKNOWN ? "service-unavailable"
                                                                         : "internal-server-error", NULL);
}

static void vcard_iq_loaded(vc_load *l, int status, const xmppd_stanza *served)
{
    xmppd_pending *p = l->ud;
    const xmppd_event *ev = xmppd_pending_event(p);
    if (status == VC_CANCELLED) {
        xmppd_pending_drop(p);
    } else if (status != VC_OK) {
        xmppd_pending_error(p, "wait", "internal-server-error", NULL);
    } else if (served) {
        vcard_send(p, served);
    } else if (ev->from && ev->from->node && strcmp(ev->from->node, l->user) == 0 &&
               strcmp(ev->from->domain, xmppd_host_name(ev->host)) == 0) {
        vcard_send(p, NULL); /* one's own: empty */
    } else {
        /* RFC 6121 §8.5.1: none for an account that does not exist */
        xmppd_auth_exists(l->st->m, ev->host, l->user, vcard_on_exists, p);
    }
}

static int vcard_on_get(xmppd_event *ev, void *ud)
{
    vcard_state *st = ud;
    const char *user = vcard_target(ev);
    if (!user)
        return xmppd_reply_error(ev, NULL, "bad-request", NULL);
    xmppd_pending *p = xmppd_pending_new(ev);
    if (!p)
        return XMPPD_FAIL;
    if (vc_load_start(st, user, vcard_iq_loaded, p) < 0) {
        xmppd_pending_drop(p);
        return XMPPD_FAIL;
    }
    return XMPPD_HANDLED;
}

/* ---- set ------------------------------------------------------------------- */

/* A write in flight: who asked (an IQ or a module), and what to tell. */
typedef struct vcard_write {
    vcard_state *st;
    char *user;
    xmppd_stanza *vcard;    /* the new one, NULL: removed */
    xmppd_pending *p;       /* an IQ to answer, or NULL */
    vcard_done_cb cb;       /* a module to tell, or NULL */
    void *ud;
    xmppd_call *call;       /* that module's call */
    bool by_module;         /* written through the API */
} vcard_write;

static void vcard_write_free(vcard_write *w)
{
    xmppd_pending_drop(w->p);
    xmppd_call_finish(w->call);
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
    bool live = xmppd_call_finish(w->call);
    w->call = NULL;
    if (w->cb && live)
        w->cb(ok ? 0 : -1, w->ud);
    if (ok)
        vc_changed(w->st, w->user, w->vcard, w->by_module);
    vcard_write_free(w);
}

/* Stores vc (borrowed; NULL or empty: removes) as user's vCard; w carries
 * who to tell. -1 (nothing written, w untouched) when it is too large, the
 * source is read-only, or on OOM, with *cond_r the error condition. */
static int vcard_store(vcard_state *st, const char *user, const xmppd_stanza *vc, vcard_write *w,
                       const char **cond_r)
{
    const vcard_conf *c = xmppd_module_conf(st->m);
    const vcard_source *src = vcard_src(st);
    if (src && src->read_only(src)) {
        *cond_r = "not-allowed";
        return -1;
    }
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

static const char *vcard_error_text(const char *cond)
{
    if (strcmp(cond, "not-acceptable") == 0)
        return "The vCard is too large";
    if (strcmp(cond, "not-allowed") == 0)
        return "vCards come from the directory";
    return NULL;
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
        return xmppd_reply_error(ev, NULL, cond, vcard_error_text(cond));
    }
    return XMPPD_HANDLED;
}

/* ---- API for other modules (vcard_api.h) ------------------------------------------ */

typedef struct vcard_api_get {
    vcard_get_cb cb;
    void *ud;
    xmppd_call *call;
} vcard_api_get;

static void vcard_api_get_cancelled(void *p)
{
    vcard_api_get *g = p;
    g->cb(VCARD_CANCELLED, NULL, g->ud);
}

static void vcard_api_loaded(vc_load *l, int status, const xmppd_stanza *served)
{
    vcard_api_get *g = l->ud;
    if (xmppd_call_finish(g->call))
        g->cb(status == VC_OK ? 0 : -1, served, g->ud);
    free(g);
}

static void vcard_api_get_one(const vcard_api *api, xmppd_module *caller, const char *user, vcard_get_cb cb,
                              void *ud)
{
    vcard_state *st = (vcard_state *)api;
    vcard_api_get *g = calloc(1, sizeof(*g));
    if (g) {
        *g = (vcard_api_get){ cb, ud, xmppd_call_new(caller, vcard_api_get_cancelled, g) };
        if (g->call && vc_load_start(st, user, vcard_api_loaded, g) == 0)
            return;
        xmppd_call_finish(g->call);
        free(g);
    }
    cb(-1, NULL, ud); /* cannot even be kept */
}

static void vcard_api_set_cancelled(void *p)
{
    vcard_write *w = p;
    if (w->cb)
        w->cb(VCARD_CANCELLED, w->ud);
    w->cb = NULL;
}

static void vcard_api_set(const vcard_api *api, xmppd_module *caller, const char *user,
                          const xmppd_stanza *vcard, vcard_done_cb cb, void *ud)
{
    vcard_state *st = (vcard_state *)api;
    vcard_write *w = calloc(1, sizeof(*w));
    const char *cond;
    if (w && !(w->call = xmppd_call_new(caller, vcard_api_set_cancelled, w))) {
        free(w);
        w = NULL;
    }
    if (!w || vcard_store(st, user, vcard, w, &cond) < 0) {
        if (w) {
            xmppd_call_finish(w->call);
            free(w);
        }
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
                            "stored or removed, or its source's part changed") < 0 ||
        xmppd_hook(m, VCARD_SOURCE_EVENT_CHANGED, vc_on_source_changed, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_iq_handle(m, "get", VCARD_NS, XMPPD_IQ_BARE, vcard_on_get, st) < 0 ||
        xmppd_iq_handle(m, "set", VCARD_NS, XMPPD_IQ_BARE, vcard_on_set, st) < 0 ||
        xmppd_disco_feature(m, VCARD_NS) < 0) {
        vcard_unload(m);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(vcard,
    .version = "1.1",
    .summary = "XEP-0054 vcard-temp: store and serve accounts' vCards (with an optional source such as a directory)",
    .specs = (const char *const[]){ "XEP-0054", NULL },
    .options = vcard_options,
    .conf_size = sizeof(vcard_conf),
    .load = vcard_load,
    .unload = vcard_unload);
