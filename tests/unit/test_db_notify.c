/*
 * Unit tests of shared/db/db_notify: the channel name of a schema must equal
 * PostgreSQL's 'followupd_' || md5(schema) (values from md5 of the bytes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "shared/db/db_notify.h"

static void channel_for_schema__abc__followupd_prefix_and_md5_hex(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(db_channel_for_schema("abc", out), 0);
    assert_string_equal(out, "followupd_900150983cd24fb0d6963f7d28e17f72");
}

static void channel_for_schema__tenant_name__matches_known_md5(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(db_channel_for_schema("tenant_acme", out), 0);
    assert_string_equal(out, "followupd_4a703991b1b16ade9d7e1380675dd435");
    assert_int_equal(strlen(out), DB_CHANNEL_LEN);
}

static void channel_for_schema__utf8_and_mixed_case__hashes_raw_bytes(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(db_channel_for_schema("sch\xc3\xa9ma", out), 0);
    assert_string_equal(out, "followupd_d8ff124e407009063493165131630507");
    assert_int_equal(db_channel_for_schema("Mixed Case", out), 0);
    assert_string_equal(out, "followupd_a611d3c006932bfc7186bfc7e56f4df2");
}

static void channel_for_schema__empty_or_null__fails_with_empty_output(void **state)
{
    (void)state;
    char out[64] = "junk";
    assert_int_equal(db_channel_for_schema("", out), -1);
    assert_string_equal(out, "");
    strcpy(out, "junk");
    assert_int_equal(db_channel_for_schema(NULL, out), -1);
    assert_string_equal(out, "");
}

static void channel_for_schema__any_schema__lowercase_identifier_within_63_bytes(void **state)
{
    (void)state;
    char out[64];
    char schema[200];
    memset(schema, 'Z', sizeof(schema) - 1);
    schema[sizeof(schema) - 1] = '\0';
    assert_int_equal(db_channel_for_schema(schema, out), 0);
    assert_true(strlen(out) <= 63);
    for (const char *p = out; *p; p++) assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(channel_for_schema__abc__followupd_prefix_and_md5_hex),
        cmocka_unit_test(channel_for_schema__tenant_name__matches_known_md5),
        cmocka_unit_test(channel_for_schema__utf8_and_mixed_case__hashes_raw_bytes),
        cmocka_unit_test(channel_for_schema__empty_or_null__fails_with_empty_output),
        cmocka_unit_test(channel_for_schema__any_schema__lowercase_identifier_within_63_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
