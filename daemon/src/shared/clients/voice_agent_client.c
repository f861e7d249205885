/*
 * shared/clients/voice_agent_client — the start-call request (see header).
 *
 * Each call is a `struct va_op` on the client's list, holding the log context
 * (tenant, booking, request id).  The HTTP client copies the request at
 * submit, so the op owns nothing else.  Freeing the client detaches its ops
 * (op->client = NULL); their HTTP completions then just free them.
 */
#include "shared/clients/voice_agent_client.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utils/timefmt.h"

#define ERROR_MESSAGE_MAX 120
#define CALL_ID_MAX 256

struct voice_agent_client {
    struct http_client *http;
    struct logger *lg;
    char *url;                  /* base_url + start-call path */
    char *auth_header;          /* "Bearer <token>" or NULL */
    long timeout_ms;
    struct va_op *ops;
};

struct va_op {
    struct va_op *prev, *next;
    struct voice_agent_client *client; /* NULL once detached */
    char *tenant_id, *booking_id, *request_id;
    va_cb cb;
    void *arg;
};

/* ---- pure helpers --------------------------------------------------------------------------- */

static bool present(const char *s)
{
    return s != NULL && *s != '\0';
}

static bool header_safe(const char *s)
{
    return s == NULL || strpbrk(s, "\r\n") == NULL;
}

static bool request_valid(const struct voice_call_request *r)
{
    return r != NULL && present(r->tenant_id) && present(r->booking_id) && present(r->lead_id) &&
           present(r->scheduled_at_iso) && present(r->idempotency_key) && present(r->booking_type) &&
           header_safe(r->tenant_id) && header_safe(r->idempotency_key) && header_safe(r->request_id) &&
           header_safe(r->traceparent);
}

char *voice_agent_build_body(const struct voice_call_request *r)
{
    if (!request_valid(r)) return NULL;
    json_t *root = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:s}", "tenantId", r->tenant_id,
                             "bookingId", r->booking_id, "leadId", r->lead_id, "assignedUserId",
                             present(r->assigned_user_id) ? json_string(r->assigned_user_id) : json_null(),
                             "scheduledAt", r->scheduled_at_iso, "idempotencyKey", r->idempotency_key,
                             "bookingType", r->booking_type, "source", "followupd");
    if (root == NULL) return NULL;
    char *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return out;
}

enum va_result voice_agent_classify(long http_status, int transport_error)
{
    if (transport_error != 0) return VA_TRANSIENT;
    if (http_status >= 200 && http_status <= 299) return VA_OK;
    if (http_status == 408 || http_status == 409 || http_status == 429 || http_status >= 500)
        return VA_TRANSIENT;
    if (http_status >= 300 && http_status <= 499) return VA_PERMANENT;
    return VA_TRANSIENT;
}

/* delay-seconds: 1*DIGIT, nothing else (leading/trailing blanks allowed); -1 when not that form. */
static int64_t delay_seconds(const char *v)
{
    while (*v == ' ' || *v == '\t') v++;
    int64_t n = 0;
    const char *start = v;
    for (; *v >= '0' && *v <= '9'; v++)
        if ((n = n * 10 + (*v - '0')) > 100000000) n = 100000000;   /* saturate, clamped below */
    if (v == start) return -1;
    while (*v == ' ' || *v == '\t') v++;
    return *v == '\0' ? n : -1;
}

int voice_agent_retry_after_s(long http_status, const char *value, int64_t now_ms)
{
    if ((http_status != 429 && http_status != 503) || value == NULL) return 0;
    int64_t s = delay_seconds(value), at_ms;
    if (s < 0) {
        if (timefmt_parse_http_date(value, &at_ms) != 0) return 0;
        s = (at_ms - now_ms + 999) / 1000;
    }
    if (s < 1) s = 1;
    return s > VOICE_AGENT_RETRY_AFTER_MAX_S ? VOICE_AGENT_RETRY_AFTER_MAX_S : (int)s;
}

const char *va_result_name(enum va_result r)
{
    switch (r) {
    case VA_OK: return "ok";
    case VA_TRANSIENT: return "transient";
    case VA_PERMANENT: return "permanent";
    }
    return "unknown";
}

/* ---- options -------------------------------------------------------------------------------- */

static bool valid_base_url(const char *u)
{
    return u != NULL && (strncmp(u, "https://", 8) == 0 || strncmp(u, "http://", 7) == 0) &&
           strpbrk(u, " \t\r\n?#") == NULL;
}

/* Build the new URL/header pair; on success replace the client's. */
static int apply_opts(struct voice_agent_client *c, const struct voice_agent_opts *o)
{
    if (o == NULL || !valid_base_url(o->base_url) || !header_safe(o->token)) return -1;
    size_t n = strlen(o->base_url);
    while (n > 0 && o->base_url[n - 1] == '/') n--;
    char *url = NULL, *auth = NULL;
    if (asprintf(&url, "%.*s%s", (int)n, o->base_url, VOICE_AGENT_START_CALL_PATH) < 0) return -1;
    if (present(o->token) && asprintf(&auth, "Bearer %s", o->token) < 0) {
        free(url);
        return -1;
    }
    free(c->url);
    if (c->auth_header != NULL) explicit_bzero(c->auth_header, strlen(c->auth_header));
    free(c->auth_header);
    c->url = url;
    c->auth_header = auth;
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : VOICE_AGENT_DEFAULT_TIMEOUT_MS;
    return 0;
}

/* ---- calls ---------------------------------------------------------------------------------- */

static void op_free(struct va_op *op)
{
    free(op->tenant_id);
    free(op->booking_id);
    free(op->request_id);
    free(op);
}

static void op_unlink(struct voice_agent_client *c, struct va_op *op)
{
    if (op->prev != NULL) op->prev->next = op->next;
    else c->ops = op->next;
    if (op->next != NULL) op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

/* "callId" or "data.callId" when it is a sane string. */
static const char *find_call_id(json_t *root)
{
    json_t *id = json_object_get(root, "callId");
    if (!json_is_string(id)) id = json_object_get(json_object_get(root, "data"), "callId");
    if (!json_is_string(id) || json_string_length(id) == 0 || json_string_length(id) > CALL_ID_MAX)
        return NULL;
    return json_string_value(id);
}

/* The failure in one line for the log and the row's last_execution_error. The
 * agent's own message is untrusted (it may echo our request, token included):
 * it goes through the logger's redaction before it is stored anywhere. */
static void describe_error(const struct logger *lg, const struct http_response *r, json_t *root, char *out,
                           size_t outlen)
{
    char raw[ERROR_MESSAGE_MAX + 64] = "";
    if (r->transport_error != 0) {
        snprintf(raw, sizeof(raw), "transport: %s", r->error != NULL ? r->error : "error");
    } else {
        json_t *msg = json_object_get(root, "message");
        if (!json_is_string(msg)) msg = json_object_get(root, "error");
        if (!json_is_string(msg)) msg = json_object_get(json_object_get(root, "error"), "message");
        char text[ERROR_MESSAGE_MAX + 1] = "";
        if (json_is_string(msg)) {
            snprintf(text, sizeof(text), "%s", json_string_value(msg));
            for (char *p = text; *p != '\0'; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
        }
        snprintf(raw, sizeof(raw), "HTTP %ld%s%s", r->status, text[0] ? ": " : "", text);
    }
    char *clean = log_redact(lg, raw);
    snprintf(out, outlen, "%s", clean != NULL ? clean : "(error text unavailable)");
    free(clean);
}

static void on_http_done(void *arg, const struct http_response *r)
{
    struct va_op *op = arg;
    struct voice_agent_client *c = op->client;
    if (c == NULL) { /* client freed meanwhile */
        op_free(op);
        return;
    }
    op_unlink(c, op);
    enum va_result result = voice_agent_classify(r->status, r->transport_error);
    json_t *root = r->transport_error == 0 ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    char error[256] = "";
    if (result != VA_OK) describe_error(c->lg, r, root, error, sizeof(error));
    struct va_reply reply = {.result = result, .http_status = r->status,
                             .error = result == VA_OK ? NULL : error,
                             .call_id = result == VA_OK ? find_call_id(root) : NULL,
                             .retry_after_s = voice_agent_retry_after_s(r->status, http_response_header(r, "retry-after"),
                                                                        timefmt_now_ms())};
    char status[16], retry_after[16];
    snprintf(status, sizeof(status), "%ld", r->status);
    snprintf(retry_after, sizeof(retry_after), "%d", reply.retry_after_s);
    const struct log_ctx ctx = {.tenant_id = op->tenant_id, .booking_id = op->booking_id,
                                .request_id = op->request_id};
    LOG_KV(c->lg, result == VA_OK ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, &ctx,
           ((const char *[]){"result", va_result_name(result), "http_status", status, "call_id",
                             reply.call_id != NULL ? reply.call_id : "", "error", error, "retry_after_s", retry_after,
                             NULL}),
           "voice agent start-call finished");
    op->cb(op->arg, &reply);
    json_decref(root);
    op_free(op);
}

int voice_agent_start_call(struct voice_agent_client *c, const struct voice_call_request *req, va_cb cb,
                           void *arg)
{
    if (c == NULL || cb == NULL) return -1;
    char *body = voice_agent_build_body(req);
    struct va_op *op = body != NULL ? calloc(1, sizeof(*op)) : NULL;
    if (op == NULL) goto fail;
    op->cb = cb;
    op->arg = arg;
    op->tenant_id = strdup(req->tenant_id);
    op->booking_id = strdup(req->booking_id);
    op->request_id = present(req->request_id) ? strdup(req->request_id) : NULL;
    if (op->tenant_id == NULL || op->booking_id == NULL || (present(req->request_id) && !op->request_id))
        goto fail;
    struct http_header hdrs[6];
    size_t n = 0;
    hdrs[n++] = (struct http_header){"Content-Type", "application/json"};
    hdrs[n++] = (struct http_header){"X-Tenant-Id", req->tenant_id};
    if (c->auth_header != NULL) hdrs[n++] = (struct http_header){"Authorization", c->auth_header};
    hdrs[n++] = (struct http_header){"Idempotency-Key", req->idempotency_key};
    if (op->request_id != NULL) hdrs[n++] = (struct http_header){"X-Request-Id", op->request_id};
    if (present(req->traceparent)) hdrs[n++] = (struct http_header){"traceparent", req->traceparent};
    struct http_request hreq = {.method = "POST", .url = c->url, .headers = hdrs, .n_headers = n,
                                .body = body, .body_len = strlen(body), .timeout_ms = c->timeout_ms};
    if (http_client_send(c->http, &hreq, on_http_done, op) != 0) goto fail;
    free(body);
    op->client = c;
    op->next = c->ops;
    if (c->ops != NULL) c->ops->prev = op;
    c->ops = op;
    return 0;
fail:
    if (op != NULL) op_free(op);
    free(body);
    return -1;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

struct voice_agent_client *voice_agent_client_new(struct http_client *http, struct logger *lg,
                                                  const struct voice_agent_opts *opts)
{
    if (http == NULL) return NULL;
    struct voice_agent_client *c = calloc(1, sizeof(*c));
    if (c == NULL) return NULL;
    c->http = http;
    c->lg = lg;
    if (apply_opts(c, opts) != 0) {
        LOG_ERROR(lg, NULL, "voice agent: invalid base_url or token");
        free(c);
        return NULL;
    }
    return c;
}

int voice_agent_set_opts(struct voice_agent_client *c, const struct voice_agent_opts *opts)
{
    if (c == NULL) return -1;
    if (apply_opts(c, opts) != 0) {
        LOG_WARN(c->lg, NULL, "voice agent: invalid new options ignored; keeping the old ones");
        return -1;
    }
    return 0;
}

void voice_agent_client_abort(struct voice_agent_client *c, const char *why)
{
    if (c == NULL) return;
    struct va_op *aborted = c->ops;   /* detach all first: callbacks may start new calls */
    c->ops = NULL;
    char error[160];
    snprintf(error, sizeof(error), "aborted: %s", why != NULL ? why : "client shutting down");
    while (aborted != NULL) {
        struct va_op *op = aborted;
        aborted = op->next;
        op->prev = op->next = NULL;
        op->client = NULL;   /* freed by on_http_done when the HTTP request ends */
        const struct log_ctx ctx = {.tenant_id = op->tenant_id, .booking_id = op->booking_id,
                                    .request_id = op->request_id};
        LOG_KV(c->lg, LOG_LEVEL_WARN, &ctx, ((const char *[]){"result", "transient", "error", error, NULL}),
               "voice agent start-call aborted");
        struct va_reply reply = {.result = VA_TRANSIENT, .http_status = 0, .error = error, .call_id = NULL};
        op->cb(op->arg, &reply);
    }
}

void voice_agent_client_free(struct voice_agent_client *c)
{
    if (c == NULL) return;
    while (c->ops != NULL) {
        struct va_op *op = c->ops;
        op_unlink(c, op);
        op->client = NULL; /* freed by on_http_done */
    }
    free(c->url);
    if (c->auth_header != NULL) explicit_bzero(c->auth_header, strlen(c->auth_header));
    free(c->auth_header);
    free(c);
}
