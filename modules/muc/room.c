/* Room objects: lookup, occupants and their sessions, affiliations, and the
 * room's stored state (keyval store "muc_rooms", user = room bare JID, key
 * "": {"version", "config", "affiliations", "roles", "subject", "created"}).
 * Rooms are looked up by node in a tsearch tree; occupants by nick in one
 * per room; sessions by real full JID in one per service (session-closed
 * and error bounces find them there). */
#define _GNU_SOURCE /* tdestroy, twalk_r */
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "muc.h"
#include "muc_store.h"

/* ---- rooms ------------------------------------------------------------------ */

static int room_cmp(const void *a, const void *b)
{
    return strcmp(((const muc_room *)a)->node, ((const muc_room *)b)->node);
}

muc_room *muc_room_find(muc_service *svc, const char *node)
{
    muc_room key = { .node = (char *)node };
    muc_room **p = tfind(&key, &svc->rooms, room_cmp);
    return p ? *p : NULL;
}

typedef struct room_array {
    muc_room **v;
    size_t n;
} room_array;

static void collect_room(const void *node, VISIT which, void *ud)
{
    room_array *a = ud;
    if (which == postorder || which == leaf)
        a->v[a->n++] = *(muc_room *const *)node;
}

muc_room **muc_rooms_all(const muc_service *svc, size_t *n_r)
{
    room_array a = { svc->n_rooms ? calloc(svc->n_rooms, sizeof(muc_room *)) : NULL, 0 };
    if (a.v)
        twalk_r(svc->rooms, collect_room, &a);
    *n_r = a.n;
    return a.v;
}

const char *muc_room_jid(const muc_room *room)
{
    return room->jid->bare;
}

muc_room *muc_room_new(muc_service *svc, const char *node, bool locked)
{
    muc_room *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->svc = svc;
    r->serial = ++svc->next_serial;
    r->node = strdup(node);
    r->jid = xmppd_jid_make(node, svc->domain, NULL);
    r->affs = json_object();
    r->roles = json_object();
    r->requests = json_object();
    r->locked = locked;
    r->created_ms = xmppd_wallclock_ms();
    r->hist_cap = (size_t)svc->conf->max_history;
    r->hist = r->hist_cap ? calloc(r->hist_cap, sizeof(*r->hist)) : NULL;
    if (!r->node || !r->jid || !r->affs || !r->roles || !r->requests || (r->hist_cap && !r->hist) ||
        muc_config_copy(&r->cfg, &svc->defaults) < 0 || !tsearch(r, &svc->rooms, room_cmp)) {
        json_decref(r->affs);
        json_decref(r->roles);
        json_decref(r->requests);
        xmppd_jid_free(r->jid);
        muc_config_clear(&r->cfg);
        free(r->hist);
        free(r->node);
        free(r);
        return NULL;
    }
    svc->n_rooms++;
    return r;
}

static void free_nothing(void *p)
{
    (void)p;
}

static void room_really_free(muc_room *room)
{
    if (room->lock_timer)
        xmppd_timer_cancel(room->lock_timer);
    while (room->occ_head)
        muc_occ_free(room->occ_head);
    tdestroy(room->by_nick, free_nothing);
    muc_proxy_clear(room);
    muc_hist_clear(room);
    free(room->hist);
    json_decref(room->affs);
    json_decref(room->roles);
    json_decref(room->requests);
    muc_config_clear(&room->cfg);
    free(room->subject);
    free(room->subject_from);
    xmppd_jid_free(room->jid);
    free(room->node);
    free(room);
}

void muc_room_free(muc_room *room)
{
    muc_service *svc = room->svc;
    muc_room **p = tfind(room, &svc->rooms, room_cmp);
    if (p && *p == room) {
        tdelete(room, &svc->rooms, room_cmp);
        svc->n_rooms--;
        muc_dir_withdraw(room);
    }
    if (room->busy > 0)
        room->dead = true;
    else
        room_really_free(room);
}

void muc_room_hold(muc_room *room)
{
    room->busy++;
}

void muc_room_release(muc_room *room)
{
    if (--room->busy > 0)
        return;
    if (room->dead)
        room_really_free(room);
    else
        muc_room_maybe_reap(room);
}

void muc_room_unlock(muc_room *room)
{
    room->locked = false;
    if (room->lock_timer) {
        xmppd_timer_cancel(room->lock_timer);
        room->lock_timer = NULL;
    }
    muc_dir_update(room);
}

/* The occupant's sessions each get unavailable presence with <destroy/>
 * (XEP-0045 §10.9: one presence per occupant, no broadcast of leaves). */
static void tell_destroyed(muc_room *room, const char *alt_jid, const char *alt_password,
                           const char *reason)
{
    for (muc_occupant *occ = room->occ_head; occ; occ = occ->next) {
        char from[3100];
        snprintf(from, sizeof(from), "%s/%s", muc_room_jid(room), occ->nick);
        xmppd_stanza *p = xmppd_stanza_new("presence", NULL);
        xmppd_stanza *x = p ? xmppd_stanza_tag(p, "x", NS_MUC_USER) : NULL;
        xmppd_stanza *item = x ? xmppd_stanza_tag(x, "item", NULL) : NULL;
        xmppd_stanza *d = x ? xmppd_stanza_tag(x, "destroy", NULL) : NULL;
        if (!item || !d) {
            xmppd_stanza_unref(p);
            continue;
        }
        xmppd_stanza_set_attr(p, "type", "unavailable");
        xmppd_stanza_set_attr(p, "from", from);
        xmppd_stanza_set_attr(item, "affiliation", "none");
        xmppd_stanza_set_attr(item, "role", "none");
        if (alt_jid)
            xmppd_stanza_set_attr(d, "jid", alt_jid);
        if (reason) {
            xmppd_stanza *r = xmppd_stanza_tag(d, "reason", NULL);
            if (r)
                xmppd_stanza_set_text(r, reason);
        }
        if (alt_password) {
            xmppd_stanza *pw = xmppd_stanza_tag(d, "password", NULL);
            if (pw)
                xmppd_stanza_set_text(pw, alt_password);
        }
        for (muc_sess *s = occ->sessions; s; s = s->next)
            muc_send_to(room->svc, p, s->jid);
        xmppd_stanza_unref(p);
    }
}

/* Forgets everything stored about the room: its state and its archive. */
static void forget_stored(muc_room *room)
{
    muc_service *svc = room->svc;
    muc_store_write(svc->rooms_store, muc_room_jid(room), NULL);
    muc_store_purge_archive(svc, muc_room_jid(room));
}

void muc_room_destroy(muc_room *room, const char *alt_jid, const char *alt_password,
                      const char *reason)
{
    xmppd_log(room->svc->m, XMPPD_LOG_INFO, "room %s destroyed", muc_room_jid(room));
    room->destroyed = true;
    tell_destroyed(room, alt_jid, alt_password, reason);
    forget_stored(room);
    muc_room_free(room);
}

void muc_room_maybe_reap(muc_room *room)
{
    if (room->dead || room->n_occupants > 0 || (room->cfg.persistent && !room->locked))
        return;
    forget_stored(room);
    muc_room_free(room);
}

/* ---- stored state ------------------------------------------------------------- */

json_t *muc_room_doc(const muc_room *room)
{
    json_t *subject = room->subject_ms || room->subject
                          ? json_pack("{s:s?, s:s?, s:I}", "text", room->subject, "from",
                                      room->subject_from, "when", (json_int_t)room->subject_ms)
                          : json_null();
    return json_pack("{s:i, s:o, s:O, s:O, s:O, s:o, s:I}", "version", 1, "config",
                     muc_config_to_json(&room->cfg), "affiliations", room->affs, "roles",
                     room->roles, "requests", room->requests, "subject", subject, "created",
                     (json_int_t)room->created_ms);
}

void muc_room_save(muc_room *room)
{
    muc_service *svc = room->svc;
    muc_dir_update(room);
    if (room->locked)
        return; /* a room exists for others only once configured */
    if (!room->cfg.persistent) {
        muc_store_write(svc->rooms_store, muc_room_jid(room), NULL);
        return;
    }
    json_t *doc = muc_room_doc(room);
    if (!doc) {
        xmppd_log(svc->m, XMPPD_LOG_ERROR, "room %s: out of memory, state not saved",
                  muc_room_jid(room));
        return;
    }
    muc_store_write(svc->rooms_store, muc_room_jid(room), doc);
    json_decref(doc);
}

/* Fills a restored room from its stored document. -1 when it is unusable. */
int muc_room_load_doc(muc_room *room, const json_t *doc, const char **why_r)
{
    json_t *affs = json_object_get(doc, "affiliations");
    json_t *roles = json_object_get(doc, "roles");
    json_t *requests = json_object_get(doc, "requests");
    json_t *subject = json_object_get(doc, "subject");
    if (muc_config_from_json(&room->cfg, json_object_get(doc, "config"), why_r) < 0)
        return -1;
    if (json_is_object(affs)) {
        json_decref(room->affs);
        room->affs = json_deep_copy(affs);
    }
    if (json_is_object(roles)) {
        json_decref(room->roles);
        room->roles = json_deep_copy(roles);
    }
    if (json_is_object(requests)) {
        json_decref(room->requests);
        room->requests = json_deep_copy(requests);
    }
    if (!room->affs || !room->roles || !room->requests) {
        *why_r = "out of memory";
        return -1;
    }
    if (json_is_object(subject)) {
        const char *text = json_string_value(json_object_get(subject, "text"));
        const char *from = json_string_value(json_object_get(subject, "from"));
        room->subject = text ? strdup(text) : NULL;
        room->subject_from = from ? strdup(from) : NULL;
        room->subject_ms = json_integer_value(json_object_get(subject, "when"));
    }
    json_int_t created = json_integer_value(json_object_get(doc, "created"));
    if (created > 0)
        room->created_ms = created;
    room->cfg.persistent = true;
    return 0;
}

/* ---- affiliations --------------------------------------------------------------- */

muc_aff muc_aff_of(const muc_room *room, const xmppd_jid *bare)
{
    if (muc_is_service_admin(room->svc, bare))
        return AFF_OWNER;
    json_t *e = json_object_get(room->affs, bare->bare);
    int a = muc_aff_parse(json_string_value(json_object_get(e, "affiliation")));
    return a < 0 ? AFF_NONE : (muc_aff)a;
}

const char *muc_reserved_nick(const muc_room *room, const char *bare)
{
    const char *n = json_string_value(json_object_get(json_object_get(room->affs, bare), "nick"));
    return n && *n ? n : NULL;
}

const char *muc_nick_reserved_by(const muc_room *room, const char *nick, const char *bare)
{
    const char *key;
    json_t *e;
    json_object_foreach(room->affs, key, e) {
        const char *n = json_string_value(json_object_get(e, "nick"));
        if (n && strcmp(n, nick) == 0 && (!bare || strcmp(key, bare) != 0))
            return key;
    }
    return NULL;
}

int muc_aff_set(muc_room *room, const char *bare, muc_aff aff, const char *nick, const char *reason)
{
    if (aff == AFF_NONE && (!nick || !*nick)) {
        json_object_del(room->affs, bare);
        return 0;
    }
    json_t *old = json_object_get(room->affs, bare);
    const char *keep = aff != AFF_OUTCAST && !nick ? json_string_value(json_object_get(old, "nick"))
                                                   : NULL;
    json_t *e = json_pack("{s:s, s:s?, s:s?}", "affiliation", muc_aff_name(aff), "nick",
                          nick && *nick && aff != AFF_OUTCAST ? nick : keep, "reason",
                          reason && *reason ? reason : NULL);
    return e ? json_object_set_new(room->affs, bare, e) : -1;
}

size_t muc_aff_count(const muc_room *room, muc_aff aff)
{
    size_t n = 0;
    const char *key;
    json_t *e;
    json_object_foreach(room->affs, key, e)
        if (muc_aff_parse(json_string_value(json_object_get(e, "affiliation"))) == (int)aff)
            n++;
    return n;
}

/* ---- occupants and sessions -------------------------------------------------------- */

static int nick_cmp(const void *a, const void *b)
{
    return strcmp(((const muc_occupant *)a)->nick, ((const muc_occupant *)b)->nick);
}

muc_occupant *muc_occ_by_nick(const muc_room *room, const char *nick)
{
    muc_occupant key = { .nick = (char *)nick };
    muc_occupant **p = tfind(&key, &room->by_nick, nick_cmp);
    return p ? *p : NULL;
}

muc_sess *muc_sess_find(const muc_room *room, const xmppd_jid *full)
{
    for (muc_sess *s = muc_sessions_of(room->svc, full->full); s; s = s->next_same)
        if (s->occ->room == room)
            return s;
    return NULL;
}

/* The service index: one entry per real full JID with sessions. */
typedef struct jid_entry {
    char *full;
    muc_sess *head;
} jid_entry;

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const jid_entry *)a)->full, ((const jid_entry *)b)->full);
}

static jid_entry *entry_find(const muc_service *svc, const char *full)
{
    jid_entry key = { .full = (char *)full };
    jid_entry **p = tfind(&key, &svc->by_jid, entry_cmp);
    return p ? *p : NULL;
}

muc_sess *muc_sessions_of(const muc_service *svc, const char *full)
{
    jid_entry *e = entry_find(svc, full);
    return e ? e->head : NULL;
}

static int index_add(muc_service *svc, muc_sess *s)
{
    jid_entry *e = entry_find(svc, s->jid->full);
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e || !(e->full = strdup(s->jid->full)) || !tsearch(e, &svc->by_jid, entry_cmp)) {
            if (e)
                free(e->full);
            free(e);
            return -1;
        }
    }
    s->next_same = e->head;
    e->head = s;
    return 0;
}

static void index_remove(muc_service *svc, muc_sess *s)
{
    jid_entry *e = entry_find(svc, s->jid->full);
    if (!e)
        return;
    for (muc_sess **pp = &e->head; *pp; pp = &(*pp)->next_same)
        if (*pp == s) {
            *pp = s->next_same;
            break;
        }
    if (!e->head) {
        tdelete(e, &svc->by_jid, entry_cmp);
        free(e->full);
        free(e);
    }
}

static muc_sess *sess_new(muc_occupant *occ, const xmppd_jid *full)
{
    muc_sess *s = calloc(1, sizeof(*s));
    if (!s || !(s->jid = xmppd_jid_dup(full)) || index_add(occ->room->svc, s) < 0) {
        if (s)
            xmppd_jid_free(s->jid);
        free(s);
        return NULL;
    }
    s->occ = occ;
    return s;
}

muc_sess *muc_sess_add(muc_occupant *occ, const xmppd_jid *full)
{
    muc_sess *s = sess_new(occ, full);
    if (!s)
        return NULL;
    s->next = occ->sessions;
    occ->sessions = s;
    return s;
}

muc_occupant *muc_occ_add(muc_room *room, const char *nick, const xmppd_jid *full)
{
    muc_occupant *occ = calloc(1, sizeof(*occ));
    if (!occ)
        return NULL;
    occ->room = room;
    occ->nick = strdup(nick);
    occ->bare = xmppd_jid_to_bare(full);
    occ->tokens = -1; /* a full bucket on first use */
    if (!occ->nick || !occ->bare || !muc_sess_add(occ, full)) {
        free(occ->nick);
        xmppd_jid_free(occ->bare);
        free(occ);
        return NULL;
    }
    if (!tsearch(occ, &room->by_nick, nick_cmp)) {
        muc_sess_remove(occ->sessions); /* not yet in the list: frees occ */
        return NULL;
    }
    muc_occupant_id(room->svc, room, occ->bare->bare, occ->occupant_id);
    occ->prev = room->occ_tail;
    if (room->occ_tail)
        room->occ_tail->next = occ;
    else
        room->occ_head = occ;
    room->occ_tail = occ;
    room->n_occupants++;
    return occ;
}

static void occ_unlink_free(muc_occupant *occ)
{
    muc_room *room = occ->room;
    muc_occupant **p = tfind(occ, &room->by_nick, nick_cmp);
    if (p && *p == occ)
        tdelete(occ, &room->by_nick, nick_cmp);
    bool listed = occ->prev || room->occ_head == occ;
    if (listed) {
        if (occ->prev)
            occ->prev->next = occ->next;
        else
            room->occ_head = occ->next;
        if (occ->next)
            occ->next->prev = occ->prev;
        else
            room->occ_tail = occ->prev;
        room->n_occupants--;
    }
    free(occ->nick);
    xmppd_jid_free(occ->bare);
    free(occ);
}

void muc_occ_free(muc_occupant *occ)
{
    /* The occupant goes with its last session: never read it after that. */
    for (muc_sess *s = occ->sessions, *next; s; s = next) {
        next = s->next;
        muc_sess_remove(s);
    }
}

void muc_sess_remove(muc_sess *s)
{
    muc_occupant *occ = s->occ;
    for (muc_sess **pp = &occ->sessions; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    index_remove(occ->room->svc, s);
    xmppd_stanza_unref(s->presence);
    xmppd_jid_free(s->jid);
    free(s);
    if (!occ->sessions)
        occ_unlink_free(occ);
}

int muc_occ_rename(muc_occupant *occ, const char *nick)
{
    char *n = strdup(nick);
    if (!n)
        return -1;
    muc_room *room = occ->room;
    tdelete(occ, &room->by_nick, nick_cmp);
    char *old = occ->nick;
    occ->nick = n;
    if (!tsearch(occ, &room->by_nick, nick_cmp)) {
        occ->nick = old;
        free(n);
        tsearch(occ, &room->by_nick, nick_cmp); /* back where it was: the node is free again */
        return -1;
    }
    free(old);
    return 0;
}
