"""Running programs robustly: timeouts, crashes, forks, threads, stdin, Ctrl-C, missing tools,
compile errors; each a real run under real valgrind or ASan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.control import run_check
from harness.tasks import check_tasks
from harness.run import Job, run_job
from realrun import PROGRAMS

SOURCE = PROGRAMS / "memory_bugs.c"


def job(binary, mode, checker, tmp_path, timeout=60.0, name=None):
    return Job(checker=checker, command=(str(binary), mode), out_dir=tmp_path / (name or f"{checker}-{mode}"),
               timeout=timeout)


def lost(result):
    return [f for f in result.findings if f.is_lost_leak]


def test_hang_after_leaking_times_out_and_keeps_findings(memory_bugs, tmp_path):
    result = run_job(job(memory_bugs["plain"], "hang", "memcheck", tmp_path, timeout=8))
    # A run cut by its timeout is never clean: incomplete, with the reason.
    assert result.status == "incomplete" and "timed out after 8 s" in result.message
    # The use-after-free came before the hang; valgrind, stopped with SIGTERM, still checks leaks.
    assert any(f.category == "use-after-free" for f in result.findings)
    assert sum(f.bytes for f in lost(result)) == 228
    assert not pgrep(str(memory_bugs["plain"]))


def test_leak_then_crash(memory_bugs, tmp_path):
    vg = run_job(job(memory_bugs["plain"], "segv", "memcheck", tmp_path))
    assert (vg.status, vg.signal) == ("crashed", "SIGSEGV")
    assert any(f.category == "crash" for f in vg.findings)
    assert sum(f.bytes for f in lost(vg)) == 228  # valgrind checks leaks after the fatal signal
    asan = run_job(job(memory_bugs["asan"], "segv", "asan", tmp_path))
    assert (asan.status, asan.signal) == ("crashed", "SIGSEGV")
    (crash,) = asan.findings  # ASan stops at the first error: no leak check follows
    # A NULL read: invalid-read (as memcheck calls it) whose kind, SEGV, is the crash.
    assert crash.kind == "SEGV" and crash.category == "invalid-read" and crash.stack[0].function == "null_deref"


def test_fork_child_leaks_and_exits(memory_bugs, tmp_path):
    result = run_job(job(memory_bugs["plain"], "fork", "memcheck", tmp_path))
    assert len([p for p in result.logs if p.name.startswith("vg.")]) == 2
    child = [f for f in lost(result) if f.bytes == 77]
    assert len(child) == 1 and "child_leaks_then_exits" in child[0].functions()


@pytest.mark.parametrize("checker", ["memcheck", "asan"])
def test_thread_that_leaks(memory_bugs, tmp_path, checker):
    binary = memory_bugs["plain" if checker == "memcheck" else "asan"]
    result = run_job(job(binary, "thread-leak", checker, tmp_path))
    (leak,) = [f for f in lost(result) if f.bytes == 55]
    assert "thread_leaks" in leak.functions()


def test_program_reading_stdin_gets_eof(memory_bugs, tmp_path):
    # Under memcheck: LSan's exit-time check ends an ASan build with _exit, before stdio flushes.
    result = run_job(job(memory_bugs["plain"], "stdin", "memcheck", tmp_path, timeout=30))
    assert (result.status, result.exit_code) == ("ok", 0)
    assert (result.job.out_dir / "stdout.txt").read_text() == "read 0 bytes\n"


def test_missing_valgrind_is_tool_missing(memory_bugs, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    result = run_job(job(memory_bugs["plain"], "leaks", "memcheck", tmp_path))
    assert result.status == "tool-missing"
    assert "apt-get install valgrind" in result.message


def test_missing_valgrind_through_the_command(memory_bugs, tmp_path):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))  # python, not valgrind
    proc = subprocess.run([sys.executable, "-m", "harness", "check", "--quiet", "--out", str(tmp_path / "o"),
                           "--cache", str(tmp_path / "c"), "--", str(memory_bugs["plain"]), "leaks"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "tool-missing" in proc.stdout and "apt-get install valgrind" in proc.stdout
    jobs = json.loads((tmp_path / "o" / "results.json").read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["tool-missing"]


def test_c_file_that_does_not_compile(tmp_path):
    bad = tmp_path / "broken.c"
    bad.write_text("int main(void) { return missing_symbol; }\n")
    results = run_check(check_tasks(sources=(bad,), checkers=("memcheck", "asan")), tmp_path / "out",
                        cache_dir=tmp_path / "cache", progress=False)
    assert {j.status for j in results.jobs} == {"build-failed"}
    assert all("missing_symbol" in j.message for j in results.jobs)


def test_check_build_finds_leaks_and_exit_code(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "harness", "check", "--quiet", "--build", str(SOURCE),
                           "--cflags=-pthread", "--out", str(out), "--cache", str(tmp_path / "cache"),
                           "--", "leaks"],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == "leakharness/results/1"
    assert {j["tool"] for j in data["jobs"]} == {"memcheck", "asan"}
    for j in data["jobs"]:
        assert j["verdict"] is None and j["status"] == "ok"
        total = sum(f["bytes"] for f in j["findings"] if f["leak_kind"] in ("definite", "indirect"))
        assert total == 228, j["tool"]
        assert all((out / log).is_file() for log in j["logs"])
        # Frames point at the user's own file, not a copy.
        frames = [fr for f in j["findings"] for fr in f["stack"] if fr["function"] == "leak_direct"]
        assert frames and frames[0]["file"] == str(SOURCE)


def test_result_cache_reuses_and_fresh_reruns(memory_bugs, tmp_path):
    tasks = check_tasks(program=(str(memory_bugs["plain"]), "leaks"), checkers=("memcheck",))
    first = run_check(tasks, tmp_path / "a", cache_dir=tmp_path / "cache", progress=False)
    again = run_check(tasks, tmp_path / "b", cache_dir=tmp_path / "cache", progress=False)
    fresh = run_check(tasks, tmp_path / "c", cache_dir=tmp_path / "cache", fresh=True, progress=False)
    assert [j.cached for j in first.jobs + again.jobs + fresh.jobs] == [False, True, False]
    assert [f.signature for f in again.jobs[0].findings] == [f.signature for f in first.jobs[0].findings]
    # The cached job's logs are copied into the new folder, and its findings point there.
    assert all((tmp_path / "b" / log).is_file() for log in again.jobs[0].logs)
    assert all(f.source.startswith(str(tmp_path / "b")) for f in again.jobs[0].findings)


def test_side_work_starts_on_a_core_no_job_uses(memory_bugs, tmp_path, monkeypatch):
    """run_tasks(started=...): the caller's side work (the report's imports, control.py) starts
    once, never while the first jobs are being launched (it would slow them): with fewer jobs
    than cores, once they run; with a job on every core, once a first job is done (or handed
    back from the cache); a run of nothing never starts it."""
    from harness.orchestrate import run_tasks

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    program = str(memory_bugs["plain"])
    tasks = (check_tasks(program=(program, "leaks"), checkers=("memcheck",))
             + check_tasks(program=(program, "thread-leak"), checkers=("memcheck",)))

    seen: dict[str, list] = {}
    for name, jobs in (("one core free", 1), ("every core", 2), ("cached", 2)):
        out = tmp_path / name.replace(" ", "-")
        seen[name] = []
        results = run_tasks(tasks, out, tmp_path / "cache", jobs=jobs, fresh=name != "cached",
                            started=lambda out=out, name=name: seen[name].append(len(list((out / "jobs").glob("*.json")))))
        assert len(results.jobs) == 2
    assert [j.cached for j in results.jobs] == [True, True]
    # One job at a time on two cores: called as the first job was launched, before any was done.
    assert seen["one core free"] == [0]
    # A job on each core: called when a first one is done (its file written), not before.
    assert len(seen["every core"]) == 1 and seen["every core"][0] >= 1
    assert len(seen["cached"]) == 1 and seen["cached"][0] >= 1
    nothing: list = []
    run_tasks([], tmp_path / "none", tmp_path / "cache", started=lambda: nothing.append(1))
    assert nothing == []


def test_a_run_launches_without_the_log_parsers_loaded():
    """What a run needs to launch its first jobs does not load lxml nor the TOML reader: they
    come when a log or a pattern is read (in a one-program check, while its jobs run)."""
    code = ("import sys, harness.cli, harness.control, harness.orchestrate, harness.run, harness.resultcache\n"
            "print(sorted(m for m in ('lxml', 'lxml.etree', 'tomllib', 'jinja2') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def pgrep(pattern: str) -> list[str]:
    proc = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=10)
    return [p for p in proc.stdout.split() if int(p) != os.getpid()]


def test_ctrl_c_kills_every_job_and_keeps_finished_ones(memory_bugs, tmp_path):
    """Two quick jobs and two that sleep under valgrind; Ctrl-C once the quick ones are written."""
    sleeper = tmp_path / "sleeper"
    sleeper.write_bytes(memory_bugs["plain"].read_bytes())
    sleeper.chmod(0o755)
    out = tmp_path / "out"
    script = f"""
import sys
from harness.control import run_check
from harness.tasks import check_tasks
from harness.orchestrate import Interrupted
tasks = check_tasks(program=({str(memory_bugs['asan'])!r}, "leaks"), checkers=("asan",))
tasks += check_tasks(program=({str(memory_bugs['plain'])!r}, "leaks"), checkers=("ubsan",))
tasks += check_tasks(program=({str(sleeper)!r}, "sleep"), checkers=("memcheck", "memcheck-O2"))
try:
    run_check(tasks, {str(out)!r}, cache_dir={str(tmp_path / 'cache')!r}, jobs=4, progress=False)
except Interrupted as exc:
    print(exc)
    sys.exit(130)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list((out / "jobs").glob("*.json"))) < 2:
            time.sleep(0.1)
        while time.monotonic() < deadline and len(pgrep(str(sleeper))) < 2:
            time.sleep(0.1)
        assert len(pgrep(str(sleeper))) >= 2, "the sleeping jobs did not start"
        os.kill(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout
    time.sleep(0.5)
    assert pgrep(str(sleeper)) == [], "a valgrind job outlived the interrupted run"
    data = json.loads((out / "results.json").read_text())
    assert sorted(j["tool"] for j in data["jobs"]) == ["asan", "ubsan"]
