/*
 * deals_pipeline/repositories/operator_repository — the SQL of the operator
 * commands (`followupd status`, `inspect`, `retry`) over one blocking libpq
 * session: they run from the command line, never on the event loop.
 *
 *   state    the cross-tenant aggregate of booking_state_sql (BOOKING-STATE):
 *            counts and timestamps only, no row;
 *   inspect  one row, `id = $1 AND tenant_id = $2`: another tenant's booking
 *            is indistinguishable from a missing one;
 *   retry    one tenant-scoped conditional UPDATE that re-drives a booking
 *            failed for good — only from task_status 'failed' with
 *            next_attempt_at NULL, never from 'executed', only a follow-up
 *            type, not cancelled, scheduled inside the catch-up window — back
 *            to 'pending' with the next task generation (so its task gets a
 *            name it never had: Cloud Tasks reserves used names), no task, no
 *            key and fresh attempt counters; in the same statement it NOTIFYs
 *            the schema's channel with the trigger's payload (ids only), a
 *            hint that makes a listening daemon schedule it at once (the
 *            sweep does otherwise).  The idempotency key it gets again is the
 *            same (tenant, booking, scheduled_at).
 * Every statement is parameterized ($n); the schema must be one of
 * [database] schemas and is quoted with PQescapeIdentifier.  Errors come back
 * as one cleaned line, never with the conninfo.
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_OPERATOR_REPOSITORY_H
#define FOLLOWUPD_DEALS_PIPELINE_OPERATOR_REPOSITORY_H

#include <stddef.h>

#include "core/config.h"
#include "features/deals_pipeline/services/ports.h"

struct operator_repository;

/* Blocking connect (our connection defaults, the user's conninfo wins). NULL with err filled. */
struct operator_repository *operator_repository_connect(const char *conninfo, const struct strlist *schemas,
                                                        char *err, size_t errlen);
void operator_repository_close(struct operator_repository *r);

/* 0 and *out filled, or -1 with err. */
int operator_repository_state(struct operator_repository *r, const char *schema, const struct booking_state_query *q,
                              struct booking_state *out, char *err, size_t errlen);
/* 1 found (*out filled), 0 no such booking in that tenant, -1 error. */
int operator_repository_inspect(struct operator_repository *r, const char *schema, const char *tenant_id,
                                const char *booking_id, struct booking_detail *out, char *err, size_t errlen);
/* 1 re-driven, 0 not re-drivable (nothing changed: the row is not failed for good, or no longer), -1 error.
 * types/lookback_s: [followup] booking_types and catchup_window_s. */
int operator_repository_retry(struct operator_repository *r, const char *schema, const char *tenant_id,
                              const char *booking_id, const struct strlist *types, int lookback_s, char *err,
                              size_t errlen);

#endif
