/* The room service's storage: writes nobody waits for, and the restore at start
 * (occupant-id secret, persistent rooms, their history). Layout in
 * muc_store.h. Every request carries its own data: a callback may come with
 * XMPPD_STORE_CANCELLED after the module unloaded, when the service is gone. */
#include <stdlib.h>
#include <string.h>

#include "muc_store.h"

/* Writes nobody waits for carry no callback: the driver logs a failure,
 * and no request data can outlive the module (storage calls no callback
 * of a module that unloaded first). */
void muc_store_write(xmppd_store *st, const char *user, json_t *value)
{
    xmppd_kv_set(st, user, "", value, NULL, NULL);
}

void muc_store_purge_archive(muc_service *svc, const char *room_jid)
{
    xmppd_archive_delete(svc->archive, room_jid, NULL, NULL, NULL);
}

/* ---- restore ---------------------------------------------------------------------- */

typedef struct restore_req {
    muc_service *svc;
    char *jid; /* room JID being read, or NULL */
} restore_req;

static restore_req *restore_req_new(muc_service *svc, const char *jid)
{
    restore_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->svc = svc;
    if (jid && !(r->jid = strdup(jid))) {
        free(r);
        return NULL;
    }
    return r;
}

static void restore_req_free(restore_req *r)
{
    free(r->jid);
    free(r);
}

/* One restore step finished; the last one opens the service. */
static void step_done(muc_service *svc, void *ud)
{
    if (--svc->restoring == 0)
        muc_service_ready(svc);
}

static void new_secret(muc_service *svc, bool store)
{
    if (xmppd_random(svc->secret, sizeof(svc->secret)) < 0)
        xmppd_log(svc->m, XMPPD_LOG_ERROR, "no random bytes for the occupant-id secret");
    char *b64 = store ? xmppd_base64_encode(svc->secret, sizeof(svc->secret)) : NULL;
    json_t *v = b64 ? json_string(b64) : NULL;
    if (v)
        xmppd_kv_set(svc->service_store, svc->domain, "secret", v, NULL, NULL);
    json_decref(v);
    free(b64);
}

static void on_secret(int status, json_t *value, void *ud)
{
    restore_req *r = ud;
    muc_service *svc = r->svc;
    restore_req_free(r);
    if (status == XMPPD_STORE_CANCELLED)
        return;
    unsigned char *raw = NULL;
    size_t len = 0;
    const char *s = status == XMPPD_STORE_OK ? json_string_value(value) : NULL;
    if (s && xmppd_base64_decode(s, strlen(s), &raw, &len) == 0 && len == sizeof(svc->secret)) {
        memcpy(svc->secret, raw, len);
    } else if (status == XMPPD_STORE_NOT_FOUND) {
        new_secret(svc, true);
    } else {
        /* Occupant ids then change at the next start: worse than stable
         * ids, better than no service. */
        xmppd_log(svc->m, XMPPD_LOG_ERROR, "cannot read the occupant-id secret (status %d): "
                  "using a temporary one", status);
        new_secret(svc, false);
    }
    if (raw) {
        xmppd_wipe(raw, len);
        free(raw);
    }
    step_done(svc, NULL);
}

static void on_room_doc(int status, json_t *value, void *ud)
{
    restore_req *r = ud;
    muc_service *svc = r->svc;
    if (status == XMPPD_STORE_CANCELLED) {
        restore_req_free(r);
        return;
    }
    xmppd_jid *jid = xmppd_jid_parse(r->jid);
    muc_room *room = NULL;
    const char *why = "not a room JID";
    if (status != XMPPD_STORE_OK)
        why = status == XMPPD_STORE_NOT_FOUND ? "gone" : "storage error";
    else if (jid && jid->node && !muc_room_find(svc, jid->node))
        room = muc_room_new(svc, jid->node, false);
    if (room && muc_room_load_doc(room, value, &why) < 0) {
        muc_room_free(room);
        room = NULL;
    }
    if (room) {
        muc_dir_update(room);
        muc_hist_load(room, step_done, NULL); /* counts as this step */
    } else {
        if (status != XMPPD_STORE_NOT_FOUND)
            xmppd_log(svc->m, XMPPD_LOG_ERROR, "room %s not restored: %s", r->jid, why);
        step_done(svc, NULL);
    }
    xmppd_jid_free(jid);
    restore_req_free(r);
}

/* Is jid (stored as a room) a room of this service? */
static bool our_room(const muc_service *svc, const char *s)
{
    const char *at = strchr(s, '@');
    return at && at != s && strcmp(at + 1, svc->domain) == 0 && !strchr(at, '/');
}

/* A room JID whose room is loaded already (muc_rooms_adopt). */
static bool in_memory(muc_service *svc, const char *s)
{
    const char *at = strchr(s, '@');
    char *node = strndup(s, (size_t)(at - s));
    bool in = node && muc_room_find(svc, node);
    free(node);
    return in;
}

static void on_room_list(int status, json_t *value, void *ud)
{
    restore_req *r = ud;
    muc_service *svc = r->svc;
    restore_req_free(r);
    if (status == XMPPD_STORE_CANCELLED)
        return;
    if (status != XMPPD_STORE_OK)
        xmppd_log(svc->m, XMPPD_LOG_ERROR, "cannot list the stored rooms (status %d): starting "
                  "without them", status);
    size_t i;
    json_t *v;
    json_array_foreach(status == XMPPD_STORE_OK ? value : NULL, i, v) {
        const char *s = json_string_value(v);
        if (!s || !our_room(svc, s) || !xmppd_cluster_mine(s) || in_memory(svc, s) ||
            (svc->awaited && json_object_get(svc->awaited, s)))
            continue; /* (another node hands it over, handover.c) */
        restore_req *q = restore_req_new(svc, s);
        if (!q) {
            xmppd_log(svc->m, XMPPD_LOG_ERROR, "out of memory: room %s not restored", s);
            continue;
        }
        svc->restoring++;
        xmppd_kv_get(svc->rooms_store, s, "", on_room_doc, q);
    }
    step_done(svc, NULL);
}

/* The rooms placed here now that another live node still lists: they come
 * from it (handover.c); then the stored rooms. */
static void on_listed(int status, size_t n, const char *const *jids, const char *const *values,
                      void *ud)
{
    restore_req *r = ud;
    if (status == XMPPD_DIR_CANCELLED) {
        restore_req_free(r);
        return;
    }
    muc_service *svc = r->svc;
    const char *me = xmppd_cluster_node();
    for (size_t i = 0; i < n; i++) {
        if (!xmppd_cluster_mine(jids[i]) || in_memory(svc, jids[i]))
            continue;
        json_t *v = json_loads(values[i], 0, NULL);
        const char *node = json_string_value(json_object_get(v, "node"));
        if (node && me && strcmp(node, me) != 0)
            muc_await(svc, jids[i]);
        json_decref(v);
    }
    xmppd_kv_users(svc->rooms_store, on_room_list, r);
}

/* The stored rooms to restore: in a cluster, after the directory said
 * which rooms placed here another node still holds. */
static void list_rooms(muc_service *svc, restore_req *r)
{
    if (xmppd_cluster_directory(svc->m, svc->domain, on_listed, r) < 0)
        xmppd_kv_users(svc->rooms_store, on_room_list, r); /* no cluster, Redis away */
}

void muc_rooms_restore(muc_service *svc)
{
    restore_req *a = restore_req_new(svc, NULL), *b = restore_req_new(svc, NULL);
    if (!a || !b) {
        free(a);
        free(b);
        xmppd_log(svc->m, XMPPD_LOG_ERROR, "out of memory: stored rooms not restored");
        new_secret(svc, false);
        svc->restoring = 1;
        step_done(svc, NULL);
        return;
    }
    svc->restoring = 2;
    xmppd_kv_get(svc->service_store, svc->domain, "secret", on_secret, a);
    list_rooms(svc, b);
}

void muc_rooms_adopt(muc_service *svc)
{
    restore_req *r = restore_req_new(svc, NULL);
    if (!r) {
        xmppd_log(svc->m, XMPPD_LOG_ERROR, "out of memory: rooms placed here not restored");
        return;
    }
    svc->ready = false;
    svc->restoring = 1;
    list_rooms(svc, r);
}
