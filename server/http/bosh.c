/* XMPP over BOSH (XEP-0124, XEP-0206): HTTP long polling as a carrier of
 * a c2s stream (net/xstream.h), so a BOSH client is an ordinary c2s
 * session.
 *
 * A session holds up to `hold` requests (XEP-0124 §7.1) and answers the
 * oldest one as soon as there is something to send (gathered per loop
 * turn), when a newer request would exceed `hold`, or after `wait`.
 * Requests are processed in `rid` order (§14.2): a request ahead of a gap
 * waits inside the window of `requests`, one outside it ends the session
 * with item-not-found; a repeated rid gets the answer it had (§14.3). A
 * session without an open request for `inactivity` seconds (or the
 * `pause` the client asked for, §10) is lost: stream management may keep
 * it. Terminal errors are <body type='terminate' condition=.../> answered
 * with HTTP 200 (§17.2); stream errors travel inside one with
 * condition='remote-stream-error' (XEP-0206 §7). */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c2s/c2s.h"
#include "http/http.h"
#include "util/strmap.h"
#include "xml/xmlstream.h"

#define NS_HTTPBIND "http://jabber.org/protocol/httpbind"
#define NS_XBOSH "urn:xmpp:xbosh"
#define BOSH_POLLING_S 2   /* shortest polling interval we announce (§12) */
#define BOSH_VER "1.11"
#define SID_LEN 24

typedef struct held {
    xmppd_http_request *req;
    uint64_t rid;
    uint64_t deadline;   /* monotonic ms: answered empty then */
} held;

typedef struct waiting {  /* a request ahead of a gap in the rids */
    xmppd_http_request *req;
    uint64_t rid;
    xmppd_stanza *body;
} waiting;

typedef struct sent {     /* answers kept for retransmission (§14.3) */
    uint64_t rid;
    char *text;
    size_t len;
} sent;

typedef struct bosh_sess bosh_sess;
struct bosh_sess {
    char sid[SID_LEN + 1];
    xstream *x;               /* the c2s stream; NULL once it released us */
    char ip[INET6_ADDRSTRLEN];
    uint64_t rid;             /* the last rid processed */
    unsigned hold, requests;
    uint64_t wait_ms, inactivity_ms, pause_ms;
    held *held;               /* oldest first, at most `requests` */
    size_t n_held;
    waiting *ahead;           /* at most `requests` */
    size_t n_ahead;
    sent *sent;               /* the last `requests` answers */
    size_t n_sent;
    char *out;                /* payloads waiting for a request */
    size_t out_len;
    char *create_attrs;       /* the creation answer's attributes, until it is sent */
    uint64_t create_rid;
    char *authid, *from;
    char *terminate;          /* the terminating body, once the stream ended */
    bool terminated;          /* the terminating body was answered */
    uint64_t last_empty_ms;   /* when the last empty request came, for §12 */
    bool last_answer_empty;
    struct event *timer;      /* wait deadlines and inactivity */
    struct event *flush;      /* answer what gathered during this loop turn */
    bool dropped;             /* out of the table; answers nothing more */
    int refs;
};

static strmap *g_sessions; /* sid -> bosh_sess */

static void sess_answer(bosh_sess *s);
static void sess_schedule(bosh_sess *s);
static void sess_unref(bosh_sess *s);
static void sess_end(bosh_sess *s);

/* ---- answers ---------------------------------------------------------------------------- */

static void respond_text(xmppd_http_request *req, const char *text, size_t len)
{
    http_request_respond(req, 200, "text/xml; charset=utf-8", text, len);
}

/* A terminal binding error for a request without a session (§17.2). */
static void respond_terminate(xmppd_http_request *req, const char *condition)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "<body xmlns='" NS_HTTPBIND "' type='terminate' condition='%s'/>",
                     condition);
    respond_text(req, buf, (size_t)n);
}

static void remember(bosh_sess *s, uint64_t rid, const char *text, size_t len)
{
    if (s->n_sent == s->requests) {
        free(s->sent[0].text);
        memmove(s->sent, s->sent + 1, (s->n_sent - 1) * sizeof(*s->sent));
        s->n_sent--;
    }
    char *copy = malloc(len);
    if (!copy)
        return;
    memcpy(copy, text, len);
    s->sent[s->n_sent++] = (sent){ rid, copy, len };
}

/* Answers the oldest held request with what is pending (maybe nothing). */
static void answer_oldest(bosh_sess *s)
{
    if (s->n_held == 0)
        return;
    held h = s->held[0];
    memmove(s->held, s->held + 1, (s->n_held - 1) * sizeof(*s->held));
    s->n_held--;
    size_t cap = 512 + s->out_len + (s->create_attrs ? strlen(s->create_attrs) : 0) +
                 (s->terminate ? strlen(s->terminate) : 0);
    char *buf = malloc(cap);
    if (!buf) {
        http_request_respond(h.req, 500, NULL, NULL, 0);
        return;
    }
    size_t n;
    const char *attrs = s->create_attrs ? s->create_attrs : "";
    if (s->terminate)
        n = (size_t)snprintf(buf, cap, "<body xmlns='" NS_HTTPBIND "'%s %s>", attrs, s->terminate);
    else
        n = (size_t)snprintf(buf, cap, "<body xmlns='" NS_HTTPBIND "'%s>", attrs);
    memcpy(buf + n, s->out ? s->out : "", s->out_len);
    n += s->out_len;
    n += (size_t)snprintf(buf + n, cap - n, "</body>");
    s->last_answer_empty = s->out_len == 0 && !s->create_attrs;
    free(s->out);
    s->out = NULL;
    s->out_len = 0;
    free(s->create_attrs);
    s->create_attrs = NULL;
    remember(s, h.rid, buf, n);
    respond_text(h.req, buf, n); /* ends the request: the session's hold on it too */
    free(buf);
    if (s->terminate) {
        s->terminated = true;
        if (s->x)
            xstream_carrier_flushed(s->x);
    }
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    bosh_sess *s = arg;
    s->refs++;
    sess_answer(s);
    sess_unref(s);
}

/* Something to send: the oldest held request takes it on this loop turn's end. */
static void sess_answer(bosh_sess *s)
{
    if ((s->out_len || s->create_attrs || s->terminate) && s->n_held)
        answer_oldest(s);
    sess_schedule(s);
}

static void pending_add(bosh_sess *s, const char *xml, size_t len)
{
    if (s->dropped)
        return;
    char *o = realloc(s->out, s->out_len + len);
    if (!o)
        return;
    memcpy(o + s->out_len, xml, len);
    s->out = o;
    s->out_len += len;
    event_active(s->flush, 0, 0);
}

/* ---- timers ---------------------------------------------------------------------------- */

static void on_timer_held(bosh_sess *s);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    bosh_sess *s = arg;
    s->refs++;
    on_timer_held(s);
    sess_unref(s);
}

static void on_timer_held(bosh_sess *s)
{
    uint64_t now = xmppd_now_ms();
    if (s->n_held == 0) {
        /* No request for `inactivity` (or the pause asked for): lost. */
        log_kernel("bosh", XMPPD_LOG_INFO, "%s: session %s inactive", s->ip, s->sid);
        sess_end(s);
        return;
    }
    while (s->n_held && s->held[0].deadline <= now)
        answer_oldest(s);
    sess_schedule(s);
}

/* The next wake-up: the oldest held request's deadline, or inactivity. */
static void sess_schedule(bosh_sess *s)
{
    if (!s->timer || s->dropped)
        return;
    uint64_t ms;
    if (s->n_held) {
        uint64_t now = xmppd_now_ms();
        ms = s->held[0].deadline > now ? s->held[0].deadline - now : 0;
    } else {
        ms = s->pause_ms ? s->pause_ms : s->inactivity_ms;
    }
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(s->timer, &tv);
}

/* ---- lifetime ---------------------------------------------------------------------------- */

static void sess_unref(bosh_sess *s)
{
    if (--s->refs > 0)
        return;
    for (size_t i = 0; i < s->n_sent; i++)
        free(s->sent[i].text);
    free(s->sent);
    free(s->held);
    free(s->ahead);
    free(s->out);
    free(s->create_attrs);
    free(s->authid);
    free(s->from);
    free(s->terminate);
    free(s);
}

/* The session is over for HTTP: requests it holds are answered with its
 * terminating body (or an empty one), its sid forgotten. */
static void sess_drop(bosh_sess *s)
{
    if (s->dropped)
        return;
    s->dropped = true;
    if (s->timer)
        event_free(s->timer);
    if (s->flush)
        event_free(s->flush);
    s->timer = s->flush = NULL;
    if (g_sessions && strmap_get(g_sessions, s->sid) == s)
        strmap_del(g_sessions, s->sid);
    if (!s->terminate)
        s->terminate = strdup("type='terminate'");
    while (s->n_held)
        answer_oldest(s);
    for (size_t i = 0; i < s->n_ahead; i++) {
        respond_terminate(s->ahead[i].req, "item-not-found");
        xmppd_stanza_unref(s->ahead[i].body);
    }
    s->n_ahead = 0;
    sess_unref(s);
}

/* The client is gone (inactivity): the stream is lost, not closed. */
static void sess_end(bosh_sess *s)
{
    if (s->x)
        xstream_carrier_lost(s->x); /* c2s tears down, then releases us */
    else
        sess_drop(s);
}

/* ---- the carrier --------------------------------------------------------------------------- */

static char *xml_attr_dup(const char *v)
{
    /* Values we write into attributes come from our own ids and host names;
     * anything with XML specials is refused rather than escaped. */
    return v && !strpbrk(v, "'\"<>&") ? strdup(v) : NULL;
}

static void car_header(void *cud, const char *id, const char *from)
{
    bosh_sess *s = cud;
    free(s->authid);
    free(s->from);
    s->authid = xml_attr_dup(id);
    s->from = xml_attr_dup(from);
}

static int car_element(void *cud, char *xml, size_t len)
{
    bosh_sess *s = cud;
    pending_add(s, xml, len);
    free(xml);
    return 0;
}

static void car_close(void *cud, const char *condition, const char *text)
{
    bosh_sess *s = cud;
    char buf[768];
    if (condition) {
        pending_add(s, buf, xstream_error_xml(buf, sizeof(buf), condition, text, true));
    }
    free(s->terminate);
    s->terminate = strdup(condition ? "type='terminate' condition='remote-stream-error' "
                                      "xmlns:stream='" XS_NS_STREAM "'"
                                    : "type='terminate'");
    if (s->flush && !s->dropped)
        event_active(s->flush, 0, 0);
}

static size_t car_backlog(void *cud)
{
    bosh_sess *s = cud;
    return s->out_len;
}

static void car_release(void *cud)
{
    bosh_sess *s = cud;
    s->x = NULL;
    sess_drop(s);
}

static const xstream_carrier bosh_carrier = {
    .name = "bosh",
    .default_ns = NS_HTTPBIND, /* stanzas inside <body/> carry xmlns='jabber:client' */
    .header = car_header,
    .element = car_element,
    .close = car_close,
    .backlog = car_backlog,
    .release = car_release,
};

/* ---- parsing bodies ----------------------------------------------------------------------------- */

typedef struct body_parse {
    xmppd_stanza *body;
    unsigned n;
    const char *error;
} body_parse;

static int bp_element(void *ud, xmppd_stanza *el)
{
    body_parse *bp = ud;
    if (bp->n++)
        xmppd_stanza_unref(el);
    else
        bp->body = el;
    return 0;
}

static void bp_error(void *ud, const char *condition)
{
    ((body_parse *)ud)->error = condition;
}

xmppd_stanza *bosh_parse_body(const char *data, size_t len, size_t max, unsigned max_depth)
{
    static const xs_callbacks cb = { .element = bp_element, .error = bp_error };
    static const char root[] = "<stream:stream xmlns='" NS_HTTPBIND "' xmlns:stream='" XS_NS_STREAM "'>";
    body_parse bp = { 0 };
    xs_parser *p = xs_new(&cb, &bp, max, max_depth + 1);
    bool ok = p && xs_feed(p, root, sizeof(root) - 1) == 0 && xs_feed(p, data, len) == 0 &&
              !bp.error && bp.n == 1 && xs_depth(p) == 1;
    xs_free(p);
    if (ok && (strcmp(xmppd_stanza_name(bp.body), "body") != 0 ||
               strcmp(xmppd_stanza_ns(bp.body), NS_HTTPBIND) != 0))
        ok = false;
    if (!ok) {
        xmppd_stanza_unref(bp.body);
        return NULL;
    }
    return bp.body;
}

static bool parse_u64(const char *v, uint64_t *out)
{
    if (!v || !*v)
        return false;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end || v[0] == '-' || n > 9007199254740991ULL) /* rid: at most 2^53 - 1 (§14.1) */
        return false;
    *out = n;
    return true;
}

/* ---- requests of a session ------------------------------------------------------------------ */

static void hold_request(bosh_sess *s, xmppd_http_request *req, uint64_t rid)
{
    s->held[s->n_held++] = (held){ req, rid, xmppd_now_ms() + s->wait_ms };
    xmppd_http_set_data(req, s);
    /* More than `hold` waiting: the oldest goes back now (§7.1). */
    while (s->n_held > s->hold && s->n_held > 0 &&
           !(s->n_held == 1 && (s->out_len || s->create_attrs || s->terminate)))
        answer_oldest(s);
    if (s->out_len || s->create_attrs || s->terminate)
        event_active(s->flush, 0, 0);
    sess_schedule(s);
}

/* Feeds the body's payload to the stream: restart, children, terminate. */
static void process_body(bosh_sess *s, xmppd_stanza *body)
{
    const char *restart = xmppd_stanza_attr(body, "xmpp:restart");
    if (restart && strcmp(restart, "true") == 0 && s->x) {
        xs_header h = { .to = xmppd_stanza_attr(body, "to"),
                        .lang = xmppd_stanza_attr(body, "xml:lang"), .version = "1.0",
                        .default_ns = XMPPD_NS_CLIENT };
        xstream_carrier_header(s->x, &h);
    }
    for (xmppd_stanza *c = xmppd_stanza_first(body), *next; c && s->x; c = next) {
        next = xmppd_stanza_next(c);
        xmppd_stanza_ref(c);
        xmppd_stanza_remove(body, c);
        xstream_carrier_element(s->x, c);
    }
    const char *type = xmppd_stanza_attr(body, "type");
    if (type && strcmp(type, "terminate") == 0 && s->x)
        xstream_carrier_close(s->x);
}

/* §12: two empty requests in a row closer than `polling`, the first of
 * which was answered empty, break the polling rule. */
static bool polling_violation(bosh_sess *s, const xmppd_stanza *body)
{
    bool empty = !xmppd_stanza_first(body) && !xmppd_stanza_attr(body, "xmpp:restart") &&
                 !xmppd_stanza_attr(body, "type") && !xmppd_stanza_attr(body, "pause");
    uint64_t now = xmppd_now_ms();
    bool bad = empty && s->hold == 0 && s->last_empty_ms && s->last_answer_empty &&
               now - s->last_empty_ms < BOSH_POLLING_S * 1000;
    s->last_empty_ms = empty ? now : 0;
    return bad;
}

static void process_in_order(bosh_sess *s, xmppd_http_request *req, uint64_t rid, xmppd_stanza *body)
{
    s->rid = rid;
    const char *pause = xmppd_stanza_attr(body, "pause");
    uint64_t p;
    if (polling_violation(s, body)) {
        s->terminate = strdup("type='terminate' condition='policy-violation'");
        hold_request(s, req, rid);
        sess_answer(s);
        if (s->x)
            xstream_carrier_lost(s->x);
        return;
    }
    if (pause && parse_u64(pause, &p)) {
        /* §10: a pause within maxpause; every held request returns now. */
        uint64_t max = (uint64_t)g_server.cfg->http.bosh.max_pause;
        if (p * 1000 > max || max == 0) {
            s->terminate = strdup("type='terminate' condition='policy-violation'");
            hold_request(s, req, rid);
            if (s->x)
                xstream_carrier_lost(s->x);
            return;
        }
        s->pause_ms = p * 1000;
        hold_request(s, req, rid);
        while (s->n_held)
            answer_oldest(s);
        sess_schedule(s);
        return;
    }
    s->pause_ms = 0;
    process_body(s, body);
    hold_request(s, req, rid);
}

/* Requests that waited for a gap, now in order. */
static void process_ahead(bosh_sess *s)
{
    for (bool found = true; found && s->x;) {
        found = false;
        for (size_t i = 0; i < s->n_ahead; i++) {
            if (s->ahead[i].rid != s->rid + 1)
                continue;
            waiting w = s->ahead[i];
            s->ahead[i] = s->ahead[--s->n_ahead];
            process_in_order(s, w.req, w.rid, w.body);
            xmppd_stanza_unref(w.body);
            found = true;
            break;
        }
    }
}

static void session_request(bosh_sess *s, xmppd_http_request *req, xmppd_stanza *body)
{
    uint64_t rid;
    if (!parse_u64(xmppd_stanza_attr(body, "rid"), &rid)) {
        respond_terminate(req, "bad-request");
        return;
    }
    if (rid <= s->rid) {
        /* §14.3: a repeated request gets the answer it had. */
        for (size_t i = 0; i < s->n_sent; i++)
            if (s->sent[i].rid == rid) {
                respond_text(req, s->sent[i].text, s->sent[i].len);
                return;
            }
        for (size_t i = 0; i < s->n_held; i++)
            if (s->held[i].rid == rid) {
                /* Still held: the old request is answered empty, this one waits. */
                answer_oldest(s);
                break;
            }
        if (rid + s->requests < s->rid + 1) {
            respond_terminate(req, "item-not-found");
            return;
        }
        hold_request(s, req, rid);
        return;
    }
    if (rid > s->rid + s->requests || s->n_ahead + s->n_held >= s->requests) {
        /* §14.3: beyond the window. */
        respond_terminate(req, "item-not-found");
        sess_end(s);
        return;
    }
    if (rid == s->rid + 1) {
        process_in_order(s, req, rid, body);
        process_ahead(s);
    } else {
        xmppd_http_set_data(req, s);
        s->ahead[s->n_ahead++] = (waiting){ req, rid, xmppd_stanza_ref(body) };
    }
}

/* ---- session creation (XEP-0124 §7.1, XEP-0206 §5) ------------------------------------------ */

static unsigned attr_uint(const xmppd_stanza *b, const char *name, unsigned def, unsigned max)
{
    uint64_t v;
    if (!parse_u64(xmppd_stanza_attr(b, name), &v))
        return def;
    return v > max ? max : (unsigned)v;
}

static void create_session(xmppd_http_request *req, xmppd_stanza *body)
{
    const http_bosh_conf *bc = &g_server.cfg->http.bosh;
    uint64_t rid;
    const char *to = xmppd_stanza_attr(body, "to");
    if (!parse_u64(xmppd_stanza_attr(body, "rid"), &rid) || !to) {
        respond_terminate(req, "bad-request");
        return;
    }
    char *host = xmppd_nameprep(to);
    bool known = host && xmppd_host_find(host);
    free(host);
    if (!known) {
        respond_terminate(req, "host-unknown");
        return;
    }
    bosh_sess *s = calloc(1, sizeof(*s));
    unsigned max_req = (unsigned)bc->max_requests;
    if (s) {
        s->refs = 1;
        s->requests = max_req;
        s->hold = attr_uint(body, "hold", 1, max_req - 1);
        s->wait_ms = (uint64_t)attr_uint(body, "wait", (unsigned)(bc->max_wait / 1000),
                                         (unsigned)(bc->max_wait / 1000)) * 1000;
        s->inactivity_ms = (uint64_t)bc->max_inactivity;
        s->rid = rid;
        s->held = calloc(max_req + 1, sizeof(*s->held));
        s->ahead = calloc(max_req, sizeof(*s->ahead));
        s->sent = calloc(max_req, sizeof(*s->sent));
        s->timer = evtimer_new(loop_base(), on_timer, s);
        s->flush = event_new(loop_base(), -1, 0, on_flush, s);
        snprintf(s->ip, sizeof(s->ip), "%s", req->ip);
        xstream_random_id(s->sid, sizeof(s->sid));
    }
    if (!s || !s->held || !s->ahead || !s->sent || !s->timer || !s->flush ||
        (!g_sessions && !(g_sessions = strmap_new())) || strmap_put(g_sessions, s->sid, s) < 0 ||
        !(s->x = c2s_open_carried(&bosh_carrier, s, req->ip, req->secure, NULL))) {
        if (s)
            sess_drop(s);
        http_request_respond(req, 500, NULL, NULL, 0);
        return;
    }
    s->n_held = 0;
    hold_request(s, req, rid);
    xs_header h = { .to = to, .lang = xmppd_stanza_attr(body, "xml:lang"),
                    .version = xmppd_stanza_attr(body, "xmpp:version"),
                    .default_ns = XMPPD_NS_CLIENT };
    if (!h.version)
        h.version = "1.0";
    xstream_carrier_header(s->x, &h);
    if (!s->x)
        return; /* refused at once; the terminate answer is out */
    char attrs[768];
    snprintf(attrs, sizeof(attrs),
             " xmlns:xmpp='" NS_XBOSH "' xmlns:stream='" XS_NS_STREAM "' sid='%s' wait='%llu' "
             "requests='%u' hold='%u' inactivity='%llu' polling='%d' maxpause='%llu' ver='" BOSH_VER
             "'%s%s%s authid='%s' secure='%s' ack='%llu' xmpp:version='1.0' xmpp:restartlogic='true'",
             s->sid, (unsigned long long)(s->wait_ms / 1000), s->requests, s->hold,
             (unsigned long long)(s->inactivity_ms / 1000), BOSH_POLLING_S,
             (unsigned long long)(bc->max_pause / 1000), s->from ? " from='" : "",
             s->from ? s->from : "", s->from ? "'" : "", s->authid ? s->authid : "",
             req->secure ? "true" : "false", (unsigned long long)rid);
    s->create_attrs = strdup(attrs);
    log_kernel("bosh", XMPPD_LOG_DEBUG, "%s: session %s created", s->ip, s->sid);
    event_active(s->flush, 0, 0);
}

/* ---- the route ---------------------------------------------------------------------------------- */

void bosh_handle(xmppd_http_request *req, void *ud)
{
    size_t len;
    const char *data = xmppd_http_body(req, &len);
    xmppd_stanza *body = data ? bosh_parse_body(data, len, (size_t)g_server.cfg->http.bosh.max_body,
                                                (unsigned)g_server.cfg->limits.max_depth)
                              : NULL;
    if (!body) {
        /* §17.1: the binding element is unacceptable. */
        http_request_respond(req, 400, "text/xml; charset=utf-8",
                             "<body xmlns='" NS_HTTPBIND "' type='terminate' condition='bad-request'/>",
                             sizeof("<body xmlns='" NS_HTTPBIND "' type='terminate' "
                                    "condition='bad-request'/>") - 1);
        return;
    }
    const char *sid = xmppd_stanza_attr(body, "sid");
    if (!sid) {
        create_session(req, body);
    } else {
        bosh_sess *s = g_sessions ? strmap_get(g_sessions, sid) : NULL;
        if (!s || s->terminated || !s->x)
            respond_terminate(req, "item-not-found"); /* §17.2: unknown sid */
        else {
            s->refs++; /* ending the session on the way must not free it under us */
            session_request(s, req, body);
            sess_unref(s);
        }
    }
    xmppd_stanza_unref(body);
}

/* The client closed a connection with a request the session held (the
 * request ends after this: forget it). */
void bosh_cancel(xmppd_http_request *req, void *ud)
{
    bosh_sess *s = xmppd_http_data(req);
    if (!s)
        return;
    for (size_t i = 0; i < s->n_held; i++)
        if (s->held[i].req == req) {
            memmove(s->held + i, s->held + i + 1, (s->n_held - i - 1) * sizeof(*s->held));
            s->n_held--;
            sess_schedule(s);
            return;
        }
    for (size_t i = 0; i < s->n_ahead; i++)
        if (s->ahead[i].req == req) {
            xmppd_stanza_unref(s->ahead[i].body);
            s->ahead[i] = s->ahead[--s->n_ahead];
            return;
        }
}

static int end_one(const char *sid, void *v, void *ud)
{
    bosh_sess **list = ud;
    bosh_sess *s = v;
    (void)sid;
    s->refs++;
    *list = s; /* one at a time: ending changes the map */
    return 1;
}

void bosh_shutdown_all(void)
{
    while (g_sessions && strmap_count(g_sessions) > 0) {
        bosh_sess *s = NULL;
        strmap_foreach(g_sessions, end_one, &s);
        if (!s)
            break;
        strmap_del(g_sessions, s->sid);
        if (s->x)
            xstream_carrier_lost(s->x);
        else
            sess_drop(s);
        sess_unref(s);
    }
    strmap_free(g_sessions);
    g_sessions = NULL;
}
