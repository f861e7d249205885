/*
 * core/cli — what the command line does, minus printing help/version (main.c):
 * flag parsing, --check-config, and running the daemon.  The one command,
 * `migrate` (with --rollback and --sql-dir), is core/migrate.
 */
#ifndef FOLLOWUPD_CORE_CLI_H
#define FOLLOWUPD_CORE_CLI_H

#include <stdbool.h>

enum { CLI_OK = 0, CLI_USAGE_ERROR = 2 };

struct cli_options {
    const char *config_path;
    bool check_config;
    bool help;
    bool version;
    /* operations: `migrate` command */
    bool migrate;
    bool rollback;            /* --rollback (migrate only) */
    const char *sql_dir;      /* --sql-dir DIR (migrate only) */
};

int cli_parse(int argc, char **argv, struct cli_options *out);
int cli_check_config(const char *path);   /* exit code 0/1 */
int cli_run_daemon(const char *path);     /* exit code */

#endif
