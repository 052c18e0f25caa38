/* mod_muc_mam: XEP-0313 on group chat rooms. mod_muc keeps each room's
 * archive ("muc_archive", user = the room's bare JID, the layout mod_mam's
 * engine reads); this module answers MAM queries to room JIDs with that
 * engine (modules/mam/mam_api.h) and advertises the feature on rooms that
 * archive. Who may read a room's history is the room's answer
 * (modules/muc/muc_api.h): not its outcasts, only members of a
 * members-only room, only occupants (or members) of a password-protected
 * one. In a room that hides real JIDs, filtering by sender ('with') would
 * tell who wrote what, so only those who may see real JIDs may use it.
 *
 * It opens the room archive store itself, so its queries are its own
 * asynchronous work (cancelled when it unloads), and it depends on both
 * modules, so it unloads before either. */
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "../mam/mam_api.h"
#include "../muc/muc_api.h"

#define NS_MAM "urn:xmpp:mam:2"
#define NS_MAM_EXTENDED "urn:xmpp:mam:2#extended"

typedef struct mm_mod {
    xmppd_module *m;
    xmppd_store *archive;
} mm_mod;

static const muc_api *muc_of(xmppd_host *h)
{
    const muc_api *a = xmppd_use(h, "muc");
    return a && a->version == MUC_API_VERSION && a->size >= sizeof(muc_api) ? a : NULL;
}

static const mam_api *mam_of(xmppd_host *h)
{
    const mam_api *a = xmppd_use(h, "mam");
    return a && a->version == MAM_API_VERSION && a->size >= sizeof(mam_api) ? a : NULL;
}

/* Does a MAM query ask for one sender's messages? */
static bool filters_by_sender(const xmppd_stanza *query)
{
    xmppd_stanza *x = xmppd_stanza_child(query, "x", XMPPD_NS_DATA);
    xmppd_form *f = x ? xmppd_form_parse(x, NULL) : NULL;
    const char *with = f ? xmppd_form_value(f, "with") : NULL;
    bool by_sender = with && *with;
    xmppd_form_free(f);
    return by_sender;
}

static int on_room_iq(xmppd_event *ev, void *ud)
{
    mm_mod *mod = ud;
    xmppd_stanza *c = xmppd_stanza_first(ev->stanza);
    if (!c || !ev->to || !ev->from || strcmp(xmppd_stanza_ns(c), NS_MAM) != 0)
        return XMPPD_PASS;
    const muc_api *muc = muc_of(ev->host);
    const mam_api *mam = mam_of(ev->host);
    if (!muc || !mam)
        return XMPPD_PASS;
    muc_history_access acc = muc->history_access(muc, ev->to, ev->from);
    if (!acc.exists)
        return xmppd_reply_error(ev, "cancel", "item-not-found", NULL);
    if (!acc.archiving)
        return XMPPD_PASS; /* not advertised: service-unavailable */
    if (!acc.allowed)
        return xmppd_reply_error(ev, "auth", "forbidden", "Only members may read this room's history");
    if (!acc.sees_jids && strcmp(xmppd_stanza_name(c), "query") == 0 && filters_by_sender(c))
        return xmppd_reply_error(ev, "modify", "not-acceptable",
                                 "This room does not reveal who sent what: no 'with' filter");
    mam_archive a = { mod->archive, ev->to->bare, ev->to->bare };
    if (mam->handle_iq(mam, ev, &a) == XMPPD_PASS)
        return xmppd_reply_error(ev, "modify", "bad-request", NULL);
    return XMPPD_HANDLED;
}

static int on_room_info(xmppd_event *ev, void *ud)
{
    (void)ud;
    xmppd_stanza *q = ev->data;
    const muc_api *muc = muc_of(ev->host);
    if (!q || !ev->to || !ev->from || !muc || !mam_of(ev->host))
        return XMPPD_PASS;
    if (!muc->history_access(muc, ev->to, ev->from).archiving)
        return XMPPD_PASS;
    static const char *const features[] = { NS_MAM, NS_MAM_EXTENDED };
    for (size_t i = 0; i < sizeof(features) / sizeof(*features); i++) {
        xmppd_stanza *f = xmppd_stanza_tag(q, "feature", NULL);
        if (f)
            xmppd_stanza_set_attr(f, "var", features[i]);
    }
    return XMPPD_PASS;
}

static int mm_load(xmppd_module *m, const void *conf)
{
    (void)conf;
    if (!xmppd_module_host(m))
        return xmppd_module_refuse(m, "mod_muc_mam goes with mod_muc on a host");
    mm_mod *mod = calloc(1, sizeof(*mod));
    if (!mod)
        return xmppd_module_refuse(m, "out of memory");
    mod->m = m;
    xmppd_module_set_data(m, mod);
    if (!(mod->archive = xmppd_store_open(m, "muc_archive", XMPPD_STORE_ARCHIVE)))
        return xmppd_module_refuse(m, "no storage driver is loaded");
    if (xmppd_hook(m, "muc/room-iq", on_room_iq, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "muc/room-info", on_room_info, XMPPD_PRIO_DEFAULT, mod) < 0)
        return xmppd_module_refuse(m, "out of memory");
    return 0;
}

static void mm_unload(xmppd_module *m)
{
    free(xmppd_module_data(m));
    xmppd_module_set_data(m, NULL);
}

XMPPD_MODULE(muc_mam,
    .version = "1.0",
    .summary = "Message archive queries on group chat rooms (XEP-0313 for XEP-0045 rooms)",
    .depends = (const char *const[]){ "muc", "mam", NULL },
    .specs = (const char *const[]){ "XEP-0313", NULL },
    .load = mm_load,
    .unload = mm_unload);
