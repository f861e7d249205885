/*
 * deals_pipeline/services/followup_capture_service — is what the database
 * captures what followupd is configured for?
 *
 * The NOTIFY triggers carry their settings as trigger arguments (migration
 * 007): the follow-up booking types and notify_within_s; `followupd migrate`
 * installs the configured ones, or removes the triggers in poll mode.  A
 * database migrated by hand, or a configuration changed since, can differ.
 * That never loses a booking — the periodic sweep finds every booking that
 * waits for a task, in every mode — but it costs latency (a type the trigger
 * does not know waits for the sweep) or the backend's commit throughput
 * (NOTIFYs in poll mode).  This service reads the installed triggers of every
 * schema (a catalog read through the repository) after every listener
 * (re)connect and configuration reload, compares them with the configuration
 * and reports each schema whose triggers differ: one warn line when a schema
 * starts or stops differing, and a per-schema state for
 * followupd_capture_trigger_mismatch{schema}.  Checks are coalesced: one
 * request while a check runs leads to one more check after it.
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_CAPTURE_SERVICE_H
#define FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_CAPTURE_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "features/deals_pipeline/services/ports.h"
#include "utils/log.h"

enum capture_state { CAPTURE_UNKNOWN = 0, CAPTURE_MATCHES, CAPTURE_DIFFERS };

struct followup_capture {
    const struct config *cfg;    /* live config */
    struct bookings_repo *repo;
    struct logger *log;
    enum capture_state *state;   /* per schema of cfg->db_schemas (fixed at start) */
    int n_schemas;
    int idx;                     /* schema being read */
    bool running, rerun, closed;
    uint64_t checks;
};

int followup_capture_init(struct followup_capture *c, const struct config *cfg, struct bookings_repo *repo,
                          struct logger *log) __attribute__((warn_unused_result));
/* Read and compare every schema's triggers (asynchronous, coalesced). */
void followup_capture_check(struct followup_capture *c);
void followup_capture_close(struct followup_capture *c);
void followup_capture_free(struct followup_capture *c);

/* Pure (unit-tested): why the installed triggers differ from cfg, or NULL when they match.
 * `detail` receives the installed and the expected arguments for the log. */
const char *followup_capture_difference(const struct config *cfg, const struct capture_trigger *t, int n,
                                        char *detail, size_t cap);

#endif
