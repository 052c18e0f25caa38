/* The room service's answers about all its rooms, cluster-wide
 * (docs/cluster.md, "Components, rooms and s2s across nodes"): each node
 * lists the rooms it holds in the cluster's directory of placed JIDs
 * (xmppd_cluster_publish), with what the other nodes need of them: the
 * name, whether disco#items lists it, its owners, and the node (a new
 * owner waits for a room another node still holds, handover.c). The room list
 * (XEP-0045 §6.3) and the limits on creation (max_rooms,
 * max_rooms_per_user, §10.1.1) read every node's list. Without a cluster
 * (or with Redis away) they use the rooms held here, as one server does.
 *
 * A creation checked against the cluster waits for the read; the service's
 * other stanzas wait behind it (svc->held, as during a restore), so two
 * creations on this node are counted one after the other. Two nodes may
 * still let one creation each through at the same instant: the limits are
 * exact up to creations racing on different nodes within a Redis round
 * trip. */
#include <stdlib.h>
#include <string.h>

#include "muc.h"

/* Owners listed per room: the directory value stays small (the kernel's
 * limit is 4096 bytes); a room with more counts for the first ones only. */
#define DIR_OWNERS_MAX 16

static json_t *dir_value(const muc_room *room)
{
    json_t *owners = json_array();
    const char *key;
    json_t *e;
    json_object_foreach(room->affs, key, e) {
        const char *a = json_string_value(json_object_get(e, "affiliation"));
        if (a && strcmp(a, "owner") == 0 && json_array_size(owners) < DIR_OWNERS_MAX)
            json_array_append_new(owners, json_string(key));
    }
    return json_pack("{s:s, s:b, s:o, s:s}", "name", room->cfg.name ? room->cfg.name : room->node,
                     "listed", !room->locked && !room->dead && room->cfg.public_room, "owners",
                     owners, "node", xmppd_cluster_node());
}

void muc_dir_update(muc_room *room)
{
    if (!xmppd_cluster_node() || room->dead)
        return; /* a room freed while busy was taken out already */
    json_t *v = dir_value(room);
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    if (!s || xmppd_cluster_publish(room->svc->m, muc_room_jid(room), s) < 0)
        xmppd_log(room->svc->m, XMPPD_LOG_WARN, "room %s: not listed for the other nodes",
                  muc_room_jid(room));
    free(s);
    json_decref(v);
}

void muc_dir_withdraw(muc_room *room)
{
    if (!xmppd_cluster_node())
        return;
    xmppd_cluster_publish(room->svc->m, muc_room_jid(room), NULL);
}

/* ---- the room list (§6.3) ------------------------------------------------------------- */

static void on_items(int status, size_t n, const char *const *jids, const char *const *values,
                     void *ud)
{
    xmppd_pending *p = ud;
    if (status == XMPPD_DIR_CANCELLED) {
        xmppd_pending_drop(p);
        return;
    }
    if (status != XMPPD_DIR_OK) {
        xmppd_pending_error(p, "wait", "remote-server-timeout", "The room list is not available "
                            "now");
        return;
    }
    muc_item *items = n ? calloc(n, sizeof(*items)) : NULL;
    json_t **docs = n ? calloc(n, sizeof(*docs)) : NULL;
    size_t k = 0;
    if (n && (!items || !docs)) {
        free(items);
        free(docs);
        xmppd_pending_error(p, "wait", "resource-constraint", NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_loads(values[i], 0, NULL);
        if (!json_is_true(json_object_get(d, "listed")) ||
            !json_is_string(json_object_get(d, "name"))) {
            json_decref(d);
            continue;
        }
        docs[k] = d;
        items[k++] = (muc_item){ jids[i], json_string_value(json_object_get(d, "name")) };
    }
    xmppd_event ev = *xmppd_pending_event(p);
    muc_items_answer(&ev, items, k);
    xmppd_pending_drop(p);
    for (size_t i = 0; i < k; i++)
        json_decref(docs[i]);
    free(docs);
    free(items);
}

bool muc_items_cluster(muc_service *svc, xmppd_event *ev)
{
    if (!xmppd_cluster_node())
        return false;
    xmppd_pending *p = xmppd_pending_new(ev);
    if (!p)
        return false;
    if (xmppd_cluster_directory(svc->m, svc->domain, on_items, p) < 0) {
        xmppd_pending_drop(p);
        return false; /* Redis away: the rooms held here */
    }
    return true;
}

/* ---- creation limits (§10.1.1) --------------------------------------------------------- */

typedef struct create_check {
    muc_service *svc;
    xmppd_pending *p;
} create_check;

/* NULL, or why the cluster's rooms refuse one more room by bare. */
static const char *over_limit(const muc_service *svc, const char *bare, bool admin, size_t n,
                              const char *const *values)
{
    if (n >= (size_t)svc->conf->max_rooms)
        return "This service holds as many rooms as it may";
    size_t owned = 0;
    for (size_t i = 0; i < n && !admin; i++) {
        json_t *d = json_loads(values[i], 0, NULL);
        size_t j;
        json_t *o;
        json_array_foreach(json_object_get(d, "owners"), j, o)
            if (json_is_string(o) && strcmp(json_string_value(o), bare) == 0)
                owned++;
        json_decref(d);
    }
    return owned >= (size_t)svc->conf->max_rooms_per_user ? "You own as many rooms as you may"
                                                           : NULL;
}

static void on_counted(int status, size_t n, const char *const *jids, const char *const *values,
                       void *ud)
{
    create_check *c = ud;
    muc_service *svc = c->svc;
    xmppd_pending *p = c->p;
    free(c);
    if (status == XMPPD_DIR_CANCELLED) {
        xmppd_pending_drop(p);
        return;
    }
    xmppd_event ev = *xmppd_pending_event(p);
    const char *text = NULL;
    if (status == XMPPD_DIR_OK)
        text = over_limit(svc, ev.from->bare, muc_is_service_admin(svc, ev.from), n, values);
    else
        xmppd_log(svc->m, XMPPD_LOG_WARN, "the other nodes' rooms could not be counted: %s may "
                  "create %s on this node's count", ev.from->bare, ev.to->bare);
    svc->creating = false;
    svc->create_verdict = text ? text : "";
    muc_dispatch(svc, &ev);
    svc->create_verdict = NULL;
    xmppd_pending_drop(p);
    muc_release_held(svc);
}

int muc_create_check(muc_service *svc, xmppd_event *ev, const char **text_r)
{
    if (svc->create_verdict) { /* the cluster's answer for this very stanza */
        *text_r = *svc->create_verdict ? svc->create_verdict : NULL;
        return *text_r ? 1 : 0;
    }
    if (!xmppd_cluster_node())
        return 0;
    create_check *c = calloc(1, sizeof(*c));
    if (!c || !(c->p = xmppd_pending_new(ev))) {
        free(c);
        return 0;
    }
    c->svc = svc;
    if (xmppd_cluster_directory(svc->m, svc->domain, on_counted, c) < 0) {
        xmppd_pending_drop(c->p);
        free(c);
        return 0; /* Redis away: this node's count */
    }
    svc->creating = true;
    return -1;
}
