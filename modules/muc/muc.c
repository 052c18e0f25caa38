/* mod_muc: the module itself. Options, the room service's domain, the
 * stanzas that reach it, who may create rooms, the restore at start, and
 * what happens when sessions close. README.md is the user's guide. */
#define _GNU_SOURCE /* twalk_r */
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "muc.h"

static const char *const create_choices[] = { "anyone", "local", "admins", "access", NULL };

static const xmppd_option muc_options[] = {
    { .name = "domain", .type = XMPPD_OPT_STRING, .offset = XMPPD_OFF(muc_conf, domain),
      .doc = "domain of the room service (default: conference.HOST); neither a host nor a component" },
    { .name = "name", .type = XMPPD_OPT_STRING, .offset = XMPPD_OFF(muc_conf, name),
      .def = "\"Chatrooms\"", .doc = "name of the service in disco (identity conference/text)" },
    { .name = "create_rooms", .type = XMPPD_OPT_ENUM, .offset = XMPPD_OFF(muc_conf, create_rooms),
      .def = "\"local\"", .choices = create_choices,
      .doc = "who may create rooms: anyone (other servers' users too), local (accounts of this "
             "server), admins (the admins option), access (the access rule \"create_room\"; "
             "without a deciding entry: local)" },
    { .name = "admins", .type = XMPPD_OPT_LIST, .offset = XMPPD_OFF(muc_conf, admins), .def = "[]",
      .doc = "bare JIDs that own every room and may always create rooms" },
    { .name = "max_rooms", .type = XMPPD_OPT_INT, .offset = XMPPD_OFF(muc_conf, max_rooms),
      .def = "10000", .min = 1, .max = 10000000, .doc = "rooms the service holds at most" },
    { .name = "max_rooms_per_user", .type = XMPPD_OPT_INT,
      .offset = XMPPD_OFF(muc_conf, max_rooms_per_user), .def = "20", .min = 1, .max = 1000000,
      .doc = "rooms one user (not an admin) may own when creating another" },
    { .name = "max_occupants", .type = XMPPD_OPT_INT, .offset = XMPPD_OFF(muc_conf, max_occupants),
      .def = "1000", .min = 1, .max = 1000000,
      .doc = "occupants of one room at most (a room's maxusers is at most this)" },
    { .name = "max_history", .type = XMPPD_OPT_INT, .offset = XMPPD_OFF(muc_conf, max_history),
      .def = "50", .min = 0, .max = 1000,
      .doc = "messages per room kept in memory for history on joining (the archive keeps all)" },
    { .name = "max_affiliations", .type = XMPPD_OPT_INT,
      .offset = XMPPD_OFF(muc_conf, max_affiliations), .def = "10000", .min = 1, .max = 1000000,
      .doc = "owners, admins, members and outcasts of one room at most" },
    { .name = "message_rate", .type = XMPPD_OPT_INT, .offset = XMPPD_OFF(muc_conf, message_rate),
      .def = "120", .min = 0, .max = 600000,
      .doc = "messages (groupchat, private, subject, voice requests) and presence updates per "
             "minute one occupant may send; 0: no limit" },
    { .name = "message_burst", .type = XMPPD_OPT_INT, .offset = XMPPD_OFF(muc_conf, message_burst),
      .def = "20", .min = 1, .max = 100000, .doc = "messages an occupant may send at once" },
    { .name = "max_subject_length", .type = XMPPD_OPT_INT,
      .offset = XMPPD_OFF(muc_conf, max_subject_length), .def = "1024", .min = 1, .max = 65536,
      .doc = "characters of a room subject" },
    { .name = "max_nick_length", .type = XMPPD_OPT_INT,
      .offset = XMPPD_OFF(muc_conf, max_nick_length), .def = "64", .min = 1, .max = 1023,
      .doc = "characters of a room nickname" },
    { .name = "lock_timeout", .type = XMPPD_OPT_DURATION, .offset = XMPPD_OFF(muc_conf, lock_timeout),
      .def = "5m", .min = 1000, .max = 86400000,
      .doc = "a new room its creator has not configured (not even as an instant room) is destroyed after this" },
    { .name = "multi_session", .type = XMPPD_OPT_BOOL, .offset = XMPPD_OFF(muc_conf, multi_session),
      .def = "true", .doc = "let one user join with the same nick from several resources" },
    { .name = "enforce_reserved_nicks", .type = XMPPD_OPT_BOOL,
      .offset = XMPPD_OFF(muc_conf, enforce_reserved_nicks), .def = "false",
      .doc = "users with a reserved nick enter with it (code 210) and cannot change it" },
    { .name = "room_defaults", .type = XMPPD_OPT_JSON, .offset = XMPPD_OFF(muc_conf, room_defaults),
      .def = "{}",
      .doc = "configuration of new rooms, e.g. {\"persistent\": true, \"whois\": \"anyone\"} (README)" },
    { NULL }
};

/* ---- who may do what ------------------------------------------------------------------ */

bool muc_is_service_admin(const muc_service *svc, const xmppd_jid *jid)
{
    if (xmppd_is_admin(svc->host, jid))
        return true; /* the server's administrators administer its rooms */
    for (size_t i = 0; svc->admins && svc->admins[i]; i++)
        if (strcmp(svc->admins[i], jid->bare) == 0)
            return true;
    return false;
}

typedef struct owned_count {
    const char *bare;
    size_t n;
} owned_count;

static void count_owned(const void *node, VISIT which, void *ud)
{
    owned_count *c = ud;
    if (which != postorder && which != leaf)
        return;
    const muc_room *room = *(muc_room *const *)node;
    const char *a = json_string_value(json_object_get(json_object_get(room->affs, c->bare),
                                                      "affiliation"));
    if (a && strcmp(a, "owner") == 0)
        c->n++;
}

/* §10.1.1 and §14.6: creation may be restricted, and so is the number of
 * rooms one user owns. */
const char *muc_may_create(muc_service *svc, const xmppd_jid *jid, const char **text_r)
{
    const char *who = svc->conf->create_rooms;
    bool admin = muc_is_service_admin(svc, jid);
    bool local = xmppd_host_find(jid->domain) != NULL;
    bool may = strcmp(who, "anyone") == 0 || (strcmp(who, "local") == 0 && local);
    if (strcmp(who, "access") == 0)
        may = xmppd_access_allowed(svc->host, "create_room", jid, NULL, local);
    *text_r = NULL;
    if (!admin && !may) {
        *text_r = "Room creation is restricted on this service";
        return "not-allowed";
    }
    if (svc->n_rooms >= (size_t)svc->conf->max_rooms) {
        *text_r = "This service holds as many rooms as it may";
        return "not-allowed";
    }
    owned_count c = { jid->bare, 0 };
    if (!admin)
        twalk_r(svc->rooms, count_owned, &c);
    if (c.n >= (size_t)svc->conf->max_rooms_per_user) {
        *text_r = "You own as many rooms as you may";
        return "not-allowed";
    }
    return NULL;
}

/* ---- stanzas for the domain -------------------------------------------------------------- */

static void service_stanza(muc_service *svc, xmppd_event *ev, char kind)
{
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    if (kind == 'i')
        muc_service_iq(svc, ev);
    else if (kind == 'm' && (!type || (strcmp(type, "error") != 0 && strcmp(type, "headline") != 0)))
        muc_error(ev, NULL, "cancel", "service-unavailable", NULL);
    /* presence to the service itself means nothing */
}

int muc_dispatch(muc_service *svc, xmppd_event *ev)
{
    char kind = ev->name[0]; /* message/domain, presence/domain, iq/domain */
    if (kind == 'm' && ev->to->node && xmppd_cluster_arrived(ev->stanza))
        muc_handover_check(svc, ev);
    if (!svc->ready || svc->creating) {
        /* The first stanza starts the restore (not load(): xmppctl loads
         * modules too, to manage accounts, and never routes a stanza);
         * stanzas wait for the rooms, or for a creation's count
         * (directory.c). */
        if (!svc->restore_started) {
            svc->restore_started = true;
            muc_rooms_restore(svc);
        }
        xmppd_pending *p = svc->n_held < MUC_MAX_HELD ? xmppd_pending_new(ev) : NULL;
        if (p && svc->n_held == svc->cap_held) {
            size_t cap = svc->cap_held ? svc->cap_held * 2 : 64;
            xmppd_pending **v = realloc(svc->held, cap * sizeof(*v));
            if (!v) {
                xmppd_pending_drop(p);
                p = NULL;
            } else {
                svc->held = v;
                svc->cap_held = cap;
            }
        }
        if (!p)
            return muc_error(ev, NULL, "wait", "resource-constraint", "The room service is starting");
        svc->held[svc->n_held++] = p;
        return XMPPD_HANDLED;
    }
    if (!ev->to->node) {
        service_stanza(svc, ev, kind);
        return XMPPD_HANDLED;
    }
    if ((kind == 'm' && muc_handover_take(svc, ev)) || muc_await_hold(svc, ev))
        return XMPPD_HANDLED; /* a room moving here from another node (handover.c) */
    muc_room *room = muc_room_find(svc, ev->to->node);
    if (room)
        muc_room_hold(room);
    if (kind == 'p')
        muc_presence(svc, room, ev);
    else if (kind == 'm')
        muc_message(svc, room, ev);
    else
        muc_iq(svc, room, ev);
    if (room)
        muc_room_release(room);
    return XMPPD_HANDLED;
}

static int on_stanza(xmppd_event *ev, void *ud)
{
    return muc_dispatch(ud, ev);
}

void muc_service_ready(muc_service *svc)
{
    if (svc->moved_again) { /* held stanzas wait for the rooms of the new view */
        svc->moved_again = false;
        svc->ready = true;
        muc_on_moved(svc);
        return;
    }
    svc->ready = true;
    xmppd_log(svc->m, XMPPD_LOG_INFO, "room service %s ready: %zu stored rooms", svc->domain,
              svc->n_rooms);
    muc_forget_pending(svc);
    muc_release_held(svc);
}

void muc_release_held(muc_service *svc)
{
    if (!svc->ready || svc->creating)
        return;
    xmppd_pending **held = svc->held;
    size_t n = svc->n_held;
    svc->held = NULL;
    svc->n_held = svc->cap_held = 0;
    for (size_t i = 0; i < n; i++) {
        xmppd_event ev = *xmppd_pending_event(held[i]);
        if (!ev.session || !xmppd_session_closed(ev.session))
            muc_dispatch(svc, &ev);
        xmppd_pending_drop(held[i]);
    }
    free(held);
}

/* ---- hooks on the host ------------------------------------------------------------------- */

/* A client's session ended: it is no longer in any room (its server would
 * send unavailable presence for it, §7.14; this does it at once). */
static int on_session_closed(xmppd_event *ev, void *ud)
{
    muc_service *svc = ud;
    const xmppd_jid *jid = ev->session ? xmppd_session_jid(ev->session) : NULL;
    while (jid) {
        muc_sess *s = muc_sessions_of(svc, jid->full);
        if (!s)
            break;
        muc_room *room = s->occ->room;
        muc_room_hold(room);
        muc_sess_gone(s, false);
        muc_room_release(room);
    }
    return XMPPD_PASS;
}

/* §6.1: the host lists the room service among its items. */
static int on_disco_items(xmppd_event *ev, void *ud)
{
    muc_service *svc = ud;
    if (!ev->to || ev->to->node || xmppd_stanza_attr(ev->stanza, "node"))
        return XMPPD_PASS;
    xmppd_stanza *item = xmppd_stanza_tag(ev->stanza, "item", NULL);
    if (item) {
        xmppd_stanza_set_attr(item, "jid", svc->domain);
        xmppd_stanza_set_attr(item, "name", svc->conf->name);
    }
    return XMPPD_PASS;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

static void service_free(muc_service *svc)
{
    for (size_t i = 0; svc->admins && svc->admins[i]; i++)
        free(svc->admins[i]);
    free(svc->admins);
    for (size_t i = 0; i < svc->n_held; i++)
        xmppd_pending_drop(svc->held[i]);
    free(svc->held);
    for (size_t i = 0; i < svc->n_waiting; i++)
        xmppd_pending_drop(svc->waiting[i]);
    free(svc->waiting);
    json_decref(svc->awaited);
    for (size_t i = 0; i < svc->n_handovers; i++)
        xmppd_stanza_unref(svc->handovers[i]);
    free(svc->handovers);
    for (size_t i = 0; i < svc->n_forget; i++)
        free(svc->forget[i]);
    free(svc->forget);
    muc_config_clear(&svc->defaults);
    free(svc->domain);
    xmppd_wipe(svc->secret, sizeof(svc->secret));
    free(svc);
}

/* Refuses the load with why (one line), freeing what load() built. */
static int refuse(xmppd_module *m, muc_service *svc, const char *why, const char *arg)
{
    char line[1400];
    snprintf(line, sizeof(line), "%s%s%s%s", why, arg ? " \"" : "", arg ? arg : "", arg ? "\"" : "");
    service_free(svc);
    xmppd_module_set_data(m, NULL);
    return xmppd_module_refuse(m, "%s", line);
}

/* The admins option as prepared bare JIDs. */
static int prepare_admins(muc_service *svc, const char **bad_r)
{
    size_t n = 0;
    while (svc->conf->admins && svc->conf->admins[n])
        n++;
    if (!(svc->admins = calloc(n + 1, sizeof(*svc->admins))))
        return -1;
    for (size_t i = 0; i < n; i++) {
        xmppd_jid *j = xmppd_jid_parse(svc->conf->admins[i]);
        if (!j || j->resource) {
            xmppd_jid_free(j);
            *bad_r = svc->conf->admins[i];
            return -1;
        }
        svc->admins[i] = strdup(j->bare);
        xmppd_jid_free(j);
        if (!svc->admins[i])
            return -1;
    }
    return 0;
}

static bool is_occupant(const muc_room *room, const xmppd_jid *who)
{
    for (const muc_occupant *occ = room->occ_head; occ; occ = occ->next) {
        if (!who->resource && strcmp(occ->bare->bare, who->bare) == 0)
            return true;
        for (const muc_sess *s = occ->sessions; who->resource && s; s = s->next)
            if (xmppd_jid_equal(s->jid, who))
                return true;
    }
    return false;
}

muc_history_access muc_history_access_of(const muc_api *api, const xmppd_jid *room_jid, const xmppd_jid *who)
{
    muc_service *svc = (muc_service *)api;
    muc_history_access r = { 0 };
    muc_room *room = room_jid->node && strcmp(room_jid->domain, svc->domain) == 0
                         ? muc_room_find(svc, room_jid->node)
                         : NULL;
    if (!room || room->locked || room->destroyed)
        return r;
    xmppd_jid *bare = xmppd_jid_to_bare(who);
    muc_aff aff = bare ? muc_aff_of(room, bare) : AFF_OUTCAST;
    xmppd_jid_free(bare);
    const muc_config *c = &room->cfg;
    r.exists = true;
    r.archiving = c->archiving;
    r.sees_jids = c->whois_anyone || aff == AFF_ADMIN || aff == AFF_OWNER;
    if (aff == AFF_OUTCAST)
        r.allowed = false;
    else if (c->members_only)
        r.allowed = aff != AFF_NONE;
    else if (c->password_protected)
        r.allowed = aff != AFF_NONE || is_occupant(room, who);
    else
        r.allowed = true;
    return r;
}

static int muc_load(xmppd_module *m, const void *conf)
{
    muc_service *svc = calloc(1, sizeof(*svc));
    if (!svc)
        return xmppd_module_refuse(m, "out of memory");
    svc->m = m;
    svc->host = xmppd_module_host(m);
    svc->conf = conf;
    xmppd_module_set_data(m, svc);
    if (!svc->host)
        return refuse(m, svc, "mod_muc serves one host and needs one", NULL);
    char domain[1100];
    snprintf(domain, sizeof(domain), "conference.%s", xmppd_host_name(svc->host));
    const char *want = svc->conf->domain ? svc->conf->domain : domain;
    if (!(svc->domain = xmppd_nameprep(want)))
        return refuse(m, svc, "domain: not a valid domain:", want);
    const char *bad = NULL;
    if (prepare_admins(svc, &bad) < 0)
        return refuse(m, svc, bad ? "admins: not a bare JID:" : "out of memory", bad);
    muc_config_defaults(&svc->defaults);
    if (svc->defaults.max_history_fetch > svc->conf->max_history)
        svc->defaults.max_history_fetch = (long)svc->conf->max_history;
    if (muc_config_from_json(&svc->defaults, svc->conf->room_defaults, &bad) < 0)
        return refuse(m, svc, "room_defaults: bad value or unknown key:", bad);
    if (svc->defaults.max_users > svc->conf->max_occupants ||
        svc->defaults.max_history_fetch > svc->conf->max_history)
        return refuse(m, svc, "room_defaults: max_users or max_history_fetch above the service's "
                                  "max_occupants or max_history", NULL);
    if (svc->defaults.password_protected && !svc->defaults.password)
        return refuse(m, svc, "room_defaults: password_protected needs a password", NULL);
    svc->rooms_store = xmppd_store_open(m, "muc_rooms", XMPPD_STORE_KEYVAL);
    svc->archive = xmppd_store_open(m, "muc_archive", XMPPD_STORE_ARCHIVE);
    svc->service_store = xmppd_store_open(m, "muc_service", XMPPD_STORE_KEYVAL);
    if (!svc->rooms_store || !svc->archive || !svc->service_store)
        return refuse(m, svc, "no storage driver is loaded", NULL);
    if (xmppd_domain_serve(m, svc->domain, on_stanza, svc) < 0)
        return refuse(m, svc, "a host, a component or another module has the domain", svc->domain);
    /* in a cluster each room lives on one node (place.c) */
    if (xmppd_cluster_place(m, svc->domain, muc_on_moved, svc) < 0)
        return refuse(m, svc, "out of memory", NULL);
    if (xmppd_hook(m, "session-closed", on_session_closed, XMPPD_PRIO_DEFAULT, svc) < 0 ||
        xmppd_hook(m, "disco-items", on_disco_items, XMPPD_PRIO_DEFAULT, svc) < 0 ||
        xmppd_hook(m, "user-deleted", muc_on_user_deleted, XMPPD_PRIO_DEFAULT, svc) < 0 ||
        xmppd_hook(m, "cluster-invalidate", muc_on_invalidate, XMPPD_PRIO_DEFAULT, svc) < 0)
        return refuse(m, svc, "out of memory", NULL);
    svc->api = (muc_api){ .version = MUC_API_VERSION, .size = sizeof(muc_api),
                          .history_access = muc_history_access_of,
                          .forget_account = muc_forget_account };
    if (xmppd_provide(m, "muc", &svc->api) < 0 ||
        xmppd_event_declare(m, "muc/room-iq", XMPPD_EVENT_FIRST,
                            "an IQ to a room in a namespace mod_muc does not serve (muc_api.h); "
                            "stanza, from, to: the IQ") < 0 ||
        xmppd_event_declare(m, "muc/room-info", XMPPD_EVENT_ALL,
                            "a room's disco#info is built; to: the room; data: the <query/> "
                            "(xmppd_stanza *) to add features to") < 0)
        return refuse(m, svc, "out of memory", NULL);
    return 0;
}

/* XEP-0045 §11.2: occupants learn that the service went away (332), so
 * they join again once it is back (a reload's new instance, a restart). */
void muc_tell_shutdown(muc_room *room)
{
    static const int codes[] = { 110, 332, 0 };
    for (muc_occupant *occ = room->occ_head; occ; occ = occ->next) {
        char from[3100];
        snprintf(from, sizeof(from), "%s/%s", muc_room_jid(room), occ->nick);
        xmppd_stanza *p = xmppd_stanza_new("presence", NULL);
        xmppd_stanza *x = p ? muc_status_x(p, codes) : NULL;
        xmppd_stanza *item = x ? xmppd_stanza_tag(x, "item", NULL) : NULL;
        if (item) {
            xmppd_stanza_set_attr(p, "type", "unavailable");
            xmppd_stanza_set_attr(p, "from", from);
            xmppd_stanza_set_attr(item, "affiliation", "none");
            xmppd_stanza_set_attr(item, "role", "none");
            for (muc_sess *s = occ->sessions; s; s = s->next)
                muc_send_to(room->svc, p, s->jid);
        }
        xmppd_stanza_unref(p);
    }
}

static void muc_unload(xmppd_module *m)
{
    muc_service *svc = xmppd_module_data(m);
    if (!svc)
        return;
    size_t n = 0;
    muc_room **rooms = muc_rooms_all(svc, &n);
    for (size_t i = 0; i < n; i++) {
        muc_tell_shutdown(rooms[i]);
        rooms[i]->busy = 0;
        muc_room_free(rooms[i]);
    }
    free(rooms);
    service_free(svc);
    xmppd_module_set_data(m, NULL);
}

XMPPD_MODULE(muc,
    .version = "1.0",
    .summary = "Multi-user chat rooms on a domain of their own (XEP-0045), with archive, invitations "
               "and moderation",
    .specs = (const char *const[]){ "XEP-0045", "XEP-0249", "XEP-0410", "XEP-0421", "XEP-0425",
                                    "XEP-0359", "XEP-0203", NULL },
    .options = muc_options,
    .conf_size = sizeof(muc_conf),
    .load = muc_load,
    .unload = muc_unload);
