/* Domains served by modules (xmppd_domain_serve): a pubsub, MUC or upload
 * service at an address such as "pubsub.example.org" that is not a host.
 *
 * One server per domain. A reload loads the new instance of a module
 * before it unloads the old one, so the newer instance of the same module
 * may serve the same domain: it shadows the old registration, which comes
 * back if the new instance is released first (its load() failed), and is
 * dropped when the old one unloads (as published APIs in provide.c). */
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "net.h"
#include "strmap.h"

typedef struct served {
    xmppd_module *m;
    xmppd_handler fn;
    void *ud;
    char *domain;             /* nameprepped */
    struct served *shadowed;  /* an older instance's registration, same domain */
} served;

static strmap *g_served; /* domain -> served (the newest registration) */

static void domain_release(void *p)
{
    served *s = p;
    served *head = strmap_get(g_served, s->domain);
    if (head == s) {
        if (s->shadowed)
            strmap_put(g_served, s->domain, s->shadowed); /* replaces: cannot fail */
        else
            strmap_del(g_served, s->domain);
    } else {
        for (served *x = head; x; x = x->shadowed)
            if (x->shadowed == s) {
                x->shadowed = s->shadowed;
                break;
            }
    }
    free(s->domain);
    free(s);
}

/* Is m a newer instance of the module that registered old? */
static bool replaces(const xmppd_module *m, const served *old)
{
    return old->m != m && old->m->host == m->host && strcmp(old->m->def->name, m->def->name) == 0;
}

static bool is_component(const char *domain)
{
    const xmppd_config *cfg = g_server.cfg;
    for (size_t i = 0; cfg && i < cfg->n_components; i++)
        if (strcmp(cfg->components[i].domain, domain) == 0)
            return true;
    return false;
}

int xmppd_domain_serve(xmppd_module *m, const char *domain, xmppd_handler fn, void *ud)
{
    if (!m || !domain || !fn || !m->loaded)
        return -1;
    char *d = xmppd_nameprep(domain);
    if (!d || !*d || strchr(d, '@') || strchr(d, '/')) {
        xmppd_log(m, XMPPD_LOG_ERROR, "cannot serve \"%s\": not a domain", domain);
        free(d);
        return -1;
    }
    if (xmppd_host_find(d) || is_component(d)) {
        xmppd_log(m, XMPPD_LOG_ERROR, "cannot serve %s: it is a host or a component", d);
        free(d);
        return -1;
    }
    if (!g_served && !(g_served = strmap_new())) {
        free(d);
        return -1;
    }
    served *old = strmap_get(g_served, d);
    if (old && !replaces(m, old)) {
        xmppd_log(m, XMPPD_LOG_ERROR, "%s is already served by %s", d, old->m->tag);
        free(d);
        return -1;
    }
    served *s = calloc(1, sizeof(*s));
    if (!s) {
        free(d);
        return -1;
    }
    *s = (served){ .m = m, .fn = fn, .ud = ud, .domain = d, .shadowed = old };
    if (strmap_put(g_served, d, s) < 0) {
        free(d);
        free(s);
        return -1;
    }
    if (!module_cleanup_add(m, domain_release, s)) {
        domain_release(s);
        return -1;
    }
    return 0;
}

const char *domains_served(const char *domain)
{
    served *s = g_served ? strmap_get(g_served, domain) : NULL;
    return s && s->m->loaded ? s->domain : NULL;
}

int domains_route(xmppd_event *ev)
{
    served *s = g_served ? strmap_get(g_served, ev->to->domain) : NULL;
    if (!s || !s->m->loaded)
        return DOMAIN_NONE;
    xmppd_module *m = s->m;
    /* The handler may unload its own module (a reload from a command): the
     * struct lives until this call is over. */
    module_ref(m);
    ev->host = m->host;
    int rc = s->fn(ev, s->ud);
    if (rc == XMPPD_FAIL)
        xmppd_log(m, XMPPD_LOG_ERROR, "handler of %s failed on a <%s/>", ev->to->domain,
                  xmppd_stanza_name(ev->stanza));
    module_unref(m);
    return rc == XMPPD_HANDLED ? DOMAIN_DONE : rc == XMPPD_FAIL ? DOMAIN_FAILED : DOMAIN_PASSED;
}

void domains_free(void)
{
    strmap_free(g_served);
    g_served = NULL;
}
