/* auth_ldap: SCRAM keys kept after PLAIN logins (option scram).
 *
 * The directory holds passwords in forms SCRAM cannot use (or does not
 * show them at all), so SCRAM works only with keys derived from a
 * password the module saw: after a successful PLAIN login it derives
 * SCRAM-SHA-1 and -256 keys on a worker and stores them in its keyval
 * store "auth_ldap" (user, key ""):
 *   { "marker": "<entry DN>|<password_changed_attribute value>",
 *     "SCRAM-SHA-256": { "iterations": n, "salt": B64, "stored_key": B64,
 *                        "server_key": B64 }, ... }
 * The directory stays the authority:
 *  - every SCRAM login first looks the account up; an account the
 *    directory no longer has is refused (and its keys deleted), a disabled
 *    one too, and an unreachable directory fails the login;
 *  - keys serve only while the entry's marker is unchanged: a password
 *    changed in the directory changes it (modifyTimestamp, pwdChangedTime,
 *    AD's pwdLastSet), so the old keys stop working at once and the next
 *    PLAIN login stores new ones;
 *  - an entry without the marker attribute never gets keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_ldap.h"

#define LA_SALT_LEN 16

char *la_marker(const la_ctx *ctx, const directory_entry *e)
{
    const directory_attr *at = directory_attr_get(e, ctx->conf->password_changed_attribute);
    if (!at || at->n == 0)
        return NULL;
    size_t n = strlen(e->dn) + 1 + at->vals[0].len + 1;
    char *m = malloc(n);
    if (m)
        snprintf(m, n, "%s|%s", e->dn, at->vals[0].val);
    return m;
}

void la_scram_forget(la_ctx *ctx, const char *user)
{
    if (ctx->store)
        xmppd_kv_set(ctx->store, user, "", NULL, NULL, NULL);
}

/* ---- the stored record ---- */

static bool la_b64(json_t *o, const char *name, unsigned char *out, size_t want, size_t max, size_t *len_r)
{
    const char *s = json_string_value(json_object_get(o, name));
    unsigned char *buf = NULL;
    size_t len = 0;
    if (!s || xmppd_base64_decode(s, strlen(s), &buf, &len) != 0)
        return false;
    bool ok = len <= max && (!want || len == want);
    if (ok)
        memcpy(out, buf, len);
    xmppd_wipe(buf, len);
    free(buf);
    if (len_r)
        *len_r = len;
    return ok;
}

/* The keys for hash h in rec; false when absent or malformed. */
static bool la_keys_parse(json_t *rec, enum xmppd_hash h, xmppd_scram_keys *k)
{
    json_t *o = json_object_get(rec, xmppd_hash_scram_name(h));
    json_int_t it = json_integer_value(json_object_get(o, "iterations"));
    size_t hl = xmppd_hash_len(h);
    memset(k, 0, sizeof *k);
    k->hash = h;
    if (!json_is_object(o) || it < 1 || it > 100000000)
        return false;
    k->iterations = (unsigned)it;
    return la_b64(o, "salt", k->salt, 0, sizeof k->salt, &k->salt_len) &&
           la_b64(o, "stored_key", k->stored_key, hl, hl, NULL) &&
           la_b64(o, "server_key", k->server_key, hl, hl, NULL);
}

static json_t *la_keys_json(const xmppd_scram_keys *k)
{
    size_t hl = xmppd_hash_len(k->hash);
    char *salt = xmppd_base64_encode(k->salt, k->salt_len);
    char *sk = xmppd_base64_encode(k->stored_key, hl);
    char *svk = xmppd_base64_encode(k->server_key, hl);
    json_t *o = salt && sk && svk ? json_pack("{s:i, s:s, s:s, s:s}", "iterations", (json_int_t)k->iterations,
                                              "salt", salt, "stored_key", sk, "server_key", svk)
                                  : NULL;
    free(salt);
    free(sk);
    free(svk);
    return o;
}

static bool la_marker_matches(json_t *rec, const char *marker)
{
    const char *m = json_string_value(json_object_get(rec, "marker"));
    return m && marker && strcmp(m, marker) == 0;
}

/* ---- get_scram ---- */

static void la_on_keys(int status, json_t *rec, void *ud)
{
    la_req *r = ud;
    la_ctx *ctx = r->ctx;
    if (status == XMPPD_STORE_CANCELLED) {
        la_req_free(r); /* unloading: the kernel answers the asker */
        return;
    }
    if (status != XMPPD_STORE_OK && status != XMPPD_STORE_NOT_FOUND) {
        la_finish(r, XMPPD_AUTH_INTERNAL);
        return;
    }
    if (status == XMPPD_STORE_OK && la_marker_matches(rec, r->marker) && la_keys_parse(rec, r->hash, &r->keys[0])) {
        la_answer(r, XMPPD_AUTH_OK, &r->keys[0]);
        la_req_free(r);
        return;
    }
    xmppd_log(ctx->m, XMPPD_LOG_INFO, "%s@%s: no %s keys for the directory's current password; "
              "a PLAIN login stores them", r->user, ctx->host, xmppd_hash_scram_name(r->hash));
    la_finish(r, XMPPD_AUTH_NO_SCHEME);
}

void la_scram_lookup(la_req *r)
{
    la_ctx *ctx = r->ctx;
    if (!r->marker) {
        xmppd_log(ctx->m, XMPPD_LOG_INFO, "%s@%s: the entry has no %s, so SCRAM keys cannot follow its "
                  "password: PLAIN only", r->user, ctx->host, ctx->conf->password_changed_attribute);
        la_finish(r, XMPPD_AUTH_NO_SCHEME);
        return;
    }
    xmppd_kv_get(ctx->store, r->user, "", la_on_keys, r);
}

/* ---- the upgrade after PLAIN ---- */

static void la_on_upgrade_stored(int status, void *ud)
{
    la_req *r = ud;
    if (status == XMPPD_STORE_OK)
        xmppd_log(r->ctx->m, XMPPD_LOG_INFO, "stored SCRAM keys for %s@%s", r->user, r->ctx->host);
    else if (status != XMPPD_STORE_CANCELLED)
        xmppd_log(r->ctx->m, XMPPD_LOG_WARN, "storing SCRAM keys for %s@%s failed", r->user, r->ctx->host);
    la_req_free(r);
}

/* worker: fresh salts, PBKDF2 per hash; r->result 0 or -1. */
static void la_work_derive(void *ud)
{
    la_req *r = ud;
    r->result = 0;
    for (int h = 0; h < XMPPD_HASH_COUNT && r->result == 0; h++) {
        if (!LA_SCRAM_HASH(h))
            continue;
        unsigned char salt[LA_SALT_LEN];
        if (xmppd_random(salt, sizeof salt) != 0 ||
            xmppd_scram_derive((enum xmppd_hash)h, r->password, salt, sizeof salt,
                               (unsigned)r->ctx->conf->iterations, &r->keys[h]) != 0)
            r->result = -1;
    }
    xmppd_wipe(r->password, strlen(r->password));
}

static void la_done_derive(void *ud)
{
    la_req *r = ud;
    json_t *rec = r->result == 0 ? json_pack("{s:s}", "marker", r->marker) : NULL;
    for (int h = 0; rec && h < XMPPD_HASH_COUNT; h++) {
        if (!LA_SCRAM_HASH(h))
            continue;
        json_t *k = la_keys_json(&r->keys[h]);
        if (!k || json_object_set_new(rec, xmppd_hash_scram_name((enum xmppd_hash)h), k) != 0) {
            json_decref(rec);
            rec = NULL;
        }
    }
    if (!rec) {
        if (r->result != 0)
            xmppd_log(r->ctx->m, XMPPD_LOG_INFO, "%s@%s: the password cannot be SASLprepped: PLAIN only",
                      r->user, r->ctx->host);
        la_req_free(r);
        return;
    }
    xmppd_kv_set(r->ctx->store, r->user, "", rec, la_on_upgrade_stored, r);
    json_decref(rec);
}

static void la_upgrade_cancelled(void *ud)
{
    la_req_free(ud);
}

static void la_on_upgrade_check(int status, json_t *rec, void *ud)
{
    la_req *r = ud;
    if (status == XMPPD_STORE_CANCELLED || (status == XMPPD_STORE_OK && la_marker_matches(rec, r->marker)) ||
        (status != XMPPD_STORE_OK && status != XMPPD_STORE_NOT_FOUND)) {
        la_req_free(r); /* keys current (or storage failing: next time) */
        return;
    }
    if (xmppd_offload(r->ctx->m, la_work_derive, la_done_derive, la_upgrade_cancelled, r) != 0)
        la_req_free(r);
}

void la_scram_upgrade(la_req *r)
{
    xmppd_kv_get(r->ctx->store, r->user, "", la_on_upgrade_check, r);
}
