/* Waiting until what was written to a session reached the kernel's socket
 * (xmppd_session_when_sent, api/xmppd/router.h).
 *
 * A waiter notes the transport's output position at the time it is asked
 * for (everything written so far); the transport reports when its sent
 * position moves (session_sent_progress), and waiters whose position was
 * reached are answered. Answers go through one event on the loop, so a
 * module is never called back from inside its own call, nor from inside
 * the transport's flush. */
#include <event2/event.h>
#include <stdlib.h>

#include "core/loop.h"
#include "session/session.h"

struct session_sent_wait {
    struct session_sent_wait *next;
    xmppd_session *s; /* ref */
    uint64_t target;  /* the transport's output position to be sent */
    int status;
    xmppd_call *call;
    xmppd_sent_cb cb;
    void *ud;
};

/* Answers to give on the next loop turn, in order. */
static session_sent_wait *ready_head, **ready_tail = &ready_head;
static struct event *ready_ev;

static void answer_ready(evutil_socket_t fd, short what, void *arg)
{
    session_sent_wait *w = ready_head;
    ready_head = NULL;
    ready_tail = &ready_head;
    while (w) {
        session_sent_wait *next = w->next;
        if (xmppd_call_finish(w->call))
            w->cb(w->status, w->ud);
        xmppd_session_unref(w->s);
        free(w);
        w = next;
    }
}

static void make_ready(session_sent_wait *w, int status)
{
    w->status = status;
    w->next = NULL;
    *ready_tail = w;
    ready_tail = &w->next;
    event_active(ready_ev, EV_TIMEOUT, 1);
}

/* The module unloads: it hears CANCELLED now; the waiter itself goes when
 * its answer comes (xmppd_call_finish then says nobody waits). */
static void on_cancel(void *p)
{
    session_sent_wait *w = p;
    w->cb(XMPPD_SENT_CANCELLED, w->ud);
}

XMPPD_EXPORT int xmppd_session_when_sent(xmppd_module *m, xmppd_session *s, xmppd_sent_cb cb, void *ud)
{
    if (!s || !cb)
        return -1;
    if (!ready_ev && !(ready_ev = event_new(loop_base(), -1, 0, answer_ready, NULL)))
        return -1;
    session_sent_wait *w = calloc(1, sizeof(*w));
    if (!w || !(w->call = xmppd_call_new(m, on_cancel, w))) {
        free(w);
        return -1;
    }
    w->s = xmppd_session_ref(s);
    w->cb = cb;
    w->ud = ud;
    if (!s->conn || !s->tr->out_pos) {
        make_ready(w, XMPPD_SENT_LOST); /* no connection (hibernated, ended) */
        return 0;
    }
    w->target = s->tr->out_pos(s->conn, false);
    if (s->tr->out_pos(s->conn, true) >= w->target) {
        make_ready(w, XMPPD_SENT_OK);
        return 0;
    }
    session_sent_wait **p = &s->sent_waits;
    while (*p)
        p = &(*p)->next;
    *p = w;
    return 0;
}

void session_sent_progress(xmppd_session *s)
{
    if (!s->sent_waits || !s->conn)
        return;
    uint64_t sent = s->tr->out_pos(s->conn, true);
    /* Targets grow along the list: stop at the first one not reached. */
    while (s->sent_waits && s->sent_waits->target <= sent) {
        session_sent_wait *w = s->sent_waits;
        s->sent_waits = w->next;
        make_ready(w, XMPPD_SENT_OK);
    }
}

void session_sent_lost(xmppd_session *s)
{
    session_sent_progress(s);
    while (s->sent_waits) {
        session_sent_wait *w = s->sent_waits;
        s->sent_waits = w->next;
        make_ready(w, XMPPD_SENT_LOST);
    }
}
