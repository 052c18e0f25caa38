/* Timers and work offloaded from the event loop. */
#ifndef XMPPD_LOOP_H
#define XMPPD_LOOP_H

#include <stdint.h>
#include "module.h"

typedef struct xmppd_timer xmppd_timer;

/* Milliseconds of a monotonic clock (for intervals), and wall-clock
 * milliseconds since 1970 (for timestamps). Thread-safe. */
uint64_t xmppd_now_ms(void);
int64_t xmppd_wallclock_ms(void);

/* Calls fn(ud) on the loop after ms milliseconds (0: on the next loop
 * turn, never from inside this call). fn returns the delay until its next
 * run in ms, or 0 to stop (the timer is then freed). The timer is
 * cancelled and freed when m unloads. m may be NULL for kernel timers.
 * Returns the timer, or NULL on OOM. ud stays the module's: free it when
 * the timer ends (fn returned 0, xmppd_timer_cancel, or in unload() for the
 * timers the unload cancelled). */
xmppd_timer *xmppd_timer_add(xmppd_module *m, uint64_t ms, uint64_t (*fn)(void *ud), void *ud);
/* Cancels and frees a pending timer. Not to be called from its own fn
 * (return 0 there instead), nor after m unloaded (it is gone already). */
void xmppd_timer_cancel(xmppd_timer *t);

/* Runs work(ud) on a worker thread, then done(ud) on the loop thread. work
 * must not call any xmppd function except the pure ones (crypto.h, jid.h,
 * stanza.h on trees it owns), and must be short (a hash, a parse): an
 * unload waits for it. If m unloads before done runs, done is not called
 * and `cancelled(ud)` (may be NULL) frees ud instead, while m unloads and
 * before its unload() (a job a worker is running is waited for first).
 * 0, or -1 on OOM or when m is unloading (nothing runs). */
int xmppd_offload(xmppd_module *m, void (*work)(void *ud), void (*done)(void *ud),
                  void (*cancelled)(void *ud), void *ud);

/* Runs fn(ud) on a later loop turn (never inside this call): for answers
 * a module gives "later", such as a provider's immediate failure. If m
 * unloads first, cancelled(ud) (may be NULL) runs instead, while m unloads
 * (before its unload()). 0, or -1 on OOM or when m is unloading (nothing
 * runs). */
int xmppd_defer(xmppd_module *m, void (*fn)(void *ud), void (*cancelled)(void *ud), void *ud);

/* Thread-safe: queues fn(ud) to run on the loop thread (from a module's own
 * thread, for instance a storage driver's). */
void xmppd_loop_post(void (*fn)(void *ud), void *ud);

/* Watch a file descriptor (drivers with their own sockets, e.g. libpq).
 * events: XMPPD_IO_READ | XMPPD_IO_WRITE; fn gets the ready events. The
 * watch persists until removed; removed automatically when m unloads. */
enum { XMPPD_IO_READ = 1, XMPPD_IO_WRITE = 2 };
typedef struct xmppd_io xmppd_io;
xmppd_io *xmppd_io_add(xmppd_module *m, int fd, int events, void (*fn)(int fd, int ready, void *ud), void *ud);
/* xmppd_io_add: the watch, or NULL on OOM / when m is unloading. modify: 0
 * or -1; remove frees the watch (not the fd, which stays the module's). */
int xmppd_io_modify(xmppd_io *io, int events);
void xmppd_io_remove(xmppd_io *io);

#endif
