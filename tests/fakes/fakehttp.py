"""Shared plumbing for the loopback fakes: a threaded HTTP server with a route table, fault injection, a
manual clock, strict JSON and RFC 3339 helpers, and the CLI runner.

API in prose:
- `FakeServer` is the base class of every fake. A subclass lists its routes in `routes()` as
  `(method, regex, handler)`; a handler takes a `Request` and returns a `Response` (or raises `HttpError`).
  `start()` binds 127.0.0.1:`port` (0 = pick one) and serves from a background thread (ThreadingHTTPServer,
  HTTP/1.1 keep-alive); `stop()` shuts it down and closes every open connection; the object is a context
  manager. `base_url` is `http://127.0.0.1:PORT`. Handler crashes become 500s and are kept in `internal_errors`
  so tests can assert the fake itself never broke. Request bodies need Content-Length or chunked encoding
  (411 otherwise) and are capped at `max_body_bytes` (413).
- `Response.json(status, obj)` renders JSON; `Response.delay_s` makes the server wait before writing it (used by
  "delay the reply after doing the work" fault injection).
- `FaultPlan` holds queued failures (`fail_next`) and delays (`delay_next`) keyed by operation scope.
- `ManualClock` is a callable clock for `now=` parameters (`advance`, `set`).
- `strict_json_loads` rejects duplicate keys, NaN/Infinity and trailing garbage.
- `parse_rfc3339` / `format_rfc3339` convert RFC 3339 timestamps to (seconds, nanos) and back (UTC, `Z`).
- `serve_cli(fake, info)` starts a fake, prints `info()` as one JSON line on stdout and serves until
  SIGTERM/SIGINT.
"""
import calendar
import datetime
import http.server
import json
import re
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.parse


class Request:
    """One parsed HTTP request as handlers see it."""

    def __init__(self, method, target, headers, body, client):
        parsed = urllib.parse.urlsplit(target)
        self.method = method
        self.target = target
        self.path = parsed.path
        self.query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        self.headers = headers  # email.message.Message: case-insensitive get()
        self.body = body
        self.client = client
        self.match = None  # the route's regex match

    def header(self, name):
        return self.headers.get(name)

    def header_values(self, name):
        return self.headers.get_all(name) or []

    def media_type(self):
        """Content-Type without parameters, lower-cased ('' when absent)."""
        value = self.headers.get("Content-Type") or ""
        return value.split(";", 1)[0].strip().lower()

    def headers_dict(self):
        return {k: v for k, v in self.headers.items()}


class Response:
    """Status, headers and body bytes; `delay_s` delays writing it."""

    def __init__(self, status, body=b"", headers=None, delay_s=0.0):
        self.status = status
        self.body = body
        self.headers = list(headers or [])
        self.delay_s = delay_s

    @classmethod
    def json(cls, status, obj, headers=None):
        body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
        return cls(status, body, [("Content-Type", "application/json; charset=UTF-8")] + list(headers or []))


class HttpError(Exception):
    """Raised by handlers to answer with `response` right away."""

    def __init__(self, response):
        super().__init__(response.status)
        self.response = response


class ManualClock:
    """A settable clock: pass it as `now=` and move time with advance()/set()."""

    def __init__(self, start=None):
        self._t = float(time.time() if start is None else start)
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            return self._t

    def advance(self, seconds):
        with self._lock:
            self._t += seconds
            return self._t

    def set(self, t):
        with self._lock:
            self._t = float(t)


class FaultPlan:
    """Queued failures and delays. `scopes` maps a scope name to the operations it covers."""

    def __init__(self, scopes):
        self._scopes = {name: frozenset(ops) for name, ops in scopes.items()}
        self._fails = []
        self._delays = []
        self._lock = threading.Lock()

    def _check_scope(self, scope):
        if scope not in self._scopes:
            raise ValueError(f"unknown fault scope {scope!r}; use one of {sorted(self._scopes)}")

    def fail_next(self, n, status, scope, message=None, retry_after=None):
        self._check_scope(scope)
        with self._lock:
            self._fails.append({"left": int(n), "status": int(status), "scope": scope, "message": message,
                                "retry_after": retry_after})

    def delay_next(self, n, seconds, scope, when="after"):
        self._check_scope(scope)
        if when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        with self._lock:
            self._delays.append({"left": int(n), "seconds": float(seconds), "scope": scope, "when": when})

    def _take(self, rules, op):
        with self._lock:
            for rule in rules:
                if rule["left"] > 0 and op in self._scopes[rule["scope"]]:
                    rule["left"] -= 1
                    return dict(rule)
            rules[:] = [r for r in rules if r["left"] > 0]
        return None

    def take_failure(self, op):
        """The next queued failure for `op` (consumed), or None."""
        return self._take(self._fails, op)

    def take_delay(self, op):
        """The next queued delay for `op` (consumed), or None."""
        return self._take(self._delays, op)

    def clear(self):
        with self._lock:
            self._fails.clear()
            self._delays.clear()


def strict_json_loads(data):
    """json.loads that rejects duplicate object keys, NaN/Infinity and non-UTF-8 input (ValueError)."""
    if isinstance(data, bytes):
        data = data.decode("utf-8")  # UnicodeDecodeError is a ValueError

    def no_duplicates(pairs):
        obj = {}
        for key, value in pairs:
            if key in obj:
                raise ValueError(f"duplicate key {key!r}")
            obj[key] = value
        return obj

    def no_constants(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(data, object_pairs_hook=no_duplicates, parse_constant=no_constants)


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


def parse_rfc3339(text):
    """(epoch seconds, nanos) of an RFC 3339 timestamp with `Z` or a ±HH:MM offset; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError("timestamp must be a string")
    match = _RFC3339.match(text)
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    datetime.datetime(year, month, day, hour, minute, second)  # range checks
    nanos = int((match.group(7) or "").ljust(9, "0"))
    offset = 0
    zone = match.group(8)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        oh, om = int(zone[1:3]), int(zone[4:6])
        if oh > 23 or om > 59:
            raise ValueError(f"bad UTC offset in {text!r}")
        offset = sign * (oh * 3600 + om * 60)
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset
    return seconds, nanos


def format_rfc3339(seconds, nanos=0):
    """UTC `Z` form with 0, 3, 6 or 9 fractional digits, the way Google renders protobuf Timestamps."""
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if nanos == 0:
        return base + "Z"
    if nanos % 1_000_000 == 0:
        return f"{base}.{nanos // 1_000_000:03d}Z"
    if nanos % 1_000 == 0:
        return f"{base}.{nanos // 1_000:06d}Z"
    return f"{base}.{nanos:09d}Z"


def split_epoch(t):
    """float epoch seconds -> (seconds, nanos) rounded to microseconds."""
    micros = int(round(t * 1_000_000))
    return micros // 1_000_000, (micros % 1_000_000) * 1000


class _BodyError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "followupd-fake"
    sys_version = ""
    timeout = 60  # idle keep-alive connections are dropped after this
    disable_nagle_algorithm = True  # headers and body go out in separate writes: avoid the 40 ms delayed-ACK stall

    def version_string(self):
        return self.server_version

    def do_GET(self):
        self._serve()

    def do_POST(self):
        self._serve()

    def do_DELETE(self):
        self._serve()

    def do_PUT(self):
        self._serve()

    def do_PATCH(self):
        self._serve()

    def _serve(self):
        fake = self.server.fake
        try:
            body = self._read_body(fake.max_body_bytes)
        except _BodyError as exc:
            self.close_connection = True
            self._write(Response.json(exc.status, {"error": {"code": exc.status, "message": str(exc)}}))
            return
        request = Request(self.command, self.path, self.headers, body, self.client_address)
        response = fake.handle(request)
        if response.delay_s > 0:
            fake.sleep(response.delay_s)
        self._write(response)

    def _read_body(self, limit):
        encoding = (self.headers.get("Transfer-Encoding") or "").strip().lower()
        length = self.headers.get_all("Content-Length") or []
        if encoding and length:
            raise _BodyError(400, "both Content-Length and Transfer-Encoding")
        if encoding:
            if encoding != "chunked":
                raise _BodyError(501, f"unsupported Transfer-Encoding {encoding!r}")
            return self._read_chunked(limit)
        if not length:
            if self.command in ("POST", "PUT", "PATCH"):
                raise _BodyError(411, "Length Required")
            return b""
        if len(length) > 1 or not length[0].strip().isdigit():
            raise _BodyError(400, "bad Content-Length")
        size = int(length[0])
        if size > limit:
            raise _BodyError(413, "request body too large")
        return self.rfile.read(size)

    def _read_chunked(self, limit):
        chunks = []
        total = 0
        while True:
            line = self.rfile.readline(1024).strip()
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError as exc:
                raise _BodyError(400, "bad chunk size") from exc
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > limit:
                raise _BodyError(413, "request body too large")
            chunks.append(self.rfile.read(size))
            if self.rfile.read(2) != b"\r\n":
                raise _BodyError(400, "bad chunk terminator")

    def _write(self, response):
        try:
            self.send_response(response.status)
            names = set()
            for name, value in response.headers:
                names.add(name.lower())
                self.send_header(name, value)
            if "content-type" not in names and response.body:
                self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(response.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            self.close_connection = True  # the client went away (e.g. it timed out first)

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        if self.server.fake.verbose:
            sys.stderr.write("%s - %s\n" % (type(self.server.fake).__name__, format % args))


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 overflows when several daemons open their connections at once (a
    # burst): Linux then drops the handshake's last ACK, and the client waits out its timeout on a connection
    # the server never accepted
    request_queue_size = 1024

    def __init__(self, address, fake):
        self.fake = fake
        self._connections = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self):
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FakeServer:
    """Base class: route table + background ThreadingHTTPServer on 127.0.0.1."""

    max_body_bytes = 1024 * 1024

    def __init__(self, port=0, verbose=False):
        self._requested_port = port
        self.verbose = verbose
        self.internal_errors = []
        self._server = None
        self._thread = None
        self._stopping = threading.Event()
        self._routes = [(method, re.compile(pattern), handler) for method, pattern, handler in self.routes()]

    # -- to override -------------------------------------------------------------------------------------
    def routes(self):
        """[(method, regex, handler(request) -> Response)]; regexes are matched against the whole path."""
        return []

    def not_found(self, request):
        return Response.json(404, {"error": {"code": 404, "message": f"no route for {request.path}",
                                             "status": "NOT_FOUND"}})

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self):
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self._requested_port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(self).__name__}-http", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def port(self):
        if self._server is None:
            raise RuntimeError("not started")
        return self._server.server_address[1]

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def url(self, path):
        return self.base_url + path

    def sleep(self, seconds):
        """Sleep that ends early when the server stops."""
        self._stopping.wait(seconds)

    # -- request routing -----------------------------------------------------------------------------------
    def handle(self, request):
        allowed = False
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if not match:
                continue
            allowed = True
            if method != request.method:
                continue
            request.match = match
            return self._call(handler, request)
        if allowed:
            return Response.json(405, {"error": {"code": 405, "message": "method not allowed",
                                                 "status": "METHOD_NOT_ALLOWED"}})
        return self.not_found(request)

    def _call(self, handler, request):
        try:
            return handler(request)
        except HttpError as exc:
            return exc.response
        except Exception:  # a bug in the fake: make it loud and visible to tests
            text = traceback.format_exc()
            self.internal_errors.append(text)
            sys.stderr.write(f"{type(self).__name__} internal error:\n{text}")
            return Response.json(500, {"error": {"code": 500, "message": "fake internal error",
                                                 "status": "INTERNAL"}})


def serve_cli(fake, info):
    """Start `fake`, print info() as one JSON line, serve until SIGTERM or SIGINT, then stop cleanly."""
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fake.start()
    sys.stdout.write(json.dumps(info()) + "\n")
    sys.stdout.flush()
    while not stop.wait(3600):
        pass
    fake.stop()
    return 0
