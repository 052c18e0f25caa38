/* xmppd: start-up, signals, shutdown. */
#include <event2/event.h>
#include <getopt.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>

#include "admin/control.h"
#include "c2s/c2s.h"
#include "cluster/cluster.h"
#include "core/config.h"
#include "core/http.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "http/http.h"
#include "net/net.h"
#include "s2s/federation.h"
#include "sdnotify.h"
#include "session/session.h"

static struct event *sig_term, *sig_int, *sig_hup;

static void usage(FILE *out)
{
    fprintf(out, "usage: xmppd [-c FILE]\n"
                 "  -c, --config FILE  configuration (default: $XMPPD_CONFIG or " XMPPD_SYSCONF_DIR
                 "/xmppd.json)\n"
                 "  -V, --version      print the version\n"
                 "  -h, --help         this text\n"
                 "Signals: SIGHUP reloads the configuration and reopens the log file; SIGTERM\n"
                 "stops. `xmppctl check` validates a configuration; `man xmppd` tells more.\n");
}

static void on_terminate(evutil_socket_t sig, short what, void *arg)
{
    sd_notify_state("STOPPING=1\nSTATUS=shutting down");
    log_kernel("main", XMPPD_LOG_INFO, "signal %d: shutting down", (int)sig);
    loop_break();
}

/* SIGHUP: the same reload as `xmppctl reload` (control.c server_reload):
 * re-read the configuration, apply module and host changes, reopen the log.
 * A configuration that does not load leaves the running one untouched. */
static void on_reload(evutil_socket_t sig, short what, void *arg)
{
    char err[2048];
    /* systemd (ExecReload) waits for READY=1 after RELOADING=1 */
    sd_notify_state("RELOADING=1\nSTATUS=reloading the configuration");
    if (server_reload(err, sizeof(err)) < 0)
        log_kernel("main", XMPPD_LOG_ERROR, "reload refused: %s", err);
    sd_notify_state("READY=1\nSTATUS=serving");
}

/* Component listeners have no direct TLS (XEP-0114 predates it). */
static void component_acceptor(int fd, const struct sockaddr *sa, int socklen, bool direct_tls)
{
    component_accept(fd, sa, socklen);
}

/* One line per error, each with the program's name. */
static void report(const char *err)
{
    const char *line = err;
    for (;;) {
        const char *nl = strchr(line, '\n');
        fprintf(stderr, "xmppd: %.*s\n", (int)(nl ? nl - line : (long)strlen(line)), line);
        if (!nl)
            break;
        line = nl + 1;
    }
}

static int start(const char *path)
{
    char err[8192];
    xmppd_config *cfg = config_read(path, err, sizeof(err));
    if (!cfg) {
        report(err);
        return -1;
    }
    if (log_open(cfg->log.file, cfg->log.level) < 0) {
        fprintf(stderr, "xmppd: %s: cannot open log file %s\n", path, cfg->log.file);
        config_free(cfg);
        return -1;
    }
    if (loop_init() < 0) {
        fprintf(stderr, "xmppd: cannot create the event loop\n");
        config_free(cfg);
        return -1;
    }
    /* Wire the layers together: the lower ones call what these register. */
    metrics_start();
    session_layer_init();
    component_start();
    listener_set_acceptor(LISTEN_C2S, c2s_accept);
    listener_set_acceptor(LISTEN_S2S, s2s_accept);
    listener_set_acceptor(LISTEN_COMPONENT, component_acceptor);
    listener_set_http_acceptor(http_accept);
    if (modules_start(cfg, err, sizeof(err)) < 0) {
        report(err);
        config_free(cfg);
        return -1;
    }
    /* The control socket first: a second server on the same data refuses to
     * start before it opens any port. */
    if (http_endpoints_start() < 0) {
        report("cannot register the HTTP endpoints: out of memory");
        return -1;
    }
    if (control_start(cfg, err, sizeof(err)) < 0 || cluster_start(cfg, err, sizeof(err)) < 0 ||
        tls_start(err, sizeof(err)) < 0 ||
        s2s_start(err, sizeof(err)) < 0 || listeners_start(cfg, err, sizeof(err)) < 0) {
        report(err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = getenv("XMPPD_CONFIG");
    int opt;
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    while ((opt = getopt_long(argc, argv, "c:Vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'V':
            printf("xmppd %s\n", xmppd_server_version());
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!path)
        path = XMPPD_SYSCONF_DIR "/xmppd.json";
    signal(SIGPIPE, SIG_IGN);

    int rc = 0;
    if (start(path) == 0) {
        sig_term = evsignal_new(loop_base(), SIGTERM, on_terminate, NULL);
        sig_int = evsignal_new(loop_base(), SIGINT, on_terminate, NULL);
        sig_hup = evsignal_new(loop_base(), SIGHUP, on_reload, NULL);
        evsignal_add(sig_term, NULL);
        evsignal_add(sig_int, NULL);
        evsignal_add(sig_hup, NULL);
        log_kernel("main", XMPPD_LOG_INFO, "xmppd %s started", xmppd_server_version());
        /* Every listener is open: a Type=notify unit is started now. */
        if (sd_notify_state("READY=1\nSTATUS=serving") < 0)
            log_kernel("main", XMPPD_LOG_WARN, "cannot notify systemd at $NOTIFY_SOCKET: %s",
                       strerror(errno));
        loop_run();
        event_free(sig_term);
        event_free(sig_int);
        event_free(sig_hup);
    } else {
        rc = 1;
    }
    /* No new connections (a peer server would otherwise open a stream while
     * ours close and hold the shutdown until its negotiation times out);
     * streams get <system-shutdown/>, then modules unload (storage
     * flushes). */
    listeners_stop();
    control_stop();
    c2s_shutdown_all();    /* WebSocket and BOSH streams too: they are c2s streams */
    http_shutdown_all();
    http_routes_kernel_free();
    session_shutdown_all();
    cluster_stop();        /* after every local session ended: the others hear it */
    component_shutdown_all();
    s2s_shutdown_all();
    net_linger_stop();
    xmppd_config *cfg = g_server.cfg;
    modules_stop();
    tls_stop();
    metrics_stop();
    if (loop_base())
        loop_free();
    metrics_free_all();
    config_free(cfg);
    if (rc == 0)
        log_kernel("main", XMPPD_LOG_INFO, "stopped");
    return rc;
}
