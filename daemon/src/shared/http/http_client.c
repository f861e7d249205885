/*
 * shared/http/http_client — libcurl multi on libuv (see http_client.h).
 *
 * Design.  One CURLM per client.  libcurl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION → one uv_poll_t per socket, a `struct sock_watch`)
 * and when to call it back (CURLMOPT_TIMERFUNCTION → one uv_timer_t).  Poll
 * events and timer expiries are fed to curl_multi_socket_action(), and after
 * every action — socket or timer path — finished transfers are drained with
 * curl_multi_info_read() and completed.
 *
 * A request is a `struct xfer` that owns copies of everything plus the
 * response being collected.  It lives on exactly one list: `queue` (waiting
 * for a slot), `active` (added to the multi handle) or `aborted` (client
 * closing, callback pending).  When a transfer finishes, the next queued one
 * is started before the finished one's callback runs, so the FIFO order holds
 * even when callbacks submit new requests.
 *
 * Queued requests have their own deadline: a second timer fires at the
 * earliest one and fails the expired requests without waiting for a slot.
 *
 * Re-entrancy.  Callbacks may call http_client_send() or http_client_close().
 * close() from inside a completion callback only marks the client; the actual
 * teardown happens once the dispatching code has unwound (dispatch_depth == 0),
 * so curl_multi_info_read() is never called on a destroyed multi handle.
 *
 * Teardown.  Active easy handles are removed and cleaned up, socket watches are
 * closed before curl_multi_cleanup() closes their descriptors, then the timer
 * is closed.  When the last libuv close callback has run, the aborted
 * requests' callbacks are invoked, the client is freed, and done() is called.
 */
#include "shared/http/http_client.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef FOLLOWUPD_VERSION
#define FOLLOWUPD_VERSION "dev"
#endif

#define MAX_RESPONSE_HEADER_BYTES (64u * 1024u)
#define MAX_RESPONSE_HEADERS 128u

struct xfer;

struct xfer_list {
    struct xfer *head, *tail;
    size_t n;
};

struct sock_watch {
    uv_poll_t poll;
    curl_socket_t fd;
    struct http_client *client;
    struct sock_watch *prev, *next;
};

struct xfer {
    struct xfer *prev, *next;
    struct http_client *client;
    CURL *easy;
    struct curl_slist *req_headers;
    char *method, *url, *body;
    size_t body_len;
    long timeout_ms;
    uint64_t submitted_at;
    size_t max_body;
    http_client_cb cb;
    void *arg;
    /* response */
    char *resp_body;
    size_t resp_len, resp_cap;
    struct http_header *resp_headers; /* owns name/value strings */
    size_t n_resp_headers, cap_resp_headers;
    size_t resp_header_bytes;
    const char *limit_error;          /* set when a write/header callback refused data */
    char errbuf[CURL_ERROR_SIZE];
};

struct http_client {
    uv_loop_t *loop;
    struct logger *lg;
    CURLM *multi;
    uv_timer_t timer;                 /* libcurl's timeout */
    uv_timer_t queue_timer;           /* earliest deadline among queued requests */
    uint64_t queue_timer_due;         /* when queue_timer fires, 0 = not armed */
    int max_concurrent;
    size_t max_response_bytes;
    struct xfer_list queue, active, aborted;
    struct sock_watch *socks;         /* live (not closing) socket watches */
    int open_handles;                 /* libuv handles whose close callback is pending or not yet closed */
    int dispatch_depth;
    bool closing, torn_down;
    void (*done)(void *arg);
    void *done_arg;
};

/* ---- small lists ---------------------------------------------------------------------------- */

static void list_push(struct xfer_list *l, struct xfer *x)
{
    x->next = NULL;
    x->prev = l->tail;
    if (l->tail != NULL) l->tail->next = x;
    else l->head = x;
    l->tail = x;
    l->n++;
}

static void list_remove(struct xfer_list *l, struct xfer *x)
{
    if (x->prev != NULL) x->prev->next = x->next;
    else l->head = x->next;
    if (x->next != NULL) x->next->prev = x->prev;
    else l->tail = x->prev;
    x->prev = x->next = NULL;
    l->n--;
}

static struct xfer *list_pop(struct xfer_list *l)
{
    struct xfer *x = l->head;
    if (x != NULL) list_remove(l, x);
    return x;
}

/* ---- transfer objects ----------------------------------------------------------------------- */

/* Request headers and bodies carry tokens and assertions: wipe them before release. */
static void wipe_and_free(char *p, size_t len)
{
    if (p == NULL) return;
    explicit_bzero(p, len);
    free(p);
}

static void xfer_free(struct xfer *x)
{
    if (x == NULL) return;
    if (x->easy != NULL) curl_easy_cleanup(x->easy);
    for (struct curl_slist *h = x->req_headers; h != NULL; h = h->next)
        explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(x->req_headers);
    free(x->method);
    free(x->url);
    wipe_and_free(x->body, x->body_len);
    wipe_and_free(x->resp_body, x->resp_len);
    for (size_t i = 0; i < x->n_resp_headers; i++) {
        free((char *)x->resp_headers[i].name);
        free((char *)x->resp_headers[i].value);
    }
    free(x->resp_headers);
    free(x);
}

static bool is_token_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(const char *s)
{
    if (s == NULL || *s == '\0') return false;
    for (; *s != '\0'; s++)
        if (!is_token_char((unsigned char)*s)) return false;
    return true;
}

static bool is_safe_header_value(const char *s)
{
    if (s == NULL) return false;
    for (; *s != '\0'; s++)
        if (*s == '\r' || *s == '\n') return false;
    return true;
}

static bool request_is_valid(const struct http_request *req)
{
    if (req == NULL || req->url == NULL || !is_token(req->method)) return false;
    if (req->body == NULL && req->body_len > 0) return false;
    if (req->n_headers > 0 && req->headers == NULL) return false;
    for (size_t i = 0; i < req->n_headers; i++)
        if (!is_token(req->headers[i].name) || !is_safe_header_value(req->headers[i].value))
            return false;
    return true;
}

static struct curl_slist *build_header_list(const struct http_request *req)
{
    struct curl_slist *list = NULL, *tmp;
    for (size_t i = 0; i < req->n_headers; i++) {
        const char *value = req->headers[i].value;
        size_t len = strlen(req->headers[i].name) + strlen(value) + 3;
        char *line = malloc(len);
        if (line == NULL) goto fail;
        /* "Name;" is libcurl's way to send a header with an empty value. */
        if (*value == '\0') snprintf(line, len, "%s;", req->headers[i].name);
        else snprintf(line, len, "%s: %s", req->headers[i].name, value);
        tmp = curl_slist_append(list, line);
        explicit_bzero(line, len);
        free(line);
        if (tmp == NULL) goto fail;
        list = tmp;
    }
    /* Never wait for "100 Continue": bodies are small and already in memory. */
    tmp = curl_slist_append(list, "Expect:");
    if (tmp == NULL) goto fail;
    return tmp;
fail:
    curl_slist_free_all(list);
    return NULL;
}

static struct xfer *xfer_new(struct http_client *c, const struct http_request *req,
                             http_client_cb cb, void *arg)
{
    struct xfer *x = calloc(1, sizeof(*x));
    if (x == NULL) return NULL;
    x->client = c;
    x->cb = cb;
    x->arg = arg;
    x->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : HTTP_CLIENT_DEFAULT_TIMEOUT_MS;
    x->submitted_at = uv_now(c->loop);
    x->max_body = req->max_response_bytes > 0 && req->max_response_bytes < c->max_response_bytes
                      ? req->max_response_bytes
                      : c->max_response_bytes;
    x->method = strdup(req->method);
    x->url = strdup(req->url);
    x->body = malloc(req->body_len + 1);
    x->req_headers = build_header_list(req);
    if (x->method == NULL || x->url == NULL || x->body == NULL || x->req_headers == NULL)
        goto fail;
    if (req->body_len > 0) memcpy(x->body, req->body, req->body_len);
    x->body[req->body_len] = '\0';
    x->body_len = req->body_len;
    return x;
fail:
    xfer_free(x);
    return NULL;
}

/* ---- libcurl data callbacks ----------------------------------------------------------------- */

static size_t on_body_data(char *data, size_t size, size_t nmemb, void *userp)
{
    struct xfer *x = userp;
    size_t n = size * nmemb;
    if (n > x->max_body - x->resp_len) {
        x->limit_error = "response body too large";
        return 0; /* → CURLE_WRITE_ERROR */
    }
    if (x->resp_len + n + 1 > x->resp_cap) {
        size_t cap = x->resp_cap ? x->resp_cap : 1024;
        while (cap < x->resp_len + n + 1) cap *= 2;
        char *grown = realloc(x->resp_body, cap);
        if (grown == NULL) {
            x->limit_error = "out of memory";
            return 0;
        }
        x->resp_body = grown;
        x->resp_cap = cap;
    }
    memcpy(x->resp_body + x->resp_len, data, n);
    x->resp_len += n;
    x->resp_body[x->resp_len] = '\0';
    return n;
}

static void clear_response_headers(struct xfer *x)
{
    for (size_t i = 0; i < x->n_resp_headers; i++) {
        free((char *)x->resp_headers[i].name);
        free((char *)x->resp_headers[i].value);
    }
    x->n_resp_headers = 0;
}

static char *dup_trimmed(const char *s, size_t len)
{
    while (len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' ||
                       s[len - 1] == '\n'))
        len--;
    return strndup(s, len);
}

static int add_response_header(struct xfer *x, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    if (colon == NULL) return 0; /* blank line or continuation: ignore */
    if (x->n_resp_headers == MAX_RESPONSE_HEADERS) return -1;
    if (x->n_resp_headers == x->cap_resp_headers) {
        size_t cap = x->cap_resp_headers ? x->cap_resp_headers * 2 : 16;
        struct http_header *grown = realloc(x->resp_headers, cap * sizeof(*grown));
        if (grown == NULL) return -1;
        x->resp_headers = grown;
        x->cap_resp_headers = cap;
    }
    char *name = dup_trimmed(line, (size_t)(colon - line));
    char *value = dup_trimmed(colon + 1, len - (size_t)(colon - line) - 1);
    if (name == NULL || value == NULL) {
        free(name);
        free(value);
        return -1;
    }
    x->resp_headers[x->n_resp_headers].name = name;
    x->resp_headers[x->n_resp_headers].value = value;
    x->n_resp_headers++;
    return 0;
}

static size_t on_header_line(char *line, size_t size, size_t nmemb, void *userp)
{
    struct xfer *x = userp;
    size_t n = size * nmemb;
    x->resp_header_bytes += n;
    if (x->resp_header_bytes > MAX_RESPONSE_HEADER_BYTES) {
        x->limit_error = "response headers too large";
        return 0;
    }
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        clear_response_headers(x); /* a new (final or interim) response starts */
        return n;
    }
    if (add_response_header(x, line, n) != 0) {
        x->limit_error = "response headers too large";
        return 0;
    }
    return n;
}

/* ---- completion ----------------------------------------------------------------------------- */

static void log_outcome(struct http_client *c, const struct xfer *x, const struct http_response *r)
{
    if (!log_enabled(c->lg, LOG_LEVEL_DEBUG)) return;
    /* URL without query string: queries could carry credentials. */
    size_t url_len = strcspn(x->url, "?#");
    char status[24];
    snprintf(status, sizeof(status), "%ld", r->status);
    char elapsed[24];
    snprintf(elapsed, sizeof(elapsed), "%llu",
             (unsigned long long)(uv_now(c->loop) - x->submitted_at));
    char *url = strndup(x->url, url_len);
    LOG_KV(c->lg, LOG_LEVEL_DEBUG, NULL,
           ((const char *[]){"method", x->method, "url", url ? url : "", "status", status,
                             "elapsed_ms", elapsed, "error", r->error ? r->error : "", NULL}),
           "http request finished");
    free(url);
}

/* Invoke x's callback with what was collected (or the given error) and free x. */
static void xfer_complete(struct http_client *c, struct xfer *x, int curl_code, const char *error)
{
    struct http_response r = {0};
    r.transport_error = curl_code;
    if (curl_code == CURLE_OK && x->easy != NULL) {
        long status = 0;
        if (curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK)
            r.status = status;
    }
    if (curl_code != CURLE_OK) {
        if (error != NULL) r.error = error;
        else if (x->limit_error != NULL) r.error = x->limit_error;
        else if (x->errbuf[0] != '\0') r.error = x->errbuf;
        else r.error = curl_easy_strerror((CURLcode)curl_code);
    }
    r.body = x->resp_body != NULL ? x->resp_body : "";
    r.body_len = x->resp_len;
    r.headers = x->resp_headers;
    r.n_headers = x->n_resp_headers;
    log_outcome(c, x, &r);
    x->cb(x->arg, &r);
    xfer_free(x);
}

static long clamp_long(long v, long lo, long hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static int setup_method(CURL *e, struct xfer *x)
{
    int bad = 0;
    if (strcmp(x->method, "GET") == 0) {
        bad |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) != CURLE_OK;
        return bad ? -1 : 0;
    }
    if (strcmp(x->method, "HEAD") == 0) {
        bad |= curl_easy_setopt(e, CURLOPT_NOBODY, 1L) != CURLE_OK;
        return bad ? -1 : 0;
    }
    if (strcmp(x->method, "POST") != 0)
        bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method) != CURLE_OK;
    if (strcmp(x->method, "POST") == 0 || x->body_len > 0) {
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body) != CURLE_OK;
    }
    return bad ? -1 : 0;
}

static CURL *make_easy(struct xfer *x, long remaining_ms)
{
    CURL *e = curl_easy_init();
    if (e == NULL) return NULL;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, x->url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, x) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body_data) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, x) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header_line) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, x) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->req_headers) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, remaining_ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                            clamp_long(remaining_ms, 1, HTTP_CLIENT_MAX_CONNECT_TIMEOUT_MS)) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, "followupd/" FOLLOWUPD_VERSION) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
#else
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK;
#endif
    /* HTTP/2 over TLS when this libcurl has it; silently HTTP/1.1 otherwise. */
    (void)curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    bad |= setup_method(e, x) != 0;
    if (bad) {
        curl_easy_cleanup(e);
        return NULL;
    }
    return e;
}

/* Start x: CURLE_OK when added to the multi handle; otherwise the code to fail it with. */
static int xfer_start(struct http_client *c, struct xfer *x)
{
    uint64_t waited = uv_now(c->loop) - x->submitted_at;
    if (waited >= (uint64_t)x->timeout_ms) return CURLE_OPERATION_TIMEDOUT;
    x->easy = make_easy(x, x->timeout_ms - (long)waited);
    if (x->easy == NULL) return CURLE_FAILED_INIT;
    if (curl_multi_add_handle(c->multi, x->easy) != CURLM_OK) {
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
        return CURLE_FAILED_INIT;
    }
    list_push(&c->active, x);
    return CURLE_OK;
}

/* Start queued requests while slots are free. Runs only from the loop. */
static void pump_queue(struct http_client *c)
{
    while (!c->closing && c->active.n < (size_t)c->max_concurrent && c->queue.n > 0) {
        struct xfer *x = list_pop(&c->queue);
        int rc = xfer_start(c, x);
        if (rc != CURLE_OK)
            xfer_complete(c, x, rc,
                          rc == CURLE_OPERATION_TIMEDOUT ? "timed out waiting for a connection slot"
                                                         : "could not start request");
    }
}

static void teardown(struct http_client *c);

static void dispatch_begin(struct http_client *c)
{
    c->dispatch_depth++;
}

static void dispatch_end(struct http_client *c)
{
    c->dispatch_depth--;
    if (c->closing && !c->torn_down && c->dispatch_depth == 0) teardown(c);
}

static uint64_t xfer_deadline(const struct xfer *x)
{
    return x->submitted_at + (uint64_t)x->timeout_ms;
}

static void on_queue_timer(uv_timer_t *t);

/* Arm the queue timer for `due` unless it already fires earlier. */
static void arm_queue_timer(struct http_client *c, uint64_t due)
{
    if (c->queue_timer_due != 0 && c->queue_timer_due <= due) return;
    uint64_t now = uv_now(c->loop);
    if (uv_timer_start(&c->queue_timer, on_queue_timer, due > now ? due - now : 0, 0) == 0)
        c->queue_timer_due = due;
}

static void on_queue_timer(uv_timer_t *t)
{
    struct http_client *c = t->data;
    uint64_t now = uv_now(c->loop);
    uint64_t next_due = 0;
    c->queue_timer_due = 0;
    dispatch_begin(c);
    struct xfer *x = c->queue.head, *next;
    for (; x != NULL && !c->closing; x = next) {
        next = x->next;
        if (xfer_deadline(x) > now) {
            if (next_due == 0 || xfer_deadline(x) < next_due) next_due = xfer_deadline(x);
            continue;
        }
        list_remove(&c->queue, x);
        xfer_complete(c, x, CURLE_OPERATION_TIMEDOUT, "timed out waiting for a connection slot");
        next = c->queue.head; /* the callback may have changed the queue: rescan */
        next_due = 0;
    }
    if (!c->closing && next_due != 0) arm_queue_timer(c, next_due);
    dispatch_end(c);
}

static void drain_finished(struct http_client *c)
{
    CURLMsg *msg;
    int pending;
    dispatch_begin(c);
    while (!c->closing && (msg = curl_multi_info_read(c->multi, &pending)) != NULL) {
        if (msg->msg != CURLMSG_DONE) continue;
        CURL *easy = msg->easy_handle;
        int result = msg->data.result;
        char *priv = NULL;
        if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv) != CURLE_OK || priv == NULL) {
            curl_multi_remove_handle(c->multi, easy);
            curl_easy_cleanup(easy);
            continue;
        }
        struct xfer *x = (struct xfer *)(void *)priv;
        list_remove(&c->active, x);
        curl_multi_remove_handle(c->multi, easy);
        pump_queue(c);
        xfer_complete(c, x, result, NULL);
    }
    dispatch_end(c);
}

/* ---- libuv ↔ libcurl glue ------------------------------------------------------------------- */

static void finish_close(struct http_client *c);

static void on_handle_closed(struct http_client *c)
{
    c->open_handles--;
    if (c->torn_down && c->open_handles == 0) finish_close(c);
}

static void on_sock_closed(uv_handle_t *h)
{
    struct sock_watch *w = h->data;
    struct http_client *c = w->client;
    free(w);
    on_handle_closed(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    on_handle_closed(h->data);
}

static void on_socket_event(uv_poll_t *h, int status, int events)
{
    struct sock_watch *w = h->data;
    struct http_client *c = w->client;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    }
    int running;
    curl_multi_socket_action(c->multi, w->fd, flags, &running);
    drain_finished(c);
}

static void on_timer(uv_timer_t *t)
{
    struct http_client *c = t->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_finished(c);
}

static void sock_watch_unlink(struct http_client *c, struct sock_watch *w)
{
    if (w->prev != NULL) w->prev->next = w->next;
    else c->socks = w->next;
    if (w->next != NULL) w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

static void sock_watch_close(struct http_client *c, struct sock_watch *w)
{
    sock_watch_unlink(c, w);
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, on_sock_closed);
}

static struct sock_watch *sock_watch_open(struct http_client *c, curl_socket_t fd)
{
    struct sock_watch *w = calloc(1, sizeof(*w));
    if (w == NULL) return NULL;
    if (uv_poll_init_socket(c->loop, &w->poll, fd) != 0) {
        free(w);
        return NULL;
    }
    w->fd = fd;
    w->client = c;
    w->poll.data = w;
    c->open_handles++;
    w->next = c->socks;
    if (c->socks != NULL) c->socks->prev = w;
    c->socks = w;
    return w;
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct http_client *c = userp;
    struct sock_watch *w = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (w != NULL) {
            curl_multi_assign(c->multi, fd, NULL);
            sock_watch_close(c, w);
        }
        return 0;
    }
    if (c->torn_down) return -1;
    if (w == NULL) {
        w = sock_watch_open(c, fd);
        if (w == NULL) return -1;
        curl_multi_assign(c->multi, fd, w);
    }
    int events = 0;
    if (what & CURL_POLL_IN) events |= UV_READABLE;
    if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
    return uv_poll_start(&w->poll, events, on_socket_event) == 0 ? 0 : -1;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct http_client *c = userp;
    if (c->torn_down) return 0;
    /* -1: stop. 0: "act now" — but never from inside this callback: a
     * zero-delay timer runs it from the loop. */
    if (timeout_ms < 0) return uv_timer_stop(&c->timer) == 0 ? 0 : -1;
    return uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0) == 0 ? 0 : -1;
}

/* ---- public API ----------------------------------------------------------------------------- */

struct http_client *http_client_new(uv_loop_t *loop, struct logger *lg, int max_concurrent)
{
    if (loop == NULL || max_concurrent < 1) return NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return NULL;
    struct http_client *c = calloc(1, sizeof(*c));
    if (c == NULL) goto fail_global;
    c->loop = loop;
    c->lg = lg;
    c->max_concurrent = max_concurrent;
    c->max_response_bytes = HTTP_CLIENT_DEFAULT_MAX_RESPONSE_BYTES;
    c->multi = curl_multi_init();
    if (c->multi == NULL) goto fail_client;
    int bad = 0;
    bad |= curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK;
    bad |= curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK;
    bad |= curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK;
    bad |= curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK;
    (void)curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    if (bad) goto fail_multi;
    /* uv_timer_init() only registers the handle with the loop; it cannot fail. */
    if (uv_timer_init(loop, &c->timer) != 0 || uv_timer_init(loop, &c->queue_timer) != 0)
        goto fail_multi;
    c->timer.data = c;
    c->queue_timer.data = c;
    c->open_handles = 2;
    return c;
fail_multi:
    curl_multi_cleanup(c->multi);
fail_client:
    free(c);
fail_global:
    curl_global_cleanup();
    return NULL;
}

void http_client_set_max_response_bytes(struct http_client *c, size_t max_bytes)
{
    if (c != NULL && max_bytes > 0) c->max_response_bytes = max_bytes;
}

int http_client_send(struct http_client *c, const struct http_request *req, http_client_cb cb,
                     void *arg)
{
    if (c == NULL || c->closing || cb == NULL || !request_is_valid(req)) return -1;
    struct xfer *x = xfer_new(c, req, cb, arg);
    if (x == NULL) return -1;
    if (c->active.n < (size_t)c->max_concurrent && c->queue.n == 0) {
        /* curl_multi_add_handle only arms the timer: nothing completes synchronously. */
        if (xfer_start(c, x) != CURLE_OK) {
            xfer_free(x);
            return -1;
        }
    } else {
        list_push(&c->queue, x);
        arm_queue_timer(c, xfer_deadline(x));
    }
    return 0;
}

static void teardown(struct http_client *c)
{
    struct xfer *x;
    c->torn_down = true;
    while ((x = list_pop(&c->active)) != NULL) {
        curl_multi_remove_handle(c->multi, x->easy);
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
        list_push(&c->aborted, x);
    }
    while ((x = list_pop(&c->queue)) != NULL) list_push(&c->aborted, x);
    /* Stop watching descriptors before libcurl closes them. */
    while (c->socks != NULL) {
        curl_multi_assign(c->multi, c->socks->fd, NULL);
        sock_watch_close(c, c->socks);
    }
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    uv_close((uv_handle_t *)&c->queue_timer, on_timer_closed);
}

static void finish_close(struct http_client *c)
{
    struct xfer *x;
    while ((x = list_pop(&c->aborted)) != NULL)
        xfer_complete(c, x, CURLE_ABORTED_BY_CALLBACK, "request aborted: http client closed");
    void (*done)(void *) = c->done;
    void *done_arg = c->done_arg;
    free(c);
    curl_global_cleanup();
    if (done != NULL) done(done_arg);
}

void http_client_close(struct http_client *c, void (*done)(void *arg), void *arg)
{
    if (c == NULL || c->closing) return;
    c->closing = true;
    c->done = done;
    c->done_arg = arg;
    if (c->dispatch_depth == 0) teardown(c);
}

const char *http_response_header(const struct http_response *r, const char *name)
{
    if (r == NULL || name == NULL) return NULL;
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
    return NULL;
}

size_t http_client_active_count(const struct http_client *c)
{
    return c != NULL ? c->active.n : 0;
}

size_t http_client_queued_count(const struct http_client *c)
{
    return c != NULL ? c->queue.n : 0;
}
