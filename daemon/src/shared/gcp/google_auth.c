/*
 * shared/gcp/google_auth — access-token cache and refresh (see google_auth.h).
 *
 * State: the cached token with the times it must be refreshed / expires,
 * three waiter lists and at most one `struct token_fetch` in flight.
 *   - `waiting`: callers that need the refresh in flight;
 *   - `ready`: callers served from the cache, delivered by a zero-delay timer
 *     (so callbacks are never synchronous) with their own copy of the token;
 *   - `delivering`: the batch whose callbacks are running right now.
 * Callbacks may re-enter (get_token, cancel, invalidate, even free): delivery
 * pops one waiter at a time from the struct; google_auth_free() called from a
 * callback releases everything but the struct itself, which the delivery loop
 * frees once it has unwound (delivery_depth back to 0).
 *
 * A fetch belongs to the auth object until google_auth_free() detaches it
 * (fetch->auth = NULL); the HTTP callback then only frees the fetch.
 */
#include "shared/gcp/google_auth.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "utils/base64.h"
#include "utils/timefmt.h"

#define KEY_FILE_MAX_BYTES (64 * 1024)
#define JWT_LIFETIME_S 3600
#define ACCESS_TOKEN_MAX_LEN 4096
#define METADATA_TOKEN_PATH "/computeMetadata/v1/instance/service-accounts/default/token"
#define GRANT_TYPE_FORM "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="

enum auth_mode { AUTH_MODE_KEY_FILE, AUTH_MODE_METADATA };

struct waiter {
    struct waiter *next;
    google_token_cb cb;
    void *arg;
    char *token;        /* ready list: copy of the token to hand out */
};

struct waiter_list {
    struct waiter *head, *tail;
};

struct token_fetch {
    struct google_auth *auth;   /* NULL once detached by google_auth_free() */
    int64_t started_ms;
};

struct google_auth {
    uv_loop_t *loop;
    struct logger *lg;
    struct http_client *http;
    enum auth_mode mode;
    char *key_path;
    char *metadata_url;
    long timeout_ms;
    int64_t (*now_ms)(void *arg);
    void *now_arg;
    /* key file */
    bool loaded;
    char *client_email;
    char *private_key_id;
    char *token_uri;
    EVP_PKEY *pkey;
    char *identity;
    /* cache */
    char *token;
    int64_t refresh_at_ms;
    struct token_fetch *fetch;
    struct waiter_list waiting, ready, delivering;
    uv_timer_t *kick;
    int delivery_depth;
    bool free_requested;
};

/* ---- small helpers -------------------------------------------------------------------------- */

static int64_t real_now_ms(void *arg)
{
    (void)arg;
    return timefmt_now_ms();
}

static int64_t auth_now(const struct google_auth *a)
{
    return a->now_ms(a->now_arg);
}

static void free_secret(char *s)
{
    if (s == NULL) return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

static void list_append(struct waiter_list *l, struct waiter *w)
{
    w->next = NULL;
    if (l->tail != NULL) l->tail->next = w;
    else l->head = w;
    l->tail = w;
}

static struct waiter *list_take(struct waiter_list *l)
{
    struct waiter *w = l->head;
    if (w == NULL) return NULL;
    l->head = w->next;
    if (l->head == NULL) l->tail = NULL;
    w->next = NULL;
    return w;
}

/* Move all of src to the end of dst. */
static void list_splice(struct waiter_list *dst, struct waiter_list *src)
{
    if (src->head == NULL) return;
    if (dst->tail != NULL) dst->tail->next = src->head;
    else dst->head = src->head;
    dst->tail = src->tail;
    src->head = src->tail = NULL;
}

static void waiter_free(struct waiter *w)
{
    free_secret(w->token);
    free(w);
}

static void list_clear(struct waiter_list *l)
{
    struct waiter *w;
    while ((w = list_take(l)) != NULL) waiter_free(w);
}

static int list_remove_matching(struct waiter_list *l, google_token_cb cb, void *arg)
{
    int removed = 0;
    struct waiter *prev = NULL, *w = l->head;
    while (w != NULL) {
        struct waiter *next = w->next;
        if (w->cb == cb && w->arg == arg) {
            if (prev != NULL) prev->next = next;
            else l->head = next;
            if (l->tail == w) l->tail = prev;
            waiter_free(w);
            removed++;
        } else {
            prev = w;
        }
        w = next;
    }
    return removed;
}

static bool token_is_fresh(const struct google_auth *a)
{
    return a->token != NULL && auth_now(a) < a->refresh_at_ms;
}

/* ---- delivery ------------------------------------------------------------------------------- */

/* Run the callbacks of everything in `delivering`; stops early, and finishes
 * the release, when a callback freed `a`. */
static void deliver_batch(struct google_auth *a, const char *err)
{
    struct waiter *w;
    a->delivery_depth++;
    while (!a->free_requested && (w = list_take(&a->delivering)) != NULL) {
        const char *token = w->token;
        w->cb(w->arg, token, token != NULL ? NULL : (err != NULL ? err : "no access token"));
        waiter_free(w);
    }
    a->delivery_depth--;
    if (a->free_requested && a->delivery_depth == 0) free(a);
}

static void on_kick(uv_timer_t *t)
{
    struct google_auth *a = t->data;
    list_splice(&a->delivering, &a->ready);
    deliver_batch(a, NULL);
}

static void on_kick_closed(uv_handle_t *h)
{
    free(h);
}

/* Give every waiting caller a copy of the token (or the error) and call them. */
static void complete_waiters(struct google_auth *a, const char *token, const char *err)
{
    for (struct waiter *w = a->waiting.head; w != NULL; w = w->next) {
        if (token != NULL) w->token = strdup(token); /* NULL copy → reported as failure */
    }
    list_splice(&a->delivering, &a->waiting);
    deliver_batch(a, err != NULL ? err : "out of memory");
}

/* ---- key file ------------------------------------------------------------------------------- */

static char *read_small_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open credentials file %s", path);
        return NULL;
    }
    char *buf = malloc(KEY_FILE_MAX_BYTES + 1);
    size_t n = buf != NULL ? fread(buf, 1, KEY_FILE_MAX_BYTES + 1, f) : 0;
    bool too_big = n > KEY_FILE_MAX_BYTES;
    bool read_error = ferror(f) != 0;
    fclose(f);
    if (buf == NULL || too_big || read_error) {
        snprintf(err, errlen, "cannot read credentials file %s%s", path,
                 too_big ? " (larger than 64 KiB)" : "");
        if (buf != NULL) OPENSSL_cleanse(buf, n > KEY_FILE_MAX_BYTES ? KEY_FILE_MAX_BYTES : n);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* Overwrite jansson's own copy of a secret string before the document is released. */
static void cleanse_json_string(json_t *v)
{
    if (json_is_string(v)) OPENSSL_cleanse((void *)(uintptr_t)json_string_value(v), json_string_length(v));
}

static const char *json_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

static bool is_http_url(const char *url)
{
    return url != NULL && (strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0) &&
           strpbrk(url, " \t\r\n") == NULL;
}

static EVP_PKEY *parse_rsa_key(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (bio == NULL) return NULL;
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (pkey != NULL && (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA || EVP_PKEY_get_bits(pkey) < 2048)) {
        EVP_PKEY_free(pkey);
        return NULL;
    }
    return pkey;
}

static int load_key_json(struct google_auth *a, json_t *root, char *err, size_t errlen)
{
    const char *type = json_str(root, "type");
    const char *email = json_str(root, "client_email");
    const char *pem = json_str(root, "private_key");
    const char *uri = json_str(root, "token_uri");
    const char *kid = json_str(root, "private_key_id");
    if (type != NULL && strcmp(type, "service_account") != 0) {
        snprintf(err, errlen, "credentials file: type is not \"service_account\""); /* no byte of the file is quoted */
        return -1;
    }
    if (email == NULL || pem == NULL || uri == NULL) {
        snprintf(err, errlen, "credentials file: missing %s",
                 email == NULL ? "client_email" : pem == NULL ? "private_key" : "token_uri");
        return -1;
    }
    if (!is_http_url(uri)) {
        snprintf(err, errlen, "credentials file: token_uri is not an http(s) URL");
        return -1;
    }
    EVP_PKEY *pkey = parse_rsa_key(pem);
    if (pkey == NULL) {
        snprintf(err, errlen, "credentials file: private_key is not a PEM RSA key of >= 2048 bits");
        return -1;
    }
    char *identity = NULL;
    if (asprintf(&identity, "service_account:%s", email) < 0) identity = NULL;
    a->client_email = strdup(email);
    a->token_uri = strdup(uri);
    a->private_key_id = kid != NULL ? strdup(kid) : NULL;
    a->identity = identity;
    a->pkey = pkey;
    if (a->client_email == NULL || a->token_uri == NULL || identity == NULL ||
        (kid != NULL && a->private_key_id == NULL)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int load_key_file(struct google_auth *a, char *err, size_t errlen)
{
    struct stat st;
    if (stat(a->key_path, &st) == 0 && (st.st_mode & S_IROTH))
        LOG_KV(a->lg, LOG_LEVEL_WARN, NULL, ((const char *[]){"path", a->key_path, NULL}),
               "credentials file is world-readable");
    char *text = read_small_file(a->key_path, err, errlen);
    if (text == NULL) return -1;
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    if (!json_is_object(root)) {
        snprintf(err, errlen, "credentials file %s is not a JSON object", a->key_path);
        json_decref(root);
        return -1;
    }
    int rc = load_key_json(a, root, err, errlen);
    cleanse_json_string(json_object_get(root, "private_key"));
    json_decref(root);
    return rc;
}

/* ---- JWT assertion -------------------------------------------------------------------------- */

static char *json_b64url(json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT);
    if (text == NULL) return NULL;
    char *enc = base64url_encode(text, strlen(text));
    free(text);
    return enc;
}

static char *sign_rs256(EVP_PKEY *pkey, const char *data)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *sig = NULL;
    size_t siglen = 0;
    char *out = NULL;
    if (ctx == NULL) return NULL;
    if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) != 1) goto done;
    if (EVP_DigestSign(ctx, NULL, &siglen, (const unsigned char *)data, strlen(data)) != 1) goto done;
    sig = malloc(siglen);
    if (sig == NULL) goto done;
    if (EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)data, strlen(data)) != 1) goto done;
    out = base64url_encode(sig, siglen);
done:
    free(sig);
    EVP_MD_CTX_free(ctx);
    return out;
}

static char *build_assertion(const struct google_auth *a, int64_t now_s)
{
    char *result = NULL, *h64 = NULL, *c64 = NULL, *signing = NULL, *sig = NULL;
    json_t *header = json_pack("{s:s, s:s}", "alg", "RS256", "typ", "JWT");
    json_t *claims = json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", a->client_email, "scope",
                               GOOGLE_AUTH_SCOPE, "aud", a->token_uri, "iat", (json_int_t)now_s,
                               "exp", (json_int_t)(now_s + JWT_LIFETIME_S));
    if (header == NULL || claims == NULL) goto done;
    if (a->private_key_id != NULL &&
        json_object_set_new(header, "kid", json_string(a->private_key_id)) != 0)
        goto done;
    h64 = json_b64url(header);
    c64 = json_b64url(claims);
    if (h64 == NULL || c64 == NULL || asprintf(&signing, "%s.%s", h64, c64) < 0) {
        signing = NULL;
        goto done;
    }
    sig = sign_rs256(a->pkey, signing);
    if (sig == NULL || asprintf(&result, "%s.%s", signing, sig) < 0) result = NULL;
done:
    json_decref(header);
    json_decref(claims);
    free(h64);
    free(c64);
    free(signing);
    free(sig);
    return result;
}

/* ---- token fetch ---------------------------------------------------------------------------- */

static bool is_token_text(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++)
        if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f) return false;
    return n > 0 && n <= ACCESS_TOKEN_MAX_LEN;
}

char *google_auth_parse_token_reply(long http_status, const char *body, size_t len, int64_t *expires_in_s,
                                    char *err, size_t errlen)
{
    json_t *root = body != NULL ? json_loadb(body, len, 0, NULL) : NULL;
    char *token = NULL;
    if (http_status < 200 || http_status > 299) {
        const char *code = json_is_object(root) ? json_str(root, "error") : NULL;
        snprintf(err, errlen, "token endpoint: HTTP %ld%s%s%s", http_status, code ? " (" : "",
                 code ? code : "", code ? ")" : "");
        goto done;
    }
    json_t *tok = json_object_get(root, "access_token");
    json_t *exp = json_object_get(root, "expires_in");
    json_t *type = json_object_get(root, "token_type"); /* optional; when present exactly "Bearer" (any case) */
    if (!json_is_string(tok) || !is_token_text(json_string_value(tok)) || !json_is_integer(exp) ||
        json_integer_value(exp) <= 0 ||
        (type != NULL && (!json_is_string(type) || strcasecmp(json_string_value(type), "Bearer") != 0))) {
        snprintf(err, errlen, "token endpoint: malformed token response");
        goto done;
    }
    token = strdup(json_string_value(tok));
    if (token == NULL) snprintf(err, errlen, "out of memory");
    *expires_in_s = json_integer_value(exp);
    cleanse_json_string(tok);
done:
    json_decref(root);
    return token;
}

static void on_token_reply(void *arg, const struct http_response *r)
{
    struct token_fetch *f = arg;
    struct google_auth *a = f->auth;
    if (a == NULL) { /* auth object freed while the request was in flight */
        free(f);
        return;
    }
    a->fetch = NULL;
    char err[256] = "";
    int64_t expires_in_s = 0;
    char *token = NULL;
    if (r->transport_error != 0)
        snprintf(err, sizeof(err), "token endpoint: %s", r->error ? r->error : "transport error");
    else
        token = google_auth_parse_token_reply(r->status, r->body, r->body_len, &expires_in_s, err, sizeof(err));
    if (token != NULL) {
        int64_t lifetime_ms = expires_in_s * 1000;
        int64_t margin = lifetime_ms / 2 < GOOGLE_AUTH_REFRESH_MARGIN_MS ? lifetime_ms / 2
                                                                        : GOOGLE_AUTH_REFRESH_MARGIN_MS;
        free_secret(a->token);
        a->token = token;
        a->refresh_at_ms = f->started_ms + lifetime_ms - margin;
        char exp_text[24];
        snprintf(exp_text, sizeof(exp_text), "%lld", (long long)expires_in_s);
        LOG_KV(a->lg, LOG_LEVEL_DEBUG, NULL,
               ((const char *[]){"identity", google_auth_identity(a), "expires_in_s", exp_text, NULL}),
               "access token refreshed");
    } else {
        LOG_KV(a->lg, LOG_LEVEL_WARN, NULL,
               ((const char *[]){"identity", google_auth_identity(a), "error", err, NULL}),
               "access token refresh failed");
    }
    free(f);
    complete_waiters(a, token, token != NULL ? NULL : err);
}

static int start_fetch(struct google_auth *a)
{
    struct token_fetch *f = calloc(1, sizeof(*f));
    if (f == NULL) return -1;
    f->auth = a;
    f->started_ms = auth_now(a);
    int rc = -1;
    if (a->mode == AUTH_MODE_METADATA) {
        char *url = NULL;
        if (asprintf(&url, "%s%s", a->metadata_url, METADATA_TOKEN_PATH) < 0) goto done;
        const struct http_header hdrs[] = {{"Metadata-Flavor", "Google"}};
        struct http_request req = {.method = "GET", .url = url, .headers = hdrs, .n_headers = 1,
                                   .timeout_ms = a->timeout_ms};
        rc = http_client_send(a->http, &req, on_token_reply, f);
        free(url);
    } else {
        char *jwt = build_assertion(a, f->started_ms / 1000);
        char *form = NULL;
        if (jwt == NULL || asprintf(&form, "%s%s", GRANT_TYPE_FORM, jwt) < 0) {
            free_secret(jwt);
            goto done;
        }
        const struct http_header hdrs[] = {{"Content-Type", "application/x-www-form-urlencoded"},
                                           {"Accept", "application/json"}};
        struct http_request req = {.method = "POST", .url = a->token_uri, .headers = hdrs,
                                   .n_headers = 2, .body = form, .body_len = strlen(form),
                                   .timeout_ms = a->timeout_ms};
        rc = http_client_send(a->http, &req, on_token_reply, f);
        free_secret(form);
        free_secret(jwt);
    }
done:
    if (rc != 0) {
        free(f);
        LOG_KV(a->lg, LOG_LEVEL_WARN, NULL,
               ((const char *[]){"identity", google_auth_identity(a), NULL}),
               "could not start an access token request");
        return -1;
    }
    a->fetch = f;
    return 0;
}

/* ---- public API ----------------------------------------------------------------------------- */

static char *strip_trailing_slashes(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/') n--;
    return strndup(s, n);
}

struct google_auth *google_auth_new(uv_loop_t *loop, struct logger *lg, struct http_client *http,
                                    const struct google_auth_opts *opts)
{
    if (loop == NULL || http == NULL || opts == NULL) return NULL;
    struct google_auth *a = calloc(1, sizeof(*a));
    if (a == NULL) return NULL;
    a->loop = loop;
    a->lg = lg;
    a->http = http;
    a->now_ms = opts->now_ms != NULL ? opts->now_ms : real_now_ms;
    a->now_arg = opts->now_arg;
    a->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : GOOGLE_AUTH_DEFAULT_TIMEOUT_MS;
    bool metadata = opts->credentials == NULL || opts->credentials[0] == '\0' ||
                    strcmp(opts->credentials, "metadata") == 0;
    a->mode = metadata ? AUTH_MODE_METADATA : AUTH_MODE_KEY_FILE;
    a->metadata_url = strip_trailing_slashes(opts->metadata_url != NULL ? opts->metadata_url
                                                                        : GOOGLE_AUTH_DEFAULT_METADATA_URL);
    a->key_path = metadata ? NULL : strdup(opts->credentials);
    a->kick = malloc(sizeof(*a->kick));
    if (a->metadata_url == NULL || (!metadata && a->key_path == NULL) || a->kick == NULL) goto fail;
    if (uv_timer_init(loop, a->kick) != 0) goto fail;
    a->kick->data = a;
    return a;
fail:
    free(a->kick);
    free(a->metadata_url);
    free(a->key_path);
    free(a);
    return NULL;
}

int google_auth_load(struct google_auth *a, char *err, size_t errlen)
{
    if (a == NULL) return -1;
    if (a->loaded) return 0;
    if (a->mode == AUTH_MODE_METADATA) {
        if (!is_http_url(a->metadata_url)) {
            snprintf(err, errlen, "metadata URL is not an http(s) URL");
            return -1;
        }
        a->identity = strdup("metadata");
        if (a->identity == NULL) return -1;
    } else if (load_key_file(a, err, errlen) != 0) {
        return -1;
    }
    a->loaded = true;
    LOG_KV(a->lg, LOG_LEVEL_INFO, NULL, ((const char *[]){"identity", a->identity, NULL}),
           "google credentials loaded");
    return 0;
}

int google_auth_get_token(struct google_auth *a, google_token_cb cb, void *arg)
{
    if (a == NULL || cb == NULL || !a->loaded) return -1;
    struct waiter *w = calloc(1, sizeof(*w));
    if (w == NULL) return -1;
    w->cb = cb;
    w->arg = arg;
    if (token_is_fresh(a)) {
        w->token = strdup(a->token);
        if (w->token == NULL || uv_timer_start(a->kick, on_kick, 0, 0) != 0) {
            waiter_free(w);
            return -1;
        }
        list_append(&a->ready, w);
        return 0;
    }
    if (a->fetch == NULL && start_fetch(a) != 0) {
        waiter_free(w);
        return -1;
    }
    list_append(&a->waiting, w);
    return 0;
}

void google_auth_cancel(struct google_auth *a, google_token_cb cb, void *arg)
{
    if (a == NULL) return;
    list_remove_matching(&a->waiting, cb, arg);
    list_remove_matching(&a->ready, cb, arg);
    list_remove_matching(&a->delivering, cb, arg);
}

void google_auth_invalidate(struct google_auth *a)
{
    if (a == NULL) return;
    free_secret(a->token);
    a->token = NULL;
    a->refresh_at_ms = 0;
}

void google_auth_free(struct google_auth *a)
{
    if (a == NULL || a->free_requested) return;
    a->free_requested = true;
    if (a->fetch != NULL) a->fetch->auth = NULL;
    a->fetch = NULL;
    list_clear(&a->waiting);
    list_clear(&a->ready);
    list_clear(&a->delivering);
    uv_close((uv_handle_t *)a->kick, on_kick_closed);
    free_secret(a->token);
    EVP_PKEY_free(a->pkey);
    free(a->key_path);
    free(a->metadata_url);
    free(a->client_email);
    free(a->private_key_id);
    free(a->token_uri);
    free(a->identity);
    a->token = NULL;
    a->pkey = NULL;
    a->identity = a->client_email = a->private_key_id = a->token_uri = NULL;
    a->key_path = a->metadata_url = NULL;
    if (a->delivery_depth == 0) free(a); /* else the delivery loop frees it */
}

const char *google_auth_identity(const struct google_auth *a)
{
    if (a == NULL) return "";
    if (a->identity != NULL) return a->identity;
    return a->mode == AUTH_MODE_METADATA ? "metadata" : "service_account";
}
