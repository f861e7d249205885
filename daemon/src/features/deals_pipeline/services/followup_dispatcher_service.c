/*
 * deals_pipeline/services/followup_dispatcher_service — see the header.
 * A scan walks the schemas for the minimum due time; a round walks them for
 * due rows and executes each; both are strictly sequential per dispatcher, so
 * at most one query of each kind is in flight.
 */
#include "features/deals_pipeline/services/followup_dispatcher_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct armed_timer {
    struct followup_dispatcher *d;
    uint64_t gen;
    struct armed_timer *prev, *next;   /* d->timers */
};

struct dispatched_run {
    struct followup_dispatcher *d;
    bool immediate;                      /* fast path: not part of a round */
    char schema[SCHEMA_NAME_LEN];
    char booking_id[UUID_STR_LEN];
};

static void start_round(struct followup_dispatcher *d);
static void scan_next(struct followup_dispatcher *d);

void followup_dispatcher_init(struct followup_dispatcher *d, const struct config *cfg, struct bookings_repo *repo,
                              struct followup_execution_service *exec, struct clock_port *clock, struct logger *log)
{
    memset(d, 0, sizeof(*d));
    d->cfg = cfg;
    d->repo = repo;
    d->exec = exec;
    d->clock = clock;
    d->log = log;
}

static int64_t now_ms(struct followup_dispatcher *d)
{
    return d->clock->now_ms(d->clock->impl);
}

/* ---------- the one timer ---------- */

static void timer_link(struct followup_dispatcher *d, struct armed_timer *t)
{
    t->prev = NULL;
    t->next = d->timers;
    if (d->timers != NULL) d->timers->prev = t;
    d->timers = t;
}

static void timer_unlink(struct followup_dispatcher *d, struct armed_timer *t)
{
    if (t->prev != NULL) t->prev->next = t->next;
    else d->timers = t->next;
    if (t->next != NULL) t->next->prev = t->prev;
}

static void on_timer(void *arg)
{
    struct armed_timer *t = arg;
    struct followup_dispatcher *d = t->d;
    bool current = t->gen == d->timer_gen;
    timer_unlink(d, t);
    free(t);
    if (!current || d->closed) return;   /* superseded by an earlier arm */
    d->armed_due_ms = 0;
    start_round(d);
}

/* Arm for due_ms unless an earlier (or equal) timer is already armed.  While held (everything due was
 * deferred by a cap), not before the hold ends. */
static void arm(struct followup_dispatcher *d, int64_t due_ms)
{
    int64_t now = now_ms(d);
    int64_t cap = now + (int64_t)d->cfg->followup_sweep_interval_s * 1000;
    if (due_ms == 0 || due_ms > cap) due_ms = cap;
    if (due_ms < d->hold_until_ms) due_ms = d->hold_until_ms;
    if (d->armed_due_ms != 0 && d->armed_due_ms <= due_ms) return;
    struct armed_timer *t = malloc(sizeof(*t));
    if (t == NULL) return;
    *t = (struct armed_timer){.d = d, .gen = ++d->timer_gen};
    uint64_t delay = due_ms > now ? (uint64_t)(due_ms - now) : 0;
    timer_link(d, t);
    if (d->clock->after(d->clock->impl, delay, on_timer, t) != 0) {
        timer_unlink(d, t);
        free(t);
        return;
    }
    d->armed_due_ms = due_ms;
    LOG_DEBUG(d->log, NULL, "local dispatcher armed in %llu ms", (unsigned long long)delay);
}

/* ---------- earliest-due scan ---------- */

static int lease_s(const struct followup_dispatcher *d)
{
    return d->exec->lease_s;
}

static void on_next_due(void *arg, enum repo_rc rc, int64_t due_ms)
{
    struct followup_dispatcher *d = arg;
    if (rc == REPO_OK && due_ms != 0 && (d->scan_min_ms == 0 || due_ms < d->scan_min_ms)) d->scan_min_ms = due_ms;
    d->scan_idx++;
    scan_next(d);
}

static void scan_next(struct followup_dispatcher *d)
{
    const struct strlist *schemas = &d->cfg->db_schemas;
    while (!d->closed && d->scan_idx < schemas->n) {
        if (d->repo->next_due(d->repo->impl, schemas->items[d->scan_idx], d->cfg->followup_lead_time_s, lease_s(d),
                              on_next_due, d) == 0)
            return;
        d->scan_idx++;
    }
    d->scanning = false;
    if (d->closed) return;
    arm(d, d->scan_min_ms);
    if (d->rescan) {
        d->rescan = false;
        followup_dispatcher_poke(d);
    }
}

void followup_dispatcher_poke(struct followup_dispatcher *d)
{
    if (d->closed) return;
    if (d->scanning) {
        d->rescan = true;
        return;
    }
    d->scanning = true;
    d->scan_idx = 0;
    d->scan_min_ms = 0;
    scan_next(d);
}

/* ---------- a dispatch round ---------- */

static void round_next_schema(struct followup_dispatcher *d);

/* ---------- deferrals (voice_agent caps) ---------- */

/* Everything due was deferred: the rows are still due, so the next round waits until a call of this process
 * ends (a slot frees) or, for slots held by other replicas, retry_after_s. */
static void hold(struct followup_dispatcher *d, int retry_after_s)
{
    d->hold_until_ms = now_ms(d) + (int64_t)(retry_after_s > 0 ? retry_after_s : EXEC_DEFER_RETRY_S) * 1000;
    d->holds++;
    LOG_DEBUG(d->log, NULL, "every due booking deferred: next round in %d s or when a call ends", retry_after_s);
}

/* A call of this process ended: its slot is free again. */
static void slot_freed(struct followup_dispatcher *d)
{
    if (d->hold_until_ms == 0 || d->closed) return;
    d->hold_until_ms = 0;
    followup_dispatcher_poke(d);
}

static bool made_a_call(enum execution_status st)
{
    return st == EXEC_EXECUTED || st == EXEC_FAILED_RETRYABLE || st == EXEC_FAILED_FINAL;
}

/* Batch size of a round: no more than the all-tenant cap could claim at once. */
static int round_limit(const struct followup_dispatcher *d)
{
    int cap = d->cfg->va_max_concurrent;
    return cap > 0 && cap < DISPATCH_BATCH ? cap : DISPATCH_BATCH;
}

static void maybe_end_round(struct followup_dispatcher *d)
{
    if (d->running > 0 || d->round_idx < d->cfg->db_schemas.n) return;
    d->dispatching = false;
    d->rounds++;
    if (d->closed) return;
    bool stalled = d->round_deferred > 0 && d->round_progress == 0;
    if (stalled) hold(d, d->round_retry_after_s);
    if ((d->round_full || d->round_again) && !stalled) start_round(d);
    else followup_dispatcher_poke(d);
}

/* The row is still a live local task after this outcome (a retry, a lease, a claim that could not run). */
static bool execution_leaves_work(enum execution_status st)
{
    return st == EXEC_FAILED_RETRYABLE || st == EXEC_IN_PROGRESS || st == EXEC_UNAVAILABLE || st == EXEC_TOO_EARLY ||
           st == EXEC_DEFERRED;
}

/* retry_after_s: of a deferral (its runs are never refused as early: not marked refuse_early). */
static void on_executed(void *arg, enum execution_status st, int retry_after_s)
{
    struct dispatched_run *run = arg;
    struct followup_dispatcher *d = run->d;
    LOG_DEBUG(d->log, &(struct log_ctx){.schema = run->schema, .booking_id = run->booking_id},
              "local dispatch finished: %s", execution_status_name(st));
    bool immediate = run->immediate;
    free(run);
    if (st == EXEC_DEFERRED) d->deferred++;
    if (immediate) {
        d->immediate_running--;
        if (st == EXEC_DEFERRED && !d->closed) hold(d, retry_after_s);
        if (made_a_call(st)) slot_freed(d);
        if (execution_leaves_work(st) && !d->closed) followup_dispatcher_poke(d);   /* e.g. a retry's due time */
        return;
    }
    d->running--;
    if (st == EXEC_DEFERRED) {
        d->round_deferred++;
        d->round_retry_after_s = retry_after_s;
    } else {
        d->round_progress++;
    }
    maybe_end_round(d);
}

/* Start one execution; request ids say which path ran it (local-… a round, local-now-… the fast path). */
static int dispatch_one(struct followup_dispatcher *d, const char *schema, const char *tenant_id,
                        const char *booking_id, const char *idempotency_key, bool immediate)
{
    struct dispatched_run *run = calloc(1, sizeof(*run));
    if (run == NULL) return -1;
    run->d = d;
    run->immediate = immediate;
    snprintf(run->schema, sizeof(run->schema), "%s", schema);
    snprintf(run->booking_id, sizeof(run->booking_id), "%s", booking_id);
    char request_id[64];
    snprintf(request_id, sizeof(request_id), "local-%s%.8s-%llu", immediate ? "now-" : "", booking_id,
             (unsigned long long)d->dispatched);
    struct execution_request req = {.schema = schema, .tenant_id = tenant_id, .booking_id = booking_id,
                                    .idempotency_key = idempotency_key, .request_id = request_id};
    if (followup_execution_execute(d->exec, &req, on_executed, run) != 0) {
        free(run);
        return -1;
    }
    if (immediate) {
        d->immediate_running++;
        d->dispatched_immediately++;
    } else {
        d->running++;
    }
    d->dispatched++;
    return 0;
}

static void on_due(void *arg, enum repo_rc rc, const struct booking_key *keys, int n)
{
    struct followup_dispatcher *d = arg;
    const char *schema = d->cfg->db_schemas.items[d->round_idx];
    if (rc != REPO_OK) LOG_WARN(d->log, &(struct log_ctx){.schema = schema}, "due-task query failed; retrying later");
    for (int i = 0; i < n && !d->closed; i++)
        (void)dispatch_one(d, schema, keys[i].tenant_id, keys[i].booking_id, keys[i].idempotency_key, false);
    if (n >= round_limit(d)) d->round_full = true;
    d->round_idx++;
    round_next_schema(d);
}

static void round_next_schema(struct followup_dispatcher *d)
{
    const struct strlist *schemas = &d->cfg->db_schemas;
    while (!d->closed && d->round_idx < schemas->n) {
        if (d->repo->find_due(d->repo->impl, schemas->items[d->round_idx], d->cfg->followup_lead_time_s, lease_s(d),
                              round_limit(d), on_due, d) == 0)
            return;
        d->round_idx++;
    }
    d->round_idx = schemas->n;
    maybe_end_round(d);
}

static void start_round(struct followup_dispatcher *d)
{
    if (d->closed) return;
    if (d->dispatching) {
        d->round_again = true;
        return;
    }
    d->dispatching = true;
    d->round_idx = 0;
    d->round_full = false;
    d->round_again = false;
    d->round_deferred = d->round_progress = 0;
    d->hold_until_ms = 0;
    round_next_schema(d);
}

/* ---------- the fast path ---------- */

void followup_dispatcher_task_recorded(struct followup_dispatcher *d, const struct recorded_task *t)
{
    if (d->closed) return;
    if (t->due_ms <= now_ms(d) && d->immediate_running < DISPATCH_IMMEDIATE_MAX &&
        dispatch_one(d, t->schema, t->tenant_id, t->booking_id, t->idempotency_key, true) == 0)
        return;
    arm(d, t->due_ms);   /* due later, or the fast path is full: the timer (a round) takes it */
}

void followup_dispatcher_close(struct followup_dispatcher *d)
{
    d->closed = true;
    d->timer_gen++;   /* a timer still pending will find itself superseded */
}

void followup_dispatcher_free(struct followup_dispatcher *d)
{
    while (d->timers != NULL) {
        struct armed_timer *t = d->timers;
        timer_unlink(d, t);
        free(t);
    }
}
