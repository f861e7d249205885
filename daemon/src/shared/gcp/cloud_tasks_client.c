/*
 * shared/gcp/cloud_tasks_client — Cloud Tasks v2 REST calls (see the header
 * for the outcome table).
 *
 * An operation (`struct ct_op`) owns its prepared URL and body and goes
 * through: wait for an access token → send → classify; a 401 sends it back
 * to the first step once.  The client keeps its live operations on a list so
 * cloud_tasks_client_free() can cancel token waits and detach HTTP requests
 * (op->client = NULL); a detached op is freed when its HTTP callback arrives.
 *
 * The JSON bodies are built with jansson (insertion order is preserved, so
 * the output is deterministic and exactly testable).
 */
#include "shared/gcp/cloud_tasks_client.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utils/base64.h"
#include "utils/timefmt.h"

#define TASK_ID_MAX 500
#define URL_MAX 2048
#define ERROR_MESSAGE_MAX 160

struct cloud_tasks_client {
    struct http_client *http;
    struct google_auth *auth;
    struct logger *lg;
    char *endpoint;
    char *project, *location, *queue;
    long timeout_ms;
    struct ct_op *ops;
};

enum ct_op_kind { CT_OP_CREATE, CT_OP_DELETE };

struct ct_op {
    struct ct_op *prev, *next;
    struct cloud_tasks_client *client; /* NULL once detached */
    enum ct_op_kind kind;
    char *url;
    char *body;                        /* create only */
    char *task_name;
    ct_cb cb;
    void *arg;
    bool retried_after_401;
    bool waiting_for_token;
    const char *google_status;         /* canonical status of the last answer (static), or NULL */
};

/* ---- validation ----------------------------------------------------------------------------- */

static bool is_id_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
}

bool cloud_tasks_valid_task_id(const char *task_id)
{
    if (task_id == NULL) return false;
    size_t n = 0;
    for (; task_id[n] != '\0'; n++)
        if (!is_id_char(task_id[n]) || n >= TASK_ID_MAX) return false;
    return n > 0;
}

/* Project ("example.com:proj"), location and queue IDs. */
static bool valid_resource_id(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > 100) return false;
    for (size_t i = 0; i < len; i++)
        if (!is_id_char(s[i]) && s[i] != '.' && s[i] != ':') return false;
    return true;
}

static bool valid_resource_cstr(const char *s)
{
    return s != NULL && valid_resource_id(s, strlen(s));
}

bool cloud_tasks_valid_task_name(const char *name)
{
    static const char *const labels[] = {"projects", "locations", "queues", "tasks"};
    if (name == NULL) return false;
    const char *p = name;
    for (int i = 0; i < 4; i++) {
        size_t label_len = strlen(labels[i]);
        if (strncmp(p, labels[i], label_len) != 0 || p[label_len] != '/') return false;
        p += label_len + 1;
        size_t seg = strcspn(p, "/");
        if (i < 3) {
            if (!valid_resource_id(p, seg) || p[seg] != '/') return false;
            p += seg + 1;
        } else {
            return p[seg] == '\0' && cloud_tasks_valid_task_id(p);
        }
    }
    return false;
}

static bool valid_target_url(const char *url)
{
    if (url == NULL || strlen(url) > URL_MAX) return false;
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0) return false;
    for (const char *p = url; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) return false;
    return true;
}

static bool valid_spec(const struct cloud_task_spec *s)
{
    if (s == NULL || !cloud_tasks_valid_task_id(s->task_id) || !valid_target_url(s->url)) return false;
    if (s->body_json == NULL) return false;
    json_t *parsed = json_loads(s->body_json, JSON_DECODE_ANY, NULL);
    if (parsed == NULL) return false;
    json_decref(parsed);
    if ((s->oidc_service_account == NULL) != (s->oidc_audience == NULL)) return false;
    if (s->oidc_service_account != NULL && (*s->oidc_service_account == '\0' || *s->oidc_audience == '\0'))
        return false;
    if (s->dispatch_deadline_s != 0 && (s->dispatch_deadline_s < 15 || s->dispatch_deadline_s > 1800))
        return false;
    return true;
}

/* ---- pure builders -------------------------------------------------------------------------- */

char *cloud_tasks_task_name(const struct cloud_tasks_opts *opts, const char *task_id)
{
    if (opts == NULL || !valid_resource_cstr(opts->project) || !valid_resource_cstr(opts->location) ||
        !valid_resource_cstr(opts->queue) || !cloud_tasks_valid_task_id(task_id))
        return NULL;
    char *name = NULL;
    if (asprintf(&name, "projects/%s/locations/%s/queues/%s/tasks/%s", opts->project, opts->location,
                 opts->queue, task_id) < 0)
        return NULL;
    return name;
}

static json_t *build_http_request(const struct cloud_task_spec *spec)
{
    char *b64 = base64_encode(spec->body_json, strlen(spec->body_json));
    if (b64 == NULL) return NULL;
    json_t *req = json_pack("{s:s, s:s, s:{s:s}, s:s}", "url", spec->url, "httpMethod", "POST",
                            "headers", "Content-Type", "application/json", "body", b64);
    free(b64);
    if (req != NULL && spec->oidc_service_account != NULL &&
        json_object_set_new(req, "oidcToken",
                            json_pack("{s:s, s:s}", "serviceAccountEmail", spec->oidc_service_account,
                                      "audience", spec->oidc_audience)) != 0) {
        json_decref(req);
        return NULL;
    }
    return req;
}

char *cloud_tasks_build_create_body(const struct cloud_tasks_opts *opts, const struct cloud_task_spec *spec)
{
    if (!valid_spec(spec)) return NULL;
    char *name = cloud_tasks_task_name(opts, spec->task_id);
    if (name == NULL) return NULL;
    char *out = NULL, deadline[16], when[TIMEFMT_ISO_LEN];
    int seconds = spec->dispatch_deadline_s != 0 ? spec->dispatch_deadline_s
                                                 : CLOUD_TASKS_DEFAULT_DISPATCH_DEADLINE_S;
    snprintf(deadline, sizeof(deadline), "%ds", seconds);
    json_t *task = json_pack("{s:s}", "name", name);
    json_t *root = NULL;
    if (task == NULL) goto done;
    if (spec->schedule_time_ms > 0) {
        if (timefmt_iso_ms(spec->schedule_time_ms, when, sizeof(when)) != 0 ||
            json_object_set_new(task, "scheduleTime", json_string(when)) != 0)
            goto done;
    }
    if (json_object_set_new(task, "dispatchDeadline", json_string(deadline)) != 0 ||
        json_object_set_new(task, "httpRequest", build_http_request(spec)) != 0)
        goto done;
    root = json_pack("{s:O, s:s}", "task", task, "responseView", "BASIC");
    if (root == NULL) goto done;
    out = json_dumps(root, JSON_COMPACT);
    if (out != NULL && strlen(out) > CLOUD_TASKS_MAX_CREATE_BODY_BYTES) {
        free(out);
        out = NULL;
    }
done:
    json_decref(task);
    json_decref(root);
    free(name);
    return out;
}

/* ---- classification ------------------------------------------------------------------------- */

static const char *const canonical_statuses[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
    "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

/* Google's {"error": {"status": "..."}} as one of our static strings, or NULL. */
static const char *error_status(json_t *root)
{
    json_t *status = json_object_get(json_object_get(root, "error"), "status");
    if (!json_is_string(status)) return NULL;
    for (size_t i = 0; i < sizeof(canonical_statuses) / sizeof(canonical_statuses[0]); i++)
        if (strcmp(json_string_value(status), canonical_statuses[i]) == 0) return canonical_statuses[i];
    return NULL;
}

static enum ct_result classify_status(long http_status, const char *status)
{
    if (http_status >= 200 && http_status <= 299) return CT_OK;
    if (http_status == 409) /* only Google's own ALREADY_EXISTS proves the task exists */
        return (status != NULL && strcmp(status, "ALREADY_EXISTS") == 0) ? CT_ALREADY_EXISTS : CT_TRANSIENT;
    if (http_status == 404) return CT_NOT_FOUND;
    if (http_status == 401 || http_status == 408 || http_status == 429 || http_status >= 500)
        return CT_TRANSIENT;
    if (http_status >= 300 && http_status <= 499) return CT_PERMANENT;
    return CT_TRANSIENT; /* 0 or 1xx: no usable answer */
}

enum ct_result cloud_tasks_classify(long http_status, int transport_error, const char *body,
                                    const char **status_out)
{
    if (status_out != NULL) *status_out = NULL;
    if (transport_error != 0) return CT_TRANSIENT;
    json_t *root = body != NULL ? json_loads(body, 0, NULL) : NULL;
    const char *status = error_status(root);
    json_decref(root);
    if (status_out != NULL) *status_out = status;
    return classify_status(http_status, status);
}

const char *ct_result_name(enum ct_result r)
{
    switch (r) {
    case CT_OK: return "ok";
    case CT_ALREADY_EXISTS: return "already_exists";
    case CT_NOT_FOUND: return "not_found";
    case CT_TRANSIENT: return "transient";
    case CT_PERMANENT: return "permanent";
    }
    return "unknown";
}

/* ---- operations ----------------------------------------------------------------------------- */

static void op_free(struct ct_op *op)
{
    free(op->url);
    free(op->body);
    free(op->task_name);
    free(op);
}

static void op_unlink(struct ct_op *op)
{
    struct cloud_tasks_client *c = op->client;
    if (c == NULL) return;
    if (op->prev != NULL) op->prev->next = op->next;
    else c->ops = op->next;
    if (op->next != NULL) op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

static void op_finish(struct ct_op *op, enum ct_result result, long http_status, const char *task_name,
                      const char *error)
{
    struct cloud_tasks_client *c = op->client;
    char status[16];
    snprintf(status, sizeof(status), "%ld", http_status);
    LOG_KV(c->lg, LOG_LEVEL_DEBUG, &(struct log_ctx){.task_name = op->task_name},
           ((const char *[]){"op", op->kind == CT_OP_CREATE ? "create" : "delete", "result",
                             ct_result_name(result), "http_status", status, "error",
                             error != NULL ? error : "", NULL}),
           "cloud tasks call finished");
    op_unlink(op);
    struct ct_reply reply = {.result = result, .http_status = http_status,
                             .task_name = task_name != NULL ? task_name : op->task_name,
                             .error = result == CT_OK ? NULL : error, .google_status = op->google_status};
    op->cb(op->arg, &reply);
    op_free(op);
}

/* "HTTP 400 INVALID_ARGUMENT: <message>" with the message cut and control bytes replaced. */
static void describe_error(const struct http_response *r, json_t *root, const char *status, char *out,
                           size_t outlen)
{
    if (r->transport_error != 0) {
        snprintf(out, outlen, "transport: %s", r->error != NULL ? r->error : "error");
        return;
    }
    json_t *msg = json_object_get(json_object_get(root, "error"), "message");
    char text[ERROR_MESSAGE_MAX + 1] = "";
    if (json_is_string(msg)) {
        snprintf(text, sizeof(text), "%s", json_string_value(msg));
        for (char *p = text; *p != '\0'; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
    }
    snprintf(out, outlen, "HTTP %ld%s%s%s%s", r->status, status ? " " : "", status ? status : "",
             text[0] ? ": " : "", text);
}

static void on_token(void *arg, const char *token, const char *err);

static void on_http_done(void *arg, const struct http_response *r)
{
    struct ct_op *op = arg;
    if (op->client == NULL) { /* client freed meanwhile */
        op_free(op);
        return;
    }
    const char *status = NULL;
    enum ct_result result = cloud_tasks_classify(r->status, r->transport_error, r->body, &status);
    op->google_status = status;
    if (r->transport_error == 0 && r->status == 401 && !op->retried_after_401) {
        op->retried_after_401 = true;
        google_auth_invalidate(op->client->auth);
        op->waiting_for_token = true;
        if (google_auth_get_token(op->client->auth, on_token, op) == 0) return;
        op->waiting_for_token = false;
        op_finish(op, CT_TRANSIENT, r->status, NULL, "HTTP 401 and no new access token");
        return;
    }
    json_t *root = r->transport_error == 0 ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    const char *name = NULL;
    if (result == CT_OK && op->kind == CT_OP_CREATE) {
        json_t *n = json_object_get(root, "name");
        if (json_is_string(n) && cloud_tasks_valid_task_name(json_string_value(n)))
            name = json_string_value(n);
    }
    char error[256] = "";
    if (result != CT_OK) describe_error(r, root, status, error, sizeof(error));
    op_finish(op, result, r->status, name, error);
    json_decref(root);
}

static void on_token(void *arg, const char *token, const char *err)
{
    struct ct_op *op = arg;
    struct cloud_tasks_client *c = op->client;
    op->waiting_for_token = false;
    if (token == NULL) {
        char msg[256];
        snprintf(msg, sizeof(msg), "access token: %s", err != NULL ? err : "unavailable");
        op_finish(op, CT_TRANSIENT, 0, NULL, msg);
        return;
    }
    char *auth_header = NULL;
    if (asprintf(&auth_header, "Bearer %s", token) < 0) {
        op_finish(op, CT_TRANSIENT, 0, NULL, "out of memory");
        return;
    }
    const struct http_header hdrs[] = {{"Authorization", auth_header},
                                       {"Content-Type", "application/json"}};
    struct http_request req = {.method = op->kind == CT_OP_CREATE ? "POST" : "DELETE",
                               .url = op->url, .headers = hdrs,
                               .n_headers = op->kind == CT_OP_CREATE ? 2 : 1, .body = op->body,
                               .body_len = op->body != NULL ? strlen(op->body) : 0,
                               .timeout_ms = c->timeout_ms};
    int rc = http_client_send(c->http, &req, on_http_done, op);
    explicit_bzero(auth_header, strlen(auth_header));
    free(auth_header);
    if (rc != 0) op_finish(op, CT_TRANSIENT, 0, NULL, "could not send the request");
}

static int op_submit(struct cloud_tasks_client *c, struct ct_op *op)
{
    op->client = c;
    op->waiting_for_token = true;
    if (google_auth_get_token(c->auth, on_token, op) != 0) {
        op_free(op);
        return -1;
    }
    op->next = c->ops;
    if (c->ops != NULL) c->ops->prev = op;
    c->ops = op;
    return 0;
}

int cloud_tasks_create(struct cloud_tasks_client *c, const struct cloud_task_spec *spec, ct_cb cb,
                       void *arg)
{
    if (c == NULL || cb == NULL) return -1;
    struct cloud_tasks_opts opts = {.project = c->project, .location = c->location, .queue = c->queue};
    struct ct_op *op = calloc(1, sizeof(*op));
    if (op == NULL) return -1;
    op->kind = CT_OP_CREATE;
    op->cb = cb;
    op->arg = arg;
    op->body = cloud_tasks_build_create_body(&opts, spec);
    op->task_name = op->body != NULL ? cloud_tasks_task_name(&opts, spec->task_id) : NULL;
    if (op->task_name == NULL ||
        asprintf(&op->url, "%s/v2/projects/%s/locations/%s/queues/%s/tasks", c->endpoint, c->project,
                 c->location, c->queue) < 0) {
        op->url = NULL;
        op_free(op);
        return -1;
    }
    return op_submit(c, op);
}

int cloud_tasks_delete(struct cloud_tasks_client *c, const char *task_name, ct_cb cb, void *arg)
{
    if (c == NULL || cb == NULL || !cloud_tasks_valid_task_name(task_name)) return -1;
    struct ct_op *op = calloc(1, sizeof(*op));
    if (op == NULL) return -1;
    op->kind = CT_OP_DELETE;
    op->cb = cb;
    op->arg = arg;
    op->task_name = strdup(task_name);
    if (op->task_name == NULL || asprintf(&op->url, "%s/v2/%s", c->endpoint, task_name) < 0) {
        op->url = NULL;
        op_free(op);
        return -1;
    }
    return op_submit(c, op);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static bool valid_endpoint(const char *e)
{
    return e != NULL && (strncmp(e, "https://", 8) == 0 || strncmp(e, "http://", 7) == 0) &&
           strpbrk(e, " \t\r\n?#") == NULL;
}

struct cloud_tasks_client *cloud_tasks_client_new(struct http_client *http, struct google_auth *auth,
                                                  struct logger *lg, const struct cloud_tasks_opts *opts)
{
    if (http == NULL || auth == NULL || opts == NULL) return NULL;
    const char *endpoint = opts->endpoint != NULL ? opts->endpoint : CLOUD_TASKS_DEFAULT_ENDPOINT;
    if (!valid_endpoint(endpoint) || !valid_resource_cstr(opts->project) ||
        !valid_resource_cstr(opts->location) || !valid_resource_cstr(opts->queue)) {
        LOG_ERROR(lg, NULL, "cloud tasks: invalid endpoint, project, location or queue");
        return NULL;
    }
    struct cloud_tasks_client *c = calloc(1, sizeof(*c));
    if (c == NULL) return NULL;
    c->http = http;
    c->auth = auth;
    c->lg = lg;
    c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : CLOUD_TASKS_DEFAULT_TIMEOUT_MS;
    size_t n = strlen(endpoint);
    while (n > 0 && endpoint[n - 1] == '/') n--;
    c->endpoint = strndup(endpoint, n);
    c->project = strdup(opts->project);
    c->location = strdup(opts->location);
    c->queue = strdup(opts->queue);
    if (c->endpoint == NULL || c->project == NULL || c->location == NULL || c->queue == NULL) {
        cloud_tasks_client_free(c);
        return NULL;
    }
    return c;
}

void cloud_tasks_client_free(struct cloud_tasks_client *c)
{
    if (c == NULL) return;
    while (c->ops != NULL) {
        struct ct_op *op = c->ops;
        op_unlink(op);
        if (op->waiting_for_token) {
            google_auth_cancel(c->auth, on_token, op);
            op_free(op);
        } else {
            op->client = NULL; /* freed by on_http_done */
        }
    }
    free(c->endpoint);
    free(c->project);
    free(c->location);
    free(c->queue);
    free(c);
}
