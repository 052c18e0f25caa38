/* The directory of placed JIDs (api/xmppd/cluster.h, ABI 2.8): what this
 * node lists as held here, and the SDK calls. The cluster layer writes the
 * entries to Redis and reads every node's (place_ops dir_publish and
 * dir_read); without it the entries stay here and nothing is read.
 *
 * Ownership: each entry (bare -> value) belongs to the module that listed
 * it, and goes when that module unloads: one cleanup per module that has
 * listed something (owner below). */
#include <stdlib.h>
#include <string.h>

#include "session/place.h"
#include "util/strmap.h"
#include "xmppd/cluster.h"

#define VALUE_MAX 4096

typedef struct entry {
    xmppd_module *m;
    char *value;
} entry;

typedef struct owner {
    xmppd_module *m;
    struct owner *next;
} owner;

static strmap *g_dir;   /* bare -> entry */
static owner *g_owners; /* modules with a cleanup registered */

static void entry_free(entry *e)
{
    free(e->value);
    free(e);
}

typedef struct drop_ctx {
    const xmppd_module *m;
    char **keys;
    size_t n;
} drop_ctx;

static int collect_of(const char *key, void *value, void *ud)
{
    drop_ctx *c = ud;
    if (((entry *)value)->m == c->m && (c->keys[c->n] = strdup(key)))
        c->n++;
    return 0;
}

/* m unloads: its entries go (here and in Redis). */
static void owner_gone(void *p)
{
    owner *o = p;
    for (owner **pp = &g_owners; *pp; pp = &(*pp)->next)
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    size_t n = g_dir ? strmap_count(g_dir) : 0;
    drop_ctx c = { .m = o->m, .keys = n ? calloc(n, sizeof(char *)) : NULL };
    if (c.keys)
        strmap_foreach(g_dir, collect_of, &c);
    for (size_t i = 0; i < c.n; i++) {
        entry_free(strmap_del(g_dir, c.keys[i]));
        const place_ops *ops = place_get_ops();
        if (ops && ops->dir_publish)
            ops->dir_publish(c.keys[i], NULL);
        free(c.keys[i]);
    }
    free(c.keys);
    free(o);
}

static bool owner_ensure(xmppd_module *m)
{
    for (const owner *o = g_owners; o; o = o->next)
        if (o->m == m)
            return true;
    owner *o = calloc(1, sizeof(*o));
    if (!o)
        return false;
    o->m = m;
    if (!module_cleanup_add(m, owner_gone, o)) {
        free(o);
        return false;
    }
    o->next = g_owners;
    g_owners = o;
    return true;
}

XMPPD_EXPORT int xmppd_cluster_publish(xmppd_module *m, const char *bare, const char *value)
{
    const char *at = bare ? strchr(bare, '@') : NULL;
    if (!m || !m->loaded || !at || at == bare || strchr(at, '/') || !place_placed_by(at + 1, m) ||
        (value && strlen(value) > VALUE_MAX))
        return -1;
    if (!g_dir && !(g_dir = strmap_new()))
        return -1;
    entry *old = strmap_get(g_dir, bare);
    if (!value) {
        if (!old)
            return 0;
        entry_free(strmap_del(g_dir, bare));
    } else {
        entry *e = calloc(1, sizeof(*e));
        if (!e || !(e->value = strdup(value)) || !owner_ensure(m) || strmap_put(g_dir, bare, e) < 0) {
            if (e)
                free(e->value);
            free(e);
            return -1;
        }
        if (old)
            entry_free(old);
        e->m = m;
    }
    const place_ops *ops = place_get_ops();
    if (ops && ops->dir_publish)
        ops->dir_publish(bare, value);
    return 0;
}

typedef struct each_ctx {
    void (*fn)(const char *bare, const char *value, void *ud);
    void *ud;
} each_ctx;

static int each_entry(const char *key, void *value, void *ud)
{
    each_ctx *c = ud;
    c->fn(key, ((entry *)value)->value, c->ud);
    return 0;
}

void place_dir_foreach(void (*fn)(const char *bare, const char *value, void *ud), void *ud)
{
    each_ctx c = { fn, ud };
    if (g_dir)
        strmap_foreach(g_dir, each_entry, &c);
}

/* ---- reading ------------------------------------------------------------------------ */

typedef struct dir_req {
    xmppd_call *call;
    xmppd_cluster_dir_cb cb;
    void *ud;
} dir_req;

static void dir_cancelled(void *p)
{
    dir_req *r = p;
    r->cb(XMPPD_DIR_CANCELLED, 0, NULL, NULL, r->ud); /* r goes when Redis answers */
}

static void dir_done(void *p, bool ok, size_t n, const char *const *jids,
                     const char *const *values)
{
    dir_req *r = p;
    if (xmppd_call_finish(r->call))
        r->cb(ok ? XMPPD_DIR_OK : XMPPD_DIR_ERROR, ok ? n : 0, jids, values, r->ud);
    free(r);
}

XMPPD_EXPORT int xmppd_cluster_directory(xmppd_module *m, const char *domain,
                                         xmppd_cluster_dir_cb cb, void *ud)
{
    const place_ops *ops = place_get_ops();
    if (!m || !cb || !domain || !ops || !ops->dir_read || !place_placed_by(domain, m))
        return -1;
    dir_req *r = calloc(1, sizeof(*r));
    if (!r || !(r->call = xmppd_call_new(m, dir_cancelled, r))) {
        free(r);
        return -1;
    }
    r->cb = cb;
    r->ud = ud;
    if (ops->dir_read(domain, dir_done, r) < 0) {
        xmppd_call_finish(r->call);
        free(r);
        return -1;
    }
    return 0;
}
