/*
 * fuzz/fuzz_execute_body — the execute-callback body parser
 * (execute_body_parse): the JSON Cloud Tasks posts back, attacker-controlled
 * once it passed authentication (or on the shared-secret path).
 *
 * Oracles besides the sanitizers: a NULL verdict (accepted) means every field
 * is non-empty and NUL-terminated within its buffer and both ids are UUIDs; a
 * rejection names one of the documented fields.  The same bytes parse to the
 * same verdict twice (no hidden state).
 */
#include <string.h>

#include "features/deals_pipeline/controllers/bookings_controller.h"
#include "features/deals_pipeline/services/followup_keys.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void check_field(const char *field, size_t cap)
{
    const char *nul = memchr(field, '\0', cap);
    if (nul == NULL || nul == field) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const fields[] = {"body", "tenantId", "bookingId", "schema", "idempotencyKey"};
    struct execute_body b, again;
    const char *bad = execute_body_parse((const char *)data, size, &b);
    const char *bad2 = execute_body_parse((const char *)data, size, &again);
    if (bad != bad2 || (bad == NULL && memcmp(&b, &again, sizeof(b)) != 0)) abort();
    if (bad != NULL) {
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
            if (strcmp(bad, fields[i]) == 0) return 0;
        abort();
    }
    check_field(b.tenant_id, sizeof(b.tenant_id));
    check_field(b.booking_id, sizeof(b.booking_id));
    check_field(b.schema, sizeof(b.schema));
    check_field(b.idempotency_key, sizeof(b.idempotency_key));
    if (!followup_is_uuid(b.tenant_id) || !followup_is_uuid(b.booking_id)) abort();
    return 0;
}
