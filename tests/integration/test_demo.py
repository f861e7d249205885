"""`make demo` end to end, exactly as a newcomer runs it: with PG* pointing at a running server, the Makefile's
demo target uses that server (PGHOST set and pg_isready succeeds) instead of a pg_virtualenv cluster.

The demo must exit 0 in under a minute, print each booking's journey as a readable timeline (no raw JSON), and
end with the lead_bookings table: A, B, D, F executed, C cancelled, E (a meeting) pending, 4 voice-agent calls.
DEMO_DB gives the run its own database (the demo drops it at the end; tearDown makes sure).
"""
import os
import re
import subprocess
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pgutil import REPO_ROOT  # noqa: E402

TIME_LIMIT_S = 60
EXPECTED_TASK_STATUS = {"A": "executed", "B": "executed", "C": "cancelled", "D": "executed", "E": "pending",
                        "F": "executed"}
TIMELINE_LINE = re.compile(r"^\s+(\d+\.\d+)s\s+([A-F])\s+(\S+)")


def parse_final_table(out):
    """{booking label: {column: value}} from the ' | '-separated table after its header line."""
    lines = out.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.split("|")[0].strip() == "booking")
    header = [c.strip() for c in lines[header_at].split("|")]
    rows = {}
    for line in lines[header_at + 2:]:
        if "|" not in line:
            break
        cells = [c.strip() for c in line.split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def timeline_steps(out):
    """{label: [step, ...]} in the order the timeline printed them."""
    steps = {}
    for line in out.splitlines():
        m = TIMELINE_LINE.match(line)
        if m:
            steps.setdefault(m.group(2), []).append(m.group(3))
    return steps


class MakeDemoTest(unittest.TestCase):
    def setUp(self):
        self.db = f"demo_{uuid.uuid4().hex[:12]}"

    def tearDown(self):
        env = {k: v for k, v in os.environ.items() if k != "PGOPTIONS"}
        subprocess.run(["psql", "-X", "-q", "-d", os.environ.get("PGDATABASE", "postgres"), "-c",
                        f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'], env=env, capture_output=True,
                       timeout=60)

    def run_make_demo(self):
        self.assertTrue(os.environ.get("PGHOST"), "PGHOST must point at the test server (else make demo would "
                                                  "start its own pg_virtualenv cluster)")
        env = dict(os.environ, DEMO_DB=self.db)
        env.pop("DEMO_KEEP", None)
        env.pop("PGOPTIONS", None)
        t0 = time.monotonic()
        try:
            proc = subprocess.run(["make", "--no-print-directory", "demo"], cwd=REPO_ROOT, env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=2 * TIME_LIMIT_S)
        except subprocess.TimeoutExpired as exc:
            self.fail(f"make demo still running after {2 * TIME_LIMIT_S}s:\n{exc.stdout}")
        return proc, time.monotonic() - t0

    def test_make_demo__exits_0_in_under_a_minute__timeline_and_final_table_as_expected(self):
        proc, elapsed = self.run_make_demo()
        out = proc.stdout
        print(f"\n  make demo: exit {proc.returncode} in {elapsed:.1f}s", flush=True)
        self.assertEqual(proc.returncode, 0, f"stdout:\n{out}\nstderr:\n{proc.stderr[-3000:]}")
        self.assertLess(elapsed, TIME_LIMIT_S)

        table = parse_final_table(out)
        self.assertEqual({label: row["task_status"] for label, row in table.items()}, EXPECTED_TASK_STATUS, out)
        for label in ("A", "B", "D", "F"):
            self.assertRegex(table[label]["task_name"], r"^local/[0-9a-f]+\.\.\.$")
            self.assertEqual(table[label]["attempts"], "1")
        self.assertEqual(table["C"]["status"], "cancelled")
        self.assertEqual(table["E"]["booking_type"], "meeting")
        self.assertEqual(re.findall(r"^voice-agent calls: (\d+)", out, re.M), ["4"], out)
        self.assertRegex(out.rstrip().splitlines()[-1], r"followupd stopped \(exit 0\).* OK$")

        # Each booking's journey, readable on the timeline.
        steps = timeline_steps(out)
        for label in ("A", "B", "F"):
            self.assertEqual([s for s in steps[label] if s in ("INSERT", "scheduled", "called", "executed")],
                             ["INSERT", "scheduled", "called", "executed"], f"{label}: {steps[label]}")
        self.assertEqual([s for s in steps["D"] if s in ("scheduled", "rescheduled", "called", "executed")],
                         ["scheduled", "rescheduled", "called", "executed"], steps["D"])
        self.assertIn("cancelled", steps["C"])
        self.assertNotIn("called", steps["C"])
        self.assertEqual(steps["E"], ["INSERT"])
        # followupd's JSON logs go to a file, not to the terminal.
        self.assertEqual([line for line in out.splitlines() if line.lstrip().startswith("{")], [])
        self.assertRegex(out, r"JSON logs go to \S*/demo/followupd\.log")


if __name__ == "__main__":
    unittest.main()
