/*
 * tests/unit/support/httpd_harness — see httpd_harness.h.
 *
 * The loop thread is kept alive by an async handle.  Requests from the test
 * thread (one at a time) sit in mutex-protected slots and are picked up by the
 * async callback; a pending predicate keeps an idle handle running so it is
 * re-evaluated every loop iteration (after timers, I/O and close callbacks)
 * without blocking in poll.
 */
#include "httpd_harness.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define CALL_DEADLINE_MS 5000u
#define JOIN_DEADLINE_MS 5000u

static void deadline_in(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void poll_cb(uv_idle_t *idle)
{
    struct httpd_harness *h = idle->data;
    pthread_mutex_lock(&h->mu);
    if (!h->pred_pending) {
        uv_idle_stop(idle);
    } else if (h->pred(h, h->pred_arg)) {
        h->pred_true = 1;
        h->pred_pending = 0;
        uv_idle_stop(idle);
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
}

static void wake_cb(uv_async_t *async)
{
    struct httpd_harness *h = async->data;
    pthread_mutex_lock(&h->mu);
    if (h->call_pending) {
        httpd_call_fn fn = h->call_fn;
        void *arg = h->call_arg;
        h->call_pending = 0;
        pthread_mutex_unlock(&h->mu);
        fn(h, arg);
        pthread_mutex_lock(&h->mu);
        h->call_done = 1;
        pthread_cond_broadcast(&h->cv);
    }
    if (h->pred_pending && !uv_is_closing((uv_handle_t *)&h->poll)) uv_idle_start(&h->poll, poll_cb);
    pthread_mutex_unlock(&h->mu);
}

static void *loop_thread(void *arg)
{
    struct httpd_harness *h = arg;
    uv_run(&h->loop, UV_RUN_DEFAULT);
    return NULL;
}

int httpd_harness_start(struct httpd_harness *h, const struct http_server_opts *opts)
{
    char err[256];
    memset(h, 0, sizeof(*h));
    h->log_fd = memfd_create("httpd-harness-log", MFD_CLOEXEC);
    if (h->log_fd < 0) return -1;
    logger_init(&h->lg, LOG_LEVEL_INFO, h->log_fd);
    if (uv_loop_init(&h->loop) != 0) return -1;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    uv_async_init(&h->loop, &h->wake, wake_cb);
    h->wake.data = h;
    uv_idle_init(&h->loop, &h->poll);
    h->poll.data = h;
    struct http_server_opts o = *opts;
    if (o.listen == NULL) o.listen = "127.0.0.1:0";
    h->srv = http_server_new(&h->loop, &h->lg, &o);
    if (h->srv == NULL || http_server_listen(h->srv, err, sizeof(err)) != 0) return -1;
    h->port = http_server_port(h->srv);
    if (h->port <= 0) return -1;
    if (pthread_create(&h->thread, NULL, loop_thread, h) != 0) return -1;
    h->running = 1;
    return 0;
}

int httpd_harness_call(struct httpd_harness *h, httpd_call_fn fn, void *arg)
{
    struct timespec ts;
    int rc = 0;
    pthread_mutex_lock(&h->mu);
    h->call_fn = fn;
    h->call_arg = arg;
    h->call_pending = 1;
    h->call_done = 0;
    pthread_mutex_unlock(&h->mu);
    uv_async_send(&h->wake);
    deadline_in(&ts, CALL_DEADLINE_MS);
    pthread_mutex_lock(&h->mu);
    while (!h->call_done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&h->cv, &h->mu, &ts);
    int ok = h->call_done;
    h->call_pending = 0;
    pthread_mutex_unlock(&h->mu);
    return ok ? 0 : -1;
}

int httpd_harness_wait(struct httpd_harness *h, httpd_pred_fn pred, void *arg, unsigned timeout_ms)
{
    struct timespec ts;
    int rc = 0;
    pthread_mutex_lock(&h->mu);
    h->pred = pred;
    h->pred_arg = arg;
    h->pred_true = 0;
    h->pred_pending = 1;
    pthread_mutex_unlock(&h->mu);
    uv_async_send(&h->wake);
    deadline_in(&ts, timeout_ms);
    pthread_mutex_lock(&h->mu);
    while (!h->pred_true && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&h->cv, &h->mu, &ts);
    int ok = h->pred_true;
    h->pred_pending = 0;
    pthread_mutex_unlock(&h->mu);
    return ok ? 0 : -1;
}

static void server_closed_cb(void *arg)
{
    struct httpd_harness *h = arg;
    h->server_done = 1;
}

static void stop_on_loop(struct httpd_harness *h, void *arg)
{
    (void)arg;
    http_server_close(h->srv, server_closed_cb, h);
    h->srv = NULL;
    uv_close((uv_handle_t *)&h->poll, NULL);
    uv_close((uv_handle_t *)&h->wake, NULL);
}

int httpd_harness_stop(struct httpd_harness *h)
{
    struct timespec ts;
    if (!h->running) return -1;
    if (httpd_harness_call(h, stop_on_loop, NULL) != 0) return -1;
    deadline_in(&ts, JOIN_DEADLINE_MS);
    if (pthread_timedjoin_np(h->thread, NULL, &ts) != 0) return -1;
    h->running = 0;
    int rc = uv_loop_close(&h->loop);
    if (rc == 0 && !h->server_done) rc = -1;
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    logger_free(&h->lg);
    close(h->log_fd);
    h->log_fd = -1;
    return rc;
}

char *httpd_harness_log(struct httpd_harness *h)
{
    off_t size = lseek(h->log_fd, 0, SEEK_END);
    if (size < 0) return NULL;
    char *buf = malloc((size_t)size + 1);
    if (buf == NULL) return NULL;
    ssize_t n = pread(h->log_fd, buf, (size_t)size, 0);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

int httpd_pred_connections_eq(struct httpd_harness *h, void *expected)
{
    return h->srv != NULL && http_server_connection_count(h->srv) == *(size_t *)expected;
}

int httpd_pred_active_eq(struct httpd_harness *h, void *expected)
{
    return h->srv != NULL && http_server_active_exchanges(h->srv) == *(size_t *)expected;
}
