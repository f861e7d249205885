/*
 * core/config — table-driven INI loader (see config.h).
 *
 * Order of precedence for one key: built-in default < file < environment.  A
 * secret key K also accepts K_file (file or environment); giving both K and
 * K_file is an error.  After all sources are applied, config_validate() checks
 * cross-key requirements (e.g. cloudtasks needs project/location/public_url).
 */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shared/db/db_util.h"

enum opt_type {
    OT_STR, OT_INT, OT_BOOL, OT_LIST, OT_SCHEMAS, OT_BACKEND, OT_CAPTURE_MODE, OT_AUTH_MODE, OT_LEVEL, OT_LOG_FORMAT,
    OT_URL, OT_LISTEN
};

#define OF_SECRET 0x1     /* has a *_file form; value never printed */
#define OF_RELOAD 0x2     /* may change on SIGHUP */

/* A check of a text value beyond its type: NULL, or why it is refused. The
 * reason never quotes the value (it may be a secret). */
typedef const char *(*opt_check_fn)(const char *value, char *why, size_t whylen);

struct opt {
    const char *section;
    const char *key;
    enum opt_type type;
    size_t offset;
    const char *def;      /* default as text; NULL = unset */
    int min, max;         /* OT_INT bounds */
    int flags;
    opt_check_fn check;   /* NULL = the type says it all */
};

static const char *check_conninfo(const char *value, char *why, size_t whylen);
static const char *check_bearer_token(const char *value, char *why, size_t whylen);
static const char *check_header_secret(const char *value, char *why, size_t whylen);

#define O(field) offsetof(struct config, field)
static const struct opt opts[] = {
    {"database", "conninfo", OT_STR, O(db_conninfo), NULL, 0, 0, OF_SECRET, check_conninfo},
    {"database", "schemas", OT_SCHEMAS, O(db_schemas), NULL, 0, 0, 0, NULL},
    {"database", "pool_size", OT_INT, O(db_pool_size), "4", 1, 64, 0, NULL},
    {"database", "max_queue", OT_INT, O(db_max_queue), "1024", 1, 1000000, 0, NULL},
    {"database", "prepared_statements", OT_BOOL, O(db_prepared_statements), "on", 0, 0, 0, NULL},
    {"http", "listen", OT_LISTEN, O(http_listen), "127.0.0.1:8080", 0, 0, 0, NULL},
    {"http", "public_url", OT_URL, O(http_public_url), NULL, 0, 0, OF_RELOAD, NULL},
    {"http", "max_header_bytes", OT_INT, O(http_max_header_bytes), "16384", 1024, 1048576, 0, NULL},
    {"http", "max_body_bytes", OT_INT, O(http_max_body_bytes), "65536", 1024, 16777216, 0, NULL},
    {"http", "header_timeout_ms", OT_INT, O(http_header_timeout_ms), "10000", 10, 600000, 0, NULL},
    {"http", "body_timeout_ms", OT_INT, O(http_body_timeout_ms), "10000", 10, 600000, 0, NULL},
    {"http", "idle_timeout_ms", OT_INT, O(http_idle_timeout_ms), "60000", 10, 3600000, 0, NULL},
    {"http", "max_connections", OT_INT, O(http_max_connections), "1024", 1, 100000, 0, NULL},
    {"http", "max_connections_per_peer", OT_INT, O(http_max_connections_per_peer), "64", 0, 100000, 0, NULL},
    {"followup", "booking_types", OT_LIST, O(followup_booking_types),
     "follow_up,followup,auto_follow_up,auto_followup", 0, 0, OF_RELOAD, NULL},
    {"followup", "lead_time_s", OT_INT, O(followup_lead_time_s), "0", 0, 86400, OF_RELOAD, NULL},
    {"followup", "sweep_interval_s", OT_INT, O(followup_sweep_interval_s), "30", 1, 86400, OF_RELOAD, NULL},
    {"followup", "catchup_window_s", OT_INT, O(followup_catchup_window_s), "3600", 0, 2592000, OF_RELOAD, NULL},
    {"followup", "max_inflight", OT_INT, O(followup_max_inflight), "64", 1, 10000, 0, NULL},
    {"followup", "max_attempts", OT_INT, O(followup_max_attempts), "5", 1, 100, OF_RELOAD, NULL},
    {"followup", "retry_base_s", OT_INT, O(followup_retry_base_s), "10", 1, 3600, OF_RELOAD, NULL},
    {"followup", "early_tolerance_s", OT_INT, O(followup_early_tolerance_s), "300", 0, 86400, OF_RELOAD, NULL},
    {"followup", "max_lateness_s", OT_INT, O(followup_max_lateness_s), "3600", 0, 2592000, OF_RELOAD, NULL},
    {"capture", "mode", OT_CAPTURE_MODE, O(capture_mode), "notify", 0, 0, 0, NULL},
    {"capture", "notify_within_s", OT_INT, O(capture_notify_within_s), "900", 0, 2592000, 0, NULL},
    {"capture", "poll_interval_ms", OT_INT, O(capture_poll_interval_ms), "1000", 100, 600000, 0, NULL},
    {"replicas", "partitions", OT_INT, O(replicas_partitions), "64", 1, 1024, 0, NULL},
    {"replicas", "rebalance_interval_ms", OT_INT, O(replicas_rebalance_interval_ms), "1000", 100, 60000, OF_RELOAD,
     NULL},
    {"queue", "backend", OT_BACKEND, O(queue_backend), "cloudtasks", 0, 0, 0, NULL},
    {"cloudtasks", "endpoint", OT_URL, O(ct_endpoint), "https://cloudtasks.googleapis.com", 0, 0, 0, NULL},
    {"cloudtasks", "project", OT_STR, O(ct_project), NULL, 0, 0, 0, NULL},
    {"cloudtasks", "location", OT_STR, O(ct_location), NULL, 0, 0, 0, NULL},
    {"cloudtasks", "queue", OT_STR, O(ct_queue), "follow-up-calls", 0, 0, 0, NULL},
    {"cloudtasks", "credentials", OT_STR, O(ct_credentials), NULL, 0, 0, 0, NULL},
    {"cloudtasks", "metadata_url", OT_URL, O(ct_metadata_url), "http://metadata.google.internal", 0, 0, 0, NULL},
    {"cloudtasks", "dispatch_deadline_s", OT_INT, O(ct_dispatch_deadline_s), "600", 15, 1800, OF_RELOAD, NULL},
    {"auth", "mode", OT_AUTH_MODE, O(auth_mode), "oidc", 0, 0, 0, NULL},
    {"auth", "audience", OT_STR, O(auth_audience), NULL, 0, 0, OF_RELOAD, NULL},
    {"auth", "service_account", OT_STR, O(auth_service_account), NULL, 0, 0, OF_RELOAD, NULL},
    {"auth", "jwks_url", OT_URL, O(auth_jwks_url), "https://www.googleapis.com/oauth2/v3/certs", 0, 0, 0, NULL},
    {"auth", "issuers", OT_LIST, O(auth_issuers), "https://accounts.google.com,accounts.google.com", 0, 0, OF_RELOAD, NULL},
    {"auth", "clock_skew_s", OT_INT, O(auth_clock_skew_s), "60", 0, 600, OF_RELOAD, NULL},
    {"auth", "jwks_refetch_interval_s", OT_INT, O(auth_jwks_refetch_interval_s), "2", 1, 3600, 0, NULL},
    {"auth", "jwks_min_refresh_s", OT_INT, O(auth_jwks_min_refresh_s), "30", 1, 86400, 0, NULL},
    {"auth", "shared_secret", OT_STR, O(auth_shared_secret), NULL, 0, 0, OF_SECRET | OF_RELOAD, check_header_secret},
    {"voice_agent", "base_url", OT_URL, O(va_base_url), NULL, 0, 0, OF_RELOAD, NULL},
    {"voice_agent", "token", OT_STR, O(va_token), NULL, 0, 0, OF_SECRET | OF_RELOAD, check_bearer_token},
    {"voice_agent", "timeout_ms", OT_INT, O(va_timeout_ms), "30000", 100, 600000, OF_RELOAD, NULL},
    {"voice_agent", "max_concurrent", OT_INT, O(va_max_concurrent), "0", 0, 100000, OF_RELOAD, NULL},
    {"voice_agent", "max_concurrent_per_tenant", OT_INT, O(va_max_concurrent_per_tenant), "0", 0, 100000, OF_RELOAD,
     NULL},
    {"log", "level", OT_LEVEL, O(log_level), "info", 0, 0, OF_RELOAD, NULL},
    {"log", "format", OT_LOG_FORMAT, O(log_format), "json", 0, 0, OF_RELOAD, NULL},
    {"shutdown", "drain_timeout_ms", OT_INT, O(shutdown_drain_timeout_ms), "20000", 0, 600000, OF_RELOAD, NULL},
};
#undef O
#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

/* Where each key's current value came from, for messages and K vs K_file. */
struct origin {
    char where[300];     /* "file:12" or "env FOLLOWUPD_X_Y" or "" for default */
    bool set;            /* value given (file or env) */
    bool file_form;      /* came from K_file */
    bool rejected;       /* given but refused (reported): not reported as missing too */
};

struct loader {
    struct config *cfg;
    struct config_errors *errs;
    struct origin origin[N_OPTS];
    config_getenv_fn env;
};

static void add_error(struct config_errors *errs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_error(struct config_errors *errs, const char *fmt, ...)
{
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    char **n = realloc(errs->msgs, sizeof(char *) * (size_t)(errs->n + 1));
    if (n == NULL) return;
    errs->msgs = n;
    errs->msgs[errs->n] = strdup(buf);
    if (errs->msgs[errs->n] != NULL) errs->n++;
}

void config_errors_free(struct config_errors *errs)
{
    for (int i = 0; i < errs->n; i++) free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}

static void strlist_free(struct strlist *l)
{
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

int config_join_list(const struct strlist *l, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < l->n; i++) {
        int w = snprintf(out + n, cap - n, "%s%s", i > 0 ? "," : "", l->items[i]);
        if (w < 0 || (size_t)w >= cap - n) {
            out[0] = '\0';
            return -1;
        }
        n += (size_t)w;
    }
    return 0;
}

bool strlist_contains(const struct strlist *l, const char *s)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->items[i], s) == 0) return true;
    return false;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

/* Split "a, b,c" into a list; empty items are an error. */
static int parse_list(const char *text, struct strlist *out)
{
    struct strlist l = {0};
    char *copy = strdup(text);
    if (copy == NULL) return -1;
    int rc = 0;
    char *cursor = copy;
    for (char *tok = strsep(&cursor, ","); tok != NULL; tok = strsep(&cursor, ",")) {
        char *t = trim(tok);
        if (*t == '\0') { rc = -1; break; }
        char **n = realloc(l.items, sizeof(char *) * (size_t)(l.n + 1));
        if (n == NULL) { rc = -1; break; }
        l.items = n;
        if ((l.items[l.n] = strdup(t)) == NULL) { rc = -1; break; }
        l.n++;
    }
    free(copy);
    if (rc != 0 || l.n == 0 || text[strlen(text) - 1] == ',') {
        strlist_free(&l);
        return -1;
    }
    *out = l;
    return 0;
}

bool config_is_valid_identifier(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63) return false;
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_')) return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_')) return false;
    return true;
}

static int parse_int(const char *s, int min, int max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) return -1;
    *out = (int)v;
    return 0;
}

static bool valid_url(const char *s)
{
    return (strncmp(s, "http://", 7) == 0 && s[7] != '\0') || (strncmp(s, "https://", 8) == 0 && s[8] != '\0');
}

/* ---- checks of values that may be secrets (see opt_check_fn) ---- */

static const char *check_conninfo(const char *value, char *why, size_t whylen)
{
    return db_conninfo_problem(value, why, whylen) == 0 ? NULL : why;
}

static bool has_control_byte(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return true;
    return false;
}

/* Sent as "Authorization: Bearer <token>": one word of visible ASCII. */
static const char *check_bearer_token(const char *value, char *why, size_t whylen)
{
    (void)why;
    (void)whylen;
    for (const char *p = value; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return "must be visible ASCII without spaces or control characters (it is sent as a Bearer token)";
    return NULL;
}

/* Compared with a request header, whose value never has control bytes or
 * surrounding spaces: such a secret could never match. */
static const char *check_header_secret(const char *value, char *why, size_t whylen)
{
    (void)why;
    (void)whylen;
    size_t n = strlen(value);
    if (has_control_byte(value) || (n > 0 && (value[0] == ' ' || value[n - 1] == ' ')))
        return "must not contain control characters or start or end with a space";
    return NULL;
}

static bool valid_listen(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL) return false;
    int port;
    if (parse_int(colon + 1, 0, 65535, &port) != 0) return false;
    if (s[0] == '[') return colon > s + 1 && colon[-1] == ']';
    return strchr(s, ':') == colon;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"on", "true", "yes", "1"}, *const no[] = {"off", "false", "no", "0"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) { *out = true; return 0; }
        if (strcasecmp(s, no[i]) == 0) { *out = false; return 0; }
    }
    return -1;
}

/* Apply one textual value to the typed field. Returns NULL or a reason (which
 * may be formatted into why[whylen]). */
static const char *apply_value(struct config *cfg, const struct opt *o, const char *value, char *why,
                               size_t whylen)
{
    void *field = (char *)cfg + o->offset;
    switch (o->type) {
    case OT_URL:
        if (!valid_url(value)) return "must be an http:// or https:// URL";
        if (strchr(value, '@') != NULL) return "must not contain '@' (no user:password@ in URLs; use the token keys)";
        /* fall through */
    case OT_LISTEN:
        if (o->type == OT_LISTEN && !valid_listen(value)) return "must be HOST:PORT";
        /* fall through */
    case OT_STR: {
        const char *refused = o->check != NULL ? o->check(value, why, whylen) : NULL;
        if (refused != NULL) return refused;
        char *copy = strdup(value);
        if (copy == NULL) return "out of memory";
        free(*(char **)field);
        *(char **)field = copy;
        return NULL;
    }
    case OT_INT:
        if (parse_int(value, o->min, o->max, (int *)field) != 0) {
            snprintf(why, whylen, "must be an integer in [%d, %d]", o->min, o->max);
            return why;
        }
        return NULL;
    case OT_BOOL:
        if (parse_bool(value, (bool *)field) != 0) return "must be on or off (true/false, yes/no, 1/0)";
        return NULL;
    case OT_LIST:
    case OT_SCHEMAS: {
        struct strlist l;
        if (parse_list(value, &l) != 0) return "must be a non-empty comma-separated list";
        for (int i = 0; o->type == OT_SCHEMAS && i < l.n; i++) {
            if (!config_is_valid_identifier(l.items[i])) {
                strlist_free(&l);
                return "each schema must be an identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes)";
            }
            for (int j = 0; j < i; j++) {
                if (strcmp(l.items[i], l.items[j]) == 0) {
                    strlist_free(&l);
                    return "schemas must not repeat";
                }
            }
        }
        strlist_free((struct strlist *)field);
        *(struct strlist *)field = l;
        return NULL;
    }
    case OT_BACKEND:
        if (strcmp(value, "cloudtasks") == 0) *(enum queue_backend *)field = QUEUE_CLOUDTASKS;
        else if (strcmp(value, "local") == 0) *(enum queue_backend *)field = QUEUE_LOCAL;
        else return "must be cloudtasks or local";
        return NULL;
    case OT_CAPTURE_MODE:
        if (strcmp(value, "notify") == 0) *(enum capture_mode *)field = CAPTURE_NOTIFY;
        else if (strcmp(value, "poll") == 0) *(enum capture_mode *)field = CAPTURE_POLL;
        else return "must be notify or poll";
        return NULL;
    case OT_AUTH_MODE:
        if (strcmp(value, "oidc") == 0) *(enum auth_mode *)field = AUTH_OIDC;
        else if (strcmp(value, "shared_secret") == 0) *(enum auth_mode *)field = AUTH_SHARED_SECRET;
        else return "must be oidc or shared_secret";
        return NULL;
    case OT_LEVEL:
        if (log_level_parse(value, (enum log_level *)field) != 0) return "must be debug, info, warn or error";
        return NULL;
    case OT_LOG_FORMAT:
        if (log_format_parse(value, (enum log_format *)field) != 0) return "must be json or gcp";
        return NULL;
    }
    return "unsupported type";
}

static const char *resolve_cred_path(const struct loader *ld, const char *path, char *buf, size_t cap)
{
    const char *dir = ld->env("CREDENTIALS_DIRECTORY");
    if (path[0] == '/' || dir == NULL || dir[0] == '\0') return path;
    snprintf(buf, cap, "%s/%s", dir, path);
    return buf;
}

/* Read a secret file: whole content, one trailing newline stripped. */
static char *read_secret_file(const char *path, char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) break;
        if (len + 1 >= cap) {
            if (cap >= (1u << 20)) { free(buf); buf = NULL; snprintf(why, whylen, "%s is larger than 1 MiB", path); break; }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    if (buf != NULL && ferror(f)) { /* e.g. a directory: EISDIR, not an empty secret */
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf == NULL) {
        if (why[0] == '\0') snprintf(why, whylen, "out of memory reading %s", path);
        return NULL;
    }
    buf[len] = '\0';
    if (len > 0 && buf[len - 1] == '\n') {
        buf[--len] = '\0';
        if (len > 0 && buf[len - 1] == '\r') buf[--len] = '\0'; /* CRLF is one newline too */
    }
    if (memchr(buf, '\0', len) != NULL) {
        free(buf);
        snprintf(why, whylen, "%s contains a NUL byte", path);
        return NULL;
    }
    return buf;
}

/* The error of a non-secret value, quoting it as the logger would show it (a
 * URL's user:password@ never reaches the message). */
static void add_error_echoing(struct config_errors *errs, const char *where, const struct opt *o, const char *value,
                              const char *err)
{
    char *shown = log_redact(NULL, value);
    add_error(errs, "%s: [%s] %s = '%s': %s", where, o->section, o->key, shown != NULL ? shown : "", err);
    free(shown);
}

/* Set key (or key_file) of opt index i from origin `where`. */
static void set_option(struct loader *ld, size_t i, bool file_form, const char *value, const char *where)
{
    const struct opt *o = &opts[i];
    struct origin *org = &ld->origin[i];
    if (org->set && org->file_form != file_form) {
        add_error(ld->errs, "%s: [%s] %s and %s_file are both set; use one", where, o->section, o->key, o->key);
        return;
    }
    char why[512] = "";
    char *owned = NULL;
    char pbuf[4096];
    const char *path = NULL;
    if (file_form) {
        path = resolve_cred_path(ld, value, pbuf, sizeof(pbuf));
        owned = read_secret_file(path, why, sizeof(why));
        if (owned == NULL) {
            add_error(ld->errs, "%s: [%s] %s_file: %s", where, o->section, o->key, why);
            org->rejected = true;
            return;
        }
        value = owned;
    }
    const char *err = apply_value(ld->cfg, o, value, why, sizeof(why));
    if (err != NULL) {
        if (file_form) add_error(ld->errs, "%s: [%s] %s_file %s: %s", where, o->section, o->key, path, err);
        else if (o->flags & OF_SECRET) add_error(ld->errs, "%s: [%s] %s: %s", where, o->section, o->key, err);
        else add_error_echoing(ld->errs, where, o, value, err);
        org->rejected = true;
    } else {
        snprintf(org->where, sizeof(org->where), "%s", where);
        org->set = true;
        org->file_form = file_form;
    }
    if (owned != NULL) explicit_bzero(owned, strlen(owned));
    free(owned);
}

/* Find the option for section/key; *file_form set when key is K_file of a secret K. */
static int find_opt(const char *section, const char *key, bool *file_form)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        if (strcmp(opts[i].section, section) != 0) continue;
        if (strcmp(opts[i].key, key) == 0) { *file_form = false; return (int)i; }
        size_t kl = strlen(opts[i].key);
        if ((opts[i].flags & OF_SECRET) && strncmp(key, opts[i].key, kl) == 0 && strcmp(key + kl, "_file") == 0) {
            *file_form = true;
            return (int)i;
        }
    }
    return -1;
}

static bool known_section(const char *s)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (strcmp(opts[i].section, s) == 0) return true;
    return false;
}

/* A name from the file as it may be echoed in an error: only when it looks like
 * a key or section name, since a stray line may be a pasted secret. */
static const char *echoable_name(const char *s)
{
    return config_is_valid_identifier(s) ? s : "(not shown: not a name)";
}

static void parse_line(struct loader *ld, const char *path, int lineno, char *line, char *section, size_t seclen)
{
    char *s = trim(line);
    if (*s == '\0' || *s == '#' || *s == ';') return;
    if (*s == '[') {
        char *end = strchr(s, ']');
        if (end == NULL || *trim(end + 1) != '\0') {
            add_error(ld->errs, "%s:%d: malformed section header", path, lineno);
            snprintf(section, seclen, "%s", "<malformed>"); /* unknown: its keys are skipped, not misfiled */
            return;
        }
        *end = '\0';
        char *name = trim(s + 1);
        if (!known_section(name)) add_error(ld->errs, "%s:%d: unknown section [%s]", path, lineno, echoable_name(name));
        snprintf(section, seclen, "%s", name);
        return;
    }
    char *eq = strchr(s, '=');
    if (eq == NULL) {
        add_error(ld->errs, "%s:%d: expected key = value", path, lineno);
        return;
    }
    *eq = '\0';
    char *key = trim(s), *value = trim(eq + 1);
    if (section[0] == '\0') {
        add_error(ld->errs, "%s:%d: key '%s' outside of any [section]", path, lineno, echoable_name(key));
        return;
    }
    if (!known_section(section)) return; /* already reported */
    bool file_form;
    int i = find_opt(section, key, &file_form);
    if (i < 0) {
        add_error(ld->errs, "%s:%d: unknown key '%s' in [%s]", path, lineno, echoable_name(key), section);
        return;
    }
    char where[300];
    snprintf(where, sizeof(where), "%s:%d", path, lineno);
    if (ld->origin[i].set && strncmp(ld->origin[i].where, path, strlen(path)) == 0 && ld->origin[i].file_form == file_form) {
        add_error(ld->errs, "%s: [%s] %s given twice (first at %s)", where, section, key, ld->origin[i].where);
        return;
    }
    set_option(ld, (size_t)i, file_form, value, where);
}

static int parse_file(struct loader *ld, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        add_error(ld->errs, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char section[64] = "";
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    while (getline(&line, &cap, f) != -1) parse_line(ld, path, ++lineno, line, section, sizeof(section));
    if (ferror(f)) add_error(ld->errs, "%s: cannot read: %s", path, strerror(errno)); /* e.g. a directory */
    free(line);
    fclose(f);
    return 0;
}

static void env_name(char *out, size_t cap, const char *section, const char *key, const char *suffix)
{
    snprintf(out, cap, "FOLLOWUPD_%s_%s%s", section, key, suffix);
    for (char *p = out; *p; p++) *p = (char)toupper((unsigned char)*p);
}

static void apply_env(struct loader *ld)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        char name[128], where[160];
        env_name(name, sizeof(name), opts[i].section, opts[i].key, "");
        const char *v = ld->env(name);
        char fname[128];
        env_name(fname, sizeof(fname), opts[i].section, opts[i].key, "_FILE");
        const char *fv = (opts[i].flags & OF_SECRET) ? ld->env(fname) : NULL;
        if (v != NULL && fv != NULL) {
            add_error(ld->errs, "env: %s and %s are both set; use one", name, fname);
            continue;
        }
        if (v != NULL || fv != NULL) ld->origin[i].set = false; /* env wins over the file */
        if (v != NULL) {
            snprintf(where, sizeof(where), "env %s", name);
            set_option(ld, i, false, v, where);
        } else if (fv != NULL) {
            snprintf(where, sizeof(where), "env %s", fname);
            set_option(ld, i, true, fv, where);
        }
    }
}

static void apply_defaults(struct loader *ld)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        if (opts[i].def == NULL) continue;
        char why[128];
        const char *err = apply_value(ld->cfg, &opts[i], opts[i].def, why, sizeof(why));
        if (err != NULL) add_error(ld->errs, "internal: default of [%s] %s: %s", opts[i].section, opts[i].key, err);
    }
    const char *gac = ld->env("GOOGLE_APPLICATION_CREDENTIALS");
    ld->cfg->ct_credentials = strdup(gac != NULL && gac[0] != '\0' ? gac : "metadata");
}

static void require(struct loader *ld, const char *value, const char *section, const char *key, const char *when)
{
    if (value != NULL && value[0] != '\0') return;
    bool file_form;
    int i = find_opt(section, key, &file_form);
    if (i >= 0 && ld->origin[i].rejected) return;
    add_error(ld->errs, "missing required value: [%s] %s%s%s", section, key, when ? " " : "", when ? when : "");
}

/* Booking types travel as one comma-separated trigger argument; bookings due later than notify_within_s are
 * left to the periodic sweep, which must therefore run well before they are due. */
static void validate_capture(struct loader *ld)
{
    const struct config *c = ld->cfg;
    for (int i = 0; i < c->followup_booking_types.n; i++) {
        const char *t = c->followup_booking_types.items[i];
        static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
        if (strlen(t) == 0 || strlen(t) > 50 || strspn(t, allowed) != strlen(t))
            add_error(ld->errs, "[followup] booking_types: each type must be 1-50 characters of [A-Za-z0-9_-]");
    }
    int min = c->followup_sweep_interval_s + c->followup_lead_time_s + CAPTURE_SWEEP_MARGIN_S;
    if (c->capture_mode == CAPTURE_NOTIFY && c->capture_notify_within_s != 0 && c->capture_notify_within_s < min)
        add_error(ld->errs,
                  "[capture] notify_within_s: must be 0 or at least [followup] sweep_interval_s + lead_time_s + %d "
                  "(%d): bookings due later are found by the sweep, which must run before they are due",
                  CAPTURE_SWEEP_MARGIN_S, min);
}

static void validate(struct loader *ld)
{
    struct config *c = ld->cfg;
    require(ld, c->db_conninfo, "database", "conninfo", "(or conninfo_file)");
    if (c->db_schemas.n == 0) add_error(ld->errs, "missing required value: [database] schemas");
    require(ld, c->va_base_url, "voice_agent", "base_url", NULL);
    if (c->queue_backend == QUEUE_CLOUDTASKS) {
        require(ld, c->ct_project, "cloudtasks", "project", "(required when [queue] backend = cloudtasks)");
        require(ld, c->ct_location, "cloudtasks", "location", "(required when [queue] backend = cloudtasks)");
        require(ld, c->http_public_url, "http", "public_url", "(required when [queue] backend = cloudtasks)");
        if (c->auth_mode == AUTH_OIDC) {
            require(ld, c->auth_audience, "auth", "audience", "(required when [auth] mode = oidc)");
            require(ld, c->auth_service_account, "auth", "service_account", "(required when [auth] mode = oidc)");
        }
    }
    validate_capture(ld);
    if (c->auth_mode == AUTH_SHARED_SECRET) {
        require(ld, c->auth_shared_secret, "auth", "shared_secret", "(or shared_secret_file; required when [auth] mode = shared_secret)");
        if (c->auth_shared_secret != NULL && c->auth_shared_secret[0] != '\0' && strlen(c->auth_shared_secret) < 16)
            add_error(ld->errs, "[auth] shared_secret: must be at least 16 bytes");
    }
}

int config_load(struct config *cfg, const char *path, config_getenv_fn env, struct config_errors *errs)
{
    memset(cfg, 0, sizeof(*cfg));
    struct loader *ld = calloc(1, sizeof(*ld));
    if (ld == NULL) return -1;
    ld->cfg = cfg;
    ld->errs = errs;
    ld->env = env;
    if (ld->env == NULL) ld->env = (config_getenv_fn)getenv;
    int before = errs->n;
    apply_defaults(ld);
    if (path != NULL) parse_file(ld, path);
    apply_env(ld);
    validate(ld);
    free(ld);
    return errs->n > before ? -1 : 0;
}

static void free_field(struct config *cfg, const struct opt *o)
{
    void *field = (char *)cfg + o->offset;
    if (o->type == OT_STR || o->type == OT_URL || o->type == OT_LISTEN) {
        free(*(char **)field);
        *(char **)field = NULL;
    } else if (o->type == OT_LIST || o->type == OT_SCHEMAS) {
        strlist_free((struct strlist *)field);
    }
}

void config_free(struct config *cfg)
{
    for (size_t i = 0; i < N_OPTS; i++) free_field(cfg, &opts[i]);
}

void config_register_secrets(const struct config *cfg, struct logger *lg)
{
    log_add_secret(lg, cfg->auth_shared_secret);
    log_add_secret(lg, cfg->va_token);
    db_conninfo_register_secrets(cfg->db_conninfo, lg);
}

int config_load_logged(struct config *cfg, const char *path, struct logger *lg, const char *msg)
{
    struct config_errors errs = {0};
    int rc = config_load(cfg, path, NULL, &errs);
    config_register_secrets(cfg, lg); /* what did load, before any line about the rest */
    for (int i = 0; i < errs.n; i++)
        LOG_KV(lg, LOG_LEVEL_ERROR, NULL, ((const char *[]){"error", errs.msgs[i], "config", path, NULL}), "%s", msg);
    config_errors_free(&errs);
    return rc;
}

int config_lease_s(const struct config *cfg)
{
    return (cfg->va_timeout_ms + 999) / 1000 + CONFIG_LEASE_MARGIN_S;
}

void config_apply_log_format(const struct config *cfg, struct logger *lg)
{
    log_set_format(lg, cfg->log_format, cfg->ct_project);
}

static bool field_equal(const struct config *a, const struct config *b, const struct opt *o)
{
    const void *fa = (const char *)a + o->offset, *fb = (const char *)b + o->offset;
    switch (o->type) {
    case OT_STR:
    case OT_URL:
    case OT_LISTEN: {
        const char *sa = *(char *const *)fa, *sb = *(char *const *)fb;
        return (sa == NULL && sb == NULL) || (sa != NULL && sb != NULL && strcmp(sa, sb) == 0);
    }
    case OT_LIST:
    case OT_SCHEMAS: {
        const struct strlist *la = fa, *lb = fb;
        if (la->n != lb->n) return false;
        for (int i = 0; i < la->n; i++)
            if (strcmp(la->items[i], lb->items[i]) != 0) return false;
        return true;
    }
    case OT_INT:
        return *(const int *)fa == *(const int *)fb;
    case OT_BOOL:
        return *(const bool *)fa == *(const bool *)fb;
    case OT_BACKEND:
        return *(const enum queue_backend *)fa == *(const enum queue_backend *)fb;
    case OT_CAPTURE_MODE:
        return *(const enum capture_mode *)fa == *(const enum capture_mode *)fb;
    case OT_AUTH_MODE:
        return *(const enum auth_mode *)fa == *(const enum auth_mode *)fb;
    case OT_LEVEL:
        return *(const enum log_level *)fa == *(const enum log_level *)fb;
    case OT_LOG_FORMAT:
        return *(const enum log_format *)fa == *(const enum log_format *)fb;
    }
    return false;
}

int config_diff_static(const struct config *a, const struct config *b, const char **out, int max)
{
    int n = 0;
    for (size_t i = 0; i < N_OPTS; i++) {
        if ((opts[i].flags & OF_RELOAD) || field_equal(a, b, &opts[i])) continue;
        if (n < max) out[n] = opts[i].key;
        n++;
    }
    return n;
}

static size_t field_size(enum opt_type t)
{
    switch (t) {
    case OT_STR:
    case OT_URL:
    case OT_LISTEN:
        return sizeof(char *);
    case OT_LIST:
    case OT_SCHEMAS:
        return sizeof(struct strlist);
    case OT_INT:
        return sizeof(int);
    case OT_BOOL:
        return sizeof(bool);
    case OT_BACKEND:
        return sizeof(enum queue_backend);
    case OT_CAPTURE_MODE:
        return sizeof(enum capture_mode);
    case OT_AUTH_MODE:
        return sizeof(enum auth_mode);
    case OT_LEVEL:
        return sizeof(enum log_level);
    case OT_LOG_FORMAT:
        return sizeof(enum log_format);
    }
    return 0;
}

void config_adopt_static(struct config *next, struct config *running)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        if (opts[i].flags & OF_RELOAD) continue;
        char tmp[sizeof(struct strlist)];
        size_t sz = field_size(opts[i].type);
        char *a = (char *)next + opts[i].offset, *b = (char *)running + opts[i].offset;
        memcpy(tmp, a, sz);
        memcpy(a, b, sz);
        memcpy(b, tmp, sz);
    }
}
