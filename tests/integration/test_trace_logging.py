"""Trace context end to end, with the real binary: a callback's `traceparent` (or `X-Cloud-Trace-Context`)
reaches the voice agent as a `traceparent`, a callback without one (or with a malformed one, never echoed) and a
local-dispatcher run start a new trace; `[log] format = gcp` writes Cloud Logging's field names (`severity`,
`message`, `time`) and `logging.googleapis.com/trace` = projects/<project>/traces/<id> on the lines about that
callback; the default json format names the trace `trace_id`.
"""
import os
import re
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from stack import Stack, _header, wait_for  # noqa: E402

SCHEMA = "trace_a"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT_RE = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01")


class TraceTest(unittest.TestCase):
    def stack(self, **kwargs):
        s = Stack(schemas=(SCHEMA,), **kwargs)
        self.addCleanup(s.__exit__, None, None, None)
        s.__enter__()
        self.addCleanup(lambda: self.assertEqual(s.stop_daemons(), [0] * len(s.daemons)))
        return s

    def deliver(self, s, extra_headers):
        """A scheduled booking delivered once with the task's body and `extra_headers`; returns the
        traceparent the voice agent received and the booking id."""
        booking_id, _, _, body = s.scheduled_booking(SCHEMA)
        headers = {"Content-Type": "application/json", "Authorization": "Bearer " + s.oidc_token()}
        headers.update(extra_headers)
        status, answer = s.http(s.daemon, "POST", s.EXECUTE_PATH.format(booking_id), body, headers)
        self.assertEqual((status, answer), (200, {"status": "executed"}))
        # the access line is the exchange's last; once it is read, every line about the delivery is
        path = s.EXECUTE_PATH.format(booking_id)
        s.daemon.wait_for_log(lambda r: r.get("path") == path and "http request" in (r.get("msg"), r.get("message")))
        calls = s.va.calls_for_booking(booking_id)
        self.assertEqual(len(calls), 1, calls)
        return _header(calls[0]["headers"], "traceparent"), booking_id

    def test_traceparent__forwarded_to_the_voice_agent__gcp_lines_name_the_trace(self):
        s = self.stack(extra_config="[log]\nformat = gcp\n")
        sent = f"00-{TRACE}-{PARENT}-01"
        got, booking_id = self.deliver(s, {"traceparent": sent})
        self.assertEqual(got, sent)
        lines = [r for r in s.daemon.logs if r.get("booking_id") == booking_id and "logging.googleapis.com/trace" in r]
        self.assertTrue(lines, s.daemon.logs[-10:])
        for rec in lines:
            self.assertEqual(rec["logging.googleapis.com/trace"], f"projects/{s.ct.project}/traces/{TRACE}")
            self.assertIn(rec["severity"], ("DEBUG", "INFO", "WARNING", "ERROR"))
            self.assertTrue(rec["message"])
            self.assertRegex(rec["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertNotIn("msg", rec)
            self.assertNotIn("level", rec)
        access = [r for r in s.daemon.logs if r.get("message") == "http request"
                  and r.get("logging.googleapis.com/trace", "").endswith(TRACE)]
        self.assertTrue(access, "the callback's access line names its trace")

    def test_sighup_format_gcp__live__following_lines_in_cloud_logging_names(self):
        s = self.stack()
        d = s.daemon
        d.write_config(s.config(d.port) + "[log]\nformat = gcp\n")
        mark = d.mark()
        d.send(signal.SIGHUP)
        reloaded = d.wait_for_log(lambda r: "configuration reloaded" in (r.get("msg"), r.get("message")), since=mark)
        self.assertEqual((reloaded.get("severity"), "msg" in reloaded), ("INFO", False), reloaded)
        self.assertEqual(d.find_logs(lambda r: "key" in r and r.get("severity") == "WARNING", since=mark), [],
                         "[log] format is live: no reload warning")

    def test_cloud_trace_context_only__becomes_the_traceparent(self):
        s = self.stack()
        span = 67667974448284343  # 0x00f067aa0ba902b7
        got, booking_id = self.deliver(s, {"X-Cloud-Trace-Context": f"{TRACE}/{span};o=1"})
        self.assertEqual(got, f"00-{TRACE}-{PARENT}-01")
        named = [r for r in s.daemon.logs if r.get("booking_id") == booking_id and r.get("trace_id") == TRACE]
        self.assertTrue(named, "json lines carry trace_id")

    def test_malformed_trace_headers__new_trace__garbage_never_logged_or_sent(self):
        s = self.stack()
        garbage = f"00-{TRACE.upper()}-{PARENT}-01"
        got, booking_id = self.deliver(s, {"traceparent": garbage, "X-Cloud-Trace-Context": f"{TRACE}/0;o=1"})
        m = TRACEPARENT_RE.fullmatch(got or "")
        self.assertIsNotNone(m, got)
        self.assertNotEqual(m.group(1), TRACE)
        self.assertNotIn(TRACE.upper(), "\n".join(map(str, s.daemon.logs)))
        self.assertTrue([r for r in s.daemon.logs if r.get("booking_id") == booking_id
                         and r.get("trace_id") == m.group(1)], "the new trace is logged")

    def test_local_dispatcher__each_call_gets_its_own_new_trace(self):
        s = self.stack(backend="local")
        ids = [s.insert_booking(SCHEMA, at=time.time() - 1) for _ in range(2)]
        wait_for(lambda: all(s.va.calls_for_booking(b) for b in ids), 15, "both local calls")
        traces = [TRACEPARENT_RE.fullmatch(_header(s.va.calls_for_booking(b)[0]["headers"], "traceparent") or "")
                  for b in ids]
        self.assertTrue(all(traces), traces)
        self.assertNotEqual(traces[0].group(1), traces[1].group(1))


if __name__ == "__main__":
    unittest.main()
