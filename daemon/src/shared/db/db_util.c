/*
 * shared/db/db_util — pure helpers of the PostgreSQL layer (see db_util.h).
 * Nothing here touches a connection or the loop; everything is unit-tested.
 */
#include "shared/db/db_util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

static int is_secret_option(const char *keyword)
{
    return strcmp(keyword, "password") == 0 || strcmp(keyword, "sslpassword") == 0;
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
        if (o->val != NULL && !is_secret_option(o->keyword)) cap += option_len(o);
    char *buf = malloc(cap);
    if (buf != NULL) {
        char *end = buf;
        for (const PQconninfoOption *o = opts; o->keyword != NULL; o++) {
            if (o->val == NULL || is_secret_option(o->keyword)) continue;
            if (end != buf) *end++ = ' ';
            end = append_option(end, o);
        }
        *end = '\0';
    }
    PQconninfoFree(opts);
    return buf;
}

char *db_conninfo_password(const char *conninfo)
{
    if (conninfo == NULL || *conninfo == '\0') return NULL;
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
    if (opts == NULL) {
        PQfreemem(errmsg);
        return NULL;
    }
    char *pw = NULL;
    for (const PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "password") == 0) {
            if (o->val != NULL && *o->val != '\0') pw = strdup(o->val);
            break;
        }
    }
    PQconninfoFree(opts);
    return pw;
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
