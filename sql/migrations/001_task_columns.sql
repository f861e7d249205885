-- 001_task_columns: followupd's per-booking task state on the existing LAD table lead_bookings.
--
-- Adds the columns in which followupd records, for each booking, the Cloud Task it created and the voice-agent
-- call it made. Every column is added with a constant default (or none): PostgreSQL 11+ keeps such a default in
-- the catalog, so the table is NOT rewritten and applying this to years of history costs a short lock, not I/O.
-- Existing rows therefore read task_status = 'pending'; the daemon only ever looks at rows whose scheduled_at is
-- inside its catch-up window (sql/README.md), so history never causes a call.
--
-- The task_status CHECK is added NOT VALID and validated in a separate statement: validation scans the table
-- under a lock that does not block the Node backend's reads and writes.
--
-- Ownership: each column added here carries a comment starting with 'followupd: '. The rollback drops only
-- columns with that marker, so a same-named column that existed before followupd is never dropped. A column that
-- already exists with another type stops the migration (followupd depends on these types).
--
-- Idempotent. Unqualified names only: run with search_path set to the tenant schema (sql/README.md).

BEGIN;
SET LOCAL lock_timeout = '10s';

DO $migration$
DECLARE
  col record;
  existing_type text;
BEGIN
  FOR col IN
    SELECT c.name, c.type, c.ddl, c.note
      FROM (VALUES
        ('task_name', 'text', 'TEXT NULL',
         'followupd: full Cloud Task name (projects/P/locations/L/queues/Q/tasks/ID) while followupd owns a task'),
        ('task_scheduled_at', 'timestamp with time zone', 'TIMESTAMPTZ NULL',
         'followupd: the scheduled_at the task in task_name was created for (differs after a reschedule)'),
        ('task_status', 'character varying(30)', 'VARCHAR(30) NOT NULL DEFAULT ''pending''',
         'followupd: pending | scheduled | in_progress | executed | cancelled | failed'),
        ('executed_at', 'timestamp with time zone', 'TIMESTAMPTZ NULL',
         'followupd: when the voice-agent call was accepted'),
        ('execution_started_at', 'timestamp with time zone', 'TIMESTAMPTZ NULL',
         'followupd: start of the in_progress lease taken by a Cloud Tasks callback'),
        ('execution_attempts', 'integer', 'INT NOT NULL DEFAULT 0',
         'followupd: voice-agent call attempts made for this booking'),
        ('last_execution_error', 'text', 'TEXT NULL',
         'followupd: last task-creation or call error, for operators'),
        ('schedule_attempts', 'integer', 'INT NOT NULL DEFAULT 0',
         'followupd: failed Cloud Task creation attempts (retry counter of the scheduler)'),
        ('next_attempt_at', 'timestamp with time zone', 'TIMESTAMPTZ NULL',
         'followupd: earliest retry of a failed task creation; NULL on a failed row means give up')
      ) AS c(name, type, ddl, note)
  LOOP
    SELECT format_type(a.atttypid, a.atttypmod)
      INTO existing_type
      FROM pg_attribute a
     WHERE a.attrelid = 'lead_bookings'::regclass
       AND a.attname = col.name
       AND NOT a.attisdropped;
    IF NOT FOUND THEN
      EXECUTE format('ALTER TABLE lead_bookings ADD COLUMN %I %s', col.name, col.ddl);
      EXECUTE format('COMMENT ON COLUMN lead_bookings.%I IS %L', col.name, col.note);
    ELSIF existing_type <> col.type THEN
      RAISE EXCEPTION 'lead_bookings.% already exists as %, followupd needs %', col.name, existing_type, col.type;
    END IF;
  END LOOP;

  IF NOT EXISTS (SELECT 1
                   FROM pg_constraint
                  WHERE conrelid = 'lead_bookings'::regclass
                    AND conname = 'lead_bookings_followupd_task_status_check') THEN
    ALTER TABLE lead_bookings
      ADD CONSTRAINT lead_bookings_followupd_task_status_check
      CHECK (task_status IN ('pending', 'scheduled', 'in_progress', 'executed', 'cancelled', 'failed'))
      NOT VALID;
  END IF;
END
$migration$;

COMMIT;

-- Separate transaction: SHARE UPDATE EXCLUSIVE lock only; a no-op once the constraint is valid.
ALTER TABLE lead_bookings VALIDATE CONSTRAINT lead_bookings_followupd_task_status_check;
