-- Rollback of 007_capture_filter: restores 006's NOTIFY function (every booking change notifies) and the three
-- triggers without arguments, where they exist. Idempotent; does nothing when the function is absent.

BEGIN;
SET LOCAL lock_timeout = '10s';

DO $rollback$
BEGIN
  DROP FUNCTION IF EXISTS followupd_install_capture(regclass, text, int, boolean);
  IF to_regprocedure('followupd_notify_booking()') IS NULL THEN
    RETURN;
  END IF;
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
                                     'op', TG_OP, 'taskName', OLD.task_name, 'idempotencyKey', OLD.idempotency_key,
                                     'taskGeneration', OLD.task_generation);
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
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'lead_bookings'::regclass
                AND tgname = 'followupd_notify_insert' AND tgnargs > 0) THEN
    CREATE OR REPLACE TRIGGER followupd_notify_insert
      AFTER INSERT ON lead_bookings
      FOR EACH ROW EXECUTE FUNCTION followupd_notify_booking();
  END IF;
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'lead_bookings'::regclass
                AND tgname = 'followupd_notify_update' AND tgnargs > 0) THEN
    CREATE OR REPLACE TRIGGER followupd_notify_update
      AFTER UPDATE OF status, scheduled_at, booking_type ON lead_bookings
      FOR EACH ROW
      WHEN (OLD.status IS DISTINCT FROM NEW.status
            OR OLD.scheduled_at IS DISTINCT FROM NEW.scheduled_at
            OR OLD.booking_type IS DISTINCT FROM NEW.booking_type)
      EXECUTE FUNCTION followupd_notify_booking();
  END IF;
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'lead_bookings'::regclass
                AND tgname = 'followupd_notify_delete' AND tgnargs > 0) THEN
    CREATE OR REPLACE TRIGGER followupd_notify_delete
      AFTER DELETE ON lead_bookings
      FOR EACH ROW EXECUTE FUNCTION followupd_notify_booking();
  END IF;
END
$rollback$;

COMMIT;
