/*
 * shared/gcp/jwks_cache — keeps Google's signing keys (JWKS) fresh on the loop,
 * so that a key Google starts using is trusted within seconds and a client
 * inventing kids cannot make us hammer Google.
 *
 * The cache owns the current struct oidc_keyset.  It does not know HTTP: the
 * caller injects a fetcher (jwks_fetch_fn), so production wires in the libcurl
 * client and tests whatever they like.  All times are the loop's (uv_now).
 *
 * Scheduled refresh: jwks_cache_start() issues the first fetch.  After a
 * success the next one is due at refresh_ahead_percent (80 %) of the response's
 * Cache-Control max-age (default_max_age_s when absent; no-store/no-cache count
 * as 0), clamped to [min_refresh_ms, max_refresh_ms] — so the set is renewed
 * before it goes stale.  After a failure (transport error, non-2xx, a body
 * without one usable key) the last good set stays in use and the fetch is
 * retried with exponential backoff (retry_initial_ms doubling up to
 * retry_max_ms).  A key set is never dropped or replaced by an empty one.
 *
 * Unknown kid: oidc_verify() said OIDC_ERR_UNKNOWN_KID, so Google may have
 * rotated keys; the caller asks jwks_cache_refresh_for_kid() and waits (the
 * request is held asynchronously, nothing blocks).  The answer, always later
 * from the loop, is
 *   JWKS_KID_FOUND      the kid is in the current set: verify again;
 *   JWKS_KID_ABSENT     a set fetched by a request that started after this
 *                       question was asked does not have it (or it is in the
 *                       negative cache, see below): the kid is not Google's;
 *   JWKS_KID_UNCHECKED  no such fetch succeeded within kid_wait_ms (JWKS
 *                       endpoint down or slow), or the cache is closing.
 * Fetches for unknown kids: at most one in flight (every asker joins it), and a
 * fetch starts no sooner than kid_fetch_interval_ms after the previous fetch of
 * any kind started; an asker arriving inside that window waits for the fetch
 * that the window's end starts (the refresh timer is pulled forward to it).
 * A fetch that started before an asker arrived may answer it FOUND but never
 * ABSENT (its body may predate the key) — unless an earlier asker of the same
 * kid was found ABSENT by it.  A kid found ABSENT is remembered for
 * kid_negative_ttl_ms (a small ring of JWKS_NEGATIVE_SLOTS kids): repeats are
 * answered ABSENT at once, without waiting or fetching.  So with the defaults
 * (2 s interval, 4 s wait) a token signed with a freshly published key is
 * accepted on its first delivery within about 2 s plus one fetch, and any mix
 * of invented kids causes at most one fetch per 2 s.  Waiting askers are bounded
 * by the caller's own request limits (each holds one HTTP request) and by
 * kid_wait_ms.  Fetches for unknown kids ignore the failure backoff (only the
 * interval limits them), so a rotation is picked up as soon as Google answers.
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

#define JWKS_NEGATIVE_SLOTS 64 /* kids remembered as absent */

/* Every field but url may be 0 for its default. */
struct jwks_cache_opts {
    const char *url;                    /* required; copied */
    int kid_fetch_interval_ms;          /* unknown kid: shortest gap between fetch starts; 2000 */
    int kid_wait_ms;                    /* unknown kid: longest wait for an answer; 4000 */
    int kid_negative_ttl_ms;            /* how long a kid found absent stays absent; 10000 */
    int refresh_ahead_percent;          /* scheduled refresh at this share of max-age, 1..100; 80 */
    int min_refresh_ms;                 /* shortest scheduled refresh period; 30000 */
    int max_refresh_ms;                 /* longest scheduled refresh period; 86400000 */
    int default_max_age_s;              /* max-age assumed when the response has none; 300 */
    int retry_initial_ms;               /* first retry after a failed fetch; 1000 */
    int retry_max_ms;                   /* backoff cap; 300000 */
};

enum jwks_kid_result { JWKS_KID_FOUND, JWKS_KID_ABSENT, JWKS_KID_UNCHECKED };
typedef void (*jwks_kid_cb)(void *arg, enum jwks_kid_result result);

/* Outcome of one fetch, for metrics. */
enum jwks_refresh_result {
    JWKS_REFRESH_OK,
    JWKS_REFRESH_HTTP_ERROR,            /* a non-2xx answer */
    JWKS_REFRESH_TRANSPORT_ERROR,       /* no complete answer (also: too large, could not start) */
    JWKS_REFRESH_INVALID,               /* 2xx but not JSON, or no usable key */
    JWKS_REFRESH_RESULTS
};
/* "ok", "http_error", "transport_error", "invalid". */
const char *jwks_refresh_result_name(enum jwks_refresh_result r);

struct jwks_cache_stats {
    uint64_t refreshes[JWKS_REFRESH_RESULTS]; /* fetches completed, by result */
    uint64_t kid_fetches;                     /* fetches started for an unknown kid */
    int64_t key_set_age_ms;                   /* since the last successful fetch; -1 without keys */
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
/* See "Unknown kid" above.  kid must be 1..OIDC_KID_MAX bytes.  0 when cb
 * will be called (once, later), -1 (cb never called) on a bad kid, when
 * closing or out of memory. */
int jwks_cache_refresh_for_kid(struct jwks_cache *c, const char *kid, jwks_kid_cb cb, void *arg)
    __attribute__((warn_unused_result));
/* Milliseconds until the next scheduled fetch, -1 when none is scheduled
 * (a fetch is in flight, not started, or closing).  For status and tests. */
int64_t jwks_cache_next_refresh_ms(const struct jwks_cache *c);
void jwks_cache_get_stats(const struct jwks_cache *c, struct jwks_cache_stats *out);
/* Closes the timers; waiting askers get JWKS_KID_UNCHECKED; then done(arg)
 * runs from the loop and the cache is freed.  done may be NULL. */
void jwks_cache_close(struct jwks_cache *c, void (*done)(void *arg), void *arg);

/* Pure: seconds from a Cache-Control value.  -1 when there is no usable
 * max-age (NULL, empty, absent); 0 for no-store or no-cache (they win over
 * max-age) and for an invalid max-age value (RFC 9111: treat as stale);
 * values beyond INT_MAX are clamped.  Directive names are case-insensitive,
 * the first max-age counts, s-maxage is not max-age, "max-age=\"60\"" is
 * accepted. */
int jwks_parse_max_age(const char *cache_control);

#endif
