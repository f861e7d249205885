/*
 * core/cli — flag parsing and the two run modes (see cli.h).  Configuration
 * problems are reported as structured log lines, one per problem, so
 * --check-config lists everything wrong at once.
 */
#include "core/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/app.h"
#include "core/config.h"

int cli_parse(int argc, char **argv, struct cli_options *out)
{
    static const struct option long_opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},      {"help", no_argument, NULL, 'h'},
        {"rollback", no_argument, NULL, 'r'},     {"sql-dir", required_argument, NULL, 's'},
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
        default: return CLI_USAGE_ERROR;
        }
    }
    if (optind < argc && strcmp(argv[optind], "migrate") == 0) {   /* the one command */
        out->migrate = true;
        optind++;
    }
    if (optind < argc) return CLI_USAGE_ERROR;
    if ((out->rollback || out->sql_dir != NULL) && !out->migrate) return CLI_USAGE_ERROR;
    if (out->migrate && out->check_config) return CLI_USAGE_ERROR;
    return CLI_OK;
}

int cli_check_config(const char *path)
{
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, STDERR_FILENO);
    struct config cfg;
    int rc = config_load_logged(&cfg, path, &lg, "configuration error");
    if (rc == 0) {
        LOG_KV(&lg, LOG_LEVEL_INFO, NULL,
               ((const char *[]){"config", path, "log_level", log_level_name(cfg.log_level), "backend",
                                 cfg.queue_backend == QUEUE_LOCAL ? "local" : "cloudtasks", NULL}),
               "configuration OK");
    } else {
        LOG_KV(&lg, LOG_LEVEL_ERROR, NULL, ((const char *[]){"config", path, NULL}), "configuration invalid");
    }
    config_free(&cfg);
    logger_free(&lg);
    return rc == 0 ? 0 : 1;
}

int cli_run_daemon(const char *path)
{
    struct logger boot;
    logger_init(&boot, LOG_LEVEL_INFO, STDERR_FILENO);
    struct config cfg;
    if (config_load_logged(&cfg, path, &boot, "configuration error") != 0) {
        LOG_ERROR(&boot, NULL, "cannot start: invalid configuration");
        config_free(&cfg);
        logger_free(&boot);
        return 1;
    }
    logger_free(&boot);
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
