/* SASL mechanisms on a client stream, for both profiles: RFC 6120 §6
 * (<auth/>, then a stream restart) and SASL2 (XEP-0388, sasl2.c). The
 * mechanisms are the sasl layer's state machines (SCRAM-SHA-1/256/512 and
 * their -PLUS variants, PLAIN over TLS); the accounts come from the host's
 * auth provider. c->sasl2 picks the namespace and shape of what is sent. */
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c2s/c2s_conn.h"

static unsigned char fake_secret[32]; /* SCRAM fake salts for unknown users */

/* ---- what is offered --------------------------------------------------------------- */

static bool cb_available(c2s_conn *c, const char *type)
{
    unsigned char buf[XMPPD_HASH_MAX_LEN];
    size_t len = sizeof(buf);
    return c2s_channel_binding(c, type, buf, &len) == 0;
}

static const enum xmppd_hash g_order[] = { XMPPD_HASH_SHA512, XMPPD_HASH_SHA256, XMPPD_HASH_SHA1 };

size_t sasl_offered_names(const c2s_conn *c, const char *names[7], char bufs[3][32])
{
    size_t n = 0;
    for (size_t i = 0; i < 3; i++)
        if (c->offered & OFFER_PLUS(g_order[i])) {
            snprintf(bufs[i], 32, "%s-PLUS", xmppd_hash_scram_name(g_order[i]));
            names[n++] = bufs[i];
        }
    for (size_t i = 0; i < 3; i++)
        if (c->offered & OFFER_SCRAM(g_order[i]))
            names[n++] = xmppd_hash_scram_name(g_order[i]);
    if (c->offered & OFFER_PLAIN)
        names[n++] = "PLAIN";
    return n;
}

void sasl_add_mechanisms(c2s_conn *c, xmppd_stanza *features)
{
    unsigned can = xmppd_auth_mechanisms(c->s->host);
    c->offered = c->cb_offered = 0;
    for (size_t i = 0; i < CB_ADVERTISED; i++)
        if (cb_available(c, c2s_cb_types[i]))
            c->cb_offered |= 1u << i;
    for (int h = 0; h < XMPPD_HASH_COUNT; h++)
        if (can & XMPPD_AUTH_CAN_SCRAM(h))
            c->offered |= OFFER_SCRAM(h) | (c->cb_offered ? OFFER_PLUS(h) : 0);
    /* PLAIN reveals the password to the server: only inside TLS. */
    if ((can & XMPPD_AUTH_CAN_PLAIN) && c->s->secure)
        c->offered |= OFFER_PLAIN;

    const char *names[7];
    char bufs[3][32];
    size_t n = sasl_offered_names(c, names, bufs);
    xmppd_stanza *mechs = xmppd_stanza_tag(features, "mechanisms", NS_SASL);
    for (size_t i = 0; i < n; i++)
        xmppd_stanza_add_text(xmppd_stanza_tag(mechs, "mechanism", NS_SASL), names[i], strlen(names[i]));
    if (c->cb_offered) {
        /* XEP-0440: tell the client which channel bindings we support. */
        xmppd_stanza *cb = xmppd_stanza_tag(features, "sasl-channel-binding", NS_SASL_CB);
        for (size_t i = 0; i < CB_ADVERTISED; i++)
            if (c->cb_offered & (1u << i))
                xmppd_stanza_set_attr(xmppd_stanza_tag(cb, "channel-binding", NS_SASL_CB), "type",
                                      c2s_cb_types[i]);
    }
}

/* SCRAM-SHA-x(-PLUS) or PLAIN, and whether this stream offered it. */
bool sasl_mech_offered(const c2s_conn *c, const char *mech, enum xmppd_hash *h)
{
    if (strcmp(mech, "PLAIN") == 0)
        return c->offered & OFFER_PLAIN;
    for (int i = 0; i < XMPPD_HASH_COUNT; i++) {
        const char *base = xmppd_hash_scram_name((enum xmppd_hash)i);
        size_t bl = strlen(base);
        if (strncmp(mech, base, bl) != 0)
            continue;
        *h = (enum xmppd_hash)i;
        if (!mech[bl])
            return c->offered & OFFER_SCRAM(i);
        if (strcmp(mech + bl, "-PLUS") == 0)
            return c->offered & OFFER_PLUS(i);
    }
    return false;
}

/* ---- output in the profile of the exchange -------------------------------------------- */

void sasl_send(c2s_conn *c, const char *name, const unsigned char *data, size_t len)
{
    xmppd_stanza *el = xmppd_stanza_new(name, c->sasl2 ? NS_SASL2 : NS_SASL);
    if (data && len) {
        char *b = xmppd_base64_encode(data, len);
        if (b)
            xmppd_stanza_add_text(el, b, strlen(b));
        free(b);
    } else if (data && !c->sasl2) {
        xmppd_stanza_add_text(el, "=", 1); /* RFC 6120 §6.4.2: empty response */
    }
    c2s_write(c, el);
    xmppd_stanza_unref(el);
}

void sasl_reset(c2s_conn *c)
{
    scram_server_free(c->scram);
    c->scram = NULL;
    c->mech = NULL;
    free(c->pending_authzid);
    c->pending_authzid = NULL;
    sasl2_request_free(c->req);
    c->req = NULL;
    fast_grant_free(c->grant);
    c->grant = NULL;
}

/* ---- failures ------------------------------------------------------------------------ */

static void send_failure_now(c2s_conn *c, bool sasl2, const char *cond, const char *text)
{
    if (sasl2) {
        sasl2_write_failure(c, cond, text);
    } else {
        xmppd_stanza *f = xmppd_stanza_new("failure", NS_SASL);
        xmppd_stanza_tag(f, cond, NS_SASL);
        c2s_write(c, f);
        xmppd_stanza_unref(f);
    }
    if (c->auth_failures >= g_server.cfg->limits.auth_attempts)
        c2s_close(c, "policy-violation", "Too many failed authentication attempts");
}

struct delayed_failure {
    c2s_conn *c;
    const char *cond, *text;
    bool sasl2;
};

static void on_failure_delay(evutil_socket_t fd, short what, void *arg)
{
    struct delayed_failure *d = arg;
    c2s_conn *c = d->c;
    event_free(c->delay);
    c->delay = NULL;
    if (c->state != C2S_CLOSED && c->state != C2S_CLOSING) {
        send_failure_now(c, d->sasl2, d->cond, d->text);
        c2s_resume_input(c);
    }
    free(d);
}

/* The full name of the mechanism in progress, for the debug log. */
/* xmppd_auth_total{mechanism, result}: the mechanisms are a fixed few. */
static void count_auth(const char *mech, bool ok)
{
    static xmppd_metric *mt;
    static const char *const labels[] = { "mechanism", "result", NULL };
    if (!mt)
        mt = xmppd_metric_new(NULL, "xmppd_auth_total", XMPPD_METRIC_COUNTER,
                              "Client authentications (SASL and SASL2) by mechanism and result",
                              labels, NULL, 0);
    xmppd_metric_add(mt, (const char *[]){ mech, ok ? "success" : "failure" }, 1);
}

static void mech_name(const c2s_conn *c, char out[32])
{
    if (c->mech && strncmp(c->mech, "SCRAM", 5) == 0)
        snprintf(out, 32, "%s%s", xmppd_hash_scram_name(c->scram_hash), c->mech + 5);
    else
        snprintf(out, 32, "%s", c->mech ? c->mech : "?");
}

/* Failed credentials slow the stream down (the delay doubles per failure),
 * so guessing passwords over one stream is slow. */
void sasl_fail_text(c2s_conn *c, const char *cond, const char *text)
{
    bool credential = strcmp(cond, SASL_NOT_AUTHORIZED) == 0 || strcmp(cond, SASL_INVALID_AUTHZID) == 0 ||
                      strcmp(cond, SASL_CREDENTIALS_EXPIRED) == 0;
    bool sasl2 = c->sasl2;
    char mech[32];
    mech_name(c, mech);
    sasl_reset(c);
    c->sasl2 = false;
    if (!credential) {
        send_failure_now(c, sasl2, cond, text);
        return;
    }
    c->auth_failures++;
    count_auth(mech, false);
    log_kernel("c2s", XMPPD_LOG_INFO, "%s: authentication failed (%s) on %s", c->s->tag, cond,
               c->s->host->name);
    log_kernel("c2s", XMPPD_LOG_DEBUG, "%s: SASL mechanism %s", c->s->tag, mech);
    /* Per-address counting and policies (data NULL: no secret is passed). */
    xmppd_notify(c->s->host, "auth-failure", c->s, NULL);
    if (c->state == C2S_CLOSING || c->state == C2S_CLOSED)
        return;
    uint64_t ms = g_server.cfg->limits.auth_failure_delay;
    for (unsigned i = 1; i < c->auth_failures && ms < 60000; i++)
        ms *= 2;
    struct delayed_failure *d = malloc(sizeof(*d));
    if (!ms || !d || !(c->delay = evtimer_new(loop_base(), on_failure_delay, d))) {
        free(d);
        send_failure_now(c, sasl2, cond, text);
        return;
    }
    *d = (struct delayed_failure){ c, cond, text, sasl2 };
    c2s_pause_input(c);
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(c->delay, &tv);
}

void sasl_fail(c2s_conn *c, const char *cond)
{
    sasl_fail_text(c, cond, NULL);
}

/* ---- success ------------------------------------------------------------------------- */

void sasl_succeed(c2s_conn *c, const char *user, const unsigned char *extra, size_t len)
{
    free(c->s->user);
    c->s->user = strdup(user);
    c->s->authenticated = c->s->user != NULL;
    char mech[32];
    mech_name(c, mech);
    count_auth(mech, true);
    log_kernel("c2s", XMPPD_LOG_INFO, "%s: authenticated as %s@%s%s", c->s->tag, user,
               c->s->host->name, c->sasl2 ? " (SASL2)" : "");
    log_kernel("c2s", XMPPD_LOG_DEBUG, "%s: SASL mechanism %s", c->s->tag, mech);
    if (c->sasl2) {
        /* The request stays until <success/> is built. */
        scram_server_free(c->scram);
        c->scram = NULL;
        c->mech = NULL;
        xmppd_notify(c->s->host, "auth-success", c->s, (void *)user);
        sasl2_authenticated(c, extra, len);
        return;
    }
    sasl_reset(c);
    sasl_send(c, "success", extra, len);
    c->state = C2S_HEADER;
    xstream_restart(&c->x);
    xmppd_notify(c->s->host, "auth-success", c->s, (void *)user);
}

/* An authzid is acceptable only when it names the authenticating account
 * (RFC 6120 §6.4.6); clients commonly send their own bare or full JID.
 * SASL2 also wants it to match the stream's 'from' (XEP-0388 §3.4). */
static bool authzid_ok(c2s_conn *c, const char *authzid, const char *user)
{
    if (!authzid || !*authzid)
        return true;
    xmppd_jid *j = xmppd_jid_parse(authzid);
    bool ok = j && j->node && strcmp(j->node, user) == 0 && strcmp(j->domain, c->s->host->name) == 0;
    if (ok && c->sasl2 && c->stream_from) {
        xmppd_jid *from = xmppd_jid_parse(c->stream_from);
        ok = from && xmppd_jid_bare_equal(from, j);
        xmppd_jid_free(from);
    }
    xmppd_jid_free(j);
    return ok;
}

static int map_auth_result(int r)
{
    return r == XMPPD_AUTH_DISABLED ? 1 : r == XMPPD_AUTH_INTERNAL ? 2 : 0;
}

const char *sasl_auth_failure_cond(int r)
{
    static const char *const conds[] = { SASL_NOT_AUTHORIZED, SASL_ACCOUNT_DISABLED,
                                         SASL_TEMPORARY_FAILURE };
    return conds[map_auth_result(r)];
}

/* ---- PLAIN ------------------------------------------------------------------------------ */

struct plain_req {
    c2s_conn *c;
    char *user;
};

static void on_plain_verified(int result, void *ud)
{
    struct plain_req *r = ud;
    c2s_conn *c = r->c;
    if (c->state == C2S_OPEN && c->sasl_busy) {
        c->sasl_busy = false;
        if (result == XMPPD_AUTH_OK)
            sasl_succeed(c, r->user, NULL, 0);
        else
            sasl_fail(c, sasl_auth_failure_cond(result));
        c2s_resume_input(c);
    }
    c2s_unref(c);
    free(r->user);
    free(r);
}

static void sasl_plain(c2s_conn *c, const unsigned char *msg, size_t len)
{
    char *authzid = NULL, *authcid = NULL, *pass = NULL;
    if (sasl_plain_parse(msg, len, &authzid, &authcid, &pass) < 0) {
        sasl_fail(c, SASL_MALFORMED);
        return;
    }
    char *user = xmppd_nodeprep(authcid);
    if (!user) {
        sasl_fail(c, SASL_NOT_AUTHORIZED);
    } else if (!authzid_ok(c, authzid, user)) {
        sasl_fail(c, SASL_INVALID_AUTHZID);
    } else {
        struct plain_req *r = malloc(sizeof(*r));
        if (!r) {
            sasl_fail(c, SASL_TEMPORARY_FAILURE);
        } else {
            r->c = c2s_ref(c);
            r->user = user;
            user = NULL;
            c->sasl_busy = true;
            /* No more input until the provider answers: keeps order simple. */
            c2s_pause_input(c);
            xmppd_auth_verify_plain(NULL, c->s->host, r->user, pass, on_plain_verified, r);
        }
    }
    free(user);
    free(authzid);
    free(authcid);
    if (pass) {
        xmppd_wipe(pass, strlen(pass));
        free(pass);
    }
}

/* ---- SCRAM ------------------------------------------------------------------------------ */

static void on_scram_keys(int result, const xmppd_scram_keys *keys, void *ud)
{
    c2s_conn *c = ud;
    if (c->state == C2S_OPEN && c->sasl_busy && c->scram) {
        c->sasl_busy = false;
        if (result == XMPPD_AUTH_OK || result == XMPPD_AUTH_USER_UNKNOWN ||
            result == XMPPD_AUTH_NO_SCHEME) {
            /* Unknown users get a fake challenge and fail at the proof, so
             * the exchange does not reveal which accounts exist. */
            size_t len;
            char *first = scram_server_first(c->scram, result == XMPPD_AUTH_OK ? keys : NULL,
                                             fake_secret, sizeof(fake_secret), &len);
            if (first) {
                sasl_send(c, "challenge", (unsigned char *)first, len);
                free(first);
            } else {
                sasl_fail(c, SASL_TEMPORARY_FAILURE);
            }
        } else {
            sasl_fail(c, sasl_auth_failure_cond(result));
        }
        c2s_resume_input(c);
    }
    c2s_unref(c);
}

/* XEP-0474: the server-first-message signs the lists this stream offered. */
static int scram_add_ssdp(c2s_conn *c)
{
    if (!g_server.cfg->c2s.ssdp)
        return 0;
    const char *names[7], *cbs[CB_ADVERTISED];
    char bufs[3][32];
    size_t n = sasl_offered_names(c, names, bufs), n_cbs = 0;
    for (size_t i = 0; i < CB_ADVERTISED; i++)
        if (c->cb_offered & (1u << i))
            cbs[n_cbs++] = c2s_cb_types[i];
    char *h = scram_ssdp_hash(c->scram_hash, names, n, c->cb_offered ? cbs : NULL, n_cbs);
    int rc = h ? scram_server_set_ssdp(c->scram, h) : -1;
    free(h);
    return rc;
}

static void sasl_scram_first(c2s_conn *c, const unsigned char *msg, size_t len)
{
    scram_cb cbs[CB_ACCEPTED];
    unsigned char data[CB_ACCEPTED][XMPPD_HASH_MAX_LEN];
    size_t n = 0;
    for (size_t i = 0; i < CB_ACCEPTED; i++) {
        size_t dl = sizeof(data[i]);
        if (c2s_channel_binding(c, c2s_cb_types[i], data[i], &dl) == 0)
            cbs[n++] = (scram_cb){ c2s_cb_types[i], data[i], dl };
    }
    bool plus = strstr(c->mech, "-PLUS") != NULL;
    bool plus_offered = c->offered & (OFFER_PLUS(0) | OFFER_PLUS(1) | OFFER_PLUS(2));
    c->scram = scram_server_new(c->scram_hash, plus, plus_offered, cbs, n);
    const char *user = NULL, *authzid = NULL, *cond = NULL;
    if (!c->scram || scram_add_ssdp(c) < 0 ||
        scram_server_client_first(c->scram, (const char *)msg, len, &user, &authzid, &cond) < 0) {
        sasl_fail(c, cond ? cond : SASL_TEMPORARY_FAILURE);
        return;
    }
    char *node = xmppd_nodeprep(user);
    if (!node) {
        sasl_fail(c, SASL_NOT_AUTHORIZED);
        return;
    }
    if (!authzid_ok(c, authzid, node)) {
        free(node);
        sasl_fail(c, SASL_INVALID_AUTHZID);
        return;
    }
    free(c->pending_authzid);
    c->pending_authzid = node; /* the account, confirmed at the final step */
    c->sasl_busy = true;
    c2s_pause_input(c);
    xmppd_auth_get_scram(NULL, c->s->host, node, c->scram_hash, on_scram_keys, c2s_ref(c));
}

static void sasl_scram_final(c2s_conn *c, const unsigned char *msg, size_t len)
{
    const char *cond = NULL;
    size_t outlen;
    char *final = scram_server_client_final(c->scram, (const char *)msg, len, &outlen, &cond);
    if (!final) {
        sasl_fail(c, cond ? cond : SASL_NOT_AUTHORIZED);
        return;
    }
    char *user = c->pending_authzid;
    c->pending_authzid = NULL;
    sasl_succeed(c, user, (unsigned char *)final, outlen);
    free(final);
    free(user);
}

/* ---- the exchange ------------------------------------------------------------------------ */

void sasl_begin(c2s_conn *c, const char *mech, enum xmppd_hash h, bool initial,
                const unsigned char *msg, size_t len)
{
    if (fake_secret[0] == 0 && fake_secret[1] == 0)
        xmppd_random(fake_secret, sizeof(fake_secret));
    c->scram_hash = h;
    bool plain = strcmp(mech, "PLAIN") == 0;
    c->mech = plain ? "PLAIN" : strstr(mech, "-PLUS") ? "SCRAM-PLUS" : "SCRAM";
    if (!initial)
        sasl_send(c, "challenge", (const unsigned char *)"", 0); /* RFC 6120 §6.4.2 */
    else if (plain)
        sasl_plain(c, msg, len);
    else
        sasl_scram_first(c, msg, len);
}

void sasl_continue(c2s_conn *c, const unsigned char *msg, size_t len)
{
    if (strcmp(c->mech, "PLAIN") == 0)
        sasl_plain(c, msg, len);
    else if (!c->scram)
        sasl_scram_first(c, msg, len);
    else
        sasl_scram_final(c, msg, len);
}

static bool decode_payload(xmppd_stanza *el, unsigned char **out, size_t *len)
{
    const char *t = xmppd_stanza_text(el);
    if (strcmp(t, "=") == 0 || !*t) {
        *out = (unsigned char *)strdup("");
        *len = 0;
        return *out != NULL;
    }
    return xmppd_base64_decode(t, strlen(t), out, len) == 0;
}

void sasl_handle(c2s_conn *c, xmppd_stanza *el)
{
    const char *name = xmppd_stanza_name(el);
    if (c->s->authenticated || c->sasl_busy || (c->mech && c->sasl2)) {
        /* Not within a SASL2 exchange either: its answers would be SASL2's. */
        bool sasl2 = c->sasl2 && !c->s->authenticated;
        sasl_fail(c, SASL_MALFORMED);
        if (sasl2)
            c2s_close(c, "policy-violation", "RFC 6120 SASL inside a SASL2 exchange");
        return;
    }
    if (strcmp(name, "abort") == 0) {
        sasl_fail(c, SASL_ABORTED);
        return;
    }
    unsigned char *msg = NULL;
    size_t len = 0;
    if (strcmp(name, "auth") == 0) {
        if (c->mech) {
            sasl_fail(c, SASL_MALFORMED);
            return;
        }
        if (!c->s->secure && g_server.cfg->c2s.require_encryption) {
            send_failure_now(c, false, SASL_ENCRYPTION_REQUIRED, NULL);
            return;
        }
        const char *mech = xmppd_stanza_attr(el, "mechanism");
        enum xmppd_hash h = XMPPD_HASH_SHA1;
        if (!mech || !sasl_mech_offered(c, mech, &h)) {
            send_failure_now(c, false, SASL_INVALID_MECHANISM, NULL);
            return;
        }
        if (!decode_payload(el, &msg, &len)) {
            sasl_fail(c, SASL_INCORRECT_ENCODING);
            return;
        }
        /* SCRAM is client-first: an empty initial response asks us for an
         * empty challenge (RFC 6120 §6.4.2); PLAIN's must be there. */
        sasl_begin(c, mech, h, len > 0 || strcmp(mech, "PLAIN") == 0, msg, len);
    } else if (strcmp(name, "response") == 0) {
        if (!c->mech) {
            sasl_fail(c, SASL_MALFORMED);
            return;
        }
        if (!decode_payload(el, &msg, &len)) {
            sasl_fail(c, SASL_INCORRECT_ENCODING);
            return;
        }
        sasl_continue(c, msg, len);
    } else {
        sasl_fail(c, SASL_MALFORMED);
    }
    if (msg) {
        xmppd_wipe(msg, len);
        free(msg);
    }
}
