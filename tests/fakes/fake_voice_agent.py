#!/usr/bin/python3
"""A strict loopback fake of the voice-agent API followupd calls once per follow-up booking.

    POST /api/voice-agent/calls/start-call
      Content-Type: application/json                      (else 415)
      Authorization: Bearer <token>                       (only when the fake was given a token; else 401)
      X-Tenant-Id: <uuid>, Idempotency-Key: <key>, X-Request-Id: <id>   (each exactly once; else 400)
      traceparent: 00-<32 hex>-<16 hex>-<2 hex>            (optional; at most once and well-formed, else 400)
      body: exactly {tenantId, bookingId, leadId, assignedUserId (uuid or null), scheduledAt (RFC 3339),
             idempotencyKey, bookingType, source: "followupd"}
             with tenantId == X-Tenant-Id and idempotencyKey == Idempotency-Key
             (malformed JSON -> 400; wrong keys, types or values -> 422)
    -> 200 {"callId": "<uuid>", "status": "started"}

It behaves like a real idempotent API: a repeated Idempotency-Key with the same body returns the SAME callId
and does not start a second call; the same key with a different body is refused (422). Every accepted request
is recorded (`calls`, duplicates flagged), distinct keys are in `unique_keys`, refused ones in `rejected`.

Library use:
    agent = FakeVoiceAgent(token="secret").start()
    ... point the client at agent.start_call_url ...
    self.assertTrue(agent.wait_for_calls(1, timeout=5))   # Condition-based, no polling
    agent.stop()

Failure injection: `fail_next(n, status=500, retry_after=None)` (retry_after: a Retry-After header value, seconds
or an HTTP-date), `delay_next(n, seconds, when='after')` (by default the call is started and recorded, then the
reply is held back, so a client that times out and retries must be deduplicated), `set_mode('error', status=500)` /
`set_mode('ok')`.

Holding calls: `hold()` makes every call accepted from then on wait, started and recorded, until `release()` answers
them (a call slot held as long as the test wants, without timing); `in_flight`, `max_in_flight` and
`max_in_flight_by_tenant` say how many calls were waiting at once (all, and per X-Tenant-Id).

CLI: `fake_voice_agent.py --port 0 [--token T | --token-file F] [--print]` prints one JSON line with its URLs,
then (with --print) one human-readable line per call, and serves until SIGTERM. HTTP `/_control/...` exposes
the same introspection and knobs (see FakeVoiceAgent.routes()).
"""
import argparse
import hmac
import re
import sys
import threading
import time
import uuid

try:  # imported as part of the tests.fakes / fakes package
    from .fakehttp import FakeServer, FaultPlan, HttpError, Response, parse_rfc3339, serve_cli, strict_json_loads
except ImportError:  # run as a script, or imported with tests/fakes on sys.path
    from fakehttp import FakeServer, FaultPlan, HttpError, Response, parse_rfc3339, serve_cli, strict_json_loads

START_CALL_PATH = "/api/voice-agent/calls/start-call"
BODY_KEYS = ("tenantId", "bookingId", "leadId", "assignedUserId", "scheduledAt", "idempotencyKey", "bookingType",
             "source")
REQUIRED_HEADERS = ("X-Tenant-Id", "Idempotency-Key", "X-Request-Id")
EXPECTED_SOURCE = "followupd"
MAX_KEY_CHARS = 255
TRACEPARENT_RE = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def api_error(status, code, message):
    return HttpError(Response.json(status, {"error": code, "message": message}))


def _is_uuid(value):
    return isinstance(value, str) and UUID_RE.fullmatch(value) is not None


class StartCallValidator:
    """Checks one start-call request; returns (headers, body) or raises HttpError with a JSON error."""

    def __init__(self, token):
        self.token = token

    def validate(self, request):
        self._check_auth(request)
        if request.media_type() != "application/json":
            raise api_error(415, "unsupported_media_type", "Content-Type must be application/json")
        headers = self._required_headers(request)
        body = self._json_body(request.body)
        self._check_keys(body)
        self._check_values(body)
        if body["tenantId"] != headers["X-Tenant-Id"]:
            raise api_error(422, "tenant_mismatch", "body tenantId does not match the X-Tenant-Id header")
        if body["idempotencyKey"] != headers["Idempotency-Key"]:
            raise api_error(422, "idempotency_key_mismatch",
                            "body idempotencyKey does not match the Idempotency-Key header")
        return headers, body

    def _check_auth(self, request):
        if self.token is None:
            return
        given = request.header("Authorization") or ""
        if not hmac.compare_digest(given.encode("utf-8", "replace"), f"Bearer {self.token}".encode("utf-8")):
            raise api_error(401, "unauthorized", "missing or invalid bearer token")

    @staticmethod
    def _required_headers(request):
        headers = {}
        for name in REQUIRED_HEADERS:
            values = request.header_values(name)
            if len(values) != 1 or not values[0].strip():
                raise api_error(400, "missing_header", f"{name} header is required exactly once")
            headers[name] = values[0].strip()
        if not _is_uuid(headers["X-Tenant-Id"]):
            raise api_error(400, "invalid_header", "X-Tenant-Id must be a UUID")
        if len(headers["Idempotency-Key"]) > MAX_KEY_CHARS:
            raise api_error(400, "invalid_header", f"Idempotency-Key longer than {MAX_KEY_CHARS} characters")
        traceparent = request.header_values("traceparent")
        if len(traceparent) > 1 or (traceparent and not TRACEPARENT_RE.fullmatch(traceparent[0])):
            raise api_error(400, "invalid_header", "traceparent must appear at most once, as 00-trace-parent-flags")
        return headers

    @staticmethod
    def _json_body(raw):
        try:
            body = strict_json_loads(raw)
        except ValueError as exc:
            raise api_error(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise api_error(400, "invalid_json", "request body must be a JSON object")
        return body

    @staticmethod
    def _check_keys(body):
        missing = [k for k in BODY_KEYS if k not in body]
        unexpected = sorted(k for k in body if k not in BODY_KEYS)
        if missing or unexpected:
            raise api_error(422, "invalid_body", f"missing keys {missing}, unexpected keys {unexpected}")

    @staticmethod
    def _check_values(body):
        for key in ("tenantId", "bookingId", "leadId"):
            if not _is_uuid(body[key]):
                raise api_error(422, "invalid_body", f"{key} must be a UUID string")
        if body["assignedUserId"] is not None and not _is_uuid(body["assignedUserId"]):
            raise api_error(422, "invalid_body", "assignedUserId must be a UUID string or null")
        try:
            parse_rfc3339(body["scheduledAt"])
        except ValueError as exc:
            raise api_error(422, "invalid_body", f"scheduledAt must be an RFC 3339 timestamp: {exc}") from exc
        for key in ("idempotencyKey", "bookingType"):
            if not isinstance(body[key], str) or not body[key]:
                raise api_error(422, "invalid_body", f"{key} must be a non-empty string")
        if body["source"] != EXPECTED_SOURCE:
            raise api_error(422, "invalid_body", f"source must be \"{EXPECTED_SOURCE}\"")


class FakeVoiceAgent(FakeServer):
    """The voice-agent start-call API with idempotent dedupe, recording and failure injection."""

    def __init__(self, token=None, port=0, now=time.time, print_calls=False, out=None, verbose=False):
        self.token = token
        self.now = now
        self.print_calls = print_calls
        self.out = out or sys.stdout
        self.faults = FaultPlan({"start_call": {"start_call"}, "any": {"start_call"}})
        self._validator = StartCallValidator(token)
        self._cond = threading.Condition(threading.RLock())
        self._calls = []
        self._by_key = {}  # idempotency key -> {"call_id", "body"}
        self._rejected = []
        self._injected = []
        self._mode = ("ok", None)
        self._gate = None  # threading.Event while holding
        self._in_flight = {}  # tenant -> calls waiting on the gate
        self._max_in_flight = 0
        self._max_in_flight_by_tenant = {}
        super().__init__(port=port, verbose=verbose)

    @property
    def start_call_url(self):
        return self.base_url + START_CALL_PATH

    def info(self):
        return {"base_url": self.base_url, "start_call_url": self.start_call_url,
                "control_url": self.base_url + "/_control"}

    def routes(self):
        return [
            ("POST", START_CALL_PATH, self._http_start_call),
            ("GET", r"/_control/calls", self._control_calls),
            ("GET", r"/_control/wait", self._control_wait),
            ("POST", r"/_control/fail_next", self._control_fail_next),
            ("POST", r"/_control/delay_next", self._control_delay_next),
            ("POST", r"/_control/mode", self._control_mode),
        ]

    def not_found(self, request):
        return Response.json(404, {"error": "not_found", "message": f"no route for {request.path}"})

    # -- Python API ------------------------------------------------------------------------------------------
    def fail_next(self, n, status=500, retry_after=None):
        """The next n start-call requests answer `status` without starting a call (with a Retry-After header when
        retry_after is given: seconds or an HTTP-date, sent as given)."""
        self.faults.fail_next(n, status, "start_call", retry_after=retry_after)

    HOLD_LIMIT_S = 120  # a held call is answered anyway after this (a test that forgot release() fails, not hangs)

    def hold(self):
        """From now on every accepted call is started and recorded, then its reply waits until release()."""
        with self._cond:
            if self._gate is None:
                self._gate = threading.Event()

    def release(self):
        """Answer every held call and stop holding."""
        with self._cond:
            gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()

    @property
    def in_flight(self):
        """Calls waiting on hold() right now."""
        with self._cond:
            return sum(self._in_flight.values())

    @property
    def max_in_flight(self):
        with self._cond:
            return self._max_in_flight

    @property
    def max_in_flight_by_tenant(self):
        with self._cond:
            return dict(self._max_in_flight_by_tenant)

    def _wait_if_held(self, tenant):
        with self._cond:
            gate = self._gate
            if gate is None:
                return
            self._in_flight[tenant] = self._in_flight.get(tenant, 0) + 1
            self._max_in_flight = max(self._max_in_flight, sum(self._in_flight.values()))
            self._max_in_flight_by_tenant[tenant] = max(self._max_in_flight_by_tenant.get(tenant, 0),
                                                        self._in_flight[tenant])
            self._cond.notify_all()
        gate.wait(self.HOLD_LIMIT_S)
        with self._cond:
            self._in_flight[tenant] -= 1
            self._cond.notify_all()

    def delay_next(self, n, seconds, when="after"):
        """Hold the next n replies for `seconds`. when='after': the call is started and recorded first (a client
        that times out has still started it); when='before': wait, then process."""
        self.faults.delay_next(n, seconds, "start_call", when)

    def set_mode(self, mode, status=500):
        """'error': every request answers `status` without starting a call; 'ok': normal."""
        if mode not in ("ok", "error"):
            raise ValueError("mode must be 'ok' or 'error'")
        with self._cond:
            self._mode = (mode, int(status))

    @property
    def calls(self):
        """Every accepted request, in order: {"call_id", "idempotency_key", "request_id", "duplicate",
        "headers", "body", "time"}."""
        with self._cond:
            return [dict(c) for c in self._calls]

    @property
    def unique_keys(self):
        """Distinct Idempotency-Keys accepted, in first-seen order (= calls actually started)."""
        with self._cond:
            return list(self._by_key)

    @property
    def call_count(self):
        with self._cond:
            return len(self._calls)

    @property
    def unique_count(self):
        with self._cond:
            return len(self._by_key)

    @property
    def rejected(self):
        """Refused requests: {"status", "error", "message", "headers", "body", "time"}."""
        with self._cond:
            return [dict(r) for r in self._rejected]

    @property
    def injected(self):
        """Requests answered by fail_next/set_mode('error'): {"status", "headers", "body", "time"}."""
        with self._cond:
            return [dict(r) for r in self._injected]

    def calls_for_booking(self, booking_id):
        return [c for c in self.calls if c["body"].get("bookingId") == booking_id]

    def wait_until(self, predicate, timeout):
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_for_calls(self, n, timeout):
        """Block until at least n requests were accepted (duplicates included); True if so."""
        return self.wait_until(lambda: len(self._calls) >= n, timeout)

    def wait_for_unique(self, n, timeout):
        """Block until at least n distinct keys were accepted; True if so."""
        return self.wait_until(lambda: len(self._by_key) >= n, timeout)

    def wait_for_requests(self, n, timeout):
        """Block until at least n requests arrived at all (accepted, rejected or failed by injection)."""
        return self.wait_until(lambda: len(self._calls) + len(self._rejected) + len(self._injected) >= n, timeout)

    # -- HTTP ---------------------------------------------------------------------------------------------------
    def _http_start_call(self, request):
        self._inject_failure(request)
        delay = self.faults.take_delay("start_call")
        if delay and delay["when"] == "before":
            self.sleep(delay["seconds"])
        try:
            headers, body = self._validator.validate(request)
            call_id, duplicate = self._accept(request, headers, body)
        except HttpError as exc:
            self._reject(request, exc)
            raise
        self._wait_if_held(headers["X-Tenant-Id"])
        response = Response.json(200, {"callId": call_id, "status": "started"})
        if delay and delay["when"] == "after":
            response.delay_s = delay["seconds"]
        return response

    def _inject_failure(self, request):
        with self._cond:
            mode, status = self._mode
        rule = self.faults.take_failure("start_call")
        retry_after = None
        if rule is not None:
            status, retry_after = rule["status"], rule.get("retry_after")
        elif mode != "error":
            return
        with self._cond:
            self._injected.append({"status": status, "headers": request.headers_dict(),
                                   "body": request.body.decode("utf-8", "replace"), "time": self.now()})
            self._cond.notify_all()
        extra = [("Retry-After", str(retry_after))] if retry_after is not None else []
        raise HttpError(Response.json(status, {"error": "injected_failure", "message": f"injected failure ({status})"},
                                      headers=extra))

    def _accept(self, request, headers, body):
        key = headers["Idempotency-Key"]
        with self._cond:
            first = self._by_key.get(key)
            if first is not None and first["body"] != body:
                raise api_error(422, "idempotency_key_reused",
                                "Idempotency-Key was already used with a different request body")
            duplicate = first is not None
            call_id = first["call_id"] if duplicate else str(uuid.uuid4())
            if not duplicate:
                self._by_key[key] = {"call_id": call_id, "body": body}
            record = {"call_id": call_id, "idempotency_key": key, "request_id": headers["X-Request-Id"],
                      "duplicate": duplicate, "headers": request.headers_dict(), "body": body, "time": self.now()}
            self._calls.append(record)
            if self.print_calls:
                self._print(record)
            self._cond.notify_all()
        return call_id, duplicate

    def _reject(self, request, exc):
        try:
            payload = strict_json_loads(exc.response.body)
        except ValueError:
            payload = {}
        with self._cond:
            self._rejected.append({"status": exc.response.status, "error": payload.get("error"),
                                   "message": payload.get("message"), "headers": request.headers_dict(),
                                   "body": request.body.decode("utf-8", "replace"), "time": self.now()})
            self._cond.notify_all()

    def _print(self, record):
        body = record["body"]
        if record["duplicate"]:
            line = (f"[voice-agent] duplicate request (key {record['idempotency_key']}) -> same call "
                    f"{record['call_id']}, not started again")
        else:
            line = (f"[voice-agent] call {record['call_id']} started: tenant={body['tenantId']} "
                    f"booking={body['bookingId']} lead={body['leadId']} user={body['assignedUserId']} "
                    f"type={body['bookingType']} scheduledAt={body['scheduledAt']}")
        self.out.write(line + "\n")
        self.out.flush()

    # -- control API (CLI mode) -------------------------------------------------------------------------------
    @staticmethod
    def _control_body(request):
        try:
            body = strict_json_loads(request.body) if request.body else {}
        except ValueError as exc:
            raise api_error(400, "invalid_json", str(exc)) from exc
        if not isinstance(body, dict):
            raise api_error(400, "invalid_json", "expected a JSON object")
        return body

    def _control_calls(self, request):
        return Response.json(200, {"calls": self.calls, "unique_keys": self.unique_keys, "rejected": self.rejected,
                                   "injected": self.injected, "internal_errors": list(self.internal_errors)})

    def _control_wait(self, request):
        n = int((request.query.get("n") or ["1"])[-1])
        timeout = float((request.query.get("timeout") or ["10"])[-1])
        unique = (request.query.get("unique") or ["0"])[-1] == "1"
        ok = self.wait_for_unique(n, timeout) if unique else self.wait_for_calls(n, timeout)
        return Response.json(200, {"ok": bool(ok), "calls": self.call_count, "unique": self.unique_count})

    def _control_fail_next(self, request):
        body = self._control_body(request)
        self.fail_next(int(body.get("n", 1)), int(body.get("status", 500)), body.get("retry_after"))
        return Response.json(200, {})

    def _control_delay_next(self, request):
        body = self._control_body(request)
        try:
            self.delay_next(int(body.get("n", 1)), float(body.get("seconds", 1.0)), body.get("when", "after"))
        except ValueError as exc:
            raise api_error(400, "invalid_argument", str(exc)) from exc
        return Response.json(200, {})

    def _control_mode(self, request):
        body = self._control_body(request)
        try:
            self.set_mode(body.get("mode", "ok"), int(body.get("status", 500)))
        except ValueError as exc:
            raise api_error(400, "invalid_argument", str(exc)) from exc
        return Response.json(200, {})


def main(argv=None):
    parser = argparse.ArgumentParser(description="Strict loopback fake of the voice-agent start-call API")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", help="require Authorization: Bearer TOKEN")
    parser.add_argument("--token-file", help="read the bearer token from this file (stripped)")
    parser.add_argument("--print", dest="print_calls", action="store_true",
                        help="print one human-readable line per accepted call")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    token = args.token
    if args.token_file:
        with open(args.token_file, "r", encoding="utf-8") as handle:
            token = handle.read().strip()
    agent = FakeVoiceAgent(token=token, port=args.port, print_calls=args.print_calls, verbose=args.verbose)
    return serve_cli(agent, agent.info)


if __name__ == "__main__":
    raise SystemExit(main())
