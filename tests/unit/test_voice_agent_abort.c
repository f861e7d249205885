/* Unit tests for voice_agent_client_abort() (the shutdown drain deadline): in-flight calls complete at once as
 * transient failures, exactly once, and their HTTP requests end later without a second callback or a leak. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/clients/voice_agent_client.h"
#include "support/curl_test_server.h"

#define WAIT_MS 5000

static void hanging_agent(void *arg, const struct cts_request *req, struct cts_reply *rep)
{
    (void)arg;
    (void)req;
    rep->status = 200;
    rep->body = "{\"callId\":\"call-1\"}";
    rep->hang = true;
}

struct got {
    int calls;
    enum va_result result;
    long http_status;
    char error[128];
};

static void on_reply(void *arg, const struct va_reply *r)
{
    struct got *g = arg;
    g->calls++;
    g->result = r->result;
    g->http_status = r->http_status;
    snprintf(g->error, sizeof(g->error), "%s", r->error != NULL ? r->error : "");
}

static bool server_holds(void *arg)
{
    return cts_pending(arg) >= 2;
}

static struct voice_call_request request(const char *booking_id)
{
    return (struct voice_call_request){
        .tenant_id = "11111111-1111-1111-1111-111111111111", .booking_id = booking_id, .lead_id = "lead-1",
        .scheduled_at_iso = "2026-11-28T16:00:00.000Z", .idempotency_key = booking_id, .booking_type = "follow_up"};
}

static void voice_agent_client_abort__two_calls_in_flight__each_completed_once_as_transient(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct cts_server *srv = cts_start(&loop, hanging_agent, NULL);
    struct http_client *http = http_client_new(&loop, NULL, 4);
    struct voice_agent_opts opts = {.base_url = cts_url(srv), .timeout_ms = 10000};
    struct voice_agent_client *va = voice_agent_client_new(http, NULL, &opts);
    assert_non_null(va);
    struct got a = {0}, b = {0};
    struct voice_call_request ra = request("22222222-2222-2222-2222-222222222222");
    struct voice_call_request rb = request("33333333-3333-3333-3333-333333333333");
    assert_int_equal(voice_agent_start_call(va, &ra, on_reply, &a), 0);
    assert_int_equal(voice_agent_start_call(va, &rb, on_reply, &b), 0);
    assert_true(cts_run_until(&loop, server_holds, srv, WAIT_MS));
    assert_int_equal(a.calls + b.calls, 0);

    voice_agent_client_abort(va, "shutting down");
    for (struct got *g = &a; g != NULL; g = g == &a ? &b : NULL) {
        assert_int_equal(g->calls, 1);
        assert_int_equal(g->result, VA_TRANSIENT);
        assert_int_equal(g->http_status, 0);
        assert_string_equal(g->error, "aborted: shutting down");
    }
    voice_agent_client_abort(va, "again");   /* nothing left in flight */
    assert_int_equal(a.calls + b.calls, 2);

    /* The client stays usable; the aborted HTTP requests end at close without calling back again. */
    voice_agent_client_free(va);
    http_client_close(http, NULL, NULL);
    cts_close(srv);
    assert_int_equal(cts_finish_loop(&loop, WAIT_MS), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
}

static void voice_agent_client_abort__null_or_idle__no_effect(void **state)
{
    (void)state;
    voice_agent_client_abort(NULL, "x");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct http_client *http = http_client_new(&loop, NULL, 1);
    struct voice_agent_opts opts = {.base_url = "http://127.0.0.1:9"};
    struct voice_agent_client *va = voice_agent_client_new(http, NULL, &opts);
    voice_agent_client_abort(va, NULL);
    voice_agent_client_free(va);
    http_client_close(http, NULL, NULL);
    assert_int_equal(cts_finish_loop(&loop, WAIT_MS), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(voice_agent_client_abort__two_calls_in_flight__each_completed_once_as_transient),
        cmocka_unit_test(voice_agent_client_abort__null_or_idle__no_effect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
