/*
 * main — followupd's command line.  Parses flags, then either reports on the
 * configuration (--check-config), runs a command (migrate, status, inspect,
 * retry) or runs the daemon in the foreground (systemd style, no
 * self-daemonizing).  Only print_usage() and print_version() write to
 * stdout/stderr directly; everything else goes through the structured logger
 * (the interactive modes through core/cli_output).
 *
 * Exit codes: 0 ok, 1 runtime/config failure, 2 usage error; status 3 when
 * something needs attention, retry 3 when refused, inspect/retry 4 when the
 * booking is not found.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/app.h"
#include "core/cli.h"
#include "core/config.h"
#include "core/migrate.h"
#include "core/operator_cli.h"

#define DEFAULT_CONFIG "/etc/followupd/followupd.conf"

static void print_usage(FILE *out)
{
    fprintf(out,
            "Usage: followupd [--config FILE] [--check-config [--json]]\n"
            "       followupd [--config FILE] migrate [--rollback] [--sql-dir DIR] [--json]\n"
            "       followupd [--config FILE] status [--schema S] [--json]\n"
            "       followupd [--config FILE] inspect --schema S --tenant T BOOKING_ID [--json]\n"
            "       followupd [--config FILE] retry --schema S --tenant T BOOKING_ID [--dry-run] [--json]\n"
            "       followupd --version | --help\n"
            "\n"
            "followupd turns follow-up bookings inserted into <schema>.lead_bookings into\n"
            "scheduled Google Cloud Tasks (or a local durable dispatcher) and starts exactly one\n"
            "voice-agent call per booking when the task fires.\n"
            "\n"
            "Options:\n"
            "  -c, --config FILE    configuration file (default " DEFAULT_CONFIG ")\n"
            "      --check-config   load and validate the configuration, report every problem\n"
            "                       (file:line: problem), exit 0 when valid, 1 otherwise\n"
            "      --json           --check-config and the commands: JSON even on a terminal\n"
            "                       (plain lines on a terminal, JSON otherwise)\n"
            "  -V, --version        print the version and exit\n"
            "  -h, --help           print this help and exit\n"
            "\n"
            "Commands:\n"
            "  migrate              apply the SQL migrations (file-name order) to every schema of\n"
            "                       [database] schemas, schema by schema; stop at the first failure\n"
            "                       (logged with schema, file and line), exit 0 or 1; idempotent\n"
            "      --rollback       apply the rollback scripts instead, in reverse order\n"
            "      --sql-dir DIR    directory holding migrations/ and rollback/ (default:\n"
            "                       <prefix>/share/followupd/sql next to the installed binary,\n"
            "                       else ./sql)\n"
            "  status               per schema: follow-ups by state (cross-tenant counts and\n"
            "                       timestamps only), oldest pending/failed/in progress, next\n"
            "                       due, oldest due not called, expired leases; exit 3 when\n"
            "                       something needs attention\n"
            "      --schema S       only schema S\n"
            "  inspect BOOKING_ID   one booking of tenant T in schema S (--schema, --tenant):\n"
            "                       followupd's columns, its key and task name, and what\n"
            "                       followupd would do with it now and why; exit 4: not found\n"
            "  retry BOOKING_ID     re-drive a booking failed for good under a new task name\n"
            "                       (never an executed one); exit 3: refused, 4: not found\n"
            "      --dry-run        say what would happen, change nothing\n"
            "\n"
            "HTTP endpoints (on [http] listen, no authentication):\n"
            "  GET /healthz         200 while the event loop runs\n"
            "  GET /readyz          200 when ready, else 503 {\"reason\": ...}\n"
            "  GET /metrics         Prometheus text format 0.0.4 (followupd_* metrics)\n"
            "\n"
            "Every key can be overridden with FOLLOWUPD_<SECTION>_<KEY>; secret keys also take\n"
            "<key>_file (relative paths resolve against $CREDENTIALS_DIRECTORY).\n"
            "Logs are JSON lines on stderr. Signals: SIGTERM/SIGINT stop gracefully: stop\n"
            "accepting, let in-flight calls finish for up to [shutdown] drain_timeout_ms, exit 0\n"
            "(a second signal exits at once); SIGHUP reloads the configuration.\n"
            "Under systemd (Type=notify) it sends READY=1, STATUS=, WATCHDOG=1 (when\n"
            "WatchdogSec= is set), RELOADING=1 and STOPPING=1 to $NOTIFY_SOCKET.\n"
            "See followupd(8).\n");
}

static void print_version(void)
{
    fprintf(stdout, "followupd %s\n", FOLLOWUPD_VERSION);
}

int main(int argc, char **argv)
{
    struct cli_options cli;
    int rc = cli_parse(argc, argv, &cli);
    if (rc == CLI_USAGE_ERROR) {
        print_usage(stderr);
        return 2;
    }
    if (cli.help) {
        print_usage(stdout);
        return 0;
    }
    if (cli.version) {
        print_version();
        return 0;
    }
    const char *path = cli.config_path != NULL ? cli.config_path : DEFAULT_CONFIG;
    switch (cli.command) {
    case CLI_MIGRATE: {
        struct migrate_opts mo = {.config_path = path, .sql_dir = cli.sql_dir, .rollback = cli.rollback,
                                  .json = cli.json};
        return migrate_run(&mo);
    }
    case CLI_STATUS:
    case CLI_INSPECT:
    case CLI_RETRY:
        return operator_cli_run(&cli, path);
    case CLI_RUN:
        break;
    }
    return cli.check_config ? cli_check_config(path, cli.json) : cli_run_daemon(path);
}
