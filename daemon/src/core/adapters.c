/*
 * core/adapters — see the header.  Each in-flight call carries a small heap
 * context from the port call to the client callback.
 */
#include "core/adapters.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/clients/voice_agent_client.h"
#include "shared/db/db_ownership.h"
#include "shared/gcp/cloud_tasks_client.h"
#include "core/components_internal.h"
#include "shared/http/http_client.h"
#include "utils/uv_timers.h"

struct tq_call {
    tq_cb cb;
    void *arg;
    char task_name[TASK_NAME_LEN];
    struct cloud_tasks_queue_adapter *owner;   /* Cloud Tasks calls only: listed there while in flight */
    struct tq_call *prev, *next;
};

static enum tq_result tq_from_ct(enum ct_result r)
{
    switch (r) {
    case CT_OK: return TQ_OK;
    case CT_ALREADY_EXISTS: return TQ_ALREADY_EXISTS;
    case CT_NOT_FOUND: return TQ_NOT_FOUND;
    case CT_PERMANENT: return TQ_PERMANENT;
    case CT_TRANSIENT: break;
    }
    return TQ_TRANSIENT;
}

static void call_link(struct cloud_tasks_queue_adapter *a, struct tq_call *call)
{
    call->owner = a;
    call->prev = NULL;
    call->next = a->calls;
    if (a->calls != NULL) a->calls->prev = call;
    a->calls = call;
}

static void call_unlink(struct tq_call *call)
{
    if (call->prev != NULL) call->prev->next = call->next;
    else call->owner->calls = call->next;
    if (call->next != NULL) call->next->prev = call->prev;
    call->prev = call->next = NULL;
}

static void on_ct_reply(void *arg, const struct ct_reply *r)
{
    struct tq_call *call = arg;
    call_unlink(call);
    struct tq_reply reply = {.result = tq_from_ct(r->result), .task_name = r->task_name, .error = r->error,
                             .http_status = r->http_status, .google_status = r->google_status};
    call->cb(call->arg, &reply);
    free(call);
}

static int ct_create(void *impl, const struct task_request *req, tq_cb cb, void *arg)
{
    struct cloud_tasks_queue_adapter *a = impl;
    const struct config *c = a->cfg;
    bool oidc = c->auth_mode == AUTH_OIDC;
    struct cloud_task_spec spec = {
        .task_id = req->task_id, .url = req->url, .body_json = req->body_json,
        .schedule_time_ms = req->schedule_time_ms,
        .oidc_service_account = oidc ? c->auth_service_account : NULL,
        .oidc_audience = oidc ? c->auth_audience : NULL,
        .dispatch_deadline_s = c->ct_dispatch_deadline_s,
    };
    struct tq_call *call = calloc(1, sizeof(*call));
    if (call == NULL) return -1;
    call->cb = cb;
    call->arg = arg;
    call_link(a, call);
    if (cloud_tasks_create(a->client, &spec, on_ct_reply, call) != 0) {
        call_unlink(call);
        free(call);
        return -1;
    }
    return 0;
}

static int ct_remove(void *impl, const char *task_name, tq_cb cb, void *arg)
{
    struct cloud_tasks_queue_adapter *a = impl;
    struct tq_call *call = calloc(1, sizeof(*call));
    if (call == NULL) return -1;
    call->cb = cb;
    call->arg = arg;
    call_link(a, call);
    if (cloud_tasks_delete(a->client, task_name, on_ct_reply, call) != 0) {
        call_unlink(call);
        free(call);
        return -1;
    }
    return 0;
}

static int cloud_task_name(const struct config *c, const char *task_id, char *out, size_t cap)
{
    struct cloud_tasks_opts opts = {.project = c->ct_project, .location = c->ct_location, .queue = c->ct_queue};
    char *name = cloud_tasks_task_name(&opts, task_id);
    int n = name != NULL ? snprintf(out, cap, "%s", name) : -1;
    free(name);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int ct_task_name(void *impl, const char *task_id, char *out, size_t cap)
{
    return cloud_task_name(((struct cloud_tasks_queue_adapter *)impl)->cfg, task_id, out, cap);
}

void cloud_tasks_queue_port(struct cloud_tasks_queue_adapter *a, struct task_queue *out)
{
    *out = (struct task_queue){.impl = a, .create = ct_create, .remove = ct_remove, .task_name = ct_task_name};
}

void cloud_tasks_queue_adapter_drop_calls(struct cloud_tasks_queue_adapter *a)
{
    while (a->calls != NULL) {
        struct tq_call *call = a->calls;
        call_unlink(call);
        free(call);
    }
}

/* ---- local queue ---- */

static void on_local_done(void *arg)
{
    struct tq_call *call = arg;
    struct tq_reply reply = {.result = TQ_OK, .task_name = call->task_name, .error = NULL};
    call->cb(call->arg, &reply);
    free(call);
}

static int local_complete_later(struct local_queue_adapter *a, const char *name, tq_cb cb, void *arg)
{
    struct tq_call *call = calloc(1, sizeof(*call));
    if (call == NULL) return -1;
    call->cb = cb;
    call->arg = arg;
    snprintf(call->task_name, sizeof(call->task_name), "%s", name);
    if (uv_timers_after(a->timers, 0, on_local_done, call) != 0) {
        free(call);
        return -1;
    }
    return 0;
}

static int local_name(const char *task_id, char *out, size_t cap)
{
    int n = snprintf(out, cap, "local/%s", task_id);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int local_task_name(void *impl, const char *task_id, char *out, size_t cap)
{
    (void)impl;
    return local_name(task_id, out, cap);
}

int configured_task_name(const struct config *cfg, const char *task_id, char *out, size_t cap)
{
    if (cfg->queue_backend == QUEUE_LOCAL) return local_name(task_id, out, cap);
    return cloud_task_name(cfg, task_id, out, cap);
}

static int local_create(void *impl, const struct task_request *req, tq_cb cb, void *arg)
{
    char name[TASK_NAME_LEN];
    if (local_task_name(impl, req->task_id, name, sizeof(name)) != 0) return -1;
    return local_complete_later(impl, name, cb, arg);
}

static int local_remove(void *impl, const char *task_name, tq_cb cb, void *arg)
{
    return local_complete_later(impl, task_name, cb, arg);
}

void local_queue_port(struct local_queue_adapter *a, struct task_queue *out)
{
    *out = (struct task_queue){
        .impl = a, .create = local_create, .remove = local_remove, .task_name = local_task_name};
}

/* ---- voice agent ---- */

struct voice_call_ctx {
    voice_cb cb;
    void *arg;
};

static void on_va_reply(void *arg, const struct va_reply *r)
{
    struct voice_call_ctx *ctx = arg;
    enum va_outcome o = r->result == VA_OK ? VOICE_OK : r->result == VA_PERMANENT ? VOICE_PERMANENT : VOICE_TRANSIENT;
    struct voice_reply reply = {.outcome = o, .http_status = r->http_status, .error = r->error,
                                .retry_after_s = r->retry_after_s};
    ctx->cb(ctx->arg, &reply);
    free(ctx);
}

static int va_start_call(void *impl, const struct voice_call *call, voice_cb cb, void *arg)
{
    struct voice_agent_adapter *a = impl;
    struct voice_call_request req = {
        .tenant_id = call->tenant_id, .booking_id = call->booking_id, .lead_id = call->lead_id,
        .assigned_user_id = call->assigned_user_id, .scheduled_at_iso = call->scheduled_at_iso,
        .idempotency_key = call->idempotency_key, .booking_type = call->booking_type,
        .request_id = call->request_id, .traceparent = call->traceparent,
    };
    struct voice_call_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) return -1;
    ctx->cb = cb;
    ctx->arg = arg;
    if (voice_agent_start_call(a->client, &req, on_va_reply, ctx) != 0) {
        free(ctx);
        return -1;
    }
    return 0;
}

void voice_agent_port_init(struct voice_agent_adapter *a, struct voice_agent_port *out)
{
    *out = (struct voice_agent_port){.impl = a, .start_call = va_start_call};
}

/* ---- ownership over the advisory-lock session ---- */

static bool ownership_owns(void *impl, int partition)
{
    return db_ownership_owns(impl, partition);
}

static int ownership_owned(void *impl, int *out, int cap)
{
    return db_ownership_owned(impl, out, cap);
}

void ownership_port_init(struct db_ownership *o, struct ownership_port *out)
{
    *out = (struct ownership_port){.impl = o, .partitions = o->partitions, .owns = ownership_owns,
                                   .owned = ownership_owned};
}

/* ---- JWKS fetcher over the shared HTTP client ---- */

struct jwks_fetch {
    jwks_fetch_done done;
    void *req_ctx;
};

static void on_jwks_response(void *arg, const struct http_response *res)
{
    struct jwks_fetch *f = arg;
    f->done(f->req_ctx, res->status, res->body, res->body_len, http_response_header(res, "cache-control"));
    free(f);
}

int jwks_fetch_via_http_client(void *fetch_ctx, const char *url, jwks_fetch_done done, void *req_ctx)
{
    struct jwks_fetch *f = calloc(1, sizeof(*f));
    if (f == NULL) return -1;
    f->done = done;
    f->req_ctx = req_ctx;
    static const struct http_header accept[] = {{"Accept", "application/json"}};
    struct http_request req = {.method = "GET", .url = url, .headers = accept, .n_headers = 1,
                               .timeout_ms = JWKS_FETCH_TIMEOUT_MS, .max_response_bytes = JWKS_MAX_RESPONSE_BYTES};
    if (http_client_send(fetch_ctx, &req, on_jwks_response, f) != 0) {
        free(f);
        return -1;
    }
    return 0;
}
