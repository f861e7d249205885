/*
 * deals_pipeline/services/followup_execution_service — see the header for the
 * three phases.  One heap `struct execution` carries a delivery through them.
 */
#include "features/deals_pipeline/services/followup_execution_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/deals_pipeline/services/followup_keys.h"
#include "utils/trace_context.h"

struct execution {
    struct followup_execution_service *svc;
    char schema[SCHEMA_NAME_LEN];
    char tenant_id[UUID_STR_LEN];
    char booking_id[UUID_STR_LEN];
    char idempotency_key[IDEMPOTENCY_KEY_LEN];
    char request_id[72];
    struct trace_context trace;  /* logged with every line, sent to the voice agent as traceparent */
    struct booking booking;
    enum execution_status final_status;
    int retry_after_s;           /* EXEC_TOO_EARLY, EXEC_DEFERRED, EXEC_FAILED_RETRYABLE (voice agent's) */
    bool refuse_early;
    execution_done_cb cb;
    void *arg;
};

static const char *const status_names[] = {
    [EXEC_EXECUTED] = "executed",       [EXEC_ALREADY_EXECUTED] = "already_executed",
    [EXEC_CANCELLED] = "cancelled",     [EXEC_STALE] = "stale",
    [EXEC_FAILED_FINAL] = "failed",     [EXEC_IN_PROGRESS] = "in_progress",
    [EXEC_NOT_FOUND] = "not_found",     [EXEC_FAILED_RETRYABLE] = "failed_retryable",
    [EXEC_UNAVAILABLE] = "unavailable", [EXEC_TOO_EARLY] = "too_early",
    [EXEC_EXPIRED] = "expired",         [EXEC_DEFERRED] = "deferred",
};

const char *execution_status_name(enum execution_status st)
{
    return (unsigned)st < sizeof(status_names) / sizeof(status_names[0]) ? status_names[st] : "unknown";
}

const char *claim_deferral_name(enum claim_deferral d)
{
    static const char *const names[DEFER_N] = {
        [DEFER_NONE] = "none", [DEFER_TENANT_CAP] = "tenant_cap", [DEFER_GLOBAL_CAP] = "global_cap",
        [DEFER_RETRY_AFTER] = "retry_after"};
    return (unsigned)d < DEFER_N ? names[d] : "unknown";
}

void followup_execution_service_init(struct followup_execution_service *svc, struct bookings_repo *repo,
                                     struct voice_agent_port *voice, struct logger *log, int lease_s)
{
    memset(svc, 0, sizeof(*svc));
    svc->repo = repo;
    svc->voice = voice;
    svc->log = log;
    svc->lease_s = lease_s;
}

static struct log_ctx exec_ctx(const struct execution *ex)
{
    return (struct log_ctx){.request_id = ex->request_id, .tenant_id = ex->tenant_id,
                            .booking_id = ex->booking_id, .schema = ex->schema, .trace_id = ex->trace.trace_id};
}

static bool carries_retry_after(enum execution_status st)
{
    return st == EXEC_TOO_EARLY || st == EXEC_DEFERRED || st == EXEC_FAILED_RETRYABLE;
}

static void finish(struct execution *ex, enum execution_status st)
{
    struct log_ctx ctx = exec_ctx(ex);
    LOG_INFO(ex->svc->log, &ctx, "execution finished: %s", execution_status_name(st));
    if ((unsigned)st < EXEC_STATUS_N) ex->svc->finished[st]++;
    ex->cb(ex->arg, st, carries_retry_after(st) ? ex->retry_after_s : 0);
    free(ex);
}

static void finish_after_call(struct execution *ex, enum execution_status st)
{
    ex->svc->inflight--;
    finish(ex, st);
}

static enum execution_status status_for_claim(enum claim_outcome o)
{
    switch (o) {
    case CLAIM_NOT_FOUND: return EXEC_NOT_FOUND;
    case CLAIM_ALREADY_EXECUTED: return EXEC_ALREADY_EXECUTED;
    case CLAIM_CANCELLED: return EXEC_CANCELLED;
    case CLAIM_STALE: return EXEC_STALE;
    case CLAIM_IN_PROGRESS: return EXEC_IN_PROGRESS;
    case CLAIM_FAILED_FINAL: return EXEC_FAILED_FINAL;
    case CLAIM_TOO_EARLY: return EXEC_TOO_EARLY;
    case CLAIM_EXPIRED: return EXEC_EXPIRED;
    case CLAIM_DEFERRED: return EXEC_DEFERRED;
    case CLAIM_CLAIMED: break;
    }
    return EXEC_UNAVAILABLE;
}

/* Phase 3 done: the outcome is recorded (or could not be: then Cloud Tasks
 * retries, finds in_progress, and after the lease re-calls with the same key). */
static void on_outcome_recorded(void *arg, enum repo_rc rc)
{
    struct execution *ex = arg;
    if (rc == REPO_ERROR) {
        struct log_ctx ctx = exec_ctx(ex);
        LOG_ERROR(ex->svc->log, &ctx, "could not record the call outcome; a retry will re-call with the same key");
        finish_after_call(ex, EXEC_UNAVAILABLE);
        return;
    }
    finish_after_call(ex, ex->final_status);
}

/* Delay before the next attempt: base * 2^(attempt-1), at most an hour. */
static int retry_delay_s(const struct followup_execution_service *svc, int attempt)
{
    long long d = svc->retry_base_s;
    for (int i = 1; i < attempt && d < 3600; i++) d *= 2;
    return d > 3600 ? 3600 : (int)d;
}

/* retry_after_s: the voice agent's Retry-After (0: none); the next attempt is not before it. */
static void record_failure(struct execution *ex, const char *error, bool retryable, int retry_after_s)
{
    struct followup_execution_service *svc = ex->svc;
    int attempt = ex->booking.execution_attempts;
    int delay_s = retry_delay_s(svc, attempt);
    if (retry_after_s > delay_s) delay_s = retry_after_s;
    ex->retry_after_s = retry_after_s;
    if (retryable && svc->max_attempts > 0 && attempt >= svc->max_attempts) {
        struct log_ctx ctx = exec_ctx(ex);
        LOG_WARN(svc->log, &ctx, "attempt %d of %d failed: giving up", attempt, svc->max_attempts);
        retryable = false;
    }
    ex->final_status = retryable ? EXEC_FAILED_RETRYABLE : EXEC_FAILED_FINAL;
    if (svc->repo->mark_execution_failed(svc->repo->impl, ex->schema, ex->tenant_id, ex->booking_id,
                                         ex->idempotency_key, error, retryable, delay_s,
                                         on_outcome_recorded, ex) != 0)
        finish_after_call(ex, EXEC_UNAVAILABLE);
}

/* Phase 2 done. */
static void on_call_done(void *arg, const struct voice_reply *r)
{
    struct execution *ex = arg;
    struct followup_execution_service *svc = ex->svc;
    struct log_ctx ctx = exec_ctx(ex);
    if (r->outcome == VOICE_OK) {
        LOG_INFO(svc->log, &ctx, "voice-agent call started (HTTP %ld)", r->http_status);
        ex->final_status = EXEC_EXECUTED;
        if (svc->repo->mark_executed(svc->repo->impl, ex->schema, ex->tenant_id, ex->booking_id, ex->idempotency_key,
                                     on_outcome_recorded, ex) != 0)
            finish_after_call(ex, EXEC_UNAVAILABLE);
        return;
    }
    char error[256];
    const char *detail = r->error != NULL ? r->error : "error";
    if (r->http_status > 0 && strstr(detail, "HTTP") == NULL)
        snprintf(error, sizeof(error), "voice agent: HTTP %ld: %s", r->http_status, detail);
    else
        snprintf(error, sizeof(error), "voice agent: %s", detail);
    bool retryable = r->outcome == VOICE_TRANSIENT;
    char retry_after[16];
    snprintf(retry_after, sizeof(retry_after), "%d", r->retry_after_s);
    LOG_KV(svc->log, LOG_LEVEL_WARN, &ctx, ((const char *[]){"error", error, "retry_after_s", retry_after, NULL}),
           "voice-agent call failed (%s)", retryable ? "retryable" : "permanent");
    record_failure(ex, error, retryable, retryable ? r->retry_after_s : 0);
}

static void start_call(struct execution *ex)
{
    struct followup_execution_service *svc = ex->svc;
    const struct booking *b = &ex->booking;
    char iso[ISO_TIME_LEN], traceparent[TRACEPARENT_LEN + 1];
    trace_context_format(&ex->trace, traceparent);
    if (followup_iso_time(b->scheduled_at_ms, iso) != 0) {
        record_failure(ex, "scheduled_at out of range", false, 0);
        return;
    }
    struct voice_call call = {
        .tenant_id = b->tenant_id, .booking_id = b->id, .lead_id = b->lead_id,
        .assigned_user_id = b->assigned_user_id[0] != '\0' ? b->assigned_user_id : NULL,
        .scheduled_at_iso = iso, .idempotency_key = ex->idempotency_key, .booking_type = b->booking_type,
        .request_id = ex->request_id, .traceparent = traceparent,
    };
    if (svc->voice->start_call(svc->voice->impl, &call, on_call_done, ex) != 0)
        record_failure(ex, "voice agent: request not started", true, 0);
}

/* The claim's early window: -1 (no check) unless the request is marked and the tolerance is on. */
static int early_window_s(const struct followup_execution_service *svc, const struct execution *ex)
{
    return ex->refuse_early && svc->early_tolerance_s > 0 ? svc->lead_time_s + svc->early_tolerance_s : -1;
}

static void refuse_too_early(struct execution *ex, int wait_s)
{
    struct log_ctx ctx = exec_ctx(ex);
    char wait[16], tolerance[16];
    snprintf(wait, sizeof(wait), "%d", wait_s);
    snprintf(tolerance, sizeof(tolerance), "%d", ex->svc->early_tolerance_s);
    LOG_KV(ex->svc->log, LOG_LEVEL_WARN, &ctx, ((const char *[]){"retry_after_s", wait, "early_tolerance_s", tolerance,
                                                                 NULL}),
           "delivery before scheduled_at - lead_time_s - early_tolerance_s: refused without a call");
    ex->retry_after_s = wait_s;
    finish(ex, EXEC_TOO_EARLY);
}

static void refuse_expired(struct execution *ex, const struct claim_result *r)
{
    struct log_ctx ctx = exec_ctx(ex);
    if (r->booking == NULL) {   /* an earlier delivery expired it */
        LOG_INFO(ex->svc->log, &ctx, "booking already expired: no call");
    } else {
        char late[24], bound[16];
        snprintf(late, sizeof(late), "%lld", (long long)r->late_s);
        snprintf(bound, sizeof(bound), "%d", ex->svc->max_lateness_s);
        LOG_KV(ex->svc->log, LOG_LEVEL_WARN, &ctx, ((const char *[]){"late_s", late, "max_lateness_s", bound, NULL}),
               "reached later than scheduled_at + max_lateness_s: expired without a call");
    }
    finish(ex, EXEC_EXPIRED);
}

static void defer(struct execution *ex, const struct claim_result *r)
{
    struct followup_execution_service *svc = ex->svc;
    struct log_ctx ctx = exec_ctx(ex);
    ex->retry_after_s = r->deferral == DEFER_RETRY_AFTER ? r->wait_s : EXEC_DEFER_RETRY_S;
    if ((unsigned)r->deferral < DEFER_N) svc->deferred[r->deferral]++;
    char wait[16], tenant_live[16], all_live[16];
    snprintf(wait, sizeof(wait), "%d", ex->retry_after_s);
    snprintf(tenant_live, sizeof(tenant_live), "%d", r->tenant_live);
    snprintf(all_live, sizeof(all_live), "%d", r->all_live);
    LOG_KV(svc->log, LOG_LEVEL_INFO, &ctx,
           ((const char *[]){"reason", claim_deferral_name(r->deferral), "retry_after_s", wait, "tenant_in_flight",
                             tenant_live, "all_in_flight", all_live, NULL}),
           "deferred without a call");
    finish(ex, EXEC_DEFERRED);
}

/* Phase 1 done. */
/* A delivery that arrives before its own task is recorded on the row: Cloud Tasks may deliver a task that is due
 * now the moment it exists, before the scheduler's conditional update (create the task, then mark the row) has
 * committed. Its key is the one the row's current scheduled_at gives, so it is not an old task: a 2xx "stale"
 * would end it and the booking would never run. */
static bool awaits_its_record(const struct execution *ex, const struct claim_result *r)
{
    char key[IDEMPOTENCY_KEY_LEN];
    return r->outcome == CLAIM_STALE &&
           followup_idempotency_key(ex->tenant_id, ex->booking_id, r->scheduled_at_ms, key, sizeof(key)) == 0 &&
           strcmp(key, ex->idempotency_key) == 0;
}

static void on_claimed(void *arg, enum repo_rc rc, const struct claim_result *r)
{
    struct execution *ex = arg;
    struct followup_execution_service *svc = ex->svc;
    if (rc != REPO_OK || r == NULL) {
        finish(ex, EXEC_UNAVAILABLE);
        return;
    }
    if ((r->tenant_live >= 0 || r->all_live >= 0) && svc->on_counted != NULL)
        svc->on_counted(svc->on_counted_arg, r->tenant_live, r->all_live);
    if (awaits_its_record(ex, r)) {
        struct log_ctx ctx = exec_ctx(ex);
        LOG_INFO(svc->log, &ctx, "delivered before the row records its task: retry later");
        finish(ex, EXEC_IN_PROGRESS); /* 409: Cloud Tasks retries; by then the row has it */
        return;
    }
    switch (r->outcome) {
    case CLAIM_TOO_EARLY: refuse_too_early(ex, r->wait_s); return;
    case CLAIM_EXPIRED: refuse_expired(ex, r); return;
    case CLAIM_DEFERRED: defer(ex, r); return;
    case CLAIM_CLAIMED: break;
    default: finish(ex, status_for_claim(r->outcome)); return;
    }
    ex->booking = *r->booking;
    svc->inflight++;
    struct log_ctx ctx = exec_ctx(ex);
    LOG_INFO(svc->log, &ctx, "claimed for execution (attempt %d)", r->booking->execution_attempts);
    start_call(ex);
}

static int copy_field(char *dst, size_t cap, const char *src)
{
    if (src == NULL || strlen(src) >= cap) return -1;
    memcpy(dst, src, strlen(src) + 1);
    return 0;
}

int followup_execution_execute(struct followup_execution_service *svc, const struct execution_request *req,
                               execution_done_cb cb, void *arg)
{
    struct execution *ex = calloc(1, sizeof(*ex));
    if (ex == NULL) return -1;
    ex->svc = svc;
    ex->cb = cb;
    ex->arg = arg;
    ex->refuse_early = req->refuse_early;
    if (req->trace != NULL) ex->trace = *req->trace;
    else trace_context_new(&ex->trace);
    if (copy_field(ex->schema, sizeof(ex->schema), req->schema) != 0 ||
        copy_field(ex->tenant_id, sizeof(ex->tenant_id), req->tenant_id) != 0 ||
        copy_field(ex->booking_id, sizeof(ex->booking_id), req->booking_id) != 0 ||
        copy_field(ex->idempotency_key, sizeof(ex->idempotency_key), req->idempotency_key) != 0 ||
        copy_field(ex->request_id, sizeof(ex->request_id), req->request_id != NULL ? req->request_id : "") != 0) {
        free(ex);
        return -1;
    }
    struct claim_params cp = {.idempotency_key = ex->idempotency_key, .lease_s = svc->lease_s,
                              .early_window_s = early_window_s(svc, ex), .max_lateness_s = svc->max_lateness_s,
                              .tenant_cap = svc->tenant_cap, .global_cap = svc->global_cap};
    if (svc->repo->claim_execution(svc->repo->impl, ex->schema, ex->tenant_id, ex->booking_id, &cp, on_claimed,
                                   ex) != 0) {
        free(ex);
        return -1;
    }
    return 0; /* ex is owned by the pending repository callback */ // cppcheck-suppress memleak
}
