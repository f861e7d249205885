"""Plumbing for bench/run.py (stdlib only): PostgreSQL through psql/pgbench, child processes with their CPU time
and peak RSS, the C sink's control API, the machine's CPU counters, percentiles.

- `Pg(admin_db)`: `create_db(prefix)` -> name, `drop_db(name)`, `psql(db, sql, schema=None)` -> stdout,
  `rows(db, sql)` -> [[str]], `lad_schema(db, schema)` (the LAD table + sql/migrations, as production applies
  them), `setting(name)`, `version()`.
- `Child(name, argv, env, workdir)`: a started process whose stdout/stderr go to files in `workdir`;
  `cpu_s()` (user+system seconds so far, from /proc), `vm_hwm_kb()` (peak RSS, VmHWM), `stop()` (SIGTERM, wait,
  SIGKILL after a deadline), `wait_for_output(text, timeout)`.
- `Sink(workdir, mode, ...)`: the C sink (bench/src/sink.c) as a Child plus `stats()`, `dump()`, `reset()`,
  `wait_calls(n, timeout)` (fails when the count stops moving for `stall_s`).
- `MachineCpu`: busy/total jiffies from /proc/stat; `MachineCpu.busy_cores(a, b)` -> busy CPUs on average.
- `PgCpuSampler(db)`: a thread that samples the CPU time of the PostgreSQL backends serving database `db` (their
  process title names it) until `stop()`; `total_s()` is what they used since the sampler started (a backend that
  existed before counts from its CPU time then). A backend that exits loses at most one interval.
- `percentile(sorted_values, p)`, `free_port()`, `http_json(url)`, `wait_until(pred, timeout, what)`.
"""
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    pass


def wait_until(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)  # polling a condition with a deadline


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url, method="GET", timeout=10):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def http_text(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


class Pg:
    def __init__(self, admin_db=None):
        self.admin_db = admin_db or os.environ.get("PGDATABASE", "postgres")

    def env(self, db, schema=None):
        env = dict(os.environ)
        env["PGDATABASE"] = db
        env.pop("PGOPTIONS", None)
        if schema:
            env["PGOPTIONS"] = f"-c search_path={schema}"
        return env

    def psql(self, db, sql, schema=None, args=()):
        proc = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *args, "-f", "-"], input=sql,
                              env=self.env(db, schema), capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise BenchError(f"psql failed on {db}: {proc.stderr.strip()}")
        return proc.stdout

    def rows(self, db, sql):
        out = self.psql(db, sql, args=("-A", "-t", "-F", "\t"))
        return [line.split("\t") for line in out.splitlines() if line]

    def create_db(self, prefix):
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.psql(self.admin_db, f"CREATE DATABASE {quote_ident(name)}")
        return name

    def drop_db(self, name):
        self.psql(self.admin_db, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")

    def lad_schema(self, db, schema):
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"schema={schema}", "-f",
                        os.path.join(ROOT, "tests", "fixtures", "lead_bookings.sql")],
                       env=self.env(db), check=True, capture_output=True, timeout=120)
        mig_dir = os.path.join(ROOT, "sql", "migrations")
        for name in sorted(n for n in os.listdir(mig_dir) if n.endswith(".sql")):
            subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", os.path.join(mig_dir, name)],
                           env=self.env(db, schema), check=True, capture_output=True, timeout=120)

    def setting(self, name):
        return self.rows(self.admin_db, f"SHOW {name}")[0][0]

    def version(self):
        return self.rows(self.admin_db, "SHOW server_version")[0][0]


def proc_cpu_s(pid):
    """user + system CPU seconds of a live process (0.0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Child:
    def __init__(self, name, argv, workdir, env=None, cwd=None):
        self.name = name
        self.stdout_path = os.path.join(workdir, f"{name}.out")
        self.stderr_path = os.path.join(workdir, f"{name}.err")
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
                                     env=env, cwd=cwd)
        self.pid = self.proc.pid
        self.last_cpu_s = 0.0
        self.last_hwm_kb = 0

    def running(self):
        return self.proc.poll() is None

    def cpu_s(self):
        if self.running():
            self.last_cpu_s = proc_cpu_s(self.pid)
        return self.last_cpu_s

    def vm_hwm_kb(self):
        if self.running():
            self.last_hwm_kb = proc_status_kb(self.pid, "VmHWM")
        return self.last_hwm_kb

    def output(self):
        with open(self.stdout_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_for_output(self, text, timeout):
        def seen():
            if not self.running():
                raise BenchError(f"{self.name} exited (code {self.proc.returncode}); see {self.stderr_path}")
            return text in self.output()
        wait_until(seen, timeout, f"{self.name} to print {text!r}")

    def stop(self, timeout=15):
        self.cpu_s()
        self.vm_hwm_kb()
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        self._err.close()
        return self.proc.returncode


class Sink(Child):
    """The C sink: voice agent (`mode='voice'`) or light Cloud Tasks (`mode='cloudtasks'`)."""

    def __init__(self, binary, workdir, mode="voice", name=None, jwks_path=None):
        argv = [binary, "--mode", mode]
        if jwks_path:
            argv += ["--jwks", jwks_path]
        super().__init__(name or f"sink-{mode}", argv, workdir)
        self.wait_for_output('"port"', 10)
        self.port = json.loads(self.output().splitlines()[0])["port"]
        self.base_url = f"http://127.0.0.1:{self.port}"

    def stats(self):
        return http_json(self.base_url + "/_stats")

    def reset(self):
        http_json(self.base_url + "/_reset", method="POST")

    def dump(self):
        return http_text(self.base_url + "/_dump")

    def calls(self):
        """{booking_id: first arrival µs} and the number of duplicate calls."""
        first, dupes = {}, 0
        for line in self.dump().splitlines():
            bid, at = line.split()
            if bid in first:
                dupes += 1
            else:
                first[bid] = int(at)
        return first, dupes

    def wait_calls(self, n, timeout, stall_s=30.0):
        """Wait until the sink holds >= n calls; fail on timeout or when nothing arrives for stall_s."""
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while True:
            calls = self.stats()["calls"]
            now = time.monotonic()
            if calls >= n:
                return calls
            if calls != last:
                last, last_change = calls, now
            if now > deadline or now - last_change > stall_s:
                raise BenchError(f"sink has {calls} of {n} calls after {timeout - (deadline - now):.0f}s")
            time.sleep(0.05)  # polling a condition with a deadline


class MachineCpu:
    def __init__(self):
        with open("/proc/stat") as f:
            parts = [int(x) for x in f.readline().split()[1:]]
        idle = parts[3] + parts[4]
        self.total = sum(parts[:8])
        self.busy = self.total - idle
        self.t = time.monotonic()

    @staticmethod
    def busy_cores(a, b):
        """Average number of busy CPUs between two snapshots."""
        dt = b.t - a.t
        total = b.total - a.total
        if dt <= 0 or total <= 0:
            return 0.0
        return (b.busy - a.busy) / total * os.cpu_count()


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class PgCpuSampler(threading.Thread):
    def __init__(self, db, interval=0.2):
        super().__init__(daemon=True)
        self.needle = f" {db} "
        self.interval = interval
        self.cpu = {}
        self._stop_event = threading.Event()
        self._scan()
        self.baseline = dict(self.cpu)   # CPU the backends already had: not this window's
        self.start()

    def _scan(self):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    title = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if title.startswith("postgres:") and self.needle in title:
                cpu = proc_cpu_s(int(entry))
                if cpu > self.cpu.get(entry, 0.0):
                    self.cpu[entry] = cpu

    def run(self):
        while not self._stop_event.wait(self.interval):
            self._scan()

    def stop(self):
        self._stop_event.set()
        self.join()
        self._scan()
        return self.total_s()

    def total_s(self):
        return sum(cpu - self.baseline.get(pid, 0.0) for pid, cpu in self.cpu.items())
