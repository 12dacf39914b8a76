"""Read what a natively run hardened program said as it died (the checker is checkers/hardened.py).

A program built with -O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong and run with no tool at
all is still checked by code inside it and inside glibc: fortified string and memory functions
(__memcpy_chk ...) abort on a copy past a buffer whose size the compiler knows, the stack
protector aborts when a function's canary was overwritten, and glibc's malloc aborts when its
heap bookkeeping is inconsistent (a double free, a bad pointer handed to free, a header
overwritten by an overflow).  Each prints one line on stderr and raises SIGABRT; nothing prints
a stack.  This module reads a run's captured stderr into Findings (buffer-overflow,
double-free, invalid-free, crash) and says which signal ended the run; judging completeness
(timeouts, signals from outside) is collect.py's and the checker's, as for every checker.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from pathlib import Path

from ..errors import ParseError
from ..findings import Finding, Frame

TOOL = "hardened"
# How much of a stderr is read: a program may print a lot before dying; the checks' lines are
# short and whole, so reading line by line keeps memory bounded, and past this many findings the
# rest are counted, not kept.
MAX_FINDINGS = 1000

# glibc's fortify and stack-protector failure (debug/fortify_fail.c: "*** %s ***: terminated").
_FORTIFY = re.compile(r"^\*\*\* (?P<what>[^*]+?) \*\*\*: (?:.* )?terminated$")
# glibc's malloc_printerr: the function that found the inconsistency, then what it found
# ("free(): double free detected in tcache 2", "malloc(): corrupted top size"), or one of the
# older messages without a function ("double free or corruption (fasttop)",
# "corrupted size vs. prev_size").
_MALLOC = re.compile(
    r"^(?P<msg>(?:(?:free|malloc|realloc|calloc|munmap_chunk|malloc_consolidate|_int_malloc|_int_free"
    r"|tcache_thread_shutdown|__libc_malloc|__libc_free|__libc_realloc|memalign|_int_realloc)\(\): .+)"
    r"|double free or corruption \([!a-z]+\)"
    r"|corrupted (?:size vs\. prev_size(?: while consolidating)?|double-linked list(?: \(not small\))?))$"
)
# assert(): "prog: file.c:12: func: Assertion `expr' failed."
_ASSERT = re.compile(r"^(?P<prog>.+?): (?P<file>[^:]+):(?P<line>\d+): (?P<func>.+?): Assertion `(?P<expr>.*)' failed\.$")

# Signals a program dies of by its own fault (the rest come from outside: collect.EXTERNAL).
_FAULTS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT, signal.SIGTRAP,
           signal.SIGSYS}


@dataclass(frozen=True)
class NativeLog:
    """What one native run's stderr and exit status say."""

    path: str
    findings: tuple[Finding, ...]
    signal: str | None = None  # the signal that ended the program ("SIGABRT"), if one did
    exit_code: int | None = None
    dropped: int = 0  # findings past MAX_FINDINGS, counted only
    problems: tuple[str, ...] = ()


def malloc_category(message: str) -> str:
    """glibc's words for a heap inconsistency -> a category.

    glibc sees only the damage, not its cause; the category is the usual cause:
    - a second free of one block: tcache's key check, or the block found already free at the top
      of a fastbin or not marked in use ("(fasttop)", "(!prev)", "(top)");
    - a pointer malloc never returned ("invalid pointer", "invalid size", an unaligned chunk,
      "(out)": its neighbour lies outside the heap);
    - anything else is bookkeeping overwritten between blocks (sizes, links, the top chunk's
      size): an out-of-bounds write, which ASan and memcheck call a buffer overflow."""
    text = message.lower()
    if "double free" in text and "(out)" not in text:
        return "double-free"
    if ("invalid pointer" in text or "(out)" in text or "unaligned chunk detected in tcache" in text
            or re.search(r"invalid (?:old )?size(?! \(unsorted\))", text)):
        return "invalid-free"
    return "buffer-overflow"


def _finding(kind: str, category: str, message: str, path: str, stack: tuple[Frame, ...] = (),
             pid: int | None = None) -> Finding:
    return Finding(tool=TOOL, kind=kind, category=category, message=message, stack=stack, source=path, pid=pid)


def _signal_name(returncode: int | None) -> str | None:
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def parse_native_stderr(path: str | Path, returncode: int | None = None, pid: int | None = None) -> NativeLog:
    """Read a natively run program's captured stderr (and how it ended) into Findings.

    A program killed by a fault signal (SIGSEGV, or SIGABRT from abort()) with no check's line
    before it still gets one finding: it crashed, which is what a user of the hardened build
    would see.  `pid` is the program's process id: glibc's lines do not say which process printed
    them, and one stderr is shared with any children, so every finding is given the program's.
    Raises ParseError when the file cannot be read."""
    path = str(path)
    findings: list[Finding] = []
    dropped = 0
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ParseError(path, f"cannot read: {exc.strerror or exc}") from None
    with fh:
        for raw in fh:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if len(line) > 4096 or "***" not in line and "()" not in line and "corrupt" not in line \
                    and "double free" not in line and "Assertion" not in line:
                continue  # the program's own output: cheap to skip
            finding = _read_line(line, path, pid)
            if finding is None:
                continue
            if len(findings) < MAX_FINDINGS:
                findings.append(finding)
            else:
                dropped += 1
    sig = _signal_name(returncode)
    if sig is not None and -returncode in _FAULTS and not findings:
        # Killed by its own fault with no check's words before it: a plain crash (a NULL pointer
        # read, an abort() of the program's own).  Where is unknown: nothing prints a stack.
        findings.append(_finding(sig, "crash", f"the program was killed by {sig}", path, pid=pid))
    problems = (f"{dropped} more findings were counted but not kept",) if dropped else ()
    return NativeLog(path=path, findings=tuple(findings), signal=sig,
                     exit_code=returncode if returncode is not None and returncode >= 0 else None,
                     dropped=dropped, problems=problems)


def _read_line(line: str, path: str, pid: int | None) -> Finding | None:
    m = _FORTIFY.match(line)
    if m:
        what = m.group("what")
        if what == "stack smashing detected":
            return _finding("stack-protector", "buffer-overflow", line, path, pid=pid)
        if what == "buffer overflow detected":
            return _finding("fortify", "buffer-overflow", line, path, pid=pid)
        # Other fortify checks ("longjmp causes uninitialized stack frame", "%n in writable
        # segment detected"): the program was stopped for a reason no category names.
        return _finding("fortify", "crash", line, path, pid=pid)
    m = _MALLOC.match(line)
    if m:
        return _finding("glibc-malloc", malloc_category(line), line, path, pid=pid)
    m = _ASSERT.match(line)
    if m:
        frame = Frame(function=m.group("func"), file=m.group("file"), line=int(m.group("line")))
        return _finding("assertion", "crash", line, path, (frame,), pid=pid)
    return None
