"""End-to-end tests of the execution callback POST /api/deals-pipeline/bookings/:id/execute-followup.

A real followupd runs against a throwaway database, the strict fake Cloud Tasks (which dispatches tasks with
real RS256 OIDC tokens) and the strict fake voice agent (see stack.py). Each test inserts its own booking for a
fresh tenant, lets the daemon schedule it, then delivers the task (fake dispatch) or POSTs the callback
directly, and checks the HTTP answer, the start-call request(s) the voice agent received and the row.

Public contract checked here (statuses and bodies):
  executed 200 {"status":"executed"} | already executed 200 {"status":"already_executed"}
  cancelled 200 {"status":"cancelled"} | stale key 200 {"status":"stale"}
  permanent voice-agent rejection 200 {"status":"failed","retryable":false}
  live lease held by another delivery, or delivered before the row records its task 409 {"status":"in_progress"}
  (DeliveredBeforeRecordedTests)
  not found in that tenant 404 {"error":"not_found"}
  transient voice-agent failure 503 {"status":"failed","retryable":true}
  validation 400 {"error":"invalid_body","field":...} / invalid_booking_id / booking_id_mismatch / unknown_schema
  non-JSON content type 415 | auth failure 401 {"error":"unauthorized"}
  delivered before scheduled_at - lead_time_s - early_tolerance_s 425 {"status":"too_early"} + Retry-After
  (EarlyDeliveryTests; the other classes run with the guard off, see Stack)
"""
import json
import os
import socket
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stack import Stack, wait_for  # noqa: E402

SCHEMA = "tenant_a"
OTHER_SCHEMA = "tenant_b"
# The class daemon gets a short voice-agent timeout (environment override, which wins over the config file),
# so the timeout test does not have to wait for the stack's default 3 s.
VOICE_TIMEOUT_MS = 1000
BODY_KEYS = ["tenantId", "bookingId", "leadId", "assignedUserId", "scheduledAt", "idempotencyKey", "bookingType",
             "source"]


def iso_ms(epoch_s, ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s)) + ".%03dZ" % ms


class StackCase(unittest.TestCase):
    """One stack (Stack(**stack_kwargs)) and one daemon (environment daemon_env) per class; a clean shutdown
    after the class (sanitizer builds: no reports)."""
    stack_kwargs = {}
    daemon_env = None

    @classmethod
    def setUpClass(cls):
        cls.s = Stack(start_daemon=False, **cls.stack_kwargs).__enter__()
        try:
            cls.d = cls.s.daemon = cls.s.start(env=cls.daemon_env)
        except BaseException:
            cls.s.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            codes = cls.s.stop_daemons()  # a clean shutdown after everything above (sanitizer builds: no reports)
            if codes != [0]:
                raise AssertionError(f"followupd exit codes {codes}, expected [0]")
        finally:
            cls.s.__exit__(None, None, None)

    def tearDown(self):
        self.d.assert_clean()
        for rec in self.d.find_logs(lambda r: True):
            self.assertNotIn(self.s.voice_token, json.dumps(rec), "the voice-agent token was logged")
        self.assertEqual(self.s.ct.internal_errors, [])
        self.assertEqual(self.s.va.internal_errors, [])


class ExecuteCallbackTests(StackCase):
    stack_kwargs = {"schemas": (SCHEMA, OTHER_SCHEMA)}
    daemon_env = {"FOLLOWUPD_VOICE_AGENT_TIMEOUT_MS": str(VOICE_TIMEOUT_MS)}

    # -- helpers ---------------------------------------------------------------------------------------------
    def booking(self, schema=SCHEMA, **kw):
        """A scheduled booking of a fresh tenant: (booking_id, row, task_name, task_body)."""
        kw.setdefault("tenant", str(uuid.uuid4()))
        return self.s.scheduled_booking(schema, **kw)

    def dispatch(self, name, **kw):
        """Deliver one task through the fake Cloud Tasks: [(status, parsed body)]."""
        return [(status, json.loads(body) if body else None) for status, body in self.s.ct.dispatch(name, **kw)]

    def execute(self, booking_id, body, token=None):
        return self.s.execute(self.d, booking_id, body, token=token)

    def post(self, path, body, headers=None, content_type="application/json"):
        hdrs = [("Authorization", "Bearer " + self.s.oidc_token())]
        if content_type is not None:
            hdrs.append(("Content-Type", content_type))
        hdrs += list(headers or [])
        return self.s.raw_request(self.d, "POST", path, hdrs, body)

    def calls(self, booking_id):
        return self.s.va.calls_for_booking(booking_id)

    def requests(self, booking_id):
        return self.s.voice_requests_for(booking_id)

    def row(self, booking_id, schema=SCHEMA):
        return self.s.row(schema, booking_id)

    def retry_allowed(self, booking_id, schema=SCHEMA):
        """True when the row is marked for another attempt (a retryable failure), False when final."""
        (flag,), = self.s.db.query(f"SELECT (next_attempt_at IS NOT NULL)::text FROM {schema}.lead_bookings "
                                   f"WHERE id = '{booking_id}'")
        return flag == "true"

    def assert_no_voice_request(self, booking_id):
        self.assertEqual(self.requests(booking_id), [], "the voice agent must not have been called")

    # -- the happy path --------------------------------------------------------------------------------------
    def check_single_start_call(self, assigned):
        tenant, lead = str(uuid.uuid4()), str(uuid.uuid4())
        base = int(time.time()) + 3600
        bid, row, name, _ = self.booking(tenant=tenant, lead=lead, assigned=assigned, at=base + 0.123,
                                         booking_type="follow_up")
        key = row["idempotency_key"]
        self.assertTrue(key)
        mark = self.d.mark()

        self.assertEqual(self.dispatch(name), [(200, {"status": "executed"})])

        calls = self.calls(bid)
        self.assertEqual(len(calls), 1, calls)
        self.assertEqual(self.s.va.rejected, [])
        call = calls[0]
        self.assertFalse(call["duplicate"])
        headers = call["headers"]
        self.assertEqual(headers.get("Content-Type"), "application/json")
        self.assertEqual(headers.get("X-Tenant-Id"), tenant)
        self.assertEqual(headers.get("Authorization"), "Bearer " + self.s.voice_token)
        self.assertEqual(headers.get("Idempotency-Key"), key)
        # X-Request-Id: the callback request's id, as the daemon logged it for that exchange.
        access = self.d.wait_for_log(lambda r: r.get("msg") == "http request" and bid in r.get("path", ""),
                                     since=mark)
        self.assertTrue(headers.get("X-Request-Id"))
        self.assertEqual(headers.get("X-Request-Id"), access.get("request_id"))
        expected = {"tenantId": tenant, "bookingId": bid, "leadId": lead, "assignedUserId": assigned,
                    "scheduledAt": iso_ms(base, 123), "idempotencyKey": key, "bookingType": "follow_up",
                    "source": "followupd"}
        self.assertEqual(call["body"], expected)
        self.assertEqual(list(call["body"]), BODY_KEYS)
        self.assertEqual(key, f"followup:{tenant}:{bid}:{iso_ms(base, 123)}")

        after = self.row(bid)
        self.assertEqual(after["task_status"], "executed")
        self.assertIsNotNone(after["executed_at"])
        self.assertEqual(after["execution_attempts"], "1")
        self.assertIsNone(after["last_execution_error"])
        return bid, name

    def test_dispatch__unassigned_booking__one_exact_start_call_and_row_executed(self):
        self.check_single_start_call(assigned=None)

    def test_dispatch__assigned_booking__body_carries_assigned_user_id(self):
        self.check_single_start_call(assigned=str(uuid.uuid4()))

    def test_dispatch__same_task_again__already_executed_without_second_call(self):
        bid, name = self.check_single_start_call(assigned=None)
        executed_at = self.row(bid)["executed_at"]

        self.assertEqual(self.dispatch(name, allow_done=True), [(200, {"status": "already_executed"})])

        self.assertEqual(len(self.requests(bid)), 1)
        after = self.row(bid)
        self.assertEqual((after["task_status"], after["execution_attempts"], after["executed_at"]),
                         ("executed", "1", executed_at))

    def test_dispatch__ten_concurrent_duplicates__exactly_one_voice_call(self):
        bid, _, name, _ = self.booking()

        results = self.dispatch(name, concurrent=10)

        self.assertEqual(len(results), 10)
        executed = [r for r in results if r == (200, {"status": "executed"})]
        others = [r for r in results if r != (200, {"status": "executed"})]
        self.assertEqual(len(executed), 1, results)
        for r in others:
            self.assertIn(r, [(409, {"status": "in_progress"}), (200, {"status": "already_executed"})], results)
        self.assertEqual(len(self.requests(bid)), 1)
        after = self.row(bid)
        self.assertEqual((after["task_status"], after["execution_attempts"]), ("executed", "1"))

    # -- voice-agent failures --------------------------------------------------------------------------------
    def test_dispatch__voice_agent_500_then_200__retried_with_same_key(self):
        bid, row, name, _ = self.booking()
        self.s.va.fail_next(1, status=500)

        self.assertEqual(self.dispatch(name), [(503, {"status": "failed", "retryable": True})])

        failed = self.row(bid)
        self.assertEqual((failed["task_status"], failed["execution_attempts"]), ("failed", "1"))
        self.assertIn("500", failed["last_execution_error"] or "")
        self.assertIsNone(failed["executed_at"])
        self.assertTrue(self.retry_allowed(bid))
        self.assertEqual(self.calls(bid), [])

        self.assertEqual(self.dispatch(name), [(200, {"status": "executed"})])

        done = self.row(bid)
        self.assertEqual((done["task_status"], done["execution_attempts"]), ("executed", "2"))
        self.assertIsNone(done["last_execution_error"])
        injected = [r for r in self.s.va.injected if bid in r["body"]]
        calls = self.calls(bid)
        self.assertEqual((len(injected), len(calls)), (1, 1))
        self.assertEqual(injected[0]["headers"].get("Idempotency-Key"), row["idempotency_key"])
        self.assertEqual(calls[0]["headers"].get("Idempotency-Key"), row["idempotency_key"])

    def test_dispatch__voice_agent_422__final_failure_and_no_new_call(self):
        bid, _, name, _ = self.booking()
        self.s.va.fail_next(1, status=422)

        self.assertEqual(self.dispatch(name), [(200, {"status": "failed", "retryable": False})])

        failed = self.row(bid)
        self.assertEqual((failed["task_status"], failed["execution_attempts"]), ("failed", "1"))
        self.assertIn("422", failed["last_execution_error"] or "")
        self.assertFalse(self.retry_allowed(bid))
        self.assertEqual(len(self.requests(bid)), 1)

        self.assertEqual(self.dispatch(name, allow_done=True), [(200, {"status": "failed", "retryable": False})])

        self.assertEqual(len(self.requests(bid)), 1, "a final failure must not call the voice agent again")
        self.assertEqual(self.row(bid), failed)

    def test_dispatch__voice_agent_timeout__503_retryable_then_retry_is_deduplicated(self):
        bid, row, name, _ = self.booking()
        # The fake starts and records the call, then holds its reply past the daemon's timeout.
        # Had the daemon waited, it would have got a 200 and answered executed.
        self.s.va.delay_next(1, VOICE_TIMEOUT_MS / 1000 + 2.0, when="after")

        self.assertEqual(self.dispatch(name), [(503, {"status": "failed", "retryable": True})])

        failed = self.row(bid)
        self.assertEqual((failed["task_status"], failed["execution_attempts"]), ("failed", "1"))
        self.assertIn("timed out", failed["last_execution_error"] or "")
        self.assertIsNone(failed["executed_at"])
        self.assertTrue(self.retry_allowed(bid))

        # Cloud Tasks retries: the same key again, so the (idempotent) voice agent starts nothing new.
        self.assertEqual(self.dispatch(name), [(200, {"status": "executed"})])

        calls = self.calls(bid)
        self.assertEqual([c["duplicate"] for c in calls], [False, True])
        self.assertEqual({c["idempotency_key"] for c in calls}, {row["idempotency_key"]})
        self.assertEqual(self.row(bid)["execution_attempts"], "2")

    # -- tenancy, cancellation, stale keys -------------------------------------------------------------------
    def test_execute__other_tenants_id_in_body__404_and_row_untouched(self):
        bid, row, _, body = self.booking()
        other_bid, _, _, other_body = self.booking()  # a real second tenant with its own booking

        status, answer = self.execute(bid, dict(body, tenantId=other_body["tenantId"]))

        self.assertEqual((status, answer), (404, {"error": "not_found"}))
        self.assert_no_voice_request(bid)
        self.assert_no_voice_request(other_bid)
        self.assertEqual(self.row(bid), row)

    def test_execute__booking_in_another_schema__404(self):
        bid, row, _, body = self.booking(schema=OTHER_SCHEMA)

        status, answer = self.execute(bid, dict(body, schema=SCHEMA))

        self.assertEqual((status, answer), (404, {"error": "not_found"}))
        self.assert_no_voice_request(bid)
        self.assertEqual(self.row(bid, OTHER_SCHEMA), row)

    def test_execute__caller_request_id__passed_to_the_voice_agent(self):
        bid, _, _, body = self.booking()
        request_id = "cb-" + uuid.uuid4().hex[:16]
        path = Stack.EXECUTE_PATH.format(bid)

        status, headers, answer = self.post(path, json.dumps(body), [("X-Request-Id", request_id)])

        self.assertEqual((status, answer), (200, {"status": "executed"}))
        self.assertIn(("X-Request-Id", request_id), headers)
        [call] = self.calls(bid)
        self.assertEqual(call["headers"].get("X-Request-Id"), request_id)

    def test_execute__json_content_type_with_charset__accepted(self):
        bid, _, _, body = self.booking()
        status, _, answer = self.post(Stack.EXECUTE_PATH.format(bid), json.dumps(body),
                                      content_type="application/json; charset=utf-8")
        self.assertEqual((status, answer), (200, {"status": "executed"}))
        self.assertEqual(len(self.calls(bid)), 1)

    def test_execute__caller_disconnects_during_the_call__booking_still_executed_once(self):
        # Cloud Tasks may give up on a slow delivery (dispatch deadline); the claimed execution must still
        # complete and be recorded, so the retry finds it executed.
        bid, _, name, body = self.booking()
        self.s.va.delay_next(1, 0.5, when="before")
        data = json.dumps(body).encode()
        mark = self.d.mark()
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=5) as conn:
            conn.sendall((f"POST {Stack.EXECUTE_PATH.format(bid)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          f"Content-Type: application/json\r\nAuthorization: Bearer {self.s.oidc_token()}\r\n"
                          f"Content-Length: {len(data)}\r\n\r\n").encode() + data)
            # Hang up once the row is claimed: the voice call is then in flight (held 0.5 s by the fake).
            self.d.wait_for_log(lambda r: r.get("booking_id") == bid and
                                str(r.get("msg", "")).startswith("claimed for execution"), since=mark)
        self.s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "executed")

        self.assertEqual(self.dispatch(name, allow_done=True), [(200, {"status": "already_executed"})])
        self.assertEqual(len(self.requests(bid)), 1)
        self.assertEqual(self.row(bid)["execution_attempts"], "1")

    def test_execute__booking_that_does_not_exist__404(self):
        tenant, bid = str(uuid.uuid4()), str(uuid.uuid4())
        body = {"tenantId": tenant, "bookingId": bid, "schema": SCHEMA,
                "idempotencyKey": f"followup:{tenant}:{bid}:2030-01-01T00:00:00.000Z"}

        self.assertEqual(self.execute(bid, body), (404, {"error": "not_found"}))
        self.assert_no_voice_request(bid)

    def test_dispatch__cancelled_booking__200_cancelled_without_call(self):
        bid, _, name, _ = self.booking()
        self.s.db.psql(f"UPDATE {SCHEMA}.lead_bookings SET status = 'cancelled' WHERE id = '{bid}'")

        self.assertEqual(self.dispatch(name, allow_done=True), [(200, {"status": "cancelled"})])

        self.assert_no_voice_request(bid)
        self.assertEqual(self.row(bid)["execution_attempts"], "0")

    def test_execute__stale_idempotency_key__200_stale_without_call(self):
        bid, row, _, body = self.booking()
        stale = f"followup:{body['tenantId']}:{bid}:2020-01-01T00:00:00.000Z"
        self.assertNotEqual(stale, row["idempotency_key"])

        self.assertEqual(self.execute(bid, dict(body, idempotencyKey=stale)), (200, {"status": "stale"}))

        self.assert_no_voice_request(bid)
        self.assertEqual(self.row(bid), row)

    # -- validation ------------------------------------------------------------------------------------------
    def assert_rejected(self, bid, row, got, want_status, want_body):
        self.assertEqual(got, (want_status, want_body))
        self.assert_no_voice_request(bid)
        self.assertEqual(self.row(bid), row, "a rejected request must not touch the row")

    def test_execute__id_not_a_uuid__400_invalid_booking_id(self):
        bid, row, _, body = self.booking()
        status, _, answer = self.post(Stack.EXECUTE_PATH.format("not-a-uuid"), json.dumps(body))
        self.assert_rejected(bid, row, (status, answer), 400, {"error": "invalid_booking_id"})

    def test_execute__body_booking_id_differs_from_path__400_mismatch(self):
        bid, row, _, body = self.booking()
        other = str(uuid.uuid4())
        got = self.execute(other, body)
        self.assert_rejected(bid, row, got, 400, {"error": "booking_id_mismatch", "field": "bookingId"})

    def test_execute__schema_not_configured__400_unknown_schema(self):
        bid, row, _, body = self.booking()
        got = self.execute(bid, dict(body, schema="tenant_zz"))
        self.assert_rejected(bid, row, got, 400, {"error": "unknown_schema", "field": "schema"})

    def test_execute__missing_tenant_id__400_invalid_body(self):
        bid, row, _, body = self.booking()
        body = {k: v for k, v in body.items() if k != "tenantId"}
        got = self.execute(bid, body)
        self.assert_rejected(bid, row, got, 400, {"error": "invalid_body", "field": "tenantId"})

    def test_execute__tenant_id_not_a_uuid__400_invalid_body(self):
        bid, row, _, body = self.booking()
        got = self.execute(bid, dict(body, tenantId="tenant-1"))
        self.assert_rejected(bid, row, got, 400, {"error": "invalid_body", "field": "tenantId"})

    def test_execute__body_not_an_object__400_invalid_body(self):
        bid, row, _, body = self.booking()
        got = self.execute(bid, [body])
        self.assert_rejected(bid, row, got, 400, {"error": "invalid_body", "field": "body"})

    def test_execute__invalid_json__400_invalid_body(self):
        bid, row, _, body = self.booking()
        status, _, answer = self.post(Stack.EXECUTE_PATH.format(bid), json.dumps(body)[:-1])
        self.assert_rejected(bid, row, (status, answer), 400, {"error": "invalid_body", "field": "body"})

    def test_execute__wrong_content_type__415(self):
        bid, row, _, body = self.booking()
        status, _, _ = self.post(Stack.EXECUTE_PATH.format(bid), json.dumps(body), content_type="text/plain")
        self.assertEqual(status, 415)
        self.assert_no_voice_request(bid)
        self.assertEqual(self.row(bid), row)

    def test_post__unknown_route__404(self):
        bid, row, _, body = self.booking()
        status, _, answer = self.post(f"/api/deals-pipeline/bookings/{bid}/execute", json.dumps(body))
        self.assert_rejected(bid, row, (status, answer), 404, {"error": "not_found"})

    def test_get__execute_route__405_with_allow_post(self):
        bid, row, _, _ = self.booking()
        status, headers, _ = self.s.raw_request(self.d, "GET", Stack.EXECUTE_PATH.format(bid),
                                                [("Authorization", "Bearer " + self.s.oidc_token())])
        self.assertEqual(status, 405)
        allow = [v for k, v in headers if k.lower() == "allow"]
        self.assertEqual(allow, ["POST"])
        self.assert_no_voice_request(bid)
        self.assertEqual(self.row(bid), row)

    # -- authentication comes first --------------------------------------------------------------------------
    def test_dispatch__bad_token_for_existing_booking__401_row_untouched(self):
        bid, row, name, _ = self.booking()
        mark = self.d.mark()

        got = self.dispatch(name, token_overrides={"aud": "https://someone-else.example"})

        self.assertEqual(got, [(401, {"error": "unauthorized"})])
        self.d.wait_for_log(lambda r: r.get("msg") == "callback authentication failed" and r.get("check") == "aud",
                            since=mark)
        self.assert_no_voice_request(bid)
        after = self.row(bid)
        self.assertEqual(after, row)
        self.assertEqual((after["task_status"], after["execution_attempts"]), ("scheduled", "0"))
        # Nothing about this booking reached the execution service (it logs every claim and outcome).
        self.assertEqual(self.d.find_logs(lambda r: r.get("booking_id") == bid, since=mark), [])



class EarlyDeliveryTests(StackCase):
    """[followup] early_tolerance_s at its default (300 s), lead_time_s 0. A valid token is not a licence to run a
    booking early: a delivery before scheduled_at - 300 s (the fake's dispatch of the task long before its
    scheduleTime, like `gcloud tasks run`) is answered 425 {"status":"too_early"} with Retry-After, without a
    voice call, and the row is unchanged (no attempt, no lease); Cloud Tasks keeps the task and retries. Inside the
    tolerance it executes. Moving scheduled_at is how an operator forces a run."""

    TOLERANCE_S = 300   # the default of [followup] early_tolerance_s
    stack_kwargs = {"schemas": (SCHEMA,), "early_tolerance_s": None}

    def booking_due_in(self, seconds):
        return self.s.scheduled_booking(SCHEMA, tenant=str(uuid.uuid4()), at=time.time() + seconds)

    def dispatch(self, name):
        return [(status, json.loads(body) if body else None)
                for status, body in self.s.ct.dispatch(name, allow_done=True)]

    def metric(self, name, labels):
        status, _, text = self.s.raw_request(self.d, "GET", "/metrics")
        self.assertEqual(status, 200)
        prefix = f"{name}{{{labels}}} "
        lines = [ln for ln in text.decode().splitlines() if ln.startswith(prefix)]
        return float(lines[0][len(prefix):]) if lines else 0.0

    def lease_columns(self, bid):
        return self.s.columns(SCHEMA, bid, "execution_started_at", "next_attempt_at", "executed_at")

    def test_dispatch__an_hour_before_scheduled_at__425_too_early_no_call_row_unchanged(self):
        bid, row, name, task_body = self.booking_due_in(3600)
        too_early_before = self.metric("followupd_executions_total", 'status="too_early"')
        mark = self.d.mark()

        self.assertEqual(self.dispatch(name), [(425, {"status": "too_early"})])

        self.assertEqual(self.s.voice_requests_for(bid), [], "an early delivery must not call the voice agent")
        self.assertEqual(self.s.row(SCHEMA, bid), row, "an early delivery must not touch the row")
        self.assertEqual(self.lease_columns(bid),
                         {"execution_started_at": None, "next_attempt_at": None, "executed_at": None})
        self.assertIn(name, self.s.live_tasks_for(bid), "non-2xx: Cloud Tasks keeps the task and retries it")
        rec = self.d.wait_for_log(lambda r: r.get("level") == "warn" and r.get("booking_id") == bid and
                                  "early_tolerance_s" in r.get("msg", ""), since=mark)
        self.assertEqual(rec.get("tenant_id"), task_body["tenantId"])
        self.assertEqual(self.metric("followupd_executions_total", 'status="too_early"'), too_early_before + 1)
        self.assertGreaterEqual(self.metric("followupd_callbacks_total", 'code="425"'), 1)

        # The same delivery made directly: Retry-After says how long until the allowed moment.
        t0 = time.time()
        status, headers, answer = self.s.raw_request(
            self.d, "POST", Stack.EXECUTE_PATH.format(bid),
            [("Content-Type", "application/json"), ("Authorization", "Bearer " + self.s.oidc_token())],
            json.dumps(task_body))
        self.assertEqual((status, answer), (425, {"status": "too_early"}))
        retry_after = int(dict((k.lower(), v) for k, v in headers)["retry-after"])
        expected = 3600 - self.TOLERANCE_S - (time.time() - t0)
        self.assertTrue(expected - 5 <= retry_after <= expected + 5, (retry_after, expected))
        self.assertEqual(self.s.row(SCHEMA, bid), row)
        self.assertEqual(self.s.voice_requests_for(bid), [])

    def test_dispatch__inside_the_tolerance__executed(self):
        bid, _, name, _ = self.booking_due_in(self.TOLERANCE_S - 60)

        self.assertEqual(self.dispatch(name), [(200, {"status": "executed"})])

        self.assertEqual(len(self.s.va.calls_for_booking(bid)), 1)
        row = self.s.row(SCHEMA, bid)
        self.assertEqual((row["task_status"], row["execution_attempts"]), ("executed", "1"))

    def test_operator__moves_scheduled_at_to_now__new_task_runs_at_once_old_one_is_a_noop(self):
        bid, _, old_name, _ = self.booking_due_in(3600)
        self.assertEqual(self.dispatch(old_name), [(425, {"status": "too_early"})])

        self.s.db.psql(f"UPDATE {SCHEMA}.lead_bookings SET scheduled_at = now() WHERE id = '{bid}'")
        new_name = wait_for(lambda: next((n for n in self.s.live_tasks_for(bid) if n != old_name), None), 10,
                            "the replacement task")

        self.assertEqual(self.dispatch(new_name), [(200, {"status": "executed"})])
        self.assertEqual(len(self.s.va.calls_for_booking(bid)), 1)
        # A late delivery of the old task (deleted by now or not) is a no-op.
        self.assertEqual(self.dispatch(old_name), [(200, {"status": "already_executed"})])
        self.assertEqual(len(self.s.va.calls_for_booking(bid)), 1)


class DeliveredBeforeRecordedTests(StackCase):
    """Cloud Tasks delivers a task that is due now as soon as it exists, and followupd creates the task before it
    marks the row (create, then a conditional update). A delivery in between finds the row without this task; its
    key is the one the row's scheduled_at gives, so it must be retried (409 in_progress), never ended as stale
    (200 would make Cloud Tasks drop it and the booking would never run). The barrier: the fake creates the task
    and holds its reply while the test delivers it. (Found by the soak, tests/soak.)"""
    stack_kwargs = {"schemas": (SCHEMA,)}
    HOLD_S = 3.0

    def hold_next_create_reply(self):
        created = self.s.ct.created_count
        self.s.ct.delay_next(1, self.HOLD_S, method="create", when="after")
        return created

    def wait_created(self, created_before, bid, exclude=None):
        self.assertTrue(self.s.ct.wait_for_creates(created_before + 1, 10), "the task was not created")
        return next(n for n in self.s.live_tasks_for(bid) if n != exclude)

    def test_dispatch__before_the_row_records_its_new_task__409_then_retry_executes_once(self):
        tenant = str(uuid.uuid4())
        before = self.hold_next_create_reply()
        bid = self.s.insert_booking(SCHEMA, tenant=tenant, at=time.time() - 1)
        name = self.wait_created(before, bid)
        self.assertEqual(self.s.row(SCHEMA, bid)["task_status"], "pending")   # the reply is still held

        self.assertEqual(self.s.dispatch_json(name), [(409, {"status": "in_progress"})])
        self.assertIn(name, self.s.live_tasks_for(bid), "the task must stay for Cloud Tasks to retry")
        self.assertEqual(self.s.voice_requests_for(bid), [])

        self.s.wait_row(SCHEMA, bid, lambda r: r["task_status"] == "scheduled", timeout=self.HOLD_S + 10)
        self.assertEqual(self.s.dispatch_json(name), [(200, {"status": "executed"})])
        self.assertEqual([c["idempotency_key"] for c in self.s.va.calls_for_booking(bid)],
                         [self.s.row(SCHEMA, bid)["idempotency_key"]])

    def test_dispatch__replacement_before_the_row_moves_to_it__409_old_task_stale_then_executes_once(self):
        bid, row, old_name, _ = self.s.scheduled_booking(SCHEMA, tenant=str(uuid.uuid4()))
        before = self.hold_next_create_reply()
        self.s.db.psql(f"UPDATE {SCHEMA}.lead_bookings SET scheduled_at = now() WHERE id = '{bid}'")
        new_name = self.wait_created(before, bid, exclude=old_name)
        self.assertEqual(self.s.row(SCHEMA, bid)["idempotency_key"], row["idempotency_key"])  # not moved yet

        self.assertEqual(self.s.dispatch_json(new_name), [(409, {"status": "in_progress"})])
        self.assertEqual(self.s.dispatch_json(old_name), [(200, {"status": "stale"})])
        self.assertEqual(self.s.voice_requests_for(bid), [])

        moved = self.s.wait_row(SCHEMA, bid, lambda r: r["idempotency_key"] != row["idempotency_key"],
                                timeout=self.HOLD_S + 10)
        self.assertEqual(self.s.dispatch_json(new_name), [(200, {"status": "executed"})])
        self.assertEqual([c["idempotency_key"] for c in self.s.va.calls_for_booking(bid)],
                         [moved["idempotency_key"]])


if __name__ == "__main__":
    unittest.main()
