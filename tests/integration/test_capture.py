"""Capture that costs the backend (almost) nothing: which booking changes NOTIFY, how `followupd migrate` installs
the configured trigger arguments, how a mismatch is reported, and poll mode end to end (real PostgreSQL, the real
binary, strict fakes).

Only bookings that need followupd soon notify: a follow-up (booking_type in the trigger's first argument) due
within notify_within_s (the second; 0 = any time); an UPDATE notifies when the old or the new row is such a
booking; a DELETE only when the row has a task. Everything else is found by the periodic sweep -- so a far-future
follow-up is still scheduled, without a NOTIFY. Poll mode installs no trigger at all.

No sleeps: every wait is a condition with a deadline.
"""
import os
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import msg_contains  # noqa: E402
from pgutil import TempDB, notify_channel, quote_ident, quote_literal  # noqa: E402
from opsutil import metric  # noqa: E402
from stack import Stack, wait_for  # noqa: E402

WAIT_S = 15.0
DEFAULT_TYPES = "follow_up,followup,auto_follow_up,auto_followup"


def new_id():
    return str(uuid.uuid4())


def insert_sql(booking=None, tenant=None, booking_type="follow_up", due="now()"):
    return (f"INSERT INTO lead_bookings (id, tenant_id, lead_id, booking_type, scheduled_at) VALUES "
            f"({quote_literal(booking or new_id())}, {quote_literal(tenant or new_id())}, gen_random_uuid(), "
            f"{quote_literal(booking_type)}, {due});")


def trigger_args(db, schema):
    rows = db.query(f"SELECT tgname, encode(tgargs, 'escape') FROM pg_trigger WHERE tgrelid = "
                    f"{quote_literal(quote_ident(schema) + '.lead_bookings')}::regclass AND NOT tgisinternal "
                    f"ORDER BY tgname")
    return dict(rows)


class TriggerFilterTest(unittest.TestCase):
    """The trigger as plain `psql -f` installs it (defaults: the default follow-up types, 900 s)."""
    schema = "crm_capture"

    @classmethod
    def setUpClass(cls):
        cls.db = TempDB(prefix="capture").__enter__()
        cls.db.apply_lad_table(cls.schema)
        cls.db.apply_migrations(cls.schema)

    @classmethod
    def tearDownClass(cls):
        cls.db.__exit__(None, None, None)

    def capture(self, sql):
        return [n.json() for n in self.db.capture_notifications(notify_channel(self.schema), sql, schema=self.schema)]

    def add(self, **kw):
        booking = new_id()
        self.db.psql(insert_sql(booking=booking, **kw), schema=self.schema)
        return booking

    def test_defaults__installed_as_trigger_arguments(self):
        self.assertEqual(trigger_args(self.db, self.schema),
                         {f"followupd_notify_{op}": f"{DEFAULT_TYPES}\\000900\\000"
                          for op in ("delete", "insert", "update")})

    def test_insert__meeting_due_now__silent(self):
        self.assertEqual(self.capture(insert_sql(booking_type="meeting")), [])

    def test_insert__follow_up_due_tomorrow__silent(self):
        self.assertEqual(self.capture(insert_sql(due="now() + interval '1 day'")), [])

    def test_insert__follow_up_due_now_or_inside_the_window__notifies(self):
        a, b = new_id(), new_id()
        got = self.capture(insert_sql(booking=a, due="now() - interval '10 minutes'") +
                           insert_sql(booking=b, booking_type="auto_follow_up", due="now() + interval '14 minutes'"))
        self.assertEqual([n["bookingId"] for n in got], [a, b])

    def test_update__meeting_turned_into_a_follow_up_due_now__notifies(self):
        booking = self.add(booking_type="meeting")
        got = self.capture(f"UPDATE lead_bookings SET booking_type = 'follow_up' WHERE id = '{booking}';")
        self.assertEqual([(n["bookingId"], n["op"]) for n in got], [(booking, "UPDATE")])

    def test_update__follow_up_moved_into_or_out_of_the_window__notifies(self):
        later, soon = self.add(due="now() + interval '1 day'"), self.add(due="now() + interval '1 minute'")
        got = self.capture(f"UPDATE lead_bookings SET scheduled_at = now() WHERE id = '{later}';"
                           f"UPDATE lead_bookings SET scheduled_at = now() + interval '2 days' WHERE id = '{soon}';")
        self.assertEqual([n["bookingId"] for n in got], [later, soon])

    def test_update__changes_that_stay_outside_the_window__silent(self):
        later, meeting = self.add(due="now() + interval '1 day'"), self.add(booking_type="meeting")
        got = self.capture(f"UPDATE lead_bookings SET status = 'cancelled' WHERE id = '{later}';"
                           f"UPDATE lead_bookings SET scheduled_at = now() + interval '3 days' WHERE id = '{later}';"
                           f"UPDATE lead_bookings SET status = 'cancelled' WHERE id = '{meeting}';"
                           f"UPDATE lead_bookings SET booking_type = 'demo' WHERE id = '{meeting}';")
        self.assertEqual(got, [])

    def test_arguments__drive_the_filter(self):
        other = "crm_capture_args"
        self.db.apply_lad_table(other)
        self.db.apply_migrations(other)
        self.db.psql("SELECT followupd_install_capture('lead_bookings'::regclass, 'meeting', 0, true);", schema=other)
        meeting, follow_up = new_id(), new_id()
        got = self.db.capture_notifications(
            notify_channel(other), insert_sql(booking=meeting, booking_type="meeting", due="now() + interval '9 days'")
            + insert_sql(booking=follow_up), schema=other)
        self.assertEqual([n.json()["bookingId"] for n in got], [meeting])
        # a re-run of the migrations keeps what was installed
        self.db.apply_migrations(other)
        self.assertEqual(set(trigger_args(self.db, other).values()), {"meeting\\0000\\000"})
        # enabled = false (poll mode) removes the triggers: nothing notifies
        self.db.psql("SELECT followupd_install_capture('lead_bookings'::regclass, 'meeting', 0, false);", schema=other)
        self.assertEqual(trigger_args(self.db, other), {})
        got = self.db.capture_notifications(notify_channel(other), insert_sql(booking_type="meeting"), schema=other)
        self.assertEqual(got, [])


class MigrateAndMismatchTest(unittest.TestCase):
    """`followupd migrate` installs the configured arguments; the daemon reports triggers that differ."""

    def setUp(self):
        self.s = Stack(schemas=("crm_cap_a", "crm_cap_b"), start_daemon=False).__enter__()

    def tearDown(self):
        try:
            for d in self.s.daemons:
                d.assert_clean()
        finally:
            self.s.__exit__(None, None, None)

    def config_with(self, port=None, **capture):
        text = self.s.config(port or 0)
        text = text.replace("[capture]\nnotify_within_s = 0\n",
                            "[capture]\n" + "".join(f"{k} = {v}\n" for k, v in capture.items()))
        return text.replace("sweep_interval_s = 3600", "sweep_interval_s = 30")

    def test_migrate__configured_arguments_installed_in_every_schema(self):
        self.s.migrate(self.config_with(notify_within_s=3600)
                       .replace("[followup]\n", "[followup]\nbooking_types = follow_up,callback\n"))
        for schema in self.s.schemas:
            self.assertEqual(set(trigger_args(self.s.db, schema).values()), {"follow_up,callback\\0003600\\000"})
        self.s.migrate(self.config_with(mode="poll"))
        for schema in self.s.schemas:
            self.assertEqual(trigger_args(self.s.db, schema), {})

    def test_mismatch__reported_per_schema_then_cleared_by_migrate(self):
        # the stack installed notify_within_s = 0; this daemon is configured for 900 s
        port_cfg = lambda port: self.config_with(port=port, notify_within_s=900)  # noqa: E731
        d = self.start_with(port_cfg)
        for schema in self.s.schemas:
            wait_for(lambda sc=schema: metric(d, "followupd_capture_trigger_mismatch", schema=sc) == 1,
                     WAIT_S, f"mismatch of {schema} reported")
        d.wait_for_log(msg_contains("capture triggers checked: 2 of 2 schema(s) differ"), timeout=WAIT_S)
        warns = d.find_logs(lambda r: r.get("level") == "warn" and "capture triggers" in str(r.get("msg")))
        self.assertEqual(sorted(w["schema"] for w in warns), sorted(self.s.schemas))
        self.assertIn("differ", warns[0]["reason"])
        self.assertIn("\\0000\\000", warns[0]["detail"])
        d.stop()
        # after `followupd migrate` with the same configuration: no mismatch, no warning
        self.s.migrate(port_cfg(0))
        d = self.start_with(port_cfg)
        d.wait_for_log(msg_contains("capture triggers checked: 0 of 2 schema(s) differ"), timeout=WAIT_S)
        for schema in self.s.schemas:
            self.assertEqual(metric(d, "followupd_capture_trigger_mismatch", schema=schema), 0)
        self.assertEqual(d.find_logs(lambda r: r.get("level") == "warn"), [])

    def test_mismatch__a_type_the_trigger_does_not_know__still_scheduled_by_the_sweep(self):
        cfg = lambda port: self.config_with(port=port, notify_within_s=0).replace(  # noqa: E731
            "sweep_interval_s = 30", "sweep_interval_s = 1").replace(
            "[followup]\n", "[followup]\nbooking_types = follow_up,callback\n")
        d = self.start_with(cfg)
        wait_for(lambda: metric(d, "followupd_capture_trigger_mismatch", schema="crm_cap_a") == 1, WAIT_S,
                 "mismatch reported")
        received = metric(d, "followupd_notifications_received_total", schema="crm_cap_a")
        booking = self.s.insert_booking("crm_cap_a", booking_type="callback", at=time.time() + 3600)
        self.s.wait_row("crm_cap_a", booking, lambda r: r["task_status"] == "scheduled", WAIT_S)
        self.assertEqual(metric(d, "followupd_notifications_received_total", schema="crm_cap_a"), received)

    def start_with(self, config_for_port):
        from daemon import Daemon
        from stack import free_port
        port = free_port()
        d = Daemon()
        d.port = port
        d.start(config_for_port(port))
        self.s.daemons.append(d)
        self.s.wait_ready(d)
        return d


class FarFutureWithoutNotifyTest(unittest.TestCase):
    """The configured window end to end: a follow-up due in two hours sends no NOTIFY, and the sweep gives it
    its task; one due now is notified."""

    def test_far_future_follow_up__no_notify__task_created_by_the_sweep(self):
        with Stack(schemas=("crm_cap_far",), start_daemon=False) as s:
            env = {"FOLLOWUPD_FOLLOWUP_SWEEP_INTERVAL_S": "1", "FOLLOWUPD_CAPTURE_NOTIFY_WITHIN_S": "120"}
            s.migrate(s.config(0).replace("notify_within_s = 0", "notify_within_s = 120")
                      .replace("sweep_interval_s = 3600", "sweep_interval_s = 1"))
            d = s.start(env=env)
            with s.db.listener(notify_channel("crm_cap_far")) as listener:
                later = s.insert_booking("crm_cap_far", at=time.time() + 7200)
                row = s.wait_row("crm_cap_far", later, lambda r: r["task_status"] == "scheduled", WAIT_S)
                self.assertIsNotNone(row["task_name"])
                now = s.insert_booking("crm_cap_far", at=time.time())
                got = listener.wait_for(lambda n: n.json()["bookingId"] == now)
                self.assertEqual(got.json()["op"], "INSERT")
                self.assertEqual([n for n in listener.notifications if n.json()["bookingId"] == later], [])
            self.assertEqual(metric(d, "followupd_capture_trigger_mismatch", schema="crm_cap_far"), 0)
            d.assert_clean()


class PollModeTest(unittest.TestCase):
    """[capture] mode = poll: no trigger, no LISTEN; the poll finds new, cancelled and moved bookings."""

    def test_poll_mode__no_trigger__bookings_called_cancelled_and_rescheduled(self):
        with Stack(schemas=("crm_cap_poll",), backend="local", start_daemon=False) as s:
            poll = s.config(0).replace("[capture]\n", "[capture]\nmode = poll\npoll_interval_ms = 200\n")
            s.migrate(poll)
            self.assertEqual(trigger_args(s.db, "crm_cap_poll"), {})
            d = s.start(env={"FOLLOWUPD_CAPTURE_MODE": "poll", "FOLLOWUPD_CAPTURE_POLL_INTERVAL_MS": "200"})
            self.assertEqual(s.db.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'followupd' "
                                        "AND query LIKE 'LISTEN%'"), [("0",)])
            self.assertTrue(d.find_logs(msg_contains("listening on 0 channel(s)")), "the session LISTENs to nothing")
            table = f"{quote_ident('crm_cap_poll')}.lead_bookings"
            with s.db.listener(notify_channel("crm_cap_poll")) as listener:
                due = s.insert_booking("crm_cap_poll", at=time.time())
                s.wait_row("crm_cap_poll", due, lambda r: r["task_status"] == "executed", WAIT_S)
                self.assertEqual(len(s.va.calls_for_booking(due)), 1)
                cancelled = s.insert_booking("crm_cap_poll", at=time.time() + 3600)
                s.wait_row("crm_cap_poll", cancelled, lambda r: r["task_status"] == "scheduled", WAIT_S)
                s.db.psql(f"UPDATE {table} SET status = 'cancelled' WHERE id = '{cancelled}'")
                s.wait_row("crm_cap_poll", cancelled, lambda r: r["task_status"] == "cancelled", WAIT_S)
                moved = s.insert_booking("crm_cap_poll", at=time.time() + 3600)
                s.wait_row("crm_cap_poll", moved, lambda r: r["task_status"] == "scheduled", WAIT_S)
                s.db.psql(f"UPDATE {table} SET scheduled_at = now() WHERE id = '{moved}'")
                s.wait_row("crm_cap_poll", moved, lambda r: r["task_status"] == "executed", WAIT_S)
                self.assertEqual(len(s.va.calls_for_booking(moved)), 1)
                self.assertEqual(listener.notifications, [])
            self.assertEqual(s.va.calls_for_booking(cancelled), [])
            self.assertEqual(metric(d, "followupd_capture_trigger_mismatch", schema="crm_cap_poll"), 0)
            d.assert_clean()


if __name__ == "__main__":
    unittest.main()
