/*
 * shared/gcp/jwks_cache — Google JWKS cache on the loop (design in jwks_cache.h).
 *
 * State: the current keyset; at most one fetch in flight (a small heap request
 * object that close() can detach); two timers — `refresh` (next scheduled
 * fetch: max-age after success, backoff after failure) and `dispatch` (a 0 ms
 * timer that delivers refresh_for_kid callbacks, so they never run inside the
 * call that asked); two waiter lists — `waiting` (joined the in-flight fetch)
 * and `ready` (answer known, to be delivered).
 */
#include "shared/gcp/jwks_cache.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct kid_waiter {
    void (*cb)(void *arg, int refreshed);
    void *arg;
    int refreshed;
    struct kid_waiter *next;
};

struct waiter_list {
    struct kid_waiter *head;
    struct kid_waiter **tail;
};

struct jwks_fetch_req {
    struct jwks_cache *cache; /* NULL once detached by close */
};

struct jwks_cache {
    uv_loop_t *loop;
    struct logger *lg;
    char *url;
    int min_refresh_interval_s, default_max_age_s, max_max_age_s, retry_initial_s, retry_max_s;
    unsigned timer_ms_per_s;
    int64_t (*now_s)(void *clock_ctx);
    void *clock_ctx;
    jwks_fetch_fn fetch;
    void *fetch_ctx;

    struct oidc_keyset *keys;
    struct jwks_fetch_req *inflight;
    bool have_fetched;
    int64_t last_fetch_start_s;
    int failures;                       /* consecutive */

    uv_timer_t refresh_timer;
    uv_timer_t dispatch_timer;
    struct waiter_list waiting;
    struct waiter_list ready;

    bool started, closing;
    int handles_open;
    void (*close_done)(void *arg);
    void *close_arg;
};

/* ------------------------------------------------------------------------- */
/* Cache-Control                                                              */
/* ------------------------------------------------------------------------- */

/* Parse delta-seconds (optionally quoted) in [s, end); -1 when invalid. */
static int parse_delta_seconds(const char *s, const char *end)
{
    if (end - s >= 2 && *s == '"' && end[-1] == '"') {
        s++;
        end--;
    }
    if (s == end) return -1;
    long long v = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9') return -1;
        if (v < INT_MAX) v = v * 10 + (*p - '0');
    }
    return v > INT_MAX ? INT_MAX : (int)v;
}

static bool directive_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

int jwks_parse_max_age(const char *cache_control)
{
    if (cache_control == NULL) return -1;
    int max_age = -1;
    bool have_max_age = false, uncacheable = false;
    const char *p = cache_control;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        if (end == NULL) end = p + strlen(p);
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        const char *stop = end;
        while (stop > p && (stop[-1] == ' ' || stop[-1] == '\t')) stop--;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *name_end = eq != NULL ? eq : stop;
        size_t name_len = (size_t)(name_end - p);
        if (directive_is(p, name_len, "no-store") || directive_is(p, name_len, "no-cache")) {
            uncacheable = true;
        } else if (directive_is(p, name_len, "max-age") && !have_max_age) {
            have_max_age = true;
            int v = eq != NULL ? parse_delta_seconds(eq + 1, stop) : -1;
            max_age = v < 0 ? 0 : v;
        }
        p = *end == ',' ? end + 1 : end;
    }
    if (uncacheable) return 0;
    return max_age;
}

/* ------------------------------------------------------------------------- */
/* waiters                                                                    */
/* ------------------------------------------------------------------------- */

static void waiters_init(struct waiter_list *l)
{
    l->head = NULL;
    l->tail = &l->head;
}

static void waiters_push(struct waiter_list *l, struct kid_waiter *w)
{
    w->next = NULL;
    *l->tail = w;
    l->tail = &w->next;
}

/* Move every waiter of `from` to the end of `to` with the given answer. */
static void waiters_resolve(struct waiter_list *from, struct waiter_list *to, int refreshed)
{
    for (struct kid_waiter *w = from->head; w != NULL; w = w->next) w->refreshed = refreshed;
    if (from->head != NULL) {
        *to->tail = from->head;
        to->tail = from->tail;
    }
    waiters_init(from);
}

/* Call and free every waiter of the list taken at entry.  Waiters added by the
 * callbacks go to a fresh list (delivered by the next dispatch). */
static void waiters_deliver(struct waiter_list *l)
{
    struct kid_waiter *w = l->head;
    waiters_init(l);
    while (w != NULL) {
        struct kid_waiter *next = w->next;
        w->cb(w->arg, w->refreshed);
        free(w);
        w = next;
    }
}

static void dispatch_cb(uv_timer_t *t)
{
    struct jwks_cache *c = t->data;
    waiters_deliver(&c->ready);
}

static void schedule_dispatch(struct jwks_cache *c)
{
    if (!c->closing && c->ready.head != NULL) uv_timer_start(&c->dispatch_timer, dispatch_cb, 0, 0);
}

/* ------------------------------------------------------------------------- */
/* fetching                                                                   */
/* ------------------------------------------------------------------------- */

static int64_t monotonic_now_s(void *unused)
{
    (void)unused;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

static int clamp_int(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static void start_fetch(struct jwks_cache *c);

static void refresh_timer_cb(uv_timer_t *t)
{
    struct jwks_cache *c = t->data;
    if (c->inflight == NULL && !c->closing) start_fetch(c);
}

static void arm_refresh(struct jwks_cache *c, int delay_s)
{
    uint64_t ms = (uint64_t)delay_s * c->timer_ms_per_s;
    uv_timer_start(&c->refresh_timer, refresh_timer_cb, ms, 0);
}

static int success_delay_s(const struct jwks_cache *c, const char *cache_control)
{
    int max_age = jwks_parse_max_age(cache_control);
    if (max_age < 0) max_age = c->default_max_age_s;
    return clamp_int(max_age, c->min_refresh_interval_s, c->max_max_age_s);
}

static int failure_delay_s(const struct jwks_cache *c)
{
    long long d = c->retry_initial_s;
    for (int i = 1; i < c->failures && d < c->retry_max_s; i++) d *= 2;
    return d > c->retry_max_s ? c->retry_max_s : (int)d;
}

static void on_fetch_success(struct jwks_cache *c, struct oidc_keyset *ks, const char *cache_control)
{
    oidc_keyset_free(c->keys);
    c->keys = ks;
    c->failures = 0;
    int delay = success_delay_s(c, cache_control);
    arm_refresh(c, delay);
    if (log_enabled(c->lg, LOG_LEVEL_INFO)) {
        char nkeys[24], skipped[24], next[24];
        snprintf(nkeys, sizeof(nkeys), "%zu", oidc_keyset_size(ks));
        snprintf(skipped, sizeof(skipped), "%zu", oidc_keyset_skipped(ks));
        snprintf(next, sizeof(next), "%d", delay);
        LOG_KV(c->lg, LOG_LEVEL_INFO, NULL,
               ((const char *[]){"keys", nkeys, "skipped", skipped, "next_refresh_s", next, NULL}),
               "JWKS refreshed");
    }
}

static void on_fetch_failure(struct jwks_cache *c, long http_status, const char *why)
{
    c->failures++;
    int delay = failure_delay_s(c);
    arm_refresh(c, delay);
    if (log_enabled(c->lg, LOG_LEVEL_WARN)) {
        char status[24], next[24], kept[8];
        snprintf(status, sizeof(status), "%ld", http_status);
        snprintf(next, sizeof(next), "%d", delay);
        snprintf(kept, sizeof(kept), "%s", c->keys != NULL ? "true" : "false");
        LOG_KV(c->lg, LOG_LEVEL_WARN, NULL,
               ((const char *[]){"http_status", status, "error", why, "retry_in_s", next, "kept_keys", kept,
                                 NULL}),
               "JWKS fetch failed");
    }
}

static void fetch_done_cb(void *req_ctx, long http_status, const char *body, size_t len, const char *cache_control)
{
    struct jwks_fetch_req *req = req_ctx;
    struct jwks_cache *c = req->cache;
    free(req);
    if (c == NULL) return; /* detached by close */
    c->inflight = NULL;

    struct oidc_keyset *ks = NULL;
    char err[160] = "";
    if (http_status < 200 || http_status > 299) {
        snprintf(err, sizeof(err), "%s", http_status == 0 ? "transport error" : "unexpected HTTP status");
    } else if (body == NULL) {
        snprintf(err, sizeof(err), "empty body");
    } else {
        ks = oidc_keyset_from_jwks(body, len, err, sizeof(err));
    }
    if (ks != NULL) on_fetch_success(c, ks, cache_control);
    else on_fetch_failure(c, http_status, err);
    waiters_resolve(&c->waiting, &c->ready, ks != NULL);
    schedule_dispatch(c);
}

static void start_fetch(struct jwks_cache *c)
{
    struct jwks_fetch_req *req = calloc(1, sizeof(*req));
    uv_timer_stop(&c->refresh_timer);
    c->have_fetched = true;
    c->last_fetch_start_s = c->now_s(c->clock_ctx);
    if (req == NULL) {
        on_fetch_failure(c, 0, "out of memory");
        waiters_resolve(&c->waiting, &c->ready, 0);
        schedule_dispatch(c);
        return;
    }
    req->cache = c;
    c->inflight = req;
    if (c->fetch(c->fetch_ctx, c->url, fetch_done_cb, req) == 0) return;
    /* Refused: done() will not be called, so req is still ours unless a
     * misbehaving fetcher already completed it (then inflight is NULL). */
    if (c->inflight != NULL) {
        c->inflight = NULL;
        free(req);
        on_fetch_failure(c, 0, "fetch could not be started");
        waiters_resolve(&c->waiting, &c->ready, 0);
        schedule_dispatch(c);
    }
}

/* ------------------------------------------------------------------------- */
/* public API                                                                 */
/* ------------------------------------------------------------------------- */

static int default_if_zero(int v, int dflt)
{
    return v == 0 ? dflt : v;
}

struct jwks_cache *jwks_cache_new(uv_loop_t *loop, struct logger *lg, const struct jwks_cache_opts *opts,
                                  jwks_fetch_fn fetch, void *fetch_ctx)
{
    if (loop == NULL || opts == NULL || opts->url == NULL || opts->url[0] == '\0' || fetch == NULL) {
        LOG_ERROR(lg, NULL, "jwks_cache: missing loop, url or fetcher");
        return NULL;
    }
    struct jwks_cache *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->url = strdup(opts->url)) == NULL) {
        free(c);
        LOG_ERROR(lg, NULL, "jwks_cache: out of memory");
        return NULL;
    }
    c->loop = loop;
    c->lg = lg;
    c->min_refresh_interval_s = default_if_zero(opts->min_refresh_interval_s, 30);
    c->default_max_age_s = default_if_zero(opts->default_max_age_s, 300);
    c->max_max_age_s = default_if_zero(opts->max_max_age_s, 86400);
    c->retry_initial_s = default_if_zero(opts->retry_initial_s, 1);
    c->retry_max_s = default_if_zero(opts->retry_max_s, 300);
    if (c->min_refresh_interval_s < 1 || c->default_max_age_s < 1 || c->max_max_age_s < c->min_refresh_interval_s ||
        c->retry_initial_s < 1 || c->retry_max_s < c->retry_initial_s) {
        LOG_ERROR(lg, NULL, "jwks_cache: inconsistent refresh intervals");
        free(c->url);
        free(c);
        return NULL;
    }
    c->timer_ms_per_s = opts->timer_ms_per_s != 0 ? opts->timer_ms_per_s : 1000;
    c->now_s = opts->now_s != NULL ? opts->now_s : monotonic_now_s;
    c->clock_ctx = opts->clock_ctx;
    c->fetch = fetch;
    c->fetch_ctx = fetch_ctx;
    waiters_init(&c->waiting);
    waiters_init(&c->ready);
    uv_timer_init(loop, &c->refresh_timer);
    uv_timer_init(loop, &c->dispatch_timer);
    c->refresh_timer.data = c;
    c->dispatch_timer.data = c;
    c->handles_open = 2;
    return c;
}

int jwks_cache_start(struct jwks_cache *c)
{
    if (c == NULL || c->started || c->closing) return -1;
    c->started = true;
    if (c->inflight == NULL) start_fetch(c);
    return 0;
}

const struct oidc_keyset *jwks_cache_keys(const struct jwks_cache *c)
{
    return c != NULL ? c->keys : NULL;
}

int jwks_cache_ready(const struct jwks_cache *c)
{
    return c != NULL && c->keys != NULL;
}

static bool rate_limited(const struct jwks_cache *c)
{
    return c->have_fetched && c->now_s(c->clock_ctx) - c->last_fetch_start_s < c->min_refresh_interval_s;
}

int jwks_cache_refresh_for_kid(struct jwks_cache *c, const char *kid, void (*cb)(void *arg, int refreshed),
                               void *arg)
{
    if (c == NULL || c->closing || cb == NULL) return -1;
    struct kid_waiter *w = calloc(1, sizeof(*w));
    if (w == NULL) return -1;
    w->cb = cb;
    w->arg = arg;
    if (kid != NULL && oidc_keyset_has_kid(c->keys, kid)) {
        w->refreshed = 1; /* a refresh since the caller's attempt already brought it */
        waiters_push(&c->ready, w);
    } else if (c->inflight != NULL) {
        waiters_push(&c->waiting, w);
        return 0;
    } else if (rate_limited(c)) {
        w->refreshed = 0;
        waiters_push(&c->ready, w);
        LOG_DEBUG(c->lg, NULL, "jwks_cache: unknown kid, refetch rate-limited");
    } else {
        waiters_push(&c->waiting, w);
        start_fetch(c);
        return 0;
    }
    schedule_dispatch(c);
    return 0;
}

int64_t jwks_cache_next_refresh_ms(const struct jwks_cache *c)
{
    if (c == NULL || c->closing || !uv_is_active((const uv_handle_t *)&c->refresh_timer)) return -1;
    return (int64_t)uv_timer_get_due_in(&c->refresh_timer);
}

static void handle_closed_cb(uv_handle_t *h)
{
    struct jwks_cache *c = h->data;
    if (--c->handles_open > 0) return;
    waiters_deliver(&c->ready);
    void (*done)(void *) = c->close_done;
    void *arg = c->close_arg;
    oidc_keyset_free(c->keys);
    free(c->url);
    free(c);
    if (done != NULL) done(arg);
}

void jwks_cache_close(struct jwks_cache *c, void (*done)(void *arg), void *arg)
{
    if (c == NULL || c->closing) return;
    c->closing = true;
    c->close_done = done;
    c->close_arg = arg;
    if (c->inflight != NULL) {
        c->inflight->cache = NULL;
        c->inflight = NULL;
    }
    waiters_resolve(&c->waiting, &c->ready, 0);
    uv_timer_stop(&c->refresh_timer);
    uv_timer_stop(&c->dispatch_timer);
    uv_close((uv_handle_t *)&c->refresh_timer, handle_closed_cb);
    uv_close((uv_handle_t *)&c->dispatch_timer, handle_closed_cb);
}
