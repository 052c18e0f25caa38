/* auth_ldap: the pool's insides, shared by ldap_conn.c (one connection's
 * life: resolve, connect, TLS, service bind, reading) and ldap_pool.c
 * (requests: queues, sending, results, timeouts). */
#ifndef AUTH_LDAP_POOL_INT_H
#define AUTH_LDAP_POOL_INT_H

#include <ldap.h>
#include <netdb.h>
#include <openssl/ssl.h>

#include "ldap_pool.h"

typedef struct lp_uri {
    char *text; /* as configured */
    char *host; /* name or address, without brackets */
    int port;
    bool ldaps;
} lp_uri;

/* A list of requests (the pool's queues, a connection's requests). */
typedef struct lp_list {
    lp_req *head, *tail;
    int n;
} lp_list;

enum lc_state {
    LC_DOWN,       /* waiting until retry_at */
    LC_RESOLVING,  /* getaddrinfo on the worker pool */
    LC_CONNECTING, /* non-blocking connect() */
    LC_TLS,        /* TLS handshake (LDAPS, or after StartTLS) */
    LC_STARTTLS,   /* the StartTLS extended operation sent */
    LC_BINDING,    /* the service account's bind sent */
    LC_READY
};

typedef struct lc_resolve lc_resolve;

typedef struct lc_conn {
    lp_pool *pool;
    int id;             /* for logs: 1.. */
    bool binds;         /* a bind connection */
    enum lc_state state;
    size_t uri;         /* the URI in use */
    size_t tried;       /* URIs that failed in this round */
    lc_resolve *resolving;
    struct addrinfo *addrs, *next_addr; /* owned */
    int fd;             /* -1: none; owned by ld once ld exists */
    xmppd_io *io;
    SSL *ssl;           /* during the handshake (then ld's) */
    LDAP *ld;
    int setup_msgid;
    uint64_t deadline;  /* of connecting (RESOLVING .. BINDING) */
    uint64_t retry_at;  /* DOWN */
    long long pause;    /* the next back-off */
    uint64_t last_rx;   /* when a message last arrived */
    bool quiet;         /* failed before: log the next failure at debug */
    lp_list ops;        /* requests sent on it */
    char why[256];      /* last failure */
} lc_conn;

struct lp_req {
    lp_req *next, *prev;
    lp_pool *pool;
    lc_conn *conn;        /* sent on; NULL while queued */
    bool is_bind;
    bool reading;         /* bind: reading the user's entry now */
    bool retried;         /* requeued once after its connection dropped */
    bool overflow;        /* more entries than wanted */
    char *base, *filter, *dn, *password; /* owned; password wiped */
    char **attrs;         /* owned, NULL-terminated; NULL: no attributes */
    int scope;
    size_t limit;         /* 0: paged, up to max_entries */
    int msgid;
    struct berval *cookie; /* paging */
    uint64_t deadline;
    uint64_t sent_at;
    lp_cb cb;
    void *ud;
    directory_entry *entries; /* owned */
    size_t n, cap;
    char *diag;
};

struct lp_pool {
    xmppd_module *m;
    const lp_conf *conf;
    lp_uri *uris;
    size_t n_uris;
    SSL_CTX *tls;
    lc_conn *conns;
    int n_conns;
    lp_list search_q, bind_q;
    xmppd_timer *tick, *kick;
    bool unreachable;     /* every URI failed and no connection is ready */
    bool closing;
};

/* ---- ldap_conn.c ---- */
/* Starts connecting c (from LC_DOWN) to its URI. */
void lc_start(lc_conn *c);
/* Closes c's connection (nothing is told about its requests). unloading:
 * its watch is already gone. */
void lc_teardown(lc_conn *c, bool unloading);
/* c failed: logs why, tears it down, tells the pool (lp_on_down), then
 * tries the next URI now or waits (LC_DOWN). */
void lc_fail(lc_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reads every message waiting on c (also flushes writes libldap kept). */
void lc_pump(lc_conn *c);
/* The tick: deadlines of connecting, retries of DOWN connections. */
void lc_tick(lc_conn *c, uint64_t now);

/* ---- ldap_pool.c (called by the connections) ---- */
void lp_on_ready(lc_conn *c);
/* c's requests are requeued once, else failed with LDAP_SERVER_DOWN. */
void lp_on_down(lc_conn *c);
/* A message for one of c's requests (consumed). */
void lp_on_message(lc_conn *c, LDAPMessage *msg);
/* Every URI failed for c this round. */
void lp_on_round_failed(lc_conn *c);
/* Runs queued work on a later loop turn. */
void lp_kick(lp_pool *p);

#endif
