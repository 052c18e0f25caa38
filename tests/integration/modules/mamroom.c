/* A test module that uses mod_mam's engine (modules/mam/mam_api.h) the
 * way a group chat module does: room@HOST stands for a room whose archive
 * lives in this module's own store. A groupchat message to it is
 * archived and stamped through the API, then reflected to its sender
 * (from room@HOST/nick, as a room would); MAM IQs to it are answered by
 * the API on this module's store. Built by tests/integration/test_mam.py. */
#include <string.h>

#include <xmppd/xmppd.h>

#include "mam_api.h"

typedef struct room {
    xmppd_store *store;
    char jid[320];
} room;

static room g_room;

static const mam_api *api(const xmppd_event *ev)
{
    const mam_api *a = xmppd_use(ev->host, "mam");
    return a && a->version == MAM_API_VERSION && a->size >= sizeof(mam_api) ? a : NULL;
}

static bool for_room(const xmppd_event *ev)
{
    return ev->to && ev->to->node && strcmp(ev->to->node, "room") == 0;
}

static int on_message(xmppd_event *ev, void *ud)
{
    room *r = ud;
    const mam_api *a = api(ev);
    if (!for_room(ev) || !a)
        return XMPPD_PASS;
    xmppd_stanza *m = xmppd_stanza_copy(ev->stanza);
    char from[400];
    snprintf(from, sizeof from, "%s/%s", r->jid, ev->from->node ? ev->from->node : "anon");
    xmppd_stanza_set_attr(m, "from", from);
    xmppd_stanza_set_attr(m, "to", NULL);
    mam_archive ar = { r->store, "room", r->jid };
    if (a->archive(a, &ar, m, ev->from->bare) == 0) {
        xmppd_stanza_set_attr(m, "to", ev->from->full);
        xmppd_route(ev->host, m);
    }
    xmppd_stanza_unref(m);
    return XMPPD_HANDLED;
}

static int on_iq(xmppd_event *ev, void *ud)
{
    room *r = ud;
    const mam_api *a = api(ev);
    if (!for_room(ev) || !a)
        return XMPPD_PASS;
    mam_archive ar = { r->store, "room", r->jid };
    if (a->handle_iq(a, ev, &ar) == XMPPD_PASS)
        return xmppd_reply_error(ev, NULL, "service-unavailable", NULL);
    return XMPPD_HANDLED;
}

static int load(xmppd_module *m, const void *conf)
{
    (void)conf;
    snprintf(g_room.jid, sizeof g_room.jid, "room@%s", xmppd_host_name(xmppd_module_host(m)));
    if (!(g_room.store = xmppd_store_open(m, "mamroom", XMPPD_STORE_ARCHIVE)))
        return xmppd_module_refuse(m, "no storage");
    if (xmppd_hook(m, "message/bare", on_message, XMPPD_PRIO_FILTER + 100, &g_room) < 0 ||
        xmppd_hook(m, "iq/bare/filter", on_iq, XMPPD_PRIO_FILTER + 100, &g_room) < 0)
        return xmppd_module_refuse(m, "cannot hook");
    return 0;
}

XMPPD_MODULE(mamroom, .version = "1.0", .summary = "test: a room archive through mod_mam's API",
             .depends = (const char *const[]){ "mam", NULL }, .load = load);
