/*
 * shared/clients/voice_agent_client — starts a voice-agent call for a
 * follow-up booking: POST {base_url}/api/voice-agent/calls/start-call.
 *
 * Request headers: Content-Type: application/json, X-Tenant-Id,
 * Authorization: Bearer <token> (only when a token is configured),
 * Idempotency-Key, X-Request-Id (when given), traceparent (when given: the W3C
 * trace context the call belongs to).  Body, exactly these camelCase
 * keys in this order: tenantId, bookingId, leadId, assignedUserId (JSON null
 * when absent), scheduledAt, idempotencyKey, bookingType, source:"followupd".
 *
 * Outcome: 2xx → VA_OK (call_id from the reply's "callId", or
 * "data.callId", when present); 408, 409, 429, 5xx, transport errors and
 * timeouts → VA_TRANSIENT; other 4xx and 3xx → VA_PERMANENT.  A 429 or 503
 * with Retry-After (delay-seconds, or an HTTP-date in the IMF-fixdate form)
 * reports it in retry_after_s, bounded to [1, VOICE_AGENT_RETRY_AFTER_MAX_S];
 * an unparsable value counts as none.  No retries here:
 * the idempotency key lets the caller retry safely.  The callback runs exactly
 * once, later, from the loop; the reply is valid only during the callback.
 *
 * voice_agent_set_opts() swaps URL/token/timeout for requests started
 * afterwards (live reload); in-flight requests keep what they were sent with.
 * voice_agent_client_abort() completes in-flight calls at once as transient
 * failures (shutdown drain deadline); voice_agent_client_free() detaches
 * in-flight requests: their callbacks are not called.  The token is never
 * logged.
 */
#ifndef FOLLOWUPD_SHARED_CLIENTS_VOICE_AGENT_CLIENT_H
#define FOLLOWUPD_SHARED_CLIENTS_VOICE_AGENT_CLIENT_H

#include "shared/http/http_client.h"
#include "utils/log.h"

#define VOICE_AGENT_START_CALL_PATH "/api/voice-agent/calls/start-call"
#define VOICE_AGENT_DEFAULT_TIMEOUT_MS 10000L
#define VOICE_AGENT_RETRY_AFTER_MAX_S 3600

struct voice_agent_opts {
    const char *base_url;        /* http(s)://host[:port][/prefix] */
    const char *token;           /* bearer token; NULL or "" → no Authorization header */
    long timeout_ms;             /* <= 0 → 10 s */
};

struct voice_call_request {
    const char *tenant_id, *booking_id, *lead_id;
    const char *assigned_user_id;   /* may be NULL → JSON null */
    const char *scheduled_at_iso;   /* canonical "YYYY-MM-DDTHH:MM:SS.mmmZ" */
    const char *idempotency_key;
    const char *booking_type;
    const char *request_id;         /* may be NULL → no X-Request-Id */
    const char *traceparent;        /* may be NULL → no traceparent */
};

enum va_result { VA_OK, VA_TRANSIENT, VA_PERMANENT };

struct va_reply {
    enum va_result result;
    long http_status;            /* 0 when there was no HTTP response */
    const char *error;           /* NULL on VA_OK; short, no secrets */
    const char *call_id;         /* NULL when the reply had none */
    int retry_after_s;           /* 429/503 with Retry-After: seconds (bounded); 0 = none */
};

typedef void (*va_cb)(void *arg, const struct va_reply *r);

struct voice_agent_client;

/* NULL when opts are invalid (logged) or on allocation failure. */
struct voice_agent_client *voice_agent_client_new(struct http_client *http, struct logger *lg,
                                                  const struct voice_agent_opts *opts);
/* 0 applied; -1 invalid (the old options stay). */
int voice_agent_set_opts(struct voice_agent_client *c, const struct voice_agent_opts *opts)
    __attribute__((warn_unused_result));
/* 0: cb runs exactly once, later. -1: invalid request / out of memory; cb never runs. */
int voice_agent_start_call(struct voice_agent_client *c, const struct voice_call_request *req, va_cb cb,
                           void *arg) __attribute__((warn_unused_result));
/* Shutdown: complete every in-flight call now with VA_TRANSIENT ("aborted: why"),
 * from this call; their HTTP requests end later and are ignored. The outcome
 * of such a call at the voice agent is unknown (retry with the same key). */
void voice_agent_client_abort(struct voice_agent_client *c, const char *why);
void voice_agent_client_free(struct voice_agent_client *c);

/* ---- pure helpers (unit-tested) ---- */

/* Malloc'd compact JSON body; NULL when a required field is missing. */
char *voice_agent_build_body(const struct voice_call_request *req);
enum va_result voice_agent_classify(long http_status, int transport_error);
/* Retry-After of a 429/503 (value: the header, NULL when absent; now_ms: the wall clock for an HTTP-date):
 * seconds in [1, VOICE_AGENT_RETRY_AFTER_MAX_S], or 0 when absent, unparsable or for another status. */
int voice_agent_retry_after_s(long http_status, const char *value, int64_t now_ms);
const char *va_result_name(enum va_result r);

#endif
