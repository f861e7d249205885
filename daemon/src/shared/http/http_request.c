/*
 * shared/http/http_request — request parsing for the embedded HTTP server.
 *
 * A request reaches the parser twice.  First its raw bytes go through a tiny
 * scanner (http_req_scan, struct hdr_scan) that owns the header-section rules
 * llhttp does not enforce in its default build: the byte limit over the request
 * line and all header lines (counted exactly, however the bytes are split
 * across reads), NUL bytes, obs-fold (a header line starting with SP/HT) and the
 * "METHOD SP target SP version" shape.  Then llhttp parses the same bytes and
 * calls back here: the URL and every header name and value are copied into the
 * exchange's arena (NUL-terminated, offsets in ex->hdrs, never more than
 * http_req_arena_cap() bytes and HTTP_MAX_HEADERS lines: 431), the body into its
 * body buffer (at most max_body_bytes: 413); trailers and chunk extensions are
 * counted and bounded, then dropped.
 *
 * on_headers_complete checks the request as a whole (HTTP/1.0 or 1.1, exactly
 * one Host on 1.1, an origin-form target, only plain chunked, Content-Length
 * within max_body_bytes, Expect) and chooses the request id.  For a request
 * that declares a body it is the parser side of the body gate: it records the
 * declared length, marks the body unread and pauses llhttp before the first
 * body byte, so the connection can route and authenticate the request from its
 * headers; http_req_body_reserve() is called only once the body is admitted.
 * on_message_complete pauses llhttp too: one request at a time.
 *
 * A callback that rejects the request stores the status to answer in
 * conn->fail_status and returns HPE_USER; the connection writes the answer.
 * The public accessors of a parsed request (http_exchange_method, _path,
 * _query, _param, _header, _header_count, _body, _request_id) live here too.
 */
#include "shared/http/http_server_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHUNK_EXT_MAX 4096u /* chunk-extension bytes per request; more -> 400 */
#define ARENA_MIN 1024u

/* ------------------------------------------------------------------------ */
/* Request ids                                                               */

void http_req_new_request_id(struct http_server *srv, char out[17])
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
/* Header arena and body buffer                                              */

/* The header arena never grows past this: the header bytes plus a NUL per name and value. */
size_t http_req_arena_cap(const struct http_limits *l)
{
    return l->max_header_bytes + 2 * (size_t)HTTP_MAX_HEADERS + 16;
}

/* Reserve room for n more arena bytes plus a terminating NUL. */
static int arena_reserve(struct http_exchange *ex, size_t n)
{
    size_t hard_cap = http_req_arena_cap(&ex->srv->limits);
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

int http_req_body_reserve(struct http_exchange *ex, size_t cap)
{
    char *b = realloc(ex->body, cap + 1);
    if (b == NULL) return -1;
    ex->body = b;
    ex->body_cap = cap;
    return 0;
}

const char *http_req_find_header(const struct http_exchange *ex, const char *name, size_t *count)
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
    const char *given = http_req_find_header(ex, "X-Request-Id", &n);
    if (n == 1 && request_id_is_sane(given)) {
        memcpy(ex->request_id, given, strlen(given) + 1);
        return;
    }
    http_req_new_request_id(ex->srv, ex->request_id);
}

/* ------------------------------------------------------------------------ */
/* Raw header-section scanner                                                */

int http_req_scan(struct hdr_scan *s, size_t max, const char *data, size_t len)
{
    if (!s->active || len == 0) return 0;
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
    conn->ex = http_conn_new_exchange(conn);
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
        if (!http_is_tchar((unsigned char)at[i])) return cb_fail(p, 400);
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
        if (!http_is_field_value_char((unsigned char)at[i])) return cb_fail(p, 400);
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

/* Expect: 100-continue (HTTP/1.1 only) -> "100 Continue" is owed when a body
 * is coming (sent once the body is admitted, never before authentication);
 * any other expectation -> 417.  Returns 0 or an llhttp error. */
static int check_expect(llhttp_t *p, struct http_exchange *ex, int has_body)
{
    size_t n = 0;
    const char *value = http_req_find_header(ex, "Expect", &n);
    if (n == 0 || ex->http_minor == 0) return 0;
    if (n != 1 || strcasecmp(value, "100-continue") != 0) return cb_fail(p, 417);
    ex->expect_continue = has_body;
    return 0;
}

/* The request's trace, when exactly one well-formed header names it (utils/trace_context). */
static void exchange_read_trace(struct http_exchange *ex)
{
    size_t n_parent = 0, n_cloud = 0;
    const char *parent = http_req_find_header(ex, "traceparent", &n_parent);
    const char *cloud = http_req_find_header(ex, "X-Cloud-Trace-Context", &n_cloud);
    (void)trace_context_from_headers(n_parent == 1 ? parent : NULL, n_cloud == 1 ? cloud : NULL, &ex->trace);
}

const char *http_req_trace_id(const struct http_exchange *ex)
{
    return ex != NULL && ex->trace.trace_id[0] != '\0' ? ex->trace.trace_id : NULL;
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
    exchange_read_trace(ex);
    if (exchange_prepare_target(ex) != 0) return cb_fail(p, 400);
    size_t hosts = 0;
    http_req_find_header(ex, "Host", &hosts);
    if (ex->http_minor == 1 && hosts != 1) return cb_fail(p, 400);
    if (ex->http_minor == 0 && (p->flags & F_TRANSFER_ENCODING)) return cb_fail(p, 400);
    if (p->flags & F_TRANSFER_ENCODING) {
        size_t n_te = 0;
        const char *te = http_req_find_header(ex, "Transfer-Encoding", &n_te);
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
        http_conn_headers_done(conn);
        return 0;
    }
    /* Stop before the body: the connection's body gate routes and authenticates
     * the request from its headers; nothing of the body is reserved before that. */
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
        if (http_req_body_reserve(ex, cap) != 0) return cb_fail(p, 500);
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

/* Every connection's parser calls back into this one table (the fields left out stay NULL). */
static const llhttp_settings_t request_settings = {.on_message_begin = on_message_begin,
                                                   .on_url = on_url,
                                                   .on_url_complete = on_url_complete,
                                                   .on_header_field = on_header_field,
                                                   .on_header_field_complete = on_header_field_complete,
                                                   .on_header_value = on_header_value,
                                                   .on_header_value_complete = on_header_value_complete,
                                                   .on_headers_complete = on_headers_complete,
                                                   .on_body = on_body,
                                                   .on_chunk_extension_name = on_chunk_extension,
                                                   .on_chunk_extension_value = on_chunk_extension,
                                                   .on_message_complete = on_message_complete};

const llhttp_settings_t *http_req_parser_settings(void)
{
    return &request_settings;
}

/* ------------------------------------------------------------------------ */
/* Accessors of the parsed request                                           */

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
    return http_req_find_header(ex, name, NULL);
}

size_t http_exchange_header_count(const struct http_exchange *ex, const char *name)
{
    size_t n = 0;
    http_req_find_header(ex, name, &n);
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

const struct trace_context *http_exchange_trace(const struct http_exchange *ex)
{
    return http_req_trace_id(ex) != NULL ? &ex->trace : NULL;
}
