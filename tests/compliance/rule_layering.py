"""rule_layering — Issue #5, SQL only from the repositories (and shared/db under them).

The database layer is found, not listed: libpq's headers, every header that includes one, and every module
(x.c + x.h) under features/*/repositories/ or shared/db/ that uses libpq (a PQ*/PG* name) or calls into another
database-layer module — to a fixpoint.  A module there that does neither (e.g. a pure naming helper) is not part
of it.  Then, for every file of a service, controller or route (daemon/src/features/*/{services,controllers,
routes}/):
- its include closure must not reach a database-layer header (the finding names the direct include it comes
  through);
- its code must not reference a libpq name or a function a database-layer header declares (calls, function
  pointers, macros alike);
- none of its strings may hold SQL.
And anywhere outside repositories/ and shared/db/: no call of a libpq function that sends SQL, and no call of a
database-layer function that takes SQL text (a parameter named sql or query).
"""
import re

import gate_c
import gate_sql
from gate_tree import LAYER_DIRS, Finding, Section, feature_layer, is_db_dir_file, is_repository_file, \
    is_sql_allowed_file, module_of

LIBPQ_HEADERS = re.compile(r"^(?:libpq-fe\.h|libpq-events\.h|libpq/.*|postgres_ext\.h|pg_config.*\.h)$")
_LIBPQ_NAME = re.compile(r"(?<![\w.>$])(?<!->)(PQ[a-z]\w*|PG(?:conn|result|notify|cancel|Ping|resAttDesc)\b|"
                         r"pgthreadlock_t|ConnStatusType|ExecStatusType|PostgresPollingStatusType)")
SQL_SENDING_PQ = re.compile(r"(?<![\w.>$])(?<!->)(PQexec\w*|PQsendQuery\w*|PQsendPrepare|PQprepare|"
                            r"PQsendDescribe\w*|PQdescribe\w*|PQputCopy\w*|PQfn|PQsendPipelineSync|"
                            r"PQpipelineSync)\s*\(")
_SQL_PARAMS = re.compile(r"\b(?:sql|query)\s*$")


def database_modules(tree):
    """{module path: why} of the database layer (see the module comment)."""
    modules = {}
    for rel in tree.c_files:
        modules.setdefault(module_of(rel), []).append(rel)
    layer = {}
    for mod, files in modules.items():
        for rel in files:
            exposes = rel.endswith(".h") and any(inc.system and LIBPQ_HEADERS.match(inc.target)
                                                 for inc, _ in tree.includes(rel))
            if exposes:
                layer[mod] = f"{rel} includes libpq"
            elif (is_repository_file(rel) or is_db_dir_file(rel)) and _LIBPQ_NAME.search(tree.lexed(rel).code):
                layer[mod] = "uses libpq"
    changed = True
    while changed:
        changed = False
        decls = _declared_by(tree, layer)
        for mod, files in modules.items():
            if mod in layer or not any(is_repository_file(r) or is_db_dir_file(r) for r in files):
                continue
            for rel in files:
                hit = _first_reference(tree, rel, decls) or _includes_layer(tree, rel, layer)
                if hit:
                    layer[mod] = hit
                    changed = True
                    break
    return layer


def _declared_by(tree, layer):
    """{function name: (module, parameter text)} declared by the headers of the database layer."""
    out = {}
    for mod in layer:
        header = mod + ".h"
        if header in tree.c_files:
            for name, params in gate_c.declared_functions(tree.lexed(header).code).items():
                out[name] = (mod, params)
    return out


def _first_reference(tree, rel, decls):
    for off, name in gate_c.references(tree.lexed(rel).code, set(decls)):
        if decls[name][0] != module_of(rel):
            return f"calls {name}() of {decls[name][0]}"
    return None


def _includes_layer(tree, rel, layer):
    for inc, resolved in tree.includes(rel):
        if resolved and module_of(resolved) in layer and module_of(resolved) != module_of(rel):
            return f"includes {resolved}"
    return None


def layer_files(tree):
    return [rel for rel in tree.c_files if feature_layer(rel) in LAYER_DIRS]


def check_layer_file(tree, rel, layer, decls):
    findings = []
    closure = tree.include_closure(rel)
    for target, via in sorted(closure.items()):
        libpq = target.startswith("<") and LIBPQ_HEADERS.match(target[1:-1])
        if libpq or (not target.startswith(("<", '"')) and module_of(target) in layer):
            how = "" if via == target or via == target[1:-1] else f" through {via}"
            findings.append(Finding(rel, _include_line(tree, rel, via, target),
                                    f"includes the database layer ({target.strip('<>')}){how}"))
    code = tree.lexed(rel).code
    for m in _LIBPQ_NAME.finditer(code):
        findings.append(Finding(rel, gate_c.line_of(code, m.start()), f"uses libpq ({m.group(1)})"))
    for off, name in gate_c.references(code, set(decls)):
        findings.append(Finding(rel, gate_c.line_of(code, off),
                                f"calls {name}() of the database layer ({decls[name][0]})"))
    for s in tree.strings(rel):
        if gate_sql.looks_like_sql(s.value):
            findings.append(Finding(rel, s.line, f"holds SQL text ({s.value.strip()[:40]!r})"))
    return findings


def _include_line(tree, rel, via, target):
    for inc, resolved in tree.includes(rel):
        if resolved == via or inc.target == via or resolved == target or inc.target == target.strip('<>"'):
            return inc.line
    return 1


def check_senders(tree, decls):
    """SQL sent from outside repositories/ and shared/db/: libpq sending calls, database functions taking SQL."""
    findings, sites = [], 0
    sql_takers = {n for n, (_, params) in decls.items()
                  if any(_SQL_PARAMS.search(p.split("[")[0]) for p in params.split(","))}
    for rel in tree.c_files:
        code = tree.lexed(rel).code
        sends = [(m.start(), m.group(1)) for m in SQL_SENDING_PQ.finditer(code)]
        sends += [(off, n) for off, n in gate_c.references(code, sql_takers)
                  if re.match(r"\s*\(", code[off + len(n):]) and decls[n][0] != module_of(rel)]
        if is_sql_allowed_file(rel):
            sites += len(sends)
            continue
        for off, name in sends:
            findings.append(Finding(rel, gate_c.line_of(code, off),
                                    f"{name}() sends SQL outside features/*/repositories/ and shared/db/"))
    return findings, sites, sql_takers


def check(root, tree):
    layer = database_modules(tree)
    decls = _declared_by(tree, layer)
    files = layer_files(tree)
    findings = []
    for rel in files:
        findings += check_layer_file(tree, rel, layer, decls)
    sender_findings, sites, takers = check_senders(tree, decls)
    findings += sender_findings
    evidence = (f"{len(files)} service/controller/route files and their include closures: no libpq or "
                f"database-layer header, call or SQL text allowed; database layer found: {len(layer)} modules "
                f"({', '.join(sorted(m.rsplit('/', 1)[-1] for m in layer))}), {len(decls)} functions; "
                f"{sites} SQL-sending call sites, all must be in repositories/ or shared/db/")
    return Section(findings, evidence, checked=bool(files) and bool(layer) and sites > 0)
