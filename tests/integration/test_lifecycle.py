"""Booking lifecycle end to end: what followupd does with a booking's Cloud Task when the Node backend changes
the booking after it was scheduled (cancel, DELETE, reschedule, un-cancel, type change, unrelated edits), when
it changes it while followupd is not running (the task sweep), and at the 720 h Cloud Tasks horizon.

Real PostgreSQL (psql writes the rows, the trigger NOTIFYs), the real followupd binary, the strict fake Cloud
Tasks (tasks, deletes, tombstones, dispatch with real OIDC tokens) and the strict fake voice agent.

Covered here:
  cancel (UPDATE status) before due -> task deleted, row cancelled, task name forgotten; a forced late dispatch
  answers 200 {"status":"cancelled"} without a call. Cancel when the task is already gone (404) -> same end
  state. DELETE of the row -> its task deleted; a late callback answers 404. Reschedule -> the replacement task
  (new key, task_generation 1) is created at the new time BEFORE the old one is deleted; the old task's callback
  is a stale no-op; the new one calls once. Un-cancel -> scheduled again under a new task name (Cloud Tasks keeps
  deleted names reserved). Type changed to 'meeting' -> cancelled, task deleted. Edits of other columns (notes,
  metadata, a same-value status write) -> no notification, no Cloud Tasks call. An executed booking rescheduled
  -> nothing (never called again). Cancel while its call is in progress -> the started call completes and is
  recorded (cancel does not stop a call already started).
  While followupd is down: cancel, reschedule and retype -> on start the task sweep deletes / replaces the tasks;
  a DELETE while down is not seen (no row left): the orphan task's callback answers 404 without a call.
  Horizon: 800 h ahead stays pending with no create call (718 h ahead is scheduled); after the injected clock
  moves 100 h (restart with FOLLOWUPD_TEST_CLOCK_OFFSET_MS, fake Cloud Tasks clock moved alike) the catch-up
  creates its task for the booking's real time.

Covered elsewhere (not repeated): inserts made while followupd is down are scheduled on start, and history
older than the catch-up window is never scheduled (test_schedule.CatchUpTest); the execution contract, stale
keys and duplicate deliveries (test_execute).

No sleeps: every wait is a condition with a deadline. Needs $FOLLOWUPD_BUILD/followupd and PG*.
"""
import os
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import msg_contains, msg_is  # noqa: E402
from pgutil import quote_ident  # noqa: E402
from stack import Stack, iso, wait_for  # noqa: E402

HOUR = 3600
WAIT_S = 15.0
STOPPED = "stopped: all handles closed"


def new_id():
    return str(uuid.uuid4())


def whole_second(offset_s):
    """A whole-second epoch time offset_s from now (exact through to_timestamp and the daemon's ms floor)."""
    return int(time.time()) + int(offset_s)


def about(booking_id, text=None):
    """Log predicate: a line about this booking (optionally whose message contains text)."""
    return lambda rec: rec.get("booking_id") == booking_id and (text is None or text in str(rec.get("msg", "")))


class LifecycleCase(unittest.TestCase):
    """Shared helpers; subclasses own a Stack (one database + fakes per class)."""
    schema = None

    def table(self):
        return f"{quote_ident(self.schema)}.lead_bookings"

    def sql(self, statement):
        self.s.db.psql(statement)

    def update(self, booking, assignments):
        self.sql(f"UPDATE {self.table()} SET {assignments} WHERE id = '{booking}';")

    def insert(self, tenant, at, booking_type="follow_up"):
        return self.s.insert_booking(self.schema, tenant=tenant, at=at, booking_type=booking_type)

    def row(self, booking):
        return self.s.row(self.schema, booking)

    def wait_row(self, booking, pred, timeout=WAIT_S):
        return self.s.wait_row(self.schema, booking, pred, timeout)

    def scheduled(self, at_offset_s=2 * HOUR):
        """A follow-up booking of a fresh tenant, scheduled: (booking, tenant, at, key, task name)."""
        tenant, at = new_id(), whole_second(at_offset_s)
        booking = self.insert(tenant, at)
        key = self.s.idempotency_key_for(tenant, booking, at)
        name = self.s.task_name_for(key)
        row = self.wait_row(booking, lambda r: r["task_status"] == "scheduled")
        self.assertEqual((row["task_name"], row["idempotency_key"]), (name, key))
        self.assertEqual(self.s.live_tasks_for(booking), [name])
        return booking, tenant, at, key, name

    def wait_cancelled_and_cleared(self, booking):
        """Cancelled, and the task name forgotten: the daemon deleted the task (or found it gone) first."""
        return self.wait_row(booking, lambda r: r["task_status"] == "cancelled" and r["task_name"] is None)

    def assert_deleted_once(self, name, status=200):
        self.assertEqual([d["status"] for d in self.s.deletes_of(name)], [status])
        self.assertIsNone(self.s.ct.task(name), "the task is still live")

    def assert_no_voice_request(self, booking):
        self.assertEqual(self.s.voice_requests_for(booking), [], "the voice agent must not have been called")


# -- changes while followupd runs ----------------------------------------------------------------------------------
class LiveChangesTest(LifecycleCase):
    schema = "crm_lifecycle"

    @classmethod
    def setUpClass(cls):
        cls.s = Stack(schemas=(cls.schema,), start_daemon=False, log_level="debug").__enter__()
        try:
            cls.d = cls.s.start()
            cls.d.wait_for_log(msg_contains("listening for booking notifications"), timeout=WAIT_S)
        except BaseException:
            cls.s.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            code, _ = cls.d.stop(timeout=10.0)
            if code != 0 or not cls.d.find_logs(msg_is(STOPPED)):
                raise AssertionError(f"followupd did not stop cleanly (exit {code}); last logs {cls.d.logs[-5:]}")
        finally:
            cls.s.__exit__(None, None, None)

    def tearDown(self):
        self.d.assert_clean()
        self.assertEqual(self.s.ct.internal_errors, [])
        self.assertEqual(self.s.va.internal_errors, [])

    def test_cancel_before_due__task_deleted_row_cancelled_forced_dispatch_no_call(self):
        booking, _, _, key, name = self.scheduled()

        self.update(booking, "status = 'cancelled'")

        row = self.wait_cancelled_and_cleared(booking)
        self.assertEqual((row["status"], row["idempotency_key"]), ("cancelled", key))
        self.assert_deleted_once(name)
        self.assertEqual(self.s.ct.tombstones[name]["reason"], "deleted")
        self.assertEqual(self.s.live_tasks_for(booking), [])
        # Cloud Tasks delivers it anyway (a delivery already under way, or a duplicate): a no-op.
        self.assertEqual(self.s.dispatch_json(name, allow_done=True), [(200, {"status": "cancelled"})])
        self.assert_no_voice_request(booking)
        self.assertEqual(self.row(booking)["execution_attempts"], "0")
        self.assertEqual(self.s.creates_of(name), {"calls": 1, "created": 1})

    def test_cancel_when_the_task_is_already_gone__404_counts_as_deleted(self):
        booking, _, _, _, name = self.scheduled()
        self.s.ct.fail_next(1, status=404, method="delete", message="Requested entity was not found.")

        self.update(booking, "status = 'cancelled'")

        self.wait_cancelled_and_cleared(booking)
        self.assertEqual([d["status"] for d in self.s.deletes_of(name)], [404])
        self.d.wait_for_log(about(booking, "task of the cancelled booking deleted"), timeout=WAIT_S)

    def test_delete_row__its_task_deleted_late_callback_404(self):
        booking, _, _, _, name = self.scheduled()
        mark = self.d.mark()

        self.sql(f"DELETE FROM {self.table()} WHERE id = '{booking}';")

        self.assertTrue(self.s.ct.wait_until(lambda: self.s.deletes_of(name), WAIT_S), "task never deleted")
        self.assert_deleted_once(name)
        self.d.wait_for_log(about(booking, "task of the deleted booking deleted"), timeout=WAIT_S, since=mark)
        self.assertEqual(self.s.dispatch_json(name, allow_done=True), [(404, {"error": "not_found"})])
        self.assert_no_voice_request(booking)

    def test_reschedule__new_task_at_new_time_created_before_old_deleted_old_callback_stale(self):
        booking, tenant, _, old_key, old_name = self.scheduled(2 * HOUR)
        new_at = whole_second(5 * HOUR)
        new_key = self.s.idempotency_key_for(tenant, booking, new_at)
        new_name = self.s.task_name_for(new_key, generation=1)

        self.update(booking, f"scheduled_at = to_timestamp({new_at})")

        row = self.wait_row(booking, lambda r: r["task_name"] == new_name)
        self.assertEqual((row["task_status"], row["idempotency_key"]), ("scheduled", new_key))
        self.assertEqual(row["task_scheduled_at"], row["scheduled_at"])
        self.assertEqual(self.s.task_generation(self.schema, booking), 1)
        self.assertTrue(self.s.ct.wait_until(lambda: self.s.deletes_of(old_name), WAIT_S), "old task never deleted")
        self.assert_deleted_once(old_name)
        self.assertEqual(self.s.live_tasks_for(booking), [new_name])
        new_task = self.s.ct.task(new_name)
        self.assertEqual(new_task["raw"]["scheduleTime"], iso(new_at))
        self.assertEqual(new_task["body_json"]["idempotencyKey"], new_key)
        self.assertEqual(new_task["body_json"]["scheduledAt"], iso(new_at))
        self.assertEqual(self.s.creates_of(new_name), {"calls": 1, "created": 1})
        # the booking never had no live task: the replacement existed before the old one was deleted
        self.assertLessEqual(new_task["create_time"], self.s.deletes_of(old_name)[0]["time"])

        # the old task, delivered anyway, carries the old key: stale, no call
        self.assertEqual(self.s.dispatch_json(old_name, allow_done=True), [(200, {"status": "stale"})])
        self.assert_no_voice_request(booking)
        # the new one calls, once, with the new key
        self.assertEqual(self.s.dispatch_json(new_name), [(200, {"status": "executed"})])
        calls = self.s.va.calls_for_booking(booking)
        self.assertEqual([c["idempotency_key"] for c in calls], [new_key])
        self.assertEqual(calls[0]["body"]["scheduledAt"], iso(new_at))
        self.assertNotEqual(old_key, new_key)

    def test_reschedule_beyond_the_horizon__old_task_withdrawn_booking_pending_old_callback_stale(self):
        booking, tenant, _, key, name = self.scheduled(2 * HOUR)
        far_at = whole_second(800 * HOUR)
        mark = self.d.mark()

        self.update(booking, f"scheduled_at = to_timestamp({far_at})")

        # no replacement can exist yet (Cloud Tasks refuses > 720 h): the old task must not call at the old time
        row = self.wait_row(booking, lambda r: r["task_status"] == "pending")
        self.assertEqual((row["task_name"], row["idempotency_key"], row["task_scheduled_at"]), (None, None, None))
        self.assertEqual(self.s.task_generation(self.schema, booking), 1)
        self.assertTrue(self.s.ct.wait_until(lambda: self.s.deletes_of(name), WAIT_S), "old task never deleted")
        self.assert_deleted_once(name)
        self.assertEqual(self.s.live_tasks_for(booking), [])
        self.d.wait_for_log(about(booking, "task withdrawn"), timeout=WAIT_S, since=mark)
        self.assertEqual(self.s.dispatch_json(name, allow_done=True), [(200, {"status": "stale"})])
        self.assert_no_voice_request(booking)
        # nothing was sent for the new time (the sweep creates it once inside the horizon: see HorizonTest)
        far_key = self.s.idempotency_key_for(tenant, booking, far_at)
        for generation in (0, 1):
            self.assertEqual(self.s.creates_of(self.s.task_name_for(far_key, generation)), {"calls": 0, "created": 0})

    def test_uncancel__scheduled_again_under_a_new_task_name(self):
        booking, _, _, key, name = self.scheduled()
        self.update(booking, "status = 'cancelled'")
        self.wait_cancelled_and_cleared(booking)

        self.update(booking, "status = 'scheduled'")

        reopened = self.s.task_name_for(key, generation=1)      # same key (same scheduled_at), next generation
        self.assertNotEqual(reopened, name)
        row = self.wait_row(booking, lambda r: r["task_status"] == "scheduled")
        self.assertEqual((row["task_name"], row["idempotency_key"]), (reopened, key))
        self.assertEqual(self.s.task_generation(self.schema, booking), 1)
        self.assertEqual(self.s.live_tasks_for(booking), [reopened])
        self.assertEqual(self.s.creates_of(reopened), {"calls": 1, "created": 1})
        self.assertEqual(self.s.creates_of(name), {"calls": 1, "created": 1}, "the deleted name was re-used")
        self.assertEqual(self.s.dispatch_json(reopened), [(200, {"status": "executed"})])
        self.assertEqual([c["idempotency_key"] for c in self.s.va.calls_for_booking(booking)], [key])

    def test_type_changed_to_meeting__cancelled_and_task_deleted(self):
        booking, _, _, _, name = self.scheduled()

        self.update(booking, "booking_type = 'meeting'")

        row = self.wait_cancelled_and_cleared(booking)
        self.assertEqual((row["status"], row["booking_type"]), ("scheduled", "meeting"))
        self.assert_deleted_once(name)
        self.assertEqual(self.s.dispatch_json(name, allow_done=True), [(200, {"status": "cancelled"})])
        self.assert_no_voice_request(booking)

    def test_other_columns_changed__no_notification_no_task_call(self):
        booking, _, _, _, name = self.scheduled()
        before = self.row(booking)
        creates, deletes = self.s.ct.create_call_count, len(self.s.ct.deletes)
        mark = self.d.mark()

        # what the Node backend writes when someone edits a note: other columns, and the status it already has
        self.update(booking, "notes = 'call after lunch', metadata = '{\"k\": 1}'::jsonb, updated_at = now(), "
                             "status = status, scheduled_at = scheduled_at")

        # Barrier: a later change of another booking notifies on the same channel. Notifications arrive in
        # commit order, so once that one is handled, a notification for the edit would have been seen.
        sentinel, _, _, _, sentinel_name = self.scheduled()
        self.update(sentinel, "status = 'cancelled'")
        self.wait_cancelled_and_cleared(sentinel)
        self.assertEqual(self.d.find_logs(about(booking), since=mark), [], "the edit reached followupd")
        self.assertEqual(self.row(booking), before)
        self.assertEqual(self.s.live_tasks_for(booking), [name])
        self.assertEqual(self.s.ct.create_call_count - creates, 1, "only the sentinel's create")
        self.assertEqual([d["name"] for d in self.s.ct.deletes[deletes:]], [sentinel_name])

    def test_executed_booking_rescheduled__never_called_again(self):
        booking, _, _, key, name = self.scheduled()
        self.assertEqual(self.s.dispatch_json(name), [(200, {"status": "executed"})])
        creates, deletes = self.s.ct.create_call_count, len(self.s.ct.deletes)
        mark = self.d.mark()

        self.update(booking, f"scheduled_at = to_timestamp({whole_second(6 * HOUR)})")

        self.d.wait_for_log(about(booking, "does not need a task"), timeout=WAIT_S, since=mark)
        row = self.row(booking)
        self.assertEqual((row["task_status"], row["task_name"], row["idempotency_key"]), ("executed", name, key))
        self.assertEqual((self.s.ct.create_call_count, len(self.s.ct.deletes)), (creates, deletes))
        self.assertEqual(self.s.dispatch_json(name, allow_done=True), [(200, {"status": "already_executed"})])
        self.assertEqual(len(self.s.voice_requests_for(booking)), 1)

    def test_cancel_while_the_call_is_in_progress__call_completes_and_is_recorded(self):
        booking, _, _, key, name = self.scheduled()
        self.s.va.delay_next(1, 2.0, when="before")      # hold the start-call request before the agent acts
        results = []
        delivery = threading.Thread(target=lambda: results.extend(self.s.dispatch_json(name)))
        delivery.start()
        try:
            self.wait_row(booking, lambda r: r["task_status"] == "in_progress")
            mark = self.d.mark()
            self.update(booking, "status = 'cancelled'")
            self.d.wait_for_log(about(booking, "UPDATE notified"), timeout=WAIT_S, since=mark)
        finally:
            delivery.join(timeout=30)
        self.assertEqual(results, [(200, {"status": "executed"})])
        row = self.wait_row(booking, lambda r: r["task_status"] == "executed")
        self.assertEqual(row["status"], "cancelled")
        self.assertEqual([c["idempotency_key"] for c in self.s.va.calls_for_booking(booking)], [key])
        self.assertEqual(self.s.deletes_of(name), [], "no delete for a task that is running")


# -- changes while followupd is down: the task sweep on start ------------------------------------------------------
class DowntimeChangesTest(LifecycleCase):
    schema = "crm_downtime"

    @classmethod
    def setUpClass(cls):
        cls.s = Stack(schemas=(cls.schema,), start_daemon=False, log_level="debug").__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.s.__exit__(None, None, None)

    def start_daemon(self, port=None):
        d = self.s.start() if port is None else self.s.start_on_port(port)
        d.wait_for_log(msg_contains("listening for booking notifications"), timeout=WAIT_S)
        return d

    def stop_daemon(self, d):
        code, _ = d.stop(timeout=10.0)
        self.assertEqual(code, 0, f"exit code on SIGTERM; last logs {d.logs[-5:]}")
        d.assert_clean()

    def test_cancel_reschedule_retype_delete_while_down__sweep_on_start_fixes_the_tasks(self):
        d = self.start_daemon()
        made = {what: self.scheduled() for what in ("cancel", "reschedule", "retype", "delete", "untouched")}
        self.stop_daemon(d)

        cancel, reschedule, retype, delete, untouched = (made[w][0] for w in
                                                         ("cancel", "reschedule", "retype", "delete", "untouched"))
        new_at = whole_second(7 * HOUR)
        self.update(cancel, "status = 'cancelled'")
        self.update(reschedule, f"scheduled_at = to_timestamp({new_at})")
        self.update(retype, "booking_type = 'meeting'")
        self.sql(f"DELETE FROM {self.table()} WHERE id = '{delete}';")
        creates = self.s.ct.create_call_count

        d = self.start_daemon(port=d.port)     # same address: the tasks' URLs reach it
        try:
            found = d.wait_for_log(msg_contains("task sweep found"), timeout=WAIT_S)
            self.assertEqual(found["msg"], "task sweep found 3 booking(s)")

            # cancelled and retyped: row cancelled, task deleted
            for booking in (cancel, retype):
                self.wait_cancelled_and_cleared(booking)
                self.assert_deleted_once(made["cancel" if booking == cancel else "retype"][4])
            # rescheduled: replacement at the new time, old one deleted
            _, tenant, _, _, old_name = made["reschedule"]
            new_key = self.s.idempotency_key_for(tenant, reschedule, new_at)
            new_name = self.s.task_name_for(new_key, generation=1)
            row = self.wait_row(reschedule, lambda r: r["task_name"] == new_name)
            self.assertEqual((row["task_status"], row["idempotency_key"]), ("scheduled", new_key))
            self.assertTrue(self.s.ct.wait_until(lambda: self.s.deletes_of(old_name), WAIT_S))
            self.assert_deleted_once(old_name)
            self.assertEqual(self.s.live_tasks_for(reschedule), [new_name])
            self.assertEqual(self.s.ct.task(new_name)["raw"]["scheduleTime"], iso(new_at))
            self.assertEqual(self.s.ct.create_call_count - creates, 1, "only the replacement was created")
            # untouched: same task, nothing sent for it
            untouched_name = made["untouched"][4]
            self.assertEqual(self.s.live_tasks_for(untouched), [untouched_name])
            self.assertEqual(self.s.deletes_of(untouched_name), [])
            # deleted while down: nobody saw it (no row is left to find), so its task lives on; its callback
            # answers 404 until Cloud Tasks gives up, and never calls
            delete_name = made["delete"][4]
            self.assertEqual(self.s.live_tasks_for(delete), [delete_name])
            self.assertEqual(self.s.deletes_of(delete_name), [])
            self.assertEqual(self.s.dispatch_json(delete_name), [(404, {"error": "not_found"})])
            self.assert_no_voice_request(delete)
            for booking, name in ((cancel, made["cancel"][4]), (retype, made["retype"][4])):
                self.assertEqual(self.s.dispatch_json(name, allow_done=True), [(200, {"status": "cancelled"})])
                self.assert_no_voice_request(booking)
        finally:
            self.stop_daemon(d)


    def test_uncancel_while_down__reopened_and_scheduled_under_a_new_task_on_start(self):
        d = self.start_daemon()
        booking, tenant, at, key, first_name = self.scheduled()
        self.update(booking, "status = 'cancelled'")
        self.wait_cancelled_and_cleared(booking)
        self.stop_daemon(d)

        self.update(booking, "status = 'scheduled'")      # un-cancelled while nobody listens
        d = self.start_daemon(port=d.port)
        try:
            found = d.wait_for_log(msg_contains("re-opened sweep found"), timeout=WAIT_S)
            self.assertEqual(found["msg"], "re-opened sweep found 1 booking(s)")
            new_name = self.s.task_name_for(key, generation=1)
            row = self.wait_row(booking, lambda r: r["task_status"] == "scheduled")
            self.assertEqual((row["task_name"], row["idempotency_key"]), (new_name, key))
            self.assertNotEqual(new_name, first_name)
            self.assertEqual(self.s.live_tasks_for(booking), [new_name])
        finally:
            self.stop_daemon(d)


# -- the 720 h horizon with an injected clock ----------------------------------------------------------------------
class HorizonTest(LifecycleCase):
    """800 h ahead stays pending; once followupd's clock (and the fake Cloud Tasks' clock) is 100 h later,
    the catch-up schedules it. Both clocks move together, as real time would."""
    schema = "crm_horizon"
    offset_s = 0.0

    @classmethod
    def setUpClass(cls):
        cls.s = Stack(schemas=(cls.schema,), start_daemon=False, log_level="debug").__enter__()
        try:
            # the fake's own 720 h check, token lifetimes, ... use the same moved clock as the daemon
            cls.s.replace_cloud_tasks(now=lambda: time.time() + cls.offset_s)
        except BaseException:
            cls.s.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.s.__exit__(None, None, None)

    def start_daemon(self, offset_s):
        type(self).offset_s = float(offset_s)
        env = {"FOLLOWUPD_TEST_CLOCK_OFFSET_MS": str(int(offset_s * 1000))} if offset_s else None
        d = self.s.start(env=env)
        d.wait_for_log(msg_contains("listening for booking notifications"), timeout=WAIT_S)
        return d

    def stop_daemon(self, d):
        code, _ = d.stop(timeout=10.0)
        self.assertEqual(code, 0, f"exit code on SIGTERM; last logs {d.logs[-5:]}")
        d.assert_clean()

    def test_800h_ahead__pending_then_scheduled_when_the_clock_moves_100h(self):
        tenant = new_id()
        far_at, near_at = whole_second(800 * HOUR), whole_second(718 * HOUR)
        d = self.start_daemon(0)
        try:
            far = self.insert(tenant, far_at)
            near = self.insert(tenant, near_at)
            far_name = self.s.task_name_for(self.s.idempotency_key_for(tenant, far, far_at))
            near_name = self.s.task_name_for(self.s.idempotency_key_for(tenant, near, near_at))
            self.wait_row(near, lambda r: r["task_status"] == "scheduled")
            self.assertEqual(self.s.ct.task(near_name)["raw"]["scheduleTime"], iso(near_at))
            d.wait_for_log(about(far, "beyond the 720 h"), timeout=WAIT_S)
            row = self.row(far)
            self.assertEqual((row["task_status"], row["task_name"], row["idempotency_key"]), ("pending", None, None))
            self.assertEqual(self.s.creates_of(far_name), {"calls": 0, "created": 0})
        finally:
            self.stop_daemon(d)

        # a restart at the same time changes nothing: the catch-up does not reach 800 h ahead (it does find a
        # booking inserted meanwhile, in the same query)
        later = self.insert(tenant, whole_second(HOUR))
        d = self.start_daemon(0)
        try:
            self.assertEqual(d.wait_for_log(msg_contains("catch-up found"), timeout=WAIT_S)["msg"],
                             "catch-up found 1 booking(s)")
            self.wait_row(later, lambda r: r["task_status"] == "scheduled")
            self.assertEqual(self.row(far)["task_status"], "pending")
            self.assertEqual(self.s.creates_of(far_name), {"calls": 0, "created": 0})
        finally:
            self.stop_daemon(d)

        # 100 h later: 700 h ahead, inside the horizon: the catch-up on start creates the task
        d = self.start_daemon(100 * HOUR)
        try:
            d.wait_for_log(msg_contains("test clock offset in effect"), timeout=WAIT_S)
            row = self.wait_row(far, lambda r: r["task_status"] == "scheduled")
            self.assertEqual((row["task_name"], row["idempotency_key"]),
                             (far_name, self.s.idempotency_key_for(tenant, far, far_at)))
            task = self.s.ct.task(far_name)
            self.assertEqual(task["raw"]["scheduleTime"], iso(far_at))
            self.assertEqual(self.s.creates_of(far_name), {"calls": 1, "created": 1})
            self.assertEqual(self.s.live_tasks_for(far), [far_name])
            self.assertEqual(self.s.live_tasks_for(near), [near_name])
        finally:
            self.stop_daemon(d)
        self.assertEqual(self.s.ct.internal_errors, [])


if __name__ == "__main__":
    unittest.main()
