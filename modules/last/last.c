/* XEP-0012 Last Activity.
 *
 *  - to the host: the server's uptime in seconds;
 *  - to an account's bare JID: 0 while it has a session, else the seconds
 *    since its last session closed, with the status text of its last
 *    unavailable presence. Recorded in keyval store "lastlog" (key "",
 *    value {"time": unix seconds, "status": text}) when the account's last
 *    session closes.
 *
 * Authorization: the account itself and any account of this server may ask
 * (no roster lookup yet); requests from other servers get <forbidden/>. */
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#define LAST_NS "jabber:iq:last"

/* Per bound session that sent an unavailable presence with a status: that
 * text, until the session closes. In the session's slot and the instance's
 * list (unload frees what "session-closed" did not); holds a session ref. */
typedef struct last_sess {
    xmppd_session *s;
    char *status;
    bool account_deleted; /* record nothing when it closes */
    struct last_sess *prev, *next;
} last_sess;

/* Module data. */
typedef struct last_state {
    xmppd_module *m;
    xmppd_store *store;
    last_sess *head;
} last_state;

/* ---- replies ---------------------------------------------------------------- */

/* The answer to iq: <query seconds='N'>status</query>; NULL on OOM. */
static xmppd_stanza *last_query(const xmppd_stanza *iq, long long seconds, const char *status)
{
    char num[32];
    xmppd_stanza *r = xmppd_stanza_reply(iq);
    xmppd_stanza *q = r ? xmppd_stanza_tag(r, "query", LAST_NS) : NULL;
    if (!q) {
        xmppd_stanza_unref(r);
        return NULL;
    }
    snprintf(num, sizeof(num), "%lld", seconds < 0 ? 0 : seconds);
    xmppd_stanza_set_attr(q, "seconds", num);
    if (status && *status)
        xmppd_stanza_add_text(q, status, strlen(status));
    return r;
}

/* Replies to ev now with last_query(). */
static int last_answer(xmppd_event *ev, long long seconds, const char *status)
{
    xmppd_stanza *r = last_query(ev->stanza, seconds, status);
    if (!r)
        return XMPPD_FAIL;
    xmppd_reply(ev, r);
    return XMPPD_HANDLED;
}

/* The account an IQ to a bare JID asks about: its 'to', or the sender's. */
static const char *last_target(const xmppd_event *ev)
{
    return ev->to ? ev->to->node : ev->from ? ev->from->node : NULL;
}

static long long last_now(void)
{
    return (long long)(xmppd_wallclock_ms() / 1000);
}

/* xmppd_user_sessions visitor: one session is enough to know. */
static int last_stop(xmppd_session *s, void *ud)
{
    return 1;
}

/* ---- queries -------------------------------------------------------------- */

/* A query waiting for storage, then maybe for the auth provider. */
typedef struct last_req {
    last_state *st;
    xmppd_pending *p;
} last_req;

static void last_req_error(last_req *r, const char *cond, const char *text)
{
    xmppd_pending_error(r->p, NULL, cond, text);
    free(r);
}

static void last_on_exists(int result, void *ud)
{
    last_req *r = ud;
    if (result == XMPPD_AUTH_USER_UNKNOWN)
        last_req_error(r, "service-unavailable", NULL);
    else if (result == XMPPD_AUTH_OK)
        last_req_error(r, "item-not-found", "No logout recorded for this account");
    else
        last_req_error(r, "internal-server-error", NULL);
}

static void last_on_record(int status, json_t *value, void *ud)
{
    last_req *r = ud;
    xmppd_pending *p = r->p;
    const xmppd_event *ev = xmppd_pending_event(p);
    const char *user = last_target(ev); /* checked by last_on_get */
    if (status == XMPPD_STORE_NOT_FOUND) {
        xmppd_auth_exists(r->st->m, ev->host, user, last_on_exists, r);
        return;
    }
    json_t *t = json_object_get(value, "time");
    if (status != XMPPD_STORE_OK || !json_is_integer(t)) {
        last_req_error(r, "internal-server-error", NULL);
        return;
    }
    free(r);
    long long seconds = 0; /* logged in meanwhile */
    const char *text = NULL;
    if (xmppd_user_sessions(ev->host, user, last_stop, NULL) == 0) {
        seconds = last_now() - json_integer_value(t);
        text = json_string_value(json_object_get(value, "status"));
    }
    /* A NULL reply (OOM) answers internal-server-error. */
    xmppd_pending_reply(p, last_query(ev->stanza, seconds, text));
}

static int last_on_get(xmppd_event *ev, void *ud)
{
    last_state *st = ud;
    if (ev->to && !ev->to->node) /* the host: uptime */
        return last_answer(ev, last_now() - xmppd_server_started(), NULL);
    const char *user = last_target(ev);
    if (!user)
        return xmppd_reply_error(ev, NULL, "bad-request", NULL);
    /* Local accounts only: no roster to check a remote subscription. */
    if (!ev->from || !ev->from->node || !xmppd_host_find(ev->from->domain))
        return xmppd_reply_error(ev, NULL, "forbidden", NULL);
    if (xmppd_user_sessions(ev->host, user, last_stop, NULL) > 0)
        return last_answer(ev, 0, NULL);
    last_req *r = malloc(sizeof(*r));
    xmppd_pending *p = r ? xmppd_pending_new(ev) : NULL;
    if (!p) {
        free(r);
        return XMPPD_FAIL;
    }
    *r = (last_req){ st, p };
    xmppd_kv_get(st->store, user, "", last_on_record, r);
    return XMPPD_HANDLED;
}

/* ---- recording logouts ------------------------------------------------------- */

static void last_sess_free(last_state *st, last_sess *ls)
{
    if (ls->prev)
        ls->prev->next = ls->next;
    else
        st->head = ls->next;
    if (ls->next)
        ls->next->prev = ls->prev;
    xmppd_session_set(ls->s, st->m, NULL);
    xmppd_session_unref(ls->s);
    free(ls->status);
    free(ls);
}

/* The session's entry, created when missing; NULL on OOM. */
static last_sess *last_sess_get(last_state *st, xmppd_session *s)
{
    last_sess *ls = xmppd_session_get(s, st->m);
    if (ls || !(ls = calloc(1, sizeof(*ls))))
        return ls;
    ls->s = xmppd_session_ref(s);
    ls->next = st->head;
    if (st->head)
        st->head->prev = ls;
    st->head = ls;
    xmppd_session_set(s, st->m, ls);
    return ls;
}

/* Keeps the status text of the session's unavailable presence. */
static int last_on_presence(xmppd_event *ev, void *ud)
{
    last_state *st = ud;
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    if (!ev->session || !type || strcmp(type, "unavailable") != 0)
        return XMPPD_PASS;
    const char *text = xmppd_stanza_child_text(ev->stanza, "status", NULL);
    last_sess *ls = text ? last_sess_get(st, ev->session) : xmppd_session_get(ev->session, st->m);
    if (!ls)
        return XMPPD_PASS;
    free(ls->status);
    ls->status = text ? strdup(text) : NULL;
    return XMPPD_PASS;
}

static void last_on_stored(int status, void *ud)
{
    last_state *st = ud;
    if (status != XMPPD_STORE_OK && status != XMPPD_STORE_CANCELLED)
        xmppd_log(st->m, XMPPD_LOG_WARN, "could not record a logout time");
}

static int last_on_closed(xmppd_event *ev, void *ud)
{
    last_state *st = ud;
    xmppd_session *s = ev->session;
    const char *user = s ? xmppd_session_user(s) : NULL;
    last_sess *ls = s ? xmppd_session_get(s, st->m) : NULL;
    /* The closing session is already out of the account's list. */
    if (user && !(ls && ls->account_deleted) &&
        xmppd_user_sessions(ev->host, user, last_stop, NULL) == 0) {
        json_t *v = json_pack("{s:I}", "time", (json_int_t)last_now());
        if (v && ls && ls->status)
            json_object_set_new(v, "status", json_string(ls->status));
        if (v)
            xmppd_kv_set(st->store, user, "", v, last_on_stored, st);
        json_decref(v);
    }
    if (ls)
        last_sess_free(st, ls);
    return XMPPD_PASS;
}

static int last_mark_deleted(xmppd_session *s, void *ud)
{
    last_sess *ls = last_sess_get(ud, s);
    if (ls)
        ls->account_deleted = true;
    return 0;
}

/* An account removed while logged in: its sessions are about to close, and
 * must not write a record for it after its data was purged. */
static int last_on_user_deleted(xmppd_event *ev, void *ud)
{
    const char *user = ev->data;
    if (user)
        xmppd_user_sessions(ev->host, user, last_mark_deleted, ud);
    return XMPPD_PASS;
}

/* ---- module ------------------------------------------------------------------ */

static void last_unload(xmppd_module *m)
{
    last_state *st = xmppd_module_data(m);
    if (!st)
        return;
    while (st->head)
        last_sess_free(st, st->head);
    free(st);
    xmppd_module_set_data(m, NULL);
}

static int last_load(xmppd_module *m, const void *conf)
{
    last_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -1;
    st->m = m;
    xmppd_module_set_data(m, st);
    st->store = xmppd_store_open(m, "lastlog", XMPPD_STORE_KEYVAL);
    if (!st->store ||
        xmppd_iq_handle(m, "get", LAST_NS, XMPPD_IQ_HOST | XMPPD_IQ_BARE, last_on_get, st) < 0 ||
        xmppd_hook(m, "presence/broadcast", last_on_presence, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "session-closed", last_on_closed, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "user-deleted", last_on_user_deleted, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_disco_feature(m, LAST_NS) < 0) {
        last_unload(m);
        return -1;
    }
    return 0;
}

XMPPD_MODULE(last,
    .version = "1.0",
    .summary = "XEP-0012 Last Activity: server uptime, accounts' last logout",
    .specs = (const char *const[]){ "XEP-0012", NULL },
    .load = last_load,
    .unload = last_unload);
