/* Calls between modules that answer later (api/xmppd/module.h xmppd_call):
 * the provider keeps one per request; when the calling module unloads
 * first, the provider's cancel function runs then (before the caller's
 * unload()), so the caller hears once and frees its data, and the
 * provider's answer, when it comes, goes nowhere. */
#include <stdlib.h>

#include "core/core.h"

struct xmppd_call {
    xmppd_module *caller;     /* ref held; NULL: the kernel */
    module_cleanup *cleanup;  /* caller unloading cancels the call */
    void (*cancel)(void *p);
    void *p;
    bool cancelled;
};

static void call_cancelled(void *ud)
{
    xmppd_call *c = ud;
    c->cleanup = NULL;
    c->cancelled = true;
    if (c->cancel)
        c->cancel(c->p);
}

XMPPD_EXPORT xmppd_call *xmppd_call_new(xmppd_module *caller, void (*cancel)(void *p), void *p)
{
    if (caller && !caller->loaded)
        return NULL;
    xmppd_call *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    *c = (xmppd_call){ .caller = caller, .cancel = cancel, .p = p };
    if (caller && !(c->cleanup = module_cleanup_add(caller, call_cancelled, c))) {
        free(c);
        return NULL;
    }
    if (caller)
        module_ref(caller);
    return c;
}

XMPPD_EXPORT bool xmppd_call_finish(xmppd_call *c)
{
    if (!c)
        return false;
    bool live = !c->cancelled;
    if (c->cleanup)
        module_cleanup_cancel(c->caller, c->cleanup);
    if (c->caller)
        module_unref(c->caller);
    free(c);
    return live;
}
