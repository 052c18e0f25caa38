/* XEP-0160 offline messages.
 *
 * A chat or normal message with a <body/> for an account without an
 * available resource ("message/offline") is stored, with a XEP-0203
 * <delay/> stamp, in archive store "offline" (value: the serialised
 * message, a JSON string), up to max_messages per account; beyond that,
 * or when storing fails, the sender gets <service-unavailable/>. On a
 * session's initial presence the stored messages are sent to it in order,
 * then deleted once the kernel's socket has them (xmppd_session_when_sent).
 *
 * A session bound through Bind2 while mod_mam archives the account's
 * messages (XEP-0386 §2.2: "clear the offline messages ... without sending
 * them, as they will be provided by MAM") is not sent the stored messages
 * the archive holds (those stamped with a <stanza-id/> of the account's
 * archive); they are deleted all the same. The others (not archived, by
 * the account's MAM preferences) are delivered as usual: nothing is lost.
 *
 * The kernel needs an answer at once, so the module takes the message
 * (HANDLED) before the store reports, and bounces it itself if the store
 * fails. Messages waiting for an account's count when the module unloads
 * are bounced (never silently dropped); a write already handed to the
 * store is carried out by the driver. The per-account count is cached (loaded on first use, in order
 * with the messages that wait for it) so the quota check needs no query.
 * The sender's session is held (xmppd_session_hold_commit) from the moment
 * the message is taken until its write reports, so stream management
 * acknowledges it only once it is committed (issue 18: it survives
 * kill -9). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xmppd/xmppd.h>

#define OFF_DELAY_NS "urn:xmpp:delay"
#define OFF_FEATURE "msgoffline"
#define OFF_NS_SID "urn:xmpp:sid:0"

/* The session slot of a Bind2 session whose archived messages are not
 * sent again (its value: the address of this marker, nothing to free). */
static char off_mam_session;

typedef struct off_conf {
    long long max_messages;
} off_conf;

static const xmppd_option off_options[] = {
    { "max_messages", XMPPD_OPT_INT, XMPPD_OFF(off_conf, max_messages), "1000", 1, 1000000, NULL, 0,
      "messages kept per account; further ones are bounced with service-unavailable" },
    { NULL }
};

/* Cached state of one account that has (or may have) stored messages. */
typedef struct off_user {
    char *user;
    struct off_user *next;  /* hash chain */
    bool loaded;            /* count is known */
    bool loading;           /* archive_count in flight */
    bool flushing;          /* a delivery to a session is in flight */
    size_t count;           /* stored + being stored */
    xmppd_stanza **waiting; /* refs: messages that arrived while loading, in order */
    xmppd_commit_hold **waiting_holds; /* their senders' holds (NULL: none) */
    size_t n_waiting, cap_waiting;
} off_user;

/* Module data: the accounts table (chained hash on the user name). */
typedef struct off_state {
    xmppd_module *m;
    xmppd_store *store;
    off_user **buckets;
    size_t n_buckets, n_users;
    xmppd_metric *queue;   /* account's queue length when a message is stored */
} off_state;

/* One message being appended. */
typedef struct off_append {
    off_state *st;
    char *user;
    xmppd_stanza *msg; /* ref: the original, for a bounce */
    xmppd_commit_hold *hold; /* the sender's acknowledgement waits for the commit */
} off_append;

/* One account check and count being loaded; names its entry (which only
 * goes meanwhile if the account is deleted). */
typedef struct off_count_req {
    off_state *st;
    char *user;
} off_count_req;

/* One delivery to a session. */
typedef struct off_flush {
    off_state *st;
    char *user;
    xmppd_session *sess; /* ref */
    size_t delivered;
} off_flush;

/* ---- accounts table ------------------------------------------------------- */

static size_t off_hash(const char *s)
{
    size_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static off_user **off_slot(off_state *st, const char *user)
{
    off_user **pp = &st->buckets[off_hash(user) % st->n_buckets];
    while (*pp && strcmp((*pp)->user, user) != 0)
        pp = &(*pp)->next;
    return pp;
}

static off_user *off_find(off_state *st, const char *user)
{
    return *off_slot(st, user);
}

static void off_grow(off_state *st)
{
    size_t n = st->n_buckets * 2;
    off_user **b = calloc(n, sizeof(*b));
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < st->n_buckets; i++) {
        for (off_user *u = st->buckets[i], *next; u; u = next) {
            next = u->next;
            size_t k = off_hash(u->user) % n;
            u->next = b[k];
            b[k] = u;
        }
    }
    free(st->buckets);
    st->buckets = b;
    st->n_buckets = n;
}

/* The entry of user, created (not loaded) when missing; NULL on OOM. */
static off_user *off_get(off_state *st, const char *user)
{
    off_user *u = off_find(st, user);
    if (u)
        return u;
    if (st->n_users >= st->n_buckets * 2)
        off_grow(st);
    if (!(u = calloc(1, sizeof(*u))) || !(u->user = strdup(user))) {
        free(u);
        return NULL;
    }
    off_user **pp = off_slot(st, user);
    *pp = u;
    st->n_users++;
    return u;
}

static void off_user_free(off_user *u)
{
    for (size_t i = 0; i < u->n_waiting; i++) {
        xmppd_stanza_unref(u->waiting[i]);
        xmppd_commit_release(u->waiting_holds[i]);
    }
    free(u->waiting);
    free(u->waiting_holds);
    free(u->user);
    free(u);
}

/* Forgets user's entry when nothing refers to it any more: the count is
 * reloaded on next use. force: also when loaded (account deleted). */
static void off_drop(off_state *st, const char *user, bool force)
{
    off_user **pp = off_slot(st, user);
    off_user *u = *pp;
    if (!u || u->loading || u->flushing || u->n_waiting || (u->loaded && u->count && !force))
        return;
    *pp = u->next;
    st->n_users--;
    off_user_free(u);
}

/* ---- storing ---------------------------------------------------------------- */

/* Answers msg's sender with a stanza error from the recipient's account. */
static void off_bounce(off_state *st, xmppd_stanza *msg, const char *cond, const char *text)
{
    xmppd_stanza *e = xmppd_stanza_error_reply(msg, NULL, cond, text);
    if (!e)
        return;
    if (xmppd_route(xmppd_module_host(st->m), e) < 0)
        xmppd_log(st->m, XMPPD_LOG_DEBUG, "could not bounce an offline message");
    xmppd_stanza_unref(e);
}

/* XEP-0082 "2024-05-01T12:00:00.123Z" of wall-clock ms into buf. */
static void off_stamp(int64_t ms, char *buf, size_t len)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];
    gmtime_r(&sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", base, (int)(ms % 1000));
}

/* The message as stored: a copy with a XEP-0203 <delay/>, serialised into
 * a JSON string (new reference), or NULL on OOM. */
static json_t *off_serialise(off_state *st, const xmppd_stanza *msg, int64_t now_ms)
{
    char stamp[48];
    xmppd_stanza *copy = xmppd_stanza_copy(msg);
    xmppd_stanza *delay = copy ? xmppd_stanza_tag(copy, "delay", OFF_DELAY_NS) : NULL;
    if (!delay) {
        xmppd_stanza_unref(copy);
        return NULL;
    }
    off_stamp(now_ms, stamp, sizeof(stamp));
    xmppd_stanza_set_attr(delay, "from", xmppd_host_name(xmppd_module_host(st->m)));
    xmppd_stanza_set_attr(delay, "stamp", stamp);
    xmppd_stanza_add_text(delay, "Offline storage", 15);
    char *xml = xmppd_stanza_to_string(copy, XMPPD_NS_CLIENT, NULL);
    xmppd_stanza_unref(copy);
    json_t *v = xml ? json_string(xml) : NULL;
    free(xml);
    return v;
}

static void off_append_free(off_append *a)
{
    xmppd_commit_release(a->hold);
    xmppd_stanza_unref(a->msg);
    free(a->user);
    free(a);
}

static void off_on_appended(int status, const char *id, void *ud)
{
    off_append *a = ud;
    /* Cancelled (the module unloads): the driver still carries out the
     * write it was handed; only its answer is lost to us. */
    if (status != XMPPD_STORE_OK && status != XMPPD_STORE_CANCELLED) {
        off_user *u = off_find(a->st, a->user);
        if (u && u->loaded && u->count > 0)
            u->count--;
        xmppd_log(a->st->m, XMPPD_LOG_ERROR, "storing an offline message for %s failed", a->user);
        off_bounce(a->st, a->msg, "service-unavailable", "The message could not be stored");
    } else if (status == XMPPD_STORE_OK) {
        /* Committed: from here on the server answers for the message. */
        const char *mid = xmppd_stanza_attr(a->msg, "id");
        xmppd_log(a->st->m, XMPPD_LOG_DEBUG, "stored a message for %s (id %s)", a->user,
                  mid ? mid : "-");
    }
    off_append_free(a);
}

/* Stores msg for u (count loaded) or bounces it when u is full. hold
 * (taken over; may be NULL) is released once the store answers. */
static void off_accept(off_state *st, off_user *u, xmppd_stanza *msg, xmppd_commit_hold *hold)
{
    const off_conf *c = xmppd_module_conf(st->m);
    if ((long long)u->count >= c->max_messages) {
        off_bounce(st, msg, "service-unavailable", "The recipient's offline storage is full");
        xmppd_commit_release(hold);
        return;
    }
    int64_t now = xmppd_wallclock_ms();
    json_t *v = off_serialise(st, msg, now);
    off_append *a = v ? calloc(1, sizeof(*a)) : NULL;
    if (!a || !(a->user = strdup(u->user))) {
        free(a);
        json_decref(v);
        off_bounce(st, msg, "service-unavailable", "The message could not be stored");
        xmppd_commit_release(hold);
        return;
    }
    a->st = st;
    a->hold = hold;
    a->msg = xmppd_stanza_ref(msg);
    u->count++;
    xmppd_metric_observe(st->queue, NULL, (double)u->count);
    const char *from = xmppd_stanza_attr(msg, "from");
    xmppd_jid *peer = from ? xmppd_jid_parse(from) : NULL;
    xmppd_archive_append(st->store, u->user, peer ? peer->bare : NULL, now, v, off_on_appended, a);
    xmppd_jid_free(peer);
    json_decref(v);
}

/* u's state is settled (loaded, or not when the account is unknown or the
 * store failed): the messages waiting for it are stored or bounced, in
 * arrival order, after those appended before. */
static void off_release_waiting(off_state *st, off_user *u, const char *bounce_text)
{
    xmppd_stanza **waiting = u->waiting;
    xmppd_commit_hold **holds = u->waiting_holds;
    size_t nw = u->n_waiting;
    u->loading = false;
    u->waiting = NULL;
    u->waiting_holds = NULL;
    u->n_waiting = u->cap_waiting = 0;
    for (size_t i = 0; i < nw; i++) {
        if (u->loaded) {
            off_accept(st, u, waiting[i], holds[i]);
        } else {
            off_bounce(st, waiting[i], "service-unavailable", bounce_text);
            xmppd_commit_release(holds[i]);
        }
        xmppd_stanza_unref(waiting[i]);
    }
    free(waiting);
    free(holds);
    if (!u->loaded)
        off_drop(st, u->user, false);
}

/* The entry a count request is about, freeing the request; NULL when the
 * entry is gone (account deleted meanwhile). */
static off_user *off_count_req_end(off_count_req *r)
{
    off_user *u = off_find(r->st, r->user);
    free(r->user);
    free(r);
    return u;
}

static void off_on_count(int status, size_t n, void *ud)
{
    off_count_req *r = ud;
    off_state *st = r->st;
    off_user *u = off_count_req_end(r);
    if (!u)
        return;
    if (status == XMPPD_STORE_OK) {
        u->loaded = true;
        u->count = n;
    } else if (status != XMPPD_STORE_CANCELLED) {
        xmppd_log(st->m, XMPPD_LOG_ERROR, "counting offline messages of %s failed", u->user);
    }
    off_release_waiting(st, u, "Offline storage is unavailable");
}

/* RFC 6121 §8.5.2.2.1: nothing is kept for an account that does not
 * exist; for one that does, its count comes next. */
static void off_on_exists(int result, void *ud)
{
    off_count_req *r = ud;
    off_state *st = r->st;
    if (result == XMPPD_AUTH_OK) {
        xmppd_archive_count(st->store, r->user, off_on_count, r);
        return;
    }
    off_user *u = off_count_req_end(r);
    if (u)
        off_release_waiting(st, u, result == XMPPD_AUTH_USER_UNKNOWN ? NULL
                                                                     : "Offline storage is unavailable");
}

/* Queues msg (ref taken) and its sender's hold (taken over on success)
 * until u's count is known; starts loading it. */
static int off_wait_count(off_state *st, off_user *u, xmppd_stanza *msg, xmppd_commit_hold *hold)
{
    if (u->n_waiting == u->cap_waiting) {
        size_t cap = u->cap_waiting ? u->cap_waiting * 2 : 4;
        xmppd_stanza **v = realloc(u->waiting, cap * sizeof(*v));
        if (v)
            u->waiting = v;
        xmppd_commit_hold **h = v ? realloc(u->waiting_holds, cap * sizeof(*h)) : NULL;
        if (!h)
            return -1;
        u->waiting_holds = h;
        u->cap_waiting = cap;
    }
    if (!u->loading) {
        off_count_req *r = calloc(1, sizeof(*r));
        if (!r || !(r->user = strdup(u->user))) {
            free(r);
            return -1;
        }
        r->st = st;
        u->loading = true;
        xmppd_auth_exists(st->m, xmppd_module_host(st->m), u->user, off_on_exists, r);
    }
    u->waiting_holds[u->n_waiting] = hold;
    u->waiting[u->n_waiting++] = xmppd_stanza_ref(msg);
    return 0;
}

static bool off_storable(const xmppd_stanza *msg)
{
    const char *t = xmppd_stanza_attr(msg, "type");
    if (t && strcmp(t, "normal") != 0 && strcmp(t, "chat") != 0)
        return false;
    return xmppd_stanza_child(msg, "body", NULL) != NULL;
}

static int off_on_message(xmppd_event *ev, void *ud)
{
    off_state *st = ud;
    if (!ev->to || !ev->to->node || !off_storable(ev->stanza))
        return XMPPD_PASS;
    off_user *u = off_get(st, ev->to->node);
    if (!u)
        return XMPPD_PASS; /* OOM: the kernel bounces it */
    /* The sender's stream management answers for this message only once
     * it is committed (a hold on a server-made or remote stanza's session
     * is none). */
    xmppd_commit_hold *hold = ev->session ? xmppd_session_hold_commit(ev->session) : NULL;
    if (u->loaded) {
        off_accept(st, u, ev->stanza, hold);
    } else if (off_wait_count(st, u, ev->stanza, hold) < 0) {
        xmppd_commit_release(hold);
        off_drop(st, u->user, false);
        return XMPPD_PASS;
    }
    return XMPPD_HANDLED;
}

/* ---- delivering -------------------------------------------------------------- */

static void off_flush_end(off_flush *f)
{
    off_user *u = off_find(f->st, f->user);
    if (u) {
        u->flushing = false;
        off_drop(f->st, f->user, false);
    }
    xmppd_session_unref(f->sess);
    free(f->user);
    free(f);
}

static void off_on_deleted(int status, void *ud)
{
    off_flush *f = ud;
    off_user *u = off_find(f->st, f->user);
    if (status != XMPPD_STORE_OK) {
        /* Delivered twice next time rather than lost. */
        if (status != XMPPD_STORE_CANCELLED)
            xmppd_log(f->st->m, XMPPD_LOG_ERROR, "deleting delivered offline messages of %s failed",
                      f->user);
    } else if (u && u->loaded) {
        u->count = u->count > f->delivered ? u->count - f->delivered : 0;
    }
    off_flush_end(f);
}

/* Is msg in the account's MAM archive (stamped by it, XEP-0359)? */
static bool off_archived(const xmppd_stanza *msg, const char *bare)
{
    for (const xmppd_stanza *c = xmppd_stanza_first(msg); c; c = xmppd_stanza_next(c)) {
        const char *by = xmppd_stanza_attr(c, "by");
        if (strcmp(xmppd_stanza_name(c), "stanza-id") == 0 && strcmp(xmppd_stanza_ns(c), OFF_NS_SID) == 0 &&
            by && strcmp(by, bare) == 0)
            return true;
    }
    return false;
}

/* The delivered messages reached the socket (or were unreadable): only now
 * are they removed, oldest first. A connection lost before that keeps
 * them for the next login (delivered twice rather than lost); once they
 * are out, stream management re-routes what the client did not
 * acknowledge (mod_smacks), which stores it here again. */
static void off_on_sent(int status, void *ud)
{
    off_flush *f = ud;
    if (status != XMPPD_SENT_OK) {
        if (status == XMPPD_SENT_LOST)
            xmppd_log(f->st->m, XMPPD_LOG_INFO,
                      "offline messages of %s kept: the connection ended before they were sent", f->user);
        off_flush_end(f);
        return;
    }
    xmppd_archive_filter q = { .max = f->delivered };
    xmppd_archive_delete(f->st->store, f->user, &q, off_on_deleted, f);
}

/* Sends one stored message to the session (unless skip_archived and the
 * archive has it); false if it does not parse. */
static bool off_deliver_one(off_flush *f, xmppd_stanza_reader *rd, const xmppd_archive_item *it,
                            bool skip_archived)
{
    const char *xml = json_string_value(it->value);
    xmppd_stanza *msg = xml ? xmppd_stanza_reader_parse(rd, xml, json_string_length(it->value)) : NULL;
    if (!msg) {
        xmppd_log(f->st->m, XMPPD_LOG_WARN, "dropping an unreadable offline message of %s (id %s)",
                  f->user, it->id ? it->id : "?");
        return false;
    }
    const xmppd_jid *jid = xmppd_session_jid(f->sess);
    if (!skip_archived || !jid || !off_archived(msg, jid->bare))
        xmppd_session_send(f->sess, msg);
    xmppd_stanza_unref(msg);
    return true;
}

static void off_on_stored_items(int status, const xmppd_archive_item *items, size_t n,
                                bool complete, void *ud)
{
    off_flush *f = ud;
    if (status != XMPPD_STORE_OK || n == 0 || xmppd_session_closed(f->sess)) {
        if (status != XMPPD_STORE_OK && status != XMPPD_STORE_CANCELLED)
            xmppd_log(f->st->m, XMPPD_LOG_ERROR, "reading offline messages of %s failed", f->user);
        off_flush_end(f);
        return;
    }
    bool skip_archived = xmppd_session_get(f->sess, f->st->m) == &off_mam_session;
    /* One parser for the whole queue: building one per message was a
     * sixth of the delivery's CPU. */
    xmppd_stanza_reader *rd = xmppd_stanza_reader_new(XMPPD_NS_CLIENT);
    if (!rd) {
        off_flush_end(f); /* OOM: delivered next time */
        return;
    }
    for (size_t i = 0; i < n; i++)
        off_deliver_one(f, rd, &items[i], skip_archived);
    xmppd_stanza_reader_free(rd);
    /* Removed only once the kernel has the bytes (a crash before that
     * would lose them); until then they stay stored. Items in the archive
     * (Bind2 with MAM) go with them. */
    f->delivered = n;
    if (xmppd_session_when_sent(f->st->m, f->sess, off_on_sent, f) < 0)
        off_flush_end(f); /* OOM: delivered again next time */
}

/* XEP-0386 §2.2: a Bind2 session reads its history from MAM. */
static int off_on_bind2_bound(xmppd_event *ev, void *ud)
{
    off_state *st = ud;
    if (ev->session && xmppd_use(xmppd_module_host(st->m), "mam"))
        xmppd_session_set(ev->session, st->m, &off_mam_session);
    return XMPPD_PASS;
}

/* Initial presence (RFC 6121 §4.2): the time to hand over stored messages. */
static int off_on_presence(xmppd_event *ev, void *ud)
{
    off_state *st = ud;
    const xmppd_presence_info *info = ev->data;
    const char *user = ev->session ? xmppd_session_user(ev->session) : NULL;
    if (!info || !info->initial || !user)
        return XMPPD_PASS;
    off_user *u = off_get(st, user);
    if (!u || u->flushing)
        return XMPPD_PASS; /* another resource is getting them */
    off_flush *f = calloc(1, sizeof(*f));
    if (!f || !(f->user = strdup(user))) {
        free(f);
        off_drop(st, user, false);
        return XMPPD_PASS;
    }
    f->st = st;
    f->sess = xmppd_session_ref(ev->session);
    u->flushing = true;
    xmppd_archive_filter q = { 0 };
    xmppd_archive_query(st->store, user, &q, off_on_stored_items, f);
    return XMPPD_PASS;
}

static int off_on_user_deleted(xmppd_event *ev, void *ud)
{
    const char *user = ev->data;
    if (user)
        off_drop(ud, user, true);
    return XMPPD_PASS;
}

/* ---- module ---------------------------------------------------------------------- */

static void off_unload(xmppd_module *m)
{
    off_state *st = xmppd_module_data(m);
    if (!st)
        return;
    /* Every request in flight was answered CANCELLED before this (and has
     * freed itself): what is left is the accounts table. */
    for (size_t i = 0; i < st->n_buckets; i++) {
        for (off_user *u = st->buckets[i], *next; u; u = next) {
            next = u->next;
            off_user_free(u);
        }
    }
    free(st->buckets);
    free(st);
    xmppd_module_set_data(m, NULL);
}

static int off_load(xmppd_module *m, const void *conf)
{
    off_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -1;
    st->m = m;
    xmppd_module_set_data(m, st);
    static const double lengths[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 10000 };
    st->queue = xmppd_metric_new(m, "xmppd_offline_queue_length", XMPPD_METRIC_HISTOGRAM,
                                 "Messages an account has waiting, seen each time one is stored",
                                 NULL, lengths, sizeof(lengths) / sizeof(lengths[0]));
    st->n_buckets = 64;
    st->buckets = calloc(st->n_buckets, sizeof(*st->buckets));
    st->store = st->buckets ? xmppd_store_open(m, "offline", XMPPD_STORE_ARCHIVE) : NULL;
    if (!st->store ||
        xmppd_hook(m, "message/offline", off_on_message, XMPPD_PRIO_FALLBACK, st) < 0 ||
        xmppd_hook(m, "presence/broadcast", off_on_presence, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "bind2-bound", off_on_bind2_bound, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "user-deleted", off_on_user_deleted, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_disco_feature(m, OFF_FEATURE) < 0) {
        off_unload(m);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(offline,
    .version = "1.0",
    .summary = "XEP-0160 offline messages: stored, then delivered on initial presence",
    .specs = (const char *const[]){ "XEP-0160", "XEP-0203", NULL },
    .options = off_options,
    .conf_size = sizeof(off_conf),
    .load = off_load,
    .unload = off_unload);
