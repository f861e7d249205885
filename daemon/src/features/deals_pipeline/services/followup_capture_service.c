/*
 * deals_pipeline/services/followup_capture_service — see the header.
 */
#include "features/deals_pipeline/services/followup_capture_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_next_schema(struct followup_capture *c);

int followup_capture_init(struct followup_capture *c, const struct config *cfg, struct bookings_repo *repo,
                          struct logger *log)
{
    memset(c, 0, sizeof(*c));
    c->cfg = cfg;
    c->repo = repo;
    c->log = log;
    c->n_schemas = cfg->db_schemas.n;
    c->state = calloc((size_t)(c->n_schemas > 0 ? c->n_schemas : 1), sizeof(*c->state));
    return c->state != NULL ? 0 : -1;
}

/* The arguments the configuration asks for, as encode(tgargs, 'escape') shows them. */
static int expected_args(const struct config *cfg, char *out, size_t cap)
{
    char types[1024];
    if (config_join_list(&cfg->followup_booking_types, types, sizeof(types)) != 0) return -1;
    int n = snprintf(out, cap, "%s\\000%d\\000", types, cfg->capture_notify_within_s);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

const char *followup_capture_difference(const struct config *cfg, const struct capture_trigger *t, int n,
                                        char *detail, size_t cap)
{
    detail[0] = '\0';
    if (cfg->capture_mode == CAPTURE_POLL)
        return n == 0 ? NULL : "NOTIFY triggers are installed although [capture] mode = poll";
    if (n < CAPTURE_TRIGGERS_MAX) return "NOTIFY triggers are missing";
    char want[1200];
    if (expected_args(cfg, want, sizeof(want)) != 0) return "cannot compute the expected trigger arguments";
    for (int i = 0; i < n; i++) {
        if (!t[i].enabled) return "a NOTIFY trigger is disabled";
        if (strcmp(t[i].args, want) != 0) {
            snprintf(detail, cap, "installed '%s', configured '%s'", t[i].args, want);
            return "the NOTIFY triggers' arguments (booking types, notify_within_s) differ from the configuration";
        }
    }
    return NULL;
}

static void report(struct followup_capture *c, enum capture_state now, const char *why, const char *detail)
{
    const char *schema = c->cfg->db_schemas.items[c->idx];
    struct log_ctx ctx = {.schema = schema};
    enum capture_state before = c->state[c->idx];
    c->state[c->idx] = now;
    if (now == before) return;
    if (now == CAPTURE_DIFFERS)
        LOG_KV(c->log, LOG_LEVEL_WARN, &ctx, ((const char *[]){"reason", why, "detail", detail, NULL}),
               "capture triggers of schema %s do not match the configuration: run `followupd migrate`; until then "
               "the periodic sweep finds what the triggers miss",
               schema);
    else if (before == CAPTURE_DIFFERS)
        LOG_INFO(c->log, &ctx, "capture triggers of schema %s match the configuration again", schema);
}

static void on_triggers(void *arg, enum repo_rc rc, const struct capture_trigger *t, int n)
{
    struct followup_capture *c = arg;
    if (c->closed) {
        c->running = false;
        return;
    }
    if (rc != REPO_OK) {
        LOG_WARN(c->log, &(struct log_ctx){.schema = c->cfg->db_schemas.items[c->idx]},
                 "cannot read the capture triggers; the next check retries");
    } else {
        char detail[2600];
        const char *why = followup_capture_difference(c->cfg, t, n, detail, sizeof(detail));
        report(c, why != NULL ? CAPTURE_DIFFERS : CAPTURE_MATCHES, why, detail);
    }
    c->idx++;
    check_next_schema(c);
}

static void check_next_schema(struct followup_capture *c)
{
    while (!c->closed && c->idx < c->n_schemas) {
        const char *schema = c->cfg->db_schemas.items[c->idx];
        if (c->repo->capture_triggers(c->repo->impl, schema, on_triggers, c) == 0) return;
        c->idx++;
    }
    c->running = false;
    c->checks++;
    int differ = 0;
    for (int i = 0; i < c->n_schemas; i++) differ += c->state[i] == CAPTURE_DIFFERS;
    LOG_INFO(c->log, NULL, "capture triggers checked: %d of %d schema(s) differ from the configuration", differ,
             c->n_schemas);
    if (c->rerun && !c->closed) {
        c->rerun = false;
        followup_capture_check(c);
    }
}

void followup_capture_check(struct followup_capture *c)
{
    if (c->closed) return;
    if (c->running) {
        c->rerun = true;
        return;
    }
    c->running = true;
    c->idx = 0;
    check_next_schema(c);
}

void followup_capture_close(struct followup_capture *c)
{
    c->closed = true;
}

void followup_capture_free(struct followup_capture *c)
{
    free(c->state);
    c->state = NULL;
}
