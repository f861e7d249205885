/*
 * shared/gcp/google_auth — OAuth2 access tokens for Google APIs (Cloud Tasks),
 * i.e. the daemon's own identity, with a cache shared by every caller.
 *
 * Two sources, chosen by `credentials`:
 *   - a service-account key file (JSON with client_email, private_key,
 *     token_uri): an RS256 JWT {iss, scope=cloud-platform, aud=token_uri, iat,
 *     exp=iat+3600} signed with the key is exchanged at token_uri
 *     (grant_type=jwt-bearer, form-encoded POST);
 *   - "metadata" (or NULL): GET {metadata_url}/computeMetadata/v1/instance/
 *     service-accounts/default/token with `Metadata-Flavor: Google`.
 *
 * google_auth_load() reads and validates the key file synchronously (startup
 * only).  google_auth_get_token() answers from the cache while the token is
 * more than 5 minutes (at most half its lifetime) from expiry; otherwise it
 * starts one refresh — only one is ever in flight — and every caller waits for
 * it.  Callbacks always run later from the loop, never inside get_token().
 * A failed refresh fails all its waiters; the next call tries again (callers
 * own the backoff).  google_auth_invalidate() drops the cached token after a
 * 401 so the next call refreshes.
 *
 * Lifetime: google_auth_cancel() withdraws a waiting callback.
 * google_auth_free() drops all waiters without calling them (free the clients
 * that use this one first), detaches an in-flight refresh (its HTTP callback
 * is absorbed) and closes its timer; the memory of that timer is released by
 * the loop.  The access token and the private key are never logged.
 */
#ifndef FOLLOWUPD_SHARED_GCP_GOOGLE_AUTH_H
#define FOLLOWUPD_SHARED_GCP_GOOGLE_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "shared/http/http_client.h"
#include "utils/log.h"

#define GOOGLE_AUTH_SCOPE "https://www.googleapis.com/auth/cloud-platform"
#define GOOGLE_AUTH_DEFAULT_METADATA_URL "http://metadata.google.internal"
#define GOOGLE_AUTH_DEFAULT_TIMEOUT_MS 10000L
#define GOOGLE_AUTH_REFRESH_MARGIN_MS (5 * 60 * 1000)

struct google_auth_opts {
    const char *credentials;         /* path to a service-account key JSON, or "metadata"/NULL */
    const char *metadata_url;        /* NULL → http://metadata.google.internal */
    long timeout_ms;                 /* token request timeout; <= 0 → 10 s */
    int64_t (*now_ms)(void *arg);    /* wall clock in epoch ms; NULL → real time (tests inject) */
    void *now_arg;
};

struct google_auth;

typedef void (*google_token_cb)(void *arg, const char *access_token /* NULL on failure */,
                                const char *err);

struct google_auth *google_auth_new(uv_loop_t *loop, struct logger *lg, struct http_client *http,
                                    const struct google_auth_opts *opts);
/* Key file mode: read and validate the key file. Metadata mode: check the URL.
 * Returns 0, or -1 with a message in err (no secrets). */
int google_auth_load(struct google_auth *a, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* 0: cb will run exactly once, later. -1: not loaded / out of memory / could
 * not start a refresh; cb will not run. */
int google_auth_get_token(struct google_auth *a, google_token_cb cb, void *arg)
    __attribute__((warn_unused_result));
void google_auth_cancel(struct google_auth *a, google_token_cb cb, void *arg);
void google_auth_invalidate(struct google_auth *a);
void google_auth_free(struct google_auth *a);

/* Pure (fuzzed): parse a token endpoint / metadata server reply
 * {"access_token","expires_in","token_type"}.  Returns the malloc'd access
 * token (a secret: cleanse and free it) with *expires_in_s set, or NULL with a
 * reason in err (never containing the token). */
char *google_auth_parse_token_reply(long http_status, const char *body, size_t len, int64_t *expires_in_s,
                                    char *err, size_t errlen);

/* "service_account:<client_email>" or "metadata" — for logs and status. */
const char *google_auth_identity(const struct google_auth *a);

#endif
