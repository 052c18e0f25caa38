/* Accounts: each host has one auth provider (auth_internal, auth_sql,
 * auth_external, ...) chosen by loading its module on the host. The kernel's
 * SASL mechanisms ask it for SCRAM keys or a PLAIN check; xmppctl and
 * in-band registration ask it to create, delete, list and change passwords.
 *
 * Users are nodeprepped localparts; the host is the provider's. Callbacks run
 * exactly once, later, on the loop thread. */
#ifndef XMPPD_AUTH_H
#define XMPPD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include "crypto.h"
#include "module.h"

enum xmppd_auth_result {
    XMPPD_AUTH_OK = 0,
    XMPPD_AUTH_MISMATCH = 1,       /* wrong password */
    XMPPD_AUTH_USER_UNKNOWN = 2,
    XMPPD_AUTH_DISABLED = 3,       /* account exists but may not log in */
    XMPPD_AUTH_NO_SCHEME = 4,      /* stored format cannot serve this request */
    XMPPD_AUTH_UNSUPPORTED = 5,    /* provider is read-only for this operation */
    XMPPD_AUTH_EXISTS = 6,         /* create: account already there */
    XMPPD_AUTH_INVALID = 7,        /* bad user name or unacceptable password */
    XMPPD_AUTH_INTERNAL = -1,      /* backend down or bug */
    XMPPD_AUTH_CANCELLED = -2      /* the asking module unloads: free ud, answer nobody */
};
/* Human-readable name of a result, for messages. */
const char *xmppd_auth_result_str(int result);

/* What a provider can verify for every user (mask for mechanisms()). */
#define XMPPD_AUTH_CAN_PLAIN 0x1u
#define XMPPD_AUTH_CAN_SCRAM(h) (0x10u << (h)) /* h: enum xmppd_hash */

typedef void (*xmppd_auth_cb)(int result, void *ud);
/* keys borrowed for the call; NULL unless result is OK. */
typedef void (*xmppd_auth_scram_cb)(int result, const xmppd_scram_keys *keys, void *ud);
/* users borrowed for the call. */
typedef void (*xmppd_auth_list_cb)(int result, const char *const *users, size_t n, void *ud);

#define XMPPD_AUTH_PROVIDER_VERSION 1
typedef struct xmppd_auth_provider {
    uint32_t version; /* XMPPD_AUTH_PROVIDER_VERSION */
    uint32_t size;    /* sizeof(xmppd_auth_provider) */
    const char *name;
    unsigned (*mechanisms)(void *pd);
    void (*verify_plain)(void *pd, const char *user, const char *password, xmppd_auth_cb cb, void *ud);
    void (*get_scram)(void *pd, const char *user, enum xmppd_hash h, xmppd_auth_scram_cb cb, void *ud);
    void (*exists)(void *pd, const char *user, xmppd_auth_cb cb, void *ud);
    /* The rest may be NULL: the provider is read-only for that operation. */
    void (*create)(void *pd, const char *user, const char *password, xmppd_auth_cb cb, void *ud);
    void (*set_password)(void *pd, const char *user, const char *password, xmppd_auth_cb cb, void *ud);
    void (*remove)(void *pd, const char *user, xmppd_auth_cb cb, void *ud);
    void (*list)(void *pd, xmppd_auth_list_cb cb, void *ud);
    /* Since ABI 2.4 (a table whose size ends before it lacks it; may be
     * NULL): creates user with SCRAM keys instead of a password, for
     * imports (XEP-0227 files, other servers' hashes). keys[h] is the key
     * set for hash h (keys[h]->hash == h) or NULL when the account has none
     * for it; at least one is given. Copies what it keeps before
     * returning. EXISTS when user is there, INVALID for a bad name or keys. */
    void (*create_keys)(void *pd, const char *user, const xmppd_scram_keys *const *keys,
                        xmppd_auth_cb cb, void *ud);
    /* Since ABI 2.6 (both may be NULL: the provider cannot disable
     * accounts). set_disabled: disabled true bars the account from logging
     * in (verify_plain and get_scram answer XMPPD_AUTH_DISABLED from then
     * on; verify_plain may check the password first), false lets it in
     * again; its data and password stay. reason (may be NULL; copied) is
     * the administrator's text, kept where the provider can keep it.
     * USER_UNKNOWN when there is no such account. is_disabled: OK (may log
     * in), DISABLED or USER_UNKNOWN. */
    void (*set_disabled)(void *pd, const char *user, bool disabled, const char *reason,
                         xmppd_auth_cb cb, void *ud);
    void (*is_disabled)(void *pd, const char *user, xmppd_auth_cb cb, void *ud);
} xmppd_auth_provider;

/* Makes p (with its pointer pd) the provider of m's host, from load() (p
 * and pd stay the module's until its unload). -1 when the host already has
 * another module's provider, m is global, or p is of an unsupported version
 * or lacks a required operation (each logged). A newer instance of the same
 * module (a reload) takes over; operations the old instance still holds
 * when it unloads are answered XMPPD_AUTH_INTERNAL. Released when m unloads. */
int xmppd_auth_provide(xmppd_module *m, const xmppd_auth_provider *p, void *pd);

/* Consumers (kernel, xmppctl, register): go through the host's provider.
 * m is the asking module (NULL: the kernel); if it unloads before the
 * answer, cb runs with XMPPD_AUTH_CANCELLED while it unloads (before its
 * unload()): free ud, answer nobody. Nothing is asked (and cb never runs)
 * when m is already unloading. With no provider, or an operation it lacks,
 * cb gets XMPPD_AUTH_UNSUPPORTED. create and remove fire "user-created" /
 * "user-deleted" (data: const char *user) on success; remove also purges
 * the user's stored data. */
/* XMPPD_AUTH_CAN_* mask of the host's provider (0: none). */
unsigned xmppd_auth_mechanisms(xmppd_host *h);
void xmppd_auth_verify_plain(xmppd_module *m, xmppd_host *h, const char *user, const char *password, xmppd_auth_cb cb, void *ud);
void xmppd_auth_get_scram(xmppd_module *m, xmppd_host *h, const char *user, enum xmppd_hash hash, xmppd_auth_scram_cb cb, void *ud);
void xmppd_auth_exists(xmppd_module *m, xmppd_host *h, const char *user, xmppd_auth_cb cb, void *ud);
void xmppd_auth_create(xmppd_module *m, xmppd_host *h, const char *user, const char *password, xmppd_auth_cb cb, void *ud);
void xmppd_auth_set_password(xmppd_module *m, xmppd_host *h, const char *user, const char *password, xmppd_auth_cb cb, void *ud);
void xmppd_auth_remove(xmppd_module *m, xmppd_host *h, const char *user, xmppd_auth_cb cb, void *ud);
void xmppd_auth_list(xmppd_module *m, xmppd_host *h, xmppd_auth_list_cb cb, void *ud);
/* Since ABI 2.4: creates user from stored SCRAM keys (the provider's
 * create_keys; UNSUPPORTED without it): keys has XMPPD_HASH_COUNT entries,
 * NULL for the hashes the account lacks; borrowed for the call. Fires
 * "user-created" on success, like xmppd_auth_create. */
void xmppd_auth_create_keys(xmppd_module *m, xmppd_host *h, const char *user,
                            const xmppd_scram_keys *const *keys, xmppd_auth_cb cb, void *ud);
/* Since ABI 2.6: disables (disabled true) or re-enables an account through
 * the provider's set_disabled (UNSUPPORTED without it). On success a
 * disabled account's FAST tokens (XEP-0484) are revoked and
 * "user-disabled" fires, "user-enabled" on re-enabling (data: const char
 * *user). The account's sessions are not touched: the caller ends them
 * (xmppctl disable, mod_admin_adhoc and mod_admin_api do). */
void xmppd_auth_set_disabled(xmppd_module *m, xmppd_host *h, const char *user, bool disabled,
                             const char *reason, xmppd_auth_cb cb, void *ud);
/* Since ABI 2.6: OK (the account may log in), DISABLED, USER_UNKNOWN;
 * UNSUPPORTED when the provider cannot tell. */
void xmppd_auth_is_disabled(xmppd_module *m, xmppd_host *h, const char *user, xmppd_auth_cb cb,
                            void *ud);

#endif
