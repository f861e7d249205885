/*
 * tests/unit/support/curl_test_keys — test-time credentials for the Google
 * auth tests: a fresh RSA key (never checked in), a service-account key file
 * written to a private temporary directory, and an RS256 JWT verifier the
 * fake token endpoint uses to check what the client signed.
 */
#ifndef CURL_TEST_KEYS_H
#define CURL_TEST_KEYS_H

#include <jansson.h>
#include <openssl/evp.h>

/* 2048-bit RSA key, or NULL. */
EVP_PKEY *ctk_generate_rsa(void);
/* mkdtemp under $TMPDIR (or /tmp); malloc'd path or NULL. */
char *ctk_make_tempdir(void);
/* Write a key file JSON into dir; returns the malloc'd path. Fields that are
 * NULL are omitted (to test validation). */
char *ctk_write_keyfile(const char *dir, const char *name, EVP_PKEY *key, const char *client_email,
                        const char *token_uri, const char *private_key_id);
/* Write arbitrary text into dir/name; returns the malloc'd path. */
char *ctk_write_text(const char *dir, const char *name, const char *text);
/* Remove the files written and the directory. */
void ctk_remove_dir(const char *dir);
/* Verify an RS256 compact JWT with key. On success returns 0 and sets
 * *header / *claims (caller decrefs). */
int ctk_verify_jwt(EVP_PKEY *key, const char *jwt, json_t **header, json_t **claims);

#endif
