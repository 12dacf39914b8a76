"""Issue 9, "Never a false clean": the command line and the pytest fixture, run the way a user
runs them, must never report a program as clean when it was not fully checked, never serve a
stale or broken result from the cache, never leave a process of a job behind, never delete a
user's files, and answer every mistake with one line instead of a traceback.

Every test runs the real CLI in a subprocess (`python -m harness`, with this checkout first on
PYTHONPATH, so that a mutated copy of the repository tests itself), from its own working folder
(tmp_path) with relative paths, on small C programs from tests/programs/trust/ under real
valgrind and ASan.  The cache is private: one per test module (LEAKHARNESS_CACHE), or one per
test where the test is about the cache.  Programs whose processes a test looks for have a
unique name, so that the tests are safe under `pytest -n 2`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from realrun import HERMETIC, ROOT, compile_c, lh, lh_background, said, user_env, wait_for

pytest_plugins = ["pytester"]

TRUST = ROOT / "tests" / "programs" / "trust"
# --- running the tool the way a user does ---------------------------------------------------

def assert_one_line_error(proc: subprocess.CompletedProcess, *names) -> str:
    """Exit 2 and exactly one line on stderr, naming each of names; never a traceback."""
    assert "Traceback" not in proc.stderr, said(proc)
    assert proc.returncode == 2, said(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("leakharness: "), said(proc)
    for name in names:
        assert str(name) in lines[0], said(proc)
    return lines[0]


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def jobs_by_tool(out: Path) -> dict[str, dict]:
    jobs = results(out)["jobs"]
    by_tool = {j["tool"]: j for j in jobs}
    assert len(by_tool) == len(jobs)
    return by_tool


def leaks(job: dict, nbytes: int, function: str) -> list[dict]:
    """The job's definite leak records of nbytes allocated through function."""
    return [f for f in job["findings"]
            if f["category"] == "leak" and f["leak_kind"] == "definite" and f["bytes"] == nbytes
            and any(fr.get("function") == function for fr in f["stack"])]


def assert_leak(job: dict, nbytes: int = 4321, function: str = "make_leak") -> None:
    assert job["status"] == "ok", job
    assert len(leaks(job, nbytes, function)) == 1, job["findings"]


def assert_incomplete(job: dict, *words: str) -> None:
    assert job["status"] == "incomplete", job
    assert job["message"] and "\n" not in job["message"], job
    for word in words:
        assert word in job["message"], job["message"]


def unique(stem: str) -> str:
    return f"lh_trust_{stem}_{uuid.uuid4().hex[:10]}"


def build(tmp_path: Path, program: str, name: str | None = None, *flags: str) -> Path:
    """tests/programs/trust/PROGRAM.c compiled into tmp_path (as name)."""
    return compile_c(TRUST / f"{program}.c", tmp_path / (name or program), "-O0", *flags)


def pids_of(name: str) -> list[int]:
    """Every process whose command line holds name (the program, or valgrind running it)."""
    proc = subprocess.run(["pgrep", "-f", name], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=30, start_new_session=True)
    return [int(p) for p in proc.stdout.split()]


def argv0(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def program_pids(name: str) -> list[int]:
    """The checked program's own processes (under valgrind: valgrind's), not leakharness's,
    lh-reaper's or ldd's (the result cache asks ldd), whose command lines name it too."""
    return [p for p in pids_of(name)
            if os.path.basename(argv0(p)) in (name, "valgrind", "valgrind.bin")
            or os.path.basename(argv0(p)).startswith("memcheck-")]


def kill_leftovers(name: str) -> None:
    """Clean up after a failing test: the processes of the uniquely named program it started."""
    for pid in pids_of(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def result_entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("results/*/*/result.json"))


def slow_fixtures(folder: Path) -> Path:
    """A fixtures folder holding one pattern, slow_leak: sleeps 4 s, then leaks (or frees) 4321 B."""
    root = folder / "fixtures"
    (root / "slow_leak").mkdir(parents=True)
    (root / "_common").symlink_to(ROOT / "c_fixtures" / "_common")
    shutil.copy(TRUST / "slow_leak.toml", root / "slow_leak" / "pattern.toml")
    shutil.copy(TRUST / "slow_leak.c.j2", root / "slow_leak" / "pattern.c.j2")
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """This module's private cache (builds and results)."""
    return tmp_path_factory.mktemp("trust-cache")


@pytest.fixture
def own_cache(tmp_path) -> Path:
    """A cache of this test alone, for tests about what the cache holds."""
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def leak_results(tmp_path_factory, cache) -> Path:
    """A results folder of a real check (leak.c under asan), for report and suppressions."""
    where = tmp_path_factory.mktemp("leak-results")
    shutil.copy(TRUST / "leak.c", where / "leak.c")
    proc = lh("check", "--build", "leak.c", "--tool", "asan", "--out", "res", "--no-html", "--quiet",
              cwd=where, cache=cache)
    assert proc.returncode == 1, said(proc)
    return where / "res"


# --- 1. relative and default --out ----------------------------------------------------------

def test_check_build_default_out_from_the_sources_folder(tmp_path, cache):
    shutil.copy(TRUST / "leak.c", tmp_path / "leak.c")
    proc = lh("check", "--build", "leak.c", "--tool", "memcheck", "--tool", "asan", cwd=tmp_path, cache=cache)
    assert proc.returncode == 1, said(proc)
    out = tmp_path / "reports" / "check"  # the default --out, under the folder the user is in
    jobs = jobs_by_tool(out)
    assert set(jobs) == {"memcheck", "asan"}
    for job in jobs.values():
        assert_leak(job)
    assert (out / "index.html").is_file()
    # One line per checker names the leak (the number may be printed as 4321 or 4,321).
    assert len(re.findall(r"leak \(definite\) 4,?321 B.*make_leak", proc.stdout)) == 2, said(proc)
    assert f"results in {out / 'results.json'}" in proc.stdout


def test_check_prebuilt_binary_default_out(tmp_path, cache):
    build(tmp_path, "leak", "leaky_binary")
    proc = lh("check", "--", "./leaky_binary", cwd=tmp_path, cache=cache)
    assert proc.returncode == 1, said(proc)
    jobs = jobs_by_tool(tmp_path / "reports" / "check")
    assert set(jobs) == {"memcheck"}
    assert_leak(jobs["memcheck"])


def test_run_catalog_pattern_relative_out(tmp_path, cache):
    proc = lh("run", "--pattern", "x509_name_oneline", "--tool", "memcheck", "--tool", "asan",
              "--out", "reports/latest", cwd=tmp_path, cache=cache)
    assert proc.returncode == 0, said(proc)
    assert "4 job(s): 4 passed, 0 failed" in proc.stdout, said(proc)
    data = results(tmp_path / "reports" / "latest")
    assert sorted((j["variant"], j["tool"], j["status"], j["verdict"]) for j in data["jobs"]) == [
        ("fixed", "asan", "ok", "pass"), ("fixed", "memcheck", "ok", "pass"),
        ("leaky", "asan", "ok", "pass"), ("leaky", "memcheck", "ok", "pass")]


# --- 2. a broken run is never cached; --fresh and damaged entries -----------------------------

def test_checker_broken_by_asan_options_is_incomplete_and_not_cached(tmp_path, own_cache):
    shutil.copy(TRUST / "leak.c", tmp_path / "leak.c")
    args = ("check", "--build", "leak.c", "--tool", "asan", "--out", "out", "--no-html", "--quiet")
    broken = lh(*args, cwd=tmp_path, cache=own_cache, env={"ASAN_OPTIONS": "detect_leaks=banana"})
    assert broken.returncode == 3, said(broken)
    assert_incomplete(jobs_by_tool(tmp_path / "out")["asan"], "asan runtime failed")
    assert result_entries(own_cache) == []  # nothing stored
    again = lh(*args, cwd=tmp_path, cache=own_cache, env={"ASAN_OPTIONS": "detect_leaks=banana"})
    assert again.returncode == 3 and jobs_by_tool(tmp_path / "out")["asan"]["cached"] is False, said(again)
    fixed = lh(*args, cwd=tmp_path, cache=own_cache)
    assert fixed.returncode == 1, said(fixed)
    job = jobs_by_tool(tmp_path / "out")["asan"]
    assert job["cached"] is False
    assert_leak(job)


def test_valgrind_that_cannot_start_its_check_is_incomplete(tmp_path, own_cache):
    build(tmp_path, "leak", "leaky_binary")
    args = ("check", "--out", "out", "--no-html", "--quiet", "--", "./leaky_binary")
    bad = {"VALGRIND_OPTS": "--suppressions=no-such-file.supp"}
    broken = lh(*args, cwd=tmp_path, cache=own_cache, env=bad)
    assert "FATAL" in (tmp_path / "out" / "logs" / "leaky_binary" / "check" / "memcheck" / "stderr.txt").read_text()
    assert broken.returncode == 3, said(broken)
    assert_incomplete(jobs_by_tool(tmp_path / "out")["memcheck"])
    assert result_entries(own_cache) == []


def test_fresh_replaces_the_cached_entry(tmp_path, own_cache):
    build(tmp_path, "sized", "sized")
    out = tmp_path / "out"

    def check(*extra):
        proc = lh("check", *extra, "--out", "out", "--no-html", "--quiet", "--", "./sized", cwd=tmp_path,
                  cache=own_cache)
        assert proc.returncode == 1, said(proc)
        job = jobs_by_tool(out)["memcheck"]
        (leak,) = [f for f in job["findings"] if f["category"] == "leak"]
        return job["cached"], leak["bytes"]

    (tmp_path / "size.txt").write_text("100\n")
    assert check() == (False, 100)
    assert check() == (True, 100)
    # --fresh runs it again and replaces the entry (one entry, not two) ...
    assert check("--fresh") == (False, 100)
    assert len(result_entries(own_cache)) == 1
    # ... and size.txt, read by the program though no argument names it, is an input the
    # recorder saw: changing it runs the job again, and the new result replaces the old.
    (tmp_path / "size.txt").write_text("4321\n")
    assert check() == (False, 4321)
    assert check() == (True, 4321)
    assert len(result_entries(own_cache)) == 1


def test_damaged_cache_entry_is_a_miss_and_is_replaced(tmp_path, own_cache):
    build(tmp_path, "leak", "leaky_binary")
    args = ("check", "--out", "out", "--no-html", "--quiet", "--", "./leaky_binary")
    assert lh(*args, cwd=tmp_path, cache=own_cache).returncode == 1
    (entry,) = result_entries(own_cache)
    whole = entry.read_bytes()
    entry.write_bytes(whole[: len(whole) // 2])  # cut short, as by a full disk or a kill
    proc = lh(*args, cwd=tmp_path, cache=own_cache)
    assert proc.returncode == 1, said(proc)
    job = jobs_by_tool(tmp_path / "out")["memcheck"]
    assert job["cached"] is False
    assert_leak(job)
    (entry,) = result_entries(own_cache)
    assert json.loads(entry.read_text())["status"] == "ok"  # replaced by a whole one
    # An entry whose log is gone is a miss too.
    for log in entry.parent.glob("vg.*.xml"):
        log.unlink()
    proc = lh(*args, cwd=tmp_path, cache=own_cache)
    assert proc.returncode == 1 and jobs_by_tool(tmp_path / "out")["memcheck"]["cached"] is False, said(proc)
    proc = lh(*args, cwd=tmp_path, cache=own_cache)
    assert proc.returncode == 1 and jobs_by_tool(tmp_path / "out")["memcheck"]["cached"] is True, said(proc)
    assert_leak(jobs_by_tool(tmp_path / "out")["memcheck"])
    # Valid JSON of another shape (a log named out of the entry, a number for a list), and a
    # library note of numbers (taken for file descriptors): misses, never a traceback.
    for damage in ({"logs": ["../../../../escape.xml"]}, {"logs": 5}, {"inputs": [5]}):
        data = json.loads(entry.read_text())
        entry.write_text(json.dumps({**data, **damage}))
        for note in (own_cache / "libs").glob("*.json"):
            note.write_text("[1, 2, 3]")
        proc = lh(*args, cwd=tmp_path, cache=own_cache)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, (damage, said(proc))
        job = jobs_by_tool(tmp_path / "out")["memcheck"]
        assert job["cached"] is False, damage
        assert_leak(job)
        (entry,) = result_entries(own_cache)


def test_cache_info_and_clear(tmp_path, own_cache):
    build(tmp_path, "leak", "leaky_binary")
    assert lh("check", "--out", "out", "--no-html", "--quiet", "--", "./leaky_binary",
              cwd=tmp_path, cache=own_cache).returncode == 1
    info = lh("cache", "info", cwd=tmp_path, cache=own_cache)
    assert info.returncode == 0 and "1 result(s)" in info.stdout and str(own_cache) in info.stdout, said(info)
    cleared = lh("cache", "clear", cwd=tmp_path, cache=own_cache)
    assert cleared.returncode == 0 and f"cleared {own_cache}" in cleared.stdout, said(cleared)
    assert result_entries(own_cache) == []
    info = lh("cache", "info", cwd=tmp_path, cache=own_cache)
    assert "0 result(s), 0 build(s)" in info.stdout, said(info)
    # --cache relative to the user's folder.
    rel = lh("cache", "info", "--cache", "mycache", cwd=tmp_path, cache=None)
    assert rel.returncode == 0 and str(tmp_path / "mycache") in rel.stdout, said(rel)


def covered_bytes(cache: Path) -> dict[str, int]:
    """Bytes in each folder of the cache but the few the cap leaves (docs: `cache info`)."""
    out = {}
    for sub in cache.iterdir():
        if sub.is_dir() and sub.name not in ("helpers", "templates", "go-build", "tmp"):
            out[sub.name] = sum(f.stat().st_size for f in sub.rglob("*") if f.is_file())
    return out


def test_the_size_cap_covers_precompiled_headers_and_notes(tmp_path, own_cache):
    """A catalog run's largest part of the cache is OpenSSL's precompiled header (19 MB a
    profile), and each binary leaves a note of its libraries: both were once outside the cap
    (2.9 GB in a cache capped at 2 GiB).  A capped run evicts them; the next run makes them again
    and sees the same leak."""
    args = ("run", "--catalog", "--pattern", "evp_md_fetch_leak", "--tool", "memcheck", "--tool", "asan",
            "--no-html", "--quiet", "--out", "out")
    proc = lh(*args, cwd=tmp_path, cache=own_cache)
    assert proc.returncode == 0, said(proc)
    before = covered_bytes(own_cache)
    assert before["pch"] > 10 << 20 and before["libs"] > 0, before
    info = lh("cache", "info", cwd=tmp_path, cache=own_cache)
    assert "2 precompiled header(s)" in info.stdout, said(info)
    stated = float(re.search(r"([\d.]+) MiB of", info.stdout).group(1))
    assert abs(stated - sum(before.values()) / (1 << 20)) < 0.2, (said(info), before)
    # A cap below any entry: everything it covers goes, and the next run makes all of it again.
    proc = lh(*args, "--fresh", cwd=tmp_path, cache=own_cache, env={"LEAKHARNESS_CACHE_MAX": "0.001"})
    assert proc.returncode == 0, said(proc)
    after = covered_bytes(own_cache)
    assert sum(after.values()) <= 1049, after
    assert not list((own_cache / "pch").glob("*/*")), after
    proc = lh(*args, "--fresh", cwd=tmp_path, cache=own_cache)
    assert proc.returncode == 0, said(proc)
    leaky = [j for j in results(tmp_path / "out")["jobs"] if j["variant"] == "leaky"]
    assert len(leaky) == 2 and all(j["verdict"] == "pass" and not j["cached"] for j in leaky), leaky
    assert all(any(f["category"] == "leak" and f["leak_kind"] == "definite" for f in j["findings"])
               for j in leaky), leaky
    assert covered_bytes(own_cache)["pch"] > 10 << 20
    # Cut short (a full disk): the precompiled headers failed every build that used them, the
    # reaper and the read recorder every job ("crashed with SIGSEGV"), until `cache clear`.
    damaged = [*own_cache.glob("pch/*/*/*.gch"), *own_cache.glob("helpers/*/*/lh-*")]
    assert len(damaged) >= 4, damaged
    for path in damaged:
        path.write_bytes(path.read_bytes()[:4096])
    shutil.rmtree(own_cache / "builds")
    proc = lh(*args, "--fresh", cwd=tmp_path, cache=own_cache)
    assert proc.returncode == 0 and "4 passed" in proc.stdout, said(proc)


# --- 3. a checker that never ran is never clean ---------------------------------------------

def test_not_executable_program_is_incomplete(tmp_path, cache):
    proc = lh("check", "--out", "out", "--no-html", "--quiet", "--", "/etc/passwd", cwd=tmp_path, cache=cache)
    assert proc.returncode == 3, said(proc)
    assert_incomplete(jobs_by_tool(tmp_path / "out")["memcheck"], "Permission denied")
    assert "incomplete" in proc.stdout


@pytest.mark.parametrize("program", ["./no_such_program", "no_such_program_on_path"])
def test_missing_program_is_one_line(tmp_path, cache, program):
    proc = lh("check", "--out", "out", "--", program, cwd=tmp_path, cache=cache)
    assert_one_line_error(proc, program.lstrip("./"), "no such program")
    assert not (tmp_path / "out").exists()


def test_space_colon_quote_in_source_name_and_out_folder(tmp_path, cache):
    source = "my le:ak'x.c"
    shutil.copy(TRUST / "leak.c", tmp_path / source)
    out = "my out:dir'x"
    proc = lh("check", "--build", source, "--tool", "memcheck", "--tool", "asan", "--out", out, "--quiet",
              cwd=tmp_path, cache=cache)
    assert proc.returncode == 1, said(proc)
    jobs = jobs_by_tool(tmp_path / out)
    assert set(jobs) == {"memcheck", "asan"}
    for job in jobs.values():
        assert_leak(job)
        (log,) = [p for p in job["logs"] if "vg." in p or "sanitizer." in p]
        assert (tmp_path / out / log).is_file()  # the logs landed in the odd folder, whole
        assert any(fr.get("file", "") and fr["file"].endswith(source) for f in job["findings"]
                   for fr in f["stack"])
    assert (tmp_path / out / "index.html").is_file()


def test_asan_on_a_binary_without_asan_is_incomplete(tmp_path, cache):
    build(tmp_path, "leak", "leaky_binary")
    proc = lh("check", "--tool", "asan", "--out", "out", "--no-html", "--quiet", "--", "./leaky_binary",
              cwd=tmp_path, cache=cache)
    assert proc.returncode == 3, said(proc)
    assert_incomplete(jobs_by_tool(tmp_path / "out")["asan"], "not built with -fsanitize=address")


def test_tsan_on_bin_true_is_incomplete(tmp_path, cache):
    proc = lh("check", "--tool", "tsan", "--out", "out", "--no-html", "--quiet", "--", "/bin/true",
              cwd=tmp_path, cache=cache)
    assert proc.returncode == 3, said(proc)
    assert_incomplete(jobs_by_tool(tmp_path / "out")["tsan"], "-fsanitize=thread")


def test_timeout_is_incomplete(tmp_path, cache):
    name = unique("spin")
    build(tmp_path, "spin", name)
    try:
        proc = lh("check", "--timeout", "5", "--out", "out", "--no-html", "--quiet", "--", f"./{name}",
                  cwd=tmp_path, cache=cache)
        assert proc.returncode == 3, said(proc)
        job = jobs_by_tool(tmp_path / "out")["memcheck"]
        assert_incomplete(job, "timed out after 5 s")
        assert job["cached"] is False
        assert not pids_of(name)
    finally:
        kill_leftovers(name)


def test_abort_under_asan_without_report_is_incomplete(tmp_path, cache):
    shutil.copy(TRUST / "crash_abort.c", tmp_path / "crash_abort.c")
    proc = lh("check", "--build", "crash_abort.c", "--tool", "asan", "--out", "out", "--no-html", "--quiet",
              cwd=tmp_path, cache=cache)
    assert proc.returncode == 3, said(proc)
    job = jobs_by_tool(tmp_path / "out")["asan"]
    assert_incomplete(job, "SIGABRT", "no report")
    assert job["signal"] == "SIGABRT"


def test_exit_without_leak_check_under_asan_is_incomplete(tmp_path, cache):
    """_exit() skips LeakSanitizer's exit-time check: the 4321 B leak is unseen, so not clean."""
    shutil.copy(TRUST / "leak_then_exit.c", tmp_path / "leak_then_exit.c")
    proc = lh("check", "--build", "leak_then_exit.c", "--tool", "asan", "--tool", "memcheck", "--out", "out",
              "--no-html", "--quiet", cwd=tmp_path, cache=cache)
    assert proc.returncode == 1, said(proc)  # memcheck sees the leak
    jobs = jobs_by_tool(tmp_path / "out")
    assert_incomplete(jobs["asan"], "leak check did not run")
    assert_leak(jobs["memcheck"])


def test_leak_check_fixture_assert_clean_raises_on_crash_and_timeout(pytester, monkeypatch, cache):
    spin = unique("spin")
    build(pytester.path, "spin", spin)
    shutil.copy(TRUST / "crash_abort.c", pytester.path / "crash_abort.c")
    for var in HERMETIC:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LEAKHARNESS_CACHE", str(cache))
    pytester.makepyfile(test_user=f"""
        def test_crash_under_asan(leak_check):
            leak_check(build=["crash_abort.c"], tools=("asan",)).assert_clean()

        def test_crash_under_memcheck(leak_check):
            leak_check(build=["crash_abort.c"], tools=("memcheck",)).assert_clean()

        def test_timeout(leak_check):
            leak_check(program="./{spin}", tools=("memcheck",), timeout=3).assert_clean()
    """)
    try:
        result = pytester.runpytest("-p", "no:cacheprovider")
    finally:
        kill_leftovers(spin)
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines([
        "*crash_abort[[]asan[]]: incomplete (SIGABRT): crashed with SIGABRT and asan wrote no report*",
        "*crash_abort[[]memcheck[]]: crashed (SIGABRT)*",
        f"*{spin}[[]memcheck[]]: incomplete*: timed out after 3 s*",
    ])


# --- 4. the cache key: what the child sees ----------------------------------------------------

HIDE_MAKE_LEAK = """{
   hide_make_leak
   Memcheck:Leak
   match-leak-kinds: definite
   fun:malloc
   fun:make_leak
}
"""


def test_valgrind_opts_suppressions_file_is_part_of_the_key(tmp_path, own_cache):
    build(tmp_path, "leak", "leaky_binary")
    (tmp_path / "hide.supp").write_text(HIDE_MAKE_LEAK)
    hide = {"VALGRIND_OPTS": "--suppressions=hide.supp"}  # relative, as a user writes it
    out = tmp_path / "out"

    def check(env):
        proc = lh("check", "--out", "out", "--no-html", "--quiet", "--", "./leaky_binary", cwd=tmp_path,
                  cache=own_cache, env=env)
        return proc.returncode, jobs_by_tool(out)["memcheck"]

    rc, job = check(hide)
    assert rc == 0 and job["findings"] == [] and job["status"] == "ok"  # hidden by the user's suppression
    rc, job = check({})
    assert rc == 1 and job["cached"] is False  # not served the hidden result
    assert_leak(job)
    rc, job = check(hide)
    assert rc == 0 and job["cached"] is True
    # Same VALGRIND_OPTS, but the file it names now hides something else: run again.
    (tmp_path / "hide.supp").write_text(HIDE_MAKE_LEAK.replace("make_leak", "someone_else"))
    rc, job = check(hide)
    assert rc == 1 and job["cached"] is False
    assert_leak(job)


def test_valgrindrc_in_home_is_part_of_the_key(tmp_path, own_cache):
    build(tmp_path, "leak", "leaky_binary")
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "hide.supp").write_text(HIDE_MAKE_LEAK)
    (home / ".valgrindrc").write_text(f"--suppressions={tmp_path / 'hide.supp'}\n")
    out = tmp_path / "out"

    def check():
        proc = lh("check", "--out", "out", "--no-html", "--quiet", "--", "./leaky_binary", cwd=tmp_path,
                  cache=own_cache, env={"HOME": home})
        return proc.returncode, jobs_by_tool(out)["memcheck"]

    rc, job = check()
    assert rc == 0 and job["findings"] == []  # ~/.valgrindrc's suppression hides it
    rc, job = check()
    assert rc == 0 and job["cached"] is True
    (tmp_path / "hide.supp").write_text(HIDE_MAKE_LEAK.replace("make_leak", "someone_else"))
    rc, job = check()
    assert rc == 1 and job["cached"] is False
    assert_leak(job)
    (home / ".valgrindrc").write_text("--num-callers=12\n")
    rc, job = check()
    assert rc == 1 and job["cached"] is False
    assert_leak(job)


def _libfoo(tmp_path: Path) -> None:
    """usefoo linked against libfoo.so, and libfoo.so built twice: clean/ frees, leaky/ loses 1234 B."""
    def gcc(*args) -> None:
        proc = subprocess.run(["gcc", "-g", "-O0", *map(str, args)], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=120, start_new_session=True)
        assert proc.returncode == 0, proc.stderr

    for folder, flags in (("clean", ()), ("leaky", ("-DFOO_LEAKS",))):
        (tmp_path / folder).mkdir()
        gcc("-shared", "-fPIC", *flags, "-o", tmp_path / folder / "libfoo.so", TRUST / "libfoo.c")
    gcc(TRUST / "usefoo.c", "-o", tmp_path / "usefoo", f"-L{tmp_path / 'clean'}", "-lfoo")  # -l after the source


def _check_usefoo(tmp_path: Path, cache: Path, library_path: str, *args: str) -> tuple[int, dict]:
    proc = lh("check", "--out", "out", "--no-html", "--quiet", "--", "./usefoo", *args, cwd=tmp_path, cache=cache,
              env={"LD_LIBRARY_PATH": library_path})
    assert proc.returncode in (0, 1), said(proc)
    return proc.returncode, jobs_by_tool(tmp_path / "out")["memcheck"]


def test_a_rebuilt_library_misses_the_cache_when_the_program_crashes(tmp_path, own_cache):
    """The recorder lists the libraries still loaded when a process ends; one that dies of a
    signal lists none, and its crashed result is stored: the libraries the loader resolves are
    in the key, so a library rebuilt under the same LD_LIBRARY_PATH is run again."""
    _libfoo(tmp_path)
    (tmp_path / "current").mkdir()
    shutil.copy(tmp_path / "clean" / "libfoo.so", tmp_path / "current" / "libfoo.so")
    rc, job = _check_usefoo(tmp_path, own_cache, "current", "crash")
    assert job["status"] == "crashed" and not [f for f in job["findings"] if f["category"] == "leak"], job
    rc, job = _check_usefoo(tmp_path, own_cache, "current", "crash")
    assert job["cached"] is True  # stored: a crash with its report is a result
    shutil.copy(tmp_path / "leaky" / "libfoo.so", tmp_path / "current" / "libfoo.so")
    rc, job = _check_usefoo(tmp_path, own_cache, "current", "crash")
    assert job["cached"] is False and rc == 1
    assert_leak(dict(job, status="ok"), 1234, "foo_alloc")


def test_ld_library_path_to_another_build_misses_the_cache(tmp_path, own_cache):
    _libfoo(tmp_path)
    rc, job = _check_usefoo(tmp_path, own_cache, str(tmp_path / "clean"))
    assert rc == 0 and job["findings"] == []
    rc, job = _check_usefoo(tmp_path, own_cache, str(tmp_path / "leaky"))
    assert rc == 1 and job["cached"] is False
    assert_leak(job, 1234, "foo_alloc")
    # The same LD_LIBRARY_PATH, the library in it rebuilt: the library's content is in the key.
    (tmp_path / "current").mkdir()
    shutil.copy(tmp_path / "clean" / "libfoo.so", tmp_path / "current" / "libfoo.so")
    rc, job = _check_usefoo(tmp_path, own_cache, str(tmp_path / "current"))
    assert rc == 0 and job["findings"] == []
    shutil.copy(tmp_path / "leaky" / "libfoo.so", tmp_path / "current" / "libfoo.so")
    rc, job = _check_usefoo(tmp_path, own_cache, str(tmp_path / "current"))
    assert rc == 1 and job["cached"] is False
    assert_leak(job, 1234, "foo_alloc")


def test_relative_ld_library_path_rebuilt_library_misses_the_cache(tmp_path, own_cache):
    _libfoo(tmp_path)
    (tmp_path / "current").mkdir()
    shutil.copy(tmp_path / "clean" / "libfoo.so", tmp_path / "current" / "libfoo.so")
    rc, job = _check_usefoo(tmp_path, own_cache, "current")
    assert rc == 0 and job["findings"] == []
    shutil.copy(tmp_path / "leaky" / "libfoo.so", tmp_path / "current" / "libfoo.so")
    rc, job = _check_usefoo(tmp_path, own_cache, "current")
    assert rc == 1 and job["cached"] is False
    assert_leak(job, 1234, "foo_alloc")


def test_input_file_named_by_an_argument_is_part_of_the_key(tmp_path, own_cache):
    build(tmp_path, "input", "reader")
    (tmp_path / "data.txt").write_text("clean\n")
    args = ("check", "--out", "out", "--no-html", "--quiet", "--", "./reader", "data.txt")
    proc = lh(*args, cwd=tmp_path, cache=own_cache)
    job = jobs_by_tool(tmp_path / "out")["memcheck"]
    assert proc.returncode == 0 and job["status"] == "ok" and job["findings"] == [], said(proc)
    proc = lh(*args, cwd=tmp_path, cache=own_cache)
    assert proc.returncode == 0 and jobs_by_tool(tmp_path / "out")["memcheck"]["cached"] is True
    (tmp_path / "data.txt").write_text("leak\n")
    proc = lh(*args, cwd=tmp_path, cache=own_cache)
    assert proc.returncode == 1, said(proc)
    job = jobs_by_tool(tmp_path / "out")["memcheck"]
    assert job["cached"] is False
    assert_leak(job)


def test_job_killed_from_outside_is_not_cached(tmp_path, own_cache):
    name = unique("hold")
    build(tmp_path, "hold", name)
    (tmp_path / "hold").write_text("")  # the program waits while this file is there
    args = ("check", "--out", "out", "--no-html", "--quiet", "--", f"./{name}")
    try:
        first = lh_background(*args, cwd=tmp_path, cache=own_cache)
        wait_for(lambda: program_pids(name), 60, f"{name} to start")
        time.sleep(0.5)  # valgrind has started the program, which waits for "hold" to go

        def kill() -> int:
            killed = 0
            for pid in program_pids(name):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
            return killed

        # Looked for again until one is killed: in CI (the mutation copy's run beside the suite's)
        # one look found none, a process caught between valgrind's execs (its command line unread).
        wait_for(kill, 30, f"a process of {name} to kill")
        stdout, stderr = first.communicate(timeout=120)
        assert first.returncode == 3, f"{first.returncode}\n{stdout}\n{stderr}"
        job = jobs_by_tool(tmp_path / "out")["memcheck"]
        assert_incomplete(job, "SIGKILL")
        assert result_entries(own_cache) == []
        (tmp_path / "hold").unlink()
        # The same inputs exactly: it must run again (and now finishes and leaks).
        proc = lh(*args, cwd=tmp_path, cache=own_cache)
        assert proc.returncode == 1, said(proc)
        job = jobs_by_tool(tmp_path / "out")["memcheck"]
        assert job["cached"] is False
        assert_leak(job)
    finally:
        kill_leftovers(name)


def test_a_run_killed_outright_is_reported_as_cut_short_never_as_the_run_before(tmp_path, own_cache):
    """A run into a folder holding the last run's results (clean), killed -9 before it wrote its
    own: the old results.json stayed beside the new job files, and `report` showed the old clean
    run, exit 0 ("Every job was fully checked").  A folder without results.json (a killed run) is
    cut short: exit 3, said."""
    (tmp_path / "quiet.c").write_text("int main(void) { return 0; }\n")
    compile_c(tmp_path / "quiet.c", tmp_path / "quiet")
    proc = lh("check", "--out", "out", "--no-html", "--quiet", "--", "./quiet", cwd=tmp_path, cache=own_cache)
    assert proc.returncode == 0, said(proc)
    name = unique("hold")
    build(tmp_path, "hold", name)
    (tmp_path / "hold").write_text("")  # the program waits while this file is there

    def killed_while_memcheck_runs(*tools: str) -> None:
        try:
            run = lh_background("check", "--out", "out", "--no-html", "--quiet", *tools, "--", f"./{name}",
                                cwd=tmp_path, cache=own_cache)
            wait_for(lambda: program_pids(name) and (tools == () or any((tmp_path / "out").glob("jobs/*.json"))),
                     60, f"{name} to start")
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate(timeout=60)
        finally:
            kill_leftovers(name)
        assert not (tmp_path / "out" / "results.json").exists()

    killed_while_memcheck_runs()  # no job finished: nothing to show, and never the old run
    proc = lh("report", "out", "--out", "rep", cwd=tmp_path, cache=own_cache)
    assert proc.returncode == 2 and "not a results directory" in proc.stderr, said(proc)
    # asan's job (the program is no ASan build: incomplete at once) finished, memcheck's did not.
    killed_while_memcheck_runs("--tool", "asan", "--tool", "memcheck")
    proc = lh("report", "out", "--out", "rep", "--summary-md", "rep.md", cwd=tmp_path, cache=own_cache)
    assert proc.returncode == 3 and "interrupted run" in proc.stderr, said(proc)
    summary = (tmp_path / "rep.md").read_text()
    assert "Interrupted" in summary and "Every job was fully checked" not in summary, summary
    assert "quiet" not in json.dumps(json.loads((tmp_path / "rep" / "results.json").read_text())["jobs"])


def test_a_folder_a_run_is_still_writing_is_not_reported_as_cut_short(tmp_path, own_cache):
    """`report` of a folder while its run goes on read the jobs done so far and called the run
    interrupted (exit 3, "interrupted run"): a run cut short, when it was not.  It now refuses,
    one line, as do `suppressions` and `explain`; once the run has ended the folder reports."""
    name = unique("hold")
    build(tmp_path, "hold", name)
    (tmp_path / "hold").write_text("")  # the program waits while this file is there
    try:
        run = lh_background("check", "--out", "out", "--no-html", "--quiet", "--tool", "asan", "--tool", "memcheck",
                            "--", f"./{name}", cwd=tmp_path, cache=own_cache)
        wait_for(lambda: program_pids(name) and any((tmp_path / "out").glob("jobs/*.json")), 60, f"{name} to start")
        for args in (("report", "out", "--out", "rep"), ("suppressions", "out"), ("explain", "out")):
            proc = lh(*args, cwd=tmp_path, cache=own_cache)
            assert proc.returncode == 2, said(proc)
            assert_one_line_error(proc, str(tmp_path / "out"), f"run (pid {run.pid}) is still writing")
        assert not (tmp_path / "rep").exists()
        (tmp_path / "hold").unlink()
        run.communicate(timeout=120)
    finally:
        kill_leftovers(name)
    proc = lh("report", "out", "--out", "rep", cwd=tmp_path, cache=own_cache)
    assert proc.returncode == 0 and proc.stderr == "", said(proc)  # the whole run: nothing missing
    assert {j["tool"] for j in results(tmp_path / "rep")["jobs"]} == {"asan", "memcheck"}


MANY_LEAKS = ("#include <stdlib.h>\n#include <string.h>\nint main(void) {\n"
              "    for (int i = 0; i < 3000; i++) { char *p = malloc(10 + i % 50); memset(p, 1, 10); }\n"
              "    return 0;\n}\n")


@pytest.fixture
def small_disk(tmp_path):
    """A function mounting a tmpfs of a given size at tmp_path/disk (unmounted at the end);
    skipped where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = []

    def mount(size: str) -> Path:
        for _ in mounted:
            subprocess.run(["umount", str(disk)], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        mounted.clear()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
        mounted.append(disk)
        return disk

    yield mount
    for _ in mounted:
        subprocess.run(["umount", "-l", str(disk)], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path, own_cache, small_disk):
    """--out on a disk that fills as the run writes: the one line said "[Errno 28] No space left on
    device" and no file, or named the temporary log a copy was made from.  It names the file of
    the results folder that could not be written, at whichever point the disk filled."""
    (tmp_path / "many.c").write_text(MANY_LEAKS)
    failed = 0
    for size in ("20k", "24k", "28k", "36k", "44k", "60k"):
        disk = small_disk(size)
        proc = lh("check", "--fresh", "--build", "many.c", "--tool", "memcheck", "--tool", "asan",
                  "--out", disk / "out", "--quiet", cwd=tmp_path, cache=own_cache)
        if proc.returncode == 1:  # it all fitted
            continue
        failed += 1
        line = assert_one_line_error(proc, "No space left on device")
        assert line.startswith(f"leakharness: {disk / 'out'}/"), f"{size}: {line}"
    assert failed >= 3


def test_a_run_stopped_by_an_error_is_written_as_cut_short(tmp_path, own_cache):
    """A run that an error stops half-way (here a file where its sources folder goes; a full disk
    alike) wrote results.json as a whole run of the jobs it had, none here, and `report` said
    "Every job was fully checked", exit 0.  It is written interrupted, and said to be."""
    (tmp_path / "many.c").write_text(MANY_LEAKS)
    args = ("check", "--fresh", "--build", "many.c", "--tool", "memcheck", "--tool", "asan", "--out", "out",
            "--quiet", "--no-html")
    assert lh(*args, cwd=tmp_path, cache=own_cache).returncode == 1
    shutil.rmtree(tmp_path / "out" / "sources")
    (tmp_path / "out" / "sources").write_text("in the way\n")
    proc = lh(*args, cwd=tmp_path, cache=own_cache)
    assert_one_line_error(proc, tmp_path / "out" / "sources" / "many", "Not a directory")
    assert results(tmp_path / "out").get("interrupted") is True
    proc = lh("report", "out", "--out", "rep", "--summary-md", "rep.md", cwd=tmp_path, cache=own_cache)
    assert proc.returncode == 3 and "interrupted run" in proc.stderr, said(proc)
    assert "Every job was fully checked" not in (tmp_path / "rep.md").read_text()


# --- 5. two runs into one folder ------------------------------------------------------------

def test_second_run_into_the_same_folder_refuses_at_once(tmp_path, own_cache):
    slow_fixtures(tmp_path)
    args = ("run", "--fixtures", "fixtures", "--tool", "asan", "--out", "same", "--no-html", "--quiet")
    first = lh_background(*args, cwd=tmp_path, cache=own_cache)
    try:
        lock = tmp_path / "same" / ".leakharness.lock"
        wait_for(lambda: lock.is_file() and lock.read_text().strip() == str(first.pid), 60, "the first run's lock")
        second = lh(*args, cwd=tmp_path, cache=own_cache, timeout=60)
        assert first.poll() is None, "the first run ended before the second was refused: the test proves nothing"
        assert_one_line_error(second, tmp_path / "same", "another leakharness run")
        stdout, stderr = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert first.returncode == 0, f"{stdout}\n{stderr}"
    jobs = {j["variant"]: j for j in results(tmp_path / "same")["jobs"]}
    assert sorted(jobs) == ["fixed", "leaky"]
    assert all(j["verdict"] == "pass" and j["status"] == "ok" for j in jobs.values())
    assert_leak(jobs["leaky"])


def test_incomplete_catalog_job_is_never_a_pass(tmp_path, cache):
    slow_fixtures(tmp_path)
    proc = lh("run", "--fixtures", "fixtures", "--tool", "asan", "--timeout", "1", "--out", "out", "--no-html",
              "--quiet", cwd=tmp_path, cache=cache)
    assert proc.returncode != 0, said(proc)
    for job in results(tmp_path / "out")["jobs"]:  # the fixed variant expects clean: still a fail
        assert (job["status"], job["verdict"]) == ("incomplete", "fail"), job
        assert job["reason"].startswith("not fully checked: timed out after 1 s"), job
    assert "0 passed, 2 failed" in proc.stdout, said(proc)


# --- 6. nothing of a job outlives it ----------------------------------------------------------

def test_setsid_child_is_gone_after_a_timeout(tmp_path, cache):
    name = unique("setsid")
    build(tmp_path, "setsid_spin", name)
    try:
        proc = lh("check", "--timeout", "5", "--out", "out", "--no-html", "--quiet", "--", f"./{name}",
                  cwd=tmp_path, cache=cache)
        assert proc.returncode == 3, said(proc)
        assert_incomplete(jobs_by_tool(tmp_path / "out")["memcheck"], "timed out after 5 s")
        assert pids_of(name) == []  # neither the program, its setsid child, nor valgrind running them
    finally:
        kill_leftovers(name)


def test_child_killed_unchecked_is_not_clean_under_asan(tmp_path, cache):
    """The program exits, leaving a setsid() child running: the child is gone afterwards, and
    since it was killed unchecked the job is incomplete, not clean."""
    name = unique("setsid_exit")
    build(tmp_path, "setsid_spin", name, "-fsanitize=address", "-fno-omit-frame-pointer")
    try:
        proc = lh("check", "--tool", "asan", "--out", "out", "--no-html", "--quiet", "--", f"./{name}", "exit",
                  cwd=tmp_path, cache=cache)
        assert proc.returncode == 3, said(proc)
        job = jobs_by_tool(tmp_path / "out")["asan"]
        assert job["status"] == "incomplete" and "still running" in job["message"], job["message"]
        assert pids_of(name) == []
    finally:
        kill_leftovers(name)


# --- 7. never delete what the harness did not write -------------------------------------------

def test_report_and_check_refuse_a_users_folder(tmp_path, cache, leak_results):
    shutil.copy(TRUST / "leak.c", tmp_path / "leak.c")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes\n")
    proc = lh("report", leak_results, "--out", "mine", cwd=tmp_path, cache=cache)
    assert_one_line_error(proc, mine, "notes.txt")
    assert sorted(os.listdir(mine)) == ["notes.txt"] and (mine / "notes.txt").read_text() == "my notes\n"
    proc = lh("check", "--build", "leak.c", "--tool", "asan", "--out", ".", cwd=tmp_path, cache=cache)
    assert_one_line_error(proc, tmp_path, "leak.c")
    assert sorted(os.listdir(tmp_path)) == ["leak.c", "mine"]
    assert (tmp_path / "leak.c").read_bytes() == (TRUST / "leak.c").read_bytes()
    # A new folder is fine.
    proc = lh("report", leak_results, "--out", "fresh", cwd=tmp_path, cache=cache)
    assert proc.returncode == 0 and (tmp_path / "fresh" / "index.html").is_file(), said(proc)


def test_report_never_writes_through_a_link_in_its_folder(tmp_path, cache, leak_results):
    """A results folder (or an earlier report) whose patterns/ or a log was made a symbolic link
    to elsewhere: `report DIR --out DIR` wrote the pattern page and the copied log through it,
    outside the folder.  leakharness makes no links: one there is refused, nothing written."""
    victim = tmp_path / "victim"
    victim.mkdir()
    for how in ("folder", "dangling log"):
        res = tmp_path / f"res-{how.replace(' ', '-')}"
        shutil.copytree(leak_results, res, symlinks=True)
        if how == "folder":
            shutil.rmtree(res / "patterns", ignore_errors=True)
            (res / "patterns").symlink_to(victim)
        else:
            (log,) = list(res.glob("logs/*/*/asan/sanitizer.*"))
            log.unlink()
            log.symlink_to(victim / "written-through-a-log")
        before = sorted(p.name for p in res.rglob("*"))
        proc = lh("report", res.name, "--out", res.name, cwd=tmp_path, cache=cache)
        assert_one_line_error(proc, "symbolic link")
        assert list(victim.iterdir()) == [] and sorted(p.name for p in res.rglob("*")) == before, said(proc)


def test_a_report_made_again_into_its_folder_links_the_new_runs_logs(tmp_path, cache):
    """`report A --out M`, then `report B --out M`: a log already in M was kept, so the second
    report linked the first run's output."""
    build(tmp_path, "leak", "leaky_binary")
    for name, word in (("A", "FIRST"), ("B", "SECOND")):
        proc = lh("check", "--tool", "memcheck", "--out", name, "--no-html", "--quiet", "--", "./leaky_binary",
                  cwd=tmp_path, cache=cache, env={"LH_WORD": word})
        assert proc.returncode == 1, said(proc)
        (stderr,) = list((tmp_path / name).glob("logs/*/*/memcheck/stderr.txt"))
        stderr.write_text(f"the run said {word}\n")  # as if the program had printed it
    for name in ("A", "B"):
        proc = lh("report", name, "--out", "M", cwd=tmp_path, cache=cache)
        assert proc.returncode == 0, said(proc)
    (copied,) = list((tmp_path / "M").glob("logs/*/*/memcheck/stderr.txt"))
    assert copied.read_text() == "the run said SECOND\n"


def test_a_log_naming_a_device_or_a_fifo_as_its_source_is_parsed(tmp_path, cache, leak_results):
    """A frame's file is read for its line's hash.  A log (untrusted) naming /dev/zero made
    `parse` read until memory ran out; naming a FIFO, it waited forever.  Only regular files are
    read: the finding is there, without the line's hash."""
    (log,) = list(leak_results.glob("logs/*/*/asan/sanitizer.*"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    text = log.read_text()
    assert "/leak.c:" in text
    for name, target in (("zero", "/dev/zero"), ("fifo", str(fifo))):
        edited = tmp_path / f"{name}.log"
        edited.write_text(re.sub(r"/\S*/leak\.c:", target + ":", text))
        proc = lh("parse", edited.name, "--format", "json", cwd=tmp_path, cache=cache, timeout=60)
        assert proc.returncode == 0, said(proc)
        found = json.loads(proc.stdout)
        leaks = [f for f in (found["findings"] if isinstance(found, dict) else found) if f["category"] == "leak"]
        assert leaks and any(fr["file"] == target for f in leaks for fr in f["stack"]), proc.stdout[:2000]


@pytest.mark.parametrize("damage", ["surrogate", "nested", "results link", "jobs link", "fifo"])
def test_a_results_folder_damaged_past_its_fields_is_one_line(tmp_path, cache, leak_results, damage):
    """A lone UTF-16 surrogate in a string (json reads it; every later write of it failed: the
    report, the suppressions, with a traceback), nesting too deep for the parser (a
    RecursionError), results.json or jobs/ a symbolic link to another folder (read from there).
    Each is one line; the report folder made before is left as it was."""
    res = tmp_path / "res"
    shutil.copytree(leak_results, res, symlinks=True)
    proc = lh("report", "res", "--out", "made", cwd=tmp_path, cache=cache)
    assert proc.returncode == 0, said(proc)
    before = {p.name: p.read_bytes() for p in (tmp_path / "made").glob("*.html")}
    files = [res / "results.json", *sorted((res / "jobs").glob("*.json"))]
    if damage == "surrogate":
        for f in files:
            f.write_text(f.read_text().replace('"make_leak"', '"make_\\ud800leak"'))
    elif damage == "nested":
        for f in files:
            f.write_text("[" * 100_000 + "]" * 100_000)
    elif damage == "fifo":  # the read waited forever
        (res / "results.json").unlink()
        os.mkfifo(res / "results.json")
    elif damage == "results link":
        other = tmp_path / "elsewhere"
        shutil.copytree(res, other)
        (res / "results.json").unlink()
        (res / "results.json").symlink_to(other / "results.json")
    else:
        other = tmp_path / "elsewhere"
        shutil.copytree(res / "jobs", other)
        shutil.rmtree(res / "jobs")
        (res / "results.json").unlink()
        (res / "jobs").symlink_to(other)
    for command in (("report", "res", "--out", "made"), ("suppressions", "res", "--format", "lsan"),
                    ("explain", "res")):
        proc = lh(*command, cwd=tmp_path, cache=cache, timeout=60)
        assert_one_line_error(proc, "res")
    assert {p.name: p.read_bytes() for p in (tmp_path / "made").glob("*.html")} == before


def test_a_log_with_a_number_of_5000_digits_is_one_line(tmp_path, cache, leak_results):
    """Python refuses to read an integer of more than 4,300 digits: a log saying `Direct leak of
    999...` was a ValueError traceback."""
    (log,) = list(leak_results.glob("logs/*/*/asan/sanitizer.*"))
    edited = tmp_path / "big.log"
    edited.write_text(re.sub(r"Direct leak of \d+", "Direct leak of " + "9" * 5000, log.read_text()))
    for fmt in ("text", "json"):
        proc = lh("parse", edited.name, "--format", fmt, cwd=tmp_path, cache=cache, timeout=60)
        assert_one_line_error(proc, "big.log", "4,300 digits")


@pytest.mark.parametrize("planned", ["../../evil::leaky[memcheck]", "/tmp/elsewhere/prog[asan]"])
def test_a_planned_job_name_that_is_no_usable_name_is_one_line(tmp_path, cache, leak_results, planned):
    """A merge lists a planned job no part holds as not run, with a link to its log folder: a
    plan naming `../../evil` or an absolute path put a link out of the report in the page."""
    res = tmp_path / "res"
    shutil.copytree(leak_results, res)
    data = json.loads((res / "results.json").read_text())
    held = [f"{j['pattern']}[{j['tool']}]" for j in data["jobs"]]
    data["run"] = {"id": "r", "plan": held + [planned], "shard": None, "jobs": held + [planned]}
    (res / "results.json").write_text(json.dumps(data))
    proc = lh("report", "res", "--out", "made", cwd=tmp_path, cache=cache)
    assert_one_line_error(proc, "run.plan", "not a usable name")
    assert not (tmp_path / "made").exists()


def test_what_a_log_names_cannot_act_on_the_terminal(tmp_path, cache, leak_results):
    """A frame named with an escape sequence (retitle the window, clear the screen) or a
    right-to-left override was printed raw by `parse --format text`, and a line break in a name
    by `explain`: shown as escapes now."""
    (log,) = list(leak_results.glob("logs/*/*/asan/sanitizer.*"))
    edited = tmp_path / "ansi.log"
    edited.write_text(log.read_text().replace(" in make_leak ", " in \x1b]0;PWNED\x07\x1b[2Jmake\u202eleak "))
    proc = lh("parse", edited.name, "--format", "text", cwd=tmp_path, cache=cache, timeout=60)
    assert proc.returncode == 0, said(proc)
    assert "\x1b" not in proc.stdout and "\u202e" not in proc.stdout and "\x07" not in proc.stdout, proc.stdout
    assert "\\x1b]0;PWNED\\x07\\x1b[2Jmake\\u202eleak" in proc.stdout, proc.stdout
    # A line break inside a name printed a line of its own ("FAIL ..." where nothing failed).
    res = tmp_path / "res"
    shutil.copytree(leak_results, res)
    data = json.loads((res / "results.json").read_text())
    data["jobs"][0]["findings"][0]["stack"][1]["function"] = "make_leak\nFAIL spoofed: x\u2028y"
    (res / "results.json").write_text(json.dumps(data))
    proc = lh("explain", "res", cwd=tmp_path, cache=cache, timeout=60)
    assert proc.returncode == 0, said(proc)
    assert "make_leak\\nFAIL spoofed: x\\u2028y" in proc.stdout, proc.stdout
    assert not re.search("^FAIL", proc.stdout, re.M) and "\u2028" not in proc.stdout, proc.stdout


# --- 8. one line, never a traceback -----------------------------------------------------------

@pytest.mark.parametrize("command", ["check", "run"])
def test_out_is_a_file(tmp_path, cache, command):
    (tmp_path / "afile").write_text("mine\n")
    build(tmp_path, "leak", "leaky_binary")
    what = ("--", "./leaky_binary") if command == "check" else ("--pattern", "x509_name_oneline", "--tool", "asan")
    proc = lh(command, "--out", "afile", *what, cwd=tmp_path, cache=cache)
    assert_one_line_error(proc, tmp_path / "afile", "is a file")
    assert (tmp_path / "afile").read_text() == "mine\n"


# In a private mount namespace: the folder "$0" bound onto itself read-only, then the rest.
READ_ONLY_SH = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" || exit 8; '


def _read_only_mount_works(folder: Path) -> str:
    """Why a read-only bind mount cannot be made here ("" when it can)."""
    if not shutil.which("unshare"):
        return "no unshare"
    folder.mkdir(exist_ok=True)
    script = READ_ONLY_SH + 'touch "$0/probe" 2>/dev/null && exit 9; exit 0'
    probe = subprocess.run(["unshare", "-m", "--", "sh", "-c", script, str(folder)], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=30, start_new_session=True)
    return "" if probe.returncode == 0 else f"read-only bind mount not possible: {probe.stderr.strip()}"


@pytest.mark.parametrize("target", ["ro", "ro/new"])
def test_out_on_a_read_only_folder(tmp_path, cache, target):
    # Tests run as root, where chmod 0555 stops nothing: a read-only bind mount in a private
    # mount namespace is what makes the folder really unwritable.
    ro = tmp_path / "ro"
    why = _read_only_mount_works(ro)
    if why:
        pytest.skip(why)
    build(tmp_path, "leak", "leaky_binary")
    proc = lh("check", "--out", target, "--", "./leaky_binary", cwd=tmp_path, cache=cache,
              prefix=("unshare", "-m", "--", "sh", "-c", READ_ONLY_SH + 'exec "$@"', str(ro)))
    assert_one_line_error(proc, tmp_path / target, "Read-only file system")


def test_suppressions_out_in_a_missing_folder(tmp_path, cache, leak_results):
    proc = lh("suppressions", leak_results, "--out", "missing/x.supp", cwd=tmp_path, cache=cache)
    assert_one_line_error(proc, tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_cache_under_a_file(tmp_path, cache):
    (tmp_path / "afile").write_text("")
    build(tmp_path, "leak", "leaky_binary")
    proc = lh("check", "--cache", "afile/cache", "--out", "out", "--", "./leaky_binary", cwd=tmp_path, cache=cache)
    assert_one_line_error(proc, tmp_path / "afile" / "cache", "cache")


@pytest.mark.parametrize("content", ["[]", "3", '"text"'])
def test_report_on_a_results_json_that_is_not_an_object(tmp_path, cache, content):
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "results.json").write_text(content + "\n")
    proc = lh("report", "res", "--out", "html", cwd=tmp_path, cache=cache)
    assert_one_line_error(proc, tmp_path / "res" / "results.json")
    # Nothing was written: no folder holding only leakharness's marker and lock is left behind;
    # an empty folder given is left empty; a folder of earlier results keeps them.
    assert not (tmp_path / "html").exists()
    (tmp_path / "empty").mkdir()
    proc = lh("report", "res", "--out", "empty", cwd=tmp_path, cache=cache)
    assert_one_line_error(proc, tmp_path / "res" / "results.json")
    assert os.listdir(tmp_path / "empty") == []
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / ".leakharness").write_text("earlier\n")
    (tmp_path / "earlier" / "results.json").write_text("{}\n")
    proc = lh("report", "res", "--out", "earlier", cwd=tmp_path, cache=cache)
    assert sorted(os.listdir(tmp_path / "earlier")) == [".leakharness", ".leakharness.lock", "results.json"]


@pytest.mark.parametrize("case", ["expect-leaky-string", "params-number"])
def test_pattern_toml_with_a_wrong_type(tmp_path, cache, case):
    root = tmp_path / "fx"
    (root / "bad_one").mkdir(parents=True)
    (root / "_common").symlink_to(ROOT / "c_fixtures" / "_common")
    shutil.copy(TRUST / "slow_leak.c.j2", root / "bad_one" / "pattern.c.j2")
    text = (TRUST / "slow_leak.toml").read_text().replace('id = "slow_leak"', 'id = "bad_one"')
    if case == "expect-leaky-string":
        text = text.split("[expect.leaky.memcheck]")[0] + '[expect]\nleaky = "x"\n'
        words = ("expect.leaky", "'x'")
    else:
        text = text.replace("[params]\nseconds = 4\n", "params = 3\n")
        words = ("params", "3")
    (root / "bad_one" / "pattern.toml").write_text(text)
    proc = lh("list", "--fixtures", "fx", cwd=tmp_path, cache=cache)
    assert_one_line_error(proc, root / "bad_one" / "pattern.toml", *words)


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("option", [("-j", "0"), ("-j", "-1"), ("--timeout", "-5"), ("--timeout", "0")],
                         ids=["j0", "j-1", "timeout-5", "timeout0"])
def test_bad_jobs_and_timeout_numbers(tmp_path, cache, command, option):
    build(tmp_path, "leak", "leaky_binary")
    what = ("--", "./leaky_binary") if command == "check" else ("--pattern", "x509_name_oneline")
    proc = lh(command, *option, "--out", "out", *what, cwd=tmp_path, cache=cache)
    assert_one_line_error(proc, option[0])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("var", ["ASAN_OPTIONS", "LSAN_OPTIONS"])
def test_leak_detection_turned_off_by_the_users_environment_is_not_clean(tmp_path, cache, var):
    shutil.copy(TRUST / "leak.c", tmp_path / "leak.c")
    proc = lh("check", "--build", "leak.c", "--tool", "asan", "--out", "out", "--no-html", "--quiet",
              cwd=tmp_path, cache=cache, env={var: "detect_leaks=0"})
    assert proc.returncode != 0, said(proc)
    job = jobs_by_tool(tmp_path / "out")["asan"]
    assert job["status"] == "incomplete" or leaks(job, 4321, "make_leak"), job


# --- 10. Ctrl-C inside leak_check stops the pytest session ------------------------------------

def test_ctrl_c_in_leak_check_stops_the_pytest_session(tmp_path, cache):
    name = unique("sleeper")
    build(tmp_path, "sleeper", name)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_interrupted.py").write_text(textwrap.dedent(f"""
        from pathlib import Path

        def test_first(leak_check):
            leak_check(program="./{name}", tools=("memcheck",), timeout=100)

        def test_second():
            Path("second_ran").write_text("yes")
    """))
    session = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_interrupted.py"],
                               cwd=tmp_path, env=user_env(cache), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(lambda: program_pids(name), 60, f"{name} to run under valgrind")
        session.send_signal(signal.SIGINT)  # what Ctrl-C does to pytest
        output, _ = session.communicate(timeout=60)
    finally:
        if session.poll() is None:
            os.killpg(session.pid, signal.SIGKILL)
            session.wait()
        kill_leftovers(name)
    assert session.returncode == 2, output  # pytest's "interrupted"
    assert "KeyboardInterrupt" in output, output
    assert not (tmp_path / "second_ran").exists(), output
    assert pids_of(name) == []
