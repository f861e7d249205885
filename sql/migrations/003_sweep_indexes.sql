-- 003_sweep_indexes: partial indexes for followupd's sweeps over lead_bookings.
--
-- lead_bookings_followupd_sweep_idx serves the catch-up query (sql/README.md): rows that still need a Cloud Task
-- or hold a lease, ordered by scheduled_at. History rows read task_status = 'pending' and are in this index, but
-- the query range-scans it between now() - lookback and now() + horizon, so its cost follows the rows inside the
-- window, not the years of history before it.
--
-- lead_bookings_followupd_task_idx holds only rows that own a Cloud Task: live tasks (scheduled) and tasks whose
-- deletion is still owed (cancelled with task_name set). It serves the cancellation sweep
-- (task_status = 'cancelled' AND task_name IS NOT NULL) and the reschedule sweep (scheduled rows whose
-- scheduled_at moved or whose booking was cancelled while followupd was disconnected). It stays small because
-- Cloud Tasks live at most 30 days and followupd clears task_name once a cancelled task is deleted.
--
-- Both are built CONCURRENTLY (writes continue); an INVALID leftover of a failed build is dropped first.
-- Idempotent. Unqualified names only: run with search_path set to the tenant schema (sql/README.md).

DO $migration$
DECLARE
  index_name text;
BEGIN
  FOREACH index_name IN ARRAY ARRAY['lead_bookings_followupd_sweep_idx', 'lead_bookings_followupd_task_idx'] LOOP
    IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass(index_name) AND NOT indisvalid) THEN
      EXECUTE format('DROP INDEX %I', index_name);
    END IF;
  END LOOP;
END
$migration$;

CREATE INDEX CONCURRENTLY IF NOT EXISTS lead_bookings_followupd_sweep_idx
  ON lead_bookings (scheduled_at)
  WHERE task_status IN ('pending', 'failed', 'in_progress');

CREATE INDEX CONCURRENTLY IF NOT EXISTS lead_bookings_followupd_task_idx
  ON lead_bookings (scheduled_at)
  WHERE task_name IS NOT NULL AND task_status IN ('scheduled', 'cancelled');
