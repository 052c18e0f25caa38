/* auth_sql: password schemes (schemes.c) and query compilation (query.c).
 *
 * Vectors: sha512-crypt from Drepper's "Unix crypt using SHA-256 and
 * SHA-512" specification; PBKDF2 checked against the RFC 5802 §3 SCRAM
 * derivation done by the kernel (xmppd_scram_derive), which proves that a
 * Django pbkdf2_sha256 / Dovecot PBKDF2 hash serves SCRAM directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "../../modules/auth_sql/query.h"
#include "../../modules/auth_sql/schemes.h"

static void test_detect(void **state)
{
    as_hash h;
    as_parse("$2y$05$abcdefghijklmnopqrstuu5R/8KkPJuHGJ7Nse6oQbqaUHdCBBDm", NULL, NULL, &h);
    assert_int_equal(h.kind, AS_CRYPT);
    assert_string_equal(h.name, "BLF-CRYPT");
    as_parse("$6$salt$x", NULL, NULL, &h);
    assert_string_equal(h.name, "SHA512-CRYPT");
    as_parse("$y$j9T$salt$x", NULL, NULL, &h);
    assert_string_equal(h.name, "YESCRYPT");
    as_parse("$1$salt$x", NULL, NULL, &h);
    assert_true(h.weak);
    as_parse("pbkdf2_sha256$1000$salt$aGFzaA==", NULL, NULL, &h);
    assert_int_equal(h.kind, AS_DJANGO);
    assert_int_equal(h.hash, XMPPD_HASH_SHA256);
    as_parse("{PLAIN}secret", NULL, NULL, &h);
    assert_int_equal(h.kind, AS_PLAIN);
    assert_string_equal(h.value, "secret");
    as_parse("{SSHA}abc", NULL, NULL, &h);
    assert_int_equal(h.kind, AS_UNSUPPORTED);
    as_parse("{NOPE}abc", NULL, NULL, &h);
    assert_int_equal(h.kind, AS_UNSUPPORTED);
    as_parse("secret", "plain", NULL, &h); /* scheme column */
    assert_int_equal(h.kind, AS_PLAIN);
    as_parse("secret", NULL, "PLAIN", &h); /* default_scheme */
    assert_int_equal(h.kind, AS_PLAIN);
    as_parse("secret", NULL, NULL, &h);
    assert_int_equal(h.kind, AS_UNKNOWN);
    as_parse("abcdefghijklm", "CRYPT", NULL, &h); /* 13 characters: DES */
    assert_string_equal(h.name, "DES-CRYPT");
    assert_true(h.weak);
}

static void test_sha512_crypt_vector(void **state)
{
    as_hash h;
    const char *v = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
    as_parse(v, NULL, NULL, &h);
    assert_int_equal(as_verify(&h, "Hello world!"), 1);
    assert_int_equal(as_verify(&h, "Hello world?"), 0);
}

static void test_generated_hashes_verify(void **state)
{
    static const char *const schemes[] = AS_NEW_SCHEMES;
    for (size_t i = 0; schemes[i]; i++) {
        char *s = as_hash_new(schemes[i], "p\xc3\xa4ss:word", 4096);
        assert_non_null(s);
        as_hash h;
        as_parse(s, NULL, NULL, &h);
        assert_int_equal(as_verify(&h, "p\xc3\xa4ss:word"), 1);
        assert_int_equal(as_verify(&h, "pass:word"), 0);
        free(s);
    }
}

/* Django pbkdf2_sha256 made here with OpenSSL, then read as SCRAM-SHA-256
 * keys: they equal the kernel's RFC 5802 derivation with the same salt. */
static void test_scram_from_django(void **state)
{
    unsigned char dk[32];
    const char *salt = "seasalt123";
    assert_int_equal(PKCS5_PBKDF2_HMAC("pencil", 6, (const unsigned char *)salt, 10, 4096, EVP_sha256(), 32, dk), 1);
    char *b64 = xmppd_base64_encode(dk, 32);
    char stored[200];
    snprintf(stored, sizeof stored, "pbkdf2_sha256$4096$%s$%s", salt, b64);
    free(b64);
    as_hash h;
    xmppd_scram_keys got, want;
    as_parse(stored, NULL, NULL, &h);
    assert_int_equal(as_verify(&h, "pencil"), 1);
    assert_int_equal(as_scram_from_hash(&h, XMPPD_HASH_SHA256, &got), 0);
    assert_int_equal(as_scram_from_hash(&h, XMPPD_HASH_SHA1, &got), -1);
    assert_int_equal(as_scram_from_hash(&h, XMPPD_HASH_SHA256, &got), 0);
    assert_int_equal(xmppd_scram_derive(XMPPD_HASH_SHA256, "pencil", (const unsigned char *)salt, 10, 4096, &want), 0);
    assert_int_equal(got.iterations, 4096);
    assert_memory_equal(got.salt, salt, 10);
    assert_memory_equal(got.stored_key, want.stored_key, 32);
    assert_memory_equal(got.server_key, want.server_key, 32);
}

/* Dovecot {PBKDF2}$1$salt$rounds$hex is SCRAM-SHA-1's SaltedPassword. */
static void test_scram_from_dovecot(void **state)
{
    unsigned char dk[20];
    const char *salt = "QSXCR+Q6sek8bf92";
    assert_int_equal(PKCS5_PBKDF2_HMAC("pencil", 6, (const unsigned char *)salt, 16, 4096, EVP_sha1(), 20, dk), 1);
    char stored[200];
    int n = snprintf(stored, sizeof stored, "{PBKDF2}$1$%s$4096$", salt);
    for (int i = 0; i < 20; i++)
        n += snprintf(stored + n, sizeof stored - (size_t)n, "%02x", dk[i]);
    as_hash h;
    xmppd_scram_keys got, want;
    as_parse(stored, NULL, NULL, &h);
    assert_int_equal(h.kind, AS_DOVECOT_PBKDF2);
    assert_int_equal(as_verify(&h, "pencil"), 1);
    assert_int_equal(as_verify(&h, "pencil!"), 0);
    assert_int_equal(as_scram_from_hash(&h, XMPPD_HASH_SHA1, &got), 0);
    assert_int_equal(xmppd_scram_derive(XMPPD_HASH_SHA1, "pencil", (const unsigned char *)salt, 16, 4096, &want), 0);
    assert_memory_equal(got.stored_key, want.stored_key, 20);
    assert_memory_equal(got.server_key, want.server_key, 20);
}

static void test_scram_text_round_trip(void **state)
{
    xmppd_scram_keys k, back;
    const unsigned char salt[4] = { 1, 2, 3, 4 };
    assert_int_equal(xmppd_scram_derive(XMPPD_HASH_SHA256, "pw", salt, 4, 4096, &k), 0);
    char *s = as_scram_format(&k);
    assert_non_null(s);
    assert_int_equal(as_scram_parse(s, XMPPD_HASH_SHA256, &back), 0);
    assert_memory_equal(back.stored_key, k.stored_key, 32);
    assert_int_equal(as_scram_parse(s, XMPPD_HASH_SHA1, &back), -1); /* key length */
    char pref[300];
    snprintf(pref, sizeof pref, "{SCRAM-SHA-256}%s", s);
    assert_int_equal(as_scram_parse(pref, XMPPD_HASH_SHA256, &back), 0);
    snprintf(pref, sizeof pref, "{SCRAM-SHA-1}%s", s);
    assert_int_equal(as_scram_parse(pref, XMPPD_HASH_SHA256, &back), -1);
    assert_int_equal(as_scram_parse("0,AQID,AA==,AA==", XMPPD_HASH_SHA256, &back), -1);
    assert_int_equal(as_scram_parse("4096,AQID,AA==", XMPPD_HASH_SHA256, &back), -1);
    free(s);
}

static void test_query_compile(void **state)
{
    aq_query q;
    bool quoted;
    char err[200];
    assert_int_equal(aq_compile("SELECT pw AS password FROM t WHERE a = %n AND b = '%d' AND c = %{localpart}"
                                " AND d LIKE 'x%%' AND e = %u",
                                AQ_IDENT, &q, &quoted, err, sizeof err), 0);
    assert_string_equal(q.sql, "SELECT pw AS password FROM t WHERE a = $1 AND b = $2 AND c = $1"
                               " AND d LIKE 'x%' AND e = $3");
    assert_true(quoted);
    assert_int_equal(q.n_params, 3);
    assert_int_equal(q.params[0], AQ_LOCALPART);
    assert_int_equal(q.params[1], AQ_DOMAIN);
    assert_int_equal(q.params[2], AQ_USER);
    aq_free(&q);

    assert_int_equal(aq_compile("x = %q", AQ_IDENT, &q, &quoted, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown variable %q"));
    assert_int_equal(aq_compile("x = %{password}", AQ_IDENT, &q, &quoted, err, sizeof err), -1);
    assert_non_null(strstr(err, "not available"));
    assert_int_equal(aq_compile("x = %{scram_sha1}", AQ_IDENT, &q, &quoted, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot be used in this query"));
    assert_int_equal(aq_compile("x = $1", AQ_IDENT, &q, &quoted, err, sizeof err), -1);
    assert_int_equal(aq_compile("x = %{nope", AQ_IDENT, &q, &quoted, err, sizeof err), -1);
    assert_int_equal(aq_compile("x = %", AQ_IDENT, &q, &quoted, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_sha512_crypt_vector),
        cmocka_unit_test(test_generated_hashes_verify),
        cmocka_unit_test(test_scram_from_django),
        cmocka_unit_test(test_scram_from_dovecot),
        cmocka_unit_test(test_scram_text_round_trip),
        cmocka_unit_test(test_query_compile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
