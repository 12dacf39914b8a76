"""Nothing of a job outlives it: lh-reaper (harness/data/reaper.c) and supervise.py.

The program of these tests does all it can to survive its job: it ignores SIGTERM, and forks a
child that leaves the job's session with setsid() and forks a grandchild there; all three sleep
for ever (tests/programs/reaper/escape.c).  However the job ends (its timeout, Ctrl-C or a plain
`kill` to leakharness, leakharness killed outright), no process of it may be left once
leakharness has returned, under valgrind (which follows the children) as under ASan (native
processes), and the job is never clean and never cached.

The tests run the real CLI in a subprocess, the way a user does (`python -m harness check
--build PROGRAM.c`, with this checkout first on PYTHONPATH), from their own working folder and
with a cache of their own.  Each builds the program under a unique name, so that the processes
it looks for are its own under `pytest -n 2`.  One test drives supervise() in-process, to reach
the last resort (a reaper that does not end when told to) without waiting half a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from realrun import ROOT, compile_c, lh, lh_background, said, user_env, wait_for

PROGRAMS = ROOT / "tests" / "programs" / "reaper"
TOOLS = ("memcheck", "asan")

pytestmark = pytest.mark.skipif(shutil.which("valgrind") is None or shutil.which("gcc") is None,
                                reason="needs valgrind and gcc")


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def processes_naming(name: str) -> dict[int, str]:
    """Every living process whose command line holds name: pid -> command line (zombies, which
    are dead and have no command line, are not counted)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            line = " ".join(cmdline(int(entry)))
            if name in line:
                found[int(entry)] = line
    return found


def program_processes(name: str) -> list[int]:
    """The program's own processes (natively or under valgrind), not leakharness's, whose
    command line names the program's source."""
    found = []
    for pid in processes_naming(name):
        argv = cmdline(pid)  # empty once the process has ended since it was listed
        program = os.path.basename(argv[0]) if argv else ""
        if program in (name, "valgrind", "valgrind.bin") or program.startswith("memcheck-"):
            found.append(pid)
    return found


def kill_leftovers(name: str) -> None:
    """Clean up after a failing test: whatever of its uniquely named program still runs."""
    for pid in processes_naming(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def running(*args, name: str, cwd: Path, cache: Path):
    """`leakharness ARGS` started in the background; on the way out, whatever of it and of the
    uniquely named program still runs is killed (a failing test leaves nothing behind)."""
    run = lh_background(*args, cwd=cwd, cache=cache)
    try:
        yield run
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        kill_leftovers(name)


def assert_nothing_left(name: str) -> None:
    """No process of the program runs, given a moment: the processes a SIGKILL was sent to
    just before leakharness returned may take some milliseconds to be gone."""
    deadline = time.monotonic() + 1.0
    while (left := processes_naming(name)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == {}, "left running:\n" + "\n".join(f"{pid}: {line[:300]}" for pid, line in left.items())


def result_entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("results/*/*/result.json"))


def jobs(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["jobs"]


def escape_source(tmp_path: Path, tool: str) -> str:
    """escape.c copied into tmp_path under a unique name; returns the name (the program's too)."""
    name = f"lh_reaper_{tool}_{uuid.uuid4().hex[:10]}"
    shutil.copy(PROGRAMS / "escape.c", tmp_path / f"{name}.c")
    return name


def check_args(name: str, tool: str, *extra: str) -> tuple[str, ...]:
    return ("check", "--build", f"{name}.c", "--tool", tool, *extra, "--out", "out", "--no-html", "--quiet")


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.mark.parametrize("tool", TOOLS)
def test_timeout_leaves_nothing_running(tmp_path, cache, tool):
    """The timeout: the program ignores SIGTERM, so its group is killed after the grace; the
    setsid() child and grandchild, outside that group, must go too, and the job is incomplete."""
    name = escape_source(tmp_path, tool)
    try:
        for run in ("first", "second"):  # the second must run again, not answer from the cache
            proc = lh(*check_args(name, tool, "--timeout", "5"), cwd=tmp_path, cache=cache)
            assert proc.returncode == 3, f"{run} run: {said(proc)}"
            assert_nothing_left(name)
            [job] = jobs(tmp_path / "out")
            assert job["status"] == "incomplete", job
            assert job["message"].startswith("timed out after 5 s"), job
            assert job["cached"] is False, f"{run} run: {job}"
            assert "cached" not in proc.stdout + proc.stderr, said(proc)
            assert result_entries(cache) == []
    finally:
        kill_leftovers(name)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("tool", TOOLS)
def test_interrupt_leaves_nothing_running(tmp_path, cache, tool, sig):
    """Ctrl-C (SIGINT) or a plain `kill` (SIGTERM) to leakharness while the job runs: exit 130,
    no process of the job left, nothing recorded as checked, nothing cached."""
    name = escape_source(tmp_path, tool)
    with running(*check_args(name, tool, "--timeout", "100"), name=name, cwd=tmp_path, cache=cache) as run:
        # All three processes are up: the grandchild has escaped into its own session.
        wait_for(lambda: len(program_processes(name)) >= 3, 60, f"{name}'s three processes")
        # To leakharness alone: a terminal's Ctrl-C reaches no job either (each has its own session).
        run.send_signal(sig)
        started = time.monotonic()
        stdout, stderr = run.communicate(timeout=60)
        took = time.monotonic() - started
        assert run.returncode == 130, f"exit {run.returncode}\n{stdout}\n{stderr}"
        assert took < 15, f"leakharness took {took:.1f} s to stop"
        assert_nothing_left(name)
        assert all(job["status"] != "ok" for job in jobs(tmp_path / "out")), jobs(tmp_path / "out")
        assert result_entries(cache) == []


@pytest.mark.parametrize("tool", TOOLS)
def test_leakharness_killed_outright_leaves_nothing_running(tmp_path, cache, tool):
    """SIGKILL to leakharness: nothing of it can act, but the reaper sees its parent die
    (PR_SET_PDEATHSIG) and ends the job."""
    name = escape_source(tmp_path, tool)
    with running(*check_args(name, tool, "--timeout", "100"), name=name, cwd=tmp_path, cache=cache) as run:
        wait_for(lambda: len(program_processes(name)) >= 3, 60, f"{name}'s three processes")
        run.kill()
        run.communicate(timeout=30)
        try:
            wait_for(lambda: not processes_naming(name), 10, f"{name}'s processes to end")
        except AssertionError:
            assert_nothing_left(name)  # says what is left
        assert result_entries(cache) == []


def test_a_reaper_that_does_not_end_is_killed_with_everything_under_it(tmp_path, monkeypatch):
    """The last resort: lh-reaper stopped (SIGSTOP) cannot act on the timeout; supervise() waits
    for it REAPER_BOUND_S, then kills it and every process under it."""
    from harness import supervise

    name = f"lh_reaper_stuck_{uuid.uuid4().hex[:10]}"
    program = compile_c(PROGRAMS / "escape.c", tmp_path / name, "-O0")
    monkeypatch.setattr(supervise, "TERM_GRACE_S", 0.5)
    monkeypatch.setattr(supervise, "REAPER_BOUND_S", 1.0)
    logs = tmp_path / "logs"
    logs.mkdir()
    stopped: list[int] = []

    def stop_the_reaper() -> None:
        def reaper_pid() -> int | None:
            procs = program_processes(name)
            if len(procs) < 3:
                return None
            for pid in procs:  # the command's parent is the reaper
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text()
                    parent = int(stat[stat.rindex(")") + 1:].split()[1])
                    if Path(f"/proc/{parent}/comm").read_text().strip() == "lh-reaper":
                        return parent
                except (OSError, ValueError):
                    continue
            return None

        pid = wait_for(reaper_pid, 30, f"{name}'s three processes")
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)

    helper = threading.Thread(target=stop_the_reaper, daemon=True)
    helper.start()
    try:
        ended = supervise.supervise([str(program)], user_env(tmp_path / "cache"), tmp_path, 3.0, logs / "stdout.txt",
                                    logs / "stderr.txt", tmp_path / "cache")
        helper.join(5)
        assert stopped, "the reaper was never stopped: the test proves nothing"
        assert ended.timed_out
        assert ended.returncode == -signal.SIGKILL
        assert_nothing_left(name)
        assert not Path(f"/proc/{stopped[0]}").exists()
    finally:
        kill_leftovers(name)
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_output_cap_from_the_environment(tmp_path, cache):
    """LEAKHARNESS_OUTPUT_CAP caps every file of a job: 1 MiB to stdout under a 64 KiB cap is
    the output limit reached (incomplete), not a clean run."""
    shutil.copy(PROGRAMS / "chatty.c", tmp_path / "chatty.c")
    proc = lh("check", "--build", "chatty.c", "--tool", "asan", "--out", "out", "--no-html", "--quiet",
              cwd=tmp_path, cache=cache, env={"LEAKHARNESS_OUTPUT_CAP": "65536"})
    assert proc.returncode == 3, said(proc)
    [job] = jobs(tmp_path / "out")
    assert job["status"] == "incomplete" and "output limit" in job["message"], job
    written = list((tmp_path / "out").rglob("stdout.txt"))
    assert written and all(p.stat().st_size <= 65536 for p in written), said(proc)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5", "12 KB"])
def test_a_bad_output_cap_is_one_line(tmp_path, cache, value):
    shutil.copy(PROGRAMS / "chatty.c", tmp_path / "chatty.c")
    proc = lh("check", "--build", "chatty.c", "--tool", "asan", "--out", "out", "--no-html", "--quiet",
              cwd=tmp_path, cache=cache, env={"LEAKHARNESS_OUTPUT_CAP": value})
    assert "Traceback" not in proc.stderr, said(proc)
    assert proc.returncode == 2, said(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("leakharness: LEAKHARNESS_OUTPUT_CAP="), said(proc)


@pytest.mark.parametrize("how", ["ctrl-c", "kill-9"])
def test_interrupt_stops_a_projects_own_build(tmp_path, cache, how):
    """Ctrl-C during a project's own build (make): the build ran on to its end (20 s here) while
    leakharness waited, and was then marked done in the cache.  Now it stops with the run: exit
    130 at once, nothing of the build left, and no build marked done.  leakharness killed
    outright (kill -9, an OOM kill): make ran on, its parent gone; now it goes too."""
    name = f"lh_build_{uuid.uuid4().hex[:10]}"
    root = tmp_path / "proj"
    root.mkdir()
    (root / "app.c").write_text("int main(void) { return 0; }\n")
    (root / "Makefile").write_text(f"$(OUT)/app: app.c\n\tsh -c 'sleep 20' {name}\n\t$(CC) -o $@ app.c\n")
    (root / "leakharness.toml").write_text('tools = ["memcheck"]\n[[target]]\nname = "app"\n'
                                           'build = "make -s OUT={builddir}"\nprogram = "{builddir}/app"\n')
    with running("run", "--out", "out", "--no-html", name=name, cwd=root, cache=cache) as run:
        wait_for(lambda: processes_naming(name), 60, "the build's sleep")
        if how == "ctrl-c":
            os.killpg(run.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole foreground group
        else:
            os.kill(run.pid, signal.SIGKILL)  # leakharness alone
        stdout, stderr = run.communicate(timeout=10)
        assert run.returncode == (130 if how == "ctrl-c" else -signal.SIGKILL), f"exit {run.returncode}\n{stdout}\n{stderr}"
        assert_nothing_left(name)
        assert not list(cache.glob("builds/*/*/build.json")), "an interrupted build was marked done"


def test_a_reaper_killed_from_outside_takes_its_job_with_it(tmp_path, cache):
    """kill -9 of a job's lh-reaper (an operator's pkill): the job was reported incomplete, and
    the program it held ran on, its parent gone, after leakharness had exited."""
    name = f"lh_sleeper_{uuid.uuid4().hex[:10]}"
    compile_c(ROOT / "tests" / "programs" / "trust" / "sleeper.c", tmp_path / name)
    with running("check", "--tool", "memcheck", "--out", "out", "--no-html", "--quiet", "--", f"./{name}",
                 name=name, cwd=tmp_path, cache=cache) as run:
        wait_for(lambda: program_processes(name), 60, f"{name} to start")
        (reaper,) = wait_for(lambda: [p for p in processes_naming(name)
                                      if os.path.basename((cmdline(p) or [""])[0]) == "lh-reaper"], 30, "its reaper")
        os.kill(reaper, signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=30)
        assert run.returncode == 3, f"exit {run.returncode}\n{stdout}\n{stderr}"
        assert_nothing_left(name)
