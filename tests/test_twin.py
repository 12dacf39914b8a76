"""A run of many tasks forks a twin that takes half of them (harness/twin.py): the twin may make
a run faster, never lose a job or leave anything running.  Real runs of the CLI: the twin is
found as the child of leakharness that has leakharness's own command line, then killed, or the
run stopped around it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from realrun import lh, lh_background, said, wait_for
from test_reaper import cmdline, processes_naming

# Three C patterns: 36 tasks (two variants under every C checker), more than twin.MIN_TASKS.
# get0_freed's leaky variant hangs until its 5 s timeout under ubsan and hardened: the slowest
# tasks, started first (by the durations the first run measured), one by the run and one by
# the twin, so that a twin stopped early is stopped in the middle of a job.
PATTERNS = ("--pattern", "get0_freed", "--pattern", "i2d_alloc", "--pattern", "x509_name_oneline")


def children(pid: int) -> list[int]:
    """The children of every thread of pid."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += map(int, (task / "children").read_text().split())
        except OSError:
            continue
    return found


def twin_of(pid: int) -> int | None:
    """The child of pid that runs what pid runs (a fork: same command line) and still does a
    moment later (a child about to exec a compiler has that command line for a moment too)."""
    mine = cmdline(pid)
    found = [child for child in children(pid) if cmdline(child) == mine]
    time.sleep(0.2)
    return next((child for child in found if cmdline(child) == mine), None)


def verdicts(out: Path) -> dict[str, tuple]:
    """Each job's status, verdict and number of findings; a known-incomplete job's verdict alone
    (get0_freed's double free hangs on the freed key's lock, or crashes: which, varies)."""
    doc = json.loads((out / "results.json").read_text())
    return {f'{j["pattern"]}::{j["variant"]}[{j["tool"]}]':
            (j["verdict"],) if j["verdict"] == "known-incomplete" else (j["status"], j["verdict"], len(j["findings"]))
            for j in doc["jobs"]}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory) -> tuple[Path, dict]:
    """The same run in one process (-j 1, no twin): builds cached, the answers to compare with."""
    where = tmp_path_factory.mktemp("one-process")
    cache = where / "cache"
    proc = lh("run", *PATTERNS, "-j", "1", "--out", "one", "--quiet", cwd=where, cache=cache, timeout=600)
    assert proc.returncode in (0, 1), said(proc)
    found = verdicts(where / "one")
    assert len(found) >= 16, found
    return cache, found


def test_a_run_whose_twin_is_killed_still_runs_every_job(tmp_path, one_process_run):
    cache, expected = one_process_run
    run = lh_background("run", *PATTERNS, "--fresh", "-j", "2", "--out", "two", "--quiet", cwd=tmp_path, cache=cache)
    try:
        twin = wait_for(lambda: twin_of(run.pid), 30, "the run's twin")
        # The twin has claimed tasks and runs one: its jobs' programs are up.
        wait_for(lambda: children(twin), 30, "a job of the twin")
        os.kill(twin, signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode in (0, 1) and "Traceback" not in stderr, f"exit {run.returncode}\n{stdout}\n{stderr}"
    assert verdicts(tmp_path / "two") == expected
    assert len(list((tmp_path / "two" / "jobs").glob("*.json"))) == len(expected)


def test_a_run_and_its_twin_give_what_one_process_gives(tmp_path, one_process_run):
    cache, expected = one_process_run
    proc = lh("run", *PATTERNS, "--fresh", "-j", "2", "--out", "two", cwd=tmp_path, cache=cache, timeout=600)
    assert proc.returncode in (0, 1), said(proc)
    assert verdicts(tmp_path / "two") == expected
    again = lh("run", *PATTERNS, "-j", "2", "--out", "three", cwd=tmp_path, cache=cache, timeout=600)
    assert f"({len(expected)} of {len(expected)} from cache)" in again.stdout, said(again)
    assert verdicts(tmp_path / "three") == expected


WAITS = r"""#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) { sleep(argc > 1 ? atoi(argv[1]) : 60); return 0; }
"""


def waiting_project(folder: Path) -> Path:
    """A project of 16 targets whose every job sleeps for a minute: whatever the run and its
    twin have started is still running when the run is stopped."""
    folder.mkdir()
    (folder / "waits.c").write_text(WAITS)
    targets = "".join(f'\n[[target]]\nname = "wait{i}"\nsources = ["waits.c"]\nargs = ["60"]\n' for i in range(16))
    (folder / "leakharness.toml").write_text('tools = ["asan"]\n' + targets)
    return folder


def waiting_jobs(cache: Path) -> list[int]:
    """The processes of the project's jobs: its program, built into the cache, sleeping."""
    return [pid for pid in processes_naming(str(cache / "builds"))
            if (argv := cmdline(pid)) and argv[0].startswith(str(cache / "builds")) and argv[1:2] == ["60"]]


@pytest.mark.parametrize("how", ["to leakharness", "to the terminal's group", "killed outright"])
def test_a_run_stopped_leaves_neither_twin_nor_job_running(tmp_path, how):
    project = waiting_project(tmp_path / "project")
    cache = tmp_path / "cache"
    run = lh_background("run", "-j", "2", "--out", "out", "--quiet", cwd=project, cache=cache)
    twin = None
    try:
        try:
            twin = wait_for(lambda: twin_of(run.pid), 60, "the run's twin")
            wait_for(lambda: len(waiting_jobs(cache)) >= 2, 60, "the run's and the twin's jobs")
            # The twin runs one of them (under its lh-reaper).
            wait_for(lambda: set(waiting_jobs(cache)) & {j for r in children(twin) for j in children(r)}, 60,
                     "a job of the twin")
        except AssertionError as exc:
            os.killpg(run.pid, signal.SIGKILL)
            stdout, stderr = run.communicate()
            raise AssertionError(f"{exc}\nrun's children: {[(c, cmdline(c)) for c in children(run.pid)]}\n"
                                 f"{stdout}\n{stderr}") from None
        stopped = time.monotonic()
        if how == "to leakharness":
            run.send_signal(signal.SIGINT)
        elif how == "to the terminal's group":
            os.killpg(run.pid, signal.SIGINT)
        else:
            run.kill()
        stdout, stderr = run.communicate(timeout=60)
        # Promptly: the twin's jobs are killed with the run's, not left to sleep their minute.
        assert time.monotonic() - stopped < 10, f"took {time.monotonic() - stopped:.1f} s to stop"
        if how != "killed outright":
            assert run.returncode == 130 and "Traceback" not in stderr, f"exit {run.returncode}\n{stdout}\n{stderr}"
            assert json.loads((project / "out" / "results.json").read_text())["interrupted"] is True
        deadline = stopped + 10
        while (alive(twin) or waiting_jobs(cache)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(twin), "the twin outlived its run"
        assert waiting_jobs(cache) == [], "a job outlived its run"
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        if twin is not None and alive(twin):
            os.kill(twin, signal.SIGKILL)
        for pid in waiting_jobs(cache):
            os.kill(pid, signal.SIGKILL)
