"""Adversarial suites against the real daemon (PostgreSQL, the strict fakes, the real binary over HTTP).

Only what the other suites do not already cover (test_execute_auth.py: the classic JWT attack list;
test_http_server.py: smuggling shapes, slow clients, the connection limit; the unit tests test_adversarial_*.c:
the same shapes in-process):

- JWT: `kid` path/SQL-injection strings, a 10 KB `kid`, duplicate claim keys, nested JSON bombs in the header and
  in the claims, non-UTF-8, ES256 with r = s = 0, RSA signatures of all zeros. One booking takes every attack
  (each answered 401, no voice call, the row unchanged), then the genuine token executes it exactly once.
- HTTP: 10,000 connects (with idle, half-open, half-closed and reset ones among them) while a well-behaved
  client on another address keeps being served; one address holding hundreds of slow connections (refused 503
  past `[http] max_connections_per_peer`) while another address is served and a delivery executes; NUL bytes
  in the head and in the body; a pipeline with an unauthenticated request in the middle (answered from its
  headers, then the connection closes); `Expect: 100-continue` on the execute route; header section and body
  at the limit and one byte over.
- SQL: schema and tenant values carrying quotes, semicolons, `$$`, comments and 10 KB strings, sent through the
  callback body, through NOTIFY payloads and through the configuration: each is rejected (400, dropped with a
  log line, or a refused start) and nothing is executed (a canary table and every row survive); schema names
  that need quoting (mixed case, a reserved word) work end to end, so quoting is real, not accidental.
"""
import json
import os
import select
import socket
import sys
import time
import unittest
import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from daemon import Daemon  # noqa: E402
from pgutil import notify_channel, quote_ident, quote_literal  # noqa: E402
from stack import AUDIENCE, INVOKER, Stack, conninfo, shared_oidc_key, wait_for  # noqa: E402
from fakes import keys as keylib  # noqa: E402

SCHEMA = "tenant_a"
UNAUTHORIZED = (401, {"error": "unauthorized"})
EXECUTE = Stack.EXECUTE_PATH
HEADER_LIMIT = 16384   # [http] max_header_bytes default
BODY_LIMIT = 65536     # [http] max_body_bytes default
PER_PEER_LIMIT = 64    # [http] max_connections_per_peer default
# Linux routes all of 127/8 to lo: each role connects from its own loopback address, so the per-peer cap
# applies to each separately. The attackers use 127.0.0.1; the well-behaved client WELL_BEHAVED.
WELL_BEHAVED = "127.0.0.2"
ATTACK_STRINGS = [
    "tenant_a\"", "tenant_a\"; DROP TABLE canary; --", "tenant_a'; DROP TABLE canary; --", "tenant_a' OR '1'='1",
    "tenant_a;", "tenant_a; SELECT pg_sleep(30)", "$$", "a$$; DROP TABLE canary; $$", "$t$DROP TABLE canary$t$",
    "tenant_a--", "tenant_a/*", "tenant_a.lead_bookings", "\"tenant_a\"", "tenant a", "TENANT_A", "x" * 10000,
]


# -- tokens ----------------------------------------------------------------------------------------------------
def b64json_text(text):
    return keylib.b64url_encode(text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text)


def claims(**overrides):
    now = int(time.time())
    c = {"aud": AUDIENCE, "email": INVOKER, "email_verified": True, "exp": now + 3600, "iat": now,
         "iss": "https://accounts.google.com", "sub": "1234567890"}
    c.update(overrides)
    return c


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


def token_from_text(header_text, claims_text, key=None, sig=None):
    """A compact JWT from literal header/claims JSON texts (str or bytes): signed RS256 by `key`, or carrying the
    raw signature bytes `sig`."""
    signing_input = f"{b64json_text(header_text)}.{b64json_text(claims_text)}"
    if sig is None:
        sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + keylib.b64url_encode(sig)


# -- raw HTTP ----------------------------------------------------------------------------------------------------
def read_responses(sock, want, timeout=10.0):
    """Read until `want` complete responses (Content-Length framed; interim 1xx counted) or EOF.
    Returns ([(status, headers dict, body bytes)], eof)."""
    buf = b""
    out = []
    eof = False
    deadline = time.monotonic() + timeout
    while len(out) < want:
        head_end = buf.find(b"\r\n\r\n")
        if head_end >= 0:
            lines = buf[:head_end].decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
            length = int(headers.get("content-length", "0"))
            if len(buf) >= head_end + 4 + length:
                out.append((status, headers, buf[head_end + 4:head_end + 4 + length]))
                buf = buf[head_end + 4 + length:]
                continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for {want} responses; got {out}, pending {buf[:200]!r}")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            eof = True
            break
        buf += chunk
    return out, eof


def connect(port, timeout=10.0, source=WELL_BEHAVED):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


def exchange(port, data, want=1, timeout=10.0):
    with connect(port, timeout) as s:
        s.sendall(data)
        return read_responses(s, want, timeout)


def wait_eof(sock, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


def execute_request(bid, body, token, extra_headers=""):
    body = body if isinstance(body, bytes) else body.encode()
    return (f"POST {EXECUTE.format(bid)} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n{extra_headers}\r\n").encode() + body


_module = {}


def setUpModule():
    _module["stack"] = Stack(schemas=(SCHEMA,)).__enter__()


def tearDownModule():
    stack = _module.pop("stack")
    try:
        codes = stack.stop_daemons()
        if any(code != 0 for code in codes):
            raise AssertionError(f"followupd exit codes {codes}, expected 0")
    finally:
        stack.__exit__(None, None, None)


class AdversarialCase(unittest.TestCase):
    def setUp(self):
        self.s = _module["stack"]
        self.d = self.s.daemon

    def tearDown(self):
        self.d.assert_clean()
        self.assertTrue(self.d.running, "the daemon died")
        self.assertEqual(self.s.ct.internal_errors, [])
        self.assertEqual(self.s.va.internal_errors, [])

    def healthy(self):
        status, _, _ = self.s.raw_request(self.d, "GET", "/healthz", source=WELL_BEHAVED)
        return status == 200

    def per_peer_refusals(self):
        status, _, text = self.s.raw_request(self.d, "GET", "/metrics", source=WELL_BEHAVED)
        self.assertEqual(status, 200)
        text = text.decode() if isinstance(text, bytes) else str(text)
        line = 'followupd_http_connections_refused_total{reason="per_peer"} '
        return int(float(next(ln[len(line):] for ln in text.splitlines() if ln.startswith(line))))


# ======================================================================================================================
class JwtAdversarialTests(AdversarialCase):
    def test_jwt__every_attack_refused_then_the_genuine_token_executes_once(self):
        bid, row, _, task_body = self.s.scheduled_booking(SCHEMA, tenant=str(uuid.uuid4()))
        google = shared_oidc_key()
        kid = self.s.ct.oidc_keys.active_kid
        attacker = keylib.generate_rsa_key()
        good = compact(claims())
        header = compact({"alg": "RS256", "kid": kid, "typ": "JWT"})
        bomb = "[" * 1000 + "1" + "]" * 1000

        attacks = {}
        for i, evil in enumerate(["../" + kid, kid + "/../" + kid, "/etc/passwd", "https://attacker.example/jwks",
                                  kid + "' OR '1'='1", "'; DROP TABLE canary; --", "$$; DROP TABLE canary; $$",
                                  kid + "\r\nX-Injected: 1", kid.upper(), kid + " ", "%s%s%n"]):
            attacks[f"kid injection {i}: {evil[:30]!r}"] = token_from_text(
                compact({"alg": "RS256", "kid": evil, "typ": "JWT"}), good, key=google)
        attacks["kid of 10 KB"] = token_from_text(compact({"alg": "RS256", "kid": "k" * 10240}), good, key=google)
        attacks["duplicate aud (ours first)"] = token_from_text(
            header, good[:-1] + ',"aud":"https://other.example.com"}', key=google)
        attacks["duplicate aud (ours last)"] = token_from_text(
            header, '{"aud":"https://other.example.com",' + good[1:], key=google)
        attacks["duplicate alg in header"] = token_from_text(
            '{"alg":"none","alg":"RS256","kid":"%s"}' % kid, good, key=google)
        attacks["nested JSON bomb in header (attacker-signed)"] = token_from_text(
            '{"alg":"RS256","kid":"%s","x":%s}' % (kid, bomb), good, key=attacker)
        attacks["deeper JSON bomb in header"] = token_from_text(
            '{"alg":"RS256","kid":"%s","x":%s}' % (kid, "[" * 5000 + "]" * 5000), good, key=attacker)
        attacks["nested JSON bomb as aud (Google-signed)"] = token_from_text(
            header, good.replace(f'"aud":"{AUDIENCE}"', f'"aud":{bomb}'), key=google)
        attacks["non-UTF-8 sub (Google-signed)"] = token_from_text(
            header.encode(), good.replace('"sub":"1234567890"', '"sub":"\xff\xfe"').encode("latin-1"), key=google)
        attacks["non-UTF-8 kid"] = token_from_text(
            b'{"alg":"RS256","kid":"' + kid.encode() + b'\xff"}', good, key=google)
        attacks["escaped NUL in email (Google-signed)"] = token_from_text(
            header, good.replace(INVOKER, INVOKER + "\\u0000.evil"), key=google)
        attacks["ES256 with r = s = 0"] = token_from_text(
            compact({"alg": "ES256", "kid": kid, "typ": "JWT"}), good, sig=bytes(64))
        attacks["RS256 signature of zeros"] = token_from_text(header, good, sig=bytes(256))
        attacks["RS256 signature of 0xff"] = token_from_text(header, good, sig=b"\xff" * 256)
        attacks["genuine token for another audience"] = token_from_text(
            header, compact(claims(aud="https://another-service.example.com")), key=google)

        body = json.dumps(task_body)
        for name, token in attacks.items():
            with self.subTest(attack=name):
                (status, _, answer), = exchange(self.d.port, execute_request(bid, body, token))[0]
                self.assertEqual((status, json.loads(answer or b"null")), UNAUTHORIZED, name)
                self.assertEqual(self.s.voice_requests_for(bid), [], name)
                self.assertEqual(self.s.row(SCHEMA, bid), row, name)
        self.assertTrue(self.healthy())

        (status, _, answer), = exchange(self.d.port, execute_request(bid, body, self.s.oidc_token()))[0]
        self.assertEqual((status, json.loads(answer)), (200, {"status": "executed"}))
        self.assertEqual(len(self.s.va.calls_for_booking(bid)), 1)
        logged = "\n".join(json.dumps(rec) for rec in self.d.find_logs(lambda r: True))
        for name, token in attacks.items():
            self.assertNotIn(token, logged, f"{name}: the token was logged")


# ======================================================================================================================
class HttpAdversarialTests(AdversarialCase):
    def test_http__ten_thousand_connects__listener_stays_up_and_keeps_serving(self):
        total, wave, done = 10000, 500, 0
        served = 0
        while done < total:
            socks = []
            for i in range(wave):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", self.d.port))
                socks.append(s)
            self.assertEqual(self.count_connected(socks), wave, f"connects of the wave after {done}")
            for i, s in enumerate(socks):
                kind = i % 5
                try:
                    s.setblocking(True)
                    s.settimeout(5)
                    if kind == 1:
                        s.sendall(b"GET /healthz HTTP/1.1\r\nHo")                 # half a request, then idle
                    elif kind == 2:
                        s.sendall(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
                        s.shutdown(socket.SHUT_WR)                                # half-closed mid-body
                    elif kind == 3:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                except OSError:
                    pass   # a connection refused or reset under load is fine; the listener must survive
            # a well-behaved client (its own address: the wave is capped per peer), while the whole wave is open
            status, _, body = self.s.raw_request(self.d, "GET", "/healthz", timeout=10, source=WELL_BEHAVED)
            self.assertEqual(status, 200, f"after {done} connects")
            served += 1
            for s in socks:
                s.close()   # kind 3: SO_LINGER 0 -> RST
            done += wave
        self.assertEqual(served, total // wave)
        self.assertTrue(wait_for(self.healthy, 10, "healthz after the storm"))

    @staticmethod
    def count_connected(socks, timeout=10.0):
        """Wait (poll, with a deadline) until every non-blocking connect finished; how many succeeded."""
        poller = select.poll()
        pending = {s.fileno(): s for s in socks}
        for fd in pending:
            poller.register(fd, select.POLLOUT)
        ok = 0
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for fd, _ in poller.poll(max(0, int((deadline - time.monotonic()) * 1000))):
                poller.unregister(fd)
                ok += pending.pop(fd).getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        return ok

    def test_http__half_open_and_half_closed_clients__others_still_served(self):
        idle = []
        for i in range(PER_PEER_LIMIT):
            s = socket.create_connection(("127.0.0.1", self.d.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost:")      # never finished
            idle.append(s)
        closed_after_request = []
        for i in range(50):
            s = connect(self.d.port, timeout=5, source="127.0.0.3")
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            s.shutdown(socket.SHUT_WR)                          # complete request, then half-close
            closed_after_request.append(s)
        try:
            for s in closed_after_request:
                (status, _, _), = read_responses(s, 1)[0]
                self.assertEqual(status, 200)
            self.assertTrue(self.healthy())
            # the stalled ones are answered 408 and closed by the header timeout (5 s in this stack)
            for s in idle[:5]:
                responses, eof = read_responses(s, 1, timeout=15)
                self.assertEqual([r[0] for r in responses], [408])
        finally:
            for s in idle + closed_after_request:
                s.close()
        self.assertTrue(self.healthy())

    def test_http__one_address_opens_hundreds_of_slow_connections__another_address_still_served(self):
        """300 connections from one address that never send a request (each holds a slot until the header
        timeout): past the per-peer cap they are answered 503 and closed at once, counted and logged, while
        another address is served and a delivery executes."""
        flood_from, n = "127.0.0.4", 300   # an address no other test uses: nothing else counts against its cap
        before = self.per_peer_refusals()
        flood = [connect(self.d.port, timeout=5, source=flood_from) for _ in range(n)]
        try:
            wait_for(lambda: self.per_peer_refusals() - before >= n - PER_PEER_LIMIT, 10,
                     "per-peer refusals counted")
            self.assertTrue(self.healthy())
            bid, _, _, task_body = self.s.scheduled_booking(SCHEMA, tenant=str(uuid.uuid4()))
            (status, _, answer), = exchange(self.d.port, execute_request(bid, json.dumps(task_body),
                                                                         self.s.oidc_token()))[0]
            self.assertEqual((status, json.loads(answer)), (200, {"status": "executed"}))
            refused, accepted = 0, 0
            for s in flood:
                responses, eof = read_responses(s, 1, timeout=0.5) if select.select([s], [], [], 0)[0] \
                    else ([], False)
                if responses:
                    self.assertEqual(responses[0][0], 503)
                    self.assertEqual(json.loads(responses[0][2]), {"error": "service_unavailable"})
                    self.assertTrue(eof or wait_eof(s))
                    refused += 1
                else:   # accepted: still waiting, or already closed silently by the header timeout
                    accepted += 1
            self.assertEqual((accepted, refused), (PER_PEER_LIMIT, n - PER_PEER_LIMIT))
            self.assertEqual(self.per_peer_refusals() - before, n - PER_PEER_LIMIT)
            self.assertTrue(self.d.find_logs(lambda r: r.get("peer") == flood_from and
                                             "per-peer connection limit" in r.get("msg", "")))
        finally:
            for s in flood:
                s.close()
        self.assertTrue(self.healthy())

    def test_http__half_closed_execute_delivery__called_once_and_redelivery_deduplicated(self):
        """A delivery whose client half-closes right after the request: the server may drop the answer (the
        exchange is cancelled on EOF), but the booking is executed at most once and the redelivery Cloud Tasks
        would make is answered without a second call."""
        bid, _, _, task_body = self.s.scheduled_booking(SCHEMA, tenant=str(uuid.uuid4()))
        with connect(self.d.port) as s:
            s.sendall(execute_request(bid, json.dumps(task_body), self.s.oidc_token()))
            s.shutdown(socket.SHUT_WR)
            responses, eof = read_responses(s, 1)
            self.assertTrue(eof or responses[0][0] == 200, responses)
        self.s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "executed")
        (status, _, answer), = exchange(self.d.port, execute_request(bid, json.dumps(task_body),
                                                                     self.s.oidc_token()))[0]
        self.assertEqual((status, json.loads(answer)), (200, {"status": "already_executed"}))
        self.assertEqual(len(self.s.va.calls_for_booking(bid)), 1)

    def test_http__nul_bytes_in_the_head__400_and_close(self):
        base = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: b\r\n\r\n"
        for pos in (1, 6, 16, 24, 33, 37):
            req = base[:pos] + b"\x00" + base[pos + 1:]
            with connect(self.d.port) as s:
                s.sendall(req)
                responses, _ = read_responses(s, 1)
                self.assertEqual(responses[0][0], 400, f"NUL at {pos}")
                self.assertTrue(wait_eof(s), f"NUL at {pos}: connection left open")
        self.assertTrue(self.healthy())

    def test_http__nul_byte_in_an_authenticated_body__400_invalid_body_no_call(self):
        bid, row, _, task_body = self.s.scheduled_booking(SCHEMA, tenant=str(uuid.uuid4()))
        body = json.dumps(task_body).encode()
        body = body[:-1] + b',"x":"\x00"}'
        (status, _, answer), = exchange(self.d.port, execute_request(bid, body, self.s.oidc_token()))[0]
        self.assertEqual((status, json.loads(answer)["error"]), (400, "invalid_body"))
        self.assertEqual(self.s.voice_requests_for(bid), [])
        self.assertEqual(self.s.row(SCHEMA, bid), row)

    def test_http__pipeline_with_unauthenticated_request_in_the_middle__answered_in_order_then_closed(self):
        """The unauthenticated request is answered from its headers (its body is never read), so the connection
        closes after the 401 and what was pipelined behind it is not served; a new connection is."""
        bid, row, _, task_body = self.s.scheduled_booking(SCHEMA, tenant=str(uuid.uuid4()))
        body = json.dumps(task_body)
        get = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
        data = get + execute_request(bid, body, "not-a-jwt") + get + execute_request(bid, body, self.s.oidc_token())
        responses, eof = exchange(self.d.port, data, want=4)
        self.assertEqual([r[0] for r in responses], [200, 401])
        self.assertEqual(responses[1][1].get("connection"), "close")
        self.assertTrue(eof)
        self.assertEqual(self.s.voice_requests_for(bid), [])
        self.assertEqual(self.s.row(SCHEMA, bid), row)
        responses, _ = exchange(self.d.port, get + execute_request(bid, body, self.s.oidc_token()), want=2)
        self.assertEqual([r[0] for r in responses], [200, 200])
        self.assertEqual(json.loads(responses[1][2]), {"status": "executed"})
        self.assertEqual(len(self.s.va.calls_for_booking(bid)), 1)

    def test_http__expect_100_continue_on_the_execute_route__interim_then_executed(self):
        bid, _, _, task_body = self.s.scheduled_booking(SCHEMA, tenant=str(uuid.uuid4()))
        body = json.dumps(task_body).encode()
        req = execute_request(bid, body, self.s.oidc_token(), "Expect: 100-continue\r\n")
        head, payload = req[:len(req) - len(body)], body
        with connect(self.d.port) as s:
            s.sendall(head)
            (interim,), _ = read_responses(s, 1)
            self.assertEqual(interim[0], 100)
            s.sendall(payload)
            (final,), _ = read_responses(s, 1)
        self.assertEqual((final[0], json.loads(final[2])), (200, {"status": "executed"}))
        self.assertEqual(len(self.s.va.calls_for_booking(bid)), 1)

    def header_section(self, total):
        """A GET whose header section (request line through the empty line) is exactly `total` bytes."""
        fixed = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: \r\n\r\n"
        return fixed.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (total - len(fixed)))

    def test_http__header_section_at_limit__served_and_one_over__431(self):
        (status, _, _), = exchange(self.d.port, self.header_section(HEADER_LIMIT))[0]
        self.assertEqual(status, 200)
        responses, _ = exchange(self.d.port, self.header_section(HEADER_LIMIT + 1))
        self.assertEqual(responses[0][0], 431)
        self.assertTrue(self.healthy())

    def test_http__body_at_limit__reaches_auth_and_one_over__413(self):
        bid = str(uuid.uuid4())
        (status, _, _), = exchange(self.d.port, execute_request(bid, b" " * BODY_LIMIT, "not-a-jwt"))[0]
        self.assertEqual(status, 401)   # within the limit: authentication refused it from the headers
        with connect(self.d.port) as s:
            s.sendall(execute_request(bid, b"", "not-a-jwt").replace(b"Content-Length: 0",
                                                                     f"Content-Length: {BODY_LIMIT + 1}".encode()))
            responses, _ = read_responses(s, 1)
            self.assertEqual(responses[0][0], 413)
            self.assertTrue(wait_eof(s))
        self.assertTrue(self.healthy())


# ======================================================================================================================
class SqlAdversarialTests(AdversarialCase):
    """Hostile schema/tenant values through every entry point, against a canary table."""

    def setUp(self):
        super().setUp()
        self.s.db.psql("CREATE TABLE IF NOT EXISTS public.canary (id int); INSERT INTO public.canary VALUES (1)")

    def assert_nothing_executed(self):
        self.assertEqual(self.s.db.query("SELECT count(*) FROM public.canary"), [("1",)])
        self.assertEqual(self.s.db.query(
            f"SELECT count(*) FROM pg_tables WHERE schemaname = {quote_literal(SCHEMA)} "
            "AND tablename = 'lead_bookings'"), [("1",)])
        self.assertTrue(self.healthy())

    def tearDown(self):
        try:
            self.assert_nothing_executed()
            self.s.db.psql("DROP TABLE public.canary")
        finally:
            super().tearDown()

    def test_sql__hostile_schema_or_tenant_in_the_callback_body__400_nothing_executed(self):
        bid, row, _, task_body = self.s.scheduled_booking(SCHEMA, tenant=str(uuid.uuid4()))
        for field in ("schema", "tenantId", "idempotencyKey"):
            for evil in ATTACK_STRINGS:
                with self.subTest(field=field, value=evil[:40]):
                    body = dict(task_body, **{field: evil})
                    (status, _, answer), = exchange(self.d.port, execute_request(bid, json.dumps(body),
                                                                                 self.s.oidc_token()))[0]
                    answer = json.loads(answer)
                    if field == "idempotencyKey" and len(evil) < 256:
                        # a well-formed string: it reaches the database only as a $n parameter, matches no row's
                        # key, so the delivery is stale (and the row is left alone)
                        self.assertEqual((status, answer), (200, {"status": "stale"}))
                    else:
                        self.assertEqual(status, 400, answer)
        self.assertEqual(self.s.voice_requests_for(bid), [])
        self.assertEqual(self.s.row(SCHEMA, bid), row)

    def test_sql__hostile_notify_payloads__dropped_and_logged(self):
        channel = notify_channel(SCHEMA)
        tenant, booking = str(uuid.uuid4()), str(uuid.uuid4())
        payloads = []
        for evil in ATTACK_STRINGS[:-1]:
            payloads.append(compact({"schema": evil, "tenantId": tenant, "bookingId": booking, "op": "INSERT"}))
            payloads.append(compact({"schema": SCHEMA, "tenantId": evil, "bookingId": booking, "op": "INSERT"}))
            payloads.append(compact({"schema": SCHEMA, "tenantId": tenant, "bookingId": evil, "op": "INSERT"}))
            payloads.append(compact({"schema": SCHEMA, "tenantId": tenant, "bookingId": booking, "op": evil}))
        payloads.append(compact({"schema": "x" * 7800, "tenantId": tenant, "bookingId": booking, "op": "INSERT"}))
        payloads.append('{"schema":"tenant_a","schema":"other","tenantId":"%s","bookingId":"%s","op":"INSERT"}'
                        % (tenant, booking))
        payloads.append("[" * 3000 + "]" * 3000)
        mark = self.d.mark()
        tasks_before = len(self.s.ct.tasks)
        sql = ";\n".join(f"SELECT pg_notify({quote_literal(channel)}, {quote_literal(p)})" for p in payloads)
        self.s.db.psql(sql)

        def dropped():
            return self.d.find_logs(lambda r: str(r.get("msg", "")).startswith("notification dropped:") and
                                    r.get("reason") in ("malformed", "oversized", "unknown_schema"), since=mark)
        wait_for(lambda: len(dropped()) >= len(payloads), 15, "every hostile payload dropped")
        self.assertEqual(len(dropped()), len(payloads))
        self.assertEqual(len(self.s.ct.tasks), tasks_before)

    def test_sql__hostile_schema_in_the_configuration__daemon_refuses_to_start(self):
        for evil in ("tenant_a\"; DROP TABLE canary; --", "tenant_a'; DROP TABLE canary; --", "a$$b",
                     "tenant_a;x", "s" * 64):
            with self.subTest(schema=evil[:40]):
                d = Daemon()
                try:
                    d.start(self.s.config(0).replace(f"schemas = {SCHEMA}", f"schemas = {SCHEMA},{evil}"))
                    code, _ = d.wait_exit(timeout=15)
                    self.assertNotEqual(code, 0)
                    self.assertTrue(d.find_logs(lambda r: "schemas" in json.dumps(r)), d.logs[-5:])
                finally:
                    d.close()


class QuotedSchemaNamesTests(unittest.TestCase):
    """Schema names that are valid identifiers but only work when quoted: mixed case and a reserved word."""

    SCHEMAS = ("Tenant_Mixed", "select")

    def test_sql__schema_names_needing_quotes__booking_scheduled_and_executed_end_to_end(self):
        with Stack(schemas=self.SCHEMAS) as s:
            try:
                for schema in self.SCHEMAS:
                    with self.subTest(schema=schema):
                        bid, _, name, _ = s.scheduled_booking(schema, tenant=str(uuid.uuid4()))
                        [(status, body)] = s.ct.dispatch(name)
                        self.assertEqual((status, json.loads(body)), (200, {"status": "executed"}))
                        row = s.wait_row(schema, bid, lambda r: r["task_status"] == "executed")
                        self.assertEqual(row["execution_attempts"], "1")
                        self.assertEqual(len(s.va.calls_for_booking(bid)), 1)
                for schema in self.SCHEMAS:
                    self.assertEqual(s.db.query(f"SELECT count(*) FROM {quote_ident(schema)}.lead_bookings"),
                                     [("1",)])
            finally:
                codes = s.stop_daemons()
            self.assertEqual(codes, [0])
            s.daemon.assert_clean()


if __name__ == "__main__":
    unittest.main()
