/* Unit tests for core/metrics: registration rules, exact text exposition (0.0.4) output, escaping, histogram
 * cumulation, number formatting, series bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"

static void expect_render(const struct metrics_registry *r, const char *want)
{
    size_t len = 0;
    char *text = metrics_render(r, &len);
    assert_non_null(text);
    assert_string_equal(text, want);
    assert_int_equal(len, strlen(want));
    free(text);
}

static void metrics_render__counter_gauge_histogram__exact_text(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    assert_non_null(r);
    struct metric_family *c = metrics_family_new(r, METRIC_COUNTER, "app_requests_total", "Requests, by code.",
                                                 (const char *const[]){"code", NULL}, NULL, 0);
    struct metric_series *ok = metrics_series(c, (const char *const[]){"200"});
    metrics_counter_add(ok, 2);
    metrics_counter_add(metrics_series(c, (const char *const[]){"401"}), 1);
    metrics_counter_add(ok, 1);
    metrics_counter_add(ok, -5); /* ignored: counters never go down */
    struct metric_family *g = metrics_family_new(r, METRIC_GAUGE, "app_pool_in_use", "In use.", NULL, NULL, 0);
    metrics_gauge_set(metrics_series(g, NULL), 3);
    static const double b[] = {0.1, 1, 2.5};
    struct metric_family *h = metrics_family_new(r, METRIC_HISTOGRAM, "app_duration_seconds", "Durations.", NULL, b, 3);
    struct metric_series *hs = metrics_series(h, NULL);
    metrics_histogram_observe(hs, 0.05);
    metrics_histogram_observe(hs, 0.1); /* le is inclusive */
    metrics_histogram_observe(hs, 2);
    metrics_histogram_observe(hs, 7.25); /* only +Inf */
    expect_render(r, "# HELP app_requests_total Requests, by code.\n"
                     "# TYPE app_requests_total counter\n"
                     "app_requests_total{code=\"200\"} 3\n"
                     "app_requests_total{code=\"401\"} 1\n"
                     "# HELP app_pool_in_use In use.\n"
                     "# TYPE app_pool_in_use gauge\n"
                     "app_pool_in_use 3\n"
                     "# HELP app_duration_seconds Durations.\n"
                     "# TYPE app_duration_seconds histogram\n"
                     "app_duration_seconds_bucket{le=\"0.1\"} 2\n"
                     "app_duration_seconds_bucket{le=\"1\"} 2\n"
                     "app_duration_seconds_bucket{le=\"2.5\"} 3\n"
                     "app_duration_seconds_bucket{le=\"+Inf\"} 4\n"
                     "app_duration_seconds_sum 9.4\n"
                     "app_duration_seconds_count 4\n");
    assert_true(metrics_value(ok) == 3);
    assert_true(metrics_value(hs) == 4);
    metrics_registry_free(r);
}

static void metrics_render__labelled_histogram__labels_before_le(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    static const double b[] = {1};
    struct metric_family *h =
        metrics_family_new(r, METRIC_HISTOGRAM, "x_seconds", "X.", (const char *const[]){"route", NULL}, b, 1);
    metrics_histogram_observe(metrics_series(h, (const char *const[]){"a"}), 0.5);
    expect_render(r, "# HELP x_seconds X.\n"
                     "# TYPE x_seconds histogram\n"
                     "x_seconds_bucket{route=\"a\",le=\"1\"} 1\n"
                     "x_seconds_bucket{route=\"a\",le=\"+Inf\"} 1\n"
                     "x_seconds_sum{route=\"a\"} 0.5\n"
                     "x_seconds_count{route=\"a\"} 1\n");
    metrics_registry_free(r);
}

static void metrics_render__escaping__help_and_label_values(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    struct metric_family *f =
        metrics_family_new(r, METRIC_GAUGE, "esc", "a \\ b\nc \"q\"", (const char *const[]){"v", NULL}, NULL, 0);
    metrics_gauge_set(metrics_series(f, (const char *const[]){"back\\slash \"quote\"\nnew"}), 1);
    metrics_gauge_set(metrics_series(f, (const char *const[]){NULL}), 2); /* NULL reads as "" */
    expect_render(r, "# HELP esc a \\\\ b\\nc \"q\"\n"
                     "# TYPE esc gauge\n"
                     "esc{v=\"back\\\\slash \\\"quote\\\"\\nnew\"} 1\n"
                     "esc{v=\"\"} 2\n");
    metrics_registry_free(r);
}

static void metrics_render__empty_registry__empty_text(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    expect_render(r, "");
    metrics_registry_free(r);
}

static void metrics_family_new__rule_violations__rejected(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    static const double good[] = {1, 2}, unsorted[] = {2, 1}, dup[] = {1, 1};
    const double inf[] = {1, INFINITY};
    assert_null(metrics_family_new(r, METRIC_COUNTER, "no_suffix", "", NULL, NULL, 0));
    assert_null(metrics_family_new(r, METRIC_GAUGE, "9starts_with_digit", "", NULL, NULL, 0));
    assert_null(metrics_family_new(r, METRIC_GAUGE, "has-dash", "", NULL, NULL, 0));
    assert_null(metrics_family_new(r, METRIC_GAUGE, "", "", NULL, NULL, 0));
    assert_null(metrics_family_new(r, METRIC_GAUGE, "g", "", (const char *const[]){"__reserved", NULL}, NULL, 0));
    assert_null(metrics_family_new(r, METRIC_GAUGE, "g", "", (const char *const[]){"a:b", NULL}, NULL, 0));
    assert_null(metrics_family_new(r, METRIC_GAUGE, "g", "", (const char *const[]){"a", "a", NULL}, NULL, 0));
    assert_null(
        metrics_family_new(r, METRIC_GAUGE, "g", "", (const char *const[]){"a", "b", "c", "d", "e", NULL}, NULL, 0));
    assert_null(metrics_family_new(r, METRIC_GAUGE, "g", "", NULL, good, 2)); /* buckets on a gauge */
    assert_null(metrics_family_new(r, METRIC_HISTOGRAM, "h", "", NULL, NULL, 0));
    assert_null(metrics_family_new(r, METRIC_HISTOGRAM, "h", "", NULL, unsorted, 2));
    assert_null(metrics_family_new(r, METRIC_HISTOGRAM, "h", "", NULL, dup, 2));
    assert_null(metrics_family_new(r, METRIC_HISTOGRAM, "h", "", NULL, inf, 2));
    assert_null(metrics_family_new(r, METRIC_HISTOGRAM, "h", "", (const char *const[]){"le", NULL}, good, 2));
    assert_non_null(metrics_family_new(r, METRIC_GAUGE, "ns:name_ok", "", NULL, NULL, 0));
    assert_null(metrics_family_new(r, METRIC_GAUGE, "ns:name_ok", "", NULL, NULL, 0)); /* duplicate */
    assert_non_null(metrics_family_new(r, METRIC_HISTOGRAM, "h", "", NULL, good, 2));
    metrics_registry_free(r);
}

static void metrics_series__same_labels__same_series_and_bounded(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    struct metric_family *f =
        metrics_family_new(r, METRIC_COUNTER, "c_total", "", (const char *const[]){"k", NULL}, NULL, 0);
    struct metric_series *a = metrics_series(f, (const char *const[]){"x"});
    assert_ptr_equal(metrics_series(f, (const char *const[]){"x"}), a);
    char v[16];
    for (int i = 1; i < METRICS_MAX_SERIES; i++) {
        snprintf(v, sizeof(v), "v%d", i);
        assert_non_null(metrics_series(f, (const char *const[]){v}));
    }
    assert_null(metrics_series(f, (const char *const[]){"one-too-many"}));
    metrics_counter_add(NULL, 1); /* a failed lookup is harmless */
    assert_null(metrics_series(NULL, NULL));
    metrics_registry_free(r);
}

static void metrics_counter_set__mirrors_external_count__histogram_ignores_scalar_updates(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    struct metric_series *c = metrics_series(metrics_family_new(r, METRIC_COUNTER, "m_total", "", NULL, NULL, 0), NULL);
    metrics_counter_set(c, 17);
    assert_true(metrics_value(c) == 17);
    static const double b[] = {1};
    struct metric_series *h = metrics_series(metrics_family_new(r, METRIC_HISTOGRAM, "h", "", NULL, b, 1), NULL);
    metrics_counter_add(h, 5);
    metrics_gauge_set(h, 5);
    metrics_histogram_observe(h, NAN); /* ignored */
    assert_true(metrics_value(h) == 0);
    metrics_histogram_observe(c, 1); /* observe on a counter is ignored */
    assert_true(metrics_value(c) == 17);
    metrics_registry_free(r);
}

static void expect_number(double v, const char *want)
{
    char buf[64];
    metrics_format_value(v, buf, sizeof(buf));
    assert_string_equal(buf, want);
}

static void metrics_format_value__shortest_exact_forms(void **state)
{
    (void)state;
    expect_number(0, "0");
    expect_number(-0.0, "0");
    expect_number(42, "42");
    expect_number(-3, "-3");
    expect_number(0.1, "0.1");
    expect_number(0.005, "0.005");
    expect_number(2.5, "2.5");
    expect_number(1.0 / 3.0, "0.3333333333333333");
    expect_number(1e20, "1e+20");
    expect_number(123456789012345.0, "123456789012345");
    expect_number(INFINITY, "+Inf");
    expect_number(-INFINITY, "-Inf");
    expect_number(NAN, "NaN");
}

static void metrics_name_valid__grammar(void **state)
{
    (void)state;
    assert_true(metrics_name_valid("followupd_x_total"));
    assert_true(metrics_name_valid(":colon_ok"));
    assert_true(metrics_name_valid("_x9"));
    assert_false(metrics_name_valid("x y"));
    assert_false(metrics_name_valid("é"));
    assert_false(metrics_name_valid(NULL));
    assert_true(metrics_label_name_valid("code"));
    assert_false(metrics_label_name_valid("9x"));
    assert_false(metrics_label_name_valid("a:b"));
    assert_false(metrics_label_name_valid("__x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(metrics_render__counter_gauge_histogram__exact_text),
        cmocka_unit_test(metrics_render__labelled_histogram__labels_before_le),
        cmocka_unit_test(metrics_render__escaping__help_and_label_values),
        cmocka_unit_test(metrics_render__empty_registry__empty_text),
        cmocka_unit_test(metrics_family_new__rule_violations__rejected),
        cmocka_unit_test(metrics_series__same_labels__same_series_and_bounded),
        cmocka_unit_test(metrics_counter_set__mirrors_external_count__histogram_ignores_scalar_updates),
        cmocka_unit_test(metrics_format_value__shortest_exact_forms),
        cmocka_unit_test(metrics_name_valid__grammar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
