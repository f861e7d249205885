/*
 * Adversarial requests against shared/http/http_server, driven in-process.
 *
 * Each test owns a uv loop and a server; clients are socketpairs whose server
 * end is handed over with http_server_adopt() (the same seam the fuzzer uses),
 * so no port is bound and everything runs on the cmocka thread.  The loop is
 * driven by waiting on its backend fd and the client fd with poll() (bounded
 * by a deadline) and running it with UV_RUN_NOWAIT — no sleeps.  Teardown
 * closes the server and requires uv_loop_close() == 0.
 *
 * Covers what test_http_server.c does not: http_server_adopt itself, NUL bytes
 * in every part of a request, one oversize line at the limit and one over it,
 * a malformed request in the middle of a pipeline, Expect: 100-continue where
 * no interim response may be sent, half-closed clients, and the regression
 * inputs found by fuzz/fuzz_http_request.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shared/http/http_server.h"
#include "utils/log.h"

#define DEADLINE_MS 3000u
#define HEADER_LIMIT 256u
#define BODY_LIMIT 64u

struct rig {
    uv_loop_t loop;
    struct logger lg;
    struct http_server *srv;
    int server_done;
    int handled;
    char seen_body[BODY_LIMIT + 1];
    size_t seen_len;
};

struct client {
    int fd;
    char in[32768];
    size_t len;
    int eof;
};

/* ------------------------------------------------------------------------ */
/* Application                                                               */

static void h_ok(struct http_exchange *ex, void *ctx)
{
    struct rig *r = ctx;
    r->handled++;
    http_exchange_respond(ex, 200, "{\"ok\":true}", NULL, 0);
}

static void h_echo(struct http_exchange *ex, void *ctx)
{
    struct rig *r = ctx;
    size_t len = 0;
    const char *body = http_exchange_body(ex, &len);
    r->handled++;
    r->seen_len = len;
    memcpy(r->seen_body, body, len <= BODY_LIMIT ? len : BODY_LIMIT);
    char out[64];
    snprintf(out, sizeof(out), "{\"len\":%zu}", len);
    http_exchange_respond(ex, 200, out, NULL, 0);
}

static const struct http_route routes[] = {
    {"GET", "/healthz", h_ok, HTTP_AUTH_NONE},
    {"POST", "/echo", h_echo, HTTP_AUTH_NONE_WITH_BODY},
};

/* ------------------------------------------------------------------------ */
/* Rig: loop + server, clients over socketpairs                              */

static struct rig *rig_new(unsigned max_connections)
{
    struct rig *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    assert_int_equal(uv_loop_init(&r->loop), 0);
    logger_init(&r->lg, LOG_LEVEL_ERROR, open("/dev/null", O_WRONLY | O_CLOEXEC));
    struct http_server_opts opts = {
        .listen = "127.0.0.1:0",
        .limits = {.max_header_bytes = HEADER_LIMIT, .max_body_bytes = BODY_LIMIT, .max_connections = max_connections},
        .routes = routes,
        .n_routes = sizeof(routes) / sizeof(routes[0]),
        .app_ctx = r,
    };
    r->srv = http_server_new(&r->loop, &r->lg, &opts);
    assert_non_null(r->srv);
    return r;
}

static void server_done_cb(void *arg)
{
    ((struct rig *)arg)->server_done = 1;
}

static int rig_setup(void **state)
{
    *state = rig_new(8);
    return 0;
}

static int rig_teardown(void **state)
{
    struct rig *r = *state;
    http_server_close(r->srv, server_done_cb, r);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    assert_true(r->server_done);
    assert_int_equal(uv_loop_close(&r->loop), 0);
    close(r->lg.fd);
    logger_free(&r->lg);
    free(r);
    return 0;
}

/* Read whatever the server sent so far (non-blocking). */
static void client_drain(struct client *c)
{
    for (;;) {
        size_t room = sizeof(c->in) - 1 - c->len;
        if (room == 0) fail_msg("client buffer full: the server sent more than expected");
        ssize_t n = recv(c->fd, c->in + c->len, room, MSG_DONTWAIT);
        if (n > 0) {
            c->len += (size_t)n;
            c->in[c->len] = '\0';
            continue;
        }
        if (n == 0) c->eof = 1;
        return;
    }
}

typedef int (*until_fn)(struct rig *r, struct client *c, const void *arg);

/* Drive the loop until until(r, c, arg) holds; 0, or -1 at the deadline. */
static int pump_until(struct rig *r, struct client *c, until_fn until, const void *arg)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)DEADLINE_MS * 1000000u;
    for (;;) {
        uv_run(&r->loop, UV_RUN_NOWAIT);
        if (c != NULL) client_drain(c);
        if (until(r, c, arg)) return 0;
        if (uv_hrtime() > deadline) return -1;
        struct pollfd pfd[2] = {{.fd = uv_backend_fd(&r->loop), .events = POLLIN},
                                {.fd = c != NULL && !c->eof ? c->fd : -1, .events = POLLIN}};
        int timeout = uv_backend_timeout(&r->loop);
        if (timeout < 0 || timeout > 50) timeout = 50;
        (void)poll(pfd, 2, timeout);
    }
}

static int until_eof(struct rig *r, struct client *c, const void *arg)
{
    (void)r;
    (void)arg;
    return c->eof;
}

static int until_responses(struct rig *r, struct client *c, const void *arg)
{
    (void)r;
    size_t want = *(const size_t *)arg, n = 0;
    for (const char *p = c->in; (p = strstr(p, "HTTP/1.1 ")) != NULL; p++)
        n++;
    return n >= want;
}

static int until_no_connections(struct rig *r, struct client *c, const void *arg)
{
    (void)c;
    (void)arg;
    return http_server_connection_count(r->srv) == 0;
}

static struct client *client_new(struct rig *r)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(http_server_adopt(r->srv, sv[0]), 0);
    struct client *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->fd = sv[1];
    return c;
}

static void client_free(struct client *c)
{
    close(c->fd);
    free(c);
}

static void client_send(struct client *c, const void *data, size_t len)
{
    assert_int_equal(send(c->fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void client_send_str(struct client *c, const char *s)
{
    client_send(c, s, strlen(s));
}

static size_t count_responses(const struct client *c)
{
    size_t n = 0;
    for (const char *p = c->in; (p = strstr(p, "HTTP/1.1 ")) != NULL; p++)
        n++;
    return n;
}

/* Send, wait for EOF from the server, return the client (caller frees). */
static struct client *exchange_until_eof(struct rig *r, const void *req, size_t len)
{
    struct client *c = client_new(r);
    client_send(c, req, len);
    assert_int_equal(pump_until(r, c, until_eof, NULL), 0);
    return c;
}

static void assert_status_then_close(struct rig *r, const void *req, size_t len, const char *status_line)
{
    struct client *c = exchange_until_eof(r, req, len);
    if (strncmp(c->in, status_line, strlen(status_line)) != 0) fail_msg("expected %s, got: %.200s", status_line, c->in);
    assert_int_equal(count_responses(c), 1);
    client_free(c);
}

/* ------------------------------------------------------------------------ */
/* http_server_adopt                                                         */

static void http_server_adopt__socketpair__served_like_an_accepted_connection(void **state)
{
    struct rig *r = *state;
    struct client *c = client_new(r);
    assert_int_equal(http_server_connection_count(r->srv), 1);
    client_send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    size_t two = 2;
    assert_int_equal(pump_until(r, c, until_responses, &two), 0);
    assert_non_null(strstr(c->in, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(c->in, "Content-Type: application/json\r\n"));
    assert_int_equal(r->handled, 2);
    assert_false(c->eof); /* keep-alive */
    client_free(c);
    assert_int_equal(pump_until(r, NULL, until_no_connections, NULL), 0);
}

static void http_server_adopt__while_draining__refused_and_socket_closed(void **state)
{
    struct rig *r = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    http_server_stop_accepting(r->srv);
    assert_int_equal(http_server_adopt(r->srv, sv[0]), -1);
    char b;
    assert_int_equal(recv(sv[1], &b, 1, MSG_DONTWAIT), 0); /* the server end was closed: EOF */
    close(sv[1]);
    assert_int_equal(http_server_connection_count(r->srv), 0);
}

static void http_server_adopt__at_connection_limit__refused_and_socket_closed(void **state)
{
    struct rig *r = *state;
    struct client *held[8];
    for (size_t i = 0; i < 8; i++)
        held[i] = client_new(r);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(http_server_adopt(r->srv, sv[0]), -1);
    char b;
    assert_int_equal(recv(sv[1], &b, 1, MSG_DONTWAIT), 0);
    close(sv[1]);
    /* the held ones still work */
    client_send_str(held[7], "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    size_t one = 1;
    assert_int_equal(pump_until(r, held[7], until_responses, &one), 0);
    for (size_t i = 0; i < 8; i++)
        client_free(held[i]);
}

static void http_server_adopt__null_server_or_bad_fd__refused(void **state)
{
    struct rig *r = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(http_server_adopt(NULL, sv[0]), -1);
    char b;
    assert_int_equal(recv(sv[1], &b, 1, MSG_DONTWAIT), 0); /* closed even then */
    close(sv[1]);
    assert_int_equal(http_server_adopt(r->srv, -1), -1);
    assert_int_equal(pump_until(r, NULL, until_no_connections, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* NUL bytes                                                                 */

static void request__nul_byte_anywhere_in_the_head__400_and_close(void **state)
{
    struct rig *r = *state;
    static const char base[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: b\r\n\r\n";
    /* method, target, version, first header name, second header name, header value, a header line's CR,
     * the final empty line's CR */
    const size_t positions[] = {1, 6, 16, 24, 33, 37, 38, 40};
    assert_int_equal(base[37], 'b');
    assert_int_equal(base[40], '\r');
    for (size_t i = 0; i < sizeof(positions) / sizeof(positions[0]); i++) {
        char req[sizeof(base)];
        memcpy(req, base, sizeof(base));
        req[positions[i]] = '\0';
        assert_status_then_close(r, req, sizeof(base) - 1, "HTTP/1.1 400 ");
    }
    assert_int_equal(r->handled, 0);
}

static void request__nul_byte_in_body__delivered_intact_with_its_length(void **state)
{
    struct rig *r = *state;
    static const char req[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\na\0b\0c";
    struct client *c = client_new(r);
    client_send(c, req, sizeof(req) - 1);
    size_t one = 1;
    assert_int_equal(pump_until(r, c, until_responses, &one), 0);
    assert_non_null(strstr(c->in, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(c->in, "{\"len\":5}"));
    assert_int_equal(r->seen_len, 5);
    assert_memory_equal(r->seen_body, "a\0b\0c", 5);
    client_free(c);
}

static void request__percent_encoded_nul_in_target__not_routed(void **state)
{
    struct rig *r = *state;
    static const char req[] = "GET /healthz%00 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    assert_status_then_close(r, req, sizeof(req) - 1, "HTTP/1.1 404 ");
    assert_int_equal(r->handled, 0);
}

/* ------------------------------------------------------------------------ */
/* One oversize line: at the limit and one byte over                         */

/* "GET /healthz?<pad> HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" of exactly `total` bytes. */
static size_t long_line_request(char *out, size_t total)
{
    static const char head[] = "GET /healthz?", tail[] = " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    size_t pad = total - (sizeof(head) - 1) - (sizeof(tail) - 1);
    memcpy(out, head, sizeof(head) - 1);
    memset(out + sizeof(head) - 1, 'q', pad);
    memcpy(out + sizeof(head) - 1 + pad, tail, sizeof(tail));
    return total;
}

static void request_line__header_section_exactly_at_limit__served(void **state)
{
    struct rig *r = *state;
    char req[HEADER_LIMIT + 2];
    size_t len = long_line_request(req, HEADER_LIMIT);
    assert_status_then_close(r, req, len, "HTTP/1.1 200 ");
    assert_int_equal(r->handled, 1);
}

static void request_line__one_byte_over_limit__431_and_close(void **state)
{
    struct rig *r = *state;
    char req[HEADER_LIMIT + 2];
    size_t len = long_line_request(req, HEADER_LIMIT + 1);
    assert_status_then_close(r, req, len, "HTTP/1.1 431 ");
    assert_int_equal(r->handled, 0);
}

static void request_line__endless_line_without_newline__431_not_buffered_forever(void **state)
{
    struct rig *r = *state;
    struct client *c = client_new(r);
    char chunk[HEADER_LIMIT];
    memset(chunk, 'A', sizeof(chunk));
    client_send(c, "GET /", 5);
    client_send(c, chunk, sizeof(chunk));
    assert_int_equal(pump_until(r, c, until_eof, NULL), 0);
    assert_memory_equal(c->in, "HTTP/1.1 431 ", 13);
    client_free(c);
}

/* ------------------------------------------------------------------------ */
/* Pipelining                                                                */

static void pipeline__malformed_request_in_the_middle__earlier_answered_rest_dropped(void **state)
{
    struct rig *r = *state;
    static const char reqs[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy"
                               "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    struct client *c = exchange_until_eof(r, reqs, sizeof(reqs) - 1);
    assert_int_equal(count_responses(c), 2);
    const char *second = strstr(c->in + 1, "HTTP/1.1 ");
    assert_memory_equal(c->in, "HTTP/1.1 200 ", 13);
    assert_non_null(second);
    assert_memory_equal(second, "HTTP/1.1 400 ", 13);
    assert_int_equal(r->handled, 1); /* the request after the bad one never reached a handler */
    client_free(c);
}

static void pipeline__hundred_requests_in_one_write__all_answered_in_order(void **state)
{
    struct rig *r = *state;
    char reqs[100 * 64];
    size_t len = 0;
    for (int i = 0; i < 100; i++)
        len += (size_t)snprintf(reqs + len, sizeof(reqs) - len, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: r%03d\r\n\r\n",
                                i);
    struct client *c = client_new(r);
    client_send(c, reqs, len);
    size_t want = 100;
    assert_int_equal(pump_until(r, c, until_responses, &want), 0);
    const char *p = c->in;
    for (int i = 0; i < 100; i++) {
        char id[32];
        snprintf(id, sizeof(id), "X-Request-Id: r%03d\r\n", i);
        const char *at = strstr(p, id);
        assert_non_null(at); /* present and after the previous one: in order */
        p = at + 1;
    }
    assert_int_equal(r->handled, 100);
    client_free(c);
}

/* ------------------------------------------------------------------------ */
/* Expect: 100-continue                                                      */

static void expect_continue__http10_request__no_interim_response(void **state)
{
    struct rig *r = *state;
    static const char req[] = "POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi";
    struct client *c = exchange_until_eof(r, req, sizeof(req) - 1);
    assert_null(strstr(c->in, "100 Continue"));
    assert_memory_equal(c->in, "HTTP/1.1 200 ", 13);
    client_free(c);
}

static void expect_continue__no_body__final_response_only(void **state)
{
    struct rig *r = *state;
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    struct client *c = exchange_until_eof(r, req, sizeof(req) - 1);
    assert_null(strstr(c->in, "100 Continue"));
    assert_int_equal(count_responses(c), 1);
    client_free(c);
}

static void expect_continue__twice__417(void **state)
{
    struct rig *r = *state;
    static const char req[] = "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nExpect: 100-continue\r\n"
                              "Content-Length: 2\r\n\r\nhi";
    assert_status_then_close(r, req, sizeof(req) - 1, "HTTP/1.1 417 ");
    assert_int_equal(r->handled, 0);
}

/* ------------------------------------------------------------------------ */
/* Half-closed clients                                                       */

static void half_close__after_a_complete_request__response_still_delivered(void **state)
{
    struct rig *r = *state;
    struct client *c = client_new(r);
    client_send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
    assert_int_equal(pump_until(r, c, until_eof, NULL), 0);
    assert_memory_equal(c->in, "HTTP/1.1 200 ", 13);
    client_free(c);
    assert_int_equal(pump_until(r, NULL, until_no_connections, NULL), 0);
}

static void half_close__in_the_middle_of_the_head__closed_silently_server_keeps_serving(void **state)
{
    struct rig *r = *state;
    struct client *c = client_new(r);
    client_send_str(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Le");
    assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
    assert_int_equal(pump_until(r, c, until_eof, NULL), 0);
    assert_int_equal(c->len, 0);
    client_free(c);
    assert_int_equal(pump_until(r, NULL, until_no_connections, NULL), 0);
    struct client *next = client_new(r);
    client_send_str(next, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    size_t one = 1;
    assert_int_equal(pump_until(r, next, until_responses, &one), 0);
    assert_memory_equal(next->in, "HTTP/1.1 200 ", 13);
    client_free(next);
    assert_int_equal(r->handled, 1);
}

static void half_close__in_the_middle_of_the_body__closed_silently(void **state)
{
    struct rig *r = *state;
    struct client *c = client_new(r);
    client_send_str(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
    assert_int_equal(pump_until(r, c, until_eof, NULL), 0);
    assert_int_equal(c->len, 0);
    assert_int_equal(r->handled, 0);
    client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(http_server_adopt__socketpair__served_like_an_accepted_connection, rig_setup,
                                        rig_teardown),
        cmocka_unit_test_setup_teardown(http_server_adopt__while_draining__refused_and_socket_closed, rig_setup,
                                        rig_teardown),
        cmocka_unit_test_setup_teardown(http_server_adopt__at_connection_limit__refused_and_socket_closed, rig_setup,
                                        rig_teardown),
        cmocka_unit_test_setup_teardown(http_server_adopt__null_server_or_bad_fd__refused, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(request__nul_byte_anywhere_in_the_head__400_and_close, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(request__nul_byte_in_body__delivered_intact_with_its_length, rig_setup,
                                        rig_teardown),
        cmocka_unit_test_setup_teardown(request__percent_encoded_nul_in_target__not_routed, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(request_line__header_section_exactly_at_limit__served, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(request_line__one_byte_over_limit__431_and_close, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(request_line__endless_line_without_newline__431_not_buffered_forever, rig_setup,
                                        rig_teardown),
        cmocka_unit_test_setup_teardown(pipeline__malformed_request_in_the_middle__earlier_answered_rest_dropped,
                                        rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(pipeline__hundred_requests_in_one_write__all_answered_in_order, rig_setup,
                                        rig_teardown),
        cmocka_unit_test_setup_teardown(expect_continue__http10_request__no_interim_response, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(expect_continue__no_body__final_response_only, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(expect_continue__twice__417, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(half_close__after_a_complete_request__response_still_delivered, rig_setup,
                                        rig_teardown),
        cmocka_unit_test_setup_teardown(half_close__in_the_middle_of_the_head__closed_silently_server_keeps_serving,
                                        rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(half_close__in_the_middle_of_the_body__closed_silently, rig_setup, rig_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
