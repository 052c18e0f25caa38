/* Session manager: the bound resources of each account on a host. */
#include <stdlib.h>
#include <string.h>

#include "session/session.h"
#include "util/strmap.h"

struct sm_host {
    strmap *users; /* node -> first session (list through next_resource) */
    size_t n_sessions; /* local ones: remote sessions are not counted */
};

const session_observer *g_session_observer;

void session_set_observer(const session_observer *ob)
{
    g_session_observer = ob;
}

static sm_host *host_sm(xmppd_host *h)
{
    if (!h->sm && (h->sm = calloc(1, sizeof(*h->sm))) && !(h->sm->users = strmap_new())) {
        free(h->sm);
        h->sm = NULL;
    }
    return h->sm;
}

void sm_host_free(xmppd_host *h)
{
    if (!h->sm)
        return;
    strmap_free(h->sm->users);
    free(h->sm);
    h->sm = NULL;
}

int sm_bind(xmppd_session *s, const char *resource)
{
    sm_host *sm = host_sm(s->host);
    if (!sm)
        return -1;
    xmppd_session *head = strmap_get(sm->users, s->user);
    unsigned n = 0;
    xmppd_session *old = NULL;
    for (xmppd_session *o = head; o; o = o->next_resource) {
        n++;
        if (strcmp(o->jid->resource, resource) == 0)
            old = o;
    }
    if (old) {
        /* RFC 6120 §7.7.2.2: the newer session wins; the older one ends. */
        log_kernel("sm", XMPPD_LOG_INFO, "%s: replaced by a new login", old->jid->full);
        session_close(old, "conflict", "Replaced by new connection");
        sm_unbind(old);
        head = strmap_get(sm->users, s->user);
        n--;
    }
    if (n >= g_server.cfg->limits.max_resources)
        return -1;
    s->next_resource = head;
    if (strmap_put(sm->users, s->user, s) < 0)
        return -1;
    s->in_sm = true;
    if (!s->remote) {
        sm->n_sessions++;
        if (g_session_observer && g_session_observer->bound)
            g_session_observer->bound(s);
    }
    return 0;
}

void sm_unbind(xmppd_session *s)
{
    if (!s->in_sm)
        return;
    sm_host *sm = s->host->sm;
    xmppd_session *head = strmap_get(sm->users, s->user);
    xmppd_session **pp = &head;
    while (*pp && *pp != s)
        pp = &(*pp)->next_resource;
    if (*pp)
        *pp = s->next_resource;
    if (head)
        strmap_put(sm->users, s->user, head);
    else
        strmap_del(sm->users, s->user);
    s->next_resource = NULL;
    s->in_sm = false;
    if (!s->remote) {
        sm->n_sessions--;
        if (g_session_observer && g_session_observer->unbound)
            g_session_observer->unbound(s);
    }
}

XMPPD_EXPORT int xmppd_user_sessions(xmppd_host *h, const char *node, int (*fn)(xmppd_session *s, void *ud), void *ud)
{
    if (!h || !h->sm || !node)
        return 0;
    int n = 0;
    xmppd_session *next;
    for (xmppd_session *s = strmap_get(h->sm->users, node); s; s = next) {
        next = s->next_resource; /* fn may close s */
        n++;
        if (fn(s, ud))
            break;
    }
    return n;
}

XMPPD_EXPORT xmppd_session *xmppd_session_find(const xmppd_jid *full)
{
    if (!full || !full->node || !full->resource)
        return NULL;
    xmppd_host *h = xmppd_host_find(full->domain);
    if (!h || !h->sm)
        return NULL;
    for (xmppd_session *s = strmap_get(h->sm->users, full->node); s; s = s->next_resource)
        if (strcmp(s->jid->resource, full->resource) == 0)
            return s;
    return NULL;
}

/* ---- walks over every bound session (control socket, reloads) ------------- */

typedef struct sess_vec {
    xmppd_session **v;
    size_t n, cap;
    bool oom;
} sess_vec;

static int collect_user(const char *node, void *value, void *ud)
{
    sess_vec *sv = ud;
    for (xmppd_session *s = value; s; s = s->next_resource) {
        if (sv->n == sv->cap) {
            size_t cap = sv->cap ? sv->cap * 2 : 64;
            xmppd_session **v = realloc(sv->v, cap * sizeof(*v));
            if (!v) {
                sv->oom = true;
                return 1;
            }
            sv->v = v;
            sv->cap = cap;
        }
        sv->v[sv->n++] = xmppd_session_ref(s);
    }
    return 0;
}

/* Snapshot (with references) of the bound sessions of h, or of every host. */
static void collect_sessions(const xmppd_host *h, sess_vec *sv)
{
    for (size_t i = 0; i < g_server.n_hosts; i++) {
        const xmppd_host *hh = g_server.hosts[i];
        if ((h && hh != h) || !hh->sm)
            continue;
        strmap_foreach(hh->sm->users, collect_user, sv);
        if (sv->oom)
            log_kernel("sm", XMPPD_LOG_ERROR, "out of memory: a walk over sessions is incomplete");
    }
}

XMPPD_EXPORT int xmppd_host_sessions(xmppd_host *h, int (*fn)(xmppd_session *s, void *ud), void *ud)
{
    sess_vec sv = { 0 };
    collect_sessions(h, &sv);
    int n = 0;
    bool stop = false;
    for (size_t i = 0; i < sv.n; i++) {
        /* fn may close sessions, including ones not visited yet; sessions
         * of other nodes are theirs to walk */
        if (!stop && sv.v[i]->in_sm && !sv.v[i]->remote) {
            n++;
            stop = fn(sv.v[i], ud) != 0;
        }
        xmppd_session_unref(sv.v[i]);
    }
    free(sv.v);
    return n;
}

size_t sm_count(const xmppd_host *h)
{
    size_t n = 0;
    for (size_t i = 0; i < g_server.n_hosts; i++) {
        const xmppd_host *hh = g_server.hosts[i];
        if ((!h || hh == h) && hh->sm)
            n += hh->sm->n_sessions;
    }
    return n;
}

void sm_slots_move(const xmppd_module *from, const xmppd_module *to)
{
    sess_vec sv = { 0 };
    collect_sessions(from->host, &sv);
    for (size_t i = 0; i < sv.n; i++) {
        xmppd_session *s = sv.v[i];
        for (size_t k = 0; k < s->n_slots; k++) {
            if (s->slots[k].m != from)
                continue;
            if (!to)
                s->slots[k] = s->slots[--s->n_slots];
            else if (!xmppd_session_get(s, to))
                s->slots[k].m = to;
            /* else: the new instance set its own; the old one's stays for
             * its unload() to free, and is dropped after that */
            break;
        }
        xmppd_session_unref(s);
    }
    free(sv.v);
}
