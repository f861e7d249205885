#!/usr/bin/env python3
"""`make demo`: followupd's main job in one command, on a throwaway PostgreSQL (PG* from pg_virtualenv, or the
server PG* points at).

It creates the LAD stand-in table in the schemas conf/demo.conf lists, applies the migrations, starts a demo
voice agent, starts followupd (local backend, no Google account) with its JSON logs in build/demo/followupd.log,
then inserts and updates bookings with plain SQL -- the way the Node backend does -- and prints each booking's
journey as a short timeline (scheduled -> called -> executed, or cancelled), then the final lead_bookings task
columns. It stops everything and exits 0 when every booking ended as expected, 1 otherwise.

Every wait is bounded: the demo cannot hang. DEMO_KEEP=1 keeps followupd running after the table (insert your
own bookings with psql and watch them in the timeline) until Ctrl-C. DEMO_DB=name picks the database (default:
the one in conf/demo.conf); the demo drops and re-creates it at the start and drops it at the end.
"""
import calendar
import configparser
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from fakes.fake_voice_agent import FakeVoiceAgent  # noqa: E402

BUILD = os.environ.get("FOLLOWUPD_BUILD") or os.path.join(ROOT, "build")
CONF = os.path.join(ROOT, "conf", "demo.conf")
PSQL_TIMEOUT_S = 30
READY_TIMEOUT_S = 20
JOURNEY_TIMEOUT_S = 30       # the whole script stays well under a minute
STOP_TIMEOUT_S = 10
BOLD = "\033[1m" if sys.stdout.isatty() else ""
PLAIN = "\033[0m" if sys.stdout.isatty() else ""


class DemoError(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------------
# PostgreSQL through psql (the libpq PG* variables say which server)

def psql(db, sql, rows=False):
    """Run one SQL string; with rows=True return its rows as lists of strings."""
    args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db]
    if rows:
        args += ["-A", "-t", "-F", "\x1f"]
    env = {k: v for k, v in os.environ.items() if k != "PGOPTIONS"}
    try:
        out = subprocess.run(args + ["-c", sql], env=env, capture_output=True, text=True, timeout=PSQL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DemoError(f"psql did not answer within {PSQL_TIMEOUT_S}s")
    if out.returncode != 0:
        raise DemoError(f"psql failed: {out.stderr.strip()}")
    return [line.split("\x1f") for line in out.stdout.splitlines() if line] if rows else out.stdout


def psql_file(db, path, schema=None, variables=()):
    env = {k: v for k, v in os.environ.items() if k != "PGOPTIONS"}
    if schema:
        env["PGOPTIONS"] = f"-c search_path={schema}"
    args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-f", path]
    for k, v in variables:
        args += ["-v", f"{k}={v}"]
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=PSQL_TIMEOUT_S)
    if out.returncode != 0:
        raise DemoError(f"{os.path.relpath(path, ROOT)} failed: {out.stderr.strip()}")


def prepare_database(db, schemas):
    admin = os.environ.get("PGDATABASE") or "postgres"
    psql(admin, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    psql(admin, f'CREATE DATABASE "{db}"')
    lad = os.path.join(ROOT, "tests", "fixtures", "lead_bookings.sql")
    mdir = os.path.join(ROOT, "sql", "migrations")
    migrations = sorted(f for f in os.listdir(mdir) if f.endswith(".sql"))
    for schema in schemas:
        psql_file(db, lad, variables=[("schema", schema)])
        for m in migrations:
            psql_file(db, os.path.join(mdir, m), schema)
    return len(migrations)


def drop_database(db):
    try:
        psql(os.environ.get("PGDATABASE") or "postgres", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    except (DemoError, OSError, subprocess.TimeoutExpired):
        pass


# ---------------------------------------------------------------------------------------------------------------
# The bookings

class Booking:
    def __init__(self, label, story, schema, tenant, booking_type, due_in):
        self.label, self.story, self.schema, self.tenant = label, story, schema, tenant
        self.type, self.due_in = booking_type, due_in
        self.id = str(uuid.uuid4())
        self.due_at = None          # epoch seconds (milliseconds, like the Node backend's Date)

    # Each statement goes on the timeline first, stamped with the moment it is sent, so it sorts before
    # whatever followupd does about it (psql's own start-up can take longer than the timeline's hold-back).
    def insert(self, db, timeline):
        sent = time.time()
        self.due_at = round(sent + self.due_in, 3)
        note = "" if "follow" in self.type else "  (not a follow-up type: followupd leaves it alone)"
        timeline.add(sent, self.label, "INSERT", f"{self.type}, due at {timeline.rel(self.due_at)}{note}")
        psql(db, f"INSERT INTO {self.schema}.lead_bookings (id, tenant_id, lead_id, booking_type, scheduled_at) "
                 f"VALUES ('{self.id}', '{self.tenant}', '{uuid.uuid4()}', '{self.type}', "
                 f"to_timestamp({self.due_at:.3f}))")

    def cancel(self, db, timeline):
        timeline.add(time.time(), self.label, "UPDATE", "status = 'cancelled'")
        psql(db, f"UPDATE {self.schema}.lead_bookings SET status = 'cancelled' WHERE id = '{self.id}'")

    def move(self, db, timeline, due_in):
        sent = time.time()
        self.due_at = round(sent + due_in, 3)
        timeline.add(sent, self.label, "UPDATE", f"scheduled_at moved to {timeline.rel(self.due_at)}")
        psql(db, f"UPDATE {self.schema}.lead_bookings SET scheduled_at = to_timestamp({self.due_at:.3f}) "
                 f"WHERE id = '{self.id}'")


def task_statuses(db, bookings):
    """{booking id: task_status} for the demo's bookings, in one query."""
    schemas = sorted({b.schema for b in bookings})
    sql = " UNION ALL ".join(f"SELECT id, task_status FROM {schema}.lead_bookings" for schema in schemas)
    return {row[0]: row[1] for row in psql(db, sql, rows=True)}


# ---------------------------------------------------------------------------------------------------------------
# The timeline: one printer thread merges what the demo does, what followupd logs and what the voice agent
# receives, in time order (events are held back 150 ms so late arrivals still sort).

class Timeline:
    HOLD_S = 0.15
    # Within one millisecond, steps sort in journey order: followupd logs milliseconds while the voice agent
    # records microseconds, so a call and the log line that follows it may share a millisecond.
    STEP_ORDER = {"INSERT": 0, "UPDATE": 1, "scheduled": 2, "rescheduled": 3, "cancelled": 3, "due": 4,
                  "called": 5, "call failed": 6, "finished": 7, "executed": 8}

    def __init__(self, t0):
        self.t0 = t0
        self.labels = {}            # booking id -> label
        self.bookings = {}          # booking id -> Booking
        self.seen = set()           # (booking id, step) printed or queued
        self._events = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._sources = []
        self.label_width = 3        # 9 once bookings the demo did not write may show up (8-character ids)

    def rel(self, ts):
        return f"{ts - self.t0:.2f}s"

    def track(self, booking):
        self.labels[booking.id] = booking.label
        self.bookings[booking.id] = booking

    def label(self, booking_id, keep_unknown):
        if booking_id in self.labels:
            return self.labels[booking_id]
        return booking_id[:8] if keep_unknown and booking_id else None

    def add(self, ts, label, step, detail="", booking_id=None):
        ts_ms = int(ts * 1000) / 1000
        with self._lock:
            self._events.append((ts_ms, self.STEP_ORDER.get(step, 9), label, step, detail))
            if booking_id:
                self.seen.add((booking_id, step))

    def now(self, label, step, detail=""):
        self.add(time.time(), label, step, detail)

    def say(self, text):
        """A setup line, printed at once."""
        sys.stdout.write(f"  {time.time() - self.t0:6.2f}s  {text}\n")
        sys.stdout.flush()

    def has(self, booking_id, step):
        with self._lock:
            return (booking_id, step) in self.seen

    def start(self, *sources):
        self._sources = sources
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def resume(self):
        self.label_width = 9
        self._stop.clear()
        self.start(*self._sources)

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._poll_sources()
        self._flush(everything=True)

    def _poll_sources(self):
        for source in self._sources:
            try:
                source.poll(self)
            except Exception as exc:  # a broken source must not stop the demo
                self.now("", "note", f"timeline source failed: {exc}")

    def _run(self):
        while not self._stop.wait(0.05):
            self._poll_sources()
            self._flush()

    def _flush(self, everything=False):
        limit = float("inf") if everything else time.time() - self.HOLD_S
        with self._lock:
            ready = sorted(e for e in self._events if e[0] <= limit)
            self._events = [e for e in self._events if e[0] > limit]
        for ts, _, label, step, detail in ready:
            emphasis = (BOLD, PLAIN) if step in ("called", "executed", "cancelled") else ("", "")
            sys.stdout.write(f"  {ts - self.t0:6.2f}s  {label:<{self.label_width}} "
                             f"{emphasis[0]}{step:<12}{emphasis[1]} {detail}\n")
        sys.stdout.flush()


class DaemonLog:
    """Follows followupd's JSON log file and turns the lines about bookings into timeline steps."""

    def __init__(self, path, keep_unknown):
        self.path = path
        self.keep_unknown = keep_unknown
        self._file = None
        self._partial = ""

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def poll(self, timeline):
        if self._file is None:
            if not os.path.exists(self.path):
                return
            self._file = open(self.path, "r", encoding="utf-8", errors="replace")
        chunk = self._file.read()
        if not chunk:
            return
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                self._record(timeline, rec)

    def _record(self, timeline, rec):
        msg, booking_id = str(rec.get("msg", "")), rec.get("booking_id")
        ts = parse_log_ts(rec.get("ts"))
        if not booking_id:
            if rec.get("level") in ("error", "fatal"):
                timeline.add(ts, "!", "followupd", f"{rec.get('level')}: {msg}")
            return
        label = timeline.label(booking_id, self.keep_unknown)
        if label is None:
            return
        step = detail = None
        booking = timeline.bookings.get(booking_id)
        due = f", due at {timeline.rel(booking.due_at)}" if booking is not None and booking.due_at else ""
        if msg == "follow-up scheduled":
            step, detail = "scheduled", f"local task {str(rec.get('task_name', ''))[:12]}...{due}"
        elif msg.startswith("follow-up rescheduled"):
            step, detail = "rescheduled", f"new task {str(rec.get('task_name', ''))[:12]}... and new key{due}"
        elif msg == "follow-up cancelled":
            step, detail = "cancelled", "task removed: it will not be called"
        elif msg.startswith("claimed for execution"):
            step, detail = "due", msg.replace("claimed for execution", "claimed").strip()
        elif msg.startswith("voice-agent call failed"):
            step, detail = "call failed", str(rec.get("error", msg))
        elif msg == "execution finished: executed":
            step, detail = "executed", "row marked executed"
        elif msg.startswith("execution finished: "):
            step, detail = "finished", msg.split(": ", 1)[1]
        elif msg.startswith("booking un-cancelled"):
            step, detail = "un-cancelled", "scheduling again"
        elif rec.get("level") in ("warn", "error"):
            step, detail = rec.get("level"), msg
        if step is not None:
            timeline.add(ts, label, step, detail, booking_id)


class VoiceCalls:
    """New requests the demo voice agent accepted, as 'called' steps."""

    def __init__(self, agent, keep_unknown):
        self.agent = agent
        self.keep_unknown = keep_unknown
        self.count = 0

    def poll(self, timeline):
        calls = self.agent.calls
        for call in calls[self.count:]:
            booking_id = call["body"].get("bookingId", "")
            label = timeline.label(booking_id, self.keep_unknown)
            if label is None:
                continue
            what = "same call again (duplicate request)" if call["duplicate"] else \
                f"voice agent started call {call['call_id'][:8]}"
            # The key ends with the booking's scheduled time: a moved booking is called with a new key.
            timeline.add(call["time"], label, "called", f"{what}, key ...{call['idempotency_key'][-25:]}",
                         booking_id)
        self.count = len(calls)


def parse_log_ts(text):
    """The logger's '2026-11-28T17:36:39.028Z' as epoch seconds (now when missing)."""
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z$", str(text or ""))
    if not m:
        return time.time()
    whole = calendar.timegm(tuple(int(x) for x in m.groups()[:6]))
    return whole + (float("0." + m.group(7)) if m.group(7) else 0.0)


# ---------------------------------------------------------------------------------------------------------------
# followupd

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(conninfo, port, va_port, log_path):
    env = dict(os.environ)
    env.pop("PGOPTIONS", None)
    env.update({"FOLLOWUPD_HTTP_LISTEN": f"127.0.0.1:{port}",
                "FOLLOWUPD_VOICE_AGENT_BASE_URL": f"http://127.0.0.1:{va_port}",
                "FOLLOWUPD_DATABASE_CONNINFO": conninfo})
    binary = os.path.join(BUILD, "followupd")
    if not os.access(binary, os.X_OK):
        raise DemoError(f"{binary} is not built (run make)")
    with open(log_path, "w") as log:
        # Its own session: Ctrl-C reaches only this script, which then stops followupd with one SIGTERM
        # (a second stop signal would make it exit at once, without its clean shutdown).
        proc = subprocess.Popen([binary, "--config", CONF], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log, env=env, start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"followupd exited at startup (code {proc.returncode}); see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.05)  # readiness poll with a deadline
    stop_daemon(proc)
    raise DemoError(f"followupd was not ready within {READY_TIMEOUT_S}s; see {log_path}")


def stop_daemon(proc):
    """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return "killed"
    return proc.returncode


# ---------------------------------------------------------------------------------------------------------------
# The final table

TABLE_COLUMNS = ("booking", "schema", "booking_type", "status", "task_status", "attempts", "task_name",
                 "task_scheduled_at", "executed_at")


def final_table(db, schemas, timeline):
    rows = []
    for schema in schemas:
        rows += psql(db, f"SELECT id, '{schema}', booking_type, status, task_status, execution_attempts, "
                         "coalesce(left(task_name, 20) || '...', ''), "
                         "coalesce(to_char(task_scheduled_at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS'), ''), "
                         "coalesce(to_char(executed_at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS'), '') "
                         f"FROM {schema}.lead_bookings ORDER BY created_at", rows=True)
    table = [[timeline.labels.get(r[0], r[0][:8])] + r[1:] for r in rows]
    table.sort(key=lambda r: r[0])
    widths = [max(len(str(x)) for x in col) for col in zip(TABLE_COLUMNS, *table)]

    def line(cells):
        return "  " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    print("\nFinal lead_bookings task columns (times UTC):\n")
    print(line(TABLE_COLUMNS))
    print("  " + "-+-".join("-" * w for w in widths))
    for r in table:
        print(line(r))
    return {r[0]: r[4] for r in table}


# ---------------------------------------------------------------------------------------------------------------

def demo_settings():
    cfg = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    if not cfg.read(CONF):
        raise DemoError(f"cannot read {CONF}")
    schemas = [s.strip() for s in cfg["database"]["schemas"].split(",") if s.strip()]
    conninfo = cfg["database"].get("conninfo", "")
    m = re.search(r"\bdbname=(\S+)", conninfo)
    db = os.environ.get("DEMO_DB") or (m.group(1) if m else "followupd_demo")
    conninfo = re.sub(r"\bdbname=\S+", "", conninfo).strip()
    return db, f"dbname={db} {conninfo}".strip(), schemas


def the_bookings(schemas):
    first, second = schemas[0], schemas[-1]
    tenant_a, tenant_b = str(uuid.uuid4()), str(uuid.uuid4())
    return [
        Booking("A", "follow-up due now", first, tenant_a, "follow_up", 0),
        Booking("B", "follow-up due in 5 s", first, tenant_a, "follow_up", 5),
        Booking("C", "auto follow-up due in 10 s, cancelled after 1 s", first, tenant_a, "auto_follow_up", 10),
        Booking("D", "follow-up due in 20 s; 1 s later moved to 3 s from then", first, tenant_a, "follow_up", 20),
        Booking("E", "a meeting in 2 s (not a follow-up)", first, tenant_a, "meeting", 2),
        Booking("F", f"follow-up of a second tenant ({second}), due in 2 s", second, tenant_b, "follow_up", 2),
    ]


EXPECTED = {"A": "executed", "B": "executed", "C": "cancelled", "D": "executed", "E": "pending", "F": "executed"}


def reached(booking, task_status, timeline):
    want = EXPECTED[booking.label]
    return task_status == want and (want == "pending" or timeline.has(booking.id, want))


def wait_for_journeys(db, bookings, timeline, daemon):
    """Until every booking reached its expected state (and that last step is on the timeline), or the deadline."""
    deadline = time.monotonic() + JOURNEY_TIMEOUT_S
    pending = list(bookings)
    while pending and time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise DemoError(f"followupd exited unexpectedly (code {daemon.returncode})")
        states = task_statuses(db, pending)
        pending = [b for b in pending if not reached(b, states.get(b.id), timeline)]
        time.sleep(0.1)  # polling the database with a deadline
    return not pending


def keep_running(db, schemas, timeline):
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    env_hint = " ".join(f"{k}={os.environ[k]}" for k in ("PGHOST", "PGPORT", "PGUSER") if os.environ.get(k))
    print(f"\nDEMO_KEEP=1: followupd keeps running. In another terminal (PGPASSWORD as in this one):\n"
          f"  {env_hint} psql -d {db} -c \"INSERT INTO {schemas[0]}.lead_bookings (tenant_id, lead_id, "
          "booking_type, scheduled_at) VALUES (gen_random_uuid(), gen_random_uuid(), 'follow_up', "
          "now() + interval '5 seconds')\"\nand watch it here. Ctrl-C stops everything.\n", flush=True)
    timeline.resume()
    stop.wait()
    timeline.stop()


def shut_down(timeline, daemon, agent, log_source, db):
    """Stop everything the demo started; every step runs even when an earlier one fails. Returns followupd's
    exit code (None when it never started)."""
    code = None
    steps = [timeline.stop]
    if daemon is not None:
        steps.append(lambda: stop_daemon(daemon))
    if agent is not None:
        steps.append(agent.stop)
    if log_source is not None:
        steps.append(log_source.close)
    steps.append(lambda: drop_database(db))
    for i, step in enumerate(steps):
        try:
            result = step()
            if daemon is not None and i == 1:
                code = result
        except Exception as exc:  # keep going: the remaining steps still have to run
            sys.stderr.write(f"demo: cleanup step failed: {exc!r}\n")
            if daemon is not None and i == 1 and daemon.poll() is None:
                daemon.kill()
    return code


class SafeStdout:
    """stdout that survives a closed pipe (`make demo | head`): the demo then goes on quietly and still stops
    followupd and drops its database."""

    def __init__(self, stream):
        self.stream = stream
        self.broken = False

    def write(self, text):
        if not self.broken:
            try:
                self.stream.write(text)
            except (BrokenPipeError, OSError):
                self._broke()
        return len(text)

    def flush(self):
        if not self.broken:
            try:
                self.stream.flush()
            except (BrokenPipeError, OSError):
                self._broke()

    def _broke(self):
        self.broken = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.stream.fileno())   # the interpreter's own final flush goes nowhere, quietly
        os.close(devnull)

    def isatty(self):
        return self.stream.isatty()


def interrupted(signum, frame):
    raise KeyboardInterrupt


def main():
    sys.stdout = SafeStdout(sys.stdout)
    t0 = time.time()
    timeline = Timeline(t0)
    keep = os.environ.get("DEMO_KEEP") == "1"
    signal.signal(signal.SIGTERM, interrupted)
    db, conninfo, schemas = demo_settings()
    log_path = os.path.join(BUILD, "demo", "followupd.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    print("followupd demo: each follow-up booking becomes exactly one voice-agent call, at its time.\n"
          "Local backend: no Google account needed. followupd's own JSON logs go to "
          f"{os.path.relpath(log_path, ROOT)}.\n")
    agent = daemon = None
    log_source = None
    ok, code = False, None
    try:
        n = prepare_database(db, schemas)
        timeline.say(f"database {db}: LAD table + {n} migrations in schemas {', '.join(schemas)}")
        agent = FakeVoiceAgent().start()
        timeline.say(f"demo voice agent listening on 127.0.0.1:{agent.port}")
        daemon = start_daemon(conninfo, free_port(), agent.port, log_path)
        timeline.say("followupd ready (queue.backend = local)")

        bookings = the_bookings(schemas)
        print("\nThe bookings, written with plain SQL the way the Node backend writes them:")
        for b in bookings:
            timeline.track(b)
            print(f"  {b.label}  {b.story}")
        print("\nTimeline (seconds since the demo started):")
        log_source = DaemonLog(log_path, keep)
        timeline.start(log_source, VoiceCalls(agent, keep))
        for b in bookings:
            b.insert(db, timeline)
        time.sleep(1.0)  # demo pacing: let the inserts be seen before the updates
        bookings[2].cancel(db, timeline)
        bookings[3].move(db, timeline, 3)
        finished = wait_for_journeys(db, bookings, timeline, daemon)
        timeline.stop()

        states = final_table(db, schemas, timeline)
        calls, requests = agent.unique_count, agent.call_count
        print(f"\nvoice-agent calls: {calls} (expected 4: A, B, D and F; C was cancelled, E is not a follow-up)"
              + ("" if requests == calls else f"; {requests - calls} duplicate request(s)!"))
        ok = finished and all(states.get(k) == v for k, v in EXPECTED.items()) and calls == 4 and requests == 4
        if keep:
            keep_running(db, schemas, timeline)
    except DemoError as exc:
        print(f"\ndemo failed: {exc}")
    except KeyboardInterrupt:
        print("\ninterrupted")
    finally:
        code = shut_down(timeline, daemon, agent, log_source, db)
    verdict = "OK" if ok and code == 0 else "UNEXPECTED RESULT (see the timeline and " \
        f"{os.path.relpath(log_path, ROOT)})"
    print(f"followupd stopped (exit {code}); database {db} dropped. {verdict}")
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
