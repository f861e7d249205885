/*
 * shared/gcp/jwks_cache — Google JWKS cache on the loop (design in jwks_cache.h).
 *
 * State: the current keyset and when it was fetched; at most one fetch in
 * flight (a small heap request object that close() can detach, stamped with
 * its start time); three timers — `refresh` (the next fetch: refresh-ahead
 * after a success, backoff after a failure, pulled forward to the end of the
 * unknown-kid interval while askers wait), `wait` (the oldest waiting asker's
 * deadline) and `dispatch` (a 0 ms timer that delivers answers, so callbacks
 * never run inside the call that asked); two asker lists — `waiting` (in
 * arrival order, hence in deadline order) and `ready` (answer known, to be
 * delivered); and the ring of kids recently found absent.
 */
#include "shared/gcp/jwks_cache.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct kid_waiter {
    jwks_kid_cb cb;
    void *arg;
    enum jwks_kid_result result;
    uint64_t arrived_ms, deadline_ms;
    struct kid_waiter *next;
    char kid[OIDC_KID_MAX + 1];
};

struct waiter_list {
    struct kid_waiter *head;
    struct kid_waiter **tail;
};

struct absent_kid {
    char kid[OIDC_KID_MAX + 1];
    uint64_t until_ms;
};

struct jwks_fetch_req {
    struct jwks_cache *cache; /* NULL once detached by close */
    uint64_t started_ms;
};

struct jwks_cache {
    uv_loop_t *loop;
    struct logger *lg;
    char *url;
    struct jwks_cache_opts o; /* defaults applied; o.url unused */
    jwks_fetch_fn fetch;
    void *fetch_ctx;

    struct oidc_keyset *keys;
    uint64_t keys_fetched_ms;
    struct jwks_fetch_req *inflight;
    bool have_fetched;
    uint64_t last_fetch_start_ms;
    int failures; /* consecutive */
    struct jwks_cache_stats stats;

    uv_timer_t refresh_timer;
    uv_timer_t wait_timer;
    uv_timer_t dispatch_timer;
    struct waiter_list waiting;
    struct waiter_list ready;
    struct absent_kid absent[JWKS_NEGATIVE_SLOTS];
    unsigned absent_next;

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

/* Unlink *link (an element of l) and append it to `to` with this answer. */
static void waiter_answer(struct waiter_list *l, struct kid_waiter **link, struct waiter_list *to,
                          enum jwks_kid_result result)
{
    struct kid_waiter *w = *link;
    *link = w->next;
    if (l->tail == &w->next) l->tail = link;
    w->result = result;
    waiters_push(to, w);
}

/* Call and free every waiter of the list taken at entry.  Waiters added by the
 * callbacks go to a fresh list (delivered by the next dispatch). */
static void waiters_deliver(struct waiter_list *l)
{
    struct kid_waiter *w = l->head;
    waiters_init(l);
    while (w != NULL) {
        struct kid_waiter *next = w->next;
        w->cb(w->arg, w->result);
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

static uint64_t now_ms(const struct jwks_cache *c)
{
    return uv_now(c->loop);
}

/* ------------------------------------------------------------------------- */
/* kids recently found absent                                                 */
/* ------------------------------------------------------------------------- */

static struct absent_kid *absent_slot(struct jwks_cache *c, const char *kid)
{
    uint64_t now = now_ms(c);
    for (unsigned i = 0; i < JWKS_NEGATIVE_SLOTS; i++)
        if (c->absent[i].until_ms > now && strcmp(c->absent[i].kid, kid) == 0) return &c->absent[i];
    return NULL;
}

static void remember_absent(struct jwks_cache *c, const char *kid)
{
    struct absent_kid *slot = absent_slot(c, kid);
    if (slot == NULL) {
        slot = &c->absent[c->absent_next];
        c->absent_next = (c->absent_next + 1) % JWKS_NEGATIVE_SLOTS;
        snprintf(slot->kid, sizeof(slot->kid), "%s", kid);
    }
    slot->until_ms = now_ms(c) + (uint64_t)c->o.kid_negative_ttl_ms;
}

/* ------------------------------------------------------------------------- */
/* timers                                                                     */
/* ------------------------------------------------------------------------- */

static void start_fetch(struct jwks_cache *c);

static void refresh_timer_cb(uv_timer_t *t)
{
    struct jwks_cache *c = t->data;
    if (c->inflight == NULL && !c->closing) start_fetch(c);
}

static void arm_refresh(struct jwks_cache *c, int64_t delay_ms)
{
    uv_timer_start(&c->refresh_timer, refresh_timer_cb, (uint64_t)delay_ms, 0);
}

/* Askers are waiting: fetch now, or at the end of the unknown-kid interval
 * (pulling the refresh timer forward), unless a fetch is in flight — its
 * completion comes back here. */
static void fetch_for_waiters(struct jwks_cache *c)
{
    if (c->inflight != NULL || c->closing || c->waiting.head == NULL) return;
    int64_t due = 0;
    if (c->have_fetched) {
        due = (int64_t)(c->last_fetch_start_ms + (uint64_t)c->o.kid_fetch_interval_ms) - (int64_t)now_ms(c);
        if (due < 0) due = 0;
    }
    if (due == 0) {
        start_fetch(c);
        return;
    }
    if (!uv_is_active((uv_handle_t *)&c->refresh_timer) || (int64_t)uv_timer_get_due_in(&c->refresh_timer) > due)
        arm_refresh(c, due);
}

static void wait_timer_cb(uv_timer_t *t);

static void arm_wait_timer(struct jwks_cache *c)
{
    if (c->waiting.head == NULL) {
        uv_timer_stop(&c->wait_timer);
        return;
    }
    uint64_t now = now_ms(c), deadline = c->waiting.head->deadline_ms;
    uv_timer_start(&c->wait_timer, wait_timer_cb, deadline > now ? deadline - now : 0, 0);
}

static void wait_timer_cb(uv_timer_t *t)
{
    struct jwks_cache *c = t->data;
    uint64_t now = now_ms(c);
    while (c->waiting.head != NULL && c->waiting.head->deadline_ms <= now)
        waiter_answer(&c->waiting, &c->waiting.head, &c->ready, JWKS_KID_UNCHECKED);
    arm_wait_timer(c);
    schedule_dispatch(c);
}

/* ------------------------------------------------------------------------- */
/* fetching                                                                   */
/* ------------------------------------------------------------------------- */

const char *jwks_refresh_result_name(enum jwks_refresh_result r)
{
    static const char *const names[] = {[JWKS_REFRESH_OK] = "ok",
                                        [JWKS_REFRESH_HTTP_ERROR] = "http_error",
                                        [JWKS_REFRESH_TRANSPORT_ERROR] = "transport_error",
                                        [JWKS_REFRESH_INVALID] = "invalid"};
    return (unsigned)r < JWKS_REFRESH_RESULTS ? names[r] : "invalid";
}

static int64_t clamp_i64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static int64_t success_delay_ms(const struct jwks_cache *c, const char *cache_control)
{
    int max_age_s = jwks_parse_max_age(cache_control);
    if (max_age_s < 0) max_age_s = c->o.default_max_age_s;
    int64_t ahead = (int64_t)max_age_s * 10 * c->o.refresh_ahead_percent; /* s * 1000 * pct / 100 */
    return clamp_i64(ahead, c->o.min_refresh_ms, c->o.max_refresh_ms);
}

static int64_t failure_delay_ms(const struct jwks_cache *c)
{
    int64_t d = c->o.retry_initial_ms;
    for (int i = 1; i < c->failures && d < c->o.retry_max_ms; i++) d *= 2;
    return d > c->o.retry_max_ms ? c->o.retry_max_ms : d;
}

static const char *fetch_reason(const struct jwks_cache *c)
{
    return c->waiting.head != NULL ? "unknown_kid" : c->keys == NULL ? "initial" : "scheduled";
}

static void install_keys(struct jwks_cache *c, struct oidc_keyset *ks, const char *cache_control, const char *reason)
{
    oidc_keyset_free(c->keys);
    c->keys = ks;
    c->keys_fetched_ms = now_ms(c);
    c->failures = 0;
    int64_t delay = success_delay_ms(c, cache_control);
    arm_refresh(c, delay);
    if (log_enabled(c->lg, LOG_LEVEL_INFO)) {
        char nkeys[24], skipped[24], next[24];
        snprintf(nkeys, sizeof(nkeys), "%zu", oidc_keyset_size(ks));
        snprintf(skipped, sizeof(skipped), "%zu", oidc_keyset_skipped(ks));
        snprintf(next, sizeof(next), "%lld", (long long)delay);
        LOG_KV(c->lg, LOG_LEVEL_INFO, NULL,
               ((const char *[]){"keys", nkeys, "skipped", skipped, "next_refresh_ms", next, "reason", reason,
                                 NULL}),
               "JWKS refreshed");
    }
}

static void keep_keys(struct jwks_cache *c, long http_status, const char *why, const char *reason)
{
    c->failures++;
    int64_t delay = failure_delay_ms(c);
    arm_refresh(c, delay);
    if (log_enabled(c->lg, LOG_LEVEL_WARN)) {
        char status[24], next[24];
        snprintf(status, sizeof(status), "%ld", http_status);
        snprintf(next, sizeof(next), "%lld", (long long)delay);
        LOG_KV(c->lg, LOG_LEVEL_WARN, NULL,
               ((const char *[]){"http_status", status, "error", why, "retry_in_ms", next, "kept_keys",
                                 c->keys != NULL ? "true" : "false", "reason", reason, NULL}),
               "JWKS fetch failed");
    }
}

/* After a fetch that started at fetch_started_ms: askers whose kid is now
 * known are FOUND; when the fetch succeeded, askers that arrived before it
 * started and whose kid is still missing are ABSENT (and remembered), and so
 * are later askers for a kid remembered that way (the list is in arrival
 * order, so the first asker of a kid comes first).  The others keep waiting. */
static void answer_waiters(struct jwks_cache *c, uint64_t fetch_started_ms, bool fetched)
{
    struct kid_waiter **link = &c->waiting.head;
    while (*link != NULL) {
        struct kid_waiter *w = *link;
        if (oidc_keyset_has_kid(c->keys, w->kid)) {
            waiter_answer(&c->waiting, link, &c->ready, JWKS_KID_FOUND);
        } else if (fetched && (w->arrived_ms <= fetch_started_ms || absent_slot(c, w->kid) != NULL)) {
            remember_absent(c, w->kid);
            waiter_answer(&c->waiting, link, &c->ready, JWKS_KID_ABSENT);
        } else {
            link = &w->next;
        }
    }
}

static void finish_fetch(struct jwks_cache *c, uint64_t started_ms, enum jwks_refresh_result result,
                         struct oidc_keyset *ks, const char *cache_control, long http_status, const char *why)
{
    const char *reason = fetch_reason(c);
    c->stats.refreshes[result]++;
    if (ks != NULL) install_keys(c, ks, cache_control, reason);
    else keep_keys(c, http_status, why, reason);
    answer_waiters(c, started_ms, ks != NULL);
    arm_wait_timer(c);
    fetch_for_waiters(c);
    schedule_dispatch(c);
}

static void fetch_done_cb(void *req_ctx, long http_status, const char *body, size_t len, const char *cache_control)
{
    struct jwks_fetch_req *req = req_ctx;
    struct jwks_cache *c = req->cache;
    uint64_t started_ms = req->started_ms;
    free(req);
    if (c == NULL) return; /* detached by close */
    c->inflight = NULL;

    struct oidc_keyset *ks = NULL;
    char err[160] = "";
    enum jwks_refresh_result result = JWKS_REFRESH_INVALID;
    if (http_status == 0) {
        result = JWKS_REFRESH_TRANSPORT_ERROR;
        snprintf(err, sizeof(err), "transport error");
    } else if (http_status < 200 || http_status > 299) {
        result = JWKS_REFRESH_HTTP_ERROR;
        snprintf(err, sizeof(err), "unexpected HTTP status");
    } else if (body == NULL) {
        snprintf(err, sizeof(err), "empty body");
    } else if ((ks = oidc_keyset_from_jwks(body, len, err, sizeof(err))) != NULL) {
        result = JWKS_REFRESH_OK;
    }
    finish_fetch(c, started_ms, result, ks, cache_control, http_status, err);
}

static void start_fetch(struct jwks_cache *c)
{
    struct jwks_fetch_req *req = calloc(1, sizeof(*req));
    uint64_t started_ms = now_ms(c);
    uv_timer_stop(&c->refresh_timer);
    c->have_fetched = true;
    c->last_fetch_start_ms = started_ms;
    if (req == NULL) {
        finish_fetch(c, started_ms, JWKS_REFRESH_TRANSPORT_ERROR, NULL, NULL, 0, "out of memory");
        return;
    }
    req->cache = c;
    req->started_ms = started_ms;
    c->inflight = req;
    if (c->fetch(c->fetch_ctx, c->url, fetch_done_cb, req) == 0) return;
    /* Refused: done() will not be called, so req is still ours unless a
     * misbehaving fetcher already completed it (then inflight is no longer req). */
    if (c->inflight == req) {
        c->inflight = NULL;
        free(req);
        finish_fetch(c, started_ms, JWKS_REFRESH_TRANSPORT_ERROR, NULL, NULL, 0, "fetch could not be started");
    }
}

/* ------------------------------------------------------------------------- */
/* public API                                                                 */
/* ------------------------------------------------------------------------- */

static int default_if_zero(int v, int dflt)
{
    return v == 0 ? dflt : v;
}

static bool resolve_opts(struct jwks_cache_opts *o, const struct jwks_cache_opts *in)
{
    o->kid_fetch_interval_ms = default_if_zero(in->kid_fetch_interval_ms, 2000);
    o->kid_wait_ms = default_if_zero(in->kid_wait_ms, 4000);
    o->kid_negative_ttl_ms = default_if_zero(in->kid_negative_ttl_ms, 10000);
    o->refresh_ahead_percent = default_if_zero(in->refresh_ahead_percent, 80);
    o->min_refresh_ms = default_if_zero(in->min_refresh_ms, 30000);
    o->max_refresh_ms = default_if_zero(in->max_refresh_ms, 86400000);
    o->default_max_age_s = default_if_zero(in->default_max_age_s, 300);
    o->retry_initial_ms = default_if_zero(in->retry_initial_ms, 1000);
    o->retry_max_ms = default_if_zero(in->retry_max_ms, 300000);
    return o->kid_fetch_interval_ms > 0 && o->kid_wait_ms > 0 && o->kid_negative_ttl_ms > 0 &&
           o->refresh_ahead_percent > 0 && o->refresh_ahead_percent <= 100 && o->min_refresh_ms > 0 &&
           o->max_refresh_ms >= o->min_refresh_ms && o->default_max_age_s > 0 && o->retry_initial_ms > 0 &&
           o->retry_max_ms >= o->retry_initial_ms;
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
    if (!resolve_opts(&c->o, opts)) {
        LOG_ERROR(lg, NULL, "jwks_cache: inconsistent refresh intervals");
        free(c->url);
        free(c);
        return NULL;
    }
    c->loop = loop;
    c->lg = lg;
    c->fetch = fetch;
    c->fetch_ctx = fetch_ctx;
    waiters_init(&c->waiting);
    waiters_init(&c->ready);
    uv_timer_t *timers[] = {&c->refresh_timer, &c->wait_timer, &c->dispatch_timer};
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
        uv_timer_init(loop, timers[i]);
        timers[i]->data = c;
        c->handles_open++;
    }
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

int jwks_cache_refresh_for_kid(struct jwks_cache *c, const char *kid, jwks_kid_cb cb, void *arg)
{
    if (c == NULL || c->closing || cb == NULL || kid == NULL) return -1;
    size_t kid_len = strlen(kid);
    if (kid_len == 0 || kid_len > OIDC_KID_MAX) return -1;
    struct kid_waiter *w = calloc(1, sizeof(*w));
    if (w == NULL) return -1;
    w->cb = cb;
    w->arg = arg;
    memcpy(w->kid, kid, kid_len + 1);
    if (oidc_keyset_has_kid(c->keys, kid)) {
        w->result = JWKS_KID_FOUND; /* a refresh since the caller's attempt already brought it */
        waiters_push(&c->ready, w);
    } else if (absent_slot(c, kid) != NULL) {
        w->result = JWKS_KID_ABSENT;
        waiters_push(&c->ready, w);
        LOG_DEBUG(c->lg, NULL, "jwks_cache: kid recently found absent, no refetch");
    } else {
        w->arrived_ms = now_ms(c);
        w->deadline_ms = w->arrived_ms + (uint64_t)c->o.kid_wait_ms;
        bool first = c->waiting.head == NULL;
        waiters_push(&c->waiting, w);
        if (first) arm_wait_timer(c);
        fetch_for_waiters(c);
    }
    schedule_dispatch(c);
    return 0;
}

int64_t jwks_cache_next_refresh_ms(const struct jwks_cache *c)
{
    if (c == NULL || c->closing || !uv_is_active((const uv_handle_t *)&c->refresh_timer)) return -1;
    return (int64_t)uv_timer_get_due_in(&c->refresh_timer);
}

void jwks_cache_get_stats(const struct jwks_cache *c, struct jwks_cache_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->key_set_age_ms = -1;
    if (c == NULL) return;
    *out = c->stats;
    out->key_set_age_ms = c->keys != NULL ? (int64_t)(now_ms(c) - c->keys_fetched_ms) : -1;
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
    while (c->waiting.head != NULL) waiter_answer(&c->waiting, &c->waiting.head, &c->ready, JWKS_KID_UNCHECKED);
    uv_timer_t *timers[] = {&c->refresh_timer, &c->wait_timer, &c->dispatch_timer};
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
        uv_timer_stop(timers[i]);
        uv_close((uv_handle_t *)timers[i], handle_closed_cb);
    }
}
