/* mod_muc: multi-user chat (XEP-0045) served on a room domain of its own
 * (xmppd_domain_serve), with room archive, invitations (XEP-0045 §7.8 and
 * XEP-0249), self-ping (XEP-0410), occupant ids (XEP-0421) and moderation
 * (XEP-0425). Types and functions shared by the module's files; README.md
 * documents the behaviour and the storage layout.
 *
 * Ownership: the service owns its rooms; a room owns its occupants, their
 * sessions, its history and its pending work. Everything runs on the loop
 * thread. Storage callbacks never keep a pointer to a room: they carry the
 * room's JID and look it up again (a room may be destroyed meanwhile). */
#ifndef MUC_H
#define MUC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <xmppd/xmppd.h>

#include "muc_api.h"

#define NS_MUC "http://jabber.org/protocol/muc"
#define NS_MUC_USER NS_MUC "#user"
#define NS_MUC_ADMIN NS_MUC "#admin"
#define NS_MUC_OWNER NS_MUC "#owner"
#define NS_MUC_ROOMCONFIG NS_MUC "#roomconfig"
#define NS_MUC_ROOMINFO NS_MUC "#roominfo"
#define NS_MUC_REQUEST NS_MUC "#request"
#define NS_MUC_REGISTER NS_MUC "#register"
#define NS_MUC_STABLE_ID NS_MUC "#stable_id"
#define NS_MUC_SELF_PING NS_MUC "#self-ping-optimization"
#define NS_MUC_TRAFFIC NS_MUC "#traffic"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_REGISTER "jabber:iq:register"
#define NS_PING "urn:xmpp:ping"
#define NS_DELAY "urn:xmpp:delay"
#define NS_SID "urn:xmpp:sid:0"
#define NS_OCCUPANT_ID "urn:xmpp:occupant-id:0"
#define NS_MODERATE0 "urn:xmpp:message-moderate:0"
#define NS_MODERATE1 "urn:xmpp:message-moderate:1"
#define NS_RETRACT0 "urn:xmpp:message-retract:0"
#define NS_RETRACT1 "urn:xmpp:message-retract:1"
#define NS_FASTEN "urn:xmpp:fasten:0"
#define NS_FALLBACK "urn:xmpp:fallback:0"
#define NS_HINTS "urn:xmpp:hints"
#define NS_CONFERENCE "jabber:x:conference"
#define NS_VCARD "vcard-temp"

/* Text limits the configuration does not set: room name, description,
 * language, password, reasons (characters). */
#define MUC_TEXT_MAX 1024
/* Invitations in one message, items in one muc#admin set. */
#define MUC_MAX_INVITES 20
#define MUC_MAX_ADMIN_ITEMS 100
/* IQs relayed between occupants waiting for their answer, per room, and
 * how long one waits. */
#define MUC_MAX_PROXIED 256
#define MUC_PROXY_TTL_MS 120000
/* Stanzas held while the service restores its rooms after a start. */
#define MUC_MAX_HELD 10000

/* Roles and affiliations in privilege order (XEP-0045 §5). */
typedef enum muc_role { ROLE_NONE, ROLE_VISITOR, ROLE_PARTICIPANT, ROLE_MODERATOR } muc_role;
typedef enum muc_aff { AFF_OUTCAST, AFF_NONE, AFF_MEMBER, AFF_ADMIN, AFF_OWNER } muc_aff;

const char *muc_role_name(muc_role r);
const char *muc_aff_name(muc_aff a);
/* -1 when s names no role / affiliation. */
int muc_role_parse(const char *s);
int muc_aff_parse(const char *s);

/* Who may send private messages (muc#roomconfig_allowpm). */
typedef enum muc_pm { PM_ANYONE, PM_PARTICIPANTS, PM_MODERATORS, PM_NONE } muc_pm;

/* ---- module options ---------------------------------------------------- */

typedef struct muc_conf {
    const char *domain;          /* NULL: "conference." + host */
    const char *name;
    const char *create_rooms;    /* "anyone", "local", "admins" */
    const char *const *admins;   /* service admins: owners of every room */
    long long max_rooms;
    long long max_rooms_per_user;
    long long max_occupants;     /* ceiling of a room's maxusers */
    long long max_history;       /* messages kept per room for history */
    long long max_affiliations;  /* per room */
    long long message_rate;      /* messages and presence updates per minute per occupant */
    long long message_burst;
    long long max_subject_length;
    long long max_nick_length;
    long long lock_timeout;      /* ms an unconfigured room waits */
    bool multi_session;
    bool enforce_reserved_nicks;
    const json_t *room_defaults;
} muc_conf;

/* ---- room configuration (muc#roomconfig) ------------------------------- */

typedef struct muc_config {
    char *name, *desc, *lang, *password; /* owned, NULL when unset */
    bool persistent, public_room, moderated, members_only, password_protected;
    bool whois_anyone;           /* non-anonymous */
    bool change_subject, allow_invites, archiving;
    muc_pm allow_pm;
    long max_users;              /* 0: the service ceiling */
    unsigned presence_broadcast; /* bit (1 << role) per role broadcast */
    unsigned get_member_list;    /* bit (1 << role) per role allowed */
    long max_history_fetch;
} muc_config;

/* The service defaults (room_defaults option), filled in by load. */
void muc_config_defaults(muc_config *c);
void muc_config_clear(muc_config *c);
int muc_config_copy(muc_config *dst, const muc_config *src);
/* JSON form used for storage and for the room_defaults option. _from_json
 * reads into c (unchanged fields stay) and returns 0, or -1 with a static
 * reason naming the bad key. */
json_t *muc_config_to_json(const muc_config *c);
int muc_config_from_json(muc_config *c, const json_t *o, const char **why_r);

/* ---- occupants ----------------------------------------------------------- */

typedef struct muc_room muc_room;
typedef struct muc_occupant muc_occupant;

/* One real full JID in a room (an occupant has one, or several with a
 * multi-session nick). */
typedef struct muc_sess {
    struct muc_sess *next;       /* the occupant's sessions */
    struct muc_sess *next_same;  /* service index: same real JID, other rooms */
    muc_occupant *occ;
    xmppd_jid *jid;              /* real full JID (owned) */
    xmppd_stanza *presence;      /* its last presence, client payload only (ref) */
} muc_sess;

struct muc_occupant {
    struct muc_occupant *prev, *next; /* the room's occupants, in join order */
    muc_room *room;
    char *nick;                  /* resourceprepped (owned) */
    xmppd_jid *bare;             /* real bare JID (owned) */
    muc_role role;
    muc_sess *sessions;          /* at least one while in the room */
    char occupant_id[48];        /* XEP-0421 */
    double tokens;               /* message rate bucket */
    uint64_t tokens_at;          /* ms, monotonic */
};

/* ---- history ------------------------------------------------------------ */

typedef struct muc_hist {
    char *id;                    /* stanza-id = archive id (owned) */
    int64_t when_ms;
    xmppd_stanza *msg;           /* as broadcast, without 'to' (ref) */
    char *nick;                  /* the author's nick then (owned) */
    char *jid;                   /* the author's real bare JID (owned) */
    char *occupant_id;           /* owned */
} muc_hist;

/* An IQ relayed from one occupant to another, waiting for the answer. */
typedef struct muc_proxied {
    struct muc_proxied *next;
    char token[24];              /* the id the target sees */
    char *orig_id;
    xmppd_jid *requester;        /* real full JID of the asking occupant */
    char *requester_nick;
    xmppd_jid *target;           /* where the IQ went */
    char *target_nick;
    uint64_t at;                 /* ms, monotonic */
} muc_proxied;

/* ---- rooms ---------------------------------------------------------------- */

typedef struct muc_service muc_service;

struct muc_room {
    muc_service *svc;
    uint64_t serial;             /* tells a room from a later one of the same name */
    char *node;                  /* room localpart (owned) */
    xmppd_jid *jid;              /* room bare JID (owned) */
    muc_config cfg;
    json_t *affs;                /* bare JID -> {"affiliation", "nick"?, "reason"?} */
    json_t *roles;               /* bare JID -> "participant" | "visitor" kept across visits */
    json_t *requests;            /* bare JID -> {"nick", "when"}: registrations awaiting an
                                    admin's approval (§9.9); {"closed": true, "when"}:
                                    withdrawn or denied lately */
    char *subject, *subject_from;/* owned; subject_from: occupant JID or room JID */
    int64_t subject_ms;          /* 0: never set */
    bool locked;                 /* created, waiting for its first configuration */
    bool destroyed;
    int busy;                    /* muc_room_hold count: not freed meanwhile */
    bool dead;                   /* freed once no longer busy */
    int64_t created_ms;
    muc_occupant *occ_head, *occ_tail;
    size_t n_occupants;
    void *by_nick;               /* tsearch: muc_occupant by nick */
    muc_hist *hist;              /* ring of cfg max history */
    size_t hist_cap, hist_len, hist_start;
    muc_proxied *proxied;
    size_t n_proxied;
    xmppd_timer *lock_timer;
};

struct muc_service {
    muc_api api;                 /* published as "muc" (first: the api is the service) */
    xmppd_module *m;
    xmppd_host *host;
    const muc_conf *conf;
    char *domain;                /* prepared (owned) */
    muc_config defaults;
    xmppd_store *rooms_store;    /* keyval "muc_rooms": user = room JID */
    xmppd_store *archive;        /* archive "muc_archive": user = room JID */
    xmppd_store *service_store;  /* keyval "muc_service": user = domain */
    void *rooms;                 /* tsearch: muc_room by node */
    size_t n_rooms;
    void *by_jid;                /* tsearch: session lists by real full JID */
    char **admins;               /* prepared bare JIDs of the admins option (owned) */
    unsigned char secret[32];    /* occupant-id key (persisted) */
    uint64_t next_serial;        /* last room serial handed out */
    bool restore_started;        /* by the first stanza for the domain */
    bool ready;                  /* rooms restored */
    int restoring;               /* restore operations in flight */
    xmppd_pending **held;        /* stanzas that came while restoring */
    size_t n_held, cap_held;
    bool moved_again;            /* the cluster's nodes changed during a restore (place.c) */
    xmppd_timer *ghost_timer;    /* place.c: the check for occupants of dead nodes */
    char **forget;               /* deleted accounts waiting for the restore (owned) */
    bool creating;               /* directory.c: a creation waits for the cluster's count */
    const char *create_verdict;  /* directory.c: its answer while it is handled ("" yes) */
    json_t *awaited;             /* handover.c: room JIDs another node still holds -> true */
    xmppd_pending **waiting;     /* handover.c: stanzas for awaited rooms, in arrival order */
    size_t n_waiting;
    xmppd_timer *await_timer;
    xmppd_stanza **handovers;    /* handover.c: checked handovers not taken yet (refs) */
    size_t n_handovers;
    size_t n_forget;
};

/* ---- muc.c: service ---------------------------------------------------- */

/* The "muc" API's history_access (muc_api.h). */
muc_history_access muc_history_access_of(const muc_api *api, const xmppd_jid *room, const xmppd_jid *who);

/* Handles one stanza for the service domain (the domain handler). */
int muc_dispatch(muc_service *svc, xmppd_event *ev);
/* A service admin (admins option)? */
bool muc_is_service_admin(const muc_service *svc, const xmppd_jid *jid);
/* May jid create a room now (create_rooms, max_rooms, max_rooms_per_user)?
 * NULL, or the error condition to answer with a static text in *text_r. */
const char *muc_may_create(muc_service *svc, const xmppd_jid *jid, const char **text_r);
/* The restore is over: stanzas held meanwhile are handled now. */
void muc_service_ready(muc_service *svc);
/* Stanzas held (restore, creation check) are handled, in order, unless
 * the service waits again. */
void muc_release_held(muc_service *svc);
/* XEP-0045 §11.2: the room's occupants get unavailable presence with 110
 * and 332 (the service went away from under them: join again). */
void muc_tell_shutdown(muc_room *room);

/* ---- place.c: rooms across the nodes of a cluster ---------------------------- */

/* xmppd_cluster_place's moved callback (ud: the service): rooms placed on
 * another node now go (their occupants are told, 332), stored rooms placed
 * here now are restored. */
void muc_on_moved(void *ud);

/* ---- directory.c: the rooms of every node ------------------------------------------ */

/* The room is listed for the other nodes as it is now (name, listed in
 * disco#items, owners), or no longer. Nothing without a cluster. */
void muc_dir_update(muc_room *room);
void muc_dir_withdraw(muc_room *room);
/* §6.3 in a cluster: ev (a valid disco#items request) is answered from
 * every node's rooms, later: true. false: answer from the rooms here (no
 * cluster, Redis away). */
bool muc_items_cluster(muc_service *svc, xmppd_event *ev);
/* §10.1.1 in a cluster, once this node's own checks passed: 0 create, 1
 * refused (not-allowed, *text_r why), -1 the presence waits for the
 * cluster's count and comes back through muc_dispatch. */
int muc_create_check(muc_service *svc, xmppd_event *ev, const char **text_r);

/* ---- handover.c: rooms moving between live nodes ------------------------------------ */

/* Sends the room's state (with its occupants or without) to its JID, which
 * the kernel routes to its new owner. 0, or -1 on OOM (nothing sent). */
int muc_handover_send(muc_room *room, bool with_occupants);
/* A room's state from the service on another node (ev: a message to the
 * room): the room goes on here, and the stanzas that waited for it are
 * handled. false: not a handover (an ordinary message). */
bool muc_handover_take(muc_service *svc, xmppd_event *ev);
/* As a stanza arrives (before it may wait): a handover that another node's
 * service sent is noted as such (the kernel tells so only now). */
void muc_handover_check(muc_service *svc, xmppd_event *ev);
/* The new owner waits for jid, which another node still held when the
 * node set changed: stanzas for it wait (muc_await_hold: true when ev was
 * kept) until it comes, or for a few seconds. */
void muc_await(muc_service *svc, const char *jid);
bool muc_await_hold(muc_service *svc, xmppd_event *ev);
/* jid came (or will not): its stanzas are handled, in order. */
void muc_awaited_done(muc_service *svc, const char *jid);
/* The node set changed again: nothing is awaited; the stanzas that
 * waited are handled after the new view's restore (held). */
void muc_await_reset(muc_service *svc);

/* ---- accounts.c: deleted accounts ------------------------------------------ */

/* The "user-deleted" hook: tells every host's room service. */
int muc_on_user_deleted(xmppd_event *ev, void *ud);
/* "cluster-invalidate" of mod_muc from another node: the account was
 * deleted there; once the auth provider confirms it is gone, every room
 * service here forgets it. */
int muc_on_invalidate(xmppd_event *ev, void *ud);
/* The "muc" API's forget_account (muc_api.h); waits for the restore when
 * the stored rooms are not loaded yet. */
void muc_forget_account(const muc_api *api, const char *bare);
/* The restore is over: applies the deletions that waited for it. */
void muc_forget_pending(muc_service *svc);

/* ---- room.c: room objects and storage ------------------------------------ */

/* Every room of the service, in a new array (caller frees; the rooms are
 * borrowed), *n_r their count; NULL on OOM or when there is none. */
muc_room **muc_rooms_all(const muc_service *svc, size_t *n_r);

muc_room *muc_room_find(muc_service *svc, const char *node);
/* A new empty room with the service defaults (locked when locked). NULL on
 * OOM. */
muc_room *muc_room_new(muc_service *svc, const char *node, bool locked);
/* Removes the room from the service and frees it (occupants must have been
 * told already); while it is held, the free waits for the release. */
void muc_room_free(muc_room *room);
/* Keeps room alive while a stanza or callback works on it (kicks may empty
 * a temporary room, a destroy may free it); the release frees or reaps it
 * when due. */
void muc_room_hold(muc_room *room);
void muc_room_release(muc_room *room);
/* Destroys the room: every occupant gets unavailable with <destroy/>
 * (alternate venue and reason may be NULL), stored state and archive are
 * deleted, the room is freed. */
void muc_room_destroy(muc_room *room, const char *alt_jid, const char *alt_password,
                      const char *reason);
/* Frees a temporary room nobody occupies any more. */
void muc_room_maybe_reap(muc_room *room);
/* Writes the room's state (config, affiliations, roles, subject) when it
 * is persistent; deletes it when it is not. */
void muc_room_save(muc_room *room);
/* Unlocks a room created locked (its first configuration is done). */
void muc_room_unlock(muc_room *room);
/* store.c: the restore at start: the occupant-id secret, every stored room
 * of the domain and its history; muc_service_ready when done. */
void muc_rooms_restore(muc_service *svc);
/* store.c: the stored rooms placed on this node (xmppd_cluster_mine) that
 * are not in memory are restored; stanzas wait meanwhile, as at start. */
void muc_rooms_adopt(muc_service *svc);
/* The room's state as stored (config, affiliations, roles, requests,
 * subject, created); new reference, NULL on OOM. */
json_t *muc_room_doc(const muc_room *room);
/* The room's bare JID as a string (borrowed). */
const char *muc_room_jid(const muc_room *room);

/* Affiliation of a bare JID (service admins are owners); the reserved nick
 * (borrowed, NULL when none). */
muc_aff muc_aff_of(const muc_room *room, const xmppd_jid *bare);
const char *muc_reserved_nick(const muc_room *room, const char *bare);
/* The bare JID that reserved nick, other than bare (borrowed), or NULL. */
const char *muc_nick_reserved_by(const muc_room *room, const char *nick, const char *bare);
/* Sets an affiliation (AFF_NONE removes it); nick NULL keeps the reserved
 * nick, "" removes it. -1 on OOM. */
int muc_aff_set(muc_room *room, const char *bare, muc_aff aff, const char *nick, const char *reason);
size_t muc_aff_count(const muc_room *room, muc_aff aff);

/* Occupant lookups. */
muc_occupant *muc_occ_by_nick(const muc_room *room, const char *nick);
muc_sess *muc_sess_find(const muc_room *room, const xmppd_jid *full);
/* Adds an occupant with one session; NULL on OOM. */
muc_occupant *muc_occ_add(muc_room *room, const char *nick, const xmppd_jid *full);
/* Adds a session to an occupant (multi-session nick); NULL on OOM. */
muc_sess *muc_sess_add(muc_occupant *occ, const xmppd_jid *full);
/* Removes a session; removes and frees the occupant with its last one. */
void muc_sess_remove(muc_sess *s);
/* Removes every session of occ, and so occ (nobody is told). */
void muc_occ_free(muc_occupant *occ);
/* Renames an occupant. -1 on OOM (nothing changed). */
int muc_occ_rename(muc_occupant *occ, const char *nick);
/* Sessions of a real full JID across the service's rooms. */
muc_sess *muc_sessions_of(const muc_service *svc, const char *full);

/* ---- presence.c: joining, leaving, presence broadcast --------------------- */

void muc_presence(muc_service *svc, muc_room *room, xmppd_event *ev);
/* The role an occupant with affiliation aff gets on entering. */
muc_role muc_default_role(const muc_room *room, const char *bare, muc_aff aff);
/* Sends the occupant's presence to every occupant (and its own sessions
 * with 110 plus the codes, NULL-terminated, may be NULL). */
void muc_broadcast_presence(muc_occupant *occ, const int *self_codes, const int *all_codes,
                            const char *reason, const char *actor_nick);
/* Removes an occupant with unavailable presence carrying codes (to its own
 * sessions with 110 added), reason and actor nick (may be NULL). */
void muc_occ_remove(muc_occupant *occ, const int *codes, const char *reason, const char *actor_nick);
/* A session's real JID left (session closed, error bounce): removes it. */
void muc_sess_gone(muc_sess *s, bool error);
/* Is the occupant's presence broadcast (muc#roomconfig_presencebroadcast)? */
bool muc_occ_visible(const muc_occupant *occ);
/* May an occupant with this role see real JIDs? */
bool muc_sees_jids(const muc_room *room, muc_role viewer);

/* ---- message.c: groupchat, subject, private messages, invitations ------- */

void muc_message(muc_service *svc, muc_room *room, xmppd_event *ev);
/* Sends the current subject to one session (join). */
void muc_send_subject(muc_room *room, const xmppd_jid *to);
/* Stamps, archives (when the room archives) and broadcasts a groupchat
 * message template (from set, no 'to', consumed). history: it goes into
 * the history cache (author needed). */
void muc_broadcast_groupchat(muc_room *room, xmppd_stanza *tmpl, const muc_occupant *author,
                             bool history);
/* A message from the room JID to every occupant (or moderators only). */
void muc_room_notice(muc_room *room, xmppd_stanza *tmpl, bool moderators_only);
/* Status-code notice (104, 172, 173) to every occupant. */
void muc_status_notice(muc_room *room, const int *codes);
/* Invitation from the room to jid (used for new members of members-only
 * rooms too); inviter: the bare JID to name, reason may be NULL. */
void muc_send_invite(muc_room *room, const char *to, const char *inviter, const char *reason,
                     const xmppd_stanza *cont);

/* ---- admin.c: muc#admin, affiliation changes ------------------------------ */

int muc_admin_iq(muc_room *room, xmppd_event *ev);
/* Applies a new affiliation (already stored) to occupants with that bare
 * JID and tells the room; actor may be NULL. */
void muc_aff_changed(muc_room *room, const char *bare, muc_aff old, muc_aff aff,
                     const char *reason, const char *actor_nick);
/* Changes an occupant's role and broadcasts it. */
void muc_set_role(muc_occupant *occ, muc_role role, const char *reason, const char *actor_nick);

/* ---- register.c: registration (§7.10) and its approval (§9.9) ----------- */

/* Most registration requests (waiting or closed) one room keeps. */
#define MUC_MAX_REG_REQUESTS 100
/* How long a withdrawn or denied request keeps its user from asking again. */
#define MUC_REG_RETRY_MS (10 * 60 * 1000)

/* An IQ in jabber:iq:register to the room. */
int muc_register_iq(muc_room *room, xmppd_event *ev);
/* A muc#register form an admin sent to the room: approves or denies a
 * waiting request. f is the parsed form (borrowed). */
void muc_register_decision(muc_room *room, xmppd_event *ev, const xmppd_form *f);

/* ---- owner.c: muc#owner --------------------------------------------------- */

int muc_owner_iq(muc_room *room, xmppd_event *ev);

/* ---- history.c: archive, history on join, moderation ---------------------- */

void muc_hist_push(muc_room *room, const char *id, int64_t when_ms, xmppd_stanza *msg,
                   const char *nick, const char *jid, const char *occupant_id);
void muc_hist_clear(muc_room *room);
/* Loads a restored room's history cache from the archive; done is called
 * once (also on failure). */
void muc_hist_load(muc_room *room, void (*done)(muc_service *svc, void *ud), void *ud);
/* Sends discussion history to a joining session (XEP-0045 §7.2.13/14). */
void muc_send_history(muc_room *room, const xmppd_jid *to, const xmppd_stanza *history_req);
/* Appends msg (as broadcast: from set, no 'to', no stanza-id yet) to the
 * room's archive as item id; with: the author's real bare JID, NULL for
 * the room's own messages. A failure is logged. */
void muc_archive_message(muc_room *room, const char *id, int64_t when_ms, const xmppd_stanza *msg,
                         const char *with);
/* XEP-0425 moderation request. */
int muc_moderate_iq(muc_room *room, xmppd_event *ev);

/* ---- iq.c: IQs to rooms, occupants and the service ------------------------ */

/* A room in the service's room list. */
typedef struct muc_item {
    const char *jid, *name;
} muc_item;
/* Answers ev (a disco#items request of the service) with items (n,
 * sorted by JID), paged as its RSM <set/> asks (XEP-0059). */
void muc_items_answer(xmppd_event *ev, const muc_item *items, size_t n);

void muc_iq(muc_service *svc, muc_room *room, xmppd_event *ev);
void muc_service_iq(muc_service *svc, xmppd_event *ev);
/* An IQ result/error coming back for a relayed IQ; true when consumed. */
bool muc_proxy_answer(muc_room *room, xmppd_event *ev);
void muc_proxy_clear(muc_room *room);

/* ---- util.c --------------------------------------------------------------- */

/* XEP-0421 occupant id of a real bare JID in a room, into out (48 bytes). */
void muc_occupant_id(const muc_service *svc, const muc_room *room, const char *bare, char out[48]);
/* XEP-0082 UTC timestamp of wall-clock ms ("2024-01-02T03:04:05.678Z"). */
void muc_stamp(int64_t ms, char out[32]);
/* Parses a XEP-0082 DateTime; -1 when malformed. */
int muc_parse_stamp(const char *s, int64_t *ms_r);
/* Takes one token of the occupant's rate bucket (message_rate per minute,
 * message_burst at most): false when it is empty. */
bool muc_rate_ok(muc_occupant *occ);
/* A random id for stanzas the room generates (24 bytes incl. NUL). */
void muc_random_id(char out[24]);
/* A stanza-id and archive item id for a message of when_ms: ordered by time
 * (ids of later messages sort after earlier ones, so they append at the
 * end of the store's index), then random: unique within a room and not
 * guessable. */
#define MUC_ARCHIVE_ID_SIZE 19 /* 18 characters and NUL */
void muc_archive_id(int64_t when_ms, char out[MUC_ARCHIVE_ID_SIZE]);
/* Number of characters (UTF-8 code points) in s. */
size_t muc_utf8_len(const char *s);
/* Removes every child of el named name in ns. */
void muc_strip(xmppd_stanza *el, const char *name, const char *ns);
/* A valid room nick under the service limits (resourceprepped by the JID
 * parser already): not empty, not only spaces, not too long. NULL, or the
 * error condition. */
const char *muc_nick_invalid(const muc_service *svc, const char *nick);
/* Routes st (borrowed) with its 'to' set to `to`: a copy per recipient,
 * since the router may keep what it is given. */
void muc_send_to(muc_service *svc, const xmppd_stanza *st, const xmppd_jid *to);
/* Appends <status code/> children (codes: 0-terminated, may be NULL) to x. */
void muc_add_codes(xmppd_stanza *x, const int *codes);
/* Appends <x xmlns=muc#user> with <status code/> children to el; returns x. */
xmppd_stanza *muc_status_x(xmppd_stanza *el, const int *codes);
/* The result to ev's IQ with an empty <query xmlns=ns/>: returns the query
 * (borrowed) and the reply in *r_out (caller's), or NULL on OOM. */
xmppd_stanza *muc_reply_query(const xmppd_event *ev, const char *ns, xmppd_stanza **r_out);
/* Error reply to ev with 'by' = the room (XEP-0045 examples) and, for
 * presence errors, the muc <x/> echoed; returns XMPPD_HANDLED. */
int muc_error(xmppd_event *ev, const muc_room *room, const char *type, const char *cond,
              const char *text);

#endif
