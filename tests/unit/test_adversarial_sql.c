/*
 * Values that would end up in SQL, fed through every boundary that accepts
 * them before any query is built: the configured schema list (config_load),
 * the NOTIFY payload (notification_parse / notifications_controller_handle)
 * and the execute-callback body (execute_body_parse + the schema allowlist).
 *
 * Attack strings carry quotes, semicolons, dollar quotes, comments, NULs and
 * lengths past PostgreSQL's 63-byte identifiers.  The contract checked here:
 * a schema never reaches SQL unless it is an identifier from the allowlist
 * (so it is both harmless and quoted by PQescapeIdentifier later); tenant and
 * booking ids are canonical UUIDs; anything else is rejected up front.  The
 * end-to-end half (real PostgreSQL, nothing executed) is in
 * tests/integration/test_adversarial.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "features/deals_pipeline/controllers/bookings_controller.h"
#include "features/deals_pipeline/controllers/notifications_controller.h"
#include "shared/db/db_notify.h"
#include "support/ports_fakes.h"

#define TENANT "7d3c6f0e-2b1a-4c5d-8e9f-0a1b2c3d4e5f"
#define BOOKING "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"

static const char *const attack_strings[] = {
    "tenant_a\"",
    "tenant_a\"; DROP TABLE lead_bookings; --",
    "tenant_a'; DROP TABLE lead_bookings; --",
    "tenant_a' OR '1'='1",
    "tenant_a;",
    "tenant_a; SELECT pg_sleep(30)",
    "$$",
    "a$$; DROP SCHEMA public CASCADE; $$",
    "$tag$x$tag$",
    "tenant_a--",
    "tenant_a/*",
    "tenant_a.lead_bookings",
    "\"tenant_a\"",
    "tenant a",
    "tenant-a",
    "t\xc3\xa9nant",
    "tenant_a\\",
    "1tenant",
    "",
};

/* ---- [database] schemas ---------------------------------------------------- */

static const char *env_schemas;

static const char *fake_env(const char *name)
{
    if (strcmp(name, "FOLLOWUPD_DATABASE_CONNINFO") == 0) return "host=127.0.0.1 dbname=x";
    if (strcmp(name, "FOLLOWUPD_DATABASE_SCHEMAS") == 0) return env_schemas;
    if (strcmp(name, "FOLLOWUPD_QUEUE_BACKEND") == 0) return "local";
    if (strcmp(name, "FOLLOWUPD_VOICE_AGENT_BASE_URL") == 0) return "http://127.0.0.1:9";
    return NULL;
}

/* config_load with the schemas from the environment: 0/-1; *schema_error set when an error names the key. */
static int load_with_schemas(const char *schemas, int *schema_error)
{
    struct config cfg;
    struct config_errors errs = {0};
    env_schemas = schemas;
    int rc = config_load(&cfg, NULL, fake_env, &errs);
    *schema_error = 0;
    for (int i = 0; i < errs.n; i++)
        if (strstr(errs.msgs[i], "schemas") != NULL) *schema_error = 1;
    config_free(&cfg);
    config_errors_free(&errs);
    return rc;
}

static void config_load__plain_identifiers__accepted(void **state)
{
    (void)state;
    int schema_error;
    assert_int_equal(load_with_schemas("tenant_a,Tenant_B,_t3,select", &schema_error), 0);
    assert_false(schema_error);
}

static void config_load__schema_with_quotes_semicolons_dollars_or_spaces__rejected(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(attack_strings) / sizeof(attack_strings[0]); i++) {
        if (strchr(attack_strings[i], ',') != NULL) continue; /* the list separator */
        char list[256];
        snprintf(list, sizeof(list), "tenant_a,%s", attack_strings[i]);
        int schema_error;
        if (load_with_schemas(list, &schema_error) == 0 || !schema_error)
            fail_msg("schemas = '%s' was accepted", list);
    }
}

static void config_load__schema_of_64_bytes__rejected_63_accepted(void **state)
{
    (void)state;
    char name[70];
    memset(name, 's', 63);
    name[63] = '\0';
    int schema_error;
    assert_int_equal(load_with_schemas(name, &schema_error), 0);
    name[63] = 's';
    name[64] = '\0';
    assert_int_equal(load_with_schemas(name, &schema_error), -1);
    assert_true(schema_error);
    char *huge = malloc(100001);
    assert_non_null(huge);
    memset(huge, 'x', 100000);
    huge[100000] = '\0';
    assert_int_equal(load_with_schemas(huge, &schema_error), -1);
    assert_true(schema_error);
    free(huge);
}

/* ---- NOTIFY payloads --------------------------------------------------------- */

struct notify_fixture {
    struct config cfg;
    char *schemas[1];
    struct logger lg;
    char channel[64];
    struct fake_world w;
    struct followup_scheduler sched;
};

static int notify_setup(void **state)
{
    struct notify_fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->schemas[0] = "tenant_a";
    f->cfg.db_schemas.items = f->schemas;
    f->cfg.db_schemas.n = 1;
    logger_init(&f->lg, LOG_LEVEL_ERROR, open("/dev/null", O_WRONLY | O_CLOEXEC));
    assert_int_equal(db_channel_for_schema("tenant_a", f->channel), 0);
    fakes_init(&f->w);
    f->cfg.followup_max_inflight = 4;
    assert_int_equal(followup_scheduler_init(&f->sched, &f->cfg, &f->w.repo, &f->w.queue, &f->w.clock, &f->lg, 16),
                     0);
    *state = f;
    return 0;
}

static int notify_teardown(void **state)
{
    struct notify_fixture *f = *state;
    followup_scheduler_close(&f->sched);
    fakes_drain(&f->w);
    followup_scheduler_free(&f->sched);
    close(f->lg.fd);
    logger_free(&f->lg);
    free(f);
    return 0;
}

/* JSON string literal of s (escapes quotes, backslashes and control bytes). */
static void json_quote(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    out[n++] = '"';
    for (; *s != '\0' && n + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    out[n] = '\0';
}

/* The reason the controller counted for this payload (exactly one counter moved), or -1 when none did. */
static int rejection_of(struct notify_fixture *f, const char *channel, const char *payload)
{
    struct scheduler_stats before = f->sched.stats;
    enum notify_verdict v = notifications_controller_handle(&f->cfg, &f->sched, &f->lg, channel, payload);
    int reason = -1, moved = 0;
    for (int i = 0; i < REJECT_N; i++) {
        if (f->sched.stats.rejected[i] == before.rejected[i]) continue;
        assert_int_equal(f->sched.stats.rejected[i], before.rejected[i] + 1);
        reason = i;
        moved++;
    }
    assert_true(moved <= 1);
    assert_int_equal(v, reason >= 0 ? NOTIFY_REJECTED : NOTIFY_QUEUED);
    assert_int_equal(f->sched.stats.enqueued, before.enqueued + (reason >= 0 ? 0 : 1));
    return reason;
}

static int notify(struct notify_fixture *f, const char *schema_json, const char *tenant_json,
                  const char *booking_json)
{
    char payload[2048];
    snprintf(payload, sizeof(payload), "{\"schema\":%s,\"tenantId\":%s,\"bookingId\":%s,\"op\":\"INSERT\"}",
             schema_json, tenant_json, booking_json);
    return rejection_of(f, f->channel, payload);
}

static void notification__schema_carrying_sql__unknown_schema_or_malformed(void **state)
{
    struct notify_fixture *f = *state;
    for (size_t i = 0; i < sizeof(attack_strings) / sizeof(attack_strings[0]); i++) {
        char schema[512];
        json_quote(schema, sizeof(schema), attack_strings[i]);
        int v = notify(f, schema, "\"" TENANT "\"", "\"" BOOKING "\"");
        if (v != REJECT_UNKNOWN_SCHEMA && v != REJECT_MALFORMED) fail_msg("schema %s: verdict %d", schema, v);
    }
    /* a valid payload for another schema's channel */
    char other[64];
    assert_int_equal(db_channel_for_schema("tenant_b", other), 0);
    const char *valid = "{\"schema\":\"tenant_a\",\"tenantId\":\"" TENANT "\",\"bookingId\":\"" BOOKING
                        "\",\"op\":\"INSERT\"}";
    assert_int_equal(rejection_of(f, other, valid), REJECT_WRONG_CHANNEL);
    assert_int_equal(rejection_of(f, f->channel, valid), -1);   /* the same payload on its own channel is queued */
}

static void notification__ids_carrying_sql__malformed(void **state)
{
    struct notify_fixture *f = *state;
    for (size_t i = 0; i < sizeof(attack_strings) / sizeof(attack_strings[0]); i++) {
        char value[512];
        json_quote(value, sizeof(value), attack_strings[i]);
        assert_int_equal(notify(f, "\"tenant_a\"", value, "\"" BOOKING "\""), REJECT_MALFORMED);
        assert_int_equal(notify(f, "\"tenant_a\"", "\"" TENANT "\"", value), REJECT_MALFORMED);
    }
    /* UUID look-alikes */
    static const char *const ids[] = {
        "\"" TENANT "'\"", "\"" TENANT ";\"", "\"{" TENANT "}\"", "\"" TENANT " \"",
        "\"7d3c6f0e2b1a4c5d8e9f0a1b2c3d4e5f\"", "\"7d3c6f0e-2b1a-4c5d-8e9f-0a1b2c3d4e5g\"",
        "\"7d3c6f0e-2b1a-4c5d-8e9f-0a1b2c3d4e5f\\u0000\"", "1", "null",
    };
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        assert_int_equal(notify(f, "\"tenant_a\"", ids[i], "\"" BOOKING "\""), REJECT_MALFORMED);
}

static void notification__very_long_or_padded_payload__malformed(void **state)
{
    struct notify_fixture *f = *state;
    size_t n = 7999; /* PostgreSQL's payload limit is 8000 bytes */
    char *payload = malloc(n + 1);
    assert_non_null(payload);
    int off = snprintf(payload, n + 1, "{\"schema\":\"tenant_a\",\"tenantId\":\"" TENANT "\",\"bookingId\":\"" BOOKING
                                       "\",\"op\":\"INSERT\",\"pad\":\"");
    memset(payload + off, 'x', n - (size_t)off - 2);
    memcpy(payload + n - 2, "\"}", 3);
    assert_int_equal(rejection_of(f, f->channel, payload), REJECT_OVERSIZED);
    char *schema = malloc(5000);
    assert_non_null(schema);
    memset(schema, 'a', 4999);
    schema[4999] = '\0';
    struct booking_notification ref;
    snprintf(payload, n + 1, "{\"schema\":\"%s\",\"tenantId\":\"" TENANT "\",\"bookingId\":\"" BOOKING
             "\",\"op\":\"INSERT\"}", schema);
    assert_int_equal(notification_parse(payload, strlen(payload), &ref), -1);
    free(schema);
    free(payload);
}

/* ---- execute body ---------------------------------------------------------------- */

static void execute_body__schema_carrying_sql__parsed_verbatim_then_refused_by_the_allowlist(void **state)
{
    (void)state;
    char *items[] = {"tenant_a"};
    struct strlist allow = {.items = items, .n = 1};
    for (size_t i = 0; i < sizeof(attack_strings) / sizeof(attack_strings[0]); i++) {
        char schema[512], body[1024];
        json_quote(schema, sizeof(schema), attack_strings[i]);
        snprintf(body, sizeof(body), "{\"tenantId\":\"" TENANT "\",\"bookingId\":\"" BOOKING
                                     "\",\"schema\":%s,\"idempotencyKey\":\"k\"}", schema);
        struct execute_body b;
        const char *bad = execute_body_parse(body, strlen(body), &b);
        if (attack_strings[i][0] == '\0') {
            assert_string_equal(bad, "schema");
            continue;
        }
        if (bad != NULL) fail_msg("%s: rejected as %s", schema, bad);
        assert_string_equal(b.schema, attack_strings[i]); /* no unescaping surprises */
        assert_false(strlist_contains(&allow, b.schema));
    }
}

static void execute_body__ids_carrying_sql_or_overlong_fields__rejected_with_the_field(void **state)
{
    (void)state;
    struct execute_body b;
    for (size_t i = 0; i < sizeof(attack_strings) / sizeof(attack_strings[0]); i++) {
        char v[512], body[1024];
        json_quote(v, sizeof(v), attack_strings[i]);
        snprintf(body, sizeof(body), "{\"tenantId\":%s,\"bookingId\":\"" BOOKING
                                     "\",\"schema\":\"tenant_a\",\"idempotencyKey\":\"k\"}", v);
        assert_string_equal(execute_body_parse(body, strlen(body), &b), "tenantId");
        snprintf(body, sizeof(body), "{\"tenantId\":\"" TENANT "\",\"bookingId\":%s"
                                     ",\"schema\":\"tenant_a\",\"idempotencyKey\":\"k\"}", v);
        assert_string_equal(execute_body_parse(body, strlen(body), &b), "bookingId");
    }
    char *body = malloc(20000);
    assert_non_null(body);
    char *longv = malloc(10001);
    assert_non_null(longv);
    memset(longv, 'a', 10000);
    longv[10000] = '\0';
    snprintf(body, 20000, "{\"tenantId\":\"" TENANT "\",\"bookingId\":\"" BOOKING "\",\"schema\":\"%s\","
                          "\"idempotencyKey\":\"k\"}", longv);
    assert_string_equal(execute_body_parse(body, strlen(body), &b), "schema");
    snprintf(body, 20000, "{\"tenantId\":\"" TENANT "\",\"bookingId\":\"" BOOKING "\",\"schema\":\"tenant_a\","
                          "\"idempotencyKey\":\"%s\"}", longv);
    assert_string_equal(execute_body_parse(body, strlen(body), &b), "idempotencyKey");
    snprintf(body, 20000, "{\"tenantId\":\"" TENANT "\",\"bookingId\":\"" BOOKING "\",\"schema\":\"tenant_a\\u0000x\","
                          "\"idempotencyKey\":\"k\"}");
    assert_non_null(execute_body_parse(body, strlen(body), &b)); /* embedded NUL */
    free(longv);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_load__plain_identifiers__accepted),
        cmocka_unit_test(config_load__schema_with_quotes_semicolons_dollars_or_spaces__rejected),
        cmocka_unit_test(config_load__schema_of_64_bytes__rejected_63_accepted),
        cmocka_unit_test_setup_teardown(notification__schema_carrying_sql__unknown_schema_or_malformed, notify_setup,
                                        notify_teardown),
        cmocka_unit_test_setup_teardown(notification__ids_carrying_sql__malformed, notify_setup, notify_teardown),
        cmocka_unit_test_setup_teardown(notification__very_long_or_padded_payload__malformed, notify_setup,
                                        notify_teardown),
        cmocka_unit_test(execute_body__schema_carrying_sql__parsed_verbatim_then_refused_by_the_allowlist),
        cmocka_unit_test(execute_body__ids_carrying_sql_or_overlong_fields__rejected_with_the_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
