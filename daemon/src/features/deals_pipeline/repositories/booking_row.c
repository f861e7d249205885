/*
 * deals_pipeline/repositories/booking_row — see the header.
 */
#include "features/deals_pipeline/repositories/booking_row.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void booking_col_copy(const PGresult *res, int row, int col, char *dst, size_t cap)
{
    dst[0] = '\0';
    if (PQgetisnull(res, row, col)) return;
    snprintf(dst, cap, "%s", PQgetvalue(res, row, col));
}

int64_t booking_col_int(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

void booking_row_parse(const PGresult *res, int row, int first, struct booking *b)
{
    memset(b, 0, sizeof(*b));
    booking_col_copy(res, row, first + 0, b->id, sizeof(b->id));
    booking_col_copy(res, row, first + 1, b->tenant_id, sizeof(b->tenant_id));
    booking_col_copy(res, row, first + 2, b->lead_id, sizeof(b->lead_id));
    booking_col_copy(res, row, first + 3, b->assigned_user_id, sizeof(b->assigned_user_id));
    booking_col_copy(res, row, first + 4, b->booking_type, sizeof(b->booking_type));
    booking_col_copy(res, row, first + 5, b->status, sizeof(b->status));
    booking_col_copy(res, row, first + 6, b->task_status, sizeof(b->task_status));
    booking_col_copy(res, row, first + 7, b->task_name, sizeof(b->task_name));
    booking_col_copy(res, row, first + 8, b->idempotency_key, sizeof(b->idempotency_key));
    b->scheduled_at_ms = booking_col_int(res, row, first + 9);
    b->task_scheduled_at_ms = booking_col_int(res, row, first + 10);
    b->execution_attempts = (int)booking_col_int(res, row, first + 11);
    b->task_generation = (int)booking_col_int(res, row, first + 12);
}
