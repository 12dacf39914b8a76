"""Issue 17, "Results that combine without lying": shards of one run, merges of several results
folders, and results.json files from elsewhere, tried the way a user does (the real CLI in a
subprocess, from its own working folder, real gcc, valgrind and ASan).

- shards run one after another on one cache, and all at once, merge into exactly the unsharded
  run; a merge missing a shard exits non-zero naming the missing jobs; a shard given twice is
  refused;
- a merge judges again: the same job from two folders is the worse copy (a leak in a fixed
  variant fails whichever folder comes first; an incomplete copy is never a pass);
- a results.json is untrusted data: paths outside its folder (absolute, `..`, a symlink) are
  refused, and the report writes nothing outside --out; a damaged field is one line naming the
  file, the job and the field;
- the command line's limits: --shard, LEAKHARNESS_CACHE_MAX, --timeout and pattern.toml's timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = ("i2d_alloc", "x509_name_oneline", "plain_double_free")
TOOLS = ("asan", "memcheck")
SUBSET = tuple(a for p in PATTERNS for a in ("--pattern", p)) + tuple(a for t in TOOLS for a in ("--tool", t))
ALL_JOBS = {f"{p}::{v}[{t}]" for p in PATTERNS for v in ("leaky", "fixed") for t in TOOLS}
HERMETIC = ("ASAN_OPTIONS", "LSAN_OPTIONS", "VALGRIND_OPTS", "LD_LIBRARY_PATH", "LD_PRELOAD",
            "LEAKHARNESS_CACHE", "LEAKHARNESS_CACHE_MAX", "PYTEST_ADDOPTS")


def _env(cache: Path, extra: dict | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in HERMETIC and not k.startswith("PYTEST_XDIST")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env["LEAKHARNESS_CACHE"] = str(cache)
    env.update(extra or {})
    return env


def lh(*args, cwd: Path, cache: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=_env(cache, env),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          start_new_session=True)


def said(proc) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def one_line_error(proc, *words) -> str:
    assert "Traceback" not in proc.stderr, said(proc)
    assert proc.returncode == 2, said(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("leakharness: "), said(proc)
    for word in words:
        assert str(word) in lines[0], said(proc)
    return lines[0]


def verdicts(folder: Path) -> dict[str, str]:
    jobs = json.loads((folder / "results.json").read_text())["jobs"]
    names = [f"{j['pattern']}::{j['variant']}[{j['tool']}]" for j in jobs]
    assert len(names) == len(set(names)), names  # no job twice
    return {n: j["verdict"] for n, j in zip(names, jobs)}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("combine")


@pytest.fixture(scope="module")
def cache(work) -> Path:
    return work / "cache"


@pytest.fixture(scope="module")
def whole(work, cache) -> Path:
    """The subset run unsharded: what every merge of its shards must equal."""
    proc = lh("run", *SUBSET, "--out", "whole", "--quiet", cwd=work, cache=cache)
    assert proc.returncode == 0, said(proc)
    assert set(verdicts(work / "whole")) == ALL_JOBS
    return work / "whole"


# --- shards ---------------------------------------------------------------------------------------

def test_shards_one_after_another_on_one_cache_merge_into_the_whole_run(work, whole):
    """Each shard used to balance its split by the durations the shard before it had just
    written to the shared cache: jobs ran twice and others never (8 of 12, i2d_alloc's leaky
    variant nowhere), and the merge said all pass.  The shards' cache starts empty, as on a
    fresh machine, so that each shard really runs (and measures) its jobs."""
    shared = work / "seq-cache"
    for k in (1, 2, 3):
        proc = lh("run", *SUBSET, "--shard", f"{k}/3", "--out", f"seq{k}", "--quiet", cwd=work, cache=shared)
        assert proc.returncode == 0, said(proc)
    parts = [set(verdicts(work / f"seq{k}")) for k in (1, 2, 3)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2]), parts
    proc = lh("report", "seq1", "seq2", "seq3", "--out", "seq-all", cwd=work, cache=cache)
    assert proc.returncode == 0, said(proc)
    assert verdicts(work / "seq-all") == verdicts(whole)


def test_shards_at_once_on_one_cache_merge_into_the_whole_run(work, whole):
    shared = work / "par-cache"
    procs = [subprocess.Popen([sys.executable, "-m", "harness", "run", *SUBSET, "--shard", f"{k}/3",
                               "--out", f"par{k}", "--quiet"], cwd=work, env=_env(shared), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
             for k in (1, 2, 3)]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out + err
    proc = lh("report", "par1", "par2", "par3", "--out", "par-all", cwd=work, cache=cache)
    assert proc.returncode == 0, said(proc)
    assert verdicts(work / "par-all") == verdicts(whole)


def test_a_merge_missing_a_shard_exits_non_zero_naming_the_missing_jobs(work, cache, whole):
    for k in (1, 2, 3):
        if not (work / f"seq{k}" / "results.json").is_file():
            assert lh("run", *SUBSET, "--shard", f"{k}/3", "--out", f"seq{k}", "--quiet", cwd=work,
                      cache=cache).returncode == 0
    third = set(verdicts(work / "seq3"))
    proc = lh("report", "seq1", "seq2", "--out", "seq-part", "--junit", "seq-part.xml", cwd=work, cache=cache)
    assert proc.returncode not in (0, 2), said(proc)  # 3: not everything was checked
    assert "Traceback" not in proc.stderr
    for name in third:
        assert name in proc.stderr, said(proc)
    # Rendered, but as what it is: the missing jobs are there as not run, failing everywhere.
    merged = json.loads((work / "seq-part" / "results.json").read_text())
    not_run = {f"{j['pattern']}::{j['variant']}[{j['tool']}]" for j in merged["jobs"] if j["status"] == "incomplete"}
    assert not_run == third
    assert sorted(merged["run"]["missing"]) == sorted(third)
    assert "Partial:" in (work / "seq-part" / "index.html").read_text()
    suite = ET.parse(work / "seq-part.xml").getroot()
    assert int(suite.get("failures") or suite[0].get("failures")) >= len(third)


def test_a_shard_given_twice_is_refused(work, cache, whole):
    for k in (1, 2):
        if not (work / f"seq{k}" / "results.json").is_file():
            assert lh("run", *SUBSET, "--shard", f"{k}/3", "--out", f"seq{k}", "--quiet", cwd=work,
                      cache=cache).returncode == 0
    shutil.copytree(work / "seq1", work / "seq1-again")
    proc = lh("report", "seq1", "seq1-again", "seq2", "--out", "seq-dup", cwd=work, cache=cache)
    one_line_error(proc, "seq1-again", "shard 1/3", "twice")


# --- merges judge again ----------------------------------------------------------------------------

def _edited_copy(whole: Path, to: Path, name: str, **changes) -> None:
    shutil.copytree(whole, to)
    data = json.loads((to / "results.json").read_text())
    for job in data["jobs"]:
        if f"{job['pattern']}::{job['variant']}[{job['tool']}]" == name:
            job.update(changes)
    (to / "results.json").write_text(json.dumps(data))


def _job(folder: Path, name: str) -> dict:
    return next(j for j in json.loads((folder / "results.json").read_text())["jobs"]
                if f"{j['pattern']}::{j['variant']}[{j['tool']}]" == name)


def test_a_leak_in_a_fixed_variant_fails_the_merge_whichever_folder_comes_first(work, cache, whole):
    """The merge kept the first copy's "pass" and added the second copy's leak: "pass, leak
    42.4 KB", 0 failed, JUnit 0 failures; swapped, it failed."""
    leaky = _job(whole, "i2d_alloc::leaky[asan]")
    assert leaky["verdict"] == "pass" and any(f["category"] == "leak" for f in leaky["findings"])
    _edited_copy(whole, work / "leaking-fixed", "i2d_alloc::fixed[asan]", findings=leaky["findings"], verdict="fail")
    for order in (("whole", "leaking-fixed"), ("leaking-fixed", "whole")):
        out = "merged-" + "-".join(order)
        proc = lh("report", *order, "--out", out, "--junit", f"{out}.xml", cwd=work, cache=cache)
        assert proc.returncode == 0, said(proc)
        job = _job(work / out, "i2d_alloc::fixed[asan]")
        assert job["verdict"] == "fail", job
        assert "conflicting copies" in job["reason"], job["reason"]
        failures = {f"{tc.get('classname')}::{tc.get('name')}" for tc in ET.parse(work / f"{out}.xml").iter("testcase")
                    if tc.find("failure") is not None}
        assert len(failures) == 1 and "i2d_alloc" in failures.pop(), failures


def test_a_pass_merged_with_an_incomplete_copy_is_not_a_pass(work, cache, whole):
    _edited_copy(whole, work / "timed-out", "x509_name_oneline::leaky[memcheck]", status="incomplete",
                 verdict="pass", findings=[], message="timed out after 120 s")
    proc = lh("report", "whole", "timed-out", "--out", "merged-timeout", cwd=work, cache=cache)
    assert proc.returncode == 0, said(proc)
    job = _job(work / "merged-timeout", "x509_name_oneline::leaky[memcheck]")
    assert job["status"] == "incomplete" and job["verdict"] == "fail", job


def test_a_verdict_edited_to_pass_is_judged_again(work, cache, whole):
    leaky = _job(whole, "i2d_alloc::leaky[asan]")
    _edited_copy(whole, work / "edited", "i2d_alloc::fixed[asan]", findings=leaky["findings"], verdict="pass")
    proc = lh("report", "edited", "--out", "edited-report", cwd=work, cache=cache)
    assert proc.returncode == 0, said(proc)
    assert _job(work / "edited-report", "i2d_alloc::fixed[asan]")["verdict"] == "fail"


# --- a results.json is untrusted ------------------------------------------------------------------

def _snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath).resolve() == skip.resolve() or skip.resolve() in Path(dirpath).resolve().parents:
            continue
        for name in filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("field,value", [
    ("sources", "absolute"), ("sources", "dotdot"), ("logs", "absolute"), ("logs", "dotdot"),
    ("logs", "symlink"), ("sources", "symlink")])
def test_paths_outside_the_results_folder_are_refused(work, cache, whole, tmp_path, field, value):
    """A source path /etc/shadow was copied into the report (mode 644) and shown in a page; a
    log path ../../../../etc/hostname was written outside --out."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("SENTINEL-OUTSIDE-4242\n")
    folder = tmp_path / "given"
    shutil.copytree(whole, folder)
    data = json.loads((folder / "results.json").read_text())
    job = next(j for j in data["jobs"] if j["sources"] and j["logs"])
    rel = {"absolute": str(secret), "dotdot": os.path.relpath(secret, folder),
           "symlink": "logs/innocent.txt"}[value]
    if value == "symlink":
        (folder / "logs" / "innocent.txt").symlink_to(secret)
    if field == "sources":
        job["sources"][0]["path"] = rel
    else:
        job["logs"][0] = rel
    (folder / "results.json").write_text(json.dumps(data))
    before = _snapshot(tmp_path, tmp_path / "report")
    proc = lh("report", folder, "--out", tmp_path / "report", cwd=tmp_path, cache=cache)
    one_line_error(proc, folder / "results.json", f"{job['pattern']}::{job['variant']}[{job['tool']}]", field)
    assert _snapshot(tmp_path, tmp_path / "report") == before  # nothing outside --out changed
    for p in (tmp_path / "report").rglob("*"):
        assert not p.is_file() or b"SENTINEL-OUTSIDE" not in p.read_bytes(), p


def test_a_symlink_in_a_folder_reported_in_place_is_not_read(work, cache, whole, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SENTINEL-OUTSIDE-4343\n")
    folder = tmp_path / "given"
    shutil.copytree(whole, folder)
    data = json.loads((folder / "results.json").read_text())
    job = next(j for j in data["jobs"] if j["sources"])
    src = folder / job["sources"][0]["path"]
    src.unlink()
    src.symlink_to(secret)
    proc = lh("report", "given", "--out", "given", cwd=tmp_path, cache=cache)
    assert "Traceback" not in proc.stderr, said(proc)
    for p in folder.rglob("*.html"):
        assert "SENTINEL-OUTSIDE" not in p.read_text(), p


@pytest.mark.parametrize("where,edit,field", [
    ("job", {"pattern": None}, "pattern"),
    ("job", {"tool": None}, "tool"),
    ("finding", {"bytes": "many"}, "bytes"),
    ("finding", {"stack": "x"}, "stack"),
    ("finding", None, "findings[0]"),
    ("job", {"expected": "x"}, "expected"),
    ("top", {"tools": "x"}, "tools"),
])
def test_a_damaged_field_is_one_line_naming_the_file_the_job_and_the_field(work, cache, whole, tmp_path,
                                                                            where, edit, field):
    folder = tmp_path / "given"
    shutil.copytree(whole, folder)
    data = json.loads((folder / "results.json").read_text())
    index, job = next((i, j) for i, j in enumerate(data["jobs"]) if j["findings"])
    name = f"{job['pattern']}::{job['variant']}[{job['tool']}]"
    if where == "top":
        data.update(edit)
    elif where == "job":
        job.update(edit)
    elif edit is None:
        job["findings"][0] = None
    else:
        job["findings"][0].update(edit)
    (folder / "results.json").write_text(json.dumps(data))
    proc = lh("report", "given", "--out", "report", cwd=tmp_path, cache=cache)
    words = [folder / "results.json", field] + ([f"job {index + 1}"] if where != "top" else [])
    if where != "top" and field not in ("pattern", "tool"):
        words.append(name)
    one_line_error(proc, *words)


# --- the command line's limits --------------------------------------------------------------------

@pytest.mark.parametrize("shard", ["1/99999999999999999999999", "1/10000000000", "", "1/0", "4/3", "x", "１/２"])
def test_a_bad_shard_is_one_line(work, cache, shard):
    proc = lh("run", *SUBSET, "--shard", shard, "--out", "never", "--quiet", cwd=work, cache=cache, timeout=60)
    one_line_error(proc, "--shard")
    assert not (work / "never" / "results.json").exists()


@pytest.mark.parametrize("value", ["-1", "abc", "0", "nan", "inf", "1e400"])
def test_a_bad_cache_max_is_one_line(work, cache, value):
    proc = lh("cache", "info", cwd=work, cache=cache, env={"LEAKHARNESS_CACHE_MAX": value}, timeout=60)
    one_line_error(proc, "LEAKHARNESS_CACHE_MAX")
    proc = lh("run", *SUBSET, "--out", "never", "--quiet", cwd=work, cache=cache,
              env={"LEAKHARNESS_CACHE_MAX": value}, timeout=60)
    one_line_error(proc, "LEAKHARNESS_CACHE_MAX")


def test_a_timeout_of_1e300_is_refused(work, cache, tmp_path):
    proc = lh("run", "--pattern", "i2d_alloc", "--tool", "asan", "--timeout", "1e300", "--out", "never",
              cwd=work, cache=cache, timeout=60)
    one_line_error(proc, "--timeout")
    fixtures = tmp_path / "fixtures"
    shutil.copytree(ROOT / "c_fixtures" / "_common", fixtures / "_common")
    shutil.copytree(ROOT / "c_fixtures" / "i2d_alloc", fixtures / "i2d_alloc")
    toml = fixtures / "i2d_alloc" / "pattern.toml"
    toml.write_text("timeout = 1e300\n" + toml.read_text())
    proc = lh("run", "--fixtures", fixtures, "--tool", "asan", "--out", "never", cwd=tmp_path, cache=cache, timeout=60)
    one_line_error(proc, "timeout", "pattern.toml")
