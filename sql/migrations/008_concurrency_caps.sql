-- 008_concurrency_caps: what the claim needs to enforce [voice_agent] max_concurrent and max_concurrent_per_tenant
-- across any number of followupd replicas.
--
-- A capped claim (daemon: bookings_repository.c, ST_CLAIM_CAPPED) first takes pg_advisory_xact_lock on a key of
-- its tenant (and, for the all-tenant cap, on one global key), then counts the live leases — rows in_progress
-- whose execution_started_at is younger than the lease — and claims only below the cap. The count must see the
-- claims that committed while the statement waited for the lock. A sub-select in the claim statement cannot: in
-- READ COMMITTED a statement reads one snapshot, taken before it waited, so two claims serialized on the lock
-- would both count the slot as free. followupd_live_leases() is VOLATILE, so PostgreSQL gives each query it runs
-- a fresh snapshot: called after the lock, it counts what the previous holder committed.
--
-- It counts the lead_bookings of every schema it is given (the daemon passes its configured schemas, all of them
-- quoted with format('%I')), of one tenant, or of every tenant when p_tenant_id is NULL; it returns a number
-- only. lead_bookings_followupd_lease_idx keeps the count cheap: it holds only the rows in_progress (a few per
-- call slot), whatever the size of the table.
--
-- Idempotent. Unqualified names only: run with search_path set to the tenant schema (sql/README.md).

DO $migration$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_index
              WHERE indexrelid = to_regclass('lead_bookings_followupd_lease_idx') AND NOT indisvalid) THEN
    DROP INDEX lead_bookings_followupd_lease_idx;
  END IF;
END
$migration$;

CREATE INDEX CONCURRENTLY IF NOT EXISTS lead_bookings_followupd_lease_idx
  ON lead_bookings (tenant_id, execution_started_at)
  WHERE task_status = 'in_progress';

CREATE OR REPLACE FUNCTION followupd_live_leases(p_schemas text[], p_tenant_id uuid, p_lease_s int)
  RETURNS bigint
  LANGUAGE plpgsql
  VOLATILE
  SECURITY INVOKER
AS $function$
DECLARE
  schema_name text;
  part bigint;
  total bigint := 0;
BEGIN
  FOREACH schema_name IN ARRAY p_schemas LOOP
    EXECUTE format('SELECT count(*) FROM %I.%I WHERE task_status = ''in_progress'''
                   ' AND execution_started_at >= now() - make_interval(secs => $2)'
                   ' AND ($1::uuid IS NULL OR tenant_id = $1)', schema_name, 'lead_bookings')
      INTO part USING p_tenant_id, p_lease_s;
    total := total + part;
  END LOOP;
  RETURN total;
END
$function$;
