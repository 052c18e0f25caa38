/* auth_external: accounts checked by an external program speaking
 * ejabberd's extauth protocol, so that sites can keep their scripts.
 *
 * Protocol (on the program's stdin/stdout): each request is a 2-byte
 * big-endian length followed by that many bytes, "auth:USER:HOST:PASSWORD",
 * "isuser:USER:HOST", "setpass:USER:HOST:PASSWORD",
 * "tryregister:USER:HOST:PASSWORD" or "removeuser:USER:HOST"; each answer is
 * a 2-byte length (2) and a 2-byte big-endian result, 1 for yes, 0 for no.
 *
 * A pool of `processes` programs runs, each with one request in flight;
 * the others wait in a FIFO queue (at most queue_max). Pipes are
 * non-blocking and watched by the event loop. A program that exits, closes
 * its stdout, answers garbage or takes longer than `timeout` is killed and
 * reaped (waitpid), its request answered XMPPD_AUTH_INTERNAL (the client
 * hears temporary-auth-failure), and a new one is started (at once, or
 * after restart_delay when it died young, so a broken program does not
 * spin). Only PLAIN can be served: the program checks passwords.
 *
 * Ownership: an ae_req owns its request frame (wiped: it holds a password);
 * it belongs to the queue, then to the process running it, until answered. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "xmppd/xmppd.h"

#define AE_TICK_MS 100
#define AE_YOUNG_MS 2000 /* died sooner than this after start: restart after restart_delay */

typedef struct ae_conf {
    const char *program;
    const char *const *args;
    long long processes;
    long long timeout;       /* ms */
    long long restart_delay; /* ms */
    long long queue_max;
    bool read_only;
} ae_conf;

static const xmppd_option ae_options[] = {
    { "program", XMPPD_OPT_PATH, XMPPD_OFF(ae_conf, program), NULL, 0, 0, NULL, XMPPD_OPT_REQUIRED,
      "the extauth program (ejabberd protocol); relative to the configuration file's folder" },
    { "args", XMPPD_OPT_LIST, XMPPD_OFF(ae_conf, args), "[]", 0, 0, NULL, 0,
      "arguments given to the program" },
    { "processes", XMPPD_OPT_INT, XMPPD_OFF(ae_conf, processes), "2", 1, 32, NULL, 0,
      "programs run at once, each answering one request at a time" },
    { "timeout", XMPPD_OPT_DURATION, XMPPD_OFF(ae_conf, timeout), "5s", 100, 300000, NULL, 0,
      "a program that takes longer to answer is killed and restarted (the login fails temporarily)" },
    { "restart_delay", XMPPD_OPT_DURATION, XMPPD_OFF(ae_conf, restart_delay), "1s", 0, 60000, NULL, 0,
      "pause before restarting a program that died within 2 seconds of its start" },
    { "queue_max", XMPPD_OPT_INT, XMPPD_OFF(ae_conf, queue_max), "1000", 1, 1000000, NULL, 0,
      "requests waiting for a free program; more fail at once" },
    { "read_only", XMPPD_OPT_BOOL, XMPPD_OFF(ae_conf, read_only), "false", 0, 0, NULL, 0,
      "do not offer account creation, password changes and deletion (the program lacks them)" },
    { NULL }
};

enum ae_op { AE_AUTH, AE_ISUSER, AE_SETPASS, AE_REGISTER, AE_REMOVE };

typedef struct ae_req ae_req;
struct ae_req {
    ae_req *next;
    enum ae_op op;
    unsigned char *frame; /* length prefix + request (secret) */
    size_t len;
    uint64_t queued_at;
    int result;           /* for deferred answers */
    xmppd_auth_cb cb;
    void *ud;
};

typedef struct ae_ctx ae_ctx;

typedef struct ae_proc {
    ae_ctx *ctx;
    int index;
    pid_t pid;             /* 0: not running */
    int to_fd, from_fd;    /* our ends: its stdin, its stdout */
    xmppd_io *in_io, *out_io;
    ae_req *cur;
    size_t sent;           /* bytes of cur->frame written */
    unsigned char rbuf[4];
    size_t rlen;
    uint64_t started_ms, sent_ms;
    xmppd_timer *restart;
} ae_proc;

struct ae_ctx {
    xmppd_module *m;
    const ae_conf *conf;
    const char *host;
    char **argv;           /* program, args..., NULL */
    ae_proc *procs;
    int n_procs;
    ae_req *queue, **queue_tail;
    size_t queued;
    ae_req *later, **later_tail; /* answered on the next loop turn */
    xmppd_timer *later_timer;
    xmppd_timer *tick;
    xmppd_auth_provider provider;
};

static void ae_proc_start(ae_proc *p);
static void ae_dispatch(ae_ctx *ctx);

/* ---- requests ---- */

static void ae_req_free(ae_req *r)
{
    if (r->frame) {
        xmppd_wipe(r->frame, r->len);
        free(r->frame);
    }
    free(r);
}

static void ae_answer(ae_req *r, int result)
{
    r->cb(result, r->ud);
    ae_req_free(r);
}

static uint64_t ae_later_fired(void *ud)
{
    ae_ctx *ctx = ud;
    ctx->later_timer = NULL;
    while (ctx->later) {
        ae_req *r = ctx->later;
        ctx->later = r->next;
        if (!ctx->later)
            ctx->later_tail = &ctx->later;
        ae_answer(r, r->result);
    }
    return 0;
}

/* Answers r on a later loop turn (never inside the provider call). */
static void ae_answer_later(ae_ctx *ctx, ae_req *r, int result)
{
    r->result = result;
    r->next = NULL;
    *ctx->later_tail = r;
    ctx->later_tail = &r->next;
    if (!ctx->later_timer && !(ctx->later_timer = xmppd_timer_add(ctx->m, 0, ae_later_fired, ctx)))
        xmppd_log(ctx->m, XMPPD_LOG_ERROR, "out of memory: an account request is not answered");
}

/* ---- processes ---- */

static void ae_proc_close_fds(ae_proc *p)
{
    xmppd_io_remove(p->in_io);
    xmppd_io_remove(p->out_io);
    p->in_io = p->out_io = NULL;
    if (p->to_fd >= 0)
        close(p->to_fd);
    if (p->from_fd >= 0)
        close(p->from_fd);
    p->to_fd = p->from_fd = -1;
}

/* Kills (if still running) and reaps the process. */
static int ae_proc_reap(ae_proc *p)
{
    int status = 0;
    if (p->pid <= 0)
        return 0;
    pid_t r = waitpid(p->pid, &status, WNOHANG);
    if (r == 0) {
        kill(p->pid, SIGKILL);
        while ((r = waitpid(p->pid, &status, 0)) < 0 && errno == EINTR)
            ;
    }
    p->pid = 0;
    return status;
}

static uint64_t ae_restart_fired(void *ud)
{
    ae_proc *p = ud;
    p->restart = NULL;
    ae_proc_start(p);
    ae_dispatch(p->ctx);
    return 0;
}

/* The program failed (why): kill and reap it, fail its request, start
 * another. */
static void ae_proc_fail(ae_proc *p, const char *why)
{
    ae_ctx *ctx = p->ctx;
    pid_t pid = p->pid;
    ae_proc_close_fds(p);
    int status = ae_proc_reap(p);
    char how[64] = "";
    if (WIFEXITED(status))
        snprintf(how, sizeof how, ", exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(how, sizeof how, ", killed by signal %d", WTERMSIG(status));
    xmppd_log(ctx->m, XMPPD_LOG_WARN, "external auth program (pid %d) %s%s: restarting it", (int)pid, why, how);
    ae_req *r = p->cur;
    p->cur = NULL;
    if (r)
        ae_answer_later(ctx, r, XMPPD_AUTH_INTERNAL);
    bool young = xmppd_now_ms() - p->started_ms < AE_YOUNG_MS;
    uint64_t delay = young ? (uint64_t)ctx->conf->restart_delay : 0;
    if (!p->restart && !(p->restart = xmppd_timer_add(ctx->m, delay, ae_restart_fired, p)))
        xmppd_log(ctx->m, XMPPD_LOG_ERROR, "out of memory: external auth program not restarted");
}

static void ae_in_ready(int fd, int ready, void *ud);

static void ae_write_some(ae_proc *p)
{
    ae_req *r = p->cur;
    while (p->sent < r->len) {
        ssize_t n = write(p->to_fd, r->frame + p->sent, r->len - p->sent);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!p->in_io)
                p->in_io = xmppd_io_add(p->ctx->m, p->to_fd, XMPPD_IO_WRITE, ae_in_ready, p);
            return;
        }
        if (n <= 0) {
            ae_proc_fail(p, "stopped reading its input");
            return;
        }
        p->sent += (size_t)n;
    }
    /* all written: the password need not stay in memory */
    xmppd_wipe(r->frame, r->len);
    xmppd_io_remove(p->in_io);
    p->in_io = NULL;
}

static void ae_in_ready(int fd, int ready, void *ud)
{
    ae_proc *p = ud;
    if (p->cur && p->sent < p->cur->len)
        ae_write_some(p);
}

static int ae_result_of(enum ae_op op, int yes)
{
    switch (op) {
    case AE_AUTH: return yes ? XMPPD_AUTH_OK : XMPPD_AUTH_MISMATCH;
    case AE_ISUSER: return yes ? XMPPD_AUTH_OK : XMPPD_AUTH_USER_UNKNOWN;
    case AE_SETPASS: return yes ? XMPPD_AUTH_OK : XMPPD_AUTH_INVALID;
    case AE_REGISTER: return yes ? XMPPD_AUTH_OK : XMPPD_AUTH_EXISTS;
    case AE_REMOVE: return yes ? XMPPD_AUTH_OK : XMPPD_AUTH_USER_UNKNOWN;
    }
    return XMPPD_AUTH_INTERNAL;
}

static void ae_out_ready(int fd, int ready, void *ud)
{
    ae_proc *p = ud;
    for (;;) {
        ssize_t n = read(p->from_fd, p->rbuf + p->rlen, sizeof p->rbuf - p->rlen);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            ae_proc_fail(p, n == 0 ? "exited (end of its output)" : "output unreadable");
            return;
        }
        p->rlen += (size_t)n;
        if (p->rlen < sizeof p->rbuf)
            continue;
        unsigned len = (unsigned)p->rbuf[0] << 8 | p->rbuf[1];
        unsigned val = (unsigned)p->rbuf[2] << 8 | p->rbuf[3];
        if (!p->cur || len != 2 || val > 1) {
            ae_proc_fail(p, p->cur ? "answered outside the protocol" : "answered a question not asked");
            return;
        }
        p->rlen = 0;
        ae_req *r = p->cur;
        p->cur = NULL;
        ae_answer(r, ae_result_of(r->op, (int)val));
        ae_dispatch(p->ctx);
        return;
    }
}

/* Starts the program with pipes on its stdin and stdout. */
static void ae_proc_start(ae_proc *p)
{
    ae_ctx *ctx = p->ctx;
    int in[2] = { -1, -1 }, out[2] = { -1, -1 };
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
        xmppd_log(ctx->m, XMPPD_LOG_ERROR, "cannot start the external auth program: pipe: %s", strerror(errno));
        goto fail;
    }
    pid_t pid = fork();
    if (pid < 0) {
        xmppd_log(ctx->m, XMPPD_LOG_ERROR, "cannot start the external auth program: fork: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        /* child: only async-signal-safe calls until exec */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0)
            _exit(126);
        close_range(3, ~0U, 0); /* no client socket or listener leaks into it */
        execv(ctx->argv[0], ctx->argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    p->pid = pid;
    p->to_fd = in[1];
    p->from_fd = out[0];
    p->rlen = 0;
    p->started_ms = xmppd_now_ms();
    fcntl(p->to_fd, F_SETFL, fcntl(p->to_fd, F_GETFL) | O_NONBLOCK);
    fcntl(p->from_fd, F_SETFL, fcntl(p->from_fd, F_GETFL) | O_NONBLOCK);
    if (!(p->out_io = xmppd_io_add(ctx->m, p->from_fd, XMPPD_IO_READ, ae_out_ready, p))) {
        ae_proc_fail(p, "could not be watched");
        return;
    }
    xmppd_log(ctx->m, XMPPD_LOG_DEBUG, "external auth program %d started (pid %d)", p->index, (int)pid);
    return;
fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
    }
    if (!p->restart)
        p->restart = xmppd_timer_add(ctx->m, ctx->conf->restart_delay ? (uint64_t)ctx->conf->restart_delay : 1000,
                                     ae_restart_fired, p);
}

/* Hands queued requests to idle programs. */
static void ae_dispatch(ae_ctx *ctx)
{
    for (int i = 0; i < ctx->n_procs && ctx->queue; i++) {
        ae_proc *p = &ctx->procs[i];
        if (p->pid <= 0 || p->cur)
            continue;
        ae_req *r = ctx->queue;
        ctx->queue = r->next;
        if (!ctx->queue)
            ctx->queue_tail = &ctx->queue;
        ctx->queued--;
        r->next = NULL;
        p->cur = r;
        p->sent = 0;
        p->sent_ms = xmppd_now_ms();
        ae_write_some(p);
    }
}

static uint64_t ae_tick(void *ud)
{
    ae_ctx *ctx = ud;
    uint64_t now = xmppd_now_ms();
    uint64_t to = (uint64_t)ctx->conf->timeout;
    for (int i = 0; i < ctx->n_procs; i++) {
        ae_proc *p = &ctx->procs[i];
        if (p->pid > 0 && p->cur && now - p->sent_ms > to)
            ae_proc_fail(p, "did not answer in time");
    }
    /* requests waiting too long for a program (all busy or restarting) */
    ae_req **pp = &ctx->queue;
    while (*pp) {
        ae_req *r = *pp;
        if (now - r->queued_at > to) {
            *pp = r->next;
            ctx->queued--;
            xmppd_log(ctx->m, XMPPD_LOG_WARN, "external auth request timed out waiting for a program");
            ae_answer_later(ctx, r, XMPPD_AUTH_INTERNAL);
        } else {
            pp = &r->next;
        }
    }
    ctx->queue_tail = pp;
    ae_dispatch(ctx);
    return AE_TICK_MS;
}

/* ---- provider ---- */

/* Queues "cmd:user:host[:password]". */
static void ae_submit(ae_ctx *ctx, enum ae_op op, const char *cmd, const char *user, const char *password,
                      xmppd_auth_cb cb, void *ud)
{
    ae_req *r = calloc(1, sizeof *r);
    if (!r) {
        xmppd_log(ctx->m, XMPPD_LOG_ERROR, "out of memory: account request dropped");
        return;
    }
    r->op = op;
    r->cb = cb;
    r->ud = ud;
    r->queued_at = xmppd_now_ms();
    size_t body = strlen(cmd) + 1 + strlen(user ? user : "") + 1 + strlen(ctx->host) +
                  (password ? 1 + strlen(password) : 0);
    if (!user || !*user || (password && !*password) || body > 0xffff) {
        ae_answer_later(ctx, r, op == AE_AUTH ? XMPPD_AUTH_MISMATCH : op == AE_ISUSER || op == AE_REMOVE
                                                                    ? XMPPD_AUTH_USER_UNKNOWN
                                                                    : XMPPD_AUTH_INVALID);
        return;
    }
    if (!(r->frame = malloc(body + 3))) {
        ae_answer_later(ctx, r, XMPPD_AUTH_INTERNAL);
        return;
    }
    r->frame[0] = (unsigned char)(body >> 8);
    r->frame[1] = (unsigned char)(body & 0xff);
    snprintf((char *)r->frame + 2, body + 1, "%s:%s:%s%s%s", cmd, user, ctx->host, password ? ":" : "",
             password ? password : "");
    r->len = body + 2;
    if (ctx->queued >= (size_t)ctx->conf->queue_max) {
        xmppd_log(ctx->m, XMPPD_LOG_WARN, "external auth queue full (%zu requests)", ctx->queued);
        ae_answer_later(ctx, r, XMPPD_AUTH_INTERNAL);
        return;
    }
    *ctx->queue_tail = r;
    ctx->queue_tail = &r->next;
    ctx->queued++;
    ae_dispatch(ctx);
}

static unsigned ae_mechanisms(void *pd)
{
    return XMPPD_AUTH_CAN_PLAIN;
}

static void ae_verify_plain(void *pd, const char *user, const char *password, xmppd_auth_cb cb, void *ud)
{
    ae_submit(pd, AE_AUTH, "auth", user, password ? password : "", cb, ud);
}

typedef struct ae_nokeys {
    xmppd_auth_scram_cb cb;
    void *ud;
} ae_nokeys;

static uint64_t ae_nokeys_fired(void *ud)
{
    ae_nokeys *n = ud;
    n->cb(XMPPD_AUTH_NO_SCHEME, NULL, n->ud);
    free(n);
    return 0;
}

/* The program checks passwords; it has no SCRAM keys to give. */
static void ae_get_scram(void *pd, const char *user, enum xmppd_hash h, xmppd_auth_scram_cb cb, void *ud)
{
    ae_ctx *ctx = pd;
    ae_nokeys *n = malloc(sizeof *n);
    if (!n || !xmppd_timer_add(ctx->m, 0, ae_nokeys_fired, n)) {
        free(n);
        xmppd_log(ctx->m, XMPPD_LOG_ERROR, "out of memory: account request dropped");
        return;
    }
    n->cb = cb;
    n->ud = ud;
}

static void ae_exists(void *pd, const char *user, xmppd_auth_cb cb, void *ud)
{
    ae_submit(pd, AE_ISUSER, "isuser", user, NULL, cb, ud);
}

static void ae_create(void *pd, const char *user, const char *password, xmppd_auth_cb cb, void *ud)
{
    char *prepped = user ? xmppd_nodeprep(user) : NULL;
    bool ok = prepped && strcmp(prepped, user) == 0;
    free(prepped);
    ae_submit(pd, AE_REGISTER, "tryregister", ok ? user : "", password ? password : "", cb, ud);
}

static void ae_set_password(void *pd, const char *user, const char *password, xmppd_auth_cb cb, void *ud)
{
    ae_submit(pd, AE_SETPASS, "setpass", user, password ? password : "", cb, ud);
}

static void ae_remove(void *pd, const char *user, xmppd_auth_cb cb, void *ud)
{
    ae_submit(pd, AE_REMOVE, "removeuser", user, NULL, cb, ud);
}

/* ---- module ---- */

static void ae_ctx_free(ae_ctx *ctx)
{
    for (int i = 0; ctx->procs && i < ctx->n_procs; i++) {
        ae_proc *p = &ctx->procs[i];
        if (p->cur)
            ae_req_free(p->cur);
        /* closing its stdin ends a well-behaved program; a few ms, then kill */
        if (p->to_fd >= 0)
            close(p->to_fd);
        if (p->from_fd >= 0)
            close(p->from_fd);
        if (p->pid > 0) {
            for (int k = 0; k < 20 && waitpid(p->pid, NULL, WNOHANG) == 0; k++) {
                struct timespec ts = { 0, 5 * 1000 * 1000 };
                nanosleep(&ts, NULL);
                if (k == 19) {
                    kill(p->pid, SIGKILL);
                    waitpid(p->pid, NULL, 0);
                }
            }
        }
    }
    free(ctx->procs);
    while (ctx->queue) {
        ae_req *r = ctx->queue;
        ctx->queue = r->next;
        ae_req_free(r);
    }
    while (ctx->later) {
        ae_req *r = ctx->later;
        ctx->later = r->next;
        ae_req_free(r);
    }
    free(ctx->argv);
    free(ctx);
}

static int ae_load(xmppd_module *m, const void *conf)
{
    const ae_conf *c = conf;
    ae_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return -1;
    ctx->m = m;
    ctx->conf = c;
    ctx->host = xmppd_host_name(xmppd_module_host(m));
    ctx->queue_tail = &ctx->queue;
    ctx->later_tail = &ctx->later;
    size_t nargs = 0;
    while (c->args && c->args[nargs])
        nargs++;
    ctx->n_procs = (int)c->processes;
    if (!(ctx->argv = calloc(nargs + 2, sizeof *ctx->argv)) ||
        !(ctx->procs = calloc((size_t)ctx->n_procs, sizeof *ctx->procs))) {
        ae_ctx_free(ctx);
        return -1;
    }
    ctx->argv[0] = (char *)c->program;
    for (size_t i = 0; i < nargs; i++)
        ctx->argv[i + 1] = (char *)c->args[i];
    if (access(c->program, X_OK) != 0) {
        xmppd_log(m, XMPPD_LOG_ERROR, "option program: %s: %s", c->program, strerror(errno));
        ae_ctx_free(ctx);
        return -1;
    }
    ctx->provider = (xmppd_auth_provider){
        .version = XMPPD_AUTH_PROVIDER_VERSION,
        .size = sizeof(xmppd_auth_provider),
        .name = "external",
        .mechanisms = ae_mechanisms,
        .verify_plain = ae_verify_plain,
        .get_scram = ae_get_scram,
        .exists = ae_exists,
        .create = c->read_only ? NULL : ae_create,
        .set_password = c->read_only ? NULL : ae_set_password,
        .remove = c->read_only ? NULL : ae_remove,
    };
    for (int i = 0; i < ctx->n_procs; i++)
        ctx->procs[i] = (ae_proc){ .ctx = ctx, .index = i, .to_fd = -1, .from_fd = -1 };
    if (xmppd_auth_provide(m, &ctx->provider, ctx) != 0) {
        xmppd_log(m, XMPPD_LOG_ERROR, "this host already has an auth provider");
        ae_ctx_free(ctx);
        return -1;
    }
    if (!(ctx->tick = xmppd_timer_add(m, AE_TICK_MS, ae_tick, ctx))) {
        ae_ctx_free(ctx);
        return -1;
    }
    xmppd_module_set_data(m, ctx);
    for (int i = 0; i < ctx->n_procs; i++)
        ae_proc_start(&ctx->procs[i]);
    xmppd_log(m, XMPPD_LOG_INFO, "accounts checked by %s (%d processes)", c->program, ctx->n_procs);
    return 0;
}

/* The kernel has released our watches and timers: stop the programs and
 * free what is left (the kernel answers pending consumers). */
static void ae_unload(xmppd_module *m)
{
    ae_ctx *ctx = xmppd_module_data(m);
    if (!ctx)
        return;
    for (int i = 0; i < ctx->n_procs; i++) {
        ctx->procs[i].in_io = ctx->procs[i].out_io = NULL;
        ctx->procs[i].restart = NULL;
    }
    xmppd_module_set_data(m, NULL);
    ae_ctx_free(ctx);
}

XMPPD_MODULE(auth_external,
    .version = "1.0",
    .summary = "accounts checked by an external program (ejabberd extauth protocol)",
    .options = ae_options,
    .conf_size = sizeof(ae_conf),
    .load = ae_load,
    .unload = ae_unload);
