/*
 * shared/http/http_response — the bytes of the embedded HTTP server's answers.
 *
 * One static table lists every status the server names: its reason phrase and,
 * for the statuses the server answers by itself (parse errors, limits, 404/405,
 * 401, 503, ...), the JSON error body it sends ({"error":"not_found"}).  A
 * status missing from the table is sent with the reason "Status", and its error
 * body is {"error":"internal_error"}.
 *
 * http_resp_build() serialises a whole response into one malloc'ed buffer that
 * the connection writes at once: the status line, Content-Type, Content-Length
 * (not for 204/304, which never carry a body), X-Request-Id, "Connection:
 * close" when the connection closes afterwards, the handler's extra headers,
 * and the body (left out for HEAD, whose Content-Length still tells the body's
 * size).  Extra headers with an invalid name or value, or with one of the names
 * the server sets itself, are dropped and logged.  Nothing here does I/O or
 * keeps state: the connection (http_server.c) decides what to answer and when.
 */
#include "shared/http/http_server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "utils/log.h"

struct status_row {
    int status;
    const char *reason;
    const char *error_body; /* NULL: the server never answers it by itself */
};

static const struct status_row status_table[] = {
    {100, "Continue", NULL},
    {200, "OK", NULL},
    {201, "Created", NULL},
    {202, "Accepted", NULL},
    {204, "No Content", NULL},
    {304, "Not Modified", NULL},
    {400, "Bad Request", "{\"error\":\"bad_request\"}"},
    {401, "Unauthorized", "{\"error\":\"unauthorized\"}"},
    {403, "Forbidden", NULL},
    {404, "Not Found", "{\"error\":\"not_found\"}"},
    {405, "Method Not Allowed", "{\"error\":\"method_not_allowed\"}"},
    {408, "Request Timeout", "{\"error\":\"request_timeout\"}"},
    {409, "Conflict", NULL},
    {410, "Gone", NULL},
    {413, "Content Too Large", "{\"error\":\"payload_too_large\"}"},
    {415, "Unsupported Media Type", NULL},
    {417, "Expectation Failed", "{\"error\":\"expectation_failed\"}"},
    {422, "Unprocessable Content", NULL},
    {425, "Too Early", NULL},
    {429, "Too Many Requests", NULL},
    {431, "Request Header Fields Too Large", "{\"error\":\"request_header_fields_too_large\"}"},
    {500, "Internal Server Error", NULL},
    {501, "Not Implemented", "{\"error\":\"not_implemented\"}"},
    {502, "Bad Gateway", NULL},
    {503, "Service Unavailable", "{\"error\":\"service_unavailable\"}"},
    {504, "Gateway Timeout", NULL},
    {505, "HTTP Version Not Supported", "{\"error\":\"http_version_not_supported\"}"},
};

static const struct status_row *status_lookup(int status)
{
    for (size_t i = 0; i < sizeof(status_table) / sizeof(status_table[0]); i++)
        if (status_table[i].status == status) return &status_table[i];
    return NULL;
}

static const char *status_reason(int status)
{
    const struct status_row *row = status_lookup(status);
    return row != NULL ? row->reason : "Status";
}

const char *http_resp_error_body(int status)
{
    const struct status_row *row = status_lookup(status);
    return row != NULL && row->error_body != NULL ? row->error_body : "{\"error\":\"internal_error\"}";
}

/* ------------------------------------------------------------------------ */
/* A growing response buffer                                                 */

struct sbuf {
    char *data;
    size_t len, cap;
    int oom;
};

static void sb_append(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    sb_append(b, s, strlen(s));
}

static void sb_header(struct sbuf *b, const char *name, const char *value)
{
    sb_puts(b, name);
    sb_append(b, ": ", 2);
    sb_puts(b, value);
    sb_append(b, "\r\n", 2);
}

/* ------------------------------------------------------------------------ */
/* Headers and the whole response                                            */

static int extra_header_allowed(struct logger *lg, const struct http_header_kv *h)
{
    static const char *const reserved[] = {"Content-Type",      "Content-Length", "Connection",
                                           "Transfer-Encoding", "X-Request-Id",   NULL};
    if (h->name == NULL || h->value == NULL || h->name[0] == '\0') goto reject;
    for (const char *p = h->name; *p != '\0'; p++)
        if (!http_is_tchar((unsigned char)*p)) goto reject;
    for (const char *p = h->value; *p != '\0'; p++)
        if (!http_is_field_value_char((unsigned char)*p)) goto reject;
    for (size_t i = 0; reserved[i] != NULL; i++)
        if (strcasecmp(h->name, reserved[i]) == 0) goto reject;
    return 1;
reject:
    LOG_KV(lg, LOG_LEVEL_WARN, NULL, ((const char *[]){"header", h->name ? h->name : "(null)", NULL}),
           "dropping invalid or reserved response header");
    return 0;
}

int http_resp_content_type_ok(const char *ct)
{
    if (ct == NULL || ct[0] == '\0') return 0;
    for (const char *p = ct; *p != '\0'; p++)
        if (!http_is_field_value_char((unsigned char)*p)) return 0;
    return 1;
}

char *http_resp_build(struct logger *lg, int status, const char *content_type, const char *body, size_t body_len,
                      const struct http_header_kv *extra, size_t n_extra, const char *request_id, int close, int head,
                      size_t *out_len)
{
    struct sbuf b = {0};
    char line[64];
    int no_body = status == 204 || status == 304;
    if (body == NULL || no_body) body_len = 0;
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, status_reason(status));
    sb_puts(&b, line);
    sb_header(&b, "Content-Type", content_type);
    if (!no_body) {
        snprintf(line, sizeof(line), "%zu", body_len);
        sb_header(&b, "Content-Length", line);
    }
    sb_header(&b, "X-Request-Id", request_id);
    if (close) sb_header(&b, "Connection", "close");
    for (size_t i = 0; i < n_extra; i++)
        if (extra_header_allowed(lg, &extra[i])) sb_header(&b, extra[i].name, extra[i].value);
    sb_append(&b, "\r\n", 2);
    if (!head && body_len > 0) sb_append(&b, body, body_len);
    if (b.oom) {
        free(b.data);
        return NULL;
    }
    *out_len = b.len;
    return b.data;
}
