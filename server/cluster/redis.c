/* A Redis connection on the kernel's loop (redis.h). */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "cluster/redis.h"
#include "core/config.h"
#include "core/core.h"
#include "core/loop.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

/* ---- servers ------------------------------------------------------------- */

int redis_servers_init(redis_servers *srv, const cluster_conf *cc, char *err, size_t errlen)
{
    memset(srv, 0, sizeof(*srv));
    size_t n = 0;
    while (cc->redis && cc->redis[n])
        n++;
    srv->uris = calloc(n ? n : 1, sizeof(*srv->uris));
    srv->timeout_ms = (uint64_t)cc->heartbeat * 2 > 1000 ? (uint64_t)cc->heartbeat * 2 : 1000;
    if (!srv->uris) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    bool tls = false;
    for (; srv->n < n; srv->n++) {
        const char *why;
        if (redis_uri_parse(cc->redis[srv->n], &srv->uris[srv->n], &why) < 0) {
            snprintf(err, errlen, "cluster.redis: %s", why);
            redis_servers_free(srv);
            return -1;
        }
        tls |= srv->uris[srv->n].tls;
    }
    if (tls) {
        srv->tls = SSL_CTX_new(TLS_client_method());
        bool ok = srv->tls && SSL_CTX_set_min_proto_version(srv->tls, TLS1_2_VERSION) == 1 &&
                  (cc->ca_file ? SSL_CTX_load_verify_locations(srv->tls, cc->ca_file, NULL)
                               : SSL_CTX_set_default_verify_paths(srv->tls)) == 1 &&
                  (!cc->cert || (SSL_CTX_use_certificate_chain_file(srv->tls, cc->cert) == 1 &&
                                 SSL_CTX_use_PrivateKey_file(srv->tls, cc->key, SSL_FILETYPE_PEM) == 1));
        if (!ok) {
            snprintf(err, errlen, "cluster: cannot set up TLS for Redis (ca_file, cert, key)");
            redis_servers_free(srv);
            return -1;
        }
        SSL_CTX_set_verify(srv->tls, SSL_VERIFY_PEER, NULL);
    }
    /* Names resolve on the loop (evdns), never with a blocking getaddrinfo. */
    srv->dns = evdns_base_new(loop_base(), EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!srv->dns) {
        snprintf(err, errlen, "cluster: cannot set up DNS resolution");
        redis_servers_free(srv);
        return -1;
    }
    return 0;
}

void redis_servers_free(redis_servers *srv)
{
    for (size_t i = 0; i < srv->n; i++)
        redis_uri_clear(&srv->uris[i]);
    free(srv->uris);
    if (srv->tls)
        SSL_CTX_free(srv->tls);
    if (srv->dns)
        evdns_base_free(srv->dns, 0);
    memset(srv, 0, sizeof(*srv));
}

/* ---- connections --------------------------------------------------------- */

typedef struct pending {
    redis_reply_fn fn;
    void *ud;
    bool handshake; /* AUTH/SELECT/SUBSCRIBE/PING of the connection itself */
} pending;

enum state { ST_DOWN, ST_CONNECTING, ST_HANDSHAKE, ST_UP };

struct redis_conn {
    const redis_servers *srv;
    char *name;
    redis_conn_ops ops;
    void *ud;
    enum state state;
    size_t idx;                /* the server tried now */
    struct bufferevent *bev;
    redisReader *reader;
    pending *q;                /* a ring of commands awaiting replies */
    size_t qhead, qlen, qcap;
    struct event *retry;
    unsigned backoff_ms;
    char **channels;           /* subscriber: its channels */
    size_t n_channels;
    bool subscriber;
    bool quiet;                /* CLIENT REPLY OFF: commands get no reply (redis_quiet) */
    char where[300];
};

static int q_push(redis_conn *c, redis_reply_fn fn, void *ud, bool handshake)
{
    if (c->qlen == c->qcap) {
        size_t cap = c->qcap ? c->qcap * 2 : 16;
        pending *q = malloc(cap * sizeof(*q));
        if (!q)
            return -1;
        for (size_t i = 0; i < c->qlen; i++)
            q[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = q;
        c->qhead = 0;
        c->qcap = cap;
    }
    c->q[(c->qhead + c->qlen++) % c->qcap] = (pending){ fn, ud, handshake };
    return 0;
}

static pending q_pop(redis_conn *c)
{
    pending p = c->q[c->qhead];
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    return p;
}

/* A reply is overdue after timeout_ms: the read timeout is armed only
 * while replies are awaited (a subscriber waits for messages forever). */
static void arm_timeout(redis_conn *c)
{
    if (!c->bev)
        return;
    struct timeval tv = { (time_t)(c->srv->timeout_ms / 1000),
                          (suseconds_t)(c->srv->timeout_ms % 1000) * 1000 };
    bufferevent_set_timeouts(c->bev, c->qlen ? &tv : NULL, NULL);
}

static int send_argv(redis_conn *c, int argc, const char *const *argv, const size_t *lens)
{
    char *cmd = NULL;
    long long n = redisFormatCommandArgv(&cmd, argc, (const char **)argv, lens);
    if (n < 0)
        return -1;
    int rc = bufferevent_write(c->bev, cmd, (size_t)n);
    free(cmd);
    return rc;
}

static void start_connect(redis_conn *c);

static void schedule_retry(redis_conn *c)
{
    struct timeval tv = { c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000 };
    evtimer_add(c->retry, &tv);
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

/* The connection is lost: pending commands get NULL, `down` runs once when
 * it was up, and the next server is tried after the back-off. */
static void conn_lost(redis_conn *c, const char *why)
{
    bool was_up = c->state == ST_UP;
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    if (c->reader) {
        redisReaderFree(c->reader);
        c->reader = NULL;
    }
    c->state = ST_DOWN;
    c->quiet = false; /* a new connection answers everything */
    while (c->qlen) {
        pending p = q_pop(c);
        if (p.fn)
            p.fn(NULL, p.ud);
    }
    if (c->srv->n)
        c->idx = (c->idx + 1) % c->srv->n;
    if (was_up && c->ops.down)
        c->ops.down(c->ud, why);
    else
        log_kernel("cluster", XMPPD_LOG_WARN, "redis (%s): %s; retrying in %u ms", c->name, why,
                   c->backoff_ms);
    schedule_retry(c);
}

static void on_handshake(struct redisReply *r, void *ud)
{
    redis_conn *c = ud;
    if (!r)
        return; /* conn_lost is under way */
    if (r->type == REDIS_REPLY_ERROR) {
        char why[512];
        snprintf(why, sizeof(why), "%s: %.*s", c->where, (int)r->len, r->str);
        /* the reply is borrowed: fail the connection after the reader is done */
        c->state = ST_DOWN;
        log_kernel("cluster", XMPPD_LOG_ERROR, "redis (%s): refused: %s", c->name, why);
    }
}

static void on_ready(struct redisReply *r, void *ud)
{
    redis_conn *c = ud;
    if (!r || c->state != ST_HANDSHAKE)
        return;
    c->state = ST_UP;
    c->backoff_ms = BACKOFF_MIN_MS;
    log_kernel("cluster", XMPPD_LOG_INFO, "redis (%s): connected to %s", c->name, c->where);
    if (c->ops.up)
        c->ops.up(c->ud);
}

static void subscribe_one(redis_conn *c, const char *channel)
{
    const char *argv[] = { "SUBSCRIBE", channel };
    if (send_argv(c, 2, argv, NULL) == 0)
        q_push(c, NULL, NULL, true);
}

/* Connected: AUTH, SELECT, CLIENT SETNAME, SUBSCRIBE, then a PING whose answer says the
 * connection is ready (all pipelined in one write). */
static void handshake(redis_conn *c)
{
    const redis_uri *u = &c->srv->uris[c->idx];
    c->state = ST_HANDSHAKE;
    if (u->password) {
        const char *argv[] = { "AUTH", u->user ? u->user : u->password, u->password };
        if (send_argv(c, u->user ? 3 : 2, argv, NULL) == 0)
            q_push(c, on_handshake, c, true);
    }
    if (u->db) {
        char db[16];
        snprintf(db, sizeof(db), "%d", u->db);
        const char *argv[] = { "SELECT", db };
        if (send_argv(c, 2, argv, NULL) == 0)
            q_push(c, on_handshake, c, true);
    }
    if (c->srv->client_name) {
        char name[256];
        snprintf(name, sizeof(name), "%s:%s", c->srv->client_name, c->name);
        const char *argv[] = { "CLIENT", "SETNAME", name };
        if (send_argv(c, 3, argv, NULL) == 0)
            q_push(c, on_handshake, c, true);
    }
    for (size_t i = 0; i < c->n_channels; i++)
        subscribe_one(c, c->channels[i]);
    const char *ping[] = { "PING" };
    if (send_argv(c, 1, ping, NULL) == 0)
        q_push(c, on_ready, c, true);
    arm_timeout(c);
}

/* A subscriber's push: ["message", channel, payload]. */
static bool is_message(const redisReply *r)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
           r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "message") == 0;
}

static void on_read(struct bufferevent *bev, void *ud)
{
    redis_conn *c = ud;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;
    while ((n = evbuffer_get_length(in)) > 0) {
        struct evbuffer_iovec v;
        evbuffer_peek(in, -1, NULL, &v, 1);
        if (redisReaderFeed(c->reader, v.iov_base, v.iov_len) != REDIS_OK) {
            conn_lost(c, "out of memory");
            return;
        }
        evbuffer_drain(in, v.iov_len);
    }
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            conn_lost(c, "protocol error");
            return;
        }
        if (!reply)
            break;
        redisReply *r = reply;
        if (c->subscriber && is_message(r)) {
            if (c->ops.message && c->state == ST_UP)
                c->ops.message(c->ud, r->element[1]->str, r->element[1]->len, r->element[2]->str,
                               r->element[2]->len);
        } else if (c->qlen) {
            pending p = q_pop(c);
            if (p.fn)
                p.fn(r, p.ud);
        }
        freeReplyObject(r);
        if (c->state == ST_DOWN) { /* a handshake command was refused */
            conn_lost(c, "handshake refused");
            return;
        }
    }
    arm_timeout(c);
}

/* Why the connection failed: a name that did not resolve, TLS (OpenSSL's
 * reason, such as a certificate that does not verify), or the socket's
 * error. */
static const char *error_text(redis_conn *c)
{
    int dns = bufferevent_socket_get_dns_error(c->bev);
    if (dns)
        return evutil_gai_strerror(dns);
    unsigned long e = c->srv->uris[c->idx].tls ? bufferevent_get_openssl_error(c->bev) : 0;
    if (e) {
        const char *r = ERR_reason_error_string(e);
        return r ? r : "TLS failed";
    }
    int err = EVUTIL_SOCKET_ERROR();
    return err ? evutil_socket_error_to_string(err) : "connection failed";
}

static void on_event(struct bufferevent *bev, short what, void *ud)
{
    redis_conn *c = ud;
    if (what & BEV_EVENT_CONNECTED) {
        /* commands are small writes, often one per loop turn: Nagle would
         * hold the next one back until Redis's delayed ACK (~40 ms) */
        int one = 1;
        if (!c->srv->uris[c->idx].path)
            setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        handshake(c);
        return;
    }
    char why[512];
    if (what & BEV_EVENT_TIMEOUT)
        snprintf(why, sizeof(why), "%s: no answer within %llu ms", c->where,
                 (unsigned long long)c->srv->timeout_ms);
    else if (what & BEV_EVENT_EOF)
        snprintf(why, sizeof(why), "%s: connection closed", c->where);
    else
        snprintf(why, sizeof(why), "%s: %s", c->where, error_text(c));
    conn_lost(c, why);
}

static void start_connect(redis_conn *c)
{
    const redis_uri *u = &c->srv->uris[c->idx];
    redis_uri_where(u, c->where, sizeof(c->where));
    c->reader = redisReaderCreate();
    if (u->tls) {
        SSL *ssl = SSL_new(c->srv->tls);
        if (ssl) {
            SSL_set_tlsext_host_name(ssl, u->host);
            SSL_set1_host(ssl, u->host);
            c->bev = bufferevent_openssl_socket_new(loop_base(), -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                    BEV_OPT_CLOSE_ON_FREE);
            if (!c->bev)
                SSL_free(ssl);
        }
    } else {
        c->bev = bufferevent_socket_new(loop_base(), -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev || !c->reader) {
        conn_lost(c, "out of memory");
        return;
    }
    c->state = ST_CONNECTING;
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    struct timeval tv = { (time_t)(c->srv->timeout_ms / 1000),
                          (suseconds_t)(c->srv->timeout_ms % 1000) * 1000 };
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    int rc;
    if (u->path) {
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", u->path);
        rc = bufferevent_socket_connect(c->bev, (struct sockaddr *)&sun, sizeof(sun));
    } else {
        rc = bufferevent_socket_connect_hostname(c->bev, c->srv->dns, AF_UNSPEC, u->host, u->port);
    }
    if (rc < 0 && c->bev)
        conn_lost(c, "cannot connect");
}

static void on_retry(evutil_socket_t fd, short what, void *ud)
{
    start_connect(ud);
}

redis_conn *redis_conn_new(const redis_servers *srv, const char *name, const redis_conn_ops *ops,
                           void *ud)
{
    redis_conn *c = calloc(1, sizeof(*c));
    if (!c || !(c->name = strdup(name)) || !(c->retry = evtimer_new(loop_base(), on_retry, c))) {
        if (c)
            free(c->name);
        free(c);
        return NULL;
    }
    c->srv = srv;
    c->ops = *ops;
    c->ud = ud;
    c->subscriber = ops->message != NULL;
    c->backoff_ms = BACKOFF_MIN_MS;
    start_connect(c);
    return c;
}

void redis_conn_free(redis_conn *c)
{
    if (!c)
        return;
    c->ops = (redis_conn_ops){ 0 };
    if (c->bev)
        bufferevent_free(c->bev);
    c->bev = NULL;
    if (c->reader)
        redisReaderFree(c->reader);
    while (c->qlen) {
        pending p = q_pop(c);
        if (p.fn && !p.handshake)
            p.fn(NULL, p.ud);
    }
    event_free(c->retry);
    for (size_t i = 0; i < c->n_channels; i++)
        free(c->channels[i]);
    free(c->channels);
    free(c->q);
    free(c->name);
    free(c);
}

bool redis_conn_up(const redis_conn *c)
{
    return c && c->state == ST_UP;
}

const char *redis_conn_where(const redis_conn *c)
{
    return c->state == ST_UP ? c->where : "";
}

int redis_command(redis_conn *c, redis_reply_fn fn, void *ud, int argc, const char *const *argv,
                  const size_t *lens)
{
    if (c->state != ST_UP || send_argv(c, argc, argv, lens) < 0)
        return -1;
    if (c->quiet)
        return 0;
    if (q_push(c, fn, ud, false) < 0)
        return -1;
    arm_timeout(c);
    return 0;
}

int redis_commandf(redis_conn *c, redis_reply_fn fn, void *ud, const char *fmt, ...)
{
    if (c->state != ST_UP)
        return -1;
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    int rc = bufferevent_write(c->bev, cmd, (size_t)n);
    free(cmd);
    if (rc < 0 || (!c->quiet && q_push(c, fn, ud, false) < 0))
        return -1;
    arm_timeout(c);
    return 0;
}

int redis_quiet(redis_conn *c, bool on)
{
    if (c->state != ST_UP || c->quiet == on)
        return -1;
    const char *argv[] = { "CLIENT", "REPLY", on ? "OFF" : "ON" };
    if (send_argv(c, 3, argv, NULL) < 0)
        return -1;
    c->quiet = on;
    if (!on && q_push(c, NULL, NULL, false) < 0) /* ON answers OK */
        return -1;
    arm_timeout(c);
    return 0;
}

int redis_subscribe(redis_conn *c, const char *channel)
{
    char **v = realloc(c->channels, (c->n_channels + 1) * sizeof(*v));
    if (!v)
        return -1;
    c->channels = v;
    if (!(v[c->n_channels] = strdup(channel)))
        return -1;
    c->n_channels++;
    if (c->state == ST_UP) {
        subscribe_one(c, channel);
        arm_timeout(c);
    }
    return 0;
}

bool redis_failed(const struct redisReply *r)
{
    return !r || r->type == REDIS_REPLY_ERROR;
}
