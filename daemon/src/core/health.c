/*
 * core/health — see the header.
 */
#include "core/health.h"

#include <stdio.h>

#include "core/app.h"
#include "core/app_metrics.h"
#include "core/components_internal.h"

const char *health_not_ready_reason(struct app *app)
{
    struct app_components *c = app->comp;
    if (c == NULL || app->stopping) return "stopping";
    if (c->http == NULL) return "http";
    if (c->pool == NULL || db_pool_connected(c->pool) == 0) return "database";
    if (!c->listener_ready) return "listener";
    if (app->cfg.auth_mode == AUTH_OIDC && (c->jwks == NULL || !jwks_cache_ready(c->jwks))) return "oidc_keys";
    return NULL;
}

static void healthz(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    http_exchange_respond(ex, 200, "{\"status\":\"ok\"}", NULL, 0);
}

static void readyz(struct http_exchange *ex, void *ctx)
{
    struct deals_pipeline_ctx *dp = ctx;
    const char *reason = health_not_ready_reason(dp->host);
    if (reason == NULL) {
        http_exchange_respond(ex, 200, "{\"status\":\"ready\"}", NULL, 0);
        return;
    }
    char body[96];
    snprintf(body, sizeof(body), "{\"status\":\"not_ready\",\"reason\":\"%s\"}", reason);
    http_exchange_respond(ex, 503, body, NULL, 0);
}

const struct http_route health_routes[] = {
    {"GET", "/healthz", healthz, HTTP_AUTH_NONE},
    {"GET", "/readyz", readyz, HTTP_AUTH_NONE},
    {"GET", "/metrics", app_metrics_route, HTTP_AUTH_NONE},
};
const size_t health_routes_count = sizeof(health_routes) / sizeof(health_routes[0]);
