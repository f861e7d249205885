-- pgbench script (bench/trigger_cost.sh and the scheduler benchmark in bench/run.py): one follow-up booking per
-- transaction, the way the Node backend inserts it. scheduled_at has millisecond precision like a JavaScript Date
-- and lies 10 minutes ahead: inside [capture] notify_within_s (so the trigger notifies, the path the scheduler
-- benchmark measures), and no call becomes due during a run.
INSERT INTO lead_bookings (tenant_id, lead_id, booking_type, booking_source, status, scheduled_at, timezone, notes)
VALUES (gen_random_uuid(), gen_random_uuid(), 'follow_up', 'voice_agent', 'scheduled',
        date_trunc('milliseconds', now() + interval '10 minutes'), 'Europe/Berlin', 'call back about the demo');
