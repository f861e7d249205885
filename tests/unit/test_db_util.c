/*
 * Unit tests of shared/db/db_util: conninfo redaction, the conninfo's secrets
 * handed to the logger, libpq's conninfo messages replaced by a problem class
 * (checked against libpq's real messages), backoff bounds, message cleaning,
 * connect parameter arrays, and which host names we resolve ourselves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/secret_pieces.h"
#include "shared/db/db_util.h"
#include "utils/log.h"

/* ---- redaction */

static void conninfo_redacted__keyword_string__where_and_who_kept_rest_removed(void **state)
{
    (void)state;
    char *r = db_conninfo_redacted("host=db.example port=5432 user=app password=s3cretPW sslmode=sEcrTail "
                                   "dbname=main");
    assert_non_null(r);
    assert_null(strstr(r, "s3cretPW"));
    assert_null(strstr(r, "password"));
    assert_null(strstr(r, "sEcrTail")); /* an unquoted password's tail may hide in any other option */
    assert_non_null(strstr(r, "host=db.example"));
    assert_non_null(strstr(r, "port=5432"));
    assert_non_null(strstr(r, "user=app"));
    assert_non_null(strstr(r, "dbname=main"));
    free(r);
}

static void conninfo_redacted__uri_with_password__password_removed(void **state)
{
    (void)state;
    char *r = db_conninfo_redacted("postgresql://app:Pa55word@db.example:6543/main?sslmode=require&sslpassword=k3yPW");
    assert_non_null(r);
    assert_null(strstr(r, "Pa55word"));
    assert_null(strstr(r, "k3yPW"));
    assert_non_null(strstr(r, "host=db.example"));
    assert_non_null(strstr(r, "port=6543"));
    assert_null(strstr(r, "sslmode"));
    free(r);
}

static void conninfo_redacted__value_with_space_and_quote__quoted_and_reparseable(void **state)
{
    (void)state;
    char *r = db_conninfo_redacted("dbname='my app\\'s' password='a b'");
    assert_non_null(r);
    assert_string_equal(r, "dbname='my app\\'s'");
    char *err = NULL;
    PQconninfoOption *o = PQconninfoParse(r, &err);
    assert_non_null(o);
    for (PQconninfoOption *p = o; p->keyword; p++)
        if (strcmp(p->keyword, "dbname") == 0) assert_string_equal(p->val, "my app's");
    PQconninfoFree(o);
    free(r);
}

static void conninfo_redacted__unparseable__placeholder_without_input(void **state)
{
    (void)state;
    char *r = db_conninfo_redacted("host=x password=topsecret bogus_option=1");
    assert_non_null(r);
    assert_string_equal(r, "<invalid conninfo>");
    free(r);
    r = db_conninfo_redacted(NULL);
    assert_string_equal(r, "");
    free(r);
}

/* ---- secrets and libpq's conninfo messages */

#define MARK "Qv7zKwJxTrYp"   /* a password no log text shares 4 bytes with */

/* What a logger holding the conninfo's registered secrets makes of text. */
static char *redacted_by_registered(const char *conninfo, const char *text, int *n_secrets)
{
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, -1);
    db_conninfo_register_secrets(conninfo, &lg);
    *n_secrets = lg.n_secrets;
    char *out = log_redact(&lg, text);
    assert_non_null(out);
    logger_free(&lg);
    return out;
}

static void conninfo_register_secrets__uri_percent_encoded__decoded_and_raw_forms_redacted(void **state)
{
    (void)state;
    int n;
    char *out = redacted_by_registered("postgresql://u:Qv7z%4BwJx@h/db?sslpassword=TrYp%41Kw9z",
                                       "a Qv7zKwJx b Qv7z%4BwJx c TrYpAKw9z d TrYp%41Kw9z", &n);
    assert_int_equal(n, 4);
    assert_string_equal(out, "a [REDACTED] b [REDACTED] c [REDACTED] d [REDACTED]");
    free(out);
}

static void conninfo_register_secrets__quoted_keyword_password__value_and_pieces_redacted(void **state)
{
    (void)state;
    int n;
    char *out = redacted_by_registered("host=h user=app password='Qv7zKw JxTrYp'", "user app: JxTrYp, Qv7zKw", &n);
    assert_int_equal(n, 1);
    assert_string_equal(out, "user app:[REDACTED], [REDACTED]"); /* the space is part of the secret */
    free(out);
}

static void conninfo_register_secrets__no_password_or_unparseable__nothing_registered(void **state)
{
    (void)state;
    int n;
    const char *none[] = {"host=h user=app dbname=x", "mydb", "", "host=h password=" MARK " x"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        free(redacted_by_registered(none[i], "x", &n));
        assert_int_equal(n, 0);
    }
    db_conninfo_register_secrets("password=" MARK, NULL); /* no logger: nothing to do, no crash */
}

struct bad_conninfo {
    const char *conninfo;
    const char *problem;
};

static const struct bad_conninfo bad_conninfos[] = {
    {"postgresql://user:Qv7z%zzKwJxTrYp@host/db", "invalid percent-encoding in URI"},
    {"host=h password=Qv7zKw JxTrYp dbname=x", "missing '=' after a keyword"},
    {"host=h password='Qv7zKwJxTrYp", "unterminated quoted string"},
    {"host=h password=Qv7zKw JxTrYp=1", "unknown option keyword"},
    {"postgresql://u:Qv7zKw%00JxTrYp@h/db", "percent-encoded NUL (%00) in URI"},
    {"postgresql://h/db?password=Qv7zKw&JxTrYp", "malformed URI query parameter"},
    {"postgresql://h/db?Qv7zKwJxTrYp=1", "unknown URI query parameter"},
    {"postgresql://[Qv7zKwJxTrYp", "malformed IPv6 host address in URI"},
};

static void conninfo_problem__bad_conninfos__class_named_input_never_quoted(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_conninfos) / sizeof(bad_conninfos[0]); i++) {
        char why[256] = "";
        assert_int_equal(db_conninfo_problem(bad_conninfos[i].conninfo, why, sizeof(why)), -1);
        if (strstr(why, bad_conninfos[i].problem) != NULL) {
            assert_no_secret_piece(why, MARK, bad_conninfos[i].conninfo);
            continue;
        }
        fail_msg("%s: \"%s\" does not name \"%s\"", bad_conninfos[i].conninfo, why, bad_conninfos[i].problem);
    }
}

static void conninfo_problem__valid_conninfos_and_database_name__accepted(void **state)
{
    (void)state;
    const char *good[] = {"", "mydb", "dbname=x", "host=h password='Qv7zKw JxTrYp'", "postgresql://u:p%41@h:5/db"};
    char why[64];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(db_conninfo_problem(good[i], why, sizeof(why)), 0);
}

/* libpq's own message for a connection string it refuses before any network I/O. */
static void libpq_refusal(const char *conninfo, char *out, size_t cap)
{
    PGconn *pg = PQconnectStart(conninfo);
    assert_non_null(pg);
    assert_int_equal(PQstatus(pg), CONNECTION_BAD);
    snprintf(out, cap, "%s", PQerrorMessage(pg));
    PQfinish(pg);
}

static void error_clean__libpq_option_checks_quoting_input__fixed_class_with_option_name(void **state)
{
    (void)state;
    static const struct bad_conninfo refused[] = {
        {"host=/nonexistent sslmode=" MARK, "conninfo: invalid sslmode value"},
        {"host=/nonexistent port=" MARK, "conninfo: invalid integer value for option port"},
        {"hostaddr=" MARK, "conninfo: invalid hostaddr"},
        {"host=/nonexistent target_session_attrs=" MARK, "conninfo: invalid target_session_attrs value"},
        {"postgresql://u:" MARK "@h/db?sslmode=" MARK, "conninfo: invalid sslmode value"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char libpq[512], out[DB_ERR_MAX];
        libpq_refusal(refused[i].conninfo, libpq, sizeof(libpq));
        assert_non_null(strstr(libpq, MARK)); /* libpq does quote it */
        db_error_clean(libpq, out, sizeof(out));
        assert_string_equal(out, refused[i].problem);
    }
}

static void error_clean__connection_failure__folded_and_kept(void **state)
{
    (void)state;
    char out[DB_ERR_MAX];
    db_error_clean("connection to server at \"db\" (10.0.0.1), port 5432 failed: Connection refused\n\tIs the server "
                   "running on that host?\n", out, sizeof(out));
    assert_string_equal(out, "connection to server at \"db\" (10.0.0.1), port 5432 failed: Connection refused Is the "
                             "server running on that host?");
    db_error_clean(NULL, out, sizeof(out));
    assert_string_equal(out, "");
}

/* ---- backoff */

static void backoff__first_retry__exactly_min(void **state)
{
    (void)state;
    for (uint32_t rnd = 0; rnd < 1000; rnd += 37) assert_int_equal(db_backoff_delay_ms(0, 100, 5000, rnd), 100);
}

static void backoff__growing_attempts__within_min_and_doubling_cap(void **state)
{
    (void)state;
    uint64_t seed = 42;
    for (unsigned attempt = 0; attempt < 12; attempt++) {
        unsigned cap = 100u << attempt;
        if (cap > 5000) cap = 5000;
        unsigned lo = UINT32_MAX, hi = 0;
        for (int i = 0; i < 2000; i++) {
            unsigned d = db_backoff_delay_ms(attempt, 100, 5000, db_rand_next(&seed));
            assert_in_range(d, 100, cap);
            if (d < lo) lo = d;
            if (d > hi) hi = d;
        }
        if (attempt >= 3) assert_true(hi - lo > (cap - 100) / 2); /* jitter spreads over the window */
    }
}

static void backoff__extreme_inputs__capped_without_overflow(void **state)
{
    (void)state;
    assert_int_equal(db_backoff_delay_ms(1000, 100, 5000, UINT32_MAX), 100 + UINT32_MAX % 4901);
    assert_in_range(db_backoff_delay_ms(UINT32_MAX, 100, 5000, 123456), 100, 5000);
    assert_int_equal(db_backoff_delay_ms(5, 300, 200, 999), 300);  /* max < min → min */
    assert_in_range(db_backoff_delay_ms(40, 1, UINT32_MAX, UINT32_MAX), 1, UINT32_MAX);
    assert_in_range(db_backoff_delay_ms(3, 0, 50, 7), 0, 50);
}

static void backoff__max_rnd__reaches_cap(void **state)
{
    (void)state;
    /* attempt 2: cap 400 → span 301 values; rnd 300 → 400 exactly */
    assert_int_equal(db_backoff_delay_ms(2, 100, 5000, 300), 400);
    assert_int_equal(db_backoff_delay_ms(2, 100, 5000, 301), 100);
}

/* ---- message cleaning */

static void message_clean__libpq_multiline__one_trimmed_line(void **state)
{
    (void)state;
    char out[128];
    db_message_clean("connection to server failed: Connection refused\n\tIs the server running?\n", out, sizeof(out));
    assert_string_equal(out, "connection to server failed: Connection refused Is the server running?");
    db_message_clean(NULL, out, sizeof(out));
    assert_string_equal(out, "");
    db_message_clean("  \n ", out, sizeof(out));
    assert_string_equal(out, "");
}

static void message_clean__small_buffer__truncated_and_terminated(void **state)
{
    (void)state;
    char out[6];
    db_message_clean("abc defgh", out, sizeof(out));
    assert_string_equal(out, "abc d");
    char one[1];
    db_message_clean("abc", one, sizeof(one));
    assert_string_equal(one, "");
}

/* ---- connect parameters */

static int index_of(const struct db_connect_params *p, const char *key)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->keys[i], key) == 0) return i;
    return -1;
}

static void connect_params__defaults__all_present_before_user_conninfo(void **state)
{
    (void)state;
    struct db_connect_params p;
    db_connect_params_build(&p, "host=h connect_timeout=3", NULL, NULL);
    const char *expect[][2] = {{"keepalives", "1"},          {"keepalives_idle", "30"},
                               {"keepalives_interval", "10"}, {"keepalives_count", "3"},
                               {"tcp_user_timeout", "60000"}, {"connect_timeout", "10"},
                               {"application_name", "followupd"}};
    int dbname = index_of(&p, "dbname");
    assert_true(dbname >= 0);
    assert_string_equal(p.values[dbname], "host=h connect_timeout=3");
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        int k = index_of(&p, expect[i][0]);
        assert_true(k >= 0 && k < dbname); /* before dbname: the user's values override them */
        assert_string_equal(p.values[k], expect[i][1]);
    }
    assert_null(p.keys[p.n]);
    assert_int_equal(index_of(&p, "hostaddr"), -1);
}

static void connect_params__resolved_addresses__after_user_conninfo(void **state)
{
    (void)state;
    struct db_connect_params p;
    db_connect_params_build(&p, "host=db.example", "db.example,db.example", "10.0.0.1,10.0.0.2");
    int dbname = index_of(&p, "dbname"), host = index_of(&p, "host"), addr = index_of(&p, "hostaddr");
    assert_true(dbname >= 0 && host > dbname && addr > dbname);
    assert_string_equal(p.values[addr], "10.0.0.1,10.0.0.2");
}

static void connect_params__empty_conninfo__no_dbname_entry(void **state)
{
    (void)state;
    struct db_connect_params p;
    db_connect_params_build(&p, "", NULL, NULL);
    assert_int_equal(index_of(&p, "dbname"), -1);
    assert_int_equal(p.n, 7);
}

/* libpq itself applies the arrays: the user's connect_timeout wins over ours. */
static void connect_params__libpq_merge__user_setting_wins(void **state)
{
    (void)state;
    struct db_connect_params p;
    db_connect_params_build(&p, "host=127.0.0.1 port=1 connect_timeout=3 application_name=mine", NULL, NULL);
    PGconn *c = PQconnectStartParams(p.keys, p.values, 1);
    assert_non_null(c);
    PQconninfoOption *o = PQconninfo(c);
    int seen = 0;
    for (PQconninfoOption *q = o; q && q->keyword; q++) {
        if (strcmp(q->keyword, "connect_timeout") == 0) { assert_string_equal(q->val, "3"); seen++; }
        if (strcmp(q->keyword, "application_name") == 0) { assert_string_equal(q->val, "mine"); seen++; }
        if (strcmp(q->keyword, "keepalives_idle") == 0) { assert_string_equal(q->val, "30"); seen++; }
    }
    assert_int_equal(seen, 3);
    PQconninfoFree(o);
    PQfinish(c);
}

/* ---- host resolution */

static void host_to_resolve__name__resolved_by_us(void **state)
{
    (void)state;
    char *h = db_host_to_resolve("host=db.example port=5432", NULL, NULL);
    assert_string_equal(h, "db.example");
    free(h);
    h = db_host_to_resolve("", "envhost.example", NULL);
    assert_string_equal(h, "envhost.example");
    free(h);
    h = db_host_to_resolve("postgresql://u@localhost/db", NULL, NULL);
    assert_string_equal(h, "localhost");
    free(h);
}

static void host_to_resolve__literal_socket_list_or_hostaddr__left_to_libpq(void **state)
{
    (void)state;
    assert_null(db_host_to_resolve("host=127.0.0.1", NULL, NULL));
    assert_null(db_host_to_resolve("host=::1", NULL, NULL));
    assert_null(db_host_to_resolve("host=/var/run/postgresql", NULL, NULL));
    assert_null(db_host_to_resolve("host=a.example,b.example", NULL, NULL));
    assert_null(db_host_to_resolve("host=a.example hostaddr=10.0.0.1", NULL, NULL));
    assert_null(db_host_to_resolve("host=a.example", NULL, "10.0.0.1"));
    assert_null(db_host_to_resolve("", NULL, NULL));
    assert_null(db_host_to_resolve("not a conninfo", NULL, NULL));
}

static void sql_render__placeholders_and_percent__quoted_schema_everywhere(void **state)
{
    (void)state;
    char *out = db_sql_render("SELECT 100%% FROM %s.t JOIN %s.u", "\"We\"\"ird\"");
    assert_string_equal(out, "SELECT 100% FROM \"We\"\"ird\".t JOIN \"We\"\"ird\".u");
    free(out);
}

static void text_array_literal__quotes_and_backslashes__escaped(void **state)
{
    (void)state;
    char *items[] = {"follow_up", "a\"b", "c\\d"};
    char *out = db_text_array_literal(items, 3);
    assert_string_equal(out, "{\"follow_up\",\"a\\\"b\",\"c\\\\d\"}");
    free(out);
    out = db_text_array_literal(items, 0);
    assert_string_equal(out, "{}");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conninfo_redacted__keyword_string__where_and_who_kept_rest_removed),
        cmocka_unit_test(conninfo_redacted__uri_with_password__password_removed),
        cmocka_unit_test(conninfo_redacted__value_with_space_and_quote__quoted_and_reparseable),
        cmocka_unit_test(conninfo_redacted__unparseable__placeholder_without_input),
        cmocka_unit_test(conninfo_register_secrets__uri_percent_encoded__decoded_and_raw_forms_redacted),
        cmocka_unit_test(conninfo_register_secrets__quoted_keyword_password__value_and_pieces_redacted),
        cmocka_unit_test(conninfo_register_secrets__no_password_or_unparseable__nothing_registered),
        cmocka_unit_test(conninfo_problem__bad_conninfos__class_named_input_never_quoted),
        cmocka_unit_test(conninfo_problem__valid_conninfos_and_database_name__accepted),
        cmocka_unit_test(error_clean__libpq_option_checks_quoting_input__fixed_class_with_option_name),
        cmocka_unit_test(error_clean__connection_failure__folded_and_kept),
        cmocka_unit_test(backoff__first_retry__exactly_min),
        cmocka_unit_test(backoff__growing_attempts__within_min_and_doubling_cap),
        cmocka_unit_test(backoff__extreme_inputs__capped_without_overflow),
        cmocka_unit_test(backoff__max_rnd__reaches_cap),
        cmocka_unit_test(message_clean__libpq_multiline__one_trimmed_line),
        cmocka_unit_test(message_clean__small_buffer__truncated_and_terminated),
        cmocka_unit_test(connect_params__defaults__all_present_before_user_conninfo),
        cmocka_unit_test(connect_params__resolved_addresses__after_user_conninfo),
        cmocka_unit_test(connect_params__empty_conninfo__no_dbname_entry),
        cmocka_unit_test(connect_params__libpq_merge__user_setting_wins),
        cmocka_unit_test(host_to_resolve__name__resolved_by_us),
        cmocka_unit_test(host_to_resolve__literal_socket_list_or_hostaddr__left_to_libpq),
        cmocka_unit_test(sql_render__placeholders_and_percent__quoted_schema_everywhere),
        cmocka_unit_test(text_array_literal__quotes_and_backslashes__escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
