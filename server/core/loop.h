/* The kernel's side of the event loop (the module side is api/xmppd/loop.h):
 * start, run, stop, and the libevent base every network layer builds on. */
#ifndef XMPPD_CORE_LOOP_H
#define XMPPD_CORE_LOOP_H

struct event_base;

int loop_init(void);              /* 0 or -1; also starts the worker pool */
void loop_run(void);              /* until loop_break */
void loop_break(void);
void loop_free(void);             /* joins workers */
struct event_base *loop_base(void);

#endif
