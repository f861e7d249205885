/*
 * Unit tests for shared/gcp/oidc_verifier: real RSA keys, real JWKS built from
 * their n/e, real RS256 signatures (tests/unit/support/oidc_testkit).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shared/gcp/oidc_verifier.h"
#include "support/oidc_testkit.h"

#define NOW INT64_C(1767225600) /* 2026-01-01T00:00:00Z */

struct fixture {
    struct oidc_test_key a, b, attacker, weak, ec;
    struct oidc_keyset *ks;   /* JWKS of a and b */
    char *pem_a;
    struct oidc_policy policy;
};

static struct fixture *fx;

static int group_setup(void **state)
{
    (void)state;
    fx = calloc(1, sizeof(*fx));
    if (fx == NULL) return -1;
    if (oidc_test_rsa_key(&fx->a, "key-a") != 0 || oidc_test_rsa_key(&fx->b, "key-b") != 0 ||
        oidc_test_rsa_key(&fx->attacker, "key-attacker") != 0 || oidc_test_ec_key(&fx->ec, "key-ec") != 0 ||
        oidc_test_rsa_key_bits(&fx->weak, "key-weak", 1024) != 0)
        return -1;
    const struct oidc_test_key *keys[] = {&fx->a, &fx->b};
    char *jwks = oidc_test_jwks_json(keys, 2);
    char err[128];
    if (jwks != NULL) fx->ks = oidc_keyset_from_jwks(jwks, strlen(jwks), err, sizeof(err));
    free(jwks);
    fx->pem_a = oidc_test_pubkey_pem(&fx->a);
    oidc_policy_defaults(&fx->policy);
    fx->policy.audience = OIDC_TEST_AUDIENCE;
    fx->policy.service_account = OIDC_TEST_SA;
    return fx->ks != NULL && fx->pem_a != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    oidc_keyset_free(fx->ks);
    free(fx->pem_a);
    oidc_test_key_free(&fx->a);
    oidc_test_key_free(&fx->b);
    oidc_test_key_free(&fx->attacker);
    oidc_test_key_free(&fx->weak);
    oidc_test_key_free(&fx->ec);
    free(fx);
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static enum oidc_status verify_str(const char *token, struct oidc_claims *out)
{
    assert_non_null(token);
    return oidc_verify(fx->ks, &fx->policy, token, strlen(token), NOW, out);
}

/* Verify a token signed by `key` (RS256) with header `hdr` and the claims. */
static enum oidc_status verify_signed(const struct oidc_test_key *key, const char *hdr,
                                      const struct oidc_test_claims *c, struct oidc_claims *out)
{
    char *payload = oidc_test_claims_json(c);
    assert_non_null(payload);
    char *tok = oidc_test_rs256(key, hdr, payload);
    enum oidc_status st = verify_str(tok, out);
    free(tok);
    free(payload);
    return st;
}

static const char *const HDR_A = "{\"alg\":\"RS256\",\"kid\":\"key-a\",\"typ\":\"JWT\"}";

static enum oidc_status verify_claims(const struct oidc_test_claims *c)
{
    return verify_signed(&fx->a, HDR_A, c, NULL);
}

/* Status of a token with the default claims and header `hdr`, signed by A. */
static enum oidc_status verify_header(const char *hdr)
{
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    return verify_signed(&fx->a, hdr, &c, NULL);
}

static char *valid_token(void)
{
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    char *payload = oidc_test_claims_json(&c);
    char *tok = oidc_test_rs256(&fx->a, HDR_A, payload);
    free(payload);
    assert_non_null(tok);
    return tok;
}

/* ---- accepted tokens ---------------------------------------------------- */

static void oidc_verify__valid_token__ok_and_claims_copied(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    struct oidc_claims out;
    assert_int_equal(verify_signed(&fx->a, HDR_A, &c, &out), OIDC_OK);
    assert_string_equal(out.email, OIDC_TEST_SA);
    assert_string_equal(out.sub, "104857251813046295731");
    assert_string_equal(out.kid, "key-a");
    assert_int_equal(out.iat, NOW - 10);
    assert_int_equal(out.exp, NOW - 10 + 3600);
}

static void oidc_verify__second_jwks_key__ok(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    assert_int_equal(verify_signed(&fx->b, "{\"alg\":\"RS256\",\"kid\":\"key-b\"}", &c, NULL), OIDC_OK);
}

static void oidc_verify__short_issuer_spelling__ok(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    c.iss = "\"accounts.google.com\"";
    assert_int_equal(verify_claims(&c), OIDC_OK);
}

static void oidc_verify__null_out__ok(void **state)
{
    (void)state;
    char *tok = valid_token();
    assert_int_equal(oidc_verify(fx->ks, &fx->policy, tok, strlen(tok), NOW, NULL), OIDC_OK);
    free(tok);
}

static void oidc_verify__token_not_nul_terminated__uses_len_only(void **state)
{
    (void)state;
    char *tok = valid_token();
    size_t len = strlen(tok);
    char *buf = malloc(len + 8);
    assert_non_null(buf);
    memcpy(buf, tok, len);
    memcpy(buf + len, "garbage!", 8); /* no terminator */
    assert_int_equal(oidc_verify(fx->ks, &fx->policy, buf, len, NOW, NULL), OIDC_OK);
    assert_int_equal(oidc_verify(fx->ks, &fx->policy, buf, len + 8, NOW, NULL), OIDC_ERR_MALFORMED);
    free(buf);
    free(tok);
}

/* ---- algorithm pinning -------------------------------------------------- */

static void oidc_verify__alg_none_with_signature__err_alg(void **state)
{
    (void)state;
    assert_int_equal(verify_header("{\"alg\":\"none\",\"kid\":\"key-a\"}"), OIDC_ERR_ALG);
    assert_int_equal(verify_header("{\"alg\":\"None\",\"kid\":\"key-a\"}"), OIDC_ERR_ALG);
    assert_int_equal(verify_header("{\"alg\":\"NONE\",\"kid\":\"key-a\"}"), OIDC_ERR_ALG);
}

static void oidc_verify__alg_none_unsigned__rejected(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    char *payload = oidc_test_claims_json(&c);
    /* Classic unsigned form "h.p." (empty signature): refused as malformed. */
    char *tok = oidc_test_with_sig("{\"alg\":\"none\",\"kid\":\"key-a\"}", payload, "", 0);
    assert_int_equal(verify_str(tok, NULL), OIDC_ERR_MALFORMED);
    free(tok);
    /* With some non-empty junk signature: the alg check refuses it. */
    tok = oidc_test_with_sig("{\"alg\":\"none\",\"kid\":\"key-a\"}", payload, "x", 1);
    assert_int_equal(verify_str(tok, NULL), OIDC_ERR_ALG);
    free(tok);
    free(payload);
}

static void oidc_verify__alg_wrong_case__err_alg(void **state)
{
    (void)state;
    assert_int_equal(verify_header("{\"alg\":\"rs256\",\"kid\":\"key-a\"}"), OIDC_ERR_ALG);
    assert_int_equal(verify_header("{\"alg\":\"Rs256\",\"kid\":\"key-a\"}"), OIDC_ERR_ALG);
    assert_int_equal(verify_header("{\"alg\":\"RS256 \",\"kid\":\"key-a\"}"), OIDC_ERR_ALG);
}

static void oidc_verify__alg_missing_or_not_string__err_alg(void **state)
{
    (void)state;
    assert_int_equal(verify_header("{\"kid\":\"key-a\"}"), OIDC_ERR_ALG);
    assert_int_equal(verify_header("{\"alg\":[\"RS256\"],\"kid\":\"key-a\"}"), OIDC_ERR_ALG);
    assert_int_equal(verify_header("{\"alg\":null,\"kid\":\"key-a\"}"), OIDC_ERR_ALG);
}

static void oidc_verify__hs256_keyed_with_public_pem__err_alg(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    char *payload = oidc_test_claims_json(&c);
    char *tok = oidc_test_hs256(fx->pem_a, strlen(fx->pem_a), "{\"alg\":\"HS256\",\"kid\":\"key-a\",\"typ\":\"JWT\"}",
                                payload);
    assert_int_equal(verify_str(tok, NULL), OIDC_ERR_ALG);
    free(tok);
    /* The same HMAC relabelled RS256 is just a bad signature. */
    tok = oidc_test_hs256(fx->pem_a, strlen(fx->pem_a), HDR_A, payload);
    assert_int_equal(verify_str(tok, NULL), OIDC_ERR_SIGNATURE);
    free(tok);
    free(payload);
}

static void oidc_verify__rs512_real_signature__err_alg(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    char *payload = oidc_test_claims_json(&c);
    char *tok = oidc_test_sign(&fx->a, "SHA512", "{\"alg\":\"RS512\",\"kid\":\"key-a\"}", payload, strlen(payload));
    assert_int_equal(verify_str(tok, NULL), OIDC_ERR_ALG);
    free(tok);
    /* An RS512 signature under an RS256 label does not verify either. */
    tok = oidc_test_sign(&fx->a, "SHA512", HDR_A, payload, strlen(payload));
    assert_int_equal(verify_str(tok, NULL), OIDC_ERR_SIGNATURE);
    free(tok);
    free(payload);
}

static void oidc_verify__es256_real_signature__err_alg(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    char *payload = oidc_test_claims_json(&c);
    char *tok = oidc_test_sign(&fx->ec, "SHA256", "{\"alg\":\"ES256\",\"kid\":\"key-a\"}", payload, strlen(payload));
    assert_int_equal(verify_str(tok, NULL), OIDC_ERR_ALG);
    free(tok);
    free(payload);
}

static void oidc_verify__ps256__err_alg(void **state)
{
    (void)state;
    assert_int_equal(verify_header("{\"alg\":\"PS256\",\"kid\":\"key-a\"}"), OIDC_ERR_ALG);
}

/* ---- other header rules ------------------------------------------------- */

static void oidc_verify__typ_other_than_jwt__malformed(void **state)
{
    (void)state;
    assert_int_equal(verify_header("{\"alg\":\"RS256\",\"kid\":\"key-a\",\"typ\":\"at+jwt\"}"), OIDC_ERR_MALFORMED);
    assert_int_equal(verify_header("{\"alg\":\"RS256\",\"kid\":\"key-a\",\"typ\":1}"), OIDC_ERR_MALFORMED);
    assert_int_equal(verify_header("{\"alg\":\"RS256\",\"kid\":\"key-a\"}"), OIDC_OK); /* typ optional */
}

static void oidc_verify__crit_header__malformed(void **state)
{
    (void)state;
    assert_int_equal(verify_header("{\"alg\":\"RS256\",\"kid\":\"key-a\",\"crit\":[\"b64\"],\"b64\":false}"),
                     OIDC_ERR_MALFORMED);
}

static void oidc_verify__kid_missing_empty_or_not_string__malformed(void **state)
{
    (void)state;
    assert_int_equal(verify_header("{\"alg\":\"RS256\"}"), OIDC_ERR_MALFORMED);
    assert_int_equal(verify_header("{\"alg\":\"RS256\",\"kid\":\"\"}"), OIDC_ERR_MALFORMED);
    assert_int_equal(verify_header("{\"alg\":\"RS256\",\"kid\":7}"), OIDC_ERR_MALFORMED);
    assert_int_equal(verify_header("{\"alg\":\"RS256\",\"kid\":{\"a\":1}}"), OIDC_ERR_MALFORMED);
}

static void oidc_verify__huge_kid__malformed(void **state)
{
    (void)state;
    char kid[OIDC_KID_MAX + 2];
    memset(kid, 'k', sizeof(kid) - 1);
    kid[sizeof(kid) - 1] = '\0';
    char hdr[300];
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"RS256\",\"kid\":\"%s\"}", kid); /* 129 bytes */
    assert_int_equal(verify_header(hdr), OIDC_ERR_MALFORMED);
    kid[OIDC_KID_MAX] = '\0'; /* 128 bytes: accepted length, just unknown */
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"RS256\",\"kid\":\"%s\"}", kid);
    assert_int_equal(verify_header(hdr), OIDC_ERR_UNKNOWN_KID);
}

static void oidc_verify__unknown_kid__err_kid_and_kid_reported(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    struct oidc_claims out;
    assert_int_equal(verify_signed(&fx->a, "{\"alg\":\"RS256\",\"kid\":\"rotated-key\"}", &c, &out),
                     OIDC_ERR_UNKNOWN_KID);
    assert_string_equal(out.kid, "rotated-key");
    assert_string_equal(out.email, ""); /* claims are not read before the signature */
}

static void oidc_verify__no_keyset_yet__err_kid(void **state)
{
    (void)state;
    char *tok = valid_token();
    assert_int_equal(oidc_verify(NULL, &fx->policy, tok, strlen(tok), NOW, NULL), OIDC_ERR_UNKNOWN_KID);
    free(tok);
}

static void oidc_verify__key_headers_jku_x5u_jwk_x5c__ignored(void **state)
{
    (void)state;
    char *jwk = oidc_test_jwk_json(&fx->attacker, NULL);
    assert_non_null(jwk);
    char hdr[4096];
    snprintf(hdr, sizeof(hdr),
             "{\"alg\":\"RS256\",\"kid\":\"key-a\",\"jku\":\"https://evil.example/jwks\","
             "\"x5u\":\"https://evil.example/cert\",\"x5c\":[\"MIIB\"],\"jwk\":%s}",
             jwk);
    /* Signed by the real key: the extra headers change nothing. */
    assert_int_equal(verify_header(hdr), OIDC_OK);
    free(jwk);
}

static void oidc_verify__signed_by_key_embedded_in_jwk_header__rejected(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    char *jwk = oidc_test_jwk_json(&fx->attacker, NULL);
    assert_non_null(jwk);
    char hdr[4096];
    /* The attacker claims a trusted kid and ships his own key in `jwk`. */
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"RS256\",\"kid\":\"key-a\",\"jwk\":%s}", jwk);
    assert_int_equal(verify_signed(&fx->attacker, hdr, &c, NULL), OIDC_ERR_SIGNATURE);
    /* ... or his own kid: not in the JWKS. */
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"RS256\",\"kid\":\"key-attacker\",\"jwk\":%s,\"jku\":\"https://evil/\"}",
             jwk);
    assert_int_equal(verify_signed(&fx->attacker, hdr, &c, NULL), OIDC_ERR_UNKNOWN_KID);
    free(jwk);
}

/* ---- signature ---------------------------------------------------------- */

static void oidc_verify__signed_by_other_key__err_signature(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    assert_int_equal(verify_signed(&fx->attacker, HDR_A, &c, NULL), OIDC_ERR_SIGNATURE);
    assert_int_equal(verify_signed(&fx->b, HDR_A, &c, NULL), OIDC_ERR_SIGNATURE); /* B's sig under A's kid */
}

/* Replace one base64url character of segment `seg` at offset `at` by another
 * value, keeping the token well-formed. */
static void flip_char(char *tok, int seg, size_t at)
{
    char *p = tok;
    for (int i = 0; i < seg; i++) p = strchr(p, '.') + 1;
    p[at] = p[at] == 'A' ? 'B' : 'A';
}

static void oidc_verify__one_flipped_payload_byte__err_signature(void **state)
{
    (void)state;
    char *tok = valid_token();
    flip_char(tok, 1, 20);
    assert_int_equal(verify_str(tok, NULL), OIDC_ERR_SIGNATURE);
    free(tok);
}

static void oidc_verify__one_flipped_header_or_signature_byte__rejected(void **state)
{
    (void)state;
    char *tok = valid_token();
    flip_char(tok, 2, 10);
    assert_int_equal(verify_str(tok, NULL), OIDC_ERR_SIGNATURE);
    free(tok);
    /* Header {"alg":"RS256","kid":"key-a","typ":"JWT"}: change inside the kid
     * value ("a" → another letter still decodes as valid JSON). */
    tok = valid_token();
    char *dot = strchr(tok, '.');
    size_t hlen = (size_t)(dot - tok);
    assert_true(hlen > 40);
    tok[36] = tok[36] == 'Z' ? 'Y' : 'Z';
    assert_int_not_equal(verify_str(tok, NULL), OIDC_OK);
    free(tok);
}

static void oidc_verify__truncated_or_extended_signature__err_signature(void **state)
{
    (void)state;
    char *tok = valid_token();
    size_t len = strlen(tok);
    /* 256 bytes are 342 characters; the first 340 are exactly 255 bytes. */
    assert_int_equal(strlen(strrchr(tok, '.') + 1), 342);
    assert_int_equal(oidc_verify(fx->ks, &fx->policy, tok, len - 2, NOW, NULL), OIDC_ERR_SIGNATURE);
    char *longer = malloc(len + 5);
    assert_non_null(longer);
    memcpy(longer, tok, len);
    memcpy(longer + len, "AAAA", 5);
    assert_int_equal(verify_str(longer, NULL), OIDC_ERR_SIGNATURE);
    free(longer);
    free(tok);
}

/* ---- claims ------------------------------------------------------------- */

static void oidc_verify__wrong_or_missing_iss__rejected(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    c.iss = "\"https://evil.example.com\"";
    assert_int_equal(verify_claims(&c), OIDC_ERR_ISSUER);
    c.iss = "\"https://accounts.google.com/\"";
    assert_int_equal(verify_claims(&c), OIDC_ERR_ISSUER);
    c.iss = "[\"https://accounts.google.com\"]";
    assert_int_equal(verify_claims(&c), OIDC_ERR_ISSUER);
    c.iss = NULL;
    assert_int_equal(verify_claims(&c), OIDC_ERR_MISSING_CLAIM);
}

static void oidc_verify__wrong_or_missing_aud__rejected(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    c.aud = "\"https://other.example.com\"";
    assert_int_equal(verify_claims(&c), OIDC_ERR_AUDIENCE);
    c.aud = "\"" OIDC_TEST_AUDIENCE "?x=1\"";
    assert_int_equal(verify_claims(&c), OIDC_ERR_AUDIENCE);
    c.aud = "{\"aud\":\"" OIDC_TEST_AUDIENCE "\"}";
    assert_int_equal(verify_claims(&c), OIDC_ERR_AUDIENCE);
    c.aud = NULL;
    assert_int_equal(verify_claims(&c), OIDC_ERR_MISSING_CLAIM);
}

static void oidc_verify__aud_array__only_single_element_of_ours_accepted(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    c.aud = "[\"" OIDC_TEST_AUDIENCE "\"]";
    assert_int_equal(verify_claims(&c), OIDC_OK);
    c.aud = "[\"https://other.example.com\",\"" OIDC_TEST_AUDIENCE "\"]";
    assert_int_equal(verify_claims(&c), OIDC_ERR_AUDIENCE);
    c.aud = "[\"" OIDC_TEST_AUDIENCE "\",\"https://other.example.com\"]";
    assert_int_equal(verify_claims(&c), OIDC_ERR_AUDIENCE);
    c.aud = "[\"" OIDC_TEST_AUDIENCE "\",\"" OIDC_TEST_AUDIENCE "\"]";
    assert_int_equal(verify_claims(&c), OIDC_ERR_AUDIENCE);
    c.aud = "[\"https://other.example.com\"]";
    assert_int_equal(verify_claims(&c), OIDC_ERR_AUDIENCE);
    c.aud = "[]";
    assert_int_equal(verify_claims(&c), OIDC_ERR_AUDIENCE);
    c.aud = "[[\"" OIDC_TEST_AUDIENCE "\"]]";
    assert_int_equal(verify_claims(&c), OIDC_ERR_AUDIENCE);
}

static void oidc_verify__wrong_or_missing_email__rejected(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    c.email = "\"someone-else@demo-project.iam.gserviceaccount.com\"";
    assert_int_equal(verify_claims(&c), OIDC_ERR_EMAIL);
    c.email = "\"FOLLOWUPD-INVOKER@demo-project.iam.gserviceaccount.com\"";
    assert_int_equal(verify_claims(&c), OIDC_ERR_EMAIL);
    c.email = "{\"email\":\"" OIDC_TEST_SA "\"}";
    assert_int_equal(verify_claims(&c), OIDC_ERR_EMAIL);
    c.email = NULL;
    assert_int_equal(verify_claims(&c), OIDC_ERR_MISSING_CLAIM);
}

static void oidc_verify__email_verified_not_true__rejected(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    c.email_verified = "false";
    assert_int_equal(verify_claims(&c), OIDC_ERR_EMAIL_UNVERIFIED);
    c.email_verified = "\"true\"";
    assert_int_equal(verify_claims(&c), OIDC_ERR_EMAIL_UNVERIFIED);
    c.email_verified = "1";
    assert_int_equal(verify_claims(&c), OIDC_ERR_EMAIL_UNVERIFIED);
    c.email_verified = NULL;
    assert_int_equal(verify_claims(&c), OIDC_ERR_MISSING_CLAIM);
}

static void set_times(struct oidc_test_claims *c, int64_t iat, int64_t exp)
{
    snprintf(c->iat_buf, sizeof(c->iat_buf), "%lld", (long long)iat);
    snprintf(c->exp_buf, sizeof(c->exp_buf), "%lld", (long long)exp);
    c->iat = c->iat_buf;
    c->exp = c->exp_buf;
}

static void oidc_verify__expired__rejected_beyond_skew_only(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    set_times(&c, NOW - 3600, NOW - 61);
    assert_int_equal(verify_claims(&c), OIDC_ERR_EXPIRED);
    set_times(&c, NOW - 3600, NOW - 60); /* exp must be > now - skew */
    assert_int_equal(verify_claims(&c), OIDC_ERR_EXPIRED);
    set_times(&c, NOW - 3600, NOW - 59);
    assert_int_equal(verify_claims(&c), OIDC_OK);
    set_times(&c, NOW - 3600, NOW - 30);
    assert_int_equal(verify_claims(&c), OIDC_OK);
}

static void oidc_verify__iat_in_future__rejected_beyond_skew_only(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    set_times(&c, NOW + 61, NOW + 61 + 3600);
    assert_int_equal(verify_claims(&c), OIDC_ERR_IAT_FUTURE);
    set_times(&c, NOW + 60, NOW + 60 + 3600);
    assert_int_equal(verify_claims(&c), OIDC_OK);
}

static void oidc_verify__lifetime_over_max__rejected(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    set_times(&c, NOW - 10, NOW - 10 + 86401);
    assert_int_equal(verify_claims(&c), OIDC_ERR_LIFETIME);
    set_times(&c, NOW - 10, NOW - 10 + 86400);
    assert_int_equal(verify_claims(&c), OIDC_OK);
    set_times(&c, NOW, NOW); /* exp == iat */
    assert_int_equal(verify_claims(&c), OIDC_ERR_LIFETIME);
    set_times(&c, NOW, NOW - 5); /* exp before iat */
    assert_int_equal(verify_claims(&c), OIDC_ERR_LIFETIME);
}

static void oidc_verify__missing_exp_or_iat__missing_claim(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    c.exp = NULL;
    assert_int_equal(verify_claims(&c), OIDC_ERR_MISSING_CLAIM);
    oidc_test_claims_default(&c, NOW);
    c.iat = NULL;
    assert_int_equal(verify_claims(&c), OIDC_ERR_MISSING_CLAIM);
}

static void oidc_verify__non_numeric_or_out_of_range_times__malformed(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    const char *bad[] = {"\"1767229190\"", "null", "true", "[1767229190]", "{\"t\":1}", "-1", "1e300",
                         "253402300800", "-0.5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        oidc_test_claims_default(&c, NOW);
        c.exp = bad[i];
        assert_int_equal(verify_claims(&c), OIDC_ERR_MALFORMED);
        oidc_test_claims_default(&c, NOW);
        c.iat = bad[i];
        assert_int_equal(verify_claims(&c), OIDC_ERR_MALFORMED);
    }
}

static void oidc_verify__real_number_times__accepted_rounded_strictly(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    c.iat = "1767225590.2";
    c.exp = "1767229190.9";
    struct oidc_claims out;
    assert_int_equal(verify_signed(&fx->a, HDR_A, &c, &out), OIDC_OK);
    assert_int_equal(out.iat, 1767225591); /* rounded up */
    assert_int_equal(out.exp, 1767229190); /* rounded down */
}

static void oidc_verify__nbf__checked_when_present(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    c.extra = ",\"nbf\":1767225900";
    assert_int_equal(verify_claims(&c), OIDC_ERR_NOT_YET_VALID);
    c.extra = ",\"nbf\":1767225000";
    assert_int_equal(verify_claims(&c), OIDC_OK);
    c.extra = ",\"nbf\":\"soon\"";
    assert_int_equal(verify_claims(&c), OIDC_ERR_MALFORMED);
}

static void oidc_verify__sub_not_string_or_too_long__malformed(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    c.sub = "{\"id\":1}";
    assert_int_equal(verify_claims(&c), OIDC_ERR_MALFORMED);
    char longsub[300];
    memset(longsub, '1', sizeof(longsub));
    longsub[0] = '"';
    longsub[sizeof(longsub) - 2] = '"';
    longsub[sizeof(longsub) - 1] = '\0';
    c.sub = longsub;
    assert_int_equal(verify_claims(&c), OIDC_ERR_MALFORMED);
    c.sub = NULL; /* optional */
    assert_int_equal(verify_claims(&c), OIDC_OK);
}

static void oidc_verify__duplicate_claim_keys__malformed(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    c.extra = ",\"aud\":\"https://other.example.com\"";
    assert_int_equal(verify_claims(&c), OIDC_ERR_MALFORMED);
    oidc_test_claims_default(&c, NOW);
    c.extra = ",\"email\":\"" OIDC_TEST_SA "\"";
    assert_int_equal(verify_claims(&c), OIDC_ERR_MALFORMED);
}

static void oidc_verify__duplicate_header_keys__malformed(void **state)
{
    (void)state;
    assert_int_equal(verify_header("{\"alg\":\"RS256\",\"alg\":\"none\",\"kid\":\"key-a\"}"), OIDC_ERR_MALFORMED);
    assert_int_equal(verify_header("{\"alg\":\"RS256\",\"kid\":\"key-b\",\"kid\":\"key-a\"}"), OIDC_ERR_MALFORMED);
}

static void oidc_verify__non_utf8_in_claims__malformed(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    c.sub = "\"abc\xff\xfe\"";
    assert_int_equal(verify_claims(&c), OIDC_ERR_MALFORMED);
    c.sub = "\"\xc0\xaf\""; /* overlong '/' */
    assert_int_equal(verify_claims(&c), OIDC_ERR_MALFORMED);
    oidc_test_claims_default(&c, NOW);
    c.email = "\"" OIDC_TEST_SA "\\u0000.evil\""; /* embedded NUL */
    assert_int_equal(verify_claims(&c), OIDC_ERR_MALFORMED);
}

static void oidc_verify__claims_not_an_object__malformed(void **state)
{
    (void)state;
    const char *payloads[] = {"[1,2]", "\"str\"", "42", "{", "{}x", ""};
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        char *tok = oidc_test_rs256(&fx->a, HDR_A, payloads[i]);
        assert_non_null(tok);
        enum oidc_status st = verify_str(tok, NULL);
        /* "" encodes to an empty segment: malformed before the signature. */
        assert_int_equal(st, OIDC_ERR_MALFORMED);
        free(tok);
    }
}

/* ---- structure and encoding -------------------------------------------- */

static void oidc_verify__wrong_segment_count_or_empty_segments__malformed(void **state)
{
    (void)state;
    char *tok = valid_token();
    char buf[4096];
    const char *cases[] = {"%s.AAAA", "AAAA.%s", "%s.", ".%s"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(buf, sizeof(buf), cases[i], tok);
        assert_int_equal(verify_str(buf, NULL), OIDC_ERR_MALFORMED);
    }
    /* two segments */
    char *last_dot = strrchr(tok, '.');
    assert_int_equal(oidc_verify(fx->ks, &fx->policy, tok, (size_t)(last_dot - tok), NOW, NULL), OIDC_ERR_MALFORMED);
    const char *literal[] = {"", ".", "..", "...", "a..b", ".a.b", "a.b.", "abc"};
    for (size_t i = 0; i < sizeof(literal) / sizeof(literal[0]); i++)
        assert_int_equal(verify_str(literal[i], NULL), OIDC_ERR_MALFORMED);
    free(tok);
}

static void oidc_verify__non_base64url_characters__malformed(void **state)
{
    (void)state;
    const char bad_chars[] = {'+', '/', '=', ' ', '\n', '\0', '%', (char)0xc3};
    for (size_t i = 0; i < sizeof(bad_chars); i++) {
        char *tok = valid_token();
        size_t len = strlen(tok);
        tok[len / 2] = bad_chars[i];
        assert_int_equal(oidc_verify(fx->ks, &fx->policy, tok, len, NOW, NULL), OIDC_ERR_MALFORMED);
        free(tok);
    }
}

static void oidc_verify__padded_or_non_canonical_base64__malformed(void **state)
{
    (void)state;
    /* The header segment with '=' padding appended. */
    char *tok = valid_token();
    char buf[4096];
    char *dot = strchr(tok, '.');
    snprintf(buf, sizeof(buf), "%.*s==%s", (int)(dot - tok), tok, dot);
    assert_int_equal(verify_str(buf, NULL), OIDC_ERR_MALFORMED);
    free(tok);
    /* A segment length % 4 == 1 is impossible in base64. */
    assert_int_equal(verify_str("e30AA.e30.AAAA", NULL), OIDC_ERR_MALFORMED);
    assert_int_equal(verify_str("e30A.e30.AAAA", NULL), OIDC_ERR_MALFORMED); /* "{}" + stray bits */
    /* "eyJ9" would be "{\"}"; "e30" is "{}" and "e31" has non-zero trailing bits. */
    assert_int_equal(verify_str("e31.e30.AAAA", NULL), OIDC_ERR_MALFORMED);
    assert_int_equal(verify_str("e30.e30.AAAA", NULL), OIDC_ERR_ALG); /* canonical twin parses */
}

static void oidc_verify__malformed_header_json__malformed(void **state)
{
    (void)state;
    assert_int_equal(verify_header("{\"alg\":\"RS256\",\"kid\":\"key-a\""), OIDC_ERR_MALFORMED);
    assert_int_equal(verify_header("[\"RS256\"]"), OIDC_ERR_MALFORMED);
    assert_int_equal(verify_header("not json"), OIDC_ERR_MALFORMED);
    assert_int_equal(verify_header("{\"alg\":\"RS256\",\"kid\":\"key-\xff\"}"), OIDC_ERR_MALFORMED);
}

static void oidc_verify__oversize_token__too_large(void **state)
{
    (void)state;
    size_t big = 1024 * 1024;
    char *buf = malloc(big);
    assert_non_null(buf);
    memset(buf, 'A', big);
    buf[100] = '.';
    buf[200] = '.';
    assert_int_equal(oidc_verify(fx->ks, &fx->policy, buf, big, NOW, NULL), OIDC_ERR_TOO_LARGE);
    assert_int_equal(oidc_verify(fx->ks, &fx->policy, buf, fx->policy.max_token_bytes + 1, NOW, NULL),
                     OIDC_ERR_TOO_LARGE);
    free(buf);
    /* A valid token padded with a long claim beyond the cap. */
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    char *pad = malloc(4000);
    assert_non_null(pad);
    snprintf(pad, 4000, ",\"pad\":\"%03990d\"", 0);
    c.extra = pad;
    assert_int_equal(verify_claims(&c), OIDC_ERR_TOO_LARGE);
    free(pad);
}

static void oidc_verify__invalid_policy_or_time__internal(void **state)
{
    (void)state;
    char *tok = valid_token();
    size_t len = strlen(tok);
    struct oidc_policy p = fx->policy;
    p.audience = NULL;
    assert_int_equal(oidc_verify(fx->ks, &p, tok, len, NOW, NULL), OIDC_ERR_INTERNAL);
    p = fx->policy;
    p.service_account = "";
    assert_int_equal(oidc_verify(fx->ks, &p, tok, len, NOW, NULL), OIDC_ERR_INTERNAL);
    p = fx->policy;
    p.n_issuers = 0;
    assert_int_equal(oidc_verify(fx->ks, &p, tok, len, NOW, NULL), OIDC_ERR_INTERNAL);
    p = fx->policy;
    p.clock_skew_s = -1;
    assert_int_equal(oidc_verify(fx->ks, &p, tok, len, NOW, NULL), OIDC_ERR_INTERNAL);
    assert_int_equal(oidc_verify(fx->ks, NULL, tok, len, NOW, NULL), OIDC_ERR_INTERNAL);
    assert_int_equal(oidc_verify(fx->ks, &fx->policy, tok, len, -5, NULL), OIDC_ERR_INTERNAL);
    assert_int_equal(oidc_verify(fx->ks, &fx->policy, NULL, 10, NOW, NULL), OIDC_ERR_INTERNAL);
    assert_int_equal(oidc_verify(fx->ks, &fx->policy, NULL, 0, NOW, NULL), OIDC_ERR_MALFORMED);
    free(tok);
}

static void oidc_verify__custom_policy__applied(void **state)
{
    (void)state;
    struct oidc_test_claims c;
    oidc_test_claims_default(&c, NOW);
    set_times(&c, NOW - 3600, NOW - 200); /* 200 s ago: ok with a 300 s skew */
    char *payload = oidc_test_claims_json(&c);
    char *tok = oidc_test_rs256(&fx->a, HDR_A, payload);
    struct oidc_policy p = fx->policy;
    assert_int_equal(oidc_verify(fx->ks, &p, tok, strlen(tok), NOW, NULL), OIDC_ERR_EXPIRED);
    p.clock_skew_s = 300;
    assert_int_equal(oidc_verify(fx->ks, &p, tok, strlen(tok), NOW, NULL), OIDC_OK);
    static const char *const only_short[] = {"accounts.google.com"};
    p.issuers = only_short;
    p.n_issuers = 1;
    assert_int_equal(oidc_verify(fx->ks, &p, tok, strlen(tok), NOW, NULL), OIDC_ERR_ISSUER);
    free(tok);
    free(payload);
}

/* ---- keysets from JWKS --------------------------------------------------- */

static void oidc_keyset_from_jwks__bad_keys__skipped(void **state)
{
    (void)state;
    char *n = oidc_test_rsa_n(&fx->b);
    char *e = oidc_test_rsa_e(&fx->b);
    char *weak_n = oidc_test_rsa_n(&fx->weak);
    char *good = oidc_test_jwk_json(&fx->a, NULL);
    char *dup_kid_other_key = oidc_test_jwk_json(&fx->b, NULL);
    assert_non_null(good);
    /* rename B's JWK to claim kid key-a: must not replace A */
    char *p = strstr(dup_kid_other_key, "\"kid\":\"key-b\"");
    assert_non_null(p);
    p[11] = 'a';
    char *json = NULL;
    int rc = asprintf(&json,
        "{\"keys\":["
        "{\"kty\":\"EC\",\"kid\":\"ec\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"},"
        "{\"kty\":\"RSA\",\"alg\":\"RS512\",\"kid\":\"k1\",\"n\":\"%s\",\"e\":\"%s\"},"
        "{\"kty\":\"RSA\",\"use\":\"enc\",\"kid\":\"k2\",\"n\":\"%s\",\"e\":\"%s\"},"
        "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"},"
        "{\"kty\":\"RSA\",\"kid\":\"k4\",\"n\":\"%s=\",\"e\":\"%s\"},"
        "{\"kty\":\"RSA\",\"kid\":\"k5\",\"n\":\"%s\",\"e\":\"AAE\"},"
        "{\"kty\":\"RSA\",\"kid\":\"k6\",\"n\":\"%s\",\"e\":\"%s\"},"
        "{\"kty\":\"RSA\",\"kid\":\"k7\",\"n\":\"%s\"},"
        "{\"kty\":\"RSA\",\"kid\":\"k8\",\"n\":\"%s\",\"e\":\"AQAC\"},"
        "{\"kty\":\"RSA\",\"kid\":\"k9\",\"key_ops\":[\"encrypt\"],\"n\":\"%s\",\"e\":\"%s\"},"
        "{\"kty\":\"rsa\",\"kid\":\"k10\",\"n\":\"%s\",\"e\":\"%s\"},"
        "{\"kty\":\"RSA\",\"kid\":12,\"n\":\"%s\",\"e\":\"%s\"},"
        "\"not an object\","
        "%s,%s,"
        "{\"kty\":\"RSA\",\"kid\":\"k-ok-ops\",\"key_ops\":[\"verify\"],\"n\":\"%s\",\"e\":\"%s\"}"
        "]}",
        n, e, n, e, n, e, n, e, n, weak_n, e, n, n, n, e, n, e, n, e, good, dup_kid_other_key, n, e);
    assert_true(rc > 0);
    char err[128] = "x";
    struct oidc_keyset *ks = oidc_keyset_from_jwks(json, strlen(json), err, sizeof(err));
    assert_non_null(ks);
    assert_int_equal(oidc_keyset_size(ks), 2);
    assert_int_equal(oidc_keyset_skipped(ks), 14);
    assert_true(oidc_keyset_has_kid(ks, "key-a"));
    assert_true(oidc_keyset_has_kid(ks, "k-ok-ops"));
    assert_false(oidc_keyset_has_kid(ks, "k1"));
    assert_false(oidc_keyset_has_kid(ks, "k6")); /* 1024-bit */
    /* key-a is A's key, not B's that came second with the same kid */
    char *tok = valid_token();
    assert_int_equal(oidc_verify(ks, &fx->policy, tok, strlen(tok), NOW, NULL), OIDC_OK);
    free(tok);
    oidc_keyset_free(ks);
    free(json);
    free(n);
    free(e);
    free(weak_n);
    free(good);
    free(dup_kid_other_key);
}

static void oidc_keyset_from_jwks__unusable_documents__null_with_reason(void **state)
{
    (void)state;
    const char *docs[] = {"", "{", "[]", "{\"keys\":{}}", "{\"keys\":[]}", "{\"nokeys\":[]}",
                          "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"x\"}]}", "{\"keys\":[],\"keys\":[]}"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        char err[128] = "";
        assert_null(oidc_keyset_from_jwks(docs[i], strlen(docs[i]), err, sizeof(err)));
        assert_true(err[0] != '\0');
    }
    assert_null(oidc_keyset_from_jwks(NULL, 0, NULL, 0));
}

static void oidc_keyset_has_kid__lookups__exact(void **state)
{
    (void)state;
    assert_int_equal(oidc_keyset_size(fx->ks), 2);
    assert_true(oidc_keyset_has_kid(fx->ks, "key-a"));
    assert_true(oidc_keyset_has_kid(fx->ks, "key-b"));
    assert_false(oidc_keyset_has_kid(fx->ks, "KEY-A"));
    assert_false(oidc_keyset_has_kid(fx->ks, "key-"));
    assert_false(oidc_keyset_has_kid(fx->ks, NULL));
    assert_false(oidc_keyset_has_kid(NULL, "key-a"));
    assert_int_equal(oidc_keyset_size(NULL), 0);
}

/* ---- names and bearer ---------------------------------------------------- */

static void oidc_status_name__every_status__short_distinct_names(void **state)
{
    (void)state;
    assert_string_equal(oidc_status_name(OIDC_OK), "ok");
    assert_string_equal(oidc_status_name(OIDC_ERR_ALG), "alg");
    assert_string_equal(oidc_status_name(OIDC_ERR_UNKNOWN_KID), "kid");
    assert_string_equal(oidc_status_name(OIDC_ERR_SIGNATURE), "signature");
    assert_string_equal(oidc_status_name(OIDC_ERR_ISSUER), "iss");
    assert_string_equal(oidc_status_name(OIDC_ERR_AUDIENCE), "aud");
    for (int i = OIDC_OK; i <= OIDC_ERR_INTERNAL; i++) {
        const char *a = oidc_status_name((enum oidc_status)i);
        assert_true(strlen(a) > 0 && strcmp(a, "unknown") != 0);
        for (int j = i + 1; j <= OIDC_ERR_INTERNAL; j++)
            assert_string_not_equal(a, oidc_status_name((enum oidc_status)j));
    }
}

static void oidc_extract_bearer__well_formed__token_returned(void **state)
{
    (void)state;
    const char *hdrs[] = {"Bearer abc.def.ghi", "bearer abc.def.ghi", "BEARER abc.def.ghi"};
    for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
        const char *tok = NULL;
        size_t len = 0;
        assert_int_equal(oidc_extract_bearer(hdrs[i], &tok, &len), 0);
        assert_int_equal(len, 11);
        assert_memory_equal(tok, "abc.def.ghi", 11);
    }
}

static void oidc_extract_bearer__malformed__rejected(void **state)
{
    (void)state;
    const char *hdrs[] = {"", "Bearer", "Bearer ", "Bearer  abc", "Bearerabc", "Basic abc", "Bearer\tabc",
                          "Bearer abc def", "Bearer abc ", "Bearer abc,def", "Bearer a\x01", "Bearer a\xc3\xa9",
                          " Bearer abc", "Bear abc", "Bearer\r\nabc"};
    for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
        const char *tok = NULL;
        size_t len = 0;
        assert_int_equal(oidc_extract_bearer(hdrs[i], &tok, &len), -1);
    }
    const char *tok;
    size_t len;
    assert_int_equal(oidc_extract_bearer(NULL, &tok, &len), -1);
}

static void oidc_extract_bearer__then_verify__ok(void **state)
{
    (void)state;
    char *tok = valid_token();
    char hdr[4096];
    snprintf(hdr, sizeof(hdr), "Bearer %s", tok);
    const char *t;
    size_t len;
    assert_int_equal(oidc_extract_bearer(hdr, &t, &len), 0);
    assert_int_equal(oidc_verify(fx->ks, &fx->policy, t, len, NOW, NULL), OIDC_OK);
    free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(oidc_verify__valid_token__ok_and_claims_copied),
        cmocka_unit_test(oidc_verify__second_jwks_key__ok),
        cmocka_unit_test(oidc_verify__short_issuer_spelling__ok),
        cmocka_unit_test(oidc_verify__null_out__ok),
        cmocka_unit_test(oidc_verify__token_not_nul_terminated__uses_len_only),
        cmocka_unit_test(oidc_verify__alg_none_with_signature__err_alg),
        cmocka_unit_test(oidc_verify__alg_none_unsigned__rejected),
        cmocka_unit_test(oidc_verify__alg_wrong_case__err_alg),
        cmocka_unit_test(oidc_verify__alg_missing_or_not_string__err_alg),
        cmocka_unit_test(oidc_verify__hs256_keyed_with_public_pem__err_alg),
        cmocka_unit_test(oidc_verify__rs512_real_signature__err_alg),
        cmocka_unit_test(oidc_verify__es256_real_signature__err_alg),
        cmocka_unit_test(oidc_verify__ps256__err_alg),
        cmocka_unit_test(oidc_verify__typ_other_than_jwt__malformed),
        cmocka_unit_test(oidc_verify__crit_header__malformed),
        cmocka_unit_test(oidc_verify__kid_missing_empty_or_not_string__malformed),
        cmocka_unit_test(oidc_verify__huge_kid__malformed),
        cmocka_unit_test(oidc_verify__unknown_kid__err_kid_and_kid_reported),
        cmocka_unit_test(oidc_verify__no_keyset_yet__err_kid),
        cmocka_unit_test(oidc_verify__key_headers_jku_x5u_jwk_x5c__ignored),
        cmocka_unit_test(oidc_verify__signed_by_key_embedded_in_jwk_header__rejected),
        cmocka_unit_test(oidc_verify__signed_by_other_key__err_signature),
        cmocka_unit_test(oidc_verify__one_flipped_payload_byte__err_signature),
        cmocka_unit_test(oidc_verify__one_flipped_header_or_signature_byte__rejected),
        cmocka_unit_test(oidc_verify__truncated_or_extended_signature__err_signature),
        cmocka_unit_test(oidc_verify__wrong_or_missing_iss__rejected),
        cmocka_unit_test(oidc_verify__wrong_or_missing_aud__rejected),
        cmocka_unit_test(oidc_verify__aud_array__only_single_element_of_ours_accepted),
        cmocka_unit_test(oidc_verify__wrong_or_missing_email__rejected),
        cmocka_unit_test(oidc_verify__email_verified_not_true__rejected),
        cmocka_unit_test(oidc_verify__expired__rejected_beyond_skew_only),
        cmocka_unit_test(oidc_verify__iat_in_future__rejected_beyond_skew_only),
        cmocka_unit_test(oidc_verify__lifetime_over_max__rejected),
        cmocka_unit_test(oidc_verify__missing_exp_or_iat__missing_claim),
        cmocka_unit_test(oidc_verify__non_numeric_or_out_of_range_times__malformed),
        cmocka_unit_test(oidc_verify__real_number_times__accepted_rounded_strictly),
        cmocka_unit_test(oidc_verify__nbf__checked_when_present),
        cmocka_unit_test(oidc_verify__sub_not_string_or_too_long__malformed),
        cmocka_unit_test(oidc_verify__duplicate_claim_keys__malformed),
        cmocka_unit_test(oidc_verify__duplicate_header_keys__malformed),
        cmocka_unit_test(oidc_verify__non_utf8_in_claims__malformed),
        cmocka_unit_test(oidc_verify__claims_not_an_object__malformed),
        cmocka_unit_test(oidc_verify__wrong_segment_count_or_empty_segments__malformed),
        cmocka_unit_test(oidc_verify__non_base64url_characters__malformed),
        cmocka_unit_test(oidc_verify__padded_or_non_canonical_base64__malformed),
        cmocka_unit_test(oidc_verify__malformed_header_json__malformed),
        cmocka_unit_test(oidc_verify__oversize_token__too_large),
        cmocka_unit_test(oidc_verify__invalid_policy_or_time__internal),
        cmocka_unit_test(oidc_verify__custom_policy__applied),
        cmocka_unit_test(oidc_keyset_from_jwks__bad_keys__skipped),
        cmocka_unit_test(oidc_keyset_from_jwks__unusable_documents__null_with_reason),
        cmocka_unit_test(oidc_keyset_has_kid__lookups__exact),
        cmocka_unit_test(oidc_status_name__every_status__short_distinct_names),
        cmocka_unit_test(oidc_extract_bearer__well_formed__token_returned),
        cmocka_unit_test(oidc_extract_bearer__malformed__rejected),
        cmocka_unit_test(oidc_extract_bearer__then_verify__ok),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
