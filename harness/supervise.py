"""Start one job's process and make sure it ends, whatever it does: the supervising half of a run.

Every job: an argument list, stdin from /dev/null (or the file a project target names, read
only), stdout and stderr to files, its own session, a timeout, and nothing of it left running
afterwards.  The command runs under lh-reaper
(data/reaper.c, compiled once per cache): a child subreaper that sets the core-dump and
file-size limits before anything of the job runs, runs the command in a process group of its
own, and once the command has ended kills whatever it left behind, including processes that
setsid() out of its group.  The reaper must be the last of the job to end, so this module never
signals the command or a group holding the reaper: it asks the reaper, by pid (a pidfd, so never
another process that reused the pid), and the reaper passes the signal on to the command's group:
- the timeout: SIGTERM (STOP_GENTLY: valgrind finishes its XML), then after TERM_GRACE_S SIGINT
  (STOP_NOW: SIGKILL to the command's group, and the reaper kills what is left at once);
- Ctrl-C or SIGTERM to leakharness (terminate_all): STOP_NOW at once, since an interrupted job
  is never recorded and its logs are never read.
Then it waits for the reaper, up to REAPER_BOUND_S; only a reaper that has not ended by then is
killed from here, with every process under it (the last resort).  Without a C compiler there is
no reaper: the command leads its own group, and the group is signalled directly (a process that
leaves the group may then outlive its job).

LEAKHARNESS_OUTPUT_CAP (bytes) lowers or raises the size any one file of a job may grow to
(output_cap(); OUTPUT_CAP by default), so that tests of the cap need not write a gibibyte.

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
from typing import Callable

from .errors import LeakHarnessError

TERM_GRACE_S = 5.0  # from SIGTERM to SIGKILL for a job that timed out
REAPER_BOUND_S = 30.0  # how long lh-reaper may take, once told to stop now, to kill and reap the job
OUTPUT_CAP = 1 << 30  # bytes any one file of a job may grow to, by default
OUTPUT_CAP_ENV = "LEAKHARNESS_OUTPUT_CAP"
_CAP_MAX = (1 << 63) - 2  # below RLIM_INFINITY, which would mean no cap at all
NO_CAP = _CAP_MAX  # a project's build steps: no cap on what a build writes (a big debug archive)
REAPER_SOURCE = Path(__file__).parent / "data" / "reaper.c"
# What lh-reaper does on each signal (reaper.c): SIGTERM to the command's group, or SIGKILL to it
# and an immediate end to whatever is left.
STOP_GENTLY = signal.SIGTERM
STOP_NOW = signal.SIGINT


@dataclass(frozen=True)
class Exit:
    """How a job's process ended."""

    returncode: int | None  # negative: the signal that ended it (as subprocess says)
    timed_out: bool
    duration_s: float
    main_pid: int | None  # the command's own pid (the checker names its logs by it)
    start_error: str = ""  # the command could not be started at all (lh-reaper's own failure is in stderr)


def output_cap() -> int:
    """The size in bytes any one file of a job may grow to: LEAKHARNESS_OUTPUT_CAP, a whole
    number above 0, or OUTPUT_CAP when it is unset or empty."""
    raw = os.environ.get(OUTPUT_CAP_ENV, "")
    text = raw.strip()
    if not text:
        return OUTPUT_CAP
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= _CAP_MAX:
        raise LeakHarnessError(f"{OUTPUT_CAP_ENV}={raw!r}: not a size in bytes (a whole number above 0, "
                               f"e.g. {OUTPUT_CAP})")
    return int(text)


class _Job:
    """A started job's process (lh-reaper, or the command itself without one), and how to stop it."""

    def __init__(self, proc: subprocess.Popen, reaped: bool, pid_file: str | None):
        self.proc = proc
        self.reaped = reaped  # proc is lh-reaper
        self.pid_file = pid_file
        try:  # a pidfd names this very process, even once its pid is free for reuse
            self.pidfd: int | None = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            self.pidfd = None

    def stop(self, now: bool) -> None:
        """Ask the job to end: the reaper passes it on to the command's group."""
        if not self.reaped:
            kill_group(self.proc.pid, signal.SIGKILL if now else signal.SIGTERM)
            return
        sig = STOP_NOW if now else STOP_GENTLY
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, sig)
            elif self.proc.returncode is None:
                self.proc.send_signal(sig)
        except (ProcessLookupError, PermissionError, OSError):
            pass  # it has ended already

    def wait(self, timeout: float) -> bool:
        """Whether the process ended (and was reaped) within timeout seconds.  Popen.wait polls
        with sleeps of up to 50 ms; a pidfd wakes us the moment it ends, which over a catalog
        of short runs is a second of wall time."""
        if self.proc.returncode is not None:
            return True
        if self.pidfd is None:
            try:
                self.proc.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if poller.poll(min(left, 3600) * 1000):
                self.proc.wait()
                return True

    def last_resort(self) -> None:
        """The reaper did not end when told to: kill it and everything under it from here, the
        command's group as well (named in the pid file) in case it was not under it yet."""
        for _ in range(3):  # what forks meanwhile is found on the next pass
            for pid in _descendants(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        command = _read_pid(self.pid_file) if self.pid_file else None
        if command:
            kill_group(command, signal.SIGKILL)
        kill_group(self.proc.pid, signal.SIGKILL)  # the reaper's own group: the reaper alone
        # Bounded even now (a process in uninterruptible sleep ignores SIGKILL until it wakes);
        # a job that gets here timed out or was interrupted, so it is incomplete either way.
        self.wait(REAPER_BOUND_S)

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


# The jobs under way, so that an interrupted leakharness can end them all.
_ACTIVE: set[_Job] = set()
_ACTIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()


class LaunchWatch:
    """Calls `callback` once: in the thread that started the job, when `count` jobs' processes
    have started here, or at fire(), whichever comes first (count None: at fire() only);
    cancel() takes it back."""

    def __init__(self, count: int | None, callback: Callable[[], None]):
        self.left = count
        self.callback: Callable[[], None] | None = callback
        if count is not None:
            with _ACTIVE_LOCK:
                _WATCHES.add(self)

    def fire(self) -> None:
        callback = self.cancel()
        if callback is not None:
            callback()

    def cancel(self) -> Callable[[], None] | None:
        """No call after this; the callback if it was still due."""
        with _ACTIVE_LOCK:
            callback, self.callback = self.callback, None
            _WATCHES.discard(self)
        return callback


_WATCHES: set[LaunchWatch] = set()


def _launched() -> None:
    due = []
    with _ACTIVE_LOCK:
        for watch in _WATCHES:
            watch.left -= 1
            if watch.left < 1:
                due.append(watch)
    for watch in due:
        watch.fire()


def terminate_all() -> None:
    """End every job under way at once and refuse new ones (Ctrl-C: an interrupted job is not
    recorded, so valgrind's XML is not worth waiting for).  Each job's own supervise() waits for
    its reaper to have killed everything."""
    _STOPPING.set()
    with _ACTIVE_LOCK:  # held while signalling: a job's pidfd is closed only once it is out of the set
        for job in _ACTIVE:
            job.stop(now=True)


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


def _read_pid(pid_file: str) -> int | None:
    try:
        return int(Path(pid_file).read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _descendants(root: int) -> list[int]:
    """Every process under root (from /proc), parents before their children."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 1:].split()[1])  # comm may hold spaces and ')'
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            found.append(pid)
            todo.append(pid)
    return found


def supervise(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float, stdout: Path, stderr: Path,
              cache_dir: Path, stdin: Path | None = None) -> Exit:
    """Run cmd to its end (or its timeout) and leave nothing of it running; its stdin is the
    file `stdin` (read only), or /dev/null."""
    cap = output_cap()  # a bad value stops here, before anything runs
    try:
        feed = open(stdin if stdin is not None else os.devnull, "rb")
    except OSError as exc:
        return Exit(None, False, 0.0, None, start_error=f"cannot open its stdin {stdin}: {exc.strerror or exc}")
    with feed, open(stdout, "wb") as out, open(stderr, "wb") as err:
        return run_reaped(cmd, env, cwd, timeout, feed, out, err, cache_dir, cap, stdout.parent)


def run_reaped(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float, stdin, stdout, stderr,
               cache_dir: Path, cap: int, pid_dir: Path, counted: bool = True) -> Exit:
    """supervise()'s work on files already open: cmd under lh-reaper (files it writes capped at
    `cap` bytes), to its end or its timeout, stopped with the run (terminate_all), nothing of it
    left running, nor once leakharness is killed outright.  A project's build steps run here too
    (counted False: they are no job a LaunchWatch waits for)."""
    wrapper = reaper(cache_dir)
    pid_file = None
    if wrapper is not None:
        fd, pid_file = tempfile.mkstemp(prefix="lh-pid.", dir=pid_dir)
        os.close(fd)
        full = [str(wrapper), pid_file, str(cap), *cmd]
    else:
        full = list(cmd)
    started = time.monotonic()
    timed_out = False
    try:
        proc = subprocess.Popen(full, stdin=stdin, stdout=stdout, stderr=stderr, env=env,
                                cwd=cwd, start_new_session=True)
    except OSError as exc:
        if pid_file is not None:
            Path(pid_file).unlink(missing_ok=True)
        return Exit(None, False, 0.0, None, start_error=f"cannot start {full[0]}: {exc.strerror or exc}")
    job = _Job(proc, wrapper is not None, pid_file)
    with _ACTIVE_LOCK:
        _ACTIVE.add(job)
    try:
        if counted:
            _launched()  # in the try: whatever a watch's callback does, this job is still seen to its end
        if _STOPPING.is_set():  # interrupted while this one was starting
            job.stop(now=True)
        if not job.wait(timeout):
            timed_out = True
            job.stop(now=False)  # valgrind finishes its XML on SIGTERM
            if not job.wait(TERM_GRACE_S):
                job.stop(now=True)
    finally:
        # Whatever happened (Ctrl-C included), nothing of this run outlives it: the reaper
        # ends only once it has killed and reaped everything under it.
        try:
            if not job.wait(0):
                job.stop(now=True)
                if not job.wait(REAPER_BOUND_S):
                    job.last_resort()
            if not job.reaped:  # no reaper: what is left of the command's group
                kill_group(proc.pid, signal.SIGKILL)
            elif proc.returncode is not None and proc.returncode < 0 and pid_file is not None:
                # The reaper itself killed (from outside): the command it held runs on, its
                # parent gone; its group goes here.
                command = _read_pid(pid_file)
                if command:
                    kill_group(command, signal.SIGKILL)
        finally:
            with _ACTIVE_LOCK:
                _ACTIVE.discard(job)
            job.close()
    duration = time.monotonic() - started
    main_pid = proc.pid
    start_error = ""
    if pid_file is not None:
        main_pid = _read_pid(pid_file)
        Path(pid_file).unlink(missing_ok=True)
    return Exit(proc.returncode, timed_out, duration, main_pid, start_error)
