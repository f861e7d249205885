/*
 * utils/log — JSON-lines logger (see log.h).  jansson does the escaping, so any
 * byte sequence a caller passes (quotes, newlines, control bytes, invalid UTF-8)
 * comes out as valid JSON: invalid UTF-8 is replaced byte-wise by U+FFFD before
 * encoding.  Lines are written with one write(2) so concurrent writers never
 * interleave within a line.  Redaction (secrets, their pieces, URL userinfo)
 * happens in the same pass over each value, before jansson escapes it.
 */
#include "utils/log.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* Secret pieces are found through a bitmap of their hashed 4-byte windows: one
 * bit test per output byte, and only on a hit a comparison with the secrets. */
#define WINDOW_HASH_BITS 16
#define WINDOW_MAP_BYTES ((1u << WINDOW_HASH_BITS) / 8)
_Static_assert(LOG_SECRET_MIN == sizeof(uint32_t), "a window is one 32-bit word");

static const char redacted_mark[] = "[REDACTED]";

void logger_init(struct logger *lg, enum log_level level, int fd)
{
    memset(lg, 0, sizeof(*lg));
    lg->level = level;
    lg->fd = fd;
}

void log_clear_secrets(struct logger *lg)
{
    for (int i = 0; i < lg->n_secrets; i++) {
        explicit_bzero(lg->secrets[i], strlen(lg->secrets[i]));
        free(lg->secrets[i]);
    }
    lg->n_secrets = 0;
    free(lg->windows);
    lg->windows = NULL;
}

void logger_free(struct logger *lg)
{
    log_clear_secrets(lg);
    free(lg->trace_project);
    lg->trace_project = NULL;
    free(lg->secrets);
    lg->secrets = NULL;
    lg->cap_secrets = 0;
}

static uint32_t window_hash(const char *s)
{
    uint32_t w;
    memcpy(&w, s, sizeof(w));
    return (w * 2654435761u) >> (32 - WINDOW_HASH_BITS);
}

static bool window_marked(const struct logger *lg, const char *s)
{
    uint32_t h = window_hash(s);
    return (lg->windows[h >> 3] >> (h & 7)) & 1u;
}

static void mark_windows(struct logger *lg, const char *secret, size_t len)
{
    for (size_t i = 0; i + LOG_SECRET_MIN <= len; i++) {
        uint32_t h = window_hash(secret + i);
        lg->windows[h >> 3] |= (unsigned char)(1u << (h & 7));
    }
}

static bool secret_known(const struct logger *lg, const char *secret)
{
    for (int i = 0; i < lg->n_secrets; i++)
        if (strcmp(lg->secrets[i], secret) == 0) return true;
    return false;
}

bool log_is_terminal(const struct logger *lg)
{
    return lg != NULL && isatty(lg->fd) == 1;
}

void log_set_format(struct logger *lg, enum log_format format, const char *trace_project)
{
    lg->format = format;
    free(lg->trace_project);
    lg->trace_project = trace_project != NULL && trace_project[0] != '\0' ? strdup(trace_project) : NULL;
}

int log_format_parse(const char *s, enum log_format *out)
{
    if (strcmp(s, "json") == 0) *out = LOG_FORMAT_JSON;
    else if (strcmp(s, "gcp") == 0) *out = LOG_FORMAT_GCP;
    else return -1;
    return 0;
}

void log_add_secret(struct logger *lg, const char *secret)
{
    if (secret == NULL || strlen(secret) < LOG_SECRET_MIN || lg->n_secrets >= LOG_MAX_SECRETS) return;
    if (secret_known(lg, secret)) return;
    if (lg->windows == NULL && (lg->windows = calloc(1, WINDOW_MAP_BYTES)) == NULL) return;
    if (lg->n_secrets == lg->cap_secrets) {
        int cap = lg->cap_secrets > 0 ? lg->cap_secrets * 2 : 8;
        char **grown = realloc(lg->secrets, sizeof(*grown) * (size_t)cap);
        if (grown == NULL) return;
        lg->secrets = grown;
        lg->cap_secrets = cap;
    }
    char *copy = strdup(secret);
    if (copy == NULL) return;
    lg->secrets[lg->n_secrets++] = copy;
    mark_windows(lg, copy, strlen(copy));
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *log_level_name(enum log_level lvl)
{
    return (lvl >= LOG_LEVEL_DEBUG && lvl <= LOG_LEVEL_ERROR) ? level_names[lvl] : "info";
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) n = 3;
    else if (c >= 0xF0 && c <= 0xF4) n = 4;
    else return 0;
    if (n > avail) return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0;   /* overlong */
    if (c == 0xED && s[1] > 0x9F) return 0;   /* surrogates */
    if (c == 0xF0 && s[1] < 0x90) return 0;   /* overlong */
    if (c == 0xF4 && s[1] > 0x8F) return 0;   /* > U+10FFFF */
    return n;
}

/* Length of the longest whole registered secret starting at s (0 = none), so
 * a secret that is a prefix of another never leaves the other's tail visible. */
static size_t whole_secret_at(const struct logger *lg, const char *s, size_t avail)
{
    size_t best = 0;
    for (int k = 0; k < lg->n_secrets; k++) {
        size_t sl = strlen(lg->secrets[k]);
        if (sl > best && sl <= avail && memcmp(s, lg->secrets[k], sl) == 0) best = sl;
    }
    return best;
}

/* Length of the longest piece (>= LOG_SECRET_MIN bytes) of any registered
 * secret starting at s, 0 = none. */
static size_t secret_piece_at(const struct logger *lg, const char *s, size_t avail)
{
    size_t best = 0;
    for (int k = 0; k < lg->n_secrets; k++) {
        const char *v = lg->secrets[k];
        size_t m = strlen(v);
        for (size_t j = 0; j + LOG_SECRET_MIN <= m; j++) {
            size_t l = 0;
            while (l < avail && j + l < m && v[j + l] == s[l]) l++;
            if (l >= LOG_SECRET_MIN && l > best) best = l;
        }
    }
    return best;
}

/* Identifiers in free text (UUIDs, hex request ids and task names) are runs of
 * at least ID_RUN_MIN hex digits and dashes; a hex secret shares 4 bytes with
 * about one in a hundred of them by chance.  Inside such a run only pieces of
 * ID_PIECE_MIN bytes or more (never a coincidence) and whole secrets count. */
#define ID_RUN_MIN 16
#define ID_PIECE_MIN 8

static bool is_id_byte(char c)
{
    return isxdigit((unsigned char)c) || c == '-';
}

/* Length of the identifier run starting at s[i] (a run's first byte), else 0. */
static size_t id_run_at(const char *s, size_t i, size_t len)
{
    if (i > 0 && is_id_byte(s[i - 1])) return 0;
    size_t n = 0;
    while (i + n < len && is_id_byte(s[i + n])) n++;
    return n >= ID_RUN_MIN ? n : 0;
}

/* Bytes to redact at s: the longest whole secret, or with `pieces` the longest
 * piece of one (not a short one inside an identifier run that ends id_left
 * bytes further on; id_left = 0 outside any). */
static size_t redactable_at(const struct logger *lg, const char *s, size_t avail, bool pieces, size_t id_left)
{
    if (avail < LOG_SECRET_MIN || !window_marked(lg, s)) return 0; /* every candidate starts with a window */
    size_t whole = whole_secret_at(lg, s, avail);
    if (!pieces) return whole;
    size_t piece = secret_piece_at(lg, s, avail);
    bool chance = piece < ID_PIECE_MIN && piece <= id_left;
    return chance ? whole : piece;
}

/* At s = "://...": the length of the URL's userinfo ("user:pass" before the
 * last '@' of the authority), 0 when there is none. */
static size_t url_userinfo_len(const char *s)
{
    if (strncmp(s, "://", 3) != 0) return 0;
    size_t at = 0;
    for (size_t i = 3; s[i] != '\0' && strchr("/?#\"'<> \t\r\n", s[i]) == NULL; i++)
        if (s[i] == '@') at = i;
    return at > 3 ? at - 3 : 0;
}

struct outbuf {
    char *p;
    size_t len, cap;
};

static int out_put(struct outbuf *o, const char *data, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        size_t cap = (o->len + n + 1) * 2;
        char *grown = realloc(o->p, cap);
        if (grown == NULL) return -1;
        o->p = grown;
        o->cap = cap;
    }
    memcpy(o->p + o->len, data, n);
    o->len += n;
    return 0;
}

/* Copy of s with URL userinfo and secrets redacted (`pieces`: also every piece
 * of a secret, else whole secrets only) and invalid UTF-8 replaced by U+FFFD. */
static char *sanitize_value(const struct logger *lg, const char *s, bool pieces)
{
    size_t len = strlen(s);
    bool secrets = lg != NULL && lg->n_secrets > 0;
    struct outbuf o = {.p = malloc(len + 1), .cap = len + 1};
    if (o.p == NULL) return NULL;
    int rc = 0;
    size_t id_end = 0; /* end of the identifier run i is in, if any */
    for (size_t i = 0; i < len && rc == 0;) {
        size_t n;
        if (i >= id_end && (n = id_run_at(s, i, len)) > 0) id_end = i + n;
        if (s[i] == ':' && (n = url_userinfo_len(s + i)) > 0) {
            rc = out_put(&o, "://", 3) | out_put(&o, redacted_mark, sizeof(redacted_mark) - 1);
            i += 3 + n;
        } else if (secrets && (n = redactable_at(lg, s + i, len - i, pieces, i < id_end ? id_end - i : 0)) > 0) {
            rc = out_put(&o, redacted_mark, sizeof(redacted_mark) - 1);
            i += n;
        } else if ((n = utf8_seq_len((const unsigned char *)s + i, len - i)) == 0) {
            rc = out_put(&o, "\xEF\xBF\xBD", 3);
            i += 1;
        } else {
            rc = out_put(&o, s + i, n);
            i += n;
        }
    }
    if (rc != 0) {
        free(o.p);
        return NULL;
    }
    o.p[o.len] = '\0';
    return o.p;
}

char *log_redact(const struct logger *lg, const char *text)
{
    return text != NULL ? sanitize_value(lg, text, true) : NULL;
}

static int set_clean(json_t *obj, const struct logger *lg, const char *key, const char *value, bool pieces)
{
    if (value == NULL) return 0;
    char *clean = sanitize_value(lg, value, pieces);
    if (clean == NULL) return -1;
    int rc = json_object_set_new(obj, key, json_string(clean));
    free(clean);
    return rc;
}

static void format_ts(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

/* The context as name/value pairs (NULL values included), in line order. */
#define CTX_PAIRS 6
static void ctx_pairs(const struct log_ctx *ctx, const char *out[2 * CTX_PAIRS])
{
    const char *names[CTX_PAIRS] = {"request_id", "tenant_id", "booking_id", "schema", "task_name", "trace_id"};
    const char *values[CTX_PAIRS] = {ctx->request_id, ctx->tenant_id, ctx->booking_id,
                                     ctx->schema,     ctx->task_name, ctx->trace_id};
    for (size_t i = 0; i < CTX_PAIRS; i++) {
        out[2 * i] = names[i];
        out[2 * i + 1] = values[i];
    }
}

static bool gcp_trace(const struct logger *lg, const char *name)
{
    return lg != NULL && lg->format == LOG_FORMAT_GCP && lg->trace_project != NULL && strcmp(name, "trace_id") == 0;
}

/* gcp: the trace as Cloud Logging's resource name of it. */
static int set_trace(json_t *obj, const struct logger *lg, const char *trace_id)
{
    char name[300];
    snprintf(name, sizeof(name), "projects/%s/traces/%s", lg->trace_project, trace_id);
    return set_clean(obj, lg, "logging.googleapis.com/trace", name, false);
}

static const char *gcp_severity(enum log_level lvl)
{
    static const char *const names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
    return (lvl >= LOG_LEVEL_DEBUG && lvl <= LOG_LEVEL_ERROR) ? names[lvl] : "INFO";
}

static char *format_json_line(const struct logger *lg, enum log_level lvl, const struct log_ctx *ctx,
                              const char *const *fields, const char *msg)
{
    char ts[40];
    format_ts(ts, sizeof(ts));
    json_t *obj = json_object();
    if (obj == NULL) return NULL;
    bool gcp = lg != NULL && lg->format == LOG_FORMAT_GCP;
    int rc = 0;
    rc |= json_object_set_new(obj, gcp ? "time" : "ts", json_string(ts));
    rc |= json_object_set_new(obj, gcp ? "severity" : "level",
                              json_string(gcp ? gcp_severity(lvl) : log_level_name(lvl)));
    rc |= set_clean(obj, lg, gcp ? "message" : "msg", msg, true);
    if (ctx != NULL) { /* identifiers: whole secrets only (see log.h) */
        const char *pairs[2 * CTX_PAIRS];
        ctx_pairs(ctx, pairs);
        for (int i = 0; i < 2 * CTX_PAIRS; i += 2) {
            if (pairs[i + 1] != NULL && gcp_trace(lg, pairs[i])) rc |= set_trace(obj, lg, pairs[i + 1]);
            else rc |= set_clean(obj, lg, pairs[i], pairs[i + 1], false);
        }
    }
    for (size_t i = 0; fields != NULL && fields[i] != NULL && fields[i + 1] != NULL; i += 2) {
        char *key = sanitize_value(lg, fields[i], false);
        if (key == NULL) { rc = -1; break; }
        rc |= set_clean(obj, lg, key, fields[i + 1], true);
        free(key);
    }
    char *line = rc == 0 ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(obj);
    return line;
}

/* ---- text: plain lines for a terminal ---- */

struct text_buf {
    char *s;
    size_t len, cap;
    bool failed;
};

/* Append s sanitized (secrets redacted, invalid UTF-8 replaced), control bytes as spaces. */
static void text_add(struct text_buf *b, const struct logger *lg, const char *s)
{
    char *clean = b->failed ? NULL : sanitize_value(lg, s, true);
    size_t n = clean != NULL ? strlen(clean) : 0;
    if (clean != NULL && b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *grown = realloc(b->s, cap);
        if (grown == NULL) {
            free(clean);
            clean = NULL;
        } else {
            b->s = grown;
            b->cap = cap;
        }
    }
    if (clean == NULL) {
        b->failed = true;
        return;
    }
    for (const char *p = clean; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        b->s[b->len++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    b->s[b->len] = '\0';
    free(clean);
}

static void text_pair(struct text_buf *b, const struct logger *lg, bool *first, const char *k, const char *v)
{
    if (k == NULL || v == NULL) return;
    text_add(b, lg, *first ? " (" : ", ");
    text_add(b, lg, k);
    text_add(b, lg, "=");
    text_add(b, lg, v);
    *first = false;
}

static char *format_text_line(const struct logger *lg, enum log_level lvl, const struct log_ctx *ctx,
                              const char *const *fields, const char *msg)
{
    struct text_buf b = {0};
    if (lvl == LOG_LEVEL_WARN) text_add(&b, lg, "warning: ");
    else if (lvl == LOG_LEVEL_ERROR) text_add(&b, lg, "error: ");
    text_add(&b, lg, msg != NULL ? msg : "");
    bool first = true;
    if (ctx != NULL) {
        const char *pairs[2 * CTX_PAIRS];
        ctx_pairs(ctx, pairs);
        for (int i = 0; i < 2 * CTX_PAIRS; i += 2) text_pair(&b, lg, &first, pairs[i], pairs[i + 1]);
    }
    for (size_t i = 0; fields != NULL && fields[i] != NULL && fields[i + 1] != NULL; i += 2)
        text_pair(&b, lg, &first, fields[i], fields[i + 1]);
    if (!first) text_add(&b, lg, ")");
    if (b.failed) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

char *log_format_line(const struct logger *lg, enum log_level lvl, const struct log_ctx *ctx,
                      const char *const *fields, const char *msg)
{
    if (lg != NULL && lg->format == LOG_FORMAT_TEXT) return format_text_line(lg, lvl, ctx, fields, msg);
    return format_json_line(lg, lvl, ctx, fields, msg);
}


void log_vwrite(struct logger *lg, enum log_level lvl, const struct log_ctx *ctx,
                const char *const *fields, const char *fmt, va_list ap)
{
    if (!log_enabled(lg, lvl)) return;
    /* Format the whole message before redacting: cutting it first could leave
     * the beginning of a secret in the line without the whole to match. */
    char msgbuf[1024];
    char *msg = msgbuf;
    va_list again;
    va_copy(again, ap);
    int need = vsnprintf(msgbuf, sizeof(msgbuf), fmt, ap);
    if (need >= (int)sizeof(msgbuf)) {
        msg = malloc((size_t)need + 1);
        if (msg != NULL) vsnprintf(msg, (size_t)need + 1, fmt, again);
    }
    va_end(again);
    char *line = need >= 0 && msg != NULL ? log_format_line(lg, lvl, ctx, fields, msg) : NULL;
    if (msg != msgbuf) free(msg);
    if (line == NULL) return;
    size_t len = strlen(line);
    line[len] = '\n'; /* json_dumps NUL becomes the newline; we write len+1 bytes */
    const char *p = line;
    size_t left = len + 1;
    while (left > 0) {
        ssize_t w = write(lg->fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    free(line);
}

void log_write(struct logger *lg, enum log_level lvl, const struct log_ctx *ctx,
               const char *const *fields, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(lg, lvl, ctx, fields, fmt, ap);
    va_end(ap);
}

void log_writec(struct logger *lg, enum log_level lvl, const struct log_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(lg, lvl, ctx, NULL, fmt, ap);
    va_end(ap);
}
