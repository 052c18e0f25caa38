/* The PROXY protocol, versions 1 and 2 (HAProxy's proxy-protocol.txt), on
 * listeners with "proxy_protocol": a load balancer in front of the nodes
 * (contrib/haproxy/xmppd.cfg) says who the client is before the first
 * byte of the stream, so logs, access rules and per-address limits see the
 * client, not the balancer.
 *
 * Only a source in the listener's trusted_proxies may speak it (anyone
 * else could claim any address): another source is refused. A header that
 * is not one, or is incomplete within the limit, closes the connection
 * (the spec: a receiver must not guess). The header is read with MSG_PEEK
 * and then consumed exactly, so not one byte of the stream after it (a TLS
 * ClientHello, say) is taken from the connection's own reader. */
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/net.h"
#include "util/cidr.h"

#define V1_MAX 107              /* the spec's longest v1 line, CRLF included */
#define V2_HEAD 16
#define V2_MAX (V2_HEAD + 216)  /* addresses plus TLVs we accept (HAProxy sends < 100) */
#define HEADER_TIMEOUT_S 5

static const unsigned char V2_SIG[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                          0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

typedef struct waiting {
    struct event *ev;
    int fd;
    struct sockaddr_storage peer;   /* the balancer */
    int peerlen;
    proxy_done_fn done;
    void *ud;
    struct waiting *prev, *next;
} waiting;

static waiting *g_waiting; /* headers being read, freed by proxy_stop */

static void unlink_waiting(waiting *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        g_waiting = w->next;
    if (w->next)
        w->next->prev = w->prev;
    event_free(w->ev);
    free(w);
}

/* sa's address as text in out (INET6_ADDRSTRLEN bytes); "" for another
 * family. */
static void addr_text(const struct sockaddr *sa, char *out)
{
    out[0] = '\0';
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, INET6_ADDRSTRLEN);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, INET6_ADDRSTRLEN);
}

static void fail(waiting *w, const char *ip, const char *why)
{
    log_kernel("listener", XMPPD_LOG_WARN, "%s: PROXY protocol: %s; connection closed", ip, why);
    close(w->fd);
    unlink_waiting(w);
}

/* v1: "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN ...\r\n".
 * The header's length, 0 while incomplete, -1 when malformed; *sa set for
 * TCP4/TCP6 (*salen 0: keep the real address). */
static int parse_v1(const char *b, size_t n, struct sockaddr_storage *sa, int *salen)
{
    const char *crlf = memchr(b, '\r', n);
    if (!crlf)
        return n >= V1_MAX ? -1 : 0;
    if ((size_t)(crlf - b) + 1 >= n)
        return n >= V1_MAX ? -1 : 0;
    if (crlf[1] != '\n' || crlf - b + 2 > V1_MAX)
        return -1;
    int len = (int)(crlf - b) + 2;
    char line[V1_MAX + 1];
    memcpy(line, b, (size_t)(crlf - b));
    line[crlf - b] = '\0';
    char proto[8], src[64], dst[64];
    unsigned sport, dport;
    *salen = 0;
    if (strncmp(line, "PROXY UNKNOWN", 13) == 0 && (line[13] == '\0' || line[13] == ' '))
        return len;
    int used = 0;
    if (sscanf(line, "PROXY %7s %63s %63s %5u %5u%n", proto, src, dst, &sport, &dport, &used) != 5 ||
        line[used] != '\0' || sport > 65535 || dport > 65535)
        return -1;
    if (strcmp(proto, "TCP4") == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)sa;
        struct in_addr d;
        memset(in, 0, sizeof(*in));
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)sport);
        if (inet_pton(AF_INET, src, &in->sin_addr) != 1 || inet_pton(AF_INET, dst, &d) != 1)
            return -1;
        *salen = sizeof(*in);
    } else if (strcmp(proto, "TCP6") == 0) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        struct in6_addr d;
        memset(in6, 0, sizeof(*in6));
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)sport);
        if (inet_pton(AF_INET6, src, &in6->sin6_addr) != 1 || inet_pton(AF_INET6, dst, &d) != 1)
            return -1;
        *salen = sizeof(*in6);
    } else {
        return -1;
    }
    return len;
}

/* v2: the binary header. Same answers as parse_v1. */
static int parse_v2(const unsigned char *b, size_t n, struct sockaddr_storage *sa, int *salen)
{
    if (n < V2_HEAD)
        return 0;
    unsigned ver = b[12] >> 4, cmd = b[12] & 0x0F, fam = b[13];
    size_t len = V2_HEAD + ((size_t)b[14] << 8 | b[15]);
    if (ver != 2 || cmd > 1 || len > V2_MAX)
        return -1;
    if (n < len)
        return 0;
    *salen = 0;
    if (cmd == 0)
        return (int)len; /* LOCAL: the balancer's own check; its address stays */
    if (fam == 0x11) {   /* TCP over IPv4 */
        if (len < V2_HEAD + 12)
            return -1;
        struct sockaddr_in *in = (struct sockaddr_in *)sa;
        memset(in, 0, sizeof(*in));
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, b + 16, 4);
        memcpy(&in->sin_port, b + 24, 2);
        *salen = sizeof(*in);
    } else if (fam == 0x21) { /* TCP over IPv6 */
        if (len < V2_HEAD + 36)
            return -1;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        memset(in6, 0, sizeof(*in6));
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, b + 16, 16);
        memcpy(&in6->sin6_port, b + 48, 2);
        *salen = sizeof(*in6);
    } else if (fam != 0x00) {
        return -1; /* UDP or UNIX sockets: not what an XMPP listener proxies */
    }
    return (int)len;
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    waiting *w = arg;
    char ip[INET6_ADDRSTRLEN];
    addr_text((const struct sockaddr *)&w->peer, ip);
    if (what & EV_TIMEOUT) {
        fail(w, ip, "no complete header in time");
        return;
    }
    unsigned char b[V2_MAX];
    ssize_t n = recv(fd, b, sizeof(b), MSG_PEEK);
    if (n <= 0) {
        fail(w, ip, n == 0 ? "closed before the header" : "read error");
        return;
    }
    struct sockaddr_storage sa;
    int salen = 0, len;
    size_t cmp = (size_t)n < sizeof(V2_SIG) ? (size_t)n : sizeof(V2_SIG);
    if (memcmp(b, V2_SIG, cmp) == 0)
        len = parse_v2(b, (size_t)n, &sa, &salen);
    else if (memcmp(b, "PROXY ", (size_t)n < 6 ? (size_t)n : 6) == 0)
        len = parse_v1((const char *)b, (size_t)n, &sa, &salen);
    else
        len = -1;
    if (len < 0) {
        fail(w, ip, "malformed header");
        return;
    }
    if (len == 0)
        return; /* more to come */
    if (recv(fd, b, (size_t)len, 0) != len) {
        fail(w, ip, "read error");
        return;
    }
    proxy_done_fn done = w->done;
    void *ud = w->ud;
    char client[INET6_ADDRSTRLEN] = "";
    if (salen)
        addr_text((const struct sockaddr *)&sa, client);
    /* the one line tying the balancer's connection to the client */
    log_kernel("listener", XMPPD_LOG_DEBUG, "%s: PROXY protocol v%c: client %s", ip,
               b[0] == 'P' ? '1' : '2', salen ? client : "not given (the balancer's own)");
    if (!salen) {
        memcpy(&sa, &w->peer, sizeof(sa));
        salen = w->peerlen;
    }
    unlink_waiting(w);
    done(ud, (int)fd, (const struct sockaddr *)&sa, salen);
}

void proxy_accept(int fd, const struct sockaddr *sa, int socklen,
                  const char *const *trusted, proxy_done_fn done, void *ud)
{
    char ip[INET6_ADDRSTRLEN];
    addr_text(sa, ip);
    if (!ip[0] || !cidr_list_match(ip, trusted)) {
        log_kernel("listener", XMPPD_LOG_WARN, "%s: refused: not a trusted proxy of this "
                   "PROXY-protocol listener", ip[0] ? ip : "?");
        close(fd);
        return;
    }
    waiting *w = calloc(1, sizeof(*w));
    if (!w || (size_t)socklen > sizeof(w->peer)) {
        free(w);
        close(fd);
        return;
    }
    w->fd = fd;
    memcpy(&w->peer, sa, (size_t)socklen);
    w->peerlen = socklen;
    w->done = done;
    w->ud = ud;
    struct timeval tv = { HEADER_TIMEOUT_S, 0 };
    if (!(w->ev = event_new(loop_base(), fd, EV_READ | EV_PERSIST, on_readable, w)) ||
        event_add(w->ev, &tv) < 0) {
        if (w->ev)
            event_free(w->ev);
        free(w);
        close(fd);
        return;
    }
    w->next = g_waiting;
    if (g_waiting)
        g_waiting->prev = w;
    g_waiting = w;
}

void proxy_stop(void)
{
    while (g_waiting) {
        close(g_waiting->fd);
        unlink_waiting(g_waiting);
    }
}
