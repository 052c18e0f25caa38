/* Idle socket streams give back their parser's libxml2 context (about
 * 14 KB each: xs_shrink), which a stream rebuilds when input comes.
 *
 * The socket streams that may hold a context are on one list in the order
 * of their last input (xidle_touch moves a stream to the end: a few
 * pointer writes per read). One timer, armed for when the stream at the
 * head has been quiet for XSTREAM_IDLE_MS, takes the quiet ones off the
 * head and shrinks them; the next input puts a stream back at the end. So
 * the cost is per stream that goes idle, never a walk over all streams,
 * and a stream that reads at least once a period never pays for a
 * rebuild. xs_shrink refuses a stream mid-element (it stays off the list
 * until it reads again: what it holds is bounded by max_stanza).
 *
 * A quiet stream with nothing waiting in its buffers (no input unread,
 * no output queued or waiting for the socket, no TLS handshake going on,
 * input not paused) is also parked: its bufferevent with the two evbuffers
 * (about 0.9 KiB) is freed without closing the socket, and one read event
 * (about 150 bytes) waits for the socket to become readable (data, EOF or
 * an error). xidle_wake builds a new bufferevent on the socket before any
 * use of it: when the read event fires (the bufferevent reads what is
 * there on the next loop turn: the socket stays readable) and before
 * anything is written or the stream is paused or closed. The SSL keeps
 * its state across (its BIO reads through x->bev). */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <time.h>
#include <unistd.h>

#include "core/metrics.h"
#include "net/xstream_io.h"

#define XSTREAM_IDLE_SLACK_MS 50 /* streams going idle together: one timer run */

static xstream *head, *tail;
static struct event *sweep_ev;

/* Coarse monotonic time (a few ms resolution is plenty, and cheaper on
 * every read than the precise clock). */
static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void unlink_stream(xstream *x)
{
    if (x->idle_prev)
        x->idle_prev->idle_next = x->idle_next;
    else
        head = x->idle_next;
    if (x->idle_next)
        x->idle_next->idle_prev = x->idle_prev;
    else
        tail = x->idle_prev;
    x->idle_prev = x->idle_next = NULL;
    x->idle_listed = false;
}

static void append(xstream *x)
{
    x->idle_prev = tail;
    x->idle_next = NULL;
    if (tail)
        tail->idle_next = x;
    else
        head = x;
    tail = x;
    x->idle_listed = true;
}

static void on_sweep(evutil_socket_t fd, short what, void *arg);

/* ---- parking ---------------------------------------------------------------- */

static bool can_park(const xstream *x)
{
    struct bufferevent *bev = x->bev;
    return bev && !x->closing && x->connected && !x->write_armed && !x->flush_listed &&
           x->out.len == 0 && (bufferevent_get_enabled(bev) & EV_READ) &&
           evbuffer_get_length(bufferevent_get_input(bev)) == 0 &&
           evbuffer_get_length(bufferevent_get_output(bev)) == 0 &&
           (!x->ssl || (x->tls == XT_OPEN && SSL_pending(x->ssl) == 0));
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    xidle_wake(arg);
}

static void park(xstream *x)
{
    int fd = bufferevent_getfd(x->bev);
    struct event *ev = event_new(loop_base(), fd, EV_READ, on_wake, x);
    if (!ev || event_add(ev, NULL) < 0) {
        if (ev)
            event_free(ev);
        return; /* keeps its bufferevent */
    }
    /* Freed without closing the socket (BEV_OPT_CLOSE_ON_FREE closes the
     * bufferevent's fd, now none). */
    bufferevent_setfd(x->bev, -1);
    bufferevent_free(x->bev);
    x->bev = NULL;
    x->parked = ev;
    metrics_stream_parked();
}

bool xidle_wake(xstream *x)
{
    if (!x->parked)
        return x->bev != NULL;
    /* The flags every socket stream's bufferevent is made with. */
    struct bufferevent *bev = bufferevent_socket_new(
        loop_base(), event_get_fd(x->parked), BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev) {
        event_add(x->parked, NULL); /* fired: wait again */
        return false;
    }
    event_free(x->parked);
    x->parked = NULL;
    xio_install(x, bev);
    /* Back on the list, to be parked again when it is quiet again (a
     * stream that only receives never reads). */
    xidle_touch(x);
    return true;
}

void xidle_unpark_close(xstream *x)
{
    close(event_get_fd(x->parked));
    event_free(x->parked);
    x->parked = NULL;
    SSL_free(x->ssl);
}

/* The timer runs when the head is due (the head only gets later between
 * runs, as touched streams move to the end). */
static void arm(uint64_t now)
{
    if (!head || (sweep_ev && evtimer_pending(sweep_ev, NULL)))
        return;
    if (!sweep_ev && !(sweep_ev = evtimer_new(loop_base(), on_sweep, NULL)))
        return; /* OOM: streams keep their contexts, nothing else changes */
    uint64_t due = head->idle_since + XSTREAM_IDLE_MS + XSTREAM_IDLE_SLACK_MS;
    uint64_t ms = due > now ? due - now : 0;
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(sweep_ev, &tv);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    uint64_t now = now_ms();
    unsigned shrunk = 0;
    while (head && now - head->idle_since >= XSTREAM_IDLE_MS) {
        xstream *x = head;
        unlink_stream(x);
        if (x->parser && !x->closing && xs_shrink(x->parser))
            shrunk++;
        if (can_park(x))
            park(x);
    }
    if (shrunk)
        metrics_parser_shrinks(shrunk);
    arm(now);
}

void xidle_touch(xstream *x)
{
    uint64_t now = now_ms();
    x->idle_since = now;
    if (x->idle_listed) {
        if (x == tail)
            return;
        unlink_stream(x);
    }
    append(x);
    arm(now);
}

void xidle_remove(xstream *x)
{
    if (x->idle_listed)
        unlink_stream(x);
}
