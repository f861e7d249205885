#!/usr/bin/env python3
"""Write the seed corpora in fuzz/corpus/<target>/ (small, checked in).

    /usr/bin/python3 fuzz/make_seeds.py

Each seed follows its target's input layout (see the comment at the top of fuzz/fuzz_<target>.c). Seeds are
well-formed inputs plus a few near-misses, so the fuzzer starts from the interesting paths instead of finding
the JSON/HTTP grammar from scratch.  The OIDC seeds that carry a JWKS use a freshly generated RSA key, so
re-running this script rewrites those files with different bytes (harmless).  Existing files are replaced;
regression inputs (fuzz/corpus/*/regress-*) are never touched.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from fakes import keys as keylib  # noqa: E402

CORPUS = os.path.join(HERE, "corpus")
TENANT = "7d3c6f0e-2b1a-4c5d-8e9f-0a1b2c3d4e5f"
BOOKING = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
AUDIENCE = "https://followupd.example.com/callbacks"   # OIDC_TEST_AUDIENCE
INVOKER = "followupd-invoker@demo-project.iam.gserviceaccount.com"   # OIDC_TEST_SA
NOW = 1764000000   # FUZZ_NOW in fuzz_oidc_verify.c


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


def http_seeds():
    t = "fuzz_http_request"
    path = f"/api/deals-pipeline/bookings/{BOOKING}/execute-followup"
    body = compact({"tenantId": TENANT, "bookingId": BOOKING, "schema": "tenant_a", "idempotencyKey": "k"})
    post = (f"POST {path}?x=1 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ok\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}")
    get = "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: abc-123\r\n\r\n"
    write(t, "get", b"\x00\x00" + get.encode())
    write(t, "post_auth", b"\x00\x00" + post.encode())
    write(t, "post_auth_split7", b"\x07\x00" + post.encode())
    write(t, "post_deferred_eof", b"\x00\x03" + post.replace("Host: t\r\n", "Host: t\r\nX-Defer: 1\r\n").encode())
    write(t, "pipelined", b"\x00\x00" + (get + post + "DELETE /items/a%20b/c HTTP/1.1\r\nHost: t\r\n\r\n").encode())
    chunked = (f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ok\r\nTransfer-Encoding: chunked\r\n"
               f"X-Defer: 1\r\n\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n")
    write(t, "chunked", b"\x03\x00" + chunked.encode())
    write(t, "expect_continue", b"\x00\x00" + (f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ok\r\n"
                                               f"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n{{}}").encode())
    write(t, "http10_head", b"\x00\x00" + b"HEAD /healthz HTTP/1.0\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n")
    write(t, "smuggle_cl_te", b"\x00\x00" + (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                                             f"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode())
    write(t, "unauthorized_405", b"\x01\x01" + (f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: bearer no\r\n"
                                                f"Content-Length: 0\r\n\r\nPUT /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                                               .encode())
    write(t, "header_limit", b"\x00\x00" + ("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: " + "a" * 990 +
                                            "\r\n\r\n").encode())


def oidc_seeds():
    t = "fuzz_oidc_verify"
    claims = {"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": INVOKER, "email_verified": True,
              "sub": "104857251813046295731", "iat": NOW - 10, "exp": NOW + 3590}
    header = {"alg": "RS256", "kid": "fuzz-key", "typ": "JWT"}
    write(t, "signed_valid", b"\x01" + compact(header).encode() + b"\x00" + compact(claims).encode())
    write(t, "signed_aud_array", b"\x01" + compact(header).encode() + b"\x00" +
          compact(dict(claims, aud=[AUDIENCE], nbf=NOW - 5, exp=NOW + 0.5)).encode())
    write(t, "signed_dup_claim", b"\x01" + compact(header).encode() + b"\x00" +
          (compact(claims)[:-1] + ',"email":"x@y"}').encode())
    write(t, "signed_kid_sqli", b"\x01" + compact(dict(header, kid="' OR 1=1; DROP TABLE x; --")).encode() + b"\x00"
          + compact(claims).encode())
    key = keylib.generate_rsa_key()
    kid = "seed-kid"
    jwks = compact(keylib.render_jwks([(kid, key.public_key())]))
    token = keylib.sign_jwt(dict(claims), key, kid)
    write(t, "foreign_jwks_token", b"\x00" + token.encode() + b"\x00" + jwks.encode())
    write(t, "authorization", b"\x02" + ("Bearer " + token).encode())
    write(t, "custom_policy", b"\x03" + token.encode())


def notify_seeds():
    t = "fuzz_notify_payload"
    base = {"schema": "tenant_a", "tenantId": TENANT, "bookingId": BOOKING, "op": "INSERT"}
    write(t, "insert", compact(base))
    write(t, "delete_task", compact(dict(base, op="DELETE", taskName="projects/p/locations/l/queues/q/tasks/t1")))
    write(t, "schema_quotes", compact(dict(base, schema="a\"b'c;$$--")))
    write(t, "dup_key", compact(base)[:-1] + ',"op":"UPDATE"}')


def execute_seeds():
    t = "fuzz_execute_body"
    base = {"tenantId": TENANT, "bookingId": BOOKING, "schema": "tenant_a",
            "idempotencyKey": f"followup:{TENANT}:{BOOKING}:2026-11-28T16:00:00.000Z"}
    write(t, "valid", compact(base))
    write(t, "schema_injection", compact(dict(base, schema="x\"; DROP SCHEMA tenant_a CASCADE; --")))
    write(t, "nested", '{"tenantId":' + "[" * 64 + "]" * 64 + "}")
    write(t, "non_utf8", b'{"tenantId":"\xff\xfe","bookingId":"x"}')


def gcp_seeds():
    t = "fuzz_gcp_responses"
    task = compact({"name": "projects/p/locations/l/queues/q/tasks/abc", "scheduleTime": "2026-11-28T16:00:00Z"})
    err = compact({"error": {"code": 409, "message": "Requested entity already exists", "status": "ALREADY_EXISTS"}})
    write(t, "ct_ok", b"\x00\x00\xc8\x00" + task.encode())
    write(t, "ct_409", b"\x00\x01\x99\x00" + err.encode())
    write(t, "ct_transport", b"\x00\x00\x00\x01")
    token = compact({"access_token": "ya29.c.b0Aaek", "expires_in": 3599, "token_type": "Bearer"})
    write(t, "token_ok", b"\x01\x00\xc8\x00" + token.encode())
    write(t, "token_error", b"\x01\x01\x90\x00" + compact({"error": "invalid_grant"}).encode())
    write(t, "maxage", b"\x02\x00\xc8\x00" + b"public, max-age=23171, must-revalidate, no-transform")
    write(t, "maxage_quoted", b"\x02\x00\xc8\x00" + b'no-cache, max-age="60", s-maxage=5')


def config_seeds():
    t = "fuzz_config"
    conf = """[database]
conninfo_file = conninfo
schemas = tenant_a, tenant_b
pool_size = 4
[http]
listen = 127.0.0.1:8080
public_url = https://followupd.example.com
max_body_bytes = 65536
[queue]
backend = cloudtasks
[cloudtasks]
project = p
location = europe-west1
queue = followups
[auth]
mode = oidc
audience = https://followupd.example.com
service_account = invoker@p.iam.gserviceaccount.com
issuers = https://accounts.google.com, accounts.google.com
[voice_agent]
base_url = http://127.0.0.1:9000
token = va-token
[log]
level = debug
"""
    write(t, "full", conf)
    write(t, "env_overrides", conf + "\x00FOLLOWUPD_HTTP_LISTEN=[::1]:0\nFOLLOWUPD_AUTH_MODE=shared_secret\n"
          "FOLLOWUPD_AUTH_SHARED_SECRET_FILE=secret\nFOLLOWUPD_DATABASE_SCHEMAS=a\n")
    write(t, "errors", "key = outside\n[nope]\n[database\nschemas = bad-name;DROP\n[http]\nmax_body_bytes = -1\n"
          "max_body_bytes = 99999999999999999999\n")


def main():
    http_seeds()
    oidc_seeds()
    notify_seeds()
    execute_seeds()
    gcp_seeds()
    config_seeds()


if __name__ == "__main__":
    main()
