-- Rollback of 004_notify_trigger: drop the three NOTIFY triggers and their function. Idempotent.
-- Unqualified names only: run with search_path set to the tenant schema (sql/README.md).

BEGIN;
SET LOCAL lock_timeout = '10s';

DROP TRIGGER IF EXISTS followupd_notify_insert ON lead_bookings;
DROP TRIGGER IF EXISTS followupd_notify_update ON lead_bookings;
DROP TRIGGER IF EXISTS followupd_notify_delete ON lead_bookings;
DROP FUNCTION IF EXISTS followupd_notify_booking();

COMMIT;
