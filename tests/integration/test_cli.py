"""followupd's command line and process lifecycle, driven through the real binary.

--check-config (every problem on its own JSON line, exit 0/1), environment overrides, --version/--help, usage
errors (exit 2), and the daemon itself: JSON-only logs, SIGTERM/SIGINT exit 0 within a second after closing
every handle, SIGHUP reloads (broken file kept out, log level applied, static keys warned about).

Needs $FOLLOWUPD_BUILD/followupd and, for the daemon tests, PG* pointing at a PostgreSQL server: each daemon
test gets its own database (the LAD table in schema tenant_a), dropped afterwards.
"""
import os
import signal
import subprocess
import sys
import tempfile
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import BINARY, ROOT, Daemon, clean_env, msg_contains, msg_is, parse_log_lines  # noqa: E402

EXAMPLE_CONF = os.path.join(ROOT, "conf", "followupd.conf.example")
LAD_TABLE_SQL = os.path.join(ROOT, "tests", "fixtures", "lead_bookings.sql")
CMD_TIMEOUT = 30
STOP_DEADLINE_S = 1.0

EXAMPLE_MISSING = [
    "[database] conninfo", "[database] schemas", "[voice_agent] base_url", "[cloudtasks] project",
    "[cloudtasks] location", "[http] public_url", "[auth] audience", "[auth] service_account",
]

COMPLETE_CLOUDTASKS_CONF = """\
[database]
conninfo = host=127.0.0.1 dbname=lad user=followupd
schemas = tenant_a, tenant_b
[http]
public_url = https://followupd.example.com
[cloudtasks]
project = my-project
location = europe-west1
[auth]
audience = https://followupd.example.com
service_account = invoker@my-project.iam.gserviceaccount.com
[voice_agent]
base_url = http://127.0.0.1:3000
[log]
level = warn
"""


def read_version():
    try:
        with open(os.path.join(ROOT, "VERSION"), encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return "0.1.0"


class CliRun:
    def __init__(self, proc):
        self.code = proc.returncode
        self.stdout = proc.stdout.decode("utf-8")
        self.stderr = proc.stderr.decode("utf-8")   # strict: invalid UTF-8 fails the test


def run_cli(args, env=None, cwd=None):
    proc = subprocess.run([BINARY, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=clean_env(env), cwd=cwd, timeout=CMD_TIMEOUT)
    return CliRun(proc)


class TempConfMixin:
    def write_conf(self, text):
        path = os.path.join(self.tmpdir, f"conf-{uuid.uuid4().hex[:8]}.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def check_config(self, path, env=None):
        run = run_cli(["--check-config", "--config", path], env=env)
        records, bad = parse_log_lines(run.stderr)
        self.assertEqual(bad, [], "every stderr line must be a JSON object")
        self.assertEqual(run.stdout, "")
        return run.code, records


class CheckConfigTest(TempConfMixin, unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="followupd-cli-")
        self.tmpdir = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def test_check_config__shipped_example__exit_1_each_missing_value_on_own_line(self):
        code, records = self.check_config(EXAMPLE_CONF)
        self.assertEqual(code, 1)
        errors = [r for r in records if r.get("msg") == "configuration error"]
        self.assertEqual(len(errors), len(EXAMPLE_MISSING), errors)
        for key in EXAMPLE_MISSING:
            hits = [r for r in errors if "missing required value" in r["error"] and key in r["error"]]
            self.assertEqual(len(hits), 1, f"{key} not reported exactly once: {errors}")
        for r in errors:
            self.assertEqual(r["level"], "error")
            self.assertEqual(r["config"], EXAMPLE_CONF)
        self.assertEqual(records[-1]["msg"], "configuration invalid")

    def test_check_config__complete_config__exit_0_with_ok_line(self):
        path = self.write_conf(COMPLETE_CLOUDTASKS_CONF)
        code, records = self.check_config(path)
        self.assertEqual(code, 0, records)
        self.assertEqual(len(records), 1, records)
        ok = records[0]
        self.assertEqual(ok["msg"], "configuration OK")
        self.assertEqual(ok["level"], "info")
        self.assertEqual(ok["config"], path)
        self.assertEqual(ok["log_level"], "warn")
        self.assertEqual(ok["backend"], "cloudtasks")

    def test_check_config__local_backend_minimal__exit_0(self):
        path = self.write_conf("[queue]\nbackend = local\n[database]\nconninfo = dbname=x\nschemas = s\n"
                               "[voice_agent]\nbase_url = http://127.0.0.1:3000\n")
        code, records = self.check_config(path)
        self.assertEqual(code, 0, records)
        self.assertEqual(records[-1]["backend"], "local")

    def test_check_config__env_log_level_debug__overrides_file(self):
        path = self.write_conf(COMPLETE_CLOUDTASKS_CONF)
        code, records = self.check_config(path, env={"FOLLOWUPD_LOG_LEVEL": "debug"})
        self.assertEqual(code, 0, records)
        self.assertEqual(records[-1]["msg"], "configuration OK")
        self.assertEqual(records[-1]["log_level"], "debug")

    def test_check_config__env_supplies_missing_values__exit_0(self):
        env = {"FOLLOWUPD_DATABASE_CONNINFO": "dbname=x", "FOLLOWUPD_DATABASE_SCHEMAS": "a,b",
               "FOLLOWUPD_VOICE_AGENT_BASE_URL": "http://va", "FOLLOWUPD_QUEUE_BACKEND": "local"}
        code, records = self.check_config(EXAMPLE_CONF, env=env)
        self.assertEqual(code, 0, records)

    def test_check_config__unknown_key__rejected_with_file_and_line(self):
        text = COMPLETE_CLOUDTASKS_CONF + "[http]\nlisten = 127.0.0.1:0\nlistne = 127.0.0.1:1\n"
        line = text.splitlines().index("listne = 127.0.0.1:1") + 1
        path = self.write_conf(text)
        code, records = self.check_config(path)
        self.assertEqual(code, 1)
        errors = [r for r in records if r.get("msg") == "configuration error"]
        self.assertEqual(len(errors), 1, errors)
        self.assertIn(f"{path}:{line}:", errors[0]["error"])
        self.assertIn("listne", errors[0]["error"])

    def test_check_config__several_problems__all_reported(self):
        text = ("[log]\nlevel = loud\n[http]\nlisten = nowhere\nmax_connections = 0\n[nope]\n"
                + COMPLETE_CLOUDTASKS_CONF.replace("level = warn", ""))
        path = self.write_conf(text)
        code, records = self.check_config(path)
        self.assertEqual(code, 1)
        errors = [r["error"] for r in records if r.get("msg") == "configuration error"]
        self.assertEqual(len(errors), 4, errors)
        for line, key in ((2, "level"), (4, "listen"), (5, "max_connections"), (6, "nope")):
            self.assertTrue(any(f"{path}:{line}:" in e and key in e for e in errors), (line, key, errors))

    def test_check_config__secret_values__never_printed(self):
        secret_pw = "Cli-Secret-Pa55"
        token = "cli-voice-token-value"
        text = (COMPLETE_CLOUDTASKS_CONF.replace("user=followupd", f"user=followupd password={secret_pw}")
                + f"[voice_agent]\ntoken = {token}\ntoken = {token}\n[auth]\nmode = shared_secret\n"
                  "shared_secret = tooshort-secret\n")
        path = self.write_conf(text)
        run = run_cli(["--check-config", "--config", path])
        self.assertEqual(run.code, 1)
        self.assertIn("twice", run.stderr)
        self.assertIn("16 bytes", run.stderr)
        for secret in (secret_pw, token, "tooshort-secret"):
            self.assertNotIn(secret, run.stderr)

    def test_check_config__missing_file__exit_1_names_path(self):
        path = os.path.join(self.tmpdir, "does-not-exist.conf")
        code, records = self.check_config(path)
        self.assertEqual(code, 1)
        self.assertTrue(any(path in r.get("error", "") and "cannot open" in r["error"] for r in records), records)


class UsageTest(unittest.TestCase):
    def test_version__exit_0_prints_version_on_stdout(self):
        run = run_cli(["--version"])
        self.assertEqual(run.code, 0)
        self.assertEqual(run.stdout, f"followupd {read_version()}\n")
        self.assertEqual(run.stderr, "")
        self.assertEqual(run_cli(["-V"]).stdout, run.stdout)

    def test_help__exit_0_prints_usage_on_stdout(self):
        for flag in ("--help", "-h"):
            run = run_cli([flag])
            self.assertEqual(run.code, 0)
            self.assertTrue(run.stdout.startswith("Usage: followupd"), run.stdout)
            self.assertIn("--check-config", run.stdout)
            self.assertEqual(run.stderr, "")

    def test_unknown_flag__exit_2_usage_on_stderr(self):
        run = run_cli(["--no-such-flag"])
        self.assertEqual(run.code, 2)
        self.assertEqual(run.stdout, "")
        self.assertIn("Usage:", run.stderr)

    def test_stray_positional_argument__exit_2(self):
        run = run_cli(["--check-config", "--config", EXAMPLE_CONF, "extra"])
        self.assertEqual(run.code, 2)
        self.assertEqual(run.stdout, "")
        self.assertIn("Usage:", run.stderr)

    def test_config_flag_without_value__exit_2(self):
        run = run_cli(["--config"])
        self.assertEqual(run.code, 2)
        self.assertIn("Usage:", run.stderr)


def psql(args, sql=None, dbname=None):
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *args]
    if dbname:
        cmd += ["-d", dbname]
    if sql is not None:
        cmd += ["-c", sql]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)


def pg_env_missing():
    return [k for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE") if not os.environ.get(k)]


class DaemonTest(unittest.TestCase):
    """The daemon process: one database per test, backend local (no network), listen on an ephemeral port."""

    def setUp(self):
        missing = pg_env_missing()
        if missing:
            self.skipTest(f"PG environment not set: {missing}")
        self.dbname = f"coretests_{uuid.uuid4().hex[:12]}"
        psql([], f'CREATE DATABASE "{self.dbname}"')
        self.addCleanup(psql, [], f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        psql(["-v", "schema=tenant_a", "-f", LAD_TABLE_SQL], dbname=self.dbname)
        self.daemon = Daemon()
        self.addCleanup(self.daemon.close)

    def conninfo(self):
        parts = [f"host={os.environ['PGHOST']}", f"port={os.environ['PGPORT']}", f"user={os.environ['PGUSER']}",
                 f"dbname={self.dbname}"]
        if os.environ.get("PGPASSWORD"):
            parts.append(f"password={os.environ['PGPASSWORD']}")
        return " ".join(parts)

    def conf(self, level="info", listen="127.0.0.1:0", extra=""):
        return (f"[database]\nconninfo = {self.conninfo()}\nschemas = tenant_a\n"
                f"[http]\nlisten = {listen}\n"
                f"[queue]\nbackend = local\n"
                f"[voice_agent]\nbase_url = http://127.0.0.1:9\n"
                f"[log]\nlevel = {level}\n{extra}")

    def start(self, text=None, env=None):
        self.daemon.start(text if text is not None else self.conf(), env=env)
        self.daemon.wait_for_log(msg_contains(" started ("), timeout=10)

    def assert_logs_sane(self):
        """JSON only, every line with ts/level/msg, and the database password never printed."""
        self.daemon.assert_clean()
        for rec in self.daemon.logs:
            for key in ("ts", "level", "msg"):
                self.assertIn(key, rec)
            self.assertIn(rec["level"], ("debug", "info", "warn", "error"))
        password = os.environ.get("PGPASSWORD", "")
        if len(password) >= 4:
            self.assertFalse(any(password in str(rec) for rec in self.daemon.logs), "password logged")

    def assert_clean_stop(self, sig, name):
        code, elapsed = self.daemon.stop(sig, timeout=5)
        self.assertEqual(code, 0, self.daemon.logs)
        self.assertLess(elapsed, STOP_DEADLINE_S)
        self.assertTrue(self.daemon.find_logs(msg_is(f"stopping ({name})")), self.daemon.logs)
        self.assertEqual(self.daemon.logs[-1]["msg"], "stopped: all handles closed")
        self.assert_logs_sane()

    def test_sigterm__exits_0_within_1s_all_handles_closed(self):
        self.start()
        self.assert_clean_stop(signal.SIGTERM, "SIGTERM")
        self.assertEqual(self.daemon.find_logs(lambda r: r["level"] == "debug"), [], "level info logs no debug")

    def test_sigint__exits_0_within_1s_all_handles_closed(self):
        self.start()
        self.assert_clean_stop(signal.SIGINT, "SIGINT")

    def test_env_log_level_debug__debug_lines_logged(self):
        self.start(env={"FOLLOWUPD_LOG_LEVEL": "debug"})
        self.assert_clean_stop(signal.SIGTERM, "SIGTERM")
        self.assertTrue(self.daemon.find_logs(lambda r: r["level"] == "debug"), self.daemon.logs)

    def test_invalid_config__exits_1_without_starting(self):
        self.daemon.start(self.conf(level="loud"))
        code, _ = self.daemon.wait_exit(timeout=10)
        self.assertEqual(code, 1)
        self.assertTrue(self.daemon.find_logs(lambda r: "configuration error" == r["msg"] and "level" in r["error"]))
        self.assertTrue(self.daemon.find_logs(msg_is("cannot start: invalid configuration")))
        self.assertFalse(self.daemon.find_logs(msg_contains(" started (")))
        self.assert_logs_sane()

    def test_sighup_broken_config__keeps_running_then_sigterm_exits_0(self):
        self.start()
        path = self.daemon.write_config(self.conf() + "[http]\nbogus_key = 1\n")
        bad_line = self.conf().count("\n") + 2
        mark = self.daemon.mark()
        self.daemon.send(signal.SIGHUP)
        failed = self.daemon.wait_for_log(msg_contains("reload failed"), since=mark)
        self.assertEqual(failed["level"], "warn")
        rejected = self.daemon.find_logs(msg_contains("reload rejected"), since=mark)
        self.assertEqual(len(rejected), 1, self.daemon.logs[mark:])
        self.assertIn(f"{path}:{bad_line}:", rejected[0]["error"])
        self.assertIn("bogus_key", rejected[0]["error"])
        self.assertFalse(self.daemon.find_logs(msg_is("configuration reloaded")))
        self.assertTrue(self.daemon.running)
        self.assert_clean_stop(signal.SIGTERM, "SIGTERM")

    def test_sighup_log_level_debug__applied_debug_lines_follow(self):
        self.start()
        self.daemon.write_config(self.conf(level="debug"))
        mark = self.daemon.mark()
        self.daemon.send(signal.SIGHUP)
        self.daemon.wait_for_log(msg_is("configuration reloaded"), since=mark)
        self.assertEqual([r for r in self.daemon.logs[:mark] if r["level"] == "debug"], [],
                         "no debug line before the reload")
        # a reload warning names its key; unrelated warnings (a JWKS fetch failing without
        # network, on its own retry timer) carry none and may land anywhere in this window
        self.assertEqual(self.daemon.find_logs(lambda r: r["level"] == "warn" and "key" in r, since=mark), [],
                         "log level is reloadable: no reload warning")
        self.assert_clean_stop(signal.SIGTERM, "SIGTERM")
        self.assertTrue(self.daemon.find_logs(lambda r: r["level"] == "debug", since=mark), self.daemon.logs)

    def test_sighup_listen_changed__warns_naming_key_and_keeps_running(self):
        self.start()
        self.daemon.write_config(self.conf(listen="127.0.0.2:0"))
        mark = self.daemon.mark()
        self.daemon.send(signal.SIGHUP)
        self.daemon.wait_for_log(msg_is("configuration reloaded"), since=mark)
        # (unrelated warnings, e.g. a JWKS fetch failing without network, carry no "key" field)
        warnings = self.daemon.find_logs(lambda r: r["level"] == "warn" and "key" in r, since=mark)
        self.assertEqual([w.get("key") for w in warnings], ["listen"], warnings)
        self.assertIn("cannot change", warnings[0]["msg"])
        self.assertTrue(self.daemon.running)
        self.assert_clean_stop(signal.SIGTERM, "SIGTERM")

    def test_sighup_level_warn__info_lines_suppressed_after(self):
        self.start()
        # listen changes too: its warning (logged while reloading) marks that the reload ran
        self.daemon.write_config(self.conf(level="warn", listen="127.0.0.2:0"))
        mark = self.daemon.mark()
        self.daemon.send(signal.SIGHUP)
        self.daemon.wait_for_log(lambda r: r.get("key") == "listen", since=mark)
        code, elapsed = self.daemon.stop(signal.SIGTERM, timeout=5)
        self.assertEqual(code, 0)
        self.assertLess(elapsed, STOP_DEADLINE_S)
        self.assertEqual([r for r in self.daemon.logs[mark:] if r["level"] in ("debug", "info")], [])
        self.assert_logs_sane()


if __name__ == "__main__":
    unittest.main()
