/* A connection to Redis on the kernel's event loop.
 *
 * hiredis parses and formats the protocol (RESP: redisReader,
 * redisFormatCommandArgv); the bytes travel over a libevent bufferevent,
 * with OpenSSL's filter for rediss://. Debian 12's hiredis (0.14) has no
 * TLS, and its async context resolves names with a blocking getaddrinfo:
 * the kernel's own bufferevents give both TLS and asynchronous DNS on the
 * one loop.
 *
 * A connection goes through the servers of its list in turn until one
 * answers, authenticates (AUTH), selects the database (SELECT) and, for a
 * subscriber, subscribes to its channels again; then `up` runs. A lost
 * connection (an error, EOF, a reply overdue by `timeout_ms`, a protocol
 * error) answers every pending command with NULL, runs `down`, and tries
 * again after a back-off that doubles from 100 ms to 5 s. Commands are
 * pipelined: everything queued in one loop turn leaves in one write.
 *
 * Ownership: the conn owns its socket, SSL and reader; redis_servers is
 * the caller's and must outlive every conn using it. */
#ifndef XMPPD_CLUSTER_REDIS_H
#define XMPPD_CLUSTER_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/redis_uri.h"

struct redisReply;
typedef struct ssl_ctx_st SSL_CTX;
struct evdns_base;

/* Where Redis is: the parsed URIs and, when one is rediss://, a client TLS
 * context. */
typedef struct redis_servers {
    redis_uri *uris;
    size_t n;
    SSL_CTX *tls;              /* NULL when no URI needs TLS */
    struct evdns_base *dns;    /* names are resolved here */
    uint64_t timeout_ms;       /* connect, handshake, and any reply */
    const char *client_name;   /* CLIENT SETNAME client_name ":" conn name (for
                                * CLIENT LIST), or NULL; the caller's */
} redis_servers;

/* Builds srv from the configured URIs and TLS files (cluster_conf); 0, or
 * -1 with a one-line message. redis_servers_free frees what it built. */
struct cluster_conf;
int redis_servers_init(redis_servers *srv, const struct cluster_conf *cc, char *err, size_t errlen);
void redis_servers_free(redis_servers *srv);

typedef struct redis_conn redis_conn;

/* r: the reply, borrowed for the call; NULL when the command got no answer
 * (the connection was lost: it may have run or not; or the conn is being
 * freed). */
typedef void (*redis_reply_fn)(struct redisReply *r, void *ud);

typedef struct redis_conn_ops {
    void (*up)(void *ud);
    void (*down)(void *ud, const char *why);
    /* subscriber connections: a message on one of its channels (borrowed) */
    void (*message)(void *ud, const char *channel, size_t clen, const char *msg, size_t len);
} redis_conn_ops;

/* A connection (name: for logs) that connects at once. NULL on OOM. */
redis_conn *redis_conn_new(const redis_servers *srv, const char *name, const redis_conn_ops *ops,
                           void *ud);
/* Pending commands are answered NULL; no ops run afterwards. */
void redis_conn_free(redis_conn *c);
bool redis_conn_up(const redis_conn *c);
/* Where it is connected ("host:port"), or "" when down. */
const char *redis_conn_where(const redis_conn *c);

/* Queues a command (argv[i] of lens[i] bytes; lens NULL: C strings); fn
 * (may be NULL) runs once with the answer, on a later loop turn. 0, or -1
 * when the connection is not up (fn never runs). */
int redis_command(redis_conn *c, redis_reply_fn fn, void *ud, int argc, const char *const *argv,
                  const size_t *lens);
/* The same with hiredis' format ("%s", "%b" with pointer and length). */
int redis_commandf(redis_conn *c, redis_reply_fn fn, void *ud, const char *fmt, ...);
/* Fire-and-forget batches: between redis_quiet(c, true) and
 * redis_quiet(c, false), in the same loop turn, Redis answers nothing
 * (CLIENT REPLY OFF ... ON): fn must be NULL, and a failing command goes
 * unseen. Saves Redis formatting and us parsing one reply per command.
 * 0, or -1 when the connection is not up (or already in that state). */
int redis_quiet(redis_conn *c, bool on);
/* Subscriber: channel is subscribed now (when up) and after every
 * reconnection. 0 or -1 on OOM. */
int redis_subscribe(redis_conn *c, const char *channel);

/* Is r an error reply (or no reply)? */
bool redis_failed(const struct redisReply *r);

#endif
