/*
 * loadgen — an XMPP client load generator for benchmarking c2s servers.
 *
 * One process, one thread, epoll, non-blocking sockets, OpenSSL. Every client
 * connection does what a real client does: stream header, STARTTLS, TLS
 * handshake, SASL (SCRAM-SHA-1 without channel binding, or PLAIN), stream
 * restart, resource binding (and the legacy session IQ when a server says it
 * is not optional), initial presence. The workloads then measure the SERVER's
 * CPU time (utime + stime of the server process from /proc/PID/stat, all its
 * threads) and memory (VmRSS from /proc/PID/status) around a bounded amount
 * of work:
 *
 *   register  in-band registration (XEP-0077) of every account used below
 *             (setup, not measured)
 *   route     pairs of sessions send chat messages to each other's bare JID,
 *             a bounded window in flight per sender; CPU-s per 100k delivered
 *   login     full logins (TCP + STARTTLS + SASL + bind + presence, then
 *             </stream:stream>), a few at a time; CPU-ms per login
 *   idle      many authenticated idle TLS sessions; RSS per session
 *   fanout    one user with K contacts (mutual subscriptions, made through
 *             the protocol: every session first fetches its roster, then
 *             subscribe/subscribed both ways) changes presence R times;
 *             CPU-us per presence delivered to a contact
 *   pep       one user with K contacts (as fanout) whose clients announce
 *             interest in the tune node through XEP-0115 caps (answering the
 *             server's disco#info) publishes R items (XEP-0163), one at a
 *             time, each when every contact has the one before (after one
 *             unmeasured publication that every contact must receive);
 *             CPU-us per notification a contact has (duplicates not
 *             counted), time until the last contact has it, RSS
 *   muc       N occupants join one room of the server's XEP-0045 service
 *             (the first one creates it, as an instant room when the server
 *             locks new rooms), then one occupant sends M groupchat messages,
 *             one at a time, each when every occupant has the one before;
 *             CPU-us per delivered message, time until the last occupant has
 *             a message, RSS growth per occupant from joining
 *   offline   messages to accounts that are offline (stored per CPU-second),
 *             then those accounts log in and fetch them (fetched per
 *             CPU-second and per wall second)
 *
 * messages_lost: route messages neither delivered nor bounced, plus offline
 * messages whose storage was acknowledged (a ping after them was answered)
 * and that never arrived after the login; a bounce is counted in
 * route_errors / offline_store_errors, not as lost.
 *
 * Only for loopback benchmarking: certificates are not verified. Every phase
 * is bounded in count and in time (--phase-timeout).
 *
 * Results are printed on stdout as "RESULT key value" lines; progress and
 * errors go to stderr.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <getopt.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "xmlframe.h"

/* ------------------------------------------------------------------------ */
/* options                                                                  */

static struct {
    const char *host;
    int port;
    int port2;               /* route: odd sessions on this port (another cluster node) */
    char *extra_pids;        /* comma list: processes whose CPU counts with the server's */
    const char *domain;
    int pid;                 /* server process to measure */
    const char *password;
    const char *prefix;      /* account name prefix */
    bool plain;              /* SASL PLAIN instead of SCRAM-SHA-1 */
    int reg_concurrency;
    int pairs;               /* route: session pairs */
    long messages;           /* route: messages in total */
    int window;              /* route: messages in flight per sender */
    int logins;              /* login: how many */
    int login_concurrency;
    int sessions;            /* idle: how many */
    int idle_concurrency;
    int contacts;            /* fanout: K */
    int rounds;              /* fanout: presence changes of the hub */
    int pep_contacts;        /* pep: K */
    int pep_rounds;          /* pep: publications of the hub */
    int muc_occupants;       /* muc: occupants of the room */
    int muc_messages;        /* muc: groupchat messages sent one at a time */
    int muc_join_concurrency;
    const char *muc_service; /* muc: the service's domain (default conference.DOMAIN) */
    long offline_msgs;       /* offline: messages in total */
    int offline_rcpts;       /* offline: recipients */
    int offline_senders;
    int phase_timeout;       /* seconds, per phase */
    const char *workloads;   /* comma list */
    bool skip_register;
    bool sm;                 /* sessions enable XEP-0198 stream management */
} opt = {
    .host = "127.0.0.1", .port = 5222, .domain = "localhost", .pid = 0,
    .password = "bench-password-1", .prefix = "bench", .plain = false,
    .reg_concurrency = 16, .pairs = 50, .messages = 100000, .window = 32,
    .logins = 1000, .login_concurrency = 8, .sessions = 5000, .idle_concurrency = 32,
    .contacts = 500, .rounds = 100, .pep_contacts = 1000, .pep_rounds = 50,
    .muc_occupants = 1000, .muc_messages = 50, .muc_join_concurrency = 16, .offline_msgs = 20000, .offline_rcpts = 10,
    .offline_senders = 10, .phase_timeout = 240,
    .workloads = "register,route,login,idle,fanout,pep,muc,offline",
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------ */
/* server measurements                                                      */

/* utime + stime of process pid in seconds (all threads). */
static double pid_cpu(int pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot read %s: %s (did the server die?)", path, strerror(errno));
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        die("unexpected format of %s", path);
    /* fields after ")": 3 state, 4 ppid, ... 14 utime, 15 stime */
    unsigned long long ut = 0, st = 0;
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == 14)
            ut = strtoull(tok, NULL, 10);
        else if (field == 15) {
            st = strtoull(tok, NULL, 10);
            break;
        }
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The server's CPU seconds: its process and --extra-pids (the other nodes
 * of a cluster and Redis). */
static double server_cpu(void)
{
    double cpu = pid_cpu(opt.pid);
    for (const char *p = opt.extra_pids; p && *p;) {
        cpu += pid_cpu(atoi(p));
        p = strchr(p, ',');
        p = p ? p + 1 : NULL;
    }
    return cpu;
}

/* The load generator's own CPU time in seconds: what a latency figure owes
 * to the client side (it decrypts and parses every delivery). */
static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Seconds the threads of process pid (0: this one) spent runnable but
 * waiting for a CPU (/proc/PID/task/TID/schedstat, second field): on a
 * shared machine, what a latency figure owes to other work, not to the
 * server or to this client. */
static double runq_wait_s(int pid)
{
    char dir[64], path[400];
    snprintf(dir, sizeof dir, pid ? "/proc/%d/task" : "/proc/self/task", pid);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    double s = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s/schedstat", dir, e->d_name);
        FILE *f = fopen(path, "r");
        unsigned long long run, wait;
        if (f && fscanf(f, "%llu %llu", &run, &wait) == 2)
            s += (double)wait / 1e9;
        if (f)
            fclose(f);
    }
    closedir(d);
    return s;
}

/* VmRSS of the server in KiB. */
static long server_rss_kib(void)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", opt.pid);
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot read %s: %s (did the server die?)", path, strerror(errno));
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

static void result(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void result(const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("RESULT %s ", key);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* small helpers: growable buffer, base64, XML scanning                      */

typedef struct {
    char *p;
    size_t len, cap, off;   /* off: consumed prefix (output buffers) */
} buf_t;

static void buf_reserve(buf_t *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 512;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        die("out of memory");
    b->p = p;
    b->cap = cap;
}

static void buf_add(buf_t *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_free(buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static char *b64enc(const unsigned char *in, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!out)
        die("out of memory");
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    return out;
}

/* Decodes base64 text (no whitespace); returns length or -1. */
static int b64dec(const char *in, size_t n, unsigned char *out, size_t outsz)
{
    if (n % 4 || (n / 4) * 3 > outsz)
        return -1;
    int len = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (len < 0)
        return -1;
    if (n && in[n - 1] == '=')
        len--;
    if (n > 1 && in[n - 2] == '=')
        len--;
    return len;
}

/* Copies the value of attribute name of the element's opening tag ("" and
 * false when it has none). */
static bool get_attr(const char *el, size_t len, const char *name, char *out, size_t outsz)
{
    const char *v;
    size_t n = 0;
    bool found = xf_attr(el, len, name, &v, &n);
    if (n >= outsz)
        n = outsz - 1;
    if (found)
        memcpy(out, v, n);
    out[n] = '\0';
    return found;
}

/* Local name of the element (after any prefix). */
static void el_name(const char *el, size_t len, char *out, size_t outsz)
{
    size_t i = 1, s = 1;
    while (i < len && el[i] != ' ' && el[i] != '>' && el[i] != '/' && el[i] != '\t' &&
           el[i] != '\n' && el[i] != '\r') {
        if (el[i] == ':')
            s = i + 1;
        i++;
    }
    size_t n = i - s;
    if (n >= outsz)
        n = outsz - 1;
    memcpy(out, el + s, n);
    out[n] = '\0';
}

static bool contains(const char *el, size_t len, const char *s)
{
    return memmem(el, len, s, strlen(s)) != NULL;
}

/* ------------------------------------------------------------------------ */
/* accounts                                                                  */

typedef struct {
    char name[48];
    /* SCRAM SaltedPassword cache: the server's salt and iteration count */
    char salt[128];
    int iter;
    unsigned char salted[SHA_DIGEST_LENGTH];
} account_t;

static account_t *accts;     /* u accounts then o accounts */
static int n_u, n_o;         /* counts */

static account_t *acct_u(int i) { return &accts[i]; }
static account_t *acct_o(int i) { return &accts[n_u + i]; }

/* ------------------------------------------------------------------------ */
/* connections                                                               */

enum state {
    ST_CONNECTING, ST_FEAT1, ST_PROCEED, ST_TLSHS, ST_FEAT2, ST_REG, ST_SASL,
    ST_FEAT3, ST_BIND, ST_SESSION, ST_PRES, ST_READY, ST_DEAD
};

enum kind { K_REG, K_SESS, K_LOGIN };

typedef struct conn {
    int fd;
    SSL *ssl;
    enum state st;
    enum kind kind;
    account_t *acct;
    int idx;                 /* index among the phase's sessions, or -1 */
    uint32_t events;         /* epoll interest */
    bool hs_want_write;
    bool dirty, closing;
    bool pooled;             /* holds a slot of the login pool */
    double close_by;         /* closing: give up waiting for the server then */
    double born;             /* connect time: negotiation must end in 30 s */
    bool session_needed;
    buf_t in, out;
    /* incoming scanner */
    size_t pos;              /* scanned up to */
    int depth;               /* 0 before the stream header, 1 between stanzas */
    size_t st_start;         /* start of the current top-level element */
    /* SASL */
    char cnonce[40];
    char *cfmb;              /* client-first-message-bare */
    char *auth_msg;
    unsigned char server_sig[SHA_DIGEST_LENGTH];
    char jid[160];
    char resource[32];
    /* XEP-0198 (--sm): enabled, and stanzas received since <enable/> */
    bool sm_on;
    uint32_t sm_h;
    /* workload counters */
    long sent, got;
    struct conn *next_dirty;
    struct conn *next_dead;
    struct conn *prev_all, *next_all;
} conn;

static int ep;
static SSL_CTX *ssl_ctx;
static struct sockaddr_storage srv_addr;
static socklen_t srv_addrlen;
static struct sockaddr_storage srv_addr2; /* --port2 */
static socklen_t srv_addrlen2;
static conn *dirty_list, *dead_list, *all_conns;
static long n_conns;                 /* live connections */
static unsigned long resource_seq;

/* per-phase counters, reset by each phase */
static struct {
    long ready, failed, closed;
    long reg_ok, reg_conflict, reg_err;
    long errors;                    /* error stanzas seen */
    char last_error[256];
} ph;

static void conn_kill(conn *c, const char *why);
static void on_stanza(conn *c, const char *el, size_t len);
static void on_ready(conn *c);
static void on_gone(conn *c);

static void set_events(conn *c, uint32_t ev)
{
    if (c->fd < 0 || ev == c->events)
        return;
    struct epoll_event e = { .events = ev, .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) < 0)
        die("epoll_ctl: %s", strerror(errno));
    c->events = ev;
}

static void mark_dirty(conn *c)
{
    if (!c->dirty && c->st != ST_DEAD) {
        c->dirty = true;
        c->next_dirty = dirty_list;
        dirty_list = c;
    }
}

static void send_raw(conn *c, const char *s, size_t n)
{
    if (c->st == ST_DEAD)
        return;
    buf_add(&c->out, s, n);
    mark_dirty(c);
}

static void sendf(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sendf(conn *c, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp)
        die("stanza too long for sendf");
    send_raw(c, tmp, (size_t)n);
}

static void send_header(conn *c)
{
    sendf(c, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
             "xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>",
          opt.domain);
}

/* Writes what is queued; false when the connection died. */
static bool conn_flush(conn *c)
{
    while (c->out.off < c->out.len) {
        size_t n = c->out.len - c->out.off;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_write(c->ssl, c->out.p + c->out.off, (int)n);
            if (r > 0) {
                c->out.off += (size_t)r;
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                set_events(c, EPOLLIN | (e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : 0));
                return true;
            }
            conn_kill(c, c->closing ? NULL : "TLS write failed");
            return false;
        }
        ssize_t r = send(c->fd, c->out.p + c->out.off, n, MSG_NOSIGNAL);
        if (r > 0) {
            c->out.off += (size_t)r;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            set_events(c, EPOLLIN | EPOLLOUT);
            return true;
        }
        conn_kill(c, c->closing ? NULL : "write failed");
        return false;
    }
    c->out.len = c->out.off = 0;
    if (c->st != ST_CONNECTING && !c->hs_want_write)
        set_events(c, EPOLLIN);
    return true;
}

static void flush_dirty(void)
{
    while (dirty_list) {
        conn *c = dirty_list;
        dirty_list = c->next_dirty;
        c->dirty = false;
        if (c->st != ST_DEAD && c->st != ST_CONNECTING && c->st != ST_TLSHS)
            conn_flush(c);
    }
}

static void conn_kill(conn *c, const char *why)
{
    if (c->st == ST_DEAD)
        return;
    if (why) {
        ph.failed++;
        snprintf(ph.last_error, sizeof ph.last_error, "%s: %s", c->acct ? c->acct->name : "?", why);
    } else
        ph.closed++;
    c->st = ST_DEAD;
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    n_conns--;
    if (c->prev_all)
        c->prev_all->next_all = c->next_all;
    else
        all_conns = c->next_all;
    if (c->next_all)
        c->next_all->prev_all = c->prev_all;
    c->next_dead = dead_list;
    dead_list = c;
    on_gone(c);
}

/* Ends the stream politely; the connection is closed when the server ends
 * its stream or closes the connection, or after 5 s (sweep_closing). */
static void conn_close(conn *c)
{
    if (c->st == ST_DEAD || c->closing)
        return;
    if (c->st < ST_FEAT1 || c->st == ST_TLSHS) {
        conn_kill(c, NULL);
        return;
    }
    send_raw(c, "</stream:stream>", 16);
    c->closing = true;
    c->close_by = 0;
}

/* Closes connections whose closing handshake or negotiation takes too long. */
static void sweep_closing(void)
{
    double t = now_s();
    for (conn *c = all_conns, *nx; c; c = nx) {
        nx = c->next_all;
        if (!c->closing) {
            if (c->st != ST_READY && t - c->born > 30)
                conn_kill(c, "negotiation timed out (30 s)");
            continue;
        }
        if (c->close_by == 0)
            c->close_by = t + 5;
        else if (t > c->close_by)
            conn_kill(c, NULL);
    }
}

static void reap_dead(void)
{
    while (dead_list) {
        conn *c = dead_list;
        dead_list = c->next_dead;
        if (c->dirty) {
            /* still on the dirty list: unlink it */
            conn **pp = &dirty_list;
            while (*pp && *pp != c)
                pp = &(*pp)->next_dirty;
            if (*pp)
                *pp = c->next_dirty;
        }
        buf_free(&c->in);
        buf_free(&c->out);
        free(c->cfmb);
        free(c->auth_msg);
        free(c);
    }
}

static conn *conn_new(enum kind kind, account_t *a, int idx)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        die("out of memory");
    c->kind = kind;
    c->acct = a;
    c->idx = idx;
    c->fd = socket(srv_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s (raise the open-files limit?)", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    n_conns++;
    c->next_all = all_conns;
    if (all_conns)
        all_conns->prev_all = c;
    all_conns = c;
    c->st = ST_CONNECTING;
    c->born = now_s();
    c->events = EPOLLOUT;
    struct epoll_event e = { .events = EPOLLOUT, .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) < 0)
        die("epoll_ctl: %s", strerror(errno));
    /* route on two nodes: each pair's second session on the other node */
    bool second = opt.port2 && kind == K_SESS && idx >= 0 && (idx & 1);
    if (connect(c->fd, (struct sockaddr *)(second ? &srv_addr2 : &srv_addr),
                second ? srv_addrlen2 : srv_addrlen) < 0 && errno != EINPROGRESS)
        conn_kill(c, strerror(errno));
    return c;
}

/* ------------------------------------------------------------------------ */
/* XMPP negotiation                                                          */

static void reset_parser(conn *c)
{
    c->in.len = 0;
    c->pos = 0;
    c->depth = 0;
    c->st_start = 0;
}

static void start_tls(conn *c)
{
    c->ssl = SSL_new(ssl_ctx);
    if (!c->ssl)
        die("SSL_new failed");
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, opt.domain);
    SSL_set_connect_state(c->ssl);
    c->st = ST_TLSHS;
    reset_parser(c);
}

static void tls_handshake(conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->hs_want_write = false;
        c->st = ST_FEAT2;
        send_header(c);
        conn_flush(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        c->hs_want_write = false;
        set_events(c, EPOLLIN);
    } else if (e == SSL_ERROR_WANT_WRITE) {
        c->hs_want_write = true;
        set_events(c, EPOLLIN | EPOLLOUT);
    } else {
        char eb[160];
        ERR_error_string_n(ERR_get_error(), eb, sizeof eb);
        conn_kill(c, eb);
    }
}

static void hmac_sha1(const unsigned char *key, size_t klen, const void *d, size_t n,
                      unsigned char out[SHA_DIGEST_LENGTH])
{
    unsigned int ol = SHA_DIGEST_LENGTH;
    if (!HMAC(EVP_sha1(), key, (int)klen, d, n, out, &ol))
        die("HMAC failed");
}

static void sasl_start(conn *c)
{
    account_t *a = c->acct;
    if (opt.plain) {
        char raw[256];
        int n = snprintf(raw, sizeof raw, "%c%s%c%s", 0, a->name, 0, opt.password);
        char *b = b64enc((unsigned char *)raw, (size_t)n);
        sendf(c, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>", b);
        free(b);
    } else {
        unsigned char rnd[18];
        RAND_bytes(rnd, sizeof rnd);
        char *r = b64enc(rnd, sizeof rnd);
        snprintf(c->cnonce, sizeof c->cnonce, "%s", r);
        free(r);
        if (asprintf(&c->cfmb, "n=%s,r=%s", a->name, c->cnonce) < 0)
            die("out of memory");
        size_t l = strlen(c->cfmb);
        char *first = malloc(l + 4);
        if (!first)
            die("out of memory");
        memcpy(first, "n,,", 3);
        memcpy(first + 3, c->cfmb, l + 1);
        char *b = b64enc((unsigned char *)first, l + 3);
        sendf(c, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>%s</auth>", b);
        free(b);
        free(first);
    }
    c->st = ST_SASL;
}

/* server-first-message -> client-final-message */
static void scram_challenge(conn *c, const char *el, size_t len)
{
    const char *t;
    size_t tn;
    unsigned char sf[512];
    if (c->auth_msg) {
        /* a final challenge carrying v= (pre-RFC 6120 servers) */
        send_raw(c, "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", 52);
        return;
    }
    if (!xf_text(el, len, &t, &tn)) {
        conn_kill(c, "bad SCRAM challenge");
        return;
    }
    int sfl = b64dec(t, tn, sf, sizeof sf - 1);
    if (sfl <= 0) {
        conn_kill(c, "bad SCRAM challenge base64");
        return;
    }
    sf[sfl] = '\0';
    const char *sfs = (const char *)sf;
    const char *rp = strstr(sfs, "r="), *sp = strstr(sfs, ",s="), *ip = strstr(sfs, ",i=");
    if (!rp || !sp || !ip || sp < rp || strncmp(rp + 2, c->cnonce, strlen(c->cnonce)) != 0) {
        conn_kill(c, "bad SCRAM server-first-message");
        return;
    }
    char nonce[256], salt64[128];
    size_t nl = (size_t)(sp - (rp + 2));
    if (nl >= sizeof nonce) {
        conn_kill(c, "SCRAM nonce too long");
        return;
    }
    memcpy(nonce, rp + 2, nl);
    nonce[nl] = '\0';
    if (ip < sp + 3 || (size_t)(ip - (sp + 3)) >= sizeof salt64) {
        conn_kill(c, "bad SCRAM salt");
        return;
    }
    size_t sl = (size_t)(ip - (sp + 3));
    memcpy(salt64, sp + 3, sl);
    salt64[sl] = '\0';
    int iter = atoi(ip + 3);
    if (iter < 1 || iter > 10000000) {
        conn_kill(c, "bad SCRAM iteration count");
        return;
    }
    account_t *a = c->acct;
    if (a->iter != iter || strcmp(a->salt, salt64) != 0) {
        unsigned char salt[96];
        int saltl = b64dec(salt64, sl, salt, sizeof salt);
        if (saltl <= 0) {
            conn_kill(c, "bad SCRAM salt");
            return;
        }
        if (!PKCS5_PBKDF2_HMAC(opt.password, (int)strlen(opt.password), salt, saltl, iter,
                               EVP_sha1(), SHA_DIGEST_LENGTH, a->salted))
            die("PBKDF2 failed");
        snprintf(a->salt, sizeof a->salt, "%s", salt64);
        a->iter = iter;
    }
    unsigned char ck[SHA_DIGEST_LENGTH], sk[SHA_DIGEST_LENGTH], stored[SHA_DIGEST_LENGTH],
        csig[SHA_DIGEST_LENGTH], proof[SHA_DIGEST_LENGTH];
    hmac_sha1(a->salted, SHA_DIGEST_LENGTH, "Client Key", 10, ck);
    SHA1(ck, SHA_DIGEST_LENGTH, stored);
    char cfwp[320];
    snprintf(cfwp, sizeof cfwp, "c=biws,r=%s", nonce);
    if (asprintf(&c->auth_msg, "%s,%s,%s", c->cfmb, sfs, cfwp) < 0)
        die("out of memory");
    hmac_sha1(stored, SHA_DIGEST_LENGTH, c->auth_msg, strlen(c->auth_msg), csig);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        proof[i] = ck[i] ^ csig[i];
    hmac_sha1(a->salted, SHA_DIGEST_LENGTH, "Server Key", 10, sk);
    hmac_sha1(sk, SHA_DIGEST_LENGTH, c->auth_msg, strlen(c->auth_msg), c->server_sig);
    char *p64 = b64enc(proof, sizeof proof);
    char final[512];
    int fl = snprintf(final, sizeof final, "%s,p=%s", cfwp, p64);
    free(p64);
    char *f64 = b64enc((unsigned char *)final, (size_t)fl);
    sendf(c, "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>", f64);
    free(f64);
}

static void sasl_success(conn *c, const char *el, size_t len)
{
    if (!opt.plain) {
        const char *t;
        size_t tn;
        unsigned char v[128];
        if (xf_text(el, len, &t, &tn) && tn > 0) {
            int vl = b64dec(t, tn, v, sizeof v - 1);
            if (vl > 2) {
                v[vl] = '\0';
                char *s64 = b64enc(c->server_sig, SHA_DIGEST_LENGTH);
                bool ok = strncmp((char *)v, "v=", 2) == 0 && strcmp((char *)v + 2, s64) == 0;
                free(s64);
                if (!ok) {
                    conn_kill(c, "SCRAM server signature mismatch");
                    return;
                }
            }
        }
    }
    free(c->auth_msg);
    c->auth_msg = NULL;
    free(c->cfmb);
    c->cfmb = NULL;
    c->st = ST_FEAT3;
    reset_parser(c);
    send_header(c);
}

static void send_presence_initial(conn *c)
{
    if (opt.sm && c->kind != K_REG) {
        /* XEP-0198 §3, with resumption as a phone asks for it */
        send_raw(c, "<enable xmlns='urn:xmpp:sm:3' resume='true'/>", 45);
        c->sm_on = true;
    }
    send_raw(c, "<presence/>", 11);
    c->st = ST_PRES;
}

/* XEP-0198 elements and counting (--sm): true when el was one of ours. */
static bool sm_element(conn *c, const char *name)
{
    if (!c->sm_on)
        return false;
    if (strcmp(name, "message") == 0 || strcmp(name, "presence") == 0 || strcmp(name, "iq") == 0) {
        c->sm_h++;
        return false;
    }
    if (strcmp(name, "r") == 0) {
        sendf(c, "<a xmlns='urn:xmpp:sm:3' h='%u'/>", c->sm_h);
        return true;
    }
    return strcmp(name, "enabled") == 0 || strcmp(name, "a") == 0;
}

/* One complete top-level element from the server. */
static void handle_element(conn *c, const char *el, size_t len)
{
    char name[32];
    el_name(el, len, name, sizeof name);
    if (strcmp(name, "error") == 0 && memmem(el, len < 16 ? len : 16, "stream:", 7)) {
        char why[200];
        size_t n = len < sizeof why - 1 ? len : sizeof why - 1;
        memcpy(why, el, n);
        why[n] = '\0';
        conn_kill(c, why);
        return;
    }
    if (sm_element(c, name))
        return;
    switch (c->st) {
    case ST_FEAT1:
        if (strcmp(name, "features") == 0) {
            if (!contains(el, len, "urn:ietf:params:xml:ns:xmpp-tls")) {
                conn_kill(c, "server offers no STARTTLS");
                return;
            }
            send_raw(c, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", 51);
            c->st = ST_PROCEED;
        }
        return;
    case ST_PROCEED:
        if (strcmp(name, "proceed") == 0)
            start_tls(c);
        else
            conn_kill(c, "STARTTLS refused");
        return;
    case ST_FEAT2:
        if (strcmp(name, "features") != 0)
            return;
        if (c->kind == K_REG) {
            sendf(c, "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'>"
                     "<username>%s</username><password>%s</password></query></iq>",
                  c->acct->name, opt.password);
            c->st = ST_REG;
            return;
        }
        if (!contains(el, len, opt.plain ? ">PLAIN<" : ">SCRAM-SHA-1<")) {
            conn_kill(c, opt.plain ? "server offers no PLAIN" : "server offers no SCRAM-SHA-1");
            return;
        }
        sasl_start(c);
        return;
    case ST_REG:
        if (strcmp(name, "iq") == 0) {
            char type[16];
            get_attr(el, len, "type", type, sizeof type);
            if (strcmp(type, "result") == 0)
                ph.reg_ok++;
            else if (contains(el, len, "<conflict"))
                ph.reg_conflict++;
            else {
                ph.reg_err++;
                size_t n = len < sizeof ph.last_error - 1 ? len : sizeof ph.last_error - 1;
                memcpy(ph.last_error, el, n);
                ph.last_error[n] = '\0';
            }
            c->st = ST_READY;
            on_ready(c);
        }
        return;
    case ST_SASL:
        if (strcmp(name, "challenge") == 0) {
            if (opt.plain)
                conn_kill(c, "unexpected challenge");
            else
                scram_challenge(c, el, len);
        } else if (strcmp(name, "success") == 0)
            sasl_success(c, el, len);
        else if (strcmp(name, "failure") == 0)
            conn_kill(c, "SASL failure (wrong password or no such account?)");
        return;
    case ST_FEAT3:
        if (strcmp(name, "features") != 0)
            return;
        if (!contains(el, len, "urn:ietf:params:xml:ns:xmpp-bind")) {
            conn_kill(c, "no resource binding offered");
            return;
        }
        c->session_needed = contains(el, len, "urn:ietf:params:xml:ns:xmpp-session") &&
                            !contains(el, len, "<optional");
        snprintf(c->resource, sizeof c->resource, "lg%lu", ++resource_seq);
        sendf(c, "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                 "<resource>%s</resource></bind></iq>", c->resource);
        c->st = ST_BIND;
        return;
    case ST_BIND:
        if (strcmp(name, "iq") == 0) {
            char type[16];
            get_attr(el, len, "type", type, sizeof type);
            if (strcmp(type, "result") != 0) {
                conn_kill(c, "bind failed");
                return;
            }
            const char *j = memmem(el, len, "<jid>", 5), *je = memmem(el, len, "</jid>", 6);
            if (j && je && je > j + 5 && (size_t)(je - j - 5) < sizeof c->jid) {
                memcpy(c->jid, j + 5, (size_t)(je - j - 5));
                c->jid[je - j - 5] = '\0';
            } else
                snprintf(c->jid, sizeof c->jid, "%s@%s/%s", c->acct->name, opt.domain, c->resource);
            if (c->session_needed) {
                sendf(c, "<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
                c->st = ST_SESSION;
            } else
                send_presence_initial(c);
        }
        return;
    case ST_SESSION:
        if (strcmp(name, "iq") == 0)
            send_presence_initial(c);
        return;
    case ST_PRES:
        if (strcmp(name, "presence") == 0) {
            char from[200], type[24];
            get_attr(el, len, "from", from, sizeof from);
            get_attr(el, len, "type", type, sizeof type);
            if (!type[0] && (!from[0] || strcmp(from, c->jid) == 0)) {
                c->st = ST_READY;
                on_ready(c);
                return;
            }
        }
        on_stanza(c, el, len);
        return;
    case ST_READY:
        on_stanza(c, el, len);
        return;
    default:
        return;
    }
}

/* Scans c->in for complete top-level elements. */
static void scan_input(conn *c)
{
    char *p = c->in.p;
    size_t n = c->in.len;
    while (c->st != ST_DEAD && c->pos < n) {
        if (c->st == ST_TLSHS)     /* <proceed/> switched to TLS */
            return;
        size_t i, j;
        xf_tag t = xf_next(p, n, &c->pos, &i, &j);
        if (t == XF_MORE)
            break;
        if (t == XF_SKIP)
            continue;
        if (t == XF_CLOSE) {
            c->depth--;
            if (c->depth == 1) {
                handle_element(c, p + c->st_start, j + 1 - c->st_start);
                if (c->st == ST_DEAD)
                    return;
                p = c->in.p;   /* a stream restart resets the buffer */
                n = c->in.len;
            } else if (c->depth <= 0) {
                /* the server ended its stream */
                conn_kill(c, c->closing || c->kind != K_SESS ? NULL : "server closed the stream");
                return;
            }
            continue;
        }
        bool empty = t == XF_EMPTY;
        if (c->depth == 0) {
            c->depth = 1;      /* the stream header */
            continue;
        }
        if (c->depth == 1) {
            c->st_start = i;
            if (empty) {
                handle_element(c, p + i, j + 1 - i);
                if (c->st == ST_DEAD)
                    return;
                p = c->in.p;
                n = c->in.len;
                continue;
            }
        }
        if (!empty)
            c->depth++;
    }
    if (c->st == ST_DEAD)
        return;
    /* drop what is consumed */
    size_t keep_from = c->depth > 1 ? c->st_start : c->pos;
    if (keep_from > 0 && keep_from <= c->in.len) {
        memmove(c->in.p, c->in.p + keep_from, c->in.len - keep_from);
        c->in.len -= keep_from;
        c->pos -= keep_from;
        if (c->depth > 1)
            c->st_start = 0;
        c->in.p[c->in.len] = '\0';
    }
}

static void conn_readable(conn *c)
{
    for (int rounds = 0; rounds < 64 && c->st != ST_DEAD; rounds++) {
        if (c->st == ST_TLSHS) {
            tls_handshake(c);
            if (c->st == ST_TLSHS || c->st == ST_DEAD)
                return;
            continue;
        }
        buf_reserve(&c->in, 16384);
        ssize_t r;
        if (c->ssl) {
            ERR_clear_error();
            int k = SSL_read(c->ssl, c->in.p + c->in.len, 16384);
            if (k <= 0) {
                int e = SSL_get_error(c->ssl, k);
                if (e == SSL_ERROR_WANT_READ)
                    return;
                if (e == SSL_ERROR_WANT_WRITE) {
                    set_events(c, EPOLLIN | EPOLLOUT);
                    return;
                }
                if (c->closing || c->kind != K_SESS)
                    conn_kill(c, NULL);
                else
                    conn_kill(c, e == SSL_ERROR_ZERO_RETURN ? "server closed TLS" : "TLS read failed");
                return;
            }
            r = k;
        } else {
            r = recv(c->fd, c->in.p + c->in.len, 16384, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            if (r <= 0) {
                conn_kill(c, r == 0 ? "server closed the connection" : strerror(errno));
                return;
            }
        }
        c->in.len += (size_t)r;
        c->in.p[c->in.len] = '\0';
        scan_input(c);
        if (!c->ssl && c->st != ST_TLSHS)
            return;    /* plaintext: one read per event */
    }
}

static void conn_event(conn *c, uint32_t ev)
{
    if (c->st == ST_DEAD)
        return;
    if (c->st == ST_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            conn_kill(c, strerror(err));
            return;
        }
        c->st = ST_FEAT1;
        set_events(c, EPOLLIN);
        send_header(c);
        conn_flush(c);
        return;
    }
    if (c->st == ST_TLSHS) {
        tls_handshake(c);
        if (c->st != ST_TLSHS && c->st != ST_DEAD)
            conn_readable(c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
        conn_readable(c);
    if (c->st != ST_DEAD && ((ev & EPOLLOUT) || c->out.off < c->out.len))
        conn_flush(c);
}

/* Runs the loop until done() is true or the deadline passes; true if done
 * (always true without done()). */
static bool run_until(bool (*done)(void), double deadline)
{
    struct epoll_event evs[256];
    double next_sweep = 0;
    for (;;) {
        flush_dirty();
        reap_dead();
        if (now_s() >= next_sweep) {
            sweep_closing();
            next_sweep = now_s() + 0.5;
        }
        if (done && done())
            return true;
        double left = deadline - now_s();
        if (left <= 0)
            return done == NULL;
        int ms = left > 0.05 ? 50 : (int)(left * 1000) + 1;
        int n = epoll_wait(ep, evs, 256, ms);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++)
            conn_event(evs[i].data.ptr, evs[i].events);
    }
}

/* Keeps the loop running until the server's CPU time stops growing (not one
 * clock tick within 200 ms) or max_s passes; returns the server CPU time. */
static double settle(double max_s)
{
    double end = now_s() + max_s, prev = server_cpu();
    for (;;) {
        run_until(NULL, now_s() + 0.2);
        double cur = server_cpu();
        if (cur == prev || now_s() >= end)
            return cur;
        prev = cur;
    }
}

/* ------------------------------------------------------------------------ */
/* workloads                                                                 */

enum phase { P_NONE, P_REG, P_ROUTE, P_LOGIN, P_IDLE, P_FANOUT_SETUP, P_FANOUT, P_PEP, P_MUC_JOIN,
             P_MUC, P_OFF_STORE, P_OFF_FETCH };
static enum phase phase;

static conn **sess;           /* persistent sessions of the phase, by index */
static int n_sess;            /* size of sess */

/* --- login pool: connections for accounts acct(i), i in [first, total),
 * at most conc negotiating at a time. A connection holds its slot until it is
 * ready (sessions) or gone (registrations, transient logins). --- */
static account_t *(*pool_acct)(int);
static int pool_total, pool_started, pool_active, pool_conc;
static enum kind pool_kind;

static void pool_fill(void)
{
    while (pool_started < pool_total && pool_active < pool_conc) {
        int i = pool_started++;
        conn *c = conn_new(pool_kind, pool_acct(i), pool_kind == K_SESS ? i : -1);
        if (c->st == ST_DEAD)
            continue;
        c->pooled = true;
        pool_active++;
        if (pool_kind == K_SESS && i < n_sess)
            sess[i] = c;
    }
}

static void pool_release(conn *c)
{
    if (c->pooled) {
        c->pooled = false;
        pool_active--;
        pool_fill();
    }
}

static void pool_start(enum kind kind, account_t *(*acct)(int), int first, int total, int conc)
{
    pool_kind = kind;
    pool_acct = acct;
    pool_total = total;
    pool_started = first;
    pool_active = 0;
    pool_conc = conc;
    pool_fill();
}

static bool pool_done(void)
{
    return pool_started >= pool_total && pool_active == 0;
}

static void reset_ph(void)
{
    memset(&ph, 0, sizeof ph);
}

/* route state */
static long route_quota;      /* per sender */
static long route_delivered;

/* fanout state (the pep workload shares the hub and its contacts) */
static int fan_k;             /* contacts of the hub */
static int fan_hub;           /* index in sess */
static long fan_subscribed_hub, fan_subscribed_contacts, fan_recv, fan_rosters;
static unsigned char *fan_mutual; /* [i]: the hub's roster has contact i with subscription both */
static int fan_round;

/* pep state */
#define PEP_NODE "http://jabber.org/protocol/tune"
#define PEP_CAPS_NODE "https://xmppd.example/loadgen"
static const char *const pep_features[] = { "http://jabber.org/protocol/caps",
                                            "http://jabber.org/protocol/disco#info",
                                            PEP_NODE "+notify", NULL }; /* sorted */
static char pep_ver[64];      /* XEP-0115 verification string of those */
static long pep_recv, pep_disco, pep_dups;
static int pep_round;         /* publication being delivered (0: the unmeasured first) */
static int pep_round_have;    /* contacts that have it */
static double pep_sent_at;
static double pep_disco_at;   /* when the last disco#info query was answered */
/* pep_seen[i * (pep_rounds + 1) + r]: contact i has publication r; a server
 * may send a contact the same notification twice (Prosody 0.12 does: to the
 * contact's bare JID and to its full JID), which is counted once. */
static unsigned char *pep_seen;

/* muc state: occupant i is sess[i] with nick nI; sess[0] creates the room
 * and sends the messages. conn.sent: 1 join sent, 2 joined, 3 refused;
 * conn.got: the last message round it received. */
#define NS_MUC "http://jabber.org/protocol/muc"
static char muc_room[256];    /* the room's bare JID */
static int muc_n, muc_join_next, muc_join_inflight, muc_joined, muc_join_failed;
static bool muc_created;      /* the first joiner's presence had status 201 */
static int muc_config;        /* owner form: 0 waiting, 1 accepted, -1 refused */
static int muc_round;         /* message being delivered (1-based) */
static long muc_recv, muc_deliveries;
static bool muc_refused;      /* a groupchat message bounced */
static double muc_sent_at;

/* offline state */
static long off_sent, off_acked, off_fetched;
static long route_lost = -1, offline_lost = -1;   /* -1: workload not run */
static double off_first_fetched; /* now_s() of the first stored message received */
static long off_per_sender;

static void route_pump(conn *c)
{
    conn *peer = sess[c->idx ^ 1];
    if (!peer || peer->st == ST_DEAD)
        return;
    while (c->sent < route_quota && c->sent - peer->got < opt.window) {
        c->sent++;
        sendf(c, "<message to='%s@%s' type='chat' id='m%ld'><body>Benchmark message %ld: "
                 "the quick brown fox jumps over the lazy dog.</body></message>",
              peer->acct->name, opt.domain, c->sent, c->sent);
    }
}

/* Marks the contacts that the hub's roster (an iq result) already has with
 * subscription both: an earlier workload subscribed them, and a server
 * ignores a subscription approval it already has (RFC 6121 §3.1.6), so the
 * hub must not wait for one. */
static void fan_note_mutual(const char *el, size_t len)
{
    char pre[64];
    int pl = snprintf(pre, sizeof pre, "%su", opt.prefix);
    for (const char *p = el, *end = el + len; (p = memmem(p, (size_t)(end - p), "<item", 5)); p += 5) {
        char jid[300], sub[16];
        size_t rest = (size_t)(end - p);
        get_attr(p, rest, "jid", jid, sizeof jid);
        get_attr(p, rest, "subscription", sub, sizeof sub);
        if (strcmp(sub, "both") != 0 || strncmp(jid, pre, (size_t)pl) != 0)
            continue;
        char *at;
        long i = strtol(jid + pl, &at, 10);
        if (*at == '@' && at > jid + pl && i >= 0 && i < fan_k)
            fan_mutual[i] = 1;
    }
}

static void fan_send_round(void)
{
    conn *hub = sess[fan_hub];
    fan_round++;
    sendf(hub, "<presence><show>%s</show><status>round %d</status></presence>",
          (fan_round & 1) ? "away" : "chat", fan_round);
}

static void pep_publish(int round)
{
    conn *hub = sess[fan_hub];
    pep_round = round;
    pep_round_have = 0;
    pep_sent_at = now_s();
    sendf(hub, "<iq type='set' id='pub%d'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
               "<publish node='" PEP_NODE "'><item id='current'><tune xmlns='" PEP_NODE "'>"
               "<artist>loadgen</artist><title>round %d</title></tune></item></publish></pubsub></iq>",
          round, round);
}

/* XEP-0115 §5.1 for identity client/pc//loadgen and pep_features. */
static void pep_compute_ver(void)
{
    char s[512];
    size_t n = (size_t)snprintf(s, sizeof s, "client/pc//loadgen<");
    for (int i = 0; pep_features[i]; i++)
        n += (size_t)snprintf(s + n, sizeof s - n, "%s<", pep_features[i]);
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)s, n, md);
    char *v = b64enc(md, sizeof md);
    snprintf(pep_ver, sizeof pep_ver, "%s", v);
    free(v);
}

/* Answers a server's disco#info query for our caps node (any server asks
 * before it sends +notify events). */
static void pep_answer_disco(conn *c, const char *el, size_t len)
{
    /* ids are the server's own: ejabberd's are about 80 characters */
    char id[256], from[300], node[300] = "";
    get_attr(el, len, "id", id, sizeof id);
    get_attr(el, len, "from", from, sizeof from);
    const char *qe = memmem(el, len, "<query", 6);
    if (qe)
        get_attr(qe, len - (size_t)(qe - el), "node", node, sizeof node);
    buf_t b = { 0 };
    char head[600];
    int n = snprintf(head, sizeof head, "<iq type='result' id='%s' to='%s'><query xmlns='"
                     "http://jabber.org/protocol/disco#info'%s%s%s><identity category='client' "
                     "type='pc' name='loadgen'/>", id, from, node[0] ? " node='" : "", node,
                     node[0] ? "'" : "");
    buf_add(&b, head, (size_t)n);
    for (int i = 0; pep_features[i]; i++) {
        n = snprintf(head, sizeof head, "<feature var='%s'/>", pep_features[i]);
        buf_add(&b, head, (size_t)n);
    }
    buf_add(&b, "</query></iq>", 13);
    send_raw(c, b.p, b.len);
    buf_free(&b);
    pep_disco++;
    pep_disco_at = now_s();
}

static void muc_send_join(conn *c)
{
    c->sent = 1;
    sendf(c, "<presence to='%s/n%d'><x xmlns='" NS_MUC "'><history maxchars='0'/></x></presence>",
          muc_room, c->idx);
}

/* Joins of occupants 1..n-1, muc_join_concurrency waiting for their
 * self-presence at a time. */
static void muc_join_pump(void)
{
    while (muc_join_next < muc_n && muc_join_inflight < opt.muc_join_concurrency) {
        conn *c = sess[muc_join_next++];
        if (!c || c->st != ST_READY) {
            muc_join_failed++;
            continue;
        }
        muc_join_inflight++;
        muc_send_join(c);
    }
}

/* A join answered (self-presence or error). */
static void muc_join_answered(conn *c, bool ok)
{
    c->sent = ok ? 2 : 3;
    if (ok)
        muc_joined++;
    else
        muc_join_failed++;
    if (c->idx != 0) {
        muc_join_inflight--;
        muc_join_pump();
    }
}

static bool muc_has_status(const char *el, size_t len, const char *code)
{
    char a[24], b[24];
    snprintf(a, sizeof a, "code='%s'", code);
    snprintf(b, sizeof b, "code=\"%s\"", code);
    return contains(el, len, a) || contains(el, len, b);
}

static void muc_send_round(void)
{
    muc_round++;
    muc_recv = 0;
    muc_sent_at = now_s();
    sendf(sess[0], "<message to='%s' type='groupchat' id='g%d'><body>muc bench round %d: "
                   "the quick brown fox jumps over the lazy dog.</body></message>",
          muc_room, muc_round, muc_round);
}

static void off_pump(conn *c)
{
    /* batches of 50 messages, each followed by a ping; two batches in flight */
    while (c->sent < off_per_sender && c->sent - c->got < 100) {
        for (int k = 0; k < 50 && c->sent < off_per_sender; k++) {
            long m = c->sent++;
            account_t *r = acct_o((int)((m + c->idx) % opt.offline_rcpts));
            sendf(c, "<message to='%s@%s' type='chat' id='o%ld'><body>Offline benchmark message %ld "
                     "from %s.</body></message>", r->name, opt.domain, m, m, c->acct->name);
            off_sent++;
        }
        sendf(c, "<iq type='get' id='p%ld' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>",
              c->sent, opt.domain);
    }
}

/* login latencies (connect to bound and available), in ms */
static double *lat_ms;
static long n_lat, cap_lat;

static void lat_add(double ms)
{
    if (n_lat == cap_lat) {
        long cap = cap_lat ? cap_lat * 2 : 1024;
        double *v = realloc(lat_ms, (size_t)cap * sizeof(*v));
        if (!v)
            return;
        lat_ms = v;
        cap_lat = cap;
    }
    lat_ms[n_lat++] = ms;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double lat_pct(double p)
{
    return lat_ms[(long)(p * (double)(n_lat - 1) + 0.5)];
}

static void on_ready(conn *c)
{
    ph.ready++;
    if (c->kind == K_LOGIN)
        lat_add((now_s() - c->born) * 1000.0);
    if (c->kind == K_SESS)
        pool_release(c);
    else
        conn_close(c);
}

static void on_gone(conn *c)
{
    if (c->kind == K_SESS && c->idx >= 0 && c->idx < n_sess && sess[c->idx] == c)
        sess[c->idx] = NULL;
    pool_release(c);
}

static bool from_is(const char *from, const char *user)
{
    size_t l = strlen(user);
    return strncmp(from, user, l) == 0 && from[l] == '@';
}

static void on_stanza(conn *c, const char *el, size_t len)
{
    char name[16], type[24], from[200];
    el_name(el, len, name, sizeof name);
    get_attr(el, len, "type", type, sizeof type);
    if (strcmp(name, "iq") == 0 && strcmp(type, "get") == 0 &&
        contains(el, len, "http://jabber.org/protocol/disco#info")) {
        pep_answer_disco(c, el, len);
        return;
    }
    if (strcmp(name, "iq") == 0 && strcmp(type, "set") == 0 && contains(el, len, "jabber:iq:roster")) {
        /* a roster push: acknowledged as a client does (RFC 6121 §2.1.6) */
        char id[256];
        get_attr(el, len, "id", id, sizeof id);
        sendf(c, "<iq type='result' id='%s'/>", id);
        return;
    }
    if (strcmp(type, "error") == 0 && !(phase == P_OFF_STORE && strcmp(name, "iq") == 0)) {
        ph.errors++;
        size_t n = len < sizeof ph.last_error - 1 ? len : sizeof ph.last_error - 1;
        memcpy(ph.last_error, el, n);
        ph.last_error[n] = '\0';
        if (phase == P_MUC_JOIN && strcmp(name, "presence") == 0 && c->sent == 1)
            muc_join_answered(c, false);
        else if (phase == P_MUC_JOIN && strcmp(name, "iq") == 0)
            muc_config = -1;
        else if (phase == P_MUC && strcmp(name, "message") == 0)
            muc_refused = true;
        if (phase == P_ROUTE && strcmp(name, "message") == 0) {
            /* a bounced message still frees its window slot */
            conn *peer = sess[c->idx ^ 1];
            if (peer)
                peer->got++;
            route_delivered++;
            route_pump(c);
        }
        return;
    }
    switch (phase) {
    case P_ROUTE:
        if (strcmp(name, "message") == 0) {
            c->got++;
            route_delivered++;
            conn *peer = sess[c->idx ^ 1];
            if (peer && peer->st != ST_DEAD)
                route_pump(peer);
        }
        return;
    case P_FANOUT_SETUP:
        if (strcmp(name, "iq") == 0 && strcmp(type, "result") == 0) {
            char id[32];
            get_attr(el, len, "id", id, sizeof id);
            if (strcmp(id, "fanroster") == 0) {
                fan_rosters++;
                if (c->idx == fan_hub)
                    fan_note_mutual(el, len);
            }
            return;
        }
        if (strcmp(name, "presence") != 0)
            return;
        get_attr(el, len, "from", from, sizeof from);
        {
            char bare[200];
            snprintf(bare, sizeof bare, "%s", from);
            char *sl = strchr(bare, '/');
            if (sl)
                *sl = '\0';
            if (strcmp(type, "subscribe") == 0) {
                sendf(c, "<presence to='%s' type='subscribed'/>", bare);
                if (c->idx != fan_hub && c->sent == 0) {
                    c->sent = 1;
                    sendf(c, "<presence to='%s@%s' type='subscribe'/>", sess[fan_hub]->acct->name,
                          opt.domain);
                }
            } else if (strcmp(type, "subscribed") == 0) {
                if (c->idx == fan_hub)
                    fan_subscribed_hub++;
                else
                    fan_subscribed_contacts++;
            }
        }
        return;
    case P_FANOUT:
        if (strcmp(name, "presence") != 0 || type[0] || c->idx == fan_hub)
            return;
        get_attr(el, len, "from", from, sizeof from);
        if (from_is(from, sess[fan_hub]->acct->name)) {
            c->got++;
            fan_recv++;
            /* keep up to two rounds in flight */
            if (fan_round < opt.rounds && fan_recv >= (long)(fan_round - 1) * opt.contacts)
                fan_send_round();
        }
        return;
    case P_PEP:
        if (strcmp(name, "message") != 0 || c->idx == fan_hub || c->idx < 0 || c->idx >= fan_k ||
            !contains(el, len, "http://jabber.org/protocol/pubsub#event"))
            return;
        get_attr(el, len, "from", from, sizeof from);
        if (from_is(from, sess[fan_hub]->acct->name)) {
            const char *r = memmem(el, len, "<title>round ", 13);
            /* el lies in c->in, which is NUL-terminated after the element */
            int round = r ? atoi(r + 13) : -1;
            if (round < 0 || round > opt.pep_rounds)
                return;
            unsigned char *seen = &pep_seen[(size_t)c->idx * (size_t)(opt.pep_rounds + 1) + (size_t)round];
            if (*seen) {
                pep_dups++;
                return;
            }
            *seen = 1;
            if (round > 0) {
                c->got++;
                pep_recv++;
            }
            if (round == pep_round && ++pep_round_have == fan_k) {
                if (round > 0)
                    lat_add((now_s() - pep_sent_at) * 1000.0);
                if (round > 0 && round < opt.pep_rounds)
                    pep_publish(round + 1);
            }
        }
        return;
    case P_MUC_JOIN:
        if (strcmp(name, "presence") == 0 && c->sent == 1 && !type[0]) {
            char self[300];
            get_attr(el, len, "from", from, sizeof from);
            snprintf(self, sizeof self, "%s/n%d", muc_room, c->idx);
            if (strcasecmp(from, self) == 0) {
                if (c->idx == 0)
                    muc_created = muc_has_status(el, len, "201");
                muc_join_answered(c, true);
            }
        } else if (strcmp(name, "iq") == 0 && c->idx == 0 && strcmp(type, "result") == 0) {
            char id[32];
            get_attr(el, len, "id", id, sizeof id);
            if (strcmp(id, "mucconf") == 0)
                muc_config = 1;
        }
        return;
    case P_MUC:
        if (strcmp(name, "message") == 0 && strcmp(type, "groupchat") == 0 && c->sent == 2) {
            const char *r = memmem(el, len, "muc bench round ", 16);
            /* el lies in c->in, which is NUL-terminated after the element */
            if (!r || atoi(r + 16) != muc_round || c->got >= muc_round)
                return;
            c->got = muc_round;
            muc_deliveries++;
            if (++muc_recv == muc_joined) {
                lat_add((now_s() - muc_sent_at) * 1000.0);
                if (muc_round < opt.muc_messages)
                    muc_send_round();
            }
        }
        return;
    case P_OFF_STORE:
        if (strcmp(name, "iq") == 0) {   /* a refused ping acknowledges too */
            char id[32];
            get_attr(el, len, "id", id, sizeof id);
            if (id[0] == 'p') {
                long upto = atol(id + 1);
                off_acked += upto - c->got;
                c->got = upto;
                off_pump(c);
            }
        }
        return;
    case P_OFF_FETCH:
        if (strcmp(name, "message") == 0 && contains(el, len, "Offline benchmark message")) {
            if (!off_fetched)
                off_first_fetched = now_s();
            c->got++;
            off_fetched++;
        }
        return;
    default:
        return;
    }
}

/* --- phases --- */

static bool all_delivered(void) { return route_delivered >= route_quota * 2L * opt.pairs; }
static double fan_hub_done_at;
static bool fan_setup_done(void)
{
    if (fan_subscribed_hub < fan_k)
        return false;
    /* contacts whose half was left over by an earlier run on the same
     * accounts see nothing (the server answers for them); mutual ones are
     * counted already (fan_note_mutual). A busy server may take seconds to
     * deliver the rest: give them 30 s after the hub has all. */
    if (fan_hub_done_at == 0)
        fan_hub_done_at = now_s();
    return fan_subscribed_contacts >= fan_k || now_s() - fan_hub_done_at > 30;
}
static bool fan_done(void) { return fan_recv >= (long)opt.rounds * fan_k; }
static bool pep_done(void) { return pep_recv >= (long)opt.pep_rounds * fan_k; }
static bool pep_first_done(void) { return pep_round_have >= fan_k; }
static double pep_caps_at;    /* when the contacts sent their caps */
/* The server has asked (and asked nothing more for 2 s), or asked nothing in
 * 30 s (it knew the verification string already). */
static bool pep_disco_quiet(void)
{
    return (pep_disco > 0 && now_s() - pep_disco_at > 2) || now_s() - pep_caps_at > 30;
}
static bool fan_rosters_done(void) { return fan_rosters >= fan_k + 1; }
static bool muc_first_answered(void) { return sess[0] == NULL || sess[0]->sent != 1; }
static bool muc_config_answered(void) { return muc_config != 0; }
static bool muc_joins_done(void) { return muc_join_next >= muc_n && muc_join_inflight == 0; }
static bool muc_msgs_done(void)
{
    return muc_refused || (muc_round >= opt.muc_messages && muc_recv >= muc_joined);
}
static bool off_store_done(void) { return off_acked >= (long)off_per_sender * opt.offline_senders; }
static bool off_fetch_done(void) { return off_fetched >= off_sent; }
static bool no_conns(void) { return n_conns == 0; }

static void close_all_sessions(void)
{
    for (int i = 0; i < n_sess; i++)
        if (sess[i] && sess[i]->st != ST_DEAD)
            conn_close(sess[i]);
    run_until(no_conns, now_s() + 30);
    for (int i = 0; i < n_sess; i++)
        sess[i] = NULL;
}

/* Logs in sessions for accounts acct(first..count-1) into sess[first..count-1];
 * returns how many of sess[0..count-1] are ready. */
static int login_sessions(account_t *(*acct)(int), int first, int count, int conc, double deadline)
{
    if (count > n_sess)
        die("internal: %d sessions > %d", count, n_sess);
    long before_failed = ph.failed;
    pool_start(K_SESS, acct, first, count, conc);
    run_until(pool_done, deadline);
    int ok = 0;
    for (int i = 0; i < count; i++)
        if (sess[i] && sess[i]->st == ST_READY)
            ok++;
    if (ph.failed > before_failed)
        note("%ld logins failed (last: %s)", ph.failed - before_failed, ph.last_error);
    return ok;
}

static void phase_register(void)
{
    phase = P_REG;
    reset_ph();
    int total = n_u + n_o;
    note("registering %d accounts in-band (XEP-0077)", total);
    double t0 = now_s();
    pool_start(K_REG, acct_u, 0, total, opt.reg_concurrency);
    /* acct_u(i) for i >= n_u reaches the o accounts: they follow in the array */
    run_until(pool_done, t0 + opt.phase_timeout);
    note("registration: %ld created, %ld existed, %ld refused, %ld connections failed in %.1f s%s%s",
         ph.reg_ok, ph.reg_conflict, ph.reg_err, ph.failed, now_s() - t0,
         ph.last_error[0] ? "; last error: " : "", ph.last_error);
    result("register_accounts", "%ld", ph.reg_ok + ph.reg_conflict);
    if (ph.reg_ok + ph.reg_conflict < total)
        die("registration incomplete (%ld of %d): is in-band registration open on the server?",
            ph.reg_ok + ph.reg_conflict, total);
    settle(5);
}

static void phase_route(void)
{
    int n = 2 * opt.pairs;
    reset_ph();
    phase = P_NONE;
    note("route: logging in %d sessions", n);
    int ok = login_sessions(acct_u, 0, n, opt.login_concurrency * 2, now_s() + opt.phase_timeout);
    if (ok < n)
        die("route: only %d of %d sessions logged in", ok, n);
    settle(3);
    route_quota = opt.messages / n;
    route_delivered = 0;
    long total = route_quota * n;
    phase = P_ROUTE;
    reset_ph();
    note("route: %ld messages between %d pairs (window %d per sender)", total, opt.pairs, opt.window);
    double cpu0 = server_cpu(), t0 = now_s();
    for (int i = 0; i < n; i++)
        route_pump(sess[i]);
    bool done = run_until(all_delivered, t0 + opt.phase_timeout);
    double t1 = now_s();
    double cpu1 = settle(3);
    double cpu = cpu1 - cpu0;
    note("route: %ld of %ld delivered in %.2f s wall, server CPU %.2f s, %ld errors%s%s",
         route_delivered, total, t1 - t0, cpu, ph.errors, ph.errors ? " last: " : "",
         ph.errors ? ph.last_error : "");
    result("route_messages", "%ld", route_delivered);
    result("route_complete", "%d", done ? 1 : 0);
    result("route_errors", "%ld", ph.errors);
    result("route_cpu_s", "%.3f", cpu);
    result("route_wall_s", "%.3f", t1 - t0);
    result("route_msgs_per_wall_s", "%.0f", route_delivered / (t1 - t0));
    /* neither delivered nor bounced (bounces are route_errors) */
    route_lost = total - route_delivered;
    result("route_lost", "%ld", route_lost);
    if (route_delivered > 0)
        result("route_cpu_s_per_100k", "%.3f", cpu / route_delivered * 100000.0);
    phase = P_NONE;
    close_all_sessions();
    settle(3);
}

/* The login workload cycles over the accounts past those the route phase
 * used: login_span() of them, from login_first(). */
static int login_first(void) { return n_u - 2 * opt.pairs < 1 ? 0 : 2 * opt.pairs; }
static int login_span(void) { return n_u - login_first(); }

static account_t *acct_login(int i)
{
    return acct_u(login_first() + i % login_span());
}

static void phase_login(void)
{
    phase = P_LOGIN;
    reset_ph();
    /* Warm the client's SCRAM cache first, unmeasured: one login per account
     * the measured logins use. A client's PBKDF2 (4,096 iterations of
     * HMAC-SHA-1, about 2 ms of CPU here) per login would make the load
     * generator's core the limit: at 20 at a time, logins queued behind each
     * other's key derivation on this side (p50 77 ms with the server 35 %
     * busy). A real client keeps its SaltedPassword (RFC 5802 §5.1). */
    int warm = opt.logins < login_span() ? opt.logins : login_span();
    double tw = now_s();
    pool_start(K_LOGIN, acct_login, 0, warm, opt.login_concurrency);
    run_until(pool_done, tw + opt.phase_timeout);
    run_until(no_conns, now_s() + 10);
    note("login: client SCRAM cache warmed for %d accounts in %.2f s (%ld failed)", warm,
         now_s() - tw, ph.failed);
    settle(3);
    reset_ph();
    note("login: %d full logins, %d at a time", opt.logins, opt.login_concurrency);
    n_lat = 0;
    double cpu0 = server_cpu(), t0 = now_s(), lg0 = self_cpu();
    double rq0 = runq_wait_s(opt.pid), lrq0 = runq_wait_s(0);
    pool_start(K_LOGIN, acct_login, 0, opt.logins, opt.login_concurrency);
    bool done = run_until(pool_done, t0 + opt.phase_timeout);
    double t1 = now_s(), lg1 = self_cpu();
    double rq1 = runq_wait_s(opt.pid), lrq1 = runq_wait_s(0);
    double cpu1 = settle(3);
    double cpu = cpu1 - cpu0;
    note("login: %ld ready, %ld failed in %.2f s wall, server CPU %.2f s, load generator CPU %.2f s%s%s",
         ph.ready, ph.failed, t1 - t0, cpu, lg1 - lg0, ph.failed ? "; last error: " : "",
         ph.failed ? ph.last_error : "");
    /* the client side of the same logins: the load generator must not be the limit */
    if (ph.ready > 0) {
        result("login_loadgen_cpu_ms_per", "%.3f", (lg1 - lg0) / ph.ready * 1000.0);
        /* time runnable but not running, per login: the machine's share */
        result("login_server_runq_ms_per", "%.3f", (rq1 - rq0) / ph.ready * 1000.0);
        result("login_loadgen_runq_ms_per", "%.3f", (lrq1 - lrq0) / ph.ready * 1000.0);
    }
    result("login_count", "%ld", ph.ready);
    result("login_failed", "%ld", ph.failed);
    result("login_complete", "%d", done ? 1 : 0);
    result("login_cpu_s", "%.3f", cpu);
    result("login_wall_s", "%.3f", t1 - t0);
    if (ph.ready > 0)
        result("login_cpu_ms_per", "%.3f", cpu / ph.ready * 1000.0);
    if (n_lat > 0) {
        qsort(lat_ms, (size_t)n_lat, sizeof(*lat_ms), cmp_double);
        result("login_latency_ms_p50", "%.1f", lat_pct(0.50));
        result("login_latency_ms_p90", "%.1f", lat_pct(0.90));
        result("login_latency_ms_p99", "%.1f", lat_pct(0.99));
        result("login_latency_ms_max", "%.1f", lat_ms[n_lat - 1]);
    }
    phase = P_NONE;
    run_until(no_conns, now_s() + 10);
    settle(3);
}

static void phase_idle(void)
{
    phase = P_IDLE;
    reset_ph();
    int s = opt.sessions, s1 = s / 5;
    if (s1 < 1)
        s1 = 1;
    long rss0 = server_rss_kib();
    double cpu0 = server_cpu(), t0 = now_s(), deadline = t0 + opt.phase_timeout;
    note("idle: logging in %d sessions (%d at a time); server RSS before: %ld KiB", s,
         opt.idle_concurrency, rss0);
    int ok1 = login_sessions(acct_u, 0, s1, opt.idle_concurrency, deadline);
    settle(5);
    run_until(NULL, now_s() + 1);
    long rss1 = server_rss_kib();
    int ok = login_sessions(acct_u, s1, s, opt.idle_concurrency, deadline);
    double t1 = now_s();
    double cpu1 = settle(5);
    run_until(NULL, now_s() + 2);
    long rss2 = server_rss_kib();
    note("idle: %d sessions ready in %.1f s (server CPU %.2f s); RSS %ld -> %ld (at %d) -> %ld KiB",
         ok, t1 - t0, cpu1 - cpu0, rss0, rss1, ok1, rss2);
    result("idle_sessions", "%d", ok);
    result("idle_rss_before_kib", "%ld", rss0);
    result("idle_rss_at_first_kib", "%ld", rss1);
    result("idle_rss_after_kib", "%ld", rss2);
    if (ok > 0)
        result("idle_kib_per_session", "%.2f", (double)(rss2 - rss0) / ok);
    if (ok > ok1)
        result("idle_kib_per_session_marginal", "%.2f", (double)(rss2 - rss1) / (ok - ok1));
    if (ok > 0)
        result("idle_login_cpu_ms_per", "%.3f", (cpu1 - cpu0) / ok * 1000.0);
    phase = P_NONE;
}

/* Sessions 0..k-1 (contacts) and k (the hub), subscribed both ways through
 * the protocol; idle sessions are reused. Dies when they cannot log in. */
static void fan_prepare(int k, const char *label)
{
    phase = P_NONE;
    reset_ph();
    fan_k = k;
    int have = 0;
    for (int i = 0; i <= k; i++)
        if (sess[i] && sess[i]->st == ST_READY)
            have++;
    for (int i = k + 1; i < n_sess; i++)
        if (sess[i])
            conn_close(sess[i]);
    run_until(NULL, now_s() + 0.5);
    if (have < k + 1) {
        note("%s: logging in %d sessions", label, k + 1 - have);
        for (int i = 0; i <= k; i++)
            if (sess[i] && sess[i]->st != ST_READY)
                conn_close(sess[i]);
        close_all_sessions();
        int ok = login_sessions(acct_u, 0, k + 1, opt.idle_concurrency, now_s() + opt.phase_timeout);
        if (ok < k + 1)
            die("%s: only %d of %d sessions logged in", label, ok, k + 1);
    }
    {
        /* wait for the closes of surplus sessions */
        double end = now_s() + 30;
        while (n_conns > k + 1 && now_s() < end)
            run_until(NULL, now_s() + 0.1);
    }
    fan_hub = k;
    for (int i = 0; i <= k; i++)
        sess[i]->sent = sess[i]->got = 0;
    settle(5);
    phase = P_FANOUT_SETUP;
    /* Every session fetches its roster first: that makes it an interested
     * resource (RFC 6121 §2.2), and a server may deliver subscription
     * approvals (§3.1.6) and roster pushes to interested resources only
     * (Prosody does). */
    fan_rosters = 0;
    free(fan_mutual);
    fan_mutual = calloc((size_t)k + 1, 1); /* k >= 1 (checked with the options) */
    if (!fan_mutual)
        die("out of memory");
    for (int i = 0; i <= k; i++)
        sendf(sess[i], "<iq type='get' id='fanroster'><query xmlns='jabber:iq:roster'/></iq>");
    if (!run_until(fan_rosters_done, now_s() + opt.phase_timeout))
        note("%s: only %ld of %d roster requests answered", label, fan_rosters, k + 1);
    int mutual = 0;
    for (int i = 0; i < k; i++)
        mutual += fan_mutual[i];
    fan_subscribed_hub = fan_subscribed_contacts = mutual;
    fan_hub_done_at = 0;
    note("%s: subscribing %s to %d contacts both ways (subscribe/subscribed; %d already are)", label,
         sess[fan_hub]->acct->name, k - mutual, mutual);
    double ts = now_s();
    for (int i = 0; i < k; i++)
        if (!fan_mutual[i])
            sendf(sess[fan_hub], "<presence to='%s@%s' type='subscribe'/>", sess[i]->acct->name,
                  opt.domain);
    bool ok = run_until(fan_setup_done, ts + opt.phase_timeout);
    note("%s: subscriptions %s in %.1f s (hub got %ld subscribed, contacts got %ld)", label,
         ok ? "done" : "INCOMPLETE", now_s() - ts, fan_subscribed_hub, fan_subscribed_contacts);
    settle(5);
    run_until(NULL, now_s() + 0.5);
}

static void phase_fanout(void)
{
    int k = opt.contacts;
    fan_prepare(k, "fanout");
    phase = P_FANOUT;
    reset_ph();
    fan_recv = 0;
    fan_round = 0;
    for (int i = 0; i <= k; i++)
        sess[i]->got = 0;
    note("fanout: %d presence changes of the hub to %d contacts", opt.rounds, k);
    double cpu0 = server_cpu(), t0 = now_s();
    fan_send_round();
    if (opt.rounds > 1)
        fan_send_round();
    bool done = run_until(fan_done, t0 + opt.phase_timeout);
    double t1 = now_s();
    double cpu1 = settle(3);
    double cpu = cpu1 - cpu0;
    note("fanout: %ld of %ld presences delivered in %.2f s wall, server CPU %.2f s", fan_recv,
         (long)opt.rounds * k, t1 - t0, cpu);
    result("fanout_contacts", "%d", k);
    result("fanout_subscribed", "%ld", fan_subscribed_contacts);
    result("fanout_deliveries", "%ld", fan_recv);
    result("fanout_complete", "%d", done ? 1 : 0);
    result("fanout_cpu_s", "%.3f", cpu);
    if (fan_recv > 0)
        result("fanout_cpu_us_per_delivery", "%.2f", cpu / fan_recv * 1e6);
    phase = P_NONE;
    close_all_sessions();
    settle(3);
}

static void pep_finish(void)
{
    phase = P_NONE;
    free(pep_seen);
    pep_seen = NULL;
    close_all_sessions();
    settle(3);
}

/* XEP-0163 notifications: contacts announce +notify for the tune node in
 * their caps (the server asks them for the features behind the verification
 * string, XEP-0115 §6.3), then the hub publishes: first one publication that
 * is not measured (it creates the node, and proves that the server knows
 * every contact's interest: every contact must receive it), then R measured
 * ones, each when every contact has the one before. */
static void phase_pep(void)
{
    int k = opt.pep_contacts;
    fan_prepare(k, "pep");
    phase = P_PEP;
    pep_seen = calloc((size_t)k * (size_t)(opt.pep_rounds + 1), 1);
    if (!pep_seen)
        die("out of memory");
    pep_recv = pep_dups = 0;
    pep_round = -1;
    long rss0 = server_rss_kib();
    pep_disco = 0;
    double ta = pep_disco_at = pep_caps_at = now_s();
    for (int i = 0; i < k; i++)
        sendf(sess[i], "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
                       "node='" PEP_CAPS_NODE "' ver='%s'/></presence>", pep_ver);
    /* until the server has asked nothing for 2 s */
    run_until(pep_disco_quiet, ta + opt.phase_timeout);
    settle(10);
    note("pep: %d contacts announced +notify (%ld disco#info queries answered in %.1f s)", k,
         pep_disco, pep_disco_at - ta);
    reset_ph();
    double tf = now_s();
    pep_publish(0);
    bool first = run_until(pep_first_done, tf + opt.phase_timeout);
    note("pep: %d of %d contacts have the first (unmeasured) publication after %.1f s%s", pep_round_have,
         k, now_s() - tf, first ? "" : ": the server does not know every contact's interest");
    result("pep_first_complete", "%d", first ? 1 : 0);
    long disco_before = pep_disco;
    if (!first) {
        /* a figure over contacts the server does not notify would be no figure */
        pep_finish();
        return;
    }
    /* a busy server may still be asking (Prosody asks twice per contact) */
    run_until(pep_disco_quiet, now_s() + opt.phase_timeout);
    settle(5);
    long disco_measured = pep_disco;
    long rss1 = server_rss_kib();
    for (int i = 0; i <= k; i++)
        sess[i]->got = 0;
    n_lat = 0;
    pep_dups = 0;
    note("pep: %d publications of the hub to %d contacts, one at a time", opt.pep_rounds, k);
    double cpu0 = server_cpu(), t0 = now_s(), lg0 = self_cpu();
    pep_publish(1);
    bool done = run_until(pep_done, t0 + opt.phase_timeout);
    double t1 = now_s(), lg1 = self_cpu();
    double cpu1 = settle(3);
    double cpu = cpu1 - cpu0;
    long rss2 = server_rss_kib();
    note("pep: %ld of %ld notifications delivered (%ld duplicates) in %.2f s wall, server CPU %.2f s; "
         "RSS %ld KiB before caps, %ld after the first publication, %ld at the end; %ld errors%s%s",
         pep_recv, (long)opt.pep_rounds * k, pep_dups, t1 - t0, cpu, rss0, rss1, rss2, ph.errors,
         ph.errors ? " last: " : "", ph.errors ? ph.last_error : "");
    result("pep_contacts", "%d", k);
    result("pep_disco_answered", "%ld", pep_disco);
    result("pep_disco_after_first", "%ld", disco_measured - disco_before);
    result("pep_disco_during_measure", "%ld", pep_disco - disco_measured);
    result("pep_deliveries", "%ld", pep_recv);
    result("pep_duplicates", "%ld", pep_dups);
    result("pep_complete", "%d", done ? 1 : 0);
    result("pep_cpu_s", "%.3f", cpu);
    result("pep_wall_s", "%.3f", t1 - t0);
    result("pep_loadgen_cpu_ms_per_round", "%.1f", (lg1 - lg0) / opt.pep_rounds * 1000.0);
    if (pep_recv > 0)
        result("pep_cpu_us_per_delivery", "%.2f", cpu / pep_recv * 1e6);
    if (n_lat > 0) {
        qsort(lat_ms, (size_t)n_lat, sizeof(*lat_ms), cmp_double);
        result("pep_last_ms_p50", "%.1f", lat_pct(0.50));
        result("pep_last_ms_p99", "%.1f", lat_pct(0.99));
        result("pep_last_ms_max", "%.1f", lat_ms[n_lat - 1]);
    }
    result("pep_rss_before_caps_kib", "%ld", rss0);
    result("pep_rss_after_first_kib", "%ld", rss1);
    result("pep_rss_end_kib", "%ld", rss2);
    pep_finish();
}

/* XEP-0045: occupants join one room (the first creates it: §10.1, as an
 * instant room, §10.1.2, when the server answers with status 201), then one
 * occupant sends groupchat messages (§7.4) one at a time. */
static void phase_muc(void)
{
    int n = opt.muc_occupants;
    phase = P_NONE;
    reset_ph();
    close_all_sessions();
    char svc[200];
    if (opt.muc_service)
        snprintf(svc, sizeof svc, "%s", opt.muc_service);
    else
        snprintf(svc, sizeof svc, "conference.%s", opt.domain);
    snprintf(muc_room, sizeof muc_room, "%sroom@%s", opt.prefix, svc);
    note("muc: logging in %d occupants", n);
    int ok = login_sessions(acct_u, 0, n, opt.idle_concurrency, now_s() + opt.phase_timeout);
    if (ok < n)
        die("muc: only %d of %d occupants logged in", ok, n);
    for (int i = 0; i < n; i++)
        sess[i]->sent = sess[i]->got = 0;
    settle(10);
    run_until(NULL, now_s() + 1);
    long rss0 = server_rss_kib();

    phase = P_MUC_JOIN;
    reset_ph();
    muc_n = n;
    muc_joined = muc_join_failed = muc_join_inflight = 0;
    muc_created = false;
    muc_config = 0;
    double tj = now_s(), deadline = tj + opt.phase_timeout;
    note("muc: %s joins %s", sess[0]->acct->name, muc_room);
    muc_send_join(sess[0]);
    run_until(muc_first_answered, deadline);
    if (!sess[0] || sess[0]->sent != 2)
        die("muc: the first occupant could not join %s%s%s", muc_room,
            ph.last_error[0] ? ": " : "", ph.last_error);
    if (muc_created) {
        /* §10.1.2: accept the default configuration (an empty submit form) */
        sendf(sess[0], "<iq type='set' id='mucconf' to='%s'><query xmlns='" NS_MUC "#owner'>"
                       "<x xmlns='jabber:x:data' type='submit'/></query></iq>", muc_room);
        run_until(muc_config_answered, deadline);
        if (muc_config != 1)
            die("muc: the instant room configuration was %s%s%s",
                muc_config ? "refused" : "not answered", ph.last_error[0] ? ": " : "", ph.last_error);
    }
    note("muc: room %s (status 201: %s); %d more occupants join, %d at a time", muc_room,
         muc_created ? "yes, configured as an instant room" : "no", n - 1, opt.muc_join_concurrency);
    muc_join_next = 1;
    muc_join_pump();
    bool joined = run_until(muc_joins_done, deadline);
    double tj1 = now_s();
    settle(30);     /* the last joins' broadcasts */
    run_until(NULL, now_s() + 1);
    long rss1 = server_rss_kib();
    note("muc: %d joined, %d refused in %.1f s; RSS %ld -> %ld KiB%s%s", muc_joined,
         muc_join_failed, tj1 - tj, rss0, rss1, ph.errors ? "; last error: " : "",
         ph.errors ? ph.last_error : "");
    result("muc_occupants", "%d", muc_joined);
    result("muc_join_failed", "%d", muc_join_failed);
    result("muc_join_complete", "%d", joined ? 1 : 0);
    result("muc_join_wall_s", "%.1f", tj1 - tj);
    result("muc_rss_before_kib", "%ld", rss0);
    result("muc_rss_after_kib", "%ld", rss1);
    if (muc_joined > 0)
        result("muc_kib_per_occupant", "%.2f", (double)(rss1 - rss0) / muc_joined);
    if (!joined || muc_joined < 2)
        die("muc: only %d of %d occupants joined", muc_joined, n);

    phase = P_MUC;
    reset_ph();
    n_lat = 0;
    muc_round = 0;
    muc_deliveries = 0;
    muc_refused = false;
    note("muc: %d groupchat messages to %d occupants, one at a time", opt.muc_messages, muc_joined);
    double cpu0 = server_cpu(), t0 = now_s();
    muc_send_round();
    bool done = run_until(muc_msgs_done, t0 + opt.phase_timeout) && !muc_refused;
    double t1 = now_s();
    double cpu1 = settle(5);
    double cpu = cpu1 - cpu0;
    note("muc: %ld of %ld deliveries (%ld messages complete) in %.2f s wall, server CPU %.2f s; "
         "%ld errors%s%s", muc_deliveries, (long)opt.muc_messages * muc_joined, n_lat, t1 - t0, cpu,
         ph.errors, ph.errors ? " last: " : "", ph.errors ? ph.last_error : "");
    result("muc_messages", "%ld", n_lat);
    result("muc_deliveries", "%ld", muc_deliveries);
    result("muc_complete", "%d", done ? 1 : 0);
    result("muc_cpu_s", "%.3f", cpu);
    result("muc_wall_s", "%.3f", t1 - t0);
    if (muc_deliveries > 0)
        result("muc_cpu_us_per_delivery", "%.2f", cpu / muc_deliveries * 1e6);
    if (n_lat > 0) {
        qsort(lat_ms, (size_t)n_lat, sizeof(*lat_ms), cmp_double);
        result("muc_last_ms_p50", "%.1f", lat_pct(0.50));
        result("muc_last_ms_p99", "%.1f", lat_pct(0.99));
        result("muc_last_ms_max", "%.1f", lat_ms[n_lat - 1]);
    }
    phase = P_NONE;
    close_all_sessions();
    settle(3);
}

static account_t *acct_sender(int i) { return acct_u(i); }

static void phase_offline(void)
{
    phase = P_NONE;
    reset_ph();
    int q = opt.offline_senders;
    note("offline: logging in %d senders", q);
    int ok = login_sessions(acct_sender, 0, q, q, now_s() + opt.phase_timeout);
    if (ok < q)
        die("offline: only %d of %d senders logged in", ok, q);
    for (int i = 0; i < q; i++)
        sess[i]->sent = sess[i]->got = 0;
    settle(3);
    off_per_sender = opt.offline_msgs / q;
    off_sent = off_acked = off_fetched = 0;
    phase = P_OFF_STORE;
    reset_ph();
    note("offline: %ld messages to %d offline accounts", off_per_sender * q, opt.offline_rcpts);
    double cpu0 = server_cpu(), t0 = now_s();
    for (int i = 0; i < q; i++)
        off_pump(sess[i]);
    bool done = run_until(off_store_done, t0 + opt.phase_timeout);
    double t1 = now_s();
    double cpu1 = settle(5);
    double cpu = cpu1 - cpu0;
    note("offline: %ld sent, %ld acknowledged by ping in %.2f s wall; server CPU %.2f s; %ld errors%s%s",
         off_sent, off_acked, t1 - t0, cpu, ph.errors, ph.errors ? " last: " : "",
         ph.errors ? ph.last_error : "");
    long stored_errors = ph.errors;
    result("offline_sent", "%ld", off_sent);
    result("offline_store_complete", "%d", done ? 1 : 0);
    result("offline_store_errors", "%ld", stored_errors);
    result("offline_store_cpu_s", "%.3f", cpu);
    result("offline_store_wall_s", "%.3f", t1 - t0);
    if (cpu > 0)
        result("offline_stored_per_cpu_s", "%.0f", (off_sent - stored_errors) / cpu);
    result("offline_stored_per_wall_s", "%.0f", (off_sent - stored_errors) / (t1 - t0));
    phase = P_NONE;
    close_all_sessions();
    settle(3);
    /* fetch: the recipients log in; their initial presence flushes the store */
    off_sent -= stored_errors;
    phase = P_OFF_FETCH;
    reset_ph();
    note("offline: %d recipients log in and fetch", opt.offline_rcpts);
    cpu0 = server_cpu();
    double self0 = self_cpu();
    t0 = now_s();
    login_sessions(acct_o, 0, opt.offline_rcpts, opt.offline_rcpts, t0 + opt.phase_timeout);
    double t_logged_in = now_s();
    done = run_until(off_fetch_done, t0 + opt.phase_timeout);
    t1 = now_s();
    double self_used = self_cpu() - self0;
    cpu1 = settle(5);
    cpu = cpu1 - cpu0;
    note("offline: %ld of %ld fetched in %.2f s wall; server CPU %.2f s (incl. %d logins)",
         off_fetched, off_sent, t1 - t0, cpu, opt.offline_rcpts);
    /* The wall time above includes the logins; from the first stored
     * message to the last is the delivery itself, and the load
     * generator's own CPU (TLS, parsing) bounds it from the client side. */
    note("offline: logins done after %.3f s, first message at %.3f s, last at %.3f s; load generator CPU %.3f s",
         t_logged_in - t0, off_first_fetched - t0, t1 - t0, self_used);
    if (off_fetched > 0 && t1 > off_first_fetched)
        result("offline_delivered_per_wall_s", "%.0f", off_fetched / (t1 - off_first_fetched));
    result("offline_fetch_loadgen_cpu_s", "%.3f", self_used);
    result("offline_fetched", "%ld", off_fetched);
    result("offline_fetch_complete", "%d", done ? 1 : 0);
    result("offline_fetch_cpu_s", "%.3f", cpu);
    result("offline_fetch_wall_s", "%.3f", t1 - t0);
    if (cpu > 0)
        result("offline_fetched_per_cpu_s", "%.0f", off_fetched / cpu);
    result("offline_fetched_per_wall_s", "%.0f", off_fetched / (t1 - t0));
    /* acknowledged (the ping after them was answered) and never delivered */
    offline_lost = off_sent > off_fetched ? off_sent - off_fetched : 0;
    result("offline_lost", "%ld", offline_lost);
    phase = P_NONE;
    close_all_sessions();
}

/* ------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr,
        "usage: loadgen --pid PID [options]\n"
        "  --host ADDR --port N --domain D    server (loopback only; default 127.0.0.1:5222, localhost)\n"
        "  --pid PID                          server process whose CPU and RSS are measured\n"
        "  --port2 N --extra-pids P,P         route on a cluster: each pair's second session on port2 (another\n"
        "                                     node); the CPU of the extra processes (nodes, Redis) counts too\n"
        "  --prefix P --password PW           account names P<u|o>N (default bench)\n"
        "  --plain                            SASL PLAIN instead of SCRAM-SHA-1\n"
        "  --sm                               sessions enable XEP-0198 stream management (resume) and ack <r/>\n"
        "  --workloads LIST                   register,route,login,idle,fanout,pep,muc,offline\n"
        "  --pairs N --messages N --window N  route (50, 100000, 32)\n"
        "  --logins N --login-concurrency N   login (1000, 8)\n"
        "  --sessions N --idle-concurrency N  idle (5000, 32)\n"
        "  --contacts K --rounds R            fanout (500, 100)\n"
        "  --pep-contacts K --pep-rounds R    pep (1000, 50)\n"
        "  --muc-occupants N --muc-messages M --muc-join-concurrency N  muc (1000, 50, 16)\n"
        "  --muc-service DOMAIN               muc: the XEP-0045 service (conference.DOMAIN)\n"
        "  --offline-messages N --offline-recipients N --offline-senders N  offline (20000, 10, 10)\n"
        "  --reg-concurrency N                registration (16)\n"
        "  --phase-timeout SECONDS            bound of every phase (240)\n");
    exit(2);
}

static bool has_workload(const char *w)
{
    size_t l = strlen(w);
    for (const char *p = opt.workloads; (p = strstr(p, w)); p += l)
        if ((p == opt.workloads || p[-1] == ',') && (p[l] == ',' || p[l] == '\0'))
            return true;
    return false;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "host", 1, 0, 'H' }, { "port", 1, 0, 'p' }, { "domain", 1, 0, 'd' },
        { "port2", 1, 0, 40 }, { "extra-pids", 1, 0, 41 },
        { "pid", 1, 0, 'P' }, { "prefix", 1, 0, 'x' }, { "password", 1, 0, 'w' },
        { "plain", 0, 0, 'L' }, { "workloads", 1, 0, 'W' }, { "pairs", 1, 0, 1 },
        { "messages", 1, 0, 2 }, { "window", 1, 0, 3 }, { "logins", 1, 0, 4 },
        { "login-concurrency", 1, 0, 5 }, { "sessions", 1, 0, 6 },
        { "idle-concurrency", 1, 0, 7 }, { "contacts", 1, 0, 8 }, { "rounds", 1, 0, 9 },
        { "offline-messages", 1, 0, 10 }, { "offline-recipients", 1, 0, 11 },
        { "offline-senders", 1, 0, 12 }, { "reg-concurrency", 1, 0, 13 },
        { "phase-timeout", 1, 0, 14 }, { "pep-contacts", 1, 0, 15 }, { "pep-rounds", 1, 0, 16 },
        { "sm", 0, 0, 17 }, { "muc-occupants", 1, 0, 18 }, { "muc-messages", 1, 0, 19 },
        { "muc-join-concurrency", 1, 0, 20 }, { "muc-service", 1, 0, 21 },
        { "help", 0, 0, 'h' }, { 0, 0, 0, 0 }
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'H': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 40: opt.port2 = atoi(optarg); break;
        case 41: opt.extra_pids = optarg; break;
        case 'd': opt.domain = optarg; break;
        case 'P': opt.pid = atoi(optarg); break;
        case 'x': opt.prefix = optarg; break;
        case 'w': opt.password = optarg; break;
        case 'L': opt.plain = true; break;
        case 'W': opt.workloads = optarg; break;
        case 1: opt.pairs = atoi(optarg); break;
        case 2: opt.messages = atol(optarg); break;
        case 3: opt.window = atoi(optarg); break;
        case 4: opt.logins = atoi(optarg); break;
        case 5: opt.login_concurrency = atoi(optarg); break;
        case 6: opt.sessions = atoi(optarg); break;
        case 7: opt.idle_concurrency = atoi(optarg); break;
        case 8: opt.contacts = atoi(optarg); break;
        case 9: opt.rounds = atoi(optarg); break;
        case 10: opt.offline_msgs = atol(optarg); break;
        case 11: opt.offline_rcpts = atoi(optarg); break;
        case 12: opt.offline_senders = atoi(optarg); break;
        case 13: opt.reg_concurrency = atoi(optarg); break;
        case 14: opt.phase_timeout = atoi(optarg); break;
        case 15: opt.pep_contacts = atoi(optarg); break;
        case 16: opt.pep_rounds = atoi(optarg); break;
        case 17: opt.sm = true; break;
        case 18: opt.muc_occupants = atoi(optarg); break;
        case 19: opt.muc_messages = atoi(optarg); break;
        case 20: opt.muc_join_concurrency = atoi(optarg); break;
        case 21: opt.muc_service = optarg; break;
        default: usage();
        }
    }
    if (opt.pid <= 0)
        usage();
    if (opt.pairs < 1 || opt.messages < 1 || opt.window < 1 || opt.logins < 1 ||
        opt.login_concurrency < 1 || opt.sessions < 1 || opt.idle_concurrency < 1 ||
        opt.contacts < 1 || opt.rounds < 1 || opt.offline_msgs < 1 || opt.offline_rcpts < 1 ||
        opt.offline_senders < 1 || opt.reg_concurrency < 1 || opt.phase_timeout < 1 ||
        opt.pep_contacts < 1 || opt.pep_rounds < 1 || opt.muc_occupants < 2 ||
        opt.muc_messages < 1 || opt.muc_join_concurrency < 1)
        die("every count must be at least 1 (--muc-occupants at least 2)");
    if (opt.sessions > 18000)
        die("--sessions %d: at most 18000 (a process may hold 20,000 sockets)", opt.sessions);
    if (opt.muc_occupants > 18000)
        die("--muc-occupants %d: at most 18000 (a process may hold 20,000 sockets)", opt.muc_occupants);
    if (opt.muc_service && (strlen(opt.muc_service) > 150 || strpbrk(opt.muc_service, "'\"<>&@/ ")))
        die("--muc-service: a domain name of up to 150 characters");
    if (strlen(opt.prefix) > 20 || strspn(opt.prefix, "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(opt.prefix))
        die("--prefix: up to 20 lower-case letters and digits");

    /* loopback only */
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST }, *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", opt.port);
    if (getaddrinfo(opt.host, port, &hints, &ai) != 0)
        die("--host must be a numeric loopback address");
    if (!((ai->ai_family == AF_INET &&
           (ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) >> 24) == 127) ||
          (ai->ai_family == AF_INET6 &&
           IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr))))
        die("--host %s is not a loopback address", opt.host);
    memcpy(&srv_addr, ai->ai_addr, ai->ai_addrlen);
    srv_addrlen = ai->ai_addrlen;
    memcpy(&srv_addr2, ai->ai_addr, ai->ai_addrlen);
    srv_addrlen2 = ai->ai_addrlen;
    freeaddrinfo(ai);
    if (opt.port2) {
        uint16_t p2 = htons((uint16_t)opt.port2);
        if (srv_addr2.ss_family == AF_INET)
            ((struct sockaddr_in *)&srv_addr2)->sin_port = p2;
        else
            ((struct sockaddr_in6 *)&srv_addr2)->sin6_port = p2;
    }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);

    /* accounts: u0.. for sessions, o0.. offline recipients */
    n_u = opt.sessions;
    if (n_u < 2 * opt.pairs)
        n_u = 2 * opt.pairs;
    if (n_u < opt.contacts + 1)
        n_u = opt.contacts + 1;
    if (has_workload("pep") && n_u < opt.pep_contacts + 1)
        n_u = opt.pep_contacts + 1;
    if (has_workload("muc") && n_u < opt.muc_occupants)
        n_u = opt.muc_occupants;
    if (n_u < opt.offline_senders)
        n_u = opt.offline_senders;
    if (n_u < 2 * opt.pairs + 200 && has_workload("login"))
        n_u = 2 * opt.pairs + 200;
    n_o = opt.offline_rcpts;
    accts = calloc((size_t)(n_u + n_o), sizeof *accts);
    if (!accts)
        die("out of memory");
    for (int i = 0; i < n_u; i++)
        snprintf(accts[i].name, sizeof accts[i].name, "%su%d", opt.prefix, i);
    for (int i = 0; i < n_o; i++)
        snprintf(accts[n_u + i].name, sizeof accts[0].name, "%so%d", opt.prefix, i);
    n_sess = n_u;
    sess = calloc((size_t)n_sess, sizeof *sess);

    ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!ssl_ctx)
        die("SSL_CTX_new failed");
    SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ssl_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ssl_ctx, SSL_OP_NO_TICKET);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));

    pep_compute_ver();
    result("server_pid", "%d", opt.pid);
    result("sasl", "%s", opt.plain ? "PLAIN" : "SCRAM-SHA-1");
    double t0 = now_s();
    if (has_workload("register"))
        phase_register();
    if (has_workload("route"))
        phase_route();
    if (has_workload("login"))
        phase_login();
    if (has_workload("idle"))
        phase_idle();
    if (has_workload("fanout"))
        phase_fanout();
    if (has_workload("pep"))
        phase_pep();
    if (!has_workload("fanout") && !has_workload("pep") && has_workload("idle"))
        close_all_sessions();
    if (has_workload("muc"))
        phase_muc();
    if (has_workload("offline"))
        phase_offline();
    close_all_sessions();
    if (route_lost >= 0 || offline_lost >= 0)
        result("messages_lost", "%ld", (route_lost > 0 ? route_lost : 0) + (offline_lost > 0 ? offline_lost : 0));
    result("total_wall_s", "%.1f", now_s() - t0);
    SSL_CTX_free(ssl_ctx);
    return 0;
}
