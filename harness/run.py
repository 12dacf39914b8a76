"""Run one program under one checker: the command and environment each checker needs, then
supervise.py to run it safely and collect.py to read what the checker wrote.

The program runs in the caller's working directory (a user's relative arguments work); the
checker writes into a private folder whose absolute path is safe for every tool's option
syntax, so that a results folder with spaces, colons or quotes in its name cannot break a log
path, and two runs can never read each other's half-written files.  Whatever the checker
wrote before the end is parsed: a timed-out or crashed run keeps its findings, but it is
"incomplete", never clean.

Go programs (cgo) run under memcheck with the shipped Go suppressions (data/go/go.supp), under
go-asan (the -asan build whose helper runs LeakSanitizer when main returns; signals are left to
the Go runtime, whose crash output names the Go callers, since no unwinder crosses the cgo stack
switch) and under cgocheck (GODEBUG=cgocheck=2).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import supervise
from .collect import collect, move_logs, not_instrumented
from .findings import Finding
from .native import not_hardened
from .supervise import reset_stop, stopping, terminate_all  # noqa: F401 - the stop switch, used by orchestrate

SUPPRESSIONS = Path(__file__).parent / "data" / "openssl.supp"
GO_SUPPRESSIONS = Path(__file__).parent / "data" / "go" / "go.supp"
GO_LSAN_SUPPRESSIONS = Path(__file__).parent / "data" / "go" / "lsan.supp"
# go-asan: the leak check is the helper's (LSan's detect_leaks must stay on for it to do anything);
# a signal goes to the Go runtime, which prints the goroutine stacks with the Go callers and the
# cgo function, where ASan's report would stop at the cgo stack switch.
GO_ASAN_OPTIONS = ("detect_leaks=1:handle_segv=0:handle_sigbus=0:handle_sigfpe=0:handle_sigill=0"
                   ":handle_abort=0:allow_user_segv_handler=1")
# Runtimes that run a Go binary (memcheck may run either kind: told by the binary itself).
GO_RUNTIMES = ("go-asan", "cgocheck")
VALGRIND_OPTIONS = (
    "--xml=yes",
    "--leak-check=full",
    "--show-leak-kinds=all",
    "--trace-children=yes",
    "--num-callers=40",
)
# LSan misses leaks whose pointer lingers in a dead stack slot unless use_stacks=0, and cuts
# stacks at CRYPTO_zalloc with fast unwinding (catalog.md measured both); 40 frames as valgrind's
# --num-callers, since LSan's default 30 loses main under deep certificate-parsing stacks.
SANITIZER_ENV = {
    "ASAN_OPTIONS": "fast_unwind_on_malloc=0:malloc_context_size=40:detect_stack_use_after_return=1:detect_leaks=1"
                    ":abort_on_error=0:disable_coredump=1",
    "LSAN_OPTIONS": "use_stacks=0",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=0",
    "TSAN_OPTIONS": "halt_on_error=0:second_deadlock_stack=1",
    "MSAN_OPTIONS": "",
}
# Options the user's own cannot turn off: the log path, ASan's exit statistics (proof that the
# exit-time leak check ran) and the leak check itself (detect_leaks=0 would make a leak look clean).
FORCED_OPTIONS = {
    "ASAN_OPTIONS": ":atexit=1:detect_leaks=1:leak_check_at_exit=1",
    "LSAN_OPTIONS": ":detect_leaks=1:leak_check_at_exit=1",
}
INSTALL_HINT = {"memcheck": "sudo apt-get install valgrind (or scripts/install-system-packages.sh)"}
# The characters a log path may hold and still pass through every tool's option syntax unquoted
# (ASAN_OPTIONS splits on ':' ',' and spaces; valgrind expands '%').
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")
# Placeholder for the per-job log folder in what the result cache hashes.
LOG_PLACEHOLDER = Path("/leakharness-logs")


@dataclass(frozen=True)
class Job:
    """One program under one checker."""

    checker: str  # "memcheck", "memcheck-O2", "asan", ...
    command: tuple[str, ...]  # the program and its arguments
    out_dir: Path  # where logs go
    timeout: float = 120.0
    env: tuple[tuple[str, str], ...] = ()
    cwd: Path | None = None  # where the program runs: the caller's working directory by default
    pattern: str | None = None  # None for a user's own program
    variant: str | None = None

    @property
    def runtime(self) -> str:
        if self.checker in GO_RUNTIMES:
            return self.checker
        return self.checker.split("-", 1)[0]

    @property
    def name(self) -> str:
        if self.pattern:
            return f"{self.pattern}::{self.variant}[{self.checker}]"
        return f"{os.path.basename(self.command[0])}[{self.checker}]"


@dataclass(frozen=True)
class RunResult:
    job: Job
    status: str  # "ok", "crashed", "incomplete", "build-failed", "tool-missing"
    findings: tuple[Finding, ...] = ()
    exit_code: int | None = None
    signal: str | None = None
    duration_s: float = 0.0
    logs: tuple[Path, ...] = ()
    partial: bool = False
    problems: tuple[str, ...] = ()
    message: str = ""  # why it is incomplete (one line), compiler output, install hint

    @property
    def status_text(self) -> str:
        return f"{self.status} ({self.signal})" if self.signal and self.status == "crashed" else self.status


# valgrind's tools: one XML file per process (vg.PID.xml), read by valgrind.py.
VALGRIND_RUNTIMES = ("memcheck", "helgrind")
HELGRIND_OPTIONS = (
    "--tool=helgrind",
    "--xml=yes",
    "--history-level=full",  # both stacks of a race, not only the second access
    "--trace-children=yes",
    "--num-callers=40",
)
# glibc's fatal messages (fortify, stack protector, malloc) on stderr, never on /dev/tty.
HARDENED_ENV = {"LIBC_FATAL_STDERR_": "1"}


def tool_available(runtime: str) -> bool:
    return runtime not in VALGRIND_RUNTIMES or shutil.which("valgrind") is not None


def is_go_binary(program: str) -> bool:
    """A binary the Go toolchain built (it carries Go's build-info blob)."""
    try:
        st = os.stat(program)
    except OSError:
        return False
    return _is_go_binary(os.path.realpath(program), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=256)
def _is_go_binary(path: str, mtime_ns: int, size: int) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            if head != b"\x7fELF":
                return False
            fh.seek(0)
            while True:
                chunk = fh.read(1 << 20)
                if not chunk:
                    return False
                if GO_BUILDINFO in chunk:
                    return True
                fh.seek(fh.tell() - len(GO_BUILDINFO))  # a mark split over two chunks
                if len(chunk) < (1 << 20):
                    return False
    except OSError:
        return False


GO_BUILDINFO = b"\xff Go buildinf:"


def child_environment(extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """The environment a job's tool is handed: the caller's, less what only describes the
    caller (test runner, make, terminal), which changes nothing a checker reports but would
    make every cached result miss."""
    env = {k: v for k, v in os.environ.items() if k not in VOLATILE_ENV}
    env.update(dict(extra))
    return env


# Set by shells, make, pytest and terminals; never read by a checker or by OpenSSL.
VOLATILE_ENV = frozenset({
    "PYTEST_CURRENT_TEST", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID",
    "PYTEST_ADDOPTS", "_", "OLDPWD", "PWD", "SHLVL", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES",
    "MAKE_TERMOUT", "MAKE_TERMERR", "COLUMNS", "LINES", "TERM", "COLORTERM", "TERM_PROGRAM", "WINDOWID",
    "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH_AUTH_SOCK", "DISPLAY", "XDG_SESSION_ID", "HISTFILE",
})


def command_for(job: Job, log_dir: Path, cache_dir: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a job, its logs going to log_dir."""
    env = child_environment(job.env)
    if job.runtime == "residue":
        from . import residue
        from .build import default_cache_dir

        cache = Path(cache_dir) if cache_dir else default_cache_dir()
        so = residue.interposer(cache)
        wrapper = supervise.reaper(cache)  # runs the command: not the program, the interposer stays inert in it
        # No interposer (no compiler): run_job stops first; the path only names what is missing.
        env = residue.environment(so or Path(residue.SO_NAME), env.get("LH_RESIDUE_SECRETS", ""), log_dir, env,
                                  skip=(wrapper,) if wrapper else ())
        return list(job.command), env
    if job.runtime == "memcheck":
        go = (f"--suppressions={GO_SUPPRESSIONS}",) if is_go_binary(job.command[0]) else ()
        cmd = [shutil.which("valgrind") or "valgrind", *VALGRIND_OPTIONS,
               # No --log-file: with it, valgrind 3.19 writes no XML for a forked child.
               f"--xml-file={log_dir}/vg.%p.xml", f"--suppressions={SUPPRESSIONS}", *go, *job.command]
        return cmd, env
    if job.runtime == "helgrind":
        cmd = [shutil.which("valgrind") or "valgrind", *HELGRIND_OPTIONS,
               f"--xml-file={log_dir}/vg.%p.xml", f"--suppressions={SUPPRESSIONS}", *job.command]
        return cmd, env
    if job.runtime == "hardened":  # natively: the checks are in the binary and in glibc
        env.update(HARDENED_ENV)
        return list(job.command), env
    if job.runtime == "cgocheck":
        user = env.get("GODEBUG", "")
        env["GODEBUG"] = ",".join(x for x in (user, "cgocheck=2") if x)  # the last setting wins
        return list(job.command), env
    if job.runtime == "go-asan":
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
        return list(job.command), env
    prefix = log_dir / "sanitizer"
    for var, options in SANITIZER_ENV.items():
        user = env.get(var, "")
        # Ours first, then the user's: a user's option wins, but the log path is always ours,
        # and ASan's exit statistics (atexit=1) prove the exit-time leak check ran.
        forced = f"log_path={prefix}" + FORCED_OPTIONS.get(var, "")
        env[var] = ":".join(x for x in (options, user, forced) if x)
    return list(job.command), env


def private_log_dir() -> Path:
    """A new folder for one job's logs, at a path every tool's option syntax takes as it is."""
    base = tempfile.gettempdir()
    if not _SAFE_PATH.match(base):
        base = "/tmp"
    path = Path(tempfile.mkdtemp(prefix="lh-", dir=base))
    if not _SAFE_PATH.match(str(path)):  # cannot happen with mkdtemp's alphabet; guard anyway
        raise OSError(f"unsafe log folder {path}")
    return path


def run_job(job: Job, cache_dir: Path | None = None) -> RunResult:
    from .build import default_cache_dir

    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if not tool_available(job.runtime):
        return RunResult(job, "tool-missing",
                         message=f"valgrind not found on PATH; install: {INSTALL_HINT['memcheck']}")
    if job.runtime == "residue":
        from .residue import interposer

        if interposer(cache_dir) is None:
            return RunResult(job, "tool-missing", message="the residue interposer could not be compiled: "
                             "install a C compiler (sudo apt-get install gcc)")
        if not dict(job.env).get("LH_RESIDUE_SECRETS"):
            why = "residue needs the canaries to look for: a pattern's secrets, or --secret HEX / --secrets-file FILE"
            return RunResult(job, "incomplete", message=why, problems=(why,))
    job.out_dir.mkdir(parents=True, exist_ok=True)
    for old in job.out_dir.glob("*"):  # a rerun into the same folder starts clean (the folder is ours)
        if old.is_file() and (old.name.startswith(("vg.", "sanitizer.", "valgrind.", "residue.")) or
                              old.name in ("stdout.txt", "stderr.txt")):
            old.unlink()
    why_not = ""
    if os.path.isfile(job.command[0]):
        why_not = (not_hardened(job.command[0]) if job.runtime == "hardened"
                   else not_instrumented(job.runtime, job.command[0]))
    if why_not:
        return RunResult(job, "incomplete", message=why_not, problems=(why_not,))
    private = private_log_dir()
    try:
        cmd, env = command_for(job, private, cache_dir)
        ended = supervise.supervise(cmd, env, Path(job.cwd or os.getcwd()), job.timeout,
                                    private / "stdout.txt", private / "stderr.txt", cache_dir)
        move_logs(private, job.out_dir)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    go = job.runtime in GO_RUNTIMES or is_go_binary(job.command[0])
    got = collect(job.out_dir, job.runtime, ended.returncode, ended.timed_out, job.timeout, ended.main_pid,
                  ended.start_error, go=go, go_mark=_go_mark(job) if go else "")
    return RunResult(job, got.status, got.findings, exit_code=ended.returncode, signal=got.signal,
                     duration_s=ended.duration_s, logs=got.logs, partial=got.partial, problems=got.problems,
                     message=got.reason)


def _go_mark(job: Job) -> str:
    """What a Go program built by leakharness prints once its exit-time check is set up: the
    go-asan build's after LeakSanitizer's check, the memcheck build's after hiding Go's memory
    from valgrind (a Go binary built elsewhere has no such mark, and is checked as it is)."""
    from .gobuild import LEAK_CHECK_MARK, MEMCHECK_MARK

    if job.runtime == "go-asan":
        return LEAK_CHECK_MARK
    if job.runtime == "memcheck" and _contains(job.command[0], MEMCHECK_MARK.encode()):
        return MEMCHECK_MARK
    return ""


def _contains(program: str, needle: bytes) -> bool:
    try:
        st = os.stat(program)
    except OSError:
        return False
    return _file_contains(os.path.realpath(program), st.st_mtime_ns, st.st_size, needle)


@functools.lru_cache(maxsize=256)
def _file_contains(path: str, mtime_ns: int, size: int, needle: bytes) -> bool:
    try:
        with open(path, "rb") as fh:
            return needle in fh.read()
    except OSError:
        return False



