/* mod_xep0227: accounts and their data in the XEP-0227 portable format
 * (urn:xmpp:pie:0), for `xmppctl export` and `xmppctl import`, and every
 * migration from or to another server.
 *
 * The module reads and writes the stores of the modules whose data it
 * moves, in their documented layouts (each module's README): roster,
 * vcard, private, offline, mam, pep (modules/pubsub/ps_store.c). It serves
 * three control commands (api/xmppd/ctl.h) that xmppctl drives in batches:
 *
 *   xep0227-users HOST            {"users": [localpart, ...]}
 *   xep0227-export HOST USER...   {"users": [{"user", "xml"} | {"user", "error"}]}
 *   xep0227-import HOST XML...    {"results": [{"user", "status", "reason", "counts",
 *                                               "skipped"}]}
 *   xep0227-rooms HOST, xep0227-export-rooms HOST JID..., xep0227-import-rooms
 *   HOST XML...                   the same for group chat rooms (rooms.c); rooms
 *                                 go into a stopped server's data only
 *
 * where each XML is one <user/> element. The first instance registers the
 * commands; a request finds the instance of the host it names through the
 * API "xep0227" (this header's pie_mod, first member api). */
#ifndef XMPPD_PIE_H
#define XMPPD_PIE_H

#include <jansson.h>
#include <stdbool.h>

#include <xmppd/xmppd.h>

#define PIE_NS "urn:xmpp:pie:0"
#define PIE_NS_OLD "http://www.xmpp.org/extensions/xep-0227.html#ns"
#define PIE_NS_SCRAM "urn:xmpp:pie:0#scram"
#define PIE_NS_MAM "urn:xmpp:pie:0#mam"
#define PIE_NS_ROSTER "jabber:iq:roster"
#define PIE_NS_PRIVATE "jabber:iq:private"
#define PIE_NS_VCARD "vcard-temp"
#define PIE_NS_MAM2 "urn:xmpp:mam:2"
#define PIE_NS_FORWARD "urn:xmpp:forward:0"
#define PIE_NS_DELAY "urn:xmpp:delay"
#define PIE_NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define PIE_NS_PUBSUB_OWNER "http://jabber.org/protocol/pubsub#owner"
#define PIE_NS_MUC "urn:xmppd:pie:muc:0" /* rooms: an extension of ours (rooms.c) */

#define PIE_API_VERSION 1

typedef struct pie_batch pie_batch;

/* One instance per host; kernel-owned handles. */
typedef struct pie_mod {
    struct { uint32_t version, size; } api; /* published as "xep0227" */
    xmppd_module *m;
    xmppd_host *host;
    xmppd_store *roster, *vcard, *private_xml, *offline, *mam, *pep;
    xmppd_store *rooms, *room_archive; /* mod_muc's */
} pie_mod;

/* A request being answered: the results of its users, in order. req is
 * NULL once the serving instance unloaded (the kernel answered then). */
struct pie_batch {
    pie_batch *next;         /* in the module's list of batches in flight */
    xmppd_ctl_request *req;
    pie_mod *serving;
    json_t *results;         /* array, one slot per user */
    size_t pending;
    const char *key;         /* "users", "rooms" or "results" */
    const char *error;       /* static: answer this failure instead */
};

/* Each job fills its slot of b (index i) and calls pie_batch_done once. */
void pie_batch_done(pie_batch *b);

/* export.c: fills slot i of b with user's element, serialised. */
void pie_export_user(pie_mod *mod, pie_batch *b, size_t i, const char *user);
/* An archive query's items as [{id, when, with, xml}] (a new array). */
json_t *pie_items_json(const xmppd_archive_item *items, size_t n);

/* import.c: imports one <user/> element (a new tree, taken). */
void pie_import_user(pie_mod *mod, pie_batch *b, size_t i, xmppd_stanza *user_el);

/* rooms.c: one room of mod_muc as <room xmlns=PIE_NS_MUC/>, and back
 * (the element taken). */
void pie_export_room(pie_mod *mod, pie_batch *b, size_t i, const char *jid);
void pie_import_room(pie_mod *mod, pie_batch *b, size_t i, xmppd_stanza *room_el);

/* pep.c: the stored PEP service of an account as pubsub and pubsub#owner
 * children of user_el; and from them, the keyval entries to store
 * ({key: value}), with what was left out added to skipped (strings).
 * 0 or -1 (OOM). */
int pie_pep_export(const json_t *all, xmppd_stanza *user_el);
json_t *pie_pep_import(const xmppd_stanza *user_el, json_t *skipped, size_t *items_r);

#endif
