-- Rollback of 001_task_columns: drop the task_status CHECK and every column 001 added. A column is dropped only
-- if its comment carries 001's 'followupd: ' marker, so a same-named column that existed before followupd stays.
-- DROP COLUMN only marks the column dropped in the catalog: no table rewrite. Idempotent.
-- Unqualified names only: run with search_path set to the tenant schema (sql/README.md).

BEGIN;
SET LOCAL lock_timeout = '10s';

ALTER TABLE lead_bookings DROP CONSTRAINT IF EXISTS lead_bookings_followupd_task_status_check;

DO $rollback$
DECLARE
  column_name name;
BEGIN
  FOR column_name IN
    SELECT a.attname
      FROM pg_attribute a
     WHERE a.attrelid = 'lead_bookings'::regclass
       AND NOT a.attisdropped
       AND a.attname IN ('task_name', 'task_scheduled_at', 'task_status', 'executed_at', 'execution_started_at',
                         'execution_attempts', 'last_execution_error', 'schedule_attempts', 'next_attempt_at')
       AND col_description(a.attrelid, a.attnum) LIKE 'followupd: %'
  LOOP
    EXECUTE format('ALTER TABLE lead_bookings DROP COLUMN %I', column_name);
  END LOOP;
END
$rollback$;

COMMIT;
