"""Issue 17: every part of a run that did not complete is said, on the terminal, in the files and
in the exit code, and the cache stays sound under concurrent use.  Run as a user runs them: the
real CLI in a subprocess from its own folder, pytest through pytester, real gcc, valgrind, ASan.

- nightly: a night stopped with Ctrl-C is marked interrupted, not drawn as a night of zeros; a
  first night with failures exits 1 and says so (terminal, --summary-md); an expectation that
  went stale is a regression;
- `--growth` whose runs timed out: on the terminal and exit 3;
- `cache clear` while a run uses the cache is refused, and the run ends whole; a truncated
  cached binary is built again, `--fresh` or not;
- `check --suppressions` prints how many findings were suppressed;
- pytest: a session stopped by Ctrl-C says so in --leak-report; `leak_check` jobs reach it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
TRUST = ROOT / "tests" / "programs" / "trust"
HERMETIC = ("ASAN_OPTIONS", "LSAN_OPTIONS", "VALGRIND_OPTS", "LD_LIBRARY_PATH", "LD_PRELOAD",
            "LEAKHARNESS_CACHE", "LEAKHARNESS_CACHE_MAX", "PYTEST_ADDOPTS")


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in HERMETIC and not k.startswith("PYTEST_XDIST")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env["LEAKHARNESS_CACHE"] = str(cache)
    return env


def lh(*args, cwd: Path, cache: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=_env(cache),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          start_new_session=True)


def lh_background(*args, cwd: Path, cache: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=_env(cache),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def said(proc) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def wait_for(predicate, what: str, limit: float = 180, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"ended (exit {proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {limit} s for {what}")
        time.sleep(0.1)


HOLD_TEMPLATE = '''\
#include "lh_common.h"
#include <unistd.h>
/* The leaky variant waits while a file named "hold" is in its working folder, then loses a
   buffer; the fixed one frees it at once. */
LH_NOINLINE static void make_leak(void)
{
    char *p = OPENSSL_malloc(4321);
    memset(p, 1, 4321);
{% if leaky %}
    for (int i = 0; i < 1200 && access("hold", F_OK) == 0; i++)
        usleep(100000);
    p = NULL;
{% else %}
    OPENSSL_free(p);
{% endif %}
}
int main(void)
{
    lh_init();
    make_leak();
    return 0;
}
'''


def fixtures(root: Path, asan_leaky: str = 'category = "leak"\nfunction = "make_leak"\nmin_bytes = 4000') -> Path:
    """A catalog of one pattern, hold_leak, for asan."""
    (root / "hold_leak").mkdir(parents=True, exist_ok=True)
    if not (root / "_common").exists():
        (root / "_common").symlink_to(ROOT / "c_fixtures" / "_common")
    (root / "hold_leak" / "pattern.toml").write_text(
        'id = "hold_leak"\ntitle = "a leak after a wait"\ndescription = "Written by a test of issue 17."\n'
        'apis = ["OPENSSL_malloc"]\nreferences = ["https://example.invalid/issue17"]\n'
        '[expect.leaky.memcheck]\ncategory = "leak"\nfunction = "make_leak"\n'
        f"[expect.leaky.asan]\n{asan_leaky}\n")
    (root / "hold_leak" / "pattern.c.j2").write_text(HOLD_TEMPLATE)
    return root


# --- nightly ---------------------------------------------------------------------------------------

def test_an_interrupted_night_is_marked_and_never_drawn_as_a_night(tmp_path):
    """Ctrl-C during a night, then a whole night: the first used to be listed as a real night
    (1 job of 2, 0 failed, 0 findings), its trend points at 0, its link leading nowhere."""
    cache = tmp_path / "cache"
    catalog = fixtures(tmp_path / "fixtures")
    (tmp_path / "hold").write_text("")
    night = lh_background("nightly", "--history", "hist", "--fixtures", catalog, "--tool", "asan", "-j", "2",
                          "--quiet", cwd=tmp_path, cache=cache)
    try:
        wait_for(lambda: any((tmp_path / "hist").glob("*/jobs/*.json")), "the fixed variant's job file", proc=night)
        os.killpg(night.pid, signal.SIGINT)
        out, err = night.communicate(timeout=120)
    finally:
        if night.poll() is None:
            os.killpg(night.pid, signal.SIGKILL)
    assert night.returncode == 130, out + err
    (tmp_path / "hold").unlink()
    proc = lh("nightly", "--history", "hist", "--fixtures", catalog, "--tool", "asan", "--quiet", cwd=tmp_path,
              cache=cache)
    assert proc.returncode == 0, said(proc)
    entries = json.loads((tmp_path / "hist" / "history.json").read_text())["nights"]
    assert len(entries) == 2
    stopped, whole = entries
    assert stopped["interrupted"] is True and not whole.get("interrupted"), entries
    page = (tmp_path / "hist" / "index.html").read_text()
    assert "Trends over 1 night(s)" in page
    assert f'href="{stopped["night"]}/index.html"' not in page and f'href="{whole["night"]}/index.html"' in page
    assert "interrupted" in page
    # Compared with no night at all: an interrupted night is nothing to compare with.
    comparison = json.loads((tmp_path / "hist" / whole["night"] / "comparison.json").read_text())
    assert comparison["previous"] is None


def test_a_first_night_with_failures_exits_1_and_says_so(tmp_path):
    """A first night had nothing to regress from: it exited 0 on a failing catalog."""
    cache = tmp_path / "cache"
    catalog = fixtures(tmp_path / "fixtures", asan_leaky='category = "leak"\nfunction = "make_leak"\nmin_bytes = 999999')
    proc = lh("nightly", "--history", "hist", "--fixtures", catalog, "--tool", "asan", "--quiet",
              "--summary-md", "summary.md", cwd=tmp_path, cache=cache)
    assert proc.returncode == 1, said(proc)
    assert "FAILED 1 job(s) on the first night" in proc.stdout and "hold_leak::leaky[asan]" in proc.stdout
    summary = (tmp_path / "summary.md").read_text()
    assert "first night" in summary and "failures, not regressions" in summary
    page = (tmp_path / "hist" / "index.html").read_text()
    assert "1 job(s) failed" in page and "No regression." not in page


def test_an_expectation_gone_stale_is_a_regression(tmp_path):
    cache = tmp_path / "cache"
    catalog = fixtures(tmp_path / "fixtures")
    proc = lh("nightly", "--history", "hist", "--fixtures", catalog, "--tool", "asan", "--quiet", cwd=tmp_path,
              cache=cache)
    assert proc.returncode == 0, said(proc)
    # The pattern now says asan cannot see this leak: it does, so the expectation is stale.
    fixtures(catalog, asan_leaky='blind = "a test says asan misses it"')
    time.sleep(1)  # another night's name
    proc = lh("nightly", "--history", "hist", "--fixtures", catalog, "--tool", "asan", "--quiet", cwd=tmp_path,
              cache=cache)
    assert proc.returncode == 1, said(proc)
    assert "went stale" in proc.stdout and "hold_leak::leaky[asan] (pass -> stale)" in proc.stdout, said(proc)


# --- growth ------------------------------------------------------------------------------------------

def test_a_growth_run_that_timed_out_is_on_the_terminal_and_in_the_exit_code(tmp_path):
    """It used to exit 0 and print nothing: only `status: incomplete` deep in results.json."""
    proc = lh("run", "--pattern", "i2d_alloc", "--tool", "asan", "--growth", "--growth-iterations", "1,3000000",
              "--timeout", "2", "--out", "out", "--quiet", "--summary-md", "summary.md", cwd=tmp_path,
              cache=tmp_path / "cache")
    assert proc.returncode == 3, said(proc)
    assert "GROWTH INCOMPLETE i2d_alloc::leaky[asan]" in proc.stdout and "timed out" in proc.stdout, said(proc)
    assert "GROWTH INCOMPLETE" in (tmp_path / "summary.md").read_text()
    growth = json.loads((tmp_path / "out" / "results.json").read_text())["growth"]
    assert [g["status"] for g in growth] == ["incomplete"]


# --- the cache ----------------------------------------------------------------------------------------

def test_cache_clear_while_a_run_uses_the_cache_is_refused_and_the_run_ends_whole(tmp_path):
    """`cache clear` during a run turned its jobs into build-failed and aborted it (exit 2)."""
    cache = tmp_path / "cache"
    catalog = fixtures(tmp_path / "fixtures")
    (tmp_path / "hold").write_text("")
    run = lh_background("run", "--fixtures", catalog, "--tool", "asan", "--tool", "memcheck", "--out", "out",
                        "--quiet", cwd=tmp_path, cache=cache)
    try:
        wait_for(lambda: len(list((tmp_path / "out").glob("jobs/*.json"))) >= 1, "a job of the run to end", proc=run)
        clear = lh("cache", "clear", cwd=tmp_path, cache=cache, timeout=60)
        assert clear.returncode == 2 and "using this cache" in clear.stderr, said(clear)
        assert len(clear.stderr.strip().splitlines()) == 1 and "Traceback" not in clear.stderr
        assert any((cache / "builds").iterdir())
    finally:
        (tmp_path / "hold").unlink()
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, out + err
    jobs = json.loads((tmp_path / "out" / "results.json").read_text())["jobs"]
    assert sorted(j["verdict"] for j in jobs) == ["pass"] * len(jobs) and len(jobs) == 4, jobs
    # Once the run is over, the clear goes through.
    clear = lh("cache", "clear", cwd=tmp_path, cache=cache, timeout=60)
    assert clear.returncode == 0, said(clear)
    assert not (cache / "builds").exists()


@pytest.mark.parametrize("fresh", [False, True])
def test_a_truncated_cached_binary_is_built_again(tmp_path, fresh):
    cache = tmp_path / "cache"
    args = ("run", "--pattern", "i2d_alloc", "--tool", "asan", "--quiet")
    proc = lh(*args, "--out", "first", cwd=tmp_path, cache=cache)
    assert proc.returncode == 0, said(proc)
    binaries = [p for p in (cache / "builds").rglob("i2d_alloc-*") if p.is_file() and p.suffix != ".c"]
    assert len(binaries) == 2
    sizes = {p: p.stat().st_size for p in binaries}
    for p in binaries:  # a disk that filled up, a copy that was killed
        with open(p, "r+b") as fh:
            fh.truncate(sizes[p] // 3)
    proc = lh(*args, "--out", "second", *(("--fresh",) if fresh else ()), cwd=tmp_path, cache=cache)
    assert proc.returncode == 0, said(proc)
    jobs = json.loads((tmp_path / "second" / "results.json").read_text())["jobs"]
    assert [j["verdict"] for j in jobs] == ["pass", "pass"] and all(j["status"] == "ok" for j in jobs), jobs
    rebuilt = {p: p.stat().st_size for p in (cache / "builds").rglob("i2d_alloc-*") if p.is_file() and p.suffix != ".c"}
    assert sorted(rebuilt.values()) == sorted(sizes.values())


# --- suppressions ----------------------------------------------------------------------------------

def test_check_with_suppressions_says_how_many_were_suppressed(tmp_path):
    """The README promises suppressed findings are counted and shown, not failing."""
    cache = tmp_path / "cache"
    shutil.copy(TRUST / "leak.c", tmp_path / "leak.c")
    proc = lh("check", "--build", "leak.c", "--tool", "memcheck", "--out", "first", cwd=tmp_path, cache=cache)
    assert proc.returncode == 1, said(proc)
    proc = lh("suppressions", "first", "--out", "base.supp", cwd=tmp_path, cache=cache)
    assert proc.returncode == 0, said(proc)
    proc = lh("check", "--build", "leak.c", "--tool", "memcheck", "--out", "second", "--suppressions", "base.supp",
              cwd=tmp_path, cache=cache)
    assert proc.returncode == 0, said(proc)
    assert "clean, 1 finding(s) suppressed" in proc.stdout, said(proc)


# --- pytest ------------------------------------------------------------------------------------------

def test_a_pytest_session_stopped_by_ctrl_c_says_so_in_its_report(pytester, monkeypatch):
    """After Ctrl-C, --leak-report showed the jobs that finished as a whole run, all pass.  In a
    pytest process of its own (an interrupt in pytester's in-process run stops this one too),
    with this checkout's harness first."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    monkeypatch.setenv("LEAKHARNESS_CACHE", str(pytester.path / "cache"))
    catalog = fixtures(pytester.path / "fixtures")
    pytester.makepyfile(test_stop="""
        def test_ctrl_c():
            raise KeyboardInterrupt
    """)
    report = pytester.path / "report"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", str(catalog), "test_stop.py", "--leak-tools",
                                           "asan", f"--leak-report={report}", timeout=300)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    data = json.loads((report / "results.json").read_text())
    assert data.get("interrupted") is True and len(data["jobs"]) == 2
    assert "Interrupted" in (report / "index.html").read_text()
    result.stdout.fnmatch_lines(["*leakharness: results in *interrupted*"])


def test_leak_check_results_reach_the_leak_report(pytester):
    """leak_check's jobs never reached --leak-report: only the catalog's did."""
    catalog = fixtures(pytester.path / "fixtures")
    shutil.copy(TRUST / "leak.c", pytester.path / "leak.c")
    pytester.makepyfile(test_mine="""
        def test_my_leak(leak_check):
            leak_check(build=["leak.c"], tools=("asan",)).assert_leaks(function="make_leak", min_bytes=4000)
    """)
    report = pytester.path / "report"
    result = pytester.runpytest("-p", "no:cacheprovider", str(catalog), "test_mine.py", "--leak-tools", "asan",
                                f"--leak-report={report}")
    result.assert_outcomes(passed=3)
    data = json.loads((report / "results.json").read_text())
    mine = [j for j in data["jobs"] if j["variant"] is None]
    assert len(mine) == 1 and "test_my_leak" in mine[0]["pattern"] and mine[0]["tool"] == "asan", data["jobs"]
    assert any(f["category"] == "leak" and f["bytes"] == 4321 for f in mine[0]["findings"])
    assert len(data["jobs"]) == 3
    for rel in mine[0]["logs"]:
        assert (report / rel).is_file(), rel
    # The folder is a results folder like any other: `report` renders it, nothing refused.
    proc = lh("report", report, "--out", pytester.path / "again", cwd=pytester.path, cache=pytester.path / "cache")
    assert proc.returncode == 0, said(proc)
    assert "test_my_leak" in (pytester.path / "again" / "index.html").read_text()
