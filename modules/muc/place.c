/* Rooms across the nodes of a cluster (docs/cluster.md, "Components,
 * rooms and s2s across nodes"). The kernel places every room JID on one
 * live node (xmppd_cluster_place) and routes stanzas for it there; this
 * file follows when the nodes change. A room placed elsewhere now leaves
 * memory. A temporary room is handed over to its new node with its
 * occupants (handover.c), who see nothing of it. A persistent room's
 * occupants get 110 + 332 (XEP-0045 §11.2), so their clients join again
 * and reach the room on its new node, where its state (sent along too)
 * and archive are. Stored rooms placed here now are restored as at start,
 * but a room another live node still holds is awaited from it, its
 * stanzas held meanwhile (handover.c), so no room is served by two nodes. A node that died tells nobody: its rooms' occupants find out
 * with a XEP-0410 self-ping, which the room on its new node answers with
 * <not-acceptable/> (they are not in it). Occupants whose own node died
 * leave the rooms here as ghosts (333), a few seconds later. */
#include <stdlib.h>
#include <string.h>

#include "muc.h"
#include "muc_store.h"

static void let_go(muc_service *svc)
{
    size_t n = 0;
    muc_room **rooms = muc_rooms_all(svc, &n);
    for (size_t i = 0; i < n; i++) {
        muc_room *room = rooms[i];
        if (xmppd_cluster_mine(muc_room_jid(room)))
            continue;
        if (!room->locked && !room->cfg.persistent && muc_handover_send(room, true) == 0) {
            xmppd_log(svc->m, XMPPD_LOG_INFO, "room %s handed over to its new node (%zu "
                      "occupants)", muc_room_jid(room), room->n_occupants);
            muc_room_free(room);
            continue;
        }
        xmppd_log(svc->m, XMPPD_LOG_INFO, "room %s moves to another node (%zu occupants told)",
                  muc_room_jid(room), room->n_occupants);
        muc_tell_shutdown(room);
        if (!room->cfg.persistent)
            muc_store_purge_archive(svc, muc_room_jid(room));
        else if (!room->locked)
            muc_handover_send(room, false); /* its state, never older than storage's */
        muc_room_free(room);
    }
    free(rooms);
}

/* Occupants whose session was on a node that died: only the node that
 * spoke for the dead node fired "session-closed" for them, so rooms here
 * may still list them. A session of one of our hosts that no node has any
 * more is a ghost (XEP-0045 §18.1.2): it leaves with 333. The check runs
 * GHOST_GRACE_MS after the change: a node that only seemed gone (Redis
 * restarted empty, and a node read the node list before the others wrote
 * themselves in again) has its sessions back by then. */
#define GHOST_GRACE_MS 5000

static uint64_t drop_ghosts(void *ud)
{
    muc_service *svc = ud;
    svc->ghost_timer = NULL;
    size_t n = 0, n_gone = 0;
    muc_room **rooms = muc_rooms_all(svc, &n);
    char **gone = NULL;
    for (size_t i = 0; i < n; i++)
        for (muc_occupant *occ = rooms[i]->occ_head; occ; occ = occ->next)
            for (muc_sess *s = occ->sessions; s; s = s->next) {
                if (!xmppd_host_find(s->jid->domain) || xmppd_session_find(s->jid))
                    continue;
                char **v = realloc(gone, (n_gone + 1) * sizeof(*v));
                if (!v)
                    break;
                gone = v;
                if ((v[n_gone] = strdup(s->jid->full)))
                    n_gone++;
            }
    free(rooms);
    for (size_t i = 0; i < n_gone; i++) {
        muc_sess *s;
        while ((s = muc_sessions_of(svc, gone[i]))) {
            muc_room *room = s->occ->room;
            muc_room_hold(room);
            muc_sess_gone(s, true);
            muc_room_release(room);
        }
        free(gone[i]);
    }
    free(gone);
    return 0;
}

void muc_on_moved(void *ud)
{
    muc_service *svc = ud;
    if (!svc->restore_started)
        return; /* the first restore takes the rooms placed here then */
    if (!svc->ready) {
        svc->moved_again = true; /* once the restore running now is over */
        return;
    }
    let_go(svc);
    if (!svc->ghost_timer)
        svc->ghost_timer = xmppd_timer_add(svc->m, GHOST_GRACE_MS, drop_ghosts, svc);
    muc_rooms_adopt(svc);
    muc_await_reset(svc); /* what waited is held for the new view's restore */
}
