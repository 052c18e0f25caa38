/* Exponential back-off for remote domains that cannot be reached (s2s.h).
 *
 * After a failed attempt to reach a remote domain, stanzas for it are
 * bounced at once with the failure's condition for a while, instead of
 * each one starting a new round of DNS queries and connections: a peer
 * that is down is not hammered, and local senders learn it without
 * waiting for a timeout. The wait starts at s2s.retry_delay and doubles
 * with each failure in a row, up to s2s.max_retry_delay, with up to a
 * quarter of jitter so that many servers do not retry in step. A success
 * forgets the domain. At most BACKOFF_MAX domains are remembered; past
 * that, expired entries are dropped, then new ones are not recorded.
 *
 * Ownership: the map owns its entries (freed when forgotten, expired or at
 * shutdown); the condition strings are static. */
#include <stdlib.h>

#include "s2s/s2s.h"
#include "util/strmap.h"

#define BACKOFF_MAX 10000

typedef struct backoff {
    unsigned failures;   /* in a row */
    uint64_t until;      /* monotonic ms */
    const char *cond;    /* static: remote-server-not-found / -timeout */
} backoff;

static strmap *failing; /* "remote local" -> backoff */

static int drop_expired(const char *key, void *value, void *ud)
{
    backoff *b = value;
    const char **expired = ud;
    if (b->until <= xmppd_now_ms() && !*expired)
        *expired = key;
    return *expired != NULL;
}

/* Frees one expired entry; false when there is none. */
static bool sweep_one(void)
{
    const char *key = NULL;
    strmap_foreach(failing, drop_expired, &key);
    if (!key)
        return false;
    free(strmap_del(failing, key));
    return true;
}

const char *s2s_backoff_active(const char *key, uint64_t *left_ms)
{
    backoff *b = failing ? strmap_get(failing, key) : NULL;
    uint64_t now = xmppd_now_ms();
    if (!b || b->until <= now)
        return NULL;
    if (left_ms)
        *left_ms = b->until - now;
    return b->cond;
}

uint64_t s2s_backoff_failed(const char *key, const char *cond)
{
    const s2s_conf *c = &g_server.cfg->s2s;
    if (c->retry_delay <= 0)
        return 0;
    if (!failing && !(failing = strmap_new()))
        return 0;
    backoff *b = strmap_get(failing, key);
    if (!b) {
        while (strmap_count(failing) >= BACKOFF_MAX && sweep_one())
            ;
        if (strmap_count(failing) >= BACKOFF_MAX || !(b = calloc(1, sizeof(*b))))
            return 0;
        if (strmap_put(failing, key, b) < 0) {
            free(b);
            return 0;
        }
    }
    b->failures++;
    uint64_t delay = (uint64_t)c->retry_delay;
    for (unsigned i = 1; i < b->failures && delay < (uint64_t)c->max_retry_delay; i++)
        delay *= 2;
    if (delay > (uint64_t)c->max_retry_delay)
        delay = (uint64_t)c->max_retry_delay;
    uint32_t r = 0;
    xmppd_random(&r, sizeof(r));
    delay += delay / 4 * (r % 1024) / 1024; /* jitter: up to +25 % */
    b->until = xmppd_now_ms() + delay;
    b->cond = cond;
    return delay;
}

void s2s_backoff_succeeded(const char *key)
{
    if (failing)
        free(strmap_del(failing, key));
}

static int free_one(const char *key, void *value, void *ud)
{
    free(value);
    return 0;
}

void s2s_backoff_clear(void)
{
    if (!failing)
        return;
    strmap_foreach(failing, free_one, NULL);
    strmap_free(failing);
    failing = NULL;
}
