/* Requests per second per client address: a token bucket per address
 * (http.requests_per_second, refilled continuously, holding at most
 * http.burst). Buckets that are full again carry no information and are
 * forgotten when the table grows, so it stays bounded by the addresses
 * active in the last burst/rate seconds. */
#include <stdlib.h>

#include "http/http.h"
#include "util/strmap.h"

#define PRUNE_AT 4096

typedef struct bucket {
    double tokens;
    uint64_t at_ms;
} bucket;

static strmap *g_buckets;

static void refill(bucket *b, uint64_t now, double rate, double burst)
{
    b->tokens += (double)(now - b->at_ms) * rate / 1000.0;
    if (b->tokens > burst)
        b->tokens = burst;
    b->at_ms = now;
}

typedef struct prune_ctx {
    uint64_t now;
    double rate, burst;
    const char **drop;
    size_t n, cap;
} prune_ctx;

static int collect_full(const char *ip, void *v, void *ud)
{
    prune_ctx *p = ud;
    bucket *b = v;
    refill(b, p->now, p->rate, p->burst);
    if (b->tokens >= p->burst && p->n < p->cap)
        p->drop[p->n++] = ip;
    return 0;
}

static void prune(uint64_t now, double rate, double burst)
{
    prune_ctx p = { now, rate, burst, calloc(strmap_count(g_buckets), sizeof(char *)), 0,
                    strmap_count(g_buckets) };
    if (!p.drop)
        return;
    strmap_foreach(g_buckets, collect_full, &p);
    for (size_t i = 0; i < p.n; i++)
        free(strmap_del(g_buckets, p.drop[i]));
    free(p.drop);
}

bool http_rate_take(const char *ip)
{
    const http_conf *hc = &g_server.cfg->http;
    double rate = (double)hc->requests_per_second, burst = (double)hc->burst;
    uint64_t now = xmppd_now_ms();
    if (!g_buckets && !(g_buckets = strmap_new()))
        return true;
    bucket *b = strmap_get(g_buckets, ip);
    if (!b) {
        if (strmap_count(g_buckets) >= PRUNE_AT)
            prune(now, rate, burst);
        b = malloc(sizeof(*b));
        if (!b || strmap_put(g_buckets, ip, b) < 0) {
            free(b);
            return true; /* out of memory: do not refuse on that */
        }
        *b = (bucket){ burst, now };
    }
    refill(b, now, rate, burst);
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

static int free_one(const char *k, void *v, void *ud)
{
    free(v);
    return 0;
}

void http_rate_free(void)
{
    if (!g_buckets)
        return;
    strmap_foreach(g_buckets, free_one, NULL);
    strmap_free(g_buckets);
    g_buckets = NULL;
}
