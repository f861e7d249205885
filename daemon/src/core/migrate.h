/*
 * core/migrate — `followupd --config FILE migrate [--rollback] [--sql-dir DIR]`:
 * applies the .sql files of sql/migrations in file-name order — or, with
 * --rollback, those of sql/rollback in reverse order — to every schema of
 * [database] schemas, one schema after the other, over one blocking libpq
 * session (shared/db/db_migrate: search_path set to the quoted schema, each
 * script run statement by statement like `psql -f`; the scripts are
 * idempotent and carry their own transactions).  Stops at the first failure
 * and names the schema, the file and the line.  Output (core/cli_output): one
 * line per applied file and per schema on stderr — plain on a terminal (a
 * failure reads `DIR/FILE:LINE: schema S: error`), JSON log lines otherwise
 * or with --json.  Exit code 0, or 1.
 *
 * SQL directory: --sql-dir DIR; otherwise <prefix>/share/followupd/sql where
 * the running binary is <prefix>/bin/followupd (the `make install` layout);
 * otherwise ./sql (running build/followupd from the source tree).  DIR must
 * hold migrations/ and rollback/.
 */
#ifndef FOLLOWUPD_CORE_MIGRATE_H
#define FOLLOWUPD_CORE_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

struct migrate_opts {
    const char *config_path;
    const char *sql_dir; /* NULL: installed share dir, else ./sql */
    bool rollback;
    bool json;          /* --json: JSON lines even on a terminal */
};

int migrate_run(const struct migrate_opts *opts); /* exit code */

/* The SQL directory to use (into out); 0, or -1 when none of the candidates
 * exists (tried lists them). exe_path: the running binary (NULL = unknown). */
int migrate_resolve_sql_dir(const char *given, const char *exe_path, char *out, size_t cap, char *tried,
                            size_t tried_cap);

#endif
