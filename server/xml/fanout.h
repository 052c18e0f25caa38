/* What the router takes from a fan-out copy (xmppd_stanza_copy_to) without
 * parsing it again per copy.
 *
 * The copies of one source share its frozen tree (stanza.c); the source's
 * 'from' is parsed once, on that tree, the first time a copy is routed,
 * and every copy whose 'from' is still the source's uses it. */
#ifndef XMPPD_XML_FANOUT_H
#define XMPPD_XML_FANOUT_H

#include "xmppd/jid.h"
#include "xmppd/stanza.h"

/* The parsed 'from' of st when st is a copy-on-write copy whose 'from' is
 * its source's, or NULL (the caller parses the attribute itself; also on
 * an invalid JID). *hold gets a reference to the tree that owns the JID,
 * which the caller drops with xmppd_stanza_unref once done with the JID:
 * a hook that changes st meanwhile gives st a tree of its own. */
const xmppd_jid *stanza_fanout_from(const xmppd_stanza *st, xmppd_stanza **hold);

#endif
