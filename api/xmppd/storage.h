/* Storage: named stores per host, provided by a storage driver module
 * (storage_sqlite by default). Two shapes:
 *
 *  - keyval: (user, key) -> JSON value. key "" is the usual single value
 *    per user (a roster, a vCard); other keys make a map (private XML).
 *  - archive: per user an ordered list of items {id, when, with, value},
 *    queried by time, peer, ids and id paging (offline messages, MAM).
 *    Items keep the order of their appends. An item's id is the one its
 *    appender chose (xmppd_archive_append_id) or else one the driver
 *    assigns (a decimal number); ids are unique within a user's archive in
 *    a store and are what after_id, before_id and ids name. A store should
 *    use one kind of id: a chosen id that reads as a number may hide the
 *    driver-assigned id of the same text.
 *
 * Every operation is asynchronous; its callback runs exactly once on the
 * loop thread, never from inside the call, and only after the change is
 * durable (a write that reports OK is committed to disk). If the module
 * that opened the store unloads first, the callback runs with
 * XMPPD_STORE_CANCELLED while the module unloads (before its unload()):
 * free what ud holds and send nothing; whether a cancelled write happened
 * is unknown. A write started while the module unloads (from unload()) is
 * carried out but never answered; a read is not started then. JSON values
 * passed in are borrowed (the driver copies what it keeps); values passed
 * to callbacks are borrowed for the call (json_incref to keep). */
#ifndef XMPPD_STORAGE_H
#define XMPPD_STORAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "module.h"

typedef struct xmppd_store xmppd_store; /* kernel-owned handle, per instance */

enum xmppd_store_kind { XMPPD_STORE_KEYVAL = 0, XMPPD_STORE_ARCHIVE = 1 };

enum xmppd_store_status {
    XMPPD_STORE_OK = 0,
    XMPPD_STORE_NOT_FOUND = 1, /* kv_get of a missing key */
    XMPPD_STORE_ERROR = -1,    /* backend failure: nothing was changed */
    XMPPD_STORE_CANCELLED = -2 /* the calling module unloads: free ud, answer nobody */
};

/* Opens store `name` for m's host (global modules: host-less). The handle is
 * closed when m unloads. NULL when no storage driver is loaded. */
xmppd_store *xmppd_store_open(xmppd_module *m, const char *name, enum xmppd_store_kind kind);

/* Result callbacks: status is an xmppd_store_status; value is borrowed for
 * the call (NULL unless OK). */
typedef void (*xmppd_store_done_cb)(int status, void *ud);
typedef void (*xmppd_kv_get_cb)(int status, json_t *value, void *ud);

/* user: the account localpart ("" for host-wide data); key: "" for the one
 * value per account, or a map key. Strings are copied. cb gets OK with the
 * value, NOT_FOUND, or ERROR (backend down: nothing read). */
void xmppd_kv_get(xmppd_store *st, const char *user, const char *key, xmppd_kv_get_cb cb, void *ud);
/* value NULL deletes the key. cb may be NULL. */
void xmppd_kv_set(xmppd_store *st, const char *user, const char *key, json_t *value,
                  xmppd_store_done_cb cb, void *ud);
/* All keys of a user as one JSON object {key: value}; {} when none. */
void xmppd_kv_get_all(xmppd_store *st, const char *user, xmppd_kv_get_cb cb, void *ud);
/* Lists users having any key in this store, as a JSON array of strings. */
void xmppd_kv_users(xmppd_store *st, xmppd_kv_get_cb cb, void *ud);

typedef struct xmppd_archive_item {
    const char *id;   /* the item's id (see above) */
    int64_t when_ms;  /* wall-clock ms */
    const char *with; /* peer JID as appended (bare or full), or NULL */
    json_t *value;
} xmppd_archive_item;

/* Which items a query or delete matches: every condition given must hold.
 * An after_id, before_id or ids entry that names no item of the user's
 * archive makes a query answer XMPPD_STORE_NOT_FOUND (and a delete match
 * nothing). */
typedef struct xmppd_archive_query {
    int64_t start_ms, end_ms; /* inclusive bounds; 0: unbounded */
    const char *with;         /* NULL: any; a bare JID matches the items
                                 appended with it or any full JID of it, a
                                 full JID only those appended with exactly it */
    const char *after_id;     /* RSM: items after this id */
    const char *before_id;    /* RSM: items before this id */
    size_t max;               /* 0: no limit */
    bool reverse;             /* newest first (used with before_id paging) */
    /* Since ABI 2.1 (a module built against 2.0 reads as NULL / 0): */
    const char *const *ids;   /* non-NULL: only the items with these ids */
    size_t n_ids;             /* entries of ids, at most XMPPD_ARCHIVE_MAX_IDS */
} xmppd_archive_filter; /* not "xmppd_archive_query": that is the function */

#define XMPPD_ARCHIVE_MAX_IDS 256 /* ids per filter; more: XMPPD_STORE_ERROR */
#define XMPPD_ARCHIVE_ID_MAX 64   /* bytes of an id chosen by the appender */

typedef void (*xmppd_archive_append_cb)(int status, const char *id, void *ud);
/* items borrowed for the call; complete: no more items beyond max. */
typedef void (*xmppd_archive_query_cb)(int status, const xmppd_archive_item *items, size_t n,
                                       bool complete, void *ud);
typedef void (*xmppd_archive_count_cb)(int status, size_t n, void *ud);

/* Appends value (copied) to user's archive; cb (may be NULL) gets the new
 * item's id (borrowed for the call) once it is durable. */
void xmppd_archive_append(xmppd_store *st, const char *user, const char *with, int64_t when_ms,
                          json_t *value, xmppd_archive_append_cb cb, void *ud);
/* Since ABI 2.1: as xmppd_archive_append, with the item's id chosen by the
 * caller (copied; 1 to XMPPD_ARCHIVE_ID_MAX bytes, unique within user's
 * archive in this store), so the caller knows it before the write is done
 * (MAM stamps it on the message it routes). An id already used there, or
 * a driver without this operation, answers ERROR and stores nothing. cb
 * gets the id back. */
void xmppd_archive_append_id(xmppd_store *st, const char *user, const char *id, const char *with,
                             int64_t when_ms, json_t *value, xmppd_archive_append_cb cb, void *ud);
/* The items q matches (q NULL: all), oldest first unless q->reverse, at
 * most q->max; complete tells whether more match beyond them. */
void xmppd_archive_query(xmppd_store *st, const char *user, const xmppd_archive_filter *q,
                         xmppd_archive_query_cb cb, void *ud);
/* Deletes the items q matches (q NULL: the whole archive of user). */
void xmppd_archive_delete(xmppd_store *st, const char *user, const xmppd_archive_filter *q,
                          xmppd_store_done_cb cb, void *ud);
/* Number of items in user's archive. */
void xmppd_archive_count(xmppd_store *st, const char *user, xmppd_archive_count_cb cb, void *ud);
/* Replaces the value of item id of user's archive with value (copied),
 * keeping its id, time and peer: a retracted or moderated message leaves a
 * tombstone where it was (ABI 2.2). cb (may be NULL) gets OK, NOT_FOUND when
 * user's archive holds no item id, or ERROR (also from a driver built
 * before this call existed). */
void xmppd_archive_replace(xmppd_store *st, const char *user, const char *id, json_t *value,
                           xmppd_store_done_cb cb, void *ud);

/* ---- for storage drivers ----
 * A driver module (XMPPD_MOD_GLOBAL) provides this table in load(); the
 * configuration's "storage" key picks one driver by name. host is "" for
 * host-less stores. Each op must call cb exactly once, later, on the loop
 * thread (xmppd_loop_post from a driver thread). dd is the driver's own
 * pointer given to xmppd_storage_provide. */
#define XMPPD_STORAGE_DRIVER_VERSION 1
typedef struct xmppd_storage_driver {
    uint32_t version; /* XMPPD_STORAGE_DRIVER_VERSION */
    uint32_t size;    /* sizeof(xmppd_storage_driver) */
    const char *name; /* "sqlite", "pgsql" */
    void (*kv_get)(void *dd, const char *host, const char *store, const char *user,
                   const char *key, xmppd_kv_get_cb cb, void *ud);
    void (*kv_set)(void *dd, const char *host, const char *store, const char *user,
                   const char *key, json_t *value, xmppd_store_done_cb cb, void *ud);
    void (*kv_get_all)(void *dd, const char *host, const char *store, const char *user,
                       xmppd_kv_get_cb cb, void *ud);
    void (*kv_users)(void *dd, const char *host, const char *store, xmppd_kv_get_cb cb, void *ud);
    void (*archive_append)(void *dd, const char *host, const char *store, const char *user,
                           const char *with, int64_t when_ms, json_t *value,
                           xmppd_archive_append_cb cb, void *ud);
    void (*archive_query)(void *dd, const char *host, const char *store, const char *user,
                          const xmppd_archive_filter *q, xmppd_archive_query_cb cb, void *ud);
    void (*archive_delete)(void *dd, const char *host, const char *store, const char *user,
                           const xmppd_archive_filter *q, xmppd_store_done_cb cb, void *ud);
    void (*archive_count)(void *dd, const char *host, const char *store, const char *user,
                          xmppd_archive_count_cb cb, void *ud);
    /* Removes everything of user on host in every store (account deletion). */
    void (*purge_user)(void *dd, const char *host, const char *user, xmppd_store_done_cb cb, void *ud);
    /* Blocks until every queued write is durable (shutdown, xmppctl exit). */
    void (*flush)(void *dd);
    /* Since ABI 2.1 (a table with a smaller size lacks it): append with an
     * id chosen by the caller (xmppd_archive_append_id). */
    void (*archive_append_id)(void *dd, const char *host, const char *store, const char *user,
                              const char *id, const char *with, int64_t when_ms, json_t *value,
                              xmppd_archive_append_cb cb, void *ud);
    /* Since ABI 2.2 (a table with a smaller size lacks it): replace an
     * item's value in place (xmppd_archive_replace). */
    void (*archive_replace)(void *dd, const char *host, const char *store, const char *user,
                            const char *id, json_t *value, xmppd_store_done_cb cb, void *ud);
} xmppd_storage_driver;

/* Registers m's driver from load() (d and dd stay the driver's and must
 * live until its unload). 0, or -1 when another module provides a driver
 * of that name, or d is of an unsupported version. A newer instance of the
 * same module (a reload) takes the name over; operations already handed
 * to the old instance are finished by it (its unload must flush them). */
int xmppd_storage_provide(xmppd_module *m, const xmppd_storage_driver *d, void *dd);

/* Purges a user from every store of host h through the active driver; cb
 * (may be NULL) gets the outcome. The kernel does this itself when an
 * account is removed through xmppd_auth_remove. */
void xmppd_storage_purge_user(xmppd_host *h, const char *user, xmppd_store_done_cb cb, void *ud);

#endif
