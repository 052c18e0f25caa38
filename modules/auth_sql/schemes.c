/* Password schemes of existing user databases: recognising, verifying,
 * deriving SCRAM keys, generating. See schemes.h. */
#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "schemes.h"

#define AS_MAX_ITERATIONS 100000000UL /* a row claiming more is malformed */

/* ---- recognising ---- */

typedef struct as_name {
    const char *name;
    enum as_kind kind;
    bool weak;
    enum xmppd_hash hash;
} as_name;

/* Names for {SCHEME} prefixes, scheme columns and default_scheme
 * (case-insensitive; Dovecot's names plus the usual aliases). */
static const as_name as_names[] = {
    { "PLAIN", AS_PLAIN, false, 0 },
    { "CLEARTEXT", AS_PLAIN, false, 0 },
    { "CLEAR", AS_PLAIN, false, 0 },
    { "CRYPT", AS_CRYPT, false, 0 },
    { "BLF-CRYPT", AS_CRYPT, false, 0 },
    { "BCRYPT", AS_CRYPT, false, 0 },
    { "SHA256-CRYPT", AS_CRYPT, false, 0 },
    { "SHA512-CRYPT", AS_CRYPT, false, 0 },
    { "YESCRYPT", AS_CRYPT, false, 0 },
    { "SCRYPT", AS_CRYPT, false, 0 },
    { "MD5-CRYPT", AS_CRYPT, true, 0 },
    { "DES-CRYPT", AS_CRYPT, true, 0 },
    { "PBKDF2", AS_DOVECOT_PBKDF2, false, XMPPD_HASH_SHA1 },
    { "PBKDF2_SHA256", AS_DJANGO, false, XMPPD_HASH_SHA256 },
    { "PBKDF2_SHA1", AS_DJANGO, false, XMPPD_HASH_SHA1 },
    { "SCRAM-SHA-1", AS_SCRAM, false, XMPPD_HASH_SHA1 },
    { "SCRAM-SHA-256", AS_SCRAM, false, XMPPD_HASH_SHA256 },
    { "SCRAM-SHA-512", AS_SCRAM, false, XMPPD_HASH_SHA512 },
    /* known, refused: unsalted or fast digests, and what libcrypt lacks */
    { "MD5", AS_UNSUPPORTED, true, 0 },
    { "PLAIN-MD5", AS_UNSUPPORTED, true, 0 },
    { "LDAP-MD5", AS_UNSUPPORTED, true, 0 },
    { "SMD5", AS_UNSUPPORTED, true, 0 },
    { "SHA", AS_UNSUPPORTED, true, 0 },
    { "SHA1", AS_UNSUPPORTED, true, 0 },
    { "SSHA", AS_UNSUPPORTED, true, 0 },
    { "SHA256", AS_UNSUPPORTED, true, 0 },
    { "SSHA256", AS_UNSUPPORTED, true, 0 },
    { "SHA512", AS_UNSUPPORTED, true, 0 },
    { "SSHA512", AS_UNSUPPORTED, true, 0 },
    { "CRAM-MD5", AS_UNSUPPORTED, true, 0 },
    { "DIGEST-MD5", AS_UNSUPPORTED, true, 0 },
    { "ARGON2I", AS_UNSUPPORTED, false, 0 },
    { "ARGON2ID", AS_UNSUPPORTED, false, 0 },
};

static const as_name *as_lookup(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof as_names / sizeof as_names[0]; i++)
        if (strlen(as_names[i].name) == len && strncasecmp(as_names[i].name, name, len) == 0)
            return &as_names[i];
    return NULL;
}

bool as_scheme_known(const char *name)
{
    return name && as_lookup(name, strlen(name)) != NULL;
}

static bool as_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* Recognises a value by its shape. */
static bool as_detect(const char *v, as_hash *out)
{
    static const struct { const char *prefix, *name; bool weak; } crypts[] = {
        { "$2a$", "BLF-CRYPT", false }, { "$2b$", "BLF-CRYPT", false }, { "$2y$", "BLF-CRYPT", false },
        { "$5$", "SHA256-CRYPT", false }, { "$6$", "SHA512-CRYPT", false },
        { "$y$", "YESCRYPT", false }, { "$gy$", "GOST-YESCRYPT", false }, { "$7$", "SCRYPT", false },
        { "$1$", "MD5-CRYPT", true },
    };
    for (size_t i = 0; i < sizeof crypts / sizeof crypts[0]; i++) {
        if (as_prefix(v, crypts[i].prefix)) {
            *out = (as_hash){ AS_CRYPT, crypts[i].name, crypts[i].weak, 0, v };
            return true;
        }
    }
    if (as_prefix(v, "pbkdf2_sha256$")) {
        *out = (as_hash){ AS_DJANGO, "PBKDF2_SHA256", false, XMPPD_HASH_SHA256, v };
        return true;
    }
    if (as_prefix(v, "pbkdf2_sha1$")) {
        *out = (as_hash){ AS_DJANGO, "PBKDF2_SHA1", false, XMPPD_HASH_SHA1, v };
        return true;
    }
    if (as_prefix(v, "$argon2")) {
        *out = (as_hash){ AS_UNSUPPORTED, "ARGON2", false, 0, v };
        return true;
    }
    return false;
}

static void as_from_name(const as_name *n, const char *v, as_hash *out)
{
    *out = (as_hash){ n->kind, n->name, n->weak, n->hash, v };
    /* a generic CRYPT: the value tells which (a 13-character DES hash is weak) */
    if (n->kind == AS_CRYPT && (strcasecmp(n->name, "CRYPT") == 0)) {
        as_hash d;
        if (as_detect(v, &d) && d.kind == AS_CRYPT)
            *out = d;
        else if (strlen(v) == 13)
            *out = (as_hash){ AS_CRYPT, "DES-CRYPT", true, 0, v };
    }
}

void as_parse(const char *stored, const char *scheme, const char *def, as_hash *out)
{
    const char *v = stored ? stored : "";
    const as_name *n;
    *out = (as_hash){ AS_UNKNOWN, "unknown", false, 0, v };
    if (v[0] == '{') {
        const char *end = strchr(v, '}');
        if (end && (n = as_lookup(v + 1, (size_t)(end - v - 1)))) {
            as_from_name(n, end + 1, out);
            return;
        }
        if (end) { /* an unknown {NAME}: refuse rather than guess */
            *out = (as_hash){ AS_UNSUPPORTED, "unknown {SCHEME} prefix", false, 0, end + 1 };
            return;
        }
    }
    if (scheme && *scheme) {
        if ((n = as_lookup(scheme, strlen(scheme))))
            as_from_name(n, v, out);
        else
            *out = (as_hash){ AS_UNSUPPORTED, "unknown scheme column value", false, 0, v };
        return;
    }
    if (as_detect(v, out))
        return;
    if (def && (n = as_lookup(def, strlen(def))))
        as_from_name(n, v, out);
}

/* ---- SCRAM helpers ---- */

static const EVP_MD *as_md(enum xmppd_hash h)
{
    switch (h) {
    case XMPPD_HASH_SHA1: return EVP_sha1();
    case XMPPD_HASH_SHA256: return EVP_sha256();
    case XMPPD_HASH_SHA512: return EVP_sha512();
    }
    return NULL;
}

/* StoredKey and ServerKey from SaltedPassword (RFC 5802 §3). */
static int as_keys_from_salted(enum xmppd_hash h, const unsigned char *sp, size_t splen,
                               const unsigned char *salt, size_t salt_len, unsigned iterations,
                               xmppd_scram_keys *out)
{
    const EVP_MD *md = as_md(h);
    unsigned char ck[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    size_t hl = xmppd_hash_len(h);
    if (!md || salt_len > sizeof out->salt || splen != hl)
        return -1;
    memset(out, 0, sizeof *out);
    out->hash = h;
    out->iterations = iterations;
    out->salt_len = salt_len;
    memcpy(out->salt, salt, salt_len);
    if (!HMAC(md, sp, (int)splen, (const unsigned char *)"Client Key", 10, ck, &len) ||
        EVP_Digest(ck, len, out->stored_key, NULL, md, NULL) != 1 ||
        !HMAC(md, sp, (int)splen, (const unsigned char *)"Server Key", 10, out->server_key, &len)) {
        xmppd_wipe(ck, sizeof ck);
        xmppd_wipe(out, sizeof *out);
        return -1;
    }
    xmppd_wipe(ck, sizeof ck);
    return 0;
}

static int as_b64(const char *s, size_t n, unsigned char *out, size_t max, size_t *len_r)
{
    unsigned char *buf;
    size_t len;
    if (xmppd_base64_decode(s, n, &buf, &len) != 0)
        return -1;
    int ok = len > 0 && len <= max;
    if (ok) {
        memcpy(out, buf, len);
        *len_r = len;
    }
    xmppd_wipe(buf, len);
    free(buf);
    return ok ? 0 : -1;
}

static int as_parse_uint(const char *s, size_t n, unsigned long max, unsigned *out)
{
    if (n == 0 || n > 10)
        return -1;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v == 0 || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* Splits s at sep into at most max fields (pointers and lengths into s).
 * The number of fields. */
static int as_split(const char *s, char sep, const char **f, size_t *fl, int max)
{
    int n = 0;
    for (;;) {
        const char *e = strchr(s, sep);
        if (n == max)
            return max + 1;
        f[n] = s;
        fl[n] = e ? (size_t)(e - s) : strlen(s);
        n++;
        if (!e)
            return n;
        s = e + 1;
    }
}

int as_scram_parse(const char *s, enum xmppd_hash h, xmppd_scram_keys *out)
{
    const char *f[4];
    size_t fl[4], len;
    size_t hl = xmppd_hash_len(h);
    if (!s)
        return -1;
    if (s[0] == '{') {
        const char *end = strchr(s, '}');
        const as_name *n = end ? as_lookup(s + 1, (size_t)(end - s - 1)) : NULL;
        if (!n || n->kind != AS_SCRAM || n->hash != h)
            return -1;
        s = end + 1;
    }
    memset(out, 0, sizeof *out);
    out->hash = h;
    if (as_split(s, ',', f, fl, 4) != 4 ||
        as_parse_uint(f[0], fl[0], AS_MAX_ITERATIONS, &out->iterations) != 0 ||
        as_b64(f[1], fl[1], out->salt, sizeof out->salt, &out->salt_len) != 0 ||
        as_b64(f[2], fl[2], out->stored_key, hl, &len) != 0 || len != hl ||
        as_b64(f[3], fl[3], out->server_key, hl, &len) != 0 || len != hl) {
        xmppd_wipe(out, sizeof *out);
        return -1;
    }
    return 0;
}

char *as_scram_format(const xmppd_scram_keys *k)
{
    size_t hl = xmppd_hash_len(k->hash);
    char *salt = xmppd_base64_encode(k->salt, k->salt_len);
    char *sk = xmppd_base64_encode(k->stored_key, hl);
    char *vk = xmppd_base64_encode(k->server_key, hl);
    char *out = NULL;
    if (salt && sk && vk) {
        size_t n = strlen(salt) + strlen(sk) + strlen(vk) + 16;
        if ((out = malloc(n)))
            snprintf(out, n, "%u,%s,%s,%s", k->iterations, salt, sk, vk);
    }
    free(salt);
    free(sk);
    free(vk);
    return out;
}

/* ---- PBKDF2 formats ---- */

/* Django: ALGO$iterations$salt$base64(hash). Fields into f/fl. */
static int as_django_fields(const char *v, const char **f, size_t *fl, unsigned *iter)
{
    if (as_split(v, '$', f, fl, 4) != 4 || fl[2] == 0 ||
        as_parse_uint(f[1], fl[1], AS_MAX_ITERATIONS, iter) != 0)
        return -1;
    return 0;
}

/* Dovecot {PBKDF2}: $1$salt$rounds$hex, PBKDF2-HMAC-SHA1. */
static int as_dovecot_fields(const char *v, const char **f, size_t *fl, unsigned *rounds)
{
    if (v[0] != '$' || as_split(v + 1, '$', f, fl, 4) != 4 || fl[0] != 1 || f[0][0] != '1' ||
        fl[1] == 0 || as_parse_uint(f[2], fl[2], AS_MAX_ITERATIONS, rounds) != 0 || fl[3] != 40)
        return -1;
    return 0;
}

static int as_unhex(const char *s, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[2 * i + (size_t)k];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= (unsigned)(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                v |= (unsigned)(c - 'A' + 10);
            else
                return -1;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* The stored PBKDF2 output of a Django or Dovecot value, its salt and
 * iteration count. 0, or -1 when malformed. */
static int as_pbkdf2_parts(const as_hash *h, unsigned char *dk, size_t *dklen, const char **salt,
                           size_t *salt_len, unsigned *iter)
{
    const char *f[4];
    size_t fl[4];
    if (h->kind == AS_DJANGO) {
        if (as_django_fields(h->value, f, fl, iter) != 0 ||
            as_b64(f[3], fl[3], dk, EVP_MAX_MD_SIZE, dklen) != 0)
            return -1;
        *salt = f[2];
        *salt_len = fl[2];
        return 0;
    }
    if (as_dovecot_fields(h->value, f, fl, iter) != 0 || as_unhex(f[3], fl[3], dk) != 0)
        return -1;
    *dklen = fl[3] / 2;
    *salt = f[1];
    *salt_len = fl[1];
    return 0;
}

int as_scram_from_hash(const as_hash *h, enum xmppd_hash want, xmppd_scram_keys *out)
{
    if (h->kind == AS_SCRAM)
        return h->hash == want ? as_scram_parse(h->value, want, out) : -1;
    if ((h->kind != AS_DJANGO && h->kind != AS_DOVECOT_PBKDF2) || h->hash != want)
        return -1;
    unsigned char dk[EVP_MAX_MD_SIZE];
    size_t dklen, salt_len;
    const char *salt;
    unsigned iter;
    int rc = -1;
    if (as_pbkdf2_parts(h, dk, &dklen, &salt, &salt_len, &iter) == 0)
        rc = as_keys_from_salted(want, dk, dklen, (const unsigned char *)salt, salt_len, iter, out);
    xmppd_wipe(dk, sizeof dk);
    return rc;
}

/* ---- verifying (worker) ---- */

static int as_verify_crypt(const char *stored, const char *password)
{
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (!cd)
        return -1;
    const char *out = crypt_rn(password, stored, cd, (int)sizeof *cd);
    int rc;
    if (!out || out[0] == '*')
        rc = -1; /* malformed setting, or a method libcrypt does not have */
    else
        rc = strlen(out) == strlen(stored) && xmppd_ct_equal(out, stored, strlen(stored)) ? 1 : 0;
    xmppd_wipe(cd, sizeof *cd);
    free(cd);
    return rc;
}

static int as_verify_pbkdf2(const as_hash *h, const char *password)
{
    unsigned char dk[EVP_MAX_MD_SIZE], got[EVP_MAX_MD_SIZE];
    size_t dklen, salt_len;
    const char *salt;
    unsigned iter;
    int rc = -1;
    if (as_pbkdf2_parts(h, dk, &dklen, &salt, &salt_len, &iter) == 0 &&
        PKCS5_PBKDF2_HMAC(password, (int)strlen(password), (const unsigned char *)salt, (int)salt_len,
                          (int)iter, as_md(h->hash), (int)dklen, got) == 1)
        rc = xmppd_ct_equal(dk, got, dklen) ? 1 : 0;
    xmppd_wipe(dk, sizeof dk);
    xmppd_wipe(got, sizeof got);
    return rc;
}

/* SCRAM keys verify a password by deriving them again (with SASLprep). */
static int as_verify_scram(const as_hash *h, const char *password)
{
    xmppd_scram_keys k, got;
    int rc = -1;
    if (as_scram_parse(h->value, h->hash, &k) == 0) {
        size_t hl = xmppd_hash_len(h->hash);
        rc = 0;
        if (xmppd_scram_derive(h->hash, password, k.salt, k.salt_len, k.iterations, &got) == 0) {
            bool a = xmppd_ct_equal(got.stored_key, k.stored_key, hl);
            bool b = xmppd_ct_equal(got.server_key, k.server_key, hl);
            rc = a && b;
        }
    }
    xmppd_wipe(&k, sizeof k);
    xmppd_wipe(&got, sizeof got);
    return rc;
}

/* Plaintext: compare digests, so the time does not depend on where the
 * strings differ nor on the stored length. */
static int as_verify_plain(const char *stored, const char *password)
{
    unsigned char a[32], b[32];
    if (EVP_Digest(stored, strlen(stored), a, NULL, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(password, strlen(password), b, NULL, EVP_sha256(), NULL) != 1)
        return -1;
    return xmppd_ct_equal(a, b, sizeof a) ? 1 : 0;
}

int as_verify(const as_hash *h, const char *password)
{
    switch (h->kind) {
    case AS_PLAIN: return as_verify_plain(h->value, password);
    case AS_CRYPT: return as_verify_crypt(h->value, password);
    case AS_DJANGO:
    case AS_DOVECOT_PBKDF2: return as_verify_pbkdf2(h, password);
    case AS_SCRAM: return as_verify_scram(h, password);
    case AS_UNKNOWN:
    case AS_UNSUPPORTED: return -1;
    }
    return -1;
}

/* ---- generating (worker) ---- */

static char *as_crypt_new(const char *prefix, const char *password)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd = calloc(1, sizeof *cd);
    char *out = NULL;
    if (cd && crypt_gensalt_rn(prefix, 0, NULL, 0, setting, (int)sizeof setting)) {
        const char *h = crypt_rn(password, setting, cd, (int)sizeof *cd);
        if (h && h[0] != '*')
            out = strdup(h);
    }
    if (cd) {
        xmppd_wipe(cd, sizeof *cd);
        free(cd);
    }
    return out;
}

static char *as_django_new(const char *password, unsigned iterations)
{
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char rnd[22], dk[32];
    char salt[sizeof rnd + 1];
    if (xmppd_random(rnd, sizeof rnd) != 0)
        return NULL;
    for (size_t i = 0; i < sizeof rnd; i++)
        salt[i] = alnum[rnd[i] % (sizeof alnum - 1)];
    salt[sizeof rnd] = '\0';
    if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), (const unsigned char *)salt, (int)strlen(salt),
                          (int)iterations, EVP_sha256(), (int)sizeof dk, dk) != 1)
        return NULL;
    char *b64 = xmppd_base64_encode(dk, sizeof dk);
    xmppd_wipe(dk, sizeof dk);
    if (!b64)
        return NULL;
    size_t n = strlen(b64) + strlen(salt) + 40;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "pbkdf2_sha256$%u$%s$%s", iterations, salt, b64);
    free(b64);
    return out;
}

char *as_hash_new(const char *scheme, const char *password, unsigned iterations)
{
    if (strcmp(scheme, "bcrypt") == 0)
        return as_crypt_new("$2b$", password);
    if (strcmp(scheme, "sha512-crypt") == 0)
        return as_crypt_new("$6$", password);
    if (strcmp(scheme, "yescrypt") == 0)
        return as_crypt_new("$y$", password);
    if (strcmp(scheme, "pbkdf2_sha256") == 0)
        return as_django_new(password, iterations);
    errno = EINVAL;
    return NULL;
}
