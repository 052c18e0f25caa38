/* Discussion history (XEP-0045 §7.2.13, §7.2.14) from the room archive, and
 * message moderation (XEP-0425) with tombstones in that archive.
 *
 * Each room keeps its last max_history messages in memory (filled from the
 * archive when a persistent room is restored), so a join costs no query and
 * sees exactly what was broadcast before it.
 *
 * An archive item (store "muc_archive", user = the room's bare JID) is laid
 * out as mod_mam's engine reads items (modules/mam/mam_api.h), so XEP-0313
 * on the room can be served from it: the id is the message's stanza-id,
 * 'with' the author's real bare JID (none for the room's own messages) and
 * the value a JSON string, the message as broadcast (from the occupant
 * JID or the room's, no 'to', no stanza-id). What history needs is read
 * back from that XML: the nick from 'from', the occupant id from
 * <occupant-id/>; a message from the room's bare JID is a notice (not
 * history), one with <retracted/> a moderated message's tombstone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "muc.h"
#include "muc_store.h"

/* ud: the service, alive unless the module unloads (CANCELLED). */
static void on_archived(int status, const char *id, void *ud)
{
    muc_service *svc = ud;
    if (status != XMPPD_STORE_OK && status != XMPPD_STORE_CANCELLED)
        xmppd_log(svc->m, XMPPD_LOG_ERROR, "a room message was not archived (status %d): its "
                  "stanza-id %s names no archive item", status, id ? id : "");
}

/* The archive value of msg: its XML as a JSON string; NULL on OOM. */
static json_t *archive_value(const xmppd_stanza *msg)
{
    char *xml = xmppd_stanza_to_string(msg, XMPPD_NS_CLIENT, NULL);
    json_t *v = xml ? json_string(xml) : NULL;
    free(xml);
    return v;
}

void muc_archive_message(muc_room *room, const char *id, int64_t when_ms, const xmppd_stanza *msg,
                         const char *with)
{
    json_t *v = archive_value(msg);
    if (!v) {
        xmppd_log(room->svc->m, XMPPD_LOG_ERROR, "room %s: out of memory, message %s not archived",
                  muc_room_jid(room), id);
        return;
    }
    xmppd_archive_append_id(room->svc->archive, muc_room_jid(room), id, with, when_ms, v,
                            on_archived, room->svc);
    json_decref(v);
}

/* ---- the cache ------------------------------------------------------------------ */

static void hist_entry_clear(muc_hist *h)
{
    free(h->id);
    xmppd_stanza_unref(h->msg);
    free(h->nick);
    free(h->jid);
    free(h->occupant_id);
    memset(h, 0, sizeof(*h));
}

void muc_hist_clear(muc_room *room)
{
    for (size_t i = 0; i < room->hist_len; i++)
        hist_entry_clear(&room->hist[(room->hist_start + i) % room->hist_cap]);
    room->hist_len = room->hist_start = 0;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

void muc_hist_push(muc_room *room, const char *id, int64_t when_ms, xmppd_stanza *msg,
                   const char *nick, const char *jid, const char *occupant_id)
{
    if (room->hist_cap == 0)
        return;
    if (room->hist_len == room->hist_cap) {
        hist_entry_clear(&room->hist[room->hist_start]);
        room->hist_start = (room->hist_start + 1) % room->hist_cap;
        room->hist_len--;
    }
    muc_hist *h = &room->hist[(room->hist_start + room->hist_len) % room->hist_cap];
    *h = (muc_hist){ .id = strdup(id), .when_ms = when_ms, .msg = xmppd_stanza_ref(msg),
                     .nick = dup_or_null(nick), .jid = dup_or_null(jid),
                     .occupant_id = dup_or_null(occupant_id) };
    if (!h->id) {
        hist_entry_clear(h);
        return;
    }
    room->hist_len++;
}

static muc_hist *hist_at(const muc_room *room, size_t i)
{
    return &room->hist[(room->hist_start + i) % room->hist_cap];
}

static muc_hist *hist_find(const muc_room *room, const char *id)
{
    for (size_t i = 0; i < room->hist_len; i++)
        if (strcmp(hist_at(room, i)->id, id) == 0)
            return hist_at(room, i);
    return NULL;
}

/* The message of an archive item, or NULL when unreadable. */
static xmppd_stanza *item_parse(const xmppd_archive_item *it)
{
    const char *xml = json_string_value(it->value);
    return xml ? xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT) : NULL;
}

/* The author's nick of an archived message: the resource of its 'from';
 * NULL for the room's own messages. */
static const char *item_nick(const xmppd_stanza *m)
{
    const char *from = xmppd_stanza_attr(m, "from");
    const char *slash = from ? strchr(from, '/') : NULL;
    return slash ? slash + 1 : NULL;
}

static const char *item_occupant_id(const xmppd_stanza *m)
{
    xmppd_stanza *oid = xmppd_stanza_child(m, "occupant-id", NS_OCCUPANT_ID);
    return oid ? xmppd_stanza_attr(oid, "id") : NULL;
}

/* Discussion history: an occupant's message with a body, or what a
 * moderator left of one. */
static bool item_is_history(const xmppd_stanza *m)
{
    return item_nick(m) && (xmppd_stanza_child(m, "body", NULL) ||
                            xmppd_stanza_child(m, "retracted", NS_RETRACT1));
}

/* ---- loading a restored room's cache ---------------------------------------------- */

typedef struct load_req {
    muc_service *svc;
    char *node;
    uint64_t serial;
    void (*done)(muc_service *svc, void *ud);
    void *ud;
} load_req;

static void on_history(int status, const xmppd_archive_item *items, size_t n, bool complete,
                       void *ud)
{
    load_req *r = ud;
    if (status != XMPPD_STORE_CANCELLED) {
        muc_room *room = muc_room_find(r->svc, r->node);
        if (status != XMPPD_STORE_OK)
            xmppd_log(r->svc->m, XMPPD_LOG_ERROR, "room %s: history not loaded (status %d)",
                      r->node, status);
        for (size_t i = n; room && room->serial == r->serial && i-- > 0;) {
            xmppd_stanza *m = item_parse(&items[i]);
            xmppd_stanza *sid = m && item_is_history(m) ? xmppd_stanza_tag(m, "stanza-id", NS_SID)
                                                        : NULL;
            if (sid) {
                xmppd_stanza_set_attr(sid, "id", items[i].id);
                xmppd_stanza_set_attr(sid, "by", muc_room_jid(room));
                muc_hist_push(room, items[i].id, items[i].when_ms, m, item_nick(m), items[i].with,
                              item_occupant_id(m));
            }
            xmppd_stanza_unref(m);
        }
        r->done(r->svc, r->ud);
    }
    free(r->node);
    free(r);
}

void muc_hist_load(muc_room *room, void (*done)(muc_service *svc, void *ud), void *ud)
{
    load_req *r = calloc(1, sizeof(*r));
    if (!r || !(r->node = strdup(room->node))) {
        free(r);
        done(room->svc, ud);
        return;
    }
    r->svc = room->svc;
    r->serial = room->serial;
    r->done = done;
    r->ud = ud;
    xmppd_archive_filter q = { .max = room->hist_cap, .reverse = true };
    xmppd_archive_query(room->svc->archive, muc_room_jid(room), &q, on_history, r);
}

/* ---- history on joining ------------------------------------------------------------ */

/* A non-negative integer attribute, or -1 when absent or malformed (a bad
 * limit is ignored, as if the client had not asked). */
static long attr_long(const xmppd_stanza *el, const char *name)
{
    const char *v = el ? xmppd_stanza_attr(el, name) : NULL;
    char *end;
    if (!v || !*v || *v == '-')
        return -1;
    long n = strtol(v, &end, 10);
    return *end ? -1 : n;
}

void muc_send_history(muc_room *room, const xmppd_jid *to, const xmppd_stanza *req)
{
    long maxstanzas = room->cfg.max_history_fetch;
    if (maxstanzas > (long)room->hist_len)
        maxstanzas = (long)room->hist_len;
    long asked = attr_long(req, "maxstanzas");
    if (asked >= 0 && asked < maxstanzas)
        maxstanzas = asked;
    long maxchars = attr_long(req, "maxchars");
    int64_t since = 0, t;
    long seconds = attr_long(req, "seconds");
    if (seconds >= 0)
        since = xmppd_wallclock_ms() - (int64_t)seconds * 1000;
    const char *since_s = req ? xmppd_stanza_attr(req, "since") : NULL;
    if (since_s && muc_parse_stamp(since_s, &t) == 0 && t > since)
        since = t;
    if (maxstanzas <= 0 || maxchars == 0)
        return;
    /* §7.2.14: the smallest history that meets every limit, complete
     * stanzas only; counted from the newest back. */
    xmppd_stanza *out[1024];
    size_t n = 0, chars = 0;
    for (size_t i = room->hist_len; i-- > 0 && n < (size_t)maxstanzas && n < 1024;) {
        const muc_hist *h = hist_at(room, i);
        if (h->when_ms < since)
            break;
        xmppd_stanza *m = xmppd_stanza_copy(h->msg);
        xmppd_stanza *d = m ? xmppd_stanza_tag(m, "delay", NS_DELAY) : NULL;
        if (!d) {
            xmppd_stanza_unref(m);
            break;
        }
        char stamp[32];
        muc_stamp(h->when_ms, stamp);
        xmppd_stanza_set_attr(d, "from", muc_room_jid(room));
        xmppd_stanza_set_attr(d, "stamp", stamp);
        xmppd_stanza_set_attr(m, "to", to->full);
        if (maxchars > 0) {
            size_t len;
            char *xml = xmppd_stanza_to_string(m, XMPPD_NS_CLIENT, &len);
            size_t c = xml ? muc_utf8_len(xml) : (size_t)maxchars + 1;
            free(xml);
            if (chars + c > (size_t)maxchars) {
                xmppd_stanza_unref(m);
                break;
            }
            chars += c;
        }
        out[n++] = m;
    }
    while (n-- > 0) {
        xmppd_route(room->svc->host, out[n]);
        xmppd_stanza_unref(out[n]);
    }
}

/* ---- moderation (XEP-0425) ------------------------------------------------------------- */

/* What a moderation needs to know about the message it retracts. */
typedef struct retract_job {
    muc_service *svc;
    char *node;
    uint64_t serial;
    xmppd_pending *p;      /* the moderator's request */
    char *id;              /* stanza-id of the message */
    char *reason;
    char *mod_nick;
    char mod_oid[48];
    char *nick, *jid, *oid; /* the author's */
    int64_t when_ms;
} retract_job;

static void job_free(retract_job *j)
{
    free(j->node);
    free(j->id);
    free(j->reason);
    free(j->mod_nick);
    free(j->nick);
    free(j->jid);
    free(j->oid);
    free(j);
}

/* The job's room after a storage answer with status, held; NULL when the
 * job is over (cancelled: dropped unanswered; the room gone: answered),
 * the job then freed. */
static muc_room *job_room(retract_job *j, int status)
{
    if (status == XMPPD_STORE_CANCELLED) {
        xmppd_pending_drop(j->p);
        job_free(j);
        return NULL;
    }
    muc_room *room = muc_room_find(j->svc, j->node);
    if (room && room->serial == j->serial) {
        muc_room_hold(room);
        return room;
    }
    xmppd_pending_error(j->p, NULL, "item-not-found", "The room is gone");
    job_free(j);
    return NULL;
}

static void add_moderated(xmppd_stanza *parent, const char *ns, const retract_job *j,
                          const char *by)
{
    xmppd_stanza *mod = xmppd_stanza_tag(parent, "moderated", ns);
    if (!mod)
        return;
    xmppd_stanza_set_attr(mod, "by", by);
    if (strcmp(ns, NS_MODERATE1) == 0) {
        xmppd_stanza *oid = xmppd_stanza_tag(mod, "occupant-id", NS_OCCUPANT_ID);
        if (oid)
            xmppd_stanza_set_attr(oid, "id", j->mod_oid);
    } else {
        xmppd_stanza_tag(mod, "retract", NS_RETRACT0);
    }
    if (j->reason) {
        xmppd_stanza *r = xmppd_stanza_tag(strcmp(ns, NS_MODERATE1) == 0 ? parent : mod, "reason",
                                           NULL);
        if (r)
            xmppd_stanza_set_text(r, j->reason);
    }
}

/* XEP-0425 (and 0.2, for clients that speak it): the room tells every
 * occupant which message a moderator retracted. */
static xmppd_stanza *retraction_notice(const muc_room *room, const retract_job *j, const char *by)
{
    xmppd_stanza *m = xmppd_stanza_new("message", NULL);
    xmppd_stanza *r1 = m ? xmppd_stanza_tag(m, "retract", NS_RETRACT1) : NULL;
    xmppd_stanza *apply = m ? xmppd_stanza_tag(m, "apply-to", NS_FASTEN) : NULL;
    xmppd_stanza *body = m ? xmppd_stanza_tag(m, "body", NULL) : NULL;
    xmppd_stanza *fb = m ? xmppd_stanza_tag(m, "fallback", NS_FALLBACK) : NULL;
    if (!r1 || !apply || !body || !fb) {
        xmppd_stanza_unref(m);
        return NULL;
    }
    char id[24];
    muc_random_id(id);
    xmppd_stanza_set_attr(m, "type", "groupchat");
    xmppd_stanza_set_attr(m, "id", id);
    xmppd_stanza_set_attr(m, "from", muc_room_jid(room));
    xmppd_stanza_set_attr(r1, "id", j->id);
    add_moderated(r1, NS_MODERATE1, j, by);
    xmppd_stanza_set_attr(apply, "id", j->id);
    add_moderated(apply, NS_MODERATE0, j, by);
    xmppd_stanza_set_text(body, "A moderator retracted a message.");
    xmppd_stanza_set_attr(fb, "for", NS_RETRACT1);
    xmppd_stanza_tag(m, "store", NS_HINTS);
    return m;
}

/* XEP-0425: what stays of the message, at its place in the archive. */
static xmppd_stanza *tombstone(const muc_room *room, const retract_job *j, const char *by)
{
    char from[3100], stamp[32];
    snprintf(from, sizeof(from), "%s/%s", muc_room_jid(room), j->nick ? j->nick : "");
    muc_stamp(xmppd_wallclock_ms(), stamp);
    xmppd_stanza *m = xmppd_stanza_new("message", NULL);
    xmppd_stanza *r = m ? xmppd_stanza_tag(m, "retracted", NS_RETRACT1) : NULL;
    xmppd_stanza *oid = m ? xmppd_stanza_tag(m, "occupant-id", NS_OCCUPANT_ID) : NULL;
    if (!r || !oid) {
        xmppd_stanza_unref(m);
        return NULL;
    }
    xmppd_stanza_set_attr(m, "type", "groupchat");
    xmppd_stanza_set_attr(m, "from", from);
    xmppd_stanza_set_attr(r, "stamp", stamp);
    add_moderated(r, NS_MODERATE1, j, by);
    xmppd_stanza_set_attr(oid, "id", j->oid ? j->oid : "");
    return m;
}

/* The tombstone is in place (or the room keeps no archive): the cache
 * follows, occupants are told, the moderator gets the result. */
static void retracted(muc_room *room, retract_job *j, xmppd_stanza *stone)
{
    char by[3100];
    snprintf(by, sizeof(by), "%s/%s", muc_room_jid(room), j->mod_nick);
    muc_hist *h = hist_find(room, j->id);
    if (h && stone) {
        xmppd_stanza *cached = xmppd_stanza_copy(stone);
        xmppd_stanza *sid = cached ? xmppd_stanza_tag(cached, "stanza-id", NS_SID) : NULL;
        if (sid) {
            xmppd_stanza_set_attr(sid, "id", j->id);
            xmppd_stanza_set_attr(sid, "by", muc_room_jid(room));
            xmppd_stanza_unref(h->msg);
            h->msg = cached;
        } else {
            xmppd_stanza_unref(cached);
        }
    }
    xmppd_stanza *notice = retraction_notice(room, j, by);
    if (notice)
        muc_broadcast_groupchat(room, notice, NULL, false);
    xmppd_stanza *reply = xmppd_stanza_reply(xmppd_pending_event(j->p)->stanza);
    xmppd_pending_reply(j->p, reply);
    job_free(j);
}

static void on_replaced(int status, void *ud)
{
    retract_job *j = ud;
    muc_room *room = job_room(j, status);
    if (!room)
        return;
    if (status == XMPPD_STORE_OK) {
        char by[3100];
        snprintf(by, sizeof(by), "%s/%s", muc_room_jid(room), j->mod_nick);
        xmppd_stanza *stone = tombstone(room, j, by);
        retracted(room, j, stone);
        xmppd_stanza_unref(stone);
    } else {
        xmppd_pending_error(j->p, NULL, status == XMPPD_STORE_NOT_FOUND ? "item-not-found"
                                                                         : "internal-server-error",
                            NULL);
        job_free(j);
    }
    muc_room_release(room);
}

/* The author is known: the archive item becomes a tombstone. */
static void replace(muc_room *room, retract_job *j)
{
    char by[3100];
    snprintf(by, sizeof(by), "%s/%s", muc_room_jid(room), j->mod_nick);
    xmppd_stanza *stone = tombstone(room, j, by);
    json_t *value = stone ? archive_value(stone) : NULL;
    if (!value) {
        xmppd_stanza_unref(stone);
        xmppd_pending_error(j->p, "wait", "resource-constraint", NULL);
        job_free(j);
        return;
    }
    if (!room->cfg.archiving) {
        retracted(room, j, stone);
    } else {
        xmppd_archive_replace(room->svc->archive, muc_room_jid(room), j->id, value, on_replaced, j);
    }
    json_decref(value);
    xmppd_stanza_unref(stone);
}

static int set_author(retract_job *j, const char *nick, const char *jid, const char *oid)
{
    j->nick = dup_or_null(nick);
    j->jid = dup_or_null(jid);
    j->oid = dup_or_null(oid);
    return (nick && !j->nick) || (jid && !j->jid) || (oid && !j->oid) ? -1 : 0;
}

/* A message older than the cache: its item in the archive, by id. */
static void on_lookup(int status, const xmppd_archive_item *items, size_t n, bool complete,
                      void *ud)
{
    (void)complete;
    retract_job *j = ud;
    muc_room *room = job_room(j, status);
    if (!room)
        return;
    xmppd_stanza *m = status == XMPPD_STORE_OK && n == 1 ? item_parse(&items[0]) : NULL;
    if (status != XMPPD_STORE_OK && status != XMPPD_STORE_NOT_FOUND) {
        xmppd_pending_error(j->p, NULL, "internal-server-error", NULL);
        job_free(j);
    } else if (status == XMPPD_STORE_NOT_FOUND || n != 1) {
        xmppd_pending_error(j->p, NULL, "item-not-found", NULL);
        job_free(j);
    } else if (!m || !item_nick(m)) {
        xmppd_pending_error(j->p, "modify", "not-acceptable",
                            "Only messages of occupants can be moderated");
        job_free(j);
    } else if (set_author(j, item_nick(m), items[0].with, item_occupant_id(m)) < 0) {
        xmppd_pending_error(j->p, "wait", "resource-constraint", NULL);
        job_free(j);
    } else {
        j->when_ms = items[0].when_ms;
        replace(room, j);
    }
    xmppd_stanza_unref(m);
    muc_room_release(room);
}

static void lookup(muc_room *room, retract_job *j)
{
    const char *ids[] = { j->id };
    xmppd_archive_filter q = { .ids = ids, .n_ids = 1, .max = 1 };
    xmppd_archive_query(room->svc->archive, muc_room_jid(room), &q, on_lookup, j);
}

/* The id a moderation request names, in either protocol version; NULL when
 * the request is not a retraction. */
static const char *moderated_id(const xmppd_stanza *iq, const char **reason)
{
    xmppd_stanza *m1 = xmppd_stanza_child(iq, "moderate", NS_MODERATE1);
    if (m1 && xmppd_stanza_child(m1, "retract", NS_RETRACT1)) {
        *reason = xmppd_stanza_child_text(m1, "reason", NULL);
        return xmppd_stanza_attr(m1, "id");
    }
    xmppd_stanza *apply = xmppd_stanza_child(iq, "apply-to", NS_FASTEN);
    xmppd_stanza *m0 = apply ? xmppd_stanza_child(apply, "moderate", NS_MODERATE0) : NULL;
    if (m0 && xmppd_stanza_child(m0, "retract", NS_RETRACT0)) {
        *reason = xmppd_stanza_child_text(m0, "reason", NULL);
        return xmppd_stanza_attr(apply, "id");
    }
    return NULL;
}

int muc_moderate_iq(muc_room *room, xmppd_event *ev)
{
    const char *reason = NULL;
    const char *id = moderated_id(ev->stanza, &reason);
    muc_sess *s = muc_sess_find(room, ev->from);
    if (strcmp(xmppd_stanza_attr(ev->stanza, "type"), "set") != 0 || !id || !*id)
        return muc_error(ev, room, "modify", "bad-request", NULL);
    if (!s || s->occ->role != ROLE_MODERATOR)
        return muc_error(ev, room, "auth", "forbidden",
                         "Only moderators may moderate other occupants' messages");
    if (reason && muc_utf8_len(reason) > MUC_TEXT_MAX)
        return muc_error(ev, room, "modify", "not-acceptable", "The reason is too long");
    retract_job *j = calloc(1, sizeof(*j));
    if (!j)
        return XMPPD_FAIL;
    j->svc = room->svc;
    j->serial = room->serial;
    j->node = strdup(room->node);
    j->id = strdup(id);
    j->reason = dup_or_null(reason);
    j->mod_nick = strdup(s->occ->nick);
    memcpy(j->mod_oid, s->occ->occupant_id, sizeof(j->mod_oid));
    muc_hist *h = hist_find(room, id);
    if (!j->node || !j->id || (reason && !j->reason) || !j->mod_nick ||
        (h && set_author(j, h->nick, h->jid, h->occupant_id) < 0) ||
        !(j->p = xmppd_pending_new(ev))) {
        job_free(j);
        return XMPPD_FAIL;
    }
    if (h) {
        j->when_ms = h->when_ms;
        replace(room, j);
    } else if (room->cfg.archiving) {
        lookup(room, j);
    } else {
        xmppd_pending_error(j->p, NULL, "item-not-found", NULL);
        job_free(j);
    }
    return XMPPD_HANDLED;
}
