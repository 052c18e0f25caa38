/* The directory of placed JIDs in Redis (api/xmppd/cluster.h; the session
 * layer's side is session/pdir.c). Each node's entries are the hash
 * NAME:placed:NODE (bare JID -> value), written on the command connection,
 * so a read this node makes afterwards sees its own writes; written anew
 * when Redis comes back (place_republish); a dead node's hash is deleted
 * by the node that speaks for it. A read is one HGETALL per live node,
 * pipelined; the entries of the domain asked are merged, sorted and each
 * JID kept once (a room moving between two nodes may be listed by both
 * for a moment). */
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "session/place.h"

typedef void (*dir_done_fn)(void *req, bool ok, size_t n, const char *const *jids,
                            const char *const *values);

static char *g_k_dir; /* our hash */

void pdir_publish(const char *bare, const char *value)
{
    if (!g_k_dir || !redis_conn_up(g_cluster.cmd))
        return; /* written when Redis is back (pdir_republish) */
    if (value)
        redis_commandf(g_cluster.cmd, NULL, NULL, "HSET %s %s %s", g_k_dir, bare, value);
    else
        redis_commandf(g_cluster.cmd, NULL, NULL, "HDEL %s %s", g_k_dir, bare);
}

static void republish_one(const char *bare, const char *value, void *ud)
{
    pdir_publish(bare, value);
}

void pdir_republish(void)
{
    redis_commandf(g_cluster.cmd, NULL, NULL, "DEL %s", g_k_dir);
    place_dir_foreach(republish_one, NULL);
}

void pdir_forget(const char *node)
{
    char *k = cluster_key("placed:", node);
    if (k)
        redis_commandf(g_cluster.cmd, NULL, NULL, "DEL %s", k);
    free(k);
}

/* ---- reading --------------------------------------------------------------------------- */

typedef struct dir_read {
    dir_done_fn done;
    void *req;
    char *suffix;     /* "@domain" */
    size_t waiting;   /* HGETALLs not answered yet */
    bool failed;
    char **jids, **values;
    size_t n, cap;
} dir_read;

static void read_free(dir_read *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->jids[i]);
        free(d->values[i]);
    }
    free(d->jids);
    free(d->values);
    free(d->suffix);
    free(d);
}

static bool of_domain(const dir_read *d, const char *jid, size_t len)
{
    size_t sl = strlen(d->suffix);
    return len > sl && memcmp(jid + len - sl, d->suffix, sl) == 0;
}

static int add(dir_read *d, const redisReply *k, const redisReply *v)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        char **j = realloc(d->jids, cap * sizeof(*j));
        if (!j)
            return -1;
        d->jids = j;
        char **w = realloc(d->values, cap * sizeof(*w));
        if (!w)
            return -1;
        d->values = w;
        d->cap = cap;
    }
    char *jid = strndup(k->str, k->len), *value = strndup(v->str, v->len);
    if (!jid || !value) {
        free(jid);
        free(value);
        return -1;
    }
    d->jids[d->n] = jid;
    d->values[d->n++] = value;
    return 0;
}

typedef struct pair {
    const char *jid, *value;
} pair;

static int cmp_pair(const void *a, const void *b)
{
    return strcmp(((const pair *)a)->jid, ((const pair *)b)->jid);
}

static void finish(dir_read *d)
{
    pair *v = d->n ? calloc(d->n, sizeof(*v)) : NULL;
    const char **jids = d->n ? calloc(d->n, sizeof(*jids)) : NULL;
    const char **values = d->n ? calloc(d->n, sizeof(*values)) : NULL;
    size_t n = 0;
    if (d->n && (!v || !jids || !values)) {
        d->failed = true;
    } else if (d->n) { /* (qsort of no array is undefined) */
        for (size_t i = 0; i < d->n; i++)
            v[i] = (pair){ d->jids[i], d->values[i] };
        qsort(v, d->n, sizeof(*v), cmp_pair);
        for (size_t i = 0; i < d->n; i++)
            if (n == 0 || strcmp(jids[n - 1], v[i].jid) != 0) {
                jids[n] = v[i].jid;
                values[n++] = v[i].value;
            }
    }
    d->done(d->req, !d->failed, d->failed ? 0 : n, jids, values);
    free(v);
    free(jids);
    free(values);
    read_free(d);
}

static void on_hash(redisReply *r, void *ud)
{
    dir_read *d = ud;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        d->failed = true;
    } else {
        for (size_t k = 0; k + 1 < r->elements && !d->failed; k += 2) {
            const redisReply *key = r->element[k], *val = r->element[k + 1];
            if (key->type == REDIS_REPLY_STRING && val->type == REDIS_REPLY_STRING &&
                of_domain(d, key->str, key->len) && add(d, key, val) < 0)
                d->failed = true;
        }
    }
    if (--d->waiting == 0)
        finish(d);
}

static int read_node(dir_read *d, const char *node)
{
    char *k = cluster_key("placed:", node);
    int rc = k ? redis_commandf(g_cluster.cmd, on_hash, d, "HGETALL %s", k) : -1;
    free(k);
    if (rc == 0)
        d->waiting++;
    return rc;
}

int pdir_read(const char *domain, dir_done_fn done, void *req)
{
    if (!g_k_dir || !redis_conn_up(g_cluster.cmd))
        return -1;
    dir_read *d = calloc(1, sizeof(*d));
    if (!d || !(d->suffix = malloc(strlen(domain) + 2))) {
        free(d);
        return -1;
    }
    d->suffix[0] = '@';
    strcpy(d->suffix + 1, domain);
    d->done = done;
    d->req = req;
    /* our own hash first: every node's entries come from Redis alike */
    if (read_node(d, g_cluster.conf->node) < 0) {
        read_free(d);
        return -1;
    }
    for (size_t i = 0; i < g_cluster.n_peers; i++)
        if (read_node(d, g_cluster.peers[i].name) < 0)
            d->failed = true; /* the connection went down: the answers queued come back NULL */
    return 0;
}

void pdir_start(void)
{
    g_k_dir = cluster_key("placed:", g_cluster.conf->node);
}

void pdir_stop(void)
{
    free(g_k_dir);
    g_k_dir = NULL;
}
