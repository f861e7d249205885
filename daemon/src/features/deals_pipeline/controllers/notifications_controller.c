/*
 * deals_pipeline/controllers/notifications_controller — see the header.
 */
#include "features/deals_pipeline/controllers/notifications_controller.h"

#include <jansson.h>
#include <limits.h>
#include <string.h>

#include "features/deals_pipeline/services/followup_keys.h"
#include "shared/db/db_notify.h"

static int copy_string(json_t *o, const char *key, char *dst, size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) >= cap || json_string_length(v) == 0) return -1;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return strlen(dst) == json_string_length(v) ? 0 : -1;   /* no embedded NUL */
}

static int copy_optional_string(json_t *o, const char *key, char *dst, size_t cap)
{
    return json_object_get(o, key) == NULL ? 0 : copy_string(o, key, dst, cap);
}

static int copy_optional_generation(json_t *o, int *dst)
{
    json_t *v = json_object_get(o, "taskGeneration");
    if (v == NULL) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT_MAX) return -1;
    *dst = (int)json_integer_value(v);
    return 0;
}

static int parse_fields(json_t *o, struct booking_notification *out)
{
    if (copy_string(o, "schema", out->schema, sizeof(out->schema)) != 0 ||
        copy_string(o, "tenantId", out->tenant_id, sizeof(out->tenant_id)) != 0 ||
        copy_string(o, "bookingId", out->booking_id, sizeof(out->booking_id)) != 0 ||
        copy_string(o, "op", out->op, sizeof(out->op)) != 0 ||
        copy_optional_string(o, "taskName", out->task_name, sizeof(out->task_name)) != 0 ||
        copy_optional_string(o, "idempotencyKey", out->idempotency_key, sizeof(out->idempotency_key)) != 0 ||
        copy_optional_generation(o, &out->task_generation) != 0)
        return -1;
    if (!followup_is_uuid(out->tenant_id) || !followup_is_uuid(out->booking_id)) return -1;
    return strcmp(out->op, "INSERT") == 0 || strcmp(out->op, "UPDATE") == 0 || strcmp(out->op, "DELETE") == 0 ? 0
                                                                                                            : -1;
}

int notification_parse(const char *payload, size_t len, struct booking_notification *out)
{
    if (payload == NULL || len == 0 || len > NOTIFICATION_MAX_PAYLOAD) return -1;
    json_error_t err;
    json_t *o = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &err);
    memset(out, 0, sizeof(*out));
    int rc = json_is_object(o) ? parse_fields(o, out) : -1;
    json_decref(o);
    return rc;
}

static enum notify_verdict reject(struct followup_scheduler *sched, struct logger *log, const struct log_ctx *ctx,
                                  const char *channel, enum notify_rejection why, const char *what)
{
    followup_scheduler_count_rejection(sched, why);
    LOG_KV(log, LOG_LEVEL_WARN, ctx,
           ((const char *[]){"channel", channel, "reason", followup_rejection_name(why), NULL}),
           "notification dropped: %s", what);
    return NOTIFY_REJECTED;
}

/* Checks that need no database: shape, allowlisted schema, the schema's own channel. */
static enum notify_verdict check_boundary(const struct config *cfg, struct followup_scheduler *sched,
                                          struct logger *log, const char *channel, const char *payload,
                                          struct booking_notification *n)
{
    size_t len = strlen(payload);
    if (len > NOTIFICATION_MAX_PAYLOAD)
        return reject(sched, log, NULL, channel, REJECT_OVERSIZED, "payload larger than any the trigger sends");
    if (notification_parse(payload, len, n) != 0)
        return reject(sched, log, NULL, channel, REJECT_MALFORMED, "malformed payload");
    struct log_ctx ids = {.tenant_id = n->tenant_id, .booking_id = n->booking_id};
    if (!strlist_contains(&cfg->db_schemas, n->schema))
        return reject(sched, log, &ids, channel, REJECT_UNKNOWN_SCHEMA, "schema not in database.schemas");
    char expected[64];
    if (db_channel_for_schema(n->schema, expected) != 0 || strcmp(expected, channel) != 0)
        return reject(sched, log, &ids, channel, REJECT_WRONG_CHANNEL, "arrived on another schema's channel");
    return NOTIFY_QUEUED;
}

/* Only the owner of the booking's partition deletes; the others park the (checked) hint in case the partition
 * comes to them before its owner could act (the owner died). */
static enum notify_verdict handle_delete(struct followup_scheduler *sched, struct logger *log, const char *channel,
                                         const struct booking_notification *n)
{
    if (n->task_name[0] == '\0') return NOTIFY_QUEUED;   /* the row had no task: nothing left to do */
    struct deleted_booking d = {.schema = n->schema, .tenant_id = n->tenant_id, .booking_id = n->booking_id,
                                .task_name = n->task_name, .idempotency_key = n->idempotency_key,
                                .task_generation = n->task_generation};
    enum notify_rejection why = REJECT_N;
    bool owned = followup_scheduler_owns(sched, n->booking_id);
    if (!owned) sched->stats.not_owned++;
    int rc = owned ? followup_scheduler_forget_deleted(sched, &d, &why) : followup_scheduler_park_deleted(sched, &d, &why);
    if (rc == 0) return owned ? NOTIFY_QUEUED : NOTIFY_NOT_OWNED;
    struct log_ctx ctx = {.schema = n->schema, .tenant_id = n->tenant_id, .booking_id = n->booking_id};
    if (why == REJECT_N) {
        LOG_WARN(log, &ctx, "cannot check the deleted booking's task now; it is left to answer not found");
        return NOTIFY_DROPPED;
    }
    return reject(sched, log, &ctx, channel, why, "not the task followupd made for this booking");
}

enum notify_verdict notifications_controller_handle(const struct config *cfg, struct followup_scheduler *sched,
                                                    struct logger *log, const char *channel, const char *payload)
{
    struct booking_notification n;
    enum notify_verdict v = check_boundary(cfg, sched, log, channel, payload, &n);
    if (v != NOTIFY_QUEUED) return v;
    struct log_ctx ctx = {.schema = n.schema, .tenant_id = n.tenant_id, .booking_id = n.booking_id};
    LOG_DEBUG(log, &ctx, "booking %s notified", n.op);
    if (strcmp(n.op, "DELETE") == 0) return handle_delete(sched, log, channel, &n);
    if (!followup_scheduler_owns(sched, n.booking_id)) {
        sched->stats.not_owned++;
        LOG_DEBUG(log, &ctx, "another replica owns this booking's partition");
        return NOTIFY_NOT_OWNED;
    }
    if (followup_scheduler_enqueue(sched, n.schema, n.tenant_id, n.booking_id) != 0) {
        LOG_WARN(log, &ctx, "scheduler queue full: booking left pending for the catch-up sweep");
        return NOTIFY_DROPPED;
    }
    return NOTIFY_QUEUED;
}
