/*
 * fuzz/fuzz_gcp_responses — the parsers of what Google's endpoints answer:
 * Cloud Tasks replies (cloud_tasks_classify), the token endpoint / metadata
 * server reply (google_auth_parse_token_reply) and the JWKS response's
 * Cache-Control header (jwks_parse_max_age).
 *
 * Input layout: byte 0 selects the parser (mod 3), bytes 1-2 an HTTP status
 * (big-endian, mod 1000), byte 3 bit 0 a transport error; the rest is the body
 * or header value.  Bodies are handed over as the HTTP client does: with their
 * length and a terminating NUL after them (embedded NULs possible).
 *
 * Oracles besides the sanitizers: the classification is one of the documented
 * results and a 2xx without transport error is always CT_OK; Google's status
 * string, when reported, is NUL-terminated upper-case text; a parsed token is
 * non-empty visible ASCII with a positive lifetime and is returned only for a
 * 2xx; max-age is -1 or more.
 */
#include <string.h>

#include "fuzz_util.h"
#include "shared/gcp/cloud_tasks_client.h"
#include "shared/gcp/google_auth.h"
#include "shared/gcp/jwks_cache.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void fuzz_classify(long status, int transport_error, const char *body)
{
    const char *google_status = NULL;
    enum ct_result r = cloud_tasks_classify(status, transport_error, body, &google_status);
    if (r != CT_OK && r != CT_ALREADY_EXISTS && r != CT_NOT_FOUND && r != CT_TRANSIENT && r != CT_PERMANENT)
        abort();
    if (strcmp(ct_result_name(r), "unknown") == 0) abort();
    if (!transport_error && status >= 200 && status <= 299 && r != CT_OK) abort();
    if (transport_error && (r != CT_TRANSIENT || google_status != NULL)) abort();
    if (google_status != NULL)
        for (const char *p = google_status; *p != '\0'; p++)
            if (!((*p >= 'A' && *p <= 'Z') || *p == '_')) abort();
    if (cloud_tasks_classify(status, transport_error, body, NULL) != r) abort();
}

static void fuzz_token_reply(long status, const char *body, size_t len)
{
    char err[256] = "";
    int64_t expires_in = 0;
    char *token = google_auth_parse_token_reply(status, body, len, &expires_in, err, sizeof(err));
    if (token == NULL) {
        if (err[0] == '\0') abort(); /* a failure always says why */
        return;
    }
    if (status < 200 || status > 299 || expires_in <= 0 || token[0] == '\0') abort();
    for (const char *p = token; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) abort();
    free(token);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    int which = data[0] % 3;
    long status = ((long)data[1] << 8 | data[2]) % 1000;
    int transport_error = data[3] & 1;
    char *body = fuzz_cstr(data + 4, size - 4);
    switch (which) {
    case 0:
        fuzz_classify(status, transport_error, body);
        break;
    case 1:
        fuzz_token_reply(status, body, size - 4);
        break;
    default:
        if (jwks_parse_max_age(body) < -1) abort();
        break;
    }
    free(body);
    return 0;
}
