#!/usr/bin/python3
"""A strict loopback fake of Google Cloud Tasks v2 (REST), Google's OAuth token endpoint, the GCE metadata
token endpoint and Google's OIDC JWKS, plus a dispatcher that calls task targets the way Cloud Tasks does.

It is strict on purpose: whatever Google would reject (unknown or mistyped fields, bad task ids, schedule times
over 720 h ahead, bad durations, bad base64, oversized tasks, missing or stale access tokens, badly signed
JWT-bearer assertions) gets Google's status code and error shape. It is stricter than Google in a few places a
well-behaved client never notices (snake_case field names, `null` values and unpadded base64 are refused).

Library use (a unittest starts it in a background thread):

    fake = FakeCloudTasks(project="p", location="l", queue="q").start()
    sa = fake.make_service_account_keyfile("/tmp/sa.json")   # token_uri points at fake.token_uri
    ... point the client at fake.base_url (Cloud Tasks endpoint, metadata host) and fake.jwks_uri ...
    fake.wait_for_tasks(1, timeout=5)
    fake.dispatch()            # POST each due task to its httpRequest.url with a Google-like OIDC JWT
    fake.stop()

HTTP surface (all on base_url):
    POST   /v2/projects/P/locations/L/queues/Q/tasks          create (Bearer access token)
    GET    /v2/projects/P/locations/L/queues/Q/tasks/ID       get
    DELETE /v2/projects/P/locations/L/queues/Q/tasks/ID       delete
    POST   /token                                             OAuth2 JWT-bearer grant (service-account key)
    GET    /computeMetadata/v1/instance/service-accounts/default/token   (Metadata-Flavor: Google)
    GET    /oauth2/v3/certs                                   JWKS of the OIDC signing keys
    GET|POST /_control/...                                    introspection and knobs (CLI mode), see
                                                              FakeCloudTasks.routes()

Time: every time-dependent decision (horizon, due, token expiry, tombstones, JWT iat/exp) uses the `now`
callable given to the constructor (default time.time); fakehttp.ManualClock makes it controllable.

CLI: `fake_cloudtasks.py --port 0 [--write-keyfile PATH] [--auto-dispatch SECONDS] ...` prints one JSON line
with its URLs and serves until SIGTERM.
"""
import argparse
import base64
import binascii
import collections
import dataclasses
import hashlib
import http.client
import re
import secrets
import threading
import time
import urllib.parse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

try:  # imported as part of the tests.fakes / fakes package
    from . import keys as keylib
    from .fakehttp import (FakeServer, FaultPlan, HttpError, Response, format_rfc3339, parse_rfc3339,
                           serve_cli, split_epoch, strict_json_loads)
except ImportError:  # run as a script, or imported with tests/fakes on sys.path
    import keys as keylib
    from fakehttp import (FakeServer, FaultPlan, HttpError, Response, format_rfc3339, parse_rfc3339,
                          serve_cli, split_epoch, strict_json_loads)

MAX_TASK_BYTES = 100 * 1024
MAX_SCHEDULE_AHEAD_S = 720 * 3600
MIN_DEADLINE_S = 15
MAX_DEADLINE_S = 1800
DEFAULT_DEADLINE_S = 600
MAX_URL_CHARS = 2083
TASK_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,500}")
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_ISSUER = "https://accounts.google.com"
OIDC_LIFETIME_S = 3600
ASSERTION_MAX_LIFETIME_S = 3600
ASSERTION_SKEW_S = 300
RESPONSE_VIEWS = ("VIEW_UNSPECIFIED", "BASIC", "FULL")
HTTP_METHODS = ("POST",)  # Google also has GET, PUT, ...; followupd only ever POSTs, so others are refused
USER_AGENT = "Google-Cloud-Tasks"
# Task headers Cloud Tasks drops or replaces on dispatch.
RESERVED_HEADER_PREFIXES = ("x-cloudtasks-", "x-google-", "x-appengine-")
RESERVED_HEADERS = {"host", "content-length", "user-agent", "authorization", "connection", "transfer-encoding",
                    "accept-encoding"}

STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                409: "ALREADY_EXISTS", 412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
                500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
MSG_NOT_FOUND = "Requested entity was not found."
MSG_EXISTS = "Requested entity already exists"
MSG_TOO_RECENT = ("The task cannot be created because a task with this name existed too recently. For more "
                  "information about task de-duplication see https://cloud.google.com/tasks/docs/reference/rest/"
                  "v2/projects.locations.queues.tasks/create#body.request_body.FIELDS.task.")
MSG_NO_CREDENTIALS = ("Request is missing required authentication credential. Expected OAuth 2 access token, "
                      "login cookie or other valid authentication credential.")
MSG_BAD_CREDENTIALS = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                       "cookie or other valid authentication credential.")

# Accepted JSON shape of a Task: field -> str | nested schema | MAP (object of strings).
MAP = "map<string,string>"
TASK_SCHEMA = {
    "name": str,
    "scheduleTime": str,
    "dispatchDeadline": str,
    "httpRequest": {
        "url": str,
        "httpMethod": str,
        "headers": MAP,
        "body": str,
        "oidcToken": {"serviceAccountEmail": str, "audience": str},
        "oauthToken": {"serviceAccountEmail": str, "scope": str},
    },
}
CREATE_SCHEMA = {"task": TASK_SCHEMA, "responseView": str}

REMOVE = object()  # token_overrides value: drop this claim

FAULT_SCOPES = {
    "create": {"create"}, "delete": {"delete"}, "get": {"get"}, "token": {"token", "metadata"},
    "metadata": {"metadata"}, "jwks": {"jwks"},
    "any": {"create", "delete", "get", "token", "metadata"},
}


# ---------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------
def google_error(code, message, headers=None):
    """Google's JSON error shape for the Cloud Tasks API."""
    status = STATUS_NAMES.get(code, "UNKNOWN")
    return Response.json(code, {"error": {"code": code, "message": message, "status": status}}, headers)


class GoogleError(HttpError):
    """Answer a Cloud Tasks API call with Google's error shape."""

    def __init__(self, code, message, headers=None):
        super().__init__(google_error(code, message, headers))
        self.message = message


class OAuthError(HttpError):
    """Answer the token endpoint the way Google's OAuth server does: {"error", "error_description"}."""

    def __init__(self, error, description, code=400):
        super().__init__(Response.json(code, {"error": error, "error_description": description}))
        self.error = error
        self.description = description


def invalid(message):
    return GoogleError(400, message)


# ---------------------------------------------------------------------------------------------------------
# Task parsing and validation
# ---------------------------------------------------------------------------------------------------------
def _snake(name):
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def check_shape(obj, schema, where):
    """Refuse unknown fields, nulls and wrong JSON types, with Google's wording."""
    if not isinstance(obj, dict):
        raise invalid(f"Invalid value at '{where}': expected a JSON object, got {type(obj).__name__}")
    for key, value in obj.items():
        if key not in schema:
            at = f" at '{where}'" if where else ""
            raise invalid(f"Invalid JSON payload received. Unknown name \"{key}\"{at}: Cannot find field.")
        field = f"{where}.{_snake(key)}" if where else _snake(key)
        expected = schema[key]
        if value is None:
            raise invalid(f"Invalid value at '{field}': null is not accepted by this fake")
        if isinstance(expected, dict):
            check_shape(value, expected, field)
        elif expected == MAP:
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise invalid(f"Invalid value at '{field}' (type.googleapis.com/map<string,string>), "
                              f"{value!r}")
        elif not isinstance(value, expected):
            raise invalid(f"Invalid value at '{field}' (TYPE_STRING), {value!r}")


def parse_duration(text):
    """Seconds of a protobuf Duration string such as "600s" or "15.5s"."""
    match = re.fullmatch(r"(-?)(\d+)(?:\.(\d{1,9}))?s", text)
    if not match:
        raise invalid(f"Invalid value at 'task.dispatch_deadline' (type.googleapis.com/google.protobuf.Duration),"
                      f" \"{text}\"")
    seconds = int(match.group(2)) + int((match.group(3) or "0").ljust(9, "0")) / 1e9
    return -seconds if match.group(1) else seconds


def format_duration(seconds):
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:.9f}".rstrip("0") + "s"


@dataclasses.dataclass
class TaskRecord:
    """A created task and what happened to it since."""
    name: str
    task_id: str
    schedule_s: int
    schedule_nanos: int
    create_time: float
    dispatch_deadline_s: float
    url: str
    http_method: str
    headers: dict
    body: bytes
    body_b64: str
    oidc_token: dict
    oauth_token: dict
    raw: dict
    attempts: int = 0
    responses: int = 0
    last_status: int = None
    first_attempt_time: float = None
    last_attempt_time: float = None
    next_attempt_at: float = 0.0

    @property
    def schedule_epoch(self):
        return self.schedule_s + self.schedule_nanos / 1e9

    @property
    def schedule_time(self):
        return format_rfc3339(self.schedule_s, self.schedule_nanos)

    def body_json(self):
        try:
            return strict_json_loads(self.body)
        except ValueError:
            return None

    def to_task_json(self, view):
        """The Task resource as Google returns it (zero-valued fields omitted, as proto3 JSON does)."""
        out = {"name": self.name, "scheduleTime": self.schedule_time,
               "createTime": format_rfc3339(*split_epoch(self.create_time)),
               "dispatchDeadline": format_duration(self.dispatch_deadline_s)}
        if self.attempts:
            out["dispatchCount"] = self.attempts
        if self.responses:
            out["responseCount"] = self.responses
        request = {"url": self.url, "httpMethod": self.http_method}
        if self.headers:
            request["headers"] = dict(self.headers)
        if view == "FULL" and self.body:
            request["body"] = self.body_b64
        if self.oidc_token:
            request["oidcToken"] = dict(self.oidc_token)
        if self.oauth_token:
            request["oauthToken"] = dict(self.oauth_token)
        out["httpRequest"] = request
        out["view"] = "FULL" if view == "FULL" else "BASIC"
        return out

    def describe(self):
        """Introspection view (snake_case) with the decoded body."""
        return {"name": self.name, "task_id": self.task_id, "schedule_time": self.schedule_time,
                "schedule_epoch": self.schedule_epoch, "create_time": self.create_time,
                "dispatch_deadline_s": self.dispatch_deadline_s, "url": self.url, "http_method": self.http_method,
                "headers": dict(self.headers), "body": self.body.decode("utf-8", "replace"),
                "body_json": self.body_json(), "oidc_token": dict(self.oidc_token or {}) or None,
                "oauth_token": dict(self.oauth_token or {}) or None, "attempts": self.attempts,
                "responses": self.responses, "last_status": self.last_status, "raw": self.raw}


class TaskParser:
    """Turns a create request body into a TaskRecord, or raises GoogleError(400)."""

    def __init__(self, queue_path, now):
        self.queue_path = queue_path
        self.now = now

    def parse(self, body):
        if len(body) > MAX_TASK_BYTES:
            raise invalid(f"Task size too large: {len(body)} bytes; the maximum task size is "
                          f"{MAX_TASK_BYTES} bytes.")
        try:
            request = strict_json_loads(body)
        except ValueError as exc:
            raise invalid(f"Invalid JSON payload received. {exc}") from exc
        check_shape(request, CREATE_SCHEMA, "")
        view = request.get("responseView", "BASIC")
        if view not in RESPONSE_VIEWS:
            raise invalid(f"Invalid value at 'response_view' (type.googleapis.com/google.cloud.tasks.v2.Task.View),"
                          f" \"{view}\"")
        if "task" not in request:
            raise invalid("task is required")
        return self._task(request["task"]), view

    def _task(self, task):
        now = self.now()
        name, task_id = self._name(task.get("name"))
        schedule_s, schedule_nanos = self._schedule(task.get("scheduleTime"), now)
        deadline = self._deadline(task.get("dispatchDeadline"))
        if "httpRequest" not in task:
            raise invalid("Task.http_request is required for queues with HTTP targets.")
        req = task["httpRequest"]
        url = self._url(req.get("url"))
        method = req.get("httpMethod", "POST")
        if method not in HTTP_METHODS:
            raise invalid(f"Invalid value at 'task.http_request.http_method' "
                          f"(type.googleapis.com/google.cloud.tasks.v2.HttpMethod), \"{method}\"")
        body_b64 = req.get("body", "")
        body = self._body(body_b64)
        oidc, oauth = req.get("oidcToken"), req.get("oauthToken")
        if oidc is not None and oauth is not None:
            raise invalid("Only one of oidc_token and oauth_token may be set.")
        for token, what in ((oidc, "oidc_token"), (oauth, "oauth_token")):
            if token is not None and not token.get("serviceAccountEmail"):
                raise invalid(f"task.http_request.{what}.service_account_email is required.")
        return TaskRecord(name=name, task_id=task_id, schedule_s=schedule_s, schedule_nanos=schedule_nanos,
                          create_time=now, dispatch_deadline_s=deadline, url=url, http_method=method,
                          headers=dict(req.get("headers", {})), body=body, body_b64=body_b64,
                          oidc_token=oidc, oauth_token=oauth, raw=task)

    def _name(self, name):
        if name is None:
            task_id = str(int.from_bytes(secrets.token_bytes(8), "big"))
            return f"{self.queue_path}/tasks/{task_id}", task_id
        prefix = self.queue_path + "/tasks/"
        match = re.fullmatch(r"projects/[^/]+/locations/[^/]+/queues/[^/]+/tasks/([^/]*)", name)
        if not match or not TASK_ID_RE.fullmatch(match.group(1)):
            raise invalid('Task name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/'
                          '<QUEUE_ID>/tasks/<TASK_ID>" and TASK_ID may contain only letters ([A-Za-z]), numbers '
                          '([0-9]), hyphens (-), or underscores (_), with at most 500 characters.')
        if not name.startswith(prefix):
            raise invalid(f"The task name {name} does not belong to the queue {self.queue_path}.")
        return name, match.group(1)

    def _schedule(self, text, now):
        if text is None:
            return split_epoch(now)
        try:
            seconds, nanos = parse_rfc3339(text)
        except ValueError as exc:
            raise invalid(f"Invalid value at 'task.schedule_time' (type.googleapis.com/google.protobuf.Timestamp),"
                          f" Field 'scheduleTime', Invalid time format: {exc}") from exc
        epoch = seconds + nanos / 1e9
        if epoch > now + MAX_SCHEDULE_AHEAD_S:
            raise invalid("Schedule time must be no more than 720h in the future")
        if epoch < now:
            return split_epoch(now)  # "in the past or missing: dispatched now"
        return seconds, nanos

    @staticmethod
    def _deadline(text):
        if text is None:
            return DEFAULT_DEADLINE_S
        seconds = parse_duration(text)
        if not MIN_DEADLINE_S <= seconds <= MAX_DEADLINE_S:
            raise invalid(f"Invalid dispatch_deadline {text}: it must be between {MIN_DEADLINE_S}s and "
                          f"{MAX_DEADLINE_S}s for HTTP targets.")
        return seconds

    @staticmethod
    def _url(url):
        if not url:
            raise invalid("task.http_request.url is required.")
        if not (url.startswith("http://") or url.startswith("https://")):
            raise invalid(f"HttpRequest.url must start with 'http://' or 'https://': {url}")
        if len(url) > MAX_URL_CHARS or not urllib.parse.urlsplit(url).hostname:
            raise invalid(f"HttpRequest.url is not a valid URL: {url}")
        return url

    @staticmethod
    def _body(text):
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise invalid(f"Invalid value at 'task.http_request.body' (TYPE_BYTES), Base64 decoding failed for "
                          f"\"{text[:40]}\"") from exc


# ---------------------------------------------------------------------------------------------------------
# Identity: access tokens, service-account assertions, OIDC signing keys
# ---------------------------------------------------------------------------------------------------------
class AccessTokens:
    """Opaque bearer tokens the fake issued, with their expiry (per the injected clock)."""

    def __init__(self, now, lifetime_s):
        self.now = now
        self.lifetime_s = lifetime_s
        self._tokens = {}
        self.issued = []

    def issue(self, source, email):
        token = "ya29.fake-" + secrets.token_urlsafe(32)
        issued_at = self.now()
        self._tokens[token] = issued_at + self.lifetime_s
        self.issued.append({"access_token": token, "source": source, "email": email, "time": issued_at,
                            "expires_at": issued_at + self.lifetime_s})
        return {"access_token": token, "expires_in": int(self.lifetime_s), "token_type": "Bearer"}

    def check(self, authorization):
        """Raise GoogleError(401) unless `authorization` is `Bearer <live token we issued>`."""
        challenge = [("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/"')]
        if not authorization:
            raise GoogleError(401, MSG_NO_CREDENTIALS, challenge)
        scheme, _, token = authorization.partition(" ")
        expires_at = self._tokens.get(token.strip())
        if scheme.lower() != "bearer" or expires_at is None or self.now() >= expires_at:
            raise GoogleError(401, MSG_BAD_CREDENTIALS, challenge)

    def expire_all(self):
        for token in self._tokens:
            self._tokens[token] = float("-inf")


class ServiceAccounts:
    """Registered service-account public keys and the JWT-bearer grant check (RFC 7523, Google's rules)."""

    def __init__(self, now):
        self.now = now
        self._keys = collections.defaultdict(dict)  # email -> {key_id: public key}

    def register(self, keyfile_path=None, email=None, public_key=None, key_id=None):
        if keyfile_path:
            account = keylib.load_service_account_keyfile(keyfile_path)
            email, public_key, key_id = account.client_email, account.public_key, account.private_key_id
        if not email or public_key is None:
            raise ValueError("register_service_account needs keyfile_path, or email and public_key")
        if hasattr(public_key, "public_key"):
            public_key = public_key.public_key()
        self._keys[email][key_id or ""] = public_key
        return email

    def verify(self, assertion, audience):
        """The email the assertion authenticates; raises OAuthError otherwise."""
        try:
            header, claims, signing_input, signature = keylib.decode_jwt_unverified(assertion)
        except keylib.JwtError as exc:
            raise OAuthError("invalid_grant", f"Invalid JWT: {exc}") from exc
        if header.get("alg") != "RS256":
            raise OAuthError("invalid_grant", "Invalid JWT Signature.")
        email = claims.get("iss")
        keys = self._keys.get(email) if isinstance(email, str) else None
        if not keys:
            raise OAuthError("invalid_grant", "Invalid grant: account not found")
        kid = header.get("kid")
        candidates = [keys[kid]] if kid in keys else ([] if kid else list(keys.values()))
        if not any(self._signature_ok(pub, signing_input, signature) for pub in candidates):
            raise OAuthError("invalid_grant", "Invalid JWT Signature.")
        self._check_claims(claims, audience)
        return email

    @staticmethod
    def _signature_ok(public_key, signing_input, signature):
        try:
            public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
            return True
        except InvalidSignature:
            return False

    def _check_claims(self, claims, audience):
        if claims.get("aud") != audience:
            raise OAuthError("invalid_grant", "Invalid JWT: Failed audience check. The right audience is "
                             + audience)
        scopes = claims.get("scope")
        if not isinstance(scopes, str) or keylib.CLOUD_PLATFORM_SCOPE not in scopes.split(" "):
            raise OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        iat, exp = claims.get("iat"), claims.get("exp")
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (iat, exp))
        now = self.now()
        if (not numeric or exp <= iat or exp - iat > ASSERTION_MAX_LIFETIME_S or iat > now + ASSERTION_SKEW_S
                or exp <= now - ASSERTION_SKEW_S):
            raise OAuthError("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in "
                             "a reasonable timeframe. Check your iat and exp values in the JWT claim.")


class OidcKeys:
    """The keys Google signs task OIDC tokens with: add/remove at runtime (rotation), publish or hide in JWKS."""

    def __init__(self):
        self._keys = {}  # kid -> SigningKey, in insertion order
        self._published = set()
        self.active_kid = None

    def add(self, key=None, kid=None, publish=True, activate=True):
        signing = keylib.SigningKey(kid=kid, key=key)
        self._keys[signing.kid] = signing
        if publish:
            self._published.add(signing.kid)
        if activate or self.active_kid is None:
            self.active_kid = signing.kid
        return signing.kid

    def remove(self, kid):
        """Forget a key; if it was the active one the newest remaining key signs (keep at least one)."""
        self._keys.pop(kid)
        self._published.discard(kid)
        if self.active_kid == kid:
            self.active_kid = next(reversed(self._keys), None)

    def set_published(self, kid, published):
        if kid not in self._keys:
            raise KeyError(kid)
        (self._published.add if published else self._published.discard)(kid)

    def activate(self, kid):
        if kid not in self._keys:
            raise KeyError(kid)
        self.active_kid = kid

    def get(self, kid):
        return self._keys[kid]

    def kids(self):
        return list(self._keys)

    def published(self):
        return [kid for kid in self._keys if kid in self._published]

    def jwks(self):
        return keylib.render_jwks([self._keys[kid] for kid in self.published()])


def numeric_account_id(email):
    """A stable 21-digit id standing in for a service account's unique id (Google's `sub`/`azp`)."""
    return str(int(hashlib.sha256(email.encode("utf-8")).hexdigest(), 16))[:21]


# ---------------------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------------------
def http_post(url, headers, body, timeout):
    """(status or None, body text, error text or None) of one POST; None status means no answer."""
    parts = urllib.parse.urlsplit(url)
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(parts.hostname, parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace"), None
    except (OSError, http.client.HTTPException) as exc:
        return None, "", f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def eta_header(task):
    if task.schedule_nanos == 0:
        return str(task.schedule_s)
    return f"{task.schedule_s}.{task.schedule_nanos:09d}".rstrip("0")


def run_concurrently(count, fn):
    """Call fn() from `count` threads released together by a barrier; results in thread order."""
    if count == 1:
        return [fn()]
    barrier = threading.Barrier(count)
    results = [None] * count

    def worker(index):
        barrier.wait()
        results[index] = fn()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# ---------------------------------------------------------------------------------------------------------
# The fake
# ---------------------------------------------------------------------------------------------------------
class FakeCloudTasks(FakeServer):
    """Cloud Tasks + token endpoints + JWKS + dispatcher on one loopback port. See the module docstring."""

    def __init__(self, project="followupd-test", location="europe-west1", queue="followups", port=0,
                 now=time.time, tombstone_s=3600, jwks_max_age=3600, token_lifetime_s=3600, require_auth=True,
                 dispatch_timeout_s=30.0, max_attempts=None, retry_min_backoff_s=0.1, retry_max_backoff_s=10.0,
                 metadata_email=None, oidc_key=None, verbose=False):
        self.project, self.location, self.queue = project, location, queue
        self.queue_path = f"projects/{project}/locations/{location}/queues/{queue}"
        self.now = now
        self.tombstone_s = tombstone_s
        self.jwks_max_age = jwks_max_age
        self.require_auth = require_auth
        self.dispatch_timeout_s = dispatch_timeout_s
        self.max_attempts = max_attempts
        self.retry_min_backoff_s = retry_min_backoff_s
        self.retry_max_backoff_s = retry_max_backoff_s
        self.metadata_email = metadata_email or keylib.service_account_email("followupd-runtime", project)
        self.faults = FaultPlan(FAULT_SCOPES)
        self.oidc_keys = OidcKeys()
        self.oidc_keys.add(key=oidc_key)  # pass a pre-made RSA key to skip key generation in fast tests
        self._cond = threading.Condition(threading.RLock())
        self._tokens = AccessTokens(now, token_lifetime_s)
        self._accounts = ServiceAccounts(now)
        self._parser = TaskParser(self.queue_path, now)
        self._tasks = {}
        self._tombstones = {}  # name -> {"reason", "time", "task"}
        self._create_calls = collections.Counter()
        self._creates_ok = collections.Counter()
        self._deletes = []
        self._token_errors = []
        self._dispatch_log = []
        self._jwks_fetches = 0
        self._jwks_requests = []  # every JWKS request: {"time" (monotonic), "status"}
        self._unavailable = False
        self._jwks_unavailable = False
        self._auto_stop = None
        self._auto_thread = None
        super().__init__(port=port, verbose=verbose)

    # -- URLs ----------------------------------------------------------------------------------------------
    @property
    def endpoint(self):
        """Cloud Tasks API root (what replaces https://cloudtasks.googleapis.com)."""
        return self.base_url

    @property
    def token_uri(self):
        return self.base_url + "/token"

    @property
    def metadata_url(self):
        """Metadata server root (what replaces http://metadata.google.internal)."""
        return self.base_url

    @property
    def metadata_token_url(self):
        return self.base_url + "/computeMetadata/v1/instance/service-accounts/default/token"

    @property
    def jwks_uri(self):
        return self.base_url + "/oauth2/v3/certs"

    @property
    def tasks_url(self):
        return f"{self.base_url}/v2/{self.queue_path}/tasks"

    def task_name(self, task_id):
        return f"{self.queue_path}/tasks/{task_id}"

    def info(self):
        """The JSON line the CLI prints."""
        return {"base_url": self.base_url, "cloudtasks_endpoint": self.endpoint, "token_uri": self.token_uri,
                "metadata_url": self.metadata_url, "metadata_token_url": self.metadata_token_url,
                "jwks_uri": self.jwks_uri, "queue": self.queue_path, "tasks_url": self.tasks_url,
                "control_url": self.base_url + "/_control", "oidc_issuer": GOOGLE_ISSUER}

    # -- lifecycle -----------------------------------------------------------------------------------------
    def stop(self):
        self.stop_auto_dispatch()
        super().stop()

    # -- routes --------------------------------------------------------------------------------------------
    def routes(self):
        queue = r"/v2/projects/([^/]+)/locations/([^/]+)/queues/([^/]+)"
        return [
            ("POST", queue + r"/tasks", self._http_create),
            ("GET", queue + r"/tasks/([^/]*)", self._http_get),
            ("DELETE", queue + r"/tasks/([^/]*)", self._http_delete),
            ("POST", r"/token", self._http_token),
            ("GET", r"/computeMetadata/v1/instance/service-accounts/default/token", self._http_metadata_token),
            ("GET", r"/oauth2/v3/certs", self._http_jwks),
            ("GET", r"/_control/state", self._control_state),
            ("GET", r"/_control/wait", self._control_wait),
            ("POST", r"/_control/dispatch", self._control_dispatch),
            ("POST", r"/_control/dispatch_all_due", self._control_dispatch_all_due),
            ("POST", r"/_control/fail_next", self._control_fail_next),
            ("POST", r"/_control/delay_next", self._control_delay_next),
            ("POST", r"/_control/unavailable", self._control_unavailable),
            ("POST", r"/_control/jwks_unavailable", self._control_jwks_unavailable),
            ("POST", r"/_control/expire_tokens", self._control_expire_tokens),
            ("POST", r"/_control/issue_token", self._control_issue_token),
            ("POST", r"/_control/service_accounts", self._control_register_service_account),
            ("POST", r"/_control/oidc_keys", self._control_add_oidc_key),
            ("DELETE", r"/_control/oidc_keys/([^/]+)", self._control_remove_oidc_key),
            ("POST", r"/_control/auto_dispatch", self._control_auto_dispatch),
        ]

    def not_found(self, request):
        return google_error(404, MSG_NOT_FOUND)

    # -- Python API: identity --------------------------------------------------------------------------------
    def register_service_account(self, keyfile_path=None, email=None, public_key=None, key_id=None):
        """Accept JWT-bearer assertions signed by this key; returns the account email."""
        with self._cond:
            return self._accounts.register(keyfile_path, email, public_key, key_id)

    def make_service_account_keyfile(self, path, project_id=None, client_email=None):
        """Write a key file whose token_uri is this fake's, register it, return keys.ServiceAccountKey."""
        account = keylib.make_service_account_keyfile(path, self.token_uri, project_id or self.project,
                                                      client_email)
        self.register_service_account(email=account.client_email, public_key=account.public_key,
                                      key_id=account.private_key_id)
        return account

    def issue_token(self, email="test@example.com"):
        """A valid access token for calling the API directly from a test."""
        with self._cond:
            token = self._tokens.issue("direct", email)
            self._cond.notify_all()
            return token["access_token"]

    def expire_tokens(self):
        """Every access token issued so far stops working (the next API call gets 401)."""
        with self._cond:
            self._tokens.expire_all()

    def add_oidc_key(self, publish=True, activate=True, key=None, kid=None):
        """A new OIDC signing key (rotation); returns its kid."""
        with self._cond:
            return self.oidc_keys.add(key=key, kid=kid, publish=publish, activate=activate)

    def remove_oidc_key(self, kid):
        with self._cond:
            self.oidc_keys.remove(kid)

    def publish_oidc_key(self, kid, published=True):
        with self._cond:
            self.oidc_keys.set_published(kid, published)

    def activate_oidc_key(self, kid):
        with self._cond:
            self.oidc_keys.activate(kid)

    def jwks(self):
        with self._cond:
            return self.oidc_keys.jwks()

    # -- Python API: failure injection -----------------------------------------------------------------------
    def fail_next(self, n, status=503, method="any", message=None, retry_after=None):
        """The next n matching requests fail with `status` (method: create, delete, get, token (token endpoint
        and metadata), metadata, jwks, any = create/delete/get/token/metadata)."""
        self.faults.fail_next(n, status, method, message, retry_after)

    def delay_next(self, n, seconds, method="any", when="after"):
        """Delay the next n matching replies. when='after': do the work, then wait before answering (a client
        that times out still created the task); when='before': wait, then do the work."""
        self.faults.delay_next(n, seconds, method, when)

    def set_unavailable(self, unavailable=True):
        """While set, every Cloud Tasks API call (create/get/delete) answers 503 UNAVAILABLE."""
        with self._cond:
            self._unavailable = bool(unavailable)

    def set_jwks_unavailable(self, unavailable=True):
        """While set, the JWKS endpoint answers 503 (an outage of Google's certs endpoint)."""
        with self._cond:
            self._jwks_unavailable = bool(unavailable)

    # -- Python API: introspection ---------------------------------------------------------------------------
    @property
    def tasks(self):
        """name -> TaskRecord.describe() of every live task."""
        with self._cond:
            return {name: task.describe() for name, task in self._tasks.items()}

    def task(self, name_or_id):
        return self.tasks.get(self._full_name(name_or_id))

    @property
    def tombstones(self):
        """name -> {"reason": "ran"|"deleted"|"exhausted", "time"} for names still blocked for re-creation."""
        with self._cond:
            self._expire_tombstones()
            return {name: {"reason": t["reason"], "time": t["time"]} for name, t in self._tombstones.items()}

    @property
    def create_calls_by_name(self):
        """name -> {"calls": create requests seen, "created": successful creates}; "" = no/unparsable name."""
        with self._cond:
            return {name: {"calls": count, "created": self._creates_ok.get(name, 0)}
                    for name, count in self._create_calls.items()}

    @property
    def create_call_count(self):
        with self._cond:
            return sum(self._create_calls.values())

    @property
    def created_count(self):
        with self._cond:
            return sum(self._creates_ok.values())

    @property
    def deletes(self):
        """[{"name", "status", "time"}] for every delete request (including faulted and 404 ones)."""
        with self._cond:
            return [dict(d) for d in self._deletes]

    @property
    def tokens_issued(self):
        """[{"access_token", "source": token|metadata|direct, "email", "time", "expires_at"}]."""
        with self._cond:
            return [dict(t) for t in self._tokens.issued]

    @property
    def token_errors(self):
        """[{"endpoint", "status", "error", "description", "time"}] for refused token requests."""
        with self._cond:
            return [dict(t) for t in self._token_errors]

    @property
    def dispatch_log(self):
        """[{"name", "task_id", "attempt", "status", "body", "error", "time", "authorization", "headers"}]."""
        with self._cond:
            return [dict(d) for d in self._dispatch_log]

    @property
    def jwks_fetches(self):
        """JWKS requests answered 200."""
        with self._cond:
            return self._jwks_fetches

    @property
    def jwks_requests(self):
        """Every JWKS request, failed ones too: [{"time" (time.monotonic()), "status"}]."""
        with self._cond:
            return [dict(r) for r in self._jwks_requests]

    def snapshot(self):
        """Everything above in one JSON-friendly dict (what GET /_control/state returns)."""
        with self._cond:
            return {"tasks": self.tasks, "tombstones": self.tombstones,
                    "create_calls_by_name": self.create_calls_by_name, "deletes": self.deletes,
                    "tokens_issued": self.tokens_issued, "token_errors": self.token_errors,
                    "dispatch_log": self.dispatch_log, "jwks_fetches": self._jwks_fetches,
                    "jwks_requests": self.jwks_requests,
                    "oidc_keys": {"all": self.oidc_keys.kids(), "published": self.oidc_keys.published(),
                                  "active": self.oidc_keys.active_kid},
                    "internal_errors": list(self.internal_errors)}

    def wait_until(self, predicate, timeout):
        """Block until predicate() is true (re-checked on every state change); returns its final value."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_for_tasks(self, n, timeout):
        """Until at least n live tasks exist."""
        return self.wait_until(lambda: len(self._tasks) >= n, timeout)

    def wait_for_creates(self, n, timeout):
        """Until at least n creates succeeded in total."""
        return self.wait_until(lambda: sum(self._creates_ok.values()) >= n, timeout)

    def wait_for_create_calls(self, n, timeout):
        return self.wait_until(lambda: sum(self._create_calls.values()) >= n, timeout)

    def wait_for_deletes(self, n, timeout):
        return self.wait_until(lambda: len(self._deletes) >= n, timeout)

    def wait_for_dispatches(self, n, timeout):
        return self.wait_until(lambda: len(self._dispatch_log) >= n, timeout)

    WAITABLE = {"tasks": lambda s: len(s._tasks), "creates": lambda s: sum(s._creates_ok.values()),
                "create_calls": lambda s: sum(s._create_calls.values()), "deletes": lambda s: len(s._deletes),
                "dispatches": lambda s: len(s._dispatch_log), "tokens": lambda s: len(s._tokens.issued),
                "jwks_fetches": lambda s: s._jwks_fetches, "jwks_requests": lambda s: len(s._jwks_requests)}

    # -- Python API: dispatch ------------------------------------------------------------------------------
    def dispatch(self, name=None, due_only=True, times=1, concurrent=1, token_overrides=None, allow_done=False):
        """Deliver tasks to their targets like Cloud Tasks; returns [(status or None, body text)].

        name=None: every live task (only those whose scheduleTime has come if due_only), in schedule order.
        name given (full name or short id): that task regardless of its scheduleTime (like RunTask); with
        allow_done it may also be a task that already ran or was deleted (to simulate a late duplicate).
        Each task gets `times` rounds of `concurrent` identical deliveries (same headers and JWT, released
        together). A 2xx marks the task done (tombstoned); anything else leaves it for a retry.
        token_overrides: see build_authorization().
        """
        results = []
        for task in self._select(name, due_only, allow_done):
            for _ in range(times):
                results.extend(self._deliver_round(task, concurrent, token_overrides))
        return results

    def dispatch_all_due(self, token_overrides=None):
        return self.dispatch(None, due_only=True, token_overrides=token_overrides)

    def start_auto_dispatch(self, interval_s=0.2):
        """Background dispatcher: every interval, deliver due tasks, retrying failures with backoff."""
        self.stop_auto_dispatch()
        self._auto_stop = threading.Event()
        self._auto_thread = threading.Thread(target=self._auto_loop, args=(self._auto_stop, interval_s),
                                             name="FakeCloudTasks-dispatch", daemon=True)
        self._auto_thread.start()

    def stop_auto_dispatch(self):
        if self._auto_thread is not None:
            self._auto_stop.set()
            self._auto_thread.join(timeout=60)
            self._auto_thread = None

    def build_authorization(self, task, overrides=None):
        """Authorization header value for a delivery of `task` (a TaskRecord), or None for no header.

        Default: `Bearer <RS256 JWT>` signed by the active OIDC key with Google's claims. overrides (dict):
          claim -> value to set/replace (value REMOVE drops it; `_remove`: [claims] does the same from JSON);
          `_alg` ('RS256', 'HS256', 'none'), `_secret` (HS256 key), `_kid` (None omits it), `_header` (dict
          merged into the JWT header), `_key` (an RSA private key, or "random" for an unpublished fresh key),
          `_raw` (send this token string as is), `_authorization` (the whole header value; None = no header).
        """
        overrides = dict(overrides or {})
        if "_authorization" in overrides:
            return overrides["_authorization"]
        if "_raw" in overrides:
            return "Bearer " + overrides["_raw"]
        if task.oauth_token and not overrides:
            return "Bearer " + self.issue_token(task.oauth_token["serviceAccountEmail"])
        if not task.oidc_token and not overrides:
            return None
        special = {k: overrides.pop(k) for k in list(overrides) if k.startswith("_")}
        unknown = set(special) - {"_alg", "_secret", "_kid", "_header", "_key", "_remove"}
        if unknown:
            raise ValueError(f"unknown token override(s) {sorted(unknown)}")
        claims = self._oidc_claims(task)
        for claim in special.get("_remove", []):
            claims.pop(claim, None)
        for claim, value in overrides.items():
            if value is REMOVE:
                claims.pop(claim, None)
            else:
                claims[claim] = value
        with self._cond:
            active = self.oidc_keys.get(self.oidc_keys.active_kid)
        key = special.get("_key", active.key)
        if key == "random":
            key = keylib.generate_rsa_key()
        kid = special.get("_kid", active.kid)
        token = keylib.sign_jwt(claims, key, kid, alg=special.get("_alg", "RS256"),
                                header_extra=special.get("_header"), secret=special.get("_secret"))
        return "Bearer " + token

    # -- HTTP: Cloud Tasks API --------------------------------------------------------------------------------
    def _http_create(self, request):
        self._count_create_call(request.body)
        delay_after = self._api_preflight("create", request)
        self._check_queue(request.match.groups()[:3])
        if request.media_type() != "application/json":
            raise invalid("Invalid JSON payload received. Content-Type must be application/json "
                          "(this fake refuses anything else).")
        task, view = self._parser.parse(request.body)
        with self._cond:
            self._check_not_duplicate(task.name)
            self._tasks[task.name] = task
            self._creates_ok[task.name] += 1
            self._cond.notify_all()
        return self._delayed(Response.json(200, task.to_task_json(view)), delay_after)

    def _http_get(self, request):
        delay_after = self._api_preflight("get", request)
        name = self._task_path_name(request)
        view = (request.query.get("responseView") or ["BASIC"])[-1]
        if view not in RESPONSE_VIEWS:
            raise invalid(f"Invalid value for responseView: {view}")
        with self._cond:
            task = self._tasks.get(name)
            if task is None:
                raise GoogleError(404, MSG_NOT_FOUND)
            body = task.to_task_json(view)
        return self._delayed(Response.json(200, body), delay_after)

    def _http_delete(self, request):
        name = "/".join(request.path.split("/")[2:])
        try:
            delay_after = self._api_preflight("delete", request)
            name = self._task_path_name(request)
            with self._cond:
                task = self._tasks.pop(name, None)
                if task is None:
                    raise GoogleError(404, MSG_NOT_FOUND)
                self._tombstone(task, "deleted")
        except HttpError as exc:
            self._log_delete(name, exc.response.status)
            raise
        self._log_delete(name, 200)
        return self._delayed(Response.json(200, {}), delay_after)

    def _api_preflight(self, op, request):
        """Unavailability, injected faults, injected delays and the bearer check; returns delay-after seconds."""
        with self._cond:
            unavailable = self._unavailable
        if unavailable:
            raise GoogleError(503, "The service is currently unavailable.")
        self._raise_injected_failure(op, google=True)
        delay_after = self._injected_delay(op)
        if self.require_auth:
            with self._cond:
                self._tokens.check(request.header("Authorization"))
        return delay_after

    def _raise_injected_failure(self, op, google):
        rule = self.faults.take_failure(op)
        if rule is None:
            return
        headers = [("Retry-After", str(rule["retry_after"]))] if rule["retry_after"] is not None else []
        message = rule["message"] or f"injected failure ({op})"
        if google:
            raise GoogleError(rule["status"], message, headers)
        raise HttpError(Response.json(rule["status"], {"error": "internal_failure", "error_description": message},
                                      headers))

    def _injected_delay(self, op):
        rule = self.faults.take_delay(op)
        if rule is None:
            return 0.0
        if rule["when"] == "before":
            self.sleep(rule["seconds"])
            return 0.0
        return rule["seconds"]

    @staticmethod
    def _delayed(response, delay_s):
        response.delay_s = delay_s
        return response

    def _check_queue(self, groups):
        if "projects/{}/locations/{}/queues/{}".format(*groups) != self.queue_path:
            raise GoogleError(404, MSG_NOT_FOUND)

    def _task_path_name(self, request):
        groups = request.match.groups()
        self._check_queue(groups[:3])
        if not TASK_ID_RE.fullmatch(groups[3]):
            raise invalid("Task name must be formatted: \"projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/"
                          "<QUEUE_ID>/tasks/<TASK_ID>\".")
        return self.task_name(groups[3])

    def _count_create_call(self, body):
        try:
            name = strict_json_loads(body)["task"]["name"]
            name = name if isinstance(name, str) else ""
        except (ValueError, KeyError, TypeError):
            name = ""
        with self._cond:
            self._create_calls[name] += 1
            self._cond.notify_all()

    def _check_not_duplicate(self, name):
        if name in self._tasks:
            raise GoogleError(409, MSG_EXISTS)
        self._expire_tombstones()
        if name in self._tombstones:
            raise GoogleError(409, MSG_TOO_RECENT)

    def _tombstone(self, task, reason):
        self._tombstones[task.name] = {"reason": reason, "time": self.now(), "task": task}
        self._cond.notify_all()

    def _expire_tombstones(self):
        cutoff = self.now() - self.tombstone_s
        for name in [n for n, t in self._tombstones.items() if t["time"] <= cutoff]:
            del self._tombstones[name]

    def _log_delete(self, name, status):
        with self._cond:
            self._deletes.append({"name": name, "status": status, "time": self.now()})
            self._cond.notify_all()

    # -- HTTP: tokens and keys ------------------------------------------------------------------------------
    def _http_token(self, request):
        try:
            self._raise_injected_failure("token", google=False)
            delay_after = self._injected_delay("token")
            if request.media_type() != "application/x-www-form-urlencoded":
                raise OAuthError("invalid_request", "Content-Type must be application/x-www-form-urlencoded")
            form = self._parse_form(request.body)
            if form.get("grant_type") != JWT_BEARER_GRANT:
                raise OAuthError("unsupported_grant_type", "Invalid grant_type: " + str(form.get("grant_type")))
            if not form.get("assertion"):
                raise OAuthError("invalid_request", "Missing required parameter: assertion")
            with self._cond:
                email = self._accounts.verify(form["assertion"], self.token_uri)
                token = self._tokens.issue("token", email)
                self._cond.notify_all()
        except HttpError as exc:
            self._log_token_error("token", exc)
            raise
        return self._delayed(Response.json(200, token, [("Cache-Control", "no-cache, no-store, max-age=0")]),
                             delay_after)

    @staticmethod
    def _parse_form(body):
        try:
            pairs = urllib.parse.parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as exc:
            raise OAuthError("invalid_request", f"malformed form body: {exc}") from exc
        form = {}
        for key, value in pairs:
            if key in form:
                raise OAuthError("invalid_request", f"duplicate parameter {key}")
            form[key] = value
        return form

    def _http_metadata_token(self, request):
        try:
            self._raise_injected_failure("metadata", google=False)
            delay_after = self._injected_delay("metadata")
            if request.header("X-Forwarded-For") is not None or request.header("Metadata-Flavor") != "Google":
                raise HttpError(Response(403, b"Missing Metadata-Flavor:Google header.\n",
                                         [("Content-Type", "text/plain; charset=utf-8"),
                                          ("Metadata-Flavor", "Google")]))
            with self._cond:
                token = self._tokens.issue("metadata", self.metadata_email)
                self._cond.notify_all()
        except HttpError as exc:
            self._log_token_error("metadata", exc)
            raise
        response = Response.json(200, token, [("Metadata-Flavor", "Google")])
        return self._delayed(response, delay_after)

    def _log_token_error(self, endpoint, exc):
        with self._cond:
            self._token_errors.append({"endpoint": endpoint, "status": exc.response.status,
                                       "error": getattr(exc, "error", None),
                                       "description": getattr(exc, "description", None), "time": self.now()})
            self._cond.notify_all()

    def _http_jwks(self, request):
        try:
            with self._cond:
                unavailable = self._jwks_unavailable
            if unavailable:
                raise GoogleError(503, "The service is currently unavailable.")
            self._raise_injected_failure("jwks", google=True)
        except HttpError as exc:
            self._log_jwks_request(exc.response.status)
            raise
        delay_after = self._injected_delay("jwks")
        with self._cond:
            self._jwks_fetches += 1
            self._log_jwks_request(200)
            body = self.oidc_keys.jwks()
            self._cond.notify_all()
        cache = f"public, max-age={int(self.jwks_max_age)}, must-revalidate, no-transform"
        return self._delayed(Response.json(200, body, [("Cache-Control", cache)]), delay_after)

    def _log_jwks_request(self, status):
        with self._cond:
            self._jwks_requests.append({"time": time.monotonic(), "status": status})
            self._cond.notify_all()

    # -- dispatch internals ------------------------------------------------------------------------------------
    def _full_name(self, name_or_id):
        return name_or_id if "/" in name_or_id else self.task_name(name_or_id)

    def _select(self, name, due_only, allow_done):
        with self._cond:
            if name is not None:
                full = self._full_name(name)
                if full in self._tasks:
                    return [self._tasks[full]]
                if allow_done and full in self._tombstones:
                    return [self._tombstones[full]["task"]]
                raise KeyError(full)
            now = self.now()
            tasks = [t for t in self._tasks.values() if not due_only or t.schedule_epoch <= now]
            return sorted(tasks, key=lambda t: (t.schedule_epoch, t.create_time))

    def _oidc_claims(self, task):
        oidc = task.oidc_token or {}
        email = oidc.get("serviceAccountEmail", "")
        account_id = numeric_account_id(email)
        iat = int(self.now())
        return {"aud": oidc.get("audience") or task.url, "azp": account_id, "email": email,
                "email_verified": True, "exp": iat + OIDC_LIFETIME_S, "iat": iat, "iss": GOOGLE_ISSUER,
                "sub": account_id}

    def _delivery_headers(self, task, authorization):
        headers = {k: v for k, v in task.headers.items()
                   if k.lower() not in RESERVED_HEADERS and not k.lower().startswith(RESERVED_HEADER_PREFIXES)}
        if task.body and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/octet-stream"
        with self._cond:
            headers.update({
                "User-Agent": USER_AGENT,
                "X-CloudTasks-QueueName": self.queue,
                "X-CloudTasks-TaskName": task.task_id,
                "X-CloudTasks-TaskRetryCount": str(task.attempts),
                "X-CloudTasks-TaskExecutionCount": str(task.responses),
                "X-CloudTasks-TaskETA": eta_header(task),
            })
            if task.last_status is not None:
                headers["X-CloudTasks-TaskPreviousResponse"] = str(task.last_status)
        if authorization is not None:
            headers["Authorization"] = authorization
        return headers

    def _deliver_round(self, task, concurrent, token_overrides):
        authorization = self.build_authorization(task, token_overrides)
        headers = self._delivery_headers(task, authorization)
        timeout = min(task.dispatch_deadline_s, self.dispatch_timeout_s)
        outcomes = run_concurrently(concurrent, lambda: http_post(task.url, headers, task.body, timeout))
        self._record_round(task, headers, outcomes)
        return [(status, body) for status, body, _ in outcomes]

    def _record_round(self, task, headers, outcomes):
        with self._cond:
            now = self.now()
            for status, body, error in outcomes:
                task.attempts += 1
                task.first_attempt_time = task.first_attempt_time or now
                task.last_attempt_time = now
                if status is not None:
                    task.responses += 1
                task.last_status = status
                self._dispatch_log.append({"name": task.name, "task_id": task.task_id, "attempt": task.attempts,
                                           "status": status, "body": body, "error": error, "time": now,
                                           "authorization": headers.get("Authorization"),
                                           "headers": dict(headers)})
            succeeded = any(status is not None and 200 <= status < 300 for status, _, _ in outcomes)
            live = self._tasks.get(task.name) is task
            if succeeded and live:
                del self._tasks[task.name]
                self._tombstone(task, "ran")
            elif live:
                backoff = min(self.retry_min_backoff_s * 2 ** max(task.attempts - 1, 0), self.retry_max_backoff_s)
                task.next_attempt_at = now + backoff
                if self.max_attempts is not None and task.attempts >= self.max_attempts:
                    del self._tasks[task.name]
                    self._tombstone(task, "exhausted")
            self._cond.notify_all()

    def _auto_loop(self, stop, interval_s):
        while not stop.wait(interval_s):
            with self._cond:
                now = self.now()
                due = [t.name for t in sorted(self._tasks.values(), key=lambda t: t.schedule_epoch)
                       if t.schedule_epoch <= now and t.next_attempt_at <= now]
            for name in due:
                if stop.is_set():
                    return
                try:
                    self.dispatch(name)
                except KeyError:
                    pass  # deleted meanwhile

    # -- HTTP: control API (CLI mode) -------------------------------------------------------------------------
    @staticmethod
    def _control_body(request):
        if not request.body:
            return {}
        try:
            body = strict_json_loads(request.body)
        except ValueError as exc:
            raise HttpError(Response.json(400, {"error": f"bad JSON: {exc}"})) from exc
        if not isinstance(body, dict):
            raise HttpError(Response.json(400, {"error": "expected a JSON object"}))
        return body

    @staticmethod
    def _control_call(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (KeyError, ValueError, TypeError) as exc:
            raise HttpError(Response.json(400, {"error": f"{type(exc).__name__}: {exc}"})) from exc

    def _control_state(self, request):
        return Response.json(200, self._json_safe(self.snapshot()))

    def _control_wait(self, request):
        what = (request.query.get("what") or ["tasks"])[-1]
        if what not in self.WAITABLE:
            return Response.json(400, {"error": f"what must be one of {sorted(self.WAITABLE)}"})
        n = int((request.query.get("n") or ["1"])[-1])
        timeout = float((request.query.get("timeout") or ["10"])[-1])
        counter = self.WAITABLE[what]
        ok = self.wait_until(lambda: counter(self) >= n, timeout)
        with self._cond:
            return Response.json(200, {"ok": bool(ok), "what": what, "value": counter(self)})

    def _control_dispatch(self, request):
        body = self._control_body(request)
        results = self._control_call(self.dispatch, body.get("name"), body.get("due_only", True),
                                     body.get("times", 1), body.get("concurrent", 1), body.get("token_overrides"),
                                     body.get("allow_done", False))
        return Response.json(200, {"results": [[status, text] for status, text in results]})

    def _control_dispatch_all_due(self, request):
        results = self.dispatch_all_due()
        return Response.json(200, {"results": [[status, text] for status, text in results]})

    def _control_fail_next(self, request):
        body = self._control_body(request)
        self._control_call(self.fail_next, body.get("n", 1), body.get("status", 503), body.get("method", "any"),
                           body.get("message"), body.get("retry_after"))
        return Response.json(200, {})

    def _control_delay_next(self, request):
        body = self._control_body(request)
        self._control_call(self.delay_next, body.get("n", 1), body["seconds"] if "seconds" in body else 1.0,
                           body.get("method", "any"), body.get("when", "after"))
        return Response.json(200, {})

    def _control_unavailable(self, request):
        self.set_unavailable(self._control_body(request).get("unavailable", True))
        return Response.json(200, {})

    def _control_jwks_unavailable(self, request):
        self.set_jwks_unavailable(self._control_body(request).get("unavailable", True))
        return Response.json(200, {})

    def _control_expire_tokens(self, request):
        self.expire_tokens()
        return Response.json(200, {})

    def _control_issue_token(self, request):
        email = self._control_body(request).get("email", "test@example.com")
        return Response.json(200, {"access_token": self.issue_token(email)})

    def _control_register_service_account(self, request):
        body = self._control_body(request)
        if "keyfile" not in body:
            return Response.json(400, {"error": "need {\"keyfile\": PATH}"})
        email = self._control_call(self.register_service_account, keyfile_path=body["keyfile"])
        return Response.json(200, {"client_email": email})

    def _control_add_oidc_key(self, request):
        body = self._control_body(request)
        kid = self.add_oidc_key(publish=body.get("publish", True), activate=body.get("activate", True))
        return Response.json(200, {"kid": kid})

    def _control_remove_oidc_key(self, request):
        self._control_call(self.remove_oidc_key, request.match.group(1))
        return Response.json(200, {})

    def _control_auto_dispatch(self, request):
        interval = self._control_body(request).get("interval_s")
        if interval is None:
            self.stop_auto_dispatch()
        else:
            self.start_auto_dispatch(float(interval))
        return Response.json(200, {})

    @staticmethod
    def _json_safe(value):
        if isinstance(value, dict):
            return {str(k): FakeCloudTasks._json_safe(v) for k, v in value.items()}
        if isinstance(value, list):
            return [FakeCloudTasks._json_safe(v) for v in value]
        if isinstance(value, float) and value in (float("inf"), float("-inf")):
            return None
        return value


def main(argv=None):
    parser = argparse.ArgumentParser(description="Strict loopback fake of Google Cloud Tasks (REST) + tokens")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--project", default="followupd-test")
    parser.add_argument("--location", default="europe-west1")
    parser.add_argument("--queue", default="followups")
    parser.add_argument("--write-keyfile", metavar="PATH",
                        help="write a service-account key file for this fake's token endpoint and accept it")
    parser.add_argument("--register-keyfile", metavar="PATH", action="append", default=[],
                        help="accept JWT-bearer assertions signed with this existing key file")
    parser.add_argument("--jwks-max-age", type=int, default=3600)
    parser.add_argument("--tombstone-s", type=float, default=3600)
    parser.add_argument("--token-lifetime-s", type=float, default=3600)
    parser.add_argument("--auto-dispatch", type=float, metavar="SECONDS",
                        help="deliver due tasks every SECONDS (retrying failures with backoff)")
    parser.add_argument("--max-attempts", type=int)
    parser.add_argument("--no-auth", action="store_true", help="accept API calls without an access token")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    fake = FakeCloudTasks(project=args.project, location=args.location, queue=args.queue, port=args.port,
                          tombstone_s=args.tombstone_s, jwks_max_age=args.jwks_max_age,
                          token_lifetime_s=args.token_lifetime_s, require_auth=not args.no_auth,
                          max_attempts=args.max_attempts, verbose=args.verbose)
    extra = {}

    def info():
        # Runs after start(): the port (and so the token URI baked into the key file) is known.
        if args.write_keyfile:
            extra["keyfile"] = args.write_keyfile
            extra["service_account"] = fake.make_service_account_keyfile(args.write_keyfile).client_email
        for path in args.register_keyfile:
            fake.register_service_account(keyfile_path=path)
        if args.auto_dispatch:
            fake.start_auto_dispatch(args.auto_dispatch)
        return {**fake.info(), **extra}

    return serve_cli(fake, info)


if __name__ == "__main__":
    raise SystemExit(main())
