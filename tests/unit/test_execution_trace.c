/*
 * Unit tests of the execution service's trace propagation: the voice-agent call carries the delivery's trace
 * as a traceparent (same trace id, parent id and sampled flag), or a new well-formed one when the delivery
 * had none (the local dispatcher's runs); the execution's log lines name the trace.  Real service code, fake
 * ports (support/ports_fakes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "features/deals_pipeline/services/followup_execution_service.h"
#include "features/deals_pipeline/services/followup_keys.h"
#include "support/ports_fakes.h"

#define SCHEMA "tenant_schema"
#define TENANT "11111111-1111-4111-8111-111111111111"
#define BOOKING "33333333-3333-4333-8333-333333333333"
#define TRACE "4bf92f3577b34da6a3ce929d0e0e4736"

struct fixture {
    struct fake_world w;
    struct logger log;
    int log_rd;
    struct followup_execution_service svc;
    char key[IDEMPOTENCY_KEY_LEN];
    int done;
};

static void on_done(void *arg, enum execution_status st, int retry_after_s)
{
    (void)st;
    (void)retry_after_s;
    ((struct fixture *)arg)->done++;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    f->log_rd = fds[0];
    fakes_init(&f->w);
    logger_init(&f->log, LOG_LEVEL_INFO, fds[1]);
    followup_execution_service_init(&f->svc, &f->w.repo, &f->w.voice, &f->log, 60);
    assert_non_null(fakes_add_scheduled(&f->w, SCHEMA, TENANT, BOOKING, f->w.now_ms + 1000, f->key));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    fakes_drain(&f->w);
    close(f->log.fd);
    close(f->log_rd);
    free(f);
    return 0;
}

static void run(struct fixture *f, const struct trace_context *trace)
{
    struct execution_request req = {.schema = SCHEMA, .tenant_id = TENANT, .booking_id = BOOKING,
                                    .idempotency_key = f->key, .request_id = "req-1", .trace = trace};
    assert_int_equal(followup_execution_execute(&f->svc, &req, on_done, f), 0);
    fakes_drain(&f->w);
    assert_int_equal(f->done, 1);
    assert_int_equal(f->w.voice_calls, 1);
}

static char *logged(struct fixture *f)
{
    static char buf[65536];
    ssize_t n = read(f->log_rd, buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void execute__delivery_with_trace__voice_call_carries_it(void **state)
{
    struct fixture *f = *state;
    struct trace_context t;
    assert_int_equal(trace_context_parse_traceparent("00-" TRACE "-00f067aa0ba902b7-01", &t), 0);
    run(f, &t);
    assert_string_equal(f->w.last_call.traceparent, "00-" TRACE "-00f067aa0ba902b7-01");
    assert_non_null(strstr(logged(f), "\"trace_id\":\"" TRACE "\""));
}

static void execute__no_trace__new_valid_traceparent_logged(void **state)
{
    struct fixture *f = *state;
    run(f, NULL);
    struct trace_context sent;
    assert_int_equal(trace_context_parse_traceparent(f->w.last_call.traceparent, &sent), 0);
    assert_true(sent.sampled);
    char want[64];
    snprintf(want, sizeof(want), "\"trace_id\":\"%s\"", sent.trace_id);
    assert_non_null(strstr(logged(f), want));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(execute__delivery_with_trace__voice_call_carries_it, setup, teardown),
        cmocka_unit_test_setup_teardown(execute__no_trace__new_valid_traceparent_logged, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
