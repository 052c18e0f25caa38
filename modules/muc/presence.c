/* Presence to rooms: entering (XEP-0045 §7.2), changing nickname (§7.6)
 * and availability (§7.7), exiting (§7.14), room creation (§10.1), and the
 * presence the room sends about its occupants. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "muc.h"

/* Occupants an admin or owner may add beyond a full room (§7.2.9). */
#define MUC_ADMIN_EXTRA 10

/* Extra content of a presence about an occupant. */
typedef struct pres_extra {
    const char *new_nick;   /* 303: the nick it changes to */
    const char *reason;     /* <reason/> in the item */
    const char *actor_nick; /* <actor nick/> in the item */
} pres_extra;

bool muc_sees_jids(const muc_room *room, muc_role viewer)
{
    return room->cfg.whois_anyone || viewer == ROLE_MODERATOR;
}

bool muc_occ_visible(const muc_occupant *occ)
{
    return (occ->room->cfg.presence_broadcast & (1u << occ->role)) != 0;
}

static void occ_jid_str(const muc_occupant *occ, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", muc_room_jid(occ->room), occ->nick);
}

/* The client part of a presence: what the occupant sent, without the
 * extensions only the room may generate (§17.3 rule 6) or that configure
 * the join. New tree. */
static xmppd_stanza *client_part(const xmppd_stanza *st)
{
    xmppd_stanza *c = xmppd_stanza_copy(st);
    if (!c)
        return NULL;
    muc_strip(c, "x", NS_MUC);
    muc_strip(c, "x", NS_MUC_USER);
    muc_strip(c, "occupant-id", NS_OCCUPANT_ID);
    xmppd_stanza_set_attr(c, "to", NULL);
    xmppd_stanza_set_attr(c, "from", NULL);
    return c;
}

/* The occupant's presence as a viewer sees it: client payload (or a bare
 * unavailable), from its occupant JID, <x muc#user><item/></x> with the
 * real JID of session `who` when with_jid, status codes, occupant id.
 * New tree. */
static xmppd_stanza *occ_presence(const muc_occupant *occ, const xmppd_stanza *client,
                                  bool unavailable, bool with_jid, const muc_sess *who,
                                  const pres_extra *ex, const int *codes, bool self)
{
    xmppd_stanza *p = client && !unavailable ? xmppd_stanza_copy(client)
                                             : xmppd_stanza_new("presence", NULL);
    if (!p)
        return NULL;
    if (unavailable) {
        xmppd_stanza_set_attr(p, "type", "unavailable");
        const char *status = client ? xmppd_stanza_child_text(client, "status", NULL) : NULL;
        xmppd_stanza *s = status ? xmppd_stanza_tag(p, "status", NULL) : NULL;
        if (s)
            xmppd_stanza_set_text(s, status);
    }
    char from[3100];
    occ_jid_str(occ, from, sizeof(from));
    xmppd_stanza_set_attr(p, "from", from);
    muc_aff aff = muc_aff_of(occ->room, occ->bare);
    xmppd_stanza *x = xmppd_stanza_tag(p, "x", NS_MUC_USER);
    xmppd_stanza *item = x ? xmppd_stanza_tag(x, "item", NULL) : NULL;
    if (!item) {
        xmppd_stanza_unref(p);
        return NULL;
    }
    xmppd_stanza_set_attr(item, "affiliation", muc_aff_name(aff));
    xmppd_stanza_set_attr(item, "role", muc_role_name(unavailable ? ROLE_NONE : occ->role));
    if (with_jid)
        xmppd_stanza_set_attr(item, "jid", (who ? who : occ->sessions)->jid->full);
    if (ex && ex->new_nick)
        xmppd_stanza_set_attr(item, "nick", ex->new_nick);
    if (ex && ex->actor_nick) {
        xmppd_stanza *a = xmppd_stanza_tag(item, "actor", NULL);
        if (a)
            xmppd_stanza_set_attr(a, "nick", ex->actor_nick);
    }
    if (ex && ex->reason && *ex->reason) {
        xmppd_stanza *r = xmppd_stanza_tag(item, "reason", NULL);
        if (r)
            xmppd_stanza_set_text(r, ex->reason);
    }
    static const int c110[] = { 110, 0 };
    if (self)
        muc_add_codes(x, c110);
    muc_add_codes(x, codes);
    xmppd_stanza *oid = xmppd_stanza_tag(p, "occupant-id", NS_OCCUPANT_ID);
    if (oid)
        xmppd_stanza_set_attr(oid, "id", occ->occupant_id);
    return p;
}

/* Sends occ's presence to every occupant: the viewers' variants are built
 * once each (own sessions, with JID, without JID) and copied per session. */
static void broadcast(muc_occupant *occ, const xmppd_stanza *client, bool unavailable,
                      const pres_extra *ex, const int *self_codes, const int *all_codes,
                      bool to_others)
{
    muc_room *room = occ->room;
    xmppd_stanza *variant[3] = { NULL, NULL, NULL }; /* self, with JID, without JID */
    for (muc_occupant *v = room->occ_head; v; v = v->next) {
        bool self = v == occ;
        if (!self && !to_others)
            continue;
        int k = self ? 0 : muc_sees_jids(room, v->role) ? 1 : 2;
        if (!variant[k]) {
            /* An occupant sees its own real JID when it may see others'. */
            bool with_jid = k == 1 || (self && muc_sees_jids(room, occ->role));
            variant[k] = occ_presence(occ, client, unavailable, with_jid, NULL, ex,
                                      self ? self_codes : all_codes, self);
            if (!variant[k])
                continue;
        }
        for (muc_sess *s = v->sessions; s; s = s->next)
            muc_send_to(room->svc, variant[k], s->jid);
    }
    for (int i = 0; i < 3; i++)
        xmppd_stanza_unref(variant[i]);
}

void muc_broadcast_presence(muc_occupant *occ, const int *self_codes, const int *all_codes,
                            const char *reason, const char *actor_nick)
{
    pres_extra ex = { .reason = reason, .actor_nick = actor_nick };
    broadcast(occ, occ->sessions->presence, false, &ex, self_codes, all_codes, true);
}

/* Unavailable presence about occ to its own sessions and (when it was seen)
 * to the others, then occ goes. client: its own unavailable presence (for
 * <status/>) or NULL. */
static void occ_leave(muc_occupant *occ, const xmppd_stanza *client, const int *codes,
                      const char *reason, const char *actor_nick)
{
    muc_room *room = occ->room;
    pres_extra ex = { .reason = reason, .actor_nick = actor_nick };
    bool seen = muc_occ_visible(occ) || (codes && codes[0]);
    broadcast(occ, client, true, &ex, codes, codes, seen);
    muc_occ_free(occ);
    muc_room_maybe_reap(room);
}

/* One resource of a multi-session occupant leaves: only it is told, the
 * others keep the nick (§7.2.8). */
static void occ_leave_one(muc_sess *s, const xmppd_stanza *client)
{
    muc_occupant *occ = s->occ;
    xmppd_stanza *p = occ_presence(occ, client, true, muc_sees_jids(occ->room, occ->role), s, NULL,
                                   NULL, true);
    if (p)
        muc_send_to(occ->room->svc, p, s->jid);
    xmppd_stanza_unref(p);
    muc_sess_remove(s);
}

void muc_occ_remove(muc_occupant *occ, const int *codes, const char *reason, const char *actor_nick)
{
    occ_leave(occ, NULL, codes, reason, actor_nick);
}

void muc_sess_gone(muc_sess *s, bool error)
{
    static const int ghost[] = { 333, 0 };
    muc_occupant *occ = s->occ;
    if (occ->sessions->next) {
        /* Another resource keeps the nick: only this one goes. */
        muc_sess_remove(s);
        return;
    }
    occ_leave(occ, NULL, error ? ghost : NULL, NULL, NULL);
}

muc_role muc_default_role(const muc_room *room, const char *bare, muc_aff aff)
{
    if (aff >= AFF_ADMIN)
        return ROLE_MODERATOR;
    if (aff == AFF_OUTCAST)
        return ROLE_NONE;
    /* §5.1: roles may persist across visits, and should in moderated rooms. */
    int kept = muc_role_parse(json_string_value(json_object_get(room->roles, bare)));
    if (kept == ROLE_PARTICIPANT || kept == ROLE_VISITOR)
        return (muc_role)kept;
    if (room->cfg.moderated && aff == AFF_NONE)
        return ROLE_VISITOR;
    return ROLE_PARTICIPANT;
}

/* The presence of every other (visible) occupant to a joining session
 * (§7.2.2: before its own). */
static void send_roster(muc_room *room, const muc_occupant *me, const xmppd_jid *to)
{
    bool with_jid = muc_sees_jids(room, me->role);
    for (muc_occupant *o = room->occ_head; o; o = o->next) {
        if (o == me || !muc_occ_visible(o))
            continue;
        xmppd_stanza *p = occ_presence(o, o->sessions->presence, false, with_jid, NULL, NULL, NULL,
                                       false);
        if (p)
            muc_send_to(room->svc, p, to);
        xmppd_stanza_unref(p);
    }
}

/* Everything a joining (or resynchronising, §17.3 rule 3) session gets:
 * the roster, its own presence (to the others too when tell_others),
 * history, subject. */
static void enter(muc_occupant *occ, muc_sess *s, const xmppd_stanza *req, bool created,
                  bool renamed, bool tell_others)
{
    muc_room *room = occ->room;
    int codes[4], n = 0;
    if (room->cfg.whois_anyone)
        codes[n++] = 100;
    if (created)
        codes[n++] = 201;
    if (renamed)
        codes[n++] = 210;
    codes[n] = 0;
    send_roster(room, occ, s->jid);
    pres_extra ex = { 0 };
    broadcast(occ, s->presence, false, &ex, codes, NULL, tell_others);
    xmppd_stanza *mx = xmppd_stanza_child(req, "x", NS_MUC);
    muc_send_history(room, s->jid, mx ? xmppd_stanza_child(mx, "history", NULL) : NULL);
    muc_send_subject(room, s->jid);
}

/* §10.1.1, §14.6: a room nobody configured goes after lock_timeout. */
static uint64_t on_lock_timer(void *ud)
{
    muc_room *room = ud;
    room->lock_timer = NULL; /* this timer ends with this call */
    if (room->locked) {
        xmppd_log(room->svc->m, XMPPD_LOG_INFO, "room %s was never configured: destroyed",
                  muc_room_jid(room));
        muc_room_destroy(room, NULL, NULL, "The room was not configured in time");
    }
    return 0;
}

/* §10.1: the first presence to a room that does not exist creates it,
 * locked until its owner configures it. */
static void create_room(muc_service *svc, xmppd_event *ev, const xmppd_stanza *client)
{
    const char *text;
    const char *refuse = muc_may_create(svc, ev->from, &text);
    if (refuse) {
        muc_error(ev, NULL, NULL, refuse, text);
        return;
    }
    int counted = muc_create_check(svc, ev, &text); /* the rooms of every node */
    if (counted < 0)
        return;
    if (counted > 0) {
        muc_error(ev, NULL, NULL, "not-allowed", text);
        return;
    }
    muc_room *room = muc_room_new(svc, ev->to->node, true);
    xmppd_jid *bare = room ? xmppd_jid_to_bare(ev->from) : NULL;
    muc_occupant *occ = bare && muc_aff_set(room, bare->bare, AFF_OWNER, NULL, NULL) == 0
                            ? muc_occ_add(room, ev->to->resource, ev->from)
                            : NULL;
    if (!occ) {
        xmppd_jid_free(bare);
        if (room)
            muc_room_free(room);
        muc_error(ev, NULL, "wait", "resource-constraint", NULL);
        return;
    }
    xmppd_jid_free(bare);
    muc_dir_update(room);
    occ->role = ROLE_MODERATOR;
    occ->sessions->presence = xmppd_stanza_ref((xmppd_stanza *)client);
    if (svc->conf->lock_timeout > 0)
        room->lock_timer = xmppd_timer_add(svc->m, (uint64_t)svc->conf->lock_timeout, on_lock_timer,
                                           room);
    xmppd_log(svc->m, XMPPD_LOG_INFO, "room %s created by %s", muc_room_jid(room), ev->from->bare);
    enter(occ, occ->sessions, ev->stanza, true, false, true);
}

/* The nick a joining user gets: the requested one, or its reserved nick
 * when nicks are locked down (§7.2.2, code 210). */
static const char *join_nick(const muc_room *room, const xmppd_jid *bare, const char *asked,
                             bool *renamed)
{
    const char *reserved = muc_reserved_nick(room, bare->bare);
    *renamed = false;
    if (room->svc->conf->enforce_reserved_nicks && reserved && strcmp(reserved, asked) != 0) {
        *renamed = true;
        return reserved;
    }
    return asked;
}

static bool password_ok(const muc_room *room, const xmppd_stanza *mx)
{
    if (!room->cfg.password_protected)
        return true;
    const char *given = mx ? xmppd_stanza_child_text(mx, "password", NULL) : NULL;
    const char *want = room->cfg.password ? room->cfg.password : "";
    return given && strlen(given) == strlen(want) && xmppd_ct_equal(given, want, strlen(want));
}

static size_t room_limit(const muc_room *room)
{
    long long max = room->svc->conf->max_occupants;
    if (room->cfg.max_users > 0 && room->cfg.max_users < max)
        max = room->cfg.max_users;
    return (size_t)max;
}

/* §7.2: a session that is not in the room asks to enter. */
static void join(muc_service *svc, muc_room *room, xmppd_event *ev, xmppd_stanza *client)
{
    xmppd_stanza *mx = xmppd_stanza_child(ev->stanza, "x", NS_MUC);
    xmppd_jid *bare = xmppd_jid_to_bare(ev->from);
    if (!bare) {
        muc_error(ev, room, "wait", "resource-constraint", NULL);
        return;
    }
    muc_aff aff = muc_aff_of(room, bare);
    bool renamed;
    const char *nick = join_nick(room, bare, ev->to->resource, &renamed);
    muc_occupant *same = muc_occ_by_nick(room, nick);
    const char *by = muc_nick_reserved_by(room, nick, bare->bare);
    const char *cond = NULL, *type = NULL, *text = NULL;
    if (room->locked && aff != AFF_OWNER)
        cond = "item-not-found"; /* §7.2.10 */
    else if (aff == AFF_OUTCAST)
        cond = "forbidden"; /* §7.2.7 */
    else if (room->cfg.members_only && aff < AFF_MEMBER)
        cond = "registration-required"; /* §7.2.6 */
    else if (!password_ok(room, mx))
        cond = "not-authorized"; /* §7.2.5 */
    else if ((same && (!svc->conf->multi_session || !xmppd_jid_bare_equal(same->bare, bare))) || by)
        cond = "conflict"; /* §7.2.8 */
    else if (!same && room->n_occupants >= room_limit(room) &&
             (aff < AFF_ADMIN || room->n_occupants >= room_limit(room) + MUC_ADMIN_EXTRA)) {
        cond = "service-unavailable"; /* §7.2.9 */
        type = "wait";
    }
    if (cond) {
        xmppd_jid_free(bare);
        muc_error(ev, room, type, cond, text);
        return;
    }
    muc_occupant *occ = same;
    muc_sess *s = NULL;
    if (occ)
        s = muc_sess_add(occ, ev->from);
    else if ((occ = muc_occ_add(room, nick, ev->from)))
        s = occ->sessions;
    if (!s) {
        xmppd_jid_free(bare);
        muc_error(ev, room, "wait", "resource-constraint", NULL);
        return;
    }
    if (!same)
        occ->role = muc_default_role(room, bare->bare, aff);
    s->presence = xmppd_stanza_ref(client);
    xmppd_jid_free(bare);
    enter(occ, s, ev->stanza, false, renamed, muc_occ_visible(occ));
}

/* §7.6: an occupant sends presence to another nick in the same room. */
static void change_nick(muc_room *room, muc_sess *s, xmppd_event *ev, xmppd_stanza *client)
{
    muc_occupant *occ = s->occ;
    const char *nick = ev->to->resource;
    muc_occupant *other = muc_occ_by_nick(room, nick);
    const char *cond = NULL, *text = NULL;
    if (room->svc->conf->enforce_reserved_nicks && muc_reserved_nick(room, occ->bare->bare))
        cond = "not-acceptable"; /* §7.6: nicks locked down */
    else if ((other && other != occ) || muc_nick_reserved_by(room, nick, occ->bare->bare))
        cond = "conflict";
    else if (occ->sessions->next) {
        cond = "not-acceptable";
        text = "Change the nickname from one resource at a time: leave with the others first";
    }
    if (cond) {
        muc_error(ev, room, NULL, cond, text);
        return;
    }
    static const int c303[] = { 303, 0 };
    pres_extra ex = { .new_nick = nick };
    bool visible = muc_occ_visible(occ);
    broadcast(occ, NULL, true, &ex, c303, c303, visible);
    if (muc_occ_rename(occ, nick) < 0) {
        /* out of memory: the others saw it leave, so it leaves */
        muc_occ_free(occ);
        muc_error(ev, room, "wait", "resource-constraint", NULL);
        return;
    }
    xmppd_stanza_unref(s->presence);
    s->presence = xmppd_stanza_ref(client);
    pres_extra none = { 0 };
    broadcast(occ, client, false, &none, NULL, NULL, visible);
}

/* §7.7: a presence update from a session already in the room. §14.6:
 * updates beyond the occupant's rate are kept but not broadcast (the next
 * one shows the latest state). */
static void update(muc_sess *s, xmppd_event *ev, xmppd_stanza *client)
{
    muc_occupant *occ = s->occ;
    xmppd_stanza_unref(s->presence);
    s->presence = xmppd_stanza_ref(client);
    bool tell = muc_occ_visible(occ) && muc_rate_ok(occ);
    if (xmppd_stanza_child(ev->stanza, "x", NS_MUC)) {
        enter(occ, s, ev->stanza, false, false, tell); /* §17.3 rule 3: a resync */
        return;
    }
    /* The session that spoke last is the one the room shows. */
    if (occ->sessions != s) {
        for (muc_sess **pp = &occ->sessions; *pp; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        s->next = occ->sessions;
        occ->sessions = s;
    }
    pres_extra ex = { 0 };
    broadcast(occ, client, false, &ex, NULL, NULL, tell);
}

/* §7.2.18 (since 1.32): presence without the MUC extension from someone who
 * is not in the room gets an explicit kick, so a desynchronised client
 * learns it is out. */
static void not_in_room(muc_service *svc, xmppd_event *ev)
{
    static const int codes[] = { 110, 307, 333, 0 };
    xmppd_stanza *p = xmppd_stanza_new("presence", NULL);
    if (!p)
        return;
    xmppd_stanza_set_attr(p, "type", "unavailable");
    xmppd_stanza_set_attr(p, "from", ev->to->full);
    xmppd_stanza *x = xmppd_stanza_tag(p, "x", NS_MUC_USER);
    xmppd_stanza *item = x ? xmppd_stanza_tag(x, "item", NULL) : NULL;
    xmppd_stanza *reason = item ? xmppd_stanza_tag(item, "reason", NULL) : NULL;
    if (reason) {
        xmppd_stanza_set_attr(item, "affiliation", "none");
        xmppd_stanza_set_attr(item, "role", "none");
        xmppd_stanza_set_text(reason, "You are not in the room.");
        muc_add_codes(x, codes);
        muc_send_to(svc, p, ev->from);
    }
    xmppd_stanza_unref(p);
}

void muc_presence(muc_service *svc, muc_room *room, xmppd_event *ev)
{
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    muc_sess *s = room ? muc_sess_find(room, ev->from) : NULL;
    if (type && strcmp(type, "error") == 0) {
        if (s)
            muc_sess_gone(s, true); /* §18.1.2 (ghosts): the session is unreachable */
        return;
    }
    if (type && strcmp(type, "unavailable") == 0) {
        if (!s)
            return; /* §17.3 rule 5 */
        if (s->occ->sessions->next) {
            occ_leave_one(s, ev->stanza);
            return;
        }
        occ_leave(s->occ, ev->stanza, NULL, NULL, NULL);
        return;
    }
    if (type)
        return; /* probes and subscriptions are not joins (§17.3 rules 1, 2) */
    if (!ev->to->resource) {
        muc_error(ev, room, "modify", "jid-malformed", NULL); /* §7.2.1 */
        return;
    }
    const char *bad = muc_nick_invalid(svc, ev->to->resource);
    if (bad) {
        muc_error(ev, room, "modify", bad, NULL);
        return;
    }
    xmppd_stanza *client = client_part(ev->stanza);
    if (!client) {
        muc_error(ev, room, "wait", "resource-constraint", NULL);
        return;
    }
    if (s && strcmp(s->occ->nick, ev->to->resource) == 0)
        update(s, ev, client);
    else if (s)
        change_nick(room, s, ev, client);
    else if (!xmppd_stanza_child(ev->stanza, "x", NS_MUC))
        not_in_room(svc, ev);
    else if (!room)
        create_room(svc, ev, client);
    else
        join(svc, room, ev, client);
    xmppd_stanza_unref(client);
}
