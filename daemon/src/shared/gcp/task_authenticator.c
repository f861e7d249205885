/*
 * shared/gcp/task_authenticator — see the header.
 */
#include "shared/gcp/task_authenticator.h"

#include <stdlib.h>
#include <string.h>

#include "shared/gcp/oidc_verifier.h"
#include "utils/ct_compare.h"

#define MAX_ISSUERS 8

/* A check waiting for a JWKS refresh.  The token is not copied: it stays in the
 * exchange's Authorization header, valid until done() is called. */
struct pending_auth {
    struct task_authenticator *ta;
    struct http_exchange *ex;
    http_auth_done done;
    const char *token;
    size_t len;
};

static void fail(struct task_authenticator *ta, struct http_exchange *ex, http_auth_done done, const char *check)
{
    const char *task = http_exchange_header(ex, "x-cloudtasks-taskname");
    const char *queue = http_exchange_header(ex, "x-cloudtasks-queuename");
    const char *retry = http_exchange_header(ex, "x-cloudtasks-taskretrycount");
    struct log_ctx ctx = {.request_id = http_exchange_request_id(ex), .task_name = task};
    LOG_KV(ta->log, LOG_LEVEL_WARN, &ctx,
           ((const char *[]){"check", check, "path", http_exchange_path(ex), "queue", queue ? queue : "",
                             "retry_count", retry ? retry : "", NULL}),
           "callback authentication failed");
    if (ta->on_failure != NULL) ta->on_failure(ta->observer_arg, check);
    done(ex, 0, check);
}

static enum oidc_status verify(struct task_authenticator *ta, const char *token, size_t len, struct oidc_claims *claims)
{
    const struct config *c = ta->cfg;
    const char *issuers[MAX_ISSUERS];
    size_t n = 0;
    for (int i = 0; i < c->auth_issuers.n && n < MAX_ISSUERS; i++) issuers[n++] = c->auth_issuers.items[i];
    struct oidc_policy p;
    oidc_policy_defaults(&p);
    p.audience = c->auth_audience;
    p.service_account = c->auth_service_account;
    p.issuers = issuers;
    p.n_issuers = n;
    p.clock_skew_s = c->auth_clock_skew_s;
    return oidc_verify(jwks_cache_keys(ta->jwks), &p, token, len, ta->now_s(ta->clock), claims);
}

static void finish_oidc(struct task_authenticator *ta, struct http_exchange *ex, http_auth_done done,
                        enum oidc_status st)
{
    if (st == OIDC_OK) done(ex, 1, NULL);
    else fail(ta, ex, done, oidc_status_name(st));
}

/* The JWKS cache answered for the token's kid: verify once more against the
 * current keys.  A kid still unknown because no fresh key set could be fetched
 * in time is logged as "jwks_unavailable", not as a forged "kid". */
static void on_kid_answer(void *arg, enum jwks_kid_result result)
{
    struct pending_auth *pa = arg;
    struct oidc_claims claims;
    enum oidc_status st = verify(pa->ta, pa->token, pa->len, &claims);
    if (st == OIDC_ERR_UNKNOWN_KID && result == JWKS_KID_UNCHECKED) fail(pa->ta, pa->ex, pa->done, "jwks_unavailable");
    else finish_oidc(pa->ta, pa->ex, pa->done, st);
    free(pa);
}

static void authenticate_oidc(struct task_authenticator *ta, struct http_exchange *ex, http_auth_done done)
{
    if (http_exchange_header_count(ex, "authorization") != 1) {
        fail(ta, ex, done, "authorization_header");
        return;
    }
    const char *token;
    size_t len;
    if (oidc_extract_bearer(http_exchange_header(ex, "authorization"), &token, &len) != 0) {
        fail(ta, ex, done, "bearer");
        return;
    }
    struct oidc_claims claims;
    enum oidc_status st = verify(ta, token, len, &claims);
    if (st != OIDC_ERR_UNKNOWN_KID || claims.kid[0] == '\0') {
        finish_oidc(ta, ex, done, st);
        return;
    }
    struct pending_auth *pa = malloc(sizeof(*pa));
    if (pa == NULL) {
        fail(ta, ex, done, "internal");
        return;
    }
    *pa = (struct pending_auth){.ta = ta, .ex = ex, .done = done, .token = token, .len = len};
    if (jwks_cache_refresh_for_kid(ta->jwks, claims.kid, on_kid_answer, pa) != 0) {
        free(pa);
        finish_oidc(ta, ex, done, st);
    }
}

static void authenticate_secret(struct task_authenticator *ta, struct http_exchange *ex, http_auth_done done)
{
    const char *secret = ta->cfg->auth_shared_secret;
    if (http_exchange_header_count(ex, "x-cloudtasks-secret") != 1 || secret == NULL) {
        fail(ta, ex, done, "secret_header");
        return;
    }
    const char *presented = http_exchange_header(ex, "x-cloudtasks-secret");
    if (!ct_equals(presented, strlen(presented), secret, strlen(secret))) {
        fail(ta, ex, done, "secret");
        return;
    }
    done(ex, 1, NULL);
}

void task_authenticator_authenticate(void *auth_ctx, struct http_exchange *ex, http_auth_done done)
{
    struct task_authenticator *ta = auth_ctx;
    if (ta->cfg->auth_mode == AUTH_SHARED_SECRET) authenticate_secret(ta, ex, done);
    else authenticate_oidc(ta, ex, done);
}
