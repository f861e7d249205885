"""gate_bind — which tenant a SQL data statement is bound to, and what it returns (stdlib only).

analyze() parses each data statement of a SQL text (SELECT/INSERT/UPDATE/DELETE/MERGE/TRUNCATE/COPY, WITH and its
CTEs, set operations, subqueries anywhere, FROM lists and JOINs) with gate_sql's tokens and reports which tables
it reads and writes, whether each is bound to one tenant, and what a read returns.  A table is bound when a
top-level AND-conjunct of its WHERE (or of a JOIN's ON) is `[alias.]tenant_id = $n` (casts allowed, either side,
`(.., tenant_id) = (.., $n)` too), or `alias.id` / `alias.tenant_id` equals the same column of a bound relation,
or `[alias.](id|tenant_id) IN (a bound subquery)`.  A CTE or subquery is bound when everything it reads is.  A
mention that is not such a predicate (`tenant_id IS NOT NULL`, under OR, in a select list, in a comment or string)
binds nothing.  An INSERT is bound when its column list names tenant_id and every row gives it a `$n` (or it
selects it from a bound read).
"""
from collections import namedtuple

from gate_sql import (tokens, split_statements, is_word, is_punct, is_op, tok_at, close_of, inner_of, top_split,
                      top_index, name_at, rebase, strip_parens, is_data_statement_text, KEYWORDS, CLAUSE_ENDS,
                      SET_OPERATORS, JOIN_WORDS, SYSTEM_SCHEMAS, TENANT, ID_COLUMNS)


class Rel:
    """One relation a statement level reads or writes."""

    def __init__(self, kind, name, alias=None, bound=False, info=None):
        self.kind = kind            # table | cte | sub | func | catalog
        self.name = name
        self.alias = alias or name
        self.bound = bound
        self.info = info

    @property
    def is_table(self):
        return self.kind == "table"


class Info:
    """What one statement does: verb, tables read/written, whether every table is tenant-bound, problems,
    what it returns (column references of its select list / RETURNING), nested statements."""

    def __init__(self, verb):
        self.verb = verb
        self.tables = []            # names of real tables (reads and writes, every level)
        self.writes = []            # (verb, table name)
        self.problems = []
        self.returns = []           # column names (or "*") of the top-level output
        self.bound = True

    def absorb(self, other):
        self.tables += other.tables
        self.writes += other.writes
        self.problems += other.problems
        self.bound = self.bound and other.bound


def analyze(sql):
    """Info for every data statement of a SQL text: [(statement text, Info)]."""
    out = []
    for stmt in split_statements(tokens(sql)):
        text = sql[stmt[0].start:stmt[-1].end]
        if is_data_statement_text(text):
            out.append((text, analyze_tokens(rebase(stmt), {}, set())))
    return out


def analyze_tokens(toks, env, outer):
    """Info of one statement given as tokens (depth 0 at its top level); env maps CTE names to bound-ness,
    outer is the set of aliases bound in enclosing levels."""
    toks = strip_parens(toks)
    if not toks:
        return Info("empty")
    analyzer = _ANALYZERS.get(toks[0].text if toks[0].kind in ("word", "punct") else None)
    return analyzer(toks, env, outer) if analyzer else Info("other")


def _analyze_with(toks, env, outer):
    info = Info("with")
    env = dict(env)
    i = 1
    if is_word(tok_at(toks, i), "recursive"):
        i += 1
    while i < len(toks):
        name = toks[i].text
        k = i + 1
        while k < len(toks) and not (is_punct(toks[k], "(") and toks[k].depth == 0 and
                                     is_word(tok_at(toks, k - 1), "as", "materialized")):
            k += 1
        if k >= len(toks):
            info.problems.append("WITH whose CTEs could not be read")
            info.bound = False
            return info
        end = close_of(toks, k)
        body = analyze_tokens(rebase(toks[k + 1:end]), env, outer)
        for p in body.problems:
            info.problems.append(f"CTE {name}: {p}")
        info.tables += body.tables
        info.writes += body.writes
        env[name] = body.bound
        i = end + 1
        if is_punct(tok_at(toks, i), ","):
            i += 1
            continue
        break
    main = analyze_tokens(rebase(toks[i:]), env, outer)
    info.verb = main.verb
    info.tables += main.tables
    info.writes += main.writes
    info.problems += main.problems
    info.returns = main.returns
    info.bound = all(env.values()) and main.bound and not info.problems
    return info


def _analyze_select(toks, env, outer):
    info = Info("select")
    parts = top_split(toks, lambda t: is_word(t) and t.text in SET_OPERATORS)
    for n, part in enumerate(parts):
        part = [t for t in part if not (is_word(t, "all", "distinct") and t is part[0])]
        sub = _analyze_select_part(strip_parens(part), env, outer)
        if n == 0:
            info.returns = sub.returns
        info.absorb(sub)
    return info


def _analyze_select_part(toks, env, outer):
    info = Info("select")
    if not toks:
        return info
    if is_punct(toks[0], "("):
        return analyze_tokens(rebase(inner_of(toks, 0)), env, outer)   # (SELECT ...) ORDER BY ...
    if is_word(toks[0], "values"):
        _nested(toks, env, outer, info)
        return info
    if is_word(toks[0], "table"):
        parts, _ = name_at(toks, 1)
        return _judge(info, [_relation(parts, None, env)], [], toks, env, outer, "SELECT")
    from_i = top_index(toks, {"from"})
    where_i = top_index(toks, {"where"})
    tail_i = top_index(toks, CLAUSE_ENDS - {"on"}, max(from_i, 0))
    list_end = from_i if from_i >= 0 else min([i for i in (where_i, tail_i) if i >= 0], default=len(toks))
    info.returns = output_columns(toks[1:list_end])
    rels, conds = [], []
    if from_i >= 0:
        from_end = min([i for i in (where_i, tail_i) if i > from_i], default=len(toks))
        rels, conds = _from_items(toks[from_i + 1:from_end], env, outer, info)
    return _judge(info, rels, conds + [_clause(toks, where_i)], toks, env, outer, "SELECT")


def _clause(toks, start):
    if start < 0:
        return []
    end = top_index(toks, CLAUSE_ENDS - {"on"}, start + 1)
    return toks[start + 1:end if end >= 0 else len(toks)]


def _judge(info, rels, cond_lists, toks, env, outer, verb):
    """Bind each table of rels through the conjuncts of cond_lists; record problems; analyze nested statements."""
    conjuncts = [c for cond in cond_lists for c in conjuncts_of(cond)]
    bound = _bind(rels, conjuncts, env, outer)
    for rel in rels:
        if rel.kind == "table":
            info.tables.append(rel.name)
            if not rel.bound:
                info.problems.append(f"{verb} {_verb_preposition(verb)} {rel.name} without tenant_id = $n")
                info.bound = False
        elif rel.kind in ("cte", "sub") and not rel.bound:
            info.bound = False
        if rel.info is not None:
            info.absorb(rel.info)
    _nested(toks, env, outer | bound, info, skip_from=True)
    return info


def _verb_preposition(verb):
    return {"SELECT": "from", "UPDATE": "of", "DELETE": "from", "INSERT": "into", "MERGE": "into"}.get(verb, "of")


def _nested(toks, env, outer, info, skip_from=False):
    """Analyze every parenthesized statement inside toks that is not a FROM item (those are analyzed as
    relations), adding its tables and problems to info."""
    i = 0
    while i < len(toks):
        t = toks[i]
        if is_punct(t, "(") and is_word(tok_at(toks, i + 1)) and toks[i + 1].text in ("select", "with", "values") \
                and not (skip_from and _is_from_item(toks, i)):
            end = close_of(toks, i)
            sub = analyze_tokens(rebase(toks[i + 1:end]), env, outer)
            info.absorb(sub)
            i = end + 1
            continue
        i += 1


def _is_from_item(toks, i):
    """True when the '(' at toks[i] opens a subquery in a FROM list or JOIN (analyzed as a relation)."""
    prev = tok_at(toks, i - 1)
    return is_word(prev, "from", "join", "lateral", "using") or (is_punct(prev, ",") and _in_from_list(toks, i))


def _in_from_list(toks, i):
    depth = toks[i].depth
    for k in range(i - 1, -1, -1):
        if toks[k].depth == depth and toks[k].kind == "word":
            if toks[k].text in ("from", "join", "using"):
                return True
            if toks[k].text in ("select", "where", "set", "returning", "values", "on", "group", "order"):
                return False
    return False


def _from_items(toks, env, outer, info):
    """(relations, ON conditions) of a FROM list (or UPDATE ... FROM / DELETE ... USING / MERGE ... USING)."""
    rels, conds = [], []
    cur = []

    def flush():
        if cur:
            rel = _from_item(cur, env, outer)
            if rel is not None:
                rels.append(rel)
        cur.clear()

    i = 0
    while i < len(toks):
        t = toks[i]
        if t.depth == toks[0].depth and is_punct(t, ","):
            flush()
        elif t.depth == toks[0].depth and is_word(t) and t.text in JOIN_WORDS:
            flush()
            while is_word(tok_at(toks, i)) and toks[i].text in JOIN_WORDS:
                i += 1
            continue
        elif t.depth == toks[0].depth and is_word(t, "on"):
            flush()
            end = i + 1
            while end < len(toks) and not (toks[end].depth == toks[0].depth and
                                           (is_punct(toks[end], ",") or (is_word(toks[end]) and
                                                                         toks[end].text in JOIN_WORDS))):
                end += 1
            conds.append(toks[i + 1:end])
            i = end
            continue
        elif t.depth == toks[0].depth and is_word(t, "using") and is_punct(tok_at(toks, i + 1), "("):
            flush()
            cols = [c.text for c in inner_of(toks, i + 1) if c.kind == "word"]
            if TENANT in cols and len(rels) >= 2:
                conds.append(_synthetic_join(rels[-2], rels[-1]))
            i = close_of(toks, i + 1) + 1
            continue
        else:
            cur.append(t)
        i += 1
    flush()
    return rels, conds


def _synthetic_join(a, b):
    text = f"{a.alias}.tenant_id = {b.alias}.tenant_id"
    return tokens(text)


def _from_item(toks, env, outer):
    toks = [t for t in toks if not is_word(t, "lateral", "only")]
    if not toks:
        return None
    if is_punct(toks[0], "("):
        end = close_of(toks, 0)
        inner = rebase(toks[1:end])
        alias = _alias_after(toks, end + 1)
        if inner and is_word(inner[0]) and inner[0].text in ("select", "with", "values"):
            sub = analyze_tokens(inner, env, outer)
            return Rel("sub", alias or "(subquery)", alias, sub.bound and not sub.problems, sub)
        return Rel("func", alias or "(...)", alias, True)
    parts, k = name_at(toks, 0)
    if not parts:
        return None
    if is_punct(tok_at(toks, k), "("):
        return Rel("func", parts[-1].text, _alias_after(toks, close_of(toks, k) + 1), True)
    return _relation(parts, _alias_after(toks, k), env)


def _relation(parts, alias, env):
    names = [p.text for p in parts]
    if len(names) == 1 and names[0] in env:
        return Rel("cte", names[0], alias, env[names[0]])
    if names[-1].startswith("pg_") or (len(names) > 1 and names[0] in SYSTEM_SCHEMAS):
        return Rel("catalog", names[-1], alias, True)
    return Rel("table", names[-1], alias)


def _alias_after(toks, k):
    if is_word(tok_at(toks, k), "as"):
        k += 1
    t = tok_at(toks, k)
    if is_word(t) and t.text not in KEYWORDS:
        return t.text
    return None


def conjuncts_of(toks):
    """Top-level AND-conjuncts of a condition (parenthesized AND groups flattened); [] under a top-level OR."""
    toks = strip_parens(rebase(toks)) if toks else []
    if not toks:
        return []
    if any(is_word(t, "or") and t.depth == 0 for t in toks):
        return []
    out, cur, between = [], [], False
    for t in toks:
        if t.depth == 0 and is_word(t, "between"):
            between = True
        if t.depth == 0 and is_word(t, "and"):
            if between:
                between = False
            else:
                out.append(cur)
                cur = []
                continue
        cur.append(t)
    out.append(cur)
    flat = []
    for c in out:
        inner = strip_parens(rebase(c)) if c else c
        if inner is not c and inner and len(inner) < len(c) and any(is_word(t, "and") and t.depth == 0
                                                                     for t in inner):
            flat += conjuncts_of(inner)
        else:
            flat.append(rebase(c) if c else c)
    return [c for c in flat if c]


def _column_ref(toks):
    """(qualifier or None, column) when toks is `[q.]col[::type...]`, else None."""
    toks = _drop_cast(toks)
    if len(toks) == 1 and toks[0].kind == "word":
        return None, toks[0].text
    if len(toks) == 3 and toks[0].kind in ("word", "placeholder") and is_punct(toks[1], ".") and \
            toks[2].kind == "word":
        return toks[0].text, toks[2].text
    return None


def _is_param(toks):
    toks = _drop_cast(toks)
    return len(toks) == 1 and toks[0].kind == "param"


def _drop_cast(toks):
    for i, t in enumerate(toks):
        if t.kind == "cast" and t.depth == toks[0].depth:
            return toks[:i]
    return toks


Binder = namedtuple("Binder", "kind ref other")


def _binders(conj, env, outer):
    """[Binder] a conjunct offers: ('param', ref), ('join', ref, ref), ('in', ref, bound?)."""
    eq = [i for i, t in enumerate(conj) if t.depth == 0 and t.kind == "op" and t.text == "="]
    if len(eq) == 1:
        left, right = rebase(conj[:eq[0]]), rebase(conj[eq[0] + 1:])
        if left and right and is_punct(left[0], "(") and is_punct(right[0], "("):
            return _row_binders(left, right)
        lref, rref = _column_ref(left), _column_ref(right)
        if lref and lref[1] == TENANT and _is_param(right):
            return [Binder("param", lref, None)]
        if rref and rref[1] == TENANT and _is_param(left):
            return [Binder("param", rref, None)]
        if lref and rref and lref[1] == rref[1] and lref[1] in ID_COLUMNS and lref[0] and rref[0]:
            return [Binder("join", lref, rref)]
        return []
    in_i = [i for i, t in enumerate(conj) if t.depth == 0 and is_word(t, "in")]
    if len(in_i) == 1 and is_punct(tok_at(conj, in_i[0] + 1), "(") and not is_word(tok_at(conj, in_i[0] - 1), "not"):
        ref = _column_ref(rebase(conj[:in_i[0]]))
        inner = inner_of(conj, in_i[0] + 1)
        if ref and ref[1] in ID_COLUMNS and inner and is_word(inner[0], "select", "with"):
            sub = analyze_tokens(rebase(inner), env, outer)
            return [Binder("in", ref, sub.bound and not sub.problems and _reads_something(inner))]
    return []


def _reads_something(inner):
    return top_index(rebase(inner), {"from"}) >= 0


def _row_binders(left, right):
    lparts = top_split(inner_of(left, 0), lambda t: is_punct(t, ","))
    rparts = top_split(inner_of(right, 0), lambda t: is_punct(t, ","))
    if len(lparts) != len(rparts) or close_of(left, 0) != len(left) - 1 or close_of(right, 0) != len(right) - 1:
        return []
    out = []
    for lp, rp in zip(lparts, rparts):
        lref, rref = _column_ref(rebase(lp)), _column_ref(rebase(rp))
        if lref and lref[1] == TENANT and _is_param(rebase(rp)):
            out.append(Binder("param", lref, None))
        elif rref and rref[1] == TENANT and _is_param(rebase(lp)):
            out.append(Binder("param", rref, None))
    return out


def _bind(rels, conjuncts, env, outer):
    """Mark rels bound through the conjuncts (to a fixpoint); returns the set of bound aliases."""
    by_alias = {r.alias: r for r in rels}
    tables = [r for r in rels if r.is_table]
    bound = set(outer) | {r.alias for r in rels if r.bound and r.kind != "table"}

    def target(ref):
        qual, _ = ref
        if qual is None:
            return tables[0] if len(tables) == 1 else None
        return by_alias.get(qual) or next((r for r in rels if r.name == qual), None)

    binders = [b for c in conjuncts for b in _binders(c, env, bound)]
    changed = True
    while changed:
        changed = False
        for b in binders:
            if b.kind == "param" or (b.kind == "in" and b.other):
                rel = target(b.ref)
                if rel is not None and not rel.bound:
                    rel.bound = True
                    bound.add(rel.alias)
                    changed = True
            elif b.kind == "join":
                for a, other in ((b.ref, b.other), (b.other, b.ref)):
                    rel = target(a)
                    if rel is not None and not rel.bound and other[0] in bound:
                        rel.bound = True
                        bound.add(rel.alias)
                        changed = True
    return bound


def _target(toks, k, env):
    """(Rel, index after the target and its alias) for UPDATE/DELETE/INSERT/MERGE targets at toks[k]."""
    while is_word(tok_at(toks, k), "only"):
        k += 1
    parts, k = name_at(toks, k)
    if is_op(tok_at(toks, k), "*"):
        k += 1
    alias = None
    if is_word(tok_at(toks, k), "as"):
        alias, k = toks[k + 1].text, k + 2
    elif is_word(tok_at(toks, k)) and toks[k].text not in KEYWORDS:
        alias, k = toks[k].text, k + 1
    rel = _relation(parts, alias, env) if parts else Rel("table", "?")
    return rel, k


def _analyze_update(toks, env, outer):
    info = _analyze_modify(toks, env, outer, "UPDATE", 1, "from")
    if is_word(tok_at(toks, top_index(toks, {"where"}) + 1), "current"):
        info.problems.append(f"UPDATE of {info.writes[0][1]} WHERE CURRENT OF (no tenant_id = $n)")
        info.bound = False
    return info


def _analyze_delete(toks, env, outer):
    return _analyze_modify(toks, env, outer, "DELETE", 2, "using")


def _analyze_modify(toks, env, outer, verb, target_at, list_word):
    """UPDATE target ... [FROM list] / DELETE FROM target [USING list]: the target and the list's relations are
    bound through the WHERE (and the list's ON conditions)."""
    info = Info(verb.lower())
    rel, k = _target(toks, target_at, env)
    list_i = top_index(toks, {list_word}, k)
    where_i = top_index(toks, {"where"}, k)
    rels, conds = [rel], []
    if list_i >= 0:
        listed, conds = _from_items(toks[list_i + 1:where_i if where_i >= 0 else len(toks)], env, outer, info)
        rels += listed
    _returning(toks, info)
    info.writes.append((verb, rel.name))
    return _judge(info, rels, conds + [_clause(toks, where_i)], toks, env, outer, verb)


def _returning(toks, info):
    r = top_index(toks, {"returning"})
    if r >= 0:
        info.returns = output_columns(toks[r + 1:])


def _analyze_insert(toks, env, outer):
    info = Info("insert")
    rel, k = _target(toks, 2, env)
    info.writes.append(("INSERT", rel.name))
    info.tables.append(rel.name)
    if rel.kind != "table":
        return info
    _returning(toks, info)
    if not is_punct(tok_at(toks, k), "("):
        info.problems.append(f"INSERT into {rel.name} without a column list (tenant_id not provably set)")
        info.bound = False
        return info
    cols = [_drop_cast(c)[0].text if c and _drop_cast(c) else "" for c in
            top_split(inner_of(toks, k), lambda t: is_punct(t, ","))]
    k = close_of(toks, k) + 1
    if TENANT not in cols:
        info.problems.append(f"INSERT into {rel.name} whose column list lacks tenant_id")
        info.bound = False
        return info
    pos = cols.index(TENANT)
    while is_word(tok_at(toks, k), "overriding", "system", "user", "value"):
        k += 1
    if is_word(tok_at(toks, k), "values"):
        _check_values_rows(toks, k + 1, pos, rel, info)
    else:
        end = top_index(toks, {"on", "returning"}, k)
        body = rebase(toks[k:end if end >= 0 else len(toks)])
        sub = analyze_tokens(body, env, outer)
        info.absorb(sub)
        cols_out = sub.returns
        if not (sub.bound and pos < len(cols_out) and cols_out[pos] in ("$param", TENANT)):
            info.problems.append(f"INSERT into {rel.name}: tenant_id does not come from a $n parameter or a "
                                 f"tenant-bound read")
            info.bound = False
    _nested(toks[k:], env, outer, info)
    return info


def _check_values_rows(toks, k, pos, rel, info):
    rows = 0
    while is_punct(tok_at(toks, k), "("):
        end = close_of(toks, k)
        values = top_split(inner_of(toks, k), lambda t: is_punct(t, ","))
        rows += 1
        if pos >= len(values) or not _is_param(rebase(values[pos])):
            info.problems.append(f"INSERT into {rel.name}: tenant_id is not given as a $n parameter")
            info.bound = False
            return
        k = end + 1
        if not is_punct(tok_at(toks, k), ","):
            break
        k += 1
    if rows == 0:
        info.problems.append(f"INSERT into {rel.name}: no VALUES row to check")
        info.bound = False


def _analyze_merge(toks, env, outer):
    info = Info("merge")
    rel, k = _target(toks, 2, env)
    info.writes.append(("MERGE", rel.name))
    using_i = top_index(toks, {"using"}, k)
    on_i = top_index(toks, {"on"}, using_i + 1 if using_i >= 0 else k)
    when_i = top_index(toks, {"when"}, on_i + 1 if on_i >= 0 else k)
    rels = [rel]
    if using_i >= 0:
        src = _from_item(toks[using_i + 1:on_i if on_i >= 0 else len(toks)], env, outer)
        if src is not None:
            rels.append(src)
    cond = toks[on_i + 1:when_i if when_i >= 0 else len(toks)] if on_i >= 0 else []
    return _judge(info, rels, [cond], toks, env, outer, "MERGE")


def _analyze_bulk(toks, env, outer, verb):
    info = Info(verb)
    if verb == "copy" and is_punct(tok_at(toks, 1), "("):
        sub = analyze_tokens(inner_of(toks, 1), env, outer)
        info.absorb(sub)
        return info
    k = 1
    while is_word(tok_at(toks, k), "table", "only"):
        k += 1
    parts, _ = name_at(toks, k)
    name = parts[-1].text if parts else "?"
    info.tables.append(name)
    if verb == "truncate":
        info.writes.append(("TRUNCATE", name))
    info.problems.append(f"{verb.upper()} of {name} touches every tenant's rows")
    info.bound = False
    return info


# ---------------------------------------------------------------------------------------------------------------
# What a statement returns
# ---------------------------------------------------------------------------------------------------------------

def output_columns(toks):
    """Column references of a select list / RETURNING list, in item order: one name per item when the item is
    a plain column (`$param` for a parameter), else every column it references ("*" for a star)."""
    out = []
    for item in top_split(rebase(toks), lambda t: is_punct(t, ",")):
        item = _drop_alias(item)
        if not item:
            continue
        if _is_param(item):
            out.append("$param")
            continue
        refs = _item_refs(rebase(item))
        out += refs if refs else ["(constant)"]
    return out


def _drop_alias(item):
    if len(item) >= 2 and is_word(item[-2], "as"):
        return item[:-2]
    if len(item) >= 2 and is_word(item[-1]) and item[-1].text not in KEYWORDS and item[-1].depth == item[0].depth \
            and not is_punct(item[-2], ".") and item[-2].kind != "cast" and item[-2].kind != "op":
        return item[:-1]
    return item


def _item_refs(item):
    """Column names an output item references: plain and qualified columns (the column part), a subquery's own
    outputs, "*" for a star; not functions, keywords, types after ::, or named arguments (secs => ...)."""
    refs = []
    i = 0
    while i < len(item):
        t, nxt, prev = item[i], tok_at(item, i + 1), tok_at(item, i - 1)
        if is_punct(t, "(") and is_word(nxt, "select", "with"):
            end = close_of(item, i)
            refs += analyze_tokens(rebase(item[i + 1:end]), {}, set()).returns
            i = end + 1
            continue
        if is_op(t, "*") and nxt is None and (prev is None or is_punct(prev, ".")):
            refs.append("*")
        elif t.kind == "word" and t.text not in KEYWORDS and not is_punct(nxt, "(") and not is_punct(nxt, ".") \
                and not is_op(nxt, "=>") and (prev is None or prev.kind != "cast"):
            refs.append(t.text)
        i += 1
    return refs


_ANALYZERS = {
    "with": _analyze_with, "select": _analyze_select, "values": _analyze_select, "table": _analyze_select,
    "(": _analyze_select, "update": _analyze_update, "delete": _analyze_delete, "insert": _analyze_insert,
    "merge": _analyze_merge,
    "truncate": lambda toks, env, outer: _analyze_bulk(toks, env, outer, "truncate"),
    "copy": lambda toks, env, outer: _analyze_bulk(toks, env, outer, "copy"),
}
