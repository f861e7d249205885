"""Booking -> Cloud Task, end to end: psql writes rows into a real PostgreSQL, the trigger NOTIFYs, the real
followupd binary schedules against the strict fake Cloud Tasks (tests/fakes), and we check both sides: the task
the fake stored (name, schedule time, HTTP target, OIDC token, payload) and the row the daemon wrote back.

Covered: a plain INSERT (every field of the task and of the row); rolled-back inserts and non-follow-up types
(nothing); two non-default schemas with two tenants each; inserts made while the daemon is down (catch-up),
history before the catch-up window (never, also not when the backend later edits such a row), past bookings
inside it (scheduled for now); PostgreSQL restarted and followupd's backends terminated (reconnect, next insert
scheduled); 1,000-row bursts, in one transaction and in 1,000 transactions (one task each, no duplicates); a
booking beyond the 720 h horizon (stays pending); 503s (backoff, then scheduled), a 400 (row failed), an expired
access token (one 401, refresh, created); SIGTERM while a create is in flight (clean exit; the next start's
catch-up gets 409 ALREADY_EXISTS and marks the row scheduled); malformed and foreign NOTIFY payloads (dropped,
daemon keeps working).

Every test starts its own daemon and ends by sending SIGTERM: exit code 0 and "stopped: all handles closed".
Databases and fakes are shared per class (one Stack); each test uses fresh tenant and booking ids and asserts
per task name, so tests do not depend on each other. No sleeps: every wait is a condition with a deadline.

Needs $FOLLOWUPD_BUILD/followupd and PG* pointing at a PostgreSQL 15 server the test may restart
(pg_ctlcluster, as root): RestartTest restarts the server named by `SHOW cluster_name`.
"""
import base64
import calendar
import hashlib
import json
import os
import subprocess
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import msg_contains, msg_is  # noqa: E402
from pgutil import LISTENER_PIDS_SQL, notify_channel, quote_ident  # noqa: E402
from stack import AUDIENCE, INVOKER, Stack, wait_for  # noqa: E402

SCHEMAS = ("crm_north", "sales_emea")      # non-default schema names
HOUR = 3600
CATCHUP_WINDOW_S = 3600                    # followup.catchup_window_s default (Stack does not override it)
PAYLOAD_KEYS = {"tenantId", "bookingId", "leadId", "assignedUserId", "schema", "scheduledAt", "idempotencyKey"}
STOPPED = "stopped: all handles closed"
WAIT_S = 15.0


# -- pure helpers ------------------------------------------------------------------------------------------------
def iso_ms(epoch_s):
    """Canonical ISO UTC with milliseconds and Z (JavaScript's toISOString) of a whole-millisecond time."""
    ms = int(round(epoch_s * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


def parse_iso(text):
    """RFC 3339 UTC 'YYYY-MM-DDTHH:MM:SS[.fff]Z' -> epoch seconds (float)."""
    assert text.endswith("Z"), text
    whole, _, frac = text[:-1].partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + (float("0." + frac) if frac else 0.0)


def idempotency_key(tenant, booking, at):
    return f"followup:{tenant}:{booking}:{iso_ms(at)}"


def task_id(key):
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_id():
    return str(uuid.uuid4())


def whole_second(offset_s):
    """A whole-second epoch time `offset_s` from now (exact through to_timestamp and the daemon's ms floor)."""
    return int(time.time()) + int(offset_s)


def logs_for(booking_id, text=None):
    """Log predicate: a line about this booking (optionally with a message containing `text`)."""
    return lambda rec: rec.get("booking_id") == booking_id and (text is None or text in str(rec.get("msg", "")))


# -- base class --------------------------------------------------------------------------------------------------
class StackTestCase(unittest.TestCase):
    """One Stack (database + fakes) per class; one daemon per test, stopped with SIGTERM in tearDown."""
    schemas = SCHEMAS
    log_level = "debug"

    @classmethod
    def setUpClass(cls):
        cls.voice_token = "vaQzWk-" + uuid.uuid4().hex   # random-looking: the logger redacts 4-byte pieces
        cls.stack = Stack(schemas=cls.schemas, start_daemon=False, voice_token=cls.voice_token,
                          log_level=cls.log_level)
        cls.stack.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.stack.__exit__(None, None, None)

    def setUp(self):
        self.s = self.stack
        self.ct = self.stack.ct
        self.d = None

    def tearDown(self):
        if self.d is not None:
            self.assert_clean_stop(self.d)

    # -- daemon ------------------------------------------------------------------------------------------
    def start_daemon(self):
        self.d = self.s.start()
        # The listener is up (readyz); wait until the catch-up that follows every (re)connect is done too, so
        # a test's faults cannot be consumed by it.
        self.d.wait_for_log(msg_contains("listening for booking notifications"), timeout=WAIT_S)
        return self.d

    def assert_clean_stop(self, d):
        code, _ = d.stop(timeout=10.0)
        self.assertEqual(code, 0, f"followupd exit code on SIGTERM; last logs {d.logs[-5:]}")
        self.assertTrue(d.find_logs(msg_is(STOPPED)), f"no '{STOPPED}' log line; last logs {d.logs[-5:]}")
        d.assert_clean()

    # -- database ----------------------------------------------------------------------------------------
    def table(self, schema):
        return f"{quote_ident(schema)}.lead_bookings"

    def insert_sql(self, schema, booking, tenant, at, booking_type="follow_up", lead=None, assigned=None,
                   status="scheduled"):
        lead = lead or new_id()
        assigned_sql = f"'{assigned}'" if assigned else "NULL"
        return (f"INSERT INTO {self.table(schema)} (id, tenant_id, lead_id, assigned_user_id, booking_type, status, "
                f"scheduled_at) VALUES ('{booking}', '{tenant}', '{lead}', {assigned_sql}, '{booking_type}', "
                f"'{status}', to_timestamp({at}));\n")

    def insert(self, schema, tenant, at, booking_type="follow_up", lead=None, assigned=None):
        booking = new_id()
        self.s.db.psql(self.insert_sql(schema, booking, tenant, at, booking_type, lead, assigned))
        return booking

    def scalar(self, sql):
        rows = self.s.db.query(sql)
        return rows[0][0] if rows else None

    def notify(self, schema, payload):
        self.s.db.psql(f"SELECT pg_notify('{notify_channel(schema)}', $payload${payload}$payload$);")

    # -- fake Cloud Tasks ----------------------------------------------------------------------------------
    def name_for(self, tenant, booking, at):
        return self.ct.task_name(task_id(idempotency_key(tenant, booking, at)))

    def calls(self, name):
        return self.ct.create_calls_by_name.get(name, {"calls": 0, "created": 0})

    def wait_created(self, name, timeout=WAIT_S):
        ok = self.ct.wait_until(lambda: self.calls(name)["created"] >= 1, timeout)
        self.assertTrue(ok, f"no successful create of {name} within {timeout}s; calls {self.calls(name)}")
        return self.ct.task(name)

    def wait_scheduled(self, schema, booking, timeout=WAIT_S):
        return self.s.wait_row(schema, booking, lambda r: r["task_status"] == "scheduled", timeout)

    def assert_never_created(self, name, booking):
        self.assertEqual(self.calls(name), {"calls": 0, "created": 0}, f"create call(s) for {booking}")
        self.assertIsNone(self.s.task_for(booking), f"a task carries booking {booking}")

    def assert_row_untouched(self, schema, booking):
        row = self.s.row(schema, booking)
        self.assertEqual((row["task_status"], row["task_name"], row["idempotency_key"]), ("pending", None, None))


# -- scheduling from NOTIFY ------------------------------------------------------------------------------------
class ScheduleTest(StackTestCase):
    def test_insert__task_created_and_row_scheduled_with_every_field(self):
        self.start_daemon()
        schema, tenant, lead, assigned = SCHEMAS[0], new_id(), new_id(), new_id()
        at = whole_second(2 * HOUR)
        booking = self.insert(schema, tenant, at, lead=lead, assigned=assigned)
        key = idempotency_key(tenant, booking, at)
        name = self.ct.task_name(task_id(key))

        task = self.wait_created(name)
        row = self.wait_scheduled(schema, booking)

        # the row
        self.assertEqual(row["task_name"], name)
        self.assertEqual(row["task_scheduled_at"], row["scheduled_at"])
        self.assertEqual(row["idempotency_key"], key)
        db_iso = self.scalar(f"SELECT to_char(scheduled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
                             f"FROM {self.table(schema)} WHERE id = '{booking}'")
        self.assertEqual(key, f"followup:{tenant}:{booking}:{db_iso}")
        self.assertEqual(name.rsplit("/", 1)[1], hashlib.sha256(row["idempotency_key"].encode()).hexdigest())
        self.assertIsNone(row["last_execution_error"])
        # exactly one create, and it succeeded
        self.assertEqual(self.calls(name), {"calls": 1, "created": 1})
        # the task as sent
        raw = task["raw"]
        self.assertEqual(raw["name"], name)
        self.assertEqual(raw["scheduleTime"], iso_ms(at))
        self.assertEqual(task["schedule_epoch"], at)
        self.assertEqual(raw["dispatchDeadline"], "60s")
        http = raw["httpRequest"]
        self.assertEqual(http["url"], f"http://127.0.0.1:{self.d.port}/api/deals-pipeline/bookings/{booking}"
                                      f"/execute-followup")
        self.assertEqual(http["httpMethod"], "POST")
        self.assertEqual(http["headers"], {"Content-Type": "application/json"})
        self.assertEqual(http["oidcToken"], {"serviceAccountEmail": INVOKER, "audience": AUDIENCE})
        self.assertNotIn("oauthToken", http)
        body = json.loads(base64.b64decode(http["body"], validate=True))
        self.assertEqual(set(body), PAYLOAD_KEYS)
        self.assertEqual(body, {"tenantId": tenant, "bookingId": booking, "leadId": lead, "assignedUserId": assigned,
                                "schema": schema, "scheduledAt": iso_ms(at), "idempotencyKey": key})
        # no secret anywhere in the task
        everything = json.dumps(task) + base64.b64decode(http["body"]).decode()
        secrets = [self.voice_token] + [t["access_token"] for t in self.ct.tokens_issued]
        if os.environ.get("PGPASSWORD"):
            secrets.append(os.environ["PGPASSWORD"])
        with open(self.s.keyfile, encoding="utf-8") as f:
            private_key = json.load(f)["private_key"]
        secrets.append(private_key.splitlines()[5])   # a line from the middle of the PEM
        for secret in secrets:
            self.assertNotIn(secret, everything)

    def test_insert_without_assigned_user__payload_has_null_assigned_user(self):
        self.start_daemon()
        tenant, at = new_id(), whole_second(HOUR)
        booking = self.insert(SCHEMAS[1], tenant, at)
        task = self.wait_created(self.name_for(tenant, booking, at))
        self.assertIn("assignedUserId", task["body_json"])
        self.assertIsNone(task["body_json"]["assignedUserId"])

    def test_rolled_back_insert__nothing_scheduled(self):
        self.start_daemon()
        schema, tenant, at = SCHEMAS[0], new_id(), whole_second(HOUR)
        rolled_back, committed = new_id(), new_id()
        self.s.db.psql("BEGIN;\n" + self.insert_sql(schema, rolled_back, tenant, at) + "ROLLBACK;\n" +
                       self.insert_sql(schema, committed, tenant, at))
        self.wait_created(self.name_for(tenant, committed, at))
        self.wait_scheduled(schema, committed)
        # The committed insert came after the rolled-back one: had that one notified, it would have been seen.
        self.assert_never_created(self.name_for(tenant, rolled_back, at), rolled_back)
        self.assertEqual(self.d.find_logs(logs_for(rolled_back)), [])
        self.assertIsNone(self.s.row(schema, rolled_back))

    def test_meeting_booking__read_and_left_alone(self):
        self.start_daemon()
        schema, tenant, at = SCHEMAS[1], new_id(), whole_second(HOUR)
        meeting = self.insert(schema, tenant, at, booking_type="meeting")
        follow_up = self.insert(schema, tenant, at)
        self.wait_created(self.name_for(tenant, follow_up, at))
        self.wait_scheduled(schema, follow_up)
        # a meeting never notifies (the trigger returns before pg_notify): the daemon never even reads it
        self.assertEqual(self.d.find_logs(logs_for(meeting)), [])
        self.assert_never_created(self.name_for(tenant, meeting, at), meeting)
        self.assert_row_untouched(schema, meeting)

    def test_two_schemas_two_tenants__each_task_carries_its_tenant_and_schema(self):
        self.start_daemon()
        at = whole_second(3 * HOUR)
        made = []
        for schema in SCHEMAS:
            for tenant in (new_id(), new_id()):
                made.append((schema, tenant, self.insert(schema, tenant, at)))
        for schema, tenant, booking in made:
            key = idempotency_key(tenant, booking, at)
            name = self.ct.task_name(task_id(key))
            task = self.wait_created(name)
            row = self.wait_scheduled(schema, booking)
            self.assertEqual((row["tenant_id"], row["task_name"], row["idempotency_key"]), (tenant, name, key))
            self.assertEqual((task["body_json"]["tenantId"], task["body_json"]["schema"],
                              task["body_json"]["bookingId"]), (tenant, schema, booking))
            self.assertEqual(self.calls(name), {"calls": 1, "created": 1})
            other = [s for s in SCHEMAS if s != schema][0]
            self.assertIsNone(self.s.row(other, booking), "row leaked into the other schema")

    def test_booking_800h_ahead__stays_pending_and_logged_beyond_horizon(self):
        self.start_daemon()
        schema, tenant, at = SCHEMAS[0], new_id(), whole_second(800 * HOUR)
        booking = self.insert(schema, tenant, at)
        rec = self.d.wait_for_log(logs_for(booking, "beyond the 720 h"), timeout=WAIT_S)
        self.assertEqual(rec["level"], "info")
        # ... and a booking inserted after it is scheduled, so the far one had its turn and created nothing
        near = self.insert(schema, tenant, whole_second(HOUR))
        self.wait_scheduled(schema, near)
        self.assert_never_created(self.name_for(tenant, booking, at), booking)
        self.assert_row_untouched(schema, booking)

    def test_create_503_twice__retried_with_backoff_then_scheduled(self):
        self.start_daemon()
        schema, tenant, at = SCHEMAS[1], new_id(), whole_second(HOUR)
        self.ct.fail_next(2, status=503, method="create")
        booking = self.insert(schema, tenant, at)
        name = self.name_for(tenant, booking, at)
        self.wait_created(name)
        row = self.wait_scheduled(schema, booking)
        self.assertEqual(row["task_name"], name)
        self.assertEqual(self.calls(name), {"calls": 3, "created": 1})
        retries = self.d.find_logs(logs_for(booking, "task creation failed; retrying in"))
        self.assertEqual(len(retries), 2, retries)
        delays = [int(r["msg"].split("retrying in ")[1].split()[0]) for r in retries]
        self.assertTrue(all(ms > 0 for ms in delays), delays)
        for r in retries:
            self.assertIn("503", r["error"])
        done = self.d.wait_for_log(logs_for(booking, "follow-up scheduled"), timeout=WAIT_S)
        waited_ms = (parse_iso(done["ts"]) - parse_iso(retries[0]["ts"])) * 1000
        self.assertGreaterEqual(waited_ms + 20, sum(delays), "retries were not spaced by their backoff")

    def test_create_400__row_failed_with_the_error(self):
        self.start_daemon()
        schema, tenant, at = SCHEMAS[0], new_id(), whole_second(HOUR)
        message = "injected rejection " + uuid.uuid4().hex[:8]
        self.ct.fail_next(1, status=400, method="create", message=message)
        booking = self.insert(schema, tenant, at)
        row = self.s.wait_row(schema, booking, lambda r: r["task_status"] == "failed", WAIT_S)
        self.assertIn("400", row["last_execution_error"])
        self.assertIn(message, row["last_execution_error"])
        self.assertIsNone(row["task_name"])
        name = self.name_for(tenant, booking, at)
        self.assertEqual(self.calls(name), {"calls": 1, "created": 0})
        self.assertIsNone(self.ct.task(name))

    def test_sigterm_during_create__clean_exit_then_409_on_restart_counts_as_scheduled(self):
        # The create reaches Cloud Tasks but its answer never reaches followupd (stopped meanwhile): the row
        # stays pending, the next start's catch-up creates the same name again and takes 409 as "scheduled".
        self.start_daemon()
        schema, tenant, at = SCHEMAS[1], new_id(), whole_second(HOUR)
        self.ct.delay_next(1, 1.0, method="create", when="before")
        booking = self.insert(schema, tenant, at)
        name = self.name_for(tenant, booking, at)
        self.assertTrue(self.ct.wait_until(lambda: self.calls(name)["calls"] == 1, WAIT_S), "create never sent")
        first, self.d = self.d, None
        self.assert_clean_stop(first)                 # with the request in flight (ASan: nothing leaked)
        self.wait_created(name)                       # the delayed create went through after all
        self.assert_row_untouched(schema, booking)
        self.start_daemon()
        row = self.wait_scheduled(schema, booking)
        self.assertEqual((row["task_name"], row["idempotency_key"]), (name, idempotency_key(tenant, booking, at)))
        self.assertEqual(self.calls(name), {"calls": 2, "created": 1})

    def test_expired_access_token__one_401_refresh_then_created(self):
        self.start_daemon()
        schema, tenant, at = SCHEMAS[0], new_id(), whole_second(HOUR)
        first = self.insert(schema, tenant, at)
        self.wait_scheduled(schema, first)          # the daemon now holds an access token
        tokens_before = len(self.ct.tokens_issued)
        self.ct.expire_tokens()
        booking = self.insert(schema, tenant, at)
        name = self.name_for(tenant, booking, at)
        self.wait_created(name)
        self.wait_scheduled(schema, booking)
        self.assertEqual(self.calls(name), {"calls": 2, "created": 1})   # one refused with 401, one accepted
        issued = self.ct.tokens_issued[tokens_before:]
        self.assertEqual(len(issued), 1, issued)
        self.assertEqual(issued[0]["source"], "token")
        self.assertEqual(self.d.find_logs(logs_for(booking, "retrying in")), [])

    def test_malformed_and_foreign_notifications__dropped_and_daemon_keeps_working(self):
        self.start_daemon()
        schema, tenant = SCHEMAS[0], new_id()
        mark = self.d.mark()
        malformed = ["not json at all", "[1, 2, 3]", "{}", '{"schema": "crm_north"}',
                     json.dumps({"schema": schema, "tenantId": "nope", "bookingId": new_id(), "op": "INSERT"}),
                     json.dumps({"schema": schema, "tenantId": tenant, "bookingId": new_id(), "op": "TRUNCATE"}),
                     "x" * 2000]
        for payload in malformed:
            self.notify(schema, payload)
        ghost = new_id()
        self.notify(schema, json.dumps({"schema": "crm_unknown", "tenantId": tenant, "bookingId": ghost,
                                        "op": "INSERT"}))
        wrong = new_id()
        self.notify(schema, json.dumps({"schema": SCHEMAS[1], "tenantId": tenant, "bookingId": wrong,
                                        "op": "INSERT"}))
        self.d.wait_for_log(logs_for(ghost, "schema not in database.schemas"), timeout=WAIT_S, since=mark)
        self.d.wait_for_log(logs_for(wrong, "another schema's channel"), timeout=WAIT_S, since=mark)
        dropped = wait_for(lambda: (lambda found: found if len(found) >= len(malformed) else None)(
            self.d.find_logs(lambda r: str(r.get("msg", "")).startswith("notification dropped:") and
                             r.get("reason") in ("malformed", "oversized"), since=mark)), WAIT_S,
            "one 'malformed' log line per malformed payload")
        self.assertEqual(len(dropped), len(malformed))
        self.assertTrue(all(r["channel"] == notify_channel(schema) for r in dropped))
        # still alive and scheduling
        at = whole_second(HOUR)
        booking = self.insert(schema, tenant, at)
        self.wait_created(self.name_for(tenant, booking, at))
        self.wait_scheduled(schema, booking)
        self.assertTrue(self.d.running)
        self.assertEqual(self.d.find_logs(logs_for(wrong, "notified"), since=mark), [])

    def test_backends_terminated__reconnects_and_schedules_the_next_inserts(self):
        self.start_daemon()
        schema, tenant, at = SCHEMAS[1], new_id(), whole_second(HOUR)
        mark = self.d.mark()
        listener = wait_for(lambda: self.s.db.query(LISTENER_PIDS_SQL), WAIT_S, "the listener's session joined")
        killed = self.s.db.query("SELECT pid FROM (SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND application_name = 'followupd') t")
        self.assertEqual(len(listener), 1)
        self.assertIn(listener[0], killed, "the listener's backend")
        self.assertGreaterEqual(len(killed), 2, "listener and pool backends")
        during = self.insert(schema, tenant, at)      # while followupd may still be reconnecting
        self.d.wait_for_log(msg_contains("notification listener lost"), timeout=WAIT_S, since=mark)
        self.d.wait_for_log(msg_contains("listening for booking notifications"), timeout=WAIT_S, since=mark)
        after = self.insert(schema, tenant, at)
        for booking in (during, after):
            self.wait_created(self.name_for(tenant, booking, at))
            self.wait_scheduled(schema, booking)


# -- catch-up: inserts made while the daemon is down -----------------------------------------------------------
class CatchUpTest(StackTestCase):
    schemas = ("legacy_bookings",)

    def test_inserts_while_down__scheduled_after_start_history_never(self):
        schema, tenant = self.schemas[0], new_id()
        future_at = whole_second(HOUR)
        recent_at = whole_second(-10 * 60)                 # inside the catch-up window
        old_at = whole_second(-2 * 24 * HOUR)              # history: before the window
        future = self.insert(schema, tenant, future_at)
        recent = self.insert(schema, tenant, recent_at)
        old = self.insert(schema, tenant, old_at)
        meeting = self.insert(schema, tenant, recent_at, booking_type="meeting")

        started = time.time()
        self.start_daemon()
        found = self.d.wait_for_log(msg_contains("catch-up found"), timeout=WAIT_S)
        self.assertEqual(found["msg"], "catch-up found 2 booking(s)")

        task = self.wait_created(self.name_for(tenant, future, future_at))
        self.assertEqual(task["raw"]["scheduleTime"], iso_ms(future_at))
        row = self.wait_scheduled(schema, future)
        self.assertEqual(row["idempotency_key"], idempotency_key(tenant, future, future_at))

        # a past booking inside the window: scheduled for "now", keyed by its real time
        task = self.wait_created(self.name_for(tenant, recent, recent_at))
        sent = parse_iso(task["raw"]["scheduleTime"])
        self.assertGreaterEqual(sent, started - 1)
        self.assertLessEqual(sent, time.time() + 1)
        self.assertEqual(task["body_json"]["scheduledAt"], iso_ms(recent_at))
        row = self.wait_scheduled(schema, recent)
        self.assertEqual(row["idempotency_key"], idempotency_key(tenant, recent, recent_at))
        self.assertEqual(row["task_scheduled_at"], row["scheduled_at"])

        self.assert_never_created(self.name_for(tenant, old, old_at), old)
        self.assert_row_untouched(schema, old)
        self.assert_never_created(self.name_for(tenant, meeting, recent_at), meeting)

    def test_history_row_edited_while_running__never_scheduled(self):
        # The Node backend may still edit old bookings (e.g. mark one completed): the UPDATE notifies, but a
        # booking before the catch-up window is history and must never get a task (a call years late).
        schema, tenant = self.schemas[0], new_id()
        old_at = whole_second(-2 * 24 * HOUR)
        old = self.insert(schema, tenant, old_at)
        self.start_daemon()
        self.s.db.psql(f"UPDATE {self.table(schema)} SET status = 'completed' WHERE id = '{old}';")
        self.d.wait_for_log(logs_for(old, "notified"), timeout=WAIT_S)
        late = self.insert(schema, tenant, whole_second(-10))      # inside the window, notified after the edit
        self.wait_scheduled(schema, late)
        self.d.wait_for_log(logs_for(old, "catch-up window"), timeout=WAIT_S)
        self.assert_never_created(self.name_for(tenant, old, old_at), old)
        self.assert_row_untouched(schema, old)


# -- bursts ------------------------------------------------------------------------------------------------------
class BurstTest(StackTestCase):
    schemas = ("burst_bookings",)
    log_level = "info"
    N = 1000

    def expected_names(self, tenant):
        rows = self.s.db.query(
            f"SELECT id, to_char(scheduled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), task_status, "
            f"task_name FROM {self.table(self.schemas[0])} WHERE tenant_id = '{tenant}'")
        return {booking: (self.ct.task_name(task_id(f"followup:{tenant}:{booking}:{iso}")), status, name)
                for booking, iso, status, name in rows}

    def assert_burst_scheduled(self, tenant, creates_before):
        ok = self.ct.wait_for_creates(creates_before + self.N, 60)
        self.assertTrue(ok, f"{self.ct.created_count - creates_before} of {self.N} tasks created within 60s")
        table = self.table(self.schemas[0])
        wait_for(lambda: self.scalar(f"SELECT count(*) FROM {table} WHERE tenant_id = '{tenant}' "
                                     f"AND task_status = 'scheduled'") == str(self.N),
                 30, "every burst row scheduled", interval=0.2)
        expected = self.expected_names(tenant)
        self.assertEqual(len(expected), self.N)
        by_name = self.ct.create_calls_by_name
        wrong = {b: by_name.get(name) for b, (name, _, _) in expected.items()
                 if by_name.get(name) != {"calls": 1, "created": 1}}
        self.assertEqual(wrong, {}, "bookings without exactly one (successful) create call")
        self.assertEqual(self.ct.created_count - creates_before, self.N, "tasks created beyond the burst")
        mismatched = [b for b, (name, status, row_name) in expected.items()
                      if (status, row_name) != ("scheduled", name)]
        self.assertEqual(mismatched, [])
        self.assertEqual(self.d.find_logs(msg_contains("queue full")), [])

    def test_1000_inserts_in_one_transaction__1000_tasks_no_duplicates(self):
        self.start_daemon()
        tenant, base = new_id(), whole_second(HOUR)
        before = self.ct.created_count
        self.s.db.psql(
            f"INSERT INTO {self.table(self.schemas[0])} (id, tenant_id, lead_id, booking_type, scheduled_at) "
            f"SELECT gen_random_uuid(), '{tenant}', gen_random_uuid(), 'follow_up', to_timestamp({base} + i) "
            f"FROM generate_series(1, {self.N}) AS i;")
        self.assert_burst_scheduled(tenant, before)

    def test_1000_inserts_in_1000_transactions__1000_tasks_no_duplicates(self):
        self.start_daemon()
        tenant, base = new_id(), whole_second(HOUR)
        before = self.ct.created_count
        # one psql session, autocommit: every INSERT is its own transaction and its own NOTIFY
        script = "".join(self.insert_sql(self.schemas[0], new_id(), tenant, base + i % 7) for i in range(self.N))
        self.s.db.psql(script)
        self.assert_burst_scheduled(tenant, before)


# -- PostgreSQL restarted under the daemon -----------------------------------------------------------------------
class RestartTest(StackTestCase):
    schemas = ("restart_bookings",)

    def cluster(self):
        """(version, name) of the server, for pg_ctlcluster: cluster_name is '15/dev', '15/regress', ..."""
        name = self.scalar("SHOW cluster_name") or ""
        version = str(int(self.scalar("SHOW server_version_num")) // 10000)
        if "/" in name:
            version, name = name.split("/", 1)
        self.assertTrue(name, "cluster_name is empty: cannot tell pg_ctlcluster which cluster to restart")
        return version, name

    def server_accepts(self):
        proc = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-c", "SELECT 1"], env=self.s.db.env(),
                              capture_output=True, text=True, timeout=30)
        return proc.returncode == 0 and proc.stdout.strip() == "1"

    def test_postgres_restarted__reconnects_and_schedules_the_next_insert(self):
        self.start_daemon()
        schema, tenant, at = self.schemas[0], new_id(), whole_second(HOUR)
        first = self.insert(schema, tenant, at)
        self.wait_scheduled(schema, first)
        version, name = self.cluster()
        mark = self.d.mark()
        subprocess.run(["pg_ctlcluster", version, name, "restart"], check=True, capture_output=True, timeout=120)
        wait_for(self.server_accepts, 60, "PostgreSQL accepting connections again", interval=0.2)
        during = self.insert(schema, tenant, at)      # followupd may still be waiting to reconnect
        self.d.wait_for_log(msg_contains("notification listener lost"), timeout=WAIT_S, since=mark)
        self.d.wait_for_log(msg_contains("listening for booking notifications"), timeout=30, since=mark)
        after = self.insert(schema, tenant, at)
        for booking in (during, after):
            name = self.name_for(tenant, booking, at)
            self.wait_created(name, timeout=30)
            row = self.wait_scheduled(schema, booking)
            self.assertEqual((row["task_name"], row["idempotency_key"]),
                             (name, idempotency_key(tenant, booking, at)))
            self.assertEqual(self.calls(name), {"calls": 1, "created": 1})


if __name__ == "__main__":
    unittest.main()
