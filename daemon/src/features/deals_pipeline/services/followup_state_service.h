/*
 * deals_pipeline/services/followup_state_service — a recent summary of every
 * configured schema's follow-ups by state (struct booking_state: counts, the
 * oldest due booking not called yet, expired leases) for the gauges of
 * /metrics.
 *
 * One cross-tenant aggregate per schema (repositories/booking_state_sql.h:
 * counts and timestamps only, over the three partial indexes, so its cost
 * follows live work, not history) at start and then every
 * [followup] sweep_interval_s (re-read when it re-arms); the schemas are read
 * one after the other, never two reads at once, and a refresh still running
 * when the next one is due is not doubled.  A failed read keeps the schema's
 * last summary and its read time (so the values are those of that moment) and
 * is retried at the next refresh.
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_STATE_SERVICE_H
#define FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_STATE_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "features/deals_pipeline/services/ports.h"
#include "utils/log.h"

struct followup_state {
    const struct config *cfg;         /* live config */
    struct bookings_repo *repo;
    struct clock_port *clock;
    struct logger *log;
    int lease_s;
    struct booking_state *state;      /* per schema of cfg->db_schemas (fixed at start) */
    int64_t *read_at_ms;              /* when state[i] was read (daemon clock); 0 = never */
    int n_schemas, idx;
    bool running, closed;
    uint64_t refreshes, failures;
};

int followup_state_init(struct followup_state *s, const struct config *cfg, struct bookings_repo *repo,
                        struct clock_port *clock, struct logger *log, int lease_s) __attribute__((warn_unused_result));
/* Refresh now, then every sweep_interval_s. 0, or -1 when the timer could not be armed. */
int followup_state_start(struct followup_state *s);
void followup_state_close(struct followup_state *s);
void followup_state_free(struct followup_state *s);

/* The query of the configuration: follow-up types, catch-up window, the sweep's horizon, the lease (pure). */
struct booking_state_query followup_state_query(const struct config *cfg, int lease_s);
/* Seconds the oldest due, not yet called follow-up of st had been due when st was read; 0 when none (pure). */
double followup_state_oldest_due_age_s(const struct booking_state *st);

#endif
