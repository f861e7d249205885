/* tests/unit/support/curl_test_keys — see curl_test_keys.h. */
#include "curl_test_keys.h"

#include <dirent.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "utils/base64.h"

EVP_PKEY *ctk_generate_rsa(void)
{
    return EVP_RSA_gen(2048);
}

char *ctk_make_tempdir(void)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = NULL;
    if (asprintf(&tmpl, "%s/followupd-test-XXXXXX", base != NULL && *base ? base : "/tmp") < 0)
        return NULL;
    if (mkdtemp(tmpl) == NULL) {
        free(tmpl);
        return NULL;
    }
    return tmpl;
}

static char *pem_of(EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (bio != NULL && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1) {
        char *data;
        long len = BIO_get_mem_data(bio, &data);
        out = strndup(data, (size_t)len);
    }
    BIO_free(bio);
    return out;
}

char *ctk_write_text(const char *dir, const char *name, const char *text)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s", dir, name) < 0) return NULL;
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        free(path);
        return NULL;
    }
    fputs(text, f);
    fclose(f);
    return path;
}

char *ctk_write_keyfile(const char *dir, const char *name, EVP_PKEY *key, const char *client_email,
                        const char *token_uri, const char *private_key_id)
{
    json_t *root = json_object();
    json_object_set_new(root, "type", json_string("service_account"));
    json_object_set_new(root, "project_id", json_string("test-project"));
    if (private_key_id) json_object_set_new(root, "private_key_id", json_string(private_key_id));
    if (key != NULL) {
        char *pem = pem_of(key);
        json_object_set_new(root, "private_key", json_string(pem));
        free(pem);
    }
    if (client_email) json_object_set_new(root, "client_email", json_string(client_email));
    if (token_uri) json_object_set_new(root, "token_uri", json_string(token_uri));
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    char *path = ctk_write_text(dir, name, text);
    free(text);
    return path;
}

void ctk_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, e->d_name) >= 0) {
            unlink(p);
            free(p);
        }
    }
    closedir(d);
    rmdir(dir);
}

static json_t *decode_segment(const char *seg, size_t len)
{
    unsigned char *raw;
    size_t n;
    if (base64url_decode(seg, len, &raw, &n) != 0) return NULL;
    json_t *j = json_loadb((const char *)raw, n, 0, NULL);
    free(raw);
    return j;
}

int ctk_verify_jwt(EVP_PKEY *key, const char *jwt, json_t **header, json_t **claims)
{
    const char *dot1 = strchr(jwt, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (dot2 == NULL || strchr(dot2 + 1, '.') != NULL) return -1;
    unsigned char *sig;
    size_t siglen;
    if (base64url_decode(dot2 + 1, strlen(dot2 + 1), &sig, &siglen) != 0) return -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)jwt, (size_t)(dot2 - jwt)) == 1;
    EVP_MD_CTX_free(ctx);
    free(sig);
    if (!ok) return -1;
    *header = decode_segment(jwt, (size_t)(dot1 - jwt));
    *claims = decode_segment(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (*header == NULL || *claims == NULL) {
        json_decref(*header);
        json_decref(*claims);
        return -1;
    }
    return 0;
}
