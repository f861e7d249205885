"""`make deb` and `make deps`: the Debian package is built from the already built daemon (no compile; lintian
reports no error, or the target fails), its unpacked contents are the install layout with the configuration as a
conffile, and it installs on this machine: `followupd --version` runs, `systemd-analyze verify` accepts the
installed unit, the unit is not enabled, and a purge leaves nothing behind. `make deps` with everything present
runs no apt-get and prints nothing; a missing test tool is installed without its Recommends.

The install test needs root (the CI machine is a throwaway root machine) and removes the package again, also when
it fails; a package left behind by an interrupted earlier run is purged first. The package holds the plain build
(buildutil.plain_binary: under SANITIZE= runs the sanitizer-free daemon valgrind uses too).
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from buildutil import make_env, plain_binary  # noqa: E402
from daemon import ROOT  # noqa: E402

PACKAGE = "followupd"
UNIT = "/lib/systemd/system/followupd.service"
with open(os.path.join(ROOT, "VERSION")) as _f:
    VERSION = _f.read().strip()

_built = {}


def run(cmd, timeout=300, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def make(*args, env=None):
    return run(["make", "--no-print-directory", "-C", ROOT, *args], env=env or make_env())


def built_deb():
    """(make result, .deb path, scratch build dir, packaged binary) of one `make deb` per test run."""
    if not _built:
        scratch = tempfile.mkdtemp(prefix="followupd-deb-")
        binary = plain_binary()
        proc = make("deb", f"BUILD={scratch}", f"INSTALL_BIN={binary}")
        debs = glob.glob(os.path.join(scratch, "deb", f"{PACKAGE}_{VERSION}_*.deb"))
        _built.update(proc=proc, deb=debs[0] if len(debs) == 1 else None, scratch=scratch, binary=binary)
    return _built


def tearDownModule():
    if _built:
        shutil.rmtree(_built["scratch"], ignore_errors=True)


def build_id(path):
    out = run(["readelf", "-n", path]).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if "Build ID" in line), None)


def installed(package=PACKAGE):
    q = run(["dpkg-query", "-W", "-f=${Status}", package])
    return q.returncode == 0 and "install ok installed" in q.stdout


def purge():
    proc = run(["dpkg", "--purge", PACKAGE], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


class DebBuildTest(unittest.TestCase):
    def setUp(self):
        self.b = built_deb()
        self.assertEqual(self.b["proc"].returncode, 0, self.b["proc"].stdout[-3000:] + self.b["proc"].stderr[-3000:])
        self.assertIsNotNone(self.b["deb"], os.listdir(os.path.join(self.b["scratch"], "deb")))

    def test_make_deb__built_tree__no_compile_quiet_and_lintian_without_errors(self):
        out = self.b["proc"].stdout
        lines = [line.strip().split()[0] for line in out.splitlines() if line.startswith("  ")]
        self.assertEqual(lines, ["DEB", "LINTIAN"], out)          # quiet, and nothing compiled ("  CC")
        lint = run(["lintian", "--fail-on", "error", self.b["deb"]])
        self.assertEqual(lint.returncode, 0, lint.stdout + lint.stderr)
        self.assertFalse([line for line in lint.stdout.splitlines() if line.startswith("E:")], lint.stdout)

    def test_deb_contents__unpacked__install_layout_conffile_and_the_tested_binary(self):
        root = tempfile.mkdtemp(prefix="followupd-deb-x-")
        self.addCleanup(shutil.rmtree, root, True)
        self.assertEqual(run(["dpkg-deb", "-x", self.b["deb"], root]).returncode, 0)
        expected = {
            "usr/bin/followupd": 0o755,
            UNIT.lstrip("/"): 0o644,
            "etc/followupd/followupd.conf": 0o644,
            "usr/share/man/man8/followupd.8.gz": 0o644,
            "usr/share/followupd/followupd.conf.example": 0o644,
            "usr/share/followupd/monitoring/followupd-dashboard.json": 0o644,
            "usr/share/followupd/monitoring/followupd-alerts.yml": 0o644,
            "usr/share/doc/followupd/copyright": 0o644,
            "usr/share/doc/followupd/README.md.gz": 0o644,
        }
        for kind in ("migrations", "rollback"):
            for name in sorted(os.listdir(os.path.join(ROOT, "sql", kind))):
                expected[f"usr/share/followupd/sql/{kind}/{name}"] = 0o644
        for rel, mode in expected.items():
            with self.subTest(rel):
                path = os.path.join(root, rel)
                self.assertTrue(os.path.isfile(path))
                self.assertEqual(os.stat(path).st_mode & 0o777, mode)
        for kind in ("migrations", "rollback"):
            for name in os.listdir(os.path.join(ROOT, "sql", kind)):
                with open(os.path.join(ROOT, "sql", kind, name), "rb") as f, \
                        open(os.path.join(root, "usr/share/followupd/sql", kind, name), "rb") as g:
                    self.assertEqual(f.read(), g.read(), name)
        with open(os.path.join(ROOT, "conf", "followupd.conf.example")) as f, \
                open(os.path.join(root, "etc/followupd/followupd.conf")) as g:
            self.assertEqual(f.read(), g.read())
        with open(os.path.join(root, UNIT.lstrip("/"))) as f:
            self.assertIn("\nExecStart=/usr/bin/followupd --config /etc/followupd/followupd.conf\n", f.read())
        # Secrets live in a directory the postinst makes 0700; a shipped one would be widened to 0755.
        self.assertFalse(os.path.exists(os.path.join(root, "etc/followupd/credentials")))
        # The binary `make` built and the suite ran (stripped by dh_strip: same build id).
        self.assertIsNotNone(build_id(self.b["binary"]))
        self.assertEqual(build_id(os.path.join(root, "usr/bin/followupd")), build_id(self.b["binary"]))

        ctl = os.path.join(root, "DEBIAN")
        self.assertEqual(run(["dpkg-deb", "-e", self.b["deb"], ctl]).returncode, 0)
        with open(os.path.join(ctl, "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/followupd/followupd.conf"])
        fields = run(["dpkg-deb", "-f", self.b["deb"], "Package", "Version", "Depends"]).stdout
        self.assertIn(f"Package: {PACKAGE}\n", fields)
        self.assertIn(f"Version: {VERSION}\n", fields)
        for lib in ("libpq5", "libuv1", "libcurl4", "libjansson4", "libssl3"):
            self.assertIn(lib, fields)

    def test_make_deb__changelog_behind_version__refused(self):
        proc = make("deb", "VERSION=99.0.0", f"BUILD={self.b['scratch']}/other", f"INSTALL_BIN={self.b['binary']}")
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(f"debian/changelog is at {VERSION} but VERSION is 99.0.0", proc.stderr)


class DebInstallTest(unittest.TestCase):
    def test_dpkg_install__built_deb__version_runs_unit_verifies_disabled_then_purge_leaves_nothing(self):
        self.assertEqual(os.geteuid(), 0, "installing the package needs root (the CI machine runs as root)")
        b = built_deb()
        self.assertIsNotNone(b["deb"], b["proc"].stdout + b["proc"].stderr)
        if installed():
            purge()                                  # left behind by an interrupted earlier run
        for path in ("/usr/bin/followupd", UNIT, "/etc/followupd"):
            self.assertFalse(os.path.exists(path), f"{path} exists before the package is installed")
        self.addCleanup(lambda: installed() and purge())

        proc = run(["dpkg", "-i", b["deb"]], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertTrue(installed())
        version = run(["/usr/bin/followupd", "--version"])
        self.assertEqual((version.returncode, version.stdout.strip()), (0, f"followupd {VERSION}"))
        verify = run(["systemd-analyze", "verify", UNIT])
        self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)
        self.assertEqual(os.stat("/etc/followupd/credentials").st_mode & 0o777, 0o700)
        self.assertFalse(os.path.lexists("/etc/systemd/system/multi-user.target.wants/followupd.service"),
                         "installed enabled: it must wait for its configuration and credentials")

        purge()
        self.assertFalse(installed())
        for path in ("/usr/bin/followupd", UNIT, "/etc/followupd", "/usr/share/followupd"):
            self.assertFalse(os.path.exists(path), f"{path} left after purge")


class DepsTest(unittest.TestCase):
    """`make deps` against a recording stand-in for apt-get (first on PATH): nothing is really installed."""

    def fake_apt(self):
        d = tempfile.mkdtemp(prefix="followupd-fake-apt-")
        self.addCleanup(shutil.rmtree, d, True)
        log = os.path.join(d, "calls")
        with open(os.path.join(d, "apt-get"), "w") as f:
            f.write(f'#!/bin/sh\necho "$*" >> {log}\n')
        os.chmod(os.path.join(d, "apt-get"), 0o755)
        return make_env({"PATH": d + os.pathsep + os.environ["PATH"]}), log

    def calls(self, log):
        if not os.path.exists(log):
            return []
        with open(log) as f:
            return f.read().splitlines()

    def test_make_deps__everything_installed__no_apt_get_and_silent(self):
        env, log = self.fake_apt()
        for _ in range(2):
            proc = make("deps", env=env)
            self.assertEqual((proc.returncode, proc.stdout, proc.stderr), (0, "", ""))
        self.assertEqual(self.calls(log), [])

    def test_make_deps__test_tool_missing__installed_without_recommends(self):
        env, log = self.fake_apt()
        proc = make("deps", "DEB_PKGS_NORECOMMENDS=followupd-test-absent-tool", env=env)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, "installing: followupd-test-absent-tool\n")
        self.assertEqual(self.calls(log), ["update -qq",
                                           "install -y -qq --no-install-recommends followupd-test-absent-tool"])


if __name__ == "__main__":
    unittest.main()
