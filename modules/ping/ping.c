/* XEP-0199 XMPP Ping: answers pings to the host and to the requester's own
 * account, and (keepalive_interval > 0) pings sessions that have been idle
 * that long (xmppd_iq_request), closing those that stay silent for
 * ping_timeout with the stream error connection-timeout. Any stanza from
 * the client counts as an answer: the pong, an error (XEP-0199 §4.1: the
 * client does not support ping, but it is there) or anything else. */
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
 * list. Owned by the instance: freed on "session-closed" or at unload,
 * except while a ping is out: then the answer (or its timeout) frees it.
 * Holds a session reference. */
typedef struct ping_sess {
    xmppd_module *m;
    xmppd_session *s;
    xmppd_timer *timer;   /* NULL while a ping is out or the timer stopped */
    uint64_t last_active; /* monotonic ms of the last stanza from the client */
    uint64_t ping_sent;   /* monotonic ms of the ping that is out; 0: none */
    bool released;        /* session-closed came while a ping was out */
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

static void ping_answered(int status, xmppd_stanza *reply, void *ud);

/* Sends the keepalive ping; false when it could not be sent. */
static bool ping_send(ping_sess *ps, uint64_t timeout)
{
    const xmppd_jid *jid = xmppd_session_jid(ps->s);
    xmppd_host *h = xmppd_session_host(ps->s);
    xmppd_stanza *iq = xmppd_stanza_new("iq", XMPPD_NS_CLIENT);
    bool ok = iq && jid && h && xmppd_stanza_set_attr(iq, "type", "get") == 0 &&
              xmppd_stanza_set_attr(iq, "from", xmppd_host_name(h)) == 0 &&
              xmppd_stanza_set_attr(iq, "to", jid->full) == 0 && xmppd_stanza_tag(iq, "ping", PING_NS) &&
              xmppd_iq_request(ps->m, iq, timeout, ping_answered, ps) == 0;
    xmppd_stanza_unref(iq);
    return ok;
}

/* How long until the session is due a ping (0: now). */
static uint64_t ping_due(const ping_sess *ps, const ping_conf *c)
{
    uint64_t now = xmppd_now_ms(), interval = (uint64_t)c->keepalive_interval;
    return now - ps->last_active < interval ? interval - (now - ps->last_active) : 0;
}

static uint64_t ping_tick(void *ud)
{
    ping_sess *ps = ud;
    const ping_conf *c = xmppd_module_conf(ps->m);
    if (xmppd_session_closed(ps->s)) {
        ps->timer = NULL; /* freed by the loop as we return 0 */
        return 0;
    }
    uint64_t wait = ping_due(ps, c);
    if (wait)
        return wait;
    if (!ping_send(ps, (uint64_t)c->ping_timeout))
        return (uint64_t)c->ping_timeout; /* out of memory: try again later */
    ps->ping_sent = xmppd_now_ms();
    ps->timer = NULL;
    return 0;
}

static void ping_answered(int status, xmppd_stanza *reply, void *ud)
{
    ping_sess *ps = ud;
    bool heard = status == XMPPD_IQ_RESULT || status == XMPPD_IQ_ERROR ||
                 ps->last_active >= ps->ping_sent;
    ps->ping_sent = 0;
    if (ps->released) {
        ping_sess_free(ps); /* the session closed while the ping was out */
        return;
    }
    if (status == XMPPD_IQ_CANCELLED || xmppd_session_closed(ps->s))
        return; /* unloading (ping_unload frees ps), or session-closed will */
    if (!heard) {
        xmppd_log(ps->m, XMPPD_LOG_INFO, "%s did not answer a ping: closing",
                  xmppd_session_jid(ps->s) ? xmppd_session_jid(ps->s)->full : "?");
        xmppd_session_close(ps->s, "connection-timeout", "No answer to a ping");
        return;
    }
    if (status != XMPPD_IQ_TIMEOUT)
        ps->last_active = xmppd_now_ms();
    const ping_conf *c = xmppd_module_conf(ps->m);
    uint64_t wait = ping_due(ps, c);
    ps->timer = xmppd_timer_add(ps->m, wait ? wait : 1, ping_tick, ps);
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
    if (ps->ping_sent) {
        ps->released = true; /* ping_answered frees it */
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
    /* The kernel has cancelled the timers and the pings out. */
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
