/* XEP-0054 vcard-temp: an account sets its own vCard; anyone may read a
 * local account's vCard (to = its bare JID; no 'to' reads one's own).
 * Stored as the serialised <vCard/> (a JSON string) in keyval store
 * "vcard", key "". */
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#define VCARD_NS "vcard-temp"

typedef struct vcard_conf {
    long long max_size; /* bytes of the serialised <vCard/> */
} vcard_conf;

static const xmppd_option vcard_options[] = {
    { "max_size", XMPPD_OPT_SIZE, XMPPD_OFF(vcard_conf, max_size), "64k", 256, 16 * 1024 * 1024,
      NULL, 0, "largest vCard (serialised XML, photo included) an account may store" },
    { NULL }
};

/* Module data. */
typedef struct vcard_state {
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

static void vcard_on_saved(int status, void *ud)
{
    vcard_req *r = ud;
    if (status == XMPPD_STORE_OK)
        xmppd_pending_reply(r->p, xmppd_stanza_reply(xmppd_pending_event(r->p)->stanza));
    else
        xmppd_pending_error(r->p, NULL, "internal-server-error", NULL);
    free(r);
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
    const vcard_conf *c = xmppd_module_conf(st->m);
    if (!vcard_own(ev))
        return xmppd_reply_error(ev, NULL, "forbidden", "Only your own vCard can be changed");
    xmppd_stanza *vc = xmppd_stanza_child(ev->stanza, "vCard", VCARD_NS);
    if (!vc)
        return xmppd_reply_error(ev, NULL, "bad-request", NULL);
    size_t len;
    char *xml = xmppd_stanza_to_string(vc, XMPPD_NS_CLIENT, &len);
    if (!xml)
        return XMPPD_FAIL;
    if ((long long)len > c->max_size) {
        free(xml);
        return xmppd_reply_error(ev, NULL, "not-acceptable", "The vCard is too large");
    }
    json_t *v = json_string(xml);
    free(xml);
    vcard_req *r = v ? vcard_req_new(st, ev) : NULL;
    if (!r) {
        json_decref(v);
        return XMPPD_FAIL;
    }
    /* An empty <vCard/> removes the stored one. */
    xmppd_kv_set(st->store, ev->from->node, "", xmppd_stanza_first(vc) ? v : NULL, vcard_on_saved, r);
    json_decref(v);
    return XMPPD_HANDLED;
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
    st->m = m;
    xmppd_module_set_data(m, st);
    st->store = xmppd_store_open(m, "vcard", XMPPD_STORE_KEYVAL);
    if (!st->store ||
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
