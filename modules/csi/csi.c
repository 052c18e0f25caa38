/* XEP-0352 Client State Indication: while a client says it is inactive
 * (a phone in a pocket), the server holds back what the user does not need
 * at once, so the radio and the app sleep.
 *
 * <inactive/> and <active/> reach the module as top-level elements of the
 * bound stream ("stanza-in"), or inline in a Bind2 request. While inactive,
 * "deliver" holds (xmppd_hold) every stanza csi_classify() calls held, in
 * order, a newer presence or chat state of a sender replacing its older
 * one. Everything held goes out, in order, before an urgent stanza, on
 * <active/>, when max_queue stanzas wait, and when the session hibernates
 * (into mod_smacks' queue). A closed session drops what it held (presence
 * and chat states: nothing a sender needs an error for). */
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "csi_rules.h"

typedef struct csi_conf {
    long long max_queue;
} csi_conf;

static const xmppd_option csi_options[] = {
    { "max_queue", XMPPD_OPT_INT, XMPPD_OFF(csi_conf, max_queue), "256", 1, 10000,
      .doc = "stanzas held for an inactive client before they are all sent anyway" },
    { NULL }
};

/* One session's state: its slot (plain heap data, kept across reloads). */
typedef struct csi_sess {
    bool inactive;
    bool flushing; /* sending what was held: deliveries meanwhile pass */
    bool closed;   /* the session ended during a flush: the flush frees this */
    csi_queue *q;  /* xmppd_held handles; NULL when nothing is held */
} csi_sess;

typedef struct csi_mod {
    xmppd_module *m;
    const csi_conf *conf;
    xmppd_host *host;
} csi_mod;

static csi_sess *csi_slot(csi_mod *mod, xmppd_session *s, bool create)
{
    csi_sess *cs = xmppd_session_get(s, mod->m);
    if (!cs && create && (cs = calloc(1, sizeof(*cs)))) {
        xmppd_session_set(s, mod->m, cs);
        if (xmppd_session_get(s, mod->m) != cs) {
            free(cs);
            cs = NULL;
        }
    }
    return cs;
}

static void csi_drop_all(csi_sess *cs)
{
    xmppd_held *h;
    while (cs->q && (h = csi_queue_pop(cs->q)))
        xmppd_held_free(h);
    csi_queue_free(cs->q);
    cs->q = NULL;
}

/* Everything held goes on, oldest first. Deliveries while it runs pass
 * (after a reload a resumed stanza comes back through the new instance's
 * handler); the session may end meanwhile (a hibernated one whose stream
 * management queue overflows), and then the flush frees its state. */
static void csi_flush(csi_sess *cs)
{
    if (!cs->q || cs->flushing)
        return;
    csi_queue *q = cs->q;
    cs->q = NULL;
    cs->flushing = true;
    xmppd_held *h;
    while ((h = csi_queue_pop(q)))
        xmppd_held_resume(h);
    csi_queue_free(q);
    cs->flushing = false;
    if (cs->closed) {
        csi_drop_all(cs);
        free(cs);
    }
}

/* ---- holding ------------------------------------------------------------------------- */

static int csi_on_deliver(xmppd_event *ev, void *ud)
{
    csi_mod *mod = ud;
    xmppd_session *s = ev->data;
    csi_sess *cs = s ? xmppd_session_get(s, mod->m) : NULL;
    if (!cs || cs->flushing)
        return XMPPD_PASS;
    char key[CSI_KEY_MAX];
    /* A hibernated session's stanzas belong in stream management's queue,
     * which owns, bounds and resends them. */
    if (!cs->inactive || xmppd_session_detached(s) || csi_classify(ev->stanza, key, sizeof key) == CSI_URGENT) {
        csi_flush(cs);
        return XMPPD_PASS;
    }
    xmppd_held *h = (cs->q || (cs->q = csi_queue_new())) ? xmppd_hold(ev) : NULL;
    void *replaced;
    if (!h || csi_queue_push(cs->q, h, key, &replaced) < 0) {
        xmppd_held_free(h);
        csi_flush(cs); /* out of memory: no holding back, nothing lost */
        return XMPPD_PASS;
    }
    xmppd_held_free(replaced); /* an older presence or chat state of the same sender */
    if (csi_queue_len(cs->q) >= (size_t)mod->conf->max_queue)
        csi_flush(cs);
    return XMPPD_HANDLED;
}

static void csi_set_state(csi_mod *mod, xmppd_session *s, bool inactive)
{
    csi_sess *cs = csi_slot(mod, s, inactive);
    if (!cs)
        return; /* active without state, or no memory to hold anything */
    cs->inactive = inactive;
    if (!inactive)
        csi_flush(cs);
}

/* XEP-0352 §5.2: <inactive/> and <active/>; no answer. Acting before the
 * next element is read keeps the in-order rule (§6.1): on <active/> what
 * was held is written before anything the client sends next is handled. */
static int csi_on_stanza_in(xmppd_event *ev, void *ud)
{
    int state = csi_inline_state(ev->stanza);
    if (state < 0)
        return XMPPD_PASS;
    csi_set_state(ud, ev->session, state == 1);
    return XMPPD_HANDLED;
}

static int csi_on_features(xmppd_event *ev, void *ud)
{
    (void)ud;
    if (ev->session && xmppd_session_authenticated(ev->session))
        xmppd_stanza_tag(ev->stanza, "csi", CSI_NS);
    return XMPPD_PASS;
}

/* Bind2 (XEP-0386): the client may state its CSI state in its bind
 * request; the kernel fires these two events. */
static int csi_on_bind2_features(xmppd_event *ev, void *ud)
{
    (void)ud;
    xmppd_stanza *f = ev->stanza ? xmppd_stanza_tag(ev->stanza, "feature", NULL) : NULL;
    if (f)
        xmppd_stanza_set_attr(f, "var", CSI_NS);
    return XMPPD_PASS;
}

static int csi_on_bind2_inline(xmppd_event *ev, void *ud)
{
    int state = csi_inline_state(ev->stanza);
    if (state >= 0 && ev->session)
        csi_set_state(ud, ev->session, state == 1);
    return XMPPD_PASS;
}

/* ---- hibernation and the end ------------------------------------------------------------ */

/* The kernel fires "session-detach" before it knows whether the session
 * hibernates, with no connection to write to: the flush comes a loop turn
 * later, into the hibernated session (mod_smacks' queue, in order). */
typedef struct csi_detached {
    csi_mod *mod;
    xmppd_session *s; /* ref */
} csi_detached;

static void csi_detached_flush(void *ud)
{
    csi_detached *d = ud;
    csi_sess *cs = xmppd_session_closed(d->s) ? NULL : xmppd_session_get(d->s, d->mod->m);
    if (cs)
        csi_flush(cs);
    xmppd_session_unref(d->s);
    free(d);
}

static void csi_detached_cancel(void *ud)
{
    csi_detached *d = ud;
    xmppd_session_unref(d->s);
    free(d);
}

static int csi_on_detach(xmppd_event *ev, void *ud)
{
    csi_mod *mod = ud;
    csi_sess *cs = xmppd_session_get(ev->session, mod->m);
    csi_detached *d = cs && cs->q ? malloc(sizeof(*d)) : NULL;
    if (!d)
        return XMPPD_PASS;
    *d = (csi_detached){ mod, xmppd_session_ref(ev->session) };
    if (xmppd_defer(mod->m, csi_detached_flush, csi_detached_cancel, d) < 0)
        csi_detached_cancel(d);
    return XMPPD_PASS;
}

static int csi_on_closed(xmppd_event *ev, void *ud)
{
    csi_mod *mod = ud;
    csi_sess *cs = xmppd_session_get(ev->session, mod->m);
    if (!cs)
        return XMPPD_PASS;
    xmppd_session_set(ev->session, mod->m, NULL);
    if (cs->flushing) {
        cs->closed = true; /* csi_flush frees it */
        return XMPPD_PASS;
    }
    csi_drop_all(cs);
    free(cs);
    return XMPPD_PASS;
}

/* ---- module --------------------------------------------------------------------------------- */

/* A plain unload sends what is held (nothing is lost when CSI is switched
 * off). After a reload the slots belong to the new instance: none here. */
static int csi_release(xmppd_session *s, void *ud)
{
    csi_mod *mod = ud;
    csi_sess *cs = xmppd_session_get(s, mod->m);
    if (!cs)
        return 0;
    /* no hook of this instance runs any more: the session cannot close
     * under the flush without the state being freed here */
    xmppd_session_set(s, mod->m, NULL);
    csi_flush(cs);
    csi_drop_all(cs);
    free(cs);
    return 0;
}

static void csi_unload(xmppd_module *m)
{
    csi_mod *mod = xmppd_module_data(m);
    xmppd_host_sessions(mod->host, csi_release, mod);
    free(mod);
    xmppd_module_set_data(m, NULL);
}

static int csi_load(xmppd_module *m, const void *conf)
{
    csi_mod *mod = calloc(1, sizeof(*mod));
    if (!mod)
        return -1;
    mod->m = m;
    mod->conf = conf;
    mod->host = xmppd_module_host(m);
    xmppd_module_set_data(m, mod);
    if (xmppd_hook(m, "stanza-in", csi_on_stanza_in, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        /* after privacy and blocking dropped what the user never sees */
        xmppd_hook(m, "deliver", csi_on_deliver, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "stream-features", csi_on_features, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        /* before stream management keeps the session (it stops at HANDLED) */
        xmppd_hook(m, "session-detach", csi_on_detach, XMPPD_PRIO_GUARD, mod) < 0 ||
        xmppd_hook(m, "session-closed", csi_on_closed, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "bind2-features", csi_on_bind2_features, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "bind2-inline", csi_on_bind2_inline, XMPPD_PRIO_DEFAULT, mod) < 0) {
        free(mod);
        xmppd_module_set_data(m, NULL);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(csi,
    .version = "1.0",
    .summary = "XEP-0352 client state indication: holds back presence and chat states for inactive clients",
    .specs = (const char *const[]){ "XEP-0352", NULL },
    .flags = XMPPD_MOD_KEEP_SLOTS, /* an inactive client stays inactive across a reload */
    .options = csi_options,
    .conf_size = sizeof(csi_conf),
    .load = csi_load,
    .unload = csi_unload);
