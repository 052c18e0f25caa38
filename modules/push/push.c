/* XEP-0357 Push Notifications: wake a phone whose app is asleep.
 *
 * A client registers its app's push service (a pubsub service, reached
 * over s2s or as a local component) with <enable jid node/> and a
 * publish-options form; registrations are stored per account (keyval store
 * "push", one key per service JID and node). When a message worth it (a
 * body, an encrypted payload, a call), an offline-stored one, or a
 * subscription request arrives for an account none of whose sessions is
 * connected (all hibernated by stream management, or none at all), the
 * module publishes a urn:xmpp:push:summary notification to every
 * registration of the account (xmppd_iq_request), at most one per
 * registration every min_interval. A registration whose service answers
 * max_failures times in a row with an error (or not at all) is removed.
 *
 * Per account the module keeps, while it has registrations or work, the
 * registrations read from storage and a queue of operations run one at a
 * time (so two writes of one account never race on a storage pool). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "push_rules.h"

#define PUSH_BUCKETS 256

typedef struct push_conf {
    long long max_registrations;
    long long max_failures;
    long long min_interval; /* ms */
    long long timeout;      /* ms */
    bool include_body;
} push_conf;

static const xmppd_option push_options[] = {
    { "max_registrations", XMPPD_OPT_INT, XMPPD_OFF(push_conf, max_registrations), "5", 1, 100,
      .doc = "push registrations an account may have; a new one replaces the oldest" },
    { "max_failures", XMPPD_OPT_INT, XMPPD_OFF(push_conf, max_failures), "5", 1, 1000,
      .doc = "errors or timeouts in a row from a push service before its registration is removed" },
    { "min_interval", XMPPD_OPT_DURATION, XMPPD_OFF(push_conf, min_interval), "2s", 0, 3600000,
      .doc = "at most one notification per registration in this time (the woken app fetches everything)" },
    { "timeout", XMPPD_OPT_DURATION, XMPPD_OFF(push_conf, timeout), "30s", 1000, 300000,
      .doc = "how long a push service may take to answer a publish" },
    { "include_body", XMPPD_OPT_BOOL, XMPPD_OFF(push_conf, include_body), "false",
      .doc = "put the last message's body in notifications (it then passes through the app's push provider)" },
    { NULL }
};

/* One registration (XEP-0357 §5). */
typedef struct push_reg {
    char *key;          /* push_key(jid, node) */
    char *jid, *node;
    json_t *options;    /* {var: [values]} */
    int64_t since;      /* wall ms it was enabled: the oldest is replaced first */
    long long failures; /* consecutive; not stored */
    uint64_t last_push; /* monotonic ms; 0: never */
} push_reg;

enum op_kind { OP_ENABLE, OP_DISABLE, OP_NOTIFY, OP_DROP };

typedef struct push_op {
    struct push_op *next;
    enum op_kind kind;
    xmppd_pending *p;   /* ENABLE, DISABLE: the IQ answered when done */
    push_reg_req req;   /* ENABLE; DISABLE: jid and node (NULL: every node) */
    char *key;          /* DROP */
} push_op;

typedef struct push_mod push_mod;

typedef struct push_acct {
    struct push_acct *next; /* in its bucket */
    push_mod *mod;
    char *user;
    bool loaded, busy;      /* busy: a read or the running op's writes are out */
    push_reg *regs;
    size_t n;
    push_op *ops, *ops_tail;
    push_op *running;       /* its writes are out */
    int writes;
    bool write_failed;
    bool notify_queued;
    /* since the account was last active: what the notification summarises */
    long messages, subscriptions;
    char *sender, *body;
} push_acct;

struct push_mod {
    xmppd_module *m;
    const push_conf *conf;
    xmppd_host *host;
    xmppd_store *store;
    push_acct *accts[PUSH_BUCKETS];
};

static void acct_run(push_acct *a);

/* ---- accounts ------------------------------------------------------------------- */

static size_t bucket_of(const char *user)
{
    size_t h = 2166136261u;
    for (; *user; user++)
        h = (h ^ (unsigned char)*user) * 16777619u;
    return h % PUSH_BUCKETS;
}

static push_acct *acct_find(push_mod *mod, const char *user, bool create)
{
    size_t b = bucket_of(user);
    for (push_acct *a = mod->accts[b]; a; a = a->next)
        if (strcmp(a->user, user) == 0)
            return a;
    push_acct *a = create ? calloc(1, sizeof(*a)) : NULL;
    if (a && !(a->user = strdup(user))) {
        free(a);
        a = NULL;
    }
    if (a) {
        a->mod = mod;
        a->next = mod->accts[b];
        mod->accts[b] = a;
    }
    return a;
}

static void reg_clear(push_reg *r)
{
    free(r->key);
    free(r->jid);
    free(r->node);
    json_decref(r->options);
    memset(r, 0, sizeof(*r));
}

static void regs_clear(push_acct *a)
{
    for (size_t i = 0; i < a->n; i++)
        reg_clear(&a->regs[i]);
    free(a->regs);
    a->regs = NULL;
    a->n = 0;
}

static void op_free(push_op *op)
{
    if (op->p)
        xmppd_pending_drop(op->p);
    push_reg_req_clear(&op->req);
    free(op->key);
    free(op);
}

static void summary_reset(push_acct *a)
{
    a->messages = a->subscriptions = 0;
    free(a->sender);
    free(a->body);
    a->sender = a->body = NULL;
}

static void acct_free(push_acct *a)
{
    regs_clear(a);
    for (push_op *op = a->ops, *next; op; op = next) {
        next = op->next;
        op_free(op);
    }
    if (a->running)
        op_free(a->running);
    summary_reset(a);
    free(a->user);
    free(a);
}

/* An account with nothing registered and nothing to do is forgotten; its
 * registrations are read again when it next needs them. */
static void acct_maybe_free(push_acct *a)
{
    if (a->busy || a->ops || a->n > 0)
        return;
    for (push_acct **pp = &a->mod->accts[bucket_of(a->user)]; *pp; pp = &(*pp)->next)
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    acct_free(a);
}

static void acct_enqueue(push_acct *a, push_op *op)
{
    if (a->ops_tail)
        a->ops_tail->next = op;
    else
        a->ops = op;
    a->ops_tail = op;
}

static push_reg *reg_find(push_acct *a, const char *key)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->regs[i].key, key) == 0)
            return &a->regs[i];
    return NULL;
}

static void reg_remove(push_acct *a, size_t i)
{
    reg_clear(&a->regs[i]);
    a->regs[i] = a->regs[--a->n];
}

/* ---- loading and writing ------------------------------------------------------------ */

/* A stored registration: {"jid", "node", "options", "since"}. */
static int reg_from_json(push_reg *r, const char *key, json_t *v)
{
    const char *jid, *node;
    json_t *opts;
    json_int_t since;
    memset(r, 0, sizeof(*r));
    if (json_unpack(v, "{s:s, s:s, s:o, s:I}", "jid", &jid, "node", &node, "options", &opts, "since", &since) < 0 ||
        !json_is_object(opts))
        return -1;
    r->key = strdup(key);
    r->jid = strdup(jid);
    r->node = strdup(node);
    r->options = json_incref(opts);
    r->since = since;
    if (!r->key || !r->jid || !r->node) {
        reg_clear(r);
        return -1;
    }
    return 0;
}

static void on_loaded(int status, json_t *value, void *ud)
{
    push_acct *a = ud;
    a->busy = false;
    if (status == XMPPD_STORE_CANCELLED)
        return; /* unloading: unload() frees the account */
    if (status != XMPPD_STORE_OK) {
        xmppd_log(a->mod->m, XMPPD_LOG_ERROR, "push registrations of %s: storage unavailable", a->user);
        /* nothing known: every waiting operation fails */
        for (push_op *op; (op = a->ops);) {
            a->ops = op->next;
            if (op->p) {
                xmppd_pending_error(op->p, "wait", "internal-server-error", NULL);
                op->p = NULL;
            }
            op_free(op);
        }
        a->ops_tail = NULL;
        a->notify_queued = false;
        acct_maybe_free(a);
        return;
    }
    regs_clear(a);
    size_t n = json_object_size(value);
    a->regs = n ? calloc(n, sizeof(*a->regs)) : NULL;
    const char *key;
    json_t *v;
    json_object_foreach(value, key, v)
        if (a->regs && reg_from_json(&a->regs[a->n], key, v) == 0)
            a->n++;
        else
            xmppd_log(a->mod->m, XMPPD_LOG_WARN, "push registration %s of %s is unreadable: ignored", key, a->user);
    a->loaded = true;
    acct_run(a);
}

static void op_done(push_acct *a, push_op *op)
{
    if (op->p) {
        if (a->write_failed)
            xmppd_pending_error(op->p, "wait", "internal-server-error", NULL);
        else
            xmppd_pending_reply(op->p, xmppd_stanza_reply(xmppd_pending_event(op->p)->stanza));
        op->p = NULL;
    }
    op_free(op);
}

static void on_written(int status, void *ud)
{
    push_acct *a = ud;
    if (status == XMPPD_STORE_CANCELLED) {
        a->busy = false;
        return;
    }
    if (status != XMPPD_STORE_OK) {
        xmppd_log(a->mod->m, XMPPD_LOG_ERROR, "push registrations of %s: a write failed", a->user);
        a->write_failed = true;
    }
    if (--a->writes > 0)
        return;
    push_op *op = a->running;
    a->running = NULL;
    a->busy = false;
    if (a->write_failed)
        a->loaded = false; /* memory and storage may differ: read again */
    op_done(a, op);
    a->write_failed = false;
    acct_run(a);
}

/* Starts a write of the running operation (value NULL deletes). */
static void acct_write(push_acct *a, const char *key, json_t *value)
{
    a->writes++;
    a->busy = true;
    xmppd_kv_set(a->mod->store, a->user, key, value, on_written, a);
}

/* ---- operations ------------------------------------------------------------------------ */

static void op_enable(push_acct *a, push_op *op)
{
    push_mod *mod = a->mod;
    char *key = push_key(op->req.jid, op->req.node);
    push_reg *r = key ? reg_find(a, key) : NULL;
    json_t *v = key ? json_pack("{s:s, s:s, s:O, s:I}", "jid", op->req.jid, "node", op->req.node, "options",
                                op->req.options, "since", (json_int_t)xmppd_wallclock_ms())
                    : NULL;
    push_reg *grown = v && !r ? realloc(a->regs, (a->n + 1) * sizeof(*a->regs)) : a->regs;
    if (!v || !grown) {
        free(key);
        json_decref(v);
        xmppd_pending_error(op->p, "wait", "resource-constraint", NULL);
        op->p = NULL;
        op_free(op);
        return;
    }
    a->regs = grown;
    a->running = op;
    if (!r && (long long)a->n >= mod->conf->max_registrations) {
        /* the oldest registration makes room (an app reinstalled with a
         * new node must not be locked out by its old one) */
        size_t old = 0;
        for (size_t i = 1; i < a->n; i++)
            if (a->regs[i].since < a->regs[old].since)
                old = i;
        xmppd_log(mod->m, XMPPD_LOG_INFO, "%s: push registration %s replaced by a newer one", a->user,
                  a->regs[old].key);
        acct_write(a, a->regs[old].key, NULL);
        reg_remove(a, old);
    }
    if (r)
        reg_clear(r);
    else
        r = &a->regs[a->n++];
    if (reg_from_json(r, key, v) < 0) { /* out of memory: read again next time */
        reg_remove(a, (size_t)(r - a->regs));
        a->loaded = false;
    }
    acct_write(a, key, v);
    free(key);
    json_decref(v);
}

static void op_disable(push_acct *a, push_op *op)
{
    a->running = op;
    for (size_t i = a->n; i-- > 0;) {
        push_reg *r = &a->regs[i];
        if (strcmp(r->jid, op->req.jid) == 0 && (!op->req.node || strcmp(r->node, op->req.node) == 0)) {
            acct_write(a, r->key, NULL);
            reg_remove(a, i);
        }
    }
    if (a->writes == 0) { /* nothing was registered: done */
        a->running = NULL;
        op_done(a, op);
    }
}

static void op_drop(push_acct *a, push_op *op)
{
    push_reg *r = reg_find(a, op->key);
    if (!r || r->failures < a->mod->conf->max_failures) {
        op_free(op); /* disabled meanwhile, or it answered again */
        return;
    }
    xmppd_log(a->mod->m, XMPPD_LOG_INFO, "%s: push registration %s removed after %lld failures", a->user,
              op->key, r->failures);
    a->running = op;
    acct_write(a, r->key, NULL);
    reg_remove(a, (size_t)(r - a->regs));
}

/* ---- publishing -------------------------------------------------------------------------- */

typedef struct push_req {
    push_mod *mod;
    char *user, *key;
} push_req;

static void push_req_free(push_req *q)
{
    free(q->user);
    free(q->key);
    free(q);
}

static void on_published(int status, xmppd_stanza *reply, void *ud)
{
    (void)reply;
    push_req *q = ud;
    push_acct *a = status == XMPPD_IQ_CANCELLED ? NULL : acct_find(q->mod, q->user, false);
    push_reg *r = a ? reg_find(a, q->key) : NULL;
    if (r && status == XMPPD_IQ_RESULT) {
        r->failures = 0;
    } else if (r) {
        r->failures++;
        xmppd_log(q->mod->m, XMPPD_LOG_INFO, "%s: push service %s %s (%lld in a row)", q->user, r->jid,
                  status == XMPPD_IQ_TIMEOUT ? "did not answer" : "answered with an error", r->failures);
        push_op *op = r->failures >= q->mod->conf->max_failures ? calloc(1, sizeof(*op)) : NULL;
        if (op && (op->key = strdup(q->key))) {
            op->kind = OP_DROP;
            acct_enqueue(a, op);
            acct_run(a);
        } else {
            free(op);
        }
    }
    push_req_free(q);
}

static void publish_one(push_acct *a, push_reg *r, const push_summary *sum, const char *account)
{
    push_mod *mod = a->mod;
    uint64_t now = xmppd_now_ms();
    if (r->last_push && now - r->last_push < (uint64_t)mod->conf->min_interval)
        return; /* the app was woken a moment ago and fetches everything */
    xmppd_stanza *iq = push_publish_iq(account, r->jid, r->node, r->options, sum);
    push_req *q = iq ? calloc(1, sizeof(*q)) : NULL;
    if (q) {
        *q = (push_req){ mod, strdup(a->user), strdup(r->key) };
        if (!q->user || !q->key ||
            xmppd_iq_request(mod->m, iq, (uint64_t)mod->conf->timeout, on_published, q) < 0) {
            xmppd_log(mod->m, XMPPD_LOG_WARN, "%s: cannot publish to %s", a->user, r->jid);
            push_req_free(q);
        } else {
            r->last_push = now;
        }
    }
    xmppd_stanza_unref(iq);
}

static void op_notify(push_acct *a, push_op *op)
{
    op_free(op);
    a->notify_queued = false;
    xmppd_jid *account = xmppd_jid_make(a->user, xmppd_host_name(a->mod->host), NULL);
    if (!account)
        return;
    push_summary sum = { a->messages, a->subscriptions, a->sender,
                         a->mod->conf->include_body ? a->body : NULL };
    for (size_t i = 0; i < a->n; i++)
        publish_one(a, &a->regs[i], &sum, account->bare);
    xmppd_jid_free(account);
}

/* Runs the account's operations in order, one at a time. */
static void acct_run(push_acct *a)
{
    while (!a->busy && a->ops) {
        if (!a->loaded) {
            a->busy = true;
            xmppd_kv_get_all(a->mod->store, a->user, on_loaded, a);
            return;
        }
        push_op *op = a->ops;
        a->ops = op->next;
        if (!a->ops)
            a->ops_tail = NULL;
        op->next = NULL;
        switch (op->kind) {
        case OP_ENABLE: op_enable(a, op); break;
        case OP_DISABLE: op_disable(a, op); break;
        case OP_NOTIFY: op_notify(a, op); break;
        case OP_DROP: op_drop(a, op); break;
        }
    }
    acct_maybe_free(a);
}

/* ---- what triggers a notification ---------------------------------------------------------- */

static int live_session(xmppd_session *s, void *ud)
{
    bool *live = ud;
    *live = !xmppd_session_detached(s) && !xmppd_session_closed(s);
    return *live; /* stops at the first connected one */
}

/* Is any session of the account connected? Hibernated ones are not. */
static bool account_connected(push_mod *mod, const char *node)
{
    bool live = false;
    xmppd_user_sessions(mod->host, node, live_session, &live);
    return live;
}

static void trigger(push_mod *mod, const char *node, const xmppd_jid *from, const xmppd_stanza *msg)
{
    push_acct *a = acct_find(mod, node, true);
    if (!a)
        return;
    if (msg) {
        a->messages++;
        const char *body = xmppd_stanza_child_text(msg, "body", NULL);
        free(a->body);
        a->body = body ? strdup(body) : NULL;
    } else {
        a->subscriptions++;
    }
    free(a->sender);
    a->sender = from ? strdup(from->bare) : NULL;
    push_op *op = a->notify_queued ? NULL : calloc(1, sizeof(*op));
    if (op) {
        op->kind = OP_NOTIFY;
        a->notify_queued = true;
        acct_enqueue(a, op);
    }
    acct_run(a);
}

/* A message reached sessions of an account that are all hibernated. */
static int push_on_delivered(xmppd_event *ev, void *ud)
{
    push_mod *mod = ud;
    if (ev->to && ev->to->node && push_message_wanted(ev->stanza) && !account_connected(mod, ev->to->node))
        trigger(mod, ev->to->node, ev->from, ev->stanza);
    return XMPPD_PASS;
}

/* A message for an account without an available resource: offline storage
 * (which runs after this) keeps it. */
static int push_on_offline(xmppd_event *ev, void *ud)
{
    push_mod *mod = ud;
    if (ev->to && ev->to->node && xmppd_host_has_module(mod->host, "offline") &&
        push_message_wanted(ev->stanza) && !account_connected(mod, ev->to->node))
        trigger(mod, ev->to->node, ev->from, ev->stanza);
    return XMPPD_PASS;
}

/* A subscription request (RFC 6121 §3.1) waits for the user. */
static int push_on_presence(xmppd_event *ev, void *ud)
{
    push_mod *mod = ud;
    const char *type = xmppd_stanza_attr(ev->stanza, "type");
    if (ev->to && ev->to->node && type && strcmp(type, "subscribe") == 0 &&
        !account_connected(mod, ev->to->node))
        trigger(mod, ev->to->node, ev->from, NULL);
    return XMPPD_PASS;
}

/* The user is back: the next notification counts from zero. */
static int push_on_activity(xmppd_event *ev, void *ud)
{
    push_mod *mod = ud;
    const char *user = ev->session ? xmppd_session_user(ev->session) : NULL;
    push_acct *a = user ? acct_find(mod, user, false) : NULL;
    if (a)
        summary_reset(a);
    return XMPPD_PASS;
}

/* ---- the protocol ------------------------------------------------------------------------------ */

static int push_on_iq(xmppd_event *ev, void *ud)
{
    push_mod *mod = ud;
    if (!ev->session || !ev->from || !ev->from->node || (ev->to && !xmppd_jid_bare_equal(ev->to, ev->from)))
        return xmppd_reply_error(ev, "auth", "forbidden", NULL);
    xmppd_stanza *el = xmppd_stanza_first(ev->stanza);
    const char *name = el ? xmppd_stanza_name(el) : "";
    push_op *op = calloc(1, sizeof(*op));
    if (!op)
        return XMPPD_FAIL;
    const char *cond = "bad-request", *text = NULL;
    int rc = -1;
    if (strcmp(name, "enable") == 0) {
        op->kind = OP_ENABLE;
        rc = push_parse_enable(el, &op->req, &cond, &text);
    } else if (strcmp(name, "disable") == 0) {
        /* §6: 'jid' required, 'node' optional */
        op->kind = OP_DISABLE;
        const char *jid = xmppd_stanza_attr(el, "jid"), *node = xmppd_stanza_attr(el, "node");
        xmppd_jid *j = jid ? xmppd_jid_parse(jid) : NULL;
        text = "a valid 'jid' of the push service is required";
        if (j && (op->req.jid = strdup(j->full)) && (!node || (op->req.node = strdup(node))))
            rc = 0;
        xmppd_jid_free(j);
    }
    push_acct *a = rc == 0 ? acct_find(mod, ev->from->node, true) : NULL;
    if (!a || !(op->p = xmppd_pending_new(ev))) {
        op_free(op);
        return xmppd_reply_error(ev, rc == 0 ? "wait" : "modify", rc == 0 ? "resource-constraint" : cond, text);
    }
    acct_enqueue(a, op);
    acct_run(a);
    return XMPPD_HANDLED;
}

/* §4.1: the account's disco#info lists urn:xmpp:push:0. */
static int push_on_disco_info(xmppd_event *ev, void *ud)
{
    (void)ud;
    if (!ev->to || !ev->to->node || xmppd_stanza_attr(ev->stanza, "node"))
        return XMPPD_PASS;
    xmppd_stanza *f = xmppd_stanza_tag(ev->stanza, "feature", "http://jabber.org/protocol/disco#info");
    if (f)
        xmppd_stanza_set_attr(f, "var", PUSH_NS);
    return XMPPD_PASS;
}

/* The kernel purges the account's stores: forget what is cached. */
static int push_on_user_deleted(xmppd_event *ev, void *ud)
{
    push_mod *mod = ud;
    push_acct *a = ev->data ? acct_find(mod, ev->data, false) : NULL;
    if (a) {
        regs_clear(a);
        a->loaded = false;
        acct_maybe_free(a);
    }
    return XMPPD_PASS;
}

/* ---- module --------------------------------------------------------------------------------------- */

static void push_unload(xmppd_module *m)
{
    push_mod *mod = xmppd_module_data(m);
    /* storage and IQ callbacks came back CANCELLED already */
    for (size_t b = 0; b < PUSH_BUCKETS; b++)
        for (push_acct *a = mod->accts[b], *next; a; a = next) {
            next = a->next;
            acct_free(a);
        }
    free(mod);
    xmppd_module_set_data(m, NULL);
}

static int push_load(xmppd_module *m, const void *conf)
{
    push_mod *mod = calloc(1, sizeof(*mod));
    if (!mod)
        return xmppd_module_refuse(m, "out of memory");
    mod->m = m;
    mod->conf = conf;
    mod->host = xmppd_module_host(m);
    xmppd_module_set_data(m, mod);
    if (!(mod->store = xmppd_store_open(m, "push", XMPPD_STORE_KEYVAL))) {
        free(mod);
        xmppd_module_set_data(m, NULL);
        return xmppd_module_refuse(m, "no storage driver is loaded");
    }
    if (xmppd_iq_handle(m, "set", PUSH_NS, XMPPD_IQ_BARE, push_on_iq, mod) < 0 ||
        xmppd_hook(m, "message/delivered", push_on_delivered, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        /* before offline storage takes it (and stops the event) */
        xmppd_hook(m, "message/offline", push_on_offline, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "presence/bare", push_on_presence, XMPPD_PRIO_FILTER - 1, mod) < 0 ||
        xmppd_hook(m, "pre-route", push_on_activity, XMPPD_PRIO_GUARD, mod) < 0 ||
        xmppd_hook(m, "resource-bound", push_on_activity, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "disco-info", push_on_disco_info, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "user-deleted", push_on_user_deleted, XMPPD_PRIO_DEFAULT, mod) < 0) {
        free(mod);
        xmppd_module_set_data(m, NULL);
        return xmppd_module_refuse(m, "cannot register (out of memory, or another module handles %s)", PUSH_NS);
    }
    return 0;
}

XMPPD_MODULE(push,
    .version = "1.0",
    .summary = "XEP-0357 push notifications: wakes sleeping mobile apps through their push service",
    .specs = (const char *const[]){ "XEP-0357", NULL },
    .options = push_options,
    .conf_size = sizeof(push_conf),
    .load = push_load,
    .unload = push_unload);
