/*
 * deals_pipeline/repositories/booking_row — the columns of struct booking as
 * one SELECT list, and reading them (and single columns) back from a result.
 * Shared by the daemon's asynchronous repository and the command line's
 * blocking one, so both read a row the same way.
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_BOOKING_ROW_H
#define FOLLOWUPD_DEALS_PIPELINE_BOOKING_ROW_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "features/deals_pipeline/services/ports.h"

/* Timestamps as epoch milliseconds, like the idempotency key. */
#define BOOKING_COLUMNS                                                                                               \
    "id, tenant_id, lead_id, assigned_user_id, booking_type, status, task_status, task_name, idempotency_key, "       \
    "floor(extract(epoch FROM scheduled_at) * 1000)::bigint, "                                                       \
    "floor(extract(epoch FROM task_scheduled_at) * 1000)::bigint, execution_attempts, task_generation"

#define N_BOOKING_COLUMNS 13

/* Columns first..first+12 of `row` in BOOKING_COLUMNS order into *b. */
void booking_row_parse(const PGresult *res, int row, int first, struct booking *b);
/* One text column into dst ("" when NULL; cut to cap). */
void booking_col_copy(const PGresult *res, int row, int col, char *dst, size_t cap);
/* One integer column (0 when NULL). */
int64_t booking_col_int(const PGresult *res, int row, int col);

#endif
