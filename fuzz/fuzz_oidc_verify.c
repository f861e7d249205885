/*
 * fuzz/fuzz_oidc_verify — the OIDC verifier: JWKS parsing
 * (oidc_keyset_from_jwks), the Authorization header split
 * (oidc_extract_bearer) and token verification (oidc_verify).
 *
 * Input layout: byte 0 selects the mode (low two bits), the rest is split at
 * NUL bytes:
 *   0  token NUL jwks     a keyset built from the fuzzed JWKS (when usable),
 *                         then the fuzzed token verified against it;
 *   1  header NUL claims  header and claims JSON texts are base64url-encoded
 *                         and signed RS256 with the harness's own key, whose
 *                         JWK (kid "fuzz-key") is in the keyset — so the
 *                         claim checks after the signature are reached;
 *   2  authorization      an Authorization header value: oidc_extract_bearer,
 *                         then the token verified against the harness keyset;
 *   3  token              verified with a custom policy (several issuers,
 *                         zero skew, tight lifetime and size cap).
 * The clock is fixed (FUZZ_NOW) so runs are reproducible.
 *
 * Oracles besides the sanitizers: the verdict is always a known status and
 * the copied-out strings stay terminated; modes 2 and 3 never accept (the
 * fuzzer does not hold the harness key's private half); an accepted token in
 * modes 0 and 1 (mode 0 seeds carry a JWKS and a token signed for it)
 * satisfies the documented default policy (email, exp/iat with 60 s skew,
 * 0 < lifetime <= 1 day).
 */
#include <string.h>

#include "fuzz_util.h"
#include "oidc_testkit.h"
#include "shared/gcp/oidc_verifier.h"
#include "utils/base64.h"

#define FUZZ_NOW 1764000000 /* 2025-11-24T16:00:00Z */

struct harness {
    struct oidc_test_key key;
    struct oidc_keyset *ks; /* JWKS of `key`, kid "fuzz-key" */
};

static struct harness h;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (oidc_test_rsa_key(&h.key, "fuzz-key") != 0) abort();
    const struct oidc_test_key *keys[] = {&h.key};
    char *jwks = oidc_test_jwks_json(keys, 1);
    char err[128];
    h.ks = jwks != NULL ? oidc_keyset_from_jwks(jwks, strlen(jwks), err, sizeof(err)) : NULL;
    free(jwks);
    if (h.ks == NULL) abort();
    return 0;
}

static void default_policy(struct oidc_policy *p)
{
    oidc_policy_defaults(p);
    p->audience = OIDC_TEST_AUDIENCE;
    p->service_account = OIDC_TEST_SA;
}

/* accept_possible: 0 when the fuzzer cannot hold a private key for the keyset in use. */
static void check_verdict(enum oidc_status st, const struct oidc_claims *c, int accept_possible)
{
    if (st > OIDC_ERR_INTERNAL) abort();
    if (oidc_status_name(st) == NULL) abort();
    if (memchr(c->kid, '\0', sizeof(c->kid)) == NULL || memchr(c->email, '\0', sizeof(c->email)) == NULL ||
        memchr(c->sub, '\0', sizeof(c->sub)) == NULL)
        abort(); /* copied-out strings must stay terminated */
    if (st != OIDC_OK) return;
    if (!accept_possible) abort();
    if (strcmp(c->email, OIDC_TEST_SA) != 0 || c->kid[0] == '\0' || c->exp <= FUZZ_NOW - 60 ||
        c->iat > FUZZ_NOW + 60 || c->exp - c->iat > 86400 || c->exp <= c->iat)
        abort(); /* accepted a token that breaks the documented default policy */
}

static void fuzz_foreign_jwks(const uint8_t *data, size_t size)
{
    const uint8_t *tok, *jwks;
    size_t tok_len, jwks_len;
    fuzz_next_part(&data, &size, 0, &tok, &tok_len);
    jwks = data;
    jwks_len = size;
    char err[128];
    struct oidc_keyset *ks = oidc_keyset_from_jwks((const char *)jwks, jwks_len, err, sizeof(err));
    if (ks != NULL) {
        (void)oidc_keyset_size(ks);
        (void)oidc_keyset_skipped(ks);
        (void)oidc_keyset_has_kid(ks, "fuzz-key");
    }
    struct oidc_policy p;
    default_policy(&p);
    struct oidc_claims c;
    enum oidc_status st = oidc_verify(ks, &p, (const char *)tok, tok_len, FUZZ_NOW, &c);
    check_verdict(st, &c, 1); /* a seed may carry a token signed for its own JWKS */
    oidc_keyset_free(ks);
}

static void fuzz_signed_claims(const uint8_t *data, size_t size)
{
    const uint8_t *hdr, *claims;
    size_t hdr_len, claims_len;
    fuzz_next_part(&data, &size, 0, &hdr, &hdr_len);
    claims = data;
    claims_len = size;
    char *header = fuzz_cstr(hdr, hdr_len);
    char *token = oidc_test_sign(&h.key, "SHA256", header, claims, claims_len);
    free(header);
    if (token == NULL) return; /* empty segment: the kit refuses, nothing to verify */
    struct oidc_policy p;
    default_policy(&p);
    struct oidc_claims c;
    enum oidc_status st = oidc_verify(h.ks, &p, token, strlen(token), FUZZ_NOW, &c);
    check_verdict(st, &c, 1);
    if (st == OIDC_OK && strcmp(c.kid, "fuzz-key") != 0) abort();
    free(token);
}

static void fuzz_authorization(const uint8_t *data, size_t size)
{
    char *header = fuzz_cstr(data, size);
    const char *tok = NULL;
    size_t len = 0;
    if (oidc_extract_bearer(header, &tok, &len) == 0) {
        if (tok < header || tok + len > header + size || len == 0) abort();
        struct oidc_policy p;
        default_policy(&p);
        struct oidc_claims c;
        check_verdict(oidc_verify(h.ks, &p, tok, len, FUZZ_NOW, &c), &c, 0);
    }
    free(header);
}

static void fuzz_custom_policy(const uint8_t *data, size_t size)
{
    static const char *const issuers[] = {"https://accounts.google.com", "accounts.google.com", "https://x.test"};
    struct oidc_policy p = {
        .audience = "a",
        .service_account = "s@x",
        .issuers = issuers,
        .n_issuers = 3,
        .clock_skew_s = 0,
        .max_lifetime_s = 1,
        .max_token_bytes = 512,
    };
    struct oidc_claims c;
    check_verdict(oidc_verify(h.ks, &p, (const char *)data, size, FUZZ_NOW, &c), &c, 0);
    if (oidc_verify(h.ks, &p, (const char *)data, size, FUZZ_NOW, NULL) == OIDC_OK) abort(); /* out may be NULL */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int mode = data[0] & 3;
    data++;
    size--;
    switch (mode) {
    case 0:
        fuzz_foreign_jwks(data, size);
        break;
    case 1:
        fuzz_signed_claims(data, size);
        break;
    case 2:
        fuzz_authorization(data, size);
        break;
    default:
        fuzz_custom_policy(data, size);
        break;
    }
    return 0;
}
