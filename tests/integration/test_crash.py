"""followupd killed or cut off mid-flight: nothing is lost, nothing is done twice.

SIGKILL at each named point, reached with barriers in the fakes (no code hooks in the daemon):
  (a) between create-task and mark-scheduled: the fake Cloud Tasks creates the task, then holds its reply; the
      daemon is killed while it waits. Restart: the catch-up creates the same name again, takes 409
      ALREADY_EXISTS as created and marks the row scheduled -> one task, one successful create.
  (b) between in_progress and the call: the voice agent's address is a sink that takes the start-call request
      and never acts on it (the request never reached the agent's logic); the daemon is killed with the row
      in_progress. Restart: a delivery inside the lease answers 409 in_progress; after the lease a delivery
      calls with the SAME Idempotency-Key -> one call, row executed.
  (c) after the call, before mark-executed: the voice agent starts the call, then holds its reply; the daemon is
      killed. Restart: after the lease the re-delivery calls again with the same key; the agent (which honours
      Idempotency-Key) answers with the same call -> one unique call, row executed.
  The lease is voice_agent.timeout_ms + 30 s (33 s here). Instead of waiting for it, the tests move the row's
  execution_started_at one hour back: exactly what the lease check reads (documented at each use).
  Invariants checked after each: the booking has one live-or-ran task with exactly one successful create, its
  row points at it, and every start-call request for it carried the row's idempotency key.

Outages:
  pg_terminate_backend of the listener during a 600-row burst: the daemon runs as its own role, which is
  NOLOGIN from just before the kill until 200 more rows are committed, so those rows' notifications are lost
  for certain; after the reconnect the catch-up finds them -> every booking scheduled, one create each.
  Fake Cloud Tasks answering 503 to everything for longer than the scheduler's retry budget: bookings stay
  pending, the scheduler gives up per booking, create requests stay bounded (no tight loop); after recovery the
  periodic sweep (followup.sweep_interval_s = 2) schedules all of them, one successful create each.

Covered elsewhere: SIGTERM during a create (test_schedule), voice-agent timeouts and duplicate deliveries
(test_execute), PostgreSQL restarted (test_schedule.RestartTest).

No sleeps: every wait is a condition with a deadline. Needs $FOLLOWUPD_BUILD/followupd and PG* (superuser: one
test creates and drops a login role).
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import msg_contains, msg_is  # noqa: E402
from pgutil import LISTENER_PIDS_SQL, quote_ident, quote_literal  # noqa: E402
from stack import Stack, wait_for  # noqa: E402

HOUR = 3600
WAIT_S = 15.0
STOPPED = "stopped: all handles closed"
LEASE_EXPIRED_SQL = ("UPDATE {table} SET execution_started_at = execution_started_at - interval '1 hour' "
                     "WHERE id = '{booking}' AND task_status = 'in_progress'")


def new_id():
    return str(uuid.uuid4())


def about(booking_id, text=None):
    return lambda rec: rec.get("booking_id") == booking_id and (text is None or text in str(rec.get("msg", "")))


class Sink:
    """A voice-agent address that accepts connections and reads whole requests but never answers: the daemon
    has sent its start-call, the agent never acted on it."""

    def __init__(self):
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.requests = []
        self._conns = []
        self._cond = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            headers = {}
            for line in head.decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            while len(body) < int(headers.get("content-length", "0")):
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
        except OSError:
            return
        with self._cond:
            self.requests.append({"headers": headers, "body": body})
            self._cond.notify_all()

    def wait_for_requests(self, n, timeout):
        with self._cond:
            return self._cond.wait_for(lambda: len(self.requests) >= n, timeout)

    def close(self):
        self._sock.close()
        for conn in self._conns:
            conn.close()


class CrashCase(unittest.TestCase):
    schema = None

    def table(self):
        return f"{quote_ident(self.schema)}.lead_bookings"

    def wait_row(self, booking, pred, timeout=WAIT_S):
        return self.s.wait_row(self.schema, booking, pred, timeout)

    def start(self, port=None, env=None):
        d = self.s.start(env=env) if port is None else self.s.start_on_port(port, env=env)
        d.wait_for_log(msg_contains("listening for booking notifications"), timeout=WAIT_S)
        return d

    def stop_clean(self, d):
        code, _ = d.stop(timeout=10.0)
        self.assertEqual(code, 0, f"exit code on SIGTERM; last logs {d.logs[-5:]}")
        self.assertTrue(d.find_logs(msg_is(STOPPED)))
        d.assert_clean()

    def sigkill(self, d):
        code, _ = d.stop(sig=signal.SIGKILL, timeout=10.0)
        self.assertEqual(code, -signal.SIGKILL)

    def insert(self, tenant, at):
        return self.s.insert_booking(self.schema, tenant=tenant, at=at)


# -- SIGKILL at each named point -----------------------------------------------------------------------------------
class SigkillTest(CrashCase):
    schema = "crm_crash"

    @classmethod
    def setUpClass(cls):
        cls.s = Stack(schemas=(cls.schema,), start_daemon=False, log_level="debug").__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.s.__exit__(None, None, None)

    def setUp(self):
        self.running = []

    def tearDown(self):
        for d in self.running:
            if d.running:
                self.stop_clean(d)
        self.assertEqual(self.s.ct.internal_errors, [])
        self.assertEqual(self.s.va.internal_errors, [])

    def scheduled(self, d):
        tenant, at = new_id(), int(time.time()) + 2 * HOUR
        booking = self.insert(tenant, at)
        key = self.s.idempotency_key_for(tenant, booking, at)
        name = self.s.task_name_for(key)
        self.wait_row(booking, lambda r: r["task_status"] == "scheduled")
        return booking, key, name

    def deliver_in_background(self, name):
        """Cloud Tasks' delivery of `name`, running until the daemon answers or dies: (thread, results)."""
        results = []
        t = threading.Thread(target=lambda: results.extend(self.s.dispatch_json(name)))
        t.start()
        return t, results

    def expire_lease(self, booking):
        # The claim treats in_progress older than the lease (voice timeout 3 s + 30 s) as abandoned. Moving the
        # claim time an hour back is what 33 s of waiting would do, without the wait.
        self.s.db.psql(LEASE_EXPIRED_SQL.format(table=self.table(), booking=booking))

    def assert_invariants(self, booking, name, key):
        """One task (live or ran) with one successful create, the row on it, every call with the row's key."""
        row = self.s.row(self.schema, booking)
        self.assertEqual((row["task_name"], row["idempotency_key"]), (name, key))
        self.assertEqual(self.s.creates_of(name)["created"], 1)
        self.assertLessEqual(len(self.s.live_tasks_for(booking)), 1)
        self.assertTrue(self.s.live_tasks_for(booking) in ([name], []))
        self.assertEqual({c["idempotency_key"] for c in self.s.va.calls_for_booking(booking)} - {key}, set())

    def test_a_sigkill_between_create_task_and_mark_scheduled__one_task_row_scheduled_after_restart(self):
        d = self.start()
        self.running.append(d)
        tenant, at = new_id(), int(time.time()) + 2 * HOUR
        self.s.ct.delay_next(1, 30.0, method="create", when="after")   # created, reply held back
        booking = self.insert(tenant, at)
        key = self.s.idempotency_key_for(tenant, booking, at)
        name = self.s.task_name_for(key)
        self.assertTrue(self.s.ct.wait_until(lambda: self.s.creates_of(name)["created"] == 1, WAIT_S))
        self.sigkill(d)
        row = self.s.row(self.schema, booking)
        self.assertEqual((row["task_status"], row["task_name"]), ("pending", None), "marked before the reply?")

        d = self.start(port=d.port)
        self.running.append(d)
        row = self.wait_row(booking, lambda r: r["task_status"] == "scheduled")
        self.assertEqual(self.s.creates_of(name), {"calls": 2, "created": 1})   # the second one got 409
        self.assertEqual(self.s.live_tasks_for(booking), [name])
        self.assertEqual(self.s.dispatch_json(name), [(200, {"status": "executed"})])
        self.assertEqual([c["idempotency_key"] for c in self.s.va.calls_for_booking(booking)], [key])
        self.assert_invariants(booking, name, key)

    def test_b_sigkill_between_in_progress_and_the_call__redelivery_after_lease_calls_once_same_key(self):
        sink = Sink()
        try:
            d = self.start(env={"FOLLOWUPD_VOICE_AGENT_BASE_URL": sink.url})
            self.running.append(d)
            booking, key, name = self.scheduled(d)
            delivery, results = self.deliver_in_background(name)
            self.assertTrue(sink.wait_for_requests(1, WAIT_S), "start-call never sent")
            self.assertEqual(self.s.row(self.schema, booking)["task_status"], "in_progress")
            self.sigkill(d)
            delivery.join(timeout=30)
            self.assertEqual(results, [(None, None)])           # no answer: Cloud Tasks will retry
            self.assertEqual(sink.requests[0]["headers"].get("idempotency-key"), key)
        finally:
            sink.close()
        self.assertEqual(self.s.voice_requests_for(booking), [])
        row = self.s.row(self.schema, booking)
        self.assertEqual((row["task_status"], row["execution_attempts"]), ("in_progress", "1"))

        d = self.start(port=d.port)
        self.running.append(d)
        # inside the lease the claim holds: whoever holds it may still be calling
        self.assertEqual(self.s.dispatch_json(name), [(409, {"status": "in_progress"})])
        self.assertEqual(self.s.voice_requests_for(booking), [])
        self.expire_lease(booking)
        self.assertEqual(self.s.dispatch_json(name), [(200, {"status": "executed"})])
        calls = self.s.va.calls_for_booking(booking)
        self.assertEqual([(c["idempotency_key"], c["duplicate"]) for c in calls], [(key, False)])
        row = self.s.row(self.schema, booking)
        self.assertEqual((row["task_status"], row["execution_attempts"]), ("executed", "2"))
        self.assert_invariants(booking, name, key)

    def test_c_sigkill_after_the_call_before_mark_executed__recall_same_key_one_unique_call(self):
        d = self.start()
        self.running.append(d)
        booking, key, name = self.scheduled(d)
        self.s.va.delay_next(1, 60.0, when="after")              # the call starts; its reply is held back
        delivery, results = self.deliver_in_background(name)
        self.assertTrue(self.s.va.wait_until(lambda: self.s.va.calls_for_booking(booking), WAIT_S))
        self.assertEqual(self.s.row(self.schema, booking)["task_status"], "in_progress")
        self.sigkill(d)
        delivery.join(timeout=30)
        self.assertEqual(results, [(None, None)])
        row = self.s.row(self.schema, booking)
        self.assertEqual((row["task_status"], row["executed_at"]), ("in_progress", None))

        d = self.start(port=d.port)
        self.running.append(d)
        self.assertEqual(self.s.dispatch_json(name), [(409, {"status": "in_progress"})])
        self.expire_lease(booking)
        self.assertEqual(self.s.dispatch_json(name), [(200, {"status": "executed"})])
        calls = self.s.va.calls_for_booking(booking)
        self.assertEqual([(c["idempotency_key"], c["duplicate"]) for c in calls], [(key, False), (key, True)])
        self.assertEqual(len({c["call_id"] for c in calls}), 1, "the agent started one call")
        row = self.s.row(self.schema, booking)
        self.assertEqual((row["task_status"], row["execution_attempts"]), ("executed", "2"))
        self.assertIsNotNone(row["executed_at"])
        # a late duplicate of the task after all this: no further call
        self.assertEqual(self.s.dispatch_json(name, allow_done=True), [(200, {"status": "already_executed"})])
        self.assertEqual(len(self.s.va.calls_for_booking(booking)), 2)
        self.assert_invariants(booking, name, key)


# -- the listener's backend terminated during a burst --------------------------------------------------------------
class RoleStack(Stack):
    """A Stack whose daemons connect as `role` (so the test can refuse that role's new connections)."""

    def __init__(self, role, password, **kw):
        super().__init__(**kw)
        self.role, self.password = role, password

    def config(self, port):
        text = super().config(port)
        start = text.index("conninfo = ") + len("conninfo = ")
        end = text.index("\n", start)
        parts = {"host": os.environ.get("PGHOST", "localhost"), "port": os.environ.get("PGPORT", "5432"),
                 "user": self.role, "password": self.password, "dbname": self.db.name}
        return text[:start] + " ".join(f"{k}='{v}'" for k, v in parts.items()) + text[end:]


def admin_sql(sql):
    env = dict(os.environ)
    env.pop("PGOPTIONS", None)
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], env=env, check=True,
                   capture_output=True, text=True, timeout=60)


class ListenerTerminatedTest(CrashCase):
    schema = "crm_listener"
    PART = 200

    @classmethod
    def setUpClass(cls):
        cls.role = "followupd_crash_" + uuid.uuid4().hex[:10]
        password = uuid.uuid4().hex
        admin_sql(f"CREATE ROLE {quote_ident(cls.role)} LOGIN SUPERUSER PASSWORD {quote_literal(password)}")
        try:
            cls.s = RoleStack(cls.role, password, schemas=(cls.schema,), start_daemon=False,
                              log_level="info").__enter__()
        except BaseException:
            admin_sql(f"DROP ROLE IF EXISTS {quote_ident(cls.role)}")
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.s.__exit__(None, None, None)
        finally:
            admin_sql(f"DROP ROLE IF EXISTS {quote_ident(cls.role)}")

    def inserts(self, tenant, base, n):
        return "".join(f"INSERT INTO {self.table()} (id, tenant_id, lead_id, booking_type, scheduled_at) VALUES "
                       f"('{new_id()}', '{tenant}', '{new_id()}', 'follow_up', to_timestamp({base + i}));\n"
                       for i in range(n))

    def test_listener_terminated_during_a_burst__every_booking_scheduled_once(self):
        d = self.start()
        try:
            tenant, base = new_id(), int(time.time()) + HOUR
            wait_for(lambda: self.s.db.query(LISTENER_PIDS_SQL), WAIT_S, "the listener's session joined")
            mark = d.mark()
            creates_before = self.s.ct.created_count
            role = quote_ident(self.role)
            self.s.db.psql(
                self.inserts(tenant, base, self.PART) +
                f"ALTER ROLE {role} NOLOGIN;\n"
                # the listener's backend, and wait until it is gone; exactly one
                "DO $$ DECLARE n int; BEGIN\n"
                "  WITH listener AS MATERIALIZED (SELECT pid FROM pg_stat_activity\n"
                f"    WHERE datname = current_database() AND usename = {quote_literal(self.role)}\n"
                f"    AND pid IN ({LISTENER_PIDS_SQL}))\n"
                "  SELECT count(*) INTO n FROM listener WHERE pg_terminate_backend(pid, 10000);\n"
                "  IF n <> 1 THEN RAISE EXCEPTION 'terminated % listener backends', n; END IF;\n"
                "END $$;\n" +
                self.inserts(tenant, base + self.PART, self.PART) +     # committed with nobody listening
                f"ALTER ROLE {role} LOGIN;\n" +
                self.inserts(tenant, base + 2 * self.PART, self.PART))
            d.wait_for_log(msg_contains("notification listener lost"), timeout=WAIT_S, since=mark)
            back = d.wait_for_log(msg_contains("listening for booking notifications"), timeout=30, since=mark)

            total = 3 * self.PART
            self.assertTrue(self.s.ct.wait_for_creates(creates_before + total, 60),
                            f"{self.s.ct.created_count - creates_before} of {total} tasks created")
            count_sql = (f"SELECT count(*) FILTER (WHERE task_status = 'scheduled'), count(*) FROM {self.table()} "
                         f"WHERE tenant_id = '{tenant}'")
            wait_for(lambda: self.s.db.query(count_sql)[0] == (str(total), str(total)), 30,
                     "every booking scheduled", interval=0.2)
            rows = self.s.db.query(
                f"SELECT id, task_name, idempotency_key, to_char(scheduled_at AT TIME ZONE 'UTC', "
                f"'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM {self.table()} WHERE tenant_id = '{tenant}'")
            by_name = self.s.ct.create_calls_by_name
            for booking, name, key, at_iso in rows:
                self.assertEqual(key, f"followup:{tenant}:{booking}:{at_iso}")
                self.assertEqual(name, self.s.task_name_for(key))
                self.assertEqual(by_name[name]["created"], 1, booking)
            self.assertEqual(self.s.ct.created_count - creates_before, total)
            # the rows committed while nobody listened came through the catch-up after the reconnect
            index = d.logs.index(back)
            found = [int(r["msg"].split()[2]) for r in d.find_logs(msg_contains("catch-up found"), since=index)]
            self.assertGreaterEqual(sum(found), self.PART, found)
        finally:
            self.stop_clean(d)


# -- Cloud Tasks unavailable for longer than the scheduler's retry budget ------------------------------------------
class CloudTasksOutageTest(CrashCase):
    schema = "crm_outage"
    N = 20
    SWEEP_S = 2
    RETRIES = 5                     # followup_scheduler: 1 + 5 attempts per pass, then left to the sweep
    MIN_PASS_S = 7.75               # its backoff (500 ms base, doubling, equal jitter) sums to at least this

    @classmethod
    def setUpClass(cls):
        cls.s = Stack(schemas=(cls.schema,), start_daemon=False, log_level="info").__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.s.__exit__(None, None, None)

    def test_cloud_tasks_503_for_a_while__pending_bounded_retries_then_all_scheduled(self):
        # [followup] sweep_interval_s through its environment override (the stack's file already sets it)
        d = self.start(env={"FOLLOWUPD_FOLLOWUP_SWEEP_INTERVAL_S": str(self.SWEEP_S)})
        try:
            tenant, at = new_id(), int(time.time()) + HOUR
            self.s.ct.set_unavailable(True)
            outage_start = time.monotonic()
            bookings = [self.insert(tenant, at + i) for i in range(self.N)]
            names = {b: self.s.task_name_for(self.s.idempotency_key_for(tenant, b, at + i))
                     for i, b in enumerate(bookings)}
            # every booking's pass runs out of retries: left pending for the sweep
            for b in bookings:
                d.wait_for_log(about(b, "booking stays pending for the sweep"), timeout=40)
            self.assertTrue(all(self.s.row(self.schema, b)["task_status"] == "pending" for b in bookings))
            self.assertEqual([self.s.creates_of(n)["created"] for n in names.values()], [0] * self.N)
            self.s.ct.set_unavailable(False)
            outage_s = time.monotonic() - outage_start
            # no tight loop: per booking at most one pass of 1 + RETRIES requests per MIN_PASS_S (+1: a retry
            # that already went through since the recovery)
            bound = (1 + self.RETRIES) * (int(outage_s / self.MIN_PASS_S) + 1) + 1
            calls = {b: self.s.creates_of(n)["calls"] for b, n in names.items()}
            self.assertTrue(all(1 + self.RETRIES <= c <= bound for c in calls.values()), (calls, bound, outage_s))

            for b in bookings:
                row = self.wait_row(b, lambda r: r["task_status"] == "scheduled", timeout=30)
                self.assertEqual(row["task_name"], names[b])
                self.assertEqual(self.s.creates_of(names[b])["created"], 1)
                self.assertEqual(self.s.live_tasks_for(b), [names[b]])
            self.assertGreaterEqual(len(d.find_logs(msg_contains("catch-up found"))), 1)
        finally:
            self.s.ct.set_unavailable(False)
            self.stop_clean(d)


if __name__ == "__main__":
    unittest.main()
