/*
 * Unit tests of the command-line parser (core/cli): the commands and their operands, options that belong to
 * one command only, and what inspect/retry require (--schema, a UUID --tenant, a UUID booking id).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/cli.h"

#define T "11111111-1111-4111-8111-111111111111"
#define B "33333333-3333-4333-8333-333333333333"

static int parse(struct cli_options *o, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"followupd";
    for (; *args != NULL; args++) argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    return cli_parse(argc, argv, o);
}

#define PARSE(o, ...) parse(o, (const char *const[]){__VA_ARGS__, NULL})

static void cli_parse__commands__command_and_operands(void **state)
{
    (void)state;
    struct cli_options o;
    assert_int_equal(PARSE(&o, "--config", "f.conf"), CLI_OK);
    assert_int_equal(o.command, CLI_RUN);
    assert_int_equal(PARSE(&o, "migrate", "--rollback", "--json"), CLI_OK);
    assert_true(o.command == CLI_MIGRATE && o.rollback && o.json);
    assert_int_equal(PARSE(&o, "status", "--schema", "s1"), CLI_OK);
    assert_true(o.command == CLI_STATUS && strcmp(o.schema, "s1") == 0);
    assert_int_equal(PARSE(&o, "inspect", "--schema", "s1", "--tenant", T, B), CLI_OK);
    assert_true(o.command == CLI_INSPECT && strcmp(o.booking_id, B) == 0 && strcmp(o.tenant, T) == 0);
    assert_int_equal(PARSE(&o, "--tenant", T, "retry", B, "--dry-run", "--schema", "s1"), CLI_OK); /* any order */
    assert_true(o.command == CLI_RETRY && o.dry_run);
    assert_int_equal(PARSE(&o, "--check-config", "--json"), CLI_OK);
    assert_true(o.check_config && o.json);
}

static void cli_parse__misplaced_or_missing__usage_error(void **state)
{
    (void)state;
    struct cli_options o;
    assert_int_equal(PARSE(&o, "--json"), CLI_USAGE_ERROR);                          /* the daemon logs JSON */
    assert_int_equal(PARSE(&o, "frobnicate"), CLI_USAGE_ERROR);
    assert_int_equal(PARSE(&o, "status", "extra"), CLI_USAGE_ERROR);
    assert_int_equal(PARSE(&o, "status", "--tenant", T), CLI_USAGE_ERROR);
    assert_int_equal(PARSE(&o, "status", "--dry-run"), CLI_USAGE_ERROR);
    assert_int_equal(PARSE(&o, "migrate", "--schema", "s1"), CLI_USAGE_ERROR);
    assert_int_equal(PARSE(&o, "status", "--rollback"), CLI_USAGE_ERROR);
    assert_int_equal(PARSE(&o, "migrate", "--check-config"), CLI_USAGE_ERROR);
    assert_int_equal(PARSE(&o, "inspect", "--schema", "s1", "--tenant", T), CLI_USAGE_ERROR);    /* no id */
    assert_int_equal(PARSE(&o, "inspect", "--tenant", T, B), CLI_USAGE_ERROR);                   /* no schema */
    assert_int_equal(PARSE(&o, "inspect", "--schema", "s1", B), CLI_USAGE_ERROR);                /* no tenant */
    assert_int_equal(PARSE(&o, "inspect", "--schema", "s1", "--tenant", "t-1", B), CLI_USAGE_ERROR);
    assert_int_equal(PARSE(&o, "inspect", "--schema", "s1", "--tenant", T, "b-1"), CLI_USAGE_ERROR);
    assert_int_equal(PARSE(&o, "inspect", "--schema", "s1", "--tenant", T, B, "--dry-run"), CLI_USAGE_ERROR);
    assert_int_equal(PARSE(&o, "retry", "--schema", "s1", "--tenant", T, B, B), CLI_USAGE_ERROR);
}

static void cli_parse__help_or_version__accepted_with_anything(void **state)
{
    (void)state;
    struct cli_options o;
    assert_int_equal(PARSE(&o, "inspect", "--help"), CLI_OK);
    assert_true(o.help);
    assert_int_equal(PARSE(&o, "--version", "--json"), CLI_OK);
    assert_true(o.version);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cli_parse__commands__command_and_operands),
        cmocka_unit_test(cli_parse__misplaced_or_missing__usage_error),
        cmocka_unit_test(cli_parse__help_or_version__accepted_with_anything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
