/*
 * deals_pipeline/services/followup_keys — the deterministic names of a
 * follow-up: the canonical timestamp (UTC, milliseconds, `Z`, exactly like
 * JavaScript's toISOString(), so other services can compute the same key),
 * the idempotency key `followup:{tenantId}:{bookingId}:{scheduledAtIso}` and
 * the Cloud Tasks task ID (lowercase hex SHA-256 of the key: within the
 * `[A-Za-z0-9_-]` charset and not sequential, as Google asks) — and the
 * booking's partition, which decides which replica does its scheduling work.
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_KEYS_H
#define FOLLOWUPD_DEALS_PIPELINE_FOLLOWUP_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ISO_TIME_LEN 32
#define TASK_ID_LEN 65

/* 2026-11-28T16:00:00.000Z; years outside 0000..9999 are rejected (-1). */
int followup_iso_time(int64_t epoch_ms, char out[ISO_TIME_LEN]);
int followup_idempotency_key(const char *tenant_id, const char *booking_id, int64_t scheduled_at_ms, char *out,
                             size_t cap);
/* Task ID: hex sha256(key) for generation 0, hex sha256(key + "#" + generation)
 * after a reschedule or un-cancel (Cloud Tasks reserves deleted names ~1 h). */
int followup_task_id(const char *idempotency_key, int generation, char out[TASK_ID_LEN]);
/* True when `key` is exactly the key followupd makes for this booking at some instant:
 * followup:{tenant_id}:{booking_id}:{canonical ISO time} (the time part re-formats to itself). */
bool followup_key_names_booking(const char *key, const char *tenant_id, const char *booking_id);
/* Partition of a booking among `partitions` (1..FOLLOWUP_PARTITIONS_MAX): its id's first 4 bytes (the first 8 hex
 * digits of the textual UUID) as an unsigned big-endian number, modulo `partitions`. The repository computes the
 * same value in SQL (BOOKING_PARTITION_SQL). -1 when booking_id is not a UUID or partitions is out of range. */
#define FOLLOWUP_PARTITIONS_MAX 1024
int followup_booking_partition(const char *booking_id, int partitions);
/* Canonical textual UUID (8-4-4-4-12 hex, either case). */
bool followup_is_uuid(const char *s);

#endif
