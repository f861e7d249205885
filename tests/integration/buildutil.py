"""Build helpers for tests that need make: a plain (sanitizer-free) daemon next to the build under test, and the
environment for a nested make.

    binary = plain_binary()          # $FOLLOWUPD_BUILD/followupd, or <build>/valgrind/followupd when that is ASan
    subprocess.run(["make", ...], env=make_env())

Both valgrind (ASan binaries cannot run under it) and the Debian package (it ships a production binary) use the
plain build, so a sanitizer run of the suite builds it once.
"""
import os
import subprocess

from daemon import BUILD, ROOT


def make_env(extra=None):
    """os.environ without the MAKEFLAGS of an enclosing `make test` (its SANITIZE=/BUILD= would leak in)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.update(extra or {})
    return env


def plain_binary():
    """$FOLLOWUPD_BUILD/followupd when it is built without sanitizers, else a plain build next to it."""
    flags_path = os.path.join(BUILD, ".flags")
    flags = ""
    if os.path.exists(flags_path):
        with open(flags_path) as f:
            flags = f.read()
    if "-fsanitize" not in flags:
        return os.path.join(BUILD, "followupd")
    plain = os.path.join(BUILD, "valgrind")
    cmd = ["make", "-s", "-j2", f"BUILD={plain}", "SANITIZE=", os.path.join(plain, "followupd")]
    proc = subprocess.run(cmd, cwd=ROOT, env=make_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}")
    return os.path.join(plain, "followupd")
