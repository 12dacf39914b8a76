"""A bug a checker sees only in some runs (a race memcheck catches by its symptoms, when the
threads happen to meet): `attempts = N` in an expectation runs a whole run that missed it again,
up to N runs, and a catch in any run is the catch; the last run is the one kept and cached.

The program here is real C run under real ASan: its leaky variant loses a buffer only from its
second run on (it counts its runs in a file of its working folder), so each test knows which run
catches it.  Run as a user runs it: the CLI in a subprocess from its own folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERMETIC = ("ASAN_OPTIONS", "LSAN_OPTIONS", "VALGRIND_OPTS", "LD_LIBRARY_PATH", "LD_PRELOAD",
            "LEAKHARNESS_CACHE", "LEAKHARNESS_CACHE_MAX", "PYTEST_ADDOPTS")

TEMPLATE = '''\
#include "lh_common.h"
#include <stdio.h>
/* Counts its runs in the file "runs-VARIANT" of its working folder; the leaky variant loses a buffer
   from run number {{ '{{' }} first_leaking_run {{ '}}' }} on, the fixed one never. */
LH_NOINLINE static void maybe_leak(int run)
{
    char *p = OPENSSL_malloc(4321);
    memset(p, 1, 4321);
{% if leaky %}
    if (run >= {{ first_leaking_run }}) {
        p = NULL;
        return;
    }
{% endif %}
    OPENSSL_free(p);
}
int main(void)
{
    int run = 0;
    FILE *fh = fopen("runs-{{ variant }}", "r");
    if (fh) {
        if (fscanf(fh, "%d", &run) != 1)
            run = 0;
        fclose(fh);
    }
    run++;
    fh = fopen("runs-{{ variant }}", "w");
    if (fh) {
        fprintf(fh, "%d\\n", run);
        fclose(fh);
    }
    lh_init();
    maybe_leak(run);
    return 0;
}
'''


def fixtures(root: Path, expectation: str, first_leaking_run: int = 2) -> Path:
    pattern = root / "sometimes_leak"
    pattern.mkdir(parents=True, exist_ok=True)
    if not (root / "_common").exists():
        (root / "_common").symlink_to(ROOT / "c_fixtures" / "_common")
    (pattern / "pattern.toml").write_text(
        'id = "sometimes_leak"\ntitle = "a leak some runs miss"\ndescription = "Written by tests/test_attempts.py."\n'
        'apis = ["OPENSSL_malloc"]\nreferences = ["https://example.invalid/attempts"]\n'
        f"[params]\nfirst_leaking_run = {first_leaking_run}\n"
        '[expect.leaky.memcheck]\ncategory = "leak"\nfunction = "maybe_leak"\n'  # not run here
        f"[expect.leaky.asan]\n{expectation}\n")
    (pattern / "pattern.c.j2").write_text(TEMPLATE.replace("{{ '{{' }} first_leaking_run {{ '}}' }}",
                                                           "{{ first_leaking_run }}"))
    return root


def lh(*args, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in HERMETIC and not k.startswith("PYTEST_XDIST")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env["LEAKHARNESS_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
                          start_new_session=True)


def run_catalog(tmp_path: Path, expectation: str, first_leaking_run: int = 2, out: str = "out"):
    """`run` of the one-pattern catalog under asan from tmp_path/work: (the process, the leaky job)."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    catalog = fixtures(tmp_path / "fixtures", expectation, first_leaking_run)
    proc = lh("run", "--fixtures", catalog, "--tool", "asan", "--out", out, "--no-html", cwd=work,
              cache=tmp_path / "cache")
    return proc, (leaky_job(work / out) if (work / out / "results.json").is_file() else None)


def leaky_job(out: Path) -> dict:
    jobs = json.loads((out / "results.json").read_text())["jobs"]
    return next(j for j in jobs if j["variant"] == "leaky")


def said(proc) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


LEAK = 'category = "leak"\nfunction = "maybe_leak"\nmin_bytes = 4321'


def test_a_run_that_missed_runs_again_and_the_catch_counts(tmp_path):
    proc, job = run_catalog(tmp_path, LEAK + "\nattempts = 3")
    assert proc.returncode == 0, said(proc)
    assert job["verdict"] == "pass", job
    assert "run 2 of up to 3: the 1 before it missed it" in job["reason"], job["reason"]
    leaks = [f for f in job["findings"] if f["category"] == "leak"]
    assert [f["bytes"] for f in leaks] == [4321]
    assert any(fr["function"] == "maybe_leak" for fr in leaks[0]["stack"])
    work = tmp_path / "work"
    assert (work / "runs-leaky").read_text().split() == ["2"]
    assert (work / "runs-fixed").read_text().split() == ["1"]

    # Run again on the same cache: the stored result is the catch, not the miss before it.
    proc, job = run_catalog(tmp_path, LEAK + "\nattempts = 3", out="out2")
    assert proc.returncode == 0, said(proc)
    assert job["verdict"] == "pass" and job["cached"] is True, job
    assert [f["bytes"] for f in job["findings"] if f["category"] == "leak"] == [4321]
    assert (work / "runs-leaky").read_text().split() == ["2"]


def test_without_attempts_one_miss_fails(tmp_path):
    proc, job = run_catalog(tmp_path, LEAK)
    assert proc.returncode == 1, said(proc)
    assert job["verdict"] == "fail" and "expected leak" in job["reason"], job
    assert (tmp_path / "work" / "runs-leaky").read_text().split() == ["1"]


def test_a_bug_missed_in_every_attempt_fails_and_says_how_many(tmp_path):
    proc, job = run_catalog(tmp_path, LEAK + "\nattempts = 3", first_leaking_run=99)
    assert proc.returncode == 1, said(proc)
    assert job["verdict"] == "fail" and "(in each of 3 runs)" in job["reason"], job
    assert (tmp_path / "work" / "runs-leaky").read_text().split() == ["3"]


def test_attempts_in_pattern_toml_is_checked(tmp_path):
    for bad, words in (("attempts = 0", "attempts must be a whole number from 1 to 10"),
                       ("attempts = 11", "attempts must be a whole number from 1 to 10"),
                       ('attempts = "3"', "attempts must be a whole number from 1 to 10"),
                       ('blind = "x"\nattempts = 2', "attempts is for a bug to find")):
        expectation = bad if bad.startswith("blind") else LEAK + "\n" + bad
        catalog = fixtures(tmp_path / "fixtures", expectation)
        proc = lh("run", "--fixtures", catalog, "--tool", "asan", "--out", "out", "--no-html", cwd=tmp_path,
                  cache=tmp_path / "cache")
        assert proc.returncode == 2, said(proc)
        assert words in proc.stderr and "pattern.toml" in proc.stderr, said(proc)
        assert "Traceback" not in proc.stderr
