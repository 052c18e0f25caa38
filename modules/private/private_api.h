/* The private module's API for other modules (the bookmarks bridge of
 * XEP-0402 and XEP-0411), published with xmppd_provide(m, "private", &api)
 * per host and found with xmppd_use(host, "private"). Look it up per use:
 * it goes away when the private module unloads.
 *
 * Callbacks run exactly once. caller is the calling module (xmppd_call,
 * module.h): if it unloads first, its callback runs with -1 before its
 * unload() and never after; if this module unloads first, pending calls
 * are answered -1.
 *
 * After a fragment is stored (through the protocol or this API), the
 * module fires PRIVATE_EVENT_CHANGED (all) on the host; data:
 * const private_change *. */
#ifndef XMPPD_PRIVATE_API_H
#define XMPPD_PRIVATE_API_H

#include <stdbool.h>
#include <stdint.h>

#include <xmppd/module.h>
#include <xmppd/stanza.h>

#define PRIVATE_API_VERSION 2
#define PRIVATE_EVENT_CHANGED "private-changed"

typedef struct private_change {
    const char *user;            /* the account's localpart */
    const xmppd_stanza *element; /* the stored fragment, borrowed */
    bool by_module;              /* set through this API, not by the account's client */
} private_change;

/* status 0 with the stored fragment (borrowed for the call; NULL when
 * none is stored), or -1 when storage failed. */
typedef void (*private_get_cb)(int status, const xmppd_stanza *element, void *ud);
typedef void (*private_done_cb)(int status, void *ud);

typedef struct private_api {
    uint32_t version; /* PRIVATE_API_VERSION */
    uint32_t size;    /* sizeof(private_api) */
    /* The fragment stored under element name and namespace ns. */
    void (*get)(const struct private_api *api, xmppd_module *caller, const char *user,
                const char *name, const char *ns, private_get_cb cb, void *ud);
    /* Stores a copy of element under its name and namespace; cb may be NULL. */
    void (*set)(const struct private_api *api, xmppd_module *caller, const char *user,
                const xmppd_stanza *element, private_done_cb cb, void *ud);
} private_api;

#endif
