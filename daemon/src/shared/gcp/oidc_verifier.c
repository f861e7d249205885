/*
 * shared/gcp/oidc_verifier — RS256 ID-token verification with OpenSSL 3 EVP
 * (design and check order in oidc_verifier.h).
 *
 * Internals: a strict private base64url decoder (URL alphabet, no padding, zero
 * trailing bits, so one token has exactly one encoding); jansson with
 * JSON_REJECT_DUPLICATES for the header, the claims and the JWKS (jansson also
 * refuses invalid UTF-8 and \u0000); keys built from n/e with
 * OSSL_PARAM_BLD + EVP_PKEY_fromdata.  The OpenSSL error queue is cleared after
 * every failure so that no stale error leaks into other users of OpenSSL on
 * the loop thread (libcurl).
 */
#include "shared/gcp/oidc_verifier.h"

#include <jansson.h>
#include <math.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "utils/base64.h"

#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192
#define TIME_MAX_S INT64_C(253402300799) /* 9999-12-31T23:59:59Z */
#define POLICY_MAX_SKEW_S 3600
#define POLICY_MAX_LIFETIME_S (7 * 86400)
#define POLICY_MAX_TOKEN_BYTES 65536

struct oidc_key {
    char kid[OIDC_KID_MAX + 1];
    EVP_PKEY *pkey;
};

struct oidc_keyset {
    struct oidc_key keys[OIDC_KEYSET_MAX_KEYS];
    size_t n;
    size_t skipped;
};

/* ------------------------------------------------------------------------- */
/* small helpers                                                              */
/* ------------------------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0) snprintf(err, errlen, "%s", msg);
}

/* Strict JSON object from bytes: duplicates, invalid UTF-8 and \u0000 refused. */
static json_t *parse_object(const void *buf, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root != NULL && !json_is_object(root)) {
        json_decref(root);
        return NULL;
    }
    return root;
}

/* True when v is a JSON string exactly equal to the NUL-terminated `want`. */
static bool json_string_equals(const json_t *v, const char *want)
{
    if (!json_is_string(v) || want == NULL) return false;
    size_t wl = strlen(want);
    return json_string_length(v) == wl && memcmp(json_string_value(v), want, wl) == 0;
}

/* ------------------------------------------------------------------------- */
/* keyset                                                                     */
/* ------------------------------------------------------------------------- */

/* BIGNUM from a base64url member of a JWK, or NULL. */
static BIGNUM *jwk_bignum(const json_t *jwk, const char *name)
{
    const json_t *v = json_object_get(jwk, name);
    if (!json_is_string(v) || json_string_length(v) == 0) return NULL;
    unsigned char *raw;
    size_t rawlen;
    if (base64url_decode(json_string_value(v), json_string_length(v), &raw, &rawlen) != 0) return NULL;
    BIGNUM *bn = rawlen > 0 && rawlen <= RSA_MAX_BITS / 8 ? BN_bin2bn(raw, (int)rawlen, NULL) : NULL;
    free(raw);
    return bn;
}

static bool rsa_params_acceptable(const BIGNUM *n, const BIGNUM *e)
{
    int nbits = BN_num_bits(n);
    int ebits = BN_num_bits(e);
    return nbits >= RSA_MIN_BITS && nbits <= RSA_MAX_BITS && ebits >= 2 && ebits <= 32 && BN_is_odd(e);
}

static EVP_PKEY *rsa_public_key(const BIGNUM *n, const BIGNUM *e)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bld == NULL) goto done;
    if (OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1) goto done;
    if (OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1) goto done;
    params = OSSL_PARAM_BLD_to_param(bld);
    if (params == NULL) goto done;
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1) goto done;
    if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) pkey = NULL;
done:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    if (pkey == NULL) ERR_clear_error();
    return pkey;
}

static bool jwk_optional_equals(const json_t *jwk, const char *name, const char *want)
{
    const json_t *v = json_object_get(jwk, name);
    return v == NULL || json_string_equals(v, want);
}

/* key_ops, when present, must be an array of strings that contains "verify". */
static bool jwk_key_ops_allow_verify(const json_t *jwk)
{
    const json_t *ops = json_object_get(jwk, "key_ops");
    if (ops == NULL) return true;
    if (!json_is_array(ops)) return false;
    bool found = false;
    size_t i;
    const json_t *op;
    json_array_foreach(ops, i, op) {
        if (!json_is_string(op)) return false;
        if (json_string_equals(op, "verify")) found = true;
    }
    return found;
}

static const struct oidc_key *keyset_find(const struct oidc_keyset *ks, const char *kid)
{
    if (ks == NULL || kid == NULL) return NULL;
    for (size_t i = 0; i < ks->n; i++)
        if (strcmp(ks->keys[i].kid, kid) == 0) return &ks->keys[i];
    return NULL;
}

/* Add one JWK to ks; false when it is not usable. */
static bool keyset_add_jwk(struct oidc_keyset *ks, const json_t *jwk)
{
    if (!json_is_object(jwk)) return false;
    if (!json_string_equals(json_object_get(jwk, "kty"), "RSA")) return false;
    if (!jwk_optional_equals(jwk, "alg", "RS256")) return false;
    if (!jwk_optional_equals(jwk, "use", "sig")) return false;
    if (!jwk_key_ops_allow_verify(jwk)) return false;
    const json_t *kid = json_object_get(jwk, "kid");
    if (!json_is_string(kid)) return false;
    size_t kidlen = json_string_length(kid);
    if (kidlen == 0 || kidlen > OIDC_KID_MAX) return false;
    if (keyset_find(ks, json_string_value(kid)) != NULL) return false; /* first one wins */

    bool ok = false;
    BIGNUM *n = jwk_bignum(jwk, "n");
    BIGNUM *e = jwk_bignum(jwk, "e");
    if (n == NULL || e == NULL || !rsa_params_acceptable(n, e)) goto done;
    EVP_PKEY *pkey = rsa_public_key(n, e);
    if (pkey == NULL) goto done;
    struct oidc_key *slot = &ks->keys[ks->n++];
    memcpy(slot->kid, json_string_value(kid), kidlen + 1);
    slot->pkey = pkey;
    ok = true;
done:
    BN_free(n);
    BN_free(e);
    return ok;
}

struct oidc_keyset *oidc_keyset_from_jwks(const char *json, size_t len, char *err, size_t errlen)
{
    set_err(err, errlen, "");
    if (json == NULL || len == 0 || len > OIDC_JWKS_MAX_BYTES) {
        set_err(err, errlen, "JWKS empty or too large");
        return NULL;
    }
    json_t *root = parse_object(json, len);
    if (root == NULL) {
        set_err(err, errlen, "JWKS is not a valid JSON object");
        return NULL;
    }
    struct oidc_keyset *ks = NULL;
    const json_t *keys = json_object_get(root, "keys");
    if (!json_is_array(keys)) {
        set_err(err, errlen, "JWKS has no \"keys\" array");
        goto done;
    }
    ks = calloc(1, sizeof(*ks));
    if (ks == NULL) {
        set_err(err, errlen, "out of memory");
        goto done;
    }
    size_t i;
    const json_t *jwk;
    json_array_foreach(keys, i, jwk) {
        if (ks->n == OIDC_KEYSET_MAX_KEYS || !keyset_add_jwk(ks, jwk)) ks->skipped++;
    }
    if (ks->n == 0) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "JWKS has no usable RS256 key (%zu skipped)", ks->skipped);
        oidc_keyset_free(ks);
        ks = NULL;
    }
done:
    json_decref(root);
    return ks;
}

int oidc_keyset_has_kid(const struct oidc_keyset *ks, const char *kid)
{
    return keyset_find(ks, kid) != NULL;
}

size_t oidc_keyset_size(const struct oidc_keyset *ks)
{
    return ks != NULL ? ks->n : 0;
}

size_t oidc_keyset_skipped(const struct oidc_keyset *ks)
{
    return ks != NULL ? ks->skipped : 0;
}

void oidc_keyset_free(struct oidc_keyset *ks)
{
    if (ks == NULL) return;
    for (size_t i = 0; i < ks->n; i++) EVP_PKEY_free(ks->keys[i].pkey);
    free(ks);
}

/* ------------------------------------------------------------------------- */
/* policy and status names                                                    */
/* ------------------------------------------------------------------------- */

static const char *const google_issuers[] = {OIDC_GOOGLE_ISSUER, OIDC_GOOGLE_ISSUER_SHORT};

void oidc_policy_defaults(struct oidc_policy *p)
{
    memset(p, 0, sizeof(*p));
    p->issuers = google_issuers;
    p->n_issuers = sizeof(google_issuers) / sizeof(google_issuers[0]);
    p->clock_skew_s = 60;
    p->max_lifetime_s = 86400;
    p->max_token_bytes = 4096;
}

static bool policy_valid(const struct oidc_policy *p)
{
    if (p == NULL || p->audience == NULL || p->audience[0] == '\0') return false;
    if (p->service_account == NULL || p->service_account[0] == '\0') return false;
    if (p->issuers == NULL || p->n_issuers == 0) return false;
    for (size_t i = 0; i < p->n_issuers; i++)
        if (p->issuers[i] == NULL || p->issuers[i][0] == '\0') return false;
    return p->clock_skew_s >= 0 && p->clock_skew_s <= POLICY_MAX_SKEW_S && p->max_lifetime_s > 0 &&
           p->max_lifetime_s <= POLICY_MAX_LIFETIME_S && p->max_token_bytes > 0 &&
           p->max_token_bytes <= POLICY_MAX_TOKEN_BYTES;
}

const char *oidc_status_name(enum oidc_status s)
{
    switch (s) {
    case OIDC_OK: return "ok";
    case OIDC_ERR_MALFORMED: return "malformed";
    case OIDC_ERR_TOO_LARGE: return "too_large";
    case OIDC_ERR_ALG: return "alg";
    case OIDC_ERR_UNKNOWN_KID: return "kid";
    case OIDC_ERR_SIGNATURE: return "signature";
    case OIDC_ERR_ISSUER: return "iss";
    case OIDC_ERR_AUDIENCE: return "aud";
    case OIDC_ERR_EMAIL: return "email";
    case OIDC_ERR_EMAIL_UNVERIFIED: return "email_unverified";
    case OIDC_ERR_EXPIRED: return "expired";
    case OIDC_ERR_IAT_FUTURE: return "iat_future";
    case OIDC_ERR_LIFETIME: return "lifetime";
    case OIDC_ERR_MISSING_CLAIM: return "missing_claim";
    case OIDC_ERR_NOT_YET_VALID: return "nbf";
    case OIDC_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------- */
/* token structure and header                                                 */
/* ------------------------------------------------------------------------- */

struct token_parts {
    const char *seg[3];
    size_t seglen[3];
};

/* Exactly three non-empty base64url segments separated by '.'. */
static bool split_token(const char *token, size_t len, struct token_parts *tp)
{
    size_t start = 0;
    int n = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && token[i] != '.') continue;
        if (n == 3 || i == start) return false;
        tp->seg[n] = token + start;
        tp->seglen[n] = i - start;
        n++;
        start = i + 1;
    }
    if (n != 3) return false;
    for (int k = 0; k < 3; k++)
        if (!base64url_is_text(tp->seg[k], tp->seglen[k])) return false;
    return true;
}

static json_t *decode_json_segment(const char *seg, size_t len)
{
    unsigned char *raw;
    size_t rawlen;
    if (base64url_decode(seg, len, &raw, &rawlen) != 0) return NULL;
    json_t *obj = parse_object(raw, rawlen);
    free(raw);
    return obj;
}

/* Header rules, alg first.  Copies the kid into kid_buf. */
static enum oidc_status check_header(const json_t *hdr, char kid_buf[OIDC_KID_MAX + 1])
{
    if (!json_string_equals(json_object_get(hdr, "alg"), "RS256")) return OIDC_ERR_ALG;
    const json_t *typ = json_object_get(hdr, "typ");
    if (typ != NULL && !json_string_equals(typ, "JWT")) return OIDC_ERR_MALFORMED;
    if (json_object_get(hdr, "crit") != NULL) return OIDC_ERR_MALFORMED;
    /* jku, x5u, jwk, x5c: deliberately never read. */
    const json_t *kid = json_object_get(hdr, "kid");
    if (!json_is_string(kid)) return OIDC_ERR_MALFORMED;
    size_t kidlen = json_string_length(kid);
    if (kidlen == 0 || kidlen > OIDC_KID_MAX) return OIDC_ERR_MALFORMED;
    memcpy(kid_buf, json_string_value(kid), kidlen + 1);
    return OIDC_OK;
}

/* RS256: RSASSA-PKCS1-v1_5 with SHA-256 over the signing input. */
static enum oidc_status verify_rs256(EVP_PKEY *pkey, const char *signing_input, size_t signing_len,
                                     const char *sig_b64, size_t sig_b64_len)
{
    unsigned char *sig;
    size_t siglen;
    if (base64url_decode(sig_b64, sig_b64_len, &sig, &siglen) != 0) return OIDC_ERR_MALFORMED;
    enum oidc_status st = OIDC_ERR_SIGNATURE;
    EVP_MD_CTX *mctx = NULL;
    int keylen = EVP_PKEY_get_size(pkey);
    if (keylen <= 0 || siglen != (size_t)keylen) goto done;

    mctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    if (mctx == NULL || EVP_DigestVerifyInit_ex(mctx, &pctx, "SHA256", NULL, NULL, pkey, NULL) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0) {
        st = OIDC_ERR_INTERNAL;
        goto done;
    }
    if (EVP_DigestVerify(mctx, sig, siglen, (const unsigned char *)signing_input, signing_len) == 1)
        st = OIDC_OK;
done:
    if (st != OIDC_OK) ERR_clear_error();
    EVP_MD_CTX_free(mctx);
    free(sig);
    return st;
}

/* ------------------------------------------------------------------------- */
/* claims                                                                     */
/* ------------------------------------------------------------------------- */

enum round_dir { ROUND_DOWN, ROUND_UP };

/* A NumericDate claim: absent → MISSING_CLAIM (when required); not a number or
 * out of 0..TIME_MAX_S → MALFORMED. */
static enum oidc_status read_time(const json_t *claims, const char *name, enum round_dir dir, int64_t *out)
{
    const json_t *v = json_object_get(claims, name);
    if (v == NULL) return OIDC_ERR_MISSING_CLAIM;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || i > TIME_MAX_S) return OIDC_ERR_MALFORMED;
        *out = (int64_t)i;
        return OIDC_OK;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d < 0.0) return OIDC_ERR_MALFORMED;
        d = dir == ROUND_DOWN ? floor(d) : ceil(d);
        if (d > (double)TIME_MAX_S) return OIDC_ERR_MALFORMED;
        *out = (int64_t)d;
        return OIDC_OK;
    }
    return OIDC_ERR_MALFORMED;
}

static enum oidc_status check_issuer(const json_t *claims, const struct oidc_policy *p)
{
    const json_t *iss = json_object_get(claims, "iss");
    if (iss == NULL) return OIDC_ERR_MISSING_CLAIM;
    for (size_t i = 0; i < p->n_issuers; i++)
        if (json_string_equals(iss, p->issuers[i])) return OIDC_OK;
    return OIDC_ERR_ISSUER;
}

/* aud: our audience as a string, or a one-element array holding it. */
static enum oidc_status check_audience(const json_t *claims, const struct oidc_policy *p)
{
    const json_t *aud = json_object_get(claims, "aud");
    if (aud == NULL) return OIDC_ERR_MISSING_CLAIM;
    if (json_is_array(aud)) {
        if (json_array_size(aud) != 1) return OIDC_ERR_AUDIENCE;
        aud = json_array_get(aud, 0);
    }
    return json_string_equals(aud, p->audience) ? OIDC_OK : OIDC_ERR_AUDIENCE;
}

static enum oidc_status check_email(const json_t *claims, const struct oidc_policy *p, struct oidc_claims *out)
{
    const json_t *email = json_object_get(claims, "email");
    if (email == NULL) return OIDC_ERR_MISSING_CLAIM;
    if (!json_string_equals(email, p->service_account)) return OIDC_ERR_EMAIL;
    const json_t *verified = json_object_get(claims, "email_verified");
    if (verified == NULL) return OIDC_ERR_MISSING_CLAIM;
    if (!json_is_true(verified)) return OIDC_ERR_EMAIL_UNVERIFIED;
    size_t elen = json_string_length(email);
    if (elen >= sizeof(out->email)) return OIDC_ERR_EMAIL;
    memcpy(out->email, json_string_value(email), elen + 1);
    return OIDC_OK;
}

static enum oidc_status copy_subject(const json_t *claims, struct oidc_claims *out)
{
    const json_t *sub = json_object_get(claims, "sub");
    if (sub == NULL) return OIDC_OK;
    if (!json_is_string(sub) || json_string_length(sub) >= sizeof(out->sub)) return OIDC_ERR_MALFORMED;
    memcpy(out->sub, json_string_value(sub), json_string_length(sub) + 1);
    return OIDC_OK;
}

static enum oidc_status check_times(const json_t *claims, const struct oidc_policy *p, int64_t now_s,
                                    struct oidc_claims *out)
{
    int64_t exp = 0, iat = 0, nbf = 0;
    enum oidc_status st = read_time(claims, "exp", ROUND_DOWN, &exp);
    if (st != OIDC_OK) return st;
    st = read_time(claims, "iat", ROUND_UP, &iat);
    if (st != OIDC_OK) return st;
    if (exp <= now_s - p->clock_skew_s) return OIDC_ERR_EXPIRED;
    if (iat > now_s + p->clock_skew_s) return OIDC_ERR_IAT_FUTURE;
    if (exp <= iat || exp - iat > p->max_lifetime_s) return OIDC_ERR_LIFETIME;
    if (json_object_get(claims, "nbf") != NULL) {
        st = read_time(claims, "nbf", ROUND_UP, &nbf);
        if (st != OIDC_OK) return st;
        if (nbf > now_s + p->clock_skew_s) return OIDC_ERR_NOT_YET_VALID;
    }
    out->exp = exp;
    out->iat = iat;
    return OIDC_OK;
}

static enum oidc_status check_claims(const json_t *claims, const struct oidc_policy *p, int64_t now_s,
                                     struct oidc_claims *out)
{
    enum oidc_status st = check_issuer(claims, p);
    if (st == OIDC_OK) st = check_audience(claims, p);
    if (st == OIDC_OK) st = check_email(claims, p, out);
    if (st == OIDC_OK) st = check_times(claims, p, now_s, out);
    if (st == OIDC_OK) st = copy_subject(claims, out);
    return st;
}

/* ------------------------------------------------------------------------- */
/* oidc_verify                                                                */
/* ------------------------------------------------------------------------- */

/* now_s is bounded so that now ± skew cannot overflow. */
static bool now_valid(int64_t now_s)
{
    return now_s >= 0 && now_s <= TIME_MAX_S;
}

enum oidc_status oidc_verify(const struct oidc_keyset *ks, const struct oidc_policy *p, const char *token,
                             size_t len, int64_t now_s, struct oidc_claims *out)
{
    struct oidc_claims scratch;
    if (out == NULL) out = &scratch;
    memset(out, 0, sizeof(*out));
    if (!policy_valid(p) || !now_valid(now_s) || (token == NULL && len > 0)) return OIDC_ERR_INTERNAL;
    if (len > p->max_token_bytes) return OIDC_ERR_TOO_LARGE;

    struct token_parts tp;
    if (token == NULL || !split_token(token, len, &tp)) return OIDC_ERR_MALFORMED;

    json_t *hdr = decode_json_segment(tp.seg[0], tp.seglen[0]);
    if (hdr == NULL) return OIDC_ERR_MALFORMED;
    char kid[OIDC_KID_MAX + 1];
    enum oidc_status st = check_header(hdr, kid);
    json_decref(hdr);
    if (st != OIDC_OK) return st;
    memcpy(out->kid, kid, sizeof(kid));

    const struct oidc_key *key = keyset_find(ks, kid);
    if (key == NULL) return OIDC_ERR_UNKNOWN_KID;
    size_t signing_len = tp.seglen[0] + 1 + tp.seglen[1];
    st = verify_rs256(key->pkey, token, signing_len, tp.seg[2], tp.seglen[2]);
    if (st != OIDC_OK) return st;

    json_t *claims = decode_json_segment(tp.seg[1], tp.seglen[1]);
    if (claims == NULL) return OIDC_ERR_MALFORMED;
    st = check_claims(claims, p, now_s, out);
    json_decref(claims);
    if (st != OIDC_OK) {
        char keep[OIDC_KID_MAX + 1];
        memcpy(keep, out->kid, sizeof(keep));
        memset(out, 0, sizeof(*out));
        memcpy(out->kid, keep, sizeof(keep));
    }
    return st;
}

/* ------------------------------------------------------------------------- */
/* Authorization header                                                       */
/* ------------------------------------------------------------------------- */

static bool is_token_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != ',';
}

int oidc_extract_bearer(const char *authorization_header, const char **token, size_t *len)
{
    static const char scheme[] = "Bearer ";
    const size_t scheme_len = sizeof(scheme) - 1;
    if (authorization_header == NULL || token == NULL || len == NULL) return -1;
    if (strncasecmp(authorization_header, scheme, scheme_len - 1) != 0) return -1;
    if (authorization_header[scheme_len - 1] != ' ') return -1;
    const char *t = authorization_header + scheme_len;
    size_t n = 0;
    while (t[n] != '\0') {
        if (!is_token_byte((unsigned char)t[n])) return -1;
        n++;
    }
    if (n == 0) return -1;
    *token = t;
    *len = n;
    return 0;
}
