"""Helpers for the operations tests: a test-owned systemd notification socket, a TCP proxy that can keep the
database unreachable until told otherwise, and a strict checker of the Prometheus text format 0.0.4.

    with NotifySocket() as ns:                     # or NotifySocket(abstract=True)
        env = {"NOTIFY_SOCKET": ns.address}
        ns.wait_for(lambda m: m.get("READY") == "1", timeout=10)

    with GatedProxy.to_postgres() as proxy:        # refuses connections until proxy.open()
        conninfo = proxy.conninfo(dbname)

    families, samples = parse_prometheus(text)     # raises PromFormatError on any deviation
"""
import math
import os
import re
import socket
import tempfile
import threading
import time
import uuid


# -- sd_notify ---------------------------------------------------------------------------------------------------

def parse_notify(datagram):
    """'READY=1\\nSTATUS=x' -> {'READY': '1', 'STATUS': 'x'} (the protocol: newline-separated assignments)."""
    fields = {}
    for line in datagram.decode("utf-8").split("\n"):
        if line:
            key, sep, value = line.partition("=")
            if not sep:
                raise AssertionError(f"malformed notification line {line!r} in {datagram!r}")
            fields[key] = value
    return fields


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET. Every datagram is parsed and kept in
    `messages` (dicts, in arrival order, each with '_t' = time.monotonic() of arrival)."""

    def __init__(self, abstract=False):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._dir = None
        if abstract:
            name = f"followupd-test-{uuid.uuid4().hex}"
            self._sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self._dir = tempfile.mkdtemp(prefix="followupd-notify-")
            self.address = os.path.join(self._dir, "notify")
            self._sock.bind(self.address)
        self.messages = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self):
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                return
            if self._closed:
                return
            msg = parse_notify(data)
            msg["_t"] = time.monotonic()
            with self._cond:
                self.messages.append(msg)
                self._cond.notify_all()

    def mark(self):
        with self._cond:
            return len(self.messages)

    def snapshot(self, since=0):
        with self._cond:
            return list(self.messages[since:])

    def wait_for(self, pred, timeout=10.0, since=0):
        """The first message at index >= since satisfying pred; fails after timeout (a condition wait)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages[since:]:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching notification within {timeout}s; got "
                                         f"{[{k: v for k, v in m.items() if k != '_t'} for m in self.messages]}")
                self._cond.wait(left)

    def wait_count(self, pred, n, timeout=10.0, since=0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages[since:] if pred(m)]
                if len(found) >= n:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"only {len(found)} of {n} matching notifications within {timeout}s")
                self._cond.wait(left)

    def close(self):
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)
        if self._dir is not None:
            try:
                os.unlink(self.address)
            except OSError:
                pass
            os.rmdir(self._dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# -- a gate in front of PostgreSQL -----------------------------------------------------------------------------

class GatedProxy:
    """Listens on 127.0.0.1:<port>. Closed: every connection is accepted and closed at once (the server looks
    down). Open: connections are forwarded to the target (TCP host:port or a Unix socket path)."""

    def __init__(self, target):
        self.target = target
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._stop = False
        self._socks = []
        self._lock = threading.Lock()
        self.refused = 0
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @classmethod
    def to_postgres(cls):
        host = os.environ.get("PGHOST", "localhost")
        port = int(os.environ.get("PGPORT", "5432"))
        if host.startswith("/"):
            return cls(os.path.join(host, f".s.PGSQL.{port}"))
        return cls((host, port))

    def conninfo(self, dbname):
        parts = {"host": "127.0.0.1", "port": str(self.port), "user": os.environ.get("PGUSER", "postgres"),
                 "password": os.environ.get("PGPASSWORD", ""), "dbname": dbname}
        return " ".join(f"{k}='{v}'" for k, v in parts.items() if v)

    def open(self):
        self._open.set()

    def _connect_target(self):
        if isinstance(self.target, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            s = socket.socket()
        s.connect(self.target)
        return s

    def _accept_loop(self):
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                self.refused += 1
                client.close()
                continue
            try:
                upstream = self._connect_target()
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (dst,):
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        self._stop = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._thread.join(timeout=5)
        with self._lock:
            for s in self._socks:
                try:
                    s.close()
                except OSError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# -- Prometheus text format 0.0.4, strictly -------------------------------------------------------------------

class PromFormatError(AssertionError):
    pass


METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
SAMPLE = re.compile(r"(?P<name>[^{\s]+)(?:\{(?P<labels>.*)\})? (?P<value>\S+)(?: (?P<ts>-?\d+))?\Z")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _parse_value(text, where):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", text):
        raise PromFormatError(f"{where}: bad number {text!r}")
    return float(text)


def _parse_labels(text, where):
    """'a="x",b="y\\"z"' -> {'a': 'x', 'b': 'y"z'}; only \\\\, \\" and \\n escapes; no duplicates."""
    labels, i, n = {}, 0, len(text)
    while i < n:
        m = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", text[i:])
        if not m:
            raise PromFormatError(f"{where}: bad label syntax at {text[i:]!r}")
        name = m.group(1)
        i += m.end()
        value = []
        while True:
            if i >= n:
                raise PromFormatError(f"{where}: unterminated label value")
            c = text[i]
            if c == "\\":
                if i + 1 >= n or text[i + 1] not in '\\"n':
                    raise PromFormatError(f"{where}: bad escape in label value")
                value.append({"\\": "\\", '"': '"', "n": "\n"}[text[i + 1]])
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise PromFormatError(f"{where}: raw newline in label value")
            else:
                value.append(c)
                i += 1
        if name in labels:
            raise PromFormatError(f"{where}: duplicate label {name}")
        if name.startswith("__"):
            raise PromFormatError(f"{where}: reserved label name {name}")
        labels[name] = "".join(value)
        if i < n:
            if text[i] != ",":
                raise PromFormatError(f"{where}: expected ',' between labels")
            i += 1
            if i >= n:
                raise PromFormatError(f"{where}: trailing comma in labels")
    return labels


def _family_of(name, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) in ("histogram", "summary"):
            return name[: -len(suffix)]
    return name


def parse_prometheus(text):
    """Validate `text` strictly; returns (types {family: type}, samples {(name, frozenset(labels)): value}).

    Checks: text ends with a newline, no blank lines; '# HELP'/'# TYPE' at most once per family, before its samples,
    valid names; every sample belongs to a declared family and families are contiguous; metric and label names
    match the grammar; label values use only the three escapes; numbers parse; no duplicate series; counters are
    named *_total and non-negative; histograms have _bucket{le} series with increasing le, cumulative
    non-decreasing counts, a +Inf bucket equal to _count, and a _sum."""
    if text and not text.endswith("\n"):
        raise PromFormatError("exposition must end with a newline")
    types, helps, samples, order = {}, set(), {}, []
    finished = set()
    current = None
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {lineno}"
        if line == "":
            raise PromFormatError(f"{where}: blank line")
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not METRIC_NAME.match(name):
                    raise PromFormatError(f"{where}: bad metric name {name!r}")
                if name in finished or (name in types and parts[1] == "TYPE") or \
                        (name in helps and parts[1] == "HELP"):
                    raise PromFormatError(f"{where}: {parts[1]} repeated or after samples for {name}")
                if parts[1] == "TYPE":
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise PromFormatError(f"{where}: bad TYPE line")
                    types[name] = parts[3]
                else:
                    helps.add(name)
                if current is not None and current != name:
                    finished.add(current)
                current = name
            continue
        m = SAMPLE.match(line)
        if not m:
            raise PromFormatError(f"{where}: not a sample line: {line!r}")
        name = m.group("name")
        if not METRIC_NAME.match(name):
            raise PromFormatError(f"{where}: bad metric name {name!r}")
        labels = _parse_labels(m.group("labels") or "", where) if m.group("labels") is not None else {}
        value = _parse_value(m.group("value"), where)
        family = _family_of(name, types)
        if family not in types:
            raise PromFormatError(f"{where}: sample {name} without a TYPE line")
        if family in finished:
            raise PromFormatError(f"{where}: samples of {family} are not contiguous")
        if current != family:
            if current is not None:
                finished.add(current)
            current = family
        key = (name, frozenset(labels.items()))
        if key in samples:
            raise PromFormatError(f"{where}: duplicate series {name}{labels}")
        samples[key] = value
        order.append((family, name, labels, value, where))
    for family, kind in types.items():
        if kind == "counter":
            if not family.endswith("_total"):
                raise PromFormatError(f"counter {family} must end in _total")
            for (n, _), v in samples.items():
                if n == family and (v < 0 or math.isnan(v)):
                    raise PromFormatError(f"counter {family} has a negative or NaN value")
        if kind == "histogram":
            _check_histogram(family, order)
    return types, samples


def _check_histogram(family, order):
    series = {}
    for fam, name, labels, value, where in order:
        if fam != family:
            continue
        if name not in (family + "_bucket", family + "_sum", family + "_count"):
            raise PromFormatError(f"{where}: {name} does not belong to histogram {family}")
        base = {k: v for k, v in labels.items() if k != "le"}
        entry = series.setdefault(frozenset(base.items()), {"buckets": [], "sum": None, "count": None})
        if name.endswith("_bucket"):
            if "le" not in labels:
                raise PromFormatError(f"{where}: bucket without le")
            entry["buckets"].append((_parse_value(labels["le"], where), value, where))
        elif name.endswith("_sum"):
            entry["sum"] = value
        else:
            entry["count"] = value
    for key, e in series.items():
        if e["sum"] is None or e["count"] is None or not e["buckets"]:
            raise PromFormatError(f"histogram {family}{dict(key)} lacks _sum, _count or buckets")
        les = [b[0] for b in e["buckets"]]
        if les != sorted(les) or len(set(les)) != len(les):
            raise PromFormatError(f"histogram {family}: le bounds not strictly increasing")
        if les[-1] != math.inf:
            raise PromFormatError(f"histogram {family}: no +Inf bucket")
        counts = [b[1] for b in e["buckets"]]
        if any(b < a for a, b in zip(counts, counts[1:])):
            raise PromFormatError(f"histogram {family}: buckets not cumulative")
        if counts[-1] != e["count"]:
            raise PromFormatError(f"histogram {family}: +Inf bucket {counts[-1]} != _count {e['count']}")


def sample(samples, name, **labels):
    """Value of one series (None when absent)."""
    return samples.get((name, frozenset(labels.items())))


def metric(d, name, **labels):
    """One series of a running daemon's /metrics (strictly parsed), e.g. metric(d, "followupd_ready")."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{d.port}/metrics", timeout=10) as resp:
        return sample(parse_prometheus(resp.read().decode("utf-8"))[1], name, **labels)
