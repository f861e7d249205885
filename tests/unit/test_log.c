/*
 * Unit tests for utils/log: every line is one valid JSON object with ts/level/
 * msg and the context fields that are set; hostile bytes (quotes, control
 * characters, invalid UTF-8) still produce valid JSON; the level is checked
 * before any argument is evaluated; log_write emits exactly one line per call;
 * registered secrets are redacted wherever they appear, and so is every piece
 * of 4 or more bytes of them outside the context identifiers; URL userinfo is
 * replaced; log_redact() does the same for other sinks.
 *
 * Lines are either built with log_format_line() or written by log_write() into
 * a pipe and read back.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "utils/log.h"

/* ---- helpers ------------------------------------------------------------ */

struct pipe_logger {
    struct logger lg;
    int rd, wr;
};

static int pipe_logger_setup(void **state)
{
    struct pipe_logger *pl = calloc(1, sizeof(*pl));
    int fds[2];
    if (pl == NULL || pipe2(fds, O_CLOEXEC) != 0) return -1;
    pl->rd = fds[0];
    pl->wr = fds[1];
    if (fcntl(pl->rd, F_SETFL, O_NONBLOCK) != 0) return -1;
    logger_init(&pl->lg, LOG_LEVEL_INFO, pl->wr);
    *state = pl;
    return 0;
}

static int pipe_logger_teardown(void **state)
{
    struct pipe_logger *pl = *state;
    logger_free(&pl->lg);
    close(pl->rd);
    close(pl->wr);
    free(pl);
    return 0;
}

/* Everything currently buffered in the pipe, NUL-terminated (caller frees). */
static char *drain_pipe(int fd, size_t *len_out)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n > 0) {
            len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        break;
    }
    buf[len] = '\0';
    if (len_out != NULL) *len_out = len;
    return buf;
}

static size_t count_char(const char *s, size_t len, char c)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += s[i] == c;
    return n;
}

/* Parse a line that must be exactly one JSON object. */
static json_t *parse_object(const char *line)
{
    json_error_t err;
    json_t *obj = json_loads(line, JSON_REJECT_DUPLICATES, &err);
    if (obj == NULL) fail_msg("not JSON (%s): %s", err.text, line);
    assert_true(json_is_object(obj));
    return obj;
}

static json_t *format_object(const struct logger *lg, enum log_level lvl, const struct log_ctx *ctx,
                             const char *const *fields, const char *msg)
{
    char *line = log_format_line(lg, lvl, ctx, fields, msg);
    assert_non_null(line);
    assert_null(strchr(line, '\n'));
    json_t *obj = parse_object(line);
    free(line);
    return obj;
}

static const char *get_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) fail_msg("missing key %s", key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

/* msg of a line formatted from `msg` by a logger without secrets. */
static char *roundtrip_msg(const char *msg)
{
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_DEBUG, -1);
    json_t *obj = format_object(&lg, LOG_LEVEL_INFO, NULL, NULL, msg);
    char *out = strdup(get_str(obj, "msg"));
    json_decref(obj);
    logger_free(&lg);
    return out;
}

static void assert_roundtrip(const char *in, const char *expected)
{
    char *out = roundtrip_msg(in);
    assert_string_equal(out, expected);
    free(out);
}

#define FFFD "\xEF\xBF\xBD"

/* ---- shape of a line ---------------------------------------------------- */

static void log_format_line__plain_message__has_ts_level_msg_only(void **state)
{
    (void)state;
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, -1);
    time_t before = time(NULL);
    json_t *obj = format_object(&lg, LOG_LEVEL_WARN, NULL, NULL, "hello");
    time_t after = time(NULL);

    assert_int_equal(json_object_size(obj), 3);
    assert_string_equal(get_str(obj, "level"), "warn");
    assert_string_equal(get_str(obj, "msg"), "hello");

    const char *ts = get_str(obj, "ts");
    assert_int_equal(strlen(ts), 24); /* 2026-11-28T16:00:00.000Z */
    struct tm tm = {0};
    int ms = -1;
    char z = 0;
    assert_int_equal(sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                            &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &z),
                     8);
    assert_int_equal(z, 'Z');
    assert_in_range(ms, 0, 999);
    assert_true(ts[4] == '-' && ts[7] == '-' && ts[10] == 'T' && ts[13] == ':' && ts[16] == ':' && ts[19] == '.');
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    assert_in_range(t, before, after); /* UTC, not local time */
    json_decref(obj);
    logger_free(&lg);
}

static void log_format_line__each_level__named(void **state)
{
    (void)state;
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = LOG_LEVEL_DEBUG; i <= LOG_LEVEL_ERROR; i++) {
        json_t *obj = format_object(NULL, (enum log_level)i, NULL, NULL, "x");
        assert_string_equal(get_str(obj, "level"), names[i]);
        json_decref(obj);
    }
}

static void log_format_line__full_context__all_fields_present(void **state)
{
    (void)state;
    struct log_ctx ctx = {.request_id = "req-1", .tenant_id = "t-1", .booking_id = "b-1",
                          .schema = "tenant_a", .task_name = "task-1"};
    json_t *obj = format_object(NULL, LOG_LEVEL_INFO, &ctx, NULL, "m");
    assert_int_equal(json_object_size(obj), 8);
    assert_string_equal(get_str(obj, "request_id"), "req-1");
    assert_string_equal(get_str(obj, "tenant_id"), "t-1");
    assert_string_equal(get_str(obj, "booking_id"), "b-1");
    assert_string_equal(get_str(obj, "schema"), "tenant_a");
    assert_string_equal(get_str(obj, "task_name"), "task-1");
    json_decref(obj);
}

static void log_format_line__partial_context__null_members_omitted(void **state)
{
    (void)state;
    struct log_ctx ctx = {.tenant_id = "t-1", .booking_id = "b-1"};
    json_t *obj = format_object(NULL, LOG_LEVEL_INFO, &ctx, NULL, "m");
    assert_int_equal(json_object_size(obj), 5);
    assert_string_equal(get_str(obj, "tenant_id"), "t-1");
    assert_string_equal(get_str(obj, "booking_id"), "b-1");
    assert_null(json_object_get(obj, "request_id"));
    assert_null(json_object_get(obj, "schema"));
    assert_null(json_object_get(obj, "task_name"));
    json_decref(obj);
}

static void log_format_line__extra_fields__added_as_strings(void **state)
{
    (void)state;
    const char *fields[] = {"error", "boom", "status", "503", NULL};
    struct log_ctx ctx = {.schema = "s"};
    json_t *obj = format_object(NULL, LOG_LEVEL_ERROR, &ctx, fields, "m");
    assert_int_equal(json_object_size(obj), 6);
    assert_string_equal(get_str(obj, "error"), "boom");
    assert_string_equal(get_str(obj, "status"), "503");
    assert_string_equal(get_str(obj, "schema"), "s");
    json_decref(obj);
}

/* ---- escaping ------------------------------------------------------------ */

static void log_format_line__quotes_backslashes_newlines__roundtrip(void **state)
{
    (void)state;
    assert_roundtrip("say \"hi\" \\ back\\slash\nnew\r\ttab", "say \"hi\" \\ back\\slash\nnew\r\ttab");
}

static void log_format_line__control_bytes__escaped_and_roundtrip(void **state)
{
    (void)state;
    char *line = log_format_line(NULL, LOG_LEVEL_INFO, NULL, NULL, "a\x01" "b\x1f" "c\x7f");
    assert_non_null(line);
    for (const char *p = line; *p; p++) assert_true((unsigned char)*p >= 0x20);
    json_t *obj = parse_object(line);
    assert_string_equal(get_str(obj, "msg"), "a\x01" "b\x1f" "c\x7f");
    json_decref(obj);
    free(line);
}

static void log_format_line__valid_multibyte_utf8__kept(void **state)
{
    (void)state;
    assert_roundtrip("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF",
                     "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF");
}

static void log_format_line__invalid_utf8__replaced_by_fffd(void **state)
{
    (void)state;
    assert_roundtrip("a\xFF" "b", "a" FFFD "b");                        /* never valid */
    assert_roundtrip("a\xFE", "a" FFFD);
    assert_roundtrip("x\xE2\x82", "x" FFFD FFFD);                         /* truncated at end */
    assert_roundtrip("x\xE2\x82y", "x" FFFD FFFD "y");                    /* truncated mid-string */
    assert_roundtrip("\xF0\x9F\x98", FFFD FFFD FFFD);
    assert_roundtrip("\x80", FFFD);                                       /* lone continuation */
    assert_roundtrip("\xC0\xAF", FFFD FFFD);                              /* overlong '/' */
    assert_roundtrip("\xC1\xBF", FFFD FFFD);
    assert_roundtrip("\xE0\x80\xAF", FFFD FFFD FFFD);                     /* overlong 3-byte */
    assert_roundtrip("\xF0\x80\x80\xAF", FFFD FFFD FFFD FFFD);            /* overlong 4-byte */
    assert_roundtrip("\xED\xA0\x80", FFFD FFFD FFFD);                     /* high surrogate */
    assert_roundtrip("\xED\xBF\xBF", FFFD FFFD FFFD);                     /* low surrogate */
    assert_roundtrip("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD);            /* > U+10FFFF */
    assert_roundtrip("\xF5\x80\x80\x80", FFFD FFFD FFFD FFFD);
}

static void log_format_line__invalid_utf8_in_fields_and_context__valid_json(void **state)
{
    (void)state;
    const char *fields[] = {"k\xFF", "v\xC0\xAF", NULL};
    struct log_ctx ctx = {.tenant_id = "t\xED\xA0\x80"};
    json_t *obj = format_object(NULL, LOG_LEVEL_INFO, &ctx, fields, "m");
    assert_string_equal(get_str(obj, "k" FFFD), "v" FFFD FFFD);
    assert_string_equal(get_str(obj, "tenant_id"), "t" FFFD FFFD FFFD);
    json_decref(obj);
}

/* ---- level filtering and writing ----------------------------------------- */

static void log_macros__below_level__arguments_not_evaluated(void **state)
{
    struct pipe_logger *pl = *state;
    int counter = 0;
    LOG_DEBUG(&pl->lg, NULL, "%d", counter++);
    LOG_KV(&pl->lg, LOG_LEVEL_DEBUG, NULL, ((const char *[]){"k", "v", NULL}), "%d", counter++);
    assert_int_equal(counter, 0);
    char *out = drain_pipe(pl->rd, NULL);
    assert_string_equal(out, "");
    free(out);

    pl->lg.level = LOG_LEVEL_DEBUG;
    LOG_DEBUG(&pl->lg, NULL, "%d", counter++);
    assert_int_equal(counter, 1);
    out = drain_pipe(pl->rd, NULL);
    json_t *obj = parse_object(out);
    assert_string_equal(get_str(obj, "msg"), "0");
    json_decref(obj);
    free(out);
}

static void log_macros__at_or_above_level__written(void **state)
{
    struct pipe_logger *pl = *state;
    pl->lg.level = LOG_LEVEL_WARN;
    LOG_INFO(&pl->lg, NULL, "info");
    LOG_WARN(&pl->lg, NULL, "warn");
    LOG_ERROR(&pl->lg, NULL, "error");
    size_t len;
    char *out = drain_pipe(pl->rd, &len);
    assert_int_equal(count_char(out, len, '\n'), 2);
    assert_null(strstr(out, "\"info\""));
    assert_non_null(strstr(out, "\"msg\":\"warn\""));
    assert_non_null(strstr(out, "\"msg\":\"error\""));
    free(out);
}

static void log_write__below_level__nothing_written(void **state)
{
    struct pipe_logger *pl = *state;
    log_write(&pl->lg, LOG_LEVEL_DEBUG, NULL, NULL, "hidden");
    char *out = drain_pipe(pl->rd, NULL);
    assert_string_equal(out, "");
    free(out);
}

static void log_write__several_calls__one_json_line_each(void **state)
{
    struct pipe_logger *pl = *state;
    struct log_ctx ctx = {.booking_id = "b"};
    log_write(&pl->lg, LOG_LEVEL_INFO, NULL, NULL, "first %s", "line");
    log_write(&pl->lg, LOG_LEVEL_WARN, &ctx, NULL, "second\nwith newline");
    log_write(&pl->lg, LOG_LEVEL_ERROR, NULL, (const char *[]){"e", "x\ny", NULL}, "third %d", 3);
    size_t len;
    char *out = drain_pipe(pl->rd, &len);
    assert_int_equal(count_char(out, len, '\n'), 3);
    assert_true(len > 0 && out[len - 1] == '\n');
    static const char *const msgs[] = {"first line", "second\nwith newline", "third 3"};
    char *save = NULL;
    int i = 0;
    for (char *line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save), i++) {
        assert_true(i < 3);
        json_t *obj = parse_object(line);
        assert_string_equal(get_str(obj, "msg"), msgs[i]);
        json_decref(obj);
    }
    assert_int_equal(i, 3);
    free(out);
}

static void log_write__message_longer_than_1k__kept_whole_in_one_line(void **state)
{
    struct pipe_logger *pl = *state;
    char big[3000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    big[1022] = '\xC3'; /* a two-byte sequence around the 1 KiB mark */
    big[1023] = '\xA9';
    log_write(&pl->lg, LOG_LEVEL_INFO, NULL, NULL, "%s", big);
    size_t len;
    char *out = drain_pipe(pl->rd, &len);
    assert_int_equal(count_char(out, len, '\n'), 1);
    out[len - 1] = '\0';
    json_t *obj = parse_object(out);
    assert_string_equal(get_str(obj, "msg"), big);
    json_decref(obj);
    free(out);
}

/* ---- secrets -------------------------------------------------------------- */

#define SECRET "s3cr3t-T0ken-value"

static void log_format_line__secret_twice_in_msg__both_redacted(void **state)
{
    (void)state;
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, -1);
    log_add_secret(&lg, SECRET);
    char *line = log_format_line(&lg, LOG_LEVEL_INFO, NULL, NULL, "a " SECRET " b " SECRET SECRET " c");
    assert_non_null(line);
    assert_null(strstr(line, SECRET));
    assert_null(strstr(line, "s3cr3t"));
    json_t *obj = parse_object(line);
    assert_string_equal(get_str(obj, "msg"), "a [REDACTED] b [REDACTED][REDACTED] c");
    json_decref(obj);
    free(line);
    logger_free(&lg);
}

static void log_format_line__secret_in_fields_and_context__redacted(void **state)
{
    (void)state;
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, -1);
    log_add_secret(&lg, "other-secret");
    log_add_secret(&lg, SECRET);
    const char *fields[] = {"error", "token=" SECRET ";again=" SECRET, "key-" SECRET, "v", NULL};
    struct log_ctx ctx = {.request_id = SECRET, .task_name = "x" SECRET "y"};
    char *line = log_format_line(&lg, LOG_LEVEL_INFO, &ctx, fields, "other-secret");
    assert_non_null(line);
    assert_null(strstr(line, SECRET));
    assert_null(strstr(line, "other-secret"));
    json_t *obj = parse_object(line);
    assert_string_equal(get_str(obj, "msg"), "[REDACTED]");
    assert_string_equal(get_str(obj, "error"), "token=[REDACTED];again=[REDACTED]");
    assert_string_equal(get_str(obj, "key-[REDACTED]"), "v");
    assert_string_equal(get_str(obj, "request_id"), "[REDACTED]");
    assert_string_equal(get_str(obj, "task_name"), "x[REDACTED]y");
    json_decref(obj);
    free(line);
    logger_free(&lg);
}

static void log_write__secret_in_format_argument__redacted(void **state)
{
    struct pipe_logger *pl = *state;
    log_add_secret(&pl->lg, SECRET);
    LOG_INFO(&pl->lg, NULL, "calling with %s and %s", SECRET, SECRET);
    char *out = drain_pipe(pl->rd, NULL);
    assert_null(strstr(out, SECRET));
    assert_non_null(strstr(out, "calling with [REDACTED] and [REDACTED]"));
    free(out);
}

static void log_write__secret_across_message_size_limit__no_prefix_leaks(void **state)
{
    struct pipe_logger *pl = *state;
    log_add_secret(&pl->lg, SECRET);
    for (size_t pad = 1000; pad < 1030; pad++) {
        char *padding = malloc(pad + 1);
        assert_non_null(padding);
        memset(padding, '.', pad);
        padding[pad] = '\0';
        LOG_INFO(&pl->lg, NULL, "%s%s", padding, SECRET);
        free(padding);
        char *out = drain_pipe(pl->rd, NULL);
        if (strstr(out, "s3cr") != NULL) fail_msg("secret prefix leaked with %zu bytes before it", pad);
        assert_non_null(strstr(out, "[REDACTED]"));
        free(out);
    }
}

static void log_format_line__overlapping_secrets__longest_redacted_whole(void **state)
{
    (void)state;
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, -1);
    log_add_secret(&lg, "abcd1234");               /* a prefix of the next one */
    log_add_secret(&lg, "abcd1234-tail-secret");
    char *line = log_format_line(&lg, LOG_LEVEL_INFO, NULL, NULL, "v=abcd1234-tail-secret;w=abcd1234");
    assert_non_null(line);
    assert_null(strstr(line, "tail-secret"));
    json_t *obj = parse_object(line);
    assert_string_equal(get_str(obj, "msg"), "v=[REDACTED];w=[REDACTED]");
    json_decref(obj);
    free(line);
    logger_free(&lg);
}

static void log_add_secret__short_empty_or_null__ignored(void **state)
{
    (void)state;
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, -1);
    log_add_secret(&lg, NULL);
    log_add_secret(&lg, "");
    log_add_secret(&lg, "abc");
    assert_int_equal(lg.n_secrets, 0);
    log_add_secret(&lg, "abcd");
    log_add_secret(&lg, "abcd"); /* duplicates are stored once */
    assert_int_equal(lg.n_secrets, 1);
    json_t *obj = format_object(&lg, LOG_LEVEL_INFO, NULL, NULL, "abc abcd");
    assert_string_equal(get_str(obj, "msg"), "abc [REDACTED]");
    json_decref(obj);
    logger_free(&lg);
}

static void log_clear_secrets__after_clear__value_shown_again(void **state)
{
    (void)state;
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, -1);
    log_add_secret(&lg, SECRET);
    log_clear_secrets(&lg);
    assert_int_equal(lg.n_secrets, 0);
    json_t *obj = format_object(&lg, LOG_LEVEL_INFO, NULL, NULL, SECRET);
    assert_string_equal(get_str(obj, "msg"), SECRET);
    json_decref(obj);
    logger_free(&lg);
}

static void log_format_line__secret_next_to_invalid_utf8__redacted_and_valid(void **state)
{
    (void)state;
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, -1);
    log_add_secret(&lg, SECRET);
    json_t *obj = format_object(&lg, LOG_LEVEL_INFO, NULL, NULL, "\xFF" SECRET "\xE2\x82");
    assert_string_equal(get_str(obj, "msg"), FFFD "[REDACTED]" FFFD FFFD);
    json_decref(obj);
    logger_free(&lg);
}

/* ---- level names ---------------------------------------------------------- */

static void log_level_parse__known_and_unknown__parsed_or_rejected(void **state)
{
    (void)state;
    enum log_level lvl = LOG_LEVEL_ERROR;
    assert_int_equal(log_level_parse("debug", &lvl), 0);
    assert_int_equal(lvl, LOG_LEVEL_DEBUG);
    assert_int_equal(log_level_parse("warn", &lvl), 0);
    assert_int_equal(lvl, LOG_LEVEL_WARN);
    assert_int_equal(log_level_parse("error", &lvl), 0);
    assert_int_equal(lvl, LOG_LEVEL_ERROR);
    assert_int_equal(log_level_parse("info", &lvl), 0);
    assert_int_equal(lvl, LOG_LEVEL_INFO);
    assert_int_equal(log_level_parse("verbose", &lvl), -1);
    assert_int_equal(log_level_parse("", &lvl), -1);
    assert_int_equal(lvl, LOG_LEVEL_INFO);
    assert_string_equal(log_level_name(LOG_LEVEL_ERROR), "error");
    assert_string_equal(log_level_name((enum log_level)42), "info");
}

/* ---- pieces of secrets, URL userinfo, log_redact ------------------------------------------- */

#define MARK "Qv7zKwJxTrYp"

static char *msg_with_secret(const char *secret, const char *msg)
{
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, -1);
    log_add_secret(&lg, secret);
    json_t *obj = format_object(&lg, LOG_LEVEL_INFO, NULL, NULL, msg);
    char *out = strdup(get_str(obj, "msg"));
    json_decref(obj);
    logger_free(&lg);
    return out;
}

static void log_format_line__pieces_of_a_secret__each_redacted(void **state)
{
    (void)state;
    static const struct {
        const char *msg, *expected;
    } cases[] = {
        {"cut at the end: Qv7zK", "cut at the end: [REDACTED]"},           /* a truncated message */
        {"tail: KwJxTrYp.", "tail: [REDACTED]."},                          /* a decoder quoting the rest */
        {"after \"JxTr\" in connection info", "after \"[REDACTED]\" in connection info"},
        {"Qv7zKw JxTrYp", "[REDACTED] [REDACTED]"},                        /* split at a space */
        {"Qv7 and TrYp", "Qv7 and [REDACTED]"},                            /* 3 bytes are not recognisable */
        {"no part of it here", "no part of it here"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = msg_with_secret(MARK, cases[i].msg);
        assert_string_equal(out, cases[i].expected);
        free(out);
    }
}

static void log_format_line__piece_in_an_id__id_kept_long_piece_and_whole_secret_redacted(void **state)
{
    (void)state;
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, -1);
    log_add_secret(&lg, "0123abcd4567ef89");
    struct log_ctx ctx = {.booking_id = "9f3e0123-aaaa-4bbb-8ccc-000000000001", .request_id = "0123abcd4567ef89"};
    const char *fields[] = {"error", "prefix 0123abcd",
                            "path", "/bookings/9f3e0123-aaaa-4bbb-8ccc-000000000001/run",
                            "task", "ffffffffffff0123abcdffffffff", "short", "x0123y", NULL};
    json_t *obj = format_object(&lg, LOG_LEVEL_INFO, &ctx, fields, "m");
    assert_string_equal(get_str(obj, "booking_id"), "9f3e0123-aaaa-4bbb-8ccc-000000000001");
    assert_string_equal(get_str(obj, "request_id"), "[REDACTED]");
    assert_string_equal(get_str(obj, "error"), "prefix [REDACTED]");
    /* inside a hex id only pieces of 8+ bytes are no coincidence */
    assert_string_equal(get_str(obj, "path"), "/bookings/9f3e0123-aaaa-4bbb-8ccc-000000000001/run");
    assert_string_equal(get_str(obj, "task"), "ffffffffffff[REDACTED]ffffffff");
    assert_string_equal(get_str(obj, "short"), "x[REDACTED]y");
    json_decref(obj);
    logger_free(&lg);
}

static void log_format_line__url_userinfo__replaced_rest_of_url_kept(void **state)
{
    (void)state;
    static const struct {
        const char *msg, *expected;
    } cases[] = {
        {"GET https://agent:s3cret@va.example.com/x?y=1", "GET https://[REDACTED]@va.example.com/x?y=1"},
        {"postgresql://u:p%zz@db:5432/lad failed", "postgresql://[REDACTED]@db:5432/lad failed"},
        {"'http://tok@h' and http://h2", "'http://[REDACTED]@h' and http://h2"},
        {"http://u:p@ss@host/", "http://[REDACTED]@host/"},
        {"https://host/path@not-userinfo", "https://host/path@not-userinfo"},
        {"mail invoker@project.iam and https://host", "mail invoker@project.iam and https://host"},
        {"://@host", "://@host"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = roundtrip_msg(cases[i].msg);
        assert_string_equal(out, cases[i].expected);
        free(out);
    }
}

static void log_add_secret__more_than_sixteen__every_one_redacted(void **state)
{
    (void)state;
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, -1);
    char secret[40];
    for (int i = 0; i < 40; i++) {
        snprintf(secret, sizeof(secret), "secret-number-%02d-Qx", i);
        log_add_secret(&lg, secret);
    }
    assert_int_equal(lg.n_secrets, 40);
    for (int i = 0; i < LOG_MAX_SECRETS; i++) {
        snprintf(secret, sizeof(secret), "more-%04d", i);
        log_add_secret(&lg, secret);
    }
    assert_int_equal(lg.n_secrets, LOG_MAX_SECRETS);
    json_t *obj = format_object(&lg, LOG_LEVEL_INFO, NULL, NULL, "x secret-number-39-Qx y");
    assert_string_equal(get_str(obj, "msg"), "x [REDACTED] y");
    json_decref(obj);
    logger_free(&lg);
}

static void log_redact__with_and_without_logger__pieces_and_userinfo_replaced(void **state)
{
    (void)state;
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, -1);
    log_add_secret(&lg, MARK);
    char *out = log_redact(&lg, "HTTP 401: bad token KwJxTrYp for https://u:p@h/");
    assert_string_equal(out, "HTTP 401: bad token [REDACTED] for https://[REDACTED]@h/");
    free(out);
    out = log_redact(NULL, "KwJxTrYp https://u:p@h/");
    assert_string_equal(out, "KwJxTrYp https://[REDACTED]@h/");
    free(out);
    assert_null(log_redact(&lg, NULL));
    logger_free(&lg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(log_format_line__plain_message__has_ts_level_msg_only),
        cmocka_unit_test(log_format_line__each_level__named),
        cmocka_unit_test(log_format_line__full_context__all_fields_present),
        cmocka_unit_test(log_format_line__partial_context__null_members_omitted),
        cmocka_unit_test(log_format_line__extra_fields__added_as_strings),
        cmocka_unit_test(log_format_line__quotes_backslashes_newlines__roundtrip),
        cmocka_unit_test(log_format_line__control_bytes__escaped_and_roundtrip),
        cmocka_unit_test(log_format_line__valid_multibyte_utf8__kept),
        cmocka_unit_test(log_format_line__invalid_utf8__replaced_by_fffd),
        cmocka_unit_test(log_format_line__invalid_utf8_in_fields_and_context__valid_json),
        cmocka_unit_test_setup_teardown(log_macros__below_level__arguments_not_evaluated, pipe_logger_setup,
                                        pipe_logger_teardown),
        cmocka_unit_test_setup_teardown(log_macros__at_or_above_level__written, pipe_logger_setup,
                                        pipe_logger_teardown),
        cmocka_unit_test_setup_teardown(log_write__below_level__nothing_written, pipe_logger_setup,
                                        pipe_logger_teardown),
        cmocka_unit_test_setup_teardown(log_write__several_calls__one_json_line_each, pipe_logger_setup,
                                        pipe_logger_teardown),
        cmocka_unit_test_setup_teardown(log_write__message_longer_than_1k__kept_whole_in_one_line, pipe_logger_setup,
                                        pipe_logger_teardown),
        cmocka_unit_test(log_format_line__secret_twice_in_msg__both_redacted),
        cmocka_unit_test(log_format_line__secret_in_fields_and_context__redacted),
        cmocka_unit_test_setup_teardown(log_write__secret_in_format_argument__redacted, pipe_logger_setup,
                                        pipe_logger_teardown),
        cmocka_unit_test_setup_teardown(log_write__secret_across_message_size_limit__no_prefix_leaks,
                                        pipe_logger_setup, pipe_logger_teardown),
        cmocka_unit_test(log_format_line__overlapping_secrets__longest_redacted_whole),
        cmocka_unit_test(log_add_secret__short_empty_or_null__ignored),
        cmocka_unit_test(log_clear_secrets__after_clear__value_shown_again),
        cmocka_unit_test(log_format_line__secret_next_to_invalid_utf8__redacted_and_valid),
        cmocka_unit_test(log_format_line__pieces_of_a_secret__each_redacted),
        cmocka_unit_test(log_format_line__piece_in_an_id__id_kept_long_piece_and_whole_secret_redacted),
        cmocka_unit_test(log_format_line__url_userinfo__replaced_rest_of_url_kept),
        cmocka_unit_test(log_add_secret__more_than_sixteen__every_one_redacted),
        cmocka_unit_test(log_redact__with_and_without_logger__pieces_and_userinfo_replaced),
        cmocka_unit_test(log_level_parse__known_and_unknown__parsed_or_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
