"""Production operations of the real daemon: systemd notifications over a test-owned $NOTIFY_SOCKET (READY only
once the database is reachable, STATUS, WATCHDOG, RELOADING + MONOTONIC_USEC, STOPPING), the graceful drain on
SIGTERM (a voice call in flight completes and is recorded), /metrics (strict format check, counters move), and
`make install` / `make uninstall`.

Every wait is a condition with a deadline (notifications, log lines, HTTP answers, rows), never a blind sleep.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon import BINARY, BUILD, ROOT, msg_contains, msg_is  # noqa: E402
from opsutil import (CONTENT_TYPE, GatedProxy, NotifySocket, PromFormatError, parse_prometheus,  # noqa: E402
                     sample)
from stack import Stack, conninfo, free_port, wait_for  # noqa: E402
from daemon import Daemon  # noqa: E402

SCHEMA = "ops_a"


def monotonic_us():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def is_ready(m):
    return m.get("READY") == "1"


def start_daemon(stack, env=None, config_edit=None):
    """Start one more daemon of `stack` without waiting for readiness; config_edit(text) may rewrite the config."""
    port = free_port()
    d = Daemon()
    d.port = port
    text = stack.config(port)
    if config_edit is not None:
        text = config_edit(text)
    d.start(text, env=env)
    stack.daemons.append(d)
    return d


def fetch_metrics(stack, d):
    with urllib.request.urlopen(f"http://127.0.0.1:{d.port}/metrics", timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type"), resp.read().decode("utf-8")


class NotifyTest(unittest.TestCase):
    """sd_notify protocol as systemd sees it."""

    def test_ready__database_unreachable_at_start__no_ready_until_it_is_then_ready_with_status(self):
        with Stack(schemas=(SCHEMA,), start_daemon=False) as s, GatedProxy.to_postgres() as proxy, \
                NotifySocket() as ns:
            d = start_daemon(s, env={"NOTIFY_SOCKET": ns.address},
                             config_edit=lambda t: t.replace(conninfo(s.db.name), proxy.conninfo(s.db.name)))
            # The readiness check ran and decided "not ready: database" ...
            ns.wait_for(lambda m: m.get("STATUS") == "starting: waiting for database", timeout=10)
            status, body = s.http(d, "GET", "/readyz")
            self.assertEqual((status, body), (503, {"status": "not_ready", "reason": "database"}))
            wait_for(lambda: proxy.refused >= 2, 10, "the daemon retrying the database")
            self.assertFalse([m for m in ns.snapshot() if is_ready(m)], "READY=1 sent while the database was down")
            # ... and once the database is reachable, READY=1 follows and /readyz agrees.
            proxy.open()
            ready = ns.wait_for(is_ready, timeout=20)
            self.assertEqual(s.http(d, "GET", "/readyz"), (200, {"status": "ready"}))
            self.assertEqual(ready["STATUS"], f"listening on 127.0.0.1:{d.port}, 1 schema(s), 0 task(s) scheduled, "
                                              f"0 execution(s) in flight")
            self.assertEqual(len([m for m in ns.snapshot() if is_ready(m)]), 1)
            code, _ = d.stop()
            self.assertEqual(code, 0)

    def test_ready__abstract_notify_socket__ready_and_stopping_delivered(self):
        with Stack(schemas=(SCHEMA,), start_daemon=False) as s, NotifySocket(abstract=True) as ns:
            d = start_daemon(s, env={"NOTIFY_SOCKET": ns.address})
            ns.wait_for(is_ready, timeout=15)
            self.assertEqual(s.http(d, "GET", "/readyz")[0], 200)
            mark = ns.mark()
            code, _ = d.stop()
            self.assertEqual(code, 0)
            ns.wait_for(lambda m: m.get("STOPPING") == "1", timeout=5, since=mark)

    def test_watchdog__watchdog_usec_200ms__pings_every_100ms_from_the_loop(self):
        with Stack(schemas=(SCHEMA,), start_daemon=False) as s, NotifySocket() as ns:
            d = start_daemon(s, env={"NOTIFY_SOCKET": ns.address, "WATCHDOG_USEC": "200000"})
            d.wait_for_log(msg_is("watchdog armed: WATCHDOG=1 every 100 ms"), timeout=10)
            pings = ns.wait_count(lambda m: m.get("WATCHDOG") == "1", 6, timeout=10)
            gaps = [b["_t"] - a["_t"] for a, b in zip(pings, pings[1:])]
            # 5 gaps of a 100 ms timer: far below systemd's 200 ms deadline on average (generous for a busy host).
            self.assertLess(sum(gaps) / len(gaps), 0.2, gaps)
            code, _ = d.stop()
            self.assertEqual(code, 0)

    def test_watchdog__watchdog_pid_of_another_process__never_pings(self):
        with Stack(schemas=(SCHEMA,), start_daemon=False) as s, NotifySocket() as ns:
            d = start_daemon(s, env={"NOTIFY_SOCKET": ns.address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
            d.wait_for_log(msg_contains("watchdog not armed"), timeout=10)
            ns.wait_for(is_ready, timeout=15)
            code, _ = d.stop()
            self.assertEqual(code, 0)
            ns.wait_for(lambda m: m.get("STOPPING") == "1", timeout=5)
            self.assertFalse([m for m in ns.snapshot() if "WATCHDOG" in m])

    def test_reload__sighup__reloading_with_monotonic_usec_then_ready(self):
        with Stack(schemas=(SCHEMA,), start_daemon=False) as s, NotifySocket() as ns:
            d = start_daemon(s, env={"NOTIFY_SOCKET": ns.address})
            ns.wait_for(is_ready, timeout=15)
            mark, log_mark = ns.mark(), d.mark()
            before = monotonic_us()
            d.send(signal.SIGHUP)
            reloading = ns.wait_for(lambda m: m.get("RELOADING") == "1", timeout=10, since=mark)
            after = monotonic_us()
            self.assertTrue(before <= int(reloading["MONOTONIC_USEC"]) <= after,
                            (before, reloading["MONOTONIC_USEC"], after))
            msgs = [m for m in ns.snapshot(mark) if "WATCHDOG" not in m]
            idx = msgs.index(reloading)
            ready = ns.wait_for(is_ready, timeout=10, since=mark)
            self.assertGreater(ns.snapshot(mark).index(ready), ns.snapshot(mark).index(reloading))
            self.assertTrue(ready["STATUS"].startswith("listening on"), ready)
            self.assertEqual(idx, 0, msgs)
            d.wait_for_log(msg_is("configuration reloaded"), since=log_mark)

            # A broken file: the running configuration stays, and systemd still gets READY=1 back.
            mark = ns.mark()
            d.write_config("[database\n")
            d.send(signal.SIGHUP)
            ns.wait_for(lambda m: m.get("RELOADING") == "1", timeout=10, since=mark)
            ready = ns.wait_for(is_ready, timeout=10, since=mark)
            self.assertTrue(ready["STATUS"].startswith("reload failed, kept the running configuration"), ready)
            self.assertEqual(s.http(d, "GET", "/readyz")[0], 200)
            code, _ = d.stop()
            self.assertEqual(code, 0)

    def test_stop__sigterm__stopping_then_exit_0(self):
        with Stack(schemas=(SCHEMA,), start_daemon=False) as s, NotifySocket() as ns:
            d = start_daemon(s, env={"NOTIFY_SOCKET": ns.address})
            ns.wait_for(is_ready, timeout=15)
            mark = ns.mark()
            code, _ = d.stop(signal.SIGTERM)
            self.assertEqual(code, 0)
            stopping = ns.wait_for(lambda m: m.get("STOPPING") == "1", timeout=5, since=mark)
            self.assertEqual(stopping["STATUS"], "stopping: finishing in-flight work")
            self.assertFalse([m for m in ns.snapshot(mark) if is_ready(m)])


class ReloadTest(unittest.TestCase):
    """SIGHUP applies booking qualification settings at once (not at the next periodic sweep, an hour away)."""

    def test_sighup__new_booking_type__waiting_booking_scheduled_without_restart(self):
        with Stack(schemas=(SCHEMA,), log_level="debug") as s:
            d = s.daemon
            bid = s.insert_booking(SCHEMA, booking_type="callback_later")
            # Not a configured type: the trigger does not notify it, the scheduler stays idle, the row pending
            # (shown by a follow-up inserted after it that is notified and scheduled).
            probe = s.insert_booking(SCHEMA)
            s.wait_row(SCHEMA, probe, lambda r: r["task_status"] == "scheduled")
            self.assertEqual(sample(parse_prometheus(fetch_metrics(s, d)[2])[1],
                                    "followupd_notifications_received_total", schema=SCHEMA), 1)
            self.assertEqual(s.row(SCHEMA, bid)["task_status"], "pending")
            self.assertIsNone(s.task_for(bid))
            mark = d.mark()
            d.write_config(s.config(d.port) + "[followup]\nbooking_types = follow_up,callback_later\n")
            d.send(signal.SIGHUP)
            d.wait_for_log(msg_is("configuration reloaded"), since=mark)
            self.assertFalse(d.find_logs(msg_contains("cannot change"), since=mark))
            s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "scheduled", timeout=15)
            self.assertIsNotNone(s.task_for(bid))
            self.assertTrue(d.find_logs(msg_contains("catch-up sweep (configuration reloaded)"), since=mark))
            # Reloading the same settings again does not sweep again.
            mark = d.mark()
            d.send(signal.SIGHUP)
            d.wait_for_log(msg_is("configuration reloaded"), since=mark)
            code, _ = d.stop()
            self.assertEqual(code, 0)
            self.assertFalse(d.find_logs(msg_contains("catch-up sweep (configuration reloaded)"), since=mark))


class DrainTest(unittest.TestCase):
    """SIGTERM lets a voice call in flight finish and records it."""

    def _scheduled_booking(self, s):
        bid = s.insert_booking(SCHEMA)
        s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "scheduled", timeout=15)
        _, task = wait_for(lambda: s.task_for(bid), 10, "the booking's task")
        return bid, task["body_json"]

    def _execute_in_background(self, s, d, bid, body):
        result = {}
        t = threading.Thread(target=lambda: result.update(answer=s.execute(d, bid, body)), daemon=True)
        t.start()
        return t, result

    def test_sigterm__voice_call_in_flight__call_completes_row_executed_exit_0(self):
        with Stack(schemas=(SCHEMA,)) as s:
            d = s.daemon
            bid, body = self._scheduled_booking(s)
            s.va.delay_next(1, 2.0)                        # the voice agent answers 2 s after accepting the call
            t, result = self._execute_in_background(s, d, bid, body)
            self.assertTrue(s.va.wait_for_requests(1, 10), "the call never reached the voice agent")
            mark = d.mark()
            d.send(signal.SIGTERM)
            d.wait_for_log(msg_contains("draining: 1 execution(s)"), since=mark)
            t.join(timeout=15)
            self.assertEqual(result.get("answer"), (200, {"status": "executed"}))
            code, _ = d.wait_exit(timeout=10)
            self.assertEqual(code, 0)
            row = s.row(SCHEMA, bid)
            self.assertEqual(row["task_status"], "executed")
            self.assertIsNotNone(row["executed_at"])
            self.assertEqual(s.va.call_count, 1)
            self.assertFalse(d.find_logs(msg_contains("drain deadline reached")))

    def test_sigterm__call_outlives_drain_timeout__aborted_recorded_retryable_answered_503_exit_0(self):
        with Stack(schemas=(SCHEMA,), extra_config="[shutdown]\ndrain_timeout_ms = 300\n") as s:
            d = s.daemon
            bid, body = self._scheduled_booking(s)
            s.va.delay_next(1, 8.0)
            t, result = self._execute_in_background(s, d, bid, body)
            self.assertTrue(s.va.wait_for_requests(1, 10))
            code, elapsed = d.stop(signal.SIGTERM, timeout=6)
            self.assertEqual(code, 0)
            self.assertLess(elapsed, 5.0)   # the voice agent would have taken 8 s
            self.assertTrue(d.find_logs(msg_contains("drain deadline reached with 1 execution(s) in flight; "
                                                     "aborting")))
            t.join(timeout=15)
            # Cloud Tasks gets a retryable answer; the row is a retryable failure, claimable by the retry.
            self.assertEqual(result.get("answer"), (503, {"status": "failed", "retryable": True}))
            rows = s.db.query(f"SELECT task_status, next_attempt_at IS NOT NULL, last_execution_error "
                              f"FROM {SCHEMA}.lead_bookings WHERE id = '{bid}'")
            self.assertEqual(rows[0][:2], ("failed", "t"))
            self.assertIn("aborted: shutting down", rows[0][2])


class MetricsTest(unittest.TestCase):
    """GET /metrics: strict text format 0.0.4, and the counters follow events."""

    def scrape(self, s, d):
        status, ctype, text = fetch_metrics(s, d)
        self.assertEqual(status, 200)
        self.assertEqual(ctype, CONTENT_TYPE)
        return parse_prometheus(text)

    def test_metrics__format_and_counters__move_with_inserts_callbacks_and_auth_failures(self):
        with Stack(schemas=(SCHEMA, "ops_b")) as s:
            d = s.daemon
            types, before = self.scrape(s, d)
            for name, kind in {"followupd_notifications_received_total": "counter",
                               "followupd_tasks_created_total": "counter",
                               "followupd_tasks_already_existed_total": "counter",
                               "followupd_task_failures_total": "counter",
                               "followupd_callbacks_total": "counter",
                               "followupd_callback_auth_failures_total": "counter",
                               "followupd_voice_calls_total": "counter",
                               "followupd_execution_duration_seconds": "histogram",
                               "followupd_notify_to_task_created_seconds": "histogram",
                               "followupd_voice_call_duration_seconds": "histogram",
                               "followupd_db_pool_in_use_connections": "gauge",
                               "followupd_db_pool_waiting_queries": "gauge",
                               "followupd_scheduler_backlog_bookings": "gauge",
                               "followupd_listener_connected": "gauge",
                               "followupd_ready": "gauge",
                               "followupd_jwks_refresh_total": "counter",
                               "followupd_jwks_key_set_age_seconds": "gauge",
                               "followupd_build_info": "gauge"}.items():
                self.assertEqual(types.get(name), kind, name)
            with open(os.path.join(ROOT, "VERSION")) as f:
                version = f.read().strip()
            self.assertEqual(sample(before, "followupd_build_info", version=version), 1)
            self.assertEqual(sample(before, "followupd_listener_connected"), 1)
            self.assertEqual(sample(before, "followupd_ready"), 1)
            self.assertEqual(sample(before, "followupd_notifications_received_total", schema=SCHEMA), 0)
            # Ready means the start-up JWKS fetch succeeded; every result has its series from the start.
            self.assertEqual(sample(before, "followupd_jwks_refresh_total", result="ok"), s.ct.jwks_fetches)
            for result in ("http_error", "transport_error", "invalid"):
                self.assertEqual(sample(before, "followupd_jwks_refresh_total", result=result), 0, result)
            self.assertGreaterEqual(sample(before, "followupd_jwks_key_set_age_seconds"), 0)

            # An INSERT: notification counted for its schema, task created, notify->created latency observed.
            bid = s.insert_booking(SCHEMA)
            s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "scheduled", timeout=15)
            after = wait_for(lambda: (lambda sm: sm if sample(
                sm, "followupd_tasks_created_total") >= 1 else None)(self.scrape(s, d)[1]), 10, "created counter")
            self.assertEqual(sample(after, "followupd_notifications_received_total", schema=SCHEMA), 1)
            self.assertEqual(sample(after, "followupd_notifications_received_total", schema="ops_b"), 0)
            self.assertEqual(sample(after, "followupd_notify_to_task_created_seconds_count"), 1)

            # A callback without a token: 401, counted by status and by the failed check.
            status, _ = s.http(d, "POST", f"/api/deals-pipeline/bookings/{bid}/execute-followup", {"x": 1},
                               {"Content-Type": "application/json"})
            self.assertEqual(status, 401)
            _, after = self.scrape(s, d)
            self.assertEqual(sample(after, "followupd_callbacks_total", code="401"), 1)
            self.assertEqual(sample(after, "followupd_callback_auth_failures_total", check="authorization_header"), 1)
            self.assertEqual(sum(v for (n, _), v in after.items() if n == "followupd_callback_auth_failures_total"), 1)

            # A real callback: executed, counted, timed; one voice call.
            _, task = s.task_for(bid)
            self.assertEqual(s.execute(d, bid, task["body_json"]), (200, {"status": "executed"}))
            _, after = self.scrape(s, d)
            self.assertEqual(sample(after, "followupd_callbacks_total", code="200"), 1)
            self.assertEqual(sample(after, "followupd_executions_total", status="executed"), 1)
            self.assertEqual(sample(after, "followupd_execution_duration_seconds_count"), 1)
            self.assertEqual(sample(after, "followupd_voice_calls_total", outcome="ok"), 1)
            self.assertEqual(sample(after, "followupd_voice_call_duration_seconds_count"), 1)
            code, _ = d.stop()
            self.assertEqual(code, 0)


class PrometheusCheckerTest(unittest.TestCase):
    """The checker above rejects what Prometheus would (so the metrics test can fail)."""

    GOOD = ("# HELP a_total A.\n# TYPE a_total counter\na_total{k=\"v\\\"\\\\\\n\"} 1\n"
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n")

    def test_checker__good_text__parsed(self):
        types, samples = parse_prometheus(self.GOOD)
        self.assertEqual(types, {"a_total": "counter", "h": "histogram"})
        self.assertEqual(sample(samples, "a_total", k='v"\\\n'), 1)

    def test_checker__each_violation__rejected(self):
        bad = {
            "counter without _total": "# TYPE a counter\na 1\n",
            "no TYPE": "a_total 1\n",
            "bad name": "# TYPE 1a gauge\n1a 1\n",
            "bad escape": "# TYPE g gauge\ng{k=\"\\t\"} 1\n",
            "unquoted label": "# TYPE g gauge\ng{k=v} 1\n",
            "bad number": "# TYPE g gauge\ng one\n",
            "duplicate series": "# TYPE g gauge\ng 1\ng 2\n",
            "missing newline": "# TYPE g gauge\ng 1",
            "blank line": "# TYPE g gauge\n\ng 1\n",
            "not cumulative": "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "+Inf != count": "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
            "no +Inf": "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
            "split family": "# TYPE g gauge\ng{a=\"1\"} 1\n# TYPE f gauge\nf 1\ng{a=\"2\"} 1\n",
            "negative counter": "# TYPE c_total counter\nc_total -1\n",
        }
        for why, text in bad.items():
            with self.subTest(why):
                with self.assertRaises(PromFormatError):
                    parse_prometheus(text)


class InstallTest(unittest.TestCase):
    """make install into a DESTDIR, twice (an existing config survives), then make uninstall."""

    def make(self, target, destdir, build):
        # INSTALL_BIN: install the binary under test as built (no rebuild); BUILD: a scratch dir so this make run
        # never touches the flags stamp of the build under test.
        return subprocess.run(["make", "-s", "-C", ROOT, target, f"DESTDIR={destdir}", "PREFIX=/usr",
                               f"BUILD={build}", f"INSTALL_BIN={BINARY}"],
                              capture_output=True, text=True, timeout=120)

    def test_install__twice_then_uninstall__layout_config_kept_and_removed(self):
        dest = tempfile.mkdtemp(prefix="followupd-destdir-")
        build = tempfile.mkdtemp(prefix="followupd-build-")
        self.addCleanup(shutil.rmtree, dest, True)
        self.addCleanup(shutil.rmtree, build, True)
        run = self.make("install", dest, build)
        self.assertEqual(run.returncode, 0, run.stderr)
        expected = {
            "usr/bin/followupd": 0o755,
            "usr/lib/systemd/system/followupd.service": 0o644,
            "usr/share/man/man8/followupd.8": 0o644,
            "usr/share/followupd/followupd.conf.example": 0o644,
            "usr/share/followupd/monitoring/followupd-dashboard.json": 0o644,
            "usr/share/followupd/monitoring/followupd-alerts.yml": 0o644,
            "etc/followupd/followupd.conf": 0o644,
        }
        for name in sorted(os.listdir(os.path.join(ROOT, "sql", "migrations"))):
            expected[f"usr/share/followupd/sql/migrations/{name}"] = 0o644
        for name in sorted(os.listdir(os.path.join(ROOT, "sql", "rollback"))):
            expected[f"usr/share/followupd/sql/rollback/{name}"] = 0o644
        for rel, mode in expected.items():
            path = os.path.join(dest, rel)
            self.assertTrue(os.path.isfile(path), rel)
            self.assertEqual(os.stat(path).st_mode & 0o777, mode, rel)
        self.assertEqual(os.stat(os.path.join(dest, "etc/followupd/credentials")).st_mode & 0o777, 0o700)
        with open(os.path.join(dest, "usr/lib/systemd/system/followupd.service")) as f:
            self.assertIn("\nExecStart=/usr/bin/followupd --config /etc/followupd/followupd.conf\n", f.read())
        with open(os.path.join(ROOT, "conf", "followupd.conf.example")) as f, \
                open(os.path.join(dest, "etc/followupd/followupd.conf")) as g:
            self.assertEqual(f.read(), g.read())
        with open(BINARY, "rb") as f, open(os.path.join(dest, "usr/bin/followupd"), "rb") as g:
            self.assertEqual(f.read(), g.read())

        # The installed binary finds its SQL next to it (share/followupd/sql), not in the current directory.
        conf = os.path.join(dest, "migrate.conf")
        with open(conf, "w") as f:
            f.write(f"[database]\nconninfo = host=127.0.0.1 port={free_port()} dbname=x connect_timeout=2\n"
                    "schemas = tenant_a\n[queue]\nbackend = local\n[voice_agent]\nbase_url = http://127.0.0.1:9\n")
        mig = subprocess.run([os.path.join(dest, "usr/bin/followupd"), "--config", conf, "migrate"], cwd=dest,
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(mig.returncode, 1)   # nothing listens on that port
        self.assertIn(f'"sql_dir":"{os.path.realpath(dest)}/usr/share/followupd/sql/migrations"', mig.stderr)
        n_migrations = len([n for n in os.listdir(os.path.join(ROOT, "sql", "migrations")) if n.endswith(".sql")])
        self.assertIn(f'"files":"{n_migrations}"', mig.stderr)

        # Second install: the operator's configuration is kept.
        with open(os.path.join(dest, "etc/followupd/followupd.conf"), "w") as f:
            f.write("# operator's own\n")
        run = self.make("install", dest, build)
        self.assertEqual(run.returncode, 0, run.stderr)
        with open(os.path.join(dest, "etc/followupd/followupd.conf")) as f:
            self.assertEqual(f.read(), "# operator's own\n")
        self.assertTrue(os.path.isfile(os.path.join(dest, "usr/bin/followupd")))

        run = self.make("uninstall", dest, build)
        self.assertEqual(run.returncode, 0, run.stderr)
        for rel in expected:
            if not rel.startswith("etc/"):
                self.assertFalse(os.path.exists(os.path.join(dest, rel)), rel)
        self.assertFalse(os.path.exists(os.path.join(dest, "usr/share/followupd")))
        with open(os.path.join(dest, "etc/followupd/followupd.conf")) as f:
            self.assertEqual(f.read(), "# operator's own\n")


if __name__ == "__main__":
    unittest.main()
