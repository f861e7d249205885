/*
 * bench/src/sink — a small, fast loopback HTTP/1.1 server for the benchmark (not part of the daemon).
 *
 * One thread, epoll, keep-alive, pipelining, Content-Length bodies only (chunked requests get 411). It plays
 * one of two peers, so that the peer never becomes the thing measured:
 *
 *   --mode voice       the voice agent: POST /api/voice-agent/calls/start-call answers
 *                      200 {"callId":"call-N","status":"started"} and records (bookingId, arrival time in µs,
 *                      CLOCK_REALTIME). A request without a JSON bookingId, or with a wrong bearer token when
 *                      --token is given, gets 400/401 and is counted in "rejected".
 *   --mode cloudtasks  a light Cloud Tasks v2 REST fake: POST {anything}/token answers an access token;
 *                      GET /jwks serves the file given by --jwks; POST .../queues/Q/tasks needs a bearer token,
 *                      parses the JSON body, requires task.name under that queue, answers the created Task
 *                      (name, scheduleTime, createTime, dispatchDeadline, view BASIC), or 409 ALREADY_EXISTS
 *                      for a name it has seen; DELETE /v2/{name} answers {} or 404 NOT_FOUND. It records each
 *                      created task's httpRequest.url and base64 body.
 *
 * Control (both modes): GET /_stats -> {"calls","unique","rejected","requests","creates" (createTask requests,
 * 409s included)}; GET /_dump -> one line per
 * record ("<bookingId> <arrival_us>" or "<url>\t<base64 body>"); POST /_reset forgets everything.
 *
 * Usage: sink --mode voice|cloudtasks [--port 0] [--token T] [--jwks FILE]. Prints {"port":N} on stdout once
 * listening, serves until SIGTERM/SIGINT.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_REQUEST_BYTES (1024 * 1024)
#define MAX_EVENTS 64
#define ID_LEN 36

enum mode { MODE_VOICE, MODE_CLOUDTASKS };

struct record {
    char id[ID_LEN + 1];
    int64_t at_us;
};

struct task_rec {
    char *url;
    char *body_b64;
};

struct buf {
    char *data;
    size_t len, cap;
};

struct conn {
    int fd;
    struct buf in, out;
};

/* Open-addressing set of strings (booking ids or task names). */
struct strset {
    char **slots;
    size_t cap, n;
};

struct sink {
    enum mode mode;
    const char *token;
    char *jwks;
    size_t jwks_len;
    int epfd;
    struct record *recs;
    size_t n_recs, cap_recs;
    struct task_rec *tasks;
    size_t n_tasks, cap_tasks;
    struct strset seen;
    uint64_t requests, rejected, tokens, creates;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL) die("realloc");
    return q;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL) die("strdup");
    return d;
}

/* ---------- buffers and the string set ---------- */

static void buf_append(struct buf *b, const char *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len) cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void buf_consume(struct buf *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void strset_grow(struct strset *set);

/* Adds s; returns true when it was new. */
static bool strset_add(struct strset *set, const char *s)
{
    if ((set->n + 1) * 2 > set->cap) strset_grow(set);
    size_t i = hash_str(s) & (set->cap - 1);
    while (set->slots[i] != NULL) {
        if (strcmp(set->slots[i], s) == 0) return false;
        i = (i + 1) & (set->cap - 1);
    }
    set->slots[i] = xstrdup(s);
    set->n++;
    return true;
}

static bool strset_has(const struct strset *set, const char *s)
{
    if (set->cap == 0) return false;
    size_t i = hash_str(s) & (set->cap - 1);
    while (set->slots[i] != NULL) {
        if (strcmp(set->slots[i], s) == 0) return true;
        i = (i + 1) & (set->cap - 1);
    }
    return false;
}

static void strset_grow(struct strset *set)
{
    struct strset bigger = {.cap = set->cap ? set->cap * 2 : 1024};
    bigger.slots = calloc(bigger.cap, sizeof(char *));
    if (bigger.slots == NULL) die("calloc");
    for (size_t i = 0; i < set->cap; i++) {
        if (set->slots[i] == NULL) continue;
        size_t j = hash_str(set->slots[i]) & (bigger.cap - 1);
        while (bigger.slots[j] != NULL) j = (j + 1) & (bigger.cap - 1);
        bigger.slots[j] = set->slots[i];
        bigger.n++;
    }
    free(set->slots);
    *set = bigger;
}

static void strset_clear(struct strset *set)
{
    for (size_t i = 0; i < set->cap; i++) free(set->slots[i]);
    free(set->slots);
    memset(set, 0, sizeof(*set));
}

/* ---------- responses ---------- */

static void respond(struct conn *c, int status, const char *content_type, const char *body, size_t len)
{
    const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found" : status == 409 ? "Conflict" : "Error";
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: max-age=3600\r\n"
                     "\r\n",
                     status, reason, content_type, len);
    buf_append(&c->out, head, (size_t)n);
    buf_append(&c->out, body, len);
}

static void respond_json(struct conn *c, int status, const char *body)
{
    respond(c, status, "application/json", body, strlen(body));
}

static void respond_google_error(struct conn *c, int code, const char *status, const char *message)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"error\":{\"code\":%d,\"message\":\"%s\",\"status\":\"%s\"}}", code, message,
             status);
    respond_json(c, code, body);
}

static void rfc3339_now(char *out, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%09ldZ", base, ts.tv_nsec);
}

/* ---------- request handling ---------- */

struct request {
    char method[8];
    char path[1024];
    const char *authorization; /* value, not NUL-terminated: auth_len bytes */
    size_t auth_len;
    const char *body;
    size_t body_len;
};

static bool bearer_ok(const struct sink *s, const struct request *r)
{
    if (r->authorization == NULL || r->auth_len < 8 || strncasecmp(r->authorization, "Bearer ", 7) != 0)
        return false;
    if (s->token == NULL) return r->auth_len > 7;
    return r->auth_len - 7 == strlen(s->token) && memcmp(r->authorization + 7, s->token, r->auth_len - 7) == 0;
}

/* The 36 characters after "bookingId":" in a JSON body, or -1. */
static int find_booking_id(const char *body, size_t len, char out[ID_LEN + 1])
{
    static const char key[] = "\"bookingId\"";
    const char *end = body + len;
    for (const char *p = body; p + sizeof(key) - 1 < end; p++) {
        if (memcmp(p, key, sizeof(key) - 1) != 0) continue;
        p += sizeof(key) - 1;
        while (p < end && (*p == ' ' || *p == ':')) p++;
        if (p >= end || *p != '"' || p + 1 + ID_LEN >= end || p[1 + ID_LEN] != '"') return -1;
        memcpy(out, p + 1, ID_LEN);
        out[ID_LEN] = '\0';
        return 0;
    }
    return -1;
}

static void handle_start_call(struct sink *s, struct conn *c, const struct request *r)
{
    struct record rec = {.at_us = now_us()};
    if (s->token != NULL && !bearer_ok(s, r)) {
        s->rejected++;
        respond_json(c, 401, "{\"error\":\"unauthorized\"}");
        return;
    }
    if (find_booking_id(r->body, r->body_len, rec.id) != 0) {
        s->rejected++;
        respond_json(c, 400, "{\"error\":\"bookingId missing\"}");
        return;
    }
    if (s->n_recs == s->cap_recs) {
        s->cap_recs = s->cap_recs ? s->cap_recs * 2 : 8192;
        s->recs = xrealloc(s->recs, s->cap_recs * sizeof(*s->recs));
    }
    s->recs[s->n_recs++] = rec;
    strset_add(&s->seen, rec.id);
    char body[96];
    snprintf(body, sizeof(body), "{\"callId\":\"call-%zu\",\"status\":\"started\"}", s->n_recs);
    respond_json(c, 200, body);
}

static void handle_token(struct sink *s, struct conn *c)
{
    char body[160];
    snprintf(body, sizeof(body), "{\"access_token\":\"bench-access-token-%llu\",\"expires_in\":3600,"
             "\"token_type\":\"Bearer\"}", (unsigned long long)++s->tokens);
    respond_json(c, 200, body);
}

/* POST /v2/projects/P/locations/L/queues/Q/tasks */
static void handle_create_task(struct sink *s, struct conn *c, const struct request *r)
{
    s->creates++;
    if (!bearer_ok(s, r)) {
        respond_google_error(c, 401, "UNAUTHENTICATED", "Request had invalid authentication credentials.");
        return;
    }
    size_t queue_len = strlen(r->path) - strlen("/tasks");
    json_error_t err;
    json_t *root = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &err);
    json_t *task = json_object_get(root, "task");
    json_t *http = json_object_get(task, "httpRequest");
    const char *name = json_string_value(json_object_get(task, "name"));
    const char *url = json_string_value(json_object_get(http, "url"));
    const char *body = json_string_value(json_object_get(http, "body"));
    const char *sched = json_string_value(json_object_get(task, "scheduleTime"));
    const char *deadline = json_string_value(json_object_get(task, "dispatchDeadline"));
    /* name must be <queue path>/tasks/<id>, the path without the leading "/v2/" */
    bool name_ok = name != NULL && strlen(name) > queue_len - 4 + 7 && strncmp(name, r->path + 4, queue_len - 4) == 0 &&
                   strncmp(name + queue_len - 4, "/tasks/", 7) == 0;
    if (!json_is_object(root) || !name_ok || url == NULL || body == NULL ||
        (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        respond_google_error(c, 400, "INVALID_ARGUMENT", "Request contains an invalid argument.");
        json_decref(root);
        return;
    }
    if (!strset_add(&s->seen, name)) {
        respond_google_error(c, 409, "ALREADY_EXISTS", "Requested entity already exists");
        json_decref(root);
        return;
    }
    if (s->n_tasks == s->cap_tasks) {
        s->cap_tasks = s->cap_tasks ? s->cap_tasks * 2 : 8192;
        s->tasks = xrealloc(s->tasks, s->cap_tasks * sizeof(*s->tasks));
    }
    s->tasks[s->n_tasks++] = (struct task_rec){.url = xstrdup(url), .body_b64 = xstrdup(body)};
    char created[48];
    rfc3339_now(created, sizeof(created));
    json_t *reply = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:s}", "name", name, "scheduleTime",
                              sched != NULL ? sched : created, "createTime", created, "dispatchDeadline",
                              deadline != NULL ? deadline : "600s", "dispatchCount", 0, "responseCount", 0, "view",
                              "BASIC");
    char *text = json_dumps(reply, JSON_COMPACT);
    respond_json(c, 200, text);
    free(text);
    json_decref(reply);
    json_decref(root);
}

static void handle_delete_task(struct sink *s, struct conn *c, const struct request *r)
{
    if (!bearer_ok(s, r)) {
        respond_google_error(c, 401, "UNAUTHENTICATED", "Request had invalid authentication credentials.");
        return;
    }
    if (strset_has(&s->seen, r->path + 4)) respond_json(c, 200, "{}");
    else respond_google_error(c, 404, "NOT_FOUND", "Requested entity was not found.");
}

static void handle_stats(struct sink *s, struct conn *c)
{
    char body[256];
    size_t calls = s->mode == MODE_VOICE ? s->n_recs : s->n_tasks;
    snprintf(body, sizeof(body), "{\"calls\":%zu,\"unique\":%zu,\"rejected\":%llu,\"requests\":%llu,\"creates\":%llu}",
             calls, s->seen.n, (unsigned long long)s->rejected, (unsigned long long)s->requests,
             (unsigned long long)s->creates);
    respond_json(c, 200, body);
}

static void handle_dump(struct sink *s, struct conn *c)
{
    struct buf out = {0};
    char line[128];
    for (size_t i = 0; i < s->n_recs; i++) {
        int n = snprintf(line, sizeof(line), "%s %lld\n", s->recs[i].id, (long long)s->recs[i].at_us);
        buf_append(&out, line, (size_t)n);
    }
    for (size_t i = 0; i < s->n_tasks; i++) {
        buf_append(&out, s->tasks[i].url, strlen(s->tasks[i].url));
        buf_append(&out, "\t", 1);
        buf_append(&out, s->tasks[i].body_b64, strlen(s->tasks[i].body_b64));
        buf_append(&out, "\n", 1);
    }
    respond(c, 200, "text/plain", out.data ? out.data : "", out.len);
    free(out.data);
}

static void handle_reset(struct sink *s, struct conn *c)
{
    for (size_t i = 0; i < s->n_tasks; i++) {
        free(s->tasks[i].url);
        free(s->tasks[i].body_b64);
    }
    s->n_recs = s->n_tasks = 0;
    s->rejected = 0;
    strset_clear(&s->seen);
    respond_json(c, 200, "{}");
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void dispatch_voice(struct sink *s, struct conn *c, const struct request *r, bool post)
{
    if (post && strcmp(r->path, "/api/voice-agent/calls/start-call") == 0) {
        handle_start_call(s, c, r);
    } else {
        s->rejected++;
        respond_json(c, 404, "{\"error\":\"no such route\"}");
    }
}

static void dispatch_cloudtasks(struct sink *s, struct conn *c, const struct request *r, bool post, bool get)
{
    bool v2 = strncmp(r->path, "/v2/projects/", 13) == 0;
    if (post && ends_with(r->path, "/token")) {
        handle_token(s, c);
    } else if (get && strcmp(r->path, "/jwks") == 0 && s->jwks != NULL) {
        respond(c, 200, "application/json", s->jwks, s->jwks_len);
    } else if (post && v2 && ends_with(r->path, "/tasks")) {
        handle_create_task(s, c, r);
    } else if (strcmp(r->method, "DELETE") == 0 && v2) {
        handle_delete_task(s, c, r);
    } else {
        s->rejected++;
        respond_google_error(c, 404, "NOT_FOUND", "no such route");
    }
}

static void dispatch(struct sink *s, struct conn *c, const struct request *r)
{
    bool post = strcmp(r->method, "POST") == 0, get = strcmp(r->method, "GET") == 0;
    if (get && strcmp(r->path, "/_stats") == 0) {
        handle_stats(s, c);
    } else if (get && strcmp(r->path, "/_dump") == 0) {
        handle_dump(s, c);
    } else if (post && strcmp(r->path, "/_reset") == 0) {
        handle_reset(s, c);
    } else {
        s->requests++;
        if (s->mode == MODE_VOICE) dispatch_voice(s, c, r, post);
        else dispatch_cloudtasks(s, c, r, post, get);
    }
}

/* Parses one complete request at the start of c->in. Returns its length, 0 when incomplete, -1 when bad. */
static long parse_request(struct conn *c, struct request *r, bool *close_after)
{
    char *data = c->in.data;
    char *end = memmem(data, c->in.len, "\r\n\r\n", 4);
    if (end == NULL) return c->in.len > 65536 ? -1 : 0;
    size_t head_len = (size_t)(end - data) + 4;
    memset(r, 0, sizeof(*r));
    char *sp1 = memchr(data, ' ', head_len);
    char *sp2 = sp1 ? memchr(sp1 + 1, ' ', head_len - (size_t)(sp1 + 1 - data)) : NULL;
    if (sp1 == NULL || sp2 == NULL || sp1 - data >= (long)sizeof(r->method) ||
        sp2 - sp1 - 1 >= (long)sizeof(r->path))
        return -1;
    memcpy(r->method, data, (size_t)(sp1 - data));
    memcpy(r->path, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    char *q = strchr(r->path, '?');
    if (q != NULL) *q = '\0';
    size_t content_length = 0;
    char *line = (char *)memchr(data, '\n', head_len) + 1;
    while (line < end) {
        char *eol = memchr(line, '\r', (size_t)(end - line) + 1);
        char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon != NULL) {
            char *v = colon + 1;
            while (v < eol && *v == ' ') v++;
            size_t name_len = (size_t)(colon - line);
            if (name_len == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
                content_length = strtoul(v, NULL, 10);
            } else if (name_len == 13 && strncasecmp(line, "Authorization", 13) == 0) {
                r->authorization = v;
                r->auth_len = (size_t)(eol - v);
            } else if (name_len == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0) {
                return -1;
            } else if (name_len == 10 && strncasecmp(line, "Connection", 10) == 0 && strncasecmp(v, "close", 5) == 0) {
                *close_after = true;
            }
        }
        line = eol + 2;
    }
    if (content_length > MAX_REQUEST_BYTES) return -1;
    if (c->in.len < head_len + content_length) return 0;
    r->body = data + head_len;
    r->body_len = content_length;
    return (long)(head_len + content_length);
}

/* ---------- the event loop ---------- */

static int flush_out(struct conn *c)
{
    while (c->out.len > 0) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (n < 0) return errno == EAGAIN ? 1 : -1;
        buf_consume(&c->out, (size_t)n);
    }
    return 0;
}

static void conn_close(struct sink *s, struct conn *c)
{
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in.data);
    free(c->out.data);
    free(c);
}

static void on_readable(struct sink *s, struct conn *c)
{
    char chunk[65536];
    bool close_after = false;
    for (;;) {
        ssize_t n = recv(c->fd, chunk, sizeof(chunk), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_close(s, c);
            return;
        }
        if (n < 0) break;
        buf_append(&c->in, chunk, (size_t)n);
    }
    for (;;) {
        struct request r;
        long used = parse_request(c, &r, &close_after);
        if (used < 0) {
            respond_json(c, 411, "{\"error\":\"bad request\"}");
            close_after = true;
            break;
        }
        if (used == 0) break;
        dispatch(s, c, &r);
        buf_consume(&c->in, (size_t)used);
        if (close_after) break;
    }
    int rc = flush_out(c);
    if (rc < 0 || (rc == 0 && close_after)) {
        conn_close(s, c);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | (rc > 0 ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void accept_all(struct sink *s, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        if (c == NULL) die("calloc");
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
    }
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 1024) != 0) die("bind/listen");
    return fd;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) die(path);
    struct buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) buf_append(&b, chunk, n);
    fclose(f);
    *len = b.len;
    return b.data;
}

int main(int argc, char **argv)
{
    struct sink s = {.mode = MODE_VOICE};
    int port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--mode") == 0) s.mode = strcmp(argv[i + 1], "cloudtasks") == 0 ? MODE_CLOUDTASKS : MODE_VOICE;
        else if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--token") == 0) s.token = argv[i + 1];
        else if (strcmp(argv[i], "--jwks") == 0) s.jwks = read_file(argv[i + 1], &s.jwks_len);
        else {
            fprintf(stderr, "usage: sink --mode voice|cloudtasks [--port N] [--token T] [--jwks FILE]\n");
            return 2;
        }
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int lfd = listen_on(port);
    struct sockaddr_in addr;
    socklen_t alen = sizeof(addr);
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    s.epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(s.epfd, EPOLL_CTL_ADD, lfd, &lev);
    printf("{\"port\":%d}\n", ntohs(addr.sin_port));
    fflush(stdout);
    struct epoll_event events[MAX_EVENTS];
    while (!stop_requested) {
        int n = epoll_wait(s.epfd, events, MAX_EVENTS, 500);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) accept_all(&s, lfd);
            else if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(&s, c);
            else if (flush_out(c) < 0) conn_close(&s, c);
            else if (c->out.len == 0) {
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(s.epfd, EPOLL_CTL_MOD, c->fd, &ev);
            }
        }
    }
    close(lfd);
    return 0;
}
