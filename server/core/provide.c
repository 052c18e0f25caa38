/* Published module APIs (xmppd_provide / xmppd_use).
 *
 * One publisher per (host, name). A reload loads the new instance of a
 * module before it unloads the old one, so a publication by a newer
 * instance of the same module (same name, same host) is accepted: it
 * shadows the old one, which comes back if the new instance is released
 * first (its load() failed), and is dropped when the old one unloads. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "util/strmap.h"

struct published {
    xmppd_module *m;
    const void *vtable;
    strmap *in;                  /* the map it is registered in */
    char *name;
    struct published *shadowed;  /* older instance's publication, same name */
};

static strmap *global_apis;

static void withdraw(void *p)
{
    struct published *pub = p;
    struct published *head = strmap_get(pub->in, pub->name);
    if (head == pub) {
        if (pub->shadowed)
            strmap_put(pub->in, pub->name, pub->shadowed); /* replaces: cannot fail */
        else
            strmap_del(pub->in, pub->name);
    } else {
        for (struct published *x = head; x; x = x->shadowed)
            if (x->shadowed == pub) {
                x->shadowed = pub->shadowed;
                break;
            }
    }
    free(pub->name);
    free(pub);
}

/* Is m a newer instance of the module that published old? */
static bool replaces(const xmppd_module *m, const struct published *old)
{
    return old->m != m && old->m->host == m->host &&
           strcmp(old->m->def->name, m->def->name) == 0;
}

XMPPD_EXPORT int xmppd_provide(xmppd_module *m, const char *api, const void *vtable)
{
    if (!m || !api || !vtable || !m->loaded)
        return -1;
    strmap **mapp = m->host ? &m->host->apis : &global_apis;
    if (!*mapp && !(*mapp = strmap_new()))
        return -1;
    struct published *old = strmap_get(*mapp, api);
    if (old && !replaces(m, old)) {
        xmppd_log(m, XMPPD_LOG_ERROR, "API \"%s\" is already provided here by %s", api, old->m->tag);
        return -1;
    }
    struct published *pub = calloc(1, sizeof(*pub));
    if (!pub || !(pub->name = strdup(api))) {
        free(pub);
        return -1;
    }
    pub->m = m;
    pub->vtable = vtable;
    pub->in = *mapp;
    pub->shadowed = old;
    if (strmap_put(*mapp, api, pub) < 0) {
        free(pub->name);
        free(pub);
        return -1;
    }
    if (!module_cleanup_add(m, withdraw, pub)) {
        withdraw(pub);
        return -1;
    }
    return 0;
}

XMPPD_EXPORT const void *xmppd_use(const xmppd_host *h, const char *api)
{
    struct published *pub = NULL;
    if (h && h->apis)
        pub = strmap_get(h->apis, api);
    if (!pub && global_apis)
        pub = strmap_get(global_apis, api);
    return pub && pub->m->loaded ? pub->vtable : NULL;
}
