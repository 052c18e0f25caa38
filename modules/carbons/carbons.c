/* XEP-0280 Message Carbons (with XEP-0334 hints): every device of an
 * account sees both sides of its conversations.
 *
 * A session enables carbons with an IQ (or inline, in a Bind2 request);
 * the flag lives in its slot. Copies are made where the kernel knows who
 * got what:
 *   - "pre-route" (low priority, after filters decided): a client's
 *     eligible message to someone else goes, wrapped in <sent/>, to the
 *     account's other enabled sessions;
 *   - "message/delivered": a message that reached some sessions of an
 *     account goes, wrapped in <received/>, to its enabled sessions that
 *     did not get it (a message between two resources of one account is a
 *     <sent/> copy for the third ones);
 * Offline and archive deliveries go straight to a session and fire no
 * "message/delivered": they are never copied.
 * Clients must be able to trust a carbon (XEP-0280 §11): a message carrying
 * <received/> or <sent/> that does not come from the recipient's own bare
 * JID is refused before anything else sees it. <private/> is honoured and
 * stripped on delivery (§7). */
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "carbons_rules.h"

#define CB_TRACK 8       /* ids of copied messages remembered per sender session */
#define CB_ID_MAX 256    /* longer ids are not remembered */

/* One session's state: its slot (plain heap data, kept across reloads). */
typedef struct cb_sess {
    bool enabled;
    /* The last messages this session sent that were copied as <sent/>: an
     * error coming back for one of them is copied too (XEP-0280 §6). */
    struct {
        char *id;
        char *peer; /* bare JID the message went to */
    } sent[CB_TRACK];
    unsigned next;
} cb_sess;

typedef struct cb_mod {
    xmppd_module *m;
    xmppd_host *host;
    size_t n_enabled; /* sessions with carbons on: none means nothing to copy */
} cb_mod;

/* ---- session state ------------------------------------------------------------ */

static void cb_sess_free(cb_sess *cs)
{
    for (unsigned i = 0; i < CB_TRACK; i++) {
        free(cs->sent[i].id);
        free(cs->sent[i].peer);
    }
    free(cs);
}

static cb_sess *cb_slot(cb_mod *mod, xmppd_session *s, bool create)
{
    cb_sess *cs = xmppd_session_get(s, mod->m);
    if (!cs && create && (cs = calloc(1, sizeof(*cs)))) {
        xmppd_session_set(s, mod->m, cs);
        if (xmppd_session_get(s, mod->m) != cs) { /* the slot could not grow */
            free(cs);
            cs = NULL;
        }
    }
    return cs;
}

/* 0, or -1 when the state could not be kept. */
static int cb_set_enabled(cb_mod *mod, xmppd_session *s, bool on)
{
    cb_sess *cs = cb_slot(mod, s, on);
    if (!cs)
        return on ? -1 : 0;
    /* the mark tells the other nodes of a cluster (cb_enabled) */
    if (xmppd_session_mark(s, CARBONS_NS, on) < 0)
        return -1;
    if (on && !cs->enabled)
        mod->n_enabled++;
    else if (!on && cs->enabled)
        mod->n_enabled--;
    cs->enabled = on;
    return 0;
}

/* A session bound on another node has no slot here: its node published
 * whether it enabled carbons (a session mark), and the copy made here is
 * forwarded to it, where "deliver" (client state indication) runs. The
 * state lives with the session's registry entry rather than being decided
 * on its node so that a copy crosses nodes only for a session that wants
 * it, and the copy is made where the message is (who got it is known
 * only there). */
static bool cb_enabled(cb_mod *mod, const xmppd_session *s)
{
    if (xmppd_session_remote(s))
        return xmppd_session_marked(s, CARBONS_NS);
    const cb_sess *cs = xmppd_session_get(s, mod->m);
    return cs && cs->enabled;
}

/* Can any session have carbons on? The local count, and in a cluster any
 * remote session may. */
static bool cb_any(const cb_mod *mod)
{
    return mod->n_enabled > 0 || xmppd_cluster_node() != NULL;
}

static void cb_track(cb_mod *mod, xmppd_session *s, const char *id, const xmppd_jid *peer)
{
    cb_sess *cs = id && strlen(id) < CB_ID_MAX ? cb_slot(mod, s, true) : NULL;
    if (!cs)
        return;
    unsigned k = cs->next++ % CB_TRACK;
    free(cs->sent[k].id);
    free(cs->sent[k].peer);
    cs->sent[k].id = strdup(id);
    cs->sent[k].peer = strdup(peer->bare);
}

/* Is the error msg, delivered to s, about a message s sent that was
 * copied? Then it is eligible too. */
static bool cb_tracked_error(cb_mod *mod, const xmppd_session *s, const xmppd_stanza *msg,
                             const xmppd_jid *from)
{
    const char *type = xmppd_stanza_attr(msg, "type"), *id = xmppd_stanza_attr(msg, "id");
    const cb_sess *cs = xmppd_session_get(s, mod->m);
    if (!cs || !id || !from || !type || strcmp(type, "error") != 0)
        return false;
    for (unsigned i = 0; i < CB_TRACK; i++)
        if (cs->sent[i].id && cs->sent[i].peer && strcmp(cs->sent[i].id, id) == 0 &&
            strcmp(cs->sent[i].peer, from->bare) == 0)
            return true;
    return false;
}

/* ---- making copies ------------------------------------------------------------- */

typedef struct cb_copy {
    cb_mod *mod;
    const xmppd_stanza *msg;
    const char *dir;
    const char *account;               /* bare JID */
    xmppd_session *const *skip;        /* sessions that get the original */
    size_t n_skip;
    const xmppd_jid *sender;           /* full JID of the sending resource, or NULL */
    size_t made;
} cb_copy;

static int cb_copy_one(xmppd_session *s, void *ud)
{
    cb_copy *c = ud;
    const xmppd_jid *jid = xmppd_session_jid(s);
    if (!jid || !cb_enabled(c->mod, s) || xmppd_session_closed(s))
        return 0;
    for (size_t i = 0; i < c->n_skip; i++)
        if (c->skip[i] == s)
            return 0;
    if (c->sender && xmppd_jid_equal(c->sender, jid))
        return 0;
    xmppd_stanza *w = carbons_wrap(c->msg, c->dir, c->account, jid->full);
    if (!w) {
        xmppd_log(c->mod->m, XMPPD_LOG_WARN, "out of memory: no carbon for %s", jid->full);
        return 0;
    }
    /* "deliver" runs: client state indication may hold a copy back. */
    xmppd_session_send(s, w);
    xmppd_stanza_unref(w);
    c->made++;
    return 0;
}

/* Copies msg to the enabled sessions of account node; returns how many. */
static size_t cb_copy_all(cb_copy *c, const char *node)
{
    xmppd_jid *account = xmppd_jid_make(node, xmppd_host_name(c->mod->host), NULL);
    if (!account)
        return 0;
    c->account = account->bare;
    xmppd_user_sessions(c->mod->host, node, cb_copy_one, c);
    xmppd_jid_free(account);
    return c->made;
}

/* XEP-0280 §8: what a client sends to someone else, for its other
 * devices. Messages to its own account are copied at delivery, where it is
 * known which resources got them. */
static int cb_on_pre_route(xmppd_event *ev, void *ud)
{
    cb_mod *mod = ud;
    if (!cb_any(mod) || !ev->session || !ev->to || !ev->from || !ev->from->node ||
        strcmp(xmppd_stanza_name(ev->stanza), "message") != 0 ||
        xmppd_jid_bare_equal(ev->to, ev->from) || !carbons_eligible(ev->stanza))
        return XMPPD_PASS;
    cb_copy c = { .mod = mod, .msg = ev->stanza, .dir = "sent", .skip = &ev->session, .n_skip = 1 };
    if (cb_copy_all(&c, ev->from->node) > 0)
        cb_track(mod, ev->session, xmppd_stanza_attr(ev->stanza, "id"), ev->to);
    return XMPPD_PASS;
}

/* XEP-0280 §6: a message that reached some of an account's sessions, for
 * its enabled sessions that did not get it. */
static int cb_on_delivered(xmppd_event *ev, void *ud)
{
    cb_mod *mod = ud;
    const xmppd_delivery *d = ev->data;
    if (!cb_any(mod) || !d || !ev->to || !ev->to->node)
        return XMPPD_PASS;
    bool ok = carbons_eligible(ev->stanza);
    for (size_t i = 0; !ok && i < d->n; i++)
        ok = cb_tracked_error(mod, d->sessions[i], ev->stanza, ev->from);
    if (!ok)
        return XMPPD_PASS;
    bool own = ev->from && xmppd_jid_bare_equal(ev->from, ev->to);
    cb_copy c = { .mod = mod, .msg = ev->stanza, .dir = own ? "sent" : "received",
                  .skip = d->sessions, .n_skip = d->n, .sender = own ? ev->from : NULL };
    cb_copy_all(&c, ev->to->node);
    return XMPPD_PASS;
}

/* ---- trust (§11) and privacy (§7) ------------------------------------------------- */

/* A carbon reaches an account only from its own bare JID: the server makes
 * them and hands them to sessions directly, so one that is routed to the
 * account from anyone else is forged. */
static int cb_on_routed(xmppd_event *ev, void *ud)
{
    cb_mod *mod = ud;
    if (!carbons_wrapper_of(ev->stanza) || !ev->to ||
        (ev->from && !ev->from->resource && xmppd_jid_bare_equal(ev->from, ev->to)))
        return XMPPD_PASS;
    xmppd_log(mod->m, XMPPD_LOG_INFO, "refused a forged carbon from %s to %s",
              ev->from ? ev->from->full : "?", ev->to->full);
    return xmppd_reply_error(ev, "cancel", "forbidden",
                             "Carbon copies come only from the account's own bare JID (XEP-0280 section 11)");
}

/* §7: the receiving server removes <private/> before delivering. The
 * stanza may go to several sessions: the stripped one is a copy. */
static int cb_on_deliver(xmppd_event *ev, void *ud)
{
    (void)ud;
    xmppd_session *target = ev->data;
    if (!target || strcmp(xmppd_stanza_name(ev->stanza), "message") != 0 ||
        !carbons_private_of(ev->stanza))
        return XMPPD_PASS;
    xmppd_stanza *copy = xmppd_stanza_copy(ev->stanza);
    if (!copy)
        return XMPPD_PASS;
    xmppd_stanza_remove(copy, carbons_private_of(copy));
    xmppd_session_write(target, copy);
    xmppd_stanza_unref(copy);
    return XMPPD_HANDLED;
}

/* ---- enabling ----------------------------------------------------------------------- */

/* XEP-0280 §4/§5: <enable/> and <disable/>, only for the requester's own
 * session; repeating either is not an error (§10.1). */
static int cb_on_iq(xmppd_event *ev, void *ud)
{
    cb_mod *mod = ud;
    if (!ev->session || !ev->from || (ev->to && !xmppd_jid_bare_equal(ev->to, ev->from)))
        return xmppd_reply_error(ev, "cancel", "not-allowed", NULL);
    xmppd_stanza *c = xmppd_stanza_first(ev->stanza);
    const char *name = c ? xmppd_stanza_name(c) : "";
    if (strcmp(name, "enable") != 0 && strcmp(name, "disable") != 0)
        return xmppd_reply_error(ev, "modify", "bad-request", NULL);
    if (cb_set_enabled(mod, ev->session, strcmp(name, "enable") == 0) < 0)
        return xmppd_reply_error(ev, "wait", "resource-constraint", NULL);
    xmppd_stanza *r = xmppd_stanza_reply(ev->stanza);
    if (!r)
        return XMPPD_FAIL;
    xmppd_reply(ev, r);
    return XMPPD_HANDLED;
}

/* Bind2 (XEP-0386): carbons are one of the features a client may enable
 * in its bind request; the kernel fires these two events. */
static int cb_on_bind2_features(xmppd_event *ev, void *ud)
{
    (void)ud;
    xmppd_stanza *f = ev->stanza ? xmppd_stanza_tag(ev->stanza, "feature", NULL) : NULL;
    if (f)
        xmppd_stanza_set_attr(f, "var", CARBONS_NS);
    return XMPPD_PASS;
}

static int cb_on_bind2_inline(xmppd_event *ev, void *ud)
{
    cb_mod *mod = ud;
    if (ev->session && carbons_inline_enable(ev->stanza) && cb_set_enabled(mod, ev->session, true) < 0)
        xmppd_log(mod->m, XMPPD_LOG_WARN, "out of memory: carbons not enabled inline");
    return XMPPD_PASS;
}

static int cb_on_closed(xmppd_event *ev, void *ud)
{
    cb_mod *mod = ud;
    cb_sess *cs = xmppd_session_get(ev->session, mod->m);
    if (cs) {
        if (cs->enabled)
            mod->n_enabled--;
        xmppd_session_set(ev->session, mod->m, NULL);
        cb_sess_free(cs);
    }
    return XMPPD_PASS;
}

/* ---- module ---------------------------------------------------------------------------- */

static int cb_count(xmppd_session *s, void *ud)
{
    cb_mod *mod = ud;
    mod->n_enabled += !xmppd_session_remote(s) && cb_enabled(mod, s) ? 1 : 0;
    return 0;
}

/* After a reload the slots came from the old instance: count them. */
static void cb_ready(xmppd_module *m)
{
    cb_mod *mod = xmppd_module_data(m);
    mod->n_enabled = 0;
    xmppd_host_sessions(mod->host, cb_count, mod);
}

static int cb_free_slot(xmppd_session *s, void *ud)
{
    cb_mod *mod = ud;
    cb_sess *cs = xmppd_session_get(s, mod->m);
    if (cs) {
        xmppd_session_set(s, mod->m, NULL);
        cb_sess_free(cs);
    }
    return 0;
}

static void cb_unload(xmppd_module *m)
{
    cb_mod *mod = xmppd_module_data(m);
    /* After a reload the slots belong to the new instance and none is found
     * here; a plain unload frees them. */
    xmppd_host_sessions(mod->host, cb_free_slot, mod);
    free(mod);
    xmppd_module_set_data(m, NULL);
}

static int cb_load(xmppd_module *m, const void *conf)
{
    (void)conf;
    cb_mod *mod = calloc(1, sizeof(*mod));
    if (!mod)
        return -1;
    mod->m = m;
    mod->host = xmppd_module_host(m);
    xmppd_module_set_data(m, mod);
    if (xmppd_iq_handle(m, "set", CARBONS_NS, XMPPD_IQ_BARE, cb_on_iq, mod) < 0 ||
        /* after privacy, blocking and filters: only what is really routed */
        xmppd_hook(m, "pre-route", cb_on_pre_route, XMPPD_PRIO_FALLBACK, mod) < 0 ||
        xmppd_hook(m, "message/delivered", cb_on_delivered, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        /* before anything else looks at (or archives) a forged carbon */
        xmppd_hook(m, "message/bare", cb_on_routed, XMPPD_PRIO_GUARD + 100, mod) < 0 ||
        xmppd_hook(m, "message/full", cb_on_routed, XMPPD_PRIO_GUARD + 100, mod) < 0 ||
        /* last: client state indication may hold the message first */
        xmppd_hook(m, "deliver", cb_on_deliver, XMPPD_PRIO_FALLBACK, mod) < 0 ||
        xmppd_hook(m, "session-closed", cb_on_closed, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "bind2-features", cb_on_bind2_features, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "bind2-inline", cb_on_bind2_inline, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_disco_feature(m, CARBONS_NS) < 0) {
        free(mod);
        xmppd_module_set_data(m, NULL);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(carbons,
    .version = "1.0",
    .summary = "XEP-0280 message carbons: both sides of every conversation on every device",
    .specs = (const char *const[]){ "XEP-0280", "XEP-0297", "XEP-0334", NULL },
    .flags = XMPPD_MOD_KEEP_SLOTS, /* enabled sessions stay enabled across a reload */
    .load = cb_load,
    .ready = cb_ready,
    .unload = cb_unload);
