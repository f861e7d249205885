/*
 * deals_pipeline/repositories/booking_state_sql — see the header.  Each
 * aggregate repeats the predicate of its partial index word for word (and
 * narrows it after), so the planner can use the index.  Timestamps come back
 * as epoch milliseconds (floor, like the key), NULL when there is none.
 */
#include "features/deals_pipeline/repositories/booking_state_sql.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/deals_pipeline/repositories/booking_row.h"
#include "shared/db/db_util.h"

/* compliance: cross-tenant BOOKING-STATE — the state of every tenant's follow-ups for `followupd status` and the
   per-schema gauges; counts and timestamps only, no row, no id, over the three partial indexes. */
const char booking_state_sql[] =
    "SELECT p.waiting, p.waiting_due, p.beyond_horizon, t.scheduled, t.scheduled_due, t.cancel_owed,"
    " r.in_progress, r.lease_expired, r.failed_retryable, r.failed_final, r.failed_final_recent,"
    " floor(extract(epoch FROM p.oldest) * 1000)::bigint,"
    " floor(extract(epoch FROM LEAST(p.next, t.next)) * 1000)::bigint,"
    " floor(extract(epoch FROM LEAST(p.oldest_due, t.oldest_due)) * 1000)::bigint,"
    " floor(extract(epoch FROM r.oldest_started) * 1000)::bigint,"
    " floor(extract(epoch FROM r.oldest_failed) * 1000)::bigint,"
    " floor(extract(epoch FROM now()) * 1000)::bigint FROM"
    " (SELECT count(*) FILTER (WHERE scheduled_at <= now() + make_interval(secs => $3::int)) AS waiting,"
    "  count(*) FILTER (WHERE scheduled_at <= now()) AS waiting_due,"
    "  count(*) FILTER (WHERE scheduled_at > now() + make_interval(secs => $3::int)) AS beyond_horizon,"
    "  min(scheduled_at) FILTER (WHERE scheduled_at <= now() + make_interval(secs => $3::int)) AS oldest,"
    "  min(scheduled_at) FILTER (WHERE scheduled_at > now()) AS next,"
    "  min(scheduled_at) FILTER (WHERE scheduled_at <= now()) AS oldest_due"
    "  FROM %s.lead_bookings WHERE task_status IN ('pending', 'failed', 'in_progress') AND task_status = 'pending'"
    "  AND booking_type = ANY($1::text[]) AND status <> 'cancelled'"
    "  AND scheduled_at >= now() - make_interval(secs => $2::int)) p,"
    " (SELECT count(*) FILTER (WHERE task_status = 'scheduled') AS scheduled,"
    "  count(*) FILTER (WHERE task_status = 'scheduled' AND status <> 'cancelled' AND scheduled_at <= now())"
    "   AS scheduled_due,"
    "  count(*) FILTER (WHERE task_status = 'cancelled') AS cancel_owed,"
    "  min(scheduled_at) FILTER (WHERE task_status = 'scheduled' AND status <> 'cancelled' AND scheduled_at > now())"
    "   AS next,"
    "  min(scheduled_at) FILTER (WHERE task_status = 'scheduled' AND status <> 'cancelled' AND scheduled_at <= now())"
    "   AS oldest_due"
    "  FROM %s.lead_bookings WHERE task_name IS NOT NULL AND task_status IN ('scheduled', 'cancelled')) t,"
    " (SELECT count(*) FILTER (WHERE task_status = 'in_progress') AS in_progress,"
    "  count(*) FILTER (WHERE task_status = 'in_progress'"
    "   AND execution_started_at < now() - make_interval(secs => $4::int)) AS lease_expired,"
    "  count(*) FILTER (WHERE task_status = 'failed' AND next_attempt_at IS NOT NULL) AS failed_retryable,"
    "  count(*) FILTER (WHERE task_status = 'failed' AND next_attempt_at IS NULL) AS failed_final,"
    "  count(*) FILTER (WHERE task_status = 'failed' AND next_attempt_at IS NULL"
    "   AND scheduled_at >= now() - make_interval(secs => $2::int)) AS failed_final_recent,"
    "  min(execution_started_at) FILTER (WHERE task_status = 'in_progress') AS oldest_started,"
    "  min(scheduled_at) FILTER (WHERE task_status = 'failed') AS oldest_failed"
    "  FROM %s.lead_bookings WHERE task_status IN ('failed', 'in_progress')) r";

int booking_state_params_build(const struct booking_state_query *q, struct booking_state_params *p)
{
    memset(p, 0, sizeof(*p));
    p->array = db_text_array_literal(q->types->items, q->types->n);
    if (p->array == NULL) return -1;
    snprintf(p->lookback, sizeof(p->lookback), "%d", q->lookback_s);
    snprintf(p->horizon, sizeof(p->horizon), "%d", q->horizon_s);
    snprintf(p->lease, sizeof(p->lease), "%d", q->lease_s);
    const char *values[BOOKING_STATE_NPARAMS] = {p->array, p->lookback, p->horizon, p->lease};
    memcpy(p->values, values, sizeof(values));
    return 0;
}

void booking_state_params_free(struct booking_state_params *p)
{
    free(p->array);
    p->array = NULL;
}

int booking_state_parse(const PGresult *res, struct booking_state *out)
{
    memset(out, 0, sizeof(*out));
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 17)
        return -1;
    int64_t *counts[] = {&out->waiting,      &out->waiting_due,      &out->beyond_horizon,   &out->scheduled,
                         &out->scheduled_due, &out->cancel_owed,      &out->in_progress,      &out->lease_expired,
                         &out->failed_retryable, &out->failed_final, &out->failed_final_recent,
                         &out->oldest_waiting_ms, &out->next_due_ms, &out->oldest_due_ms,
                         &out->oldest_in_progress_ms, &out->oldest_failed_ms, &out->db_now_ms};
    for (int c = 0; c < 17; c++) *counts[c] = booking_col_int(res, 0, c);
    return 0;
}
