/*
 * Unit tests for utils/trace_context: traceparent and X-Cloud-Trace-Context are accepted only in their exact
 * shape (hex lengths, separators, versions, zero ids, span range), normalized, and written back as a
 * traceparent; new traces have random, well-formed ids.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "utils/trace_context.h"

#define TRACE "4bf92f3577b34da6a3ce929d0e0e4736"
#define SPAN "00f067aa0ba902b7"

static void expect_traceparent(const char *value, const char *trace, const char *span, bool sampled)
{
    struct trace_context t;
    assert_int_equal(trace_context_parse_traceparent(value, &t), 0);
    assert_string_equal(t.trace_id, trace);
    assert_string_equal(t.span_id, span);
    assert_int_equal(t.sampled, sampled);
}

static void expect_traceparent_refused(const char *value)
{
    struct trace_context t;
    assert_int_equal(trace_context_parse_traceparent(value, &t), -1);
    assert_string_equal(t.trace_id, "");
}

static void expect_cloud_refused(const char *value)
{
    struct trace_context t;
    assert_int_equal(trace_context_parse_cloud(value, &t), -1);
    assert_string_equal(t.trace_id, "");
}

static void parse_traceparent__w3c_example__parts(void **state)
{
    (void)state;
    expect_traceparent("00-" TRACE "-" SPAN "-01", TRACE, SPAN, true);
    expect_traceparent("00-" TRACE "-" SPAN "-00", TRACE, SPAN, false);
    expect_traceparent("00-" TRACE "-" SPAN "-03", TRACE, SPAN, true);   /* other flag bits: sampled bit only */
    expect_traceparent("01-" TRACE "-" SPAN "-01-what-the-future-adds", TRACE, SPAN, true);
}

static void parse_traceparent__malformed__refused(void **state)
{
    (void)state;
    expect_traceparent_refused(NULL);
    expect_traceparent_refused("");
    expect_traceparent_refused("00-" TRACE "-" SPAN "-01 ");                      /* version 00: exactly 55 */
    expect_traceparent_refused("00-" TRACE "-" SPAN "-01-extra");
    expect_traceparent_refused("01-" TRACE "-" SPAN "-01extra");                  /* later version: "-" only */
    expect_traceparent_refused("ff-" TRACE "-" SPAN "-01");                       /* forbidden version */
    expect_traceparent_refused("00-4BF92F3577B34DA6A3CE929D0E0E4736-" SPAN "-01"); /* uppercase */
    expect_traceparent_refused("00-" TRACE "0-" SPAN "-01");                      /* 33 hex digits */
    expect_traceparent_refused("00-4bf92f3577b34da6a3ce929d0e0e473-" SPAN "-01"); /* 31 */
    expect_traceparent_refused("00-" TRACE "-00f067aa0ba902b-01");                /* 15 */
    expect_traceparent_refused("00-00000000000000000000000000000000-" SPAN "-01");
    expect_traceparent_refused("00-" TRACE "-0000000000000000-01");
    expect_traceparent_refused("00_" TRACE "-" SPAN "-01");
    expect_traceparent_refused("00-" TRACE "-" SPAN "-0g");
    expect_traceparent_refused("00-" TRACE "-" SPAN "-\n1");
}

static void parse_cloud__google_shape__parts(void **state)
{
    (void)state;
    struct trace_context t;
    assert_int_equal(trace_context_parse_cloud(TRACE "/1;o=1", &t), 0);
    assert_string_equal(t.trace_id, TRACE);
    assert_string_equal(t.span_id, "0000000000000001");
    assert_true(t.sampled);
    assert_int_equal(trace_context_parse_cloud("4BF92F3577B34DA6A3CE929D0E0E4736/18446744073709551615;o=0", &t), 0);
    assert_string_equal(t.trace_id, TRACE);                                      /* normalized to lowercase */
    assert_string_equal(t.span_id, "ffffffffffffffff");
    assert_false(t.sampled);
    assert_int_equal(trace_context_parse_cloud(TRACE "/67667974448284343", &t), 0);
    assert_string_equal(t.span_id, "00f067aa0ba902b7");
    assert_false(t.sampled);
}

static void parse_cloud__malformed__refused(void **state)
{
    (void)state;
    expect_cloud_refused(NULL);
    expect_cloud_refused(TRACE);                                   /* no span */
    expect_cloud_refused(TRACE "/");
    expect_cloud_refused(TRACE "/0;o=1");                          /* span 0 */
    expect_cloud_refused(TRACE "/18446744073709551616;o=1");       /* 2^64 */
    expect_cloud_refused(TRACE "/12a;o=1");
    expect_cloud_refused(TRACE "/12;o=2");
    expect_cloud_refused(TRACE "/12;o=1;x=y");
    expect_cloud_refused(TRACE "/-12");
    expect_cloud_refused("4bf92f3577b34da6a3ce929d0e0e473/12;o=1");  /* 31 hex digits */
    expect_cloud_refused(TRACE "0/12;o=1");
    expect_cloud_refused("00000000000000000000000000000000/12;o=1");
    expect_cloud_refused("zz" TRACE "/1");
}

static void from_headers__both__traceparent_wins_then_cloud(void **state)
{
    (void)state;
    struct trace_context t;
    const char *cloud = "11111111111111111111111111111111/5";
    assert_int_equal(trace_context_from_headers("00-" TRACE "-" SPAN "-01", cloud, &t), 0);
    assert_string_equal(t.trace_id, TRACE);
    assert_int_equal(trace_context_from_headers("garbage", cloud, &t), 0);
    assert_string_equal(t.trace_id, "11111111111111111111111111111111");
    assert_int_equal(trace_context_from_headers(NULL, NULL, &t), -1);
    assert_int_equal(trace_context_from_headers("garbage", "garbage", &t), -1);
}

static void format__parsed__round_trips(void **state)
{
    (void)state;
    struct trace_context t;
    char out[TRACEPARENT_LEN + 1];
    assert_int_equal(trace_context_parse_cloud(TRACE "/67667974448284343;o=1", &t), 0);
    trace_context_format(&t, out);
    assert_string_equal(out, "00-" TRACE "-" SPAN "-01");
    struct trace_context none = {0};
    trace_context_format(&none, out);
    assert_string_equal(out, "");
}

static void new__twice__distinct_valid_sampled(void **state)
{
    (void)state;
    struct trace_context a, b, parsed;
    char out[TRACEPARENT_LEN + 1];
    trace_context_new(&a);
    trace_context_new(&b);
    assert_string_not_equal(a.trace_id, b.trace_id);
    assert_string_not_equal(a.span_id, b.span_id);
    trace_context_format(&a, out);
    assert_int_equal(trace_context_parse_traceparent(out, &parsed), 0);
    assert_string_equal(parsed.trace_id, a.trace_id);
    assert_true(parsed.sampled);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_traceparent__w3c_example__parts),
        cmocka_unit_test(parse_traceparent__malformed__refused),
        cmocka_unit_test(parse_cloud__google_shape__parts),
        cmocka_unit_test(parse_cloud__malformed__refused),
        cmocka_unit_test(from_headers__both__traceparent_wins_then_cloud),
        cmocka_unit_test(format__parsed__round_trips),
        cmocka_unit_test(new__twice__distinct_valid_sampled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
