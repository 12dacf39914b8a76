"""An unchanged catalog re-runs from the cache, known hangs and crashes included (issue 20), and
nothing is served that the cache cannot vouch for.

A run the pattern says hangs or crashes by design (`incomplete = "why"`, the known-incomplete
verdict) is stored as what it is: incomplete, with its reason, and handed back only while the
pattern still says so; never as clean, never as a pass, and a user's incomplete run (`check`)
is never stored.  The real CLI, from a private working folder and cache, on a copy of one
pattern of the catalog.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from realrun import have

ROOT = Path(__file__).resolve().parent.parent
PATTERN = "set0_ownership_double_free"  # its leaky variant dies of SIGSEGV under UBSan, by design

pytestmark = pytest.mark.skipif(not have("gcc"), reason="needs gcc")


def lh(*args, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "LEAKHARNESS"))
           and k not in ("UBSAN_OPTIONS", "ASAN_OPTIONS", "LD_PRELOAD")}
    env.update(PYTHONPATH=str(ROOT), LEAKHARNESS_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
                          start_new_session=True)


def job(out: Path) -> dict:
    (found,) = json.loads((out / "results.json").read_text())["jobs"]
    return found


@pytest.fixture
def fixtures(tmp_path) -> Path:
    root = tmp_path / "fixtures"
    root.mkdir()
    (root / "_common").symlink_to(ROOT / "c_fixtures" / "_common")
    shutil.copytree(ROOT / "c_fixtures" / PATTERN, root / PATTERN)
    return root


def run_once(tmp_path: Path, fixtures: Path, out: str) -> subprocess.CompletedProcess:
    return lh("run", "--fixtures", fixtures, "--pattern", PATTERN, "--tool", "ubsan", "--no-html",
              "--quiet", "--out", out, cwd=tmp_path, cache=tmp_path / "cache")


def test_a_known_crash_is_remembered_as_known_incomplete_while_the_pattern_says_so(tmp_path, fixtures):
    first = run_once(tmp_path, fixtures, "one")
    assert first.returncode == 0, first.stdout + first.stderr
    ran = next(j for j in json.loads((tmp_path / "one" / "results.json").read_text())["jobs"]
               if j["variant"] == "leaky")
    assert (ran["status"], ran["verdict"], ran["cached"]) == ("incomplete", "known-incomplete", False), ran

    again = run_once(tmp_path, fixtures, "two")
    assert again.returncode == 0, again.stdout + again.stderr
    jobs = json.loads((tmp_path / "two" / "results.json").read_text())["jobs"]
    leaky = next(j for j in jobs if j["variant"] == "leaky")
    # From the cache, as what it is: incomplete, with the reason the run gave, never clean.
    assert (leaky["status"], leaky["verdict"], leaky["cached"]) == ("incomplete", "known-incomplete", True), leaky
    assert leaky["message"] == ran["message"] and "SIGSEGV" in leaky["message"]
    assert all(j["cached"] for j in jobs)
    assert "(2 of 2 from cache" in again.stdout, again.stdout

    # The pattern no longer says the run crashes by design: the stored incomplete run is not
    # served; the job runs again, and a crash without a report fails.
    toml = fixtures / PATTERN / "pattern.toml"
    text = toml.read_text()
    start = text.index("[expect.leaky.ubsan]")
    end = text.index("\n[", start + 1)
    toml.write_text(text[:start] + '[expect.leaky.ubsan]\ncategory = "double-free"\n' + text[end:])
    third = run_once(tmp_path, fixtures, "three")
    leaky = next(j for j in json.loads((tmp_path / "three" / "results.json").read_text())["jobs"]
                 if j["variant"] == "leaky")
    assert leaky["cached"] is False and leaky["status"] == "incomplete" and leaky["verdict"] == "fail", leaky
    assert third.returncode == 1


def test_a_users_incomplete_run_is_never_remembered(tmp_path):
    """`check` has no pattern to say a crash is by design: its incomplete runs always run again."""
    source = tmp_path / "crash.c"
    source.write_text("#include <signal.h>\nint main(void) { raise(SIGSEGV); return 0; }\n")
    for n in (1, 2):
        proc = lh("check", "--build", source.name, "--tool", "ubsan", "--no-html", "--quiet", "--out", f"c{n}",
                  cwd=tmp_path, cache=tmp_path / "cache")
        assert proc.returncode == 3, proc.stdout + proc.stderr
        (ran,) = json.loads((tmp_path / f"c{n}" / "results.json").read_text())["jobs"]
        assert ran["status"] == "incomplete" and ran["cached"] is False, ran


def test_a_cold_run_starts_the_known_hangs_first(tmp_path):
    """With no durations remembered (an empty cache), a run that hangs by design is weighed at its
    timeout, not at its checker's guess of a few tenths: the scheduler starts it first instead of
    leaving a 5 s hang for the run's tail."""
    from harness.control import Session
    from harness.orchestrate import order

    session = Session(out=tmp_path / "out", cache=tmp_path / "cache", progress=False)
    tasks = session.catalog_tasks(session.catalog(["get0_freed", PATTERN]))
    hangs = {t.name for t in tasks if t.expected is not None and t.expected.outcome == "incomplete"
             and t.expected.timeout}  # a hang by design has its own short timeout; a crash does not
    assert "get0_freed::leaky[hardened]" in hangs and len(hangs) < len(tasks) / 2
    ordered = [t.name for t in order(tasks, {})]
    assert set(ordered[:len(hangs)]) == hangs, ordered
