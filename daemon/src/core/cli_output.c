/*
 * core/cli_output — see the header.
 */
#include "core/cli_output.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cli_output_init(struct cli_output *o, bool force_json, bool main_is_report)
{
    memset(o, 0, sizeof(*o));
    logger_init(&o->report, LOG_LEVEL_DEBUG, STDOUT_FILENO);
    log_set_format(&o->report, LOG_FORMAT_TEXT, NULL);
    logger_init(&o->diag, LOG_LEVEL_INFO, STDERR_FILENO);
    o->plain = !force_json && log_is_terminal(main_is_report ? &o->report : &o->diag);
    if (o->plain) log_set_format(&o->diag, LOG_FORMAT_TEXT, NULL);
}

void cli_output_free(struct cli_output *o)
{
    logger_free(&o->report);
    logger_free(&o->diag);
}

/* `path: problem` unless the problem already starts with the file (file:line: ...). */
static void say_config_problem(struct cli_output *o, const char *path, const char *problem)
{
    size_t n = strlen(path);
    bool placed = strncmp(problem, path, n) == 0 && problem[n] == ':';
    cli_say(o, LOG_LEVEL_ERROR, NULL, (const char *[]){"error", problem, "config", path, NULL},
            "configuration error", "%s%s%s", placed ? "" : path, placed ? "" : ": ", problem);
}

int cli_output_load_config(struct cli_output *o, const char *path, struct config *cfg)
{
    struct config_errors errs = {0};
    int rc = config_load(cfg, path, NULL, &errs);
    config_register_secrets(cfg, &o->diag); /* what did load, before any line about the rest */
    config_register_secrets(cfg, &o->report);
    for (int i = 0; i < errs.n; i++) say_config_problem(o, path, errs.msgs[i]);
    config_errors_free(&errs);
    if (rc != 0) return -1;
    if (!o->plain) config_apply_log_format(cfg, &o->diag);
    return 0;
}

void cli_say(struct cli_output *o, enum log_level lvl, const struct log_ctx *ctx, const char *const *fields,
             const char *json_msg, const char *plain_fmt, ...)
{
    if (!o->plain) {
        LOG_KV(&o->diag, lvl, ctx, fields, "%s", json_msg);
        return;
    }
    /* The caller words the whole plain line (`file:line: problem`, "error: ..."): written as it is. */
    va_list ap;
    va_start(ap, plain_fmt);
    log_vwrite(&o->diag, LOG_LEVEL_INFO, NULL, NULL, plain_fmt, ap);
    va_end(ap);
}

void cli_print(struct cli_output *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(&o->report, LOG_LEVEL_INFO, NULL, NULL, fmt, ap);
    va_end(ap);
}

void cli_print_json(struct cli_output *o, json_t *doc)
{
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text != NULL) cli_print(o, "%s", text);
    free(text);
    json_decref(doc);
}
