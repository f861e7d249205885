/*
 * deals_pipeline/services/followup_sweep_service — the catch-up sweep, the
 * backstop for lossy NOTIFY.  Runs after every (re)connect of the listener
 * (LISTEN first, then the sweep) and every followup.sweep_interval_s: per
 * configured schema it asks the repository for bookings that still wait for a
 * task (pending, or failed with a due retry) scheduled inside
 * [now - catchup_window_s, now + horizon], and for live tasks that no longer
 * match their booking (cancelled, rescheduled or retyped while nobody
 * listened, or a cancelled booking whose task delete failed), and for
 * bookings un-cancelled while nobody listened, and hands them
 * to the scheduler,
 * whose coalescing and conditional updates make a booking found by both the
 * sweep and a notification (or by two replicas) get one task.  History older
 * than the window is never touched.  Batches are bounded; when a batch is
 * full, the next one runs once the scheduler has drained.  With several
 * replicas each sweep reads only the partitions this replica owns (the
 * scheduler's ownership port, filtered in SQL), and a replica that owns none
 * does not sweep; its owner requests a sweep whenever it gains partitions.
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_SWEEP_SERVICE_H
#define FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_SWEEP_SERVICE_H

#include <stdbool.h>

#include "features/deals_pipeline/services/followup_keys.h"
#include "features/deals_pipeline/services/followup_scheduler_service.h"

#define SWEEP_BATCH 500

enum sweep_phase { SWEEP_CATCHUP = 0, SWEEP_STALE_TASKS, SWEEP_REOPENED, SWEEP_LAST_PHASE = SWEEP_REOPENED };

struct followup_sweep {
    const struct config *cfg;
    struct bookings_repo *repo;
    struct followup_scheduler *sched;
    struct clock_port *clock;
    struct logger *log;
    bool running, rerun, rerun_when_idle, periodic, closed;
    int schema_idx;
    enum sweep_phase phase;      /* which read of the current schema */
    bool batch_full;
    uint64_t runs, found;
    int owned[FOLLOWUP_PARTITIONS_MAX];   /* the owned partitions of the read in flight */
    struct partition_filter filter;
};

void followup_sweep_init(struct followup_sweep *sw, const struct config *cfg, struct bookings_repo *repo,
                         struct followup_scheduler *sched, struct clock_port *clock, struct logger *log);
/* Run a sweep now (coalesced with one already running). */
void followup_sweep_request(struct followup_sweep *sw, const char *reason);
/* Arm the periodic sweep (every followup.sweep_interval_s, re-read each time). */
int followup_sweep_start_periodic(struct followup_sweep *sw);
/* Hook for followup_scheduler.on_idle: runs the next batch when one is owed. */
void followup_sweep_on_scheduler_idle(void *sweep);
void followup_sweep_close(struct followup_sweep *sw);

#endif
