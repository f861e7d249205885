-- pgbench script (bench/run.py, capture phase): one follow-up due now per transaction — it notifies (followupd)
-- or enqueues a job (graphile-worker's add_job trigger).
INSERT INTO lead_bookings (tenant_id, lead_id, booking_type, booking_source, status, scheduled_at, timezone, notes)
VALUES (gen_random_uuid(), gen_random_uuid(), 'follow_up', 'voice_agent', 'scheduled',
        date_trunc('milliseconds', now()), 'Europe/Berlin', 'call back about the demo');
