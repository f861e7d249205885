"""gate_tree — the repository as the compliance checks see it: which files exist, what layer each belongs to, and
each C file read, lexed and macro-expanded once (Tree).  Also the two result types every check returns: Finding
(`path:line: why`, one line of the report) and Section (findings plus the one-line evidence of what was checked).
"""
import os
from collections import namedtuple

import gate_c
import gate_sql

Finding = namedtuple("Finding", "path line why")


class Section:
    """One issue's verdict: findings (each a blocker) and what was checked, as one line for the report.
    checked is False when the check could not look at anything (that is a blocker too)."""

    def __init__(self, findings, evidence, checked=True):
        self.findings = list(findings)
        self.evidence = evidence
        self.checked = checked

    @property
    def ok(self):
        return self.checked and not self.findings


SKIP_DIR_NAMES = {"tests", "fuzz", "bench", ".git", "build", "__pycache__"}
DAEMON = "daemon"
SQL_DIR = "sql"
LAYER_DIRS = ("services", "controllers", "routes")


def plural(n, word, words=None):
    """'1 file', '2 files' (words for an irregular plural)."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def is_skipped_dir(name):
    return name in SKIP_DIR_NAMES or name.startswith("build-")


def walk_files(root, top, suffixes):
    """Root-relative '/'-separated paths of files under root/top ending in one of suffixes, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
        dirnames[:] = sorted(d for d in dirnames if not is_skipped_dir(d))
        for name in filenames:
            if name.endswith(suffixes):
                found.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return sorted(found)


def read_text(root, rel):
    with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
        return f.read()


def feature_layer(rel):
    """'services' / 'controllers' / 'routes' / 'repositories' for daemon/src/features/<f>/<layer>/..., else None."""
    parts = rel.split("/")
    if len(parts) >= 6 and parts[:3] == ["daemon", "src", "features"]:
        return parts[4]
    return None


def is_repository_file(rel):
    return feature_layer(rel) == "repositories"


def is_db_dir_file(rel):
    return rel.startswith("daemon/src/shared/db/")


def is_sql_allowed_file(rel):
    return is_repository_file(rel) or is_db_dir_file(rel)


def module_of(rel):
    return rel.rsplit(".", 1)[0]


class Tree:
    """The daemon sources of one repository root, each read and lexed once."""

    def __init__(self, root):
        self.root = root
        self._text, self._lexed, self._macros, self._includes = {}, {}, {}, {}
        self.c_files = walk_files(root, DAEMON, (".c", ".h"))

    def text(self, rel):
        if rel not in self._text:
            self._text[rel] = read_text(self.root, rel)
        return self._text[rel]

    def lexed(self, rel):
        if rel not in self._lexed:
            self._lexed[rel] = gate_c.lex_c(self.text(rel))
        return self._lexed[rel]

    def includes(self, rel):
        """[(Include, resolved root-relative path or None)]."""
        if rel not in self._includes:
            self._includes[rel] = [(inc, None if inc.system else gate_c.resolve_include(self.root, rel, inc.target))
                                   for inc in gate_c.includes(self.text(rel), self.lexed(rel))]
        return self._includes[rel]

    def include_closure(self, rel):
        """{resolved project header: the direct include of rel it is reached through} plus system headers
        ('<name>': direct include)."""
        seen = {}
        stack = [(rel, None)]
        while stack:
            cur, via = stack.pop()
            for inc, resolved in self.includes(cur):
                key = resolved if resolved else ("<" + inc.target + ">" if inc.system else '"' + inc.target + '"')
                if key in seen:
                    continue
                seen[key] = via or (resolved or inc.target)
                if resolved:
                    stack.append((resolved, seen[key]))
        return seen

    def macros(self, rel, _depth=0):
        """String macros visible in rel: its project includes' (transitively) and its own."""
        if rel not in self._macros:
            known = {}
            if _depth < 8:
                for inc, resolved in self.includes(rel):
                    if resolved and resolved != rel:
                        known.update(self.macros(resolved, _depth + 1))
            self._macros[rel] = gate_c.string_macros(self.lexed(rel), known)
        return self._macros[rel]

    def strings(self, rel):
        """[CString] of rel with string macros expanded and adjacent literals joined."""
        return gate_c.sql_strings(self.lexed(rel), self.macros(rel))

    def sql_strings(self, rel):
        """[CString] of rel that hold SQL (any statement kind)."""
        return [s for s in self.strings(rel) if gate_sql.looks_like_sql(s.value)]
