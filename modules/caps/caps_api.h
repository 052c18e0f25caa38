/* The caps module's API for other modules (PEP reads its +notify filters
 * here), published with xmppd_provide(m, "caps", &api) per host and found
 * with xmppd_use(host, "caps"). Look it up per use: it goes away when the
 * caps module unloads.
 *
 * XEP-0115: an entity announces a verification string in its presence; the
 * module asks that entity for the disco#info behind it once per string
 * (from the host's domain, node "NODE#VER"), checks the string against the
 * answer (sha-1, sha-256, sha-512) and caches the features by string. An
 * answer that does not match its string, or legacy caps without a hash,
 * are kept for that one address only. When an answer arrives, the module
 * fires "caps-resolved" (all) for each address that waited for it:
 *   ev->from     the address (a local session's or a remote full JID)
 *   ev->session  that local session, or NULL for a remote entity
 *   ev->host     the host */
#ifndef XMPPD_CAPS_API_H
#define XMPPD_CAPS_API_H

#include <stdbool.h>
#include <stdint.h>

#include <xmppd/router.h>

#define CAPS_API_VERSION 2
#define CAPS_EVENT_RESOLVED "caps-resolved"

/* What the *_has_feature calls answer. */
enum { CAPS_UNKNOWN = -1, CAPS_NO = 0, CAPS_YES = 1 };

typedef struct caps_api {
    uint32_t version; /* CAPS_API_VERSION */
    uint32_t size;    /* sizeof(caps_api) */
    /* The caps the session's last broadcast presence announced. Strings
     * are borrowed until the session's next presence or close. false (and
     * nothing written) when it announced none. */
    bool (*session_caps)(const struct caps_api *api, const xmppd_session *s,
                         const char **node_r, const char **ver_r, const char **hash_r);
    /* The host's own verification string, malloc'd (caller frees); NULL
     * when disco is not loaded or on OOM. */
    char *(*server_ver)(const struct caps_api *api);

    /* Version 2. Does the session's announced caps include feature (for
     * instance "urn:xmpp:avatar:metadata+notify")? CAPS_YES, CAPS_NO (also
     * without caps, or when the entity never answered), CAPS_UNKNOWN while
     * the disco#info query is in flight ("caps-resolved" follows). Cheap:
     * a lookup in the cached feature list. feature NULL asks whether the
     * caps are known: CAPS_YES once answered, CAPS_NO without caps. */
    int (*session_has_feature)(const struct caps_api *api, const xmppd_session *s,
                               const char *feature);
    /* The same for a remote entity that announced node/ver/hash (hash NULL
     * or "": legacy caps) in a presence: an unknown string starts a query
     * to jid (a full JID) and answers CAPS_UNKNOWN. */
    int (*jid_has_feature)(const struct caps_api *api, const char *jid, const char *node,
                           const char *ver, const char *hash, const char *feature);
} caps_api;

#endif
