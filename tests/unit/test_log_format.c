/*
 * Unit tests for the line formats of utils/log: gcp uses Cloud Logging's names (severity, message, time) and
 * turns a context trace into logging.googleapis.com/trace = projects/<project>/traces/<id>; json carries the
 * trace as trace_id; text is one plain line (level prefix, context and fields in parentheses, control bytes
 * neutralized, secrets redacted) for the interactive command-line modes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "utils/log.h"

#define TRACE "4bf92f3577b34da6a3ce929d0e0e4736"

static json_t *line_object(const struct logger *lg, enum log_level lvl, const struct log_ctx *ctx,
                           const char *const *fields, const char *msg)
{
    char *line = log_format_line(lg, lvl, ctx, fields, msg);
    assert_non_null(line);
    json_t *obj = json_loads(line, JSON_REJECT_DUPLICATES, NULL);
    if (obj == NULL) fail_msg("not JSON: %s", line);
    free(line);
    return obj;
}

static const char *str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static void gcp__each_level__cloud_logging_severity_message_time(void **state)
{
    (void)state;
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_DEBUG, -1);
    log_set_format(&lg, LOG_FORMAT_GCP, "proj-1");
    const enum log_level levels[] = {LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR};
    const char *const severities[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
    for (int i = 0; i < 4; i++) {
        json_t *o = line_object(&lg, levels[i], NULL, NULL, "hello");
        assert_string_equal(str(o, "severity"), severities[i]);
        assert_string_equal(str(o, "message"), "hello");
        assert_int_equal(strlen(str(o, "time")), 24); /* RFC 3339, UTC, ms */
        assert_null(json_object_get(o, "level"));
        assert_null(json_object_get(o, "msg"));
        assert_null(json_object_get(o, "ts"));
        json_decref(o);
    }
    logger_free(&lg);
}

static void gcp__trace_in_context__trace_resource_name(void **state)
{
    (void)state;
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, -1);
    log_set_format(&lg, LOG_FORMAT_GCP, "proj-1");
    struct log_ctx ctx = {.request_id = "r1", .tenant_id = "t1", .trace_id = TRACE};
    json_t *o = line_object(&lg, LOG_LEVEL_INFO, &ctx, (const char *[]){"k", "v", NULL}, "m");
    assert_string_equal(str(o, "logging.googleapis.com/trace"), "projects/proj-1/traces/" TRACE);
    assert_null(json_object_get(o, "trace_id"));
    assert_string_equal(str(o, "request_id"), "r1");
    assert_string_equal(str(o, "tenant_id"), "t1");
    assert_string_equal(str(o, "k"), "v");
    json_decref(o);
    log_set_format(&lg, LOG_FORMAT_GCP, NULL);          /* no project: the bare id */
    o = line_object(&lg, LOG_LEVEL_INFO, &ctx, NULL, "m");
    assert_string_equal(str(o, "trace_id"), TRACE);
    assert_null(json_object_get(o, "logging.googleapis.com/trace"));
    json_decref(o);
    logger_free(&lg);
}

static void json__trace_in_context__trace_id_field(void **state)
{
    (void)state;
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, -1);
    json_t *o = line_object(&lg, LOG_LEVEL_WARN, &(struct log_ctx){.trace_id = TRACE}, NULL, "m");
    assert_string_equal(str(o, "level"), "warn");
    assert_string_equal(str(o, "msg"), "m");
    assert_string_equal(str(o, "trace_id"), TRACE);
    json_decref(o);
    logger_free(&lg);
}

static void text__levels_context_fields__one_plain_line(void **state)
{
    (void)state;
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_DEBUG, -1);
    log_set_format(&lg, LOG_FORMAT_TEXT, NULL);
    char *line = log_format_line(&lg, LOG_LEVEL_INFO, NULL, NULL, "/etc/f.conf:3: unknown key");
    assert_string_equal(line, "/etc/f.conf:3: unknown key");
    free(line);
    line = log_format_line(&lg, LOG_LEVEL_ERROR, &(struct log_ctx){.schema = "s1"},
                           (const char *[]){"file", "001.sql", NULL}, "failed");
    assert_string_equal(line, "error: failed (schema=s1, file=001.sql)");
    free(line);
    line = log_format_line(&lg, LOG_LEVEL_WARN, NULL, NULL, "careful");
    assert_string_equal(line, "warning: careful");
    free(line);
    logger_free(&lg);
}

static void text__control_bytes_and_secret__neutralized(void **state)
{
    (void)state;
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_DEBUG, -1);
    log_set_format(&lg, LOG_FORMAT_TEXT, NULL);
    log_add_secret(&lg, "hunter2secret");
    char *line = log_format_line(&lg, LOG_LEVEL_INFO, NULL, (const char *[]){"error", "pw=hunter2secret\n", NULL},
                                 "a\x1b[31mred\nline");
    assert_string_equal(line, "a [31mred line (error=pw=[REDACTED] )");
    free(line);
    logger_free(&lg);
}

static void log_format_parse__config_values__json_gcp_only(void **state)
{
    (void)state;
    enum log_format f = LOG_FORMAT_TEXT;
    assert_int_equal(log_format_parse("gcp", &f), 0);
    assert_int_equal(f, LOG_FORMAT_GCP);
    assert_int_equal(log_format_parse("json", &f), 0);
    assert_int_equal(f, LOG_FORMAT_JSON);
    assert_int_equal(log_format_parse("text", &f), -1);
    assert_int_equal(log_format_parse("GCP", &f), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gcp__each_level__cloud_logging_severity_message_time),
        cmocka_unit_test(gcp__trace_in_context__trace_resource_name),
        cmocka_unit_test(json__trace_in_context__trace_id_field),
        cmocka_unit_test(text__levels_context_fields__one_plain_line),
        cmocka_unit_test(text__control_bytes_and_secret__neutralized),
        cmocka_unit_test(log_format_parse__config_values__json_gcp_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
