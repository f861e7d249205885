/*
 * utils/trace_context — see the header.
 */
#include "utils/trace_context.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

static int hex_value(char c, bool lowercase_only)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (!lowercase_only && c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* n hex digits at s copied lowercase into out (n + 1 bytes); 0, or -1 when one is not a hex digit. */
static int take_hex(const char *s, size_t n, bool lowercase_only, char *out)
{
    for (size_t i = 0; i < n; i++) {
        if (hex_value(s[i], lowercase_only) < 0) return -1;
        out[i] = (char)tolower((unsigned char)s[i]);
    }
    out[n] = '\0';
    return 0;
}

static bool all_zero(const char *hex)
{
    return strspn(hex, "0") == strlen(hex);
}

static int fail(struct trace_context *out)
{
    memset(out, 0, sizeof(*out));
    return -1;
}

int trace_context_parse_traceparent(const char *v, struct trace_context *out)
{
    memset(out, 0, sizeof(*out));
    if (v == NULL || strlen(v) < TRACEPARENT_LEN) return fail(out);
    char version[3], flags[3];
    if (take_hex(v, 2, true, version) != 0 || strcmp(version, "ff") == 0 || v[2] != '-' ||
        take_hex(v + 3, TRACE_ID_HEX, true, out->trace_id) != 0 || v[35] != '-' ||
        take_hex(v + 36, TRACE_SPAN_HEX, true, out->span_id) != 0 || v[52] != '-' ||
        take_hex(v + 53, 2, true, flags) != 0)
        return fail(out);
    bool exact = v[TRACEPARENT_LEN] == '\0';
    if (strcmp(version, "00") == 0 ? !exact : !(exact || v[TRACEPARENT_LEN] == '-')) return fail(out);
    if (all_zero(out->trace_id) || all_zero(out->span_id)) return fail(out);
    out->sampled = (hex_value(flags[1], true) & 1) != 0;
    return 0;
}

/* Decimal 1..UINT64_MAX of exactly the digits s[0..n). */
static int parse_span_decimal(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    if (v == 0) return -1;
    *out = v;
    return 0;
}

int trace_context_parse_cloud(const char *v, struct trace_context *out)
{
    memset(out, 0, sizeof(*out));
    if (v == NULL || strlen(v) < TRACE_ID_HEX + 2 || take_hex(v, TRACE_ID_HEX, false, out->trace_id) != 0 ||
        v[TRACE_ID_HEX] != '/' || all_zero(out->trace_id))
        return fail(out);
    const char *span = v + TRACE_ID_HEX + 1;
    size_t span_len = strcspn(span, ";");
    uint64_t span_id;
    if (parse_span_decimal(span, span_len, &span_id) != 0) return fail(out);
    const char *opts = span + span_len;
    if (strcmp(opts, ";o=1") == 0) out->sampled = true;
    else if (opts[0] != '\0' && strcmp(opts, ";o=0") != 0) return fail(out);
    snprintf(out->span_id, sizeof(out->span_id), "%016llx", (unsigned long long)span_id);
    return 0;
}

int trace_context_from_headers(const char *traceparent, const char *cloud_trace, struct trace_context *out)
{
    if (trace_context_parse_traceparent(traceparent, out) == 0) return 0;
    return trace_context_parse_cloud(cloud_trace, out);
}

static void random_hex(char *out, size_t n_bytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[16] = {0};
    if (n_bytes > sizeof(rnd)) n_bytes = sizeof(rnd);
    if (uv_random(NULL, NULL, rnd, n_bytes, 0, NULL) != 0) { /* no entropy source: still unique enough to correlate */
        uint64_t t = uv_hrtime();
        for (size_t i = 0; i < n_bytes; i++) rnd[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)(i * 151);
    }
    rnd[n_bytes - 1] |= 1; /* never all zero */
    for (size_t i = 0; i < n_bytes; i++) {
        out[2 * i] = hex[rnd[i] >> 4];
        out[2 * i + 1] = hex[rnd[i] & 15];
    }
    out[2 * n_bytes] = '\0';
}

void trace_context_new(struct trace_context *out)
{
    memset(out, 0, sizeof(*out));
    random_hex(out->trace_id, TRACE_ID_HEX / 2);
    random_hex(out->span_id, TRACE_SPAN_HEX / 2);
    out->sampled = true;
}

void trace_context_format(const struct trace_context *t, char out[TRACEPARENT_LEN + 1])
{
    out[0] = '\0';
    if (t == NULL || strlen(t->trace_id) != TRACE_ID_HEX || strlen(t->span_id) != TRACE_SPAN_HEX) return;
    snprintf(out, TRACEPARENT_LEN + 1, "00-%s-%s-%s", t->trace_id, t->span_id, t->sampled ? "01" : "00");
}
