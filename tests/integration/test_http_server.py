"""Integration tests for the embedded HTTP server, driven through build/tools/httpd_demo.

Each test starts its own httpd_demo process on 127.0.0.1 (port 0, read from its stdout) and talks to it with
http.client and raw sockets.  No database needed.  Waits are event-based with deadlines: socket timeouts, and a
stderr reader thread that signals when an expected log line appears.
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import unittest

BUILD = os.environ.get("FOLLOWUPD_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
DEMO = os.path.join(BUILD, "tools", "httpd_demo")
DEADLINE = 5.0


class DemoServer:
    """One httpd_demo process; collects its JSON log lines from stderr."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([DEMO, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.reader.start()
        first = self.proc.stdout.readline().decode()
        if not first.startswith("port="):
            self.proc.kill()
            raise RuntimeError("httpd_demo did not start: %r" % first)
        self.port = int(first.strip().split("=", 1)[1])

    def _read_stderr(self):
        for raw in self.proc.stderr:
            with self.cond:
                self.lines.append(raw.decode(errors="replace"))
                self.cond.notify_all()

    def wait_log(self, needle, timeout=DEADLINE):
        end = time.monotonic() + timeout
        with self.cond:
            while not any(needle in l for l in self.lines):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def log_text(self):
        with self.cond:
            return "".join(self.lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=DEADLINE)
        self.reader.join(timeout=DEADLINE)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s


def read_response(sock, buf=b""):
    """Read one Content-Length framed response from sock. Returns (status, headers, body, leftover)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed before a full response head")
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed inside a body")
        buf += chunk
    return status, headers, buf[:n], buf[n:]


def closed_by_peer(sock):
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


class HttpServerIntegration(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(DEMO, os.X_OK):
            raise unittest.SkipTest("build/tools/httpd_demo missing: run make all")

    def start(self, *args):
        srv = DemoServer(*args)
        self.addCleanup(lambda: srv.proc.poll() is None and srv.proc.kill())
        return srv

    def test_keep_alive_connection_reused_by_http_client(self):
        srv = self.start()
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=DEADLINE)
        conn.request("GET", "/healthz")
        first_sock = conn.sock
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Content-Type"), "application/json")
        self.assertEqual(json.loads(r.read()), {"ok": True})
        conn.request("POST", "/echo", body=b'{"a":1}', headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        self.assertEqual(json.loads(r.read()), {"len": 7, "body": '{"a":1}'})
        self.assertIs(conn.sock, first_sock)
        conn.close()
        self.assertEqual(srv.stop(), 0)

    def test_routes_errors_are_json(self):
        srv = self.start()
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=DEADLINE)
        conn.request("GET", "/nope")
        r = conn.getresponse()
        self.assertEqual((r.status, json.loads(r.read())), (404, {"error": "not_found"}))
        conn.request("DELETE", "/healthz")
        r = conn.getresponse()
        self.assertEqual((r.status, r.getheader("Allow")), (405, "GET"))
        self.assertEqual(json.loads(r.read()), {"error": "method_not_allowed"})
        conn.close()
        self.assertEqual(srv.stop(), 0)

    def test_concurrent_clients_all_served(self):
        srv = self.start()
        failures = []

        def worker(n):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=DEADLINE)
                for i in range(10):
                    body = ("%d-%d" % (n, i)).encode()
                    conn.request("POST", "/echo", body=body)
                    r = conn.getresponse()
                    got = json.loads(r.read())
                    if r.status != 200 or got["body"] != body.decode():
                        failures.append((n, i, r.status, got))
                conn.close()
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                failures.append((n, repr(e)))

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE * 2)
        self.assertEqual(failures, [])
        self.assertEqual(srv.stop(), 0)

    def test_pipelined_burst_answered_in_order(self):
        srv = self.start()
        s = srv.connect()
        reqs = b"".join(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%d" % (len(str(i)), i)
                        for i in range(50))
        s.sendall(reqs)
        buf = b""
        for i in range(50):
            status, _, body, buf = read_response(s, buf)
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["body"], str(i))
        s.close()
        self.assertEqual(srv.stop(), 0)

    def test_smuggling_shapes_get_400_and_close(self):
        srv = self.start()
        shapes = {
            "cl+te": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"0\r\n\r\n",
            "dup-cl": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            "obs-fold": b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n 2\r\n\r\n",
            "bad-chunk": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n",
            "nul": b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
            "space-colon": b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-A : 1\r\n\r\n",
            "bare-lf": b"GET /healthz HTTP/1.1\nHost: t\n\n",
        }
        for name, raw in shapes.items():
            with self.subTest(shape=name):
                s = srv.connect()
                s.sendall(raw)
                status, headers, body, _ = read_response(s)
                self.assertEqual(status, 400)
                self.assertEqual(json.loads(body), {"error": "bad_request"})
                self.assertEqual(headers.get("connection"), "close")
                self.assertTrue(closed_by_peer(s))
                s.close()
        self.assertEqual(srv.stop(), 0)

    def test_authenticated_route_and_secret_never_logged(self):
        srv = self.start()
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=DEADLINE)
        conn.request("POST", "/task/abc", body=b"{}", headers={"Authorization": "Bearer wrong-token-zz9"})
        r = conn.getresponse()
        self.assertEqual((r.status, json.loads(r.read())), (401, {"error": "unauthorized"}))
        conn.request("POST", "/task/abc", body=b"{}", headers={"Authorization": "Bearer demo-secret"})
        r = conn.getresponse()
        self.assertEqual((r.status, json.loads(r.read())), (200, {"ran": "abc"}))
        conn.close()
        self.assertEqual(srv.stop(), 0)
        log = srv.log_text()
        self.assertNotIn("wrong-token-zz9", log)
        self.assertNotIn("demo-secret", log)
        self.assertIn('"status":"401"', log)

    def test_slowloris_clients_time_out_while_others_are_served(self):
        srv = self.start("--header-timeout", "300")
        slow = []
        for _ in range(20):
            s = srv.connect()
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            slow.append(s)
        start = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=DEADLINE)
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        r.read()
        self.assertLess(time.monotonic() - start, 0.3)  # served before any slow one timed out
        for s in slow:
            status, headers, body, _ = read_response(s)
            self.assertEqual(status, 408)
            self.assertTrue(closed_by_peer(s))
            s.close()
        conn.close()
        self.assertEqual(srv.stop(), 0)

    def test_connection_limit_refuses_excess_and_recovers(self):
        srv = self.start("--max-conn", "3")
        held = []
        for _ in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=DEADLINE)
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            held.append(conn)
        s = srv.connect()
        status, _, body, _ = read_response(s)
        self.assertEqual((status, json.loads(body)), (503, {"error": "service_unavailable"}))
        self.assertTrue(closed_by_peer(s))
        s.close()
        for conn in held:
            conn.close()
        # The server notices the closes asynchronously: retry within a deadline.
        end = time.monotonic() + DEADLINE
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=DEADLINE)
            try:
                conn.request("GET", "/healthz")
                r = conn.getresponse()
                r.read()
                if r.status == 200:
                    break
            except (ConnectionError, http.client.RemoteDisconnected):
                pass
            finally:
                conn.close()
            self.assertLess(time.monotonic(), end, "server never accepted again")
        self.assertEqual(srv.stop(), 0)

    def test_sigterm_drains_in_flight_request_then_exits_cleanly(self):
        srv = self.start()
        s = srv.connect()
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertTrue(srv.wait_log("slow request started"))
        srv.proc.send_signal(signal.SIGTERM)
        self.assertTrue(srv.wait_log("http server draining"))  # logged once the listener is closed
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=DEADLINE)
        status, headers, body, _ = read_response(s)
        self.assertEqual((status, json.loads(body)), (200, {"slow": True}))
        self.assertEqual(headers.get("connection"), "close")
        self.assertTrue(closed_by_peer(s))
        s.close()
        self.assertEqual(srv.proc.wait(timeout=DEADLINE), 0)
        srv.stop()


if __name__ == "__main__":
    unittest.main()
