/* Unit tests for shared/clients/voice_agent_client: exact body and headers, classification,
 * the agent's error text redacted (it may echo the token), reload, no retries, shutdown —
 * against the loopback server as the voice agent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/clients/voice_agent_client.h"
#include "support/curl_test_server.h"
#include "support/secret_pieces.h"

#define WAIT_MS 5000
#define TOKEN "va-secret-token-123"

static struct voice_call_request sample_request(void)
{
    return (struct voice_call_request){
        .tenant_id = "11111111-1111-1111-1111-111111111111",
        .booking_id = "22222222-2222-2222-2222-222222222222",
        .lead_id = "lead-7",
        .assigned_user_id = "user-9",
        .scheduled_at_iso = "2026-11-28T16:00:00.000Z",
        .idempotency_key = "followup:11111111-1111-1111-1111-111111111111:"
                           "22222222-2222-2222-2222-222222222222:2026-11-28T16:00:00.000Z",
        .booking_type = "followup",
        .request_id = "req-abc",
        .traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    };
}

static void voice_agent_build_body__all_fields__exact_camel_case_json(void **state)
{
    (void)state;
    struct voice_call_request r = sample_request();
    char *body = voice_agent_build_body(&r);
    assert_string_equal(body,
                        "{\"tenantId\":\"11111111-1111-1111-1111-111111111111\","
                        "\"bookingId\":\"22222222-2222-2222-2222-222222222222\",\"leadId\":\"lead-7\","
                        "\"assignedUserId\":\"user-9\",\"scheduledAt\":\"2026-11-28T16:00:00.000Z\","
                        "\"idempotencyKey\":\"followup:11111111-1111-1111-1111-111111111111:"
                        "22222222-2222-2222-2222-222222222222:2026-11-28T16:00:00.000Z\","
                        "\"bookingType\":\"followup\",\"source\":\"followupd\"}");
    free(body);
}

static void voice_agent_build_body__no_assigned_user__json_null(void **state)
{
    (void)state;
    struct voice_call_request r = sample_request();
    r.assigned_user_id = NULL;
    r.tenant_id = "t\"1";
    char *body = voice_agent_build_body(&r);
    assert_non_null(strstr(body, "\"assignedUserId\":null,"));
    assert_non_null(strstr(body, "\"tenantId\":\"t\\\"1\""));
    free(body);
}

static void voice_agent_build_body__missing_or_unsafe_fields__null(void **state)
{
    (void)state;
    for (int i = 0; i < 10; i++) {
        struct voice_call_request r = sample_request();
        switch (i) {
        case 0: r.tenant_id = NULL; break;
        case 1: r.booking_id = ""; break;
        case 2: r.lead_id = NULL; break;
        case 3: r.scheduled_at_iso = NULL; break;
        case 4: r.idempotency_key = NULL; break;
        case 5: r.booking_type = NULL; break;
        case 6: r.idempotency_key = "k\r\nX-Evil: 1"; break;
        case 7: r.request_id = "r\n"; break;
        case 8: r.lead_id = "\xff\xfe"; break; /* not UTF-8 */
        case 9: r.traceparent = "00-x\r\nX-Evil: 1"; break;
        }
        char *body = voice_agent_build_body(&r);
        if (body != NULL) fail_msg("case %d accepted: %s", i, body);
    }
}

static void voice_agent_classify__table__matches_contract(void **state)
{
    (void)state;
    assert_int_equal(voice_agent_classify(200, 0), VA_OK);
    assert_int_equal(voice_agent_classify(201, 0), VA_OK);
    assert_int_equal(voice_agent_classify(202, 0), VA_OK);
    assert_int_equal(voice_agent_classify(408, 0), VA_TRANSIENT);
    assert_int_equal(voice_agent_classify(409, 0), VA_TRANSIENT);
    assert_int_equal(voice_agent_classify(429, 0), VA_TRANSIENT);
    assert_int_equal(voice_agent_classify(500, 0), VA_TRANSIENT);
    assert_int_equal(voice_agent_classify(503, 0), VA_TRANSIENT);
    assert_int_equal(voice_agent_classify(0, CURLE_OPERATION_TIMEDOUT), VA_TRANSIENT);
    assert_int_equal(voice_agent_classify(0, CURLE_COULDNT_CONNECT), VA_TRANSIENT);
    assert_int_equal(voice_agent_classify(400, 0), VA_PERMANENT);
    assert_int_equal(voice_agent_classify(401, 0), VA_PERMANENT);
    assert_int_equal(voice_agent_classify(403, 0), VA_PERMANENT);
    assert_int_equal(voice_agent_classify(404, 0), VA_PERMANENT);
    assert_int_equal(voice_agent_classify(422, 0), VA_PERMANENT);
    assert_int_equal(voice_agent_classify(302, 0), VA_PERMANENT);
}

/* ---- async ---- */

struct fake_agent {
    int status;
    const char *body;
    bool hang;
};

static void fake_agent_handler(void *arg, const struct cts_request *req, struct cts_reply *rep)
{
    (void)req;
    struct fake_agent *a = arg;
    rep->status = a->status ? a->status : 200;
    rep->body = a->body ? a->body : "{\"callId\":\"call-42\",\"status\":\"queued\"}";
    rep->hang = a->hang;
}

struct fixture {
    uv_loop_t loop;
    struct logger log;
    char log_path[64];
    struct cts_server *srv;
    struct http_client *http;
    struct voice_agent_client *va;
    struct fake_agent agent;
    char base[128];
    int http_closed;
};

struct got {
    int calls;
    enum va_result result;
    long http_status;
    char error[256];
    char call_id[64];
    bool had_call_id;
};

static void on_reply(void *arg, const struct va_reply *r)
{
    struct got *g = arg;
    g->calls++;
    g->result = r->result;
    g->http_status = r->http_status;
    snprintf(g->error, sizeof(g->error), "%s", r->error ? r->error : "");
    g->had_call_id = r->call_id != NULL;
    snprintf(g->call_id, sizeof(g->call_id), "%s", r->call_id ? r->call_id : "");
}

static void fixture_start(struct fixture *fx, const char *token, long timeout_ms)
{
    memset(fx, 0, sizeof(*fx));
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    snprintf(fx->log_path, sizeof(fx->log_path), "/tmp/followupd-va-log-XXXXXX");
    int fd = mkstemp(fx->log_path);
    assert_true(fd >= 0);
    logger_init(&fx->log, LOG_LEVEL_DEBUG, fd);
    fx->srv = cts_start(&fx->loop, fake_agent_handler, &fx->agent);
    fx->http = http_client_new(&fx->loop, &fx->log, 4);
    snprintf(fx->base, sizeof(fx->base), "%s/", cts_url(fx->srv)); /* trailing slash is tolerated */
    struct voice_agent_opts opts = {.base_url = fx->base, .token = token, .timeout_ms = timeout_ms};
    fx->va = voice_agent_client_new(fx->http, &fx->log, &opts);
    assert_non_null(fx->va);
}

static void on_http_closed(void *arg)
{
    ((struct fixture *)arg)->http_closed++;
}

/* Returns the log text (caller frees). */
static char *fixture_finish(struct fixture *fx)
{
    voice_agent_client_free(fx->va);
    http_client_close(fx->http, on_http_closed, fx);
    cts_close(fx->srv);
    assert_int_equal(cts_finish_loop(&fx->loop, WAIT_MS), 0);
    assert_int_equal(fx->http_closed, 1);
    char *text = calloc(1, 1 << 16);
    assert_int_equal(lseek(fx->log.fd, 0, SEEK_SET), 0);
    assert_true(read(fx->log.fd, text, (1 << 16) - 1) >= 0);
    close(fx->log.fd);
    unlink(fx->log_path);
    logger_free(&fx->log);
    return text;
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

static void voice_agent_start_call__2xx__ok_with_exact_headers_body_and_call_id(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, TOKEN, 2000);
    struct voice_call_request r = sample_request();
    struct got g = {0};
    assert_int_equal(voice_agent_start_call(fx.va, &r, on_reply, &g), 0);
    assert_int_equal(g.calls, 0);
    wait_reply(&fx, &g);
    assert_int_equal(g.result, VA_OK);
    assert_int_equal(g.http_status, 200);
    assert_string_equal(g.call_id, "call-42");
    assert_string_equal(g.error, "");
    const struct cts_request *req = cts_request_at(fx.srv, 0);
    assert_string_equal(req->method, "POST");
    assert_string_equal(req->target, "/api/voice-agent/calls/start-call");
    assert_string_equal(cts_header(req, "Content-Type"), "application/json");
    assert_string_equal(cts_header(req, "X-Tenant-Id"), r.tenant_id);
    assert_string_equal(cts_header(req, "Authorization"), "Bearer " TOKEN);
    assert_string_equal(cts_header(req, "Idempotency-Key"), r.idempotency_key);
    assert_string_equal(cts_header(req, "X-Request-Id"), "req-abc");
    assert_string_equal(cts_header(req, "traceparent"), r.traceparent);
    char *want = voice_agent_build_body(&r);
    assert_string_equal(req->body, want);
    free(want);
    char *log = fixture_finish(&fx);
    assert_non_null(strstr(log, "voice agent start-call finished"));
    assert_non_null(strstr(log, "\"request_id\":\"req-abc\""));
    assert_null(strstr(log, TOKEN));
    free(log);
}

static void voice_agent_start_call__no_token_no_request_id__headers_omitted(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, NULL, 2000);
    fx.agent.status = 201;
    fx.agent.body = "{\"data\":{\"callId\":\"nested-1\"}}";
    struct voice_call_request r = sample_request();
    r.request_id = NULL;
    r.traceparent = NULL;
    struct got g = {0};
    assert_int_equal(voice_agent_start_call(fx.va, &r, on_reply, &g), 0);
    wait_reply(&fx, &g);
    assert_int_equal(g.result, VA_OK);
    assert_string_equal(g.call_id, "nested-1");
    const struct cts_request *req = cts_request_at(fx.srv, 0);
    assert_null(cts_header(req, "Authorization"));
    assert_null(cts_header(req, "X-Request-Id"));
    assert_null(cts_header(req, "traceparent"));
    free(fixture_finish(&fx));
}

static void voice_agent_start_call__2xx_without_call_id__ok_call_id_null(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, TOKEN, 2000);
    fx.agent.status = 202;
    fx.agent.body = "";
    struct voice_call_request r = sample_request();
    struct got g = {0};
    assert_int_equal(voice_agent_start_call(fx.va, &r, on_reply, &g), 0);
    wait_reply(&fx, &g);
    assert_int_equal(g.result, VA_OK);
    assert_false(g.had_call_id);
    free(fixture_finish(&fx));
}

static void voice_agent_start_call__409_and_503__transient_without_retry(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, TOKEN, 2000);
    fx.agent.status = 409;
    fx.agent.body = "{\"message\":\"call already in progress\"}";
    struct voice_call_request r = sample_request();
    struct got a = {0}, b = {0};
    assert_int_equal(voice_agent_start_call(fx.va, &r, on_reply, &a), 0);
    wait_reply(&fx, &a);
    assert_int_equal(a.result, VA_TRANSIENT);
    assert_string_equal(a.error, "HTTP 409: call already in progress");
    fx.agent.status = 503;
    fx.agent.body = "oops";
    assert_int_equal(voice_agent_start_call(fx.va, &r, on_reply, &b), 0);
    wait_reply(&fx, &b);
    assert_int_equal(b.result, VA_TRANSIENT);
    assert_int_equal(b.http_status, 503);
    assert_string_equal(b.error, "HTTP 503");
    assert_int_equal(cts_count(fx.srv), 2); /* one request each: no retries */
    free(fixture_finish(&fx));
}

static void voice_agent_start_call__400__permanent(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, TOKEN, 2000);
    fx.agent.status = 400;
    fx.agent.body = "{\"error\":{\"message\":\"leadId unknown\"}}";
    struct voice_call_request r = sample_request();
    struct got g = {0};
    assert_int_equal(voice_agent_start_call(fx.va, &r, on_reply, &g), 0);
    wait_reply(&fx, &g);
    assert_int_equal(g.result, VA_PERMANENT);
    assert_int_equal(g.http_status, 400);
    assert_string_equal(g.error, "HTTP 400: leadId unknown");
    assert_false(g.had_call_id);
    free(fixture_finish(&fx));
}

static void voice_agent_start_call__401_echoing_the_token__error_and_log_redacted(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, TOKEN, 2000);
    log_add_secret(&fx.log, TOKEN); /* as the config load does */
    fx.agent.status = 401;
    fx.agent.body = "{\"message\":\"rejected Bearer " TOKEN " from https://u:pw@caller\"}";
    struct voice_call_request r = sample_request();
    struct got g = {0};
    assert_int_equal(voice_agent_start_call(fx.va, &r, on_reply, &g), 0);
    wait_reply(&fx, &g);
    assert_int_equal(g.result, VA_PERMANENT);
    assert_string_equal(g.error, "HTTP 401: rejected Bearer [REDACTED] from https://[REDACTED]@caller");
    char *log = fixture_finish(&fx);
    assert_no_secret_piece(log, TOKEN, "log");
    assert_null(strstr(log, "pw@"));
    free(log);
}

static void voice_agent_start_call__agent_silent__transient_timeout(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, TOKEN, 150);
    fx.agent.hang = true;
    struct voice_call_request r = sample_request();
    struct got g = {0};
    assert_int_equal(voice_agent_start_call(fx.va, &r, on_reply, &g), 0);
    wait_reply(&fx, &g);
    assert_int_equal(g.result, VA_TRANSIENT);
    assert_int_equal(g.http_status, 0);
    assert_non_null(strstr(g.error, "transport: "));
    free(fixture_finish(&fx));
}

static void voice_agent_set_opts__new_url_and_token__used_by_next_call(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, TOKEN, 2000);
    char prefixed[160];
    snprintf(prefixed, sizeof(prefixed), "%s/tenant-gw", cts_url(fx.srv));
    struct voice_agent_opts next = {.base_url = prefixed, .token = "rotated-token-456"};
    assert_int_equal(voice_agent_set_opts(fx.va, &next), 0);
    struct voice_agent_opts bad = {.base_url = "ftp://nope", .token = "x"};
    assert_int_equal(voice_agent_set_opts(fx.va, &bad), -1); /* old (valid) options stay */
    struct voice_call_request r = sample_request();
    struct got g = {0};
    assert_int_equal(voice_agent_start_call(fx.va, &r, on_reply, &g), 0);
    wait_reply(&fx, &g);
    const struct cts_request *req = cts_request_at(fx.srv, 0);
    assert_string_equal(req->target, "/tenant-gw/api/voice-agent/calls/start-call");
    assert_string_equal(cts_header(req, "Authorization"), "Bearer rotated-token-456");
    free(fixture_finish(&fx));
}

static void voice_agent_start_call__invalid_request__rejected_without_callback(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, TOKEN, 2000);
    struct voice_call_request r = sample_request();
    r.tenant_id = NULL;
    struct got g = {0};
    assert_int_equal(voice_agent_start_call(fx.va, &r, on_reply, &g), -1);
    assert_int_equal(voice_agent_start_call(fx.va, NULL, on_reply, &g), -1);
    free(fixture_finish(&fx));
    assert_int_equal(g.calls, 0);
}

static bool server_holds_request(void *arg)
{
    return cts_pending(arg) > 0;
}

static void voice_agent_client_free__call_in_flight__no_callback_and_clean_loop(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, TOKEN, 2000);
    fx.agent.hang = true;
    struct voice_call_request r = sample_request();
    struct got g = {0};
    assert_int_equal(voice_agent_start_call(fx.va, &r, on_reply, &g), 0);
    assert_true(cts_run_until(&fx.loop, server_holds_request, fx.srv, WAIT_MS));
    free(fixture_finish(&fx));
    assert_int_equal(g.calls, 0);
}

static void voice_agent_client_new__invalid_options__null(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct http_client *http = http_client_new(&loop, NULL, 1);
    struct voice_agent_opts bad[] = {
        {.base_url = NULL}, {.base_url = "localhost:8080"}, {.base_url = "http://h/x?y=1"},
        {.base_url = "http://h", .token = "a\nb"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_null(voice_agent_client_new(http, NULL, &bad[i]));
    assert_null(voice_agent_client_new(http, NULL, NULL));
    http_client_close(http, NULL, NULL);
    assert_int_equal(cts_finish_loop(&loop, WAIT_MS), 0);
}

/* 1994-11-06T08:49:37Z */
#define SUN_06_NOV_1994_MS 784111777000LL

static void voice_agent_retry_after_s__seconds_date_bounds_and_statuses__contract(void **state)
{
    (void)state;
    int64_t now = SUN_06_NOV_1994_MS;
    assert_int_equal(voice_agent_retry_after_s(429, "30", now), 30);
    assert_int_equal(voice_agent_retry_after_s(503, " 7 ", now), 7);
    assert_int_equal(voice_agent_retry_after_s(503, "0", now), 1);                  /* at least 1 s */
    assert_int_equal(voice_agent_retry_after_s(429, "999999999999", now), VOICE_AGENT_RETRY_AFTER_MAX_S);
    assert_int_equal(voice_agent_retry_after_s(429, "Sun, 06 Nov 1994 08:51:37 GMT", now), 120);
    assert_int_equal(voice_agent_retry_after_s(429, "Sun, 06 Nov 1994 08:49:36 GMT", now), 1);   /* past */
    assert_int_equal(voice_agent_retry_after_s(429, "Sun, 06 Nov 1995 08:49:37 GMT", now),
                     VOICE_AGENT_RETRY_AFTER_MAX_S);
    static const char *const bad[] = {"", "-5", "1.5", "30s", "soon", "Sunday, 06-Nov-94 08:49:37 GMT",
                                      "Sun Nov  6 08:49:37 1994", "Sun, 06 Nov 1994 08:49:37 UTC"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) assert_int_equal(voice_agent_retry_after_s(429, bad[i], now), 0);
    assert_int_equal(voice_agent_retry_after_s(429, NULL, now), 0);
    assert_int_equal(voice_agent_retry_after_s(500, "30", now), 0);   /* only 429 and 503 */
    assert_int_equal(voice_agent_retry_after_s(200, "30", now), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(voice_agent_retry_after_s__seconds_date_bounds_and_statuses__contract),
        cmocka_unit_test(voice_agent_build_body__all_fields__exact_camel_case_json),
        cmocka_unit_test(voice_agent_build_body__no_assigned_user__json_null),
        cmocka_unit_test(voice_agent_build_body__missing_or_unsafe_fields__null),
        cmocka_unit_test(voice_agent_classify__table__matches_contract),
        cmocka_unit_test(voice_agent_start_call__2xx__ok_with_exact_headers_body_and_call_id),
        cmocka_unit_test(voice_agent_start_call__no_token_no_request_id__headers_omitted),
        cmocka_unit_test(voice_agent_start_call__2xx_without_call_id__ok_call_id_null),
        cmocka_unit_test(voice_agent_start_call__409_and_503__transient_without_retry),
        cmocka_unit_test(voice_agent_start_call__400__permanent),
        cmocka_unit_test(voice_agent_start_call__401_echoing_the_token__error_and_log_redacted),
        cmocka_unit_test(voice_agent_start_call__agent_silent__transient_timeout),
        cmocka_unit_test(voice_agent_set_opts__new_url_and_token__used_by_next_call),
        cmocka_unit_test(voice_agent_start_call__invalid_request__rejected_without_callback),
        cmocka_unit_test(voice_agent_client_free__call_in_flight__no_callback_and_clean_loop),
        cmocka_unit_test(voice_agent_client_new__invalid_options__null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
