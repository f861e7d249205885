-- 004_notify_trigger: tell followupd about booking changes with NOTIFY.
--
-- followupd_notify_booking() runs AFTER each inserted or deleted row, and after an UPDATE only when status,
-- scheduled_at or booking_type really changed: followupd's own writes (task_* and execution columns) and the
-- Node backend's other edits (notes, metadata, updated_at, ...) never notify.
--
--   channel: 'followupd_' || md5(schema name)  -- 42 bytes for every legal schema name, no quoting needed
--   payload: {"schema": ..., "tenantId": ..., "bookingId": ..., "op": "INSERT" | "UPDATE" | "DELETE"}
--
-- The payload carries ids only; followupd re-reads the row. NOTIFY is delivered at commit: a rolled-back change
-- notifies nothing. The function reads no table and never makes the backend's statement fail for a reason of
-- ours: an error inside pg_notify() becomes a WARNING. (A full NOTIFY queue fails at COMMIT, outside any trigger;
-- see sql/README.md.)
--
-- SECURITY INVOKER, so the notify runs with the privileges of whoever wrote the row. The function is created in,
-- and the triggers attached to, the schema first in search_path. Idempotent.

BEGIN;
SET LOCAL lock_timeout = '10s';

CREATE OR REPLACE FUNCTION followupd_notify_booking() RETURNS trigger
  LANGUAGE plpgsql
  SECURITY INVOKER
AS $function$
DECLARE
  tenant uuid;
  booking uuid;
BEGIN
  IF TG_OP = 'DELETE' THEN
    tenant := OLD.tenant_id;
    booking := OLD.id;
  ELSE
    tenant := NEW.tenant_id;
    booking := NEW.id;
  END IF;
  BEGIN
    PERFORM pg_notify('followupd_' || md5(TG_TABLE_SCHEMA),
                      json_build_object('schema', TG_TABLE_SCHEMA, 'tenantId', tenant,
                                        'bookingId', booking, 'op', TG_OP)::text);
  EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'followupd_notify_booking: notify for booking % of tenant % failed: % (SQLSTATE %)',
      booking, tenant, SQLERRM, SQLSTATE;
  END;
  RETURN NULL;
END
$function$;

COMMENT ON FUNCTION followupd_notify_booking() IS
  'followupd: NOTIFY followupd_<md5(schema)> with {schema, tenantId, bookingId, op} for a lead_bookings change';

-- Created only where missing: a later migration (007) gives them arguments, which a re-run must keep.
DO $migration$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'lead_bookings'::regclass
                  AND tgname = 'followupd_notify_insert') THEN
    CREATE TRIGGER followupd_notify_insert
      AFTER INSERT ON lead_bookings
      FOR EACH ROW EXECUTE FUNCTION followupd_notify_booking();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'lead_bookings'::regclass
                  AND tgname = 'followupd_notify_update') THEN
    CREATE TRIGGER followupd_notify_update
      AFTER UPDATE OF status, scheduled_at, booking_type ON lead_bookings
      FOR EACH ROW
      WHEN (OLD.status IS DISTINCT FROM NEW.status
            OR OLD.scheduled_at IS DISTINCT FROM NEW.scheduled_at
            OR OLD.booking_type IS DISTINCT FROM NEW.booking_type)
      EXECUTE FUNCTION followupd_notify_booking();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'lead_bookings'::regclass
                  AND tgname = 'followupd_notify_delete') THEN
    CREATE TRIGGER followupd_notify_delete
      AFTER DELETE ON lead_bookings
      FOR EACH ROW EXECUTE FUNCTION followupd_notify_booking();
  END IF;
END
$migration$;

COMMIT;
