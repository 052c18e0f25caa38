/* Login sessions of the admin API, for the web console (mod_admin_web):
 * `login` checks an administrator's JID and password once, with the
 * host's auth provider (no second password store), and answers a random
 * token that stands for that administrator until login_lifetime passes
 * or `logout`. The browser keeps the token in memory and sends it as
 * "Authorization: Bearer" (RFC 6750): the password is not kept, every
 * call does not hash it again, and no cookie exists that a forged
 * cross-site request could ride on.
 *
 * Only the tokens' SHA-256 are kept, in memory (a restart or a reload of
 * the module logs everyone out), at most API_MAX_LOGINS (the oldest goes
 * first). Each call through a token checks the rule admin_api afresh, so
 * an administrator removed from the configuration loses access at once;
 * deleting, disabling or changing the password of the account, by any
 * path, ends its tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_api.h"

#define API_MAX_LOGINS 64
#define LOGIN_TOKEN_BYTES 32

struct api_login {
    unsigned char hash[32];
    xmppd_jid *jid;
    uint64_t expires; /* xmppd_now_ms */
    struct api_login *next;
};

static void login_free(api_login *l)
{
    xmppd_jid_free(l->jid);
    free(l);
}

void api_logins_free(api_state *st)
{
    while (st->logins) {
        api_login *l = st->logins;
        st->logins = l->next;
        login_free(l);
    }
}

/* Drops the expired ones; then the count of those left. */
static size_t logins_prune(api_state *st)
{
    size_t n = 0;
    uint64_t now = xmppd_now_ms();
    for (api_login **pp = &st->logins; *pp;) {
        api_login *l = *pp;
        if (l->expires <= now) {
            *pp = l->next;
            login_free(l);
        } else {
            pp = &l->next;
            n++;
        }
    }
    return n;
}

static api_login **login_slot(api_state *st, const char *presented)
{
    unsigned char h[32];
    if (xmppd_digest(XMPPD_HASH_SHA256, presented, strlen(presented), h) < 0)
        return NULL;
    logins_prune(st);
    for (api_login **pp = &st->logins; *pp; pp = &(*pp)->next)
        if (xmppd_ct_equal((*pp)->hash, h, sizeof(h)))
            return pp;
    return NULL;
}

const xmppd_jid *api_login_find(api_state *st, const char *presented)
{
    api_login **pp = login_slot(st, presented);
    return pp ? (*pp)->jid : NULL;
}

void api_logins_revoke(api_state *st, const char *user, const char *host)
{
    for (api_login **pp = &st->logins; *pp;) {
        api_login *l = *pp;
        if (strcmp(l->jid->node, user) == 0 && strcmp(l->jid->domain, host) == 0) {
            *pp = l->next;
            login_free(l);
        } else {
            pp = &l->next;
        }
    }
}

/* A new token for jid in out (hex, NUL-terminated); 0 or -1. */
static int login_issue(api_state *st, const xmppd_jid *jid, uint64_t lifetime_ms,
                       char out[2 * LOGIN_TOKEN_BYTES + 1])
{
    unsigned char raw[LOGIN_TOKEN_BYTES];
    api_login *l = calloc(1, sizeof(*l));
    if (!l || !(l->jid = xmppd_jid_dup(jid)) || xmppd_random(raw, sizeof(raw)) < 0) {
        if (l)
            login_free(l);
        return -1;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    xmppd_wipe(raw, sizeof(raw));
    xmppd_digest(XMPPD_HASH_SHA256, out, strlen(out), l->hash);
    l->expires = xmppd_now_ms() + lifetime_ms;
    if (logins_prune(st) >= API_MAX_LOGINS) { /* the oldest is the last */
        api_login **pp = &st->logins;
        while ((*pp)->next)
            pp = &(*pp)->next;
        login_free(*pp);
        *pp = NULL;
    }
    l->next = st->logins;
    st->logins = l;
    return 0;
}

typedef struct may_ctx {
    const api_call *c;
    json_t *hosts;
} may_ctx;

static int add_host(xmppd_host *h, void *ud)
{
    may_ctx *x = ud;
    if (api_may(x->c, h))
        json_array_append_new(x->hosts, json_string(xmppd_host_name(h)));
    return 0;
}

static void on_login_verified(int result, void *ud)
{
    api_call *c = ud;
    if (!api_back(c) || result == XMPPD_AUTH_CANCELLED)
        return;
    if (result == XMPPD_AUTH_MISMATCH || result == XMPPD_AUTH_USER_UNKNOWN ||
        result == XMPPD_AUTH_DISABLED) {
        api_fail(c, 401, "wrong credentials");
        return;
    }
    if (result != XMPPD_AUTH_OK) {
        api_fail(c, 503, "the credentials cannot be checked now: %s", xmppd_auth_result_str(result));
        return;
    }
    may_ctx x = { c, json_array() };
    bool server_wide = api_may(c, NULL);
    if (x.hosts)
        xmppd_host_foreach(add_host, &x);
    if (!x.hosts || (!server_wide && json_array_size(x.hosts) == 0)) {
        bool oom = !x.hosts;
        json_decref(x.hosts);
        if (oom)
            api_fail(c, 500, "out of memory");
        else
            api_fail(c, 403, "%s may not use the admin API", c->admin->bare);
        return;
    }
    const api_conf *conf = xmppd_module_conf(c->st->m);
    char tok[2 * LOGIN_TOKEN_BYTES + 1];
    if (login_issue(c->st, c->admin, (uint64_t)conf->login_lifetime, tok) < 0) {
        json_decref(x.hosts);
        api_fail(c, 500, "cannot make a token");
        return;
    }
    api_ok(c, json_pack("{s:s, s:s, s:I, s:b, s:o}", "token", tok, "jid", c->admin->bare,
                        "expires_in", (json_int_t)(conf->login_lifetime / 1000), "server_wide",
                        server_wide, "hosts", x.hosts));
    xmppd_wipe(tok, sizeof(tok));
}

/* login {"jid", "password"}: no credentials in the headers; the password
 * in the body is checked by the JID's host. */
void api_cmd_login(api_call *c)
{
    const char *jid = api_str(c, "jid");
    const char *pw = jid ? api_str(c, "password") : NULL;
    if (!pw)
        return;
    c->admin = xmppd_jid_parse(jid);
    xmppd_host *h = c->admin && c->admin->node && !c->admin->resource
                        ? xmppd_host_find(c->admin->domain) : NULL;
    if (!h) {
        xmppd_jid_free(c->admin);
        c->admin = NULL;
        api_fail(c, 401, "expected the JID of an account of this server (user@host)");
        return;
    }
    c->waiting++;
    xmppd_auth_verify_plain(c->st->m, h, c->admin->node, pw, on_login_verified, c);
}

/* logout: the token presented ends (200 also when it was a configured
 * token or Basic credentials: there is nothing to end then). */
void api_cmd_logout(api_call *c)
{
    bool ended = false;
    if (c->login_token) {
        api_login **pp = login_slot(c->st, c->login_token);
        if (pp) {
            api_login *l = *pp;
            *pp = l->next;
            login_free(l);
            ended = true;
        }
    }
    api_ok(c, json_pack("{s:b}", "logged_out", ended));
}
