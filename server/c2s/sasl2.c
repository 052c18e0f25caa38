/* SASL2 (XEP-0388): authentication in one element that also carries what
 * the stream should become, and a <success/> without a stream restart.
 *
 *   features   <authentication/> with the mechanisms RFC 6120 SASL offers
 *              (the same list: XEP-0474's hash covers either) and <inline/>:
 *              Bind2, FAST, and what "sasl2-features" handlers add
 *   request    <authenticate mechanism/> with <initial-response/>,
 *              <user-agent id/>, Bind2's <bind/>, FAST's elements, and
 *              children for "sasl2-inline" handlers (XEP-0198 <resume/>)
 *   exchange   <challenge/>/<response/> with the mechanisms of c2s_sasl.c,
 *              or one HT round (fast.c); <abort/>; <failure/> carries an
 *              RFC 6120 §6.5 condition
 *   success    after the account is proven: a FAST token when asked or
 *              due (fast.c), then the inline requests ("sasl2-inline";
 *              a resumed session skips Bind2), then Bind2 (bind2.c), then
 *              <success/> with <additional-data/>, <authorization-
 *              identifier/> (full JID when bound) and the answers, then
 *              the new <stream:features/>.
 *
 * Everything written to the session while <success/> is being built
 * (stanzas sent again after a resumption, presence a module sends on
 * "resource-bound") is held in c->cork and follows <success/> and the
 * features, so the client always reads the outcome first. */
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "c2s/c2s_conn.h"

/* ---- features ------------------------------------------------------------------------ */

void sasl2_add_feature(c2s_conn *c, xmppd_stanza *features)
{
    const char *names[7];
    char bufs[3][32];
    size_t n = sasl_offered_names(c, names, bufs);
    /* §2.1: never without a mechanism to start with. */
    if (!g_server.cfg->c2s.sasl2 || n == 0)
        return;
    xmppd_stanza *auth = xmppd_stanza_tag(features, "authentication", NS_SASL2);
    for (size_t i = 0; i < n; i++)
        xmppd_stanza_add_text(xmppd_stanza_tag(auth, "mechanism", NS_SASL2), names[i], strlen(names[i]));
    xmppd_stanza *inl = xmppd_stanza_tag(auth, "inline", NS_SASL2);
    bind2_add_feature(c, inl);
    fast_add_feature(c, inl);
    xmppd_event ev = { .name = "sasl2-features", .host = c->s->host, .session = c->s, .stanza = inl };
    xmppd_fire_all(&ev);
}

/* ---- failure ---------------------------------------------------------------------------- */

void sasl2_write_failure(c2s_conn *c, const char *cond, const char *text)
{
    xmppd_stanza *f = xmppd_stanza_new("failure", NS_SASL2);
    xmppd_stanza_tag(f, cond, NS_SASL);
    if (text)
        xmppd_stanza_set_text(xmppd_stanza_tag(f, "text", NS_SASL2), text);
    c2s_write(c, f);
    xmppd_stanza_unref(f);
}

/* ---- the request ----------------------------------------------------------------------- */

static void handle_authenticate(c2s_conn *c, xmppd_stanza *el)
{
    if (c->mech || c->req) {
        sasl_fail_text(c, SASL_MALFORMED, "an authentication is already in progress");
        return;
    }
    if (!c->s->secure && g_server.cfg->c2s.require_encryption) {
        sasl2_write_failure(c, SASL_ENCRYPTION_REQUIRED, NULL);
        c->sasl2 = false;
        return;
    }
    sasl2_request *r;
    const char *cond, *text;
    if (sasl2_request_parse(el, &r, &cond, &text) < 0) {
        sasl_fail_text(c, cond, text);
        return;
    }
    c->req = r;
    enum xmppd_hash h = XMPPD_HASH_SHA1;
    bool fast = fast_mech_offered(c, r->mechanism);
    if (!fast && !sasl_mech_offered(c, r->mechanism, &h)) {
        sasl_fail(c, SASL_INVALID_MECHANISM);
        return;
    }
    /* XEP-0484 §3.2: a token only for a mechanism offered here. */
    if (r->request_token && !fast_mech_offered(c, r->request_token)) {
        sasl_fail_text(c, SASL_MALFORMED, "<request-token/> names no FAST mechanism offered");
        return;
    }
    if (r->software || r->device)
        log_kernel("c2s", XMPPD_LOG_DEBUG, "%s: SASL2 client \"%s\" on \"%s\"", c->s->tag,
                   r->software ? r->software : "", r->device ? r->device : "");
    if (fast)
        fast_begin(c, r->mechanism);
    else
        sasl_begin(c, r->mechanism, h, r->has_initial, r->initial, r->initial_len);
}

static void handle_response(c2s_conn *c, xmppd_stanza *el)
{
    unsigned char *msg;
    size_t len;
    if (!c->mech || !c->req) {
        sasl_fail_text(c, SASL_MALFORMED, "no authentication in progress");
        return;
    }
    if (sasl2_decode(xmppd_stanza_text(el), &msg, &len) < 0) {
        sasl_fail(c, SASL_INCORRECT_ENCODING);
        return;
    }
    sasl_continue(c, msg, len);
    xmppd_wipe(msg, len);
    free(msg);
}

void sasl2_handle(c2s_conn *c, xmppd_stanza *el)
{
    const char *name = xmppd_stanza_name(el);
    if (c->s->authenticated) {
        /* §3.8: one authentication per stream. */
        c2s_close(c, "policy-violation", "The stream is authenticated already");
        return;
    }
    if (c->mech && !c->sasl2) {
        c2s_close(c, "policy-violation", "SASL2 inside an RFC 6120 SASL exchange");
        return;
    }
    c->sasl2 = true;
    if (strcmp(name, "authenticate") == 0)
        handle_authenticate(c, el);
    else if (strcmp(name, "response") == 0)
        handle_response(c, el);
    else if (strcmp(name, "abort") == 0)
        sasl_fail(c, SASL_ABORTED);
    else
        sasl_fail_text(c, SASL_MALFORMED, "not a SASL2 request");
}

/* ---- success ------------------------------------------------------------------------------ */

static void cork(c2s_conn *c)
{
    c->corked = true;
}

void sasl2_uncork(c2s_conn *c)
{
    xmppd_stanza **held = c->cork;
    size_t n = c->n_cork;
    c->corked = false;
    c->cork = NULL;
    c->n_cork = c->cap_cork = 0;
    c->cork_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (!c->x.closing)
            xstream_write(&c->x, held[i]);
        xmppd_stanza_unref(held[i]);
    }
    free(held);
}

static void run_inline_each(c2s_conn *c, xmppd_stanza *success);

/* The connection whose "sasl2-inline" handlers run (one loop thread). */
static const c2s_conn *g_inline_firing;

bool sasl2_inline_firing(const c2s_conn *c)
{
    return c == g_inline_firing;
}

/* "sasl2-inline" for each request the kernel does not serve itself;
 * handlers answer into success, at once or, having taken
 * xmppd_bind2_hold, later. A resumption (XEP-0198) moves another
 * session onto this connection: c->s is then that session. */
static void run_inline(c2s_conn *c, xmppd_stanza *success)
{
    g_inline_firing = c;
    run_inline_each(c, success);
    g_inline_firing = NULL;
}

static void run_inline_each(c2s_conn *c, xmppd_stanza *success)
{
    for (xmppd_stanza *ch = xmppd_stanza_first(c->req->el); ch; ch = xmppd_stanza_next(ch)) {
        if (sasl2_request_known(ch))
            continue;
        xmppd_event ev = { .name = "sasl2-inline", .host = c->s->host, .session = c->s,
                           .stanza = ch, .data = success };
        xmppd_fire(&ev);
        if (c->state == C2S_CLOSING || c->state == C2S_CLOSED)
            return;
    }
}

/* <success/> with the FAST token and the authorization identifier, then
 * the new stream features and what was written meanwhile. */
static void send_success(c2s_conn *c, xmppd_stanza *success)
{
    fast_add_token(c, success);
    xmppd_stanza *aid = xmppd_stanza_child(success, "authorization-identifier", NS_SASL2);
    if (c->s->bound) {
        xmppd_stanza_set_text(aid, c->s->jid->full);
    } else {
        xmppd_jid *bare = xmppd_jid_make(c->s->user, c->s->host->name, NULL);
        xmppd_stanza_set_text(aid, bare ? bare->full : c->s->user);
        xmppd_jid_free(bare);
    }
    c2s_write(c, success);
    xmppd_stanza_unref(success);
    sasl_reset(c);
    c->sasl2 = false;
    free(c->sasl2_data);
    c->sasl2_data = NULL;
    /* §2.6.1: the features of the authenticated stream follow at once. */
    c2s_send_features(c);
    sasl2_uncork(c);
}

static bool closed(c2s_conn *c, xmppd_stanza *success)
{
    if (c->state != C2S_CLOSING && c->state != C2S_CLOSED)
        return false;
    xmppd_stanza_unref(success);
    sasl2_uncork(c);
    return true;
}

/* <success/> waits for the handlers holding it (they answer into it
 * later), the client's input too; sasl2_bound_ready goes on. */
static void hold(c2s_conn *c, xmppd_stanza *success, bool inline_step, bool paused)
{
    c->held_success = success;
    c->inline_held = inline_step;
    c->sasl_busy = true;
    if (!paused)
        c2s_pause_input(c);
}

/* Bind2 and <success/>, once the inline requests are answered. true when
 * <success/> was sent (or the stream closed), false when held again. */
static bool after_inline(c2s_conn *c, xmppd_stanza *success, bool paused)
{
    /* XEP-0386 §2.2: a resumed session is bound already; its <bind/> is
     * ignored. */
    if (c2s_negotiating(c) && !c->s->bound && c->req && c->req->bind)
        bind2_bind(c, c->req->bind, success);
    if (closed(c, success))
        return true;
    if (c->bind2_holds > 0) {
        /* a module reads what it answers into <bound/> (XEP-0313 metadata) */
        hold(c, success, false, paused);
        return false;
    }
    send_success(c, success);
    return true;
}

static void complete(c2s_conn *c)
{
    if (!c2s_negotiating(c) || !c->req)
        return;
    xmppd_stanza *success = xmppd_stanza_new("success", NS_SASL2);
    if (c->sasl2_data)
        xmppd_stanza_set_text(xmppd_stanza_tag(success, "additional-data", NS_SASL2), c->sasl2_data);
    xmppd_stanza_tag(success, "authorization-identifier", NS_SASL2);
    cork(c);
    run_inline(c, success);
    if (closed(c, success))
        return;
    if (c->bind2_holds > 0) {
        /* a resumption asks another node (XEP-0198 across a cluster) */
        hold(c, success, true, false);
        return;
    }
    after_inline(c, success, false);
}

void sasl2_bound_ready(c2s_conn *c)
{
    xmppd_stanza *success = c->held_success;
    if (!success)
        return; /* released while the handlers still ran: complete() goes on */
    bool inline_step = c->inline_held;
    c->held_success = NULL;
    c->inline_held = false;
    c->sasl_busy = false;
    if (closed(c, success))
        return;
    if (inline_step ? after_inline(c, success, true) : (send_success(c, success), true))
        c2s_resume_input(c);
}

void sasl2_authenticated(c2s_conn *c, const unsigned char *extra, size_t len)
{
    free(c->sasl2_data);
    c->sasl2_data = extra && len ? xmppd_base64_encode(extra, len) : NULL;
    if (!c2s_negotiating(c))
        return; /* an auth-success handler closed the stream */
    fast_finish(c, complete);
}
