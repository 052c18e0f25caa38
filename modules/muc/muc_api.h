/* mod_muc's rooms for modules that extend them (modules/muc_mam serves
 * XEP-0313 on room JIDs), published as "muc" on mod_muc's host and found
 * with xmppd_use(host, "muc"). Look it up per use: it goes away when mod_muc
 * unloads; list "muc" in .depends.
 *
 * Rooms also fire events on that host:
 *   "muc/room-iq"   (first) an IQ to a room's bare JID in a namespace mod_muc
 *                   does not serve itself: answer it and return HANDLED,
 *                   else the sender gets service-unavailable. Not fired for
 *                   a room that is still locked (§7.2.10), nor for rooms
 *                   that do not exist.
 *   "muc/room-info" (all) a room's disco#info is being built: ev->to is the
 *                   room, ev->from the requester, data the <query/>
 *                   (xmppd_stanza *) to add <feature/> elements to. */
#ifndef MUC_API_H
#define MUC_API_H

#include <stdbool.h>
#include <stdint.h>

#include <xmppd/jid.h>

#define MUC_API_VERSION 1

/* What one requester may do with one room's history. */
typedef struct muc_history_access {
    bool exists;    /* a room, unlocked, at that JID */
    bool allowed;   /* may read its history: not an outcast; a member (or
                       more) of a members-only room; an occupant of a
                       password-protected one */
    bool archiving; /* the room keeps its messages (muc#roomconfig_enablearchiving) */
    bool sees_jids; /* may see who sent what: a non-anonymous room, or an
                       admin or owner of the room */
} muc_history_access;

typedef struct muc_api {
    uint32_t version; /* MUC_API_VERSION */
    uint32_t size;    /* sizeof(muc_api) */

    /* What who (a full or bare JID) may do with the history of the room at
     * room (its bare JID). The archive itself is the archive store
     * "muc_archive", user = the room's bare JID (README.md: storage). */
    muc_history_access (*history_access)(const struct muc_api *api, const xmppd_jid *room,
                                         const xmppd_jid *who);

    /* The account bare (a bare JID) was deleted: its affiliations, reserved
     * nicks and registration requests leave every room of this service
     * (README.md: deleted accounts). Every mod_muc calls it on every host's
     * service when an account of its own host is deleted. */
    void (*forget_account)(const struct muc_api *api, const char *bare);
} muc_api;

#endif
