"""Several replicas split the scheduling work instead of each doing all of it.

Real daemons on one database (the strict fake Cloud Tasks counts create requests per task name). The bookings
fall into [replicas] partitions partitions by their id; each replica holds about partitions / live replicas of
them as advisory locks on its LISTEN session and only the owner acts on a booking:

- the C partition function (notifications) and the repository's SQL expression (sweeps) agree, and the
  repository's sweep reads return exactly the owned partitions' bookings;
- 3 balanced replicas, a 300-booking burst: at most 1.05 create requests per task, every booking one task, the
  work spread over the three, and one voice call per booking;
- SIGKILL of one replica in the middle of a burst: the survivors own all partitions within the hand-over bound
  (rebalance interval + slack), every booking still gets exactly one task and one call;
- a fourth replica joining during a stream of inserts: ownership moves to 16 each, the replicas never believe
  they own more than the partition count between them, every booking one task and one call; with creates slow
  to answer, a given-up partition is unlocked only after its creates, so no task is requested twice;
- a login of another role holding followupd's locks neither shrinks the replicas' shares nor withholds its
  partition (every replica works on it); a replica that owns nothing is ready and takes callbacks.

No sleeps: every wait is a condition with a deadline. Needs $FOLLOWUPD_BUILD/followupd, build/tools/db_probe, PG*.
"""
import os
import subprocess
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import msg_contains  # noqa: E402
from pgutil import TempDB, quote_ident  # noqa: E402
from stack import Stack, wait_for  # noqa: E402
from opsutil import metric as metric_value  # noqa: E402
from test_db_support import Probe, require_pg, scratch_database  # noqa: E402
from test_forgery import Intruder  # noqa: E402

SCHEMA = "scale_bookings"
PARTITIONS = 64
INTERVAL_MS = 500
HANDOVER_SLACK_S = 3.0      # loop, connection and scheduling noise on a loaded 2-core machine
HOUR = 3600


class PartitionFunctionTest(unittest.TestCase):
    def setUp(self):
        require_pg(self)
        self.db = scratch_database(self)

    def test_partition__c_and_sql__agree_for_random_and_edge_ids(self):
        probe = Probe(self)
        probe.send(f"pool 2 10000 dbname={self.db}")
        probe.event("pool")
        probe.event("pool_state", connected=2)
        ids = [str(uuid.uuid4()) for _ in range(500)] + [
            "00000000-0000-4000-8000-000000000000", "ffffffff-ffff-4fff-8fff-ffffffffffff",
            "80000000-0000-4000-8000-000000000000", "7fffffff-ffff-4fff-8fff-ffffffffffff",
            "ABCDEF01-2345-4678-9ABC-DEF012345678"]
        cases = [(f"q{i}_{count}", count, booking) for i, booking in enumerate(ids) for count in (1, 7, 64, 1024)]
        for qid, count, booking in cases:
            probe.send(f"partition {qid} {count} {booking}")
        disagree = []
        for qid, count, booking in cases:
            in_c = probe.event("partition", id=qid)["c"]
            result = probe.result(qid)
            self.assertTrue(result["ok"], result)
            in_sql = int(result["rows"][0][0])
            reference = int(booking.replace("-", "")[:8], 16) % count
            if not in_c == in_sql == reference:
                disagree.append((booking, count, in_c, in_sql, reference))
        self.assertEqual(disagree, [])
        probe.send("quit")
        probe.event("bye", loop_close=0)


class OwnedPartitionSweepTest(unittest.TestCase):
    """The repository's sweep reads (the daemon's SQL, run by db_probe) return only the owned partitions' rows."""

    def setUp(self):
        require_pg(self)
        self.db = TempDB(prefix="sweepparts").__enter__()
        self.addCleanup(self.db.__exit__, None, None, None)
        self.db.apply_lad_table(SCHEMA)
        self.db.apply_migrations(SCHEMA)

    def test_sweep_reads__owned_partitions__only_their_bookings_and_all_without_a_filter(self):
        table = f"{quote_ident(SCHEMA)}.lead_bookings"
        tenant = str(uuid.uuid4())
        pending = [r[0] for r in self.db.query(
            f"INSERT INTO {table} (tenant_id, lead_id, booking_type, scheduled_at) SELECT '{tenant}', "
            f"gen_random_uuid(), 'follow_up', now() + interval '1 hour' FROM generate_series(1, 200) RETURNING id")]
        cancelled = [r[0] for r in self.db.query(
            f"INSERT INTO {table} (tenant_id, lead_id, booking_type, status, scheduled_at, task_status, task_name) "
            f"SELECT '{tenant}', gen_random_uuid(), 'follow_up', 'cancelled', now() + interval '1 hour', "
            f"'scheduled', 'local/' || g FROM generate_series(1, 100) g RETURNING id")]
        probe = Probe(self)
        probe.send(f"pool 1 100 dbname={self.db.name}")
        probe.event("pool")
        probe.event("pool_state", connected=1)

        def partition(booking):
            return int(booking.replace("-", "")[:8], 16) % PARTITIONS

        for kind, rows in (("catchup", pending), ("stale", cancelled)):
            for owned_set in ({0}, set(range(0, PARTITIONS, 3)), set(range(PARTITIONS)) - {5}):
                probe.send(f"sweep {kind}{len(owned_set)} {kind} {SCHEMA} {PARTITIONS} "
                           f"{','.join(map(str, sorted(owned_set)))}")
                got = probe.event("sweep", id=f"{kind}{len(owned_set)}")
                self.assertTrue(got["ok"], got)
                self.assertEqual(sorted(got["ids"]), sorted(b for b in rows if partition(b) in owned_set), kind)
            probe.send(f"sweep {kind}all {kind} {SCHEMA} {PARTITIONS} all")
            self.assertEqual(sorted(probe.event("sweep", id=f"{kind}all")["ids"]), sorted(rows))
        probe.send("quit")
        probe.event("bye", loop_close=0)


def lock_class(partitions, schemas):
    """The advisory-lock class of a group (db_ownership_lock_class: 31-bit FNV-1a of "followupd/<count>/<schemas>")."""
    h = 2166136261
    for byte in f"followupd/{partitions}/{','.join(sorted(schemas))}".encode():
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h & 0x7FFFFFFF


def booking_in(partition):
    """A random booking id whose partition (first 4 bytes mod PARTITIONS) is `partition`."""
    u = uuid.uuid4().hex
    head = (int(u[:8], 16) // PARTITIONS * PARTITIONS + partition) % (1 << 32)
    return str(uuid.UUID(f"{head:08x}{u[8:]}"))


class LockingIntruder(Intruder):
    """A login of another role, with no grants, holding advisory locks in followupd's key space in one session."""

    def hold(self, sql):
        self.proc = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env(), text=True)
        self.proc.stdin.write(sql)
        self.proc.stdin.flush()

    def locks(self):
        return int(self.db.query(f"SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                                 f"WHERE l.locktype = 'advisory' AND a.usename = '{self.role}'")[0][0])

    def end(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(30)
        self.proc.stderr.close()


class OwningNothingTest(unittest.TestCase):
    """One partition, two replicas: the one that owns nothing is still ready and still takes callbacks."""

    def test_replica_owning_no_partition__ready_and_executes_callbacks(self):
        with Stack(schemas=(SCHEMA,), start_daemon=False,
                   extra_config=f"[replicas]\npartitions = 1\nrebalance_interval_ms = {INTERVAL_MS}\n") as s:
            replicas = [s.start() for _ in range(2)]
            wait_for(lambda: sorted(owned(d) for d in replicas) == [0, 1]
                     and all(metric_value(d, "followupd_replicas_live") == 2 for d in replicas),
                     20, "one replica owns the only partition", interval=0.05)
            idle = next(d for d in replicas if owned(d) == 0)
            self.assertEqual(s.http(idle, "GET", "/readyz"), (200, {"status": "ready"}))
            booking, _, name, body = s.scheduled_booking(SCHEMA, timeout=15)
            self.assertNotEqual(int(s.ct.tasks[name]["url"].split(":")[2].split("/")[0]), idle.port)
            self.assertEqual(s.execute(idle, booking, body), (200, {"status": "executed"}))
            self.assertEqual(len(s.va.calls_for_booking(booking)), 1)


def owned(d):
    return int(metric_value(d, "followupd_partitions_owned") or 0)


class ScaleOutTest(unittest.TestCase):
    def setUp(self):
        self.s = Stack(schemas=(SCHEMA,), start_daemon=False, log_level="info",
                       extra_config=f"[replicas]\npartitions = {PARTITIONS}\nrebalance_interval_ms = {INTERVAL_MS}\n"
                       ).__enter__()
        self.addCleanup(self.s.__exit__, None, None, None)

    # -- helpers -------------------------------------------------------------------------------------------------
    def start_replicas(self, n):
        replicas = [self.s.start() for _ in range(n)]
        self.wait_balanced(replicas)
        return replicas

    def wait_balanced(self, replicas, timeout=20):
        """Every replica sees the others and owns its share; together they own every partition once."""
        share = -(-PARTITIONS // len(replicas))

        def balanced():
            counts = [owned(d) for d in replicas]
            live = [int(metric_value(d, "followupd_replicas_live") or 0) for d in replicas]
            return (sum(counts) == PARTITIONS and all(c <= share for c in counts)
                    and live == [len(replicas)] * len(replicas))
        wait_for(balanced, timeout, f"{len(replicas)} replicas balanced", interval=0.05)

    def table(self):
        return f"{quote_ident(SCHEMA)}.lead_bookings"

    def insert_one_by_one(self, tenant, n, base):
        """n bookings, one transaction each (n notifications), due an hour from now."""
        ids = [str(uuid.uuid4()) for _ in range(n)]
        self.s.db.psql("".join(
            f"INSERT INTO {self.table()} (id, tenant_id, lead_id, booking_type, scheduled_at) VALUES "
            f"('{b}', '{tenant}', '{uuid.uuid4()}', 'follow_up', to_timestamp({base + i % 97}));\n"
            for i, b in enumerate(ids)))
        return ids

    def scheduled(self, tenant):
        return int(self.s.db.query(f"SELECT count(*) FROM {self.table()} WHERE tenant_id = '{tenant}' "
                                   f"AND task_status = 'scheduled'")[0][0])

    def task_names(self, tenant):
        rows = self.s.db.query(f"SELECT id, task_name FROM {self.table()} WHERE tenant_id = '{tenant}'")
        return dict(rows)

    def assert_one_task_and_one_call_each(self, tenant, ids):
        wait_for(lambda: self.scheduled(tenant) == len(ids), 30, "every booking scheduled", interval=0.1)
        names = self.task_names(tenant)
        self.assertEqual(sorted(names), sorted(ids))
        by_name = self.s.ct.create_calls_by_name
        not_once = {b: by_name.get(n) for b, n in names.items() if (by_name.get(n) or {}).get("created") != 1}
        self.assertEqual(not_once, {}, "bookings whose task was not created exactly once")
        answers = {b: self.deliver(n) for b, n in names.items()}
        wrong = {b: a for b, a in answers.items() if a != [(200, {"status": "executed"})]}
        self.assertEqual(wrong, {}, "each task's delivery executes once")
        calls = [c for c in self.s.va.calls if c["body"]["tenantId"] == tenant]
        self.assertEqual(sorted(c["body"]["bookingId"] for c in calls), sorted(ids))
        self.assertEqual([c for c in calls if c["duplicate"]], [])
        return sum(by_name[n]["calls"] for n in names.values())

    def deliver(self, name):
        """Cloud Tasks' delivery of a task; one created by a replica that is gone reaches a live one (as behind
        the load balancer of public_url)."""
        task = self.s.ct.tasks[name]
        port = int(task["url"].split(":")[2].split("/")[0])
        if any(d.port == port and d.running for d in self.s.daemons):
            return self.s.dispatch_json(name)
        live = next(d for d in self.s.daemons if d.running)
        return [self.s.execute(live, task["body_json"]["bookingId"], task["body_json"])]

    def foreign(self, d):
        return int(metric_value(d, "followupd_partitions_foreign_locked") or 0)

    @staticmethod
    def acquired(d):
        return metric_value(d, "followupd_partition_handovers_total", direction="acquired")

    def created_by(self, replicas):
        """Tasks each replica created (the fake records the callback URL: the creating replica's port)."""
        ports = {}
        for task in self.s.ct.tasks.values():
            port = int(task["url"].split(":")[2].split("/")[0])
            ports[port] = ports.get(port, 0) + 1
        return [ports.get(d.port, 0) for d in replicas]

    # -- tests ---------------------------------------------------------------------------------------------------
    def test_three_replicas_300_burst__each_task_created_once_with_at_most_5_percent_extra_calls(self):
        replicas = self.start_replicas(3)
        tenant = str(uuid.uuid4())
        ids = self.s.insert_bookings(SCHEMA, 300, time.time() + HOUR, tenant=tenant)
        wait_for(lambda: self.scheduled(tenant) == 300, 30, "300 bookings scheduled", interval=0.1)
        spread = self.created_by(replicas)
        existed = sum(metric_value(d, "followupd_tasks_already_existed_total") for d in replicas)
        not_owned = sum(metric_value(d, "followupd_notifications_not_owned_total") for d in replicas)
        calls = self.assert_one_task_and_one_call_each(tenant, ids)
        self.assertLessEqual(calls, 1.05 * 300, "createTask requests per task")
        self.assertLessEqual(existed, 0.05 * 300)
        self.assertTrue(all(n >= 50 for n in spread), f"work spread over the replicas: {spread}")
        self.assertEqual(not_owned, 2 * 300, "each notification acted on by its owner only")
        for d in replicas:
            d.assert_clean()
        print(f"\n  scale-out: 3 replicas, 300 bookings: {calls} createTask requests, created by replica {spread}",
              file=sys.stderr)

    def test_sigkill_mid_burst__partitions_taken_over_within_bound__one_task_one_call_each(self):
        replicas = self.start_replicas(3)
        victim, survivors = replicas[1], [replicas[0], replicas[2]]
        tenant, base = str(uuid.uuid4()), int(time.time()) + HOUR
        first = self.insert_one_by_one(tenant, 150, base)
        victim_share = owned(victim)
        acquired_before = [self.acquired(d) for d in survivors]
        victim.kill()
        killed_at = time.monotonic()
        second = self.insert_one_by_one(tenant, 150, base)     # a third of these fall into the dead partitions
        wait_for(lambda: sum(owned(d) for d in survivors) == PARTITIONS, INTERVAL_MS / 1000 + HANDOVER_SLACK_S,
                 "the survivors own every partition within the hand-over bound", interval=0.02)
        took_over_s = time.monotonic() - killed_at
        self.wait_balanced(survivors)
        self.assert_one_task_and_one_call_each(tenant, first + second)
        acquired = [self.acquired(d) - before for d, before in zip(survivors, acquired_before)]
        self.assertEqual(sum(acquired), victim_share, "the survivors took exactly the victim's partitions over")
        for d in survivors:
            d.assert_clean()
        print(f"\n  scale-out: SIGKILL of one of 3 replicas: partitions taken over after {took_over_s:.2f} s "
              f"(bound {INTERVAL_MS / 1000 + HANDOVER_SLACK_S:.1f} s)", file=sys.stderr)

    def test_fourth_replica_joins_during_inserts__rebalanced_without_a_gap_or_a_double(self):
        replicas = self.start_replicas(3)
        released_before = sum(metric_value(d, "followupd_partition_handovers_total", direction="released")
                              for d in replicas)
        tenant, base = str(uuid.uuid4()), int(time.time()) + HOUR
        inserted, errors = [], []

        def insert():
            try:
                for _ in range(6):
                    inserted.extend(self.insert_one_by_one(tenant, 50, base))
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                errors.append(e)
        writer = threading.Thread(target=insert)
        writer.start()
        fourth = self.s.start()
        replicas.append(fourth)
        beliefs = []

        def settled():
            counts = [owned(d) for d in replicas]
            beliefs.append(sum(counts))
            return counts == [16, 16, 16, 16]
        wait_for(settled, 20, "ownership moved to 16 partitions each", interval=0.02)
        writer.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(inserted), 300)
        self.assertLessEqual(max(beliefs), PARTITIONS, "a partition believed owned by two replicas")
        self.assert_one_task_and_one_call_each(tenant, inserted)
        by_name = self.s.ct.create_calls_by_name
        twice = {b: by_name[n] for b, n in self.task_names(tenant).items() if by_name[n]["calls"] != 1}
        self.assertEqual(twice, {}, "a given-up partition's work in flight overlapped with its new owner's")
        released = sum(metric_value(d, "followupd_partition_handovers_total", direction="released")
                       for d in replicas[:3])
        self.assertEqual(self.acquired(fourth), 16)
        self.assertEqual(released - released_before, 16, "the three gave up exactly the newcomer's share")
        for d in replicas:
            d.assert_clean()

    def test_partition_given_up_with_creates_in_flight__unlocked_only_after_them__one_request_per_task(self):
        replicas = self.start_replicas(3)
        tenant = str(uuid.uuid4())
        self.s.ct.delay_next(1000, 2.0, method="create", when="before")   # Google slow: creates stay in flight
        ids = self.s.insert_bookings(SCHEMA, 60, time.time() + HOUR, tenant=tenant)
        wait_for(lambda: self.s.ct.create_call_count >= 20, 10, "creates in flight", interval=0.02)
        fourth = self.s.start()                # the three give 16 partitions up while their creates are pending
        self.wait_balanced(replicas + [fourth], timeout=30)
        self.assert_one_task_and_one_call_each(tenant, ids)
        by_name = self.s.ct.create_calls_by_name
        twice = {b: by_name[n] for b, n in self.task_names(tenant).items() if by_name[n]["calls"] != 1}
        self.assertEqual(twice, {}, "the new owner worked on a booking whose create was still in flight")
        self.assertEqual(self.acquired(fourth), 16)
        for d in replicas + [fourth]:
            d.assert_clean()

    def test_other_role_holds_a_partition_and_fake_memberships__ignored_and_its_partition_worked_by_all(self):
        cls = lock_class(PARTITIONS, (SCHEMA,))
        intruders = [LockingIntruder(self.s.db) for _ in range(2)]
        intruders[0].hold(f"SELECT pg_advisory_lock_shared({cls}, 2147483647), pg_advisory_lock({cls}, 5);\n")
        intruders[1].hold(f"SELECT pg_advisory_lock_shared({cls}, 2147483647);\n")
        for intruder in intruders:
            self.addCleanup(intruder.drop)
            self.addCleanup(intruder.end)
        wait_for(lambda: intruders[0].locks() == 2 and intruders[1].locks() == 1, 10, "the intruders' locks")
        replicas = [self.s.start() for _ in range(2)]
        self.assertEqual(str(cls), replicas[0].wait_for_log(msg_contains("work ownership"))["lock_class"])
        wait_for(lambda: [owned(d) for d in replicas] in ([32, 31], [31, 32])
                 and [self.foreign(d) for d in replicas] == [1, 1]
                 and [metric_value(d, "followupd_replicas_live") for d in replicas] == [2, 2],
                 20, "the two replicas split what they can lock; partition 5 worked by both", interval=0.05)
        tenant = str(uuid.uuid4())
        ids = [booking_in(5) for _ in range(20)] + [str(uuid.uuid4()) for _ in range(80)]
        self.s.db.psql("".join(
            f"INSERT INTO {self.table()} (id, tenant_id, lead_id, booking_type, scheduled_at) VALUES "
            f"('{b}', '{tenant}', '{uuid.uuid4()}', 'follow_up', now() + interval '1 hour');\n" for b in ids))
        self.assert_one_task_and_one_call_each(tenant, ids)
        for intruder in intruders:
            intruder.end()
        wait_for(lambda: sum(owned(d) for d in replicas) == PARTITIONS and [self.foreign(d) for d in replicas] == [0, 0],
                 10, "partition 5 owned by one replica once unlocked", interval=0.05)
        for d in replicas:
            d.assert_clean()
            self.assertTrue(d.find_logs(msg_contains("locked by sessions of another database role")))


if __name__ == "__main__":
    unittest.main()
