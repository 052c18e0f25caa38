/* Acknowledging a sender's stanzas only once what they left in storage is
 * durable (xmppd_session_hold_commit, xmppd_session_when_committed,
 * api/xmppd/router.h).
 *
 * A module that takes a stanza from a session and stores it (offline
 * messages) holds the session's commits until its write reports; stream
 * management asks to be told when every hold taken so far is released
 * before it answers the client's <r/>, so an acknowledged message survives
 * a crash. Holds get increasing numbers per session; a waiter notes the
 * next number at the time it asks and is answered once every hold below
 * it is released. Holds and waiters each keep a reference on the session,
 * so the state (allocated at the first hold: an idle session pays one
 * pointer) lives until the session goes. Answers go through one event on
 * the loop, as in sent.c, so no module is called back from inside its own
 * call. */
#include <event2/event.h>
#include <stdlib.h>

#include "core/loop.h"
#include "session/session.h"

struct xmppd_commit_hold {
    struct xmppd_commit_hold *next; /* in taking order */
    xmppd_session *s;               /* ref */
    uint64_t seq;
    bool released;
};

typedef struct commit_wait {
    struct commit_wait *next;
    xmppd_session *s; /* ref */
    uint64_t target;  /* holds numbered below this must be released */
    xmppd_call *call;
    xmppd_committed_cb cb;
    void *ud;
} commit_wait;

struct session_commits {
    uint64_t taken;                   /* holds taken so far: the next one's number */
    xmppd_commit_hold *holds, **holds_tail; /* not yet popped, oldest first */
    commit_wait *waits, **waits_tail; /* targets grow along the list */
};

static commit_wait *ready_head, **ready_tail = &ready_head;
static struct event *ready_ev;

static void answer_ready(evutil_socket_t fd, short what, void *arg)
{
    commit_wait *w = ready_head;
    ready_head = NULL;
    ready_tail = &ready_head;
    while (w) {
        commit_wait *next = w->next;
        if (xmppd_call_finish(w->call))
            w->cb(XMPPD_COMMITTED_OK, w->ud);
        xmppd_session_unref(w->s);
        free(w);
        w = next;
    }
}

static void make_ready(commit_wait *w)
{
    w->next = NULL;
    *ready_tail = w;
    ready_tail = &w->next;
    event_active(ready_ev, EV_TIMEOUT, 1);
}

static session_commits *commits_of(xmppd_session *s)
{
    if (!s->commits && (s->commits = calloc(1, sizeof(*s->commits)))) {
        s->commits->holds_tail = &s->commits->holds;
        s->commits->waits_tail = &s->commits->waits;
    }
    return s->commits;
}

/* The number of the oldest hold still out (taken when none is). */
static uint64_t lowest_held(const session_commits *c)
{
    return c->holds ? c->holds->seq : c->taken;
}

XMPPD_EXPORT xmppd_commit_hold *xmppd_session_hold_commit(xmppd_session *s)
{
    session_commits *c = s ? commits_of(s) : NULL;
    xmppd_commit_hold *h = c ? calloc(1, sizeof(*h)) : NULL;
    if (!h)
        return NULL;
    h->s = xmppd_session_ref(s);
    h->seq = c->taken++;
    *c->holds_tail = h;
    c->holds_tail = &h->next;
    return h;
}

XMPPD_EXPORT void xmppd_commit_release(xmppd_commit_hold *h)
{
    if (!h)
        return;
    xmppd_session *s = h->s;
    session_commits *c = s->commits;
    bool h_popped = false;
    h->released = true;
    /* Holds are mostly released in order (storage commits in order): pop
     * from the front; one released out of order stays until those before
     * it go, and keeps its session reference until then. */
    while (c->holds && c->holds->released) {
        xmppd_commit_hold *done = c->holds;
        c->holds = done->next;
        if (!c->holds)
            c->holds_tail = &c->holds;
        if (done == h)
            h_popped = true;
        else
            xmppd_session_unref(done->s); /* h still holds s */
        free(done);
    }
    uint64_t low = lowest_held(c);
    while (c->waits && c->waits->target <= low) {
        commit_wait *w = c->waits;
        c->waits = w->next;
        if (!c->waits)
            c->waits_tail = &c->waits;
        make_ready(w);
    }
    if (h_popped)
        xmppd_session_unref(s); /* last: s (and c) may go here */
}

/* The module unloads: it hears CANCELLED now; the waiter itself goes when
 * its answer comes (xmppd_call_finish then says nobody waits). */
static void on_cancel(void *p)
{
    commit_wait *w = p;
    w->cb(XMPPD_COMMITTED_CANCELLED, w->ud);
}

XMPPD_EXPORT bool xmppd_session_commits_pending(const xmppd_session *s)
{
    return s && s->commits && s->commits->holds;
}

XMPPD_EXPORT int xmppd_session_when_committed(xmppd_module *m, xmppd_session *s, xmppd_committed_cb cb,
                                              void *ud)
{
    if (!s || !cb)
        return -1;
    if (!ready_ev && !(ready_ev = event_new(loop_base(), -1, 0, answer_ready, NULL)))
        return -1;
    session_commits *c = commits_of(s);
    commit_wait *w = c ? calloc(1, sizeof(*w)) : NULL;
    if (!w || !(w->call = xmppd_call_new(m, on_cancel, w))) {
        free(w);
        return -1;
    }
    w->s = xmppd_session_ref(s);
    w->cb = cb;
    w->ud = ud;
    w->target = c->taken;
    if (lowest_held(c) >= w->target) {
        make_ready(w);
        return 0;
    }
    *c->waits_tail = w;
    c->waits_tail = &w->next;
    return 0;
}
