-- 006_verifiable_delete_hint: a DELETE notification carries what followupd needs to check the task name.
--
-- Any role that can connect to the database can NOTIFY any channel (PostgreSQL has no privilege on NOTIFY), so
-- followupd treats every notification as a hint, never as a command. For a deleted row it acts only when the
-- task name it is asked to delete is the very name it would have made for that booking: the name under the
-- configured queue of sha256(idempotency key[#generation]), where the key names the same tenant and booking as
-- the notification, and only after a tenant-scoped read confirms the row is gone. That needs the deleted row's
-- idempotency key and task generation, so the DELETE payload now carries them next to the task name:
--
--   {"schema", "tenantId", "bookingId", "op": "DELETE", "taskName", "idempotencyKey", "taskGeneration"}
--
-- The key is made of the two ids and the scheduled time it was made for (no personal data); INSERT and UPDATE
-- payloads are unchanged ({"schema", "tenantId", "bookingId", "op"}). Idempotent; unqualified names only.

BEGIN;
SET LOCAL lock_timeout = '10s';

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

COMMIT;
