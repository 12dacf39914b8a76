"""The hardened checker: the program built -O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong
and run with no tool at all, checked by code inside it and inside glibc: fortified libc calls
(__memcpy_chk ...), the stack protector, glibc's malloc checks.  Each prints one line on stderr
as it aborts (parsers/native.py reads them); nothing prints a stack.  It shows which build flags
alone would have caught a bug, beside the checkers that did.

A binary with neither fortified calls nor a stack protector is not checkable by it: a clean run
of such a binary must not read as "the hardened build found nothing".
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ParseError
from .base import Checker, child_environment

# glibc's fatal messages (fortify, stack protector, malloc) on stderr, never on /dev/tty.
HARDENED_ENV = {"LIBC_FATAL_STDERR_": "1"}

_CHK = re.compile(rb"\0(__[a-z0-9_]+_chk)\0")


def hardening_marks(program: str | Path) -> frozenset[str]:
    """Which hardening a binary carries, from the symbols it imports: "fortify" (any __*_chk
    function, as -D_FORTIFY_SOURCE at -O1 or more makes) and "stack-protector"
    (__stack_chk_fail).  Empty for a binary built without them (or with nothing to protect)."""
    try:
        with open(program, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ParseError(str(program), f"cannot read: {exc.strerror or exc}") from None
    marks = set()
    if b"\0__stack_chk_fail\0" in data:
        marks.add("stack-protector")
    if any(m.group(1) != b"__stack_chk_fail" for m in _CHK.finditer(data)):
        marks.add("fortify")
    return frozenset(marks)


def not_hardened(program: str | Path) -> str:
    """Why the hardened checker cannot vouch for program, or "" when it can: a binary with
    neither fortified calls nor a stack protector checks nothing but glibc's malloc, so a clean
    run of it must not read as "the hardened build found nothing"."""
    try:
        with open(program, "rb") as fh:
            if fh.read(4) != b"\x7fELF":
                return f"{program} is not an ELF executable: the hardened checker runs a binary built with " \
                       f"-O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong"
    except OSError as exc:
        return f"cannot read {program}: {exc.strerror or exc}"
    if not hardening_marks(program):
        return (f"{program} has no fortified calls and no stack protector: not built with "
                f"-O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong, so the hardened checker cannot check it")
    return ""


class Hardened(Checker):
    name = "hardened"
    family = "hardened"
    # -U first: some distributions' gcc predefine another level.
    cflags = ("-g", "-O2", "-U_FORTIFY_SOURCE", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong")
    default_for = frozenset({"c"})
    log_tools = ("hardened",)
    cannot_see = ("leaks; reads out of bounds; any overflow whose size the compiler does not know; a double free "
                  "glibc's checks miss; where anything happened (no stack is printed)")

    def cannot_check(self, program: str) -> str:
        return not_hardened(program)

    def command(self, job, log_dir: Path, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
        env = child_environment(job.env)
        env.update(HARDENED_ENV)  # natively: the checks are in the binary and in glibc
        return list(job.command), env

    def after_logs(self, g) -> None:
        # No tool wrote a log: the program's stderr holds what fortify, the stack protector and
        # glibc's malloc printed as they aborted it.
        from ..parsers.native import parse_native_stderr  # here: a run launches without the parsers

        try:
            native = parse_native_stderr(g.stderr, g.returncode, pid=g.main_pid)
        except ParseError as exc:
            g.unreadable(g.stderr, exc)
            return
        g.findings.extend(native.findings)
        g.problems.extend(f"{g.stderr.name}: {p}" for p in native.problems)
        if native.findings:
            g.logs.append(g.stderr)

    def incomplete(self, g) -> str:
        if g.cut:
            return f"a log is cut short or unreadable: {', '.join(g.cut)}"
        if g.signal is not None and not g.main_reported:
            return f"crashed with {g.signal} and no check of the hardened build reported it"
        return ""


CHECKERS = (Hardened(),)
FAMILY = ("hardened", "Native hardened build: fortified libc calls, the stack protector and glibc's malloc "
                      "checks, run with no tool")
