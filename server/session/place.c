/* Placement across the nodes of a cluster (place.h): the placed domains
 * modules declare (xmppd_cluster_place), the components attached here,
 * and the cluster's side of both. */
#include <stdlib.h>
#include <string.h>

#include "session/place.h"
#include "util/strmap.h"
#include "xmppd/cluster.h"

typedef struct placed {
    xmppd_module *m;
    char *domain;              /* nameprepped */
    void (*moved)(void *ud);
    void *ud;
    bool whole;                /* the domain itself too (a service) */
    struct placed *next;
} placed;

static placed *g_placed;
static const place_ops *g_ops;
static strmap *g_attached;     /* domain -> (void *)1 or (void *)2 (subdomains) */

void place_set_ops(const place_ops *ops)
{
    g_ops = ops;
}

const place_ops *place_get_ops(void)
{
    return g_ops;
}

/* ---- placed domains ------------------------------------------------------------ */

static void withdraw(void *p)
{
    for (placed **pp = &g_placed; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = ((placed *)p)->next;
            break;
        }
    free(((placed *)p)->domain);
    free(p);
}

static const placed *placed_find(const char *domain)
{
    for (const placed *p = g_placed; p; p = p->next)
        if (p->m->loaded && strcmp(p->domain, domain) == 0)
            return p;
    return NULL;
}

static int place(xmppd_module *m, const char *domain, void (*moved)(void *ud), void *ud,
                 bool whole)
{
    if (!m || !m->loaded || !domain || !moved)
        return -1;
    char *name = xmppd_nameprep(domain);
    if (!name || !domains_name(name)) {
        xmppd_log(m, XMPPD_LOG_ERROR, "cannot place domain \"%s\": the module does not serve it",
                  domain);
        free(name);
        return -1;
    }
    placed *p = calloc(1, sizeof(*p));
    if (!p) {
        free(name);
        return -1;
    }
    *p = (placed){ .m = m, .domain = name, .moved = moved, .ud = ud, .whole = whole,
                   .next = g_placed };
    g_placed = p;
    if (!module_cleanup_add(m, withdraw, p)) {
        withdraw(p);
        return -1;
    }
    return 0;
}

XMPPD_EXPORT int xmppd_cluster_place(xmppd_module *m, const char *domain, void (*moved)(void *ud),
                                     void *ud)
{
    return place(m, domain, moved, ud, false);
}

XMPPD_EXPORT int xmppd_cluster_place_service(xmppd_module *m, const char *domain,
                                             void (*moved)(void *ud), void *ud)
{
    return place(m, domain, moved, ud, true);
}

bool place_placed_by(const char *domain, const xmppd_module *m)
{
    const placed *p = placed_find(domain);
    return p && p->m == m;
}

XMPPD_EXPORT bool xmppd_cluster_mine(const char *bare)
{
    const char *at = bare ? strchr(bare, '@') : NULL;
    const placed *p = g_ops && bare ? placed_find(at ? at + 1 : bare) : NULL;
    if (!p || (!at && !p->whole))
        return true;
    return g_ops->mine(p->whole ? p->domain : bare);
}

bool place_route(xmppd_event *ev)
{
    const placed *p = g_ops ? placed_find(ev->to->domain) : NULL;
    /* a service placed whole is keyed by its domain, whatever the JID */
    return p && (ev->to->node || p->whole) && g_ops->route(ev, p->whole ? p->domain : ev->to->bare);
}

void place_moved(void)
{
    /* a callback may not unload its module, but copy the list anyway: it
     * is short */
    size_t n = 0;
    for (const placed *p = g_placed; p; p = p->next)
        n++;
    placed *v = n ? calloc(n, sizeof(*v)) : NULL;
    size_t k = 0;
    for (const placed *p = g_placed; v && p; p = p->next)
        v[k++] = *p;
    for (size_t i = 0; i < k; i++)
        if (v[i].m->loaded)
            v[i].moved(v[i].ud);
    free(v);
}

/* ---- components ------------------------------------------------------------------- */

void place_component_attached(const char *domain, bool subdomains)
{
    if (!g_attached && !(g_attached = strmap_new()))
        return;
    strmap_put(g_attached, domain, (void *)(uintptr_t)(subdomains ? 2 : 1));
    if (g_ops)
        g_ops->attached(domain, subdomains);
}

void place_component_detached(const char *domain)
{
    if (g_attached)
        strmap_del(g_attached, domain);
    if (g_attached && strmap_count(g_attached) == 0) {
        strmap_free(g_attached);
        g_attached = NULL;
    }
    if (g_ops)
        g_ops->detached(domain);
}

bool place_component_elsewhere(const char *domain)
{
    return g_ops && g_ops->component_elsewhere(domain);
}

typedef struct each_ctx {
    void (*fn)(const char *domain, bool subdomains, void *ud);
    void *ud;
} each_ctx;

static int each_attached(const char *key, void *value, void *ud)
{
    each_ctx *c = ud;
    c->fn(key, (uintptr_t)value == 2, c->ud);
    return 0;
}

void place_components_foreach(void (*fn)(const char *domain, bool subdomains, void *ud), void *ud)
{
    each_ctx c = { fn, ud };
    if (g_attached)
        strmap_foreach(g_attached, each_attached, &c);
}

/* Attached here, for to's domain or (with subdomains) a parent of it: the
 * component route writes it to the stream. */
static bool attached_here(const char *domain)
{
    for (const char *d = domain; g_attached && d && *d;) {
        uintptr_t v = (uintptr_t)strmap_get(g_attached, d);
        if (v == 1 ? d == domain : v == 2)
            return true;
        d = strchr(d, '.');
        if (d)
            d++;
    }
    return false;
}

bool place_component(xmppd_event *ev)
{
    return g_ops && !attached_here(ev->to->domain) && g_ops->component(ev);
}
