/*
 * Unit tests of the feature's boundary parsers: the execute-callback body,
 * the HTTP status mapping of execution outcomes, and NOTIFY payloads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "features/deals_pipeline/controllers/bookings_controller.h"
#include "features/deals_pipeline/controllers/notifications_controller.h"

#define T1 "11111111-1111-4111-8111-111111111111"
#define B1 "33333333-3333-4333-8333-333333333333"

static const char *parse_body(const char *json, struct execute_body *out)
{
    return execute_body_parse(json, strlen(json), out);
}

static void execute_body__valid__all_fields(void **state)
{
    (void)state;
    struct execute_body b;
    assert_null(parse_body("{\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1 "\",\"schema\":\"s1\","
                           "\"idempotencyKey\":\"followup:k\",\"leadId\":\"x\"}", &b));
    assert_string_equal(b.tenant_id, T1);
    assert_string_equal(b.booking_id, B1);
    assert_string_equal(b.schema, "s1");
    assert_string_equal(b.idempotency_key, "followup:k");
}

static void execute_body__each_bad_field__named(void **state)
{
    (void)state;
    struct execute_body b;
    assert_string_equal(parse_body("[]", &b), "body");
    assert_string_equal(parse_body("{", &b), "body");
    assert_string_equal(parse_body("{\"bookingId\":\"" B1 "\",\"schema\":\"s\",\"idempotencyKey\":\"k\"}", &b),
                        "tenantId");
    assert_string_equal(parse_body("{\"tenantId\":\"nope\",\"bookingId\":\"" B1 "\",\"schema\":\"s\","
                                   "\"idempotencyKey\":\"k\"}", &b), "tenantId");
    assert_string_equal(parse_body("{\"tenantId\":\"" T1 "\",\"bookingId\":7,\"schema\":\"s\",\"idempotencyKey\":\"k\"}",
                                   &b), "bookingId");
    assert_string_equal(parse_body("{\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1 "\",\"idempotencyKey\":\"k\"}", &b),
                        "schema");
    assert_string_equal(parse_body("{\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1 "\",\"schema\":\"s\"}", &b),
                        "idempotencyKey");
    /* duplicate keys and embedded NUL (jansson refuses \u0000 without JSON_ALLOW_NUL) are refused */
    assert_string_equal(parse_body("{\"tenantId\":\"" T1 "\",\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1
                                   "\",\"schema\":\"s\",\"idempotencyKey\":\"k\"}", &b), "body");
    assert_string_equal(parse_body("{\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1 "\",\"schema\":\"s\\u0000x\","
                                   "\"idempotencyKey\":\"k\"}", &b), "body");
}

static void http_status__each_outcome__contract(void **state)
{
    (void)state;
    const char *body;
    assert_int_equal(execution_http_status(EXEC_EXECUTED, &body), 200);
    assert_string_equal(body, "{\"status\":\"executed\"}");
    assert_int_equal(execution_http_status(EXEC_ALREADY_EXECUTED, &body), 200);
    assert_int_equal(execution_http_status(EXEC_CANCELLED, &body), 200);
    assert_int_equal(execution_http_status(EXEC_STALE, &body), 200);
    assert_int_equal(execution_http_status(EXEC_FAILED_FINAL, &body), 200);
    assert_string_equal(body, "{\"status\":\"failed\",\"retryable\":false}");
    assert_int_equal(execution_http_status(EXEC_IN_PROGRESS, &body), 409);
    assert_int_equal(execution_http_status(EXEC_NOT_FOUND, &body), 404);
    assert_int_equal(execution_http_status(EXEC_FAILED_RETRYABLE, &body), 503);
    assert_string_equal(body, "{\"status\":\"failed\",\"retryable\":true}");
    assert_int_equal(execution_http_status(EXEC_UNAVAILABLE, &body), 503);
    assert_int_equal(execution_http_status(EXEC_TOO_EARLY, &body), 425);
    assert_string_equal(body, "{\"status\":\"too_early\"}");
}

static void notification__valid_payloads__parsed(void **state)
{
    (void)state;
    struct booking_notification r;
    const char *p = "{\"schema\" : \"s1\", \"tenantId\" : \"" T1 "\", \"bookingId\" : \"" B1 "\", \"op\" : \"INSERT\"}";
    assert_int_equal(notification_parse(p, strlen(p), &r), 0);
    assert_string_equal(r.schema, "s1");
    assert_string_equal(r.op, "INSERT");
    assert_string_equal(r.task_name, "");
    p = "{\"schema\":\"s1\",\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1 "\",\"op\":\"DELETE\",\"taskName\":\"t/x\"}";
    assert_int_equal(notification_parse(p, strlen(p), &r), 0);
    assert_string_equal(r.task_name, "t/x");
    assert_string_equal(r.idempotency_key, "");
    assert_int_equal(r.task_generation, 0);
    p = "{\"schema\":\"s1\",\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1 "\",\"op\":\"DELETE\",\"taskName\":\"t/x\","
        "\"idempotencyKey\":\"followup:k\",\"taskGeneration\":3}";
    assert_int_equal(notification_parse(p, strlen(p), &r), 0);
    assert_string_equal(r.idempotency_key, "followup:k");
    assert_int_equal(r.task_generation, 3);
}

static void notification__malformed__rejected(void **state)
{
    (void)state;
    struct booking_notification r;
    const char *bad[] = {
        "", "null", "[]", "{\"schema\":\"s1\"}",
        "{\"schema\":\"s1\",\"tenantId\":\"x\",\"bookingId\":\"" B1 "\",\"op\":\"INSERT\"}",
        "{\"schema\":\"s1\",\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1 "\",\"op\":\"TRUNCATE\"}",
        "{\"schema\":1,\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1 "\",\"op\":\"INSERT\"}",
        "{\"schema\":\"s1\",\"schema\":\"s2\",\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1 "\",\"op\":\"INSERT\"}",
        "{\"schema\":\"s1\",\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1 "\",\"op\":\"DELETE\",\"taskName\":5}",
        "{\"schema\":\"s1\",\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1 "\",\"op\":\"DELETE\",\"taskGeneration\":-1}",
        "{\"schema\":\"s1\",\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1 "\",\"op\":\"DELETE\",\"taskGeneration\":\"1\"}",
        "{\"schema\":\"s1\",\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1 "\",\"op\":\"DELETE\",\"taskGeneration\":1.5}",
        "{\"schema\":\"s1\",\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1 "\",\"op\":\"DELETE\",\"taskGeneration\":4294967296}",
        "{\"schema\":\"s1\",\"tenantId\":\"" T1 "\",\"bookingId\":\"" B1 "\",\"op\":\"DELETE\",\"idempotencyKey\":7}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(notification_parse(bad[i], strlen(bad[i]), &r), -1);
    char big[2048];
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(notification_parse(big, strlen(big), &r), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(execute_body__valid__all_fields),
        cmocka_unit_test(execute_body__each_bad_field__named),
        cmocka_unit_test(http_status__each_outcome__contract),
        cmocka_unit_test(notification__valid_payloads__parsed),
        cmocka_unit_test(notification__malformed__rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
