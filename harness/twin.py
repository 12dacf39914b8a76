"""A run's forked twin: two processes take the run's tasks from one shared counter.

A job served from the cache is all Python (its build looked up, its key made from a dozen
files, its result read, judged and written), and one process's Python runs on one core at a
time: an all-cached re-run of the catalog was 0.68 s of one core's work, 1.7 ms a job, while
the other core idled.  Threads cannot share that work; a second process can.

The twin is forked before the run starts any thread (a fork copies every lock as it is, and
one held by another thread would never be let go in the child).  It takes tasks from the same
counter in the same order, performs each exactly as the run does (its job file written by
itself), and hands each record back through a pipe.  A task the twin claimed and did not hand
back (it died, or was stopped) is done by the run itself afterwards: the twin can make a run
faster, never lose a job.  The twin leaves with os._exit: nothing of the parent's (atexit
handlers, buffered output, a test runner's teardown) runs twice.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import threading
from typing import Callable, Iterator

from . import forked

MIN_TASKS = 16  # fewer tasks are not worth a second process (a `check` runs one or two)
_HEADER = struct.Struct("<Q")


class Claims:
    """The index of the next task to start, shared by a process and its forked twin: a counter
    in an anonymous file, taken under a POSIX record lock (held per process) and, within each
    process, a thread lock."""

    def __init__(self) -> None:
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create("leakharness-claims", os.MFD_CLOEXEC)
        else:  # a system without memfd: a temporary file, unlinked at once
            import tempfile

            self.fd = os.dup(tempfile.TemporaryFile().fileno())
        os.pwrite(self.fd, bytes(8), 0)
        self.lock = threading.Lock()

    def take(self) -> int:
        with self.lock:
            fcntl.lockf(self.fd, fcntl.LOCK_EX)
            try:
                n = int.from_bytes(os.pread(self.fd, 8, 0), "little")
                os.pwrite(self.fd, (n + 1).to_bytes(8, "little"), 0)
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN)
        return n

    def taken(self) -> int:
        """How many indices have been handed out (some may be past the last task)."""
        return int.from_bytes(os.pread(self.fd, 8, 0), "little")

    def close(self) -> None:
        os.close(self.fd)


def _stop_requested(signum, frame):
    raise KeyboardInterrupt


class Twin:
    """The parent's handle on its twin: the records it hands back, and its end."""

    def __init__(self, pid: int, fd: int):
        self.pid: int | None = pid
        self.fd = fd

    @classmethod
    def fork(cls, work: Callable[[Callable[[int, object], None]], None]) -> "Twin | None":
        """A twin running work(deliver), where deliver(index, record) hands a record back (a
        record of None, or an error, is not: the parent does that task again and meets the error
        itself); None when no twin can be made here (another thread runs, or no fork)."""
        import pickle  # here, before the fork, for both sides: a run without a twin needs none of it

        read_fd, write_fd = os.pipe()  # neither is inherited by what the jobs start
        parent = os.getpid()

        def in_the_twin() -> None:
            os.close(read_fd)
            _die_with(parent)
            # The parent asks the twin to stop with SIGUSR1 (SIGINT may be ignored: nohup).
            signal.signal(signal.SIGUSR1, _stop_requested)
            lock = threading.Lock()

            def deliver(index: int, record: object) -> None:
                if record is None or isinstance(record, BaseException):
                    return
                try:
                    data = pickle.dumps((index, record), protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:  # noqa: BLE001 - not handed back: the parent does it again
                    return
                with lock:
                    _write_all(write_fd, _HEADER.pack(len(data)) + data)

            work(deliver)

        pid = forked.fork_child(in_the_twin)
        os.close(write_fd)
        if pid is None:
            os.close(read_fd)
            return None
        return cls(pid, read_fd)

    def records(self) -> Iterator[tuple[int, object]]:
        """Each (index, record) the twin hands back, until it ends (or its pipe breaks)."""
        import pickle

        try:
            while True:
                head = _read_exactly(self.fd, _HEADER.size)
                if head is None:
                    return
                body = _read_exactly(self.fd, _HEADER.unpack(head)[0])
                if body is None:
                    return
                try:
                    yield pickle.loads(body)
                except Exception:  # noqa: BLE001 - a record cut short: the parent does that task
                    return
        finally:
            os.close(self.fd)

    def stop(self, grace: float = 10.0) -> None:
        """Ask the twin to stop (its running jobs killed, as on Ctrl-C); killed after grace."""
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass
        self.wait(grace)

    def wait(self, timeout: float | None = None) -> None:
        """Reap the twin, killing it first when it has not ended within timeout seconds."""
        if self.pid is not None:
            pid, self.pid = self.pid, None
            forked.reap(pid, timeout)


def _die_with(parent: int) -> None:
    """The twin is killed when the run is (PR_SET_PDEATHSIG): a leakharness killed outright
    leaves nothing running (each job's lh-reaper then kills its job, as the twin's death is
    its parent's)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the run died before that was in place
        os._exit(1)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, size: int) -> bytes | None:
    parts, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)
