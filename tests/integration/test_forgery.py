"""Forged NOTIFY payloads (real PostgreSQL, real daemon, strict fakes): a notification is a hint, never a command.

PostgreSQL has no privilege on NOTIFY: any role that can log in can pg_notify() on followupd's channels. These
tests send forgeries as such a role -- a LOGIN role with no grant on the tenant schemas, which cannot even read
lead_bookings -- while real bookings flow, and check that no task is created, deleted or changed by a forgery,
that every real booking is still called exactly once, that each forgery is dropped with one warn line naming its
reason (echoing no payload text beyond ids) and counted in followupd_notifications_rejected_total{reason}, and
that a real DELETE of a row still deletes its task (also after a reschedule, generation 1). The local backend
gets the same checks.

No sleeps: every wait is a condition with a deadline (metrics, logs, the fakes' condition variables).
"""
import os
import subprocess
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import msg_contains  # noqa: E402
from pgutil import notify_channel, quote_ident  # noqa: E402
from opsutil import metric  # noqa: E402
from stack import Stack, wait_for  # noqa: E402

WAIT_S = 15.0
SCHEMA, OTHER_SCHEMA = "crm_forgery", "crm_forgery_b"
REASONS = ("malformed", "oversized", "unknown_schema", "wrong_channel", "unverifiable", "foreign_task_name",
           "booking_exists", "unconfirmed")


def new_id():
    return str(uuid.uuid4())


def whole_second(offset_s):
    return int(time.time()) + int(offset_s)


def rejected(d):
    return {r: metric(d, "followupd_notifications_rejected_total", reason=r) for r in REASONS}


class Intruder:
    """A LOGIN role with no grants: it can connect and NOTIFY, nothing else."""

    def __init__(self, db):
        self.db = db
        self.role = "intruder_" + uuid.uuid4().hex[:12]
        self.password = uuid.uuid4().hex
        db.psql(f"CREATE ROLE {self.role} LOGIN PASSWORD '{self.password}'")

    def env(self):
        env = self.db.env()
        env.update({"PGUSER": self.role, "PGPASSWORD": self.password})
        return env

    def psql(self, sql):
        return subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"], env=self.env(),
                              input=sql, capture_output=True, text=True, timeout=60)

    def notify(self, channel, payload):
        lit = "'" + payload.replace("'", "''") + "'"
        proc = self.psql(f"SELECT pg_notify('{channel}', {lit});")
        if proc.returncode != 0:
            raise AssertionError(f"the intruder could not NOTIFY: {proc.stderr}")

    def drop(self):
        self.db.psql(f"DROP ROLE IF EXISTS {self.role}")


def payload(schema, tenant, booking, op, **extra):
    import json
    body = {"schema": schema, "tenantId": tenant, "bookingId": booking, "op": op}
    body.update(extra)
    return json.dumps(body)


class ForgeryCase(unittest.TestCase):
    backend = "cloudtasks"

    @classmethod
    def setUpClass(cls):
        cls.s = Stack(schemas=(SCHEMA, OTHER_SCHEMA), backend=cls.backend, start_daemon=False).__enter__()
        try:
            cls.d = cls.s.start()
            cls.d.wait_for_log(msg_contains("listening for booking notifications"), timeout=WAIT_S)
            cls.intruder = Intruder(cls.s.db)
        except BaseException:
            cls.s.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.intruder.drop()
            code, _ = cls.d.stop(timeout=10.0)
            if code != 0:
                raise AssertionError(f"followupd exited {code}")
        finally:
            cls.s.__exit__(None, None, None)

    def tearDown(self):
        self.d.assert_clean()
        self.assertEqual(self.s.ct.internal_errors, [])
        self.assertEqual(self.s.va.internal_errors, [])

    def table(self, schema=SCHEMA):
        return f"{quote_ident(schema)}.lead_bookings"

    def forge(self, text, channel=None):
        self.intruder.notify(channel or notify_channel(SCHEMA), text)

    def wait_rejections(self, before, expected):
        """Until every reason in `expected` was counted that many more times than in `before`; then no other
        reason may have moved."""
        def reached():
            now = rejected(self.d)
            return now if all((now[r] or 0) - (before[r] or 0) >= n for r, n in expected.items()) else None
        now = wait_for(reached, WAIT_S, f"rejections {expected}")
        moved = {r: now[r] - before[r] for r in REASONS if now[r] != before[r]}
        self.assertEqual(moved, expected)

    def wait_idle(self):
        wait_for(lambda: metric(self.d, "followupd_scheduler_backlog_bookings") == 0, WAIT_S,
                 "scheduler idle")


class CloudTasksForgeryTest(ForgeryCase):
    def test_role_without_grants__cannot_read_bookings_but_can_notify(self):
        proc = self.intruder.psql(f"SELECT count(*) FROM {self.table()};")
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("permission denied", proc.stderr)
        self.forge(payload(SCHEMA, new_id(), new_id(), "INSERT"))   # raises if NOTIFY were refused

    def test_forgeries_while_real_bookings_flow__no_task_touched__each_booking_called_once(self):
        s = self.s
        live = []   # (booking, tenant, key, name)
        for _ in range(4):
            tenant, at = new_id(), whole_second(2 * 3600)
            booking = s.insert_booking(SCHEMA, tenant=tenant, at=at)
            key = s.idempotency_key_for(tenant, booking, at)
            live.append((booking, tenant, key, s.task_name_for(key)))
        meeting = s.insert_booking(SCHEMA, booking_type="meeting")
        for booking, _, _, name in live:
            s.wait_row(SCHEMA, booking, lambda r, n=name: r["task_status"] == "scheduled" and r["task_name"] == n,
                       WAIT_S)
        self.wait_idle()
        before_rows = {b: s.row(SCHEMA, b) for b, _, _, _ in live}
        before_tasks = sorted(s.ct.tasks)
        before_deletes = len(s.ct.deletes)
        before = rejected(self.d)
        mark = self.d.mark()

        (b1, t1, k1, n1), (b2, t2, k2, n2) = live[0], live[1]
        ghost, ghost_tenant = new_id(), new_id()
        ghost_key = s.idempotency_key_for(ghost_tenant, ghost, whole_second(3600))
        foreign = "projects/evil-project/locations/x/queues/y/tasks/" + "a" * 64
        channel = notify_channel(SCHEMA)
        forgeries = [
            # DELETE of a live booking, even with its true task name and key: the row is still there
            (payload(SCHEMA, t1, b1, "DELETE", taskName=n1, idempotencyKey=k1, taskGeneration=0), "booking_exists"),
            # a live booking's task named under another booking id (key of that id, or the live one's key)
            (payload(SCHEMA, ghost_tenant, ghost, "DELETE", taskName=n2, idempotencyKey=ghost_key,
                     taskGeneration=0), "foreign_task_name"),
            (payload(SCHEMA, ghost_tenant, ghost, "DELETE", taskName=n2, idempotencyKey=k2, taskGeneration=0),
             "foreign_task_name"),
            # right ids, wrong generation; another project's queue; a live task without any key
            (payload(SCHEMA, t2, b2, "DELETE", taskName=n2, idempotencyKey=k2, taskGeneration=1),
             "foreign_task_name"),
            (payload(SCHEMA, ghost_tenant, ghost, "DELETE", taskName=foreign, idempotencyKey=ghost_key,
                     taskGeneration=0), "foreign_task_name"),
            (payload(SCHEMA, t2, b2, "DELETE", taskName=n2), "unverifiable"),
            # schema and channel checks
            (payload("crm_unknown_schema_xyz", t1, b1, "INSERT"), "unknown_schema"),
            (payload(OTHER_SCHEMA, t1, b1, "INSERT"), "wrong_channel"),
            # shape
            ("{not json", "malformed"),
            ("[1, 2, 3]", "malformed"),
            (payload(SCHEMA, "not-a-uuid", b1, "INSERT"), "malformed"),
            (payload(SCHEMA, t1, b1, "TRUNCATE"), "malformed"),
            (payload(SCHEMA, t1, b1, "INSERT", pad="z" * 6000), "oversized"),
        ]
        # hints that pass the boundary: each only makes followupd re-read a row, tenant-scoped
        hints = [
            payload(SCHEMA, ghost_tenant, b1, "INSERT"),            # a real booking under the wrong tenant
            payload(SCHEMA, t1, b1, "UPDATE", scheduledAt="2020-01-01T00:00:00.000Z", status="cancelled"),
            payload(SCHEMA, t2, b2, "INSERT"),
            payload(SCHEMA, t1, meeting, "INSERT"),                  # a meeting under a wrong tenant
            payload(SCHEMA, ghost_tenant, ghost, "UPDATE"),          # no such booking at all
        ]
        flowing = []
        for i, (text, _) in enumerate(forgeries):
            self.forge(text, channel)
            if i % 4 == 0:   # real bookings keep arriving, due now: created, dispatched, called
                flowing.append(s.insert_booking(SCHEMA, tenant=new_id(), at=time.time()))
        for text in hints:
            self.forge(text, channel)

        expected = {}
        for _, reason in forgeries:
            expected[reason] = expected.get(reason, 0) + 1
        self.wait_rejections(before, expected)
        for booking in flowing:
            s.wait_row(SCHEMA, booking, lambda r: r["task_status"] == "scheduled", WAIT_S)
        self.wait_idle()

        # nothing a forgery named was deleted, created or changed
        self.assertEqual(s.ct.deletes[before_deletes:], [], "a forgery made followupd delete a task")
        for booking, _, _, name in live:
            self.assertEqual(s.creates_of(name), {"calls": 1, "created": 1})
            self.assertEqual(s.row(SCHEMA, booking), before_rows[booking])
        self.assertTrue(set(before_tasks) <= set(s.ct.tasks))
        self.assertEqual(len(s.ct.tasks), len(before_tasks) + len(flowing))
        self.assertIsNone(s.task_for(meeting))
        self.assertIsNone(s.task_for(ghost))

        # one warn line per forgery, with its reason, echoing nothing beyond ids
        warns = self.d.find_logs(lambda r: r.get("level") == "warn" and "notification" in str(r.get("msg", "")),
                                 since=mark)
        self.assertEqual(sorted(w.get("reason") for w in warns), sorted(r for _, r in forgeries))
        import json
        logged = "\n".join(json.dumps(rec) for rec in self.d.logs[mark:])
        for secret_text in ("crm_unknown_schema_xyz", "evil-project", "z" * 50, "not json", "TRUNCATE"):
            self.assertNotIn(secret_text, logged)

        # every real booking is still called exactly once
        for booking, _, _, name in live:
            self.assertEqual(s.dispatch_json(name), [(200, {"status": "executed"})])
        for booking in flowing:
            name, _ = s.task_for(booking)
            self.assertEqual(s.dispatch_json(name), [(200, {"status": "executed"})])
        for booking in [b for b, _, _, _ in live] + flowing:
            self.assertEqual(len(s.va.calls_for_booking(booking)), 1, booking)
        self.assertEqual(s.voice_requests_for(meeting), [])

    def test_real_delete_of_a_row__its_task_deleted(self):
        s = self.s
        booking, row, name, _ = s.scheduled_booking(SCHEMA)
        before = rejected(self.d)
        s.db.psql(f"DELETE FROM {self.table()} WHERE id = '{booking}';")
        self.assertTrue(s.ct.wait_until(lambda: s.deletes_of(name), WAIT_S), "task never deleted")
        self.assertEqual([d["status"] for d in s.deletes_of(name)], [200])
        self.assertEqual(rejected(self.d), before)

    def test_real_delete_after_a_reschedule__the_generation_1_task_deleted(self):
        s = self.s
        tenant = new_id()
        booking, _, old_name, _ = s.scheduled_booking(SCHEMA, tenant=tenant, at=whole_second(2 * 3600))
        new_at = whole_second(5 * 3600)
        new_name = s.task_name_for(s.idempotency_key_for(tenant, booking, new_at), generation=1)
        s.db.psql(f"UPDATE {self.table()} SET scheduled_at = to_timestamp({new_at}) WHERE id = '{booking}';")
        s.wait_row(SCHEMA, booking, lambda r: r["task_name"] == new_name, WAIT_S)
        self.assertTrue(s.ct.wait_until(lambda: s.deletes_of(old_name), WAIT_S), "old task never deleted")
        s.db.psql(f"DELETE FROM {self.table()} WHERE id = '{booking}';")
        self.assertTrue(s.ct.wait_until(lambda: s.deletes_of(new_name), WAIT_S), "task never deleted")
        self.assertEqual([d["status"] for d in s.deletes_of(new_name)], [200])

    def test_delete_hint__carries_ids_task_name_key_and_generation_only(self):
        s = self.s
        booking, row, name, _ = s.scheduled_booking(SCHEMA)
        got = s.db.capture_notifications(notify_channel(SCHEMA),
                                         f"DELETE FROM {self.table()} WHERE id = '{booking}';")
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0].json(), {"schema": SCHEMA, "tenantId": row["tenant_id"], "bookingId": booking,
                                         "op": "DELETE", "taskName": name,
                                         "idempotencyKey": row["idempotency_key"], "taskGeneration": 0})


class LocalBackendForgeryTest(ForgeryCase):
    backend = "local"

    def test_forged_delete_of_a_due_local_task__refused__booking_called_once(self):
        s = self.s
        tenant, at = new_id(), whole_second(3)
        booking = s.insert_booking(SCHEMA, tenant=tenant, at=at)
        key = s.idempotency_key_for(tenant, booking, at)
        import hashlib
        name = "local/" + hashlib.sha256(key.encode()).hexdigest()
        s.wait_row(SCHEMA, booking, lambda r: r["task_status"] == "scheduled" and r["task_name"] == name, WAIT_S)
        before = rejected(self.d)
        self.forge(payload(SCHEMA, tenant, booking, "DELETE", taskName=name, idempotencyKey=key, taskGeneration=0))
        self.forge(payload(SCHEMA, new_id(), new_id(), "DELETE", taskName=name, idempotencyKey=key,
                           taskGeneration=0))
        self.wait_rejections(before, {"booking_exists": 1, "foreign_task_name": 1})
        s.wait_row(SCHEMA, booking, lambda r: r["task_status"] == "executed", WAIT_S)
        self.assertEqual(len(s.va.calls_for_booking(booking)), 1)


if __name__ == "__main__":
    unittest.main()
