/*
 * Unit tests of the state service (the per-schema booking-state gauges): a refresh at start and then every
 * sweep_interval_s, schemas read one at a time, a refresh never doubled while one runs, a failed read keeping
 * the last summary, nothing after close; and its pure helpers (the query, the oldest due age).  Real service
 * code; the clock is support/ports_fakes', the repository's booking_state is a fake answering when told.
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

#include "features/deals_pipeline/services/followup_scheduler_service.h"
#include "features/deals_pipeline/services/followup_state_service.h"
#include "support/ports_fakes.h"

static char *schemas[] = {"s_one", "s_two"};
static char *types[] = {"follow_up"};

/* The fake booking_state: reads wait in `pending` until answer_next(). */
struct pending_read {
    char schema[SCHEMA_NAME_LEN];
    struct booking_state_query q;
    repo_state_cb cb;
    void *arg;
};
static struct pending_read pending[8];
static int n_pending, reads;

static int fake_booking_state(void *impl, const char *schema, const struct booking_state_query *q, repo_state_cb cb,
                              void *arg)
{
    (void)impl;
    assert_true(n_pending < 8);
    struct pending_read *p = &pending[n_pending++];
    snprintf(p->schema, sizeof(p->schema), "%s", schema);
    p->q = *q;
    p->cb = cb;
    p->arg = arg;
    reads++;
    return 0;
}

/* Answer the oldest pending read with rc and (REPO_OK) a summary whose `waiting` is `waiting`. */
static void answer_next(enum repo_rc rc, int64_t waiting, const char *expect_schema)
{
    assert_true(n_pending > 0);
    struct pending_read p = pending[0];
    memmove(pending, pending + 1, sizeof(pending[0]) * (size_t)--n_pending);
    assert_string_equal(p.schema, expect_schema);
    struct booking_state st = {.waiting = waiting, .db_now_ms = 1000000};
    p.cb(p.arg, rc, rc == REPO_OK ? &st : NULL);
}

struct fixture {
    struct fake_world w;
    struct config cfg;
    struct logger log;
    struct followup_state s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    fakes_init(&f->w);
    f->w.repo.booking_state = fake_booking_state;
    n_pending = reads = 0;
    f->cfg.db_schemas = (struct strlist){.items = schemas, .n = 2};
    f->cfg.followup_booking_types = (struct strlist){.items = types, .n = 1};
    f->cfg.followup_sweep_interval_s = 30;
    f->cfg.followup_catchup_window_s = 3600;
    f->cfg.followup_lead_time_s = 120;
    logger_init(&f->log, LOG_LEVEL_ERROR, open("/dev/null", O_WRONLY));
    assert_int_equal(followup_state_init(&f->s, &f->cfg, &f->w.repo, &f->w.clock, &f->log, 60), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    followup_state_free(&f->s);
    close(f->log.fd);
    free(f);
    return 0;
}

static void start__first_refresh__schemas_read_one_after_the_other(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(followup_state_start(&f->s), 0);
    assert_int_equal(reads, 0);                 /* from the loop, not from inside start */
    fakes_advance(&f->w, 0);
    assert_int_equal(n_pending, 1);             /* one read at a time */
    assert_int_equal(pending[0].q.lookback_s, 3600);
    assert_int_equal(pending[0].q.lease_s, 60);
    answer_next(REPO_OK, 7, "s_one");
    assert_int_equal(n_pending, 1);
    answer_next(REPO_OK, 9, "s_two");
    assert_int_equal(n_pending, 0);
    assert_int_equal(f->s.state[0].waiting, 7);
    assert_int_equal(f->s.state[1].waiting, 9);
    assert_true(f->s.read_at_ms[0] > 0 && f->s.read_at_ms[1] > 0);
    assert_int_equal(f->s.refreshes, 1);
}

static void refresh__every_sweep_interval__not_doubled_while_running(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(followup_state_start(&f->s), 0);
    fakes_advance(&f->w, 0);
    assert_int_equal(reads, 1);
    fakes_advance(&f->w, 30000);                /* next refresh due while the first still waits */
    assert_int_equal(reads, 1);
    answer_next(REPO_OK, 1, "s_one");
    answer_next(REPO_OK, 2, "s_two");
    fakes_advance(&f->w, 29999);
    assert_int_equal(reads, 2);
    fakes_advance(&f->w, 1);
    assert_int_equal(reads, 3);
    assert_int_equal(n_pending, 1);
}

static void refresh__failed_read__keeps_the_last_summary_and_its_time(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(followup_state_start(&f->s), 0);
    fakes_advance(&f->w, 0);
    answer_next(REPO_OK, 5, "s_one");
    answer_next(REPO_OK, 6, "s_two");
    int64_t read_at = f->s.read_at_ms[0];
    fakes_advance(&f->w, 30000);
    answer_next(REPO_ERROR, 0, "s_one");
    answer_next(REPO_OK, 8, "s_two");
    assert_int_equal(f->s.state[0].waiting, 5);
    assert_int_equal(f->s.read_at_ms[0], read_at);
    assert_int_equal(f->s.state[1].waiting, 8);
    assert_int_equal(f->s.failures, 1);
}

static void close__late_answer_and_timer__ignored(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(followup_state_start(&f->s), 0);
    fakes_advance(&f->w, 0);
    followup_state_close(&f->s);
    answer_next(REPO_OK, 5, "s_one");
    assert_int_equal(f->s.state[0].waiting, 0);
    assert_int_equal(n_pending, 0);
    fakes_advance(&f->w, 60000);
    assert_int_equal(reads, 1);
}

static void oldest_due_age__none_or_due__seconds_at_read(void **state)
{
    (void)state;
    struct booking_state st = {.db_now_ms = 100000};
    assert_true(followup_state_oldest_due_age_s(&st) == 0);
    st.oldest_due_ms = 40000;
    assert_true(followup_state_oldest_due_age_s(&st) == 60.0);
    st.oldest_due_ms = 100500;                 /* clock skew inside one statement cannot go negative */
    assert_true(followup_state_oldest_due_age_s(&st) == 0);
}

static void query__configuration__sweep_horizon_with_lead_time(void **state)
{
    struct fixture *f = *state;
    struct booking_state_query q = followup_state_query(&f->cfg, 45);
    assert_ptr_equal(q.types, &f->cfg.followup_booking_types);
    assert_int_equal(q.lookback_s, 3600);
    assert_int_equal(q.horizon_s, SCHEDULER_HORIZON_S - SCHEDULER_HORIZON_MARGIN_S + 120);
    assert_int_equal(q.lease_s, 45);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(start__first_refresh__schemas_read_one_after_the_other, setup, teardown),
        cmocka_unit_test_setup_teardown(refresh__every_sweep_interval__not_doubled_while_running, setup, teardown),
        cmocka_unit_test_setup_teardown(refresh__failed_read__keeps_the_last_summary_and_its_time, setup, teardown),
        cmocka_unit_test_setup_teardown(close__late_answer_and_timer__ignored, setup, teardown),
        cmocka_unit_test(oldest_due_age__none_or_due__seconds_at_read),
        cmocka_unit_test_setup_teardown(query__configuration__sweep_horizon_with_lead_time, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
