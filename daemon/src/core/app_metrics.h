/*
 * core/app_metrics — followupd's Prometheus metrics: which numbers exist, how
 * they are fed, and the GET /metrics route.  The registry and the text format
 * are core/metrics; no service calls into this module.  Numbers come from:
 *   - observer hooks the components already offer: the notification callback
 *     (app_metrics_on_notify), deals_pipeline_ctx.on_execution,
 *     task_authenticator.on_failure and the HTTP server's response observer;
 *   - thin decorators of two service ports (voice agent, task queue) that
 *     time each call and pass everything through unchanged;
 *   - stats read at render time: the scheduler's stats struct and queue
 *     sizes, the DB pool's in-use/waiting counts, listener and readiness state,
 *     the JWKS cache's fetch results and key-set age.
 *
 * Metric names (all followupd_*): notifications_received_total{schema},
 * tasks_created_total, tasks_already_existed_total, task_failures_total{reason},
 * callbacks_total{code}, callback_auth_failures_total{check},
 * executions_total{status}, execution_duration_seconds (histogram),
 * voice_calls_total{outcome}, voice_call_duration_seconds (histogram),
 * notify_to_task_created_seconds (histogram), call_lateness_seconds
 * (histogram), db_pool_in_use_connections, db_pool_waiting_queries,
 * db_pool_max_connections, scheduler_backlog_bookings, executions_in_flight,
 * listener_connected, ready, http_connections, jwks_refresh_total{result},
 * jwks_key_set_age_seconds, http_connections_refused_total{reason=max_connections|per_peer},
 * build_info{version}.
 */
#ifndef FOLLOWUPD_CORE_APP_METRICS_H
#define FOLLOWUPD_CORE_APP_METRICS_H

#include "shared/http/http_server.h"

struct app;
struct app_metrics;

/* Build the registry and hook it into the running components (call once,
 * after components_start succeeded). NULL on out of memory (logged; the
 * daemon runs without metrics and /metrics answers 503). */
struct app_metrics *app_metrics_attach(struct app *app);
void app_metrics_free(struct app_metrics *m);

/* A notification arrived on `channel` (one of the components' channels). */
void app_metrics_on_notify(struct app_metrics *m, const char *channel, const char *payload);

/* GET /metrics (route handler; app_ctx is the deals_pipeline_ctx whose host is the app). */
void app_metrics_route(struct http_exchange *ex, void *app_ctx);

/* Text exposition of the current values (malloc'd; NULL on OOM). For tests and the route. */
char *app_metrics_render(struct app_metrics *m, size_t *len);

#endif
