/* What entities' XEP-0115 verification strings stand for (§5.4, §6.3).
 *
 * An entry per string: the features of the disco#info answer behind it,
 * sorted for bsearch. A string is asked for once (from the host's domain to
 * the first entity announcing it, node "NODE#VER"); entities announcing it
 * meanwhile wait on the entry and are told by "caps-resolved". A string
 * with a hash we can check (sha-1, sha-256, sha-512) is cached for everyone
 * once the answer matches it (key "v HASH VER"); an answer that does not
 * match, and legacy caps without a hash, are kept for the answering address
 * only (key "j JID NODE#VER"). A failed or mismatching query is retried
 * after CC_RETRY_MS at the earliest.
 *
 * Bounds: max_entries entries (the oldest answered one goes first),
 * max_pending queries in flight (beyond: CAPS_NO, nothing asked), each
 * answered within timeout_ms or failed (xmppd_iq_request: only the entity
 * asked can answer, so a guessed id cannot poison the cache). */
#define _GNU_SOURCE /* tdestroy */
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caps.h"
#include "caps_api.h"

#define CC_RETRY_MS (5 * 60 * 1000)
#define CC_MAX_FEATURES 1024

enum { CC_PENDING, CC_READY, CC_FAILED };

typedef struct cc_waiter {
    char *jid;
    struct cc_waiter *next;
} cc_waiter;

typedef struct cc_entry {
    char *key;
    int state;
    char **features;      /* READY: sorted, n of them */
    size_t n;
    uint64_t retry_at;    /* FAILED: no new query before (monotonic ms) */
    /* PENDING: the query and who waits for it */
    char *jid, *node, *ver, *hash; /* hash "" for legacy caps */
    cc_waiter *waiters;
    caps_cache *c;
    struct cc_entry *prev, *next;  /* age list, oldest first */
} cc_entry;

struct caps_cache {
    xmppd_module *m;
    void *tree;              /* tsearch tree of cc_entry *, by key */
    cc_entry *oldest, *newest;
    size_t n, max, n_pending, max_pending;
    long long timeout_ms;
};

static int cc_cmp(const void *a, const void *b)
{
    return strcmp(((const cc_entry *)a)->key, ((const cc_entry *)b)->key);
}

static int cc_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ---- entries ---------------------------------------------------------------------- */

static void cc_waiters_free(cc_waiter *w)
{
    while (w) {
        cc_waiter *next = w->next;
        free(w->jid);
        free(w);
        w = next;
    }
}

static void cc_features_free(cc_entry *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->features[i]);
    free(e->features);
    e->features = NULL;
    e->n = 0;
}

/* Drops what only a pending entry has; a pending entry stops counting as
 * one. */
static void cc_query_clear(cc_entry *e)
{
    if (e->state == CC_PENDING) {
        e->c->n_pending--;
        e->state = CC_FAILED; /* the caller says what it is now */
    }
    free(e->jid);
    free(e->node);
    free(e->ver);
    free(e->hash);
    e->jid = e->node = e->ver = e->hash = NULL;
    cc_waiters_free(e->waiters);
    e->waiters = NULL;
}

static void cc_unlink(cc_entry *e)
{
    caps_cache *c = e->c;
    if (e->prev)
        e->prev->next = e->next;
    else
        c->oldest = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->newest = e->prev;
    e->prev = e->next = NULL;
}

static void cc_append(cc_entry *e)
{
    caps_cache *c = e->c;
    e->prev = c->newest;
    e->next = NULL;
    if (c->newest)
        c->newest->next = e;
    else
        c->oldest = e;
    c->newest = e;
}

/* Frees e (detached from the tree by the caller, or when the tree goes);
 * never a pending one: its query still has it. */
static void cc_entry_free(void *p)
{
    cc_entry *e = p;
    cc_query_clear(e);
    cc_features_free(e);
    free(e->key);
    free(e);
}

static void cc_remove(cc_entry *e)
{
    tdelete(e, &e->c->tree, cc_cmp);
    cc_unlink(e);
    e->c->n--;
    cc_entry_free(e);
}

/* Makes room for one more entry: the oldest that is not pending goes. */
static void cc_evict(caps_cache *c)
{
    for (cc_entry *e = c->oldest; e && c->n >= c->max; e = e->next)
        if (e->state != CC_PENDING) {
            cc_remove(e);
            return;
        }
}

static cc_entry *cc_find(caps_cache *c, const char *key)
{
    cc_entry k = { .key = (char *)key };
    cc_entry **p = tfind(&k, &c->tree, cc_cmp);
    return p ? *p : NULL;
}

/* A new entry under key (state PENDING until told otherwise); NULL on OOM. */
static cc_entry *cc_add(caps_cache *c, const char *key)
{
    if (c->n >= c->max)
        cc_evict(c);
    cc_entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->key = strdup(key))) {
        free(e);
        return NULL;
    }
    e->c = c;
    e->state = CC_FAILED;
    cc_entry **p = tsearch(e, &c->tree, cc_cmp);
    if (!p || *p != e) {
        free(e->key);
        free(e);
        return NULL;
    }
    cc_append(e);
    c->n++;
    return e;
}

/* ---- keys ------------------------------------------------------------------------- */

static bool cc_checkable(const char *hash)
{
    return strcmp(hash, "sha-1") == 0 || strcmp(hash, "sha-256") == 0 ||
           strcmp(hash, "sha-512") == 0;
}

/* "v HASH VER" (a string everyone may share) or "j JID NODE#VER" (one
 * address's answer); malloc'd. */
static char *cc_key(bool shared, const char *jid, const char *node, const char *ver,
                    const char *hash)
{
    char *k = NULL;
    int n = shared ? asprintf(&k, "v %s %s", hash, ver) : asprintf(&k, "j %s %s#%s", jid, node, ver);
    return n < 0 ? NULL : k;
}

/* ---- queries -------------------------------------------------------------------- */

static void cc_fail(cc_entry *e)
{
    cc_query_clear(e);
    e->state = CC_FAILED;
    e->retry_at = xmppd_now_ms() + CC_RETRY_MS;
}

static int cc_add_waiter(cc_entry *e, const char *jid)
{
    for (cc_waiter *w = e->waiters; w; w = w->next)
        if (strcmp(w->jid, jid) == 0)
            return 0;
    cc_waiter *w = calloc(1, sizeof(*w));
    if (!w || !(w->jid = strdup(jid))) {
        free(w);
        return -1;
    }
    w->next = e->waiters;
    e->waiters = w;
    return 0;
}

static void cc_answered(cc_entry *e, const xmppd_stanza *q);

static void cc_on_answer(int status, xmppd_stanza *reply, void *ud)
{
    cc_entry *e = ud;
    if (status == XMPPD_IQ_CANCELLED) { /* unloading: the cache goes next */
        cc_query_clear(e);
        return;
    }
    if (status == XMPPD_IQ_TIMEOUT)
        xmppd_log(e->c->m, XMPPD_LOG_DEBUG, "caps query to %s: no answer", e->jid);
    cc_answered(e, status == XMPPD_IQ_RESULT ? xmppd_stanza_child(reply, "query", CAPS_DISCO_INFO_NS)
                                              : NULL);
}

/* Sends <iq type='get'><query node='NODE#VER'/></iq> to jid for e. */
static int cc_query(cc_entry *e, const char *jid, const char *node, const char *ver,
                    const char *hash)
{
    caps_cache *c = e->c;
    if (c->n_pending >= c->max_pending)
        return -1;
    e->jid = strdup(jid);
    e->node = strdup(node);
    e->ver = strdup(ver);
    e->hash = strdup(hash);
    char *qnode = NULL;
    xmppd_host *h = xmppd_module_host(c->m);
    xmppd_stanza *iq = xmppd_stanza_new("iq", XMPPD_NS_CLIENT);
    xmppd_stanza *q = iq ? xmppd_stanza_tag(iq, "query", CAPS_DISCO_INFO_NS) : NULL;
    bool ok = q && e->jid && e->node && e->ver && e->hash && asprintf(&qnode, "%s#%s", node, ver) >= 0 &&
              cc_add_waiter(e, jid) == 0;
    if (ok) {
        xmppd_stanza_set_attr(iq, "type", "get");
        xmppd_stanza_set_attr(iq, "from", xmppd_host_name(h));
        xmppd_stanza_set_attr(iq, "to", jid);
        xmppd_stanza_set_attr(q, "node", qnode);
        ok = xmppd_iq_request(c->m, iq, (uint64_t)c->timeout_ms, cc_on_answer, e) == 0;
    }
    free(qnode);
    xmppd_stanza_unref(iq);
    if (!ok) {
        cc_fail(e);
        return -1;
    }
    e->state = CC_PENDING;
    c->n_pending++;
    return 0;
}

/* ---- answers ---------------------------------------------------------------------- */

/* The features of a disco#info <query/>, sorted, into e (READY). */
static int cc_set_features(cc_entry *e, const xmppd_stanza *q)
{
    size_t n = 0;
    for (xmppd_stanza *f = xmppd_stanza_first(q); f; f = xmppd_stanza_next(f))
        n += strcmp(xmppd_stanza_name(f), "feature") == 0 && xmppd_stanza_attr(f, "var");
    if (n > CC_MAX_FEATURES)
        return -1;
    char **v = calloc(n + 1, sizeof(*v));
    size_t i = 0;
    for (xmppd_stanza *f = xmppd_stanza_first(q); v && f; f = xmppd_stanza_next(f)) {
        const char *var = xmppd_stanza_attr(f, "var");
        if (strcmp(xmppd_stanza_name(f), "feature") == 0 && var && !(v[i++] = strdup(var)))
            break;
    }
    if (!v || i < n) {
        for (size_t k = 0; v && k < i; k++)
            free(v[k]);
        free(v);
        return -1;
    }
    qsort(v, n, sizeof(*v), cc_cmp_str);
    cc_features_free(e);
    e->features = v;
    e->n = n;
    e->state = CC_READY;
    return 0;
}

/* Tells each waiter its caps are known. */
static void cc_tell(caps_cache *c, cc_waiter *w)
{
    xmppd_host *h = xmppd_module_host(c->m);
    for (; w; w = w->next) {
        xmppd_jid *j = xmppd_jid_parse(w->jid);
        xmppd_session *s = j ? xmppd_session_find(j) : NULL;
        if (s && xmppd_session_host(s) != h)
            s = NULL;
        xmppd_event ev = { .name = CAPS_EVENT_RESOLVED, .host = h, .session = s, .from = j };
        if (j)
            xmppd_fire_all(&ev);
        xmppd_jid_free(j);
    }
}

/* Does the answer q match the string ver (of hash)? */
static bool cc_matches(const xmppd_stanza *q, const char *ver, const char *hash)
{
    char *s = caps_string(q);
    char *d = s ? caps_digest(s, hash) : NULL;
    bool ok = d && strcmp(d, ver) == 0;
    free(s);
    free(d);
    return ok;
}

/* The answer q (NULL: an error) to e's query. */
static void cc_answered(cc_entry *e, const xmppd_stanza *q)
{
    caps_cache *c = e->c;
    cc_waiter *waiters = e->waiters;
    e->waiters = NULL;
    char *jid = e->jid, *node = e->node, *ver = e->ver, *hash = e->hash;
    e->jid = e->node = e->ver = e->hash = NULL;
    bool shared = cc_checkable(hash);
    if (!q) {
        cc_fail(e);
    } else if (shared && !cc_matches(q, ver, hash)) {
        /* Not what the string says: kept for that address only. */
        xmppd_log(c->m, XMPPD_LOG_INFO, "caps of %s do not match their string %s", jid, ver);
        cc_fail(e);
        char *k = cc_key(false, jid, node, ver, hash);
        cc_entry *own = k ? (cc_find(c, k) ? cc_find(c, k) : cc_add(c, k)) : NULL;
        if (own && cc_set_features(own, q) < 0)
            cc_remove(own);
        free(k);
    } else {
        cc_query_clear(e);
        if (cc_set_features(e, q) < 0)
            cc_fail(e);
        cc_unlink(e); /* answered now: the newest */
        cc_append(e);
    }
    free(jid);
    free(node);
    free(ver);
    free(hash);
    cc_tell(c, waiters);
    cc_waiters_free(waiters);
}

/* ---- lookups ------------------------------------------------------------------------ */

static int cc_answer(const cc_entry *e, const char *feature)
{
    if (!feature)
        return e->state == CC_READY ? CAPS_YES : CAPS_NO;
    return bsearch(&feature, e->features, e->n, sizeof(*e->features), cc_cmp_str) ? CAPS_YES
                                                                                  : CAPS_NO;
}

int caps_cache_has(caps_cache *c, const char *jid, const char *node, const char *ver,
                   const char *hash, const char *feature, bool query)
{
    bool shared = cc_checkable(hash);
    char *k = cc_key(shared, jid, node, ver, hash);
    cc_entry *e = k ? cc_find(c, k) : NULL;
    if (e && e->state == CC_FAILED && shared) {
        /* An answer that did not match its string is the address's own. */
        char *own = cc_key(false, jid, node, ver, hash);
        cc_entry *o = own ? cc_find(c, own) : NULL;
        free(own);
        if (o && o->state == CC_READY) {
            free(k);
            return cc_answer(o, feature);
        }
    }
    int rc = CAPS_NO;
    if (e && e->state == CC_READY) {
        rc = cc_answer(e, feature);
    } else if (e && e->state == CC_PENDING) {
        rc = query && cc_add_waiter(e, jid) < 0 ? CAPS_NO : CAPS_UNKNOWN;
    } else if (query && (!e || xmppd_now_ms() >= e->retry_at)) {
        if (!e && k)
            e = cc_add(c, k);
        if (e && cc_query(e, jid, node, ver, hash) == 0)
            rc = CAPS_UNKNOWN;
    }
    free(k);
    return rc;
}

/* ---- lifecycle ------------------------------------------------------------------------ */

caps_cache *caps_cache_new(xmppd_module *m, size_t max_entries, size_t max_pending,
                           long long timeout_ms)
{
    caps_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->m = m;
    c->max = max_entries ? max_entries : 1;
    c->max_pending = max_pending;
    c->timeout_ms = timeout_ms;
    return c;
}

void caps_cache_free(caps_cache *c)
{
    if (!c)
        return;
    tdestroy(c->tree, cc_entry_free);
    free(c);
}
