/* XEP-0077 In-Band Registration.
 *
 * Before authentication (only with allow_registration): the stream feature
 * <register/>, the registration form (get) and account creation (set),
 * received through "stream-element" and answered on the stream itself;
 * creations are limited per IP address.
 * After authentication (always): password change and account removal for
 * the account itself, as IQ handlers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#define REG_NS "jabber:iq:register"
#define REG_FEATURE_NS "http://jabber.org/features/iq-register"

typedef struct reg_conf {
    bool allow_registration;
    long long throttle;        /* accounts per IP per period; 0: unlimited */
    long long throttle_period; /* ms */
    bool require_encryption;
    const char *instructions;
} reg_conf;

static const xmppd_option reg_options[] = {
    { "allow_registration", XMPPD_OPT_BOOL, XMPPD_OFF(reg_conf, allow_registration), "false", 0, 0,
      NULL, 0, "let anyone create an account on the host before logging in (an access rule "
      "\"register\" decides first when configured)" },
    { "registration_throttle", XMPPD_OPT_INT, XMPPD_OFF(reg_conf, throttle), "5", 0, 1000000, NULL,
      0, "at most this many accounts created per IP address per throttle period (0: no limit)" },
    { "registration_throttle_period", XMPPD_OPT_DURATION, XMPPD_OFF(reg_conf, throttle_period), "1h",
      1000, 30LL * 86400000, NULL, 0, "the period registration_throttle counts over" },
    { "require_encryption", XMPPD_OPT_BOOL, XMPPD_OFF(reg_conf, require_encryption), "true", 0, 0,
      NULL, 0, "offer and accept registration only on TLS-protected streams" },
    { "instructions", XMPPD_OPT_STRING, XMPPD_OFF(reg_conf, instructions),
      "Choose a user name and password to register with this server.", 0, 0, NULL, 0,
      "text of the <instructions/> element of the registration form" },
    { NULL }
};

/* One account creation counted against an address. */
typedef struct reg_mark {
    char ip[48];
    int64_t when_ms;
} reg_mark;

/* Module data. */
typedef struct reg_state {
    xmppd_module *m;
    reg_mark *marks; /* creations within the period, oldest first */
    size_t n_marks, cap_marks;
} reg_state;

/* A request waiting for the auth provider. */
typedef struct reg_req {
    reg_state *st;
    xmppd_pending *p;      /* the request (its session is always set) */
    char *user;
    int64_t mark;          /* creation: when_ms of its throttle mark; 0: none */
} reg_req;

/* ---- small helpers ---------------------------------------------------------- */

static void reg_text(xmppd_stanza *parent, const char *name, const char *text)
{
    xmppd_stanza *el = xmppd_stanza_tag(parent, name, NULL);
    if (el && text)
        xmppd_stanza_add_text(el, text, strlen(text));
}

/* Frees r; r->p was answered or dropped already. */
static void reg_req_free(reg_req *r)
{
    free(r->user);
    free(r);
}

/* NULL on OOM. ev->session must be set. */
static reg_req *reg_req_new(reg_state *st, xmppd_event *ev, const char *user)
{
    reg_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->st = st;
    r->p = xmppd_pending_new(ev);
    r->user = strdup(user);
    if (!r->p || !r->user) {
        xmppd_pending_drop(r->p);
        reg_req_free(r);
        return NULL;
    }
    return r;
}

/* ---- before authentication: answers written on the stream ------------------ */

/* Writes reply (consumed) to a stream that has no JID yet. */
static void reg_stream_send(xmppd_session *s, xmppd_stanza *reply)
{
    if (!reply)
        return;
    xmppd_stanza_set_attr(reply, "from", NULL);
    xmppd_stanza_set_attr(reply, "to", NULL);
    xmppd_session_write(s, reply);
    xmppd_stanza_unref(reply);
}

static void reg_stream_error(xmppd_session *s, xmppd_stanza *iq, const char *cond, const char *text)
{
    reg_stream_send(s, xmppd_stanza_error_reply(iq, NULL, cond, text));
}

/* The registration form (XEP-0077 §3.1). */
static void reg_send_form(reg_state *st, xmppd_session *s, xmppd_stanza *iq)
{
    const reg_conf *c = xmppd_module_conf(st->m);
    xmppd_stanza *r = xmppd_stanza_reply(iq);
    xmppd_stanza *q = r ? xmppd_stanza_tag(r, "query", REG_NS) : NULL;
    if (!q) {
        xmppd_stanza_unref(r);
        reg_stream_error(s, iq, "internal-server-error", NULL);
        return;
    }
    reg_text(q, "instructions", c->instructions);
    reg_text(q, "username", NULL);
    reg_text(q, "password", NULL);
    reg_stream_send(s, r);
}

/* Drops marks older than the period. */
static void reg_marks_prune(reg_state *st, const reg_conf *c)
{
    int64_t limit = xmppd_wallclock_ms() - c->throttle_period;
    size_t keep = 0;
    while (keep < st->n_marks && st->marks[keep].when_ms < limit)
        keep++;
    if (keep == 0)
        return;
    memmove(st->marks, st->marks + keep, (st->n_marks - keep) * sizeof(*st->marks));
    st->n_marks -= keep;
}

/* Counts a creation from ip now; returns its stamp, 0 when the address is
 * over its limit, -1 on OOM. */
static int64_t reg_mark_add(reg_state *st, const char *ip)
{
    const reg_conf *c = xmppd_module_conf(st->m);
    reg_marks_prune(st, c);
    size_t n = 0;
    for (size_t i = 0; i < st->n_marks; i++)
        if (strcmp(st->marks[i].ip, ip) == 0)
            n++;
    if (c->throttle > 0 && (long long)n >= c->throttle)
        return 0;
    if (st->n_marks == st->cap_marks) {
        size_t cap = st->cap_marks ? st->cap_marks * 2 : 16;
        reg_mark *v = realloc(st->marks, cap * sizeof(*v));
        if (!v)
            return -1;
        st->marks = v;
        st->cap_marks = cap;
    }
    reg_mark *mk = &st->marks[st->n_marks++];
    snprintf(mk->ip, sizeof(mk->ip), "%s", ip);
    mk->when_ms = xmppd_wallclock_ms();
    if (st->n_marks > 1 && mk->when_ms < st->marks[st->n_marks - 2].when_ms)
        mk->when_ms = st->marks[st->n_marks - 2].when_ms; /* keep the order */
    return mk->when_ms ? mk->when_ms : 1;
}

/* A failed creation does not count against its address. */
static void reg_mark_remove(reg_state *st, const char *ip, int64_t when_ms)
{
    for (size_t i = st->n_marks; i-- > 0;)
        if (st->marks[i].when_ms == when_ms && strcmp(st->marks[i].ip, ip) == 0) {
            memmove(st->marks + i, st->marks + i + 1, (st->n_marks - i - 1) * sizeof(*st->marks));
            st->n_marks--;
            return;
        }
}

static void reg_on_created(int result, void *ud)
{
    reg_req *r = ud;
    const xmppd_event *ev = xmppd_pending_event(r->p);
    xmppd_session *s = ev->session;
    xmppd_stanza *iq = ev->stanza;
    if (result != XMPPD_AUTH_OK && r->mark)
        reg_mark_remove(r->st, xmppd_session_ip(s), r->mark);
    if (result == XMPPD_AUTH_OK) {
        xmppd_log(r->st->m, XMPPD_LOG_INFO, "%s registered the account %s", xmppd_session_ip(s),
                  r->user);
        /* the account came from a client (mod_motd's welcome message) */
        xmppd_notify(xmppd_module_host(r->st->m), "user-registered", s, r->user);
    }
    if (!xmppd_session_closed(s)) {
        switch (result) {
        case XMPPD_AUTH_OK: reg_stream_send(s, xmppd_stanza_reply(iq)); break;
        case XMPPD_AUTH_EXISTS: reg_stream_error(s, iq, "conflict", NULL); break;
        case XMPPD_AUTH_INVALID:
            reg_stream_error(s, iq, "not-acceptable", "The user name or password is not acceptable");
            break;
        case XMPPD_AUTH_UNSUPPORTED: reg_stream_error(s, iq, "not-allowed", NULL); break;
        default: reg_stream_error(s, iq, "internal-server-error", NULL); break;
        }
    }
    xmppd_pending_drop(r->p); /* answered on the stream */
    reg_req_free(r);
}

static void reg_create(reg_state *st, xmppd_event *ev, xmppd_stanza *q)
{
    xmppd_session *s = ev->session;
    const char *name = xmppd_stanza_child_text(q, "username", NULL);
    const char *password = xmppd_stanza_child_text(q, "password", NULL);
    if (xmppd_stanza_child(q, "remove", NULL)) {
        reg_stream_error(s, ev->stanza, "not-authorized", "Log in to remove your account");
        return;
    }
    char *user = name && *name ? xmppd_nodeprep(name) : NULL;
    if (!user || !*user || !password || !*password) {
        free(user);
        reg_stream_error(s, ev->stanza, "not-acceptable",
                         "A valid user name and a non-empty password are required");
        return;
    }
    /* Access rule "register": the account asked for, from this address;
     * without a deciding rule, allow_registration. XEP-0077 §3.1 answers
     * a refused registration with <not-allowed/>. */
    const reg_conf *c = xmppd_module_conf(st->m);
    xmppd_jid *asked = xmppd_jid_make(user, xmppd_host_name(ev->host), NULL);
    bool ok = asked && xmppd_access_allowed(ev->host, "register", asked, xmppd_session_ip(s),
                                            c->allow_registration);
    xmppd_jid_free(asked);
    if (!ok) {
        free(user);
        xmppd_log(st->m, XMPPD_LOG_INFO, "%s: registration refused by the access rule",
                  xmppd_session_ip(s));
        reg_stream_error(s, ev->stanza, "not-allowed", "Registration is not allowed");
        return;
    }
    int64_t mark = reg_mark_add(st, xmppd_session_ip(s));
    reg_req *r = mark > 0 ? reg_req_new(st, ev, user) : NULL;
    free(user);
    if (!r) {
        if (mark > 0)
            reg_mark_remove(st, xmppd_session_ip(s), mark);
        if (mark == 0)
            reg_stream_error(s, ev->stanza, "resource-constraint",
                             "Too many accounts registered from your address; try again later");
        else
            reg_stream_error(s, ev->stanza, "internal-server-error", NULL);
        return;
    }
    r->mark = mark;
    xmppd_auth_create(st->m, ev->host, r->user, password, reg_on_created, r);
}

/* "stream-element": a registration IQ before authentication. */
/* Registration is offered at all: allow_registration, or an access rule
 * "register" that may allow some (decided per request). */
static bool reg_offered(const reg_state *st, xmppd_host *h)
{
    const reg_conf *c = xmppd_module_conf(st->m);
    return c->allow_registration || xmppd_access_has_rule(h, "register");
}

static int reg_on_stream_element(xmppd_event *ev, void *ud)
{
    reg_state *st = ud;
    const reg_conf *c = xmppd_module_conf(st->m);
    if (!reg_offered(st, ev->host))
        return XMPPD_PASS;
    xmppd_stanza *iq = ev->stanza;
    xmppd_stanza *q = xmppd_stanza_child(iq, "query", REG_NS);
    const char *type = xmppd_stanza_attr(iq, "type");
    if (!ev->session || xmppd_session_authenticated(ev->session) || !q || !type ||
        strcmp(xmppd_stanza_name(iq), "iq") != 0 || strcmp(xmppd_stanza_ns(iq), XMPPD_NS_CLIENT) != 0)
        return XMPPD_PASS;
    if (c->require_encryption && !xmppd_session_secure(ev->session))
        return XMPPD_PASS; /* as if we did not know it: the kernel closes */
    if (!xmppd_stanza_attr(iq, "id") || xmppd_stanza_first(iq) != q || xmppd_stanza_next(q)) {
        reg_stream_error(ev->session, iq, "bad-request", NULL);
        return XMPPD_HANDLED;
    }
    if (strcmp(type, "get") == 0)
        reg_send_form(st, ev->session, iq);
    else if (strcmp(type, "set") == 0)
        reg_create(st, ev, q);
    else if (strcmp(type, "result") != 0 && strcmp(type, "error") != 0)
        reg_stream_error(ev->session, iq, "bad-request", NULL);
    return XMPPD_HANDLED;
}

static int reg_on_features(xmppd_event *ev, void *ud)
{
    reg_state *st = ud;
    const reg_conf *c = xmppd_module_conf(st->m);
    if (ev->session && !xmppd_session_authenticated(ev->session) && reg_offered(st, ev->host) &&
        (xmppd_session_secure(ev->session) || !c->require_encryption))
        xmppd_stanza_tag(ev->stanza, "register", REG_FEATURE_NS);
    return XMPPD_PASS;
}

/* ---- after authentication: the account itself -------------------------------- */

static int reg_close_session(xmppd_session *s, void *ud)
{
    xmppd_session_close(s, "not-authorized", "Account removed");
    return 0;
}

static void reg_on_removed(int result, void *ud)
{
    reg_req *r = ud;
    xmppd_host *h = xmppd_pending_event(r->p)->host;
    if (result == XMPPD_AUTH_OK) {
        xmppd_pending_reply(r->p, xmppd_stanza_reply(xmppd_pending_event(r->p)->stanza));
        xmppd_log(r->st->m, XMPPD_LOG_INFO, "account %s removed by its owner", r->user);
        /* XEP-0077 §3.2: the account's streams end after the answer. */
        xmppd_user_sessions(h, r->user, reg_close_session, NULL);
    } else if (result == XMPPD_AUTH_UNSUPPORTED) {
        xmppd_pending_error(r->p, NULL, "not-allowed", "Accounts cannot be removed here");
    } else {
        xmppd_pending_error(r->p, NULL, "internal-server-error", NULL);
    }
    reg_req_free(r);
}

static void reg_on_password(int result, void *ud)
{
    reg_req *r = ud;
    switch (result) {
    case XMPPD_AUTH_OK:
        xmppd_pending_reply(r->p, xmppd_stanza_reply(xmppd_pending_event(r->p)->stanza));
        xmppd_log(r->st->m, XMPPD_LOG_INFO, "%s changed its password", r->user);
        break;
    case XMPPD_AUTH_UNSUPPORTED:
        xmppd_pending_error(r->p, NULL, "not-allowed", "Passwords cannot be changed here");
        break;
    case XMPPD_AUTH_INVALID:
        xmppd_pending_error(r->p, NULL, "not-acceptable", "The password is not acceptable");
        break;
    default: xmppd_pending_error(r->p, NULL, "internal-server-error", NULL); break;
    }
    reg_req_free(r);
}

/* The local account an IQ is from and about (no 'to', the host, or its own
 * bare JID), or NULL. */
static const char *reg_own_account(const xmppd_event *ev)
{
    if (!ev->session || !ev->from || !ev->from->node ||
        strcmp(ev->from->domain, xmppd_host_name(ev->host)) != 0)
        return NULL;
    if (ev->to && ev->to->node && !xmppd_jid_bare_equal(ev->from, ev->to))
        return NULL;
    return ev->from->node;
}

static int reg_on_get(xmppd_event *ev, void *ud)
{
    const char *user = reg_own_account(ev);
    if (!user)
        return xmppd_reply_error(ev, NULL, "forbidden", NULL);
    xmppd_stanza *r = xmppd_stanza_reply(ev->stanza);
    xmppd_stanza *q = r ? xmppd_stanza_tag(r, "query", REG_NS) : NULL;
    if (!q) {
        xmppd_stanza_unref(r);
        return XMPPD_FAIL;
    }
    reg_text(q, "registered", NULL);
    reg_text(q, "username", user);
    reg_text(q, "password", NULL);
    xmppd_reply(ev, r);
    return XMPPD_HANDLED;
}

static int reg_on_set(xmppd_event *ev, void *ud)
{
    reg_state *st = ud;
    const char *user = reg_own_account(ev);
    xmppd_stanza *q = xmppd_stanza_child(ev->stanza, "query", REG_NS);
    if (!user)
        return xmppd_reply_error(ev, NULL, "forbidden", NULL);
    if (!q)
        return xmppd_reply_error(ev, NULL, "bad-request", NULL);
    if (xmppd_stanza_child(q, "remove", NULL)) {
        reg_req *r = reg_req_new(st, ev, user);
        if (!r)
            return XMPPD_FAIL;
        xmppd_auth_remove(st->m, ev->host, user, reg_on_removed, r);
        return XMPPD_HANDLED;
    }
    const char *name = xmppd_stanza_child_text(q, "username", NULL);
    const char *password = xmppd_stanza_child_text(q, "password", NULL);
    if (name && !*name)
        name = NULL; /* an empty <username/> is the same as none */
    char *prepped = name ? xmppd_nodeprep(name) : NULL;
    bool same = prepped && strcmp(prepped, user) == 0;
    free(prepped);
    if (!password || (name && !same))
        return xmppd_reply_error(ev, NULL, "bad-request",
                                 name && !same ? "The user name is not yours" : "A <password/> is required");
    if (!*password)
        return xmppd_reply_error(ev, NULL, "not-acceptable", "The password may not be empty");
    reg_req *r = reg_req_new(st, ev, user);
    if (!r)
        return XMPPD_FAIL;
    xmppd_auth_set_password(st->m, ev->host, user, password, reg_on_password, r);
    return XMPPD_HANDLED;
}

/* ---- module -------------------------------------------------------------------- */

static void reg_unload(xmppd_module *m)
{
    reg_state *st = xmppd_module_data(m);
    if (!st)
        return;
    free(st->marks);
    free(st);
    xmppd_module_set_data(m, NULL);
}

static int reg_load(xmppd_module *m, const void *conf)
{
    reg_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -1;
    st->m = m;
    xmppd_module_set_data(m, st);
    unsigned targets = XMPPD_IQ_HOST | XMPPD_IQ_BARE;
    if (xmppd_iq_handle(m, "get", REG_NS, targets, reg_on_get, st) < 0 ||
        xmppd_iq_handle(m, "set", REG_NS, targets, reg_on_set, st) < 0 ||
        xmppd_disco_feature(m, REG_NS) < 0)
        goto fail;
    /* Hooked always: an access rule "register" can open registration
     * without a reload of this module. */
    if (xmppd_hook(m, "stream-features", reg_on_features, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "stream-element", reg_on_stream_element, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_event_declare(m, "user-registered", XMPPD_EVENT_ALL,
                            "a client registered an account in-band (XEP-0077), after user-created; "
                            "session: the registering stream; data: const char * localpart") < 0)
        goto fail;
    return 0;
fail:
    reg_unload(m);
    return -1;
}

XMPPD_MODULE(register,
    .version = "1.0",
    .summary = "XEP-0077 In-Band Registration, password change, account removal",
    .specs = (const char *const[]){ "XEP-0077", NULL },
    .options = reg_options,
    .conf_size = sizeof(reg_conf),
    .load = reg_load,
    .unload = reg_unload);
