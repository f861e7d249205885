/*
 * Hostile or broken answers from Google's endpoints, fed to the pure parsers
 * the daemon trusts them through: the token endpoint / metadata server reply
 * (google_auth_parse_token_reply), Cloud Tasks replies (cloud_tasks_classify)
 * and the JWKS response's Cache-Control (jwks_parse_max_age).  A reply that is
 * not exactly what Google documents must never yield a usable access token, a
 * success, or a negative/overflowing refresh period; errors never echo the
 * token.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/gcp/cloud_tasks_client.h"
#include "shared/gcp/google_auth.h"
#include "shared/gcp/jwks_cache.h"

#define TOKEN "ya29.c.b0AXv0zTPv-secret-access-token"

static char *parse(long status, const char *body, int64_t *expires, char *err, size_t errlen)
{
    *expires = 0;
    err[0] = '\0';
    return google_auth_parse_token_reply(status, body, strlen(body), expires, err, errlen);
}

/* ---- token replies ------------------------------------------------------------------- */

static void token_reply__google_shape__token_and_lifetime(void **state)
{
    (void)state;
    char err[256];
    int64_t exp;
    char *tok = parse(200, "{\"access_token\":\"" TOKEN "\",\"expires_in\":3599,\"token_type\":\"Bearer\"}", &exp, err,
                      sizeof(err));
    assert_non_null(tok);
    assert_string_equal(tok, TOKEN);
    assert_int_equal(exp, 3599);
    free(tok);
    /* token_type is optional and case-insensitive */
    tok = parse(200, "{\"access_token\":\"" TOKEN "\",\"expires_in\":60,\"token_type\":\"bearer\"}", &exp, err,
                sizeof(err));
    assert_non_null(tok);
    free(tok);
    tok = parse(200, "{\"access_token\":\"" TOKEN "\",\"expires_in\":60}", &exp, err, sizeof(err));
    assert_non_null(tok);
    free(tok);
}

static void token_reply__malformed_or_hostile__null_with_reason_never_the_token(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "",
        "null",
        "[]",
        "\"" TOKEN "\"",
        "{\"access_token\":\"" TOKEN "\"}",
        "{\"access_token\":\"" TOKEN "\",\"expires_in\":\"3599\"}",
        "{\"access_token\":\"" TOKEN "\",\"expires_in\":0}",
        "{\"access_token\":\"" TOKEN "\",\"expires_in\":-5}",
        "{\"access_token\":\"" TOKEN "\",\"expires_in\":3599.5}",
        "{\"access_token\":\"" TOKEN "\",\"expires_in\":3599,\"token_type\":\"MAC\"}",
        "{\"access_token\":\"" TOKEN "\",\"expires_in\":3599,\"token_type\":7}",
        "{\"access_token\":\"\",\"expires_in\":3599}",
        "{\"access_token\":\"" TOKEN "\\r\\nX-Injected: 1\",\"expires_in\":3599}",
        "{\"access_token\":\"" TOKEN " " TOKEN "\",\"expires_in\":3599}",
        "{\"access_token\":\"" TOKEN "\\u0000\",\"expires_in\":3599}",
        "{\"access_token\":\"tok\xc3\xa9n\",\"expires_in\":3599}",
        "{\"access_token\":[\"" TOKEN "\"],\"expires_in\":3599}",
        "{\"access_token\":\"" TOKEN "\",\"expires_in\":3599",
        "{\"access_token\":\"" TOKEN "\",\"expires_in\":3599}{}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char err[256];
        int64_t exp;
        char *tok = parse(200, bodies[i], &exp, err, sizeof(err));
        if (tok != NULL) fail_msg("body %zu accepted: %s", i, bodies[i]);
        assert_true(err[0] != '\0');
        assert_null(strstr(err, "ya29"));
    }
}

static void token_reply__oversize_token__refused(void **state)
{
    (void)state;
    size_t n = 64 * 1024;
    char *body = malloc(n + 64);
    assert_non_null(body);
    int off = snprintf(body, 64, "{\"access_token\":\"");
    memset(body + off, 'a', n);
    snprintf(body + off + n, 64, "\",\"expires_in\":3599}");
    char err[256];
    int64_t exp;
    assert_null(parse(200, body, &exp, err, sizeof(err)));
    free(body);
}

static void token_reply__non_2xx_even_with_a_token__null_and_status_in_reason(void **state)
{
    (void)state;
    static const long statuses[] = {0, 100, 199, 301, 400, 401, 403, 429, 500, 503, 999};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        char err[256], want[32];
        int64_t exp;
        assert_null(parse(statuses[i], "{\"access_token\":\"" TOKEN "\",\"expires_in\":3599,\"error\":\"invalid_grant\"}",
                          &exp, err, sizeof(err)));
        snprintf(want, sizeof(want), "HTTP %ld", statuses[i]);
        assert_non_null(strstr(err, want));
        assert_null(strstr(err, TOKEN));
    }
    char err[40];
    int64_t exp;
    char long_error[600];
    snprintf(long_error, sizeof(long_error), "{\"error\":\"%0500d\"}", 7);
    assert_null(parse(400, long_error, &exp, err, sizeof(err))); /* truncated into the small buffer, no overflow */
    assert_true(strlen(err) < sizeof(err));
}

/* ---- Cloud Tasks replies --------------------------------------------------------------- */

static void classify__hostile_error_bodies__documented_result_only(void **state)
{
    (void)state;
    const char *st = NULL;
    /* a 2xx is a success whatever the body says */
    assert_int_equal(cloud_tasks_classify(200, 0, "{\"error\":{\"status\":\"INTERNAL\"}}", &st), CT_OK);
    /* unknown or hostile status strings are never reported back (only our static canonical names are) */
    static const char *const odd[] = {"{\"error\":{\"status\":\"ALREADY_EXISTS \"}}",
                                      "{\"error\":{\"status\":\"already_exists\"}}",
                                      "{\"error\":{\"status\":\"ALREADY_EXISTS\\u0000x\"}}",
                                      "{\"error\":{\"status\":[\"ALREADY_EXISTS\"]}}",
                                      "{\"error\":\"ALREADY_EXISTS\"}"};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        st = "sentinel";
        assert_int_equal(cloud_tasks_classify(409, 0, odd[i], &st), CT_TRANSIENT);   /* not proof of a task */
        assert_null(st);
        assert_int_equal(cloud_tasks_classify(500, 0, odd[i], &st), CT_TRANSIENT);
        assert_int_equal(cloud_tasks_classify(403, 0, odd[i], &st), CT_PERMANENT);
    }
    assert_int_equal(cloud_tasks_classify(409, 0, "{\"error\":{\"status\":\"ABORTED\"}}", &st), CT_TRANSIENT);
    assert_string_equal(st, "ABORTED");
    /* the reported status is always one of our static strings */
    assert_int_equal(cloud_tasks_classify(400, 0, "{\"error\":{\"status\":\"INVALID_ARGUMENT\"}}", &st), CT_PERMANENT);
    assert_string_equal(st, "INVALID_ARGUMENT");
    /* nested bombs, non-JSON, truncated JSON */
    char bomb[4100];
    memset(bomb, '[', 4096);
    bomb[4096] = '\0';
    assert_int_equal(cloud_tasks_classify(503, 0, bomb, &st), CT_TRANSIENT);
    assert_int_equal(cloud_tasks_classify(404, 0, "<html>Not Found</html>", &st), CT_NOT_FOUND);
    assert_int_equal(cloud_tasks_classify(409, 0, "{\"error\":", &st), CT_TRANSIENT);
    assert_int_equal(cloud_tasks_classify(-1, 0, NULL, &st), CT_TRANSIENT);
    assert_int_equal(cloud_tasks_classify(200, 7, "{}", &st), CT_TRANSIENT); /* transport error wins */
}

/* ---- Cache-Control ----------------------------------------------------------------------- */

static void max_age__hostile_values__never_negative_or_wrapped(void **state)
{
    (void)state;
    assert_int_equal(jwks_parse_max_age("max-age=99999999999999999999999"), 2147483647);
    assert_int_equal(jwks_parse_max_age("max-age=-1"), 0);
    assert_int_equal(jwks_parse_max_age("max-age=1e9"), 0);
    assert_int_equal(jwks_parse_max_age("max-age=0x10"), 0);
    assert_int_equal(jwks_parse_max_age("max-age= 60"), 0);
    assert_int_equal(jwks_parse_max_age("max-age=\"60"), 0);
    assert_int_equal(jwks_parse_max_age("max-age"), 0);
    assert_int_equal(jwks_parse_max_age("s-maxage=60"), -1);
    assert_int_equal(jwks_parse_max_age("xmax-age=60"), -1);
    assert_int_equal(jwks_parse_max_age("max-age=60, no-store"), 0);
    char long_value[10000];
    memset(long_value, ',', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = '\0';
    assert_int_equal(jwks_parse_max_age(long_value), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(token_reply__google_shape__token_and_lifetime),
        cmocka_unit_test(token_reply__malformed_or_hostile__null_with_reason_never_the_token),
        cmocka_unit_test(token_reply__oversize_token__refused),
        cmocka_unit_test(token_reply__non_2xx_even_with_a_token__null_and_status_in_reason),
        cmocka_unit_test(classify__hostile_error_bodies__documented_result_only),
        cmocka_unit_test(max_age__hostile_values__never_negative_or_wrapped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
