/* Stanzas a hook holds and lets go on later (api/xmppd/router.h
 * xmppd_hold). A module that must load something before it can judge a
 * stanza (privacy lists, archiving preferences, a roster) takes it out of
 * routing; when it lets it go, routing resumes right after that module's
 * handler: the handlers before it are not run twice, and two modules
 * holding the same stanza cannot send it round in a loop.
 *
 * Resuming enters the router where the held event was fired, with a
 * resume place the hook table consumes at the first fire of that event
 * for that stanza (core/hooks.c). */
#include <stdlib.h>
#include <string.h>

#include "session/session.h"

enum entry { E_PRE_ROUTE, E_ROUTE, E_DELIVER };

struct xmppd_held {
    xmppd_event ev;      /* as held; name, from, to, session owned below */
    hooks_place place;
    enum entry entry;
    char *name;
    xmppd_jid *from, *to;
};

/* Where an event is fired from, so it can be entered again: the router's
 * first event for a stanza of each kind of address, a client's
 * "pre-route", and "deliver". Others cannot be held. */
static bool entry_of(const char *name, enum entry *e)
{
    static const char *const routed[] = { "message/host", "message/bare", "message/full",
                                          "presence/host", "presence/bare", "presence/full",
                                          "iq/bare/filter", "iq/full", "route/remote" };
    if (strcmp(name, "pre-route") == 0) {
        *e = E_PRE_ROUTE;
        return true;
    }
    if (strcmp(name, "deliver") == 0) {
        *e = E_DELIVER;
        return true;
    }
    for (size_t i = 0; i < sizeof(routed) / sizeof(*routed); i++)
        if (strcmp(name, routed[i]) == 0) {
            *e = E_ROUTE;
            return true;
        }
    return false;
}

static xmppd_jid *jid_copy(const xmppd_jid *j, bool *oom)
{
    xmppd_jid *c = j ? xmppd_jid_parse(j->full) : NULL;
    if (j && !c)
        *oom = true;
    return c;
}

XMPPD_EXPORT xmppd_held *xmppd_hold(const xmppd_event *ev)
{
    enum entry entry;
    hooks_place place;
    if (!ev || !ev->name || !ev->stanza || !entry_of(ev->name, &entry) ||
        !hooks_running_place(ev, &place))
        return NULL;
    xmppd_session *s = entry == E_DELIVER ? ev->data : ev->session;
    if ((entry != E_ROUTE && !s) || (entry == E_ROUTE && !ev->to))
        return NULL;
    xmppd_held *h = calloc(1, sizeof(*h));
    bool oom = !h;
    if (h) {
        h->name = strdup(ev->name);
        h->from = jid_copy(ev->from, &oom);
        h->to = jid_copy(ev->to, &oom);
        oom = oom || !h->name;
    }
    if (oom) {
        if (h) {
            free(h->name);
            xmppd_jid_free(h->from);
            xmppd_jid_free(h->to);
        }
        free(h);
        return NULL;
    }
    h->place = place;
    h->entry = entry;
    h->ev = (xmppd_event){ .name = h->name, .host = ev->host, .stanza = xmppd_stanza_ref(ev->stanza),
                           .session = entry == E_DELIVER ? s : ev->session, .from = h->from, .to = h->to,
                           .data = entry == E_DELIVER ? s : NULL };
    if (h->ev.session)
        xmppd_session_ref(h->ev.session);
    return h;
}

XMPPD_EXPORT const xmppd_event *xmppd_held_event(const xmppd_held *h)
{
    return &h->ev;
}

XMPPD_EXPORT void xmppd_held_free(xmppd_held *h)
{
    if (!h)
        return;
    xmppd_stanza_unref(h->ev.stanza);
    if (h->ev.session)
        xmppd_session_unref(h->ev.session);
    xmppd_jid_free(h->from);
    xmppd_jid_free(h->to);
    free(h->name);
    free(h);
}

XMPPD_EXPORT void xmppd_held_resume(xmppd_held *h)
{
    if (!h)
        return;
    xmppd_event ev = h->ev;
    hooks_resume_from(ev.stanza, &h->place);
    switch (h->entry) {
    case E_PRE_ROUTE:
        /* A client that left meanwhile still sent what is addressed; what
         * concerned its own session (presence, IQ without 'to') is moot. */
        if (ev.to || !xmppd_session_closed(ev.session))
            router_pre_route(&ev);
        break;
    case E_ROUTE:
        xmppd_route(ev.host, ev.stanza);
        break;
    case E_DELIVER:
        xmppd_session_send(ev.session, ev.stanza);
        break;
    }
    hooks_resume_from(NULL, NULL);
    xmppd_held_free(h);
}
