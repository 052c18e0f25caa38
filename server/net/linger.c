/* Lingering close (net.h). A stream we end may still have input on the
 * way: a client that keeps sending while we write the stream error that
 * cuts it off. Closing a socket with unread input, or input arriving after
 * the close, makes our kernel answer with a reset, and the reset makes the
 * peer's kernel drop everything it has not handed to the application yet:
 * the stream error that says why goes with it. So the socket is shut for
 * writing (our FIN follows the bytes already queued) and kept open a little
 * while, its input read and thrown away, until the peer closes its side or
 * the time or byte budget runs out. Bounded in count: beyond it, sockets
 * close at once as before. */
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/net.h"

#define LINGER_MS 5000
#define LINGER_BYTES (1024 * 1024)
#define LINGER_MAX 4096

typedef struct lingering {
    struct lingering *prev, *next;
    struct event *ev;
    int fd;
    size_t discarded;
    uint64_t deadline;
} lingering;

static lingering *lingers;
static size_t n_lingers;
static bool stopped;

static void linger_end(lingering *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else
        lingers = l->next;
    if (l->next)
        l->next->prev = l->prev;
    n_lingers--;
    if (l->ev)
        event_free(l->ev);
    close(l->fd);
    free(l);
}

/* Reads what is there; false once the peer closed, failed or spent the
 * budget. */
static bool discard_input(lingering *l)
{
    char buf[16384];
    for (;;) {
        ssize_t n = recv(l->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            l->discarded += (size_t)n;
            if (l->discarded >= LINGER_BYTES)
                return false;
            continue;
        }
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
    }
}

static void on_linger(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    lingering *l = arg;
    uint64_t now = xmppd_now_ms();
    if ((what & EV_TIMEOUT) || now >= l->deadline || !discard_input(l)) {
        linger_end(l);
        return;
    }
    struct timeval tv = { (time_t)((l->deadline - now) / 1000),
                          (suseconds_t)((l->deadline - now) % 1000) * 1000 };
    if (event_add(l->ev, &tv) < 0)
        linger_end(l);
}

void net_linger(int fd)
{
    if (fd < 0)
        return;
    shutdown(fd, SHUT_WR);
    lingering *l = NULL;
    if (!stopped && n_lingers < LINGER_MAX)
        l = calloc(1, sizeof(*l));
    if (!l) {
        lingering now = { .fd = fd }; /* what has arrived is all we can spare */
        discard_input(&now);
        close(fd);
        return;
    }
    l->fd = fd;
    l->deadline = xmppd_now_ms() + LINGER_MS;
    l->ev = event_new(loop_base(), fd, EV_READ, on_linger, l);
    l->next = lingers;
    if (lingers)
        lingers->prev = l;
    lingers = l;
    n_lingers++;
    struct timeval tv = { LINGER_MS / 1000, (LINGER_MS % 1000) * 1000 };
    if (!l->ev || !discard_input(l) || event_add(l->ev, &tv) < 0)
        linger_end(l);
}

void net_linger_stop(void)
{
    stopped = true;
    while (lingers)
        linger_end(lingers);
}
