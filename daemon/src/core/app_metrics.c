/*
 * core/app_metrics — see the header.
 *
 * notify→created latency: each notification stamps its booking id with the
 * loop time in a small direct-mapped table (a collision overwrites: a lost
 * sample, never a wrong one, because the id is compared); a successful task
 * creation for that booking observes the elapsed time and clears the stamp.
 * Bookings found by the catch-up sweep have no stamp and are not observed.
 *
 * Call lateness: the voice-agent decorator sees every call the execution path
 * starts (Cloud Tasks callbacks and the local dispatcher alike) together with
 * the booking's scheduled_at, so it observes wall-clock now − scheduled_at
 * when a request is sent (each attempt, retries included).  A call started
 * early (followup.lead_time_s) counts as 0 s late, which keeps _sum monotonic.
 */
#include "core/app_metrics.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/app.h"
#include "core/components_internal.h"
#include "core/health.h"
#include "core/metrics.h"
#include "features/deals_pipeline/controllers/notifications_controller.h"
#include "utils/timefmt.h"

#define STAMP_SLOTS 1024u /* power of two */

struct notify_stamp {
    char booking_id[UUID_STR_LEN];
    uint64_t t_ns;
};

struct app_metrics {
    struct app *app;
    struct metrics_registry *reg;
    struct metric_family *notifications, *rejections, *callbacks, *auth_failures, *executions, *voice_calls, *task_failures;
    struct metric_series *rejected[REJECT_N];
    struct metric_family *capture_mismatch, *create_errors;
    struct metric_series *tasks_created, *tasks_existed;
    struct metric_series *fail_transient, *fail_permanent, *fail_gave_up, *fail_overflow;
    struct metric_series *exec_duration, *voice_duration, *notify_latency, *call_lateness;
    struct metric_series *pool_in_use, *pool_waiting, *pool_max, *backlog, *exec_inflight, *listener, *ready;
    struct metric_series *http_conns, *http_refused_limit, *http_refused_peer;
    struct metric_series *jwks_refreshes[JWKS_REFRESH_RESULTS], *jwks_age;
    struct metric_family *bookings, *lease_expired, *oldest_due;   /* per schema, from the state service */
    struct metric_series *deferrals[DEFER_N], *tenant_in_flight;
    struct metric_series *partitions_owned, *replicas_live, *not_owned, *pool_statements, *partitions_foreign;
    struct metric_series *handed_acquired, *handed_released, *handed_lost;
    bool execution_answered;             /* on_execution ran; the response observer follows at once */
    struct voice_agent_port inner_voice; /* the decorated ports */
    struct task_queue inner_queue;
    struct notify_stamp stamps[STAMP_SLOTS];
};

static const double duration_buckets[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
static const double latency_buckets[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const double lateness_buckets[] = {0, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
static const double in_flight_buckets[] = {0, 1, 2, 5, 10, 20, 50, 100, 200, 500};
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static struct metric_series *one(struct metrics_registry *r, enum metric_type t, const char *name, const char *help)
{
    return metrics_series(metrics_family_new(r, t, name, help, NULL, NULL, 0), NULL);
}

static struct metric_series *histogram(struct metrics_registry *r, const char *name, const char *help, const double *b,
                                       size_t n)
{
    return metrics_series(metrics_family_new(r, METRIC_HISTOGRAM, name, help, NULL, b, n), NULL);
}

static struct metric_family *labelled(struct metrics_registry *r, enum metric_type t, const char *name,
                                      const char *help, const char *label)
{
    return metrics_family_new(r, t, name, help, (const char *const[]){label, NULL}, NULL, 0);
}

static struct metric_series *with(struct metric_family *f, const char *value)
{
    return metrics_series(f, (const char *const[]){value});
}

static int register_jwks(struct app_metrics *m)
{
    struct metric_family *f = labelled(m->reg, METRIC_COUNTER, "followupd_jwks_refresh_total",
                                       "Google JWKS fetches completed, by result.", "result");
    for (int i = 0; i < JWKS_REFRESH_RESULTS; i++) {
        m->jwks_refreshes[i] = with(f, jwks_refresh_result_name((enum jwks_refresh_result)i));
        if (m->jwks_refreshes[i] == NULL) return -1;
    }
    m->jwks_age = one(m->reg, METRIC_GAUGE, "followupd_jwks_key_set_age_seconds",
                      "Seconds since the Google signing keys in use were last fetched successfully; NaN before "
                      "the first success.");
    return m->jwks_age != NULL ? 0 : -1;
}

static void refresh_jwks(struct app_metrics *m, const struct jwks_cache *jwks)
{
    struct jwks_cache_stats st;
    jwks_cache_get_stats(jwks, &st);
    for (int i = 0; i < JWKS_REFRESH_RESULTS; i++) metrics_counter_set(m->jwks_refreshes[i], (double)st.refreshes[i]);
    metrics_gauge_set(m->jwks_age, st.key_set_age_ms < 0 ? NAN : (double)st.key_set_age_ms / 1000.0);
}

/* The states of followupd_bookings{schema,state}: what booking_state counts without reading history. */
static const char *const booking_states[] = {"pending", "pending_beyond_horizon", "scheduled", "in_progress",
                                             "failed_retryable", "failed_final"};

static void booking_state_counts(const struct booking_state *st, int64_t out[])
{
    const int64_t counts[] = {st->waiting,          st->beyond_horizon,   st->scheduled, st->in_progress,
                              st->failed_retryable, st->failed_final};
    memcpy(out, counts, sizeof(counts));
}

/* Per schema, NaN until the first read of its state. */
static int register_booking_state(struct app_metrics *m)
{
    struct metrics_registry *r = m->reg;
    const struct config *cfg = &m->app->cfg;
    m->bookings = metrics_family_new(r, METRIC_GAUGE, "followupd_bookings",
                                     "Follow-up bookings by state, per schema, as of the last read (every "
                                     "sweep_interval_s): pending = waiting for a task inside the catch-up window "
                                     "and the horizon; executed, cancelled and older history are not counted.",
                                     (const char *const[]){"schema", "state", NULL}, NULL, 0);
    m->lease_expired = labelled(r, METRIC_GAUGE, "followupd_bookings_lease_expired",
                                "In-progress bookings whose lease expired (the process calling them died).", "schema");
    m->oldest_due = labelled(r, METRIC_GAUGE, "followupd_oldest_due_booking_age_seconds",
                             "Seconds the oldest due follow-up without a started call (pending inside the catch-up "
                             "window, or with a task) had been due at the last read; 0 when none.",
                             "schema");
    if (m->bookings == NULL || m->lease_expired == NULL || m->oldest_due == NULL) return -1;
    for (int i = 0; i < cfg->db_schemas.n; i++) {
        const char *schema = cfg->db_schemas.items[i];
        for (size_t k = 0; k < N_OF(booking_states); k++)
            metrics_gauge_set(metrics_series(m->bookings, (const char *const[]){schema, booking_states[k]}), NAN);
        metrics_gauge_set(with(m->lease_expired, schema), NAN);
        metrics_gauge_set(with(m->oldest_due, schema), NAN);
    }
    return 0;
}

static void refresh_booking_state(struct app_metrics *m, const struct followup_state *fs)
{
    for (int i = 0; i < fs->n_schemas; i++) {
        if (fs->read_at_ms[i] == 0) continue;
        const char *schema = m->app->cfg.db_schemas.items[i];
        const struct booking_state *st = &fs->state[i];
        int64_t counts[N_OF(booking_states)];
        booking_state_counts(st, counts);
        for (size_t k = 0; k < N_OF(booking_states); k++)
            metrics_gauge_set(metrics_series(m->bookings, (const char *const[]){schema, booking_states[k]}),
                              (double)counts[k]);
        metrics_gauge_set(with(m->lease_expired, schema), (double)st->lease_expired);
        metrics_gauge_set(with(m->oldest_due, schema), followup_state_oldest_due_age_s(st));
    }
}

/* The concurrency caps: deferrals by reason, and the calls in flight of the claiming tenant (every replica) as a
 * histogram — the per-tenant picture without a label per tenant. */
static bool register_caps(struct app_metrics *m)
{
    struct metric_family *deferrals = labelled(m->reg, METRIC_COUNTER, "followupd_deferrals_total",
                                               "Executions deferred without a call (429 deferred), by reason: "
                                               "tenant_cap, global_cap, retry_after.",
                                               "reason");
    bool ok = deferrals != NULL;
    for (int i = DEFER_TENANT_CAP; i < DEFER_N && ok; i++)
        ok = (m->deferrals[i] = with(deferrals, claim_deferral_name((enum claim_deferral)i))) != NULL;
    m->tenant_in_flight = histogram(m->reg, "followupd_tenant_calls_in_flight",
                                    "Calls in flight (live leases, every replica) of the tenant a claim was for, "
                                    "counted by claims under voice_agent.max_concurrent_per_tenant.",
                                    in_flight_buckets, N_OF(in_flight_buckets));
    return ok && m->tenant_in_flight != NULL;
}

/* Register every family; series that should read 0 before any event are created now. */
static int register_all(struct app_metrics *m)
{
    struct metrics_registry *r = m->reg;
    const struct config *cfg = &m->app->cfg;
    metrics_gauge_set(
        with(labelled(r, METRIC_GAUGE, "followupd_build_info", "Build information; the value is always 1.", "version"),
             FOLLOWUPD_VERSION),
        1);
    m->ready = one(r, METRIC_GAUGE, "followupd_ready", "1 when ready (as /readyz and READY=1), else 0.");
    m->notifications = labelled(r, METRIC_COUNTER, "followupd_notifications_received_total",
                                "Booking notifications received from PostgreSQL, by schema.", "schema");
    for (int i = 0; i < cfg->db_schemas.n; i++)
        (void)with(m->notifications, cfg->db_schemas.items[i]);
    m->rejections = labelled(r, METRIC_COUNTER, "followupd_notifications_rejected_total",
                             "Booking notifications dropped by a check (untrusted input: any login can NOTIFY), "
                             "by reason.",
                             "reason");
    bool rejections_ok = m->rejections != NULL;
    for (int i = 0; i < REJECT_N && rejections_ok; i++)
        rejections_ok = (m->rejected[i] = with(m->rejections, followup_rejection_name((enum notify_rejection)i)));
    m->capture_mismatch = labelled(r, METRIC_GAUGE, "followupd_capture_trigger_mismatch",
                                   "1 while the schema's NOTIFY triggers differ from the configuration (run "
                                   "followupd migrate); the sweep covers what they miss.",
                                   "schema");
    for (int i = 0; m->capture_mismatch != NULL && i < cfg->db_schemas.n; i++)
        (void)with(m->capture_mismatch, cfg->db_schemas.items[i]);
    m->tasks_created = one(r, METRIC_COUNTER, "followupd_tasks_created_total", "Follow-up tasks created.");
    m->tasks_existed = one(r, METRIC_COUNTER, "followupd_tasks_already_existed_total",
                           "Task creations answered ALREADY_EXISTS (counted as created).");
    m->task_failures =
        labelled(r, METRIC_COUNTER, "followupd_task_failures_total", "Task scheduling failures, by reason.", "reason");
    m->fail_transient = with(m->task_failures, "transient");
    m->fail_permanent = with(m->task_failures, "permanent");
    m->fail_gave_up = with(m->task_failures, "gave_up");
    m->fail_overflow = with(m->task_failures, "queue_full");
    m->create_errors = metrics_family_new(r, METRIC_COUNTER, "followupd_task_create_errors_total",
                                          "Cloud Tasks createTask calls that failed (ALREADY_EXISTS is success), by "
                                          "HTTP status and Google's canonical status; none = no answer or none "
                                          "named.",
                                          (const char *const[]){"http_status", "google_status", NULL}, NULL, 0);
    m->notify_latency = histogram(r, "followupd_notify_to_task_created_seconds",
                                  "Time from a booking's notification to its task being created.", latency_buckets,
                                  N_OF(latency_buckets));
    m->callbacks = labelled(r, METRIC_COUNTER, "followupd_callbacks_total",
                            "Task callbacks answered, by HTTP status code.", "code");
    m->auth_failures = labelled(r, METRIC_COUNTER, "followupd_callback_auth_failures_total",
                                "Task callbacks rejected by authentication, by failed check.", "check");
    m->executions = labelled(r, METRIC_COUNTER, "followupd_executions_total",
                             "Follow-up executions finished, by result.", "status");
    m->exec_duration = histogram(r, "followupd_execution_duration_seconds",
                                 "Time from a task callback's arrival to its answer, for callbacks that ran an "
                                 "execution.",
                                 duration_buckets, N_OF(duration_buckets));
    m->voice_calls = labelled(r, METRIC_COUNTER, "followupd_voice_calls_total",
                              "Voice-agent start-call requests, by outcome.", "outcome");
    static const char *const outcomes[] = {"ok", "transient", "permanent", "not_started"};
    for (size_t i = 0; i < N_OF(outcomes); i++)
        (void)with(m->voice_calls, outcomes[i]);
    m->voice_duration = histogram(r, "followupd_voice_call_duration_seconds", "Duration of voice-agent requests.",
                                  duration_buckets, N_OF(duration_buckets));
    m->call_lateness = histogram(r, "followupd_call_lateness_seconds",
                                 "Voice-call start minus the booking's scheduled_at (each attempt; early counts as 0).",
                                 lateness_buckets, N_OF(lateness_buckets));
    m->pool_in_use =
        one(r, METRIC_GAUGE, "followupd_db_pool_in_use_connections", "Pool connections running a statement.");
    m->pool_waiting =
        one(r, METRIC_GAUGE, "followupd_db_pool_waiting_queries", "Statements queued for a pool connection.");
    m->pool_max = one(r, METRIC_GAUGE, "followupd_db_pool_max_connections", "Connections the pool holds (its size).");
    m->backlog =
        one(r, METRIC_GAUGE, "followupd_scheduler_backlog_bookings", "Bookings queued or in flight in the scheduler.");
    m->exec_inflight = one(r, METRIC_GAUGE, "followupd_executions_in_flight", "Executions between claim and outcome.");
    m->listener = one(r, METRIC_GAUGE, "followupd_listener_connected",
                      "1 while the notification listener is connected and LISTENing.");
    m->http_conns = one(r, METRIC_GAUGE, "followupd_http_connections", "Open HTTP client connections.");
    struct metric_family *refused = labelled(r, METRIC_COUNTER, "followupd_http_connections_refused_total",
                                             "HTTP connections refused with a 503 at once, by limit reached.",
                                             "reason");
    m->http_refused_limit = with(refused, "max_connections");
    m->http_refused_peer = with(refused, "per_peer");
    bool caps_ok = register_caps(m);
    m->pool_statements = one(r, METRIC_COUNTER, "followupd_db_statements_total",
                             "Statements the query pool has run (queued) since the start.");
    m->partitions_owned = one(r, METRIC_GAUGE, "followupd_partitions_owned",
                              "Partitions of the bookings whose scheduling work this replica owns.");
    m->partitions_foreign = one(r, METRIC_GAUGE, "followupd_partitions_foreign_locked",
                                "Partitions locked by sessions of another database role (every replica works on "
                                "them).");
    m->replicas_live = one(r, METRIC_GAUGE, "followupd_replicas_live",
                           "Live replicas sharing the partitions (at the last rebalance; 0 while disconnected).");
    struct metric_family *handovers = labelled(r, METRIC_COUNTER, "followupd_partition_handovers_total",
                                               "Partitions this replica acquired, released (rebalance) or lost "
                                               "(with its database session).",
                                               "direction");
    m->handed_acquired = with(handovers, "acquired");
    m->handed_released = with(handovers, "released");
    m->handed_lost = with(handovers, "lost");
    m->not_owned = one(r, METRIC_COUNTER, "followupd_notifications_not_owned_total",
                       "Booking notifications left to the replica that owns the booking's partition.");
    bool ok = register_jwks(m) == 0 && register_booking_state(m) == 0 && caps_ok && m->ready && m->notifications &&
              rejections_ok && m->capture_mismatch && m->tasks_created && m->tasks_existed && m->fail_transient &&
              m->fail_permanent && m->fail_gave_up && m->fail_overflow && m->create_errors && m->notify_latency &&
              m->callbacks && m->auth_failures && m->executions &&
              m->exec_duration && m->voice_calls && m->voice_duration && m->call_lateness && m->pool_in_use &&
              m->pool_waiting && m->pool_max && m->backlog && m->exec_inflight && m->listener && m->http_conns &&
              m->http_refused_limit && m->http_refused_peer && m->pool_statements &&
              m->partitions_foreign && m->partitions_owned && m->replicas_live && m->not_owned &&
              m->handed_acquired && m->handed_released && m->handed_lost;
    return ok ? 0 : -1;
}

/* ---- observers ---- */

/* The callback's execution answered (executions are counted by the service, callbacks and local runs alike). */
static void on_execution(void *arg, enum execution_status st)
{
    (void)st;
    struct app_metrics *m = arg;
    m->execution_answered = true;
}

static void on_counted(void *arg, int tenant_live, int all_live)
{
    (void)all_live;
    struct app_metrics *m = arg;
    if (tenant_live >= 0) metrics_histogram_observe(m->tenant_in_flight, tenant_live);
}

static void on_auth_failure(void *arg, const char *check)
{
    struct app_metrics *m = arg;
    metrics_counter_add(with(m->auth_failures, check), 1);
}

static void on_response(void *arg, const struct http_route *route, int status, uint64_t duration_ns)
{
    struct app_metrics *m = arg;
    if (route == NULL || route->auth != HTTP_AUTH_TASK) return;
    char code[8];
    snprintf(code, sizeof(code), "%d", status);
    metrics_counter_add(with(m->callbacks, code), 1);
    if (m->execution_answered) metrics_histogram_observe(m->exec_duration, (double)duration_ns / 1e9);
    m->execution_answered = false;
}

static uint32_t slot_of(const char *booking_id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = booking_id; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h & (STAMP_SLOTS - 1);
}

void app_metrics_on_notify(struct app_metrics *m, const char *channel, const char *payload)
{
    if (m == NULL) return;
    struct app_components *c = m->app->comp;
    for (int i = 0; i < c->n_channels; i++) {
        if (strcmp(c->channels[i], channel) == 0) {
            metrics_counter_add(with(m->notifications, m->app->cfg.db_schemas.items[i]), 1);
            break;
        }
    }
    struct booking_notification ref;
    if (payload == NULL || notification_parse(payload, strlen(payload), &ref) != 0) return;
    struct notify_stamp *s = &m->stamps[slot_of(ref.booking_id)];
    snprintf(s->booking_id, sizeof(s->booking_id), "%s", ref.booking_id);
    s->t_ns = uv_hrtime();
}

static void observe_created(struct app_metrics *m, const char *body_json)
{
    json_t *body = json_loads(body_json != NULL ? body_json : "", 0, NULL);
    const char *id = json_string_value(json_object_get(body, "bookingId"));
    if (id != NULL) {
        struct notify_stamp *s = &m->stamps[slot_of(id)];
        if (s->t_ns != 0 && strcmp(s->booking_id, id) == 0) {
            metrics_histogram_observe(m->notify_latency, (double)(uv_hrtime() - s->t_ns) / 1e9);
            s->t_ns = 0;
        }
    }
    json_decref(body);
}

/* ---- port decorators ---- */

struct voice_probe {
    struct app_metrics *m;
    voice_cb cb;
    void *arg;
    uint64_t t0;
};

static void voice_done(void *arg, const struct voice_reply *r)
{
    struct voice_probe *p = arg;
    static const char *const names[] = {
        [VOICE_OK] = "ok", [VOICE_TRANSIENT] = "transient", [VOICE_PERMANENT] = "permanent"};
    const char *outcome = (unsigned)r->outcome < N_OF(names) ? names[r->outcome] : "transient";
    metrics_counter_add(with(p->m->voice_calls, outcome), 1);
    metrics_histogram_observe(p->m->voice_duration, (double)(uv_hrtime() - p->t0) / 1e9);
    p->cb(p->arg, r);
    free(p);
}

/* now − scheduled_at of a call being started; early calls count as 0 (an unparsable time is not observed). */
static void observe_lateness(struct app_metrics *m, const char *scheduled_at_iso)
{
    int64_t scheduled_ms = 0;
    if (scheduled_at_iso == NULL || timefmt_parse(scheduled_at_iso, &scheduled_ms) != 0) return;
    int64_t late_ms = timefmt_now_ms() - scheduled_ms;
    metrics_histogram_observe(m->call_lateness, late_ms > 0 ? (double)late_ms / 1e3 : 0);
}

static int voice_start(void *impl, const struct voice_call *call, voice_cb cb, void *arg)
{
    struct app_metrics *m = impl;
    struct voice_probe *p = malloc(sizeof(*p));
    if (p == NULL) return -1;
    *p = (struct voice_probe){.m = m, .cb = cb, .arg = arg, .t0 = uv_hrtime()};
    if (m->inner_voice.start_call(m->inner_voice.impl, call, voice_done, p) != 0) {
        free(p);
        metrics_counter_add(with(m->voice_calls, "not_started"), 1);
        return -1;
    }
    observe_lateness(m, call->scheduled_at_iso);
    return 0; /* p is owned by the pending call (voice_done frees it) */ // cppcheck-suppress memleak
}

struct create_probe {
    struct app_metrics *m;
    tq_cb cb;
    void *arg;
    char *body_json;
};

/* The HTTP status as a label from a fixed set (a bounded series count whatever Google answers). */
static void http_status_label(long status, char out[8])
{
    static const long known[] = {400, 401, 403, 404, 408, 409, 412, 429, 500, 502, 503, 504};
    for (size_t i = 0; i < N_OF(known); i++) {
        if (status == known[i]) {
            snprintf(out, 8, "%ld", status);
            return;
        }
    }
    const char *range = status >= 400 && status <= 499 ? "4xx" : status >= 500 && status <= 599 ? "5xx" : "other";
    snprintf(out, 8, "%s", status == 0 ? "none" : range);
}

static void count_create_error(struct app_metrics *m, const struct tq_reply *r)
{
    char http[8];
    http_status_label(r->http_status, http);
    const char *google = r->google_status != NULL ? r->google_status : "none"; /* one of Google's 17 names */
    metrics_counter_add(metrics_series(m->create_errors, (const char *const[]){http, google}), 1);
}

static void create_done(void *arg, const struct tq_reply *r)
{
    struct create_probe *p = arg;
    if (r->result == TQ_OK || r->result == TQ_ALREADY_EXISTS) observe_created(p->m, p->body_json);
    else count_create_error(p->m, r);
    p->cb(p->arg, r);
    free(p->body_json);
    free(p);
}

static int queue_create(void *impl, const struct task_request *req, tq_cb cb, void *arg)
{
    struct app_metrics *m = impl;
    struct create_probe *p = malloc(sizeof(*p));
    if (p == NULL) return -1;
    *p = (struct create_probe){
        .m = m, .cb = cb, .arg = arg, .body_json = req->body_json != NULL ? strdup(req->body_json) : NULL};
    if (m->inner_queue.create(m->inner_queue.impl, req, create_done, p) != 0) {
        free(p->body_json);
        free(p);
        return -1;
    }
    return 0; /* p is owned by the pending creation (create_done frees it) */ // cppcheck-suppress memleak
}

static int queue_remove(void *impl, const char *task_name, tq_cb cb, void *arg)
{
    struct app_metrics *m = impl;
    return m->inner_queue.remove(m->inner_queue.impl, task_name, cb, arg);
}

static int queue_task_name(void *impl, const char *task_id, char *out, size_t cap)
{
    struct app_metrics *m = impl;
    return m->inner_queue.task_name(m->inner_queue.impl, task_id, out, cap);
}

/* ---- lifecycle ---- */

struct app_metrics *app_metrics_attach(struct app *app)
{
    struct app_components *c = app->comp;
    struct app_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL || c == NULL) goto fail;
    m->app = app;
    m->reg = metrics_registry_new();
    if (m->reg == NULL || register_all(m) != 0) goto fail;
    c->dp.on_execution = on_execution;
    c->dp.observer_arg = m;
    c->exec.on_counted = on_counted;
    c->exec.on_counted_arg = m;
    c->auth.on_failure = on_auth_failure;
    c->auth.observer_arg = m;
    if (c->http != NULL) http_server_set_observer(c->http, on_response, m);
    m->inner_voice = c->voice;
    c->voice = (struct voice_agent_port){.impl = m, .start_call = voice_start};
    m->inner_queue = c->queue;
    c->queue = (struct task_queue){
        .impl = m, .create = queue_create, .remove = queue_remove, .task_name = queue_task_name};
    return m;
fail:
    LOG_ERROR(&app->log, NULL, "metrics unavailable: out of memory");
    app_metrics_free(m);
    return NULL;
}

void app_metrics_free(struct app_metrics *m)
{
    if (m == NULL) return;
    metrics_registry_free(m->reg);
    free(m);
}

/* Executions by status (an expired booking the scheduler gave no task counts as expired too), deferrals. */
static void refresh_executions(struct app_metrics *m, const struct app_components *c)
{
    for (int st = 0; st < EXEC_STATUS_N; st++) {
        uint64_t n = c->exec.finished[st];
        if (st == EXEC_EXPIRED && c->sched_ready) n += c->sched.stats.expired;
        if (n > 0) metrics_counter_set(with(m->executions, execution_status_name((enum execution_status)st)), (double)n);
    }
    for (int i = DEFER_TENANT_CAP; i < DEFER_N; i++) metrics_counter_set(m->deferrals[i], (double)c->exec.deferred[i]);
}

/* Values read from the components at render time. */
static void refresh(struct app_metrics *m)
{
    struct app *app = m->app;
    struct app_components *c = app->comp;
    metrics_gauge_set(m->ready, health_not_ready_reason(app) == NULL ? 1 : 0);
    if (c == NULL) return;
    if (c->sched_ready) {
        const struct scheduler_stats *st = &c->sched.stats;
        metrics_counter_set(m->tasks_created, (double)st->created);
        metrics_counter_set(m->tasks_existed, (double)st->already_existed);
        metrics_counter_set(m->fail_transient, (double)st->transient_errors);
        metrics_counter_set(m->fail_permanent, (double)st->permanent_errors);
        metrics_counter_set(m->fail_gave_up, (double)st->gave_up);
        metrics_counter_set(m->fail_overflow, (double)st->dropped_overflow);
        for (int i = 0; i < REJECT_N; i++)
            metrics_counter_set(m->rejected[i], (double)st->rejected[i]);
        metrics_gauge_set(m->backlog, (double)(c->sched.queued + c->sched.inflight));
        metrics_counter_set(m->not_owned, (double)st->not_owned);
    }
    if (c->ownership_ready) {
        const struct db_ownership_stats *os = &c->ownership.stats;
        metrics_gauge_set(m->partitions_owned, c->ownership.n_owned);
        metrics_gauge_set(m->partitions_foreign, c->ownership.n_foreign);
        metrics_gauge_set(m->replicas_live, os->members);
        metrics_counter_set(m->handed_acquired, (double)os->acquired);
        metrics_counter_set(m->handed_released, (double)os->released);
        metrics_counter_set(m->handed_lost, (double)os->lost);
    }
    for (int i = 0; c->capture_ready && i < c->capture.n_schemas; i++)
        metrics_gauge_set(with(m->capture_mismatch, app->cfg.db_schemas.items[i]),
                          c->capture.state[i] == CAPTURE_DIFFERS ? 1 : 0);
    if (c->pool != NULL) {
        metrics_gauge_set(m->pool_in_use, db_pool_in_use(c->pool));
        metrics_gauge_set(m->pool_waiting, db_pool_waiting(c->pool));
        metrics_gauge_set(m->pool_max, db_pool_size(c->pool));
        metrics_counter_set(m->pool_statements, (double)db_pool_statements(c->pool));
    }
    metrics_gauge_set(m->exec_inflight, c->exec.inflight);
    refresh_executions(m, c);
    metrics_gauge_set(m->listener, c->listener_ready ? 1 : 0);
    struct http_server_stats hs;
    http_server_get_stats(c->http, &hs);
    metrics_gauge_set(m->http_conns, (double)hs.connections);
    metrics_counter_set(m->http_refused_limit, (double)hs.refused_max_connections);
    metrics_counter_set(m->http_refused_peer, (double)hs.refused_per_peer);
    refresh_jwks(m, c->jwks);
    if (c->state_ready) refresh_booking_state(m, &c->state);
}

char *app_metrics_render(struct app_metrics *m, size_t *len)
{
    refresh(m);
    return metrics_render(m->reg, len);
}

void app_metrics_route(struct http_exchange *ex, void *app_ctx)
{
    struct deals_pipeline_ctx *dp = app_ctx;
    struct app *app = dp->host;
    struct app_metrics *m = app != NULL && app->comp != NULL ? app->comp->metrics : NULL;
    size_t len = 0;
    char *text = m != NULL ? app_metrics_render(m, &len) : NULL;
    if (text == NULL) {
        http_exchange_respond(ex, 503, "{\"error\":\"metrics_unavailable\"}", NULL, 0);
        return;
    }
    http_exchange_respond_typed(ex, 200, METRICS_CONTENT_TYPE, text, len, NULL, 0);
    free(text);
}
