/*
 * deals_pipeline/services/ports — the interfaces the follow-up services depend
 * on, as structs of function pointers (Redis connection.h style): the
 * bookings repository (the only SQL), the task queue (Cloud Tasks or the local
 * dispatcher) and the voice agent.  Production wires libpq/libcurl
 * implementations in; unit tests hand in fakes.  Every operation is
 * asynchronous: the callback runs later on the loop, exactly once, never from
 * inside the call that started it.  A call returning -1 means "not started"
 * (the callback will not run).
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_PORTS_H
#define FOLLOWUPD_DEALS_PIPELINE_PORTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

#define UUID_STR_LEN 37          /* 36 + NUL */
#define SCHEMA_NAME_LEN 64       /* 63 + NUL */
#define IDEMPOTENCY_KEY_LEN 256
#define TASK_NAME_LEN 640

/* A lead_bookings row as the services need it (snake_case columns mapped 1:1). */
struct booking {
    char id[UUID_STR_LEN];
    char tenant_id[UUID_STR_LEN];
    char lead_id[UUID_STR_LEN];
    char assigned_user_id[UUID_STR_LEN];   /* "" when NULL */
    char booking_type[64];
    char status[32];                        /* the Node backend's status */
    char task_status[32];                   /* ours */
    char task_name[TASK_NAME_LEN];          /* "" when NULL */
    char idempotency_key[IDEMPOTENCY_KEY_LEN]; /* "" when NULL */
    int64_t scheduled_at_ms;
    int64_t task_scheduled_at_ms;           /* the scheduled_at its task was created for; 0 when NULL */
    int execution_attempts;
    int task_generation;
};

/* One row as the operator commands show it (followupd inspect / retry): the columns above and the rest of
 * followupd's columns; timestamps in epoch ms, 0 when NULL; db_now_ms is the database clock of the read. */
struct booking_detail {
    struct booking b;
    int64_t executed_at_ms, execution_started_at_ms, next_attempt_at_ms, db_now_ms;
    int schedule_attempts;
    char last_execution_error[512];           /* "" when NULL; written by followupd, shown sanitized */
};

/* Result codes of repository calls. */
enum repo_rc { REPO_OK = 0, REPO_NOT_FOUND, REPO_CONFLICT /* conditional update matched nothing */, REPO_ERROR };

/* What phase 1 of an execution found (claim = lock + move to in_progress). */
enum claim_outcome {
    CLAIM_CLAIMED,            /* now in_progress: the caller makes the call */
    CLAIM_NOT_FOUND,          /* no such booking in this tenant */
    CLAIM_ALREADY_EXECUTED,
    CLAIM_CANCELLED,
    CLAIM_STALE,              /* idempotency key differs (rescheduled since) */
    CLAIM_IN_PROGRESS,        /* another delivery holds a live lease */
    CLAIM_FAILED_FINAL,       /* failed and not retryable */
    CLAIM_TOO_EARLY,          /* claimable, but not before scheduled_at - early_window_s: untouched */
    CLAIM_EXPIRED,            /* reached after scheduled_at + max_lateness_s: now failed ("expired: ..."), no call;
                                 also a row an earlier delivery expired */
    CLAIM_DEFERRED,           /* claimable, but a concurrency cap is reached or the voice agent's Retry-After has
                                 not passed (next_attempt_at): untouched */
};

/* Why a claim was deferred (CLAIM_DEFERRED). */
enum claim_deferral { DEFER_NONE, DEFER_TENANT_CAP, DEFER_GLOBAL_CAP, DEFER_RETRY_AFTER, DEFER_N };

/* What the claim checks besides the row's own state. */
struct claim_params {
    const char *idempotency_key;
    int lease_s;                /* in_progress older than this is an abandoned lease */
    int early_window_s;         /* >= 0: untouched (CLAIM_TOO_EARLY) before scheduled_at - early_window_s; -1: no check */
    int max_lateness_s;         /* > 0: expired (CLAIM_EXPIRED) after scheduled_at + max_lateness_s; 0: no check */
    int tenant_cap;             /* > 0: at most this many live leases of the booking's tenant; 0: unlimited */
    int global_cap;             /* > 0: at most this many live leases of every tenant; 0: unlimited */
};

/* What the claim found. */
struct claim_result {
    enum claim_outcome outcome;
    const struct booking *booking;   /* CLAIM_CLAIMED; CLAIM_EXPIRED when this claim expired it; else NULL */
    int wait_s;                      /* CLAIM_TOO_EARLY; CLAIM_DEFERRED by DEFER_RETRY_AFTER: seconds left */
    int64_t late_s;                  /* seconds after scheduled_at (CLAIM_EXPIRED by this claim) */
    enum claim_deferral deferral;    /* CLAIM_DEFERRED */
    int tenant_live, all_live;       /* live leases a capped claim counted before deciding (-1: not counted) */
    int64_t scheduled_at_ms;         /* CLAIM_STALE: the row's scheduled_at (tells an old task from one not recorded
                                        on its row yet) */
};

/* A booking reference found by a sweep. */
struct booking_key {
    char tenant_id[UUID_STR_LEN];
    char booking_id[UUID_STR_LEN];
    char idempotency_key[IDEMPOTENCY_KEY_LEN];   /* filled by find_due only */
};

struct reschedule_mark {
    const char *old_task_name;      /* the row must still carry this task */
    const char *task_name;          /* the replacement task */
    const char *idempotency_key;
    int64_t scheduled_at_ms;        /* the scheduled_at the new key was computed for (re-checked) */
    int generation;                 /* new task_generation (old + 1) */
};

/* One of followupd's NOTIFY triggers as installed (a catalog read). */
#define CAPTURE_TRIGGERS_MAX 3
struct capture_trigger {
    char name[64];
    bool enabled;
    char args[1200];        /* encode(tgargs, 'escape'): each argument followed by \000 */
};

/* The partitions a maintenance read is limited to (bookings whose followup_booking_partition() is one of
 * `owned`); a NULL filter means every booking (a replica that owns every partition). */
struct partition_filter {
    int partitions;
    const int *owned;
    int n_owned;
};

typedef void (*repo_booking_cb)(void *arg, enum repo_rc rc, const struct booking *b);
typedef void (*repo_triggers_cb)(void *arg, enum repo_rc rc, const struct capture_trigger *t, int n);
typedef void (*repo_keys_cb)(void *arg, enum repo_rc rc, const struct booking_key *keys, int n);
typedef void (*repo_time_cb)(void *arg, enum repo_rc rc, int64_t epoch_ms /* 0 = none */);
typedef void (*repo_done_cb)(void *arg, enum repo_rc rc);
struct booking_state;
typedef void (*repo_state_cb)(void *arg, enum repo_rc rc, const struct booking_state *st);
/* r: valid during the callback only (REPO_OK only; NULL otherwise). */
typedef void (*repo_claim_cb)(void *arg, enum repo_rc rc, const struct claim_result *r);

/* A schema's follow-ups by state, across tenants (counts and epoch-ms timestamps only; 0 = none), as of the
 * database clock db_now_ms.  What is counted (repositories/booking_state_sql.h): */
struct booking_state {
    int64_t waiting;                 /* pending follow-ups, not cancelled, inside [now - lookback, now + horizon] */
    int64_t waiting_due;             /*   of which scheduled_at has passed (no task yet: late) */
    int64_t beyond_horizon;          /* pending follow-ups after now + horizon (the sweep schedules them later) */
    int64_t scheduled;               /* with a live task */
    int64_t scheduled_due;           /*   of which scheduled_at has passed and no call started */
    int64_t cancel_owed;             /* cancelled, their task's deletion still owed */
    int64_t in_progress;             /* a call is being made (lease held) */
    int64_t lease_expired;           /*   of which the lease has expired (the holder died mid-call) */
    int64_t failed_retryable;        /* failed, another attempt is due (next_attempt_at set) */
    int64_t failed_final;            /* failed for good (next_attempt_at NULL) */
    int64_t failed_final_recent;     /*   of which scheduled inside the lookback window (`retry` can re-drive them) */
    int64_t oldest_waiting_ms;       /* earliest scheduled_at of the waiting ones */
    int64_t next_due_ms;             /* earliest future scheduled_at of waiting or scheduled ones */
    int64_t oldest_due_ms;           /* earliest passed scheduled_at of waiting or scheduled ones: due, not called */
    int64_t oldest_in_progress_ms;   /* earliest execution_started_at of the in-progress ones */
    int64_t oldest_failed_ms;        /* earliest scheduled_at of the failed ones */
    int64_t db_now_ms;
};

struct booking_state_query {
    const struct strlist *types;     /* follow-up booking types */
    int lookback_s;                  /* [followup] catchup_window_s */
    int horizon_s;                   /* the sweep's horizon (720 h - 1 h + lead time) */
    int lease_s;                     /* the execution lease */
};

struct schedule_mark {
    const char *task_name;
    int64_t scheduled_at_ms;        /* the scheduled_at the key was computed for (re-checked) */
    int64_t task_scheduled_at_ms;
    const char *idempotency_key;
};

struct bookings_repo {
    void *impl;
    /* Load one booking, tenant-scoped. REPO_NOT_FOUND when absent. */
    int (*load)(void *impl, const char *schema, const char *tenant_id, const char *booking_id, repo_booking_cb cb,
                void *arg);
    /* pending|failed → scheduled with the task columns; REPO_CONFLICT when the row moved on. */
    int (*mark_scheduled)(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                          const struct schedule_mark *m, repo_done_cb cb, void *arg);
    /* The booking is already later than followup.max_lateness_s: pending (or failed and retryable) → failed
     * with the error, final, only while scheduled_at is still scheduled_at_ms; REPO_CONFLICT otherwise. */
    int (*mark_expired)(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                        int64_t scheduled_at_ms, const char *error, repo_done_cb cb, void *arg);
    /* Scheduling failed permanently: pending → failed with the error (not retryable). */
    int (*mark_schedule_failed)(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                                const char *error, repo_done_cb cb, void *arg);
    /* Phase 1: lock the booking and claim it for one call, in one statement, by the database's now().  A row
     * otherwise claimable is, in this order: expired (failed, no call) after scheduled_at + max_lateness_s;
     * left untouched (no attempt, no lease) before scheduled_at - early_window_s (CLAIM_TOO_EARLY), while a
     * retryable failure's next_attempt_at has not come (CLAIM_DEFERRED), or when a cap is reached
     * (CLAIM_DEFERRED; the caps are counted over every configured schema, serialized per tenant and, for the
     * all-tenant cap, globally, so two claims never both take the last slot). */
    int (*claim_execution)(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                           const struct claim_params *p, repo_claim_cb cb, void *arg);
    /* Phase 3: record the outcome of the call. */
    int (*mark_executed)(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                         const char *idempotency_key, repo_done_cb cb, void *arg);
    /* scheduled → scheduled with a replacement task (only while the row still has old_task_name). */
    int (*mark_rescheduled)(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                            const struct reschedule_mark *m, repo_done_cb cb, void *arg);
    /* scheduled → pending with no task, no key and the next task generation (the booking moved out of the
     * schedulable window: beyond the horizon or before the catch-up window); only while the row still has
     * old_task_name and the scheduled_at the decision was made for. */
    int (*unschedule)(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                      const char *old_task_name, int64_t scheduled_at_ms, repo_done_cb cb, void *arg);
    /* pending|scheduled|failed → cancelled (task_name kept until the task is deleted). */
    int (*mark_cancelled)(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                          repo_done_cb cb, void *arg);
    /* The cancelled booking's task is gone: forget its name. */
    int (*clear_task_name)(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                           const char *task_name, repo_done_cb cb, void *arg);
    /* cancelled (no task left) → pending, next task generation: the booking was un-cancelled. */
    int (*reopen)(void *impl, const char *schema, const char *tenant_id, const char *booking_id, repo_done_cb cb,
                  void *arg);
    /* Cross-tenant maintenance read: live tasks that no longer match their booking (cancelled,
     * rescheduled, no longer a follow-up) and cancelled bookings whose task still exists. */
    int (*find_stale_tasks)(void *impl, const char *schema, const struct strlist *types,
                            const struct partition_filter *parts, int limit, repo_keys_cb cb, void *arg);
    /* Cross-tenant maintenance read: bookings followupd cancelled whose status was set back (un-cancelled)
     * while it was not listening, inside [now - lookback_s, now + horizon_s]. */
    int (*find_reopened)(void *impl, const char *schema, const struct strlist *types,
                         const struct partition_filter *parts, int64_t now_ms, int lookback_s, int horizon_s,
                         int limit, repo_keys_cb cb, void *arg);
    /* Cross-tenant maintenance read (catch-up): bookings of `types` still waiting
     * for a task, scheduled within [now - lookback_s, now + horizon_s] (now_ms: the daemon's clock). */
    int (*find_catchup)(void *impl, const char *schema, const struct strlist *types,
                        const struct partition_filter *parts, int64_t now_ms, int lookback_s, int horizon_s,
                        int limit, repo_keys_cb cb, void *arg);
    /* retryable: claimable again from now + retry_delay_s (local dispatcher backoff; 0 for Cloud Tasks). */
    int (*mark_execution_failed)(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                                 const char *idempotency_key, const char *error, bool retryable, int retry_delay_s,
                                 repo_done_cb cb, void *arg);
    /* Local dispatcher, cross-tenant maintenance reads: the earliest moment a local task is due
     * (scheduled_at - lead_s; a retry's next_attempt_at; an abandoned lease's end), and the due ones. */
    int (*next_due)(void *impl, const char *schema, int lead_s, int lease_s, repo_time_cb cb, void *arg);
    int (*find_due)(void *impl, const char *schema, int lead_s, int lease_s, int limit, repo_keys_cb cb, void *arg);
    /* Catalog read (no booking row): followupd's NOTIFY triggers of the schema with their arguments. */
    int (*capture_triggers)(void *impl, const char *schema, repo_triggers_cb cb, void *arg);
    /* Cross-tenant aggregate (counts and timestamps only): the schema's follow-ups by state. */
    int (*booking_state)(void *impl, const char *schema, const struct booking_state_query *q, repo_state_cb cb,
                         void *arg);
};

/* ---- work ownership among replicas ---- */
/* Which partitions of the bookings this replica schedules (synchronous, pure reads of the current state). The
 * replicas sharing a database split the partitions among themselves (shared/db/db_ownership); a service without
 * an ownership port (NULL) owns everything. */
struct ownership_port {
    void *impl;
    int partitions;                                  /* the configured count, [replicas] partitions */
    bool (*owns)(void *impl, int partition);
    int (*owned)(void *impl, int *out, int cap);     /* owned partitions, ascending; returns how many */
};

/* ---- task queue ---- */
enum tq_result { TQ_OK = 0, TQ_ALREADY_EXISTS, TQ_NOT_FOUND, TQ_TRANSIENT, TQ_PERMANENT };
struct tq_reply {
    enum tq_result result;
    const char *task_name;   /* full name of the created task */
    const char *error;       /* short, no secrets */
    long http_status;        /* Cloud Tasks: the HTTP status answered (0: none, or the local queue) */
    const char *google_status; /* Cloud Tasks: Google's canonical status name (static), or NULL */
};
typedef void (*tq_cb)(void *arg, const struct tq_reply *r);

struct task_request {
    const char *task_id;         /* deterministic: hash of the idempotency key */
    const char *url;             /* callback URL */
    const char *body_json;       /* camelCase payload, no secrets */
    int64_t schedule_time_ms;
};

struct task_queue {
    void *impl;
    int (*create)(void *impl, const struct task_request *req, tq_cb cb, void *arg);
    int (*remove)(void *impl, const char *task_name, tq_cb cb, void *arg);
    /* The full name this queue gives the task with `task_id` (synchronous, pure): 0, or -1 when it has none. */
    int (*task_name)(void *impl, const char *task_id, char *out, size_t cap);
};

/* ---- voice agent ---- */
enum va_outcome { VOICE_OK = 0, VOICE_TRANSIENT, VOICE_PERMANENT };
struct voice_reply {
    enum va_outcome outcome;
    long http_status;
    const char *error;
    int retry_after_s;       /* the voice agent's Retry-After on a 429/503 (bounded); 0 = none */
};
typedef void (*voice_cb)(void *arg, const struct voice_reply *r);

struct voice_call {
    const char *tenant_id, *booking_id, *lead_id;
    const char *assigned_user_id;   /* NULL when absent */
    const char *scheduled_at_iso, *idempotency_key, *booking_type, *request_id;
    const char *traceparent;        /* W3C traceparent to send on; NULL or "" when none */
};

struct voice_agent_port {
    void *impl;
    int (*start_call)(void *impl, const struct voice_call *call, voice_cb cb, void *arg);
};

/* ---- clock and timers ---- */
struct clock_port {
    void *impl;
    int64_t (*now_ms)(void *impl);
    /* Run cb(arg) once after delay_ms on the loop. Returns 0 or -1. Pending
     * timers never fire once the port is closed (at shutdown); their owners free
     * what they passed as arg. */
    int (*after)(void *impl, uint64_t delay_ms, void (*cb)(void *arg), void *arg);
};

#endif
