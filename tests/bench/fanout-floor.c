/* The floor under a fan-out delivery (issues 15 and 18, docs/benchmarks.md):
 * what it costs a process that does nothing else to write one stanza-sized
 * TLS record to each of N loopback TCP connections, the last step of every
 * presence, PEP and group-chat delivery. No XML, no routing, no buffering:
 * one SSL_write (or, with --plain, one write) per recipient per round.
 * With --batch, a round's records are made first (SSL_write into a memory
 * BIO per connection) and all its sends go to the kernel in one io_uring
 * submission: what batching the system calls of one broadcast would save.
 *
 * A forked reader opens the N connections, completes each TLS handshake and
 * then only drains the sockets (it never decrypts: its cost is not ours,
 * except the part of loopback TCP that Linux charges to the sender's send).
 *
 *   fanout-floor --cert C --key K [--conns 1000] [--rounds 50] [--size 300] [--plain]
 *                [--batch]
 *
 * Prints "RESULT fanout_floor_cpu_us_per_write X" and the user/system split.
 * A benchmark, never a test. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_LIBURING
#include <liburing.h>
#endif

static void die(const char *what)
{
    fprintf(stderr, "fanout-floor: %s: %s\n", what, errno ? strerror(errno) : "failed");
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* The reader: n TLS handshakes, then drain every socket until all close. */
static void reader(int port, int n)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    int ep = epoll_create1(0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            die("connect");
        nodelay(fd);
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) != 1)
            die("SSL_connect");
        /* the session ticket the server sends after the handshake is drained
         * below with the rest: the SSL object is no longer needed */
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    static char buf[65536];
    struct epoll_event evs[256];
    for (int open = n; open > 0;) {
        int k = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < k; i++) {
            ssize_t r = read(evs[i].data.fd, buf, sizeof(buf));
            if (r <= 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, evs[i].data.fd, NULL);
                close(evs[i].data.fd);
                open--;
            }
        }
    }
    _exit(0);
}

static double cpu_s(struct rusage *ru, double *user, double *sys)
{
    *user = (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6;
    *sys = (double)ru->ru_stime.tv_sec + (double)ru->ru_stime.tv_usec / 1e6;
    return *user + *sys;
}

#ifdef HAVE_LIBURING
/* One round with every send in one io_uring submission: the records are
 * encrypted into each connection's memory BIO first (or, plain, the same
 * message for all), then one io_uring_submit_and_wait for all of them. A
 * short send is an error here: the reader drains faster than 300-byte
 * records fill a socket buffer, and the plain path would fail the same. */
static void batch_round(struct io_uring *ring, int conns, const int *fds, SSL **ssl,
                        BIO **wbio, const char *msg, int size)
{
    for (int i = 0; i < conns; i++) {
        const char *p = msg;
        long len = size;
        if (ssl) {
            (void)BIO_reset(wbio[i]);
            if (SSL_write(ssl[i], msg, size) != size)
                die("SSL_write");
            char *d;
            len = BIO_get_mem_data(wbio[i], &d);
            p = d;
        }
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        if (!sqe)
            die("io_uring_get_sqe");
        io_uring_prep_send(sqe, fds[i], p, (size_t)len, 0);
        sqe->user_data = (uint64_t)len;
    }
    if (io_uring_submit_and_wait(ring, (unsigned)conns) < conns)
        die("io_uring_submit_and_wait");
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(ring, head, cqe) {
        if (cqe->res != (int)cqe->user_data) {
            errno = cqe->res < 0 ? -cqe->res : 0;
            die("batched send");
        }
        seen++;
    }
    io_uring_cq_advance(ring, seen);
}
#endif

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL;
    int conns = 1000, rounds = 50, size = 300, plain = 0, keep = 0, batch = 0;
    static const struct option opts[] = {
        { "cert", required_argument, NULL, 'c' }, { "key", required_argument, NULL, 'k' },
        { "conns", required_argument, NULL, 'n' }, { "rounds", required_argument, NULL, 'r' },
        { "size", required_argument, NULL, 's' }, { "plain", no_argument, NULL, 'p' },
        { "keep-buffers", no_argument, NULL, 'b' }, { "batch", no_argument, NULL, 'u' },
        { NULL, 0, NULL, 0 }
    };
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (o) {
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 'n': conns = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 's': size = atoi(optarg); break;
        case 'p': plain = 1; break;
        case 'b': keep = 1; break;
        case 'u': batch = 1; break;
        default: return 2;
        }
    }
#ifndef HAVE_LIBURING
    if (batch) {
        fprintf(stderr, "fanout-floor: --batch needs liburing (configure found none)\n");
        return 2;
    }
#endif
    if (!cert || !key || conns < 1 || conns > 15000 || rounds < 1 || size < 1 || size > 16384) {
        fprintf(stderr, "usage: fanout-floor --cert C --key K [--conns 1..15000] [--rounds N] "
                        "[--size 1..16384] [--plain] [--keep-buffers] [--batch]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        die("certificate");
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    /* as xmppd: idle connections give their buffers back (unless
     * --keep-buffers: the cost of that release per record) */
    if (!keep)
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 1024) < 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) < 0)
        die("listen");
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        close(ls);
        reader(ntohs(sa.sin_port), conns);
    }
    int *fds = calloc((size_t)conns, sizeof(*fds));
    SSL **ssl = calloc((size_t)conns, sizeof(*ssl));
    if (!fds || !ssl)
        die("calloc");
    for (int i = 0; i < conns; i++) {
        fds[i] = accept(ls, NULL, NULL);
        if (fds[i] < 0)
            die("accept");
        nodelay(fds[i]);
        ssl[i] = SSL_new(ctx);
        SSL_set_fd(ssl[i], fds[i]);
        if (SSL_accept(ssl[i]) != 1)
            die("SSL_accept");
    }
    char *msg = malloc((size_t)size);
    if (!msg)
        die("malloc");
    memset(msg, 'x', (size_t)size);
    /* --batch: records go to a memory BIO per connection (the handshake is
     * done, so the socket BIO is only needed for reading) and one ring
     * holds one round's sends */
    BIO **wbio = NULL;
#ifdef HAVE_LIBURING
    struct io_uring ring;
    if (batch) {
        if (io_uring_queue_init((unsigned)conns, &ring, 0) < 0)
            die("io_uring_queue_init");
        if (!plain) {
            if (!(wbio = calloc((size_t)conns, sizeof(*wbio))))
                die("calloc");
            for (int i = 0; i < conns; i++) {
                if (!(wbio[i] = BIO_new(BIO_s_mem())))
                    die("BIO_new");
                /* SSL_free frees it */
                SSL_set0_wbio(ssl[i], wbio[i]);
            }
        }
    }
#endif

    struct rusage r0, r1;
    struct timespec t0, t1;
    getrusage(RUSAGE_SELF, &r0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
#ifdef HAVE_LIBURING
    for (int r = 0; r < rounds && batch; r++)
        batch_round(&ring, conns, fds, plain ? NULL : ssl, wbio, msg, size);
#endif
    for (int r = 0; r < rounds && !batch; r++) {
        for (int i = 0; i < conns; i++) {
            if (plain ? write(fds[i], msg, (size_t)size) != size
                      : SSL_write(ssl[i], msg, size) != size)
                die("write");
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    getrusage(RUSAGE_SELF, &r1);

    double u0, s0, u1, s1;
    double cpu = cpu_s(&r1, &u1, &s1) - cpu_s(&r0, &u0, &s0);
    double writes = (double)conns * rounds;
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("RESULT fanout_floor_mode %s%s\n", plain ? "plain" : "tls", batch ? "-batch" : "");
    printf("RESULT fanout_floor_writes %.0f\n", writes);
    printf("RESULT fanout_floor_cpu_us_per_write %.2f\n", cpu / writes * 1e6);
    printf("RESULT fanout_floor_user_us_per_write %.2f\n", (u1 - u0) / writes * 1e6);
    printf("RESULT fanout_floor_sys_us_per_write %.2f\n", (s1 - s0) / writes * 1e6);
    printf("RESULT fanout_floor_wall_us_per_write %.2f\n", wall / writes * 1e6);

#ifdef HAVE_LIBURING
    if (batch)
        io_uring_queue_exit(&ring);
#endif
    for (int i = 0; i < conns; i++) {
        /* batched: the close_notify would go to the memory BIO; the
         * reader ends on the close alone */
        if (!plain && !batch)
            SSL_shutdown(ssl[i]);
        SSL_free(ssl[i]);
        close(fds[i]);
    }
    waitpid(child, NULL, 0);
    free(msg);
    free(wbio);
    free(ssl);
    free(fds);
    SSL_CTX_free(ctx);
    return 0;
}
