"""Fuzz smoke run: every libFuzzer target in fuzz/ runs briefly on its checked-in seed corpus.

The targets are built first (`make fuzz-build`, clang + ASan + UBSan + libFuzzer) into $FOLLOWUPD_BUILD/fuzz.
Each then runs for FUZZ_SMOKE_SECONDS (default 10) on a scratch corpus seeded from fuzz/corpus/<target>, which
also replays the regression inputs kept there (regress-*) first. A target fails the test when libFuzzer exits
non-zero, reports a crash/leak/sanitizer error or a timeout, or did not execute anything. The full `make fuzz
FUZZ_SECONDS=60` is the longer run; this one keeps every `make test` honest in about a minute.
"""
import glob
import os
import re
import shutil
import subprocess
import tempfile
import unittest

ROOT = os.environ.get("FOLLOWUPD_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("FOLLOWUPD_BUILD") or os.path.join(ROOT, "build")
FUZZ_BUILD = os.path.join(BUILD, "fuzz")
SECONDS = int(os.environ.get("FUZZ_SMOKE_SECONDS", "10"))
TARGETS = sorted(os.path.basename(p)[:-2] for p in glob.glob(os.path.join(ROOT, "fuzz", "fuzz_*.c")))
FAILURE_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "ERROR: libFuzzer", "runtime error:",
                   "SUMMARY: ", "ALARM: working on the last Unit", "==ERROR")


def build_fuzzers():
    """`make fuzz-build` into $FOLLOWUPD_BUILD/fuzz. BUILD points at a scratch directory so this make never
    rewrites the flags stamp of the build under test (the fuzz targets have their own fixed flags)."""
    env = dict(os.environ)
    env.pop("MAKEFLAGS", None)   # do not inherit SANITIZE=/BUILD= of an enclosing `make test`
    env.pop("MFLAGS", None)
    cmd = ["make", "-s", "-j2", "fuzz-build", f"BUILD={os.path.join(FUZZ_BUILD, '.make')}",
           f"FUZZ_BUILD={FUZZ_BUILD}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}")


class FuzzSmokeTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        build_fuzzers()
        cls.tmp = tempfile.mkdtemp(prefix="followupd-fuzz-smoke-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_fuzz__every_target__built_with_a_seed_corpus(self):
        self.assertGreaterEqual(len(TARGETS), 6, TARGETS)
        for t in TARGETS:
            self.assertTrue(os.access(os.path.join(FUZZ_BUILD, t), os.X_OK), f"{t} not built")
            seeds = glob.glob(os.path.join(ROOT, "fuzz", "corpus", t, "*"))
            self.assertTrue(seeds, f"fuzz/corpus/{t} has no seeds")

    def run_target(self, target):
        scratch = os.path.join(self.tmp, target)
        os.makedirs(scratch, exist_ok=True)
        args = [os.path.join(FUZZ_BUILD, target), f"-max_total_time={SECONDS}", "-timeout=10",
                "-rss_limit_mb=2048", "-print_final_stats=1", f"-artifact_prefix={scratch}/"]
        dict_path = os.path.join(ROOT, "fuzz", "dict", target + ".dict")
        if os.path.exists(dict_path):
            args.append(f"-dict={dict_path}")
        args += [scratch, os.path.join(ROOT, "fuzz", "corpus", target)]
        proc = subprocess.run(args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace", timeout=SECONDS + 120)
        out = proc.stdout
        tail = out[-6000:]
        self.assertEqual(proc.returncode, 0, f"{target} exited {proc.returncode}:\n{tail}")
        for marker in FAILURE_MARKERS:
            self.assertNotIn(marker, out, f"{target} reported a problem:\n{tail}")
        crashes = [p for p in os.listdir(scratch) if re.match(r"(crash|leak|timeout|oom)-", p)]
        self.assertEqual(crashes, [], f"{target} wrote failure artifacts")
        runs = re.search(r"stat::number_of_executed_units:\s+(\d+)", out)
        self.assertIsNotNone(runs, f"{target}: no final stats:\n{tail}")
        self.assertGreater(int(runs.group(1)), 0, f"{target} executed nothing")


def _make_test(target):
    def test(self):
        self.run_target(target)
    test.__name__ = f"test_fuzz__{target}__runs_{SECONDS}s_without_a_finding"
    return test


for _t in TARGETS:
    setattr(FuzzSmokeTests, f"test_fuzz__{_t}__runs_{SECONDS}s_without_a_finding", _make_test(_t))


if __name__ == "__main__":
    unittest.main()
