/*
 * Unit tests of the local dispatcher (queue.backend = local): the fast path
 * for a task recorded already due, the one timer for a task due later, the
 * fast-path limit, close, a transient failure retried after its backoff, a
 * timer that fires during a round, and duplicate recordings.  Real dispatcher
 * and execution service, fake ports (support/ports_fakes) on a virtual clock.
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

#include "features/deals_pipeline/services/followup_dispatcher_service.h"
#include "features/deals_pipeline/services/followup_keys.h"
#include "support/ports_fakes.h"

#define SCHEMA "tenant_schema"
#define TENANT "11111111-1111-4111-8111-111111111111"
#define LEASE_S 60
#define SWEEP_S 300

struct fixture {
    struct fake_world w;
    struct logger log;
    struct config cfg;
    struct followup_execution_service exec;
    struct followup_dispatcher d;
};

static char *schemas[] = {SCHEMA};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    fakes_init(&f->w);
    logger_init(&f->log, LOG_LEVEL_ERROR, open("/dev/null", O_WRONLY));
    f->cfg.db_schemas = (struct strlist){.items = schemas, .n = 1};
    f->cfg.followup_lead_time_s = 0;
    f->cfg.followup_sweep_interval_s = SWEEP_S;
    followup_execution_service_init(&f->exec, &f->w.repo, &f->w.voice, &f->log, LEASE_S);
    followup_dispatcher_init(&f->d, &f->cfg, &f->w.repo, &f->exec, &f->w.clock, &f->log);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    followup_dispatcher_close(&f->d);
    f->w.voice_hold = false;
    fakes_release_voice(&f->w);
    fakes_drain(&f->w);
    followup_dispatcher_free(&f->d);
    close(f->log.fd);
    free(f);
    return 0;
}

static void booking_id(int n, char out[UUID_STR_LEN])
{
    snprintf(out, UUID_STR_LEN, "33333333-3333-4333-8333-%012d", n);
}

/* A row as the scheduler leaves it for the local backend: scheduled, task local/<sha256 hex of the key>,
 * the key set, task_scheduled_at == scheduled_at. */
static struct fake_row *add_local(struct fixture *f, int n, int64_t offset_ms)
{
    char id[UUID_STR_LEN];
    booking_id(n, id);
    struct fake_row *r = fakes_add_booking(&f->w, SCHEMA, TENANT, id, "follow_up", f->w.now_ms + offset_ms);
    assert_non_null(r);
    assert_int_equal(followup_idempotency_key(TENANT, id, r->b.scheduled_at_ms, r->b.idempotency_key,
                                              sizeof(r->b.idempotency_key)),
                     0);
    char task_id[TASK_ID_LEN];
    assert_int_equal(followup_task_id(r->b.idempotency_key, 0, task_id), 0);
    assert_int_equal(strlen(task_id), 64);
    snprintf(r->b.task_name, sizeof(r->b.task_name), "local/%s", task_id);
    strcpy(r->b.task_status, "scheduled");
    r->b.task_scheduled_at_ms = r->b.scheduled_at_ms;
    return r;
}

/* What the scheduler reports after recording the row's task (due: scheduled_at - lead, never before now). */
static void record(struct fixture *f, const struct fake_row *r)
{
    int64_t due = r->b.scheduled_at_ms - (int64_t)f->cfg.followup_lead_time_s * 1000;
    if (due < f->w.now_ms) due = f->w.now_ms;
    struct recorded_task t = {.schema = r->schema, .tenant_id = r->b.tenant_id, .booking_id = r->b.id,
                              .idempotency_key = r->b.idempotency_key, .due_ms = due};
    followup_dispatcher_task_recorded(&f->d, &t);
}

static int calls_with_key(const struct fixture *f, const char *key)
{
    int n = 0;
    for (int i = 0; i < f->w.voice_calls && i < FAKE_MAX_CALLS; i++) n += strcmp(f->w.call_keys[i], key) == 0;
    return n;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The early-delivery guard is for deliveries from outside: the dispatcher's own runs (fast path and rounds)
 * are never marked, so a due booking runs with the guard on, its claim asked to check nothing. */
static void guard_on__due_bookings__run_unmarked_on_the_fast_path_and_by_the_timer(void **state)
{
    struct fixture *f = *state;
    f->cfg.followup_lead_time_s = f->exec.lead_time_s = 600;
    f->exec.early_tolerance_s = 300;
    struct fake_row *now = add_local(f, 1, 600 * 1000);    /* due now (scheduled_at - lead_time_s) */
    struct fake_row *later = add_local(f, 2, 660 * 1000);  /* due in 60 s */
    record(f, now);
    record(f, later);
    fakes_drain(&f->w);
    assert_int_equal(calls_with_key(f, now->b.idempotency_key), 1);
    assert_int_equal(f->w.last_claim_early_window_s, -1);
    fakes_advance(&f->w, 60 * 1000);
    assert_int_equal(calls_with_key(f, later->b.idempotency_key), 1);
    assert_int_equal(f->w.last_claim_early_window_s, -1);
    assert_string_equal(later->b.task_status, "executed");
}

static void recorded__already_due__runs_at_once_on_the_fast_path(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = add_local(f, 1, 0);
    record(f, r);
    assert_int_equal(f->w.voice_calls, 0);   /* asynchronous: nothing before the loop runs */
    fakes_drain(&f->w);
    assert_int_equal(f->w.voice_calls, 1);
    assert_string_equal(f->w.call_keys[0], r->b.idempotency_key);
    assert_string_equal(f->w.last_call.booking_id, r->b.id);
    assert_true(starts_with(f->w.last_call.request_id, "local-now-"));
    assert_string_equal(r->b.task_status, "executed");
    assert_int_equal(r->b.execution_attempts, 1);
    assert_int_equal(f->d.dispatched_immediately, 1);
    assert_int_equal(f->d.immediate_running, 0);
    assert_int_equal(f->d.rounds, 0);            /* no round was needed */
    assert_int_equal(f->w.find_due_calls, 0);
    assert_int_equal(fakes_armed_timers(&f->w), 0);
}

static void recorded__due_later__timer_then_one_call_by_a_round(void **state)
{
    struct fixture *f = *state;
    followup_dispatcher_poke(&f->d);   /* nothing due yet: armed at the sweep interval */
    fakes_drain(&f->w);
    assert_int_equal(f->d.armed_due_ms, f->w.now_ms + (int64_t)SWEEP_S * 1000);
    struct fake_row *r = add_local(f, 1, 30000);
    int64_t due = r->b.scheduled_at_ms;
    record(f, r);   /* pulls the timer earlier */
    fakes_drain(&f->w);
    assert_int_equal(f->w.voice_calls, 0);
    assert_int_equal(f->d.dispatched_immediately, 0);
    assert_int_equal(f->d.armed_due_ms, due);

    fakes_advance(&f->w, 29999);
    assert_int_equal(f->w.voice_calls, 0);
    assert_string_equal(r->b.task_status, "scheduled");
    assert_int_equal(f->d.rounds, 0);

    fakes_advance(&f->w, 1);
    assert_int_equal(f->w.voice_calls, 1);
    assert_string_equal(f->w.call_keys[0], r->b.idempotency_key);
    assert_true(starts_with(f->w.last_call.request_id, "local-"));
    assert_false(starts_with(f->w.last_call.request_id, "local-now-"));
    assert_string_equal(r->b.task_status, "executed");
    assert_int_equal(f->d.dispatched_immediately, 0);
    assert_int_equal(f->d.dispatched, 1);
    assert_int_equal(f->d.rounds, 1);

    /* later rounds find nothing more to call */
    fakes_advance(&f->w, (int64_t)SWEEP_S * 1000 * 3);
    assert_int_equal(f->w.voice_calls, 1);
}

static void recorded__fast_path_full__left_to_a_round(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = add_local(f, 1, 0);
    f->d.immediate_running = DISPATCH_IMMEDIATE_MAX;
    record(f, r);
    fakes_drain(&f->w);
    assert_int_equal(f->w.voice_calls, 0);   /* not run immediately */
    assert_int_equal(f->d.dispatched_immediately, 0);
    assert_int_equal(f->d.armed_due_ms, r->b.scheduled_at_ms);
    assert_int_equal(fakes_armed_timers(&f->w), 1);

    fakes_advance(&f->w, 0);   /* the timer (due now) fires */
    assert_int_equal(f->w.voice_calls, 1);
    assert_string_equal(f->w.call_keys[0], r->b.idempotency_key);
    assert_string_equal(r->b.task_status, "executed");
    assert_int_equal(f->d.rounds, 1);
    assert_int_equal(f->d.dispatched_immediately, 0);
    assert_int_equal(f->d.immediate_running, DISPATCH_IMMEDIATE_MAX);   /* a round's run is not a fast-path run */
    f->d.immediate_running = 0;
}

static void recorded__more_than_the_fast_path_limit__the_extra_one_by_a_round(void **state)
{
    struct fixture *f = *state;
    struct fake_row *rows[DISPATCH_IMMEDIATE_MAX + 1];
    for (int i = 0; i <= DISPATCH_IMMEDIATE_MAX; i++) rows[i] = add_local(f, i + 1, 0);
    for (int i = 0; i <= DISPATCH_IMMEDIATE_MAX; i++) record(f, rows[i]);
    assert_int_equal(f->d.immediate_running, DISPATCH_IMMEDIATE_MAX);
    assert_int_equal(f->d.dispatched_immediately, DISPATCH_IMMEDIATE_MAX);
    assert_int_equal(fakes_armed_timers(&f->w), 1);   /* the extra one waits for the timer */

    fakes_drain(&f->w);
    assert_int_equal(f->w.voice_calls, DISPATCH_IMMEDIATE_MAX);
    assert_int_equal(calls_with_key(f, rows[DISPATCH_IMMEDIATE_MAX]->b.idempotency_key), 0);
    assert_string_equal(rows[DISPATCH_IMMEDIATE_MAX]->b.task_status, "scheduled");
    assert_int_equal(f->d.immediate_running, 0);
    assert_int_equal(f->d.rounds, 0);

    fakes_advance(&f->w, 0);
    assert_int_equal(f->w.voice_calls, DISPATCH_IMMEDIATE_MAX + 1);
    assert_int_equal(f->d.rounds, 1);
    assert_int_equal(f->d.dispatched, DISPATCH_IMMEDIATE_MAX + 1);
    assert_int_equal(f->d.dispatched_immediately, DISPATCH_IMMEDIATE_MAX);
    assert_string_equal(f->w.call_keys[DISPATCH_IMMEDIATE_MAX], rows[DISPATCH_IMMEDIATE_MAX]->b.idempotency_key);
    for (int i = 0; i <= DISPATCH_IMMEDIATE_MAX; i++) {
        assert_int_equal(calls_with_key(f, rows[i]->b.idempotency_key), 1);
        assert_string_equal(rows[i]->b.task_status, "executed");
        assert_int_equal(rows[i]->b.execution_attempts, 1);
    }
}

static void closed__recorded_due_task_starts_nothing(void **state)
{
    struct fixture *f = *state;
    struct fake_row *later = add_local(f, 1, 10000);
    record(f, later);                        /* armed before close */
    assert_int_equal(fakes_armed_timers(&f->w), 1);
    followup_dispatcher_close(&f->d);

    struct fake_row *now = add_local(f, 2, 0);
    record(f, now);
    followup_dispatcher_poke(&f->d);
    fakes_drain(&f->w);
    fakes_advance(&f->w, (int64_t)SWEEP_S * 1000 * 2);
    assert_int_equal(f->w.voice_calls, 0);
    assert_int_equal(f->d.dispatched, 0);
    assert_int_equal(f->d.rounds, 0);
    assert_int_equal(f->w.next_due_calls + f->w.find_due_calls, 0);
    assert_string_equal(now->b.task_status, "scheduled");
    assert_string_equal(later->b.task_status, "scheduled");
    assert_int_equal(fakes_armed_timers(&f->w), 0);
}

static void fast_path__transient_failure__retried_after_the_backoff(void **state)
{
    struct fixture *f = *state;
    f->exec.retry_base_s = 5;
    f->exec.max_attempts = 3;
    f->w.voice_script[0] = VOICE_TRANSIENT;
    struct fake_row *r = add_local(f, 1, 0);
    int64_t t0 = f->w.now_ms;
    record(f, r);
    fakes_drain(&f->w);
    assert_int_equal(f->w.voice_calls, 1);
    assert_int_equal(f->d.dispatched_immediately, 1);
    assert_string_equal(r->b.task_status, "failed");
    assert_int_equal(r->next_attempt_ms, t0 + 5000);
    /* the fast path re-read the next due time (a poke) and armed for the retry */
    assert_true(f->w.next_due_calls >= 1);
    assert_int_equal(f->d.armed_due_ms, t0 + 5000);
    assert_int_equal(f->d.rounds, 0);

    fakes_advance(&f->w, 4999);
    assert_int_equal(f->w.voice_calls, 1);
    assert_string_equal(r->b.task_status, "failed");

    fakes_advance(&f->w, 1);
    assert_int_equal(f->w.voice_calls, 2);
    assert_string_equal(f->w.call_keys[0], r->b.idempotency_key);
    assert_string_equal(f->w.call_keys[1], r->b.idempotency_key);
    assert_string_equal(r->b.task_status, "executed");
    assert_int_equal(r->b.execution_attempts, 2);
    assert_int_equal(f->d.rounds, 1);

    fakes_advance(&f->w, (int64_t)SWEEP_S * 1000 * 2);
    assert_int_equal(f->w.voice_calls, 2);
}

static void round__timer_fires_during_it__runs_again_without_a_poke(void **state)
{
    struct fixture *f = *state;
    struct fake_row *a = add_local(f, 1, 0);
    f->w.voice_hold = true;   /* A's call stays open: the round stays in progress */
    followup_dispatcher_poke(&f->d);
    fakes_drain(&f->w);
    assert_int_equal(f->d.armed_due_ms, a->b.scheduled_at_ms);
    fakes_advance(&f->w, 0);   /* timer → round → A claimed and called */
    assert_int_equal(f->w.voice_calls, 1);
    assert_true(f->d.dispatching);
    assert_int_equal(f->d.running, 1);
    assert_string_equal(a->b.task_status, "in_progress");

    /* B is recorded during the round, due in 10 s: the timer is armed for it */
    struct fake_row *b = add_local(f, 2, 10000);
    record(f, b);
    assert_int_equal(f->d.armed_due_ms, b->b.scheduled_at_ms);
    fakes_advance(&f->w, 10000);   /* B's timer fires while A's call is still open */
    assert_true(f->d.dispatching);
    assert_true(f->d.round_again);
    assert_int_equal(f->w.voice_calls, 1);
    assert_int_equal(f->d.rounds, 0);
    int scans = f->w.next_due_calls;

    /* A's call answers; the round ends and at once runs again for B — no poke, no clock tick */
    f->w.voice_hold = false;
    assert_int_equal(fakes_release_voice(&f->w), 1);
    fakes_drain(&f->w);
    assert_int_equal(f->w.voice_calls, 2);
    assert_string_equal(f->w.call_keys[0], a->b.idempotency_key);
    assert_string_equal(f->w.call_keys[1], b->b.idempotency_key);
    assert_string_equal(a->b.task_status, "executed");
    assert_string_equal(b->b.task_status, "executed");
    assert_int_equal(f->d.rounds, 2);
    assert_int_equal(f->d.dispatched_immediately, 0);
    assert_false(f->d.dispatching);
    assert_int_equal(f->w.next_due_calls, scans + 1);   /* only the re-arm after the second round */
}

static void recorded__twice_while_due__one_call(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = add_local(f, 1, 0);
    record(f, r);
    record(f, r);   /* duplicate: its claim finds the row in progress */
    assert_int_equal(f->d.dispatched_immediately, 2);
    fakes_drain(&f->w);
    assert_int_equal(f->w.voice_calls, 1);
    assert_string_equal(f->w.call_keys[0], r->b.idempotency_key);
    assert_string_equal(r->b.task_status, "executed");
    assert_int_equal(r->b.execution_attempts, 1);
    assert_int_equal(f->d.immediate_running, 0);

    record(f, r);   /* once more after it ran: the claim finds it executed */
    fakes_drain(&f->w);
    fakes_advance(&f->w, (int64_t)SWEEP_S * 1000 * 2);
    assert_int_equal(f->w.voice_calls, 1);
    assert_int_equal(f->d.dispatched_immediately, 3);
    assert_int_equal(r->b.execution_attempts, 1);
}

static void poke__no_live_current_task__nothing_due_and_timer_at_the_sweep_interval(void **state)
{
    struct fixture *f = *state;
    struct fake_row *moved = add_local(f, 1, -1000);
    moved->b.scheduled_at_ms += 60000;                /* the booking moved; its task is out of step */
    struct fake_row *cancelled = add_local(f, 2, -1000);
    strcpy(cancelled->b.status, "cancelled");
    struct fake_row *cloud = add_local(f, 3, -1000);
    strcpy(cloud->b.task_name, "projects/p/locations/l/queues/q/tasks/x");
    struct fake_row *final = add_local(f, 4, -1000);
    strcpy(final->b.task_status, "failed");           /* not retryable: no next attempt */
    struct fake_row *held = add_local(f, 5, -1000);
    strcpy(held->b.task_status, "in_progress");       /* a live lease, ending in LEASE_S */
    held->lease_started_ms = f->w.now_ms;

    int64_t t0 = f->w.now_ms;
    followup_dispatcher_poke(&f->d);
    fakes_drain(&f->w);
    assert_int_equal(f->d.armed_due_ms, t0 + (int64_t)LEASE_S * 1000);   /* the lease's end, not a busy loop */
    assert_int_equal(fakes_armed_timers(&f->w), 1);
    fakes_advance(&f->w, 0);
    assert_int_equal(f->w.voice_calls, 0);
    assert_int_equal(f->d.rounds, 0);

    strcpy(held->b.task_status, "executed");
    followup_dispatcher_poke(&f->d);
    fakes_drain(&f->w);
    assert_int_equal(f->d.armed_due_ms, t0 + (int64_t)LEASE_S * 1000);   /* an earlier arm stands */
    fakes_advance(&f->w, (int64_t)LEASE_S * 1000);
    assert_int_equal(f->d.rounds, 1);
    assert_int_equal(f->w.voice_calls, 0);
    assert_int_equal(f->d.armed_due_ms, f->w.now_ms + (int64_t)SWEEP_S * 1000);   /* nothing due: the cap */
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
/* The cap is full: the deferred runs leave their rows due, but the dispatcher holds — no claim until the hold
 * ends (EXEC_DEFER_RETRY_S) or a call of its own ends — and a round reads no more rows than the cap. */
static void cap_full__deferred_runs__held_no_busy_loop_until_a_call_ends(void **state)
{
    struct fixture *f = *state;
    f->cfg.va_max_concurrent = f->exec.global_cap = 1;
    f->w.voice_hold = true;
    struct fake_row *rows[] = {add_local(f, 1, 0), add_local(f, 2, 0), add_local(f, 3, 0)};
    for (int i = 0; i < 3; i++) record(f, rows[i]);
    fakes_drain(&f->w);
    assert_int_equal(f->w.voice_calls, 1);          /* one claimed (held), two deferred */
    assert_int_equal(f->exec.deferred[DEFER_GLOBAL_CAP], 2);
    int claims = f->w.claims;
    fakes_advance(&f->w, EXEC_DEFER_RETRY_S * 1000 - 1);
    assert_int_equal(f->w.claims, claims);         /* held: no claim at all meanwhile */
    fakes_advance(&f->w, 1);
    assert_int_equal(f->w.claims, claims + 1);     /* one round, of at most the cap's one row: deferred again */
    assert_int_equal(f->w.last_find_due_limit, 1);
    assert_int_equal(f->w.voice_calls, 1);
    f->w.voice_hold = false;
    fakes_release_voice(&f->w);
    fakes_drain(&f->w);                           /* the call ends: its slot is free, the hold is over */
    for (int i = 0; i < 3; i++) fakes_advance(&f->w, 0);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(rows[i]->b.task_status, "executed");
        assert_int_equal(calls_with_key(f, rows[i]->b.idempotency_key), 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(guard_on__due_bookings__run_unmarked_on_the_fast_path_and_by_the_timer),
        T(cap_full__deferred_runs__held_no_busy_loop_until_a_call_ends),
        T(recorded__already_due__runs_at_once_on_the_fast_path),
        T(recorded__due_later__timer_then_one_call_by_a_round),
        T(recorded__fast_path_full__left_to_a_round),
        T(recorded__more_than_the_fast_path_limit__the_extra_one_by_a_round),
        T(closed__recorded_due_task_starts_nothing),
        T(fast_path__transient_failure__retried_after_the_backoff),
        T(round__timer_fires_during_it__runs_again_without_a_poke),
        T(recorded__twice_while_due__one_call),
        T(poke__no_live_current_task__nothing_due_and_timer_at_the_sweep_interval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
