/* The pure parts of mod_push (XEP-0357): reading an <enable/>, what is
 * worth waking a phone for, and the publish request. Only stanza.h, jid.h
 * and forms.h: unit-tested on their own (tests/unit/test_push.c). */
#ifndef PUSH_RULES_H
#define PUSH_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <xmppd/forms.h>
#include <xmppd/jid.h>
#include <xmppd/stanza.h>

#define PUSH_NS "urn:xmpp:push:0"
#define PUSH_NS_SUMMARY "urn:xmpp:push:summary"
#define PUSH_NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define PUSH_NS_PUBLISH_OPTIONS "http://jabber.org/protocol/pubsub#publish-options"

#define PUSH_NODE_MAX 1024      /* bytes of a node name */
#define PUSH_OPTION_FIELDS 32   /* fields of a publish-options form */
#define PUSH_OPTION_VALUE 1024  /* bytes of one of its values */
#define PUSH_BODY_MAX 512       /* bytes of a body put in a notification */

/* One registration as a client asked for it (XEP-0357 §5). */
typedef struct push_reg_req {
    char *jid;       /* the push service, prepared; malloc'd */
    char *node;      /* malloc'd */
    json_t *options; /* {var: [values]} of the publish-options form, without
                        FORM_TYPE; {} when none; a reference */
} push_reg_req;

/* Reads an <enable/> element (§5): 'jid' (a valid JID) and 'node' are
 * required, an optional data form must be a submitted publish-options form
 * (FORM_TYPE http://jabber.org/protocol/pubsub#publish-options) within the
 * limits above. 0 and *out filled (free with push_reg_req_clear), or -1
 * with the stanza error condition in *cond_r and a static text in *text_r. */
int push_parse_enable(const xmppd_stanza *enable, push_reg_req *out, const char **cond_r,
                      const char **text_r);
void push_reg_req_clear(push_reg_req *r);

/* The key a registration is stored under: service JID and node, which
 * together name it (§5). malloc'd, NULL on OOM. */
char *push_key(const char *jid, const char *node);

/* Is msg worth a notification: a chat or normal message with a body or an
 * encrypted payload (OMEMO, OpenPGP, XEP-0380), or a call (XEP-0353)?
 * Chat states, receipts, markers, errors, headlines and group chat are not. */
bool push_message_wanted(const xmppd_stanza *msg);

/* What the notification summarises (XEP-0357 §7, urn:xmpp:push:summary). */
typedef struct push_summary {
    long messages;       /* message-count; 0: not given */
    long subscriptions;  /* pending-subscription-count; 0: not given */
    const char *sender;  /* last-message-sender, or NULL */
    const char *body;    /* last-message-body, or NULL (the operator's choice) */
} push_summary;

/* The publish request (§7): <iq type='set' from=account to=jid><pubsub>
 * <publish node><item><notification xmlns=push><x summary/></notification>
 * </item></publish>[<publish-options><x/></publish-options>]</pubsub></iq>,
 * publish-options only when options has fields. A body longer than
 * PUSH_BODY_MAX bytes is cut at a character boundary. New tree, caller
 * owns; NULL on OOM. */
xmppd_stanza *push_publish_iq(const char *account, const char *jid, const char *node,
                              const json_t *options, const push_summary *sum);

#endif
