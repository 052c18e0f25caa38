/* Deleted accounts (the kernel's "user-deleted"): an account that no longer
 * exists keeps no privileges in any room. Its owner, admin and member
 * affiliations, its reserved nicks, kept roles and waiting registration
 * requests go from every room of every room service on the server (each
 * mod_muc publishes forget_account in its "muc" API). A ban stays, without
 * its nick: whoever registers the name again is likely the same person,
 * and an admin can lift it. A room left without an owner passes to its
 * admins (trusted by the owner to run it); a room with neither is
 * destroyed, as nobody could manage it (service admins aside).
 *
 * In a cluster (docs/cluster.md) each node holds the rooms placed on it:
 * the node where the account was deleted tells the others with an
 * invalidation of mod_muc's copy of the account, and each of them, once
 * its auth provider confirms the account is gone, forgets it in the rooms
 * it holds. */
#include <stdlib.h>
#include <string.h>

#include "muc.h"

#define DELETED_REASON "The account was deleted"

/* Its admins become the owners, or the room goes. false: destroyed. */
static bool find_owner(muc_room *room)
{
    if (muc_aff_count(room, AFF_OWNER) > 0)
        return true;
    if (muc_aff_count(room, AFF_ADMIN) == 0) {
        muc_room_destroy(room, NULL, NULL, "The room's owner no longer exists");
        return false;
    }
    const char *key;
    json_t *e;
    json_object_foreach(room->affs, key, e) {
        if (muc_aff_parse(json_string_value(json_object_get(e, "affiliation"))) != AFF_ADMIN)
            continue;
        char *bare = strdup(key); /* muc_aff_set replaces the entry under key */
        if (bare && muc_aff_set(room, bare, AFF_OWNER, NULL, NULL) == 0)
            muc_aff_changed(room, bare, AFF_ADMIN, AFF_OWNER, NULL, NULL);
        free(bare);
    }
    xmppd_log(room->svc->m, XMPPD_LOG_INFO, "room %s: its owner's account was deleted; its admins "
              "own it now", muc_room_jid(room));
    return true;
}

static void forget_in_room(muc_room *room, const char *bare)
{
    json_t *e = json_object_get(room->affs, bare);
    bool changed = json_object_del(room->roles, bare) == 0;
    changed |= json_object_del(room->requests, bare) == 0;
    if (e) {
        muc_aff old = (muc_aff)muc_aff_parse(json_string_value(json_object_get(e, "affiliation")));
        if (old == AFF_OUTCAST) {
            char *reason = json_is_string(json_object_get(e, "reason"))
                               ? strdup(json_string_value(json_object_get(e, "reason")))
                               : NULL;
            muc_aff_set(room, bare, AFF_OUTCAST, NULL, reason); /* drops the nick */
            free(reason);
        } else {
            json_object_del(room->affs, bare);
            muc_aff_changed(room, bare, old, AFF_NONE, DELETED_REASON, NULL);
            if (old == AFF_OWNER && !find_owner(room))
                return;
        }
        changed = true;
    }
    if (changed)
        muc_room_save(room);
}

static void forget_now(muc_service *svc, const char *bare)
{
    size_t n = 0;
    muc_room **rooms = muc_rooms_all(svc, &n);
    if (!rooms && svc->n_rooms) {
        xmppd_log(svc->m, XMPPD_LOG_ERROR, "out of memory: %s keeps its room affiliations", bare);
        return;
    }
    for (size_t i = 0; i < n; i++)
        muc_room_hold(rooms[i]);
    for (size_t i = 0; i < n; i++) {
        if (!rooms[i]->dead && !rooms[i]->destroyed)
            forget_in_room(rooms[i], bare);
        muc_room_release(rooms[i]);
    }
    free(rooms);
}

void muc_forget_account(const muc_api *api, const char *bare)
{
    muc_service *svc = (muc_service *)api; /* the api is the service's first member */
    if (svc->ready) {
        forget_now(svc, bare);
        return;
    }
    /* The stored rooms are not loaded yet: the deletion waits for them. */
    char **v = svc->n_forget < MUC_MAX_HELD ? realloc(svc->forget, (svc->n_forget + 1) * sizeof(*v))
                                             : NULL;
    char *copy = v ? strdup(bare) : NULL;
    if (v)
        svc->forget = v;
    if (!copy) {
        xmppd_log(svc->m, XMPPD_LOG_ERROR, "%s keeps its room affiliations: too many deletions "
                  "while the rooms load", bare);
        return;
    }
    svc->forget[svc->n_forget++] = copy;
    if (!svc->restore_started) {
        svc->restore_started = true;
        muc_rooms_restore(svc);
    }
}

void muc_forget_pending(muc_service *svc)
{
    for (size_t i = 0; i < svc->n_forget; i++) {
        forget_now(svc, svc->forget[i]);
        free(svc->forget[i]);
    }
    free(svc->forget);
    svc->forget = NULL;
    svc->n_forget = 0;
}

static int tell_service(xmppd_host *h, void *ud)
{
    const muc_api *api = xmppd_use(h, "muc");
    if (api && api->size >= sizeof(muc_api) && api->forget_account)
        api->forget_account(api, ud);
    return 0;
}

static void forget_everywhere_here(xmppd_host *h, const char *node)
{
    xmppd_jid *bare = node && h ? xmppd_jid_make(node, xmppd_host_name(h), NULL) : NULL;
    if (bare)
        xmppd_host_foreach(tell_service, (void *)bare->bare);
    xmppd_jid_free(bare);
}

int muc_on_user_deleted(xmppd_event *ev, void *ud)
{
    muc_service *svc = ud;
    const char *node = ev->data;
    forget_everywhere_here(ev->host, node);
    /* the instance of the account's own host speaks for this node, once */
    if (node && ev->host == svc->host && xmppd_cluster_invalidate(svc->m, node) < 0)
        xmppd_log(svc->m, XMPPD_LOG_WARN, "%s@%s: the other nodes are not told of the "
                  "deletion now (Redis away: they are once it is back)", node,
                  xmppd_host_name(ev->host));
    return XMPPD_PASS;
}

/* ---- the deletion seen from another node ---------------------------------------- */

typedef struct gone_check {
    xmppd_host *host;
    char *node;
} gone_check;

static void on_exists(int result, void *ud)
{
    gone_check *g = ud;
    /* OK: the account exists again (registered anew meanwhile) or never
     * went: what it holds stays. Other answers: the provider cannot tell,
     * and nothing is taken on a guess. */
    if (result == XMPPD_AUTH_USER_UNKNOWN)
        forget_everywhere_here(g->host, g->node);
    free(g->node);
    free(g);
}

int muc_on_invalidate(xmppd_event *ev, void *ud)
{
    muc_service *svc = ud;
    const char *module = ev->data;
    if (!module || strcmp(module, xmppd_module_name(svc->m)) != 0 || !ev->to || !ev->to->node ||
        ev->host != svc->host)
        return XMPPD_PASS;
    gone_check *g = calloc(1, sizeof(*g));
    if (!g || !(g->node = strdup(ev->to->node))) {
        free(g);
        xmppd_log(svc->m, XMPPD_LOG_ERROR, "out of memory: %s keeps its room affiliations here",
                  ev->to->bare);
        return XMPPD_PASS;
    }
    g->host = ev->host;
    xmppd_auth_exists(svc->m, ev->host, g->node, on_exists, g);
    return XMPPD_PASS;
}
