/* Placement across nodes: group-chat rooms (and any JID of a domain a
 * module places, xmppd_cluster_place) by rendezvous hashing over the live
 * nodes, and components (XEP-0114) attached to one node reachable from all
 * (docs/cluster.md, "Components, rooms and s2s across nodes").
 *
 * Rooms: the owner of node@domain is the live node (us and the peers seen
 * at the last heartbeat) whose hash of "NODE\0node@domain" is highest, so
 * every node computes the same owner without asking anyone, and a change
 * of the node set moves only the JIDs the joining or leaving node wins or
 * held. A stanza for a JID another node owns travels there in a "place"
 * frame and is routed there; arriving, it is handled there whatever that
 * node's view (the views agree again within a heartbeat; passing it on
 * could pass it back and forth). When the node set changes the modules
 * hear it (place_moved) and move their rooms.
 *
 * Components: Redis hash NAME:components:NODE (domain -> "1" when it also
 * serves subdomains, else "0"), written by NODE at each attach and detach,
 * which are also announced to every node like registry changes (pub/sub
 * and the nodes' streams, in order with the stanzas NODE sends). A peer's
 * hash is read whenever its sessions are (load_peer); a dead peer's goes
 * with it. A stanza for a component attached elsewhere travels in a
 * "place" frame too and is written to the component's stream there. */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "session/place.h"
#include "session/session.h"
#include "util/strmap.h"

typedef struct comp {
    char *node;
    bool subdomains;
} comp;

static strmap *g_comps;              /* domain -> comp: components attached to other nodes */
static char *g_k_comps;              /* our components hash */
static char *g_nodes_sig;            /* the live node set at the last change */
/* The stanza a "place" frame brought, while it is routed here: never sent
 * on to another node. */
static const xmppd_stanza *g_arrived;

/* ---- rendezvous hashing ------------------------------------------------------------ */

/* FNV-1a over node "\0" key, then a 64-bit finaliser (splitmix64) so that
 * similar names score independently. The same on every node and build. */
static uint64_t score(const char *node, const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)node; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ 0) * 1099511628211ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

/* The live node owning bare: NULL when it is us. */
static const char *owner_of(const char *bare)
{
    const char *best = g_cluster.conf->node;
    uint64_t top = score(best, bare);
    for (size_t i = 0; i < g_cluster.n_peers; i++) {
        uint64_t s = score(g_cluster.peers[i].name, bare);
        if (s > top || (s == top && strcmp(g_cluster.peers[i].name, best) < 0)) {
            top = s;
            best = g_cluster.peers[i].name;
        }
    }
    return best == g_cluster.conf->node ? NULL : best;
}

static bool mine(const char *bare)
{
    return !owner_of(bare);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void comps_drop(const char *node);

/* Components of nodes that are neither us nor live peers: an attach
 * announced by a node that died before we ever saw it. A node seen later
 * has its hash read then (place_load). */
static int stale_node(const char *key, void *value, void *ud)
{
    const comp *c = value;
    for (size_t i = 0; i < g_cluster.n_peers; i++)
        if (strcmp(g_cluster.peers[i].name, c->node) == 0)
            return 0;
    *(const char **)ud = c->node;
    return 1;
}

static void comps_prune(void)
{
    /* at most one pass per entry, even if a drop fails (OOM) */
    for (size_t left = g_comps ? strmap_count(g_comps) : 0; left > 0; left--) {
        const char *node = NULL;
        if (g_comps)
            strmap_foreach(g_comps, stale_node, &node);
        char *copy = node ? strdup(node) : NULL;
        if (!copy)
            return;
        comps_drop(copy);
        free(copy);
    }
}

void place_nodes(void)
{
    comps_prune();
    size_t n = g_cluster.n_peers + 1, len = 1;
    const char **v = calloc(n, sizeof(*v));
    if (!v)
        return;
    v[0] = g_cluster.conf->node;
    for (size_t i = 0; i + 1 < n; i++)
        v[i + 1] = g_cluster.peers[i].name;
    qsort(v, n, sizeof(*v), cmp_str);
    for (size_t i = 0; i < n; i++)
        len += strlen(v[i]) + 1;
    char *sig = malloc(len);
    if (sig) {
        sig[0] = '\0';
        for (size_t i = 0; i < n; i++) {
            strcat(sig, v[i]);
            strcat(sig, " ");
        }
    }
    free(v);
    if (!sig || (g_nodes_sig && strcmp(sig, g_nodes_sig) == 0)) {
        free(sig);
        return;
    }
    bool first = !g_nodes_sig;
    free(g_nodes_sig);
    g_nodes_sig = sig;
    if (first)
        return; /* place_start: this node alone */
    log_kernel("cluster", XMPPD_LOG_INFO, "live nodes now: %s; placed JIDs move", sig);
    place_moved();
}

/* ---- sending a stanza to the node that has its JID ------------------------------- */

static bool send_place(const char *node, xmppd_event *ev)
{
    size_t len = 0;
    char *xml = xmppd_stanza_to_string(ev->stanza, "jabber:client", &len);
    int rc = xml ? link_send(node, "place", ev->to->full, xml, len, NULL) : -1;
    free(xml);
    log_kernel("cluster", XMPPD_LOG_DEBUG, "%s to %s: %s node %s", xmppd_stanza_name(ev->stanza),
               ev->to->full, rc == 0 ? "routed on" : "cannot reach", node);
    return rc == 0;
}

static bool route_placed(xmppd_event *ev, const char *key)
{
    if (ev->stanza == g_arrived)
        return false;
    const char *node = owner_of(key);
    if (!node)
        return false;
    /* Redis is away: the JID's node cannot be reached, and serving it here
     * too would make two rooms of one (RFC 6120 §8.3.3.13: wait, retry) */
    if (!send_place(node, ev))
        xmppd_reply_error(ev, "wait", "recipient-unavailable", "the node serving this address "
                          "cannot be reached");
    return true;
}

/* ---- components ---------------------------------------------------------------------- */

static void comp_free(comp *c)
{
    if (c) {
        free(c->node);
        free(c);
    }
}

static void comp_set(const char *node, const char *domain, bool subdomains)
{
    comp *c = calloc(1, sizeof(*c));
    if (!c || !(c->node = strdup(node))) {
        free(c);
        return;
    }
    c->subdomains = subdomains;
    comp_free(strmap_del(g_comps, domain));
    if (strmap_put(g_comps, domain, c) < 0)
        comp_free(c);
    else
        log_kernel("cluster", XMPPD_LOG_INFO, "component %s is attached to node %s", domain, node);
}

static void comp_unset(const char *node, const char *domain)
{
    comp *c = strmap_get(g_comps, domain);
    if (c && strcmp(c->node, node) == 0) {
        comp_free(strmap_del(g_comps, domain));
        log_kernel("cluster", XMPPD_LOG_INFO, "component %s left node %s", domain, node);
    }
}

typedef struct keys {
    char **v;
    size_t n;
    const char *node;
} keys;

static int collect(const char *key, void *value, void *ud)
{
    keys *k = ud;
    const comp *c = value;
    if (strcmp(c->node, k->node) == 0) {
        char **v = realloc(k->v, (k->n + 1) * sizeof(*v));
        if (!v)
            return 1;
        k->v = v;
        if ((v[k->n] = strdup(key)))
            k->n++;
    }
    return 0;
}

static void comps_drop(const char *node)
{
    keys k = { .node = node };
    if (g_comps)
        strmap_foreach(g_comps, collect, &k);
    for (size_t i = 0; i < k.n; i++) {
        comp_unset(node, k.v[i]);
        free(k.v[i]);
    }
    free(k.v);
}

/* Most specific first, as the component route picks a configuration: the
 * domain itself, then a parent attached with its subdomains. */
static const comp *comp_for(const char *domain)
{
    for (const char *d = domain; g_comps && d && *d;) {
        const comp *c = strmap_get(g_comps, d);
        if (c && (d == domain || c->subdomains))
            return c;
        d = strchr(d, '.');
        if (d)
            d++;
    }
    return NULL;
}

static bool route_component(xmppd_event *ev)
{
    if (ev->stanza == g_arrived)
        return false;
    const comp *c = comp_for(ev->to->domain);
    /* Redis away: as a component not attached (service-unavailable) */
    return c && send_place(c->node, ev);
}

static bool component_elsewhere(const char *domain)
{
    return g_comps && strmap_get(g_comps, domain);
}

/* An attach or detach goes to every node over pub/sub and into the
 * streams of the nodes we know, ordered with the stanzas we send them (a
 * component's first stanza never overtakes its attach). */
static void announce(const char *kind, const char *domain, const char *v)
{
    size_t vl = v ? strlen(v) : 0;
    link_publish(g_cluster.ch_reg, kind, domain, v, vl);
    for (size_t i = 0; i < g_cluster.n_peers; i++)
        link_send(g_cluster.peers[i].name, kind, domain, v, vl, NULL);
}

static void attached(const char *domain, bool subdomains)
{
    const char *v = subdomains ? "1" : "0";
    if (!redis_conn_up(g_cluster.cmd))
        return; /* written when Redis is back (place_republish) */
    redis_commandf(g_cluster.cmd, NULL, NULL, "HSET %s %s %s", g_k_comps, domain, v);
    announce("comp", domain, v);
}

static void detached(const char *domain)
{
    if (!redis_conn_up(g_cluster.cmd))
        return;
    redis_commandf(g_cluster.cmd, NULL, NULL, "HDEL %s %s", g_k_comps, domain);
    announce("uncomp", domain, NULL);
}

static void republish_one(const char *domain, bool subdomains, void *ud)
{
    redis_commandf(g_cluster.cmd, NULL, NULL, "HSET %s %s %s", g_k_comps, domain,
                   subdomains ? "1" : "0");
}

void place_republish(void)
{
    redis_commandf(g_cluster.cmd, NULL, NULL, "DEL %s", g_k_comps);
    place_components_foreach(republish_one, NULL);
    pdir_republish();
}

typedef struct load_req {
    char *node;
} load_req;

static void on_comps(redisReply *r, void *ud)
{
    load_req *l = ud;
    if (g_cluster.conf && r && r->type == REDIS_REPLY_ARRAY) {
        comps_drop(l->node);
        for (size_t k = 0; k + 1 < r->elements; k += 2)
            if (r->element[k]->type == REDIS_REPLY_STRING &&
                r->element[k + 1]->type == REDIS_REPLY_STRING)
                comp_set(l->node, r->element[k]->str, strcmp(r->element[k + 1]->str, "1") == 0);
    }
    free(l->node);
    free(l);
}

void place_load(const char *node)
{
    load_req *l = calloc(1, sizeof(*l));
    char *k = cluster_key("components:", node);
    if (l && k && (l->node = strdup(node)) &&
        redis_commandf(g_cluster.cmd, on_comps, l, "HGETALL %s", k) == 0) {
        free(k);
        return;
    }
    if (l)
        free(l->node);
    free(l);
    free(k);
}

void place_forget(const char *node, bool closed)
{
    comps_drop(node);
    char *k = closed ? cluster_key("components:", node) : NULL;
    if (k) /* the node that speaks for the dead one cleans up after it */
        redis_commandf(g_cluster.cmd, NULL, NULL, "DEL %s", k);
    free(k);
    if (closed)
        pdir_forget(node);
}

/* ---- frames ------------------------------------------------------------------------------- */

static void route_here(const char *to, const char *xml, size_t len, bool arrived)
{
    xmppd_stanza *st = xmppd_stanza_from_string(xml, len, "jabber:client");
    if (!st) {
        log_kernel("cluster", XMPPD_LOG_WARN, "a stanza for %s from another node was dropped "
                   "(unparsable)", to);
        return;
    }
    const xmppd_stanza *outer = g_arrived;
    if (arrived)
        g_arrived = st;
    xmppd_route(NULL, st);
    g_arrived = outer;
    xmppd_stanza_unref(st);
}

bool place_arrived(const xmppd_stanza *st)
{
    return st && st == g_arrived;
}

bool place_frame(const char *kind, const char *node, const char *arg, const char *body,
                 size_t blen)
{
    if (strcmp(kind, "place") == 0)
        route_here(arg, body, blen, true);
    else if (strcmp(kind, "comp") == 0)
        comp_set(node, arg, blen == 1 && body[0] == '1');
    else if (strcmp(kind, "uncomp") == 0)
        comp_unset(node, arg);
    else
        return false;
    return true;
}

bool place_unsent(const char *node, const char *kind, const char *arg, const char *body,
                  size_t blen)
{
    if (strcmp(kind, "place") == 0) {
        /* its node died with it: routed again, to the node that has the
         * JID now (a room's new owner, a component attached elsewhere), or
         * answered as when nobody has it */
        log_kernel("cluster", XMPPD_LOG_INFO, "a stanza for %s not taken by node %s in time: "
                   "routed again", arg, node);
        route_here(arg, body, blen, false);
        return true;
    }
    return strcmp(kind, "comp") == 0 || strcmp(kind, "uncomp") == 0;
}

/* ---- start / stop -------------------------------------------------------------------------- */

static const place_ops ops = {
    .route = route_placed,
    .mine = mine,
    .component = route_component,
    .component_elsewhere = component_elsewhere,
    .attached = attached,
    .detached = detached,
    .dir_publish = pdir_publish,
    .dir_read = pdir_read,
};

typedef struct comps_of {
    const char *node;
    void (*fn)(const char *domain, void *ud);
    void *ud;
} comps_of;

static int each_of_node(const char *key, void *value, void *ud)
{
    const comps_of *c = ud;
    if (strcmp(((const comp *)value)->node, c->node) == 0)
        c->fn(key, c->ud);
    return 0;
}

static void each_local(const char *domain, bool subdomains, void *ud)
{
    const comps_of *c = ud;
    c->fn(domain, c->ud);
}

void place_components_of(const char *node, void (*fn)(const char *domain, void *ud), void *ud)
{
    comps_of c = { node, fn, ud };
    if (strcmp(node, g_cluster.conf->node) == 0)
        place_components_foreach(each_local, &c);
    else if (g_comps)
        strmap_foreach(g_comps, each_of_node, &c);
}

void place_start(void)
{
    g_comps = strmap_new();
    g_k_comps = cluster_key("components:", g_cluster.conf->node);
    pdir_start();
    place_set_ops(&ops);
    place_nodes();
}

static int free_comp(const char *key, void *value, void *ud)
{
    comp_free(value);
    return 0;
}

void place_stop(void)
{
    place_set_ops(NULL);
    pdir_stop();
    if (g_comps) {
        strmap_foreach(g_comps, free_comp, NULL);
        strmap_free(g_comps);
    }
    g_comps = NULL;
    free(g_k_comps);
    g_k_comps = NULL;
    free(g_nodes_sig);
    g_nodes_sig = NULL;
}
