/*
 * core/operator_cli — see the header.  The decisions are the operator
 * service's (pure); this file reads through the operator repository and
 * prints.  Times are shown as UTC ISO instants and ages against the database
 * clock of the read.
 */
#include "core/operator_cli.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/adapters.h"
#include "core/cli_output.h"
#include "features/deals_pipeline/repositories/operator_repository.h"
#include "features/deals_pipeline/services/followup_keys.h"
#include "features/deals_pipeline/services/followup_operator_service.h"
#include "features/deals_pipeline/services/followup_state_service.h"
#include "utils/timefmt.h"

struct session {
    const struct cli_options *opts;
    struct cli_output out;
    struct config cfg;
    struct operator_repository *repo;
};

/* ---- small formatting helpers ---- */

struct text {
    char s[96];
};

static struct text iso(int64_t ms)
{
    struct text t = {{0}};
    if (ms == 0 || followup_iso_time(ms, t.s) != 0) snprintf(t.s, sizeof(t.s), "-");
    return t;
}

/* "2026-11-28T16:00:00.000Z (12s ago)" / "(in 3m)"; "-" when unset. */
static struct text when(int64_t ms, int64_t now_ms)
{
    struct text t = {{0}};
    if (ms == 0) {
        snprintf(t.s, sizeof(t.s), "-");
        return t;
    }
    char d[32];
    timefmt_duration(now_ms - ms, d, sizeof(d));
    snprintf(t.s, sizeof(t.s), "%s (%s%s%s)", iso(ms).s, ms > now_ms ? "in " : "", d, ms > now_ms ? "" : " ago");
    return t;
}

static json_t *json_time(int64_t ms)
{
    return ms != 0 ? json_string(iso(ms).s) : json_null();
}

static json_t *json_text(const char *s)
{
    return s != NULL && s[0] != '\0' ? json_string(s) : json_null();
}

/* ---- session ---- */

static int open_session(struct session *s, const struct cli_options *opts, const char *path)
{
    memset(s, 0, sizeof(*s));
    s->opts = opts;
    cli_output_init(&s->out, opts->json, true);
    if (cli_output_load_config(&s->out, path, &s->cfg) != 0) {
        cli_say(&s->out, LOG_LEVEL_ERROR, NULL, NULL, "invalid configuration", "error: invalid configuration");
        return 1;
    }
    if (opts->schema != NULL && !strlist_contains(&s->cfg.db_schemas, opts->schema)) {
        cli_say(&s->out, LOG_LEVEL_ERROR, NULL, (const char *[]){"schema", opts->schema, NULL},
                "schema is not in [database] schemas", "error: schema '%s' is not in [database] schemas",
                opts->schema);
        return 1;
    }
    char err[512];
    s->repo = operator_repository_connect(s->cfg.db_conninfo, &s->cfg.db_schemas, err, sizeof(err));
    if (s->repo == NULL) {
        cli_say(&s->out, LOG_LEVEL_ERROR, NULL, (const char *[]){"error", err, NULL}, "cannot connect to the database",
                "error: cannot connect to the database: %s", err);
        return 1;
    }
    return 0;
}

static void close_session(struct session *s)
{
    operator_repository_close(s->repo);
    config_free(&s->cfg);
    cli_output_free(&s->out);
}

static void say_db_error(struct session *s, const char *schema, const char *err)
{
    cli_say(&s->out, LOG_LEVEL_ERROR, &(struct log_ctx){.schema = schema}, (const char *[]){"error", err, NULL},
            "database statement failed", "error: schema %s: %s", schema, err);
}

/* ---- status ---- */

/* "  <label>  <count>  <detail>" with the columns aligned. */
static void print_count(struct cli_output *o, const char *label, int64_t count, const char *detail)
{
    cli_print(o, "  %-26s%6" PRId64 "%s%s", label, count, detail[0] ? "  " : "", detail);
}

static void print_state(struct cli_output *o, const char *schema, const struct booking_state *st,
                        char reasons[][ATTENTION_LEN], int n_reasons)
{
    int64_t now = st->db_now_ms;
    char d[256];
    cli_print(o, "schema %s (database time %s; counts across tenants, history not counted)", schema,
              iso(st->db_now_ms).s);
    snprintf(d, sizeof(d), "waiting for a task; %" PRId64 " due; oldest %s", st->waiting_due,
             when(st->oldest_waiting_ms, now).s);
    print_count(o, "pending", st->waiting, d);
    print_count(o, "pending, beyond horizon", st->beyond_horizon, "the sweep schedules them within 720 h");
    snprintf(d, sizeof(d), "with a task; %" PRId64 " due without a call", st->scheduled_due);
    print_count(o, "scheduled", st->scheduled, d);
    snprintf(d, sizeof(d), "%" PRId64 " past the lease; oldest started %s", st->lease_expired,
             when(st->oldest_in_progress_ms, now).s);
    print_count(o, "in progress", st->in_progress, d);
    print_count(o, "failed, retryable", st->failed_retryable, "");
    snprintf(d, sizeof(d), "%" PRId64 " inside the catch-up window; oldest scheduled %s", st->failed_final_recent,
             when(st->oldest_failed_ms, now).s);
    print_count(o, "failed for good", st->failed_final, d);
    print_count(o, "cancelled, task to delete", st->cancel_owed, "");
    cli_print(o, "  %-34s%s", "next due", when(st->next_due_ms, now).s);
    cli_print(o, "  %-34s%s", "oldest due, not called", when(st->oldest_due_ms, now).s);
    for (int i = 0; i < n_reasons; i++) cli_print(o, "  needs attention: %s", reasons[i]);
}

static json_t *state_json(const char *schema, const struct booking_state *st, char reasons[][ATTENTION_LEN],
                          int n_reasons)
{
    json_t *attention = json_array();
    for (int i = 0; i < n_reasons; i++) json_array_append_new(attention, json_string(reasons[i]));
    return json_pack(
        "{s:s, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:o, s:o, s:o, s:o, s:o, s:f, s:o}",
        "schema", schema, "databaseTime", json_time(st->db_now_ms), "counts", "pending", (json_int_t)st->waiting,
        "pendingDue", (json_int_t)st->waiting_due, "pendingBeyondHorizon", (json_int_t)st->beyond_horizon,
        "scheduled", (json_int_t)st->scheduled, "scheduledDue", (json_int_t)st->scheduled_due, "inProgress",
        (json_int_t)st->in_progress, "leaseExpired", (json_int_t)st->lease_expired, "failedRetryable",
        (json_int_t)st->failed_retryable, "failedFinal", (json_int_t)st->failed_final,
        "failedFinalInCatchupWindow", (json_int_t)st->failed_final_recent, "cancelledTaskToDelete",
        (json_int_t)st->cancel_owed, "oldestPendingAt", json_time(st->oldest_waiting_ms), "nextDueAt",
        json_time(st->next_due_ms), "oldestDueNotCalledAt", json_time(st->oldest_due_ms), "oldestInProgressSince",
        json_time(st->oldest_in_progress_ms), "oldestFailedAt", json_time(st->oldest_failed_ms),
        "oldestDueNotCalledAgeS", followup_state_oldest_due_age_s(st), "attention", attention);
}

/* One schema: 0, OPERATOR_ATTENTION, or 1 when it could not be read. */
static int status_of(struct session *s, const char *schema, json_t *schemas)
{
    struct booking_state_query q = followup_state_query(&s->cfg, config_lease_s(&s->cfg));
    struct booking_state st;
    char err[512], reasons[ATTENTION_MAX][ATTENTION_LEN];
    if (operator_repository_state(s->repo, schema, &q, &st, err, sizeof(err)) != 0) {
        say_db_error(s, schema, err);
        json_array_append_new(schemas, json_pack("{s:s, s:s}", "schema", schema, "error", err));
        return 1;
    }
    int n = followup_state_attention(&st, reasons);
    if (s->out.plain) print_state(&s->out, schema, &st, reasons, n);
    else json_array_append_new(schemas, state_json(schema, &st, reasons, n));
    return n > 0 ? OPERATOR_ATTENTION : 0;
}

static int run_status(struct session *s)
{
    json_t *schemas = json_array();
    int code = 0, attention = 0, unread = 0;
    for (int i = 0; i < s->cfg.db_schemas.n; i++) {
        const char *schema = s->cfg.db_schemas.items[i];
        if (s->opts->schema != NULL && strcmp(schema, s->opts->schema) != 0) continue;
        int rc = status_of(s, schema, schemas);
        attention += rc == OPERATOR_ATTENTION;
        unread += rc == 1;
    }
    code = unread > 0 ? 1 : attention > 0 ? OPERATOR_ATTENTION : 0;
    if (s->out.plain) {
        if (attention > 0) cli_print(&s->out, "followupd: %d schema(s) need attention", attention);
        else if (unread == 0) cli_print(&s->out, "followupd: nothing needs attention");
        json_decref(schemas);
    } else {
        cli_print_json(&s->out, json_pack("{s:b, s:o}", "attention", attention > 0, "schemas", schemas));
    }
    return code;
}

/* ---- inspect and retry ---- */

static json_t *row_json(const struct booking_detail *d)
{
    const struct booking *b = &d->b;
    return json_pack("{s:s, s:s, s:o, s:s, s:o, s:o, s:i, s:o, s:o, s:o, s:i, s:i, s:o, s:o}", "bookingType",
                     b->booking_type, "status", b->status, "scheduledAt", json_time(b->scheduled_at_ms), "taskStatus",
                     b->task_status, "taskName", json_text(b->task_name), "taskScheduledAt",
                     json_time(b->task_scheduled_at_ms), "taskGeneration", b->task_generation, "idempotencyKey",
                     json_text(b->idempotency_key), "executedAt", json_time(d->executed_at_ms),
                     "executionStartedAt", json_time(d->execution_started_at_ms), "executionAttempts",
                     b->execution_attempts, "scheduleAttempts", d->schedule_attempts, "nextAttemptAt",
                     json_time(d->next_attempt_at_ms), "lastExecutionError", json_text(d->last_execution_error));
}

static void print_row(struct cli_output *o, const struct booking_detail *d)
{
    const struct booking *b = &d->b;
    int64_t now = d->db_now_ms;
    const char *none = "-";
    cli_print(o, "  booking_type          %s", b->booking_type);
    cli_print(o, "  status                %s", b->status);
    cli_print(o, "  scheduled_at          %s", when(b->scheduled_at_ms, now).s);
    cli_print(o, "  task_status           %s", b->task_status);
    cli_print(o, "  task_name             %s", b->task_name[0] ? b->task_name : none);
    cli_print(o, "  task_scheduled_at     %s", iso(b->task_scheduled_at_ms).s);
    cli_print(o, "  task_generation       %d", b->task_generation);
    cli_print(o, "  idempotency_key       %s", b->idempotency_key[0] ? b->idempotency_key : none);
    cli_print(o, "  executed_at           %s", when(d->executed_at_ms, now).s);
    cli_print(o, "  execution_started_at  %s", when(d->execution_started_at_ms, now).s);
    cli_print(o, "  execution_attempts    %d", b->execution_attempts);
    cli_print(o, "  schedule_attempts     %d", d->schedule_attempts);
    cli_print(o, "  next_attempt_at       %s", when(d->next_attempt_at_ms, now).s);
    cli_print(o, "  last_execution_error  %s", d->last_execution_error[0] ? d->last_execution_error : none);
}

/* The key followupd computes from the row now and the task name of the row's generation ("" when none). */
static void computed_names(const struct config *cfg, const struct booking_detail *d, char key[IDEMPOTENCY_KEY_LEN],
                           char name[TASK_NAME_LEN])
{
    char task_id[TASK_ID_LEN];
    key[0] = name[0] = '\0';
    if (followup_idempotency_key(d->b.tenant_id, d->b.id, d->b.scheduled_at_ms, key, IDEMPOTENCY_KEY_LEN) != 0)
        key[0] = '\0';
    else if (followup_task_id(key, d->b.task_generation, task_id) != 0 ||
             configured_task_name(cfg, task_id, name, TASK_NAME_LEN) != 0)
        name[0] = '\0';
}

/* The row, or 1/OPERATOR_NOT_FOUND after saying why. */
static int read_row(struct session *s, struct booking_detail *d)
{
    const struct cli_options *o = s->opts;
    char err[512];
    int found = operator_repository_inspect(s->repo, o->schema, o->tenant, o->booking_id, d, err, sizeof(err));
    if (found < 0) {
        say_db_error(s, o->schema, err);
        return 1;
    }
    if (found == 0) {
        if (s->out.plain)
            cli_print(&s->out, "followupd: no booking %s in tenant %s of schema %s", o->booking_id, o->tenant,
                      o->schema);
        else
            cli_print_json(&s->out, json_pack("{s:s, s:s, s:s, s:s}", "schema", o->schema, "tenantId", o->tenant,
                                              "bookingId", o->booking_id, "error", "not_found"));
        return OPERATOR_NOT_FOUND;
    }
    return 0;
}

static int run_inspect(struct session *s)
{
    struct booking_detail d;
    int rc = read_row(s, &d);
    if (rc != 0) return rc;
    struct followup_explanation e;
    followup_explain(&s->cfg, &d, config_lease_s(&s->cfg), &e);
    char key[IDEMPOTENCY_KEY_LEN], name[TASK_NAME_LEN];
    computed_names(&s->cfg, &d, key, name);
    const struct cli_options *o = s->opts;
    if (s->out.plain) {
        cli_print(&s->out, "booking %s of tenant %s in schema %s", o->booking_id, o->tenant, o->schema);
        print_row(&s->out, &d);
        cli_print(&s->out, "  key (computed)        %s", key[0] ? key : "-");
        cli_print(&s->out, "  task name (computed)  %s", name[0] ? name : "-");
        cli_print(&s->out, "followupd now: %s", e.why);
        return 0;
    }
    cli_print_json(&s->out, json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:s, s:s, s:s, s:o}", "schema", o->schema,
                                      "tenantId", o->tenant, "bookingId", o->booking_id, "row", row_json(&d),
                                      "computedIdempotencyKey", json_text(key), "computedTaskName", json_text(name),
                                      "plan", followup_plan_name(e.plan), "verdict", followup_verdict_name(e.verdict),
                                      "reason", e.why, "at", json_time(e.at_ms)));
    return 0;
}

static void report_retry(struct session *s, const char *result, const char *reason, const struct booking_detail *before,
                         const struct booking_detail *after)
{
    const struct cli_options *o = s->opts;
    if (s->out.plain) {
        cli_print(&s->out, "booking %s of tenant %s in schema %s", o->booking_id, o->tenant, o->schema);
        print_row(&s->out, after != NULL ? after : before);
        cli_print(&s->out, "followupd retry: %s: %s", result, reason);
        return;
    }
    cli_print_json(&s->out, json_pack("{s:s, s:s, s:s, s:b, s:s, s:s, s:o, s:o}", "schema", o->schema, "tenantId",
                                      o->tenant, "bookingId", o->booking_id, "dryRun", o->dry_run, "result", result,
                                      "reason", reason, "before", row_json(before),
                                      "after", after != NULL ? row_json(after) : json_null()));
}

static int run_retry(struct session *s)
{
    const struct cli_options *o = s->opts;
    struct booking_detail before, after;
    char why[768], err[512];
    int rc = read_row(s, &before);
    if (rc != 0) return rc;
    if (!followup_retry_allowed(&s->cfg, &before, why, sizeof(why))) {
        report_retry(s, "refused", why, &before, NULL);
        return OPERATOR_ATTENTION;
    }
    if (o->dry_run) {
        report_retry(s, "would_redrive", why, &before, NULL);
        return 0;
    }
    int redriven = operator_repository_retry(s->repo, o->schema, o->tenant, o->booking_id,
                                             &s->cfg.followup_booking_types, s->cfg.followup_catchup_window_s, err,
                                             sizeof(err));
    if (redriven < 0) {
        say_db_error(s, o->schema, err);
        return 1;
    }
    if ((rc = read_row(s, &after)) != 0) return rc;
    if (redriven == 0) {
        report_retry(s, "refused", "the booking changed meanwhile; nothing was changed", &before, &after);
        return OPERATOR_ATTENTION;
    }
    report_retry(s, "redriven", why, &before, &after);
    return 0;
}

int operator_cli_run(const struct cli_options *opts, const char *path)
{
    struct session s;
    int code = open_session(&s, opts, path);
    if (code == 0) {
        switch (opts->command) {
        case CLI_STATUS: code = run_status(&s); break;
        case CLI_INSPECT: code = run_inspect(&s); break;
        case CLI_RETRY: code = run_retry(&s); break;
        default: code = CLI_USAGE_ERROR; break;
        }
    }
    close_session(&s);
    return code;
}
