/*
 * Unit tests for utils/ct_compare (constant-time equality for shared secrets).
 * Timing is not measured here (too noisy for CI); the tests pin the results,
 * including length mismatches in both directions and NULL/empty inputs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "utils/ct_compare.h"

static void ct_equals__same_bytes__one(void **state)
{
    (void)state;
    const char secret[] = "s3cr3t-shared-value-0123456789";
    char copy[sizeof(secret)];
    memcpy(copy, secret, sizeof(secret));
    assert_int_equal(ct_equals(copy, strlen(copy), secret, strlen(secret)), 1);
    unsigned char bin_a[4] = {0, 0xff, 0, 1}, bin_b[4] = {0, 0xff, 0, 1};
    assert_int_equal(ct_equals(bin_a, 4, bin_b, 4), 1); /* embedded NULs compared */
}

static void ct_equals__one_byte_differs_anywhere__zero(void **state)
{
    (void)state;
    const char secret[] = "abcdefghijklmnopqrstuvwxyz";
    size_t n = strlen(secret);
    for (size_t i = 0; i < n; i++) {
        char probe[sizeof(secret)];
        memcpy(probe, secret, sizeof(secret));
        probe[i] ^= 0x01;
        assert_int_equal(ct_equals(probe, n, secret, n), 0);
    }
    unsigned char a[2] = {0, 0x80}, b[2] = {0, 0x00};
    assert_int_equal(ct_equals(a, 2, b, 2), 0); /* high bit only */
}

static void ct_equals__length_mismatch__zero(void **state)
{
    (void)state;
    const char secret[] = "abcdefghijklmnop";
    assert_int_equal(ct_equals("abcdefghijklmno", 15, secret, 16), 0);   /* prefix */
    assert_int_equal(ct_equals("abcdefghijklmnopq", 17, secret, 16), 0); /* extension */
    assert_int_equal(ct_equals("", 0, secret, 16), 0);
    assert_int_equal(ct_equals(secret, 16, "", 0), 0);
    /* Lengths that differ only in high bits are still different. */
    assert_int_equal(ct_equals(secret, 0, secret, (size_t)1 << 40), 0);
}

static void ct_equals__longer_presented_value__reads_only_its_own_bytes(void **state)
{
    (void)state;
    /* b is exactly 4 bytes on the heap: ASan would flag any read past it. */
    char *b = malloc(4);
    assert_non_null(b);
    memcpy(b, "abcd", 4);
    char a[64];
    memset(a, 'a', sizeof(a));
    assert_int_equal(ct_equals(a, sizeof(a), b, 4), 0);
    free(b);
}

static void ct_equals__empty_and_null__defined(void **state)
{
    (void)state;
    assert_int_equal(ct_equals(NULL, 0, NULL, 0), 1);
    assert_int_equal(ct_equals("", 0, NULL, 0), 1);
    assert_int_equal(ct_equals(NULL, 3, "abc", 3), 0);
    assert_int_equal(ct_equals("abc", 3, NULL, 3), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ct_equals__same_bytes__one),
        cmocka_unit_test(ct_equals__one_byte_differs_anywhere__zero),
        cmocka_unit_test(ct_equals__length_mismatch__zero),
        cmocka_unit_test(ct_equals__longer_presented_value__reads_only_its_own_bytes),
        cmocka_unit_test(ct_equals__empty_and_null__defined),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
