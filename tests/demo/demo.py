#!/usr/bin/env python3
"""`make demo`: followupd's main job in one command, on a throwaway PostgreSQL (PG* from pg_virtualenv).

Creates the LAD stand-in table in the schemas that conf/demo.conf lists, applies the migrations, starts a demo
voice agent that prints each call it receives, starts followupd (local backend) with its JSON logs in a file, then
inserts bookings the way the Node backend would — plain INSERT/UPDATE statements — and shows each booking's
journey as a short timeline, then the final lead_bookings task columns. DEMO_KEEP=1 keeps everything running
until Ctrl-C.
"""
import configparser
import re
import os
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

BUILD = os.environ.get("FOLLOWUPD_BUILD", os.path.join(ROOT, "build"))
CONF = os.path.join(ROOT, "conf", "demo.conf")
DB = "followupd_demo"
T0 = time.monotonic()


def say(text):
    sys.stdout.write(f"  {time.monotonic() - T0:6.2f}s  {text}\n")
    sys.stdout.flush()


def psql(sql, db=DB, schema=None, capture=False):
    env = dict(os.environ)
    if schema:
        env["PGOPTIONS"] = f"-c search_path={schema}"
    out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db] + (["-At"] if capture else []) +
                         ["-c", sql] if sql else [], env=env, check=True, capture_output=True, text=True)
    return out.stdout


def psql_file(path, schema=None, variables=()):
    env = dict(os.environ)
    if schema:
        env["PGOPTIONS"] = f"-c search_path={schema}"
    args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB, "-f", path]
    for k, v in variables:
        args += ["-v", f"{k}={v}"]
    subprocess.run(args, env=env, check=True, capture_output=True, text=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_database(schemas):
    psql(f'DROP DATABASE IF EXISTS {DB} WITH (FORCE)', db="postgres")
    psql(f"CREATE DATABASE {DB}", db="postgres")
    lad = os.path.join(ROOT, "tests", "fixtures", "lead_bookings.sql")
    migrations = sorted(f for f in os.listdir(os.path.join(ROOT, "sql", "migrations")) if f.endswith(".sql"))
    for schema in schemas:
        psql_file(lad, None, [("schema", schema)])
        for m in migrations:
            psql_file(os.path.join(ROOT, "sql", "migrations", m), schema)
        say(f"schema {schema}: LAD table + {len(migrations)} migrations applied")


UUID_RE = re.compile(r"([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class VoiceOut:
    """Prints the demo voice agent's lines into the timeline (ids shortened to 8 characters)."""
    def write(self, text):
        for line in text.splitlines():
            line = UUID_RE.sub(r"\1", line)
            if line.strip():
                say("\033[1m" + line + "\033[0m" if sys.stdout.isatty() else line)

    def flush(self):
        pass


def start_daemon(port, va_port, log_path):
    env = dict(os.environ)
    env.update({"FOLLOWUPD_HTTP_LISTEN": f"127.0.0.1:{port}",
                "FOLLOWUPD_VOICE_AGENT_BASE_URL": f"http://127.0.0.1:{va_port}"})
    log = open(log_path, "w")
    proc = subprocess.Popen([os.path.join(BUILD, "followupd"), "--config", CONF], stderr=log,
                            stdout=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"followupd exited early (code {proc.returncode}); see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"followupd did not become ready; see {log_path}")


class Booking:
    def __init__(self, label, schema, tenant, booking_type, due_in):
        self.label, self.schema, self.tenant, self.type, self.due_in = label, schema, tenant, booking_type, due_in
        self.id = str(uuid.uuid4())
        self.state = None

    def insert(self):
        psql(f"INSERT INTO {self.schema}.lead_bookings (id, tenant_id, lead_id, booking_type, scheduled_at) "
             f"VALUES ('{self.id}', '{self.tenant}', '{uuid.uuid4()}', '{self.type}', "
             f"now() + interval '{self.due_in} seconds')")
        say(f"INSERT  {self.label:<34} ({self.schema}, {self.type}, due in {self.due_in}s)")

    def task_state(self):
        return psql(f"SELECT task_status FROM {self.schema}.lead_bookings WHERE id = '{self.id}'",
                    capture=True).strip()


def watch(bookings, stop):
    while not stop.is_set():
        for b in bookings:
            state = b.task_state()
            if state != b.state:
                say(f"        {b.label:<34} {b.state or 'inserted'} -> {state}")
                b.state = state
        stop.wait(0.1)


def final_table(schemas):
    print("\nFinal lead_bookings task columns:\n")
    for schema in schemas:
        out = subprocess.run(["psql", "-X", "-d", DB, "-P", "pager=off", "-c",
                              f"SELECT '{schema}' AS schema, left(id::text, 8) AS booking, booking_type, status, "
                              "task_status, left(task_name, 22) AS task_name, "
                              "to_char(task_scheduled_at, 'HH24:MI:SS') AS task_at, execution_attempts AS attempts, "
                              "to_char(executed_at, 'HH24:MI:SS.MS') AS executed_at "
                              f"FROM {schema}.lead_bookings ORDER BY created_at"],
                             capture_output=True, text=True, check=True)
        print(out.stdout)


def main():
    cfg = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    cfg.read(CONF)
    schemas = [s.strip() for s in cfg["database"]["schemas"].split(",")]
    first, second = schemas[0], schemas[-1]
    os.makedirs(os.path.join(BUILD, "demo"), exist_ok=True)
    log_path = os.path.join(BUILD, "demo", "followupd.log")
    print("followupd demo: follow-up bookings → one voice-agent call each (local backend, no Google needed)\n")
    prepare_database(schemas)
    agent = FakeVoiceAgent(print_calls=True, out=VoiceOut()).start()
    say(f"demo voice agent listening on 127.0.0.1:{agent.port}")
    daemon = start_daemon(free_port(), agent.port, log_path)
    say(f"followupd ready (JSON logs: {os.path.relpath(log_path, ROOT)})")

    tenant_a, tenant_b = str(uuid.uuid4()), str(uuid.uuid4())
    now_b = Booking("A follow-up due now", first, tenant_a, "follow_up", 0)
    in5 = Booking("B follow-up due in 5 s", first, tenant_a, "follow_up", 5)
    cancelled = Booking("C due in 10 s, then cancelled", first, tenant_a, "auto_follow_up", 10)
    moved = Booking("D due in 20 s, rescheduled to 3 s", first, tenant_a, "follow_up", 20)
    meeting = Booking("E a meeting (not a follow-up)", first, tenant_a, "meeting", 2)
    other = Booking("F second tenant, due in 2 s", second, tenant_b, "follow_up", 2)
    bookings = [now_b, in5, cancelled, moved, meeting, other]
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(bookings, stop), daemon=True)
    watcher.start()
    for b in bookings:
        b.insert()
    time.sleep(1.0)  # demo pacing: let the inserts be seen before the updates
    psql(f"UPDATE {first}.lead_bookings SET status = 'cancelled' WHERE id = '{cancelled.id}'")
    say(f"UPDATE  {cancelled.label:<34} status = 'cancelled'")
    psql(f"UPDATE {first}.lead_bookings SET scheduled_at = now() + interval '3 seconds' WHERE id = '{moved.id}'")
    say(f"UPDATE  {moved.label:<34} scheduled_at = now() + 3 s")

    expected = {now_b: "executed", in5: "executed", cancelled: "cancelled", moved: "executed",
                meeting: "pending", other: "executed"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(b.state != want for b, want in expected.items()):
        time.sleep(0.1)
    time.sleep(0.3)
    stop.set()
    watcher.join()
    ok = all(b.task_state() == want for b, want in expected.items()) and agent.unique_count == 4
    final_table(schemas)
    print(f"voice-agent calls: {agent.unique_count} (expected 4: A, B, D, F; C was cancelled, E is no follow-up)")
    if os.environ.get("DEMO_KEEP") == "1":
        print("DEMO_KEEP=1: followupd keeps running; insert more bookings with psql, Ctrl-C to stop.")
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    daemon.send_signal(signal.SIGTERM)
    code = daemon.wait(timeout=10)
    agent.stop()
    print(f"followupd stopped (exit {code}). {'OK' if ok and code == 0 else 'UNEXPECTED RESULT'}")
    sys.exit(0 if ok and code == 0 else 1)


if __name__ == "__main__":
    main()
