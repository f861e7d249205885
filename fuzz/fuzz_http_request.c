/*
 * fuzz/fuzz_http_request — the embedded HTTP server's request path: raw client
 * bytes in, the real connection state machine (raw header scanner, llhttp in
 * strict mode, limits, router, authenticator, handlers, pipelining, response
 * writing) out.  No network: each run makes a fresh uv loop and http_server,
 * hands it one end of a socketpair with http_server_adopt(), writes the input
 * from the other end and drives the loop (UV_RUN_NOWAIT) until nothing moves.
 *
 * Input layout:  byte 0  delivery: 0 = everything in one write, n = writes of
 *                        n bytes with the loop run in between (so requests
 *                        are split at every position across reads);
 *                byte 1  bit 0: half-close (EOF) after the last byte, which
 *                        cancels a held exchange; bit 1: held responses are
 *                        answered only after the EOF;
 *                rest    the client's byte stream.
 *
 * Routes mirror the daemon's shapes: a plain GET, a task-authenticated POST
 * with a :id parameter whose authenticator and handler answer now or from a
 * 0 ms timer (the header "X-Defer" decides), and a 204 DELETE.  Small limits
 * (1 KiB of header, 2 KiB of body) make 431/413 reachable.
 *
 * Oracles besides ASan/UBSan/LSan: every byte the server writes must start a
 * response with "HTTP/1.1 "; after the fuzzed client a well-behaved client on
 * a new connection must still get 200; the exchange count must drop to 0; and
 * after http_server_close every handle is closed (uv_loop_close() == 0).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "fuzz_util.h"
#include "shared/http/http_server.h"

#define BODY_LIMIT 2048
#define HEADER_LIMIT 1024
#define MAX_ROUNDS 100000

struct fuzz_ctx {
    uv_loop_t loop;
    struct logger lg;
    struct http_server *srv;
    int deferred;      /* timers still pending or closing */
    int hold;          /* deferred work waits until released */
    int server_closed; /* http_server_close's done ran */
    char out[65536];   /* what the current client has received */
    size_t out_len;
};

struct deferred {
    uv_timer_t timer;
    struct fuzz_ctx *f;
    struct http_exchange *ex;
    http_auth_done auth_done; /* NULL: respond; else finish authentication */
    int ok;
};

static struct fuzz_ctx *ctx_of(void *app_ctx)
{
    return app_ctx;
}

static void deferred_closed_cb(uv_handle_t *h)
{
    struct deferred *d = h->data;
    d->f->deferred--;
    free(d);
}

static void respond_echo(struct http_exchange *ex)
{
    char body[256];
    size_t len = 0;
    const char *id = http_exchange_param(ex, "id");
    const char *ct = http_exchange_header(ex, "content-type");
    (void)http_exchange_body(ex, &len);
    snprintf(body, sizeof(body), "{\"id_len\":%zu,\"ct\":%d,\"body\":%zu,\"query_len\":%zu}", id ? strlen(id) : 0,
             ct != NULL, len, strlen(http_exchange_query(ex)));
    struct http_header_kv extra[] = {{"X-Echo", http_exchange_method(ex)}, {"Bad Header", "x"}};
    http_exchange_respond(ex, 200, body, extra, 2);
}

static void deferred_fire_cb(uv_timer_t *t)
{
    struct deferred *d = t->data;
    if (d->f->hold) return; /* released later by fuzz_release() */
    uv_timer_stop(t);
    if (d->auth_done != NULL)
        d->auth_done(d->ex, d->ok, d->ok ? NULL : "fuzz: rejected");
    else if (http_exchange_is_cancelled(d->ex))
        http_exchange_respond(d->ex, 503, NULL, NULL, 0);
    else
        respond_echo(d->ex);
    uv_close((uv_handle_t *)&d->timer, deferred_closed_cb);
}

static void defer(struct fuzz_ctx *f, struct http_exchange *ex, http_auth_done auth_done, int ok)
{
    struct deferred *d = calloc(1, sizeof(*d));
    if (d == NULL) abort();
    *d = (struct deferred){.f = f, .ex = ex, .auth_done = auth_done, .ok = ok};
    if (uv_timer_init(&f->loop, &d->timer) != 0) abort();
    d->timer.data = d;
    f->deferred++;
    uv_timer_start(&d->timer, deferred_fire_cb, 0, 1);
}

static void handle_get(struct http_exchange *ex, void *app_ctx)
{
    (void)app_ctx;
    http_exchange_respond(ex, 200, "{\"ok\":true}", NULL, 0);
}

static void handle_execute(struct http_exchange *ex, void *app_ctx)
{
    if (http_exchange_header(ex, "x-defer") != NULL)
        defer(ctx_of(app_ctx), ex, NULL, 0);
    else
        respond_echo(ex);
}

static void handle_delete(struct http_exchange *ex, void *app_ctx)
{
    (void)app_ctx;
    http_exchange_respond(ex, 204, "{\"ignored\":true}", NULL, 0);
}

static void authenticate(void *auth_ctx, struct http_exchange *ex, http_auth_done done)
{
    const char *authz = http_exchange_header(ex, "Authorization");
    int ok = http_exchange_header_count(ex, "Authorization") == 1 && strcmp(authz, "Bearer ok") == 0;
    if (http_exchange_header(ex, "x-defer") != NULL)
        defer(auth_ctx, ex, done, ok);
    else
        done(ex, ok, ok ? NULL : "fuzz: rejected");
}

static const struct http_route routes[] = {
    {"GET", "/healthz", handle_get, HTTP_AUTH_NONE},
    {"POST", "/api/deals-pipeline/bookings/:id/execute-followup", handle_execute, HTTP_AUTH_TASK},
    {"DELETE", "/items/:a/:b", handle_delete, HTTP_AUTH_NONE},
};

/* Read what the server wrote so far; returns the number of bytes. */
static size_t drain_client(struct fuzz_ctx *f, int fd)
{
    size_t total = 0;
    for (;;) {
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0) break;
        size_t room = sizeof(f->out) - f->out_len;
        size_t keep = (size_t)n < room ? (size_t)n : room;
        memcpy(f->out + f->out_len, buf, keep);
        f->out_len += keep;
        total += (size_t)n;
    }
    return total;
}

/* Run the loop until three rounds in a row neither produce output nor fire timers. */
static void pump(struct fuzz_ctx *f, int fd)
{
    int quiet = 0;
    for (int round = 0; quiet < 3 && round < MAX_ROUNDS; round++) {
        int pending_before = f->deferred;
        uv_run(&f->loop, UV_RUN_NOWAIT);
        size_t got = drain_client(f, fd);
        quiet = got == 0 && f->deferred == pending_before && (f->deferred == 0 || f->hold) ? quiet + 1 : 0;
    }
}

static void release_held(struct fuzz_ctx *f, int fd)
{
    f->hold = 0;
    pump(f, fd);
}

/* Write the stream in pieces of `chunk` bytes (0: at once); stops early when the server stops reading. */
static void feed(struct fuzz_ctx *f, int fd, const uint8_t *data, size_t size, size_t chunk)
{
    size_t off = 0;
    int stalled = 0;
    while (off < size && stalled < 3) {
        size_t n = chunk == 0 ? size - off : (chunk < size - off ? chunk : size - off);
        ssize_t w = send(fd, data + off, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return; /* server closed: EPIPE/ECONNRESET */
        if (w > 0) {
            off += (size_t)w;
            stalled = 0;
        } else {
            stalled++;
        }
        pump(f, fd);
    }
}

static void check_responses(const struct fuzz_ctx *f)
{
    static const char prefix[] = "HTTP/1.1 ";
    size_t n = f->out_len < sizeof(prefix) - 1 ? f->out_len : sizeof(prefix) - 1;
    if (memcmp(f->out, prefix, n) != 0) abort(); /* the server wrote something that is not a response */
}

/* A well-behaved client on a fresh connection must still be served. */
static void check_still_serving(struct fuzz_ctx *f)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
    f->out_len = 0;
    if (http_server_adopt(f->srv, sv[0]) != 0) abort();
    if (send(sv[1], req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(req) - 1)) abort();
    pump(f, sv[1]);
    static const char ok[] = "HTTP/1.1 200 ";
    if (f->out_len < sizeof(ok) - 1 || memcmp(f->out, ok, sizeof(ok) - 1) != 0) abort();
    close(sv[1]);
}

static void server_done_cb(void *arg)
{
    ((struct fuzz_ctx *)arg)->server_closed = 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t chunk = data[0];
    int half_close = data[1] & 1, hold_until_eof = (data[1] & 2) != 0;
    data += 2;
    size -= 2;

    struct fuzz_ctx *f = calloc(1, sizeof(*f));
    if (f == NULL || uv_loop_init(&f->loop) != 0) abort();
    fuzz_logger_init(&f->lg);
    struct http_server_opts opts = {
        .listen = "127.0.0.1:0",
        .limits = {.max_header_bytes = HEADER_LIMIT, .max_body_bytes = BODY_LIMIT, .max_connections = 4},
        .routes = routes,
        .n_routes = sizeof(routes) / sizeof(routes[0]),
        .app_ctx = f,
        .authenticate = authenticate,
        .auth_ctx = f,
    };
    f->srv = http_server_new(&f->loop, &f->lg, &opts);
    if (f->srv == NULL) abort();

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
    if (http_server_adopt(f->srv, sv[0]) != 0) abort();
    f->hold = hold_until_eof && half_close;
    feed(f, sv[1], data, size, chunk);
    if (half_close) {
        shutdown(sv[1], SHUT_WR);
        pump(f, sv[1]);
    }
    release_held(f, sv[1]);
    check_responses(f);
    close(sv[1]);
    pump(f, -1);
    if (http_server_active_exchanges(f->srv) != 0) abort(); /* every exchange answered or cancelled */

    check_still_serving(f);

    http_server_close(f->srv, server_done_cb, f);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    if (!f->server_closed || f->deferred != 0) abort();
    if (uv_loop_close(&f->loop) != 0) abort(); /* a handle was left open */
    fuzz_logger_free(&f->lg);
    free(f);
    return 0;
}
