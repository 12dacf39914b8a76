"""Issue 16: a result is reused only when leakharness can show that nothing it depends on
changed, the files the program read included; where that cannot be known the result is not
reused and the output says why; the catalog's own programs, which read nothing of the user's,
stay cached.  Run through the CLI, as a user does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from realrun import lh

ROOT = Path(__file__).resolve().parent.parent


def jobs(folder: Path) -> list[dict]:
    return json.loads((folder / "results.json").read_text())["jobs"]


READER = r'''#include <stdio.h>
#include <stdlib.h>
int main(void)
{
    FILE *f = fopen("settings.txt", "r");   /* by a fixed name */
    char line[64] = "";
    if (f) { fgets(line, sizeof line, f); fclose(f); }
    if (line[0] == 'l') { char *p = malloc(777); p[0] = 1; p = NULL; }
    return 0;
}
'''


def test_a_c_program_stays_cached_until_what_it_read_changes(tmp_path):
    cache = tmp_path / "cache"
    (tmp_path / "reader.c").write_text(READER)
    (tmp_path / "settings.txt").write_text("quiet\n")
    first = lh("check", "--build", "reader.c", "--tool", "asan", "--out", "a", cwd=tmp_path, cache=cache)
    second = lh("check", "--build", "reader.c", "--tool", "asan", "--out", "b", cwd=tmp_path, cache=cache)
    assert first.returncode == second.returncode == 0, first.stdout + second.stdout
    assert jobs(tmp_path / "b")[0]["cached"] and "1 from cache" in second.stdout
    (tmp_path / "settings.txt").write_text("leak\n")  # the same size: only the content says
    third = lh("check", "--build", "reader.c", "--tool", "asan", "--out", "c", cwd=tmp_path, cache=cache)
    assert third.returncode == 1 and "777 B" in third.stdout and not jobs(tmp_path / "c")[0]["cached"], third.stdout


GO_READER = '''package main

// #include <stdlib.h>
import "C"

import (
	"os"
	"unsafe"
)

func main() {
	data, _ := os.ReadFile("settings.txt") // Go's own system calls: no libc call to record
	if len(data) > 0 && data[0] == 'l' {
		p := C.malloc(777)
		_ = unsafe.Pointer(p)
	}
}
'''


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")
def test_a_go_program_s_result_is_not_reused_and_the_output_says_why(tmp_path):
    cache = tmp_path / "cache"
    (tmp_path / "main.go").write_text(GO_READER)
    (tmp_path / "settings.txt").write_text("quiet\n")
    first = lh("check", "--build", "main.go", "--tool", "cgocheck", "--out", "a", cwd=tmp_path, cache=cache)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "not cached: what the program read cannot all be known" in first.stdout
    assert "Go opens files with raw system calls" in first.stdout
    second = lh("check", "--build", "main.go", "--tool", "cgocheck", "--out", "b", cwd=tmp_path, cache=cache)
    assert second.returncode == 0 and not jobs(tmp_path / "b")[0]["cached"], second.stdout
    assert "not cached" in jobs(tmp_path / "b")[0]["not_cached"]


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")
def test_the_catalogs_own_programs_stay_cached(tmp_path):
    cache = tmp_path / "cache"
    args = ("run", "--pattern", "cgo_cstring_no_free", "--pattern", "i2d_alloc", "--tool", "memcheck",
            "--tool", "cgocheck", "--tool", "asan", "--no-html")
    first = lh(*args, "--out", "a", cwd=tmp_path, cache=cache, timeout=600)
    elsewhere = tmp_path / "elsewhere"  # a run from another folder: the catalog reads nothing of either
    elsewhere.mkdir()
    second = lh(*args, "--out", tmp_path / "b", cwd=elsewhere, cache=cache, timeout=600)
    assert first.returncode == second.returncode == 0, first.stdout + second.stdout
    ran = jobs(tmp_path / "b")
    assert ran and all(j["cached"] for j in ran), [(j["pattern"], j["variant"], j["tool"], j["not_cached"])
                                                   for j in ran if not j["cached"]]
    assert f"({len(ran)} of {len(ran)} from cache" in second.stdout


def test_an_incomplete_run_is_never_stored_even_with_a_whole_recording(tmp_path):
    """Two defences keep a run that was not fully checked out of the cache: its status, and its
    recording of what it read (a killed process leaves it incomplete).  A run stopped at the
    output cap exits normally, its recording whole: the status alone must keep it out."""
    import dataclasses

    from harness.jobs import Job
    from harness.resultcache import ResultCache, job_key
    from harness.run import run_job

    binary = tmp_path / "hello"
    subprocess.run(["gcc", "-g", "-x", "c", "-", "-o", str(binary)], input="int main(void){return 0;}\n",
                   text=True, check=True, timeout=120, capture_output=True)
    cache = tmp_path / "cache"
    job = Job("memcheck", (str(binary),), tmp_path / "out", cwd=tmp_path)
    result = run_job(job, cache)
    assert result.status == "ok" and result.inputs is not None and result.inputs.complete, result.message
    key = job_key(job, cache)
    store = ResultCache(cache)
    cut = dataclasses.replace(result, status="incomplete", message="output limit reached")
    assert store.put(key, cut) == "" and store.get(key, job) is None
    assert not list((cache / "results").glob("*/*"))  # not stored at all (get also refuses one that was)
    assert store.put(key, result) == "" and store.get(key, job) is not None  # the control: a whole run is kept


def test_a_program_built_just_before_its_run_is_stored(tmp_path):
    """Each target's program is compiled and run at once: a file changed just before the run
    started, which the recorder cannot tell from one changed while it ran.  leakharness lets
    it settle first, so the first run after a build is stored (else the next run runs again
    only to find the same, and says "not cached": 4 of these 8 jobs every time, without)."""
    targets = ""
    for name in "abcd":
        (tmp_path / f"{name}.c").write_text('#include <stdlib.h>\nint main(void) { char *p = malloc(55); '
                                            'p[0] = 1; p = NULL; return 0; }\n')
        targets += f'[[target]]\nname = "{name}"\nsources = ["{name}.c"]\n'
    (tmp_path / "leakharness.toml").write_text('tools = ["asan", "memcheck"]\n' + targets)
    cache = tmp_path / "cache"
    first = lh("run", "--no-html", "--out", "a", cwd=tmp_path, cache=cache)
    assert first.returncode == 1 and "55 B" in first.stdout and "not cached" not in first.stdout, first.stdout
    second = lh("run", "--no-html", "--out", "b", cwd=tmp_path, cache=cache)
    assert second.returncode == 1 and "8 from cache" in second.stdout, second.stdout


def test_a_file_named_by_the_command_is_seen_when_it_appears_in_a_listed_folder(tmp_path):
    """The names of a settled working folder are listed once per process and remembered (a
    catalog run keys hundreds of jobs in one folder); a file the command names that appears
    there afterwards must still be found and hashed, and one in a folder still changing too."""
    import time

    from harness import facts
    from harness.resultcache import named_files

    (tmp_path / "a.supp").write_text("{\n}\n")
    texts = ["--suppressions=a.supp --suppressions=b.supp yes full"]
    while not facts.settled(facts.identity(tmp_path)):  # listed and remembered only once settled
        time.sleep(0.1)
    assert named_files(texts, tmp_path) == [str(tmp_path / "a.supp")]
    (tmp_path / "b.supp").write_text("{\n}\n")
    assert named_files(texts, tmp_path) == [str(tmp_path / "a.supp"), str(tmp_path / "b.supp")]
    (tmp_path / "a.supp").unlink()
    assert named_files(texts, tmp_path) == [str(tmp_path / "b.supp")]


def test_a_result_stored_by_other_log_reading_code_is_not_reused(tmp_path, monkeypatch):
    """A stored result holds what the parsers and checkers of its day read from the logs: when
    that code changes (a newer leakharness) the job runs again, so a fix that leaves out a false
    report reaches results already stored; the same code reuses them."""
    from harness import resultcache
    from harness.control import Session

    (tmp_path / "reader.c").write_text(READER)
    (tmp_path / "settings.txt").write_text("leak\n")
    monkeypatch.chdir(tmp_path)

    def check(out: str):
        session = Session(out=tmp_path / out, cache=tmp_path / "cache", progress=False)
        (job,) = session.check(session.check_tasks(sources=[tmp_path / "reader.c"], checkers=("memcheck",))).jobs
        assert sum(f.bytes for f in job.findings if f.is_lost_leak) == 777
        return job

    assert not check("a").cached and check("b").cached
    monkeypatch.setattr(resultcache, "reader_identity", lambda: "a newer reader")
    assert not check("c").cached and check("d").cached


def test_the_log_reading_codes_identity_follows_its_files_not_its_place(tmp_path):
    def identity(root: Path) -> str:
        return subprocess.run([sys.executable, "-c", "from harness.resultcache import reader_identity as r; print(r())"],
                              cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True,
                              text=True, check=True, timeout=60, stdin=subprocess.DEVNULL).stdout.strip()

    same = tmp_path / "same"
    shutil.copytree(ROOT / "harness", same / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    newer = tmp_path / "newer"
    shutil.copytree(ROOT / "harness", newer / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    with open(newer / "harness" / "checkers" / "valgrind.py", "a") as fh:
        fh.write("\n# a newer reader\n")
    assert identity(ROOT) == identity(same) != identity(newer)
