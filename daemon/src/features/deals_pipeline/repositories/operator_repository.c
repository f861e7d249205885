/*
 * deals_pipeline/repositories/operator_repository — see the header.  The
 * statements are templates with %s for the quoted schema, rendered per call
 * (a command runs a handful of statements); timestamps come back as epoch
 * milliseconds.
 */
#include "features/deals_pipeline/repositories/operator_repository.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/deals_pipeline/repositories/booking_row.h"
#include "features/deals_pipeline/repositories/booking_state_sql.h"
#include "shared/db/db_migrate.h"
#include "shared/db/db_util.h"

/* The row with every followupd column; $1 id, $2 tenant. */
static const char inspect_sql[] =
    "SELECT " BOOKING_COLUMNS ", floor(extract(epoch FROM executed_at) * 1000)::bigint,"
    " floor(extract(epoch FROM execution_started_at) * 1000)::bigint,"
    " floor(extract(epoch FROM next_attempt_at) * 1000)::bigint, schedule_attempts, last_execution_error,"
    " floor(extract(epoch FROM now()) * 1000)::bigint FROM %s.lead_bookings WHERE id = $1 AND tenant_id = $2";

/* $1 id, $2 tenant, $3 follow-up types, $4 catch-up window s, $5 the schema name (channel and payload). */
static const char retry_sql[] =
    "WITH redriven AS ("
    " UPDATE %s.lead_bookings SET task_status = 'pending', task_name = NULL, idempotency_key = NULL,"
    " task_scheduled_at = NULL, task_generation = task_generation + 1, next_attempt_at = NULL,"
    " execution_started_at = NULL, execution_attempts = 0, schedule_attempts = 0"
    " WHERE id = $1 AND tenant_id = $2 AND task_status = 'failed' AND next_attempt_at IS NULL"
    " AND status <> 'cancelled' AND booking_type = ANY($3::text[])"
    " AND scheduled_at >= now() - make_interval(secs => $4::int)"
    " RETURNING id, tenant_id)"
    " SELECT pg_notify('followupd_' || md5($5::text), json_build_object('schema', $5::text, 'tenantId', tenant_id,"
    " 'bookingId', id, 'op', 'UPDATE')::text) FROM redriven";

struct operator_repository {
    PGconn *conn;
    const struct strlist *schemas;
};

struct operator_repository *operator_repository_connect(const char *conninfo, const struct strlist *schemas,
                                                        char *err, size_t errlen)
{
    struct operator_repository *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->schemas = schemas;
    if ((r->conn = db_blocking_connect(conninfo, err, errlen)) == NULL) {
        operator_repository_close(r);
        return NULL;
    }
    return r;
}

void operator_repository_close(struct operator_repository *r)
{
    if (r == NULL) return;
    if (r->conn != NULL) PQfinish(r->conn);
    free(r);
}

/* The template rendered for an allowlisted schema (malloc'd), or NULL with err. */
static char *statement_for(struct operator_repository *r, const char *schema, const char *tmpl, char *err,
                           size_t errlen)
{
    if (!strlist_contains(r->schemas, schema)) {
        snprintf(err, errlen, "schema '%s' is not in [database] schemas", schema);
        return NULL;
    }
    char *quoted = PQescapeIdentifier(r->conn, schema, strlen(schema));
    char *sql = quoted != NULL ? db_sql_render(tmpl, quoted) : NULL;
    if (sql == NULL) db_message_clean(quoted == NULL ? PQerrorMessage(r->conn) : "out of memory", err, errlen);
    PQfreemem(quoted);
    return sql;
}

/* Run one statement; the result (PGRES_TUPLES_OK) or NULL with err. */
static PGresult *run(struct operator_repository *r, const char *schema, const char *tmpl, int n,
                     const char *const *params, char *err, size_t errlen)
{
    char *sql = statement_for(r, schema, tmpl, err, errlen);
    if (sql == NULL) return NULL;
    PGresult *res = PQexecParams(r->conn, sql, n, NULL, params, NULL, NULL, 0);
    free(sql);
    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK) return res;
    db_message_clean(res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(r->conn), err, errlen);
    PQclear(res);
    return NULL;
}

int operator_repository_state(struct operator_repository *r, const char *schema, const struct booking_state_query *q,
                              struct booking_state *out, char *err, size_t errlen)
{
    struct booking_state_params p;
    if (booking_state_params_build(q, &p) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    PGresult *res = run(r, schema, booking_state_sql, BOOKING_STATE_NPARAMS, p.values, err, errlen);
    booking_state_params_free(&p);
    int rc = res != NULL && booking_state_parse(res, out) == 0 ? 0 : -1;
    if (res != NULL && rc != 0) snprintf(err, errlen, "unexpected result shape");
    PQclear(res);
    return rc;
}

static void parse_detail(const PGresult *res, struct booking_detail *d)
{
    memset(d, 0, sizeof(*d));
    booking_row_parse(res, 0, 0, &d->b);
    d->executed_at_ms = booking_col_int(res, 0, N_BOOKING_COLUMNS);
    d->execution_started_at_ms = booking_col_int(res, 0, N_BOOKING_COLUMNS + 1);
    d->next_attempt_at_ms = booking_col_int(res, 0, N_BOOKING_COLUMNS + 2);
    d->schedule_attempts = (int)booking_col_int(res, 0, N_BOOKING_COLUMNS + 3);
    booking_col_copy(res, 0, N_BOOKING_COLUMNS + 4, d->last_execution_error, sizeof(d->last_execution_error));
    d->db_now_ms = booking_col_int(res, 0, N_BOOKING_COLUMNS + 5);
}

int operator_repository_inspect(struct operator_repository *r, const char *schema, const char *tenant_id,
                                const char *booking_id, struct booking_detail *out, char *err, size_t errlen)
{
    const char *params[] = {booking_id, tenant_id};
    PGresult *res = run(r, schema, inspect_sql, 2, params, err, errlen);
    if (res == NULL) return -1;
    int found = PQntuples(res) == 1 && PQnfields(res) == N_BOOKING_COLUMNS + 6;
    if (found) parse_detail(res, out);
    PQclear(res);
    return found;
}

int operator_repository_retry(struct operator_repository *r, const char *schema, const char *tenant_id,
                              const char *booking_id, const struct strlist *types, int lookback_s, char *err,
                              size_t errlen)
{
    char *array = db_text_array_literal(types->items, types->n), lookback[16];
    if (array == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(lookback, sizeof(lookback), "%d", lookback_s);
    const char *params[] = {booking_id, tenant_id, array, lookback, schema};
    PGresult *res = run(r, schema, retry_sql, 5, params, err, errlen);
    free(array);
    if (res == NULL) return -1;
    int redriven = PQntuples(res) == 1;
    PQclear(res);
    return redriven;
}
