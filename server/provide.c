/* Published module APIs (xmppd_provide / xmppd_use). */
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "strmap.h"

struct published {
    xmppd_module *m;
    const void *vtable;
    strmap *in;        /* the map it is registered in */
    char *name;
};

static strmap *global_apis;

static void withdraw(void *p)
{
    struct published *pub = p;
    if (strmap_get(pub->in, pub->name) == pub)
        strmap_del(pub->in, pub->name);
    free(pub->name);
    free(pub);
}

int xmppd_provide(xmppd_module *m, const char *api, const void *vtable)
{
    strmap **mapp = m->host ? &m->host->apis : &global_apis;
    if (!*mapp && !(*mapp = strmap_new()))
        return -1;
    if (strmap_get(*mapp, api)) {
        xmppd_log(m, XMPPD_LOG_ERROR, "API \"%s\" is already provided here", api);
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
    if (strmap_put(*mapp, api, pub) < 0 || !module_cleanup_add(m, withdraw, pub)) {
        strmap_del(*mapp, api);
        free(pub->name);
        free(pub);
        return -1;
    }
    return 0;
}

const void *xmppd_use(const xmppd_host *h, const char *api)
{
    struct published *pub = NULL;
    if (h && h->apis)
        pub = strmap_get(h->apis, api);
    if (!pub && global_apis)
        pub = strmap_get(global_apis, api);
    return pub && pub->m->loaded ? pub->vtable : NULL;
}
