"""Run one program under one checker: the checker's command and environment, then supervise.py
to run it safely and collect.py (with the checker's own rules) to read what it wrote.

The program runs in the caller's working directory (a user's relative arguments work); the
checker writes into a private folder whose absolute path is safe for every tool's option
syntax, so that a results folder with spaces, colons or quotes in its name cannot break a log
path, and two runs can never read each other's half-written files.  Whatever the checker
wrote before the end is parsed: a timed-out or crashed run keeps its findings, but it is
"incomplete", never clean.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from . import checkers, inputs, supervise
from .collect import collect, move_logs
from .gobuild import GO_MARK_FILE
from .jobs import Job, RunResult

# The characters a log path may hold and still pass through every tool's option syntax unquoted
# (ASAN_OPTIONS splits on ':' ',' and spaces; valgrind expands '%').
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")
# Placeholder for the per-job log folder in what the result cache hashes.
LOG_PLACEHOLDER = Path("/leakharness-logs")
# What a run leaves in its job folder: removed before a rerun into the same folder.
_RUN_FILES = ("vg.", "sanitizer.", "valgrind.", "residue.", f"{inputs.LOG_NAME}.", f"{GO_MARK_FILE}.")


def command_for(job: Job, log_dir: Path, cache_dir: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a job, its logs going to log_dir: the checker's,
    with the recorder of what the program reads (inputs.py) loaded into every process."""
    from .build import default_cache_dir

    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cmd, env = checkers.get(job.checker).command(job, log_dir, cache_dir)
    recorder = inputs.recorder(cache_dir)
    if recorder is not None:  # no compiler: nothing recorded, and the result is never reused
        env = inputs.environment(env, recorder, log_dir, skip=[p for p in (supervise.reaper(cache_dir),) if p])
    return cmd, env


def private_log_dir() -> Path:
    """A new folder for one job's logs, at a path every tool's option syntax takes as it is."""
    base = tempfile.gettempdir()
    if not _SAFE_PATH.match(base):
        base = "/tmp"
    path = Path(tempfile.mkdtemp(prefix="lh-", dir=base))
    if not _SAFE_PATH.match(str(path)):  # cannot happen with mkdtemp's alphabet; guard anyway
        raise OSError(f"unsafe log folder {path}")
    return path


def run_job(job: Job, cache_dir: Path | None = None) -> RunResult:
    from .build import default_cache_dir

    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    checker = checkers.get(job.checker)
    missing = checker.missing(cache_dir)
    if missing:
        return RunResult(job, "tool-missing", message=missing)
    why = checker.cannot_run(job)
    if why:
        return RunResult(job, "incomplete", message=why, problems=(why,))
    job.out_dir.mkdir(parents=True, exist_ok=True)
    for old in job.out_dir.glob("*"):  # a rerun into the same folder starts clean (the folder is ours)
        if old.is_file() and (old.name.startswith(_RUN_FILES) or old.name in ("stdout.txt", "stderr.txt")):
            old.unlink()
    why = checker.cannot_check(job.command[0]) if os.path.isfile(job.command[0]) else ""
    if why:
        return RunResult(job, "incomplete", message=why, problems=(why,))
    private = private_log_dir()
    cap = supervise.output_cap()
    try:
        cmd, env = command_for(job, private, cache_dir)
        ended = supervise.supervise(cmd, env, Path(job.cwd or os.getcwd()), job.timeout,
                                    private / "stdout.txt", private / "stderr.txt", cache_dir, stdin=job.stdin)
        move_logs(private, job.out_dir)
    finally:
        try:
            os.rmdir(private)  # empty once its logs moved: the common case, one system call
        except OSError:
            shutil.rmtree(private, ignore_errors=True)
    got = collect(job.out_dir, checker, ended, job.timeout, job.command[0], cap, Path(job.cwd or os.getcwd()), env)
    return RunResult(job, got.status, got.findings, exit_code=ended.returncode, signal=got.signal,
                     duration_s=ended.duration_s, logs=got.logs, partial=got.partial, problems=got.problems,
                     message=got.reason, inputs=got.recorded)
