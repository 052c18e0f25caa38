/* mod_adhoc: XEP-0050 Ad-Hoc Commands, the framework other modules offer
 * commands through (adhoc_api.h says what it does for them).
 *
 * A module and not the kernel: the protocol needs nothing the SDK lacks
 * (an IQ handler, disco hooks, timers), an operator who wants no commands
 * leaves it out, and the commands' lifetime is tied to the modules that
 * add them with xmppd_call, as modules/roster/roster_api.h does for
 * requests. A run's state lives here; mod_adhoc ends every run of a
 * command before the module that added it unloads.
 *
 * Each run that ends with an answer (completed, an error, canceled), and
 * each refused start (<forbidden/>), is an audit line (../log/audit.h):
 * requester, node, the JIDs its forms named (fields whose var ends in
 * "jid" or "jids", as XEP-0133's accountjid/accountjids), the outcome. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "../log/audit.h"
#include "adhoc_api.h"

#define ADHOC_ID_BYTES 12
#define ADHOC_PING_NODE "ping"
#define ADHOC_AUDIT_TARGET_MAX 1000 /* bytes of the JIDs an audit line names */

typedef struct adhoc_conf {
    long long session_timeout; /* ms */
    long long max_per_user;
    long long max_sessions;
} adhoc_conf;

static const xmppd_option adhoc_options[] = {
    { "session_timeout", XMPPD_OPT_DURATION, XMPPD_OFF(adhoc_conf, session_timeout), "10m", 1000,
      86400000LL, .doc = "a command run idle this long expires (XEP-0050 <session-expired/>), "
                         "unless the command sets its own timeout" },
    { "max_sessions_per_user", XMPPD_OPT_INT, XMPPD_OFF(adhoc_conf, max_per_user), "5", 1, 1000,
      .doc = "command runs one account may have open at once (more: <resource-constraint/>)" },
    { "max_sessions", XMPPD_OPT_INT, XMPPD_OFF(adhoc_conf, max_sessions), "1000", 1, 1000000,
      .doc = "command runs open at once on the host" },
    { NULL }
};

typedef struct adhoc_state adhoc_state;

/* One command a module added. */
typedef struct adhoc_reg {
    adhoc_state *st;
    xmppd_module *owner;
    xmppd_call *call; /* tied to owner: its cancel removes the command */
    adhoc_command c;  /* node and name are copies */
    struct adhoc_reg *next;
} adhoc_reg;

struct adhoc_session {
    adhoc_state *st;
    adhoc_reg *reg;          /* NULL once the run is over (an expired run's tombstone) */
    char id[2 * ADHOC_ID_BYTES + 1];
    xmppd_jid *requester;    /* full JID */
    xmppd_session *client;   /* the requester's session (a reference) when local */
    char *ip;
    char *target;            /* for the audit line: the JIDs the forms named (NULL: none) */
    xmppd_pending *p;        /* the request a stage is answering; NULL between stages */
    xmppd_stanza *notes;     /* a holder of <note/>s for the next answer */
    unsigned offered;        /* the actions the last stage offered */
    unsigned def_action;
    void *data;
    xmppd_timer *timer;
    uint64_t timeout_ms;
    uint64_t last_ms;        /* the last answer (or, for a tombstone, the expiry) */
    bool in_step;            /* inside the command's step(): an answer there is finished after it */
    bool over;               /* answered for the last time (the run ends after step returns) */
    struct adhoc_session *next;
};

struct adhoc_state {
    xmppd_module *m;
    adhoc_api api;
    adhoc_reg *regs;
    adhoc_session *sessions;
    size_t n_live;
    size_t n_tombs;
};

static adhoc_state *api_state(const adhoc_api *api)
{
    return (adhoc_state *)((char *)api - offsetof(adhoc_state, api));
}

/* ---- answers ------------------------------------------------------------------ */

/* The request's error with XEP-0050's own condition (bad-action,
 * bad-sessionid, bad-payload, session-expired) next to the stanza one. */
static xmppd_stanza *adhoc_error_reply(const xmppd_stanza *req, const char *cond, const char *spec)
{
    xmppd_stanza *r = xmppd_stanza_error_reply(req, NULL, cond, NULL);
    xmppd_stanza *err = r ? xmppd_stanza_child(r, "error", NULL) : NULL;
    if (err && spec)
        xmppd_stanza_tag(err, spec, ADHOC_NS);
    return r;
}

static const char *action_name(unsigned a)
{
    switch (a) {
    case ADHOC_NEXT: return "next";
    case ADHOC_PREV: return "prev";
    case ADHOC_COMPLETE: return "complete";
    default: return "execute";
    }
}

/* The <command/> answer to the kept request. */
static xmppd_stanza *adhoc_answer(adhoc_session *s, const char *status, xmppd_stanza *form)
{
    const xmppd_event *ev = xmppd_pending_event(s->p);
    xmppd_stanza *r = xmppd_stanza_reply(ev->stanza);
    xmppd_stanza *cmd = r ? xmppd_stanza_tag(r, "command", ADHOC_NS) : NULL;
    if (!cmd) {
        xmppd_stanza_unref(r);
        xmppd_stanza_unref(form);
        return NULL;
    }
    xmppd_stanza_set_attr(cmd, "node", s->reg->c.node);
    xmppd_stanza_set_attr(cmd, "sessionid", s->id);
    xmppd_stanza_set_attr(cmd, "status", status);
    if (strcmp(status, "executing") == 0) {
        xmppd_stanza *acts = xmppd_stanza_tag(cmd, "actions", NULL);
        if (acts) {
            xmppd_stanza_set_attr(acts, "execute", action_name(s->def_action));
            static const unsigned order[] = { ADHOC_PREV, ADHOC_NEXT, ADHOC_COMPLETE };
            for (size_t i = 0; i < 3; i++)
                if (s->offered & order[i])
                    xmppd_stanza_tag(acts, action_name(order[i]), NULL);
        }
    }
    if (s->notes) {
        xmppd_stanza *n;
        while ((n = xmppd_stanza_first(s->notes))) {
            xmppd_stanza_ref(n);
            xmppd_stanza_remove(s->notes, n);
            xmppd_stanza_add(cmd, n);
        }
    }
    if (form && !xmppd_stanza_add(cmd, form)) {
        xmppd_stanza_unref(r);
        return NULL;
    }
    return r;
}

/* ---- runs ------------------------------------------------------------------- */

static void session_unlink(adhoc_session *s)
{
    adhoc_state *st = s->st;
    for (adhoc_session **pp = &st->sessions; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
}

static void session_free(adhoc_session *s)
{
    if (s->timer)
        xmppd_timer_cancel(s->timer);
    xmppd_jid_free(s->requester);
    if (s->client)
        xmppd_session_unref(s->client);
    free(s->ip);
    free(s->target);
    xmppd_stanza_unref(s->notes);
    free(s);
}

/* ---- audit ------------------------------------------------------------------ */

static void audit(adhoc_state *st, const xmppd_jid *who, const char *ip, const char *node,
                  const char *target, const char *result)
{
    log_audit_entry e = { .via = "adhoc", .actor = who ? who->full : NULL, .ip = ip,
                          .command = node, .target = target, .result = result };
    log_audit(xmppd_module_host(st->m), &e);
}

static bool jid_field(const char *var)
{
    size_t n = strlen(var);
    return (n >= 3 && strcmp(var + n - 3, "jid") == 0) || (n >= 4 && strcmp(var + n - 4, "jids") == 0);
}

/* Remembers the JIDs a submitted form names (a later stage's replace an
 * earlier's), cut to ADHOC_AUDIT_TARGET_MAX bytes. */
static void remember_target(adhoc_session *s, const xmppd_form *form)
{
    char buf[ADHOC_AUDIT_TARGET_MAX + 1] = "";
    size_t len = 0;
    for (size_t i = 0; form && i < xmppd_form_nfields(form); i++) {
        const char *var = xmppd_form_field_var(form, i);
        size_t n = 0;
        const char *const *v = var && jid_field(var) ? xmppd_form_values(form, var, &n) : NULL;
        for (size_t k = 0; v && k < n && len < ADHOC_AUDIT_TARGET_MAX; k++) {
            int w = snprintf(buf + len, sizeof(buf) - len, "%s%s", len ? " " : "", v[k]);
            len = w < 0 ? len : len + (size_t)w < sizeof(buf) ? len + (size_t)w : sizeof(buf) - 1;
        }
    }
    if (!len)
        return;
    free(s->target);
    s->target = strdup(buf);
}

static void audit_run(adhoc_session *s, const char *result)
{
    if (s->reg)
        audit(s->st, s->requester, s->ip, s->reg->c.node, s->target, result);
}

/* The run is over: an unanswered stage gets <service-unavailable/>, the
 * command's end() frees its data. The session becomes a tombstone when
 * it expired (so the requester hears <session-expired/>; its timer frees
 * it later), else goes. */
static void session_end(adhoc_session *s, bool tombstone)
{
    adhoc_state *st = s->st;
    adhoc_reg *reg = s->reg;
    if (s->p)
        xmppd_pending_error(s->p, NULL, "service-unavailable", NULL);
    s->p = NULL;
    s->reg = NULL;
    st->n_live--;
    if (reg && reg->c.end)
        reg->c.end(&st->api, s, reg->c.ud);
    if (!tombstone) {
        session_unlink(s);
        session_free(s);
        return;
    }
    st->n_tombs++;
    s->last_ms = xmppd_now_ms();
    /* Tombstones are bounded like runs: the oldest other one goes. */
    while (st->n_tombs > (size_t)((const adhoc_conf *)xmppd_module_conf(st->m))->max_sessions) {
        adhoc_session *oldest = NULL;
        for (adhoc_session *t = st->sessions; t; t = t->next)
            if (!t->reg && t != s && (!oldest || t->last_ms < oldest->last_ms))
                oldest = t;
        if (!oldest)
            break;
        st->n_tombs--;
        session_unlink(oldest);
        session_free(oldest);
    }
}

/* Ends a run from outside its step (the requester left, unloads). */
static void session_stop(adhoc_session *s)
{
    if (s->in_step) { /* its step is on the stack: end it once step returns */
        s->over = true;
        return;
    }
    session_end(s, false);
}

/* How long an expired run's tombstone answers <session-expired/>: a client
 * coming back after a long pause should hear that, not <bad-sessionid/>
 * (tombstones are few: bounded by max_sessions). */
#define ADHOC_TOMBSTONE_MIN_MS 300000

static uint64_t tombstone_ms(const adhoc_session *s)
{
    return s->timeout_ms > ADHOC_TOMBSTONE_MIN_MS ? s->timeout_ms : ADHOC_TOMBSTONE_MIN_MS;
}

/* The expiry timer: a run idle for its timeout (a stage being answered is
 * not idle) becomes a tombstone, which goes after tombstone_ms. */
static uint64_t session_tick(void *ud)
{
    adhoc_session *s = ud;
    uint64_t now = xmppd_now_ms();
    uint64_t due = s->last_ms + (s->reg ? s->timeout_ms : tombstone_ms(s));
    if (now < due)
        return due - now;
    if (s->reg && (s->p || s->in_step))
        return s->timeout_ms;
    if (s->reg) {
        session_end(s, true);
        return tombstone_ms(s);
    }
    s->timer = NULL; /* freed when this returns 0 */
    s->st->n_tombs--;
    session_unlink(s);
    session_free(s);
    return 0;
}

/* After an answer to a stage: the run goes on (idle from now) or ends. */
static void session_answered(adhoc_session *s, bool last)
{
    s->p = NULL;
    s->last_ms = xmppd_now_ms();
    if (!last)
        return;
    if (s->in_step)
        s->over = true;
    else
        session_end(s, false);
}

/* ---- the API's session calls ------------------------------------------------ */

static const xmppd_jid *api_requester(const adhoc_session *s)
{
    return s->requester;
}

static const char *api_ip(const adhoc_session *s)
{
    return s->ip;
}

static void api_set_data(adhoc_session *s, void *data)
{
    s->data = data;
}

static void *api_data(const adhoc_session *s)
{
    return s->data;
}

static void api_note(adhoc_session *s, const char *type, const char *text)
{
    if (!s->notes)
        s->notes = xmppd_stanza_new("notes", ADHOC_NS);
    xmppd_stanza *n = s->notes ? xmppd_stanza_tag(s->notes, "note", ADHOC_NS) : NULL;
    if (!n)
        return;
    xmppd_stanza_set_attr(n, "type", type ? type : "info");
    if (text)
        xmppd_stanza_add_text(n, text, strlen(text));
}

static void api_next(adhoc_session *s, xmppd_stanza *form, unsigned actions, unsigned def)
{
    if (!s->p || !s->reg) { /* answered already: a bug in the command */
        xmppd_stanza_unref(form);
        return;
    }
    actions &= ADHOC_NEXT | ADHOC_PREV | ADHOC_COMPLETE;
    if (!actions)
        actions = ADHOC_COMPLETE;
    if (!(def & actions)) {
        def = actions & ADHOC_NEXT ? ADHOC_NEXT : actions & ADHOC_COMPLETE ? ADHOC_COMPLETE
                                                                           : ADHOC_PREV;
    }
    s->offered = actions;
    s->def_action = def;
    xmppd_pending_reply(s->p, adhoc_answer(s, "executing", form));
    session_answered(s, false);
}

static void api_complete(adhoc_session *s, xmppd_stanza *form)
{
    if (!s->p || !s->reg) {
        xmppd_stanza_unref(form);
        return;
    }
    xmppd_pending_reply(s->p, adhoc_answer(s, "completed", form));
    audit_run(s, "completed");
    session_answered(s, true);
}

static void api_error(adhoc_session *s, const char *type, const char *condition, const char *text)
{
    if (!s->p || !s->reg)
        return;
    xmppd_pending_error(s->p, type, condition, text);
    char result[160];
    snprintf(result, sizeof(result), "error: %s%s%.100s", condition, text ? ": " : "", text ? text : "");
    audit_run(s, result);
    session_answered(s, true);
}

/* ---- commands ----------------------------------------------------------------- */

static adhoc_reg *reg_find(adhoc_state *st, const char *node)
{
    for (adhoc_reg *r = st->regs; r; r = r->next)
        if (strcmp(r->c.node, node) == 0)
            return r;
    return NULL;
}

/* Removes r: its runs end first (their end() while r's module is loaded).
 * None of them is inside its step (api_add refuses to replace a command
 * from inside one of its steps; a module cannot unload inside its own
 * step). */
static void reg_remove(adhoc_reg *r)
{
    adhoc_state *st = r->st;
    adhoc_session *s = st->sessions;
    while (s) {
        adhoc_session *next = s->next;
        if (s->reg == r)
            session_stop(s);
        s = next;
    }
    for (adhoc_reg **pp = &st->regs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    free((char *)r->c.node);
    free((char *)r->c.name);
    free(r);
}

/* The module that added r unloads (xmppd_call's cancel). */
static void reg_cancelled(void *p)
{
    adhoc_reg *r = p;
    xmppd_call_finish(r->call); /* false: cancelled; frees it */
    r->call = NULL;
    reg_remove(r);
}

static int api_add(const adhoc_api *api, xmppd_module *caller, const adhoc_command *c)
{
    adhoc_state *st = api_state(api);
    if (!c || !c->node || !*c->node || !c->name || !c->step)
        return -1;
    adhoc_reg *old = reg_find(st, c->node);
    if (old && (!caller || !old->owner ||
                strcmp(xmppd_module_name(old->owner), xmppd_module_name(caller)) != 0)) {
        xmppd_log(st->m, XMPPD_LOG_WARN, "command %s is offered by another module already", c->node);
        return -1;
    }
    for (adhoc_session *t = st->sessions; old && t; t = t->next)
        if (t->reg == old && t->in_step) {
            xmppd_log(st->m, XMPPD_LOG_WARN, "command %s replaced from inside its own step", c->node);
            return -1;
        }
    adhoc_reg *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->st = st;
    r->owner = caller;
    r->c = *c;
    r->c.node = strdup(c->node);
    r->c.name = strdup(c->name);
    if (caller)
        r->call = xmppd_call_new(caller, reg_cancelled, r);
    if (!r->c.node || !r->c.name || (caller && !r->call)) {
        xmppd_call_finish(r->call);
        free((char *)r->c.node);
        free((char *)r->c.name);
        free(r);
        return -1;
    }
    if (old) { /* the same module again (or its newer instance): the new one replaces it */
        xmppd_call_finish(old->call);
        reg_remove(old);
    }
    r->next = st->regs;
    st->regs = r;
    return 0;
}

static bool reg_allowed(const adhoc_reg *r, adhoc_state *st, const xmppd_jid *from)
{
    return !r->c.allowed || (from && r->c.allowed(xmppd_module_host(st->m), from, r->c.ud));
}

/* ---- the protocol --------------------------------------------------------------- */

static int parse_action(const char *a, unsigned *out)
{
    if (!a || strcmp(a, "execute") == 0)
        *out = ADHOC_EXECUTE;
    else if (strcmp(a, "next") == 0)
        *out = ADHOC_NEXT;
    else if (strcmp(a, "prev") == 0)
        *out = ADHOC_PREV;
    else if (strcmp(a, "complete") == 0)
        *out = ADHOC_COMPLETE;
    else if (strcmp(a, "cancel") == 0)
        *out = 0;
    else
        return -1;
    return 0;
}

static adhoc_session *session_find(adhoc_state *st, const char *id)
{
    for (adhoc_session *s = st->sessions; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static size_t user_runs(adhoc_state *st, const xmppd_jid *from)
{
    size_t n = 0;
    for (adhoc_session *s = st->sessions; s; s = s->next)
        if (s->reg && xmppd_jid_bare_equal(s->requester, from))
            n++;
    return n;
}

static adhoc_session *session_new(adhoc_state *st, adhoc_reg *r, xmppd_event *ev)
{
    const adhoc_conf *c = xmppd_module_conf(st->m);
    adhoc_session *s = calloc(1, sizeof(*s));
    unsigned char raw[ADHOC_ID_BYTES];
    if (!s || xmppd_random(raw, sizeof(raw)) < 0) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(s->id + 2 * i, 3, "%02x", raw[i]);
    s->st = st;
    s->reg = r;
    s->requester = xmppd_jid_dup(ev->from);
    s->ip = ev->session ? strdup(xmppd_session_ip(ev->session)) : NULL;
    s->timeout_ms = r->c.timeout_ms ? r->c.timeout_ms : (uint64_t)c->session_timeout;
    s->last_ms = xmppd_now_ms();
    s->timer = xmppd_timer_add(st->m, s->timeout_ms, session_tick, s);
    if (!s->requester || (ev->session && !s->ip) || !s->timer) {
        session_free(s);
        return NULL;
    }
    if (ev->session)
        s->client = xmppd_session_ref(ev->session);
    s->next = st->sessions;
    st->sessions = s;
    st->n_live++;
    return s;
}

/* Runs one stage of s for the request ev. */
static int session_step(adhoc_session *s, xmppd_event *ev, unsigned action, const xmppd_form *form)
{
    s->p = xmppd_pending_new(ev);
    if (!s->p)
        return XMPPD_FAIL;
    adhoc_reg *r = s->reg;
    remember_target(s, form);
    s->in_step = true;
    r->c.step(&s->st->api, s, action, form, r->c.ud);
    s->in_step = false;
    if (s->over)
        session_end(s, false);
    return XMPPD_HANDLED;
}

static int adhoc_reply_spec(xmppd_event *ev, const char *cond, const char *spec)
{
    xmppd_reply(ev, adhoc_error_reply(ev->stanza, cond, spec));
    return XMPPD_HANDLED;
}

static int on_command(xmppd_event *ev, void *ud)
{
    adhoc_state *st = ud;
    const adhoc_conf *c = xmppd_module_conf(st->m);
    xmppd_stanza *cmd = xmppd_stanza_child(ev->stanza, "command", ADHOC_NS);
    const char *node = xmppd_stanza_attr(cmd, "node");
    const char *sid = xmppd_stanza_attr(cmd, "sessionid");
    unsigned action;
    if (!node || !*node || !ev->from)
        return xmppd_reply_error(ev, NULL, "bad-request", "a command needs a node");
    if (parse_action(xmppd_stanza_attr(cmd, "action"), &action) < 0)
        return adhoc_reply_spec(ev, "bad-request", "bad-action");

    /* The submitted form (§4.3: a data form inside <command/>). */
    xmppd_form *form = NULL;
    xmppd_stanza *x = xmppd_stanza_child(cmd, "x", XMPPD_NS_DATA);
    if (x) {
        form = xmppd_form_parse(x, NULL);
        const char *type = form ? xmppd_form_type(form) : NULL;
        if (type && strcmp(type, "cancel") == 0)
            action = 0;
        else if (!type || strcmp(type, "submit") != 0) {
            xmppd_form_free(form);
            return adhoc_reply_spec(ev, "bad-request", "bad-payload");
        }
    }

    int ret;
    adhoc_session *s = NULL;
    if (!sid || !*sid) {
        /* A new run (§3.2). */
        adhoc_reg *r = reg_find(st, node);
        if (!r)
            ret = xmppd_reply_error(ev, NULL, "item-not-found", NULL);
        else if (!reg_allowed(r, st, ev->from)) {
            audit(st, ev->from, ev->session ? xmppd_session_ip(ev->session) : NULL, r->c.node, NULL,
                  "error: forbidden");
            ret = xmppd_reply_error(ev, NULL, "forbidden", NULL);
        } else if (action != ADHOC_EXECUTE)
            ret = adhoc_reply_spec(ev, "bad-request", "bad-action");
        else if (st->n_live >= (size_t)c->max_sessions ||
                 user_runs(st, ev->from) >= (size_t)c->max_per_user)
            ret = xmppd_reply_error(ev, "wait", "resource-constraint", "too many command sessions");
        else if (!(s = session_new(st, r, ev)))
            ret = XMPPD_FAIL;
        else
            ret = session_step(s, ev, ADHOC_EXECUTE, form);
        xmppd_form_free(form);
        return ret;
    }

    /* A later stage of a run, only for the full JID that started it. */
    s = session_find(st, sid);
    if (!s || !xmppd_jid_equal(s->requester, ev->from) ||
        (s->reg && strcmp(s->reg->c.node, node) != 0))
        ret = adhoc_reply_spec(ev, "bad-request", "bad-sessionid");
    else if (!s->reg)
        ret = adhoc_reply_spec(ev, "not-allowed", "session-expired");
    else if (s->p || s->in_step)
        ret = xmppd_reply_error(ev, "wait", "unexpected-request", "the previous stage is running");
    else if (!reg_allowed(s->reg, st, ev->from)) {
        ret = xmppd_reply_error(ev, NULL, "forbidden", NULL);
        session_end(s, false);
    } else if (action == 0) { /* §3.4.2: cancel */
        s->p = xmppd_pending_new(ev);
        if (!s->p)
            ret = XMPPD_FAIL;
        else {
            xmppd_stanza_unref(s->notes);
            s->notes = NULL;
            xmppd_pending_reply(s->p, adhoc_answer(s, "canceled", NULL));
            audit_run(s, "canceled");
            s->p = NULL;
            session_end(s, false);
            ret = XMPPD_HANDLED;
        }
    } else {
        if (action == ADHOC_EXECUTE) /* §3.4: execute means the stage's default action */
            action = s->def_action;
        if (!(action & s->offered))
            ret = adhoc_reply_spec(ev, "bad-request", "bad-action");
        else
            ret = session_step(s, ev, action, form);
    }
    xmppd_form_free(form);
    return ret;
}

/* The requester's stream ended: its runs go (nobody can answer them). */
static int on_session_closed(xmppd_event *ev, void *ud)
{
    adhoc_state *st = ud;
    adhoc_session *s = st->sessions;
    while (s) {
        adhoc_session *next = s->next;
        if (s->client == ev->session && s->reg)
            session_stop(s);
        s = next;
    }
    return XMPPD_PASS;
}

/* ---- disco (XEP-0050 §2) -------------------------------------------------------- */

static int on_disco_items(xmppd_event *ev, void *ud)
{
    adhoc_state *st = ud;
    const char *node = xmppd_stanza_attr(ev->stanza, "node");
    if (!ev->to || ev->to->node || !node || strcmp(node, ADHOC_NS) != 0 || !ev->from)
        return XMPPD_PASS;
    for (adhoc_reg *r = st->regs; r; r = r->next) {
        if (!reg_allowed(r, st, ev->from))
            continue;
        xmppd_stanza *it = xmppd_stanza_tag(ev->stanza, "item", NULL);
        if (!it)
            return XMPPD_PASS;
        xmppd_stanza_set_attr(it, "jid", ev->to->full);
        xmppd_stanza_set_attr(it, "node", r->c.node);
        xmppd_stanza_set_attr(it, "name", r->c.name);
    }
    return XMPPD_PASS;
}

static void disco_identity(xmppd_stanza *q, const char *type, const char *name)
{
    xmppd_stanza *id = xmppd_stanza_tag(q, "identity", NULL);
    if (!id)
        return;
    xmppd_stanza_set_attr(id, "category", "automation");
    xmppd_stanza_set_attr(id, "type", type);
    if (name)
        xmppd_stanza_set_attr(id, "name", name);
}

static void disco_feature(xmppd_stanza *q, const char *var)
{
    xmppd_stanza *f = xmppd_stanza_tag(q, "feature", NULL);
    if (f)
        xmppd_stanza_set_attr(f, "var", var);
}

static int on_disco_info(xmppd_event *ev, void *ud)
{
    adhoc_state *st = ud;
    const char *node = xmppd_stanza_attr(ev->stanza, "node");
    if (!ev->to || ev->to->node || !node || !ev->from)
        return XMPPD_PASS;
    if (strcmp(node, ADHOC_NS) == 0) { /* §2.2: the list itself */
        disco_identity(ev->stanza, "command-list", NULL);
        return XMPPD_PASS;
    }
    adhoc_reg *r = reg_find(st, node);
    if (!r || !reg_allowed(r, st, ev->from))
        return XMPPD_PASS; /* mod_disco answers <item-not-found/> */
    disco_identity(ev->stanza, "command-node", r->c.name); /* §2.3 */
    disco_feature(ev->stanza, ADHOC_NS);
    disco_feature(ev->stanza, XMPPD_NS_DATA);
    return XMPPD_PASS;
}

/* ---- the built-in command: ping (as ejabberd offers it) ----------------------- */

static void ping_step(const adhoc_api *api, adhoc_session *s, unsigned action,
                      const xmppd_form *form, void *ud)
{
    (void)action, (void)form, (void)ud;
    api->note(s, "info", "Pong");
    api->complete(s, NULL);
}

/* ---- lifecycle -------------------------------------------------------------------- */

static int adhoc_load(xmppd_module *m, const void *conf)
{
    (void)conf;
    adhoc_state *st = calloc(1, sizeof(*st));
    if (!st)
        return xmppd_module_refuse(m, "out of memory");
    st->m = m;
    st->api = (adhoc_api){
        .version = ADHOC_API_VERSION, .size = sizeof(adhoc_api), .add = api_add,
        .requester = api_requester, .ip = api_ip, .set_data = api_set_data, .data = api_data,
        .note = api_note, .next = api_next, .complete = api_complete, .error = api_error,
    };
    xmppd_module_set_data(m, st);
    adhoc_command ping = { .node = ADHOC_PING_NODE, .name = "Ping", .step = ping_step };
    if (xmppd_iq_handle(m, "set", ADHOC_NS, XMPPD_IQ_HOST, on_command, st) < 0 ||
        xmppd_hook(m, "disco-items", on_disco_items, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "disco-info", on_disco_info, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "session-closed", on_session_closed, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_disco_feature(m, ADHOC_NS) < 0 ||
        xmppd_event_declare(m, "adhoc-ready", XMPPD_EVENT_ALL,
                            "data: const adhoc_api * of the instance; add your commands") < 0 ||
        api_add(&st->api, NULL, &ping) < 0 || xmppd_provide(m, "adhoc", &st->api) < 0) {
        while (st->regs)
            reg_remove(st->regs);
        free(st);
        return xmppd_module_refuse(m, "cannot register the ad-hoc commands handlers");
    }
    return 0;
}

/* Every module is loaded: those that offer commands add them now (and
 * again after a reload of this module, which starts with none). */
static void adhoc_ready(xmppd_module *m)
{
    adhoc_state *st = xmppd_module_data(m);
    xmppd_notify(xmppd_module_host(m), "adhoc-ready", NULL, &st->api);
}

static void adhoc_unload(xmppd_module *m)
{
    adhoc_state *st = xmppd_module_data(m);
    for (adhoc_session *s = st->sessions; s; s = s->next)
        s->timer = NULL; /* released with the module's registrations */
    while (st->sessions) {
        adhoc_session *s = st->sessions;
        if (s->reg)
            session_end(s, false);
        else {
            session_unlink(s);
            session_free(s);
        }
    }
    while (st->regs) {
        adhoc_reg *r = st->regs;
        xmppd_call_finish(r->call);
        reg_remove(r);
    }
    free(st);
}

XMPPD_MODULE(adhoc, .version = "1.0",
             .summary = "XEP-0050 ad-hoc commands: the framework modules offer commands through",
             .specs = (const char *const[]){ "XEP-0050", NULL },
             .options = adhoc_options, .conf_size = sizeof(adhoc_conf),
             .load = adhoc_load, .ready = adhoc_ready, .unload = adhoc_unload);
