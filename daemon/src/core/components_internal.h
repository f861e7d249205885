/*
 * core/components_internal — the layout of struct app_components, shared by
 * the wiring (components.c) and the operational routes (health.c).
 */
#ifndef FOLLOWUPD_CORE_COMPONENTS_INTERNAL_H
#define FOLLOWUPD_CORE_COMPONENTS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/adapters.h"
#include "features/deals_pipeline/deals_pipeline.h"
#include "features/deals_pipeline/repositories/bookings_repository.h"
#include "features/deals_pipeline/services/followup_capture_service.h"
#include "features/deals_pipeline/services/followup_dispatcher_service.h"
#include "features/deals_pipeline/services/followup_execution_service.h"
#include "features/deals_pipeline/services/followup_scheduler_service.h"
#include "features/deals_pipeline/services/followup_state_service.h"
#include "features/deals_pipeline/services/followup_sweep_service.h"
#include "shared/clients/voice_agent_client.h"
#include "shared/db/db_listener.h"
#include "shared/db/db_ownership.h"
#include "shared/db/db_pool.h"
#include "shared/gcp/cloud_tasks_client.h"
#include "shared/gcp/google_auth.h"
#include "shared/gcp/jwks_cache.h"
#include "shared/gcp/task_authenticator.h"
#include "shared/http/http_client.h"
#include "shared/http/http_server.h"
#include "utils/uv_timers.h"

struct app_metrics;

struct app_components {
    struct uv_timers timers;
    struct clock_port clock;
    struct http_client *http_client;
    struct db_pool *pool;
    struct db_listener *listener;
    char **channels;
    int n_channels;
    bool listener_ready;
    struct db_ownership ownership;           /* which partitions of the bookings this replica schedules */
    bool ownership_ready;
    struct ownership_port owner_port;
    struct bookings_repository *repo;
    struct google_auth *gauth;
    struct cloud_tasks_client *ct;
    struct cloud_tasks_queue_adapter ct_adapter;
    struct local_queue_adapter local_queue;
    struct task_queue queue;
    struct voice_agent_client *va;
    struct voice_agent_adapter va_adapter;
    struct voice_agent_port voice;
    struct followup_execution_service exec;
    struct followup_scheduler sched;
    bool sched_ready;
    struct followup_sweep sweep;
    struct followup_capture capture;         /* are the NOTIFY triggers what the configuration says? */
    bool capture_ready;
    struct followup_dispatcher dispatcher;   /* local backend only */
    struct followup_state state;             /* bookings by state per schema (operations: /metrics) */
    bool state_ready;
    bool local;
    struct deals_pipeline_ctx dp;
    struct jwks_cache *jwks;
    struct task_authenticator auth;
    struct http_route *routes;
    size_t n_routes;
    struct http_server *http;
    unsigned long long notifications;
    int phase;
    int phase_pending;
    /* operations (core/app_metrics, shutdown drain) */
    struct app_metrics *metrics;
    uint64_t drain_deadline_ms;
    bool drain_aborted;         /* voice calls aborted at the drain deadline */
    char *qualify_fp;           /* booking-qualification settings at the last (re)load */
};

/* jwks_fetch_fn over the shared HTTP client (fetch_ctx = struct http_client *).  A JWKS
 * response is untrusted: its body is capped (Google's is ~2 KB; 64 keys of 4096 bits
 * fit) and the fetch gives up after JWKS_FETCH_TIMEOUT_MS. */
#define JWKS_MAX_RESPONSE_BYTES (64u * 1024u)
#define JWKS_FETCH_TIMEOUT_MS 5000L
int jwks_fetch_via_http_client(void *fetch_ctx, const char *url, jwks_fetch_done done, void *req_ctx);

#endif
