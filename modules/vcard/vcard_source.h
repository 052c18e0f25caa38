/* A source of vCards outside storage (a directory: vcard_ldap), as the
 * vcard module consumes it. The source publishes this table with
 * xmppd_provide(m, "vcard_source", &src) on its host; mod_vcard looks it
 * up per use (xmppd_use) and, when there is one, serves every vCard
 * (vcard-temp gets, and the "vcard" API) through it, passing the vCard
 * the account stored so the source can merge its own fields in.
 *
 * When the source notices that its data for an account changed (a
 * directory entry read again after its cache time), it fires
 * VCARD_SOURCE_EVENT_CHANGED (all) on the host, data: const char *user;
 * mod_vcard then fires "vcard-changed" with the vCard now served. */
#ifndef XMPPD_VCARD_SOURCE_H
#define XMPPD_VCARD_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include <xmppd/module.h>
#include <xmppd/stanza.h>

#define VCARD_SOURCE_VERSION 1
#define VCARD_SOURCE_EVENT_CHANGED "vcard-source-changed"

enum { VCARD_SOURCE_OK = 0, VCARD_SOURCE_ERROR = -1, VCARD_SOURCE_CANCELLED = -2 };

/* status OK with the vCard to serve (borrowed for the call; NULL: none),
 * ERROR when the source could not be read (the asker answers an error),
 * CANCELLED while the asking module unloads (free ud, answer nobody). */
typedef void (*vcard_source_cb)(int status, const xmppd_stanza *vcard, void *ud);

typedef struct vcard_source {
    uint32_t version; /* VCARD_SOURCE_VERSION */
    uint32_t size;    /* sizeof(vcard_source) */
    /* true: accounts may not change their vCards (the source owns them);
     * a vcard-temp set is answered <not-allowed/>. */
    bool (*read_only)(const struct vcard_source *src);
    /* The vCard to serve for user, given the one it stored (borrowed for
     * the call, NULL: none). caller: the asking module (xmppd_call). cb
     * runs exactly once, later. */
    void (*serve)(const struct vcard_source *src, xmppd_module *caller, const char *user,
                  const xmppd_stanza *stored, vcard_source_cb cb, void *ud);
} vcard_source;

#endif
