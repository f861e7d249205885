/*
 * deals_pipeline/deals_pipeline — what the feature's HTTP handlers receive as
 * their context: the live configuration (schema allowlist), the execution
 * service and the logger.  Built by core/components.
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_H
#define FOLLOWUPD_DEALS_PIPELINE_H

#include "core/config.h"
#include "features/deals_pipeline/services/followup_execution_service.h"
#include "utils/log.h"

struct deals_pipeline_ctx {
    const struct config *cfg;
    struct followup_execution_service *exec;
    struct logger *log;
    void (*on_execution)(void *arg, enum execution_status st);   /* optional observer (metrics) */
    void *observer_arg;
    void *host;          /* the owning application (for routes outside the feature) */
};

#endif
