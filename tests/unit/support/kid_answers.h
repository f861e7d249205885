/*
 * tests/unit/support/kid_answers — records the answers of
 * jwks_cache_refresh_for_kid() for the JWKS cache tests: how many callbacks
 * came, with which result, and the loop times of the question and of the
 * answer.  The records live in a fixed array owned by the test's fixture, so
 * callbacks delivered while a failed test is torn down still write to valid
 * memory.  Waiting drives the loop with cts_run_until() (no sleeping).
 */
#ifndef FOLLOWUPD_TESTS_KID_ANSWERS_H
#define FOLLOWUPD_TESTS_KID_ANSWERS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "shared/gcp/jwks_cache.h"

#define KID_ANSWERS_MAX 256

struct kid_answer {
    int calls;
    enum jwks_kid_result result;       /* -1 until answered */
    uint64_t asked_ms, answered_ms;    /* loop times */
    uv_loop_t *loop;
};

struct kid_answers {
    struct kid_answer items[KID_ANSWERS_MAX];
    int n;
};

/* A fresh record (NULL when all are used). */
struct kid_answer *kid_answers_new(struct kid_answers *set, uv_loop_t *loop);
/* The jwks_kid_cb that fills a record (arg). */
void kid_answer_cb(void *arg, enum jwks_kid_result result);
/* Ask the cache about kid with a fresh record; fails the cmocka test when the
 * call is refused or answered synchronously. */
struct kid_answer *kid_answers_ask(struct kid_answers *set, struct jwks_cache *c, uv_loop_t *loop, const char *kid);
/* Drive the loop until the record is answered (at most timeout_ms), then
 * assert exactly one answer equal to want; returns the loop ms it took. */
uint64_t kid_answers_expect(struct kid_answer *a, enum jwks_kid_result want, uint64_t timeout_ms);

#endif
