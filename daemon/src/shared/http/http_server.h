/*
 * shared/http/http_server — the embedded HTTP/1.1 server (libuv TCP + llhttp).
 *
 * One server owns a listening socket and its connections on the caller's loop.
 * Each connection parses one request at a time with llhttp (no lenient flags)
 * plus our own checks on the raw header bytes (obs-fold, NUL, request-line
 * shape, header-size limit), so pipelined requests are answered strictly in
 * order: after a request is complete the parser is paused until its response
 * has been written; bytes that arrive meanwhile are buffered (bounded; reading
 * stops when the buffer is full) and parsed afterwards.
 *
 * Per request: limits (431 header bytes, 413 body bytes, 408 header/body time)
 * -> route match (404/405+Allow) -> authenticator for HTTP_AUTH_TASK routes
 * (401 on rejection) -> handler.  Nothing expensive happens before
 * authentication: a request that declares a body (Content-Length > 0 or
 * chunked) is routed and authenticated as soon as its header section is
 * complete, with parsing and reading stopped, before a byte of the body is
 * buffered beyond the fixed input buffer or any body memory is reserved; the
 * body is read (under max_body_bytes and body_timeout_ms, after a "100
 * Continue" when one was asked for) only once the authenticator approved it,
 * or for an HTTP_AUTH_NONE_WITH_BODY route.  Every answer given before that
 * (404/405, 401, 413 for a public route that takes no body) comes from the
 * headers alone and closes the connection; http_server_preauth_bytes_max()
 * bounds what such a connection holds.  A request without a body is routed and
 * authenticated once complete, as before.  Connections are capped in total
 * (max_connections) and per peer IP address (max_connections_per_peer; an
 * IPv4-mapped IPv6 address counts as IPv4, sockets without an IP peer are not
 * capped per peer); over either cap a new connection gets a canned 503 and is
 * closed at once, and is counted (http_server_get_stats).  The handler owns the exchange until it calls
 * http_exchange_respond() exactly once, synchronously or later from the loop.
 * If the client goes away first (EOF/reset while the request is pending) the
 * exchange is marked cancelled and respond() merely frees it.  Malformed or
 * smuggling-shaped requests get 400 and the connection is closed; every error
 * that leaves unread request bytes closes the connection after the response
 * (FIN first, then a short lingering read so the client sees the answer).
 * Every response carries Content-Type (application/json unless the handler
 * chose another with http_exchange_respond_typed), Content-Length and
 * X-Request-Id; HTTP/1.0, "Connection: close", upgrades and draining close the
 * connection after the response.  Keep-alive connections idle longer than
 * idle_timeout_ms are closed silently.  One access line per request is logged
 * at info level (method, path, status, duration_ms, request_id); header values
 * (Authorization!) and query strings are never logged.
 *
 * Lifecycle: http_server_new -> http_server_listen -> ... ->
 * http_server_stop_accepting (drain: listener closed, idle connections closed,
 * in-flight exchanges finish with Connection: close; poll
 * http_server_active_exchanges() until 0) -> http_server_close (closes every
 * handle; `done` runs from the loop once they are all closed; the server is
 * freed).  Exchanges still held by handlers at close become cancelled and are
 * freed by their respond().  All functions run on the loop thread.
 */
#ifndef FOLLOWUPD_SHARED_HTTP_HTTP_SERVER_H
#define FOLLOWUPD_SHARED_HTTP_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "shared/http/http_router.h"

struct logger;
struct http_server;

/* A field left 0 takes the default shown. */
struct http_limits {
    size_t max_header_bytes;    /* 16384: request line + headers (incl. CRLFs) -> 431 + close */
    size_t max_body_bytes;      /* 65536: decoded body -> 413 + close */
    unsigned header_timeout_ms; /* 10000: whole header section -> 408 + close */
    unsigned body_timeout_ms;   /* 10000: whole body -> 408 + close */
    unsigned idle_timeout_ms;   /* 60000: keep-alive idle -> silent close; also bounds a stalled response write */
    unsigned max_connections;   /* 1024: excess connections get a canned 503 and are closed at once */
    unsigned max_connections_per_peer; /* 64 (at most max_connections): the same for one peer address */
};

/* Extra response header (named to stay clear of the HTTP client's struct http_header). */
struct http_header_kv {
    const char *name;
    const char *value;
};

/* ok != 0 lets the request through.  reason (may be NULL) is logged on rejection;
 * it must not contain secrets. */
typedef void (*http_auth_done)(struct http_exchange *ex, int ok, const char *reason);
/* Called for HTTP_AUTH_TASK routes, with the header section only (the body, if
 * any, is read after approval); must call done exactly once, now or later and
 * in bounded time: the connection has no deadline while it waits (followupd's
 * authenticator waits at most for one JWKS fetch, 10 s). */
typedef void (*http_authenticator)(void *auth_ctx, struct http_exchange *ex, http_auth_done done);

struct http_server_opts {
    const char *listen; /* "127.0.0.1:8080", "[::1]:8080" or ":8080" (all IPv4 interfaces); port 0 = any */
    struct http_limits limits;
    const struct http_route *routes; /* must outlive the server */
    size_t n_routes;
    void *app_ctx;                   /* passed to handlers */
    http_authenticator authenticate; /* required when a route uses HTTP_AUTH_TASK */
    void *auth_ctx;
};

/* NULL on invalid options (bad route table, TASK routes without authenticator) or OOM;
 * the reason is logged.  Copies opts (not the route table). */
struct http_server *http_server_new(uv_loop_t *loop, struct logger *lg, const struct http_server_opts *opts);
/* Bind + listen.  0 ok; -1 with err filled. */
int http_server_listen(struct http_server *srv, char *err, size_t errlen);
/* Serve an already-connected stream socket exactly like an accepted connection
 * (same limits, timeouts and connection cap; no listener needed).  For handing
 * over a socket and for driving the server in-process, e.g. one end of a
 * socketpair in tests and the fuzzer.  The server owns fd from this call on:
 * on failure it is closed.  0 ok; -1 while draining or closed, at the
 * connection limit, or when the socket cannot be used. */
int http_server_adopt(struct http_server *srv, uv_os_sock_t fd);
/* Actually bound port, or -1 when not listening. */
int http_server_port(const struct http_server *srv);
/* Graceful drain: close the listener, close idle keep-alive connections, answer
 * in-flight requests with Connection: close. */
void http_server_stop_accepting(struct http_server *srv);
/* Requests dispatched and not yet fully answered (response written or cancelled). */
size_t http_server_active_exchanges(const struct http_server *srv);
/* Open client connections (for metrics and tests). */
size_t http_server_connection_count(const struct http_server *srv);
struct http_server_stats {
    size_t connections;               /* open client connections */
    uint64_t refused_max_connections; /* refused (canned 503) at max_connections, since start */
    uint64_t refused_per_peer;        /* refused because their peer address held max_connections_per_peer */
};
void http_server_get_stats(const struct http_server *srv, struct http_server_stats *out);
/* Heap bytes one connection holds, at most, while its request is not
 * authenticated: the connection with its input buffer, one exchange with its
 * header arena (max_header_bytes + 216), the server's own answer being written
 * (404/405/401/413/...) and allocator overhead.  A body is never allocated
 * before authentication (see above), so max_connections times this bounds what
 * unauthenticated clients can make the server hold, plus what the authenticator
 * keeps per pending check and the responses of public handlers. */
size_t http_server_preauth_bytes_max(const struct http_limits *limits);
/* Optional observer of every answered exchange (metrics): the matched route
 * (NULL for 404/405), the status sent (or chosen, if the client was gone) and
 * the time since the request started arriving. Called from respond(). */
typedef void (*http_response_observer)(void *arg, const struct http_route *route, int status, uint64_t duration_ns);
void http_server_set_observer(struct http_server *srv, http_response_observer observer, void *arg);
/* Close listener and all connections; done(arg) runs from the loop when every
 * handle is closed, after which srv is freed.  done may be NULL. */
void http_server_close(struct http_server *srv, void (*done)(void *), void *arg);

/* Exchange accessors (valid until the response is sent). */
const char *http_exchange_method(const struct http_exchange *ex);
const char *http_exchange_path(const struct http_exchange *ex);                    /* without query string */
const char *http_exchange_query(const struct http_exchange *ex);                   /* after '?', "" if none */
const char *http_exchange_param(const struct http_exchange *ex, const char *name); /* route param */
const char *http_exchange_header(const struct http_exchange *ex,
                                 const char *name); /* case-insensitive; first; NULL if absent */
size_t http_exchange_header_count(const struct http_exchange *ex, const char *name);
const char *http_exchange_body(const struct http_exchange *ex, size_t *len); /* NUL-terminated, "" if none */
const char *http_exchange_request_id(const struct http_exchange *ex);        /* sane X-Request-Id, else 16 random hex */

/* Respond exactly once (now or later from the loop).  json_body may be NULL (empty
 * body).  Adds Content-Type: application/json, Content-Length, X-Request-Id and
 * Connection handling; extra headers with those names, or with invalid names or
 * values, are dropped (logged).  204/304 carry neither body nor Content-Length;
 * HEAD gets the headers only.  If the client is gone the exchange is just freed. */
void http_exchange_respond(struct http_exchange *ex, int status, const char *json_body,
                           const struct http_header_kv *extra, size_t n_extra);
/* Same with an explicit Content-Type (a valid field value) and a body of
 * body_len bytes (need not be JSON or NUL-terminated), e.g. /metrics text. */
void http_exchange_respond_typed(struct http_exchange *ex, int status, const char *content_type, const char *body,
                                 size_t body_len, const struct http_header_kv *extra, size_t n_extra);
/* 1 when the client connection is gone (or the server closed): skip the work, still respond. */
int http_exchange_is_cancelled(const struct http_exchange *ex);

#endif
