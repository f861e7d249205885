-- Rollback of 002_idempotency_key: drop the UNIQUE (tenant_id, idempotency_key) constraint, then undo what 002
-- did to the column, as recorded in its comment:
--   'followupd: ...'                 the column was added by 002: drop it;
--   'followupd-widened: varchar(N)'  a pre-existing column was widened: narrow it back to VARCHAR(N) and restore
--                                    its previous comment, unless a stored key is now longer than N characters
--                                    (narrowing would fail): then it stays VARCHAR(255) with a WARNING;
--   anything else                    not ours: left alone.
-- Idempotent. Unqualified names only: run with search_path set to the tenant schema (sql/README.md).

BEGIN;
SET LOCAL lock_timeout = '10s';

ALTER TABLE lead_bookings DROP CONSTRAINT IF EXISTS lead_bookings_followupd_idempotency_key_uq;
-- A build that never got attached as the constraint (e.g. an INVALID leftover).
DROP INDEX IF EXISTS lead_bookings_followupd_idempotency_key_uq;

DO $rollback$
DECLARE
  note text;
  old_length integer;
  longest integer;
BEGIN
  SELECT col_description(a.attrelid, a.attnum)
    INTO note
    FROM pg_attribute a
   WHERE a.attrelid = 'lead_bookings'::regclass
     AND a.attname = 'idempotency_key'
     AND NOT a.attisdropped;
  IF NOT FOUND OR note IS NULL THEN
    RETURN;
  END IF;

  IF note LIKE 'followupd: %' THEN
    ALTER TABLE lead_bookings DROP COLUMN idempotency_key;
  ELSIF note ~ '^followupd-widened: varchar\(\d+\)' THEN
    old_length := substring(note FROM '^followupd-widened: varchar\((\d+)\)')::integer;
    SELECT max(length(idempotency_key)) INTO longest FROM lead_bookings;
    IF coalesce(longest, 0) > old_length THEN
      RAISE WARNING 'lead_bookings.idempotency_key keeps VARCHAR(255): a stored key has % characters, more than %',
        longest, old_length;
      RETURN;
    END IF;
    EXECUTE format('ALTER TABLE lead_bookings ALTER COLUMN idempotency_key TYPE VARCHAR(%s)', old_length);
    -- The previous comment, if any, follows the marker's line.
    EXECUTE format('COMMENT ON COLUMN lead_bookings.idempotency_key IS %L',
                   CASE WHEN position(E'\n' IN note) > 0 THEN substr(note, position(E'\n' IN note) + 1) END);
  END IF;
END
$rollback$;

COMMIT;
