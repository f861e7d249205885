/*
 * deals_pipeline/services/followup_state_service — see the header.
 */
#include "features/deals_pipeline/services/followup_state_service.h"

#include <stdlib.h>
#include <string.h>

#include "features/deals_pipeline/services/followup_scheduler_service.h"

static void read_next_schema(struct followup_state *s);

int followup_state_init(struct followup_state *s, const struct config *cfg, struct bookings_repo *repo,
                        struct clock_port *clock, struct logger *log, int lease_s)
{
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    s->repo = repo;
    s->clock = clock;
    s->log = log;
    s->lease_s = lease_s;
    s->n_schemas = cfg->db_schemas.n;
    size_t n = (size_t)(s->n_schemas > 0 ? s->n_schemas : 1);
    s->state = calloc(n, sizeof(*s->state));
    s->read_at_ms = calloc(n, sizeof(*s->read_at_ms));
    return s->state != NULL && s->read_at_ms != NULL ? 0 : -1;
}

struct booking_state_query followup_state_query(const struct config *cfg, int lease_s)
{
    return (struct booking_state_query){
        .types = &cfg->followup_booking_types, .lookback_s = cfg->followup_catchup_window_s,
        .horizon_s = SCHEDULER_HORIZON_S - SCHEDULER_HORIZON_MARGIN_S + cfg->followup_lead_time_s,
        .lease_s = lease_s};
}

double followup_state_oldest_due_age_s(const struct booking_state *st)
{
    if (st->oldest_due_ms == 0 || st->db_now_ms <= st->oldest_due_ms) return 0;
    return (double)(st->db_now_ms - st->oldest_due_ms) / 1000.0;
}

static void on_state(void *arg, enum repo_rc rc, const struct booking_state *st)
{
    struct followup_state *s = arg;
    if (s->closed) {
        s->running = false;
        return;
    }
    if (rc == REPO_OK) {
        s->state[s->idx] = *st;
        s->read_at_ms[s->idx] = s->clock->now_ms(s->clock->impl);
    } else {
        s->failures++;
        LOG_DEBUG(s->log, &(struct log_ctx){.schema = s->cfg->db_schemas.items[s->idx]},
                  "cannot read the bookings' state; the next refresh retries");
    }
    s->idx++;
    read_next_schema(s);
}

static void read_next_schema(struct followup_state *s)
{
    while (!s->closed && s->idx < s->n_schemas) {
        struct booking_state_query q = followup_state_query(s->cfg, s->lease_s);
        if (s->repo->booking_state(s->repo->impl, s->cfg->db_schemas.items[s->idx], &q, on_state, s) == 0) return;
        s->failures++;
        s->idx++;
    }
    s->running = false;
    s->refreshes++;
}

static void on_timer(void *arg)
{
    struct followup_state *s = arg;
    if (s->closed) return;
    if (!s->running) {
        s->running = true;
        s->idx = 0;
        read_next_schema(s);
    }
    if (s->clock->after(s->clock->impl, (uint64_t)s->cfg->followup_sweep_interval_s * 1000, on_timer, s) != 0)
        LOG_WARN(s->log, NULL, "cannot re-arm the bookings' state refresh; the state gauges stop here");
}

int followup_state_start(struct followup_state *s)
{
    return s->clock->after(s->clock->impl, 0, on_timer, s);
}

void followup_state_close(struct followup_state *s)
{
    s->closed = true;
}

void followup_state_free(struct followup_state *s)
{
    free(s->state);
    free(s->read_at_ms);
    s->state = NULL;
    s->read_at_ms = NULL;
}
