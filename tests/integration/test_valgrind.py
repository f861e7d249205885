"""One end-to-end scenario with followupd running under valgrind (memcheck, full leak check).

The scenario walks the whole happy path plus a few refusals: startup (config, PostgreSQL pool and LISTEN, JWKS
fetch, HTTP listener), a booking inserted -> NOTIFY -> Cloud Task created with an access token from the fake
token endpoint -> the task delivered with a real OIDC token -> the voice agent called once -> row executed; a
duplicate delivery; requests refused with 401/400/404/431; then SIGTERM and a clean shutdown.

Valgrind must report zero errors (`--error-exitcode`; definite leaks count as errors), which includes zero
invalid reads/writes, and zero bytes "definitely lost".  ASan binaries cannot run under valgrind, so when
$FOLLOWUPD_BUILD is a sanitizer build, a plain daemon is built next to it first (`make BUILD=<build>/valgrind`).
"""
import glob
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from buildutil import plain_binary  # noqa: E402
from daemon import Daemon  # noqa: E402
from stack import Stack, free_port, wait_for  # noqa: E402

VALGRIND_EXIT = 99
SCHEMA = "tenant_a"
SLOW = 120.0   # everything is ~20-50x slower under memcheck


def write_wrapper(directory, binary):
    """An executable that runs the daemon under memcheck, its report in directory/memcheck.<pid>.log."""
    path = os.path.join(directory, "followupd-memcheck")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                f"exec valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite "
                f"--errors-for-leak-kinds=definite --error-exitcode={VALGRIND_EXIT} --num-callers=40 "
                f"--log-file={directory}/memcheck.%p.log {binary} \"$@\"\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


class ValgrindScenarioTests(unittest.TestCase):
    def test_valgrind__end_to_end_scenario__no_errors_no_definite_leaks(self):
        if shutil.which("valgrind") is None:
            raise AssertionError("valgrind is not installed (make deps installs it)")
        binary = plain_binary()
        tmp = tempfile.mkdtemp(prefix="followupd-valgrind-")
        try:
            self.run_scenario(write_wrapper(tmp, binary))
            reports = glob.glob(os.path.join(tmp, "memcheck.*.log"))
            self.assertEqual(len(reports), 1, reports)
            with open(reports[0]) as f:
                self.check_report(f.read())
        finally:
            if os.environ.get("FOLLOWUPD_KEEP_VALGRIND_LOG"):
                print(f"memcheck reports kept in {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)

    def run_scenario(self, wrapper):
        with Stack(schemas=(SCHEMA,), start_daemon=False) as s:
            d = Daemon(binary=wrapper)
            d.port = free_port()
            s.daemons.append(d)
            d.start(s.config(d.port))
            s.wait_ready(d, timeout=SLOW)
            s.daemon = d

            bid, _, name, body = s.scheduled_booking(SCHEMA, tenant=str(uuid.uuid4()), timeout=SLOW)
            [(status, answer)] = s.ct.dispatch(name)
            self.assertEqual((status, json.loads(answer)), (200, {"status": "executed"}))
            [(status, answer)] = s.ct.dispatch(name, allow_done=True)   # a duplicate delivery
            self.assertEqual(status, 200)
            self.assertEqual(len(s.va.calls_for_booking(bid)), 1)
            s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "executed", timeout=SLOW)

            path = Stack.EXECUTE_PATH.format(bid)
            json_ct = ("Content-Type", "application/json")
            self.assertEqual(s.raw_request(d, "POST", path, [json_ct, ("Authorization", "Bearer x.y.z")],
                                           json.dumps(body), timeout=SLOW)[0], 401)
            self.assertEqual(s.raw_request(d, "POST", path, [json_ct, ("Authorization", "Bearer " + s.oidc_token())],
                                           "{\"tenantId\":1}", timeout=SLOW)[0], 400)
            self.assertEqual(s.raw_request(d, "GET", "/nope", timeout=SLOW)[0], 404)
            self.assertEqual(s.raw_request(d, "GET", "/healthz", [("X-Pad", "p" * 20000)], timeout=SLOW)[0], 431)

            code, _ = d.stop(timeout=SLOW)
            self.assertEqual(code, 0, "followupd under valgrind did not exit cleanly "
                                      f"({VALGRIND_EXIT} = memcheck found errors); last logs: {d.logs[-5:]}")
            d.assert_clean()

    def check_report(self, report):
        summary = re.search(r"ERROR SUMMARY: (\d+) errors", report)
        self.assertIsNotNone(summary, report[-3000:])
        for kind in ("Invalid read", "Invalid write", "Invalid free", "Mismatched free", "uninitialised"):
            self.assertNotIn(kind, report, f"memcheck: {kind}\n{report[-6000:]}")
        definitely = re.search(r"definitely lost: ([\d,]+) bytes", report)
        # the LEAK SUMMARY is left out only when every block was freed
        self.assertTrue(definitely is not None or "All heap blocks were freed" in report, report[-3000:])
        if definitely is not None:
            self.assertEqual(definitely.group(1), "0", report[-6000:])
        self.assertEqual(summary.group(1), "0", report[-6000:])


if __name__ == "__main__":
    unittest.main()
