"""The Go checkers, for programs that call C and OpenSSL through cgo: go-asan and cgocheck; and
what every checker of a Go binary needs (memcheck checks Go programs too).

- go-asan: `go build -asan` plus a helper main (gobuild.py) that runs the program's main, then
  OpenSSL's cleanup and LeakSanitizer's check, and prints LEAK_CHECK_MARK: Go 1.19 never runs
  LeakSanitizer at exit.  Signals are left to the Go runtime, whose crash output names the Go
  callers (no unwinder crosses the cgo stack switch).  The run is whole only when the mark was
  printed, or ASan or the Go runtime reported the error that ended it.
- cgocheck: the plain build run with GODEBUG=cgocheck=2: the Go runtime's own checks of Go
  pointers handed to C, reported on stderr as it dies.

A Go program also reports on stderr: the Go runtime's crash output (a panic, a fatal error, a
signal inside C, cgocheck's verdicts) is parsed from there (parsers/go.py) whichever checker ran.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from ..elf import contains, is_go_binary
from ..errors import BuildError, ParseError
from ..gobuild import GO_ALLOC_MARK, GO_MARK_FILE, GO_MARKS_ENV, GO_RETURN_MARK, LEAK_CHECK_MARK, go_identity
from .base import Checker, child_environment
from .sanitizers import SANITIZER_ENV, SanitizerChecker

GO_LSAN_SUPPRESSIONS = Path(__file__).resolve().parent.parent / "data" / "go" / "lsan.supp"
# The leak check is the helper's (LSan's detect_leaks must stay on for it to do anything); a
# signal goes to the Go runtime, which prints the goroutine stacks with the Go callers and the
# cgo function, where ASan's report would stop at the cgo stack switch.
GO_ASAN_OPTIONS = ("detect_leaks=1:handle_segv=0:handle_sigbus=0:handle_sigfpe=0:handle_sigill=0"
                   ":handle_abort=0:allow_user_segv_handler=1")
# The characters a path may hold and still pass through LSAN_OPTIONS' syntax unquoted.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")


def go_crash_findings(g) -> None:
    """The Go runtime's own report of a crash, a panic or a cgocheck verdict, from stderr."""
    try:
        with open(g.stderr, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            # The crash comes last: a head for the sniff, unless the program printed megabytes first.
            fh.seek(max(0, size - (4 << 20)))
            head = fh.read()
    except OSError:
        return
    from ..parsers.go import parse_go_crash, sniff  # here: a run launches its jobs without the log parsers

    if not sniff(head):
        return
    try:
        log = parse_go_crash(str(g.stderr), pid=g.main_pid)
    except ParseError as exc:
        g.problems.append(str(exc))
        g.cut.append(g.stderr.name)
        return
    from ..parsers.go import name_user_main

    g.findings.extend(name_user_main(log.findings))
    g.problems.extend(f"{g.stderr.name}: {p}" for p in log.problems)
    if log.findings or log.partial:
        g.logs.append(g.stderr)
    if log.partial and not log.findings:
        g.cut.append(g.stderr.name)


def name_go_callers(g, join) -> None:
    """The Go callers of the job's leaks through cgo (their stacks stop at its stub), from what the
    build recorded of its C calls (GO_ALLOC_MARK, GO_RETURN_MARK lines on stderr), joined by
    `join(findings, table, returns)`: LeakSanitizer's listed objects for go-asan, valgrind's
    block_list for memcheck (parsers/go.py)."""
    if not g.stderr.is_file() or not any(f.category == "leak" and any("_Cfunc_" in fn for fn in f.functions())
                                         for f in g.findings):
        return
    from ..parsers.go import recorded_allocations, recorded_returns

    table = recorded_allocations(str(g.stderr), GO_ALLOC_MARK)
    returns = recorded_returns(str(g.stderr), GO_RETURN_MARK)
    if table or returns:
        g.findings[:] = join(g.findings, table, returns)


def marked_processes(g, mark: str) -> set[int]:
    """The processes of a Go program leakharness built that got to its exit-time check: their
    files in the job's log folder, and their mark lines on its stderr."""
    pids = set()
    for path in g.out_dir.glob(f"{GO_MARK_FILE}.*"):
        pid = path.name.rpartition(".")[2]
        if pid.isdigit() and len(pid) < 12:
            pids.add(int(pid))
    pids.update(int(m) for m in re.findall(re.escape(mark) + r" pid (\d{1,11})$", g.stderr_tail(1 << 20), re.M))
    return pids


def main_checked(g, marked: set[int]) -> bool:
    """The main process got to its exit-time check: its own mark (marked_processes), not another
    process's (a child it ran, the program itself run again, marks too)."""
    return g.main_pid in marked if g.main_pid is not None else bool(marked)


def child_unchecked(g, mark: str, marked: set[int]) -> str:
    """Why a process of the program other than the main one, a Go program leakharness built (its
    binary holds `mark`), went unchecked: it ended before its main returned (os.Exit: the usual end
    of a helper process, a panic, a signal) with no mark and no report, so its exit-time check
    never ran."""
    if g.recorded is None:
        return ""
    reported = {f.pid for f in g.findings if f.is_error}
    for end in g.recorded.ends:
        if end.pid == g.main_pid or end.by == "exec" or end.pid in marked or end.pid in reported:
            continue
        if end.exe and contains(end.exe, mark.encode()):
            return (f"process {end.pid} ({os.path.basename(end.exe)}, a program it ran) ended before its main "
                    f"returned (os.Exit, a panic, a signal), so its leaks were not checked")
    return ""


def ended_before_main_returned(g) -> str:
    what = f"exit code {g.returncode}" if g.returncode is not None else "no exit code"
    return f"the program ended before main returned (os.Exit, panic, signal; {what})"


class GoChecker(Checker):
    """A checker of Go programs only (the C checkers' builds do not apply to them)."""

    family = "go"
    languages = frozenset({"go"})

    def tool_versions(self) -> tuple[tuple[str, str], ...]:
        try:
            return (("go", go_identity().split(" ", 2)[-1]),)
        except BuildError:
            return (("go", "missing"),)

    def cannot_check(self, program: str) -> str:
        if not is_go_binary(program):
            return f"{program} is not a Go program: {self.name} checks a binary the Go toolchain built"
        return ""

    def after_logs(self, g) -> None:
        go_crash_findings(g)


class GoAsan(GoChecker, SanitizerChecker):
    name = "go-asan"
    default_for = required_for = check_default_for = frozenset({"go"})
    go_mode = "address"
    marks = (b"__asan_init",)
    flag = "AddressSanitizer"
    twins = {"c": "asan"}
    halts_on_first_error = True
    log_tools = ()
    cannot_see = ("Go's own heap (LeakSanitizer does not scan it: C memory held by a live Go object looks "
                  "leaked); a Go program leakharness did not build (no exit-time leak check); a run that ends "
                  "before main returns (os.Exit, a panic); freed C memory read through C.GoBytes or C.GoString "
                  "(runtime.memmove is not instrumented); bad accesses inside uninstrumented C libraries; data races")

    def cannot_check(self, program: str) -> str:
        why = GoChecker.cannot_check(self, program)
        if why:
            return why
        if not contains(program, b"__asan_init"):
            return f"{program} is not built with go build -asan: {self.name} cannot check it"
        if not contains(program, LEAK_CHECK_MARK.encode()):
            return (f"{program} has no leakharness leak check: go-asan checks a Go program that leakharness built "
                    f"(check --build main.go), since Go 1.19 never runs LeakSanitizer by itself")
        return ""

    def command(self, job, log_dir: Path, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
        env = child_environment(job.env)
        prefix = log_dir / "sanitizer"
        user = env.get("ASAN_OPTIONS", "")
        env["ASAN_OPTIONS"] = ":".join(x for x in (SANITIZER_ENV["ASAN_OPTIONS"], GO_ASAN_OPTIONS, user,
                                                   f"log_path={prefix}") if x)
        user = env.get("LSAN_OPTIONS", "")
        # report_objects: the leaked blocks' addresses, joined with the Go calls the build recorded.
        # The runtime's own noise (lsan.supp), where its path passes LSAN_OPTIONS' syntax unquoted.
        supp = f"suppressions={GO_LSAN_SUPPRESSIONS}" if _SAFE_PATH.match(str(GO_LSAN_SUPPRESSIONS)) else ""
        env["LSAN_OPTIONS"] = ":".join(x for x in (SANITIZER_ENV["LSAN_OPTIONS"], "report_objects=1", supp, user,
                                                   f"log_path={prefix}") if x)
        env[GO_MARKS_ENV] = str(log_dir)
        return list(job.command), env

    def after_logs(self, g) -> None:
        go_crash_findings(g)
        from ..parsers.go import name_lsan_go_callers

        lsan = [str(p) for p in g.logs if p.name.startswith("sanitizer.")]
        name_go_callers(g, functools.partial(name_lsan_go_callers, lsan_logs=lsan))

    def incomplete(self, g) -> str:
        why = self.runtime_failed(g)
        if why:
            return why
        marked = marked_processes(g, LEAK_CHECK_MARK)
        if not g.main_reported and not main_checked(g, marked):
            return (f"the leak check did not run: {ended_before_main_returned(g)}, so leaks "
                    f"were not checked")
        return child_unchecked(g, LEAK_CHECK_MARK, marked) or self.uninstrumented_child(g)


class CgoCheck(GoChecker):
    name = "cgocheck"
    default_for = check_default_for = frozenset({"go"})
    go_mode = "plain"
    cannot_see = ("anything but Go pointers handed to C (GODEBUG=cgocheck=2): no leak, no C memory error "
                  "unless it crashes the program")

    def command(self, job, log_dir: Path, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
        env = child_environment(job.env)
        user = env.get("GODEBUG", "")
        env["GODEBUG"] = ",".join(x for x in (user, "cgocheck=2") if x)  # the last setting wins
        return list(job.command), env

    def incomplete(self, g) -> str:
        if g.signal is not None and not g.main_reported:
            return f"crashed with {g.signal} and the Go runtime wrote no report of it"
        return ""


CHECKERS = (GoAsan(), CgoCheck())
FAMILY = ("go", "Go: go build -asan, and GODEBUG=cgocheck=2")
