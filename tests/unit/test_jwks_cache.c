/*
 * Unit tests for shared/gcp/jwks_cache: a fake fetcher that records requests
 * and answers only when the test says so, an injected clock for the unknown-kid
 * rate limit, and timers shrunk to 1 ms per "second" so refreshes fire fast.
 * Every test ends by closing the cache and asserting uv_loop_close() == 0.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "shared/gcp/jwks_cache.h"
#include "support/oidc_testkit.h"

#define JWKS_URL "https://www.googleapis.com/oauth2/v3/certs"
#define MAX_PENDING 8

/* ---- fake fetcher ------------------------------------------------------- */

struct fake_fetcher {
    int calls;
    int refuse;                     /* fetch() returns -1 */
    const char *sync_body;          /* answer 200 with this from inside fetch() */
    char last_url[128];
    struct {
        jwks_fetch_done done;
        void *req_ctx;
    } pending[MAX_PENDING];
    int n_pending;
};

static int fake_fetch(void *ctx, const char *url, jwks_fetch_done done, void *req_ctx)
{
    struct fake_fetcher *f = ctx;
    f->calls++;
    snprintf(f->last_url, sizeof(f->last_url), "%s", url);
    if (f->refuse) return -1;
    if (f->sync_body != NULL) {
        done(req_ctx, 200, f->sync_body, strlen(f->sync_body), "max-age=3600");
        return 0;
    }
    if (f->n_pending == MAX_PENDING) return -1;
    f->pending[f->n_pending].done = done;
    f->pending[f->n_pending].req_ctx = req_ctx;
    f->n_pending++;
    return 0;
}

/* Complete the oldest pending request (from outside fetch(), as a real client would). */
static void fake_answer(struct fake_fetcher *f, long status, const char *body, const char *cache_control)
{
    assert_true(f->n_pending > 0);
    jwks_fetch_done done = f->pending[0].done;
    void *req_ctx = f->pending[0].req_ctx;
    memmove(&f->pending[0], &f->pending[1], sizeof(f->pending[0]) * (size_t)(f->n_pending - 1));
    f->n_pending--;
    done(req_ctx, status, body, body != NULL ? strlen(body) : 0, cache_control);
}

/* ---- fixture ------------------------------------------------------------ */

/* Answers live in the fixture, not on a test's stack: if a test fails early,
 * callbacks delivered by the teardown's close still write to valid memory. */
struct kid_answer {
    int calls;
    int refreshed;
};
#define MAX_ANSWERS 32

struct keys {
    struct oidc_test_key a, b;
    char *jwks_a, *jwks_b, *jwks_ab;
};

struct fx {
    struct keys *keys;
    uv_loop_t loop;
    uv_timer_t guard;
    bool guard_fired;
    struct logger lg;
    int devnull;
    struct fake_fetcher fetcher;
    int64_t clock_now;
    struct jwks_cache_opts opts;
    struct jwks_cache *cache;
    int close_done;
    struct kid_answer answers[MAX_ANSWERS];
    int n_answers;
};

static int64_t fake_clock(void *ctx)
{
    return *(int64_t *)ctx;
}

static int group_setup(void **state)
{
    struct keys *k = calloc(1, sizeof(*k));
    if (k == NULL || oidc_test_rsa_key(&k->a, "key-a") != 0 || oidc_test_rsa_key(&k->b, "key-b") != 0) return -1;
    const struct oidc_test_key *a[] = {&k->a}, *b[] = {&k->b}, *ab[] = {&k->a, &k->b};
    k->jwks_a = oidc_test_jwks_json(a, 1);
    k->jwks_b = oidc_test_jwks_json(b, 1);
    k->jwks_ab = oidc_test_jwks_json(ab, 2);
    *state = k;
    return k->jwks_a != NULL && k->jwks_b != NULL && k->jwks_ab != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    struct keys *k = *state;
    oidc_test_key_free(&k->a);
    oidc_test_key_free(&k->b);
    free(k->jwks_a);
    free(k->jwks_b);
    free(k->jwks_ab);
    free(k);
    return 0;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL) return -1;
    f->keys = *state;
    if (uv_loop_init(&f->loop) != 0) return -1;
    uv_timer_init(&f->loop, &f->guard);
    f->guard.data = f;
    f->devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    logger_init(&f->lg, LOG_LEVEL_DEBUG, f->devnull); /* exercise the log paths, discard output */
    f->clock_now = 1000;
    f->opts = (struct jwks_cache_opts){.url = JWKS_URL, .now_s = fake_clock, .clock_ctx = &f->clock_now};
    *state = f;
    return 0;
}

static void close_done_cb(void *arg)
{
    ((struct fx *)arg)->close_done++;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->cache != NULL) jwks_cache_close(f->cache, close_done_cb, f);
    /* A fetcher answers every accepted request exactly once, even after close. */
    while (f->fetcher.n_pending > 0) fake_answer(&f->fetcher, 0, NULL, NULL);
    uv_close((uv_handle_t *)&f->guard, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int close_rc = uv_loop_close(&f->loop);
    int done = f->close_done;
    bool had_cache = f->cache != NULL;
    logger_free(&f->lg);
    close(f->devnull);
    struct keys *k = f->keys;
    free(f);
    *state = k;
    assert_int_equal(close_rc, 0);
    if (had_cache) assert_int_equal(done, 1);
    return 0;
}

static void new_cache(struct fx *f)
{
    f->cache = jwks_cache_new(&f->loop, &f->lg, &f->opts, fake_fetch, &f->fetcher);
    assert_non_null(f->cache);
}

static void start_cache(struct fx *f)
{
    new_cache(f);
    assert_int_equal(jwks_cache_start(f->cache), 0);
}

static void guard_cb(uv_timer_t *t)
{
    ((struct fx *)t->data)->guard_fired = true;
}

/* Run the loop until *counter >= want, at most deadline_ms of real time. */
static bool run_until_at_least(struct fx *f, const int *counter, int want, unsigned deadline_ms)
{
    f->guard_fired = false;
    uv_timer_start(&f->guard, guard_cb, deadline_ms, 0);
    while (*counter < want && !f->guard_fired) {
        /* NOWAIT first: due timers (e.g. a 0 ms dispatch) run without then
         * blocking in poll; ONCE only when nothing was ready. */
        uv_run(&f->loop, UV_RUN_NOWAIT);
        if (*counter >= want || f->guard_fired) break;
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&f->guard);
    return *counter >= want;
}

/* ---- refresh_for_kid callback recorder ---------------------------------- */


static struct kid_answer *new_answer(struct fx *f)
{
    assert_true(f->n_answers < MAX_ANSWERS);
    struct kid_answer *a = &f->answers[f->n_answers++];
    a->calls = 0;
    a->refreshed = -1;
    return a;
}

static void kid_cb(void *arg, int refreshed)
{
    struct kid_answer *a = arg;
    a->calls++;
    a->refreshed = refreshed;
}

/* ---- tests: loading and refresh ---------------------------------------- */

static void jwks_cache_start__first_fetch_ok__keys_ready(void **state)
{
    struct fx *f = *state;
    start_cache(f);
    assert_int_equal(f->fetcher.calls, 1);
    assert_string_equal(f->fetcher.last_url, JWKS_URL);
    assert_false(jwks_cache_ready(f->cache));
    assert_null(jwks_cache_keys(f->cache));
    assert_int_equal(jwks_cache_next_refresh_ms(f->cache), -1); /* in flight */

    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "public, max-age=19139, must-revalidate, no-transform");
    assert_true(jwks_cache_ready(f->cache));
    assert_true(oidc_keyset_has_kid(jwks_cache_keys(f->cache), "key-a"));
    assert_int_equal(jwks_cache_next_refresh_ms(f->cache), 19139 * 1000);
    assert_int_equal(f->fetcher.calls, 1);
}

static void jwks_cache__refresh_timer_at_max_age__refetches_and_swaps(void **state)
{
    struct fx *f = *state;
    f->opts.timer_ms_per_s = 1;
    start_cache(f);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=40");
    uint64_t t0 = uv_hrtime();
    assert_true(run_until_at_least(f, &f->fetcher.calls, 2, 5000));
    uint64_t waited_ms = (uv_hrtime() - t0) / 1000000;
    assert_true(waited_ms >= 39); /* not before max-age (40 "s" = 40 ms here) */
    assert_true(jwks_cache_ready(f->cache)); /* old set served while refreshing */
    fake_answer(&f->fetcher, 200, f->keys->jwks_b, "max-age=3600");
    assert_true(oidc_keyset_has_kid(jwks_cache_keys(f->cache), "key-b"));
    assert_false(oidc_keyset_has_kid(jwks_cache_keys(f->cache), "key-a"));
    assert_int_equal(jwks_cache_next_refresh_ms(f->cache), 3600);
}

static void jwks_cache__refresh_failures__keep_last_good_set_with_backoff(void **state)
{
    struct fx *f = *state;
    f->opts.timer_ms_per_s = 1;
    start_cache(f);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=30");
    const struct oidc_keyset *good = jwks_cache_keys(f->cache);

    struct {
        long status;
        const char *body;
        int64_t next_ms;
    } failures[] = {
        {503, "{\"error\":\"unavailable\"}", 1},
        {200, "not json", 2},
        {0, NULL, 4},
        {200, "{\"keys\":[]}", 8},
        {404, NULL, 16},
    };
    for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); i++) {
        assert_true(run_until_at_least(f, &f->fetcher.calls, (int)i + 2, 5000));
        fake_answer(&f->fetcher, failures[i].status, failures[i].body, NULL);
        assert_true(jwks_cache_ready(f->cache));
        assert_ptr_equal(jwks_cache_keys(f->cache), good);
        assert_true(oidc_keyset_has_kid(jwks_cache_keys(f->cache), "key-a"));
        assert_int_equal(jwks_cache_next_refresh_ms(f->cache), failures[i].next_ms);
    }
    assert_true(run_until_at_least(f, &f->fetcher.calls, 7, 5000));
    fake_answer(&f->fetcher, 200, f->keys->jwks_b, "max-age=100");
    assert_true(oidc_keyset_has_kid(jwks_cache_keys(f->cache), "key-b"));
    assert_int_equal(jwks_cache_next_refresh_ms(f->cache), 100); /* backoff reset */
}

static void jwks_cache__backoff__capped_at_retry_max(void **state)
{
    struct fx *f = *state;
    f->opts.timer_ms_per_s = 1;
    f->opts.retry_initial_s = 2;
    f->opts.retry_max_s = 5;
    start_cache(f);
    int64_t expect[] = {2, 4, 5, 5};
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        assert_true(run_until_at_least(f, &f->fetcher.calls, (int)i + 1, 5000));
        fake_answer(&f->fetcher, 500, NULL, NULL);
        assert_int_equal(jwks_cache_next_refresh_ms(f->cache), expect[i]);
    }
    assert_false(jwks_cache_ready(f->cache));
}

static void jwks_cache__initial_failure__not_ready_and_retried(void **state)
{
    struct fx *f = *state;
    start_cache(f);
    fake_answer(&f->fetcher, 500, "oops", NULL);
    assert_false(jwks_cache_ready(f->cache));
    assert_null(jwks_cache_keys(f->cache));
    assert_int_equal(jwks_cache_next_refresh_ms(f->cache), 1000); /* retry_initial_s default 1 */
}

static void jwks_cache__fetch_refused__retried_later(void **state)
{
    struct fx *f = *state;
    f->fetcher.refuse = 1;
    f->opts.timer_ms_per_s = 1;
    start_cache(f);
    assert_int_equal(f->fetcher.calls, 1);
    assert_false(jwks_cache_ready(f->cache));
    assert_int_equal(jwks_cache_next_refresh_ms(f->cache), 1);
    f->fetcher.refuse = 0;
    assert_true(run_until_at_least(f, &f->fetcher.calls, 2, 5000));
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, NULL);
    assert_true(jwks_cache_ready(f->cache));
}

static void jwks_cache__max_age_variants__clamped_period(void **state)
{
    struct fx *f = *state;
    f->opts.min_refresh_interval_s = 30;
    f->opts.default_max_age_s = 300;
    f->opts.max_max_age_s = 86400;
    start_cache(f);
    struct {
        const char *cc;
        int64_t ms;
    } cases[] = {
        {"max-age=999999", 86400 * 1000}, /* capped */
        {"no-store", 30 * 1000},          /* floor: the rate-limit interval */
        {"max-age=5", 30 * 1000},
        {NULL, 300 * 1000},               /* default */
        {"private", 300 * 1000},
        {"max-age=600", 600 * 1000},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (i > 0) {
            f->clock_now += 31; /* past the rate limit */
            struct kid_answer *ans = new_answer(f);
            assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "rotated", kid_cb, ans), 0);
            assert_int_equal(f->fetcher.calls, (int)i + 1);
            fake_answer(&f->fetcher, 200, f->keys->jwks_a, cases[i].cc);
            /* checked before the loop runs again, so the loop time is the arming time */
            assert_int_equal(jwks_cache_next_refresh_ms(f->cache), cases[i].ms);
            assert_true(run_until_at_least(f, &ans->calls, 1, 5000));
            assert_int_equal(ans->refreshed, 1);
        } else {
            fake_answer(&f->fetcher, 200, f->keys->jwks_a, cases[i].cc);
            assert_int_equal(jwks_cache_next_refresh_ms(f->cache), cases[i].ms);
        }
    }
}

/* ---- tests: unknown kid ------------------------------------------------- */

static void jwks_cache_refresh_for_kid__rate_limited__one_fetch_per_interval(void **state)
{
    struct fx *f = *state;
    start_cache(f); /* fetch #1 at t=1000 */
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=3600");

    /* t=1005: the last fetch started 5 s ago → no refetch, answered 0. */
    f->clock_now = 1005;
    struct kid_answer *a1 = new_answer(f);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "key-b", kid_cb, a1), 0);
    assert_int_equal(a1->calls, 0); /* never synchronous */
    assert_int_equal(f->fetcher.calls, 1);
    assert_true(run_until_at_least(f, &a1->calls, 1, 5000));
    assert_int_equal(a1->refreshed, 0);

    /* t=1030: exactly the interval → one refetch; concurrent askers join it. */
    f->clock_now = 1030;
    struct kid_answer *a2 = new_answer(f);
    struct kid_answer *a3 = new_answer(f);
    struct kid_answer *a4 = new_answer(f);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "key-b", kid_cb, a2), 0);
    assert_int_equal(f->fetcher.calls, 2);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "key-b", kid_cb, a3), 0);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "forged", kid_cb, a4), 0);
    assert_int_equal(f->fetcher.calls, 2);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(a2->calls + a3->calls + a4->calls, 0); /* waiting for the fetch */
    fake_answer(&f->fetcher, 200, f->keys->jwks_ab, "max-age=3600");
    assert_int_equal(a2->calls, 0);
    assert_true(run_until_at_least(f, &a4->calls, 1, 5000));
    assert_int_equal(a2->calls, 1);
    assert_int_equal(a3->calls, 1);
    assert_int_equal(a2->refreshed, 1);
    assert_int_equal(a3->refreshed, 1);
    assert_int_equal(a4->refreshed, 1);
    assert_true(oidc_keyset_has_kid(jwks_cache_keys(f->cache), "key-b"));

    /* t=1059: forged kids cannot force another fetch inside the interval. */
    f->clock_now = 1059;
    struct kid_answer *a5 = new_answer(f);
    for (int i = 0; i < 20; i++) {
        struct kid_answer *tmp = new_answer(f);
        assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "forged", kid_cb, tmp), 0);
        assert_true(run_until_at_least(f, &tmp->calls, 1, 5000));
        assert_int_equal(tmp->refreshed, 0);
    }
    assert_int_equal(f->fetcher.calls, 2);

    /* t=1060: allowed again; a failed refetch answers 0 and keeps the keys. */
    f->clock_now = 1060;
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "forged", kid_cb, a5), 0);
    assert_int_equal(f->fetcher.calls, 3);
    fake_answer(&f->fetcher, 503, NULL, NULL);
    assert_true(run_until_at_least(f, &a5->calls, 1, 5000));
    assert_int_equal(a5->refreshed, 0);
    assert_true(oidc_keyset_has_kid(jwks_cache_keys(f->cache), "key-b"));
}

static void jwks_cache_refresh_for_kid__kid_already_known__refreshed_without_fetch(void **state)
{
    struct fx *f = *state;
    start_cache(f);
    fake_answer(&f->fetcher, 200, f->keys->jwks_ab, NULL);
    f->clock_now += 1000;
    struct kid_answer *a = new_answer(f);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "key-b", kid_cb, a), 0);
    assert_int_equal(a->calls, 0);
    assert_true(run_until_at_least(f, &a->calls, 1, 5000));
    assert_int_equal(a->refreshed, 1);
    assert_int_equal(f->fetcher.calls, 1);
}

static void jwks_cache_refresh_for_kid__scheduled_refresh_in_flight__joins_it(void **state)
{
    struct fx *f = *state;
    f->opts.timer_ms_per_s = 1;
    start_cache(f);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=30");
    assert_true(run_until_at_least(f, &f->fetcher.calls, 2, 5000)); /* timer-driven fetch in flight */
    f->clock_now += 1000;
    struct kid_answer *a = new_answer(f);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "key-b", kid_cb, a), 0);
    assert_int_equal(f->fetcher.calls, 2);
    fake_answer(&f->fetcher, 200, f->keys->jwks_ab, "max-age=3600");
    assert_true(run_until_at_least(f, &a->calls, 1, 5000));
    assert_int_equal(a->refreshed, 1);
}

static void jwks_cache_refresh_for_kid__before_any_keys__fetches(void **state)
{
    struct fx *f = *state;
    new_cache(f); /* not started: nothing fetched yet, so no rate limit */
    struct kid_answer *a = new_answer(f);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "key-a", kid_cb, a), 0);
    assert_int_equal(f->fetcher.calls, 1);
    assert_int_equal(jwks_cache_start(f->cache), 0); /* joins the fetch in flight */
    assert_int_equal(f->fetcher.calls, 1);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, NULL);
    assert_true(run_until_at_least(f, &a->calls, 1, 5000));
    assert_int_equal(a->refreshed, 1);
    assert_true(jwks_cache_ready(f->cache));
}

static void jwks_cache__fetcher_answers_synchronously__callbacks_still_deferred(void **state)
{
    struct fx *f = *state;
    f->fetcher.sync_body = f->keys->jwks_a;
    start_cache(f);
    assert_true(jwks_cache_ready(f->cache));
    f->fetcher.sync_body = f->keys->jwks_ab;
    f->clock_now += 100;
    struct kid_answer *a = new_answer(f);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "key-b", kid_cb, a), 0);
    assert_int_equal(f->fetcher.calls, 2);
    assert_int_equal(a->calls, 0);
    assert_true(run_until_at_least(f, &a->calls, 1, 5000));
    assert_int_equal(a->refreshed, 1);
}

/* ---- tests: lifecycle --------------------------------------------------- */

static void jwks_cache_close__fetch_in_flight__waiters_get_zero_and_late_answer_ignored(void **state)
{
    struct fx *f = *state;
    start_cache(f);
    struct kid_answer *a = new_answer(f);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "key-a", kid_cb, a), 0);
    jwks_cache_close(f->cache, close_done_cb, f);
    struct kid_answer *late = new_answer(f);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "key-a", kid_cb, late), -1);
    assert_int_equal(a->calls, 0);
    assert_int_equal(f->close_done, 0); /* done comes from the loop */
    f->cache = NULL;
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(a->calls, 1);
    assert_int_equal(a->refreshed, 0);
    assert_int_equal(f->close_done, 1);
    assert_int_equal(late->calls, 0);
    /* The fetcher completes the detached request afterwards: ignored, freed. */
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, NULL);
    f->close_done = 0;
}

static void jwks_cache_close__after_success__loop_closes_cleanly(void **state)
{
    struct fx *f = *state;
    f->opts.timer_ms_per_s = 1;
    start_cache(f);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=30");
    struct kid_answer *a = new_answer(f);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "key-a", kid_cb, a), 0); /* queued for dispatch */
    jwks_cache_close(f->cache, close_done_cb, f);
    f->cache = NULL;
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(a->calls, 1);
    assert_int_equal(a->refreshed, 1);
    assert_int_equal(f->close_done, 1);
    f->close_done = 0;
}

static void jwks_cache_start__twice__second_fails(void **state)
{
    struct fx *f = *state;
    start_cache(f);
    assert_int_equal(jwks_cache_start(f->cache), -1);
    assert_int_equal(f->fetcher.calls, 1);
}

static void jwks_cache_new__bad_options__null(void **state)
{
    struct fx *f = *state;
    struct jwks_cache_opts o = f->opts;
    o.url = NULL;
    assert_null(jwks_cache_new(&f->loop, &f->lg, &o, fake_fetch, &f->fetcher));
    o = f->opts;
    o.url = "";
    assert_null(jwks_cache_new(&f->loop, &f->lg, &o, fake_fetch, &f->fetcher));
    assert_null(jwks_cache_new(&f->loop, &f->lg, &f->opts, NULL, &f->fetcher));
    assert_null(jwks_cache_new(NULL, &f->lg, &f->opts, fake_fetch, &f->fetcher));
    o = f->opts;
    o.min_refresh_interval_s = 600;
    o.max_max_age_s = 60;
    assert_null(jwks_cache_new(&f->loop, &f->lg, &o, fake_fetch, &f->fetcher));
    o = f->opts;
    o.retry_initial_s = -1;
    assert_null(jwks_cache_new(&f->loop, &f->lg, &o, fake_fetch, &f->fetcher));
}

/* ---- jwks_parse_max_age ------------------------------------------------- */

static void jwks_parse_max_age__cases__seconds_or_minus_one(void **state)
{
    (void)state;
    struct {
        const char *in;
        int want;
    } cases[] = {
        {NULL, -1},
        {"", -1},
        {"public", -1},
        {"public, max-age=19139, must-revalidate, no-transform", 19139},
        {"max-age=0", 0},
        {"MAX-AGE=60", 60},
        {"  max-age=60  ", 60},
        {"max-age=\"120\"", 120},
        {"s-maxage=100", -1},
        {"s-maxage=100, max-age=7", 7},
        {"max-age=60, max-age=10", 60},
        {"no-store", 0},
        {"no-cache", 0},
        {"max-age=600, no-cache", 0},
        {"No-Store, max-age=600", 0},
        {"no-cache=\"set-cookie\", max-age=60", 0},
        {"max-age=abc", 0},
        {"max-age=-5", 0},
        {"max-age=", 0},
        {"max-age", 0},
        {"max-age=12x", 0},
        {"max-age=99999999999999999999", 2147483647},
        {"max-ages=60", -1},
        {"xmax-age=60", -1},
        {",,max-age=5,,", 5},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = jwks_parse_max_age(cases[i].in);
        if (got != cases[i].want) fail_msg("jwks_parse_max_age(\"%s\") = %d, want %d", cases[i].in ? cases[i].in : "NULL",
                                           got, cases[i].want);
    }
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(jwks_cache_start__first_fetch_ok__keys_ready),
        T(jwks_cache__refresh_timer_at_max_age__refetches_and_swaps),
        T(jwks_cache__refresh_failures__keep_last_good_set_with_backoff),
        T(jwks_cache__backoff__capped_at_retry_max),
        T(jwks_cache__initial_failure__not_ready_and_retried),
        T(jwks_cache__fetch_refused__retried_later),
        T(jwks_cache__max_age_variants__clamped_period),
        T(jwks_cache_refresh_for_kid__rate_limited__one_fetch_per_interval),
        T(jwks_cache_refresh_for_kid__kid_already_known__refreshed_without_fetch),
        T(jwks_cache_refresh_for_kid__scheduled_refresh_in_flight__joins_it),
        T(jwks_cache_refresh_for_kid__before_any_keys__fetches),
        T(jwks_cache__fetcher_answers_synchronously__callbacks_still_deferred),
        T(jwks_cache_close__fetch_in_flight__waiters_get_zero_and_late_answer_ignored),
        T(jwks_cache_close__after_success__loop_closes_cleanly),
        T(jwks_cache_start__twice__second_fails),
        T(jwks_cache_new__bad_options__null),
        cmocka_unit_test(jwks_parse_max_age__cases__seconds_or_minus_one),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
