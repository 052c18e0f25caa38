/* Membership: this node's registration and heartbeat, the other nodes'
 * liveness, start/stop, and `xmppctl cluster status`.
 *
 * Redis: NAME:nodes is the set of node names; NAME:node:NODE holds a node's
 * version and session count and expires after cluster.node_timeout unless
 * renewed. Each heartbeat renews ours (with our sessions hash), reads the
 * set and the registrations: a node listed without a registration is dead,
 * and whoever notices first removes it from the set; every node drops its
 * remote sessions. Liveness rests on Redis's clock alone (key expiry), not
 * on the nodes' clocks agreeing. */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "cluster/internal.h"
#include "core/loop.h"
#include "session/session.h"
#include "xmppd/crypto.h"
#include "xmppd/ctl.h"

cluster g_cluster;

char *cluster_key(const char *a, const char *b)
{
    size_t n = strlen(g_cluster.conf->name) + strlen(a) + strlen(b) + 2;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%s:%s%s", g_cluster.conf->name, a, b);
    return k;
}

/* ---- peers -------------------------------------------------------------------- */

static peer *peer_find(const char *name)
{
    for (size_t i = 0; i < g_cluster.n_peers; i++)
        if (strcmp(g_cluster.peers[i].name, name) == 0)
            return &g_cluster.peers[i];
    return NULL;
}

void node_forget(const char *name, bool closed)
{
    registry_drop_node(name, closed);
    place_forget(name, closed);
    peer *p = peer_find(name);
    if (!p)
        return;
    log_kernel("cluster", XMPPD_LOG_INFO, "node %s left the cluster", name);
    free(p->name);
    free(p->version);
    free(p->hosts);
    *p = g_cluster.peers[--g_cluster.n_peers];
    place_nodes();
}

void node_resync(const char *name)
{
    peer *p = peer_find(name);
    if (p)
        p->synced = false;
}

typedef struct load_req {
    char *node;
} load_req;

static void on_load(redisReply *r, void *ud)
{
    load_req *l = ud;
    peer *p = r && g_cluster.conf ? peer_find(l->node) : NULL;
    if (p && !redis_failed(r)) {
        registry_load(l->node, r);
        p->synced = true;
    }
    free(l->node);
    free(l);
}

static void load_peer(peer *p)
{
    load_req *l = malloc(sizeof(*l));
    char *k = cluster_key("sessions:", p->name);
    if (l && k && (l->node = strdup(p->name)) &&
        redis_commandf(g_cluster.cmd, on_load, l, "HGETALL %s", k) == 0) {
        free(k);
        place_load(p->name);
        return;
    }
    if (l)
        free(l->node);
    free(l);
    free(k);
}

/* A registration seen at this heartbeat. */
static void peer_seen(const char *name, const char *info)
{
    json_t *j = json_loads(info, 0, NULL);
    peer *p = peer_find(name);
    if (!p) {
        peer *v = realloc(g_cluster.peers, (g_cluster.n_peers + 1) * sizeof(*v));
        char *n = strdup(name);
        if (!v || !n) {
            free(n);
            if (v)
                g_cluster.peers = v;
            json_decref(j);
            return;
        }
        g_cluster.peers = v;
        p = &v[g_cluster.n_peers++];
        *p = (peer){ .name = n };
        log_kernel("cluster", XMPPD_LOG_INFO, "node %s joined the cluster", name);
    }
    p->seen = true;
    const char *ver = json_string_value(json_object_get(j, "version"));
    if (ver && (!p->version || strcmp(p->version, ver) != 0)) {
        free(p->version);
        p->version = strdup(ver);
    }
    p->sessions = json_integer_value(json_object_get(j, "sessions"));
    const char *hosts = json_string_value(json_object_get(j, "hosts"));
    if (hosts && (!p->hosts || strcmp(p->hosts, hosts) != 0)) {
        free(p->hosts);
        p->hosts = strdup(hosts);
    }
    json_decref(j);
    if (!p->synced)
        load_peer(p);
}

/* SREM answered: 1 for the one node that removed the dead node from the
 * set, which speaks for its sessions; the others just forget them. */
static void on_removed(redisReply *r, void *ud)
{
    char *name = ud;
    if (g_cluster.conf) {
        bool won = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        log_kernel("cluster", XMPPD_LOG_WARN, "node %s missed its heartbeats: dropping its "
                   "sessions", name);
        node_forget(name, won);
        if (won) {
            queue_watch(name);
            smrep_orphans(name);
        }
    }
    free(name);
}

/* A node in the set without a registration: dead. Its entries go. */
static void peer_dead(const char *name)
{
    peer *p = peer_find(name);
    if (p)
        p->seen = true; /* on_removed forgets it */
    char *ks = cluster_key("sessions:", name);
    char *n = strdup(name);
    if (ks && n && redis_commandf(g_cluster.cmd, on_removed, n, "SREM %s %s", g_cluster.k_nodes,
                                  name) == 0) {
        redis_commandf(g_cluster.cmd, NULL, NULL, "DEL %s", ks);
        n = NULL;
    }
    free(n);
    free(ks);
}

typedef struct names {
    char **v;
    size_t n;
} names;

static void names_free(names *ns)
{
    for (size_t i = 0; i < ns->n; i++)
        free(ns->v[i]);
    free(ns->v);
    free(ns);
}

static void on_infos(redisReply *r, void *ud)
{
    names *ns = ud;
    if (g_cluster.conf && r && r->type == REDIS_REPLY_ARRAY && r->elements == ns->n) {
        for (size_t i = 0; i < g_cluster.n_peers; i++)
            g_cluster.peers[i].seen = false;
        for (size_t i = 0; i < ns->n; i++) {
            if (r->element[i]->type == REDIS_REPLY_STRING)
                peer_seen(ns->v[i], r->element[i]->str);
            else
                peer_dead(ns->v[i]);
        }
        /* removed from the set by another node: gone too */
        for (size_t i = g_cluster.n_peers; i-- > 0;)
            if (!g_cluster.peers[i].seen)
                node_forget(g_cluster.peers[i].name, false);
        place_nodes();
    }
    names_free(ns);
}

/* MGET of the registrations of the nodes in members (SMEMBERS' answer)
 * but us; fn gets the answer with the names (a names*, fn's to free). 1
 * when asked, 0 when there is no other node, -1 on failure (OOM, Redis
 * down). */
static int read_registrations(const redisReply *members, redis_reply_fn fn)
{
    names *ns = calloc(1, sizeof(*ns));
    const char **argv = calloc(members->elements + 1, sizeof(*argv));
    if (!ns || !argv || !(ns->v = calloc(members->elements + 1, sizeof(*ns->v)))) {
        free(argv);
        if (ns)
            names_free(ns);
        return -1;
    }
    argv[0] = "MGET";
    int argc = 1;
    for (size_t i = 0; i < members->elements; i++) {
        const char *name = members->element[i]->str;
        if (members->element[i]->type != REDIS_REPLY_STRING ||
            strcmp(name, g_cluster.conf->node) == 0)
            continue;
        char *k = cluster_key("node:", name);
        if (!k || !(ns->v[ns->n] = strdup(name))) {
            free(k);
            break;
        }
        ns->n++;
        argv[argc++] = k;
    }
    int rc = ns->n == 0 ? 0 : redis_command(g_cluster.cmd, fn, ns, argc, argv, NULL) == 0 ? 1 : -1;
    if (rc < 1)
        names_free(ns);
    for (int i = 1; i < argc; i++)
        free((char *)argv[i]);
    free(argv);
    return rc;
}

static void on_members(redisReply *r, void *ud)
{
    if (!g_cluster.conf || !r || r->type != REDIS_REPLY_ARRAY)
        return;
    if (read_registrations(r, on_infos) == 0) /* alone: every peer we knew is gone */
        while (g_cluster.n_peers)
            node_forget(g_cluster.peers[0].name, false);
}

/* ---- heartbeat ------------------------------------------------------------------ */

static void check_hosts(void);

static void heartbeat(void)
{
    if (!redis_conn_up(g_cluster.cmd))
        return;
    if (!g_cluster.checked) {
        check_hosts();
        return;
    }
    json_t *info = json_pack("{s:s, s:I, s:s}", "version", xmppd_server_version(), "sessions",
                             (json_int_t)sm_count(NULL), "hosts", g_cluster.hosts);
    char *s = info ? json_dumps(info, JSON_COMPACT) : NULL;
    json_decref(info);
    if (!s)
        return;
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%lld", g_cluster.conf->node_timeout);
    redis_commandf(g_cluster.cmd, NULL, NULL, "SET %s %s PX %s", g_cluster.k_node, s, ttl);
    redis_commandf(g_cluster.cmd, NULL, NULL, "PEXPIRE %s %s", g_cluster.k_sessions, ttl);
    redis_commandf(g_cluster.cmd, NULL, NULL, "SADD %s %s", g_cluster.k_nodes, g_cluster.conf->node);
    redis_commandf(g_cluster.cmd, on_members, NULL, "SMEMBERS %s", g_cluster.k_nodes);
    queue_check();
    /* a PING awaited on the subscriber too: a dead link to Redis shows as
     * an overdue reply (redis.c), not as silence */
    if (redis_conn_up(g_cluster.sub))
        redis_commandf(g_cluster.sub, NULL, NULL, "PING");
    free(s);
}

static void on_beat(evutil_socket_t fd, short what, void *ud)
{
    heartbeat();
}

/* ---- connections ---------------------------------------------------------------- */

static void cmd_up(void *ud)
{
    /* Redis may have restarted empty, or expired us while it was away:
     * our sessions are written again, the peers' read again. */
    if (g_cluster.checked) {
        registry_republish();
        cstate_redis_up();
    }
    smrep_republish();
    heartbeat();
}

/* ---- the nodes serve the same hosts ----------------------------------------- */

/* A peer's registration's "hosts": is it ours? A registration without it
 * (an older version) is not compared. */
static bool same_hosts(const char *info, char **theirs)
{
    json_t *j = json_loads(info, 0, NULL);
    const char *h = json_string_value(json_object_get(j, "hosts"));
    bool same = !h || strcmp(h, g_cluster.hosts) == 0;
    if (!same)
        *theirs = strdup(h);
    json_decref(j);
    return same;
}

/* Before this node joins (registers, publishes its sessions), the live
 * nodes' host lists are compared with ours: a node serving other hosts
 * would route their stanzas to us, and we would answer for accounts we do
 * not serve. At start that refuses the node (cluster_start fails before
 * any port opens); if Redis was away at start, the node stays out of the
 * cluster, says why at every heartbeat, and joins once they agree. */
static void check_passed(void)
{
    g_cluster.checking = false;
    free(g_cluster.refused);
    g_cluster.refused = NULL;
    g_cluster.checked = true;
    registry_republish();
    heartbeat();
}

static void on_check_infos(redisReply *r, void *ud)
{
    names *ns = ud;
    g_cluster.checking = false;
    if (!g_cluster.conf || !r || r->type != REDIS_REPLY_ARRAY || r->elements != ns->n) {
        names_free(ns);
        return;
    }
    for (size_t i = 0; i < ns->n; i++) {
        char *theirs = NULL;
        if (r->element[i]->type == REDIS_REPLY_STRING && !same_hosts(r->element[i]->str, &theirs)) {
            char why[1024];
            snprintf(why, sizeof(why), "cluster: this node serves the hosts \"%s\", node %s "
                     "serves \"%s\": the nodes of a cluster serve the same hosts",
                     g_cluster.hosts, ns->v[i], theirs ? theirs : "?");
            free(theirs);
            free(g_cluster.refused);
            g_cluster.refused = strdup(why);
            if (!g_cluster.starting)
                log_kernel("cluster", XMPPD_LOG_ERROR, "%s; not joining", why);
            names_free(ns);
            return;
        }
    }
    names_free(ns);
    check_passed();
}

static void on_check_members(redisReply *r, void *ud)
{
    if (!g_cluster.conf || !r || r->type != REDIS_REPLY_ARRAY) {
        g_cluster.checking = false;
        return;
    }
    int rc = read_registrations(r, on_check_infos);
    if (rc == 0)
        check_passed(); /* the first node: nothing to compare */
    else if (rc < 0)
        g_cluster.checking = false;
}

static void check_hosts(void)
{
    if (g_cluster.checking)
        return;
    if (redis_commandf(g_cluster.cmd, on_check_members, NULL, "SMEMBERS %s", g_cluster.k_nodes) == 0)
        g_cluster.checking = true;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *cluster_hosts_of(const xmppd_config *cfg)
{
    const char **v = calloc(cfg->n_hosts + 1, sizeof(*v));
    size_t len = 1;
    for (size_t i = 0; v && i < cfg->n_hosts; i++) {
        v[i] = cfg->hosts[i].name;
        len += strlen(v[i]) + 1;
    }
    char *out = v ? malloc(len) : NULL;
    if (out) {
        qsort(v, cfg->n_hosts, sizeof(*v), cmp_str);
        out[0] = '\0';
        for (size_t i = 0; i < cfg->n_hosts; i++) {
            if (i)
                strcat(out, " ");
            strcat(out, v[i]);
        }
    }
    free(v);
    return out;
}

static void cmd_down(void *ud, const char *why)
{
    log_kernel("cluster", XMPPD_LOG_ERROR, "lost Redis (%s): local delivery goes on; sessions on "
               "other nodes are unreachable until it is back", why);
}

static void sub_up(void *ud)
{
    /* changes published while we were not subscribed are lost to us */
    for (size_t i = 0; i < g_cluster.n_peers; i++)
        g_cluster.peers[i].synced = false;
    heartbeat();
}

static void sub_down(void *ud, const char *why)
{
    log_kernel("cluster", XMPPD_LOG_ERROR, "lost the Redis subscription (%s)", why);
}

/* ---- status ---------------------------------------------------------------------- */

static void add_domain(const char *domain, void *ud)
{
    json_array_append_new(ud, json_string(domain));
}

/* The components attached to node (XEP-0114), sorted so the output of
 * two calls compares. */
static json_t *components_of(const char *node)
{
    json_t *a = json_array();
    if (!a)
        return NULL;
    place_components_of(node, add_domain, a);
    size_t n = json_array_size(a);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(json_string_value(json_array_get(a, j - 1)),
                                           json_string_value(json_array_get(a, j))) > 0; j--) {
            json_t *t = json_incref(json_array_get(a, j));
            json_array_set(a, j, json_array_get(a, j - 1));
            json_array_set_new(a, j - 1, t);
        }
    return a;
}

static void cmd_status(xmppd_ctl_request *req, const json_t *args, void *ud)
{
    json_t *nodes = json_array();
    json_array_append_new(nodes, json_pack("{s:s, s:s, s:I, s:b, s:o*}", "node",
                                           g_cluster.conf->node, "version",
                                           xmppd_server_version(), "sessions",
                                           (json_int_t)sm_count(NULL), "self", 1, "components",
                                           components_of(g_cluster.conf->node)));
    for (size_t i = 0; i < g_cluster.n_peers; i++) {
        const peer *p = &g_cluster.peers[i];
        json_array_append_new(nodes, json_pack("{s:s, s:s?, s:I, s:I, s:b, s:o*}", "node", p->name,
                                               "version", p->version, "sessions",
                                               (json_int_t)p->sessions, "registered",
                                               (json_int_t)registry_count(p->name), "self", 0,
                                               "components", components_of(p->name)));
    }
    json_t *r = json_pack("{s:s, s:s, s:b, s:o}", "cluster", g_cluster.conf->name, "redis",
                          redis_conn_up(g_cluster.cmd) ? redis_conn_where(g_cluster.cmd) : "down",
                          "redis_up", redis_conn_up(g_cluster.cmd), "nodes", nodes);
    xmppd_ctl_reply(req, r);
}

/* ---- start / stop ------------------------------------------------------------------ */

static void on_check_timeout(evutil_socket_t fd, short what, void *ud)
{
    *(bool *)ud = true;
}

/* The hosts check, before any port opens: for twice the Redis timeout at
 * most (Redis away at start does not stop the node: it checks when Redis
 * answers, and joins then). */
static int await_check(char *err, size_t errlen)
{
    bool late = false;
    struct event *t = evtimer_new(loop_base(), on_check_timeout, &late);
    uint64_t ms = 2 * g_cluster.srv.timeout_ms;
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    g_cluster.starting = true;
    if (t && evtimer_add(t, &tv) == 0)
        while (!late && !g_cluster.checked && !g_cluster.refused)
            event_base_loop(loop_base(), EVLOOP_ONCE);
    if (t)
        event_free(t);
    g_cluster.starting = false;
    if (g_cluster.refused) {
        snprintf(err, errlen, "%s", g_cluster.refused);
        cluster_stop();
        return -1;
    }
    if (!g_cluster.checked)
        log_kernel("cluster", XMPPD_LOG_WARN, "Redis did not answer at start: this node joins "
                   "the cluster once it does (and its hosts match the other nodes')");
    return 0;
}

int cluster_start(const xmppd_config *cfg, char *err, size_t errlen)
{
    if (!cfg->cluster.enabled)
        return 0;
    cluster_conf *cc = &g_cluster.copy;
    *cc = cfg->cluster;
    cc->redis = NULL; /* parsed into g_cluster.srv below */
    cc->ca_file = cc->cert = cc->key = NULL;
    cc->name = strdup(cfg->cluster.name);
    cc->node = strdup(cfg->cluster.node);
    cc->secret = strdup(cfg->cluster.secret);
    g_cluster.conf = cc;
    if (!cc->name || !cc->node || !cc->secret) {
        snprintf(err, errlen, "cluster: out of memory");
        cluster_stop();
        return -1;
    }
    if (redis_servers_init(&g_cluster.srv, &cfg->cluster, err, errlen) < 0) {
        cluster_stop();
        return -1;
    }
    const char *node = cc->node;
    g_cluster.k_nodes = cluster_key("nodes", "");
    g_cluster.k_node = cluster_key("node:", node);
    g_cluster.k_sessions = cluster_key("sessions:", node);
    g_cluster.ch_reg = cluster_key("reg", "");
    g_cluster.client_name = cluster_key(node, "");
    g_cluster.hosts = cluster_hosts_of(cfg);
    g_cluster.srv.client_name = g_cluster.client_name;
    registry_start();
    cstate_start();
    place_start();
    static const redis_conn_ops cmd_ops = { .up = cmd_up, .down = cmd_down };
    static const redis_conn_ops sub_ops = { .up = sub_up, .down = sub_down,
                                            .message = link_on_message };
    struct timeval tv = { cfg->cluster.heartbeat / 1000, (cfg->cluster.heartbeat % 1000) * 1000 };
    if (!g_cluster.k_nodes || !g_cluster.k_node || !g_cluster.k_sessions || !g_cluster.ch_reg ||
        !g_cluster.client_name || !g_cluster.hosts ||
        !(g_cluster.cmd = redis_conn_new(&g_cluster.srv, "commands", &cmd_ops, NULL)) ||
        !(g_cluster.sub = redis_conn_new(&g_cluster.srv, "subscriber", &sub_ops, NULL)) ||
        redis_subscribe(g_cluster.sub, g_cluster.ch_reg) < 0 ||
        queue_start() < 0 || smrep_start() < 0 ||
        !(g_cluster.beat = event_new(loop_base(), -1, EV_PERSIST, on_beat, NULL)) ||
        event_add(g_cluster.beat, &tv) < 0 ||
        xmppd_ctl_command(NULL, "cluster-status", NULL, "the cluster's live nodes", cmd_status,
                          NULL) < 0) {
        snprintf(err, errlen, "cluster: out of memory");
        cluster_stop();
        return -1;
    }
    log_kernel("cluster", XMPPD_LOG_INFO, "node %s of cluster %s: connecting to Redis", node,
               cc->name);
    return await_check(err, errlen);
}

static int g_leaving;

static void on_left(redisReply *r, void *ud)
{
    g_leaving--;
}

static void on_leave_timeout(evutil_socket_t fd, short what, void *ud)
{
    g_leaving = 0;
}

void cluster_stop(void)
{
    if (!g_cluster.conf)
        return;
    if (redis_conn_up(g_cluster.cmd)) {
        /* Leave at once rather than after node_timeout: the others drop our
         * sessions on "bye". The loop runs for at most a second for it. */
        g_leaving = 4;
        redis_commandf(g_cluster.cmd, on_left, NULL, "DEL %s", g_cluster.k_sessions);
        redis_commandf(g_cluster.cmd, on_left, NULL, "DEL %s", g_cluster.k_node);
        redis_commandf(g_cluster.cmd, on_left, NULL, "SREM %s %s", g_cluster.k_nodes,
                       g_cluster.conf->node);
        if (link_publish(g_cluster.ch_reg, "bye", "", NULL, 0) == 0)
            redis_commandf(g_cluster.cmd, on_left, NULL, "PING");
        else
            g_leaving--;
        struct event *t = evtimer_new(loop_base(), on_leave_timeout, NULL);
        struct timeval tv = { 1, 0 };
        if (t && evtimer_add(t, &tv) == 0)
            while (g_leaving > 0)
                event_base_loop(loop_base(), EVLOOP_ONCE);
        if (t)
            event_free(t);
    }
    if (g_cluster.beat)
        event_free(g_cluster.beat);
    smrep_stop();
    queue_stop();
    cstate_stop();
    redis_conn_free(g_cluster.sub);
    redis_conn_free(g_cluster.cmd);
    place_stop();
    registry_stop();
    for (size_t i = 0; i < g_cluster.n_peers; i++) {
        free(g_cluster.peers[i].name);
        free(g_cluster.peers[i].version);
        free(g_cluster.peers[i].hosts);
    }
    free(g_cluster.peers);
    free(g_cluster.k_nodes);
    free(g_cluster.k_node);
    free(g_cluster.k_sessions);
    free(g_cluster.ch_reg);
    free(g_cluster.client_name);
    free(g_cluster.hosts);
    free(g_cluster.refused);
    redis_servers_free(&g_cluster.srv);
    free((char *)g_cluster.copy.name);
    free((char *)g_cluster.copy.node);
    if (g_cluster.copy.secret)
        xmppd_wipe((char *)g_cluster.copy.secret, strlen(g_cluster.copy.secret));
    free((char *)g_cluster.copy.secret);
    memset(&g_cluster, 0, sizeof(g_cluster));
}
