/* The event loop (libevent), timers, fd watches, the worker pool and the
 * thread-safe post queue. Everything here runs on the loop thread except the
 * worker threads' bodies and loop_post's enqueue. */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "core/loop.h"

#define WORKERS 2

struct xmppd_timer {
    struct event *ev;
    xmppd_module *m;
    module_cleanup *cleanup;
    uint64_t (*fn)(void *ud);
    void *ud;
};

struct xmppd_io {
    struct event *ev;
    xmppd_module *m;
    module_cleanup *cleanup;
    void (*fn)(int fd, int ready, void *ud);
    void *ud;
};

/* A posted call or an offloaded job; one type for both queues. */
struct job {
    struct job *next;
    void (*work)(void *ud);
    void (*done)(void *ud);
    void (*cancelled)(void *ud);
    void *ud;
    xmppd_module *m;          /* ref held while the job is in flight */
    module_cleanup *cleanup;  /* offload: m unloading cancels the job */
    bool cancel;              /* offload: cancelled (its done never runs) */
    bool finished;            /* offload: work returned (under L.lock) */
    bool in_loop;             /* taken by run_posted, which frees it */
};

struct queue {
    struct job *head, *tail;
};

static struct {
    struct event_base *base;
    int post_fd;
    struct event *post_ev;
    pthread_mutex_t lock;
    struct queue posted;
    pthread_cond_t work_cond;
    pthread_cond_t done_cond; /* a worker finished a job */
    struct queue work;
    pthread_t workers[WORKERS];
    int n_workers;
    bool stopping;
} L = { .post_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER, .work_cond = PTHREAD_COND_INITIALIZER,
        .done_cond = PTHREAD_COND_INITIALIZER };

static void q_push(struct queue *q, struct job *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
}

/* Takes j out of q (under L.lock); false when it is not there. */
static bool q_remove(struct queue *q, struct job *j)
{
    struct job *prev = NULL;
    for (struct job **jp = &q->head; *jp; prev = *jp, jp = &(*jp)->next) {
        if (*jp != j)
            continue;
        *jp = j->next;
        if (q->tail == j)
            q->tail = prev;
        return true;
    }
    return false;
}

static struct job *q_take_all(struct queue *q)
{
    struct job *j = q->head;
    q->head = q->tail = NULL;
    return j;
}

XMPPD_EXPORT uint64_t xmppd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

XMPPD_EXPORT int64_t xmppd_wallclock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct event_base *loop_base(void)
{
    return L.base;
}

/* ---- post queue ---------------------------------------------------------- */

static void run_posted(evutil_socket_t fd, short what, void *arg)
{
    uint64_t n;
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_kernel("loop", XMPPD_LOG_ERROR, "eventfd read: %m");
    pthread_mutex_lock(&L.lock);
    struct job *j = q_take_all(&L.posted);
    for (struct job *k = j; k; k = k->next)
        k->in_loop = true;
    pthread_mutex_unlock(&L.lock);
    while (j) {
        struct job *next = j->next;
        if (j->cleanup)
            module_cleanup_cancel(j->m, j->cleanup);
        if (!j->cancel)
            j->done(j->ud);
        else if (j->cancelled)
            j->cancelled(j->ud);
        if (j->m)
            module_unref(j->m);
        free(j);
        j = next;
    }
}

/* Wakes the loop to run what is posted. */
static void post_wake(void)
{
    uint64_t one = 1;
    while (write(L.post_fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

static void post_job(struct job *j)
{
    pthread_mutex_lock(&L.lock);
    q_push(&L.posted, j);
    pthread_mutex_unlock(&L.lock);
    post_wake();
}

XMPPD_EXPORT void xmppd_loop_post(void (*fn)(void *ud), void *ud)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j) {
        /* Nothing sensible to do: the caller's completion would be lost. */
        log_kernel("loop", XMPPD_LOG_ERROR, "out of memory posting to the loop");
        abort();
    }
    j->done = fn;
    j->ud = ud;
    post_job(j);
}

/* ---- worker pool --------------------------------------------------------- */

static void *worker_main(void *arg)
{
    pthread_mutex_lock(&L.lock);
    for (;;) {
        while (!L.work.head && !L.stopping)
            pthread_cond_wait(&L.work_cond, &L.lock);
        if (!L.work.head && L.stopping)
            break;
        struct job *j = L.work.head;
        L.work.head = j->next;
        if (!L.work.head)
            L.work.tail = NULL;
        pthread_mutex_unlock(&L.lock);
        j->work(j->ud);
        pthread_mutex_lock(&L.lock);
        /* finished and posted under one lock: offload_on_unload, once it
         * sees the job finished, finds it posted and takes it off */
        j->finished = true;
        q_push(&L.posted, j);
        pthread_cond_broadcast(&L.done_cond);
        pthread_mutex_unlock(&L.lock);
        post_wake();
        pthread_mutex_lock(&L.lock);
    }
    pthread_mutex_unlock(&L.lock);
    return NULL;
}

/* m unloads: the job is cancelled now, before m's unload(). One still
 * queued is taken off; one a worker runs is waited for (work functions
 * are short by contract), then taken off the way back to the loop. */
static void offload_on_unload(void *p)
{
    struct job *j = p;
    j->cleanup = NULL;
    pthread_mutex_lock(&L.lock);
    j->cancel = true;
    if (!q_remove(&L.work, j)) {
        while (!j->finished)
            pthread_cond_wait(&L.done_cond, &L.lock);
        q_remove(&L.posted, j); /* else run_posted holds it (in_loop) */
    }
    pthread_mutex_unlock(&L.lock);
    if (j->cancelled)
        j->cancelled(j->ud);
    j->cancelled = NULL; /* a posted copy the loop is holding must not run it again */
    if (!j->in_loop) {
        module_unref(j->m);
        free(j);
    }
}

XMPPD_EXPORT int xmppd_offload(xmppd_module *m, void (*work)(void *ud), void (*done)(void *ud),
                  void (*cancelled)(void *ud), void *ud)
{
    if (m && !m->loaded)
        return -1;
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    *j = (struct job){ .work = work, .done = done, .cancelled = cancelled, .ud = ud, .m = m };
    if (m && !(j->cleanup = module_cleanup_add(m, offload_on_unload, j))) {
        free(j);
        return -1;
    }
    if (m)
        module_ref(m);
    pthread_mutex_lock(&L.lock);
    q_push(&L.work, j);
    pthread_cond_signal(&L.work_cond);
    pthread_mutex_unlock(&L.lock);
    return 0;
}

/* ---- timers -------------------------------------------------------------- */

static void timer_release(xmppd_timer *t)
{
    event_free(t->ev);
    free(t);
}

static void timer_on_unload(void *p)
{
    timer_release(p);
}

static void timer_fire(evutil_socket_t fd, short what, void *arg)
{
    xmppd_timer *t = arg;
    uint64_t again = t->fn(t->ud);
    if (again) {
        struct timeval tv = { (time_t)(again / 1000), (suseconds_t)(again % 1000) * 1000 };
        evtimer_add(t->ev, &tv);
        return;
    }
    if (t->m)
        module_cleanup_cancel(t->m, t->cleanup);
    timer_release(t);
}

XMPPD_EXPORT xmppd_timer *xmppd_timer_add(xmppd_module *m, uint64_t ms, uint64_t (*fn)(void *ud), void *ud)
{
    xmppd_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ev = evtimer_new(L.base, timer_fire, t);
    if (!t->ev) {
        free(t);
        return NULL;
    }
    t->m = m;
    t->fn = fn;
    t->ud = ud;
    if (m && !(t->cleanup = module_cleanup_add(m, timer_on_unload, t))) {
        timer_release(t);
        return NULL;
    }
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(t->ev, &tv);
    return t;
}

XMPPD_EXPORT void xmppd_timer_cancel(xmppd_timer *t)
{
    if (!t)
        return;
    if (t->m)
        module_cleanup_cancel(t->m, t->cleanup);
    timer_release(t);
}

/* ---- deferred calls ---------------------------------------------------------- */

typedef struct deferred {
    struct event *ev;
    xmppd_module *m;
    module_cleanup *cleanup;
    void (*fn)(void *ud);
    void (*cancelled)(void *ud);
    void *ud;
} deferred;

static void defer_fire(evutil_socket_t fd, short what, void *arg)
{
    deferred *d = arg;
    if (d->cleanup)
        module_cleanup_cancel(d->m, d->cleanup);
    event_free(d->ev);
    void (*fn)(void *) = d->fn;
    void *ud = d->ud;
    free(d);
    fn(ud);
}

static void defer_on_unload(void *p)
{
    deferred *d = p;
    event_free(d->ev);
    if (d->cancelled)
        d->cancelled(d->ud);
    free(d);
}

XMPPD_EXPORT int xmppd_defer(xmppd_module *m, void (*fn)(void *ud), void (*cancelled)(void *ud), void *ud)
{
    if (m && !m->loaded)
        return -1;
    deferred *d = calloc(1, sizeof(*d));
    if (!d || !(d->ev = evtimer_new(L.base, defer_fire, d))) {
        free(d);
        return -1;
    }
    *d = (deferred){ d->ev, m, NULL, fn, cancelled, ud };
    if (m && !(d->cleanup = module_cleanup_add(m, defer_on_unload, d))) {
        event_free(d->ev);
        free(d);
        return -1;
    }
    struct timeval now = { 0, 0 };
    evtimer_add(d->ev, &now);
    return 0;
}

/* ---- fd watches ---------------------------------------------------------- */

static void io_fire(evutil_socket_t fd, short what, void *arg)
{
    xmppd_io *io = arg;
    int ready = ((what & EV_READ) ? XMPPD_IO_READ : 0) | ((what & EV_WRITE) ? XMPPD_IO_WRITE : 0);
    io->fn(fd, ready, io->ud);
}

static short io_flags(int events)
{
    return (short)(EV_PERSIST | ((events & XMPPD_IO_READ) ? EV_READ : 0) |
                   ((events & XMPPD_IO_WRITE) ? EV_WRITE : 0));
}

static void io_release(xmppd_io *io)
{
    event_free(io->ev);
    free(io);
}

static void io_on_unload(void *p)
{
    io_release(p);
}

XMPPD_EXPORT xmppd_io *xmppd_io_add(xmppd_module *m, int fd, int events, void (*fn)(int fd, int ready, void *ud), void *ud)
{
    xmppd_io *io = calloc(1, sizeof(*io));
    if (!io)
        return NULL;
    io->ev = event_new(L.base, fd, io_flags(events), io_fire, io);
    if (!io->ev) {
        free(io);
        return NULL;
    }
    io->m = m;
    io->fn = fn;
    io->ud = ud;
    if (m && !(io->cleanup = module_cleanup_add(m, io_on_unload, io))) {
        io_release(io);
        return NULL;
    }
    event_add(io->ev, NULL);
    return io;
}

XMPPD_EXPORT int xmppd_io_modify(xmppd_io *io, int events)
{
    evutil_socket_t fd = event_get_fd(io->ev);
    event_del(io->ev);
    if (event_assign(io->ev, L.base, fd, io_flags(events), io_fire, io) < 0)
        return -1;
    return event_add(io->ev, NULL);
}

XMPPD_EXPORT void xmppd_io_remove(xmppd_io *io)
{
    if (!io)
        return;
    if (io->m)
        module_cleanup_cancel(io->m, io->cleanup);
    io_release(io);
}

/* ---- lifecycle ----------------------------------------------------------- */

int loop_init(void)
{
    if (evthread_use_pthreads() < 0)
        return -1;
    L.base = event_base_new();
    if (!L.base)
        return -1;
    L.post_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (L.post_fd < 0)
        return -1;
    L.post_ev = event_new(L.base, L.post_fd, EV_READ | EV_PERSIST, run_posted, NULL);
    if (!L.post_ev || event_add(L.post_ev, NULL) < 0)
        return -1;
    L.stopping = false;
    for (L.n_workers = 0; L.n_workers < WORKERS; L.n_workers++)
        if (pthread_create(&L.workers[L.n_workers], NULL, worker_main, NULL) != 0)
            return -1;
    return 0;
}

void loop_run(void)
{
    event_base_dispatch(L.base);
}

void loop_break(void)
{
    event_base_loopbreak(L.base);
}

void loop_free(void)
{
    pthread_mutex_lock(&L.lock);
    L.stopping = true;
    pthread_cond_broadcast(&L.work_cond);
    pthread_mutex_unlock(&L.lock);
    for (int i = 0; i < L.n_workers; i++)
        pthread_join(L.workers[i], NULL);
    L.n_workers = 0;
    /* Finished jobs still queued belong to modules already unloaded or to a
     * loop that will not run again: give them their cancel path. */
    run_posted(L.post_fd, EV_READ, NULL);
    /* Freed bufferevents finish on a deferred callback: one last turn lets
     * them go before the base does. */
    if (L.base)
        event_base_loop(L.base, EVLOOP_NONBLOCK);
    if (L.post_ev)
        event_free(L.post_ev);
    if (L.post_fd >= 0)
        close(L.post_fd);
    if (L.base)
        event_base_free(L.base);
    L.post_ev = NULL;
    L.post_fd = -1;
    L.base = NULL;
}
