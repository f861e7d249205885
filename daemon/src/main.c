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

#define DEFAULT_CONFIG "/etc/followupd/followupd.conf"

static void print_usage(FILE *out)
{
    fprintf(out,
            "Usage: followupd [--config FILE] [--check-config]\n"
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
            "Every key can be overridden with FOLLOWUPD_<SECTION>_<KEY>; secret keys also take\n"
            "<key>_file (relative paths resolve against $CREDENTIALS_DIRECTORY).\n"
            "Logs are JSON lines on stderr. Signals: SIGTERM/SIGINT stop (a second one exits\n"
            "at once), SIGHUP reloads the configuration.\n");
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
    return cli.check_config ? cli_check_config(path) : cli_run_daemon(path);
}
