/* Retention (XEP-0313 §3.2): items older than expire_after and those
 * beyond max_items per account are deleted, oldest first, by passes over
 * the host's accounts at a bounded rate, and between passes for accounts
 * that grow fast. The event loop only issues storage operations; the
 * deleting runs in the storage driver. */
#ifndef MAM_EXPIRE_H
#define MAM_EXPIRE_H

#include "mam_mod.h"

/* Starts the passes (when a limit is configured). 0 or -1 (OOM). */
int mam_expire_start(mam_mod *mod);
/* Deletes node's oldest items beyond max_items. */
void mam_expire_trim(mam_mod *mod, const char *node);
/* Unload: frees the pass state (its timers are gone with the instance). */
void mam_expire_free(mam_mod *mod);

#endif
