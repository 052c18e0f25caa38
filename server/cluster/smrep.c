/* Replicas of stream-management sessions in Redis (api/xmppd/cluster.h,
 * docs/cluster.md "Stream management across nodes"), so that a session of
 * a node that died can be resumed on another node.
 *
 * Redis, per stream-management id ID:
 *   NAME:sm:ID   hash: jid, user, node (its owner; "" once released), ttl
 *                (ms), in (stanzas handled from the client), prio, pres
 *                (its last available presence, or "")
 *   NAME:smq:ID  list: "SEQ <stanza/>" for each stanza sent to the client
 *                and not yet acknowledged, oldest first
 * Both expire ttl + MARGIN after the last write or refresh; the owner
 * refreshes them every REFRESH while the session lives.
 *
 * Cost on the hot path: what the replicas of a loop turn change leaves as
 * one pipelined write, with per replica at most one RPUSH (its new
 * stanzas), one LTRIM (what was acknowledged) and one HSET (its counters),
 * between CLIENT REPLY OFF and ON: Redis answers once per turn, not once
 * per command.
 * The entries carry their sequence number, so a partly written batch (the
 * node died mid-write) never puts a stanza under the wrong h: the reader
 * skips numbers it has seen.
 *
 * Taking over (xmppd_replica_take): a script run atomically in Redis
 * checks the account and the owner. An owner that is alive (its
 * registration has not expired) is asked to let the session go ("smrel"
 * frame in its stream): it ends the session quietly, writes out what it
 * had not written, clears the owner and answers "smgone"; the script then
 * runs again. A dead owner's replica is taken at once. */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "core/core.h"
#include "core/loop.h"
#include "session/replica.h"
#include "util/strmap.h"
#include "xmppd/loop.h"

#define MARGIN_MS 30000ULL  /* a dead node's replicas outlive its last refresh by ttl + this */
#define REFRESH_MS 10000ULL /* the owner renews the expiry this often */
#define ID_MAX 64

struct xmppd_replica {
    char *id, *k_hash, *k_log;
    xmppd_session *s;             /* ref */
    uint64_t ttl_ms;
    void (*release)(void *ud);
    void *ud;
    uint32_t in_h;
    bool fresh;                   /* its hash is to be written whole */
    bool in_dirty, restart, dirty;
    size_t drop;                  /* entries to trim from the list's head */
    size_t queued;                /* the module's queue: pushed and not dropped */
    size_t missing;               /* its oldest entries that Redis lost (it restarted) */
    bool released;                /* handed to another node: changes go nowhere */
    char **push;                  /* "SEQ xml" entries to append */
    size_t *push_len, n_push, cap_push;
    const xmppd_stanza *pres;     /* the presence last written */
    int prio;
    uint64_t expires_set;         /* when the expiry was last renewed (ms) */
    struct xmppd_replica *next_dirty;
};

static strmap *g_reps;            /* id -> replica: the sessions replicated here */
static char *g_k_ids;             /* NAME:smids:NODE: the ids of our replicas */
static char *g_k_orphans;         /* NAME:smorphans:NODE: dead nodes' replicas we watch */
static char *g_prefix;            /* "NAME:" */
static bool g_orphans;            /* some may be waiting (checked every heartbeat) */
static struct event *g_reap;
static xmppd_replica *g_dirty;    /* changed in this loop turn */
static struct event *g_flush, *g_refresh;

/* ---- writing ------------------------------------------------------------------ */

static void mark(xmppd_replica *r)
{
    if (r->dirty)
        return;
    r->dirty = true;
    r->next_dirty = g_dirty;
    g_dirty = r;
    event_active(g_flush, EV_TIMEOUT, 0);
}

/* "PRIO" and the presence's XML ("" when not available). */
static void write_presence(redis_conn *c, xmppd_replica *r)
{
    size_t len = 0;
    xmppd_stanza *p = r->s->available ? r->s->presence : NULL;
    char *xml = p ? xmppd_stanza_to_string(p, "jabber:client", &len) : NULL;
    char prio[16];
    snprintf(prio, sizeof(prio), "%d", r->s->priority);
    redis_commandf(c, NULL, NULL, "HSET %s prio %s pres %b", r->k_hash, prio, xml ? xml : "",
                   xml ? len : (size_t)0);
    free(xml);
    r->pres = p;
    r->prio = r->s->priority;
}

static void write_expiry(redis_conn *c, xmppd_replica *r)
{
    char ms[24];
    snprintf(ms, sizeof(ms), "%llu", (unsigned long long)(r->ttl_ms + MARGIN_MS));
    redis_commandf(c, NULL, NULL, "PEXPIRE %s %s", r->k_hash, ms);
    redis_commandf(c, NULL, NULL, "PEXPIRE %s %s", r->k_log, ms);
    r->expires_set = xmppd_now_ms();
}

/* r's changes since its last flush, as pipelined commands on c. */
static void flush_one(redis_conn *c, xmppd_replica *r)
{
    char num[24];
    if (r->fresh) {
        char ttl[24];
        snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)r->ttl_ms);
        snprintf(num, sizeof(num), "%u", r->in_h);
        redis_commandf(c, NULL, NULL, "HSET %s jid %s user %s node %s ttl %s in %s", r->k_hash,
                       r->s->jid->full, r->s->user, g_cluster.conf->node, ttl, num);
        redis_commandf(c, NULL, NULL, "SADD %s %s", g_k_ids, r->id);
        write_presence(c, r);
    } else if (r->in_dirty) {
        snprintf(num, sizeof(num), "%u", r->in_h);
        redis_commandf(c, NULL, NULL, "HSET %s in %s", r->k_hash, num);
    }
    if (!r->fresh && (r->pres != (r->s->available ? r->s->presence : NULL) ||
                      r->prio != r->s->priority))
        write_presence(c, r);
    if (r->restart)
        redis_commandf(c, NULL, NULL, "DEL %s", r->k_log);
    if (r->drop) {
        snprintf(num, sizeof(num), "%zu", r->drop);
        redis_commandf(c, NULL, NULL, "LTRIM %s %s -1", r->k_log, num);
    }
    if (r->n_push) {
        const char **argv = malloc((r->n_push + 2) * sizeof(*argv));
        size_t *lens = malloc((r->n_push + 2) * sizeof(*lens));
        if (argv && lens) {
            argv[0] = "RPUSH";
            lens[0] = 5;
            argv[1] = r->k_log;
            lens[1] = strlen(r->k_log);
            for (size_t i = 0; i < r->n_push; i++) {
                argv[i + 2] = r->push[i];
                lens[i + 2] = r->push_len[i];
            }
            redis_command(c, NULL, NULL, (int)r->n_push + 2, argv, lens);
        }
        free(argv);
        free(lens);
    }
    if (r->fresh || r->restart)
        write_expiry(c, r);
    for (size_t i = 0; i < r->n_push; i++)
        free(r->push[i]);
    r->n_push = r->drop = 0;
    r->fresh = r->in_dirty = r->restart = false;
}

/* Every replica changed in this turn, on c (our commands connection, or
 * the stream reader's right before it acknowledges frames: then the
 * replica of a stanza from another node is in Redis before its frame
 * leaves the stream). Redis away: the changes are lost, the replica is
 * written whole when it is back (fresh). */
static void flush_all(redis_conn *c)
{
    bool up = redis_conn_up(c);
    /* nothing here waits for an answer: Redis sends none (one for the turn) */
    bool quiet = up && redis_quiet(c, true) == 0;
    while (g_dirty) {
        xmppd_replica *r = g_dirty;
        g_dirty = r->next_dirty;
        r->dirty = false;
        if (up) {
            flush_one(c, r);
        } else {
            for (size_t i = 0; i < r->n_push; i++)
                free(r->push[i]);
            r->n_push = r->drop = 0;
            r->fresh = r->restart = true; /* written whole once Redis is back */
            r->missing = r->queued;
        }
    }
    if (quiet)
        redis_quiet(c, false);
}

static void on_flush(evutil_socket_t fd, short what, void *ud)
{
    flush_all(g_cluster.cmd);
}

void smrep_before_ack(redis_conn *c)
{
    if (g_dirty)
        flush_all(c);
}

/* ---- the backend ---------------------------------------------------------------- */

static bool id_ok(const char *id)
{
    size_t n = strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_");
    return n > 0 && n <= ID_MAX && !id[n];
}

static void rep_free(xmppd_replica *r)
{
    for (size_t i = 0; i < r->n_push; i++)
        free(r->push[i]);
    free(r->push);
    free(r->push_len);
    if (r->s)
        xmppd_session_unref(r->s);
    free(r->id);
    free(r->k_hash);
    free(r->k_log);
    free(r);
}

static xmppd_replica *be_open(xmppd_module *m, xmppd_session *s, const char *id, uint64_t ttl_ms,
                              void (*release)(void *ud), void *ud)
{
    if (!g_reps || !s->jid || !s->user || !id_ok(id) || strmap_get(g_reps, id))
        return NULL;
    xmppd_replica *r = calloc(1, sizeof(*r));
    if (!r || !(r->id = strdup(id)) || !(r->k_hash = cluster_key("sm:", id)) ||
        !(r->k_log = cluster_key("smq:", id)) || strmap_put(g_reps, id, r) < 0) {
        if (r)
            rep_free(r);
        return NULL;
    }
    r->s = xmppd_session_ref(s);
    r->ttl_ms = ttl_ms;
    r->release = release;
    r->ud = ud;
    r->fresh = r->restart = true;
    mark(r);
    return r;
}

static void be_set_in(xmppd_replica *r, uint32_t in_h)
{
    if (r->released)
        return;
    r->in_h = in_h;
    r->in_dirty = true;
    mark(r);
}

static void be_push(xmppd_replica *r, uint32_t seq, const xmppd_stanza *st)
{
    if (r->released)
        return;
    if (r->n_push == r->cap_push) {
        size_t cap = r->cap_push ? r->cap_push * 2 : 4;
        char **v = realloc(r->push, cap * sizeof(*v));
        if (v)
            r->push = v;
        size_t *l = v ? realloc(r->push_len, cap * sizeof(*l)) : NULL;
        if (l)
            r->push_len = l;
        if (!v || !l)
            goto oom;
        r->cap_push = cap;
    }
    size_t xl = 0;
    char *xml = xmppd_stanza_to_string(st, "jabber:client", &xl);
    char head[16];
    int hl = snprintf(head, sizeof(head), "%u ", seq);
    char *e = xml ? malloc((size_t)hl + xl) : NULL;
    if (e) {
        memcpy(e, head, (size_t)hl);
        memcpy(e + hl, xml, xl);
        r->push[r->n_push] = e;
        r->push_len[r->n_push++] = (size_t)hl + xl;
        r->queued++;
        mark(r);
        free(xml);
        return;
    }
    free(xml);
oom:
    /* Not in Redis: a resume elsewhere finds a gap in the numbers. Counted
     * with those Redis lost, so acknowledgements trim no more than the
     * list holds (never a stanza still unacknowledged). */
    r->queued++;
    r->missing++;
}

/* The n oldest of the queue were acknowledged. Oldest first: those Redis
 * lost (it restarted), then those in its list, then those not written
 * yet (after a restart, the list is rebuilt from these alone). */
static void be_drop(xmppd_replica *r, size_t n)
{
    if (r->released)
        return;
    size_t m = n < r->missing ? n : r->missing;
    r->missing -= m;
    r->queued -= m;
    n -= m;
    size_t others = r->missing + r->n_push;
    size_t listed = r->restart || r->queued < others ? 0 : r->queued - others;
    size_t k = n < listed ? n : listed;
    r->drop += k;
    r->queued -= k;
    n -= k;
    size_t j = n < r->n_push ? n : r->n_push;
    for (size_t i = 0; i < j; i++)
        free(r->push[i]);
    memmove(r->push, r->push + j, (r->n_push - j) * sizeof(*r->push));
    memmove(r->push_len, r->push_len + j, (r->n_push - j) * sizeof(*r->push_len));
    r->n_push -= j;
    r->queued -= j;
    mark(r);
}

static void be_restart(xmppd_replica *r)
{
    if (r->released)
        return;
    r->queued = r->missing = 0;
    for (size_t i = 0; i < r->n_push; i++)
        free(r->push[i]);
    r->n_push = r->drop = 0;
    r->restart = true;
    mark(r);
}

static void unlist_dirty(xmppd_replica *r)
{
    for (xmppd_replica **pp = &g_dirty; *pp; pp = &(*pp)->next_dirty)
        if (*pp == r) {
            *pp = r->next_dirty;
            break;
        }
}

static void be_close(xmppd_replica *r, bool erase)
{
    if (r->released) {
        rep_free(r);
        return;
    }
    if (strmap_get(g_reps, r->id) == r)
        strmap_del(g_reps, r->id);
    if (r->dirty) {
        unlist_dirty(r);
        if (!erase && redis_conn_up(g_cluster.cmd))
            flush_one(g_cluster.cmd, r); /* handed over: its last changes first */
    }
    if (redis_conn_up(g_cluster.cmd))
        redis_commandf(g_cluster.cmd, NULL, NULL, "SREM %s %s", g_k_ids, r->id);
    if (erase && redis_conn_up(g_cluster.cmd))
        redis_commandf(g_cluster.cmd, NULL, NULL, "DEL %s %s", r->k_hash, r->k_log);
    rep_free(r);
}

/* ---- keeping them alive ------------------------------------------------------------ */

static int refresh_one(const char *key, void *value, void *ud)
{
    xmppd_replica *r = value;
    uint64_t now = *(const uint64_t *)ud;
    if (!r->fresh && now - r->expires_set >= REFRESH_MS)
        write_expiry(g_cluster.cmd, r);
    return 0;
}

static void on_refresh(evutil_socket_t fd, short what, void *ud)
{
    uint64_t now = xmppd_now_ms();
    if (redis_conn_up(g_cluster.cmd))
        strmap_foreach(g_reps, refresh_one, &now);
}

static int mark_fresh(const char *key, void *value, void *ud)
{
    xmppd_replica *r = value;
    if (r->dirty) /* what this turn pushed is written after the DEL */
        return 0;
    r->fresh = r->restart = true;
    r->missing = r->queued; /* the queue so far is not in the new list */
    mark(r);
    return 0;
}

void smrep_republish(void)
{
    /* Redis came back (maybe empty): every replica is written whole; the
     * stanzas sent meanwhile are not in it (a resume elsewhere replays
     * from the next one on). */
    if (g_reps)
        strmap_foreach(g_reps, mark_fresh, NULL);
    g_orphans = true;
}

/* ---- taking over ----------------------------------------------------------------- */

/* KEYS[1] hash, KEYS[2] list; ARGV[1] the account (user@host), ARGV[2] us,
 * ARGV[3] the registration key prefix ("NAME:node:"). {0}: none (or
 * another account's); {2, node}: its owner is alive; {1, hash, list}:
 * ours now. */
static const char TAKE[] =
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "if #h == 0 then return {0} end\n"
    "local f = {}\n"
    "for i = 1, #h, 2 do f[h[i]] = h[i + 1] end\n"
    "local jid = f['jid'] or ''\n"
    "if string.sub(jid, 1, #ARGV[1] + 1) ~= ARGV[1] .. '/' then return {0} end\n"
    "local owner = f['node'] or ''\n"
    "if owner ~= '' and owner ~= ARGV[2] and redis.call('EXISTS', ARGV[3] .. owner) == 1 then\n"
    "  return {2, owner}\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'node', ARGV[2])\n"
    "return {1, h, redis.call('LRANGE', KEYS[2], 0, -1)}\n";

typedef struct take_req {
    xmppd_call *call;
    bool cancelled;               /* its module unloaded */
    xmppd_replica_cb cb;
    void *ud;
    char *id, *account, *k_hash, *k_log;
    bool asked;                   /* its owner was asked to let it go */
    struct event *timer;          /* waiting for the owner */
    struct take_req *next;        /* waiting for the owner */
} take_req;

static take_req *g_waiting;

static void take_free(take_req *t)
{
    if (t->timer)
        event_free(t->timer);
    free(t->id);
    free(t->account);
    free(t->k_hash);
    free(t->k_log);
    free(t);
}

static void take_cancel(void *p)
{
    take_req *t = p;
    t->cancelled = true; /* its answer, later, goes nowhere */
    t->cb(XMPPD_REPLICA_CANCELLED, NULL, t->ud);
}

static void take_answer(take_req *t, int status, const xmppd_replica_state *st)
{
    if (xmppd_call_finish(t->call))
        t->cb(status, st, t->ud);
    take_free(t);
}

static const char *field_of(const redisReply *h, const char *name, size_t *len)
{
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (h->element[i]->type == REDIS_REPLY_STRING && strcmp(h->element[i]->str, name) == 0) {
            if (len)
                *len = h->element[i + 1]->len;
            return h->element[i + 1]->str;
        }
    return NULL;
}

/* A replica's hash and list as a state for a module (parse_state), with
 * the stanzas it holds (state_clear frees them). */
typedef struct parsed {
    xmppd_replica_state st;
    uint32_t *seq;
    xmppd_stanza **sts;
} parsed;

static bool parse_state(const redisReply *h, const redisReply *l, parsed *p)
{
    size_t n = l->type == REDIS_REPLY_ARRAY ? l->elements : 0, k = 0, plen = 0;
    memset(p, 0, sizeof(*p));
    p->seq = calloc(n ? n : 1, sizeof(*p->seq));
    p->sts = calloc(n ? n : 1, sizeof(*p->sts));
    const char *jid = field_of(h, "jid", NULL), *in = field_of(h, "in", NULL),
               *ttl = field_of(h, "ttl", NULL), *prio = field_of(h, "prio", NULL),
               *pres = field_of(h, "pres", &plen);
    p->st = (xmppd_replica_state){
        .jid = jid, .in_h = in ? (uint32_t)strtoul(in, NULL, 10) : 0,
        .ttl_ms = ttl ? strtoull(ttl, NULL, 10) : 0, .priority = prio ? atoi(prio) : 0,
        .presence = pres && plen ? xmppd_stanza_from_string(pres, plen, "jabber:client") : NULL,
    };
    /* In order; a number seen already (a batch written twice) is skipped. */
    for (size_t i = 0; p->seq && p->sts && i < n; i++) {
        const redisReply *e = l->element[i];
        const char *sp = e->type == REDIS_REPLY_STRING ? memchr(e->str, ' ', e->len) : NULL;
        if (!sp)
            continue;
        uint32_t s = (uint32_t)strtoul(e->str, NULL, 10);
        if (k > 0 && (int32_t)(s - p->seq[k - 1]) <= 0)
            continue;
        xmppd_stanza *x = xmppd_stanza_from_string(sp + 1, e->len - (size_t)(sp + 1 - e->str),
                                                   "jabber:client");
        if (!x)
            continue;
        p->seq[k] = s;
        p->sts[k++] = x;
    }
    p->st.n = k;
    p->st.seq = p->seq;
    p->st.stanzas = p->sts;
    return p->seq && p->sts && jid;
}

static void state_clear(parsed *p)
{
    for (size_t i = 0; i < p->st.n; i++)
        xmppd_stanza_unref(p->sts[i]);
    xmppd_stanza_unref(p->st.presence);
    free(p->seq);
    free(p->sts);
}

/* {1, hash, list}: the module gets the session. */
static void answer_found(take_req *t, const redisReply *h, const redisReply *l)
{
    parsed p;
    bool ok = parse_state(h, l, &p);
    log_kernel("cluster", XMPPD_LOG_INFO, "stream-management session %s (%s) taken over with %zu "
               "unacknowledged stanzas", t->id, p.st.jid ? p.st.jid : "?", p.st.n);
    take_answer(t, ok ? XMPPD_REPLICA_FOUND : XMPPD_REPLICA_ERROR, &p.st);
    state_clear(&p);
}

static void run_take(take_req *t);

static void unlist_waiting(take_req *t)
{
    for (take_req **pp = &g_waiting; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            break;
        }
}

/* The owner did not answer within delivery_timeout: it died (its
 * registration has expired by now, the script takes the replica) or it
 * stalls (the answer is NONE). */
static void on_owner_silent(evutil_socket_t fd, short what, void *ud)
{
    take_req *t = ud;
    unlist_waiting(t);
    log_kernel("cluster", XMPPD_LOG_INFO, "stream-management session %s: its node did not "
               "answer; trying again", t->id);
    run_take(t);
}

static void on_taken(redisReply *r, void *ud)
{
    take_req *t = ud;
    if (!g_cluster.conf || redis_failed(r) || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        take_answer(t, XMPPD_REPLICA_ERROR, NULL);
        return;
    }
    long long status = r->element[0]->integer;
    if (status == 1 && r->elements == 3) {
        answer_found(t, r->element[1], r->element[2]);
        return;
    }
    if (status != 2 || r->elements != 2 || t->asked || t->cancelled) {
        take_answer(t, XMPPD_REPLICA_NONE, NULL);
        return;
    }
    /* Its node is alive (the session is detached there, or its connection
     * is still half-open): it is asked to let it go. */
    const char *owner = r->element[1]->str;
    struct timeval tv = { (time_t)(g_cluster.conf->delivery_timeout / 1000),
                          (suseconds_t)(g_cluster.conf->delivery_timeout % 1000) * 1000 };
    t->asked = true;
    t->timer = evtimer_new(loop_base(), on_owner_silent, t);
    const char *us = g_cluster.conf->node;
    if (!t->timer || evtimer_add(t->timer, &tv) < 0 ||
        link_send(owner, "smrel", t->id, us, strlen(us), NULL) < 0) {
        take_answer(t, XMPPD_REPLICA_ERROR, NULL);
        return;
    }
    log_kernel("cluster", XMPPD_LOG_INFO, "stream-management session %s: asking node %s to let "
               "it go", t->id, owner);
    t->next = g_waiting;
    g_waiting = t;
}

static void run_take(take_req *t)
{
    char *prefix = cluster_key("node:", "");
    const char *argv[] = { "EVAL", TAKE, "2", t->k_hash, t->k_log, t->account,
                           g_cluster.conf->node, prefix ? prefix : "" };
    if (!prefix || redis_command(g_cluster.cmd, on_taken, t, 8, argv, NULL) < 0)
        take_answer(t, XMPPD_REPLICA_ERROR, NULL); /* Redis away */
    free(prefix);
}

static int be_take(xmppd_module *m, xmppd_host *h, const char *user, const char *id,
                   xmppd_replica_cb cb, void *ud)
{
    if (!id_ok(id) || !redis_conn_up(g_cluster.cmd))
        return -1;
    take_req *t = calloc(1, sizeof(*t));
    size_t al = strlen(user) + strlen(h->name) + 2;
    if (!t || !(t->id = strdup(id)) || !(t->account = malloc(al)) ||
        !(t->k_hash = cluster_key("sm:", id)) || !(t->k_log = cluster_key("smq:", id)) ||
        !(t->call = xmppd_call_new(m, take_cancel, t))) {
        if (t)
            take_free(t);
        return -1;
    }
    /* from here on t ends through take_answer */
    snprintf(t->account, al, "%s@%s", user, h->name);
    t->cb = cb;
    t->ud = ud;
    run_take(t);
    return 0;
}

/* "smrel" from node: a client of one of our sessions is back there. The
 * session ends here quietly (its contacts see nothing: it goes on there),
 * its replica is written out and released, and node hears "smgone". */
void smrep_release(const char *id, const char *node)
{
    xmppd_replica *r = g_reps ? strmap_get(g_reps, id) : NULL;
    if (r && redis_conn_up(g_cluster.cmd)) {
        log_kernel("cluster", XMPPD_LOG_INFO, "stream-management session %s (%s) resumed on node "
                   "%s: ending it here", id, r->s->jid->full, node);
        xmppd_session *s = r->s;
        /* its last changes, then it is the other node's: nothing more
         * from here, whenever the session's end comes */
        if (r->dirty) {
            unlist_dirty(r);
            r->dirty = false;
            flush_one(g_cluster.cmd, r);
        }
        redis_commandf(g_cluster.cmd, NULL, NULL, "HSET %s node %s", r->k_hash, "");
        redis_commandf(g_cluster.cmd, NULL, NULL, "SREM %s %s", g_k_ids, id);
        r->released = true;
        strmap_del(g_reps, id);
        /* no unavailable presence on its behalf: it goes on there */
        s->available = false;
        xmppd_stanza_unref(s->presence);
        s->presence = NULL;
        r->release(r->ud);
    }
    link_send(node, "smgone", id, NULL, 0, NULL);
}

/* "smgone": the node asked let the session go (or did not have it). */
void smrep_gone(const char *id)
{
    for (take_req *t = g_waiting; t; t = t->next)
        if (strcmp(t->id, id) == 0) {
            unlist_waiting(t);
            event_free(t->timer);
            t->timer = NULL;
            run_take(t);
            return;
        }
}

/* ---- a dead node's replicas that nobody resumes ------------------------------------ */

/* KEYS[1] the dead node's ids, KEYS[2] our orphans; ARGV[1] "NAME:", ARGV[2]
 * the dead node, ARGV[3] the margin (ms). Its replicas (those it still
 * owned) become ours to watch, each for its ttl from now. */
static const char ADOPT[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local n = 0\n"
    "for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  local hk, lk = ARGV[1] .. 'sm:' .. id, ARGV[1] .. 'smq:' .. id\n"
    "  if redis.call('HGET', hk, 'node') == ARGV[2] then\n"
    "    local ttl = tonumber(redis.call('HGET', hk, 'ttl') or '0') + tonumber(ARGV[3])\n"
    "    redis.call('HSET', hk, 'orphan_of', ARGV[2], 'orphan_at', string.format('%d', now))\n"
    "    redis.call('PEXPIRE', hk, ttl)\n"
    "    redis.call('PEXPIRE', lk, ttl)\n"
    "    redis.call('SADD', KEYS[2], id)\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "redis.call('DEL', KEYS[1])\n"
    "return n\n";

/* KEYS[1] our orphans; ARGV[1] "NAME:". Those resumed meanwhile (their
 * owner changed) or gone are forgotten; those whose ttl is over are
 * taken (deleted): {left, {{hash, list}, ...}}. */
static const char REAP[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local out = {}\n"
    "for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  local hk, lk = ARGV[1] .. 'sm:' .. id, ARGV[1] .. 'smq:' .. id\n"
    "  local h = redis.call('HGETALL', hk)\n"
    "  local f = {}\n"
    "  for i = 1, #h, 2 do f[h[i]] = h[i + 1] end\n"
    "  if #h == 0 or f['node'] ~= f['orphan_of'] then\n"
    "    redis.call('SREM', KEYS[1], id)\n"
    "  elseif now >= tonumber(f['orphan_at'] or '0') + tonumber(f['ttl'] or '0') then\n"
    "    out[#out + 1] = {h, redis.call('LRANGE', lk, 0, -1)}\n"
    "    redis.call('DEL', hk, lk)\n"
    "    redis.call('SREM', KEYS[1], id)\n"
    "  end\n"
    "end\n"
    "return {redis.call('SCARD', KEYS[1]), out}\n";

static void on_adopted(redisReply *r, void *ud)
{
    char *node = ud;
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
        log_kernel("cluster", XMPPD_LOG_INFO, "node %s left %lld stream-management sessions: "
                   "they wait here to be resumed on any node", node, r->integer);
        g_orphans = true;
    } else if (r && r->type == REDIS_REPLY_ERROR) {
        log_kernel("cluster", XMPPD_LOG_ERROR, "cannot adopt node %s's stream-management "
                   "sessions: %.*s", node, (int)r->len, r->str);
    }
    free(node);
}

void smrep_orphans(const char *node)
{
    char *ids = cluster_key("smids:", node), *n = strdup(node), margin[24];
    snprintf(margin, sizeof(margin), "%llu", MARGIN_MS);
    const char *argv[] = { "EVAL", ADOPT, "2", ids ? ids : "", g_k_orphans, g_prefix, node,
                           margin };
    if (!ids || !n || redis_command(g_cluster.cmd, on_adopted, n, 8, argv, NULL) < 0)
        free(n);
    free(ids);
}

/* A session of a dead node that nobody resumed in time ends as on its
 * node: the modules of its host handle what it never acknowledged
 * ("replica-expired"; XEP-0198 §9 in mod_smacks). */
static void expire_one(const redisReply *h, const redisReply *l)
{
    parsed p;
    if (parse_state(h, l, &p)) {
        xmppd_jid *j = xmppd_jid_parse(p.st.jid);
        xmppd_host *host = j ? xmppd_host_find(j->domain) : NULL;
        log_kernel("cluster", XMPPD_LOG_INFO, "stream-management session of %s (a dead node's) "
                   "was not resumed in time: its %zu unacknowledged stanzas are handled here",
                   p.st.jid, p.st.n);
        if (host)
            xmppd_notify(host, "replica-expired", NULL, &p.st);
        xmppd_jid_free(j);
    }
    state_clear(&p);
}

static void on_reaped(redisReply *r, void *ud)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_ARRAY)
        return; /* tried again at the next heartbeat */
    g_orphans = r->element[0]->integer > 0;
    const redisReply *out = r->element[1];
    for (size_t i = 0; i < out->elements && g_cluster.conf; i++)
        if (out->element[i]->type == REDIS_REPLY_ARRAY && out->element[i]->elements == 2)
            expire_one(out->element[i]->element[0], out->element[i]->element[1]);
}

static void on_reap(evutil_socket_t fd, short what, void *ud)
{
    if (!g_orphans || !redis_conn_up(g_cluster.cmd))
        return;
    const char *argv[] = { "EVAL", REAP, "1", g_k_orphans, g_prefix };
    redis_command(g_cluster.cmd, on_reaped, NULL, 5, argv, NULL);
}

/* ---- start / stop ------------------------------------------------------------------ */

static const replica_backend backend = {
    .open = be_open, .set_in = be_set_in, .push = be_push, .drop = be_drop,
    .restart = be_restart, .close = be_close, .take = be_take,
};

int smrep_start(void)
{
    struct timeval tv = { REFRESH_MS / 1000, 0 };
    struct timeval beat = { g_cluster.conf->heartbeat / 1000,
                            (g_cluster.conf->heartbeat % 1000) * 1000 };
    g_reps = strmap_new();
    g_flush = event_new(loop_base(), -1, 0, on_flush, NULL);
    g_refresh = event_new(loop_base(), -1, EV_PERSIST, on_refresh, NULL);
    g_reap = event_new(loop_base(), -1, EV_PERSIST, on_reap, NULL);
    g_k_ids = cluster_key("smids:", g_cluster.conf->node);
    g_k_orphans = cluster_key("smorphans:", g_cluster.conf->node);
    g_prefix = cluster_key("", "");
    g_orphans = true; /* a previous life of this node may have left some */
    if (!g_reps || !g_flush || !g_refresh || !g_reap || !g_k_ids || !g_k_orphans || !g_prefix ||
        event_add(g_refresh, &tv) < 0 || event_add(g_reap, &beat) < 0)
        return -1;
    replica_set_backend(&backend);
    return 0;
}

static int drop_one(const char *key, void *value, void *ud)
{
    rep_free(value); /* the sessions ended before; a module unloading freed its own */
    return 0;
}

void smrep_stop(void)
{
    replica_set_backend(NULL);
    if (g_flush) {
        flush_all(g_cluster.cmd);
        event_free(g_flush);
    }
    if (g_refresh)
        event_free(g_refresh);
    if (g_reap)
        event_free(g_reap);
    g_flush = g_refresh = g_reap = NULL;
    free(g_k_ids);
    free(g_k_orphans);
    free(g_prefix);
    g_k_ids = g_k_orphans = g_prefix = NULL;
    while (g_waiting) {
        take_req *t = g_waiting;
        g_waiting = t->next;
        take_answer(t, XMPPD_REPLICA_ERROR, NULL);
    }
    if (g_reps) {
        strmap_foreach(g_reps, drop_one, NULL);
        strmap_free(g_reps);
    }
    g_reps = NULL;
    g_dirty = NULL;
}
