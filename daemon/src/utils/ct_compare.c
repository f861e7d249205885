/*
 * utils/ct_compare — constant-time equality (see ct_compare.h).
 *
 * When the lengths differ, `a` is compared with itself so the same amount of
 * work is done over `alen` bytes and no byte of `b` is read past its end; the
 * length mismatch is merged into the result with bit operations only.
 */
#include "utils/ct_compare.h"

#include <openssl/crypto.h>
#include <stdint.h>

/* 0 when x == y, 1 otherwise, without a data-dependent branch. */
static unsigned size_differs(size_t x, size_t y)
{
    uint64_t d = (uint64_t)x ^ (uint64_t)y;
    return (unsigned)((d | (0 - d)) >> 63);
}

int ct_equals(const void *a, size_t alen, const void *b, size_t blen)
{
    static const unsigned char empty[1] = {0};
    if (a == NULL && alen != 0) return 0;
    if (b == NULL && blen != 0) return 0;
    if (a == NULL) a = empty;
    if (b == NULL) b = empty;

    unsigned len_diff = size_differs(alen, blen);
    /* Same length: compare a with b.  Different: compare a with itself (same
     * cost, never reads b out of bounds) and let len_diff decide. */
    const void *other = len_diff ? a : b;
    unsigned content_diff = (unsigned)(CRYPTO_memcmp(a, other, alen) != 0);
    return (int)((len_diff | content_diff) ^ 1u);
}
