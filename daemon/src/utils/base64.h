/*
 * utils/base64 — RFC 4648 base64 in its two alphabets.
 *
 * base64_encode() produces the standard alphabet with '=' padding (what Cloud
 * Tasks expects in httpRequest.body); base64url_encode() produces the URL-safe
 * alphabet without padding (JWT segments).  Both return a malloc'd,
 * NUL-terminated string (NULL on allocation failure or overflow).
 *
 * base64url_decode() is the one decoder (JWT segments, JWKS key material): it is
 * strict — characters outside the URL-safe alphabet, any padding, an impossible
 * length (len % 4 == 1) and non-zero leftover bits are rejected, so one text
 * decodes from exactly one encoding.  On success *out is a malloc'd buffer of
 * *out_len bytes plus a terminating NUL (not counted), so text payloads can be
 * used as C strings.  Returns 0, or -1 on invalid input or allocation failure
 * (then *out is NULL).  base64url_is_text() tells whether every byte is in the
 * alphabet (a cheap shape check before decoding).
 */
#ifndef FOLLOWUPD_UTILS_BASE64_H
#define FOLLOWUPD_UTILS_BASE64_H

#include <stdbool.h>
#include <stddef.h>

char *base64_encode(const void *data, size_t len);
char *base64url_encode(const void *data, size_t len);

int base64url_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len);
bool base64url_is_text(const char *s, size_t len);

#endif
