/*
 * main — followupd's command line.  Parses flags, loads the configuration,
 * then either reports on it (--check-config) or runs the daemon in the
 * foreground (systemd style, no self-daemonizing).  Only print_usage() and
 * print_version() write to stdout/stderr directly; everything else goes
 * through the structured logger.
 *
 * Exit codes: 0 ok, 1 runtime/config failure, 2 usage error.
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

#define DEFAULT_CONFIG "/etc/followupd/followupd.conf"

static void print_usage(FILE *out)
{
    fprintf(out,
            "Usage: followupd [--config FILE] [--check-config]\n"
            "       followupd [--config FILE] migrate [--rollback] [--sql-dir DIR]\n"
            "       followupd --version | --help\n"
            "\n"
            "followupd turns follow-up bookings inserted into <schema>.lead_bookings into\n"
            "scheduled Google Cloud Tasks (or a local durable dispatcher) and starts exactly one\n"
            "voice-agent call per booking when the task fires.\n"
            "\n"
            "Options:\n"
            "  -c, --config FILE    configuration file (default " DEFAULT_CONFIG ")\n"
            "      --check-config   load and validate the configuration, report every problem,\n"
            "                       exit 0 when valid, 1 otherwise\n"
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
    if (cli.migrate) {
        struct migrate_opts mo = {.config_path = path, .sql_dir = cli.sql_dir, .rollback = cli.rollback};
        return migrate_run(&mo);
    }
    return cli.check_config ? cli_check_config(path) : cli_run_daemon(path);
}
