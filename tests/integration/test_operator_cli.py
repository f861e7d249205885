"""The operator commands against a real PostgreSQL, the real binary and a running daemon (fake Cloud Tasks and
voice agent): `followupd status`, `inspect` and `retry` — tenant checks (another tenant's booking is "not
found", and retry changes nothing there), `retry` refuses an executed booking (no second call), `retry --dry-run`
changes nothing, a retried booking gets a new task name and exactly one accepted call — and the output modes of
the interactive commands: plain lines on a terminal (a pty), JSON when piped or with --json, for --check-config,
migrate and status; usage errors exit 2.
"""
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon import BINARY, BUILD, ROOT, clean_env, parse_log_lines  # noqa: E402
from pgutil import quote_ident  # noqa: E402
from stack import Stack, free_port, wait_for  # noqa: E402

SCHEMA = "op_a"
STATUS_SCHEMA = "op_status"
ROW_COLUMNS = ("task_status", "task_name", "idempotency_key", "task_generation", "execution_attempts",
               "executed_at", "next_attempt_at", "last_execution_error", "schedule_attempts")


def run_pty(args, timeout=30):
    """Run with stdin, stdout and stderr on a pseudo-terminal; (exit code, output with \\r\\n as \\n)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=clean_env(), close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:   # EIO: the child closed its side
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=timeout), out.decode("utf-8", "replace").replace("\r\n", "\n")


class OperatorCliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Stack(schemas=(SCHEMA, STATUS_SCHEMA))
        cls.s.__enter__()
        cls.tmp = tempfile.mkdtemp(prefix="followupd-opcli-")
        cls.conf = os.path.join(cls.tmp, "followupd.conf")
        with open(cls.conf, "w") as f:
            f.write(cls.s.config(free_port()))

    @classmethod
    def tearDownClass(cls):
        codes = cls.s.stop_daemons()
        cls.s.__exit__(None, None, None)
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert codes == [0], codes

    # -- helpers -------------------------------------------------------------------------------------------------
    def cli(self, *args):
        """Run piped (not a terminal): (exit code, parsed stdout JSON or None, stderr log records)."""
        proc = subprocess.run([BINARY, "--config", self.conf, *args], capture_output=True, text=True, timeout=60,
                              env=clean_env())
        doc = json.loads(proc.stdout) if proc.stdout.strip() else None
        records, bad = parse_log_lines(proc.stderr)
        self.assertEqual(bad, [], proc.stderr)
        return proc.returncode, doc, records

    def booking_args(self, command, tenant, booking_id, *extra):
        return (command, "--schema", SCHEMA, "--tenant", tenant, booking_id, *extra)

    def columns(self, booking_id, schema=SCHEMA):
        return self.s.columns(schema, booking_id, *ROW_COLUMNS)

    def scheduled(self, tenant=None, at=None):
        tenant = tenant or str(uuid.uuid4())
        booking_id, row, name, _ = self.s.scheduled_booking(SCHEMA, tenant=tenant,
                                                            at=at if at is not None else time.time() + 3600)
        return tenant, booking_id, name

    def failed_for_good(self):
        """A booking whose call the voice agent refused for good (422): failed, not retryable."""
        tenant, booking_id, name = self.scheduled()
        self.s.va.fail_next(1, status=422)
        self.assertEqual(self.s.dispatch_json(name), [(200, {"status": "failed", "retryable": False})])
        row = self.s.wait_row(SCHEMA, booking_id, lambda r: r["task_status"] == "failed")
        self.assertIsNone(self.columns(booking_id)["next_attempt_at"])
        return tenant, booking_id, row

    # -- inspect ---------------------------------------------------------------------------------------------------
    def test_inspect__scheduled_booking__row_computed_key_task_name_and_verdict(self):
        tenant, booking_id, name = self.scheduled()
        code, doc, _ = self.cli(*self.booking_args("inspect", tenant, booking_id))
        self.assertEqual(code, 0)
        self.assertEqual(doc["row"]["taskStatus"], "scheduled")
        self.assertEqual(doc["row"]["taskName"], name)
        self.assertEqual(doc["computedTaskName"], name)
        self.assertEqual(doc["computedIdempotencyKey"], doc["row"]["idempotencyKey"])
        self.assertEqual((doc["plan"], doc["verdict"]), ("nothing", "scheduled"))
        self.assertIn("its task is due at", doc["reason"])

    def test_inspect__other_tenant__not_found_exit_4_nothing_of_the_row_shown(self):
        tenant, booking_id, name = self.scheduled()
        other = str(uuid.uuid4())
        code, doc, _ = self.cli(*self.booking_args("inspect", other, booking_id))
        self.assertEqual(code, 4)
        self.assertEqual(doc, {"schema": SCHEMA, "tenantId": other, "bookingId": booking_id, "error": "not_found"})
        code, out = run_pty([BINARY, "--config", self.conf, *self.booking_args("inspect", other, booking_id)])
        self.assertEqual(code, 4)
        self.assertIn(f"no booking {booking_id} in tenant {other}", out)
        self.assertNotIn(name.rsplit("/", 1)[-1], out)

    def test_inspect__what_followupd_would_do__explained_per_case(self):
        tenant = str(uuid.uuid4())
        now = time.time()
        cases = {
            "not_a_follow_up": (self.s.insert_booking(SCHEMA, tenant=tenant, booking_type="meeting", at=now + 60),
                                "not a follow-up type"),
            "history": (self.s.insert_booking(SCHEMA, tenant=tenant, at=now - 7 * 86400), "before the catch-up window"),
            "beyond_horizon": (self.s.insert_booking(SCHEMA, tenant=tenant, at=now + 40 * 86400),
                               "beyond the 720 h Cloud Tasks horizon: stays pending; scheduled by the sweep from"),
        }
        for verdict, (booking_id, words) in cases.items():
            code, doc, _ = self.cli(*self.booking_args("inspect", tenant, booking_id))
            self.assertEqual((code, doc["verdict"]), (0, verdict), doc)
            self.assertIn(words, doc["reason"])
        from_at = doc["at"]   # beyond the horizon: from scheduled_at - (720 h - 1 h)
        self.assertEqual(from_at[:13], time.strftime("%Y-%m-%dT%H", time.gmtime(now + 40 * 86400 - 719 * 3600)))

    # -- retry -----------------------------------------------------------------------------------------------------
    def test_retry__executed_booking__refused_exit_3_no_change_no_second_call(self):
        tenant, booking_id, name = self.scheduled()
        self.assertEqual(self.s.dispatch_json(name), [(200, {"status": "executed"})])
        before = self.columns(booking_id)
        code, doc, _ = self.cli(*self.booking_args("retry", tenant, booking_id))
        self.assertEqual(code, 3)
        self.assertEqual(doc["result"], "refused")
        self.assertIn("never calls a booking twice", doc["reason"])
        self.assertEqual(self.columns(booking_id), before)
        self.assertEqual(len(self.s.va.calls_for_booking(booking_id)), 1)
        self.assertEqual(self.s.live_tasks_for(booking_id), [])

    def test_retry__dry_run__would_redrive_and_changes_nothing(self):
        tenant, booking_id, _ = self.failed_for_good()
        before = self.columns(booking_id)
        code, doc, _ = self.cli(*self.booking_args("retry", tenant, booking_id, "--dry-run"))
        self.assertEqual((code, doc["result"], doc["dryRun"]), (0, "would_redrive", True), doc)
        self.assertIsNone(doc["after"])
        self.assertEqual(self.columns(booking_id), before)
        self.assertEqual(self.s.live_tasks_for(booking_id), [])

    def test_retry__failed_for_good__new_task_name_then_exactly_one_accepted_call(self):
        tenant, booking_id, row = self.failed_for_good()
        key = row["idempotency_key"]
        generation = self.s.task_generation(SCHEMA, booking_id)
        code, doc, _ = self.cli(*self.booking_args("retry", tenant, booking_id))
        self.assertEqual((code, doc["result"]), (0, "redriven"), doc)
        self.assertEqual(doc["after"]["taskGeneration"], generation + 1)
        # the running daemon got the NOTIFY hint (its sweep is an hour away) and created the new task
        new_name = self.s.task_name_for(key, generation + 1)
        wait_for(lambda: self.s.live_tasks_for(booking_id) == [new_name], 10, "the re-driven task")
        self.s.wait_row(SCHEMA, booking_id, lambda r: r["task_status"] == "scheduled")
        self.assertEqual(self.s.dispatch_json(new_name), [(200, {"status": "executed"})])
        attempts = self.s.voice_attempts_for(booking_id)
        self.assertEqual([(k, o) for _, k, o in attempts], [(key, 422), (key, "accepted")])
        code, doc, _ = self.cli(*self.booking_args("retry", tenant, booking_id))
        self.assertEqual(code, 3)   # executed now: refused

    def test_retry__other_tenant__not_found_and_row_unchanged(self):
        tenant, booking_id, _ = self.failed_for_good()
        before = self.columns(booking_id)
        code, doc, _ = self.cli(*self.booking_args("retry", str(uuid.uuid4()), booking_id))
        self.assertEqual((code, doc["error"]), (4, "not_found"))
        self.assertEqual(self.columns(booking_id), before)

    def test_retry__retryable_or_scheduled__refused(self):
        tenant, booking_id, _ = self.scheduled()
        code, doc, _ = self.cli(*self.booking_args("retry", tenant, booking_id))
        self.assertEqual(code, 3)
        self.assertIn("not 'failed'", doc["reason"])
        tenant, booking_id, name = self.scheduled()
        self.s.va.fail_next(1, status=503)
        self.assertEqual(self.s.dispatch_json(name), [(503, {"status": "failed", "retryable": True})])
        code, doc, _ = self.cli(*self.booking_args("retry", tenant, booking_id))
        self.assertEqual(code, 3)
        self.assertIn("retryable", doc["reason"])

    # -- the retry statement's own guards (without the command's checks in front) --------------------------------
    def repo(self, *args):
        env = self.s.db.env()
        proc = subprocess.run([os.path.join(BUILD, "tools", "operator_repo"), *args], capture_output=True,
                              text=True, env=env, timeout=30)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        return proc.stdout.strip()

    def test_retry_statement__other_tenant_or_executed__unchanged(self):
        tenant, booking_id, _ = self.failed_for_good()
        before = self.columns(booking_id)
        self.assertEqual(self.repo("retry", SCHEMA, str(uuid.uuid4()), booking_id, "follow_up", "3600"), "unchanged")
        self.assertEqual(self.columns(booking_id), before)
        self.assertEqual(self.repo("inspect", SCHEMA, str(uuid.uuid4()), booking_id), "not_found")
        tenant, booking_id, name = self.scheduled()
        self.assertEqual(self.s.dispatch_json(name), [(200, {"status": "executed"})])
        before = self.columns(booking_id)
        self.assertEqual(self.repo("retry", SCHEMA, tenant, booking_id, "follow_up", "3600"), "unchanged")
        self.assertEqual(self.columns(booking_id), before)

    # -- status ----------------------------------------------------------------------------------------------------
    def test_status__counts_and_attention__exit_3_then_0(self):
        t = quote_ident(STATUS_SCHEMA)
        self.s.db.psql(f"DELETE FROM {t}.lead_bookings")
        code, doc, _ = self.cli("status", "--schema", STATUS_SCHEMA)
        self.assertEqual((code, doc["attention"]), (0, False), doc)
        self.assertEqual([x["schema"] for x in doc["schemas"]], [STATUS_SCHEMA])
        self.assertEqual(doc["schemas"][0]["counts"]["failedFinal"], 0)
        self.s.db.psql(f"""
INSERT INTO {t}.lead_bookings (tenant_id, lead_id, booking_type, scheduled_at, task_scheduled_at, task_status,
                               idempotency_key, execution_started_at)
VALUES (gen_random_uuid(), gen_random_uuid(), 'follow_up', now() - interval '10 minutes',
        now() - interval '10 minutes', 'in_progress', 'k1', now() - interval '5 minutes'),
       (gen_random_uuid(), gen_random_uuid(), 'follow_up', now() - interval '20 minutes',
        now() - interval '20 minutes', 'failed', 'k2', NULL);
INSERT INTO {t}.lead_bookings (tenant_id, lead_id, booking_type, status, scheduled_at, task_status)
SELECT gen_random_uuid(), gen_random_uuid(), 'follow_up', 'completed', now() - make_interval(days => i), 'executed'
FROM generate_series(1, 500) i;""")
        code, doc, _ = self.cli("status", "--schema", STATUS_SCHEMA)
        self.assertEqual((code, doc["attention"]), (3, True), doc)
        st = doc["schemas"][0]
        self.assertEqual((st["counts"]["inProgress"], st["counts"]["leaseExpired"]), (1, 1))
        self.assertEqual((st["counts"]["failedFinal"], st["counts"]["failedFinalInCatchupWindow"]), (1, 1))
        self.assertEqual(len(st["attention"]), 2, st["attention"])
        code, out = run_pty([BINARY, "--config", self.conf, "status", "--schema", STATUS_SCHEMA])
        self.assertEqual(code, 3)
        self.assertIn(f"schema {STATUS_SCHEMA} (database time ", out)
        self.assertIn("needs attention: 1 booking(s) in progress past the lease", out)
        self.assertIn("followupd: 1 schema(s) need attention", out)
        self.assertNotIn("{", out)
        self.s.db.psql(f"DELETE FROM {t}.lead_bookings WHERE task_status <> 'executed'")
        self.assertEqual(self.cli("status", "--schema", STATUS_SCHEMA)[0], 0)

    def test_status__json_flag_on_a_terminal__one_json_document(self):
        code, out = run_pty([BINARY, "--config", self.conf, "status", "--json"])
        self.assertIn(code, (0, 3))
        doc = json.loads(out)
        self.assertEqual(sorted(x["schema"] for x in doc["schemas"]), sorted((SCHEMA, STATUS_SCHEMA)))

    # -- check-config and migrate: terminal vs pipe ------------------------------------------------------------------
    def write_conf(self, text):
        path = os.path.join(self.tmp, f"c-{uuid.uuid4().hex[:8]}.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_check_config__terminal__plain_file_line_problems(self):
        path = self.write_conf("[http]\nbogus = 1\n[log]\nlevel = loud\n")
        code, out = run_pty([BINARY, "--config", path, "--check-config"])
        self.assertEqual(code, 1)
        lines = out.strip().splitlines()
        self.assertIn(f"{path}:2: unknown key 'bogus' in [http]", lines)
        self.assertTrue(any(l.startswith(f"{path}:4: [log] level = 'loud'") for l in lines), lines)
        self.assertIn(f"{path}: missing required value: [database] schemas", lines)
        self.assertEqual(lines[-1], f"followupd: configuration {path} invalid")
        self.assertNotIn("{", out)
        code, out = run_pty([BINARY, "--config", self.conf, "--check-config"])
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith(f"followupd: configuration {self.conf} OK (backend cloudtasks"), out)

    def test_check_config__piped_or_json_flag__json_lines(self):
        path = self.write_conf("[http]\nbogus = 1\n")
        proc = subprocess.run([BINARY, "--config", path, "--check-config"], capture_output=True, text=True,
                              env=clean_env())
        records, bad = parse_log_lines(proc.stderr)
        self.assertEqual((proc.returncode, bad), (1, []))
        self.assertEqual(records[-1]["msg"], "configuration invalid")
        code, out = run_pty([BINARY, "--config", path, "--check-config", "--json"])
        records, bad = parse_log_lines(out)
        self.assertEqual((code, bad), (1, []))
        self.assertIn(f"{path}:2: unknown key 'bogus' in [http]", [r.get("error") for r in records])

    def test_migrate__terminal__plain_progress_and_file_line_failure(self):
        code, out = run_pty([BINARY, "--config", self.conf, "migrate", "--sql-dir", os.path.join(ROOT, "sql")])
        self.assertEqual(code, 0, out)
        self.assertIn(f"{SCHEMA}: 001_task_columns.sql applied (", out)
        self.assertIn(f"{SCHEMA}: capture triggers installed (booking types ", out)
        self.assertTrue(out.rstrip().endswith("followupd: all 2 schema(s) migrated"), out)
        self.assertNotIn("{", out)
        bad = os.path.join(self.tmp, "badsql")
        os.makedirs(os.path.join(bad, "migrations"))
        os.makedirs(os.path.join(bad, "rollback"))
        with open(os.path.join(bad, "migrations", "001_bad.sql"), "w") as f:
            f.write("SELECT 1;\n\nSELECT no_such_column FROM lead_bookings;\n")
        code, out = run_pty([BINARY, "--config", self.conf, "migrate", "--sql-dir", bad])
        self.assertEqual(code, 1)
        self.assertIn(f"{bad}/migrations/001_bad.sql:3: schema {SCHEMA}: ", out)
        self.assertIn("no_such_column", out)
        proc = subprocess.run([BINARY, "--config", self.conf, "migrate", "--sql-dir", bad], capture_output=True,
                              text=True, env=clean_env())
        records, lines_bad = parse_log_lines(proc.stderr)
        self.assertEqual((proc.returncode, lines_bad), (1, []))
        self.assertIn(f"migration failed in schema {SCHEMA}, file 001_bad.sql", [r["msg"] for r in records])

    # -- usage -------------------------------------------------------------------------------------------------------
    def test_usage_errors__exit_2(self):
        booking, tenant = str(uuid.uuid4()), str(uuid.uuid4())
        for args in (["inspect", booking], ["inspect", "--schema", SCHEMA, booking],
                     ["inspect", "--schema", SCHEMA, "--tenant", "not-a-uuid", booking],
                     ["inspect", "--schema", SCHEMA, "--tenant", tenant, "not-a-uuid"],
                     ["inspect", "--schema", SCHEMA, "--tenant", tenant, booking, "--dry-run"],
                     ["retry", "--schema", SCHEMA, "--tenant", tenant], ["status", "--tenant", tenant],
                     ["status", "extra"], ["--json"], ["migrate", "--schema", SCHEMA]):
            proc = subprocess.run([BINARY, "--config", self.conf, *args], capture_output=True, text=True,
                                  env=clean_env())
            self.assertEqual(proc.returncode, 2, args)

    def test_unknown_schema__exit_1_named(self):
        code, doc, records = self.cli("inspect", "--schema", "not_configured", "--tenant", str(uuid.uuid4()),
                                      str(uuid.uuid4()))
        self.assertEqual((code, doc), (1, None))
        self.assertEqual(records[-1]["msg"], "schema is not in [database] schemas")


if __name__ == "__main__":
    unittest.main()
