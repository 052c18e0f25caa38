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
 * until it reads again: what it holds is bounded by max_stanza). */
#include <event2/event.h>
#include <time.h>

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
