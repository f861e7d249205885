/*
 * Loop-level unit tests of shared/db pool and listener without a server: the
 * connection target is a bound but not listening local port, so every attempt
 * is refused. They check the asynchronous contract (no synchronous callbacks,
 * queued work waits while disconnected, close fails queued work with "closing"
 * exactly once and frees everything so uv_loop_close() == 0), argument checks,
 * the queue limit, and that reconnect attempts are paced by the backoff.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "shared/db/db_listener.h"
#include "shared/db/db_pool.h"
#include "utils/log.h"

struct fixture {
    uv_loop_t loop;
    struct logger lg;
    FILE *logfile;
    int refuse_fd;        /* bound, never listening: connects are refused */
    char conninfo[128];
    struct db_opts opts;
    int done_calls;
    int cb_calls;
    char cb_order[16];
    char last_err[128];
    int last_res_null;
    struct db_pool *pool;
    int query_in_cb_rc;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->logfile = tmpfile();
    assert_non_null(f->logfile);
    logger_init(&f->lg, LOG_LEVEL_DEBUG, fileno(f->logfile));
    f->refuse_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->refuse_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(f->refuse_fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(f->conninfo, sizeof(f->conninfo), "host=127.0.0.1 port=%d user=nobody password=UnitSecret9 dbname=x",
             ntohs(sa.sin_port));
    f->opts = (struct db_opts){.conninfo = f->conninfo, .reconnect_min_ms = 20, .reconnect_max_ms = 40};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(uv_loop_close(&f->loop), 0);
    close(f->refuse_fd);
    logger_free(&f->lg);
    fclose(f->logfile);
    free(f);
    return 0;
}

static int count_in_log(struct fixture *f, const char *needle)
{
    fflush(f->logfile);
    long size = lseek(fileno(f->logfile), 0, SEEK_END);
    char *buf = calloc(1, (size_t)size + 1);
    assert_int_equal(pread(fileno(f->logfile), buf, (size_t)size, 0), size);
    int n = 0;
    for (const char *p = buf; (p = strstr(p, needle)) != NULL; p++) n++;
    free(buf);
    return n;
}

static void tick_cb(uv_timer_t *t)
{
    (void)t; /* only wakes the loop so the predicate is re-checked */
}

/* Run the loop until pred(f) holds or deadline_ms passes; returns pred(f). */
static int run_until(struct fixture *f, int (*pred)(struct fixture *), unsigned deadline_ms)
{
    uv_timer_t tick;
    uv_timer_init(&f->loop, &tick);
    uv_timer_start(&tick, tick_cb, 5, 5);
    uint64_t end = uv_hrtime() + (uint64_t)deadline_ms * 1000000u;
    while (!pred(f) && uv_hrtime() < end) uv_run(&f->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    return pred(f);
}

static int two_attempts_failed(struct fixture *f)
{
    return count_in_log(f, "postgres connection attempt failed") >= 2;
}

static int closed(struct fixture *f)
{
    return f->done_calls > 0;
}

static void done_cb(void *arg)
{
    struct fixture *f = arg;
    f->done_calls++;
}

/* A query tag: first byte names it; the fixture records the callbacks. */
struct tag {
    char name[8];
    struct fixture *f;
};

static void result_cb(void *arg, PGresult *res, const char *err)
{
    const struct tag *tag = arg;
    struct fixture *f = tag->f;
    f->cb_order[f->cb_calls++] = tag->name[0];
    f->last_res_null = res == NULL;
    snprintf(f->last_err, sizeof(f->last_err), "%s", err ? err : "");
    if (f->pool != NULL) f->query_in_cb_rc = db_pool_query(f->pool, "SELECT 1", 0, NULL, result_cb, arg);
}

static void pool_query__server_unreachable__waits_then_closing_fails_in_order(void **state)
{
    struct fixture *f = *state;
    struct db_pool *p = db_pool_new(&f->loop, &f->lg, &f->opts, 1, 2);
    assert_non_null(p);
    assert_int_equal(db_pool_start(p), 0);
    struct tag a = {"A", f}, b = {"B", f}, c = {"C", f};
    const char *params[] = {"x", NULL};
    assert_int_equal(db_pool_query(p, "SELECT $1, $2", 2, params, result_cb, &a), 0);
    assert_int_equal(db_pool_query(p, "SELECT 2", 0, NULL, result_cb, &b), 0);
    assert_int_equal(db_pool_query(p, "SELECT 3", 0, NULL, result_cb, &c), -1); /* queue full */
    assert_int_equal(f->cb_calls, 0);                                           /* never synchronous */
    assert_int_equal(db_pool_waiting(p), 2);

    assert_true(run_until(f, two_attempts_failed, 5000));
    assert_int_equal(f->cb_calls, 0); /* queued work is not failed by connection failures */
    assert_int_equal(db_pool_connected(p), 0);
    assert_int_equal(db_pool_in_use(p), 0);
    assert_int_equal(db_pool_waiting(p), 2);

    f->pool = p; /* the callbacks try to queue more while closing */
    f->query_in_cb_rc = 0;
    db_pool_close(p, done_cb, f);
    assert_int_equal(f->cb_calls, 0); /* not from inside db_pool_close either */
    assert_int_equal(f->done_calls, 0);
    assert_true(run_until(f, closed, 5000));
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(f->cb_calls, 2);
    assert_memory_equal(f->cb_order, "AB", 2);
    assert_true(f->last_res_null);
    assert_string_equal(f->last_err, "closing");
    assert_int_equal(f->query_in_cb_rc, -1);
    assert_int_equal(count_in_log(f, "UnitSecret9"), 0); /* the password never reaches the log */
}

static void pool_query__bad_arguments__rejected(void **state)
{
    struct fixture *f = *state;
    assert_null(db_pool_new(&f->loop, &f->lg, &f->opts, 0, 1));
    assert_null(db_pool_new(&f->loop, &f->lg, &f->opts, 1, -1));
    assert_null(db_pool_new(NULL, &f->lg, &f->opts, 1, 1));
    struct db_pool *p = db_pool_new(&f->loop, &f->lg, &f->opts, 2, 5);
    assert_non_null(p);
    struct tag a = {"A", f};
    assert_int_equal(db_pool_query(p, NULL, 0, NULL, result_cb, &a), -1);
    assert_int_equal(db_pool_query(p, "SELECT 1", 0, NULL, NULL, &a), -1);
    assert_int_equal(db_pool_query(p, "SELECT 1", -1, NULL, result_cb, &a), -1);
    assert_int_equal(db_pool_query(p, "SELECT $1", 1, NULL, result_cb, &a), -1);
    assert_int_equal(db_pool_query(p, "SELECT 1", DB_MAX_PARAMS + 1, (const char *const[]){"x"}, result_cb, &a),
                     -1);
    assert_int_equal(db_pool_waiting(p), 0);
    db_pool_close(p, done_cb, f);
    assert_true(run_until(f, closed, 5000));
    assert_int_equal(f->cb_calls, 0);
}

static void pool_query__max_queue_zero_and_no_idle_connection__rejected(void **state)
{
    struct fixture *f = *state;
    struct db_pool *p = db_pool_new(&f->loop, &f->lg, &f->opts, 1, 0);
    assert_non_null(p);
    struct tag a = {"A", f};
    assert_int_equal(db_pool_query(p, "SELECT 1", 0, NULL, result_cb, &a), -1);
    db_pool_close(p, done_cb, f);
    assert_true(run_until(f, closed, 5000));
    assert_int_equal(f->cb_calls, 0);
}

static void pool_close__never_started__done_called_once_from_loop(void **state)
{
    struct fixture *f = *state;
    struct db_pool *p = db_pool_new(&f->loop, &f->lg, &f->opts, 3, 1);
    assert_non_null(p);
    db_pool_close(p, done_cb, f);
    assert_int_equal(f->done_calls, 0);
    assert_true(run_until(f, closed, 5000));
    assert_int_equal(f->done_calls, 1);
}

static int many_attempts(struct fixture *f)
{
    return count_in_log(f, "postgres connection attempt failed") >= 6;
}

static void reconnect__server_unreachable__attempts_paced_by_backoff(void **state)
{
    struct fixture *f = *state;
    f->opts.reconnect_min_ms = 50;
    f->opts.reconnect_max_ms = 100;
    struct db_pool *p = db_pool_new(&f->loop, &f->lg, &f->opts, 1, 1);
    assert_non_null(p);
    uint64_t start = uv_hrtime();
    assert_int_equal(db_pool_start(p), 0);
    assert_true(run_until(f, many_attempts, 10000));
    uint64_t elapsed_ms = (uv_hrtime() - start) / 1000000u;
    /* 6 attempts = 5 waits of at least 50 ms each (first retry exactly min). */
    assert_true(elapsed_ms >= 5 * 50);
    db_pool_close(p, done_cb, f);
    assert_true(run_until(f, closed, 5000));
}

static int name_attempts_failed(struct fixture *f)
{
    return count_in_log(f, "postgres connection attempt failed") >= 2;
}

static void reconnect__host_name__resolved_off_loop_and_retried(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(f->refuse_fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(f->conninfo, sizeof(f->conninfo), "host=localhost port=%d user=nobody dbname=x", ntohs(sa.sin_port));
    struct db_pool *p = db_pool_new(&f->loop, &f->lg, &f->opts, 1, 1);
    assert_non_null(p);
    assert_int_equal(db_pool_start(p), 0);
    assert_true(run_until(f, name_attempts_failed, 10000));
    assert_true(count_in_log(f, "localhost") >= 2);
    db_pool_close(p, done_cb, f);
    assert_true(run_until(f, closed, 5000));
}

static void on_ready_cb(void *arg)
{
    struct fixture *f = arg;
    f->cb_order[f->cb_calls++] = 'R';
}

static void on_lost_cb(void *arg)
{
    struct fixture *f = arg;
    f->cb_order[f->cb_calls++] = 'L';
}

static void listener_close__before_ready__no_callbacks_and_loop_closes(void **state)
{
    struct fixture *f = *state;
    const char *channels[] = {"followupd_a", "followupd_b"};
    struct db_listener_cbs cbs = {.on_ready = on_ready_cb, .on_notify = NULL, .on_lost = on_lost_cb};
    struct db_listener *l = db_listener_new(&f->loop, &f->lg, &f->opts, channels, 2, &cbs, f);
    assert_non_null(l);
    assert_int_equal(db_listener_start(l), 0);
    assert_int_equal(db_listener_start(l), -1);
    assert_true(run_until(f, two_attempts_failed, 5000));
    assert_false(db_listener_is_ready(l));
    db_listener_close(l, done_cb, f);
    assert_int_equal(f->done_calls, 0);
    assert_true(run_until(f, closed, 5000));
    assert_int_equal(f->cb_calls, 0);
}

static void listener_new__bad_channel_names__rejected(void **state)
{
    struct fixture *f = *state;
    struct db_listener_cbs cbs = {0};
    char longname[80];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_null(db_listener_new(&f->loop, &f->lg, &f->opts, (const char *const[]){""}, 1, &cbs, f));
    assert_null(db_listener_new(&f->loop, &f->lg, &f->opts, (const char *const[]){longname}, 1, &cbs, f));
    assert_null(db_listener_new(&f->loop, &f->lg, &f->opts, (const char *const[]){NULL}, 1, &cbs, f));
    assert_null(db_listener_new(&f->loop, &f->lg, &f->opts, NULL, 1, &cbs, f));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(pool_query__server_unreachable__waits_then_closing_fails_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(pool_query__bad_arguments__rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(pool_query__max_queue_zero_and_no_idle_connection__rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(pool_close__never_started__done_called_once_from_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(reconnect__server_unreachable__attempts_paced_by_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(reconnect__host_name__resolved_off_loop_and_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(listener_close__before_ready__no_callbacks_and_loop_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(listener_new__bad_channel_names__rejected, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
