-- The graphile-worker baseline's trigger (bench/graphile/worker.js applies it with search_path = the tenant schema,
-- after graphile-worker's own migrations). For every inserted follow-up booking it enqueues one job, due at
-- scheduled_at, de-duplicated by the booking's idempotency key — the same key followupd computes:
--   followup:{tenant uuid}:{booking uuid}:{scheduled_at as 2026-11-28T16:00:00.000Z}
-- followupd's own NOTIFY triggers are dropped from the baseline's database so the two never both fire.
CREATE OR REPLACE FUNCTION bench_graphile_enqueue() RETURNS trigger
  LANGUAGE plpgsql
AS $function$
DECLARE
  key text;
BEGIN
  IF NEW.booking_type IN ('follow_up', 'followup', 'auto_follow_up', 'auto_followup') AND NEW.status <> 'cancelled' THEN
    key := 'followup:' || NEW.tenant_id || ':' || NEW.id || ':'
           || to_char(NEW.scheduled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
    PERFORM graphile_worker.add_job('followup',
                                    json_build_object('schema', TG_TABLE_SCHEMA, 'tenantId', NEW.tenant_id,
                                                      'bookingId', NEW.id, 'idempotencyKey', key),
                                    run_at := NEW.scheduled_at,
                                    job_key := key);
  END IF;
  RETURN NULL;
END
$function$;

DROP TRIGGER IF EXISTS followupd_notify_insert ON lead_bookings;
DROP TRIGGER IF EXISTS followupd_notify_update ON lead_bookings;
DROP TRIGGER IF EXISTS followupd_notify_delete ON lead_bookings;

CREATE OR REPLACE TRIGGER bench_graphile_enqueue
  AFTER INSERT ON lead_bookings
  FOR EACH ROW EXECUTE FUNCTION bench_graphile_enqueue();
