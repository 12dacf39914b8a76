"""A step of pure Python work done in a forked copy of this process, beside the work that follows.

A report is one core's work: its pages and its SARIF (and `report`'s results.json) are all
Python, holding the interpreter lock, so a thread cannot make them side by side.  A fork can:
the child shares the results already in memory (copied only where written, nothing pickled),
writes its file and exits while this process goes on with the pages.

The fork is taken only when this process has no other thread: a fork copies every lock as it
is, and one held by another thread would never be let go in the child.  Whenever the child
cannot do the step (no fork, a failure, a signal, past its time), the step is done here after
all, exactly as before: the child is a way to be faster, never a way to lose a file.  The
child leaves with os._exit: no atexit handler of this process runs twice, no buffered output
is written twice.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from typing import Callable

CHILD_TIMEOUT_S = 600.0  # a child past this (far past any report's own time) is killed


def fork_child(work: Callable[[], object]) -> int | None:
    """Fork a child that runs work() and leaves with os._exit (0 when work returned, 1 when it
    raised); its pid, or None when no fork is taken here (another thread runs, or no fork)."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return None
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:  # the child: the work, then out without running anything of the parent's
        code = 1
        try:
            work()
            code = 0
        except BaseException:  # noqa: BLE001 - the parent does what the child did not
            pass
        finally:
            os._exit(code)
    return pid


def reap(pid: int, timeout: float | None = None) -> int | None:
    """The child's wait status once it ends; None when it was still running after timeout
    seconds and was killed.  A Ctrl-C while waiting kills it too, and goes on."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                kill(pid)
                return None
            wait = 1.0 if left is None else min(left, 1.0)
            if fd is not None:
                select.select([fd], [], [], wait)
            else:
                time.sleep(min(wait, 0.005))
    except ChildProcessError:
        return None
    except BaseException:
        kill(pid)
        raise
    finally:
        if fd is not None:
            os.close(fd)


def ended_well(status: int | None) -> bool:
    """A child's wait status (reap's) says it ran its work to the end: exit code 0."""
    return status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def kill(pid: int) -> None:
    """SIGKILL the child and reap it."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


class Beside:
    """`with Beside(step):` runs step() in a forked child while the block runs, and at the end of
    the block waits for the child, doing step() here when the child did not do it.  When the
    block raises, the child is still waited for (what it writes is kept, as a file written
    before the failure would be) and the exception goes on; a Ctrl-C while waiting kills it."""

    def __init__(self, step: Callable[[], object], timeout: float = CHILD_TIMEOUT_S):
        self.step = step
        self.timeout = timeout
        self.pid: int | None = None

    def __enter__(self) -> "Beside":
        self.pid = fork_child(self.step)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        done = False
        if self.pid is not None:
            pid, self.pid = self.pid, None
            done = ended_well(reap(pid, self.timeout))
        if exc_type is None and not done:
            self.step()
