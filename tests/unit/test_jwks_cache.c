/*
 * Unit tests for shared/gcp/jwks_cache's contract: a fake fetcher that records
 * requests and answers only when the test says so (or synchronously, or
 * refuses), the loop's own clock with intervals shrunk to milliseconds, and
 * assertions on the cache's timers (jwks_cache_next_refresh_ms) rather than on
 * elapsed wall time.  The rotation scenarios against a real HTTP JWKS server
 * are in test_jwks_rotation.c.  Every test ends by closing the cache and
 * asserting uv_loop_close() == 0.
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
#include "support/kid_answers.h"
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
    struct jwks_cache_opts opts;
    struct jwks_cache *cache;
    int close_done;
    struct kid_answers answers;
};

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
    f->opts = (struct jwks_cache_opts){.url = JWKS_URL};
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

/* Run the loop (nothing expected) until its clock reads at least until_ms. */
static void run_loop_until_time(struct fx *f, uint64_t until_ms)
{
    int never = 0;
    uv_update_time(&f->loop);
    while (uv_now(&f->loop) < until_ms)
        (void)run_until_at_least(f, &never, 1, (unsigned)(until_ms - uv_now(&f->loop)));
}

static void let_loop_time_pass(struct fx *f, uint64_t ms)
{
    uv_update_time(&f->loop);
    run_loop_until_time(f, uv_now(&f->loop) + ms);
}

/* ---- refresh_for_kid callback recorder ---------------------------------- */

static struct kid_answer *new_answer(struct fx *f)
{
    struct kid_answer *a = kid_answers_new(&f->answers, &f->loop);
    assert_non_null(a);
    return a;
}

static struct kid_answer *ask(struct fx *f, const char *kid)
{
    return kid_answers_ask(&f->answers, f->cache, &f->loop, kid);
}

static void expect_answer(struct kid_answer *a, enum jwks_kid_result want)
{
    (void)kid_answers_expect(a, want, 5000);
}

/* ---- tests: loading and refresh ---------------------------------------- */

static void jwks_cache_start__first_fetch_ok__keys_ready_refresh_at_80_percent(void **state)
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
    assert_int_equal(jwks_cache_next_refresh_ms(f->cache), 19139 * 800); /* ahead of expiry */
    assert_int_equal(f->fetcher.calls, 1);
}

static void jwks_cache__refresh_timer_ahead_of_max_age__refetches_and_swaps(void **state)
{
    struct fx *f = *state;
    f->opts.min_refresh_ms = 1;
    start_cache(f);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=0");
    assert_int_equal(jwks_cache_next_refresh_ms(f->cache), 1);
    assert_true(run_until_at_least(f, &f->fetcher.calls, 2, 5000));
    assert_true(jwks_cache_ready(f->cache)); /* old set served while refreshing */
    fake_answer(&f->fetcher, 200, f->keys->jwks_b, "max-age=3600");
    assert_true(oidc_keyset_has_kid(jwks_cache_keys(f->cache), "key-b"));
    assert_false(oidc_keyset_has_kid(jwks_cache_keys(f->cache), "key-a"));
    assert_int_equal(jwks_cache_next_refresh_ms(f->cache), 3600 * 800);
}

static void jwks_cache__refresh_failures__keep_last_good_set_with_backoff(void **state)
{
    struct fx *f = *state;
    f->opts.min_refresh_ms = 1;
    f->opts.retry_initial_ms = 1;
    start_cache(f);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=0");
    const struct oidc_keyset *good = jwks_cache_keys(f->cache);

    struct {
        long status;
        const char *body;
        int64_t next_ms;
        enum jwks_refresh_result counted;
    } failures[] = {
        {503, "{\"error\":\"unavailable\"}", 1, JWKS_REFRESH_HTTP_ERROR},
        {200, "not json", 2, JWKS_REFRESH_INVALID},
        {0, NULL, 4, JWKS_REFRESH_TRANSPORT_ERROR},
        {200, "{\"keys\":[]}", 8, JWKS_REFRESH_INVALID},
        {404, NULL, 16, JWKS_REFRESH_HTTP_ERROR},
    };
    for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); i++) {
        struct jwks_cache_stats before, after;
        jwks_cache_get_stats(f->cache, &before);
        assert_true(run_until_at_least(f, &f->fetcher.calls, (int)i + 2, 5000));
        fake_answer(&f->fetcher, failures[i].status, failures[i].body, NULL);
        assert_true(jwks_cache_ready(f->cache));
        assert_ptr_equal(jwks_cache_keys(f->cache), good);
        assert_true(oidc_keyset_has_kid(jwks_cache_keys(f->cache), "key-a"));
        assert_int_equal(jwks_cache_next_refresh_ms(f->cache), failures[i].next_ms);
        jwks_cache_get_stats(f->cache, &after);
        assert_int_equal(after.refreshes[failures[i].counted], before.refreshes[failures[i].counted] + 1);
    }
    assert_true(run_until_at_least(f, &f->fetcher.calls, 7, 5000));
    fake_answer(&f->fetcher, 200, f->keys->jwks_b, "max-age=100");
    assert_true(oidc_keyset_has_kid(jwks_cache_keys(f->cache), "key-b"));
    assert_int_equal(jwks_cache_next_refresh_ms(f->cache), 80000); /* backoff reset */
    struct jwks_cache_stats st;
    jwks_cache_get_stats(f->cache, &st);
    assert_int_equal(st.refreshes[JWKS_REFRESH_OK], 2);
    assert_int_equal(st.refreshes[JWKS_REFRESH_HTTP_ERROR], 2);
    assert_int_equal(st.refreshes[JWKS_REFRESH_INVALID], 2);
    assert_int_equal(st.refreshes[JWKS_REFRESH_TRANSPORT_ERROR], 1);
}

static void jwks_cache__backoff__capped_at_retry_max(void **state)
{
    struct fx *f = *state;
    f->opts.retry_initial_ms = 2;
    f->opts.retry_max_ms = 5;
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
    assert_int_equal(jwks_cache_next_refresh_ms(f->cache), 1000); /* retry_initial_ms default */
    struct jwks_cache_stats st;
    jwks_cache_get_stats(f->cache, &st);
    assert_int_equal(st.key_set_age_ms, -1);
}

static void jwks_cache__fetch_refused__retried_later(void **state)
{
    struct fx *f = *state;
    f->fetcher.refuse = 1;
    f->opts.retry_initial_ms = 1;
    start_cache(f);
    assert_int_equal(f->fetcher.calls, 1);
    assert_false(jwks_cache_ready(f->cache));
    assert_int_equal(jwks_cache_next_refresh_ms(f->cache), 1);
    f->fetcher.refuse = 0;
    assert_true(run_until_at_least(f, &f->fetcher.calls, 2, 5000));
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, NULL);
    assert_true(jwks_cache_ready(f->cache));
}

static void jwks_cache__max_age_variants__refresh_ahead_clamped(void **state)
{
    struct fx *f = *state;
    f->opts.kid_fetch_interval_ms = 1;
    f->opts.min_refresh_ms = 30000;
    f->opts.default_max_age_s = 300;
    f->opts.max_refresh_ms = 86400000;
    start_cache(f);
    struct {
        const char *cc;
        int64_t ms;
    } cases[] = {
        {"max-age=999999", 86400000}, /* capped */
        {"no-store", 30000},          /* floor */
        {"max-age=5", 30000},
        {NULL, 240000},               /* 80 % of the default */
        {"private", 240000},
        {"max-age=600", 480000},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct kid_answer *ans = NULL;
        if (i > 0) {
            char kid[32];
            snprintf(kid, sizeof(kid), "rotated-%zu", i); /* a new kid each time: no negative cache */
            ans = ask(f, kid);
            assert_true(run_until_at_least(f, &f->fetcher.calls, (int)i + 1, 5000));
        }
        fake_answer(&f->fetcher, 200, f->keys->jwks_a, cases[i].cc);
        /* checked before the loop runs again, so the loop time is the arming time */
        assert_int_equal(jwks_cache_next_refresh_ms(f->cache), cases[i].ms);
        if (ans != NULL) expect_answer(ans, JWKS_KID_ABSENT);
    }
}

static void jwks_cache_get_stats__after_success__age_counts_from_the_fetch(void **state)
{
    struct fx *f = *state;
    f->opts.min_refresh_ms = 1;
    start_cache(f);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=3600");
    uint64_t fetched_at = uv_now(&f->loop);
    struct jwks_cache_stats st;
    jwks_cache_get_stats(f->cache, &st);
    assert_int_equal(st.key_set_age_ms, 0);
    assert_int_equal(st.refreshes[JWKS_REFRESH_OK], 1);
    let_loop_time_pass(f, 30);
    jwks_cache_get_stats(f->cache, &st);
    assert_int_equal(st.key_set_age_ms, (int64_t)(uv_now(&f->loop) - fetched_at));
    assert_true(st.key_set_age_ms >= 30);
}

/* ---- tests: unknown kid ------------------------------------------------- */

static void jwks_cache_refresh_for_kid__inside_interval__waits_for_the_fetch_at_its_end(void **state)
{
    struct fx *f = *state;
    f->opts.kid_fetch_interval_ms = 80;
    start_cache(f);
    uint64_t first_fetch_ms = uv_now(&f->loop);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=3600");

    struct kid_answer *a = ask(f, "key-b");
    assert_int_equal(f->fetcher.calls, 1); /* not yet: inside the interval */
    assert_int_equal(jwks_cache_next_refresh_ms(f->cache), 80); /* refresh pulled forward */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(a->calls, 0); /* waiting, not refused */
    assert_true(run_until_at_least(f, &f->fetcher.calls, 2, 5000));
    assert_true(uv_now(&f->loop) - first_fetch_ms >= 80);
    fake_answer(&f->fetcher, 200, f->keys->jwks_ab, "max-age=3600");
    expect_answer(a, JWKS_KID_FOUND);
    assert_true(oidc_keyset_has_kid(jwks_cache_keys(f->cache), "key-b"));
    assert_int_equal(jwks_cache_next_refresh_ms(f->cache) > 80, 1); /* back to the max-age schedule */
}

static void jwks_cache_refresh_for_kid__askers_during_a_fetch__join_it_and_absent_only_after_a_newer_one(
    void **state)
{
    struct fx *f = *state;
    f->opts.kid_fetch_interval_ms = 20;
    start_cache(f); /* fetch #1 in flight */
    let_loop_time_pass(f, 2); /* the askers come strictly after the fetch started */
    struct kid_answer *b1 = ask(f, "key-b");
    struct kid_answer *b2 = ask(f, "key-b");
    struct kid_answer *forged = ask(f, "forged");
    assert_int_equal(f->fetcher.calls, 1); /* all joined the fetch in flight */
    fake_answer(&f->fetcher, 200, f->keys->jwks_ab, "max-age=3600");
    expect_answer(b1, JWKS_KID_FOUND);
    expect_answer(b2, JWKS_KID_FOUND);
    /* That fetch started before "forged" was asked: its body may predate the
     * key, so it cannot say ABSENT — a second fetch is made for it. */
    assert_int_equal(forged->calls, 0);
    assert_true(run_until_at_least(f, &f->fetcher.calls, 2, 5000));
    fake_answer(&f->fetcher, 200, f->keys->jwks_ab, "max-age=3600");
    expect_answer(forged, JWKS_KID_ABSENT);
    assert_int_equal(f->fetcher.calls, 2);
}

static void jwks_cache_refresh_for_kid__fetch_in_flight_past_the_interval__joined_not_doubled(void **state)
{
    struct fx *f = *state;
    f->opts.kid_fetch_interval_ms = 5;
    start_cache(f); /* a slow start-up fetch: still in flight long after the interval */
    let_loop_time_pass(f, 20);
    struct kid_answer *a = ask(f, "key-a");
    let_loop_time_pass(f, 20);
    assert_int_equal(f->fetcher.calls, 1);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=3600");
    expect_answer(a, JWKS_KID_FOUND);
    assert_int_equal(f->fetcher.calls, 1);
}

static void jwks_cache_refresh_for_kid__absent_kid__answered_from_negative_cache_until_ttl(void **state)
{
    struct fx *f = *state;
    f->opts.kid_fetch_interval_ms = 1;
    f->opts.kid_negative_ttl_ms = 60;
    start_cache(f);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=3600");
    struct kid_answer *first = ask(f, "forged");
    assert_true(run_until_at_least(f, &f->fetcher.calls, 2, 5000));
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=3600");
    expect_answer(first, JWKS_KID_ABSENT);
    uint64_t absent_since = uv_now(&f->loop);

    for (int i = 0; i < 20; i++) expect_answer(ask(f, "forged"), JWKS_KID_ABSENT);
    assert_int_equal(f->fetcher.calls, 2); /* no fetch, no wait */

    run_loop_until_time(f, absent_since + 60);
    struct kid_answer *after_ttl = ask(f, "forged");
    assert_true(run_until_at_least(f, &f->fetcher.calls, 3, 5000));
    fake_answer(&f->fetcher, 200, f->keys->jwks_ab, "max-age=3600");
    expect_answer(after_ttl, JWKS_KID_ABSENT);
}

static void jwks_cache_refresh_for_kid__fetch_fails__waits_then_unchecked_and_keys_kept(void **state)
{
    struct fx *f = *state;
    f->opts.kid_fetch_interval_ms = 20;
    f->opts.kid_wait_ms = 120;
    start_cache(f);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=3600");
    uint64_t asked_ms = uv_now(&f->loop);
    struct kid_answer *a = ask(f, "key-b");
    /* Every fetch fails; the asker is retried every interval until its deadline. */
    for (int round = 0; a->calls == 0 && round < 100; round++) {
        int want = f->fetcher.calls + 1;
        if (!run_until_at_least(f, &f->fetcher.calls, want, 200)) break;
        fake_answer(&f->fetcher, 503, NULL, NULL);
    }
    expect_answer(a, JWKS_KID_UNCHECKED);
    assert_true(a->answered_ms - asked_ms >= 120);
    assert_true(f->fetcher.calls >= 3); /* the startup fetch and at least two retries */
    assert_true(oidc_keyset_has_kid(jwks_cache_keys(f->cache), "key-a"));
}

static void jwks_cache_refresh_for_kid__failed_fetch_then_success__found(void **state)
{
    struct fx *f = *state;
    f->opts.kid_fetch_interval_ms = 20;
    start_cache(f);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=3600");
    struct kid_answer *a = ask(f, "key-b");
    assert_true(run_until_at_least(f, &f->fetcher.calls, 2, 5000));
    fake_answer(&f->fetcher, 503, NULL, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(a->calls, 0); /* a failed fetch answers nobody ABSENT */
    assert_true(run_until_at_least(f, &f->fetcher.calls, 3, 5000));
    fake_answer(&f->fetcher, 200, f->keys->jwks_ab, "max-age=3600");
    expect_answer(a, JWKS_KID_FOUND);
}

static void jwks_cache_refresh_for_kid__kid_already_known__found_without_fetch(void **state)
{
    struct fx *f = *state;
    start_cache(f);
    fake_answer(&f->fetcher, 200, f->keys->jwks_ab, NULL);
    expect_answer(ask(f, "key-b"), JWKS_KID_FOUND);
    assert_int_equal(f->fetcher.calls, 1);
}

static void jwks_cache_refresh_for_kid__scheduled_refresh_in_flight__joins_it(void **state)
{
    struct fx *f = *state;
    f->opts.min_refresh_ms = 1;
    start_cache(f);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=0");
    assert_true(run_until_at_least(f, &f->fetcher.calls, 2, 5000)); /* timer-driven fetch in flight */
    struct kid_answer *a = ask(f, "key-b");
    assert_int_equal(f->fetcher.calls, 2);
    fake_answer(&f->fetcher, 200, f->keys->jwks_ab, "max-age=3600");
    expect_answer(a, JWKS_KID_FOUND);
}

static void jwks_cache_refresh_for_kid__before_any_keys__fetches(void **state)
{
    struct fx *f = *state;
    new_cache(f); /* not started: nothing fetched yet, so no interval to wait for */
    struct kid_answer *a = ask(f, "key-a");
    assert_int_equal(f->fetcher.calls, 1);
    assert_int_equal(jwks_cache_start(f->cache), 0); /* joins the fetch in flight */
    assert_int_equal(f->fetcher.calls, 1);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, NULL);
    expect_answer(a, JWKS_KID_FOUND);
    assert_true(jwks_cache_ready(f->cache));
}

static void jwks_cache_refresh_for_kid__bad_kid__refused_without_callback(void **state)
{
    struct fx *f = *state;
    start_cache(f);
    char long_kid[OIDC_KID_MAX + 2];
    memset(long_kid, 'k', sizeof(long_kid) - 1);
    long_kid[sizeof(long_kid) - 1] = '\0';
    struct kid_answer *a = new_answer(f);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, NULL, kid_answer_cb, a), -1);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "", kid_answer_cb, a), -1);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, long_kid, kid_answer_cb, a), -1);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "key-a", NULL, a), -1);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(a->calls, 0);
}

static void jwks_cache__fetcher_answers_synchronously__callbacks_still_deferred(void **state)
{
    struct fx *f = *state;
    f->opts.kid_fetch_interval_ms = 1;
    f->fetcher.sync_body = f->keys->jwks_a;
    start_cache(f);
    assert_true(jwks_cache_ready(f->cache));
    f->fetcher.sync_body = f->keys->jwks_ab;
    struct kid_answer *a = ask(f, "key-b");
    expect_answer(a, JWKS_KID_FOUND);
    assert_int_equal(f->fetcher.calls, 2);
}

/* ---- tests: lifecycle --------------------------------------------------- */

static void jwks_cache_close__fetch_in_flight__waiters_unchecked_and_late_answer_ignored(void **state)
{
    struct fx *f = *state;
    start_cache(f);
    struct kid_answer *a = ask(f, "key-a");
    jwks_cache_close(f->cache, close_done_cb, f);
    struct kid_answer *late = new_answer(f);
    assert_int_equal(jwks_cache_refresh_for_kid(f->cache, "key-a", kid_answer_cb, late), -1);
    assert_int_equal(a->calls, 0);
    assert_int_equal(f->close_done, 0); /* done comes from the loop */
    f->cache = NULL;
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(a->calls, 1);
    assert_int_equal(a->result, JWKS_KID_UNCHECKED);
    assert_int_equal(f->close_done, 1);
    assert_int_equal(late->calls, 0);
    /* The fetcher completes the detached request afterwards: ignored, freed. */
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, NULL);
    f->close_done = 0;
}

static void jwks_cache_close__after_success__loop_closes_cleanly(void **state)
{
    struct fx *f = *state;
    start_cache(f);
    fake_answer(&f->fetcher, 200, f->keys->jwks_a, "max-age=30");
    struct kid_answer *a = ask(f, "key-a"); /* queued for dispatch */
    struct kid_answer *waiting = ask(f, "key-b"); /* waiting for the interval */
    jwks_cache_close(f->cache, close_done_cb, f);
    f->cache = NULL;
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(a->calls, 1);
    assert_int_equal(a->result, JWKS_KID_FOUND);
    assert_int_equal(waiting->calls, 1);
    assert_int_equal(waiting->result, JWKS_KID_UNCHECKED);
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
    struct jwks_cache_opts bad[] = {
        {.url = JWKS_URL, .min_refresh_ms = 600000, .max_refresh_ms = 60000},
        {.url = JWKS_URL, .retry_initial_ms = -1},
        {.url = JWKS_URL, .retry_initial_ms = 5000, .retry_max_ms = 1000},
        {.url = JWKS_URL, .kid_fetch_interval_ms = -1},
        {.url = JWKS_URL, .kid_wait_ms = -5},
        {.url = JWKS_URL, .kid_negative_ttl_ms = -1},
        {.url = JWKS_URL, .refresh_ahead_percent = 101},
        {.url = JWKS_URL, .default_max_age_s = -1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (jwks_cache_new(&f->loop, &f->lg, &bad[i], fake_fetch, &f->fetcher) != NULL)
            fail_msg("options #%zu accepted", i);
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
        T(jwks_cache_start__first_fetch_ok__keys_ready_refresh_at_80_percent),
        T(jwks_cache__refresh_timer_ahead_of_max_age__refetches_and_swaps),
        T(jwks_cache__refresh_failures__keep_last_good_set_with_backoff),
        T(jwks_cache__backoff__capped_at_retry_max),
        T(jwks_cache__initial_failure__not_ready_and_retried),
        T(jwks_cache__fetch_refused__retried_later),
        T(jwks_cache__max_age_variants__refresh_ahead_clamped),
        T(jwks_cache_get_stats__after_success__age_counts_from_the_fetch),
        T(jwks_cache_refresh_for_kid__inside_interval__waits_for_the_fetch_at_its_end),
        T(jwks_cache_refresh_for_kid__askers_during_a_fetch__join_it_and_absent_only_after_a_newer_one),
        T(jwks_cache_refresh_for_kid__fetch_in_flight_past_the_interval__joined_not_doubled),
        T(jwks_cache_refresh_for_kid__absent_kid__answered_from_negative_cache_until_ttl),
        T(jwks_cache_refresh_for_kid__fetch_fails__waits_then_unchecked_and_keys_kept),
        T(jwks_cache_refresh_for_kid__failed_fetch_then_success__found),
        T(jwks_cache_refresh_for_kid__kid_already_known__found_without_fetch),
        T(jwks_cache_refresh_for_kid__scheduled_refresh_in_flight__joins_it),
        T(jwks_cache_refresh_for_kid__before_any_keys__fetches),
        T(jwks_cache_refresh_for_kid__bad_kid__refused_without_callback),
        T(jwks_cache__fetcher_answers_synchronously__callbacks_still_deferred),
        T(jwks_cache_close__fetch_in_flight__waiters_unchecked_and_late_answer_ignored),
        T(jwks_cache_close__after_success__loop_closes_cleanly),
        T(jwks_cache_start__twice__second_fails),
        T(jwks_cache_new__bad_options__null),
        cmocka_unit_test(jwks_parse_max_age__cases__seconds_or_minus_one),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
