"""gate_sql — what the compliance gate reads from SQL text, lexically (stdlib only).

A tokenizer that knows PostgreSQL's quoting (strings, E'' strings, dollar quotes, quoted identifiers, comments),
`$n` parameters and the run-time placeholders the project uses (`%s`/`%I` format conversions, psql `:var`); the
tests of whether a text is SQL at all; and qualified_names(): every schema-qualified name in a relation or
routine position (FROM and each item of its list, JOIN, UPDATE, INTO, USING, TABLE, ON, REFERENCES,
CREATE/ALTER/DROP <object>, COMMENT ON ..., `'x.y'::regclass`, `schema.func(`), every object named after SCHEMA,
and every `SET search_path`/`set_config('search_path', ...)` given a literal; dollar-quoted bodies and string
literals that hold SQL (EXECUTE '...') are read as SQL too.  gate_bind builds the tenant analysis on these tokens.
"""
import re
from collections import namedtuple

_SQL_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<str>(?:[EeBbXxNn]|[Uu]&)?'(?:[^']|'')*(?:'|\Z))
  | (?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$(?P<body>.*?)(?:\$(?(tag)(?P=tag))\$|\Z))
  | (?P<ident>"(?:[^"]|"")*"?)
  | (?P<param>\$\d+)
  | (?P<cast>::)
  | (?P<placeholder>%[-+ #0-9.]*[a-zA-Z]|:'?"?[A-Za-z_]\w*"?'?)
  | (?P<word>[A-Za-z_][\w$]*)
  | (?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
  | (?P<op>[<>=!~+\-*/^|&#@?%]+)
  | (?P<punct>[(),;.\[\]])
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)

Tok = namedtuple("Tok", "kind text depth start end body")

KEYWORDS = set("""
select from where and or not null true false is in as on case when then else end distinct all any some exists
between like ilike similar escape interval epoch year month day hour minute second milliseconds microseconds
timestamp timestamptz date time zone with without at local cast array row nulls first last asc desc limit offset
over partition by filter within group order having window fetch next only rows row returning into values default
set update insert delete merge using join inner left right full outer cross natural lateral union intersect except
for share key no nowait skip locked recursive materialized conflict do nothing constraint current_timestamp
current_date current_time localtimestamp unknown collate text integer int bigint smallint boolean numeric real
double precision varchar character char uuid json jsonb bytea name oid regclass interval_ isnull notnull
""".split())

CLAUSE_ENDS = {"group", "order", "having", "limit", "offset", "for", "returning", "window", "fetch", "on"}
SET_OPERATORS = {"union", "intersect", "except"}
JOIN_WORDS = {"join", "inner", "left", "right", "full", "outer", "cross", "natural"}
SYSTEM_SCHEMAS = {"pg_catalog", "information_schema", "pg_temp", "pg_toast"}
_ROW_QUALIFIERS = {"old", "new", "excluded"}
DATA_VERBS = {"select", "with", "insert", "update", "delete", "merge", "truncate", "copy", "values", "table"}
TENANT = "tenant_id"
ID_COLUMNS = {"id", TENANT}


def tokens(sql):
    """Tokens with their paren depth; words and quoted identifiers lower-cased / unquoted."""
    toks, depth = [], 0
    for m in _SQL_TOKEN.finditer(sql):
        kind = m.lastgroup
        if kind in ("tag", "body"):
            kind = "dollar"
        if kind in ("ws", "comment"):
            continue
        text, body = m.group(kind), None
        if kind == "ident":
            kind, text = "word", (text[1:-1] if len(text) >= 2 and text.endswith('"') else text[1:]).replace('""', '"')
        elif kind == "word":
            text = text.lower()
        elif kind == "dollar":
            body = m.group("body")
        elif kind == "str":
            body = re.sub(r"^(?:[EeBbXxNn]|[Uu]&)?'", "", text)
            body = (body[:-1] if body.endswith("'") else body).replace("''", "'")
        if kind == "punct" and text in ")]":
            depth = max(0, depth - 1)
        toks.append(Tok(kind, text, depth, m.start(), m.end(), body))
        if kind == "punct" and text in "([":
            depth += 1
    return toks


def split_statements(toks):
    """Top-level statements of a script (split at `;` at depth 0)."""
    out, cur = [], []
    for t in toks:
        if t.kind == "punct" and t.text == ";" and t.depth == 0:
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        out.append(cur)
    return out


def is_word(t, *words):
    return t is not None and t.kind == "word" and (not words or t.text in words)


def is_punct(t, text):
    return t is not None and t.kind == "punct" and t.text == text


def tok_at(toks, i):
    return toks[i] if 0 <= i < len(toks) else None


def close_of(toks, i):
    """Index of the token closing the bracket at toks[i]."""
    depth = toks[i].depth
    for k in range(i + 1, len(toks)):
        if toks[k].kind == "punct" and toks[k].text in ")]" and toks[k].depth == depth:
            return k
    return len(toks)


def inner_of(toks, i):
    return toks[i + 1:close_of(toks, i)]


def rebase(toks):
    if not toks:
        return toks
    base = toks[0].depth
    return [t._replace(depth=t.depth - base) for t in toks]


def strip_parens(toks):
    while len(toks) >= 2 and is_punct(toks[0], "(") and close_of(toks, 0) == len(toks) - 1:
        toks = rebase(toks[1:-1])
    return toks


def is_op(t, text):
    return t is not None and t.kind == "op" and t.text == text


def top_split(toks, is_sep):
    """toks split at separators that are at the base depth of toks."""
    if not toks:
        return []
    base = toks[0].depth
    parts, cur = [], []
    for t in toks:
        if t.depth == base and is_sep(t):
            parts.append(cur)
            cur = []
        else:
            cur.append(t)
    parts.append(cur)
    return parts


def top_index(toks, words, start=0):
    base = toks[0].depth if toks else 0
    for i in range(start, len(toks)):
        if toks[i].depth == base and toks[i].kind == "word" and toks[i].text in words:
            return i
    return -1


# ---------------------------------------------------------------------------------------------------------------
# Statement start
# ---------------------------------------------------------------------------------------------------------------

_NAME = r'(?:"[^"]+"|[\w%$:]+)(?:\s*\.\s*(?:"[^"]+"|[\w%$]+))*'
_SQL_START = re.compile(
    r"^\s*(?:\(\s*)*(?:select\b|values\s*\("
    r"|with\s+(?:recursive\s+)?[\w\"]+\s*(?:\([^)]*\)\s*)?as\s*(?:(?:not\s+)?materialized\s*)?\("
    r"|insert\s+into\b|merge\s+into\b|delete\s+from\b|truncate\b(?:\s+table)?\s+" + _NAME +
    r"|copy\s+(?:\(|" + _NAME + r"\s+(?:from|to)\b)"
    r"|update\s+(?:only\s+)?" + _NAME + r"\s+(?:(?:as\s+)?\w+\s+)?set\b)", re.IGNORECASE | re.DOTALL)
_ANY_SQL_START = re.compile(
    r"^\s*(?:(?:create|alter|drop)\s+(?:or\s+replace\s+|unique\s+|temp(?:orary)?\s+|unlogged\s+|materialized\s+)*"
    r"(?:table|index|view|function|procedure|trigger|schema|sequence|type|domain|extension|role|user|database|policy"
    r"|rule|aggregate|publication|subscription|event\s+trigger|default\s+privileges)\b"
    r"|comment\s+on\s+\w+|(?:grant|revoke)\s+[\w\s,]+\s+(?:on|to|from)\s"
    r"|set\s+(?:local\s+|session\s+)?[\w.]+\s*(?:to\b|=)|set\s+(?:local\s+|session\s+)?(?:role|schema)\b"
    r"|set_config\s*\(|reset\s+\w+\s*;?\s*$|(?:un)?listen\s+\S+\s*;?\s*$|notify\s+[\w%\"]+\s*(?:,\s*(?:'.*'|\$\d+|%s))?\s*;?\s*$"
    r"|(?-i:BEGIN|COMMIT|ROLLBACK|END|ABORT)(?:\s+(?:transaction|work|isolation\b.*))?\s*(?:;.*)?$"
    r"|start\s+transaction\b|savepoint\s+\w+\s*;?\s*$|release\s+savepoint\b|rollback\s+to\b"
    r"|do\s+(?:language\s+\w+\s+)?\$|lock\s+(?:table\s+)?[\w%.\"]+\s*(?:in\b|;|$)|vacuum\b|analyze\s+[\w%.\"]+\s*;?$"
    r"|explain\s+(?:\(.*\)\s*)?(?:analyze\s+)?(?:select|insert|update|delete|with)\b|prepare\s+\w+\s*(?:\(.*\))?\s*as\b"
    r"|execute\s+\w+\s*(?:\(|;|$)|deallocate\b|call\s+[\w%.\"]+\s*\(|discard\s+(?:all|plans|temp)\b"
    r"|show\s+[\w.]+\s*;?\s*$|refresh\s+materialized\b|reindex\b|cluster\b)",
    re.IGNORECASE | re.DOTALL)


def is_data_statement_text(text):
    return bool(_SQL_START.match(text))


def looks_like_sql(text):
    """A statement or script of any kind (data, DDL, session, transaction control)."""
    return bool(_SQL_START.match(text) or _ANY_SQL_START.match(text))


# ---------------------------------------------------------------------------------------------------------------
# Schema-qualified names
# ---------------------------------------------------------------------------------------------------------------

_RELATION_WORDS = {"from", "using", "join", "update", "into", "table", "truncate", "references", "index", "view",
                   "sequence", "function", "procedure", "trigger", "type", "domain", "policy", "rule",
                   "aggregate", "operator", "collation", "extension", "materialized", "statistics"}
_NAME_MODIFIERS = {"only", "if", "not", "exists", "concurrently", "or", "replace", "lateral", "table", "view",
                   "unique", "temporary", "temp", "unlogged", "materialized", "constraint", "trigger"}
_REG_TYPES = {"regclass", "regproc", "regprocedure", "regtype", "regnamespace", "regoper", "regoperator",
              "regconfig", "regdictionary", "regrole", "regcollation"}
_REG_FUNCS = {"to_regclass", "to_regproc", "to_regprocedure", "to_regtype", "to_regnamespace", "to_regoper",
              "to_regoperator", "to_regrole", "to_regcollation", "nextval", "currval", "setval",
              "pg_relation_size", "pg_total_relation_size", "pg_table_size", "pg_indexes_size"}
SchemaRef = namedtuple("SchemaRef", "offset why")


def _is_runtime(t):
    return t.kind in ("placeholder", "param")


def name_at(toks, i):
    """(parts as tokens, index after the name) of a dotted name starting at toks[i]."""
    parts = []
    while i < len(toks) and toks[i].kind in ("word", "placeholder"):
        parts.append(toks[i])
        if is_punct(tok_at(toks, i + 1), ".") and tok_at(toks, i + 2) is not None and \
                tok_at(toks, i + 2).kind in ("word", "placeholder"):
            i += 2
        else:
            i += 1
            break
    return parts, i


def _qualifier_problem(parts, allowed_parts=1):
    """Why a name of these parts is schema-qualified by a literal, or None."""
    if len(parts) <= allowed_parts:
        return None
    qual = parts[0]
    if _is_runtime(qual) or qual.text in SYSTEM_SCHEMAS or qual.text in _ROW_QUALIFIERS:
        return None
    return f'schema "{qual.text}" in {".".join(p.text for p in parts)}'


def _string_name_problem(value, cast):
    if cast == "regnamespace" or cast == "to_regnamespace":
        return f'schema "{value}" named by {cast}'
    parts = [p.strip().strip('"') for p in re.split(r"\.(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", value)]
    if len(parts) > 1 and parts[0].lower() not in SYSTEM_SCHEMAS and not parts[0].startswith("%"):
        return f'schema "{parts[0]}" in {value} ({cast})'
    return None


def _relation_positions(toks):
    """Yield (index of the name's first token, allowed parts) for names in relation/routine positions."""
    last_context = None
    for i, t in enumerate(toks):
        if t.kind != "word":
            continue
        if t.text in JOIN_WORDS or t.text in ("index", "trigger", "policy", "rule", "grant", "revoke", "comment"):
            last_context = t.text
        if t.text == "on":
            if last_context in JOIN_WORDS:
                continue
            nxt = tok_at(toks, i + 1)
            if is_word(nxt, "column"):
                yield i + 2, 2
                continue
            if is_word(nxt, "conflict", "commit", "delete", "update", "each", "true", "false"):
                continue
            yield i + 1, 1
        elif t.text in _RELATION_WORDS:
            if t.text == "from" and not _in_statement_group(toks, i):
                continue  # extract(epoch FROM x), substring(s FROM p): an argument, not a table
            if t.text == "update" and is_word(tok_at(toks, i - 1), "for", "key", "no"):
                continue  # FOR UPDATE / FOR NO KEY UPDATE: a row lock
            k = i + 1
            while is_word(tok_at(toks, k)) and toks[k].text in _NAME_MODIFIERS and \
                    not is_punct(tok_at(toks, k + 1), "."):
                k += 1
            yield k, 1
            if t.text in ("from", "using"):
                yield from _list_items_after(toks, i)


def _in_statement_group(toks, i):
    """True when toks[i] is at depth 0 or directly inside a parenthesized statement (not a function call)."""
    depth = toks[i].depth
    if depth == 0:
        return True
    for k in range(i - 1, -1, -1):
        if toks[k].depth == depth - 1 and is_punct(toks[k], "("):
            first = tok_at(toks, k + 1)
            return is_word(first) and first.text in DATA_VERBS
    return True


_LIST_ENDS = {"where", "group", "order", "having", "limit", "offset", "for", "returning", "window", "union",
              "intersect", "except", "on", "set", "when", "values", "select", "into"}


def _list_items_after(toks, i):
    """Yield (index, 1) for each item after a top-level comma of the FROM/USING list starting at toks[i]."""
    depth = toks[i].depth
    for k in range(i + 1, len(toks)):
        t = toks[k]
        if t.depth < depth or (t.depth == depth and (is_punct(t, ";") or (is_word(t) and t.text in _LIST_ENDS))):
            return
        if t.depth == depth and is_punct(t, ","):
            j = k + 1
            while is_word(tok_at(toks, j), "lateral", "only"):
                j += 1
            yield j, 1


def qualified_names(sql, depth_limit=4):
    """[SchemaRef] of literal schema qualifications and literal search_path settings in a SQL text or script."""
    toks = tokens(sql)
    found = []
    for start, allowed in _relation_positions(toks):
        if start < len(toks) and toks[start].kind in ("word", "placeholder"):
            parts, _ = name_at(toks, start)
            why = _qualifier_problem(parts, allowed)
            if why:
                found.append(SchemaRef(toks[start].start, why))
    found += _schema_keyword_refs(toks) + _routine_refs(toks) + _regclass_refs(toks) + search_path_refs(toks)
    if depth_limit > 0:
        for t in toks:
            inner = t.body if t.kind == "dollar" else (t.body if t.kind == "str" and looks_like_sql(t.body or "")
                                                       else None)
            if inner:
                offset = t.start + (len(t.text) - len(inner)) if t.kind == "str" else t.start
                found += [SchemaRef(offset + r.offset, r.why) for r in qualified_names(inner, depth_limit - 1)]
    first_per_offset = {}
    for ref in found:
        first_per_offset.setdefault(ref.offset, ref)
    return sorted(first_per_offset.values())


def _schema_keyword_refs(toks):
    out = []
    for i, t in enumerate(toks):
        if is_word(t, "schema") and not is_punct(tok_at(toks, i - 1), "."):
            k = i + 1
            while is_word(tok_at(toks, k), "if", "not", "exists"):
                k += 1
            nxt = tok_at(toks, k)
            if nxt is not None and nxt.kind in ("word", "str") and nxt.text not in KEYWORDS | {"authorization"}:
                out.append(SchemaRef(nxt.start, f'schema "{nxt.body or nxt.text}" named in SQL'))
    return out


def _routine_refs(toks):
    out = []
    for i, t in enumerate(toks):
        if t.kind == "word" and is_punct(tok_at(toks, i + 1), ".") and not is_punct(tok_at(toks, i - 1), "."):
            parts, k = name_at(toks, i)
            if len(parts) >= 2 and is_punct(tok_at(toks, k), "("):
                why = _qualifier_problem(parts)
                if why:
                    out.append(SchemaRef(t.start, why + "()"))
    return out


def _regclass_refs(toks):
    out = []
    for i, t in enumerate(toks):
        if t.kind != "str":
            continue
        nxt, after = tok_at(toks, i + 1), tok_at(toks, i + 2)
        prev, before = tok_at(toks, i - 1), tok_at(toks, i - 2)
        cast = None
        if nxt is not None and nxt.kind == "cast" and is_word(after) and after.text in _REG_TYPES:
            cast = after.text
        elif is_punct(prev, "(") and is_word(before) and before.text in _REG_FUNCS:
            cast = before.text
        if cast:
            why = _string_name_problem(t.body or "", cast)
            if why:
                out.append(SchemaRef(t.start, why))
    return out


def search_path_refs(toks):
    """[SchemaRef] of search_path set to a literal (SET ... search_path, set_config('search_path', ...))."""
    out = []
    for i, t in enumerate(toks):
        if is_word(t, "search_path") and is_word(tok_at(toks, i - 1), "set", "session", "local"):
            k = i + 1
            if is_word(tok_at(toks, k), "to") or (tok_at(toks, k) is not None and toks[k].text == "="):
                k += 1
            value = tok_at(toks, k)
            if value is not None and not _is_runtime(value) and value.kind in ("word", "str") and \
                    value.text not in ("default",):
                out.append(SchemaRef(t.start, f"search_path set to the literal {value.body or value.text}"))
        elif is_word(t, "set_config") and is_punct(tok_at(toks, i + 1), "("):
            args = top_split(inner_of(toks, i + 1), lambda x: is_punct(x, ","))
            if len(args) >= 2 and args[0] and args[0][0].kind == "str" and args[0][0].body == "search_path" and \
                    args[1] and args[1][0].kind == "str":
                out.append(SchemaRef(t.start, f"search_path set to the literal {args[1][0].body}"))
    return out


def search_path_settings(sql):
    """Number of places that set search_path at all (literal or at run time)."""
    toks = tokens(sql)
    n = sum(1 for i, t in enumerate(toks) if is_word(t, "search_path") and
            is_word(tok_at(toks, i - 1), "set", "session", "local"))
    n += sum(1 for i, t in enumerate(toks) if t.kind == "str" and t.body == "search_path" and
             is_punct(tok_at(toks, i - 1), "(") and is_word(tok_at(toks, i - 2), "set_config"))
    return n
