/* Administrators and access rules (ABI 2.5), evaluated by the kernel for
 * every module the same way. docs/administration.md is the operator's guide.
 *
 * Administrators are bare JIDs: server-wide ("admins" at the top of the
 * configuration) or of one host ("hosts.NAME.admins").
 *
 * An access rule is an ordered list of entries for one action ("register",
 * "s2s", "send", "create_room", "upload", "admin_api", ...):
 *
 *   "access": { "register": [ { "allow": { "ip": "10.0.0.0/8" } },
 *                             { "deny": "all" } ] }
 *
 * Each entry is {"allow": MATCH} or {"deny": MATCH}; the first entry whose
 * MATCH holds for the request decides. MATCH is a keyword ("all", "none",
 * "admin", "local", "remote") or an object of conditions that must all
 * hold; a condition given a list holds when one of its values does:
 *   jid, domain, group, admin, local, ip        about the actor
 *   to_jid, to_domain, to_group, to_local       about the target
 * ("domain": "*.example.org" matches the subdomains of example.org;
 * "local" means served by this server: a host, a domain a module serves
 * such as conference.HOST, or a configured component.) A
 * request without an actor (or target, or address) matches no condition
 * about it. A host's rule for an action replaces the server-wide one.
 *
 * When no rule is configured for the action, or no entry matches, the
 * answer is XMPPD_ACCESS_DEFAULT and the caller applies its own default,
 * which it documents (the action table in docs/administration.md). So a
 * rule that only denies ("deny these domains") keeps the default for the
 * rest, and a rule that allows a few ends with {"deny": "all"}.
 *
 * Rules are checked when the configuration is read (`xmppctl check`): the
 * action names (the server's, or "MODULE.NAME" for a module's own), the
 * JIDs, CIDRs and group names. Loop thread only; every call is O(entries). */
#ifndef XMPPD_ACCESS_H
#define XMPPD_ACCESS_H

#include <stdbool.h>
#include "jid.h"
#include "module.h"

enum { XMPPD_ACCESS_DENY = 0, XMPPD_ACCESS_ALLOW = 1, XMPPD_ACCESS_DEFAULT = -1 };

/* The rule for action on host h (NULL: the server-wide rule) decides
 * about actor (may be NULL: an anonymous request) coming from address ip
 * (may be NULL). XMPPD_ACCESS_ALLOW, _DENY or _DEFAULT (see above). */
int xmppd_access(const xmppd_host *h, const char *action, const xmppd_jid *actor, const char *ip);
/* The same for an action with a target (who a stanza goes to): the to_*
 * conditions are about target (may be NULL). */
int xmppd_access_to(const xmppd_host *h, const char *action, const xmppd_jid *actor,
                    const char *ip, const xmppd_jid *target);
/* xmppd_access with the caller's default folded in: true when allowed. */
bool xmppd_access_allowed(const xmppd_host *h, const char *action, const xmppd_jid *actor,
                          const char *ip, bool def);

/* Is a rule configured for action on h (its own or the server-wide one)?
 * For offering a feature at all before a request can be judged. */
bool xmppd_access_has_rule(const xmppd_host *h, const char *action);

/* Is jid (its bare part counts) a server-wide administrator, or one of
 * host h (NULL: server-wide only)? */
bool xmppd_is_admin(const xmppd_host *h, const xmppd_jid *jid);
/* Calls fn for every administrator of h (server-wide ones first; h NULL:
 * only those), each bare JID once. Strings are borrowed for the call. */
void xmppd_admins_foreach(const xmppd_host *h, void (*fn)(const char *bare, void *ud), void *ud);

#endif
