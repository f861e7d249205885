"""What the booking-state statement (repositories/booking_state_sql: `followupd status` and the per-schema gauges)
costs on a table with history: 100,000 history rows (executed, cancelled, and 'pending' rows older than the
catch-up window, as migration 001 leaves years of history) next to a few hundred live ones. EXPLAIN (ANALYZE,
BUFFERS), with the planner's custom plan and with a generic plan (what a prepared statement may switch to):
each of its three aggregates reads one of the partial indexes, no node scans the table, and the buffers touched
follow the live rows, not the history. The numbers are printed for README's "Operating followupd"."""
import json
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon import BUILD  # noqa: E402
from pgutil import TempDB  # noqa: E402

SCHEMA = "cost_s"
HISTORY = 100_000
PARAMS = "'{follow_up,followup,auto_follow_up,auto_followup}', 3600, 2595600, 60"
INDEXES = {"lead_bookings_followupd_sweep_idx", "lead_bookings_followupd_task_idx",
           "lead_bookings_followupd_retry_idx"}
MAX_BUFFERS = 60   # the live rows below fit in a few dozen pages; history alone is ~2,000 pages

LOAD = f"""
INSERT INTO {SCHEMA}.lead_bookings (tenant_id, lead_id, booking_type, status, scheduled_at, task_status, executed_at)
SELECT gen_random_uuid(), gen_random_uuid(), CASE WHEN i % 3 = 0 THEN 'meeting' ELSE 'follow_up' END,
       CASE WHEN i % 10 = 0 THEN 'cancelled' ELSE 'completed' END, now() - make_interval(days => 1 + i % 1500),
       CASE WHEN i % 2 = 0 THEN 'pending' WHEN i % 10 = 1 THEN 'cancelled' ELSE 'executed' END,
       CASE WHEN i % 2 = 1 THEN now() - make_interval(days => 1 + i % 1500) END
FROM generate_series(1, {HISTORY}) i;
INSERT INTO {SCHEMA}.lead_bookings (tenant_id, lead_id, booking_type, scheduled_at, task_status, task_name,
                                    task_scheduled_at, idempotency_key)
SELECT gen_random_uuid(), gen_random_uuid(), 'follow_up', now() + make_interval(mins => i), 'scheduled',
       'local/t' || i, now() + make_interval(mins => i), 'k' || i FROM generate_series(1, 200) i;
INSERT INTO {SCHEMA}.lead_bookings (tenant_id, lead_id, booking_type, scheduled_at)
SELECT gen_random_uuid(), gen_random_uuid(), 'follow_up', now() + make_interval(mins => i - 10)
FROM generate_series(1, 50) i;
INSERT INTO {SCHEMA}.lead_bookings (tenant_id, lead_id, booking_type, scheduled_at, task_status, next_attempt_at,
                                    execution_started_at)
SELECT gen_random_uuid(), gen_random_uuid(), 'follow_up', now() - make_interval(hours => i),
       CASE WHEN i <= 5 THEN 'in_progress' ELSE 'failed' END, CASE WHEN i % 4 = 0 THEN now() END,
       CASE WHEN i <= 5 THEN now() - make_interval(secs => 25 * i) END FROM generate_series(1, 25) i;
VACUUM ANALYZE {SCHEMA}.lead_bookings;
"""


def nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


class BookingStateCostTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.db = TempDB(prefix="cost").__enter__()
        cls.db.apply_lad_table(SCHEMA)
        cls.db.apply_migrations(SCHEMA)
        cls.db.psql(LOAD)
        tool = os.path.join(BUILD, "tools", "booking_state_sql")
        cls.sql = subprocess.run([tool, SCHEMA], check=True, capture_output=True, text=True).stdout.strip()

    @classmethod
    def tearDownClass(cls):
        cls.db.__exit__(None, None, None)

    def explain(self, plan_cache_mode):
        out = self.db.query(f"SET plan_cache_mode = {plan_cache_mode};\n"
                            f"PREPARE st(text[], int, int, int) AS {self.sql};\n"
                            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE st({PARAMS});")
        return json.loads(out[-1][0])[0]

    def check_plan(self, plan_cache_mode):
        top = self.explain(plan_cache_mode)
        all_nodes = list(nodes(top["Plan"]))
        scans = {n["Node Type"] for n in all_nodes if "Scan" in n["Node Type"]}
        self.assertNotIn("Seq Scan", scans, json.dumps(top, indent=1))
        used = {n.get("Index Name") for n in all_nodes} & INDEXES
        self.assertEqual(used, INDEXES, json.dumps(top, indent=1))
        buffers = top["Plan"]["Shared Hit Blocks"] + top["Plan"]["Shared Read Blocks"]
        self.assertLess(buffers, MAX_BUFFERS, json.dumps(top, indent=1))
        print(f"\n  booking-state statement, {HISTORY} history rows, {plan_cache_mode}: "
              f"{top['Execution Time']:.2f} ms, {buffers} buffers", file=sys.stderr)
        return top

    def test_custom_plan__partial_indexes_only__buffers_follow_live_rows(self):
        self.check_plan("force_custom_plan")

    def test_generic_plan__partial_indexes_only__buffers_follow_live_rows(self):
        self.check_plan("force_generic_plan")

    def test_result__counts_of_the_live_rows__history_not_counted(self):
        row = self.db.query(f"PREPARE st(text[], int, int, int) AS {self.sql};\nEXECUTE st({PARAMS});")[-1]
        waiting, waiting_due, beyond, scheduled, scheduled_due, cancel_owed, in_progress, expired, retryable, \
            final, final_recent = (int(v) for v in row[:11])
        self.assertEqual((waiting, waiting_due, beyond), (50, 10, 0))
        self.assertEqual((scheduled, scheduled_due, cancel_owed), (200, 0, 0))
        self.assertEqual((in_progress, expired), (5, 3))    # started 25..125 s ago, lease 60 s
        self.assertEqual((retryable, final, final_recent), (5, 15, 0))


if __name__ == "__main__":
    unittest.main()
