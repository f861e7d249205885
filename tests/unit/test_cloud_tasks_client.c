/* Unit tests for shared/gcp/cloud_tasks_client: exact create bodies, validation, the
 * classification table, and the async create/delete flows (401 refresh, 409, 404, 503, 400,
 * timeouts, shutdown) against the loopback server acting as Cloud Tasks + metadata server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/gcp/cloud_tasks_client.h"
#include "support/curl_test_server.h"

#define WAIT_MS 5000
#define TASK_NAME "projects/proj-1/locations/europe-west1/queues/followups/tasks/abc_DEF-123"
#define TASKS_PATH "/v2/projects/proj-1/locations/europe-west1/queues/followups/tasks"

static const struct cloud_tasks_opts base_opts = {
    .project = "proj-1", .location = "europe-west1", .queue = "followups"};

static struct cloud_task_spec full_spec(void)
{
    return (struct cloud_task_spec){
        .task_id = "abc_DEF-123",
        .url = "https://followupd.example.com/internal/followups/execute",
        .body_json = "{\"tenantId\":\"t1\",\"bookingId\":\"b1\"}",
        .schedule_time_ms = 1795881600000LL,
        .oidc_service_account = "invoker@proj-1.iam.gserviceaccount.com",
        .oidc_audience = "https://followupd.example.com",
        .dispatch_deadline_s = 0,
    };
}

/* ---- pure helpers ---- */

static void cloud_tasks_build_create_body__full_spec__exact_json(void **state)
{
    (void)state;
    struct cloud_task_spec spec = full_spec();
    char *body = cloud_tasks_build_create_body(&base_opts, &spec);
    assert_non_null(body);
    assert_string_equal(
        body,
        "{\"task\":{\"name\":\"" TASK_NAME "\","
        "\"scheduleTime\":\"2026-11-28T16:00:00.000Z\",\"dispatchDeadline\":\"600s\","
        "\"httpRequest\":{\"url\":\"https://followupd.example.com/internal/followups/execute\","
        "\"httpMethod\":\"POST\",\"headers\":{\"Content-Type\":\"application/json\"},"
        "\"body\":\"eyJ0ZW5hbnRJZCI6InQxIiwiYm9va2luZ0lkIjoiYjEifQ==\","
        "\"oidcToken\":{\"serviceAccountEmail\":\"invoker@proj-1.iam.gserviceaccount.com\","
        "\"audience\":\"https://followupd.example.com\"}}},\"responseView\":\"BASIC\"}");
    free(body);
}

static void cloud_tasks_build_create_body__no_oidc_custom_deadline_no_schedule__fields_omitted(void **state)
{
    (void)state;
    struct cloud_task_spec spec = full_spec();
    spec.oidc_service_account = spec.oidc_audience = NULL;
    spec.dispatch_deadline_s = 1800;
    spec.schedule_time_ms = 0;
    spec.body_json = "{}";
    char *body = cloud_tasks_build_create_body(&base_opts, &spec);
    assert_non_null(body);
    assert_string_equal(body, "{\"task\":{\"name\":\"" TASK_NAME "\",\"dispatchDeadline\":\"1800s\","
                              "\"httpRequest\":{\"url\":\"https://followupd.example.com/internal/followups/"
                              "execute\",\"httpMethod\":\"POST\",\"headers\":{\"Content-Type\":"
                              "\"application/json\"},\"body\":\"e30=\"}},\"responseView\":\"BASIC\"}");
    free(body);
}

static void cloud_tasks_build_create_body__invalid_specs__null(void **state)
{
    (void)state;
    char long_id[502];
    memset(long_id, 'a', 501);
    long_id[501] = '\0';
    char *big_body = malloc(80 * 1024 + 3);
    big_body[0] = '"';
    memset(big_body + 1, 'x', 80 * 1024);
    strcpy(big_body + 1 + 80 * 1024, "\"");
    for (int i = 0; i < 14; i++) {
        struct cloud_task_spec s = full_spec();
        switch (i) {
        case 0: s.task_id = ""; break;
        case 1: s.task_id = "has space"; break;
        case 2: s.task_id = "slash/id"; break;
        case 3: s.task_id = long_id; break;
        case 4: s.task_id = NULL; break;
        case 5: s.url = "ftp://x/y"; break;
        case 6: s.url = "https://x/ y"; break;
        case 7: s.body_json = NULL; break;
        case 8: s.body_json = "{not json"; break;
        case 9: s.oidc_audience = NULL; break;
        case 10: s.dispatch_deadline_s = 14; break;
        case 11: s.dispatch_deadline_s = 1801; break;
        case 12: s.body_json = big_body; break; /* base64 grows it past 100 KB */
        case 13: s.schedule_time_ms = 253402300800000LL; break; /* year 10000 */
        }
        char *body = cloud_tasks_build_create_body(&base_opts, &s);
        if (body != NULL) fail_msg("case %d accepted: %s", i, body);
    }
    long_id[500] = '\0'; /* exactly 500 is fine */
    struct cloud_task_spec ok = full_spec();
    ok.task_id = long_id;
    char *body = cloud_tasks_build_create_body(&base_opts, &ok);
    assert_non_null(body);
    free(body);
    struct cloud_tasks_opts bad_opts = base_opts;
    bad_opts.queue = "q/../x";
    struct cloud_task_spec s = full_spec();
    assert_null(cloud_tasks_build_create_body(&bad_opts, &s));
    free(big_body);
}

static void cloud_tasks_valid_task_name__shapes__checked(void **state)
{
    (void)state;
    assert_true(cloud_tasks_valid_task_name(TASK_NAME));
    assert_true(cloud_tasks_valid_task_name("projects/example.com:p/locations/l/queues/q/tasks/t"));
    assert_false(cloud_tasks_valid_task_name("projects/p/locations/l/queues/q/tasks/"));
    assert_false(cloud_tasks_valid_task_name("projects/p/locations/l/queues/q/tasks/a/b"));
    assert_false(cloud_tasks_valid_task_name("projects/p/locations/l/queues/q"));
    assert_false(cloud_tasks_valid_task_name("projects//locations/l/queues/q/tasks/t"));
    assert_false(cloud_tasks_valid_task_name("projects/p/locations/l/queue/q/tasks/t"));
    assert_false(cloud_tasks_valid_task_name("projects/p/locations/l/queues/q/tasks/t?x=1"));
    assert_false(cloud_tasks_valid_task_name(NULL));
}

static void cloud_tasks_classify__table__matches_contract(void **state)
{
    (void)state;
    static const struct {
        long status;
        int transport;
        const char *body;
        enum ct_result want;
        const char *want_status;
    } rows[] = {
        {200, 0, "{\"name\":\"x\"}", CT_OK, NULL},
        {204, 0, "", CT_OK, NULL},
        {409, 0, "{\"error\":{\"code\":409,\"message\":\"Requested entity already exists\",\"status\":\"ALREADY_EXISTS\"}}",
         CT_ALREADY_EXISTS, "ALREADY_EXISTS"},
        {409, 0, "not json", CT_TRANSIENT, NULL},   /* only Google's ALREADY_EXISTS proves the task exists */
        {409, 0, "{\"error\":{\"code\":409,\"status\":\"ABORTED\"}}", CT_TRANSIENT, "ABORTED"},
        {404, 0, "{\"error\":{\"code\":404,\"status\":\"NOT_FOUND\"}}", CT_NOT_FOUND, "NOT_FOUND"},
        {401, 0, "{\"error\":{\"code\":401,\"status\":\"UNAUTHENTICATED\"}}", CT_TRANSIENT, "UNAUTHENTICATED"},
        {408, 0, "", CT_TRANSIENT, NULL},
        {429, 0, "{\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\"}}", CT_TRANSIENT, "RESOURCE_EXHAUSTED"},
        {500, 0, "", CT_TRANSIENT, NULL},
        {503, 0, "{\"error\":{\"code\":503,\"status\":\"UNAVAILABLE\"}}", CT_TRANSIENT, "UNAVAILABLE"},
        {504, 0, NULL, CT_TRANSIENT, NULL},
        {400, 0, "{\"error\":{\"code\":400,\"status\":\"INVALID_ARGUMENT\"}}", CT_PERMANENT, "INVALID_ARGUMENT"},
        {403, 0, "{\"error\":{\"code\":403,\"status\":\"PERMISSION_DENIED\"}}", CT_PERMANENT, "PERMISSION_DENIED"},
        {400, 0, "{\"error\":{\"status\":\"MADE_UP\"}}", CT_PERMANENT, NULL},
        {301, 0, "", CT_PERMANENT, NULL},
        {0, CURLE_OPERATION_TIMEDOUT, NULL, CT_TRANSIENT, NULL},
        {0, CURLE_COULDNT_CONNECT, NULL, CT_TRANSIENT, NULL},
        {200, CURLE_WRITE_ERROR, NULL, CT_TRANSIENT, NULL},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *status = "sentinel";
        enum ct_result got = cloud_tasks_classify(rows[i].status, rows[i].transport, rows[i].body, &status);
        if (got != rows[i].want) fail_msg("row %zu: got %s", i, ct_result_name(got));
        if (rows[i].want_status == NULL) assert_null(status);
        else assert_string_equal(status, rows[i].want_status);
    }
}

/* ---- fake Cloud Tasks + metadata server ---- */

struct scripted {
    int status;
    const char *body;
};

struct fake_gcp {
    int tokens_issued;
    bool token_fails;
    bool hang_tasks;
    struct scripted script[4];
    int n_script, next;
    char last_auth[128];
};

static void fake_gcp_handler(void *arg, const struct cts_request *req, struct cts_reply *rep)
{
    struct fake_gcp *g = arg;
    static char body[256];
    if (strncmp(req->target, "/computeMetadata/", 17) == 0) {
        if (g->token_fails) {
            rep->status = 500;
            rep->body = "{}";
            return;
        }
        g->tokens_issued++;
        snprintf(body, sizeof(body), "{\"access_token\":\"ya29.tok-%d\",\"expires_in\":3600}", g->tokens_issued);
        rep->body = body;
        return;
    }
    const char *auth = cts_header(req, "Authorization");
    snprintf(g->last_auth, sizeof(g->last_auth), "%s", auth ? auth : "");
    if (g->hang_tasks) {
        rep->hang = true;
        return;
    }
    if (g->next < g->n_script) {
        rep->status = g->script[g->next].status;
        rep->body = g->script[g->next].body;
        g->next++;
        return;
    }
    rep->body = strcmp(req->method, "DELETE") == 0
                    ? "{}"
                    : "{\"name\":\"" TASK_NAME "\",\"scheduleTime\":\"2026-11-28T16:00:00Z\"}";
}

struct fixture {
    uv_loop_t loop;
    struct logger log;
    struct cts_server *srv;
    struct http_client *http;
    struct google_auth *auth;
    struct cloud_tasks_client *ct;
    struct fake_gcp gcp;
    int http_closed;
};

struct got {
    int calls;
    enum ct_result result;
    long http_status;
    char task_name[256];
    char error[256];
};

static void on_reply(void *arg, const struct ct_reply *r)
{
    struct got *g = arg;
    g->calls++;
    g->result = r->result;
    g->http_status = r->http_status;
    snprintf(g->task_name, sizeof(g->task_name), "%s", r->task_name ? r->task_name : "");
    snprintf(g->error, sizeof(g->error), "%s", r->error ? r->error : "");
}

static void fixture_start(struct fixture *fx, long timeout_ms)
{
    memset(fx, 0, sizeof(*fx));
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    logger_init(&fx->log, LOG_LEVEL_ERROR, 2);
    fx->srv = cts_start(&fx->loop, fake_gcp_handler, &fx->gcp);
    assert_non_null(fx->srv);
    fx->http = http_client_new(&fx->loop, &fx->log, 8);
    struct google_auth_opts aopts = {.credentials = "metadata", .metadata_url = cts_url(fx->srv)};
    fx->auth = google_auth_new(&fx->loop, &fx->log, fx->http, &aopts);
    char err[128];
    assert_int_equal(google_auth_load(fx->auth, err, sizeof(err)), 0);
    struct cloud_tasks_opts opts = base_opts;
    opts.endpoint = cts_url(fx->srv);
    opts.timeout_ms = timeout_ms;
    fx->ct = cloud_tasks_client_new(fx->http, fx->auth, &fx->log, &opts);
    assert_non_null(fx->ct);
}

static void on_http_closed(void *arg)
{
    ((struct fixture *)arg)->http_closed++;
}

static void fixture_finish(struct fixture *fx)
{
    cloud_tasks_client_free(fx->ct);
    google_auth_free(fx->auth);
    http_client_close(fx->http, on_http_closed, fx);
    cts_close(fx->srv);
    assert_int_equal(cts_finish_loop(&fx->loop, WAIT_MS), 0);
    assert_int_equal(fx->http_closed, 1);
    logger_free(&fx->log);
}

static bool got_called(void *arg)
{
    return ((struct got *)arg)->calls > 0;
}

static void wait_reply(struct fixture *fx, struct got *g)
{
    assert_true(cts_run_until(&fx->loop, got_called, g, WAIT_MS));
    assert_int_equal(g->calls, 1);
}

static size_t task_requests(struct fixture *fx)
{
    return cts_count_prefix(fx->srv, "/v2/");
}

static void cloud_tasks_create__2xx__ok_with_name_and_exact_request(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2000);
    struct cloud_task_spec spec = full_spec();
    struct got g = {0};
    assert_int_equal(cloud_tasks_create(fx.ct, &spec, on_reply, &g), 0);
    assert_int_equal(g.calls, 0);
    wait_reply(&fx, &g);
    assert_int_equal(g.result, CT_OK);
    assert_int_equal(g.http_status, 200);
    assert_string_equal(g.task_name, TASK_NAME);
    assert_string_equal(g.error, "");
    assert_int_equal(task_requests(&fx), 1);
    const struct cts_request *req = cts_request_at(fx.srv, 1);
    assert_string_equal(req->method, "POST");
    assert_string_equal(req->target, TASKS_PATH);
    assert_string_equal(cts_header(req, "Authorization"), "Bearer ya29.tok-1");
    assert_string_equal(cts_header(req, "Content-Type"), "application/json");
    char *want = cloud_tasks_build_create_body(&base_opts, &spec);
    assert_string_equal(req->body, want);
    free(want);
    fixture_finish(&fx);
}

static void cloud_tasks_create__409_already_exists__already_exists_with_requested_name(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2000);
    fx.gcp.script[0] = (struct scripted){409, "{\"error\":{\"code\":409,\"message\":\"Requested entity already "
                                              "exists\",\"status\":\"ALREADY_EXISTS\"}}"};
    fx.gcp.n_script = 1;
    struct cloud_task_spec spec = full_spec();
    struct got g = {0};
    assert_int_equal(cloud_tasks_create(fx.ct, &spec, on_reply, &g), 0);
    wait_reply(&fx, &g);
    assert_int_equal(g.result, CT_ALREADY_EXISTS);
    assert_int_equal(g.http_status, 409);
    assert_string_equal(g.task_name, TASK_NAME);
    assert_string_equal(g.error, "HTTP 409 ALREADY_EXISTS: Requested entity already exists");
    fixture_finish(&fx);
}

static void cloud_tasks_create__503_and_429__transient_without_retry(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2000);
    fx.gcp.script[0] = (struct scripted){503, "{\"error\":{\"code\":503,\"message\":\"backend\\nbusy\","
                                              "\"status\":\"UNAVAILABLE\"}}"};
    fx.gcp.script[1] = (struct scripted){429, "{}"};
    fx.gcp.n_script = 2;
    struct cloud_task_spec spec = full_spec();
    struct got a = {0}, b = {0};
    assert_int_equal(cloud_tasks_create(fx.ct, &spec, on_reply, &a), 0);
    wait_reply(&fx, &a);
    assert_int_equal(a.result, CT_TRANSIENT);
    assert_int_equal(a.http_status, 503);
    assert_string_equal(a.error, "HTTP 503 UNAVAILABLE: backend busy");
    assert_int_equal(task_requests(&fx), 1);
    assert_int_equal(cloud_tasks_create(fx.ct, &spec, on_reply, &b), 0);
    wait_reply(&fx, &b);
    assert_int_equal(b.result, CT_TRANSIENT);
    assert_int_equal(b.http_status, 429);
    assert_int_equal(task_requests(&fx), 2);
    fixture_finish(&fx);
}

static void cloud_tasks_create__400_invalid_argument__permanent(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2000);
    fx.gcp.script[0] = (struct scripted){
        400, "{\"error\":{\"code\":400,\"message\":\"Schedule time must be no more than 720h in the future\","
             "\"status\":\"INVALID_ARGUMENT\"}}"};
    fx.gcp.n_script = 1;
    struct cloud_task_spec spec = full_spec();
    struct got g = {0};
    assert_int_equal(cloud_tasks_create(fx.ct, &spec, on_reply, &g), 0);
    wait_reply(&fx, &g);
    assert_int_equal(g.result, CT_PERMANENT);
    assert_int_equal(g.http_status, 400);
    assert_string_equal(g.error,
                        "HTTP 400 INVALID_ARGUMENT: Schedule time must be no more than 720h in the future");
    fixture_finish(&fx);
}

static void cloud_tasks_create__401_once__token_refreshed_and_retried(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2000);
    fx.gcp.script[0] = (struct scripted){401, "{\"error\":{\"code\":401,\"status\":\"UNAUTHENTICATED\"}}"};
    fx.gcp.n_script = 1;
    struct cloud_task_spec spec = full_spec();
    struct got g = {0};
    assert_int_equal(cloud_tasks_create(fx.ct, &spec, on_reply, &g), 0);
    wait_reply(&fx, &g);
    assert_int_equal(g.result, CT_OK);
    assert_int_equal(fx.gcp.tokens_issued, 2);
    assert_int_equal(task_requests(&fx), 2);
    assert_string_equal(fx.gcp.last_auth, "Bearer ya29.tok-2");
    fixture_finish(&fx);
}

static void cloud_tasks_create__401_twice__transient_after_single_retry(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2000);
    fx.gcp.script[0] = (struct scripted){401, "{}"};
    fx.gcp.script[1] = (struct scripted){401, "{}"};
    fx.gcp.n_script = 2;
    struct cloud_task_spec spec = full_spec();
    struct got g = {0};
    assert_int_equal(cloud_tasks_create(fx.ct, &spec, on_reply, &g), 0);
    wait_reply(&fx, &g);
    assert_int_equal(g.result, CT_TRANSIENT);
    assert_int_equal(g.http_status, 401);
    assert_int_equal(fx.gcp.tokens_issued, 2);
    assert_int_equal(task_requests(&fx), 2);
    fixture_finish(&fx);
}

static void cloud_tasks_create__token_unavailable__transient_no_task_request(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2000);
    fx.gcp.token_fails = true;
    struct cloud_task_spec spec = full_spec();
    struct got g = {0};
    assert_int_equal(cloud_tasks_create(fx.ct, &spec, on_reply, &g), 0);
    wait_reply(&fx, &g);
    assert_int_equal(g.result, CT_TRANSIENT);
    assert_int_equal(g.http_status, 0);
    assert_string_equal(g.error, "access token: token endpoint: HTTP 500");
    assert_int_equal(task_requests(&fx), 0);
    fixture_finish(&fx);
}

static void cloud_tasks_create__server_silent__transient_timeout(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 150);
    fx.gcp.hang_tasks = true;
    struct cloud_task_spec spec = full_spec();
    struct got g = {0};
    assert_int_equal(cloud_tasks_create(fx.ct, &spec, on_reply, &g), 0);
    wait_reply(&fx, &g);
    assert_int_equal(g.result, CT_TRANSIENT);
    assert_int_equal(g.http_status, 0);
    assert_non_null(strstr(g.error, "transport: "));
    fixture_finish(&fx);
}

static void cloud_tasks_create__invalid_spec__rejected_without_callback(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2000);
    struct cloud_task_spec spec = full_spec();
    spec.task_id = "bad id";
    struct got g = {0};
    assert_int_equal(cloud_tasks_create(fx.ct, &spec, on_reply, &g), -1);
    assert_int_equal(cloud_tasks_delete(fx.ct, "tasks/x", on_reply, &g), -1);
    fixture_finish(&fx);
    assert_int_equal(g.calls, 0);
}

static void cloud_tasks_delete__2xx_then_404__ok_then_not_found(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2000);
    struct got a = {0}, b = {0};
    assert_int_equal(cloud_tasks_delete(fx.ct, TASK_NAME, on_reply, &a), 0);
    wait_reply(&fx, &a);
    assert_int_equal(a.result, CT_OK);
    assert_string_equal(a.task_name, TASK_NAME);
    const struct cts_request *req = cts_request_at(fx.srv, 1);
    assert_string_equal(req->method, "DELETE");
    assert_string_equal(req->target, "/v2/" TASK_NAME);
    assert_string_equal(cts_header(req, "Authorization"), "Bearer ya29.tok-1");
    assert_int_equal(req->body_len, 0);
    fx.gcp.script[0] = (struct scripted){404, "{\"error\":{\"code\":404,\"message\":\"The task no longer "
                                              "exists\",\"status\":\"NOT_FOUND\"}}"};
    fx.gcp.n_script = 1;
    assert_int_equal(cloud_tasks_delete(fx.ct, TASK_NAME, on_reply, &b), 0);
    wait_reply(&fx, &b);
    assert_int_equal(b.result, CT_NOT_FOUND);
    assert_int_equal(b.http_status, 404);
    assert_string_equal(b.task_name, TASK_NAME);
    assert_int_equal(fx.gcp.tokens_issued, 1); /* cached across calls */
    fixture_finish(&fx);
}

static bool server_holds_request(void *arg)
{
    return cts_pending(arg) > 0;
}

static void cloud_tasks_client_free__operations_outstanding__no_callbacks_and_clean_loop(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2000);
    fx.gcp.hang_tasks = true;
    struct cloud_task_spec spec = full_spec();
    struct got in_http = {0}, waiting_token = {0};
    assert_int_equal(cloud_tasks_create(fx.ct, &spec, on_reply, &in_http), 0);
    assert_true(cts_run_until(&fx.loop, server_holds_request, fx.srv, WAIT_MS));
    google_auth_invalidate(fx.auth); /* the next operation has to wait for a token */
    assert_int_equal(cloud_tasks_delete(fx.ct, TASK_NAME, on_reply, &waiting_token), 0);
    fixture_finish(&fx);
    assert_int_equal(in_http.calls, 0);
    assert_int_equal(waiting_token.calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cloud_tasks_build_create_body__full_spec__exact_json),
        cmocka_unit_test(cloud_tasks_build_create_body__no_oidc_custom_deadline_no_schedule__fields_omitted),
        cmocka_unit_test(cloud_tasks_build_create_body__invalid_specs__null),
        cmocka_unit_test(cloud_tasks_valid_task_name__shapes__checked),
        cmocka_unit_test(cloud_tasks_classify__table__matches_contract),
        cmocka_unit_test(cloud_tasks_create__2xx__ok_with_name_and_exact_request),
        cmocka_unit_test(cloud_tasks_create__409_already_exists__already_exists_with_requested_name),
        cmocka_unit_test(cloud_tasks_create__503_and_429__transient_without_retry),
        cmocka_unit_test(cloud_tasks_create__400_invalid_argument__permanent),
        cmocka_unit_test(cloud_tasks_create__401_once__token_refreshed_and_retried),
        cmocka_unit_test(cloud_tasks_create__401_twice__transient_after_single_retry),
        cmocka_unit_test(cloud_tasks_create__token_unavailable__transient_no_task_request),
        cmocka_unit_test(cloud_tasks_create__server_silent__transient_timeout),
        cmocka_unit_test(cloud_tasks_create__invalid_spec__rejected_without_callback),
        cmocka_unit_test(cloud_tasks_delete__2xx_then_404__ok_then_not_found),
        cmocka_unit_test(cloud_tasks_client_free__operations_outstanding__no_callbacks_and_clean_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
