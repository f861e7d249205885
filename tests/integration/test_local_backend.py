"""queue.backend = local end to end: the real daemon, a real database, the strict fake voice agent.

The local backend keeps the "task" in the booking row itself (task_name local/<64 hex>, task_scheduled_at) and
dispatches due rows through the same execution service as the Cloud Tasks callback. These tests check what a
user sees: when the voice agent is called (never before the booking is due, promptly after), how many times
(once per booking, across restarts and replicas), with which Idempotency-Key, and what the row says afterwards.

Waiting is always on a condition with a deadline. Checks that something does NOT happen ("never called", "no
third attempt") wait on the voice agent's condition variable for a bounded time, or use a control booking due at
the same moment whose call proves the dispatcher has been through that due time.
"""
import os
import re
import statistics
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from daemon import msg_contains  # noqa: E402
from stack import Stack, quote_ident, wait_for  # noqa: E402

SCHEMA = "tenant_a"
LOCAL_TASK_NAME = re.compile(r"^local/[0-9a-f]{64}$")
# Retries: base 1 s (attempt 1 -> +1 s, attempt 2 -> +2 s), up to 5 attempts.
LOCAL_CONFIG = "[followup]\nretry_base_s = 1\nmax_attempts = 5\n"
EARLY_TOLERANCE_S = 0.05   # a call may never come earlier than this before scheduled_at
PROMPT_S = 1.5             # a due booking is called within this (generous: timing is measured in bench/)


def due_in(seconds):
    """Epoch seconds `seconds` from now, rounded to the millisecond the database and the key keep."""
    return round(time.time() + seconds, 3)


class LocalStack(Stack):
    def __init__(self, **kwargs):
        kwargs.setdefault("schemas", (SCHEMA,))
        kwargs.setdefault("extra_config", LOCAL_CONFIG)
        super().__init__(backend="local", **kwargs)


class LocalBackendTest(unittest.TestCase):
    def stack(self, **kwargs):
        s = LocalStack(**kwargs)
        self.addCleanup(s.__exit__, None, None, None)
        s.__enter__()
        self.addCleanup(self.assertStopsCleanly, s)   # runs first: SIGTERM, not a kill
        return s

    def assertStopsCleanly(self, s):
        codes = s.stop_daemons()
        self.assertEqual(codes, [0] * len(codes), "followupd did not stop cleanly")

    @staticmethod
    def recent_logs(s, n=25):
        """The last log lines of each daemon, for failure messages."""
        return "\n".join(f"daemon {i}: " + "\n  ".join(
            f"{r.get('ts')} {r.get('level')} {r.get('msg')} {r.get('booking_id', '')} {r.get('error', '')}"
            for r in d.logs[-n:]) for i, d in enumerate(s.daemons))

    def assertNoCloudTasks(self, s):
        self.assertEqual(s.ct.create_call_count, 0, "the local backend must not talk to Cloud Tasks")

    def assertCalledOnce(self, s, booking_id, key, not_before=None):
        attempts = s.voice_attempts_for(booking_id)
        self.assertEqual([(k, o) for _, k, o in attempts], [(key, "accepted")], attempts)
        if not_before is not None:
            self.assertGreaterEqual(attempts[0][0], not_before - EARLY_TOLERANCE_S,
                                    f"called {not_before - attempts[0][0]:.3f}s before it was due")
        return attempts[0][0]

    # -- due now / due later --------------------------------------------------------------------------------
    def test_due_now__called_promptly__row_goes_scheduled_then_executed_with_local_task_name(self):
        s = self.stack()
        tenant, at = "11111111-1111-4111-8111-111111111111", due_in(0)
        bid = s.insert_booking(SCHEMA, tenant=tenant, at=at)
        self.assertTrue(s.va.wait_for_calls(1, PROMPT_S + 1), "no voice-agent call for a booking due now")
        row = s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "executed")
        key = s.followup_key(tenant, bid, at)
        self.assertRegex(row["task_name"] or "", LOCAL_TASK_NAME)
        self.assertEqual((row["idempotency_key"], row["execution_attempts"], row["last_execution_error"]),
                         (key, "1", None))
        self.assertIsNotNone(row["task_scheduled_at"])
        self.assertIsNotNone(row["executed_at"])
        self.assertCalledOnce(s, bid, key, not_before=at)
        # The journey as the daemon logged it: scheduled (local task), claimed, executed -- in that order.
        s.daemon.wait_for_log(lambda r: r.get("booking_id") == bid and r.get("msg") == "execution finished: executed")
        journey = [r["msg"] for r in s.daemon.find_logs(lambda r: r.get("booking_id") == bid)
                   if r["msg"] in ("follow-up scheduled", "claimed for execution (attempt 1)",
                                   "execution finished: executed")]
        self.assertEqual(journey, ["follow-up scheduled", "claimed for execution (attempt 1)",
                                   "execution finished: executed"])
        # Due when it was recorded: the fast path ran it (request id local-now-...), not a dispatch round.
        self.assertEqual(self.claim_paths(s, bid), ["fast path"])
        self.assertNoCloudTasks(s)

    @staticmethod
    def claim_paths(s, bid):
        """Which dispatcher path claimed the booking, per claim: its request id says (local-now-... / local-...)."""
        return ["fast path" if r.get("request_id", "").startswith("local-now-") else
                "round" if r.get("request_id", "").startswith("local-") else r.get("request_id")
                for r in s.daemon.find_logs(lambda r: r.get("booking_id") == bid
                                            and str(r.get("msg", "")).startswith("claimed for execution"))]

    def test_due_in_two_seconds__not_called_before_due__called_right_after(self):
        s = self.stack()
        tenant, at = "22222222-2222-4222-8222-222222222222", due_in(2)
        bid = s.insert_booking(SCHEMA, tenant=tenant, at=at)
        row = s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "scheduled", timeout=1.5)
        self.assertRegex(row["task_name"] or "", LOCAL_TASK_NAME)
        self.assertEqual(s.va.call_count, 0)
        self.assertTrue(s.va.wait_for_calls(1, at - time.time() + PROMPT_S + 1), "not called after it was due")
        called = self.assertCalledOnce(s, bid, s.followup_key(tenant, bid, at), not_before=at)
        self.assertLess(called - at, PROMPT_S, "called long after it was due")
        s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "executed" and r["execution_attempts"] == "1")
        self.assertEqual(self.claim_paths(s, bid), ["round"], "a task due later waits for the dispatcher's timer")

    # -- restart ----------------------------------------------------------------------------------------------
    def test_restart_with_pending_work__scheduled_due_now_and_due_soon_each_called_exactly_once(self):
        s = self.stack()
        tenant = "33333333-3333-4333-8333-333333333333"
        # A local task created by the first daemon, due while it is stopped.
        at_sched = due_in(1.5)
        sched = s.insert_booking(SCHEMA, tenant=tenant, at=at_sched)
        s.wait_row(SCHEMA, sched, lambda r: r["task_status"] == "scheduled", timeout=1.0)
        self.assertEqual(s.stop_daemons(), [0])
        self.assertEqual(s.va.call_count, 0, "called before it was due")
        # Work the stopped daemon never heard of (its NOTIFYs are lost).
        at_now, at_soon = due_in(0), due_in(1.5)
        now_id = s.insert_booking(SCHEMA, tenant=tenant, at=at_now)
        soon_id = s.insert_booking(SCHEMA, tenant=tenant, at=at_soon)
        wait_for(lambda: time.time() > at_sched, 3.0, "the scheduled booking to fall due while stopped")
        self.assertEqual(s.va.call_count, 0)
        s.start()
        self.assertTrue(s.va.wait_for_unique(3, at_soon - time.time() + PROMPT_S + 2),
                        f"calls after restart: {s.va.unique_keys}\n{self.recent_logs(s)}")
        for bid, at in ((sched, at_sched), (now_id, at_now), (soon_id, at_soon)):
            s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "executed" and r["execution_attempts"] == "1")
            self.assertCalledOnce(s, bid, s.followup_key(tenant, bid, at), not_before=at)
        self.assertTrue(s.stays_false(lambda: s.va.call_count > 3, 1.0), f"extra calls: {s.va.calls}")

    def test_changed_while_stopped__moved_to_now_called_once_with_new_key__cancelled_never_called(self):
        s = self.stack()
        tenant = "88888888-8888-4888-8888-888888888888"
        old_moved, at_cancelled = due_in(60), due_in(1.0)
        moved = s.insert_booking(SCHEMA, tenant=tenant, at=old_moved)
        cancelled = s.insert_booking(SCHEMA, tenant=tenant, at=at_cancelled)
        for bid in (moved, cancelled):
            s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "scheduled", timeout=1.0)
        self.assertEqual(s.stop_daemons(), [0])
        new_moved = due_in(0)
        s.db.psql(f"UPDATE {quote_ident(SCHEMA)}.lead_bookings SET scheduled_at = to_timestamp({new_moved:.3f}) "
                  f"WHERE id = '{moved}';\n"
                  f"UPDATE {quote_ident(SCHEMA)}.lead_bookings SET status = 'cancelled' WHERE id = '{cancelled}'")
        wait_for(lambda: time.time() > at_cancelled, 2.0, "the cancelled booking's old due time to pass")
        s.start()
        key = s.followup_key(tenant, moved, new_moved)
        self.assertTrue(s.va.wait_for_calls(1, PROMPT_S + 2), "the booking moved to now was not called")
        s.wait_row(SCHEMA, moved, lambda r: r["task_status"] == "executed")
        self.assertCalledOnce(s, moved, key)
        self.assertEqual(s.row(SCHEMA, moved)["idempotency_key"], key)
        s.wait_row(SCHEMA, cancelled, lambda r: r["task_status"] == "cancelled")
        self.assertEqual(s.voice_attempts_for(cancelled), [])

    def run_with_abandoned_lease(self, tenant, key, status="scheduled", task_scheduled_at="scheduled_at"):
        """A replica died during the call: the row is left in_progress with a lease expired an hour ago (and
        whatever the booking became meanwhile). Starts the daemon, proves with a control booking that the
        dispatcher went past that due time, and returns the booking's voice attempts under the old key and
        how often the dispatcher armed its timer meanwhile."""
        s = self.stack(start_daemon=False, log_level="debug")
        dead = s.insert_booking(SCHEMA, tenant=tenant, at=due_in(-60), status=status)
        s.db.psql(f"UPDATE {quote_ident(SCHEMA)}.lead_bookings SET task_status = 'in_progress', "
                  f"task_name = 'local/' || repeat('d', 64), task_scheduled_at = {task_scheduled_at}, "
                  f"idempotency_key = '{key}', execution_attempts = 1, "
                  f"execution_started_at = now() - interval '1 hour' WHERE id = '{dead}'")
        d = s.start()
        control_at = due_in(1.0)
        control = s.insert_booking(SCHEMA, tenant=tenant, at=control_at)
        self.assertTrue(s.va.wait_until(lambda: s.va.calls_for_booking(control), PROMPT_S + 2))
        self.assertCalledOnce(s, control, s.followup_key(tenant, control, control_at), control_at)
        old_key_calls = [k for _, k, _ in s.voice_attempts_for(dead) if k == key]
        return old_key_calls, len(d.find_logs(msg_contains("local dispatcher armed")))

    def test_crashed_mid_call_then_cancelled__never_re_called__dispatcher_does_not_busy_loop(self):
        # The booking was then cancelled: the expired lease must not be re-run, and the dispatcher must not keep
        # re-arming its timer for a row it will never take.
        calls, armed = self.run_with_abandoned_lease("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", "followup:crashed",
                                                     status="cancelled")
        self.assertEqual(calls, [])
        self.assertLess(armed, 30, f"the dispatcher re-armed its timer {armed} times in ~1 s (busy loop)")

    def test_crashed_mid_call_then_rescheduled__old_key_never_re_called__dispatcher_does_not_busy_loop(self):
        # The booking was then moved while nobody listened: the expired lease belongs to the old time and key.
        # The old key must not be re-called, and the dispatcher must not keep re-arming its timer for a row its
        # claim turns down.
        calls, armed = self.run_with_abandoned_lease("abababab-abab-4bab-8bab-abababababab", "followup:crashed-moved",
                                                     task_scheduled_at="scheduled_at - interval '1 hour'")
        self.assertEqual(calls, [], "the old key was re-called")
        self.assertLess(armed, 30, f"the dispatcher re-armed its timer {armed} times in ~1 s (busy loop)")

    def test_restart_with_many_future_tasks__task_sweep_finds_only_the_moved_one_and_does_not_spin(self):
        # Bookings written with SQL now() carry microseconds; the task keeps milliseconds. A full sweep batch
        # (500) of such unchanged tasks must not count as "changed while stopped" (else the sweep re-reads the
        # same batch forever and never reaches the rows behind it).
        s = self.stack()
        n = 501
        s.db.psql(f"INSERT INTO {quote_ident(SCHEMA)}.lead_bookings (tenant_id, lead_id, booking_type, "
                  "scheduled_at) SELECT gen_random_uuid(), gen_random_uuid(), 'follow_up', "
                  "now() + interval '1 hour' + i * interval '1.234567 seconds' FROM generate_series(1, "
                  f"{n}) AS i")
        wait_for(lambda: s.db.query(f"SELECT count(*) FROM {quote_ident(SCHEMA)}.lead_bookings "
                                    "WHERE task_status = 'scheduled'")[0][0] == str(n), 30.0, "all scheduled")
        self.assertEqual(s.stop_daemons(), [0])
        tenant, moved_to = "99999999-9999-4999-8999-999999999999", due_in(1800)
        moved = s.insert_booking(SCHEMA, tenant=tenant, at=due_in(3600))
        s.db.psql(f"UPDATE {quote_ident(SCHEMA)}.lead_bookings SET task_status = 'scheduled', "
                  f"task_name = 'local/' || repeat('a', 64), idempotency_key = 'followup:old', "
                  f"task_scheduled_at = scheduled_at, scheduled_at = to_timestamp({moved_to:.3f}) "
                  f"WHERE id = '{moved}'")   # a local task whose booking moved while nobody listened
        d = s.start()
        s.wait_row(SCHEMA, moved, lambda r: r["idempotency_key"] == s.followup_key(tenant, moved, moved_to), 10.0)
        first = d.wait_for_log(msg_contains("task sweep found"), 5.0)
        self.assertEqual(first["msg"], "task sweep found 1 booking(s)")
        since = d.mark()
        with self.assertRaises(AssertionError, msg="the task sweep keeps re-reading unchanged tasks"):
            d.wait_for_log(msg_contains("task sweep found"), 1.5, since=since)
        self.assertEqual(s.va.call_count, 0)

    # -- cancel / reschedule ----------------------------------------------------------------------------------
    def test_cancelled_before_due__never_called__row_cancelled(self):
        s = self.stack()
        tenant, at = "44444444-4444-4444-8444-444444444444", due_in(1.5)
        cancelled = s.insert_booking(SCHEMA, tenant=tenant, at=at)
        control = s.insert_booking(SCHEMA, tenant=tenant, at=at)   # due at the same moment, not cancelled
        for bid in (cancelled, control):
            s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "scheduled", timeout=1.0)
        s.db.psql(f"UPDATE {quote_ident(SCHEMA)}.lead_bookings SET status = 'cancelled' WHERE id = '{cancelled}'")
        s.wait_row(SCHEMA, cancelled, lambda r: r["task_status"] == "cancelled", timeout=2.0)
        # The control booking's call shows the dispatcher went through this due time.
        self.assertTrue(s.va.wait_until(lambda: s.va.calls_for_booking(control), at - time.time() + PROMPT_S + 1))
        s.wait_row(SCHEMA, control, lambda r: r["task_status"] == "executed")
        self.assertEqual(s.voice_attempts_for(cancelled), [])
        row = s.row(SCHEMA, cancelled)
        self.assertEqual((row["status"], row["task_status"], row["execution_attempts"], row["executed_at"]),
                         ("cancelled", "cancelled", "0", None))

    def test_rescheduled_earlier_and_later__each_called_once_at_the_new_time_with_the_new_key(self):
        s = self.stack()
        tenant = "55555555-5555-4555-8555-555555555555"
        old_earlier, old_later = due_in(60), due_in(1.5)
        earlier = s.insert_booking(SCHEMA, tenant=tenant, at=old_earlier)
        later = s.insert_booking(SCHEMA, tenant=tenant, at=old_later)
        old_task = {}
        for bid in (earlier, later):
            old_task[bid] = s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "scheduled", timeout=1.0)["task_name"]
        new_earlier, new_later = due_in(1.0), due_in(3.0)
        for bid, at in ((earlier, new_earlier), (later, new_later)):
            s.db.psql(f"UPDATE {quote_ident(SCHEMA)}.lead_bookings SET scheduled_at = to_timestamp({at:.3f}) "
                      f"WHERE id = '{bid}'")
        for bid, at in ((earlier, new_earlier), (later, new_later)):
            row = s.wait_row(SCHEMA, bid, lambda r: r["idempotency_key"] == s.followup_key(tenant, bid, at),
                             timeout=1.0)
            self.assertEqual(row["task_status"], "scheduled")
            self.assertRegex(row["task_name"] or "", LOCAL_TASK_NAME)
            self.assertNotEqual(row["task_name"], old_task[bid], "a reschedule makes a new task")
        self.assertTrue(s.va.wait_for_unique(2, new_later - time.time() + PROMPT_S + 1), s.va.unique_keys)
        t_earlier = self.assertCalledOnce(s, earlier, s.followup_key(tenant, earlier, new_earlier), new_earlier)
        t_later = self.assertCalledOnce(s, later, s.followup_key(tenant, later, new_later), new_later)
        self.assertLess(t_earlier - new_earlier, PROMPT_S, "moved earlier: not called at its new time")
        self.assertLess(t_later - new_later, PROMPT_S)
        for bid in (earlier, later):
            s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "executed" and r["execution_attempts"] == "1")

    # -- voice agent failures ----------------------------------------------------------------------------------
    def test_voice_agent_fails_twice__retried_with_backoff_and_same_key__executed_after_three_calls(self):
        s = self.stack()
        tenant, at = "66666666-6666-4666-8666-666666666666", due_in(0)
        s.va.fail_next(2, 500)
        bid = s.insert_booking(SCHEMA, tenant=tenant, at=at)
        row = s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "executed", timeout=1 + 2 + 2 * PROMPT_S + 2)
        self.assertEqual((row["execution_attempts"], row["last_execution_error"]), ("3", None))
        attempts = s.voice_attempts_for(bid)
        key = s.followup_key(tenant, bid, at)
        self.assertEqual([(k, o) for _, k, o in attempts], [(key, 500), (key, 500), (key, "accepted")], attempts)
        times = [t for t, _, _ in attempts]
        # Exponential backoff: retry_base_s = 1 -> 1 s after the first failure, 2 s after the second.
        self.assertGreaterEqual(times[1] - times[0], 1.0 - EARLY_TOLERANCE_S)
        self.assertGreaterEqual(times[2] - times[1], 2.0 - EARLY_TOLERANCE_S)
        self.assertLess(times[2] - times[0], 3.0 + 2 * PROMPT_S)

    def test_voice_agent_always_fails__max_attempts_2__row_failed_with_error_after_exactly_two_calls(self):
        s = self.stack(start_daemon=False)
        s.daemon = s.start(env={"FOLLOWUPD_FOLLOWUP_MAX_ATTEMPTS": "2"})
        s.va.set_mode("error", 500)
        tenant, at = "77777777-7777-4777-8777-777777777777", due_in(0)
        bid = s.insert_booking(SCHEMA, tenant=tenant, at=at)
        row = s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "failed" and r["execution_attempts"] == "2",
                         timeout=1 + 2 * PROMPT_S + 2)
        self.assertIn("500", row["last_execution_error"] or "")
        self.assertIsNone(row["executed_at"])
        self.assertEqual(s.columns(SCHEMA, bid, "next_attempt_at"), {"next_attempt_at": None},
                         "a final failure has no next attempt")
        # The next backoff would have been 2 s: wait longer than that for a third call that must not come.
        self.assertTrue(s.stays_false(lambda: len(s.voice_attempts_for(bid)) > 2, 2.5))
        key = s.followup_key(tenant, bid, at)
        self.assertEqual([(k, o) for _, k, o in s.voice_attempts_for(bid)], [(key, 500), (key, 500)])
        self.assertEqual(s.row(SCHEMA, bid)["task_status"], "failed")

    # -- replicas -------------------------------------------------------------------------------------------
    def test_two_replicas_same_database__seventy_bookings__exactly_one_call_each(self):
        s = self.stack(schemas=("tenant_a", "tenant_b"))
        s.start()   # the second replica
        now, soon = due_in(0), due_in(1.5)
        ids = s.insert_bookings("tenant_a", 30, now) + s.insert_bookings("tenant_b", 20, now)
        ids += s.insert_bookings("tenant_a", 20, soon)   # both replicas' timers fire at the same moment
        self.assertTrue(s.va.wait_for_unique(len(ids), soon - time.time() + PROMPT_S + 8),
                        f"{s.va.unique_count} of {len(ids)} called")
        self.assertTrue(s.stays_false(lambda: s.va.call_count > len(ids), 1.0),
                        f"duplicate requests: {[c for c in s.va.calls if c['duplicate']][:3]}")
        self.assertEqual(sorted(c["body"]["bookingId"] for c in s.va.calls), sorted(ids))
        for schema in ("tenant_a", "tenant_b"):
            rows = wait_for(lambda: (lambda r: r if r[0] == ("executed", "1") and len(r) == 1 else None)(
                s.db.query(f"SELECT task_status, execution_attempts::text FROM {quote_ident(schema)}.lead_bookings "
                           "GROUP BY 1, 2")), 5.0, f"all rows of {schema} executed once")
            self.assertEqual(rows, [("executed", "1")])
        claimed = [len(d.find_logs(lambda r: str(r.get("msg", "")).startswith("claimed for execution")))
                   for d in s.daemons]
        print(f"\n  two replicas: calls made per replica {claimed}", flush=True)
        self.assertEqual(sum(claimed), len(ids))

    # -- latency ----------------------------------------------------------------------------------------------
    def test_latency__commit_of_a_due_now_booking_to_the_voice_agent_request__printed_and_bounded(self):
        s = self.stack()
        latencies = []
        for _ in range(5):
            bid, committed = s.insert_booking_timed(SCHEMA)
            self.assertTrue(s.va.wait_until(lambda: s.va.calls_for_booking(bid), 5.0), "not called")
            latencies.append(s.va.calls_for_booking(bid)[0]["time"] - committed)
        ms = sorted(round(x * 1000, 1) for x in latencies)
        print(f"\n  commit -> voice-agent request: min {ms[0]} ms, median {statistics.median(ms)} ms, "
              f"max {ms[-1]} ms ({len(ms)} bookings)", flush=True)
        self.assertLess(max(latencies), 2.0)


if __name__ == "__main__":
    unittest.main()
