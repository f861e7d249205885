/*
 * shared/http/http_router — static route table matching (see http_router.h).
 *
 * Matching walks pattern and path segment by segment in one pass; no copies of
 * the path are made.  Parameter values are decoded into the fixed buffer of
 * struct http_params, so a match never allocates and the result can be kept by
 * value in the request.
 */
#include "shared/http/http_router.h"

#include <stdio.h>
#include <string.h>

/* One '/'-delimited segment: [start, start + len). */
struct segment {
    const char *start;
    size_t len;
};

/* Take the segment at *cursor (which points just after a '/'); advance *cursor
 * past the segment and return whether a '/' followed it. */
static int next_segment(const char **cursor, struct segment *seg)
{
    const char *s = *cursor;
    const char *slash = strchr(s, '/');
    seg->start = s;
    seg->len = slash != NULL ? (size_t)(slash - s) : strlen(s);
    *cursor = slash != NULL ? slash + 1 : s + seg->len;
    return slash != NULL;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decode seg into params->buf.  Returns 0, or -1 when the value is
 * malformed, contains NUL, is "." / "..", or does not fit. */
static int capture_param(struct http_params *params, const char *name, size_t name_len, const struct segment *seg)
{
    if (params->n >= HTTP_ROUTER_MAX_PARAMS) return -1;
    size_t off = params->used;
    size_t w = off;
    for (size_t i = 0; i < seg->len; i++) {
        char c = seg->start[i];
        if (c == '%') {
            if (i + 2 >= seg->len) return -1;
            int hi = hex_value(seg->start[i + 1]);
            int lo = hex_value(seg->start[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (w + 1 >= sizeof(params->buf)) return -1;
        params->buf[w++] = c;
    }
    params->buf[w] = '\0';
    const char *value = params->buf + off;
    if (strcmp(value, ".") == 0 || strcmp(value, "..") == 0) return -1;
    params->items[params->n].name = name;
    params->items[params->n].name_len = name_len;
    params->items[params->n].value_off = off;
    params->n++;
    params->used = w + 1;
    return 0;
}

/* Does path match pattern?  Captures into params (reset first). */
static int pattern_matches(const char *pattern, const char *path, struct http_params *params)
{
    params->n = 0;
    params->used = 0;
    if (pattern[0] != '/' || path[0] != '/') return 0;
    const char *pc = pattern + 1;
    const char *sc = path + 1;
    for (;;) {
        struct segment ps, ss;
        int p_more = next_segment(&pc, &ps);
        int s_more = next_segment(&sc, &ss);
        if (ps.len > 0 && ps.start[0] == ':') {
            if (ss.len == 0) return 0;
            if (capture_param(params, ps.start + 1, ps.len - 1, &ss) != 0) return 0;
        } else if (ps.len != ss.len || memcmp(ps.start, ss.start, ps.len) != 0) {
            return 0;
        }
        if (p_more != s_more) return 0;
        if (!p_more) return 1;
    }
}

/* Append method to the ", "-separated allow list unless present or too long. */
static void allow_add(char *allow, size_t allow_len, const char *method)
{
    if (allow == NULL || allow_len == 0) return;
    size_t mlen = strlen(method);
    for (const char *p = allow; (p = strstr(p, method)) != NULL; p += mlen) {
        int starts = p == allow || p[-1] == ' ';
        int ends = p[mlen] == '\0' || p[mlen] == ',';
        if (starts && ends) return;
    }
    size_t cur = strlen(allow);
    size_t need = cur + (cur > 0 ? 2 : 0) + mlen + 1;
    if (need > allow_len) return;
    if (cur > 0) memcpy(allow + cur, ", ", 2), cur += 2;
    memcpy(allow + cur, method, mlen + 1);
}

int http_router_match(const struct http_route *routes, size_t n, const char *method, const char *path,
                      const struct http_route **out, struct http_params *params, char *allow, size_t allow_len)
{
    struct http_params scratch;
    int path_matched = 0;
    if (allow != NULL && allow_len > 0) allow[0] = '\0';
    if (out != NULL) *out = NULL;
    if (method == NULL || path == NULL) return 404;
    for (size_t i = 0; i < n; i++) {
        if (!pattern_matches(routes[i].pattern, path, &scratch)) continue;
        if (strcmp(routes[i].method, method) == 0) {
            if (out != NULL) *out = &routes[i];
            if (params != NULL) *params = scratch;
            return 200;
        }
        path_matched = 1;
        allow_add(allow, allow_len, routes[i].method);
    }
    return path_matched ? 405 : 404;
}

const char *http_params_get(const struct http_params *params, const char *name)
{
    if (params == NULL || name == NULL) return NULL;
    size_t len = strlen(name);
    for (size_t i = 0; i < params->n; i++) {
        const struct http_param *p = &params->items[i];
        if (p->name_len == len && memcmp(p->name, name, len) == 0) return params->buf + p->value_off;
    }
    return NULL;
}

static int is_token_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int validate_pattern(const char *pattern)
{
    if (pattern == NULL || pattern[0] != '/') return -1;
    size_t n_params = 0;
    for (const char *p = pattern; *p != '\0'; p++) {
        if (*p != ':' || p[-1] != '/') continue;
        if (p[1] == '/' || p[1] == '\0') return -1;
        n_params++;
    }
    return n_params <= HTTP_ROUTER_MAX_PARAMS ? 0 : -1;
}

int http_router_validate(const struct http_route *routes, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const struct http_route *r = &routes[i];
        int method_ok = r->method != NULL && r->method[0] != '\0';
        for (const char *m = r->method; method_ok && *m != '\0'; m++)
            method_ok = is_token_char(*m);
        if (!method_ok || validate_pattern(r->pattern) != 0 || r->handler == NULL) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "invalid route #%zu (%s %s)", i, r->method ? r->method : "?",
                         r->pattern ? r->pattern : "?");
            return -1;
        }
    }
    return 0;
}
