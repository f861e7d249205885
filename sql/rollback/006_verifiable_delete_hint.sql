-- Rollback of 006_verifiable_delete_hint: restores 005's NOTIFY function (the DELETE payload carries the task
-- name only). Idempotent; does nothing when the function is absent.

BEGIN;
SET LOCAL lock_timeout = '10s';

DO $rollback$
BEGIN
  IF to_regprocedure('followupd_notify_booking()') IS NOT NULL THEN
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
  END IF;
END
$rollback$;

COMMIT;
