"""rule_console — Issue #4, no diagnostics on stdout/stderr except through the logger.

Over every C file under daemon/ except the logger (daemon/src/utils/log.c), in code (comments and strings blanked):
- any reference (a call, a function pointer, a macro alias) to a function that prints: the stdio family
  (printf, puts, putchar, perror, ... and their _unlocked, wide and _chk forms), dprintf/vdprintf, syslog/vsyslog,
  the err/warn family (err, errx, warn, warnx, verr, ...), error()/error_at_line(), psignal/psiginfo, herror;
- any stream-writing call (fputs, fputc, putc, fwrite, fflush, ...) whose stream argument names stdout/stderr;
- any mention of the standard streams (stdout, stderr, STDOUT_FILENO, STDERR_FILENO, "/dev/stderr",
  "/dev/stdout", "/dev/tty", "/proc/self/fd/1|2") unless it is passed directly to the logger (a function
  utils/log.h declares) or to a CLI text function, so an alias (`FILE *out = stderr;`) is a finding where it is
  made;
- fd-taking calls given 1 or 2 (write, writev, pwrite, send, dprintf, fdopen, dup, dup2, uv_tty_init,
  uv_pipe_open, uv_fs_write, sendfile, splice).
Inside the CLI text functions of daemon/src/main.c (print_usage, print_version: --help/--version) all of that is
allowed.  When the evidence run (rule_idempotency) ran, its daemons' stdout and stderr are checked too: anything
on stdout, or a stderr line that is not one JSON log object, is a finding.
"""
import re

import gate_c
from gate_tree import Finding, Section, plural

LOG_MODULE = "daemon/src/utils/log.c"
LOG_HEADER = "daemon/src/utils/log.h"
CLI_MODULE = "daemon/src/main.c"
CLI_TEXT_FUNCTIONS = {"print_usage", "print_version"}

_STDIO = ["printf", "vprintf", "fprintf", "vfprintf", "puts", "putchar", "perror", "putchar_unlocked",
          "wprintf", "vwprintf", "fwprintf", "vfwprintf", "putwchar", "putwchar_unlocked", "__printf_chk",
          "__fprintf_chk", "__vprintf_chk", "__vfprintf_chk", "dprintf", "vdprintf", "__dprintf_chk",
          "syslog", "vsyslog", "openlog", "err", "errx", "verr", "verrx", "warn", "warnx", "vwarn", "vwarnx",
          "errc", "warnc", "error", "error_at_line", "psignal", "psiginfo", "herror"]
PRINTING_FUNCTIONS = set(_STDIO)
# Names also common as variables (`char err[64]`): found only as calls, `err(...)`.
CALL_ONLY = {"err", "errx", "verr", "verrx", "warn", "warnx", "vwarn", "vwarnx", "errc", "warnc", "error"}
_ATTRIBUTE = re.compile(r"__attribute__\s*\(\((?:[^()]|\([^()]*\))*\)\)")
STREAM_FUNCTIONS = {"fputs", "fputc", "putc", "fwrite", "fputs_unlocked", "fputc_unlocked", "putc_unlocked",
                    "fwrite_unlocked", "fputws", "fputwc", "putwc", "putw", "fflush", "setvbuf", "setbuf",
                    "fileno", "freopen"}
STD_STREAMS = {"stdout", "stderr", "STDOUT_FILENO", "STDERR_FILENO", "_IO_2_1_stdout_", "_IO_2_1_stderr_"}
STD_STREAM_PATHS = re.compile(r"^/dev/(?:stdout|stderr|tty|fd/[12])$|^/proc/self/fd/[12]$")
FD_CALLS = {"write": 0, "writev": 0, "pwrite": 0, "pwritev": 0, "pwritev2": 0, "send": 0, "sendmsg": 0,
            "dprintf": 0, "vdprintf": 0, "fdopen": 0, "dup": 0, "dup2": 0, "dup3": 0, "sendfile": 0, "splice": 2,
            "uv_tty_init": 2, "uv_pipe_open": 1, "uv_fs_write": 2}


def logger_functions(tree):
    return set(gate_c.declared_functions(tree.lexed(LOG_HEADER).code)) if LOG_HEADER in tree.c_files else set()


def console_uses(code, allowed_receivers):
    """[(offset, description)] of console output in comment/literal-free code.  A standard stream passed
    directly to a function in allowed_receivers is not a use."""
    code = _ATTRIBUTE.sub(lambda m: " " * len(m.group(0)), code)
    own = set(gate_c.declared_functions(code))
    uses = [(off, f"{name}() writes to the console") for off, name in gate_c.references(code, PRINTING_FUNCTIONS)
            if name not in CALL_ONLY or (re.match(r"\s*\(", code[off + len(name):]) and name not in own)]
    for off, name in gate_c.references(code, STD_STREAMS):
        call = gate_c.enclosing_call(code, off)
        if call is not None and call[0] in allowed_receivers and name in call[1]:
            continue
        if call is not None and call[0] in STREAM_FUNCTIONS | PRINTING_FUNCTIONS:
            uses.append((off, f"{call[0]}() on {name}"))
        else:
            uses.append((off, f"{name} used outside the logger (an alias of a standard stream)"))
    for off, name in gate_c.references(code, set(FD_CALLS)):
        open_paren = code.find("(", off)
        if open_paren < 0 or code[off + len(name):open_paren].strip():
            continue
        args = [a.strip() for _, a in gate_c.call_arguments(code, open_paren)]
        index = FD_CALLS[name]
        if index < len(args) and args[index] in ("1", "2"):
            uses.append((off, f"{name}({args[index]}, ...) writes to a standard stream"))
    return sorted(set(uses))


def stream_paths(rel, tree):
    return [Finding(rel, s.line, f'"{s.value}" opens a standard stream') for s in tree.strings(rel)
            if STD_STREAM_PATHS.match(s.value)]


def check(root, tree, runtime=None):
    receivers = logger_functions(tree) | CLI_TEXT_FUNCTIONS
    findings, files, cli_lines = [], 0, 0
    for rel in tree.c_files:
        if rel == LOG_MODULE:
            continue
        files += 1
        code = tree.lexed(rel).code
        spans = gate_c.function_spans(code) if rel == CLI_MODULE else []
        lines_found = set()
        for off, why in console_uses(code, receivers):
            line = gate_c.line_of(code, off)
            if rel == CLI_MODULE and gate_c.enclosing_function(spans, line) in CLI_TEXT_FUNCTIONS:
                cli_lines += 1
            elif line not in lines_found:
                lines_found.add(line)
                findings.append(Finding(rel, line, f"{why}; use the logger (utils/log.h)"))
        findings += stream_paths(rel, tree)
    findings += runtime_findings(runtime)
    evidence = (f"{files} C files under daemon/ (all but {LOG_MODULE}): {len(PRINTING_FUNCTIONS)} printing "
                f"functions, {len(STREAM_FUNCTIONS)} stream calls, {len(STD_STREAMS)} standard-stream names, "
                f"{len(FD_CALLS)} fd calls looked for; {plural(cli_lines, 'use')} inside the --help/--version "
                f"functions allowed; runtime: {runtime_summary(runtime)}")
    return Section(findings, evidence, checked=files > 0 and receivers != CLI_TEXT_FUNCTIONS)


def runtime_findings(runtime):
    if not runtime:
        return []
    out = []
    for line in runtime.get("stdout_lines", [])[:3]:
        out.append(Finding("build/followupd", 0, f"the running daemon wrote to stdout: {line[:120]!r}"))
    for line in runtime.get("bad_stderr_lines", [])[:3]:
        out.append(Finding("build/followupd", 0, f"the running daemon wrote a non-JSON stderr line: {line[:120]!r}"))
    return out


def runtime_summary(runtime):
    if not runtime:
        return "no evidence run (see Issue #3)"
    return (f"{plural(runtime.get('daemons', 0), 'daemon run')} wrote "
            f"{plural(runtime.get('json_lines', 0), 'JSON log line')}, "
            f"{plural(len(runtime.get('bad_stderr_lines', [])), 'other stderr line')}, "
            f"{plural(len(runtime.get('stdout_lines', [])), 'stdout line')}")
