"""Multi-tenant fairness and the late-call policy, end to end: real daemons, a real PostgreSQL, strict fakes.

- Concurrency caps ([voice_agent] max_concurrent, max_concurrent_per_tenant) hold across two replicas: the fake
  voice agent holds every call (hold/release, no timing), so the slots stay taken while the deliveries race; a
  delivery over a cap makes no call and is answered 429 {"status":"deferred"} with Retry-After, the row untouched.
- A voice-agent 429/503 with Retry-After is honoured: the 503 answer carries it, and a delivery before it is
  deferred without a call.
- Late calls (followup.max_lateness_s): a delivery reached later than scheduled_at + max_lateness_s makes no call,
  answers 200 {"status":"expired"} and leaves the row failed "expired: ..."; the scheduler gives no task to a
  booking already past its bound; the local dispatcher expires a due local task reached late. Lateness never waits
  for the wall clock: the daemon's clock runs behind the database's (FOLLOWUPD_TEST_CLOCK_OFFSET_MS, the fake Cloud
  Tasks' clock moved alike), or a stopped daemon's booking is moved into the past together with its task.
- Fair order in the local dispatcher: tenant A has 2,000 bookings due, tenant B one; B is called in the first wave.

Every wait is a condition with a deadline (no sleeps as synchronization). Needs $FOLLOWUPD_BUILD/followupd, PG*.
"""
import json
import os
import sys
import threading
import time
import unittest
import uuid
from email.utils import formatdate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from daemon import msg_contains  # noqa: E402
from stack import Stack, quote_ident, wait_for  # noqa: E402

SCHEMA = "fair_bookings"
HOLD_TIMEOUT_MS = 60000      # the daemons' voice-agent timeout while the fake holds calls
HOUR = 3600


def metric(s, d, name, **labels):
    """One sample of a daemon's /metrics (0 when absent)."""
    status, _, text = s.raw_request(d, "GET", "/metrics")
    assert status == 200, status
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "") + " "
    return next((float(ln[len(want):]) for ln in text.decode().splitlines() if ln.startswith(want)), 0.0)


class Delivery(threading.Thread):
    """One authenticated callback POSTed in a thread (it may be held by the voice agent): .answer is
    (status, Retry-After or None, body) once it returned."""

    def __init__(self, s, d, booking_id, task_body, start_gate=None):
        super().__init__(daemon=True)
        self.s, self.d, self.booking_id, self.task_body, self.gate = s, d, booking_id, task_body, start_gate
        self.answer = None

    def run(self):
        if self.gate is not None:
            self.gate.wait(10)
        status, headers, body = self.s.raw_request(
            self.d, "POST", Stack.EXECUTE_PATH.format(self.booking_id),
            [("Content-Type", "application/json"), ("Authorization", "Bearer " + self.s.oidc_token())],
            json.dumps(self.task_body), timeout=90)
        self.answer = (status, dict((k.lower(), v) for k, v in headers).get("retry-after"), body)


def deliver_together(s, replicas, bookings):
    """Start one delivery per (booking_id, task_body), alternating replicas, released together."""
    gate = threading.Barrier(len(bookings))
    threads = [Delivery(s, replicas[i % len(replicas)], bid, body, gate) for i, (bid, body) in enumerate(bookings)]
    for t in threads:
        t.start()
    return threads


def answered(threads):
    return [t for t in threads if t.answer is not None]


class CapsAcrossReplicasTest(unittest.TestCase):
    """Two replicas, [voice_agent] max_concurrent_per_tenant = 2, max_concurrent = 3; the voice agent holds calls."""

    TENANT_CAP, GLOBAL_CAP = 2, 3

    @classmethod
    def setUpClass(cls):
        caps = f"[voice_agent]\nmax_concurrent = {cls.GLOBAL_CAP}\nmax_concurrent_per_tenant = {cls.TENANT_CAP}\n"
        cls.s = Stack(schemas=(SCHEMA,), start_daemon=False, extra_config=caps).__enter__()
        try:
            env = {"FOLLOWUPD_VOICE_AGENT_TIMEOUT_MS": str(HOLD_TIMEOUT_MS)}
            cls.replicas = [cls.s.start(env=env) for _ in range(2)]
        except BaseException:
            cls.s.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.s.va.release()
        try:
            codes = cls.s.stop_daemons()
            if codes != [0, 0]:
                raise AssertionError(f"exit codes {codes}")
        finally:
            cls.s.__exit__(None, None, None)

    def setUp(self):
        self.addCleanup(self.s.va.release)
        self.assertTrue(self.s.va.wait_until(lambda: self.s.va.in_flight == 0, 10), "calls still held")

    def bookings(self, tenant, n):
        out = []
        for _ in range(n):
            bid, _, _, body = self.s.scheduled_booking(SCHEMA, tenant=tenant)
            out.append((bid, body))
        return out

    def deferrals(self, reason):
        return sum(metric(self.s, d, "followupd_deferrals_total", reason=reason) for d in self.replicas)

    def assertDeferred(self, threads, n):
        got = [t.answer for t in answered(threads)]
        self.assertEqual(len(got), n, got)
        for status, retry_after, body in got:
            self.assertEqual((status, body, retry_after), (429, {"status": "deferred"}, "2"))

    def called(self, bid):
        return len(self.s.va.calls_for_booking(bid))

    def test_caps__racing_deliveries_on_two_replicas__never_more_calls_in_flight_than_the_caps(self):
        va = self.s.va
        tenant_a, tenant_b, tenant_c = (str(uuid.uuid4()) for _ in range(3))
        a, b, c = self.bookings(tenant_a, 12), self.bookings(tenant_b, 3), self.bookings(tenant_c, 1)
        tenant_before, global_before = self.deferrals("tenant_cap"), self.deferrals("global_cap")
        va.hold()

        # 12 deliveries of tenant A at once, half on each replica: two take the tenant's two slots.
        first = deliver_together(self.s, self.replicas, a)
        wait_for(lambda: va.in_flight == 2 and len(answered(first)) == 10, 30, "two held calls, ten deferrals")
        self.assertDeferred(first, 10)
        # Tenant B: one slot is left of the three of every tenant.
        second = deliver_together(self.s, self.replicas, b)
        wait_for(lambda: va.in_flight == 3 and len(answered(second)) == 2, 30, "a third held call, two deferrals")
        self.assertDeferred(second, 2)
        # Tenant C: nothing is left.
        third = deliver_together(self.s, self.replicas, c)
        wait_for(lambda: len(answered(third)) == 1, 30, "C deferred")
        self.assertDeferred(third, 1)

        self.assertEqual(va.max_in_flight_by_tenant, {tenant_a: 2, tenant_b: 1})
        self.assertEqual(va.max_in_flight, 3)
        self.assertEqual(self.deferrals("tenant_cap") - tenant_before, 10)
        self.assertEqual(self.deferrals("global_cap") - global_before, 3)
        for t in answered(first + second + third):   # deferred: no call, the row untouched
            row = self.s.row(SCHEMA, t.booking_id)
            self.assertEqual((row["task_status"], row["execution_attempts"], self.called(t.booking_id)),
                             ("scheduled", "0", 0))

        va.release()
        for t in first + second + third:
            t.join(30)
        held = [t for t in first + second + third if t.answer[0] == 200]
        self.assertEqual(sorted(t.answer[2]["status"] for t in held), ["executed"] * 3)

        # Redelivered (as Cloud Tasks retries after Retry-After) until every booking ran: each called once.
        pending = {bid: body for bid, body in a + b + c if self.s.row(SCHEMA, bid)["task_status"] != "executed"}
        for _ in range(20):
            if not pending:
                break
            for t in deliver_together(self.s, self.replicas, list(pending.items())):
                t.join(30)
                if t.answer[0] == 200:
                    pending.pop(t.booking_id)
        self.assertEqual(pending, {})
        for bid, _ in a + b + c:
            self.assertEqual(self.called(bid), 1, bid)
        self.assertLessEqual(va.max_in_flight, 3)

    def test_tenant_cap__twenty_claims_racing_for_two_slots__exactly_two_calls(self):
        va = self.s.va
        tenant = str(uuid.uuid4())
        race = self.bookings(tenant, 20)
        va.hold()
        threads = deliver_together(self.s, self.replicas, race)
        wait_for(lambda: len(answered(threads)) == 18, 30, "eighteen deferrals")
        self.assertEqual(va.in_flight, 2)
        self.assertDeferred(threads, 18)
        self.assertEqual(va.max_in_flight_by_tenant[tenant], 2)
        self.assertEqual(sum(self.called(bid) for bid, _ in race), 2)
        va.release()
        for t in threads:
            t.join(30)
        self.assertEqual(sum(1 for t in threads if t.answer[0] == 200), 2)


class RetryAfterTest(unittest.TestCase):
    """The voice agent's 429/503 Retry-After: carried by the 503 answer and honoured by the next claim."""

    @classmethod
    def setUpClass(cls):
        cls.s = Stack(schemas=(SCHEMA,)).__enter__()
        cls.d = cls.s.daemon

    @classmethod
    def tearDownClass(cls):
        try:
            cls.assert_clean_stop(cls.s)
        finally:
            cls.s.__exit__(None, None, None)

    @staticmethod
    def assert_clean_stop(s):
        codes = s.stop_daemons()
        if codes != [0] * len(codes):
            raise AssertionError(f"exit codes {codes}")

    def deliver(self, bid, body):
        t = Delivery(self.s, self.d, bid, body)
        t.run()
        return t.answer

    def next_attempt_in_s(self, bid):
        return float(self.s.db.query(f"SELECT extract(epoch FROM next_attempt_at - now()) FROM "
                                     f"{quote_ident(SCHEMA)}.lead_bookings WHERE id = '{bid}'")[0][0])

    def test_voice_agent_429_retry_after_seconds__503_with_it__redelivery_deferred_until_then(self):
        bid, _, _, body = self.s.scheduled_booking(SCHEMA)
        self.s.va.fail_next(1, status=429, retry_after=30)

        status, retry_after, answer = self.deliver(bid, body)
        self.assertEqual((status, answer, retry_after), (503, {"status": "failed", "retryable": True}, "30"))
        self.assertTrue(25 < self.next_attempt_in_s(bid) <= 30)

        status, retry_after, answer = self.deliver(bid, body)
        self.assertEqual((status, answer), (429, {"status": "deferred"}))
        self.assertTrue(25 <= int(retry_after) <= 30, retry_after)
        self.assertEqual(len(self.s.voice_requests_for(bid)), 1, "no call before the voice agent's Retry-After")
        self.assertEqual(self.s.row(SCHEMA, bid)["execution_attempts"], "1")

        # Its time has come (moved, not waited for): the next delivery calls.
        self.s.db.psql(f"UPDATE {quote_ident(SCHEMA)}.lead_bookings SET next_attempt_at = now() WHERE id = '{bid}'")
        self.assertEqual(self.deliver(bid, body)[::2], (200, {"status": "executed"}))
        self.assertEqual(len(self.s.va.calls_for_booking(bid)), 1)

    def test_voice_agent_503_retry_after_http_date__answer_carries_the_seconds_left(self):
        bid, _, _, body = self.s.scheduled_booking(SCHEMA)
        self.s.va.fail_next(1, status=503, retry_after=formatdate(time.time() + 120, usegmt=True))
        status, retry_after, answer = self.deliver(bid, body)
        self.assertEqual((status, answer), (503, {"status": "failed", "retryable": True}))
        self.assertTrue(110 <= int(retry_after) <= 121, retry_after)
        self.assertTrue(110 < self.next_attempt_in_s(bid) <= 121)


class LateDeliveryTest(unittest.TestCase):
    """followup.max_lateness_s at its default (3600 s). The daemon's clock (and the fake Cloud Tasks', which signs
    the tokens) runs two hours behind the database's: a booking the daemon schedules as due in 30 minutes is, by
    the database clock the claim reads, 90 minutes late when its task is delivered."""

    OFFSET_S = -2 * HOUR

    @classmethod
    def setUpClass(cls):
        cls.s = Stack(schemas=(SCHEMA,), start_daemon=False).__enter__()
        try:
            cls.s.replace_cloud_tasks(now=lambda: time.time() + cls.OFFSET_S)
            cls.d = cls.s.daemon = cls.s.start(env={"FOLLOWUPD_TEST_CLOCK_OFFSET_MS": str(cls.OFFSET_S * 1000)})
            cls.d.wait_for_log(msg_contains("listening for booking notifications"), timeout=15)
        except BaseException:
            cls.s.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            RetryAfterTest.assert_clean_stop(cls.s)
        finally:
            cls.s.__exit__(None, None, None)

    def dispatch(self, name):
        return self.s.dispatch_json(name, allow_done=True)

    def test_delivery_90_minutes_after_scheduled_at__200_expired_no_call_row_failed_expired(self):
        expired_before = metric(self.s, self.d, "followupd_executions_total", status="expired")
        bid, _, name, _ = self.s.scheduled_booking(SCHEMA, at=time.time() - 90 * 60)
        mark = self.d.mark()

        self.assertEqual(self.dispatch(name), [(200, {"status": "expired"})])

        self.assertEqual(self.s.voice_requests_for(bid), [], "a late booking is not called")
        row = self.s.row(SCHEMA, bid)
        self.assertEqual((row["task_status"], row["execution_attempts"]), ("failed", "0"))
        self.assertRegex(row["last_execution_error"],
                         r"^expired: reached 5[34]\d\d s after scheduled_at, 1[78]\d\d s past "
                         r"followup\.max_lateness_s = 3600$")
        self.assertEqual(self.s.columns(SCHEMA, bid, "next_attempt_at"), {"next_attempt_at": None})
        self.d.wait_for_log(lambda r: r.get("booking_id") == bid and r.get("level") == "warn"
                            and "max_lateness_s" in r.get("msg", ""), since=mark)
        self.assertEqual(metric(self.s, self.d, "followupd_executions_total", status="expired"), expired_before + 1)
        # A duplicate delivery: still expired, still no call (Cloud Tasks stops either way).
        self.assertEqual(self.dispatch(name), [(200, {"status": "expired"})])
        self.assertEqual(self.s.voice_requests_for(bid), [])

    def test_delivery_30_minutes_after_scheduled_at__inside_the_bound__executed(self):
        bid, _, name, _ = self.s.scheduled_booking(SCHEMA, at=time.time() - 30 * 60)
        self.assertEqual(self.dispatch(name), [(200, {"status": "executed"})])
        self.assertEqual(len(self.s.va.calls_for_booking(bid)), 1)


class LateSchedulingTest(unittest.TestCase):
    """[followup] catchup_window_s = 3 h, max_lateness_s = 1 h: a booking found 2 h after its time (inside the
    catch-up window, past the lateness bound) gets no task; the row ends failed "expired"."""

    def test_booking_two_hours_late__no_task__row_failed_expired(self):
        config = "[followup]\ncatchup_window_s = 10800\nmax_lateness_s = 3600\n"
        with Stack(schemas=(SCHEMA,), extra_config=config) as s:
            late = s.insert_booking(SCHEMA, at=time.time() - 2 * HOUR)
            on_time = s.insert_booking(SCHEMA, at=time.time() + HOUR)
            s.wait_row(SCHEMA, on_time, lambda r: r["task_status"] == "scheduled")
            row = s.wait_row(SCHEMA, late, lambda r: r["task_status"] == "failed")
            self.assertRegex(row["last_execution_error"],
                             r"^expired: 7\d\d\d s after scheduled_at, past followup\.max_lateness_s = 3600; no task$")
            self.assertEqual((row["task_name"], row["idempotency_key"]), (None, None))
            self.assertIsNone(s.task_for(late), "no task for a booking already past its lateness bound")
            self.assertEqual(metric(s, s.daemon, "followupd_executions_total", status="expired"), 1)
            self.assertEqual(s.stop_daemons(), [0])


class LocalBackendTest(unittest.TestCase):
    def local_stack(self, extra=""):
        s = Stack(schemas=(SCHEMA,), backend="local", extra_config=extra)
        self.addCleanup(s.__exit__, None, None, None)
        s.__enter__()
        self.addCleanup(self.assert_clean_stop, s)
        return s

    def assert_clean_stop(self, s):
        codes = s.stop_daemons()
        self.assertEqual(codes, [0] * len(codes))

    def shift(self, s, bid, seconds):
        """Move a booking and its local task by `seconds` together (key and task unchanged): as if that much time
        had passed while no daemon ran."""
        s.db.psql(f"UPDATE {quote_ident(SCHEMA)}.lead_bookings SET scheduled_at = scheduled_at + "
                  f"make_interval(secs => {seconds}), task_scheduled_at = task_scheduled_at + "
                  f"make_interval(secs => {seconds}) WHERE id = '{bid}'")

    def test_local_task_reached_two_hours_late__expired_without_a_call__one_due_now_called(self):
        s = self.local_stack()
        late = s.insert_booking(SCHEMA, at=time.time() + HOUR)
        on_time = s.insert_booking(SCHEMA, at=time.time() + HOUR)
        for bid in (late, on_time):
            s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "scheduled")
        self.assertEqual(s.stop_daemons(), [0])
        self.shift(s, late, -3 * HOUR)        # now two hours late
        self.shift(s, on_time, -HOUR - 60)    # a minute late
        s.start()

        self.assertTrue(s.va.wait_for_calls(1, 15), "the booking due a minute ago is called")
        row = s.wait_row(SCHEMA, late, lambda r: r["task_status"] == "failed")
        self.assertRegex(row["last_execution_error"], r"^expired: reached 7[12]\d\d s after scheduled_at")
        self.assertEqual(s.voice_requests_for(late), [])
        s.wait_row(SCHEMA, on_time, lambda r: r["task_status"] == "executed")
        self.assertTrue(s.stays_false(lambda: s.va.call_count > 1, 1.0))

    def test_fair_order__2000_due_for_A_and_1_for_B__B_called_in_the_first_wave__each_once(self):
        cap = 10
        s = self.local_stack(f"[voice_agent]\nmax_concurrent = {cap}\n")
        # The voice agent holds calls: the first wave is exactly the first `cap` claims.
        s.va.hold()
        self.addCleanup(s.va.release)
        at = round(time.time() + 8, 3)
        tenant_a, tenant_b = str(uuid.uuid4()), str(uuid.uuid4())
        a_ids = s.insert_bookings(SCHEMA, 2000, at, tenant=tenant_a)
        b_id = s.insert_bookings(SCHEMA, 1, at, tenant=tenant_b)[0]   # inserted last, due at the same moment
        table = f"{quote_ident(SCHEMA)}.lead_bookings"
        wait_for(lambda: s.db.query(f"SELECT count(*) FROM {table} WHERE task_status = 'scheduled'")[0][0] == "2001",
                 30, "2,001 local tasks")
        self.assertLess(time.time(), at, "the scheduler was too slow: the bookings fell due before all had a task")

        self.assertTrue(s.va.wait_until(lambda: s.va.in_flight == cap, at - time.time() + 15),
                        f"the first wave: {s.va.in_flight} held, {s.va.call_count} calls")
        self.assertTrue(s.stays_false(lambda: s.va.call_count > cap, 0.5), "more calls than the cap")
        first_wave = [c["body"]["bookingId"] for c in s.va.calls]
        self.assertIn(b_id, first_wave, "B waited behind A's backlog")

        s.va.release()
        self.assertTrue(s.va.wait_for_unique(2001, 120), f"{s.va.unique_count} of 2,001 called")
        self.assertEqual(s.va.call_count, 2001, "a booking was called twice")
        self.assertEqual(s.db.query(f"SELECT count(*) FROM {table} WHERE task_status = 'executed'")[0][0], "2001")
        self.assertLessEqual(s.va.max_in_flight, cap)
        self.assertEqual(len(set(a_ids)), 2000)


if __name__ == "__main__":
    unittest.main()
