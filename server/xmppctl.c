/* xmppctl: the admin command line. It carries the whole kernel: user
 * commands start the configured modules (storage and auth providers, no
 * listeners), run one account operation through the host's auth provider on
 * the event loop, and stop the modules again, which flushes storage.
 *
 * Exit status: 0 done, 1 failed (one line on stderr), 2 bad usage.
 * Passwords are read with echo off (or one line from a non-terminal stdin),
 * never printed, and wiped after use. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "core/catalogue.h"
#include "core/config.h"
#include "core/ctl.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "core/options.h"
#include "core/preflight.h"
#include "session/session.h"
#include "xmppctl.h"



static void usage(FILE *out)
{
    fprintf(out,
            "usage: " PROG " [-c FILE] [-s SOCKET] [-j] COMMAND\n"
            "  -c FILE                    configuration (default: $XMPPD_CONFIG or " XMPPD_SYSCONF_DIR
            "/xmppd.json)\n"
            "commands:\n"
            "  check                      validate the configuration and what a start needs on\n"
            "                             this machine (data_dir, certificates, ports): every\n"
            "                             error at once; warns of hosts without RFC 6121 modules\n"
            "  cert [HOST]                the certificate each host presents: names, expiry, key\n"
            "  options [NAME] [--markdown]\n"
            "                             every key with type, default and meaning: the\n"
            "                             server's own (NAME \"server\") and each module's\n"
            "  adduser JID [--password-file FILE|--password PW]\n"
            "                             create an account (asks for the password, or reads\n"
            "                             the first line of FILE, \"-\": standard input)\n"
            "  deluser JID                delete an account and everything stored for it\n"
            "  passwd JID [--password-file FILE|--password PW]\n"
            "                             change an account's password\n"
            "  disable JID [--reason TEXT]\n"
            "                             bar an account from logging in (RFC 6120\n"
            "                             account-disabled) and end its sessions; data stays\n"
            "  enable JID                 let a disabled account log in again\n"
            "  users [HOST]               list the accounts of one host or of all\n"
            "commands of modules (running server, or its data when it is stopped):\n"
            "  roster JID list            an account's contacts (mod_roster)\n"
            "  roster JID add CONTACT [--name N] [--group G]... [--subscription S]\n"
            "  roster JID remove CONTACT\n"
            "  export [HOST|JID] FILE     accounts and their data as a XEP-0227 file (mode 0600;\n"
            "                             mod_xep0227): keys, roster, vCard, private XML, offline\n"
            "                             messages, PEP, archive\n"
            "  import FILE...             XEP-0227 files (Prosody, ejabberd, xmppd); accounts that\n"
            "                             exist are skipped; prints what was not imported and why\n"
            "  import-csv FILE            accounts from JID,PASSWORD lines, in batches\n"
            "commands for the running server (through its control socket):\n"
            "  status                     version, uptime, hosts, sessions, modules\n"
            "  sessions                   bound sessions: JID, address, TLS, presence\n"
            "  module list                loaded modules, per host\n"
            "  module load NAME [HOST]    load a module (options from the configuration file)\n"
            "  module unload NAME [HOST]  unload a module (and the modules depending on it)\n"
            "  module reload NAME [HOST]  replace a module by a new instance, sessions stay up;\n"
            "                             if the new one fails, the running one is kept\n"
            "  reload                     re-read the configuration (like SIGHUP)\n"
            "  kick JID [REASON]          end a session (full JID) or all of an account's\n"
            "  hooks                      events, their handlers and priorities, IQ handlers\n"
            "  features                   RFCs/XEPs implemented, XEP-0479 compliance levels\n"
            "  cluster status             the cluster's live nodes: version, sessions, components\n"
            "offline documentation:\n"
            "  hooks --markdown           the event reference of docs/modules.md\n"
            "options for the server commands:\n"
            "  -s SOCKET                  control socket (default: control_socket of the\n"
            "                             configuration, DATA_DIR/xmppd.sock)\n"
            "  -j                         print the server's JSON answer as it is\n");
}

static bool g_quiet; /* probing the server for --help: no error lines */
static const char *g_socket_path; /* -s */

int fail(const char *context, const char *fmt, ...)
{
    if (g_quiet)
        return 1;
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* One message may hold several error lines: each gets the prefix. */
    for (char *line = msg, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        fprintf(stderr, PROG ": %s%s%s\n", context ? context : "", context ? ": " : "", line);
    }
    return 1;
}

/* ---- passwords ---- */

static struct termios g_saved_tty;
static volatile sig_atomic_t g_tty_changed;

static void restore_tty(void)
{
    if (g_tty_changed) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &g_saved_tty);
        g_tty_changed = 0;
    }
}

static void on_signal_during_prompt(int sig)
{
    restore_tty();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Reads one line from stdin into a malloc'd string without its newline;
 * NULL at EOF or on error. */
static char *read_line(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        if (line)
            xmppd_wipe(line, cap);
        free(line);
        return NULL;
    }
    if (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    if (n > 0 && line[n - 1] == '\r')
        line[--n] = '\0';
    return line;
}

static void free_secret(char *s)
{
    if (s) {
        xmppd_wipe(s, strlen(s));
        free(s);
    }
}

/* Prompts with echo off and reads a line. */
static char *prompt_hidden(const char *prompt)
{
    struct termios off;
    if (tcgetattr(STDIN_FILENO, &g_saved_tty) != 0)
        return NULL;
    off = g_saved_tty;
    off.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    off.c_lflag |= ICANON;
    fputs(prompt, stderr);
    fflush(stderr);
    g_tty_changed = 1;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &off) != 0) {
        g_tty_changed = 0;
        return NULL;
    }
    char *line = read_line();
    restore_tty();
    fputc('\n', stderr);
    return line;
}

/* The new password: asked twice on a terminal, else one line of stdin.
 * NULL after printing why. Caller frees with free_secret. */
static char *get_password(const char *context)
{
    if (!isatty(STDIN_FILENO)) {
        char *pw = read_line();
        if (!pw)
            fail(context, "no password on standard input");
        else if (!*pw) {
            fail(context, "empty password");
            free_secret(pw);
            pw = NULL;
        }
        return pw;
    }
    signal(SIGINT, on_signal_during_prompt);
    signal(SIGTERM, on_signal_during_prompt);
    char *pw = prompt_hidden("Password: ");
    char *again = pw && *pw ? prompt_hidden("Password again: ") : NULL;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (!pw || !*pw) {
        fail(context, "empty password");
    } else if (!again || strcmp(pw, again) != 0) {
        fail(context, "passwords do not match");
    } else {
        free_secret(again);
        return pw;
    }
    free_secret(pw);
    free_secret(again);
    return NULL;
}

/* ---- running one asynchronous operation ---- */

typedef struct op_state {
    bool done;
    int result;
    const char *host;   /* users: the host being listed */
} op_state;

static void on_result(int result, void *ud)
{
    op_state *st = ud;
    st->result = result;
    st->done = true;
    loop_break();
}

static void on_list(int result, const char *const *users, size_t n, void *ud)
{
    op_state *st = ud;
    for (size_t i = 0; result == XMPPD_AUTH_OK && i < n; i++)
        printf("%s@%s\n", users[i], st->host);
    on_result(result, ud);
}

static int wait_result(op_state *st)
{
    while (!st->done)
        loop_run();
    return st->result;
}

/* ---- configuration and modules ---- */

const char *g_config_path;
static bool g_config_explicit; /* -c or $XMPPD_CONFIG */

xmppd_config *load_config(void)
{
    char err[1024];
    xmppd_config *cfg = config_read(g_config_path, err, sizeof err);
    if (!cfg)
        fail(NULL, "%s", err);
    return cfg;
}

static bool config_has_host(const xmppd_config *cfg, const char *domain)
{
    for (size_t i = 0; i < cfg->n_hosts; i++)
        if (strcmp(cfg->hosts[i].name, domain) == 0)
            return true;
    return false;
}

/* Starts the loop and every module of cfg (no listeners). */
static int start_modules(xmppd_config *cfg)
{
    char err[1024];
    if (log_open(NULL, XMPPD_LOG_WARN) < 0 || loop_init() < 0)
        return fail(NULL, "cannot create the event loop");
    session_layer_init();
    if (modules_start(cfg, err, sizeof err) < 0)
        return fail(NULL, "%s", err);
    return 0;
}

/* Unloads the modules (storage flushes its writes) and frees the loop. */
static void stop_modules(void)
{
    modules_stop();
    if (loop_base())
        loop_free();
    metrics_free_all();
}

/* ---- commands ---- */

static bool server_running(void);

/* Every error of the file, the server's keys and the modules' alike, and
 * what would fail at start on this machine (preflight.h): all at once.
 * Warnings (a host without the RFC 6121 modules, a certificate about to
 * expire) are printed when there is no error, and pass. */
static int cmd_check(void)
{
    opt_errors errs = { 0 }, warns = { 0 };
    xmppd_config *cfg = config_load(g_config_path, true, &errs);
    bool running = false;
    if (cfg) {
        modules_check(cfg, &errs, &warns);
        /* A running server holds its own ports: only a stopped one's are
         * tried. Its socket is the file's, even when the file has errors. */
        const char *given = g_socket_path;
        if (!g_socket_path)
            g_socket_path = cfg->control_socket;
        running = g_socket_path && server_running();
        g_socket_path = given;
        preflight_check(cfg, !running, &errs, &warns);
    }
    /* Warnings once the errors are fixed: they would drown them. */
    for (size_t i = 0; errs.n == 0 && i < warns.n; i++)
        fprintf(stderr, PROG ": warning: %s\n", warns.lines[i]);
    for (size_t i = 0; i < errs.n; i++)
        fail(NULL, "%s", errs.lines[i]);
    if (cfg && errs.n == 0)
        printf("%s: OK%s\n", cfg->path, running ? " (the server is running: ports not tried)" : "");
    else if (errs.n > 1)
        fprintf(stderr, PROG ": %zu errors\n", errs.n);
    int rc = cfg && errs.n == 0 ? 0 : 1;
    opt_errors_free(&errs);
    opt_errors_free(&warns);
    config_free(cfg);
    return rc;
}

/* What each host presents: certificate, names, validity, key. */
static int cmd_cert(const char *host)
{
    xmppd_config *cfg = load_config();
    if (!cfg)
        return 1;
    char *domain = host ? xmppd_nameprep(host) : NULL;
    int rc = host && !domain ? (fail("cert", "%s: not a domain name", host), 2)
                             : preflight_cert_report(cfg, domain, stdout);
    free(domain);
    config_free(cfg);
    return rc;
}

static int cmd_options(int argc, char **argv)
{
    const char *only = NULL;
    bool markdown = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--markdown") == 0)
            markdown = true;
        else if (!only && argv[i][0] != '-')
            only = argv[i];
        else {
            usage(stderr);
            return 2;
        }
    }
    /* the module path comes from the configuration when there is one */
    xmppd_config *cfg = NULL;
    if (g_config_explicit || access(g_config_path, F_OK) == 0) {
        if (!(cfg = load_config()))
            return 1;
    }
    int rc = modules_print_options(cfg, only, markdown, stdout);
    config_free(cfg);
    return rc < 0 ? 1 : 0; /* the loader printed why */
}

/* The first line of path ("-": standard input), for --password-file. NULL
 * after printing why. Caller frees with free_secret. */
static char *password_from_file(const char *context, const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) {
        fail(context, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    if (f != stdin)
        fclose(f);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (n <= 0) {
        if (line)
            xmppd_wipe(line, cap);
        free(line);
        fail(context, "%s: no password on its first line", path);
        return NULL;
    }
    return line;
}

enum user_cmd { UC_ADD, UC_DEL, UC_PASSWD, UC_DISABLE, UC_ENABLE };
static const char *const uc_commands[] = { "adduser", "deluser", "passwd", "disable", "enable" };

static char *socket_path(const char *context);
static json_t *server_run(const char *context, json_t *req, int *rc);

/* The control socket of a running server, or NULL when none answers (the
 * server is stopped: xmppctl changes its data itself). Caller frees. */
static char *running_server(void)
{
    g_quiet = true;
    char *path = socket_path(NULL);
    g_quiet = false;
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (!path || strlen(path) >= sizeof(sun.sun_path)) {
        free(path);
        return NULL;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool up = fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    if (fd >= 0)
        close(fd);
    if (!up) {
        free(path);
        return NULL;
    }
    return path;
}

/* deluser / passwd / disable / enable on the running server, which ends
 * the account's sessions (admin/accounts.c). pw is borrowed (passwd
 * only), reason too (disable only; may be NULL). */
static int user_online(enum user_cmd which, const char *context, const char *jid, const char *pw,
                       const char *reason)
{
    int rc;
    json_t *req = json_pack("{s:s, s:s, s:s?, s:s?}", "command", uc_commands[which], "jid", jid,
                            "password", pw, "reason", reason);
    json_t *r = server_run(context, req, &rc);
    if (r) {
        long long n = json_integer_value(json_object_get(r, "sessions_closed"));
        if (n)
            printf("%lld session%s ended\n", n, n == 1 ? "" : "s");
        json_decref(r);
    }
    return rc;
}

/* adduser / deluser / passwd JID [--password-file FILE | --password PW];
 * disable JID [--reason TEXT]; enable JID. */
static int cmd_user(enum user_cmd which, const char *name, const char *arg, int nopts, char **opts)
{
    char context[512];
    snprintf(context, sizeof context, "%s %s", name, arg);
    xmppd_jid *jid = xmppd_jid_parse(arg);
    if (!jid || !jid->node || jid->resource) {
        xmppd_jid_free(jid);
        return fail(context, "not an account address (user@host)");
    }
    xmppd_config *cfg = load_config();
    xmppd_host *h = NULL;
    op_state st = { 0 };
    int rc = 1;
    char *pw = NULL;
    const char *reason = NULL;
    bool needs_pw = which == UC_ADD || which == UC_PASSWD;
    if (!cfg)
        goto out;
    if (!config_has_host(cfg, jid->domain)) {
        fail(context, "unknown host");
        goto out;
    }
    if (which == UC_DISABLE && nopts == 2 && strcmp(opts[0], "--reason") == 0) {
        reason = opts[1];
    } else if (!needs_pw && nopts > 0) {
        usage(stderr);
        rc = 2;
        goto out;
    } else if (needs_pw && nopts == 2 && strcmp(opts[0], "--password-file") == 0) {
        if (!(pw = password_from_file(context, opts[1])))
            goto out;
    } else if (needs_pw && nopts == 2 && strcmp(opts[0], "--password") == 0) {
        /* For scripts; visible in the process list: --password-file is safer. */
        if (!*opts[1]) {
            fail(context, "empty password");
            goto out;
        }
        if (!(pw = strdup(opts[1])))
            goto out;
    } else if (nopts != 0) {
        usage(stderr);
        rc = 2;
        goto out;
    } else if (needs_pw && !(pw = get_password(context))) {
        goto out;
    }
    char *running = which != UC_ADD ? running_server() : NULL;
    if (running) {
        free(running);
        rc = user_online(which, context, jid->bare, pw, reason);
        goto out;
    }
    if (start_modules(cfg) != 0)
        goto stop;
    if (!(h = xmppd_host_find(jid->domain))) {
        fail(context, "unknown host");
        goto stop;
    }
    if (which == UC_ADD)
        xmppd_auth_create(NULL, h, jid->node, pw, on_result, &st);
    else if (which == UC_PASSWD)
        xmppd_auth_set_password(NULL, h, jid->node, pw, on_result, &st);
    else if (which == UC_DISABLE || which == UC_ENABLE)
        xmppd_auth_set_disabled(NULL, h, jid->node, which == UC_DISABLE, reason, on_result, &st);
    else
        xmppd_auth_remove(NULL, h, jid->node, on_result, &st);
    int result = wait_result(&st);
    if (result == XMPPD_AUTH_OK)
        rc = 0;
    else
        fail(context, "%s", xmppd_auth_result_str(result));
stop:
    stop_modules();
out:
    free_secret(pw);
    config_free(cfg);
    xmppd_jid_free(jid);
    return rc;
}

static int list_host(xmppd_host *h)
{
    op_state st = { .host = xmppd_host_name(h) };
    xmppd_auth_list(NULL, h, on_list, &st);
    int result = wait_result(&st);
    if (result != XMPPD_AUTH_OK) {
        char context[300];
        snprintf(context, sizeof context, "users %s", xmppd_host_name(h));
        fail(context, "%s", xmppd_auth_result_str(result));
        return -1;
    }
    return 0;
}

static int list_each(xmppd_host *h, void *ud)
{
    int *rc = ud;
    if (list_host(h) != 0)
        *rc = 1;
    return 0;
}

static int cmd_users(const char *host)
{
    char *domain = host ? xmppd_nameprep(host) : NULL;
    char context[300];
    snprintf(context, sizeof context, "users %s", host ? host : "");
    int rc = 1;
    xmppd_config *cfg = NULL;
    if (host && !domain) {
        fail(context, "not a domain name");
        goto out;
    }
    if (!(cfg = load_config()))
        goto out;
    if (domain && !config_has_host(cfg, domain)) {
        fail(context, "unknown host");
        goto out;
    }
    if (start_modules(cfg) != 0)
        goto stop;
    if (domain) {
        xmppd_host *h = xmppd_host_find(domain);
        rc = h && list_host(h) == 0 ? 0 : 1;
    } else {
        rc = 0;
        xmppd_host_foreach(list_each, &rc);
    }
    fflush(stdout);
stop:
    stop_modules();
out:
    config_free(cfg);
    free(domain);
    return rc;
}

/* ---- the running server: control socket ---- */

bool g_json;                      /* -j */

#define CONTROL_TIMEOUT_MS 120000 /* a reload of many modules can take a while */

/* The socket to use: -s, else the configuration's control_socket. NULL
 * after printing why. Caller frees. */
static char *socket_path(const char *context)
{
    if (g_socket_path)
        return strdup(g_socket_path);
    char err[1024];
    xmppd_config *cfg = config_read(g_config_path, err, sizeof err);
    if (!cfg) {
        fail(context, "%s", err);
        return NULL;
    }
    char *p = cfg->control_socket ? strdup(cfg->control_socket) : NULL;
    if (!cfg->control_socket)
        fail(context, "%s: \"control_socket\" is false: the running server cannot be reached",
             cfg->path);
    config_free(cfg);
    return p;
}

/* Sends req (consumed) and returns the answer, or NULL after printing a
 * one-line error. */
static json_t *ctl_call(const char *context, json_t *req)
{
    char *path = socket_path(context);
    char *line = req ? json_dumps(req, JSON_COMPACT) : NULL;
    size_t line_len = line ? strlen(line) : 0; /* the newline replaces its NUL */
    json_decref(req);
    json_t *resp = NULL;
    int fd = -1;
    if (!path || !line)
        goto out;
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sun.sun_path)) {
        fail(context, "%s: path too long for a Unix socket", path);
        goto out;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int e = errno;
        if (e == ENOENT || e == ECONNREFUSED)
            fail(context, "cannot reach xmppd at %s: %s (is the server running?)", path,
                 strerror(e));
        else if (e == EACCES || e == EPERM)
            fail(context, "cannot reach xmppd at %s: %s (run as the server's user)", path,
                 strerror(e));
        else
            fail(context, "cannot reach xmppd at %s: %s", path, strerror(e));
        goto out;
    }
    size_t len = line_len, off = 0;
    line[len++] = '\n'; /* json_dumps left room: its NUL */
    while (off < len) {
        ssize_t w = write(fd, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fail(context, "%s: %s", path, strerror(errno));
            goto out;
        }
        off += (size_t)w;
    }
    /* one line back */
    size_t cap = 65536, got = 0;
    char *buf = malloc(cap);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (buf) {
        char *nl = got ? memchr(buf, '\n', got) : NULL;
        if (nl) {
            json_error_t je;
            resp = json_loadb(buf, (size_t)(nl - buf), 0, &je);
            if (!resp)
                fail(context, "%s: unreadable answer: %s", path, je.text);
            break;
        }
        if (got == cap) {
            char *nb = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                fail(context, "%s: answer too long", path);
                break;
            }
            buf = nb;
            cap *= 2;
        }
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long waited = (long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        struct pollfd pfd = { fd, POLLIN, 0 };
        int pr = waited < CONTROL_TIMEOUT_MS ? poll(&pfd, 1, (int)(CONTROL_TIMEOUT_MS - waited)) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0) {
            fail(context, "%s: no answer within %d s", path, CONTROL_TIMEOUT_MS / 1000);
            break;
        }
        ssize_t r = pr > 0 ? read(fd, buf + got, cap - got) : -1;
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fail(context, "%s: the server closed the connection without an answer", path);
            break;
        }
        got += (size_t)r;
    }
    free(buf);
out:
    if (fd >= 0)
        close(fd);
    if (line)
        xmppd_wipe(line, line_len + 1); /* passwd sends a password */
    free(line);
    free(path);
    return resp;
}

/* Runs a request; prints the raw answer with -j. Returns the answer when
 * it says ok (caller decrefs), else NULL after printing its error (with
 * context before it; reload's answers are whole sentences). */
/* An answer (consumed; NULL: none came, and why was printed): printed as
 * it is with -j; returned when it says ok, else NULL after printing its
 * error after context. *rc gets the exit status. */
static json_t *take_answer(const char *context, json_t *resp, int *rc)
{
    *rc = 1;
    if (!resp)
        return NULL;
    if (g_json) {
        char *t = json_dumps(resp, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (t)
            printf("%s\n", t);
        free(t);
    }
    if (!json_is_true(json_object_get(resp, "ok"))) {
        const char *e = json_string_value(json_object_get(resp, "error"));
        fail(context, "%s", e ? e : "the server refused");
        json_decref(resp);
        return NULL;
    }
    *rc = 0;
    if (g_json) {
        json_decref(resp);
        return NULL;
    }
    return resp;
}

static json_t *server_run(const char *context, json_t *req, int *rc)
{
    bool reload = strcmp(context, "reload") == 0;
    return take_answer(reload ? NULL : context, ctl_call(reload ? "reload refused" : context, req), rc);
}

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static long long num(const json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static void print_duration(long long s)
{
    if (s >= 86400)
        printf("%lldd ", s / 86400);
    printf("%02lld:%02lld:%02lld", s % 86400 / 3600, s % 3600 / 60, s % 60);
}

static int cmd_status(void)
{
    int rc;
    json_t *r = server_run("status", json_pack("{s:s}", "command", "status"), &rc);
    if (!r)
        return rc;
    printf("xmppd %s (pid %lld), up ", str(r, "version"), num(r, "pid"));
    print_duration(num(r, "uptime"));
    printf("\nconfiguration: %s\n", str(r, "config"));
    printf("sessions: %lld\n", num(r, "sessions"));
    printf("modules: %lld loaded (%lld global)\n", num(r, "modules_loaded"), num(r, "global_modules"));
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(r, "hosts"), i, h)
        printf("host %s: %lld sessions, %lld modules\n", str(h, "host"), num(h, "sessions"),
               num(h, "modules"));
    json_decref(r);
    return 0;
}

static int cmd_sessions(void)
{
    int rc;
    json_t *r = server_run("sessions", json_pack("{s:s}", "command", "sessions"), &rc);
    if (!r)
        return rc;
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(r, "sessions"), i, s) {
        bool avail = json_is_true(json_object_get(s, "available"));
        printf("%s\t%s\t%s\t%s", str(s, "jid"), str(s, "ip"),
               json_is_true(json_object_get(s, "secure")) ? "tls" : "plain",
               avail ? "available" : "unavailable");
        if (avail)
            printf("\tpriority %lld%s%s", num(s, "priority"), *str(s, "show") ? "\t" : "",
                   str(s, "show"));
        printf("\n");
    }
    json_decref(r);
    return 0;
}

/* The nodes this node sees alive (refreshed at every heartbeat). */
static int cmd_cluster_status(void)
{
    int rc;
    json_t *r = server_run("cluster status", json_pack("{s:s}", "command", "cluster-status"), &rc);
    if (!r)
        return rc;
    printf("cluster %s, Redis %s\n", str(r, "cluster"), str(r, "redis"));
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(r, "nodes"), i, n) {
        printf("%s\t%s\t%lld sessions%s\n", str(n, "node"), str(n, "version"), num(n, "sessions"),
               json_is_true(json_object_get(n, "self")) ? "\t(this node)" : "");
        /* one indented line per attached component, so each node's first
         * line keeps its form */
        size_t k;
        json_t *c;
        json_array_foreach(json_object_get(n, "components"), k, c)
            printf("\tcomponent %s\n", json_string_value(c) ? json_string_value(c) : "");
    }
    json_decref(r);
    return 0;
}

static int cmd_module(int argc, char **argv)
{
    if (argc == 1 && strcmp(argv[0], "list") == 0) {
        int rc;
        json_t *r = server_run("module list", json_pack("{s:s}", "command", "module-list"), &rc);
        if (!r)
            return rc;
        size_t i;
        json_t *m;
        json_array_foreach(json_object_get(r, "modules"), i, m)
            printf("%-20s %-24s %-8s %s\n", str(m, "module"),
                   json_is_string(json_object_get(m, "host")) ? str(m, "host") : "(global)",
                   str(m, "version"), *str(m, "file") ? str(m, "file") : "(built in)");
        json_decref(r);
        return 0;
    }
    static const char *const ops[] = { "load", "unload", "reload" };
    size_t k = 0;
    while (argc >= 1 && k < 3 && strcmp(argv[0], ops[k]) != 0)
        k++;
    if (argc < 2 || argc > 3 || k == 3) {
        usage(stderr);
        return 2;
    }
    char context[512], command[32];
    snprintf(context, sizeof context, "module %s %s%s%s", ops[k], argv[1], argc == 3 ? " " : "",
             argc == 3 ? argv[2] : "");
    snprintf(command, sizeof command, "module-%s", ops[k]);
    int rc;
    json_t *r = server_run(context, json_pack("{s:s, s:s, s:s?}", "command", command, "module",
                                           argv[1], "host", argc == 3 ? argv[2] : NULL), &rc);
    if (r) {
        printf("%s\n", str(r, "message"));
        json_decref(r);
    }
    return rc;
}

static int cmd_reload(void)
{
    int rc;
    json_t *r = server_run("reload", json_pack("{s:s}", "command", "reload"), &rc);
    if (r) {
        printf("%s\n", str(r, "message"));
        json_decref(r);
    }
    return rc;
}

static int cmd_kick(const char *jid, const char *reason)
{
    char context[600];
    snprintf(context, sizeof context, "kick %s", jid);
    int rc;
    json_t *r = server_run(context, json_pack("{s:s, s:s, s:s?}", "command", "kick", "jid", jid,
                                           "reason", reason), &rc);
    if (r) {
        long long n = num(r, "kicked");
        printf("%lld session%s closed\n", n, n == 1 ? "" : "s");
        json_decref(r);
    }
    return rc;
}

static int cmd_hooks(int argc, char **argv)
{
    if (argc == 1 && strcmp(argv[0], "--markdown") == 0) {
        catalogue_print_markdown(stdout);
        return 0;
    }
    if (argc != 0) {
        usage(stderr);
        return 2;
    }
    int rc;
    json_t *r = server_run("hooks", json_pack("{s:s}", "command", "hooks"), &rc);
    if (!r)
        return rc;
    size_t i, j;
    json_t *e, *h;
    json_array_foreach(json_object_get(r, "events"), i, e) {
        const json_t *src = json_object_get(e, "source");
        printf("%s  (%s; %s)\n", str(e, "name"),
               json_is_string(json_object_get(e, "stop")) ? str(e, "stop") : "?",
               json_is_string(src) ? str(e, "source") : "declared by nobody: nothing fires it");
        if (*str(e, "payload"))
            printf("    carries: %s\n", str(e, "payload"));
        if (json_array_size(json_object_get(e, "handlers")) == 0)
            printf("    (no handlers)\n");
        json_array_foreach(json_object_get(e, "handlers"), j, h)
            printf("    %6lld  %-20s %s\n", num(h, "priority"), str(h, "module"),
                   json_is_string(json_object_get(h, "host")) ? str(h, "host") : "(every host)");
    }
    printf("IQ handlers:\n");
    json_array_foreach(json_object_get(r, "iq_handlers"), i, h)
        printf("    %-4s %-44s to %-4s %-20s %s\n", str(h, "type"), str(h, "xmlns"), str(h, "target"),
               str(h, "module"),
               json_is_string(json_object_get(h, "host")) ? str(h, "host") : "(every host)");
    json_decref(r);
    return 0;
}

static int cmd_features(void)
{
    int rc;
    json_t *r = server_run("features", json_pack("{s:s}", "command", "features"), &rc);
    if (!r)
        return rc;
    size_t i, j, k;
    json_t *h, *sp, *b;
    json_array_foreach(json_object_get(r, "hosts"), i, h) {
        printf("%s\n", str(h, "host"));
        json_array_foreach(json_object_get(h, "specs"), j, sp) {
            printf("  %-10s ", str(sp, "spec"));
            json_array_foreach(json_object_get(sp, "by"), k, b)
                printf("%s%s", k ? ", " : "", json_string_value(b));
            printf("\n");
        }
        printf("  %s:\n", str(r, "suite"));
        json_array_foreach(json_object_get(h, "suites"), j, sp) {
            printf("    %-12s %-16s ", str(sp, "category"), str(sp, "level"));
            if (json_is_true(json_object_get(sp, "reached"))) {
                printf("reached\n");
                continue;
            }
            printf("missing:");
            json_array_foreach(json_object_get(sp, "missing"), k, b) {
                printf("%s %s (", k ? ";" : "", str(b, "feature"));
                size_t m;
                json_t *p;
                json_array_foreach(json_object_get(b, "providers"), m, p)
                    printf("%s%s", m ? (json_is_true(json_object_get(b, "any")) ? " or " : ", ") : "",
                           json_string_value(p));
                printf(")%s%s", *str(b, "note") ? ": " : "", str(b, "note"));
            }
            printf("\n");
        }
    }
    json_decref(r);
    return 0;
}

/* ---- commands of modules (api/xmppd/ctl.h), running server or not ---- */

/* Does a server answer on the control socket? Quiet. */
/* The commands of the running server (a new reference), or NULL when no
 * server answers on the control socket. Quiet. */
static json_t *server_commands(void)
{
    g_quiet = true;
    json_t *r = ctl_call("probe", json_pack("{s:s}", "command", "commands"));
    g_quiet = false;
    return r;
}

static bool server_running(void)
{
    char *path = running_server();
    free(path);
    return path != NULL;
}

static bool g_unknown_command; /* in-process: no module serves the command */

typedef struct inproc_answer {
    bool done;
    json_t *resp;
} inproc_answer;

static void on_inproc_answer(void *ud, json_t *resp)
{
    inproc_answer *a = ud;
    a->resp = resp;
    a->done = true;
    loop_break();
}

/* ---- a session with the modules: the running server or this process ---- */

/* Opens s: with a server running, its control socket; otherwise the
 * configured modules start here (no listeners) on the server's data, and
 * module commands run on this process's loop as they would in the server.
 * 0, or 1 after printing why. */
int ms_open(msession *s)
{
    memset(s, 0, sizeof(*s));
    if (server_running())
        return 0;
    if (!(s->cfg = load_config()))
        return 1;
    if (start_modules(s->cfg) != 0) {
        stop_modules();
        config_free(s->cfg);
        s->cfg = NULL;
        return 1;
    }
    s->inproc = true;
    return 0;
}

void ms_close(msession *s)
{
    if (s->inproc) {
        stop_modules(); /* storage flushes */
        config_free(s->cfg);
    }
    memset(s, 0, sizeof(*s));
}

/* Runs request req (consumed) in this process. */
static json_t *inproc_call(const char *context, json_t *req)
{
    inproc_answer a = { 0 };
    const char *name = json_string_value(json_object_get(req, "command"));
    xmppd_ctl_request *r = ctl_run(name, req, on_inproc_answer, &a);
    if (!r) {
        fail(context, "unknown command \"%s\": no module of the configuration serves it "
             "(see " PROG " --help)", name);
        json_decref(req);
        g_unknown_command = true;
        return NULL;
    }
    while (!a.done)
        loop_run();
    json_decref(req);
    if (!a.resp)
        fail(context, "out of memory");
    return a.resp;
}

json_t *ms_call(msession *s, const char *context, json_t *req, int *rc)
{
    if (!s->inproc)
        return server_run(context, req, rc);
    return take_answer(context, inproc_call(context, req), rc);
}

/* Runs req (consumed) through the running server, or in this process when
 * no server runs: the answer when it says ok (caller decrefs), else NULL
 * after printing its error; *rc is the exit status (2: no such command). */
static json_t *run_module_command(const char *context, json_t *req, int *rc)
{
    msession s;
    if ((*rc = ms_open(&s)) != 0) {
        json_decref(req);
        return NULL;
    }
    json_t *r = ms_call(&s, context, req, rc);
    ms_close(&s);
    if (!r && g_unknown_command)
        *rc = 2;
    return r;
}

/* Prints an answer: its "text" (lines for a person), else its fields. */
static void print_answer(json_t *r)
{
    const char *text = json_string_value(json_object_get(r, "text"));
    if (text) {
        printf("%s%s", text, *text && text[strlen(text) - 1] != '\n' ? "\n" : "");
    } else {
        json_object_del(r, "ok");
        if (json_object_size(r) > 0) {
            char *t = json_dumps(r, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            if (t)
                printf("%s\n", t);
            free(t);
        }
    }
}

/* A command a module registered (api/xmppd/ctl.h): its arguments go as
 * they are; its "text" is printed. With a server running it answers;
 * otherwise the configured modules run here, on the server's data. */
static int cmd_module_command(const char *name, int argc, char **argv)
{
    /* An unknown word is a usage error, whichever side answers. */
    json_t *probe = server_commands();
    bool known = false;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(probe, "commands"), i, c)
        known = known || strcmp(str(c, "name"), name) == 0;
    json_decref(probe);
    if (probe && !known) {
        fprintf(stderr, PROG ": unknown command \"%s\" (see " PROG " --help)\n", name);
        return 2;
    }
    json_t *args = json_array();
    for (int k = 0; args && k < argc; k++)
        json_array_append_new(args, json_string(argv[k]));
    int rc;
    json_t *r = run_module_command(name, json_pack("{s:s, s:o*}", "command", name, "args", args), &rc);
    if (!r)
        return rc;
    print_answer(r);
    json_decref(r);
    return 0;
}

/* Usage, then the commands the running server's modules add, when a
 * server answers on the socket. */
static void help(void)
{
    usage(stdout);
    g_quiet = true;
    json_t *r = ctl_call("help", json_pack("{s:s}", "command", "commands"));
    g_quiet = false;
    const json_t *list = json_object_get(r, "commands");
    if (json_is_true(json_object_get(r, "ok")) && json_array_size(list) > 0) {
        printf("commands of the running server's modules:\n");
        size_t i;
        json_t *c;
        json_array_foreach(list, i, c) {
            char head[128];
            snprintf(head, sizeof(head), "%s %s", str(c, "name"), str(c, "usage"));
            printf("  %-26s %s (%s)\n", head, str(c, "help"), str(c, "module"));
        }
    }
    json_decref(r);
}

int main(int argc, char **argv)
{
    const char *env = getenv("XMPPD_CONFIG");
    g_config_path = env && *env ? env : XMPPD_SYSCONF_DIR "/xmppd.json";
    g_config_explicit = env && *env;
    int opt;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf(PROG " %s\n", xmppd_server_version());
            return 0;
        }
        if (strcmp(argv[i], "--help") == 0)
            argv[i] = (char *)"-h";
    }
    while ((opt = getopt(argc, argv, "+c:s:jh")) != -1) {
        switch (opt) {
        case 'c':
            g_config_path = optarg;
            g_config_explicit = true;
            break;
        case 's':
            g_socket_path = optarg;
            break;
        case 'j':
            g_json = true;
            break;
        case 'h':
            help();
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;

    if (strcmp(cmd, "check") == 0 && nargs == 0)
        return cmd_check();
    if (strcmp(cmd, "cert") == 0 && nargs <= 1)
        return cmd_cert(nargs ? args[0] : NULL);
    if (strcmp(cmd, "options") == 0)
        return cmd_options(nargs, args);
    if (strcmp(cmd, "adduser") == 0 && nargs >= 1)
        return cmd_user(UC_ADD, cmd, args[0], nargs - 1, args + 1);
    if (strcmp(cmd, "deluser") == 0 && nargs == 1)
        return cmd_user(UC_DEL, cmd, args[0], 0, NULL);
    if (strcmp(cmd, "passwd") == 0 && nargs >= 1)
        return cmd_user(UC_PASSWD, cmd, args[0], nargs - 1, args + 1);
    if (strcmp(cmd, "disable") == 0 && nargs >= 1)
        return cmd_user(UC_DISABLE, cmd, args[0], nargs - 1, args + 1);
    if (strcmp(cmd, "enable") == 0 && nargs == 1)
        return cmd_user(UC_ENABLE, cmd, args[0], 0, NULL);
    if (strcmp(cmd, "export") == 0)
        return cmd_export(nargs, args);
    if (strcmp(cmd, "import") == 0)
        return cmd_import(nargs, args);
    if (strcmp(cmd, "import-csv") == 0)
        return cmd_import_csv(nargs, args);
    if (strcmp(cmd, "users") == 0 && nargs <= 1)
        return cmd_users(nargs ? args[0] : NULL);
    if (strcmp(cmd, "status") == 0 && nargs == 0)
        return cmd_status();
    if (strcmp(cmd, "sessions") == 0 && nargs == 0)
        return cmd_sessions();
    if (strcmp(cmd, "module") == 0 && nargs >= 1)
        return cmd_module(nargs, args);
    if (strcmp(cmd, "reload") == 0 && nargs == 0)
        return cmd_reload();
    if (strcmp(cmd, "kick") == 0 && (nargs == 1 || nargs == 2))
        return cmd_kick(args[0], nargs == 2 ? args[1] : NULL);
    if (strcmp(cmd, "hooks") == 0)
        return cmd_hooks(nargs, args);
    if (strcmp(cmd, "features") == 0 && nargs == 0)
        return cmd_features();
    if (strcmp(cmd, "cluster") == 0 && nargs == 1 && strcmp(args[0], "status") == 0)
        return cmd_cluster_status();
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0) {
        help();
        return 0;
    }
    /* Anything else may be a command of a module of the running server. */
    if (cmd[0] != '-')
        return cmd_module_command(cmd, nargs, args);
    usage(stderr);
    return 2;
}
