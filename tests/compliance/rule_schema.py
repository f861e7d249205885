"""rule_schema — Issue #1, no hard-coded schema in any SQL the project ships or sends.

Reads every SQL text: each C string (adjacent literals and string macros joined) under daemon/ that holds SQL of
any kind, every file under sql/ (migrations, rollback and anything added later) and the ```sql blocks of the
Markdown files there.  gate_sql.qualified_names() finds schema-qualified names in relation and routine positions
(any table, any schema: only a run-time placeholder `%s`/`%I`/`:var`, a system schema or OLD/NEW may qualify),
objects named after SCHEMA, and `SET search_path`/`set_config('search_path', ...)` given a literal (also as a
connection option, `-c search_path=x`, in any C string).  Two lexical
nets cover what is not parsed as SQL: `<name>.lead_bookings` and the LAD schema names (lad_dev, lad_prod, ...)
anywhere in those files, comments included.
"""
import re

import gate_sql
from gate_tree import DAEMON, SQL_DIR, Finding, Section, plural, walk_files

KNOWN_SCHEMAS = ("lad_dev", "lad_prod", "lad_stage", "lad_staging", "lad_test")
_QUALIFIED_LEAD_BOOKINGS = re.compile(
    r'(?<![\w$:%<])(?:"(?P<quoted>[A-Za-z_][\w$]*)"|(?P<bare>[A-Za-z_][\w$]*))\s*\.\s*"?lead_bookings\b',
    re.IGNORECASE)
_KNOWN_SCHEMA = re.compile(r"\b(" + "|".join(sorted(KNOWN_SCHEMAS, key=len, reverse=True)) + r")\b", re.IGNORECASE)
_OPTION_SEARCH_PATH = re.compile(r"search_path\s*(?:=|\s+to\s+)\s*(?P<value>[^\s%$:,;'\"\\][^\s,;'\"\\]*)",
                                 re.IGNORECASE)
_SQL_FENCE = re.compile(r"^```sql[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL | re.IGNORECASE)


def line_nets(rel, text):
    """Findings of the two lexical nets, line by line."""
    found = []
    for lineno, line in enumerate(text.split("\n"), 1):
        flat = line.replace('\\"', '"')
        named = set()
        for m in _QUALIFIED_LEAD_BOOKINGS.finditer(flat):
            schema = m.group("quoted") or m.group("bare")
            named.add(schema.lower())
            found.append(Finding(rel, lineno, f'hard-coded schema "{schema}" in a lead_bookings reference'))
        for m in _KNOWN_SCHEMA.finditer(flat):
            if m.group(1).lower() not in named:
                named.add(m.group(1).lower())
                found.append(Finding(rel, lineno, f'known schema literal "{m.group(1)}"'))
    return found


def option_findings(rel, tree):
    """search_path given a literal in a string that is not SQL: a connection option (`-c search_path=x` in
    PGOPTIONS or a conninfo's options)."""
    out = []
    for s in tree.strings(rel):
        if gate_sql.looks_like_sql(s.value):
            continue
        for m in _OPTION_SEARCH_PATH.finditer(s.value):
            out.append(Finding(rel, s.line, f"hard-coded search_path set to the literal {m.group('value')} in a "
                                            "connection option"))
    return out


def sql_findings(rel, sql, first_line, text_for_lines=None, offset_base=0):
    """Findings of gate_sql.qualified_names() for one SQL text that starts on first_line of rel."""
    out = []
    for ref in gate_sql.qualified_names(sql):
        line = first_line + (text_for_lines[offset_base:offset_base + ref.offset].count("\n")
                             if text_for_lines is not None else 0)
        out.append(Finding(rel, line, f"hard-coded {ref.why}"))
    return out


def check(root, tree):
    findings, counts = [], {"c_sql": 0, "c_files": set(), "sql_files": 0, "sql_statements": 0, "md_blocks": 0,
                            "search_path": 0}
    for rel in tree.c_files:
        findings += line_nets(rel, tree.text(rel)) + option_findings(rel, tree)
        for s in tree.sql_strings(rel):
            counts["c_sql"] += 1
            counts["c_files"].add(rel)
            counts["search_path"] += gate_sql.search_path_settings(s.value)
            findings += sql_findings(rel, s.value, s.line)
    sql_files = walk_files(root, SQL_DIR, (".sql",))
    for rel in sql_files:
        text = tree.text(rel)
        counts["sql_files"] += 1
        counts["sql_statements"] += len(gate_sql.split_statements(gate_sql.tokens(text)))
        counts["search_path"] += gate_sql.search_path_settings(text)
        findings += line_nets(rel, text) + sql_findings(rel, text, 1, text)
    for rel in walk_files(root, SQL_DIR, (".md",)):
        text = tree.text(rel)
        for m in _SQL_FENCE.finditer(text):
            counts["md_blocks"] += 1
            first = text.count("\n", 0, m.start(1)) + 1
            findings += sql_findings(rel, m.group(1), first, m.group(1))
    findings = _dedupe(findings)
    return Section(findings, _evidence(counts, sql_files, len(findings)),
                   checked=counts["c_sql"] > 0 and bool(sql_files))


def _dedupe(findings):
    seen, out = set(), []
    for f in findings:
        if (f.path, f.line) in seen and "lead_bookings reference" not in f.why and "known schema" not in f.why:
            continue
        seen.add((f.path, f.line))
        out.append(f)
    return out


def _evidence(counts, sql_files, n_found):
    by_dir = {}
    for rel in sql_files:
        d = rel.split("/")[1] if rel.count("/") >= 2 else "."
        by_dir[d] = by_dir.get(d, 0) + 1
    dirs = ", ".join(f"{n} {d}" for d, n in sorted(by_dir.items()))
    if counts["c_sql"] == 0 or not sql_files:
        return f"nothing to check: {counts['c_sql']} SQL strings under {DAEMON}/, {len(sql_files)} files under " \
               f"{SQL_DIR}/ (the check saw no SQL)"
    return (f"{plural(counts['c_sql'], 'SQL string')} in {plural(len(counts['c_files']), 'C file')}, "
            f"{plural(counts['sql_files'], 'file')} under {SQL_DIR}/ ({dirs}; "
            f"{plural(counts['sql_statements'], 'statement')}), {plural(counts['md_blocks'], 'SQL block')} in "
            f"{SQL_DIR}/*.md, {plural(counts['search_path'], 'search_path setting')}: "
            f"{plural(n_found, 'literal schema')}")
