/* DNS for s2s through c-ares, driven by the event loop: c-ares tells us
 * which sockets to watch (ARES_OPT_SOCK_STATE_CB), libevent watches them,
 * and one timer follows ares_timeout().
 *
 * SRV (RFC 6120 §3.2.1, XEP-0368): _xmpps-server._tcp (direct TLS) and
 * _xmpp-server._tcp (STARTTLS) are asked together and merged in RFC 2782
 * order; without records the domain itself is used on port 5269. A single
 * record with target "." means the domain offers no XMPP service. */
#include <ares.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s2s/s2s.h"

#define DNS_CLASS_IN 1
#define DNS_TYPE_SRV 33
#define MAX_TARGETS 32
#define MAX_ADDRS 16

enum q_kind { Q_SRV, Q_ADDR };

struct srv_part {
    struct resolver_query *q;
    bool done;
    bool direct_tls;
    bool refused;              /* single record with target "." */
    s2s_target t[MAX_TARGETS];
    size_t n;
};

struct resolver_query {
    enum q_kind kind;
    bool cancelled;
    int pending;               /* c-ares callbacks still to come */
    void *ud;
    resolver_srv_cb srv_cb;
    resolver_addr_cb addr_cb;
    char *domain;
    struct srv_part parts[2];  /* [0] _xmpps-server, [1] _xmpp-server */
    struct sockaddr_storage addrs[MAX_ADDRS];
    size_t n_addrs;
    const char *error;
};

struct watch {
    ares_socket_t fd;
    struct event *ev;
    struct watch *next;
};

static bool lib_ready;
static ares_channel channel;
static bool channel_ready;
static struct event *timer;
static struct watch *watches;

/* ---- the loop side ------------------------------------------------------- */

static void rearm(void)
{
    if (!channel_ready)
        return;
    struct timeval tv, *t = ares_timeout(channel, NULL, &tv);
    if (t)
        evtimer_add(timer, t);
    else
        evtimer_del(timer);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    ares_process_fd(channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    rearm();
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm();
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct watch **pp = &watches;
    while (*pp && (*pp)->fd != fd)
        pp = &(*pp)->next;
    struct watch *w = *pp;
    if (w) {
        event_free(w->ev);
        w->ev = NULL;
    }
    if (!readable && !writable) {
        if (w) {
            *pp = w->next;
            free(w);
        }
        return;
    }
    if (!w) {
        if (!(w = calloc(1, sizeof(*w))))
            return; /* the query times out */
        w->fd = fd;
        w->next = watches;
        watches = w;
    }
    short what = EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
    w->ev = event_new(loop_base(), fd, what, on_io, NULL);
    if (w->ev)
        event_add(w->ev, NULL);
}

int resolver_start(const char *servers, char *err, size_t errlen)
{
    if (!lib_ready) {
        int rc = ares_library_init(ARES_LIB_INIT_ALL);
        if (rc != ARES_SUCCESS) {
            snprintf(err, errlen, "resolver: %s", ares_strerror(rc));
            return -1;
        }
        lib_ready = true;
    }
    struct ares_options o = { 0 };
    o.sock_state_cb = sock_state;
    o.timeout = 2000; /* ms per try */
    o.tries = 2;
    int rc = ares_init_options(&channel, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
                                                 ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "resolver: %s", ares_strerror(rc));
        return -1;
    }
    channel_ready = true;
    if (servers && (rc = ares_set_servers_ports_csv(channel, servers)) != ARES_SUCCESS) {
        snprintf(err, errlen, "resolver: s2s.dns_servers: %s", ares_strerror(rc));
        resolver_stop();
        return -1;
    }
    if (!timer && !(timer = evtimer_new(loop_base(), on_timer, NULL))) {
        snprintf(err, errlen, "resolver: out of memory");
        resolver_stop();
        return -1;
    }
    return 0;
}

void resolver_stop(void)
{
    if (channel_ready) {
        channel_ready = false;
        ares_destroy(channel); /* callbacks run with ARES_EDESTRUCTION */
    }
    while (watches) {
        struct watch *w = watches;
        watches = w->next;
        if (w->ev)
            event_free(w->ev);
        free(w);
    }
    if (timer)
        event_free(timer);
    timer = NULL;
}

/* ---- ordering (RFC 2782) ----------------------------------------------------- */

static int by_priority(const void *a, const void *b)
{
    const s2s_target *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    /* zero weights first, as the selection below expects */
    return (x->weight != 0) - (y->weight != 0);
}

void resolver_order(s2s_target *t, size_t n, uint32_t (*rnd)(uint32_t n))
{
    /* Equal (priority, zero-ness) entries may come in any order: the
     * weighted draw below decides among them. */
    qsort(t, n, sizeof(*t), by_priority);
    for (size_t start = 0; start < n;) {
        size_t end = start;
        while (end < n && t[end].priority == t[start].priority)
            end++;
        /* Weighted selection among t[i..end): pick, swap into place. */
        for (size_t i = start; i + 1 < end; i++) {
            uint32_t sum = 0;
            for (size_t k = i; k < end; k++)
                sum += t[k].weight;
            uint32_t r = rnd(sum), run = 0;
            size_t pick = i;
            for (size_t k = i; k < end; k++) {
                run += t[k].weight;
                if (run >= r) {
                    pick = k;
                    break;
                }
            }
            if (pick != i) {
                s2s_target tmp = t[pick];
                memmove(&t[i + 1], &t[i], (pick - i) * sizeof(*t));
                t[i] = tmp;
            }
        }
        start = end;
    }
}

static uint32_t random_upto(uint32_t n)
{
    uint32_t v = 0;
    xmppd_random(&v, sizeof(v));
    return n == UINT32_MAX ? v : v % (n + 1);
}

void s2s_targets_free(s2s_target *t, size_t n)
{
    for (size_t i = 0; t && i < n; i++)
        free(t[i].host);
    free(t);
}

/* ---- queries ------------------------------------------------------------------ */

static void query_free(resolver_query *q)
{
    for (int p = 0; p < 2; p++)
        for (size_t i = 0; i < q->parts[p].n; i++)
            free(q->parts[p].t[i].host);
    free(q->domain);
    free(q);
}

static void srv_finish(resolver_query *q)
{
    if (q->cancelled) {
        query_free(q);
        return;
    }
    size_t n = q->parts[0].n + q->parts[1].n;
    bool refused = (q->parts[0].refused || q->parts[0].n == 0) &&
                   (q->parts[1].refused || q->parts[1].n == 0) &&
                   (q->parts[0].refused || q->parts[1].refused);
    s2s_target *t = calloc(n ? n : 1, sizeof(*t));
    size_t k = 0;
    if (t && n) {
        for (int p = 0; p < 2; p++)
            for (size_t i = 0; i < q->parts[p].n; i++) {
                t[k++] = q->parts[p].t[i];
                q->parts[p].t[i].host = NULL; /* moved */
            }
        resolver_order(t, k, random_upto);
    } else if (t && !refused) {
        /* RFC 6120 §3.2.2: no SRV records, the domain itself on 5269. */
        t[0] = (s2s_target){ .host = strdup(q->domain), .port = 5269 };
        k = t[0].host ? 1 : 0;
    }
    if (refused)
        q->srv_cb(q->ud, t, 0, "the domain offers no XMPP server (SRV target \".\")");
    else if (k == 0)
        q->srv_cb(q->ud, t, 0, "out of memory");
    else
        q->srv_cb(q->ud, t, k, NULL);
    query_free(q);
}

static void on_srv(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct srv_part *part = arg;
    resolver_query *q = part->q;
    struct ares_srv_reply *srv = NULL;
    if (status == ARES_SUCCESS && !q->cancelled &&
        ares_parse_srv_reply(abuf, alen, &srv) == ARES_SUCCESS) {
        size_t count = 0;
        for (struct ares_srv_reply *r = srv; r; r = r->next)
            count++;
        for (struct ares_srv_reply *r = srv; r && part->n < MAX_TARGETS; r = r->next) {
            if (!r->host[0] || strcmp(r->host, ".") == 0) {
                if (count == 1)
                    part->refused = true;
                continue;
            }
            s2s_target *t = &part->t[part->n];
            if (!(t->host = strdup(r->host)))
                break;
            t->port = r->port;
            t->priority = r->priority;
            t->weight = r->weight;
            t->direct_tls = part->direct_tls;
            part->n++;
        }
        ares_free_data(srv);
    }
    part->done = true;
    if (--q->pending == 0)
        srv_finish(q);
}

/* c-ares may answer from inside ares_query (cached or failed at once);
 * callers expect results on a later turn, so queries start on one. */
static void on_deferred_start(evutil_socket_t fd, short what, void *arg)
{
    resolver_query *q = arg;
    if (q->cancelled || !channel_ready) {
        query_free(q);
        return;
    }
    {
        q->pending = 2;
        for (int p = 0; p < 2; p++) {
            char name[1100];
            snprintf(name, sizeof(name), "%s._tcp.%s", p == 0 ? "_xmpps-server" : "_xmpp-server",
                     q->domain);
            ares_query(channel, name, DNS_CLASS_IN, DNS_TYPE_SRV, on_srv, &q->parts[p]);
        }
    }
    rearm();
}

resolver_query *resolver_srv(const char *domain, resolver_srv_cb cb, void *ud)
{
    if (!channel_ready)
        return NULL;
    resolver_query *q = calloc(1, sizeof(*q));
    if (!q || !(q->domain = strdup(domain))) {
        free(q);
        return NULL;
    }
    q->kind = Q_SRV;
    q->srv_cb = cb;
    q->ud = ud;
    q->parts[0].direct_tls = true;
    q->parts[0].q = q->parts[1].q = q;
    if (event_base_once(loop_base(), -1, EV_TIMEOUT, on_deferred_start, q, NULL) < 0) {
        query_free(q);
        return NULL;
    }
    return q;
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    resolver_query *q = arg;
    if (!q->cancelled) {
        if (status == ARES_SUCCESS && res) {
            for (struct ares_addrinfo_node *n = res->nodes; n && q->n_addrs < MAX_ADDRS; n = n->ai_next) {
                if ((n->ai_family != AF_INET && n->ai_family != AF_INET6) ||
                    (size_t)n->ai_addrlen > sizeof(q->addrs[0]))
                    continue;
                memcpy(&q->addrs[q->n_addrs++], n->ai_addr, (size_t)n->ai_addrlen);
            }
        }
        if (q->n_addrs == 0)
            q->error = status == ARES_SUCCESS ? "no address" : ares_strerror(status);
        q->addr_cb(q->ud, q->addrs, q->n_addrs, q->n_addrs ? NULL : q->error);
    }
    if (res)
        ares_freeaddrinfo(res);
    query_free(q);
}

static void on_deferred_addr(evutil_socket_t fd, short what, void *arg)
{
    resolver_query *q = arg;
    if (q->cancelled || !channel_ready) {
        query_free(q);
        return;
    }
    char port[8];
    snprintf(port, sizeof(port), "%d", q->parts[0].t[0].port);
    struct ares_addrinfo_hints hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                         .ai_flags = ARES_AI_NUMERICSERV };
    ares_getaddrinfo(channel, q->domain, port, &hints, on_addrinfo, q);
    rearm();
}

resolver_query *resolver_addrs(const char *host, int port, resolver_addr_cb cb, void *ud)
{
    if (!channel_ready)
        return NULL;
    resolver_query *q = calloc(1, sizeof(*q));
    if (!q || !(q->domain = strdup(host))) {
        free(q);
        return NULL;
    }
    q->kind = Q_ADDR;
    q->addr_cb = cb;
    q->ud = ud;
    q->parts[0].t[0].port = port; /* host stays NULL: nothing to free */
    if (event_base_once(loop_base(), -1, EV_TIMEOUT, on_deferred_addr, q, NULL) < 0) {
        query_free(q);
        return NULL;
    }
    return q;
}

void resolver_cancel(resolver_query *q)
{
    if (q)
        q->cancelled = true;
}
