/*
 * deals_pipeline/controllers/bookings_controller — the execute-followup
 * callback: parse and validate the request (route :id, camelCase JSON body),
 * run the execution service, and write the JSON response.  No SQL, no logic
 * beyond mapping: statuses and bodies are the public HTTP contract (README).
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_BOOKINGS_CONTROLLER_H
#define FOLLOWUPD_DEALS_PIPELINE_BOOKINGS_CONTROLLER_H

#include <stddef.h>

#include "features/deals_pipeline/deals_pipeline.h"
#include "features/deals_pipeline/services/ports.h"

struct http_exchange;

struct execute_body {
    char tenant_id[UUID_STR_LEN];
    char booking_id[UUID_STR_LEN];
    char schema[SCHEMA_NAME_LEN];
    char idempotency_key[IDEMPOTENCY_KEY_LEN];
};

/* Pure (fuzzed): parse the body; returns NULL or the name of the bad field. */
const char *execute_body_parse(const char *body, size_t len, struct execute_body *out);
/* HTTP status and JSON body for an outcome. */
int execution_http_status(enum execution_status st, const char **json_body);

void bookings_controller_execute_followup(struct http_exchange *ex, void *app_ctx);

#endif
