/*
 * tests/unit/support/kid_answers — see the header.
 */
#include "kid_answers.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "curl_test_server.h"

struct kid_answer *kid_answers_new(struct kid_answers *set, uv_loop_t *loop)
{
    if (set->n == KID_ANSWERS_MAX) return NULL;
    struct kid_answer *a = &set->items[set->n++];
    *a = (struct kid_answer){.result = (enum jwks_kid_result)-1, .asked_ms = uv_now(loop), .loop = loop};
    return a;
}

void kid_answer_cb(void *arg, enum jwks_kid_result result)
{
    struct kid_answer *a = arg;
    a->calls++;
    a->result = result;
    a->answered_ms = uv_now(a->loop);
}

struct kid_answer *kid_answers_ask(struct kid_answers *set, struct jwks_cache *c, uv_loop_t *loop, const char *kid)
{
    struct kid_answer *a = kid_answers_new(set, loop);
    assert_non_null(a);
    assert_int_equal(jwks_cache_refresh_for_kid(c, kid, kid_answer_cb, a), 0);
    assert_int_equal(a->calls, 0); /* never synchronous */
    return a;
}

static bool answered(void *arg)
{
    return ((struct kid_answer *)arg)->calls > 0;
}

uint64_t kid_answers_expect(struct kid_answer *a, enum jwks_kid_result want, uint64_t timeout_ms)
{
    assert_true(cts_run_until(a->loop, answered, a, timeout_ms));
    assert_int_equal(a->calls, 1);
    assert_int_equal(a->result, want);
    return a->answered_ms - a->asked_ms;
}
