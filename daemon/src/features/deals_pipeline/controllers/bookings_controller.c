/*
 * deals_pipeline/controllers/bookings_controller — see the header.
 */
#include "features/deals_pipeline/controllers/bookings_controller.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "features/deals_pipeline/services/followup_keys.h"
#include "shared/http/http_server.h"

struct pending_response {
    struct http_exchange *ex;
    struct deals_pipeline_ctx *ctx;
};

static int take_string(json_t *o, const char *key, char *dst, size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= cap) return -1;
    if (strlen(json_string_value(v)) != json_string_length(v)) return -1;   /* embedded NUL */
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

const char *execute_body_parse(const char *body, size_t len, struct execute_body *out)
{
    json_error_t err;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    const char *bad = NULL;
    memset(out, 0, sizeof(*out));
    if (!json_is_object(o)) bad = "body";
    else if (take_string(o, "tenantId", out->tenant_id, sizeof(out->tenant_id)) != 0 || !followup_is_uuid(out->tenant_id))
        bad = "tenantId";
    else if (take_string(o, "bookingId", out->booking_id, sizeof(out->booking_id)) != 0 ||
             !followup_is_uuid(out->booking_id))
        bad = "bookingId";
    else if (take_string(o, "schema", out->schema, sizeof(out->schema)) != 0)
        bad = "schema";
    else if (take_string(o, "idempotencyKey", out->idempotency_key, sizeof(out->idempotency_key)) != 0)
        bad = "idempotencyKey";
    json_decref(o);
    return bad;
}

int execution_http_status(enum execution_status st, const char **json_body)
{
    switch (st) {
    case EXEC_EXECUTED: *json_body = "{\"status\":\"executed\"}"; return 200;
    case EXEC_ALREADY_EXECUTED: *json_body = "{\"status\":\"already_executed\"}"; return 200;
    case EXEC_CANCELLED: *json_body = "{\"status\":\"cancelled\"}"; return 200;
    case EXEC_STALE: *json_body = "{\"status\":\"stale\"}"; return 200;
    case EXEC_FAILED_FINAL: *json_body = "{\"status\":\"failed\",\"retryable\":false}"; return 200;
    case EXEC_IN_PROGRESS: *json_body = "{\"status\":\"in_progress\"}"; return 409;
    case EXEC_NOT_FOUND: *json_body = "{\"error\":\"not_found\"}"; return 404;
    case EXEC_FAILED_RETRYABLE: *json_body = "{\"status\":\"failed\",\"retryable\":true}"; return 503;
    case EXEC_TOO_EARLY: *json_body = "{\"status\":\"too_early\"}"; return 425;
    case EXEC_EXPIRED: *json_body = "{\"status\":\"expired\"}"; return 200;
    case EXEC_DEFERRED: *json_body = "{\"status\":\"deferred\"}"; return 429;
    case EXEC_UNAVAILABLE:
    case EXEC_STATUS_N: break;
    }
    *json_body = "{\"error\":\"unavailable\"}";
    return 503;
}

static void respond_error(struct http_exchange *ex, int status, const char *error, const char *field)
{
    char body[160];
    if (field != NULL) snprintf(body, sizeof(body), "{\"error\":\"%s\",\"field\":\"%s\"}", error, field);
    else snprintf(body, sizeof(body), "{\"error\":\"%s\"}", error);
    http_exchange_respond(ex, status, body, NULL, 0);
}

static void on_executed(void *arg, enum execution_status st, int retry_after_s)
{
    struct pending_response *p = arg;
    if (p->ctx->on_execution != NULL) p->ctx->on_execution(p->ctx->observer_arg, st);
    const char *body;
    int status = execution_http_status(st, &body);
    /* Retry-After: always on 425 and 429 (at least 1 s), on a retryable failure when the voice agent sent one. */
    char seconds[16];
    snprintf(seconds, sizeof(seconds), "%d", retry_after_s > 0 ? retry_after_s : 1);
    struct http_header_kv retry_after = {"Retry-After", seconds};
    int with = st == EXEC_TOO_EARLY || st == EXEC_DEFERRED || retry_after_s > 0;
    http_exchange_respond(p->ex, status, body, with ? &retry_after : NULL, with ? 1 : 0);
    free(p);
}

static bool is_json(const char *content_type)
{
    return content_type != NULL && strncasecmp(content_type, "application/json", 16) == 0 &&
           (content_type[16] == '\0' || content_type[16] == ';' || content_type[16] == ' ');
}

void bookings_controller_execute_followup(struct http_exchange *ex, void *app_ctx)
{
    struct deals_pipeline_ctx *ctx = app_ctx;
    const char *id = http_exchange_param(ex, "id");
    if (!followup_is_uuid(id)) {
        respond_error(ex, 400, "invalid_booking_id", NULL);
        return;
    }
    if (!is_json(http_exchange_header(ex, "content-type"))) {
        respond_error(ex, 415, "unsupported_media_type", NULL);
        return;
    }
    size_t len;
    const char *raw = http_exchange_body(ex, &len);
    struct execute_body body;
    const char *bad = execute_body_parse(raw, len, &body);
    if (bad != NULL) {
        respond_error(ex, 400, "invalid_body", bad);
        return;
    }
    if (strcasecmp(body.booking_id, id) != 0) {
        respond_error(ex, 400, "booking_id_mismatch", "bookingId");
        return;
    }
    if (!strlist_contains(&ctx->cfg->db_schemas, body.schema)) {
        respond_error(ex, 400, "unknown_schema", "schema");
        return;
    }
    struct pending_response *p = malloc(sizeof(*p));
    struct execution_request req = {.schema = body.schema, .tenant_id = body.tenant_id, .booking_id = body.booking_id,
                                    .idempotency_key = body.idempotency_key,
                                    .request_id = http_exchange_request_id(ex), .trace = http_exchange_trace(ex),
                                    .refuse_early = true};
    if (p == NULL) {
        respond_error(ex, 503, "unavailable", NULL);
        return;
    }
    *p = (struct pending_response){.ex = ex, .ctx = ctx};
    if (followup_execution_execute(ctx->exec, &req, on_executed, p) != 0) {
        free(p);
        respond_error(ex, 503, "unavailable", NULL);
    }
}
