-- 007_capture_filter: only bookings that need followupd soon NOTIFY.
--
-- A transaction that queued a notification takes a cluster-wide lock at commit and holds it across its WAL flush,
-- so every notifying commit of every session is serialized (the backend's INSERT rate fell to ~40% when every
-- booking notified). A trigger that returns before pg_notify() pays nothing. So the function now notifies only
--
--   INSERT  a follow-up (booking_type in TG_ARGV[0]) due within TG_ARGV[1] seconds (0 = any time);
--   UPDATE  (of status, scheduled_at or booking_type, as before) when the old or the new row is such a booking;
--   DELETE  a row that has a task (its name, key and generation travel in the payload, see 006).
--
-- Everything else — meetings, follow-ups due later, their cancels and moves — is found by followupd's periodic
-- sweep (tenant-safe, ids only, partial indexes), which runs every [followup] sweep_interval_s, long before such a
-- booking is due. The arguments are trigger arguments, so no table and no schema name is involved:
--   TG_ARGV[0]  comma-separated booking types   (default 'follow_up,followup,auto_follow_up,auto_followup')
--   TG_ARGV[1]  notify_within_s                 (default '900'; '0' = every follow-up notifies)
-- `followupd migrate` re-creates the three triggers with the configured [followup] booking_types and
-- [capture] notify_within_s (or drops them with [capture] mode = poll); followupd reports a trigger whose
-- arguments differ from its configuration. This file installs the defaults only where a trigger is missing or
-- still has no arguments (a second run keeps what `followupd migrate` installed). Unqualified names only.

BEGIN;
SET LOCAL lock_timeout = '10s';

CREATE OR REPLACE FUNCTION followupd_notify_booking() RETURNS trigger
  LANGUAGE plpgsql
  SECURITY INVOKER
AS $function$
DECLARE
  types text[] := string_to_array(COALESCE(TG_ARGV[0], 'follow_up,followup,auto_follow_up,auto_followup'), ',');
  within_s int := 900;
  horizon timestamptz;
  tenant uuid;
  booking uuid;
  payload json;
BEGIN
  IF TG_NARGS >= 2 AND TG_ARGV[1] ~ '^[0-9]{1,7}$' THEN
    within_s := TG_ARGV[1]::int;
  END IF;
  horizon := CASE WHEN within_s = 0 THEN 'infinity'::timestamptz ELSE now() + make_interval(secs => within_s) END;
  IF TG_OP = 'DELETE' THEN
    IF OLD.task_name IS NULL THEN
      RETURN NULL;
    END IF;
  ELSIF TG_OP = 'INSERT' THEN
    IF NOT (NEW.booking_type = ANY (types) AND NEW.scheduled_at <= horizon) THEN
      RETURN NULL;
    END IF;
  ELSIF NOT ((NEW.booking_type = ANY (types) AND NEW.scheduled_at <= horizon)
             OR (OLD.booking_type = ANY (types) AND OLD.scheduled_at <= horizon)) THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    tenant := OLD.tenant_id;
    booking := OLD.id;
    payload := json_build_object('schema', TG_TABLE_SCHEMA, 'tenantId', tenant, 'bookingId', booking,
                                 'op', TG_OP, 'taskName', OLD.task_name, 'idempotencyKey', OLD.idempotency_key,
                                 'taskGeneration', OLD.task_generation);
  ELSE
    tenant := NEW.tenant_id;
    booking := NEW.id;
    payload := json_build_object('schema', TG_TABLE_SCHEMA, 'tenantId', tenant, 'bookingId', booking,
                                 'op', TG_OP);
  END IF;
  BEGIN
    PERFORM pg_notify('followupd_' || md5(TG_TABLE_SCHEMA), payload::text);
  EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'followupd_notify_booking: notify for booking % of tenant % failed: % (SQLSTATE %)',
      booking, tenant, SQLERRM, SQLSTATE;
  END;
  RETURN NULL;
END
$function$;

COMMENT ON FUNCTION followupd_notify_booking() IS
  'followupd: NOTIFY followupd_<md5(schema)> with ids for a lead_bookings change that needs followupd soon '
  '(trigger arguments: booking types, notify_within_s)';

-- followupd_install_capture(tbl, types, notify_within_s, enabled): (re)creates the three triggers on `tbl` with
-- these arguments (and the same filter as WHEN clauses), or drops them (enabled = false: [capture] mode = poll). `followupd migrate` calls it with
-- 'lead_bookings'::regclass (resolved in the schema being migrated) and the configuration.
CREATE OR REPLACE FUNCTION followupd_install_capture(tbl regclass, booking_types text, notify_within_s int,
                                                     enabled boolean)
  RETURNS void
  LANGUAGE plpgsql
  SECURITY INVOKER
AS $function$
DECLARE
  args text;
  types_array text;
  wanted_new text;
  wanted_old text;
BEGIN
  IF booking_types !~ '^[A-Za-z0-9_-]{1,50}(,[A-Za-z0-9_-]{1,50})*$' OR notify_within_s NOT BETWEEN 0 AND 9999999 THEN
    RAISE EXCEPTION 'followupd_install_capture: invalid arguments';
  END IF;
  EXECUTE format('DROP TRIGGER IF EXISTS followupd_notify_insert ON %s', tbl);
  EXECUTE format('DROP TRIGGER IF EXISTS followupd_notify_update ON %s', tbl);
  EXECUTE format('DROP TRIGGER IF EXISTS followupd_notify_delete ON %s', tbl);
  IF NOT enabled THEN
    RETURN;
  END IF;
  args := format('%L, %L', booking_types, notify_within_s::text);
  -- The same filter as the function's, as WHEN clauses: PostgreSQL evaluates them before it calls the function,
  -- so a row that does not notify does not even enter PL/pgSQL.
  types_array := quote_literal('{' || booking_types || '}') || '::text[]';
  wanted_new := format('NEW.booking_type = ANY (%s)', types_array);
  wanted_old := format('OLD.booking_type = ANY (%s)', types_array);
  IF notify_within_s > 0 THEN
    wanted_new := wanted_new || format(' AND NEW.scheduled_at <= now() + %L::interval', notify_within_s || ' seconds');
    wanted_old := wanted_old || format(' AND OLD.scheduled_at <= now() + %L::interval', notify_within_s || ' seconds');
  END IF;
  EXECUTE format('CREATE TRIGGER followupd_notify_insert AFTER INSERT ON %s FOR EACH ROW WHEN (%s) '
                 'EXECUTE FUNCTION followupd_notify_booking(%s)', tbl, wanted_new, args);
  EXECUTE format('CREATE TRIGGER followupd_notify_update AFTER UPDATE OF status, scheduled_at, booking_type '
                 'ON %s FOR EACH ROW WHEN ((OLD.status IS DISTINCT FROM NEW.status '
                 'OR OLD.scheduled_at IS DISTINCT FROM NEW.scheduled_at '
                 'OR OLD.booking_type IS DISTINCT FROM NEW.booking_type) AND ((%s) OR (%s))) '
                 'EXECUTE FUNCTION followupd_notify_booking(%s)', tbl, wanted_new, wanted_old, args);
  EXECUTE format('CREATE TRIGGER followupd_notify_delete AFTER DELETE ON %s FOR EACH ROW '
                 'WHEN (OLD.task_name IS NOT NULL) EXECUTE FUNCTION followupd_notify_booking(%s)', tbl, args);
END
$function$;

COMMENT ON FUNCTION followupd_install_capture(regclass, text, int, boolean) IS
  'followupd: (re)create or drop the NOTIFY triggers of a lead_bookings table with the given arguments';

-- The defaults, where a trigger is missing or still has no arguments (a re-run keeps what migrate installed).
DO $migration$
BEGIN
  IF (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'lead_bookings'::regclass AND tgnargs = 2
        AND tgname IN ('followupd_notify_insert', 'followupd_notify_update', 'followupd_notify_delete')) < 3 THEN
    PERFORM followupd_install_capture('lead_bookings'::regclass, 'follow_up,followup,auto_follow_up,auto_followup',
                                     900, true);
  END IF;
END
$migration$;

COMMIT;
