/* Output of socket streams, written once per loop turn: see xstream_io.h. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "core/metrics.h"
#include "net/xstream_io.h"

/* Streams with output since the last flush, and the event that flushes
 * them: activated when the list stops being empty, it runs after the
 * events already active in this turn of the loop. */
static xstream *listed;
static struct event *flush_ev;

static void unlist(xstream *x)
{
    if (!x->flush_listed)
        return;
    if (x->flush_prev)
        x->flush_prev->flush_next = x->flush_next;
    else
        listed = x->flush_next;
    if (x->flush_next)
        x->flush_next->flush_prev = x->flush_prev;
    x->flush_prev = x->flush_next = NULL;
    x->flush_listed = false;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    /* Each stream leaves the list before its flush: one that gets output
     * again meanwhile (a TLS alert) comes back for the next flush. */
    while (listed)
        xout_flush(listed);
}

void xout_mark(xstream *x)
{
    if (x->flush_listed)
        return;
    if (!flush_ev && !(flush_ev = event_new(loop_base(), -1, 0, on_flush, NULL))) {
        xout_flush(x); /* no event (OOM): write at once rather than never */
        return;
    }
    bool was_empty = listed == NULL;
    x->flush_listed = true;
    x->flush_prev = NULL;
    x->flush_next = listed;
    if (listed)
        listed->flush_prev = x;
    listed = x;
    if (was_empty)
        event_active(flush_ev, EV_WRITE, 1);
}

int xout_append(xstream *x, const char *data, size_t len)
{
    xbuf_put(&x->out, data, len);
    if (x->out.oom) {
        x->out.oom = false;
        return -1;
    }
    x->out_total += len;
    xout_mark(x);
    return 0;
}

/* Everything flushed is in the kernel once nothing waits for the socket. */
static void note_sent(xstream *x)
{
    if (x->out_sent == x->out_flushed || evbuffer_get_length(bufferevent_get_output(x->bev)) > 0)
        return;
    x->out_sent = x->out_flushed;
    if (x->ops->sent)
        x->ops->sent(x->owner);
}

/* From now on the bufferevent writes what waits (the socket is full). */
static void arm(xstream *x)
{
    if (!x->write_armed && x->connected) {
        x->write_armed = true;
        bufferevent_enable(x->bev, EV_WRITE);
    }
}

void xout_socket(xstream *x, const char *data, size_t len)
{
    struct evbuffer *waiting = bufferevent_get_output(x->bev);
    if (x->in_flush && x->connected && !x->write_armed && evbuffer_get_length(waiting) == 0) {
        ssize_t n = send(bufferevent_getfd(x->bev), data, len, MSG_NOSIGNAL);
        if (n == (ssize_t)len)
            return;
        /* A hard error: the bufferevent meets it again on its own write
         * and reports it to the owner the usual way. */
        if (n < 0)
            n = 0;
        data += n;
        len -= (size_t)n;
    }
    evbuffer_add(waiting, data, len);
    /* In a flush, xout_flush pushes it next, in one write with what
     * waited before it (a session ticket the handshake left). */
    if (!x->in_flush)
        xout_mark(x);
}

/* Ciphertext the SSL wrote outside a flush (handshake messages, alerts)
 * or plain bytes that waited for the connection. A socket bufferevent
 * keeps the front of its output frozen (only its own write callback
 * drains it), so evbuffer_write fails on it without a system call: thaw
 * it for the write as that callback does. Without this every TLS
 * handshake flight waited a loop turn for EPOLLOUT (two per login). */
static void push_waiting(xstream *x)
{
    struct evbuffer *waiting = bufferevent_get_output(x->bev);
    if (x->write_armed || !x->connected || evbuffer_get_length(waiting) == 0)
        return;
    evbuffer_unfreeze(waiting, 1);
    errno = 0;
    int n = evbuffer_write(waiting, bufferevent_getfd(x->bev));
    evbuffer_freeze(waiting, 1);
    if (n < 0 && errno != 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        arm(x); /* a socket error: the bufferevent meets it and reports it */
        return;
    }
    if (evbuffer_get_length(waiting) > 0) {
        metrics_write_wait(); /* the rest waits for the socket (a slow reader) */
        arm(x);
    }
}

void xout_flush(xstream *x)
{
    unlist(x);
    if (!x->bev) {
        xbuf_free(&x->out);
        return;
    }
    x->in_flush = true;
    /* Under TLS, output waits for the handshake to finish. */
    if (x->out.len && x->connected && (!x->ssl || x->tls == XT_OPEN)) {
        if (x->ssl)
            xtls_write(x, x->out.p, x->out.len);
        else
            xout_socket(x, x->out.p, x->out.len);
        xbuf_free(&x->out);
        x->out_flushed = x->out_total;
    }
    push_waiting(x);
    x->in_flush = false;
    if (x->bev)
        note_sent(x);
}

void xout_drained(xstream *x)
{
    /* The write callback is deferred: more may have been added since. */
    if (x->write_armed && evbuffer_get_length(bufferevent_get_output(x->bev)) == 0) {
        x->write_armed = false;
        bufferevent_disable(x->bev, EV_WRITE);
    }
    note_sent(x);
}

void xout_forget(xstream *x)
{
    unlist(x);
    xbuf_free(&x->out);
}
