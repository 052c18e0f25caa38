/* Shared by the files of mod_pep (not an API: see pep_api.h). */
#ifndef XMPPD_PEP_H
#define XMPPD_PEP_H

#include <stdbool.h>

#include <xmppd/xmppd.h>

#include "../caps/caps_api.h"
#include "../pubsub/ps.h"
#include "../roster/roster_api.h"
#include "pep_api.h"

#ifndef XMPPD_STORE_CANCELLED
#define XMPPD_STORE_CANCELLED (-2) /* the module unloaded before the answer (storage.h) */
#endif

typedef struct pep_state pep_state;

/* A remote entity (another server's full JID) that sent available presence
 * to the account, with its caps: it hears of the account's events
 * (XEP-0163 §4.3.1) when the account's roster says it may. */
typedef struct pep_remote {
    char *jid, *node, *ver, *hash; /* node/ver NULL: no caps */
    struct pep_remote *next;
} pep_remote;

typedef struct pep_waiter pep_waiter;

/* One account's service, loaded on first use and kept while the account
 * is online or the cache has room. */
typedef struct pep_svc {
    pep_state *st;
    char *user;           /* the account's localpart */
    ps_service *ps;       /* NULL while loading */
    bool loading;
    bool known;           /* the account exists (has data, a session, or was checked) */
    int busy;             /* jobs between the load and their end */
    bool stale;           /* another node changed it: dropped once idle */
    pep_waiter *waiters;  /* jobs waiting for the load */
    pep_remote *remotes;
    size_t n_remotes;
    struct pep_svc *older, *newer; /* use order, for eviction */
} pep_svc;

/* What an operation on a service has at hand: the engine gets it as ctx. */
typedef struct pep_ctx {
    pep_state *st;
    pep_svc *svc;
    roster *r;                  /* the owner's roster, or NULL when not loaded */
    const roster_api *rapi;
    const char *presence_bare;  /* a bare JID known to see the owner's presence, or NULL */
    const char *publisher_full; /* the publishing resource (XEP-0163 §4.3.1 replyto), or NULL */
} pep_ctx;

/* ctx NULL: the service could not be loaded (storage failure). */
typedef void (*pep_fn)(pep_ctx *ctx, void *ud);

struct pep_state {
    xmppd_module *m;
    xmppd_host *host;
    xmppd_store *store;
    ps_limits lim;
    ps_config defaults;
    ps_ops ops;
    pep_api api;
    void *tree;                 /* tsearch tree of pep_svc *, by user */
    pep_svc *oldest, *newest;
    size_t n_svc, max_svc;
    size_t max_remotes;         /* remote entities tracked per account */
};

/* ---- pep_cache.c: services, their loading and storage ---- */

/* Runs fn(ctx, ud) with user's service loaded and, when with_roster, the
 * owner's roster (NULL when the roster module is absent or fails). drop(ud)
 * frees ud when the module unloads before fn could run. fn may run before
 * this returns. */
void pep_with_service(pep_state *st, const char *user, bool with_roster, pep_fn fn,
                      void (*drop)(void *ud), void *ud);
/* The service of user if it is in memory and loaded, else NULL. */
pep_svc *pep_cached(pep_state *st, const char *user);
/* Forgets user's service (account deleted). */
void pep_forget(pep_state *st, const char *user);
/* Another node of the cluster stored a change of user's service: our copy
 * goes now, or when its running jobs end (the next use loads it again). */
void pep_invalidated(pep_state *st, const char *user);
/* Every cached, loaded service, for fn (stops early on nonzero). */
void pep_foreach(pep_state *st, int (*fn)(pep_svc *svc, void *ud), void *ud);
void pep_cache_free(pep_state *st);
/* The ps_ops storage functions. */
void pep_store_node(ps_service *s, const ps_node *n, void *ctx);
void pep_store_item(ps_service *s, const ps_node *n, const ps_item *it, void *ctx);
void pep_drop_item(ps_service *s, const ps_node *n, const char *id, void *ctx);
void pep_drop_node(ps_service *s, const ps_node *n, void *ctx);

/* ---- pep_notify.c: who hears of what ---- */

/* ps_ops: access facts from the owner's roster, node creation. */
bool pep_presence_sub(const ps_service *s, const char *bare, void *ctx);
bool pep_in_groups(const ps_service *s, const char *bare, char *const *groups, void *ctx);
bool pep_may_create(const ps_service *s, const xmppd_jid *from, void *ctx);
/* ps_ops: one explicit subscriber; everyone else interested. */
void pep_send(ps_service *s, const char *to, xmppd_stanza *msg, void *ctx);
void pep_notify(ps_service *s, const ps_node *n, const ps_notification *nf, void *ctx);
/* Hooks: a session's initial presence, its caps known, presence from
 * other servers' entities, sessions ending. */
int pep_on_presence(xmppd_event *ev, void *ud);
int pep_on_caps_resolved(xmppd_event *ev, void *ud);
int pep_on_presence_in(xmppd_event *ev, void *ud);
void pep_remotes_free(pep_svc *svc);

/* ---- pep_api.c: the API for other modules and the change event ---- */

void pep_api_init(pep_state *st);
void pep_changed(ps_service *s, const ps_node *n, const char *kind, const ps_item *item,
                 const char *id, void *ctx);

#endif
