/*
 * shared/http/http_router — the static route table of the embedded HTTP server.
 *
 * A route is one row {method, pattern, handler, auth}.  Patterns are absolute
 * paths split on '/'; a segment ":name" captures one non-empty path segment as
 * the parameter `name`, every other segment must match byte for byte (case
 * sensitive, no normalisation: "/a/" and "/a//b" do not match "/a" or "/a/b").
 * http_router_match() walks the table in order and picks the first row whose
 * pattern and method both match (200).  When some pattern matches the path but
 * none of them with this method it answers 405 and lists the methods of those
 * rows in `allow` ("GET, POST"); otherwise 404.  Captured values are
 * percent-decoded into the caller's struct http_params; a value that does not
 * decode cleanly (bad %XX, %00, "." or "..") makes its row not match.
 *
 * The router is pure: no allocation, no I/O, no globals.
 */
#ifndef FOLLOWUPD_SHARED_HTTP_HTTP_ROUTER_H
#define FOLLOWUPD_SHARED_HTTP_HTTP_ROUTER_H

#include <stddef.h>

/* Who may make the server read a request body.  The server routes and
 * authenticates a request from its header section alone, before a byte of its
 * body is buffered (see http_server.h). */
enum http_auth {
    HTTP_AUTH_NONE = 0,           /* public, takes no body: a request that has one is answered 413 from its headers */
    HTTP_AUTH_TASK = 1,           /* the server's authenticator must approve the headers; only then is a body read */
    HTTP_AUTH_NONE_WITH_BODY = 2, /* public and reads a body without authentication (tools and tests only) */
};

struct http_exchange; /* one request/response, see http_server.h */
typedef void (*http_handler)(struct http_exchange *ex, void *app_ctx);

struct http_route {
    const char *method;  /* "GET", "POST", ... (exact, case sensitive) */
    const char *pattern; /* e.g. "/api/deals-pipeline/bookings/:id/execute-followup" */
    http_handler handler;
    enum http_auth auth;
};

#define HTTP_ROUTER_MAX_PARAMS 8
#define HTTP_ROUTER_PARAM_BYTES 1024 /* decoded values, NUL-terminated, all params together */

struct http_param {
    const char *name; /* points into the route pattern (not NUL-terminated there) */
    size_t name_len;
    size_t value_off; /* decoded, NUL-terminated value at buf + value_off */
};

/* Self-contained (offsets, not pointers, into buf): may be copied by value. */
struct http_params {
    size_t n;
    struct http_param items[HTTP_ROUTER_MAX_PARAMS];
    size_t used;
    char buf[HTTP_ROUTER_PARAM_BYTES];
};

/* Returns 200 (out and params filled), 404 or 405 (allow filled when allow_len > 0;
 * methods that do not fit are left out).  path is without query string. */
int http_router_match(const struct http_route *routes, size_t n, const char *method, const char *path,
                      const struct http_route **out, struct http_params *params, char *allow, size_t allow_len);

/* Value of the parameter `name`, or NULL. */
const char *http_params_get(const struct http_params *params, const char *name);

/* Check a table before use: every row has a method token, a pattern starting
 * with '/', non-empty ":names" and a handler.  Returns 0, or -1 with err filled. */
int http_router_validate(const struct http_route *routes, size_t n, char *err, size_t errlen);

#endif
