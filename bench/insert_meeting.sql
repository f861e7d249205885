-- pgbench script (bench/run.py, capture phase): one meeting booking per transaction, as the Node backend inserts
-- it. Not a follow-up: followupd's trigger must return before pg_notify().
INSERT INTO lead_bookings (tenant_id, lead_id, booking_type, booking_source, status, scheduled_at, timezone, notes)
VALUES (gen_random_uuid(), gen_random_uuid(), 'meeting', 'calendar', 'scheduled',
        date_trunc('milliseconds', now() + interval '1 hour'), 'Europe/Berlin', 'product demo');
