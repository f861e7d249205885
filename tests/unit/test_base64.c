/* Unit tests for utils/base64: RFC 4648 vectors, both alphabets, the one strict base64url decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "utils/base64.h"

static void expect_std(const char *plain, const char *encoded)
{
    char *e = base64_encode(plain, strlen(plain));
    assert_non_null(e);
    assert_string_equal(e, encoded);
    free(e);
}

static void base64_encode__rfc4648_vectors__match(void **state)
{
    (void)state;
    expect_std("", "");
    expect_std("f", "Zg==");
    expect_std("fo", "Zm8=");
    expect_std("foo", "Zm9v");
    expect_std("foob", "Zm9vYg==");
    expect_std("fooba", "Zm9vYmE=");
    expect_std("foobar", "Zm9vYmFy");
}

static void base64url_encode__bytes_needing_62_63__uses_dash_underscore_no_padding(void **state)
{
    (void)state;
    const unsigned char bytes[] = {0xfb, 0xff, 0xbf, 0xfe};
    char *std = base64_encode(bytes, sizeof(bytes));
    char *url = base64url_encode(bytes, sizeof(bytes));
    assert_string_equal(std, "+/+//g==");
    assert_string_equal(url, "-_-__g");
    unsigned char *d;
    size_t n;
    assert_int_equal(base64url_decode(url, strlen(url), &d, &n), 0);
    assert_int_equal(n, sizeof(bytes));
    assert_memory_equal(d, bytes, n);
    assert_int_equal(d[n], '\0');
    free(d);
    free(std);
    free(url);
}

static void base64url_decode__non_canonical_or_foreign_inputs__rejected(void **state)
{
    (void)state;
    const char *bad[] = {
        "Zm8=",     /* padding is not part of base64url here */
        "Zm9v=",    /* pad after full quantum */
        "Zm=v",     /* pad in the middle */
        "Zm8*",     /* foreign character */
        "+/+/",     /* standard alphabet */
        "Zh",       /* non-zero leftover bits */
        "Zm9vY",    /* length 1 mod 4 */
        "Zm 8",     /* whitespace */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned char *d = (unsigned char *)"sentinel";
        size_t n = 99;
        assert_int_equal(base64url_decode(bad[i], strlen(bad[i]), &d, &n), -1);
        assert_null(d);
        assert_int_equal(n, 0);
    }
    unsigned char *d;
    size_t n;
    assert_int_equal(base64url_decode(NULL, 0, &d, &n), -1);
    assert_int_equal(base64url_decode("", 0, &d, &n), 0);   /* the empty text is the empty value */
    assert_int_equal(n, 0);
    free(d);
}

static void base64url_is_text__alphabet_only(void **state)
{
    (void)state;
    assert_true(base64url_is_text("AZaz09-_", 8));
    assert_false(base64url_is_text("Zm8=", 4));
    assert_false(base64url_is_text("a+b", 3));
    assert_false(base64url_is_text("a\0b", 3));
}

static void base64url_roundtrip__all_byte_values__identical(void **state)
{
    (void)state;
    unsigned char bytes[256];
    for (int i = 0; i < 256; i++) bytes[i] = (unsigned char)i;
    for (size_t len = 0; len <= sizeof(bytes); len += 37) {
        char *u = base64url_encode(bytes, len);
        unsigned char *d;
        size_t n;
        assert_int_equal(base64url_decode(u, strlen(u), &d, &n), 0);
        assert_int_equal(n, len);
        if (len > 0) assert_memory_equal(d, bytes, len);
        free(u);
        free(d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(base64_encode__rfc4648_vectors__match),
        cmocka_unit_test(base64url_encode__bytes_needing_62_63__uses_dash_underscore_no_padding),
        cmocka_unit_test(base64url_decode__non_canonical_or_foreign_inputs__rejected),
        cmocka_unit_test(base64url_is_text__alphabet_only),
        cmocka_unit_test(base64url_roundtrip__all_byte_values__identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
