"""rule_tenant — Issue #2, every statement that reads or writes booking rows is bound to one tenant.

Every C string under daemon/ holding a data statement is analyzed by gate_bind.analyze() (CTEs, set operations,
subqueries, joins): each table it reads or writes must be bound by `tenant_id = $n` (or a join or IN to a relation
that is, see gate_bind), an INSERT must give tenant_id as `$n`.  TRUNCATE/COPY of a table always fail.

Cross-tenant exemption: a marker comment `/* compliance: cross-tenant <ID> — <reason> */` ending within
MARKER_WINDOW_LINES above the line where the statement's string starts, whose ID ARCHITECTURE_COMPLIANCE.md
lists.  It exempts only a READ (no INSERT/UPDATE/DELETE/MERGE/TRUNCATE anywhere in it, CTEs included; row locks
are reads) that RETURNS only identifiers (`id`, `*_id`, `idempotency_key`), times (`*_at`) and aggregates the
statement defines (`count(...) AS x`, `min|max(<time column>) AS x`: numbers about rows, never a row's value): a
marked write, a
marked read returning anything else, a marker with an unlisted ID, a malformed marker and a marker with no SQL
below it are each a finding.  The report lists every exemption, and markers on SQL that needs none (a catalog
read, a bound statement) apart.
"""
import os
import re

import gate_bind
from gate_tree import Finding, Section, plural, read_text

MARKER_WINDOW_LINES = 5
LISTING = "ARCHITECTURE_COMPLIANCE.md"
_MARKER_START = re.compile(r"^[\s*/]*compliance\s*:", re.IGNORECASE)
_MARKER = re.compile(r"^[\s*/]*compliance:\s*cross-tenant\s+(?P<id>[A-Za-z0-9][A-Za-z0-9_.:-]*)"
                     r"(?:\s*—\s*|\s+--?\s+)(?P<reason>\S.*?)[\s*]*$", re.DOTALL)
_LABEL = re.compile(r"(?:\[\s*(?P<index>\w+)\s*\]|(?P<var>[A-Za-z_]\w*)\s*(?:\[[^\]]*\])?)\s*=\s*$")


_AGGREGATE_ALIAS = re.compile(r"\b(?:count\s*\(\s*\*?[^()]*\)|(?:min|max)\s*\(\s*(?:\w+\.)?\w+_at\s*\))"
                              r"(?:\s*FILTER\s*\((?:[^()]|\([^()]*\))*\))?\s+AS\s+(\w+)", re.IGNORECASE)


def aggregate_aliases(sql):
    """Names the statement defines as a count or as the min/max of a time column: numbers about rows, no row."""
    return {m.group(1).lower() for m in _AGGREGATE_ALIAS.finditer(sql)}


def allowed_return(name, aggregates=frozenset()):
    return (name in ("id", "idempotency_key", "$param", "(constant)") or name.endswith(("_id", "_at"))
            or name.lower() in aggregates)


def parse_markers(rel, lexed, listed_text):
    """(valid markers [(Comment, id)], findings for malformed markers and unlisted ids)."""
    valid, findings = [], []
    for comment in lexed.comments:
        if not _MARKER_START.match(comment.text):
            continue
        m = _MARKER.match(comment.text)
        if not m:
            findings.append(Finding(rel, comment.line, "malformed compliance marker (expected "
                                    "/* compliance: cross-tenant <id> — <reason> */)"))
            continue
        marker_id = m.group("id")
        pattern = r"(?<![\w.:-])" + re.escape(marker_id) + r"(?![\w:-]|\.\w)"
        if listed_text is None or not re.search(pattern, listed_text):
            findings.append(Finding(rel, comment.line,
                                    f'cross-tenant marker id "{marker_id}" not listed in {LISTING}'))
            continue
        valid.append((comment, marker_id))
    return valid, findings


def statement_label(code, start):
    """The name a statement's string is assigned to (`[ST_LOAD] =`, `sql =`), or None."""
    m = _LABEL.search(code[max(0, start - 160):start])
    return (m.group("index") or m.group("var")) if m else None


class Tally:
    def __init__(self):
        self.statements = 0
        self.bound = 0
        self.files = set()
        self.exempted = []      # (label, marker id, returns)
        self.needless = []      # (label, marker id) of markers on statements that need no exemption


def _marker_for(markers, line):
    """The nearest marker ending within the window above line, or None."""
    near = [(c, marker_id) for c, marker_id in markers if line - MARKER_WINDOW_LINES <= c.end_line <= line]
    return max(near, key=lambda m: m[0].end_line, default=None)


def _judge_exempt(rel, line, label, marker_id, info, tally, sql=""):
    if info.writes:
        verbs = ", ".join(sorted({f"{v} {t}" for v, t in info.writes}))
        return [Finding(rel, line, f"{label}: cross-tenant marker {marker_id} on a write ({verbs}); a marker "
                                   "exempts only reads")]
    aggregates = aggregate_aliases(sql)
    bad = [r for r in info.returns if not allowed_return(r, aggregates)]
    if bad:
        return [Finding(rel, line, f"{label}: cross-tenant read {marker_id} returns {', '.join(sorted(set(bad)))}; "
                                   "an exempted read returns only ids, times and counts")]
    tally.exempted.append((label, marker_id, info.returns))
    return []


def check_file(rel, tree, listed_text, tally):
    lexed = tree.lexed(rel)
    markers, findings = parse_markers(rel, lexed, listed_text)
    used = set()
    for s in tree.sql_strings(rel):
        label = statement_label(lexed.code, s.start) or f"{os.path.basename(rel)}:{s.line}"
        marker = _marker_for(markers, s.line)
        if marker is not None:
            used.add(id(marker[0]))
        needs_marker = False
        for _, info in gate_bind.analyze(s.value):
            if not info.tables and not info.writes:
                continue
            tally.statements += 1
            tally.files.add(rel)
            if info.bound and not info.problems:
                tally.bound += 1
            elif marker is not None:
                needs_marker = True
                findings += _judge_exempt(rel, s.line, label, marker[1], info, tally, s.value)
            else:
                findings += [Finding(rel, s.line, f"{label}: {problem}")
                             for problem in dict.fromkeys(info.problems or ["not tenant-bound"])]
        if marker is not None and not needs_marker:
            tally.needless.append((label, marker[1]))
    for comment, marker_id in markers:
        if id(comment) not in used:
            findings.append(Finding(rel, comment.line, f"cross-tenant marker {marker_id} marks no statement "
                                                       f"(no SQL starts within {MARKER_WINDOW_LINES} lines below)"))
    return findings


def check(root, tree):
    listed_path = os.path.join(root, LISTING)
    listed_text = read_text(root, LISTING) if os.path.isfile(listed_path) else None
    tally = Tally()
    findings = []
    for rel in tree.c_files:
        findings += check_file(rel, tree, listed_text, tally)
    return Section(findings, _evidence(tally), checked=tally.statements > 0)


def _evidence(t):
    if t.statements == 0:
        return "no statement that reads or writes booking rows was found under daemon/ (the check saw nothing)"
    exempted = "; ".join(f"{label} [{marker_id}] returns {', '.join(dict.fromkeys(r))}"
                         for label, marker_id, r in t.exempted)
    needless = ", ".join(f"{label} [{marker_id}]" for label, marker_id in t.needless)
    return (f"statements reading or writing booking rows: {t.statements} in {plural(len(t.files), 'file')}, "
            f"{t.bound} bind tenant_id = $n, {plural(len(t.exempted), 'cross-tenant read')} exempted"
            + (f": {exempted}" if exempted else "")
            + (f"; markers on SQL that needs none: {needless}" if needless else ""))
