/* Listening sockets and per-address connection accounting. */
#include <arpa/inet.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "net/net.h"
#include "util/strmap.h"

/* An open listener with its own copy of its configuration: the
 * configuration it came from is replaced by reloads. */
struct listener {
    struct evconnlistener *evl;
    listener_conf conf;
    char *address;
    char *path_prefix;
    char **trusted;   /* NULL-terminated copies */
};

static struct listener *listeners;
static size_t n_listeners;
static strmap *per_ip; /* ip -> count (as uintptr_t) */

bool conn_ip_acquire(const char *ip)
{
    uintptr_t n = (uintptr_t)strmap_get(per_ip, ip);
    if (n >= (uintptr_t)g_server.cfg->limits.connections_per_ip)
        return false;
    return strmap_put(per_ip, ip, (void *)(n + 1)) == 0;
}

void conn_ip_release(const char *ip)
{
    uintptr_t n = (uintptr_t)strmap_get(per_ip, ip);
    if (n <= 1)
        strmap_del(per_ip, ip);
    else
        strmap_put(per_ip, ip, (void *)(n - 1));
}

void net_nodelay(int fd)
{
    /* XMPP is request/answer with small writes (a TLS record, a stanza):
     * Nagle would hold one back until the peer's delayed ACK, ~40 ms. */
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static listener_accept_fn acceptors[LISTEN_COMPONENT + 1];
static listener_accept_conf_fn http_acceptor;

void listener_set_acceptor(enum listener_type type, listener_accept_fn fn)
{
    if (type <= LISTEN_COMPONENT)
        acceptors[type] = fn;
}

void listener_set_http_acceptor(listener_accept_conf_fn fn)
{
    http_acceptor = fn;
}

/* The connection goes to its layer, with the client's address. */
static void hand_over(void *arg, int fd, const struct sockaddr *sa, int socklen)
{
    struct listener *l = arg;
    if (l->conf.type == LISTEN_HTTP)
        http_acceptor(fd, sa, socklen, &l->conf);
    else
        acceptors[l->conf.type](fd, sa, socklen, l->conf.tls == LISTEN_TLS_DIRECT);
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct listener *l = arg;
    if (sa->sa_family != AF_UNIX)
        net_nodelay(fd);
    if (l->conf.proxy_protocol)
        proxy_accept(fd, sa, socklen, l->conf.trusted_proxies, hand_over, l);
    else
        hand_over(l, fd, sa, socklen);
}

static void on_accept_error(struct evconnlistener *evl, void *arg)
{
    /* EMFILE and friends: keep listening; the next accept may succeed once
     * connections close. */
    log_kernel("listener", XMPPD_LOG_WARN, "accept failed: %s",
               evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static int open_one(struct listener *l, char *err, size_t errlen)
{
    static const char *const kinds[] = { "c2s", "s2s", "component", "http" };
    const listener_conf *lc = &l->conf;
    if (lc->type == LISTEN_HTTP ? !http_acceptor : !acceptors[lc->type]) {
        snprintf(err, errlen, "listener %s:%lld: this program does not serve %s connections",
                 lc->address, lc->port, kinds[lc->type]);
        return -1;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
    struct addrinfo *ai = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%lld", lc->port);
    int rc = getaddrinfo(lc->address, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "listener %s:%lld: %s", lc->address, lc->port, gai_strerror(rc));
        return -1;
    }
    l->evl = evconnlistener_new_bind(loop_base(), on_accept, l,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                         LEV_OPT_CLOSE_ON_EXEC,
                                     1024, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!l->evl) {
        snprintf(err, errlen, "listener %s:%lld: %s", lc->address, lc->port,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        return -1;
    }
    evconnlistener_set_error_cb(l->evl, on_accept_error);
    log_kernel("listener", XMPPD_LOG_INFO, "%s%s on [%s]:%lld%s", kinds[lc->type],
               lc->tls == LISTEN_TLS_DIRECT ? (lc->type == LISTEN_HTTP ? "s" : " (direct TLS)") : "",
               lc->address, lc->port, lc->proxy_protocol ? " (PROXY protocol)" : "");
    return 0;
}

static void free_http_keys(struct listener *l)
{
    for (char **t = l->trusted; t && *t; t++)
        free(*t);
    free(l->trusted);
    free(l->path_prefix);
    l->trusted = NULL;
    l->path_prefix = NULL;
}

/* The listener outlives the configuration it came from (reloads): its
 * own copies of what connections read later. */
static int copy_http_keys(struct listener *l, const listener_conf *lc)
{
    size_t n = 0;
    while (lc->trusted_proxies && lc->trusted_proxies[n])
        n++;
    if (lc->trusted_proxies && !(l->trusted = calloc(n + 1, sizeof(char *))))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!(l->trusted[i] = strdup(lc->trusted_proxies[i])))
            return -1;
    if (lc->path_prefix && !(l->path_prefix = strdup(lc->path_prefix)))
        return -1;
    l->conf.trusted_proxies = (const char *const *)l->trusted;
    l->conf.path_prefix = l->path_prefix;
    return 0;
}

int listeners_start(const xmppd_config *cfg, char *err, size_t errlen)
{
    per_ip = strmap_new();
    listeners = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*listeners));
    if (!per_ip || !listeners) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const listener_conf *lc = &cfg->listeners[i];
        struct listener *l = &listeners[n_listeners];
        l->conf = *lc;
        if (!(l->address = strdup(lc->address))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        l->conf.address = l->address;
        if (copy_http_keys(l, lc) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (open_one(l, err, errlen) < 0) {
            free(l->address);
            l->address = NULL;
            free_http_keys(l);
            return -1;
        }
        n_listeners++;
    }
    return 0;
}

void listeners_stop(void)
{
    proxy_stop();
    for (size_t i = 0; i < n_listeners; i++) {
        evconnlistener_free(listeners[i].evl);
        free(listeners[i].address);
        free_http_keys(&listeners[i]);
    }
    free(listeners);
    listeners = NULL;
    n_listeners = 0;
}
