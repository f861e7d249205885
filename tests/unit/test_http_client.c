/* Unit tests for shared/http/http_client against the loopback test server on the same loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/http/http_client.h"
#include "support/curl_test_server.h"

#define WAIT_MS 5000

struct fixture;

struct result {
    struct fixture *fx;
    int calls;
    long status;
    int transport_error;
    char error[256];
    char body[512];
    size_t body_len;
    char x_test[64];
    int order;                 /* completion order (1-based) */
};

struct fixture {
    uv_loop_t loop;
    struct logger log;
    struct cts_server *srv;
    struct http_client *http;
    int completions;
    int done_calls;
    int done_seen_completions; /* completions counted when done() ran */
    char url[256];
};

static void record(void *arg, const struct http_response *r)
{
    struct result *res = arg;
    res->calls++;
    res->status = r->status;
    res->transport_error = r->transport_error;
    snprintf(res->error, sizeof(res->error), "%s", r->error ? r->error : "");
    snprintf(res->body, sizeof(res->body), "%s", r->body);
    res->body_len = r->body_len;
    const char *xt = http_response_header(r, "x-TEST");
    snprintf(res->x_test, sizeof(res->x_test), "%s", xt ? xt : "");
    res->order = ++res->fx->completions;
}

static void fixture_start(struct fixture *fx, int max_concurrent, cts_handler_fn h, void *arg)
{
    memset(fx, 0, sizeof(*fx));
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    logger_init(&fx->log, LOG_LEVEL_ERROR, 2);
    fx->srv = cts_start(&fx->loop, h, arg);
    assert_non_null(fx->srv);
    fx->http = http_client_new(&fx->loop, &fx->log, max_concurrent);
    assert_non_null(fx->http);
}

static void on_closed(void *arg)
{
    struct fixture *fx = arg;
    fx->done_calls++;
    fx->done_seen_completions = fx->completions;
}

static void fixture_finish(struct fixture *fx)
{
    if (fx->http != NULL) http_client_close(fx->http, on_closed, fx);
    cts_close(fx->srv);
    assert_int_equal(cts_finish_loop(&fx->loop, WAIT_MS), 0);
    assert_int_equal(fx->done_calls, fx->http != NULL ? 1 : 0);
    logger_free(&fx->log);
}

struct counter {
    int *value;
    int want;
};

static bool reached(void *arg)
{
    struct counter *c = arg;
    return *c->value >= c->want;
}

static void wait_completions(struct fixture *fx, int n)
{
    struct counter c = {&fx->completions, n};
    assert_true(cts_run_until(&fx->loop, reached, &c, WAIT_MS));
}

/* "<server url><path>" in a per-fixture buffer (valid until the next call). */
static const char *url_for(struct fixture *fx, const char *path)
{
    snprintf(fx->url, sizeof(fx->url), "%s%s", cts_url(fx->srv), path);
    return fx->url;
}

struct server_wait {
    struct cts_server *srv;
    size_t pending;
};

static bool server_pending_reached(void *arg)
{
    struct server_wait *w = arg;
    return cts_pending(w->srv) >= w->pending;
}

/* ---- handlers ---- */

static void reply_echo(void *arg, const struct cts_request *req, struct cts_reply *rep)
{
    (void)arg;
    static char body[512];
    snprintf(body, sizeof(body), "{\"method\":\"%s\",\"target\":\"%s\",\"len\":%zu}", req->method,
             req->target, req->body_len);
    rep->status = 201;
    rep->body = body;
    rep->extra_headers = "X-Test: yes\r\n";
}

static void reply_slow(void *arg, const struct cts_request *req, struct cts_reply *rep)
{
    (void)arg;
    (void)req;
    rep->status = 200;
    rep->body = "{}";
    rep->delay_ms = 20;
}

static void reply_hang(void *arg, const struct cts_request *req, struct cts_reply *rep)
{
    (void)arg;
    (void)req;
    rep->hang = true;
}

static void reply_big(void *arg, const struct cts_request *req, struct cts_reply *rep)
{
    (void)arg;
    (void)req;
    static char body[301];
    memset(body, 'a', 300);
    body[300] = '\0';
    rep->body = body;
}

/* ---- tests ---- */

static void http_client_send__get__status_body_and_headers_delivered(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 4, reply_echo, NULL);
    struct result res = {.fx = &fx};
    struct http_header hdrs[] = {{"X-Custom", "one two"}};
    struct http_request req = {.method = "GET", .url = url_for(&fx, "/a/b?q=1"), .headers = hdrs,
                               .n_headers = 1, .timeout_ms = 2000};
    assert_int_equal(http_client_send(fx.http, &req, record, &res), 0);
    assert_int_equal(res.calls, 0); /* never synchronous */
    wait_completions(&fx, 1);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, 201);
    assert_int_equal(res.transport_error, 0);
    assert_string_equal(res.error, "");
    assert_string_equal(res.body, "{\"method\":\"GET\",\"target\":\"/a/b?q=1\",\"len\":0}");
    assert_string_equal(res.x_test, "yes");
    const struct cts_request *seen = cts_request_at(fx.srv, 0);
    assert_string_equal(cts_header(seen, "x-custom"), "one two");
    assert_null(cts_header(seen, "Expect"));
    fixture_finish(&fx);
}

static void http_client_send__post__request_copied_at_submit(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 4, reply_echo, NULL);
    struct result res = {.fx = &fx};
    char *url = strdup(url_for(&fx, "/post"));
    char *body = strdup("{\"k\":\"v\"}");
    char *hname = strdup("Content-Type");
    char *hval = strdup("application/json");
    struct http_header *hdrs = malloc(sizeof(*hdrs));
    hdrs[0] = (struct http_header){hname, hval};
    struct http_request req = {.method = "POST", .url = url, .headers = hdrs, .n_headers = 1,
                               .body = body, .body_len = strlen(body), .timeout_ms = 2000};
    assert_int_equal(http_client_send(fx.http, &req, record, &res), 0);
    memset(body, 'X', strlen(body));
    memset(url, 'X', strlen(url));
    free(body);
    free(url);
    free(hname);
    free(hval);
    free(hdrs);
    wait_completions(&fx, 1);
    assert_int_equal(res.status, 201);
    const struct cts_request *seen = cts_request_at(fx.srv, 0);
    assert_string_equal(seen->method, "POST");
    assert_string_equal(seen->target, "/post");
    assert_string_equal(seen->body, "{\"k\":\"v\"}");
    assert_string_equal(cts_header(seen, "Content-Type"), "application/json");
    assert_string_equal(cts_header(seen, "Content-Length"), "9");
    fixture_finish(&fx);
}

static void http_client_send__delete__method_without_body(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 4, reply_echo, NULL);
    struct result res = {.fx = &fx};
    struct http_request req = {.method = "DELETE", .url = url_for(&fx, "/v2/x"), .timeout_ms = 2000};
    assert_int_equal(http_client_send(fx.http, &req, record, &res), 0);
    wait_completions(&fx, 1);
    assert_int_equal(res.status, 201);
    assert_string_equal(cts_request_at(fx.srv, 0)->method, "DELETE");
    assert_int_equal(cts_request_at(fx.srv, 0)->body_len, 0);
    fixture_finish(&fx);
}

static void http_client_send__beyond_max_concurrent__all_complete_with_bounded_parallelism(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 3, reply_slow, NULL);
    struct result res[10];
    memset(res, 0, sizeof(res));
    for (int i = 0; i < 10; i++) res[i].fx = &fx;
    for (int i = 0; i < 10; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/r/%d", i);
        struct http_request req = {.method = "GET", .url = url_for(&fx, path), .timeout_ms = 4000};
        assert_int_equal(http_client_send(fx.http, &req, record, &res[i]), 0);
    }
    assert_int_equal(http_client_active_count(fx.http), 3);
    assert_int_equal(http_client_queued_count(fx.http), 7);
    wait_completions(&fx, 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].status, 200);
    }
    assert_int_equal(cts_count(fx.srv), 10);
    assert_int_equal(cts_max_pending(fx.srv), 3);
    /* FIFO: the queued requests start in submission order, after the first three */
    for (int i = 3; i < 10; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/r/%d", i);
        assert_string_equal(cts_request_at(fx.srv, (size_t)i)->target, path);
    }
    assert_int_equal(http_client_active_count(fx.http), 0);
    assert_int_equal(http_client_queued_count(fx.http), 0);
    fixture_finish(&fx);
}

struct chain {
    struct fixture *fx;
    int remaining;
    struct result res;
};

static void chain_next(void *arg, const struct http_response *r)
{
    struct chain *ch = arg;
    assert_int_equal(r->status, 200);
    ch->fx->completions++;
    if (--ch->remaining == 0) return;
    struct http_request req = {.method = "GET", .url = url_for(ch->fx, "/again"), .timeout_ms = 2000};
    assert_int_equal(http_client_send(ch->fx->http, &req, chain_next, ch), 0);
}

static void http_client_send__sequential_requests__reuse_one_connection(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2, NULL, NULL);
    struct chain ch = {.fx = &fx, .remaining = 5};
    struct http_request req = {.method = "GET", .url = url_for(&fx, "/first"), .timeout_ms = 2000};
    assert_int_equal(http_client_send(fx.http, &req, chain_next, &ch), 0);
    wait_completions(&fx, 5);
    assert_int_equal(cts_count(fx.srv), 5);
    assert_int_equal(cts_connections(fx.srv), 1);
    fixture_finish(&fx);
}

static void http_client_send__server_never_answers__times_out_as_transport_error(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2, reply_hang, NULL);
    struct result res = {.fx = &fx};
    struct http_request req = {.method = "GET", .url = url_for(&fx, "/slow"), .timeout_ms = 150};
    assert_int_equal(http_client_send(fx.http, &req, record, &res), 0);
    wait_completions(&fx, 1);
    assert_int_equal(res.transport_error, CURLE_OPERATION_TIMEDOUT);
    assert_int_equal(res.status, 0);
    assert_true(strlen(res.error) > 0);
    fixture_finish(&fx);
}

static void http_client_send__queued_past_its_timeout__fails_without_waiting_for_a_slot(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 1, reply_hang, NULL);
    struct result blocker = {.fx = &fx}, queued = {.fx = &fx};
    struct http_request r1 = {.method = "GET", .url = url_for(&fx, "/block"), .timeout_ms = 4000};
    assert_int_equal(http_client_send(fx.http, &r1, record, &blocker), 0);
    struct http_request r2 = {.method = "GET", .url = url_for(&fx, "/queued"), .timeout_ms = 100};
    assert_int_equal(http_client_send(fx.http, &r2, record, &queued), 0);
    wait_completions(&fx, 1);
    assert_int_equal(queued.calls, 1);
    assert_int_equal(queued.transport_error, CURLE_OPERATION_TIMEDOUT);
    assert_int_equal(blocker.calls, 0);
    assert_int_equal(cts_count(fx.srv), 1);
    fixture_finish(&fx);
    assert_int_equal(blocker.calls, 1);
    assert_int_equal(blocker.transport_error, CURLE_ABORTED_BY_CALLBACK);
}

static void http_client_send__connection_refused__transport_error_status_zero(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2, NULL, NULL);
    struct result res = {.fx = &fx};
    struct http_request req = {.method = "GET", .url = "http://127.0.0.1:1/", .timeout_ms = 2000};
    assert_int_equal(http_client_send(fx.http, &req, record, &res), 0);
    wait_completions(&fx, 1);
    assert_int_equal(res.transport_error, CURLE_COULDNT_CONNECT);
    assert_int_equal(res.status, 0);
    fixture_finish(&fx);
}

static void http_client_send__body_over_cap__write_error(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2, reply_big, NULL);
    http_client_set_max_response_bytes(fx.http, 299);
    struct result res = {.fx = &fx};
    struct http_request req = {.method = "GET", .url = url_for(&fx, "/big"), .timeout_ms = 2000};
    assert_int_equal(http_client_send(fx.http, &req, record, &res), 0);
    wait_completions(&fx, 1);
    assert_int_equal(res.transport_error, CURLE_WRITE_ERROR);
    assert_int_equal(res.status, 0);
    assert_string_equal(res.error, "response body too large");
    http_client_set_max_response_bytes(fx.http, 300);
    struct result ok = {.fx = &fx};
    assert_int_equal(http_client_send(fx.http, &req, record, &ok), 0);
    wait_completions(&fx, 2);
    assert_int_equal(ok.status, 200);
    assert_int_equal(ok.body_len, 300);
    fixture_finish(&fx);
}

static void http_client_send__request_cap_below_client_cap__request_cap_wins(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2, reply_big, NULL);
    struct result capped = {.fx = &fx}, at_cap = {.fx = &fx}, above_client = {.fx = &fx};
    struct http_request req = {.method = "GET", .url = url_for(&fx, "/big"), .timeout_ms = 2000,
                               .max_response_bytes = 299};
    assert_int_equal(http_client_send(fx.http, &req, record, &capped), 0);
    wait_completions(&fx, 1);
    assert_int_equal(capped.transport_error, CURLE_WRITE_ERROR);
    assert_string_equal(capped.error, "response body too large");
    req.max_response_bytes = 300;
    assert_int_equal(http_client_send(fx.http, &req, record, &at_cap), 0);
    wait_completions(&fx, 2);
    assert_int_equal(at_cap.status, 200);
    /* A request cannot raise the client's cap. */
    http_client_set_max_response_bytes(fx.http, 299);
    req.max_response_bytes = 100000;
    assert_int_equal(http_client_send(fx.http, &req, record, &above_client), 0);
    wait_completions(&fx, 3);
    assert_int_equal(above_client.transport_error, CURLE_WRITE_ERROR);
    fixture_finish(&fx);
}

static void http_client_send__invalid_requests__rejected_without_callback(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2, NULL, NULL);
    struct result res = {.fx = &fx};
    struct http_header crlf[] = {{"X-Evil", "a\r\nInjected: 1"}};
    struct http_header badname[] = {{"Bad Name", "v"}};
    struct http_request reqs[] = {
        {.method = "GET", .url = NULL},
        {.method = "G ET", .url = url_for(&fx, "/")},
        {.method = NULL, .url = url_for(&fx, "/")},
        {.method = "GET", .url = url_for(&fx, "/"), .headers = crlf, .n_headers = 1},
        {.method = "GET", .url = url_for(&fx, "/"), .headers = badname, .n_headers = 1},
        {.method = "POST", .url = url_for(&fx, "/"), .body = NULL, .body_len = 3},
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++)
        assert_int_equal(http_client_send(fx.http, &reqs[i], record, &res), -1);
    assert_int_equal(http_client_send(fx.http, &reqs[0], NULL, &res), -1);
    struct counter one = {&fx.completions, 1};
    assert_false(cts_run_until(&fx.loop, reached, &one, 50));
    assert_int_equal(cts_count(fx.srv), 0);
    fixture_finish(&fx);
    assert_int_equal(res.calls, 0);
}

static void http_client_close__in_flight_and_queued__aborted_callbacks_then_done(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 2, reply_hang, NULL);
    struct result res[3];
    memset(res, 0, sizeof(res));
    for (int i = 0; i < 3; i++) res[i].fx = &fx;
    for (int i = 0; i < 3; i++) {
        struct http_request req = {.method = "POST", .url = url_for(&fx, "/hang"), .body = "x",
                                   .body_len = 1, .timeout_ms = 4000};
        assert_int_equal(http_client_send(fx.http, &req, record, &res[i]), 0);
    }
    /* wait until the server holds the two active requests (the third is queued) */
    struct server_wait two = {fx.srv, 2};
    assert_true(cts_run_until(&fx.loop, server_pending_reached, &two, WAIT_MS));
    assert_int_equal(fx.completions, 0);
    assert_int_equal(http_client_queued_count(fx.http), 1);
    http_client_close(fx.http, on_closed, &fx);
    assert_int_equal(fx.completions, 0); /* callbacks come from the loop */
    struct result after = {.fx = &fx};
    struct http_request req = {.method = "GET", .url = url_for(&fx, "/late"), .timeout_ms = 100};
    assert_int_equal(http_client_send(fx.http, &req, record, &after), -1);
    struct counter done = {&fx.done_calls, 1};
    assert_true(cts_run_until(&fx.loop, reached, &done, WAIT_MS));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].transport_error, CURLE_ABORTED_BY_CALLBACK);
        assert_int_equal(res[i].status, 0);
    }
    assert_int_equal(fx.done_seen_completions, 3); /* done() after every callback */
    assert_int_equal(after.calls, 0);
    fx.http = NULL;
    cts_close(fx.srv);
    assert_int_equal(cts_finish_loop(&fx.loop, WAIT_MS), 0);
    logger_free(&fx.log);
}

struct closer {
    struct fixture *fx;
    struct result res;
};

static void close_from_callback(void *arg, const struct http_response *r)
{
    struct closer *cl = arg;
    cl->res.calls++;
    cl->res.status = r->status;
    cl->fx->completions++;
    http_client_close(cl->fx->http, on_closed, cl->fx);
}

static void route_fast_or_hang(void *arg, const struct cts_request *req, struct cts_reply *rep)
{
    (void)arg;
    if (strcmp(req->target, "/fast") == 0) rep->status = 200;
    else rep->hang = true;
}

static void http_client_close__called_inside_a_callback__others_aborted_safely(void **state)
{
    (void)state;
    struct fixture fx;
    fixture_start(&fx, 4, route_fast_or_hang, NULL);
    struct closer cl = {.fx = &fx, .res = {.fx = &fx}};
    struct result other = {.fx = &fx};
    struct http_request hang = {.method = "GET", .url = url_for(&fx, "/hang"), .timeout_ms = 4000};
    assert_int_equal(http_client_send(fx.http, &hang, record, &other), 0);
    struct http_request fast = {.method = "GET", .url = url_for(&fx, "/fast"), .timeout_ms = 4000};
    assert_int_equal(http_client_send(fx.http, &fast, close_from_callback, &cl), 0);
    struct counter done = {&fx.done_calls, 1};
    assert_true(cts_run_until(&fx.loop, reached, &done, WAIT_MS));
    assert_int_equal(cl.res.calls, 1);
    assert_int_equal(cl.res.status, 200);
    assert_int_equal(other.calls, 1);
    assert_int_equal(other.transport_error, CURLE_ABORTED_BY_CALLBACK);
    fx.http = NULL;
    cts_close(fx.srv);
    assert_int_equal(cts_finish_loop(&fx.loop, WAIT_MS), 0);
    logger_free(&fx.log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(http_client_send__get__status_body_and_headers_delivered),
        cmocka_unit_test(http_client_send__post__request_copied_at_submit),
        cmocka_unit_test(http_client_send__delete__method_without_body),
        cmocka_unit_test(http_client_send__beyond_max_concurrent__all_complete_with_bounded_parallelism),
        cmocka_unit_test(http_client_send__sequential_requests__reuse_one_connection),
        cmocka_unit_test(http_client_send__server_never_answers__times_out_as_transport_error),
        cmocka_unit_test(http_client_send__queued_past_its_timeout__fails_without_waiting_for_a_slot),
        cmocka_unit_test(http_client_send__connection_refused__transport_error_status_zero),
        cmocka_unit_test(http_client_send__body_over_cap__write_error),
        cmocka_unit_test(http_client_send__request_cap_below_client_cap__request_cap_wins),
        cmocka_unit_test(http_client_send__invalid_requests__rejected_without_callback),
        cmocka_unit_test(http_client_close__in_flight_and_queued__aborted_callbacks_then_done),
        cmocka_unit_test(http_client_close__called_inside_a_callback__others_aborted_safely),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
