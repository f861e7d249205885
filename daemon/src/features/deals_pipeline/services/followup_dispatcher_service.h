/*
 * deals_pipeline/services/followup_dispatcher_service — the local durable
 * dispatcher (queue.backend = local).  The "task" is the row itself (task_name
 * local/<id>, task_scheduled_at, task_status), so it survives restarts.
 *
 * One timer, armed for the earliest moment any local task is due across all
 * schemas (the repository answers with one indexed query per schema; no timer
 * per booking).  It is re-armed whenever something may have changed
 * (dispatcher_poke: after the scheduler drains a NOTIFY burst, after a sweep,
 * after each dispatch round) and never sleeps longer than the sweep interval,
 * so work scheduled by another replica is picked up too.  When it fires, due
 * rows are read in bounded batches (FOR UPDATE SKIP LOCKED) and each is run by
 * the SAME execution service as the HTTP callback: same claim, same lease,
 * same voice-agent call, same idempotency — two replicas firing together still
 * make one call.  Failures retry with exponential backoff (the execution
 * service records next_attempt_at) up to followup.max_attempts.
 *
 * Fast path: when the scheduler records a task that is already due (a booking
 * for "now"), the dispatcher runs it at once, without the scan → timer →
 * due-rows detour (one commit less before the call, no wait for a round in
 * progress); a task due later only pulls the timer earlier.  The claim is the
 * same conditional statement, so a round that finds the same row meanwhile
 * makes no second call.  At most DISPATCH_IMMEDIATE_MAX such runs at once;
 * beyond that the row simply waits for the next round.
 *
 * Fair order: a round reads the due rows round-robin across tenants (each
 * tenant's oldest first, then every tenant's second, ...), so a tenant with
 * thousands of due bookings cannot push another tenant's due booking behind
 * them: with k tenants due, every tenant's oldest due booking is among the
 * first k rows of the round.  With [voice_agent] max_concurrent set, a round
 * reads at most that many rows (no more could be claimed at once).
 *
 * Deferrals: a run over a cap (EXEC_DEFERRED) leaves its row due.  When every
 * run of a round was deferred (or a fast-path run was), the dispatcher holds:
 * its timer does not fire before a call of this process ends (a slot frees)
 * or the deferral's Retry-After passes (slots held by other replicas), so a
 * full cap never turns into a busy loop of claims.
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_DISPATCHER_SERVICE_H
#define FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_DISPATCHER_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "features/deals_pipeline/services/followup_execution_service.h"
#include "features/deals_pipeline/services/followup_scheduler_service.h"
#include "features/deals_pipeline/services/ports.h"

#define DISPATCH_BATCH 100
#define DISPATCH_IMMEDIATE_MAX 64

struct armed_timer;

struct followup_dispatcher {
    const struct config *cfg;
    struct bookings_repo *repo;
    struct followup_execution_service *exec;
    struct clock_port *clock;
    struct logger *log;
    bool closed;
    /* earliest-due scan */
    bool scanning, rescan;
    int scan_idx;
    int64_t scan_min_ms;
    /* the one live timer: armed_due_ms == 0 means none */
    int64_t armed_due_ms;
    uint64_t timer_gen;
    struct armed_timer *timers;  /* every timer not fired yet (superseded ones too), for followup_dispatcher_free */
    /* a dispatch round */
    bool dispatching;
    int round_idx;
    unsigned running;            /* executions started by this round and not finished */
    bool round_full;             /* some schema returned a full batch: run again at once */
    bool round_again;            /* the timer fired during the round: run again when it ends */
    unsigned immediate_running;  /* fast-path executions not finished */
    unsigned round_deferred;     /* runs of this round deferred by a cap */
    unsigned round_progress;     /* runs of this round that were not deferred */
    int round_retry_after_s;     /* the last deferral's Retry-After */
    int64_t hold_until_ms;       /* 0, or: everything due was deferred; no round before then (or a call ends) */
    uint64_t dispatched, rounds, dispatched_immediately, deferred, holds;
};

void followup_dispatcher_init(struct followup_dispatcher *d, const struct config *cfg, struct bookings_repo *repo,
                              struct followup_execution_service *exec, struct clock_port *clock, struct logger *log);
/* Something may have changed: re-read the earliest due time and re-arm. */
void followup_dispatcher_poke(struct followup_dispatcher *d);
/* The scheduler recorded a local task (struct recorded_task): run it now when due, else arm for it. */
void followup_dispatcher_task_recorded(struct followup_dispatcher *d, const struct recorded_task *t);
void followup_dispatcher_close(struct followup_dispatcher *d);
/* After the loop's timers are closed (none can fire any more): frees what the timers that never fired hold. */
void followup_dispatcher_free(struct followup_dispatcher *d);

#endif
