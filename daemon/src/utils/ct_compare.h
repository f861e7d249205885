/*
 * utils/ct_compare — constant-time equality for secrets.
 *
 * ct_equals() tells whether two byte strings are equal without letting the
 * running time depend on where they differ: the comparison always walks the
 * whole of `a` (OpenSSL CRYPTO_memcmp) and the length check is folded into the
 * result instead of returning early.  The time therefore depends only on
 * `alen`; pass the untrusted, presented value as `a` and the configured secret
 * as `b`, so nothing about the secret (not even its length) leaks through
 * timing.  Used by the shared-secret callback mode (when OIDC is off).
 */
#ifndef FOLLOWUPD_UTILS_CT_COMPARE_H
#define FOLLOWUPD_UTILS_CT_COMPARE_H

#include <stddef.h>

/* 1 when alen == blen and the bytes are equal, else 0.  NULL is allowed only
 * with a zero length.  Two empty strings are equal. */
int ct_equals(const void *a, size_t alen, const void *b, size_t blen)
    __attribute__((warn_unused_result));

#endif
