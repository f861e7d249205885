"""rule_payload — Issue #6, no secrets in the task payload.

Judges the tasks the real daemon created during the evidence run (rule_idempotency.produce, evidence.py), in OIDC
and in shared-secret mode: each create request's task body must be a JSON object whose keys are the public task
payload's camelCase fields — the ids (tenantId, bookingId, leadId, assignedUserId) and the routing fields schema,
scheduledAt, idempotencyKey — each value of its field's shape (UUID or null, a schema identifier, an ISO-8601 UTC
time, `followup:<uuid>:<uuid>:<time>`); the task may carry no HTTP header but Content-Type; and no configured
secret (voice-agent token, shared secret, service-account key, database password) may appear anywhere in the
request.  A new payload field means extending PAYLOAD_FIELDS here, deliberately.
"""
import json
import re

from gate_tree import Finding, Section, plural

RUNNER = "tests/compliance/evidence.py"
BUILDER = "daemon/src/features/deals_pipeline/services/followup_scheduler_service.c"
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ISO = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"
PAYLOAD_FIELDS = {
    "tenantId": re.compile(_UUID + r"$"),
    "bookingId": re.compile(_UUID + r"$"),
    "leadId": re.compile(_UUID + r"$"),
    "assignedUserId": re.compile(_UUID + r"$"),
    "schema": re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}$"),
    "scheduledAt": re.compile(_ISO + r"$"),
    "idempotencyKey": re.compile(r"followup:" + _UUID + ":" + _UUID + ":" + _ISO + r"$"),
}
NULLABLE = {"assignedUserId"}
ALLOWED_HEADERS = {"content-type"}


def task_findings(task):
    """[(why, the payload key or header it is about, or None)] for one created task."""
    where = f"task {task.get('name', '?').rsplit('/', 1)[-1][:16]}… ({task['mode']} mode)"
    out = []
    for secret in task.get("secret_hits", []):
        out.append((f"{where}: the create request contains the configured {secret}", None))
    for header in (task.get("headers") or {}):
        if header.lower() not in ALLOWED_HEADERS:
            out.append((f"{where}: the task carries HTTP header {header}", header))
    try:
        body = json.loads(task.get("body") or "")
    except ValueError:
        return out + [(f"{where}: the task body is not JSON", None)]
    if not isinstance(body, dict):
        return out + [(f"{where}: the task body is not a JSON object", None)]
    for key, value in body.items():
        shape = PAYLOAD_FIELDS.get(key)
        if shape is None:
            out.append((f"{where}: payload key {key!r} is not a task payload field ({', '.join(PAYLOAD_FIELDS)})",
                        key))
        elif value is None and key in NULLABLE:
            continue
        elif not isinstance(value, str) or not shape.match(value):
            out.append((f"{where}: payload {key} = {_short(value)} is not of its field's shape", key))
    missing = [k for k in ("tenantId", "bookingId", "idempotencyKey") if k not in body]
    if missing:
        out.append((f"{where}: payload lacks {', '.join(missing)}", None))
    return out


def _short(value):
    text = json.dumps(value)
    return text if len(text) <= 24 else text[:12] + "…"


def _line_of_key(root, tree, key):
    """(path, line) of the first C string literal spelling key exactly, else the builder's first line."""
    for rel in tree.c_files:
        for lit in tree.lexed(rel).strings:
            if lit.value == key:
                return rel, lit.line
    return BUILDER, 1


def check(root, evidence, tree):
    if evidence.data is None:
        return Section([Finding(RUNNER, 1, f"no tasks to inspect: {evidence.failure}")],
                       "no evidence run, no task inspected")
    tasks = evidence.data.get("tasks", [])
    findings = []
    for task in tasks:
        for why, key in task_findings(task):
            path, line = _line_of_key(root, tree, key) if key else (BUILDER, 1)
            findings.append(Finding(path, line, why))
    modes = sorted({t["mode"] for t in tasks})
    for mode in ("oidc", "shared_secret"):
        if mode not in modes:
            findings.append(Finding(RUNNER, 1, f"no task was created in {mode} mode: its payload is unchecked"))
    keys = sorted({k for t in tasks for k in _keys(t)})
    secrets = evidence.data.get("secrets_checked", [])
    evidence_line = (f"{plural(len(tasks), 'task')} the real daemon created ({', '.join(modes) or 'no'} mode): "
                     f"payload keys {', '.join(keys) or 'none'} against the {len(PAYLOAD_FIELDS)} payload fields and "
                     f"their shapes, headers against Content-Type, every create request against "
                     f"{plural(len(secrets), 'configured secret')} ({', '.join(secrets)})")
    return Section(findings, evidence_line, checked=bool(tasks))


def _keys(task):
    try:
        body = json.loads(task.get("body") or "")
    except ValueError:
        return []
    return list(body) if isinstance(body, dict) else []

