/* XEP-0199 XMPP Ping: answers pings to the host and to the requester's own
 * account, and (keepalive_interval > 0) pings sessions that have been idle
 * that long, closing those that stay silent for ping_timeout with the
 * stream error connection-timeout. Any stanza from the client counts as an
 * answer (the pong is one). */
#include <stdio.h>
#include <stdlib.h>

#include <xmppd/xmppd.h>

#define PING_NS "urn:xmpp:ping"

typedef struct ping_conf {
    long long keepalive_interval; /* ms; 0: no server-initiated pings */
    long long ping_timeout;       /* ms */
} ping_conf;

static const xmppd_option ping_options[] = {
    { "keepalive_interval", XMPPD_OPT_DURATION, XMPPD_OFF(ping_conf, keepalive_interval), "0",
      0, 86400000, NULL, 0,
      "ping a session after this long without a stanza from it; 0 disables server pings" },
    { "ping_timeout", XMPPD_OPT_DURATION, XMPPD_OFF(ping_conf, ping_timeout), "30s", 1000, 3600000,
      NULL, 0, "close a pinged session (connection-timeout) that sends nothing for this long" },
    { NULL }
};

/* Keepalive state of one bound session, in its slot and in the instance's
 * list. Owned by the instance: freed on "session-closed" or at unload.
 * Holds a session reference. */
typedef struct ping_sess {
    xmppd_module *m;
    xmppd_session *s;
    xmppd_timer *timer;   /* NULL once the timer has stopped */
    uint64_t last_active; /* monotonic ms of the last stanza from the client */
    uint64_t ping_sent;   /* monotonic ms of the unanswered ping; 0: none */
    unsigned long serial; /* ping ids */
    bool in_tick;         /* the timer callback is running */
    bool released;        /* session-closed came during the tick */
    struct ping_sess *prev, *next;
} ping_sess;

/* Module data: every ping_sess of the instance, so unload frees them. */
typedef struct ping_state {
    ping_sess *head;
} ping_state;

/* ---- answering pings ---------------------------------------------------- */

static int ping_on_get(xmppd_event *ev, void *ud)
{
    /* To a bare JID: only the account itself is answered by the server. */
    if (ev->to && ev->to->node && !(ev->from && xmppd_jid_bare_equal(ev->from, ev->to)))
        return xmppd_reply_error(ev, NULL, "service-unavailable", NULL);
    xmppd_stanza *r = xmppd_stanza_reply(ev->stanza);
    if (!r)
        return XMPPD_FAIL;
    xmppd_reply(ev, r);
    return XMPPD_HANDLED;
}

/* ---- keepalive ------------------------------------------------------------ */

/* Unlinks and frees ps; the caller has cleared the slot. */
static void ping_sess_free(ping_sess *ps)
{
    ping_state *st = xmppd_module_data(ps->m);
    if (ps->prev)
        ps->prev->next = ps->next;
    else
        st->head = ps->next;
    if (ps->next)
        ps->next->prev = ps->prev;
    xmppd_session_unref(ps->s);
    free(ps);
}

static void ping_send(ping_sess *ps)
{
    const xmppd_jid *jid = xmppd_session_jid(ps->s);
    xmppd_host *h = xmppd_session_host(ps->s);
    char id[48];
    xmppd_stanza *iq = xmppd_stanza_new("iq", XMPPD_NS_CLIENT);
    if (!iq || !jid || !h) {
        xmppd_stanza_unref(iq);
        return;
    }
    snprintf(id, sizeof(id), "xmppd-ping-%lu", ++ps->serial);
    xmppd_stanza_set_attr(iq, "type", "get");
    xmppd_stanza_set_attr(iq, "id", id);
    xmppd_stanza_set_attr(iq, "from", xmppd_host_name(h));
    xmppd_stanza_set_attr(iq, "to", jid->full);
    xmppd_stanza_tag(iq, "ping", PING_NS);
    xmppd_session_write(ps->s, iq);
    xmppd_stanza_unref(iq);
}

/* One step of the keepalive state machine; returns the next delay, or 0
 * when the session is gone or was closed. */
static uint64_t ping_step(ping_sess *ps, const ping_conf *c)
{
    if (xmppd_session_closed(ps->s))
        return 0;
    uint64_t now = xmppd_now_ms();
    uint64_t interval = (uint64_t)c->keepalive_interval, timeout = (uint64_t)c->ping_timeout;
    if (ps->ping_sent && ps->last_active < ps->ping_sent) {
        if (now - ps->ping_sent < timeout)
            return timeout - (now - ps->ping_sent);
        xmppd_log(ps->m, XMPPD_LOG_INFO, "%s did not answer a ping: closing",
                  xmppd_session_jid(ps->s) ? xmppd_session_jid(ps->s)->full : "?");
        xmppd_session_close(ps->s, "connection-timeout", "No answer to a ping");
        return 0;
    }
    ps->ping_sent = 0;
    if (now - ps->last_active < interval)
        return interval - (now - ps->last_active);
    ping_send(ps);
    ps->ping_sent = now;
    return timeout;
}

static uint64_t ping_tick(void *ud)
{
    ping_sess *ps = ud;
    ps->in_tick = true;
    uint64_t next = ping_step(ps, xmppd_module_conf(ps->m));
    ps->in_tick = false;
    if (next)
        return next;
    ps->timer = NULL; /* freed by the loop as we return 0 */
    if (ps->released)
        ping_sess_free(ps);
    /* otherwise "session-closed" (or unload) frees ps */
    return 0;
}

static int ping_on_bound(xmppd_event *ev, void *ud)
{
    xmppd_module *m = ud;
    const ping_conf *c = xmppd_module_conf(m);
    ping_sess *ps = calloc(1, sizeof(*ps));
    if (!ps)
        return XMPPD_PASS; /* this session just goes without keepalive */
    ping_state *st = xmppd_module_data(m);
    ps->m = m;
    ps->s = xmppd_session_ref(ev->session);
    ps->next = st->head;
    if (st->head)
        st->head->prev = ps;
    st->head = ps;
    ps->last_active = xmppd_now_ms();
    ps->timer = xmppd_timer_add(m, (uint64_t)c->keepalive_interval, ping_tick, ps);
    if (!ps->timer) {
        ping_sess_free(ps);
        return XMPPD_PASS;
    }
    xmppd_session_set(ev->session, m, ps);
    return XMPPD_PASS;
}

static int ping_on_stanza_in(xmppd_event *ev, void *ud)
{
    ping_sess *ps = ev->session ? xmppd_session_get(ev->session, ud) : NULL;
    if (ps)
        ps->last_active = xmppd_now_ms();
    return XMPPD_PASS;
}

static int ping_on_closed(xmppd_event *ev, void *ud)
{
    xmppd_module *m = ud;
    ping_sess *ps = xmppd_session_get(ev->session, m);
    if (!ps)
        return XMPPD_PASS;
    xmppd_session_set(ev->session, m, NULL);
    if (ps->in_tick) {
        ps->released = true; /* ping_tick frees it */
        return XMPPD_PASS;
    }
    if (ps->timer)
        xmppd_timer_cancel(ps->timer);
    ping_sess_free(ps);
    return XMPPD_PASS;
}

static void ping_unload(xmppd_module *m)
{
    ping_state *st = xmppd_module_data(m);
    if (!st)
        return;
    /* The kernel has cancelled the timers. */
    while (st->head) {
        ping_sess *ps = st->head;
        xmppd_session_set(ps->s, m, NULL);
        ping_sess_free(ps);
    }
    free(st);
    xmppd_module_set_data(m, NULL);
}

static int ping_load(xmppd_module *m, const void *conf)
{
    const ping_conf *c = conf;
    ping_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -1;
    xmppd_module_set_data(m, st);
    if (xmppd_iq_handle(m, "get", PING_NS, XMPPD_IQ_HOST | XMPPD_IQ_BARE, ping_on_get, m) < 0 ||
        xmppd_disco_feature(m, PING_NS) < 0)
        goto fail;
    if (c->keepalive_interval <= 0)
        return 0;
    /* Above every guard: whatever consumes a stanza, it proves the
     * client is alive. */
    if (xmppd_hook(m, "resource-bound", ping_on_bound, XMPPD_PRIO_DEFAULT, m) < 0 ||
        xmppd_hook(m, "stanza-in", ping_on_stanza_in, XMPPD_PRIO_GUARD + 100, m) < 0 ||
        xmppd_hook(m, "session-closed", ping_on_closed, XMPPD_PRIO_DEFAULT, m) < 0)
        goto fail;
    return 0;
fail:
    ping_unload(m);
    return -1;
}

XMPPD_MODULE(ping,
    .version = "1.0",
    .summary = "XEP-0199 XMPP Ping: answers pings, pings idle sessions",
    .specs = (const char *const[]){ "XEP-0199", NULL },
    .options = ping_options,
    .conf_size = sizeof(ping_conf),
    .load = ping_load,
    .unload = ping_unload);
