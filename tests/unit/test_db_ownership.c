/*
 * Unit tests of shared/db/db_ownership's rebalance rounds without a server: the listener's session is replaced
 * by a fake db_listener_query that records each statement, and the test answers with PGresults built like the
 * server's (pg_locks as the STATUS statement reports it). Checked: a replica takes what the lock status says it
 * holds, gives its excess up before it unlocks it and only once that work has drained, takes only free
 * partitions up to its share, counts itself when its membership lock is blocked, and loses everything with its
 * session.
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

#include "shared/db/db_listener.h"
#include "shared/db/db_ownership.h"
#include "utils/log.h"
#include "utils/uv_timers.h"

#define P 8

/* ---- the fake session: one statement at a time, answered by the test ---- */

static struct {
    bool pending;
    char sql[2048];
    char params[3][512];
    int nparams;
    db_result_cb cb;
    void *arg;
    int sent;
} session;

int db_listener_query(struct db_listener *l, const char *sql, int nparams, const char *const *params,
                      db_result_cb cb, void *arg)
{
    (void)l;
    if (session.pending) return -1;
    session.pending = true;
    session.sent++;
    snprintf(session.sql, sizeof(session.sql), "%s", sql);
    session.nparams = nparams;
    for (int i = 0; i < nparams && i < 3; i++)
        snprintf(session.params[i], sizeof(session.params[i]), "%s", params[i] ? params[i] : "");
    session.cb = cb;
    session.arg = arg;
    return 0;
}

static bool sent(const char *fragment)
{
    return session.pending && strstr(session.sql, fragment) != NULL;
}

/* Answer the pending statement with one row of text values (NULL entries = SQL NULL). */
static void answer(int ncols, const char *const *values)
{
    assert_true(session.pending);
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[5];
    memset(attrs, 0, sizeof(attrs));
    for (int i = 0; i < ncols; i++) attrs[i].name = (char *)"c";
    assert_int_equal(PQsetResultAttrs(res, ncols, attrs), 1);
    for (int i = 0; i < ncols; i++)
        assert_int_equal(PQsetvalue(res, 0, i, (char *)values[i], values[i] ? (int)strlen(values[i]) : -1), 1);
    session.pending = false;
    session.cb(session.arg, res, NULL);
    PQclear(res);
}

static void answer_join(bool locked)
{
    assert_true(sent("pg_try_advisory_lock_shared"));
    answer(5, (const char *const[]){"10", "5", "3", "25000", locked ? "t" : "f"});
}

/* STATUS: members of this role, mine, the other replicas', a foreign role's. */
static void answer_status(const char *members, const char *mine, const char *others, const char *foreign)
{
    assert_true(sent("FROM pg_locks"));
    answer(4, (const char *const[]){members, mine, others, foreign});
}

/* ---- the owner's side ---- */

struct fixture {
    uv_loop_t loop;
    struct uv_timers timers;
    struct logger lg;
    struct db_ownership o;
    int gained[P + 1], released[P + 1];   /* per partition: times reported */
    bool released_lost;
    bool busy[P];
};

static void on_gained(void *arg, const int *parts, int n)
{
    struct fixture *f = arg;
    for (int i = 0; i < n; i++) f->gained[parts[i]]++;
}

static void on_released(void *arg, const int *parts, int n, bool lost)
{
    struct fixture *f = arg;
    f->released_lost = lost;
    for (int i = 0; i < n; i++) {
        f->released[parts[i]]++;
        assert_false(db_ownership_owns(&f->o, parts[i]));   /* given up here before anything is unlocked */
        if (!lost) assert_false(sent("pg_advisory_unlock"));
    }
}

static bool busy(void *arg, int partition)
{
    struct fixture *f = arg;
    return f->busy[partition];
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    memset(&session, 0, sizeof(session));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timers_init(&f->timers, &f->loop);
    logger_init(&f->lg, LOG_LEVEL_ERROR, open("/dev/null", O_WRONLY | O_CLOEXEC));
    static const struct db_ownership_cbs cbs = {.on_gained = on_gained, .on_released = on_released, .busy = busy};
    assert_int_equal(db_ownership_init(&f->o, (struct db_listener *)f, &f->timers, &f->lg, P, "8/s", 1, &cbs, f),
                     0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    db_ownership_close(&f->o);
    db_ownership_free(&f->o);
    uv_timers_close(&f->timers);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    close(f->lg.fd);
    logger_free(&f->lg);
    free(f);
    return 0;
}

static void acquired(const char *parts)
{
    assert_true(sent("pg_try_advisory_lock($1::int, p)"));
    answer(1, (const char *const[]){parts});
}

static void round_after_interval(struct fixture *f)
{
    assert_false(session.pending);
    /* the rebalance timer (1 ms here) is the loop's next event: run it until the tick has sent its statement */
    for (int i = 0; i < 10000 && !session.pending; i++) uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(session.pending);
}

static void join__alone__takes_every_free_partition_and_reports_them(void **state)
{
    struct fixture *f = *state;
    db_ownership_session_up(&f->o);
    answer_join(true);
    answer_status("1", NULL, NULL, NULL);
    assert_string_equal(session.params[2], "8");                 /* want: all 8 (ceil(8 / 1)) */
    acquired("{3,4,5,6,7,0,1,2}");
    for (int p = 0; p < P; p++) {
        assert_true(db_ownership_owns(&f->o, p));
        assert_int_equal(f->gained[p], 1);
    }
    assert_int_equal(f->o.stats.acquired, P);
    assert_false(session.pending);
}

static void status__more_members__excess_given_up_first_then_unlocked_once_drained(void **state)
{
    struct fixture *f = *state;
    db_ownership_session_up(&f->o);
    answer_join(true);
    answer_status("1", NULL, NULL, NULL);
    acquired("{0,1,2,3,4,5,6,7}");
    f->busy[7] = true;                                           /* a create for partition 7 is in flight */
    round_after_interval(f);
    answer_status("2", "{0,1,2,3,4,5,6,7}", NULL, NULL);         /* a second replica joined: share 4 */
    for (int p = 4; p < P; p++) assert_int_equal(f->released[p], 1);
    assert_false(f->released_lost);
    assert_int_equal(f->o.n_owned, 4);
    assert_true(sent("pg_advisory_unlock"));
    assert_string_equal(session.params[1], "{4,5,6}");           /* 7 stays locked while busy */
    answer(1, (const char *const[]){"3"});
    f->busy[7] = false;
    round_after_interval(f);                                     /* re-checked soon */
    answer_status("2", "{0,1,2,3,7}", NULL, NULL);
    assert_true(sent("pg_advisory_unlock"));
    assert_string_equal(session.params[1], "{7}");
    answer(1, (const char *const[]){"1"});
    round_after_interval(f);
    answer_status("2", "{0,1,2,3}", "{4,5,6,7}", NULL);
    assert_false(session.pending);                               /* at its share: nothing to do */
    assert_int_equal(f->o.n_releasing, 0);
    assert_int_equal(f->o.stats.released, 4);
}

static void status__below_share__tries_only_free_partitions_up_to_the_share(void **state)
{
    struct fixture *f = *state;
    db_ownership_session_up(&f->o);
    answer_join(true);
    answer_status("3", NULL, "{0,1,2,3,4}", NULL);               /* share ceil(8 / 3) = 3; 5, 6, 7 free */
    assert_true(sent("pg_try_advisory_lock($1::int, p)"));
    assert_string_equal(session.params[2], "3");
    for (int p = 0; p <= 4; p++) assert_null(strstr(session.params[1], (char[]){(char)('0' + p), 0}));
    acquired("{5,7}");                                        /* 6 was taken by someone else meanwhile */
    assert_true(db_ownership_owns(&f->o, 5));
    assert_false(db_ownership_owns(&f->o, 6));
    assert_true(db_ownership_owns(&f->o, 7));
}

static void status__lock_held_that_we_did_not_know__adopted_and_reported(void **state)
{
    struct fixture *f = *state;
    db_ownership_session_up(&f->o);
    answer_join(true);
    answer_status("8", "{2}", "{0,1,3,4,5,6,7}", NULL);          /* e.g. an acquire whose answer was lost */
    assert_true(db_ownership_owns(&f->o, 2));
    assert_int_equal(f->gained[2], 1);
}

static void status__foreign_role_locks__worked_here_without_a_lock(void **state)
{
    struct fixture *f = *state;
    db_ownership_session_up(&f->o);
    answer_join(true);
    answer_status("2", NULL, "{0,1,2}", "{3}");
    assert_true(db_ownership_owns(&f->o, 3));                    /* worked by every replica */
    assert_int_equal(f->gained[3], 1);
    assert_int_equal(f->o.n_foreign, 1);
    assert_null(strstr(session.params[1], "3"));                 /* never try-locked */
    acquired("{4,5,6,7}");
    round_after_interval(f);
    answer_status("2", "{4,5,6,7}", "{0,1,2}", NULL);            /* the foreign lock is gone */
    assert_false(db_ownership_owns(&f->o, 3));
    assert_int_equal(f->released[3], 1);
    assert_int_equal(f->o.n_foreign, 0);
}

static void join__membership_blocked__counts_itself_and_takes_part(void **state)
{
    struct fixture *f = *state;
    db_ownership_session_up(&f->o);
    answer_join(false);
    answer_status("1", NULL, "{0,1,2,3}", NULL);                 /* one other replica, this one not counted */
    assert_int_equal(f->o.stats.members, 2);
    assert_string_equal(session.params[2], "4");
}

static void session_lost__everything_gone_and_reported_lost(void **state)
{
    struct fixture *f = *state;
    db_ownership_session_up(&f->o);
    answer_join(true);
    answer_status("1", NULL, NULL, NULL);
    acquired("{0,1,2,3,4,5,6,7}");
    db_ownership_session_lost(&f->o);
    assert_true(f->released_lost);
    assert_int_equal(f->o.n_owned, 0);
    assert_int_equal(f->o.stats.lost, P);
    for (int p = 0; p < P; p++) assert_false(db_ownership_owns(&f->o, p));
    int out[P];
    assert_int_equal(db_ownership_owned(&f->o, out, P), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(join__alone__takes_every_free_partition_and_reports_them),
        T(status__more_members__excess_given_up_first_then_unlocked_once_drained),
        T(status__below_share__tries_only_free_partitions_up_to_the_share),
        T(status__lock_held_that_we_did_not_know__adopted_and_reported),
        T(status__foreign_role_locks__worked_here_without_a_lock),
        T(join__membership_blocked__counts_itself_and_takes_part),
        T(session_lost__everything_gone_and_reported_lost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
