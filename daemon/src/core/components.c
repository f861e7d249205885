/*
 * core/components — see components.h.  Start order: timers → HTTP client →
 * database pool, listener and work ownership (advisory locks on the
 * listener's session) → repository → task queue (Cloud Tasks or local)
 * → voice agent → services → task authenticator (JWKS) → HTTP server.
 * Shutdown runs in phases so no callback outlives what it touches: (1) stop
 * intake (listener, sweeps, scheduler, no new connections), then drain:
 * wait for in-flight executions and requests up to shutdown.drain_timeout_ms
 * (see "shutdown drain" below); (2) close the
 * HTTP client, which hands every pending Cloud Tasks / voice-agent call back
 * to its caller as a transient failure; (3) free the clients, close the JWKS
 * cache and the pool, which completes every pending statement (answering
 * their HTTP exchanges); (4) close the HTTP server; (5) close the timers.
 */
#include "core/components.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/adapters.h"
#include "core/app.h"
#include "core/app_metrics.h"
#include "core/components_internal.h"
#include "core/health.h"
#include "features/deals_pipeline/controllers/notifications_controller.h"
#include "features/deals_pipeline/routes/bookings_routes.h"
#include "shared/db/db_notify.h"

static char *qualify_fingerprint(const struct config *cfg);   /* reload (operations), below */

static void on_listener_ready(void *arg)
{
    struct app *app = arg;
    app->comp->listener_ready = true;
    LOG_INFO(&app->log, NULL, "listening for booking notifications on %d schema(s); catching up",
             app->cfg.db_schemas.n);
    /* LISTEN first, then take partitions (their sweep is the catch-up), then notifications */
    if (app->comp->ownership_ready) db_ownership_session_up(&app->comp->ownership);
    followup_sweep_request(&app->comp->sweep, "listener (re)connected");
    if (app->comp->capture_ready) followup_capture_check(&app->comp->capture);
    if (app->comp->local) followup_dispatcher_poke(&app->comp->dispatcher);
}

static void on_listener_lost(void *arg)
{
    struct app *app = arg;
    app->comp->listener_ready = false;
    LOG_WARN(&app->log, NULL, "notification listener lost; reconnecting");
    if (app->comp->ownership_ready) db_ownership_session_lost(&app->comp->ownership);
}

/* New partitions: sweep them (what was notified while nobody owned them) and run their parked DELETE hints. */
static void on_partitions_gained(void *arg, const int *partitions, int n)
{
    (void)partitions, (void)n;
    struct app_components *c = arg;
    if (!c->sched_ready) return;
    followup_scheduler_partitions_gained(&c->sched);
    followup_sweep_request(&c->sweep, "partitions gained");
}

static void on_partitions_released(void *arg, const int *partitions, int n, bool lost)
{
    (void)partitions, (void)n, (void)lost;
    struct app_components *c = arg;
    if (c->sched_ready) followup_scheduler_partitions_released(&c->sched);
}

static bool partition_busy(void *arg, int partition)
{
    struct app_components *c = arg;
    return c->sched_ready && followup_scheduler_partition_busy(&c->sched, partition);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* What replicas must share to split work: the partition count and the schemas (in any order). */
static char *ownership_group(const struct config *cfg)
{
    int n = cfg->db_schemas.n;
    char **sorted = malloc(sizeof(char *) * (size_t)(n > 0 ? n : 1));
    size_t cap = 16;
    for (int i = 0; i < n; i++) cap += strlen(cfg->db_schemas.items[i]) + 1;
    char *group = malloc(cap);
    if (sorted == NULL || group == NULL) {
        free(sorted);
        free(group);
        return NULL;
    }
    memcpy(sorted, cfg->db_schemas.items, sizeof(char *) * (size_t)n);
    qsort(sorted, (size_t)n, sizeof(char *), by_name);
    size_t len = (size_t)snprintf(group, cap, "%d/", cfg->replicas_partitions);
    for (int i = 0; i < n; i++) len += (size_t)snprintf(group + len, cap - len, "%s%s", i ? "," : "", sorted[i]);
    free(sorted);
    return group;
}

static int start_ownership(struct app *app, struct app_components *c)
{
    char *group = ownership_group(&app->cfg);
    static const struct db_ownership_cbs cbs = {.on_gained = on_partitions_gained,
                                                .on_released = on_partitions_released,
                                                .busy = partition_busy};
    int rc = group != NULL ? db_ownership_init(&c->ownership, c->listener, &c->timers, &app->log,
                                               app->cfg.replicas_partitions, group,
                                               (unsigned)app->cfg.replicas_rebalance_interval_ms, &cbs, c)
                           : -1;
    free(group);
    if (rc != 0) return -1;
    c->ownership_ready = true;
    ownership_port_init(&c->ownership, &c->owner_port);
    return 0;
}

static void on_notify(void *arg, const char *channel, const char *payload)
{
    struct app *app = arg;
    app->comp->notifications++;
    app_metrics_on_notify(app->comp->metrics, channel, payload);
    notifications_controller_handle(&app->cfg, &app->comp->sched, &app->log, channel, payload);
}

static int start_database(struct app *app, struct app_components *c)
{
    struct db_opts opts = {.conninfo = app->cfg.db_conninfo, .prepare = app->cfg.db_prepared_statements};
    c->pool = db_pool_new(&app->loop, &app->log, &opts, app->cfg.db_pool_size, app->cfg.db_max_queue);
    /* poll mode: the session LISTENs to nothing (it still tells when the database is reachable) */
    c->n_channels = app->cfg.capture_mode == CAPTURE_NOTIFY ? app->cfg.db_schemas.n : 0;
    c->channels = calloc((size_t)(c->n_channels > 0 ? c->n_channels : 1), sizeof(*c->channels));
    if (c->pool == NULL || c->channels == NULL) return -1;
    for (int i = 0; i < c->n_channels; i++) {
        c->channels[i] = malloc(64);
        if (c->channels[i] == NULL || db_channel_for_schema(app->cfg.db_schemas.items[i], c->channels[i]) != 0)
            return -1;
    }
    static const struct db_listener_cbs cbs = {
        .on_ready = on_listener_ready, .on_notify = on_notify, .on_lost = on_listener_lost};
    c->listener = db_listener_new(&app->loop, &app->log, &opts, (const char *const *)c->channels, c->n_channels,
                                  &cbs, app);
    if (c->listener == NULL || start_ownership(app, c) != 0) return -1;
    c->repo = bookings_repository_new(c->pool, &app->cfg.db_schemas, &app->log);
    if (c->repo == NULL) return -1;
    return db_pool_start(c->pool) == 0 && db_listener_start(c->listener) == 0 ? 0 : -1;
}

static int start_task_queue(struct app *app, struct app_components *c)
{
    if (app->cfg.queue_backend == QUEUE_LOCAL) {
        c->local_queue.timers = &c->timers;
        local_queue_port(&c->local_queue, &c->queue);
        return 0;
    }
    /* The access-token assertion (iat/exp) and the token cache run on the daemon's clock, like everything else. */
    struct google_auth_opts gopts = {.credentials = app->cfg.ct_credentials, .metadata_url = app->cfg.ct_metadata_url,
                                     .now_ms = uv_timers_now_ms, .now_arg = &c->timers};
    c->gauth = google_auth_new(&app->loop, &app->log, c->http_client, &gopts);
    char err[256] = "";
    if (c->gauth == NULL || google_auth_load(c->gauth, err, sizeof(err)) != 0) {
        LOG_KV(&app->log, LOG_LEVEL_ERROR, NULL, ((const char *[]){"error", err, NULL}),
               "cannot load Google credentials");
        return -1;
    }
    struct cloud_tasks_opts copts = {.endpoint = app->cfg.ct_endpoint, .project = app->cfg.ct_project,
                                     .location = app->cfg.ct_location, .queue = app->cfg.ct_queue};
    c->ct = cloud_tasks_client_new(c->http_client, c->gauth, &app->log, &copts);
    if (c->ct == NULL) return -1;
    c->ct_adapter = (struct cloud_tasks_queue_adapter){.client = c->ct, .cfg = &app->cfg};
    cloud_tasks_queue_port(&c->ct_adapter, &c->queue);
    LOG_INFO(&app->log, NULL, "Cloud Tasks queue projects/%s/locations/%s/queues/%s as %s", app->cfg.ct_project,
             app->cfg.ct_location, app->cfg.ct_queue, google_auth_identity(c->gauth));
    return 0;
}

static struct voice_agent_opts voice_opts(const struct config *cfg)
{
    return (struct voice_agent_opts){.base_url = cfg->va_base_url, .token = cfg->va_token,
                                     .timeout_ms = cfg->va_timeout_ms};
}

/* Settings the execution service copies (re-applied on reload). */
static void apply_live_settings(struct app *app, struct app_components *c)
{
    c->exec.max_attempts = app->cfg.followup_max_attempts;
    c->exec.lead_time_s = app->cfg.followup_lead_time_s;
    c->exec.early_tolerance_s = app->cfg.followup_early_tolerance_s;
    c->exec.max_lateness_s = app->cfg.followup_max_lateness_s;
    c->exec.tenant_cap = app->cfg.va_max_concurrent_per_tenant;
    c->exec.global_cap = app->cfg.va_max_concurrent;
    c->exec.retry_base_s = app->cfg.queue_backend == QUEUE_LOCAL ? app->cfg.followup_retry_base_s : 0;
}

/* The scheduler drained a burst: a sweep batch may be owed, and (local backend)
 * the earliest due task may have changed. */
static void on_scheduler_idle(void *arg)
{
    struct app_components *c = arg;
    followup_sweep_on_scheduler_idle(&c->sweep);
    if (c->local) followup_dispatcher_poke(&c->dispatcher);
}

/* Local backend: a task due now runs at once (the dispatcher's fast path). */
static void on_local_task_recorded(void *arg, const struct recorded_task *t)
{
    followup_dispatcher_task_recorded(arg, t);
}

static int start_services(struct app *app, struct app_components *c)
{
    struct voice_agent_opts vopts = voice_opts(&app->cfg);
    c->va = voice_agent_client_new(c->http_client, &app->log, &vopts);
    if (c->va == NULL) return -1;
    c->va_adapter.client = c->va;
    voice_agent_port_init(&c->va_adapter, &c->voice);
    struct bookings_repo *repo = bookings_repository_port(c->repo);
    int lease_s = config_lease_s(&app->cfg);
    followup_execution_service_init(&c->exec, repo, &c->voice, &app->log, lease_s);
    apply_live_settings(app, c);
    if (followup_scheduler_init(&c->sched, &app->cfg, repo, &c->queue, &c->clock, &app->log, 100000) != 0)
        return -1;
    c->sched_ready = true;
    if (followup_scheduler_set_owner(&c->sched, &c->owner_port) != 0) return -1;
    followup_sweep_init(&c->sweep, &app->cfg, repo, &c->sched, &c->clock, &app->log);
    if (followup_capture_init(&c->capture, &app->cfg, repo, &app->log) != 0) return -1;
    c->capture_ready = true;
    c->local = app->cfg.queue_backend == QUEUE_LOCAL;
    followup_dispatcher_init(&c->dispatcher, &app->cfg, repo, &c->exec, &c->clock, &app->log);
    c->sched.on_idle = on_scheduler_idle;
    c->sched.on_idle_arg = c;
    if (c->local) {
        c->sched.on_task_recorded = on_local_task_recorded;
        c->sched.on_task_recorded_arg = &c->dispatcher;
    }
    c->dp = (struct deals_pipeline_ctx){.cfg = &app->cfg, .exec = &c->exec, .log = &app->log, .host = app};
    if (followup_state_init(&c->state, &app->cfg, repo, &c->clock, &app->log, lease_s) != 0 ||
        followup_state_start(&c->state) != 0)
        return -1;
    c->state_ready = true;
    return followup_sweep_start_periodic(&c->sweep);
}

static int64_t now_s(void *clock)
{
    return uv_timers_now_ms(clock) / 1000;
}

static int start_auth(struct app *app, struct app_components *c)
{
    c->auth = (struct task_authenticator){.cfg = &app->cfg, .log = &app->log, .now_s = now_s, .clock = &c->timers};
    if (app->cfg.auth_mode != AUTH_OIDC) return 0;
    struct jwks_cache_opts jopts = {.url = app->cfg.auth_jwks_url,
                                    .kid_fetch_interval_ms = app->cfg.auth_jwks_refetch_interval_s * 1000,
                                    .min_refresh_ms = app->cfg.auth_jwks_min_refresh_s * 1000};
    c->jwks = jwks_cache_new(&app->loop, &app->log, &jopts, jwks_fetch_via_http_client, c->http_client);
    c->auth.jwks = c->jwks;
    return c->jwks != NULL && jwks_cache_start(c->jwks) == 0 ? 0 : -1;
}

static int start_http(struct app *app, struct app_components *c)
{
    c->n_routes = bookings_routes_count + health_routes_count;
    c->routes = calloc(c->n_routes, sizeof(*c->routes));
    if (c->routes == NULL) return -1;
    memcpy(c->routes, bookings_routes, bookings_routes_count * sizeof(*c->routes));
    memcpy(c->routes + bookings_routes_count, health_routes, health_routes_count * sizeof(*c->routes));
    const struct config *cfg = &app->cfg;
    struct http_server_opts opts = {
        .listen = cfg->http_listen,
        .limits = {.max_header_bytes = (size_t)cfg->http_max_header_bytes,
                   .max_body_bytes = (size_t)cfg->http_max_body_bytes,
                   .header_timeout_ms = (unsigned)cfg->http_header_timeout_ms,
                   .body_timeout_ms = (unsigned)cfg->http_body_timeout_ms,
                   .idle_timeout_ms = (unsigned)cfg->http_idle_timeout_ms,
                   .max_connections = (unsigned)cfg->http_max_connections,
                   .max_connections_per_peer = (unsigned)(cfg->http_max_connections_per_peer > 0
                                                              ? cfg->http_max_connections_per_peer
                                                              : cfg->http_max_connections)},
        .routes = c->routes, .n_routes = c->n_routes, .app_ctx = &c->dp,
        .authenticate = task_authenticator_authenticate, .auth_ctx = &c->auth,
    };
    c->http = http_server_new(&app->loop, &app->log, &opts);
    char err[256] = "";
    if (c->http == NULL || http_server_listen(c->http, err, sizeof(err)) != 0) {
        LOG_KV(&app->log, LOG_LEVEL_ERROR, NULL, ((const char *[]){"error", err, "listen", cfg->http_listen, NULL}),
               "cannot listen");
        return -1;
    }
    char port[16], per_conn[24], total[24];
    size_t bound = http_server_preauth_bytes_max(&opts.limits);
    snprintf(port, sizeof(port), "%d", http_server_port(c->http));
    snprintf(per_conn, sizeof(per_conn), "%zu", bound);
    snprintf(total, sizeof(total), "%zu", bound * (size_t)cfg->http_max_connections);
    LOG_KV(&app->log, LOG_LEVEL_INFO, NULL,
           ((const char *[]){"listen", cfg->http_listen, "port", port, "preauth_bytes_per_connection", per_conn,
                             "preauth_bytes_max", total, NULL}),
           "HTTP listener ready");
    return 0;
}

int components_start(struct app *app)
{
    struct app_components *c = calloc(1, sizeof(*c));
    app->comp = c;
    if (c == NULL) {
        LOG_ERROR(&app->log, NULL, "out of memory");
        return -1;
    }
    uv_timers_init(&c->timers, &app->loop);
    /* Test hook: run the daemon's clock ahead (e.g. to reach the 720 h horizon without waiting). */
    const char *offset = getenv("FOLLOWUPD_TEST_CLOCK_OFFSET_MS");
    if (offset != NULL && offset[0] != '\0') {
        c->timers.offset_ms = strtoll(offset, NULL, 10);
        LOG_WARN(&app->log, NULL, "test clock offset in effect: %lld ms", (long long)c->timers.offset_ms);
    }
    c->clock = (struct clock_port){.impl = &c->timers, .now_ms = uv_timers_now_ms, .after = uv_timers_after};
    c->http_client = http_client_new(&app->loop, &app->log, app->cfg.followup_max_inflight + 16);
    if (c->http_client == NULL || start_database(app, c) != 0 || start_task_queue(app, c) != 0 ||
        start_services(app, c) != 0 || start_auth(app, c) != 0 || start_http(app, c) != 0) {
        LOG_ERROR(&app->log, NULL, "startup failed");
        return -1;
    }
    c->metrics = app_metrics_attach(app);   /* operations: optional, never fatal */
    c->qualify_fp = qualify_fingerprint(&app->cfg);
    return 0;
}

/* ---- shutdown ---- */

static void phase_done(void *arg);

static void begin(struct app *app)
{
    app->comp->phase_pending++;
}

/* ---- shutdown drain (operations): between stopping intake and closing what
 * in-flight work needs, wait until executions and callback requests have
 * finished, or shutdown.drain_timeout_ms passed.  At the deadline,
 * voice-agent calls still running are aborted: the execution service records
 * them as retryable failures (the pool is still open) and answers their
 * callbacks 503, so Cloud Tasks retries them (same idempotency key).  After a
 * short grace for those writes, anything left is cut off: a booking still
 * in_progress is claimable again once its lease expires. */
#define DRAIN_POLL_MS 20
#define DRAIN_ABORT_GRACE_MS 2000

/* Task creations in flight are not waited for: a cut one is repeated by the
 * next start's catch-up under the same task name (409 counts as created). */
static bool drained(struct app_components *c)
{
    return c->exec.inflight == 0 && http_server_active_exchanges(c->http) == 0;
}

static void drain_check(void *arg)
{
    struct app *app = arg;
    struct app_components *c = app->comp;
    if (drained(c)) {
        LOG_DEBUG(&app->log, NULL, "drained: no execution or request in flight");
        phase_done(app);
        return;
    }
    if (uv_now(&app->loop) >= c->drain_deadline_ms) {
        if (!c->drain_aborted && c->va != NULL && c->exec.inflight > 0) {
            c->drain_aborted = true;
            LOG_WARN(&app->log, NULL,
                     "drain deadline reached with %u execution(s) in flight; aborting their voice-agent calls "
                     "(recorded as retryable failures)", c->exec.inflight);
            c->drain_deadline_ms = uv_now(&app->loop) + DRAIN_ABORT_GRACE_MS;
            voice_agent_client_abort(c->va, "shutting down");
        } else {
            LOG_WARN(&app->log, NULL,
                     "drain deadline reached with %u execution(s) and %zu request(s) in flight; cutting them off "
                     "(claimable again after their lease)", c->exec.inflight, http_server_active_exchanges(c->http));
            phase_done(app);
            return;
        }
    }
    if (uv_timers_after(&c->timers, DRAIN_POLL_MS, drain_check, app) != 0) phase_done(app);
}

/* Counts as one pending close of the current phase until drained. */
static void drain_start(struct app *app)
{
    struct app_components *c = app->comp;
    begin(app);
    c->drain_deadline_ms = uv_now(&app->loop) + (uint64_t)app->cfg.shutdown_drain_timeout_ms;
    if (!drained(c))
        LOG_INFO(&app->log, NULL, "draining: %u execution(s), %zu request(s) in flight (up to %d ms)",
                 c->exec.inflight, http_server_active_exchanges(c->http), app->cfg.shutdown_drain_timeout_ms);
    if (uv_timers_after(&c->timers, 0, drain_check, app) != 0) phase_done(app);
}

static void close_phase(struct app *app)
{
    struct app_components *c = app->comp;
    c->phase++;
    begin(app);   /* guard while starting this phase's closes */
    switch (c->phase) {
    case 1:       /* stop intake (the listener's close ends this replica's partition locks) */
        if (c->ownership_ready) db_ownership_close(&c->ownership);
        followup_sweep_close(&c->sweep);
        followup_state_close(&c->state);
        if (c->capture_ready) followup_capture_close(&c->capture);
        followup_dispatcher_close(&c->dispatcher);
        if (c->sched_ready) followup_scheduler_close(&c->sched);
        if (c->http != NULL) http_server_stop_accepting(c->http);
        if (c->listener != NULL) { begin(app); db_listener_close(c->listener, phase_done, app); c->listener = NULL; }
        drain_start(app);   /* phase 2 waits for in-flight work */
        break;
    case 2:       /* abort outbound HTTP: every pending client call reaches its caller (as transient) */
        if (c->http_client != NULL) {
            begin(app);
            http_client_close(c->http_client, phase_done, app);
            c->http_client = NULL;
        }
        break;
    case 3:       /* free the clients; close the pool (completes pending statements), the JWKS cache */
        if (c->ct != NULL) {
            cloud_tasks_client_free(c->ct);
            cloud_tasks_queue_adapter_drop_calls(&c->ct_adapter);
            c->ct = NULL;
        }
        if (c->va != NULL) { voice_agent_client_free(c->va); c->va = NULL; }
        if (c->gauth != NULL) { google_auth_free(c->gauth); c->gauth = NULL; }
        if (c->jwks != NULL) {
            begin(app);
            jwks_cache_close(c->jwks, phase_done, app);
            c->jwks = c->auth.jwks = NULL; /* a request still waiting for a kid gets its answer from the close */
        }
        if (c->pool != NULL) { begin(app); db_pool_close(c->pool, phase_done, app); c->pool = NULL; }
        break;
    case 4:       /* every exchange has its answer: close the HTTP server */
        if (c->http != NULL) { begin(app); http_server_close(c->http, phase_done, app); c->http = NULL; }
        break;
    case 5:
        uv_timers_close(&c->timers);
        break;
    default:
        c->phase_pending--;
        app_close_done(app);
        return;
    }
    phase_done(app);
}

static void phase_done(void *arg)
{
    struct app *app = arg;
    if (--app->comp->phase_pending > 0) return;
    close_phase(app);
}

void components_stop(struct app *app)
{
    if (app->comp == NULL) return;
    app_close_begin(app);
    close_phase(app);
}

/* ---- reload (operations) ---- */

static void sweep_after_reload(void *sweep)
{
    followup_sweep_request(sweep, "configuration reloaded");
}

/* The settings that decide which bookings qualify for a task, as one string. */
static char *qualify_fingerprint(const struct config *cfg)
{
    size_t cap = 64;
    for (int i = 0; i < cfg->followup_booking_types.n; i++) cap += strlen(cfg->followup_booking_types.items[i]) + 1;
    char *fp = malloc(cap);
    if (fp == NULL) return NULL;
    size_t n = (size_t)snprintf(fp, cap, "%d/%d/%d/", cfg->followup_lead_time_s, cfg->followup_catchup_window_s,
                                cfg->followup_max_attempts);
    for (int i = 0; i < cfg->followup_booking_types.n && n < cap; i++)
        n += (size_t)snprintf(fp + n, cap - n, "%s,", cfg->followup_booking_types.items[i]);
    return fp;
}

void components_reload(struct app *app)
{
    struct app_components *c = app->comp;
    if (c == NULL || c->va == NULL) return;
    apply_live_settings(app, c);
    if (c->ownership_ready) db_ownership_set_interval(&c->ownership, (unsigned)app->cfg.replicas_rebalance_interval_ms);
    struct voice_agent_opts vopts = voice_opts(&app->cfg);
    if (voice_agent_set_opts(c->va, &vopts) != 0)
        LOG_WARN(&app->log, NULL, "reload: voice-agent settings invalid; keeping the previous ones");
    /* The services read booking types, lead time, catch-up window, attempts and
     * auth policy from app->cfg on every use.  When what qualifies a booking
     * changed, catch up once the reload is done (from the loop), so bookings
     * that only qualify now (e.g. a new booking type) get their task without
     * waiting for the next periodic sweep (whose period, re-read when it
     * re-arms, applies from the following run).  Not while the listener is
     * down: its reconnect runs the catch-up anyway. */
    char *fp = qualify_fingerprint(&app->cfg);
    bool changed = fp == NULL || c->qualify_fp == NULL || strcmp(fp, c->qualify_fp) != 0;
    free(c->qualify_fp);
    c->qualify_fp = fp;
    if (changed && c->sched_ready && c->listener_ready)
        (void)uv_timers_after(&c->timers, 0, sweep_after_reload, &c->sweep);
    if (changed && c->capture_ready && c->listener_ready) followup_capture_check(&c->capture);
}

void components_free(struct app *app)
{
    struct app_components *c = app->comp;
    if (c == NULL) return;
    if (c->sched_ready) followup_scheduler_free(&c->sched);
    if (c->capture_ready) followup_capture_free(&c->capture);
    if (c->ownership_ready) db_ownership_free(&c->ownership);
    followup_dispatcher_free(&c->dispatcher);
    followup_state_free(&c->state);
    app_metrics_free(c->metrics);
    free(c->qualify_fp);
    bookings_repository_free(c->repo);
    for (int i = 0; c->channels != NULL && i < c->n_channels; i++) free(c->channels[i]);
    free(c->channels);
    free(c->routes);
    free(c);
    app->comp = NULL;
}
