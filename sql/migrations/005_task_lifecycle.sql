-- 005_task_lifecycle: what followupd needs to follow a booking through cancel / un-cancel / reschedule.
--
-- task_generation counts how often followupd replaced or re-opened the booking's task. Cloud Tasks keeps a
-- deleted task's name reserved for about an hour, so a booking cancelled and re-opened (or rescheduled back to an
-- earlier time) must get a task ID it never used: the ID is sha256(idempotency key) for generation 0 and
-- sha256(key || '#' || generation) after that. Every replica reads the same row, so the ID stays deterministic.
--
-- The NOTIFY function now also carries the deleted row's task name ("taskName", an identifier, no data) on DELETE,
-- so followupd can delete the Cloud Task of a booking the backend deleted. Everything else is unchanged.
--
-- Idempotent. Unqualified names only: run with search_path set to the tenant schema (sql/README.md).

BEGIN;
SET LOCAL lock_timeout = '10s';

DO $migration$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute
                  WHERE attrelid = 'lead_bookings'::regclass AND attname = 'task_generation' AND NOT attisdropped) THEN
    ALTER TABLE lead_bookings ADD COLUMN task_generation INT NOT NULL DEFAULT 0;
    COMMENT ON COLUMN lead_bookings.task_generation IS
      'followupd: how often the task was replaced or re-opened (part of the task ID after a reschedule/un-cancel)';
  END IF;
END
$migration$;

CREATE OR REPLACE FUNCTION followupd_notify_booking() RETURNS trigger
  LANGUAGE plpgsql
  SECURITY INVOKER
AS $function$
DECLARE
  tenant uuid;
  booking uuid;
  payload json;
BEGIN
  IF TG_OP = 'DELETE' THEN
    tenant := OLD.tenant_id;
    booking := OLD.id;
  ELSE
    tenant := NEW.tenant_id;
    booking := NEW.id;
  END IF;
  BEGIN
    IF TG_OP = 'DELETE' AND OLD.task_name IS NOT NULL THEN
      payload := json_build_object('schema', TG_TABLE_SCHEMA, 'tenantId', tenant, 'bookingId', booking,
                                   'op', TG_OP, 'taskName', OLD.task_name);
    ELSE
      payload := json_build_object('schema', TG_TABLE_SCHEMA, 'tenantId', tenant, 'bookingId', booking,
                                   'op', TG_OP);
    END IF;
    PERFORM pg_notify('followupd_' || md5(TG_TABLE_SCHEMA), payload::text);
  EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'followupd_notify_booking: notify for booking % of tenant % failed: % (SQLSTATE %)',
      booking, tenant, SQLERRM, SQLSTATE;
  END;
  RETURN NULL;
END
$function$;

COMMIT;

-- Retries and leases of the local dispatcher: failed-and-retryable and in-progress rows are few, so this partial
-- index stays tiny (history never enters it). Built CONCURRENTLY outside the transaction; an INVALID leftover of a
-- failed build is dropped first.
DO $migration$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_index
              WHERE indexrelid = to_regclass('lead_bookings_followupd_retry_idx') AND NOT indisvalid) THEN
    DROP INDEX lead_bookings_followupd_retry_idx;
  END IF;
END
$migration$;

CREATE INDEX CONCURRENTLY IF NOT EXISTS lead_bookings_followupd_retry_idx
  ON lead_bookings (next_attempt_at)
  WHERE task_status IN ('failed', 'in_progress');

-- Bookings un-cancelled while followupd was not listening (task_status cancelled, status set back): a handful of
-- rows at most, found by the sweep through this tiny partial index.
DO $migration$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_index
              WHERE indexrelid = to_regclass('lead_bookings_followupd_reopen_idx') AND NOT indisvalid) THEN
    DROP INDEX lead_bookings_followupd_reopen_idx;
  END IF;
END
$migration$;

CREATE INDEX CONCURRENTLY IF NOT EXISTS lead_bookings_followupd_reopen_idx
  ON lead_bookings (scheduled_at)
  WHERE task_status = 'cancelled' AND status <> 'cancelled';
