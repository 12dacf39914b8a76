"""Shared fixtures: real builds of tests/programs/memory_bugs.c, made once per test process."""

from __future__ import annotations

from pathlib import Path

import pytest

from realrun import PROGRAMS, compile_c

SOURCE = PROGRAMS / "memory_bugs.c"


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
