/* Each node's Redis stream of frames: stanzas reach their node, or come
 * back to be bounced; none vanishes (docs/cluster.md, "Delivery").
 *
 * Why a stream and not pub/sub: pub/sub forgets a message whose subscriber
 * is not connected at that instant (its connection being re-established,
 * or its node restarting); a stream keeps it. NAME:q:NODE holds the frames
 * for NODE (XADD ... MAXLEN ~ cluster.queue_max: Redis's memory stays
 * bounded for a node that stopped reading). NODE reads it through a
 * consumer group (one per node, one consumer named after the node) with
 * XREADGROUP BLOCK on a connection of its own, handles each entry as it
 * comes, then XDELs and XACKs it. What it was handed but did not
 * acknowledge when its connection or the process died is its pending list,
 * read first when it comes back; entries it already handled before a lost
 * connection are known by their ID (IDs only grow) and only acknowledged.
 *
 * Its sender takes back, with a script that runs atomically in Redis, the
 * entries older than cluster.delivery_timeout (by Redis's clock: the IDs
 * are its milliseconds) that the node was never handed, or was handed and
 * left unacknowledged for that long (it died reading them); it bounces
 * them. An entry handed to the node is never taken back while the node
 * acknowledges it in time, and one taken back is gone from the stream: so
 * a frame is routed by its node or bounced by its sender, not both (except
 * a frame routed by a node that then stalled for longer than the timeout
 * before acknowledging it). */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "core/core.h"
#include "core/loop.h"
#include "xml/serialise.h"
#include "xmppd/loop.h"

#define GROUP "xmppd"
#define BATCH "128"   /* entries per read */
#define TAKE_MAX 256  /* entries taken back per script run */

/* KEYS[1] the stream, ARGV[1] the delivery timeout (ms), ARGV[2] the most
 * entries to take, ARGV[3] the group: the frames of the entries older than
 * the timeout that the group was never handed or left pending for that
 * long; they are deleted (and acknowledged). Entries handled but not yet
 * deleted (a connection lost between XACK and XDEL) are deleted too. */
static const char TAKE_BACK[] =
    "local function after(a, b)\n"
    "  local am, as = string.match(a, '(%d+)-(%d+)')\n"
    "  local bm, bs = string.match(b, '(%d+)-(%d+)')\n"
    "  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)\n"
    "  return am > bm or (am == bm and as > bs)\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1])\n"
    "if cutoff < 0 then return {} end\n"
    "local r = redis.call('XRANGE', KEYS[1], '-', string.format('%d', cutoff), 'COUNT', ARGV[2])\n"
    "if #r == 0 then return {} end\n"
    "local last = '0-0'\n"
    "local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])\n"
    "if type(groups) == 'table' and not groups.err then\n"
    "  for _, g in ipairs(groups) do\n"
    "    local name, ld\n"
    "    for i = 1, #g, 2 do\n"
    "      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then ld = g[i + 1] end\n"
    "    end\n"
    "    if name == ARGV[3] and ld then last = ld end\n"
    "  end\n"
    "end\n"
    "local out = {}\n"
    "for _, e in ipairs(r) do\n"
    "  local take = after(e[1], last)\n"
    "  if not take then\n"
    "    local p = redis.call('XPENDING', KEYS[1], ARGV[3], 'IDLE', ARGV[1], e[1], e[1], 1)\n"
    "    take = #p > 0\n"
    "    if take then redis.call('XACK', KEYS[1], ARGV[3], e[1]) end\n"
    "  end\n"
    "  redis.call('XDEL', KEYS[1], e[1])\n"
    "  if take then\n"
    "    local f = e[2]\n"
    "    for i = 1, #f, 2 do if f[i] == 'f' then out[#out + 1] = f[i + 1] end end\n"
    "  end\n"
    "end\n"
    "return out\n";

/* A frame waiting for the end of the loop turn. */
typedef struct item {
    char *kind;
    char *to;              /* the recipients, space-separated ("routes" when several) */
    size_t to_len, n_to;
    char *body;
    size_t blen;
    int hops;
    xmppd_stanza *st;      /* a fan-out copy (a reference): later copies of its
                            * fan-out join this item */
} item;

/* A stream we send to. */
typedef struct dest {
    char *node;
    char *key;
    uint64_t until;   /* check it for frames to take back until then (monotonic ms) */
    item *out;        /* this loop turn's frames */
    size_t n_out, cap_out;
} dest;

static dest *g_dests;
static size_t g_n_dests;
static struct event *g_flush; /* end of the loop turn: the outboxes leave */
static bool g_pending_phase;  /* reading our pending entries (after a (re)connection) */

/* ---- sending ------------------------------------------------------------------ */

static dest *dest_get(const char *node)
{
    for (size_t i = 0; i < g_n_dests; i++)
        if (strcmp(g_dests[i].node, node) == 0)
            return &g_dests[i];
    dest *v = realloc(g_dests, (g_n_dests + 1) * sizeof(*v));
    if (!v)
        return NULL;
    g_dests = v;
    dest *d = &v[g_n_dests];
    *d = (dest){ .node = strdup(node), .key = cluster_key("q:", node) };
    if (!d->node || !d->key) {
        free(d->node);
        free(d->key);
        return NULL;
    }
    g_n_dests++;
    return d;
}

/* Frames sent now may be taken back once delivery_timeout is over: the
 * stream is checked until a little after that. */
static void dest_touch(dest *d)
{
    d->until = xmppd_now_ms() + (uint64_t)g_cluster.conf->delivery_timeout +
               3 * (uint64_t)g_cluster.conf->heartbeat;
}

static void item_clear(item *it)
{
    free(it->kind);
    free(it->to);
    free(it->body);
    xmppd_stanza_unref(it->st);
}

/* it as a frame's parts: kind, arg, body (*body_own: malloc'd, to free).
 * "routes" carries the recipient count in arg and the recipients on the
 * body's first line, the stanza (with the first one's 'to') after. */
static bool item_parts(const item *it, const char **kind, char *arg, size_t argsize,
                       char **body_own, const char **body, size_t *blen)
{
    *body_own = NULL;
    if (it->n_to == 1) {
        *kind = it->kind;
        snprintf(arg, argsize, "%s", it->to);
        *body = it->body;
        *blen = it->blen;
        return strlen(it->to) < argsize;
    }
    size_t bl = it->to_len + 1 + it->blen;
    char *b = malloc(bl);
    if (!b)
        return false;
    memcpy(b, it->to, it->to_len);
    b[it->to_len] = '\n';
    memcpy(b + it->to_len + 1, it->body, it->blen);
    *kind = "routes";
    snprintf(arg, argsize, "%zu", it->n_to);
    *body = *body_own = b;
    *blen = bl;
    return true;
}

/* One XADD for the frames node's outbox held at the end of the loop turn.
 * Frames that cannot leave (Redis went away meanwhile, OOM) are bounced
 * at once, as when Redis is away before. The outbox is detached first: a
 * bounce may queue frames anew. */
static void flush_dest(size_t di)
{
    dest *d = &g_dests[di];
    item *out = d->out;
    size_t n = d->n_out;
    const char *node = d->node, *key = d->key; /* the strings stay where they are */
    d->out = NULL;
    d->n_out = d->cap_out = 0;
    char **frames = calloc(n, sizeof(*frames));
    const char **argv = calloc(6 + 2 * n, sizeof(*argv));
    size_t *lens = calloc(6 + 2 * n, sizeof(*lens));
    char max[24];
    snprintf(max, sizeof(max), "%lld", g_cluster.conf->queue_max);
    int argc = 0;
    if (frames && argv && lens) {
        const char *head[] = { "XADD", key, "MAXLEN", "~", max, "*" };
        for (; argc < 6; argc++) {
            argv[argc] = head[argc];
            lens[argc] = strlen(head[argc]);
        }
        for (size_t i = 0; i < n; i++) {
            const char *kind, *body;
            char arg[3072], *own;
            size_t blen, len = 0;
            if (item_parts(&out[i], &kind, arg, sizeof(arg), &own, &body, &blen))
                frames[i] = link_frame(kind, arg, body, blen, out[i].hops, &len);
            free(own);
            if (!frames[i])
                continue;
            argv[argc] = "f";
            lens[argc++] = 1;
            argv[argc] = frames[i];
            lens[argc++] = len;
        }
    }
    bool sent = argc > 6 && redis_command(g_cluster.cmd, NULL, NULL, argc, argv, lens) == 0;
    if (sent)
        dest_touch(&g_dests[di]);
    else
        log_kernel("cluster", XMPPD_LOG_WARN, "cannot send %zu frames to node %s (Redis down)", n,
                   node);
    for (size_t i = 0; i < n; i++) {
        const char *kind, *body;
        char arg[3072], *own = NULL;
        size_t blen;
        if (!sent && item_parts(&out[i], &kind, arg, sizeof(arg), &own, &body, &blen))
            registry_unsent(node, kind, arg, body, blen);
        free(own);
        if (frames)
            free(frames[i]);
        item_clear(&out[i]);
    }
    free(out);
    free(frames);
    free(argv);
    free(lens);
}

static void on_flush(evutil_socket_t fd, short what, void *ud)
{
    for (size_t i = 0; i < g_n_dests; i++)
        if (g_dests[i].n_out)
            flush_dest(i);
}

/* A copy of the same fan-out as the last item, unchanged, for the same
 * hop count: its recipient joins that item. */
static bool join_last(dest *d, const char *kind, const char *to, const xmppd_stanza *st, int hops)
{
    item *last = d->n_out ? &d->out[d->n_out - 1] : NULL;
    const stanza_share *sh = stanza_share_of(st);
    if (!last || !sh || !last->st || stanza_share_of(last->st) != sh || last->hops != hops ||
        strcmp(kind, "route") != 0 || strcmp(last->kind, "route") != 0)
        return false;
    size_t tl = strlen(to);
    char *v = realloc(last->to, last->to_len + tl + 2);
    if (!v)
        return false;
    v[last->to_len] = ' ';
    memcpy(v + last->to_len + 1, to, tl + 1);
    last->to = v;
    last->to_len += tl + 1;
    last->n_to++;
    return true;
}

int queue_put(const char *node, const char *kind, const char *arg, const char *body, size_t blen,
              const xmppd_stanza *st, int hops)
{
    dest *d = dest_get(node);
    if (!d)
        return -1;
    if (join_last(d, kind, arg, st, hops))
        return 0;
    if (d->n_out == d->cap_out) {
        size_t cap = d->cap_out ? d->cap_out * 2 : 8;
        item *v = realloc(d->out, cap * sizeof(*v));
        if (!v)
            return -1;
        d->out = v;
        d->cap_out = cap;
    }
    item *it = &d->out[d->n_out];
    *it = (item){ .kind = strdup(kind), .to = strdup(arg), .to_len = strlen(arg), .n_to = 1,
                  .body = malloc(blen ? blen : 1), .blen = blen, .hops = hops };
    if (!it->kind || !it->to || !it->body) {
        item_clear(it);
        return -1;
    }
    if (blen) /* an unbind has no body */
        memcpy(it->body, body, blen);
    if (st && stanza_share_of(st))
        it->st = xmppd_stanza_ref((xmppd_stanza *)st);
    d->n_out++;
    event_active(g_flush, EV_TIMEOUT, 0);
    return 0;
}

/* ---- taking back ------------------------------------------------------------------ */

static void bounce_frame(void *ud, const char *kind, const char *node, const char *arg,
                         const char *body, size_t blen)
{
    registry_unsent(ud, kind, arg, body, blen);
}

static void on_taken(redisReply *r, void *ud)
{
    char *node = ud;
    if (r && r->type == REDIS_REPLY_ERROR)
        log_kernel("cluster", XMPPD_LOG_ERROR, "cannot check node %s's stream: %.*s", node,
                   (int)r->len, r->str);
    if (g_cluster.conf && r && r->type == REDIS_REPLY_ARRAY) {
        if (r->elements)
            log_kernel("cluster", XMPPD_LOG_WARN, "node %s did not take %zu frames within "
                       "cluster.delivery_timeout: they are bounced here", node, r->elements);
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING)
                link_open("a stream taken back", r->element[i]->str, r->element[i]->len,
                          bounce_frame, node);
        dest *d = r->elements >= TAKE_MAX ? dest_get(node) : NULL;
        if (d) /* more of them: at the next heartbeat */
            dest_touch(d);
    }
    free(node);
}

void queue_check(void)
{
    uint64_t now = xmppd_now_ms();
    char timeout[24], max[16];
    snprintf(timeout, sizeof(timeout), "%lld", g_cluster.conf->delivery_timeout);
    snprintf(max, sizeof(max), "%d", TAKE_MAX);
    for (size_t i = 0; i < g_n_dests; i++) {
        dest *d = &g_dests[i];
        if (d->until < now)
            continue;
        char *node = strdup(d->node);
        if (node && redis_commandf(g_cluster.cmd, on_taken, node, "EVAL %s 1 %s %s %s %s",
                                   TAKE_BACK, d->key, timeout, max, GROUP) == 0)
            continue;
        free(node);
    }
}

void queue_watch(const char *node)
{
    dest *d = dest_get(node);
    if (d)
        dest_touch(d);
}

/* ---- reading ours -------------------------------------------------------------------- */

static void read_next(void);

static void from_queue(void *ud, const char *kind, const char *node, const char *arg,
                       const char *body, size_t blen)
{
    registry_frame(kind, node, arg, body, blen);
}

/* The last entry we handled: after a lost connection, the pending entries
 * up to it were handled already (their XACK was lost) and are only
 * acknowledged. Reset with a new group (a new stream). */
static struct {
    unsigned long long ms, seq;
} g_last;

static bool parse_id(const char *id, unsigned long long *ms, unsigned long long *seq)
{
    return sscanf(id, "%llu-%llu", ms, seq) == 2;
}

/* Routes the frames of one entry (its "f" fields, in order). An entry
 * without fields is one deleted meanwhile (taken back). */
static void open_entry(const redisReply *fields)
{
    if (!fields || fields->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < fields->elements && g_cluster.reader; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[i]->str, "f") == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            link_open(g_cluster.k_queue, fields->element[i + 1]->str,
                      fields->element[i + 1]->len, from_queue, NULL);
}

/* Handles each new entry in order, then XDELs and XACKs them all and
 * reads on, in one write.
 *
 * An entry holds a whole loop turn of another node's frames, so routing a
 * batch can take seconds under load. Its entries count as handed to us
 * from the moment Redis answered the read, and their sender takes back
 * what stays unacknowledged for delivery_timeout: a frame routed here late
 * in a long batch was then bounced as well (delivered and bounced). So
 * past a quarter of delivery_timeout the entries routed so far are
 * acknowledged and the rest is read again from our pending entries: that
 * read renews their delivery time, and gives the ones taken back meanwhile
 * without their frames. */
static void take(const redisReply *entries)
{
    size_t n = entries->elements;
    const char **argv = calloc(n + 3, sizeof(*argv));
    if (!argv)
        return;
    argv[0] = "XACK";
    argv[1] = g_cluster.k_queue;
    argv[2] = GROUP;
    int argc = 3;
    uint64_t t0 = xmppd_now_ms(), budget = (uint64_t)g_cluster.conf->delivery_timeout / 4;
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = entries->element[i];
        unsigned long long ms, seq;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            e->element[0]->type != REDIS_REPLY_STRING || !parse_id(e->element[0]->str, &ms, &seq))
            continue;
        if (argc > 3 && xmppd_now_ms() - t0 > budget) {
            g_pending_phase = true; /* the rest, read again (on_read reads on) */
            log_kernel("cluster", XMPPD_LOG_DEBUG, "%s: %zu entries of a batch read again after "
                       "%llu ms", g_cluster.k_queue, n - i,
                       (unsigned long long)(xmppd_now_ms() - t0));
            break;
        }
        argv[argc++] = e->element[0]->str;
        if (ms < g_last.ms || (ms == g_last.ms && seq <= g_last.seq))
            continue;
        g_last.ms = ms;
        g_last.seq = seq;
        open_entry(e->element[1]);
        if (!g_cluster.reader)
            break; /* the node stops */
    }
    if (argc > 3 && g_cluster.reader) {
        smrep_before_ack(g_cluster.reader); /* replicas of what was just routed first */
        /* XDEL before XACK: an entry acknowledged but left in the stream
         * would stay until MAXLEN trims it (the take-back script deletes
         * such entries too) */
        argv[1] = "XDEL";
        argv[2] = g_cluster.k_queue; /* XDEL key id... */
        redis_command(g_cluster.reader, NULL, NULL, argc - 1, argv + 1, NULL);
        argv[0] = "XACK";
        argv[1] = g_cluster.k_queue;
        argv[2] = GROUP;             /* XACK key group id... */
        redis_command(g_cluster.reader, NULL, NULL, argc, argv, NULL);
    }
    free(argv);
}

static void on_group(redisReply *r, void *ud)
{
    if (r && r->type == REDIS_REPLY_STATUS)
        memset(&g_last, 0, sizeof(g_last)); /* a new stream: its IDs start anew */
    else if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0)
        log_kernel("cluster", XMPPD_LOG_ERROR, "cannot create the consumer group of %s: %.*s",
                   g_cluster.k_queue, (int)r->len, r->str);
}

static void create_group(void)
{
    /* from the stream's start: what was added before the group existed is
     * for us too (handled entries are deleted, so nothing is seen twice) */
    redis_commandf(g_cluster.reader, on_group, NULL, "XGROUP CREATE %s %s 0 MKSTREAM",
                   g_cluster.k_queue, GROUP);
}

static void on_read(redisReply *r, void *ud)
{
    if (!r || !g_cluster.conf)
        return; /* the connection is lost: reader_up starts again */
    if (r->type == REDIS_REPLY_ERROR) {
        /* NOGROUP: the stream was deleted under us (Redis restarted empty
         * while we were connected to another, say) */
        log_kernel("cluster", XMPPD_LOG_WARN, "reading %s: %.*s", g_cluster.k_queue, (int)r->len,
                   r->str);
        create_group();
        read_next();
        return;
    }
    /* [[key, [[id, [field, value, ...]], ...]]], or nil when BLOCK ran out */
    const redisReply *entries = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements == 2 && r->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
        entries = r->element[0]->element[1];
    if (entries && entries->elements)
        take(entries);
    else if (g_pending_phase) {
        g_pending_phase = false;
        log_kernel("cluster", XMPPD_LOG_DEBUG, "%s: pending entries read", g_cluster.k_queue);
    }
    read_next();
}

static void read_next(void)
{
    const char *node = g_cluster.conf->node;
    int rc;
    if (g_pending_phase) {
        rc = redis_commandf(g_cluster.reader, on_read, NULL,
                            "XREADGROUP GROUP %s %s COUNT %s STREAMS %s 0", GROUP, node, BATCH,
                            g_cluster.k_queue);
    } else {
        /* blocks for less than the connection's reply timeout (redis.c) */
        char block[24];
        snprintf(block, sizeof(block), "%llu",
                 (unsigned long long)(g_cluster.srv.timeout_ms / 2));
        rc = redis_commandf(g_cluster.reader, on_read, NULL,
                            "XREADGROUP GROUP %s %s COUNT %s BLOCK %s STREAMS %s >", GROUP, node,
                            BATCH, block, g_cluster.k_queue);
    }
    if (rc < 0)
        log_kernel("cluster", XMPPD_LOG_DEBUG, "%s: not reading (connection down)",
                   g_cluster.k_queue);
}

static void reader_up(void *ud)
{
    create_group();
    g_pending_phase = true; /* handed to us before, never handled: first */
    read_next();
}

static void reader_down(void *ud, const char *why)
{
    log_kernel("cluster", XMPPD_LOG_ERROR, "lost the Redis stream reader (%s): frames for this "
               "node wait in Redis", why);
}

int queue_start(void)
{
    static const redis_conn_ops ops = { .up = reader_up, .down = reader_down };
    g_cluster.k_queue = cluster_key("q:", g_cluster.conf->node);
    g_flush = event_new(loop_base(), -1, 0, on_flush, NULL);
    if (!g_cluster.k_queue || !g_flush ||
        !(g_cluster.reader = redis_conn_new(&g_cluster.srv, "stream", &ops, NULL)))
        return -1;
    return 0;
}

void queue_stop(void)
{
    if (g_flush) {
        on_flush(-1, 0, NULL); /* what this turn made still leaves */
        event_free(g_flush);
        g_flush = NULL;
    }
    redis_conn_free(g_cluster.reader);
    g_cluster.reader = NULL;
    for (size_t i = 0; i < g_n_dests; i++) {
        free(g_dests[i].node);
        free(g_dests[i].key);
        free(g_dests[i].out);
    }
    free(g_dests);
    g_dests = NULL;
    g_n_dests = 0;
    free(g_cluster.k_queue);
    g_cluster.k_queue = NULL;
}
