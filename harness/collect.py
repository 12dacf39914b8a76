"""Read what a finished job's checker wrote, and say whether the job was really checked.

The collecting half of a run (supervise.py is the other): the logs are moved from the job's
private folder into its results folder, parsed into Findings, and the run is given a status:
- "ok": the checker ran to the end and its logs are whole (clean, or with findings);
- "crashed": the program died of a signal and the checker reported it;
- "incomplete": anything less, with the reason in one line: the checker or the program could
  not be started, the binary is not instrumented for that sanitizer, a log is missing or cut
  short, the job timed out or was killed from outside, it crashed with no report, the output
  limit was reached, the sanitizer's runtime failed, or its exit-time leak check never ran.
An incomplete job is never clean, never a pass and never cached: a false clean is the worst
bug leakharness can have.

A Go program (cgo) also reports on stderr: the Go runtime's crash output (a panic, a fatal
error, a signal inside C, cgocheck's verdicts) is parsed from there (goparse.py).  A go-asan run
is whole only when the leak check the build added ran (its mark on stderr), or when ASan or the
Go runtime reported the error that ended it; a memcheck run of leakharness's Go build only when
the program's main returned (the build then hid Go's memory from valgrind's leak check) or an
error was found; a cgocheck run when the program exited.
"""

from __future__ import annotations

import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from .errors import ParseError
from .findings import Finding
from .goparse import name_go_callers, parse_go_crash, recorded_allocations
from .goparse import sniff as looks_like_go_crash
from .gobuild import GO_ALLOC_MARK, LEAK_CHECK_MARK
from .native import parse_native_stderr
from .parse import parse_file

# The deadly signals a sanitizer catches and reports (its report's kind), then exits.
DEADLY = {"SEGV": "SIGSEGV", "BUS": "SIGBUS", "FPE": "SIGFPE", "ILL": "SIGILL", "ABRT": "SIGABRT"}
# Signals a program does not send itself: the job was stopped from outside (or by its timeout).
EXTERNAL = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE}
# What lh-reaper says when it had to kill what the program left running (supervise.py).
REAPER_KILLED = "lh-reaper: killed processes the program left running"
# What lh-reaper says when it cannot exec the command (exit 126 or 127).
REAPER_CANNOT_RUN = re.compile(r"^lh-reaper: (cannot run .*)$", re.M)
# What LSan writes when every leak it found was suppressed.
SUPPRESSIONS_USED = b"Suppressions used:"
# What ASan prints at exit with atexit=1: proof that the program ended through exit(), so that
# LeakSanitizer's exit-time check ran too.
ASAN_EXIT_MARK = b"AddressSanitizer exit stats:"
# A sanitizer runtime that failed before or instead of checking says so on stderr.
_RUNTIME_FAILURE = re.compile(
    r"(?:Sanitizer: ERROR: .*|expected '=' in \w+_OPTIONS|ERROR: \w*Sanitizer failed.*"
    r"|==\d+==ERROR: External symbolizer.*|ERROR: \w*Sanitizer: .*(?:failed|cannot|unsupported|not supported).*"
    r"|==\d+==\w*Sanitizer CHECK failed.*|FATAL: \w*Sanitizer.*)$", re.M)
# Symbols only a binary built with that sanitizer holds (imported from the shared runtime with
# gcc, linked in with clang).
INSTRUMENTED = {
    "asan": (b"__asan_init",),
    "go-asan": (b"__asan_init",),  # go build -asan imports it from gcc's runtime, as gcc does
    "cgocheck": (b"\xff Go buildinf:",),  # any Go binary: GODEBUG=cgocheck=2 is read by its runtime
    "tsan": (b"__tsan_init",),
    "ubsan": (b"__ubsan_handle_",),
    "msan": (b"__msan_init",),
}
FLAG = {"go-asan": "go build -asan", "cgocheck": "the Go toolchain", "asan": "-fsanitize=address", "tsan": "-fsanitize=thread", "ubsan": "-fsanitize=undefined",
        "msan": "-fsanitize=memory"}


@dataclass(frozen=True)
class Collected:
    status: str  # "ok", "crashed" or "incomplete"
    findings: tuple[Finding, ...]
    logs: tuple[Path, ...]
    partial: bool
    problems: tuple[str, ...]
    signal: str | None
    reason: str = ""  # why the job is incomplete, one line


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def not_instrumented(runtime: str, program: str) -> str:
    """Why a sanitizer cannot check program, or "" when it can (as far as the file shows)."""
    marks = INSTRUMENTED.get(runtime)
    if not marks:
        return ""
    try:
        with open(program, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return f"cannot read {program}: {exc.strerror or exc}"
    if not data.startswith(b"\x7fELF"):
        return f"{program} is not an ELF executable: {runtime} checks only a binary built with {FLAG[runtime]}"
    if not any(m in data for m in marks):
        return f"{program} is not built with {FLAG[runtime]}: {runtime} cannot check it"
    if runtime == "go-asan" and LEAK_CHECK_MARK.encode() not in data:
        return (f"{program} has no leakharness leak check: go-asan checks a Go program that leakharness built "
                f"(check --build main.go), since Go 1.19 never runs LeakSanitizer by itself")
    return ""


def move_logs(private: Path, out_dir: Path) -> None:
    """The job's private folder (short, safe paths for the tools' option syntax) -> its results folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in private.iterdir():
        if item.is_file():
            target = out_dir / item.name
            shutil.move(str(item), str(target))
            try:
                target.chmod(0o644)  # sanitizers make their logs 0600/0640; the report links them for all
            except OSError:
                pass


def log_files(out_dir: Path) -> list[Path]:
    return sorted(list(out_dir.glob("vg.*.xml")) + list(out_dir.glob("sanitizer.*")) + list(out_dir.glob("residue.*")))


def _pid_of(path: Path) -> int | None:
    m = re.search(r"\.(\d+)(?:\.xml)?$", path.name)
    return int(m.group(1)) if m else None


def _stderr_tail(path: Path, limit: int = 16384) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _go_crash(stderr: Path, main_pid: int | None) -> tuple[list[Finding], list[str], bool]:
    """(findings, problems, cut) from the Go runtime's crash output on a Go program's stderr."""
    try:
        with open(stderr, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            # The crash comes last: a head for the sniff, unless the program printed megabytes first.
            fh.seek(max(0, size - (4 << 20)))
            head = fh.read()
    except OSError:
        return [], [], False
    if not looks_like_go_crash(head):
        return [], [], False
    try:
        log = parse_go_crash(str(stderr), pid=main_pid)
    except ParseError as exc:
        return [], [str(exc)], True
    return list(log.findings), [f"{stderr.name}: {p}" for p in log.problems], log.partial


def collect(out_dir: Path, runtime: str, returncode: int | None, timed_out: bool, timeout: float,
            main_pid: int | None, start_error: str = "", go: bool = False, go_mark: str = "") -> Collected:
    findings: list[Finding] = []
    problems: list[str] = []
    partial = False
    logs = log_files(out_dir)
    parsed_pids: set[int] = set()
    complete_main = False  # memcheck: the main process's XML is whole
    exit_mark = False  # asan: the main process reached exit() with ASan alive
    cut: list[str] = []
    residue_logs: list = []  # residue: every process's parsed log, for residue.whole_run
    for path in logs:
        pid = _pid_of(path)
        try:
            log = parse_file(path)
        except ParseError as exc:
            if path.name.startswith("sanitizer."):
                try:
                    with open(path, "rb") as fh:
                        head = fh.read(65536)  # a log of exit statistics alone starts with the mark
                except OSError:
                    head = b""
                if runtime == "asan" and ASAN_EXIT_MARK in head:
                    if pid == main_pid or main_pid is None:
                        exit_mark = True
                    continue  # exit statistics only: a clean exit, nothing to report
                if head.lstrip(b"-\n").startswith(SUPPRESSIONS_USED) and b"ERROR:" not in head:
                    # LSan found only leaks a suppression covers: it lists the suppressions used, nothing else.
                    problems.append(f"{path.name}: only leaks that suppressions cover")
                    continue
            problems.append(str(exc))
            cut.append(path.name)
            partial = True
            continue
        findings.extend(log.findings)
        if path.name.startswith("residue."):
            residue_logs.append(log)
        if pid is not None:
            parsed_pids.add(pid)
        if log.partial:
            partial = True
            cut.append(path.name)
        problems.extend(f"{path.name}: {p}" for p in log.problems)
        if pid == main_pid or main_pid is None:
            if path.name.startswith("vg.") and not log.partial and getattr(log, "finished", False):
                complete_main = True
            if path.name.startswith("sanitizer."):
                exit_mark = exit_mark or bool(getattr(log, "exit_stats", False))
    # valgrind reports the signal that ended the program; SIGTERM or SIGKILL came from outside
    # (our timeout, a user's kill), not from the program: the job is incomplete, not a crash.
    external = [f for f in findings if f.kind.startswith("FatalSignal:")
                and f.kind.split(":", 1)[1] in {s.name for s in EXTERNAL}]
    if external:
        findings = [f for f in findings if f not in external]
        problems.append(f"ended by {external[0].kind.split(':', 1)[1]} from outside")
    stderr = out_dir / "stderr.txt"
    if go:  # the Go runtime's own report of a crash, a panic or a cgocheck verdict
        go_findings, go_problems, go_cut = _go_crash(stderr, main_pid)
        findings.extend(go_findings)
        problems.extend(go_problems)
        if go_findings or go_cut:
            logs.append(stderr)
        if go_cut and not go_findings:
            cut.append(stderr.name)
    if runtime == "go-asan" and any("_Cfunc__Cmalloc" in f.functions() for f in findings):
        table = recorded_allocations(str(stderr), GO_ALLOC_MARK) if stderr.is_file() else {}
        if table:  # the Go callers of cgo allocations LSan could not see past the stack switch
            lsan = [str(p) for p in logs if p.name.startswith("sanitizer.")]
            findings, _named, _seen = name_go_callers(findings, lsan, table)
    if runtime == "hardened":
        # No tool wrote a log: the program's stderr holds what fortify, the stack protector and
        # glibc's malloc printed as they aborted it.
        try:
            native = parse_native_stderr(stderr, returncode, pid=main_pid)
            findings.extend(native.findings)
            problems.extend(f"{stderr.name}: {p}" for p in native.problems)
            if native.findings:
                logs.append(stderr)
        except ParseError as exc:
            problems.append(str(exc))
            cut.append(stderr.name)
    sig = signal_name(-returncode) if returncode is not None and returncode < 0 else None
    main_reported = any(f.pid == main_pid for f in findings) if main_pid is not None else bool(findings)
    deadly = next((DEADLY[f.kind] for f in findings if f.kind in DEADLY), None)

    def incomplete(reason: str) -> Collected:
        return Collected("incomplete", tuple(findings), tuple(logs), partial, tuple(problems), sig, reason)

    if start_error:
        return incomplete(start_error)
    if timed_out:
        return incomplete(f"timed out after {timeout:g} s: the program did not finish, so the check is not whole")
    if returncode is not None and returncode < 0 and -returncode == signal.SIGXFSZ:
        return incomplete("output limit reached: a file of the job grew past the 1 GiB cap (SIGXFSZ)")
    if returncode is not None and returncode < 0 and -returncode in EXTERNAL:
        return incomplete(f"killed by {sig} from outside before the checker finished")
    tail = _stderr_tail(stderr)
    cannot_run = REAPER_CANNOT_RUN.search(tail) if returncode in (126, 127) else None
    if cannot_run:
        return incomplete(cannot_run.group(1))
    if REAPER_KILLED in tail:
        return incomplete("the program ended while processes it started were still running; they were killed "
                          "unchecked")
    if runtime in ("memcheck", "helgrind"):
        if not any(main_pid in (None, _pid_of(p)) for p in logs if p.name.startswith("vg.")):
            what = _last_line(tail) or f"exit code {returncode}"
            return incomplete(f"valgrind wrote no log for the program: {what}")
        if not complete_main:
            why = _last_line(tail)
            return incomplete("valgrind did not check the program to its end (its log is cut short, or it "
                              f"stopped at start-up){': ' + why if why else ''}")
        if cut:
            return incomplete(f"a log is cut short or unreadable: {', '.join(cut)}")
        if go and not go_mark:  # a Go binary built elsewhere: valgrind scans Go's memory too
            problems.append("a Go program not built by leakharness (check --build): C memory it lost while dead Go "
                            "frames or objects still hold its address shows as still reachable, not lost")
        main_errors = any(f.is_error and (main_pid is None or f.pid == main_pid) for f in findings)
        if go_mark and go_mark not in _stderr_tail(stderr, 1 << 20) and not main_errors:
            what = f"exit code {returncode}" if returncode is not None else "no exit code"
            return incomplete(f"the Go program ended before main returned (os.Exit, panic, signal; {what}), so "
                              f"valgrind's leak check ran with Go's memory in view, where stale pointers hide "
                              f"lost C memory")
    elif runtime == "residue":
        from .residue import whole_run

        why, notes = whole_run(residue_logs, main_pid)
        if why:
            said = _last_line(tail)
            return incomplete(why + (f" (stderr: {said})" if said and not residue_logs else ""))
        if cut:
            return incomplete(f"a log is cut short or unreadable: {', '.join(cut)}")
        problems.extend(notes)
    else:
        failure = _RUNTIME_FAILURE.search(tail)
        if failure:
            return incomplete(f"the {runtime} runtime failed: {failure.group(0).strip()[:300]}")
        if cut:
            return incomplete(f"a log is cut short or unreadable: {', '.join(cut)}")
        if sig is not None and not main_reported:
            return incomplete(f"crashed with {sig} and {runtime} wrote no report of it")
        if runtime == "asan" and not exit_mark and not main_reported:
            return incomplete("AddressSanitizer's exit-time leak check did not run (the program ended without "
                              "exit(): _exit, exec or a signal), so leaks were not checked")
        if runtime == "go-asan" and (go_mark or LEAK_CHECK_MARK) not in tail and not main_reported:
            what = f"exit code {returncode}" if returncode is not None else "no exit code"
            return incomplete(f"the leak check did not run: the program ended before main returned (os.Exit, "
                              f"panic, signal; {what}), so leaks were not checked")
    if sig is not None:
        if runtime in ("memcheck", "helgrind") and not any(f.kind.startswith("FatalSignal") for f in findings):
            return incomplete(f"crashed with {sig} and valgrind wrote no report of it")
        return Collected("crashed", tuple(findings), tuple(logs), partial, tuple(problems), sig)
    if deadly:  # a sanitizer caught the signal, reported it and exited
        return Collected("crashed", tuple(findings), tuple(logs), partial, tuple(problems), deadly)
    return Collected("ok", tuple(findings), tuple(logs), partial, tuple(problems), None)
