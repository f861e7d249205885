/* Unit tests for shared/db/db_migrate's statement splitter: statements end at top-level ';' only, like psql. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "shared/db/db_migrate.h"

/* Split `sql` and compare with the expected statements (text and start line). */
static void expect_split(const char *sql, const char *const *want, const int *lines, size_t n)
{
    size_t pos = 0, len = strlen(sql);
    struct sql_statement st;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(db_sql_next_statement(sql, len, &pos, &st), 1);
        char *got = strndup(sql + st.offset, st.len);
        assert_string_equal(got, want[i]);
        free(got);
        assert_int_equal(st.line, lines[i]);
    }
    assert_int_equal(db_sql_next_statement(sql, len, &pos, &st), 0);
    assert_int_equal(pos, len);
}

static void db_sql_next_statement__plain_statements__split_at_semicolons(void **state)
{
    (void)state;
    expect_split("BEGIN;\nSET LOCAL lock_timeout = '10s';\n\nCOMMIT;\n",
                 (const char *const[]){"BEGIN", "SET LOCAL lock_timeout = '10s'", "COMMIT"}, (const int[]){1, 2, 4}, 3);
}

static void db_sql_next_statement__quotes_and_comments__semicolons_inside_ignored(void **state)
{
    (void)state;
    const char *sql = "-- leading; comment\n"
                      "SELECT 'a;b', \"we;ird\", E'it\\'s;', 'x''y;' /* c; /* nested; */ still; */ FROM t;\n"
                      "SELECT 2 -- trailing; comment\n;";
    expect_split(
        sql,
        (const char *const[]){"SELECT 'a;b', \"we;ird\", E'it\\'s;', 'x''y;' /* c; /* nested; */ still; */ FROM t",
                              "SELECT 2 -- trailing; comment\n"},
        (const int[]){2, 3}, 2);
}

static void db_sql_next_statement__dollar_quotes__bodies_kept_whole(void **state)
{
    (void)state;
    const char *sql = "DO $migration$\nBEGIN\n  PERFORM 1; PERFORM $x$;$x$;\nEND\n$migration$;\n"
                      "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n"
                      "SELECT $1, a$b$c FROM t;";
    expect_split(sql,
                 (const char *const[]){"DO $migration$\nBEGIN\n  PERFORM 1; PERFORM $x$;$x$;\nEND\n$migration$",
                                       "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql",
                                       "SELECT $1, a$b$c FROM t"},
                 (const int[]){1, 6, 7}, 3);
}

static void db_sql_next_statement__parentheses__semicolon_inside_not_an_end(void **state)
{
    (void)state;
    expect_split("CREATE RULE r AS ON INSERT TO t DO ALSO (SELECT 1; SELECT 2);SELECT 3",
                 (const char *const[]){"CREATE RULE r AS ON INSERT TO t DO ALSO (SELECT 1; SELECT 2)", "SELECT 3"},
                 (const int[]){1, 1}, 2);
}

static void db_sql_next_statement__only_comments_and_blanks__no_statement(void **state)
{
    (void)state;
    expect_split("  \n-- nothing here;\n/* nor ; here */\n;;\n", NULL, NULL, 0);
    expect_split("", NULL, NULL, 0);
}

static void expect_failure(const char *sql, int line)
{
    size_t pos = 0;
    struct sql_statement st;
    int rc;
    while ((rc = db_sql_next_statement(sql, strlen(sql), &pos, &st)) == 1)
        continue;
    assert_int_equal(rc, -1);
    assert_int_equal(st.line, line);
}

static void db_sql_next_statement__unterminated_or_meta_command__error_with_line(void **state)
{
    (void)state;
    expect_failure("SELECT 1;\nSELECT 'open", 2);
    expect_failure("SELECT 1;\n\nSELECT \"open", 3);
    expect_failure("DO $tag$ BEGIN END $other$;", 1);
    expect_failure("SELECT 1 /* open /* nested */", 1);
    expect_failure("SELECT 1;\n\\set x 1\n", 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(db_sql_next_statement__plain_statements__split_at_semicolons),
        cmocka_unit_test(db_sql_next_statement__quotes_and_comments__semicolons_inside_ignored),
        cmocka_unit_test(db_sql_next_statement__dollar_quotes__bodies_kept_whole),
        cmocka_unit_test(db_sql_next_statement__parentheses__semicolon_inside_not_an_end),
        cmocka_unit_test(db_sql_next_statement__only_comments_and_blanks__no_statement),
        cmocka_unit_test(db_sql_next_statement__unterminated_or_meta_command__error_with_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
