/* Running MAM queries (XEP-0313 §4) and archiving messages into an archive
 * store. A query is answered in up to two storage round trips: one to
 * order two ids that bound the same side (an RSM <after/> next to an
 * 'after-id' field, say), then the page itself. Results go to the
 * requester as <result/> messages, then the IQ result with <fin/>, in
 * that order on the requester's stream.
 *
 * Storage callbacks may come with XMPPD_STORE_CANCELLED when the store's
 * module unloads first: the job is then freed and nothing is sent. */
#include <stdlib.h>
#include <string.h>

#include "mam_engine.h"
#include "mam_request.h"
#include "mam_time.h"

#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_DELAY "urn:xmpp:delay"
#define NS_XDATA_VALIDATE "http://jabber.org/protocol/xdata-validate"

/* One query or metadata request being answered. */
typedef struct mam_job {
    const mam_ctx *ctx;    /* borrowed from the module (alive unless CANCELLED) */
    xmppd_pending *p;      /* the IQ */
    xmppd_store *store;    /* borrowed: lives while its callbacks can come */
    char *user, *jid;      /* the archive (copies) */
    mam_request req;
    long max;              /* page size asked (0: only "is there anything") */
    bool backward;         /* RSM <before/>: the page ending where it says */
    const char *lower, *upper; /* effective after/before ids (into req) */
    const char *order[4];  /* ids being ordered (step one) */
    size_t n_order;
    char *oldest_id;       /* metadata: the first item's id and time */
    int64_t oldest_ms;
} mam_job;

static void job_free(mam_job *j)
{
    mam_request_clear(&j->req);
    free(j->user);
    free(j->jid);
    free(j->oldest_id);
    free(j);
}

/* Answers the job's IQ with an error and frees it. */
static void job_error(mam_job *j, const char *type, const char *cond, const char *text)
{
    xmppd_pending_error(j->p, type, cond, text);
    job_free(j);
}

/* Storage statuses other than OK: CANCELLED frees quietly, NOT_FOUND is an
 * id that names no item (XEP-0313 §4.1.3), anything else a backend
 * failure. true when the job was ended. */
static bool job_failed(mam_job *j, int status)
{
    if (status == XMPPD_STORE_OK)
        return false;
    if (status == XMPPD_STORE_CANCELLED) {
        xmppd_pending_drop(j->p);
        job_free(j);
    } else if (status == XMPPD_STORE_NOT_FOUND) {
        job_error(j, "cancel", "item-not-found", "no item of this archive has that id");
    } else {
        xmppd_log(j->ctx->m, XMPPD_LOG_ERROR, "archive of %s: query failed", j->jid);
        job_error(j, "wait", "internal-server-error", "the archive is unavailable");
    }
    return true;
}

/* Sends s (consumed) to the requester: its session, or routed. */
static void job_send(mam_job *j, xmppd_stanza *s)
{
    const xmppd_event *ev = xmppd_pending_event(j->p);
    const xmppd_jid *sj = ev->session ? xmppd_session_jid(ev->session) : NULL;
    if (sj && ev->from && xmppd_jid_equal(sj, ev->from))
        xmppd_session_send(ev->session, s);
    else
        xmppd_route(ev->host, s);
    xmppd_stanza_unref(s);
}

/* <message to=requester from=archive><result><forwarded><delay/>stored
 * message</forwarded></result></message>, or NULL when the item is
 * unreadable or on OOM. */
static xmppd_stanza *result_message(const mam_job *j, const xmppd_archive_item *it)
{
    const char *xml = json_string_value(it->value);
    xmppd_stanza *stored = xml ? xmppd_stanza_from_string(xml, strlen(xml), XMPPD_NS_CLIENT) : NULL;
    xmppd_stanza *m = stored ? xmppd_stanza_new("message", NULL) : NULL;
    xmppd_stanza *r = m ? xmppd_stanza_tag(m, "result", MAM_NS) : NULL;
    xmppd_stanza *f = r ? xmppd_stanza_tag(r, "forwarded", NS_FORWARD) : NULL;
    xmppd_stanza *d = f ? xmppd_stanza_tag(f, "delay", NS_DELAY) : NULL;
    if (!d) {
        if (!stored)
            xmppd_log(j->ctx->m, XMPPD_LOG_WARN, "archive of %s: item %s is unreadable", j->jid, it->id);
        xmppd_stanza_unref(stored);
        xmppd_stanza_unref(m);
        return NULL;
    }
    char stamp[MAM_TIME_LEN];
    mam_time_format(it->when_ms, stamp, sizeof stamp);
    const xmppd_event *ev = xmppd_pending_event(j->p);
    xmppd_stanza_set_attr(m, "to", ev->from ? ev->from->full : NULL);
    xmppd_stanza_set_attr(m, "from", j->jid);
    if (j->req.queryid)
        xmppd_stanza_set_attr(r, "queryid", j->req.queryid);
    xmppd_stanza_set_attr(r, "id", it->id);
    xmppd_stanza_set_attr(d, "stamp", stamp);
    xmppd_stanza_add(f, stored);
    return m;
}

/* The page is in (items in query order): results, then <fin/>. */
static void on_page(int status, const xmppd_archive_item *items, size_t n, bool complete, void *ud)
{
    mam_job *j = ud;
    if (job_failed(j, status))
        return;
    if (j->max == 0) { /* <max>0</max>: nothing sent, only whether more exist */
        complete = n == 0;
        n = 0;
    }
    /* chronological index i of the page; a backward page came newest first */
    for (size_t k = 0; k < n; k++) {
        size_t i = j->req.flip ? n - 1 - k : k;
        xmppd_stanza *m = result_message(j, &items[j->backward ? n - 1 - i : i]);
        if (m)
            job_send(j, m);
    }
    xmppd_stanza *iq = xmppd_stanza_reply(xmppd_pending_event(j->p)->stanza);
    xmppd_stanza *fin = iq ? xmppd_stanza_tag(iq, "fin", MAM_NS) : NULL;
    if (fin && complete)
        xmppd_stanza_set_attr(fin, "complete", "true");
    const char *first = n ? items[j->backward ? n - 1 : 0].id : NULL;
    const char *last = n ? items[j->backward ? 0 : n - 1].id : NULL;
    if (fin && !xmppd_rsm_answer(fin, first, -1, last, -1)) {
        xmppd_stanza_unref(iq);
        iq = NULL;
    }
    xmppd_pending_reply(j->p, iq);
    job_free(j);
}

static void run_page(mam_job *j)
{
    mam_request *r = &j->req;
    xmppd_archive_filter q = {
        .with = r->with,
        .start_ms = r->has_start ? r->start_ms : 0,
        /* 0 reads as "unbounded": an end at the epoch itself becomes -1 */
        .end_ms = r->has_end ? (r->end_ms ? r->end_ms : -1) : 0,
        .after_id = j->lower,
        .before_id = j->upper,
        .max = j->max ? (size_t)j->max : 1,
        .reverse = j->backward,
        .ids = (const char *const *)r->ids,
        .n_ids = r->n_ids,
    };
    xmppd_archive_query(j->store, j->user, &q, on_page, j);
}

/* Position of id among the items, or n. */
static size_t item_pos(const xmppd_archive_item *items, size_t n, const char *id)
{
    size_t i = 0;
    while (i < n && strcmp(items[i].id, id) != 0)
        i++;
    return i;
}

/* Step one's answer: the ids of both sides in archive order. The later of
 * two lower bounds and the earlier of two upper bounds apply. */
static void on_ordered(int status, const xmppd_archive_item *items, size_t n, bool complete, void *ud)
{
    mam_job *j = ud;
    (void)complete;
    if (job_failed(j, status))
        return;
    mam_request *r = &j->req;
    const char *rsm_upper = r->rsm.before && *r->rsm.before ? r->rsm.before : NULL;
    if (r->rsm.after && r->after_id)
        j->lower = item_pos(items, n, r->rsm.after) >= item_pos(items, n, r->after_id) ? r->rsm.after
                                                                                      : r->after_id;
    if (rsm_upper && r->before_id)
        j->upper = item_pos(items, n, rsm_upper) <= item_pos(items, n, r->before_id) ? rsm_upper
                                                                                    : r->before_id;
    run_page(j);
}

/* Bounds from the RSM set and the form; when a side has two, asks the
 * archive to order them first. */
static void run_query(mam_job *j)
{
    mam_request *r = &j->req;
    const char *rsm_upper = r->rsm.before && *r->rsm.before ? r->rsm.before : NULL;
    j->backward = r->rsm.before != NULL;
    j->lower = r->rsm.after ? r->rsm.after : r->after_id;
    j->upper = rsm_upper ? rsm_upper : r->before_id;
    if (r->rsm.after && r->after_id) {
        j->order[j->n_order++] = r->rsm.after;
        j->order[j->n_order++] = r->after_id;
    }
    if (rsm_upper && r->before_id) {
        j->order[j->n_order++] = rsm_upper;
        j->order[j->n_order++] = r->before_id;
    }
    if (!j->n_order) {
        run_page(j);
        return;
    }
    xmppd_archive_filter q = { .ids = j->order, .n_ids = j->n_order };
    xmppd_archive_query(j->store, j->user, &q, on_ordered, j);
}

static mam_job *job_new(const mam_ctx *ctx, xmppd_event *ev, const mam_archive *a)
{
    mam_job *j = calloc(1, sizeof *j);
    if (!j || !(j->user = strdup(a->user)) || !(j->jid = strdup(a->jid)) ||
        !(j->p = xmppd_pending_new(ev))) {
        if (j) {
            free(j->user);
            free(j->jid);
        }
        free(j);
        return NULL;
    }
    j->ctx = ctx;
    j->store = a->store;
    return j;
}

static int query_set(const mam_ctx *ctx, xmppd_event *ev, const mam_archive *a, const xmppd_stanza *query)
{
    mam_request req;
    const char *cond, *text;
    if (mam_request_parse(query, &req, &cond, &text) != 0)
        return xmppd_reply_error(ev, NULL, cond, text);
    mam_job *j = job_new(ctx, ev, a);
    if (!j) {
        mam_request_clear(&req);
        return XMPPD_FAIL;
    }
    j->req = req;
    j->max = req.rsm.max < 0 ? ctx->page : req.rsm.max > ctx->max_page ? ctx->max_page : req.rsm.max;
    run_query(j);
    return XMPPD_HANDLED;
}

/* The query form (XEP-0313 §4.1.5): every field the server supports. */
static int query_get(xmppd_event *ev)
{
    xmppd_stanza *iq = xmppd_stanza_reply(ev->stanza);
    xmppd_stanza *q = iq ? xmppd_stanza_tag(iq, "query", MAM_NS) : NULL;
    xmppd_stanza *x = xmppd_form_new("form", MAM_NS, NULL);
    static const char *const fields[][2] = { { "with", "jid-single" }, { "start", "text-single" },
                                             { "end", "text-single" }, { "before-id", "text-single" },
                                             { "after-id", "text-single" } };
    bool ok = q && x;
    for (size_t i = 0; ok && i < sizeof fields / sizeof fields[0]; i++)
        ok = xmppd_form_add_field(x, fields[i][0], fields[i][1], NULL, NULL) != NULL;
    xmppd_stanza *ids = ok ? xmppd_form_add_field(x, "ids", "list-multi", NULL, NULL) : NULL;
    xmppd_stanza *v = ids ? xmppd_stanza_tag(ids, "validate", NS_XDATA_VALIDATE) : NULL;
    if (!v || xmppd_stanza_set_attr(v, "datatype", "xs:string") != 0 ||
        !xmppd_stanza_tag(v, "open", NS_XDATA_VALIDATE)) {
        xmppd_stanza_unref(x);
        xmppd_stanza_unref(iq);
        return XMPPD_FAIL;
    }
    xmppd_stanza_add(q, x);
    xmppd_reply(ev, iq);
    return XMPPD_HANDLED;
}

/* ---- metadata (XEP-0313 §5) ---------------------------------------------- */

static int add_edge(xmppd_stanza *md, const char *name, const char *id, int64_t when)
{
    char stamp[MAM_TIME_LEN];
    mam_time_format(when, stamp, sizeof stamp);
    xmppd_stanza *e = xmppd_stanza_tag(md, name, MAM_NS);
    return e && xmppd_stanza_set_attr(e, "id", id) == 0 && xmppd_stanza_set_attr(e, "timestamp", stamp) == 0
               ? 0
               : -1;
}

int mam_metadata_fill(xmppd_stanza *md, const char *first_id, int64_t first_ms, const char *last_id,
                      int64_t last_ms)
{
    return add_edge(md, "start", first_id, first_ms) == 0 && add_edge(md, "end", last_id, last_ms) == 0 ? 0 : -1;
}

static void on_newest(int status, const xmppd_archive_item *items, size_t n, bool complete, void *ud)
{
    mam_job *j = ud;
    (void)complete;
    if (job_failed(j, status))
        return;
    xmppd_stanza *iq = xmppd_stanza_reply(xmppd_pending_event(j->p)->stanza);
    xmppd_stanza *md = iq ? xmppd_stanza_tag(iq, "metadata", MAM_NS) : NULL;
    /* an empty archive has an empty <metadata/> */
    if (!md || (j->oldest_id && n &&
                mam_metadata_fill(md, j->oldest_id, j->oldest_ms, items[0].id, items[0].when_ms) != 0)) {
        xmppd_stanza_unref(iq);
        iq = NULL;
    }
    xmppd_pending_reply(j->p, iq);
    job_free(j);
}

static void on_oldest(int status, const xmppd_archive_item *items, size_t n, bool complete, void *ud)
{
    mam_job *j = ud;
    (void)complete;
    if (job_failed(j, status))
        return;
    if (n) {
        j->oldest_ms = items[0].when_ms;
        if (!(j->oldest_id = strdup(items[0].id))) {
            job_error(j, "wait", "internal-server-error", NULL);
            return;
        }
    }
    xmppd_archive_filter q = { .max = 1, .reverse = true };
    xmppd_archive_query(j->store, j->user, &q, on_newest, j);
}

static int metadata_get(const mam_ctx *ctx, xmppd_event *ev, const mam_archive *a)
{
    mam_job *j = job_new(ctx, ev, a);
    if (!j)
        return XMPPD_FAIL;
    xmppd_archive_filter q = { .max = 1 };
    xmppd_archive_query(j->store, j->user, &q, on_oldest, j);
    return XMPPD_HANDLED;
}

int mam_engine_iq(const mam_ctx *ctx, xmppd_event *ev, const mam_archive *a)
{
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    xmppd_stanza *c = xmppd_stanza_first(ev->stanza);
    if (!c || !type || strcmp(xmppd_stanza_ns(c), MAM_NS) != 0)
        return XMPPD_PASS;
    const char *name = xmppd_stanza_name(c);
    bool get = strcmp(type, "get") == 0, set = strcmp(type, "set") == 0;
    if (strcmp(name, "query") == 0 && set)
        return query_set(ctx, ev, a, c);
    if (strcmp(name, "query") == 0 && get)
        return query_get(ev);
    if (strcmp(name, "metadata") == 0 && get)
        return metadata_get(ctx, ev, a);
    if (strcmp(name, "query") == 0 || strcmp(name, "metadata") == 0)
        return xmppd_reply_error(ev, "cancel", "bad-request", "wrong IQ type for this request");
    return XMPPD_PASS;
}

/* ---- archiving --------------------------------------------------------------- */

void mam_strip_ids(xmppd_stanza *msg, const char *jid)
{
    xmppd_stanza *c = xmppd_stanza_first(msg);
    while (c) {
        xmppd_stanza *next = xmppd_stanza_next(c);
        const char *by = xmppd_stanza_attr(c, "by");
        if (strcmp(xmppd_stanza_name(c), "stanza-id") == 0 && strcmp(xmppd_stanza_ns(c), MAM_NS_SID) == 0 &&
            (!by || strcmp(by, jid) == 0)) /* no 'by' claims nothing valid either */
            xmppd_stanza_remove(msg, c);
        c = next;
    }
}

bool mam_is_stamped(const xmppd_stanza *msg, const char *jid)
{
    for (xmppd_stanza *c = xmppd_stanza_first(msg); c; c = xmppd_stanza_next(c)) {
        const char *by = xmppd_stanza_attr(c, "by");
        if (strcmp(xmppd_stanza_name(c), "stanza-id") == 0 && strcmp(xmppd_stanza_ns(c), MAM_NS_SID) == 0 &&
            by && strcmp(by, jid) == 0)
            return true;
    }
    return false;
}

/* A new archive id: 48 bits of wall-clock milliseconds, then 48 random
 * bits, in 16 characters of a base64 alphabet in ASCII order. Unique and
 * unpredictable (XEP-0313 §3) without asking the store; and an account's
 * new ids sort after its older ones, so they land at the end of the
 * store's id index instead of at random places in it (cheaper appends). */
static int new_id(char out[17])
{
    static const char alphabet[] = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
    unsigned char raw[12];
    uint64_t ms = (uint64_t)xmppd_wallclock_ms();
    for (int i = 0; i < 6; i++)
        raw[i] = (unsigned char)(ms >> (8 * (5 - i)));
    if (xmppd_random(raw + 6, 6) != 0)
        return -1;
    for (int i = 0; i < 4; i++) { /* 3 bytes -> 4 characters */
        uint32_t v = (uint32_t)raw[3 * i] << 16 | (uint32_t)raw[3 * i + 1] << 8 | raw[3 * i + 2];
        for (int k = 0; k < 4; k++)
            out[4 * i + k] = alphabet[(v >> (18 - 6 * k)) & 63];
    }
    out[16] = '\0';
    return 0;
}

/* ud: the module instance, alive unless the status is CANCELLED. */
static void on_appended(int status, const char *id, void *ud)
{
    (void)id;
    if (status != XMPPD_STORE_OK && status != XMPPD_STORE_CANCELLED)
        xmppd_log(ud, XMPPD_LOG_ERROR, "archiving a message failed (its stanza-id names no item)");
}

int mam_engine_archive(const mam_ctx *ctx, const mam_archive *a, xmppd_stanza *msg, const char *with)
{
    char id[17];
    mam_strip_ids(msg, a->jid);
    char *xml = new_id(id) == 0 ? xmppd_stanza_to_string(msg, XMPPD_NS_CLIENT, NULL) : NULL;
    json_t *v = xml ? json_string(xml) : NULL;
    free(xml);
    xmppd_stanza *sid = v ? xmppd_stanza_new("stanza-id", MAM_NS_SID) : NULL;
    if (!sid || xmppd_stanza_set_attr(sid, "by", a->jid) != 0 || xmppd_stanza_set_attr(sid, "id", id) != 0) {
        xmppd_stanza_unref(sid);
        json_decref(v);
        return -1;
    }
    xmppd_archive_append_id(a->store, a->user, id, with, xmppd_wallclock_ms(), v, on_appended, ctx->m);
    json_decref(v);
    xmppd_stanza_add(msg, sid);
    return 0;
}
