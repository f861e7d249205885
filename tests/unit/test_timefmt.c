/* Unit tests for utils/timefmt: canonical ISO output and RFC 3339 / PostgreSQL parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "utils/timefmt.h"

static void expect_iso(int64_t ms, const char *want)
{
    char buf[TIMEFMT_ISO_LEN];
    assert_int_equal(timefmt_iso_ms(ms, buf, sizeof(buf)), 0);
    assert_string_equal(buf, want);
}

static void expect_parse(const char *text, int64_t want)
{
    int64_t got = 0;
    assert_int_equal(timefmt_parse(text, &got), 0);
    assert_int_equal(got, want);
}

static void expect_reject(const char *text)
{
    int64_t got = 42;
    assert_int_equal(timefmt_parse(text, &got), -1);
    assert_int_equal(got, 42);
}

static void timefmt_iso_ms__known_instants__match_js_toisostring(void **state)
{
    (void)state;
    expect_iso(0, "1970-01-01T00:00:00.000Z");
    expect_iso(1795881600000LL, "2026-11-28T16:00:00.000Z");
    expect_iso(1795881600007LL, "2026-11-28T16:00:00.007Z");
    expect_iso(1795881600999LL, "2026-11-28T16:00:00.999Z");
    expect_iso(951782400000LL, "2000-02-29T00:00:00.000Z");     /* leap day, 400-year rule */
    expect_iso(1709164800000LL, "2024-02-29T00:00:00.000Z");
    expect_iso(4107542400000LL, "2100-03-01T00:00:00.000Z");    /* 2100 is not leap */
    expect_iso(253402300799999LL, "9999-12-31T23:59:59.999Z");
}

static void timefmt_iso_ms__negative_epoch__rounds_toward_past(void **state)
{
    (void)state;
    expect_iso(-1, "1969-12-31T23:59:59.999Z");
    expect_iso(-1000, "1969-12-31T23:59:59.000Z");
    expect_iso(-1001, "1969-12-31T23:59:58.999Z");
    expect_iso(-62167219200000LL, "0000-01-01T00:00:00.000Z");
}

static void timefmt_iso_ms__out_of_range_or_small_buffer__fails(void **state)
{
    (void)state;
    char buf[TIMEFMT_ISO_LEN];
    assert_int_equal(timefmt_iso_ms(253402300800000LL, buf, sizeof(buf)), -1);
    assert_int_equal(timefmt_iso_ms(-62167219200001LL, buf, sizeof(buf)), -1);
    assert_int_equal(timefmt_iso_ms(0, buf, sizeof(buf) - 1), -1);
}

static void timefmt_parse__rfc3339_forms__epoch_ms(void **state)
{
    (void)state;
    expect_parse("2026-11-28T16:00:00Z", 1795881600000LL);
    expect_parse("2026-11-28T16:00:00.000Z", 1795881600000LL);
    expect_parse("2026-11-28t16:00:00.5z", 1795881600500LL);
    expect_parse("2026-11-28T21:30:00+05:30", 1795881600000LL);
    expect_parse("2026-11-28T12:30:00-03:30", 1795881600000LL);
    expect_parse("2026-11-28T17:00:00+0100", 1795881600000LL);
}

static void timefmt_parse__postgres_timestamptz_output__epoch_ms(void **state)
{
    (void)state;
    expect_parse("2026-11-28 16:00:00+00", 1795881600000LL);
    expect_parse("2026-11-28 16:00:00.123+00", 1795881600123LL);
    expect_parse("2026-11-28 11:00:00-05", 1795881600000LL);
    expect_parse("2026-11-28 21:45:00+05:45", 1795881600000LL);
    expect_parse("1969-12-31 23:59:59.999+00", -1LL);
    /* LMT-style offset with seconds, as PostgreSQL prints for old dates */
    expect_parse("1900-01-01 00:00:00+00:09:21", -2208989361000LL);
}

static void timefmt_parse__microseconds__truncated_to_ms_like_js(void **state)
{
    (void)state;
    expect_parse("2026-11-28 16:00:00.123456+00", 1795881600123LL);
    expect_parse("2026-11-28 16:00:00.999999+00", 1795881600999LL);
    expect_parse("1969-12-31 23:59:59.9999+00", -1LL);
}

static void timefmt_parse__leap_years__validated(void **state)
{
    (void)state;
    expect_parse("2024-02-29 00:00:00+00", 1709164800000LL);
    expect_parse("2000-02-29T00:00:00Z", 951782400000LL);
    expect_reject("2023-02-29 00:00:00+00");
    expect_reject("2100-02-29T00:00:00Z");
    expect_reject("2026-04-31T00:00:00Z");
}

static void timefmt_parse__malformed__rejected(void **state)
{
    (void)state;
    expect_reject("");
    expect_reject("infinity");
    expect_reject("-infinity");
    expect_reject("2026-11-28");
    expect_reject("2026-11-28T16:00:00");        /* zone required */
    expect_reject("2026-11-28T16:00Z");
    expect_reject("2026-11-28T16:00:00.Z");
    expect_reject("2026-11-28T24:00:00Z");
    expect_reject("2026-11-28T23:59:60Z");
    expect_reject("2026-13-01T00:00:00Z");
    expect_reject("2026-00-01T00:00:00Z");
    expect_reject("2026-11-28T16:00:00+5");
    expect_reject("2026-11-28T16:00:00+16:00");
    expect_reject("2026-11-28T16:00:00Z trailing");
    expect_reject("0001-01-01 00:00:00+00 BC");
    expect_reject("12026-11-28 16:00:00+00");
}

static void timefmt_roundtrip__format_then_parse__identical(void **state)
{
    (void)state;
    const int64_t samples[] = {0, -1, 1, 1795881600123LL, -86400001LL, 253402300799999LL,
                               -62167219200000LL, 1709251199999LL};
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        char buf[TIMEFMT_ISO_LEN];
        int64_t back;
        assert_int_equal(timefmt_iso_ms(samples[i], buf, sizeof(buf)), 0);
        assert_int_equal(timefmt_parse(buf, &back), 0);
        assert_int_equal(back, samples[i]);
    }
}

static void timefmt_parse_http_date__imf_fixdate__epoch_ms_others_refused(void **state)
{
    (void)state;
    int64_t ms = 0;
    assert_int_equal(timefmt_parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", &ms), 0);
    assert_int_equal(ms, 784111777000LL);
    assert_int_equal(timefmt_parse_http_date("Thu, 29 Feb 2024 23:59:59 GMT", &ms), 0);
    assert_int_equal(ms, 1709251199000LL);
    static const char *const bad[] = {"Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
                                      "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Foo 1994 08:49:37 GMT",
                                      "Thu, 29 Feb 2023 00:00:00 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
                                      "Sun, 6 Nov 1994 08:49:37 GMT", "", "Sun, 06 Nov 1994 08:49:37 GMT "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) assert_int_equal(timefmt_parse_http_date(bad[i], &ms), -1);
}

static void expect_duration(int64_t ms, const char *want)
{
    char buf[32];
    timefmt_duration(ms, buf, sizeof(buf));
    assert_string_equal(buf, want);
}

static void timefmt_duration__units__two_at_most(void **state)
{
    (void)state;
    expect_duration(0, "0ms");
    expect_duration(850, "850ms");
    expect_duration(42999, "42s");
    expect_duration(190000, "3m 10s");
    expect_duration(180000, "3m");
    expect_duration(7500000, "2h 5m");
    expect_duration(3 * 86400000LL + 4 * 3600000LL + 59000, "3d 4h");
    expect_duration(-61000, "1m 1s");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(timefmt_parse_http_date__imf_fixdate__epoch_ms_others_refused),
        cmocka_unit_test(timefmt_iso_ms__known_instants__match_js_toisostring),
        cmocka_unit_test(timefmt_iso_ms__negative_epoch__rounds_toward_past),
        cmocka_unit_test(timefmt_iso_ms__out_of_range_or_small_buffer__fails),
        cmocka_unit_test(timefmt_parse__rfc3339_forms__epoch_ms),
        cmocka_unit_test(timefmt_parse__postgres_timestamptz_output__epoch_ms),
        cmocka_unit_test(timefmt_parse__microseconds__truncated_to_ms_like_js),
        cmocka_unit_test(timefmt_parse__leap_years__validated),
        cmocka_unit_test(timefmt_parse__malformed__rejected),
        cmocka_unit_test(timefmt_roundtrip__format_then_parse__identical),
        cmocka_unit_test(timefmt_duration__units__two_at_most),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
