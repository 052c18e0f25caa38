/* mod_hello: an example xmppd module, built outside the xmppd tree against
 * the installed SDK (see README.md). It shows the whole module API in a
 * small space:
 *
 *  - options read by the kernel from the configuration (greeting, greet,
 *    greet_delay), validated before any module code runs;
 *  - an IQ handler: <iq type='get' to='HOST'><hello xmlns='urn:xmppd:hello:0'/></iq>
 *    from a local account is answered with the greeting, this module's
 *    version and the account's first login (XEP-0082 date-time);
 *  - a hook on "resource-bound": an account's very first login gets the
 *    greeting as a message from the host, optionally after a delay (timer);
 *  - a keyval store "hello": per account {"first_login": ms};
 *  - an event of its own, "hello/greeted", declared for `xmppctl hooks`;
 *  - a disco feature, per-module logging, and an unload that frees every
 *    piece of asynchronous work still pending (the kernel drops the
 *    callbacks of an unloaded module, so their data is ours to free).
 *
 * Everything runs on the event loop thread: no locks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xmppd/xmppd.h>

#ifndef HELLO_VERSION
#define HELLO_VERSION "1.0"
#endif

#define HELLO_NS "urn:xmppd:hello:0"
#define HELLO_EVENT "hello/greeted"

/* ---- options --------------------------------------------------------------- */

typedef struct hello_conf {
    const char *greeting;   /* kernel-owned, valid while the instance lives */
    bool greet;
    long long greet_delay;  /* ms */
} hello_conf;

static const xmppd_option hello_options[] = {
    { "greeting", XMPPD_OPT_STRING, XMPPD_OFF(hello_conf, greeting),
      "\"Welcome! This server runs xmppd.\"",
      .doc = "text sent to an account on its first login, and answered to <hello/>" },
    { "greet", XMPPD_OPT_BOOL, XMPPD_OFF(hello_conf, greet), "true",
      .doc = "send the greeting as a message on an account's first login" },
    { "greet_delay", XMPPD_OPT_DURATION, XMPPD_OFF(hello_conf, greet_delay), "0", 0, 3600000,
      .doc = "wait this long after the first login before greeting" },
    { NULL }
};

#define HELLO_GREETING_MAX 1024 /* bytes; longer greetings are refused at load */

/* ---- state ------------------------------------------------------------------- */

/* One piece of asynchronous work: a login being checked (and maybe greeted)
 * or an IQ waiting for storage. Holds references; lives in the instance's
 * list until done, so unload() can free what storage or a timer will never
 * call back. */
typedef struct hello_job {
    struct hello_job *prev, *next;
    struct hello_mod *mod;
    xmppd_session *sess;  /* ref */
    xmppd_stanza *iq;     /* ref, IQ jobs only */
    char *user;           /* account localpart (owned) */
    xmppd_timer *timer;   /* pending greeting, or NULL */
    bool first_login;     /* this job is recording a first login */
} hello_job;

typedef struct hello_mod {
    xmppd_module *m;
    xmppd_host *host;
    const hello_conf *conf;
    xmppd_store *store;
    hello_job *jobs;
} hello_mod;

static hello_job *job_new(hello_mod *mod, xmppd_session *sess, const char *user)
{
    hello_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->user = strdup(user))) {
        free(j);
        xmppd_log(mod->m, XMPPD_LOG_ERROR, "out of memory");
        return NULL;
    }
    j->mod = mod;
    j->sess = xmppd_session_ref(sess);
    j->next = mod->jobs;
    if (mod->jobs)
        mod->jobs->prev = j;
    mod->jobs = j;
    return j;
}

static void job_free(hello_job *j)
{
    hello_mod *mod = j->mod;
    if (j->prev)
        j->prev->next = j->next;
    else
        mod->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    if (j->timer)
        xmppd_timer_cancel(j->timer);
    xmppd_session_unref(j->sess);
    xmppd_stanza_unref(j->iq);
    free(j->user);
    free(j);
}

/* Is another job already recording user's first login? */
static bool first_login_pending(const hello_mod *mod, const hello_job *self)
{
    for (const hello_job *j = mod->jobs; j; j = j->next)
        if (j != self && j->first_login && strcmp(j->user, self->user) == 0)
            return true;
    return false;
}

/* XEP-0082 date-time of wall-clock milliseconds. */
static void format_time(long long ms, char *out, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- greeting on first login ------------------------------------------------- */

static void greet(hello_job *j)
{
    hello_mod *mod = j->mod;
    const xmppd_jid *to = xmppd_session_jid(j->sess);
    if (xmppd_session_closed(j->sess) || !to)
        return; /* gone before we got to it: nothing to say */
    xmppd_stanza *msg = xmppd_stanza_new("message", XMPPD_NS_CLIENT);
    xmppd_stanza *body = msg ? xmppd_stanza_tag(msg, "body", NULL) : NULL;
    if (!body) {
        xmppd_stanza_unref(msg);
        return;
    }
    xmppd_stanza_set_attr(msg, "type", "normal");
    xmppd_stanza_set_attr(msg, "from", xmppd_host_name(mod->host));
    xmppd_stanza_set_attr(msg, "to", to->full);
    xmppd_stanza_add_text(body, mod->conf->greeting, strlen(mod->conf->greeting));
    xmppd_session_send(j->sess, msg);
    xmppd_stanza_unref(msg);
    xmppd_log(mod->m, XMPPD_LOG_INFO, "greeted %s", to->full);
    /* Tell whoever listens (every handler runs; data: the account). */
    xmppd_notify(mod->host, HELLO_EVENT, j->sess, j->user);
}

static uint64_t on_greet_timer(void *ud)
{
    hello_job *j = ud;
    j->timer = NULL; /* returning 0 frees the timer */
    greet(j);
    job_free(j);
    return 0;
}

static void on_first_login_saved(int status, void *ud)
{
    hello_job *j = ud;
    hello_mod *mod = j->mod;
    if (status != XMPPD_STORE_OK) {
        xmppd_log(mod->m, XMPPD_LOG_ERROR, "cannot record the first login of %s", j->user);
        job_free(j);
        return;
    }
    if (!mod->conf->greet) {
        job_free(j);
        return;
    }
    if (mod->conf->greet_delay > 0) {
        j->first_login = false;
        j->timer = xmppd_timer_add(mod->m, (uint64_t)mod->conf->greet_delay, on_greet_timer, j);
        if (j->timer)
            return;
    }
    greet(j);
    job_free(j);
}

static void on_login_loaded(int status, json_t *value, void *ud)
{
    hello_job *j = ud;
    hello_mod *mod = j->mod;
    if (status != XMPPD_STORE_NOT_FOUND || first_login_pending(mod, j)) {
        if (status == XMPPD_STORE_ERROR)
            xmppd_log(mod->m, XMPPD_LOG_ERROR, "cannot read the hello record of %s", j->user);
        job_free(j); /* been here before (or being recorded right now) */
        return;
    }
    json_t *doc = json_pack("{s:I}", "first_login", (json_int_t)xmppd_wallclock_ms());
    if (!doc) {
        job_free(j);
        return;
    }
    j->first_login = true;
    xmppd_kv_set(mod->store, j->user, "", doc, on_first_login_saved, j); /* doc is copied */
    json_decref(doc);
}

static int on_bound(xmppd_event *ev, void *ud)
{
    hello_mod *mod = ud;
    const char *user = ev->session ? xmppd_session_user(ev->session) : NULL;
    hello_job *j = user ? job_new(mod, ev->session, user) : NULL;
    if (j)
        xmppd_kv_get(mod->store, user, "", on_login_loaded, j);
    return XMPPD_PASS; /* an observer: never stops the event */
}

/* ---- the IQ ------------------------------------------------------------------------ */

static void on_iq_loaded(int status, json_t *value, void *ud)
{
    hello_job *j = ud;
    hello_mod *mod = j->mod;
    xmppd_stanza *reply = NULL;
    if (status == XMPPD_STORE_ERROR) {
        reply = xmppd_stanza_error_reply(j->iq, "wait", "internal-server-error", NULL);
    } else if ((reply = xmppd_stanza_reply(j->iq))) {
        xmppd_stanza *h = xmppd_stanza_tag(reply, "hello", HELLO_NS);
        xmppd_stanza *g = h ? xmppd_stanza_tag(h, "greeting", NULL) : NULL;
        xmppd_stanza *v = h ? xmppd_stanza_tag(h, "version", NULL) : NULL;
        if (g)
            xmppd_stanza_add_text(g, mod->conf->greeting, strlen(mod->conf->greeting));
        if (v)
            xmppd_stanza_add_text(v, HELLO_VERSION, strlen(HELLO_VERSION));
        json_t *first = json_object_get(value, "first_login");
        if (h && json_is_integer(first)) {
            char when[32];
            format_time((long long)json_integer_value(first), when, sizeof(when));
            xmppd_stanza *f = xmppd_stanza_tag(h, "first-login", NULL);
            if (f)
                xmppd_stanza_add_text(f, when, strlen(when));
        }
    }
    if (reply && !xmppd_session_closed(j->sess))
        xmppd_session_send(j->sess, reply);
    xmppd_stanza_unref(reply);
    job_free(j);
}

static int on_hello_get(xmppd_event *ev, void *ud)
{
    hello_mod *mod = ud;
    /* Only this host's own accounts, from their sessions. */
    if (!ev->session || !ev->from || !ev->from->node ||
        strcmp(ev->from->domain, xmppd_host_name(mod->host)) != 0)
        return xmppd_reply_error(ev, "auth", "forbidden", "Only local accounts are greeted");
    hello_job *j = job_new(mod, ev->session, ev->from->node);
    if (!j)
        return XMPPD_FAIL; /* the kernel answers internal-server-error */
    j->iq = xmppd_stanza_ref(ev->stanza);
    xmppd_kv_get(mod->store, j->user, "", on_iq_loaded, j);
    return XMPPD_HANDLED; /* answered later, exactly once */
}

/* Someone deleted an account: the kernel purges its stores; forget it here
 * too (nothing cached in this module, but pending work for it can go). */
static int on_user_deleted(xmppd_event *ev, void *ud)
{
    hello_mod *mod = ud;
    for (hello_job *j = mod->jobs, *next; j; j = next) {
        next = j->next;
        if (j->timer && ev->data && strcmp(j->user, ev->data) == 0)
            job_free(j);
    }
    return XMPPD_PASS;
}

/* ---- lifecycle ------------------------------------------------------------------------ */

static int hello_load(xmppd_module *m, const void *conf)
{
    const hello_conf *c = conf;
    if (!c->greeting || !*c->greeting || strlen(c->greeting) > HELLO_GREETING_MAX) {
        xmppd_log(m, XMPPD_LOG_ERROR, "greeting must be 1 to %d bytes", HELLO_GREETING_MAX);
        return -1;
    }
    hello_mod *mod = calloc(1, sizeof(*mod));
    if (!mod)
        return -1;
    mod->m = m;
    mod->host = xmppd_module_host(m);
    mod->conf = c;
    xmppd_module_set_data(m, mod);
    mod->store = xmppd_store_open(m, "hello", XMPPD_STORE_KEYVAL); /* logs why on NULL */
    if (!mod->store ||
        xmppd_iq_handle(m, "get", HELLO_NS, XMPPD_IQ_HOST, on_hello_get, mod) < 0 ||
        xmppd_hook(m, "resource-bound", on_bound, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_hook(m, "user-deleted", on_user_deleted, XMPPD_PRIO_DEFAULT, mod) < 0 ||
        xmppd_disco_feature(m, HELLO_NS) < 0 ||
        xmppd_event_declare(m, HELLO_EVENT, XMPPD_EVENT_ALL,
                            "host; session: the greeted session; data: const char * account") < 0) {
        /* A refused load is undone by the kernel, but unload() is not
         * called: free our own data here. */
        xmppd_module_set_data(m, NULL);
        free(mod);
        return -1;
    }
    xmppd_log(m, XMPPD_LOG_INFO, "mod_hello %s ready", HELLO_VERSION);
    return 0;
}

static void hello_unload(xmppd_module *m)
{
    hello_mod *mod = xmppd_module_data(m);
    if (!mod)
        return;
    /* The kernel already released hooks, handlers, timers and the store;
     * storage will not call back, so the pending jobs are ours to free. */
    while (mod->jobs) {
        mod->jobs->timer = NULL; /* cancelled and freed by the kernel */
        job_free(mod->jobs);
    }
    free(mod);
    xmppd_module_set_data(m, NULL);
}

XMPPD_MODULE(hello,
    .version = HELLO_VERSION,
    .summary = "Example module: greets accounts on their first login, answers <hello/>",
    .specs = (const char *const[]){ NULL }, /* a private protocol: no RFC or XEP */
    .options = hello_options,
    .conf_size = sizeof(hello_conf),
    .load = hello_load,
    .unload = hello_unload);
