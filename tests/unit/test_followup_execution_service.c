/*
 * Unit tests of the execution service (the idempotency gate of `make
 * compliance`, check #3): duplicates, tenants, cancel/stale, leases, failure
 * mapping.  Real service code, fake ports (support/ports_fakes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "features/deals_pipeline/services/followup_execution_service.h"
#include "features/deals_pipeline/services/followup_keys.h"
#include "support/ports_fakes.h"

#define SCHEMA "tenant_schema"
#define TENANT "11111111-1111-4111-8111-111111111111"
#define OTHER_TENANT "22222222-2222-4222-8222-222222222222"
#define BOOKING "33333333-3333-4333-8333-333333333333"

struct fixture {
    struct fake_world w;
    struct logger log;
    struct followup_execution_service svc;
    char key[IDEMPOTENCY_KEY_LEN];
    int done;
    enum execution_status last[32];
    int last_retry_after_s;
};

static void on_done(void *arg, enum execution_status st, int retry_after_s)
{
    struct fixture *f = arg;
    f->last[f->done++ % 32] = st;
    f->last_retry_after_s = retry_after_s;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    fakes_init(&f->w);
    logger_init(&f->log, LOG_LEVEL_ERROR, open("/dev/null", O_WRONLY));
    followup_execution_service_init(&f->svc, &f->w.repo, &f->w.voice, &f->log, 60);
    struct fake_row *r = fakes_add_booking(&f->w, SCHEMA, TENANT, BOOKING, "follow_up", f->w.now_ms + 1000);
    assert_int_equal(followup_idempotency_key(TENANT, BOOKING, r->b.scheduled_at_ms, f->key, sizeof(f->key)), 0);
    strcpy(r->b.idempotency_key, f->key);
    strcpy(r->b.task_status, "scheduled");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    fakes_drain(&f->w);
    close(f->log.fd);
    free(f);
    return 0;
}

static void execute_request(struct fixture *f, const char *tenant, const char *key, bool refuse_early)
{
    struct execution_request req = {.schema = SCHEMA, .tenant_id = tenant, .booking_id = BOOKING,
                                    .idempotency_key = key, .request_id = "req-1", .refuse_early = refuse_early};
    assert_int_equal(followup_execution_execute(&f->svc, &req, on_done, f), 0);
}

static void execute(struct fixture *f, const char *tenant, const char *key)
{
    execute_request(f, tenant, key, false);
}

/* One run to its end; refuse_early marks it as a delivery from outside (the HTTP callback). */
static enum execution_status run_marked(struct fixture *f, const char *tenant, const char *key, bool refuse_early)
{
    int before = f->done;
    execute_request(f, tenant, key, refuse_early);
    assert_int_equal(f->done, before); /* never completes synchronously */
    fakes_drain(&f->w);
    assert_int_equal(f->done, before + 1);
    return f->last[before % 32];
}

static enum execution_status run_once(struct fixture *f, const char *tenant, const char *key)
{
    return run_marked(f, tenant, key, false);
}

static void execute__first_delivery__calls_once_and_marks_executed(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_EXECUTED);
    assert_int_equal(f->w.voice_calls, 1);
    assert_string_equal(f->w.call_keys[0], f->key);
    assert_string_equal(f->w.last_call.tenant_id, TENANT);
    assert_string_equal(f->w.last_call.booking_type, "follow_up");
    assert_string_equal(fakes_find(&f->w, BOOKING)->b.task_status, "executed");
    assert_int_equal(fakes_find(&f->w, BOOKING)->b.execution_attempts, 1);
}

static void execute__second_delivery__succeeds_without_calling(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_EXECUTED);
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_ALREADY_EXECUTED);
    assert_int_equal(f->w.voice_calls, 1);
}

static void execute__ten_concurrent_duplicates__exactly_one_call(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 10; i++) execute(f, TENANT, f->key);
    fakes_drain(&f->w);
    assert_int_equal(f->done, 10);
    assert_int_equal(f->w.voice_calls, 1);
    int executed = 0, in_progress = 0;
    for (int i = 0; i < 10; i++) {
        executed += f->last[i] == EXEC_EXECUTED;
        in_progress += f->last[i] == EXEC_IN_PROGRESS;
    }
    assert_int_equal(executed, 1);
    assert_int_equal(in_progress, 9);
}

static void execute__other_tenant__not_found_and_no_call(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(run_once(f, OTHER_TENANT, f->key), EXEC_NOT_FOUND);
    assert_int_equal(f->w.voice_calls, 0);
    assert_string_equal(fakes_find(&f->w, BOOKING)->b.task_status, "scheduled");
}

static void execute__cancelled_booking__noop(void **state)
{
    struct fixture *f = *state;
    strcpy(fakes_find(&f->w, BOOKING)->b.status, "cancelled");
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_CANCELLED);
    assert_int_equal(f->w.voice_calls, 0);
}

static void execute__cancelled_task_status__noop(void **state)
{
    struct fixture *f = *state;
    strcpy(fakes_find(&f->w, BOOKING)->b.task_status, "cancelled");
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_CANCELLED);
    assert_int_equal(f->w.voice_calls, 0);
}

/* Cloud Tasks delivered the task the moment it was created, before the scheduler's mark of the row committed:
 * the key is the row's own (its scheduled_at gives it), so the delivery must be retried, not ended as stale. */
static void execute__delivery_before_the_row_records_its_task__in_progress_then_executed(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = fakes_find(&f->w, BOOKING);
    strcpy(r->b.task_status, "pending");
    r->b.idempotency_key[0] = '\0';
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_IN_PROGRESS);
    assert_int_equal(f->w.voice_calls, 0);
    assert_string_equal(r->b.task_status, "pending");
    strcpy(r->b.idempotency_key, f->key); /* the scheduler's mark lands; Cloud Tasks retries */
    strcpy(r->b.task_status, "scheduled");
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_EXECUTED);
    assert_int_equal(f->w.voice_calls, 1);
}

/* Rescheduled: the replacement task is delivered before the row moves to it (retry), the old one is stale. */
static void execute__replacement_delivered_before_the_row_moves_to_it__in_progress_old_task_stale(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = fakes_find(&f->w, BOOKING);
    r->b.task_scheduled_at_ms = r->b.scheduled_at_ms;
    r->b.scheduled_at_ms += 60000; /* the backend moved it; the row still carries the old task and key */
    char new_key[IDEMPOTENCY_KEY_LEN];
    assert_int_equal(followup_idempotency_key(TENANT, BOOKING, r->b.scheduled_at_ms, new_key, sizeof(new_key)), 0);
    assert_int_equal(run_once(f, TENANT, new_key), EXEC_IN_PROGRESS);
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_STALE);
    assert_int_equal(f->w.voice_calls, 0);
    assert_string_equal(r->b.task_status, "scheduled");
}

static void execute__stale_key__noop(void **state)
{
    struct fixture *f = *state;
    char old_key[IDEMPOTENCY_KEY_LEN];
    assert_int_equal(followup_idempotency_key(TENANT, BOOKING, f->w.now_ms - 3600000, old_key, sizeof(old_key)), 0);
    assert_int_equal(run_once(f, TENANT, old_key), EXEC_STALE);
    assert_int_equal(f->w.voice_calls, 0);
    assert_string_equal(fakes_find(&f->w, BOOKING)->b.task_status, "scheduled");
}

static void execute__live_lease__in_progress_without_call(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = fakes_find(&f->w, BOOKING);
    strcpy(r->b.task_status, "in_progress");
    r->lease_started_ms = f->w.now_ms - 10000; /* 10 s ago, lease 60 s */
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_IN_PROGRESS);
    assert_int_equal(f->w.voice_calls, 0);
}

static void execute__expired_lease__recalls_with_same_key(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = fakes_find(&f->w, BOOKING);
    strcpy(r->b.task_status, "in_progress");
    r->b.execution_attempts = 1;
    r->lease_started_ms = f->w.now_ms - 61000;
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_EXECUTED);
    assert_int_equal(f->w.voice_calls, 1);
    assert_string_equal(f->w.call_keys[0], f->key);
    assert_int_equal(r->b.execution_attempts, 2);
}

static void execute__transient_failure__retryable_then_succeeds(void **state)
{
    struct fixture *f = *state;
    f->w.voice_script[0] = VOICE_TRANSIENT;
    f->w.voice_status_script[0] = 500;
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_FAILED_RETRYABLE);
    struct fake_row *r = fakes_find(&f->w, BOOKING);
    assert_string_equal(r->b.task_status, "failed");
    assert_int_equal(r->b.execution_attempts, 1);
    assert_non_null(strstr(r->last_error, "500"));
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_EXECUTED);
    assert_int_equal(r->b.execution_attempts, 2);
    assert_int_equal(f->w.voice_calls, 2);
    assert_string_equal(f->w.call_keys[1], f->key);
}

static void execute__permanent_failure__final_and_never_recalled(void **state)
{
    struct fixture *f = *state;
    f->w.voice_script[0] = VOICE_PERMANENT;
    f->w.voice_status_script[0] = 422;
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_FAILED_FINAL);
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_FAILED_FINAL);
    assert_int_equal(f->w.voice_calls, 1);
}

static void execute__repository_down__unavailable_and_no_call(void **state)
{
    struct fixture *f = *state;
    f->w.repo_down = true;
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_UNAVAILABLE);
    assert_int_equal(f->w.voice_calls, 0);
}

static void execute__outcome_not_recorded__unavailable_then_lease_protects(void **state)
{
    struct fixture *f = *state;
    execute(f, TENANT, f->key);
    /* claim runs, call runs; make the outcome write fail */
    fakes_drain(&f->w);
    assert_int_equal(f->w.voice_calls, 1);
    assert_int_equal(f->last[0], EXEC_EXECUTED);
    /* now a replica crashes after the call: simulate in_progress with live lease */
    struct fake_row *r = fakes_find(&f->w, BOOKING);
    strcpy(r->b.task_status, "in_progress");
    r->lease_started_ms = f->w.now_ms;
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_IN_PROGRESS);
    assert_int_equal(f->w.voice_calls, 1);
}

static void execute__overlong_fields__refused(void **state)
{
    struct fixture *f = *state;
    char big[600];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct execution_request req = {.schema = SCHEMA, .tenant_id = TENANT, .booking_id = BOOKING,
                                    .idempotency_key = big, .request_id = "r"};
    assert_int_equal(followup_execution_execute(&f->svc, &req, on_done, f), -1);
    assert_int_equal(f->w.voice_calls, 0);
}

static void execute__transient_on_last_attempt__final(void **state)
{
    struct fixture *f = *state;
    f->svc.max_attempts = 2;
    f->w.voice_script[0] = VOICE_TRANSIENT;
    f->w.voice_script[1] = VOICE_TRANSIENT;
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_FAILED_RETRYABLE);
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_FAILED_FINAL);
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_FAILED_FINAL);   /* never called a third time */
    assert_int_equal(f->w.voice_calls, 2);
}

static void execute__retry_delay__doubles_from_base(void **state)
{
    struct fixture *f = *state;
    f->svc.retry_base_s = 5;
    struct fake_row *r = fakes_find(&f->w, BOOKING);
    for (int i = 0; i < 3; i++) f->w.voice_script[i] = VOICE_TRANSIENT;
    int expected[] = {5, 10, 20};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(run_once(f, TENANT, f->key), EXEC_FAILED_RETRYABLE);
        assert_int_equal(r->retry_delay_s, expected[i]);
        fakes_advance(&f->w, (int64_t)expected[i] * 1000);   /* not claimable again before next_attempt_at */
    }
}

/* ---- deliveries before their time ---- */

/* Move the booking (and its task) to now + in_ms; f->key follows. */
static struct fake_row *due_in(struct fixture *f, int64_t in_ms)
{
    struct fake_row *r = fakes_find(&f->w, BOOKING);
    r->b.scheduled_at_ms = r->b.task_scheduled_at_ms = f->w.now_ms + in_ms;
    assert_int_equal(followup_idempotency_key(TENANT, BOOKING, r->b.scheduled_at_ms, f->key, sizeof(f->key)), 0);
    strcpy(r->b.idempotency_key, f->key);
    return r;
}

static void execute__delivery_before_its_time__too_early_without_call_attempt_or_lease(void **state)
{
    struct fixture *f = *state;
    f->svc.early_tolerance_s = 300;
    struct fake_row *r = due_in(f, 3600 * 1000);
    struct booking before = r->b;
    assert_int_equal(run_marked(f, TENANT, f->key, true), EXEC_TOO_EARLY);
    assert_int_equal(f->last_retry_after_s, 3600 - 300);
    assert_int_equal(f->w.last_claim_early_window_s, 300);
    assert_int_equal(f->w.voice_calls, 0);
    assert_memory_equal(&r->b, &before, sizeof(before)); /* no attempt counted, no status change */
    assert_int_equal(r->lease_started_ms, 0);             /* no lease */
    assert_int_equal(f->svc.inflight, 0);
}

static void execute__delivery_inside_the_tolerance__executed(void **state)
{
    struct fixture *f = *state;
    f->svc.early_tolerance_s = 300;
    due_in(f, 299 * 1000);
    assert_int_equal(run_marked(f, TENANT, f->key, true), EXEC_EXECUTED);
    assert_int_equal(f->last_retry_after_s, 0);
    assert_int_equal(f->w.voice_calls, 1);
}

static void execute__lead_time__moves_the_allowed_moment_earlier(void **state)
{
    struct fixture *f = *state;
    f->svc.early_tolerance_s = 60;
    f->svc.lead_time_s = 600;
    due_in(f, 700 * 1000); /* allowed from now + 40 s */
    assert_int_equal(run_marked(f, TENANT, f->key, true), EXEC_TOO_EARLY);
    assert_int_equal(f->last_retry_after_s, 40);
    fakes_advance(&f->w, 40 * 1000);
    assert_int_equal(run_marked(f, TENANT, f->key, true), EXEC_EXECUTED);
    assert_int_equal(f->w.voice_calls, 1);
    assert_int_equal(fakes_find(&f->w, BOOKING)->b.execution_attempts, 1);
}

static void execute__tolerance_zero__early_delivery_runs(void **state)
{
    struct fixture *f = *state;
    due_in(f, 3600 * 1000);
    assert_int_equal(run_marked(f, TENANT, f->key, true), EXEC_EXECUTED);
    assert_int_equal(f->w.last_claim_early_window_s, -1);
}

static void execute__unmarked_run_of_the_local_dispatcher__never_refused_as_early(void **state)
{
    struct fixture *f = *state;
    f->svc.early_tolerance_s = 300;
    due_in(f, 3600 * 1000);
    assert_int_equal(run_marked(f, TENANT, f->key, false), EXEC_EXECUTED);
    assert_int_equal(f->w.last_claim_early_window_s, -1);
    assert_int_equal(f->w.voice_calls, 1);
}

static void execute__final_states_before_their_time__answered_as_before(void **state)
{
    struct fixture *f = *state;
    f->svc.early_tolerance_s = 300;
    struct fake_row *r = due_in(f, 3600 * 1000);
    strcpy(r->b.task_status, "executed");
    assert_int_equal(run_marked(f, TENANT, f->key, true), EXEC_ALREADY_EXECUTED);
    strcpy(r->b.task_status, "failed");
    r->retryable = false;
    assert_int_equal(run_marked(f, TENANT, f->key, true), EXEC_FAILED_FINAL);
    strcpy(r->b.status, "cancelled");
    assert_int_equal(run_marked(f, TENANT, f->key, true), EXEC_CANCELLED);
    assert_int_equal(f->w.voice_calls, 0);
}

/* ---- late calls, caps, the voice agent's Retry-After ---- */

#define HOUR_MS (3600 * 1000LL)

static void execute__reached_after_max_lateness__expired_no_call_row_failed_for_good(void **state)
{
    struct fixture *f = *state;
    f->svc.max_lateness_s = 3600;
    f->w.now_ms += 2 * HOUR_MS;
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_EXPIRED);
    assert_int_equal(f->w.last_claim.max_lateness_s, 3600);
    struct fake_row *r = fakes_find(&f->w, BOOKING);
    assert_string_equal(r->b.task_status, "failed");
    assert_false(r->retryable);
    assert_int_equal(strncmp(r->last_error, "expired:", 8), 0);
    assert_int_equal(r->b.execution_attempts, 0);
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_EXPIRED);   /* a duplicate: the same answer */
    assert_int_equal(f->w.voice_calls, 0);
    assert_int_equal(f->svc.finished[EXEC_EXPIRED], 2);
}

static void execute__max_lateness_off__late_booking_executed(void **state)
{
    struct fixture *f = *state;
    f->w.now_ms += 2 * HOUR_MS;
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_EXECUTED);   /* max_lateness_s 0: off */
    assert_int_equal(f->w.last_claim.max_lateness_s, 0);
    assert_int_equal(f->w.voice_calls, 1);
}

/* Another booking holding a live lease (a call in flight) for `tenant`. */
static void call_in_flight(struct fixture *f, const char *tenant, const char *booking)
{
    struct fake_row *r = fakes_add_booking(&f->w, SCHEMA, tenant, booking, "follow_up", f->w.now_ms);
    strcpy(r->b.task_status, "in_progress");
    r->lease_started_ms = f->w.now_ms;
}

static void assert_deferred_untouched(struct fixture *f, enum claim_deferral why)
{
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_DEFERRED);
    assert_int_equal(f->last_retry_after_s, EXEC_DEFER_RETRY_S);
    assert_int_equal(f->w.voice_calls, 0);
    struct fake_row *r = fakes_find(&f->w, BOOKING);
    assert_string_equal(r->b.task_status, "scheduled");
    assert_int_equal(r->b.execution_attempts, 0);
    assert_int_equal(f->svc.deferred[why], 1);
}

static void execute__tenant_cap_reached__deferred_no_call_row_untouched(void **state)
{
    struct fixture *f = *state;
    f->svc.tenant_cap = 1;
    call_in_flight(f, TENANT, "44444444-4444-4444-8444-444444444444");
    assert_deferred_untouched(f, DEFER_TENANT_CAP);
    assert_int_equal(f->w.last_claim.tenant_cap, 1);
    call_in_flight(f, OTHER_TENANT, "55555555-5555-4555-8555-555555555555");   /* another tenant's call */
    fakes_find(&f->w, "44444444-4444-4444-8444-444444444444")->lease_started_ms -= 61 * 1000;   /* lease over */
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_EXECUTED);
}

static void execute__global_cap_counts_every_tenant__deferred(void **state)
{
    struct fixture *f = *state;
    f->svc.global_cap = 1;
    f->svc.tenant_cap = 5;
    call_in_flight(f, OTHER_TENANT, "55555555-5555-4555-8555-555555555555");
    assert_deferred_untouched(f, DEFER_GLOBAL_CAP);
}

static void execute__voice_retry_after__answer_carries_it_and_no_claim_before_it(void **state)
{
    struct fixture *f = *state;
    f->w.voice_script[0] = VOICE_TRANSIENT;
    f->w.voice_status_script[0] = 429;
    f->w.voice_retry_after_script[0] = 30;
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_FAILED_RETRYABLE);
    assert_int_equal(f->last_retry_after_s, 30);
    assert_int_equal(fakes_find(&f->w, BOOKING)->next_attempt_ms, f->w.now_ms + 30 * 1000);
    f->w.now_ms += 10 * 1000;
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_DEFERRED);
    assert_int_equal(f->last_retry_after_s, 20);
    assert_int_equal(f->svc.deferred[DEFER_RETRY_AFTER], 1);
    assert_int_equal(f->w.voice_calls, 1);
    f->w.now_ms += 20 * 1000;
    assert_int_equal(run_once(f, TENANT, f->key), EXEC_EXECUTED);
    assert_int_equal(f->w.voice_calls, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(execute__first_delivery__calls_once_and_marks_executed, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__reached_after_max_lateness__expired_no_call_row_failed_for_good, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(execute__max_lateness_off__late_booking_executed, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__tenant_cap_reached__deferred_no_call_row_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__global_cap_counts_every_tenant__deferred, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__voice_retry_after__answer_carries_it_and_no_claim_before_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(execute__second_delivery__succeeds_without_calling, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__ten_concurrent_duplicates__exactly_one_call, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__other_tenant__not_found_and_no_call, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__cancelled_booking__noop, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__cancelled_task_status__noop, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__stale_key__noop, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__delivery_before_the_row_records_its_task__in_progress_then_executed,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            execute__replacement_delivered_before_the_row_moves_to_it__in_progress_old_task_stale, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__live_lease__in_progress_without_call, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__expired_lease__recalls_with_same_key, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__transient_failure__retryable_then_succeeds, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__permanent_failure__final_and_never_recalled, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__repository_down__unavailable_and_no_call, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__outcome_not_recorded__unavailable_then_lease_protects, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__overlong_fields__refused, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__transient_on_last_attempt__final, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__retry_delay__doubles_from_base, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__delivery_before_its_time__too_early_without_call_attempt_or_lease,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(execute__delivery_inside_the_tolerance__executed, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__lead_time__moves_the_allowed_moment_earlier, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__tolerance_zero__early_delivery_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__unmarked_run_of_the_local_dispatcher__never_refused_as_early, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(execute__final_states_before_their_time__answered_as_before, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
