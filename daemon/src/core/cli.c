/*
 * core/cli — flag parsing and the two run modes (see cli.h).  Configuration
 * problems are reported one per line (core/cli_output: plain on a terminal,
 * JSON otherwise), so --check-config lists everything wrong at once.
 */
#include "core/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/app.h"
#include "core/cli_output.h"
#include "core/config.h"
#include "features/deals_pipeline/services/followup_keys.h"

static const struct {
    const char *name;
    enum cli_command command;
    int operands;   /* positional arguments after the name */
} commands[] = {
    {"migrate", CLI_MIGRATE, 0}, {"status", CLI_STATUS, 0}, {"inspect", CLI_INSPECT, 1}, {"retry", CLI_RETRY, 1},
};

/* The command word at argv[*next] (if any) and its operands. */
static int parse_command(int argc, char **argv, int next, struct cli_options *out)
{
    if (next >= argc) return CLI_OK;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[next], commands[i].name) != 0) continue;
        out->command = commands[i].command;
        if (argc - next - 1 != commands[i].operands) return CLI_USAGE_ERROR;
        if (commands[i].operands == 1) out->booking_id = argv[next + 1];
        return CLI_OK;
    }
    return CLI_USAGE_ERROR;
}

/* Options that belong to one command only, and what each command needs. */
static int check_combination(const struct cli_options *o)
{
    enum cli_command c = o->command;
    bool booking = c == CLI_INSPECT || c == CLI_RETRY;
    if ((o->rollback || o->sql_dir != NULL) && c != CLI_MIGRATE) return CLI_USAGE_ERROR;
    if (o->schema != NULL && c != CLI_STATUS && !booking) return CLI_USAGE_ERROR;
    if (o->tenant != NULL && !booking) return CLI_USAGE_ERROR;
    if (o->dry_run && c != CLI_RETRY) return CLI_USAGE_ERROR;
    if (o->check_config && c != CLI_RUN) return CLI_USAGE_ERROR;
    if (o->json && c == CLI_RUN && !o->check_config) return CLI_USAGE_ERROR; /* the daemon always logs JSON */
    if (booking && (o->schema == NULL || o->tenant == NULL || !followup_is_uuid(o->tenant) ||
                    !followup_is_uuid(o->booking_id)))
        return CLI_USAGE_ERROR;
    return CLI_OK;
}

int cli_parse(int argc, char **argv, struct cli_options *out)
{
    static const struct option long_opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},      {"help", no_argument, NULL, 'h'},
        {"rollback", no_argument, NULL, 'r'},     {"sql-dir", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},         {"schema", required_argument, NULL, 'S'},
        {"tenant", required_argument, NULL, 'T'}, {"dry-run", no_argument, NULL, 'n'},
        {NULL, 0, NULL, 0},
    };
    memset(out, 0, sizeof(*out));
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "c:Vh", long_opts, NULL)) != -1) {
        switch (c) {
        case 'c': out->config_path = optarg; break;
        case 'k': out->check_config = true; break;
        case 'V': out->version = true; break;
        case 'h': out->help = true; break;
        case 'r': out->rollback = true; break;
        case 's': out->sql_dir = optarg; break;
        case 'j': out->json = true; break;
        case 'S': out->schema = optarg; break;
        case 'T': out->tenant = optarg; break;
        case 'n': out->dry_run = true; break;
        default: return CLI_USAGE_ERROR;
        }
    }
    if (out->help || out->version) return CLI_OK; /* whatever else is given */
    if (parse_command(argc, argv, optind, out) != CLI_OK) return CLI_USAGE_ERROR;
    return check_combination(out);
}

int cli_check_config(const char *path, bool json)
{
    struct cli_output o;
    cli_output_init(&o, json, false);
    struct config cfg;
    int rc = cli_output_load_config(&o, path, &cfg);
    if (rc == 0) {
        const char *backend = cfg.queue_backend == QUEUE_LOCAL ? "local" : "cloudtasks";
        cli_say(&o, LOG_LEVEL_INFO, NULL,
                (const char *[]){"config", path, "log_level", log_level_name(cfg.log_level), "backend", backend, NULL},
                "configuration OK", "followupd: configuration %s OK (backend %s, %d schema(s), log level %s)", path,
                backend, cfg.db_schemas.n, log_level_name(cfg.log_level));
    } else {
        cli_say(&o, LOG_LEVEL_ERROR, NULL, (const char *[]){"config", path, NULL}, "configuration invalid",
                "followupd: configuration %s invalid", path);
    }
    config_free(&cfg);
    cli_output_free(&o);
    return rc == 0 ? 0 : 1;
}

int cli_run_daemon(const char *path)
{
    struct cli_output boot;
    cli_output_init(&boot, true, false); /* the daemon logs JSON lines, also on a terminal */
    struct config cfg;
    if (cli_output_load_config(&boot, path, &cfg) != 0) {
        LOG_ERROR(&boot.diag, NULL, "cannot start: invalid configuration");
        config_free(&cfg);
        cli_output_free(&boot);
        return 1;
    }
    cli_output_free(&boot);
    struct app *app = calloc(1, sizeof(*app));
    if (app == NULL) {
        config_free(&cfg);
        return 1;
    }
    int code = 1;
    if (app_init(app, &cfg, path) == 0 && app_start(app) == 0) {
        code = app_run(app);
    } else {
        LOG_ERROR(&app->log, NULL, "cannot start");
        app_stop(app, "startup failure");
        uv_run(&app->loop, UV_RUN_DEFAULT);
        code = 1;
    }
    if (app_destroy(app) != 0 && code == 0) code = 1;
    free(app);
    return code;
}
