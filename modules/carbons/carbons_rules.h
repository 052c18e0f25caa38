/* The pure parts of mod_carbons (XEP-0280 with XEP-0334 hints): which
 * messages are copied, how a copy is wrapped (XEP-0297), what a carbon is,
 * and the Bind2 (XEP-0386) inline element. No state, no kernel calls beyond
 * stanza.h: unit-tested on their own (tests/unit/test_carbons.c). */
#ifndef CARBONS_RULES_H
#define CARBONS_RULES_H

#include <stdbool.h>

#include <xmppd/stanza.h>

#define CARBONS_NS "urn:xmpp:carbons:2"
#define CARBONS_NS_FORWARD "urn:xmpp:forward:0"
#define CARBONS_NS_HINTS "urn:xmpp:hints"
#define CARBONS_NS_MUC_USER "http://jabber.org/protocol/muc#user"

/* XEP-0280 §6 (the server's rules, with XEP-0334): a <message/> is copied
 * when it is of type chat, or normal with a <body/>, or a mediated group
 * chat invitation; never when it carries <private/> (XEP-0280 §7) or
 * <no-copy/> (XEP-0334), is a group chat message or a private message
 * through a room (XEP-0045 <x xmlns=muc#user/>), is a carbon itself, or
 * any other type (errors are judged by the module, which knows what it
 * copied). */
bool carbons_eligible(const xmppd_stanza *msg);

/* The <received/> or <sent/> (urn:xmpp:carbons:2) child of msg, or NULL:
 * msg looks like a carbon copy. */
const xmppd_stanza *carbons_wrapper_of(const xmppd_stanza *msg);

/* The <private/> child of msg (XEP-0280 §7), or NULL. */
xmppd_stanza *carbons_private_of(const xmppd_stanza *msg);

/* A copy of msg wrapped for one resource (XEP-0280 §6/§8, XEP-0297):
 * <message from=account to=to type=msg's><DIR xmlns=carbons><forwarded
 * xmlns=forward><message xmlns=jabber:client ...copy.../></forwarded>
 * </DIR></message>, dir "received" or "sent". The copy is in jabber:client
 * whatever stream msg came from. New tree, caller owns; NULL on OOM. */
xmppd_stanza *carbons_wrap(const xmppd_stanza *msg, const char *dir, const char *account,
                           const char *to);

/* Bind2 (XEP-0386): is el, one child of the client's <bind/>, the inline
 * request to enable carbons (<enable xmlns='urn:xmpp:carbons:2'/>)? */
bool carbons_inline_enable(const xmppd_stanza *el);

#endif
