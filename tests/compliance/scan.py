#!/usr/bin/env python3
"""followupd compliance gate: `scan.py [--build DIR] [--only KEYS] [--no-run] ROOT` (stdlib only).

Checks the repository at ROOT against the LAD architecture rules and prints a fixed-shape report:

  🔴 CRITICAL BLOCKERS (Cannot Deploy):

  Issue #N: <heading>
  ✅|❌ <what was checked and how many places: the evidence of the verdict>
  none | one `path:line: why` line per finding
  ...
  📊 Production Readiness: ✅ READY | ❌ NOT READY

A section is ✅ only when it has no finding AND it checked something (a check that saw nothing is ❌).  READY
needs every section ✅.  The checks, each in its own module (method and limits: ARCHITECTURE_COMPLIANCE.md):

  #1 schemas      rule_schema       no schema-qualified name or literal search_path in any SQL shipped or sent
  #2 tenant       rule_tenant       every statement reading/writing booking rows binds tenant_id = $n
  #3 idempotency  rule_idempotency  the real daemon, real PostgreSQL: duplicate/concurrent/crash deliveries
                                    start one voice call (evidence.py)
  #4 console      rule_console      no stdout/stderr output outside the logger and --help/--version
  #5 sql_outside  rule_layering     services/controllers/routes neither include nor call the database layer
  #6 payload      rule_payload      the tasks the real daemon creates carry only the payload fields, no secret

--build: where BUILD/followupd is (default $FOLLOWUPD_BUILD, else ROOT/build).  --only schemas,tenant,...:
check only those sections (the others print ❌ not checked; the report is never READY then).  --no-run: no
evidence run (#3 and #6 print ❌).  PG* must point at a reachable PostgreSQL for the evidence (make compliance
takes care of it).  Exit status: 0 when READY, 1 when NOT READY, 2 on a usage error.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import rule_console  # noqa: E402
import rule_idempotency  # noqa: E402
import rule_layering  # noqa: E402
import rule_payload  # noqa: E402
import rule_schema  # noqa: E402
import rule_tenant  # noqa: E402
from gate_tree import Section, Tree  # noqa: E402

SECTIONS = (
    ("schemas", "Issue #1: Hardcoded Schema Names"),
    ("tenant", "Issue #2: Missing Tenant Filter"),
    ("idempotency", "Issue #3: Non-idempotent handler"),
    ("console", "Issue #4: console.log usage"),
    ("sql_outside", "Issue #5: SQL outside repositories"),
    ("payload", "Issue #6: Secrets in task payload"),
)
KEYS = tuple(k for k, _ in SECTIONS)
EVIDENCE_KEYS = {"idempotency", "payload"}


def format_report(results):
    """results: {section key: Section}.  Returns (text, ready)."""
    lines = ["🔴 CRITICAL BLOCKERS (Cannot Deploy):"]
    ready = True
    for key, heading in SECTIONS:
        section = results[key]
        ready = ready and section.ok
        findings = sorted(set(section.findings), key=lambda f: (f.path, f.line, f.why))
        lines += ["", heading, ("✅ " if section.ok else "❌ ") + section.evidence]
        lines += [f"{f.path}:{f.line}: {f.why}" for f in findings] or ["none"]
    lines.append("📊 Production Readiness: " + ("✅ READY" if ready else "❌ NOT READY"))
    return "\n".join(lines) + "\n", ready


def not_checked(why):
    return Section([], f"not checked ({why})", checked=False)


def run_evidence(root, build_dir, only, run):
    wanted = EVIDENCE_KEYS & set(only)
    if not run or not wanted:
        return None
    return rule_idempotency.produce(root, build_dir, only=None if "idempotency" in wanted else "payload")


def scan(root, build_dir, only=KEYS, run=True):
    tree = Tree(root)
    evidence = run_evidence(root, build_dir, only, run)
    runtime = evidence.data.get("daemon_output") if evidence is not None and evidence.data else None
    checks = {
        "schemas": lambda: rule_schema.check(root, tree),
        "tenant": lambda: rule_tenant.check(root, tree),
        "idempotency": lambda: rule_idempotency.check(root, evidence),
        "console": lambda: rule_console.check(root, tree, runtime),
        "sql_outside": lambda: rule_layering.check(root, tree),
        "payload": lambda: rule_payload.check(root, evidence, tree),
    }
    results = {}
    for key in KEYS:
        if key not in only:
            results[key] = not_checked("--only")
        elif key in EVIDENCE_KEYS and evidence is None:
            results[key] = not_checked("--no-run: no evidence run")
        else:
            results[key] = checks[key]()
    return format_report(results)


def resolve_build_dir(root, build_opt):
    chosen = build_opt or os.environ.get("FOLLOWUPD_BUILD")
    return os.path.abspath(chosen) if chosen else os.path.join(root, "build")


def parse_only(text, ap):
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in keys if k not in KEYS]
    if bad or not keys:
        ap.error(f"--only takes a comma-separated list of {', '.join(KEYS)}")
    return keys


def main(argv=None):
    ap = argparse.ArgumentParser(description="followupd compliance gate")
    ap.add_argument("root", nargs="?", default=".", help="repository root to scan (default: .)")
    ap.add_argument("--build", default=None, help="build dir holding followupd (default: $FOLLOWUPD_BUILD, "
                                                   "else ROOT/build)")
    ap.add_argument("--only", default=None, help=f"comma-separated sections to check: {', '.join(KEYS)}")
    ap.add_argument("--no-run", action="store_true", help="no evidence run (Issues #3 and #6 fail)")
    args = ap.parse_args(argv)
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        ap.error(f"not a directory: {args.root}")
    only = parse_only(args.only, ap) if args.only else KEYS
    text, ready = scan(root, resolve_build_dir(root, args.build), only=only, run=not args.no_run)
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.flush()
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
