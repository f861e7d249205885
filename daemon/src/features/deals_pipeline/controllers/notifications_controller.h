/*
 * deals_pipeline/controllers/notifications_controller — the boundary for
 * PostgreSQL notifications: parses the trigger's camelCase JSON payload
 * ({"schema","tenantId","bookingId","op"[,"taskName"]}), checks it against the allowlist
 * and the channel it arrived on, and hands a booking reference to the
 * scheduler.  Malformed payloads and unknown schemas are logged and dropped.
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_NOTIFICATIONS_CONTROLLER_H
#define FOLLOWUPD_DEALS_PIPELINE_NOTIFICATIONS_CONTROLLER_H

#include <stddef.h>

#include "core/config.h"
#include "features/deals_pipeline/services/followup_scheduler_service.h"
#include "utils/log.h"

enum notify_verdict { NOTIFY_QUEUED = 0, NOTIFY_MALFORMED, NOTIFY_UNKNOWN_SCHEMA, NOTIFY_WRONG_CHANNEL, NOTIFY_DROPPED };

struct booking_ref {
    char schema[SCHEMA_NAME_LEN];
    char tenant_id[UUID_STR_LEN];
    char booking_id[UUID_STR_LEN];
    char op[8];
    char task_name[TASK_NAME_LEN];   /* DELETE of a row that had a task; "" otherwise */
};

/* Pure parse + validation (fuzzed): 0 ok, -1 malformed. */
int notification_parse(const char *payload, size_t len, struct booking_ref *out);

enum notify_verdict notifications_controller_handle(const struct config *cfg, struct followup_scheduler *sched,
                                                    struct logger *log, const char *channel, const char *payload);

#endif
