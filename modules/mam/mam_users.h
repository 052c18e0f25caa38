/* Archiving accounts' messages: which messages go into an account's
 * archive (XEP-0313 §5.1.1, the account's preferences), and the per-account
 * state that decision needs (preferences, whether the account exists, the
 * roster for default='roster'), loaded on demand and cached. */
#ifndef MAM_USERS_H
#define MAM_USERS_H

#include "mam_mod.h"

/* Hooks: "message/bare" and "message/full" (incoming, stamped), and
 * "pre-route" (outgoing from a client). */
int mam_users_inbound(xmppd_event *ev, void *ud);
int mam_users_outbound(xmppd_event *ev, void *ud);
/* "resource-bound": start loading the account's state early. */
int mam_users_bound(xmppd_event *ev, void *ud);
/* "user-created"/"user-deleted": forget what is cached of the account. */
int mam_users_forget(xmppd_event *ev, void *ud);
/* The preferences of node changed (stored): update the cache. */
void mam_users_prefs_changed(mam_mod *mod, const char *node, const mam_prefs *p);
/* Counts an append to node's archive; calls mam_expire_trim when it is
 * time to check the account's item limit. */
void mam_users_appended(mam_mod *mod, const char *node);
/* Drops cached accounts without sessions unused for a while (timer). */
void mam_users_sweep(mam_mod *mod);
/* Unload: delivers held messages unarchived, frees everything. */
void mam_users_free(mam_mod *mod);

#endif
