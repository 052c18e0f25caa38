/* Placement across the nodes of a cluster, as the router and the component
 * streams see it (session layer: below both s2s/ and cluster/, so neither
 * calls the other).
 *
 * - Placed domains (xmppd_cluster_place, api/xmppd/cluster.h): a JID with
 *   a localpart at such a domain lives on one node; the router offers a
 *   stanza for it to the cluster before the serving module sees it. A
 *   domain placed whole (xmppd_cluster_place_service) lives on one node,
 *   the domain itself included.
 * - Components (XEP-0114, s2s/component.c): a component attached here is
 *   announced; a stanza for a component domain not attached here is
 *   offered to the cluster, which sends it to the node it is attached to.
 *
 * The cluster layer registers its side with place_set_ops; without it
 * (one node) nothing is placed elsewhere. */
#ifndef XMPPD_SESSION_PLACE_H
#define XMPPD_SESSION_PLACE_H

#include <stdbool.h>

#include "core/core.h"

typedef struct place_ops {
    /* ev->to (with a localpart, or any JID of a domain placed whole) is at
     * a placed domain, placed by key (its bare JID, or that domain): true
     * when the stanza was taken (sent to its node, or bounced); false:
     * handle it here. */
    bool (*route)(xmppd_event *ev, const char *key);
    /* Is bare placed on this node? */
    bool (*mine)(const char *bare);
    /* ev->to's domain is not attached here: true when the stanza was
     * taken (a node where a component serves it has it). */
    bool (*component)(xmppd_event *ev);
    /* Is domain (exactly) attached on another node? */
    bool (*component_elsewhere)(const char *domain);
    /* A component attached here (subdomains: it serves them too), or
     * detached. */
    void (*attached)(const char *domain, bool subdomains);
    void (*detached)(const char *domain);
    /* The directory of placed JIDs (pdir.c): bare is held here with
     * value, or no longer (NULL). */
    void (*dir_publish)(const char *bare, const char *value);
    /* Reads every live node's entries for domain: done(req, ok, n, jids,
     * values) runs once, later (sorted, each JID once; borrowed). 0, or
     * -1 (Redis away, OOM): done never runs. */
    int (*dir_read)(const char *domain,
                    void (*done)(void *req, bool ok, size_t n, const char *const *jids,
                                 const char *const *values),
                    void *req);
} place_ops;

/* The cluster's side (NULL: none). */
void place_set_ops(const place_ops *ops);
const place_ops *place_get_ops(void);

/* router.c: a stanza for node@domain of a placed domain; true when taken. */
bool place_route(xmppd_event *ev);
/* router.c: a stanza for a domain that is not a host nor served by a
 * module, before the component route: true when a component attached to
 * another node takes it. */
bool place_component(xmppd_event *ev);

/* component.c: a component took its domain (handshake done), or left it. */
void place_component_attached(const char *domain, bool subdomains);
void place_component_detached(const char *domain);
/* component.c: is domain attached on another node (a second component
 * for it gets <conflict/>, as on one node)? */
bool place_component_elsewhere(const char *domain);
/* The components attached here: fn(domain, subdomains, ud) for each. */
void place_components_foreach(void (*fn)(const char *domain, bool subdomains, void *ud), void *ud);

/* Is domain placed by m (xmppd_cluster_place)? */
bool place_placed_by(const char *domain, const xmppd_module *m);
/* pdir.c: the directory entries held here: fn(bare, value, ud) for each
 * (Redis came back: they are written again). */
void place_dir_foreach(void (*fn)(const char *bare, const char *value, void *ud), void *ud);

/* The cluster: the set of live nodes changed; each placed domain's module
 * hears it (its moved callback). */
void place_moved(void);

#endif
