/* mod_blocking: XEP-0191 Blocking Command. The protocol only: the blocklist
 * is a view of the account's default privacy list, kept and enforced by
 * mod_privacy (privacy_api.h), as XEP-0191 §5 recommends. Blocking a JID
 * adds a jid/deny item for it at the top of the default list (creating a
 * list "blocklist" as the default when there is none); unblocking removes
 * such items. mod_privacy sends the presence §3.3/§3.4 ask for and fires
 * "blocklist-changed", which this module turns into pushes to every
 * resource that asked for the blocklist. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "../privacy/privacy_api.h"

#define NS_BLOCKING "urn:xmpp:blocking"
#define BL_ITEMS_MAX 1000 /* items in one block or unblock request */

typedef struct bl_mod {
    xmppd_module *m;
    xmppd_host *host;
    unsigned push_seq;
} bl_mod;

/* Session slot marker: this resource requested the blocklist (§3.2); the
 * session mark tells the other nodes of a cluster. */
static const char bl_interested = 1;
#define BL_MARK "blocking"

static bool bl_is_interested(const bl_mod *mod, const xmppd_session *s)
{
    return xmppd_session_remote(s) ? xmppd_session_marked(s, BL_MARK)
                                   : xmppd_session_get(s, mod->m) == &bl_interested;
}

static const privacy_api *bl_api(const bl_mod *mod)
{
    const privacy_api *api = xmppd_use(mod->host, "privacy");
    if (!api || api->version != PRIVACY_API_VERSION || api->size < sizeof(privacy_api))
        return NULL;
    return api;
}

/* A request waiting for the account's lists or for storage. */
typedef struct bl_req {
    bl_mod *mod;
    xmppd_session *sess; /* ref */
    xmppd_stanza *iq;    /* ref */
    char *node;
    char **jids;         /* set: prepared JIDs of the items */
    size_t n;
    bool block;
} bl_req;

static void bl_req_free(bl_req *q)
{
    xmppd_session_unref(q->sess);
    xmppd_stanza_unref(q->iq);
    for (size_t i = 0; i < q->n; i++)
        free(q->jids[i]);
    free(q->jids);
    free(q->node);
    free(q);
}

static void bl_req_send(bl_req *q, xmppd_stanza *reply)
{
    if (reply && !xmppd_session_closed(q->sess))
        xmppd_session_send(q->sess, reply);
    xmppd_stanza_unref(reply);
}

static void bl_req_error(bl_req *q, const char *cond)
{
    bl_req_send(q, xmppd_stanza_error_reply(q->iq, NULL, cond, NULL));
}

static bl_req *bl_req_new(bl_mod *mod, xmppd_event *ev)
{
    bl_req *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->mod = mod;
    q->sess = xmppd_session_ref(ev->session);
    q->iq = xmppd_stanza_ref(ev->stanza);
    if (!(q->node = strdup(ev->from->node))) {
        bl_req_free(q);
        return NULL;
    }
    return q;
}

/* §3.2: only the account itself, addressed to its bare JID or nothing. */
static bool bl_own_request(const xmppd_event *ev)
{
    if (!ev->session || !ev->from || !ev->from->node)
        return false;
    return !ev->to || (!ev->to->resource && xmppd_jid_bare_equal(ev->to, ev->from));
}

/* ---- blocklist retrieval (§3.2) ----------------------------------------- */

static void bl_add_item(const char *jid, void *ud)
{
    xmppd_stanza_set_attr(xmppd_stanza_tag(ud, "item", NS_BLOCKING), "jid", jid);
}

static void bl_get_loaded(bool ok, void *ud)
{
    bl_req *q = ud;
    const privacy_api *api = bl_api(q->mod);
    if (!ok || !api) {
        bl_req_error(q, "internal-server-error");
        bl_req_free(q);
        return;
    }
    xmppd_stanza *reply = xmppd_stanza_reply(q->iq);
    xmppd_stanza *list = reply ? xmppd_stanza_tag(reply, "blocklist", NS_BLOCKING) : NULL;
    if (list) {
        api->blocklist(api, q->node, bl_add_item, list);
        if (!xmppd_session_closed(q->sess)) {
            xmppd_session_set(q->sess, q->mod->m, (void *)&bl_interested);
            xmppd_session_mark(q->sess, BL_MARK, true);
        }
    }
    bl_req_send(q, reply);
    bl_req_free(q);
}

static int bl_on_get(xmppd_event *ev, void *ud)
{
    bl_mod *mod = ud;
    if (!bl_own_request(ev))
        return xmppd_reply_error(ev, "auth", "forbidden", NULL);
    xmppd_stanza *c = xmppd_stanza_first(ev->stanza);
    if (!c || strcmp(xmppd_stanza_name(c), "blocklist") != 0)
        return xmppd_reply_error(ev, "modify", "bad-request", NULL);
    const privacy_api *api = bl_api(mod);
    if (!api)
        return xmppd_reply_error(ev, "cancel", "service-unavailable", NULL);
    bl_req *q = bl_req_new(mod, ev);
    if (!q)
        return XMPPD_FAIL;
    api->load(api, mod->m, q->node, bl_get_loaded, q);
    return XMPPD_HANDLED;
}

/* ---- block and unblock (§3.3 - §3.5) ---------------------------------------- */

static void bl_set_saved(int status, void *ud)
{
    bl_req *q = ud;
    if (status != 0)
        bl_req_error(q, "internal-server-error");
    else
        bl_req_send(q, xmppd_stanza_reply(q->iq));
    bl_req_free(q);
}

static void bl_set_loaded(bool ok, void *ud)
{
    bl_req *q = ud;
    const privacy_api *api = bl_api(q->mod);
    if (!ok || !api) {
        bl_req_error(q, "internal-server-error");
        bl_req_free(q);
        return;
    }
    const char *cond = NULL;
    int rc = q->block ? api->block(api, q->mod->m, q->node, (const char *const *)q->jids, q->n, bl_set_saved, q, &cond)
                      : api->unblock(api, q->mod->m, q->node, (const char *const *)q->jids, q->n, bl_set_saved, q,
                                     &cond);
    if (rc < 0) {
        bl_req_error(q, cond ? cond : "internal-server-error");
        bl_req_free(q);
    }
}

/* Reads the <item jid=.../> children of el into q; NULL or the error. */
static const char *bl_parse_items(const xmppd_stanza *el, bl_req *q)
{
    size_t n = 0;
    for (xmppd_stanza *c = xmppd_stanza_first(el); c; c = xmppd_stanza_next(c))
        n++;
    if (n > BL_ITEMS_MAX)
        return "resource-constraint";
    if (!(q->jids = calloc(n + 1, sizeof(char *))))
        return "internal-server-error";
    for (xmppd_stanza *c = xmppd_stanza_first(el); c; c = xmppd_stanza_next(c)) {
        const char *js = xmppd_stanza_attr(c, "jid");
        if (strcmp(xmppd_stanza_name(c), "item") != 0 || !js)
            return "bad-request";
        xmppd_jid *j = xmppd_jid_parse(js);
        if (!j)
            return "jid-malformed";
        q->jids[q->n] = strdup(j->full);
        xmppd_jid_free(j);
        if (!q->jids[q->n])
            return "internal-server-error";
        q->n++;
    }
    return NULL;
}

static int bl_on_set(xmppd_event *ev, void *ud)
{
    bl_mod *mod = ud;
    if (!bl_own_request(ev))
        return xmppd_reply_error(ev, "auth", "forbidden", NULL);
    xmppd_stanza *c = xmppd_stanza_first(ev->stanza);
    const char *name = c ? xmppd_stanza_name(c) : "";
    bool block = strcmp(name, "block") == 0;
    if (!block && strcmp(name, "unblock") != 0)
        return xmppd_reply_error(ev, "modify", "bad-request", NULL);
    const privacy_api *api = bl_api(mod);
    if (!api)
        return xmppd_reply_error(ev, "cancel", "service-unavailable", NULL);
    bl_req *q = bl_req_new(mod, ev);
    if (!q)
        return XMPPD_FAIL;
    q->block = block;
    const char *err = bl_parse_items(c, q);
    if (!err && block && q->n == 0)
        err = "bad-request"; /* §3.3: a block names at least one JID */
    if (err) {
        bl_req_free(q);
        return xmppd_reply_error(ev, NULL, err, NULL);
    }
    api->load(api, q->mod->m, q->node, bl_set_loaded, q);
    return XMPPD_HANDLED;
}

/* ---- pushes ------------------------------------------------------------------ */

typedef struct bl_push_ctx {
    bl_mod *mod;
    const xmppd_stanza *iq; /* template without 'to' */
} bl_push_ctx;

static int bl_push_one(xmppd_session *s, void *ud)
{
    bl_push_ctx *c = ud;
    if (!bl_is_interested(c->mod, s) || xmppd_session_closed(s))
        return 0;
    xmppd_stanza *iq = xmppd_stanza_copy(c->iq);
    if (!iq)
        return 0;
    char id[32];
    snprintf(id, sizeof(id), "block%u", ++c->mod->push_seq);
    xmppd_stanza_set_attr(iq, "id", id);
    xmppd_stanza_set_attr(iq, "to", xmppd_session_jid(s)->full);
    xmppd_session_send(s, iq);
    xmppd_stanza_unref(iq);
    return 0;
}

static void bl_push(bl_mod *mod, const char *node, const char *what, const char *const *jids, size_t n)
{
    xmppd_stanza *iq = xmppd_stanza_new("iq", XMPPD_NS_CLIENT);
    if (!iq)
        return;
    xmppd_stanza_set_attr(iq, "type", "set");
    xmppd_stanza *el = xmppd_stanza_tag(iq, what, NS_BLOCKING);
    for (size_t i = 0; el && i < n; i++)
        bl_add_item(jids[i], el);
    bl_push_ctx c = { mod, iq };
    xmppd_user_sessions(mod->host, node, bl_push_one, &c);
    xmppd_stanza_unref(iq);
}

static int bl_on_changed(xmppd_event *ev, void *ud)
{
    bl_mod *mod = ud;
    const privacy_blocklist_change *ch = ev->data;
    if (!ch || !ch->node)
        return XMPPD_PASS;
    if (ch->n_blocked)
        bl_push(mod, ch->node, "block", ch->blocked, ch->n_blocked);
    if (ch->all_unblocked && ch->n_blocked == 0)
        bl_push(mod, ch->node, "unblock", NULL, 0); /* §3.5 */
    else if (ch->n_unblocked)
        bl_push(mod, ch->node, "unblock", ch->unblocked, ch->n_unblocked);
    return XMPPD_PASS;
}

static int bl_on_closed(xmppd_event *ev, void *ud)
{
    bl_mod *mod = ud;
    if (ev->session)
        xmppd_session_set(ev->session, mod->m, NULL);
    return XMPPD_PASS;
}

/* ---- lifecycle ---------------------------------------------------------------- */

static int bl_load(xmppd_module *m, const void *conf)
{
    bl_mod *mod = calloc(1, sizeof(*mod));
    if (!mod)
        return -1;
    mod->m = m;
    mod->host = xmppd_module_host(m);
    xmppd_module_set_data(m, mod);
    if (xmppd_iq_handle(m, "get", NS_BLOCKING, XMPPD_IQ_BARE, bl_on_get, mod) < 0 ||
        xmppd_iq_handle(m, "set", NS_BLOCKING, XMPPD_IQ_BARE, bl_on_set, mod) < 0 ||
        xmppd_hook(m, "blocklist-changed", bl_on_changed, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "session-closed", bl_on_closed, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_disco_feature(m, NS_BLOCKING) < 0) {
        free(mod); /* a refused load gets no unload() call */
        xmppd_module_set_data(m, NULL);
        return -1;
    }
    return 0;
}

static void bl_unload(xmppd_module *m)
{
    /* Session slots hold a static marker: nothing to free. */
    free(xmppd_module_data(m));
    xmppd_module_set_data(m, NULL);
}

XMPPD_MODULE(blocking,
    .version = "1.0",
    .summary = "Blocking command (XEP-0191) on top of the privacy module's lists",
    .depends = (const char *const[]){ "privacy", NULL },
    .specs = (const char *const[]){ "XEP-0191", NULL },
    .load = bl_load,
    .unload = bl_unload);
