/*
 * shared/http/http_client — asynchronous HTTP(S) requests on the daemon's
 * libuv loop, driven by one libcurl multi handle (socket/timer API).
 *
 * http_client_send() copies everything it is given (method, URL, headers,
 * body), so callers may free their request right after the call.  The
 * completion callback runs later from the loop — never from inside send() —
 * with a response that is valid only during the callback.  At most
 * `max_concurrent` transfers are active at once; further requests wait in a
 * FIFO queue (its length is bounded by the callers' own in-flight limits).
 *
 * Timeouts: `timeout_ms` is the total time from submission (queue wait
 * included) to the end of the response; the connect phase is capped at
 * min(timeout, 10 s); timeout_ms <= 0 means 30 s.  A request that runs out of
 * time completes with transport_error = CURLE_OPERATION_TIMEDOUT.
 *
 * Response: `status` is the HTTP status, or 0 whenever `transport_error` (a
 * CURLcode) is non-zero — a partial response is not a response.  Bodies are
 * capped (the client's cap, 1 MiB by default, or a request's own smaller
 * max_response_bytes): a larger body is a transport error (CURLE_WRITE_ERROR,
 * "response body too large").  Response headers can be
 * looked up case-insensitively with http_response_header().
 *
 * Transport: HTTP/1.1 keep-alive connection reuse, HTTP/2 over TLS when
 * libcurl supports it, no redirects, http/https only, no signals.
 *
 * Shutdown: http_client_close() aborts every active and queued request (each
 * callback gets transport_error = CURLE_ABORTED_BY_CALLBACK, status 0), closes
 * all libuv handles and libcurl handles, frees the client, then calls done()
 * — all from the loop, after close() has returned.  send() fails once close()
 * was called.  Nothing is logged but method, URL path and outcome (never
 * headers or bodies, which carry tokens).
 */
#ifndef FOLLOWUPD_SHARED_HTTP_HTTP_CLIENT_H
#define FOLLOWUPD_SHARED_HTTP_HTTP_CLIENT_H

#include <stddef.h>
#include <uv.h>

#include "utils/log.h"

#define HTTP_CLIENT_DEFAULT_TIMEOUT_MS 30000L
#define HTTP_CLIENT_MAX_CONNECT_TIMEOUT_MS 10000L
#define HTTP_CLIENT_DEFAULT_MAX_RESPONSE_BYTES (1024u * 1024u)

struct http_client;

struct http_header {
    const char *name;
    const char *value;
};

struct http_request {
    const char *method;                /* "GET", "POST", "DELETE", ... */
    const char *url;
    const struct http_header *headers; /* no CR/LF in names or values */
    size_t n_headers;
    const char *body;                  /* may be NULL when body_len == 0 */
    size_t body_len;
    long timeout_ms;                   /* total; <= 0 → 30 s */
    size_t max_response_bytes;         /* body cap for this request; 0 or above the client's cap → the client's */
};

struct http_response {
    long status;                       /* 0 when there was no (complete) HTTP response */
    int transport_error;               /* CURLcode; 0 = ok */
    const char *error;                 /* human-readable transport error, NULL when ok */
    const char *body;                  /* NUL-terminated; "" when empty */
    size_t body_len;
    const struct http_header *headers; /* response headers of the final response */
    size_t n_headers;
};

typedef void (*http_client_cb)(void *arg, const struct http_response *res);

struct http_client *http_client_new(uv_loop_t *loop, struct logger *lg, int max_concurrent);

/* Lower or raise the response body cap for requests submitted afterwards. */
void http_client_set_max_response_bytes(struct http_client *c, size_t max_bytes);

/* 0 = accepted (cb will run exactly once, later); -1 = rejected (bad request,
 * out of memory, client closing), cb will not run. */
int http_client_send(struct http_client *c, const struct http_request *req, http_client_cb cb,
                     void *arg) __attribute__((warn_unused_result));

void http_client_close(struct http_client *c, void (*done)(void *arg), void *arg);

/* First header named `name` (ASCII case-insensitive), or NULL. */
const char *http_response_header(const struct http_response *r, const char *name);

/* Transfers currently running / waiting for a slot. */
size_t http_client_active_count(const struct http_client *c);
size_t http_client_queued_count(const struct http_client *c);

#endif
