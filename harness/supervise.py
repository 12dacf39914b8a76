"""Start one job's process and make sure it ends, whatever it does: the supervising half of a run.

Every job: an argument list, stdin from /dev/null, stdout and stderr to files, its own session
and process group, a timeout (SIGTERM to the group, so that valgrind finishes its XML, then
SIGKILL).  The command runs under lh-reaper (data/reaper.c, compiled once per cache): a child
subreaper that kills whatever the job left behind, including processes that setsid() out of
the group, and that sets the core-dump and file-size limits before anything of the job runs.
Ctrl-C or SIGTERM to leakharness ends every job under way (terminate_all).

What the job wrote is not read here: that is collect.py's job.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TERM_GRACE_S = 5.0
OUTPUT_CAP = 1 << 30  # bytes any one file of a job may grow to
REAPER_SOURCE = Path(__file__).parent / "data" / "reaper.c"


def output_cap() -> int:
    return OUTPUT_CAP


@dataclass(frozen=True)
class Exit:
    """How a job's process ended."""

    returncode: int | None  # negative: the signal that ended it (as subprocess says)
    timed_out: bool
    duration_s: float
    main_pid: int | None  # the command's own pid (the checker names its logs by it)
    start_error: str = ""  # the command could not be started at all (lh-reaper's own failure is in stderr)


# Process groups of the jobs under way, so that an interrupted leakharness can end them all.
_ACTIVE: set[int] = set()
_ACTIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()


def terminate_all() -> None:
    """End every job under way (their whole process groups) and refuse new ones."""
    _STOPPING.set()
    with _ACTIVE_LOCK:
        groups = list(_ACTIVE)
    for pgid in groups:
        kill_group(pgid, signal.SIGKILL)


def stopping() -> bool:
    return _STOPPING.is_set()


def reset_stop() -> None:
    _STOPPING.clear()


def kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reaper(cache_dir: Path) -> Path | None:
    """lh-reaper compiled into the cache, or None when no C compiler is there; then jobs run
    without it and a process that leaves its group may outlive its job."""
    from .build import helper_binary

    return helper_binary(REAPER_SOURCE, cache_dir, "reaper", "lh-reaper", ("-O2",))


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


def supervise(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float, stdout: Path, stderr: Path,
              cache_dir: Path) -> Exit:
    """Run cmd to its end (or its timeout) and leave nothing of it running."""
    wrapper = reaper(cache_dir)
    pid_file = None
    if wrapper is not None:
        fd, pid_file = tempfile.mkstemp(prefix="lh-pid.", dir=stdout.parent)
        os.close(fd)
        full = [str(wrapper), pid_file, str(OUTPUT_CAP), *cmd]
    else:
        full = list(cmd)
    started = time.monotonic()
    timed_out = False
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        try:
            proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                    cwd=cwd, start_new_session=True)
        except OSError as exc:
            return Exit(None, False, 0.0, None, start_error=f"cannot start {full[0]}: {exc.strerror or exc}")
        with _ACTIVE_LOCK:
            _ACTIVE.add(proc.pid)
        if _STOPPING.is_set():  # interrupted while this one was starting
            kill_group(proc.pid, signal.SIGKILL)
        try:
            try:
                wait_exit(proc, timeout)
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
    main_pid = proc.pid
    start_error = ""
    if pid_file is not None:
        try:
            main_pid = int(Path(pid_file).read_text().strip() or 0) or None
        except (OSError, ValueError):
            main_pid = None
        Path(pid_file).unlink(missing_ok=True)
    return Exit(proc.returncode, timed_out, duration, main_pid, start_error)
