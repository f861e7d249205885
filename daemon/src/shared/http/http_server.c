/*
 * shared/http/http_server — the connection and accept state machine of the
 * embedded HTTP/1.1 server (see http_server.h for the API).  Request parsing
 * lives in http_request.c, response bytes in http_response.c; the structs they
 * share are in http_server_internal.h.
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
 * The body gate: the parser pauses llhttp right after the header section of a
 * request that declares a body; conn_body_gate() stops reading, routes the
 * request and, for a task route, asks the authenticator (AUTHENTICATING: no
 * reading, no timer, the exchange live so a close cancels it).  Only
 * conn_admit_body() reserves the body, sends an owed "100 Continue", arms the
 * body deadline and resumes parsing and reading.  An answer while the body is
 * unread (ex->body_unread) always closes the connection.
 *
 * Bytes land in a fixed per-connection input buffer.  In READING conn_parse()
 * hands them to the raw header scanner and then to llhttp (http_request.c).
 * The parser stops exactly at the end of one request; the rest of the buffer
 * (pipelined requests) waits until the response has been written, then parsing
 * resumes where it stopped.  While a request is pending the socket is still
 * read (to notice a client that goes away) until the buffer is full; then
 * reading stops, which pushes back on the client.  One timer per connection
 * serves the idle, header, body, write and linger deadlines; header and body
 * deadlines are total, not per read, so a slow-drip client cannot extend them.
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
#include "shared/http/http_server_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "utils/log.h"

#define LINGER_MAX_MS 2000u /* read-and-discard after a closing response */
#define LISTEN_BACKLOG 511
#define LOG_PATH_MAX 256u
#define RESPONSE_PREAUTH_MAX 1024u /* the server's own answers (401, 404, 413, ...) fit in this */
#define MALLOC_CHUNK_OVERHEAD 32u  /* allocator bookkeeping per allocation, rounded up */
#define PEER_WARN_INTERVAL_MS 1000u
#define DEFAULT_MAX_CONNECTIONS_PER_PEER 64u
#define STATUS_SILENT_CLOSE (-1) /* fail_status: close without a response */

/* A connection over the limit: accepted, sent a canned 503, closed. */
struct rejected_conn {
    uv_tcp_t tcp;
    struct http_server *srv;
};

static void conn_close(struct http_conn *conn);
static void conn_parse(struct http_conn *conn);
static void server_maybe_finish(struct http_server *srv);

/* ------------------------------------------------------------------------ */
/* Exchanges                                                                 */

struct http_exchange *http_conn_new_exchange(struct http_conn *conn)
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
    log_write(srv->lg, LOG_LEVEL_INFO, &(struct log_ctx){.request_id = request_id, .trace_id = http_req_trace_id(ex)},
              fields, "http request");
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

void http_conn_headers_done(struct http_conn *conn)
{
    conn_stop_timer(conn);
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
        http_req_new_request_id(conn->srv, rid_buf);
        rid = rid_buf;
    }
    log_access(conn->srv, ex, status, rid, 0);
    size_t len = 0;
    const char *body = http_resp_error_body(status);
    char *buf = http_resp_build(conn->srv->lg, status, JSON_CONTENT_TYPE, body, body != NULL ? strlen(body) : 0, NULL,
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
/* "100 Continue"                                                            */

static void continue_write_cb(uv_write_t *req, int status)
{
    struct http_conn *conn = req->data;
    if (status < 0 && conn->state != CS_CLOSING) conn_close(conn);
}

static int send_continue(struct http_conn *conn)
{
    static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init((char *)continue_line, sizeof(continue_line) - 1);
    conn->continue_req.data = conn;
    return uv_write(&conn->continue_req, conn_stream(conn), &b, 1, continue_write_cb);
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
        struct log_ctx ctx = {.request_id = ex->request_id, .trace_id = http_req_trace_id(ex)};
        LOG_KV(ex->srv->lg, LOG_LEVEL_WARN, &ctx,
               ((const char *[]){"reason", reason != NULL ? reason : "-", "path", ex->arena + ex->path_off, NULL}),
               "request rejected by authenticator");
        static const struct http_header_kv challenge[] = {{"WWW-Authenticate", "Bearer"}};
        http_exchange_respond(ex, 401, http_resp_error_body(401), challenge, 1);
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
        http_exchange_respond(ex, 404, http_resp_error_body(404), NULL, 0);
        return 0;
    }
    if (rc == 405) {
        struct http_header_kv h = {"Allow", allow};
        http_exchange_respond(ex, 405, http_resp_error_body(405), &h, 1);
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
    http_exchange_respond(ex, 413, http_resp_error_body(413), NULL, 0);
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
    if (ex->content_length > 0 && http_req_body_reserve(ex, (size_t)ex->content_length) != 0) {
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

/* The raw scanner sees the bytes before llhttp; the first byte of a request on
 * an idle keep-alive connection starts its header deadline.  Returns 0, or the
 * HTTP status (400/431) to fail with. */
static int conn_scan(struct http_conn *conn, const char *data, size_t len)
{
    const struct http_limits *lim = &conn->srv->limits;
    if (conn->scan.active && len > 0 && conn->scan.bytes == 0 && conn->timer_kind == TK_IDLE)
        conn_arm_timer(conn, TK_HEADER, lim->header_timeout_ms);
    return http_req_scan(&conn->scan, lim->max_header_bytes, data, len);
}

/* Parse buffered bytes until they are used up, a request is complete, or an error. */
static void conn_parse(struct http_conn *conn)
{
    if (conn->state == CS_READING && conn->in_off < conn->in_len) {
        const char *data = conn->inbuf + conn->in_off;
        size_t len = conn->in_len - conn->in_off;
        int status = conn_scan(conn, data, len);
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
    llhttp_init(&conn->parser, HTTP_REQUEST, http_req_parser_settings());
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
    return sizeof(struct http_conn) + sizeof(struct http_exchange) + http_req_arena_cap(&l) + RESPONSE_PREAUTH_MAX +
           4 * (size_t)MALLOC_CHUNK_OVERHEAD;
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
/* Exchange API: answering                                                   */

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

void http_exchange_respond_typed(struct http_exchange *ex, int status, const char *content_type, const char *body,
                                 size_t body_len, const struct http_header_kv *extra, size_t n_extra)
{
    if (ex == NULL) return;
    struct http_conn *conn = ex->conn;
    if (status < 200 || status > 599 || !http_resp_content_type_ok(content_type)) {
        LOG_ERROR(ex->srv != NULL ? ex->srv->lg : NULL, NULL, "handler answered invalid status %d or content type",
                  status);
        status = 500;
        content_type = JSON_CONTENT_TYPE;
        body = http_resp_error_body(500);
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
    char *buf = http_resp_build(conn->srv->lg, status, content_type, body, body_len, extra, n_extra, ex->request_id,
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
