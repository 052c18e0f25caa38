/* Group chat rooms in the file. XEP-0227 has no rooms (XEP-0519, for
 * components, is a draft), and its schema lets a <host/> carry elements of
 * other namespaces: a persistent room of mod_muc goes there as
 *
 *   <room xmlns='urn:xmppd:pie:muc:0' jid='room@conference.example.org'>
 *     <state>{the muc_rooms value, JSON}</state>
 *     <archive xmlns='urn:xmpp:pie:0#mam'>results, as an account's</archive>
 *   </room>
 *
 * which only xmppd reads back; other servers skip it. The stores are
 * mod_muc's (modules/muc/README.md "Storage"): keyval muc_rooms and archive
 * muc_archive, both keyed by the room's bare JID. mod_muc keeps the rooms
 * of a running service in memory, so rooms are imported only into a
 * stopped server's data (xmppctl then runs the modules itself). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../mam/mam_time.h"
#include "pie.h"

/* ---- export ------------------------------------------------------------------------ */

typedef struct rx_job {
    pie_batch *b;
    size_t i;
    char *jid;
    int pending;
    const char *error;
    json_t *state, *items;
} rx_job;

static void rx_done(rx_job *j)
{
    if (--j->pending > 0)
        return;
    json_t *slot = NULL;
    xmppd_stanza *room = j->error || !j->state ? NULL : xmppd_stanza_new("room", PIE_NS_MUC);
    if (room) {
        xmppd_stanza_set_attr(room, "jid", j->jid);
        char *state = json_dumps(j->state, JSON_COMPACT | JSON_SORT_KEYS);
        xmppd_stanza *s = state ? xmppd_stanza_tag(room, "state", NULL) : NULL;
        if (s)
            xmppd_stanza_add_text(s, state, strlen(state));
        free(state);
        xmppd_stanza *arch = json_array_size(j->items) ? xmppd_stanza_tag(room, "archive", PIE_NS_MAM)
                                                       : NULL;
        size_t k;
        json_t *it;
        json_array_foreach(j->items, k, it) {
            xmppd_stanza *r = arch ? xmppd_stanza_tag(arch, "result", PIE_NS_MAM2) : NULL;
            xmppd_stanza *fw = r ? xmppd_stanza_tag(r, "forwarded", PIE_NS_FORWARD) : NULL;
            xmppd_stanza *d = fw ? xmppd_stanza_tag(fw, "delay", PIE_NS_DELAY) : NULL;
            const char *xml = json_string_value(json_object_get(it, "xml"));
            xmppd_stanza *msg = xml ? xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT) : NULL;
            if (!d || !msg) {
                xmppd_stanza_unref(msg);
                continue;
            }
            xmppd_stanza_set_attr(r, "id", json_string_value(json_object_get(it, "id")));
            char stamp[MAM_TIME_LEN];
            mam_time_format(json_integer_value(json_object_get(it, "when")), stamp, sizeof(stamp));
            xmppd_stanza_set_attr(d, "stamp", stamp);
            const char *with = json_string_value(json_object_get(it, "with"));
            if (with) /* the occupant's real JID the archive keeps */
                xmppd_stanza_set_attr(r, "with", with);
            xmppd_stanza_add(fw, msg);
        }
        char *xml = xmppd_stanza_to_string(room, PIE_NS, NULL);
        xmppd_stanza_unref(room);
        if (xml)
            slot = json_pack("{s:s, s:s}", "jid", j->jid, "xml", xml);
        free(xml);
    }
    if (!slot)
        slot = json_pack("{s:s, s:s}", "jid", j->jid, "error",
                         j->error ? j->error : !j->state ? "no such room" : "out of memory");
    json_array_set_new(j->b->results, j->i, slot);
    pie_batch_done(j->b);
    json_decref(j->state);
    json_decref(j->items);
    free(j->jid);
    free(j);
}

static void on_room_state(int status, json_t *value, void *ud)
{
    rx_job *j = ud;
    if (status == XMPPD_STORE_OK)
        j->state = json_incref(value);
    else if (status != XMPPD_STORE_NOT_FOUND)
        j->error = status == XMPPD_STORE_CANCELLED ? "cancelled" : "storage error";
    rx_done(j);
}

static void on_room_items(int status, const xmppd_archive_item *items, size_t n, bool complete,
                          void *ud)
{
    rx_job *j = ud;
    if (status == XMPPD_STORE_OK || status == XMPPD_STORE_NOT_FOUND)
        j->items = pie_items_json(items, status == XMPPD_STORE_OK ? n : 0);
    else
        j->error = status == XMPPD_STORE_CANCELLED ? "cancelled" : "storage error";
    rx_done(j);
}

void pie_export_room(pie_mod *mod, pie_batch *b, size_t i, const char *jid)
{
    rx_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->jid = strdup(jid))) {
        free(j);
        json_array_set_new(b->results, i, json_pack("{s:s, s:s}", "jid", jid, "error",
                                                    "out of memory"));
        pie_batch_done(b);
        return;
    }
    j->b = b;
    j->i = i;
    j->pending = 2;
    xmppd_kv_get(mod->rooms, jid, "", on_room_state, j);
    xmppd_archive_query(mod->room_archive, jid, NULL, on_room_items, j);
}

/* ---- import ------------------------------------------------------------------------ */

typedef struct ri_job {
    pie_mod *mod;
    pie_batch *b;
    size_t i;
    char *jid;
    json_t *state;
    json_t *items;              /* [{id, with, when, xml}] */
    json_t *skipped;
    int pending;
    int phase;                  /* 0 exists?, 1 clear, 2 write, 3 rollback */
    char error[200];
    const char *status;
} ri_job;

static void ri_finish(ri_job *j)
{
    json_t *r = json_pack("{s:s, s:s, s:s?, s:{s:I}, s:O}", "room", j->jid, "status", j->status,
                          "reason", j->error[0] ? j->error : NULL, "counts", "archive",
                          (json_int_t)(strcmp(j->status, "imported") == 0 ? json_array_size(j->items) : 0),
                          "skipped", j->skipped);
    json_array_set_new(j->b->results, j->i, r);
    pie_batch_done(j->b);
    json_decref(j->state);
    json_decref(j->items);
    json_decref(j->skipped);
    free(j->jid);
    free(j);
}

static void ri_next(ri_job *j);

static void ri_step(ri_job *j)
{
    if (--j->pending == 0)
        ri_next(j);
}

static void ri_written(int status, void *ud)
{
    ri_job *j = ud;
    if (status != XMPPD_STORE_OK && !j->error[0])
        snprintf(j->error, sizeof(j->error), "writing: %s",
                 status == XMPPD_STORE_CANCELLED ? "cancelled" : "storage error");
    ri_step(j);
}

static void ri_appended(int status, const char *id, void *ud)
{
    ri_written(status, ud);
}

static void ri_exists(int status, json_t *value, void *ud)
{
    ri_job *j = ud;
    if (status == XMPPD_STORE_OK) {
        j->status = "skipped";
        snprintf(j->error, sizeof(j->error), "the room exists already");
    } else if (status != XMPPD_STORE_NOT_FOUND) {
        snprintf(j->error, sizeof(j->error), "checking the room: storage error");
    }
    ri_step(j);
}

static void ri_next(ri_job *j)
{
    pie_mod *mod = j->mod;
    switch (j->phase++) {
    case 0:
        if (j->error[0]) {
            if (!j->status)
                j->status = "failed";
            ri_finish(j);
            return;
        }
        j->pending = 1;
        xmppd_archive_delete(mod->room_archive, j->jid, NULL, ri_written, j);
        return;
    case 1: {
        if (j->error[0]) {
            j->status = "failed";
            ri_finish(j);
            return;
        }
        /* the archive first, the room's state (the commit) last */
        j->pending = 1;
        size_t k;
        json_t *v;
        json_array_foreach(j->items, k, v) {
            j->pending++;
            xmppd_archive_append_id(mod->room_archive, j->jid,
                                    json_string_value(json_object_get(v, "id")),
                                    json_string_value(json_object_get(v, "with")),
                                    json_integer_value(json_object_get(v, "when")),
                                    json_object_get(v, "xml"), ri_appended, j);
        }
        ri_step(j);
        return;
    }
    case 2:
        if (j->error[0]) {
            j->phase = 4;
            j->pending = 1;
            xmppd_archive_delete(mod->room_archive, j->jid, NULL, ri_written, j);
            return;
        }
        j->pending = 1;
        xmppd_kv_set(mod->rooms, j->jid, "", j->state, ri_written, j);
        return;
    case 3:
        if (j->error[0]) {
            j->phase = 4;
            j->pending = 1;
            xmppd_archive_delete(mod->room_archive, j->jid, NULL, ri_written, j);
            return;
        }
        j->status = "imported";
        ri_finish(j);
        return;
    default:
        j->status = "failed";
        ri_finish(j);
        return;
    }
}

void pie_import_room(pie_mod *mod, pie_batch *b, size_t i, xmppd_stanza *el)
{
    ri_job *j = calloc(1, sizeof(*j));
    const char *jid_s = xmppd_stanza_attr(el, "jid");
    xmppd_jid *jid = jid_s ? xmppd_jid_parse(jid_s) : NULL;
    if (!j || !(j->skipped = json_array()) || !(j->items = json_array())) {
        if (j) {
            json_decref(j->skipped);
            free(j);
        }
        xmppd_jid_free(jid);
        xmppd_stanza_unref(el);
        json_array_set_new(b->results, i, json_pack("{s:s, s:s}", "status", "failed", "reason",
                                                    "out of memory"));
        pie_batch_done(b);
        return;
    }
    j->mod = mod;
    j->b = b;
    j->i = i;
    j->jid = strdup(jid && jid->node && !jid->resource ? jid->bare : jid_s ? jid_s : "?");
    const char *text = xmppd_stanza_child_text(el, "state", NULL);
    json_error_t je;
    j->state = text ? json_loads(text, 0, &je) : NULL;
    xmppd_stanza *arch = xmppd_stanza_child(el, "archive", PIE_NS_MAM);
    for (xmppd_stanza *r = arch ? xmppd_stanza_first(arch) : NULL; r; r = xmppd_stanza_next(r)) {
        xmppd_stanza *fw = xmppd_stanza_child(r, "forwarded", PIE_NS_FORWARD);
        xmppd_stanza *msg = fw ? xmppd_stanza_child(fw, "message", XMPPD_NS_CLIENT) : NULL;
        xmppd_stanza *d = fw ? xmppd_stanza_child(fw, "delay", PIE_NS_DELAY) : NULL;
        const char *id = xmppd_stanza_attr(r, "id");
        int64_t when;
        if (!msg || !id || strlen(id) > XMPPD_ARCHIVE_ID_MAX || !d ||
            mam_time_parse(xmppd_stanza_attr(d, "stamp"), &when) != 0) {
            json_array_append_new(j->skipped, json_sprintf("room message %s (malformed)",
                                                           id ? id : "without id"));
            continue;
        }
        char *xml = xmppd_stanza_to_string(msg, XMPPD_NS_CLIENT, NULL);
        if (xml)
            json_array_append_new(j->items, json_pack("{s:s, s:s?, s:I, s:s}", "id", id, "with",
                                                      xmppd_stanza_attr(r, "with"), "when",
                                                      (json_int_t)when, "xml", xml));
        free(xml);
    }
    xmppd_stanza_unref(el);
    if (!jid || !jid->node || jid->resource || !j->state || !json_is_object(j->state)) {
        snprintf(j->error, sizeof(j->error), "not a room: a bare room JID and its <state/> are needed");
        j->status = "failed";
    }
    xmppd_jid_free(jid);
    if (j->status) {
        ri_finish(j);
        return;
    }
    j->pending = 1;
    xmppd_kv_get(mod->rooms, j->jid, "", ri_exists, j);
}
