/*
 * shared/db/db_migrate — the SQL side of `followupd migrate`: a blocking
 * libpq session (this runs from the command line, never on the event loop)
 * that points search_path at one tenant schema and runs migration scripts
 * statement by statement, exactly as `psql -f` would send them.
 *
 * Why statement by statement: the scripts hold their own BEGIN/COMMIT and
 * CREATE INDEX CONCURRENTLY, which PostgreSQL refuses inside a transaction
 * block — and a multi-statement simple query is one implicit transaction.
 * db_sql_next_statement() splits a script the way psql's lexer does: ';' ends
 * a statement only outside quotes ('...', E'...' with backslash escapes,
 * "..."), dollar quotes ($$...$$, $tag$...$tag$), comments (-- and nested
 * C-style block comments) and parentheses; a piece holding only whitespace
 * and comments is not a statement.  psql meta-commands (lines starting with
 * a backslash), psql variables and BEGIN ATOMIC function bodies are not
 * supported (the migrations use none of them).
 *
 * The schema is quoted with PQescapeIdentifier and set with
 * `SET search_path TO <schema>`; it is never part of the scripts.  Server
 * NOTICEs go to the logger at debug level, WARNINGs at warn level.  Errors
 * are returned as one cleaned line (no secrets: the conninfo is never echoed).
 */
#ifndef FOLLOWUPD_SHARED_DB_DB_MIGRATE_H
#define FOLLOWUPD_SHARED_DB_DB_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

struct logger;
struct db_migrate_session;

struct sql_statement {
    size_t offset, len; /* the statement's text in the script (without the ';') */
    int line;           /* 1-based line where it starts */
};

/* Next statement at or after *pos in sql[0..len). 1: *out set and *pos moved
 * past it; 0: no statement left; -1: an unterminated quote, dollar quote or
 * comment, or a meta-command (out->line says where). */
int db_sql_next_statement(const char *sql, size_t len, size_t *pos, struct sql_statement *out);

/* Blocking connect (our connection defaults, the user's conninfo wins). NULL with err filled. */
struct db_migrate_session *db_migrate_connect(const char *conninfo, struct logger *lg, char *err, size_t errlen);
/* SET search_path TO <quoted schema>. 0, or -1 with err filled. */
int db_migrate_use_schema(struct db_migrate_session *s, const char *schema, char *err, size_t errlen);
/* Run every statement of `script`. 0, or -1 with err filled ("line N: message")
 * and *statements_run counting the statements that succeeded. Fails too when
 * the script leaves a transaction open. */
int db_migrate_run_script(struct db_migrate_session *s, const char *script, size_t len, int *statements_run, char *err,
                          size_t errlen);
/* followupd_install_capture(types, within, enabled) of the current schema (migration 007): the NOTIFY triggers
 * with the configured arguments, or none (enabled = false). 0, or -1 with err filled. */
int db_migrate_install_capture(struct db_migrate_session *s, const char *booking_types, int notify_within_s,
                               bool enabled, char *err, size_t errlen);
void db_migrate_close(struct db_migrate_session *s);

#endif
