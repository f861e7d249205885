/*
 * shared/http/http_server_internal.h — what the three parts of the embedded
 * HTTP server share; not for use outside shared/http (the API is http_server.h).
 *
 * The server is split along its seams, as nginx splits its HTTP core:
 *
 *   http_server.c    the connection and accept state machine: the listener and
 *                    adopted sockets, the connection caps (total and per peer),
 *                    the one timer per connection (idle, header, body, write,
 *                    linger), keep-alive, close callbacks, stats, dispatch, the
 *                    body gate's connection side, and the exchange lifecycle
 *                    (new, live, dormant, retired, freed);
 *   http_request.c   request parsing: the raw header-section scanner, the llhttp
 *                    callbacks that fill an exchange (URL and headers in its
 *                    arena, the body in its body buffer, the header limits), the
 *                    body gate's parser side, request ids, and the accessors of
 *                    the parsed request (http_exchange_method() ...);
 *   http_response.c  response bytes: the status table, the JSON error bodies and
 *                    the serialiser (status line, headers, Content-Length, body).
 *
 * A struct http_conn owns at most one struct http_exchange at a time (conn->ex):
 * the parser fills it, the connection dispatches it, and respond() turns it into
 * response bytes that the connection writes.  The parser reaches back into the
 * connection through two calls only, http_conn_new_exchange() when a message
 * begins and http_conn_headers_done() when a header section without a body is
 * complete; it stops llhttp (HPE_PAUSED, or HPE_USER with conn->fail_status)
 * and leaves every other decision to the connection.  All of it runs on the
 * loop thread.
 */
#ifndef FOLLOWUPD_SHARED_HTTP_HTTP_SERVER_INTERNAL_H
#define FOLLOWUPD_SHARED_HTTP_HTTP_SERVER_INTERNAL_H

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#include "shared/http/http_router.h"
#include "shared/http/http_server.h"

#define CONN_INBUF_SIZE 16384u /* raw bytes buffered per connection */
#define HTTP_MAX_HEADERS 100u  /* header lines per request; more -> 431 */
#define REQUEST_ID_MAX 64u
#define JSON_CONTENT_TYPE "application/json"

enum conn_state { CS_READING, CS_AUTHENTICATING, CS_DISPATCHED, CS_WRITING, CS_LINGER, CS_CLOSING };
enum timer_kind { TK_NONE, TK_IDLE, TK_HEADER, TK_BODY, TK_WRITE, TK_LINGER };
enum ex_phase { PH_PARSING, PH_AUTH, PH_HANDLER };

/* Raw scan of one request's header section (request line + header lines). */
struct hdr_scan {
    int active;       /* still inside the header section */
    size_t bytes;     /* bytes of this request's header section seen so far */
    size_t line_len;  /* non-CR bytes on the current line */
    unsigned line_no; /* 0 = request line */
    unsigned request_line_spaces;
};

struct header_entry {
    size_t name_off;
    size_t value_off;
};

struct http_exchange {
    struct http_server *srv;           /* NULL once the server closed */
    struct http_conn *conn;            /* NULL once the connection is gone */
    struct http_exchange *prev, *next; /* server's list of live exchanges */
    enum ex_phase phase;
    int live; /* dispatched and counted in srv->active */
    const struct http_route *route;
    struct http_params params;
    const char *method; /* llhttp's static name */
    char *arena;        /* URL, header names and values, NUL-terminated */
    size_t arena_len, arena_cap;
    size_t url_off, path_off, query_off;
    int url_done, target_ok, headers_done;
    int routed;          /* route (and params) chosen */
    int authenticated;   /* the authenticator approved it */
    int at_body_gate;    /* llhttp paused after the headers of a request with a body */
    int body_unread;     /* the body has not been admitted: any answer closes the connection */
    int expect_continue; /* "100 Continue" owed once the body is admitted */
    uint64_t content_length;
    struct header_entry hdrs[HTTP_MAX_HEADERS];
    size_t n_hdrs;
    int in_field; /* a header name is being received */
    size_t cur_name_off, cur_value_off;
    size_t trailer_bytes, chunk_ext_bytes;
    char *body;
    size_t body_len, body_cap;
    int http_minor, keep_alive, is_head;
    char request_id[REQUEST_ID_MAX + 1];
    struct trace_context trace; /* from traceparent / X-Cloud-Trace-Context; trace_id "" when none */
    uint64_t start_ns;
};

/* A peer's address as a comparable key (IPv4-mapped IPv6 counts as IPv4). */
struct peer_addr {
    unsigned char family; /* AF_INET or AF_INET6; 0: no IP peer (e.g. a socketpair) */
    unsigned char bytes[16];
};

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write_req;
    uv_write_t continue_req;
    uv_shutdown_t shutdown_req;
    struct http_server *srv;
    struct http_conn *prev, *next;
    int handles_open;
    enum conn_state state;
    enum timer_kind timer_kind;
    int reading;
    int close_after;
    int write_counts_active; /* the pending write belongs to a live exchange */
    int fail_status;         /* chosen by a parser callback that stopped parsing */
    llhttp_t parser;
    struct hdr_scan scan;
    struct http_exchange *ex; /* request being parsed or pending */
    struct peer_addr peer;
    char *out; /* response being written */
    size_t in_off, in_len;
    char inbuf[CONN_INBUF_SIZE];
};

struct http_server {
    uv_loop_t *loop;
    struct logger *lg;
    struct http_server_opts opts;
    struct http_limits limits;
    uv_tcp_t listener;
    uv_timer_t spare; /* closed by http_server_close so `done` is always deferred */
    int listener_open, spare_open, listening, draining, closing, saturated;
    struct http_conn *conns;
    size_t n_conns; /* connection structs not yet freed */
    size_t n_open;  /* of those, not closing: what the connection limits count */
    size_t n_rejects, active;
    uint64_t refused_max_connections, refused_per_peer;
    uint64_t peer_warned_ms; /* loop time of the last per-peer refusal warning */
    struct http_exchange *live;
    uint64_t id_fallback;
    void (*done)(void *);
    void *done_arg;
    http_response_observer observer; /* optional (metrics) */
    void *observer_arg;
};

/* The token and field-value grammars (RFC 9110), for request and response headers alike. */
static inline int http_is_tchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Field-value bytes: visible ASCII, SP, HTAB, obs-text; no other controls. */
static inline int http_is_field_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7F);
}

/* ---- http_request.c ---- */

/* The llhttp callbacks of the request parser, for llhttp_init(). */
const llhttp_settings_t *http_req_parser_settings(void);
/* Feeds raw bytes to the header-section scanner; max is max_header_bytes.
 * Returns 0, or an HTTP status (400/431) to fail with. */
int http_req_scan(struct hdr_scan *s, size_t max, const char *data, size_t len);
/* The request's trace id (32 hex) when one well-formed trace header named it, else NULL (ex may be NULL). */
const char *http_req_trace_id(const struct http_exchange *ex);
/* First value of header `name` (case-insensitive) or NULL; *count (may be NULL) gets how many there are. */
const char *http_req_find_header(const struct http_exchange *ex, const char *name, size_t *count);
/* The most a header arena ever holds under these limits. */
size_t http_req_arena_cap(const struct http_limits *l);
/* Grow the body buffer to cap bytes plus a NUL.  0 ok, -1 OOM. */
int http_req_body_reserve(struct http_exchange *ex, size_t cap);
/* 16 random hex digits and a NUL into out. */
void http_req_new_request_id(struct http_server *srv, char out[17]);

/* ---- http_response.c ---- */

/* The JSON body of the server's own answer for status ("internal_error" for an unlisted one). */
const char *http_resp_error_body(int status);
/* 1 when ct is a non-empty, valid header field value. */
int http_resp_content_type_ok(const char *ct);
/* Serialise a complete response (status line, Content-Type, Content-Length
 * unless 204/304, X-Request-Id, Connection: close when close, the allowed extra
 * headers, then the body unless head).  Malloc'ed, *out_len set; NULL on OOM. */
char *http_resp_build(struct logger *lg, int status, const char *content_type, const char *body, size_t body_len,
                      const struct http_header_kv *extra, size_t n_extra, const char *request_id, int close, int head,
                      size_t *out_len);

/* ---- http_server.c, called by the parser ---- */

/* A new exchange owned by conn (not live yet); NULL on OOM. */
struct http_exchange *http_conn_new_exchange(struct http_conn *conn);
/* The header section of a request without a body is complete: its header deadline ends. */
void http_conn_headers_done(struct http_conn *conn);

#endif
