/*
 * shared/http/http_server — embedded HTTP/1.1 server (see http_server.h for the API).
 *
 * Design.  A connection is a small state machine:
 *
 *   READING ──request complete──▶ DISPATCHED ──respond()──▶ WRITING ──written──▶ READING
 *      │  ▲                          ▲                        │ (close after)
 *      │  └─approved── AUTHENTICATING┤ rejected (401)         │
 *      │ headers of a request        │                        │
 *      ├─with a body (body gate)─────┴─ 404/405/413 ──────────┤
 *      └──parse error / limit / timeout──▶ WRITING ────────────┴──▶ LINGER ──▶ CLOSING
 *
 * The body gate: on_headers_complete pauses llhttp right after the header
 * section of a request that declares a body; conn_body_gate() stops reading,
 * routes the request and, for a task route, asks the authenticator
 * (AUTHENTICATING: no reading, no timer, the exchange live so a close cancels
 * it).  Only conn_admit_body() reserves the body, sends an owed "100 Continue",
 * arms the body deadline and resumes parsing and reading.  An answer while the
 * body is unread (ex->body_unread) always closes the connection.
 *
 * Bytes land in a fixed per-connection input buffer.  In READING they go first
 * through a tiny raw scanner (struct hdr_scan) that owns the header-section
 * rules llhttp does not enforce in its default build: the byte limit over the
 * request line and all header lines (so pieces delivered across callbacks are
 * counted exactly), NUL bytes, obs-fold (a header line starting with SP/HT) and
 * the "METHOD SP target SP version" shape; then through llhttp, whose callbacks
 * copy the URL and headers into the request's arena and the body into its body
 * buffer.  on_message_complete pauses llhttp, so the parser stops exactly at the
 * end of one request; the rest of the buffer (pipelined requests) waits until
 * the response has been written, then parsing resumes where it stopped.  While a
 * request is pending the socket is still read (to notice a client that goes
 * away) until the buffer is full; then reading stops, which pushes back on the
 * client.  One timer per connection serves the idle, header, body, write and
 * linger deadlines; header and body deadlines are total, not per read, so a
 * slow-drip client cannot extend them.
 *
 * New connections are counted against max_connections (n_open: closing ones
 * do not count, so a burst of refusals never locks others out) and against
 * max_connections_per_peer, by a walk over the open connections comparing
 * peer addresses (O(max_connections), stopping at the cap).
 *
 * A request becomes a live exchange when it is dispatched: the server counts it
 * (http_server_active_exchanges) until its response is written or, when the
 * client vanished, until the handler calls respond(), which then just frees it.
 * Handles are freed only in their close callbacks; the server itself is freed
 * once the listener, a spare timer and every connection handle are closed, and
 * then calls the caller's done callback — always from the loop.
 */
#include "shared/http/http_server.h"

#include <llhttp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "utils/log.h"

#define CONN_INBUF_SIZE 16384u /* raw bytes buffered per connection */
#define HTTP_MAX_HEADERS 100u  /* header lines per request; more -> 431 */
#define CHUNK_EXT_MAX 4096u    /* chunk-extension bytes per request; more -> 400 */
#define LINGER_MAX_MS 2000u    /* read-and-discard after a closing response */
#define LISTEN_BACKLOG 511
#define LOG_PATH_MAX 256u
#define REQUEST_ID_MAX 64u
#define ARENA_MIN 1024u
#define RESPONSE_PREAUTH_MAX 1024u /* the server's own answers (401, 404, 413, ...) fit in this */
#define MALLOC_CHUNK_OVERHEAD 32u  /* allocator bookkeeping per allocation, rounded up */
#define PEER_WARN_INTERVAL_MS 1000u
#define DEFAULT_MAX_CONNECTIONS_PER_PEER 64u

#define JSON_CONTENT_TYPE "application/json"
#define STATUS_SILENT_CLOSE (-1) /* fail_status: close without a response */

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
    char *out;                /* response being written */
    size_t in_off, in_len;
    char inbuf[CONN_INBUF_SIZE];
};

/* A connection over the limit: accepted, sent a canned 503, closed. */
struct rejected_conn {
    uv_tcp_t tcp;
    struct http_server *srv;
};

struct http_server {
    uv_loop_t *loop;
    struct logger *lg;
    struct http_server_opts opts;
    struct http_limits limits;
    llhttp_settings_t settings;
    uv_tcp_t listener;
    uv_timer_t spare; /* closed by http_server_close so `done` is always deferred */
    int listener_open, spare_open, listening, draining, closing, saturated;
    struct http_conn *conns;
    size_t n_conns;  /* connection structs not yet freed */
    size_t n_open;   /* of those, not closing: what the connection limits count */
    size_t n_rejects, active;
    uint64_t refused_max_connections, refused_per_peer;
    uint64_t peer_warned_ms; /* loop time of the last per-peer refusal warning */
    struct http_exchange *live;
    uint64_t id_fallback;
    void (*done)(void *);
    void *done_arg;
    http_response_observer observer;   /* optional (metrics) */
    void *observer_arg;
};

static void conn_close(struct http_conn *conn);
static void conn_parse(struct http_conn *conn);
static void server_maybe_finish(struct http_server *srv);

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

struct sbuf {
    char *data;
    size_t len, cap;
    int oom;
};

static void sb_append(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    sb_append(b, s, strlen(s));
}

static void sb_header(struct sbuf *b, const char *name, const char *value)
{
    sb_puts(b, name);
    sb_append(b, ": ", 2);
    sb_puts(b, value);
    sb_append(b, "\r\n", 2);
}

static int is_tchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Field-value bytes: visible ASCII, SP, HTAB, obs-text; no other controls. */
static int is_field_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7F);
}

static const char *status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 425:
        return "Too Early";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Status";
    }
}

static const char *status_error_body(int status)
{
    switch (status) {
    case 400:
        return "{\"error\":\"bad_request\"}";
    case 401:
        return "{\"error\":\"unauthorized\"}";
    case 404:
        return "{\"error\":\"not_found\"}";
    case 405:
        return "{\"error\":\"method_not_allowed\"}";
    case 408:
        return "{\"error\":\"request_timeout\"}";
    case 413:
        return "{\"error\":\"payload_too_large\"}";
    case 417:
        return "{\"error\":\"expectation_failed\"}";
    case 501:
        return "{\"error\":\"not_implemented\"}";
    case 431:
        return "{\"error\":\"request_header_fields_too_large\"}";
    case 503:
        return "{\"error\":\"service_unavailable\"}";
    case 505:
        return "{\"error\":\"http_version_not_supported\"}";
    default:
        return "{\"error\":\"internal_error\"}";
    }
}

static void generate_request_id(struct http_server *srv, char out[17])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[8];
    if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0) {
        uint64_t v = uv_hrtime() ^ (++srv->id_fallback * 0x9E3779B97F4A7C15ull);
        for (size_t i = 0; i < sizeof(rnd); i++)
            rnd[i] = (unsigned char)(v >> (8 * i));
    }
    for (size_t i = 0; i < sizeof(rnd); i++) {
        out[2 * i] = hex[rnd[i] >> 4];
        out[2 * i + 1] = hex[rnd[i] & 15];
    }
    out[16] = '\0';
}

static int request_id_is_sane(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > REQUEST_ID_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                 c == '-';
        if (!ok) return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Exchanges                                                                 */

static struct http_exchange *exchange_new(struct http_conn *conn)
{
    struct http_exchange *ex = calloc(1, sizeof(*ex));
    if (ex == NULL) return NULL;
    ex->srv = conn->srv;
    ex->conn = conn;
    ex->phase = PH_PARSING;
    ex->start_ns = uv_hrtime();
    return ex;
}

static void exchange_free(struct http_exchange *ex)
{
    free(ex->arena);
    free(ex->body);
    free(ex);
}

static void exchange_unlink(struct http_exchange *ex)
{
    struct http_server *srv = ex->srv;
    if (!ex->live || srv == NULL) return;
    if (ex->prev != NULL)
        ex->prev->next = ex->next;
    else
        srv->live = ex->next;
    if (ex->next != NULL) ex->next->prev = ex->prev;
    ex->prev = ex->next = NULL;
}

static void exchange_go_live(struct http_exchange *ex)
{
    struct http_server *srv = ex->srv;
    ex->live = 1;
    ex->next = srv->live;
    if (srv->live != NULL) srv->live->prev = ex;
    srv->live = ex;
    srv->active++;
}

/* A live exchange goes back to the parser (its body is being read): no longer counted. */
static void exchange_go_dormant(struct http_exchange *ex)
{
    if (ex->live && ex->srv != NULL) {
        exchange_unlink(ex);
        ex->srv->active--;
    }
    ex->live = 0;
}

/* Forget a live exchange whose response will not be written; free it. */
static void exchange_retire(struct http_exchange *ex)
{
    if (ex->live && ex->srv != NULL) {
        exchange_unlink(ex);
        ex->srv->active--;
    }
    exchange_free(ex);
}

/* The header arena never grows past this: the header bytes plus a NUL per name and value. */
static size_t arena_hard_cap(const struct http_limits *l)
{
    return l->max_header_bytes + 2 * HTTP_MAX_HEADERS + 16;
}

/* Reserve room for n more arena bytes plus a terminating NUL. */
static int arena_reserve(struct http_exchange *ex, size_t n)
{
    size_t hard_cap = arena_hard_cap(&ex->srv->limits);
    size_t need = ex->arena_len + n + 1;
    if (need <= ex->arena_cap) return 0;
    if (need > hard_cap) return -1;
    size_t cap = ex->arena_cap ? ex->arena_cap : ARENA_MIN;
    while (cap < need)
        cap *= 2;
    if (cap > hard_cap) cap = hard_cap;
    char *p = realloc(ex->arena, cap);
    if (p == NULL) return -1;
    ex->arena = p;
    ex->arena_cap = cap;
    return 0;
}

static int arena_append(struct http_exchange *ex, const char *at, size_t n)
{
    if (arena_reserve(ex, n) != 0) return -1;
    memcpy(ex->arena + ex->arena_len, at, n);
    ex->arena_len += n;
    return 0;
}

static int arena_terminate(struct http_exchange *ex)
{
    if (arena_reserve(ex, 0) != 0) return -1;
    ex->arena[ex->arena_len++] = '\0';
    return 0;
}

static const char *find_header(const struct http_exchange *ex, const char *name, size_t *count)
{
    const char *first = NULL;
    size_t n = 0;
    for (size_t i = 0; i < ex->n_hdrs; i++) {
        if (strcasecmp(ex->arena + ex->hdrs[i].name_off, name) != 0) continue;
        if (first == NULL) first = ex->arena + ex->hdrs[i].value_off;
        n++;
    }
    if (count != NULL) *count = n;
    return first;
}

/* Origin-form only: "/" followed by visible ASCII without '#'; split off the query. */
static int exchange_prepare_target(struct http_exchange *ex)
{
    if (!ex->url_done) return -1;
    char *url = ex->arena + ex->url_off;
    if (url[0] != '/') return -1;
    for (const char *p = url; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x21 || c > 0x7E || c == '#') return -1;
    }
    ex->path_off = ex->url_off;
    char *q = strchr(url, '?');
    if (q != NULL) {
        *q = '\0';
        ex->query_off = (size_t)(q + 1 - ex->arena);
    } else {
        ex->query_off = ex->url_off + strlen(url);
    }
    ex->target_ok = 1;
    return 0;
}

static void exchange_choose_request_id(struct http_exchange *ex)
{
    size_t n = 0;
    const char *given = find_header(ex, "X-Request-Id", &n);
    if (n == 1 && request_id_is_sane(given)) {
        memcpy(ex->request_id, given, strlen(given) + 1);
        return;
    }
    generate_request_id(ex->srv, ex->request_id);
}

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */

static void log_access(struct http_server *srv, const struct http_exchange *ex, int status, const char *request_id,
                       int client_gone)
{
    if (srv == NULL || !log_enabled(srv->lg, LOG_LEVEL_INFO)) return;
    char status_s[16], dur_s[32], path[LOG_PATH_MAX + 1];
    const char *method = ex != NULL && ex->method != NULL ? ex->method : "-";
    snprintf(path, sizeof(path), "%s", ex != NULL && ex->target_ok ? ex->arena + ex->path_off : "-");
    snprintf(status_s, sizeof(status_s), "%d", status);
    uint64_t start = ex != NULL ? ex->start_ns : uv_hrtime();
    snprintf(dur_s, sizeof(dur_s), "%llu", (unsigned long long)((uv_hrtime() - start) / 1000000u));
    const char *fields[] = {
        "method", method, "path", path, "status", status_s, "duration_ms", dur_s, client_gone ? "client_gone" : NULL,
        "true",   NULL};
    log_write(srv->lg, LOG_LEVEL_INFO, &(struct log_ctx){.request_id = request_id}, fields, "http request");
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                 */

static int extra_header_allowed(struct logger *lg, const struct http_header_kv *h)
{
    static const char *const reserved[] = {"Content-Type",      "Content-Length", "Connection",
                                           "Transfer-Encoding", "X-Request-Id",   NULL};
    if (h->name == NULL || h->value == NULL || h->name[0] == '\0') goto reject;
    for (const char *p = h->name; *p != '\0'; p++)
        if (!is_tchar((unsigned char)*p)) goto reject;
    for (const char *p = h->value; *p != '\0'; p++)
        if (!is_field_value_char((unsigned char)*p)) goto reject;
    for (size_t i = 0; reserved[i] != NULL; i++)
        if (strcasecmp(h->name, reserved[i]) == 0) goto reject;
    return 1;
reject:
    LOG_KV(lg, LOG_LEVEL_WARN, NULL, ((const char *[]){"header", h->name ? h->name : "(null)", NULL}),
           "dropping invalid or reserved response header");
    return 0;
}

/* Serialize a complete response; NULL on OOM. */
static char *build_response(struct logger *lg, int status, const char *content_type, const char *body,
                            size_t body_len, const struct http_header_kv *extra, size_t n_extra,
                            const char *request_id, int close, int head, size_t *out_len)
{
    struct sbuf b = {0};
    char line[64];
    int no_body = status == 204 || status == 304;
    if (body == NULL || no_body) body_len = 0;
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, status_reason(status));
    sb_puts(&b, line);
    sb_header(&b, "Content-Type", content_type);
    if (!no_body) {
        snprintf(line, sizeof(line), "%zu", body_len);
        sb_header(&b, "Content-Length", line);
    }
    sb_header(&b, "X-Request-Id", request_id);
    if (close) sb_header(&b, "Connection", "close");
    for (size_t i = 0; i < n_extra; i++)
        if (extra_header_allowed(lg, &extra[i])) sb_header(&b, extra[i].name, extra[i].value);
    sb_append(&b, "\r\n", 2);
    if (!head && body_len > 0) sb_append(&b, body, body_len);
    if (b.oom) {
        free(b.data);
        return NULL;
    }
    *out_len = b.len;
    return b.data;
}

/* ------------------------------------------------------------------------ */
/* Connection plumbing                                                       */

static uv_stream_t *conn_stream(struct http_conn *conn)
{
    return (uv_stream_t *)&conn->tcp;
}

static void conn_timer_cb(uv_timer_t *t);

static void conn_arm_timer(struct http_conn *conn, enum timer_kind kind, unsigned ms)
{
    conn->timer_kind = kind;
    uv_timer_start(&conn->timer, conn_timer_cb, ms, 0);
}

static void conn_stop_timer(struct http_conn *conn)
{
    conn->timer_kind = TK_NONE;
    uv_timer_stop(&conn->timer);
}

static void conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct http_conn *conn = h->data;
    (void)hint;
    if (conn->state == CS_LINGER) conn->in_off = conn->in_len = 0;
    if (conn->in_off > 0) {
        memmove(conn->inbuf, conn->inbuf + conn->in_off, conn->in_len - conn->in_off);
        conn->in_len -= conn->in_off;
        conn->in_off = 0;
    }
    buf->base = conn->inbuf + conn->in_len;
    buf->len = CONN_INBUF_SIZE - conn->in_len;
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_read_start(struct http_conn *conn)
{
    if (conn->reading || conn->state == CS_CLOSING || conn->state == CS_AUTHENTICATING) return;
    if (uv_read_start(conn_stream(conn), conn_alloc_cb, conn_read_cb) != 0) {
        conn_close(conn);
        return;
    }
    conn->reading = 1;
}

static void conn_read_stop(struct http_conn *conn)
{
    if (!conn->reading) return;
    uv_read_stop(conn_stream(conn));
    conn->reading = 0;
}

/* Pending (unparsed) bytes fill the buffer: stop reading until they are parsed. */
static int conn_inbuf_full(const struct http_conn *conn)
{
    return conn->in_off == 0 && conn->in_len == CONN_INBUF_SIZE;
}

static void conn_backpressure(struct http_conn *conn)
{
    if (conn_inbuf_full(conn)) conn_read_stop(conn);
}

static void conn_handle_closed_cb(uv_handle_t *h)
{
    struct http_conn *conn = h->data;
    if (--conn->handles_open > 0) return;
    struct http_server *srv = conn->srv;
    if (conn->prev != NULL)
        conn->prev->next = conn->next;
    else
        srv->conns = conn->next;
    if (conn->next != NULL) conn->next->prev = conn->prev;
    srv->n_conns--;
    free(conn->out);
    free(conn);
    server_maybe_finish(srv);
}

static void conn_close(struct http_conn *conn)
{
    if (conn->state == CS_CLOSING) return;
    conn->state = CS_CLOSING;
    if (--conn->srv->n_open < conn->srv->limits.max_connections) conn->srv->saturated = 0;
    struct http_exchange *ex = conn->ex;
    conn->ex = NULL;
    if (ex != NULL) {
        if (ex->live)
            ex->conn = NULL; /* the handler still owns it: cancelled */
        else
            exchange_free(ex);
    }
    conn_read_stop(conn);
    conn_stop_timer(conn);
    uv_close((uv_handle_t *)&conn->timer, conn_handle_closed_cb);
    uv_close((uv_handle_t *)&conn->tcp, conn_handle_closed_cb);
}

static void conn_shutdown_cb(uv_shutdown_t *req, int status)
{
    struct http_conn *conn = req->data;
    if (status < 0 && conn->state == CS_LINGER) conn_close(conn);
}

/* Final response written: send FIN, then discard input until EOF or a short deadline. */
static void conn_begin_linger(struct http_conn *conn)
{
    unsigned linger = conn->srv->limits.header_timeout_ms;
    conn->state = CS_LINGER;
    conn->in_off = conn->in_len = 0;
    conn_arm_timer(conn, TK_LINGER, linger < LINGER_MAX_MS ? linger : LINGER_MAX_MS);
    conn->shutdown_req.data = conn;
    if (uv_shutdown(&conn->shutdown_req, conn_stream(conn), conn_shutdown_cb) != 0) {
        conn_close(conn);
        return;
    }
    conn_read_start(conn);
}

/* Ready for the next request on a keep-alive connection. */
static void conn_reset_for_next(struct http_conn *conn)
{
    conn->state = CS_READING;
    conn->fail_status = 0;
    memset(&conn->scan, 0, sizeof(conn->scan));
    conn->scan.active = 1;
    llhttp_resume(&conn->parser);
    conn_arm_timer(conn, TK_IDLE, conn->srv->limits.idle_timeout_ms);
}

static void conn_write_cb(uv_write_t *req, int status)
{
    struct http_conn *conn = req->data;
    struct http_server *srv = conn->srv;
    free(conn->out);
    conn->out = NULL;
    if (conn->write_counts_active) {
        conn->write_counts_active = 0;
        if (!srv->closing && srv->active > 0) srv->active--;
    }
    if (conn->state == CS_CLOSING) return;
    if (status < 0) {
        conn_close(conn);
        return;
    }
    if (conn->close_after) {
        conn_begin_linger(conn);
        return;
    }
    conn_reset_for_next(conn);
    conn_parse(conn);
    if (!conn_inbuf_full(conn)) conn_read_start(conn);
}

/* Takes ownership of buf. */
static void conn_write_response(struct http_conn *conn, char *buf, size_t len, int close)
{
    conn->out = buf;
    conn->state = CS_WRITING;
    conn->close_after |= close;
    conn_arm_timer(conn, TK_WRITE, conn->srv->limits.idle_timeout_ms);
    conn->write_req.data = conn;
    uv_buf_t b = uv_buf_init(buf, (unsigned)len);
    if (uv_write(&conn->write_req, conn_stream(conn), &b, 1, conn_write_cb) != 0) {
        free(conn->out);
        conn->out = NULL;
        if (conn->write_counts_active) {
            conn->write_counts_active = 0;
            if (conn->srv->active > 0) conn->srv->active--;
        }
        conn_close(conn);
    }
}

/* Answer a request that failed before dispatch (parse error, limit, timeout) and close. */
static void conn_fail(struct http_conn *conn, int status)
{
    if (conn->state != CS_READING) return;
    struct http_exchange *ex = conn->ex;
    if (status == STATUS_SILENT_CLOSE) {
        conn_close(conn);
        return;
    }
    char rid_buf[17];
    const char *rid = ex != NULL && ex->request_id[0] != '\0' ? ex->request_id : NULL;
    if (rid == NULL) {
        generate_request_id(conn->srv, rid_buf);
        rid = rid_buf;
    }
    log_access(conn->srv, ex, status, rid, 0);
    size_t len = 0;
    const char *body = status_error_body(status);
    char *buf = build_response(conn->srv->lg, status, JSON_CONTENT_TYPE, body, body != NULL ? strlen(body) : 0, NULL,
                               0, rid, 1, 0, &len);
    conn->ex = NULL;
    if (ex != NULL) exchange_free(ex);
    if (buf == NULL) {
        conn_close(conn);
        return;
    }
    conn_write_response(conn, buf, len, 1);
}

/* ------------------------------------------------------------------------ */
/* Raw header-section scanner                                                */

/* Returns 0, or an HTTP status (400/431) to fail with. */
static int scan_feed(struct http_conn *conn, const char *data, size_t len)
{
    struct hdr_scan *s = &conn->scan;
    size_t max = conn->srv->limits.max_header_bytes;
    if (!s->active || len == 0) return 0;
    if (s->bytes == 0 && conn->timer_kind == TK_IDLE)
        conn_arm_timer(conn, TK_HEADER, conn->srv->limits.header_timeout_ms);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];
        if (++s->bytes > max) return 431;
        if (c == '\0') return 400;
        if (c == '\r') continue;
        if (c == '\n') {
            if (s->line_len == 0) {
                if (s->line_no == 0) continue; /* empty line(s) before the request line */
                s->active = 0;                 /* end of the header section */
                return 0;
            }
            if (s->line_no == 0 && s->request_line_spaces != 2) return 400;
            s->line_no++;
            s->line_len = 0;
            continue;
        }
        if (s->line_len == 0 && s->line_no > 0 && (c == ' ' || c == '\t')) return 400; /* obs-fold */
        if (s->line_no == 0 && (c == ' ' || c == '\t')) {
            if (c == '\t') return 400;
            s->request_line_spaces++;
        }
        s->line_len++;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* llhttp callbacks                                                          */

static int cb_fail(llhttp_t *p, int status)
{
    struct http_conn *conn = p->data;
    if (conn->fail_status == 0) conn->fail_status = status;
    return HPE_USER;
}

static int on_message_begin(llhttp_t *p)
{
    struct http_conn *conn = p->data;
    if (conn->ex != NULL) return cb_fail(p, 500); /* cannot happen: one request at a time */
    conn->ex = exchange_new(conn);
    return conn->ex != NULL ? 0 : cb_fail(p, 500);
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *conn = p->data;
    return arena_append(conn->ex, at, len) == 0 ? 0 : cb_fail(p, 431);
}

static int on_url_complete(llhttp_t *p)
{
    struct http_conn *conn = p->data;
    struct http_exchange *ex = conn->ex;
    size_t url_len = ex->arena_len; /* the URL is the first thing in the arena */
    if (arena_terminate(ex) != 0) return cb_fail(p, 431);
    ex->url_off = 0;
    ex->url_done = url_len > 0;
    return 0;
}

static int count_trailer(llhttp_t *p, size_t len)
{
    struct http_conn *conn = p->data;
    conn->ex->trailer_bytes += len;
    return conn->ex->trailer_bytes > conn->srv->limits.max_header_bytes ? cb_fail(p, 431) : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *conn = p->data;
    struct http_exchange *ex = conn->ex;
    if (ex->headers_done) return count_trailer(p, len); /* trailers: bounded, then ignored */
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)at[i])) return cb_fail(p, 400);
    if (!ex->in_field) {
        if (ex->n_hdrs >= HTTP_MAX_HEADERS) return cb_fail(p, 431);
        ex->in_field = 1;
        ex->cur_name_off = ex->arena_len;
    }
    return arena_append(ex, at, len) == 0 ? 0 : cb_fail(p, 431);
}

static int on_header_field_complete(llhttp_t *p)
{
    struct http_conn *conn = p->data;
    struct http_exchange *ex = conn->ex;
    if (ex->headers_done) return 0;
    ex->in_field = 0;
    if (arena_terminate(ex) != 0) return cb_fail(p, 431);
    ex->cur_value_off = ex->arena_len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *conn = p->data;
    struct http_exchange *ex = conn->ex;
    if (ex->headers_done) return count_trailer(p, len);
    for (size_t i = 0; i < len; i++)
        if (!is_field_value_char((unsigned char)at[i])) return cb_fail(p, 400);
    return arena_append(ex, at, len) == 0 ? 0 : cb_fail(p, 431);
}

static int on_header_value_complete(llhttp_t *p)
{
    struct http_conn *conn = p->data;
    struct http_exchange *ex = conn->ex;
    if (ex->headers_done) return 0;
    while (ex->arena_len > ex->cur_value_off &&
           (ex->arena[ex->arena_len - 1] == ' ' || ex->arena[ex->arena_len - 1] == '\t'))
        ex->arena_len--;
    if (arena_terminate(ex) != 0) return cb_fail(p, 431);
    ex->hdrs[ex->n_hdrs].name_off = ex->cur_name_off;
    ex->hdrs[ex->n_hdrs].value_off = ex->cur_value_off;
    ex->n_hdrs++;
    return 0;
}

static int on_chunk_extension(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *conn = p->data;
    (void)at;
    conn->ex->chunk_ext_bytes += len;
    return conn->ex->chunk_ext_bytes > CHUNK_EXT_MAX ? cb_fail(p, 400) : 0;
}

static void continue_write_cb(uv_write_t *req, int status)
{
    struct http_conn *conn = req->data;
    if (status < 0 && conn->state != CS_CLOSING) conn_close(conn);
}

/* Expect: 100-continue (HTTP/1.1 only) -> "100 Continue" is owed when a body
 * is coming (sent once the body is admitted, never before authentication);
 * any other expectation -> 417.  Returns 0 or an llhttp error. */
static int check_expect(llhttp_t *p, struct http_exchange *ex, int has_body)
{
    size_t n = 0;
    const char *value = find_header(ex, "Expect", &n);
    if (n == 0 || ex->http_minor == 0) return 0;
    if (n != 1 || strcasecmp(value, "100-continue") != 0) return cb_fail(p, 417);
    ex->expect_continue = has_body;
    return 0;
}

static int send_continue(struct http_conn *conn)
{
    static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init((char *)continue_line, sizeof(continue_line) - 1);
    conn->continue_req.data = conn;
    return uv_write(&conn->continue_req, conn_stream(conn), &b, 1, continue_write_cb);
}

static int body_reserve(struct http_exchange *ex, size_t cap)
{
    char *b = realloc(ex->body, cap + 1);
    if (b == NULL) return -1;
    ex->body = b;
    ex->body_cap = cap;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct http_conn *conn = p->data;
    struct http_exchange *ex = conn->ex;
    const struct http_limits *lim = &conn->srv->limits;
    ex->headers_done = 1;
    conn->scan.active = 0; /* llhttp decides where the body starts */
    ex->method = llhttp_method_name((llhttp_method_t)p->method);
    ex->is_head = p->method == HTTP_HEAD;
    if (p->http_major != 1 || p->http_minor > 1) return cb_fail(p, 505);
    ex->http_minor = p->http_minor;
    exchange_choose_request_id(ex);
    if (exchange_prepare_target(ex) != 0) return cb_fail(p, 400);
    size_t hosts = 0;
    find_header(ex, "Host", &hosts);
    if (ex->http_minor == 1 && hosts != 1) return cb_fail(p, 400);
    if (ex->http_minor == 0 && (p->flags & F_TRANSFER_ENCODING)) return cb_fail(p, 400);
    if (p->flags & F_TRANSFER_ENCODING) {
        size_t n_te = 0;
        const char *te = find_header(ex, "Transfer-Encoding", &n_te);
        if (n_te != 1 || strcasecmp(te, "chunked") != 0) return cb_fail(p, 501); /* only plain chunked */
    }
    ex->keep_alive = ex->http_minor == 1 && llhttp_should_keep_alive(p) && !p->upgrade;
    int chunked = (p->flags & F_CHUNKED) != 0;
    uint64_t length = (p->flags & F_CONTENT_LENGTH) ? p->content_length : 0;
    if (length > lim->max_body_bytes) return cb_fail(p, 413);
    int has_body = chunked || length > 0;
    int rc = check_expect(p, ex, has_body);
    if (rc != 0) return rc;
    if (!has_body) {
        conn_stop_timer(conn);
        return 0;
    }
    /* Stop before the body: conn_body_gate() routes and authenticates the
     * request from its headers; nothing of the body is reserved before that. */
    ex->content_length = length;
    ex->at_body_gate = 1;
    ex->body_unread = 1;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *conn = p->data;
    struct http_exchange *ex = conn->ex;
    size_t max = conn->srv->limits.max_body_bytes;
    if (len > max - ex->body_len) return cb_fail(p, 413);
    if (ex->body_len + len > ex->body_cap) {
        size_t cap = ex->body_cap ? ex->body_cap * 2 : 1024;
        while (cap < ex->body_len + len)
            cap *= 2;
        if (cap > max) cap = max;
        if (body_reserve(ex, cap) != 0) return cb_fail(p, 500);
    }
    memcpy(ex->body + ex->body_len, at, len);
    ex->body_len += len;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct http_conn *conn = p->data;
    if (conn->ex->body != NULL) conn->ex->body[conn->ex->body_len] = '\0';
    return HPE_PAUSED; /* one request at a time: resume after the response */
}

static void init_parser_settings(llhttp_settings_t *s)
{
    llhttp_settings_init(s);
    s->on_message_begin = on_message_begin;
    s->on_url = on_url;
    s->on_url_complete = on_url_complete;
    s->on_header_field = on_header_field;
    s->on_header_field_complete = on_header_field_complete;
    s->on_header_value = on_header_value;
    s->on_header_value_complete = on_header_value_complete;
    s->on_headers_complete = on_headers_complete;
    s->on_body = on_body;
    s->on_chunk_extension_name = on_chunk_extension;
    s->on_chunk_extension_value = on_chunk_extension;
    s->on_message_complete = on_message_complete;
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                  */

static void conn_admit_body(struct http_conn *conn);

static void exchange_auth_done(struct http_exchange *ex, int ok, const char *reason)
{
    if (ex == NULL || ex->phase != PH_AUTH) return;
    ex->phase = PH_HANDLER;
    if (ex->conn == NULL || ex->srv == NULL) {
        log_access(ex->srv, ex, 401, ex->request_id, 1);
        exchange_retire(ex);
        return;
    }
    struct http_conn *conn = ex->conn;
    if (conn->state == CS_AUTHENTICATING) conn->state = CS_DISPATCHED; /* answered, or admitted below */
    if (!ok) {
        LOG_KV(ex->srv->lg, LOG_LEVEL_WARN, &(struct log_ctx){.request_id = ex->request_id},
               ((const char *[]){"reason", reason != NULL ? reason : "-", "path", ex->arena + ex->path_off, NULL}),
               "request rejected by authenticator");
        static const struct http_header_kv challenge[] = {{"WWW-Authenticate", "Bearer"}};
        http_exchange_respond(ex, 401, status_error_body(401), challenge, 1);
        return;
    }
    ex->authenticated = 1;
    if (ex->body_unread) {
        conn_admit_body(conn);
        return;
    }
    ex->route->handler(ex, ex->srv->opts.app_ctx);
}

/* Match the route of a live exchange; 404/405 are answered here (0 returned). */
static int exchange_route(struct http_exchange *ex)
{
    struct http_server *srv = ex->srv;
    char allow[128];
    int rc = http_router_match(srv->opts.routes, srv->opts.n_routes, ex->method, ex->arena + ex->path_off, &ex->route,
                               &ex->params, allow, sizeof(allow));
    if (rc == 404) {
        http_exchange_respond(ex, 404, status_error_body(404), NULL, 0);
        return 0;
    }
    if (rc == 405) {
        struct http_header_kv h = {"Allow", allow};
        http_exchange_respond(ex, 405, status_error_body(405), &h, 1);
        return 0;
    }
    ex->routed = 1;
    return 1;
}

static void exchange_authenticate(struct http_exchange *ex)
{
    struct http_server *srv = ex->srv;
    ex->phase = PH_AUTH;
    srv->opts.authenticate(srv->opts.auth_ctx, ex, exchange_auth_done);
}

/* The exchange is live (counted) from here until its response is written. */
static void conn_take_exchange_live(struct http_conn *conn)
{
    conn->state = CS_DISPATCHED;
    conn_stop_timer(conn);
    exchange_go_live(conn->ex);
}

/* A complete request: route, authenticate (unless done at the body gate), run the handler. */
static void conn_dispatch(struct http_conn *conn)
{
    struct http_exchange *ex = conn->ex;
    conn_take_exchange_live(conn);
    conn_backpressure(conn);
    if (!ex->routed && !exchange_route(ex)) return;
    if (ex->route->auth == HTTP_AUTH_TASK && !ex->authenticated) {
        exchange_authenticate(ex);
        return;
    }
    ex->phase = PH_HANDLER;
    ex->route->handler(ex, conn->srv->opts.app_ctx);
}

/* The header section of a request with a body is complete and llhttp stopped
 * right after it; reading is stopped too, so what the connection holds is its
 * fixed input buffer and the header arena.  The request is routed and, for
 * task routes, authenticated from its headers alone; only an approved request
 * (or one for a route that takes a public body) gets to send its body.  Every
 * other answer (404/405, 401, 413 for a public route without a body) is
 * written without reading the body and closes the connection. */
static void conn_body_gate(struct http_conn *conn)
{
    struct http_exchange *ex = conn->ex;
    conn_read_stop(conn);
    conn_take_exchange_live(conn);
    if (!exchange_route(ex)) return;
    switch (ex->route->auth) {
    case HTTP_AUTH_TASK:
        conn->state = CS_AUTHENTICATING;
        exchange_authenticate(ex);
        return;
    case HTTP_AUTH_NONE_WITH_BODY:
        conn_admit_body(conn);
        return;
    case HTTP_AUTH_NONE:
        break;
    }
    http_exchange_respond(ex, 413, status_error_body(413), NULL, 0);
}

/* Let the body in: the parser owns the exchange again until the message is
 * complete (not live, not counted), the body is reserved and timed, a "100
 * Continue" owed is sent, and parsing and reading resume. */
static void conn_admit_body(struct http_conn *conn)
{
    struct http_exchange *ex = conn->ex;
    exchange_go_dormant(ex);
    ex->phase = PH_PARSING;
    ex->body_unread = 0;
    conn->state = CS_READING;
    if (ex->content_length > 0 && body_reserve(ex, (size_t)ex->content_length) != 0) {
        conn_fail(conn, 500);
        return;
    }
    if (ex->expect_continue && send_continue(conn) != 0) {
        conn_close(conn);
        return;
    }
    conn_arm_timer(conn, TK_BODY, conn->srv->limits.body_timeout_ms);
    llhttp_resume(&conn->parser);
    conn_parse(conn);
    if (!conn_inbuf_full(conn)) conn_read_start(conn);
}

/* Parse buffered bytes until they are used up, a request is complete, or an error. */
static void conn_parse(struct http_conn *conn)
{
    if (conn->state == CS_READING && conn->in_off < conn->in_len) {
        const char *data = conn->inbuf + conn->in_off;
        size_t len = conn->in_len - conn->in_off;
        int status = scan_feed(conn, data, len);
        if (status != 0) {
            conn_fail(conn, status);
            return;
        }
        llhttp_errno_t err = llhttp_execute(&conn->parser, data, len);
        if (err == HPE_OK) {
            conn->in_off = conn->in_len = 0;
            return;
        }
        if (err == HPE_PAUSED) {
            conn->in_off += (size_t)(llhttp_get_error_pos(&conn->parser) - data);
            if (conn->ex->at_body_gate) {
                conn->ex->at_body_gate = 0;
                conn_body_gate(conn);
            } else {
                conn_dispatch(conn);
            }
            return;
        }
        LOG_KV(
            conn->srv->lg, LOG_LEVEL_DEBUG, NULL,
            ((const char *[]){"error", llhttp_errno_name(err), "reason", llhttp_get_error_reason(&conn->parser), NULL}),
            "rejecting malformed request");
        conn_fail(conn, conn->fail_status != 0 ? conn->fail_status : 400);
        return;
    }
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct http_conn *conn = s->data;
    (void)buf;
    if (nread == 0) return;
    if (nread == UV_ENOBUFS) {
        conn_read_stop(conn);
        return;
    }
    if (nread < 0) {
        conn_close(conn); /* EOF or reset: a pending exchange becomes cancelled */
        return;
    }
    switch (conn->state) {
    case CS_READING:
        conn->in_len += (size_t)nread;
        conn_parse(conn);
        break;
    case CS_AUTHENTICATING: /* not reading; a read already under way is only buffered */
    case CS_DISPATCHED:
    case CS_WRITING:
        conn->in_len += (size_t)nread;
        conn_backpressure(conn);
        break;
    case CS_LINGER:
        conn->in_off = conn->in_len = 0;
        break;
    case CS_CLOSING:
        break;
    }
}

static void conn_timer_cb(uv_timer_t *t)
{
    struct http_conn *conn = t->data;
    enum timer_kind kind = conn->timer_kind;
    conn->timer_kind = TK_NONE;
    switch (kind) {
    case TK_HEADER:
        conn_fail(conn, conn->scan.bytes > 0 ? 408 : STATUS_SILENT_CLOSE);
        break;
    case TK_BODY:
        conn_fail(conn, 408);
        break;
    case TK_IDLE:
    case TK_WRITE:
    case TK_LINGER:
        conn_close(conn);
        break;
    case TK_NONE:
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* Accepting                                                                 */

static void rejected_closed_cb(uv_handle_t *h)
{
    struct rejected_conn *r = h->data;
    struct http_server *srv = r->srv;
    free(r);
    srv->n_rejects--;
    server_maybe_finish(srv);
}

/* Best effort, never blocks: the connection is closed right after. */
static void send_canned_503(uv_stream_t *stream)
{
    static const char canned[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                 "Content-Length: 31\r\nConnection: close\r\n\r\n"
                                 "{\"error\":\"service_unavailable\"}";
    uv_buf_t b = uv_buf_init((char *)canned, sizeof(canned) - 1);
    (void)uv_try_write(stream, &b, 1);
}

static void reject_connection(struct http_server *srv)
{
    struct rejected_conn *r = calloc(1, sizeof(*r));
    if (r == NULL || uv_tcp_init(srv->loop, &r->tcp) != 0) {
        free(r);
        LOG_ERROR(srv->lg, NULL, "cannot allocate a handle to refuse a connection");
        return;
    }
    r->srv = srv;
    r->tcp.data = r;
    srv->n_rejects++;
    srv->refused_max_connections++;
    if (uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)&r->tcp) == 0) send_canned_503((uv_stream_t *)&r->tcp);
    uv_close((uv_handle_t *)&r->tcp, rejected_closed_cb);
    if (!srv->saturated) {
        srv->saturated = 1;
        LOG_WARN(srv->lg, NULL, "connection limit (%u) reached: refusing new connections", srv->limits.max_connections);
    }
}

/* A new connection in CS_READING, linked into the server, its tcp handle
 * initialised but not yet attached to a socket.  NULL on failure (a half-built
 * connection is closed through its close callbacks). */
static struct http_conn *conn_create(struct http_server *srv)
{
    struct http_conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL) return NULL;
    if (uv_tcp_init(srv->loop, &conn->tcp) != 0) {
        free(conn);
        return NULL;
    }
    conn->srv = srv;
    conn->tcp.data = conn;
    conn->timer.data = conn;
    conn->handles_open = 1;
    conn->next = srv->conns;
    if (srv->conns != NULL) srv->conns->prev = conn;
    srv->conns = conn;
    srv->n_conns++;
    if (uv_timer_init(srv->loop, &conn->timer) != 0) {
        conn->state = CS_CLOSING;
        uv_close((uv_handle_t *)&conn->tcp, conn_handle_closed_cb);
        return NULL;
    }
    conn->handles_open = 2;
    srv->n_open++;
    llhttp_init(&conn->parser, HTTP_REQUEST, &srv->settings);
    conn->parser.data = conn;
    conn->scan.active = 1;
    conn->state = CS_READING;
    return conn;
}

/* The socket is attached: start the header deadline and reading. */
static void conn_start(struct http_conn *conn)
{
    uv_tcp_nodelay(&conn->tcp, 1);
    conn_arm_timer(conn, TK_HEADER, conn->srv->limits.header_timeout_ms);
    conn_read_start(conn);
}

/* ------------------------------------------------------------------------ */
/* Per-peer connection cap                                                   */

static void peer_of(const uv_tcp_t *tcp, struct peer_addr *out)
{
    static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    struct sockaddr_storage ss;
    int len = (int)sizeof(ss);
    memset(out, 0, sizeof(*out));
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0) return;
    if (ss.ss_family == AF_INET) {
        out->family = AF_INET;
        memcpy(out->bytes, &((const struct sockaddr_in *)&ss)->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        const unsigned char *a = ((const struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
        int mapped = memcmp(a, v4_mapped, sizeof(v4_mapped)) == 0;
        out->family = mapped ? AF_INET : AF_INET6;
        memcpy(out->bytes, mapped ? a + 12 : a, mapped ? 4 : 16);
    }
}

static void peer_name(const struct peer_addr *p, char *out, size_t len)
{
    if (uv_inet_ntop(p->family == AF_INET6 ? AF_INET6 : AF_INET, p->bytes, out, len) != 0) snprintf(out, len, "?");
}

/* 1 when conn's peer already holds max_connections_per_peer other open
 * connections.  A walk over the open connections (at most max_connections),
 * which stops early for the peer that floods: its connections are the newest. */
static int peer_over_cap(const struct http_server *srv, const struct http_conn *conn)
{
    unsigned n = 0;
    if (conn->peer.family == 0) return 0;
    for (const struct http_conn *c = srv->conns; c != NULL; c = c->next) {
        if (c == conn || c->state == CS_CLOSING || memcmp(&c->peer, &conn->peer, sizeof(c->peer)) != 0) continue;
        if (++n >= srv->limits.max_connections_per_peer) return 1;
    }
    return 0;
}

/* Canned 503 and close; counted, and warned about at most once a second. */
static void refuse_peer(struct http_conn *conn)
{
    struct http_server *srv = conn->srv;
    srv->refused_per_peer++;
    send_canned_503(conn_stream(conn));
    uint64_t now = uv_now(srv->loop);
    if (srv->peer_warned_ms == 0 || now - srv->peer_warned_ms >= PEER_WARN_INTERVAL_MS) {
        char addr[INET6_ADDRSTRLEN], limit[16], refused[24];
        srv->peer_warned_ms = now;
        peer_name(&conn->peer, addr, sizeof(addr));
        snprintf(limit, sizeof(limit), "%u", srv->limits.max_connections_per_peer);
        snprintf(refused, sizeof(refused), "%llu", (unsigned long long)srv->refused_per_peer);
        LOG_KV(srv->lg, LOG_LEVEL_WARN, NULL,
               ((const char *[]){"peer", addr, "limit", limit, "refused_total", refused, NULL}),
               "per-peer connection limit reached: refusing the peer's new connections");
    }
    conn_close(conn);
}

/* The socket is attached: refuse it if its peer is at its cap, else start it. 0 started. */
static int conn_admit(struct http_conn *conn)
{
    peer_of(&conn->tcp, &conn->peer);
    if (peer_over_cap(conn->srv, conn)) {
        refuse_peer(conn);
        return -1;
    }
    conn_start(conn);
    return 0;
}

static void accept_connection(struct http_server *srv)
{
    struct http_conn *conn = conn_create(srv);
    if (conn == NULL) {
        reject_connection(srv);
        return;
    }
    if (uv_accept((uv_stream_t *)&srv->listener, conn_stream(conn)) != 0) {
        conn_close(conn);
        return;
    }
    (void)conn_admit(conn);
}

int http_server_adopt(struct http_server *srv, uv_os_sock_t fd)
{
    struct http_conn *conn = NULL;
    if (srv == NULL || srv->draining || srv->closing || srv->n_open >= srv->limits.max_connections) goto fail;
    conn = conn_create(srv);
    if (conn == NULL || uv_tcp_open(&conn->tcp, fd) != 0) goto fail;
    return conn_admit(conn); /* refused: the handle owns fd and closes it */
fail:
    if (conn != NULL) conn_close(conn); /* the handle does not own fd: uv_tcp_open failed */
    close(fd);
    return -1;
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct http_server *srv = listener->data;
    if (status < 0) {
        LOG_KV(srv->lg, LOG_LEVEL_WARN, NULL, ((const char *[]){"error", uv_strerror(status), NULL}), "accept failed");
        return;
    }
    if (srv->draining || srv->closing) return;
    if (srv->n_open >= srv->limits.max_connections)
        reject_connection(srv);
    else
        accept_connection(srv);
}

/* ------------------------------------------------------------------------ */
/* Server lifecycle                                                          */

static void apply_limit_defaults(struct http_limits *l)
{
    if (l->max_header_bytes == 0) l->max_header_bytes = 16384;
    if (l->max_body_bytes == 0) l->max_body_bytes = 65536;
    if (l->header_timeout_ms == 0) l->header_timeout_ms = 10000;
    if (l->body_timeout_ms == 0) l->body_timeout_ms = 10000;
    if (l->idle_timeout_ms == 0) l->idle_timeout_ms = 60000;
    if (l->max_connections == 0) l->max_connections = 1024;
    if (l->max_connections_per_peer == 0) l->max_connections_per_peer = DEFAULT_MAX_CONNECTIONS_PER_PEER;
    if (l->max_connections_per_peer > l->max_connections) l->max_connections_per_peer = l->max_connections;
}

static int routes_need_auth(const struct http_route *routes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (routes[i].auth == HTTP_AUTH_TASK) return 1;
    return 0;
}

static void free_server_cb(uv_handle_t *h)
{
    free(h->data);
}

struct http_server *http_server_new(uv_loop_t *loop, struct logger *lg, const struct http_server_opts *opts)
{
    char err[160];
    if (loop == NULL || opts == NULL || (opts->routes == NULL && opts->n_routes > 0)) return NULL;
    if (http_router_validate(opts->routes, opts->n_routes, err, sizeof(err)) != 0) {
        LOG_KV(lg, LOG_LEVEL_ERROR, NULL, ((const char *[]){"error", err, NULL}), "http server: bad route table");
        return NULL;
    }
    if (routes_need_auth(opts->routes, opts->n_routes) && opts->authenticate == NULL) {
        LOG_ERROR(lg, NULL, "http server: routes require authentication but no authenticator is set");
        return NULL;
    }
    struct http_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) return NULL;
    srv->loop = loop;
    srv->lg = lg;
    srv->opts = *opts;
    srv->limits = opts->limits;
    apply_limit_defaults(&srv->limits);
    init_parser_settings(&srv->settings);
    if (uv_tcp_init(loop, &srv->listener) != 0) {
        free(srv);
        return NULL;
    }
    srv->listener.data = srv;
    srv->listener_open = 1;
    if (uv_timer_init(loop, &srv->spare) != 0) {
        uv_close((uv_handle_t *)&srv->listener, free_server_cb);
        LOG_ERROR(lg, NULL, "http server: cannot initialise a timer");
        return NULL;
    }
    srv->spare.data = srv;
    srv->spare_open = 1;
    return srv;
}

/* "host:port", "[v6]:port" or ":port" -> socket address. */
static int parse_listen(const char *spec, struct sockaddr_storage *out, char *err, size_t errlen)
{
    char host[64];
    const char *port_s;
    size_t host_len;
    int v6 = 0;
    if (spec == NULL || spec[0] == '\0') goto bad;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (close == NULL || close[1] != ':') goto bad;
        host_len = (size_t)(close - spec - 1);
        if (host_len >= sizeof(host)) goto bad;
        memcpy(host, spec + 1, host_len);
        port_s = close + 2;
        v6 = 1;
    } else {
        const char *colon = strrchr(spec, ':');
        if (colon == NULL || memchr(spec, ':', (size_t)(colon - spec)) != NULL) goto bad;
        host_len = (size_t)(colon - spec);
        if (host_len >= sizeof(host)) goto bad;
        memcpy(host, spec, host_len);
        port_s = colon + 1;
    }
    host[host_len] = '\0';
    if (host_len == 0) snprintf(host, sizeof(host), "%s", v6 ? "::" : "0.0.0.0");
    size_t digits = strspn(port_s, "0123456789");
    if (digits == 0 || digits > 5 || port_s[digits] != '\0') goto bad;
    long port = strtol(port_s, NULL, 10);
    if (port > 65535) goto bad;
    int rc = v6 ? uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out)
                : uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out);
    if (rc != 0) goto bad;
    return 0;
bad:
    snprintf(err, errlen, "invalid listen address '%s' (want 127.0.0.1:8080, [::1]:8080 or :8080)",
             spec != NULL ? spec : "");
    return -1;
}

int http_server_listen(struct http_server *srv, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof(addr));
    if (srv->listening || srv->draining || srv->closing) {
        snprintf(err, errlen, "http server already started or stopped");
        return -1;
    }
    if (parse_listen(srv->opts.listen, &addr, err, errlen) != 0) return -1;
    int rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&srv->listener, LISTEN_BACKLOG, on_connection);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", srv->opts.listen, uv_strerror(rc));
        return -1;
    }
    srv->listening = 1;
    char port_s[16];
    snprintf(port_s, sizeof(port_s), "%d", http_server_port(srv));
    LOG_KV(srv->lg, LOG_LEVEL_INFO, NULL, ((const char *[]){"listen", srv->opts.listen, "port", port_s, NULL}),
           "http server listening");
    return 0;
}

int http_server_port(const struct http_server *srv)
{
    struct sockaddr_storage ss;
    int len = (int)sizeof(ss);
    if (srv == NULL || !srv->listening || !srv->listener_open) return -1;
    if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&ss)->sin_port);
}

static void listener_closed_cb(uv_handle_t *h)
{
    struct http_server *srv = h->data;
    srv->listener_open = 0;
    server_maybe_finish(srv);
}

static void spare_closed_cb(uv_handle_t *h)
{
    struct http_server *srv = h->data;
    srv->spare_open = 0;
    server_maybe_finish(srv);
}

static void server_maybe_finish(struct http_server *srv)
{
    if (!srv->closing || srv->listener_open || srv->spare_open || srv->n_conns > 0 || srv->n_rejects > 0) return;
    void (*done)(void *) = srv->done;
    void *arg = srv->done_arg;
    free(srv);
    if (done != NULL) done(arg);
}

static void close_listener(struct http_server *srv)
{
    if (!uv_is_closing((uv_handle_t *)&srv->listener)) uv_close((uv_handle_t *)&srv->listener, listener_closed_cb);
}

void http_server_stop_accepting(struct http_server *srv)
{
    if (srv == NULL || srv->draining) return;
    srv->draining = 1;
    close_listener(srv);
    for (struct http_conn *c = srv->conns; c != NULL; c = c->next)
        if (c->state == CS_READING && c->scan.bytes == 0 && c->ex == NULL) conn_close(c);
    LOG_INFO(srv->lg, NULL, "http server draining: %zu request(s) in flight", srv->active);
}

size_t http_server_active_exchanges(const struct http_server *srv)
{
    return srv != NULL ? srv->active : 0;
}

size_t http_server_connection_count(const struct http_server *srv)
{
    return srv != NULL ? srv->n_conns : 0;
}

void http_server_get_stats(const struct http_server *srv, struct http_server_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (srv == NULL) return;
    out->connections = srv->n_conns;
    out->refused_max_connections = srv->refused_max_connections;
    out->refused_per_peer = srv->refused_per_peer;
}

size_t http_server_preauth_bytes_max(const struct http_limits *limits)
{
    struct http_limits l = *limits;
    apply_limit_defaults(&l);
    return sizeof(struct http_conn) + sizeof(struct http_exchange) + arena_hard_cap(&l) + RESPONSE_PREAUTH_MAX +
           4 * MALLOC_CHUNK_OVERHEAD;
}

void http_server_close(struct http_server *srv, void (*done)(void *), void *arg)
{
    if (srv == NULL || srv->closing) return;
    srv->closing = 1;
    srv->draining = 1;
    srv->done = done;
    srv->done_arg = arg;
    for (struct http_exchange *ex = srv->live, *next; ex != NULL; ex = next) {
        next = ex->next;
        ex->prev = ex->next = NULL;
        ex->srv = NULL; /* its respond() will only free it */
    }
    srv->live = NULL;
    srv->active = 0;
    for (struct http_conn *c = srv->conns; c != NULL; c = c->next)
        conn_close(c);
    close_listener(srv);
    uv_close((uv_handle_t *)&srv->spare, spare_closed_cb);
}

/* ------------------------------------------------------------------------ */
/* Exchange API                                                              */

const char *http_exchange_method(const struct http_exchange *ex)
{
    return ex->method;
}

const char *http_exchange_path(const struct http_exchange *ex)
{
    return ex->arena + ex->path_off;
}

const char *http_exchange_query(const struct http_exchange *ex)
{
    return ex->arena + ex->query_off;
}

const char *http_exchange_param(const struct http_exchange *ex, const char *name)
{
    return http_params_get(&ex->params, name);
}

const char *http_exchange_header(const struct http_exchange *ex, const char *name)
{
    return find_header(ex, name, NULL);
}

size_t http_exchange_header_count(const struct http_exchange *ex, const char *name)
{
    size_t n = 0;
    find_header(ex, name, &n);
    return n;
}

const char *http_exchange_body(const struct http_exchange *ex, size_t *len)
{
    if (len != NULL) *len = ex->body_len;
    return ex->body != NULL ? ex->body : "";
}

const char *http_exchange_request_id(const struct http_exchange *ex)
{
    return ex->request_id;
}

int http_exchange_is_cancelled(const struct http_exchange *ex)
{
    return ex->conn == NULL;
}

void http_exchange_respond(struct http_exchange *ex, int status, const char *json_body,
                           const struct http_header_kv *extra, size_t n_extra)
{
    http_exchange_respond_typed(ex, status, JSON_CONTENT_TYPE, json_body, json_body != NULL ? strlen(json_body) : 0,
                                extra, n_extra);
}

void http_server_set_observer(struct http_server *srv, http_response_observer observer, void *arg)
{
    srv->observer = observer;
    srv->observer_arg = arg;
}

static void observe_response(const struct http_exchange *ex, int status)
{
    struct http_server *srv = ex->srv;
    if (srv != NULL && srv->observer != NULL)
        srv->observer(srv->observer_arg, ex->route, status, uv_hrtime() - ex->start_ns);
}

static int valid_content_type(const char *ct)
{
    if (ct == NULL || ct[0] == '\0') return 0;
    for (const char *p = ct; *p != '\0'; p++)
        if (!is_field_value_char((unsigned char)*p)) return 0;
    return 1;
}

void http_exchange_respond_typed(struct http_exchange *ex, int status, const char *content_type, const char *body,
                                 size_t body_len, const struct http_header_kv *extra, size_t n_extra)
{
    if (ex == NULL) return;
    struct http_conn *conn = ex->conn;
    if (status < 200 || status > 599 || !valid_content_type(content_type)) {
        LOG_ERROR(ex->srv != NULL ? ex->srv->lg : NULL, NULL, "handler answered invalid status %d or content type",
                  status);
        status = 500;
        content_type = JSON_CONTENT_TYPE;
        body = status_error_body(500);
        body_len = strlen(body);
        n_extra = 0;
    }
    observe_response(ex, status);
    if (conn == NULL) {
        log_access(ex->srv, ex, status, ex->request_id, 1);
        exchange_retire(ex);
        return;
    }
    if (conn->state != CS_DISPATCHED || conn->ex != ex) { /* respond() during auth or twice */
        LOG_ERROR(conn->srv->lg, &(struct log_ctx){.request_id = ex->request_id}, "exchange answered out of turn");
        if (conn->ex == ex) conn->ex = NULL;
        conn_close(conn);
        exchange_retire(ex);
        return;
    }
    int close = conn->close_after || ex->body_unread || !ex->keep_alive || conn->srv->draining;
    size_t len = 0;
    char *buf = build_response(conn->srv->lg, status, content_type, body, body_len, extra, n_extra, ex->request_id,
                               close, ex->is_head, &len);
    if (buf == NULL) {
        LOG_ERROR(conn->srv->lg, &(struct log_ctx){.request_id = ex->request_id}, "out of memory building response");
        conn_close(conn);
        exchange_retire(ex);
        return;
    }
    log_access(conn->srv, ex, status, ex->request_id, 0);
    conn->ex = NULL;
    conn->write_counts_active = 1; /* srv->active drops when the bytes are written */
    exchange_unlink(ex);
    exchange_free(ex);
    conn_write_response(conn, buf, len, close);
}
