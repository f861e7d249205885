/*
 * deals_pipeline/repositories/booking_state_sql — the one statement that
 * summarizes a schema's bookings by follow-up state, shared by the daemon's
 * asynchronous repository (the per-schema gauges, refreshed every
 * [followup] sweep_interval_s) and the blocking operator repository
 * (`followupd status`).
 *
 * It is a cross-tenant aggregate: counts and timestamps only, never a row or
 * an id.  Its cost is bounded by live work, not by history: three aggregates,
 * each over one of the partial indexes of migrations 003/005, so executed and
 * cancelled history (and pending history before the catch-up window, which
 * reads 'pending' after migration 001) is never read:
 *   - follow-ups waiting for a task with scheduled_at >= now - lookback
 *     (lead_bookings_followupd_sweep_idx, a range scan from there on);
 *   - rows that own a task: scheduled, cancelled with the delete still owed
 *     (lead_bookings_followupd_task_idx);
 *   - failed and in_progress rows (lead_bookings_followupd_retry_idx).
 * Parameters: $1 the follow-up booking types (text[] literal), $2 lookback s
 * (the catch-up window), $3 horizon s (the sweep's), $4 lease s.
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_BOOKING_STATE_SQL_H
#define FOLLOWUPD_DEALS_PIPELINE_BOOKING_STATE_SQL_H

#include <libpq-fe.h>

#include "features/deals_pipeline/services/ports.h"

#define BOOKING_STATE_NPARAMS 4

/* The statement template: each %s is the quoted schema (db_sql_render). */
extern const char booking_state_sql[];

/* Parameter texts of one query: params[] points into bufs / into *array (malloc'd, the caller frees it).
 * 0, or -1 on allocation failure. */
struct booking_state_params {
    char *array;
    char lookback[16], horizon[16], lease[16];
    const char *values[BOOKING_STATE_NPARAMS];
};
int booking_state_params_build(const struct booking_state_query *q, struct booking_state_params *p);
void booking_state_params_free(struct booking_state_params *p);

/* The statement's one row into *out. 0, or -1 when the result has not its shape. */
int booking_state_parse(const PGresult *res, struct booking_state *out);

#endif
