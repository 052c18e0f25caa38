/* mod_admin_adhoc: XEP-0133 Service Administration, the commands a
 * host's administrators (access.h: "admins"; the access rule
 * "service_admin" when configured) run from their XMPP client, offered
 * through mod_adhoc (XEP-0050). Everyone else neither sees them nor may
 * run them (<forbidden/>).
 *
 * The commands are in aa_accounts.c (accounts and sessions) and aa_lists.c
 * (counts, lists, rosters, announcements); this file registers them and
 * holds what they share: the per-run state, reading accounts from forms,
 * building forms. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_adhoc.h"

static const xmppd_option aa_options[] = {
    { "drain_timeout", XMPPD_OPT_DURATION, XMPPD_OFF(aa_conf, drain_timeout), "5s", 100, 60000,
      .doc = "delete-user: how long to wait for the account's sessions to end before removing it" },
    { NULL }
};

/* ---- per-run state ------------------------------------------------------------------ */

static void aa_run_free(aa_run *r)
{
    for (aa_run **pp = &r->st->runs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    for (size_t i = 0; i < r->n_users; i++)
        free(r->users[i]);
    free(r->users);
    free(r->failed);
    free(r);
}

aa_run *aa_run_get(aa_state *st, const adhoc_api *api, adhoc_session *s)
{
    aa_run *r = api->data(s);
    if (r)
        return r;
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->st = st;
    r->api = api;
    r->s = s;
    r->next = st->runs;
    st->runs = r;
    api->set_data(s, r);
    return r;
}

bool aa_run_back(aa_run *r)
{
    r->waiting--;
    if (r->s)
        return true;
    if (r->waiting == 0)
        aa_run_free(r);
    return false;
}

/* The run ends: free its state, or leave it to the callback still due. */
static void aa_end(const adhoc_api *api, adhoc_session *s, void *ud)
{
    (void)ud;
    aa_run *r = api->data(s);
    if (!r)
        return;
    r->s = NULL;
    if (r->waiting == 0)
        aa_run_free(r);
}

void aa_run_failed(aa_run *r, const char *user, const char *why)
{
    size_t old = r->failed ? strlen(r->failed) : 0;
    size_t add = strlen(user) + strlen(why) + 6;
    char *f = realloc(r->failed, old + add);
    if (!f)
        return;
    snprintf(f + old, add, "%s%s (%s)", old ? ", " : "", user, why);
    r->failed = f;
}

void aa_complete_many(aa_run *r, const char *done)
{
    char text[160];
    snprintf(text, sizeof(text), "%zu of %zu account(s) %s", r->n_done, r->n_users, done);
    r->api->note(r->s, "info", text);
    if (r->failed) {
        char *why = malloc(strlen(r->failed) + strlen(done) + 8);
        if (why) {
            sprintf(why, "Not %s: %s", done, r->failed);
            r->api->note(r->s, "warn", why);
            free(why);
        }
    }
    r->api->complete(r->s, NULL);
}

/* ---- forms ---------------------------------------------------------------------------- */

xmppd_stanza *aa_form(const char *type, const char *title, const char *instructions)
{
    xmppd_stanza *x = xmppd_form_new(type, AA_NS, title);
    xmppd_stanza *in = x && instructions ? xmppd_stanza_tag(x, "instructions", NULL) : NULL;
    if (in)
        xmppd_stanza_add_text(in, instructions, strlen(instructions));
    return x;
}

xmppd_stanza *aa_field(xmppd_stanza *x, const char *var, const char *type, const char *label,
                       bool required)
{
    xmppd_stanza *f = xmppd_form_add_field(x, var, type, label, NULL);
    if (f && required)
        xmppd_stanza_tag(f, "required", NULL);
    return f;
}

char *aa_local_user(aa_state *st, const char *text, const char **why_r)
{
    xmppd_jid *j = text ? xmppd_jid_parse(text) : NULL;
    char *user = NULL;
    if (!j || !j->node)
        *why_r = "not an account's JID";
    else if (strcmp(j->domain, xmppd_host_name(st->host)) != 0)
        *why_r = "not an account of this host";
    else if (!(user = strdup(j->node)))
        *why_r = "out of memory";
    xmppd_jid_free(j);
    return user;
}

int aa_read_users(aa_run *r, const xmppd_form *f, const char *var, bool multi)
{
    size_t n = 0;
    const char *const *v = xmppd_form_values(f, var, &n);
    char text[160];
    if (!v || n == 0 || (!multi && n > 1) || n > AA_MAX_JIDS) {
        snprintf(text, sizeof(text), "%s: expected %s", var,
                 multi ? "1 to 100 account JIDs" : "one account JID");
        r->api->error(r->s, "modify", "bad-request", text);
        return -1;
    }
    r->users = calloc(n, sizeof(*r->users));
    if (!r->users) {
        r->api->error(r->s, "wait", "resource-constraint", NULL);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *why = NULL;
        char *u = aa_local_user(r->st, v[i], &why);
        if (!u) {
            snprintf(text, sizeof(text), "%s: %.100s is %s", var, v[i], why);
            r->api->error(r->s, "modify", "bad-request", text);
            return -1;
        }
        r->users[r->n_users++] = u;
    }
    return 0;
}

const xmppd_form *aa_stage(const adhoc_api *api, adhoc_session *s, unsigned action,
                           const xmppd_form *form, xmppd_stanza *(*build)(void))
{
    if (action == ADHOC_EXECUTE) {
        xmppd_stanza *x = build();
        if (x)
            api->next(s, x, ADHOC_COMPLETE, ADHOC_COMPLETE);
        else
            api->error(s, "wait", "resource-constraint", NULL);
        return NULL;
    }
    if (!form) {
        api->error(s, "modify", "bad-request", "the command's form is missing");
        return NULL;
    }
    return form;
}

aa_run *aa_begin(aa_state *st, const adhoc_api *api, adhoc_session *s, unsigned action,
                 const xmppd_form *form, xmppd_stanza *(*build)(void), const char *var, bool multi,
                 const xmppd_form **f_r)
{
    const xmppd_form *f = aa_stage(api, s, action, form, build);
    if (!f)
        return NULL;
    aa_run *r = aa_run_get(st, api, s);
    if (!r) {
        api->error(s, "wait", "resource-constraint", NULL);
        return NULL;
    }
    if (aa_read_users(r, f, var, multi) < 0)
        return NULL;
    *f_r = f;
    return r;
}

/* ---- registration --------------------------------------------------------------------- */

/* The access rule "service_admin" decides; without one (or no entry
 * matching), the host's administrators. */
static bool aa_allowed(xmppd_host *h, const xmppd_jid *requester, void *ud)
{
    (void)ud;
    return xmppd_access_allowed(h, "service_admin", requester, NULL, xmppd_is_admin(h, requester));
}

static void aa_add_set(aa_state *st, const adhoc_api *api, const aa_command *set)
{
    char node[128];
    for (const aa_command *c = set; c->node; c++) {
        snprintf(node, sizeof(node), AA_NS "#%s", c->node);
        adhoc_command cmd = { .node = node, .name = c->name, .allowed = aa_allowed,
                              .step = c->step, .end = aa_end, .ud = st };
        if (api->add(api, st->m, &cmd) < 0)
            xmppd_log(st->m, XMPPD_LOG_WARN, "cannot offer the command %s", node);
    }
}

static void aa_add_all(aa_state *st, const adhoc_api *api)
{
    if (!api || api->version < ADHOC_API_VERSION || api->size < sizeof(adhoc_api))
        return;
    aa_add_set(st, api, aa_account_commands);
    aa_add_set(st, api, aa_list_commands);
}

/* A mod_adhoc instance became ready (a load or reload of it). */
static int aa_on_adhoc_ready(xmppd_event *ev, void *ud)
{
    aa_add_all(ud, ev->data);
    return XMPPD_PASS;
}

static int aa_load(xmppd_module *m, const void *conf)
{
    (void)conf;
    aa_state *st = calloc(1, sizeof(*st));
    if (!st)
        return xmppd_module_refuse(m, "out of memory");
    st->m = m;
    st->host = xmppd_module_host(m);
    xmppd_module_set_data(m, st);
    if (xmppd_hook(m, "adhoc-ready", aa_on_adhoc_ready, XMPPD_PRIO_DEFAULT, st) < 0) {
        free(st);
        return xmppd_module_refuse(m, "out of memory");
    }
    return 0;
}

static void aa_ready(xmppd_module *m)
{
    aa_state *st = xmppd_module_data(m);
    aa_add_all(st, xmppd_use(st->host, "adhoc"));
}

static void aa_unload(xmppd_module *m)
{
    aa_state *st = xmppd_module_data(m);
    while (st->runs) /* runs whose timers the unload released */
        aa_run_free(st->runs);
    free(st);
}

XMPPD_MODULE(admin_adhoc, .version = "1.0",
             .summary = "XEP-0133 service administration commands for the host's administrators",
             .depends = (const char *const[]){ "adhoc", NULL },
             .specs = (const char *const[]){ "XEP-0133", NULL },
             .options = aa_options, .conf_size = sizeof(aa_conf),
             .load = aa_load, .ready = aa_ready, .unload = aa_unload);
