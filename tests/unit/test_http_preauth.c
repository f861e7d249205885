/*
 * Tests for "nothing expensive before authentication" in shared/http/http_server,
 * over real sockets (support/httpd_harness runs the server on its own loop
 * thread; the test thread is a blocking client).
 *
 *   - the body gate: a request with a body is routed and authenticated from its
 *     headers alone; a refusal (401, 404, 413 on a public route that takes no
 *     body) is answered without the body ever being sent, and closes; an
 *     approved one then reads its body (also across the input buffer and with
 *     Expect: 100-continue, whose interim answer comes only after approval);
 *   - the memory bound: while authentications are pending, what the server
 *     holds grows by at most http_server_preauth_bytes_max() per connection,
 *     measured on the real heap (glibc mallinfo2, or the sanitizer allocator);
 *   - the per-peer cap: one address opening hundreds of slow connections is
 *     refused (503) past its cap while another loopback address is served; the
 *     cap holds for IPv6 peers too.
 * Synchronisation is by events (responses, EOF, loop-thread predicates).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
/* The sanitizer allocator's own count (declared by hand: gcc does not ship sanitizer/allocator_interface.h). */
size_t __sanitizer_get_current_allocated_bytes(void);
#else
#include <malloc.h>
#endif

#include "shared/http/http_server.h"
#include "support/httpd_client.h"
#include "support/httpd_harness.h"

#define READ_MS 3000u
#define MAX_HELD 64

/* ------------------------------------------------------------------------ */
/* The application: a task route that echoes what it read, a public GET, a    */
/* public route that takes a body, and an authenticator driven by the token.  */

struct held_auth {
    struct http_exchange *ex;
    http_auth_done done;
};

struct preauth_app {
    uv_loop_t *loop;
    atomic_int auth_calls;
    atomic_int handler_calls;
    struct held_auth held[MAX_HELD]; /* loop thread only */
    size_t n_held;
};

struct later {
    uv_timer_t timer;
    struct http_exchange *ex;
    http_auth_done done;
    int ok;
};

static void later_free_cb(uv_handle_t *h)
{
    free(h->data);
}

static void later_fire_cb(uv_timer_t *t)
{
    struct later *l = t->data;
    l->done(l->ex, l->ok, l->ok ? NULL : "later: bad token");
    uv_close((uv_handle_t *)t, later_free_cb);
}

static void answer_later(struct preauth_app *app, struct http_exchange *ex, http_auth_done done, int ok)
{
    struct later *l = calloc(1, sizeof(*l));
    *l = (struct later){.ex = ex, .done = done, .ok = ok};
    l->timer.data = l;
    uv_timer_init(app->loop, &l->timer);
    uv_timer_start(&l->timer, later_fire_cb, 0, 0);
}

/* "Bearer good": approve now; "Bearer later-good"/"Bearer later-bad": from a
 * timer; "Bearer hold": until the test releases it; anything else: reject now. */
static void authenticate(void *auth_ctx, struct http_exchange *ex, http_auth_done done)
{
    struct preauth_app *app = auth_ctx;
    const char *a = http_exchange_header(ex, "Authorization");
    atomic_fetch_add(&app->auth_calls, 1);
    if (a != NULL && strcmp(a, "Bearer good") == 0) {
        done(ex, 1, NULL);
    } else if (a != NULL && strncmp(a, "Bearer later-", 13) == 0) {
        answer_later(app, ex, done, strcmp(a + 13, "good") == 0);
    } else if (a != NULL && strcmp(a, "Bearer hold") == 0 && app->n_held < MAX_HELD) {
        app->held[app->n_held++] = (struct held_auth){.ex = ex, .done = done};
    } else {
        done(ex, 0, "bad token");
    }
}

static void h_echo(struct http_exchange *ex, void *ctx)
{
    struct preauth_app *app = ctx;
    size_t len = 0;
    const char *body = http_exchange_body(ex, &len);
    unsigned long sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += (unsigned char)body[i];
    atomic_fetch_add(&app->handler_calls, 1);
    json_t *o = json_pack("{s:I,s:I}", "len", (json_int_t)len, "sum", (json_int_t)sum);
    char *s = json_dumps(o, JSON_COMPACT);
    http_exchange_respond(ex, 200, s, NULL, 0);
    free(s);
    json_decref(o);
}

static void h_hello(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    http_exchange_respond(ex, 200, "{\"hello\":true}", NULL, 0);
}

static const struct http_route routes[] = {
    {"POST", "/task/:id", h_echo, HTTP_AUTH_TASK},
    {"GET", "/hello", h_hello, HTTP_AUTH_NONE},
    {"POST", "/public", h_echo, HTTP_AUTH_NONE_WITH_BODY},
};

/* ------------------------------------------------------------------------ */
/* Fixture                                                                   */

struct fx {
    struct httpd_harness h;
    struct preauth_app app;
    int started;
};

static struct http_limits test_limits(void)
{
    return (struct http_limits){.max_header_bytes = 8192,
                                .max_body_bytes = 1u << 20,
                                .header_timeout_ms = 5000,
                                .body_timeout_ms = 2000,
                                .idle_timeout_ms = 5000,
                                .max_connections = 48};
}

static int fx_setup(void **state)
{
    *state = calloc(1, sizeof(struct fx));
    return *state != NULL ? 0 : -1;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;
    int rc = fx->started ? httpd_harness_stop(&fx->h) : 0;
    free(fx);
    if (rc != 0) print_error("server did not close cleanly: %d\n", rc);
    return rc == 0 ? 0 : -1;
}

static struct fx *fx_start_at(void **state, const struct http_limits *limits, const char *listen)
{
    struct fx *fx = *state;
    struct http_server_opts o = {.listen = listen,
                                 .limits = *limits,
                                 .routes = routes,
                                 .n_routes = sizeof(routes) / sizeof(routes[0]),
                                 .app_ctx = &fx->app,
                                 .authenticate = authenticate,
                                 .auth_ctx = &fx->app};
    fx->app.loop = &fx->h.loop;
    assert_int_equal(httpd_harness_start(&fx->h, &o), 0);
    fx->started = 1;
    return fx;
}

static struct fx *fx_start(void **state)
{
    struct http_limits lim = test_limits();
    return fx_start_at(state, &lim, NULL);
}

static void send_str(struct httpd_client *c, const char *s)
{
    assert_int_equal(httpd_client_send_str(c, s), 0);
}

static void read_status(struct httpd_client *c, struct httpd_response *r, int status)
{
    assert_int_equal(httpd_client_read_response(c, r, READ_MS), 0);
    assert_int_equal(r->status, status);
}

static void assert_header(const struct httpd_response *r, const char *name, const char *want)
{
    char v[256];
    const char *got = httpd_response_header(r, name, v, sizeof(v));
    assert_non_null(got);
    assert_string_equal(got, want);
}

/* The answer came from the headers alone: the connection closes after it. */
static void assert_closed_after(struct httpd_client *c, const struct httpd_response *r)
{
    assert_header(r, "Connection", "close");
    assert_int_equal(httpd_client_wait_eof(c, READ_MS), 1);
}

static void task_headers(char *out, size_t cap, const char *token, size_t length, const char *extra)
{
    snprintf(out, cap,
             "POST /task/1 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n%s\r\n",
             token, length, extra != NULL ? extra : "");
}

/* ------------------------------------------------------------------------ */
/* The body gate                                                             */

static void gate__rejected_token_with_declared_body__401_without_the_body(void **state)
{
    static const char *const tokens[] = {"bad", "later-bad"}; /* refused now, and from the loop */
    struct fx *fx = fx_start(state);
    for (size_t i = 0; i < 2; i++) {
        struct httpd_client c;
        struct httpd_response r;
        char head[512];
        task_headers(head, sizeof(head), tokens[i], 1000000, NULL);
        assert_int_equal(httpd_client_connect(&c, fx->h.port), 0);
        send_str(&c, head); /* the body is never sent: the answer must not wait for it */
        read_status(&c, &r, 401);
        assert_string_equal(r.body, "{\"error\":\"unauthorized\"}");
        assert_header(&r, "WWW-Authenticate", "Bearer");
        assert_closed_after(&c, &r);
        httpd_client_close(&c);
    }
    assert_int_equal(atomic_load(&fx->app.auth_calls), 2);
    assert_int_equal(atomic_load(&fx->app.handler_calls), 0);
}

static void gate__unknown_path_or_public_route_with_declared_body__answered_from_headers(void **state)
{
    static const struct {
        const char *head;
        int status;
    } cases[] = {
        {"POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 500000\r\n\r\n", 404},
        {"PUT /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 500000\r\n\r\n", 405},
        {"GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 500000\r\n\r\n", 413},
        {"GET /hello HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n", 413},
    };
    struct fx *fx = fx_start(state);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct httpd_client c;
        struct httpd_response r;
        assert_int_equal(httpd_client_connect(&c, fx->h.port), 0);
        send_str(&c, cases[i].head);
        read_status(&c, &r, cases[i].status);
        assert_closed_after(&c, &r);
        httpd_client_close(&c);
    }
    assert_int_equal(atomic_load(&fx->app.auth_calls), 0);
}

/* Body of n bytes 'a'..'z' repeating; returns its byte sum. */
static unsigned long fill_body(char *body, size_t n)
{
    unsigned long sum = 0;
    for (size_t i = 0; i < n; i++) {
        body[i] = (char)('a' + i % 26);
        sum += (unsigned char)body[i];
    }
    return sum;
}

static void expect_echo(const struct httpd_response *r, size_t len, unsigned long sum)
{
    char want[96];
    snprintf(want, sizeof(want), "{\"len\":%zu,\"sum\":%lu}", len, sum);
    assert_string_equal(r->body, want);
}

static void gate__approved_token__body_larger_than_the_input_buffer_read_after_approval(void **state)
{
    static const char *const tokens[] = {"good", "later-good"};
    enum { BODY = 40000 }; /* more than the 16 KiB input buffer: reading resumes after approval */
    struct fx *fx = fx_start(state);
    char *body = malloc(BODY);
    unsigned long sum = fill_body(body, BODY);
    for (size_t i = 0; i < 2; i++) {
        struct httpd_client c;
        struct httpd_response r;
        char head[512];
        task_headers(head, sizeof(head), tokens[i], BODY, NULL);
        assert_int_equal(httpd_client_connect(&c, fx->h.port), 0);
        send_str(&c, head);
        assert_int_equal(httpd_client_send(&c, body, BODY), 0);
        read_status(&c, &r, 200);
        expect_echo(&r, BODY, sum);
        send_str(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"); /* still keep-alive */
        read_status(&c, &r, 200);
        httpd_client_close(&c);
    }
    free(body);
    assert_int_equal(atomic_load(&fx->app.handler_calls), 2);
}

static void gate__expect_continue__interim_answer_only_after_approval(void **state)
{
    struct fx *fx = fx_start(state);
    struct httpd_client c;
    struct httpd_response r;
    char head[512];

    task_headers(head, sizeof(head), "later-bad", 8, "Expect: 100-continue\r\n");
    assert_int_equal(httpd_client_connect(&c, fx->h.port), 0);
    send_str(&c, head);
    read_status(&c, &r, 401); /* no 100 Continue first */
    assert_closed_after(&c, &r);
    httpd_client_close(&c);

    task_headers(head, sizeof(head), "later-good", 8, "Expect: 100-continue\r\n");
    assert_int_equal(httpd_client_connect(&c, fx->h.port), 0);
    send_str(&c, head);
    read_status(&c, &r, 100);
    send_str(&c, "12345678");
    read_status(&c, &r, 200);
    expect_echo(&r, 8, '1' + '2' + '3' + '4' + '5' + '6' + '7' + '8');
    httpd_client_close(&c);
}

static void gate__public_route_that_takes_a_body__read_without_authentication(void **state)
{
    struct fx *fx = fx_start(state);
    struct httpd_client c;
    struct httpd_response r;
    assert_int_equal(httpd_client_connect(&c, fx->h.port), 0);
    send_str(&c, "POST /public HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    read_status(&c, &r, 200);
    expect_echo(&r, 3, 'a' + 'b' + 'c');
    httpd_client_close(&c);
    assert_int_equal(atomic_load(&fx->app.auth_calls), 0);
}

/* ------------------------------------------------------------------------ */
/* The memory bound                                                          */

static size_t heap_in_use(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 m = mallinfo2(); /* every arena, the loop thread's too */
    return m.uordblks + m.hblkhd;
#endif
}

static int pred_held_eq(struct httpd_harness *h, void *arg)
{
    struct fx *fx = (struct fx *)((char *)h - offsetof(struct fx, h));
    return fx->app.n_held == *(size_t *)arg;
}

static void release_held(struct httpd_harness *h, void *arg)
{
    struct fx *fx = (struct fx *)((char *)h - offsetof(struct fx, h));
    int ok = *(int *)arg;
    for (size_t i = 0; i < fx->app.n_held; i++)
        fx->app.held[i].done(fx->app.held[i].ex, ok, ok ? NULL : "held: refused");
    fx->app.n_held = 0;
}

static void preauth__pending_authentications_with_huge_declared_bodies__heap_within_the_bound(void **state)
{
    enum { N = 32, SENT = 32768 };
    struct http_limits lim = test_limits();
    struct fx *fx = fx_start_at(state, &lim, NULL);
    struct httpd_client *c = calloc(N, sizeof(*c));
    char *req = malloc(lim.max_header_bytes + SENT);
    /* A header section just under the limit, a declared body of max_body_bytes, and 32 KiB of it sent at once. */
    int head_len = snprintf(req, lim.max_header_bytes,
                            "POST /task/1 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer hold\r\n"
                            "Content-Type: application/json\r\nContent-Length: %zu\r\nX-Pad: ",
                            lim.max_body_bytes);
    size_t pad = lim.max_header_bytes - (size_t)head_len - 4;
    memset(req + head_len, 'p', pad);
    memcpy(req + head_len + pad, "\r\n\r\n", 4);
    memset(req + lim.max_header_bytes, 'b', SENT);
    size_t per_conn = http_server_preauth_bytes_max(&lim);

    size_t before = heap_in_use();
    for (int i = 0; i < N; i++) {
        assert_int_equal(httpd_client_connect(&c[i], fx->h.port), 0);
        assert_int_equal(httpd_client_send(&c[i], req, lim.max_header_bytes + SENT), 0);
    }
    size_t n = N;
    assert_int_equal(httpd_harness_wait(&fx->h, pred_held_eq, &n, READ_MS), 0);
    size_t held = heap_in_use() - before;
    print_message("      %d pending connections hold %zu heap bytes (bound %zu = %d x %zu)\n", N, held,
                  N * per_conn, N, per_conn);
    assert_true(held <= N * per_conn);
    assert_int_equal(atomic_load(&fx->app.handler_calls), 0);

    int refuse = 0;
    assert_int_equal(httpd_harness_call(&fx->h, release_held, &refuse), 0);
    for (int i = 0; i < N; i++) {
        struct httpd_response r;
        read_status(&c[i], &r, 401);
        assert_closed_after(&c[i], &r);
        httpd_client_close(&c[i]);
    }
    size_t zero = 0;
    assert_int_equal(httpd_harness_wait(&fx->h, httpd_pred_connections_eq, &zero, READ_MS), 0);
    free(req);
    free(c);
}

static void preauth__bound__covers_the_header_limit_and_stays_small_at_defaults(void **state)
{
    (void)state;
    struct http_limits defaults = {0}, big = {.max_header_bytes = 65536};
    size_t at_defaults = http_server_preauth_bytes_max(&defaults);
    print_message("      per-connection bound at defaults: %zu bytes\n", at_defaults);
    assert_true(at_defaults > 16384 + 16384); /* input buffer + header arena at the default 16 KiB */
    assert_true(at_defaults < 48 * 1024);
    assert_int_equal(http_server_preauth_bytes_max(&big) - at_defaults, 65536 - 16384);
}

/* ------------------------------------------------------------------------ */
/* The per-peer cap                                                          */

static int pred_refused_per_peer_eq(struct httpd_harness *h, void *arg)
{
    struct http_server_stats st;
    http_server_get_stats(h->srv, &st);
    return st.refused_per_peer == *(uint64_t *)arg;
}

static void get_stats(struct httpd_harness *h, void *arg)
{
    http_server_get_stats(h->srv, arg);
}

static void peer__one_address_opens_hundreds_of_slow_connections__another_address_still_served(void **state)
{
    enum { FLOOD = 300, CAP = 16 };
    struct http_limits lim = test_limits();
    lim.max_connections = 128;
    lim.max_connections_per_peer = CAP;
    struct fx *fx = fx_start_at(state, &lim, NULL);
    struct httpd_client *flood = calloc(FLOOD, sizeof(*flood));
    for (int i = 0; i < FLOOD; i++) {
        assert_int_equal(httpd_client_connect_addr(&flood[i], "127.0.0.1", fx->h.port, "127.0.0.1"), 0);
        send_str(&flood[i], "GET /hel"); /* slow: the request never completes */
    }
    uint64_t refused = FLOOD - CAP;
    assert_int_equal(httpd_harness_wait(&fx->h, pred_refused_per_peer_eq, &refused, READ_MS), 0);

    for (int round = 0; round < 3; round++) { /* the flood holds its slots; another address is served */
        struct httpd_client good;
        struct httpd_response r;
        assert_int_equal(httpd_client_connect_addr(&good, "127.0.0.1", fx->h.port, "127.0.0.2"), 0);
        send_str(&good, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
        read_status(&good, &r, 200);
        httpd_client_close(&good);
    }
    struct http_server_stats st;
    assert_int_equal(httpd_harness_call(&fx->h, get_stats, &st), 0);
    assert_int_equal(st.refused_per_peer, FLOOD - CAP);
    assert_int_equal(st.refused_max_connections, 0);

    int answered = 0, waiting = 0;
    for (int i = 0; i < FLOOD; i++) {
        struct httpd_response r;
        if (httpd_client_readable(&flood[i], 0)) { /* refused: a 503 is waiting, then EOF */
            read_status(&flood[i], &r, 503);
            assert_string_equal(r.body, "{\"error\":\"service_unavailable\"}");
            assert_int_equal(httpd_client_wait_eof(&flood[i], READ_MS), 1);
            answered++;
        } else {
            waiting++;
        }
        httpd_client_close(&flood[i]);
    }
    assert_int_equal(answered, FLOOD - CAP);
    assert_int_equal(waiting, CAP);
    char *log = httpd_harness_log(&fx->h);
    const char *warn = strstr(log, "per-peer connection limit reached");
    assert_non_null(warn);
    assert_null(strstr(warn + 1, "per-peer connection limit reached")); /* at most one warning a second */
    assert_non_null(strstr(log, "\"peer\":\"127.0.0.1\""));
    free(log);
    free(flood);
}

static void peer__ipv6_peer__capped_and_its_slot_reusable(void **state)
{
    struct http_limits lim = test_limits();
    lim.max_connections_per_peer = 2;
    struct fx *fx = fx_start_at(state, &lim, "[::1]:0");
    struct httpd_client held[2], extra;
    struct httpd_response r;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(httpd_client_connect_addr(&held[i], "::1", fx->h.port, NULL), 0);
        send_str(&held[i], "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
        read_status(&held[i], &r, 200); /* accepted: the slot stays taken (keep-alive) */
    }
    assert_int_equal(httpd_client_connect_addr(&extra, "::1", fx->h.port, NULL), 0);
    read_status(&extra, &r, 503);
    assert_int_equal(httpd_client_wait_eof(&extra, READ_MS), 1);
    httpd_client_close(&extra);

    size_t one = 1;
    httpd_client_close(&held[0]);
    assert_int_equal(httpd_harness_wait(&fx->h, httpd_pred_connections_eq, &one, READ_MS), 0);
    assert_int_equal(httpd_client_connect_addr(&extra, "::1", fx->h.port, NULL), 0);
    send_str(&extra, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    read_status(&extra, &r, 200);
    httpd_client_close(&extra);
    httpd_client_close(&held[1]);
}

#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(gate__rejected_token_with_declared_body__401_without_the_body),
        T(gate__unknown_path_or_public_route_with_declared_body__answered_from_headers),
        T(gate__approved_token__body_larger_than_the_input_buffer_read_after_approval),
        T(gate__expect_continue__interim_answer_only_after_approval),
        T(gate__public_route_that_takes_a_body__read_without_authentication),
        T(preauth__pending_authentications_with_huge_declared_bodies__heap_within_the_bound),
        cmocka_unit_test(preauth__bound__covers_the_header_limit_and_stays_small_at_defaults),
        T(peer__one_address_opens_hundreds_of_slow_connections__another_address_still_served),
        T(peer__ipv6_peer__capped_and_its_slot_reusable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
