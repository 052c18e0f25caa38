/* SASL mechanisms: SCRAM (RFC 5802, RFC 7677, channel binding RFC 5929 /
 * RFC 9266) with XEP-0474 downgrade protection, PLAIN (RFC 4616), the HT
 * mechanisms of XEP-0484 FAST (draft-schmaus-kitten-sasl-ht), and the
 * crypto helpers beneath them (base64 RFC 4648, SASLprep RFC 4013). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sasl/sasl.h"
#include "xmppd/crypto.h"

static const unsigned char FAKE_SECRET[] = "per-server fake-salt secret";

/* ---- helpers -------------------------------------------------------- */

static const EVP_MD *md_of(enum xmppd_hash h)
{
    return h == XMPPD_HASH_SHA1 ? EVP_sha1() : h == XMPPD_HASH_SHA256 ? EVP_sha256() : EVP_sha512();
}

static unsigned char *b64dec(const char *s, size_t *len_r)
{
    unsigned char *out;
    assert_int_equal(xmppd_base64_decode(s, strlen(s), &out, len_r), 0);
    return out;
}

static xmppd_scram_keys derive(enum xmppd_hash h, const char *password, const char *salt_b64,
                               unsigned iterations)
{
    xmppd_scram_keys k;
    size_t salt_len;
    unsigned char *salt = b64dec(salt_b64, &salt_len);
    assert_int_equal(xmppd_scram_derive(h, password, salt, salt_len, iterations, &k), 0);
    free(salt);
    return k;
}

/* Value of attribute k in a SCRAM message (malloc'd), or NULL. */
static char *attr(const char *msg, char k)
{
    for (const char *p = msg; p != NULL; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        if (p[0] == k && p[1] == '=') {
            const char *end = strchr(p, ',');
            size_t n = end ? (size_t)(end - p - 2) : strlen(p + 2);
            char *v = malloc(n + 1);
            memcpy(v, p + 2, n);
            v[n] = '\0';
            return v;
        }
    }
    return NULL;
}

static char *cat(const char *a, const char *b, const char *c, const char *d, const char *e)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + strlen(d) + strlen(e) + 1;
    char *s = malloc(n);
    snprintf(s, n, "%s%s%s%s%s", a, b, c, d, e);
    return s;
}

/* What the client side of the test sends or tampers with. */
typedef struct client_opts {
    const char *password;
    const unsigned char *cb_data; /* appended to the gs2 header in c= */
    size_t cb_len;
    const char *c_override; /* replaces the c= value */
    const char *r_suffix;   /* appended to the nonce in client-final */
} client_opts;

/* A test SCRAM client (RFC 5802 §3), independent of xmppd_scram_derive:
 * from server-first and the client-first, builds client-final, and stores
 * the expected server signature in sig_b64_r. */
static char *client_final_for(enum xmppd_hash h, const char *client_first,
                              const char *server_first, const client_opts *o, char **sig_b64_r)
{
    const EVP_MD *md = md_of(h);
    size_t hl = xmppd_hash_len(h);
    char *nonce = attr(server_first, 'r'), *salt_b64 = attr(server_first, 's');
    char *iter = attr(server_first, 'i');
    assert_non_null(nonce);
    assert_non_null(salt_b64);
    assert_non_null(iter);
    size_t salt_len;
    unsigned char *salt = b64dec(salt_b64, &salt_len);

    unsigned char salted[64], ck[64], sk[64], stored[64], csig[64], ssig[64], proof[64];
    unsigned int l;
    assert_int_equal(PKCS5_PBKDF2_HMAC(o->password, (int)strlen(o->password), salt, (int)salt_len,
                                       atoi(iter), md, (int)hl, salted), 1);
    HMAC(md, salted, (int)hl, (const unsigned char *)"Client Key", 10, ck, &l);
    HMAC(md, salted, (int)hl, (const unsigned char *)"Server Key", 10, sk, &l);
    EVP_Digest(ck, hl, stored, NULL, md, NULL);

    /* gs2 header: client-first up to and including the second comma */
    const char *second = strchr(strchr(client_first, ',') + 1, ',');
    size_t gs2_len = (size_t)(second - client_first + 1);
    unsigned char cbind[512];
    memcpy(cbind, client_first, gs2_len);
    if (o->cb_len > 0)
        memcpy(cbind + gs2_len, o->cb_data, o->cb_len);
    char *c_b64 = xmppd_base64_encode(cbind, gs2_len + o->cb_len);

    char *without_proof = cat("c=", o->c_override ? o->c_override : c_b64, ",r=", nonce,
                              o->r_suffix ? o->r_suffix : "");
    char *auth = cat(client_first + gs2_len, ",", server_first, ",", without_proof);
    HMAC(md, stored, (int)hl, (const unsigned char *)auth, strlen(auth), csig, &l);
    HMAC(md, sk, (int)hl, (const unsigned char *)auth, strlen(auth), ssig, &l);
    for (size_t i = 0; i < hl; i++)
        proof[i] = ck[i] ^ csig[i];
    char *proof_b64 = xmppd_base64_encode(proof, hl);
    char *final = cat(without_proof, ",p=", proof_b64, "", "");
    *sig_b64_r = xmppd_base64_encode(ssig, hl);

    free(nonce);
    free(salt_b64);
    free(iter);
    free(salt);
    free(c_b64);
    free(without_proof);
    free(auth);
    free(proof_b64);
    return final;
}

/* Runs a whole exchange; NULL on success (server-final checked against
 * the client's expectation), else the failure condition. */
static const char *exchange(scram_server *s, enum xmppd_hash h, const char *client_first,
                            const xmppd_scram_keys *keys, const client_opts *o)
{
    const char *user, *authzid, *cond = NULL;
    size_t len;
    if (scram_server_client_first(s, client_first, strlen(client_first), &user, &authzid, &cond) != 0)
        return cond;
    char *sf = scram_server_first(s, keys, FAKE_SECRET, sizeof(FAKE_SECRET), &len);
    assert_non_null(sf);
    assert_int_equal(len, strlen(sf));
    char *sig;
    char *cf = client_final_for(h, client_first, sf, o, &sig);
    char *v = scram_server_client_final(s, cf, strlen(cf), &len, &cond);
    if (v != NULL) {
        assert_int_equal(strncmp(v, "v=", 2), 0);
        assert_string_equal(v + 2, sig);
        cond = NULL;
    } else {
        assert_non_null(cond);
    }
    free(v);
    free(sf);
    free(sig);
    free(cf);
    return cond;
}

/* ---- RFC test vectors ----------------------------------------------- */

typedef struct vector {
    enum xmppd_hash hash;
    const char *salt_b64, *client_first, *snonce, *server_first, *client_final, *server_final;
} vector;

static void run_vector(const vector *v)
{
    xmppd_scram_keys keys = derive(v->hash, "pencil", v->salt_b64, 4096);
    scram_server *s = scram_server_new(v->hash, false, false, NULL, 0);
    assert_non_null(s);
    const char *user, *authzid, *cond = NULL;
    assert_int_equal(scram_server_client_first(s, v->client_first, strlen(v->client_first), &user,
                                               &authzid, &cond), 0);
    assert_string_equal(user, "user");
    assert_null(authzid);
    assert_int_equal(scram_server_set_nonce_for_test(s, v->snonce), 0);

    size_t len;
    char *sf = scram_server_first(s, &keys, FAKE_SECRET, sizeof(FAKE_SECRET), &len);
    assert_non_null(sf);
    assert_string_equal(sf, v->server_first);
    assert_int_equal(len, strlen(v->server_first));

    char *sfin = scram_server_client_final(s, v->client_final, strlen(v->client_final), &len, &cond);
    assert_non_null(sfin);
    assert_string_equal(sfin, v->server_final);
    assert_int_equal(len, strlen(v->server_final));
    free(sf);
    free(sfin);
    scram_server_free(s);
}

static void test_rfc5802_5_sha1_vector(void **state)
{
    (void)state;
    const vector v = {
        XMPPD_HASH_SHA1,
        "QSXCR+Q6sek8bf92",
        "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        "3rfcNHYJY1ZVvWVs7j",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    };
    run_vector(&v);
}

static void test_rfc7677_3_sha256_vector(void **state)
{
    (void)state;
    const vector v = {
        XMPPD_HASH_SHA256,
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    };
    run_vector(&v);
}

/* The SHA-1 vector with a proof flipped in one bit: not-authorized. */
static void test_rfc5802_5_tampered_proof(void **state)
{
    (void)state;
    xmppd_scram_keys keys = derive(XMPPD_HASH_SHA1, "pencil", "QSXCR+Q6sek8bf92", 4096);
    scram_server *s = scram_server_new(XMPPD_HASH_SHA1, false, false, NULL, 0);
    const char *user, *authzid, *cond = NULL;
    const char *cf1 = "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL";
    assert_int_equal(scram_server_client_first(s, cf1, strlen(cf1), &user, &authzid, &cond), 0);
    scram_server_set_nonce_for_test(s, "3rfcNHYJY1ZVvWVs7j");
    size_t len;
    free(scram_server_first(s, &keys, FAKE_SECRET, sizeof(FAKE_SECRET), &len));
    const char *cf2 = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=w0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
    assert_null(scram_server_client_final(s, cf2, strlen(cf2), &len, &cond));
    assert_string_equal(cond, SASL_NOT_AUTHORIZED);
    /* The exchange is over: nothing more is accepted. */
    assert_null(scram_server_client_final(s, cf2, strlen(cf2), &len, &cond));
    scram_server_free(s);
}

/* ---- RFC 5802 §5 exchange properties --------------------------------- */

static void test_rfc5802_5_random_nonce_and_success(void **state)
{
    (void)state;
    for (int h = 0; h < XMPPD_HASH_COUNT; h++) {
        xmppd_scram_keys keys = derive((enum xmppd_hash)h, "pencil", "QSXCR+Q6sek8bf92", 4096);
        scram_server *s = scram_server_new((enum xmppd_hash)h, false, false, NULL, 0);
        client_opts o = { .password = "pencil" };
        assert_null(exchange(s, (enum xmppd_hash)h, "n,,n=user,r=abcdefgh", &keys, &o));
        scram_server_free(s);
    }
}

/* Server nonce: client nonce + base64 of 24 random bytes (32 chars). */
static void test_rfc5802_5_1_server_nonce(void **state)
{
    (void)state;
    xmppd_scram_keys keys = derive(XMPPD_HASH_SHA256, "pencil", "QSXCR+Q6sek8bf92", 4096);
    scram_server *s = scram_server_new(XMPPD_HASH_SHA256, false, false, NULL, 0);
    const char *user, *authzid, *cond;
    const char *cf1 = "n,,n=user,r=clientnonce";
    assert_int_equal(scram_server_client_first(s, cf1, strlen(cf1), &user, &authzid, &cond), 0);
    size_t len;
    char *sf = scram_server_first(s, &keys, NULL, 0, &len);
    char *r = attr(sf, 'r');
    assert_int_equal(strncmp(r, "clientnonce", 11), 0);
    assert_int_equal(strlen(r), 11 + 32);
    free(r);
    free(sf);
    scram_server_free(s);
}

static void test_rfc5802_5_wrong_password(void **state)
{
    (void)state;
    xmppd_scram_keys keys = derive(XMPPD_HASH_SHA256, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096);
    scram_server *s = scram_server_new(XMPPD_HASH_SHA256, false, false, NULL, 0);
    client_opts o = { .password = "pencil2" };
    assert_string_equal(exchange(s, XMPPD_HASH_SHA256, "n,,n=user,r=abc", &keys, &o),
                        SASL_NOT_AUTHORIZED);
    scram_server_free(s);
}

static void test_rfc5802_5_1_nonce_mismatch(void **state)
{
    (void)state;
    xmppd_scram_keys keys = derive(XMPPD_HASH_SHA256, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096);
    scram_server *s = scram_server_new(XMPPD_HASH_SHA256, false, false, NULL, 0);
    client_opts o = { .password = "pencil", .r_suffix = "x" };
    assert_string_equal(exchange(s, XMPPD_HASH_SHA256, "n,,n=user,r=abc", &keys, &o),
                        SASL_NOT_AUTHORIZED);
    scram_server_free(s);
}

/* Unknown user (keys NULL): a stable per-user fake salt, i=10000 (auth_internal's default), and
 * failure only at the final step, even with a plausible proof. */
static void test_rfc5802_9_unknown_user_fails_at_final(void **state)
{
    (void)state;
    char *salts[3];
    const char *users[3] = { "n,,n=ghost,r=abc", "n,,n=ghost,r=def", "n,,n=other,r=abc" };
    for (int i = 0; i < 3; i++) {
        scram_server *s = scram_server_new(XMPPD_HASH_SHA256, false, false, NULL, 0);
        const char *user, *authzid, *cond = NULL;
        assert_int_equal(scram_server_client_first(s, users[i], strlen(users[i]), &user, &authzid,
                                                   &cond), 0);
        size_t len;
        char *sf = scram_server_first(s, NULL, FAKE_SECRET, sizeof(FAKE_SECRET), &len);
        assert_non_null(sf);
        char *it = attr(sf, 'i');
        assert_string_equal(it, "10000");
        free(it);
        salts[i] = attr(sf, 's');
        size_t salt_len;
        free(b64dec(salts[i], &salt_len));
        assert_int_equal(salt_len, 16);
        char *sig;
        client_opts o = { .password = "pencil" };
        char *cf = client_final_for(XMPPD_HASH_SHA256, users[i], sf, &o, &sig);
        assert_null(scram_server_client_final(s, cf, strlen(cf), &len, &cond));
        assert_string_equal(cond, SASL_NOT_AUTHORIZED);
        free(cf);
        free(sig);
        free(sf);
        scram_server_free(s);
    }
    assert_string_equal(salts[0], salts[1]);
    assert_string_not_equal(salts[0], salts[2]);
    for (int i = 0; i < 3; i++)
        free(salts[i]);
}

/* authzid and username: "=2C" and "=3D" decoding (RFC 5802 §5.1). */
static void test_rfc5802_5_1_saslname_decoding(void **state)
{
    (void)state;
    scram_server *s = scram_server_new(XMPPD_HASH_SHA1, false, false, NULL, 0);
    const char *user, *authzid, *cond = NULL;
    const char *m = "n,a=ad=2Cmin=3D,n=us=3Der=2C,r=abc";
    assert_int_equal(scram_server_client_first(s, m, strlen(m), &user, &authzid, &cond), 0);
    assert_string_equal(user, "us=er,");
    assert_string_equal(authzid, "ad,min=");
    scram_server_free(s);

    /* the authzid is part of the gs2 header the client must echo in c= */
    xmppd_scram_keys keys = derive(XMPPD_HASH_SHA1, "pencil", "QSXCR+Q6sek8bf92", 4096);
    s = scram_server_new(XMPPD_HASH_SHA1, false, false, NULL, 0);
    client_opts o = { .password = "pencil" };
    assert_null(exchange(s, XMPPD_HASH_SHA1, "n,a=juliet,n=user,r=abc,x=ext", &keys, &o));
    scram_server_free(s);
}

static void test_rfc5802_7_malformed_client_first(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "n",
        "n,",
        "n,,",
        "x,,n=user,r=abc",
        "N,,n=user,r=abc",
        "n,,n=,r=abc",
        "n,,n=us=er,r=abc",
        "n,,n=us=2c,r=abc",  /* lower-case hex is not a saslname escape */
        "n,,n=user",
        "n,,n=user,r=",
        "n,,n=user,r=a b",   /* space is not printable (RFC 5802 §7) */
        "n,,m=ext,n=user,r=abc", /* reserved-mext: must fail */
        "n,,r=abc,n=user",
        "n,a=,n=user,r=abc",
        "n,b=x,n=user,r=abc",
        "n,,n=user,r=abc,",
        "n,,n=user,r=abc,x",
        "n,,n=user,r=abc,1=x",
        "n,,user,r=abc",
        "p=,,n=user,r=abc",
        "p=tls_exporter,,n=user,r=abc", /* '_' not in cb-name */
        "n,,n=user,r=abc\x7f",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        scram_server *s = scram_server_new(XMPPD_HASH_SHA1, false, false, NULL, 0);
        const char *user = NULL, *authzid = NULL, *cond = NULL;
        if (scram_server_client_first(s, bad[i], strlen(bad[i]), &user, &authzid, &cond) == 0)
            fail_msg("accepted #%zu: %s", i, bad[i]);
        assert_string_equal(cond, SASL_MALFORMED);
        scram_server_free(s);
    }
    /* an embedded NUL */
    scram_server *s = scram_server_new(XMPPD_HASH_SHA1, false, false, NULL, 0);
    const char *user, *authzid, *cond = NULL;
    assert_int_equal(scram_server_client_first(s, "n,,n=us\0er,r=abc", 16, &user, &authzid, &cond), -1);
    assert_string_equal(cond, SASL_MALFORMED);
    scram_server_free(s);
}

static void test_rfc5802_7_malformed_client_final(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "c=biws,r=abcSNONCE",                       /* no proof */
        "c=biws,p=AAAA,r=abcSNONCE",                /* proof not last */
        "r=abcSNONCE,c=biws,p=AAAA",                /* order */
        "c=biws,r=abcSNONCE,p=AAA",                 /* bad base64 */
        "c=biw s,r=abcSNONCE,p=AAAA",
        "c=biws,r=abcSNONCE,p=",
        "c=biws,r=abcSNONCE,,p=AAAA",
        "c=biws,r=,p=AAAA",
        "c=,r=abcSNONCE,p=AAAA",
    };
    xmppd_scram_keys keys = derive(XMPPD_HASH_SHA1, "pencil", "QSXCR+Q6sek8bf92", 4096);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        scram_server *s = scram_server_new(XMPPD_HASH_SHA1, false, false, NULL, 0);
        const char *user, *authzid, *cond = NULL;
        const char *cf1 = "n,,n=user,r=abc";
        assert_int_equal(scram_server_client_first(s, cf1, strlen(cf1), &user, &authzid, &cond), 0);
        scram_server_set_nonce_for_test(s, "SNONCE");
        size_t len;
        free(scram_server_first(s, &keys, FAKE_SECRET, sizeof(FAKE_SECRET), &len));
        if (scram_server_client_final(s, bad[i], strlen(bad[i]), &len, &cond) != NULL)
            fail_msg("accepted #%zu: %s", i, bad[i]);
        if (strcmp(cond, SASL_MALFORMED) != 0)
            fail_msg("#%zu: %s: %s", i, bad[i], cond);
        scram_server_free(s);
    }
}

static void test_rfc5802_state_machine_order(void **state)
{
    (void)state;
    scram_server *s = scram_server_new(XMPPD_HASH_SHA1, false, false, NULL, 0);
    size_t len;
    const char *user, *authzid, *cond = NULL;
    assert_null(scram_server_client_final(s, "c=biws,r=a,p=AAAA", 17, &len, &cond));
    assert_non_null(cond);
    scram_server_free(s);

    s = scram_server_new(XMPPD_HASH_SHA1, false, false, NULL, 0);
    assert_null(scram_server_first(s, NULL, FAKE_SECRET, sizeof(FAKE_SECRET), &len));
    const char *cf1 = "n,,n=user,r=abc";
    assert_int_equal(scram_server_client_first(s, cf1, strlen(cf1), &user, &authzid, &cond), 0);
    assert_int_equal(scram_server_client_first(s, cf1, strlen(cf1), &user, &authzid, &cond), -1);
    scram_server_free(s);
}

/* ---- channel binding (RFC 5802 §6, RFC 5929, RFC 9266) ---------------- */

static const unsigned char EXPORTER[32] = "0123456789abcdef0123456789abcdef";
static const unsigned char ENDPOINT[32] = "fedcba9876543210fedcba9876543210";

static scram_server *new_plus(bool plus, bool advertised)
{
    const scram_cb cbs[2] = {
        { "tls-exporter", EXPORTER, sizeof(EXPORTER) },
        { "tls-server-end-point", ENDPOINT, sizeof(ENDPOINT) },
    };
    return scram_server_new(XMPPD_HASH_SHA256, plus, advertised, cbs, 2);
}

static void test_rfc9266_plus_tls_exporter(void **state)
{
    (void)state;
    xmppd_scram_keys keys = derive(XMPPD_HASH_SHA256, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096);
    scram_server *s = new_plus(true, true);
    client_opts o = { .password = "pencil", .cb_data = EXPORTER, .cb_len = sizeof(EXPORTER) };
    assert_null(exchange(s, XMPPD_HASH_SHA256, "p=tls-exporter,,n=user,r=abc", &keys, &o));
    scram_server_free(s);

    /* RFC 5929 §4 type, with an authzid */
    s = new_plus(true, true);
    o.cb_data = ENDPOINT;
    assert_null(exchange(s, XMPPD_HASH_SHA256, "p=tls-server-end-point,a=user,n=user,r=abc", &keys,
                         &o));
    scram_server_free(s);
}

static void test_rfc5802_6_plus_wrong_cb_data(void **state)
{
    (void)state;
    xmppd_scram_keys keys = derive(XMPPD_HASH_SHA256, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096);
    /* the data of the other type */
    scram_server *s = new_plus(true, true);
    client_opts o = { .password = "pencil", .cb_data = ENDPOINT, .cb_len = sizeof(ENDPOINT) };
    assert_string_equal(exchange(s, XMPPD_HASH_SHA256, "p=tls-exporter,,n=user,r=abc", &keys, &o),
                        SASL_NOT_AUTHORIZED);
    scram_server_free(s);

    /* no data at all: c= holds only the header */
    s = new_plus(true, true);
    o.cb_len = 0;
    assert_string_equal(exchange(s, XMPPD_HASH_SHA256, "p=tls-exporter,,n=user,r=abc", &keys, &o),
                        SASL_NOT_AUTHORIZED);
    scram_server_free(s);

    /* c= that does not echo the gs2 header ("y,," instead of "n,,") */
    s = scram_server_new(XMPPD_HASH_SHA256, false, false, NULL, 0);
    client_opts o2 = { .password = "pencil", .c_override = "eSws" };
    assert_string_equal(exchange(s, XMPPD_HASH_SHA256, "n,,n=user,r=abc", &keys, &o2),
                        SASL_NOT_AUTHORIZED);
    scram_server_free(s);
}

static const char *first_cond(scram_server *s, const char *m)
{
    const char *user, *authzid, *cond = NULL;
    int rc = scram_server_client_first(s, m, strlen(m), &user, &authzid, &cond);
    scram_server_free(s);
    return rc == 0 ? NULL : cond;
}

/* 'y': the client supports channel binding but thinks the server does not;
 * when we did offer -PLUS that is a downgrade (RFC 5802 §6). */
static void test_rfc5802_6_y_flag_downgrade(void **state)
{
    (void)state;
    assert_string_equal(first_cond(new_plus(false, true), "y,,n=user,r=abc"), SASL_NOT_AUTHORIZED);
    assert_null(first_cond(new_plus(false, false), "y,,n=user,r=abc"));
    assert_null(first_cond(scram_server_new(XMPPD_HASH_SHA1, false, false, NULL, 0),
                           "y,,n=user,r=abc"));

    /* 'y' accepted when not offered: c= must echo "y,," */
    xmppd_scram_keys keys = derive(XMPPD_HASH_SHA256, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096);
    scram_server *s = scram_server_new(XMPPD_HASH_SHA256, false, false, NULL, 0);
    client_opts o = { .password = "pencil" };
    assert_null(exchange(s, XMPPD_HASH_SHA256, "y,,n=user,r=abc", &keys, &o));
    scram_server_free(s);
}

static void test_rfc5802_6_flag_mechanism_mismatch(void **state)
{
    (void)state;
    /* 'p=' with a non-PLUS mechanism */
    assert_string_equal(first_cond(new_plus(false, true), "p=tls-exporter,,n=user,r=abc"),
                        SASL_NOT_AUTHORIZED);
    /* a PLUS mechanism with 'n' or 'y' */
    assert_string_equal(first_cond(new_plus(true, true), "n,,n=user,r=abc"), SASL_NOT_AUTHORIZED);
    assert_string_equal(first_cond(new_plus(true, true), "y,,n=user,r=abc"), SASL_NOT_AUTHORIZED);
    /* a type the connection does not offer */
    assert_string_equal(first_cond(new_plus(true, true), "p=tls-unique,,n=user,r=abc"),
                        SASL_NOT_AUTHORIZED);
    assert_string_equal(first_cond(scram_server_new(XMPPD_HASH_SHA256, true, true, NULL, 0),
                                   "p=tls-exporter,,n=user,r=abc"),
                        SASL_NOT_AUTHORIZED);
}

/* ---- key derivation ------------------------------------------------- */

static void test_rfc5802_3_derive_sha512_round_trip(void **state)
{
    (void)state;
    xmppd_scram_keys keys = derive(XMPPD_HASH_SHA512, "correct horse", "c2FsdHNhbHRzYWx0c2FsdA==",
                                   10000);
    assert_int_equal(keys.hash, XMPPD_HASH_SHA512);
    assert_int_equal(keys.iterations, 10000);
    assert_int_equal(keys.salt_len, 16);
    scram_server *s = scram_server_new(XMPPD_HASH_SHA512, false, false, NULL, 0);
    client_opts o = { .password = "correct horse" };
    assert_null(exchange(s, XMPPD_HASH_SHA512, "n,,n=user,r=abc", &keys, &o));
    scram_server_free(s);

    /* keys of another hash are not used (the exchange fails at the end) */
    s = scram_server_new(XMPPD_HASH_SHA256, false, false, NULL, 0);
    assert_string_equal(exchange(s, XMPPD_HASH_SHA256, "n,,n=user,r=abc", &keys, &o),
                        SASL_NOT_AUTHORIZED);
    scram_server_free(s);
}

/* SASLprep (RFC 4013 §3 examples): SOFT HYPHEN maps to nothing, U+00AA
 * normalises to "a", U+0007 is prohibited. */
static void test_rfc4013_3_saslprep_in_derive(void **state)
{
    (void)state;
    unsigned char salt[16] = { 1 };
    xmppd_scram_keys a, b;
    assert_int_equal(xmppd_scram_derive(XMPPD_HASH_SHA256, "I\xc2\xadX", salt, 16, 4096, &a), 0);
    assert_int_equal(xmppd_scram_derive(XMPPD_HASH_SHA256, "IX", salt, 16, 4096, &b), 0);
    assert_memory_equal(a.stored_key, b.stored_key, 32);
    assert_memory_equal(a.server_key, b.server_key, 32);
    assert_int_equal(xmppd_scram_derive(XMPPD_HASH_SHA256, "\xc2\xaa", salt, 16, 4096, &a), 0);
    assert_int_equal(xmppd_scram_derive(XMPPD_HASH_SHA256, "a", salt, 16, 4096, &b), 0);
    assert_memory_equal(a.stored_key, b.stored_key, 32);
    assert_int_equal(xmppd_scram_derive(XMPPD_HASH_SHA256, "\x07", salt, 16, 4096, &a), -1);
    assert_int_equal(xmppd_scram_derive(XMPPD_HASH_SHA256, "pass\xff", salt, 16, 4096, &a), -1);
    unsigned char big[65] = { 0 };
    assert_int_equal(xmppd_scram_derive(XMPPD_HASH_SHA256, "pencil", big, 65, 4096, &a), -1);
    assert_int_equal(xmppd_scram_derive(XMPPD_HASH_SHA256, "pencil", salt, 16, 0, &a), -1);
}

/* ---- base64 (RFC 4648 §10 vectors, strict decoding §3.3, §3.5) ------- */

static void test_rfc4648_10_base64_vectors(void **state)
{
    (void)state;
    static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    static const char *const enc[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
    for (size_t i = 0; i < 7; i++) {
        char *e = xmppd_base64_encode(plain[i], strlen(plain[i]));
        assert_string_equal(e, enc[i]);
        free(e);
        unsigned char *d;
        size_t n;
        assert_int_equal(xmppd_base64_decode(enc[i], strlen(enc[i]), &d, &n), 0);
        assert_int_equal(n, strlen(plain[i]));
        assert_memory_equal(d, plain[i], n);
        assert_int_equal(d[n], '\0');
        free(d);
    }
}

static void test_rfc4648_3_base64_strict(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Zg=", "Zg", "Z", "Zm9v\n", " Zm9v", "Zm9v ", "Zm9v====", "Z===", "====", "Zg=a",
        "Zh==", "Zm9=", /* non-zero bits under the padding */
        "Zm=v", "=Zm9", "Zg==Zm9v", "Zm9*", "Zm9-", "Zm9_", "Zm\r\n9v",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned char *d = (unsigned char *)"x";
        size_t n = 7;
        if (xmppd_base64_decode(bad[i], strlen(bad[i]), &d, &n) == 0)
            fail_msg("accepted #%zu: %s", i, bad[i]);
        assert_null(d);
    }
    unsigned char *d;
    size_t n;
    assert_int_equal(xmppd_base64_decode("Zm9v\0Zm9", 8, &d, &n), -1);
}

static void test_crypto_helpers(void **state)
{
    (void)state;
    assert_int_equal(xmppd_hash_len(XMPPD_HASH_SHA1), 20);
    assert_int_equal(xmppd_hash_len(XMPPD_HASH_SHA256), 32);
    assert_int_equal(xmppd_hash_len(XMPPD_HASH_SHA512), 64);
    assert_string_equal(xmppd_hash_scram_name(XMPPD_HASH_SHA512), "SCRAM-SHA-512");
    assert_true(xmppd_ct_equal("abc", "abc", 3));
    assert_false(xmppd_ct_equal("abc", "abd", 3));
    unsigned char a[32] = { 0 }, b[32] = { 0 };
    assert_int_equal(xmppd_random(a, sizeof(a)), 0);
    assert_int_equal(xmppd_random(b, sizeof(b)), 0);
    assert_memory_not_equal(a, b, sizeof(a));
    xmppd_wipe(a, sizeof(a));
    assert_memory_equal(a, (unsigned char[32]){ 0 }, sizeof(a));
    /* FIPS 180-2 appendix B.1: SHA-256("abc") */
    static const unsigned char abc256[32] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
        0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad };
    assert_int_equal(xmppd_digest(XMPPD_HASH_SHA256, "abc", 3, a), 0);
    assert_memory_equal(a, abc256, sizeof(abc256));
}

/* ---- PLAIN (RFC 4616 §2) --------------------------------------------- */

static int plain(const char *m, size_t len, char **z, char **c, char **p)
{
    return sasl_plain_parse((const unsigned char *)m, len, z, c, p);
}

static void test_rfc4616_2_plain(void **state)
{
    (void)state;
    char *z, *c, *p;
    assert_int_equal(plain("\0tim\0tanstaaftanstaaf", 21, &z, &c, &p), 0);
    assert_null(z);
    assert_string_equal(c, "tim");
    assert_string_equal(p, "tanstaaftanstaaf");
    free(c);
    free(p);

    assert_int_equal(plain("Ursel\0Kurt\0xipj3plmq", 20, &z, &c, &p), 0);
    assert_string_equal(z, "Ursel");
    assert_string_equal(c, "Kurt");
    assert_string_equal(p, "xipj3plmq");
    free(z);
    free(c);
    free(p);

    static const struct { const char *m; size_t len; } bad[] = {
        { "", 0 },
        { "user", 4 },
        { "\0user", 5 },          /* one NUL */
        { "user\0pass", 9 },
        { "\0\0pass", 6 },        /* empty authcid */
        { "\0user\0", 6 },        /* empty password */
        { "\0user\0pa\0ss", 11 }, /* a third NUL */
        { "\0\0", 2 },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (plain(bad[i].m, bad[i].len, &z, &c, &p) == 0)
            fail_msg("accepted PLAIN case #%zu", i);
        assert_null(z);
        assert_null(c);
        assert_null(p);
    }

    /* 1023-byte parts are accepted, 1024 refused */
    char buf[2 + 3 + 1024];
    buf[0] = '\0';
    memcpy(buf + 1, "tim", 3);
    buf[4] = '\0';
    memset(buf + 5, 'x', 1024);
    assert_int_equal(plain(buf, 5 + 1023, &z, &c, &p), 0);
    assert_int_equal(strlen(p), 1023);
    free(c);
    free(p);
    assert_int_equal(plain(buf, 5 + 1024, &z, &c, &p), -1);
}

/* ---- XEP-0474 (SSDP) -------------------------------------------------- */

static void test_xep0474_5_1_hash_vector(void **state)
{
    (void)state;
    /* the example of XEP-0474 §5.3 (lists given unsorted) */
    const char *mechs[] = { "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1" };
    const char *cbs[] = { "tls-server-end-point", "tls-exporter" };
    char *h = scram_ssdp_hash(XMPPD_HASH_SHA1, mechs, 2, cbs, 2);
    assert_string_equal(h, "G6k/rBLDqgOhRRaCuuatSDFkJ08=");
    free(h);
    /* no XEP-0440 list: no 0x1F part; an advertised empty list: 0x1F alone */
    const char *m2[] = { "SCRAM-SHA-256-PLUS", "PLAIN", "SCRAM-SHA-256" };
    h = scram_ssdp_hash(XMPPD_HASH_SHA256, m2, 3, NULL, 0);
    assert_string_equal(h, "Z+P3PzJhSNM+xxd4jrDvbS/dhhA+2CVR2QOmUGbvAPk=");
    char *h2 = scram_ssdp_hash(XMPPD_HASH_SHA256, m2, 3, cbs, 0);
    assert_string_not_equal(h, h2);
    /* a stripped list gives another hash */
    char *h3 = scram_ssdp_hash(XMPPD_HASH_SHA256, m2 + 1, 2, NULL, 0);
    assert_string_not_equal(h, h3);
    free(h);
    free(h2);
    free(h3);
}

static void test_xep0474_5_1_attribute_is_signed(void **state)
{
    (void)state;
    xmppd_scram_keys keys = derive(XMPPD_HASH_SHA1, "pencil", "QSXCR+Q6sek8bf92", 4096);
    scram_server *s = scram_server_new(XMPPD_HASH_SHA1, false, false, NULL, 0);
    const char *cf = "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL", *user, *authzid, *cond = NULL;
    assert_int_equal(scram_server_set_ssdp(s, "bad,value"), -1);
    assert_int_equal(scram_server_set_ssdp(s, "G6k/rBLDqgOhRRaCuuatSDFkJ08="), 0);
    assert_int_equal(scram_server_client_first(s, cf, strlen(cf), &user, &authzid, &cond), 0);
    assert_int_equal(scram_server_set_nonce_for_test(s, "3rfcNHYJY1ZVvWVs7j"), 0);
    size_t len;
    char *sf = scram_server_first(s, &keys, FAKE_SECRET, sizeof(FAKE_SECRET), &len);
    assert_string_equal(sf, "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,"
                            "i=4096,h=G6k/rBLDqgOhRRaCuuatSDFkJ08=");
    assert_int_equal(scram_server_set_ssdp(s, "late"), -1);
    /* RFC 5802's own client-final was computed without h=: it must fail */
    const char *final = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                        "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
    assert_null(scram_server_client_final(s, final, strlen(final), &len, &cond));
    assert_string_equal(cond, SASL_NOT_AUTHORIZED);
    free(sf);
    scram_server_free(s);
    /* a client that saw h= proves over it */
    s = scram_server_new(XMPPD_HASH_SHA1, false, false, NULL, 0);
    assert_int_equal(scram_server_set_ssdp(s, "G6k/rBLDqgOhRRaCuuatSDFkJ08="), 0);
    const client_opts o = { .password = "pencil" };
    assert_null(exchange(s, XMPPD_HASH_SHA1, cf, &keys, &o));
    scram_server_free(s);
}

/* ---- HT (draft-schmaus-kitten-sasl-ht, XEP-0484) ----------------------- */

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void test_ht_hashes(void **state)
{
    (void)state;
    /* values from Python's hmac module for the token of XEP-0484's example */
    const char *tok = "WXZzciBwYmFmdmZnZiBqdmd1IGp2eXFhcmZm";
    unsigned char out[HT_HASH_LEN], cb[32];
    char x[2 * HT_HASH_LEN + 1];
    assert_int_equal(ht_hash(tok, strlen(tok), true, NULL, 0, out), 0);
    hex(out, sizeof(out), x);
    assert_string_equal(x, "9097787461a184e0fa84ec00c1381190b6c4d16a8ec4453c7b2ac5e7fcf935ed");
    assert_int_equal(ht_hash(tok, strlen(tok), false, NULL, 0, out), 0);
    hex(out, sizeof(out), x);
    assert_string_equal(x, "4e513409631474863b986c9f3e8c1e27ca29d1d7ab9ed4097e7afd6007bf9c62");
    for (int i = 0; i < 32; i++)
        cb[i] = (unsigned char)i;
    assert_int_equal(ht_hash(tok, strlen(tok), true, cb, sizeof(cb), out), 0);
    hex(out, sizeof(out), x);
    assert_string_equal(x, "0c5745576afeea711960549186a31a65c9f328205ee38b66825b3d4c872b395c");
    /* no token, too much channel binding data */
    assert_int_equal(ht_hash(tok, 0, true, NULL, 0, out), -1);
    unsigned char big[HT_CB_MAX + 1] = { 0 };
    assert_int_equal(ht_hash(tok, strlen(tok), true, big, sizeof(big), out), -1);
}

static void test_ht_names_and_initial_response(void **state)
{
    (void)state;
    enum ht_cb cb;
    assert_int_equal(ht_mech_parse("HT-SHA-256-ENDP", &cb), 0);
    assert_int_equal(cb, HT_ENDP);
    assert_string_equal(ht_cb_type(cb), "tls-server-end-point");
    assert_int_equal(ht_mech_parse("HT-SHA-256-EXPR", &cb), 0);
    assert_string_equal(ht_cb_type(cb), "tls-exporter");
    assert_int_equal(ht_mech_parse("HT-SHA-256-UNIQ", &cb), 0);
    assert_string_equal(ht_cb_type(cb), "tls-unique");
    assert_int_equal(ht_mech_parse("HT-SHA-256-NONE", &cb), 0);
    assert_null(ht_cb_type(cb));
    assert_string_equal(ht_mech_name(HT_NONE), "HT-SHA-256-NONE");
    assert_int_equal(ht_mech_parse("HT-SHA-512-NONE", &cb), -1);
    assert_int_equal(ht_mech_parse("ht-sha-256-none", &cb), -1);

    /* user NUL 32 bytes of hash, which may hold NULs themselves */
    unsigned char msg[4 + 1 + 32], hash[HT_HASH_LEN];
    memcpy(msg, "juli", 4);
    msg[4] = '\0';
    memset(msg + 5, 0, 32);
    msg[5 + 31] = 7;
    char *user;
    assert_int_equal(ht_parse_initial(msg, sizeof(msg), &user, hash), 0);
    assert_string_equal(user, "juli");
    assert_int_equal(hash[31], 7);
    free(user);
    assert_int_equal(ht_parse_initial(msg, sizeof(msg) - 1, &user, hash), -1); /* short hash */
    assert_null(user);
    assert_int_equal(ht_parse_initial(msg + 4, sizeof(msg) - 4, &user, hash), -1); /* no user */
    assert_int_equal(ht_parse_initial(msg, 4, &user, hash), -1);                  /* no NUL */
    assert_int_equal(ht_parse_initial(NULL, 0, &user, hash), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc5802_5_sha1_vector),
        cmocka_unit_test(test_rfc7677_3_sha256_vector),
        cmocka_unit_test(test_rfc5802_5_tampered_proof),
        cmocka_unit_test(test_rfc5802_5_random_nonce_and_success),
        cmocka_unit_test(test_rfc5802_5_1_server_nonce),
        cmocka_unit_test(test_rfc5802_5_wrong_password),
        cmocka_unit_test(test_rfc5802_5_1_nonce_mismatch),
        cmocka_unit_test(test_rfc5802_9_unknown_user_fails_at_final),
        cmocka_unit_test(test_rfc5802_5_1_saslname_decoding),
        cmocka_unit_test(test_rfc5802_7_malformed_client_first),
        cmocka_unit_test(test_rfc5802_7_malformed_client_final),
        cmocka_unit_test(test_rfc5802_state_machine_order),
        cmocka_unit_test(test_rfc9266_plus_tls_exporter),
        cmocka_unit_test(test_rfc5802_6_plus_wrong_cb_data),
        cmocka_unit_test(test_rfc5802_6_y_flag_downgrade),
        cmocka_unit_test(test_rfc5802_6_flag_mechanism_mismatch),
        cmocka_unit_test(test_rfc5802_3_derive_sha512_round_trip),
        cmocka_unit_test(test_rfc4013_3_saslprep_in_derive),
        cmocka_unit_test(test_rfc4648_10_base64_vectors),
        cmocka_unit_test(test_rfc4648_3_base64_strict),
        cmocka_unit_test(test_crypto_helpers),
        cmocka_unit_test(test_rfc4616_2_plain),
        cmocka_unit_test(test_xep0474_5_1_hash_vector),
        cmocka_unit_test(test_xep0474_5_1_attribute_is_signed),
        cmocka_unit_test(test_ht_hashes),
        cmocka_unit_test(test_ht_names_and_initial_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
