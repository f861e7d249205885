/*
 * tests/unit/support/oidc_testkit — see oidc_testkit.h.
 */
#include "oidc_testkit.h"

#include <inttypes.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int rc = vasprintf(&s, fmt, ap);
    va_end(ap);
    return rc < 0 ? NULL : s;
}

int oidc_test_rsa_key_bits(struct oidc_test_key *k, const char *kid, unsigned bits)
{
    memset(k, 0, sizeof(*k));
    snprintf(k->kid, sizeof(k->kid), "%s", kid);
    k->pkey = EVP_RSA_gen(bits);
    return k->pkey != NULL ? 0 : -1;
}

int oidc_test_rsa_key(struct oidc_test_key *k, const char *kid)
{
    return oidc_test_rsa_key_bits(k, kid, 2048);
}

int oidc_test_ec_key(struct oidc_test_key *k, const char *kid)
{
    memset(k, 0, sizeof(*k));
    snprintf(k->kid, sizeof(k->kid), "%s", kid);
    k->pkey = EVP_EC_gen("P-256");
    return k->pkey != NULL ? 0 : -1;
}

void oidc_test_key_free(struct oidc_test_key *k)
{
    EVP_PKEY_free(k->pkey);
    k->pkey = NULL;
}

char *oidc_test_b64url(const void *data, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *in = data;
    char *out = malloc(len / 3 * 4 + 5);
    if (out == NULL) return NULL;
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
    return out;
}

static char *bn_param_b64url(const struct oidc_test_key *k, const char *name)
{
    BIGNUM *bn = NULL;
    if (EVP_PKEY_get_bn_param(k->pkey, name, &bn) != 1) return NULL;
    int n = BN_num_bytes(bn);
    unsigned char *buf = malloc((size_t)n + 1);
    char *out = NULL;
    if (buf != NULL && BN_bn2bin(bn, buf) == n) out = oidc_test_b64url(buf, (size_t)n);
    free(buf);
    BN_free(bn);
    return out;
}

char *oidc_test_rsa_n(const struct oidc_test_key *k)
{
    return bn_param_b64url(k, OSSL_PKEY_PARAM_RSA_N);
}

char *oidc_test_rsa_e(const struct oidc_test_key *k)
{
    return bn_param_b64url(k, OSSL_PKEY_PARAM_RSA_E);
}

char *oidc_test_jwk_json(const struct oidc_test_key *k, const char *extra)
{
    char *n = oidc_test_rsa_n(k);
    char *e = oidc_test_rsa_e(k);
    char *out = NULL;
    if (n != NULL && e != NULL)
        out = str_printf("{\"kty\":\"RSA\",\"alg\":\"RS256\",\"use\":\"sig\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"%s\"%s}",
                         k->kid, n, e, extra != NULL ? extra : "");
    free(n);
    free(e);
    return out;
}

char *oidc_test_jwks_json(const struct oidc_test_key *const *keys, size_t n)
{
    char *acc = strdup("{\"keys\":[");
    for (size_t i = 0; acc != NULL && i < n; i++) {
        char *jwk = oidc_test_jwk_json(keys[i], NULL);
        char *next = jwk != NULL ? str_printf("%s%s%s", acc, i > 0 ? "," : "", jwk) : NULL;
        free(jwk);
        free(acc);
        acc = next;
    }
    if (acc == NULL) return NULL;
    char *out = str_printf("%s]}", acc);
    free(acc);
    return out;
}

char *oidc_test_pubkey_pem(const struct oidc_test_key *k)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (bio != NULL && PEM_write_bio_PUBKEY(bio, k->pkey) == 1) {
        char *data;
        long len = BIO_get_mem_data(bio, &data);
        out = len > 0 ? strndup(data, (size_t)len) : NULL;
    }
    BIO_free(bio);
    return out;
}

void oidc_test_claims_default(struct oidc_test_claims *c, int64_t now)
{
    memset(c, 0, sizeof(*c));
    int64_t iat = now - 10;
    snprintf(c->iat_buf, sizeof(c->iat_buf), "%" PRId64, iat);
    snprintf(c->exp_buf, sizeof(c->exp_buf), "%" PRId64, iat + 3600);
    c->iss = "\"" OIDC_TEST_ISSUER "\"";
    c->aud = "\"" OIDC_TEST_AUDIENCE "\"";
    c->email = "\"" OIDC_TEST_SA "\"";
    c->email_verified = "true";
    c->exp = c->exp_buf;
    c->iat = c->iat_buf;
    c->sub = "\"104857251813046295731\"";
}

/* Append `"name":value` to *acc when value is not NULL. */
static int append_member(char **acc, const char *name, const char *value)
{
    if (value == NULL) return 0;
    size_t len = strlen(*acc);
    char *next = str_printf("%s%s\"%s\":%s", *acc, len > 1 ? "," : "", name, value);
    free(*acc);
    *acc = next;
    return next != NULL ? 0 : -1;
}

char *oidc_test_claims_json(const struct oidc_test_claims *c)
{
    char *acc = strdup("{");
    if (acc == NULL) return NULL;
    if (append_member(&acc, "iss", c->iss) != 0 || append_member(&acc, "aud", c->aud) != 0 ||
        append_member(&acc, "azp", "\"104857251813046295731\"") != 0 ||
        append_member(&acc, "email", c->email) != 0 ||
        append_member(&acc, "email_verified", c->email_verified) != 0 ||
        append_member(&acc, "exp", c->exp) != 0 || append_member(&acc, "iat", c->iat) != 0 ||
        append_member(&acc, "sub", c->sub) != 0)
        return NULL;
    char *out = str_printf("%s%s}", acc, c->extra != NULL ? c->extra : "");
    free(acc);
    return out;
}

char *oidc_test_header_json(const char *alg_raw, const char *kid_raw, const char *extra)
{
    char *acc = strdup("{");
    if (acc == NULL) return NULL;
    if (append_member(&acc, "alg", alg_raw) != 0 || append_member(&acc, "kid", kid_raw) != 0 ||
        append_member(&acc, "typ", "\"JWT\"") != 0)
        return NULL;
    char *out = str_printf("%s%s}", acc, extra != NULL ? extra : "");
    free(acc);
    return out;
}

/* "b64(header).b64(payload)" */
static char *signing_input(const char *header, const void *payload, size_t payload_len)
{
    char *h = oidc_test_b64url(header, strlen(header));
    char *p = oidc_test_b64url(payload, payload_len);
    char *out = h != NULL && p != NULL ? str_printf("%s.%s", h, p) : NULL;
    free(h);
    free(p);
    return out;
}

static char *join_sig(char *input, const void *sig, size_t siglen)
{
    char *s = oidc_test_b64url(sig, siglen);
    char *out = s != NULL ? str_printf("%s.%s", input, s) : NULL;
    free(s);
    free(input);
    return out;
}

char *oidc_test_sign(const struct oidc_test_key *k, const char *md, const char *header, const void *payload,
                     size_t payload_len)
{
    char *input = signing_input(header, payload, payload_len);
    if (input == NULL) return NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *sig = NULL;
    size_t siglen = 0;
    char *out = NULL;
    if (ctx == NULL || EVP_DigestSignInit_ex(ctx, NULL, md, NULL, NULL, k->pkey, NULL) != 1 ||
        EVP_DigestSign(ctx, NULL, &siglen, (const unsigned char *)input, strlen(input)) != 1)
        goto done;
    sig = malloc(siglen);
    if (sig == NULL || EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)input, strlen(input)) != 1)
        goto done;
    out = join_sig(input, sig, siglen);
    input = NULL;
done:
    free(input);
    free(sig);
    EVP_MD_CTX_free(ctx);
    return out;
}

char *oidc_test_rs256(const struct oidc_test_key *k, const char *header, const char *payload)
{
    return oidc_test_sign(k, "SHA256", header, payload, strlen(payload));
}

char *oidc_test_hs256(const void *secret, size_t secret_len, const char *header, const char *payload)
{
    char *input = signing_input(header, payload, strlen(payload));
    if (input == NULL) return NULL;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)input, strlen(input), mac, &maclen) ==
        NULL) {
        free(input);
        return NULL;
    }
    return join_sig(input, mac, maclen);
}

char *oidc_test_with_sig(const char *header, const char *payload, const void *sig, size_t siglen)
{
    char *input = signing_input(header, payload, strlen(payload));
    return input != NULL ? join_sig(input, sig, siglen) : NULL;
}
