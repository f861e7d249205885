"""Credentials never reach followupd's logs or answers, driven through the real binary.

Every secret of these tests is a marker no log text shares 4 bytes with, and the check is the logger's own unit:
neither the marker nor any 4-byte piece of it may appear on stdout, stderr or in an HTTP answer.

- A table of conninfos libpq cannot parse (bad percent-encoding, an unquoted password with spaces, an
  unterminated quote, a split password that looks like a keyword, %00, a broken URI query), each given inline,
  as `conninfo_file` (via $CREDENTIALS_DIRECTORY), as FOLLOWUPD_DATABASE_CONNINFO and as
  FOLLOWUPD_DATABASE_CONNINFO_FILE, run through `--check-config`, start and `migrate`: exit 1, the problem named,
  the text never shown.
- Conninfos libpq parses but that fail when connecting (nothing listening, an unknown role with a password that
  has a space, a password piece given as sslmode, which libpq quotes): the daemon runs and retries for several
  attempts, answers /readyz, /metrics and callbacks, reloads, stops; `migrate` fails; nothing leaks — also not
  the voice-agent token and the shared secret, configured inline, as `*_file` and from the environment.
- The configuration parser: a conninfo continued on a second line, URLs with user:password@, a token with CR/LF,
  a secret pasted into another key; and the Google key file: broken JSON, a bogus key, its `type` field.

Needs $FOLLOWUPD_BUILD/followupd and PG* pointing at a PostgreSQL server (the unknown-role case connects to it).
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daemon import BINARY, ROOT, Daemon, clean_env, msg_contains, msg_is, parse_log_lines  # noqa: E402
from stack import free_port  # noqa: E402

PIECE = 4                          # the logger redacts every piece of a secret this long or longer
PASSWORD = "QvzKwJxTrYpM"          # no 4 bytes of a marker appear in log text, ids, paths or another marker
TOKEN = "HgWnZsQvRkTm"
SHARED_SECRET = "PzXqLmVnWsJtRkHgNb"
GOOGLE_KEY = "ZrNwQsKpVtJmXh"
ALL_SECRETS = (PASSWORD, TOKEN, SHARED_SECRET, GOOGLE_KEY)
CMD_TIMEOUT = 30
SQL_DIR = os.path.join(ROOT, "sql")

HEAD, TAIL = PASSWORD[:6], PASSWORD[6:]   # the halves a parser splits an unquoted password into
BAD_CONNINFOS = [  # (name, conninfo, the problem the error must name)
    ("bad_percent_encoding", f"postgresql://followupd:{HEAD}%zz{TAIL}@127.0.0.1:5432/lad",
     "invalid percent-encoding in URI"),
    ("unquoted_password_with_spaces", f"host=127.0.0.1 password={HEAD} {TAIL} dbname=lad",
     "missing '=' after a keyword"),
    ("unterminated_quote", f"host=127.0.0.1 password='{PASSWORD} dbname=lad", "unterminated quoted string"),
    ("password_piece_looks_like_keyword", f"host=127.0.0.1 password={HEAD} {TAIL}=1", "unknown option keyword"),
    ("percent_encoded_nul", f"postgresql://followupd:{HEAD}%00{TAIL}@127.0.0.1/lad",
     "percent-encoded NUL (%00) in URI"),
    ("broken_uri_query", f"postgresql://127.0.0.1/lad?password={HEAD}&{TAIL}", "malformed URI query parameter"),
]


def leaked_piece(text, secret):
    """The first piece of `secret` (PIECE bytes) found in text, or None."""
    for i in range(len(secret) - PIECE + 1):
        if secret[i:i + PIECE] in text:
            return secret[i:i + PIECE]
    return None


class Run:
    def __init__(self, proc):
        self.code = proc.returncode
        self.stdout = proc.stdout.decode("utf-8", "replace")
        self.stderr = proc.stderr.decode("utf-8", "replace")
        self.records, self.bad_lines = parse_log_lines(self.stderr)


class SecretsTestCase(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="followupd-secrets-")
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name
        self.creds = os.path.join(self.tmp, "credentials")
        os.mkdir(self.creds, 0o700)

    def write(self, name, text, directory=None):
        path = os.path.join(directory or self.tmp, name)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        return path

    def write_conf(self, text):
        return self.write(f"conf-{uuid.uuid4().hex[:8]}.conf", text)

    def run_binary(self, args, env=None):
        env = dict(env or {}, CREDENTIALS_DIRECTORY=self.creds)
        proc = subprocess.run([BINARY, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=clean_env(env), timeout=CMD_TIMEOUT, cwd=self.tmp)
        return Run(proc)

    def command(self, name, conf, env=None):
        args = {"check-config": ["--check-config", "--config", conf],
                "start": ["--config", conf],
                "migrate": ["--config", conf, "migrate", "--sql-dir", SQL_DIR]}[name]
        return self.run_binary(args, env)

    def assert_no_leak(self, text, secrets=ALL_SECRETS, where="output"):
        for secret in secrets:
            piece = leaked_piece(text, secret)
            self.assertIsNone(piece, f"{where} leaks {piece!r} of a secret:\n{text}")

    def assert_run_clean(self, run, secrets=ALL_SECRETS):
        self.assertEqual(run.bad_lines, [], "every stderr line is one JSON object")
        self.assertEqual(run.stdout, "", "nothing on stdout")
        self.assert_no_leak(run.stdout + run.stderr, secrets)

    def error_lines(self, run):
        return [r.get("error", "") for r in run.records if r.get("msg") == "configuration error"]

    def assert_config_error(self, run, *needles):
        errors = self.error_lines(run)
        self.assertTrue(any(all(n in e for n in needles) for e in errors), (needles, errors))


def secrets_conf(conninfo_line, extra=""):
    """A local-backend, shared-secret configuration whose every secret is a marker."""
    return (f"[database]\n{conninfo_line}\nschemas = tenant_a\n"
            f"[queue]\nbackend = local\n"
            f"[auth]\nmode = shared_secret\nshared_secret = {SHARED_SECRET}\n"
            f"[voice_agent]\nbase_url = http://127.0.0.1:9\ntoken = {TOKEN}\n{extra}")


class BadConninfoTest(SecretsTestCase):
    """Every command refuses a conninfo libpq cannot parse, names the problem and never shows the text."""

    def sources(self, conninfo):
        """(source name, config text, extra environment) giving `conninfo` in each supported way."""
        path = self.write("db-conninfo", conninfo + "\n", self.creds)
        return [("inline", secrets_conf(f"conninfo = {conninfo}"), {}),
                ("conninfo_file", secrets_conf("conninfo_file = db-conninfo"), {}),
                ("env", secrets_conf(""), {"FOLLOWUPD_DATABASE_CONNINFO": conninfo}),
                ("env_file", secrets_conf(""), {"FOLLOWUPD_DATABASE_CONNINFO_FILE": path})]

    def test_bad_conninfo__check_config_start_migrate_each_source__exit_1_problem_named_never_text(self):
        for name, conninfo, problem in BAD_CONNINFOS:
            for source, text, env in self.sources(conninfo):
                conf = self.write_conf(text)
                for command in ("check-config", "start", "migrate"):
                    with self.subTest(conninfo=name, source=source, command=command):
                        run = self.command(command, conf, env)
                        self.assertEqual(run.code, 1, run.stderr)
                        self.assert_config_error(run, "[database] conninfo", problem)
                        self.assertFalse([r for r in run.records if "missing required" in r.get("error", "")],
                                         "a refused conninfo is not also reported missing")
                        self.assertFalse([r for r in run.records if " started (" in r.get("msg", "")])
                        self.assert_run_clean(run)


# Conninfos libpq parses, whose connections fail: (name, conninfo, an error text the logs must show or None).
def failing_conninfos():
    closed = free_port()   # nothing listens there
    return [
        ("uri_password_nothing_listening",
         f"postgresql://followupd:{PASSWORD}@127.0.0.1:{closed}/lad?connect_timeout=2", None),
        ("unknown_role_password_with_space",
         f"host={os.environ['PGHOST']} port={os.environ['PGPORT']} user=no_such_role_{uuid.uuid4().hex[:6]} "
         f"password='{HEAD} {TAIL}' dbname=postgres",
         # the server's answer depends on its pg_hba.conf: trust says the role does not exist, password auth that
         # the password failed (pg_virtualenv); either way the message is passed on, redacted
         ("does not exist", "password authentication failed")),
        ("password_piece_given_as_sslmode",
         f"host=127.0.0.1 port={closed} password={HEAD} sslmode={TAIL}", ("conninfo: invalid sslmode value",)),
    ]


class FailingConnectionTest(SecretsTestCase):
    """A daemon that cannot connect keeps retrying, answering and reloading without showing a secret."""

    ATTEMPTS = 3

    def token_sources(self):
        """The voice-agent token and the shared secret inline, as *_file, and from the environment."""
        self.write("voice-agent-token", TOKEN + "\n", self.creds)
        self.write("shared-secret", SHARED_SECRET + "\n", self.creds)
        inline = "[auth]\nshared_secret = {s}\n[voice_agent]\ntoken = {t}\n".format(s=SHARED_SECRET, t=TOKEN)
        files = "[auth]\nshared_secret_file = shared-secret\n[voice_agent]\ntoken_file = voice-agent-token\n"
        return [("inline", inline, {}), ("files", files, {}),
                ("env", "", {"FOLLOWUPD_AUTH_SHARED_SECRET": SHARED_SECRET, "FOLLOWUPD_VOICE_AGENT_TOKEN": TOKEN})]

    def daemon_conf(self, conninfo, port, secrets_text):
        return (f"[database]\nconninfo = {conninfo}\nschemas = tenant_a\n"
                f"[http]\nlisten = 127.0.0.1:{port}\n[queue]\nbackend = local\n"
                f"[auth]\nmode = shared_secret\n"
                f"[voice_agent]\nbase_url = http://127.0.0.1:9\n{secrets_text}")

    def http(self, port, method, path, body=None, headers=None):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers or {},
                                     data=None if body is None else json.dumps(body).encode())
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def wait_attempts(self, d, n):
        failed = msg_contains("postgres connection attempt failed")
        for _ in range(n):
            d.wait_for_log(failed, timeout=30, since=d.mark())

    def answers(self, port):
        """What the daemon answers while it cannot reach the database (every body is checked for leaks)."""
        booking = str(uuid.uuid4())
        body = {"tenantId": str(uuid.uuid4()), "bookingId": booking, "schema": "tenant_a",
                "idempotencyKey": f"followup:x:{booking}:2026-11-28T16:00:00.000Z"}
        path = f"/api/deals-pipeline/bookings/{booking}/execute-followup"
        json_type = {"Content-Type": "application/json"}
        replies = [self.http(port, "GET", "/readyz"), self.http(port, "GET", "/metrics"),
                   self.http(port, "POST", path, body, dict(json_type, **{"X-CloudTasks-Secret": "wrong-secret"})),
                   self.http(port, "POST", path, body, dict(json_type, **{"X-CloudTasks-Secret": SHARED_SECRET}))]
        self.assertEqual([status for status, _ in replies], [503, 200, 401, 503], replies)
        return "\n".join(text for _, text in replies)

    def run_daemon(self, conninfo, secrets_text, env):
        port = free_port()
        with Daemon() as d:
            d.start(self.daemon_conf(conninfo, port, secrets_text), env=dict(env, CREDENTIALS_DIRECTORY=self.creds))
            d.wait_for_log(msg_contains(" started ("), timeout=10)
            self.wait_attempts(d, self.ATTEMPTS)
            answered = self.answers(port)
            d.write_config(self.daemon_conf(conninfo, port, secrets_text) + f"[http]\nlisten_typo = {PASSWORD}\n")
            mark = d.mark()
            d.send(signal.SIGHUP)
            d.wait_for_log(msg_contains("reload failed"), timeout=10, since=mark)
            self.wait_attempts(d, 1)
            code, _ = d.stop(timeout=10)
            self.assertEqual(code, 0, d.logs[-5:])
            self.assertEqual(d.bad_lines, [], "every stderr line is one JSON object")
            self.assertEqual(d.stdout, [], "nothing on stdout")
            return d.logs, answered

    def test_daemon_retrying_connections__each_failure_and_secret_source__nothing_leaks(self):
        for name, conninfo, shown in failing_conninfos():
            for source, secrets_text, env in self.token_sources():
                with self.subTest(conninfo=name, secrets=source):
                    logs, answered = self.run_daemon(conninfo, secrets_text, env)
                    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in logs)
                    attempts = [r for r in logs if r.get("msg") == "postgres connection attempt failed"]
                    self.assertGreaterEqual(len(attempts), self.ATTEMPTS + 1)
                    if shown is not None:
                        self.assertTrue(all(any(text_ in r.get("error", "") for text_ in shown) for r in attempts),
                                        attempts[:2])
                    self.assert_no_leak(text, where="logs")
                    self.assert_no_leak(answered, where="HTTP answers")

    def test_migrate_failing_connection__exit_1_error_named_nothing_leaks(self):
        for name, conninfo, shown in failing_conninfos():
            for source, secrets_text, env in self.token_sources():
                with self.subTest(conninfo=name, secrets=source):
                    conf = self.write_conf(self.daemon_conf(conninfo, 0, secrets_text))
                    run = self.command("migrate", conf, env)
                    self.assertEqual(run.code, 1, run.stderr)
                    failure = [r for r in run.records if r.get("msg") == "cannot connect to the database"]
                    self.assertEqual(len(failure), 1, run.records)
                    if shown is not None:
                        self.assertTrue(any(text_ in failure[0]["error"] for text_ in shown), failure[0]["error"])
                    self.assert_run_clean(run)


class ConfigParserTest(SecretsTestCase):
    """The configuration parser names what is wrong without echoing a secret."""

    def check(self, text, env=None):
        run = self.command("check-config", self.write_conf(text), env)
        self.assertEqual(run.code, 1, run.stderr)
        self.assert_run_clean(run)
        return run

    def test_conninfo_continued_on_next_line__stray_line_not_echoed(self):
        text = secrets_conf(f"conninfo = host=127.0.0.1 password={HEAD}\n  {TAIL} dbname=lad")
        run = self.check(text)
        self.assert_config_error(run, ":3:", "not shown")

    def test_url_with_user_password__refused_inline_and_env__credentials_not_echoed(self):
        url = f"http://agent:{TOKEN}@127.0.0.1:9"
        run = self.check(secrets_conf("conninfo = dbname=lad").replace("http://127.0.0.1:9", url))
        self.assert_config_error(run, "base_url", "must not contain '@'")
        run = self.check(secrets_conf("conninfo = dbname=lad"), env={"FOLLOWUPD_VOICE_AGENT_BASE_URL": url})
        self.assert_config_error(run, "FOLLOWUPD_VOICE_AGENT_BASE_URL", "must not contain '@'")
        run = self.check(secrets_conf("conninfo = dbname=lad", f"[cloudtasks]\nendpoint = https://{TOKEN}@x.test\n"))
        self.assert_config_error(run, "endpoint", "must not contain '@'")

    def test_token_file_with_header_injection__refused_without_echo(self):
        self.write("voice-agent-token", f"{TOKEN}\r\nX-Injected: yes\n", self.creds)
        text = secrets_conf("conninfo = dbname=lad").replace(f"token = {TOKEN}", "token_file = voice-agent-token")
        run = self.check(text)
        self.assert_config_error(run, "[voice_agent] token_file", "Bearer token")

    def test_secret_pasted_into_other_key__echo_redacted(self):
        text = secrets_conf(f"conninfo = host=127.0.0.1 password={PASSWORD}",
                            f"[http]\nlisten = {SHARED_SECRET}\n[cloudtasks]\ndispatch_deadline_s = {TOKEN}\n")
        run = self.check(text)
        self.assert_config_error(run, "listen = '[REDACTED]'")
        self.assert_config_error(run, "dispatch_deadline_s = '[REDACTED]'")


class GoogleKeyFileTest(SecretsTestCase):
    """A broken service-account key file is refused without quoting a byte of it."""

    def conf(self, keyfile):
        return (f"[database]\nconninfo = host=127.0.0.1 port={free_port()} password={PASSWORD}\n"
                f"schemas = tenant_a\n[http]\nlisten = 127.0.0.1:0\npublic_url = https://followupd.test\n"
                f"[cloudtasks]\nproject = p\nlocation = l\ncredentials = {keyfile}\n"
                f"[auth]\naudience = https://followupd.test\nservice_account = invoker@p.iam.gserviceaccount.com\n"
                f"[voice_agent]\nbase_url = http://127.0.0.1:9\ntoken = {TOKEN}\n")

    def test_broken_key_file__start_exit_1_named_without_content(self):
        pem = f"-----BEGIN PRIVATE KEY-----\\n{GOOGLE_KEY}{GOOGLE_KEY}\\n-----END PRIVATE KEY-----\\n"
        cases = [("not_json", '{"private_key": "' + GOOGLE_KEY, "not a JSON object"),
                 ("bogus_private_key", '{"type": "service_account", "client_email": "a@p.iam.gserviceaccount.com", '
                  f'"private_key": "{pem}", "token_uri": "https://oauth2.googleapis.com/token"}}',
                  "private_key is not a PEM RSA key"),
                 ("key_in_type_field", f'{{"type": "{GOOGLE_KEY}", "private_key": "{pem}"}}', "type is not")]
        for name, content, problem in cases:
            with self.subTest(case=name):
                keyfile = self.write("google-key.json", content, self.creds)
                run = self.command("start", self.write_conf(self.conf(keyfile)))
                self.assertEqual(run.code, 1, run.stderr)
                failed = [r for r in run.records if r.get("msg") == "cannot load Google credentials"]
                self.assertEqual(len(failed), 1, run.records)
                self.assertIn(problem, failed[0]["error"])
                self.assert_run_clean(run)


if __name__ == "__main__":
    unittest.main()
