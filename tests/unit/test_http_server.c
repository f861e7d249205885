/*
 * Tests for shared/http/http_server over real sockets on 127.0.0.1.
 *
 * The server runs on its own uv loop in a background thread (support/
 * httpd_harness); each test talks to it with blocking sockets from the cmocka
 * thread (support/httpd_client).  Synchronisation is by events only: responses
 * and EOF are awaited with poll() deadlines, server-side conditions with
 * httpd_harness_wait() (a predicate re-checked every loop iteration).  The only
 * deliberate pacing is the slow client of the header-timeout test.  Every test's
 * teardown closes the server and requires uv_loop_close() == 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/http/http_server.h"
#include "support/httpd_client.h"
#include "support/httpd_harness.h"

#define READ_MS 3000u

/* ------------------------------------------------------------------------ */
/* The application under test: a handful of handlers and an authenticator.   */

struct test_app {
    uv_loop_t *loop;
    atomic_int handler_calls;
    atomic_int auth_calls;
    struct http_exchange *held; /* loop thread only (or after the loop stopped) */
};

/* One-shot timer carrying an exchange (async handler or async authenticator). */
struct delayed {
    uv_timer_t timer;
    struct http_exchange *ex;
    http_auth_done done;
    int ok;
};

static void delayed_free_cb(uv_handle_t *h)
{
    free(h->data);
}

static void start_delayed(uv_loop_t *loop, struct delayed *d, uv_timer_cb cb, uint64_t ms)
{
    d->timer.data = d;
    uv_timer_init(loop, &d->timer);
    uv_timer_start(&d->timer, cb, ms, 0);
}

static void respond_json(struct http_exchange *ex, int status, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    http_exchange_respond(ex, status, s, NULL, 0);
    free(s);
    json_decref(obj);
}

static void h_hello(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    http_exchange_respond(ex, 200, "{\"hello\":\"world\"}", NULL, 0);
}

static void h_item(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    respond_json(ex, 200, json_pack("{s:s?}", "id", http_exchange_param(ex, "id")));
}

static void h_delete(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    http_exchange_respond(ex, 200, "{\"deleted\":true}", NULL, 0);
}

static void h_echo(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    size_t len = 0;
    const char *body = http_exchange_body(ex, &len);
    unsigned long sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += (unsigned char)body[i];
    json_t *o = json_pack("{s:I,s:I}", "len", (json_int_t)len, "sum", (json_int_t)sum);
    if (len <= 512) json_object_set_new(o, "body", json_stringn(body, len));
    respond_json(ex, 200, o);
}

static void h_headers(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    respond_json(ex, 200,
                 json_pack("{s:s?,s:I,s:s,s:s,s:s,s:s}", "x", http_exchange_header(ex, "x-test"), "count",
                           (json_int_t)http_exchange_header_count(ex, "X-Test"), "rid", http_exchange_request_id(ex),
                           "query", http_exchange_query(ex), "path", http_exchange_path(ex), "method",
                           http_exchange_method(ex)));
}

static void h_task(struct http_exchange *ex, void *ctx)
{
    struct test_app *app = ctx;
    atomic_fetch_add(&app->handler_calls, 1);
    respond_json(ex, 200, json_pack("{s:s?}", "ran", http_exchange_param(ex, "id")));
}

static void async_fire_cb(uv_timer_t *t)
{
    struct delayed *d = t->data;
    http_exchange_respond(d->ex, 200, "{\"async\":true}", NULL, 0);
    uv_close((uv_handle_t *)t, delayed_free_cb);
}

static void h_async(struct http_exchange *ex, void *ctx)
{
    struct test_app *app = ctx;
    struct delayed *d = calloc(1, sizeof(*d));
    d->ex = ex;
    start_delayed(app->loop, d, async_fire_cb, 20);
}

static void h_hold(struct http_exchange *ex, void *ctx)
{
    struct test_app *app = ctx;
    app->held = ex;
}

static void h_extra(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    const struct http_header_kv extra[] = {
        {"Cache-Control", "no-store"}, {"Content-Length", "999"}, {"X-Bad", "a\r\nInjected: 1"}, {"Bad Name", "v"}};
    http_exchange_respond(ex, 201, "{\"created\":true}", extra, 4);
}

static void auth_fire_cb(uv_timer_t *t)
{
    struct delayed *d = t->data;
    d->done(d->ex, d->ok, d->ok ? NULL : "bad token");
    uv_close((uv_handle_t *)t, delayed_free_cb);
}

/* "Bearer sync-good": approve synchronously; "Bearer good": approve from a timer;
 * anything else: reject from a timer. */
static void test_authenticate(void *auth_ctx, struct http_exchange *ex, http_auth_done done)
{
    struct test_app *app = auth_ctx;
    atomic_fetch_add(&app->auth_calls, 1);
    const char *a = http_exchange_header(ex, "Authorization");
    if (a != NULL && strcmp(a, "Bearer sync-good") == 0) {
        done(ex, 1, NULL);
        return;
    }
    struct delayed *d = calloc(1, sizeof(*d));
    d->ex = ex;
    d->done = done;
    d->ok = a != NULL && strcmp(a, "Bearer good") == 0;
    start_delayed(app->loop, d, auth_fire_cb, 0);
}

static const struct http_route routes[] = {
    {"GET", "/hello", h_hello, HTTP_AUTH_NONE},         {"GET", "/items/:id", h_item, HTTP_AUTH_NONE},
    {"DELETE", "/items/:id", h_delete, HTTP_AUTH_NONE}, {"POST", "/echo", h_echo, HTTP_AUTH_NONE_WITH_BODY},
    {"GET", "/headers", h_headers, HTTP_AUTH_NONE},     {"POST", "/task/:id", h_task, HTTP_AUTH_TASK},
    {"GET", "/async", h_async, HTTP_AUTH_NONE},         {"GET", "/hold", h_hold, HTTP_AUTH_NONE},
    {"GET", "/extra", h_extra, HTTP_AUTH_NONE},
};

/* ------------------------------------------------------------------------ */
/* Fixture                                                                   */

struct fx {
    struct httpd_harness h;
    struct test_app app;
    int started;
};

static struct http_limits default_limits(void)
{
    return (struct http_limits){.max_header_bytes = 1024,
                                .max_body_bytes = 4096,
                                .header_timeout_ms = 2000,
                                .body_timeout_ms = 2000,
                                .idle_timeout_ms = 5000,
                                .max_connections = 16};
}

static int fx_setup(void **state)
{
    *state = calloc(1, sizeof(struct fx));
    return *state != NULL ? 0 : -1;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;
    int rc = 0;
    if (fx->started) rc = httpd_harness_stop(&fx->h);
    if (fx->app.held != NULL) http_exchange_respond(fx->app.held, 500, NULL, NULL, 0); /* frees it */
    free(fx);
    if (rc != 0) print_error("server did not close cleanly: uv_loop_close/stop returned %d\n", rc);
    return rc == 0 ? 0 : -1;
}

static struct fx *fx_start(void **state, const struct http_limits *limits)
{
    struct fx *fx = *state;
    struct http_server_opts o = {.listen = "127.0.0.1:0",
                                 .limits = limits != NULL ? *limits : default_limits(),
                                 .routes = routes,
                                 .n_routes = sizeof(routes) / sizeof(routes[0]),
                                 .app_ctx = &fx->app,
                                 .authenticate = test_authenticate,
                                 .auth_ctx = &fx->app};
    fx->app.loop = &fx->h.loop;
    assert_int_equal(httpd_harness_start(&fx->h, &o), 0);
    fx->started = 1;
    return fx;
}

static void connect_client(struct fx *fx, struct httpd_client *c)
{
    assert_int_equal(httpd_client_connect(c, fx->h.port), 0);
}

static void read_ok(struct httpd_client *c, struct httpd_response *r, int status)
{
    assert_int_equal(httpd_client_read_response(c, r, READ_MS), 0);
    assert_int_equal(r->status, status);
}

static void roundtrip(struct fx *fx, const char *request, struct httpd_response *r, int status)
{
    struct httpd_client c;
    connect_client(fx, &c);
    assert_int_equal(httpd_client_send_str(&c, request), 0);
    read_ok(&c, r, status);
    httpd_client_close(&c);
}

static void assert_header(const struct httpd_response *r, const char *name, const char *want)
{
    char v[256];
    const char *got = httpd_response_header(r, name, v, sizeof(v));
    if (want == NULL) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
}

/* Send raw bytes; expect `status` with its JSON error, Connection: close, then EOF. */
static void expect_rejected(struct fx *fx, const char *raw, size_t len, int status, const char *error)
{
    struct httpd_client c;
    struct httpd_response r;
    connect_client(fx, &c);
    assert_int_equal(httpd_client_send(&c, raw, len), 0);
    read_ok(&c, &r, status);
    assert_header(&r, "Connection", "close");
    assert_header(&r, "Content-Type", "application/json");
    char want[96];
    snprintf(want, sizeof(want), "{\"error\":\"%s\"}", error);
    assert_string_equal(r.body, want);
    assert_int_equal(httpd_client_wait_eof(&c, READ_MS), 1);
    httpd_client_close(&c);
}

#define EXPECT_REJECTED(fx, lit, status, error) expect_rejected((fx), (lit), sizeof(lit) - 1, (status), (error))

static void fetch_held(struct httpd_harness *h, void *out)
{
    struct fx *fx = (struct fx *)((char *)h - offsetof(struct fx, h));
    *(struct http_exchange **)out = fx->app.held;
}

static int pred_held(struct httpd_harness *h, void *arg)
{
    struct http_exchange *ex = NULL;
    (void)arg;
    fetch_held(h, &ex);
    return ex != NULL;
}

static int pred_held_cancelled(struct httpd_harness *h, void *arg)
{
    struct http_exchange *ex = NULL;
    (void)arg;
    fetch_held(h, &ex);
    return ex != NULL && http_exchange_is_cancelled(ex);
}

static void respond_held(struct httpd_harness *h, void *arg)
{
    struct fx *fx = (struct fx *)((char *)h - offsetof(struct fx, h));
    (void)arg;
    http_exchange_respond(fx->app.held, 200, "{\"held\":true}", NULL, 0);
    fx->app.held = NULL;
}

static void read_counts(struct httpd_harness *h, void *arg)
{
    size_t *out = arg;
    out[0] = http_server_connection_count(h->srv);
    out[1] = http_server_active_exchanges(h->srv);
}

static void stop_accepting(struct httpd_harness *h, void *arg)
{
    (void)arg;
    http_server_stop_accepting(h->srv);
}

/* ------------------------------------------------------------------------ */
/* Routing                                                                   */

static void server__get_route__200_json_with_framing_headers(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    roundtrip(fx, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", &r, 200);
    assert_string_equal(r.body, "{\"hello\":\"world\"}");
    assert_header(&r, "Content-Type", "application/json");
    assert_header(&r, "Content-Length", "17");
    assert_header(&r, "Connection", NULL);
    char rid[80];
    assert_non_null(httpd_response_header(&r, "X-Request-Id", rid, sizeof(rid)));
    assert_int_equal(strlen(rid), 16);
    assert_int_equal(strspn(rid, "0123456789abcdef"), 16);
}

static void server__unknown_path__404_not_found(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    roundtrip(fx, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", &r, 404);
    assert_string_equal(r.body, "{\"error\":\"not_found\"}");
    assert_header(&r, "Content-Type", "application/json");
}

static void server__known_path_wrong_method__405_with_allow(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    roundtrip(fx, "PATCH /items/7 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", &r, 405);
    assert_string_equal(r.body, "{\"error\":\"method_not_allowed\"}");
    assert_header(&r, "Allow", "GET, DELETE");
    roundtrip(fx, "POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}", &r, 405);
    assert_header(&r, "Allow", "GET");
}

static void server__route_params__decoded_and_passed_to_handler(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    roundtrip(fx, "GET /items/abc%20d?x=1 HTTP/1.1\r\nHost: t\r\n\r\n", &r, 200);
    assert_string_equal(r.body, "{\"id\":\"abc d\"}");
    roundtrip(fx, "DELETE /items/9 HTTP/1.1\r\nHost: t\r\n\r\n", &r, 200);
    assert_string_equal(r.body, "{\"deleted\":true}");
}

static void server__headers_and_query__exposed_case_insensitively(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    roundtrip(fx, "GET /headers?a=1&b=2 HTTP/1.1\r\nHost: t\r\nX-TEST: one  \r\nx-test: two\r\n\r\n", &r, 200);
    json_t *o = json_loads(r.body, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "x")), "one"); /* trailing OWS trimmed */
    assert_int_equal(json_integer_value(json_object_get(o, "count")), 2);
    assert_string_equal(json_string_value(json_object_get(o, "query")), "a=1&b=2");
    assert_string_equal(json_string_value(json_object_get(o, "path")), "/headers");
    assert_string_equal(json_string_value(json_object_get(o, "method")), "GET");
    json_decref(o);
    roundtrip(fx, "GET /headers HTTP/1.1\r\nHost: t\r\nX-Test:\r\n\r\n", &r, 200);
    o = json_loads(r.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "x")), "");
    assert_string_equal(json_string_value(json_object_get(o, "query")), "");
    json_decref(o);
}

static void server__extra_headers__valid_kept_reserved_and_invalid_dropped(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    roundtrip(fx, "GET /extra HTTP/1.1\r\nHost: t\r\n\r\n", &r, 201);
    assert_header(&r, "Cache-Control", "no-store");
    assert_header(&r, "Content-Length", "16");
    assert_header(&r, "Injected", NULL);
    assert_header(&r, "X-Bad", NULL);
    assert_string_equal(r.body, "{\"created\":true}");
}

static void server__request_id__sane_echoed_insane_replaced(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    char rid[100];
    roundtrip(fx, "GET /headers HTTP/1.1\r\nHost: t\r\nX-Request-Id: abc-123.DEF_9\r\n\r\n", &r, 200);
    assert_header(&r, "X-Request-Id", "abc-123.DEF_9");
    assert_non_null(strstr(r.body, "\"rid\":\"abc-123.DEF_9\""));
    roundtrip(fx, "GET /headers HTTP/1.1\r\nHost: t\r\nX-Request-Id: bad id!\r\n\r\n", &r, 200);
    assert_non_null(httpd_response_header(&r, "X-Request-Id", rid, sizeof(rid)));
    assert_int_equal(strlen(rid), 16);
    assert_int_equal(strspn(rid, "0123456789abcdef"), 16);
    char req[256];
    snprintf(req, sizeof(req), "GET /headers HTTP/1.1\r\nHost: t\r\nX-Request-Id: %065d\r\n\r\n", 0);
    roundtrip(fx, req, &r, 200);
    assert_non_null(httpd_response_header(&r, "X-Request-Id", rid, sizeof(rid)));
    assert_int_equal(strlen(rid), 16);
}

/* ------------------------------------------------------------------------ */
/* Connection management                                                     */

static void server__keep_alive__two_requests_on_one_connection(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_client c;
    struct httpd_response r;
    size_t counts[2];
    connect_client(fx, &c);
    assert_int_equal(httpd_client_send_str(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    read_ok(&c, &r, 200);
    assert_int_equal(httpd_client_send_str(&c, "GET /items/2 HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    read_ok(&c, &r, 200);
    assert_string_equal(r.body, "{\"id\":\"2\"}");
    assert_int_equal(httpd_harness_call(&fx->h, read_counts, counts), 0);
    assert_int_equal(counts[0], 1);
    assert_int_equal(httpd_client_readable(&c, 0), 0); /* still open */
    httpd_client_close(&c);
}

static void server__pipelined_requests__answered_in_order(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_client c;
    struct httpd_response r;
    connect_client(fx, &c);
    /* The first answer comes from a timer, the others at once: order must hold anyway. */
    assert_int_equal(httpd_client_send_str(&c, "GET /async HTTP/1.1\r\nHost: t\r\n\r\n"
                                               "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                                               "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"),
                     0);
    read_ok(&c, &r, 200);
    assert_string_equal(r.body, "{\"async\":true}");
    read_ok(&c, &r, 200);
    assert_non_null(strstr(r.body, "\"body\":\"abc\""));
    read_ok(&c, &r, 200);
    assert_string_equal(r.body, "{\"hello\":\"world\"}");
    httpd_client_close(&c);
}

static void server__many_pipelined_requests__buffer_backpressure_keeps_order(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_client c;
    struct httpd_response r;
    enum { N = 600 }; /* ~24 KB of requests: more than the server's input buffer */
    static char reqs[N * 48];
    size_t len = 0;
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(reqs + len, sizeof(reqs) - len, "GET /items/%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    assert_true(len > 16384);
    connect_client(fx, &c);
    assert_int_equal(httpd_client_send(&c, reqs, len), 0);
    for (int i = 0; i < N; i++) {
        char want[32];
        read_ok(&c, &r, 200);
        snprintf(want, sizeof(want), "{\"id\":\"%d\"}", i);
        assert_string_equal(r.body, want);
    }
    httpd_client_close(&c);
}

static void server__http10_request__answered_then_closed(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_client c;
    struct httpd_response r;
    connect_client(fx, &c);
    assert_int_equal(httpd_client_send_str(&c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
    read_ok(&c, &r, 200);
    assert_header(&r, "Connection", "close");
    assert_int_equal(httpd_client_wait_eof(&c, READ_MS), 1);
    httpd_client_close(&c);
}

static void server__connection_close_request__answered_then_closed(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_client c;
    struct httpd_response r;
    connect_client(fx, &c);
    /* The pipelined second request after Connection: close must be ignored. */
    assert_int_equal(httpd_client_send_str(&c, "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                                               "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"),
                     0);
    read_ok(&c, &r, 200);
    assert_header(&r, "Connection", "close");
    assert_int_equal(httpd_client_wait_eof(&c, READ_MS), 1);
    httpd_client_close(&c);
}

static void server__idle_keep_alive__closed_after_idle_timeout(void **state)
{
    struct http_limits lim = default_limits();
    lim.idle_timeout_ms = 150;
    struct fx *fx = fx_start(state, &lim);
    struct httpd_client c;
    struct httpd_response r;
    connect_client(fx, &c);
    assert_int_equal(httpd_client_send_str(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    read_ok(&c, &r, 200);
    unsigned long long t0 = httpd_now_ms();
    assert_int_equal(httpd_client_wait_eof(&c, READ_MS), 1); /* silent close: no bytes */
    assert_true(httpd_now_ms() - t0 >= 100);
    httpd_client_close(&c);
}

static void server__silent_connection__closed_after_header_timeout_without_response(void **state)
{
    struct http_limits lim = default_limits();
    lim.header_timeout_ms = 150;
    struct fx *fx = fx_start(state, &lim);
    struct httpd_client c;
    connect_client(fx, &c);
    assert_int_equal(httpd_client_wait_eof(&c, READ_MS), 1);
    httpd_client_close(&c);
}

static void server__max_connections__excess_refused_then_served_after_others_leave(void **state)
{
    struct http_limits lim = default_limits();
    lim.max_connections = 4;
    struct fx *fx = fx_start(state, &lim);
    struct httpd_client c[4], extra, later;
    struct httpd_response r;
    for (int i = 0; i < 4; i++) {
        connect_client(fx, &c[i]);
        assert_int_equal(httpd_client_send_str(&c[i], "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
        read_ok(&c[i], &r, 200); /* accepted and served: the slot is taken */
    }
    connect_client(fx, &extra); /* the kernel completes the handshake; the server refuses */
    read_ok(&extra, &r, 503);
    assert_string_equal(r.body, "{\"error\":\"service_unavailable\"}");
    assert_int_equal(httpd_client_wait_eof(&extra, READ_MS), 1);
    httpd_client_close(&extra);

    size_t three = 3;
    httpd_client_close(&c[0]);
    assert_int_equal(httpd_harness_wait(&fx->h, httpd_pred_connections_eq, &three, READ_MS), 0);
    connect_client(fx, &later);
    assert_int_equal(httpd_client_send_str(&later, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    read_ok(&later, &r, 200);
    assert_int_equal(httpd_client_send_str(&c[1], "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    read_ok(&c[1], &r, 200);
    httpd_client_close(&later);
    for (int i = 1; i < 4; i++)
        httpd_client_close(&c[i]);
}

/* ------------------------------------------------------------------------ */
/* Limits and timeouts                                                       */

/* "GET /hello ... X-Pad: xxx\r\n\r\n" with a header section of exactly `total` bytes. */
static char *request_with_header_bytes(size_t total)
{
    static const char prefix[] = "GET /hello HTTP/1.1\r\nHost: t\r\nX-Pad: ";
    size_t pad = total - (sizeof(prefix) - 1) - 4;
    char *req = malloc(total + 1);
    memcpy(req, prefix, sizeof(prefix) - 1);
    memset(req + sizeof(prefix) - 1, 'p', pad);
    memcpy(req + sizeof(prefix) - 1 + pad, "\r\n\r\n", 5);
    assert_int_equal(strlen(req), total);
    return req;
}

static void server__header_section_exactly_at_limit__200(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    char *req = request_with_header_bytes(1024);
    roundtrip(fx, req, &r, 200);
    free(req);
}

static void server__header_section_one_byte_over_limit__431_and_close(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    char *req = request_with_header_bytes(1025);
    expect_rejected(fx, req, strlen(req), 431, "request_header_fields_too_large");
    free(req);
}

/* Pieces of 7 bytes: the count must hold across reads and parser callbacks. */
static void send_in_pieces(struct fx *fx, const char *req, struct httpd_response *r, int status)
{
    struct httpd_client c;
    connect_client(fx, &c);
    size_t len = strlen(req);
    for (size_t off = 0; off < len; off += 7)
        assert_int_equal(httpd_client_send(&c, req + off, len - off < 7 ? len - off : 7), 0);
    read_ok(&c, r, status);
    httpd_client_close(&c);
}

static void server__header_bytes_sent_in_pieces__limit_still_exact(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    char *ok = request_with_header_bytes(1024);
    char *over = request_with_header_bytes(1025);
    send_in_pieces(fx, ok, &r, 200);
    send_in_pieces(fx, over, &r, 431);
    free(ok);
    free(over);
}

static void server__too_many_header_lines__431(void **state)
{
    struct http_limits lim = default_limits();
    lim.max_header_bytes = 8192;
    struct fx *fx = fx_start(state, &lim);
    char req[8192];
    size_t len = (size_t)snprintf(req, sizeof(req), "GET /hello HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < 120; i++)
        len += (size_t)snprintf(req + len, sizeof(req) - len, "X-%d: v\r\n", i);
    len += (size_t)snprintf(req + len, sizeof(req) - len, "\r\n");
    expect_rejected(fx, req, len, 431, "request_header_fields_too_large");
}

static char *post_echo(size_t body_len, const char *extra_headers)
{
    char head[256];
    int hl = snprintf(head, sizeof(head), "POST /echo HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n",
                      extra_headers, body_len);
    char *req = malloc((size_t)hl + body_len + 1);
    memcpy(req, head, (size_t)hl);
    memset(req + hl, 'a', body_len);
    req[(size_t)hl + body_len] = '\0';
    return req;
}

static void server__body_exactly_at_limit__200(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    char *req = post_echo(4096, "");
    roundtrip(fx, req, &r, 200);
    assert_non_null(strstr(r.body, "\"len\":4096"));
    assert_non_null(strstr(r.body, "\"sum\":397312")); /* 4096 * 'a' */
    free(req);
}

static void server__body_one_byte_over_limit__413_and_close(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    char *req = post_echo(4097, "");
    expect_rejected(fx, req, strlen(req), 413, "payload_too_large");
    free(req);
}

static void server__chunked_body__assembled_for_handler(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    roundtrip(fx,
              "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
              "3\r\nabc\r\n5;ext=1\r\ndefgh\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
              &r, 200);
    assert_non_null(strstr(r.body, "\"body\":\"abcdefgh0123456789\""));
    assert_non_null(strstr(r.body, "\"len\":18"));
}

static void server__chunked_body_over_limit__413_and_close(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    char req[8192];
    size_t len = (size_t)snprintf(req, sizeof(req),
                                  "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n");
    memset(req + len, 'b', 4096);
    len += 4096;
    len += (size_t)snprintf(req + len, sizeof(req) - len, "\r\n1\r\nb\r\n0\r\n\r\n");
    expect_rejected(fx, req, len, 413, "payload_too_large");
}

static void server__slow_headers__408_and_close_while_other_client_served(void **state)
{
    struct http_limits lim = default_limits();
    lim.header_timeout_ms = 200;
    struct fx *fx = fx_start(state, &lim);
    struct httpd_client slow, fast;
    struct httpd_response r;
    unsigned long long t0 = httpd_now_ms();
    connect_client(fx, &slow);
    assert_int_equal(httpd_client_send_str(&slow, "GET /hello HTTP/1.1\r\nHo"), 0);

    connect_client(fx, &fast);
    assert_int_equal(httpd_client_send_str(&fast, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    read_ok(&fast, &r, 200);
    assert_int_equal(httpd_client_readable(&slow, 0), 0); /* the slow one is still waiting */

    /* Drip one byte per 50 ms: the deadline is for the whole header section. */
    while (!httpd_client_readable(&slow, 50) && httpd_now_ms() - t0 < READ_MS)
        (void)httpd_client_send_str(&slow, "s");
    read_ok(&slow, &r, 408);
    assert_true(httpd_now_ms() - t0 >= 150);
    assert_string_equal(r.body, "{\"error\":\"request_timeout\"}");
    assert_header(&r, "Connection", "close");
    assert_int_equal(httpd_client_wait_eof(&slow, READ_MS), 1);
    httpd_client_close(&slow);

    assert_int_equal(httpd_client_send_str(&fast, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    read_ok(&fast, &r, 200);
    httpd_client_close(&fast);
}

static void server__partial_request_after_keep_alive__header_timeout_408(void **state)
{
    struct http_limits lim = default_limits();
    lim.header_timeout_ms = 200; /* idle stays at 5 s: the header deadline must take over */
    struct fx *fx = fx_start(state, &lim);
    struct httpd_client c;
    struct httpd_response r;
    connect_client(fx, &c);
    assert_int_equal(httpd_client_send_str(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    read_ok(&c, &r, 200);
    unsigned long long t0 = httpd_now_ms();
    assert_int_equal(httpd_client_send_str(&c, "GET /hello HTTP/1.1\r\nHo"), 0);
    read_ok(&c, &r, 408);
    assert_true(httpd_now_ms() - t0 >= 150);
    assert_int_equal(httpd_client_wait_eof(&c, READ_MS), 1);
    httpd_client_close(&c);
}

static void server__slow_body__408_and_close(void **state)
{
    struct http_limits lim = default_limits();
    lim.body_timeout_ms = 200;
    struct fx *fx = fx_start(state, &lim);
    struct httpd_client c;
    struct httpd_response r;
    unsigned long long t0 = httpd_now_ms();
    connect_client(fx, &c);
    assert_int_equal(httpd_client_send_str(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc"), 0);
    read_ok(&c, &r, 408);
    assert_true(httpd_now_ms() - t0 >= 150);
    assert_int_equal(httpd_client_wait_eof(&c, READ_MS), 1);
    httpd_client_close(&c);
}

static void server__expect_continue__100_then_final_response(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_client c;
    struct httpd_response r;
    connect_client(fx, &c);
    assert_int_equal(httpd_client_send_str(
                         &c, "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
                     0);
    read_ok(&c, &r, 100);
    assert_int_equal(httpd_client_send_str(&c, "hello"), 0);
    read_ok(&c, &r, 200);
    assert_non_null(strstr(r.body, "\"body\":\"hello\""));
    httpd_client_close(&c);
}

static void server__expect_continue_over_body_limit__413_without_100(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    EXPECT_REJECTED(fx, "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n", 413,
                    "payload_too_large");
}

static void server__unknown_expectation__417(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    EXPECT_REJECTED(fx, "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\nx", 417,
                    "expectation_failed");
}

/* ------------------------------------------------------------------------ */
/* Malformed and smuggling-shaped requests                                   */

static void server__content_length_with_transfer_encoding__400(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    EXPECT_REJECTED(fx,
                    "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "0\r\n\r\n",
                    400, "bad_request");
}

static void server__duplicate_content_length__400(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    EXPECT_REJECTED(fx, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400,
                    "bad_request");
}

static void server__obs_fold_header__400(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    EXPECT_REJECTED(fx, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Test: a\r\n b\r\n\r\n", 400, "bad_request");
    EXPECT_REJECTED(fx, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Test: a\r\n\tb\r\n\r\n", 400, "bad_request");
}

static void server__bad_chunk_size__400(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    EXPECT_REJECTED(fx, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
                    400, "bad_request");
    EXPECT_REJECTED(fx, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
                    400, "bad_request");
}

static void server__nul_byte_in_header__400(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    EXPECT_REJECTED(fx, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Test: a\0b\r\n\r\n", 400, "bad_request");
    EXPECT_REJECTED(fx, "GET /hello HTTP/1.1\r\nHost: t\r\nX-T\0est: ab\r\n\r\n", 400, "bad_request");
}

static void server__space_before_colon__400(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    EXPECT_REJECTED(fx, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Test : v\r\n\r\n", 400, "bad_request");
    EXPECT_REJECTED(fx, "GET /hello HTTP/1.1\r\nHost: t\r\nX(Test): v\r\n\r\n", 400, "bad_request");
}

static void server__missing_or_duplicate_host__400(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    EXPECT_REJECTED(fx, "GET /hello HTTP/1.1\r\n\r\n", 400, "bad_request");
    EXPECT_REJECTED(fx, "GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad_request");
}

static void server__odd_request_targets_and_lines__400(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    EXPECT_REJECTED(fx, "GET http://t/hello HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request");
    EXPECT_REJECTED(fx, "GET /hel#lo HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request");
    EXPECT_REJECTED(fx, "GET  /hello HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request");
    EXPECT_REJECTED(fx, "GET /hello\r\n\r\n", 400, "bad_request");
    EXPECT_REJECTED(fx, "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad_request");
}

static void server__transfer_coding_other_than_chunked__rejected(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    EXPECT_REJECTED(fx, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501,
                    "not_implemented");
    EXPECT_REJECTED(fx, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc", 501, "not_implemented");
    struct httpd_response r;
    roundtrip(fx, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n", &r, 200);
    assert_non_null(strstr(r.body, "\"body\":\"z\""));
}

static void server__unsupported_http_version__505(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    EXPECT_REJECTED(fx, "GET /hello HTTP/2.0\r\nHost: t\r\n\r\n", 505, "http_version_not_supported");
}

/* ------------------------------------------------------------------------ */
/* Async exchanges, authentication, lifecycle                                */

static void server__async_handler__responds_from_timer(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    roundtrip(fx, "GET /async HTTP/1.1\r\nHost: t\r\n\r\n", &r, 200);
    assert_string_equal(r.body, "{\"async\":true}");
}

static void server__client_gone_before_async_response__cancelled_and_freed(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_client c;
    struct httpd_response r;
    size_t zero = 0, counts[2];
    connect_client(fx, &c);
    assert_int_equal(httpd_client_send_str(&c, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(httpd_harness_wait(&fx->h, pred_held, NULL, READ_MS), 0);
    assert_int_equal(httpd_harness_call(&fx->h, read_counts, counts), 0);
    assert_int_equal(counts[1], 1); /* one exchange in flight */
    httpd_client_close(&c);
    assert_int_equal(httpd_harness_wait(&fx->h, pred_held_cancelled, NULL, READ_MS), 0);
    assert_int_equal(httpd_harness_wait(&fx->h, httpd_pred_connections_eq, &zero, READ_MS), 0);
    assert_int_equal(httpd_harness_call(&fx->h, respond_held, NULL), 0); /* just frees it */
    assert_int_equal(httpd_harness_wait(&fx->h, httpd_pred_active_eq, &zero, READ_MS), 0);
    roundtrip(fx, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", &r, 200);
    char *log = httpd_harness_log(&fx->h);
    assert_non_null(strstr(log, "\"client_gone\":\"true\""));
    free(log);
}

static void server__authenticator_rejects__401_and_handler_not_called(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    roundtrip(fx,
              "POST /task/77 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer sekrit-token-4711\r\n"
              "Content-Length: 2\r\n\r\n{}",
              &r, 401);
    assert_string_equal(r.body, "{\"error\":\"unauthorized\"}");
    assert_header(&r, "WWW-Authenticate", "Bearer");
    assert_int_equal(atomic_load(&fx->app.auth_calls), 1);
    assert_int_equal(atomic_load(&fx->app.handler_calls), 0);
    roundtrip(fx, "POST /task/77 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", &r, 401);
    assert_int_equal(atomic_load(&fx->app.handler_calls), 0);
    char *log = httpd_harness_log(&fx->h);
    assert_null(strstr(log, "sekrit-token-4711"));
    assert_non_null(strstr(log, "\"reason\":\"bad token\""));
    free(log);
}

static void server__authenticator_approves__handler_runs(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    roundtrip(fx, "POST /task/5 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer good\r\nContent-Length: 0\r\n\r\n", &r,
              200);
    assert_string_equal(r.body, "{\"ran\":\"5\"}");
    roundtrip(fx, "POST /task/6 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer sync-good\r\nContent-Length: 0\r\n\r\n",
              &r, 200);
    assert_string_equal(r.body, "{\"ran\":\"6\"}");
    assert_int_equal(atomic_load(&fx->app.handler_calls), 2);
    assert_int_equal(atomic_load(&fx->app.auth_calls), 2);
}

static void server__unauthenticated_route__authenticator_not_called(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    roundtrip(fx, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", &r, 200);
    assert_int_equal(atomic_load(&fx->app.auth_calls), 0);
}

static void server__access_log__one_line_per_request_with_fields(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_response r;
    roundtrip(fx, "GET /items/3?token=hide-me HTTP/1.1\r\nHost: t\r\nX-Request-Id: rid-1\r\n\r\n", &r, 200);
    roundtrip(fx, "GET /nope HTTP/1.1\r\nHost: t\r\nX-Request-Id: rid-2\r\n\r\n", &r, 404);
    char *log = httpd_harness_log(&fx->h);
    size_t lines = 0;
    for (const char *p = log; (p = strstr(p, "\"msg\":\"http request\"")) != NULL; p++)
        lines++;
    assert_int_equal(lines, 2);
    const char *l1 = strstr(log, "\"request_id\":\"rid-1\"");
    assert_non_null(l1);
    const char *eol = strchr(l1, '\n');
    const char *start = l1;
    while (start > log && start[-1] != '\n')
        start--;
    char line[1024];
    size_t n = (size_t)((eol != NULL ? eol : l1 + strlen(l1)) - start);
    assert_true(n < sizeof(line));
    memcpy(line, start, n);
    line[n] = '\0';
    assert_non_null(strstr(line, "\"level\":\"info\""));
    assert_non_null(strstr(line, "\"method\":\"GET\""));
    assert_non_null(strstr(line, "\"path\":\"/items/3\""));
    assert_non_null(strstr(line, "\"status\":\"200\""));
    assert_non_null(strstr(line, "\"duration_ms\":\""));
    assert_null(strstr(log, "hide-me")); /* query strings are not logged */
    assert_non_null(strstr(log, "\"status\":\"404\""));
    free(log);
}

static void server__stop_accepting__in_flight_request_finishes_with_close(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_client idle, busy, refused;
    struct httpd_response r;
    size_t two = 2, zero = 0, counts[2];
    connect_client(fx, &idle);
    connect_client(fx, &busy);
    assert_int_equal(httpd_client_send_str(&busy, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(httpd_harness_wait(&fx->h, pred_held, NULL, READ_MS), 0);
    assert_int_equal(httpd_harness_wait(&fx->h, httpd_pred_connections_eq, &two, READ_MS), 0);

    assert_int_equal(httpd_harness_call(&fx->h, stop_accepting, NULL), 0);
    assert_int_equal(httpd_client_wait_eof(&idle, READ_MS), 1); /* idle keep-alive closed */
    assert_int_equal(httpd_client_connect(&refused, fx->h.port), -1);
    assert_int_equal(errno, ECONNREFUSED);
    assert_int_equal(httpd_harness_call(&fx->h, read_counts, counts), 0);
    assert_int_equal(counts[1], 1);

    assert_int_equal(httpd_harness_call(&fx->h, respond_held, NULL), 0);
    read_ok(&busy, &r, 200);
    assert_header(&r, "Connection", "close");
    assert_int_equal(httpd_client_wait_eof(&busy, READ_MS), 1);
    assert_int_equal(httpd_harness_wait(&fx->h, httpd_pred_active_eq, &zero, READ_MS), 0);
    httpd_client_close(&idle);
    httpd_client_close(&busy);
}

static void server__close_with_open_connections_and_held_exchange__loop_closes(void **state)
{
    struct fx *fx = fx_start(state, NULL);
    struct httpd_client a, b;
    connect_client(fx, &a);
    connect_client(fx, &b);
    assert_int_equal(httpd_client_send_str(&a, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(httpd_client_send_str(&b, "GET /hel"), 0); /* half a request */
    assert_int_equal(httpd_harness_wait(&fx->h, pred_held, NULL, READ_MS), 0);
    fx->started = 0;
    assert_int_equal(httpd_harness_stop(&fx->h), 0); /* uv_loop_close() == 0 */
    assert_non_null(fx->app.held);
    assert_true(http_exchange_is_cancelled(fx->app.held));
    http_exchange_respond(fx->app.held, 200, "{}", NULL, 0); /* server gone: only frees */
    fx->app.held = NULL;
    assert_int_equal(httpd_client_wait_eof(&a, READ_MS), 1);
    assert_int_equal(httpd_client_wait_eof(&b, READ_MS), 1);
    httpd_client_close(&a);
    httpd_client_close(&b);
}

/* ------------------------------------------------------------------------ */
/* Construction and listening (no harness)                                   */

static void count_done(void *arg)
{
    (*(int *)arg)++;
}

static void listen__bad_addresses__error_and_clean_close(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "nonsense", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:", "[::1", "::1:80", "localhost:80", "127.0.0.1:8x", ""};
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct http_server_opts o = {.listen = bad[i], .routes = routes, .n_routes = 1};
        struct http_server *srv = http_server_new(&loop, NULL, &o);
        assert_non_null(srv);
        char err[256] = "";
        assert_int_equal(http_server_listen(srv, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "listen"));
        assert_int_equal(http_server_port(srv), -1);
        int done = 0;
        http_server_close(srv, count_done, &done);
        assert_int_equal(done, 0); /* never synchronously */
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(done, 1);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void listen__port_zero_and_any_interface__real_port(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct http_server_opts o = {.listen = ":0", .routes = routes, .n_routes = 1};
    struct http_server *srv = http_server_new(&loop, NULL, &o);
    char err[256];
    assert_int_equal(http_server_listen(srv, err, sizeof(err)), 0);
    assert_true(http_server_port(srv) > 0);
    assert_int_equal(http_server_listen(srv, err, sizeof(err)), -1); /* once only */
    int done = 0;
    http_server_close(srv, count_done, &done);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(done, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void new__task_routes_without_authenticator__null(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct http_server_opts o = {.listen = ":0", .routes = routes, .n_routes = sizeof(routes) / sizeof(routes[0])};
    assert_null(http_server_new(&loop, NULL, &o));
    static const struct http_route broken[] = {{"GET", "no-slash", h_hello, HTTP_AUTH_NONE}};
    o.routes = broken;
    o.n_routes = 1;
    assert_null(http_server_new(&loop, NULL, &o));
    assert_int_equal(uv_loop_close(&loop), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(server__get_route__200_json_with_framing_headers),
        T(server__unknown_path__404_not_found),
        T(server__known_path_wrong_method__405_with_allow),
        T(server__route_params__decoded_and_passed_to_handler),
        T(server__headers_and_query__exposed_case_insensitively),
        T(server__extra_headers__valid_kept_reserved_and_invalid_dropped),
        T(server__request_id__sane_echoed_insane_replaced),
        T(server__keep_alive__two_requests_on_one_connection),
        T(server__pipelined_requests__answered_in_order),
        T(server__many_pipelined_requests__buffer_backpressure_keeps_order),
        T(server__http10_request__answered_then_closed),
        T(server__connection_close_request__answered_then_closed),
        T(server__idle_keep_alive__closed_after_idle_timeout),
        T(server__silent_connection__closed_after_header_timeout_without_response),
        T(server__max_connections__excess_refused_then_served_after_others_leave),
        T(server__header_section_exactly_at_limit__200),
        T(server__header_section_one_byte_over_limit__431_and_close),
        T(server__header_bytes_sent_in_pieces__limit_still_exact),
        T(server__too_many_header_lines__431),
        T(server__body_exactly_at_limit__200),
        T(server__body_one_byte_over_limit__413_and_close),
        T(server__chunked_body__assembled_for_handler),
        T(server__chunked_body_over_limit__413_and_close),
        T(server__slow_headers__408_and_close_while_other_client_served),
        T(server__partial_request_after_keep_alive__header_timeout_408),
        T(server__slow_body__408_and_close),
        T(server__expect_continue__100_then_final_response),
        T(server__expect_continue_over_body_limit__413_without_100),
        T(server__unknown_expectation__417),
        T(server__content_length_with_transfer_encoding__400),
        T(server__duplicate_content_length__400),
        T(server__obs_fold_header__400),
        T(server__bad_chunk_size__400),
        T(server__nul_byte_in_header__400),
        T(server__space_before_colon__400),
        T(server__missing_or_duplicate_host__400),
        T(server__odd_request_targets_and_lines__400),
        T(server__transfer_coding_other_than_chunked__rejected),
        T(server__unsupported_http_version__505),
        T(server__async_handler__responds_from_timer),
        T(server__client_gone_before_async_response__cancelled_and_freed),
        T(server__authenticator_rejects__401_and_handler_not_called),
        T(server__authenticator_approves__handler_runs),
        T(server__unauthenticated_route__authenticator_not_called),
        T(server__access_log__one_line_per_request_with_fields),
        T(server__stop_accepting__in_flight_request_finishes_with_close),
        T(server__close_with_open_connections_and_held_exchange__loop_closes),
        cmocka_unit_test(listen__bad_addresses__error_and_clean_close),
        cmocka_unit_test(listen__port_zero_and_any_interface__real_port),
        cmocka_unit_test(new__task_routes_without_authenticator__null),
    };
    return cmocka_run_group_tests_name("http_server", tests, NULL, NULL);
}
