"""PostgreSQL helpers shared by followupd's integration tests (stdlib only; SQL goes through `psql`).

`TempDB` is a context manager that creates a uniquely named database from the PG* environment and drops it on
exit. Inside it:

    db.run(args, schema=None, input=None, check=True)   psql -X -q -v ON_ERROR_STOP=1 <args> -> CompletedProcess
    db.psql(sql, schema=None, check=True) -> stdout      run a script (statements split like `psql -f`)
    db.psql_run(sql, schema=None, check=True) -> CompletedProcess   same, when stderr matters (WARNINGs)
    db.query(sql, schema=None) -> [tuple of str|None]    one statement's rows (NULL -> None)
    db.apply_lad_table(schema)                           tests/fixtures/lead_bookings.sql into `schema`
    db.apply_migrations(schema) / db.apply_rollback(schema)   sql/migrations in name order / sql/rollback reversed
    db.capture_notifications(channel, sql, schema=None) -> [Notification]   what `sql` NOTIFYs, in one session
    db.listener(channel, schema=None) -> Listener        a LISTENing session for notifications from others

`schema` runs psql with PGOPTIONS='-c search_path=<quoted schema>', exactly how the migrations are applied in
production, so unqualified names resolve in that schema. Module helpers: REPO_ROOT (env FOLLOWUPD_ROOT or the
checkout this file lives in), quote_ident(), quote_literal(), notify_channel(schema) (the channel the trigger
uses), migration_files(), rollback_files(), LISTENER_PIDS_SQL (the backends of followupd's LISTEN sessions).
"""
import hashlib
import json
import os
import re
import select
import subprocess
import time
import uuid

REPO_ROOT = os.environ.get("FOLLOWUPD_ROOT") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAD_TABLE_SQL = os.path.join(REPO_ROOT, "tests", "fixtures", "lead_bookings.sql")
MIGRATIONS_DIR = os.path.join(REPO_ROOT, "sql", "migrations")
ROLLBACK_DIR = os.path.join(REPO_ROOT, "sql", "rollback")

# The backend pids of followupd's LISTEN sessions: each holds the replicas' membership lock there (an advisory
# lock with objid 2147483647 in the two-int key space, shared mode; shared/db/db_ownership.h).
LISTENER_PIDS_SQL = ("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 2147483647 "
                     "AND objsubid = 2 AND granted AND database = (SELECT oid FROM pg_database "
                     "WHERE datname = current_database())")

FIELD_SEP = "\x1f"
RECORD_SEP = "\x1e"
NULL_MARK = "\\N"
PSQL_TIMEOUT = 300
SENTINEL_PAYLOAD = "pgutil-sentinel"

_NOTIFICATION_RE = re.compile(
    r'^Asynchronous notification "(?P<channel>.*?)" with payload "(?P<payload>.*)" '
    r'received from server process with PID (?P<pid>\d+)\.$')


class Notification:
    """One NOTIFY as psql printed it; `json()` parses the payload."""

    def __init__(self, channel, payload, pid):
        self.channel = channel
        self.payload = payload
        self.pid = int(pid)

    def json(self):
        return json.loads(self.payload)

    def __repr__(self):
        return f"Notification({self.channel!r}, {self.payload!r}, pid={self.pid})"


def quote_ident(name):
    """SQL identifier quoting, always quoted (like PQescapeIdentifier)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text):
    return "'" + text.replace("'", "''") + "'"


def notify_channel(schema):
    """The trigger's channel for a schema: 'followupd_' + md5 hex of the schema name's UTF-8 bytes."""
    return "followupd_" + hashlib.md5(schema.encode("utf-8")).hexdigest()


def migration_files():
    return _sql_files(MIGRATIONS_DIR)


def rollback_files():
    """Rollback scripts in the order they are applied (reverse file-name order)."""
    return list(reversed(_sql_files(ROLLBACK_DIR)))


def _sql_files(directory):
    return [os.path.join(directory, n) for n in sorted(os.listdir(directory)) if n.endswith(".sql")]


def parse_notifications(text):
    found = []
    for line in text.splitlines():
        m = _NOTIFICATION_RE.match(line)
        if m:
            found.append(Notification(m.group("channel"), m.group("payload"), m.group("pid")))
    return found


def _search_path_option(schema):
    # libpq splits PGOPTIONS on whitespace; a backslash escapes the next character.
    value = quote_ident(schema).replace("\\", "\\\\").replace(" ", "\\ ")
    return f"-c search_path={value}"


class PsqlError(RuntimeError):
    pass


class TempDB:
    """A throwaway database named `<prefix>_<random>`, created on enter and dropped (FORCE) on exit."""

    def __init__(self, prefix="sql"):
        self.name = f"{prefix}_{uuid.uuid4().hex[:12]}"

    def __enter__(self):
        self._admin(f"CREATE DATABASE {quote_ident(self.name)}")
        return self

    def __exit__(self, *exc):
        self._admin(f"DROP DATABASE IF EXISTS {quote_ident(self.name)} WITH (FORCE)")
        return False

    def _admin(self, sql):
        env = dict(os.environ)
        env.pop("PGOPTIONS", None)
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", env.get("PGDATABASE", "postgres"),
                        "-c", sql], env=env, check=True, capture_output=True, text=True, timeout=PSQL_TIMEOUT)

    def env(self, schema=None):
        env = dict(os.environ)
        env["PGDATABASE"] = self.name
        if schema is None:
            env.pop("PGOPTIONS", None)
        else:
            env["PGOPTIONS"] = _search_path_option(schema)
        return env

    def run(self, args, schema=None, input=None, check=True):
        """psql with `args` (after -X -q -v ON_ERROR_STOP=1) against this database."""
        cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"] + list(args)
        proc = subprocess.run(cmd, env=self.env(schema), input=input, capture_output=True, text=True,
                              timeout=PSQL_TIMEOUT)
        if check and proc.returncode != 0:
            raise PsqlError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    def psql_run(self, sql, schema=None, check=True):
        return self.run(["-f", "-"], schema=schema, input=sql, check=check)

    def psql(self, sql, schema=None, check=True):
        return self.psql_run(sql, schema=schema, check=check).stdout

    def query(self, sql, schema=None):
        out = self.run(["-A", "-t", "-F", FIELD_SEP, "-R", RECORD_SEP, "-P", f"null={NULL_MARK}", "-f", "-"],
                       schema=schema, input=sql).stdout
        if out.endswith("\n"):
            out = out[:-1]
        if not out:
            return []
        return [tuple(None if f == NULL_MARK else f for f in rec.split(FIELD_SEP))
                for rec in out.split(RECORD_SEP)]

    def apply_lad_table(self, schema):
        self.run(["-v", f"schema={schema}", "-f", LAD_TABLE_SQL])

    def apply_migrations(self, schema):
        for path in migration_files():
            self.run(["-f", path], schema=schema)

    def apply_rollback(self, schema):
        for path in rollback_files():
            self.run(["-f", path], schema=schema)

    def capture_notifications(self, channel, sql, schema=None):
        """Run `sql` in one session that LISTENs on `channel`, then NOTIFY a sentinel; return the notifications
        `sql` caused. psql prints a session's own notifications after each statement, in queue order, so once
        the sentinel shows up everything `sql` committed has been printed before it: no waiting involved."""
        script = (f"LISTEN {quote_ident(channel)};\n{sql}\n;\n"
                  f"NOTIFY {quote_ident(channel)}, {quote_literal(SENTINEL_PAYLOAD)};\n")
        found = parse_notifications(self.psql(script, schema=schema))
        if not found or found[-1].payload != SENTINEL_PAYLOAD:
            raise AssertionError(f"sentinel notification missing: {found!r}")
        return found[:-1]

    def listener(self, channel, schema=None):
        return Listener(self, channel, schema)


class Listener:
    """A psql session that LISTENs on a channel while other sessions write. `wait_for(predicate, timeout)`
    drives round trips (a SELECT, then an \\echo marker) until a notification satisfying `predicate` has been
    printed or the deadline passes. Use as a context manager; the session ends on exit."""

    def __init__(self, db, channel, schema=None):
        self._proc = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"], env=db.env(schema),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self._pending = b""
        self._marker = 0
        self.notifications = []
        self._round_trip(f"LISTEN {quote_ident(channel)};", deadline=time.monotonic() + 30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self._proc.poll() is None:
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()
        self._proc.stderr.close()

    def wait_for(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            for n in self.notifications:
                if predicate(n):
                    return n
            if time.monotonic() >= deadline:
                raise AssertionError(f"no matching notification within {timeout}s; got {self.notifications!r}")
            self._round_trip("SELECT 1;", deadline)

    def _round_trip(self, sql, deadline):
        self._marker += 1
        marker = f"__pgutil_marker_{self._marker}__"
        self._proc.stdin.write(f"{sql}\n\\echo {marker}\n".encode())
        while True:
            line = self._read_line(deadline)
            if line == marker:
                return
            self.notifications.extend(parse_notifications(line))

    def _read_line(self, deadline):
        # Unbuffered reads on the pipe's fd: select() then never misses data hidden in a Python buffer.
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            ready = select.select([self._proc.stdout], [], [], max(remaining, 0))[0] if remaining > 0 else []
            if not ready:
                raise AssertionError("listener session did not answer in time")
            chunk = os.read(self._proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"listener session ended: {self._proc.stderr.read().decode(errors='replace')}")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode("utf-8", errors="replace")
