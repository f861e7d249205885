/*
 * tests/unit/support/httpd_harness — runs an http_server on its own uv loop in a
 * background thread so a test can talk to it over real sockets with blocking
 * calls from the cmocka thread (where assertions are safe).
 *
 * The test thread never touches loop state directly: httpd_harness_call() runs a
 * function on the loop thread and waits for it; httpd_harness_wait() waits until
 * a predicate, evaluated on the loop thread after every loop iteration, holds
 * (bounded by a deadline; no sleeping).  httpd_harness_stop() closes the server
 * from the loop, joins the thread and returns uv_loop_close()'s result, so a
 * test can assert that every handle was closed.  Logs go to a memfd readable
 * with httpd_harness_log().
 */
#ifndef FOLLOWUPD_TESTS_HTTPD_HARNESS_H
#define FOLLOWUPD_TESTS_HTTPD_HARNESS_H

#include <pthread.h>
#include <uv.h>

#include "shared/http/http_server.h"
#include "utils/log.h"

struct httpd_harness;
typedef void (*httpd_call_fn)(struct httpd_harness *h, void *arg);
typedef int (*httpd_pred_fn)(struct httpd_harness *h, void *arg);

struct httpd_harness {
    uv_loop_t loop;
    struct logger lg;
    int log_fd;
    struct http_server *srv;
    int port;
    int server_done; /* http_server_close's callback ran */
    int running;
    pthread_t thread;
    uv_async_t wake;
    uv_idle_t poll;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    httpd_call_fn call_fn;
    void *call_arg;
    int call_pending, call_done;
    httpd_pred_fn pred;
    void *pred_arg;
    int pred_pending, pred_true;
};

/* Create loop, logger (info level, memfd) and server; listen on 127.0.0.1:0; start the loop thread. 0 ok. */
int httpd_harness_start(struct httpd_harness *h, const struct http_server_opts *opts);
/* Run fn(h, arg) on the loop thread; 0 when it ran within the deadline. */
int httpd_harness_call(struct httpd_harness *h, httpd_call_fn fn, void *arg);
/* Wait until pred(h, arg) is true on the loop thread; 0 ok, -1 on timeout. */
int httpd_harness_wait(struct httpd_harness *h, httpd_pred_fn pred, void *arg, unsigned timeout_ms);
/* Close the server (done callback awaited), join the loop thread, close the loop.
 * Returns uv_loop_close()'s result (0 = no handle left), or -1 when the loop did not stop. */
int httpd_harness_stop(struct httpd_harness *h);
/* Everything logged so far (malloc'd, NUL-terminated). */
char *httpd_harness_log(struct httpd_harness *h);

/* Ready-made predicates/calls on the server. arg: pointer to size_t expected. */
int httpd_pred_connections_eq(struct httpd_harness *h, void *expected);
int httpd_pred_active_eq(struct httpd_harness *h, void *expected);

#endif
