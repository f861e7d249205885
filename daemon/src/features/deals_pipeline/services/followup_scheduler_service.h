/*
 * deals_pipeline/services/followup_scheduler_service — turns "booking X of
 * tenant T in schema S changed" into a scheduled task, at most once.
 *
 * Work arrives as booking references (from NOTIFY, later from sweeps) and goes
 * through a bounded FIFO with coalescing: a booking already queued or in
 * flight is not queued twice (it is re-read once after the current pass, so
 * the latest row state wins).  At most `max_inflight` bookings are processed
 * at once (backpressure: a burst of 10,000 notifications never opens 10,000
 * requests).  When the FIFO is full the reference is dropped and counted: the
 * row is still `pending`, so the catch-up sweep finds it — nothing is lost.
 *
 * One pass: load the row (tenant-scoped) → plan (followup_plan_for: schedule,
 * reschedule, cancel, drop the task of a cancelled booking, re-open an
 * un-cancelled one, or nothing).  Scheduling: booking_type in
 * followup.booking_types, booking not cancelled, task_status pending →
 * scheduled_at not before now - followup.catchup_window_s (older rows are
 * history: an edit of one notifies too, but it never gets a task) → not
 * later than scheduled_at + followup.max_lateness_s (else no task: the row
 * ends failed "expired: ...", the same rule the claim applies; a moved
 * booking first loses its old task) →
 * idempotency key followup:{tenantId}:{bookingId}:{scheduledAtIso} and task ID
 * sha256(key) → schedule time = scheduled_at - lead_time (past → now; beyond
 * the 720 h horizon → stay pending) → create the task → conditional update to
 * `scheduled` (only from pending/failed, so a replayed notification or another
 * replica cannot regress a row).  ALREADY_EXISTS counts as created.  Transient
 * errors retry with jittered exponential backoff up to a budget, then the row
 * stays pending for the sweep; permanent errors mark the row failed.
 *
 * Rescheduling creates the replacement task first, then moves the row to it
 * in one conditional update (the old idempotency key becomes stale at once, so
 * the old task's callback is a no-op), then deletes the old task: the booking
 * never has no live task, and never two that both call.  A booking moved
 * beyond the horizon (or back before the catch-up window) has no replacement:
 * its row returns to pending without task or key (the old callback turns
 * stale), then the old task is deleted; the sweep schedules it once it is
 * inside the horizon.  Cancelling marks the
 * row first (callbacks become no-ops), then deletes the task (404 = gone),
 * then forgets its name.
 *
 * Several replicas: with an ownership port, a replica acts only on the
 * bookings of the partitions it owns (followup_scheduler_owns; the
 * notifications controller and the sweep ask before they enqueue).  When it
 * gives partitions up it drops their waiting items (the new owner's sweep
 * finds those rows); a DELETE hint for a partition it does not own is checked
 * and parked for a while, and run if the partition comes to this replica
 * (the owner died: its successor deletes the task, since no sweep can find a
 * row that is gone).
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_SCHEDULER_SERVICE_H
#define FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_SCHEDULER_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "features/deals_pipeline/services/ports.h"
#include "utils/log.h"

#define SCHEDULER_HORIZON_S (720 * 3600)
#define SCHEDULER_HORIZON_MARGIN_S 3600

struct scheduler_item;

/* What a booking needs, decided from its row alone (pure). */
enum followup_plan {
    PLAN_NOTHING,      /* executed, in progress, up to date, or not a follow-up */
    PLAN_SCHEDULE,     /* pending (or failed and moved): create its task */
    PLAN_RESCHEDULE,   /* scheduled but scheduled_at moved: replace the task */
    PLAN_CANCEL,       /* cancelled or no longer a follow-up: mark cancelled, delete the task */
    PLAN_DROP_TASK,    /* cancelled, task still exists: delete it */
    PLAN_REOPEN,       /* cancelled, but wanted again: back to pending */
};

/* Why a notification was not acted on: followupd_notifications_rejected_total{reason}. */
enum notify_rejection {
    REJECT_MALFORMED,          /* not the trigger's JSON shape */
    REJECT_OVERSIZED,          /* longer than any payload the trigger sends */
    REJECT_UNKNOWN_SCHEMA,     /* schema not in database.schemas */
    REJECT_WRONG_CHANNEL,      /* arrived on another schema's channel */
    REJECT_UNVERIFIABLE,       /* DELETE naming a task without the key it was made from */
    REJECT_FOREIGN_TASK,       /* DELETE naming a task that is not the one followupd made for that booking */
    REJECT_BOOKING_EXISTS,     /* DELETE of a booking whose row is still there */
    REJECT_UNCONFIRMED,        /* DELETE: the database could not confirm the row is gone */
    REJECT_N
};
const char *followup_rejection_name(enum notify_rejection r);

struct scheduler_stats {
    uint64_t enqueued, coalesced, dropped_overflow;
    uint64_t rejected[REJECT_N];
    uint64_t created, already_existed, not_qualifying, beyond_horizon;
    uint64_t transient_errors, permanent_errors, gave_up, conflicts;
    uint64_t cancelled, rescheduled, tasks_deleted;
    uint64_t expired;                /* bookings marked expired instead of scheduled (followup.max_lateness_s) */
    uint64_t not_owned;              /* hints left to the owner of the booking's partition */
    uint64_t dropped_released;       /* waiting items dropped when their partition was given up */
};

struct parked_delete;
#define PARKED_DELETES_MAX 256
#define PARKED_DELETE_HOLD_MS 60000   /* longer than any hand-over: interval + a vanished host's ~25 s */

/* A task the scheduler has just recorded on its row (scheduled or rescheduled). */
struct recorded_task {
    const char *schema, *tenant_id, *booking_id, *idempotency_key;
    int64_t due_ms;                  /* the task's schedule time: scheduled_at - lead time, never before now */
};

struct followup_scheduler {
    const struct config *cfg;        /* live config (booking types, lead time, public_url, ...) */
    struct bookings_repo *repo;
    struct task_queue *queue;
    struct clock_port *clock;
    struct logger *log;
    size_t max_queue;
    unsigned max_retries;            /* transient retries per pass before leaving it to the sweep */
    uint64_t retry_base_ms, retry_max_ms;
    uint64_t rng;                    /* jitter state */
    /* FIFO of waiting items + index of every live item (waiting, in flight, or backing off) */
    struct scheduler_item *head, *tail;
    size_t queued;
    unsigned inflight;
    struct scheduler_item **index;
    size_t index_buckets;
    size_t live;
    bool closed;
    void (*on_idle)(void *arg);      /* optional: called when nothing is queued or in flight */
    void *on_idle_arg;
    /* optional: a task was recorded on its row (the local backend runs a due one at once) */
    void (*on_task_recorded)(void *arg, const struct recorded_task *t);
    void *on_task_recorded_arg;
    /* optional (followup_scheduler_set_owner): which partitions this replica schedules (NULL = every booking) */
    const struct ownership_port *owner;
    unsigned *running_by_partition;  /* passes in flight per partition */
    struct parked_delete *parked;    /* DELETE hints of partitions owned elsewhere, newest first */
    int n_parked;
    struct scheduler_stats stats;
};

int followup_scheduler_init(struct followup_scheduler *s, const struct config *cfg, struct bookings_repo *repo,
                            struct task_queue *queue, struct clock_port *clock, struct logger *log, size_t max_queue)
    __attribute__((warn_unused_result));
/* Queue a booking for a pass. Returns 0 (queued or coalesced) or -1 (dropped: queue full / invalid / closed). */
int followup_scheduler_enqueue(struct followup_scheduler *s, const char *schema, const char *tenant_id,
                               const char *booking_id);
bool followup_scheduler_idle(const struct followup_scheduler *s);
/* Schedule only the bookings of the partitions `owner` owns. 0 or -1 (out of memory). */
int followup_scheduler_set_owner(struct followup_scheduler *s, const struct ownership_port *owner)
    __attribute__((warn_unused_result));
/* Is a statement or a task request for a booking of this partition in flight (a retry waiting out its backoff
 * does not count: it is dropped when its partition was given up meanwhile)? */
bool followup_scheduler_partition_busy(const struct followup_scheduler *s, int partition);
/* Does this replica schedule this booking (its partition is owned, or there is no ownership port)? */
bool followup_scheduler_owns(const struct followup_scheduler *s, const char *booking_id);
/* Partitions were given up or lost: drop the waiting items of bookings no longer owned (in-flight passes end
 * normally; the conditional writes absorb a new owner working on the same row). */
void followup_scheduler_partitions_released(struct followup_scheduler *s);
/* Partitions were gained: run the parked DELETE hints that now belong to this replica. */
void followup_scheduler_partitions_gained(struct followup_scheduler *s);
/* Stop: drop queued work (rows stay pending), let in-flight passes finish without follow-ups. */
void followup_scheduler_close(struct followup_scheduler *s);
void followup_scheduler_free(struct followup_scheduler *s);

/* Pure helpers (unit-tested). */
int64_t followup_schedule_time_ms(int64_t scheduled_at_ms, int lead_time_s, int64_t now_ms);
bool followup_within_horizon(int64_t schedule_time_ms, int64_t now_ms);
enum followup_plan followup_plan_for(const struct config *cfg, const struct booking *b);
const char *followup_plan_name(enum followup_plan p);
/* What a DELETE notification says of a row that had a task (untrusted: anyone can NOTIFY). */
struct deleted_booking {
    const char *schema, *tenant_id, *booking_id;
    const char *task_name, *idempotency_key;   /* the deleted row's task_name and idempotency_key */
    int task_generation;
};
/* Delete the task of a deleted booking, but only when (a)+(c) the task name is exactly the one this queue gives
 * sha256(key[#generation]) and the key is followupd's key for that tenant and booking, and (b) a tenant-scoped
 * read finds no such row (asynchronous; the outcome is logged, a row still present is counted as a rejection).
 * Returns 0 when the check started, -1 with *why set when (a)/(c) failed, -1 with *why = REJECT_N when it could
 * not start (closed, out of memory). */
int followup_scheduler_forget_deleted(struct followup_scheduler *s, const struct deleted_booking *d,
                                      enum notify_rejection *why);
/* A DELETE hint for a partition owned elsewhere: the same name checks (a)+(c) as forget_deleted, then kept up
 * to PARKED_DELETE_HOLD_MS (at most PARKED_DELETES_MAX, the oldest go first) in case the partition comes here.
 * 0 parked; -1 with *why set when the name check failed, REJECT_N when out of memory. */
int followup_scheduler_park_deleted(struct followup_scheduler *s, const struct deleted_booking *d,
                                    enum notify_rejection *why);
void followup_scheduler_count_rejection(struct followup_scheduler *s, enum notify_rejection why);
/* camelCase task payload: tenantId, bookingId, leadId, assignedUserId, schema, scheduledAt, idempotencyKey. */
char *followup_task_payload(const char *schema, const struct booking *b, const char *idempotency_key);
/* {public_url}/api/deals-pipeline/bookings/{bookingId}/execute-followup */
int followup_callback_url(const char *public_url, const char *booking_id, char *out, size_t cap);

#endif
