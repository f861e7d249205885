-- Rollback of 005_task_lifecycle: drops task_generation (only if 005 added it: 'followupd: ' comment marker) and
-- restores 004's NOTIFY function (ids only, also on DELETE), and drops the retry and re-open indexes. Idempotent.

DROP INDEX CONCURRENTLY IF EXISTS lead_bookings_followupd_retry_idx;
DROP INDEX CONCURRENTLY IF EXISTS lead_bookings_followupd_reopen_idx;

BEGIN;
SET LOCAL lock_timeout = '10s';

DO $rollback$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_attribute a
              WHERE a.attrelid = 'lead_bookings'::regclass AND a.attname = 'task_generation' AND NOT a.attisdropped
                AND col_description(a.attrelid, a.attnum) LIKE 'followupd: %') THEN
    ALTER TABLE lead_bookings DROP COLUMN task_generation;
  END IF;
  IF to_regprocedure('followupd_notify_booking()') IS NOT NULL THEN
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
  END IF;
END
$rollback$;

COMMIT;
