"""Strictness tests for the loopback fakes in tests/fakes/ (Cloud Tasks + token endpoints + JWKS, voice agent).

Integration tests elsewhere rely on these fakes refusing what Google (or the voice-agent API) would refuse, so
every rule the fakes enforce has a test here that fails if the rule is dropped. No PostgreSQL needed.
"""
import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import uuid

ROOT = os.environ.get("FOLLOWUPD_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from fakes import fakehttp, keys  # noqa: E402
from fakes.fake_cloudtasks import REMOVE, FakeCloudTasks  # noqa: E402
from fakes.fake_voice_agent import FakeVoiceAgent  # noqa: E402

PYTHON = "/usr/bin/python3"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SA_EMAIL = "invoker@followupd-test.iam.gserviceaccount.com"


def http_call(method, url, body=None, headers=None, timeout=10):
    """(status, headers dict lower-cased, body bytes) with exactly the headers given (no defaults added)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def json_of(raw):
    return json.loads(raw.decode())


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class CallbackTarget(fakehttp.FakeServer):
    """A stand-in for followupd's callback listener: records deliveries, answers from a status script."""

    def __init__(self, statuses=None, barrier=None):
        self.requests = []
        self.statuses = list(statuses or [])
        self.barrier = barrier
        self.lock = threading.Lock()
        super().__init__()

    def routes(self):
        return [("POST", r"/callback", self._callback)]

    def _callback(self, request):
        if self.barrier is not None:
            self.barrier.wait()  # raises BrokenBarrierError (-> 500) unless all deliveries are in flight
        with self.lock:
            self.requests.append(request)
            status = self.statuses.pop(0) if self.statuses else 200
        return fakehttp.Response.json(status, {"ok": status < 300})


class CloudTasksCase(unittest.TestCase):
    """Starts a fresh fake per test with a registered service account and a valid access token."""

    clock = None

    @classmethod
    def setUpClass(cls):
        cls.sa_key = keys.generate_rsa_key()
        cls.other_key = keys.generate_rsa_key()
        cls.oidc_key = keys.generate_rsa_key()

    def setUp(self):
        self.fake = FakeCloudTasks(project="p1", location="l1", queue="q1", jwks_max_age=1234,
                                   now=self.clock or time.time, oidc_key=self.oidc_key).start()
        self.addCleanup(self.fake.stop)
        self.fake.register_service_account(email=SA_EMAIL, public_key=self.sa_key.public_key(), key_id="k1")
        self.token = self.fake.issue_token()

    def now(self):
        return self.fake.now()

    def task_body(self, task_id="t1", **task_fields):
        task = {"name": self.fake.task_name(task_id),
                "httpRequest": {"url": "http://127.0.0.1:9/callback", "httpMethod": "POST",
                                "headers": {"Content-Type": "application/json"},
                                "body": base64.b64encode(b'{"bookingId":"b1"}').decode(),
                                "oidcToken": {"serviceAccountEmail": SA_EMAIL, "audience": "followupd-test"}}}
        task.update(task_fields)
        return {"task": task, "responseView": "BASIC"}

    def create(self, body, token=None, timeout=10):
        token = self.token if token is None else token
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return http_call("POST", self.fake.tasks_url, data, headers, timeout)

    def delete(self, task_id, token=None):
        return http_call("DELETE", f"{self.fake.base_url}/v2/{self.fake.task_name(task_id)}", None,
                         {"Authorization": "Bearer " + (token or self.token)})

    def assert_google_error(self, result, code, status, message_part=None):
        got_code, _, raw = result
        self.assertEqual(got_code, code, raw)
        error = json_of(raw)["error"]
        self.assertEqual(error["code"], code)
        self.assertEqual(error["status"], status)
        if message_part is not None:
            self.assertIn(message_part, error["message"])

    def assertion(self, key=None, alg="RS256", secret=None, **overrides):
        now = int(self.now())
        claims = {"iss": SA_EMAIL, "scope": keys.CLOUD_PLATFORM_SCOPE, "aud": self.fake.token_uri,
                  "iat": now, "exp": now + 3600}
        claims.update(overrides)
        for name in [k for k, v in claims.items() if v is REMOVE]:
            del claims[name]
        return keys.sign_jwt(claims, key or self.sa_key, "k1", alg=alg, secret=secret)

    def token_request(self, assertion, content_type="application/x-www-form-urlencoded", grant=JWT_BEARER):
        form = urllib.parse.urlencode({"grant_type": grant, "assertion": assertion}).encode()
        return http_call("POST", self.fake.token_uri, form, {"Content-Type": content_type})


class TestCloudTasksCreate(CloudTasksCase):
    def test_create__valid_task__returns_task_and_records_decoded_body(self):
        status, _, raw = self.create(self.task_body(scheduleTime=rfc3339(self.now() + 3600)))
        self.assertEqual(status, 200, raw)
        task = json_of(raw)
        self.assertEqual(task["name"], self.fake.task_name("t1"))
        self.assertEqual(task["scheduleTime"], rfc3339(self.now() + 3600))
        self.assertIn("createTime", task)
        self.assertEqual(task["view"], "BASIC")
        self.assertNotIn("body", task["httpRequest"])  # BASIC view hides the body
        recorded = self.fake.tasks[self.fake.task_name("t1")]
        self.assertEqual(recorded["body_json"], {"bookingId": "b1"})
        self.assertEqual(self.fake.create_calls_by_name[self.fake.task_name("t1")], {"calls": 1, "created": 1})

    def test_create__unknown_field_anywhere__400(self):
        bodies = [dict(self.task_body(), extra=1), self.task_body(color="red")]
        nested = self.task_body()
        nested["task"]["httpRequest"]["retries"] = 3
        bodies.append(nested)
        oidc = self.task_body()
        oidc["task"]["httpRequest"]["oidcToken"]["issuer"] = "x"
        bodies.append(oidc)
        for index, body in enumerate(bodies):
            with self.subTest(index=index):
                self.assert_google_error(self.create(body), 400, "INVALID_ARGUMENT", "Unknown name")
        self.assertEqual(self.fake.tasks, {})

    def test_create__wrong_types_nulls_snake_case_or_duplicate_keys__400(self):
        cases = {
            "name number": self.task_body(name=5),
            "schedule null": self.task_body(scheduleTime=None),
            "snake case": self.task_body(schedule_time=rfc3339(self.now())),
            "headers not strings": self.task_body(httpRequest={"url": "http://x/", "headers": {"A": 1}}),
            "task not object": {"task": "x"},
            "view unknown": dict(self.task_body(), responseView="EVERYTHING"),
            "no task": {"responseView": "BASIC"},
        }
        for label, body in cases.items():
            with self.subTest(label):
                self.assert_google_error(self.create(body), 400, "INVALID_ARGUMENT")
        raw = b'{"task": {"name": "a"}, "task": {"name": "b"}}'
        self.assert_google_error(self.create(raw), 400, "INVALID_ARGUMENT")
        self.assert_google_error(self.create(b"{not json"), 400, "INVALID_ARGUMENT")

    def test_create__not_json_content_type__400(self):
        body = json.dumps(self.task_body()).encode()
        for content_type in (None, "application/x-www-form-urlencoded", "text/plain"):
            headers = {"Authorization": "Bearer " + self.token}
            if content_type:
                headers["Content-Type"] = content_type
            with self.subTest(content_type=content_type):
                self.assert_google_error(http_call("POST", self.fake.tasks_url, body, headers), 400,
                                         "INVALID_ARGUMENT")
        self.assertEqual(self.fake.tasks, {})

    def test_create__bad_task_ids__400_and_500_chars__ok(self):
        for task_id in ("has.dot", "has space", "slash/x", "ü", "x" * 501, ""):
            with self.subTest(task_id=task_id[:20]):
                self.assert_google_error(self.create(self.task_body(task_id)), 400, "INVALID_ARGUMENT")
        other_queue = self.task_body()
        other_queue["task"]["name"] = "projects/p1/locations/l1/queues/other/tasks/t1"
        self.assert_google_error(self.create(other_queue), 400, "INVALID_ARGUMENT")
        status, _, raw = self.create(self.task_body("A-z_09" + "x" * 494))
        self.assertEqual(status, 200, raw)

    def test_create__721h_ahead__400_with_google_message(self):
        body = self.task_body(scheduleTime=rfc3339(self.now() + 721 * 3600))
        self.assert_google_error(self.create(body), 400, "INVALID_ARGUMENT",
                                 "Schedule time must be no more than 720h in the future")

    def test_create__bad_schedule_or_deadline_or_request__400(self):
        cases = {
            "schedule not rfc3339": self.task_body(scheduleTime="2026-11-28 16:00:00"),
            "schedule no zone": self.task_body(scheduleTime="2026-11-28T16:00:00"),
            "schedule bad date": self.task_body(scheduleTime="2026-02-30T16:00:00Z"),
            "deadline 14s": self.task_body(dispatchDeadline="14s"),
            "deadline 1801s": self.task_body(dispatchDeadline="1801s"),
            "deadline no unit": self.task_body(dispatchDeadline="600"),
        }
        for label, mutate in {"url ftp": ("url", "ftp://x/"), "url relative": ("url", "/callback"),
                              "method GET": ("httpMethod", "GET"), "body not base64": ("body", "***"),
                              "body unpadded": ("body", "e30")}.items():
            body = self.task_body()
            body["task"]["httpRequest"][mutate[0]] = mutate[1]
            cases[label] = body
        no_email = self.task_body()
        no_email["task"]["httpRequest"]["oidcToken"] = {"audience": "a"}
        cases["oidc without email"] = no_email
        for label, body in cases.items():
            with self.subTest(label):
                self.assert_google_error(self.create(body), 400, "INVALID_ARGUMENT")
        self.assertEqual(self.fake.tasks, {})

    def test_create__deadline_bounds_and_fractional_schedule__accepted_and_normalized(self):
        for index, deadline in enumerate(("15s", "1800s", "600.5s")):
            status, _, raw = self.create(self.task_body(f"d{index}", dispatchDeadline=deadline))
            self.assertEqual(status, 200, raw)
            self.assertEqual(json_of(raw)["dispatchDeadline"], deadline)
        when = int(self.now()) + 7200
        local = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when + 3600)) + ".250+01:00"
        status, _, raw = self.create(self.task_body("frac", scheduleTime=local))
        self.assertEqual(status, 200, raw)
        self.assertEqual(json_of(raw)["scheduleTime"], rfc3339(when)[:-1] + ".250Z")

    def test_create__over_100kb__400(self):
        body = self.task_body()
        body["task"]["httpRequest"]["body"] = base64.b64encode(b"x" * (101 * 1024)).decode()
        self.assert_google_error(self.create(body), 400, "INVALID_ARGUMENT", "too large")

    def test_create__unknown_queue__404(self):
        url = self.fake.tasks_url.replace("/queues/q1/", "/queues/nope/")
        body = json.dumps(self.task_body()).encode()
        result = http_call("POST", url, body, {"Content-Type": "application/json",
                                                "Authorization": "Bearer " + self.token})
        self.assert_google_error(result, 404, "NOT_FOUND")

    def test_create__duplicate_then_deleted__409_both_times_with_distinct_messages(self):
        self.assertEqual(self.create(self.task_body())[0], 200)
        self.assert_google_error(self.create(self.task_body()), 409, "ALREADY_EXISTS",
                                 "Requested entity already exists")
        status, _, raw = self.delete("t1")
        self.assertEqual((status, json_of(raw)), (200, {}))
        self.assert_google_error(self.create(self.task_body()), 409, "ALREADY_EXISTS", "existed too recently")
        self.assertEqual(self.fake.create_calls_by_name[self.fake.task_name("t1")], {"calls": 3, "created": 1})
        self.assertEqual(self.fake.tombstones[self.fake.task_name("t1")]["reason"], "deleted")

    def test_delete__twice_or_unknown__404(self):
        self.assertEqual(self.create(self.task_body())[0], 200)
        self.assertEqual(self.delete("t1")[0], 200)
        self.assert_google_error(self.delete("t1"), 404, "NOT_FOUND")
        self.assert_google_error(self.delete("never"), 404, "NOT_FOUND")
        self.assertEqual([d["status"] for d in self.fake.deletes], [200, 404, 404])

    def test_get__existing_and_missing__task_or_404(self):
        self.assertEqual(self.create(self.task_body())[0], 200)
        url = f"{self.fake.base_url}/v2/{self.fake.task_name('t1')}?responseView=FULL"
        status, _, raw = http_call("GET", url, None, {"Authorization": "Bearer " + self.token})
        self.assertEqual(status, 200)
        self.assertEqual(base64.b64decode(json_of(raw)["httpRequest"]["body"]), b'{"bookingId":"b1"}')
        url = f"{self.fake.base_url}/v2/{self.fake.task_name('zz')}"
        self.assert_google_error(http_call("GET", url, None, {"Authorization": "Bearer " + self.token}),
                                 404, "NOT_FOUND")


class TestCloudTasksClock(CloudTasksCase):
    clock = None

    def setUp(self):
        self.clock = fakehttp.ManualClock(1_790_000_000)
        super().setUp()

    def test_create__exactly_720h__ok_and_one_second_more__400(self):
        self.assert_google_error(self.create(self.task_body("late", scheduleTime=rfc3339(
            self.clock() + 720 * 3600 + 1))), 400, "INVALID_ARGUMENT")
        status, _, raw = self.create(self.task_body("edge", scheduleTime=rfc3339(self.clock() + 720 * 3600)))
        self.assertEqual(status, 200, raw)

    def test_create__past_schedule__normalized_to_now(self):
        status, _, raw = self.create(self.task_body(scheduleTime=rfc3339(self.clock() - 86400)))
        self.assertEqual(status, 200, raw)
        self.assertEqual(json_of(raw)["scheduleTime"], rfc3339(self.clock()))

    def test_tombstone__after_tombstone_window__name_reusable(self):
        self.assertEqual(self.create(self.task_body())[0], 200)
        self.assertEqual(self.delete("t1")[0], 200)
        self.clock.advance(3599)
        self.assertEqual(self.create(self.task_body())[0], 409)
        self.clock.advance(2)
        self.token = self.fake.issue_token()  # the old token expired with the clock
        self.assertEqual(self.create(self.task_body())[0], 200)

    def test_access_token__clock_past_expiry__401(self):
        self.assertEqual(self.create(self.task_body("a"))[0], 200)
        self.clock.advance(3600)
        self.assert_google_error(self.create(self.task_body("b")), 401, "UNAUTHENTICATED")

    def test_dispatch__due_only__skips_future_tasks(self):
        target = CallbackTarget().start()
        self.addCleanup(target.stop)
        for task_id, delay in (("now", 0), ("later", 600)):
            body = self.task_body(task_id, scheduleTime=rfc3339(self.clock() + delay))
            body["task"]["httpRequest"]["url"] = target.url("/callback")
            self.assertEqual(self.create(body)[0], 200)
        self.assertEqual(self.fake.dispatch(), [(200, '{"ok":true}')])
        self.assertEqual(list(self.fake.tasks), [self.fake.task_name("later")])
        self.clock.advance(600)
        self.assertEqual(len(self.fake.dispatch_all_due()), 1)
        self.assertEqual(self.fake.tasks, {})


class TestCloudTasksAuth(CloudTasksCase):
    def test_api__missing_or_invalid_bearer__401_unauthenticated(self):
        body = json.dumps(self.task_body()).encode()
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic " + self.token},
                        {"Authorization": self.token}):
            with self.subTest(headers=headers):
                result = http_call("POST", self.fake.tasks_url, body, dict(headers, **{
                    "Content-Type": "application/json"}))
                self.assert_google_error(result, 401, "UNAUTHENTICATED")
                self.assertIn("www-authenticate", result[1])
        self.assertEqual(self.fake.tasks, {})
        self.assert_google_error(self.delete("t1", token="bogus"), 401, "UNAUTHENTICATED")

    def test_expire_tokens__next_call__401(self):
        self.assertEqual(self.create(self.task_body("a"))[0], 200)
        self.fake.expire_tokens()
        self.assert_google_error(self.create(self.task_body("b")), 401, "UNAUTHENTICATED")

    def test_token_endpoint__good_assertion__token_that_works(self):
        status, _, raw = self.token_request(self.assertion())
        self.assertEqual(status, 200, raw)
        token = json_of(raw)
        self.assertEqual((token["token_type"], token["expires_in"]), ("Bearer", 3600))
        self.assertEqual(self.create(self.task_body(), token=token["access_token"])[0], 200)
        self.assertEqual(self.fake.tokens_issued[-1]["email"], SA_EMAIL)

    def test_token_endpoint__bad_assertions__400(self):
        pem = keys.public_pem(self.sa_key)
        cases = {
            "wrong key": (self.assertion(key=self.other_key), "invalid_grant"),
            "alg none": (self.assertion(alg="none"), "invalid_grant"),
            "hs256 with public pem": (self.assertion(alg="HS256", secret=pem), "invalid_grant"),
            "unknown issuer": (self.assertion(iss="x@y.iam.gserviceaccount.com"), "invalid_grant"),
            "wrong audience": (self.assertion(aud="https://oauth2.googleapis.com/token"), "invalid_grant"),
            "no scope": (self.assertion(scope=REMOVE), "invalid_scope"),
            "other scope": (self.assertion(scope="https://www.googleapis.com/auth/pubsub"), "invalid_scope"),
            "lifetime over 1h": (self.assertion(exp=int(self.now()) + 3601), "invalid_grant"),
            "expired": (self.assertion(iat=int(self.now()) - 7200, exp=int(self.now()) - 3600), "invalid_grant"),
            "string iat": (self.assertion(iat=str(int(self.now()))), "invalid_grant"),
            "garbage": ("not.a.jwt", "invalid_grant"),
        }
        for label, (assertion, error) in cases.items():
            with self.subTest(label):
                status, _, raw = self.token_request(assertion)
                self.assertEqual((status, json_of(raw)["error"]), (400, error), raw)
        self.assertEqual([t["source"] for t in self.fake.tokens_issued], ["direct"])

    def test_token_endpoint__wrong_content_type_or_grant__400(self):
        self.assertEqual(self.token_request(self.assertion(), content_type="application/json")[0], 400)
        status, _, raw = self.token_request(self.assertion(), grant="client_credentials")
        self.assertEqual((status, json_of(raw)["error"]), (400, "unsupported_grant_type"))

    def test_keyfile__written_by_fake__accepted_by_token_endpoint(self):
        with tempfile.TemporaryDirectory() as tmp:
            account = self.fake.make_service_account_keyfile(os.path.join(tmp, "sa.json"))
            with open(account.path, encoding="utf-8") as handle:
                info = json.load(handle)
            self.assertEqual(os.stat(account.path).st_mode & 0o777, 0o600)
        for field in ("type", "project_id", "private_key_id", "private_key", "client_email", "client_id",
                      "token_uri"):
            self.assertIn(field, info)
        self.assertEqual(info["type"], "service_account")
        self.assertTrue(info["private_key"].startswith("-----BEGIN PRIVATE KEY-----"))
        self.assertEqual(info["token_uri"], self.fake.token_uri)
        now = int(time.time())
        assertion = keys.sign_jwt({"iss": info["client_email"], "scope": keys.CLOUD_PLATFORM_SCOPE,
                                   "aud": info["token_uri"], "iat": now, "exp": now + 3600},
                                  account.private_key, info["private_key_id"])
        self.assertEqual(self.token_request(assertion)[0], 200)

    def test_metadata__flavor_header__required(self):
        url = self.fake.metadata_token_url
        self.assertEqual(http_call("GET", url)[0], 403)
        self.assertEqual(http_call("GET", url, None, {"Metadata-Flavor": "google"})[0], 403)
        self.assertEqual(http_call("GET", url, None, {"Metadata-Flavor": "Google", "X-Forwarded-For": "1.2.3.4"})[0],
                         403)
        status, headers, raw = http_call("GET", url, None, {"Metadata-Flavor": "Google"})
        self.assertEqual(status, 200)
        self.assertEqual(headers["metadata-flavor"], "Google")
        self.assertEqual(self.create(self.task_body(), token=json_of(raw)["access_token"])[0], 200)


class TestCloudTasksDispatch(CloudTasksCase):
    def make_task(self, target, task_id="t1"):
        body = self.task_body(task_id)
        body["task"]["httpRequest"]["url"] = target.url("/callback")
        status, _, raw = self.create(body)
        self.assertEqual(status, 200, raw)

    def target(self, **kwargs):
        target = CallbackTarget(**kwargs).start()
        self.addCleanup(target.stop)
        return target

    def served_jwks(self):
        status, headers, raw = http_call("GET", self.fake.jwks_uri)
        self.assertEqual(status, 200)
        return headers, json_of(raw)

    def verify_against_jwks(self, authorization):
        self.assertTrue(authorization.startswith("Bearer "))
        token = authorization[len("Bearer "):]
        header, _, _, _ = keys.decode_jwt_unverified(token)
        _, jwks = self.served_jwks()
        jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
        return header, keys.verify_rs256(token, keys.public_key_from_jwk(jwk))

    def test_jwks__shape_and_cache_control(self):
        headers, jwks = self.served_jwks()
        self.assertEqual(headers["cache-control"].split(",")[:2], ["public", " max-age=1234"])
        (jwk,) = jwks["keys"]
        self.assertEqual((jwk["alg"], jwk["kty"], jwk["use"], jwk["e"]), ("RS256", "RSA", "sig", "AQAB"))
        self.assertNotIn("=", jwk["n"])
        self.assertEqual(len(keys.b64url_decode(jwk["n"])), 256)

    def test_jwks__unavailable_and_injected_failures__503_and_every_request_logged(self):
        self.served_jwks()
        self.fake.set_jwks_unavailable(True)
        status, _, raw = http_call("GET", self.fake.jwks_uri)
        self.assertEqual((status, json_of(raw)["error"]["status"]), (503, "UNAVAILABLE"))
        self.fake.set_jwks_unavailable(False)
        self.fake.fail_next(1, 500, method="jwks")
        self.assertEqual(http_call("GET", self.fake.jwks_uri)[0], 500)
        self.served_jwks()
        log = self.fake.jwks_requests
        self.assertEqual([r["status"] for r in log], [200, 503, 500, 200])
        self.assertEqual(sorted(r["time"] for r in log), [r["time"] for r in log])
        self.assertEqual(self.fake.jwks_fetches, 2)  # answered 200 only

    def test_dispatch__delivers_body_headers_and_verifiable_google_oidc_jwt(self):
        target = self.target()
        self.make_task(target)
        before = int(time.time())
        self.assertEqual(self.fake.dispatch(), [(200, '{"ok":true}')])
        (request,) = target.requests
        self.assertEqual(request.body, b'{"bookingId":"b1"}')
        self.assertEqual(request.header("Content-Type"), "application/json")
        self.assertEqual(request.header("User-Agent"), "Google-Cloud-Tasks")
        self.assertEqual(request.header("X-CloudTasks-QueueName"), "q1")
        self.assertEqual(request.header("X-CloudTasks-TaskName"), "t1")
        self.assertEqual(request.header("X-CloudTasks-TaskRetryCount"), "0")
        self.assertEqual(request.header("X-CloudTasks-TaskExecutionCount"), "0")
        self.assertTrue(request.header("X-CloudTasks-TaskETA").split(".")[0].isdigit())
        header, claims = self.verify_against_jwks(request.header("Authorization"))
        self.assertEqual(header["alg"], "RS256")
        self.assertEqual(claims["iss"], "https://accounts.google.com")
        self.assertEqual(claims["aud"], "followupd-test")
        self.assertEqual(claims["email"], SA_EMAIL)
        self.assertIs(claims["email_verified"], True)
        self.assertEqual(claims["sub"], claims["azp"])
        self.assertLessEqual(before, claims["iat"])
        self.assertEqual(claims["exp"] - claims["iat"], 3600)
        self.assertEqual(self.fake.tasks, {})
        self.assertEqual(self.fake.tombstones[self.fake.task_name("t1")]["reason"], "ran")
        self.assert_google_error(self.create(self.task_body()), 409, "ALREADY_EXISTS", "existed too recently")
        self.assert_google_error(self.delete("t1"), 404, "NOT_FOUND")

    def test_dispatch__non_2xx__kept_for_retry_with_counts(self):
        target = self.target(statuses=[500, 404])
        self.make_task(target)
        self.assertEqual([s for s, _ in self.fake.dispatch(times=3)], [500, 404, 200])
        self.assertEqual([r.header("X-CloudTasks-TaskRetryCount") for r in target.requests], ["0", "1", "2"])
        self.assertEqual(target.requests[2].header("X-CloudTasks-TaskPreviousResponse"), "404")
        self.assertEqual([d["attempt"] for d in self.fake.dispatch_log], [1, 2, 3])
        self.assertEqual(self.fake.tasks, {})

    def test_dispatch__task_headers__copied_except_reserved_and_default_content_type(self):
        target = self.target()
        body = self.task_body()
        body["task"]["httpRequest"]["url"] = target.url("/callback")
        body["task"]["httpRequest"]["headers"] = {"X-Custom": "1", "User-Agent": "evil",
                                                  "X-CloudTasks-TaskName": "spoof"}
        self.assertEqual(self.create(body)[0], 200)
        self.fake.dispatch()
        (request,) = target.requests
        self.assertEqual(request.header("X-Custom"), "1")
        self.assertEqual(request.header_values("User-Agent"), ["Google-Cloud-Tasks"])
        self.assertEqual(request.header_values("X-CloudTasks-TaskName"), ["t1"])
        self.assertEqual(request.header("Content-Type"), "application/octet-stream")

    def test_dispatch__target_down__no_answer_recorded_and_task_kept(self):
        target = self.target()
        self.make_task(target)
        target.stop()
        ((status, _),) = self.fake.dispatch()
        self.assertIsNone(status)
        self.assertIsNotNone(self.fake.dispatch_log[0]["error"])
        self.assertEqual(self.fake.tasks[self.fake.task_name("t1")]["attempts"], 1)

    def test_dispatch__concurrent__identical_deliveries_in_flight_together(self):
        target = self.target(barrier=threading.Barrier(3, timeout=5))
        self.make_task(target)
        results = self.fake.dispatch(concurrent=3)
        self.assertEqual([s for s, _ in results], [200, 200, 200])
        auth = {r.header("Authorization") for r in target.requests}
        self.assertEqual(len(auth), 1)
        self.assertEqual(len(target.requests), 3)

    def test_dispatch__named_done_task_with_allow_done__redelivered(self):
        target = self.target()
        self.make_task(target)
        self.fake.dispatch()
        with self.assertRaises(KeyError):
            self.fake.dispatch("t1")
        self.assertEqual(self.fake.dispatch("t1", allow_done=True), [(200, '{"ok":true}')])
        self.assertEqual(len(target.requests), 2)

    def test_dispatch__key_rotation__new_kid_signs_and_old_kid_leaves_jwks(self):
        target = self.target()
        self.make_task(target, "a")
        self.make_task(target, "b")
        old_kid = self.fake.oidc_keys.active_kid
        new_kid = self.fake.add_oidc_key()
        self.assertEqual({k["kid"] for k in self.served_jwks()[1]["keys"]}, {old_kid, new_kid})
        self.fake.dispatch("a")
        header, _ = self.verify_against_jwks(target.requests[0].header("Authorization"))
        self.assertEqual(header["kid"], new_kid)
        self.fake.remove_oidc_key(old_kid)
        self.assertEqual([k["kid"] for k in self.served_jwks()[1]["keys"]], [new_kid])
        hidden = self.fake.add_oidc_key(publish=False)
        self.fake.dispatch("b")
        token = target.requests[1].header("Authorization")[len("Bearer "):]
        self.assertEqual(keys.decode_jwt_unverified(token)[0]["kid"], hidden)
        self.assertNotIn(hidden, [k["kid"] for k in self.served_jwks()[1]["keys"]])
        self.assertEqual(self.fake.jwks_fetches, 4)

    def test_dispatch__token_overrides__shape_the_jwt(self):
        target = self.target()
        self.make_task(target)
        pem = keys.public_pem(self.fake.oidc_keys.get(self.fake.oidc_keys.active_kid).key)
        for overrides in ({"email": REMOVE, "aud": "other"}, {"_alg": "HS256", "_secret": pem},
                          {"_alg": "none", "_kid": None}, {"_authorization": None}, {"_key": "random"}):
            self.fake.dispatch("t1", token_overrides=overrides, allow_done=True)
        tokens = [r.header("Authorization") for r in target.requests]
        _, claims = self.verify_against_jwks(tokens[0])
        self.assertNotIn("email", claims)
        self.assertEqual(claims["aud"], "other")
        self.assertEqual(keys.decode_jwt_unverified(tokens[1][7:])[0]["alg"], "HS256")
        self.assertTrue(tokens[2].endswith("."))
        self.assertIsNone(tokens[3])
        with self.assertRaises(keys.JwtError):
            self.verify_against_jwks(tokens[4])


class TestCloudTasksFaults(CloudTasksCase):
    def test_fail_next__create__fails_n_times_then_succeeds(self):
        self.fake.fail_next(2, status=503, method="create")
        self.assert_google_error(self.create(self.task_body()), 503, "UNAVAILABLE")
        self.fake.fail_next(1, status=429, method="delete", retry_after=7)
        self.assert_google_error(self.create(self.task_body()), 503, "UNAVAILABLE")
        self.assertEqual(self.create(self.task_body())[0], 200)
        result = self.delete("t1")
        self.assert_google_error(result, 429, "RESOURCE_EXHAUSTED")
        self.assertEqual(result[1]["retry-after"], "7")
        self.assertEqual(self.delete("t1")[0], 200)
        self.assertEqual(self.fake.create_calls_by_name[self.fake.task_name("t1")], {"calls": 3, "created": 1})

    def test_fail_next__token__token_and_metadata_fail(self):
        self.fake.fail_next(2, status=500, method="token")
        self.assertEqual(self.token_request(self.assertion())[0], 500)
        self.assertEqual(http_call("GET", self.fake.metadata_token_url, None, {"Metadata-Flavor": "Google"})[0], 500)
        self.assertEqual(self.token_request(self.assertion())[0], 200)
        with self.assertRaises(ValueError):
            self.fake.fail_next(1, method="bogus")

    def test_set_unavailable__all_api_calls_503_until_cleared(self):
        self.fake.set_unavailable(True)
        self.assert_google_error(self.create(self.task_body()), 503, "UNAVAILABLE")
        self.assert_google_error(self.delete("t1"), 503, "UNAVAILABLE")
        self.fake.set_unavailable(False)
        self.assertEqual(self.create(self.task_body())[0], 200)

    def test_delay_next__client_times_out__task_still_created_and_retry_409(self):
        self.fake.delay_next(1, 2.0, method="create")
        with self.assertRaises(OSError):  # socket.timeout
            self.create(self.task_body(), timeout=0.3)
        self.assertTrue(self.fake.wait_for_creates(1, timeout=5))
        self.assert_google_error(self.create(self.task_body()), 409, "ALREADY_EXISTS")

    def test_wait_for_tasks__other_thread_creates__wakes_without_polling(self):
        threading.Timer(0.1, lambda: self.create(self.task_body())).start()
        self.assertTrue(self.fake.wait_for_tasks(1, timeout=5))
        self.assertFalse(self.fake.wait_for_tasks(2, timeout=0.1))


class TestVoiceAgent(unittest.TestCase):
    TOKEN = "voice-secret"

    def setUp(self):
        self.agent = FakeVoiceAgent(token=self.TOKEN).start()
        self.addCleanup(self.agent.stop)
        self.tenant = str(uuid.uuid4())

    def good(self, key="followup:k1", **changes):
        body = {"tenantId": self.tenant, "bookingId": str(uuid.uuid4()), "leadId": str(uuid.uuid4()),
                "assignedUserId": None, "scheduledAt": "2026-11-28T16:00:00.000Z", "idempotencyKey": key,
                "bookingType": "auto_follow_up", "source": "followupd"}
        body.update(changes)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.TOKEN}",
                   "X-Tenant-Id": self.tenant, "Idempotency-Key": key, "X-Request-Id": str(uuid.uuid4())}
        return headers, body

    def post(self, headers, body, timeout=10):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return http_call("POST", self.agent.start_call_url, data, headers, timeout)

    def test_start_call__valid__200_started_and_recorded(self):
        headers, body = self.good()
        status, _, raw = self.post(headers, body)
        self.assertEqual(status, 200, raw)
        reply = json_of(raw)
        self.assertEqual(reply["status"], "started")
        uuid.UUID(reply["callId"])
        (call,) = self.agent.calls
        self.assertEqual((call["call_id"], call["body"], call["duplicate"]), (reply["callId"], body, False))
        self.assertEqual(call["headers"]["X-Request-Id"], headers["X-Request-Id"])

    def test_start_call__missing_or_bad_headers__400(self):
        for name in ("X-Tenant-Id", "Idempotency-Key", "X-Request-Id"):
            headers, body = self.good()
            del headers[name]
            with self.subTest(missing=name):
                status, _, raw = self.post(headers, body)
                self.assertEqual(status, 400, raw)
                self.assertEqual(json_of(raw)["error"], "missing_header")
        headers, body = self.good()
        headers["X-Tenant-Id"] = "tenant-1"
        self.assertEqual(self.post(headers, body)[0], 400)
        self.assertEqual(self.agent.calls, [])

    def test_start_call__auth_and_content_type__enforced(self):
        headers, body = self.good()
        for auth in (None, "Bearer wrong", self.TOKEN):
            with self.subTest(auth=auth):
                changed = dict(headers)
                changed.pop("Authorization")
                if auth:
                    changed["Authorization"] = auth
                self.assertEqual(self.post(changed, body)[0], 401)
        self.assertEqual(self.post(dict(headers, **{"Content-Type": "text/plain"}), body)[0], 415)
        self.assertEqual(self.post(headers, b"{oops")[0], 400)
        self.assertEqual(self.post(headers, b"[]")[0], 400)

    def test_start_call__body_contract_violations__422(self):
        cases = {
            "extra key": dict(self.good()[1], notes="x"),
            "snake key": {("tenant_id" if k == "tenantId" else k): v for k, v in self.good()[1].items()},
            "wrong source": dict(self.good()[1], source="node"),
            "tenant mismatch": dict(self.good()[1], tenantId=str(uuid.uuid4())),
            "key mismatch": dict(self.good()[1], idempotencyKey="followup:other"),
            "lead not uuid": dict(self.good()[1], leadId=42),
            "user not uuid": dict(self.good()[1], assignedUserId="bob"),
            "bad time": dict(self.good()[1], scheduledAt="tomorrow"),
        }
        missing = self.good()[1]
        del missing["assignedUserId"]
        cases["missing key (null is not absent)"] = missing
        headers = self.good()[0]
        for label, body in cases.items():
            with self.subTest(label):
                status, _, raw = self.post(headers, body)
                self.assertEqual(status, 422, raw)
        self.assertEqual(self.agent.calls, [])
        self.assertEqual(len(self.agent.rejected), len(cases))

    def test_start_call__repeated_key__same_call_id_counted_separately(self):
        headers, body = self.good()
        first = json_of(self.post(headers, body)[2])["callId"]
        again = json_of(self.post(dict(headers, **{"X-Request-Id": "retry"}), body)[2])["callId"]
        self.assertEqual(first, again)
        other_headers, other_body = self.good(key="followup:k2")
        self.assertNotEqual(json_of(self.post(other_headers, other_body)[2])["callId"], first)
        self.assertEqual((self.agent.call_count, self.agent.unique_keys), (3, ["followup:k1", "followup:k2"]))
        self.assertEqual([c["duplicate"] for c in self.agent.calls], [False, True, False])
        status, _, raw = self.post(headers, dict(body, bookingType="meeting"))
        self.assertEqual((status, json_of(raw)["error"]), (422, "idempotency_key_reused"))

    def test_failure_injection__fail_next_and_mode(self):
        headers, body = self.good()
        self.agent.fail_next(2, status=503)
        self.assertEqual([self.post(headers, body)[0] for _ in range(3)], [503, 503, 200])
        self.agent.set_mode("error", status=502)
        self.assertEqual(self.post(headers, body)[0], 502)
        self.agent.set_mode("ok")
        self.assertEqual(self.post(headers, body)[0], 200)
        self.assertEqual((self.agent.call_count, self.agent.unique_count, len(self.agent.injected)), (2, 1, 3))

    def test_fail_next__retry_after__header_sent_as_given(self):
        headers, body = self.good()
        self.agent.fail_next(1, status=429, retry_after=7)
        self.agent.fail_next(1, status=503, retry_after="Sun, 06 Nov 1994 08:49:37 GMT")
        first, second = self.post(headers, body), self.post(headers, body)
        self.assertEqual((first[0], first[1].get("retry-after")), (429, "7"))
        self.assertEqual((second[0], second[1].get("retry-after")), (503, "Sun, 06 Nov 1994 08:49:37 GMT"))
        self.assertEqual(self.agent.call_count, 0)

    def test_hold__calls_recorded_and_wait_until_release__in_flight_counted_per_tenant(self):
        self.agent.hold()
        answers = []
        tenants = [str(uuid.uuid4()), str(uuid.uuid4())]
        threads = []
        for i, tenant in enumerate([tenants[0], tenants[0], tenants[1]]):
            headers, body = self.good(key=f"followup:hold{i}")
            headers["X-Tenant-Id"] = body["tenantId"] = tenant
            t = threading.Thread(target=lambda h=headers, b=body: answers.append(self.post(h, b)[0]))
            t.start()
            threads.append(t)
        self.assertTrue(self.agent.wait_until(lambda: self.agent.in_flight == 3, 5))
        self.assertEqual((self.agent.call_count, answers), (3, []), "held: recorded, not answered")
        self.agent.release()
        for t in threads:
            t.join(5)
        self.assertEqual((sorted(answers), self.agent.in_flight, self.agent.max_in_flight), ([200] * 3, 0, 3))
        self.assertEqual(self.agent.max_in_flight_by_tenant, {tenants[0]: 2, tenants[1]: 1})
        self.assertEqual(self.post(*self.good(key="followup:after"))[0], 200, "not holding after release")

    def test_delay_next__client_times_out__call_recorded_and_retry_dedupes(self):
        headers, body = self.good()
        self.agent.delay_next(1, 2.0)
        with self.assertRaises(OSError):
            self.post(headers, body, timeout=0.3)
        self.assertTrue(self.agent.wait_for_calls(1, timeout=5))
        first = self.agent.calls[0]["call_id"]
        self.assertEqual(json_of(self.post(headers, body)[2])["callId"], first)
        self.assertEqual(self.agent.unique_count, 1)

    def test_wait_for_calls__times_out_false_then_wakes_true(self):
        self.assertFalse(self.agent.wait_for_calls(1, timeout=0.05))
        headers, body = self.good()
        threading.Timer(0.1, lambda: self.post(headers, body)).start()
        self.assertTrue(self.agent.wait_for_calls(1, timeout=5))

    def test_start_call__chunked_body__accepted_and_missing_length__411(self):
        headers, body = self.good()
        data = json.dumps(body).encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        chunked = (f"POST {urllib.parse.urlsplit(self.agent.start_call_url).path} HTTP/1.1\r\nHost: x\r\n{head}"
                   f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
        chunked += b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)
        self.assertTrue(self.raw_exchange(chunked).startswith(b"HTTP/1.1 200 "))
        no_length = chunked.split(b"Transfer-Encoding")[0] + b"Connection: close\r\n\r\n"
        self.assertTrue(self.raw_exchange(no_length).startswith(b"HTTP/1.1 411 "))

    def raw_exchange(self, data):
        with socket.create_connection(("127.0.0.1", self.agent.port), timeout=5) as sock:
            sock.sendall(data)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)

    def test_no_token_configured__authorization_not_required(self):
        agent = FakeVoiceAgent().start()
        self.addCleanup(agent.stop)
        headers, body = self.good()
        del headers["Authorization"]
        status, _, _ = http_call("POST", agent.start_call_url, json.dumps(body).encode(), headers)
        self.assertEqual(status, 200)


class TestCli(unittest.TestCase):
    def spawn(self, script, *args):
        proc = subprocess.Popen([PYTHON, os.path.join(ROOT, "tests", "fakes", script), "--port", "0", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(self.reap, proc)
        return proc, json.loads(proc.stdout.readline())

    @staticmethod
    def reap(proc):
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()

    def test_cloudtasks_cli__keyfile_token_create_control_and_sigterm(self):
        with tempfile.TemporaryDirectory() as tmp:
            keyfile = os.path.join(tmp, "sa.json")
            proc, info = self.spawn("fake_cloudtasks.py", "--write-keyfile", keyfile, "--project", "p9")
            account = keys.load_service_account_keyfile(keyfile)
        self.assertEqual(account.token_uri, info["token_uri"])
        now = int(time.time())
        assertion = keys.sign_jwt({"iss": account.client_email, "scope": keys.CLOUD_PLATFORM_SCOPE,
                                   "aud": account.token_uri, "iat": now, "exp": now + 3600},
                                  account.private_key, account.private_key_id)
        form = urllib.parse.urlencode({"grant_type": JWT_BEARER, "assertion": assertion}).encode()
        status, _, raw = http_call("POST", info["token_uri"], form,
                                   {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 200, raw)
        token = json_of(raw)["access_token"]
        task = {"task": {"name": info["queue"] + "/tasks/cli1", "httpRequest": {"url": "http://127.0.0.1:9/"}}}
        status, _, raw = http_call("POST", info["tasks_url"], json.dumps(task).encode(),
                                   {"Content-Type": "application/json", "Authorization": "Bearer " + token})
        self.assertEqual(status, 200, raw)
        status, _, raw = http_call("GET", info["control_url"] + "/state")
        state = json_of(raw)
        self.assertIn(info["queue"] + "/tasks/cli1", state["tasks"])
        self.assertEqual(state["tokens_issued"][0]["source"], "token")
        status, _, _ = http_call("POST", info["control_url"] + "/fail_next",
                                 json.dumps({"n": 1, "status": 503, "method": "delete"}).encode(),
                                 {"Content-Type": "application/json"})
        self.assertEqual(status, 200)
        status, _, _ = http_call("DELETE", info["base_url"] + "/v2/" + info["queue"] + "/tasks/cli1", None,
                                 {"Authorization": "Bearer " + token})
        self.assertEqual(status, 503)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=10), 0)

    def test_voice_agent_cli__print_flag__one_line_per_call(self):
        proc, info = self.spawn("fake_voice_agent.py", "--print", "--token", "t0k")
        tenant = str(uuid.uuid4())
        body = {"tenantId": tenant, "bookingId": str(uuid.uuid4()), "leadId": str(uuid.uuid4()),
                "assignedUserId": str(uuid.uuid4()), "scheduledAt": "2026-11-28T16:00:00.000Z",
                "idempotencyKey": "k", "bookingType": "follow_up", "source": "followupd"}
        headers = {"Content-Type": "application/json", "Authorization": "Bearer t0k", "X-Tenant-Id": tenant,
                   "Idempotency-Key": "k", "X-Request-Id": "r1"}
        status, _, raw = http_call("POST", info["start_call_url"], json.dumps(body).encode(), headers)
        self.assertEqual(status, 200, raw)
        line = proc.stdout.readline()
        self.assertIn(json_of(raw)["callId"], line)
        self.assertIn(body["bookingId"], line)
        status, _, raw = http_call("GET", info["control_url"] + "/calls")
        self.assertEqual(json_of(raw)["unique_keys"], ["k"])
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=10), 0)


if __name__ == "__main__":
    unittest.main()
