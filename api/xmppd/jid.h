/* JIDs (RFC 7622 address format, prepared with the stringprep profiles that
 * XMPP servers use: nodeprep, nameprep, resourceprep). A parsed JID is one
 * allocation; its strings are read-only and live until xmppd_jid_free(). */
#ifndef XMPPD_JID_H
#define XMPPD_JID_H

#include <stdbool.h>

#define XMPPD_JID_PART_MAX 1023 /* bytes per part after preparation (RFC 7622 §3) */

typedef struct xmppd_jid {
    const char *node;     /* NULL when absent */
    const char *domain;   /* never NULL */
    const char *resource; /* NULL when absent */
    const char *bare;     /* node@domain or domain */
    const char *full;     /* bare[/resource] */
} xmppd_jid;

/* Parses and prepares s. NULL when s is not a valid JID (empty parts,
 * prohibited characters, a part over 1023 bytes, bad IP literal, ...). */
xmppd_jid *xmppd_jid_parse(const char *s);
/* Builds from parts (each prepared); node and resource may be NULL. A new
 * JID the caller frees, or NULL when a part is invalid. */
xmppd_jid *xmppd_jid_make(const char *node, const char *domain, const char *resource);
/* A copy the caller frees; NULL on OOM. */
xmppd_jid *xmppd_jid_dup(const xmppd_jid *j);
/* The bare JID of j as a new JID the caller frees; NULL on OOM. */
xmppd_jid *xmppd_jid_to_bare(const xmppd_jid *j);
void xmppd_jid_free(xmppd_jid *j); /* NULL is a no-op */

/* Equality of prepared JIDs: every part (full), or node and domain only
 * (bare). Both pure: usable from worker threads. */
bool xmppd_jid_equal(const xmppd_jid *a, const xmppd_jid *b);
bool xmppd_jid_bare_equal(const xmppd_jid *a, const xmppd_jid *b);

/* Prepare one part into a malloc'd string (NULL when invalid): for config
 * values, SASL usernames and the like. */
char *xmppd_nodeprep(const char *in);
char *xmppd_nameprep(const char *in);
char *xmppd_resourceprep(const char *in);

#endif
