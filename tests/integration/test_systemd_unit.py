"""systemd/followupd.service: hardening score (systemd-analyze security --offline=true, must be <= 1.0 and is
printed), `systemd-analyze verify`, and that the hardening still leaves the daemon what it needs (address families,
unicast networks), plus the credential wiring the unit and the example configuration document.

systemd-analyze comes from Debian's `systemd` package (`make deps`). No systemd instance is needed: both commands
read the unit file offline.
"""
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon import BINARY, ROOT, clean_env  # noqa: E402

UNIT = os.path.join(ROOT, "systemd", "followupd.service")
MAN_PAGE = os.path.join(ROOT, "daemon", "followupd.8")
EXAMPLE_CONF = os.path.join(ROOT, "conf", "followupd.conf.example")
MAX_EXPOSURE = 1.0


def unit_directives(path=UNIT):
    """[(section, key, value)] in file order (comments and blank lines skipped)."""
    out, section = [], None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            out.append((section, key.strip(), value.strip()))
    return out


def values(key, section="Service"):
    return [v for s, k, v in unit_directives() if s == section and k == key]


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


class SecurityScoreTest(unittest.TestCase):
    def test_security_offline__unit__exposure_at_most_1_0(self):
        proc = run(["systemd-analyze", "security", "--offline=true", "--no-pager", UNIT])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        m = re.search(r"Overall exposure level for followupd\.service: (\d+\.\d+)", proc.stdout)
        self.assertIsNotNone(m, proc.stdout[-2000:])
        score = float(m.group(1))
        print(f"\nsystemd-analyze security --offline=true systemd/followupd.service: exposure {score}", flush=True)
        self.assertLessEqual(score, MAX_EXPOSURE, proc.stdout)

    def test_hardening__network_the_daemon_needs__still_allowed(self):
        families = " ".join(values("RestrictAddressFamilies")).split()
        self.assertEqual(sorted(families), ["AF_INET", "AF_INET6", "AF_UNIX"])   # TCP + PostgreSQL/notify sockets
        self.assertFalse(values("PrivateNetwork"))
        self.assertEqual(values("IPAddressDeny"), ["any"])
        allowed = [ipaddress.ip_network(n) for v in values("IPAddressAllow") for n in v.split()]

        def allows(addr):
            a = ipaddress.ip_address(addr)
            return any(a.version == n.version and a in n for n in allowed)

        # PostgreSQL and the voice agent next door or on a private network, Google APIs, the GCE metadata server.
        for addr in ("127.0.0.1", "::1", "10.1.2.3", "172.16.5.4", "192.168.1.10", "142.250.74.106",
                     "199.36.153.8", "169.254.169.254", "2a00:1450:4001:82b::200a", "fd00::1", "fe80::1"):
            self.assertTrue(allows(addr), addr)
        for addr in ("224.0.0.251", "239.255.255.250", "255.255.255.255", "ff02::fb"):
            self.assertFalse(allows(addr), addr)

    def test_service__notify_watchdog_reload_restart_config_path(self):
        self.assertEqual(values("Type"), ["notify"])
        self.assertEqual(len(values("WatchdogSec")), 1)
        self.assertEqual(values("ExecReload"), ["/bin/kill -HUP $MAINPID"])
        self.assertEqual(values("Restart"), ["on-failure"])
        self.assertEqual(values("ExecStart"), ["/usr/bin/followupd --config /etc/followupd/followupd.conf"])
        self.assertEqual(values("DynamicUser"), ["yes"])
        self.assertEqual(values("UMask"), ["0077"])
        # systemd's stop timeout leaves room for the default drain (20 s) to finish before SIGKILL.
        self.assertEqual(values("TimeoutStopSec"), ["30s"])


class VerifyTest(unittest.TestCase):
    def test_verify__unit_with_built_binary__no_diagnostics(self):
        # `systemd-analyze verify` checks that ExecStart's binary exists and that Documentation=man:followupd(8)
        # resolves. The shipped unit points at the installed /usr/bin/followupd, which this machine does not have:
        # verify a copy whose ExecStart is the binary under test, with MANPATH reaching the man page, so both
        # checks are real (a missing binary or man page, a typo in any directive, an unknown setting: all fail).
        tmp = tempfile.mkdtemp(prefix="followupd-verify-")
        self.addCleanup(shutil.rmtree, tmp, True)
        with open(UNIT, encoding="utf-8") as f:
            text = f.read()
        self.assertIn("\nExecStart=/usr/bin/followupd ", text)
        unit = os.path.join(tmp, "followupd.service")
        with open(unit, "w", encoding="utf-8") as f:
            f.write(text.replace("\nExecStart=/usr/bin/followupd ", f"\nExecStart={BINARY} "))
        os.makedirs(os.path.join(tmp, "man", "man8"))
        shutil.copy(MAN_PAGE, os.path.join(tmp, "man", "man8", "followupd.8"))
        env = dict(os.environ, MANPATH=os.path.join(tmp, "man"), SYSTEMD_PAGER="cat")
        proc = run(["systemd-analyze", "verify", unit], env=env)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertEqual(proc.stderr.strip(), "", proc.stderr)

    def test_verify__binary_missing__reported(self):
        # The same check fails when ExecStart names a binary that does not exist (the test above can fail).
        tmp = tempfile.mkdtemp(prefix="followupd-verify-")
        self.addCleanup(shutil.rmtree, tmp, True)
        with open(UNIT, encoding="utf-8") as f:
            text = f.read()
        unit = os.path.join(tmp, "followupd.service")
        with open(unit, "w", encoding="utf-8") as f:
            f.write(text.replace("\nExecStart=/usr/bin/followupd ", f"\nExecStart={tmp}/no-such-followupd "))
        proc = run(["systemd-analyze", "verify", "--man=no", unit])
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("no-such-followupd", proc.stderr)


class CredentialsTest(unittest.TestCase):
    """LoadCredential= names, their SetCredential= fallbacks and the *_file keys the config example documents."""

    def test_load_credential__four_secrets__documented_in_the_example_config(self):
        loaded = dict(v.split(":", 1) for v in values("LoadCredential"))
        self.assertEqual(sorted(loaded), ["db-conninfo", "google-key.json", "shared-secret", "voice-agent-token"])
        for name, path in loaded.items():
            self.assertEqual(path, f"/etc/followupd/credentials/{name}")
        fallbacks = dict(v.split(":", 1) for v in values("SetCredential"))
        # The database is required (no fallback: the unit refuses to start without it); the rest are optional.
        self.assertEqual(sorted(fallbacks), ["google-key.json", "shared-secret", "voice-agent-token"])
        with open(EXAMPLE_CONF, encoding="utf-8") as f:
            conf = f.read()
        for line in ("conninfo_file = db-conninfo", "token_file = voice-agent-token",
                     "shared_secret_file = shared-secret",
                     "credentials = /run/credentials/followupd.service/google-key.json"):
            self.assertIn(line, conf)

    def test_credentials_directory__unit_names__config_loads_them(self):
        # What systemd hands the daemon: $CREDENTIALS_DIRECTORY with the credential files, unused ones holding the
        # SetCredential= fallback (one newline). --check-config with the documented *_file keys must accept it.
        tmp = tempfile.mkdtemp(prefix="followupd-creds-")
        self.addCleanup(shutil.rmtree, tmp, True)
        creds = os.path.join(tmp, "credentials")
        os.mkdir(creds, 0o700)
        files = {"db-conninfo": "host=127.0.0.1 dbname=lad user=followupd password=s3cret-pass\n",
                 "voice-agent-token": "\n", "shared-secret": "0123456789abcdef0123\n", "google-key.json": "\n"}
        for name, content in files.items():
            with open(os.path.join(creds, name), "w") as f:
                f.write(content)
        conf = os.path.join(tmp, "followupd.conf")
        with open(conf, "w") as f:
            f.write("[database]\nconninfo_file = db-conninfo\nschemas = tenant_a\n[queue]\nbackend = local\n"
                    "[auth]\nmode = shared_secret\nshared_secret_file = shared-secret\n"
                    "[voice_agent]\nbase_url = http://127.0.0.1:3000\ntoken_file = voice-agent-token\n")
        proc = run([BINARY, "--config", conf, "--check-config"], env=clean_env({"CREDENTIALS_DIRECTORY": creds}))
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertNotIn("s3cret-pass", proc.stderr)
        # Without the directory the relative names do not resolve: the check fails (so the above is meaningful).
        proc = run([BINARY, "--config", conf, "--check-config"], env=clean_env(), cwd=tmp)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("conninfo_file", proc.stderr)


if __name__ == "__main__":
    unittest.main()
