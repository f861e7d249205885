/*
 * Unit tests for shared/http/http_router: pure table matching, no I/O.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "shared/http/http_router.h"

static void handler_a(struct http_exchange *ex, void *ctx)
{
    (void)ex;
    (void)ctx;
}

static void handler_b(struct http_exchange *ex, void *ctx)
{
    (void)ex;
    (void)ctx;
}

static const struct http_route routes[] = {
    {"GET", "/healthz", handler_a, HTTP_AUTH_NONE},
    {"POST", "/api/deals-pipeline/bookings/:id/execute-followup", handler_b, HTTP_AUTH_TASK},
    {"GET", "/api/items/new", handler_a, HTTP_AUTH_NONE},
    {"GET", "/api/items/:id", handler_b, HTTP_AUTH_NONE},
    {"DELETE", "/api/items/:id", handler_a, HTTP_AUTH_NONE},
    {"PUT", "/api/items/:id", handler_a, HTTP_AUTH_NONE},
    {"PUT", "/api/items/:other", handler_b, HTTP_AUTH_NONE},
    {"GET", "/a/:x/b/:y", handler_a, HTTP_AUTH_NONE},
    {"GET", "/", handler_b, HTTP_AUTH_NONE},
};
static const size_t n_routes = sizeof(routes) / sizeof(routes[0]);

static int match(const char *method, const char *path, const struct http_route **out, struct http_params *params,
                 char *allow, size_t allow_len)
{
    return http_router_match(routes, n_routes, method, path, out, params, allow, allow_len);
}

static void match__literal_path__200_and_route(void **state)
{
    (void)state;
    const struct http_route *r = NULL;
    struct http_params p;
    assert_int_equal(match("GET", "/healthz", &r, &p, NULL, 0), 200);
    assert_ptr_equal(r, &routes[0]);
    assert_int_equal(p.n, 0);
}

static void match__param_segment__captured_by_name(void **state)
{
    (void)state;
    const struct http_route *r = NULL;
    struct http_params p;
    assert_int_equal(match("POST", "/api/deals-pipeline/bookings/7f3a-11/execute-followup", &r, &p, NULL, 0), 200);
    assert_ptr_equal(r, &routes[1]);
    assert_int_equal(r->auth, HTTP_AUTH_TASK);
    assert_string_equal(http_params_get(&p, "id"), "7f3a-11");
    assert_null(http_params_get(&p, "i"));
    assert_null(http_params_get(&p, "idx"));
}

static void match__two_params__both_captured(void **state)
{
    (void)state;
    const struct http_route *r = NULL;
    struct http_params p;
    assert_int_equal(match("GET", "/a/one/b/two", &r, &p, NULL, 0), 200);
    assert_string_equal(http_params_get(&p, "x"), "one");
    assert_string_equal(http_params_get(&p, "y"), "two");
}

static void match__params_struct_copied__values_still_valid(void **state)
{
    (void)state;
    struct http_params p, copy;
    assert_int_equal(match("GET", "/a/one/b/two", NULL, &p, NULL, 0), 200);
    copy = p;
    memset(&p, 'Z', sizeof(p));
    assert_string_equal(http_params_get(&copy, "y"), "two");
}

static void match__percent_encoded_param__decoded(void **state)
{
    (void)state;
    struct http_params p;
    assert_int_equal(match("GET", "/api/items/a%20b%2Fc", NULL, &p, NULL, 0), 200);
    assert_string_equal(http_params_get(&p, "id"), "a b/c");
}

static void match__bad_percent_encoding__404(void **state)
{
    (void)state;
    struct http_params p;
    assert_int_equal(match("GET", "/api/items/a%2", NULL, &p, NULL, 0), 404);
    assert_int_equal(match("GET", "/api/items/a%zz", NULL, &p, NULL, 0), 404);
    assert_int_equal(match("GET", "/api/items/a%00b", NULL, &p, NULL, 0), 404);
}

static void match__dot_segments_as_param__404(void **state)
{
    (void)state;
    struct http_params p;
    assert_int_equal(match("GET", "/api/items/..", NULL, &p, NULL, 0), 404);
    assert_int_equal(match("GET", "/api/items/%2e", NULL, &p, NULL, 0), 404);
}

static void match__unknown_path__404(void **state)
{
    (void)state;
    char allow[64] = "junk";
    assert_int_equal(match("GET", "/nope", NULL, NULL, allow, sizeof(allow)), 404);
    assert_string_equal(allow, "");
    assert_int_equal(match("GET", "", NULL, NULL, NULL, 0), 404);
    assert_int_equal(match("GET", "healthz", NULL, NULL, NULL, 0), 404);
}

static void match__trailing_or_double_slash__404(void **state)
{
    (void)state;
    assert_int_equal(match("GET", "/healthz/", NULL, NULL, NULL, 0), 404);
    assert_int_equal(match("GET", "//healthz", NULL, NULL, NULL, 0), 404);
    assert_int_equal(match("GET", "/a/one//b/two", NULL, NULL, NULL, 0), 404);
}

static void match__empty_param_segment__404(void **state)
{
    (void)state;
    assert_int_equal(match("GET", "/api/items/", NULL, NULL, NULL, 0), 404);
    assert_int_equal(match("GET", "/a//b/two", NULL, NULL, NULL, 0), 404);
}

static void match__extra_or_missing_segment__404(void **state)
{
    (void)state;
    assert_int_equal(match("GET", "/api/items/1/more", NULL, NULL, NULL, 0), 404);
    assert_int_equal(match("GET", "/api", NULL, NULL, NULL, 0), 404);
}

static void match__root_pattern__only_root(void **state)
{
    (void)state;
    const struct http_route *r = NULL;
    assert_int_equal(match("GET", "/", &r, NULL, NULL, 0), 200);
    assert_ptr_equal(r, &routes[8]);
}

static void match__wrong_method__405_with_allow(void **state)
{
    (void)state;
    char allow[64];
    assert_int_equal(match("PATCH", "/api/items/42", NULL, NULL, allow, sizeof(allow)), 405);
    assert_string_equal(allow, "GET, DELETE, PUT"); /* PUT listed once though two rows match */
    assert_int_equal(match("GET", "/api/deals-pipeline/bookings/1/execute-followup", NULL, NULL, allow, sizeof(allow)),
                     405);
    assert_string_equal(allow, "POST");
}

static void match__methods_case_sensitive__405(void **state)
{
    (void)state;
    char allow[64];
    assert_int_equal(match("get", "/healthz", NULL, NULL, allow, sizeof(allow)), 405);
    assert_string_equal(allow, "GET");
}

static void match__small_allow_buffer__truncated_at_method_boundary(void **state)
{
    (void)state;
    char allow[12];
    assert_int_equal(match("PATCH", "/api/items/42", NULL, NULL, allow, sizeof(allow)), 405);
    assert_string_equal(allow, "GET, DELETE");
    char tiny[2];
    assert_int_equal(match("PATCH", "/api/items/42", NULL, NULL, tiny, sizeof(tiny)), 405);
    assert_string_equal(tiny, "");
}

static void match__literal_before_param__table_order_wins(void **state)
{
    (void)state;
    const struct http_route *r = NULL;
    struct http_params p;
    assert_int_equal(match("GET", "/api/items/new", &r, &p, NULL, 0), 200);
    assert_ptr_equal(r, &routes[2]);
    assert_int_equal(match("PUT", "/api/items/9", &r, &p, NULL, 0), 200);
    assert_ptr_equal(r, &routes[5]);
    assert_string_equal(http_params_get(&p, "id"), "9");
    assert_null(http_params_get(&p, "other"));
}

static void match__param_longer_than_buffer__404(void **state)
{
    (void)state;
    char path[HTTP_ROUTER_PARAM_BYTES + 32];
    strcpy(path, "/api/items/");
    memset(path + strlen(path), 'x', HTTP_ROUTER_PARAM_BYTES);
    path[11 + HTTP_ROUTER_PARAM_BYTES] = '\0';
    assert_int_equal(match("GET", path, NULL, NULL, NULL, 0), 404);
    path[11 + HTTP_ROUTER_PARAM_BYTES - 1] = '\0'; /* exactly fills the buffer with its NUL */
    struct http_params p;
    assert_int_equal(match("GET", path, NULL, &p, NULL, 0), 200);
    assert_int_equal(strlen(http_params_get(&p, "id")), HTTP_ROUTER_PARAM_BYTES - 1);
}

static void match__null_inputs__404(void **state)
{
    (void)state;
    assert_int_equal(match(NULL, "/healthz", NULL, NULL, NULL, 0), 404);
    assert_int_equal(match("GET", NULL, NULL, NULL, NULL, 0), 404);
    assert_int_equal(http_router_match(NULL, 0, "GET", "/", NULL, NULL, NULL, 0), 404);
}

static void validate__good_table__0(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(http_router_validate(routes, n_routes, err, sizeof(err)), 0);
}

static void validate__bad_rows__minus1_with_message(void **state)
{
    (void)state;
    char err[128] = "";
    const struct http_route no_slash[] = {{"GET", "x", handler_a, HTTP_AUTH_NONE}};
    const struct http_route empty_param[] = {{"GET", "/a/:/b", handler_a, HTTP_AUTH_NONE}};
    const struct http_route no_handler[] = {{"GET", "/a", NULL, HTTP_AUTH_NONE}};
    const struct http_route bad_method[] = {{"GE T", "/a", handler_a, HTTP_AUTH_NONE}};
    const struct http_route null_pattern[] = {{"GET", NULL, handler_a, HTTP_AUTH_NONE}};
    assert_int_equal(http_router_validate(no_slash, 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "#0"));
    assert_int_equal(http_router_validate(empty_param, 1, err, sizeof(err)), -1);
    assert_int_equal(http_router_validate(no_handler, 1, err, sizeof(err)), -1);
    assert_int_equal(http_router_validate(bad_method, 1, err, sizeof(err)), -1);
    assert_int_equal(http_router_validate(null_pattern, 1, err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(match__literal_path__200_and_route),
        cmocka_unit_test(match__param_segment__captured_by_name),
        cmocka_unit_test(match__two_params__both_captured),
        cmocka_unit_test(match__params_struct_copied__values_still_valid),
        cmocka_unit_test(match__percent_encoded_param__decoded),
        cmocka_unit_test(match__bad_percent_encoding__404),
        cmocka_unit_test(match__dot_segments_as_param__404),
        cmocka_unit_test(match__unknown_path__404),
        cmocka_unit_test(match__trailing_or_double_slash__404),
        cmocka_unit_test(match__empty_param_segment__404),
        cmocka_unit_test(match__extra_or_missing_segment__404),
        cmocka_unit_test(match__root_pattern__only_root),
        cmocka_unit_test(match__wrong_method__405_with_allow),
        cmocka_unit_test(match__methods_case_sensitive__405),
        cmocka_unit_test(match__small_allow_buffer__truncated_at_method_boundary),
        cmocka_unit_test(match__literal_before_param__table_order_wins),
        cmocka_unit_test(match__param_longer_than_buffer__404),
        cmocka_unit_test(match__null_inputs__404),
        cmocka_unit_test(validate__good_table__0),
        cmocka_unit_test(validate__bad_rows__minus1_with_message),
    };
    return cmocka_run_group_tests_name("http_router", tests, NULL, NULL);
}
