/* Control commands (api/xmppd/ctl.h) as the control socket sees them. The
 * kernel registers its own commands with xmppd_ctl_command(NULL, ...): its
 * handlers get the whole request object instead of "args". */
#ifndef XMPPD_CORE_CTL_H
#define XMPPD_CORE_CTL_H

#include <jansson.h>
#include "xmppd/ctl.h"

/* Where an answer goes: resp is a new reference (NULL: out of memory). */
typedef void (*ctl_answer_fn)(void *ud, json_t *resp);

/* What ctl_run returns when the request was answered before it returned
 * and is gone already (never a valid request). */
#define CTL_ANSWERED ((xmppd_ctl_request *)-1)

/* Runs command name for the request object req; answer(ud, resp) runs
 * exactly once, possibly before ctl_run returns. Returns NULL when no
 * command has that name (answer never runs); otherwise a value that is
 * the request in flight as long as the answer has not come (a caller that
 * saw its answer run must not use it). */
xmppd_ctl_request *ctl_run(const char *name, const json_t *req, ctl_answer_fn answer, void *ud);
/* Answers r with resp as it is (the kernel's handlers: resp carries its
 * own "ok"); r is invalid afterwards. */
void ctl_answer(xmppd_ctl_request *r, json_t *resp);
/* The asker is gone: the request's answer will be dropped. */
void ctl_forget(xmppd_ctl_request *r);
/* Every registered command, kernel's first, in registration order. */
void ctl_foreach(void (*fn)(const char *name, const char *usage, const char *help,
                            const xmppd_module *m, void *ud), void *ud);

#endif
