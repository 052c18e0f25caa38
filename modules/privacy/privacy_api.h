/* The privacy module's API for other modules (blocking; the filter module
 * shares privacy_match.h instead), published with xmppd_provide(m,
 * "privacy", &api) per host and found with xmppd_use(host, "privacy").
 * Look it up per use: it goes away when the privacy module unloads.
 *
 * The privacy module is the one place where users' own filtering rules
 * live: XEP-0016 privacy lists, and the XEP-0191 blocklist as a view of the
 * account's default list (its items of type 'jid', action 'deny' and no
 * stanza-kind children). Changing the blocklist through this API changes
 * that list; changing the default list through XEP-0016 changes the
 * blocklist, and both fire "blocklist-changed" (see below). */
#ifndef XMPPD_PRIVACY_API_H
#define XMPPD_PRIVACY_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <xmppd/jid.h>
#include <xmppd/module.h>
#include <xmppd/stanza.h>

#define PRIVACY_API_VERSION 2

/* Outcome of a change: 0 stored, -1 not stored (storage failure; the
 * change is still in force in memory for the running server). */
typedef void (*privacy_done_cb)(int status, void *ud);
/* ok false: the account's lists could not be loaded. */
typedef void (*privacy_load_cb)(bool ok, void *ud);

typedef struct privacy_api {
    uint32_t version; /* PRIVACY_API_VERSION */
    uint32_t size;    /* sizeof(privacy_api) */

    /* Calls cb once node's lists are in memory: at once when they are,
     * else after storage answered. caller: the asking module (xmppd_call:
     * if it unloads first, cb gets false then, and nothing later). */
    void (*load)(const struct privacy_api *api, xmppd_module *caller, const char *node,
                 privacy_load_cb cb, void *ud);
    /* Calls fn with each blocked JID of node (loaded accounts only), in
     * list order. Returns how many there are. */
    size_t (*blocklist)(const struct privacy_api *api, const char *node,
                        void (*fn)(const char *jid, void *ud), void *ud);
    /* Blocks (adds) or unblocks (removes) the given prepared JIDs; unblock
     * with n == 0 unblocks everything. Sends the presence XEP-0191 asks for,
     * fires "blocklist-changed", then calls done once stored (done may be
     * NULL). 0, or -1 when the account is not loaded or a limit refuses
     * (*cond_r: the stanza error condition). */
    int (*block)(const struct privacy_api *api, xmppd_module *caller, const char *node,
                 const char *const *jids, size_t n, privacy_done_cb done, void *ud,
                 const char **cond_r);
    int (*unblock)(const struct privacy_api *api, xmppd_module *caller, const char *node,
                   const char *const *jids, size_t n, privacy_done_cb done, void *ud,
                   const char **cond_r);
} privacy_api;

/* Data of the "blocklist-changed" event (fire_all on the account's host,
 * stanza NULL): which JIDs became blocked and which unblocked. */
typedef struct privacy_blocklist_change {
    const char *node;
    const char *const *blocked;
    size_t n_blocked;
    const char *const *unblocked;
    size_t n_unblocked;
    bool all_unblocked; /* an XEP-0191 §3.5 "unblock all" request emptied the list */
} privacy_blocklist_change;

#endif
