/* Messages to rooms and occupants: groupchat (XEP-0045 §7.4) through the
 * archive, subject changes (§8.1), private messages (§7.5), mediated
 * invitations and declines (§7.8.2), voice requests and their approval
 * (§7.13, §8.6), error bounces from occupants (§18.1.2 ghosts). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "muc.h"
#include "muc_store.h"

/* ---- sending ------------------------------------------------------------------ */

/* A copy of tmpl to every session of every occupant (moderators only when
 * asked). */
static void fanout(muc_room *room, const xmppd_stanza *tmpl, bool moderators_only)
{
    for (muc_occupant *o = room->occ_head; o; o = o->next) {
        if (moderators_only && o->role != ROLE_MODERATOR)
            continue;
        for (muc_sess *s = o->sessions; s; s = s->next)
            muc_send_to(room->svc, tmpl, s->jid);
    }
}

void muc_room_notice(muc_room *room, xmppd_stanza *tmpl, bool moderators_only)
{
    xmppd_stanza_set_attr(tmpl, "from", muc_room_jid(room));
    if (!xmppd_stanza_attr(tmpl, "id")) {
        char id[24];
        muc_random_id(id);
        xmppd_stanza_set_attr(tmpl, "id", id);
    }
    fanout(room, tmpl, moderators_only);
}

void muc_status_notice(muc_room *room, const int *codes)
{
    xmppd_stanza *m = xmppd_stanza_new("message", NULL);
    if (!m)
        return;
    xmppd_stanza_set_attr(m, "type", "groupchat");
    muc_status_x(m, codes);
    muc_room_notice(room, m, false);
    xmppd_stanza_unref(m);
}

void muc_send_subject(muc_room *room, const xmppd_jid *to)
{
    xmppd_stanza *m = xmppd_stanza_new("message", NULL);
    xmppd_stanza *subj = m ? xmppd_stanza_tag(m, "subject", NULL) : NULL;
    if (!subj) {
        xmppd_stanza_unref(m);
        return;
    }
    char id[24];
    muc_random_id(id);
    xmppd_stanza_set_attr(m, "type", "groupchat");
    xmppd_stanza_set_attr(m, "id", id);
    xmppd_stanza_set_attr(m, "from", room->subject_from ? room->subject_from : muc_room_jid(room));
    if (room->subject)
        xmppd_stanza_set_text(subj, room->subject);
    if (room->subject_ms) {
        /* §7.2.15: when the subject was set, delayed from the room. */
        char stamp[32];
        muc_stamp(room->subject_ms, stamp);
        xmppd_stanza *d = xmppd_stanza_tag(m, "delay", NS_DELAY);
        if (d) {
            xmppd_stanza_set_attr(d, "from", muc_room_jid(room));
            xmppd_stanza_set_attr(d, "stamp", stamp);
        }
    }
    muc_send_to(room->svc, m, to);
    xmppd_stanza_unref(m);
}

/* ---- groupchat ------------------------------------------------------------------ */

/* XEP-0359: the room stamps its own stanza-id (a sender's claim in its name
 * was removed by relayed()), archives the message and sends it to every
 * occupant. The id is chosen here, so nothing waits for the archive: the
 * message leaves at once and the write completes later. */
void muc_broadcast_groupchat(muc_room *room, xmppd_stanza *tmpl, const muc_occupant *author,
                             bool history)
{
    char id[MUC_ARCHIVE_ID_SIZE];
    int64_t when_ms = xmppd_wallclock_ms();
    muc_archive_id(when_ms, id);
    if (room->cfg.archiving)
        muc_archive_message(room, id, when_ms, tmpl, author ? author->bare->bare : NULL);
    xmppd_stanza *sid = xmppd_stanza_tag(tmpl, "stanza-id", NS_SID);
    if (sid) {
        xmppd_stanza_set_attr(sid, "id", id);
        xmppd_stanza_set_attr(sid, "by", muc_room_jid(room));
    }
    if (history && author)
        muc_hist_push(room, id, when_ms, tmpl, author->nick, author->bare->bare,
                      author->occupant_id);
    fanout(room, tmpl, false);
    xmppd_stanza_unref(tmpl);
}

/* ---- occupant messages -------------------------------------------------------------- */

/* The message as the room relays it from occ: from its occupant JID, no
 * 'to', ids it may not claim removed (XEP-0359, XEP-0421), its
 * occupant id added. New tree. */
static xmppd_stanza *relayed(const xmppd_stanza *st, const muc_occupant *occ)
{
    xmppd_stanza *m = xmppd_stanza_copy(st);
    if (!m)
        return NULL;
    char from[3100];
    snprintf(from, sizeof(from), "%s/%s", muc_room_jid(occ->room), occ->nick);
    xmppd_stanza_set_attr(m, "from", from);
    xmppd_stanza_set_attr(m, "to", NULL);
    for (xmppd_stanza *c = xmppd_stanza_first(m), *next; c; c = next) {
        next = xmppd_stanza_next(c);
        const char *ns = xmppd_stanza_ns(c), *name = xmppd_stanza_name(c);
        bool room_sid = strcmp(name, "stanza-id") == 0 && strcmp(ns, NS_SID) == 0 &&
                        (!xmppd_stanza_attr(c, "by") ||
                         strcmp(xmppd_stanza_attr(c, "by"), muc_room_jid(occ->room)) == 0);
        if (room_sid || (strcmp(name, "occupant-id") == 0 && strcmp(ns, NS_OCCUPANT_ID) == 0))
            xmppd_stanza_remove(m, c);
    }
    xmppd_stanza *oid = xmppd_stanza_tag(m, "occupant-id", NS_OCCUPANT_ID);
    if (oid)
        xmppd_stanza_set_attr(oid, "id", occ->occupant_id);
    return m;
}

/* §8.1: a message with <subject/> and neither <body/> nor <thread/>. */
static void change_subject(muc_room *room, muc_occupant *occ, xmppd_event *ev, const char *subject)
{
    bool allowed = occ->role == ROLE_MODERATOR ||
                   (room->cfg.change_subject && occ->role >= ROLE_PARTICIPANT);
    if (!allowed) {
        muc_error(ev, room, "auth", "forbidden", NULL);
        return;
    }
    if (muc_utf8_len(subject) > (size_t)room->svc->conf->max_subject_length) {
        muc_error(ev, room, "modify", "not-acceptable", "The subject is too long");
        return;
    }
    if (!muc_rate_ok(occ)) {
        muc_error(ev, room, "wait", "resource-constraint", "You are sending messages too fast");
        return;
    }
    xmppd_stanza *m = relayed(ev->stanza, occ);
    char *text = *subject ? strdup(subject) : NULL;
    char *from = m ? strdup(xmppd_stanza_attr(m, "from")) : NULL;
    if (!m || !from || (*subject && !text)) {
        xmppd_stanza_unref(m);
        free(text);
        free(from);
        muc_error(ev, room, "wait", "resource-constraint", NULL);
        return;
    }
    free(room->subject);
    free(room->subject_from);
    room->subject = text;
    room->subject_from = from;
    room->subject_ms = xmppd_wallclock_ms();
    muc_room_save(room);
    fanout(room, m, false);
    xmppd_stanza_unref(m);
}

/* §7.4: a groupchat message from an occupant to everyone. */
static void groupchat(muc_room *room, muc_sess *s, xmppd_event *ev)
{
    if (!s) {
        muc_error(ev, room, "cancel", "not-acceptable", "Only occupants may send to the room");
        return;
    }
    muc_occupant *occ = s->occ;
    const char *subject = xmppd_stanza_child_text(ev->stanza, "subject", NULL);
    bool body = xmppd_stanza_child(ev->stanza, "body", NULL) != NULL;
    if (subject && !body && !xmppd_stanza_child(ev->stanza, "thread", NULL)) {
        change_subject(room, occ, ev, subject);
        return;
    }
    if (occ->role < ROLE_PARTICIPANT) {
        muc_error(ev, room, "auth", "forbidden", "Visitors have no voice in this room");
        return;
    }
    if (!muc_rate_ok(occ)) {
        muc_error(ev, room, "wait", "resource-constraint", "You are sending messages too fast");
        return;
    }
    xmppd_stanza *m = relayed(ev->stanza, occ);
    if (!m) {
        muc_error(ev, room, "wait", "resource-constraint", NULL);
        return;
    }
    if (!xmppd_stanza_attr(m, "id")) {
        /* §7.4: every reflection carries the same id. */
        char id[24];
        muc_random_id(id);
        xmppd_stanza_set_attr(m, "id", id);
    }
    /* Messages with content are archived and kept for history; chat
     * states and the like are only relayed. */
    bool keep = body || xmppd_stanza_child(ev->stanza, "store", NS_HINTS);
    if (keep)
        muc_broadcast_groupchat(room, m, occ, body);
    else {
        fanout(room, m, false);
        xmppd_stanza_unref(m);
    }
}

/* §7.5: a private message to another occupant. */
static void private_message(muc_room *room, muc_sess *s, xmppd_event *ev)
{
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    if (type && strcmp(type, "groupchat") == 0) {
        muc_error(ev, room, "modify", "bad-request", NULL);
        return;
    }
    if (!s) {
        muc_error(ev, room, "cancel", "not-acceptable", "Only occupants may send private messages");
        return;
    }
    muc_occupant *to = muc_occ_by_nick(room, ev->to->resource);
    if (!to) {
        muc_error(ev, room, "cancel", "item-not-found", NULL);
        return;
    }
    muc_role r = s->occ->role;
    muc_pm pm = room->cfg.allow_pm;
    if (pm == PM_NONE || (pm == PM_MODERATORS && r != ROLE_MODERATOR) ||
        (pm == PM_PARTICIPANTS && r < ROLE_PARTICIPANT)) {
        muc_error(ev, room, "cancel", "not-allowed", "Private messages are not allowed here");
        return;
    }
    if (!muc_rate_ok(s->occ)) {
        muc_error(ev, room, "wait", "resource-constraint", "You are sending messages too fast");
        return;
    }
    xmppd_stanza *m = relayed(ev->stanza, s->occ);
    if (!m) {
        muc_error(ev, room, "wait", "resource-constraint", NULL);
        return;
    }
    if (!xmppd_stanza_child(m, "x", NS_MUC_USER))
        xmppd_stanza_tag(m, "x", NS_MUC_USER); /* §7.5: for carbons of PMs */
    for (muc_sess *t = to->sessions; t; t = t->next) /* §7.2.8: to all resources */
        muc_send_to(room->svc, m, t->jid);
    xmppd_stanza_unref(m);
}

/* ---- invitations ----------------------------------------------------------------------- */

void muc_send_invite(muc_room *room, const char *to, const char *inviter, const char *reason,
                     const xmppd_stanza *cont)
{
    xmppd_stanza *m = xmppd_stanza_new("message", NULL);
    xmppd_stanza *x = m ? xmppd_stanza_tag(m, "x", NS_MUC_USER) : NULL;
    xmppd_stanza *inv = x ? xmppd_stanza_tag(x, "invite", NULL) : NULL;
    if (!inv) {
        xmppd_stanza_unref(m);
        return;
    }
    char id[24];
    muc_random_id(id);
    xmppd_stanza_set_attr(m, "from", muc_room_jid(room));
    xmppd_stanza_set_attr(m, "to", to);
    xmppd_stanza_set_attr(m, "id", id);
    if (inviter)
        xmppd_stanza_set_attr(inv, "from", inviter);
    if (reason) {
        xmppd_stanza *r = xmppd_stanza_tag(inv, "reason", NULL);
        if (r)
            xmppd_stanza_set_text(r, reason);
    }
    if (cont)
        xmppd_stanza_add(inv, xmppd_stanza_copy(cont));
    if (room->cfg.password_protected && room->cfg.password) {
        xmppd_stanza *pw = xmppd_stanza_tag(x, "password", NULL);
        if (pw)
            xmppd_stanza_set_text(pw, room->cfg.password);
    }
    /* A line for clients that do not know MUC invitations. */
    char text[4096];
    snprintf(text, sizeof(text), "%s invites you to the room %s%s%s", inviter ? inviter : "Someone",
             muc_room_jid(room), reason ? ": " : "", reason ? reason : "");
    xmppd_stanza *body = xmppd_stanza_tag(m, "body", NULL);
    if (body)
        xmppd_stanza_set_text(body, text);
    xmppd_route(room->svc->host, m);
    xmppd_stanza_unref(m);
}

/* May this sender invite others through the room? §7.8.2, §9.5. */
static bool may_invite(const muc_room *room, muc_sess *s, muc_aff aff)
{
    if (aff >= AFF_ADMIN)
        return true;
    return s != NULL && (!room->cfg.members_only || room->cfg.allow_invites);
}

static void invite(muc_room *room, muc_sess *s, xmppd_event *ev, xmppd_stanza *x)
{
    xmppd_jid *bare = xmppd_jid_to_bare(ev->from);
    muc_aff aff = bare ? muc_aff_of(room, bare) : AFF_NONE;
    xmppd_jid *to[MUC_MAX_INVITES];
    size_t n = 0;
    const char *cond = NULL, *type = NULL, *text = NULL;
    if (!s && aff < AFF_ADMIN) {
        cond = "not-acceptable";
        type = "cancel";
        text = "Only occupants may invite through the room";
    } else if (!may_invite(room, s, aff)) {
        cond = "forbidden";
        type = "auth";
    }
    for (xmppd_stanza *c = xmppd_stanza_first(x); !cond && c; c = xmppd_stanza_next(c)) {
        if (strcmp(xmppd_stanza_name(c), "invite") != 0)
            continue;
        const char *jid = xmppd_stanza_attr(c, "to");
        if (n == MUC_MAX_INVITES) {
            cond = "not-acceptable";
            type = "cancel";
            text = "Too many invitations in one message";
        } else if (!jid || !(to[n] = xmppd_jid_parse(jid))) {
            cond = "jid-malformed";
            type = "modify";
        } else {
            n++;
        }
    }
    if (cond) {
        for (size_t i = 0; i < n; i++)
            xmppd_jid_free(to[i]);
        xmppd_jid_free(bare);
        muc_error(ev, room, type, cond, text);
        return;
    }
    size_t k = 0;
    for (xmppd_stanza *c = xmppd_stanza_first(x); c && k < n; c = xmppd_stanza_next(c)) {
        if (strcmp(xmppd_stanza_name(c), "invite") != 0)
            continue;
        xmppd_jid *invitee = xmppd_jid_to_bare(to[k]);
        /* §9.5: an invitation into a members-only room makes the invitee a
         * member (never in an open room). */
        if (invitee && room->cfg.members_only && muc_aff_of(room, invitee) == AFF_NONE &&
            muc_aff_set(room, invitee->bare, AFF_MEMBER, NULL, NULL) == 0) {
            muc_room_save(room);
            muc_aff_changed(room, invitee->bare, AFF_NONE, AFF_MEMBER, NULL,
                            s ? s->occ->nick : NULL);
        }
        muc_send_invite(room, to[k]->full, bare ? bare->bare : NULL,
                        xmppd_stanza_child_text(c, "reason", NULL),
                        xmppd_stanza_child(c, "continue", NULL));
        xmppd_jid_free(invitee);
        xmppd_jid_free(to[k]);
        k++;
    }
    xmppd_jid_free(bare);
}

/* §7.8.2: a declined invitation goes back to the inviter through the room. */
static void decline(muc_room *room, xmppd_event *ev, xmppd_stanza *d)
{
    const char *to_s = xmppd_stanza_attr(d, "to");
    xmppd_jid *to = to_s ? xmppd_jid_parse(to_s) : NULL;
    xmppd_stanza *m = to ? xmppd_stanza_new("message", NULL) : NULL;
    xmppd_stanza *x = m ? xmppd_stanza_tag(m, "x", NS_MUC_USER) : NULL;
    xmppd_stanza *out = x ? xmppd_stanza_tag(x, "decline", NULL) : NULL;
    if (!out) {
        xmppd_stanza_unref(m);
        xmppd_jid_free(to);
        muc_error(ev, room, "modify", to_s ? "jid-malformed" : "bad-request", NULL);
        return;
    }
    xmppd_stanza_set_attr(m, "from", muc_room_jid(room));
    xmppd_stanza_set_attr(m, "to", to->full);
    if (xmppd_stanza_attr(ev->stanza, "id"))
        xmppd_stanza_set_attr(m, "id", xmppd_stanza_attr(ev->stanza, "id"));
    xmppd_stanza_set_attr(out, "from", ev->from->bare);
    const char *reason = xmppd_stanza_child_text(d, "reason", NULL);
    xmppd_stanza *r = reason ? xmppd_stanza_tag(out, "reason", NULL) : NULL;
    if (r)
        xmppd_stanza_set_text(r, reason);
    xmppd_route(room->svc->host, m);
    xmppd_stanza_unref(m);
    xmppd_jid_free(to);
}

/* ---- voice requests -------------------------------------------------------------------- */

/* §8.6: the approval form every moderator gets for a visitor's request. */
static void ask_moderators(muc_room *room, muc_sess *s)
{
    xmppd_stanza *m = xmppd_stanza_new("message", NULL);
    xmppd_stanza *x = m ? xmppd_form_new("form", NS_MUC_REQUEST, "Voice request") : NULL;
    if (!x || !xmppd_stanza_add(m, x)) {
        xmppd_stanza_unref(m);
        return;
    }
    xmppd_stanza *ins = xmppd_stanza_tag(x, "instructions", NULL);
    if (ins)
        xmppd_stanza_set_text(ins, "To grant voice to this person, set \"Grant voice\" and submit "
                                   "the form; to ignore the request, cancel it.");
    xmppd_stanza *f = xmppd_form_add_field(x, "muc#role", "list-single", "Requested role",
                                           "participant");
    if (f)
        xmppd_form_add_option(f, NULL, "participant");
    xmppd_form_add_field(x, "muc#jid", "jid-single", "User ID", s->jid->full);
    xmppd_form_add_field(x, "muc#roomnick", "text-single", "Room Nickname", s->occ->nick);
    xmppd_form_add_field(x, "muc#request_allow", "boolean", "Grant voice to this person?", "false");
    muc_room_notice(room, m, true);
    xmppd_stanza_unref(m);
}

/* §7.13 (a visitor asks) and §8.6 (a moderator answers); §9.9 registration
 * approvals go to register.c. */
static void voice_form(muc_room *room, muc_sess *s, xmppd_event *ev, xmppd_stanza *x)
{
    const char *why = NULL;
    xmppd_form *f = xmppd_form_parse(x, &why);
    if (!f || strcmp(xmppd_form_type(f), "cancel") == 0) {
        xmppd_form_free(f);
        if (!f)
            muc_error(ev, room, "modify", "bad-request", why);
        return;
    }
    const char *ft = xmppd_form_form_type(f);
    if (ft && strcmp(ft, NS_MUC_REGISTER) == 0) {
        muc_register_decision(room, ev, f); /* §9.9 */
        xmppd_form_free(f);
        return;
    }
    if (!ft || strcmp(ft, NS_MUC_REQUEST) != 0) {
        xmppd_form_free(f);
        muc_error(ev, room, "modify", "bad-request", "Unknown form sent to the room");
        return;
    }
    const char *role = xmppd_form_value(f, "muc#role");
    bool allow = false;
    int has_allow = xmppd_form_bool(f, "muc#request_allow", &allow);
    if (!s)
        muc_error(ev, room, "cancel", "not-acceptable", "Only occupants may ask for voice");
    else if (!role || strcmp(role, "participant") != 0 || has_allow < 0)
        muc_error(ev, room, "modify", "bad-request", "Only voice (muc#role participant) can be asked");
    else if (has_allow == 1) { /* no muc#request_allow: a request */
        if (s->occ->role != ROLE_VISITOR)
            muc_error(ev, room, "cancel", "not-allowed", "You have voice already");
        else if (!muc_rate_ok(s->occ))
            muc_error(ev, room, "wait", "resource-constraint", "You are asking too often");
        else
            ask_moderators(room, s);
    } else if (s->occ->role != ROLE_MODERATOR) {
        muc_error(ev, room, "auth", "forbidden", "Only moderators grant voice");
    } else {
        const char *nick = xmppd_form_value(f, "muc#roomnick");
        muc_occupant *target = nick ? muc_occ_by_nick(room, nick) : NULL;
        if (!target)
            muc_error(ev, room, "cancel", "item-not-found", "No such occupant");
        else if (allow && target->role == ROLE_VISITOR) {
            json_object_set_new(room->roles, target->bare->bare, json_string("participant"));
            muc_room_save(room);
            muc_set_role(target, ROLE_PARTICIPANT, NULL, s->occ->nick);
        }
    }
    xmppd_form_free(f);
}

/* ---- errors from occupants ---------------------------------------------------------------- */

static const char *error_cond(const xmppd_stanza *st)
{
    xmppd_stanza *e = xmppd_stanza_child(st, "error", NULL);
    for (xmppd_stanza *c = e ? xmppd_stanza_first(e) : NULL; c; c = xmppd_stanza_next(c))
        if (strcmp(xmppd_stanza_ns(c), XMPPD_NS_STANZAS) == 0 && strcmp(xmppd_stanza_name(c), "text") != 0)
            return xmppd_stanza_name(c);
    return NULL;
}

/* §18.1.2: delivery errors that mean the occupant is gone. */
static bool ghost_error(const char *cond)
{
    static const char *const conds[] = { "gone", "item-not-found", "recipient-unavailable", "redirect",
                                         "remote-server-not-found", "remote-server-timeout", NULL };
    for (size_t i = 0; cond && conds[i]; i++)
        if (strcmp(cond, conds[i]) == 0)
            return true;
    return false;
}

/* An error from a JID of one of this server's hosts that has no session:
 * the router's own answer that the resource is gone (whatever its
 * condition), for users of other hosts, whose session ends this module
 * does not see. */
static bool local_and_gone(const xmppd_jid *from)
{
    return xmppd_host_find(from->domain) && from->resource && !xmppd_session_find(from);
}

static void error_from_occupant(muc_room *room, muc_sess *s, xmppd_event *ev)
{
    if (!s)
        return;
    if (ghost_error(error_cond(ev->stanza)) || local_and_gone(ev->from)) {
        muc_sess_gone(s, true);
        return;
    }
    /* The error of a private message goes back to its sender. */
    muc_occupant *to = ev->to->resource ? muc_occ_by_nick(room, ev->to->resource) : NULL;
    if (!to)
        return;
    xmppd_stanza *m = relayed(ev->stanza, s->occ);
    for (muc_sess *t = to->sessions; m && t; t = t->next)
        muc_send_to(room->svc, m, t->jid);
    xmppd_stanza_unref(m);
}

/* ---- dispatch ---------------------------------------------------------------------------- */

void muc_message(muc_service *svc, muc_room *room, xmppd_event *ev)
{
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    if (type && strcmp(type, "error") == 0) {
        if (room)
            error_from_occupant(room, muc_sess_find(room, ev->from), ev);
        return;
    }
    if (!room || (room->locked && !muc_sess_find(room, ev->from))) {
        /* §17.2 rule 3: a room that does not exist or is not unlocked. */
        if (!type || strcmp(type, "headline") != 0)
            muc_error(ev, NULL, "cancel", "item-not-found", NULL);
        return;
    }
    muc_sess *s = muc_sess_find(room, ev->from);
    if (ev->to->resource) {
        private_message(room, s, ev);
        return;
    }
    if (type && strcmp(type, "groupchat") == 0) {
        groupchat(room, s, ev);
        return;
    }
    if (type && strcmp(type, "headline") == 0)
        return;
    xmppd_stanza *x = xmppd_stanza_child(ev->stanza, "x", NS_MUC_USER);
    xmppd_stanza *d = x ? xmppd_stanza_child(x, "decline", NULL) : NULL;
    xmppd_stanza *form = xmppd_stanza_child(ev->stanza, "x", XMPPD_NS_DATA);
    if (d)
        decline(room, ev, d);
    else if (x && xmppd_stanza_child(x, "invite", NULL))
        invite(room, s, ev, x);
    else if (form)
        voice_form(room, s, ev, form);
    else
        muc_error(ev, room, "modify", "bad-request", "Messages to the room must be of type groupchat");
}
