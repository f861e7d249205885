/*
 * tests/unit/support/oidc_testkit — real keys, JWKS documents and signed JWTs
 * for the OIDC verifier and JWKS cache tests.
 *
 * Keys are generated with OpenSSL (EVP_RSA_gen / EVP_EC_gen); JWKS n/e are the
 * key's own parameters in base64url; tokens are signed with EVP_DigestSign
 * (RSA PKCS#1 v1.5 with any digest, ECDSA) or HMAC, over header/payload text
 * given verbatim so tests can craft duplicates, odd types or invalid UTF-8.
 * Every returned string is malloc'd (free() it); NULL only on failure.
 */
#ifndef FOLLOWUPD_TESTS_OIDC_TESTKIT_H
#define FOLLOWUPD_TESTS_OIDC_TESTKIT_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#define OIDC_TEST_AUDIENCE "https://followupd.example.com/callbacks"
#define OIDC_TEST_SA "followupd-invoker@demo-project.iam.gserviceaccount.com"
#define OIDC_TEST_ISSUER "https://accounts.google.com"

struct oidc_test_key {
    EVP_PKEY *pkey;
    char kid[64];
};

int oidc_test_rsa_key(struct oidc_test_key *k, const char *kid); /* RSA-2048; 0/-1 */
int oidc_test_rsa_key_bits(struct oidc_test_key *k, const char *kid, unsigned bits);
int oidc_test_ec_key(struct oidc_test_key *k, const char *kid);  /* P-256; 0/-1 */
void oidc_test_key_free(struct oidc_test_key *k);

char *oidc_test_b64url(const void *data, size_t len);
/* base64url of n and e of an RSA key. */
char *oidc_test_rsa_n(const struct oidc_test_key *k);
char *oidc_test_rsa_e(const struct oidc_test_key *k);
/* {"kty":"RSA","alg":"RS256","use":"sig","kid":...,"n":...,"e":...<extra>}; extra
 * is raw text inserted before the closing brace (e.g. ",\"x\":1"), may be NULL. */
char *oidc_test_jwk_json(const struct oidc_test_key *k, const char *extra);
/* {"keys":[jwk of each key]} */
char *oidc_test_jwks_json(const struct oidc_test_key *const *keys, size_t n);
char *oidc_test_pubkey_pem(const struct oidc_test_key *k);

/* Raw JSON value texts for the claims; NULL leaves the claim out. */
struct oidc_test_claims {
    const char *iss, *aud, *email, *email_verified, *exp, *iat, *sub;
    const char *extra; /* raw members appended, starting with ',' */
    char exp_buf[32], iat_buf[32];
};
/* A valid claim set: iat = now - 10, exp = iat + 3600, Google issuer, test
 * audience and service account, email_verified true. */
void oidc_test_claims_default(struct oidc_test_claims *c, int64_t now);
char *oidc_test_claims_json(const struct oidc_test_claims *c);
/* {"alg":<alg_raw>,"kid":<kid_raw>,"typ":"JWT"<extra>}; NULL alg/kid omitted. */
char *oidc_test_header_json(const char *alg_raw, const char *kid_raw, const char *extra);

/* "b64(header).b64(payload).b64(sig)" with sig = EVP_DigestSign(key, md). */
char *oidc_test_sign(const struct oidc_test_key *k, const char *md, const char *header, const void *payload,
                     size_t payload_len);
/* RS256 with text payload. */
char *oidc_test_rs256(const struct oidc_test_key *k, const char *header, const char *payload);
/* HS256 keyed with `secret`. */
char *oidc_test_hs256(const void *secret, size_t secret_len, const char *header, const char *payload);
/* Arbitrary signature bytes (siglen 0 gives an empty third segment). */
char *oidc_test_with_sig(const char *header, const char *payload, const void *sig, size_t siglen);

#endif
