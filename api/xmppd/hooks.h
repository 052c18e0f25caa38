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

/* What a handler returns (see above). */
enum xmppd_ret { XMPPD_FAIL = -1, XMPPD_PASS = 0, XMPPD_HANDLED = 1 };

/* Priority bands (any int works; these keep modules apart predictably). */
enum {
    XMPPD_PRIO_GUARD = 1000,   /* limits, firewalls */
    XMPPD_PRIO_FILTER = 500,   /* blocking, privacy */
    XMPPD_PRIO_DEFAULT = 0,
    XMPPD_PRIO_FALLBACK = -100 /* offline storage and other last resorts */
};

/* One firing of an event. Everything it points to is borrowed for the
 * handler call; the struct itself is the firer's (often on its stack). */
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

/* A hook or IQ handler: ud is what was given at registration. */
typedef int (*xmppd_handler)(xmppd_event *ev, void *ud);

/* Registers fn for event on m's host (every host for a global module),
 * from load() on (also from inside a handler: the new hook runs from the
 * next firing on). The event name is copied; any name works, including
 * events no one fires yet. 0, or -1 on OOM, NULL arguments or when m is
 * unloading. Released automatically when m unloads. m NULL: a kernel hook. */
int xmppd_hook(xmppd_module *m, const char *event, xmppd_handler fn, int prio, void *ud);

/* Runs the handlers of ev->name on ev->host (and the global modules')
 * until one returns HANDLED or FAIL, and returns that; XMPPD_PASS when
 * every handler passed or none exists. ev is the caller's; handlers may
 * register or release hooks meanwhile. A FAIL is logged with the module. */
int xmppd_fire(xmppd_event *ev);
/* Runs every handler whatever they return (FAILs are logged). */
void xmppd_fire_all(xmppd_event *ev);
/* Convenience: fire_all a stanza-less event (name event) on host h (NULL:
 * server-wide) about session s (may be NULL) with data. */
void xmppd_notify(xmppd_host *h, const char *event, xmppd_session *s, void *data);

/* Declares an event m fires itself, so `xmppctl hooks` lists it with its
 * stop semantics (XMPPD_EVENT_FIRST: fired with xmppd_fire, stops at the
 * first HANDLED; XMPPD_EVENT_ALL: xmppd_fire_all / xmppd_notify) and a
 * one-line description of what the event carries (copied). Call it from
 * load(); released when m unloads. 0, or -1 on bad arguments or OOM.
 * Declaring is documentation: firing works without it. */
enum { XMPPD_EVENT_FIRST = 0, XMPPD_EVENT_ALL = 1 };
int xmppd_event_declare(xmppd_module *m, const char *event, int stop, const char *payload);

/* IQ handlers: one owner per (type, xmlns of the IQ's child, target).
 * targets is a mask of the XMPPD_IQ_* below. A second owner of the same key
 * on the same host makes xmppd_iq_handle fail (-1), which fails the load.
 * For an IQ addressed to an account's bare JID, or with no 'to', the handler
 * runs on behalf of that account; ev->to is NULL when no 'to' was given.
 * The handler must send exactly one reply (xmppd_reply / xmppd_reply_error)
 * for type get/set, now or later (to answer later, after storage or auth
 * work, keep the request with xmppd_pending_new below). */
enum { XMPPD_IQ_HOST = 1, XMPPD_IQ_BARE = 2 };
int xmppd_iq_handle(xmppd_module *m, const char *type, const char *xmlns,
                    unsigned targets, xmppd_handler fn, void *ud);

/* Replies to the stanza of ev: to the sender's session when it is a local
 * client, else routed; a missing 'to' becomes ev->from, a missing 'from'
 * the address asked (ev->to) or the host. reply is consumed (its reference
 * is dropped) in every case. 0 sent, -1 when it could not be (the sender's
 * session closed meanwhile, or no valid address). */
int xmppd_reply(xmppd_event *ev, xmppd_stanza *reply);
/* Replies with a stanza error (RFC 6120 §8.3; type NULL: the condition's
 * default type; text may be NULL) and returns XMPPD_HANDLED, so a handler
 * can `return xmppd_reply_error(...)`. Errors and IQ results are never
 * answered (nothing is sent for them). condition and text are copied. */
int xmppd_reply_error(xmppd_event *ev, const char *type, const char *condition, const char *text);

/* A request answered later: what xmppd_reply needs, kept past the handler
 * call (the event itself lives only during it). Loop thread only.
 *
 * xmppd_pending_new keeps ev's stanza and session (references), copies of
 * its from and to JIDs and of its name, and its host; ev->data is not kept
 * (NULL in the kept event). ev is only read. Call it from the handler, then
 * return XMPPD_HANDLED and answer through the xmppd_pending_* calls below
 * from a callback. NULL on OOM or when ev or ev->stanza is NULL (nothing is
 * kept: the handler typically returns XMPPD_FAIL).
 *
 * The caller owns p until exactly one of xmppd_pending_reply,
 * xmppd_pending_error or xmppd_pending_drop, each of which frees it (p is
 * invalid afterwards; NULL p is a no-op that returns -1, consuming reply).
 * A reply to a session that closed meanwhile is dropped silently (the kept
 * session reference makes that safe); the host must still be served, as
 * for any pointer a module keeps. */
typedef struct xmppd_pending xmppd_pending;
xmppd_pending *xmppd_pending_new(const xmppd_event *ev);
/* The event as it was when kept, with the stanza, session and JIDs borrowed
 * from p: valid until p is answered or dropped. */
const xmppd_event *xmppd_pending_event(const xmppd_pending *p);
/* xmppd_reply on the kept event (reply consumed; NULL, a reply that could
 * not be built, answers internal-server-error instead), then frees p.
 * 0 sent, -1 when it could not be (session closed, no valid address). */
int xmppd_pending_reply(xmppd_pending *p, xmppd_stanza *reply);
/* xmppd_reply_error on the kept event, then frees p; returns XMPPD_HANDLED
 * (-1 for a NULL p). Nothing is sent to a session that closed meanwhile. */
int xmppd_pending_error(xmppd_pending *p, const char *type, const char *condition, const char *text);
/* Frees p without answering (module unloading, or an answer sent by other
 * means, e.g. on the stream before authentication). */
void xmppd_pending_drop(xmppd_pending *p);

/* Disco (XEP-0030) registrations on m's host (global modules: every host),
 * from load() on; strings are copied; released on unload. mod_disco lists
 * them in the host's disco#info, in registration order, without duplicates.
 * 0, or -1 on OOM or when m is unloading. name may be NULL. */
int xmppd_disco_feature(xmppd_module *m, const char *var);
int xmppd_disco_identity(xmppd_module *m, const char *category, const char *type, const char *name);
/* Calls fn for each feature/identity registered on h or by global modules
 * (in registration order, duplicates once). Strings are borrowed for the
 * call. h NULL: the global ones only. */
void xmppd_disco_foreach_feature(xmppd_host *h, void (*fn)(const char *var, void *ud), void *ud);
void xmppd_disco_foreach_identity(xmppd_host *h,
    void (*fn)(const char *category, const char *type, const char *name, void *ud), void *ud);

#endif
