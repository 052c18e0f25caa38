/* The vcard module's API for other modules (the avatar conversion of
 * XEP-0398), published with xmppd_provide(m, "vcard", &api) per host and
 * found with xmppd_use(host, "vcard"). Look it up per use: it goes away
 * when the vcard module unloads.
 *
 * The vCards it gives are the ones served to clients: with a vCard
 * source (vcard_source.h, e.g. a directory) loaded, the source's merged
 * with what the account stored.
 *
 * After an account's vCard changed and is stored (through the protocol or
 * this API), or its source's part changed, the module fires
 * VCARD_EVENT_CHANGED (all) on the host; data: const vcard_change *.
 *
 * Version 2 (since the vCard sources): get and set take the caller's
 * module handle; a caller that unloads before the answer hears
 * VCARD_CANCELLED then, and nothing later. */
#ifndef XMPPD_VCARD_API_H
#define XMPPD_VCARD_API_H

#include <stdbool.h>
#include <stdint.h>

#include <xmppd/module.h>
#include <xmppd/stanza.h>

#define VCARD_API_VERSION 2
#define VCARD_EVENT_CHANGED "vcard-changed"
#define VCARD_CANCELLED (-2) /* the caller unloads: free ud, answer nobody */

typedef struct vcard_change {
    const char *user;             /* the account's localpart */
    const xmppd_stanza *vcard;    /* the vCard now served (borrowed), NULL when there is none */
    bool by_module;               /* set through this API or by the source, not by the account's client */
} vcard_change;

/* status 0 with the served <vCard/> (borrowed for the call; NULL when the
 * account has none), -1 when storage or the source failed, or
 * VCARD_CANCELLED. */
typedef void (*vcard_get_cb)(int status, const xmppd_stanza *vcard, void *ud);
/* status 0 stored, -1 refused (too large, read-only source) or failed, or
 * VCARD_CANCELLED. */
typedef void (*vcard_done_cb)(int status, void *ud);

typedef struct vcard_api {
    uint32_t version; /* VCARD_API_VERSION */
    uint32_t size;    /* sizeof(vcard_api) */
    /* cb runs exactly once, later. */
    void (*get)(const struct vcard_api *api, xmppd_module *caller, const char *user, vcard_get_cb cb,
                void *ud);
    /* Stores a copy of vcard (NULL or an empty <vCard/>: removes it) as the
     * account's, within the module's max_size. cb (may be NULL) runs
     * exactly once: at once with -1 when the vCard is refused, else later. */
    void (*set)(const struct vcard_api *api, xmppd_module *caller, const char *user,
                const xmppd_stanza *vcard, vcard_done_cb cb, void *ud);
} vcard_api;

#endif
