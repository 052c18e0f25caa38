/* The FAST token records of XEP-0484, for the c2s layer that issues and
 * checks tokens: one JSON value per account in the kernel's keyval store
 * "fast" of the host (so deleting the account purges it with the rest of
 * its data), read and written under a per-account lock so that two logins
 * of one account cannot both pass the replay counter or lose each other's
 * rotation.
 *
 * The records hold no token: the c2s layer derives each token from a
 * random salt kept here and its own key (c2s.secret), so a copy of the
 * database alone cannot log in. What a record holds is the c2s layer's
 * business (see c2s/fast.c).
 *
 * A password change or an account deletion through the auth front end
 * (xmppctl, in-band registration: core/auth.c) revokes the account's
 * records before the caller is answered; a holder of the lock then writes
 * nothing back. */
#ifndef XMPPD_FAST_TOKENS_H
#define XMPPD_FAST_TOKENS_H

#include <jansson.h>

#include "core/core.h"

#define FAST_STORE "fast"

/* records: the account's value (a new reference for the callee: an empty
 * object when there is none), NULL unless status is XMPPD_STORE_OK. */
typedef void (*fast_records_cb)(int status, json_t *records, void *ud);

/* Takes the lock of user@h and loads its records; cb runs once, later.
 * -1 when the lock is held by another login (nothing happens). After cb,
 * whatever its status, the caller ends with fast_records_release. */
int fast_records_acquire(xmppd_host *h, const char *user, fast_records_cb cb, void *ud);
/* Writes records (borrowed; an empty object deletes the value; NULL:
 * nothing changed) and lets the lock go once the write is durable; done
 * (may be NULL) then runs with the write's status (XMPPD_STORE_OK when
 * nothing was written). If the account's tokens were revoked while the
 * lock was held, nothing is written back and done gets XMPPD_STORE_ERROR.
 * done runs later (at once only when memory ran out). */
void fast_records_release(xmppd_host *h, const char *user, json_t *records,
                          xmppd_store_done_cb done, void *ud);
/* Deletes every token record of user@h; a login holding the lock writes
 * nothing back. done runs once the deletion is durable (with its status;
 * failures are logged), later (at once only when memory ran out). */
void fast_records_revoke(xmppd_host *h, const char *user, xmppd_store_done_cb done, void *ud);

#endif
