/*
 * shared/db/db_util — pure helpers of the PostgreSQL layer (see db_util.h).
 * Nothing here touches a connection or the loop; everything is unit-tested.
 */
#include "shared/db/db_util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utils/log.h"

static int is_secret_option(const char *keyword)
{
    return strcmp(keyword, "password") == 0 || strcmp(keyword, "sslpassword") == 0;
}

/* The options a log line shows: where and as whom. Any other value may be a
 * piece of a password written without quotes ("password=ab sslmode=cd"). */
static int is_shown_option(const char *keyword)
{
    static const char *const shown[] = {"host", "hostaddr", "port", "dbname", "user"};
    for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
        if (strcmp(keyword, shown[i]) == 0) return 1;
    return 0;
}

static int needs_quotes(const char *v)
{
    if (*v == '\0') return 1;
    for (const char *s = v; *s; s++)
        if (isspace((unsigned char)*s) || *s == '\'' || *s == '\\') return 1;
    return 0;
}

/* Bytes needed for " key=value" with value quoted/escaped as libpq reads it. */
static size_t option_len(const PQconninfoOption *o)
{
    size_t n = 1 + strlen(o->keyword) + 1 + 2;
    for (const char *s = o->val; *s; s++) n += (*s == '\'' || *s == '\\') ? 2 : 1;
    return n;
}

static char *append_option(char *out, const PQconninfoOption *o)
{
    size_t kl = strlen(o->keyword);
    memcpy(out, o->keyword, kl);
    out += kl;
    *out++ = '=';
    int q = needs_quotes(o->val);
    if (q) *out++ = '\'';
    for (const char *s = o->val; *s; s++) {
        if (*s == '\'' || *s == '\\') *out++ = '\\';
        *out++ = *s;
    }
    if (q) *out++ = '\'';
    return out;
}

char *db_conninfo_redacted(const char *conninfo)
{
    if (conninfo == NULL || *conninfo == '\0') return strdup("");
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
    if (opts == NULL) {
        PQfreemem(errmsg); /* may quote parts of the input: never shown */
        return strdup("<invalid conninfo>");
    }
    size_t cap = 1;
    for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (o->val != NULL && is_shown_option(o->keyword)) cap += option_len(o);
    char *buf = malloc(cap);
    if (buf != NULL) {
        char *end = buf;
        for (const PQconninfoOption *o = opts; o->keyword != NULL; o++) {
            if (o->val == NULL || !is_shown_option(o->keyword)) continue;
            if (end != buf) *end++ = ' ';
            end = append_option(end, o);
        }
        *end = '\0';
    }
    PQconninfoFree(opts);
    return buf;
}

static bool is_uri(const char *conninfo)
{
    return strncmp(conninfo, "postgresql://", 13) == 0 || strncmp(conninfo, "postgres://", 11) == 0;
}

static void add_secret_n(struct logger *lg, const char *s, size_t n)
{
    char *copy = strndup(s, n);
    log_add_secret(lg, copy);
    if (copy != NULL) explicit_bzero(copy, n);
    free(copy);
}

/* The raw (still percent-encoded) passwords of a URI: "user:PASS@" of the
 * authority (as libpq reads it: up to the first '@' before any '/') and the
 * password / sslpassword query parameters. */
static void register_raw_uri_secrets(const char *uri, struct logger *lg)
{
    const char *p = strstr(uri, "://") + 3;
    size_t auth = strcspn(p, "@/");
    const char *colon = p[auth] == '@' ? memchr(p, ':', auth) : NULL;
    if (colon != NULL) add_secret_n(lg, colon + 1, (size_t)(p + auth - colon - 1));
    const char *q = strchr(p, '?');
    while (q != NULL) {
        q++;
        size_t n = strcspn(q, "&");
        if (strncmp(q, "password=", 9) == 0) add_secret_n(lg, q + 9, n - 9);
        else if (strncmp(q, "sslpassword=", 12) == 0) add_secret_n(lg, q + 12, n - 12);
        q = q[n] == '&' ? q + n : NULL;
    }
}

void db_conninfo_register_secrets(const char *conninfo, struct logger *lg)
{
    if (conninfo == NULL || lg == NULL) return;
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
    PQfreemem(errmsg);
    for (const PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
        if (o->val != NULL && is_secret_option(o->keyword)) log_add_secret(lg, o->val);
    PQconninfoFree(opts);
    if (is_uri(conninfo)) register_raw_uri_secrets(conninfo, lg);
}

/* ---- libpq's conninfo complaints -------------------------------------------------------------
 * The messages of libpq's conninfo parser and option checks quote the input
 * (a password written without quotes, a token of a URI): they are replaced by
 * the class of the problem.  `name_after`, when set, is where libpq names the
 * option (one of its own keywords), which is kept. */
struct libpq_problem {
    const char *needle;
    const char *problem;      /* printf format; %s = the option name when name_after is set */
    const char *name_after;
};

static const struct libpq_problem libpq_problems[] = {
    {"invalid percent-encoded token", "invalid percent-encoding in URI", NULL},
    {"forbidden value %00", "percent-encoded NUL (%%00) in URI", NULL},
    {"missing \"=\" after", "missing '=' after a keyword (quote a value that has spaces: key='a b')", NULL},
    {"unterminated quoted string", "unterminated quoted string", NULL},
    {"invalid connection option", "unknown option keyword", NULL},
    {"key/value separator", "malformed URI query parameter (expected key=value)", NULL},
    {"invalid URI query parameter", "unknown URI query parameter", NULL},
    {"IPv6 host address", "malformed IPv6 host address in URI", NULL},
    {"in URI (expected", "unexpected character in URI", NULL},
    {"invalid URI propagated", "malformed URI", NULL},
    {"invalid port number", "invalid port number", NULL},
    {"could not parse network address", "invalid hostaddr", NULL},
    {"for minimum SSL protocol version", "invalid ssl_min_protocol_version", NULL},
    {"for maximum SSL protocol version", "invalid ssl_max_protocol_version", NULL},
    {"for connection option \"", "invalid integer value for option %s", "for connection option \""},
    {" value: \"", "invalid %s value", "invalid "},
};

/* The option name libpq wrote right after `marker` (letters, digits, '_'), or "option". */
static void option_name_after(const char *msg, const char *marker, char *out, size_t cap)
{
    const char *p = strstr(msg, marker);
    size_t n = 0;
    if (p != NULL) {
        p += strlen(marker);
        while (n + 1 < cap && (isalnum((unsigned char)p[n]) || p[n] == '_')) n++;
    }
    if (n > 0) snprintf(out, cap, "%.*s", (int)n, p);
    else snprintf(out, cap, "option");
}

/* The problem class of a libpq conninfo message into out; false when msg is not one. */
static bool libpq_problem_of(const char *msg, char *out, size_t cap)
{
    for (size_t i = 0; msg != NULL && i < sizeof(libpq_problems) / sizeof(libpq_problems[0]); i++) {
        const struct libpq_problem *p = &libpq_problems[i];
        if (strstr(msg, p->needle) == NULL) continue;
        char name[40] = "";
        if (p->name_after != NULL) option_name_after(msg, p->name_after, name, sizeof(name));
        snprintf(out, cap, p->problem, name);
        return true;
    }
    return false;
}

int db_conninfo_problem(const char *conninfo, char *why, size_t cap)
{
    if (conninfo == NULL || (!is_uri(conninfo) && strchr(conninfo, '=') == NULL)) return 0; /* a database name */
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
    if (opts != NULL) {
        PQconninfoFree(opts);
        return 0;
    }
    if (errmsg == NULL) snprintf(why, cap, "out of memory");
    else if (!libpq_problem_of(errmsg, why, cap)) snprintf(why, cap, "cannot be parsed");
    PQfreemem(errmsg);
    return -1;
}

void db_error_clean(const char *msg, char *out, size_t cap)
{
    char problem[DB_ERR_MAX];
    if (libpq_problem_of(msg, problem, sizeof(problem))) snprintf(out, cap, "conninfo: %s", problem);
    else db_message_clean(msg, out, cap);
}

unsigned db_backoff_delay_ms(unsigned attempt, unsigned min_ms, unsigned max_ms, uint32_t rnd)
{
    if (max_ms < min_ms) max_ms = min_ms;
    uint64_t cap = min_ms;
    for (unsigned i = 0; i < attempt && cap < max_ms; i++) cap = cap == 0 ? 1 : cap * 2;
    if (cap > max_ms) cap = max_ms;
    uint64_t span = cap - min_ms + 1;
    return (unsigned)(min_ms + (uint64_t)rnd % span);
}

uint32_t db_rand_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

void db_message_clean(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    int pending_space = 0;
    for (const char *s = in ? in : ""; *s && o + 1 < cap; s++) {
        if (isspace((unsigned char)*s)) {
            pending_space = o > 0;
            continue;
        }
        if (pending_space) {
            if (o + 2 >= cap) break;
            out[o++] = ' ';
            pending_space = 0;
        }
        out[o++] = *s;
    }
    out[o] = '\0';
}

static void add_param(struct db_connect_params *p, const char *key, const char *value)
{
    if (p->n >= DB_CONNECT_PARAMS_MAX) return;
    p->keys[p->n] = key;
    p->values[p->n] = value;
    p->n++;
    p->keys[p->n] = NULL;
    p->values[p->n] = NULL;
}

void db_connect_params_build(struct db_connect_params *p, const char *conninfo, const char *host,
                             const char *hostaddr)
{
    memset(p, 0, sizeof(*p));
    /* Defaults first: entries after the expanded dbname override it, entries
     * before it are overridden by it, so the user's conninfo wins. */
    add_param(p, "keepalives", "1");
    add_param(p, "keepalives_idle", "30");
    add_param(p, "keepalives_interval", "10");
    add_param(p, "keepalives_count", "3");
    add_param(p, "tcp_user_timeout", "60000");
    add_param(p, "connect_timeout", "10");
    add_param(p, "application_name", "followupd");
    if (conninfo != NULL && *conninfo != '\0') add_param(p, "dbname", conninfo);
    if (host != NULL) add_param(p, "host", host);
    if (hostaddr != NULL) add_param(p, "hostaddr", hostaddr);
}

static const char *option_value(const PQconninfoOption *opts, const char *keyword)
{
    for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (strcmp(o->keyword, keyword) == 0) return (o->val != NULL && *o->val != '\0') ? o->val : NULL;
    return NULL;
}

static int is_ip_literal(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

char *db_host_to_resolve(const char *conninfo, const char *env_host, const char *env_hostaddr)
{
    PQconninfoOption *opts = NULL;
    if (conninfo != NULL && *conninfo != '\0') {
        char *errmsg = NULL;
        opts = PQconninfoParse(conninfo, &errmsg);
        if (opts == NULL) {
            PQfreemem(errmsg);
            return NULL; /* libpq reports the error when connecting */
        }
    }
    const char *host = opts ? option_value(opts, "host") : NULL;
    const char *hostaddr = opts ? option_value(opts, "hostaddr") : NULL;
    if (host == NULL) host = (env_host != NULL && *env_host != '\0') ? env_host : NULL;
    if (hostaddr == NULL) hostaddr = (env_hostaddr != NULL && *env_hostaddr != '\0') ? env_hostaddr : NULL;
    char *out = NULL;
    if (hostaddr == NULL && host != NULL && strchr(host, ',') == NULL && host[0] != '/' && host[0] != '@' &&
        !is_ip_literal(host))
        out = strdup(host);
    PQconninfoFree(opts);
    return out;
}

char *db_sql_render(const char *tmpl, const char *quoted)
{
    size_t qlen = strlen(quoted), n = strlen(tmpl) + 1;
    for (const char *p = strstr(tmpl, "%s"); p != NULL; p = strstr(p + 2, "%s")) n += qlen;
    char *out = malloc(n), *o = out;
    if (out == NULL) return NULL;
    for (const char *p = tmpl; *p;) {
        if (p[0] == '%' && p[1] == 's') {
            memcpy(o, quoted, qlen);
            o += qlen;
            p += 2;
        } else if (p[0] == '%' && p[1] == '%') {
            *o++ = '%';
            p += 2;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

char *db_text_array_literal(char *const *items, int n)
{
    size_t cap = 3;
    for (int i = 0; i < n; i++) cap += 2 * strlen(items[i]) + 3;
    char *out = malloc(cap), *p = out;
    if (out == NULL) return NULL;
    *p++ = '{';
    for (int i = 0; i < n; i++) {
        if (i > 0) *p++ = ',';
        *p++ = '"';
        for (const char *c = items[i]; *c; c++) {
            if (*c == '"' || *c == '\\') *p++ = '\\';
            *p++ = *c;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return out;
}
