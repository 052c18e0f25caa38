/* The vcard module's API for other modules (the avatar conversion of
 * XEP-0398), published with xmppd_provide(m, "vcard", &api) per host and
 * found with xmppd_use(host, "vcard"). Look it up per use: it goes away
 * when the vcard module unloads.
 *
 * After an account's vCard changed and is stored (through the protocol or
 * this API), the module fires VCARD_EVENT_CHANGED (all) on the host; data:
 * const vcard_change *. */
#ifndef XMPPD_VCARD_API_H
#define XMPPD_VCARD_API_H

#include <stdbool.h>
#include <stdint.h>

#include <xmppd/stanza.h>

#define VCARD_API_VERSION 1
#define VCARD_EVENT_CHANGED "vcard-changed"

typedef struct vcard_change {
    const char *user;             /* the account's localpart */
    const xmppd_stanza *vcard;    /* the new <vCard/> (borrowed), NULL when it was removed */
    bool by_module;               /* set through this API, not by the account's client */
} vcard_change;

/* status 0 with the stored <vCard/> (borrowed for the call; NULL when the
 * account has none), or -1 when storage failed. */
typedef void (*vcard_get_cb)(int status, const xmppd_stanza *vcard, void *ud);
/* status 0 stored, -1 refused (too large) or failed. */
typedef void (*vcard_done_cb)(int status, void *ud);

typedef struct vcard_api {
    uint32_t version; /* VCARD_API_VERSION */
    uint32_t size;    /* sizeof(vcard_api) */
    void (*get)(const struct vcard_api *api, const char *user, vcard_get_cb cb, void *ud);
    /* Stores a copy of vcard (NULL or an empty <vCard/>: removes it) as the
     * account's, within the module's max_size. cb may be NULL. */
    void (*set)(const struct vcard_api *api, const char *user, const xmppd_stanza *vcard,
                vcard_done_cb cb, void *ud);
} vcard_api;

#endif
