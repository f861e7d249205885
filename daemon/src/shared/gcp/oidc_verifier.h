/*
 * shared/gcp/oidc_verifier — verification of the Google-signed OIDC ID tokens
 * that Cloud Tasks attaches to its HTTP callbacks.
 *
 * Nothing here trusts a JWT library's algorithm handling: the token is split,
 * decoded and checked by hand and the signature is verified directly with
 * OpenSSL 3 (EVP_DigestVerify, SHA-256, RSA PKCS#1 v1.5).  The only algorithm
 * ever used is RS256; the header's `alg` is compared with the exact string
 * "RS256" before any key is looked at, so `none`, `HS256` keyed with the public
 * key text, `rs256`, RS512, ES256 ... are all refused.  Keys come only from a
 * keyset built from Google's JWKS (n/e → EVP_PKEY); header parameters that
 * point at other keys (jku, x5u, jwk, x5c) are ignored and never fetched.
 *
 * oidc_verify() is pure and synchronous (the time is passed in), in this order:
 *   1. size cap (OIDC_ERR_TOO_LARGE);
 *   2. exactly three non-empty base64url segments (OIDC_ERR_MALFORMED);
 *   3. header: strict JSON object (duplicate keys and invalid UTF-8 refused);
 *      `alg` must be exactly "RS256" (OIDC_ERR_ALG); `typ`, when present, exactly
 *      "JWT"; `crit` must be absent (we understand no extension); `kid` a string
 *      of 1..OIDC_KID_MAX bytes (all OIDC_ERR_MALFORMED otherwise);
 *   4. key by kid (OIDC_ERR_UNKNOWN_KID: the caller may refresh the JWKS once and
 *      retry — see jwks_cache_refresh_for_kid());
 *   5. signature over "header.payload" (OIDC_ERR_SIGNATURE);
 *   6. only then the claims, from a strict JSON object:
 *      - iss  a string in policy->issuers                    (OIDC_ERR_ISSUER)
 *      - aud  the string policy->audience, or an array holding exactly one
 *             element equal to it.  An array with several audiences is refused
 *             even if ours is among them: such a token could have been presented
 *             to (and replayed by) another audience, and Google never issues
 *             multi-audience ID tokens for Cloud Tasks      (OIDC_ERR_AUDIENCE)
 *      - email    the string policy->service_account, exact  (OIDC_ERR_EMAIL)
 *      - email_verified  the JSON literal true only; the string "true" is refused
 *             (Google sends a boolean)                      (OIDC_ERR_EMAIL_UNVERIFIED)
 *      - exp, iat  numbers (integers or reals; reals are rounded in the strict
 *             direction: exp down, iat up) within 0..year 9999 (else MALFORMED);
 *             exp > now - skew (OIDC_ERR_EXPIRED); iat <= now + skew
 *             (OIDC_ERR_IAT_FUTURE); 0 < exp - iat <= max_lifetime
 *             (OIDC_ERR_LIFETIME)
 *      - nbf  optional; when present a number with nbf <= now + skew
 *             (OIDC_ERR_NOT_YET_VALID)
 *      - sub  optional string, copied out (MALFORMED when not a string or too long)
 *      A required claim that is absent gives OIDC_ERR_MISSING_CLAIM; present with
 *      the wrong type or value gives the claim's own error.
 *
 * Keysets are immutable after construction, so a keyset can be shared freely
 * on the loop thread; whoever owns it (jwks_cache) frees it.
 */
#ifndef FOLLOWUPD_SHARED_GCP_OIDC_VERIFIER_H
#define FOLLOWUPD_SHARED_GCP_OIDC_VERIFIER_H

#include <stddef.h>
#include <stdint.h>

#define OIDC_KID_MAX 128            /* longest accepted `kid`, bytes */
#define OIDC_KEYSET_MAX_KEYS 64     /* keys beyond this in one JWKS are ignored */
#define OIDC_JWKS_MAX_BYTES (1024 * 1024)

/* Google's two issuer spellings, for oidc_policy_defaults(). */
#define OIDC_GOOGLE_ISSUER "https://accounts.google.com"
#define OIDC_GOOGLE_ISSUER_SHORT "accounts.google.com"

struct oidc_keyset; /* immutable set of RSA public keys by kid */

/* Build a keyset from JWKS JSON ({"keys":[...]}).  A key is used only when it
 * is kty "RSA", alg "RS256" or absent, use "sig" or absent, key_ops (if any)
 * contains "verify", has a kid of 1..OIDC_KID_MAX bytes not seen before in this
 * document, and n/e are strict base64url giving a 2048..8192-bit modulus and an
 * odd exponent 3..2^32-1.  Other keys are skipped (counted).  Returns NULL, with
 * a reason in err (may be NULL), when the JSON is invalid or no key is usable. */
struct oidc_keyset *oidc_keyset_from_jwks(const char *json, size_t len, char *err, size_t errlen);
int oidc_keyset_has_kid(const struct oidc_keyset *ks, const char *kid);
size_t oidc_keyset_size(const struct oidc_keyset *ks);
size_t oidc_keyset_skipped(const struct oidc_keyset *ks); /* keys refused while building */
void oidc_keyset_free(struct oidc_keyset *ks);

struct oidc_policy {
    const char *audience;               /* required, exact match */
    const char *service_account;        /* required, exact `email` match */
    const char *const *issuers;         /* accepted `iss` values, exact match */
    size_t n_issuers;
    int clock_skew_s;                   /* 0..3600; default 60 */
    int max_lifetime_s;                 /* 1..7 days; default 86400 */
    size_t max_token_bytes;             /* 1..65536; default 4096 (Google's are ~1 KB) */
};

/* Fill the defaults: Google's two issuers, 60 s skew, 86400 s lifetime, 4096
 * bytes.  audience and service_account are left NULL for the caller to set. */
void oidc_policy_defaults(struct oidc_policy *p);

enum oidc_status {
    OIDC_OK = 0,
    OIDC_ERR_MALFORMED,
    OIDC_ERR_TOO_LARGE,
    OIDC_ERR_ALG,
    OIDC_ERR_UNKNOWN_KID,
    OIDC_ERR_SIGNATURE,
    OIDC_ERR_ISSUER,
    OIDC_ERR_AUDIENCE,
    OIDC_ERR_EMAIL,
    OIDC_ERR_EMAIL_UNVERIFIED,
    OIDC_ERR_EXPIRED,
    OIDC_ERR_IAT_FUTURE,
    OIDC_ERR_LIFETIME,
    OIDC_ERR_MISSING_CLAIM,
    OIDC_ERR_NOT_YET_VALID,             /* nbf in the future */
    OIDC_ERR_INTERNAL                   /* bad arguments/policy, out of memory, OpenSSL failure */
};

/* Short stable names for logs and metrics: "ok", "malformed", "too_large",
 * "alg", "kid", "signature", "iss", "aud", "email", "email_unverified",
 * "expired", "iat_future", "lifetime", "missing_claim", "nbf", "internal". */
const char *oidc_status_name(enum oidc_status s);

struct oidc_claims {
    char kid[OIDC_KID_MAX + 1];         /* set as soon as the header is valid (also on later failures) */
    char email[256];                    /* the rest only on OIDC_OK */
    char sub[256];
    int64_t iat, exp;
};

/* Verify `token` (len bytes, need not be NUL-terminated) at time now_s.
 * ks may be NULL (no keys yet): any well-formed RS256 token then gives
 * OIDC_ERR_UNKNOWN_KID.  out may be NULL; it is zeroed first. */
enum oidc_status oidc_verify(const struct oidc_keyset *ks, const struct oidc_policy *p, const char *token,
                             size_t len, int64_t now_s, struct oidc_claims *out)
    __attribute__((warn_unused_result));

/* Split an Authorization header value: the scheme "Bearer" (case-insensitive,
 * RFC 7235 §2.1), exactly one space, then a non-empty token containing no
 * whitespace, control byte or comma.  On success *token points into the header
 * and *len is its length; returns 0, else -1. */
int oidc_extract_bearer(const char *authorization_header, const char **token, size_t *len)
    __attribute__((warn_unused_result));

#endif
