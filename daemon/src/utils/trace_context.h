/*
 * utils/trace_context — the trace a request belongs to, for log correlation
 * and propagation: W3C Trace Context (`traceparent`) and Google's
 * `X-Cloud-Trace-Context`, parsed strictly and written back as a
 * `traceparent`.
 *
 * Both headers are untrusted input: a value is used only when it has exactly
 * the documented shape, and then only its parsed parts (normalized to
 * lowercase hex) are ever logged or sent on; anything else is ignored, never
 * echoed.
 *   traceparent            VERSION-TRACE_ID-PARENT_ID-FLAGS: 2, 32, 16 and 2
 *                          lowercase hex digits; version ff is invalid;
 *                          version 00 is exactly 55 characters, a later
 *                          version may append "-..." (ignored); an all-zero
 *                          trace or parent id is invalid.
 *   X-Cloud-Trace-Context  TRACE_ID/SPAN_ID[;o=0|1]: 32 hex digits (either
 *                          case), a decimal span id in 1..2^64-1 (becomes the
 *                          16-hex parent id), o=1 = sampled.
 * When both are present, traceparent wins.  trace_context_new() starts a trace
 * of our own (random ids, sampled) when no usable header came.
 */
#ifndef FOLLOWUPD_UTILS_TRACE_CONTEXT_H
#define FOLLOWUPD_UTILS_TRACE_CONTEXT_H

#include <stdbool.h>

#define TRACE_ID_HEX 32
#define TRACE_SPAN_HEX 16
#define TRACEPARENT_LEN 55 /* "00-" 32 "-" 16 "-" 2 */

struct trace_context {
    char trace_id[TRACE_ID_HEX + 1];  /* lowercase hex; "" = no trace */
    char span_id[TRACE_SPAN_HEX + 1]; /* the parent span (the caller's), lowercase hex */
    bool sampled;
};

/* 0 and *out filled, or -1 (out cleared) when the value does not have the exact shape. */
int trace_context_parse_traceparent(const char *value, struct trace_context *out);
int trace_context_parse_cloud(const char *value, struct trace_context *out);
/* traceparent first, then X-Cloud-Trace-Context (either may be NULL). 0, or -1 when neither is usable. */
int trace_context_from_headers(const char *traceparent, const char *cloud_trace, struct trace_context *out);
/* A new trace: random trace and span ids, sampled. */
void trace_context_new(struct trace_context *out);
/* "00-<trace>-<span>-<01|00>" into out (TRACEPARENT_LEN + 1 bytes); "" when t has no trace. */
void trace_context_format(const struct trace_context *t, char out[TRACEPARENT_LEN + 1]);

#endif
