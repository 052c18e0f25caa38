/* Storage of the room service (store.c): writes that only need logging,
 * the restore of persistent rooms at start, and the status storage
 * callbacks may bring.
 *
 * Layout (all stores on the host the service belongs to):
 *  - keyval "muc_rooms": user = room bare JID, key "" -> the room document
 *    (room.c room_doc);
 *  - archive "muc_archive": user = room bare JID, one item per archived
 *    groupchat message, item id = the message's stanza-id, laid out as
 *    mod_mam's engine reads items (history.c);
 *  - keyval "muc_service": user = service domain, key "secret" -> the
 *    base64 key of occupant ids.
 * Room JIDs contain '@', account names never do: an account's deletion
 * (which purges its localpart in every store) cannot touch a room. */
#ifndef MUC_STORE_H
#define MUC_STORE_H

#include "muc.h"

/* kv_set of user's one value (NULL deletes); a failure is the driver's to
 * log. */
void muc_store_write(xmppd_store *st, const char *user, json_t *value);
/* Deletes a room's whole archive (likewise). */
void muc_store_purge_archive(muc_service *svc, const char *room_jid);
/* room.c: fills a restored room from its stored document; -1 with a reason
 * when the document is unusable. */
int muc_room_load_doc(muc_room *room, const json_t *doc, const char **why_r);

#endif
