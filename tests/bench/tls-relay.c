/*
 * tls-relay — the floor for the routing benchmark: a raw TLS relay.
 *
 * What xmppd's message routing costs is compared with what the same traffic
 * costs when nothing is parsed: one thread, one epoll loop, non-blocking
 * sockets, OpenSSL with the same certificate and the same TLS settings as
 * xmppd (TLS 1.2 minimum, so TLS 1.3 with the load generator;
 * SSL_MODE_RELEASE_BUFFERS, as xmppd keeps idle sessions small), one TLS
 * record and one send() per stream per loop turn, as xmppd's write path
 * does.
 *
 * It speaks just enough XMPP for tests/bench/loadgen to get sessions up with
 * `--plain`: the stream header, STARTTLS, SASL PLAIN accepting any password
 * (the user name is taken from the PLAIN message), a stream restart, resource
 * binding granting the requested resource, initial presence answered with a
 * presence to the session itself, and an in-band registration IQ answered
 * with a result so loadgen's setup phase passes. In a session every
 * top-level element is framed by counting tags (quote-aware, as loadgen's
 * own scanner does); an element with a `to` whose bare JID has a session is
 * forwarded as its bytes, with a `from` attribute (the sender's full JID)
 * inserted after the element name, to the session that bound that bare JID
 * last; an IQ without `to` gets an empty result; everything else is dropped.
 *
 * What it does NOT do, and xmppd does (so it is a floor, not a server):
 * no XML parsing (no well-formedness, namespaces, entities, CDATA,
 * restricted-XML checks), no stanza limits beyond a 1 MiB input buffer, no
 * JID preparation (the `to` is compared byte for byte), no authentication,
 * no rosters, presence, privacy, carbons, archive or offline storage, no
 * stanza errors for unknown recipients (they are dropped), no hooks or
 * modules, no logging per stanza.
 *
 * Usage (loopback only):
 *   tls-relay --port N --cert FILE --key FILE [--domain localhost]
 * Runs until SIGTERM or SIGINT. Built by `make bench`; never run by tests.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <getopt.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "xmlframe.h"

#define RELAY_MAX_INPUT (1u << 20)      /* a session's unframed input */
#define RELAY_MAX_OUTPUT (8u << 20)     /* a session's unsent output: a reader that stalls is cut */
#define HASH_BUCKETS 65536u

static const char *domain = "localhost";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tls-relay: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* ------------------------------------------------------------------------ */
/* buffers                                                                   */

typedef struct {
    char *p;
    size_t len, cap, off;     /* off: the sent prefix (output) */
} buf_t;

static void buf_add(buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            die("out of memory");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_free(buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------------ */
/* sessions                                                                  */

enum state {
    S_HDR1,       /* plaintext: waiting for the stream header */
    S_STARTTLS,   /* waiting for <starttls/> */
    S_TLSHS,      /* TLS handshake */
    S_HDR2,       /* TLS: waiting for the stream header */
    S_AUTH,       /* waiting for <auth/> (or a registration IQ) */
    S_HDR3,       /* after SASL: waiting for the restarted stream's header */
    S_BIND,       /* waiting for the bind IQ */
    S_READY,      /* relaying */
    S_DEAD
};

typedef struct sess {
    int fd;
    SSL *ssl;
    enum state st;
    uint32_t events;
    buf_t in, out;
    size_t pos;               /* scanned up to */
    int depth;                /* 0 before the stream header, 1 between elements */
    size_t el_start;          /* start of the current top-level element */
    char user[64];            /* from SASL PLAIN */
    char full[192];           /* user@domain/resource once bound */
    size_t bare_len;          /* length of user@domain in full */
    char from_attr[208];      /* " from='FULL'", inserted into what it sends */
    size_t from_len;
    bool bound, dirty, closing;
    struct sess *next_dirty, *next_dead, *hnext;
} sess;

static int ep;
static SSL_CTX *ctx;
static sess *dirty_list, *dead_list;
static sess *table[HASH_BUCKETS];   /* bound sessions by bare JID */

static uint32_t hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;   /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h & (HASH_BUCKETS - 1);
}

static sess *lookup(const char *bare, size_t n)
{
    for (sess *s = table[hash(bare, n)]; s; s = s->hnext)
        if (s->bare_len == n && memcmp(s->full, bare, n) == 0)
            return s;
    return NULL;
}

static void unbind(sess *s)
{
    if (!s->bound)
        return;
    for (sess **pp = &table[hash(s->full, s->bare_len)]; *pp; pp = &(*pp)->hnext)
        if (*pp == s) {
            *pp = s->hnext;
            break;
        }
    s->bound = false;
}

static void set_events(sess *s, uint32_t ev)
{
    if (ev == s->events)
        return;
    struct epoll_event e = { .events = ev, .data.ptr = s };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &e) < 0)
        die("epoll_ctl: %s", strerror(errno));
    s->events = ev;
}

static void kill_sess(sess *s)
{
    if (s->st == S_DEAD)
        return;
    s->st = S_DEAD;
    unbind(s);
    if (s->ssl) {
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->next_dead = dead_list;
    dead_list = s;
}

/* Queues bytes; they leave at the end of the loop turn (flush_dirty). */
static void out_add(sess *s, const char *p, size_t n)
{
    if (s->st == S_DEAD)
        return;
    if (s->out.len - s->out.off + n > RELAY_MAX_OUTPUT) {
        kill_sess(s);
        return;
    }
    buf_add(&s->out, p, n);
    if (!s->dirty) {
        s->dirty = true;
        s->next_dirty = dirty_list;
        dirty_list = s;
    }
}

static void out_printf(sess *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(sess *s, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp)
        die("internal: reply too long");
    out_add(s, tmp, (size_t)n);
}

/* Writes what is queued: one SSL_write (one record up to 16 KiB) and so one
 * send() per turn for a stanza burst, as xmppd does. */
static void flush(sess *s)
{
    while (s->st != S_DEAD && s->out.off < s->out.len) {
        size_t n = s->out.len - s->out.off;
        if (s->ssl) {
            ERR_clear_error();
            int r = SSL_write(s->ssl, s->out.p + s->out.off, (int)n);
            if (r > 0) {
                s->out.off += (size_t)r;
                continue;
            }
            int e = SSL_get_error(s->ssl, r);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                set_events(s, EPOLLIN | EPOLLOUT);
                return;
            }
            kill_sess(s);
            return;
        }
        ssize_t r = send(s->fd, s->out.p + s->out.off, n, MSG_NOSIGNAL);
        if (r > 0) {
            s->out.off += (size_t)r;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            set_events(s, EPOLLIN | EPOLLOUT);
            return;
        }
        kill_sess(s);
        return;
    }
    if (s->st == S_DEAD)
        return;
    s->out.len = s->out.off = 0;
    if (s->closing) {
        if (s->ssl)
            SSL_shutdown(s->ssl);
        kill_sess(s);
        return;
    }
    if (s->st != S_TLSHS)
        set_events(s, EPOLLIN);
}

static void flush_dirty(void)
{
    while (dirty_list) {
        sess *s = dirty_list;
        dirty_list = s->next_dirty;
        s->dirty = false;
        flush(s);
    }
}

static void reap_dead(void)
{
    while (dead_list) {
        sess *s = dead_list;
        dead_list = s->next_dead;
        buf_free(&s->in);
        buf_free(&s->out);
        free(s);
    }
}

/* ------------------------------------------------------------------------ */
/* the little XMPP there is                                                  */

static bool el_is(const char *el, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len > n + 1 && memcmp(el + 1, name, n) == 0 &&
           (el[n + 1] == ' ' || el[n + 1] == '>' || el[n + 1] == '/' || el[n + 1] == '\t' ||
            el[n + 1] == '\n' || el[n + 1] == '\r');
}

static void send_header(sess *s, const char *features)
{
    static unsigned long seq;
    out_printf(s, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                  "xmlns:stream='http://etherx.jabber.org/streams' from='%s' id='r%lu' "
                  "version='1.0'><stream:features>%s</stream:features>",
               domain, ++seq, features);
}

static void reset_framing(sess *s)
{
    /* what follows the element just handled stays (a pipelining client) */
    memmove(s->in.p, s->in.p + s->pos, s->in.len - s->pos);
    s->in.len -= s->pos;
    s->in.p[s->in.len] = '\0';
    s->pos = 0;
    s->depth = 0;
    s->el_start = 0;
}

static void on_header(sess *s)
{
    switch (s->st) {
    case S_HDR1:
        send_header(s, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>");
        s->st = S_STARTTLS;
        return;
    case S_HDR2:
        send_header(s, "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                       "<mechanism>PLAIN</mechanism></mechanisms>"
                       "<register xmlns='http://jabber.org/features/iq-register'/>");
        s->st = S_AUTH;
        return;
    case S_HDR3:
        send_header(s, "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>");
        s->st = S_BIND;
        return;
    default:
        kill_sess(s);
    }
}

static void start_tls(sess *s)
{
    /* <proceed/> leaves in plaintext, before the handshake */
    static const char proceed[] = "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
    out_add(s, proceed, sizeof proceed - 1);
    flush(s);
    if (s->st == S_DEAD || s->out.len) {
        kill_sess(s);   /* 50 bytes on a fresh socket do not block */
        return;
    }
    s->ssl = SSL_new(ctx);
    if (!s->ssl)
        die("SSL_new failed");
    SSL_set_fd(s->ssl, s->fd);
    SSL_set_accept_state(s->ssl);
    s->st = S_TLSHS;
    s->in.len = s->pos = 0;
    s->depth = 0;
}

static void on_auth(sess *s, const char *el, size_t len)
{
    const char *t;
    size_t tn;
    unsigned char raw[512];
    if (!xf_text(el, len, &t, &tn) || tn == 0 || tn % 4 || tn / 4 * 3 >= sizeof raw) {
        out_printf(s, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><malformed-request/></failure>");
        return;
    }
    int n = EVP_DecodeBlock(raw, (const unsigned char *)t, (int)tn);
    if (n < 0) {
        out_printf(s, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><incorrect-encoding/></failure>");
        return;
    }
    /* authzid NUL authcid NUL password: any password is accepted */
    const unsigned char *a = memchr(raw, 0, (size_t)n);
    const unsigned char *b = a ? memchr(a + 1, 0, (size_t)(raw + n - a - 1)) : NULL;
    size_t ul = b ? (size_t)(b - a - 1) : 0;
    if (!b || ul == 0 || ul >= sizeof s->user || memchr(a + 1, '\'', ul) ||
        memchr(a + 1, '@', ul) || memchr(a + 1, '<', ul) || memchr(a + 1, '&', ul)) {
        out_printf(s, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>");
        return;
    }
    memcpy(s->user, a + 1, ul);
    s->user[ul] = '\0';
    out_printf(s, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    s->st = S_HDR3;
    reset_framing(s);
}

static void iq_result(sess *s, const char *el, size_t len)
{
    const char *id;
    size_t idn;
    if (!xf_attr(el, len, "id", &id, &idn) || idn > 200)
        return;
    out_printf(s, "<iq type='result' id='%.*s'/>", (int)idn, id);
}

static void on_bind(sess *s, const char *el, size_t len)
{
    const char *id, *r = memmem(el, len, "<resource>", 10), *re = memmem(el, len, "</resource>", 11);
    size_t idn, rl = r && re && re > r + 10 ? (size_t)(re - r - 10) : 0;
    if (!el_is(el, len, "iq") || !xf_attr(el, len, "id", &id, &idn) || idn > 200 || rl == 0 ||
        rl > 64 || memchr(r + 10, '\'', rl) || memchr(r + 10, '<', rl) || memchr(r + 10, '&', rl)) {
        kill_sess(s);
        return;
    }
    int n = snprintf(s->full, sizeof s->full, "%s@%s/%.*s", s->user, domain, (int)rl, r + 10);
    if (n < 0 || (size_t)n >= sizeof s->full) {
        kill_sess(s);
        return;
    }
    s->bare_len = strlen(s->user) + 1 + strlen(domain);
    s->from_len = (size_t)snprintf(s->from_attr, sizeof s->from_attr, " from='%s'", s->full);
    /* the newest session of a bare JID receives what is sent to it */
    uint32_t h = hash(s->full, s->bare_len);
    s->hnext = table[h];
    table[h] = s;
    s->bound = true;
    out_printf(s, "<iq type='result' id='%.*s'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  "<jid>%s</jid></bind></iq>", (int)idn, id, s->full);
    s->st = S_READY;
}

/* A top-level element of a bound session: forwarded by its `to`. */
static void relay(sess *s, const char *el, size_t len)
{
    const char *to;
    size_t tn;
    if (!xf_attr(el, len, "to", &to, &tn)) {
        if (el_is(el, len, "iq"))
            iq_result(s, el, len);
        else if (el_is(el, len, "presence"))
            out_printf(s, "<presence from='%s' to='%s'/>", s->full, s->full);
        return;
    }
    const char *slash = memchr(to, '/', tn);
    sess *d = lookup(to, slash ? (size_t)(slash - to) : tn);
    if (!d || d->st == S_DEAD)
        return;
    /* "<message" + " from='FULL'" + the rest, as a server stamps `from` */
    size_t nl = 1;
    while (nl < len && el[nl] != ' ' && el[nl] != '>' && el[nl] != '/' && el[nl] != '\t' &&
           el[nl] != '\n' && el[nl] != '\r')
        nl++;
    out_add(d, el, nl);
    out_add(d, s->from_attr, s->from_len);
    out_add(d, el + nl, len - nl);
}

static void on_element(sess *s, const char *el, size_t len)
{
    switch (s->st) {
    case S_STARTTLS:
        if (el_is(el, len, "starttls"))
            start_tls(s);
        else
            kill_sess(s);
        return;
    case S_AUTH:
        if (el_is(el, len, "auth"))
            on_auth(s, el, len);
        else if (el_is(el, len, "iq"))   /* in-band registration: granted */
            iq_result(s, el, len);
        else
            kill_sess(s);
        return;
    case S_BIND:
        on_bind(s, el, len);
        return;
    case S_READY:
        relay(s, el, len);
        return;
    default:
        kill_sess(s);
    }
}

static void on_close(sess *s)
{
    out_add(s, "</stream:stream>", 16);
    s->closing = true;
}

/* Frames s->in into top-level elements (as loadgen does: tags counted,
 * quotes honoured, comments and processing instructions skipped). */
static void scan(sess *s)
{
    while (s->st != S_DEAD && s->st != S_TLSHS && !s->closing && s->pos < s->in.len) {
        char *p = s->in.p;
        size_t n = s->in.len;
        size_t i, j;
        xf_tag t = xf_next(p, n, &s->pos, &i, &j);
        if (t == XF_MORE)
            break;
        if (t == XF_SKIP)
            continue;
        if (t == XF_CLOSE) {
            if (--s->depth == 1)
                on_element(s, p + s->el_start, j + 1 - s->el_start);
            else if (s->depth <= 0)
                on_close(s);
            continue;
        }
        bool empty = t == XF_EMPTY;
        if (s->depth == 0) {
            s->depth = 1;
            on_header(s);
            continue;
        }
        if (s->depth == 1) {
            s->el_start = i;
            if (empty) {
                on_element(s, p + i, j + 1 - i);
                continue;
            }
        }
        if (!empty)
            s->depth++;
    }
    if (s->st == S_DEAD || s->st == S_TLSHS)
        return;
    /* drop what is handled */
    size_t keep = s->depth > 1 ? s->el_start : s->pos;
    if (keep > 0) {
        memmove(s->in.p, s->in.p + keep, s->in.len - keep);
        s->in.len -= keep;
        s->pos -= keep;
        s->el_start = 0;
        s->in.p[s->in.len] = '\0';
    }
}

static void handshake(sess *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->st = S_HDR2;
        set_events(s, EPOLLIN);
        return;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        set_events(s, EPOLLIN);
    else if (e == SSL_ERROR_WANT_WRITE)
        set_events(s, EPOLLIN | EPOLLOUT);
    else
        kill_sess(s);
}

static void readable(sess *s)
{
    for (;;) {
        if (s->st == S_TLSHS) {
            handshake(s);
            if (s->st == S_TLSHS || s->st == S_DEAD)
                return;
        }
        if (s->in.len + 16385 > s->in.cap) {
            if (s->in.len >= RELAY_MAX_INPUT) {
                kill_sess(s);
                return;
            }
            size_t cap = s->in.cap ? s->in.cap : 4096;
            while (cap < s->in.len + 16385)
                cap *= 2;
            char *p = realloc(s->in.p, cap);
            if (!p)
                die("out of memory");
            s->in.p = p;
            s->in.cap = cap;
        }
        ssize_t r;
        if (s->ssl) {
            ERR_clear_error();
            int k = SSL_read(s->ssl, s->in.p + s->in.len, 16384);
            if (k <= 0) {
                int e = SSL_get_error(s->ssl, k);
                if (e == SSL_ERROR_WANT_READ)
                    return;
                if (e == SSL_ERROR_WANT_WRITE) {
                    set_events(s, EPOLLIN | EPOLLOUT);
                    return;
                }
                kill_sess(s);
                return;
            }
            r = k;
        } else {
            r = recv(s->fd, s->in.p + s->in.len, 16384, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            if (r <= 0) {
                kill_sess(s);
                return;
            }
        }
        s->in.len += (size_t)r;
        s->in.p[s->in.len] = '\0';
        scan(s);
        if (s->st == S_DEAD || s->closing)
            return;
        if (!s->ssl && s->st != S_TLSHS)
            return;   /* plaintext: one read per event */
    }
}

static void on_event(sess *s, uint32_t ev)
{
    if (s->st == S_DEAD)
        return;
    if (s->st == S_TLSHS) {
        handshake(s);
        if (s->st != S_TLSHS && s->st != S_DEAD)
            readable(s);
        return;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
        readable(s);
    if (s->st != S_DEAD && (ev & EPOLLOUT))
        flush(s);
}

static void accept_all(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                return;
            if (errno == EMFILE || errno == ENFILE) {
                fprintf(stderr, "tls-relay: accept: %s\n", strerror(errno));
                return;
            }
            die("accept: %s", strerror(errno));
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);   /* as xmppd */
        sess *s = calloc(1, sizeof *s);
        if (!s)
            die("out of memory");
        s->fd = fd;
        s->st = S_HDR1;
        s->events = EPOLLIN;
        struct epoll_event e = { .events = EPOLLIN, .data.ptr = s };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0)
            die("epoll_ctl: %s", strerror(errno));
    }
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "port", 1, 0, 'p' }, { "cert", 1, 0, 'c' }, { "key", 1, 0, 'k' },
        { "domain", 1, 0, 'd' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 }
    };
    int port = 0, ch;
    const char *cert = NULL, *key = NULL;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'p': port = atoi(optarg); break;
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 'd': domain = optarg; break;
        default:
            fprintf(stderr, "usage: tls-relay --port N --cert FILE --key FILE [--domain D]\n");
            return 2;
        }
    }
    if (port <= 0 || port > 65535 || !cert || !key)
        die("usage: tls-relay --port N --cert FILE --key FILE [--domain D]");
    if (strlen(domain) > 100 || strpbrk(domain, "'\"<>&@/ "))
        die("--domain: a domain name of up to 100 characters");

    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        die("SSL_CTX_new failed");
    /* xmppd's server context (server/net/tls.c) */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        die("cannot load %s / %s", cert, key);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 1024) < 0)
        die("127.0.0.1:%d: %s", port, strerror(errno));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));
    static sess listener;   /* its address tells listener events apart */
    struct epoll_event e = { .events = EPOLLIN, .data.ptr = &listener };
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sact = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sact, NULL);
    sigaction(SIGINT, &sact, NULL);
    fprintf(stderr, "tls-relay: listening on 127.0.0.1:%d\n", port);

    struct epoll_event evs[256];
    while (!stop) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &listener)
                accept_all(lfd);
            else
                on_event(evs[i].data.ptr, evs[i].events);
        }
        flush_dirty();
        reap_dead();
    }
    close(lfd);
    SSL_CTX_free(ctx);
    return 0;
}
