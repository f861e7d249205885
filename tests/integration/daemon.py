"""Start and stop the real followupd binary in integration tests and read its JSON log lines.

    from daemon import Daemon, BINARY

    with Daemon() as d:
        d.start(config_text, env={"FOLLOWUPD_LOG_LEVEL": "debug"})
        d.wait_for_log(msg_is("configuration reloaded"), timeout=5)   # or msg_contains(...), any callable(dict)
        code, elapsed = d.stop()                                         # SIGTERM by default

`start(config, env=None, args=())`: `config` is the configuration text (written to a temp file that
`write_config()` can later replace, e.g. before a SIGHUP) or the path of an existing file. The daemon gets a
clean environment: this process's, minus every FOLLOWUPD_* configuration override,
GOOGLE_APPLICATION_CREDENTIALS and CREDENTIALS_DIRECTORY, plus `env`.

stderr is read by a background thread. Every line must be one JSON object: parsed lines go to `logs` (list of
dict, in order), anything else to `bad_lines`, which fails the next `wait_for_log()`/`stop()`/`wait_exit()`
(unless `Daemon(strict=False)`); `assert_clean()` also fails on any stdout output (a daemon writes none). `wait_for_log()` waits with a deadline, never sleeps blindly, and fails early
when the process exits without logging the line. `mark()` + `wait_for_log(..., since=mark)` looks only at lines
logged after a point. `stop()` sends a signal and returns (exit code, seconds from signal to exit); it kills
the process and fails when it does not exit in time. Leaving the `with` block kills a daemon still running.

Binary: $FOLLOWUPD_BUILD/followupd (default: build/ of the checkout).
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

ROOT = os.environ.get("FOLLOWUPD_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("FOLLOWUPD_BUILD") or os.path.join(ROOT, "build")
BINARY = os.path.join(BUILD, "followupd")

# FOLLOWUPD_* variables that are not configuration overrides (the test runner sets them).
_RUNNER_VARS = {"FOLLOWUPD_BUILD", "FOLLOWUPD_ROOT"}
_SCRUBBED_VARS = {"GOOGLE_APPLICATION_CREDENTIALS", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC"}


def clean_env(extra=None):
    """This process's environment without anything that would change followupd's configuration."""
    env = {k: v for k, v in os.environ.items()
           if k not in _SCRUBBED_VARS and (not k.startswith("FOLLOWUPD_") or k in _RUNNER_VARS)}
    env.update(extra or {})
    return env


def msg_is(text):
    return lambda rec: rec.get("msg") == text


def msg_contains(text):
    return lambda rec: text in str(rec.get("msg", ""))


def parse_log_lines(text):
    """Parse stderr captured from a short-lived run: (records, bad_lines)."""
    records, bad = [], []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad.append(line)
    return records, bad


class Daemon:
    def __init__(self, binary=None, strict=True):
        self.binary = binary or BINARY
        self.strict = strict      # a non-JSON stderr line fails wait_for_log/stop/wait_exit
        self.proc = None
        self.logs = []            # parsed JSON objects, in order
        self.bad_lines = []       # stderr lines that were not one JSON object
        self.stdout = []          # anything the daemon wrote to stdout (should stay empty)
        self.config_path = None
        self._tmpdir = None
        self._cond = threading.Condition()
        self._threads = []
        self._stderr_closed = False

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self, config, env=None, args=()):
        if self.proc is not None:
            raise RuntimeError("daemon already started")
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError(f"{self.binary} not built (make)")
        if "\n" not in config and os.path.isfile(config):
            self.config_path = config
        else:
            self.write_config(config)
        self.proc = subprocess.Popen([self.binary, "--config", self.config_path, *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=clean_env(env), cwd=self._tmp())
        self._threads = [threading.Thread(target=self._read_stderr, daemon=True),
                         threading.Thread(target=self._read_stdout, daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def write_config(self, text):
        """(Re)write the temp config file atomically (rename), e.g. before send(SIGHUP)."""
        path = self.config_path if self.config_path and self.config_path.startswith(self._tmp()) \
            else os.path.join(self._tmp(), "followupd.conf")
        tmp = path + ".new"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
        self.config_path = path
        return path

    def send(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Signal the daemon and wait for it: (exit code, seconds between the signal and the exit)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        return self.wait_exit(timeout, t0)

    def wait_exit(self, timeout=5.0, t0=None):
        t0 = time.monotonic() if t0 is None else t0
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"followupd did not exit within {timeout}s; last logs: {self.logs[-5:]}")
        elapsed = time.monotonic() - t0
        self._join_readers()
        self._check_strict()
        return code, elapsed

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.running:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self._join_readers()

    def close(self):
        self.kill()
        for stream in (self.proc.stdout, self.proc.stderr) if self.proc else ():
            stream.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- logs --------------------------------------------------------------------------------------------

    def mark(self):
        """Index of the next log record, for wait_for_log(since=...)."""
        with self._cond:
            return len(self.logs)

    def wait_for_log(self, predicate, timeout=5.0, since=0):
        """The first record at index >= since for which predicate(record) is true. Fails on timeout or when
        the daemon's stderr closes (it exited) without such a record."""
        if isinstance(predicate, str):
            predicate = msg_is(predicate)
        deadline = time.monotonic() + timeout
        with self._cond:
            checked = since
            while True:
                self._check_strict()
                while checked < len(self.logs):
                    rec = self.logs[checked]
                    checked += 1
                    if predicate(rec):
                        return rec
                if self._stderr_closed:
                    raise AssertionError(f"followupd exited (code {self.proc.poll()}) without the expected log "
                                         f"line; logs since {since}: {self.logs[since:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no expected log line within {timeout}s; logs since {since}: "
                                         f"{self.logs[since:]}")
                self._cond.wait(left)

    def find_logs(self, predicate, since=0):
        if isinstance(predicate, str):
            predicate = msg_is(predicate)
        with self._cond:
            return [r for r in self.logs[since:] if predicate(r)]

    def assert_clean(self):
        """Every stderr line was a JSON object and nothing went to stdout."""
        with self._cond:
            if self.bad_lines:
                raise AssertionError(f"non-JSON log lines: {self.bad_lines!r}")
            if self.stdout:
                raise AssertionError(f"unexpected stdout output: {self.stdout!r}")

    # -- internals ---------------------------------------------------------------------------------------

    def _check_strict(self):
        if self.strict and self.bad_lines:
            raise AssertionError(f"non-JSON log lines: {self.bad_lines!r}")

    def _tmp(self):
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="followupd-it-")
        return self._tmpdir

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.rstrip(b"\n")
            try:
                rec = json.loads(line.decode("utf-8"))
                ok = isinstance(rec, dict)
            except ValueError:  # includes UnicodeDecodeError
                ok = False
            with self._cond:
                if ok:
                    self.logs.append(rec)
                else:
                    self.bad_lines.append(raw)
                self._cond.notify_all()
        with self._cond:
            self._stderr_closed = True
            self._cond.notify_all()

    def _read_stdout(self):
        for raw in self.proc.stdout:
            with self._cond:
                self.stdout.append(raw)

    def _join_readers(self):
        for t in self._threads:
            t.join(timeout=5)
