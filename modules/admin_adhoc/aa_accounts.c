/* XEP-0133 commands on accounts and sessions: add-user (§4.1),
 * delete-user (§4.2), disable-user (§4.3), reenable-user (§4.4),
 * end-user-session (§4.5), change-user-password (§4.7). Accounts go through the host's auth provider (auth.h); a
 * deleted account's sessions end first (<not-authorized/>), as with
 * `xmppctl deluser`, and a changed password ends the account's other
 * sessions with <reset/> (RFC 6120 §4.9.3.16), as `xmppctl passwd` does.
 * A disabled account (the provider's set_disabled: its next login is SASL
 * <account-disabled/>, RFC 6120 §6.5.1) has its sessions ended with
 * <not-authorized/>, as `xmppctl disable` does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_adhoc.h"

#define AA_DRAIN_POLL_MS 50

/* ---- ending sessions ---------------------------------------------------------------- */

typedef struct aa_sessions {
    xmppd_session **v;
    size_t n, cap;
    const xmppd_session *except;
} aa_sessions;

static int collect_one(xmppd_session *s, void *ud)
{
    aa_sessions *c = ud;
    if (s == c->except || xmppd_session_closed(s))
        return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 8;
        xmppd_session **v = realloc(c->v, cap * sizeof(*v));
        if (!v)
            return 1;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = xmppd_session_ref(s);
    return 0;
}

/* Ends user's sessions but `except` (collected first: closing changes the
 * table being walked); returns how many. */
static size_t end_sessions(aa_state *st, const char *user, const xmppd_session *except,
                           const char *condition, const char *text)
{
    aa_sessions c = { .except = except };
    xmppd_user_sessions(st->host, user, collect_one, &c);
    for (size_t i = 0; i < c.n; i++) {
        const xmppd_jid *j = xmppd_session_jid(c.v[i]);
        xmppd_log(st->m, XMPPD_LOG_INFO, "ending session %s@%s%s%s (%s)", user,
                  xmppd_host_name(st->host), j && j->resource ? "/" : "",
                  j && j->resource ? j->resource : "", condition);
        xmppd_session_close(c.v[i], condition, text);
        xmppd_session_unref(c.v[i]);
    }
    free(c.v);
    return c.n;
}

static int count_one(xmppd_session *s, void *ud)
{
    (void)s, (void)ud;
    return 0;
}

/* ---- add-user ---------------------------------------------------------------------------- */

static xmppd_stanza *add_form(void)
{
    xmppd_stanza *x = aa_form("form", "Adding a User", "Fill out this form to add a user.");
    if (x && (!aa_field(x, "accountjid", "jid-single", "The Jabber ID for the account to be added", true) ||
              !aa_field(x, "password", "text-private", "The password for this account", true) ||
              !aa_field(x, "password-verify", "text-private", "Retype password", true))) {
        xmppd_stanza_unref(x);
        return NULL;
    }
    return x;
}

static void add_done(int result, void *ud)
{
    aa_run *r = ud;
    if (!aa_run_back(r) || result == XMPPD_AUTH_CANCELLED)
        return;
    char text[1200];
    switch (result) {
    case XMPPD_AUTH_OK:
        snprintf(text, sizeof(text), "Account %s@%s created", r->users[0], xmppd_host_name(r->st->host));
        r->api->note(r->s, "info", text);
        r->api->complete(r->s, NULL);
        break;
    case XMPPD_AUTH_EXISTS:
        r->api->error(r->s, "cancel", "conflict", "the account exists already");
        break;
    case XMPPD_AUTH_INVALID:
        r->api->error(r->s, "modify", "not-acceptable", "the account name or password was refused");
        break;
    case XMPPD_AUTH_UNSUPPORTED:
        r->api->error(r->s, "cancel", "not-allowed", "the host's accounts cannot be created here");
        break;
    default:
        r->api->error(r->s, "wait", "internal-server-error", xmppd_auth_result_str(result));
    }
}

static const char *form_password(aa_run *r, const xmppd_form *f)
{
    const char *pw = xmppd_form_value(f, "password");
    if (!pw || !*pw) {
        r->api->error(r->s, "modify", "bad-request", "password: required");
        return NULL;
    }
    const char *again = xmppd_form_value(f, "password-verify");
    if (again && strcmp(again, pw) != 0) {
        r->api->error(r->s, "modify", "bad-request", "the passwords do not match");
        return NULL;
    }
    return pw;
}

static void add_step(const adhoc_api *api, adhoc_session *s, unsigned action, const xmppd_form *form,
                     void *ud)
{
    aa_state *st = ud;
    const xmppd_form *f = NULL;
    aa_run *r = aa_begin(st, api, s, action, form, add_form, "accountjid", false, &f);
    if (!r)
        return;
    const char *pw = form_password(r, f);
    if (!pw)
        return;
    r->waiting++;
    xmppd_auth_create(st->m, st->host, r->users[0], pw, add_done, r);
}

/* ---- delete-user ------------------------------------------------------------------------- */

static xmppd_stanza *del_form(void)
{
    xmppd_stanza *x = aa_form("form", "Deleting a User", "Fill out this form to delete a user.");
    if (x && !aa_field(x, "accountjids", "jid-multi", "The Jabber ID(s) to delete", true)) {
        xmppd_stanza_unref(x);
        return NULL;
    }
    return x;
}

static void del_next(aa_run *r);

static void del_done(int result, void *ud)
{
    aa_run *r = ud;
    if (!aa_run_back(r) || result == XMPPD_AUTH_CANCELLED)
        return;
    const char *user = r->users[r->next_user++];
    if (result == XMPPD_AUTH_OK)
        r->n_done++;
    else
        aa_run_failed(r, user, result == XMPPD_AUTH_USER_UNKNOWN ? "no such account"
                                                                 : xmppd_auth_result_str(result));
    del_next(r);
}

/* Waits until the account's sessions are gone (what they write at logout
 * must not outlive the purge), then removes it. */
static uint64_t del_tick(void *ud)
{
    aa_run *r = ud;
    if (!r->s) {
        aa_run_back(r);
        return 0;
    }
    const char *user = r->users[r->next_user];
    if (xmppd_user_sessions(r->st->host, user, count_one, NULL) > 0 && xmppd_now_ms() < r->deadline)
        return AA_DRAIN_POLL_MS;
    xmppd_auth_remove(r->st->m, r->st->host, user, del_done, r); /* the timer's wait goes on there */
    return 0;
}

static void del_next(aa_run *r)
{
    aa_state *st = r->st;
    if (r->next_user < r->n_users) {
        const aa_conf *c = xmppd_module_conf(st->m);
        end_sessions(st, r->users[r->next_user], NULL, "not-authorized", "Account deleted");
        r->deadline = xmppd_now_ms() + (uint64_t)c->drain_timeout;
        r->waiting++;
        if (!xmppd_timer_add(st->m, 0, del_tick, r)) {
            r->waiting--;
            r->api->error(r->s, "wait", "resource-constraint", NULL);
        }
        return;
    }
    aa_complete_many(r, "deleted");
}

static void del_step(const adhoc_api *api, adhoc_session *s, unsigned action, const xmppd_form *form,
                     void *ud)
{
    aa_state *st = ud;
    const xmppd_form *f = NULL;
    aa_run *r = aa_begin(st, api, s, action, form, del_form, "accountjids", true, &f);
    if (!r)
        return;
    del_next(r);
}

/* ---- disable-user / reenable-user -------------------------------------------------------------- */

static xmppd_stanza *disable_form(void)
{
    xmppd_stanza *x = aa_form("form", "Disabling a User", "Fill out this form to disable a user.");
    if (x && !aa_field(x, "accountjids", "jid-multi", "The Jabber ID(s) to disable", true)) {
        xmppd_stanza_unref(x);
        return NULL;
    }
    return x;
}

static xmppd_stanza *reenable_form(void)
{
    xmppd_stanza *x = aa_form("form", "Re-Enabling a User", "Fill out this form to re-enable a user.");
    if (x && !aa_field(x, "accountjids", "jid-multi", "The Jabber ID(s) to re-enable", true)) {
        xmppd_stanza_unref(x);
        return NULL;
    }
    return x;
}

static void dis_next(aa_run *r);

static void dis_done(int result, void *ud)
{
    aa_run *r = ud;
    if (!aa_run_back(r) || result == XMPPD_AUTH_CANCELLED)
        return;
    const char *user = r->users[r->next_user++];
    if (result == XMPPD_AUTH_OK) {
        r->n_done++;
        if (r->disabling)
            end_sessions(r->st, user, NULL, "not-authorized", "Account disabled");
    } else if (result == XMPPD_AUTH_UNSUPPORTED) {
        r->unsupported = true;
    } else {
        aa_run_failed(r, user, result == XMPPD_AUTH_USER_UNKNOWN ? "no such account"
                                                                 : xmppd_auth_result_str(result));
    }
    dis_next(r);
}

static void dis_next(aa_run *r)
{
    if (r->next_user < r->n_users && !r->unsupported) {
        r->waiting++;
        xmppd_auth_set_disabled(r->st->m, r->st->host, r->users[r->next_user], r->disabling, NULL,
                                dis_done, r);
        return;
    }
    if (r->unsupported) {
        r->api->error(r->s, "cancel", "feature-not-implemented",
                      "the host's auth provider cannot disable accounts");
        return;
    }
    aa_complete_many(r, r->disabling ? "disabled" : "re-enabled");
}

static void dis_start(const adhoc_api *api, adhoc_session *s, unsigned action,
                      const xmppd_form *form, aa_state *st, bool disabling)
{
    const xmppd_form *f = NULL;
    aa_run *r = aa_begin(st, api, s, action, form, disabling ? disable_form : reenable_form,
                         "accountjids", true, &f);
    if (!r)
        return;
    r->disabling = disabling;
    dis_next(r);
}

static void disable_step(const adhoc_api *api, adhoc_session *s, unsigned action,
                         const xmppd_form *form, void *ud)
{
    dis_start(api, s, action, form, ud, true);
}

static void reenable_step(const adhoc_api *api, adhoc_session *s, unsigned action,
                          const xmppd_form *form, void *ud)
{
    dis_start(api, s, action, form, ud, false);
}

/* ---- change-user-password ------------------------------------------------------------------ */

static xmppd_stanza *passwd_form(void)
{
    xmppd_stanza *x = aa_form("form", "Changing a User Password",
                              "Fill out this form to change a user's password.");
    if (x && (!aa_field(x, "accountjid", "jid-single", "The Jabber ID for this account", true) ||
              !aa_field(x, "password", "text-private", "The password for this account", true))) {
        xmppd_stanza_unref(x);
        return NULL;
    }
    return x;
}

/* The requester's own session, kept when its password changes. */
static const xmppd_session *own_session(aa_run *r)
{
    return xmppd_session_find(r->api->requester(r->s));
}

static void passwd_done(int result, void *ud)
{
    aa_run *r = ud;
    if (!aa_run_back(r) || result == XMPPD_AUTH_CANCELLED)
        return;
    char text[1200];
    switch (result) {
    case XMPPD_AUTH_OK: {
        size_t n = end_sessions(r->st, r->users[0], own_session(r), "reset", NULL);
        snprintf(text, sizeof(text), "Password of %s@%s changed (%zu session(s) ended)", r->users[0],
                 xmppd_host_name(r->st->host), n);
        r->api->note(r->s, "info", text);
        r->api->complete(r->s, NULL);
        break;
    }
    case XMPPD_AUTH_USER_UNKNOWN:
        r->api->error(r->s, "cancel", "item-not-found", "no such account");
        break;
    case XMPPD_AUTH_INVALID:
        r->api->error(r->s, "modify", "not-acceptable", "the password was refused");
        break;
    case XMPPD_AUTH_UNSUPPORTED:
        r->api->error(r->s, "cancel", "not-allowed", "the host's passwords cannot be changed here");
        break;
    default:
        r->api->error(r->s, "wait", "internal-server-error", xmppd_auth_result_str(result));
    }
}

static void passwd_step(const adhoc_api *api, adhoc_session *s, unsigned action,
                        const xmppd_form *form, void *ud)
{
    aa_state *st = ud;
    const xmppd_form *f = NULL;
    aa_run *r = aa_begin(st, api, s, action, form, passwd_form, "accountjid", false, &f);
    if (!r)
        return;
    const char *pw = form_password(r, f);
    if (!pw)
        return;
    r->waiting++;
    xmppd_auth_set_password(st->m, st->host, r->users[0], pw, passwd_done, r);
}

/* ---- end-user-session ------------------------------------------------------------------------ */

static xmppd_stanza *kick_form(void)
{
    xmppd_stanza *x = aa_form("form", "Ending a User Session",
                              "Fill out this form to end a user's session (a bare JID: all of them).");
    if (x && !aa_field(x, "accountjids", "jid-multi", "The Jabber ID(s) for which to end sessions", true)) {
        xmppd_stanza_unref(x);
        return NULL;
    }
    return x;
}

static void kick_step(const adhoc_api *api, adhoc_session *s, unsigned action, const xmppd_form *form,
                      void *ud)
{
    aa_state *st = ud;
    const xmppd_form *f = aa_stage(api, s, action, form, kick_form);
    if (!f)
        return;
    size_t n = 0;
    const char *const *v = xmppd_form_values(f, "accountjids", &n);
    if (!v || n == 0 || n > AA_MAX_JIDS) {
        api->error(s, "modify", "bad-request", "accountjids: expected 1 to 100 JIDs");
        return;
    }
    xmppd_jid **jids = calloc(n, sizeof(*jids));
    if (!jids) {
        api->error(s, "wait", "resource-constraint", NULL);
        return;
    }
    char text[160];
    for (size_t i = 0; i < n; i++) {
        jids[i] = xmppd_jid_parse(v[i]);
        if (!jids[i] || !jids[i]->node || strcmp(jids[i]->domain, xmppd_host_name(st->host)) != 0) {
            snprintf(text, sizeof(text), "accountjids: %.100s is not an account of this host", v[i]);
            api->error(s, "modify", "bad-request", text);
            n = i + 1;
            goto out;
        }
    }
    size_t ended = 0;
    for (size_t i = 0; i < n; i++) {
        if (!jids[i]->resource) {
            ended += end_sessions(st, jids[i]->node, NULL, "policy-violation",
                                  "Session ended by an administrator");
            continue;
        }
        xmppd_session *sess = xmppd_session_find(jids[i]);
        if (sess && !xmppd_session_closed(sess)) {
            xmppd_log(st->m, XMPPD_LOG_INFO, "ending session %s (policy-violation)", jids[i]->full);
            xmppd_session_close(sess, "policy-violation", "Session ended by an administrator");
            ended++;
        }
    }
    snprintf(text, sizeof(text), "%zu session(s) ended", ended);
    api->note(s, "info", text);
    api->complete(s, NULL);
out:
    for (size_t i = 0; i < n; i++)
        xmppd_jid_free(jids[i]);
    free(jids);
}

const aa_command aa_account_commands[] = {
    { "add-user", "Add a User", add_step },
    { "delete-user", "Delete a User", del_step },
    { "disable-user", "Disable a User", disable_step },
    { "reenable-user", "Re-Enable a User", reenable_step },
    { "end-user-session", "End a User Session", kick_step },
    { "change-user-password", "Change a User Password", passwd_step },
    { NULL, NULL, NULL },
};
