/*
 * tests/unit/support/httpd_client — see httpd_client.h.
 */
#include "httpd_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

unsigned long long httpd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000ull + (unsigned long long)ts.tv_nsec / 1000000ull;
}

int httpd_client_connect(struct httpd_client *c, int port)
{
    return httpd_client_connect_addr(c, "127.0.0.1", port, NULL);
}

/* Fill a sockaddr for a numeric IPv4 or IPv6 address. 0 ok. */
static int numeric_addr(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((unsigned short)port);
        *len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((unsigned short)port);
        *len = sizeof(*v6);
        return 0;
    }
    return -1;
}

int httpd_client_connect_addr(struct httpd_client *c, const char *server_ip, int port, const char *source_ip)
{
    struct sockaddr_storage to, from;
    socklen_t to_len, from_len;
    int one = 1;
    c->len = 0;
    c->fd = -1;
    if (numeric_addr(server_ip, port, &to, &to_len) != 0) return -1;
    if (source_ip != NULL && numeric_addr(source_ip, 0, &from, &from_len) != 0) return -1;
    c->fd = socket(to.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if ((source_ip != NULL && bind(c->fd, (struct sockaddr *)&from, from_len) != 0) ||
        connect(c->fd, (struct sockaddr *)&to, to_len) != 0) {
        int saved = errno;
        close(c->fd);
        c->fd = -1;
        errno = saved;
        return -1;
    }
    return 0;
}

void httpd_client_close(struct httpd_client *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

int httpd_client_send(struct httpd_client *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int httpd_client_send_str(struct httpd_client *c, const char *s)
{
    return httpd_client_send(c, s, strlen(s));
}

int httpd_client_readable(struct httpd_client *c, unsigned timeout_ms)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    if (c->len > 0) return 1;
    return poll(&pfd, 1, (int)timeout_ms) > 0;
}

/* Read more bytes into the buffer before the deadline. 1 got bytes, 0 EOF/reset, -1 timeout/full. */
static int fill(struct httpd_client *c, unsigned long long deadline)
{
    if (c->len >= sizeof(c->buf)) return -1;
    for (;;) {
        unsigned long long now = httpd_now_ms();
        if (now >= deadline) return -1;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)(deadline - now));
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) return -1;
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        c->len += (size_t)n;
        return 1;
    }
}

static void consume(struct httpd_client *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

static const char *find_head_end(const struct httpd_client *c)
{
    for (size_t i = 0; i + 3 < c->len; i++)
        if (memcmp(c->buf + i, "\r\n\r\n", 4) == 0) return c->buf + i;
    return NULL;
}

const char *httpd_response_header(const struct httpd_response *r, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    const char *line = strstr(r->head, "\r\n");
    while (line != NULL && line[2] != '\0') {
        line += 2;
        const char *eol = strstr(line, "\r\n");
        if (eol == NULL) eol = line + strlen(line);
        if ((size_t)(eol - line) > nlen && line[nlen] == ':' && strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t vlen = (size_t)(eol - v);
            if (vlen >= outlen) vlen = outlen - 1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return out;
        }
        line = eol;
    }
    return NULL;
}

int httpd_client_read_response(struct httpd_client *c, struct httpd_response *r, unsigned timeout_ms)
{
    unsigned long long deadline = httpd_now_ms() + timeout_ms;
    const char *end;
    memset(r, 0, sizeof(*r));
    while ((end = find_head_end(c)) == NULL)
        if (fill(c, deadline) != 1) return -1;
    size_t head_len = (size_t)(end - c->buf) + 2; /* keep the last header's CRLF */
    if (head_len >= sizeof(r->head)) return -1;
    memcpy(r->head, c->buf, head_len);
    r->head[head_len] = '\0';
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) return -1;
    consume(c, head_len + 2);
    char cl[32];
    size_t body_len = 0;
    if (httpd_response_header(r, "Content-Length", cl, sizeof(cl)) != NULL)
        body_len = strtoul(cl, NULL, 10);
    else if (r->status >= 200 && r->status != 204 && r->status != 304)
        return -1; /* we always expect CL */
    if (body_len >= sizeof(r->body)) return -1;
    while (c->len < body_len)
        if (fill(c, deadline) != 1) return -1;
    memcpy(r->body, c->buf, body_len);
    r->body[body_len] = '\0';
    r->body_len = body_len;
    consume(c, body_len);
    return 0;
}

int httpd_client_wait_eof(struct httpd_client *c, unsigned timeout_ms)
{
    unsigned long long deadline = httpd_now_ms() + timeout_ms;
    if (c->len > 0) return 0;
    int rc = fill(c, deadline);
    if (rc == 0) return 1;
    return rc == 1 ? 0 : -1;
}
