"""Run one program under one checker, safely, and collect what the checker wrote.

Every run: an argument list, stdin from /dev/null, its own process group (so a timeout or
Ctrl-C kills the program and every child it made), core dumps off, output files capped, a
timeout (SIGTERM to the group, then SIGKILL).  Whatever the checker wrote before the end is
parsed: a timed-out or crashed run keeps its findings.
"""

from __future__ import annotations

import os
import resource
import select
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ParseError
from .findings import Finding
from .parse import parse_file

SUPPRESSIONS = Path(__file__).parent / "data" / "openssl.supp"
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
}
TERM_GRACE_S = 5.0
OUTPUT_CAP = 1 << 30  # bytes any one file of a run may grow to
INSTALL_HINT = {"memcheck": "sudo apt-get install valgrind (or scripts/install-system-packages.sh)"}
DEADLY = {"SEGV": "SIGSEGV", "BUS": "SIGBUS", "FPE": "SIGFPE", "ILL": "SIGILL", "ABRT": "SIGABRT"}


@dataclass(frozen=True)
class Job:
    """One program under one checker."""

    checker: str  # "memcheck", "memcheck-O2", "asan", ...
    command: tuple[str, ...]  # the program and its arguments
    out_dir: Path  # where logs go
    timeout: float = 120.0
    env: tuple[tuple[str, str], ...] = ()
    cwd: Path | None = None
    pattern: str | None = None  # None for a user's own program
    variant: str | None = None

    @property
    def runtime(self) -> str:
        return self.checker.split("-", 1)[0]

    @property
    def name(self) -> str:
        if self.pattern:
            return f"{self.pattern}::{self.variant}[{self.checker}]"
        return f"{os.path.basename(self.command[0])}[{self.checker}]"


@dataclass(frozen=True)
class RunResult:
    job: Job
    status: str  # "ok", "timeout", "crashed", "build-failed", "tool-missing"
    findings: tuple[Finding, ...] = ()
    exit_code: int | None = None
    signal: str | None = None
    duration_s: float = 0.0
    logs: tuple[Path, ...] = ()
    partial: bool = False
    problems: tuple[str, ...] = ()
    message: str = ""  # compiler output, install hint

    @property
    def status_text(self) -> str:
        return f"{self.status} ({self.signal})" if self.signal and self.status == "crashed" else self.status


# Process groups of the runs under way, so that an interrupted leakharness can end them all.
_ACTIVE: set[int] = set()
_ACTIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()


def terminate_all() -> None:
    """End every run under way (their whole process groups) and refuse new ones."""
    _STOPPING.set()
    with _ACTIVE_LOCK:
        groups = list(_ACTIVE)
    for pgid in groups:
        kill_group(pgid, signal.SIGKILL)


def stopping() -> bool:
    return _STOPPING.is_set()


def reset_stop() -> None:
    _STOPPING.clear()


def tool_available(runtime: str) -> bool:
    return runtime != "memcheck" or shutil.which("valgrind") is not None


def command_for(job: Job) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a job."""
    env = dict(os.environ)
    env.update(dict(job.env))
    if job.runtime == "memcheck":
        cmd = [shutil.which("valgrind") or "valgrind", *VALGRIND_OPTIONS,
               # No --log-file: with it, valgrind 3.19 writes no XML for a forked child.
               f"--xml-file={job.out_dir}/vg.%p.xml", f"--suppressions={SUPPRESSIONS}", *job.command]
        return cmd, env
    prefix = job.out_dir / "sanitizer"
    for var, options in SANITIZER_ENV.items():
        user = env.get(var, "")
        # Ours first, then the user's: a user's option wins, but log_path is always ours.
        env[var] = ":".join(x for x in (options, user, f"log_path={prefix}") if x)
    return list(job.command), env


def _limit(pid: int) -> None:
    """No core dumps; cap file sizes.  Set right after the start (prlimit) rather than in a
    preexec_fn, which is unsafe when runs are started from several threads."""
    try:
        resource.prlimit(pid, resource.RLIMIT_CORE, (0, 0))
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (OUTPUT_CAP, OUTPUT_CAP))
    except (ProcessLookupError, PermissionError, OSError):
        pass


def kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_exit(proc: subprocess.Popen, timeout: float) -> int:
    """Popen.wait(timeout) polls with sleeps of up to 50 ms; a pidfd wakes us the moment the
    process ends, which over a catalog of short runs is a second of wall time."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return proc.wait(timeout=timeout)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, timeout)
            if poller.poll(min(left, 3600) * 1000):
                return proc.wait()
    finally:
        os.close(pidfd)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run_job(job: Job) -> RunResult:
    if not tool_available(job.runtime):
        return RunResult(job, "tool-missing",
                         message=f"valgrind not found on PATH; install: {INSTALL_HINT['memcheck']}")
    job.out_dir.mkdir(parents=True, exist_ok=True)
    for old in job.out_dir.glob("*"):  # a rerun into the same folder starts clean
        if old.is_file() and (old.name.startswith(("vg.", "sanitizer.", "valgrind.")) or
                              old.name in ("stdout.txt", "stderr.txt")):
            old.unlink()
    cmd, env = command_for(job)
    started = time.monotonic()
    timed_out = False
    with open(job.out_dir / "stdout.txt", "wb") as out, open(job.out_dir / "stderr.txt", "wb") as err:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                    cwd=job.cwd or job.out_dir, start_new_session=True)
        except OSError as exc:
            return RunResult(job, "tool-missing" if job.runtime == "memcheck" else "crashed",
                             message=f"cannot start {cmd[0]}: {exc.strerror or exc}")
        _limit(proc.pid)
        with _ACTIVE_LOCK:
            _ACTIVE.add(proc.pid)
        if _STOPPING.is_set():  # interrupted while this one was starting
            kill_group(proc.pid, signal.SIGKILL)
        try:
            try:
                wait_exit(proc, job.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                kill_group(proc.pid, signal.SIGTERM)  # valgrind finishes its XML on SIGTERM
                try:
                    proc.wait(timeout=TERM_GRACE_S)
                except subprocess.TimeoutExpired:
                    kill_group(proc.pid, signal.SIGKILL)
                    proc.wait()
        finally:
            # Whatever happened (Ctrl-C included), nothing of this run outlives it.
            kill_group(proc.pid, signal.SIGKILL)
            if proc.returncode is None:
                proc.wait()
            with _ACTIVE_LOCK:
                _ACTIVE.discard(proc.pid)
    duration = time.monotonic() - started
    return collect(job, proc.returncode, timed_out, duration)


def log_files(out_dir: Path) -> list[Path]:
    return sorted(list(out_dir.glob("vg.*.xml")) + list(out_dir.glob("sanitizer.*")))


def collect(job: Job, returncode: int | None, timed_out: bool, duration: float) -> RunResult:
    findings: list[Finding] = []
    problems: list[str] = []
    partial = False
    logs = log_files(job.out_dir)
    for path in logs:
        try:
            log = parse_file(path)
        except ParseError as exc:
            # An empty XML file: valgrind was killed before writing.  Say so, lose nothing else.
            problems.append(str(exc))
            partial = True
            continue
        findings.extend(log.findings)
        partial = partial or log.partial
        problems.extend(f"{path.name}: {p}" for p in log.problems)
    sig = None
    status = "ok"
    if timed_out:
        status = "timeout"
    elif returncode is not None and returncode < 0:
        status, sig = "crashed", _signal_name(-returncode)
    else:
        deadly = next((DEADLY[f.kind] for f in findings if f.kind in DEADLY), None)
        if deadly:  # a sanitizer caught the signal, reported it and exited
            status, sig = "crashed", deadly
    return RunResult(job, status, tuple(findings), exit_code=returncode, signal=sig, duration_s=duration,
                     logs=tuple(logs), partial=partial, problems=tuple(problems))
