/* muc#owner (XEP-0045 §10): the room configuration form (muc#roomconfig,
 * XEP-0004) for instant and reserved rooms and later changes, and
 * destruction with an alternate venue (§10.9). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "muc.h"

#define F(name) "muc#roomconfig_" name

static const char *const pm_values[] = { "anyone", "participants", "moderators", "none" };
static const char *const pm_labels[] = { "Anyone", "Anyone with Voice", "Moderators Only", "Nobody" };

/* ---- the form -------------------------------------------------------------------- */

static void add_bool(xmppd_stanza *x, const char *var, const char *label, bool v)
{
    xmppd_form_add_field(x, var, "boolean", label, v ? "1" : "0");
}

static void add_roles(xmppd_stanza *x, const char *var, const char *label, unsigned mask)
{
    xmppd_stanza *f = xmppd_form_add_field(x, var, "list-multi", label, NULL);
    for (int r = ROLE_MODERATOR; f && r > ROLE_NONE; r--) {
        const char *name = muc_role_name((muc_role)r);
        if (mask & (1u << r))
            xmppd_form_add_value(f, name);
    }
    for (int r = ROLE_MODERATOR; f && r > ROLE_NONE; r--)
        xmppd_form_add_option(f, NULL, muc_role_name((muc_role)r));
}

static void add_jids(xmppd_stanza *x, const muc_room *room, const char *var, const char *label,
                     muc_aff aff)
{
    xmppd_stanza *f = xmppd_form_add_field(x, var, "jid-multi", label, NULL);
    const char *key;
    json_t *e;
    json_object_foreach(room->affs, key, e)
        if (f && muc_aff_parse(json_string_value(json_object_get(e, "affiliation"))) == (int)aff)
            xmppd_form_add_value(f, key);
}

/* §10.1.3: the form with the room's current values. */
static xmppd_stanza *config_form(const muc_room *room)
{
    const muc_config *c = &room->cfg;
    char title[1200], num[24];
    snprintf(title, sizeof(title), "Configuration of room %s", muc_room_jid(room));
    xmppd_stanza *x = xmppd_form_new("form", NS_MUC_ROOMCONFIG, title);
    if (!x)
        return NULL;
    xmppd_form_add_field(x, F("roomname"), "text-single", "Natural-Language Room Name", c->name);
    xmppd_form_add_field(x, F("roomdesc"), "text-single", "Short Description of Room", c->desc);
    xmppd_form_add_field(x, F("lang"), "text-single", "Natural Language for Room Discussions", c->lang);
    add_bool(x, F("persistentroom"), "Make Room Persistent?", c->persistent);
    add_bool(x, F("publicroom"), "Make Room Publicly Searchable?", c->public_room);
    add_bool(x, F("moderatedroom"), "Make Room Moderated?", c->moderated);
    add_bool(x, F("membersonly"), "Make Room Members-Only?", c->members_only);
    add_bool(x, F("passwordprotectedroom"), "Password Required to Enter?", c->password_protected);
    xmppd_form_add_field(x, F("roomsecret"), "text-private", "Password", c->password);
    xmppd_stanza *f = xmppd_form_add_field(x, F("whois"), "list-single", "Who May Discover Real JIDs?",
                                           c->whois_anyone ? "anyone" : "moderators");
    if (f) {
        xmppd_form_add_option(f, "Moderators Only", "moderators");
        xmppd_form_add_option(f, "Anyone", "anyone");
    }
    add_bool(x, F("changesubject"), "Allow Occupants to Change Subject?", c->change_subject);
    add_bool(x, F("allowinvites"), "Allow Members to Invite Others?", c->allow_invites);
    f = xmppd_form_add_field(x, F("allowpm"), "list-single", "Who Can Send Private Messages?",
                             pm_values[c->allow_pm]);
    for (size_t i = 0; f && i < 4; i++)
        xmppd_form_add_option(f, pm_labels[i], pm_values[i]);
    snprintf(num, sizeof(num), "%ld", c->max_users);
    f = xmppd_form_add_field(x, F("maxusers"), "list-single", "Maximum Number of Occupants",
                             c->max_users ? num : "none");
    static const long sizes[] = { 10, 20, 30, 50, 100, 200, 500, 1000, 5000, 10000 };
    for (size_t i = 0; f && i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        if (sizes[i] > room->svc->conf->max_occupants)
            break;
        snprintf(num, sizeof(num), "%ld", sizes[i]);
        xmppd_form_add_option(f, NULL, num);
    }
    if (f)
        xmppd_form_add_option(f, "Largest allowed", "none");
    add_roles(x, F("presencebroadcast"), "Roles for which Presence is Broadcasted",
              c->presence_broadcast);
    add_roles(x, F("getmemberlist"), "Roles and Affiliations that May Retrieve Member List",
              c->get_member_list);
    add_bool(x, F("enablearchiving"), "Enable Message Archiving?", c->archiving);
    snprintf(num, sizeof(num), "%ld", c->max_history_fetch);
    xmppd_form_add_field(x, "muc#maxhistoryfetch", "text-single",
                         "Maximum Number of History Messages Returned by Room", num);
    add_jids(x, room, F("roomadmins"), "Room Admins", AFF_ADMIN);
    add_jids(x, room, F("roomowners"), "Room Owners", AFF_OWNER);
    return x;
}

/* ---- reading a submission ---------------------------------------------------------- */

typedef struct submission {
    muc_config cfg;
    char **owners, **admins; /* full lists when given, NULL-terminated (owned) */
    bool has_owners, has_admins;
} submission;

static void jids_free(char **l)
{
    for (size_t i = 0; l && l[i]; i++)
        free(l[i]);
    free(l);
}

/* The bare JIDs of a jid-multi field. -1 on a malformed JID or OOM. */
static int read_jids(const xmppd_form *f, const char *var, char ***out, bool *has, size_t max)
{
    size_t n = 0;
    const char *const *v = xmppd_form_values(f, var, &n);
    *has = v != NULL;
    if (!v)
        return 0;
    if (n > max)
        return -1;
    char **l = calloc(n + 1, sizeof(*l));
    for (size_t i = 0; l && i < n; i++) {
        xmppd_jid *j = xmppd_jid_parse(v[i]);
        l[i] = j ? strdup(j->bare) : NULL;
        xmppd_jid_free(j);
        if (!l[i]) {
            jids_free(l);
            return -1;
        }
    }
    *out = l;
    return l ? 0 : -1;
}

static bool in_list(char **l, const char *jid)
{
    for (size_t i = 0; l && l[i]; i++)
        if (strcmp(l[i], jid) == 0)
            return true;
    return false;
}

typedef struct form_error {
    const char *type, *cond, *text;
} form_error;

static int fail(form_error *e, const char *type, const char *cond, const char *text)
{
    *e = (form_error){ type, cond, text };
    return -1;
}

static int read_bool(const xmppd_form *f, const char *var, bool *out, form_error *e)
{
    if (xmppd_form_bool(f, var, out) < 0)
        return fail(e, "modify", "bad-request", var);
    return 0;
}

static int read_text(const xmppd_form *f, const char *var, char **out, form_error *e)
{
    const char *v = xmppd_form_value(f, var);
    if (!v)
        return 0;
    if (muc_utf8_len(v) > MUC_TEXT_MAX)
        return fail(e, "modify", "not-acceptable", var);
    char *d = *v ? strdup(v) : NULL;
    if (*v && !d)
        return fail(e, "wait", "resource-constraint", NULL);
    free(*out);
    *out = d;
    return 0;
}

static int read_roles(const xmppd_form *f, const char *var, unsigned *mask, form_error *e)
{
    size_t n;
    const char *const *v = xmppd_form_values(f, var, &n);
    if (!v)
        return 0;
    unsigned m = 0;
    for (size_t i = 0; i < n; i++) {
        int r = muc_role_parse(v[i]);
        if (r <= ROLE_NONE)
            return fail(e, "modify", "bad-request", var);
        m |= 1u << r;
    }
    *mask = m;
    return 0;
}

static int read_long(const char *v, long min, long max, long *out)
{
    char *end;
    if (!v || !*v || *v == '-' || *v == '+')
        return -1;
    long n = strtol(v, &end, 10);
    if (*end || n < min || n > max)
        return -1;
    *out = n;
    return 0;
}

/* The fields of a submitted muc#roomconfig form applied to a copy of the
 * room's configuration; malformed values are bad-request, values outside
 * the service's policy not-acceptable (§10.1.3). */
static int read_form(const muc_room *room, const xmppd_form *f, submission *sub, form_error *e)
{
    muc_config *c = &sub->cfg;
    const muc_conf *conf = room->svc->conf;
    const char *v;
    if (read_text(f, F("roomname"), &c->name, e) < 0 || read_text(f, F("roomdesc"), &c->desc, e) < 0 ||
        read_text(f, F("lang"), &c->lang, e) < 0 || read_text(f, F("roomsecret"), &c->password, e) < 0 ||
        read_bool(f, F("persistentroom"), &c->persistent, e) < 0 ||
        read_bool(f, F("publicroom"), &c->public_room, e) < 0 ||
        read_bool(f, F("moderatedroom"), &c->moderated, e) < 0 ||
        read_bool(f, F("membersonly"), &c->members_only, e) < 0 ||
        read_bool(f, F("passwordprotectedroom"), &c->password_protected, e) < 0 ||
        read_bool(f, F("changesubject"), &c->change_subject, e) < 0 ||
        read_bool(f, F("allowinvites"), &c->allow_invites, e) < 0 ||
        read_bool(f, F("enablearchiving"), &c->archiving, e) < 0 ||
        read_roles(f, F("presencebroadcast"), &c->presence_broadcast, e) < 0 ||
        read_roles(f, F("getmemberlist"), &c->get_member_list, e) < 0)
        return -1;
    if ((v = xmppd_form_value(f, F("whois")))) {
        if (strcmp(v, "anyone") != 0 && strcmp(v, "moderators") != 0)
            return fail(e, "modify", "not-acceptable", F("whois"));
        c->whois_anyone = strcmp(v, "anyone") == 0;
    }
    if ((v = xmppd_form_value(f, F("allowpm")))) {
        int pm = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(v, pm_values[i]) == 0)
                pm = i;
        if (pm < 0)
            return fail(e, "modify", "not-acceptable", F("allowpm"));
        c->allow_pm = (muc_pm)pm;
    }
    if ((v = xmppd_form_value(f, F("maxusers")))) {
        long n = 0;
        if (strcmp(v, "none") != 0 && read_long(v, 1, 1000000000L, &n) < 0)
            return fail(e, "modify", "bad-request", F("maxusers"));
        if (n > conf->max_occupants)
            return fail(e, "modify", "not-acceptable", "More occupants than this service allows");
        c->max_users = n;
    }
    if ((v = xmppd_form_value(f, "muc#maxhistoryfetch"))) {
        if (read_long(v, 0, 1000000000L, &c->max_history_fetch) < 0)
            return fail(e, "modify", "bad-request", "muc#maxhistoryfetch");
        if (c->max_history_fetch > conf->max_history)
            return fail(e, "modify", "not-acceptable", "More history than this service keeps");
    }
    if (c->password_protected && (!c->password || !*c->password))
        return fail(e, "modify", "not-acceptable", "A password-protected room needs a password");
    size_t max = (size_t)conf->max_affiliations;
    if (read_jids(f, F("roomowners"), &sub->owners, &sub->has_owners, max) < 0 ||
        read_jids(f, F("roomadmins"), &sub->admins, &sub->has_admins, max) < 0)
        return fail(e, "modify", "not-acceptable", "A room admin or owner is not a valid JID");
    if (sub->has_owners && !sub->owners[0])
        return fail(e, "modify", "not-acceptable", "A room needs an owner");
    return 0;
}

/* ---- applying it --------------------------------------------------------------------- */

typedef struct aff_delta {
    char *jid;
    muc_aff old, aff;
} aff_delta;

/* The affiliation jid ends with after the submitted owner and admin lists
 * (§10.2: full lists, not deltas; a list not submitted stays). */
static muc_aff target_aff(const submission *sub, const char *jid, muc_aff current)
{
    if (sub->has_owners && in_list(sub->owners, jid))
        return AFF_OWNER;
    if (current == AFF_OWNER && !sub->has_owners)
        return AFF_OWNER;
    if (sub->has_admins && in_list(sub->admins, jid))
        return AFF_ADMIN;
    if (current == AFF_ADMIN && !sub->has_admins)
        return AFF_ADMIN;
    return current >= AFF_ADMIN ? AFF_NONE : current;
}

static void add_delta(const muc_room *room, const submission *sub, const char *jid,
                      aff_delta *out, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(out[i].jid, jid) == 0)
            return;
    xmppd_jid *j = xmppd_jid_parse(jid);
    bool service_admin = j && muc_is_service_admin(room->svc, j); /* owners of every room */
    muc_aff old = j ? muc_aff_of(room, j) : AFF_NONE;
    xmppd_jid_free(j);
    if (service_admin)
        return;
    muc_aff to = target_aff(sub, jid, old);
    char *copy = to != old ? strdup(jid) : NULL;
    if (copy)
        out[(*n)++] = (aff_delta){ copy, old, to };
}

/* Every affiliation the lists change; *n_r entries (owned). NULL on OOM. */
static aff_delta *list_changes(const muc_room *room, const submission *sub, size_t *n_r)
{
    size_t cap = json_object_size(room->affs) + 1, n = 0;
    for (size_t i = 0; sub->owners && sub->owners[i]; i++)
        cap++;
    for (size_t i = 0; sub->admins && sub->admins[i]; i++)
        cap++;
    aff_delta *out = calloc(cap, sizeof(*out));
    if (!out)
        return NULL;
    const char *key;
    json_t *e;
    json_object_foreach(room->affs, key, e)
        if (muc_aff_parse(json_string_value(json_object_get(e, "affiliation"))) >= AFF_ADMIN)
            add_delta(room, sub, key, out, &n);
    for (size_t i = 0; sub->owners && sub->owners[i]; i++)
        add_delta(room, sub, sub->owners[i], out, &n);
    for (size_t i = 0; sub->admins && sub->admins[i]; i++)
        add_delta(room, sub, sub->admins[i], out, &n);
    *n_r = n;
    return out;
}

/* §10.2.1: privacy-relevant changes get their own code, others 104. */
static void notify_change(muc_room *room, const muc_config *old)
{
    const muc_config *c = &room->cfg;
    int codes[3] = { 0 };
    if (old->whois_anyone != c->whois_anyone)
        codes[0] = c->whois_anyone ? 172 : 173;
    else
        codes[0] = 104;
    muc_status_notice(room, codes);
}

/* §10.2: non-members leave a room that becomes members-only (322). */
static void enforce_members_only(muc_room *room)
{
    static const int codes[] = { 322, 0 };
    for (muc_occupant *o = room->occ_head, *next; o; o = next) {
        next = o->next;
        if (muc_aff_of(room, o->bare) < AFF_MEMBER)
            muc_occ_remove(o, codes, NULL, NULL);
    }
}

static int configure(muc_room *room, xmppd_event *ev, const xmppd_form *f)
{
    const char *ft = xmppd_form_form_type(f);
    if (ft && strcmp(ft, NS_MUC_ROOMCONFIG) != 0)
        return muc_error(ev, room, "modify", "bad-request", "Not a muc#roomconfig form");
    submission sub = { 0 };
    form_error e = { 0 };
    if (muc_config_copy(&sub.cfg, &room->cfg) < 0)
        return XMPPD_FAIL;
    if (read_form(room, f, &sub, &e) < 0) {
        muc_config_clear(&sub.cfg);
        jids_free(sub.owners);
        jids_free(sub.admins);
        return muc_error(ev, room, e.type, e.cond, e.text);
    }
    size_t n = 0;
    aff_delta *deltas = list_changes(room, &sub, &n);
    if (!deltas) {
        muc_config_clear(&sub.cfg);
        jids_free(sub.owners);
        jids_free(sub.admins);
        return XMPPD_FAIL;
    }
    muc_config old = room->cfg;
    room->cfg = sub.cfg;
    bool was_locked = room->locked;
    for (size_t i = 0; i < n; i++)
        muc_aff_set(room, deltas[i].jid, deltas[i].aff, NULL, NULL);
    muc_room_unlock(room);
    muc_room_save(room);
    xmppd_reply(ev, xmppd_stanza_reply(ev->stanza));
    for (size_t i = 0; i < n; i++) {
        muc_aff_changed(room, deltas[i].jid, deltas[i].old, deltas[i].aff, NULL, NULL);
        free(deltas[i].jid);
    }
    free(deltas);
    if (room->cfg.members_only && !old.members_only)
        enforce_members_only(room);
    if (!was_locked)
        notify_change(room, &old);
    if (was_locked)
        xmppd_log(room->svc->m, XMPPD_LOG_INFO, "room %s configured by %s", muc_room_jid(room),
                  ev->from->bare);
    muc_config_clear(&old);
    jids_free(sub.owners);
    jids_free(sub.admins);
    return XMPPD_HANDLED;
}

/* ---- destroy ------------------------------------------------------------------------- */

static int destroy(muc_room *room, xmppd_event *ev, xmppd_stanza *d)
{
    const char *alt = xmppd_stanza_attr(d, "jid");
    xmppd_jid *alt_jid = alt ? xmppd_jid_parse(alt) : NULL;
    if (alt && !alt_jid)
        return muc_error(ev, room, "modify", "jid-malformed", "The alternate venue is not a JID");
    const char *reason = xmppd_stanza_child_text(d, "reason", NULL);
    const char *password = xmppd_stanza_child_text(d, "password", NULL);
    if ((reason && muc_utf8_len(reason) > MUC_TEXT_MAX) ||
        (password && muc_utf8_len(password) > MUC_TEXT_MAX)) {
        xmppd_jid_free(alt_jid);
        return muc_error(ev, room, "modify", "not-acceptable", "Too long");
    }
    muc_room_destroy(room, alt_jid ? alt_jid->full : NULL, password, reason);
    xmppd_jid_free(alt_jid);
    xmppd_reply(ev, xmppd_stanza_reply(ev->stanza));
    return XMPPD_HANDLED;
}

int muc_owner_iq(muc_room *room, xmppd_event *ev)
{
    xmppd_stanza *q = xmppd_stanza_child(ev->stanza, "query", NS_MUC_OWNER);
    xmppd_jid *bare = xmppd_jid_to_bare(ev->from);
    muc_aff aff = bare ? muc_aff_of(room, bare) : AFF_NONE;
    xmppd_jid_free(bare);
    if (!q)
        return muc_error(ev, room, "modify", "bad-request", NULL);
    if (aff != AFF_OWNER) /* §10.1.2, §10.2, §10.9 */
        return muc_error(ev, room, "auth", "forbidden", "Only owners configure and destroy rooms");
    xmppd_stanza *child = xmppd_stanza_first(q);
    bool get = strcmp(xmppd_stanza_attr(ev->stanza, "type"), "get") == 0;
    if (get) {
        if (child)
            return muc_error(ev, room, "modify", "bad-request", NULL);
        xmppd_stanza *r = xmppd_stanza_reply(ev->stanza);
        xmppd_stanza *rq = r ? xmppd_stanza_tag(r, "query", NS_MUC_OWNER) : NULL;
        xmppd_stanza *form = rq ? config_form(room) : NULL;
        if (!form || !xmppd_stanza_add(rq, form)) {
            xmppd_stanza_unref(r);
            return XMPPD_FAIL;
        }
        xmppd_reply(ev, r);
        return XMPPD_HANDLED;
    }
    if (child && strcmp(xmppd_stanza_name(child), "destroy") == 0)
        return destroy(room, ev, child);
    xmppd_stanza *x = xmppd_stanza_child(q, "x", XMPPD_NS_DATA);
    const char *why = NULL;
    xmppd_form *f = x ? xmppd_form_parse(x, &why) : NULL;
    if (!f)
        return muc_error(ev, room, "modify", "bad-request", why);
    int rc;
    if (strcmp(xmppd_form_type(f), "cancel") == 0) {
        /* §10.1.3: cancelling the first configuration destroys the room;
         * later ones change nothing. */
        if (room->locked)
            muc_room_destroy(room, NULL, NULL, NULL);
        xmppd_reply(ev, xmppd_stanza_reply(ev->stanza));
        rc = XMPPD_HANDLED;
    } else if (strcmp(xmppd_form_type(f), "submit") != 0) {
        rc = muc_error(ev, room, "modify", "bad-request", "Submit or cancel the form");
    } else {
        rc = configure(room, ev, f); /* an empty submit: the instant room of §10.1.2 */
    }
    xmppd_form_free(f);
    return rc;
}
