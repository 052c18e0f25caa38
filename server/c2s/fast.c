/* FAST (XEP-0484): tokens a client gets after a SASL2 authentication and
 * logs in with later in one round trip, with the HT mechanisms
 * (sasl/ht.c): HT-SHA-256-NONE, and -EXPR, -ENDP, -UNIQ where the TLS
 * connection offers that channel binding.
 *
 * Records (core/fast_tokens.c, one JSON value per account):
 *   { CLIENT: { "cur": SLOT, "new": SLOT } }
 *   CLIENT = keyed hash of the SASL2 <user-agent id/> (one entry per client)
 *   SLOT   = { "salt": base64, "mech": "HT-SHA-256-NONE", "exp": ms,
 *              "iat": ms, "count": n }
 * A token is never stored: it is base64url(HMAC-SHA-256(c2s key, host,
 * account, CLIENT, salt)), derived again to check a login.
 *
 * The rules of §3.5 and §6 (the two-slot algorithm): a new token goes into
 * "new"; a login with "new" moves it to "cur" (the older token dies); a
 * login with "cur" keeps "new" waiting; a token used with less than
 * rotate_before left is replaced (the old one stays until the new one is
 * used); invalidate='true' drops the client's tokens. A token is bound to
 * its mechanism, expires (credentials-expired), and a count, when the
 * client sends one, must grow (the replay guard of §3.4). One client's
 * tokens are evicted, least recently issued first, beyond max_tokens. */
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "c2s/c2s_conn.h"
#include "core/fast_tokens.h"

#define SALT_BYTES 16

struct fast_grant {
    char *token;       /* issued in this exchange, for <success/>; or NULL */
    int64_t expiry_ms;
};

void fast_grant_free(fast_grant *g)
{
    if (!g)
        return;
    if (g->token) {
        xmppd_wipe(g->token, strlen(g->token));
        free(g->token);
    }
    free(g);
}

static const fast_conf *conf(void)
{
    return &g_server.cfg->c2s.fast;
}

/* ---- features ------------------------------------------------------------------------ */

/* Channel binding data for cb on c: 0 with *len set, or -1. */
static int ht_cb_data(c2s_conn *c, enum ht_cb cb, unsigned char *out, size_t *len)
{
    const char *type = ht_cb_type(cb);
    if (!type) {
        *len = 0;
        return 0;
    }
    /* tls-unique is not defined for TLS 1.3 (RFC 9266 §3). */
    if (cb == HT_UNIQ && (!c->x.ssl || SSL_version(c->x.ssl) >= TLS1_3_VERSION))
        return -1;
    return c2s_channel_binding(c, type, out, len);
}

void fast_add_feature(c2s_conn *c, xmppd_stanza *inline_el)
{
    static const enum ht_cb order[] = { HT_EXPR, HT_ENDP, HT_UNIQ, HT_NONE };
    c->fast_offered = 0;
    /* §7: only over TLS. */
    if (!conf()->enabled || !c->s->secure)
        return;
    xmppd_stanza *f = xmppd_stanza_tag(inline_el, "fast", NS_FAST);
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        unsigned char data[HT_CB_MAX];
        size_t len = sizeof(data);
        if (ht_cb_data(c, order[i], data, &len) < 0)
            continue;
        c->fast_offered |= 1u << order[i];
        const char *name = ht_mech_name(order[i]);
        xmppd_stanza_add_text(xmppd_stanza_tag(f, "mechanism", NS_FAST), name, strlen(name));
    }
}

bool fast_mech_offered(const c2s_conn *c, const char *mech)
{
    enum ht_cb cb;
    return ht_mech_parse(mech, &cb) == 0 && (c->fast_offered & (1u << cb));
}

/* ---- tokens ----------------------------------------------------------------------------- */

/* The record key of a client: its id, hashed. malloc'd. */
static char *client_key(const char *ua_id)
{
    unsigned char h[32];
    const char *parts[] = { "xmppd FAST client", ua_id };
    return c2s_keyed_hash(parts, 2, h) == 0 ? c2s_b64url(h, sizeof(h)) : NULL;
}

/* The token of a slot. malloc'd; NULL without a key. */
static char *derive_token(const xmppd_host *h, const char *user, const char *ckey, const char *salt)
{
    unsigned char out[32];
    const char *parts[] = { "xmppd FAST token", h->name, user, ckey, salt };
    char *t = c2s_keyed_hash(parts, 5, out) == 0 ? c2s_b64url(out, sizeof(out)) : NULL;
    xmppd_wipe(out, sizeof(out));
    return t;
}

static int64_t slot_int(const json_t *slot, const char *key)
{
    return json_integer_value(json_object_get(slot, key));
}

/* A fresh token for ckey in records' "new" slot (replacing one never
 * used, §3.5), and the oldest clients evicted beyond max_tokens. */
static int issue(json_t *records, const xmppd_host *h, const char *user, const char *ckey,
                 const char *mech, fast_grant **grant_r)
{
    unsigned char raw[SALT_BYTES];
    char *salt = xmppd_random(raw, sizeof(raw)) == 0 ? xmppd_base64_encode(raw, sizeof(raw)) : NULL;
    char *token = salt ? derive_token(h, user, ckey, salt) : NULL;
    fast_grant *g = token ? calloc(1, sizeof(*g)) : NULL;
    json_t *entry = json_object_get(records, ckey);
    int64_t now = xmppd_wallclock_ms();
    if (g && !json_is_object(entry) && json_object_set_new(records, ckey, entry = json_object()) < 0)
        entry = NULL;
    json_t *slot = g && entry ? json_pack("{s:s, s:s, s:I, s:I, s:I}", "salt", salt, "mech", mech,
                                          "exp", (json_int_t)(now + conf()->token_lifetime),
                                          "iat", (json_int_t)now, "count", (json_int_t)0)
                              : NULL;
    free(salt);
    if (!slot || json_object_set_new(entry, "new", slot) < 0) {
        free(token);
        free(g);
        return -1;
    }
    g->token = token;
    g->expiry_ms = now + conf()->token_lifetime;
    fast_grant_free(*grant_r);
    *grant_r = g;
    while (json_object_size(records) > (size_t)conf()->max_tokens) {
        const char *oldest = NULL, *k;
        int64_t oldest_iat = INT64_MAX;
        json_t *v;
        json_object_foreach(records, k, v) {
            int64_t iat = slot_int(json_object_get(v, "new"), "iat");
            int64_t cur = slot_int(json_object_get(v, "cur"), "iat");
            iat = iat > cur ? iat : cur;
            if (strcmp(k, ckey) != 0 && iat < oldest_iat) {
                oldest = k;
                oldest_iat = iat;
            }
        }
        if (!oldest)
            break;
        json_object_del(records, oldest);
    }
    return 0;
}

/* ---- authenticating with a token ---------------------------------------------------------- */

typedef struct fast_job {
    c2s_conn *c;                      /* ref */
    char *user;
    char *ckey;
    enum ht_cb cb;
    unsigned char proof[HT_HASH_LEN]; /* the client's initiator hash */
    unsigned char cb_data[HT_CB_MAX];
    size_t cb_len;
    json_t *records;                  /* while the lock is held */
    const char *slot;                 /* "new" or "cur": the token used */
    unsigned char answer[HT_HASH_LEN];/* the responder hash */
    void (*next)(c2s_conn *c);        /* fast_finish: what follows */
} fast_job;

static void job_free(fast_job *j)
{
    c2s_unref(j->c);
    free(j->user);
    free(j->ckey);
    json_decref(j->records);
    xmppd_wipe(j, sizeof(*j));
    free(j);
}

/* Is the exchange j started still waiting for it? */
static bool job_live(const fast_job *j)
{
    return j->c->state == C2S_OPEN && j->c->sasl_busy && j->c->req;
}

/* Ends j with a failure (the lock is let go unchanged). */
static void job_fail(fast_job *j, const char *cond, const char *text)
{
    c2s_conn *c = j->c;
    fast_records_release(c->s->host, j->user, NULL, NULL, NULL);
    c->sasl_busy = false;
    sasl_fail_text(c, cond, text);
    c2s_resume_input(c);
    job_free(j);
}

/* Which slot of entry holds the token the client proved, if any. Both are
 * checked whatever the first gives, comparisons in constant time. */
static const char *match_slot(fast_job *j, json_t *entry)
{
    static const char *const slots[] = { "new", "cur" };
    const char *found = NULL;
    for (size_t i = 0; i < 2; i++) {
        const char *salt = json_string_value(json_object_get(json_object_get(entry, slots[i]), "salt"));
        char *token = salt ? derive_token(j->c->s->host, j->user, j->ckey, salt) : NULL;
        unsigned char expect[HT_HASH_LEN];
        bool ok = token && ht_hash(token, strlen(token), true, j->cb_data, j->cb_len, expect) == 0 &&
                  xmppd_ct_equal(expect, j->proof, HT_HASH_LEN);
        if (ok && !found) {
            found = slots[i];
            ht_hash(token, strlen(token), false, j->cb_data, j->cb_len, j->answer);
        }
        if (token) {
            xmppd_wipe(token, strlen(token));
            free(token);
        }
    }
    return found;
}

static void on_token_saved(int status, void *ud)
{
    fast_job *j = ud;
    c2s_conn *c = j->c;
    if (job_live(j)) {
        c->sasl_busy = false;
        if (status == XMPPD_STORE_OK) {
            sasl_succeed(c, j->user, j->answer, HT_HASH_LEN);
        } else {
            fast_grant_free(c->grant);
            c->grant = NULL;
            sasl_fail(c, SASL_TEMPORARY_FAILURE);
        }
        c2s_resume_input(c);
    }
    job_free(j);
}

/* The account is fine: the records change as the login says (§3.5, §3.6). */
static void on_account(int result, void *ud)
{
    fast_job *j = ud;
    c2s_conn *c = j->c;
    if (!job_live(j)) {
        fast_records_release(c->s->host, j->user, NULL, NULL, NULL);
        job_free(j);
        return;
    }
    if (result != XMPPD_AUTH_OK) {
        job_fail(j, sasl_auth_failure_cond(result), NULL);
        return;
    }
    sasl2_request *r = c->req;
    json_t *entry = json_object_get(j->records, j->ckey), *slot = json_object_get(entry, j->slot);
    /* A login with the current token and no count changes nothing: no write. */
    bool changed = r->has_count || strcmp(j->slot, "new") == 0 || r->fast_invalidate;
    if (r->has_count)
        json_object_set_new(slot, "count", json_integer((json_int_t)r->count));
    if (strcmp(j->slot, "new") == 0) {
        /* The newer token is in use: the older one dies. */
        json_object_set(entry, "cur", slot);
        json_object_del(entry, "new");
        slot = json_object_get(entry, "cur");
    }
    int64_t left = slot_int(slot, "exp") - xmppd_wallclock_ms();
    const char *mech = json_string_value(json_object_get(slot, "mech"));
    if (r->fast_invalidate)
        json_object_del(j->records, j->ckey);
    const char *rotate = r->request_token ? r->request_token
                         : !r->fast_invalidate && left < conf()->rotate_before ? mech : NULL;
    if (rotate && issue(j->records, c->s->host, j->user, j->ckey, rotate, &c->grant) < 0) {
        job_fail(j, SASL_TEMPORARY_FAILURE, NULL);
        return;
    }
    fast_records_release(c->s->host, j->user, changed || rotate ? j->records : NULL, on_token_saved, j);
}

static void on_records(int status, json_t *records, void *ud)
{
    fast_job *j = ud;
    c2s_conn *c = j->c;
    j->records = records;
    if (!job_live(j)) {
        fast_records_release(c->s->host, j->user, NULL, NULL, NULL);
        job_free(j);
        return;
    }
    if (status != XMPPD_STORE_OK) {
        job_fail(j, SASL_TEMPORARY_FAILURE, NULL);
        return;
    }
    json_t *entry = json_object_get(records, j->ckey);
    const char *slot_name = match_slot(j, entry);
    json_t *slot = slot_name ? json_object_get(entry, slot_name) : NULL;
    const char *mech = json_string_value(json_object_get(slot, "mech"));
    if (!slot || !mech || strcmp(mech, ht_mech_name(j->cb)) != 0) {
        /* §3.4: a token works only with the mechanism it was issued for. */
        job_fail(j, SASL_NOT_AUTHORIZED, NULL);
        return;
    }
    if (slot_int(slot, "exp") <= xmppd_wallclock_ms()) {
        job_fail(j, SASL_CREDENTIALS_EXPIRED, "The token has expired");
        return;
    }
    if (c->req->has_count && (int64_t)c->req->count <= slot_int(slot, "count")) {
        log_kernel("c2s", XMPPD_LOG_WARN, "%s: FAST login of %s replayed (count %llu)", c->s->tag,
                   j->user, (unsigned long long)c->req->count);
        job_fail(j, SASL_NOT_AUTHORIZED, "The count was used before");
        return;
    }
    j->slot = slot_name;
    xmppd_auth_exists(NULL, c->s->host, j->user, on_account, j);
}

void fast_begin(c2s_conn *c, const char *mech)
{
    sasl2_request *r = c->req;
    enum ht_cb cb = HT_NONE;
    char *authcid = NULL;
    fast_job *j = calloc(1, sizeof(*j));
    const char *cond = SASL_MALFORMED, *text = NULL;
    ht_mech_parse(mech, &cb);
    c->mech = ht_mech_name(cb);
    if (!j) {
        cond = SASL_TEMPORARY_FAILURE;
    } else if (!r->ua_id) {
        text = "FAST needs the client's <user-agent id/>";
    } else if (!r->has_initial || ht_parse_initial(r->initial, r->initial_len, &authcid, j->proof) < 0) {
        text = "HT needs an initial response: user NUL hash";
    } else if (!(j->user = xmppd_nodeprep(authcid))) {
        cond = SASL_NOT_AUTHORIZED;
    } else {
        j->cb = cb;
        j->cb_len = sizeof(j->cb_data);
        if (ht_cb_data(c, cb, j->cb_data, &j->cb_len) < 0)
            cond = SASL_NOT_AUTHORIZED;
        else if (!(j->ckey = client_key(r->ua_id)))
            cond = SASL_TEMPORARY_FAILURE;
        else
            cond = NULL;
    }
    free(authcid);
    if (!cond) {
        j->c = c2s_ref(c);
        c->sasl_busy = true;
        c2s_pause_input(c);
        if (fast_records_acquire(c->s->host, j->user, on_records, j) == 0)
            return;
        /* Another login of the account is using its tokens right now. */
        c->sasl_busy = false;
        c2s_resume_input(c);
        cond = SASL_TEMPORARY_FAILURE;
        c2s_unref(c);
        j->c = NULL;
    }
    if (j) {
        free(j->user);
        free(j->ckey);
        free(j);
    }
    sasl_fail_text(c, cond, text);
}

/* ---- a token after another mechanism ------------------------------------------------------- */

static void on_issued(int status, void *ud)
{
    fast_job *j = ud;
    c2s_conn *c = j->c;
    if (c->state == C2S_OPEN && c->sasl_busy) {
        c->sasl_busy = false;
        if (status != XMPPD_STORE_OK) {
            /* The login stands; only the token is missing. */
            fast_grant_free(c->grant);
            c->grant = NULL;
        }
        j->next(c);
        c2s_resume_input(c);
    }
    job_free(j);
}

static void on_records_for_issue(int status, json_t *records, void *ud)
{
    fast_job *j = ud;
    c2s_conn *c = j->c;
    j->records = records;
    bool live = c->state == C2S_OPEN && c->sasl_busy && c->req;
    if (!live || status != XMPPD_STORE_OK ||
        issue(records, c->s->host, j->user, j->ckey, c->req->request_token, &c->grant) < 0) {
        fast_records_release(c->s->host, j->user, NULL, NULL, NULL);
        on_issued(XMPPD_STORE_ERROR, j);
        return;
    }
    j->records = NULL;
    fast_records_release(c->s->host, j->user, records, on_issued, j);
    json_decref(records);
}

void fast_finish(c2s_conn *c, void (*next)(c2s_conn *c))
{
    sasl2_request *r = c->req;
    fast_job *j = NULL;
    /* A FAST login did its token work already; a request without a
     * client id gets no token (§4.1: the client MUST send one). */
    if (c->grant || !r || !r->request_token || !r->ua_id || fast_mech_offered(c, r->mechanism) ||
        !(j = calloc(1, sizeof(*j))) || !(j->user = strdup(c->s->user)) ||
        !(j->ckey = client_key(r->ua_id))) {
        if (j) {
            free(j->user);
            free(j);
        }
        next(c);
        return;
    }
    j->c = c2s_ref(c);
    j->next = next;
    c->sasl_busy = true;
    c2s_pause_input(c);
    if (fast_records_acquire(c->s->host, j->user, on_records_for_issue, j) < 0) {
        log_kernel("c2s", XMPPD_LOG_INFO, "%s: no FAST token for %s: another login holds its "
                   "tokens", c->s->tag, j->user);
        c->sasl_busy = false;
        job_free(j);
        next(c);
        c2s_resume_input(c);
    }
}

void fast_add_token(c2s_conn *c, xmppd_stanza *success)
{
    if (!c->grant || !c->grant->token)
        return;
    char when[32];
    time_t t = (time_t)(c->grant->expiry_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm); /* XEP-0082 DateTime */
    xmppd_stanza *tok = xmppd_stanza_tag(success, "token", NS_FAST);
    xmppd_stanza_set_attr(tok, "expiry", when);
    xmppd_stanza_set_attr(tok, "token", c->grant->token);
}
