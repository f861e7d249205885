/*
 * Unit tests of the scheduler service: schedule time, keys, payload, 409,
 * transient/permanent errors, horizon, coalescing and backpressure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "features/deals_pipeline/services/followup_keys.h"
#include "features/deals_pipeline/services/followup_scheduler_service.h"
#include "support/ports_fakes.h"

#define SCHEMA "tenant_schema"
#define TENANT "11111111-1111-4111-8111-111111111111"
#define BOOKING "33333333-3333-4333-8333-333333333333"

struct fixture {
    struct fake_world w;
    struct logger log;
    struct config cfg;
    struct followup_scheduler s;
};

static char *types[] = {"follow_up", "auto_follow_up"};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    fakes_init(&f->w);
    logger_init(&f->log, LOG_LEVEL_ERROR, open("/dev/null", O_WRONLY));
    f->cfg.followup_booking_types = (struct strlist){.items = types, .n = 2};
    f->cfg.followup_max_inflight = 4;
    f->cfg.followup_lead_time_s = 0;
    f->cfg.http_public_url = "https://followupd.example.com/";
    assert_int_equal(followup_scheduler_init(&f->s, &f->cfg, &f->w.repo, &f->w.queue, &f->w.clock, &f->log, 100), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    fakes_drain(&f->w);
    followup_scheduler_free(&f->s);
    close(f->log.fd);
    free(f);
    return 0;
}

static struct fake_row *add(struct fixture *f, const char *id, const char *type, int64_t offset_ms)
{
    return fakes_add_booking(&f->w, SCHEMA, TENANT, id, type, f->w.now_ms + offset_ms);
}

static void schedule_time__future_past_and_lead__expected(void **state)
{
    (void)state;
    assert_int_equal(followup_schedule_time_ms(10000000, 0, 5000), 10000000);
    assert_int_equal(followup_schedule_time_ms(10000000, 60, 5000), 10000000 - 60000);
    assert_int_equal(followup_schedule_time_ms(1000, 0, 5000), 5000);      /* past → now */
    assert_int_equal(followup_schedule_time_ms(64000, 60, 5000), 5000);    /* lead pushes into the past */
}

static void iso_time__any_tz__utc_millis_z(void **state)
{
    (void)state;
    char a[ISO_TIME_LEN], b[ISO_TIME_LEN];
    setenv("TZ", "America/New_York", 1);
    tzset();
    assert_int_equal(followup_iso_time(1773554400123LL, a), 0);   /* 2026-03-15T06:00:00.123Z, after US DST switch */
    setenv("TZ", "Asia/Kolkata", 1);
    tzset();
    assert_int_equal(followup_iso_time(1773554400123LL, b), 0);
    unsetenv("TZ");
    tzset();
    assert_string_equal(a, "2026-03-15T06:00:00.123Z");
    assert_string_equal(a, b);
    assert_int_equal(followup_iso_time(-1, a), 0);
    assert_string_equal(a, "1969-12-31T23:59:59.999Z");
}

static void keys__same_input__deterministic_and_well_formed(void **state)
{
    (void)state;
    char k1[IDEMPOTENCY_KEY_LEN], k2[IDEMPOTENCY_KEY_LEN], t1[TASK_ID_LEN], t2[TASK_ID_LEN];
    assert_int_equal(followup_idempotency_key(TENANT, BOOKING, 1795881600000LL, k1, sizeof(k1)), 0);
    assert_int_equal(followup_idempotency_key(TENANT, BOOKING, 1795881600000LL, k2, sizeof(k2)), 0);
    assert_string_equal(k1, "followup:" TENANT ":" BOOKING ":2026-11-28T16:00:00.000Z");
    assert_int_equal(strlen(k1), 107);
    assert_int_equal(followup_task_id(k1, 0, t1), 0);
    assert_int_equal(followup_task_id(k2, 0, t2), 0);
    assert_string_equal(t1, t2);
    assert_int_equal(strlen(t1), 64);
    assert_int_equal(strspn(t1, "0123456789abcdef"), 64);
    assert_int_equal(followup_idempotency_key(TENANT, BOOKING, 1795881600001LL, k2, sizeof(k2)), 0);
    assert_int_equal(followup_task_id(k2, 0, t2), 0);
    assert_string_not_equal(t1, t2);
}

static void pass__future_booking__creates_task_and_marks_scheduled(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = add(f, BOOKING, "follow_up", 3600000);
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    assert_int_equal(f->w.creates, 0);   /* nothing happens synchronously */
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 1);
    assert_int_equal(f->w.last_create.schedule_time_ms, r->b.scheduled_at_ms);
    char key[IDEMPOTENCY_KEY_LEN], tid[TASK_ID_LEN];
    followup_idempotency_key(TENANT, BOOKING, r->b.scheduled_at_ms, key, sizeof(key));
    followup_task_id(key, 0, tid);
    assert_string_equal(f->w.last_create.task_id, tid);
    assert_string_equal(r->b.task_status, "scheduled");
    assert_string_equal(r->b.idempotency_key, key);
    assert_non_null(strstr(r->b.task_name, tid));
    assert_int_equal(r->b.task_scheduled_at_ms, r->b.scheduled_at_ms);
    assert_true(followup_scheduler_idle(&f->s));
}

static void pass__past_booking_with_lead__schedules_now(void **state)
{
    struct fixture *f = *state;
    f->cfg.followup_lead_time_s = 120;
    add(f, BOOKING, "follow_up", 60000);
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_int_equal(f->w.last_create.schedule_time_ms, f->w.now_ms);
}

static void payload__booking__camel_case_ids_only(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = add(f, BOOKING, "follow_up", 3600000);
    strcpy(r->b.assigned_user_id, "44444444-4444-4444-8444-444444444444");
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    json_error_t err;
    json_t *o = json_loads(f->w.last_create_body, 0, &err);
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 7);
    assert_string_equal(json_string_value(json_object_get(o, "tenantId")), TENANT);
    assert_string_equal(json_string_value(json_object_get(o, "bookingId")), BOOKING);
    assert_non_null(json_string_value(json_object_get(o, "leadId")));
    assert_string_equal(json_string_value(json_object_get(o, "assignedUserId")), "44444444-4444-4444-8444-444444444444");
    assert_string_equal(json_string_value(json_object_get(o, "schema")), SCHEMA);
    assert_string_equal(json_string_value(json_object_get(o, "scheduledAt")), "2026-11-28T17:00:00.000Z");
    assert_string_equal(json_string_value(json_object_get(o, "idempotencyKey")), r->b.idempotency_key);
    json_decref(o);
    char url[256];
    assert_int_equal(followup_callback_url("https://x.example/", BOOKING, url, sizeof(url)), 0);
    assert_string_equal(url, "https://x.example/api/deals-pipeline/bookings/" BOOKING "/execute-followup");
}

static void pass__already_exists__counts_as_created(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = add(f, BOOKING, "follow_up", 3600000);
    f->w.create_script[0] = TQ_ALREADY_EXISTS;
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_string_equal(r->b.task_status, "scheduled");
    assert_int_equal(f->s.stats.already_existed, 1);
}

static void pass__transient_then_ok__retried_with_backoff(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = add(f, BOOKING, "follow_up", 3600000);
    f->w.create_script[0] = TQ_TRANSIENT;
    f->w.create_script[1] = TQ_TRANSIENT;
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 1);
    assert_int_equal(fakes_armed_timers(&f->w), 1);   /* waiting, not spinning */
    assert_string_equal(r->b.task_status, "pending");
    fakes_advance(&f->w, 60000);
    assert_int_equal(f->w.creates, 2);
    fakes_advance(&f->w, 60000);
    assert_int_equal(f->w.creates, 3);
    assert_string_equal(r->b.task_status, "scheduled");
}

static void pass__transient_forever__gives_up_and_stays_pending(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = add(f, BOOKING, "follow_up", 3600000);
    for (int i = 0; i < FAKE_MAX_CALLS; i++) f->w.create_script[i] = TQ_TRANSIENT;
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    for (int i = 0; i < 10; i++) fakes_advance(&f->w, 60000);
    assert_int_equal(f->w.creates, (int)f->s.max_retries + 1);
    assert_string_equal(r->b.task_status, "pending");
    assert_int_equal(f->s.stats.gave_up, 1);
    assert_true(followup_scheduler_idle(&f->s));
}

static void pass__permanent_error__marks_failed(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = add(f, BOOKING, "follow_up", 3600000);
    f->w.create_script[0] = TQ_PERMANENT;
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 1);
    assert_string_equal(r->b.task_status, "failed");
    assert_non_null(strstr(r->last_error, "rejected"));
}

static void pass__not_a_follow_up__no_task_and_row_untouched(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = add(f, BOOKING, "meeting", 3600000);
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 0);
    assert_string_equal(r->b.task_status, "pending");
}

static void pass__cancelled_or_already_scheduled__no_task(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = add(f, BOOKING, "follow_up", 3600000);
    strcpy(r->b.status, "cancelled");
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_string_equal(r->b.task_status, "cancelled");
    strcpy(r->b.task_status, "scheduled");
    strcpy(r->b.status, "scheduled");
    r->b.task_scheduled_at_ms = r->b.scheduled_at_ms;
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 0);
}

static void pass__beyond_horizon__stays_pending(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = add(f, BOOKING, "follow_up", 800LL * 3600 * 1000);
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 0);
    assert_string_equal(r->b.task_status, "pending");
    assert_int_equal(f->s.stats.beyond_horizon, 1);
}

static void enqueue__same_booking_thrice__one_pass(void **state)
{
    struct fixture *f = *state;
    add(f, BOOKING, "follow_up", 3600000);
    for (int i = 0; i < 3; i++) assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 1);
    assert_int_equal(f->s.stats.coalesced, 2);
}

static void enqueue__burst__bounded_inflight_and_nothing_lost(void **state)
{
    struct fixture *f = *state;
    char ids[12][UUID_STR_LEN];
    for (int i = 0; i < 12; i++) {
        snprintf(ids[i], sizeof(ids[i]), "55555555-5555-4555-8555-%012d", i);
        add(f, ids[i], "follow_up", 3600000 + i);
    }
    for (int i = 0; i < 12; i++) assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, ids[i]), 0);
    assert_int_equal(f->w.loads, 4);   /* max_inflight */
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 12);
    for (int i = 0; i < 12; i++) assert_string_equal(fakes_find(&f->w, ids[i])->b.task_status, "scheduled");
}

static void enqueue__queue_full__dropped_and_counted(void **state)
{
    struct fixture *f = *state;
    followup_scheduler_free(&f->s);
    f->cfg.followup_max_inflight = 1;
    assert_int_equal(followup_scheduler_init(&f->s, &f->cfg, &f->w.repo, &f->w.queue, &f->w.clock, &f->log, 2), 0);
    const char *ids[] = {"66666666-6666-4666-8666-000000000001", "66666666-6666-4666-8666-000000000002",
                         "66666666-6666-4666-8666-000000000003", "66666666-6666-4666-8666-000000000004"};
    for (int i = 0; i < 4; i++) add(f, ids[i], "follow_up", 3600000);
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, ids[0]), 0);   /* in flight */
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, ids[1]), 0);
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, ids[2]), 0);
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, ids[3]), -1);  /* full */
    assert_int_equal(f->s.stats.dropped_overflow, 1);
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 3);
}

static void enqueue__invalid_ids__rejected(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, "not-a-uuid", BOOKING), -1);
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, "'; DROP TABLE x; --"), -1);
    fakes_drain(&f->w);
    assert_int_equal(f->w.loads, 0);
}

static struct fake_row *scheduled_row(struct fixture *f)
{
    struct fake_row *r = add(f, BOOKING, "follow_up", 3600000);
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_string_equal(r->b.task_status, "scheduled");
    return r;
}

static void plan__each_row_state__expected(void **state)
{
    struct fixture *f = *state;
    struct booking b = {.booking_type = "follow_up", .status = "scheduled", .task_status = "pending",
                        .scheduled_at_ms = 1000};
    assert_int_equal(followup_plan_for(&f->cfg, &b), PLAN_SCHEDULE);
    strcpy(b.booking_type, "meeting");
    assert_int_equal(followup_plan_for(&f->cfg, &b), PLAN_NOTHING);   /* never ours: left untouched */
    strcpy(b.booking_type, "follow_up");
    strcpy(b.status, "cancelled");
    assert_int_equal(followup_plan_for(&f->cfg, &b), PLAN_CANCEL);
    strcpy(b.status, "scheduled");
    strcpy(b.task_status, "scheduled");
    b.task_scheduled_at_ms = 1000;
    assert_int_equal(followup_plan_for(&f->cfg, &b), PLAN_NOTHING);
    b.task_scheduled_at_ms = 2000;
    assert_int_equal(followup_plan_for(&f->cfg, &b), PLAN_RESCHEDULE);
    strcpy(b.status, "cancelled");
    assert_int_equal(followup_plan_for(&f->cfg, &b), PLAN_CANCEL);
    strcpy(b.task_status, "cancelled");
    strcpy(b.task_name, "projects/p/locations/l/queues/q/tasks/x");
    assert_int_equal(followup_plan_for(&f->cfg, &b), PLAN_DROP_TASK);
    b.task_name[0] = '\0';
    assert_int_equal(followup_plan_for(&f->cfg, &b), PLAN_NOTHING);
    strcpy(b.status, "scheduled");
    assert_int_equal(followup_plan_for(&f->cfg, &b), PLAN_REOPEN);
    strcpy(b.task_status, "executed");
    assert_int_equal(followup_plan_for(&f->cfg, &b), PLAN_NOTHING);
    strcpy(b.task_status, "in_progress");
    strcpy(b.status, "cancelled");
    assert_int_equal(followup_plan_for(&f->cfg, &b), PLAN_NOTHING);
}

static void cancel__scheduled_booking__row_cancelled_task_deleted_name_cleared(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = scheduled_row(f);
    strcpy(r->b.status, "cancelled");
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_string_equal(r->b.task_status, "cancelled");
    assert_int_equal(f->w.removes, 1);
    assert_string_equal(r->b.task_name, "");
}

static void cancel__task_already_gone__still_cleared(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = scheduled_row(f);
    f->w.remove_result = TQ_NOT_FOUND;
    strcpy(r->b.status, "cancelled");
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_string_equal(r->b.task_status, "cancelled");
    assert_string_equal(r->b.task_name, "");
}

static void cancel__delete_fails__name_kept_for_the_sweep(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = scheduled_row(f);
    f->w.remove_result = TQ_TRANSIENT;
    strcpy(r->b.status, "cancelled");
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_string_equal(r->b.task_status, "cancelled");
    assert_string_not_equal(r->b.task_name, "");
    f->w.remove_result = TQ_OK;
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);   /* sweep finds it again */
    fakes_drain(&f->w);
    assert_string_equal(r->b.task_name, "");
}

static void uncancel__after_task_deleted__scheduled_again_with_new_task_id(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = scheduled_row(f);
    char first_id[128];
    strcpy(first_id, f->w.last_create_id);
    strcpy(r->b.status, "cancelled");
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    strcpy(r->b.status, "scheduled");
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_string_equal(r->b.task_status, "scheduled");
    assert_int_equal(f->w.creates, 2);
    assert_string_not_equal(f->w.last_create_id, first_id);   /* Cloud Tasks reserves deleted names */
    assert_int_equal(r->b.task_generation, 1);
}

static void reschedule__scheduled_at_moved__new_task_then_row_then_old_deleted(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = scheduled_row(f);
    char old_name[TASK_NAME_LEN], old_key[IDEMPOTENCY_KEY_LEN];
    strcpy(old_name, r->b.task_name);
    strcpy(old_key, r->b.idempotency_key);
    r->b.scheduled_at_ms += 7200000;
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 2);
    assert_int_equal(f->w.removes, 1);
    assert_string_equal(f->w.last_removed, old_name);
    assert_string_not_equal(r->b.task_name, old_name);
    assert_string_not_equal(r->b.idempotency_key, old_key);
    assert_int_equal(r->b.task_scheduled_at_ms, r->b.scheduled_at_ms);
    assert_int_equal(f->w.last_create.schedule_time_ms, r->b.scheduled_at_ms);
    assert_string_equal(r->b.task_status, "scheduled");
}

static void reschedule__back_to_earlier_time__never_reuses_a_task_id(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = scheduled_row(f);
    char first_id[128];
    strcpy(first_id, f->w.last_create_id);
    int64_t first = r->b.scheduled_at_ms;
    r->b.scheduled_at_ms = first + 60000;
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    r->b.scheduled_at_ms = first;
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 3);
    assert_string_not_equal(f->w.last_create_id, first_id);
}

static void type_change__no_longer_follow_up__cancelled(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = scheduled_row(f);
    strcpy(r->b.booking_type, "meeting");
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_string_equal(r->b.task_status, "cancelled");
    assert_int_equal(f->w.removes, 1);
}

static void executed_booking__cancel_or_reschedule__untouched(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = scheduled_row(f);
    strcpy(r->b.task_status, "executed");
    strcpy(r->b.status, "cancelled");
    r->b.scheduled_at_ms += 1000;
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_string_equal(r->b.task_status, "executed");
    assert_int_equal(f->w.removes, 0);
    assert_int_equal(f->w.creates, 1);
}

struct recorded_log {
    int n;
    char booking_id[UUID_STR_LEN];
    char key[IDEMPOTENCY_KEY_LEN];
    int64_t due_ms;
};

static void record_task(void *arg, const struct recorded_task *t)
{
    struct recorded_log *log = arg;
    log->n++;
    snprintf(log->booking_id, sizeof(log->booking_id), "%s", t->booking_id);
    snprintf(log->key, sizeof(log->key), "%s", t->idempotency_key);
    log->due_ms = t->due_ms;
}

static void recorded_hook__scheduled_and_rescheduled__reported_with_key_and_due_time(void **state)
{
    struct fixture *f = *state;
    struct recorded_log seen = {0};
    f->s.on_task_recorded = record_task;
    f->s.on_task_recorded_arg = &seen;
    f->cfg.followup_lead_time_s = 60;
    struct fake_row *r = add(f, BOOKING, "follow_up", 3600000);
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.booking_id, BOOKING);
    assert_string_equal(seen.key, r->b.idempotency_key);
    assert_int_equal(seen.due_ms, r->b.scheduled_at_ms - 60000);
    /* moved to within the lead time: the replacement is due now */
    r->b.scheduled_at_ms = f->w.now_ms + 1000;
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.key, r->b.idempotency_key);
    assert_int_equal(seen.due_ms, f->w.now_ms);
    /* nothing to do (up to date), or not a follow-up: nothing reported */
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    add(f, "44444444-4444-4444-8444-444444444444", "meeting", 0);
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, "44444444-4444-4444-8444-444444444444"), 0);
    fakes_drain(&f->w);
    assert_int_equal(seen.n, 2);
}

static void recorded_hook__row_moved_on_before_the_mark__not_reported(void **state)
{
    struct fixture *f = *state;
    struct recorded_log seen = {0};
    f->s.on_task_recorded = record_task;
    f->s.on_task_recorded_arg = &seen;
    struct fake_row *r = add(f, BOOKING, "follow_up", 0);
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    strcpy(r->b.task_status, "cancelled");   /* changed between the load and the conditional mark */
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 1);
    assert_int_equal(seen.n, 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* ---- DELETE notifications: a hint, verified before anything is deleted ---- */

struct deleted_task {
    char key[IDEMPOTENCY_KEY_LEN];
    char name[TASK_NAME_LEN];
};

/* The key and full task name followupd made for (tenant, booking) at `at_ms`, generation `gen`. */
static struct deleted_task task_made_for(struct fixture *f, const char *tenant, const char *booking, int64_t at_ms,
                                         int gen)
{
    struct deleted_task t;
    char id[TASK_ID_LEN];
    assert_int_equal(followup_idempotency_key(tenant, booking, at_ms, t.key, sizeof(t.key)), 0);
    assert_int_equal(followup_task_id(t.key, gen, id), 0);
    assert_int_equal(f->w.queue.task_name(f->w.queue.impl, id, t.name, sizeof(t.name)), 0);
    return t;
}

static int forget(struct fixture *f, const char *tenant, const char *booking, const char *name, const char *key,
                  int gen, enum notify_rejection *why)
{
    struct deleted_booking d = {.schema = SCHEMA, .tenant_id = tenant, .booking_id = booking, .task_name = name,
                                .idempotency_key = key, .task_generation = gen};
    int rc = followup_scheduler_forget_deleted(&f->s, &d, why);
    fakes_drain(&f->w);
    return rc;
}

static void forget_deleted__own_name_and_row_gone__task_deleted(void **state)
{
    struct fixture *f = *state;
    struct deleted_task t = task_made_for(f, TENANT, BOOKING, f->w.now_ms + 3600000, 2);
    enum notify_rejection why;
    assert_int_equal(forget(f, TENANT, BOOKING, t.name, t.key, 2, &why), 0);
    assert_int_equal(f->w.loads, 1);   /* (b) confirmed by a read first */
    assert_int_equal(f->w.removes, 1);
    assert_string_equal(f->w.last_removed, t.name);
    assert_int_equal(f->s.stats.tasks_deleted, 1);
}

static void forget_deleted__row_still_there__nothing_deleted_counted(void **state)
{
    struct fixture *f = *state;
    struct fake_row *r = add(f, BOOKING, "follow_up", 3600000);
    struct deleted_task t = task_made_for(f, TENANT, BOOKING, r->b.scheduled_at_ms, 0);
    enum notify_rejection why;
    assert_int_equal(forget(f, TENANT, BOOKING, t.name, t.key, 0, &why), 0);
    assert_int_equal(f->w.removes, 0);
    assert_int_equal(f->s.stats.rejected[REJECT_BOOKING_EXISTS], 1);
}

static void forget_deleted__database_down__nothing_deleted_counted_unconfirmed(void **state)
{
    struct fixture *f = *state;
    struct deleted_task t = task_made_for(f, TENANT, BOOKING, f->w.now_ms, 0);
    f->w.repo_down = true;
    enum notify_rejection why;
    assert_int_equal(forget(f, TENANT, BOOKING, t.name, t.key, 0, &why), 0);
    assert_int_equal(f->w.removes, 0);
    assert_int_equal(f->s.stats.rejected[REJECT_UNCONFIRMED], 1);
}

static void forget_deleted__names_that_are_not_ours__refused_without_a_read(void **state)
{
    struct fixture *f = *state;
    static const char OTHER[] = "44444444-4444-4444-8444-444444444444";
    struct deleted_task own = task_made_for(f, TENANT, BOOKING, f->w.now_ms, 0);
    struct deleted_task live = task_made_for(f, TENANT, OTHER, f->w.now_ms, 0);   /* another booking's task */
    char other_queue[TASK_NAME_LEN], suffixed[TASK_NAME_LEN];
    snprintf(other_queue, sizeof(other_queue), "projects/p/locations/l/queues/other/tasks/%s",
             strrchr(own.name, '/') + 1);
    snprintf(suffixed, sizeof(suffixed), "%sx", own.name);
    struct { const char *name, *key; int gen; enum notify_rejection why; } cases[] = {
        {live.name, own.key, 0, REJECT_FOREIGN_TASK},      /* a live booking's name, our key: mismatch */
        {live.name, live.key, 0, REJECT_FOREIGN_TASK},     /* a consistent pair, but for another booking */
        {other_queue, own.key, 0, REJECT_FOREIGN_TASK},    /* our id under another queue */
        {suffixed, own.key, 0, REJECT_FOREIGN_TASK},
        {own.name, own.key, 1, REJECT_FOREIGN_TASK},       /* wrong generation */
        {own.name, "followup:x", 0, REJECT_FOREIGN_TASK},
        {own.name, "", 0, REJECT_UNVERIFIABLE},            /* a pre-006 trigger's payload: no key */
        {own.name, NULL, 0, REJECT_UNVERIFIABLE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum notify_rejection why = REJECT_N;
        assert_int_equal(forget(f, TENANT, BOOKING, cases[i].name, cases[i].key, cases[i].gen, &why), -1);
        assert_int_equal(why, cases[i].why);
    }
    assert_int_equal(f->w.loads, 0);
    assert_int_equal(f->w.removes, 0);
}

static void key_names_booking__canonical_key_only(void **state)
{
    (void)state;
    static const char OTHER[] = "44444444-4444-4444-8444-444444444444";
    const char *k = "followup:" TENANT ":" BOOKING ":2026-11-28T16:00:00.000Z";
    assert_true(followup_key_names_booking(k, TENANT, BOOKING));
    assert_false(followup_key_names_booking(k, TENANT, OTHER));
    assert_false(followup_key_names_booking(k, OTHER, BOOKING));
    assert_false(followup_key_names_booking("followup:" TENANT ":" BOOKING ":2026-11-28T16:00:00Z", TENANT, BOOKING));
    assert_false(
        followup_key_names_booking("followup:" TENANT ":" BOOKING ":2026-11-28T17:00:00.000+01:00", TENANT, BOOKING));
    assert_false(followup_key_names_booking("x" "followup:" TENANT ":" BOOKING ":2026-11-28T16:00:00.000Z", TENANT,
                                            BOOKING));
    assert_false(followup_key_names_booking(NULL, TENANT, BOOKING));
}

/* catch-up window 3 h, max lateness 1 h: a pending booking 2 h late gets no task; the row ends failed "expired". */
static void late_booking__past_max_lateness__no_task_row_failed_expired(void **state)
{
    struct fixture *f = *state;
    f->cfg.followup_catchup_window_s = 3 * 3600;
    f->cfg.followup_max_lateness_s = 3600;
    struct fake_row *r = fakes_add_booking(&f->w, SCHEMA, TENANT, BOOKING, "follow_up", f->w.now_ms - 2 * 3600 * 1000LL);
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, BOOKING), 0);
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 0);
    assert_int_equal(f->w.expiries, 1);
    assert_string_equal(r->b.task_status, "failed");
    assert_string_equal(r->last_error, "expired: 7200 s after scheduled_at, past followup.max_lateness_s = 3600; no task");
    assert_int_equal(f->s.stats.expired, 1);
    f->cfg.followup_max_lateness_s = 0;   /* off: the same kind of booking is scheduled */
    struct fake_row *other = fakes_add_booking(&f->w, SCHEMA, TENANT, "44444444-4444-4444-8444-444444444444",
                                               "follow_up", f->w.now_ms - 2 * 3600 * 1000LL);
    assert_int_equal(followup_scheduler_enqueue(&f->s, SCHEMA, TENANT, other->b.id), 0);
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 1);
    assert_string_equal(other->b.task_status, "scheduled");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(schedule_time__future_past_and_lead__expected),
        cmocka_unit_test_setup_teardown(late_booking__past_max_lateness__no_task_row_failed_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(forget_deleted__own_name_and_row_gone__task_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(forget_deleted__row_still_there__nothing_deleted_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(forget_deleted__database_down__nothing_deleted_counted_unconfirmed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(forget_deleted__names_that_are_not_ours__refused_without_a_read, setup,
                                        teardown),
        cmocka_unit_test(key_names_booking__canonical_key_only),
        cmocka_unit_test(iso_time__any_tz__utc_millis_z),
        cmocka_unit_test(keys__same_input__deterministic_and_well_formed),
        T(pass__future_booking__creates_task_and_marks_scheduled),
        T(pass__past_booking_with_lead__schedules_now),
        T(payload__booking__camel_case_ids_only),
        T(pass__already_exists__counts_as_created),
        T(pass__transient_then_ok__retried_with_backoff),
        T(pass__transient_forever__gives_up_and_stays_pending),
        T(pass__permanent_error__marks_failed),
        T(pass__not_a_follow_up__no_task_and_row_untouched),
        T(pass__cancelled_or_already_scheduled__no_task),
        T(pass__beyond_horizon__stays_pending),
        T(enqueue__same_booking_thrice__one_pass),
        T(enqueue__burst__bounded_inflight_and_nothing_lost),
        T(enqueue__queue_full__dropped_and_counted),
        T(enqueue__invalid_ids__rejected),
        T(plan__each_row_state__expected),
        T(cancel__scheduled_booking__row_cancelled_task_deleted_name_cleared),
        T(cancel__task_already_gone__still_cleared),
        T(cancel__delete_fails__name_kept_for_the_sweep),
        T(uncancel__after_task_deleted__scheduled_again_with_new_task_id),
        T(reschedule__scheduled_at_moved__new_task_then_row_then_old_deleted),
        T(reschedule__back_to_earlier_time__never_reuses_a_task_id),
        T(type_change__no_longer_follow_up__cancelled),
        T(executed_booking__cancel_or_reschedule__untouched),
        T(recorded_hook__scheduled_and_rescheduled__reported_with_key_and_due_time),
        T(recorded_hook__row_moved_on_before_the_mark__not_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
