/*
 * shared/gcp/task_authenticator — who may call the task routes.  Plugs into
 * the HTTP server as its authenticator and runs before any handler (so before
 * anything touches the database):
 *   auth.mode = oidc: exactly one `Authorization: Bearer <jwt>` header, the
 *     token verified by oidc_verifier against the cached Google JWKS and the
 *     live policy (audience, invoker service account, issuers, clock skew); a
 *     token whose kid is unknown is held (asynchronously) until the JWKS cache
 *     has fetched a key set newer than the request, then verified again (see
 *     jwks_cache.h: a few seconds at most, rate-limited per cache).  Still
 *     unknown → 401 "kid"; no fresh set in time (JWKS endpoint down) → 401
 *     "jwks_unavailable" (Cloud Tasks retries either).
 *   auth.mode = shared_secret: exactly one `X-CloudTasks-Secret` header equal
 *     (constant time) to the configured secret.
 * Failures answer 401 with a generic body; the log says which check failed,
 * never the token.  X-CloudTasks-* headers are logged as context only.
 */
#ifndef FOLLOWUPD_SHARED_GCP_TASK_AUTHENTICATOR_H
#define FOLLOWUPD_SHARED_GCP_TASK_AUTHENTICATOR_H

#include <stdint.h>

#include "core/config.h"
#include "shared/gcp/jwks_cache.h"
#include "shared/http/http_server.h"
#include "utils/log.h"

struct task_authenticator {
    const struct config *cfg;       /* live: audience, service account, issuers, skew, secret */
    struct logger *log;
    struct jwks_cache *jwks;        /* NULL in shared_secret mode */
    int64_t (*now_s)(void *clock);
    void *clock;
    void (*on_failure)(void *arg, const char *check);   /* optional observer (metrics) */
    void *observer_arg;
};

/* http_authenticator signature; auth_ctx is a struct task_authenticator. */
void task_authenticator_authenticate(void *auth_ctx, struct http_exchange *ex, http_auth_done done);

#endif
