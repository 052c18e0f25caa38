/* Rooms handed from node to node while both live (docs/cluster.md,
 * "Components, rooms and s2s across nodes"). When a node joins, the rooms
 * it now owns leave their old node; a temporary room would end there, as
 * nothing of it is stored. Instead the old node sends the room's whole
 * state to the room's JID, from the service domain: the kernel routes it
 * to the new owner (a "place" frame, in order with everything the old node
 * sends there afterwards), where the room goes on with its occupants
 * (nicks, roles, full JIDs, last presence), configuration, affiliations,
 * subject and history; its occupants see nothing of the move. A persistent
 * room's occupants are told to join again (110 + 332) as before, and its
 * state travels the same way without them, so the new node never reads a
 * state older than the old node's last write.
 *
 * The new owner waits for the room (place.c marks it awaited: another live
 * node still listed it when the node set changed) and holds the stanzas
 * for it meanwhile; the handover ends the wait and they are handled, in
 * order. The state is JSON in <handover xmlns='urn:xmppd:muc:handover:0'/>,
 * accepted only from the service domain and only when another node routed
 * it (xmppd_cluster_arrived, checked as it arrives: it may wait for the
 * service's restore): no client or remote server can send it. */
#include <stdlib.h>
#include <string.h>

#include "muc.h"
#include "muc_store.h"

#define NS_HANDOVER "urn:xmppd:muc:handover:0"

static json_t *stanza_json(const xmppd_stanza *st)
{
    size_t len = 0;
    char *xml = st ? xmppd_stanza_to_string(st, "jabber:client", &len) : NULL;
    json_t *v = xml ? json_stringn(xml, len) : json_null();
    free(xml);
    return v;
}

static xmppd_stanza *json_stanza(const json_t *v)
{
    return json_is_string(v) ? xmppd_stanza_from_string(json_string_value(v),
                                                         json_string_length(v), "jabber:client")
                             : NULL;
}

static json_t *occupants_json(const muc_room *room)
{
    json_t *a = json_array();
    for (const muc_occupant *occ = room->occ_head; a && occ; occ = occ->next) {
        json_t *sessions = json_array();
        for (const muc_sess *s = occ->sessions; sessions && s; s = s->next)
            json_array_append_new(sessions, json_pack("{s:s, s:o}", "jid", s->jid->full,
                                                      "presence", stanza_json(s->presence)));
        json_array_append_new(a, json_pack("{s:s, s:s, s:o*}", "nick", occ->nick, "role",
                                           muc_role_name(occ->role), "sessions", sessions));
    }
    return a;
}

static json_t *history_json(const muc_room *room)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < room->hist_len; i++) {
        const muc_hist *h = &room->hist[(room->hist_start + i) % room->hist_cap];
        json_array_append_new(a, json_pack("{s:s, s:I, s:o, s:s?, s:s?, s:s?}", "id", h->id,
                                           "when", (json_int_t)h->when_ms, "msg",
                                           stanza_json(h->msg), "nick", h->nick, "jid", h->jid,
                                           "occupant_id", h->occupant_id));
    }
    return a;
}

int muc_handover_send(muc_room *room, bool with_occupants)
{
    muc_service *svc = room->svc;
    json_t *doc = json_pack("{s:o, s:o, s:o}", "room", muc_room_doc(room), "occupants",
                            with_occupants ? occupants_json(room) : json_array(), "history",
                            history_json(room));
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    xmppd_stanza *m = text ? xmppd_stanza_new("message", NULL) : NULL;
    xmppd_stanza *h = m ? xmppd_stanza_tag(m, "handover", NS_HANDOVER) : NULL;
    int rc = -1;
    if (h && xmppd_stanza_set_attr(m, "from", svc->domain) == 0 &&
        xmppd_stanza_set_text(h, text) == 0) {
        muc_send_to(svc, m, room->jid);
        rc = 0;
    }
    xmppd_stanza_unref(m);
    free(text);
    return rc;
}

/* ---- the new owner ---------------------------------------------------------------------- */

static void take_history(muc_room *room, const json_t *a)
{
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e) {
        xmppd_stanza *msg = json_stanza(json_object_get(e, "msg"));
        const char *id = json_string_value(json_object_get(e, "id"));
        if (msg && id)
            muc_hist_push(room, id, json_integer_value(json_object_get(e, "when")), msg,
                          json_string_value(json_object_get(e, "nick")),
                          json_string_value(json_object_get(e, "jid")),
                          json_string_value(json_object_get(e, "occupant_id")));
        xmppd_stanza_unref(msg);
    }
}

static void take_session(muc_room *room, muc_occupant **occ, const char *nick, const json_t *s)
{
    xmppd_jid *full = xmppd_jid_parse(json_string_value(json_object_get(s, "jid")));
    if (!full || !full->resource || muc_sess_find(room, full)) {
        xmppd_jid_free(full);
        return;
    }
    muc_sess *sess = NULL;
    if (!*occ && (*occ = muc_occ_add(room, nick, full)))
        sess = (*occ)->sessions;
    else if (*occ)
        sess = muc_sess_add(*occ, full);
    if (sess)
        sess->presence = json_stanza(json_object_get(s, "presence"));
    xmppd_jid_free(full);
}

static void take_occupants(muc_room *room, const json_t *a)
{
    size_t i, j;
    json_t *e, *s;
    json_array_foreach(a, i, e) {
        const char *nick = json_string_value(json_object_get(e, "nick"));
        int role = muc_role_parse(json_string_value(json_object_get(e, "role")));
        if (!nick || role < 0 || muc_occ_by_nick(room, nick))
            continue;
        muc_occupant *occ = NULL;
        json_array_foreach(json_object_get(e, "sessions"), j, s)
            take_session(room, &occ, nick, s);
        if (occ)
            occ->role = (muc_role)role;
    }
}

void muc_handover_check(muc_service *svc, xmppd_event *ev)
{
    if (!xmppd_stanza_child(ev->stanza, "handover", NS_HANDOVER) ||
        !xmppd_cluster_arrived(ev->stanza) || !ev->from || ev->from->node ||
        ev->from->resource || strcmp(ev->from->domain, svc->domain) != 0)
        return; /* not from the service on another node: an ordinary message */
    xmppd_stanza **v = realloc(svc->handovers, (svc->n_handovers + 1) * sizeof(*v));
    if (!v)
        return;
    svc->handovers = v;
    v[svc->n_handovers++] = xmppd_stanza_ref(ev->stanza);
}

/* Was st checked by muc_handover_check? It is forgotten then. */
static bool checked(muc_service *svc, const xmppd_stanza *st)
{
    for (size_t i = 0; i < svc->n_handovers; i++)
        if (svc->handovers[i] == st) {
            xmppd_stanza_unref(svc->handovers[i]);
            svc->handovers[i] = svc->handovers[--svc->n_handovers];
            return true;
        }
    return false;
}

bool muc_handover_take(muc_service *svc, xmppd_event *ev)
{
    xmppd_stanza *h = xmppd_stanza_child(ev->stanza, "handover", NS_HANDOVER);
    if (!h || !checked(svc, ev->stanza))
        return false;
    json_t *doc = json_loads(xmppd_stanza_text(h) ? xmppd_stanza_text(h) : "", 0, NULL);
    const char *why = "not a room state";
    muc_room *room = NULL;
    if (muc_room_find(svc, ev->to->node))
        why = "a room of that name is here already";
    else if (json_is_object(json_object_get(doc, "room")) &&
             (room = muc_room_new(svc, ev->to->node, false)) &&
             muc_room_load_doc(room, json_object_get(doc, "room"), &why) < 0) {
        muc_room_free(room);
        room = NULL;
    }
    if (room) {
        take_history(room, json_object_get(doc, "history"));
        take_occupants(room, json_object_get(doc, "occupants"));
        muc_dir_update(room);
        xmppd_log(svc->m, XMPPD_LOG_INFO, "room %s handed over from another node (%zu occupants)",
                  muc_room_jid(room), room->n_occupants);
        muc_room_hold(room);
        muc_room_release(room); /* a temporary room that came empty goes */
    } else {
        xmppd_log(svc->m, XMPPD_LOG_ERROR, "room %s: handover refused: %s", ev->to->bare, why);
    }
    json_decref(doc);
    muc_awaited_done(svc, ev->to->bare);
    return true;
}

/* ---- waiting for a room another node still holds ----------------------------------------- */

/* How long the new owner waits for a room the old node lists: a node lets
 * go within a heartbeat of seeing the change; past this the old node is
 * taken to have failed to (its stored state, if any, is restored). */
#define AWAIT_MS 10000

static void waiting_to_held(muc_service *svc, const char *jid)
{
    size_t k = 0;
    for (size_t i = 0; i < svc->n_waiting; i++) {
        xmppd_pending *p = svc->waiting[i];
        const xmppd_event *ev = xmppd_pending_event(p);
        if (jid && strcmp(ev->to->bare, jid) != 0) {
            svc->waiting[k++] = p;
            continue;
        }
        xmppd_event copy = *ev;
        if (!copy.session || !xmppd_session_closed(copy.session))
            muc_dispatch(svc, &copy); /* held again while the service waits */
        xmppd_pending_drop(p);
    }
    svc->n_waiting = k;
}

void muc_awaited_done(muc_service *svc, const char *jid)
{
    if (!svc->awaited || json_object_del(svc->awaited, jid) < 0)
        return;
    waiting_to_held(svc, jid);
}

static uint64_t await_expired(void *ud)
{
    muc_service *svc = ud;
    svc->await_timer = NULL;
    if (svc->awaited && json_object_size(svc->awaited) > 0) {
        xmppd_log(svc->m, XMPPD_LOG_WARN, "%zu rooms never came from the node that held them: "
                  "served here from storage", json_object_size(svc->awaited));
        json_object_clear(svc->awaited);
        if (svc->ready)
            muc_rooms_adopt(svc); /* their stored state, if they have one */
        waiting_to_held(svc, NULL);
    }
    return 0;
}

void muc_await_reset(muc_service *svc)
{
    if (svc->awaited)
        json_object_clear(svc->awaited);
    waiting_to_held(svc, NULL);
}

void muc_await(muc_service *svc, const char *jid)
{
    if (!svc->awaited && !(svc->awaited = json_object()))
        return;
    json_object_set_new(svc->awaited, jid, json_true());
    if (!svc->await_timer)
        svc->await_timer = xmppd_timer_add(svc->m, AWAIT_MS, await_expired, svc);
}

bool muc_await_hold(muc_service *svc, xmppd_event *ev)
{
    if (!svc->awaited || !json_object_get(svc->awaited, ev->to->bare))
        return false;
    xmppd_pending *p = svc->n_waiting < MUC_MAX_HELD ? xmppd_pending_new(ev) : NULL;
    xmppd_pending **v = p ? realloc(svc->waiting, (svc->n_waiting + 1) * sizeof(*v)) : NULL;
    if (!v) {
        xmppd_pending_drop(p);
        muc_error(ev, NULL, "wait", "resource-constraint", "The room is moving between nodes");
        return true;
    }
    svc->waiting = v;
    svc->waiting[svc->n_waiting++] = p;
    return true;
}
