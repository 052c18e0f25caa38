/* Control commands on accounts of the running server: deluser, passwd,
 * disable and enable (control.h). xmppctl uses them while the server runs, so that the change
 * reaches the sessions; on a stopped server it changes the data itself.
 *
 *   -> {"command": "deluser", "jid": "user@host"}
 *   -> {"command": "passwd", "jid": "user@host", "password": "..."}
 *   -> {"command": "disable", "jid": "user@host", "reason": "..."}  (reason optional)
 *   -> {"command": "enable", "jid": "user@host"}
 *   <- {"ok": true, "sessions_closed": N}   or {"ok": false, "error": "user unknown"}
 * (errors without the command and JID: the asker knows them)
 *
 * deluser ends the account's sessions (<not-authorized/> "Account
 * deleted"), waits until they are gone, so that nothing they write at
 * logout (last activity, presence state) outlives the purge, then removes
 * the account and its data (the kernel's xmppd_auth_remove purges every
 * store). A session that slipped in meanwhile is ended afterwards.
 * passwd sets the password, then ends every session of the account with
 * <reset/> (RFC 6120 §4.9.3.16: credentials changed), as Prosody does for
 * the sessions other than the one that changed it (xmppctl has none).
 * disable bars the account from logging in (the provider's set_disabled;
 * RFC 6120 §6.5.1 <account-disabled/> at its next login), then ends its
 * sessions with <not-authorized/> "Account disabled"; enable lets it in
 * again. */
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/control.h"
#include "core/ctl.h"
#include "core/loop.h"
#include "net/xstream.h"
#include "session/session.h"

/* Sessions closing before a deletion: longer than a stream's closing grace. */
#define DRAIN_TIMEOUT_MS (XSTREAM_CLOSE_GRACE_MS + 3000)
#define DRAIN_POLL_MS 50

enum account_cmd { AC_DELUSER, AC_PASSWD, AC_DISABLE, AC_ENABLE };
static const char *const ac_names[] = { "deluser", "passwd", "disable", "enable" };

typedef struct account_op {
    xmppd_ctl_request *req;
    enum account_cmd cmd;
    char *host;             /* domain: hosts may go away on a reload */
    char *node;
    char *password;         /* passwd: wiped and freed once used */
    int closed;             /* sessions ended */
    uint64_t drain_deadline;
    struct event *timer;
} account_op;

static void op_free(account_op *op)
{
    if (op->timer)
        event_free(op->timer);
    if (op->password) {
        xmppd_wipe(op->password, strlen(op->password));
        free(op->password);
    }
    free(op->host);
    free(op->node);
    free(op);
}

static void op_answer(account_op *op, json_t *resp)
{
    ctl_answer(op->req, resp ? resp : control_fail("out of memory"));
    op_free(op);
}

/* ---- ending sessions ---------------------------------------------------------------------- */

typedef struct collected {
    xmppd_session **v; /* referenced */
    size_t n, cap;
} collected;

static int collect_open(xmppd_session *s, void *ud)
{
    collected *c = ud;
    if (xmppd_session_closed(s))
        return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        xmppd_session **v = realloc(c->v, cap * sizeof(*v));
        if (!v)
            return 1;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = xmppd_session_ref(s);
    return 0;
}

/* Ends every open session of the account; returns how many. Collected
 * first: closing while the table is walked would change it. */
static int end_sessions(account_op *op, const char *condition, const char *text)
{
    xmppd_host *h = xmppd_host_find(op->host);
    collected c = { 0 };
    if (h)
        xmppd_user_sessions(h, op->node, collect_open, &c);
    for (size_t i = 0; i < c.n; i++) {
        const xmppd_jid *j = xmppd_session_jid(c.v[i]);
        log_kernel("control", XMPPD_LOG_INFO, "%s: ending session %s", ac_names[op->cmd],
                   j ? j->full : op->node);
        xmppd_session_close(c.v[i], condition, text);
        xmppd_session_unref(c.v[i]);
    }
    free(c.v);
    op->closed += (int)c.n;
    return (int)c.n;
}

static int count_one(xmppd_session *s, void *ud)
{
    return 0; /* xmppd_user_sessions counts */
}

/* ---- deluser ----------------------------------------------------------------------------- */

static void on_removed(int result, void *ud)
{
    account_op *op = ud;
    if (result != XMPPD_AUTH_OK) {
        op_answer(op, control_fail("%s", xmppd_auth_result_str(result)));
        return;
    }
    end_sessions(op, "not-authorized", "Account deleted");
    log_kernel("control", XMPPD_LOG_INFO, "deluser %s@%s: account and its data removed", op->node,
               op->host);
    op_answer(op, json_pack("{s:b, s:i}", "ok", 1, "sessions_closed", op->closed));
}

static void remove_now(account_op *op)
{
    xmppd_host *h = xmppd_host_find(op->host);
    if (!h) {
        op_answer(op, control_fail("unknown host"));
        return;
    }
    xmppd_auth_remove(NULL, h, op->node, on_removed, op);
}

/* Waits until the account's sessions left the table (their logout hooks
 * ran), or the drain deadline passed. */
static void on_drain_check(evutil_socket_t fd, short what, void *arg)
{
    account_op *op = arg;
    xmppd_host *h = xmppd_host_find(op->host);
    int left = h ? xmppd_user_sessions(h, op->node, count_one, NULL) : 0;
    if (left > 0 && xmppd_now_ms() < op->drain_deadline) {
        struct timeval tv = { 0, DRAIN_POLL_MS * 1000 };
        evtimer_add(op->timer, &tv);
        return;
    }
    if (left > 0)
        log_kernel("control", XMPPD_LOG_WARN, "deluser %s@%s: %d session(s) still closing; "
                   "removing the account anyway", op->node, op->host, left);
    remove_now(op);
}

static void cmd_deluser(account_op *op)
{
    end_sessions(op, "not-authorized", "Account deleted");
    op->drain_deadline = xmppd_now_ms() + DRAIN_TIMEOUT_MS;
    op->timer = evtimer_new(loop_base(), on_drain_check, op);
    if (!op->timer) {
        op_answer(op, NULL);
        return;
    }
    on_drain_check(-1, 0, op);
}

/* ---- passwd ------------------------------------------------------------------------------ */

static void on_password_set(int result, void *ud)
{
    account_op *op = ud;
    if (result != XMPPD_AUTH_OK) {
        op_answer(op, control_fail("%s", xmppd_auth_result_str(result)));
        return;
    }
    end_sessions(op, "reset", "Password changed");
    log_kernel("control", XMPPD_LOG_INFO, "passwd %s@%s: password changed, %d session(s) ended",
               op->node, op->host, op->closed);
    op_answer(op, json_pack("{s:b, s:i}", "ok", 1, "sessions_closed", op->closed));
}

/* ---- disable / enable ------------------------------------------------------------------------ */

static void on_disabled_set(int result, void *ud)
{
    account_op *op = ud;
    if (result != XMPPD_AUTH_OK) {
        op_answer(op, control_fail("%s", result == XMPPD_AUTH_UNSUPPORTED
                                             ? "the host's auth provider cannot disable accounts"
                                             : xmppd_auth_result_str(result)));
        return;
    }
    if (op->cmd == AC_DISABLE)
        end_sessions(op, "not-authorized", "Account disabled");
    log_kernel("control", XMPPD_LOG_INFO, "%s %s@%s: done, %d session(s) ended", ac_names[op->cmd],
               op->node, op->host, op->closed);
    op_answer(op, json_pack("{s:b, s:i}", "ok", 1, "sessions_closed", op->closed));
}

/* ---- the commands --------------------------------------------------------------------------- */

static void run_account_command(xmppd_ctl_request *req, const json_t *args, void *ud)
{
    enum account_cmd cmd = (enum account_cmd)(intptr_t)ud;
    const char *s = json_string_value(json_object_get(args, "jid"));
    const char *pw = cmd == AC_PASSWD ? json_string_value(json_object_get(args, "password")) : NULL;
    const char *reason = json_string_value(json_object_get(args, "reason"));
    if (!s) {
        ctl_answer(req, control_fail("which account? (\"jid\": \"user@host\")"));
        return;
    }
    if (cmd == AC_PASSWD && !pw) {
        ctl_answer(req, control_fail("no \"password\""));
        return;
    }
    xmppd_jid *jid = xmppd_jid_parse(s);
    xmppd_host *h = jid && jid->node && !jid->resource ? xmppd_host_find(jid->domain) : NULL;
    if (!h) {
        ctl_answer(req, control_fail(jid && jid->node && !jid->resource
                                        ? "unknown host"
                                        : "not an account address (user@host)"));
        xmppd_jid_free(jid);
        return;
    }
    account_op *op = calloc(1, sizeof(*op));
    if (op) {
        op->req = req;
        op->cmd = cmd;
        op->host = strdup(jid->domain);
        op->node = strdup(jid->node);
        op->password = pw ? strdup(pw) : NULL;
    }
    xmppd_jid_free(jid);
    if (!op || !op->host || !op->node || (pw && !op->password)) {
        ctl_answer(req, control_fail("out of memory"));
        if (op)
            op_free(op);
        return;
    }
    switch (cmd) {
    case AC_DELUSER: cmd_deluser(op); break;
    case AC_PASSWD: xmppd_auth_set_password(NULL, h, op->node, op->password, on_password_set, op); break;
    case AC_DISABLE:
    case AC_ENABLE:
        xmppd_auth_set_disabled(NULL, h, op->node, cmd == AC_DISABLE, reason, on_disabled_set, op);
        break;
    }
}

void control_accounts_register(void)
{
    xmppd_ctl_command(NULL, "deluser", NULL, "delete an account, end its sessions, purge its data",
                      run_account_command, (void *)(intptr_t)AC_DELUSER);
    xmppd_ctl_command(NULL, "passwd", NULL, "change a password and end the account's sessions",
                      run_account_command, (void *)(intptr_t)AC_PASSWD);
    xmppd_ctl_command(NULL, "disable", NULL, "bar an account from logging in and end its sessions",
                      run_account_command, (void *)(intptr_t)AC_DISABLE);
    xmppd_ctl_command(NULL, "enable", NULL, "let a disabled account log in again",
                      run_account_command, (void *)(intptr_t)AC_ENABLE);
}
