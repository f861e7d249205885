/* Unit tests for shared/gcp/google_auth: key-file JWT flow, metadata flow, caching, single
 * refresh, invalidation, failures and shutdown, against the loopback test server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ec.h>

#include "shared/gcp/google_auth.h"
#include "support/curl_test_keys.h"
#include "support/curl_test_server.h"

#define WAIT_MS 5000
#define T0_MS 1795881600000LL /* 2026-11-28T16:00:00Z */
#define EMAIL "followupd@test-project.iam.gserviceaccount.com"

enum token_mode { REPLY_OK, REPLY_400, REPLY_NO_TOKEN, REPLY_BAD_TOKEN_CHARS, REPLY_HANG };

struct endpoint {
    EVP_PKEY *key;
    enum token_mode mode;
    int issued;                 /* tokens handed out */
    int jwt_failures;           /* token requests whose JWT/form did not verify */
    char token_uri[256];
    json_t *last_claims;
    json_t *last_header;
};

struct suite {
    EVP_PKEY *key;
    char *dir;
};

struct fixture {
    uv_loop_t loop;
    struct logger log;
    char log_path[256];
    struct cts_server *srv;
    struct http_client *http;
    struct google_auth *auth;
    struct endpoint ep;
    int64_t now_ms;
    int http_closed;
};

struct got {
    int calls;
    char token[128];
    char err[256];
};

/* ---- fake token endpoint / metadata server ---- */

static const char *form_value(const char *body, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    for (const char *p = body; p != NULL && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
            const char *v = p + klen + 1;
            size_t o = 0;
            for (; *v && *v != '&' && o + 1 < outlen; v++) {
                if (*v == '%' && v[1] && v[2]) {
                    char hex[3] = {v[1], v[2], 0};
                    out[o++] = (char)strtol(hex, NULL, 16);
                    v += 2;
                } else {
                    out[o++] = *v == '+' ? ' ' : *v;
                }
            }
            out[o] = '\0';
            return out;
        }
    }
    return NULL;
}

static bool token_request_is_valid(struct endpoint *ep, const struct cts_request *req)
{
    char grant[128], assertion[4096];
    const char *ctype = cts_header(req, "Content-Type");
    if (strcmp(req->method, "POST") != 0 || ctype == NULL ||
        strcmp(ctype, "application/x-www-form-urlencoded") != 0)
        return false;
    if (!form_value(req->body, "grant_type", grant, sizeof(grant)) ||
        strcmp(grant, "urn:ietf:params:oauth:grant-type:jwt-bearer") != 0)
        return false;
    if (!form_value(req->body, "assertion", assertion, sizeof(assertion))) return false;
    json_t *header, *claims;
    if (ctk_verify_jwt(ep->key, assertion, &header, &claims) != 0) return false;
    json_decref(ep->last_header);
    json_decref(ep->last_claims);
    ep->last_header = header;
    ep->last_claims = claims;
    return true;
}

static void token_endpoint(void *arg, const struct cts_request *req, struct cts_reply *rep)
{
    struct endpoint *ep = arg;
    static char body[256];
    bool metadata = strncmp(req->target, "/computeMetadata/", 17) == 0;
    if (!metadata && !token_request_is_valid(ep, req)) {
        ep->jwt_failures++;
        rep->status = 400;
        rep->body = "{\"error\":\"invalid_grant\",\"error_description\":\"bad assertion\"}";
        return;
    }
    switch (ep->mode) {
    case REPLY_OK:
        ep->issued++;
        snprintf(body, sizeof(body),
                 "{\"access_token\":\"ya29.test-token-%d\",\"expires_in\":3600,\"token_type\":\"Bearer\"}",
                 ep->issued);
        rep->body = body;
        break;
    case REPLY_400:
        rep->status = 400;
        rep->body = "{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT Signature.\"}";
        break;
    case REPLY_NO_TOKEN:
        rep->body = "{\"expires_in\":3600,\"token_type\":\"Bearer\"}";
        break;
    case REPLY_BAD_TOKEN_CHARS:
        rep->body = "{\"access_token\":\"ya29 x\\r\\nEvil: 1\",\"expires_in\":3600}";
        break;
    case REPLY_HANG:
        rep->hang = true;
        break;
    }
}

/* ---- fixture ---- */

static int64_t fake_now(void *arg)
{
    return *(int64_t *)arg;
}

static void on_token(void *arg, const char *token, const char *err)
{
    struct got *g = arg;
    g->calls++;
    snprintf(g->token, sizeof(g->token), "%s", token ? token : "");
    snprintf(g->err, sizeof(g->err), "%s", err ? err : "");
}

static int suite_setup(void **state)
{
    struct suite *s = calloc(1, sizeof(*s));
    s->key = ctk_generate_rsa();
    s->dir = ctk_make_tempdir();
    if (s->key == NULL || s->dir == NULL) return -1;
    *state = s;
    return 0;
}

static int suite_teardown(void **state)
{
    struct suite *s = *state;
    ctk_remove_dir(s->dir);
    free(s->dir);
    EVP_PKEY_free(s->key);
    free(s);
    return 0;
}

/* credentials: NULL → a fresh key file pointing at the test server; "metadata" → metadata mode. */
static void fixture_start(struct fixture *fx, struct suite *s, const char *mode)
{
    memset(fx, 0, sizeof(*fx));
    fx->now_ms = T0_MS;
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    snprintf(fx->log_path, sizeof(fx->log_path), "%s/log-XXXXXX", s->dir);
    int fd = mkstemp(fx->log_path);
    assert_true(fd >= 0);
    logger_init(&fx->log, LOG_LEVEL_DEBUG, fd);
    fx->ep.key = s->key;
    fx->srv = cts_start(&fx->loop, token_endpoint, &fx->ep);
    assert_non_null(fx->srv);
    snprintf(fx->ep.token_uri, sizeof(fx->ep.token_uri), "%s/token", cts_url(fx->srv));
    fx->http = http_client_new(&fx->loop, &fx->log, 8);
    assert_non_null(fx->http);
    char *keyfile = NULL;
    if (mode == NULL) {
        keyfile = ctk_write_keyfile(s->dir, "key.json", s->key, EMAIL, fx->ep.token_uri, "kid-123");
        assert_non_null(keyfile);
    }
    struct google_auth_opts opts = {.credentials = keyfile ? keyfile : mode,
                                    .metadata_url = cts_url(fx->srv), .timeout_ms = 2000,
                                    .now_ms = fake_now, .now_arg = &fx->now_ms};
    fx->auth = google_auth_new(&fx->loop, &fx->log, fx->http, &opts);
    assert_non_null(fx->auth);
    free(keyfile);
    char err[256] = "";
    assert_int_equal(google_auth_load(fx->auth, err, sizeof(err)), 0);
}

static void on_http_closed(void *arg)
{
    ((struct fixture *)arg)->http_closed++;
}

/* Returns everything the logger wrote. */
static char *fixture_finish(struct fixture *fx)
{
    google_auth_free(fx->auth);
    http_client_close(fx->http, on_http_closed, fx);
    cts_close(fx->srv);
    assert_int_equal(cts_finish_loop(&fx->loop, WAIT_MS), 0);
    assert_int_equal(fx->http_closed, 1);
    json_decref(fx->ep.last_claims);
    json_decref(fx->ep.last_header);
    char *text = calloc(1, 1 << 16);
    assert_int_equal(lseek(fx->log.fd, 0, SEEK_SET), 0);
    assert_true(read(fx->log.fd, text, (1 << 16) - 1) >= 0);
    close(fx->log.fd);
    unlink(fx->log_path);
    logger_free(&fx->log);
    return text;
}

static void fixture_finish_quiet(struct fixture *fx)
{
    free(fixture_finish(fx));
}

struct count_wait {
    int *value;
    int want;
};

static bool count_reached(void *arg)
{
    struct count_wait *w = arg;
    return *w->value >= w->want;
}

static bool server_has_request(void *arg)
{
    return cts_count(arg) > 0;
}

static void wait_calls(struct fixture *fx, int *counter, int want)
{
    struct count_wait w = {counter, want};
    assert_true(cts_run_until(&fx->loop, count_reached, &w, WAIT_MS));
}

/* ---- tests ---- */

static void google_auth_load__invalid_key_files__rejected_with_reason(void **state)
{
    struct suite *s = *state;
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    assert_non_null(ec);
    struct {
        char *path;
        const char *want;
    } cases[] = {
        {ctk_write_keyfile(s->dir, "no-email.json", s->key, NULL, "https://x/token", NULL), "client_email"},
        {ctk_write_keyfile(s->dir, "no-uri.json", s->key, EMAIL, NULL, NULL), "token_uri"},
        {ctk_write_keyfile(s->dir, "no-key.json", NULL, EMAIL, "https://x/token", NULL), "private_key"},
        {ctk_write_keyfile(s->dir, "ec.json", ec, EMAIL, "https://x/token", NULL), "RSA"},
        {ctk_write_keyfile(s->dir, "ftp.json", s->key, EMAIL, "ftp://x/token", NULL), "token_uri"},
        {ctk_write_text(s->dir, "user.json", "{\"type\":\"authorized_user\"}"), "service_account"},
        {ctk_write_text(s->dir, "garbage.json", "not json"), "not a JSON object"},
        {ctk_write_text(s->dir, "pem.json",
                        "{\"client_email\":\"a@b\",\"token_uri\":\"https://x\",\"private_key\":\"-----BEGIN "
                        "PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\\n\"}"),
         "private_key"},
        {strdup("/nonexistent/key.json"), "cannot open"},
    };
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct http_client *http = http_client_new(&loop, NULL, 1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct google_auth_opts opts = {.credentials = cases[i].path};
        struct google_auth *a = google_auth_new(&loop, NULL, http, &opts);
        assert_non_null(a);
        char err[256] = "";
        assert_int_equal(google_auth_load(a, err, sizeof(err)), -1);
        if (strstr(err, cases[i].want) == NULL) fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err, cases[i].want);
        struct got g = {0};
        assert_int_equal(google_auth_get_token(a, on_token, &g), -1); /* not loaded */
        google_auth_free(a);
        free(cases[i].path);
    }
    EVP_PKEY_free(ec);
    http_client_close(http, NULL, NULL);
    assert_int_equal(cts_finish_loop(&loop, WAIT_MS), 0);
}

static void google_auth_get_token__key_file__posts_signed_jwt_and_returns_token(void **state)
{
    struct fixture fx;
    fixture_start(&fx, *state, NULL);
    assert_string_equal(google_auth_identity(fx.auth), "service_account:" EMAIL);
    struct got g = {0};
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &g), 0);
    assert_int_equal(g.calls, 0);
    wait_calls(&fx, &g.calls, 1);
    assert_string_equal(g.token, "ya29.test-token-1");
    assert_string_equal(g.err, "");
    assert_int_equal(fx.ep.jwt_failures, 0);
    const struct cts_request *req = cts_request_at(fx.srv, 0);
    assert_string_equal(req->target, "/token");
    json_t *h = fx.ep.last_header, *c = fx.ep.last_claims;
    assert_string_equal(json_string_value(json_object_get(h, "alg")), "RS256");
    assert_string_equal(json_string_value(json_object_get(h, "typ")), "JWT");
    assert_string_equal(json_string_value(json_object_get(h, "kid")), "kid-123");
    assert_string_equal(json_string_value(json_object_get(c, "iss")), EMAIL);
    assert_string_equal(json_string_value(json_object_get(c, "scope")),
                        "https://www.googleapis.com/auth/cloud-platform");
    assert_string_equal(json_string_value(json_object_get(c, "aud")), fx.ep.token_uri);
    assert_int_equal(json_integer_value(json_object_get(c, "iat")), T0_MS / 1000);
    assert_int_equal(json_integer_value(json_object_get(c, "exp")), T0_MS / 1000 + 3600);
    assert_int_equal(json_object_size(c), 5);
    fixture_finish_quiet(&fx);
}

static void google_auth_get_token__cached__second_call_makes_no_request(void **state)
{
    struct fixture fx;
    fixture_start(&fx, *state, NULL);
    struct got a = {0}, b = {0};
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &a), 0);
    wait_calls(&fx, &a.calls, 1);
    fx.now_ms += 60 * 1000;
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &b), 0);
    assert_int_equal(b.calls, 0); /* even a cache hit is delivered from the loop */
    wait_calls(&fx, &b.calls, 1);
    assert_string_equal(b.token, "ya29.test-token-1");
    assert_int_equal(cts_count(fx.srv), 1);
    fixture_finish_quiet(&fx);
}

static void google_auth_get_token__clock_reaches_refresh_margin__refreshes(void **state)
{
    struct fixture fx;
    fixture_start(&fx, *state, NULL);
    struct got a = {0}, b = {0}, c = {0};
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &a), 0);
    wait_calls(&fx, &a.calls, 1);
    /* 1 ms before "5 minutes before expiry": still cached */
    fx.now_ms = T0_MS + (3600 - 300) * 1000LL - 1;
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &b), 0);
    wait_calls(&fx, &b.calls, 1);
    assert_string_equal(b.token, "ya29.test-token-1");
    assert_int_equal(cts_count(fx.srv), 1);
    /* at the margin: refreshed with a JWT issued at the new time */
    fx.now_ms += 1;
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &c), 0);
    wait_calls(&fx, &c.calls, 1);
    assert_string_equal(c.token, "ya29.test-token-2");
    assert_int_equal(cts_count(fx.srv), 2);
    assert_int_equal(json_integer_value(json_object_get(fx.ep.last_claims, "iat")),
                     fx.now_ms / 1000);
    fixture_finish_quiet(&fx);
}

static void google_auth_get_token__five_concurrent_callers__one_refresh(void **state)
{
    struct fixture fx;
    fixture_start(&fx, *state, NULL);
    struct got g[5];
    memset(g, 0, sizeof(g));
    for (int i = 0; i < 5; i++) assert_int_equal(google_auth_get_token(fx.auth, on_token, &g[i]), 0);
    wait_calls(&fx, &g[4].calls, 1);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(g[i].calls, 1);
        assert_string_equal(g[i].token, "ya29.test-token-1");
    }
    assert_int_equal(cts_count(fx.srv), 1);
    fixture_finish_quiet(&fx);
}

static void google_auth_get_token__endpoint_rejects__all_waiters_fail_then_next_call_retries(void **state)
{
    struct fixture fx;
    fixture_start(&fx, *state, NULL);
    fx.ep.mode = REPLY_400;
    struct got a = {0}, b = {0}, c = {0};
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &a), 0);
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &b), 0);
    wait_calls(&fx, &b.calls, 1);
    assert_int_equal(a.calls, 1);
    assert_string_equal(a.token, "");
    assert_string_equal(a.err, "token endpoint: HTTP 400 (invalid_grant)");
    assert_string_equal(b.err, a.err);
    assert_int_equal(cts_count(fx.srv), 1);
    fx.ep.mode = REPLY_OK;
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &c), 0);
    wait_calls(&fx, &c.calls, 1);
    assert_string_equal(c.token, "ya29.test-token-1");
    assert_int_equal(cts_count(fx.srv), 2);
    fixture_finish_quiet(&fx);
}

static void google_auth_get_token__malformed_replies__fail(void **state)
{
    const enum token_mode modes[] = {REPLY_NO_TOKEN, REPLY_BAD_TOKEN_CHARS};
    for (size_t i = 0; i < 2; i++) {
        struct fixture fx;
        fixture_start(&fx, *state, NULL);
        fx.ep.mode = modes[i];
        struct got g = {0};
        assert_int_equal(google_auth_get_token(fx.auth, on_token, &g), 0);
        wait_calls(&fx, &g.calls, 1);
        assert_string_equal(g.token, "");
        assert_string_equal(g.err, "token endpoint: malformed token response");
        fixture_finish_quiet(&fx);
    }
}

static void google_auth_invalidate__after_401__next_get_refreshes(void **state)
{
    struct fixture fx;
    fixture_start(&fx, *state, NULL);
    struct got a = {0}, b = {0};
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &a), 0);
    wait_calls(&fx, &a.calls, 1);
    google_auth_invalidate(fx.auth);
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &b), 0);
    wait_calls(&fx, &b.calls, 1);
    assert_string_equal(b.token, "ya29.test-token-2");
    assert_int_equal(cts_count(fx.srv), 2);
    fixture_finish_quiet(&fx);
}

static void google_auth_get_token__metadata_mode__get_with_flavor_header(void **state)
{
    struct fixture fx;
    fixture_start(&fx, *state, "metadata");
    assert_string_equal(google_auth_identity(fx.auth), "metadata");
    struct got g = {0};
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &g), 0);
    wait_calls(&fx, &g.calls, 1);
    assert_string_equal(g.token, "ya29.test-token-1");
    const struct cts_request *req = cts_request_at(fx.srv, 0);
    assert_string_equal(req->method, "GET");
    assert_string_equal(req->target, "/computeMetadata/v1/instance/service-accounts/default/token");
    assert_string_equal(cts_header(req, "Metadata-Flavor"), "Google");
    fixture_finish_quiet(&fx);
}

static void google_auth_free__refresh_in_flight__no_callback_and_clean_loop(void **state)
{
    struct fixture fx;
    fixture_start(&fx, *state, NULL);
    fx.ep.mode = REPLY_HANG;
    struct got g = {0};
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &g), 0);
    assert_true(cts_run_until(&fx.loop, server_has_request, fx.srv, WAIT_MS));
    fixture_finish_quiet(&fx); /* frees auth first, then aborts the HTTP request */
    assert_int_equal(g.calls, 0);
}

static void google_auth_cancel__waiting_caller__not_called(void **state)
{
    struct fixture fx;
    fixture_start(&fx, *state, NULL);
    struct got a = {0}, b = {0};
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &a), 0);
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &b), 0);
    google_auth_cancel(fx.auth, on_token, &a);
    wait_calls(&fx, &b.calls, 1);
    assert_string_equal(b.token, "ya29.test-token-1");
    /* and a cached delivery can be withdrawn too */
    struct got c = {0}, d = {0};
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &c), 0);
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &d), 0);
    google_auth_cancel(fx.auth, on_token, &c);
    wait_calls(&fx, &d.calls, 1);
    assert_int_equal(a.calls, 0);
    assert_int_equal(c.calls, 0);
    fixture_finish_quiet(&fx);
}

struct freeing_waiter {
    struct got got;
    struct google_auth **auth;
};

static void free_auth_on_token(void *arg, const char *token, const char *err)
{
    struct freeing_waiter *fw = arg;
    on_token(&fw->got, token, err);
    google_auth_free(*fw->auth);
    *fw->auth = NULL;
}

static void google_auth_free__from_inside_a_callback__remaining_waiters_dropped(void **state)
{
    struct fixture fx;
    fixture_start(&fx, *state, NULL);
    struct freeing_waiter first = {.auth = &fx.auth};
    struct got rest[3];
    memset(rest, 0, sizeof(rest));
    assert_int_equal(google_auth_get_token(fx.auth, free_auth_on_token, &first), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(google_auth_get_token(fx.auth, on_token, &rest[i]), 0);
    wait_calls(&fx, &first.got.calls, 1);
    assert_null(fx.auth);
    assert_string_equal(first.got.token, "ya29.test-token-1");
    fixture_finish_quiet(&fx); /* google_auth_free(NULL) is a no-op */
    for (int i = 0; i < 3; i++) assert_int_equal(rest[i].calls, 0);
}

static void google_auth__debug_logging__never_writes_token_or_key(void **state)
{
    struct fixture fx;
    fixture_start(&fx, *state, NULL);
    struct got a = {0}, b = {0};
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &a), 0);
    wait_calls(&fx, &a.calls, 1);
    google_auth_invalidate(fx.auth);
    fx.ep.mode = REPLY_400;
    assert_int_equal(google_auth_get_token(fx.auth, on_token, &b), 0);
    wait_calls(&fx, &b.calls, 1);
    char *logged = fixture_finish(&fx);
    assert_non_null(strstr(logged, "access token refreshed"));   /* logging did happen */
    assert_non_null(strstr(logged, "access token refresh failed"));
    assert_null(strstr(logged, "ya29"));
    assert_null(strstr(logged, "PRIVATE KEY"));
    assert_null(strstr(logged, "assertion"));
    assert_null(strstr(logged, "eyJ")); /* no JWT segment */
    free(logged);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(google_auth_load__invalid_key_files__rejected_with_reason),
        cmocka_unit_test(google_auth_get_token__key_file__posts_signed_jwt_and_returns_token),
        cmocka_unit_test(google_auth_get_token__cached__second_call_makes_no_request),
        cmocka_unit_test(google_auth_get_token__clock_reaches_refresh_margin__refreshes),
        cmocka_unit_test(google_auth_get_token__five_concurrent_callers__one_refresh),
        cmocka_unit_test(google_auth_get_token__endpoint_rejects__all_waiters_fail_then_next_call_retries),
        cmocka_unit_test(google_auth_get_token__malformed_replies__fail),
        cmocka_unit_test(google_auth_invalidate__after_401__next_get_refreshes),
        cmocka_unit_test(google_auth_get_token__metadata_mode__get_with_flavor_header),
        cmocka_unit_test(google_auth_free__refresh_in_flight__no_callback_and_clean_loop),
        cmocka_unit_test(google_auth_cancel__waiting_caller__not_called),
        cmocka_unit_test(google_auth_free__from_inside_a_callback__remaining_waiters_dropped),
        cmocka_unit_test(google_auth__debug_logging__never_writes_token_or_key),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
