/*
 * tests/tools/httpd_demo — runs shared/http/http_server with a few demo routes
 * for the Python integration tests (tests/integration/test_http_server.py).
 *
 *   httpd_demo [--listen ADDR] [--max-conn N] [--header-timeout MS] [--body-timeout MS]
 *              [--idle-timeout MS] [--max-body BYTES] [--max-header BYTES]
 *
 * Prints "port=N" on stdout once listening.  Routes: GET /healthz, POST /echo,
 * GET /slow (answers after 300 ms; logs "slow request started" when it begins),
 * POST /task/:id (authenticated: "Authorization: Bearer demo-secret", checked
 * asynchronously).  SIGTERM/SIGINT: stop accepting, wait for in-flight requests
 * (at most 5 s), close everything and exit 0 when uv_loop_close() succeeds
 * (3 otherwise); a second signal closes at once.  Logs go to stderr.
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "shared/http/http_server.h"
#include "utils/log.h"

#define DRAIN_POLL_MS 10
#define DRAIN_MAX_MS 5000

struct demo {
    uv_loop_t *loop;
    struct logger lg;
    struct http_server *srv;
    uv_signal_t sigterm, sigint;
    uv_timer_t drain;
    uint64_t drain_started;
    int stopping;
};

struct pending {
    uv_timer_t timer;
    struct http_exchange *ex;
    http_auth_done done;
    int ok;
};

static void pending_free_cb(uv_handle_t *h)
{
    free(h->data);
}

static struct pending *pending_start(struct demo *d, struct http_exchange *ex, uv_timer_cb cb, uint64_t ms)
{
    struct pending *p = calloc(1, sizeof(*p));
    if (p == NULL) return NULL;
    p->ex = ex;
    p->timer.data = p;
    uv_timer_init(d->loop, &p->timer);
    uv_timer_start(&p->timer, cb, ms, 0);
    return p;
}

static void h_healthz(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    http_exchange_respond(ex, 200, "{\"ok\":true}", NULL, 0);
}

static void h_echo(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    size_t len = 0;
    const char *body = http_exchange_body(ex, &len);
    json_t *o = json_pack("{s:I}", "len", (json_int_t)len);
    json_t *s = json_stringn(body, len);
    if (s != NULL) json_object_set_new(o, "body", s);
    char *out = json_dumps(o, JSON_COMPACT);
    http_exchange_respond(ex, 200, out, NULL, 0);
    free(out);
    json_decref(o);
}

static void slow_fire_cb(uv_timer_t *t)
{
    struct pending *p = t->data;
    http_exchange_respond(p->ex, 200, "{\"slow\":true}", NULL, 0);
    uv_close((uv_handle_t *)t, pending_free_cb);
}

static void h_slow(struct http_exchange *ex, void *ctx)
{
    struct demo *d = ctx;
    LOG_INFO(&d->lg, &(struct log_ctx){.request_id = http_exchange_request_id(ex)}, "slow request started");
    if (pending_start(d, ex, slow_fire_cb, 300) == NULL) http_exchange_respond(ex, 500, NULL, NULL, 0);
}

static void h_task(struct http_exchange *ex, void *ctx)
{
    (void)ctx;
    json_t *o = json_pack("{s:s?}", "ran", http_exchange_param(ex, "id"));
    char *out = json_dumps(o, JSON_COMPACT);
    http_exchange_respond(ex, 200, out, NULL, 0);
    free(out);
    json_decref(o);
}

static void auth_fire_cb(uv_timer_t *t)
{
    struct pending *p = t->data;
    p->done(p->ex, p->ok, p->ok ? NULL : "bad or missing bearer token");
    uv_close((uv_handle_t *)t, pending_free_cb);
}

static void demo_authenticate(void *auth_ctx, struct http_exchange *ex, http_auth_done done)
{
    struct demo *d = auth_ctx;
    const char *a = http_exchange_header(ex, "Authorization");
    int ok = http_exchange_header_count(ex, "Authorization") == 1 && strcmp(a, "Bearer demo-secret") == 0;
    struct pending *p = pending_start(d, ex, auth_fire_cb, 0);
    if (p == NULL) {
        done(ex, 0, "out of memory");
        return;
    }
    p->done = done;
    p->ok = ok;
}

static const struct http_route demo_routes[] = {
    {"GET", "/healthz", h_healthz, HTTP_AUTH_NONE},
    {"POST", "/echo", h_echo, HTTP_AUTH_NONE_WITH_BODY},
    {"GET", "/slow", h_slow, HTTP_AUTH_NONE},
    {"POST", "/task/:id", h_task, HTTP_AUTH_TASK},
};

static void server_closed_cb(void *arg)
{
    struct demo *d = arg;
    d->srv = NULL;
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->drain, NULL);
}

static void close_now(struct demo *d)
{
    uv_timer_stop(&d->drain);
    if (d->srv != NULL && d->stopping < 3) {
        d->stopping = 3;
        http_server_close(d->srv, server_closed_cb, d);
    }
}

static void drain_cb(uv_timer_t *t)
{
    struct demo *d = t->data;
    if (http_server_active_exchanges(d->srv) == 0 || uv_now(d->loop) - d->drain_started >= DRAIN_MAX_MS) close_now(d);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    struct demo *d = s->data;
    (void)signum;
    if (d->stopping > 0) {
        close_now(d);
        return;
    }
    d->stopping = 1;
    http_server_stop_accepting(d->srv);
    LOG_INFO(&d->lg, NULL, "signal: waiting for in-flight requests");
    d->drain_started = uv_now(d->loop);
    uv_timer_start(&d->drain, drain_cb, 0, DRAIN_POLL_MS);
}

static int parse_args(int argc, char **argv, struct http_server_opts *o)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        unsigned long n = strtoul(v, NULL, 10);
        if (strcmp(k, "--listen") == 0)
            o->listen = v;
        else if (strcmp(k, "--max-conn") == 0)
            o->limits.max_connections = (unsigned)n;
        else if (strcmp(k, "--header-timeout") == 0)
            o->limits.header_timeout_ms = (unsigned)n;
        else if (strcmp(k, "--body-timeout") == 0)
            o->limits.body_timeout_ms = (unsigned)n;
        else if (strcmp(k, "--idle-timeout") == 0)
            o->limits.idle_timeout_ms = (unsigned)n;
        else if (strcmp(k, "--max-body") == 0)
            o->limits.max_body_bytes = n;
        else if (strcmp(k, "--max-header") == 0)
            o->limits.max_header_bytes = n;
        else
            return -1;
    }
    return argc % 2 == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct demo d;
    char err[256], line[32];
    memset(&d, 0, sizeof(d));
    signal(SIGPIPE, SIG_IGN);
    d.loop = uv_default_loop();
    logger_init(&d.lg, LOG_LEVEL_INFO, 2);
    struct http_server_opts o = {.listen = "127.0.0.1:0",
                                 .routes = demo_routes,
                                 .n_routes = sizeof(demo_routes) / sizeof(demo_routes[0]),
                                 .app_ctx = &d,
                                 .authenticate = demo_authenticate,
                                 .auth_ctx = &d};
    if (parse_args(argc, argv, &o) != 0) {
        LOG_ERROR(&d.lg, NULL, "usage: httpd_demo [--listen ADDR] [--max-conn N] [--header-timeout MS] ...");
        return 2;
    }
    d.srv = http_server_new(d.loop, &d.lg, &o);
    if (d.srv == NULL || http_server_listen(d.srv, err, sizeof(err)) != 0) {
        LOG_ERROR(&d.lg, NULL, "cannot start: %s", d.srv != NULL ? err : "bad options");
        return 1;
    }
    uv_signal_init(d.loop, &d.sigterm);
    uv_signal_init(d.loop, &d.sigint);
    uv_timer_init(d.loop, &d.drain);
    d.sigterm.data = d.sigint.data = d.drain.data = &d;
    uv_signal_start(&d.sigterm, signal_cb, SIGTERM);
    uv_signal_start(&d.sigint, signal_cb, SIGINT);
    int n = snprintf(line, sizeof(line), "port=%d\n", http_server_port(d.srv));
    if (write(STDOUT_FILENO, line, (size_t)n) != n) return 1;
    uv_run(d.loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(d.loop);
    LOG_INFO(&d.lg, NULL, "stopped (uv_loop_close=%d)", rc);
    logger_free(&d.lg);
    return rc == 0 ? 0 : 3;
}
