/* Events, IQ handlers and disco features.
 *
 * Events are named strings. A module hooks an event with a priority (higher
 * runs first; equal priorities run in registration order, and modules
 * register in dependency order, so one configuration always gives one
 * chain). A handler returns XMPPD_PASS (not mine, go on), XMPPD_HANDLED
 * (consumed: stop) or XMPPD_FAIL (bug or backend down: the kernel logs it,
 * answers an IQ get/set with internal-server-error and stops).
 *
 * Hooks registered by a host's module instance see that host's events; hooks
 * of a global module see every host's events. Events the kernel fires, with
 * what they carry, are listed in docs/modules.md and by `xmppctl hooks`. */
#ifndef XMPPD_HOOKS_H
#define XMPPD_HOOKS_H

#include "jid.h"
#include "module.h"

enum xmppd_ret { XMPPD_FAIL = -1, XMPPD_PASS = 0, XMPPD_HANDLED = 1 };

enum {
    XMPPD_PRIO_GUARD = 1000,   /* limits, firewalls */
    XMPPD_PRIO_FILTER = 500,   /* blocking, privacy */
    XMPPD_PRIO_DEFAULT = 0,
    XMPPD_PRIO_FALLBACK = -100 /* offline storage and other last resorts */
};

typedef struct xmppd_event {
    const char *name;        /* the event fired */
    xmppd_host *host;        /* host the event happens on (NULL: server-wide) */
    xmppd_session *session;  /* origin session of a stanza, or the session the
                                event is about; NULL when server-generated */
    xmppd_stanza *stanza;    /* borrowed; xmppd_stanza_ref() to keep */
    const xmppd_jid *from;   /* stanza's from (stamped), borrowed, may be NULL */
    const xmppd_jid *to;     /* stanza's to, borrowed; NULL: addressed to the
                                sender's own account (RFC 6120 §10.3) */
    void *data;              /* event-specific payload, documented per event */
} xmppd_event;

typedef int (*xmppd_handler)(xmppd_event *ev, void *ud);

/* Registers fn for event on m's host (every host for a global module).
 * 0, or -1 on OOM. Released automatically when m unloads. */
int xmppd_hook(xmppd_module *m, const char *event, xmppd_handler fn, int prio, void *ud);

/* Runs the handlers of ev->name on ev->host until one returns HANDLED or
 * FAIL, and returns that; XMPPD_PASS when every handler passed. */
int xmppd_fire(xmppd_event *ev);
/* Runs every handler whatever they return; returns XMPPD_PASS. */
void xmppd_fire_all(xmppd_event *ev);
/* Convenience: fire_all a stanza-less event about a session or user. */
void xmppd_notify(xmppd_host *h, const char *event, xmppd_session *s, void *data);

/* IQ handlers: one owner per (type, xmlns of the IQ's child, target).
 * targets is a mask of the XMPPD_IQ_* below. A second owner of the same key
 * on the same host makes xmppd_iq_handle fail (-1), which fails the load.
 * For an IQ addressed to an account's bare JID, or with no 'to', the handler
 * runs on behalf of that account; ev->to is NULL when no 'to' was given.
 * The handler must send exactly one reply (xmppd_reply / xmppd_reply_error)
 * for type get/set, now or later (keep a ref to ev->stanza and ev->session
 * through xmppd_session_ref for later). */
enum { XMPPD_IQ_HOST = 1, XMPPD_IQ_BARE = 2 };
int xmppd_iq_handle(xmppd_module *m, const char *type, const char *xmlns,
                    unsigned targets, xmppd_handler fn, void *ud);

/* Replies to the stanza of ev (routing the reply). reply is consumed. */
int xmppd_reply(xmppd_event *ev, xmppd_stanza *reply);
/* Replies with a stanza error (type NULL: the condition's default) and
 * returns XMPPD_HANDLED, so a handler can `return xmppd_reply_error(...)`. */
int xmppd_reply_error(xmppd_event *ev, const char *type, const char *condition, const char *text);

/* Disco (XEP-0030) registrations on m's host; released on unload. */
int xmppd_disco_feature(xmppd_module *m, const char *var);
int xmppd_disco_identity(xmppd_module *m, const char *category, const char *type, const char *name);
/* Calls fn for each feature/identity registered on h (in registration order). */
void xmppd_disco_foreach_feature(xmppd_host *h, void (*fn)(const char *var, void *ud), void *ud);
void xmppd_disco_foreach_identity(xmppd_host *h,
    void (*fn)(const char *category, const char *type, const char *name, void *ud), void *ud);

#endif
