#!/usr/bin/env python3
"""followupd compliance gate: `scan.py [--no-run] [--build DIR] ROOT` (stdlib only).

Scans the daemon sources (daemon/**/*.c|h) and the migrations (sql/migrations/**/*.sql) of the repository at
ROOT and prints a fixed-shape report, one `file:line: why` finding per line under its heading, or `none`:

  Issue #1  Hardcoded Schema Names   a lead_bookings reference qualified by a literal schema
            (`lad_dev.lead_bookings`, `"lad_prod".lead_bookings`, `public.lead_bookings`) or any known schema
            literal (lad_dev, lad_prod, lad_stage, lad_test, lad_staging), in code, strings and comments alike.
            Schemas built at run time (`%s.lead_bookings`) and psql variables (`:"schema".lead_bookings`) pass.
  Issue #2  Missing Tenant Filter    every SQL statement held in a C string literal (adjacent literals joined;
            macros are not expanded, so they split a statement) in daemon/src/features/*/repositories/**/*.c:
            SELECT/UPDATE/DELETE need `tenant_id` in their top-level WHERE clause (subqueries inside it count),
            INSERT needs `tenant_id` in its column list, each part of a UNION and each CTE of a WITH is checked
            on its own (a part reading from an already tenant-scoped CTE passes).  A SELECT without a top-level
            FROM reads no table and passes; LISTEN/BEGIN/COMMIT/SET... are not data queries.
            Exemption: a marker comment ending within the 5 lines above the line where the string starts (or on
            that line), whose id ARCHITECTURE_COMPLIANCE.md at ROOT mentions:
                /* compliance: cross-tenant <id> — <reason> */      (or `// compliance: ...`; `-`/`--` for `—`)
            <id> is [A-Za-z0-9][A-Za-z0-9_.:-]*, <reason> non-empty.  A marker with an unlisted id, or a
            comment starting `compliance:` that does not parse, is itself a finding.
  Issue #3  Non-idempotent handler   `pending: ...` (not a blocker) while tests/unit/
            test_followup_execution_service.c does not exist; otherwise its built binary
            <build>/tests/test_followup_execution_service is run from ROOT (build = --build, else
            $FOLLOWUPD_BUILD, else ROOT/build; relative paths are taken from the current directory); a missing
            binary, a non-zero exit or no `[  PASSED  ] N test(s)` line with N >= 1 is a blocker.  --no-run
            reports existing tests as pending instead of running them.
  Issue #4  console.log usage        printf/fprintf/vprintf/vfprintf/dprintf/puts/perror/putchar calls,
            fputs/fputc/putc/fwrite on stdout/stderr, write(1|2|STDOUT_FILENO|STDERR_FILENO, ...) in daemon
            code outside daemon/src/utils/log.c; in daemon/src/main.c calls inside the functions print_usage and
            print_version (CLI help/version text) are allowed.  Comments and string literals are ignored.
  Issue #5  SQL outside repositories PQexec*, PQsendQuery*, PQprepare, PQsendPrepare calls in daemon code
            outside daemon/src/features/*/repositories/ and daemon/src/shared/db/.

Directories named tests, fuzz, bench, .git, build or build-* are never scanned.  Exit status: 0 when READY,
1 when any blocker exists (NOT READY), 2 on a usage error.
"""
import argparse
import os
import re
import subprocess
import sys
from collections import namedtuple

SKIP_DIR_NAMES = {"tests", "fuzz", "bench", ".git", "build"}
KNOWN_SCHEMAS = ("lad_dev", "lad_prod", "lad_stage", "lad_test", "lad_staging")
IDEMPOTENCY_TEST_SRC = "tests/unit/test_followup_execution_service.c"
IDEMPOTENCY_TEST_BIN = "tests/test_followup_execution_service"
IDEMPOTENCY_TIMEOUT_S = 300
MARKER_WINDOW_LINES = 5
LOG_MODULE = "daemon/src/utils/log.c"
CLI_MODULE = "daemon/src/main.c"
CLI_TEXT_FUNCTIONS = {"print_usage", "print_version"}

Finding = namedtuple("Finding", "path line why")
StringLit = namedtuple("StringLit", "line start end value")
Comment = namedtuple("Comment", "line end_line text")
Lexed = namedtuple("Lexed", "code strings comments")


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------

def is_skipped_dir(name):
    return name in SKIP_DIR_NAMES or name.startswith("build-")


def walk_files(root, top, suffixes):
    """Root-relative '/'-separated paths of files under root/top ending in one of suffixes, sorted."""
    base = os.path.join(root, top)
    found = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not is_skipped_dir(d))
        for name in filenames:
            if name.endswith(suffixes):
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                found.append(rel.replace(os.sep, "/"))
    return sorted(found)


def read_text(root, rel):
    with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
        return f.read()


def is_repository_file(rel):
    parts = rel.split("/")
    return (len(parts) >= 6 and parts[:3] == ["daemon", "src", "features"] and parts[4] == "repositories")


def is_sql_allowed_file(rel):
    return is_repository_file(rel) or rel.startswith("daemon/src/shared/db/")


class SourceCache:
    """Reads and lexes each file once."""

    def __init__(self, root):
        self.root = root
        self._text = {}
        self._lexed = {}

    def text(self, rel):
        if rel not in self._text:
            self._text[rel] = read_text(self.root, rel)
        return self._text[rel]

    def lexed(self, rel):
        if rel not in self._lexed:
            self._lexed[rel] = lex_c(self.text(rel))
        return self._lexed[rel]


# ---------------------------------------------------------------------------------------------------------------
# A small C lexer: comments and string/char literals
# ---------------------------------------------------------------------------------------------------------------

_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
                   "\\": "\\", "'": "'", '"': '"', "?": "?", "\n": ""}


def decode_c_escapes(body):
    """Value of a C string literal body (between the quotes); approximate for \\u and wide forms."""
    out = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c != "\\" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e == "x":
            m = re.match(r"[0-9A-Fa-f]+", body[i + 2:])
            out.append(chr(int(m.group(0), 16) & 0x10FFFF) if m else "x")
            i += 2 + (len(m.group(0)) if m else 0)
        elif e in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(chr(int(m.group(0), 8)))
            i += 1 + len(m.group(0))
        elif e in "uU":
            width = 4 if e == "u" else 8
            digits = body[i + 2:i + 2 + width]
            try:
                out.append(chr(int(digits, 16)))
                i += 2 + width
            except ValueError:
                out.append(e)
                i += 2
        else:
            out.append(_SIMPLE_ESCAPES.get(e, e))
            i += 2
    return "".join(out)


def _blank(s):
    """s with every character but newlines turned into a space (keeps offsets and line numbers)."""
    return re.sub(r"[^\n]", " ", s)


def _scan_quoted(text, i, quote):
    """(end of the literal's content, end of the literal) for the literal opened by text[i] == quote.
    An unterminated literal stops at its line end."""
    n = len(text)
    j = i + 1
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
        elif c == quote:
            return j, j + 1
        elif c == "\n":
            return j, j
        else:
            j += 1
    return n, n


def _scan_comment(text, i):
    """(comment body without delimiters, end offset) of the comment starting at text[i]."""
    if text.startswith("/*", i):
        close = text.find("*/", i + 2)
        return (text[i + 2:], len(text)) if close < 0 else (text[i + 2:close], close + 2)
    j = i + 2
    while j < len(text) and not (text[j] == "\n" and text[j - 1] != "\\"):
        j += 1
    return text[i + 2:j], j


def lex_c(text):
    """Split C source into code with comments and literal contents blanked (same offsets, same line numbers),
    the string literals (line, offsets, decoded value) and the comments (first/last line, text without
    delimiters).  Prefixes (L"", u8"") stay in the code; char literals are blanked like strings."""
    code = []
    strings = []
    comments = []
    i, n, copied = 0, len(text), 0
    line, line_at = 1, 0  # line is the line number of offset line_at
    while i < n:
        c = text[i]
        if c in "/\"'":
            line += text.count("\n", line_at, i)
            line_at = i
        if c == "/" and text.startswith(("/*", "//"), i):
            body, end = _scan_comment(text, i)
            code.append(text[copied:i] + _blank(text[i:end]))
            comments.append(Comment(line, line + text.count("\n", i, end), body))
        elif c in "\"'":
            content_end, end = _scan_quoted(text, i, c)
            code.append(text[copied:i + 1] + _blank(text[i + 1:content_end]) + text[content_end:end])
            if c == '"':
                strings.append(StringLit(line, i, end, decode_c_escapes(text[i + 1:content_end])))
        else:
            i += 1
            continue
        i = copied = end
    code.append(text[copied:])
    return Lexed("".join(code), strings, comments)


def literal_groups(lexed):
    """Runs of adjacent string literals (only whitespace or comments between them): [[StringLit]]."""
    groups = []
    prev = None
    for s in lexed.strings:
        if prev is not None and lexed.code[prev.end:s.start].strip() == "":
            groups[-1].append(s)
        else:
            groups.append([s])
        prev = s
    return groups


def string_groups(lexed):
    """Adjacent string literals joined as the compiler does: [(line of the first literal, value)]."""
    return [(group[0].line, "".join(s.value for s in group)) for group in literal_groups(lexed)]


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def function_spans(code):
    """[(name, first line, last line)] of function bodies at file scope in comment/literal-free code."""
    spans = []
    depth = 0
    header_start = 0
    open_at = None
    name = None
    for m in re.finditer(r"[{};]", code):
        ch = m.group(0)
        if ch == "{":
            if depth == 0:
                header = code[header_start:m.start()]
                hm = re.search(r"([A-Za-z_]\w*)\s*\([^;{}]*\)\s*$", header)
                name = hm.group(1) if hm else None
                open_at = m.start()
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
            if depth == 0:
                if name is not None:
                    spans.append((name, line_of(code, open_at), line_of(code, m.start())))
                name = None
                header_start = m.end()
        elif depth == 0:
            header_start = m.end()
    return spans


def enclosing_function(spans, line):
    for name, first, last in spans:
        if first <= line <= last:
            return name
    return None


# ---------------------------------------------------------------------------------------------------------------
# Issue #1: hard-coded schema names
# ---------------------------------------------------------------------------------------------------------------

_QUALIFIED_LEAD_BOOKINGS = re.compile(
    r'(?<![\w$:%])(?:"(?P<quoted>[A-Za-z_][\w$]*)"|(?P<bare>[A-Za-z_][\w$]*))\s*\.\s*"?lead_bookings\b',
    re.IGNORECASE)
_KNOWN_SCHEMA = re.compile(r"\b(" + "|".join(sorted(KNOWN_SCHEMAS, key=len, reverse=True)) + r")\b",
                           re.IGNORECASE)


def schema_findings_in_line(rel, lineno, line):
    found = []
    flat = line.replace('\\"', '"')
    qualified = set()
    for m in _QUALIFIED_LEAD_BOOKINGS.finditer(flat):
        schema = m.group("quoted") or m.group("bare")
        qualified.add(schema.lower())
        found.append(Finding(rel, lineno, f'hard-coded schema "{schema}" in a lead_bookings reference'))
    for m in _KNOWN_SCHEMA.finditer(flat):
        if m.group(1).lower() not in qualified:
            qualified.add(m.group(1).lower())
            found.append(Finding(rel, lineno, f'known schema literal "{m.group(1)}"'))
    return found


def check_hardcoded_schemas(root, cache):
    files = walk_files(root, "daemon", (".c", ".h")) + walk_files(root, "sql/migrations", (".sql",))
    findings = []
    for rel in files:
        text = cache.text(rel)
        for lineno, line in enumerate(text.split("\n"), 1):
            findings.extend(schema_findings_in_line(rel, lineno, line))
        if rel.endswith((".c", ".h")):
            findings.extend(_schema_findings_across_literals(rel, cache.lexed(rel)))
    return findings


def _schema_findings_across_literals(rel, lexed):
    """A qualified reference split over adjacent literals ("... lad_dev." "lead_bookings"), reported at the
    first literal; references inside one literal are left to the line scan."""
    found = []
    for group in literal_groups(lexed):
        joined = "".join(s.value for s in group)
        for m in _QUALIFIED_LEAD_BOOKINGS.finditer(joined):
            if not any(m.group(0) in s.value for s in group):
                schema = m.group("quoted") or m.group("bare")
                found.append(Finding(rel, group[0].line, f'hard-coded schema "{schema}" in a lead_bookings reference'))
    return found


# ---------------------------------------------------------------------------------------------------------------
# Issue #2: tenant filter in repository SQL
# ---------------------------------------------------------------------------------------------------------------

_SQL_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?(?:\*/|$))
  | (?P<str>[EeBbXxNn]?'(?:[^']|'')*(?:'|$))
  | (?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$.*?(?:\$(?P=tag)?\$|$))
  | (?P<ident>"(?:[^"]|"")*"?)
  | (?P<param>\$\d+)
  | (?P<word>%[-+ #0-9.]*[a-zA-Z]|[A-Za-z_][\w$]*)
  | (?P<punct>[(),;.])
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)

SqlTok = namedtuple("SqlTok", "kind text depth start end")

_CLAUSE_ENDS = {"group", "order", "having", "limit", "offset", "for", "returning", "window", "fetch"}
_SET_OPERATORS = {"union", "intersect", "except"}


def sql_tokens(sql):
    """Words (lower-cased; quoted identifiers unquoted) and punctuation with their paren depth."""
    toks = []
    depth = 0
    for m in _SQL_TOKEN.finditer(sql):
        kind = m.lastgroup if m.lastgroup != "tag" else "dollar"
        text = m.group(kind)
        if kind in ("ws", "comment"):
            continue
        if kind == "ident":
            kind, text = "word", text.strip('"').replace('""', '"')
        if kind == "word":
            text = text.lower()
        if text == ")" and kind == "punct":
            depth = max(0, depth - 1)
        toks.append(SqlTok(kind, text, depth, m.start(), m.end()))
        if text == "(" and kind == "punct":
            depth += 1
    return toks


def split_top_level(toks, is_separator):
    parts, cur = [], []
    base = toks[0].depth if toks else 0
    for t in toks:
        if t.depth == base and is_separator(t):
            parts.append(cur)
            cur = []
        else:
            cur.append(t)
    parts.append(cur)
    return [p for p in parts if p]


def _top_index(toks, words, start=0):
    base = toks[0].depth if toks else 0
    for i in range(start, len(toks)):
        if toks[i].depth == base and toks[i].kind == "word" and toks[i].text in words:
            return i
    return -1


def _mentions_tenant(toks):
    return any(t.kind == "word" and t.text == "tenant_id" for t in toks)


def _where_clause(toks):
    """Tokens of the top-level WHERE clause (nested parts included), or None when there is none."""
    start = _top_index(toks, {"where"})
    if start < 0:
        return None
    end = _top_index(toks, _CLAUSE_ENDS, start + 1)
    return toks[start:end if end >= 0 else len(toks)]


def _check_filtered(verb, toks):
    where = _where_clause(toks)
    if where is None:
        return f"{verb} without a WHERE clause (tenant_id filter missing)"
    if not _mentions_tenant(where):
        return f"{verb} whose WHERE clause lacks tenant_id"
    return None


def _check_select(toks):
    for part in split_top_level(toks, lambda t: t.kind == "word" and t.text in _SET_OPERATORS):
        if part[0].text == "(":
            inner = [t for t in part if t.depth > part[0].depth]
            problem = _check_statement(inner) if inner else None
        elif _top_index(part, {"from"}) < 0:
            problem = None  # no table read (SELECT 1, SELECT pg_notify(...))
        else:
            problem = _check_filtered("SELECT", part)
        if problem:
            return problem
    return None


def _check_insert(toks):
    i = _top_index(toks, {"into"})
    if i < 0:
        return "INSERT without INTO"
    j = i + 1
    while j < len(toks) and (toks[j].kind == "word" or toks[j].text == ".") and \
            toks[j].text not in ("values", "select", "default", "with", "overriding"):
        j += 1  # table name, optional AS alias
    if j >= len(toks) or toks[j].text != "(":
        return "INSERT without a column list (tenant_id not provably set)"
    depth = toks[j].depth
    k = j + 1
    while k < len(toks) and not (toks[k].text == ")" and toks[k].depth == depth):
        k += 1
    if not _mentions_tenant(toks[j + 1:k]):
        return "INSERT whose column list lacks tenant_id"
    return None


def _cte_bodies(toks):
    """([(name, body tokens)], main statement tokens) of a WITH statement."""
    ctes = []
    i = 1
    if i < len(toks) and toks[i].text == "recursive":
        i += 1
    base = toks[0].depth
    while i < len(toks):
        name = toks[i].text
        k = i + 1
        while k < len(toks) and not (toks[k].text == "(" and toks[k].depth == base and
                                     toks[k - 1].kind == "word" and toks[k - 1].text in ("as", "materialized")):
            k += 1
        if k >= len(toks):
            return ctes, []
        end = k + 1
        while end < len(toks) and not (toks[end].text == ")" and toks[end].depth == base):
            end += 1
        ctes.append((name, toks[k + 1:end]))
        i = end + 1
        if i < len(toks) and toks[i].text == ",":
            i += 1
            continue
        return ctes, toks[i:]
    return ctes, []


def _check_with(toks):
    ctes, main = _cte_bodies(toks)
    scoped = set()
    for name, body in ctes:
        problem = _check_statement(body) if body else None
        if problem and not _reads_from(body, scoped):
            return f"WITH: CTE {name}: {problem}"
        scoped.add(name)
    problem = _check_statement(main) if main else None
    if problem and not _reads_from(main, scoped):
        return problem
    return None


def _reads_from(toks, names):
    return any(t.kind == "word" and t.text in names for t in toks)


def _check_statement(toks):
    """None when toks is tenant-scoped or not a data query, else why not."""
    if not toks:
        return None
    first = toks[0].text
    if first == "select":
        return _check_select(toks)
    if first in ("update", "delete"):
        return _check_filtered(first.upper(), toks)
    if first == "insert":
        return _check_insert(toks)
    if first == "with":
        return _check_with(toks)
    if first == "(":
        return _check_select(toks)
    return None


_SQL_NAME = r'(?:"[^"]+"|[\w%$]+)(?:\s*\.\s*(?:"[^"]+"|[\w%$]+))?'
_SQL_START = re.compile(
    r"^\s*(?:\(\s*)*(?:select\b"
    r"|with\s+(?:recursive\s+)?.*?\bas\s*(?:(?:not\s+)?materialized\s*)?\("
    r"|insert\s+into\b"
    r"|update\s+(?:only\s+)?" + _SQL_NAME + r"\s+(?:(?:as\s+)?\w+\s+)?set\b"
    r"|delete\s+from\b)", re.IGNORECASE | re.DOTALL)


def looks_like_sql(value):
    return bool(_SQL_START.match(value))


def sql_problems(value):
    """Why each data statement of one string (statements split at top-level `;`) is not tenant-scoped."""
    problems = []
    for stmt in split_top_level(sql_tokens(value), lambda t: t.text == ";" and t.kind == "punct"):
        if not looks_like_sql(value[stmt[0].start:stmt[-1].end]):
            continue
        problem = _check_statement(stmt)
        if problem:
            problems.append(problem)
    return problems


_MARKER_START = re.compile(r"^[\s*/]*compliance\s*:", re.IGNORECASE)
_MARKER = re.compile(r"^[\s*/]*compliance:\s*cross-tenant\s+(?P<id>[A-Za-z0-9][A-Za-z0-9_.:-]*)"
                     r"(?:\s*—\s*|\s+--?\s+)(?P<reason>\S.*?)[\s*]*$", re.DOTALL)


def parse_markers(rel, lexed, listed_text):
    """(valid markers [(comment, id)], findings for malformed markers and unlisted ids)."""
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
                                    f'cross-tenant marker id "{marker_id}" not listed in ARCHITECTURE_COMPLIANCE.md'))
            continue
        valid.append(comment)
    return valid, findings


def _exempted(line, markers):
    return any(line - MARKER_WINDOW_LINES <= c.end_line <= line for c in markers)


def check_tenant_filter(root, cache):
    listed_path = os.path.join(root, "ARCHITECTURE_COMPLIANCE.md")
    listed_text = read_text(root, "ARCHITECTURE_COMPLIANCE.md") if os.path.isfile(listed_path) else None
    findings = []
    for rel in walk_files(root, "daemon/src/features", (".c",)):
        if not is_repository_file(rel):
            continue
        lexed = cache.lexed(rel)
        markers, marker_findings = parse_markers(rel, lexed, listed_text)
        findings.extend(marker_findings)
        for line, value in string_groups(lexed):
            if _exempted(line, markers):
                continue
            for problem in sql_problems(value):
                findings.append(Finding(rel, line, problem))
    return findings


# ---------------------------------------------------------------------------------------------------------------
# Issue #3: idempotency tests of the execution handler
# ---------------------------------------------------------------------------------------------------------------

def resolve_build_dir(root, build_opt):
    chosen = build_opt or os.environ.get("FOLLOWUPD_BUILD")
    if chosen:
        return os.path.abspath(chosen)
    return os.path.join(root, "build")


def _display_path(root, path):
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else rel.replace(os.sep, "/")


def check_idempotency(root, build_dir, run_tests):
    """(findings, pending note or None)."""
    if not os.path.isfile(os.path.join(root, IDEMPOTENCY_TEST_SRC)):
        return [], "pending: idempotency tests not written yet"
    if not run_tests:
        return [], "pending: idempotency tests not run (--no-run)"
    binary = os.path.join(build_dir, IDEMPOTENCY_TEST_BIN)
    shown = _display_path(root, binary)

    def blocker(why):
        return [Finding(IDEMPOTENCY_TEST_SRC, 1, why)], None

    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        return blocker(f"idempotency test binary {shown} not built (run make)")
    try:
        proc = subprocess.run([binary], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace", timeout=IDEMPOTENCY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return blocker(f"idempotency tests {shown} timed out after {IDEMPOTENCY_TIMEOUT_S}s")
    except OSError as e:
        return blocker(f"idempotency tests {shown} could not run: {e.strerror}")
    if proc.returncode != 0:
        return blocker(f"idempotency tests {shown} failed (exit status {proc.returncode})")
    passed = sum(int(n) for n in re.findall(r"\[  PASSED  \] (\d+) test", proc.stdout))
    if passed < 1:
        return blocker(f"idempotency tests {shown} reported no passing test")
    return [], None


# ---------------------------------------------------------------------------------------------------------------
# Issue #4: console output instead of the logger
# ---------------------------------------------------------------------------------------------------------------

_NOT_MEMBER = r"(?<![\w.>])"
_CONSOLE_CALL = re.compile(_NOT_MEMBER + r"(v?f?printf|v?dprintf|puts|perror|putchar)\s*\(")
_STREAM_CALL = re.compile(_NOT_MEMBER + r"(fputs|fputc|putc|fwrite)\s*\(")
_CONSOLE_WRITE = re.compile(_NOT_MEMBER + r"write\s*\(\s*(1|2|STDOUT_FILENO|STDERR_FILENO)\s*,")


def _call_arguments(code, open_paren):
    depth = 0
    for i in range(open_paren, len(code)):
        if code[i] == "(":
            depth += 1
        elif code[i] == ")":
            depth -= 1
            if depth == 0:
                return code[open_paren + 1:i]
    return code[open_paren + 1:]


def console_calls(code):
    """[(offset, call description)] of console output calls in comment/literal-free code."""
    calls = [(m.start(), f"{m.group(1)}()") for m in _CONSOLE_CALL.finditer(code)]
    for m in _STREAM_CALL.finditer(code):
        if re.search(r"\b(stdout|stderr)\b", _call_arguments(code, m.end() - 1)):
            calls.append((m.start(), f"{m.group(1)}() on stdout/stderr"))
    calls += [(m.start(), f"write({m.group(1)}, ...)") for m in _CONSOLE_WRITE.finditer(code)]
    return sorted(calls)


def check_console_output(root, cache):
    findings = []
    for rel in walk_files(root, "daemon", (".c", ".h")):
        if rel == LOG_MODULE:
            continue
        code = cache.lexed(rel).code
        spans = function_spans(code) if rel == CLI_MODULE else []
        for offset, call in console_calls(code):
            line = line_of(code, offset)
            if rel == CLI_MODULE and enclosing_function(spans, line) in CLI_TEXT_FUNCTIONS:
                continue
            findings.append(Finding(rel, line, f"{call} writes to the console; use the logger (utils/log.h)"))
    return findings


# ---------------------------------------------------------------------------------------------------------------
# Issue #5: SQL sent from outside the repositories
# ---------------------------------------------------------------------------------------------------------------

_SQL_SEND = re.compile(_NOT_MEMBER + r"(PQexec\w*|PQsendQuery\w*|PQprepare|PQsendPrepare)\s*\(")


def check_sql_outside_repositories(root, cache):
    findings = []
    for rel in walk_files(root, "daemon", (".c", ".h")):
        if is_sql_allowed_file(rel):
            continue
        code = cache.lexed(rel).code
        for m in _SQL_SEND.finditer(code):
            findings.append(Finding(rel, line_of(code, m.start()),
                                    f"{m.group(1)}() outside features/*/repositories/ and shared/db/"))
    return findings


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------

SECTIONS = (
    ("schemas", "Issue #1: Hardcoded Schema Names"),
    ("tenant", "Issue #2: Missing Tenant Filter"),
    ("idempotency", "Issue #3: Non-idempotent handler"),
    ("console", "Issue #4: console.log usage"),
    ("sql_outside", "Issue #5: SQL outside repositories"),
)


def format_report(results, notes):
    """results: {section key: [Finding]}, notes: {section key: pending line}. Returns (text, ready)."""
    lines = ["🔴 CRITICAL BLOCKERS (Cannot Deploy):"]
    ready = True
    for key, heading in SECTIONS:
        lines += ["", heading]
        findings = sorted(set(results.get(key, [])), key=lambda f: (f.path, f.line, f.why))
        if findings:
            ready = False
            lines += [f"{f.path}:{f.line}: {f.why}" for f in findings]
        elif notes.get(key):
            lines.append(notes[key])
        else:
            lines.append("none")
    lines.append("📊 Production Readiness: " + ("✅ READY" if ready else "❌ NOT READY"))
    return "\n".join(lines) + "\n", ready


def scan(root, build_dir, run_tests=True):
    cache = SourceCache(root)
    idem_findings, idem_note = check_idempotency(root, build_dir, run_tests)
    results = {
        "schemas": check_hardcoded_schemas(root, cache),
        "tenant": check_tenant_filter(root, cache),
        "idempotency": idem_findings,
        "console": check_console_output(root, cache),
        "sql_outside": check_sql_outside_repositories(root, cache),
    }
    return format_report(results, {"idempotency": idem_note})


def main(argv=None):
    ap = argparse.ArgumentParser(description="followupd compliance gate")
    ap.add_argument("root", nargs="?", default=".", help="repository root to scan (default: .)")
    ap.add_argument("--build", default=None,
                    help="build dir holding tests/test_followup_execution_service "
                         "(default: $FOLLOWUPD_BUILD, else ROOT/build)")
    ap.add_argument("--no-run", action="store_true", help="do not run the idempotency tests; report them pending")
    args = ap.parse_args(argv)
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        ap.error(f"not a directory: {args.root}")
    text, ready = scan(root, resolve_build_dir(root, args.build), run_tests=not args.no_run)
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.flush()
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
