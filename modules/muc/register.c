/* Registration with a room (XEP-0045 §7.10): jabber:iq:register with a
 * muc#register form reserves a nick and makes a member. In an open room the
 * room grants it at once; in a members-only room the request waits for an
 * admin (§9.9): every admin and owner of the room gets an approval form,
 * and the first who submits it with muc#register_allow decides. Requests
 * are kept with the room (room->requests, stored with persistent rooms), at
 * most MUC_MAX_REG_REQUESTS per room. A request that was withdrawn or
 * denied stays "closed" for MUC_REG_RETRY_MS, so that nobody can flood
 * the admins by asking again and again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "muc.h"

static int reply_empty(xmppd_event *ev)
{
    xmppd_reply(ev, xmppd_stanza_reply(ev->stanza));
    return XMPPD_HANDLED;
}

static bool closed(const json_t *req)
{
    return json_is_true(json_object_get(req, "closed"));
}

/* The request of bare waiting for a decision, or NULL. */
static json_t *waiting(const muc_room *room, const char *bare)
{
    json_t *req = json_object_get(room->requests, bare);
    return req && !closed(req) ? req : NULL;
}

/* Closes a request (withdrawn, denied): it keeps its owner from asking
 * again until MUC_REG_RETRY_MS passed. */
static void close_request(muc_room *room, const char *bare)
{
    json_t *e = json_pack("{s:b, s:I}", "closed", 1, "when", (json_int_t)xmppd_wallclock_ms());
    if (!e || json_object_set_new(room->requests, bare, e) < 0)
        json_object_del(room->requests, bare); /* OOM: forgotten rather than kept open */
}

/* Forgets closed requests whose time is over. */
static void expire_closed(muc_room *room)
{
    int64_t now = xmppd_wallclock_ms();
    const char *key;
    json_t *e;
    void *tmp;
    json_object_foreach_safe(room->requests, tmp, key, e) {
        if (closed(e) && now - json_integer_value(json_object_get(e, "when")) >= MUC_REG_RETRY_MS)
            json_object_del(room->requests, key);
    }
}

/* The nick a waiting request of someone other than bare asked for. */
static bool nick_requested_by_other(const muc_room *room, const char *nick, const char *bare)
{
    const char *key;
    json_t *e;
    json_object_foreach(room->requests, key, e) {
        const char *n = json_string_value(json_object_get(e, "nick"));
        if (!closed(e) && n && strcmp(n, nick) == 0 && strcmp(key, bare) != 0)
            return true;
    }
    return false;
}

static int register_form(muc_room *room, xmppd_event *ev)
{
    xmppd_stanza *r, *q = muc_reply_query(ev, NS_REGISTER, &r);
    if (!q)
        return XMPPD_FAIL;
    xmppd_stanza *ins = xmppd_stanza_tag(q, "instructions", NULL);
    if (ins)
        xmppd_stanza_set_text(ins, room->cfg.members_only
                                       ? "Choose the nickname to reserve in this room. The room's "
                                         "admins approve the request."
                                       : "Choose the nickname to reserve in this room.");
    char title[1200];
    snprintf(title, sizeof(title), "Registration with %s", muc_room_jid(room));
    xmppd_stanza *x = xmppd_form_new("form", NS_MUC_REGISTER, title);
    if (!x || !xmppd_stanza_add(q, x)) {
        xmppd_stanza_unref(r);
        return XMPPD_FAIL;
    }
    xmppd_stanza *f = xmppd_form_add_field(x, "muc#register_roomnick", "text-single",
                                           "Desired Nickname", NULL);
    if (f)
        xmppd_stanza_tag(f, "required", NULL);
    xmppd_reply(ev, r);
    return XMPPD_HANDLED;
}

/* §9.9: the approval form, sent to every admin and owner of the room (at
 * their bare JID: the server delivers it, or keeps it while they are
 * offline). muc#jid names the request; a body tells clients without forms. */
static void ask_admins(muc_room *room, const char *bare, const char *nick)
{
    xmppd_stanza *m = xmppd_stanza_new("message", NULL);
    xmppd_stanza *x = m ? xmppd_form_new("form", NS_MUC_REGISTER, "Registration request") : NULL;
    xmppd_stanza *body = m ? xmppd_stanza_tag(m, "body", NULL) : NULL;
    if (!x || !body || !xmppd_stanza_add(m, x)) { /* add drops x when it fails */
        xmppd_stanza_unref(m);
        return;
    }
    char text[3400], id[24];
    snprintf(text, sizeof(text), "%s asks to register with %s as \"%s\". Approve or deny the request "
                                 "with the form in this message.", bare, muc_room_jid(room), nick);
    xmppd_stanza_set_text(body, text);
    muc_random_id(id);
    xmppd_stanza_set_attr(m, "id", id);
    xmppd_stanza_set_attr(m, "from", muc_room_jid(room));
    xmppd_stanza *ins = xmppd_stanza_tag(x, "instructions", NULL);
    if (ins)
        xmppd_stanza_set_text(ins, "To approve this registration request, select \"Allow this person "
                                   "to register with the room?\" and submit the form; to deny it, "
                                   "submit it unselected; to skip it, cancel.");
    xmppd_form_add_field(x, "muc#jid", "jid-single", "User ID", bare);
    xmppd_form_add_field(x, "muc#register_roomnick", "text-single", "Desired Nickname", nick);
    xmppd_form_add_field(x, "muc#register_allow", "boolean",
                         "Allow this person to register with the room?", "0");
    const char *key;
    json_t *e;
    json_object_foreach(room->affs, key, e) {
        int aff = muc_aff_parse(json_string_value(json_object_get(e, "affiliation")));
        xmppd_jid *to = aff >= AFF_ADMIN ? xmppd_jid_parse(key) : NULL;
        if (to)
            muc_send_to(room->svc, m, to);
        xmppd_jid_free(to);
    }
    xmppd_stanza_unref(m);
}

/* A members-only room: the request waits for an admin. */
static int request_approval(muc_room *room, xmppd_event *ev, const char *bare, const char *nick)
{
    expire_closed(room);
    json_t *old = json_object_get(room->requests, bare);
    const char *old_nick = json_string_value(json_object_get(old, "nick"));
    if (old && closed(old))
        return muc_error(ev, room, "wait", "resource-constraint",
                         "Your last registration request was withdrawn or denied; ask again later");
    if (old_nick && strcmp(old_nick, nick) == 0)
        return reply_empty(ev); /* the admins have it already */
    if (old_nick)
        return muc_error(ev, room, "cancel", "conflict",
                         "A registration request is waiting for approval; cancel it first");
    if (json_object_size(room->requests) >= MUC_MAX_REG_REQUESTS)
        return muc_error(ev, room, "wait", "resource-constraint",
                         "Too many registration requests are waiting for approval");
    json_t *e = json_pack("{s:s, s:I}", "nick", nick, "when", (json_int_t)xmppd_wallclock_ms());
    if (!e || json_object_set_new(room->requests, bare, e) < 0)
        return XMPPD_FAIL;
    muc_room_save(room);
    reply_empty(ev); /* §7.10: the request was received */
    ask_admins(room, bare, nick);
    return XMPPD_HANDLED;
}

static int register_submit(muc_room *room, xmppd_event *ev, const xmppd_jid *bare, muc_aff aff,
                           xmppd_stanza *x)
{
    const char *why = NULL;
    xmppd_form *f = xmppd_form_parse(x, &why);
    const char *ft = f ? xmppd_form_form_type(f) : NULL;
    int rc = XMPPD_HANDLED;
    if (!f || (ft && strcmp(ft, NS_MUC_REGISTER) != 0)) {
        rc = muc_error(ev, room, "modify", "bad-request", why ? why : "Not a muc#register form");
    } else if (strcmp(xmppd_form_type(f), "cancel") == 0) {
        rc = reply_empty(ev);
    } else {
        const char *asked = xmppd_form_value(f, "muc#register_roomnick");
        char *nick = asked ? xmppd_resourceprep(asked) : NULL;
        const char *bad = nick ? muc_nick_invalid(room->svc, nick) : "jid-malformed";
        muc_occupant *in_use = nick ? muc_occ_by_nick(room, nick) : NULL;
        if (!asked)
            rc = muc_error(ev, room, "modify", "bad-request", "muc#register_roomnick is required");
        else if (bad)
            rc = muc_error(ev, room, "modify", bad, "Not a usable nickname");
        else if (muc_nick_reserved_by(room, nick, bare->bare) ||
                 nick_requested_by_other(room, nick, bare->bare) ||
                 (in_use && !xmppd_jid_bare_equal(in_use->bare, bare)))
            rc = muc_error(ev, room, "cancel", "conflict", "The nickname is taken");
        else if (aff == AFF_NONE && json_object_size(room->affs) >= (size_t)room->svc->conf->max_affiliations)
            rc = muc_error(ev, room, "cancel", "not-acceptable", "The room has too many members");
        else if (aff == AFF_NONE && room->cfg.members_only)
            rc = request_approval(room, ev, bare->bare, nick);
        else {
            muc_aff to = aff < AFF_MEMBER ? AFF_MEMBER : aff;
            json_object_del(room->requests, bare->bare); /* from when the room was members-only */
            muc_aff_set(room, bare->bare, to, nick, NULL);
            muc_room_save(room);
            reply_empty(ev);
            if (to != aff)
                muc_aff_changed(room, bare->bare, aff, to, NULL, NULL);
        }
        free(nick);
    }
    xmppd_form_free(f);
    return rc;
}

/* XEP-0077 §3.2: unregistering drops membership and the nick, or the
 * request that waits for approval. */
static int unregister(muc_room *room, xmppd_event *ev, const char *bare, muc_aff aff)
{
    if (aff == AFF_NONE && waiting(room, bare)) {
        close_request(room, bare);
        muc_room_save(room);
        return reply_empty(ev);
    }
    if (aff == AFF_NONE && room->cfg.members_only)
        return muc_error(ev, room, "cancel", "item-not-found", "Not registered with this room");
    muc_aff to = aff == AFF_MEMBER ? AFF_NONE : aff;
    muc_aff_set(room, bare, to, "", NULL);
    muc_room_save(room);
    reply_empty(ev);
    if (to != aff)
        muc_aff_changed(room, bare, aff, to, NULL, NULL);
    return XMPPD_HANDLED;
}

int muc_register_iq(muc_room *room, xmppd_event *ev)
{
    xmppd_stanza *q = xmppd_stanza_child(ev->stanza, "query", NS_REGISTER);
    xmppd_jid *bare = xmppd_jid_to_bare(ev->from);
    if (!q || !bare) {
        xmppd_jid_free(bare);
        return muc_error(ev, room, "modify", "bad-request", NULL);
    }
    muc_aff aff = muc_aff_of(room, bare);
    const char *nick = muc_reserved_nick(room, bare->bare);
    bool get = strcmp(xmppd_stanza_attr(ev->stanza, "type"), "get") == 0;
    xmppd_stanza *form = xmppd_stanza_child(q, "x", XMPPD_NS_DATA);
    int rc;
    if (get && nick && aff >= AFF_MEMBER) {
        /* §7.10: already registered: the reserved nick. */
        xmppd_stanza *r = NULL, *rq = muc_reply_query(ev, NS_REGISTER, &r);
        xmppd_stanza *reg = rq ? xmppd_stanza_tag(rq, "registered", NULL) : NULL;
        xmppd_stanza *u = reg ? xmppd_stanza_tag(rq, "username", NULL) : NULL;
        if (u) {
            xmppd_stanza_set_text(u, nick);
            xmppd_reply(ev, r);
            rc = XMPPD_HANDLED;
        } else {
            xmppd_stanza_unref(r);
            rc = XMPPD_FAIL;
        }
    } else if (aff == AFF_OUTCAST) {
        rc = muc_error(ev, room, "cancel", "not-allowed", NULL);
    } else if (get) {
        rc = register_form(room, ev);
    } else if (xmppd_stanza_child(q, "remove", NULL)) {
        rc = unregister(room, ev, bare->bare, aff);
    } else if (form) {
        rc = register_submit(room, ev, bare, aff, form);
    } else {
        rc = muc_error(ev, room, "modify", "bad-request", "Submit the registration form");
    }
    xmppd_jid_free(bare);
    return rc;
}

/* ---- §9.9: an admin decides ------------------------------------------------------- */

void muc_register_decision(muc_room *room, xmppd_event *ev, const xmppd_form *f)
{
    xmppd_jid *from = xmppd_jid_to_bare(ev->from);
    const char *who = xmppd_form_value(f, "muc#jid");
    xmppd_jid *jid = who ? xmppd_jid_parse(who) : NULL;
    xmppd_jid *user = jid ? xmppd_jid_to_bare(jid) : NULL;
    json_t *req = user ? waiting(room, user->bare) : NULL;
    const char *nick = json_string_value(json_object_get(req, "nick"));
    bool allow = false;
    int has_allow = xmppd_form_bool(f, "muc#register_allow", &allow);
    if (!from || muc_aff_of(room, from) < AFF_ADMIN)
        muc_error(ev, room, "auth", "forbidden", "Only admins and owners approve registrations");
    else if (!user || has_allow != 0)
        muc_error(ev, room, "modify", "bad-request", "muc#jid and muc#register_allow are required");
    else if (!nick)
        muc_error(ev, room, "cancel", "item-not-found", "No such registration request");
    else {
        muc_aff aff = muc_aff_of(room, user);
        char *n = strdup(nick);
        /* decided, whatever comes next; a denial is closed for a while */
        if (allow)
            json_object_del(room->requests, user->bare);
        else
            close_request(room, user->bare);
        if (!n) {
            muc_error(ev, room, "wait", "resource-constraint", NULL);
        } else if (!allow || aff != AFF_NONE) {
            /* denied; or someone changed the affiliation meanwhile (a ban,
             * membership granted through muc#admin), which stands */
        } else if (muc_nick_reserved_by(room, n, user->bare)) {
            muc_error(ev, room, "cancel", "conflict", "The nickname was reserved by someone else meanwhile");
        } else if (json_object_size(room->affs) >= (size_t)room->svc->conf->max_affiliations) {
            muc_error(ev, room, "cancel", "not-acceptable", "The room has too many members");
        } else {
            muc_aff_set(room, user->bare, AFF_MEMBER, n, NULL);
            muc_aff_changed(room, user->bare, AFF_NONE, AFF_MEMBER, NULL, NULL);
            /* §9.5: a new member of a members-only room is invited; this is
             * how the user learns of the approval. */
            muc_send_invite(room, user->bare, from->bare, NULL, NULL);
        }
        muc_room_save(room);
        free(n);
    }
    xmppd_jid_free(user);
    xmppd_jid_free(jid);
    xmppd_jid_free(from);
}
