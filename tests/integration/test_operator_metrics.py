"""The metrics people alert on, against the real binary and PostgreSQL: the per-schema booking-state gauges
(followupd_bookings{schema,state}, followupd_bookings_lease_expired, followupd_oldest_due_booking_age_seconds)
read what the table holds (history never counted) and follow it at the next refresh; createTask errors are
counted by HTTP status and Google's canonical status (followupd_task_create_errors_total)."""
import os
import sys
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from opsutil import parse_prometheus, sample  # noqa: E402
from pgutil import quote_ident  # noqa: E402
from stack import Stack, wait_for  # noqa: E402

SCHEMA = "mon_state"
FAST_REFRESH = {"FOLLOWUPD_FOLLOWUP_SWEEP_INTERVAL_S": "1"}


def scrape(d):
    with urllib.request.urlopen(f"http://127.0.0.1:{d.port}/metrics", timeout=10) as resp:
        return parse_prometheus(resp.read().decode())[1]


class MetricsTest(unittest.TestCase):
    def stack(self, **kwargs):
        s = Stack(schemas=(SCHEMA,), start_daemon=False, **kwargs)
        self.addCleanup(s.__exit__, None, None, None)
        s.__enter__()
        self.addCleanup(lambda: self.assertEqual(s.stop_daemons(), [0] * len(s.daemons)))
        return s

    def sql(self, s, text):
        s.db.psql(text.replace("T.", f"{quote_ident(SCHEMA)}."))

    def wait_gauges(self, d, want, timeout=15):
        """Scrapes until every (name, labels) in want has the wanted value; returns the last samples."""
        last = {}

        def matches():
            nonlocal last
            last = scrape(d)
            return all(sample(last, name, schema=SCHEMA, **dict(labels)) == value
                       for (name, labels), value in want.items())
        try:
            wait_for(matches, timeout, "booking-state gauges", interval=0.2)
        except AssertionError:
            got = {k: sample(last, k[0], schema=SCHEMA, **dict(k[1])) for k in want}
            raise AssertionError(f"gauges {got} != {want}")
        return last

    def test_booking_state_gauges__table_contents__counted_per_state_and_followed(self):
        s = self.stack()
        now = time.time()
        due = s.insert_booking(SCHEMA, at=now - 600)                    # scheduled at start, task not run yet
        s.insert_booking(SCHEMA, at=now + 2 * 86400)                    # scheduled
        s.insert_booking(SCHEMA, at=now + 40 * 86400)                   # beyond the 720 h horizon: pending
        s.insert_booking(SCHEMA, at=now - 300, booking_type="meeting")  # not a follow-up: not counted
        self.sql(s, """
INSERT INTO T.lead_bookings (tenant_id, lead_id, booking_type, status, scheduled_at, task_status, executed_at)
SELECT gen_random_uuid(), gen_random_uuid(), 'follow_up', 'completed', now() - make_interval(days => i),
       CASE WHEN i % 2 = 0 THEN 'executed' ELSE 'pending' END, now() - make_interval(days => i)
FROM generate_series(1, 2000) i;
INSERT INTO T.lead_bookings (tenant_id, lead_id, booking_type, scheduled_at, task_status, idempotency_key,
                             execution_started_at, next_attempt_at)
VALUES (gen_random_uuid(), gen_random_uuid(), 'follow_up', now() - interval '2 hours', 'in_progress', 'k1',
        now() - interval '1 hour', NULL),
       (gen_random_uuid(), gen_random_uuid(), 'follow_up', now() - interval '3 hours', 'failed', 'k2', NULL, NULL),
       (gen_random_uuid(), gen_random_uuid(), 'follow_up', now() - interval '4 hours', 'failed', 'k3', NULL,
        now() + interval '1 day');
""")
        d = s.start(env=FAST_REFRESH)
        g = self.wait_gauges(d, {
            ("followupd_bookings", (("state", "scheduled"),)): 2,
            ("followupd_bookings", (("state", "pending"),)): 0,
            ("followupd_bookings", (("state", "pending_beyond_horizon"),)): 1,
            ("followupd_bookings", (("state", "in_progress"),)): 1,
            ("followupd_bookings", (("state", "failed_final"),)): 1,
            ("followupd_bookings", (("state", "failed_retryable"),)): 1,
            ("followupd_bookings_lease_expired", ()): 1,
        })
        age = sample(g, "followupd_oldest_due_booking_age_seconds", schema=SCHEMA)
        self.assertTrue(590 <= age <= 700, age)
        name, _ = wait_for(lambda: s.task_for(due), 10, "task of the due booking")
        self.assertEqual(s.dispatch_json(name), [(200, {"status": "executed"})])
        self.wait_gauges(d, {("followupd_oldest_due_booking_age_seconds", ()): 0,
                             ("followupd_bookings", (("state", "scheduled"),)): 1})

    def test_booking_state_gauges__before_the_first_read__nan_not_zero(self):
        s = self.stack()
        d = s.start(env={"FOLLOWUPD_DATABASE_CONNINFO": "host=127.0.0.1 port=1 dbname=x connect_timeout=1"},
                    wait_ready=False)
        wait_for(lambda: d.find_logs(lambda r: "HTTP listener ready" in r.get("msg", "")), 10, "listener")
        age = sample(scrape(d), "followupd_oldest_due_booking_age_seconds", schema=SCHEMA)
        self.assertNotEqual(age, age, "NaN while nothing was read")

    def test_create_errors__by_http_and_google_status(self):
        s = self.stack()
        d = s.start()
        s.ct.fail_next(1, status=429, method="create")
        transient = s.insert_booking(SCHEMA, at=time.time() + 3600)
        s.wait_row(SCHEMA, transient, lambda r: r["task_status"] == "scheduled", timeout=15)
        s.ct.fail_next(1, status=403, method="create")
        permanent = s.insert_booking(SCHEMA, at=time.time() + 3600)
        s.wait_row(SCHEMA, permanent, lambda r: r["task_status"] == "failed", timeout=15)
        g = scrape(d)
        self.assertEqual(sample(g, "followupd_task_create_errors_total", http_status="429",
                                google_status="RESOURCE_EXHAUSTED"), 1)
        self.assertEqual(sample(g, "followupd_task_create_errors_total", http_status="403",
                                google_status="PERMISSION_DENIED"), 1)
        created = [k for k in g if k[0] == "followupd_task_create_errors_total"]
        self.assertEqual(len(created), 2, created)   # ALREADY_EXISTS and successes are not errors


if __name__ == "__main__":
    unittest.main()
