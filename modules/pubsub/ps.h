/* The XEP-0060 publish-subscribe engine shared by mod_pep (a service per
 * account, XEP-0163) and mod_pubsub (a service at a domain). Not a module:
 * a library linked into both (libpubsub.la), so each keeps its own copy.
 *
 * The engine holds a service in memory (nodes, their configuration,
 * affiliations, subscriptions and items) and speaks the protocol: it
 * answers <pubsub/> IQs, builds event notifications, and tells its user
 * through ps_ops what to store and whom to notify besides explicit
 * subscribers. Everything runs synchronously on the loop thread: the module
 * loads a service (ps_store.c turns stored JSON into one) and whatever its
 * access checks need (a roster) before calling in, and passes that along
 * as the request's ctx, which the engine hands back to every ps_ops call.
 *
 * Ownership: a service owns its nodes, a node its items and subscriptions;
 * strings are the engine's copies. Trees handed in are copied or
 * referenced as each function says. */
#ifndef XMPPD_PS_H
#define XMPPD_PS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <xmppd/xmppd.h>

#define PS_NS "http://jabber.org/protocol/pubsub"
#define PS_NS_OWNER "http://jabber.org/protocol/pubsub#owner"
#define PS_NS_EVENT "http://jabber.org/protocol/pubsub#event"
#define PS_NS_ERRORS "http://jabber.org/protocol/pubsub#errors"
#define PS_FORM_NODE_CONFIG "http://jabber.org/protocol/pubsub#node_config"
#define PS_FORM_PUBLISH_OPTIONS "http://jabber.org/protocol/pubsub#publish-options"
#define PS_FORM_SUB_OPTIONS "http://jabber.org/protocol/pubsub#subscribe_options"
#define PS_FORM_META "http://jabber.org/protocol/pubsub#meta-data"
#define PS_NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define PS_NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

#define PS_NAME_MAX 1023 /* bytes of a node name or item id */

/* Affiliations (XEP-0060 §4.1), by rising privilege. */
enum ps_aff { PS_AFF_OUTCAST, PS_AFF_NONE, PS_AFF_MEMBER, PS_AFF_PUBLISH_ONLY, PS_AFF_PUBLISHER,
              PS_AFF_OWNER };
enum ps_access { PS_ACCESS_OPEN, PS_ACCESS_PRESENCE, PS_ACCESS_ROSTER, PS_ACCESS_WHITELIST };
enum ps_publish { PS_PUBLISH_PUBLISHERS, PS_PUBLISH_SUBSCRIBERS, PS_PUBLISH_OPEN };
enum ps_sendlast { PS_SENDLAST_NEVER, PS_SENDLAST_ON_SUB, PS_SENDLAST_ON_SUB_AND_PRESENCE };

#define PS_MAX_ITEMS_MAX (-1L) /* max_items "max": the service's limit */

/* A node's configuration (XEP-0060 §16.4.4, pubsub#node_config). */
typedef struct ps_config {
    char *title, *description, *payload_type; /* NULL when unset */
    int access;                 /* enum ps_access */
    int publish_model;          /* enum ps_publish */
    int send_last;              /* enum ps_sendlast */
    long max_items;             /* >= 1, or PS_MAX_ITEMS_MAX */
    bool persist_items;
    bool deliver_notifications;
    bool deliver_payloads;
    bool notify_retract;
    bool notify_delete;
    bool notify_config;
    bool notification_normal;   /* pubsub#notification_type "normal" (else headline) */
    char **groups;              /* roster_groups_allowed, NULL-terminated, or NULL */
} ps_config;

typedef struct ps_item {
    char *id;
    char *publisher;            /* the publisher's bare JID (or NULL) */
    int64_t when_ms;            /* wall clock */
    uint64_t seq;               /* publication order within the service */
    xmppd_stanza *payload;      /* the <item/>'s one child (a reference), or NULL */
    size_t bytes;               /* serialised payload size */
    struct ps_item *prev, *next; /* node order, oldest first */
} ps_item;

typedef struct ps_sub {
    char *jid;                  /* the subscribed address, prepared (bare or full) */
    char *subid;
    bool deliver;               /* pubsub#deliver */
    struct ps_sub *next;
} ps_sub;

typedef struct ps_affiliation {
    char *jid;                  /* bare JID, prepared */
    int aff;                    /* enum ps_aff */
    struct ps_affiliation *next;
} ps_affiliation;

typedef struct ps_service ps_service;

typedef struct ps_node {
    char *name;
    ps_config cfg;
    ps_affiliation *affs;
    ps_sub *subs;
    size_t n_subs;
    ps_item *first, *last;      /* last: the most recent */
    size_t n_items;
    ps_service *svc;
} ps_node;

/* Limits of one service, set by the module's options. */
typedef struct ps_limits {
    size_t max_nodes;           /* nodes per service */
    long max_items;             /* per node; the value of "max" */
    size_t max_item_bytes;      /* serialised payload of one item */
    size_t max_total_items;     /* items stored in the whole service */
    size_t max_subscriptions;   /* per node */
} ps_limits;

/* A notification for ops->notify: the message is complete but for 'to'
 * (the module sets it per recipient on a copy). */
typedef struct ps_notification {
    xmppd_stanza *msg;          /* <message from=service type=headline|normal id><event/></message> */
    const ps_item *item;        /* the published item (NULL for others) */
    const char *kind;           /* "items", "retract", "purge", "delete", "configuration" */
} ps_notification;

/* What the module provides. Every function gets the service and the ctx of
 * the request being served (or of the ps_* call). */
typedef struct ps_ops {
    /* PEP access models: is `bare` subscribed to the owner's presence, and
     * in one of `groups` of the owner's roster? NULL: never. */
    bool (*presence_sub)(const ps_service *s, const char *bare, void *ctx);
    bool (*in_groups)(const ps_service *s, const char *bare, char *const *groups, void *ctx);
    /* May `from` create nodes here (PEP: the owner; a service: its policy)? */
    bool (*may_create)(const ps_service *s, const xmppd_jid *from, void *ctx);
    /* Persistence, called after each change in memory. store_node: n's
     * configuration, affiliations and subscriptions; store_item: one item
     * (of a persistent node); drop_item: one item gone; drop_node: the
     * node and all its items are gone (n still lists them). */
    void (*store_node)(ps_service *s, const ps_node *n, void *ctx);
    void (*store_item)(ps_service *s, const ps_node *n, const ps_item *it, void *ctx);
    void (*drop_item)(ps_service *s, const ps_node *n, const char *id, void *ctx);
    void (*drop_node)(ps_service *s, const ps_node *n, void *ctx);
    /* Sends a notification to one explicit subscriber (to: its address). */
    void (*send)(ps_service *s, const char *to, xmppd_stanza *msg, void *ctx);
    /* Notifies whoever else should hear of the change on n (PEP: the
     * owner's resources and contacts that want it); explicit subscribers
     * were served already (ps_node_subscribed tells who). NULL: nobody. */
    void (*notify)(ps_service *s, const ps_node *n, const ps_notification *nf, void *ctx);
    /* After a change (kind as in ps_notification; item: the published
     * item or NULL; id: the retracted id or NULL), for bridges (avatars,
     * bookmarks). NULL: nothing. */
    void (*changed)(ps_service *s, const ps_node *n, const char *kind, const ps_item *item,
                    const char *id, void *ctx);
} ps_ops;

struct ps_service {
    char *jid;                  /* the service's address: "user@host" or "pubsub.host" */
    bool pep;                   /* a personal service: the owner is jid */
    const ps_ops *ops;
    const ps_limits *lim;       /* the module's, outlives the service */
    ps_config defaults;         /* for new nodes */
    ps_node **nodes;
    size_t n_nodes, cap_nodes;
    size_t n_items;             /* over every node */
    uint64_t seq;               /* last item seq given */
    const char *const *admins;  /* bare JIDs owning every node (NULL-terminated, borrowed), or NULL */
    void *ud;                   /* the module's */
};

/* ---- ps_service.c: services, nodes, items ---- */

/* A service at jid with no nodes; defaults: the config of new nodes (copied).
 * NULL on OOM. */
ps_service *ps_service_new(const char *jid, bool pep, const ps_ops *ops, const ps_limits *lim,
                           const ps_config *defaults);
void ps_service_free(ps_service *s);
ps_node *ps_node_find(const ps_service *s, const char *name);
/* Adds an empty node with a copy of cfg; NULL on OOM. No limits checked. */
ps_node *ps_node_add(ps_service *s, const char *name, const ps_config *cfg);
/* Removes n from s and frees it (no ops called). */
void ps_node_remove(ps_service *s, ps_node *n);
ps_item *ps_item_find(const ps_node *n, const char *id);
/* Puts it (owned from now on) last in n, replacing an item of the same id;
 * items beyond max_items go, oldest first, through ops->drop_item. */
void ps_item_put(ps_node *n, ps_item *it, void *ctx);
/* Unlinks and frees one item (no ops called). */
void ps_item_remove(ps_node *n, ps_item *it);
void ps_item_free(ps_item *it);
/* The node's effective max_items ("max" resolved, capped). */
long ps_node_max_items(const ps_node *n);
int ps_aff_get(const ps_node *n, const char *bare);
/* Sets (PS_AFF_NONE: removes) bare's affiliation; 0 or -1 on OOM. */
int ps_aff_set(ps_node *n, const char *bare, int aff);
ps_sub *ps_sub_find(const ps_node *n, const char *jid);
/* Has jid (a full JID) or its bare JID a delivering subscription? */
bool ps_node_subscribed(const ps_node *n, const char *full, const char *bare);
void ps_sub_remove(ps_node *n, ps_sub *sub);

/* ---- ps_config.c: node configuration ---- */

void ps_config_copy(ps_config *dst, const ps_config *src); /* dst freshly zeroed or cleared */
void ps_config_clear(ps_config *c);
const char *ps_access_name(int access);
const char *ps_aff_name(int aff);
int ps_aff_parse(const char *s); /* -1 when unknown */
/* Applies the fields of form f to c (on a copy: c is unchanged on error).
 * pep: access models presence and roster allowed (else refused). 0, or
 * with a static reason in *why_r: -1 an unknown field or a bad value, -2
 * a value this service does not offer (above a limit), -3 an access model
 * it does not offer.
 * ps_config_check compares instead (publish-options preconditions): 0
 * every field matches c, 1 one does not, or the errors above. */
int ps_config_apply(ps_config *c, const xmppd_form *f, const ps_limits *lim, bool pep,
                    const char **why_r);
int ps_config_check(const ps_config *c, const xmppd_form *f, const ps_limits *lim,
                    const char **why_r);
/* The configuration as a form of type (form: for editing, with options)
 * and FORM_TYPE node_config. New tree. */
xmppd_stanza *ps_config_form(const ps_config *c, const char *type, const ps_limits *lim, bool pep);
/* Meta-data form (disco#info of a node, §5.4). New tree. */
xmppd_stanza *ps_meta_form(const ps_node *n);
/* To and from stored JSON (ps_store.c). */
json_t *ps_config_json(const ps_config *c);
void ps_config_from_json(ps_config *c, const json_t *j, const ps_config *defaults);

/* ---- ps_access.c: who may do what ---- */

/* The requester's affiliation with n (PEP: the account is owner; a
 * service's admins own every node). */
int ps_affiliation_of(const ps_node *n, const char *bare);
/* May bare see n's items (access model)? 0 yes, else the error: *cond_r
 * and *ps_cond_r (pubsub#errors child or NULL) and *type_r. */
int ps_may_read(const ps_node *n, const char *bare, void *ctx, const char **type_r,
                const char **cond_r, const char **ps_cond_r);
bool ps_may_publish(const ps_node *n, const char *bare, const char *full);

/* ---- ps_iq.c: the protocol ---- */

/* One request for ps_handle_iq: ev is the IQ (get or set with a <pubsub/>
 * in either namespace), reply sends the answer (consumed). */
typedef struct ps_req {
    ps_service *svc;
    const xmppd_event *ev;
    void *ctx;
    void (*reply)(struct ps_req *r, xmppd_stanza *reply);
    void *ud;
} ps_req;

/* Answers r (exactly one reply through r->reply), then sends what the
 * request caused (notifications, a last item). */
void ps_handle_iq(ps_req *r);
/* An error reply to iq with an optional pubsub#errors child. New tree. */
xmppd_stanza *ps_error_reply(const xmppd_stanza *iq, const char *type, const char *cond,
                             const char *ps_cond, const char *text);

/* Programmatic use (mod_pep's API for bridges): publish payload (copied)
 * as item id (NULL: generated) to node (created with the defaults and
 * options when missing) on behalf of the owner; options is a
 * publish-options form or NULL. 0, or -1 with *err_r set to the error
 * condition ("conflict" for an unmet precondition). */
int ps_publish(ps_service *s, const char *node, const char *publisher, const char *id,
               const xmppd_stanza *payload, const xmppd_form *options, void *ctx,
               const char **err_r);
/* Retracts item id from node (notifying when the node's notify_retract);
 * 0, or -1 when there is no such node or item. */
int ps_retract(ps_service *s, const char *node, const char *id, void *ctx);

/* ---- ps_notify.c: notifications ---- */

/* Sends the last item of n to jid (a subscription or a resource that came
 * online), with a <delay/>. Nothing when n has no item. */
void ps_send_last(ps_service *s, const ps_node *n, const char *jid, void *ctx);
/* The notification of an item published on n, to subscribers and
 * ops->notify. */
void ps_notify_publish(ps_service *s, const ps_node *n, const ps_item *it, void *ctx);
void ps_notify_retract(ps_service *s, const ps_node *n, const char *id, void *ctx);
void ps_notify_purge(ps_service *s, const ps_node *n, void *ctx);
/* Before the node goes: subscribers hear of its deletion. */
void ps_notify_delete(ps_service *s, const ps_node *n, void *ctx);
void ps_notify_config(ps_service *s, const ps_node *n, void *ctx);
/* <item id publisher?>payload</item> in ns (#event or the pubsub one),
 * payload included when with_payload. New tree. */
xmppd_stanza *ps_item_element(const ps_item *it, const char *ns, bool with_payload,
                              bool with_publisher);

/* ---- ps_disco.c: service discovery (XEP-0060 §5) ---- */

/* Fills a disco#info <query/> (being built for `about` asked by `from`)
 * for the service (node NULL) or one node. false when the node is unknown
 * or hidden from the requester (the caller answers item-not-found). */
bool ps_disco_info(ps_service *s, xmppd_stanza *q, const char *node, const char *from_bare,
                   void *ctx);
/* The same for disco#items: the nodes, or a node's items. */
bool ps_disco_items(ps_service *s, xmppd_stanza *q, const char *node, const char *from_bare,
                    void *ctx);
/* Adds a service's features (pubsub#...) to q; pep: a personal one's. */
void ps_disco_features(bool pep, xmppd_stanza *q);

/* ---- ps_store.c: services as stored JSON ---- */

/* Keys of a service's values in a keyval store: "n:NODE" (json of the
 * node's configuration, affiliations, subscriptions) and "i:NODE\nID"
 * (one item). malloc'd. */
char *ps_key_node(const char *node);
char *ps_key_item(const char *node, const char *id);
json_t *ps_node_json(const ps_node *n);
json_t *ps_item_json(const ps_item *it);
/* Fills s from a kv_get_all object; entries that do not parse are
 * skipped (counted in *bad_r). 0 or -1 on OOM. */
int ps_service_load(ps_service *s, const json_t *all, size_t *bad_r);

#endif
