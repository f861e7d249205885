/*
 * deals_pipeline/repositories/bookings_repository — the only code that sends
 * SQL about lead_bookings.  Implements `struct bookings_repo` (services/ports.h)
 * over the async libpq pool.
 *
 * Every statement is parameterized ($n) and names `tenant_id = $2`.  The table
 * is `<schema>.lead_bookings` where <schema> is one of the configured schemas
 * (the allowlist), quoted with PQescapeIdentifier; the per-schema statement
 * texts are built once, the first time a connection is up, and cached.
 * A schema outside the allowlist is refused before any SQL is built.
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_BOOKINGS_REPOSITORY_H
#define FOLLOWUPD_DEALS_PIPELINE_BOOKINGS_REPOSITORY_H

#include "core/config.h"
#include "features/deals_pipeline/services/ports.h"
#include "utils/log.h"

struct db_pool;
struct bookings_repository;

/* A booking's partition in SQL, the same value as followup_booking_partition() in C: the first 4 bytes of the
 * id (its first 8 hex digits) as an unsigned number, modulo `count`. Text and bit casts only, no hash function,
 * so it is the same on every PostgreSQL version (hashtext() is not guaranteed to be). */
#define BOOKING_PARTITION_SQL(id, count) "mod(('x' || left(" id "::text, 8))::bit(32)::bigint, " count ")"

struct bookings_repository *bookings_repository_new(struct db_pool *pool, const struct strlist *schemas,
                                                    struct logger *log);
void bookings_repository_free(struct bookings_repository *r);
/* The port view handed to services (valid while r lives). */
struct bookings_repo *bookings_repository_port(struct bookings_repository *r);

#endif
