#!/usr/bin/env python3
"""followupd test runner: cmocka unit binaries, Python integration suites, the
compliance gate.  Prints one closing line `N passed, N failed` and exits non-zero
on any failure.  Integration suites expect PG* variables (pg_virtualenv sets them)."""
import argparse
import os
import re
import subprocess
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_unit(build):
    passed = failed = 0
    tdir = os.path.join(build, "tests")
    if not os.path.isdir(tdir):
        return 0, 0
    for name in sorted(os.listdir(tdir)):
        path = os.path.join(tdir, name)
        if not (name.startswith("test_") and os.access(path, os.X_OK)) or name.endswith(".d"):
            continue
        print(f"== unit {name}", flush=True)
        proc = subprocess.run([path], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace", timeout=600)
        out = proc.stdout
        p = sum(int(m) for m in re.findall(r"\[  PASSED  \] (\d+) test", out))
        f = sum(int(m) for m in re.findall(r"\[  FAILED  \] (\d+) test", out))
        if proc.returncode != 0 and f == 0:
            f = 1  # crashed or exited non-zero without cmocka's summary
        if f or proc.returncode != 0:
            sys.stdout.write(out)
        else:
            print(f"   {p} passed")
        passed += p
        failed += f
    return passed, failed


class CountingResult(unittest.TextTestResult):
    pass


def run_python(dirs, pattern="test_*.py"):
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for d in dirs:
        full = os.path.join(ROOT, d)
        if os.path.isdir(full):
            suite.addTests(loader.discover(full, pattern=pattern, top_level_dir=full))
    if suite.countTestCases() == 0:
        return 0, 0
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=CountingResult)
    res = runner.run(suite)
    failed = len(res.failures) + len(res.errors) + len(res.unexpectedSuccesses)
    skipped = len(res.skipped)
    passed = res.testsRun - failed - skipped
    if skipped:
        # A skipped test is not a pass: count it as a failure so nothing hides.
        failed += skipped
    return passed, failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--unit-only", action="store_true")
    ap.add_argument("-k", dest="only", default=None, help="run only python suites in this dir")
    ap.add_argument("--summary-file", default=None)
    args = ap.parse_args()
    build = os.path.abspath(os.path.join(ROOT, args.build))
    os.environ["FOLLOWUPD_BUILD"] = build
    os.environ["FOLLOWUPD_ROOT"] = ROOT
    passed = failed = 0
    if not args.only:
        p, f = run_unit(build)
        passed += p
        failed += f
    if not args.unit_only:
        dirs = [args.only] if args.only else ["tests/compliance", "tests/integration"]
        p, f = run_python(dirs)
        passed += p
        failed += f
    summary = f"{passed} passed, {failed} failed"
    print(summary)
    if args.summary_file:
        with open(args.summary_file, "w") as fh:
            fh.write(summary + "\n")
    sys.exit(1 if failed or passed == 0 else 0)


if __name__ == "__main__":
    main()
