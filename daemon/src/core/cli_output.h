/*
 * core/cli_output — how the interactive command-line modes (--check-config,
 * migrate, status, inspect, retry) speak: plain lines for a person at a
 * terminal, JSON when asked (--json) or when their output is not a terminal
 * (a script, a pipe, journald).  The daemon itself always logs JSON lines.
 *
 * Two channels, both written by the one logger (utils/log: one write(2) per
 * line, secrets redacted, control bytes of untrusted text neutralized in
 * plain lines):
 *   report       the command's answer on stdout — plain lines, or one JSON
 *                document (status, inspect, retry);
 *   diagnostics  progress and problems on stderr — plain lines
 *                (`file:line: problem`, like `nginx -t`), or JSON log lines
 *                in the configured [log] format.
 * Plain or JSON is decided once per command, from the descriptor its main
 * output goes to (stderr for --check-config and migrate, stdout for the
 * others).
 */
#ifndef FOLLOWUPD_CORE_CLI_OUTPUT_H
#define FOLLOWUPD_CORE_CLI_OUTPUT_H

#include <jansson.h>
#include <stdbool.h>

#include "core/config.h"
#include "utils/log.h"

struct cli_output {
    bool plain;
    struct logger report;   /* stdout, text format (a plain line or a JSON document per write) */
    struct logger diag;     /* stderr */
};

/* plain = !force_json && isatty(main_fd). */
void cli_output_init(struct cli_output *o, bool force_json, bool main_is_report);
void cli_output_free(struct cli_output *o);

/* Load the configuration and report every problem: plain `file:line: problem` lines (a problem without a
 * place is prefixed with the file), or one JSON "configuration error" line each. Then, when it loaded, the
 * diagnostics follow [log] format (JSON mode) and redact the configured secrets. 0, or -1. */
int cli_output_load_config(struct cli_output *o, const char *path, struct config *cfg);

/* One diagnostic: in plain mode the formatted plain line as it is (the caller words it, "error: ..." included);
 * else a JSON log line at lvl with json_msg, ctx and fields. */
void cli_say(struct cli_output *o, enum log_level lvl, const struct log_ctx *ctx, const char *const *fields,
             const char *json_msg, const char *plain_fmt, ...) __attribute__((format(printf, 6, 7)));
/* One line of the report (plain mode). */
void cli_print(struct cli_output *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The report as one JSON document on one line (JSON mode); takes the reference of doc. */
void cli_print_json(struct cli_output *o, json_t *doc);

#endif
