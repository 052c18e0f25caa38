/* mod_motd: the message of the day and the welcome message of a host, set
 * by its administrators with the XEP-0133 commands set-motd (§4.26),
 * edit-motd (§4.27), delete-motd (§4.28), set-welcome (§4.29) and
 * delete-welcome (§4.30), offered through mod_adhoc to those mod_admin_adhoc
 * lets administer (access rule "service_admin", else the host's admins).
 *
 * Both texts are kept in the host's keyval store "motd" (user "", keys
 * "motd" and "welcome": {"text": ...}), so they survive restarts, and
 * cached here once loaded. The MOTD goes as a headline from the host to
 * each session once, on its initial presence (as Prosody's mod_motd
 * does); set-motd also sends it to every available session now (edit-motd
 * only stores it). The welcome message is due to each account created by
 * in-band registration (XEP-0077) and goes to its first session's initial
 * presence (clients log in right after registering: a message routed
 * offline then could still be on its way to storage and wait for the next
 * login). What is due is kept under user "", key "welcome-due" ({account:
 * text}, at most MOTD_DUE_MAX accounts), so a restart keeps it; a deleted
 * account's entry goes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xmppd/xmppd.h>

#include "../adhoc/adhoc_api.h"

#define MOTD_STORE "motd"
#define MOTD_ADMIN_NS "http://jabber.org/protocol/admin"
#define MOTD_MAX 10000 /* bytes of a message */
#define MOTD_DUE_MAX 10000 /* accounts waiting for their welcome message */

typedef struct motd_state {
    xmppd_module *m;
    xmppd_host *host;
    xmppd_store *store;
    char *text[2]; /* [0] MOTD, [1] welcome; NULL: none */
    json_t *due;   /* {account: welcome text} not yet sent */
} motd_state;

enum { MOTD, WELCOME };
static const char *const keys[] = { "motd", "welcome" };

/* ---- messages --------------------------------------------------------------------- */

static xmppd_stanza *headline(motd_state *st, const char *to, const char *text)
{
    xmppd_stanza *m = xmppd_stanza_new("message", XMPPD_NS_CLIENT);
    xmppd_stanza *b = m ? xmppd_stanza_tag(m, "body", NULL) : NULL;
    if (!b || xmppd_stanza_add_text(b, text, strlen(text)) < 0 ||
        xmppd_stanza_set_attr(m, "type", "headline") < 0 ||
        xmppd_stanza_set_attr(m, "from", xmppd_host_name(st->host)) < 0 ||
        xmppd_stanza_set_attr(m, "to", to) < 0) {
        xmppd_stanza_unref(m);
        return NULL;
    }
    return m;
}

static void send_to(motd_state *st, xmppd_session *s, const char *text)
{
    const xmppd_jid *j = xmppd_session_jid(s);
    xmppd_stanza *m = j ? headline(st, j->full, text) : NULL;
    if (m)
        xmppd_session_send(s, m);
    xmppd_stanza_unref(m);
}

static void save_due(motd_state *st);

/* Initial presence (RFC 6121 §4.2): the MOTD once per session; a welcome
 * message due to the account. */
static int on_presence(xmppd_event *ev, void *ud)
{
    motd_state *st = ud;
    const xmppd_presence_info *pi = ev->data;
    if (!ev->session || !pi || !pi->initial)
        return XMPPD_PASS;
    const xmppd_jid *j = xmppd_session_jid(ev->session);
    const char *welcome = j && j->node ? json_string_value(json_object_get(st->due, j->node)) : NULL;
    if (welcome) {
        send_to(st, ev->session, welcome);
        json_object_del(st->due, j->node);
        save_due(st);
    }
    if (st->text[MOTD])
        send_to(st, ev->session, st->text[MOTD]);
    return XMPPD_PASS;
}

typedef struct motd_sent {
    motd_state *st;
    size_t n;
} motd_sent;

static int send_available(xmppd_session *s, void *ud)
{
    motd_sent *c = ud;
    if (!xmppd_session_closed(s) && xmppd_session_available(s)) {
        send_to(c->st, s, c->st->text[MOTD]);
        c->n++;
    }
    return 0;
}

/* An account registered in-band (XEP-0077; mod_register's
 * "user-registered"): the welcome message is due to it. */
static int on_registered(xmppd_event *ev, void *ud)
{
    motd_state *st = ud;
    const char *user = ev->data;
    if (!st->text[WELCOME] || !user)
        return XMPPD_PASS;
    if (json_object_size(st->due) >= MOTD_DUE_MAX) {
        xmppd_log(st->m, XMPPD_LOG_WARN, "%d accounts wait for their welcome message: %s gets none",
                  MOTD_DUE_MAX, user);
        return XMPPD_PASS;
    }
    json_object_set_new(st->due, user, json_string(st->text[WELCOME]));
    save_due(st);
    return XMPPD_PASS;
}

static int on_deleted(xmppd_event *ev, void *ud)
{
    motd_state *st = ud;
    if (ev->data && json_object_del(st->due, ev->data) == 0)
        save_due(st);
    return XMPPD_PASS;
}

/* ---- storage ------------------------------------------------------------------------ */

static void on_loaded(int status, json_t *value, void *ud)
{
    /* ud: &st->text[i]; the module is loaded (CANCELLED before unload) */
    char **slot = ud;
    if (status != XMPPD_STORE_OK)
        return;
    const char *t = json_string_value(json_object_get(value, "text"));
    if (t && !*slot)
        *slot = strdup(t);
}

static void on_stored(int status, void *ud)
{
    motd_state *st = ud;
    if (status != XMPPD_STORE_OK && status != XMPPD_STORE_CANCELLED)
        xmppd_log(st->m, XMPPD_LOG_ERROR, "cannot store the message of the day");
}

/* What was due before a restart, merged with what came meanwhile. */
static void on_due_loaded(int status, json_t *value, void *ud)
{
    motd_state *st = ud;
    if (status != XMPPD_STORE_OK || !json_is_object(value))
        return;
    const char *user;
    json_t *v;
    json_object_foreach(value, user, v)
        if (json_is_string(v) && !json_object_get(st->due, user))
            json_object_set(st->due, user, v);
}

static void save_due(motd_state *st)
{
    xmppd_kv_set(st->store, "", "welcome-due", json_object_size(st->due) ? st->due : NULL,
                 on_stored, st);
}

/* Sets (text NULL: deletes) message i, in memory at once and in the store. */
static int store(motd_state *st, int i, const char *text)
{
    char *copy = text ? strdup(text) : NULL;
    if (text && !copy)
        return -1;
    free(st->text[i]);
    st->text[i] = copy;
    json_t *v = text ? json_pack("{s:s}", "text", text) : NULL;
    if (text && !v)
        return -1;
    xmppd_kv_set(st->store, "", keys[i], v, on_stored, st);
    json_decref(v);
    return 0;
}

/* ---- commands ------------------------------------------------------------------------- */

static bool allowed(xmppd_host *h, const xmppd_jid *requester, void *ud)
{
    (void)ud;
    return xmppd_access_allowed(h, "service_admin", requester, NULL, xmppd_is_admin(h, requester));
}

static xmppd_stanza *text_form(const char *title, const char *var, const char *label,
                               const char *current)
{
    xmppd_stanza *x = xmppd_form_new("form", MOTD_ADMIN_NS, title);
    xmppd_stanza *f = x ? xmppd_form_add_field(x, var, "text-multi", label, NULL) : NULL;
    if (f && !xmppd_stanza_tag(f, "required", NULL))
        f = NULL;
    /* a multi-line value is one <value/> per line (XEP-0004 §3.3) */
    for (const char *p = current; f && p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char *line = strndup(p, n);
        if (!line || xmppd_form_add_value(f, line) < 0)
            f = NULL;
        free(line);
        p = nl ? nl + 1 : p + n;
    }
    if (!f) {
        xmppd_stanza_unref(x);
        return NULL;
    }
    return x;
}

/* set-motd, edit-motd, set-welcome: a form, then the text stored. */
static void set_text(const adhoc_api *api, adhoc_session *s, unsigned action,
                     const xmppd_form *form, motd_state *st, int which, bool edit)
{
    const char *var = which == MOTD ? "motd" : "welcome";
    if (action == ADHOC_EXECUTE) {
        xmppd_stanza *x = which == MOTD
            ? text_form(edit ? "Editing the Message of the Day" : "Setting the Message of the Day",
                        var, "Message of the Day", edit ? st->text[MOTD] : NULL)
            : text_form("Setting the Welcome Message", var, "Welcome Message", NULL);
        if (x)
            api->next(s, x, ADHOC_COMPLETE, ADHOC_COMPLETE);
        else
            api->error(s, "wait", "resource-constraint", NULL);
        return;
    }
    char *text = form ? adhoc_form_text(form, var) : NULL;
    char why[64];
    snprintf(why, sizeof(why), "%s: 1 to %d bytes of text", var, MOTD_MAX);
    if (!text || !*text || strlen(text) > MOTD_MAX) {
        free(text);
        api->error(s, "modify", "bad-request", why);
        return;
    }
    if (store(st, which, text) < 0) {
        free(text);
        api->error(s, "wait", "resource-constraint", NULL);
        return;
    }
    free(text);
    char note[96];
    if (which == MOTD && !edit) {
        motd_sent c = { st, 0 };
        xmppd_host_sessions(st->host, send_available, &c);
        snprintf(note, sizeof(note), "Message of the day set and sent to %zu session(s)", c.n);
    } else {
        snprintf(note, sizeof(note), "%s", which == MOTD ? "Message of the day changed"
                                                         : "Welcome message set");
    }
    api->note(s, "info", note);
    api->complete(s, NULL);
}

static void set_motd(const adhoc_api *api, adhoc_session *s, unsigned action,
                     const xmppd_form *form, void *ud)
{
    set_text(api, s, action, form, ud, MOTD, false);
}

static void edit_motd(const adhoc_api *api, adhoc_session *s, unsigned action,
                      const xmppd_form *form, void *ud)
{
    set_text(api, s, action, form, ud, MOTD, true);
}

static void set_welcome(const adhoc_api *api, adhoc_session *s, unsigned action,
                        const xmppd_form *form, void *ud)
{
    set_text(api, s, action, form, ud, WELCOME, false);
}

static void delete_text(const adhoc_api *api, adhoc_session *s, motd_state *st, int which)
{
    if (store(st, which, NULL) < 0) {
        api->error(s, "wait", "resource-constraint", NULL);
        return;
    }
    api->note(s, "info", which == MOTD ? "Message of the day deleted" : "Welcome message deleted");
    api->complete(s, NULL);
}

static void delete_motd(const adhoc_api *api, adhoc_session *s, unsigned action,
                        const xmppd_form *form, void *ud)
{
    (void)action, (void)form;
    delete_text(api, s, ud, MOTD);
}

static void delete_welcome(const adhoc_api *api, adhoc_session *s, unsigned action,
                           const xmppd_form *form, void *ud)
{
    (void)action, (void)form;
    delete_text(api, s, ud, WELCOME);
}

static void add_commands(motd_state *st, const adhoc_api *api)
{
    static const struct { const char *node, *name; adhoc_step_fn step; } cmds[] = {
        { "set-motd", "Set Message of the Day", set_motd },
        { "edit-motd", "Edit Message of the Day", edit_motd },
        { "delete-motd", "Delete Message of the Day", delete_motd },
        { "set-welcome", "Set Welcome Message", set_welcome },
        { "delete-welcome", "Delete Welcome Message", delete_welcome },
    };
    if (!api || api->version < ADHOC_API_VERSION || api->size < sizeof(adhoc_api))
        return;
    char node[128];
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        snprintf(node, sizeof(node), MOTD_ADMIN_NS "#%s", cmds[i].node);
        adhoc_command c = { .node = node, .name = cmds[i].name, .allowed = allowed,
                            .step = cmds[i].step, .ud = st };
        if (api->add(api, st->m, &c) < 0)
            xmppd_log(st->m, XMPPD_LOG_WARN, "cannot offer the command %s", node);
    }
}

static int on_adhoc_ready(xmppd_event *ev, void *ud)
{
    add_commands(ud, ev->data);
    return XMPPD_PASS;
}

/* ---- lifecycle ------------------------------------------------------------------------- */

static void motd_unload(xmppd_module *m)
{
    motd_state *st = xmppd_module_data(m);
    free(st->text[MOTD]);
    free(st->text[WELCOME]);
    json_decref(st->due);
    free(st);
}

static int motd_load(xmppd_module *m, const void *conf)
{
    (void)conf;
    motd_state *st = calloc(1, sizeof(*st));
    if (!st)
        return xmppd_module_refuse(m, "out of memory");
    st->m = m;
    st->host = xmppd_module_host(m);
    st->store = xmppd_store_open(m, MOTD_STORE, XMPPD_STORE_KEYVAL);
    st->due = json_object();
    if (!st->store || !st->due) {
        json_decref(st->due);
        free(st);
        return xmppd_module_refuse(m, "no storage: load a storage driver module");
    }
    xmppd_module_set_data(m, st);
    if (xmppd_hook(m, "presence/broadcast", on_presence, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "user-registered", on_registered, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "user-deleted", on_deleted, XMPPD_PRIO_DEFAULT, st) < 0 ||
        xmppd_hook(m, "adhoc-ready", on_adhoc_ready, XMPPD_PRIO_DEFAULT, st) < 0) {
        json_decref(st->due);
        free(st);
        return xmppd_module_refuse(m, "out of memory");
    }
    for (int i = 0; i < 2; i++)
        xmppd_kv_get(st->store, "", keys[i], on_loaded, &st->text[i]);
    xmppd_kv_get(st->store, "", "welcome-due", on_due_loaded, st);
    return 0;
}

static void motd_ready(xmppd_module *m)
{
    motd_state *st = xmppd_module_data(m);
    add_commands(st, xmppd_use(st->host, "adhoc"));
}

XMPPD_MODULE(motd, .version = "1.0",
             .summary = "Message of the day and welcome message (XEP-0133 set/edit/delete-motd, "
                        "set/delete-welcome)",
             .depends = (const char *const[]){ "adhoc", NULL },
             .specs = (const char *const[]){ "XEP-0133", NULL },
             .load = motd_load, .ready = motd_ready, .unload = motd_unload);
