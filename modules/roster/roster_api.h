/* The roster module's API for other modules (presence, later s2s and
 * blocking), published with xmppd_provide(m, "roster", &api) per host and
 * found with xmppd_use(host, "roster"). Look it up per use: it goes away
 * when the roster module unloads.
 *
 * A roster is one account's contact list (RFC 6121 §2). The roster module
 * keeps the rosters of online accounts in memory; others are loaded on
 * demand and dropped again once their callbacks have run. A `roster *`
 * handed to a callback is valid during that callback (and, for an account
 * with bound sessions, until its last session closes): never keep it across
 * loop turns; load again instead. */
#ifndef XMPPD_ROSTER_API_H
#define XMPPD_ROSTER_API_H

#include <stdbool.h>
#include <stdint.h>

#include <xmppd/module.h>
#include <xmppd/stanza.h>

/* 3: overlay_changed, and rosters show a roster overlay's items (below).
 * 4: set_item, remove_item (an administrator's changes, written before
 * they are answered) and groups. The fields of earlier versions are
 * unchanged: a module built against version N works with a newer table
 * (check version >= N and size). */
#define ROSTER_API_VERSION 4

/* Subscription bits (RFC 6121 §2.1.2.5): none = 0, both = TO | FROM. */
enum {
    ROSTER_SUB_TO = 1,   /* the account sees the contact's presence */
    ROSTER_SUB_FROM = 2, /* the contact sees the account's presence */
};

typedef struct roster roster; /* owned by the roster module */

/* A read-only view of one item; strings are borrowed from the roster and
 * valid until it changes. */
typedef struct roster_item {
    const char *jid;  /* bare JID, prepared */
    const char *name; /* NULL when unset */
    unsigned sub;     /* ROSTER_SUB_* bits */
    bool ask;         /* pending out: the account asked to subscribe */
    bool approved;    /* pre-approved (RFC 6121 §3.4) */
} roster_item;

/* r is NULL when the roster could not be loaded (storage failure), or
 * when the caller unloads before the load ended (then while it unloads). */
typedef void (*roster_load_cb)(roster *r, void *ud);

/* The outcome of a write (set_item, remove_item). */
enum {
    ROSTER_DONE = 0,       /* stored, pushed */
    ROSTER_FAILED = -1,    /* storage failed: the change is in memory only */
    ROSTER_CANCELLED = -2, /* the caller unloads (then while it unloads): answer nobody */
};
typedef void (*roster_done_cb)(int result, void *ud);

typedef struct roster_api {
    uint32_t version; /* ROSTER_API_VERSION */
    uint32_t size;    /* sizeof(roster_api) */

    /* Calls cb with node's roster: at once when it is in memory, else once
     * storage answered (loads of one account are shared). caller: the
     * asking module (xmppd_call: if it unloads first, cb gets NULL then). */
    void (*load)(const struct roster_api *api, xmppd_module *caller, const char *node,
                 roster_load_cb cb, void *ud);
    /* The roster of node if it is in memory, else NULL. */
    roster *(*cached)(const struct roster_api *api, const char *node);

    /* Fills *it_r with the item for bare JID jid; false when there is none. */
    bool (*get)(const roster *r, const char *jid, roster_item *it_r);
    /* Calls fn for every item; stops early when fn returns nonzero. */
    void (*foreach)(const roster *r, int (*fn)(const roster_item *it, void *ud), void *ud);

    /* Sets the subscription state of jid's item, creating it (no name, no
     * groups) when absent; on a change bumps the version, persists it and
     * pushes the item to the account's interested resources.
     * 1 changed, 0 nothing to change, -1 refused (roster full, OOM). */
    int (*set_state)(roster *r, const char *jid, unsigned sub, bool ask, bool approved);

    /* Pending inbound subscription requests (RFC 6121 §3.1.3), kept apart
     * from the items (a request creates no item). pending_add stores a copy
     * of req (replacing an earlier one from jid); both persist. 0 or -1. */
    int (*pending_add)(roster *r, const char *jid, const xmppd_stanza *req);
    int (*pending_remove)(roster *r, const char *jid);
    bool (*pending_has)(const roster *r, const char *jid);
    /* Calls fn with each stored request (a new tree the callee borrows). */
    void (*pending_foreach)(const roster *r, void (*fn)(const char *jid, xmppd_stanza *req, void *ud),
                            void *ud);

    /* Is jid's item in the roster group `group` (exact name)? false when
     * there is no item. Added after the first release: check size. */
    bool (*in_group)(const roster *r, const char *jid, const char *group);

    /* Version 3: the roster overlay's items of node for jid changed (its
     * provider calls this after it changed them): the item as node now
     * sees it, or its removal, is pushed to node's interested resources
     * (RFC 6121 §2.1.6) when node's roster is in memory. */
    void (*overlay_changed)(const struct roster_api *api, const char *node, const char *jid);

    /* Version 4: sets jid's item as an administrator would (ejabberd's
     * add_rosteritem): name (NULL: none), the n_groups groups (each 1 to
     * 1023 bytes, no repeats), and the subscription when sub >= 0 (a
     * ROSTER_SUB_* mask; ask and approved are kept), creating the item
     * when absent; the change is stored, then pushed to the account's
     * interested resources (RFC 6121 §2.1.6), then done runs once (caller:
     * xmppd_call, as for load). Returns 0 (done will run), or -1 at once
     * with nothing changed and done never run: a bad name or group, the
     * roster is full (max_items), OOM, caller unloading. r is the roster a
     * load callback was given, used during that callback only. */
    int (*set_item)(const struct roster_api *api, xmppd_module *caller, roster *r, const char *jid,
                    const char *name, const char *const *groups, size_t n_groups, int sub,
                    roster_done_cb done, void *ud);
    /* Version 4: removes jid's stored item and a pending request from it,
     * with the presence a client's remove sends (RFC 6121 §2.5.2), stored,
     * pushed, then done. 0 (done will run), 1 no such item (nothing done),
     * -1 refused: an item of a roster overlay (shared group), OOM. */
    int (*remove_item)(const struct roster_api *api, xmppd_module *caller, roster *r,
                       const char *jid, roster_done_cb done, void *ud);
    /* Version 4: calls fn with each group of jid's item (stored and the
     * overlay's joined, each once); stops when fn returns nonzero. */
    void (*groups)(const roster *r, const char *jid, int (*fn)(const char *group, void *ud),
                   void *ud);
} roster_api;

/* ---- roster overlays ----
 * Items another module puts into rosters without storing them (shared
 * roster groups: mod_shared_roster). It publishes this table with
 * xmppd_provide(m, "roster_overlay", &ov) on its host; the roster module
 * looks it up per use and merges its items into every view of a roster
 * (get, foreach, in_group, roster gets and pushes): subscription bits are
 * or-ed with the stored item's, the stored name wins, groups are joined.
 * Overlay items are never stored, do not count against max_items, and a
 * client cannot remove them (<not-allowed/>); set_state never stores the
 * bits the overlay implies. The roster version a client sees joins the
 * stored version and the overlay's. The overlay answers from memory: its
 * calls are synchronous. */
#define ROSTER_OVERLAY_VERSION 1

/* One overlay item; strings borrowed until the overlay's next call. */
typedef struct roster_contact {
    const char *jid;            /* bare JID, prepared */
    const char *name;           /* NULL: none */
    const char *const *groups;  /* NULL-terminated */
    unsigned sub;               /* ROSTER_SUB_* the overlay implies */
} roster_contact;

typedef struct roster_overlay {
    uint32_t version; /* ROSTER_OVERLAY_VERSION */
    uint32_t size;    /* sizeof(roster_overlay) */
    /* Fills *c with node's overlay item for bare JID jid; false: none. */
    bool (*get)(const struct roster_overlay *ov, const char *node, const char *jid, roster_contact *c);
    /* Calls fn for each of node's overlay items; stops when fn returns
     * nonzero. fn must not call the overlay. */
    void (*foreach)(const struct roster_overlay *ov, const char *node,
                    int (*fn)(const roster_contact *c, void *ud), void *ud);
    /* A token that changes whenever node's overlay items may have
     * changed ("" when it has none); part of the roster version. */
    const char *(*token)(const struct roster_overlay *ov, const char *node);
} roster_overlay;

#endif
