/* Shared between the files of mod_caps (not an API: see caps_api.h). */
#ifndef XMPPD_CAPS_H
#define XMPPD_CAPS_H

#include <stddef.h>

#include <xmppd/xmppd.h>

#define CAPS_NS "http://jabber.org/protocol/caps"
#define CAPS_DISCO_INFO_NS "http://jabber.org/protocol/disco#info"
#define CAPS_DATA_NS "jabber:x:data"

/* ---- caps_ver.c: the verification string (XEP-0115 §5.1) ---- */

/* The string S for a disco#info <query/>; malloc'd, NULL on OOM. */
char *caps_string(const xmppd_stanza *q);
/* base64(H(s)) for hash "sha-1", "sha-256" or "sha-512"; malloc'd; NULL
 * for another hash or on failure. */
char *caps_digest(const char *s, const char *hash);

/* ---- caps_cache.c: what entities' verification strings stand for ---- */

typedef struct caps_cache caps_cache;

/* A cache of at most max_entries strings, asking at most max_pending
 * entities at a time, each for at most timeout_ms. The module's host
 * sends the queries. NULL on OOM. Freed with the module (timers it set
 * are the module's: they are cancelled by the kernel on unload). */
caps_cache *caps_cache_new(xmppd_module *m, size_t max_entries, size_t max_pending,
                           long long timeout_ms);
void caps_cache_free(caps_cache *c);
/* Does what jid (a prepared full JID) announced as node/ver/hash (hash ""
 * for legacy caps) include feature? CAPS_YES/CAPS_NO/CAPS_UNKNOWN
 * (caps_api.h). With query, an unknown string is asked for (jid is then
 * told by "caps-resolved"); feature NULL only starts that. */
int caps_cache_has(caps_cache *c, const char *jid, const char *node, const char *ver,
                   const char *hash, const char *feature, bool query);

#endif
