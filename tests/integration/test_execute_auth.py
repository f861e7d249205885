"""Authentication of the execution callback, against the real daemon over HTTP.

OIDC mode: Cloud Tasks (the strict fake) delivers the task with an `Authorization: Bearer <JWT>` header; the
daemon must accept only RS256 tokens signed by a key from the configured JWKS with Google's issuer, our audience
(exactly), our invoker service account (verified) and sane times. Every refused request must answer 401
{"error":"unauthorized"}, start no voice call, leave the row untouched, and log which check failed
("callback authentication failed", field `check`) without ever writing the token into the log.

Shared-secret mode: the `X-CloudTasks-Secret` header, exactly once, compared with the configured secret.

Nothing expensive before authentication: a callback that declares a large body but sends only its header section
is answered 401 from the headers alone (well before the body timeout), and the connection closes.

Unknown kids and key rotation (JWKS refetches, timing, outages) are in test_jwks_rotation.py.
"""
import http.client
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

from stack import AUDIENCE, INVOKER, Stack  # noqa: E402
from fakes import keys as keylib  # noqa: E402
from fakes.fake_cloudtasks import REMOVE  # noqa: E402

SCHEMA = "tenant_a"
AUTH_FAILED = "callback authentication failed"
UNAUTHORIZED = (401, {"error": "unauthorized"})
EXECUTED = (200, {"status": "executed"})
# A body declared but never sent: an answer that waited for it would come only after [http] body_timeout_ms
# (10 s by default); the answer from the headers must come well before.
DECLARED_BODY = 60000
HEADERS_ONLY_ANSWER_S = 3.0



def stop_cleanly(*stacks):
    """SIGTERM the daemons: each must exit 0 without a non-JSON line (sanitizer builds: no reports)."""
    codes = [code for stack in stacks for code in stack.stop_daemons()]
    if any(code != 0 for code in codes):
        raise AssertionError(f"followupd exit codes {codes}, expected 0")


# -- token building ------------------------------------------------------------------------------------------
def b64json(obj):
    return keylib.b64url_encode(json.dumps(obj, separators=(",", ":")).encode())


def good_claims(**overrides):
    now = int(time.time())
    claims = {"aud": AUDIENCE, "azp": "1234567890", "email": INVOKER, "email_verified": True, "exp": now + 3600,
              "iat": now, "iss": "https://accounts.google.com", "sub": "1234567890"}
    claims.update(overrides)
    return claims


def forge(header, claims, sign):
    """A compact JWT whose signature is sign(signing_input) (bytes)."""
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    return signing_input + "." + keylib.b64url_encode(sign(signing_input.encode()))


def rsa_signer(key, digest=hashes.SHA256):
    return lambda data: key.sign(data, padding.PKCS1v15(), digest())


class CallbackAuthCase(unittest.TestCase):
    """Shared helpers; subclasses set `s` (a Stack) and `d` (its daemon)."""

    def tearDown(self):
        self.d.assert_clean()
        self.assertEqual(self.s.ct.internal_errors, [])
        self.assertEqual(self.s.va.internal_errors, [])

    def booking(self):
        return self.s.scheduled_booking(SCHEMA, tenant=str(uuid.uuid4()))

    def deliver(self, name, overrides=None):
        """One delivery through the fake Cloud Tasks: (status, parsed body, Authorization header it sent)."""
        [(status, body)] = self.s.ct.dispatch(name, token_overrides=overrides, allow_done=True)
        sent = [e for e in self.s.ct.dispatch_log if e["name"] == name][-1]["authorization"]
        return status, json.loads(body) if body else None, sent

    def post(self, bid, body, headers):
        status, _, answer = self.s.raw_request(self.d, "POST", Stack.EXECUTE_PATH.format(bid),
                                               [("Content-Type", "application/json")] + list(headers),
                                               json.dumps(body))
        return status, answer

    def post_headers_only(self, bid, headers):
        """Send only the header section of a callback declaring a DECLARED_BODY-byte body, never the body.
        Returns ((status, parsed body), response headers, closed after the answer)."""
        head = (f"POST {Stack.EXECUTE_PATH.format(bid)} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                + "".join(f"{name}: {value}\r\n" for name, value in headers)
                + f"Content-Length: {DECLARED_BODY}\r\n\r\n")
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=HEADERS_ONLY_ANSWER_S) as sock:
            sock.sendall(head.encode())
            resp = http.client.HTTPResponse(sock)
            resp.begin()
            answer = json.loads(resp.read() or b"null")
            closed = sock.recv(1) == b""
            return (resp.status, answer), dict(resp.getheaders()), closed

    def assert_refused_from_headers(self, headers, check, secrets):
        bid, row, _, _ = self.booking()
        mark = self.d.mark()
        got, answer_headers, closed = self.post_headers_only(bid, headers)
        self.assert_refused(bid, row, got, check, secrets, mark)
        self.assertEqual(answer_headers.get("Connection"), "close")
        self.assertTrue(closed, "the connection must close: the unread body is never parsed")

    def assert_secret_not_logged(self, secret, mark):
        if not secret:
            return
        for rec in self.d.find_logs(lambda r: True, since=mark):
            self.assertNotIn(secret, json.dumps(rec), "a credential was written to the log")

    def assert_refused(self, bid, row, got, check, secrets, mark):
        """401, the failing check logged, no secret in the log, no voice call, the row untouched."""
        self.assertEqual(got, UNAUTHORIZED)
        rec = self.d.wait_for_log(lambda r: r.get("msg") == AUTH_FAILED and bid in r.get("path", ""), since=mark)
        self.assertEqual(rec.get("check"), check, rec)
        # Wait for the access-log line of this request too, so everything it logged is in.
        self.d.wait_for_log(lambda r: r.get("msg") == "http request" and bid in r.get("path", ""), since=mark)
        for secret in secrets:
            self.assert_secret_not_logged(secret, mark)
        self.assertEqual(self.s.voice_requests_for(bid), [], "a refused callback must not call the voice agent")
        self.assertEqual(self.s.row(SCHEMA, bid), row, "a refused callback must not touch the row")

    def assert_executed(self, bid, got):
        self.assertEqual(got, EXECUTED)
        self.assertEqual(len(self.s.va.calls_for_booking(bid)), 1)
        row = self.s.row(SCHEMA, bid)
        self.assertEqual((row["task_status"], row["execution_attempts"]), ("executed", "1"))


def token_secrets(authorization):
    """The strings that must never appear in the log for this Authorization value: the value, the token and
    its signature segment."""
    if not authorization:
        return []
    token = authorization.split(" ", 1)[-1]
    out = [authorization, token]
    sig = token.rsplit(".", 1)[-1]
    if len(sig) >= 16:
        out.append(sig)
    return out


class OidcCallbackAuthTests(CallbackAuthCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Stack(schemas=(SCHEMA,)).__enter__()
        cls.d = cls.s.daemon

    @classmethod
    def tearDownClass(cls):
        try:
            stop_cleanly(cls.s)
        finally:
            cls.s.__exit__(None, None, None)

    @property
    def active(self):
        return self.s.ct.oidc_keys.get(self.s.ct.oidc_keys.active_kid)

    def refused_delivery(self, overrides, check):
        """Deliver a fresh booking's task with token_overrides and expect a refusal naming `check`."""
        bid, row, name, _ = self.booking()
        mark = self.d.mark()
        status, body, sent = self.deliver(name, overrides)
        self.assert_refused(bid, row, (status, body), check, token_secrets(sent), mark)

    def refused_raw_token(self, token, check):
        self.refused_delivery({"_raw": token}, check)

    # -- accepted ----------------------------------------------------------------------------------------------
    def test_oidc__valid_token__accepted(self):
        bid, _, name, _ = self.booking()
        mark = self.d.mark()
        status, body, sent = self.deliver(name)
        self.assert_executed(bid, (status, body))
        self.assertEqual(self.d.find_logs(AUTH_FAILED, since=mark), [])
        for secret in token_secrets(sent):
            self.assert_secret_not_logged(secret, mark)

    def test_oidc__lowercase_bearer_scheme__accepted(self):
        # Decision: the auth scheme is case-insensitive (RFC 7235 section 2.1), so "bearer <token>" is the same
        # credential as "Bearer <token>" and is accepted.
        bid, _, name, _ = self.booking()
        status, body, _ = self.deliver(name, {"_authorization": "bearer " + self.s.oidc_token()})
        self.assert_executed(bid, (status, body))

    def test_oidc__jku_x5u_jwk_headers__ignored_and_never_fetched(self):
        attacker = keylib.generate_rsa_key()
        with socket.socket() as trap:  # where jku/x5u point: must never see a connection
            trap.bind(("127.0.0.1", 0))
            trap.listen(8)
            elsewhere = f"http://127.0.0.1:{trap.getsockname()[1]}"
            header = {"jku": elsewhere + "/certs", "x5u": elsewhere + "/cert.pem",
                      "jwk": keylib.jwk_from_public_key(attacker, "attacker")}
            bid, _, name, _ = self.booking()
            status, body, _ = self.deliver(name, {"_header": header})  # signed by the real JWKS key
            self.assert_executed(bid, (status, body))
            self.assertEqual(select.select([trap], [], [], 0)[0], [], "the daemon contacted a jku/x5u URL")

    # -- Authorization header shape ----------------------------------------------------------------------------
    def test_oidc__missing_authorization__401(self):
        self.refused_delivery({"_authorization": None}, "authorization_header")

    def test_oidc__bad_token_with_a_large_declared_body__401_from_the_headers(self):
        token = forge({"alg": "RS256", "typ": "JWT", "kid": self.active.kid}, good_claims(aud="https://x.example"),
                      rsa_signer(self.active.key))
        self.assert_refused_from_headers([("Authorization", "Bearer " + token)], "aud",
                                         token_secrets("Bearer " + token))

    def test_oidc__no_authorization_with_a_large_declared_body__401_from_the_headers(self):
        self.assert_refused_from_headers([], "authorization_header", [])

    def test_oidc__valid_token_with_the_body_sent_after_a_100_continue__executed(self):
        bid, _, _, body = self.booking()
        payload = json.dumps(body).encode()
        head = (f"POST {Stack.EXECUTE_PATH.format(bid)} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {self.s.oidc_token()}\r\nExpect: 100-continue\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n")
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=10) as sock:
            sock.sendall(head.encode())
            interim = b""
            while b"\r\n\r\n" not in interim and len(interim) < 64:
                interim += sock.recv(64 - len(interim)) or b"<eof>"
            self.assertEqual(interim, b"HTTP/1.1 100 Continue\r\n\r\n")   # only once the token passed
            sock.sendall(payload)
            resp = http.client.HTTPResponse(sock)
            resp.begin()
            self.assert_executed(bid, (resp.status, json.loads(resp.read())))

    def test_oidc__two_authorization_headers__401(self):
        bid, row, _, body = self.booking()
        token = self.s.oidc_token()
        mark = self.d.mark()
        got = self.post(bid, body, [("Authorization", "Bearer " + token), ("Authorization", "Bearer " + token)])
        self.assert_refused(bid, row, got, "authorization_header", token_secrets("Bearer " + token), mark)

    def test_oidc__other_scheme__401(self):
        self.refused_delivery({"_authorization": "Basic " + self.s.oidc_token()}, "bearer")

    # -- algorithm ---------------------------------------------------------------------------------------------
    def test_oidc__alg_none__401(self):
        # No signature at all: refused as malformed (the third segment is empty) before alg is even read.
        self.refused_delivery({"_alg": "none"}, "malformed")

    def test_oidc__alg_None_capitalized__401(self):
        self.refused_delivery({"_alg": "None"}, "malformed")

    def test_oidc__alg_none_with_a_real_signature__401_alg(self):
        token = forge({"alg": "none", "typ": "JWT", "kid": self.active.kid}, good_claims(),
                      rsa_signer(self.active.key))
        self.refused_raw_token(token, "alg")

    def test_oidc__alg_None_with_a_real_signature__401_alg(self):
        token = forge({"alg": "None", "typ": "JWT", "kid": self.active.kid}, good_claims(),
                      rsa_signer(self.active.key))
        self.refused_raw_token(token, "alg")

    def test_oidc__hs256_keyed_with_the_rsa_public_key_pem__401(self):
        self.refused_delivery({"_alg": "HS256", "_secret": self.active.public_pem()}, "alg")

    def test_oidc__rs512__401(self):
        token = forge({"alg": "RS512", "typ": "JWT", "kid": self.active.kid}, good_claims(),
                      rsa_signer(self.active.key, hashes.SHA512))
        self.refused_raw_token(token, "alg")

    # -- keys --------------------------------------------------------------------------------------------------
    def test_oidc__unknown_kid_signed_by_unpublished_key__401(self):
        self.refused_delivery({"_key": "random", "_kid": keylib.new_kid()}, "kid")

    def test_oidc__attacker_key_embedded_as_jwk_with_its_own_kid__401(self):
        attacker, kid = keylib.generate_rsa_key(), keylib.new_kid()
        self.refused_delivery({"_key": attacker, "_kid": kid,
                               "_header": {"jwk": keylib.jwk_from_public_key(attacker, kid)}}, "kid")

    def test_oidc__attacker_key_embedded_as_jwk_under_the_published_kid__401(self):
        attacker = keylib.generate_rsa_key()
        self.refused_delivery({"_key": attacker, "_header": {"jwk": keylib.jwk_from_public_key(
            attacker, self.active.kid)}}, "signature")

    # -- claims ------------------------------------------------------------------------------------------------
    def test_oidc__wrong_issuer__401(self):
        self.refused_delivery({"iss": "https://accounts.evil.example"}, "iss")

    def test_oidc__missing_issuer__401(self):
        self.refused_delivery({"iss": REMOVE}, "missing_claim")

    def test_oidc__wrong_audience__401(self):
        self.refused_delivery({"aud": "https://someone-else.example"}, "aud")

    def test_oidc__audience_array_with_ours_and_another__401(self):
        self.refused_delivery({"aud": [AUDIENCE, "https://someone-else.example"]}, "aud")

    def test_oidc__wrong_email__401(self):
        self.refused_delivery({"email": "intruder@evil-project.iam.gserviceaccount.com"}, "email")

    def test_oidc__email_not_verified__401(self):
        self.refused_delivery({"email_verified": False}, "email_unverified")

    def test_oidc__expired__401(self):
        now = int(time.time())
        self.refused_delivery({"iat": now - 7200, "exp": now - 3600}, "expired")

    def test_oidc__iat_in_the_future_beyond_skew__401(self):
        now = int(time.time())
        self.refused_delivery({"iat": now + 600, "exp": now + 3600}, "iat_future")

    def test_oidc__lifetime_over_one_day__401(self):
        now = int(time.time())
        self.refused_delivery({"iat": now, "exp": now + 86401}, "lifetime")

    def test_oidc__missing_exp__401(self):
        self.refused_delivery({"exp": REMOVE}, "missing_claim")

    # -- structure ---------------------------------------------------------------------------------------------
    def test_oidc__malformed_base64__401(self):
        header, payload, sig = self.s.oidc_token().split(".")
        self.refused_raw_token(f"{header}.{payload}==.{sig}", "malformed")

    def test_oidc__validly_signed_payload_of_impossible_base64_length__401(self):
        # 4n+1 base64url characters can never decode. Signed with the real key, so the signature check (which
        # runs over the text first) passes and the payload decoding itself must refuse it.
        header = b64json({"alg": "RS256", "typ": "JWT", "kid": self.active.kid})
        payload = b64json(good_claims())
        payload += "A" * ((1 - len(payload)) % 4)
        self.assertEqual(len(payload) % 4, 1)
        signing_input = f"{header}.{payload}"
        sig = keylib.b64url_encode(rsa_signer(self.active.key)(signing_input.encode()))
        self.refused_raw_token(f"{signing_input}.{sig}", "malformed")

    def test_oidc__payload_edited_after_signing__401(self):
        header, payload, sig = self.s.oidc_token().split(".")
        forged = b64json(good_claims(email="intruder@evil-project.iam.gserviceaccount.com"))
        self.assertNotEqual(forged, payload)
        self.refused_raw_token(f"{header}.{forged}.{sig}", "signature")

    def test_oidc__two_segments__401(self):
        header, payload, _ = self.s.oidc_token().split(".")
        self.refused_raw_token(f"{header}.{payload}", "malformed")

    def test_oidc__four_segments__401(self):
        self.refused_raw_token(self.s.oidc_token() + ".AAAA", "malformed")

    def test_oidc__oversize_token__401(self):
        token = keylib.sign_jwt(good_claims(pad="x" * 4200), self.active.key, self.active.kid)
        self.assertGreater(len(token), 4096)
        self.refused_raw_token(token, "too_large")


SECRET = "shared-" + uuid.uuid4().hex


class SharedSecretCallbackAuthTests(CallbackAuthCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Stack(schemas=(SCHEMA,), start_daemon=False).__enter__()
        try:
            cls.d = cls.s.daemon = cls.s.start(env={"FOLLOWUPD_AUTH_MODE": "shared_secret",
                                                    "FOLLOWUPD_AUTH_SHARED_SECRET": SECRET})
        except BaseException:
            cls.s.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            stop_cleanly(cls.s)
        finally:
            cls.s.__exit__(None, None, None)

    def refused(self, headers, check):
        bid, row, _, body = self.booking()
        mark = self.d.mark()
        got = self.post(bid, body, headers)
        self.assert_refused(bid, row, got, check, [SECRET] + [v for _, v in headers], mark)

    def test_secret__correct_secret__executes(self):
        bid, _, _, body = self.booking()
        mark = self.d.mark()
        self.assert_executed(bid, self.post(bid, body, [("X-CloudTasks-Secret", SECRET)]))
        self.assert_secret_not_logged(SECRET, mark)

    def test_secret__wrong_secret__401(self):
        self.refused([("X-CloudTasks-Secret", "wrong-" + uuid.uuid4().hex)], "secret")

    def test_secret__secret_with_one_byte_changed__401(self):
        self.refused([("X-CloudTasks-Secret", SECRET[:-1] + ("0" if SECRET[-1] != "0" else "1"))], "secret")

    def test_secret__wrong_secret_with_a_large_declared_body__401_from_the_headers(self):
        wrong = "wrong-" + uuid.uuid4().hex
        self.assert_refused_from_headers([("X-CloudTasks-Secret", wrong)], "secret", [SECRET, wrong])

    def test_secret__missing_secret__401(self):
        self.refused([], "secret_header")

    def test_secret__two_secret_headers__401(self):
        self.refused([("X-CloudTasks-Secret", SECRET), ("X-CloudTasks-Secret", SECRET)], "secret_header")

    def test_secret__oidc_token_instead_of_secret__401(self):
        self.refused([("Authorization", "Bearer " + self.s.oidc_token())], "secret_header")


if __name__ == "__main__":
    unittest.main()
