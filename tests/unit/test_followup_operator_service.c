/*
 * Unit tests of the operator service (pure): what `followupd inspect` says followupd would do with a booking
 * and why, when `followupd retry` may re-drive one (never an executed booking), and what `followupd status`
 * flags for attention.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "features/deals_pipeline/services/followup_operator_service.h"

#define NOW 1800000000000LL /* 2027-01-15T08:00:00.000Z */
#define HOUR (3600LL * 1000)

static char *types[] = {"follow_up", "auto_follow_up"};

static struct config config(void)
{
    struct config c;
    memset(&c, 0, sizeof(c));
    c.followup_booking_types = (struct strlist){.items = types, .n = 2};
    c.followup_catchup_window_s = 3600;
    c.followup_sweep_interval_s = 30;
    c.followup_lead_time_s = 0;
    c.capture_mode = CAPTURE_NOTIFY;
    c.capture_notify_within_s = 900;
    c.capture_poll_interval_ms = 1000;
    return c;
}

static struct booking_detail detail(const char *task_status, int64_t scheduled_at_ms)
{
    struct booking_detail d;
    memset(&d, 0, sizeof(d));
    strcpy(d.b.booking_type, "follow_up");
    strcpy(d.b.status, "scheduled");
    strcpy(d.b.task_status, task_status);
    d.b.scheduled_at_ms = scheduled_at_ms;
    d.db_now_ms = NOW;
    return d;
}

static void expect(const struct booking_detail *d, enum followup_verdict v, const char *words)
{
    struct config c = config();
    struct followup_explanation e;
    followup_explain(&c, d, 60, &e);
    if (e.verdict != v || strstr(e.why, words) == NULL)
        fail_msg("verdict %s (%s), wanted %s with '%s'", followup_verdict_name(e.verdict), e.why,
                 followup_verdict_name(v), words);
}

static void explain__pending__window_horizon_and_capture_rules(void **state)
{
    (void)state;
    struct booking_detail d = detail("pending", NOW - 2 * HOUR);
    expect(&d, VERDICT_HISTORY, "before the catch-up window ([followup] catchup_window_s = 3600)");
    d = detail("pending", NOW + 40 * 24 * HOUR);
    expect(&d, VERDICT_BEYOND_HORIZON, "beyond the 720 h Cloud Tasks horizon: stays pending; scheduled by the "
                                       "sweep from 2027-01-25T09:00:00.000Z");
    d = detail("pending", NOW + 2 * HOUR);
    expect(&d, VERDICT_AWAITS_SWEEP, "due later than [capture] notify_within_s (900 s)");
    d = detail("pending", NOW - 60000);
    expect(&d, VERDICT_AWAITS_TASK, "waiting for its task (due 1m ago): the notification of its change or the next "
                                    "sweep");
    strcpy(d.b.booking_type, "meeting");
    expect(&d, VERDICT_NOT_FOLLOWUP, "not a follow-up type: booking_type 'meeting' is not in [followup] "
                                     "booking_types (follow_up,auto_follow_up)");
}

static void explain__task_states__executed_scheduled_moved_cancelled(void **state)
{
    (void)state;
    struct booking_detail d = detail("executed", NOW - HOUR);
    d.executed_at_ms = NOW - HOUR + 1000;
    expect(&d, VERDICT_EXECUTED, "executed at 2027-01-15T07:00:01.000Z");
    d = detail("scheduled", NOW + HOUR);
    d.b.task_scheduled_at_ms = NOW + HOUR;
    expect(&d, VERDICT_SCHEDULED, "its task is due at 2027-01-15T09:00:00.000Z");
    d.b.scheduled_at_ms = NOW + 2 * HOUR;
    expect(&d, VERDICT_RESCHEDULE, "moved from 2027-01-15T09:00:00.000Z to 2027-01-15T10:00:00.000Z");
    d.b.scheduled_at_ms = NOW + 40 * 24 * HOUR;
    expect(&d, VERDICT_WITHDRAW, "out of the schedulable window: its task is withdrawn");
    d = detail("scheduled", NOW + HOUR);
    d.b.task_scheduled_at_ms = NOW + HOUR;
    strcpy(d.b.status, "cancelled");
    expect(&d, VERDICT_CANCEL, "cancelled by the backend");
    d = detail("cancelled", NOW + HOUR);
    strcpy(d.b.task_name, "local/abc");
    expect(&d, VERDICT_DROP_TASK, "its task local/abc is deleted");
    d.b.task_name[0] = '\0';
    expect(&d, VERDICT_REOPEN, "re-opened under a new task name (generation 1)");
    strcpy(d.b.status, "cancelled");
    expect(&d, VERDICT_CANCELLED, "cancelled: no task and no call");
}

static void explain__in_progress_and_failed__lease_and_retries(void **state)
{
    (void)state;
    struct booking_detail d = detail("in_progress", NOW - 600000);
    d.b.task_scheduled_at_ms = d.b.scheduled_at_ms;
    d.execution_started_at_ms = NOW - 30000;
    expect(&d, VERDICT_IN_PROGRESS, "lease until 2027-01-15T08:00:30.000Z");
    d.execution_started_at_ms = NOW - 120000;
    expect(&d, VERDICT_LEASE_EXPIRED, "the next delivery of its task calls again with the same Idempotency-Key");
    strcpy(d.b.status, "cancelled");
    expect(&d, VERDICT_LEASE_EXPIRED, "it stays for an operator");
    d = detail("failed", NOW - 600000);
    d.b.task_scheduled_at_ms = d.b.scheduled_at_ms;
    d.next_attempt_at_ms = NOW + 10000;
    strcpy(d.last_execution_error, "voice agent: HTTP 503: busy");
    expect(&d, VERDICT_RETRYING, "failed (voice agent: HTTP 503: busy), retryable");
    d.next_attempt_at_ms = 0;
    expect(&d, VERDICT_FAILED_FINAL, "`followupd retry` re-drives it");
    d.b.task_scheduled_at_ms = 0; /* task creation failed for good: the planner would schedule it, nobody asks */
    expect(&d, VERDICT_FAILED_FINAL, "failed for good");
}

static void expect_retry(const struct booking_detail *d, bool allowed, const char *words)
{
    struct config c = config();
    char why[768];
    bool ok = followup_retry_allowed(&c, d, why, sizeof(why));
    if (ok != allowed || strstr(why, words) == NULL)
        fail_msg("retry %s (%s), wanted %s with '%s'", ok ? "allowed" : "refused", why, allowed ? "allowed" : "refused",
                 words);
}

static void retry_allowed__only_failed_for_good_inside_the_window(void **state)
{
    (void)state;
    struct booking_detail d = detail("failed", NOW - 600000);
    d.b.task_generation = 2;
    expect_retry(&d, true, "task generation 3 (a new task name)");
    d.next_attempt_at_ms = NOW;
    expect_retry(&d, false, "retryable");
    d = detail("executed", NOW - 600000);
    expect_retry(&d, false, "never calls a booking twice");
    const char *others[] = {"pending", "scheduled", "in_progress", "cancelled"};
    for (int i = 0; i < 4; i++) {
        d = detail(others[i], NOW - 600000);
        expect_retry(&d, false, "not 'failed'");
    }
    d = detail("failed", NOW - 2 * HOUR);
    expect_retry(&d, false, "before the catch-up window");
    d = detail("failed", NOW);
    strcpy(d.b.status, "cancelled");
    expect_retry(&d, false, "cancelled by the backend");
    d = detail("failed", NOW);
    strcpy(d.b.booking_type, "meeting");
    expect_retry(&d, false, "not a follow-up type");
}

static void state_attention__leases_recent_failures_overdue__flagged(void **state)
{
    (void)state;
    char reasons[ATTENTION_MAX][ATTENTION_LEN];
    struct booking_state st = {.db_now_ms = NOW, .failed_final = 7, .oldest_due_ms = NOW - 299000};
    assert_int_equal(followup_state_attention(&st, reasons), 0); /* old failures, 299 s due: fine */
    st.lease_expired = 1;
    st.failed_final_recent = 2;
    st.oldest_due_ms = NOW - 301000;
    assert_int_equal(followup_state_attention(&st, reasons), 3);
    assert_non_null(strstr(reasons[0], "1 booking(s) in progress past the lease"));
    assert_non_null(strstr(reasons[1], "2 booking(s) failed for good inside the catch-up window"));
    assert_non_null(strstr(reasons[2], "due for 5m 1s without a call"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(explain__pending__window_horizon_and_capture_rules),
        cmocka_unit_test(explain__task_states__executed_scheduled_moved_cancelled),
        cmocka_unit_test(explain__in_progress_and_failed__lease_and_retries),
        cmocka_unit_test(retry_allowed__only_failed_for_good_inside_the_window),
        cmocka_unit_test(state_attention__leases_recent_failures_overdue__flagged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
