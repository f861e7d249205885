/*
 * fuzz/fuzz_notify_payload — the NOTIFY payload boundary: notification_parse()
 * on the raw payload bytes (as PostgreSQL delivers them, any length), then the
 * channel derivation for the schema it accepted.
 *
 * Oracles besides the sanitizers: an accepted payload yields NUL-terminated
 * fields, canonical UUIDs for tenant and booking, one of INSERT/UPDATE/DELETE,
 * and a channel name of exactly DB_CHANNEL_LEN bytes (under PostgreSQL's 63).
 */
#include <string.h>

#include "features/deals_pipeline/controllers/notifications_controller.h"
#include "features/deals_pipeline/services/followup_keys.h"
#include "fuzz_util.h"
#include "shared/db/db_notify.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void check_terminated(const char *field, size_t cap)
{
    if (memchr(field, '\0', cap) == NULL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct booking_notification ref;
    if (notification_parse((const char *)data, size, &ref) != 0) return 0;
    check_terminated(ref.schema, sizeof(ref.schema));
    check_terminated(ref.tenant_id, sizeof(ref.tenant_id));
    check_terminated(ref.booking_id, sizeof(ref.booking_id));
    check_terminated(ref.op, sizeof(ref.op));
    check_terminated(ref.task_name, sizeof(ref.task_name));
    check_terminated(ref.idempotency_key, sizeof(ref.idempotency_key));
    if (ref.task_generation < 0) abort();
    if (!followup_is_uuid(ref.tenant_id) || !followup_is_uuid(ref.booking_id)) abort();
    if (strcmp(ref.op, "INSERT") != 0 && strcmp(ref.op, "UPDATE") != 0 && strcmp(ref.op, "DELETE") != 0) abort();
    char channel[64];
    if (db_channel_for_schema(ref.schema, channel) != 0 || strlen(channel) != DB_CHANNEL_LEN) abort();
    return 0;
}
