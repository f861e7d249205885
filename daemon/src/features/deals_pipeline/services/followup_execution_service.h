/*
 * deals_pipeline/services/followup_execution_service — runs one follow-up:
 * the callback Cloud Tasks delivers (and the local dispatcher) end here.
 *
 * Three atomic phases (the Stripe "atomic phases" shape):
 *   1. claim: one statement locks the booking in its tenant and moves it to
 *      in_progress (attempts + 1, lease start) only when it is claimable —
 *      scheduled/pending, failed-and-retryable, or in_progress with an expired
 *      lease (the previous holder died mid-call);
 *   2. the voice-agent call, outside any transaction, with the booking's
 *      idempotency key as Idempotency-Key (a re-call after a crash reuses it);
 *   3. record the outcome: executed, or failed with a short error (retryable
 *      for transient failures until followup.max_attempts, final for
 *      permanent rejections).
 * Duplicate and concurrent deliveries serialize on the row lock in phase 1, so
 * exactly one of them makes the call.  No SQL here: the repository does it.
 *
 * A valid token is not a licence to run a booking early: a request marked
 * refuse_early (the HTTP callback) is claimed only from the row's own
 * scheduled_at - lead_time_s - early_tolerance_s on (the database clock, in the
 * claim statement itself, so the claim stays one atomic step); before that it
 * finishes EXEC_TOO_EARLY with the seconds left, the row untouched (no attempt,
 * no lease), logged at warn.  early_tolerance_s = 0 turns the check off.  The
 * local dispatcher's own runs are not marked: it never runs a booking early.
 *
 * Late calls: every claim (HTTP callback and local dispatcher alike) reached
 * after the row's scheduled_at + max_lateness_s (database clock) makes no call:
 * the claim itself turns the row failed for good with "expired: ..." and the
 * execution finishes EXEC_EXPIRED (200 {"status":"expired"}: Cloud Tasks
 * stops).  max_lateness_s = 0 turns it off.
 *
 * Concurrency caps: with tenant_cap or global_cap set, the claim counts the
 * live leases (in_progress, lease not expired) of the booking's tenant or of
 * every tenant over every configured schema, serialized by advisory locks, and
 * claims only below the cap; otherwise it finishes EXEC_DEFERRED with a
 * Retry-After of EXEC_DEFER_RETRY_S, the row untouched.  A retryable failure
 * the voice agent answered with Retry-After (429/503) is not claimed again
 * before it (next_attempt_at): EXEC_DEFERRED with the seconds left.  The
 * voice agent's Retry-After also travels with EXEC_FAILED_RETRYABLE, so the
 * answer to Cloud Tasks carries it.
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_EXECUTION_SERVICE_H
#define FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_EXECUTION_SERVICE_H

#include "features/deals_pipeline/services/ports.h"
#include "utils/log.h"
#include "utils/trace_context.h"

enum execution_status {
    EXEC_EXECUTED,           /* 200 {"status":"executed"} */
    EXEC_ALREADY_EXECUTED,   /* 200 {"status":"already_executed"} */
    EXEC_CANCELLED,          /* 200 {"status":"cancelled"} */
    EXEC_STALE,              /* 200 {"status":"stale"} */
    EXEC_FAILED_FINAL,       /* 200 {"status":"failed","retryable":false}: stop retrying */
    EXEC_IN_PROGRESS,        /* 409: another delivery holds the lease */
    EXEC_NOT_FOUND,          /* 404 */
    EXEC_FAILED_RETRYABLE,   /* 503: transient voice-agent failure */
    EXEC_UNAVAILABLE,        /* 503: database unavailable / overloaded */
    EXEC_TOO_EARLY,          /* 425 {"status":"too_early"} + Retry-After: delivered before its time, no call */
    EXEC_EXPIRED,            /* 200 {"status":"expired"}: later than scheduled_at + max_lateness_s, no call, failed */
    EXEC_DEFERRED,           /* 429 {"status":"deferred"} + Retry-After: a cap is reached (or Retry-After), no call */
    EXEC_STATUS_N
};

/* The Retry-After of a deferral by a cap: slots free when calls end, which nothing here can foresee. */
#define EXEC_DEFER_RETRY_S 2

struct execution_request {
    const char *schema;
    const char *tenant_id;
    const char *booking_id;
    const char *idempotency_key;
    const char *request_id;
    const struct trace_context *trace;   /* the delivery's trace; NULL: a new trace is started */
    bool refuse_early;           /* a delivery from outside: refused before its time (see above) */
};

/* retry_after_s: seconds until the booking may run (EXEC_TOO_EARLY, EXEC_DEFERRED), or the voice agent's
 * Retry-After (EXEC_FAILED_RETRYABLE, 0 when it sent none); 0 otherwise. */
typedef void (*execution_done_cb)(void *arg, enum execution_status st, int retry_after_s);

struct followup_execution_service {
    struct bookings_repo *repo;
    struct voice_agent_port *voice;
    struct logger *log;
    int lease_s;                 /* in_progress older than this is considered abandoned */
    int max_attempts;            /* a transient failure on this attempt is final (0 = unlimited) */
    int retry_base_s;            /* retry delay base (doubles per attempt; 0: the caller's queue owns retries) */
    int lead_time_s;             /* followup.lead_time_s: a task is due this long before scheduled_at */
    int early_tolerance_s;       /* followup.early_tolerance_s: 0 = deliveries are never refused as early */
    int max_lateness_s;          /* followup.max_lateness_s: 0 = late bookings are still called */
    int tenant_cap, global_cap;  /* voice_agent.max_concurrent_per_tenant / max_concurrent: 0 = unlimited */
    unsigned inflight;           /* executions between claim and outcome */
    uint64_t finished[EXEC_STATUS_N];   /* executions finished, by status */
    uint64_t deferred[DEFER_N];         /* EXEC_DEFERRED, by reason */
    /* optional: a capped claim counted live leases (tenant_live / all_live: -1 when not counted) */
    void (*on_counted)(void *arg, int tenant_live, int all_live);
    void *on_counted_arg;
};

void followup_execution_service_init(struct followup_execution_service *svc, struct bookings_repo *repo,
                                     struct voice_agent_port *voice, struct logger *log, int lease_s);
/* Copies the request. Returns 0, or -1 when not started (out of memory / repo refused). */
int followup_execution_execute(struct followup_execution_service *svc, const struct execution_request *req,
                               execution_done_cb cb, void *arg) __attribute__((warn_unused_result));
const char *execution_status_name(enum execution_status st);
/* "tenant_cap", "global_cap", "retry_after". */
const char *claim_deferral_name(enum claim_deferral d);

#endif
