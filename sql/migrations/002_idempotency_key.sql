-- 002_idempotency_key: the per-tenant idempotency key of a booking's follow-up call.
--
-- followupd's key is 'followup:{tenant uuid}:{booking uuid}:{scheduled_at as 2026-11-28T16:00:00.000Z}', 107
-- characters with today's format, so the column is VARCHAR(255). A deployment whose table already has a shorter
-- VARCHAR idempotency_key (the LAD seed used VARCHAR(100)) gets it widened in place: raising a VARCHAR limit
-- rewrites neither the table nor its indexes. The widening is recorded in the column comment
-- ('followupd-widened: varchar(N)' followed by any previous comment) so the rollback can undo exactly that.
--
-- UNIQUE (tenant_id, idempotency_key) is built with CREATE UNIQUE INDEX CONCURRENTLY (the Node backend keeps
-- writing meanwhile) and then attached as a constraint. NULL keys (all history rows) never conflict. A concurrent
-- build that failed leaves an INVALID index; it is dropped and rebuilt on the next run.
--
-- Idempotent. Unqualified names only: run with search_path set to the tenant schema (sql/README.md).

BEGIN;
SET LOCAL lock_timeout = '10s';

DO $migration$
DECLARE
  type_name name;
  type_mod integer;
  old_comment text;
BEGIN
  SELECT t.typname, a.atttypmod, col_description(a.attrelid, a.attnum)
    INTO type_name, type_mod, old_comment
    FROM pg_attribute a
    JOIN pg_type t ON t.oid = a.atttypid
   WHERE a.attrelid = 'lead_bookings'::regclass
     AND a.attname = 'idempotency_key'
     AND NOT a.attisdropped;
  IF NOT FOUND THEN
    ALTER TABLE lead_bookings ADD COLUMN idempotency_key VARCHAR(255) NULL;
    COMMENT ON COLUMN lead_bookings.idempotency_key IS
      'followupd: followup:{tenant uuid}:{booking uuid}:{scheduled_at ISO-8601 UTC with milliseconds}';
  ELSIF type_name = 'varchar' AND type_mod <> -1 AND type_mod - 4 < 255 THEN
    ALTER TABLE lead_bookings ALTER COLUMN idempotency_key TYPE VARCHAR(255);
    EXECUTE format('COMMENT ON COLUMN lead_bookings.idempotency_key IS %L',
                   format('followupd-widened: varchar(%s)', type_mod - 4) || coalesce(E'\n' || old_comment, ''));
  ELSIF type_name NOT IN ('varchar', 'text') THEN
    RAISE EXCEPTION 'lead_bookings.idempotency_key already exists as %, followupd needs character varying(255)',
      type_name;
  END IF;

  -- Left behind by a failed CREATE INDEX CONCURRENTLY: IF NOT EXISTS below would otherwise keep it forever.
  IF EXISTS (SELECT 1
               FROM pg_index
              WHERE indexrelid = to_regclass('lead_bookings_followupd_idempotency_key_uq')
                AND NOT indisvalid) THEN
    DROP INDEX lead_bookings_followupd_idempotency_key_uq;
  END IF;
END
$migration$;

COMMIT;

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS lead_bookings_followupd_idempotency_key_uq
  ON lead_bookings (tenant_id, idempotency_key);

BEGIN;
SET LOCAL lock_timeout = '10s';

DO $migration$
BEGIN
  IF NOT EXISTS (SELECT 1
                   FROM pg_constraint
                  WHERE conrelid = 'lead_bookings'::regclass
                    AND conname = 'lead_bookings_followupd_idempotency_key_uq') THEN
    ALTER TABLE lead_bookings
      ADD CONSTRAINT lead_bookings_followupd_idempotency_key_uq
      UNIQUE USING INDEX lead_bookings_followupd_idempotency_key_uq;
  END IF;
END
$migration$;

COMMIT;
