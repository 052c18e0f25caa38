/* Audit lines from other modules: what an administrator did (an XEP-0133
 * command through mod_adhoc, a call of the HTTP admin API), one line per
 * action, written by mod_log when it is loaded (its `admin` option) and
 * dropped silently when it is not.
 *
 * A module fills a log_audit_entry and calls log_audit(): that fires the
 * event LOG_AUDIT_EVENT (xmppd_notify, data: const log_audit_entry *,
 * borrowed for the call) on the host acted on (NULL: server-wide), so any
 * module may listen; nothing links to mod_log. Never put a secret in an
 * entry (passwords, tokens: name a token, never give it). */
#ifndef XMPPD_LOG_AUDIT_H
#define XMPPD_LOG_AUDIT_H

#include <xmppd/hooks.h>

#define LOG_AUDIT_EVENT "admin-audit"

typedef struct log_audit_entry {
    const char *via;     /* "adhoc" (XEP-0050/0133), "api" (mod_admin_api) */
    const char *actor;   /* the administrator's JID, or "token:NAME" */
    const char *ip;      /* the actor's address; NULL: unknown */
    const char *command; /* the command node or API command name */
    const char *target;  /* what it acted on (JIDs), NULL: nothing named */
    const char *result;  /* "ok"/"completed", or what went wrong */
} log_audit_entry;

static inline void log_audit(xmppd_host *h, const log_audit_entry *e)
{
    xmppd_notify(h, LOG_AUDIT_EVENT, NULL, (void *)e);
}

#endif
