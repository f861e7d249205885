/*
 * tests/unit/support/httpd_client — a deliberately dumb blocking HTTP/1.1 test
 * client over a real TCP socket: send raw bytes (any shape, including broken
 * ones), read responses one by one (Content-Length framed, leftovers kept for
 * pipelining), and observe EOF.  Every read waits with poll() up to a deadline,
 * so a misbehaving server fails a test instead of hanging it.
 */
#ifndef FOLLOWUPD_TESTS_HTTPD_CLIENT_H
#define FOLLOWUPD_TESTS_HTTPD_CLIENT_H

#include <stddef.h>

#define HTTPD_CLIENT_BUF 65536

struct httpd_client {
    int fd;
    size_t len;
    char buf[HTTPD_CLIENT_BUF];
};

struct httpd_response {
    int status;
    char head[8192]; /* status line + headers, NUL-terminated */
    char body[8192]; /* NUL-terminated */
    size_t body_len;
};

/* Connect to 127.0.0.1:port (TCP_NODELAY). 0 ok, -1 error (errno kept). */
int httpd_client_connect(struct httpd_client *c, int port);
/* Connect to a numeric IPv4/IPv6 server address, optionally from a given local
 * address (e.g. "127.0.0.2": Linux routes all of 127/8 to lo). 0 ok, -1 error. */
int httpd_client_connect_addr(struct httpd_client *c, const char *server_ip, int port, const char *source_ip);
void httpd_client_close(struct httpd_client *c);
/* Send everything (MSG_NOSIGNAL). 0 ok, -1 error. */
int httpd_client_send(struct httpd_client *c, const void *data, size_t len);
int httpd_client_send_str(struct httpd_client *c, const char *s);
/* Read one response (a 100 Continue counts as one). 0 ok, -1 EOF/timeout/garbage. */
int httpd_client_read_response(struct httpd_client *c, struct httpd_response *r, unsigned timeout_ms);
/* 1 when the server closed (EOF or reset) within timeout with no unread bytes, 0 when bytes
 * arrived instead, -1 on timeout. */
int httpd_client_wait_eof(struct httpd_client *c, unsigned timeout_ms);
/* 1 when bytes (or EOF) are ready to read within timeout_ms, 0 otherwise. */
int httpd_client_readable(struct httpd_client *c, unsigned timeout_ms);
/* Header value (first, case-insensitive, copied into out) or NULL. */
const char *httpd_response_header(const struct httpd_response *r, const char *name, char *out, size_t outlen);
/* Milliseconds of a monotonic clock. */
unsigned long long httpd_now_ms(void);

#endif
