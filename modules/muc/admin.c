/* muc#admin (XEP-0045 §8, §9, §10.3-10.7): roles (kick, voice, moderator)
 * by nick and affiliations (ban, member, admin, owner) by bare JID, their
 * lists, and what a change does to occupants. A set is checked item by
 * item first and applied only when every item is allowed (§9.2: a request
 * with one forbidden change changes nothing). */
#include <stdlib.h>
#include <string.h>

#include "muc.h"

/* ---- applying changes ------------------------------------------------------------- */

void muc_set_role(muc_occupant *occ, muc_role role, const char *reason, const char *actor_nick)
{
    static const int kicked[] = { 307, 0 };
    if (role == ROLE_NONE) {
        muc_occ_remove(occ, kicked, reason, actor_nick); /* §8.2 */
        return;
    }
    occ->role = role;
    muc_broadcast_presence(occ, NULL, NULL, reason, actor_nick);
}

/* The role an occupant keeps or gets when its affiliation changes (§5.2.2
 * note: gained roles are stable, lost ones are the implementation's). */
static muc_role role_after(const muc_occupant *occ, muc_aff old, muc_aff aff)
{
    if (aff >= AFF_ADMIN)
        return ROLE_MODERATOR;
    if (old >= AFF_ADMIN)
        return muc_default_role(occ->room, occ->bare->bare, aff);
    if (aff == AFF_MEMBER && occ->role == ROLE_VISITOR && occ->room->cfg.moderated)
        return ROLE_PARTICIPANT;
    return occ->role;
}

/* §9.7, §10.6: a change for someone not in the room is told to the room
 * (to its moderators when real JIDs are not public). */
static void tell_absent(muc_room *room, const char *bare, muc_aff aff)
{
    xmppd_stanza *m = xmppd_stanza_new("message", NULL);
    xmppd_stanza *x = m ? xmppd_stanza_tag(m, "x", NS_MUC_USER) : NULL;
    xmppd_stanza *item = x ? xmppd_stanza_tag(x, "item", NULL) : NULL;
    if (item) {
        xmppd_stanza_set_attr(item, "affiliation", muc_aff_name(aff));
        xmppd_stanza_set_attr(item, "jid", bare);
        xmppd_stanza_set_attr(item, "role", "none");
        muc_room_notice(room, m, !room->cfg.whois_anyone);
    }
    xmppd_stanza_unref(m);
}

void muc_aff_changed(muc_room *room, const char *bare, muc_aff old, muc_aff aff,
                     const char *reason, const char *actor_nick)
{
    static const int banned[] = { 301, 0 }, lost_membership[] = { 321, 0 };
    bool present = false;
    for (muc_occupant *occ = room->occ_head, *next; occ; occ = next) {
        next = occ->next;
        if (strcmp(occ->bare->bare, bare) != 0)
            continue;
        present = true;
        if (aff == AFF_OUTCAST)
            muc_occ_remove(occ, banned, reason, actor_nick); /* §9.1 */
        else if (room->cfg.members_only && aff < AFF_MEMBER)
            muc_occ_remove(occ, lost_membership, reason, actor_nick); /* §9.4 */
        else {
            occ->role = role_after(occ, old, aff);
            muc_broadcast_presence(occ, NULL, NULL, reason, actor_nick);
        }
    }
    if (!present)
        tell_absent(room, bare, aff);
}

/* ---- who is asking -------------------------------------------------------------------- */

typedef struct actor {
    xmppd_jid *bare;
    muc_aff aff;
    muc_role role;  /* highest role of its occupants; moderator for admins */
    char *nick;     /* one of its nicks (owned: a change may remove it) */
} actor;

static int actor_of(const muc_room *room, const xmppd_event *ev, actor *a)
{
    a->nick = NULL;
    if (!(a->bare = xmppd_jid_to_bare(ev->from)))
        return -1;
    a->aff = muc_aff_of(room, a->bare);
    a->role = a->aff >= AFF_ADMIN ? ROLE_MODERATOR : ROLE_NONE;
    for (muc_occupant *o = room->occ_head; o; o = o->next)
        if (xmppd_jid_bare_equal(o->bare, a->bare)) {
            if (o->role > a->role)
                a->role = o->role;
            if (!a->nick && !(a->nick = strdup(o->nick)))
                return -1;
        }
    return 0;
}

/* ---- lists (get) ------------------------------------------------------------------------- */

static bool may_list_affiliation(const muc_room *room, const actor *a, muc_aff list)
{
    if (a->aff == AFF_OWNER)
        return true;
    switch (list) {
    case AFF_OUTCAST:
        return a->aff == AFF_ADMIN;
    case AFF_MEMBER: /* §9.5 note, §5.2.1 ***: JIDs only where they are public */
        return a->aff == AFF_ADMIN ||
               (room->cfg.whois_anyone &&
                (a->aff == AFF_MEMBER || (room->cfg.get_member_list & (1u << a->role))));
    default: /* owner and admin lists: §10.5, §10.8 */
        return room->cfg.whois_anyone && (a->aff >= AFF_MEMBER || a->role != ROLE_NONE);
    }
}

static int list_affiliation(muc_room *room, xmppd_event *ev, const actor *a, muc_aff list)
{
    if (!may_list_affiliation(room, a, list))
        return muc_error(ev, room, "auth", "forbidden", NULL);
    xmppd_stanza *r, *q = muc_reply_query(ev, NS_MUC_ADMIN, &r);
    if (!q)
        return XMPPD_FAIL;
    const char *key;
    json_t *e;
    json_object_foreach(room->affs, key, e) {
        if (muc_aff_parse(json_string_value(json_object_get(e, "affiliation"))) != (int)list)
            continue;
        xmppd_stanza *item = xmppd_stanza_tag(q, "item", NULL);
        if (!item)
            break;
        xmppd_stanza_set_attr(item, "affiliation", muc_aff_name(list));
        xmppd_stanza_set_attr(item, "jid", key);
        const char *nick = json_string_value(json_object_get(e, "nick"));
        if (nick && list != AFF_OUTCAST)
            xmppd_stanza_set_attr(item, "nick", nick);
        const char *reason = json_string_value(json_object_get(e, "reason"));
        xmppd_stanza *rs = reason ? xmppd_stanza_tag(item, "reason", NULL) : NULL;
        if (rs)
            xmppd_stanza_set_text(rs, reason);
    }
    xmppd_reply(ev, r);
    return XMPPD_HANDLED;
}

static int list_role(muc_room *room, xmppd_event *ev, const actor *a, muc_role list)
{
    /* §8.5: moderators see the voice list; §9.8: admins the moderator list. */
    bool ok = list == ROLE_MODERATOR ? a->aff >= AFF_ADMIN : a->role == ROLE_MODERATOR;
    if (!ok)
        return muc_error(ev, room, "auth", "forbidden", NULL);
    xmppd_stanza *r, *q = muc_reply_query(ev, NS_MUC_ADMIN, &r);
    if (!q)
        return XMPPD_FAIL;
    for (muc_occupant *o = room->occ_head; o; o = o->next) {
        if (o->role != list)
            continue;
        xmppd_stanza *item = xmppd_stanza_tag(q, "item", NULL);
        if (!item)
            break;
        xmppd_stanza_set_attr(item, "nick", o->nick);
        xmppd_stanza_set_attr(item, "role", muc_role_name(o->role));
        xmppd_stanza_set_attr(item, "affiliation", muc_aff_name(muc_aff_of(room, o->bare)));
        xmppd_stanza_set_attr(item, "jid", o->sessions->jid->full); /* §17.4 rule 5 */
    }
    xmppd_reply(ev, r);
    return XMPPD_HANDLED;
}

static int admin_get(muc_room *room, xmppd_event *ev, xmppd_stanza *q, const actor *a)
{
    xmppd_stanza *item = xmppd_stanza_child(q, "item", NULL);
    if (!item || xmppd_stanza_next(item))
        return muc_error(ev, room, "modify", "bad-request", "Ask for one list");
    int aff = muc_aff_parse(xmppd_stanza_attr(item, "affiliation"));
    int role = muc_role_parse(xmppd_stanza_attr(item, "role"));
    if ((aff >= 0) == (role >= 0) || aff == AFF_NONE || role == ROLE_NONE)
        return muc_error(ev, room, "modify", "bad-request", "Ask for one role or affiliation list");
    return aff >= 0 ? list_affiliation(room, ev, a, (muc_aff)aff)
                    : list_role(room, ev, a, (muc_role)role);
}

/* ---- changes (set) -------------------------------------------------------------------- */

typedef struct change {
    xmppd_stanza *item;
    const char *target_nick; /* role changes */
    muc_occupant *target;    /* found when checked; looked up again when applied */
    xmppd_jid *jid;       /* affiliation changes: bare */
    int role, aff;        /* -1: not this kind */
    muc_aff old;
    const char *nick;     /* reserved nick (NULL: keep) */
    const char *reason;
} change;

typedef struct verdict {
    const char *type, *cond, *text;
} verdict;

static verdict deny(const char *type, const char *cond, const char *text)
{
    return (verdict){ type, cond, text };
}

/* §8.2-8.5, §9.6, §9.7: may the actor give target this role? */
static verdict check_role(const muc_room *room, const actor *a, const change *c)
{
    const muc_occupant *t = c->target;
    muc_aff taff = muc_aff_of(room, t->bare);
    if (a->role != ROLE_MODERATOR)
        return deny("auth", "forbidden", NULL);
    if ((c->role == ROLE_MODERATOR || t->role == ROLE_MODERATOR) && a->aff < AFF_ADMIN)
        return deny("auth", "forbidden", "Only admins and owners change who moderates");
    switch (c->role) {
    case ROLE_NONE:
        if (xmppd_jid_bare_equal(t->bare, a->bare))
            return deny("cancel", "conflict", "You cannot kick yourself");
        if (taff > a->aff)
            return deny("cancel", "not-allowed", "The occupant's affiliation is higher than yours");
        break;
    case ROLE_VISITOR:
        if (taff >= AFF_ADMIN || taff > a->aff)
            return deny("cancel", "not-allowed", "You cannot revoke voice from this occupant");
        break;
    case ROLE_PARTICIPANT:
        if (t->role == ROLE_MODERATOR && taff >= AFF_ADMIN)
            return deny("cancel", "not-allowed", "Admins and owners stay moderators");
        break;
    default:
        break;
    }
    return deny(NULL, NULL, NULL);
}

/* §9, §10: may the actor give jid this affiliation? */
static verdict check_aff(const muc_room *room, const actor *a, const change *c)
{
    if (a->aff < AFF_ADMIN)
        return deny("auth", "forbidden", NULL);
    if (a->aff == AFF_ADMIN) {
        if (c->aff >= AFF_ADMIN)
            return deny("auth", "forbidden", "Only owners edit the admin and owner lists");
        if (c->old >= AFF_ADMIN)
            return c->aff == AFF_OUTCAST
                       ? deny("cancel", "not-allowed", "You cannot ban an admin or an owner")
                       : deny("auth", "forbidden", "Only owners edit the admin and owner lists");
    }
    if (c->aff == AFF_OUTCAST && xmppd_jid_bare_equal(c->jid, a->bare))
        return deny("cancel", "conflict", "You cannot ban yourself");
    if (muc_is_service_admin(room->svc, c->jid) && c->aff != AFF_OWNER)
        return deny("cancel", "not-allowed", "A service admin owns every room");
    if (c->nick && *c->nick) {
        const char *bad = muc_nick_invalid(room->svc, c->nick);
        if (bad)
            return deny("modify", bad, "Not a usable nickname");
        if (muc_nick_reserved_by(room, c->nick, c->jid->bare))
            return deny("cancel", "conflict", "The nickname is reserved by someone else");
    }
    return deny(NULL, NULL, NULL);
}

/* Parses one item of a set. */
static verdict parse_item(muc_room *room, xmppd_stanza *item, change *c)
{
    const char *role_s = xmppd_stanza_attr(item, "role");
    const char *aff_s = xmppd_stanza_attr(item, "affiliation");
    *c = (change){ .item = item, .role = muc_role_parse(role_s), .aff = muc_aff_parse(aff_s),
                   .nick = xmppd_stanza_attr(item, "nick"),
                   .reason = xmppd_stanza_child_text(item, "reason", NULL) };
    if ((role_s != NULL) == (aff_s != NULL) || (role_s && c->role < 0) || (aff_s && c->aff < 0))
        return deny("modify", "bad-request", "Each item changes one role or one affiliation");
    if (c->reason && muc_utf8_len(c->reason) > MUC_TEXT_MAX)
        return deny("modify", "not-acceptable", "The reason is too long");
    if (role_s) {
        const char *nick = c->nick;
        if (!nick)
            return deny("modify", "bad-request", "A role is changed by nick");
        if (!(c->target = muc_occ_by_nick(room, nick)))
            return deny("cancel", "item-not-found", "No occupant has this nick");
        c->target_nick = nick;
        c->nick = NULL;
        return deny(NULL, NULL, NULL);
    }
    const char *jid_s = xmppd_stanza_attr(item, "jid");
    xmppd_jid *full = jid_s ? xmppd_jid_parse(jid_s) : NULL;
    c->jid = full ? xmppd_jid_to_bare(full) : NULL; /* §10.6: bare JIDs */
    xmppd_jid_free(full);
    if (!c->jid)
        return deny("modify", jid_s ? "jid-malformed" : "bad-request",
                    "An affiliation is changed by JID");
    c->old = muc_aff_of(room, c->jid);
    return deny(NULL, NULL, NULL);
}

/* Owners left and affiliations counted if every change went through. */
static verdict check_totals(const muc_room *room, const change *cs, size_t n)
{
    json_t *affs = json_deep_copy(room->affs);
    if (!affs)
        return deny("wait", "resource-constraint", NULL);
    for (size_t i = 0; i < n; i++) {
        if (cs[i].aff < 0)
            continue;
        if (cs[i].aff == AFF_NONE)
            json_object_del(affs, cs[i].jid->bare);
        else
            json_object_set_new(affs, cs[i].jid->bare, json_pack("{s:s}", "affiliation",
                                                                  muc_aff_name((muc_aff)cs[i].aff)));
    }
    size_t owners = 0;
    const char *key;
    json_t *e;
    json_object_foreach(affs, key, e)
        if (muc_aff_parse(json_string_value(json_object_get(e, "affiliation"))) == AFF_OWNER)
            owners++;
    size_t total = json_object_size(affs);
    json_decref(affs);
    if (owners == 0)
        return deny("cancel", "conflict", "A room needs an owner");
    if (total > (size_t)room->svc->conf->max_affiliations)
        return deny("cancel", "not-acceptable", "The room has too many affiliations");
    return deny(NULL, NULL, NULL);
}

static void apply(muc_room *room, const actor *a, change *c)
{
    if (c->role >= 0) {
        /* An earlier item of the request may have removed the occupant. */
        muc_occupant *t = muc_occ_by_nick(room, c->target_nick);
        if (!t)
            return;
        if (c->role == ROLE_PARTICIPANT || c->role == ROLE_VISITOR) /* §5.1: kept across visits */
            json_object_set_new(room->roles, t->bare->bare,
                                json_string(muc_role_name((muc_role)c->role)));
        muc_set_role(t, (muc_role)c->role, c->reason, a->nick);
        return;
    }
    muc_aff_set(room, c->jid->bare, (muc_aff)c->aff, c->nick, c->reason);
    if (c->aff == AFF_OUTCAST)
        json_object_del(room->roles, c->jid->bare);
    muc_aff_changed(room, c->jid->bare, c->old, (muc_aff)c->aff, c->reason, a->nick);
    /* §9.5: a new member of a members-only room is invited. */
    if (room->cfg.members_only && c->aff == AFF_MEMBER && c->old == AFF_NONE)
        muc_send_invite(room, c->jid->bare, a->bare->bare, c->reason, NULL);
}

static int admin_set(muc_room *room, xmppd_event *ev, xmppd_stanza *q, const actor *a)
{
    change cs[MUC_MAX_ADMIN_ITEMS];
    size_t n = 0;
    verdict v = deny(NULL, NULL, NULL);
    for (xmppd_stanza *item = xmppd_stanza_first(q); item && !v.cond; item = xmppd_stanza_next(item)) {
        if (strcmp(xmppd_stanza_name(item), "item") != 0)
            continue;
        if (n == MUC_MAX_ADMIN_ITEMS) {
            v = deny("modify", "not-acceptable", "Too many items in one request");
            break;
        }
        v = parse_item(room, item, &cs[n]);
        n++;
        if (!v.cond)
            v = cs[n - 1].role >= 0 ? check_role(room, a, &cs[n - 1]) : check_aff(room, a, &cs[n - 1]);
    }
    if (!v.cond && n == 0)
        v = deny("modify", "bad-request", "No item to change");
    if (!v.cond)
        v = check_totals(room, cs, n);
    if (!v.cond) {
        for (size_t i = 0; i < n; i++)
            apply(room, a, &cs[i]);
        muc_room_save(room);
        xmppd_reply(ev, xmppd_stanza_reply(ev->stanza));
    }
    for (size_t i = 0; i < n; i++)
        xmppd_jid_free(cs[i].jid);
    if (v.cond)
        return muc_error(ev, room, v.type, v.cond, v.text);
    return XMPPD_HANDLED;
}

int muc_admin_iq(muc_room *room, xmppd_event *ev)
{
    xmppd_stanza *q = xmppd_stanza_child(ev->stanza, "query", NS_MUC_ADMIN);
    actor a;
    if (!q)
        return muc_error(ev, room, "modify", "bad-request", NULL);
    if (actor_of(room, ev, &a) < 0) {
        xmppd_jid_free(a.bare);
        free(a.nick);
        return XMPPD_FAIL;
    }
    int rc = strcmp(xmppd_stanza_attr(ev->stanza, "type"), "get") == 0 ? admin_get(room, ev, q, &a)
                                                                       : admin_set(room, ev, q, &a);
    xmppd_jid_free(a.bare);
    free(a.nick);
    return rc;
}
