/*
 * shared/gcp/jwks_cache — keeps Google's signing keys (JWKS) fresh on the loop.
 *
 * The cache owns the current struct oidc_keyset.  It does not know HTTP: the
 * caller injects a fetcher (jwks_fetch_fn), so production wires in the libcurl
 * client and tests a fake.  jwks_cache_start() issues the first fetch; every
 * completion re-arms one uv timer: after a success at the response's
 * Cache-Control max-age (default_max_age_s when absent, clamped to
 * [min_refresh_interval_s, max_max_age_s]; no-store/no-cache count as 0, i.e.
 * the minimum), after a failure with exponential backoff (retry_initial_s
 * doubling up to retry_max_s).  A failed fetch (transport error, non-2xx,
 * unusable JWKS) never drops the last good keyset.
 *
 * Unknown kid: oidc_verify() said OIDC_ERR_UNKNOWN_KID, so Google may have
 * rotated keys.  jwks_cache_refresh_for_kid() refetches unless a fetch started
 * less than min_refresh_interval_s ago (injected clock), so forged kids cannot
 * make us hammer Google; callers arriving while a fetch is in flight join it.
 * The callback always runs later from the loop (never inside the call) with
 * refreshed = 1 when a new keyset was installed for it (or the kid is already
 * known), 0 otherwise — then the caller verifies once more or rejects.
 *
 * Lifetime of keysets: everything runs on the loop thread; a new keyset
 * replaces the old one (which is freed) only inside a fetch completion.  So the
 * pointer from jwks_cache_keys() is valid for the current callback only: use it
 * synchronously (e.g. for one oidc_verify()) and do not keep it across loop
 * iterations — call jwks_cache_keys() again instead.
 *
 * Fetcher contract: fetch() returns 0 when the request was accepted, then calls
 * done(req_ctx, ...) exactly once, later, from the loop (http_status 0 for a
 * transport error or cancellation; body/cache_control borrowed for the call
 * only, cache_control may be NULL).  fetch() returns -1 when it could not start;
 * done is then never called.  jwks_cache_close() does not wait for an in-flight
 * fetch: the request is detached and its later done() is ignored and freed.
 */
#ifndef FOLLOWUPD_SHARED_GCP_JWKS_CACHE_H
#define FOLLOWUPD_SHARED_GCP_JWKS_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "shared/gcp/oidc_verifier.h"
#include "utils/log.h"

typedef void (*jwks_fetch_done)(void *req_ctx, long http_status, const char *body, size_t len,
                                const char *cache_control);
typedef int (*jwks_fetch_fn)(void *fetch_ctx, const char *url, jwks_fetch_done done, void *req_ctx);

struct jwks_cache_opts {
    const char *url;                    /* required; copied */
    int min_refresh_interval_s;         /* unknown-kid refetch rate limit and shortest refresh; 0 → 30 */
    int default_max_age_s;              /* refresh period without max-age; 0 → 300 */
    int max_max_age_s;                  /* longest refresh period; 0 → 86400 */
    int retry_initial_s;                /* first retry after a failure; 0 → 1 */
    int retry_max_s;                    /* backoff cap; 0 → 300 */
    unsigned timer_ms_per_s;            /* timer milliseconds per second of delay; 0 → 1000 (tests shrink it) */
    int64_t (*now_s)(void *clock_ctx);  /* rate-limit clock; NULL → CLOCK_MONOTONIC seconds */
    void *clock_ctx;
};

struct jwks_cache;

/* NULL on bad options or out of memory (logged). */
struct jwks_cache *jwks_cache_new(uv_loop_t *loop, struct logger *lg, const struct jwks_cache_opts *opts,
                                  jwks_fetch_fn fetch, void *fetch_ctx);
/* First fetch, then periodic refresh.  -1 if already started or closing. */
int jwks_cache_start(struct jwks_cache *c) __attribute__((warn_unused_result));
/* Current keyset, NULL until the first successful fetch.  Valid only until
 * control returns to the loop (see above). */
const struct oidc_keyset *jwks_cache_keys(const struct jwks_cache *c);
int jwks_cache_ready(const struct jwks_cache *c);
/* See "Unknown kid" above.  kid may be NULL.  0 when cb will be called, -1
 * (cb never called) when closing or out of memory. */
int jwks_cache_refresh_for_kid(struct jwks_cache *c, const char *kid, void (*cb)(void *arg, int refreshed),
                               void *arg) __attribute__((warn_unused_result));
/* Milliseconds until the next scheduled fetch, -1 when none is scheduled
 * (a fetch is in flight, not started, or closing).  For status and tests. */
int64_t jwks_cache_next_refresh_ms(const struct jwks_cache *c);
/* Closes the timers; pending refresh callbacks get refreshed = 0; then
 * done(arg) runs from the loop and the cache is freed.  done may be NULL. */
void jwks_cache_close(struct jwks_cache *c, void (*done)(void *arg), void *arg);

/* Pure: seconds from a Cache-Control value.  -1 when there is no usable
 * max-age (NULL, empty, absent); 0 for no-store or no-cache (they win over
 * max-age) and for an invalid max-age value (RFC 9111: treat as stale);
 * values beyond INT_MAX are clamped.  Directive names are case-insensitive,
 * the first max-age counts, s-maxage is not max-age, "max-age=\"60\"" is
 * accepted. */
int jwks_parse_max_age(const char *cache_control);

#endif
