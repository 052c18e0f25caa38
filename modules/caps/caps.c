/* XEP-0115 Entity Capabilities.
 *
 * The server's side: the verification string of the host's disco#info
 * (as mod_disco serves it, forms included) is advertised in the stream
 * features of authenticated streams, and disco#info to node#ver answers
 * with that same info.
 * The clients' side: the <c/> of each session's broadcast presence is kept
 * per session, the disco#info behind each string is asked for once and
 * cached (caps_cache.c), and both are offered to other modules (PEP's
 * +notify filters) through the API "caps" (caps_api.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caps.h"
#include "caps_api.h"

typedef struct caps_conf {
    const char *node;
    long long cache_size;
    long long max_queries;
    long long query_timeout; /* ms */
} caps_conf;

static const xmppd_option caps_options[] = {
    { "node", XMPPD_OPT_STRING, XMPPD_OFF(caps_conf, node), "https://xmppd.example/caps", 0, 0,
      NULL, 0, "the node URI advertised with the server's capabilities" },
    { "cache_size", XMPPD_OPT_INT, XMPPD_OFF(caps_conf, cache_size), "1000", 10, 1000000, NULL, 0,
      "verification strings whose disco#info is kept (the oldest answered one goes first)" },
    { "max_queries", XMPPD_OPT_INT, XMPPD_OFF(caps_conf, max_queries), "100", 1, 10000, NULL, 0,
      "disco#info queries to entities in flight at once (beyond: their features count as unknown)" },
    { "query_timeout", XMPPD_OPT_DURATION, XMPPD_OFF(caps_conf, query_timeout), "30s", 1000,
      600000, NULL, 0, "how long an entity has to answer the disco#info query for its caps" },
    { NULL }
};

/* mod_disco's API "disco", version 1 (see modules/disco/README.md). */
typedef struct caps_disco_api {
    uint32_t version, size;
    xmppd_stanza *(*host_info)(const struct caps_disco_api *api);
} caps_disco_api;

/* One session's announced caps: in its slot and the instance's list (unload
 * frees what "session-closed" did not); holds a session reference. */
typedef struct caps_sess {
    xmppd_session *s;
    char *node, *ver, *hash;
    struct caps_sess *prev, *next;
} caps_sess;

/* Module data; api first, so the API pointer is the state. */
typedef struct caps_state {
    caps_api api;
    xmppd_module *m;
    caps_sess *head;
    caps_cache *cache;
} caps_state;

/* The host's disco#info <query/> from mod_disco; NULL when not loaded. */
static xmppd_stanza *caps_host_info(caps_state *st)
{
    const caps_disco_api *d = xmppd_use(xmppd_module_host(st->m), "disco");
    if (!d || d->version < 1 || d->size < sizeof(*d) || !d->host_info)
        return NULL;
    return d->host_info(d);
}

static char *caps_server_ver(const caps_api *api)
{
    caps_state *st = (caps_state *)api;
    xmppd_stanza *q = caps_host_info(st);
    char *s = q ? caps_string(q) : NULL;
    char *ver = s ? caps_digest(s, "sha-1") : NULL;
    free(s);
    xmppd_stanza_unref(q);
    return ver;
}

/* ---- the server's caps ------------------------------------------------------ */

static int caps_on_features(xmppd_event *ev, void *ud)
{
    caps_state *st = ud;
    const caps_conf *c = xmppd_module_conf(st->m);
    if (!ev->session || !xmppd_session_authenticated(ev->session))
        return XMPPD_PASS;
    char *ver = caps_server_ver(&st->api);
    xmppd_stanza *el = ver ? xmppd_stanza_tag(ev->stanza, "c", CAPS_NS) : NULL;
    if (el) {
        xmppd_stanza_set_attr(el, "hash", "sha-1");
        xmppd_stanza_set_attr(el, "node", c->node);
        xmppd_stanza_set_attr(el, "ver", ver);
    }
    free(ver);
    return XMPPD_PASS;
}

/* disco#info to node#ver: the host's info, node attribute kept. */
static int caps_on_disco_info(xmppd_event *ev, void *ud)
{
    caps_state *st = ud;
    const caps_conf *c = xmppd_module_conf(st->m);
    const char *node = xmppd_stanza_attr(ev->stanza, "node");
    size_t nl = strlen(c->node);
    if (!node || (ev->to && ev->to->node) || strncmp(node, c->node, nl) != 0 || node[nl] != '#' ||
        xmppd_stanza_first(ev->stanza))
        return XMPPD_PASS;
    xmppd_stanza *q = caps_host_info(st);
    char *s = q ? caps_string(q) : NULL;
    char *ver = s ? caps_digest(s, "sha-1") : NULL;
    if (ver && strcmp(node + nl + 1, ver) == 0) {
        for (xmppd_stanza *child = xmppd_stanza_first(q); child; child = xmppd_stanza_next(child))
            xmppd_stanza_add(ev->stanza, xmppd_stanza_copy(child));
    }
    free(ver);
    free(s);
    xmppd_stanza_unref(q);
    return XMPPD_PASS;
}

/* ---- clients' caps ------------------------------------------------------------ */

static void caps_sess_clear(caps_sess *cs)
{
    free(cs->node);
    free(cs->ver);
    free(cs->hash);
    cs->node = cs->ver = cs->hash = NULL;
}

static void caps_sess_free(caps_state *st, caps_sess *cs)
{
    if (cs->prev)
        cs->prev->next = cs->next;
    else
        st->head = cs->next;
    if (cs->next)
        cs->next->prev = cs->prev;
    xmppd_session_set(cs->s, st->m, NULL);
    xmppd_session_unref(cs->s);
    caps_sess_clear(cs);
    free(cs);
}

/* The session's entry, created when missing; NULL on OOM. */
static caps_sess *caps_sess_get(caps_state *st, xmppd_session *s)
{
    caps_sess *cs = xmppd_session_get(s, st->m);
    if (cs || !(cs = calloc(1, sizeof(*cs))))
        return cs;
    cs->s = xmppd_session_ref(s);
    cs->next = st->head;
    if (st->head)
        st->head->prev = cs;
    st->head = cs;
    xmppd_session_set(s, st->m, cs);
    return cs;
}

static int caps_on_presence(xmppd_event *ev, void *ud)
{
    caps_state *st = ud;
    if (!ev->session || xmppd_stanza_attr(ev->stanza, "type"))
        return XMPPD_PASS; /* unavailable: keep what the client had */
    xmppd_stanza *c = xmppd_stanza_child(ev->stanza, "c", CAPS_NS);
    const char *node = c ? xmppd_stanza_attr(c, "node") : NULL;
    const char *ver = c ? xmppd_stanza_attr(c, "ver") : NULL;
    caps_sess *cs = node && ver ? caps_sess_get(st, ev->session) : xmppd_session_get(ev->session, st->m);
    if (!cs)
        return XMPPD_PASS;
    if (cs->ver && ver && strcmp(cs->ver, ver) == 0 && strcmp(cs->node, node) == 0)
        return XMPPD_PASS; /* unchanged, the usual case */
    caps_sess_clear(cs);
    if (node && ver) {
        const char *hash = xmppd_stanza_attr(c, "hash");
        cs->node = strdup(node);
        cs->ver = strdup(ver);
        cs->hash = strdup(hash ? hash : ""); /* legacy caps have no hash */
        if (!cs->node || !cs->ver || !cs->hash)
            caps_sess_clear(cs);
    }
    const xmppd_jid *jid = xmppd_session_jid(ev->session);
    if (cs->ver && jid) /* ask now: PEP wants the answer before the first notification */
        caps_cache_has(st->cache, jid->full, cs->node, cs->ver, cs->hash, NULL, true);
    return XMPPD_PASS;
}

static int caps_on_closed(xmppd_event *ev, void *ud)
{
    caps_state *st = ud;
    caps_sess *cs = ev->session ? xmppd_session_get(ev->session, st->m) : NULL;
    if (cs)
        caps_sess_free(st, cs);
    return XMPPD_PASS;
}

static bool caps_session_caps(const caps_api *api, const xmppd_session *s, const char **node_r,
                              const char **ver_r, const char **hash_r)
{
    const caps_state *st = (const caps_state *)api;
    const caps_sess *cs = s ? xmppd_session_get(s, st->m) : NULL;
    if (!cs || !cs->ver)
        return false;
    if (node_r)
        *node_r = cs->node;
    if (ver_r)
        *ver_r = cs->ver;
    if (hash_r)
        *hash_r = cs->hash;
    return true;
}

static int caps_session_has_feature(const caps_api *api, const xmppd_session *s,
                                    const char *feature)
{
    const caps_state *st = (const caps_state *)api;
    const caps_sess *cs = s ? xmppd_session_get(s, st->m) : NULL;
    const xmppd_jid *jid = s ? xmppd_session_jid(s) : NULL;
    if (!cs || !cs->ver || !jid)
        return CAPS_NO;
    return caps_cache_has(st->cache, jid->full, cs->node, cs->ver, cs->hash, feature, true);
}

static int caps_jid_has_feature(const caps_api *api, const char *jid, const char *node,
                                const char *ver, const char *hash, const char *feature)
{
    const caps_state *st = (const caps_state *)api;
    xmppd_jid *j = jid && node && ver ? xmppd_jid_parse(jid) : NULL;
    int rc = j && j->resource ? caps_cache_has(st->cache, j->full, node, ver, hash ? hash : "",
                                               feature, true)
                              : CAPS_NO;
    xmppd_jid_free(j);
    return rc;
}

/* ---- module -------------------------------------------------------------------- */

static void caps_unload(xmppd_module *m)
{
    caps_state *st = xmppd_module_data(m);
    if (!st)
        return;
    while (st->head)
        caps_sess_free(st, st->head);
    caps_cache_free(st->cache);
    free(st);
    xmppd_module_set_data(m, NULL);
}

static int caps_load(xmppd_module *m, const void *conf)
{
    const caps_conf *c = conf;
    if (!c->node || !*c->node) {
        xmppd_log(m, XMPPD_LOG_ERROR, "option node: a URI is required");
        return -1;
    }
    caps_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -1;
    st->api = (caps_api){ CAPS_API_VERSION, sizeof(caps_api), caps_session_caps, caps_server_ver,
                          caps_session_has_feature, caps_jid_has_feature };
    st->m = m;
    xmppd_module_set_data(m, st);
    st->cache = caps_cache_new(m, (size_t)c->cache_size, (size_t)c->max_queries, c->query_timeout);
    if (!st->cache ||
        xmppd_hook(m, "stream-features", caps_on_features, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_event_declare(m, CAPS_EVENT_RESOLVED, XMPPD_EVENT_ALL,
                            "from: the entity's full JID; session: that local session, or NULL "
                            "for a remote entity: its caps (caps_api.h) are known now") < 0 ||
        xmppd_hook(m, "disco-info", caps_on_disco_info, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "presence/broadcast", caps_on_presence, XMPPD_PRIO_DEFAULT + 10, st) < 0 ||
        xmppd_hook(m, "session-closed", caps_on_closed, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_disco_feature(m, CAPS_NS) < 0 || xmppd_provide(m, "caps", &st->api) < 0) {
        caps_unload(m);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(caps,
    .version = "1.0",
    .summary = "XEP-0115 entity capabilities: the server's in stream features, clients' cached",
    .depends = (const char *const[]){ "disco", NULL },
    .specs = (const char *const[]){ "XEP-0115", NULL },
    .options = caps_options,
    .conf_size = sizeof(caps_conf),
    .load = caps_load,
    .unload = caps_unload);
