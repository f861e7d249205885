-- pgbench script (bench/run.py, capture phase): one follow-up due tomorrow per transaction — later than
-- [capture] notify_within_s, so the trigger does not notify (the sweep schedules it).
INSERT INTO lead_bookings (tenant_id, lead_id, booking_type, booking_source, status, scheduled_at, timezone, notes)
VALUES (gen_random_uuid(), gen_random_uuid(), 'follow_up', 'voice_agent', 'scheduled',
        date_trunc('milliseconds', now() + interval '1 day'), 'Europe/Berlin', 'call back about the demo');
