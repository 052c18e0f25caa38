/* The MAM module's query engine for other modules' archives (XEP-0313 on a
 * group chat room's JID, say), published with xmppd_provide(m, "mam", &api)
 * on every host the mam module is loaded on and found with
 * xmppd_use(host, "mam"). Look it up per use: it goes away when the mam
 * module unloads.
 *
 * A module using it keeps its archive in a store it opened itself
 * (XMPPD_STORE_ARCHIVE) and must list "mam" in its .depends, so it is
 * unloaded before mam is: the engine's storage callbacks then never
 * outlive either module. Access control (who may read or write an
 * archive) stays with the caller. */
#ifndef MAM_API_H
#define MAM_API_H

#include <stdint.h>

#include <xmppd/hooks.h>
#include <xmppd/stanza.h>
#include <xmppd/storage.h>

#define MAM_API_VERSION 1

/* One archive: borrowed for the call (the engine copies what it keeps). */
typedef struct mam_archive {
    xmppd_store *store; /* an archive store of the calling module */
    const char *user;   /* the archive's key in that store (e.g. a room's localpart) */
    const char *jid;    /* the archive's address, a bare JID: the 'by' of its
                           stanza-ids and the 'from' of its results */
} mam_archive;

typedef struct mam_api {
    uint32_t version; /* MAM_API_VERSION */
    uint32_t size;    /* sizeof(mam_api) */

    /* Answers the IQ of ev when it is a MAM request on archive a: a
     * <query xmlns='urn:xmpp:mam:2'/> get (the query form) or set (the
     * matching items sent to ev->from as <result/> messages from a->jid,
     * then the IQ result with <fin/>), or a <metadata/> get. Errors are
     * answered as XEP-0313 specifies (bad-request, item-not-found,
     * feature-not-implemented, ...). Returns XMPPD_HANDLED when an answer
     * is sent (now or later), XMPPD_PASS when ev's IQ is no MAM request. */
    int (*handle_iq)(const struct mam_api *api, xmppd_event *ev, const mam_archive *a);

    /* Archives msg in a and stamps it: removes every <stanza-id/> claiming
     * to be from a->jid (a sender's forgery, XEP-0359 §6), appends a copy
     * (with: the peer JID that 'with' queries match, may be NULL), then
     * adds <stanza-id xmlns='urn:xmpp:sid:0' by=a->jid id=.../> to msg with
     * the new item's id. Store msg as it should be served (for a room:
     * from the occupant JID, without 'to'). 0, or -1 on OOM (msg is then
     * not stamped). The write completes later; a failure is logged. */
    int (*archive)(const struct mam_api *api, const mam_archive *a, xmppd_stanza *msg,
                   const char *with);

    /* Removes the <stanza-id/> elements claiming to be from jid's archive
     * from msg (for messages that are not archived). */
    void (*strip)(const struct mam_api *api, xmppd_stanza *msg, const char *jid);
} mam_api;

#endif
