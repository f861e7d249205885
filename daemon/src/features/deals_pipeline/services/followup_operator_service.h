/*
 * deals_pipeline/services/followup_operator_service — what the operator
 * commands decide, as pure functions of the configuration and what the
 * database returned (no I/O; the command line reads and prints):
 *   - followup_explain(): what followupd would do with one booking now, and
 *     why (`followupd inspect`);
 *   - followup_retry_allowed(): may `followupd retry` re-drive it (the retry
 *     statement checks the same conditions again, atomically);
 *   - followup_state_attention(): what in a schema's state needs a person
 *     (`followupd status` exits non-zero).
 * They reuse the scheduler's planning (followup_plan_for,
 * followup_schedule_time_ms, followup_within_horizon) and the catch-up
 * window, lease and capture rules of the configuration, so what they say is
 * what the daemon does.  "Now" is the database clock of the read.
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_OPERATOR_SERVICE_H
#define FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_OPERATOR_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "features/deals_pipeline/services/followup_scheduler_service.h"
#include "features/deals_pipeline/services/ports.h"

/* A follow-up due longer than this without a call needs attention (as the FollowupdBookingsOverdue alert). */
#define OPERATOR_OVERDUE_S 300

enum followup_verdict {
    VERDICT_NOT_FOLLOWUP,     /* booking_type is not a follow-up type: never a task */
    VERDICT_EXECUTED,         /* called: never again */
    VERDICT_IN_PROGRESS,      /* a call is being made under a live lease */
    VERDICT_LEASE_EXPIRED,    /* in progress past the lease: the holder died */
    VERDICT_CANCELLED,        /* cancelled, nothing left to do */
    VERDICT_CANCEL,           /* cancelled by the backend / retyped: followupd cancels it and deletes its task */
    VERDICT_DROP_TASK,        /* cancelled, its task still to delete */
    VERDICT_REOPEN,           /* un-cancelled: re-opened under a new task name */
    VERDICT_HISTORY,          /* scheduled before the catch-up window: never a task */
    VERDICT_BEYOND_HORIZON,   /* after the 720 h horizon: the sweep schedules it later */
    VERDICT_AWAITS_SWEEP,     /* waiting for its task, which the periodic sweep (or the poll) creates */
    VERDICT_AWAITS_TASK,      /* waiting for its task: its notification or the next sweep creates it */
    VERDICT_SCHEDULED,        /* its task is due at scheduled_at - lead_time_s */
    VERDICT_RESCHEDULE,       /* moved since its task was made: the task is replaced */
    VERDICT_WITHDRAW,         /* moved out of the schedulable window: its task is withdrawn */
    VERDICT_RETRYING,         /* failed, retryable: the next delivery calls again with the same key */
    VERDICT_FAILED_FINAL,     /* failed for good: nothing more, unless `followupd retry` */
};

struct followup_explanation {
    enum followup_verdict verdict;
    enum followup_plan plan;      /* the scheduler's plan for the row as it is */
    int64_t at_ms;                /* the moment the reason names (0 = none) */
    char why[768];                /* one sentence for people */
};

void followup_explain(const struct config *cfg, const struct booking_detail *d, int lease_s,
                      struct followup_explanation *out);
/* "not_a_follow_up", "executed", ... (the JSON value of the verdict). */
const char *followup_verdict_name(enum followup_verdict v);

/* true: `retry` may re-drive the booking (why says what happens); false: why says why not. */
bool followup_retry_allowed(const struct config *cfg, const struct booking_detail *d, char *why, size_t cap);

#define ATTENTION_MAX 4
#define ATTENTION_LEN 200
/* What in st needs a person: the number of reasons written to reasons[] (at most ATTENTION_MAX). */
int followup_state_attention(const struct booking_state *st, char reasons[][ATTENTION_LEN]);

#endif
