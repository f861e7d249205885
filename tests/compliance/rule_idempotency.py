"""rule_idempotency — Issue #3, execution is idempotent, shown by the real daemon against a real PostgreSQL.

produce() makes the evidence once per gate run (Issues #4 and #6 read it too): it checks that BUILD/followupd
exists and is newer than every source it is built from (daemon/**/*.c|h) — `make compliance` builds
first — that PostgreSQL answers through PG* (pg_isready), then runs ROOT/tests/compliance/evidence.py (see there:
duplicate, concurrent and crash-after-lease-expiry deliveries on the Cloud Tasks callback path, two replicas of
the local dispatcher) and reads its JSON.  check() compares each scenario's counted voice calls with what exactly
once means.  No evidence (missing binary or runner, stale build, no PostgreSQL, a crash, a missing scenario) is a
blocker, never a pass.
"""
import json
import os
import re
import shutil
import subprocess
import sys

from gate_tree import Finding, Section, plural, walk_files

EVIDENCE_RUNNER = "tests/compliance/evidence.py"
BINARY = "followupd"
EVIDENCE_TIMEOUT_S = 300
REQUIRED = ("same_task_twice", "concurrent_in_flight", "killed_mid_call", "local_two_replicas")


class Evidence:
    """The outcome of one evidence run: data (the runner's JSON) or why there is none."""

    def __init__(self, data=None, failure=None, binary=None, only=None):
        self.data = data
        self.failure = failure
        self.binary = binary
        self.only = only


def display(root, path):
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else rel.replace(os.sep, "/")


def newest_source(root):
    """(mtime, root-relative path) of the newest input of the build."""
    paths = walk_files(root, "daemon", (".c", ".h"))
    return max(((os.stat(os.path.join(root, p)).st_mtime, p) for p in paths), default=(0, None))


def freshness_problem(root, binary):
    shown = display(root, binary)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        return f"{shown} not built (run make compliance, which builds first)"
    newest, path = newest_source(root)
    if path is not None and os.stat(binary).st_mtime < newest:
        return f"{shown} is older than {path}: not built from the current sources (run make compliance)"
    return None


def postgres_problem():
    if shutil.which("pg_isready") is None:
        return "pg_isready not found (postgresql-client needed for the evidence run)"
    proc = subprocess.run(["pg_isready", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if proc.returncode != 0:
        where = f"{os.environ.get('PGHOST', 'localhost')}:{os.environ.get('PGPORT', '5432')}"
        return f"no PostgreSQL reachable through PG* ({where}); make compliance starts a throwaway one"
    return None


def produce(root, build_dir, only=None):
    """Run the evidence (only: None for everything, or 'payload')."""
    binary = os.path.join(build_dir, BINARY)
    runner = os.path.join(root, EVIDENCE_RUNNER)
    if not os.path.isfile(runner):
        return Evidence(failure=f"{EVIDENCE_RUNNER} is missing: no evidence", binary=binary, only=only)
    problem = freshness_problem(root, binary) or postgres_problem()
    if problem:
        return Evidence(failure=problem, binary=binary, only=only)
    cmd = [sys.executable, runner, "--root", root, "--build", build_dir] + (["--only", only] if only else [])
    try:
        proc = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              errors="replace", timeout=EVIDENCE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Evidence(failure=f"{EVIDENCE_RUNNER} timed out after {EVIDENCE_TIMEOUT_S}s", binary=binary, only=only)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    try:
        data = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return Evidence(failure=f"{EVIDENCE_RUNNER} gave no result (exit status {proc.returncode}): {tail[:300]}",
                        binary=binary, only=only)
    if data.get("fatal"):
        return Evidence(data=data, failure=f"the evidence run stopped: {data['fatal']}", binary=binary, only=only)
    return Evidence(data=data, binary=binary, only=only)


def _scenario_line(root, name):
    """Line of the scenario's definition in the runner (`def name`, else its first mention), else 1."""
    try:
        with open(os.path.join(root, EVIDENCE_RUNNER), encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError:
        return 1
    for pattern in (r"def " + re.escape(name) + r"\b", r'"' + re.escape(name) + r'"', r"\b" + re.escape(name) + r"\b"):
        for i, line in enumerate(lines, 1):
            if re.search(pattern, line):
                return i
    return 1


def scenario_findings(root, scenario):
    name = scenario["name"]
    line = _scenario_line(root, name)
    if scenario.get("error"):
        return [Finding(EVIDENCE_RUNNER, line, f"{name}: could not be shown: {scenario['error']}")]
    out = []
    for key, want in scenario.get("expect", {}).items():
        got = scenario.get(key)
        if got != want:
            out.append(Finding(EVIDENCE_RUNNER, line, f"{name} ({scenario['what']}): {key} = {got}, exactly once "
                                                      f"means {want}; answers {_answers(scenario)}"))
    return out


def _answers(scenario):
    counts = {}
    for status, body in scenario.get("answers", []):
        label = f"{status} {body.get('status') or body.get('error')}" if isinstance(body, dict) else str(status)
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{n}x {k}" for k, n in counts.items()) or "none"


def check(root, evidence):
    shown = display(root, evidence.binary) if evidence.binary else BINARY
    if evidence.only is not None:
        return Section([], f"not checked (only the {evidence.only} evidence was run)", checked=False)
    if evidence.data is None:
        return Section([Finding(EVIDENCE_RUNNER, 1, evidence.failure)], f"no evidence from {shown}")
    scenarios = {s["name"]: s for s in evidence.data["scenarios"] if s["path"] in ("callback", "local")}
    findings = [Finding(EVIDENCE_RUNNER, 1, evidence.failure)] if evidence.failure else []
    for name in REQUIRED:
        if name not in scenarios:
            findings.append(Finding(EVIDENCE_RUNNER, _scenario_line(root, name), f"{name}: scenario did not run"))
    for s in scenarios.values():
        findings += scenario_findings(root, s)
    return Section(findings, _evidence_line(shown, scenarios))


def _evidence_line(shown, scenarios):
    parts = []
    for s in scenarios.values():
        if s.get("error"):
            parts.append(f"{s['name']}: not shown")
            continue
        deliveries = plural(s.get("deliveries"), "delivery", "deliveries")
        requests = plural(s.get("requests"), "start-call request")
        parts.append(f"{s['path']} path, {s['what']}: {deliveries} → {plural(s.get('unique_calls'), 'call')} started "
                     f"({requests})")
    where = f"{os.environ.get('PGHOST', 'localhost')}:{os.environ.get('PGPORT', '5432')}"
    return f"real {shown} (newer than every source) against PostgreSQL at {where}, strict fakes: " + "; ".join(parts)
