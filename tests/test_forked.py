"""harness.forked.Beside: a report's SARIF (and `report`'s results.json) is written by a forked
copy of the process while the pages are made.  The child is only ever a way to be faster: when
it cannot do the step, the step is done in the process itself, and nothing is left running.
Real forks, real files.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from harness.forked import Beside


def writer(path: Path, child_fails: bool = False, child_sleeps: float = 0.0):
    parent = os.getpid()

    def step() -> None:
        if os.getpid() != parent:
            if child_fails:
                raise OSError("no space left on device")
            time.sleep(child_sleeps)
        path.write_text(str(os.getpid()))

    return step


def no_child_left() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def alone() -> None:
    """Wait for threads other tests of this process started (a run's report preparation) to end."""
    deadline = time.monotonic() + 10
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == 1, f"threads still running: {threading.enumerate()}"


def test_the_step_is_done_by_a_child_while_the_block_runs(tmp_path):
    out = tmp_path / "leakharness.sarif"
    alone()
    with Beside(writer(out)) as side:
        assert side.pid is not None  # forked: this test process has no other thread
        time.sleep(0.2)  # the pages
    assert out.read_text() not in ("", str(os.getpid()))  # written by the child
    assert no_child_left()


def test_a_step_the_child_could_not_do_is_done_here(tmp_path):
    out = tmp_path / "leakharness.sarif"
    with Beside(writer(out, child_fails=True)):
        pass
    assert out.read_text() == str(os.getpid())
    assert no_child_left()


def test_a_child_past_its_time_is_killed_and_the_step_done_here(tmp_path):
    out = tmp_path / "results.json"
    started = time.monotonic()
    with Beside(writer(out, child_sleeps=60), timeout=0.5):
        pass
    assert time.monotonic() - started < 10
    assert out.read_text() == str(os.getpid())
    assert no_child_left()


def test_with_another_thread_running_nothing_is_forked(tmp_path):
    out = tmp_path / "leakharness.sarif"
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with Beside(writer(out)) as side:
            assert side.pid is None  # a fork would copy the other thread's locks as they are
    finally:
        stop.set()
        other.join()
    assert out.read_text() == str(os.getpid())


def test_when_the_block_fails_the_child_s_file_is_kept_and_the_error_goes_on(tmp_path):
    out = tmp_path / "leakharness.sarif"
    alone()
    with pytest.raises(RuntimeError, match="page"):
        with Beside(writer(out)):
            raise RuntimeError("a page could not be written")
    assert out.read_text() not in ("", str(os.getpid()))
    assert no_child_left()
