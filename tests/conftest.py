"""Shared fixtures: real builds of tests/programs/memory_bugs.c, made once per test process."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from realrun import PROGRAMS, compile_c

SOURCE = PROGRAMS / "memory_bugs.c"

# The programs the tests run are never the suite's own items: a leakharness.toml among them is a
# user's project to a test (which copies it), not targets for this plugin to collect and fail on.
collect_ignore = ["programs"]

# A suite started with SIGINT ignored (a background job of a shell without job control, or under
# nohup) would hand that on to every program it starts, through exec, and the tests that stop a
# run with Ctrl-C would wait for it in vain (5 of them time out).  A handler of our own is not
# inherited: the programs start with SIGINT as a user's terminal gives it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def memory_bugs(tmp_path_factory) -> dict[str, Path]:
    """memory_bugs.c built plain (for valgrind) and with each sanitizer."""
    out = tmp_path_factory.mktemp("memory_bugs")
    return {
        "plain": compile_c(SOURCE, out / "plain", "-O0"),
        "asan": compile_c(SOURCE, out / "asan", "-O0", "-fsanitize=address", "-fno-omit-frame-pointer"),
        "ubsan": compile_c(SOURCE, out / "ubsan", "-O0", "-fsanitize=undefined"),
        "tsan": compile_c(SOURCE, out / "tsan", "-O1", "-fsanitize=thread"),
    }


def pytest_collection_modifyitems(config, items):
    """The longest items first: under `pytest -n 2` the workers take items in collection order, and
    the README's `make report` on a fresh clone (a cold catalog run, 2-4 minutes), collected late,
    ran while the other worker had little left, so the run waited for it at its end.  Then the
    other items marked slow; the rest as collected (a stable sort: fixtures' order kept)."""
    def rank(item) -> int:
        if item.nodeid.endswith("test_readme_commands.py::test_make_report_on_a_fresh_clone"):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)
