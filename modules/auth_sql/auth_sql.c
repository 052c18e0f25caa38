/* auth_sql: accounts from an existing user table, through queries the
 * operator writes (Dovecot-style), on PostgreSQL.
 *
 * Every query is compiled once at load into a parameterised statement
 * (variables %n %d %u %{name} become bound $N), prepared and described on
 * a first, blocking connection so that a typo stops the start with the
 * database's own message (query.c), then run through the asynchronous
 * connection pool of modules/pgpool, any idle connection taking the next
 * query.
 *
 * password_query returns one row per account with a `password` column and
 * optionally `scheme`, `disabled`, `scram_sha1`, `scram_sha256`,
 * `scram_sha512`. The stored password's format is read from its {SCHEME}
 * prefix, the scheme column, its shape, or default_scheme (schemes.c).
 * PLAIN is verified against any usable format on a worker thread; SCRAM
 * needs keys for its hash: from a scram_shaX column, a {SCRAM-SHA-x} value,
 * a PBKDF2 value whose output is SCRAM's SaltedPassword, or a plaintext
 * password when allowed. After a PLAIN login against a crypt, PBKDF2 or
 * plaintext value, upgrade_query (when set) stores fresh SCRAM keys for the
 * account, so that SCRAM works for it from then on.
 *
 * Every request is an sa_req, owned by whichever asynchronous call it waits
 * for (a pool query, a worker job, a deferred answer) until its answer (and
 * a following upgrade query) is done. When the module unloads, each of
 * those comes back cancelled before unload() and frees it: the kernel
 * answers the consumer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "../pgpool/pgpool.h"
#include "query.h"
#include "schemes.h"

/* ---- options ---- */

typedef struct sa_conf {
    const char *driver;
    const char *connect;
    long long pool_size;
    long long connect_timeout, query_timeout, reconnect_max;
    const char *password_query, *user_query, *list_query;
    const char *create_query, *set_password_query, *delete_query, *upgrade_query;
    const char *disable_query, *enable_query;
    const char *default_scheme, *hash_scheme, *offer_scram;
    bool allow_plaintext, allow_weak;
    long long iterations;
} sa_conf;

static const char *const sa_drivers[] = { "pgsql", NULL };
static const char *const sa_new_schemes[] = AS_NEW_SCHEMES;
static const char *const sa_offer[] = { "auto", "always", "never", NULL };

static const xmppd_option sa_options[] = {
    { "driver", XMPPD_OPT_ENUM, XMPPD_OFF(sa_conf, driver), "pgsql", 0, 0, sa_drivers, 0,
      "database kind of the user table" },
    { "connect", XMPPD_OPT_STRING, XMPPD_OFF(sa_conf, connect), NULL, 0, 0, NULL,
      XMPPD_OPT_REQUIRED | XMPPD_OPT_SECRET, "libpq connection string or URI of the user database" },
    { "pool_size", XMPPD_OPT_INT, XMPPD_OFF(sa_conf, pool_size), "2", 1, 32, NULL, 0,
      "connections kept open to the user database" },
    { "connect_timeout", XMPPD_OPT_DURATION, XMPPD_OFF(sa_conf, connect_timeout), "10s", 100, 600000, NULL, 0,
      "give up a connection attempt after this long" },
    { "query_timeout", XMPPD_OPT_DURATION, XMPPD_OFF(sa_conf, query_timeout), "10s", 100, 600000, NULL, 0,
      "fail a lookup (temporary-auth-failure) that waited or ran this long" },
    { "reconnect_max", XMPPD_OPT_DURATION, XMPPD_OFF(sa_conf, reconnect_max), "10s", 100, 600000, NULL, 0,
      "longest pause between attempts to reach a user database that is down" },
    { "password_query", XMPPD_OPT_STRING, XMPPD_OFF(sa_conf, password_query), NULL, 0, 0, NULL, XMPPD_OPT_REQUIRED,
      "one row per account: password [, scheme, disabled, scram_sha1, scram_sha256, scram_sha512]; %n %d %u" },
    { "user_query", XMPPD_OPT_STRING, XMPPD_OFF(sa_conf, user_query), NULL, 0, 0, NULL, 0,
      "a row when the account exists (default: password_query); %n %d %u" },
    { "list_query", XMPPD_OPT_STRING, XMPPD_OFF(sa_conf, list_query), NULL, 0, 0, NULL, 0,
      "localparts of the host's accounts, first column; %d (unset: listing unsupported)" },
    { "create_query", XMPPD_OPT_STRING, XMPPD_OFF(sa_conf, create_query), NULL, 0, 0, NULL, 0,
      "creates an account; %n %d %u %{password_hash} %{scram_sha1} %{scram_sha256} (unset: read-only)" },
    { "set_password_query", XMPPD_OPT_STRING, XMPPD_OFF(sa_conf, set_password_query), NULL, 0, 0, NULL, 0,
      "changes a password; same variables as create_query (unset: read-only)" },
    { "delete_query", XMPPD_OPT_STRING, XMPPD_OFF(sa_conf, delete_query), NULL, 0, 0, NULL, 0,
      "deletes an account; %n %d %u (unset: read-only)" },
    { "upgrade_query", XMPPD_OPT_STRING, XMPPD_OFF(sa_conf, upgrade_query), NULL, 0, 0, NULL, 0,
      "after a PLAIN login against a crypt/PBKDF2/plaintext password, stores SCRAM keys; %n %d %u %{scram_sha1} %{scram_sha256} %{scram_sha512}" },
    { "disable_query", XMPPD_OPT_STRING, XMPPD_OFF(sa_conf, disable_query), NULL, 0, 0, NULL, 0,
      "bars an account from logging in (xmppctl disable, XEP-0133 disable-user); %n %d %u; pair it "
      "with a disabled column in password_query (unset: accounts cannot be disabled here)" },
    { "enable_query", XMPPD_OPT_STRING, XMPPD_OFF(sa_conf, enable_query), NULL, 0, 0, NULL, 0,
      "lets a disabled account log in again; %n %d %u" },
    { "default_scheme", XMPPD_OPT_STRING, XMPPD_OFF(sa_conf, default_scheme), NULL, 0, 0, NULL, 0,
      "scheme of passwords with no {SCHEME} prefix, scheme column or recognisable shape" },
    { "hash_scheme", XMPPD_OPT_ENUM, XMPPD_OFF(sa_conf, hash_scheme), "bcrypt", 0, 0, sa_new_schemes, 0,
      "format of %{password_hash} for new and changed passwords" },
    { "offer_scram", XMPPD_OPT_ENUM, XMPPD_OFF(sa_conf, offer_scram), "auto", 0, 0, sa_offer, 0,
      "auto: SCRAM-SHA-x when password_query returns scram_shaX or default_scheme provides it; always; never" },
    { "allow_plaintext", XMPPD_OPT_BOOL, XMPPD_OFF(sa_conf, allow_plaintext), "false", 0, 0, NULL, 0,
      "accept {PLAIN} (cleartext) stored passwords" },
    { "allow_weak", XMPPD_OPT_BOOL, XMPPD_OFF(sa_conf, allow_weak), "false", 0, 0, NULL, 0,
      "accept md5-crypt and DES crypt stored passwords" },
    { "iterations", XMPPD_OPT_INT, XMPPD_OFF(sa_conf, iterations), "10000", 4096, 10000000, NULL, 0,
      "PBKDF2 iterations of SCRAM keys (and pbkdf2_sha256 hashes) this module writes" },
    { NULL }
};

/* ---- instance ---- */

enum { Q_PASSWORD, Q_USER, Q_LIST, Q_CREATE, Q_SETPASS, Q_DELETE, Q_UPGRADE, Q_DISABLE, Q_ENABLE,
       Q_COUNT };
static const char *const sa_qnames[Q_COUNT] = { "password_query", "user_query", "list_query",
                                               "create_query", "set_password_query", "delete_query",
                                               "upgrade_query", "disable_query", "enable_query" };
static const unsigned sa_qvars[Q_COUNT] = {
    AQ_IDENT, AQ_IDENT, AQ_BIT(AQ_DOMAIN),
    AQ_IDENT | AQ_BIT(AQ_PASSWORD_HASH) | AQ_SCRAM_VARS,
    AQ_IDENT | AQ_BIT(AQ_PASSWORD_HASH) | AQ_SCRAM_VARS,
    AQ_IDENT, AQ_IDENT | AQ_SCRAM_VARS, AQ_IDENT, AQ_IDENT,
};

typedef struct sa_req sa_req;

typedef struct sa_ctx {
    xmppd_module *m;
    const sa_conf *conf;
    const char *host;
    aq_query q[Q_COUNT];
    const char *stmt_sql[Q_COUNT];  /* by statement number: the configured queries' SQL */
    pgpool *db;
    unsigned mechs;
    bool has_col[XMPPD_HASH_COUNT]; /* password_query returns scram_shaX */
    unsigned char salt_secret[32];  /* stable fake salts of plaintext rows */
    xmppd_auth_provider provider;
} sa_ctx;

enum sa_op { SA_PLAIN, SA_SCRAM, SA_EXISTS, SA_CREATE, SA_SETPASS, SA_REMOVE, SA_LIST, SA_DISABLE,
             SA_IS_DISABLED };

/* What a query's answer goes on with: res its rows, or NULL when it failed
 * (sqlstate: the error's SQLSTATE, "" when unknown). */
typedef void (*sa_step)(sa_req *r, const PGresult *res, const char *sqlstate);

/* A request of the kernel's auth front. */
struct sa_req {
    sa_ctx *ctx;
    sa_step step;              /* the running query's continuation */
    enum sa_op op;
    bool answered;             /* callback ran; an upgrade query is still on */
    char *user, *bare;
    char *password;            /* secret */
    enum xmppd_hash hash;
    /* the row */
    char *stored;              /* secret-ish: wiped */
    char *scheme;
    char *scram_col[XMPPD_HASH_COUNT];
    as_hash parsed;            /* value points into stored */
    bool upgrade;              /* compute keys for upgrade_query after a match */
    /* worker output */
    int result;
    xmppd_scram_keys keys;     /* get_scram answer */
    char *new_hash;            /* %{password_hash} */
    char *new_scram[XMPPD_HASH_COUNT];
    union {
        xmppd_auth_cb res;
        xmppd_auth_scram_cb scram;
        xmppd_auth_list_cb list;
    } cb;
    void *ud;
};

static void sa_free_secret(char **p)
{
    if (*p) {
        xmppd_wipe(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

static sa_req *sa_req_new(sa_ctx *ctx, enum sa_op op, const char *user, const char *password, void *ud)
{
    sa_req *r = calloc(1, sizeof *r);
    if (!r)
        goto oom;
    r->ctx = ctx;
    r->op = op;
    r->ud = ud;
    if (user) {
        size_t n = strlen(user) + strlen(ctx->host) + 2;
        if (!(r->user = strdup(user)) || !(r->bare = malloc(n))) {
            free(r->user);
            free(r);
            goto oom;
        }
        snprintf(r->bare, n, "%s@%s", user, ctx->host);
    }
    if (password && !(r->password = strdup(password))) {
        free(r->user);
        free(r->bare);
        free(r);
        goto oom;
    }
    return r;
oom:
    xmppd_log(ctx->m, XMPPD_LOG_ERROR, "out of memory: account request dropped");
    return NULL;
}

static void sa_req_free(sa_req *r)
{
    sa_free_secret(&r->password);
    sa_free_secret(&r->stored);
    sa_free_secret(&r->new_hash);
    for (int h = 0; h < XMPPD_HASH_COUNT; h++) {
        sa_free_secret(&r->scram_col[h]);
        sa_free_secret(&r->new_scram[h]);
    }
    xmppd_wipe(&r->keys, sizeof r->keys);
    free(r->scheme);
    free(r->user);
    free(r->bare);
    free(r);
}

static void sa_finish(sa_req *r, int result)
{
    if (!r->answered) {
        switch (r->op) {
        case SA_SCRAM: r->cb.scram(result, result == XMPPD_AUTH_OK ? &r->keys : NULL, r->ud); break;
        case SA_LIST: r->cb.list(result, NULL, 0, r->ud); break;
        default: r->cb.res(result, r->ud); break;
        }
    }
    sa_req_free(r);
}

static void sa_deferred(void *ud)
{
    sa_req *r = ud;
    sa_finish(r, r->result);
}

/* The module unloads with r in a kernel call: only r is left to free (the
 * kernel answers the asker). */
static void sa_cancelled(void *ud)
{
    sa_req_free(ud);
}

static void sa_finish_later(sa_req *r, int result)
{
    r->result = result;
    if (xmppd_defer(r->ctx->m, sa_deferred, sa_cancelled, r) != 0) {
        xmppd_log(r->ctx->m, XMPPD_LOG_ERROR, "out of memory: account request dropped");
        sa_req_free(r);
    }
}

/* ---- running queries ---- */

/* The value of each $N of q for r. */
static void sa_values(const sa_req *r, const aq_query *q, const char *v[AQ_MAX_PARAMS])
{
    for (int i = 0; i < q->n_params; i++) {
        switch (q->params[i]) {
        case AQ_LOCALPART: v[i] = r->user; break;
        case AQ_DOMAIN: v[i] = r->ctx->host; break;
        case AQ_USER: v[i] = r->bare; break;
        case AQ_PASSWORD_HASH: v[i] = r->new_hash; break;
        case AQ_SCRAM_SHA1: v[i] = r->new_scram[XMPPD_HASH_SHA1]; break;
        case AQ_SCRAM_SHA256: v[i] = r->new_scram[XMPPD_HASH_SHA256]; break;
        case AQ_SCRAM_SHA512: v[i] = r->new_scram[XMPPD_HASH_SHA512]; break;
        default: v[i] = NULL; break;
        }
    }
}

/* The pool's answer to r's query. Cancelled: the module unloads, and the
 * kernel answers the asker. A refused statement is logged, but for a
 * unique violation, which is an answer (the account exists). */
static void sa_on_query(int status, const PGresult *res, void *ud)
{
    sa_req *r = ud;
    const char *state = "";
    if (status == PGPOOL_CANCELLED) {
        sa_req_free(r);
        return;
    }
    if (status == PGPOOL_FAILED) {
        const char *msg = PQresultErrorMessage(res);
        if (PQresultErrorField(res, PG_DIAG_SQLSTATE))
            state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (strcmp(state, "23505") != 0)
            xmppd_log(r->ctx->m, XMPPD_LOG_ERROR, "user database query failed: %.*s", (int)strcspn(msg, "\n"),
                      *msg ? msg : "unknown error");
    }
    r->step(r, status == PGPOOL_OK ? res : NULL, state);
}

/* Runs query `which` for r, then step. */
static void sa_run(sa_req *r, int which, sa_step step)
{
    const aq_query *q = &r->ctx->q[which];
    const char *v[AQ_MAX_PARAMS];
    sa_values(r, q, v);
    r->step = step;
    pgpool_query pq = { .stmt = q->stmt, .shard = PGPOOL_ANY, .n_values = q->n_params, .values = v };
    if (pgpool_submit(r->ctx->db, &pq, sa_on_query, r) != 0)
        sa_finish_later(r, XMPPD_AUTH_INTERNAL);
}

static bool sa_truthy(const char *s)
{
    static const char *const yes[] = { "t", "true", "1", "y", "yes", "on", NULL };
    for (size_t i = 0; s && yes[i]; i++)
        if (strcasecmp(s, yes[i]) == 0)
            return true;
    return false;
}

static const char *sa_col(const PGresult *res, const char *name)
{
    int c = PQfnumber(res, name);
    return c >= 0 && !PQgetisnull(res, 0, c) ? PQgetvalue(res, 0, c) : NULL;
}

static const char *const sa_scram_cols[XMPPD_HASH_COUNT] = { "scram_sha1", "scram_sha256", "scram_sha512" };

/* Copies the row of password_query into r. 0, 1 unknown user, 2 disabled,
 * -1 error. */
static int sa_take_row(sa_req *r, const PGresult *res)
{
    sa_ctx *ctx = r->ctx;
    int rows = PQntuples(res);
    if (rows == 0)
        return 1;
    if (rows > 1) {
        xmppd_log(ctx->m, XMPPD_LOG_ERROR, "password_query returned %d rows for %s: it must return one", rows,
                  r->bare);
        return -1;
    }
    if (sa_truthy(sa_col(res, "disabled")))
        return 2;
    const char *pw = sa_col(res, "password");
    const char *sc = sa_col(res, "scheme");
    if ((pw && !(r->stored = strdup(pw))) || (sc && !(r->scheme = strdup(sc))))
        return -1;
    for (int h = 0; h < XMPPD_HASH_COUNT; h++) {
        const char *v = sa_col(res, sa_scram_cols[h]);
        if (v && *v && !(r->scram_col[h] = strdup(v)))
            return -1;
    }
    as_parse(r->stored, r->scheme, ctx->conf->default_scheme, &r->parsed);
    return 0;
}

/* Can the parsed password be verified with this configuration? */
static bool sa_usable(const sa_ctx *ctx, const as_hash *h)
{
    switch (h->kind) {
    case AS_PLAIN: return ctx->conf->allow_plaintext;
    case AS_CRYPT: return !h->weak || ctx->conf->allow_weak;
    case AS_DJANGO:
    case AS_DOVECOT_PBKDF2:
    case AS_SCRAM: return true;
    default: return false;
    }
}

static const char *sa_refusal(const sa_ctx *ctx, const as_hash *h)
{
    if (h->kind == AS_PLAIN)
        return "plaintext passwords need allow_plaintext";
    if (h->kind == AS_CRYPT && h->weak)
        return "weak crypt schemes need allow_weak";
    if (h->kind == AS_UNSUPPORTED)
        return "scheme not supported";
    return "format not recognised (set default_scheme?)";
}

/* ---- worker jobs ---- */

/* Fresh SCRAM keys of r->password for each hash whose variable q uses. */
static int sa_new_scram(sa_req *r, unsigned used)
{
    static const enum aq_var vars[XMPPD_HASH_COUNT] = { AQ_SCRAM_SHA1, AQ_SCRAM_SHA256, AQ_SCRAM_SHA512 };
    for (int h = 0; h < XMPPD_HASH_COUNT; h++) {
        if (!(used & AQ_BIT(vars[h])))
            continue;
        unsigned char salt[16];
        xmppd_scram_keys k;
        if (xmppd_random(salt, sizeof salt) != 0)
            return XMPPD_AUTH_INTERNAL;
        if (xmppd_scram_derive((enum xmppd_hash)h, r->password, salt, sizeof salt,
                               (unsigned)r->ctx->conf->iterations, &k) != 0)
            return XMPPD_AUTH_INVALID; /* fails SASLprep */
        r->new_scram[h] = as_scram_format(&k);
        xmppd_wipe(&k, sizeof k);
        if (!r->new_scram[h])
            return XMPPD_AUTH_INTERNAL;
    }
    return XMPPD_AUTH_OK;
}

static void sa_work_verify(void *ud)
{
    sa_req *r = ud;
    int v = as_verify(&r->parsed, r->password);
    r->result = v == 1 ? XMPPD_AUTH_OK : v == 0 ? XMPPD_AUTH_MISMATCH : XMPPD_AUTH_NO_SCHEME;
    if (r->result == XMPPD_AUTH_OK && r->upgrade && sa_new_scram(r, r->ctx->q[Q_UPGRADE].used) != XMPPD_AUTH_OK) {
        for (int h = 0; h < XMPPD_HASH_COUNT; h++)
            sa_free_secret(&r->new_scram[h]);
        r->upgrade = false;
    }
    sa_free_secret(&r->password);
}

/* SCRAM keys of a plaintext row with a stable per-user salt. */
static void sa_work_plain_scram(void *ud)
{
    sa_req *r = ud;
    unsigned char salt[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    r->result = XMPPD_AUTH_NO_SCHEME;
    if (HMAC(EVP_sha256(), r->ctx->salt_secret, sizeof r->ctx->salt_secret, (const unsigned char *)r->user,
             strlen(r->user), salt, &len) &&
        xmppd_scram_derive(r->hash, r->parsed.value, salt, 16, (unsigned)r->ctx->conf->iterations, &r->keys) == 0)
        r->result = XMPPD_AUTH_OK;
}

static void sa_work_new(void *ud)
{
    sa_req *r = ud;
    const aq_query *q = &r->ctx->q[r->op == SA_CREATE ? Q_CREATE : Q_SETPASS];
    r->result = sa_new_scram(r, q->used);
    if (r->result == XMPPD_AUTH_OK && (q->used & AQ_BIT(AQ_PASSWORD_HASH)) &&
        !(r->new_hash = as_hash_new(r->ctx->conf->hash_scheme, r->password, (unsigned)r->ctx->conf->iterations)))
        r->result = XMPPD_AUTH_INTERNAL;
    sa_free_secret(&r->password);
}

/* verify_plain of an account that does not exist: hashing the offered
 * password with hash_scheme costs what verifying a stored hash of that
 * scheme does, so the answer's timing does not tell whether the account
 * exists. */
static void sa_work_decoy(void *ud)
{
    sa_req *r = ud;
    free(as_hash_new(r->ctx->conf->hash_scheme, r->password, (unsigned)r->ctx->conf->iterations));
    sa_free_secret(&r->password);
    r->result = XMPPD_AUTH_USER_UNKNOWN;
}

static void sa_done_new(void *ud);

static void sa_done_result(void *ud)
{
    sa_req *r = ud;
    sa_finish(r, r->result);
}

static void sa_offload(sa_req *r, void (*work)(void *), void (*done)(void *))
{
    if (xmppd_offload(r->ctx->m, work, done, sa_cancelled, r) != 0)
        sa_finish(r, XMPPD_AUTH_INTERNAL);
}

/* ---- verify_plain ---- */

static void sa_on_upgraded(sa_req *r, const PGresult *res, const char *sqlstate)
{
    if (!res)
        xmppd_log(r->ctx->m, XMPPD_LOG_WARN, "storing SCRAM keys for %s failed (upgrade_query)", r->bare);
    else
        xmppd_log(r->ctx->m, XMPPD_LOG_INFO, "stored SCRAM keys for %s (was %s)", r->bare, r->parsed.name);
    sa_req_free(r);
}

static void sa_done_verify(void *ud)
{
    sa_req *r = ud;
    if (r->result == XMPPD_AUTH_NO_SCHEME)
        xmppd_log(r->ctx->m, XMPPD_LOG_WARN, "%s: stored %s password is malformed", r->bare, r->parsed.name);
    r->cb.res(r->result, r->ud);
    r->answered = true;
    if (r->result == XMPPD_AUTH_OK && r->upgrade) {
        sa_run(r, Q_UPGRADE, sa_on_upgraded);
        return;
    }
    sa_req_free(r);
}

/* Does the row lack a SCRAM key that upgrade_query would store? */
static bool sa_needs_upgrade(const sa_req *r)
{
    static const enum aq_var vars[XMPPD_HASH_COUNT] = { AQ_SCRAM_SHA1, AQ_SCRAM_SHA256, AQ_SCRAM_SHA512 };
    const sa_ctx *ctx = r->ctx;
    if (!ctx->q[Q_UPGRADE].sql || r->parsed.kind == AS_SCRAM)
        return false;
    for (int h = 0; h < XMPPD_HASH_COUNT; h++)
        if ((ctx->q[Q_UPGRADE].used & AQ_BIT(vars[h])) && !r->scram_col[h])
            return true;
    return false;
}

static void sa_on_password_row(sa_req *r, const PGresult *res, const char *sqlstate)
{
    sa_ctx *ctx = r->ctx;
    int t = res ? sa_take_row(r, res) : -1;
    if (t == 1 && r->op == SA_PLAIN) {
        sa_offload(r, sa_work_decoy, sa_done_result);
        return;
    }
    if (t != 0) {
        sa_finish(r, t == 1 ? XMPPD_AUTH_USER_UNKNOWN : t == 2 ? XMPPD_AUTH_DISABLED : XMPPD_AUTH_INTERNAL);
        return;
    }
    if (r->op == SA_PLAIN) {
        if (!sa_usable(ctx, &r->parsed)) {
            /* no usable password: SCRAM keys in a column verify it too */
            static const enum xmppd_hash order[] = { XMPPD_HASH_SHA256, XMPPD_HASH_SHA1, XMPPD_HASH_SHA512 };
            for (size_t i = 0; i < 3; i++) {
                if (r->scram_col[order[i]]) {
                    r->parsed = (as_hash){ AS_SCRAM, xmppd_hash_scram_name(order[i]), false, order[i],
                                           r->scram_col[order[i]] };
                    break;
                }
            }
        }
        if (!sa_usable(ctx, &r->parsed)) {
            xmppd_log(ctx->m, XMPPD_LOG_INFO, "%s: stored password (%s) cannot be verified: %s", r->bare,
                      r->parsed.name, sa_refusal(ctx, &r->parsed));
            sa_finish(r, XMPPD_AUTH_NO_SCHEME);
            return;
        }
        r->upgrade = sa_needs_upgrade(r);
        sa_offload(r, sa_work_verify, sa_done_verify);
        return;
    }
    /* SA_SCRAM */
    if (r->scram_col[r->hash]) {
        if (as_scram_parse(r->scram_col[r->hash], r->hash, &r->keys) == 0) {
            sa_finish(r, XMPPD_AUTH_OK);
            return;
        }
        xmppd_log(ctx->m, XMPPD_LOG_WARN, "%s: column %s is malformed", r->bare, sa_scram_cols[r->hash]);
    }
    if (sa_usable(ctx, &r->parsed) && as_scram_from_hash(&r->parsed, r->hash, &r->keys) == 0) {
        sa_finish(r, XMPPD_AUTH_OK);
        return;
    }
    if (r->parsed.kind == AS_PLAIN && ctx->conf->allow_plaintext) {
        sa_offload(r, sa_work_plain_scram, sa_done_result);
        return;
    }
    xmppd_log(ctx->m, XMPPD_LOG_INFO, "%s: no %s credentials (stored password: %s)%s", r->bare,
              xmppd_hash_scram_name(r->hash), r->parsed.name,
              ctx->q[Q_UPGRADE].sql ? "; a PLAIN login stores them" : "");
    sa_finish(r, XMPPD_AUTH_NO_SCHEME);
}

/* ---- exists / create / set_password / remove / list ---- */

static void sa_on_exists(sa_req *r, const PGresult *res, const char *sqlstate)
{
    if (!res) {
        sa_finish(r, XMPPD_AUTH_INTERNAL);
        return;
    }
    bool found = PQntuples(res) > 0;
    switch (r->op) {
    case SA_EXISTS:
        sa_finish(r, found ? XMPPD_AUTH_OK : XMPPD_AUTH_USER_UNKNOWN);
        break;
    case SA_CREATE:
        if (found)
            sa_finish(r, XMPPD_AUTH_EXISTS);
        else
            sa_offload(r, sa_work_new, sa_done_new);
        break;
    case SA_SETPASS:
        if (!found)
            sa_finish(r, XMPPD_AUTH_USER_UNKNOWN);
        else
            sa_offload(r, sa_work_new, sa_done_new);
        break;
    default:
        sa_finish(r, XMPPD_AUTH_INTERNAL);
        break;
    }
}

/* Runs the query that tells whether r's account exists. */
static void sa_check_exists(sa_req *r)
{
    sa_run(r, r->ctx->q[Q_USER].sql ? Q_USER : Q_PASSWORD, sa_on_exists);
}

static void sa_on_written(sa_req *r, const PGresult *res, const char *sqlstate)
{
    if (!res) {
        /* unique_violation: the account was created meanwhile */
        sa_finish(r, strcmp(sqlstate, "23505") == 0 && r->op == SA_CREATE ? XMPPD_AUTH_EXISTS
                                                                           : XMPPD_AUTH_INTERNAL);
        return;
    }
    const char *n = PQcmdTuples((PGresult *)res);
    bool none = n && strcmp(n, "0") == 0;
    if (none && (r->op == SA_SETPASS || r->op == SA_REMOVE || r->op == SA_DISABLE))
        sa_finish(r, XMPPD_AUTH_USER_UNKNOWN);
    else
        sa_finish(r, XMPPD_AUTH_OK);
}

static void sa_done_new(void *ud)
{
    sa_req *r = ud;
    if (r->result != XMPPD_AUTH_OK) {
        sa_finish(r, r->result);
        return;
    }
    sa_run(r, r->op == SA_CREATE ? Q_CREATE : Q_SETPASS, sa_on_written);
}

static void sa_on_list(sa_req *r, const PGresult *res, const char *sqlstate)
{
    if (!res) {
        sa_finish(r, XMPPD_AUTH_INTERNAL);
        return;
    }
    int n = PQntuples(res);
    const char **users = calloc((size_t)n + 1, sizeof *users);
    if (!users) {
        sa_finish(r, XMPPD_AUTH_INTERNAL);
        return;
    }
    size_t k = 0;
    for (int i = 0; i < n; i++)
        if (PQnfields(res) > 0 && !PQgetisnull(res, i, 0))
            users[k++] = PQgetvalue(res, i, 0);
    r->cb.list(XMPPD_AUTH_OK, users, k, r->ud);
    r->answered = true;
    free(users);
    sa_req_free(r);
}

/* ---- provider entry points ---- */

static unsigned sa_mechanisms(void *pd)
{
    sa_ctx *ctx = pd;
    return ctx->mechs;
}

static void sa_verify_plain(void *pd, const char *user, const char *password, xmppd_auth_cb cb, void *ud)
{
    sa_req *r = sa_req_new(pd, SA_PLAIN, user ? user : "", password, ud);
    if (!r)
        return;
    r->cb.res = cb;
    if (!user || !*user)
        sa_finish_later(r, XMPPD_AUTH_USER_UNKNOWN);
    else if (!password || !*password)
        sa_finish_later(r, XMPPD_AUTH_MISMATCH);
    else
        sa_run(r, Q_PASSWORD, sa_on_password_row);
}

static void sa_get_scram(void *pd, const char *user, enum xmppd_hash h, xmppd_auth_scram_cb cb, void *ud)
{
    sa_req *r = sa_req_new(pd, SA_SCRAM, user ? user : "", NULL, ud);
    if (!r)
        return;
    r->cb.scram = cb;
    r->hash = h;
    if ((unsigned)h >= XMPPD_HASH_COUNT)
        sa_finish_later(r, XMPPD_AUTH_NO_SCHEME);
    else if (!user || !*user)
        sa_finish_later(r, XMPPD_AUTH_USER_UNKNOWN);
    else
        sa_run(r, Q_PASSWORD, sa_on_password_row);
}

static void sa_exists(void *pd, const char *user, xmppd_auth_cb cb, void *ud)
{
    sa_req *r = sa_req_new(pd, SA_EXISTS, user ? user : "", NULL, ud);
    if (!r)
        return;
    r->cb.res = cb;
    if (!user || !*user)
        sa_finish_later(r, XMPPD_AUTH_USER_UNKNOWN);
    else
        sa_check_exists(r);
}

static bool sa_valid_user(const char *user)
{
    if (!user || !*user)
        return false;
    char *prepped = xmppd_nodeprep(user);
    bool ok = prepped && strcmp(prepped, user) == 0;
    free(prepped);
    return ok;
}

static void sa_create(void *pd, const char *user, const char *password, xmppd_auth_cb cb, void *ud)
{
    sa_req *r = sa_req_new(pd, SA_CREATE, user ? user : "", password, ud);
    if (!r)
        return;
    r->cb.res = cb;
    if (!sa_valid_user(user) || !password || !*password)
        sa_finish_later(r, XMPPD_AUTH_INVALID);
    else
        sa_check_exists(r);
}

static void sa_set_password(void *pd, const char *user, const char *password, xmppd_auth_cb cb, void *ud)
{
    sa_req *r = sa_req_new(pd, SA_SETPASS, user ? user : "", password, ud);
    if (!r)
        return;
    r->cb.res = cb;
    if (!user || !*user)
        sa_finish_later(r, XMPPD_AUTH_USER_UNKNOWN);
    else if (!password || !*password)
        sa_finish_later(r, XMPPD_AUTH_INVALID);
    else
        sa_check_exists(r);
}

static void sa_user_query(void *pd, enum sa_op op, const char *user, int which, sa_step step,
                          xmppd_auth_cb cb, void *ud);

/* disable_query / enable_query: no row changed is no such account. */
static void sa_set_disabled(void *pd, const char *user, bool disabled, const char *reason,
                            xmppd_auth_cb cb, void *ud)
{
    (void)reason; /* no query variable: the operator's table keeps what it wants */
    sa_ctx *ctx = pd;
    int q = disabled ? Q_DISABLE : Q_ENABLE;
    if (ctx->q[q].sql) {
        sa_user_query(pd, SA_DISABLE, user, q, sa_on_written, cb, ud);
        return;
    }
    sa_req *r = sa_req_new(ctx, SA_DISABLE, user ? user : "", NULL, ud);
    if (r) {
        r->cb.res = cb;
        sa_finish_later(r, XMPPD_AUTH_UNSUPPORTED);
    }
}

/* is_disabled: password_query's row, its disabled column. */
static void sa_on_disabled_row(sa_req *r, const PGresult *res, const char *sqlstate)
{
    (void)sqlstate;
    int t = res ? sa_take_row(r, res) : -1;
    sa_finish(r, t == 0 ? XMPPD_AUTH_OK : t == 1 ? XMPPD_AUTH_USER_UNKNOWN
                 : t == 2 ? XMPPD_AUTH_DISABLED : XMPPD_AUTH_INTERNAL);
}

/* A request of user's that runs query `which`, then step (no such
 * account when user is empty). */
static void sa_user_query(void *pd, enum sa_op op, const char *user, int which, sa_step step,
                          xmppd_auth_cb cb, void *ud)
{
    sa_req *r = sa_req_new(pd, op, user ? user : "", NULL, ud);
    if (!r)
        return;
    r->cb.res = cb;
    if (!user || !*user)
        sa_finish_later(r, XMPPD_AUTH_USER_UNKNOWN);
    else
        sa_run(r, which, step);
}

static void sa_is_disabled(void *pd, const char *user, xmppd_auth_cb cb, void *ud)
{
    sa_user_query(pd, SA_IS_DISABLED, user, Q_PASSWORD, sa_on_disabled_row, cb, ud);
}

static void sa_remove(void *pd, const char *user, xmppd_auth_cb cb, void *ud)
{
    sa_user_query(pd, SA_REMOVE, user, Q_DELETE, sa_on_written, cb, ud);
}

static void sa_list(void *pd, xmppd_auth_list_cb cb, void *ud)
{
    sa_req *r = sa_req_new(pd, SA_LIST, NULL, NULL, ud);
    if (!r)
        return;
    r->cb.list = cb;
    sa_run(r, Q_LIST, sa_on_list);
}

/* ---- module ---- */

/* SCRAM hashes default_scheme provides for every row. */
static bool sa_default_gives(const sa_conf *c, enum xmppd_hash h)
{
    as_hash p;
    if (!c->default_scheme)
        return false;
    as_parse("", NULL, c->default_scheme, &p);
    if (p.kind == AS_PLAIN)
        return c->allow_plaintext;
    return (p.kind == AS_SCRAM || p.kind == AS_DJANGO || p.kind == AS_DOVECOT_PBKDF2) && p.hash == h;
}

static void sa_ctx_free(sa_ctx *ctx)
{
    pgpool_free(ctx->db);
    ctx->db = NULL;
    for (int i = 0; i < Q_COUNT; i++)
        aq_free(&ctx->q[i]);
    xmppd_wipe(ctx->salt_secret, sizeof ctx->salt_secret);
}

static const char *sa_stmt_sql(int i, char *buf, size_t len, void *ud)
{
    const sa_ctx *ctx = ud;
    (void)buf;
    (void)len;
    return ctx->stmt_sql[i];
}

/* Reads password_query's columns: false when it has no "password". */
static bool sa_password_columns(sa_ctx *ctx, char **cols)
{
    bool has_password = false;
    for (size_t i = 0; cols[i]; i++) {
        if (strcmp(cols[i], "password") == 0)
            has_password = true;
        for (int h = 0; h < XMPPD_HASH_COUNT; h++)
            if (strcmp(cols[i], sa_scram_cols[h]) == 0)
                ctx->has_col[h] = true;
    }
    return has_password;
}

/* Checks every configured query on one blocking connection, numbers them
 * as the pool's statements, and opens the pool. 0, or -1 with a line in
 * err. */
static int sa_open_db(sa_ctx *ctx, char *err, size_t errlen)
{
    const sa_conf *c = ctx->conf;
    pgpool_conf pc = {
        .conninfo = c->connect, .application_name = "xmppd-auth", .what = "user database",
        .size = (int)c->pool_size, .connect_timeout_ms = (uint64_t)c->connect_timeout,
        .query_timeout_ms = (uint64_t)c->query_timeout, .reconnect_max_ms = (uint64_t)c->reconnect_max,
        .drain_ms = 0, /* unloading: lookups are cancelled, their askers answered by the kernel */
        .stmt_prefix = "xmppd_auth_", .sql = sa_stmt_sql, .sql_ud = ctx,
    };
    PGconn *db = pgpool_connect_now(&pc, err, errlen);
    if (!db)
        return -1;
    for (int i = 0; i < Q_COUNT; i++) {
        char **cols;
        if (!ctx->q[i].sql)
            continue;
        if (aq_check(db, &ctx->q[i], sa_qnames[i], &cols, err, errlen) != 0) {
            PQfinish(db);
            return -1;
        }
        bool bad = i == Q_PASSWORD && !sa_password_columns(ctx, cols);
        aq_names_free(cols);
        if (bad) {
            snprintf(err, errlen, "option password_query: the query returns no column named \"password\"");
            PQfinish(db);
            return -1;
        }
        ctx->q[i].stmt = pc.n_statements;
        ctx->stmt_sql[pc.n_statements++] = ctx->q[i].sql;
    }
    PQfinish(db);
    if (!(ctx->db = pgpool_open(ctx->m, &pc))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int sa_load(xmppd_module *m, const void *conf)
{
    const sa_conf *c = conf;
    char err[600];
    sa_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return -1;
    ctx->m = m;
    ctx->conf = c;
    ctx->host = xmppd_host_name(xmppd_module_host(m));
    const char *texts[Q_COUNT] = { c->password_query, c->user_query, c->list_query, c->create_query,
                                   c->set_password_query, c->delete_query, c->upgrade_query,
                                   c->disable_query, c->enable_query };
    if (c->default_scheme && !as_scheme_known(c->default_scheme)) {
        xmppd_log(m, XMPPD_LOG_ERROR, "option default_scheme: unknown scheme \"%s\"", c->default_scheme);
        goto fail;
    }
    for (int i = 0; i < Q_COUNT; i++) {
        bool quoted = false;
        if (!texts[i])
            continue;
        if (aq_compile(texts[i], sa_qvars[i], &ctx->q[i], &quoted, err, sizeof err) != 0) {
            xmppd_log(m, XMPPD_LOG_ERROR, "option %s: %s", sa_qnames[i], err);
            goto fail;
        }
        if (quoted)
            xmppd_log(m, XMPPD_LOG_INFO, "option %s: variables need no quotes ('%%n'): they are bound parameters",
                      sa_qnames[i]);
    }
    if (xmppd_random(ctx->salt_secret, sizeof ctx->salt_secret) != 0)
        goto fail;
    if (sa_open_db(ctx, err, sizeof err) != 0) {
        xmppd_log(m, XMPPD_LOG_ERROR, "%s", err);
        goto fail;
    }
    ctx->mechs = XMPPD_AUTH_CAN_PLAIN;
    for (int h = 0; h < XMPPD_HASH_COUNT; h++) {
        bool offer = strcmp(c->offer_scram, "always") == 0 ||
                     (strcmp(c->offer_scram, "auto") == 0 &&
                      (ctx->has_col[h] || sa_default_gives(c, (enum xmppd_hash)h)));
        if (offer)
            ctx->mechs |= XMPPD_AUTH_CAN_SCRAM(h);
    }
    ctx->provider = (xmppd_auth_provider){
        .version = XMPPD_AUTH_PROVIDER_VERSION,
        .size = sizeof(xmppd_auth_provider),
        .name = "sql",
        .mechanisms = sa_mechanisms,
        .verify_plain = sa_verify_plain,
        .get_scram = sa_get_scram,
        .exists = sa_exists,
        .create = ctx->q[Q_CREATE].sql ? sa_create : NULL,
        .set_password = ctx->q[Q_SETPASS].sql ? sa_set_password : NULL,
        .remove = ctx->q[Q_DELETE].sql ? sa_remove : NULL,
        .list = ctx->q[Q_LIST].sql ? sa_list : NULL,
        .set_disabled = ctx->q[Q_DISABLE].sql || ctx->q[Q_ENABLE].sql ? sa_set_disabled : NULL,
        .is_disabled = sa_is_disabled,
    };
    if (xmppd_auth_provide(m, &ctx->provider, ctx) != 0) {
        xmppd_log(m, XMPPD_LOG_ERROR, "this host already has an auth provider");
        goto fail;
    }
    xmppd_module_set_data(m, ctx);
    xmppd_log(m, XMPPD_LOG_INFO, "accounts from the user database: PLAIN%s%s%s%s",
              (ctx->mechs & XMPPD_AUTH_CAN_SCRAM(XMPPD_HASH_SHA1)) ? ", SCRAM-SHA-1" : "",
              (ctx->mechs & XMPPD_AUTH_CAN_SCRAM(XMPPD_HASH_SHA256)) ? ", SCRAM-SHA-256" : "",
              (ctx->mechs & XMPPD_AUTH_CAN_SCRAM(XMPPD_HASH_SHA512)) ? ", SCRAM-SHA-512" : "",
              ctx->q[Q_CREATE].sql || ctx->q[Q_SETPASS].sql || ctx->q[Q_DELETE].sql ? "" : " (read-only)");
    return 0;
fail:
    sa_ctx_free(ctx);
    free(ctx);
    return -1;
}

/* Every request came back (cancelled) before this: only ctx is left. */
static void sa_unload(xmppd_module *m)
{
    sa_ctx *ctx = xmppd_module_data(m);
    if (!ctx)
        return;
    sa_ctx_free(ctx);
    xmppd_module_set_data(m, NULL);
    free(ctx);
}

XMPPD_MODULE(auth_sql,
    .version = "1.0",
    .summary = "accounts from an existing SQL user table (crypt, PBKDF2, SCRAM; upgrade to SCRAM on login)",
    .options = sa_options,
    .conf_size = sizeof(sa_conf),
    .load = sa_load,
    .unload = sa_unload);
