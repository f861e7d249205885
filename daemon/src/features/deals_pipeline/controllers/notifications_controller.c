/*
 * deals_pipeline/controllers/notifications_controller — see the header.
 */
#include "features/deals_pipeline/controllers/notifications_controller.h"

#include <jansson.h>
#include <string.h>

#include "features/deals_pipeline/services/followup_keys.h"
#include "shared/db/db_notify.h"

#define MAX_PAYLOAD 1024

static int copy_string(json_t *o, const char *key, char *dst, size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) >= cap || json_string_length(v) == 0) return -1;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return strlen(dst) == json_string_length(v) ? 0 : -1;   /* no embedded NUL */
}

int notification_parse(const char *payload, size_t len, struct booking_ref *out)
{
    if (payload == NULL || len == 0 || len > MAX_PAYLOAD) return -1;
    json_error_t err;
    json_t *o = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(o)) {
        json_decref(o);
        return -1;
    }
    memset(out, 0, sizeof(*out));
    int rc = 0;
    if (copy_string(o, "schema", out->schema, sizeof(out->schema)) != 0 ||
        copy_string(o, "tenantId", out->tenant_id, sizeof(out->tenant_id)) != 0 ||
        copy_string(o, "bookingId", out->booking_id, sizeof(out->booking_id)) != 0 ||
        copy_string(o, "op", out->op, sizeof(out->op)) != 0)
        rc = -1;
    if (rc == 0 && json_object_get(o, "taskName") != NULL &&
        copy_string(o, "taskName", out->task_name, sizeof(out->task_name)) != 0)
        rc = -1;
    json_decref(o);
    if (rc != 0) return -1;
    if (!followup_is_uuid(out->tenant_id) || !followup_is_uuid(out->booking_id)) return -1;
    if (strcmp(out->op, "INSERT") != 0 && strcmp(out->op, "UPDATE") != 0 && strcmp(out->op, "DELETE") != 0) return -1;
    return 0;
}

enum notify_verdict notifications_controller_handle(const struct config *cfg, struct followup_scheduler *sched,
                                                    struct logger *log, const char *channel, const char *payload)
{
    struct booking_ref ref;
    if (notification_parse(payload, strlen(payload), &ref) != 0) {
        LOG_KV(log, LOG_LEVEL_WARN, NULL, ((const char *[]){"channel", channel, NULL}),
               "malformed notification payload dropped");
        return NOTIFY_MALFORMED;
    }
    struct log_ctx ctx = {.schema = ref.schema, .tenant_id = ref.tenant_id, .booking_id = ref.booking_id};
    if (!strlist_contains(&cfg->db_schemas, ref.schema)) {
        LOG_WARN(log, &ctx, "notification for a schema not in database.schemas dropped");
        return NOTIFY_UNKNOWN_SCHEMA;
    }
    char expected[64];
    if (db_channel_for_schema(ref.schema, expected) != 0 || strcmp(expected, channel) != 0) {
        LOG_WARN(log, &ctx, "notification arrived on another schema's channel; dropped");
        return NOTIFY_WRONG_CHANNEL;
    }
    LOG_DEBUG(log, &ctx, "booking %s notified", ref.op);
    if (strcmp(ref.op, "DELETE") == 0) {   /* the row is gone: only its task (if any) is left to delete */
        if (ref.task_name[0] != '\0') followup_scheduler_remove_task(sched, ref.schema, ref.tenant_id, ref.booking_id,
                                                                     ref.task_name);
        return NOTIFY_QUEUED;
    }
    if (followup_scheduler_enqueue(sched, ref.schema, ref.tenant_id, ref.booking_id) != 0) {
        LOG_WARN(log, &ctx, "scheduler queue full: booking left pending for the catch-up sweep");
        return NOTIFY_DROPPED;
    }
    return NOTIFY_QUEUED;
}
