/*
 * core/health — operational routes on the embedded listener: /healthz (the
 * loop runs) and /readyz (listener bound, database connected and LISTENing,
 * OIDC keys loaded in oidc mode; 503 with the reason otherwise) and /metrics
 * (Prometheus text, core/app_metrics).
 */
#ifndef FOLLOWUPD_CORE_HEALTH_H
#define FOLLOWUPD_CORE_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

#include "shared/http/http_router.h"

struct app;

extern const struct http_route health_routes[];
extern const size_t health_routes_count;

/* NULL when ready, else a short reason ("database", "listener", "oidc_keys", "http"). */
const char *health_not_ready_reason(struct app *app);

#endif
