/* auth_internal: accounts kept in the server's own storage, as salted SCRAM
 * keys only (RFC 5802 §3: StoredKey, ServerKey), never the password.
 *
 * Each account is one value in the host's keyval store "accounts" (user,
 * key ""):
 *   { "SCRAM-SHA-1":   { "iterations": 10000, "salt": B64, "stored_key": B64, "server_key": B64 },
 *     "SCRAM-SHA-256": { ... }, "SCRAM-SHA-512": { ... } }
 * with a random 16-byte salt per hash, and "disabled": {"reason": TEXT|null,
 * "since": Unix ms} while an administrator bars the account (set_disabled:
 * a login is then XMPPD_AUTH_DISABLED — PLAIN once the password is right,
 * so a wrong guess learns nothing; SCRAM before the exchange, as the keys
 * are not given out). PLAIN is checked by deriving the keys
 * from the offered password with the stored salt and comparing in constant
 * time. Key derivation (PBKDF2) runs on a worker thread.
 *
 * Accounts imported with another server's keys (create_keys: XEP-0227)
 * may lack some hashes (Prosody keeps SCRAM-SHA-1 only). The keyval store
 * "accounts_meta" (user "", key "partial") counts the accounts lacking
 * each hash, and a SCRAM mechanism is offered only while no account lacks
 * its hash: a client would otherwise fail with a right password. A PLAIN
 * login, or a new password, gives such an account every hash again.
 *
 * Every request is an ai_req owned by the module until its callback has
 * run; requests still waiting when the module unloads are freed (their
 * passwords wiped) without a callback: the kernel answers the consumer. */
#include <stdlib.h>
#include <string.h>
#include "xmppd/xmppd.h"

#define AI_SALT_LEN 16
#define AI_STORE "accounts"
#define AI_META_STORE "accounts_meta"

typedef struct ai_conf {
    long long iterations;
} ai_conf;

static const xmppd_option ai_options[] = {
    { "iterations", XMPPD_OPT_INT, XMPPD_OFF(ai_conf, iterations), "10000", 4096, 10000000, NULL, 0,
      "PBKDF2 iterations for new and changed passwords (existing accounts keep theirs)" },
    { NULL }
};

typedef struct ai_req ai_req;

/* Module instance data (one per host). */
typedef struct ai_ctx {
    xmppd_module *m;
    xmppd_store *st;    /* kernel-owned, closed on unload */
    xmppd_store *meta;  /* the partial counts */
    unsigned iterations;
    ai_req *creating;   /* creates under way: a second create of the user is EXISTS */
    long long partial[XMPPD_HASH_COUNT]; /* accounts without keys of each hash */
} ai_ctx;

enum ai_op { AI_PLAIN, AI_SCRAM, AI_EXISTS, AI_CREATE, AI_SET_PASSWORD, AI_REMOVE, AI_LIST,
             AI_CREATE_KEYS, AI_SET_DISABLED, AI_IS_DISABLED };

#define AI_ALL_HASHES ((1u << XMPPD_HASH_COUNT) - 1)

/* One request of the kernel's auth front. It always sits in exactly one
 * asynchronous call of the kernel (storage, a worker, a deferred answer),
 * each of which comes back once, or CANCELLED before the module's
 * unload(): that is where an unloading module frees it (the kernel answers
 * the asker itself when a provider unloads). */
struct ai_req {
    ai_req *next_create; /* in ctx->creating (AI_CREATE only) */
    bool in_creating;
    ai_ctx *ctx;
    enum ai_op op;
    char *user;
    char *password;              /* secret: wiped before free */
    unsigned iterations;         /* for new keys */
    enum xmppd_hash hash;        /* get_scram: asked; verify_plain: used */
    xmppd_scram_keys keys[XMPPD_HASH_COUNT]; /* stored or new keys: wiped */
    unsigned had;                /* bit h: the stored record has keys of hash h */
    unsigned giving;             /* create_keys: bit h: keys[h] is given */
    json_t *disabled;            /* the record's "disabled" (kept by a new password);
                                    set_disabled: the new one, NULL to enable */
    bool disabling;              /* set_disabled: disable (else enable) */
    int result;                  /* worker's or deferred result */
    union {
        xmppd_auth_cb res;
        xmppd_auth_scram_cb scram;
        xmppd_auth_list_cb list;
    } cb;
    void *ud;
};

/* ---- requests ---- */

static ai_req *ai_req_new(ai_ctx *ctx, enum ai_op op, const char *user, const char *password, void *ud)
{
    ai_req *r = calloc(1, sizeof *r);
    if (!r)
        goto oom;
    r->ctx = ctx;
    r->op = op;
    r->ud = ud;
    r->iterations = ctx->iterations;
    if ((user && !(r->user = strdup(user))) || (password && !(r->password = strdup(password)))) {
        free(r->user);
        free(r);
        goto oom;
    }
    return r;
oom:
    xmppd_log(ctx->m, XMPPD_LOG_ERROR, "out of memory: account request dropped");
    return NULL;
}

static void ai_req_free(ai_req *r)
{
    for (ai_req **cp = &r->ctx->creating; r->in_creating && *cp; cp = &(*cp)->next_create)
        if (*cp == r) {
            *cp = r->next_create;
            break;
        }
    if (r->password) {
        xmppd_wipe(r->password, strlen(r->password));
        free(r->password);
    }
    xmppd_wipe(r->keys, sizeof r->keys);
    json_decref(r->disabled);
    free(r->user);
    free(r);
}

/* Calls r's callback with result and frees r. */
static void ai_finish(ai_req *r, int result)
{
    switch (r->op) {
    case AI_SCRAM:
        r->cb.scram(result, result == XMPPD_AUTH_OK ? &r->keys[r->hash] : NULL, r->ud);
        break;
    case AI_LIST:
        r->cb.list(result, NULL, 0, r->ud);
        break;
    default:
        r->cb.res(result, r->ud);
        break;
    }
    ai_req_free(r);
}

static void ai_deferred(void *ud)
{
    ai_req *r = ud;
    ai_finish(r, r->result);
}

/* The module unloads with r in flight: only r itself is left to free. */
static void ai_cancelled(void *ud)
{
    ai_req_free(ud);
}

/* Answers r with result on a later loop turn (never inside the call). */
static void ai_finish_later(ai_req *r, int result)
{
    r->result = result;
    if (xmppd_defer(r->ctx->m, ai_deferred, ai_cancelled, r) != 0) {
        xmppd_log(r->ctx->m, XMPPD_LOG_ERROR, "out of memory: account request dropped");
        ai_req_free(r);
    }
}

/* ---- the stored record ---- */

static int ai_b64_field(json_t *o, const char *name, unsigned char *out, size_t want, size_t max, size_t *len_r)
{
    const char *s = json_string_value(json_object_get(o, name));
    unsigned char *buf;
    size_t len;
    if (!s || xmppd_base64_decode(s, strlen(s), &buf, &len) != 0)
        return -1;
    int ok = len <= max && (want == 0 || len == want) && (want != 0 || len > 0);
    if (ok) {
        memcpy(out, buf, len);
        if (len_r)
            *len_r = len;
    }
    xmppd_wipe(buf, len);
    free(buf);
    return ok ? 0 : -1;
}

/* The keys of hash h from an account record; -1 when absent or malformed. */
static int ai_record_keys(json_t *rec, enum xmppd_hash h, xmppd_scram_keys *out)
{
    json_t *o = json_object_get(rec, xmppd_hash_scram_name(h));
    json_int_t it = json_integer_value(json_object_get(o, "iterations"));
    size_t hl = xmppd_hash_len(h);
    memset(out, 0, sizeof *out);
    if (!json_is_object(o) || it < 1 || it > 0x7fffffff ||
        ai_b64_field(o, "salt", out->salt, 0, sizeof out->salt, &out->salt_len) != 0 ||
        ai_b64_field(o, "stored_key", out->stored_key, hl, hl, NULL) != 0 ||
        ai_b64_field(o, "server_key", out->server_key, hl, hl, NULL) != 0) {
        xmppd_wipe(out, sizeof *out);
        return -1;
    }
    out->hash = h;
    out->iterations = (unsigned)it;
    return 0;
}

static json_t *ai_b64_json(const void *p, size_t n)
{
    char *s = xmppd_base64_encode(p, n);
    json_t *j = s ? json_string(s) : NULL;
    free(s);
    return j;
}

/* The account record for r->keys (all hashes; create_keys: those given);
 * NULL on OOM. */
static json_t *ai_record_new(const ai_req *r)
{
    json_t *rec = json_object();
    for (int h = 0; rec && h < XMPPD_HASH_COUNT; h++) {
        const xmppd_scram_keys *k = &r->keys[h];
        if (r->op == AI_CREATE_KEYS && !(r->giving & (1u << h)))
            continue;
        size_t hl = xmppd_hash_len(k->hash);
        json_t *o = json_pack("{s:I, s:o*, s:o*, s:o*}", "iterations", (json_int_t)k->iterations,
                              "salt", ai_b64_json(k->salt, k->salt_len),
                              "stored_key", ai_b64_json(k->stored_key, hl),
                              "server_key", ai_b64_json(k->server_key, hl));
        if (!o || json_object_size(o) != 4 || json_object_set_new(rec, xmppd_hash_scram_name(k->hash), o) != 0) {
            json_decref(o);
            json_decref(rec);
            rec = NULL;
        }
    }
    if (rec && r->disabled && json_object_set(rec, "disabled", r->disabled) != 0) {
        json_decref(rec);
        rec = NULL;
    }
    return rec;
}

/* ---- accounts lacking hashes ---- */

static unsigned ai_record_mask(json_t *rec)
{
    unsigned mask = 0;
    for (int h = 0; h < XMPPD_HASH_COUNT; h++)
        if (json_is_object(json_object_get(rec, xmppd_hash_scram_name((enum xmppd_hash)h))))
            mask |= 1u << h;
    return mask;
}

/* An account lacking the hashes not in mask comes (delta 1) or goes (-1). */
static void ai_partial_change(ai_ctx *ctx, unsigned mask, int delta)
{
    if ((mask & AI_ALL_HASHES) == AI_ALL_HASHES)
        return;
    json_t *doc = json_object();
    for (int h = 0; h < XMPPD_HASH_COUNT; h++) {
        if (!(mask & (1u << h))) {
            ctx->partial[h] += delta;
            if (ctx->partial[h] < 0)
                ctx->partial[h] = 0;
        }
        json_object_set_new(doc, xmppd_hash_scram_name((enum xmppd_hash)h),
                            json_integer(ctx->partial[h]));
    }
    if (doc)
        xmppd_kv_set(ctx->meta, "", "partial", doc, NULL, NULL);
    json_decref(doc);
}

static void ai_on_partial(int status, json_t *value, void *ud)
{
    ai_ctx *ctx = ud;
    if (status == XMPPD_STORE_OK)
        for (int h = 0; h < XMPPD_HASH_COUNT; h++)
            ctx->partial[h] = json_integer_value(
                json_object_get(value, xmppd_hash_scram_name((enum xmppd_hash)h)));
    else if (status == XMPPD_STORE_ERROR)
        xmppd_log(ctx->m, XMPPD_LOG_ERROR, "cannot read %s: every SCRAM mechanism is offered",
                  AI_META_STORE);
}

/* ---- worker jobs (no xmppd calls but the pure crypto ones) ---- */

/* verify_plain: derive from the offered password with the stored salt and
 * iterations of r->hash, compare in constant time. */
static void ai_work_verify(void *ud)
{
    ai_req *r = ud;
    const xmppd_scram_keys *stored = &r->keys[r->hash];
    xmppd_scram_keys got;
    size_t hl = xmppd_hash_len(r->hash);
    r->result = XMPPD_AUTH_MISMATCH;
    if (xmppd_scram_derive(r->hash, r->password, stored->salt, stored->salt_len, stored->iterations, &got) == 0) {
        bool a = xmppd_ct_equal(got.stored_key, stored->stored_key, hl);
        bool b = xmppd_ct_equal(got.server_key, stored->server_key, hl);
        if (a && b)
            r->result = XMPPD_AUTH_OK;
    }
    xmppd_wipe(&got, sizeof got);
}

/* verify_plain of an account that does not exist: the derivation a wrong
 * password costs for a new account (SHA-256, the configured iterations),
 * so that the answer's timing does not tell whether the account exists. */
static void ai_work_decoy(void *ud)
{
    ai_req *r = ud;
    static const unsigned char salt[AI_SALT_LEN] = { 0 }; /* nothing is kept */
    xmppd_scram_keys got;
    xmppd_scram_derive(XMPPD_HASH_SHA256, r->password, salt, sizeof salt, r->iterations, &got);
    xmppd_wipe(&got, sizeof got);
    r->result = XMPPD_AUTH_USER_UNKNOWN;
}

/* create/set_password: new keys for every hash, a fresh salt each. */
static void ai_work_derive(void *ud)
{
    ai_req *r = ud;
    r->result = XMPPD_AUTH_OK;
    for (int h = 0; h < XMPPD_HASH_COUNT; h++) {
        unsigned char salt[AI_SALT_LEN];
        if (xmppd_random(salt, sizeof salt) != 0) {
            r->result = XMPPD_AUTH_INTERNAL;
            return;
        }
        if (xmppd_scram_derive((enum xmppd_hash)h, r->password, salt, sizeof salt, r->iterations, &r->keys[h]) != 0) {
            r->result = XMPPD_AUTH_INVALID; /* the password fails SASLprep */
            return;
        }
    }
}

static void ai_done_derive(void *ud);

/* A right password for an account lacking hashes: it gets all of them now,
 * as a password change would give (then the login is answered). */
static void ai_done_verify(void *ud)
{
    ai_req *r = ud;
    if (r->result == XMPPD_AUTH_OK && r->disabled) {
        ai_finish(r, XMPPD_AUTH_DISABLED);
        return;
    }
    if (r->result == XMPPD_AUTH_OK && (r->had & AI_ALL_HASHES) != AI_ALL_HASHES &&
        xmppd_offload(r->ctx->m, ai_work_derive, ai_done_derive, ai_cancelled, r) == 0)
        return;
    ai_finish(r, r->result);
}

static void ai_on_saved(int status, void *ud)
{
    ai_req *r = ud;
    if (status == XMPPD_STORE_CANCELLED) {
        ai_req_free(r);
        return;
    }
    if (status == XMPPD_STORE_OK) {
        switch (r->op) {
        case AI_CREATE_KEYS: ai_partial_change(r->ctx, r->giving, 1); break;
        case AI_PLAIN:
        case AI_SET_PASSWORD:
        case AI_REMOVE: ai_partial_change(r->ctx, r->had, -1); break;
        default: break;
        }
    } else if (r->op == AI_PLAIN) {
        xmppd_log(r->ctx->m, XMPPD_LOG_WARN, "account %s: cannot store its new keys", r->user);
        status = XMPPD_STORE_OK; /* the password was right */
    }
    ai_finish(r, status == XMPPD_STORE_OK ? XMPPD_AUTH_OK : XMPPD_AUTH_INTERNAL);
}

static void ai_done_derive(void *ud)
{
    ai_req *r = ud;
    if (r->result != XMPPD_AUTH_OK) {
        /* a login whose upgrade failed is still a right password */
        ai_finish(r, r->op == AI_PLAIN ? XMPPD_AUTH_OK : r->result);
        return;
    }
    json_t *rec = ai_record_new(r);
    if (!rec) {
        ai_finish(r, XMPPD_AUTH_INTERNAL);
        return;
    }
    xmppd_kv_set(r->ctx->st, r->user, "", rec, ai_on_saved, r);
    json_decref(rec);
}

static void ai_offload(ai_req *r, void (*work)(void *), void (*done)(void *))
{
    if (xmppd_offload(r->ctx->m, work, done, ai_cancelled, r) != 0)
        ai_finish(r, XMPPD_AUTH_INTERNAL);
}

/* ---- the account record loaded: go on by operation ---- */

/* verify_plain: the hash to check a password with, SHA-256 first. */
static int ai_pick_hash(ai_req *r, json_t *rec)
{
    static const enum xmppd_hash order[] = { XMPPD_HASH_SHA256, XMPPD_HASH_SHA1, XMPPD_HASH_SHA512 };
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        if (ai_record_keys(rec, order[i], &r->keys[order[i]]) == 0) {
            r->hash = order[i];
            return 0;
        }
    }
    return -1;
}

/* set_disabled: the record with "disabled" set or removed, stored. */
static void ai_store_disabled(ai_req *r, json_t *rec)
{
    if (!r->disabling && !json_object_get(rec, "disabled")) {
        ai_finish(r, XMPPD_AUTH_OK); /* enabled already */
        return;
    }
    json_t *copy = json_copy(rec);
    if (!copy || (r->disabling ? json_object_set(copy, "disabled", r->disabled)
                               : json_object_del(copy, "disabled")) != 0) {
        json_decref(copy);
        ai_finish(r, XMPPD_AUTH_INTERNAL);
        return;
    }
    xmppd_kv_set(r->ctx->st, r->user, "", copy, ai_on_saved, r);
    json_decref(copy);
}

static void ai_on_found(ai_req *r, json_t *rec)
{
    r->had = ai_record_mask(rec);
    if (r->op != AI_SET_DISABLED) {
        json_t *d = json_object_get(rec, "disabled");
        r->disabled = d ? json_incref(d) : NULL;
    }
    switch (r->op) {
    case AI_PLAIN:
        if (ai_pick_hash(r, rec) != 0) {
            xmppd_log(r->ctx->m, XMPPD_LOG_WARN, "account %s: stored record unreadable", r->user);
            ai_finish(r, XMPPD_AUTH_NO_SCHEME);
        } else {
            ai_offload(r, ai_work_verify, ai_done_verify);
        }
        break;
    case AI_SCRAM:
        ai_finish(r, r->disabled ? XMPPD_AUTH_DISABLED
                     : ai_record_keys(rec, r->hash, &r->keys[r->hash]) == 0 ? XMPPD_AUTH_OK
                                                                           : XMPPD_AUTH_NO_SCHEME);
        break;
    case AI_SET_DISABLED:
        ai_store_disabled(r, rec);
        break;
    case AI_IS_DISABLED:
        ai_finish(r, r->disabled ? XMPPD_AUTH_DISABLED : XMPPD_AUTH_OK);
        break;
    case AI_EXISTS:
        ai_finish(r, XMPPD_AUTH_OK);
        break;
    case AI_CREATE:
    case AI_CREATE_KEYS:
        ai_finish(r, XMPPD_AUTH_EXISTS);
        break;
    case AI_SET_PASSWORD:
        ai_offload(r, ai_work_derive, ai_done_derive);
        break;
    case AI_REMOVE:
        xmppd_kv_set(r->ctx->st, r->user, "", NULL, ai_on_saved, r);
        break;
    case AI_LIST:
        break; /* not loaded through here */
    }
}

static void ai_on_record(int status, json_t *value, void *ud)
{
    ai_req *r = ud;
    if (status == XMPPD_STORE_CANCELLED)
        ai_req_free(r);
    else if (status == XMPPD_STORE_OK)
        ai_on_found(r, value);
    else if (status != XMPPD_STORE_NOT_FOUND)
        ai_finish(r, XMPPD_AUTH_INTERNAL);
    else if (r->op == AI_CREATE)
        ai_offload(r, ai_work_derive, ai_done_derive);
    else if (r->op == AI_CREATE_KEYS)
        ai_done_derive(r); /* the keys are there: store them */
    else if (r->op == AI_PLAIN)
        ai_offload(r, ai_work_decoy, ai_done_verify);
    else
        ai_finish(r, XMPPD_AUTH_USER_UNKNOWN);
}

/* Loads r's account record, then goes on in ai_on_record. */
static void ai_load(ai_req *r)
{
    xmppd_kv_get(r->ctx->st, r->user, "", ai_on_record, r);
}

/* ---- provider entry points ---- */

static unsigned ai_mechanisms(void *pd)
{
    const ai_ctx *ctx = pd;
    unsigned m = XMPPD_AUTH_CAN_PLAIN;
    for (int h = 0; h < XMPPD_HASH_COUNT; h++)
        if (ctx->partial[h] == 0)
            m |= XMPPD_AUTH_CAN_SCRAM(h);
    return m;
}

static bool ai_valid_user(const char *user)
{
    if (!user || !*user)
        return false;
    char *prepped = xmppd_nodeprep(user);
    bool ok = prepped && strcmp(prepped, user) == 0;
    free(prepped);
    return ok;
}

static void ai_verify_plain(void *pd, const char *user, const char *password, xmppd_auth_cb cb, void *ud)
{
    ai_req *r = ai_req_new(pd, AI_PLAIN, user, password, ud);
    if (!r)
        return;
    r->cb.res = cb;
    if (!user || !*user)
        ai_finish_later(r, XMPPD_AUTH_USER_UNKNOWN);
    else if (!password || !*password)
        ai_finish_later(r, XMPPD_AUTH_MISMATCH);
    else
        ai_load(r);
}

static void ai_get_scram(void *pd, const char *user, enum xmppd_hash h, xmppd_auth_scram_cb cb, void *ud)
{
    ai_req *r = ai_req_new(pd, AI_SCRAM, user, NULL, ud);
    if (!r)
        return;
    r->cb.scram = cb;
    r->hash = h;
    if ((unsigned)h >= XMPPD_HASH_COUNT)
        ai_finish_later(r, XMPPD_AUTH_NO_SCHEME);
    else if (!user || !*user)
        ai_finish_later(r, XMPPD_AUTH_USER_UNKNOWN);
    else
        ai_load(r);
}

/* A request that only reads user's record (exists, is_disabled). */
static void ai_lookup(void *pd, enum ai_op op, const char *user, xmppd_auth_cb cb, void *ud)
{
    ai_req *r = ai_req_new(pd, op, user, NULL, ud);
    if (!r)
        return;
    r->cb.res = cb;
    if (!user || !*user)
        ai_finish_later(r, XMPPD_AUTH_USER_UNKNOWN);
    else
        ai_load(r);
}

static void ai_exists(void *pd, const char *user, xmppd_auth_cb cb, void *ud)
{
    ai_lookup(pd, AI_EXISTS, user, cb, ud);
}

/* Is another create of user under way in this process? */
static bool ai_creating(const ai_ctx *ctx, const ai_req *self)
{
    for (const ai_req *o = ctx->creating; o; o = o->next_create)
        if (o != self && strcmp(o->user, self->user) == 0)
            return true;
    return false;
}

/* A create (of a password or of keys) goes on when valid and the only
 * one of its user under way. */
static void ai_start_create(ai_req *r, bool valid)
{
    ai_ctx *ctx = r->ctx;
    if (!valid) {
        ai_finish_later(r, XMPPD_AUTH_INVALID);
    } else if (ai_creating(ctx, r)) {
        ai_finish_later(r, XMPPD_AUTH_EXISTS);
    } else {
        r->next_create = ctx->creating;
        r->in_creating = true;
        ctx->creating = r;
        ai_load(r);
    }
}

static void ai_create(void *pd, const char *user, const char *password, xmppd_auth_cb cb, void *ud)
{
    ai_req *r = ai_req_new(pd, AI_CREATE, user ? user : "", password, ud);
    if (!r)
        return;
    r->cb.res = cb;
    ai_start_create(r, ai_valid_user(user) && password && *password);
}

static void ai_create_keys(void *pd, const char *user, const xmppd_scram_keys *const *keys,
                           xmppd_auth_cb cb, void *ud)
{
    ai_req *r = ai_req_new(pd, AI_CREATE_KEYS, user ? user : "", NULL, ud);
    if (!r)
        return;
    r->cb.res = cb;
    for (int h = 0; keys && h < XMPPD_HASH_COUNT; h++) {
        const xmppd_scram_keys *k = keys[h];
        if (k && k->hash == (enum xmppd_hash)h && k->iterations > 0 && k->salt_len > 0 &&
            k->salt_len <= sizeof k->salt) {
            r->keys[h] = *k;
            r->giving |= 1u << h;
        }
    }
    ai_start_create(r, ai_valid_user(user) && r->giving);
}

static void ai_set_password(void *pd, const char *user, const char *password, xmppd_auth_cb cb, void *ud)
{
    ai_req *r = ai_req_new(pd, AI_SET_PASSWORD, user, password, ud);
    if (!r)
        return;
    r->cb.res = cb;
    if (!user || !*user)
        ai_finish_later(r, XMPPD_AUTH_USER_UNKNOWN);
    else if (!password || !*password)
        ai_finish_later(r, XMPPD_AUTH_INVALID);
    else
        ai_load(r);
}

static void ai_remove(void *pd, const char *user, xmppd_auth_cb cb, void *ud)
{
    ai_req *r = ai_req_new(pd, AI_REMOVE, user, NULL, ud);
    if (!r)
        return;
    r->cb.res = cb;
    if (!user || !*user)
        ai_finish_later(r, XMPPD_AUTH_USER_UNKNOWN);
    else
        ai_load(r);
}

static void ai_set_disabled(void *pd, const char *user, bool disabled, const char *reason,
                            xmppd_auth_cb cb, void *ud)
{
    ai_req *r = ai_req_new(pd, AI_SET_DISABLED, user, NULL, ud);
    if (!r)
        return;
    r->cb.res = cb;
    r->disabling = disabled;
    if (disabled && !(r->disabled = json_pack("{s:s?, s:I}", "reason", reason, "since",
                                              (json_int_t)xmppd_wallclock_ms())))
        ai_finish_later(r, XMPPD_AUTH_INTERNAL);
    else if (!user || !*user)
        ai_finish_later(r, XMPPD_AUTH_USER_UNKNOWN);
    else
        ai_load(r);
}

static void ai_is_disabled(void *pd, const char *user, xmppd_auth_cb cb, void *ud)
{
    ai_lookup(pd, AI_IS_DISABLED, user, cb, ud);
}

static void ai_on_users(int status, json_t *value, void *ud)
{
    ai_req *r = ud;
    if (status == XMPPD_STORE_CANCELLED) {
        ai_req_free(r);
        return;
    }
    size_t n = json_array_size(value);
    const char **users = calloc(n + 1, sizeof *users);
    if (status != XMPPD_STORE_OK || !users) {
        free(users);
        ai_finish(r, XMPPD_AUTH_INTERNAL);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (json_string_value(json_array_get(value, i)))
            users[k++] = json_string_value(json_array_get(value, i));
    r->cb.list(XMPPD_AUTH_OK, users, k, r->ud);
    free(users);
    ai_req_free(r);
}

static void ai_list(void *pd, xmppd_auth_list_cb cb, void *ud)
{
    ai_req *r = ai_req_new(pd, AI_LIST, NULL, NULL, ud);
    if (!r)
        return;
    r->cb.list = cb;
    xmppd_kv_users(r->ctx->st, ai_on_users, r);
}

static const xmppd_auth_provider ai_provider = {
    .version = XMPPD_AUTH_PROVIDER_VERSION,
    .size = sizeof(xmppd_auth_provider),
    .name = "internal",
    .mechanisms = ai_mechanisms,
    .verify_plain = ai_verify_plain,
    .get_scram = ai_get_scram,
    .exists = ai_exists,
    .create = ai_create,
    .set_password = ai_set_password,
    .remove = ai_remove,
    .list = ai_list,
    .create_keys = ai_create_keys,
    .set_disabled = ai_set_disabled,
    .is_disabled = ai_is_disabled,
};

/* ---- module ---- */

static int ai_load_module(xmppd_module *m, const void *conf)
{
    const ai_conf *c = conf;
    ai_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return -1;
    ctx->m = m;
    ctx->iterations = (unsigned)c->iterations;
    const char *why = NULL;
    if (!(ctx->st = xmppd_store_open(m, AI_STORE, XMPPD_STORE_KEYVAL)) ||
        !(ctx->meta = xmppd_store_open(m, AI_META_STORE, XMPPD_STORE_KEYVAL)))
        why = "no storage for accounts: load a storage driver module";
    else if (xmppd_auth_provide(m, &ai_provider, ctx) != 0)
        why = "this host already has an auth provider";
    if (why) {
        free(ctx);
        return xmppd_module_refuse(m, "%s", why);
    }
    xmppd_module_set_data(m, ctx);
    /* Until this answers (before any client gets that far), every
     * mechanism is offered. */
    xmppd_kv_get(ctx->meta, "", "partial", ai_on_partial, ctx);
    return 0;
}

/* Every request in flight came back CANCELLED and freed itself before
 * this: only the instance data is left. */
static void ai_unload(xmppd_module *m)
{
    free(xmppd_module_data(m));
    xmppd_module_set_data(m, NULL);
}

XMPPD_MODULE(auth_internal,
    .version = "1.0",
    .summary = "accounts in the server's storage, as salted SCRAM keys (no passwords kept)",
    .specs = (const char *const[]){ "RFC 5802", "RFC 7677", NULL },
    .options = ai_options,
    .conf_size = sizeof(ai_conf),
    .load = ai_load_module,
    .unload = ai_unload);
