"""Shared helpers of the shared/db integration suites (no tests here).

- psql(): run SQL through the psql client with the PG* environment.
- scratch_database(): a uniquely named database for one test, dropped on cleanup.
- Probe: drives build/tools/db_probe (stdin commands, JSON lines on stdout);
  wait_for() blocks on its output with a deadline, never on a fixed sleep.
- LockHolder: a psql session holding an advisory lock, to keep statements
  deterministically in flight.
- PgProxy: a TCP proxy between the probe and PostgreSQL that can refuse
  connections (outage), black-hole them (server that never answers) or forward.
"""
import json
import os
import queue
import secrets
import select
import socket
import subprocess
import threading
import time
import unittest

ROOT = os.environ.get("FOLLOWUPD_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.environ.get("FOLLOWUPD_BUILD") or os.path.join(ROOT, "build")
PROBE = os.path.join(BUILD, "tools", "db_probe")
DEADLINE = 20.0


def pg_env():
    return {k: v for k, v in os.environ.items() if k.startswith("PG")}


def psql(sql, db=None, check=True):
    """Run sql; return stdout rows as lists of strings (unaligned, tuples only)."""
    cmd = ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql]
    if db:
        cmd[1:1] = ["-d", db]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"psql failed: {proc.stderr.strip()} ({sql[:200]})")
    return [line.split("\t") for line in proc.stdout.splitlines() if line != ""]


def scratch_database(test):
    """Create a database named pg_<hex> for `test` (a TestCase); dropped at cleanup."""
    name = "pg_" + secrets.token_hex(6)
    psql(f'CREATE DATABASE "{name}"', db="postgres")
    test.addCleanup(psql, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', "postgres", False)
    return name


def wait_until(pred, timeout=DEADLINE, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def upstream_address():
    """Where PostgreSQL listens, as (family, address) for socket.connect."""
    host = os.environ.get("PGHOST", "")
    port = int(os.environ.get("PGPORT", "5432"))
    if host == "" or host.startswith("/"):
        path = os.path.join(host or "/var/run/postgresql", f".s.PGSQL.{port}")
        return socket.AF_UNIX, path
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return info[0], info[4]


class Probe:
    """A running db_probe; events are the JSON objects it printed, in order."""

    def __init__(self, test, env_extra=None):
        if not os.access(PROBE, os.X_OK):
            raise AssertionError(f"{PROBE} is not built (make all)")
        env = dict(os.environ)
        env.update(env_extra or {})
        self.proc = subprocess.Popen([PROBE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, bufsize=1)
        self.events = []
        self.log = []
        self.taken = set()
        self.cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True)]
        for t in self._readers:
            t.start()
        self.closed = False
        test.addCleanup(self.kill)

    def _read(self, stream, is_stdout):
        for line in stream:
            line = line.rstrip("\n")
            with self.cond:
                if is_stdout:
                    try:
                        self.events.append(json.loads(line))
                    except ValueError:
                        self.events.append({"event": "garbage", "line": line})
                else:
                    self.log.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, pred, timeout=DEADLINE, what=None):
        """First not yet taken event satisfying pred (marked taken)."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for i, ev in enumerate(self.events):
                    if i not in self.taken and pred(ev):
                        self.taken.add(i)
                        return ev
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what or pred}; events={self.events[-20:]}; "
                                         f"log tail={self.log[-10:]}")
                self.cond.wait(left)

    def event(self, name, timeout=DEADLINE, **fields):
        return self.wait_for(lambda e: e.get("event") == name and all(e.get(k) == v for k, v in fields.items()),
                             timeout, what=f"{name} {fields}")

    def result(self, qid, timeout=DEADLINE):
        return self.event("result", timeout, id=qid)

    def log_count(self, needle):
        with self.cond:
            return sum(needle in line for line in self.log)

    def wait_log(self, needle, count=1, timeout=DEADLINE):
        end = time.monotonic() + timeout
        with self.cond:
            while sum(needle in line for line in self.log) < count:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {count}x {needle!r}; log tail={self.log[-10:]}")
                self.cond.wait(left)

    def stats(self):
        self.send("stats")
        return self.event("stats")

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def quit(self, test):
        """Close everything; the probe must report uv_loop_close() == 0 and exit 0."""
        self.send("quit")
        bye = self.event("bye")
        test.assertEqual(bye["loop_close"], 0)
        test.assertEqual(self.proc.wait(timeout=DEADLINE), 0)
        for t in self._readers:
            t.join(timeout=DEADLINE)
        self.closed = True
        test.assertFalse([line for line in self.log if "devpass" in line or "ERROR: AddressSanitizer" in line])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass


class LockHolder:
    """A psql session holding pg_advisory_lock(key) until release()."""

    def __init__(self, test, db, key):
        self.proc = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-d", db], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        test.addCleanup(self.close)
        self.key = key
        self.proc.stdin.write(f"SELECT pg_advisory_lock({key});\nSELECT 'locked';\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], DEADLINE)
        test.assertTrue(ready, "psql did not take the lock")
        while self.proc.stdout.readline().strip() != "locked":
            pass

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.write(f"SELECT pg_advisory_unlock({self.key});\n\\q\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=DEADLINE)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


class PgProxy:
    """TCP proxy on 127.0.0.1:<port> to PostgreSQL.

    mode "forward": relay bytes; "refuse": the port is closed (connection
    refused) and existing relays are cut; "blackhole": accept, never answer."""

    def __init__(self, test):
        self.upstream = upstream_address()
        self.lock = threading.Lock()
        self.conns = []   # relayed sockets (both sides)
        self.held = []    # black-holed clients
        self.accepted = 0
        self.mode = "forward"
        self.listener = None
        self.port = 0
        self._listen()
        self.port = self.listener.getsockname()[1]
        self.stopping = False
        test.addCleanup(self.stop)

    def _listen(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self.listener = s
        threading.Thread(target=self._accept_loop, args=(s,), daemon=True).start()

    def _accept_loop(self, lsock):
        while True:
            try:
                client, _ = lsock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                mode = self.mode
                (self.conns if mode == "forward" else self.held).append(client)
            if mode == "forward":
                threading.Thread(target=self._relay, args=(client,), daemon=True).start()
            # blackhole: keep the socket open and never read or answer

    def _relay(self, client):
        family, addr = self.upstream
        try:
            up = socket.socket(family, socket.SOCK_STREAM)
            up.connect(addr)
        except OSError:
            client.close()
            return
        with self.lock:
            self.conns.append(up)
        socks = [client, up]
        try:
            while True:
                readable, _, _ = select.select(socks, [], [], 0.5)
                if self.stopping:
                    return
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (up if s is client else client).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in socks:
                try:
                    s.close()
                except OSError:
                    pass

    def conninfo(self, db, extra=""):
        return f"host=127.0.0.1 port={self.port} dbname={db} {extra}".strip()

    def _cut_all(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def refuse(self):
        """Outage: close the port and cut every relayed connection."""
        with self.lock:
            self.mode = "refuse"
            lsock, self.listener = self.listener, None
        if lsock is not None:
            lsock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            lsock.close()
        self._cut_all()

    def blackhole(self):
        with self.lock:
            self.mode = "blackhole"
        if self.listener is None:
            self._listen()

    def forward(self):
        """Back to normal (the same port); black-holed connections are cut."""
        with self.lock:
            self.mode = "forward"
            held, self.held = self.held, []
        for s in held:
            s.close()
        if self.listener is None:
            self._listen()

    def stop(self):
        self.stopping = True
        if self.listener is not None:
            self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        with self.lock:
            self.conns.extend(self.held)
            self.held = []
        self._cut_all()


def require_pg(test):
    if not os.environ.get("PGPORT") and not os.environ.get("PGHOST"):
        test.fail("PG* environment variables are required (run inside pg_virtualenv or export them)")


if __name__ == "__main__":
    unittest.main()
