/* The registry of control commands (api/xmppd/ctl.h for modules; the
 * kernel's own are registered by admin/control.c) and the requests in
 * flight. The control socket looks commands up here and hands each request
 * an answer function; a module answers now or later, and a request whose
 * module unloads is answered by the kernel. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/ctl.h"

typedef struct ctl_cmd {
    struct ctl_cmd *next;
    char *name, *usage, *help;
    xmppd_module *m;          /* NULL: the kernel's */
    module_cleanup *cleanup;
    xmppd_ctl_fn fn;
    void *ud;
} ctl_cmd;

struct xmppd_ctl_request {
    ctl_answer_fn answer;     /* NULL once the asker is gone */
    void *answer_ud;
    xmppd_module *m;          /* the serving module (ref), or NULL */
    module_cleanup *cleanup;
};

static ctl_cmd *g_cmds; /* newest last, so the first registration wins */

static bool valid_name(const char *s)
{
    if (!*s || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '-')
            return false;
    return true;
}

static ctl_cmd *find(const char *name)
{
    for (ctl_cmd *c = g_cmds; c; c = c->next)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

static void cmd_free(ctl_cmd *c)
{
    free(c->name);
    free(c->usage);
    free(c->help);
    free(c);
}

static void cmd_release(void *p)
{
    ctl_cmd *c = p;
    for (ctl_cmd **cp = &g_cmds; *cp; cp = &(*cp)->next)
        if (*cp == c) {
            *cp = c->next;
            break;
        }
    cmd_free(c);
}

XMPPD_EXPORT int xmppd_ctl_command(xmppd_module *m, const char *name, const char *usage,
                                   const char *help, xmppd_ctl_fn fn, void *ud)
{
    if ((m && !m->loaded) || !name || !fn || !help || !valid_name(name))
        return -1;
    ctl_cmd *old = find(name);
    if (old && (!m || !old->m || strcmp(old->m->def->name, m->def->name) != 0)) {
        xmppd_log(m, XMPPD_LOG_ERROR, "control command \"%s\" is taken (by %s)", name,
                  old->m ? old->m->tag : "the kernel");
        return -1;
    }
    ctl_cmd *c = calloc(1, sizeof(*c));
    if (!c || !(c->name = strdup(name)) || (usage && !(c->usage = strdup(usage))) ||
        !(c->help = strdup(help)) || (m && !(c->cleanup = module_cleanup_add(m, cmd_release, c)))) {
        if (c)
            cmd_free(c);
        return -1;
    }
    c->m = m;
    c->fn = fn;
    c->ud = ud;
    ctl_cmd **tail = &g_cmds;
    while (*tail)
        tail = &(*tail)->next;
    *tail = c;
    return 0;
}

static void request_free(xmppd_ctl_request *r)
{
    if (r->cleanup)
        module_cleanup_cancel(r->m, r->cleanup);
    if (r->m)
        module_unref(r->m);
    free(r);
}

static void request_answer(xmppd_ctl_request *r, json_t *resp)
{
    if (r->answer)
        r->answer(r->answer_ud, resp);
    else
        json_decref(resp);
    request_free(r);
}

/* The serving module unloads before answering: the asker learns so. */
static void request_cancel(void *p)
{
    xmppd_ctl_request *r = p;
    r->cleanup = NULL;
    request_answer(r, json_pack("{s:b, s:s}", "ok", 0, "error",
                                "the module serving this command was unloaded"));
}

XMPPD_EXPORT void xmppd_ctl_reply(xmppd_ctl_request *req, json_t *result)
{
    if (!result)
        result = json_object();
    if (result)
        json_object_set_new(result, "ok", json_true());
    request_answer(req, result);
}

XMPPD_EXPORT void xmppd_ctl_error(xmppd_ctl_request *req, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    request_answer(req, json_pack("{s:b, s:s}", "ok", 0, "error", buf));
}

void ctl_answer(xmppd_ctl_request *r, json_t *resp)
{
    request_answer(r, resp);
}

xmppd_ctl_request *ctl_run(const char *name, const json_t *req, ctl_answer_fn answer, void *ud)
{
    ctl_cmd *c = find(name);
    if (!c)
        return NULL;
    xmppd_ctl_request *r = calloc(1, sizeof(*r));
    if (!r || (c->m && !(r->cleanup = module_cleanup_add(c->m, request_cancel, r)))) {
        free(r);
        answer(ud, NULL);
        return CTL_ANSWERED;
    }
    r->answer = answer;
    r->answer_ud = ud;
    if (c->m) {
        r->m = c->m;
        module_ref(c->m);
    }
    /* The kernel's commands read the whole request; modules get "args". */
    const json_t *args = json_object_get(req, "args");
    json_t *none = NULL;
    if (c->m && !json_is_array(args))
        args = none = json_array();
    ctl_cmd snapshot = *c; /* the handler may unload the module */
    snapshot.fn(r, c->m ? args : req, snapshot.ud);
    json_decref(none);
    return r;
}

void ctl_forget(xmppd_ctl_request *r)
{
    r->answer = NULL;
}

void ctl_foreach(void (*fn)(const char *name, const char *usage, const char *help,
                            const xmppd_module *m, void *ud), void *ud)
{
    for (ctl_cmd *c = g_cmds; c; c = c->next)
        fn(c->name, c->usage, c->help, c->m, ud);
}

/* ---- commands run by modules (xmppd_ctl_run) ------------------------------------------ */

/* One command a module runs. Kernel commands answer inside ctl_run, and
 * a command may even unload the asking module there (module-reload of
 * itself): what happens inside ctl_run is settled once it returns. */
typedef struct ctl_call {
    xmppd_ctl_result_cb cb;  /* NULL once called back with CANCELLED */
    void *ud;
    xmppd_module *m;
    xmppd_call *call;        /* tied to m while the answer is due */
    xmppd_ctl_request *r;    /* the request in flight (after ctl_run returned) */
    json_t *resp;            /* the answer */
    bool running;            /* inside ctl_run */
    bool answered;
} ctl_call;

static void call_deliver(void *p)
{
    ctl_call *cc = p;
    cc->cb(XMPPD_CTL_DONE, cc->resp, cc->ud);
    json_decref(cc->resp);
    free(cc);
}

static void call_deliver_cancelled(void *p)
{
    ctl_call *cc = p;
    cc->cb(XMPPD_CTL_CANCELLED, NULL, cc->ud);
    json_decref(cc->resp);
    free(cc);
}

static void call_answer(void *ud, json_t *resp)
{
    ctl_call *cc = ud;
    cc->answered = true;
    cc->resp = resp;
    cc->r = NULL;
    if (cc->running)
        return; /* settled when ctl_run returns */
    xmppd_call_finish(cc->call); /* still waiting: a cancelled call forgot its request */
    call_deliver(cc);
}

/* m unloads before the answer: it hears so now (its code and data are
 * still there), and the answer, if one comes, is dropped. */
static void call_cancelled(void *p)
{
    ctl_call *cc = p;
    xmppd_call_finish(cc->call); /* false: cancelled; frees it */
    cc->call = NULL;
    cc->cb(XMPPD_CTL_CANCELLED, NULL, cc->ud);
    cc->cb = NULL;
    if (cc->running)
        return;
    ctl_forget(cc->r);
    free(cc);
}

XMPPD_EXPORT int xmppd_ctl_run(xmppd_module *m, const char *name, const json_t *req,
                               xmppd_ctl_result_cb cb, void *ud)
{
    if ((m && !m->loaded) || !name || !req || !cb || !find(name))
        return -1;
    ctl_call *cc = calloc(1, sizeof(*cc));
    if (!cc)
        return -1;
    *cc = (ctl_call){ .cb = cb, .ud = ud, .m = m, .running = true };
    if (m && !(cc->call = xmppd_call_new(m, call_cancelled, cc))) {
        free(cc);
        return -1;
    }
    xmppd_ctl_request *r = ctl_run(name, req, call_answer, cc);
    cc->running = false;
    if (!cc->cb) { /* m unloaded meanwhile and heard so */
        if (!cc->answered)
            ctl_forget(r);
        json_decref(cc->resp);
        free(cc);
        return 0;
    }
    if (!cc->answered) { /* cc lives until the answer, or m's unload */
        cc->r = r;
        return 0;
    }
    /* Answered already: the caller hears it on the next loop turn, never
     * inside this call (still tied to m). */
    xmppd_call_finish(cc->call);
    cc->call = NULL;
    if (xmppd_defer(m, call_deliver, call_deliver_cancelled, cc) < 0)
        call_deliver(cc); /* out of memory: once, now */
    return 0;
}
