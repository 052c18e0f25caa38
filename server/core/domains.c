/* Domains served by modules (xmppd_domain_serve): a room service on
 * conference.example.org, a pubsub service, an upload service. They are
 * not hosts (no accounts, no sessions, no hooks of their own): the router
 * hands every stanza for such a domain to the one handler that serves it,
 * and s2s treats the domain as local.
 *
 * One server per domain. A reload loads the new instance of a module before
 * it unloads the old one, so a registration by a newer instance of the same
 * module (same name, same host) is accepted: it shadows the old one, which
 * comes back if the new instance is released first (its load() failed).
 * The same scheme as published APIs (provide.c). */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "util/strmap.h"

typedef struct served {
    xmppd_module *m;
    xmppd_handler fn;
    void *ud;
    char *name;             /* nameprepped; the map key */
    struct served *shadowed; /* older instance's registration, same domain */
} served;

static strmap *g_domains; /* name -> served (the newest registration) */

static void withdraw(void *p)
{
    served *s = p;
    served *head = g_domains ? strmap_get(g_domains, s->name) : NULL;
    if (head == s) {
        if (s->shadowed)
            strmap_put(g_domains, s->name, s->shadowed); /* replaces: cannot fail */
        else
            strmap_del(g_domains, s->name);
    } else {
        for (served *x = head; x; x = x->shadowed)
            if (x->shadowed == s) {
                x->shadowed = s->shadowed;
                break;
            }
    }
    if (g_domains && strmap_count(g_domains) == 0) {
        strmap_free(g_domains);
        g_domains = NULL;
    }
    free(s->name);
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

XMPPD_EXPORT int xmppd_domain_serve(xmppd_module *m, const char *domain, xmppd_handler fn, void *ud)
{
    if (!m || !m->loaded || !domain || !fn)
        return -1;
    char *name = xmppd_nameprep(domain);
    const char *clash = !name ? "is not a valid domain"
                        : xmppd_host_find(name) ? "is a host"
                        : is_component(name) ? "is a configured component"
                        : NULL;
    served *old = !clash && g_domains ? strmap_get(g_domains, name) : NULL;
    if (old && !replaces(m, old))
        clash = "is served by another module";
    if (clash) {
        xmppd_log(m, XMPPD_LOG_ERROR, "cannot serve domain \"%s\": it %s%s%s", domain, clash,
                  old ? ": " : "", old ? old->m->tag : "");
        free(name);
        return -1;
    }
    served *s = calloc(1, sizeof(*s));
    if (!s || (!g_domains && !(g_domains = strmap_new()))) {
        free(s);
        free(name);
        return -1;
    }
    *s = (served){ .m = m, .fn = fn, .ud = ud, .name = name, .shadowed = old };
    if (strmap_put(g_domains, name, s) < 0) {
        free(name);
        free(s);
        return -1;
    }
    if (!module_cleanup_add(m, withdraw, s)) {
        withdraw(s);
        return -1;
    }
    return 0;
}

const char *domains_name(const char *domain)
{
    served *s = g_domains && domain ? strmap_get(g_domains, domain) : NULL;
    return s && s->m->loaded ? s->name : NULL;
}

int domains_dispatch(xmppd_event *ev)
{
    served *s = g_domains ? strmap_get(g_domains, ev->to->domain) : NULL;
    if (!s || !s->m->loaded)
        return DOMAINS_NONE;
    ev->host = s->m->host;
    return s->fn(ev, s->ud);
}
