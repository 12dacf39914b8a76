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
        if not hasattr(os, "fork") or threading.active_count() > 1:
            return self
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        try:
            pid = os.fork()
        except OSError:
            return self
        if pid == 0:  # the child: the step, then out without running anything of the parent's
            code = 1
            try:
                self.step()
                code = 0
            except BaseException:  # said by the parent, which does the step again and raises
                pass
            finally:
                os._exit(code)
        self.pid = pid
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        done = self.pid is not None and self._child_did_it()
        if exc_type is None and not done:
            self.step()

    def _child_did_it(self) -> bool:
        try:
            status = self._wait(time.monotonic() + self.timeout)
        except BaseException:  # Ctrl-C while waiting: the child goes too
            self._kill()
            raise
        self.pid = None
        return status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0

    def _wait(self, deadline: float) -> int | None:
        """The child's wait status, or None when it was killed at the deadline."""
        pid = self.pid
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            fd = None
        try:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    return status
                left = deadline - time.monotonic()
                if left <= 0:
                    self._kill()
                    return None
                if fd is not None:
                    select.select([fd], [], [], min(left, 1.0))
                else:
                    time.sleep(min(left, 0.005))
        finally:
            if fd is not None:
                os.close(fd)

    def _kill(self) -> None:
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        self.pid = None
