"""gate_c — what the compliance gate reads from C sources, lexically (stdlib only).

lex_c() splits a file into code (comments and literal contents blanked, offsets and line numbers kept), its
string literals and its comments.  On top of that: `#include`s, object-like macros whose body is a string
(expanded where they are used, so `"SELECT " COLUMNS " FROM t"` is one statement), runs of adjacent literals
joined as the compiler joins them (sql_strings), function bodies at file scope, references to identifiers
(calls, function pointers, macros alike; member access excluded), the call a token is a direct argument of, and
the functions a header declares.  Not a preprocessor: conditional compilation, function-like macros and names
built with ## are not seen.
"""
import os
import re
from collections import namedtuple

StringLit = namedtuple("StringLit", "line start end value")
Comment = namedtuple("Comment", "line end_line text")
Lexed = namedtuple("Lexed", "code strings comments")
Include = namedtuple("Include", "line target system")
CString = namedtuple("CString", "line start end value")

SOURCE_ROOT = "daemon/src"

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
            try:
                out.append(chr(int(body[i + 2:i + 2 + width], 16)))
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
    """(end of the literal's content, end of the literal); an unterminated literal stops at its line end."""
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2
        elif c == quote:
            return j, j + 1
        elif c == "\n":
            return j, j
        else:
            j += 1
    return len(text), len(text)


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
    """(code, strings, comments): code has comments and literal contents blanked; char literals are blanked
    like strings but not returned."""
    code, strings, comments = [], [], []
    i, n, copied = 0, len(text), 0
    line, line_at = 1, 0
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


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


# ---------------------------------------------------------------------------------------------------------------
# Directives
# ---------------------------------------------------------------------------------------------------------------

_DIRECTIVE = re.compile(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", re.MULTILINE)
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*(?:"(?P<local>[^"\n]+)"|<(?P<system>[^>\n]+)>)', re.MULTILINE)
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(?P<name>[A-Za-z_]\w*)(?![\w(])(?P<body>(?:[^\n]*\\\n)*[^\n]*)",
                     re.MULTILINE)


def directive_spans(code):
    """[(start, end)] of preprocessor lines (continuations included) in comment-free code."""
    return [(m.start(), m.end()) for m in _DIRECTIVE.finditer(code)]


def includes(text, lexed):
    """[Include] of a file; the include line is read from the raw text (the lexer blanks the quoted name)."""
    found = []
    for m in _INCLUDE.finditer(lexed.code):
        raw = _INCLUDE.match(text, m.start())
        if raw is None:
            continue
        local = raw.group("local")
        found.append(Include(line_of(text, m.start()), local or raw.group("system"), local is None))
    return found


def resolve_include(root, including_rel, target):
    """Root-relative path of a quoted include found next to the including file or under daemon/src, else None."""
    for base in (os.path.dirname(including_rel), SOURCE_ROOT):
        rel = os.path.normpath(os.path.join(base, target)).replace(os.sep, "/")
        if os.path.isfile(os.path.join(root, rel)):
            return rel
    return None


def string_macros(lexed, known=None):
    """{name: value} of object-like macros whose body is only string literals and already known string macros."""
    macros = dict(known or {})
    for m in _DEFINE.finditer(lexed.code):
        body_start, body_end = m.start("body"), m.end("body")
        parts = _string_items(lexed, body_start, body_end, macros)
        if parts is not None:
            macros[m.group("name")] = "".join(parts)
    return macros


def _string_items(lexed, start, end, macros):
    """Values of the literals and macro names making up code[start:end], or None when anything else is there."""
    inside = [s for s in lexed.strings if start <= s.start and s.end <= end]
    pos, values = start, []
    for s in inside + [None]:
        gap = lexed.code[pos:s.start if s else end].replace("\\\n", " ")
        for word in gap.split():
            if word not in macros:
                return None
            values.append(macros[word])
        if s is None:
            break
        values.append(s.value)
        pos = s.end
    return values if values else None


# ---------------------------------------------------------------------------------------------------------------
# Strings as the compiler sees them
# ---------------------------------------------------------------------------------------------------------------

def sql_strings(lexed, macros):
    """[CString] for every run of adjacent string literals and string macros outside directives, joined."""
    spans = directive_spans(lexed.code)

    def in_directive(offset):
        return any(a <= offset < b for a, b in spans)

    items = [(s.start, s.end, s.value, s.line) for s in lexed.strings if not in_directive(s.start)]
    if macros:
        pattern = re.compile(r"(?<![\w.>])(" + "|".join(map(re.escape, sorted(macros, key=len, reverse=True)))
                             + r")\b")
        for m in pattern.finditer(lexed.code):
            if not in_directive(m.start()):
                items.append((m.start(), m.end(), macros[m.group(1)], line_of(lexed.code, m.start())))
    items.sort()
    out = []
    for start, end, value, line in items:
        if out and lexed.code[out[-1].end:start].strip() == "":
            prev = out[-1]
            out[-1] = CString(prev.line, prev.start, end, prev.value + value)
        else:
            out.append(CString(line, start, end, value))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Functions, references, calls
# ---------------------------------------------------------------------------------------------------------------

def function_spans(code):
    """[(name, first line, last line)] of function bodies at file scope in comment/literal-free code."""
    spans = []
    depth, header_start, open_at, name = 0, 0, None, None
    for m in re.finditer(r"[{};]", code):
        ch = m.group(0)
        if ch == "{":
            if depth == 0:
                hm = re.search(r"([A-Za-z_]\w*)\s*\([^;{}]*\)\s*(?:__attribute__\s*\(\(.*?\)\)\s*)*$",
                               code[header_start:m.start()], re.DOTALL)
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


def references(code, names):
    """[(offset, name)] of identifier tokens in names: calls, function pointers, macro bodies alike (not member
    accesses, not #include lines)."""
    if not names:
        return []
    pattern = re.compile(r"(?<![\w.$])(?<!->)(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
                         + r")(?![\w$])")
    spans = [(m.start(), m.end()) for m in _INCLUDE.finditer(code)]
    return [(m.start(), m.group(1)) for m in pattern.finditer(code)
            if not any(a <= m.start() < b for a, b in spans)]


def call_arguments(code, open_paren):
    """[(start offset, argument text)] of the call whose '(' is at open_paren, split at top-level commas."""
    args, depth, start = [], 0, open_paren + 1
    for i in range(open_paren, len(code)):
        c = code[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                args.append((start, code[start:i]))
                return [(s, a) for s, a in args if a.strip() or len(args) > 1]
        elif c == "," and depth == 1:
            args.append((start, code[start:i]))
            start = i + 1
    return args


def call_name_at(code, open_paren):
    m = re.search(r"([A-Za-z_]\w*)\s*$", code[:open_paren])
    return m.group(1) if m else None


def enclosing_call(code, offset):
    """(function name, [argument texts]) of the innermost call whose parentheses contain offset, else None."""
    depth = 0
    for i in range(offset - 1, -1, -1):
        c = code[i]
        if c in ")]}":
            depth += 1
        elif c in "([{":
            if depth == 0:
                if c != "(":
                    return None
                name = call_name_at(code, i)
                return (name, [a.strip() for _, a in call_arguments(code, i)]) if name else None
            depth -= 1
        elif c == ";" or (c == "{" and depth == 0):
            return None
    return None


_NOT_FUNCTIONS = {"if", "while", "for", "switch", "return", "sizeof", "defined", "__attribute__", "typeof",
                  "_Static_assert", "__typeof__", "alignof", "_Alignof", "void", "int", "char", "long", "short",
                  "unsigned", "signed", "float", "double", "bool", "const", "volatile", "static", "inline",
                  "extern", "struct", "union", "enum", "typedef", "__extension__"}


def declared_functions(code):
    """{name: parameter text} of functions declared or defined at file scope (static inline included)."""
    found = {}
    depth = 0
    spans = directive_spans(code)
    for m in re.finditer(r"[{}]|(?<![\w.>])([A-Za-z_]\w*)\s*\(", code):
        if m.group(0) == "{":
            depth += 1
            continue
        if m.group(0) == "}":
            depth = max(0, depth - 1)
            continue
        if depth != 0 or any(a <= m.start() < b for a, b in spans):
            continue
        name = m.group(1)
        if name in _NOT_FUNCTIONS:
            continue
        before = code[max(0, m.start() - 200):m.start()]
        if re.search(r"\(\s*\*\s*$", before) or not re.search(r"[\w*]\s*$", before) or \
                re.match(r"\s*\*", code[m.end():]):
            continue  # a function-pointer declarator or an expression, not a function declaration
        args = call_arguments(code, m.end() - 1)
        found.setdefault(name, ",".join(a for _, a in args))
    return found
