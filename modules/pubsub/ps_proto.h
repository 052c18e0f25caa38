/* Shared by the engine's protocol files (ps_iq.c, ps_publish.c,
 * ps_owner.c): answering one request. Not used by modules. */
#ifndef XMPPD_PS_PROTO_H
#define XMPPD_PS_PROTO_H

#include "ps.h"

/* The requester's bare JID (never NULL for a routed request: the kernel
 * stamps 'from'). */
const char *ps_req_bare(const ps_req *r);
/* Answers with an error (pubsub#errors child ps_cond when not NULL). */
void ps_req_error(ps_req *r, const char *type, const char *cond, const char *ps_cond,
                  const char *text);
/* Answers with a result carrying payload (consumed; NULL: an empty result). */
void ps_req_result(ps_req *r, xmppd_stanza *payload);
/* A new <pubsub xmlns=ns/> for a result payload; NULL on OOM. */
xmppd_stanza *ps_req_pubsub(const char *ns);
/* A new <pubsub xmlns=ns> into *ps_r holding <name node=node?/>, which is
 * returned (borrowed from *ps_r); NULL on OOM. */
xmppd_stanza *ps_req_list(const char *ns, const char *name, const char *node, xmppd_stanza **ps_r);
/* The node named by action's 'node' attribute. NULL after answering
 * nodeid-required (no attribute) or item-not-found (no such node). */
ps_node *ps_req_node(ps_req *r, const xmppd_stanza *action);
/* Is jid (prepared) an address of the account bare (itself or a resource)? */
bool ps_jid_is_of(const char *jid, const char *bare);
/* A fresh item id (random), in buf of at least 33 bytes. */
void ps_new_id(char buf[33]);
/* Answers a request about a data form that could not be applied: rc of
 * ps_config_apply (-1: bad-request, -2: not-acceptable, -3: not-acceptable
 * with unsupported-access-model). */
void ps_req_form_error(ps_req *r, int rc, const char *why);
/* Creates node name with cfg (owner: the requester, unless PEP) after
 * checking the node limit; NULL after answering the error. */
ps_node *ps_req_create(ps_req *r, const char *name, const ps_config *cfg);

/* ps_publish.c */
void ps_op_publish(ps_req *r, const xmppd_stanza *pubsub, const xmppd_stanza *action);
void ps_op_retract(ps_req *r, const xmppd_stanza *action);

/* ps_owner.c: the pubsub#owner namespace (§8) and create (§8.1). */
void ps_op_create(ps_req *r, const xmppd_stanza *pubsub, const xmppd_stanza *action);
void ps_op_owner(ps_req *r, const xmppd_stanza *action, bool set);

/* ps_subscribe.c: subscriptions and options (§6.1 to §6.3, §5.6, §5.7). */
void ps_op_subscribe(ps_req *r, const xmppd_stanza *pubsub, const xmppd_stanza *action);
void ps_op_unsubscribe(ps_req *r, const xmppd_stanza *action);
void ps_op_options(ps_req *r, const xmppd_stanza *action, bool set);
void ps_op_subscriptions(ps_req *r, const xmppd_stanza *action);
void ps_op_affiliations(ps_req *r, const xmppd_stanza *action);

#endif
