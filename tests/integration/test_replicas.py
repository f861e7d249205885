"""Three followupd replicas on one database: together they create exactly one Cloud Task per booking and make
exactly one voice call per booking, whichever replica each notification, create and callback lands on.

Three real daemons LISTEN on the same schema (each gets every NOTIFY; the owner of the booking's partition acts
on it, and the bookings are inserted while the replicas are still rebalancing, so partitions change hands
meanwhile), against one strict fake Cloud Tasks and one strict fake voice agent. 1,000 bookings are inserted in
1,000 transactions; the fake counts create requests per task name, so "each name exactly one successful create"
is checked directly (a replica losing a race gets 409 ALREADY_EXISTS, which it takes as created). Then every task is delivered twice at
the same time: once by the fake Cloud Tasks to the URL of the replica that created it, and once POSTed directly
to another replica (Cloud Tasks' at-least-once duplicates, landing anywhere); deliveries the claim turned away
with 409 in_progress are retried like Cloud Tasks would. The voice agent must have seen exactly 1,000 start-call
requests with 1,000 distinct Idempotency-Keys, each the key of its booking, and no repeated request.

No sleeps: every wait is a condition with a deadline. Needs $FOLLOWUPD_BUILD/followupd and PG*.
"""
import collections
import concurrent.futures
import os
import sys
import time
import unittest
import uuid
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import msg_contains, msg_is  # noqa: E402
from pgutil import quote_ident  # noqa: E402
from stack import Stack, wait_for  # noqa: E402

SCHEMA = "replica_bookings"
REPLICAS = 3
N = 1000
HOUR = 3600
STOPPED = "stopped: all handles closed"


class ThreeReplicasTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Stack(schemas=(SCHEMA,), start_daemon=False, log_level="info").__enter__()
        try:
            cls.replicas = [cls.s.start() for _ in range(REPLICAS)]
            for d in cls.replicas:
                d.wait_for_log(msg_contains("listening for booking notifications"), timeout=15)
        except BaseException:
            cls.s.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            codes = cls.s.stop_daemons()
            if codes != [0] * REPLICAS:
                raise AssertionError(f"followupd exit codes {codes}, expected {[0] * REPLICAS}")
            for d in cls.replicas:
                if not d.find_logs(msg_is(STOPPED)):
                    raise AssertionError(f"no '{STOPPED}' line; last logs {d.logs[-5:]}")
        finally:
            cls.s.__exit__(None, None, None)

    def table(self):
        return f"{quote_ident(SCHEMA)}.lead_bookings"

    def rows(self, tenant):
        """booking id -> (iso scheduled_at, task_status, task_name, idempotency_key, execution_attempts)."""
        got = self.s.db.query(
            f"SELECT id, to_char(scheduled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), task_status, "
            f"task_name, idempotency_key, execution_attempts FROM {self.table()} WHERE tenant_id = '{tenant}'")
        return {r[0]: r[1:] for r in got}

    def count(self, tenant, task_status):
        return int(self.s.db.query(f"SELECT count(*) FROM {self.table()} WHERE tenant_id = '{tenant}' "
                                   f"AND task_status = '{task_status}'")[0][0])

    def replica_for_url(self, url):
        port = urlsplit(url).port
        return next(d for d in self.replicas if d.port == port)

    def test_three_replicas_1000_inserts__1000_tasks_then_every_task_delivered_twice__1000_calls(self):
        tenant, base = str(uuid.uuid4()), int(time.time()) + HOUR
        creates_before = self.s.ct.created_count
        # 1,000 transactions (one psql session, autocommit): 1,000 notifications, each seen by all three replicas
        self.s.db.psql("".join(
            f"INSERT INTO {self.table()} (id, tenant_id, lead_id, booking_type, scheduled_at) VALUES "
            f"('{uuid.uuid4()}', '{tenant}', '{uuid.uuid4()}', 'follow_up', to_timestamp({base + i % 97}));\n"
            for i in range(N)))

        # -- scheduling: exactly one task per booking -------------------------------------------------------
        self.assertTrue(self.s.ct.wait_for_creates(creates_before + N, 120),
                        f"{self.s.ct.created_count - creates_before} of {N} tasks created")
        wait_for(lambda: self.count(tenant, "scheduled") == N, 60, "every booking scheduled", interval=0.2)
        rows = self.rows(tenant)
        self.assertEqual(len(rows), N)
        expected = {}
        for booking, (at_iso, _, task_name, key, _) in rows.items():
            want_key = f"followup:{tenant}:{booking}:{at_iso}"
            self.assertEqual(key, want_key)
            self.assertEqual(task_name, self.s.task_name_for(want_key))
            expected[booking] = (task_name, key)
        by_name = self.s.ct.create_calls_by_name
        not_once = {b: by_name.get(n) for b, (n, _) in expected.items() if (by_name.get(n) or {}).get("created") != 1}
        self.assertEqual(not_once, {}, "bookings whose task was not created exactly once")
        too_many = {b: by_name[n] for b, (n, _) in expected.items() if by_name[n]["calls"] > REPLICAS}
        self.assertEqual(too_many, {}, "more create requests than replicas for a name")
        self.assertEqual(self.s.ct.created_count - creates_before, N, "tasks created beyond one per booking")
        tasks = self.s.ct.tasks
        self.assertEqual(sorted(tasks), sorted(n for n, _ in expected.values()))
        duplicates = sum(c["calls"] - 1 for c in by_name.values())
        creators = collections.Counter(self.replica_for_url(t["url"]).port for t in tasks.values())

        # -- delivery: every task twice at once, on two different replicas --------------------------------
        def via_cloud_tasks(name):
            return self.s.dispatch_json(name)[0]

        def direct(d, booking, body):
            return self.s.execute(d, booking, body)

        jobs = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            for i, (name, task) in enumerate(sorted(tasks.items())):
                booking = task["body_json"]["bookingId"]
                owner = self.replica_for_url(task["url"])
                others = [d for d in self.replicas if d is not owner]
                jobs[booking] = (name, owner, others[i % len(others)],
                                 pool.submit(via_cloud_tasks, name),
                                 pool.submit(direct, others[i % len(others)], booking, task["body_json"]))
            answers = {b: (job[3].result(timeout=120), job[4].result(timeout=120)) for b, job in jobs.items()}

        executed = (200, {"status": "executed"})
        turned_away = ((200, {"status": "already_executed"}), (409, {"status": "in_progress"}))
        wrong = {b: a for b, a in answers.items()
                 if a.count(executed) != 1 or not any(x in turned_away for x in a)}
        self.assertEqual(wrong, {}, "each booking: exactly one delivery executes, the other is turned away")
        # Cloud Tasks retries what it got a non-2xx for (the 409s): already executed by then
        retried = [name for name in self.s.ct.tasks if name in {n for n, _ in expected.values()}]
        for name in retried:
            self.assertEqual(self.s.dispatch_json(name), [(200, {"status": "already_executed"})])
        self.assertEqual([n for n in self.s.ct.tasks if n in {n for n, _ in expected.values()}], [])

        # -- exactly 1,000 voice calls, one per booking, each with its booking's key ------------------------
        calls = [c for c in self.s.va.calls if c["body"]["tenantId"] == tenant]
        self.assertEqual(len(calls), N, "start-call requests (a repeated request would be a second call)")
        self.assertEqual([c for c in calls if c["duplicate"]], [])
        by_booking = collections.Counter(c["body"]["bookingId"] for c in calls)
        self.assertEqual(set(by_booking), set(expected))
        self.assertEqual(set(by_booking.values()), {1})
        self.assertEqual({c["body"]["bookingId"]: c["idempotency_key"] for c in calls},
                         {b: key for b, (_, key) in expected.items()})
        self.assertEqual(self.s.va.rejected, [])
        rows = self.rows(tenant)
        self.assertEqual({(r[1], r[4]) for r in rows.values()}, {("executed", "1")})

        # every replica took callbacks (fake deliveries go to the creating replica, direct ones elsewhere)
        received = {d.port: len(d.find_logs(lambda r: str(r.get("msg", "")).startswith("execution finished")))
                    for d in self.replicas}
        self.assertTrue(all(n > 0 for n in received.values()), received)
        self.assertEqual(sum(received.values()), 2 * N + len(retried))
        for d in self.replicas:
            d.assert_clean()
        self.assertEqual(self.s.ct.internal_errors, [])
        self.assertEqual(self.s.va.internal_errors, [])
        print(f"\n  replicas: creates by replica {dict(creators)}, losing create requests (409) {duplicates}, "
              f"callbacks by replica {received}, redelivered after 409 {len(retried)}", file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
