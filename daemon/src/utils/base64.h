/*
 * utils/base64 — RFC 4648 base64 in its two alphabets.
 *
 * base64_encode() produces the standard alphabet with '=' padding (what Cloud
 * Tasks expects in httpRequest.body); base64url_encode() produces the URL-safe
 * alphabet without padding (JWT segments).  Both return a malloc'd,
 * NUL-terminated string (NULL on allocation failure or overflow).
 *
 * The decoders are strict: characters outside the alphabet, misplaced or wrong
 * padding and non-zero leftover bits are rejected, so one text decodes from
 * exactly one encoding.  base64_decode() requires padding; base64url_decode()
 * accepts the text with or without it.  On success *out is a malloc'd buffer of
 * *out_len bytes plus a terminating NUL (not counted), so text payloads can be
 * used as C strings.  Return 0 on success, -1 on invalid input or allocation
 * failure (then *out is NULL).
 */
#ifndef FOLLOWUPD_UTILS_BASE64_H
#define FOLLOWUPD_UTILS_BASE64_H

#include <stddef.h>

char *base64_encode(const void *data, size_t len);
char *base64url_encode(const void *data, size_t len);

int base64_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len);
int base64url_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len);

#endif
