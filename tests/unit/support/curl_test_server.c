/*
 * tests/unit/support/curl_test_server — see curl_test_server.h.  Minimal by
 * design: one request at a time per connection, Content-Length bodies only,
 * no chunked encoding, no pipelining (libcurl does none of these for our
 * requests).  Malformed input closes the connection.
 */
#include "curl_test_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CTS_MAX_REQUESTS 256
#define CTS_MAX_INPUT (4u * 1024u * 1024u)

struct cts_conn {
    uv_tcp_t tcp;
    uv_timer_t delay;
    struct cts_server *server;
    struct cts_conn *next;
    int id;
    char *in;
    size_t in_len, in_cap;
    bool waiting;               /* a request is being handled (delayed or hanging) */
    bool hanging;
    bool close_after;
    char *out;                  /* prepared answer while delayed */
    size_t out_len;
    bool closing;
    int handles_open;
};

struct cts_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    cts_handler_fn handler;
    void *arg;
    char url[64];
    struct cts_request *reqs[CTS_MAX_REQUESTS];
    size_t n_reqs;
    struct cts_conn *conns;
    size_t pending, max_pending, accepted;
    bool closing;
    int handles_open;
};

struct write_req {
    uv_write_t req;
    char *buf;
    struct cts_conn *conn;
    bool close_after;
};

static void server_maybe_free(struct cts_server *s);

static void request_free(struct cts_request *r)
{
    if (r == NULL) return;
    free(r->method);
    free(r->target);
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->body);
    free(r);
}

static void server_maybe_free(struct cts_server *s)
{
    if (!s->closing || s->handles_open > 0) return;
    for (size_t i = 0; i < s->n_reqs; i++) request_free(s->reqs[i]);
    free(s);
}

static void conn_handle_closed(uv_handle_t *h)
{
    struct cts_conn *c = h->data;
    if (--c->handles_open > 0) return;
    struct cts_server *s = c->server;
    free(c->in);
    free(c->out);
    free(c);
    s->handles_open--;
    server_maybe_free(s);
}

static void conn_close(struct cts_conn *c)
{
    if (c->closing) return;
    c->closing = true;
    struct cts_server *s = c->server;
    if (c->waiting) s->pending--;
    c->waiting = false;
    for (struct cts_conn **pp = &s->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    uv_close((uv_handle_t *)&c->delay, conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

/* ---- request parsing ---- */

static char *dup_range(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d == NULL) abort();
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *trim_dup(const char *s, size_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    return dup_range(s, n);
}

/* 1 = parsed one request (consumed *used bytes), 0 = need more, -1 = malformed. */
static int parse_request(const char *buf, size_t len, struct cts_request **out, size_t *used)
{
    const char *end = NULL;
    for (size_t i = 0; i + 3 < len; i++) {
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
            end = buf + i;
            break;
        }
    }
    if (end == NULL) return 0;
    struct cts_request *r = calloc(1, sizeof(*r));
    if (r == NULL) abort();
    const char *line = buf;
    const char *eol = memchr(line, '\r', (size_t)(end - line) + 2);
    const char *sp1 = memchr(line, ' ', (size_t)(eol - line));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (sp1 == NULL || sp2 == NULL) goto bad;
    r->method = dup_range(line, (size_t)(sp1 - line));
    r->target = dup_range(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    size_t content_length = 0;
    for (line = eol + 2; line < end; line = eol + 2) {
        eol = memchr(line, '\r', (size_t)(end - line) + 2);
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon == NULL) goto bad;
        struct cts_header *grown = realloc(r->headers, (r->n_headers + 1) * sizeof(*grown));
        if (grown == NULL) abort();
        r->headers = grown;
        r->headers[r->n_headers].name = trim_dup(line, (size_t)(colon - line));
        r->headers[r->n_headers].value = trim_dup(colon + 1, (size_t)(eol - colon - 1));
        if (strcasecmp(r->headers[r->n_headers].name, "Content-Length") == 0)
            content_length = strtoul(r->headers[r->n_headers].value, NULL, 10);
        if (strcasecmp(r->headers[r->n_headers].name, "Transfer-Encoding") == 0) {
            r->n_headers++;
            goto bad;
        }
        r->n_headers++;
    }
    size_t head_len = (size_t)(end - buf) + 4;
    if (len < head_len + content_length) {
        request_free(r);
        return 0;
    }
    r->body = dup_range(buf + head_len, content_length);
    r->body_len = content_length;
    *out = r;
    *used = head_len + content_length;
    return 1;
bad:
    request_free(r);
    return -1;
}

/* ---- answering ---- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

static char *format_reply(const struct cts_reply *rep, size_t *len_out)
{
    const char *body = rep->body ? rep->body : "";
    const char *ctype = rep->content_type ? rep->content_type : "application/json";
    const char *extra = rep->extra_headers ? rep->extra_headers : "";
    size_t body_len = strlen(body);
    size_t cap = body_len + strlen(ctype) + strlen(extra) + 256;
    char *out = malloc(cap);
    if (out == NULL) abort();
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                     rep->status, reason_phrase(rep->status), ctype, body_len, extra,
                     rep->close_after ? "Connection: close\r\n" : "");
    memcpy(out + n, body, body_len);
    *len_out = (size_t)n + body_len;
    return out;
}

static void conn_process_input(struct cts_conn *c);

static void on_written(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct cts_conn *c = w->conn;
    free(w->buf);
    bool close_after = w->close_after;
    free(w);
    if (c->closing) return;
    if (status < 0 || close_after) {
        conn_close(c);
        return;
    }
    conn_process_input(c);
}

static void conn_send(struct cts_conn *c, char *buf, size_t len, bool close_after)
{
    struct cts_server *s = c->server;
    c->waiting = false;
    c->hanging = false;
    s->pending--;
    struct write_req *w = calloc(1, sizeof(*w));
    if (w == NULL) abort();
    w->buf = buf;
    w->conn = c;
    w->close_after = close_after;
    uv_buf_t b = uv_buf_init(buf, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        free(buf);
        free(w);
        conn_close(c);
    }
}

static void on_delay_done(uv_timer_t *t)
{
    struct cts_conn *c = t->data;
    char *out = c->out;
    c->out = NULL;
    conn_send(c, out, c->out_len, c->close_after);
}

static void conn_handle_request(struct cts_conn *c, struct cts_request *r)
{
    struct cts_server *s = c->server;
    r->conn_id = c->id;
    bool stored = s->n_reqs < CTS_MAX_REQUESTS;
    if (stored) s->reqs[s->n_reqs++] = r;
    struct cts_reply rep = {.status = 200, .body = "{}"};
    if (s->handler != NULL) s->handler(s->arg, r, &rep);
    if (!stored) request_free(r);
    c->waiting = true;
    s->pending++;
    if (s->pending > s->max_pending) s->max_pending = s->pending;
    if (rep.hang) {
        c->hanging = true;
        return;
    }
    size_t len;
    char *out = format_reply(&rep, &len);
    if (rep.delay_ms > 0) {
        c->out = out;
        c->out_len = len;
        c->close_after = rep.close_after;
        uv_timer_start(&c->delay, on_delay_done, rep.delay_ms, 0);
        return;
    }
    conn_send(c, out, len, rep.close_after);
}

static void conn_process_input(struct cts_conn *c)
{
    if (c->waiting || c->closing) return;
    struct cts_request *r = NULL;
    size_t used = 0;
    int rc = parse_request(c->in, c->in_len, &r, &used);
    if (rc < 0) {
        conn_close(c);
        return;
    }
    if (rc == 0) return;
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    conn_handle_request(c, r);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct cts_conn *c = h->data;
    if (c->in_cap - c->in_len < suggested) {
        size_t cap = c->in_len + suggested;
        char *grown = realloc(c->in, cap);
        if (grown == NULL) abort();
        c->in = grown;
        c->in_cap = cap;
    }
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct cts_conn *c = stream->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    c->in_len += (size_t)nread;
    if (c->in_len > CTS_MAX_INPUT) {
        conn_close(c);
        return;
    }
    conn_process_input(c);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct cts_server *s = listener->data;
    if (status < 0 || s->closing) return;
    struct cts_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) abort();
    c->server = s;
    c->id = (int)++s->accepted;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->delay);
    c->tcp.data = c;
    c->delay.data = c;
    c->handles_open = 2;
    s->handles_open++;
    c->next = s->conns;
    s->conns = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

static void listener_closed(uv_handle_t *h)
{
    struct cts_server *s = h->data;
    s->handles_open--;
    server_maybe_free(s);
}

struct cts_server *cts_start(uv_loop_t *loop, cts_handler_fn handler, void *arg)
{
    struct cts_server *s = calloc(1, sizeof(*s));
    if (s == NULL) return NULL;
    s->loop = loop;
    s->handler = handler;
    s->arg = arg;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    if (uv_tcp_init(loop, &s->listener) != 0) {
        free(s);
        return NULL;
    }
    s->listener.data = s;
    s->handles_open = 1;
    struct sockaddr_storage bound;
    int namelen = sizeof(bound);
    if (uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&s->listener, 128, on_connection) != 0 ||
        uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &namelen) != 0) {
        cts_close(s);
        return NULL;
    }
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)&bound;
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", ntohs(in->sin_port));
    return s;
}

const char *cts_url(const struct cts_server *s)
{
    return s->url;
}

size_t cts_count(const struct cts_server *s)
{
    return s->n_reqs;
}

const struct cts_request *cts_request_at(const struct cts_server *s, size_t i)
{
    return i < s->n_reqs ? s->reqs[i] : NULL;
}

size_t cts_count_prefix(const struct cts_server *s, const char *prefix)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_reqs; i++)
        if (strncmp(s->reqs[i]->target, prefix, strlen(prefix)) == 0) n++;
    return n;
}

const char *cts_header(const struct cts_request *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
    return NULL;
}

size_t cts_pending(const struct cts_server *s)
{
    return s->pending;
}

size_t cts_max_pending(const struct cts_server *s)
{
    return s->max_pending;
}

size_t cts_connections(const struct cts_server *s)
{
    return s->accepted;
}

void cts_release_hanging(struct cts_server *s, int status, const char *body)
{
    struct cts_reply rep = {.status = status, .body = body};
    struct cts_conn *next;
    for (struct cts_conn *c = s->conns; c != NULL; c = next) {
        next = c->next;
        if (!c->hanging) continue;
        size_t len;
        char *out = format_reply(&rep, &len);
        conn_send(c, out, len, false);
    }
}

void cts_close(struct cts_server *s)
{
    if (s == NULL || s->closing) return;
    s->closing = true;
    while (s->conns != NULL) conn_close(s->conns);
    uv_close((uv_handle_t *)&s->listener, listener_closed);
}

/* ---- loop helpers ---- */

static void guard_tick(uv_timer_t *t)
{
    (void)t;
}

static void guard_closed(uv_handle_t *h)
{
    free(h);
}

bool cts_run_until(uv_loop_t *loop, bool (*pred)(void *arg), void *arg, uint64_t timeout_ms)
{
    uv_timer_t *guard = malloc(sizeof(*guard));
    if (guard == NULL) abort();
    uv_timer_init(loop, guard);
    uv_timer_start(guard, guard_tick, 5, 5); /* keeps UV_RUN_ONCE from blocking forever */
    uv_update_time(loop);
    uint64_t deadline = uv_now(loop) + timeout_ms;
    bool ok;
    while (!(ok = pred(arg)) && uv_now(loop) < deadline) uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)guard, guard_closed);
    return ok;
}

static bool loop_idle(void *arg)
{
    return !uv_loop_alive(arg);
}

int cts_finish_loop(uv_loop_t *loop, uint64_t timeout_ms)
{
    uv_timer_t *guard = malloc(sizeof(*guard));
    if (guard == NULL) abort();
    uv_timer_init(loop, guard);
    uv_timer_start(guard, guard_tick, 5, 5);
    uv_unref((uv_handle_t *)guard);
    uv_update_time(loop);
    uint64_t deadline = uv_now(loop) + timeout_ms;
    while (!loop_idle(loop) && uv_now(loop) < deadline) uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)guard, guard_closed);
    uv_run(loop, UV_RUN_NOWAIT);
    return uv_loop_close(loop);
}
