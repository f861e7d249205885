"""The whole followupd stack for end-to-end tests: a throwaway database with the LAD table and our migrations in
each schema, the strict fake Cloud Tasks (token endpoint, JWKS, dispatch with real RS256 OIDC tokens), the strict
fake voice agent, and the real daemon binary configured against them.

    with Stack(schemas=("tenant_a",)) as s:
        bid = s.insert_booking("tenant_a", tenant=T1)
        s.wait_row("tenant_a", bid, lambda r: r["task_status"] == "scheduled")

Waiting is always on a condition with a deadline (never a blind sleep).
"""
import json
import os
import socket
import sys
import tempfile
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE)))

from daemon import Daemon, msg_contains, msg_is  # noqa: E402
from pgutil import REPO_ROOT, TempDB, quote_ident  # noqa: E402
from fakes.fake_cloudtasks import FakeCloudTasks  # noqa: E402
from fakes.fake_voice_agent import FakeVoiceAgent  # noqa: E402
from fakes import keys as keylib  # noqa: E402

INVOKER = "followupd-invoker@followupd-test.iam.gserviceaccount.com"
AUDIENCE = "https://followupd.test"
ROW_COLUMNS = ("id", "tenant_id", "booking_type", "status", "scheduled_at", "task_name", "task_scheduled_at",
               "task_status", "executed_at", "execution_attempts", "last_execution_error", "idempotency_key")

# The logger redacts every 4-byte piece of a secret, so a secret made of words ("va-secret-token") would
# redact those words ("token") wherever they appear in the logs: test secrets are random-looking.
VOICE_TOKEN = "vaQzWkRmXnTpGh"

_SHARED_OIDC_KEY = None


def shared_oidc_key():
    global _SHARED_OIDC_KEY
    if _SHARED_OIDC_KEY is None:
        _SHARED_OIDC_KEY = keylib.generate_rsa_key()
    return _SHARED_OIDC_KEY


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def conninfo(dbname):
    parts = {"host": os.environ.get("PGHOST", "localhost"), "port": os.environ.get("PGPORT", "5432"),
             "user": os.environ.get("PGUSER", "postgres"), "password": os.environ.get("PGPASSWORD", ""),
             "dbname": dbname}
    return " ".join(f"{k}='{v}'" for k, v in parts.items() if v)


def iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".%03dZ" % int(round((ts % 1) * 1000) % 1000)


def wait_for(pred, timeout=10.0, what="condition", interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)  # polling a condition with a deadline, not synchronization by sleep


class Stack:
    """early_tolerance_s: [followup] early_tolerance_s of the daemons. The suites deliver tasks whenever they
    choose (the fake's dispatch(name), like `gcloud tasks run`), mostly long before the booking is due, so the
    stack turns the early-delivery guard off (0); None leaves the product default (300 s), as the tests of the
    guard itself do (test_execute.py EarlyDeliveryTests)."""

    def __init__(self, schemas=("tenant_a",), backend="cloudtasks", extra_config="", voice_token=VOICE_TOKEN,
                 start_daemon=True, log_level="info", early_tolerance_s=0):
        self.schemas = schemas
        self.early_tolerance_s = early_tolerance_s
        self.backend = backend
        self.extra_config = extra_config
        self.voice_token = voice_token
        self.start_daemon = start_daemon
        self.log_level = log_level
        self.daemons = []

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="followupd-stack-")
        self.db = TempDB(prefix="e2e").__enter__()
        for schema in self.schemas:
            self.db.apply_lad_table(schema)
            self.db.apply_migrations(schema)
        self.ct = FakeCloudTasks(oidc_key=shared_oidc_key()).start()
        self.keyfile = os.path.join(self.tmp.name, "sa.json")
        self.ct.make_service_account_keyfile(self.keyfile)
        self.va = FakeVoiceAgent(token=self.voice_token).start()
        self.migrate()
        if self.start_daemon:
            self.daemon = self.start()
        return self

    def __exit__(self, *exc):
        for d in self.daemons:
            d.close()
        self.va.stop()
        self.ct.stop()
        self.db.__exit__(*exc)
        self.tmp.cleanup()
        return False

    def config(self, port):
        return f"""
[database]
conninfo = {conninfo(self.db.name)}
schemas = {",".join(self.schemas)}
pool_size = 4
[http]
listen = 127.0.0.1:{port}
public_url = http://127.0.0.1:{port}
header_timeout_ms = 5000
[followup]
sweep_interval_s = 3600
{"" if self.early_tolerance_s is None else f"early_tolerance_s = {self.early_tolerance_s}"}
[capture]
notify_within_s = 0
[queue]
backend = {self.backend}
[cloudtasks]
endpoint = {self.ct.base_url}
project = {self.ct.project}
location = {self.ct.location}
queue = {self.ct.queue}
credentials = {self.keyfile}
dispatch_deadline_s = 60
[auth]
mode = oidc
audience = {AUDIENCE}
service_account = {INVOKER}
jwks_url = {self.ct.jwks_uri}
[voice_agent]
base_url = http://127.0.0.1:{self.va.port}
token = {self.voice_token}
timeout_ms = 3000
[log]
level = {self.log_level}
{self.extra_config}
"""

    def migrate(self, config_text=None):
        """`followupd migrate` with this stack's configuration (or `config_text`): the SQL files again (a no-op
        after psql applied them) and the capture triggers with the configured arguments -- every follow-up
        notifies (notify_within_s = 0), since the stack's periodic sweep is an hour apart."""
        import subprocess
        path = os.path.join(self.tmp.name, "migrate.conf")
        with open(path, "w") as fh:
            fh.write(config_text if config_text is not None else self.config(free_port()))
        binary = os.path.join(os.environ.get("FOLLOWUPD_BUILD", os.path.join(REPO_ROOT, "build")), "followupd")
        proc = subprocess.run([binary, "--config", path, "migrate", "--sql-dir", os.path.join(REPO_ROOT, "sql")],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"followupd migrate failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return proc

    def start(self, env=None, wait_ready=True, port=None):
        port = port or free_port()
        d = Daemon()
        d.port = port
        d.start(self.config(port), env=env)
        self.daemons.append(d)
        if wait_ready:
            self.wait_ready(d)
        return d

    def wait_ready(self, d, timeout=15.0):
        wait_for(lambda: self.http(d, "GET", "/readyz")[0] == 200, timeout, "daemon ready")

    # -- HTTP ------------------------------------------------------------------------------------------------
    def http(self, d, method, path, body=None, headers=None, timeout=10.0):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(f"http://127.0.0.1:{d.port}{path}", data=data, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw or b"null")
            except ValueError:
                return e.code, raw
        except (ConnectionError, OSError):
            return None, None

    def oidc_token(self, **overrides):
        now = int(time.time())
        claims = {"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": INVOKER, "email_verified": True,
                  "sub": "1234567890", "azp": "1234567890", "iat": now, "exp": now + 3600}
        claims.update(overrides)
        return keylib.sign_jwt(claims, shared_oidc_key(), self.ct.oidc_keys.active_kid)

    def execute(self, d, booking_id, body, token=None):
        headers = {"Content-Type": "application/json", "Authorization": "Bearer " + (token or self.oidc_token())}
        return self.http(d, "POST", f"/api/deals-pipeline/bookings/{booking_id}/execute-followup", body, headers)

    # -- database --------------------------------------------------------------------------------------------
    def insert_booking(self, schema, tenant=None, booking_type="follow_up", at=None, lead=None, assigned=None,
                       booking_id=None, status="scheduled"):
        tenant = tenant or str(uuid.uuid4())
        booking_id = booking_id or str(uuid.uuid4())
        at = time.time() + 3600 if at is None else at
        lead = lead or str(uuid.uuid4())
        assigned_sql = f"'{assigned}'" if assigned else "NULL"
        self.db.psql(f"INSERT INTO {quote_ident(schema)}.lead_bookings (id, tenant_id, lead_id, assigned_user_id, "
                     f"booking_type, status, scheduled_at) VALUES ('{booking_id}', '{tenant}', '{lead}', "
                     f"{assigned_sql}, '{booking_type}', '{status}', to_timestamp({at:.3f}))")
        return booking_id

    def row(self, schema, booking_id):
        cols = ", ".join(f"{c}::text" for c in ROW_COLUMNS)
        rows = self.db.query(f"SELECT {cols} FROM {quote_ident(schema)}.lead_bookings WHERE id = '{booking_id}'")
        return dict(zip(ROW_COLUMNS, rows[0])) if rows else None

    def wait_row(self, schema, booking_id, pred, timeout=10.0):
        return wait_for(lambda: (lambda r: r if r and pred(r) else None)(self.row(schema, booking_id)), timeout,
                        f"row {booking_id} condition")

    def task_for(self, booking_id):
        for name, task in self.ct.tasks.items():
            if task.get("body_json", {}).get("bookingId") == booking_id:
                return name, task
        return None

    # -- execute-callback helpers (added for test_execute*.py; new methods only) -----------------------------
    EXECUTE_PATH = "/api/deals-pipeline/bookings/{}/execute-followup"

    def scheduled_booking(self, schema="tenant_a", timeout=10.0, **insert_kwargs):
        """Insert a follow-up booking and wait until the daemon has created its Cloud Task and marked the row
        scheduled. Returns (booking_id, row, task_name, task_body) where task_body is the JSON the task carries
        (what Cloud Tasks would POST back)."""
        booking_id = self.insert_booking(schema, **insert_kwargs)
        row = self.wait_row(schema, booking_id, lambda r: r["task_status"] == "scheduled", timeout)
        name, task = wait_for(lambda: self.task_for(booking_id), timeout, f"task for {booking_id}")
        return booking_id, row, name, task["body_json"]

    def raw_request(self, d, method, path, headers=(), body=b"", timeout=10.0, source=None):
        """One request sent with http.client exactly as given: `headers` is a list of (name, value) pairs, so
        a header may appear twice; Host and Content-Length are added. Returns (status, [(name, value)], body)
        with the body parsed as JSON when it is JSON, else the raw bytes. `source`: the local address to
        connect from (e.g. "127.0.0.2": another peer for the per-peer connection cap)."""
        import http.client
        if isinstance(body, str):
            body = body.encode()
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout,
                                          source_address=(source, 0) if source else None)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw
            return resp.status, resp.getheaders(), parsed
        finally:
            conn.close()

    def voice_requests_for(self, booking_id):
        """Every start-call request the fake voice agent saw for this booking: accepted (incl. duplicates),
        refused by validation, or answered by an injected failure."""
        accepted = self.va.calls_for_booking(booking_id)
        others = [r for r in self.va.rejected + self.va.injected if booking_id in r.get("body", "")]
        return accepted + others

    def stop_daemons(self, timeout=10.0):
        """SIGTERM every running daemon of this stack and wait for it; returns their exit codes. Fails (via
        Daemon.stop) when one does not exit in time or wrote a non-JSON line (e.g. a sanitizer report)."""
        return [d.stop(timeout=timeout)[0] for d in self.daemons if d.running]

    # -- lifecycle, replica and crash helpers (added for test_lifecycle.py, test_replicas.py, test_crash.py;
    #    new methods only) --------------------------------------------------------------------------------------
    def start_on_port(self, port, env=None, wait_ready=True):
        """Start a daemon listening on a given port (its public_url follows). A restart after a crash at the
        same address: tasks the dead process created still reach the new one, as behind a stable URL."""
        d = Daemon()
        d.port = port
        d.start(self.config(port), env=env)
        self.daemons.append(d)
        if wait_ready:
            self.wait_ready(d)
        return d

    def replace_cloud_tasks(self, **fake_kwargs):
        """Swap the fake Cloud Tasks for a fresh one built with `fake_kwargs` (e.g. now=callable) and register
        the stack's service-account key file with it. Only while no daemon runs: daemons started afterwards
        are configured against the new fake."""
        if any(d.running for d in self.daemons):
            raise RuntimeError("replace_cloud_tasks: stop the daemons first")
        self.ct.stop()
        self.ct = FakeCloudTasks(oidc_key=shared_oidc_key(), **fake_kwargs).start()
        self.ct.make_service_account_keyfile(self.keyfile)
        return self.ct

    @staticmethod
    def idempotency_key_for(tenant, booking_id, at):
        """The canonical key followupd computes: followup:{tenant}:{booking}:{scheduled_at ISO, ms, Z}."""
        return f"followup:{tenant}:{booking_id}:{iso(at)}"

    def task_name_for(self, idempotency_key, generation=0):
        """Full name of the task followupd creates for a key: sha256(key), or sha256(key#generation) once the
        task was replaced (reschedule) or re-opened (un-cancel)."""
        import hashlib
        text = idempotency_key if generation == 0 else f"{idempotency_key}#{generation}"
        return self.ct.task_name(hashlib.sha256(text.encode("utf-8")).hexdigest())

    def live_tasks_for(self, booking_id):
        """Names of the fake's live (not yet run, not deleted) tasks that carry this booking."""
        return sorted(name for name, task in self.ct.tasks.items()
                      if (task.get("body_json") or {}).get("bookingId") == booking_id)

    def creates_of(self, name):
        """{"calls": create requests for this name, "created": successful ones} on the fake Cloud Tasks."""
        return self.ct.create_calls_by_name.get(name, {"calls": 0, "created": 0})

    def deletes_of(self, name):
        """The fake's delete log entries for this task name: [{"name", "status", "time"}]."""
        return [d for d in self.ct.deletes if d["name"] == name]

    def dispatch_json(self, name, **kw):
        """fake.dispatch(name, ...) with each answer body parsed: [(status or None, body)]."""
        out = []
        for status, body in self.ct.dispatch(name, **kw):
            try:
                out.append((status, json.loads(body) if body else None))
            except ValueError:
                out.append((status, body))
        return out

    def task_generation(self, schema, booking_id):
        rows = self.db.query(f"SELECT task_generation FROM {quote_ident(schema)}.lead_bookings "
                             f"WHERE id = '{booking_id}'")
        return int(rows[0][0]) if rows else None

    # -- local-backend helpers (added for test_local_backend.py; new methods only) ----------------------------
    def insert_bookings(self, schema, n, at, tenant=None, booking_type="follow_up"):
        """Insert n bookings due at `at` (epoch seconds) in ONE statement (one transaction, so the daemon sees
        them in one NOTIFY burst). Returns their ids."""
        tenant = tenant or str(uuid.uuid4())
        rows = self.db.query(
            f"INSERT INTO {quote_ident(schema)}.lead_bookings (tenant_id, lead_id, booking_type, scheduled_at) "
            f"SELECT '{tenant}', gen_random_uuid(), '{booking_type}', to_timestamp({at:.3f}) "
            f"FROM generate_series(1, {int(n)}) RETURNING id")
        return [r[0] for r in rows]

    def insert_booking_timed(self, schema, tenant=None, at=None, booking_type="follow_up"):
        """Insert one booking; returns (booking_id, commit_ts): commit_ts is the database clock (epoch seconds)
        read by the INSERT itself, i.e. at most the statement's own tail before its autocommit."""
        tenant = tenant or str(uuid.uuid4())
        at = time.time() if at is None else at
        rows = self.db.query(
            f"INSERT INTO {quote_ident(schema)}.lead_bookings (tenant_id, lead_id, booking_type, scheduled_at) "
            f"VALUES ('{tenant}', gen_random_uuid(), '{booking_type}', to_timestamp({at:.3f})) "
            "RETURNING id, extract(epoch FROM clock_timestamp())")
        return rows[0][0], float(rows[0][1])

    def columns(self, schema, booking_id, *cols):
        """Selected columns of one row as text (None for NULL), e.g. columns(s, id, "next_attempt_at")."""
        rows = self.db.query(f"SELECT {', '.join(c + '::text' for c in cols)} FROM {quote_ident(schema)}"
                             f".lead_bookings WHERE id = '{booking_id}'")
        return dict(zip(cols, rows[0])) if rows else None

    @staticmethod
    def followup_key(tenant, booking_id, at):
        """The canonical idempotency key for a booking due at `at` (epoch seconds with at most 3 decimals)."""
        return f"followup:{tenant}:{booking_id}:{iso(at)}"

    def voice_attempts_for(self, booking_id):
        """Every start-call request for this booking (accepted, refused, failed by injection), in arrival
        order, as (time, idempotency key header, outcome) with outcome "accepted" / "duplicate" / the HTTP
        status the fake answered."""
        out = []
        for c in self.va.calls_for_booking(booking_id):
            out.append((c["time"], _header(c["headers"], "Idempotency-Key"),
                        "duplicate" if c["duplicate"] else "accepted"))
        for r in self.va.rejected + self.va.injected:
            if booking_id in r.get("body", ""):
                out.append((r["time"], _header(r["headers"], "Idempotency-Key"), r["status"]))
        return sorted(out, key=lambda a: a[0])

    def stays_false(self, pred, timeout):
        """True when pred() -- a predicate over the fake voice agent's state -- never held during `timeout`
        seconds: a bounded check that something does NOT happen (e.g. no second call). It is re-evaluated on
        each request the voice agent records (its condition variable), not by a blind sleep."""
        return not self.va.wait_until(pred, timeout)


def _header(headers, name):
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None
