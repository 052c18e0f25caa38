/* Commands of `xmppctl` served by modules of the running server.
 *
 * `xmppctl [-j] NAME [ARG...]` asks the running server, through its control
 * socket, {"command": NAME, "args": [ARG...]}; a module that registered
 * NAME answers with a JSON object. xmppctl prints its "text" (lines for a
 * person) or, with -j, the whole object; a failure is one line on stderr
 * and exit status 1. `xmppctl --help` of a running server lists every
 * registered command with its usage and help line. */
#ifndef XMPPD_CTL_H
#define XMPPD_CTL_H

#include <jansson.h>
#include "module.h"

/* One request in flight: kernel-owned, valid until answered. */
typedef struct xmppd_ctl_request xmppd_ctl_request;

/* args: the arguments as a JSON array of strings (borrowed for the call).
 * The handler answers exactly once, now or later, with xmppd_ctl_reply or
 * xmppd_ctl_error. If m unloads first, the kernel answers the request
 * itself (an error) and the request is no longer valid: a module that keeps
 * requests drops them when "unload" comes (their memory is the kernel's). */
typedef void (*xmppd_ctl_fn)(xmppd_ctl_request *req, const json_t *args, void *ud);

/* Registers command name (lower-case letters, digits, '-'; not one of the
 * kernel's commands) for m, from load() on; released when m unloads. usage
 * shows the arguments ("JID [REASON]", may be NULL), help is one line. The
 * same name on several hosts is served by the first instance that
 * registered it. 0, or -1 on a bad or taken name, OOM, or m unloading.
 * Strings are copied. */
int xmppd_ctl_command(xmppd_module *m, const char *name, const char *usage, const char *help,
                      xmppd_ctl_fn fn, void *ud);

/* Answers req with result (a JSON object, consumed; NULL: {}); "ok": true
 * is added. req is invalid afterwards. */
void xmppd_ctl_reply(xmppd_ctl_request *req, json_t *result);
/* Answers req with a failure: one line, formatted, no secrets. */
void xmppd_ctl_error(xmppd_ctl_request *req, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Runs a control command inside the server (ABI 2.5), for modules that
 * offer what xmppctl does over another channel (the HTTP admin API).
 * req is the request object xmppctl would send, without "command": the
 * kernel's commands read their fields ({"jid": "u@h"} for "deluser" and
 * "kick", {"module": "x", "host": "h"} for "module-reload"; `xmppctl -j`
 * shows them), a module's command reads "args" (an array of strings).
 * cb runs exactly once, never inside this call: XMPPD_CTL_DONE with the
 * answer (borrowed for the call: "ok" true or false, "error" a line; NULL
 * when it could not be built), or XMPPD_CTL_CANCELLED (resp NULL) when m
 * unloads first, before its unload(). 0, or -1 (cb never runs): no such
 * command, OOM, m unloading. Nothing is checked about who asks: the
 * caller decides who may run what. */
enum { XMPPD_CTL_DONE = 0, XMPPD_CTL_CANCELLED = -2 };
typedef void (*xmppd_ctl_result_cb)(int status, const json_t *resp, void *ud);
int xmppd_ctl_run(xmppd_module *m, const char *name, const json_t *req, xmppd_ctl_result_cb cb,
                  void *ud);

#endif
