/*
 * tests/unit/support/curl_test_server — a tiny scripted HTTP/1.1 server on
 * 127.0.0.1 (ephemeral port) running on the test's own libuv loop, for the
 * HTTP client, Google auth, Cloud Tasks and voice-agent client tests.
 *
 * Each complete request (Content-Length bodies only; keep-alive supported) is
 * recorded, then handed to the test's handler which fills a reply: status,
 * body, extra raw header lines, an optional delay, or `hang` (never answer —
 * for timeouts and aborts).  Requests can be inspected afterwards in arrival
 * order.  The server also counts requests that were received but not yet
 * answered, and the maximum of that count (to check client concurrency).
 *
 * Loop helpers: cts_run_until() drives the loop until a predicate holds or a
 * deadline passes (no sleeping); cts_finish_loop() runs the loop until every
 * handle has closed and returns uv_loop_close()'s result.
 */
#ifndef CURL_TEST_SERVER_H
#define CURL_TEST_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct cts_header {
    char *name;
    char *value;
};

struct cts_request {
    char *method;
    char *target;                /* path + query as sent */
    struct cts_header *headers;
    size_t n_headers;
    char *body;                  /* NUL-terminated */
    size_t body_len;
    int conn_id;                 /* which accepted connection carried it (1-based) */
};

struct cts_reply {
    int status;                  /* default 200 */
    const char *body;            /* default "" */
    const char *content_type;    /* default application/json */
    const char *extra_headers;   /* raw "Name: value\r\n" lines, or NULL */
    uint64_t delay_ms;           /* answer after this long */
    bool hang;                   /* never answer */
    bool close_after;            /* close the connection after answering */
};

typedef void (*cts_handler_fn)(void *arg, const struct cts_request *req, struct cts_reply *reply);

struct cts_server;

/* NULL on failure. The handler may be NULL (every request gets 200 "{}"). */
struct cts_server *cts_start(uv_loop_t *loop, cts_handler_fn handler, void *arg);
/* "http://127.0.0.1:PORT" */
const char *cts_url(const struct cts_server *s);
size_t cts_count(const struct cts_server *s);
const struct cts_request *cts_request_at(const struct cts_server *s, size_t i);
/* Requests whose target starts with `prefix`. */
size_t cts_count_prefix(const struct cts_server *s, const char *prefix);
const char *cts_header(const struct cts_request *r, const char *name);
size_t cts_pending(const struct cts_server *s);       /* received, not yet answered */
size_t cts_max_pending(const struct cts_server *s);
size_t cts_connections(const struct cts_server *s);   /* accepted so far */
/* Answer every hanging request now with this status/body. */
void cts_release_hanging(struct cts_server *s, int status, const char *body);
/* Close listener and connections; memory is released by the loop. */
void cts_close(struct cts_server *s);

bool cts_run_until(uv_loop_t *loop, bool (*pred)(void *arg), void *arg, uint64_t timeout_ms);
int cts_finish_loop(uv_loop_t *loop, uint64_t timeout_ms);

#endif
