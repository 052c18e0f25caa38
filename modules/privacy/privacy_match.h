/* Stanza matching shared by the filtering modules (privacy, blocking through
 * privacy, and the operator's filter): what kind of stanza it is, which way
 * it travels, and whether a JID matches an address pattern. Header-only
 * (static inline) so each module carries its own copy and no module
 * depends on another just for these few functions. */
#ifndef XMPPD_PRIVACY_MATCH_H
#define XMPPD_PRIVACY_MATCH_H

#include <stdbool.h>
#include <string.h>

#include <xmppd/jid.h>
#include <xmppd/stanza.h>

/* Stanza kinds as XEP-0016 items name them (§2.1). Outbound messages and
 * IQs, and presence other than availability (subscriptions, probes,
 * errors), have no kind of their own: only items without a kind match
 * them. */
enum {
    XM_KIND_MESSAGE = 1,
    XM_KIND_IQ = 2,
    XM_KIND_PRESENCE_IN = 4,
    XM_KIND_PRESENCE_OUT = 8,
};

enum xm_stanza { XM_NONE = -1, XM_MESSAGE = 0, XM_PRESENCE = 1, XM_IQ = 2 };

static inline enum xm_stanza xm_stanza_of(const xmppd_stanza *st)
{
    const char *n = xmppd_stanza_name(st);
    if (strcmp(n, "message") == 0)
        return XM_MESSAGE;
    if (strcmp(n, "presence") == 0)
        return XM_PRESENCE;
    if (strcmp(n, "iq") == 0)
        return XM_IQ;
    return XM_NONE;
}

/* The stanza's type as the RFCs default it: message "normal", presence
 * "available", IQ as given (NULL when absent). */
static inline const char *xm_type_of(const xmppd_stanza *st)
{
    const char *t = xmppd_stanza_attr(st, "type");
    if (t)
        return t;
    switch (xm_stanza_of(st)) {
    case XM_MESSAGE: return "normal";
    case XM_PRESENCE: return "available";
    default: return NULL;
    }
}

/* Presence that tells availability (no type, or unavailable). */
static inline bool xm_presence_notification(const xmppd_stanza *st)
{
    const char *t = xmppd_stanza_attr(st, "type");
    return !t || strcmp(t, "unavailable") == 0;
}

/* The XM_KIND_* bit of st travelling inbound (to the account) or outbound
 * (from it); 0 when only kind-less items apply. */
static inline unsigned xm_kind(const xmppd_stanza *st, bool inbound)
{
    switch (xm_stanza_of(st)) {
    case XM_MESSAGE: return inbound ? XM_KIND_MESSAGE : 0;
    case XM_IQ: return inbound ? XM_KIND_IQ : 0;
    case XM_PRESENCE:
        if (!xm_presence_notification(st))
            return 0;
        return inbound ? XM_KIND_PRESENCE_IN : XM_KIND_PRESENCE_OUT;
    default: return 0;
    }
}

/* XEP-0016 §2.1 / XEP-0191 §6 JID matching of an item value against a
 * peer: user@domain/resource matches only that resource; user@domain any
 * resource of it; domain/resource only that resource of the domain itself;
 * domain the domain and every address at it. Both are prepared JIDs. */
static inline bool xm_jid_matches(const xmppd_jid *item, const xmppd_jid *peer)
{
    if (!item || !peer || strcmp(item->domain, peer->domain) != 0)
        return false;
    if (item->node) {
        if (!peer->node || strcmp(item->node, peer->node) != 0)
            return false;
        return !item->resource || (peer->resource && strcmp(item->resource, peer->resource) == 0);
    }
    if (item->resource)
        return !peer->node && peer->resource && strcmp(item->resource, peer->resource) == 0;
    return true;
}

#endif
