/* Replicas of session state for other nodes (api/xmppd/cluster.h): the
 * SDK functions live here, in an API layer; the cluster layer, above,
 * plugs in the Redis side. Without a cluster there is no backend and the
 * functions say so. */
#ifndef XMPPD_SESSION_REPLICA_H
#define XMPPD_SESSION_REPLICA_H

#include "session/session.h"
#include "xmppd/cluster.h"

typedef struct replica_backend {
    xmppd_replica *(*open)(xmppd_module *m, xmppd_session *s, const char *id, uint64_t ttl_ms,
                           void (*release)(void *ud), void *ud);
    void (*set_in)(xmppd_replica *r, uint32_t in_h);
    void (*push)(xmppd_replica *r, uint32_t seq, const xmppd_stanza *st);
    void (*drop)(xmppd_replica *r, size_t n);
    void (*restart)(xmppd_replica *r);
    void (*close)(xmppd_replica *r, bool erase);
    int (*take)(xmppd_module *m, xmppd_host *h, const char *user, const char *id,
                xmppd_replica_cb cb, void *ud);
} replica_backend;

/* Registered by the cluster layer while a cluster runs; NULL: none. */
void replica_set_backend(const replica_backend *b);

#endif
