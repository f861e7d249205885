/*
 * deals_pipeline/repositories/bookings_repository — see the header.  The SQL
 * text of each statement is a template with one %s (the quoted schema); the
 * claim statement is the heart of idempotent execution: one statement locks
 * the row (FOR UPDATE), claims it only when claimable, and reports what it
 * found, so concurrent deliveries serialize on the row lock.
 */
#include "features/deals_pipeline/repositories/bookings_repository.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/db/db_pool.h"
#include "features/deals_pipeline/repositories/booking_row.h"
#include "features/deals_pipeline/repositories/booking_state_sql.h"
#include "shared/db/db_util.h"

enum stmt {
    ST_LOAD,
    ST_MARK_SCHEDULED,
    ST_MARK_SCHEDULE_FAILED,
    ST_CLAIM,
    ST_CLAIM_CAPPED,
    ST_MARK_EXPIRED,
    ST_MARK_EXECUTED,
    ST_MARK_EXEC_FAILED,
    ST_FIND_CATCHUP,
    ST_MARK_RESCHEDULED,
    ST_MARK_CANCELLED,
    ST_CLEAR_TASK_NAME,
    ST_REOPEN,
    ST_FIND_STALE_TASKS,
    ST_FIND_REOPENED,
    ST_NEXT_DUE,
    ST_FIND_DUE,
    ST_UNSCHEDULE,
    ST_CAPTURE_TRIGGERS,
    ST_BOOKING_STATE,
    ST_COUNT
};

/* The local dispatcher's two reads (ST_NEXT_DUE, ST_FIND_DUE) must select exactly the same rows: a due time
 * for a row the due-rows query skips re-arms the timer in the past again and again (a busy loop).  A live local
 * task belongs to a booking that is not cancelled and has a key.  A scheduled or retrying task is current only
 * while the booking's scheduled_at still matches task_scheduled_at (milliseconds, like the key): a booking moved
 * while nobody listened is not due under its old key — the task sweep (or the NOTIFY) reschedules it first.  The
 * same holds for an abandoned lease (in_progress, its holder died): the claim takes it again only in step. */
#define LOCAL_TASK_LIVE " task_name LIKE 'local/%%' AND status <> 'cancelled' AND idempotency_key IS NOT NULL"
#define LOCAL_TASK_CURRENT                                                                                        \
    " floor(extract(epoch FROM scheduled_at) * 1000) = floor(extract(epoch FROM task_scheduled_at) * 1000)"

/* The claim (ST_CLAIM, ST_CLAIM_CAPPED).  CLAIM_TARGET reads the row (alias b) as the claim decides on it, by
 * the database's now(): in_step — scheduled_at still the time the task was made for (a booking moved while
 * nobody listened is stale; the sweep replaces its task); early_s > 0 — delivered that many seconds (rounded
 * up) before scheduled_at - $5; expired — reached after scheduled_at + $6 (late_s: seconds after scheduled_at);
 * backoff_s > 0 — a retryable failure whose next_attempt_at (the voice agent's Retry-After, or the local
 * backoff) is that far ahead; leased — another delivery holds a live lease ($4). */
#define CLAIM_TARGET                                                                                              \
    " SELECT b.id, b.tenant_id, b.status, b.task_status, b.idempotency_key, b.execution_started_at,"              \
    " b.next_attempt_at, b.last_execution_error, b.scheduled_at,"                                                 \
    " COALESCE(floor(extract(epoch FROM b.scheduled_at) * 1000)"                                                 \
    "  = floor(extract(epoch FROM b.task_scheduled_at) * 1000), false) AS in_step,"                              \
    " ceil(extract(epoch FROM b.scheduled_at - make_interval(secs => $5::int) - now()))::bigint AS early_s,"      \
    " floor(extract(epoch FROM now() - b.scheduled_at))::bigint AS late_s,"                                      \
    " COALESCE(now() > b.scheduled_at + make_interval(secs => $6::int), false) AS expired,"                     \
    " ceil(extract(epoch FROM b.next_attempt_at - now()))::bigint AS backoff_s,"                                 \
    " b.task_status = 'in_progress' AND b.execution_started_at >= now() - make_interval(secs => $4::int) AS leased"

/* Claimable: not cancelled, the callback's key and in step, not early, and pending/scheduled, or failed and
 * retryable from now on, or in_progress with an expired lease ($4). */
#define CLAIMABLE                                                                                                 \
    " t.status <> 'cancelled' AND t.idempotency_key = $3 AND t.in_step AND COALESCE(t.early_s <= 0, true)"        \
    " AND (t.task_status IN ('pending', 'scheduled')"                                                            \
    "  OR (t.task_status = 'failed' AND t.next_attempt_at <= now())"                                             \
    "  OR (t.task_status = 'in_progress' AND t.execution_started_at < now() - make_interval(secs => $4::int)))"

/* A claimable row becomes in_progress (attempt + 1, lease from now), or, when expired, failed for good with
 * "expired: ..." (no attempt, no lease). */
#define CLAIM_SET                                                                                                 \
    " SET task_status = CASE WHEN t.expired THEN 'failed' ELSE 'in_progress' END,"                               \
    " execution_attempts = b.execution_attempts + CASE WHEN t.expired THEN 0 ELSE 1 END,"                        \
    " execution_started_at = CASE WHEN t.expired THEN b.execution_started_at ELSE now() END,"                   \
    " next_attempt_at = CASE WHEN t.expired THEN NULL ELSE b.next_attempt_at END,"                               \
    " last_execution_error = CASE WHEN t.expired THEN left(format("                                              \
    "'expired: reached %%s s after scheduled_at, %%s s past followup.max_lateness_s = %%s',"                     \
    " t.late_s, t.late_s - $6::int, $6::int), 500) ELSE b.last_execution_error END"

#define CLAIM_RETURNING                                                                                           \
    " RETURNING b.id, b.tenant_id, b.lead_id, b.assigned_user_id, b.booking_type, b.status, b.task_status,"       \
    " b.task_name, b.idempotency_key, floor(extract(epoch FROM b.scheduled_at) * 1000)::bigint,"                \
    " floor(extract(epoch FROM b.task_scheduled_at) * 1000)::bigint, b.execution_attempts, b.task_generation,"   \
    " t.expired"

/* What the claim found: the claimed (or expired) row, then the row as it was (see classify_claim). */
#define CLAIM_ANSWER                                                                                              \
    " SELECT c.*, t.status, t.task_status, t.idempotency_key = $3 AND t.in_step, t.next_attempt_at IS NOT NULL,"  \
    " t.early_s, t.task_status = 'failed' AND t.next_attempt_at IS NULL"                                         \
    "  AND COALESCE(t.last_execution_error LIKE 'expired:%%', false), t.late_s, t.backoff_s,"                    \
    " t.tenant_live, t.all_live, t.over, t.leased, floor(extract(epoch FROM t.scheduled_at) * 1000)::bigint"    \
    " FROM target t LEFT JOIN claimed c ON true"

/* The advisory-lock classes of the capped claim (the two-int form: never equal to a one-bigint key): the
 * all-tenant key is (ALL, 0), a tenant's (TENANT, hashtext(tenant_id)). */
#define CLAIM_LOCK_CLASS_ALL "1718972160"
#define CLAIM_LOCK_CLASS_TENANT "1718972161"

/* The sweeps read only the bookings of the partitions this replica owns (owned: an int[] parameter, NULL when it
 * owns every one; count: the partition count), filtered on top of each read's partial index. */
#define OWNED_PARTITION(owned, count) \
    " AND (" owned "::int[] IS NULL OR " BOOKING_PARTITION_SQL("id", count "::int") " = ANY(" owned "::int[]))"

static const char *const templates[ST_COUNT] = {
    [ST_LOAD] = "SELECT " BOOKING_COLUMNS " FROM %s.lead_bookings WHERE id = $1 AND tenant_id = $2",

    /* Only from pending/failed, only for the scheduled_at the key was computed for. */
    [ST_MARK_SCHEDULED] =
        "UPDATE %s.lead_bookings SET task_status = 'scheduled', task_name = $3, "
        "task_scheduled_at = timestamptz 'epoch' + $4::bigint * interval '1 millisecond', "
        "idempotency_key = $5, last_execution_error = NULL, next_attempt_at = NULL "
        "WHERE id = $1 AND tenant_id = $2 AND task_status IN ('pending', 'failed') AND status <> 'cancelled' "
        "AND floor(extract(epoch FROM scheduled_at) * 1000)::bigint = $6::bigint",

    [ST_MARK_SCHEDULE_FAILED] =
        "UPDATE %s.lead_bookings SET task_status = 'failed', last_execution_error = left($3, 500), "
        "schedule_attempts = schedule_attempts + 1, next_attempt_at = NULL "
        "WHERE id = $1 AND tenant_id = $2 AND task_status = 'pending'",

    /* $1 id, $2 tenant, $3 idempotency key, $4 lease seconds, $5 early window seconds, $6 max lateness seconds
       ($5/$6 NULL: no check); see CLAIM_TARGET. */
    [ST_CLAIM] =
        "WITH target AS (" CLAIM_TARGET ", NULL::bigint AS tenant_live, NULL::bigint AS all_live, NULL::text AS over"
        " FROM %s.lead_bookings b WHERE b.id = $1 AND b.tenant_id = $2 FOR UPDATE"
        "), claimed AS (UPDATE %s.lead_bookings b" CLAIM_SET " FROM target t WHERE b.id = t.id AND b.tenant_id = $2"
        " AND" CLAIMABLE CLAIM_RETURNING ")" CLAIM_ANSWER,

    /* compliance: cross-tenant CLAIM-SLOTS — the all-tenant cap ($8) is the number of live leases of every
       tenant: followupd_live_leases($9 schemas, NULL, ...) returns that number only; the row read and written
       is this tenant's (id = $1 AND tenant_id = $2).  The claim with caps: $7 tenant cap, $8 all-tenant cap
       (NULL: none), $9 the configured schemas.  It first takes the advisory locks (the global key, then the
       tenant's), then counts the live leases with followupd_live_leases() (migration 008: VOLATILE, so it reads
       a snapshot taken after the locks and sees every claim committed before), then locks the row: the order
       global lock → tenant lock → row is the same for every claim, so claims cannot deadlock; a claim holding
       a row lock without these locks (the uncapped claim, the other statements) never waits for them. */
    [ST_CLAIM_CAPPED] =
        "WITH global_gate AS MATERIALIZED (SELECT CASE WHEN $8::int IS NOT NULL THEN"
        " pg_advisory_xact_lock(" CLAIM_LOCK_CLASS_ALL ", 0) END AS lock"
        "), tenant_gate AS MATERIALIZED (SELECT CASE WHEN $7::int IS NOT NULL THEN"
        " pg_advisory_xact_lock(" CLAIM_LOCK_CLASS_TENANT ", hashtext($2::uuid::text)) END AS lock FROM global_gate"
        "), slots AS MATERIALIZED (SELECT"
        " CASE WHEN $7::int IS NOT NULL THEN %s.followupd_live_leases($9::text[], $2::uuid, $4::int) END AS tenant_live,"
        " CASE WHEN $8::int IS NOT NULL THEN %s.followupd_live_leases($9::text[], NULL, $4::int) END AS all_live"
        " FROM tenant_gate"
        "), target AS (" CLAIM_TARGET ", s.tenant_live, s.all_live,"
        " CASE WHEN s.tenant_live >= $7::int THEN 'tenant' WHEN s.all_live >= $8::int THEN 'global' END AS over"
        " FROM %s.lead_bookings b CROSS JOIN slots s WHERE b.id = $1 AND b.tenant_id = $2 FOR UPDATE OF b"
        "), claimed AS (UPDATE %s.lead_bookings b" CLAIM_SET " FROM target t WHERE b.id = t.id AND b.tenant_id = $2"
        " AND" CLAIMABLE " AND (t.expired OR t.over IS NULL)" CLAIM_RETURNING ")" CLAIM_ANSWER,

    /* $3 scheduled_at ms (re-checked), $4 error.  Only rows that could still get a task (pending, or failed and
       retryable): a final failure keeps its own error. */
    [ST_MARK_EXPIRED] =
        "UPDATE %s.lead_bookings SET task_status = 'failed', last_execution_error = left($4, 500), "
        "next_attempt_at = NULL "
        "WHERE id = $1 AND tenant_id = $2 AND status <> 'cancelled' "
        "AND (task_status = 'pending' OR (task_status = 'failed' AND next_attempt_at IS NOT NULL)) "
        "AND floor(extract(epoch FROM scheduled_at) * 1000)::bigint = $3::bigint",

    /* compliance: cross-tenant CATCHUP-SWEEP — the catch-up after every (re)connect and the periodic backstop
       must find work of every tenant of the schema (in the partitions this replica owns, $6/$7); it returns
       ids only, and each booking is then re-read and written with its own tenant_id. */
    [ST_FIND_CATCHUP] =
        "SELECT tenant_id, id FROM %s.lead_bookings"
        " WHERE task_status IN ('pending', 'failed')"
        " AND (task_status = 'pending' OR next_attempt_at <= now())"
        " AND booking_type = ANY($1::text[]) AND status <> 'cancelled'"
        " AND scheduled_at >= timestamptz 'epoch' + $5::bigint * interval '1 millisecond'"
        "  - make_interval(secs => $2::int)"
        " AND scheduled_at <= timestamptz 'epoch' + $5::bigint * interval '1 millisecond'"
        "  + make_interval(secs => $3::int)" OWNED_PARTITION("$6", "$7")
        " ORDER BY scheduled_at LIMIT $4::int FOR UPDATE SKIP LOCKED",

    /* $3 new task name, $4 key, $5 scheduled_at ms (re-checked), $6 old task name, $7 new generation. */
    [ST_MARK_RESCHEDULED] =
        "UPDATE %s.lead_bookings SET task_name = $3, idempotency_key = $4, "
        "task_scheduled_at = timestamptz 'epoch' + $5::bigint * interval '1 millisecond', task_generation = $7::int "
        "WHERE id = $1 AND tenant_id = $2 AND task_status = 'scheduled' AND task_name = $6 "
        "AND task_generation = $7::int - 1 AND floor(extract(epoch FROM scheduled_at) * 1000)::bigint = $5::bigint",

    /* $3 old task name, $4 scheduled_at ms (re-checked). The old key goes with the task: its callback is stale. */
    [ST_UNSCHEDULE] =
        "UPDATE %s.lead_bookings SET task_status = 'pending', task_name = NULL, idempotency_key = NULL, "
        "task_scheduled_at = NULL, task_generation = task_generation + 1 "
        "WHERE id = $1 AND tenant_id = $2 AND task_status = 'scheduled' AND task_name = $3 "
        "AND floor(extract(epoch FROM scheduled_at) * 1000)::bigint = $4::bigint",

    [ST_MARK_CANCELLED] =
        "UPDATE %s.lead_bookings SET task_status = 'cancelled', next_attempt_at = NULL "
        "WHERE id = $1 AND tenant_id = $2 AND task_status IN ('pending', 'scheduled', 'failed')",

    [ST_CLEAR_TASK_NAME] =
        "UPDATE %s.lead_bookings SET task_name = NULL "
        "WHERE id = $1 AND tenant_id = $2 AND task_status = 'cancelled' AND task_name = $3",

    [ST_REOPEN] =
        "UPDATE %s.lead_bookings SET task_status = 'pending', idempotency_key = NULL, task_scheduled_at = NULL, "
        "task_generation = task_generation + 1, last_execution_error = NULL, next_attempt_at = NULL "
        "WHERE id = $1 AND tenant_id = $2 AND task_status = 'cancelled' AND task_name IS NULL",

    /* compliance: cross-tenant TASK-SWEEP — tasks whose booking changed while followupd was not listening
       (cancelled, rescheduled, type changed) must be found for every tenant of the schema; ids only, each
       booking is then re-read and written by tenant-scoped statements.  "Moved" compares milliseconds, like
       the key and task_scheduled_at: a booking written with microseconds has not moved.  Only the partitions
       this replica owns ($3/$4). */
    [ST_FIND_STALE_TASKS] =
        "SELECT tenant_id, id FROM %s.lead_bookings"
        " WHERE task_name IS NOT NULL AND task_status IN ('scheduled', 'cancelled')"
        " AND (task_status = 'cancelled' OR status = 'cancelled'"
        "  OR floor(extract(epoch FROM scheduled_at) * 1000) IS DISTINCT FROM"
        "   floor(extract(epoch FROM task_scheduled_at) * 1000)"
        "  OR NOT booking_type = ANY($1::text[]))" OWNED_PARTITION("$3", "$4")
        " ORDER BY scheduled_at LIMIT $2::int FOR UPDATE SKIP LOCKED",

    /* compliance: cross-tenant TASK-SWEEP — bookings un-cancelled while followupd was not listening, for every
       tenant of the schema (in the partitions this replica owns, $6/$7); ids only, each is then re-read and
       re-opened by tenant-scoped statements. */
    [ST_FIND_REOPENED] =
        "SELECT tenant_id, id FROM %s.lead_bookings"
        " WHERE task_status = 'cancelled' AND status <> 'cancelled' AND task_name IS NULL"
        " AND booking_type = ANY($1::text[])"
        " AND scheduled_at >= timestamptz 'epoch' + $5::bigint * interval '1 millisecond'"
        "  - make_interval(secs => $2::int)"
        " AND scheduled_at <= timestamptz 'epoch' + $5::bigint * interval '1 millisecond'"
        "  + make_interval(secs => $3::int)" OWNED_PARTITION("$6", "$7")
        " ORDER BY scheduled_at LIMIT $4::int FOR UPDATE SKIP LOCKED",

    /* compliance: cross-tenant LOCAL-DISPATCH — the local dispatcher keeps one timer for the earliest due
       follow-up of every tenant (no per-booking timers); returns a timestamp only. $1 lead s, $2 lease s. */
    [ST_NEXT_DUE] =
        "SELECT floor(extract(epoch FROM least("
        "(SELECT scheduled_at - make_interval(secs => $1::int) FROM %s.lead_bookings"
        "  WHERE task_name IS NOT NULL AND task_status IN ('scheduled', 'cancelled') AND task_status = 'scheduled'"
        "  AND" LOCAL_TASK_LIVE " AND" LOCAL_TASK_CURRENT " ORDER BY scheduled_at LIMIT 1),"
        "(SELECT min(next_attempt_at) FROM %s.lead_bookings"
        "  WHERE task_status IN ('failed', 'in_progress') AND task_status = 'failed'"
        "  AND" LOCAL_TASK_LIVE " AND" LOCAL_TASK_CURRENT "),"
        "(SELECT min(execution_started_at) + make_interval(secs => $2::int) FROM %s.lead_bookings"
        "  WHERE task_status IN ('failed', 'in_progress') AND task_status = 'in_progress'"
        "  AND" LOCAL_TASK_LIVE " AND" LOCAL_TASK_CURRENT "))) * 1000)::bigint",

    /* compliance: cross-tenant LOCAL-DISPATCH — due local tasks of every tenant; each is then claimed and
       executed by the tenant-scoped claim statement. $1 lead s, $2 lease s, $3 limit.  Fair order: the due rows
       are served round-robin across tenants — each tenant's oldest first (turn 1 of every tenant, then turn 2,
       ...), by scheduled_at within a turn — so one tenant's backlog cannot push another tenant's due booking
       behind it.  No FOR UPDATE SKIP LOCKED: PostgreSQL refuses it beside a window function, and locking every
       due row (the window must read them all) would cost a row lock each; the claim is what serializes. */
    [ST_FIND_DUE] =
        "SELECT tenant_id, id, idempotency_key FROM ("
        "SELECT tenant_id, id, idempotency_key, scheduled_at,"
        " row_number() OVER (PARTITION BY tenant_id ORDER BY scheduled_at, id) AS turn FROM %s.lead_bookings"
        " WHERE" LOCAL_TASK_LIVE " AND ("
        " (task_status = 'scheduled' AND scheduled_at <= now() + make_interval(secs => $1::int)"
        "  AND" LOCAL_TASK_CURRENT ")"
        " OR (task_status = 'failed' AND next_attempt_at <= now() AND" LOCAL_TASK_CURRENT ")"
        " OR (task_status = 'in_progress' AND execution_started_at <= now() - make_interval(secs => $2::int)"
        "  AND" LOCAL_TASK_CURRENT "))"
        ") due ORDER BY turn, scheduled_at, id LIMIT $3::int",

    /* compliance: cross-tenant CAPTURE-CHECK — a catalog read, no booking row: followupd's NOTIFY triggers on this
       schema's lead_bookings and their arguments (encode(tgargs, 'escape'): each argument followed by \\000).
       $1 the schema name. */
    [ST_CAPTURE_TRIGGERS] =
        "SELECT t.tgname, t.tgenabled <> 'D', encode(t.tgargs, 'escape') FROM pg_trigger t"
        " JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relname = 'lead_bookings' AND NOT t.tgisinternal"
        " AND t.tgname IN ('followupd_notify_insert', 'followupd_notify_update', 'followupd_notify_delete')"
        " ORDER BY t.tgname",

    [ST_BOOKING_STATE] = booking_state_sql, /* cross-tenant BOOKING-STATE (booking_state_sql.c) */

    [ST_MARK_EXECUTED] =
        "UPDATE %s.lead_bookings SET task_status = 'executed', executed_at = now(), last_execution_error = NULL, "
        "next_attempt_at = NULL "
        "WHERE id = $1 AND tenant_id = $2 AND idempotency_key = $3 AND task_status <> 'executed'",

    /* $5: retryable → next_attempt_at = now() + $6 s (claimable again), else NULL (final). */
    [ST_MARK_EXEC_FAILED] =
        "UPDATE %s.lead_bookings SET task_status = 'failed', last_execution_error = left($4, 500), "
        "next_attempt_at = CASE WHEN $5::boolean THEN now() + make_interval(secs => $6::int) ELSE NULL END "
        "WHERE id = $1 AND tenant_id = $2 AND idempotency_key = $3 AND task_status = 'in_progress'",
};

struct schema_sql {
    char *schema;
    char *sql[ST_COUNT];     /* NULL until built */
};

struct bookings_repository {
    struct db_pool *pool;
    struct logger *log;
    struct schema_sql *schemas;
    int n_schemas;
    char *schemas_array;     /* the configured schemas as a text[] literal (the capped claim counts them all) */
    struct bookings_repo port;
};

/* One statement in flight. */
struct repo_op {
    struct bookings_repository *r;
    enum stmt stmt;
    void *cb;
    void *arg;
    char schema[SCHEMA_NAME_LEN];
};

/* Build the statement texts of one schema with the identifier quoted by libpq. */
static int build_schema_sql(struct bookings_repository *r, struct schema_sql *s)
{
    char *quoted = db_pool_quote_ident(r->pool, s->schema);
    if (quoted == NULL) return -1;
    int rc = 0;
    for (int i = 0; i < ST_COUNT && rc == 0; i++)
        if ((s->sql[i] = db_sql_render(templates[i], quoted)) == NULL) rc = -1;
    free(quoted);
    return rc;
}

static const char *sql_for(struct bookings_repository *r, const char *schema, enum stmt st)
{
    for (int i = 0; i < r->n_schemas; i++) {
        struct schema_sql *s = &r->schemas[i];
        if (strcmp(s->schema, schema) != 0) continue;
        if (s->sql[0] == NULL && build_schema_sql(r, s) != 0) {
            for (int k = 0; k < ST_COUNT; k++) {
                free(s->sql[k]);
                s->sql[k] = NULL;
            }
            return NULL;
        }
        return s->sql[st];
    }
    LOG_WARN(r->log, &(struct log_ctx){.schema = schema}, "refused: schema is not in database.schemas");
    return NULL;
}

static enum repo_rc rc_of(PGresult *res)
{
    if (res == NULL) return REPO_ERROR;
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK ? REPO_OK : REPO_ERROR;
}

static void log_db_error(struct repo_op *op, const char *err)
{
    LOG_KV(op->r->log, LOG_LEVEL_WARN, &(struct log_ctx){.schema = op->schema},
           ((const char *[]){"error", err != NULL ? err : "unknown", NULL}), "database statement failed");
}

static bool bool_col(PGresult *res, int row, int col)
{
    return !PQgetisnull(res, row, col) && strcmp(PQgetvalue(res, row, col), "t") == 0;
}

/* Columns of the claim's answer (CLAIM_ANSWER): the claimed row (N_BOOKING_COLUMNS) and whether this claim
 * expired it, then the row as it was. */
enum claim_col {
    CC_EXPIRED_NOW = N_BOOKING_COLUMNS, CC_STATUS, CC_TASK_STATUS, CC_KEY_MATCHES, CC_RETRYABLE, CC_EARLY_S,
    CC_WAS_EXPIRED, CC_LATE_S, CC_BACKOFF_S, CC_TENANT_LIVE, CC_ALL_LIVE, CC_OVER, CC_LEASED, CC_SCHEDULED_AT,
};

static int clamp_s(int64_t s)
{
    return s > INT32_MAX ? INT32_MAX : s < 0 ? 0 : (int)s;
}

static int count_col(PGresult *res, int col)
{
    return PQgetisnull(res, 0, col) ? -1 : clamp_s(booking_col_int(res, 0, col));
}

/* A row the claim left alone that is neither final nor early: a live lease, the voice agent's Retry-After
 * (next_attempt_at), then a cap. */
static enum claim_outcome classify_deferral(PGresult *res, bool failed, struct claim_result *out)
{
    int64_t backoff_s = booking_col_int(res, 0, CC_BACKOFF_S);
    const char *over = PQgetisnull(res, 0, CC_OVER) ? "" : PQgetvalue(res, 0, CC_OVER);
    if (bool_col(res, 0, CC_LEASED)) return CLAIM_IN_PROGRESS;
    if (failed && backoff_s > 0) {
        out->deferral = DEFER_RETRY_AFTER;
        out->wait_s = clamp_s(backoff_s);
    } else if (strcmp(over, "tenant") == 0) {
        out->deferral = DEFER_TENANT_CAP;
    } else if (strcmp(over, "global") == 0) {
        out->deferral = DEFER_GLOBAL_CAP;
    } else {
        return CLAIM_IN_PROGRESS;   /* changed under the claim's feet: Cloud Tasks retries */
    }
    return CLAIM_DEFERRED;
}

/* What the claim found when it did not claim: the row's state decides first (a final state wins over
 * "too early"), then the early check, then a live lease, then a deferral. */
static enum claim_outcome classify_unclaimed(PGresult *res, struct claim_result *out)
{
    const char *status = PQgetvalue(res, 0, CC_STATUS);
    const char *task_status = PQgetvalue(res, 0, CC_TASK_STATUS);
    bool failed = strcmp(task_status, "failed") == 0;
    int64_t early_s = booking_col_int(res, 0, CC_EARLY_S);
    if (strcmp(task_status, "executed") == 0) return CLAIM_ALREADY_EXECUTED;
    if (strcmp(task_status, "cancelled") == 0 || strcmp(status, "cancelled") == 0) return CLAIM_CANCELLED;
    if (!bool_col(res, 0, CC_KEY_MATCHES)) {
        out->scheduled_at_ms = booking_col_int(res, 0, CC_SCHEDULED_AT);   /* the row as found (see claim_result) */
        return CLAIM_STALE;
    }
    if (failed && !bool_col(res, 0, CC_RETRYABLE))
        return bool_col(res, 0, CC_WAS_EXPIRED) ? CLAIM_EXPIRED : CLAIM_FAILED_FINAL;
    if (early_s > 0) {
        out->wait_s = clamp_s(early_s);
        return CLAIM_TOO_EARLY;
    }
    return classify_deferral(res, failed, out);
}

static void classify_claim(PGresult *res, struct booking *b, struct claim_result *out)
{
    *out = (struct claim_result){.outcome = CLAIM_NOT_FOUND, .tenant_live = -1, .all_live = -1};
    if (PQntuples(res) == 0) return;
    out->tenant_live = count_col(res, CC_TENANT_LIVE);
    out->all_live = count_col(res, CC_ALL_LIVE);
    if (PQgetisnull(res, 0, 0)) {
        out->outcome = classify_unclaimed(res, out);
        return;
    }
    booking_row_parse(res, 0, 0, b);
    out->booking = b;
    bool expired = bool_col(res, 0, CC_EXPIRED_NOW);
    out->outcome = expired ? CLAIM_EXPIRED : CLAIM_CLAIMED;
    if (expired) out->late_s = booking_col_int(res, 0, CC_LATE_S);
}

static void on_result(void *arg, PGresult *res, const char *err)
{
    struct repo_op *op = arg;
    enum repo_rc rc = rc_of(res);
    if (rc == REPO_ERROR) log_db_error(op, err);
    struct booking b;
    switch (op->stmt) {
    case ST_LOAD:
        if (rc == REPO_OK && PQntuples(res) == 0) rc = REPO_NOT_FOUND;
        if (rc == REPO_OK) booking_row_parse(res, 0, 0, &b);
        ((repo_booking_cb)op->cb)(op->arg, rc, rc == REPO_OK ? &b : NULL);
        break;
    case ST_NEXT_DUE: {
        int64_t due = rc == REPO_OK && PQntuples(res) == 1 ? booking_col_int(res, 0, 0) : 0;
        ((repo_time_cb)op->cb)(op->arg, rc, due);
        break;
    }
    case ST_FIND_DUE:
    case ST_FIND_REOPENED:
    case ST_FIND_STALE_TASKS:
    case ST_FIND_CATCHUP: {
        int n = rc == REPO_OK ? PQntuples(res) : 0;
        struct booking_key *keys = n > 0 ? calloc((size_t)n, sizeof(*keys)) : NULL;
        if (n > 0 && keys == NULL) rc = REPO_ERROR;
        for (int i = 0; keys != NULL && i < n; i++) {
            booking_col_copy(res, i, 0, keys[i].tenant_id, sizeof(keys[i].tenant_id));
            booking_col_copy(res, i, 1, keys[i].booking_id, sizeof(keys[i].booking_id));
            if (PQnfields(res) > 2)
                booking_col_copy(res, i, 2, keys[i].idempotency_key, sizeof(keys[i].idempotency_key));
        }
        ((repo_keys_cb)op->cb)(op->arg, rc, keys, rc == REPO_OK ? n : 0);
        free(keys);
        break;
    }
    case ST_CAPTURE_TRIGGERS: {
        struct capture_trigger t[CAPTURE_TRIGGERS_MAX];
        int n = rc == REPO_OK ? PQntuples(res) : 0;
        if (n > CAPTURE_TRIGGERS_MAX) n = CAPTURE_TRIGGERS_MAX;
        for (int i = 0; i < n; i++) {
            booking_col_copy(res, i, 0, t[i].name, sizeof(t[i].name));
            t[i].enabled = strcmp(PQgetvalue(res, i, 1), "t") == 0;
            booking_col_copy(res, i, 2, t[i].args, sizeof(t[i].args));
        }
        ((repo_triggers_cb)op->cb)(op->arg, rc, t, n);
        break;
    }
    case ST_BOOKING_STATE: {
        struct booking_state st;
        if (rc == REPO_OK && booking_state_parse(res, &st) != 0) rc = REPO_ERROR;
        ((repo_state_cb)op->cb)(op->arg, rc, rc == REPO_OK ? &st : NULL);
        break;
    }
    case ST_CLAIM:
    case ST_CLAIM_CAPPED: {
        struct claim_result cr;
        if (rc == REPO_OK) classify_claim(res, &b, &cr);
        ((repo_claim_cb)op->cb)(op->arg, rc, rc == REPO_OK ? &cr : NULL);
        break;
    }
    default:
        if (rc == REPO_OK && strcmp(PQcmdTuples(res), "0") == 0) rc = REPO_CONFLICT;
        ((repo_done_cb)op->cb)(op->arg, rc);
        break;
    }
    free(op);
}

static int submit(struct bookings_repository *r, const char *schema, enum stmt st, int nparams,
                  const char *const *params, void *cb, void *arg)
{
    const char *sql = sql_for(r, schema, st);
    if (sql == NULL || strlen(schema) >= SCHEMA_NAME_LEN) return -1;
    struct repo_op *op = calloc(1, sizeof(*op));
    if (op == NULL) return -1;
    *op = (struct repo_op){.r = r, .stmt = st, .cb = cb, .arg = arg};
    strcpy(op->schema, schema);
    if (db_pool_query(r->pool, sql, nparams, params, on_result, op) != 0) {
        free(op);
        return -1;
    }
    return 0;
}

/* ---- port implementation ---- */

static int repo_load(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                     repo_booking_cb cb, void *arg)
{
    const char *p[] = {booking_id, tenant_id};
    return submit(impl, schema, ST_LOAD, 2, p, (void *)cb, arg);
}

static int repo_mark_scheduled(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                               const struct schedule_mark *m, repo_done_cb cb, void *arg)
{
    (void)0;
    char at[32], sched[32];
    snprintf(at, sizeof(at), "%" PRId64, m->task_scheduled_at_ms);
    /* the key ends with the ISO scheduled_at; the statement re-checks it via $6 */
    snprintf(sched, sizeof(sched), "%" PRId64, m->scheduled_at_ms);
    const char *p[] = {booking_id, tenant_id, m->task_name, at, m->idempotency_key, sched};
    return submit(impl, schema, ST_MARK_SCHEDULED, 6, p, (void *)cb, arg);
}

static int repo_mark_expired(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                             int64_t scheduled_at_ms, const char *error, repo_done_cb cb, void *arg)
{
    char sched[32];
    snprintf(sched, sizeof(sched), "%" PRId64, scheduled_at_ms);
    const char *p[] = {booking_id, tenant_id, sched, error};
    return submit(impl, schema, ST_MARK_EXPIRED, 4, p, (void *)cb, arg);
}

static int repo_mark_schedule_failed(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                                     const char *error, repo_done_cb cb, void *arg)
{
    const char *p[] = {booking_id, tenant_id, error};
    return submit(impl, schema, ST_MARK_SCHEDULE_FAILED, 3, p, (void *)cb, arg);
}

/* "%d" of a positive setting, or NULL (SQL NULL: no check). */
static const char *positive_or_null(int v, char buf[16])
{
    if (v <= 0) return NULL;
    snprintf(buf, 16, "%d", v);
    return buf;
}

static int repo_claim(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                      const struct claim_params *cp, repo_claim_cb cb, void *arg)
{
    struct bookings_repository *r = impl;
    char lease[16], window[16], lateness[16], tenant_cap[16], global_cap[16];
    snprintf(lease, sizeof(lease), "%d", cp->lease_s);
    snprintf(window, sizeof(window), "%d", cp->early_window_s);
    const char *p[] = {booking_id, tenant_id, cp->idempotency_key, lease, cp->early_window_s >= 0 ? window : NULL,
                       positive_or_null(cp->max_lateness_s, lateness), positive_or_null(cp->tenant_cap, tenant_cap),
                       positive_or_null(cp->global_cap, global_cap), r->schemas_array};
    bool capped = cp->tenant_cap > 0 || cp->global_cap > 0;
    return submit(r, schema, capped ? ST_CLAIM_CAPPED : ST_CLAIM, capped ? 9 : 6, p, (void *)cb, arg);
}

static int repo_mark_executed(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                              const char *key, repo_done_cb cb, void *arg)
{
    const char *p[] = {booking_id, tenant_id, key};
    return submit(impl, schema, ST_MARK_EXECUTED, 3, p, (void *)cb, arg);
}

static int repo_mark_exec_failed(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                                 const char *key, const char *error, bool retryable, int retry_delay_s,
                                 repo_done_cb cb, void *arg)
{
    char delay[16];
    snprintf(delay, sizeof(delay), "%d", retry_delay_s);
    const char *p[] = {booking_id, tenant_id, key, error, retryable ? "true" : "false", delay};
    return submit(impl, schema, ST_MARK_EXEC_FAILED, 6, p, (void *)cb, arg);
}

static int repo_next_due(void *impl, const char *schema, int lead_s, int lease_s, repo_time_cb cb, void *arg)
{
    char lead[16], lease[16];
    snprintf(lead, sizeof(lead), "%d", lead_s);
    snprintf(lease, sizeof(lease), "%d", lease_s);
    const char *p[] = {lead, lease};
    return submit(impl, schema, ST_NEXT_DUE, 2, p, (void *)cb, arg);
}

static int repo_find_due(void *impl, const char *schema, int lead_s, int lease_s, int limit, repo_keys_cb cb,
                         void *arg)
{
    char lead[16], lease[16], lim[16];
    snprintf(lead, sizeof(lead), "%d", lead_s);
    snprintf(lease, sizeof(lease), "%d", lease_s);
    snprintf(lim, sizeof(lim), "%d", limit);
    const char *p[] = {lead, lease, lim};
    return submit(impl, schema, ST_FIND_DUE, 3, p, (void *)cb, arg);
}

static int repo_capture_triggers(void *impl, const char *schema, repo_triggers_cb cb, void *arg)
{
    const char *p[] = {schema};
    return submit(impl, schema, ST_CAPTURE_TRIGGERS, 1, p, (void *)cb, arg);
}

static int repo_booking_state(void *impl, const char *schema, const struct booking_state_query *q,
                              repo_state_cb cb, void *arg)
{
    struct booking_state_params p;
    if (booking_state_params_build(q, &p) != 0) return -1;
    int rc = submit(impl, schema, ST_BOOKING_STATE, BOOKING_STATE_NPARAMS, p.values, (void *)cb, arg);
    booking_state_params_free(&p);
    return rc;
}

/* The two parameters of OWNED_PARTITION: {p,p,...} (NULL = every partition) and the partition count. */
struct partition_params {
    char *owned;
    char count[16];
};

static int partition_params_build(const struct partition_filter *f, struct partition_params *out)
{
    out->owned = NULL;
    snprintf(out->count, sizeof(out->count), "%d", f != NULL ? f->partitions : 1);
    if (f == NULL) return 0;
    size_t cap = 3 + (size_t)f->n_owned * 12;
    char *p = out->owned = malloc(cap);
    if (p == NULL) return -1;
    size_t n = (size_t)snprintf(p, cap, "{");
    for (int i = 0; i < f->n_owned; i++)
        n += (size_t)snprintf(p + n, cap - n, "%s%d", i > 0 ? "," : "", f->owned[i]);
    snprintf(p + n, cap - n, "}");
    return 0;
}

/* A sweep read's parameters: $1 the booking types, then `mid` (the limit, or the window: lookback, horizon,
 * limit, now), then the two partition parameters. */
static int submit_sweep_read(void *impl, const char *schema, enum stmt st, const struct strlist *types,
                             const struct partition_filter *parts, const char *const *mid, int n_mid,
                             repo_keys_cb cb, void *arg)
{
    struct partition_params pp;
    char *arr = db_text_array_literal(types->items, types->n);
    int rc = -1;
    if (arr != NULL && n_mid <= 4 && partition_params_build(parts, &pp) == 0) {
        const char *p[7] = {arr};
        for (int i = 0; i < n_mid; i++) p[1 + i] = mid[i];
        p[1 + n_mid] = pp.owned;
        p[2 + n_mid] = pp.count;
        rc = submit(impl, schema, st, 3 + n_mid, p, (void *)cb, arg);
        free(pp.owned);
    }
    free(arr);
    return rc;
}

/* The two windowed sweep reads (catch-up, re-opened): same parameters. */
static int submit_window_read(void *impl, const char *schema, enum stmt st, const struct strlist *types,
                              const struct partition_filter *parts, int64_t now_ms, int lookback_s, int horizon_s,
                              int limit, repo_keys_cb cb, void *arg)
{
    char lb[16], hz[16], lim[16], now[32];
    snprintf(now, sizeof(now), "%" PRId64, now_ms);
    snprintf(lb, sizeof(lb), "%d", lookback_s);
    snprintf(hz, sizeof(hz), "%d", horizon_s);
    snprintf(lim, sizeof(lim), "%d", limit);
    const char *mid[] = {lb, hz, lim, now};
    return submit_sweep_read(impl, schema, st, types, parts, mid, 4, cb, arg);
}

static int repo_find_catchup(void *impl, const char *schema, const struct strlist *types,
                             const struct partition_filter *parts, int64_t now_ms, int lookback_s, int horizon_s,
                             int limit, repo_keys_cb cb, void *arg)
{
    return submit_window_read(impl, schema, ST_FIND_CATCHUP, types, parts, now_ms, lookback_s, horizon_s, limit, cb,
                              arg);
}

static int repo_find_reopened(void *impl, const char *schema, const struct strlist *types,
                              const struct partition_filter *parts, int64_t now_ms, int lookback_s, int horizon_s,
                              int limit, repo_keys_cb cb, void *arg)
{
    return submit_window_read(impl, schema, ST_FIND_REOPENED, types, parts, now_ms, lookback_s, horizon_s, limit, cb,
                              arg);
}

static int repo_mark_rescheduled(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                                 const struct reschedule_mark *m, repo_done_cb cb, void *arg)
{
    char sched[32], gen[16];
    snprintf(sched, sizeof(sched), "%" PRId64, m->scheduled_at_ms);
    snprintf(gen, sizeof(gen), "%d", m->generation);
    const char *p[] = {booking_id, tenant_id, m->task_name, m->idempotency_key, sched, m->old_task_name, gen};
    return submit(impl, schema, ST_MARK_RESCHEDULED, 7, p, (void *)cb, arg);
}

static int repo_unschedule(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                           const char *old_task_name, int64_t scheduled_at_ms, repo_done_cb cb, void *arg)
{
    char sched[32];
    snprintf(sched, sizeof(sched), "%" PRId64, scheduled_at_ms);
    const char *p[] = {booking_id, tenant_id, old_task_name, sched};
    return submit(impl, schema, ST_UNSCHEDULE, 4, p, (void *)cb, arg);
}

static int repo_mark_cancelled(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                               repo_done_cb cb, void *arg)
{
    const char *p[] = {booking_id, tenant_id};
    return submit(impl, schema, ST_MARK_CANCELLED, 2, p, (void *)cb, arg);
}

static int repo_clear_task_name(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                                const char *task_name, repo_done_cb cb, void *arg)
{
    const char *p[] = {booking_id, tenant_id, task_name};
    return submit(impl, schema, ST_CLEAR_TASK_NAME, 3, p, (void *)cb, arg);
}

static int repo_reopen(void *impl, const char *schema, const char *tenant_id, const char *booking_id,
                       repo_done_cb cb, void *arg)
{
    const char *p[] = {booking_id, tenant_id};
    return submit(impl, schema, ST_REOPEN, 2, p, (void *)cb, arg);
}

static int repo_find_stale_tasks(void *impl, const char *schema, const struct strlist *types,
                                 const struct partition_filter *parts, int limit, repo_keys_cb cb, void *arg)
{
    char lim[16];
    snprintf(lim, sizeof(lim), "%d", limit);
    const char *mid[] = {lim};
    return submit_sweep_read(impl, schema, ST_FIND_STALE_TASKS, types, parts, mid, 1, cb, arg);
}

struct bookings_repository *bookings_repository_new(struct db_pool *pool, const struct strlist *schemas,
                                                    struct logger *log)
{
    struct bookings_repository *r = calloc(1, sizeof(*r));
    if (r == NULL) return NULL;
    r->pool = pool;
    r->log = log;
    r->schemas = calloc((size_t)schemas->n, sizeof(*r->schemas));
    if (r->schemas == NULL && schemas->n > 0) {
        free(r);
        return NULL;
    }
    for (int i = 0; i < schemas->n; i++) {
        r->schemas[i].schema = strdup(schemas->items[i]);
        if (r->schemas[i].schema == NULL) {
            r->n_schemas = i;
            bookings_repository_free(r);
            return NULL;
        }
    }
    r->n_schemas = schemas->n;
    if ((r->schemas_array = db_text_array_literal(schemas->items, schemas->n)) == NULL) {
        bookings_repository_free(r);
        return NULL;
    }
    r->port = (struct bookings_repo){.impl = r, .load = repo_load, .mark_scheduled = repo_mark_scheduled,
                                     .mark_schedule_failed = repo_mark_schedule_failed, .mark_expired = repo_mark_expired,
                                     .claim_execution = repo_claim,
                                     .mark_executed = repo_mark_executed, .find_catchup = repo_find_catchup,
                                     .find_reopened = repo_find_reopened,
                                     .mark_rescheduled = repo_mark_rescheduled, .unschedule = repo_unschedule,
                                     .mark_cancelled = repo_mark_cancelled,
                                     .clear_task_name = repo_clear_task_name, .reopen = repo_reopen,
                                     .find_stale_tasks = repo_find_stale_tasks, .next_due = repo_next_due,
                                     .find_due = repo_find_due, .capture_triggers = repo_capture_triggers,
                                     .booking_state = repo_booking_state,
                                     .mark_execution_failed = repo_mark_exec_failed};
    return r;
}

struct bookings_repo *bookings_repository_port(struct bookings_repository *r)
{
    return &r->port;
}

void bookings_repository_free(struct bookings_repository *r)
{
    if (r == NULL) return;
    for (int i = 0; i < r->n_schemas; i++) {
        free(r->schemas[i].schema);
        for (int k = 0; k < ST_COUNT; k++) free(r->schemas[i].sql[k]);
    }
    free(r->schemas);
    free(r->schemas_array);
    free(r);
}
