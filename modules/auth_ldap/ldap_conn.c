/* auth_ldap: one directory connection, from name to ready, without
 * blocking the loop (ldap_pool_int.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openldap.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ldap_pool_int.h"
#include "ldap_tls.h"

#define LC_FIRST_PAUSE_MS 100

static const lp_uri *lc_uri(const lc_conn *c)
{
    return &c->pool->uris[c->uri];
}

static void lc_set_events(lc_conn *c, int events)
{
    if (c->io)
        xmppd_io_modify(c->io, events);
}

/* ---- teardown and failure ---- */

/* A name looked up on the worker pool for conn (NULL once the connection
 * gave up waiting). */
struct lc_resolve {
    lc_conn *conn;
    char *host;
    char port[8];
    struct addrinfo *res;
    int rc;
};


void lc_teardown(lc_conn *c, bool unloading)
{
    if (c->resolving) {
        /* the worker's job finds no connection when it ends */
        c->resolving->conn = NULL;
        c->resolving = NULL;
    }
    if (c->io && !unloading)
        xmppd_io_remove(c->io);
    c->io = NULL;
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->ld) {
        ldap_unbind_ext(c->ld, NULL, NULL); /* closes fd */
        c->ld = NULL;
        c->fd = -1;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    if (c->addrs) {
        freeaddrinfo(c->addrs);
        c->addrs = c->next_addr = NULL;
    }
}

void lc_fail(lc_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    bool was_ready = c->state == LC_READY;
    xmppd_log(c->pool->m, c->quiet ? XMPPD_LOG_DEBUG : XMPPD_LOG_WARN, "%s (%s connection %d): %s",
              lc_uri(c)->text, c->binds ? "bind" : "search", c->id, c->why);
    c->quiet = true;
    lc_teardown(c, false);
    c->state = LC_DOWN;
    lp_on_down(c);
    if (was_ready) {
        /* it worked until now: start over from the first URI at once */
        c->tried = 0;
        c->uri = 0;
        c->pause = LC_FIRST_PAUSE_MS;
        lc_start(c);
        return;
    }
    if (++c->tried < c->pool->n_uris) {
        c->uri = (c->uri + 1) % c->pool->n_uris;
        lc_start(c);
        return;
    }
    c->tried = 0;
    c->uri = 0;
    c->retry_at = xmppd_now_ms() + (uint64_t)c->pause;
    c->pause = c->pause * 2 > c->pool->conf->reconnect_max_ms ? c->pool->conf->reconnect_max_ms : c->pause * 2;
    lp_on_round_failed(c);
}

/* ---- ready ---- */

static void lc_ready(lc_conn *c)
{
    c->state = LC_READY;
    c->pause = LC_FIRST_PAUSE_MS;
    c->tried = 0;
    c->last_rx = xmppd_now_ms();
    if (c->quiet)
        xmppd_log(c->pool->m, XMPPD_LOG_INFO, "%s (%s connection %d): connected", lc_uri(c)->text,
                  c->binds ? "bind" : "search", c->id);
    else
        xmppd_log(c->pool->m, XMPPD_LOG_DEBUG, "%s (%s connection %d): connected", lc_uri(c)->text,
                  c->binds ? "bind" : "search", c->id);
    c->quiet = false;
    lc_set_events(c, XMPPD_IO_READ);
    lp_on_ready(c);
}

/* The service account's bind (search connections), else ready. */
static void lc_bind_service(lc_conn *c)
{
    const lp_conf *conf = c->pool->conf;
    if (c->binds || !conf->bind_dn) {
        lc_ready(c);
        return;
    }
    const char *pw = conf->bind_password ? conf->bind_password : "";
    struct berval cred = { strlen(pw), (char *)pw };
    int rc = ldap_sasl_bind(c->ld, conf->bind_dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, &c->setup_msgid);
    if (rc != LDAP_SUCCESS) {
        lc_fail(c, "bind as %s: %s", conf->bind_dn, ldap_err2string(rc));
        return;
    }
    c->state = LC_BINDING;
    lc_set_events(c, XMPPD_IO_READ);
}

/* The LDAP handle on the connected socket (which it owns from now on). */
static int lc_make_ld(lc_conn *c)
{
    int version = LDAP_VERSION3;
    if (ldap_init_fd(c->fd, LDAP_PROTO_TCP, lc_uri(c)->text, &c->ld) != LDAP_SUCCESS) {
        c->ld = NULL;
        return -1;
    }
    /* Referrals would make libldap open connections of its own, blocking;
     * AD's continuation references are simply not followed. */
    ldap_set_option(c->ld, LDAP_OPT_PROTOCOL_VERSION, &version);
    ldap_set_option(c->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    return 0;
}

static void lc_tls_step(lc_conn *c)
{
    char err[256];
    switch (ltls_handshake(c->ssl, err, sizeof err)) {
    case LTLS_WANT_READ:
        lc_set_events(c, XMPPD_IO_READ);
        return;
    case LTLS_WANT_WRITE:
        lc_set_events(c, XMPPD_IO_WRITE);
        return;
    case LTLS_DONE:
        break;
    default:
        lc_fail(c, "%s", err);
        return;
    }
    if ((!c->ld && lc_make_ld(c) != 0) || ltls_install(c->ld, c->ssl) != 0) {
        lc_fail(c, "cannot set up the LDAP connection");
        return;
    }
    c->ssl = NULL; /* the handle's now */
    lc_bind_service(c);
}

static void lc_start_tls(lc_conn *c)
{
    if (!(c->ssl = ltls_new(c->pool->tls, c->fd, lc_uri(c)->host))) {
        lc_fail(c, "cannot start TLS");
        return;
    }
    c->state = LC_TLS;
    lc_tls_step(c);
}

static void lc_connected(lc_conn *c)
{
    if (c->addrs) {
        freeaddrinfo(c->addrs);
        c->addrs = c->next_addr = NULL;
    }
    if (lc_uri(c)->ldaps) {
        lc_start_tls(c);
        return;
    }
    if (lc_make_ld(c) != 0) {
        lc_fail(c, "cannot set up the LDAP connection");
        return;
    }
    if (!c->pool->conf->starttls) {
        lc_bind_service(c);
        return;
    }
    int rc = ldap_extended_operation(c->ld, LDAP_EXOP_START_TLS, NULL, NULL, NULL, &c->setup_msgid);
    if (rc != LDAP_SUCCESS) {
        lc_fail(c, "StartTLS: %s", ldap_err2string(rc));
        return;
    }
    c->state = LC_STARTTLS;
    lc_set_events(c, XMPPD_IO_READ);
}

/* ---- connecting ---- */

static void lc_on_io(int fd, int ready, void *ud);

/* Connects to the next address; false when none is left. */
static bool lc_try_next(lc_conn *c, int *err_r)
{
    while (c->next_addr) {
        struct addrinfo *ai = c->next_addr;
        c->next_addr = ai->ai_next;
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            *err_r = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno != EINPROGRESS) {
            *err_r = errno;
            close(fd);
            continue;
        }
        c->fd = fd;
        if (!(c->io = xmppd_io_add(c->pool->m, fd, XMPPD_IO_WRITE, lc_on_io, c))) {
            *err_r = ENOMEM;
            close(fd);
            c->fd = -1;
            return false;
        }
        c->state = LC_CONNECTING;
        if (rc == 0)
            lc_connected(c);
        return true;
    }
    return false;
}

static void lc_connect(lc_conn *c)
{
    int err = ECONNREFUSED;
    if (!lc_try_next(c, &err))
        lc_fail(c, "connect: %s", strerror(err));
}

static void lc_on_connect_ready(lc_conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == 0) {
        lc_connected(c);
        return;
    }
    xmppd_io_remove(c->io);
    c->io = NULL;
    close(c->fd);
    c->fd = -1;
    if (!lc_try_next(c, &err))
        lc_fail(c, "connect: %s", strerror(err));
}

/* The answer to StartTLS or the service bind. */
static void lc_on_setup_message(lc_conn *c, LDAPMessage *msg)
{
    int code = LDAP_OTHER;
    char *diag = NULL;
    if (ldap_msgid(msg) != c->setup_msgid) {
        ldap_msgfree(msg);
        return;
    }
    ldap_parse_result(c->ld, msg, &code, NULL, &diag, NULL, NULL, 1);
    if (code != LDAP_SUCCESS) {
        if (c->state == LC_STARTTLS)
            lc_fail(c, "StartTLS refused: %s%s%s", ldap_err2string(code), diag && *diag ? ": " : "",
                    diag ? diag : "");
        else
            lc_fail(c, "bind as %s refused: %s%s%s", c->pool->conf->bind_dn, ldap_err2string(code),
                    diag && *diag ? ": " : "", diag ? diag : "");
    } else if (c->state == LC_STARTTLS) {
        lc_start_tls(c);
    } else {
        lc_ready(c);
    }
    ldap_memfree(diag);
}

void lc_pump(lc_conn *c)
{
    while (c->ld && (c->state == LC_READY || c->state == LC_STARTTLS || c->state == LC_BINDING)) {
        struct timeval zero = { 0, 0 };
        LDAPMessage *msg = NULL;
        int rc = ldap_result(c->ld, LDAP_RES_ANY, LDAP_MSG_ONE, &zero, &msg);
        if (rc == 0)
            return;
        if (rc < 0) {
            int code = LDAP_SERVER_DOWN;
            ldap_get_option(c->ld, LDAP_OPT_RESULT_CODE, &code);
            lc_fail(c, "%s", code == LDAP_SERVER_DOWN ? "connection lost" : ldap_err2string(code));
            return;
        }
        c->last_rx = xmppd_now_ms();
        if (c->state != LC_READY)
            lc_on_setup_message(c, msg);
        else
            lp_on_message(c, msg);
    }
}

static void lc_on_io(int fd, int ready, void *ud)
{
    lc_conn *c = ud;
    switch (c->state) {
    case LC_CONNECTING:
        lc_on_connect_ready(c);
        break;
    case LC_TLS:
        lc_tls_step(c);
        break;
    case LC_STARTTLS:
    case LC_BINDING:
    case LC_READY:
        lc_pump(c);
        break;
    default:
        break;
    }
}

/* ---- resolving ---- */

static void lc_resolve_free(lc_resolve *j)
{
    if (j->res)
        freeaddrinfo(j->res);
    free(j->host);
    free(j);
}

static void lc_resolve_work(void *ud)
{
    lc_resolve *j = ud;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG };
    j->rc = getaddrinfo(j->host, j->port, &hints, &j->res);
}

static void lc_resolve_done(void *ud)
{
    lc_resolve *j = ud;
    lc_conn *c = j->conn;
    if (c) {
        c->resolving = NULL;
        if (j->rc != 0) {
            lc_fail(c, "cannot resolve %s: %s", j->host, gai_strerror(j->rc));
        } else {
            c->addrs = c->next_addr = j->res;
            j->res = NULL;
            lc_connect(c);
        }
    }
    lc_resolve_free(j);
}

static void lc_resolve_cancelled(void *ud)
{
    lc_resolve *j = ud;
    if (j->conn)
        j->conn->resolving = NULL;
    lc_resolve_free(j);
}

/* Addresses written as such need no lookup: done on the loop. */
static bool lc_numeric(lc_conn *c, const char *port)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    if (getaddrinfo(lc_uri(c)->host, port, &hints, &res) != 0)
        return false;
    c->addrs = c->next_addr = res;
    return true;
}

void lc_start(lc_conn *c)
{
    c->deadline = xmppd_now_ms() + (uint64_t)c->pool->conf->connect_timeout_ms;
    c->state = LC_RESOLVING;
    char port[8];
    snprintf(port, sizeof port, "%d", lc_uri(c)->port);
    if (lc_numeric(c, port)) {
        lc_connect(c);
        return;
    }
    lc_resolve *j = calloc(1, sizeof *j);
    if (j && (j->host = strdup(lc_uri(c)->host))) {
        j->conn = c;
        memcpy(j->port, port, sizeof j->port);
        if (xmppd_offload(c->pool->m, lc_resolve_work, lc_resolve_done, lc_resolve_cancelled, j) == 0) {
            c->resolving = j;
            return;
        }
    }
    if (j)
        free(j->host);
    free(j);
    lc_fail(c, "cannot resolve %s: out of memory", lc_uri(c)->host);
}

void lc_tick(lc_conn *c, uint64_t now)
{
    if (c->state == LC_DOWN) {
        if (now >= c->retry_at)
            lc_start(c);
        return;
    }
    if (c->state != LC_READY && now >= c->deadline) {
        lc_fail(c, "no answer within %lld ms (connect_timeout)", c->pool->conf->connect_timeout_ms);
        return;
    }
    if (c->state == LC_READY && c->ops.n > 0)
        lc_pump(c); /* writes libldap could not finish are flushed here */
}
