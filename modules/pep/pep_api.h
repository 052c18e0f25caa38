/* The PEP module's API for other modules (the avatar and bookmarks
 * bridges), published with xmppd_provide(m, "pep", &api) per host and found
 * with xmppd_use(host, "pep"). Look it up per use: it goes away when the
 * PEP module unloads.
 *
 * Every call works on behalf of the account itself (its owner), loads the
 * service (and the account's roster, for notifications) first, and answers
 * through its callback exactly once, on the loop thread, possibly before
 * returning. caller is the calling module (xmppd_call, module.h): if it
 * unloads first, its callback runs with -1 before its unload() and never
 * after; if the PEP module unloads first, pending calls are answered -1.
 *
 * Changes made through the protocol or this API fire PEP_EVENT_CHANGED
 * (all) on the host, after they are made; data: const pep_change *. */
#ifndef XMPPD_PEP_API_H
#define XMPPD_PEP_API_H

#include <stdint.h>

#include <xmppd/module.h>
#include <xmppd/stanza.h>

#define PEP_API_VERSION 2
#define PEP_EVENT_CHANGED "pep-changed"

typedef struct pep_change {
    const char *user;              /* the account's localpart */
    const char *node;
    const char *kind;              /* "items" (published), "retract", "purge", "delete" */
    const char *id;                /* the item published or retracted, else NULL */
    const xmppd_stanza *payload;   /* the published payload, borrowed, else NULL */
    const char *publisher;         /* who published: a full JID, or NULL for a module */
} pep_change;

/* items: an <items node=NODE/> element holding <item id>payload</item> in
 * publication order (borrowed for the call), or NULL when the node does not
 * exist. status: 0, or -1 when the service could not be loaded. */
typedef void (*pep_items_cb)(int status, const xmppd_stanza *items, void *ud);
/* rc 0 done, -1 refused or failed: error is the XEP-0060 condition
 * ("precondition-not-met", "item-not-found", "internal-server-error"...). */
typedef void (*pep_done_cb)(int rc, const char *error, void *ud);

typedef struct pep_api {
    uint32_t version; /* PEP_API_VERSION */
    uint32_t size;    /* sizeof(pep_api) */
    void (*items)(const struct pep_api *api, xmppd_module *caller, const char *user,
                  const char *node, pep_items_cb cb, void *ud);
    /* Publishes a copy of payload as item id (NULL: generated) on node,
     * created when missing with the defaults changed by options (a
     * publish-options <x/> form, copied; NULL: none), whose preconditions
     * are checked when the node exists. cb may be NULL. */
    void (*publish)(const struct pep_api *api, xmppd_module *caller, const char *user,
                    const char *node, const char *id, const xmppd_stanza *payload,
                    const xmppd_stanza *options, pep_done_cb cb, void *ud);
    /* Retracts item id (subscribers are told as the node says). cb may be
     * NULL; "item-not-found" when there is no such node or item. */
    void (*retract)(const struct pep_api *api, xmppd_module *caller, const char *user,
                    const char *node, const char *id, pep_done_cb cb, void *ud);
} pep_api;

#endif
