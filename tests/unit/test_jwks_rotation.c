/*
 * Key rotation end to end below the HTTP server: the real jwks_cache fetching
 * over the real HTTP client (the production fetcher, jwks_fetch_via_http_client)
 * from a loopback JWKS endpoint the test scripts, and tokens signed with real
 * RSA keys checked by oidc_verify() against whatever the cache holds.
 *
 * Scenarios: Google rotates right after our start-up fetch and right after a
 * scheduled refresh (the new kid is accepted within 5 s, with the production
 * intervals); a storm of invented kids (fetches bounded by the interval, an
 * honest new kid in the middle still accepted); one invented kid repeated
 * (the negative cache: one fetch); the endpoint down during a rotation (old
 * tokens still verify, the new kid is answered "unchecked" within the wait
 * bound, accepted once the endpoint is back); hostile responses (too large,
 * empty, not JSON, malformed keys) never replace a good set.  Timing is the
 * loop's clock; the loop is driven until a condition holds (no sleeping).
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/components_internal.h"
#include "shared/gcp/jwks_cache.h"
#include "shared/gcp/oidc_verifier.h"
#include "shared/http/http_client.h"
#include "support/curl_test_server.h"
#include "support/kid_answers.h"
#include "support/oidc_testkit.h"

#define WAIT_MS 10000
#define MAX_SCRIPT 8
#define ACCEPT_WITHIN_MS 5000 /* the promise: a new kid is accepted within 5 s of its first arrival */

/* ---- keys and documents (built once) ------------------------------------ */

struct suite {
    struct oidc_test_key a, b;
    char *jwks_a, *jwks_ab, *jwks_b_and_malformed, *too_large;
};

static int group_setup(void **state)
{
    struct suite *s = calloc(1, sizeof(*s));
    if (s == NULL || oidc_test_rsa_key(&s->a, "key-a") != 0 || oidc_test_rsa_key(&s->b, "key-b") != 0) return -1;
    const struct oidc_test_key *a[] = {&s->a}, *ab[] = {&s->a, &s->b};
    s->jwks_a = oidc_test_jwks_json(a, 1);
    s->jwks_ab = oidc_test_jwks_json(ab, 2);
    char *jwk_b = oidc_test_jwk_json(&s->b, NULL);
    size_t big = JWKS_MAX_RESPONSE_BYTES + 1024;
    s->jwks_b_and_malformed = malloc(1024 + (jwk_b != NULL ? strlen(jwk_b) : 0));
    s->too_large = malloc(big + 64);
    if (s->jwks_a == NULL || s->jwks_ab == NULL || jwk_b == NULL || s->jwks_b_and_malformed == NULL ||
        s->too_large == NULL)
        return -1;
    sprintf(s->jwks_b_and_malformed,
            "{\"keys\":[{\"kty\":\"RSA\",\"alg\":\"RS256\",\"kid\":\"broken\",\"n\":\"!!not-base64!!\",\"e\":\"AQAB\"},"
            "{\"kty\":\"EC\",\"kid\":\"ec\"},%s]}",
            jwk_b);
    free(jwk_b);
    /* A well-formed document whose only fault is its size: it must never be parsed. */
    int n = sprintf(s->too_large, "{\"keys\":[],\"padding\":\"");
    memset(s->too_large + n, 'x', big);
    strcpy(s->too_large + n + big, "\"}");
    *state = s;
    return 0;
}

static int group_teardown(void **state)
{
    struct suite *s = *state;
    oidc_test_key_free(&s->a);
    oidc_test_key_free(&s->b);
    free(s->jwks_a);
    free(s->jwks_ab);
    free(s->jwks_b_and_malformed);
    free(s->too_large);
    free(s);
    return 0;
}

/* ---- the loopback JWKS endpoint ----------------------------------------- */

struct endpoint {
    int status;                      /* default 200 */
    const char *body;                /* served when no script is set */
    const char *cache_control;       /* NULL: no Cache-Control header */
    const char *script[MAX_SCRIPT];  /* bodies for requests 1..n (the last one repeats) */
    int n_script;
    int requests;
    char extra[128];
};

static void serve_jwks(void *arg, const struct cts_request *req, struct cts_reply *rep)
{
    struct endpoint *ep = arg;
    (void)req;
    int i = ep->requests++;
    rep->status = ep->status != 0 ? ep->status : 200;
    rep->body = ep->n_script > 0 ? ep->script[i < ep->n_script ? i : ep->n_script - 1] : ep->body;
    if (ep->cache_control != NULL) {
        snprintf(ep->extra, sizeof(ep->extra), "Cache-Control: %s\r\n", ep->cache_control);
        rep->extra_headers = ep->extra;
    }
}

/* ---- fixture ------------------------------------------------------------ */

struct fx {
    struct suite *keys;
    uv_loop_t loop;
    struct logger lg;
    int devnull;
    struct endpoint ep;
    struct cts_server *srv;
    struct http_client *http;
    struct jwks_cache_opts opts;
    struct jwks_cache *cache;
    char url[128];
    struct kid_answers answers;
    int closed;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL || uv_loop_init(&f->loop) != 0) return -1;
    f->keys = *state;
    f->devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    logger_init(&f->lg, LOG_LEVEL_DEBUG, f->devnull);
    f->ep.body = f->keys->jwks_a;
    f->ep.cache_control = "public, max-age=3600, must-revalidate, no-transform";
    f->srv = cts_start(&f->loop, serve_jwks, &f->ep);
    f->http = http_client_new(&f->loop, &f->lg, 4);
    if (f->srv == NULL || f->http == NULL) return -1;
    snprintf(f->url, sizeof(f->url), "%s/oauth2/v3/certs", cts_url(f->srv));
    f->opts = (struct jwks_cache_opts){.url = f->url};
    *state = f;
    return 0;
}

static void closed_cb(void *arg)
{
    ((struct fx *)arg)->closed++;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    bool had_cache = f->cache != NULL;
    if (had_cache) jwks_cache_close(f->cache, closed_cb, f);
    http_client_close(f->http, closed_cb, f);
    cts_close(f->srv);
    int rc = cts_finish_loop(&f->loop, WAIT_MS);
    int closed = f->closed;
    logger_free(&f->lg);
    close(f->devnull);
    *state = f->keys;
    free(f);
    assert_int_equal(rc, 0);
    assert_int_equal(closed, had_cache ? 2 : 1);
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static bool cache_ready(void *arg)
{
    return jwks_cache_ready(((struct fx *)arg)->cache);
}

static void start_cache_and_load(struct fx *f)
{
    f->cache = jwks_cache_new(&f->loop, &f->lg, &f->opts, jwks_fetch_via_http_client, f->http);
    assert_non_null(f->cache);
    assert_int_equal(jwks_cache_start(f->cache), 0);
    assert_true(cts_run_until(&f->loop, cache_ready, f, WAIT_MS));
}

static struct kid_answer *ask(struct fx *f, const char *kid)
{
    return kid_answers_ask(&f->answers, f->cache, &f->loop, kid);
}

/* Wait for the answer; returns how long it took (loop ms). */
static uint64_t expect_answer(struct kid_answer *a, enum jwks_kid_result want)
{
    return kid_answers_expect(a, want, WAIT_MS);
}

struct stat_at_least {
    struct fx *f;
    enum jwks_refresh_result result;
    uint64_t want;
};

static bool refreshes_reached(void *arg)
{
    struct stat_at_least *w = arg;
    struct jwks_cache_stats st;
    jwks_cache_get_stats(w->f->cache, &st);
    return st.refreshes[w->result] >= w->want;
}

static void wait_refreshes(struct fx *f, enum jwks_refresh_result result, uint64_t want)
{
    struct stat_at_least w = {f, result, want};
    assert_true(cts_run_until(&f->loop, refreshes_reached, &w, WAIT_MS));
}

static uint64_t refreshes(struct fx *f, enum jwks_refresh_result result)
{
    struct jwks_cache_stats st;
    jwks_cache_get_stats(f->cache, &st);
    return st.refreshes[result];
}

/* A Cloud Tasks-like ID token signed by `key`, checked against the cache's keys now. */
static enum oidc_status verify_token_of(struct fx *f, const struct oidc_test_key *key)
{
    int64_t now = (int64_t)time(NULL);
    struct oidc_test_claims claims;
    oidc_test_claims_default(&claims, now);
    char kid_json[80];
    snprintf(kid_json, sizeof(kid_json), "\"%s\"", key->kid);
    char *header = oidc_test_header_json("\"RS256\"", kid_json, NULL);
    char *payload = oidc_test_claims_json(&claims);
    char *token = header != NULL && payload != NULL ? oidc_test_rs256(key, header, payload) : NULL;
    assert_non_null(token);
    struct oidc_policy p;
    oidc_policy_defaults(&p);
    p.audience = OIDC_TEST_AUDIENCE;
    p.service_account = OIDC_TEST_SA;
    enum oidc_status st = oidc_verify(jwks_cache_keys(f->cache), &p, token, strlen(token), now, NULL);
    free(header);
    free(payload);
    free(token);
    return st;
}

/* ---- rotation ----------------------------------------------------------- */

static void rotation__right_after_start_up__new_kid_accepted_within_5_s(void **state)
{
    struct fx *f = *state; /* production intervals: 2 s between fetches, 4 s wait */
    start_cache_and_load(f);
    assert_int_equal(f->ep.requests, 1);
    assert_int_equal(verify_token_of(f, &f->keys->a), OIDC_OK);

    f->ep.body = f->keys->jwks_ab; /* Google publishes key-b and signs with it at once */
    assert_int_equal(verify_token_of(f, &f->keys->b), OIDC_ERR_UNKNOWN_KID);
    struct kid_answer *a = ask(f, "key-b");
    uint64_t took = expect_answer(a, JWKS_KID_FOUND);

    assert_true(took <= ACCEPT_WITHIN_MS);
    assert_int_equal(verify_token_of(f, &f->keys->b), OIDC_OK);
    assert_int_equal(verify_token_of(f, &f->keys->a), OIDC_OK);
    assert_int_equal(f->ep.requests, 2); /* exactly one fetch for the new kid */
}

static void rotation__right_after_a_scheduled_refresh__new_kid_accepted_within_5_s(void **state)
{
    struct fx *f = *state;
    f->opts.min_refresh_ms = 100; /* so that max-age=1 refreshes after 800 ms */
    f->ep.cache_control = "max-age=1";
    start_cache_and_load(f);
    f->ep.cache_control = "max-age=3600"; /* the refresh itself schedules the next one far away */
    wait_refreshes(f, JWKS_REFRESH_OK, 2);
    assert_int_equal(f->ep.requests, 2);

    f->ep.body = f->keys->jwks_ab;
    struct kid_answer *a = ask(f, "key-b");
    uint64_t took = expect_answer(a, JWKS_KID_FOUND);

    assert_true(took <= ACCEPT_WITHIN_MS);
    assert_int_equal(verify_token_of(f, &f->keys->b), OIDC_OK);
    assert_int_equal(f->ep.requests, 3);
    assert_true(jwks_cache_next_refresh_ms(f->cache) > 60000); /* back on the max-age schedule */
}

/* ---- storms ------------------------------------------------------------- */

struct storm {
    struct fx *f;
    uv_timer_t *tick;         /* heap: its memory is released by the close callback */
    int asked, total;
    const char *kid;          /* NULL: a new invented kid each time */
    int rotate_at;            /* publish key-b and ask for it at this ask (-1: never) */
    struct kid_answer *honest;
    uint64_t first_ms, last_ms;
    int fetches_before;
};

static void storm_tick(uv_timer_t *t)
{
    struct storm *s = t->data;
    struct fx *f = s->f;
    char kid[40];
    if (s->kid == NULL) snprintf(kid, sizeof(kid), "invented-%d-%08x", s->asked, (unsigned)rand());
    else snprintf(kid, sizeof(kid), "%s", s->kid);
    if (s->asked == 0) s->first_ms = uv_now(&f->loop);
    (void)ask(f, kid);
    if (s->asked == s->rotate_at) {
        f->ep.body = f->keys->jwks_ab;
        s->honest = ask(f, "key-b");
    }
    s->last_ms = uv_now(&f->loop);
    if (++s->asked == s->total) uv_timer_stop(t);
}

static bool storm_over(void *arg)
{
    struct storm *s = arg;
    if (s->asked < s->total) return false;
    for (int i = 0; i < s->f->answers.n; i++)
        if (s->f->answers.items[i].calls == 0) return false;
    return true;
}

static void free_handle_cb(uv_handle_t *h)
{
    free(h);
}

static void run_storm(struct fx *f, struct storm *s)
{
    s->f = f;
    s->fetches_before = f->ep.requests;
    s->tick = malloc(sizeof(*s->tick));
    assert_non_null(s->tick);
    uv_timer_init(&f->loop, s->tick);
    s->tick->data = s;
    uv_timer_start(s->tick, storm_tick, 2, 2);
    bool over = cts_run_until(&f->loop, storm_over, s, WAIT_MS);
    uv_close((uv_handle_t *)s->tick, free_handle_cb);
    assert_true(over);
}

static void unknown_kids__storm_of_invented_kids__fetches_bounded_and_honest_kid_accepted(void **state)
{
    struct fx *f = *state;
    f->opts.kid_fetch_interval_ms = 100;
    start_cache_and_load(f);
    struct storm s = {.total = 200, .rotate_at = 100};
    run_storm(f, &s);

    int fetches = f->ep.requests - s.fetches_before;
    uint64_t storm_ms = s.last_ms - s.first_ms;
    /* One fetch may start at the storm's first ask, then one per interval at most,
     * plus the one that answers the last askers. */
    int bound = (int)(storm_ms / 100) + 2;
    if (fetches > bound) fail_msg("%d fetches in a %llu ms storm (bound %d)", fetches, (unsigned long long)storm_ms, bound);
    assert_true(fetches >= 1);
    for (int i = 0; i < f->answers.n; i++) {
        struct kid_answer *a = &f->answers.items[i];
        if (a == s.honest) continue;
        if (a->result != JWKS_KID_ABSENT) fail_msg("invented kid #%d answered %d", i, (int)a->result);
    }
    assert_non_null(s.honest);
    assert_int_equal(s.honest->result, JWKS_KID_FOUND);
    assert_true(s.honest->answered_ms - s.honest->asked_ms <= 100 + 1000);
    assert_int_equal(verify_token_of(f, &f->keys->b), OIDC_OK);
}

static void unknown_kids__one_invented_kid_repeated__one_fetch_then_negative_cache(void **state)
{
    struct fx *f = *state;
    f->opts.kid_fetch_interval_ms = 50;
    start_cache_and_load(f);
    struct storm s = {.total = 150, .kid = "invented", .rotate_at = -1};
    run_storm(f, &s);

    assert_true(s.last_ms - s.first_ms > 2 * 50); /* long enough for more fetches without the cache */
    assert_int_equal(f->ep.requests - s.fetches_before, 1);
    for (int i = 0; i < f->answers.n; i++) assert_int_equal(f->answers.items[i].result, JWKS_KID_ABSENT);
}

/* ---- the JWKS endpoint down --------------------------------------------- */

static void endpoint_down__during_rotation__old_tokens_verify_and_new_kid_after_recovery(void **state)
{
    struct fx *f = *state;
    f->opts.kid_fetch_interval_ms = 100;
    f->opts.kid_wait_ms = 400;
    f->opts.min_refresh_ms = 50;
    f->opts.retry_initial_ms = 50;
    f->opts.retry_max_ms = 50;
    f->ep.cache_control = "max-age=0"; /* refresh every 50 ms: scheduled refreshes fail during the outage */
    start_cache_and_load(f);
    const struct oidc_keyset *good = jwks_cache_keys(f->cache);

    f->ep.status = 503; /* down, while Google rotates behind it */
    f->ep.body = f->keys->jwks_ab;
    wait_refreshes(f, JWKS_REFRESH_HTTP_ERROR, 2);
    assert_ptr_equal(jwks_cache_keys(f->cache), good);
    assert_true(jwks_cache_ready(f->cache));
    assert_int_equal(verify_token_of(f, &f->keys->a), OIDC_OK);

    struct kid_answer *a = ask(f, "key-b");
    uint64_t took = expect_answer(a, JWKS_KID_UNCHECKED);
    assert_true(took >= 400);
    assert_int_equal(verify_token_of(f, &f->keys->a), OIDC_OK); /* old tokens never stopped verifying */
    assert_int_equal(verify_token_of(f, &f->keys->b), OIDC_ERR_UNKNOWN_KID);
    struct jwks_cache_stats st;
    jwks_cache_get_stats(f->cache, &st);
    assert_true(st.key_set_age_ms >= 400);
    assert_int_equal(st.refreshes[JWKS_REFRESH_OK], 1);

    f->ep.status = 200; /* back: Cloud Tasks' retry of the same token is accepted */
    struct kid_answer *retry = ask(f, "key-b");
    assert_true(expect_answer(retry, JWKS_KID_FOUND) <= ACCEPT_WITHIN_MS);
    assert_int_equal(verify_token_of(f, &f->keys->b), OIDC_OK);
    jwks_cache_get_stats(f->cache, &st);
    assert_true(st.key_set_age_ms < 400);
}

/* ---- hostile responses -------------------------------------------------- */

static void untrusted_responses__too_large_empty_or_malformed__never_replace_a_good_set(void **state)
{
    struct fx *f = *state;
    struct suite *k = f->keys;
    f->opts.min_refresh_ms = 20;
    f->opts.retry_initial_ms = 20;
    f->opts.retry_max_ms = 20;
    f->ep.cache_control = "max-age=0";
    f->ep.script[0] = k->jwks_a;
    f->ep.script[1] = k->too_large;
    f->ep.script[2] = "{\"keys\":[]}";
    f->ep.script[3] = "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}"; /* 24-bit key */
    f->ep.script[4] = "not json";
    f->ep.script[5] = k->jwks_b_and_malformed;
    f->ep.script[6] = k->jwks_b_and_malformed;
    f->ep.n_script = 7;
    start_cache_and_load(f);
    const struct oidc_keyset *good = jwks_cache_keys(f->cache);

    wait_refreshes(f, JWKS_REFRESH_TRANSPORT_ERROR, 1); /* too large: refused by the fetcher's cap */
    assert_ptr_equal(jwks_cache_keys(f->cache), good);
    wait_refreshes(f, JWKS_REFRESH_INVALID, 3); /* empty, weak key only, not JSON */
    assert_int_equal(refreshes(f, JWKS_REFRESH_OK), 1);
    assert_ptr_equal(jwks_cache_keys(f->cache), good);
    assert_int_equal(verify_token_of(f, &f->keys->a), OIDC_OK);

    wait_refreshes(f, JWKS_REFRESH_OK, 2); /* a set with one usable key among malformed ones */
    const struct oidc_keyset *ks = jwks_cache_keys(f->cache);
    assert_int_equal(oidc_keyset_size(ks), 1);
    assert_int_equal(oidc_keyset_skipped(ks), 2);
    assert_true(oidc_keyset_has_kid(ks, "key-b"));
    assert_false(oidc_keyset_has_kid(ks, "broken"));
    assert_int_equal(refreshes(f, JWKS_REFRESH_TRANSPORT_ERROR), 1);
    assert_int_equal(refreshes(f, JWKS_REFRESH_INVALID), 3);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    srand((unsigned)time(NULL));
    const struct CMUnitTest tests[] = {
        T(rotation__right_after_start_up__new_kid_accepted_within_5_s),
        T(rotation__right_after_a_scheduled_refresh__new_kid_accepted_within_5_s),
        T(unknown_kids__storm_of_invented_kids__fetches_bounded_and_honest_kid_accepted),
        T(unknown_kids__one_invented_kid_repeated__one_fetch_then_negative_cache),
        T(endpoint_down__during_rotation__old_tokens_verify_and_new_kid_after_recovery),
        T(untrusted_responses__too_large_empty_or_malformed__never_replace_a_good_set),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
