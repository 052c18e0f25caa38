/* SCRAM server (RFC 5802, RFC 7677; SCRAM-SHA-512 by the same rules) with
 * channel binding (RFC 5929, RFC 9266) as a pure state machine.
 *
 * Failure conditions: malformed-request for syntax errors, not-authorized
 * for a wrong proof, nonce or channel binding, an unknown user, and for
 * channel-binding flags that contradict the mechanism or what the server
 * offered (RFC 5802 §6 downgrade protection).
 *
 * Also the key derivation of api/xmppd/crypto.h (xmppd_scram_derive, with
 * SASLprep from libidn), sharing this file's hash and HMAC helpers. */
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stringprep.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sasl/sasl.h"
#include "xmppd/module.h" /* XMPPD_EXPORT */

#define SNONCE_RAW_LEN 24 /* random bytes in the server part of the nonce */
#define FAKE_SALT_LEN 16
/* auth_internal's default, so i= does not tell unknown accounts apart */
#define FAKE_ITERATIONS 10000

enum scram_state {
    ST_START,        /* waiting for client-first-message */
    ST_CLIENT_FIRST, /* client-first parsed; waiting for credentials */
    ST_SERVER_FIRST, /* server-first sent; waiting for client-final */
    ST_DONE,         /* finished or failed: every further step fails */
};

typedef struct cb_entry {
    char *type;
    unsigned char *data;
    size_t len;
} cb_entry;

struct scram_server {
    enum xmppd_hash hash;
    bool plus, advertised_plus;
    enum scram_state state;
    cb_entry *cbs;
    size_t n_cbs;
    const cb_entry *cb; /* chosen by a "p=" header; points into cbs */

    char *gs2_header; /* "n,,", "y,a=x," or "p=type,," up to the second ',' */
    size_t gs2_len;
    char *user, *authzid;     /* decoded saslnames; authzid may be NULL */
    char *client_first_bare;  /* for AuthMessage */
    char *snonce_for_test;    /* NULL: random */
    char *ssdp;               /* XEP-0474 h= value, or NULL */
    char *nonce;              /* client nonce + server nonce */
    char *server_first;

    /* Credentials (secret: wiped as soon as they are no longer needed). */
    bool known_user;
    unsigned char stored_key[XMPPD_HASH_MAX_LEN];
    unsigned char server_key[XMPPD_HASH_MAX_LEN];
};

/* ---- small helpers -------------------------------------------------- */

static const EVP_MD *scram_md(enum xmppd_hash h)
{
    switch (h) {
    case XMPPD_HASH_SHA1:
        return EVP_sha1();
    case XMPPD_HASH_SHA256:
        return EVP_sha256();
    case XMPPD_HASH_SHA512:
        return EVP_sha512();
    }
    return NULL;
}

static int scram_hmac(const EVP_MD *md, const unsigned char *key, size_t key_len,
                      const void *data, size_t len, unsigned char *out)
{
    static const unsigned char empty_key[1] = { 0 };
    unsigned int out_len = 0;
    if (key_len > INT_MAX)
        return -1;
    if (key == NULL || key_len == 0) /* OpenSSL wants a non-NULL key pointer */
        key = empty_key, key_len = 0;
    return HMAC(md, key, (int)key_len, data, len, out, &out_len) != NULL ? 0 : -1;
}

static char *dup_mem(const void *p, size_t n)
{
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

/* A field of a comma-separated SCRAM message. */
typedef struct field {
    const char *p;
    size_t len;
} field;

typedef struct cursor {
    const char *p, *end;
    bool done; /* no more fields */
} cursor;

/* Takes the next field up to ',' or the end; false when none is left. A
 * trailing ',' yields one final empty field. */
static bool next_field(cursor *c, field *f)
{
    if (c->done)
        return false;
    const char *comma = memchr(c->p, ',', (size_t)(c->end - c->p));
    f->p = c->p;
    if (comma != NULL) {
        f->len = (size_t)(comma - c->p);
        c->p = comma + 1;
    } else {
        f->len = (size_t)(c->end - c->p);
        c->p = c->end;
        c->done = true;
    }
    return true;
}

/* "k=..." with attribute letter k: the value in *val. */
static bool attr_is(const field *f, char k, field *val)
{
    if (f->len < 2 || f->p[0] != k || f->p[1] != '=')
        return false;
    val->p = f->p + 2;
    val->len = f->len - 2;
    return true;
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* attr-val = ALPHA "=" 1*value-char (RFC 5802 §7), for extensions. */
static bool attr_val_valid(const field *f)
{
    return f->len >= 3 && is_alpha(f->p[0]) && f->p[1] == '=';
}

/* printable = %x21-2B / %x2D-7E, at least one. */
static bool nonce_valid(const char *p, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (p[i] < 0x21 || p[i] > 0x7e || p[i] == ',')
            return false;
    return true;
}

/* cb-name = 1*(ALPHA / DIGIT / "." / "-") */
static bool cb_name_valid(const field *v)
{
    if (v->len == 0)
        return false;
    for (size_t i = 0; i < v->len; i++) {
        char c = v->p[i];
        if (!is_alpha(c) && !(c >= '0' && c <= '9') && c != '.' && c != '-')
            return false;
    }
    return true;
}

/* saslname: non-empty, "=2C" -> ',', "=3D" -> '=', any other '=' is an
 * error. A new malloc'd string, or NULL. */
static char *saslname_decode(const field *v)
{
    if (v->len == 0)
        return NULL;
    char *out = malloc(v->len + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < v->len; i++) {
        if (v->p[i] != '=') {
            out[o++] = v->p[i];
        } else if (v->len - i >= 3 && v->p[i + 1] == '2' && v->p[i + 2] == 'C') {
            out[o++] = ',';
            i += 2;
        } else if (v->len - i >= 3 && v->p[i + 1] == '3' && v->p[i + 2] == 'D') {
            out[o++] = '=';
            i += 2;
        } else {
            free(out);
            return NULL;
        }
    }
    out[o] = '\0';
    return out;
}

/* printf into a new malloc'd string; *len_r its length. NULL on OOM. */
__attribute__((format(printf, 2, 3)))
static char *str_printf(size_t *len_r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *out = malloc((size_t)n + 1);
    if (out == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(out, (size_t)n + 1, fmt, ap);
    va_end(ap);
    *len_r = (size_t)n;
    return out;
}

/* ---- lifecycle ------------------------------------------------------ */

scram_server *scram_server_new(enum xmppd_hash h, bool plus, bool advertised_plus,
                               const scram_cb *cbs, size_t n_cbs)
{
    if (scram_md(h) == NULL || (n_cbs > 0 && cbs == NULL))
        return NULL;
    scram_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->hash = h;
    s->plus = plus;
    s->advertised_plus = advertised_plus;
    if (n_cbs > 0 && (s->cbs = calloc(n_cbs, sizeof(*s->cbs))) == NULL)
        goto fail;
    for (size_t i = 0; i < n_cbs; i++) {
        if (cbs[i].type == NULL || (cbs[i].len > 0 && cbs[i].data == NULL))
            continue; /* no TLS, or nothing to bind to: not offered */
        cb_entry *e = &s->cbs[s->n_cbs++];
        if ((e->type = strdup(cbs[i].type)) == NULL
            || (e->data = (unsigned char *)dup_mem(cbs[i].data ? (const void *)cbs[i].data : "",
                                                   cbs[i].len)) == NULL)
            goto fail;
        e->len = cbs[i].len;
    }
    return s;
fail:
    scram_server_free(s);
    return NULL;
}

static void wipe_keys(scram_server *s)
{
    xmppd_wipe(s->stored_key, sizeof(s->stored_key));
    xmppd_wipe(s->server_key, sizeof(s->server_key));
}

void scram_server_free(scram_server *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_cbs; i++) {
        free(s->cbs[i].type);
        xmppd_wipe(s->cbs[i].data, s->cbs[i].len);
        free(s->cbs[i].data);
    }
    free(s->cbs);
    free(s->gs2_header);
    free(s->user);
    free(s->authzid);
    free(s->client_first_bare);
    free(s->snonce_for_test);
    free(s->ssdp);
    free(s->nonce);
    free(s->server_first);
    wipe_keys(s);
    free(s);
}

int scram_server_set_nonce_for_test(scram_server *s, const char *server_nonce)
{
    if (s == NULL || server_nonce == NULL || s->state > ST_CLIENT_FIRST
        || !nonce_valid(server_nonce, strlen(server_nonce)))
        return -1;
    char *copy = strdup(server_nonce);
    if (copy == NULL)
        return -1;
    free(s->snonce_for_test);
    s->snonce_for_test = copy;
    return 0;
}

int scram_server_set_ssdp(scram_server *s, const char *ssdp_b64)
{
    if (s == NULL || ssdp_b64 == NULL || s->state > ST_CLIENT_FIRST
        || !nonce_valid(ssdp_b64, strlen(ssdp_b64)))
        return -1;
    char *copy = strdup(ssdp_b64);
    if (copy == NULL)
        return -1;
    free(s->ssdp);
    s->ssdp = copy;
    return 0;
}

/* ---- XEP-0474 downgrade protection hash ------------------------------ */

static int cmp_octets(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends the names sorted (i;octet, RFC 4790 §9.3) and joined by 0x1E to
 * the digest. 0 or -1. */
static int digest_sorted(EVP_MD_CTX *ctx, const char *const *names, size_t n)
{
    const char **v = n > 0 ? malloc(n * sizeof(*v)) : NULL;
    if (n > 0 && v == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        v[i] = names[i];
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_octets);
    int ok = 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = (i == 0 || EVP_DigestUpdate(ctx, "\x1e", 1) == 1)
             && EVP_DigestUpdate(ctx, v[i], strlen(v[i])) == 1;
    free(v);
    return ok ? 0 : -1;
}

char *scram_ssdp_hash(enum xmppd_hash h, const char *const *mechs, size_t n_mechs,
                      const char *const *cbs, size_t n_cbs)
{
    const EVP_MD *md = scram_md(h);
    EVP_MD_CTX *ctx = md != NULL ? EVP_MD_CTX_new() : NULL;
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    char *b64 = NULL;
    if (ctx != NULL && EVP_DigestInit_ex(ctx, md, NULL) == 1
        && digest_sorted(ctx, mechs, n_mechs) == 0
        && (cbs == NULL
            || (EVP_DigestUpdate(ctx, "\x1f", 1) == 1 && digest_sorted(ctx, cbs, n_cbs) == 0))
        && EVP_DigestFinal_ex(ctx, out, &len) == 1)
        b64 = xmppd_base64_encode(out, len);
    EVP_MD_CTX_free(ctx);
    return b64;
}

/* ---- step 1: client-first-message ----------------------------------- */

/* gs2-cbind-flag against the mechanism and what the server offered. */
static const char *check_cbind_flag(scram_server *s, const field *f)
{
    field name;
    if (f->len == 1 && f->p[0] == 'n') /* client does not support cb */
        return s->plus ? SASL_NOT_AUTHORIZED : NULL;
    if (f->len == 1 && f->p[0] == 'y') /* client thinks we do not support it */
        return s->plus || s->advertised_plus ? SASL_NOT_AUTHORIZED : NULL;
    if (!attr_is(f, 'p', &name) || !cb_name_valid(&name))
        return SASL_MALFORMED;
    if (!s->plus)
        return SASL_NOT_AUTHORIZED;
    for (size_t i = 0; i < s->n_cbs; i++) {
        if (strlen(s->cbs[i].type) == name.len && memcmp(s->cbs[i].type, name.p, name.len) == 0) {
            s->cb = &s->cbs[i];
            return NULL;
        }
    }
    return SASL_NOT_AUTHORIZED; /* a type this connection does not offer */
}

/* gs2-header = gs2-cbind-flag "," [ authzid ] "," */
static const char *parse_gs2_header(scram_server *s, cursor *c, const char *msg)
{
    field flag, az, v;
    if (!next_field(c, &flag) || !next_field(c, &az) || c->done)
        return SASL_MALFORMED;
    const char *cond = check_cbind_flag(s, &flag);
    if (cond != NULL)
        return cond;
    if (az.len > 0) {
        if (!attr_is(&az, 'a', &v) || (s->authzid = saslname_decode(&v)) == NULL)
            return SASL_MALFORMED;
    }
    s->gs2_len = (size_t)(c->p - msg);
    if ((s->gs2_header = dup_mem(msg, s->gs2_len)) == NULL)
        return SASL_TEMPORARY_FAILURE;
    return NULL;
}

/* client-first-message-bare = [reserved-mext ","] username "," nonce
 * ["," extensions] */
static const char *parse_client_first_bare(scram_server *s, cursor *c)
{
    const char *bare = c->p;
    field f, v;
    if (!next_field(c, &f))
        return SASL_MALFORMED;
    if (attr_is(&f, 'm', &v)) /* mandatory extension we do not know */
        return SASL_MALFORMED;
    if (!attr_is(&f, 'n', &v) || (s->user = saslname_decode(&v)) == NULL)
        return SASL_MALFORMED;
    if (!next_field(c, &f) || !attr_is(&f, 'r', &v) || !nonce_valid(v.p, v.len))
        return SASL_MALFORMED;
    const field cnonce = v;
    while (next_field(c, &f))
        if (!attr_val_valid(&f))
            return SASL_MALFORMED;
    s->client_first_bare = dup_mem(bare, (size_t)(c->end - bare));
    s->nonce = dup_mem(cnonce.p, cnonce.len); /* server part appended in step 2 */
    if (s->client_first_bare == NULL || s->nonce == NULL)
        return SASL_TEMPORARY_FAILURE;
    return NULL;
}

int scram_server_client_first(scram_server *s, const char *msg, size_t len,
                              const char **user_r, const char **authzid_r, const char **cond_r)
{
    const char *cond = SASL_MALFORMED;
    if (s->state == ST_START && msg != NULL && len > 0 && memchr(msg, '\0', len) == NULL) {
        cursor c = { msg, msg + len, false };
        cond = parse_gs2_header(s, &c, msg);
        if (cond == NULL)
            cond = parse_client_first_bare(s, &c);
    }
    if (cond != NULL) {
        s->state = ST_DONE;
        *cond_r = cond;
        return -1;
    }
    s->state = ST_CLIENT_FIRST;
    *user_r = s->user;
    *authzid_r = s->authzid;
    return 0;
}

/* ---- step 2: server-first-message ----------------------------------- */

/* Unknown user: a salt that is stable per username (so probing twice gives
 * the same answer) and random keys no proof can match. */
static int load_fake_credentials(scram_server *s, const unsigned char *fake_secret,
                                 size_t fake_len, unsigned char *salt)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    s->known_user = false;
    if (scram_hmac(EVP_sha256(), fake_secret, fake_len, s->user, strlen(s->user), mac) != 0)
        return -1;
    memcpy(salt, mac, FAKE_SALT_LEN);
    return xmppd_random(s->stored_key, sizeof(s->stored_key)) == 0
                   && xmppd_random(s->server_key, sizeof(s->server_key)) == 0
               ? 0
               : -1;
}

/* The server part of the nonce: base64 of 24 random bytes (or the test
 * override), malloc'd. */
static char *make_server_nonce(const scram_server *s)
{
    if (s->snonce_for_test != NULL)
        return strdup(s->snonce_for_test);
    unsigned char raw[SNONCE_RAW_LEN];
    if (xmppd_random(raw, sizeof(raw)) != 0)
        return NULL;
    return xmppd_base64_encode(raw, sizeof(raw));
}

/* Appends the server nonce to the client's and formats server-first,
 * keeping a copy for AuthMessage. The returned message is the caller's. */
static char *build_server_first(scram_server *s, const char *snonce, const char *salt64,
                                unsigned iterations, size_t *len_r)
{
    size_t n;
    char *nonce = str_printf(&n, "%s%s", s->nonce, snonce);
    if (nonce == NULL)
        return NULL;
    free(s->nonce);
    s->nonce = nonce;
    /* XEP-0474 §5.1: the downgrade protection hash is an optional
     * attribute after the iteration count, signed like the rest. */
    s->server_first = str_printf(&n, "r=%s,s=%s,i=%u%s%s", nonce, salt64, iterations,
                                 s->ssdp ? ",h=" : "", s->ssdp ? s->ssdp : "");
    char *out = s->server_first != NULL ? dup_mem(s->server_first, n) : NULL;
    if (out != NULL)
        *len_r = n;
    return out;
}

char *scram_server_first(scram_server *s, const xmppd_scram_keys *keys,
                         const unsigned char *fake_secret, size_t fake_len, size_t *len_r)
{
    if (s->state != ST_CLIENT_FIRST)
        return NULL;
    s->state = ST_DONE; /* until everything below succeeded */

    unsigned char salt[sizeof(keys->salt)];
    size_t salt_len;
    unsigned iterations;
    bool usable = keys != NULL && keys->hash == s->hash && keys->iterations > 0
                  && keys->salt_len > 0 && keys->salt_len <= sizeof(keys->salt);
    if (usable) {
        s->known_user = true;
        salt_len = keys->salt_len;
        iterations = keys->iterations;
        memcpy(salt, keys->salt, salt_len);
        memcpy(s->stored_key, keys->stored_key, sizeof(s->stored_key));
        memcpy(s->server_key, keys->server_key, sizeof(s->server_key));
    } else {
        salt_len = FAKE_SALT_LEN;
        iterations = FAKE_ITERATIONS;
        if (load_fake_credentials(s, fake_secret, fake_len, salt) != 0)
            return NULL;
    }

    char *snonce = make_server_nonce(s);
    char *salt64 = xmppd_base64_encode(salt, salt_len);
    char *out = NULL;
    if (snonce != NULL && salt64 != NULL)
        out = build_server_first(s, snonce, salt64, iterations, len_r);
    free(snonce);
    free(salt64);
    if (out != NULL)
        s->state = ST_SERVER_FIRST;
    return out;
}

/* ---- step 3: client-final-message ----------------------------------- */

typedef struct client_final {
    field cbind; /* base64 after "c=" */
    field nonce;
    field proof;           /* base64 after "p=" */
    size_t without_proof;  /* length of client-final-message-without-proof */
} client_final;

/* client-final-message = "c=" base64 "," "r=" nonce ["," extensions]
 *                        "," "p=" base64 */
static bool parse_client_final(const char *msg, size_t len, client_final *cf)
{
    const char *last = NULL;
    for (size_t i = len; i-- > 0;) {
        if (msg[i] == ',') {
            last = msg + i;
            break;
        }
    }
    if (last == NULL)
        return false;
    field pf = { last + 1, (size_t)(msg + len - last - 1) }, f;
    if (!attr_is(&pf, 'p', &cf->proof) || cf->proof.len == 0)
        return false;
    cf->without_proof = (size_t)(last - msg);

    cursor c = { msg, last, false };
    if (!next_field(&c, &f) || !attr_is(&f, 'c', &cf->cbind) || cf->cbind.len == 0)
        return false;
    if (!next_field(&c, &f) || !attr_is(&f, 'r', &cf->nonce) || !nonce_valid(cf->nonce.p, cf->nonce.len))
        return false;
    while (next_field(&c, &f))
        if (!attr_val_valid(&f))
            return false;
    return true;
}

/* c= must carry the gs2 header we saw, followed by the channel binding
 * data of the selected type when the client used "p=". */
static bool cbind_matches(const scram_server *s, const unsigned char *got, size_t got_len)
{
    size_t cb_len = s->cb != NULL ? s->cb->len : 0;
    if (got_len != s->gs2_len + cb_len)
        return false;
    bool ok = xmppd_ct_equal(got, s->gs2_header, s->gs2_len);
    if (cb_len > 0)
        ok = xmppd_ct_equal(got + s->gs2_len, s->cb->data, cb_len) && ok;
    return ok;
}

/* ClientKey = proof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) must be
 * StoredKey. Runs the whole computation whatever the proof length. */
static bool proof_matches(const scram_server *s, const char *auth_msg, size_t auth_len,
                          const unsigned char *proof, size_t proof_len)
{
    const EVP_MD *md = scram_md(s->hash);
    size_t hl = xmppd_hash_len(s->hash);
    unsigned char sig[XMPPD_HASH_MAX_LEN], key[XMPPD_HASH_MAX_LEN], h[EVP_MAX_MD_SIZE];
    bool ok = proof_len == hl;
    if (scram_hmac(md, s->stored_key, hl, auth_msg, auth_len, sig) != 0)
        ok = false;
    for (size_t i = 0; i < hl; i++)
        key[i] = (unsigned char)((i < proof_len ? proof[i] : 0) ^ sig[i]);
    if (EVP_Digest(key, hl, h, NULL, md, NULL) != 1)
        ok = false;
    ok = xmppd_ct_equal(h, s->stored_key, hl) && ok;
    xmppd_wipe(key, sizeof(key));
    xmppd_wipe(sig, sizeof(sig));
    return ok;
}

/* "v=" base64(HMAC(ServerKey, AuthMessage)), malloc'd. */
static char *server_final(const scram_server *s, const char *auth_msg, size_t auth_len,
                          size_t *len_r)
{
    unsigned char sig[XMPPD_HASH_MAX_LEN];
    size_t hl = xmppd_hash_len(s->hash);
    if (scram_hmac(scram_md(s->hash), s->server_key, hl, auth_msg, auth_len, sig) != 0)
        return NULL;
    char *b64 = xmppd_base64_encode(sig, hl);
    char *out = b64 != NULL ? str_printf(len_r, "v=%s", b64) : NULL;
    free(b64);
    return out;
}

/* Checks a syntactically valid client-final; the verdict, with *out_r the
 * server-final-message on success. */
static const char *verify_client_final(scram_server *s, const char *msg, const client_final *cf,
                                       char **out_r, size_t *len_r)
{
    unsigned char *cb = NULL, *proof = NULL;
    size_t cb_len, proof_len, auth_len = 0;
    char *auth_msg = NULL;
    const char *cond = SASL_MALFORMED;
    if (xmppd_base64_decode(cf->cbind.p, cf->cbind.len, &cb, &cb_len) != 0
        || xmppd_base64_decode(cf->proof.p, cf->proof.len, &proof, &proof_len) != 0)
        goto out;

    /* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
    size_t bl = strlen(s->client_first_bare), fl = strlen(s->server_first);
    cond = SASL_TEMPORARY_FAILURE;
    auth_msg = malloc(bl + fl + cf->without_proof + 3);
    if (auth_msg == NULL)
        goto out;
    auth_len = (size_t)sprintf(auth_msg, "%s,%s,", s->client_first_bare, s->server_first);
    memcpy(auth_msg + auth_len, msg, cf->without_proof);
    auth_len += cf->without_proof;
    auth_msg[auth_len] = '\0';

    /* Every check runs; the verdict is combined at the end. */
    bool ok = cbind_matches(s, cb, cb_len);
    ok = cf->nonce.len == strlen(s->nonce) && xmppd_ct_equal(cf->nonce.p, s->nonce, cf->nonce.len)
         && ok;
    ok = proof_matches(s, auth_msg, auth_len, proof, proof_len) && ok;
    ok = s->known_user && ok;
    cond = SASL_NOT_AUTHORIZED;
    if (ok) {
        *out_r = server_final(s, auth_msg, auth_len, len_r);
        cond = *out_r != NULL ? NULL : SASL_TEMPORARY_FAILURE;
    }
out:
    free(cb);
    if (proof != NULL)
        xmppd_wipe(proof, proof_len);
    free(proof);
    free(auth_msg);
    return cond;
}

char *scram_server_client_final(scram_server *s, const char *msg, size_t len, size_t *len_r,
                                const char **cond_r)
{
    char *out = NULL;
    client_final cf;
    const char *cond = SASL_MALFORMED;
    if (s->state == ST_SERVER_FIRST && msg != NULL && len > 0 && memchr(msg, '\0', len) == NULL
        && parse_client_final(msg, len, &cf))
        cond = verify_client_final(s, msg, &cf, &out, len_r);
    s->state = ST_DONE;
    wipe_keys(s);
    if (cond != NULL) {
        *cond_r = cond;
        return NULL;
    }
    return out;
}

/* ---- key derivation (RFC 5802 §3, for api/xmppd/crypto.h) ---------- */

/* SASLprep (RFC 4013, stored-string rules) of password into a new malloc'd
 * buffer of *size_r bytes; NULL when prohibited/unassigned characters or
 * bad UTF-8. The caller wipes all *size_r bytes (the tail may still hold
 * input) and frees it. */
static char *saslprep(const char *password, size_t *size_r)
{
    size_t len = strlen(password);
    size_t size = len + 64; /* NFKC and mapping may grow the string */
    for (;;) {
        char *buf = malloc(size);
        if (buf == NULL)
            return NULL;
        memcpy(buf, password, len + 1);
        int rc = stringprep(buf, size, STRINGPREP_NO_UNASSIGNED, stringprep_saslprep);
        if (rc == STRINGPREP_OK) {
            *size_r = size;
            return buf;
        }
        xmppd_wipe(buf, size);
        free(buf);
        if (rc != STRINGPREP_TOO_SMALL_BUFFER || size > SIZE_MAX / 2)
            return NULL;
        size *= 2;
    }
}

XMPPD_EXPORT int xmppd_scram_derive(enum xmppd_hash h, const char *password,
                                    const unsigned char *salt, size_t salt_len,
                                    unsigned iterations, xmppd_scram_keys *out)
{
    const EVP_MD *md = scram_md(h);
    size_t hl = xmppd_hash_len(h);
    if (md == NULL || password == NULL || out == NULL || salt_len > sizeof(out->salt)
        || (salt_len > 0 && salt == NULL) || iterations == 0 || iterations > INT_MAX)
        return -1;
    size_t prepped_size;
    char *prepped = saslprep(password, &prepped_size);
    if (prepped == NULL)
        return -1;

    unsigned char salted[XMPPD_HASH_MAX_LEN], client_key[XMPPD_HASH_MAX_LEN];
    size_t plen = strlen(prepped);
    int ok = plen <= INT_MAX
             && PKCS5_PBKDF2_HMAC(prepped, (int)plen, salt, (int)salt_len, (int)iterations, md,
                                  (int)hl, salted) == 1;
    xmppd_wipe(prepped, prepped_size);
    free(prepped);

    memset(out, 0, sizeof(*out));
    ok = ok && scram_hmac(md, salted, hl, "Client Key", 10, client_key) == 0
         && EVP_Digest(client_key, hl, out->stored_key, NULL, md, NULL) == 1
         && scram_hmac(md, salted, hl, "Server Key", 10, out->server_key) == 0;
    xmppd_wipe(salted, sizeof(salted));
    xmppd_wipe(client_key, sizeof(client_key));
    if (!ok) {
        xmppd_wipe(out, sizeof(*out));
        return -1;
    }
    out->hash = h;
    out->iterations = iterations;
    out->salt_len = salt_len;
    if (salt_len > 0)
        memcpy(out->salt, salt, salt_len);
    return 0;
}
