/*
 * utils/log — the one structured logger of followupd.
 *
 * Every diagnostic is one JSON object per line on a file descriptor (stderr by
 * default, journald-friendly): {"ts","level","msg", context fields...}.  The
 * context (request_id, tenant_id, booking_id, schema, task_name) travels in a
 * small struct so call sites never format JSON themselves.  The level is checked
 * before anything is formatted (LOG_* macros).
 *
 * Redaction is the logger's job, so no call site has to scrub what it passes:
 * - every secret registered with log_add_secret() (at config load and on each
 *   reload: passwords of the conninfo, tokens, the shared secret) is replaced
 *   by "[REDACTED]" in the message and in field values, and so is every piece of
 *   it of LOG_SECRET_MIN (4) or more bytes — a truncated message, a parser that
 *   split an unquoted password at a space, or a decoder that quoted half of it
 *   leaks no recognisable part.  Identifiers are spared chance matches: in
 *   field names and the context fields (request_id, tenant_id, ...) only whole
 *   secrets are replaced, and inside a run of 16 or more hex digits and dashes
 *   (a UUID, a task name) only whole secrets and pieces of 8 or more bytes, so
 *   an id that happens to share 4 bytes with a hex secret stays intact.
 * - the userinfo of every URL ("scheme://user:pass@host") becomes
 *   "scheme://[REDACTED]@host", in every value.
 * Secrets are added, never forgotten while the process runs (a value rotated
 * away on reload may still be in flight).  log_redact() applies the same to a
 * text bound elsewhere (a database column, an answer).
 *
 * Line formats (log_set_format):
 *   json  {"ts","level","msg", context..., fields...} (the default);
 *   gcp   the same line with Cloud Logging's names, so Cloud Logging structures
 *         it without a parser: "severity" (DEBUG/INFO/WARNING/ERROR),
 *         "message", "time", and "logging.googleapis.com/trace" =
 *         "projects/<project>/traces/<trace_id>" when the context carries a
 *         trace and a project is set;
 *   text  one plain line for a person at a terminal (the interactive command
 *         line modes): the message, "warning: "/"error: " in front at those
 *         levels, context and fields appended as " (key=value, ...)"; control
 *         bytes become spaces.  Secrets are redacted in every format.
 * The context's trace_id appears as "trace_id" in json and text (and in gcp
 * when no project is set).
 */
#ifndef FOLLOWUPD_UTILS_LOG_H
#define FOLLOWUPD_UTILS_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

#define LOG_SECRET_MIN 4          /* shorter secrets (and pieces) are not recognisable: ignored */
#define LOG_MAX_SECRETS 256       /* a bound against a runaway caller; config registers a handful */

enum log_format { LOG_FORMAT_JSON = 0, LOG_FORMAT_GCP, LOG_FORMAT_TEXT };

struct logger {
    enum log_level level;
    int fd;                       /* output, 2 by default */
    char **secrets;               /* owned copies, redacted from every line */
    int n_secrets, cap_secrets;
    unsigned char *windows;       /* bitmap of hashed LOG_SECRET_MIN-byte windows of the secrets; NULL = none */
    enum log_format format;       /* json unless log_set_format() said otherwise */
    char *trace_project;          /* gcp: the project of logging.googleapis.com/trace (owned) */
};

/* Optional per-line context; NULL members are omitted. */
struct log_ctx {
    const char *request_id;
    const char *tenant_id;
    const char *booking_id;
    const char *schema;
    const char *task_name;
    const char *trace_id;         /* 32 lowercase hex (utils/trace_context), validated by the caller */
};

void logger_init(struct logger *lg, enum log_level level, int fd);
void logger_free(struct logger *lg);
/* Remember a secret value (copied): it and each of its pieces of LOG_SECRET_MIN
 * bytes or more are redacted from then on. Ignored when NULL or shorter than
 * LOG_SECRET_MIN bytes, or once LOG_MAX_SECRETS are registered. */
void log_add_secret(struct logger *lg, const char *secret);
void log_clear_secrets(struct logger *lg);

/* `text` as the logger would write a field value (secrets and their pieces,
 * URL userinfo, invalid UTF-8 replaced), malloc'd; lg may be NULL (then only
 * userinfo and UTF-8). NULL on allocation failure or when text is NULL. */
char *log_redact(const struct logger *lg, const char *text);

/* True when the logger writes to a terminal (the interactive modes then print plain lines). */
bool log_is_terminal(const struct logger *lg);
/* Line format, and for gcp the Google Cloud project of the trace field (NULL/"": trace_id only). */
void log_set_format(struct logger *lg, enum log_format format, const char *trace_project);
/* "json" or "gcp" (the [log] format values; text is for terminals only). 0, or -1. */
int log_format_parse(const char *s, enum log_format *out);

int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level lvl);

static inline bool log_enabled(const struct logger *lg, enum log_level lvl)
{
    return lg != NULL && lvl >= lg->level;
}

/* Write one line. `fields` are extra key/value string pairs terminated by NULL
 * (e.g. "error", msg, "status", "503", NULL). msg is a printf format. */
void log_write(struct logger *lg, enum log_level lvl, const struct log_ctx *ctx,
               const char *const *fields, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* log_write without extra fields. */
void log_writec(struct logger *lg, enum log_level lvl, const struct log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void log_vwrite(struct logger *lg, enum log_level lvl, const struct log_ctx *ctx,
                const char *const *fields, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

/* Build the JSON line (without newline) into a malloc'd string; for tests and
 * for log_write. Returns NULL on allocation failure. */
char *log_format_line(const struct logger *lg, enum log_level lvl, const struct log_ctx *ctx,
                      const char *const *fields, const char *msg);

/* Macros take the context (and fields) inside __VA_ARGS__ so compound
 * literals with commas, e.g. &(struct log_ctx){.a = x, .b = y}, work. */
#define LOG_AT(lg, lvl, ...)                                                       \
    do {                                                                           \
        if (log_enabled((lg), (lvl))) log_writec((lg), (lvl), __VA_ARGS__);        \
    } while (0)
#define LOG_DEBUG(lg, ...) LOG_AT(lg, LOG_LEVEL_DEBUG, __VA_ARGS__)
#define LOG_INFO(lg, ...) LOG_AT(lg, LOG_LEVEL_INFO, __VA_ARGS__)
#define LOG_WARN(lg, ...) LOG_AT(lg, LOG_LEVEL_WARN, __VA_ARGS__)
#define LOG_ERROR(lg, ...) LOG_AT(lg, LOG_LEVEL_ERROR, __VA_ARGS__)

/* Same with extra fields: LOG_KV(lg, LOG_LEVEL_WARN, ctx, ((const char*[]){"k","v",NULL}), "fmt") */
#define LOG_KV(lg, lvl, ...)                                                       \
    do {                                                                           \
        if (log_enabled((lg), (lvl))) log_write((lg), (lvl), __VA_ARGS__);         \
    } while (0)

#endif
