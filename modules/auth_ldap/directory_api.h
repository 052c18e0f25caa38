/* The directory API of auth_ldap for other modules (vcard_ldap, the LDAP
 * groups of shared_roster), published with xmppd_provide(m, "directory", &api)
 * on each host auth_ldap serves and found with xmppd_use(host, "directory").
 * Look it up per use: it goes away when auth_ldap unloads.
 *
 * The searches run on auth_ldap's connection pool (its servers, TLS,
 * service account, timeouts, paging), asynchronously on the event loop.
 * Every call takes the caller's module handle and answers exactly once,
 * later (only a request that cannot even be kept, out of memory or from
 * a caller already unloading, is refused with DIRECTORY_ERROR inside the
 * call): DIRECTORY_OK with the entries, DIRECTORY_ERROR
 * (directory unreachable, timed out, refused the search: logged by
 * auth_ldap), or DIRECTORY_CANCELLED while the caller unloads (free ud,
 * answer nobody). When auth_ldap unloads first, the waiting callers get
 * DIRECTORY_ERROR. Treat any other status as an error.
 *
 * The entries handed to a callback are borrowed for the call. Attribute
 * names are as the server sent them (compare case-insensitively:
 * directory_attr_get below); values are byte strings with a NUL after the
 * last byte (binary ones such as jpegPhoto may also hold NULs). */
#ifndef XMPPD_DIRECTORY_API_H
#define XMPPD_DIRECTORY_API_H

#include <stddef.h>
#include <stdint.h>
#include <strings.h>

#include <xmppd/module.h>

#define DIRECTORY_API_VERSION 1

enum { DIRECTORY_OK = 0, DIRECTORY_ERROR = -1, DIRECTORY_CANCELLED = -2 };

typedef struct directory_value {
    const char *val; /* len bytes, then a NUL */
    size_t len;
} directory_value;

typedef struct directory_attr {
    const char *name;
    const directory_value *vals;
    size_t n;
} directory_attr;

typedef struct directory_entry {
    const char *dn;
    const directory_attr *attrs;
    size_t n;
} directory_entry;

/* Scopes of a search (RFC 4511 §4.5.1.2). */
enum { DIRECTORY_SCOPE_BASE = 0, DIRECTORY_SCOPE_ONE = 1, DIRECTORY_SCOPE_SUB = 2 };

typedef void (*directory_cb)(int status, const directory_entry *entries, size_t n, void *ud);

typedef struct directory_api {
    uint32_t version; /* DIRECTORY_API_VERSION */
    uint32_t size;    /* sizeof(directory_api) */

    /* The directory entry of account user (auth_ldap's user search, or the
     * entry its DN template names), with attrs (NULL-terminated names;
     * NULL: none). n is 0 when the directory has no such account. */
    void (*user_entry)(const struct directory_api *api, xmppd_module *caller, const char *user,
                       const char *const *attrs, directory_cb cb, void *ud);
    /* Every account's entry (the user search with the user matching any
     * value), with the user attribute and attrs; paged (RFC 2696). */
    void (*users)(const struct directory_api *api, xmppd_module *caller, const char *const *attrs,
                  directory_cb cb, void *ud);
    /* A search under base (NULL: auth_ldap's base) with a filter the caller
     * built (escape inserted values with escape_filter), paged. */
    void (*search)(const struct directory_api *api, xmppd_module *caller, const char *base, int scope,
                   const char *filter, const char *const *attrs, directory_cb cb, void *ud);

    /* The account an entry names (its user attribute, before any '@',
     * nodeprepped), malloc'd; NULL when it has none that is valid. */
    char *(*entry_user)(const struct directory_api *api, const directory_entry *e);
    /* s escaped as an RFC 4515 assertion value, malloc'd (NULL on OOM). */
    char *(*escape_filter)(const char *s);
} directory_api;

/* The attribute name of e (case-insensitive), or NULL. */
static inline const directory_attr *directory_attr_get(const directory_entry *e, const char *name)
{
    for (size_t i = 0; e && name && i < e->n; i++)
        if (strcasecmp(e->attrs[i].name, name) == 0)
            return &e->attrs[i];
    return NULL;
}

#endif
