/*
 * shared/db/db_migrate — see the header.
 */
#include "shared/db/db_migrate.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/db/db_util.h"
#include "utils/log.h"

struct db_migrate_session {
    PGconn *conn;
    struct logger *lg;
};

/* ---- the statement splitter ---- */

static bool word_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

static bool tag_char(unsigned char c, bool first)
{
    return isalpha(c) || c == '_' || c >= 0x80 || (!first && isdigit(c));
}

/* Length of a dollar-quote delimiter ("$$", "$tag$") at sql[i], 0 if none. */
static size_t dollar_delimiter(const char *sql, size_t len, size_t i)
{
    size_t j = i + 1;
    while (j < len && tag_char((unsigned char)sql[j], j == i + 1))
        j++;
    return j < len && sql[j] == '$' ? j - i + 1 : 0;
}

static int line_at(const char *sql, size_t off)
{
    int line = 1;
    for (size_t i = 0; i < off; i++)
        if (sql[i] == '\n') line++;
    return line;
}

/* End (index after) of the quoted run starting at sql[i], or 0 when unterminated. */
static size_t skip_quoted(const char *sql, size_t len, size_t i, char quote, bool backslash_escapes)
{
    for (size_t j = i + 1; j < len; j++) {
        if (backslash_escapes && sql[j] == '\\') {
            j++;
            continue;
        }
        if (sql[j] != quote) continue;
        if (j + 1 < len && sql[j + 1] == quote) { /* doubled quote */
            j++;
            continue;
        }
        return j + 1;
    }
    return 0;
}

static size_t skip_block_comment(const char *sql, size_t len, size_t i)
{
    int depth = 0;
    for (size_t j = i; j + 1 < len; j++) {
        if (sql[j] == '/' && sql[j + 1] == '*') {
            depth++;
            j++;
        } else if (sql[j] == '*' && sql[j + 1] == '/') {
            j++;
            if (--depth == 0) return j + 1;
        }
    }
    return 0;
}

static size_t skip_dollar_quoted(const char *sql, size_t len, size_t i, size_t tag_len)
{
    for (size_t j = i + tag_len; j + tag_len <= len; j++)
        if (sql[j] == '$' && memcmp(sql + j, sql + i, tag_len) == 0) return j + tag_len;
    return 0;
}

static int fail_at(const char *sql, size_t off, struct sql_statement *out)
{
    out->offset = off;
    out->len = 0;
    out->line = line_at(sql, off);
    return -1;
}

#define UNTERMINATED SIZE_MAX

static size_t or_unterminated(size_t end)
{
    return end == 0 ? UNTERMINATED : end;
}

/* Skips one quoted/commented construct at sql[i]; returns the index after it,
 * i itself when there is none, or UNTERMINATED. */
static size_t skip_construct(const char *sql, size_t len, size_t i)
{
    char c = sql[i], next = i + 1 < len ? sql[i + 1] : '\0';
    if (c == '-' && next == '-') {
        const char *nl = memchr(sql + i, '\n', len - i);
        return nl != NULL ? (size_t)(nl - sql) + 1 : len;
    }
    if (c == '/' && next == '*') return or_unterminated(skip_block_comment(sql, len, i));
    if (c == '\'') {
        bool e_string =
            i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e') && (i < 2 || !word_char((unsigned char)sql[i - 2]));
        return or_unterminated(skip_quoted(sql, len, i, '\'', e_string));
    }
    if (c == '"') return or_unterminated(skip_quoted(sql, len, i, '"', false));
    if (c == '$' && (i == 0 || !word_char((unsigned char)sql[i - 1]))) {
        size_t tag = dollar_delimiter(sql, len, i);
        if (tag > 0) return or_unterminated(skip_dollar_quoted(sql, len, i, tag));
    }
    return i;
}

static bool is_comment_start(const char *sql, size_t len, size_t i)
{
    return i + 1 < len && ((sql[i] == '-' && sql[i + 1] == '-') || (sql[i] == '/' && sql[i + 1] == '*'));
}

int db_sql_next_statement(const char *sql, size_t len, size_t *pos, struct sql_statement *out)
{
    size_t i = *pos, start = SIZE_MAX;
    int depth = 0;
    while (i < len) {
        unsigned char c = (unsigned char)sql[i];
        if (start == SIZE_MAX && (isspace(c) || c == ';')) { /* blanks and empty statements */
            i++;
            continue;
        }
        if (start == SIZE_MAX && !is_comment_start(sql, len, i)) {
            start = i;
            if (c == '\\') return fail_at(sql, i, out); /* psql meta-command */
        }
        size_t after = skip_construct(sql, len, i);
        if (after == UNTERMINATED) return fail_at(sql, i, out);
        if (after != i) {
            i = after;
            continue;
        }
        if (c == ';' && depth == 0) {
            *out = (struct sql_statement){.offset = start, .len = i - start, .line = line_at(sql, start)};
            *pos = i + 1;
            return 1;
        }
        if (c == '(')
            depth++;
        else if (c == ')' && depth > 0)
            depth--;
        if (word_char(c)) {
            while (i < len && word_char((unsigned char)sql[i]))
                i++; /* a$b, E'..' prefixes, numbers */
            continue;
        }
        i++;
    }
    *pos = len;
    if (start == SIZE_MAX) return 0;
    *out = (struct sql_statement){.offset = start, .len = len - start, .line = line_at(sql, start)};
    return 1;
}

/* ---- the session ---- */

static void on_notice(void *arg, const PGresult *res)
{
    struct db_migrate_session *s = arg;
    const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *text = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    char msg[DB_ERR_MAX];
    db_message_clean(text, msg, sizeof(msg));
    bool warning = severity != NULL && strcmp(severity, "WARNING") == 0;
    LOG_KV(s->lg, warning ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG, NULL,
           ((const char *[]){"severity", severity != NULL ? severity : "NOTICE", "server_message", msg, NULL}),
           "server message during migration");
}

PGconn *db_blocking_connect(const char *conninfo, char *err, size_t errlen)
{
    struct db_connect_params p;
    db_connect_params_build(&p, conninfo, NULL, NULL);
    PGconn *conn = PQconnectdbParams(p.keys, p.values, 1);
    if (conn != NULL && PQstatus(conn) == CONNECTION_OK) return conn;
    db_error_clean(conn != NULL ? PQerrorMessage(conn) : "out of memory", err, errlen);
    PQfinish(conn);
    return NULL;
}

struct db_migrate_session *db_migrate_connect(const char *conninfo, struct logger *lg, char *err, size_t errlen)
{
    struct db_migrate_session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->lg = lg;
    if ((s->conn = db_blocking_connect(conninfo, err, errlen)) == NULL) {
        db_migrate_close(s);
        return NULL;
    }
    PQsetNoticeReceiver(s->conn, on_notice, s);
    return s;
}

/* Run one statement; 0 when it completed, -1 with err filled. */
static int exec_one(struct db_migrate_session *s, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(s->conn, sql);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int rc = 0;
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        snprintf(err, errlen, "COPY is not supported in migrations");
        rc = -1;
    } else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        db_message_clean(res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(s->conn), err, errlen);
        rc = -1;
    }
    PQclear(res);
    return rc;
}

int db_migrate_use_schema(struct db_migrate_session *s, const char *schema, char *err, size_t errlen)
{
    char *quoted = PQescapeIdentifier(s->conn, schema, strlen(schema));
    if (quoted == NULL) {
        db_message_clean(PQerrorMessage(s->conn), err, errlen);
        return -1;
    }
    static const char prefix[] = "SET search_path TO ";
    size_t n = sizeof(prefix) + strlen(quoted);
    char *sql = malloc(n);
    int rc = -1;
    if (sql == NULL) {
        snprintf(err, errlen, "out of memory");
    } else {
        snprintf(sql, n, "%s%s", prefix, quoted);
        rc = exec_one(s, sql, err, errlen);
    }
    free(sql);
    PQfreemem(quoted);
    return rc;
}

int db_migrate_install_capture(struct db_migrate_session *s, const char *booking_types, int notify_within_s,
                               bool enabled, char *err, size_t errlen)
{
    char within[16];
    snprintf(within, sizeof(within), "%d", notify_within_s);
    const char *params[] = {booking_types, within, enabled ? "true" : "false"};
    PGresult *res = PQexecParams(s->conn, "SELECT followupd_install_capture('lead_bookings'::regclass, $1::text, $2::int, $3::boolean)", 3,
                                 NULL, params, NULL, NULL, 0);
    int rc = res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK ? 0 : -1;
    if (rc != 0) db_message_clean(res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(s->conn), err, errlen);
    PQclear(res);
    return rc;
}

int db_migrate_run_script(struct db_migrate_session *s, const char *script, size_t len, int *statements_run, char *err,
                          size_t errlen)
{
    *statements_run = 0;
    size_t pos = 0;
    struct sql_statement st;
    int found;
    while ((found = db_sql_next_statement(script, len, &pos, &st)) == 1) {
        char *sql = strndup(script + st.offset, st.len);
        char msg[DB_ERR_MAX] = "out of memory";
        int rc = sql != NULL ? exec_one(s, sql, msg, sizeof(msg)) : -1;
        free(sql);
        if (rc != 0) {
            snprintf(err, errlen, "line %d: %s", st.line, msg);
            return -1;
        }
        (*statements_run)++;
    }
    if (found < 0) {
        snprintf(err, errlen, "line %d: unterminated quote, dollar quote or comment, or a psql meta-command", st.line);
        return -1;
    }
    if (PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
        snprintf(err, errlen, "the script left a transaction open (missing COMMIT)");
        return -1;
    }
    return 0;
}

void db_migrate_close(struct db_migrate_session *s)
{
    if (s == NULL) return;
    if (s->conn != NULL) PQfinish(s->conn);
    free(s);
}
