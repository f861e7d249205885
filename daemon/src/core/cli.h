/*
 * core/cli — what the command line does, minus printing help/version (main.c):
 * flag parsing, --check-config, and running the daemon.  The commands are
 * `migrate` (core/migrate) and the operator commands `status`, `inspect` and
 * `retry` (core/operator_cli).
 */
#ifndef FOLLOWUPD_CORE_CLI_H
#define FOLLOWUPD_CORE_CLI_H

#include <stdbool.h>

enum { CLI_OK = 0, CLI_USAGE_ERROR = 2 };

enum cli_command { CLI_RUN = 0, CLI_MIGRATE, CLI_STATUS, CLI_INSPECT, CLI_RETRY };

struct cli_options {
    const char *config_path;
    bool check_config;
    bool help;
    bool version;
    bool json;                /* --json: JSON output even on a terminal (check-config and the commands) */
    enum cli_command command;
    /* migrate */
    bool rollback;            /* --rollback */
    const char *sql_dir;      /* --sql-dir DIR */
    /* status, inspect, retry */
    const char *schema;       /* --schema S (status: only that schema) */
    const char *tenant;       /* --tenant T (inspect, retry) */
    const char *booking_id;   /* BOOKING_ID (inspect, retry) */
    bool dry_run;             /* --dry-run (retry) */
};

/* CLI_OK, or CLI_USAGE_ERROR for an unknown flag, a misplaced option, a missing or malformed argument. */
int cli_parse(int argc, char **argv, struct cli_options *out);
int cli_check_config(const char *path, bool json);   /* exit code 0/1 */
int cli_run_daemon(const char *path);                /* exit code */

#endif
