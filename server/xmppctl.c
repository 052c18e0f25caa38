/* xmppctl: the admin command line. It carries the whole kernel: user
 * commands start the configured modules (storage and auth providers, no
 * listeners), run one account operation through the host's auth provider on
 * the event loop, and stop the modules again, which flushes storage.
 *
 * Exit status: 0 done, 1 failed (one line on stderr), 2 bad usage.
 * Passwords are read with echo off (or one line from a non-terminal stdin),
 * never printed, and wiped after use. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "config.h"
#include "net.h"

#define PROG "xmppctl"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " PROG " [-c FILE] COMMAND\n"
            "  -c FILE                    configuration (default: $XMPPD_CONFIG or " XMPPD_SYSCONF_DIR
            "/xmppd.json)\n"
            "commands:\n"
            "  check                      validate the configuration and module options\n"
            "  options [MODULE] [--markdown]\n"
            "                             list module options with type, default and meaning\n"
            "  adduser JID                create an account (asks for the password)\n"
            "  deluser JID                delete an account and everything stored for it\n"
            "  passwd JID                 change an account's password\n"
            "  users [HOST]               list the accounts of one host or of all\n");
}

/* One-line failure: "xmppctl: CONTEXT: message". Returns 1. */
static int fail(const char *context, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const char *context, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, PROG ": ");
    if (context)
        fprintf(stderr, "%s: ", context);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
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

static const char *g_config_path;
static bool g_config_explicit; /* -c or $XMPPD_CONFIG */

static xmppd_config *load_config(void)
{
    char err[1024];
    xmppd_config *cfg = config_load(g_config_path, err, sizeof err);
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
}

/* ---- commands ---- */

static int cmd_check(void)
{
    char err[1024];
    xmppd_config *cfg = load_config();
    if (!cfg)
        return 1;
    int rc = modules_check(cfg, err, sizeof err);
    if (rc < 0)
        fail(NULL, "%s", err);
    else
        printf("%s: OK\n", cfg->path);
    config_free(cfg);
    return rc < 0 ? 1 : 0;
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

enum user_cmd { UC_ADD, UC_DEL, UC_PASSWD };

/* adduser / deluser / passwd JID. */
static int cmd_user(enum user_cmd which, const char *name, const char *arg)
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
    if (!cfg)
        goto out;
    if (!config_has_host(cfg, jid->domain)) {
        fail(context, "unknown host");
        goto out;
    }
    if (which != UC_DEL && !(pw = get_password(context)))
        goto out;
    if (start_modules(cfg) != 0)
        goto stop;
    if (!(h = xmppd_host_find(jid->domain))) {
        fail(context, "unknown host");
        goto stop;
    }
    if (which == UC_ADD)
        xmppd_auth_create(h, jid->node, pw, on_result, &st);
    else if (which == UC_PASSWD)
        xmppd_auth_set_password(h, jid->node, pw, on_result, &st);
    else
        xmppd_auth_remove(h, jid->node, on_result, &st);
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
    xmppd_auth_list(h, on_list, &st);
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

int main(int argc, char **argv)
{
    const char *env = getenv("XMPPD_CONFIG");
    g_config_path = env && *env ? env : XMPPD_SYSCONF_DIR "/xmppd.json";
    g_config_explicit = env && *env;
    int opt;
    while ((opt = getopt(argc, argv, "+c:h")) != -1) {
        switch (opt) {
        case 'c':
            g_config_path = optarg;
            g_config_explicit = true;
            break;
        case 'h':
            usage(stdout);
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
    if (strcmp(cmd, "options") == 0)
        return cmd_options(nargs, args);
    if (strcmp(cmd, "adduser") == 0 && nargs == 1)
        return cmd_user(UC_ADD, cmd, args[0]);
    if (strcmp(cmd, "deluser") == 0 && nargs == 1)
        return cmd_user(UC_DEL, cmd, args[0]);
    if (strcmp(cmd, "passwd") == 0 && nargs == 1)
        return cmd_user(UC_PASSWD, cmd, args[0]);
    if (strcmp(cmd, "users") == 0 && nargs <= 1)
        return cmd_users(nargs ? args[0] : NULL);
    if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
