/* The control socket: a Unix stream socket (mode 0600, only the server's
 * own user or root may talk to it) on which xmppctl asks the running
 * server for its status and to change it. Protocol: one JSON object per
 * line each way, handled on the event loop (docs/modules.md, "Control
 * socket"):
 *
 *   -> {"command": "module-reload", "module": "roster", "host": "example.org"}
 *   <- {"ok": true, "message": "..."}     or {"ok": false, "error": "one line"}
 *
 * Commands: status, sessions, module-list, module-load, module-unload,
 * module-reload (module, optional host), reload, kick (jid, optional
 * reason), hooks, features; deluser and passwd (accounts.c, answered
 * once the auth provider did its work). */
#ifndef XMPPD_CONTROL_H
#define XMPPD_CONTROL_H

#include <jansson.h>
#include <stddef.h>

#include "core/config.h"

/* Longest request line accepted (bytes, newline included). */
#define CONTROL_MAX_LINE (32 << 20) /* xmppctl import sends accounts in batches of up to 8 MiB */
/* Connections served at once; more are answered with an error and closed. */
#define CONTROL_MAX_CONNS 16

/* Listens on cfg->control_socket (nothing when it is NULL). A stale socket
 * file left by a crashed server is replaced; a path where a server answers,
 * or that is not a socket, is an error. 0, or -1 with a one-line message. */
int control_start(const xmppd_config *cfg, char *err, size_t errlen);
/* Closes the listener and every control connection, removes the file. */
void control_stop(void);

/* Handles one request (a parsed JSON object) and returns the response
 * object (new reference, never NULL unless out of memory). Exposed for
 * unit tests. */
json_t *control_handle(const json_t *req);

/* {"ok": false, "error": the formatted line} (new reference; NULL on OOM). */
json_t *control_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* accounts.c: registers deluser and passwd. */
void control_accounts_register(void);

/* SIGHUP and `xmppctl reload`: re-reads the configuration file and applies
 * it (modules, hosts, TLS, log, control socket path). 0 applied; 1 in
 * force but a module failed to load (err says which; the instance it would
 * replace keeps running); -1 refused, nothing changed (err says why). */
int server_reload(char *err, size_t errlen);

#endif
