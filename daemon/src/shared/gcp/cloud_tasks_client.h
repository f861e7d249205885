/*
 * shared/gcp/cloud_tasks_client — create and delete Google Cloud Tasks (v2
 * REST) for one queue, authenticated with google_auth access tokens.
 *
 * cloud_tasks_create() POSTs {"task": {...}, "responseView": "BASIC"} to
 * {endpoint}/v2/projects/P/locations/L/queues/Q/tasks; the task is named
 * (projects/P/locations/L/queues/Q/tasks/ID) so creating it twice is
 * de-duplicated by Google (409 ALREADY_EXISTS).  cloud_tasks_delete() sends
 * DELETE {endpoint}/v2/{task name}.  Outcomes are classified once, here:
 *
 *   2xx                          CT_OK
 *   409 ALREADY_EXISTS           CT_ALREADY_EXISTS (also "existed too recently")
 *   404                          CT_NOT_FOUND (delete: already ran or deleted;
 *                                create: the queue does not exist)
 *   401                          token invalidated, one refresh + retry; a
 *                                second 401 → CT_TRANSIENT
 *   408, 409 other, 429, 5xx,    CT_TRANSIENT
 *   transport error/timeout,
 *   no access token
 *   other 4xx (400 INVALID_ARGUMENT, 403 PERMISSION_DENIED, ...), 3xx
 *                                CT_PERMANENT
 *
 * There is no retry loop beyond the single 401 refresh: the caller owns
 * backoff.  Every accepted operation calls its callback exactly once, later,
 * from the loop; the reply (task_name, error) is valid only during the
 * callback.  `error` is short and never contains tokens.
 *
 * Lifetime: cloud_tasks_client_free() drops outstanding operations without
 * calling them back (waiting token requests are cancelled, in-flight HTTP
 * requests are detached and their completions absorbed).  Free this client
 * before its google_auth; close the http_client last.
 */
#ifndef FOLLOWUPD_SHARED_GCP_CLOUD_TASKS_CLIENT_H
#define FOLLOWUPD_SHARED_GCP_CLOUD_TASKS_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "shared/gcp/google_auth.h"
#include "shared/http/http_client.h"
#include "utils/log.h"

#define CLOUD_TASKS_DEFAULT_ENDPOINT "https://cloudtasks.googleapis.com"
#define CLOUD_TASKS_DEFAULT_TIMEOUT_MS 15000L
#define CLOUD_TASKS_DEFAULT_DISPATCH_DEADLINE_S 600
#define CLOUD_TASKS_MAX_CREATE_BODY_BYTES (100 * 1024)

struct cloud_tasks_opts {
    const char *endpoint;        /* NULL → https://cloudtasks.googleapis.com */
    const char *project, *location, *queue;
    long timeout_ms;             /* per HTTP request; <= 0 → 15 s */
};

struct cloud_task_spec {
    const char *task_id;         /* [A-Za-z0-9_-]{1,500} */
    const char *url;             /* http:// or https:// target */
    const char *body_json;       /* valid JSON; sent base64-encoded in httpRequest.body */
    int64_t schedule_time_ms;    /* epoch ms UTC; <= 0 → no scheduleTime (dispatch now) */
    const char *oidc_service_account, *oidc_audience; /* both or neither */
    int dispatch_deadline_s;     /* 0 → 600; else 15..1800 */
};

enum ct_result { CT_OK, CT_ALREADY_EXISTS, CT_NOT_FOUND, CT_TRANSIENT, CT_PERMANENT };

struct ct_reply {
    enum ct_result result;
    long http_status;            /* 0 when there was no HTTP response */
    const char *task_name;       /* full name (from the reply on success, else the requested one) */
    const char *error;           /* NULL on CT_OK */
    const char *google_status;   /* Google's canonical status of the error body ("RESOURCE_EXHAUSTED", ...;
                                    a static string), NULL when the answer named none or there was none */
};

typedef void (*ct_cb)(void *arg, const struct ct_reply *r);

struct cloud_tasks_client;

/* NULL when the options are invalid (logged) or on allocation failure. */
struct cloud_tasks_client *cloud_tasks_client_new(struct http_client *http, struct google_auth *auth,
                                                  struct logger *lg, const struct cloud_tasks_opts *opts);
/* 0: cb runs exactly once, later. -1: invalid spec/name or out of memory; cb never runs. */
int cloud_tasks_create(struct cloud_tasks_client *c, const struct cloud_task_spec *spec, ct_cb cb,
                       void *arg) __attribute__((warn_unused_result));
int cloud_tasks_delete(struct cloud_tasks_client *c, const char *task_name, ct_cb cb, void *arg)
    __attribute__((warn_unused_result));
void cloud_tasks_client_free(struct cloud_tasks_client *c);

/* ---- pure helpers (unit-tested) ---- */

bool cloud_tasks_valid_task_id(const char *task_id);
/* "projects/P/locations/L/queues/Q/tasks/ID" with valid segments. */
bool cloud_tasks_valid_task_name(const char *task_name);
/* Malloc'd "projects/P/locations/L/queues/Q/tasks/ID", NULL when invalid. */
char *cloud_tasks_task_name(const struct cloud_tasks_opts *opts, const char *task_id);
/* Malloc'd compact create body, NULL when the spec is invalid (see struct). */
char *cloud_tasks_build_create_body(const struct cloud_tasks_opts *opts, const struct cloud_task_spec *spec);
/* Classify an outcome; *status_out (may be NULL) gets Google's canonical
 * status name from the error body ("ALREADY_EXISTS", ...) or NULL. */
enum ct_result cloud_tasks_classify(long http_status, int transport_error, const char *body,
                                    const char **status_out);
const char *ct_result_name(enum ct_result r);

#endif
