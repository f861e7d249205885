/*
 * Adversarial tokens against shared/gcp/oidc_verifier (on top of the rule by
 * rule tests in test_oidc_verifier.c): injection strings and look-alikes in
 * `kid`, nested and wide JSON bombs in the header and the claims, non-UTF-8 and
 * escaped NULs in the header, "psychic" signatures (ES256 with r = s = 0, RSA
 * signatures 0, 1, n - 1, n and all-ones), and a token that is perfectly valid
 * except that it was minted for another audience.  Every forged token is
 * rejected with the documented status; the genuine token is still accepted
 * after all of them (the verifier keeps no state that an attack could poison).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/gcp/oidc_verifier.h"
#include "support/oidc_testkit.h"

#define NOW 1764000000

struct fixture {
    struct oidc_test_key good;     /* published in the JWKS as "key-a" */
    struct oidc_test_key attacker; /* never published */
    struct oidc_keyset *ks;
    struct oidc_policy policy;
};

static struct fixture *fx;

static int setup(void **state)
{
    (void)state;
    fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(oidc_test_rsa_key(&fx->good, "key-a"), 0);
    assert_int_equal(oidc_test_rsa_key(&fx->attacker, "key-a"), 0);
    const struct oidc_test_key *keys[] = {&fx->good};
    char *jwks = oidc_test_jwks_json(keys, 1);
    char err[128];
    fx->ks = oidc_keyset_from_jwks(jwks, strlen(jwks), err, sizeof(err));
    free(jwks);
    assert_non_null(fx->ks);
    oidc_policy_defaults(&fx->policy);
    fx->policy.audience = OIDC_TEST_AUDIENCE;
    fx->policy.service_account = OIDC_TEST_SA;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    oidc_keyset_free(fx->ks);
    oidc_test_key_free(&fx->good);
    oidc_test_key_free(&fx->attacker);
    free(fx);
    return 0;
}

static enum oidc_status verify(const char *token)
{
    assert_non_null(token);
    return oidc_verify(fx->ks, &fx->policy, token, strlen(token), NOW, NULL);
}

static char *default_claims(void)
{
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    char *p = oidc_test_claims_json(&c);
    assert_non_null(p);
    return p;
}

/* RS256 by `key` over header + default claims. */
static enum oidc_status verify_signed_header(const struct oidc_test_key *key, const char *header)
{
    char *claims = default_claims();
    char *tok = oidc_test_rs256(key, header, claims);
    enum oidc_status st = verify(tok);
    free(tok);
    free(claims);
    return st;
}

static void assert_genuine_still_accepted(void)
{
    assert_int_equal(verify_signed_header(&fx->good, "{\"alg\":\"RS256\",\"kid\":\"key-a\",\"typ\":\"JWT\"}"), OIDC_OK);
}

/* ---- kid ---------------------------------------------------------------- */

static void oidc_verify__kid_injection_and_lookalike_strings__never_match_a_key(void **state)
{
    (void)state;
    /* JSON string bodies (escaped as they appear in the header). */
    static const char *const kids[] = {
        "../key-a",
        "key-a/../key-a",
        "/etc/passwd",
        "../../../../../../etc/shadow",
        "file:///etc/passwd",
        "https://attacker.example/jwks.json",
        "key-a' OR '1'='1",
        "key-a\\\"; DROP TABLE lead_bookings; --",
        "key-a; SELECT pg_sleep(10)",
        "$$; DROP SCHEMA public CASCADE; $$",
        "key-a%00",
        "%6bey-a",
        "KEY-A",
        "key-a ",
        " key-a",
        "key-a\\n",
        "key-a\\r\\nX-Injected: 1",
        "key-\\u0061", /* decodes to "key-a": allowed JSON, and then the same kid */
        "key-a\\u200b",
        "k\\u00e9y-a",
        "*",
        "%s%s%s%n",
    };
    for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++) {
        char header[256];
        snprintf(header, sizeof(header), "{\"alg\":\"RS256\",\"kid\":\"%s\"}", kids[i]);
        enum oidc_status by_attacker = verify_signed_header(&fx->attacker, header);
        if (by_attacker == OIDC_OK) fail_msg("kid %s: attacker-signed token accepted", kids[i]);
        if (strcmp(kids[i], "key-\\u0061") == 0) {
            /* the escape names the real kid: the attacker's signature is what fails */
            assert_int_equal(by_attacker, OIDC_ERR_SIGNATURE);
            continue;
        }
        if (by_attacker != OIDC_ERR_UNKNOWN_KID && by_attacker != OIDC_ERR_MALFORMED)
            fail_msg("kid %s: status %s", kids[i], oidc_status_name(by_attacker));
        /* signed by the genuine key, the kid still has to match exactly */
        enum oidc_status by_good = verify_signed_header(&fx->good, header);
        if (by_good != OIDC_ERR_UNKNOWN_KID && by_good != OIDC_ERR_MALFORMED)
            fail_msg("kid %s: genuine signature under a look-alike kid gave %s", kids[i], oidc_status_name(by_good));
    }
    assert_genuine_still_accepted();
}

static void oidc_verify__kid_with_escaped_nul__malformed(void **state)
{
    (void)state;
    assert_int_equal(verify_signed_header(&fx->good, "{\"alg\":\"RS256\",\"kid\":\"key-a\\u0000x\"}"), OIDC_ERR_MALFORMED);
    assert_int_equal(verify_signed_header(&fx->good, "{\"alg\":\"RS256\",\"kid\":\"key-a\\u0000\"}"), OIDC_ERR_MALFORMED);
}

static void oidc_verify__kid_of_ten_kilobytes__rejected_before_any_lookup(void **state)
{
    (void)state;
    size_t n = 10 * 1024;
    char *header = malloc(n + 64);
    assert_non_null(header);
    int off = snprintf(header, 64, "{\"alg\":\"RS256\",\"kid\":\"");
    memset(header + off, 'k', n);
    strcpy(header + off + n, "\"}");
    enum oidc_status st = verify_signed_header(&fx->good, header);
    assert_int_equal(st, OIDC_ERR_TOO_LARGE); /* 4096-byte token cap */
    struct oidc_policy roomy = fx->policy;
    roomy.max_token_bytes = 65536;
    char *claims = default_claims();
    char *tok = oidc_test_rs256(&fx->good, header, claims);
    struct oidc_claims out;
    assert_int_equal(oidc_verify(fx->ks, &roomy, tok, strlen(tok), NOW, &out), OIDC_ERR_MALFORMED);
    assert_int_equal(out.kid[0], '\0'); /* nothing of the oversize kid copied out */
    free(tok);
    free(claims);
    free(header);
}

/* ---- JSON bombs --------------------------------------------------------- */

/* "[[[...1...]]]" nested `depth` deep (malloc'd). */
static char *nested_arrays(size_t depth)
{
    char *s = malloc(2 * depth + 2);
    assert_non_null(s);
    memset(s, '[', depth);
    s[depth] = '1';
    memset(s + depth + 1, ']', depth);
    s[2 * depth + 1] = '\0';
    return s;
}

static void oidc_verify__nested_json_bomb_in_header__rejected_without_crash(void **state)
{
    (void)state;
    struct oidc_policy roomy = fx->policy;
    roomy.max_token_bytes = 65536;
    const size_t depths[] = {100, 1000, 5000, 20000};
    for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
        char *bomb = nested_arrays(depths[i]);
        size_t cap = strlen(bomb) + 64;
        char *header = malloc(cap);
        assert_non_null(header);
        snprintf(header, cap, "{\"alg\":\"RS256\",\"kid\":\"key-a\",\"x\":%s}", bomb);
        char *claims = default_claims();
        char *tok = oidc_test_rs256(&fx->attacker, header, claims);
        assert_non_null(tok);
        enum oidc_status st = oidc_verify(fx->ks, &roomy, tok, strlen(tok), NOW, NULL);
        /* shallow: parses, then the attacker's signature fails; deep: the parser refuses */
        if (st != OIDC_ERR_SIGNATURE && st != OIDC_ERR_MALFORMED && st != OIDC_ERR_TOO_LARGE)
            fail_msg("depth %zu: %s", depths[i], oidc_status_name(st));
        assert_int_not_equal(verify(tok), OIDC_OK); /* default policy: too large or rejected */
        free(tok);
        free(claims);
        free(header);
        free(bomb);
    }
    assert_genuine_still_accepted();
}

static void oidc_verify__nested_json_bomb_in_signed_claims__claim_check_fails(void **state)
{
    (void)state;
    struct oidc_policy roomy = fx->policy;
    roomy.max_token_bytes = 65536;
    const char *const claim_names[] = {"aud", "iss", "email", "exp"};
    for (size_t i = 0; i < sizeof(claim_names) / sizeof(claim_names[0]); i++) {
        char *bomb = nested_arrays(1500);
        struct oidc_test_claims c;
        oidc_test_claims_default(&c, NOW);
        if (strcmp(claim_names[i], "aud") == 0) c.aud = bomb;
        if (strcmp(claim_names[i], "iss") == 0) c.iss = bomb;
        if (strcmp(claim_names[i], "email") == 0) c.email = bomb;
        if (strcmp(claim_names[i], "exp") == 0) c.exp = bomb;
        char *claims = oidc_test_claims_json(&c);
        char *tok = oidc_test_rs256(&fx->good, "{\"alg\":\"RS256\",\"kid\":\"key-a\"}", claims);
        enum oidc_status st = oidc_verify(fx->ks, &roomy, tok, strlen(tok), NOW, NULL);
        if (st == OIDC_OK) fail_msg("bomb in %s accepted", claim_names[i]);
        free(tok);
        free(claims);
        free(bomb);
    }
}

static void oidc_verify__wide_header_object__rejected_without_crash(void **state)
{
    (void)state;
    struct oidc_policy roomy = fx->policy;
    roomy.max_token_bytes = 65536;
    size_t cap = 64 + 3000 * 16;
    char *header = malloc(cap);
    assert_non_null(header);
    size_t len = (size_t)snprintf(header, cap, "{\"alg\":\"RS256\",\"kid\":\"key-a\"");
    for (int i = 0; i < 3000; i++)
        len += (size_t)snprintf(header + len, cap - len, ",\"k%d\":%d", i, i);
    snprintf(header + len, cap - len, "}");
    char *claims = default_claims();
    char *tok = oidc_test_rs256(&fx->attacker, header, claims);
    assert_int_equal(oidc_verify(fx->ks, &roomy, tok, strlen(tok), NOW, NULL), OIDC_ERR_SIGNATURE);
    assert_int_equal(verify(tok), OIDC_ERR_TOO_LARGE);
    free(tok);
    free(claims);
    free(header);
}

/* ---- encoding ----------------------------------------------------------- */

static void oidc_verify__non_utf8_or_lone_surrogate_in_header__malformed(void **state)
{
    (void)state;
    static const char *const headers[] = {
        "{\"alg\":\"RS256\",\"kid\":\"key-\xff\"}",
        "{\"alg\":\"RS256\",\"kid\":\"key-a\",\"x\":\"\xc0\xaf\"}",
        "{\"alg\":\"RS\xe2\x80\x8b" "256\",\"kid\":\"key-a\"}",
        "{\"alg\":\"RS256\",\"kid\":\"\\ud800\"}",
        "{\"alg\":\"RS256\",\"kid\":\"key-a\",\"x\":\"\\udfff\"}",
        "{\"alg\":\"RS256\",\"kid\":\"key-a\",\"x\":\"\xed\xa0\x80\"}", /* surrogate encoded in UTF-8 */
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        enum oidc_status st = verify_signed_header(&fx->good, headers[i]);
        if (st != OIDC_ERR_MALFORMED && st != OIDC_ERR_ALG) fail_msg("header %zu: %s", i, oidc_status_name(st));
    }
}

/* ---- psychic signatures ------------------------------------------------- */

static char *token_with_sig(const char *header, const void *sig, size_t siglen)
{
    char *claims = default_claims();
    char *tok = oidc_test_with_sig(header, claims, sig, siglen);
    free(claims);
    assert_non_null(tok);
    return tok;
}

static void oidc_verify__es256_with_r_and_s_zero__err_alg(void **state)
{
    (void)state;
    unsigned char zero[64] = {0};
    char *tok = token_with_sig("{\"alg\":\"ES256\",\"kid\":\"key-a\",\"typ\":\"JWT\"}", zero, sizeof(zero));
    assert_int_equal(verify(tok), OIDC_ERR_ALG);
    free(tok);
    /* the same signature bytes under RS256 are just a bad signature */
    tok = token_with_sig("{\"alg\":\"RS256\",\"kid\":\"key-a\"}", zero, sizeof(zero));
    assert_int_equal(verify(tok), OIDC_ERR_SIGNATURE);
    free(tok);
    /* DER-encoded r = s = 0 (what some libraries expect) */
    static const unsigned char der[] = {0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00};
    tok = token_with_sig("{\"alg\":\"ES256\",\"kid\":\"key-a\"}", der, sizeof(der));
    assert_int_equal(verify(tok), OIDC_ERR_ALG);
    free(tok);
}

/* Modulus of the published key, big-endian, exactly `len` bytes. */
static size_t modulus_bytes(unsigned char *out, size_t len)
{
    BIGNUM *n = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(fx->good.pkey, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    size_t nlen = (size_t)BN_num_bytes(n);
    assert_true(nlen <= len);
    assert_int_equal(BN_bn2binpad(n, out, (int)nlen), (int)nlen);
    BN_free(n);
    return nlen;
}

static void oidc_verify__rsa_signature_0_1_n_minus_1_n_and_all_ones__err_signature(void **state)
{
    (void)state;
    unsigned char n[1024];
    size_t k = modulus_bytes(n, sizeof(n));
    unsigned char *sig = calloc(1, k);
    assert_non_null(sig);
    const char *hdr = "{\"alg\":\"RS256\",\"kid\":\"key-a\"}";

    char *tok = token_with_sig(hdr, sig, k); /* 0 */
    assert_int_equal(verify(tok), OIDC_ERR_SIGNATURE);
    free(tok);

    sig[k - 1] = 1; /* 1: 1^e = 1 */
    tok = token_with_sig(hdr, sig, k);
    assert_int_equal(verify(tok), OIDC_ERR_SIGNATURE);
    free(tok);

    memcpy(sig, n, k); /* n: out of range */
    tok = token_with_sig(hdr, sig, k);
    assert_int_equal(verify(tok), OIDC_ERR_SIGNATURE);
    free(tok);

    sig[k - 1] = (unsigned char)(n[k - 1] - 1); /* n - 1 (n is odd): (-1)^e = -1 */
    tok = token_with_sig(hdr, sig, k);
    assert_int_equal(verify(tok), OIDC_ERR_SIGNATURE);
    free(tok);

    memset(sig, 0xff, k); /* > n */
    tok = token_with_sig(hdr, sig, k);
    assert_int_equal(verify(tok), OIDC_ERR_SIGNATURE);
    free(tok);

    free(sig);
    assert_genuine_still_accepted();
}

/* ---- audience ----------------------------------------------------------- */

static void oidc_verify__genuine_token_minted_for_another_audience__err_audience(void **state)
{
    (void)state;
    static const char *const auds[] = {
        "\"https://other-service.example.com\"",
        "\"" OIDC_TEST_AUDIENCE "/\"",
        "\"" OIDC_TEST_AUDIENCE "?x=1\"",
        "\"HTTPS://FOLLOWUPD.EXAMPLE.COM/callbacks\"",
        "[\"https://other-service.example.com\"]",
        "[\"https://other-service.example.com\",\"" OIDC_TEST_AUDIENCE "\"]",
        "[]",
        "null",
    };
    for (size_t i = 0; i < sizeof(auds) / sizeof(auds[0]); i++) {
        struct oidc_test_claims c;
        oidc_test_claims_default(&c, NOW);
        c.aud = auds[i];
        char *claims = oidc_test_claims_json(&c);
        char *tok = oidc_test_rs256(&fx->good, "{\"alg\":\"RS256\",\"kid\":\"key-a\"}", claims);
        enum oidc_status st = verify(tok);
        if (st != OIDC_ERR_AUDIENCE) fail_msg("aud %s: %s", auds[i], oidc_status_name(st));
        free(tok);
        free(claims);
    }
    assert_genuine_still_accepted();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(oidc_verify__kid_injection_and_lookalike_strings__never_match_a_key),
        cmocka_unit_test(oidc_verify__kid_with_escaped_nul__malformed),
        cmocka_unit_test(oidc_verify__kid_of_ten_kilobytes__rejected_before_any_lookup),
        cmocka_unit_test(oidc_verify__nested_json_bomb_in_header__rejected_without_crash),
        cmocka_unit_test(oidc_verify__nested_json_bomb_in_signed_claims__claim_check_fails),
        cmocka_unit_test(oidc_verify__wide_header_object__rejected_without_crash),
        cmocka_unit_test(oidc_verify__non_utf8_or_lone_surrogate_in_header__malformed),
        cmocka_unit_test(oidc_verify__es256_with_r_and_s_zero__err_alg),
        cmocka_unit_test(oidc_verify__rsa_signature_0_1_n_minus_1_n_and_all_ones__err_signature),
        cmocka_unit_test(oidc_verify__genuine_token_minted_for_another_audience__err_audience),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
