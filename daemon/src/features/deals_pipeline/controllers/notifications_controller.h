/*
 * deals_pipeline/controllers/notifications_controller — the boundary for
 * PostgreSQL notifications.  Any role that can connect to the database can
 * NOTIFY any channel, so a payload is untrusted input and only ever a hint to
 * look: it is parsed strictly ({"schema","tenantId","bookingId","op"} and, for
 * a DELETE of a row that had a task, "taskName", "idempotencyKey",
 * "taskGeneration"), checked against the schema allowlist and the channel it
 * arrived on, and handed to the scheduler, which re-reads the booking
 * tenant-scoped before it creates, moves or cancels anything (and, for a
 * DELETE, verifies the task name and that the row is really gone).  Whatever
 * fails a check is dropped with one warn line that echoes no payload text
 * beyond validated ids, and counted by reason.  A valid hint for a booking
 * whose partition another replica owns is left to that replica (counted).
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_NOTIFICATIONS_CONTROLLER_H
#define FOLLOWUPD_DEALS_PIPELINE_NOTIFICATIONS_CONTROLLER_H

#include <stddef.h>

#include "core/config.h"
#include "features/deals_pipeline/services/followup_scheduler_service.h"
#include "utils/log.h"

#define NOTIFICATION_MAX_PAYLOAD 1024   /* the trigger's longest payload is ~450 bytes */

enum notify_verdict {
    NOTIFY_QUEUED = 0,
    NOTIFY_REJECTED,
    NOTIFY_DROPPED,     /* scheduler queue full */
    NOTIFY_NOT_OWNED,   /* another replica owns the booking's partition (a DELETE hint is parked) */
};

struct booking_notification {
    char schema[SCHEMA_NAME_LEN];
    char tenant_id[UUID_STR_LEN];
    char booking_id[UUID_STR_LEN];
    char op[8];
    /* DELETE of a row that had a task ("" / 0 otherwise) */
    char task_name[TASK_NAME_LEN];
    char idempotency_key[IDEMPOTENCY_KEY_LEN];
    int task_generation;
};

/* Pure parse + validation (fuzzed): 0 ok, -1 malformed (oversized included). */
int notification_parse(const char *payload, size_t len, struct booking_notification *out);

enum notify_verdict notifications_controller_handle(const struct config *cfg, struct followup_scheduler *sched,
                                                    struct logger *log, const char *channel, const char *payload);

#endif
