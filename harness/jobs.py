"""A job and its result: one program under one checker, and what its run was.  Plain data,
read by every stage (run, collect, the result cache, judge); made by the tasks and run.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .findings import Finding
from .inputs import Recorded


@dataclass(frozen=True)
class Job:
    """One program under one checker."""

    checker: str  # a registered checker's name (harness/checkers)
    command: tuple[str, ...]  # the program and its arguments
    out_dir: Path  # where logs go
    timeout: float = 120.0
    env: tuple[tuple[str, str], ...] = ()
    cwd: Path | None = None  # where the program runs: the caller's working directory by default
    pattern: str | None = None  # None for a user's own program
    variant: str | None = None

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
    inputs: Recorded | None = None  # what the program read, as the recorder saw it (None: not recorded)

    @property
    def status_text(self) -> str:
        return f"{self.status} ({self.signal})" if self.signal and self.status == "crashed" else self.status
