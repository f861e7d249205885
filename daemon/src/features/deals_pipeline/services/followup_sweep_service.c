/*
 * deals_pipeline/services/followup_sweep_service — see the header.
 */
#include "features/deals_pipeline/services/followup_sweep_service.h"

#include <string.h>

#include "features/deals_pipeline/services/followup_keys.h"

static void sweep_next_schema(struct followup_sweep *sw);

static const char *const phase_names[] = {"catch-up", "task sweep", "re-opened sweep"};

void followup_sweep_init(struct followup_sweep *sw, const struct config *cfg, struct bookings_repo *repo,
                         struct followup_scheduler *sched, struct clock_port *clock, struct logger *log)
{
    memset(sw, 0, sizeof(*sw));
    sw->cfg = cfg;
    sw->repo = repo;
    sw->sched = sched;
    sw->clock = clock;
    sw->log = log;
}

static void sweep_finished(struct followup_sweep *sw)
{
    sw->running = false;
    sw->runs++;
    if (sw->batch_full) sw->rerun_when_idle = true;
    if (sw->rerun && !sw->closed) {
        sw->rerun = false;
        followup_sweep_request(sw, "requested while running");
    } else if (sw->rerun_when_idle && followup_scheduler_idle(sw->sched) && !sw->closed) {
        sw->rerun_when_idle = false;
        followup_sweep_request(sw, "next batch");
    }
}

static void on_found(void *arg, enum repo_rc rc, const struct booking_key *keys, int n)
{
    struct followup_sweep *sw = arg;
    const char *schema = sw->cfg->db_schemas.items[sw->schema_idx];
    if (rc != REPO_OK) {
        LOG_WARN(sw->log, &(struct log_ctx){.schema = schema}, "catch-up query failed; next sweep retries");
    } else {
        for (int i = 0; i < n && !sw->closed; i++) {
            if (!followup_scheduler_owns(sw->sched, keys[i].booking_id)) continue;   /* given up meanwhile */
            if (followup_scheduler_enqueue(sw->sched, schema, keys[i].tenant_id, keys[i].booking_id) != 0)
                sw->batch_full = true;
        }
        sw->found += (uint64_t)n;
        if (n >= SWEEP_BATCH) sw->batch_full = true;
        if (n > 0)
            LOG_INFO(sw->log, &(struct log_ctx){.schema = schema}, "%s found %d booking(s)", phase_names[sw->phase], n);
    }
    if (sw->phase == SWEEP_LAST_PHASE) {
        sw->phase = SWEEP_CATCHUP;
        sw->schema_idx++;
    } else {
        sw->phase++;
    }
    sweep_next_schema(sw);
}

/* The partitions this replica owns now: NULL when it owns every one (no filter), else sw->filter. */
static const struct partition_filter *owned_filter(struct followup_sweep *sw)
{
    const struct ownership_port *o = sw->sched->owner;
    if (o == NULL) return NULL;
    int n = o->owned(o->impl, sw->owned, FOLLOWUP_PARTITIONS_MAX);
    if (n >= o->partitions) return NULL;
    sw->filter = (struct partition_filter){.partitions = o->partitions, .owned = sw->owned, .n_owned = n};
    return &sw->filter;
}

/* Each schema gets three reads: bookings waiting for a task (catch-up), tasks
 * that no longer match their booking, and bookings un-cancelled (both changed
 * while nobody listened) — of the partitions this replica owns. */
static int start_query(struct followup_sweep *sw, const char *schema)
{
    const struct config *c = sw->cfg;
    int horizon = SCHEDULER_HORIZON_S - SCHEDULER_HORIZON_MARGIN_S + c->followup_lead_time_s;
    int64_t now = sw->clock->now_ms(sw->clock->impl);
    const struct partition_filter *parts = owned_filter(sw);
    switch (sw->phase) {
    case SWEEP_STALE_TASKS:
        return sw->repo->find_stale_tasks(sw->repo->impl, schema, &c->followup_booking_types, parts, SWEEP_BATCH,
                                          on_found, sw);
    case SWEEP_REOPENED:
        return sw->repo->find_reopened(sw->repo->impl, schema, &c->followup_booking_types, parts, now,
                                       c->followup_catchup_window_s, horizon, SWEEP_BATCH, on_found, sw);
    case SWEEP_CATCHUP:
        break;
    }
    return sw->repo->find_catchup(sw->repo->impl, schema, &c->followup_booking_types, parts, now,
                                  c->followup_catchup_window_s, horizon, SWEEP_BATCH, on_found, sw);
}

/* A replica that owns no partition has nothing to sweep. */
static bool owns_nothing(const struct followup_sweep *sw)
{
    const struct ownership_port *o = sw->sched->owner;
    int one;
    return o != NULL && o->owned(o->impl, &one, 1) == 0;
}


static void sweep_next_schema(struct followup_sweep *sw)
{
    const struct config *c = sw->cfg;
    while (!sw->closed && sw->schema_idx < c->db_schemas.n) {
        if (start_query(sw, c->db_schemas.items[sw->schema_idx]) == 0) return;
        LOG_WARN(sw->log, &(struct log_ctx){.schema = c->db_schemas.items[sw->schema_idx]},
                 "sweep query not started; next sweep retries");
        sw->phase = SWEEP_CATCHUP;
        sw->schema_idx++;
    }
    sweep_finished(sw);
}

void followup_sweep_request(struct followup_sweep *sw, const char *reason)
{
    if (sw->closed) return;
    if (sw->running) {
        sw->rerun = true;
        return;
    }
    if (owns_nothing(sw)) {
        LOG_DEBUG(sw->log, NULL, "catch-up sweep (%s) skipped: this replica owns no partition", reason);
        return;
    }
    if (strcmp(reason, "periodic") != 0 || sw->cfg->capture_mode != CAPTURE_POLL)
        LOG_DEBUG(sw->log, NULL, "catch-up sweep (%s)", reason);
    sw->running = true;
    sw->batch_full = false;
    sw->schema_idx = 0;
    sw->phase = SWEEP_CATCHUP;
    sweep_next_schema(sw);
}

static void on_periodic(void *arg)
{
    struct followup_sweep *sw = arg;
    if (sw->closed) return;
    followup_sweep_request(sw, "periodic");
    followup_sweep_start_periodic(sw);
}

/* notify mode: every followup.sweep_interval_s; poll mode: the sweep is the capture, every poll_interval_ms. */
static uint64_t period_ms(const struct config *c)
{
    return c->capture_mode == CAPTURE_POLL ? (uint64_t)c->capture_poll_interval_ms
                                           : (uint64_t)c->followup_sweep_interval_s * 1000;
}

int followup_sweep_start_periodic(struct followup_sweep *sw)
{
    if (sw->closed) return -1;
    sw->periodic = true;
    return sw->clock->after(sw->clock->impl, period_ms(sw->cfg), on_periodic, sw);
}

void followup_sweep_close(struct followup_sweep *sw)
{
    sw->closed = true;
}

void followup_sweep_on_scheduler_idle(void *arg)
{
    struct followup_sweep *sw = arg;
    if (sw->rerun_when_idle && !sw->running && !sw->closed) {
        sw->rerun_when_idle = false;
        followup_sweep_request(sw, "next batch");
    }
}
