/*
 * Unit tests of work ownership among replicas: the booking partition function, the rebalance arithmetic and
 * pg_locks parsing of shared/db/db_ownership, and how the services honour an ownership port — the
 * notifications controller leaves other replicas' bookings alone and parks their DELETE hints, the scheduler
 * drops waiting work of given-up partitions and reports the partitions it is still busy in, the sweep reads
 * only owned partitions.
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

#include "features/deals_pipeline/controllers/notifications_controller.h"
#include "features/deals_pipeline/services/followup_keys.h"
#include "features/deals_pipeline/services/followup_scheduler_service.h"
#include "features/deals_pipeline/services/followup_sweep_service.h"
#include "shared/db/db_notify.h"
#include "shared/db/db_ownership.h"
#include "support/ports_fakes.h"

#define SCHEMA "tenant_a"
#define TENANT "11111111-1111-4111-8111-111111111111"
#define PARTITIONS 4
/* With 4 partitions, a booking's partition is its first 8 hex digits modulo 4. */
#define IN_P0 "00000000-3333-4333-8333-333333333333"
#define IN_P1 "00000001-3333-4333-8333-333333333333"
#define IN_P2 "00000002-3333-4333-8333-333333333333"
#define IN_P3 "ffffffff-3333-4333-8333-333333333333"

/* ---- the partition function ---- */

static int reference_partition(const char *uuid, int partitions)
{
    char hex[9];
    memcpy(hex, uuid, 8);
    hex[8] = '\0';
    return (int)(strtoul(hex, NULL, 16) % (unsigned long)partitions);
}

static void booking_partition__first_four_bytes_unsigned__modulo_count(void **state)
{
    (void)state;
    static const char *const ids[] = {
        "00000000-0000-4000-8000-000000000000", "ffffffff-ffff-4fff-8fff-ffffffffffff",
        "80000000-0000-4000-8000-000000000000", "7fffffff-0000-4000-8000-000000000000",
        "ABCDEF01-2345-4678-9ABC-DEF012345678", "abcdef01-2345-4678-9abc-def012345678",
        "12345678-9abc-4def-8123-456789abcdef", "deadbeef-0000-4000-8000-000000000001"};
    static const int counts[] = {1, 2, 3, 7, 64, 1000, 1024};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++)
            assert_int_equal(followup_booking_partition(ids[i], counts[k]), reference_partition(ids[i], counts[k]));
    assert_int_equal(followup_booking_partition(IN_P3, PARTITIONS), 3);   /* 0xffffffff: unsigned, not -1 */
    assert_int_equal(followup_booking_partition("ABCDEF01-2345-4678-9ABC-DEF012345678", 64),
                     followup_booking_partition("abcdef01-2345-4678-9abc-def012345678", 64));
}

static void booking_partition__not_a_uuid_or_count_out_of_range__minus_one(void **state)
{
    (void)state;
    assert_int_equal(followup_booking_partition("not-a-uuid", 64), -1);
    assert_int_equal(followup_booking_partition("0000000g-0000-4000-8000-000000000000", 64), -1);
    assert_int_equal(followup_booking_partition(NULL, 64), -1);
    assert_int_equal(followup_booking_partition(IN_P1, 0), -1);
    assert_int_equal(followup_booking_partition(IN_P1, FOLLOWUP_PARTITIONS_MAX + 1), -1);
}

/* ---- rebalance arithmetic and pg_locks parsing ---- */

static void ownership_target__members__ceiling_of_the_share(void **state)
{
    (void)state;
    assert_int_equal(db_ownership_target(64, 1), 64);
    assert_int_equal(db_ownership_target(64, 2), 32);
    assert_int_equal(db_ownership_target(64, 3), 22);   /* 22 + 22 + 20: every partition has an owner */
    assert_int_equal(db_ownership_target(64, 4), 16);
    assert_int_equal(db_ownership_target(64, 100), 1);
    assert_int_equal(db_ownership_target(64, 0), 64);   /* unknown members: as if alone */
    for (int members = 1; members <= 70; members++)
        assert_true(db_ownership_target(64, members) * members >= 64);
}

static void ownership_parse_int_array__pg_text__values_in_range(void **state)
{
    (void)state;
    int v[8];
    assert_int_equal(db_ownership_parse_int_array("{3,0,63}", 64, v, 8), 3);
    assert_int_equal(v[0], 3);
    assert_int_equal(v[1], 0);
    assert_int_equal(v[2], 63);
    assert_int_equal(db_ownership_parse_int_array("", 64, v, 8), 0);     /* array_agg of no row: NULL */
    assert_int_equal(db_ownership_parse_int_array(NULL, 64, v, 8), 0);
    assert_int_equal(db_ownership_parse_int_array("{}", 64, v, 8), 0);
    assert_int_equal(db_ownership_parse_int_array("{5,64,-1,7}", 64, v, 8), 2);   /* out of range: dropped */
    assert_int_equal(v[1], 7);
    assert_int_equal(db_ownership_parse_int_array("1,2", 64, v, 8), -1);
    assert_int_equal(db_ownership_parse_int_array("{1,x}", 64, v, 8), -1);
    assert_int_equal(db_ownership_parse_int_array("{1,2", 64, v, 8), -1);
}

static void ownership_lock_class__group__stable_positive_and_distinct(void **state)
{
    (void)state;
    int32_t a = db_ownership_lock_class("64/tenant_a,tenant_b");
    assert_int_equal(a, db_ownership_lock_class("64/tenant_a,tenant_b"));
    assert_true(a >= 0);
    assert_int_not_equal(a, db_ownership_lock_class("32/tenant_a,tenant_b"));
    assert_int_not_equal(a, db_ownership_lock_class("64/tenant_a"));
}

/* ---- the services with an ownership port ---- */

struct fixture {
    struct fake_world w;
    struct logger lg;
    struct config cfg;
    char *schemas[1];
    char channel[64];
    struct followup_scheduler sched;
    struct followup_sweep sweep;
};

static char *types[] = {"follow_up"};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->schemas[0] = SCHEMA;
    f->cfg.db_schemas = (struct strlist){.items = f->schemas, .n = 1};
    f->cfg.followup_booking_types = (struct strlist){.items = types, .n = 1};
    f->cfg.followup_max_inflight = 1;
    f->cfg.followup_catchup_window_s = 3600;
    f->cfg.followup_sweep_interval_s = 30;
    f->cfg.http_public_url = "https://followupd.example.com";
    logger_init(&f->lg, LOG_LEVEL_ERROR, open("/dev/null", O_WRONLY | O_CLOEXEC));
    assert_int_equal(db_channel_for_schema(SCHEMA, f->channel), 0);
    fakes_init(&f->w);
    fakes_own(&f->w, PARTITIONS, (const int[]){0, 1}, 2);
    assert_int_equal(followup_scheduler_init(&f->sched, &f->cfg, &f->w.repo, &f->w.queue, &f->w.clock, &f->lg, 100),
                     0);
    assert_int_equal(followup_scheduler_set_owner(&f->sched, &f->w.ownership), 0);
    followup_sweep_init(&f->sweep, &f->cfg, &f->w.repo, &f->sched, &f->w.clock, &f->lg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    followup_sweep_close(&f->sweep);
    followup_scheduler_close(&f->sched);
    fakes_drain(&f->w);
    followup_scheduler_free(&f->sched);
    close(f->lg.fd);
    logger_free(&f->lg);
    free(f);
    return 0;
}

static enum notify_verdict notify(struct fixture *f, const char *payload)
{
    return notifications_controller_handle(&f->cfg, &f->sched, &f->lg, f->channel, payload);
}

static enum notify_verdict notify_insert(struct fixture *f, const char *booking)
{
    char payload[256];
    snprintf(payload, sizeof(payload),
             "{\"schema\":\"" SCHEMA "\",\"tenantId\":\"" TENANT "\",\"bookingId\":\"%s\",\"op\":\"INSERT\"}",
             booking);
    return notify(f, payload);
}

struct made_task {
    char key[IDEMPOTENCY_KEY_LEN];
    char name[TASK_NAME_LEN];
};

/* A DELETE hint as the trigger sends it for a row that had followupd's task (made at `at_ms`). */
static enum notify_verdict notify_delete(struct fixture *f, const char *booking, int64_t at_ms,
                                         struct made_task *t)
{
    char id[TASK_ID_LEN], payload[1024];
    assert_int_equal(followup_idempotency_key(TENANT, booking, at_ms, t->key, sizeof(t->key)), 0);
    assert_int_equal(followup_task_id(t->key, 0, id), 0);
    assert_int_equal(f->w.queue.task_name(f->w.queue.impl, id, t->name, sizeof(t->name)), 0);
    snprintf(payload, sizeof(payload),
             "{\"schema\":\"" SCHEMA "\",\"tenantId\":\"" TENANT "\",\"bookingId\":\"%s\",\"op\":\"DELETE\","
             "\"taskName\":\"%s\",\"idempotencyKey\":\"%s\",\"taskGeneration\":0}",
             booking, t->name, t->key);
    return notify(f, payload);
}

static void notification__partition_owned_elsewhere__left_to_its_owner_without_a_read(void **state)
{
    struct fixture *f = *state;
    fakes_add_booking(&f->w, SCHEMA, TENANT, IN_P2, "follow_up", f->w.now_ms + 60000);
    assert_int_equal(notify_insert(f, IN_P2), NOTIFY_NOT_OWNED);
    fakes_drain(&f->w);
    assert_int_equal(f->w.loads, 0);
    assert_int_equal(f->w.creates, 0);
    assert_int_equal(f->sched.stats.not_owned, 1);
}

static void notification__partition_owned__scheduled(void **state)
{
    struct fixture *f = *state;
    fakes_add_booking(&f->w, SCHEMA, TENANT, IN_P1, "follow_up", f->w.now_ms + 60000);
    assert_int_equal(notify_insert(f, IN_P1), NOTIFY_QUEUED);
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 1);
    assert_string_equal(fakes_find(&f->w, IN_P1)->b.task_status, "scheduled");
    assert_int_equal(f->sched.stats.not_owned, 0);
}

static void delete_hint__owned_elsewhere__parked_then_run_when_the_partition_comes_here(void **state)
{
    struct fixture *f = *state;
    struct made_task t;
    assert_int_equal(notify_delete(f, IN_P3, f->w.now_ms + 60000, &t), NOTIFY_NOT_OWNED);
    fakes_drain(&f->w);
    assert_int_equal(f->w.loads, 0);      /* parked: no read, no delete */
    assert_int_equal(f->w.removes, 0);
    assert_int_equal(f->sched.n_parked, 1);
    followup_scheduler_partitions_gained(&f->sched);   /* gained something, but not partition 3 */
    fakes_drain(&f->w);
    assert_int_equal(f->w.removes, 0);
    fakes_own(&f->w, PARTITIONS, (const int[]){0, 1, 3}, 3);   /* its owner died: partition 3 is ours */
    followup_scheduler_partitions_gained(&f->sched);
    fakes_drain(&f->w);
    assert_int_equal(f->w.loads, 1);      /* the row is really gone (tenant-scoped read) */
    assert_int_equal(f->w.removes, 1);
    assert_string_equal(f->w.last_removed, t.name);
    assert_int_equal(f->sched.n_parked, 0);
}

static void delete_hint__parked_longer_than_the_hold__never_run(void **state)
{
    struct fixture *f = *state;
    struct made_task t;
    assert_int_equal(notify_delete(f, IN_P3, f->w.now_ms + 60000, &t), NOTIFY_NOT_OWNED);
    f->w.now_ms += PARKED_DELETE_HOLD_MS + 1;
    fakes_own(&f->w, PARTITIONS, (const int[]){3}, 1);
    followup_scheduler_partitions_gained(&f->sched);
    fakes_drain(&f->w);
    assert_int_equal(f->w.loads, 0);
    assert_int_equal(f->w.removes, 0);
    assert_int_equal(f->sched.n_parked, 0);
}

static void delete_hint__owned_elsewhere_with_a_foreign_name__rejected_not_parked(void **state)
{
    struct fixture *f = *state;
    char payload[1024];
    snprintf(payload, sizeof(payload),
             "{\"schema\":\"" SCHEMA "\",\"tenantId\":\"" TENANT "\",\"bookingId\":\"" IN_P3 "\",\"op\":\"DELETE\","
             "\"taskName\":\"projects/p/locations/l/queues/q/tasks/abc\",\"idempotencyKey\":\"followup:" TENANT
             ":" IN_P3 ":2026-11-28T16:00:00.000Z\",\"taskGeneration\":0}");
    assert_int_equal(notify(f, payload), NOTIFY_REJECTED);
    assert_int_equal(f->sched.stats.rejected[REJECT_FOREIGN_TASK], 1);
    assert_int_equal(f->sched.n_parked, 0);
}

static void delete_hints__more_than_the_cap__oldest_dropped(void **state)
{
    struct fixture *f = *state;
    struct made_task t;
    for (int i = 0; i < PARKED_DELETES_MAX + 5; i++)
        assert_int_equal(notify_delete(f, IN_P3, f->w.now_ms + 60000 + i, &t), NOTIFY_NOT_OWNED);
    assert_int_equal(f->sched.n_parked, PARKED_DELETES_MAX);
}

static void partitions_released__waiting_items_of_given_up_partitions__dropped_running_one_kept(void **state)
{
    struct fixture *f = *state;
    fakes_own(&f->w, PARTITIONS, (const int[]){0, 1, 2, 3}, 4);
    const char *ids[] = {IN_P0, IN_P1, IN_P2, IN_P3};
    for (int i = 0; i < 4; i++) {
        fakes_add_booking(&f->w, SCHEMA, TENANT, ids[i], "follow_up", f->w.now_ms + 60000);
        assert_int_equal(followup_scheduler_enqueue(&f->sched, SCHEMA, TENANT, ids[i]), 0);
    }
    /* max_inflight 1: P0 runs, P1..P3 wait */
    assert_true(followup_scheduler_partition_busy(&f->sched, 0));
    assert_false(followup_scheduler_partition_busy(&f->sched, 1));
    fakes_own(&f->w, PARTITIONS, (const int[]){1}, 1);   /* gave up 0, 2, 3 */
    followup_scheduler_partitions_released(&f->sched);
    assert_int_equal(f->sched.stats.dropped_released, 2);   /* P2, P3 waiting; P0 is in flight */
    assert_true(followup_scheduler_partition_busy(&f->sched, 0));
    fakes_drain(&f->w);
    assert_false(followup_scheduler_partition_busy(&f->sched, 0));
    assert_string_equal(fakes_find(&f->w, IN_P0)->b.task_status, "scheduled");   /* the pass in flight ended */
    assert_string_equal(fakes_find(&f->w, IN_P1)->b.task_status, "scheduled");
    assert_string_equal(fakes_find(&f->w, IN_P2)->b.task_status, "pending");     /* for the new owner */
    assert_string_equal(fakes_find(&f->w, IN_P3)->b.task_status, "pending");
    assert_true(followup_scheduler_idle(&f->sched));
}

/* A booking of partition 0 whose first create answers 503: its pass waits out a backoff. */
static void first_create_fails(struct fixture *f)
{
    fakes_add_booking(&f->w, SCHEMA, TENANT, IN_P0, "follow_up", f->w.now_ms + 60000);
    f->w.create_script[0] = TQ_TRANSIENT;
    assert_int_equal(followup_scheduler_enqueue(&f->sched, SCHEMA, TENANT, IN_P0), 0);
    assert_true(followup_scheduler_partition_busy(&f->sched, 0));   /* loading, then creating */
    fakes_drain(&f->w);
    assert_int_equal(f->w.creates, 1);
}

static void retry_backoff__not_busy_and_left_to_the_new_owner_when_given_up(void **state)
{
    struct fixture *f = *state;
    first_create_fails(f);
    assert_int_equal(fakes_armed_timers(&f->w), 1);
    assert_false(followup_scheduler_partition_busy(&f->sched, 0));  /* nothing in flight: may be unlocked */
    fakes_own(&f->w, PARTITIONS, (const int[]){1}, 1);              /* partition 0 given up */
    fakes_advance(&f->w, 60000);
    assert_int_equal(f->w.creates, 1);                              /* no retry: the new owner's sweep */
    assert_string_equal(fakes_find(&f->w, IN_P0)->b.task_status, "pending");
    assert_true(followup_scheduler_idle(&f->sched));
}

static void retry_backoff__partition_still_owned__retried(void **state)
{
    struct fixture *f = *state;
    first_create_fails(f);
    fakes_advance(&f->w, 60000);
    assert_int_equal(f->w.creates, 2);
    assert_string_equal(fakes_find(&f->w, IN_P0)->b.task_status, "scheduled");
    assert_false(followup_scheduler_partition_busy(&f->sched, 0));
}

static void sweep__owns_some_partitions__reads_only_those_and_schedules_only_owned(void **state)
{
    struct fixture *f = *state;
    f->cfg.followup_max_inflight = 8;
    const char *ids[] = {IN_P0, IN_P1, IN_P2, IN_P3};
    for (int i = 0; i < 4; i++) fakes_add_booking(&f->w, SCHEMA, TENANT, ids[i], "follow_up", f->w.now_ms + 60000);
    followup_sweep_request(&f->sweep, "test");
    fakes_drain(&f->w);
    assert_int_equal(f->w.sweep_reads, 3);   /* catch-up, task sweep, re-opened */
    assert_false(f->w.last_sweep_all);
    assert_int_equal(f->w.last_sweep_n_owned, 2);
    assert_int_equal(f->w.last_sweep_owned[0], 0);
    assert_int_equal(f->w.last_sweep_owned[1], 1);
    assert_string_equal(fakes_find(&f->w, IN_P0)->b.task_status, "scheduled");
    assert_string_equal(fakes_find(&f->w, IN_P1)->b.task_status, "scheduled");
    assert_string_equal(fakes_find(&f->w, IN_P2)->b.task_status, "pending");
    assert_int_equal(f->w.creates, 2);
}

static void sweep__owns_every_partition__reads_without_a_filter(void **state)
{
    struct fixture *f = *state;
    fakes_own(&f->w, PARTITIONS, (const int[]){0, 1, 2, 3}, 4);
    followup_sweep_request(&f->sweep, "test");
    fakes_drain(&f->w);
    assert_int_equal(f->w.sweep_reads, 3);
    assert_true(f->w.last_sweep_all);
}

static void sweep__owns_no_partition__reads_nothing(void **state)
{
    struct fixture *f = *state;
    fakes_own(&f->w, PARTITIONS, NULL, 0);
    followup_sweep_request(&f->sweep, "test");
    fakes_drain(&f->w);
    assert_int_equal(f->w.sweep_reads, 0);
}

static void sweep__partition_given_up_while_reading__its_rows_not_enqueued(void **state)
{
    struct fixture *f = *state;
    f->cfg.followup_max_inflight = 8;
    fakes_add_booking(&f->w, SCHEMA, TENANT, IN_P0, "follow_up", f->w.now_ms + 60000);
    fakes_add_booking(&f->w, SCHEMA, TENANT, IN_P1, "follow_up", f->w.now_ms + 60000);
    followup_sweep_request(&f->sweep, "test");       /* the catch-up read is in flight for {0, 1} */
    fakes_own(&f->w, PARTITIONS, (const int[]){1}, 1);
    fakes_drain(&f->w);
    assert_string_equal(fakes_find(&f->w, IN_P0)->b.task_status, "pending");
    assert_string_equal(fakes_find(&f->w, IN_P1)->b.task_status, "scheduled");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(booking_partition__first_four_bytes_unsigned__modulo_count),
        cmocka_unit_test(booking_partition__not_a_uuid_or_count_out_of_range__minus_one),
        cmocka_unit_test(ownership_target__members__ceiling_of_the_share),
        cmocka_unit_test(ownership_parse_int_array__pg_text__values_in_range),
        cmocka_unit_test(ownership_lock_class__group__stable_positive_and_distinct),
        T(notification__partition_owned_elsewhere__left_to_its_owner_without_a_read),
        T(notification__partition_owned__scheduled),
        T(delete_hint__owned_elsewhere__parked_then_run_when_the_partition_comes_here),
        T(delete_hint__parked_longer_than_the_hold__never_run),
        T(delete_hint__owned_elsewhere_with_a_foreign_name__rejected_not_parked),
        T(delete_hints__more_than_the_cap__oldest_dropped),
        T(partitions_released__waiting_items_of_given_up_partitions__dropped_running_one_kept),
        T(retry_backoff__not_busy_and_left_to_the_new_owner_when_given_up),
        T(retry_backoff__partition_still_owned__retried),
        T(sweep__owns_some_partitions__reads_only_those_and_schedules_only_owned),
        T(sweep__owns_every_partition__reads_without_a_filter),
        T(sweep__owns_no_partition__reads_nothing),
        T(sweep__partition_given_up_while_reading__its_rows_not_enqueued),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
