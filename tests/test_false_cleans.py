"""Issue 16, five false cleans: a program leakharness reports as checked and clean (exit 0, or a
cached "ok") although it was not fully checked, or although what it depends on changed.

1. helgrind's result-cache key holds neither ~/.valgrindrc, ./.valgrindrc nor valgrind itself.
2. A file the program opens by a fixed name (no argument names it) is not in the key.
3. memcheck and helgrind on a statically linked program: valgrind cannot replace its malloc or
   its pthread functions, so it sees no heap block and no lock.
4. A script whose child the checker cannot follow: a static child (no LD_PRELOAD interposer, no
   malloc replacement) or a setuid child (valgrind refuses to run it).
5. A program that ignores SIGXFSZ and writes past the output cap: its output is cut silently.

Each test states the correct behaviour, so it fails until its item is fixed.  They run the real
CLI as a user does, like tests/test_trust.py: `python -m harness` in a subprocess, with this
checkout first on PYTHONPATH, from the test's own working folder (tmp_path), with a private
cache (LEAKHARNESS_CACHE) and a private, empty HOME (no developer's ~/.valgrindrc) per test.
Programs are in tests/programs/false_clean/; binaries a test builds get unique names (pytest -n 2).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from realrun import compile_c

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "tests" / "programs" / "false_clean"
# What a developer's shell may hold that would change what a checker does: every test starts
# without it and sets what it is about.
HERMETIC = ("ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "VALGRIND_OPTS", "VALGRIND_LIB",
            "LD_LIBRARY_PATH", "LD_PRELOAD", "LEAKHARNESS_CACHE", "LEAKHARNESS_CACHE_MAX", "LEAKHARNESS_OUTPUT_CAP",
            "XDG_CACHE_HOME", "PYTEST_ADDOPTS")
SECRET = "00112233445566778899aabbccddeeff"

needs_valgrind = pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")


# --- running the tool the way a user does ---------------------------------------------------

def _env(tmp_path: Path, extra: dict | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in HERMETIC and not k.startswith("PYTEST_XDIST")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env["LEAKHARNESS_CACHE"] = str(tmp_path / "cache")  # this test's own cache
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env["HOME"] = str(home)  # no ~/.valgrindrc but the test's own
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def lh(tmp_path: Path, *args, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """`leakharness ARGS...` run from tmp_path; stdout and stderr as text."""
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=tmp_path,
                          env=_env(tmp_path, env), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, start_new_session=True)


def said(proc) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def job_of(out: Path, tool: str) -> dict:
    jobs = [j for j in json.loads((out / "results.json").read_text())["jobs"] if j["tool"] == tool]
    assert len(jobs) == 1, jobs
    return jobs[0]


def run_project(tmp_path: Path, root: Path, n: int, env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    """`leakharness run --out outN` in a project's root (the project elsewhere than tmp_path,
    whose files the test changes between runs); the run and its one asan job."""
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--out", f"out{n}", "--no-html"], cwd=root,
                          env=_env(tmp_path, env), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=240, start_new_session=True)
    return proc, job_of(root / f"out{n}", "asan")


def brief(job: dict) -> str:
    """What a failed assertion shows of a job: status, cached, message, findings in short."""
    found = [(f["category"], f.get("leak_kind"), f.get("bytes"), [fr.get("function") for fr in f["stack"]][:4])
             for f in job["findings"]]
    return (f"status={job['status']} cached={job['cached']} exit_code={job['exit_code']} "
            f"message={job['message']!r} findings={found}")


def leaks(job: dict, nbytes: int | None, function: str) -> list[dict]:
    """The job's definite leaks (of nbytes, when given) with function in their stack."""
    return [f for f in job["findings"]
            if f["category"] == "leak" and f["leak_kind"] == "definite" and (nbytes is None or f["bytes"] == nbytes)
            and any(fr.get("function") == function for fr in f["stack"])]


def races(job: dict) -> list[dict]:
    """The job's data races in bump() (race.c)."""
    return [f for f in job["findings"]
            if f["category"] == "data-race" and any(fr.get("function") == "bump" for fr in f["stack"])]


def assert_incomplete(job: dict, *any_of: str) -> None:
    """Status incomplete, with a one-line message holding at least one of any_of (any case)."""
    assert job["status"] == "incomplete", brief(job)
    message = job["message"] or ""
    assert message and "\n" not in message, brief(job)
    if any_of:
        assert any(word.lower() in message.lower() for word in any_of), brief(job)


def unique(stem: str) -> str:
    return f"lh_fc_{stem}_{uuid.uuid4().hex[:10]}"


def copy_program(tmp_path: Path, name: str) -> Path:
    shutil.copy(PROGRAMS / name, tmp_path / name)
    return tmp_path / name


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def static_leak(tmp_path) -> Path:
    """leak6000.c linked statically (gcc -static -g -O0), under a unique name without 'static' in
    it (so that a message naming the binary does not pass for one saying it is static)."""
    binary = tmp_path / unique("linked_in_malloc")
    proc = subprocess.run(["gcc", "-static", "-g", "-O0", str(PROGRAMS / "leak6000.c"), "-o", str(binary)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          start_new_session=True)
    if proc.returncode != 0:
        pytest.skip(f"no static libc (libc6-dev's libc.a): gcc -static failed: {proc.stderr.strip()[-300:]}")
    return binary


# --- item 1: helgrind's cache key -------------------------------------------------------------

def race_suppressions(tmp_path: Path, target: Path) -> Path:
    """Suppressions of race.c's data race, written by valgrind itself (helgrind, --gen-suppressions=all,
    on race.c built as `check --build` builds it for helgrind: -g -O0)."""
    binary = compile_c(PROGRAMS / "race.c", tmp_path / unique("race_for_supp"), "-O0")
    proc = subprocess.run(["valgrind", "--tool=helgrind", "--gen-suppressions=all", str(binary)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          start_new_session=True)
    blocks = re.findall(r"^\{\n.*?^\}$", proc.stderr, re.M | re.S)
    blocks = [b.replace("<insert_a_suppression_name_here>", f"race_{i}") for i, b in enumerate(blocks)]
    assert blocks and all("Helgrind:Race" in b for b in blocks), proc.stderr
    target.write_text("\n".join(blocks) + "\n")
    return target


def check_race(tmp_path: Path, env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    proc = lh(tmp_path, "check", "--build", "race.c", "--tool", "helgrind", "--out", "out", "--no-html", "--quiet",
              env=env)
    return proc, job_of(tmp_path / "out", "helgrind")


def assert_race_reported_afresh(proc, job) -> None:
    """The correct answer once the suppression is gone: run again, the race found, exit 1."""
    assert job["cached"] is False, f"served from the cache: {brief(job)}\n{said(proc)}"
    assert proc.returncode == 1, said(proc)
    assert job["status"] == "ok" and races(job), brief(job)


def assert_hidden(proc, job, cached: bool) -> None:
    assert proc.returncode == 0, said(proc)
    assert job["status"] == "ok" and job["findings"] == [] and job["cached"] is cached, brief(job)


@needs_valgrind
@pytest.mark.parametrize("where", ["home-valgrindrc", "cwd-valgrindrc", "VALGRIND_OPTS"])
def test_helgrind_suppressions_removed_are_not_served_from_the_cache(tmp_path, where):
    """issue 16 item 1: a helgrind run clean only because ~/.valgrindrc (or ./.valgrindrc, or
    VALGRIND_OPTS) named a suppressions file hiding the race is cached; once that is gone, the next
    run must not replay the clean result: it runs again, reports the race and exits 1."""
    copy_program(tmp_path, "race.c")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env: dict = {}
    if where == "home-valgrindrc":
        supp = race_suppressions(tmp_path, home / "race.supp")
        rc = home / ".valgrindrc"
        rc.write_text(f"--suppressions={supp}\n")
    elif where == "cwd-valgrindrc":
        race_suppressions(tmp_path, tmp_path / "race.supp")
        rc = tmp_path / ".valgrindrc"
        rc.write_text("--suppressions=race.supp\n")  # relative, as a user writes it
    else:
        race_suppressions(tmp_path, tmp_path / "race.supp")
        env = {"VALGRIND_OPTS": "--suppressions=race.supp"}
    proc, job = check_race(tmp_path, env)
    assert_hidden(proc, job, cached=False)  # the suppression hides the race: clean
    proc, job = check_race(tmp_path, env)
    assert_hidden(proc, job, cached=True)  # nothing changed: the cached result
    if where == "VALGRIND_OPTS":
        env = {}
    else:
        rc.unlink()
    proc, job = check_race(tmp_path, env)
    assert_race_reported_afresh(proc, job)


@needs_valgrind
@pytest.mark.parametrize("where", ["home-valgrindrc", "cwd-valgrindrc"])
def test_helgrind_suppressions_file_named_by_a_valgrindrc_edited(tmp_path, where):
    """issue 16 item 1: the rc file stays as it is, but the suppressions file it names no longer
    hides the race (emptied): the cached clean result must not be replayed; the job runs again,
    reports the race and exits 1 (as memcheck already does, test_trust's valgrindrc test)."""
    copy_program(tmp_path, "race.c")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    if where == "home-valgrindrc":
        supp = race_suppressions(tmp_path, home / "race.supp")
        (home / ".valgrindrc").write_text(f"--suppressions={supp}\n")
    else:
        supp = race_suppressions(tmp_path, tmp_path / "race.supp")
        (tmp_path / ".valgrindrc").write_text("--suppressions=race.supp\n")
    proc, job = check_race(tmp_path)
    assert_hidden(proc, job, cached=False)
    proc, job = check_race(tmp_path)
    assert_hidden(proc, job, cached=True)
    supp.write_text("# nothing suppressed any more\n")
    proc, job = check_race(tmp_path)
    assert_race_reported_afresh(proc, job)


def _valgrind_lib() -> Path:
    real = Path(os.path.realpath(shutil.which("valgrind")))
    for lib in (Path("/usr/libexec/valgrind"), real.parent.parent / "libexec" / "valgrind",
                real.parent.parent / "lib" / "valgrind", Path("/usr/lib/x86_64-linux-gnu/valgrind")):
        if (lib / "default.supp").is_file() and list(lib.glob("helgrind-*-linux")):
            return lib
    pytest.skip("valgrind's library folder (default.supp, helgrind-*-linux) not found")


@needs_valgrind
@pytest.mark.parametrize("change", ["valgrind-on-PATH", "VALGRIND_LIB-default.supp"])
def test_helgrind_result_of_another_valgrind_is_not_served_from_the_cache(tmp_path, change):
    """issue 16 item 1: helgrind's key holds neither valgrind's version nor its binaries (memcheck's
    holds both).  The same command line and environment, but valgrind changed under them: the
    `valgrind` on PATH replaced by one that behaves differently (here: one that hides the race),
    or the default.supp of the same VALGRIND_LIB folder replaced (as an upgrade does).  The clean
    result of the old valgrind must not be replayed: the job runs again, reports the race, exit 1."""
    copy_program(tmp_path, "race.c")
    supp = race_suppressions(tmp_path, tmp_path / "race.supp")
    env: dict
    if change == "valgrind-on-PATH":
        real = shutil.which("valgrind")
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        wrapper = script(bin_dir / "valgrind", f'exec {real} --suppressions={supp} "$@"')
        env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"}
    else:
        lib = tmp_path / "vglib"
        lib.mkdir()
        real_lib = _valgrind_lib()
        for item in real_lib.iterdir():
            if item.name != "default.supp":
                (lib / item.name).symlink_to(item)
        default_supp = (real_lib / "default.supp").read_text()
        (lib / "default.supp").write_text(default_supp + "\n" + supp.read_text())
        env = {"VALGRIND_LIB": lib}
    proc, job = check_race(tmp_path, env)
    assert_hidden(proc, job, cached=False)
    proc, job = check_race(tmp_path, env)
    assert_hidden(proc, job, cached=True)
    if change == "valgrind-on-PATH":  # another valgrind at the same path
        script(wrapper, f'exec {shutil.which("valgrind")} "$@"')
    else:  # the same folder, upgraded
        (lib / "default.supp").write_text(default_supp)
    proc, job = check_race(tmp_path, env)
    assert_race_reported_afresh(proc, job)


# --- item 2: a file the program opens by a fixed name ---------------------------------------------

TOOLS_2 = [pytest.param("memcheck", marks=needs_valgrind), "asan"]


def check_sign_reader(tmp_path: Path, tool: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = lh(tmp_path, "check", "--build", "sign_reader.c", "--tool", tool, "--out", "out", "--no-html", "--quiet")
    return proc, job_of(tmp_path / "out", tool)


@pytest.mark.parametrize("tool", TOOLS_2)
def test_file_opened_by_a_fixed_name_appearing_runs_the_job_again(tmp_path, tool):
    """issue 16 item 2: sign_reader.c opens ./sign.txt (named by no argument) and leaks the BIO
    and a block only when it exists.  Clean without the file; once the file is there, the job must
    run again (not cached) and report both leaks, exit 1."""
    copy_program(tmp_path, "sign_reader.c")
    proc, job = check_sign_reader(tmp_path, tool)
    assert proc.returncode == 0, said(proc)
    assert job["status"] == "ok" and job["findings"] == [], brief(job)
    (tmp_path / "sign.txt").write_text("4321\n")
    proc, job = check_sign_reader(tmp_path, tool)
    assert job["cached"] is False, f"served from the cache: {brief(job)}\n{said(proc)}"
    assert proc.returncode == 1, said(proc)
    assert job["status"] == "ok", brief(job)
    assert len(leaks(job, 4321, "lose_block")) == 1, brief(job)
    assert len(leaks(job, None, "BIO_new_file")) == 1, brief(job)  # the BIO never freed


@pytest.mark.parametrize("tool", TOOLS_2)
def test_file_opened_by_a_fixed_name_changing_runs_the_job_again(tmp_path, tool):
    """issue 16 item 2: the leak's size is read from ./sign.txt.  After the file's content changes
    (100 -> 4321), the job must run again (not cached) and report the new size, exit 1."""
    copy_program(tmp_path, "sign_reader.c")
    (tmp_path / "sign.txt").write_text("100\n")
    proc, job = check_sign_reader(tmp_path, tool)
    assert proc.returncode == 1, said(proc)
    assert job["cached"] is False and len(leaks(job, 100, "lose_block")) == 1, brief(job)
    (tmp_path / "sign.txt").write_text("4321\n")
    proc, job = check_sign_reader(tmp_path, tool)
    assert job["cached"] is False, f"served from the cache: {brief(job)}\n{said(proc)}"
    assert proc.returncode == 1, said(proc)
    assert len(leaks(job, 4321, "lose_block")) == 1 and not leaks(job, 100, "lose_block"), brief(job)


# --- item 3: valgrind on a statically linked program ----------------------------------------

@needs_valgrind
def test_memcheck_on_a_static_binary_is_incomplete(tmp_path, static_leak):
    """issue 16 item 3: memcheck cannot replace a static binary's malloc, so the 6000 B leak is
    invisible and only static glibc's uninitialised-value noise is reported.  Correct: the job is
    incomplete with a message saying the program is statically linked; exit 1 (errors) or 3,
    never 0."""
    proc = lh(tmp_path, "check", "--tool", "memcheck", "--out", "out", "--no-html", "--quiet", "--",
              f"./{static_leak.name}")
    job = job_of(tmp_path / "out", "memcheck")
    assert proc.returncode in (1, 3), said(proc)
    assert_incomplete(job, "static")


@needs_valgrind
def test_valgrind_on_a_sanitizer_build_is_incomplete(tmp_path):
    """An ASan build handed to memcheck: ASan's runtime aborts under valgrind before main (exit 1,
    "Shadow memory range interleaves with an existing memory mapping"), and the job said clean.
    The same for a script whose child is one."""
    binary = tmp_path / unique("asan")
    proc = subprocess.run(["gcc", "-fsanitize=address", "-g", str(PROGRAMS / "leak6000.c"), "-o", str(binary)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 0, proc.stderr
    script = tmp_path / "run.sh"
    script.write_text(f"#!/bin/sh\n./{binary.name}\n")
    script.chmod(0o755)
    for tool, argv in (("memcheck", [f"./{binary.name}"]), ("helgrind", ["./run.sh"])):
        proc = lh(tmp_path, "check", "--tool", tool, "--out", tool, "--no-html", "--quiet", "--", *argv)
        assert proc.returncode == 3, said(proc)
        assert_incomplete(job_of(tmp_path / tool, tool), "AddressSanitizer")


@needs_valgrind
def test_memcheck_on_a_static_binary_with_its_noise_suppressed_is_not_clean(tmp_path, static_leak):
    """issue 16 item 3: with a baseline of static glibc's uninitialised-value errors as suppressions
    (`leakharness suppressions`, then `check --suppressions`), nothing is left to report, yet the
    leak was never looked for.  Correct: incomplete, message saying statically linked, exit 3."""
    args = ("check", "--tool", "memcheck", "--no-html", "--quiet")
    first = lh(tmp_path, *args, "--out", "out", "--", f"./{static_leak.name}")
    assert first.returncode in (1, 3), said(first)
    base = lh(tmp_path, "suppressions", "out", "--out", "base.supp")
    assert base.returncode == 0, said(base)
    proc = lh(tmp_path, *args, "--suppressions", "base.supp", "--out", "out2", "--", f"./{static_leak.name}")
    job = job_of(tmp_path / "out2", "memcheck")
    assert proc.returncode == 3, f"{said(proc)}\n{brief(job)}"
    assert_incomplete(job, "static")


@needs_valgrind
def test_helgrind_on_a_static_binary_is_incomplete(tmp_path, static_leak):
    """issue 16 item 3: helgrind cannot intercept a static binary's pthread functions (no lock, no
    thread creation is seen).  Correct: incomplete, message saying statically linked, never exit 0."""
    proc = lh(tmp_path, "check", "--tool", "helgrind", "--out", "out", "--no-html", "--quiet", "--",
              f"./{static_leak.name}")
    job = job_of(tmp_path / "out", "helgrind")
    assert proc.returncode in (1, 3), f"{said(proc)}\n{brief(job)}"
    assert_incomplete(job, "static")


# --- item 4: a script whose child the checker cannot follow ----------------------------------

def test_residue_on_a_script_running_a_static_child_is_incomplete(tmp_path, static_leak):
    """issue 16 item 4a: residue is an LD_PRELOAD interposer; it cannot load into the static child
    the script runs, so the child is not checked at all.  Correct: incomplete (exit 3, never 0),
    the message naming the child or saying it is static."""
    run = script(tmp_path / unique("run_child"), f"./{static_leak.name}")
    proc = lh(tmp_path, "check", "--tool", "residue", "--secret", SECRET, "--out", "out", "--no-html", "--quiet",
              "--", f"./{run.name}")
    job = job_of(tmp_path / "out", "residue")
    assert proc.returncode in (1, 3), f"{said(proc)}\n{brief(job)}"
    assert_incomplete(job, "static", static_leak.name)


@needs_valgrind
def test_memcheck_on_a_script_running_a_static_child_is_not_clean(tmp_path, static_leak):
    """issue 16 item 4a: memcheck follows the script into its static child but sees none of its
    heap; with the child's libc noise in a baseline of suppressions, today's answer is clean.
    Correct: incomplete (exit 3, never 0), the message naming the child or saying it is static."""
    run = script(tmp_path / unique("run_child"), f"./{static_leak.name}")
    args = ("check", "--tool", "memcheck", "--no-html", "--quiet")
    first = lh(tmp_path, *args, "--out", "out", "--", f"./{run.name}")
    assert first.returncode in (1, 3), said(first)
    base = lh(tmp_path, "suppressions", "out", "--out", "base.supp")
    assert base.returncode == 0, said(base)
    proc = lh(tmp_path, *args, "--suppressions", "base.supp", "--out", "out2", "--", f"./{run.name}")
    job = job_of(tmp_path / "out2", "memcheck")
    assert proc.returncode == 3, f"{said(proc)}\n{brief(job)}"
    assert_incomplete(job, "static", static_leak.name)


def setuid_child(tmp_path: Path) -> Path:
    """leak6000.c built dynamically, set-user-ID (valgrind refuses to run such a program)."""
    child = compile_c(PROGRAMS / "leak6000.c", tmp_path / unique("suid_child"), "-O0")
    child.chmod(0o4755)
    assert os.stat(child).st_mode & 0o4000
    return child


@needs_valgrind
def test_memcheck_on_a_script_running_a_setuid_child_is_incomplete(tmp_path):
    """issue 16 item 4b: under --trace-children=yes valgrind refuses to exec a setuid program; the
    child never runs (the shell says "Permission denied", exit 126) and nothing of it is checked.
    Correct: incomplete (exit 3, never 0), the message naming the child."""
    child = setuid_child(tmp_path)
    run = script(tmp_path / unique("run_child"), f"./{child.name}")
    proc = lh(tmp_path, "check", "--tool", "memcheck", "--out", "out", "--no-html", "--quiet", "--", f"./{run.name}")
    job = job_of(tmp_path / "out", "memcheck")
    assert proc.returncode == 3, f"{said(proc)}\n{brief(job)}"
    assert_incomplete(job, child.name)


@needs_valgrind
def test_memcheck_on_a_script_ignoring_its_setuid_childs_failure_is_incomplete(tmp_path):
    """issue 16 item 4b, stricter: the same, but the script goes on after the failed child (`|| true`)
    and exits 0, so no exit code tells.  Correct: incomplete (exit 3, never 0), naming the child."""
    child = setuid_child(tmp_path)
    run = script(tmp_path / unique("run_child"), f"./{child.name} || true")
    proc = lh(tmp_path, "check", "--tool", "memcheck", "--out", "out", "--no-html", "--quiet", "--", f"./{run.name}")
    job = job_of(tmp_path / "out", "memcheck")
    assert proc.returncode == 3, f"{said(proc)}\n{brief(job)}"
    assert_incomplete(job, child.name)


# --- item 5: output past the cap, SIGXFSZ ignored ---------------------------------------------

OUTPUT_CAP = 4 << 20  # LEAKHARNESS_OUTPUT_CAP for this test; the program writes 8 MiB


@pytest.mark.parametrize("tool", [pytest.param("memcheck", marks=needs_valgrind), "asan"])
def test_output_past_the_cap_with_sigxfsz_ignored_is_incomplete(tmp_path, tool):
    """issue 16 item 5: ignore_xfsz.c ignores SIGXFSZ and write errors and writes 8 MiB to stdout.
    With the output cap lowered to 4 MiB (LEAKHARNESS_OUTPUT_CAP, bytes), its writes past the cap
    fail (EFBIG), it exits 0, and stdout.txt stops at the cap: its output was cut, so the job is
    not fully checked.  Correct: stdout.txt no larger than the cap, the job incomplete with a
    message about the output limit (or cap), exit 3, and not cached (a rerun is not cached either).
    (On a leakharness that ignores LEAKHARNESS_OUTPUT_CAP the program writes its 8 MiB, and the
    job is "ok": this fails as it should.)"""
    copy_program(tmp_path, "ignore_xfsz.c")
    env = {"LEAKHARNESS_OUTPUT_CAP": OUTPUT_CAP}
    for attempt in ("first", "rerun"):
        proc = lh(tmp_path, "check", "--build", "ignore_xfsz.c", "--tool", tool, "--out", "out", "--no-html",
                  "--quiet", env=env)
        job = job_of(tmp_path / "out", tool)
        assert proc.returncode == 3, f"{attempt}: {said(proc)}\n{brief(job)}"
        assert job["cached"] is False, f"{attempt}: {brief(job)}"
        assert_incomplete(job, "output limit", "cap")
        (stdout,) = (tmp_path / "out" / "logs").rglob("stdout.txt")
        assert stdout.stat().st_size <= OUTPUT_CAP, f"{stdout}: {stdout.stat().st_size} bytes"


# --- a library the link reads, changed --------------------------------------------------------

def _archive(folder: Path, source: Path) -> None:
    """folder/libdup.a from source, by gcc and ar."""
    for argv in (["gcc", "-g", "-O0", "-c", str(source), "-o", str(folder / "dup.o")],
                 ["ar", "rcs", str(folder / "libdup.a"), str(folder / "dup.o")]):
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                       start_new_session=True)


@pytest.mark.parametrize("link", [["-Llib", "-ldup"], ["lib/libdup.a"]])
def test_a_static_library_rebuilt_with_a_leak_builds_and_runs_again(tmp_path, link):
    """`check --build dup_main.c --ldflags '-Llib -ldup'` (or naming lib/libdup.a): the archive is
    linked into the binary, so a new libdup.a, now leaking, must give a new binary and its leak,
    never the old binary's cached clean result."""
    shutil.copy(PROGRAMS / "linked" / "dup_main.c", tmp_path / "dup_main.c")
    (tmp_path / "lib").mkdir()
    source = tmp_path / "lib" / "dup.c"
    shutil.copy(PROGRAMS / "linked" / "dup.c", source)
    _archive(tmp_path / "lib", source)

    def check(n: int):
        proc = lh(tmp_path, "check", "--build", "dup_main.c", "--ldflags", " ".join(link), "--tool", "asan",
                  "--out", f"out{n}", "--no-html", "--quiet")
        return proc, job_of(tmp_path / f"out{n}", "asan")

    proc, job = check(1)
    assert proc.returncode == 0 and job["status"] == "ok" and not job["findings"], said(proc)
    source.write_text(source.read_text().replace("\tstrcpy(p, s);", "\tstrcpy(p, s);\n\tp = strdup(p);"))
    _archive(tmp_path / "lib", source)
    proc, job = check(2)
    assert job["cached"] is False, f"served from the cache: {brief(job)}\n{said(proc)}"
    assert proc.returncode == 1 and len(leaks(job, 6, "dup_string")) == 1, brief(job)


def test_a_project_build_that_links_an_archive_outside_the_project_builds_again(tmp_path):
    """A monorepo's app folder holds leakharness.toml; its build command links ../lib/libdup.a,
    outside the project root that keys the build.  Rebuilt with a leak, that archive must give a
    new build and the leak, never the old binary's cached clean result; unchanged, the build is
    reused (what the build read from outside is recorded and checked, not guessed)."""
    app, lib = tmp_path / "app", tmp_path / "lib"
    app.mkdir()
    lib.mkdir()
    shutil.copy(PROGRAMS / "linked" / "dup_main.c", app / "dup_main.c")
    source = lib / "dup.c"
    shutil.copy(PROGRAMS / "linked" / "dup.c", source)
    _archive(lib, source)
    counter = tmp_path / "builds.txt"
    (app / "leakharness.toml").write_text(
        'tools = ["asan"]\n[[target]]\nname = "dup"\nprogram = "{builddir}/dup"\n'
        f"build = \"sh -c 'echo built >> {counter}; exec gcc {{cflags}} -o {{builddir}}/dup dup_main.c "
        f"-L../lib -ldup {{ldflags}}'\"\n")

    def run(n: int):
        return run_project(tmp_path, app, n)

    proc, job = run(1)
    assert proc.returncode == 0 and job["status"] == "ok" and not job["findings"], said(proc)
    proc, job = run(2)
    assert job["cached"] and counter.read_text() == "built\n", said(proc)  # unchanged: neither built nor run
    source.write_text(source.read_text().replace("\tstrcpy(p, s);", "\tstrcpy(p, s);\n\tp = strdup(p);"))
    _archive(lib, source)
    proc, job = run(3)
    assert counter.read_text() == "built\n" * 2, said(proc)
    assert job["cached"] is False, f"served from the cache: {brief(job)}\n{said(proc)}"
    assert proc.returncode == 1 and len(leaks(job, 6, "dup_string")) == 1, brief(job)


SHM_CONFIG = """\
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    char mode[16] = {0};
    FILE *f = fopen(getenv("CONF"), "r");
    if (f) { fgets(mode, sizeof mode, f); fclose(f); }
    char *kept = malloc(100);
    if (strncmp(mode, "leak", 4) != 0) free(kept);
    return 0;
}
"""


def test_a_file_in_dev_shm_the_program_reads_is_an_input(tmp_path):
    """/dev/shm holds ordinary files (a configuration kept in shared memory), yet every path
    under /dev was left out of the recording: the file changed, the cached clean result stayed."""
    conf = Path("/dev/shm") / f"lh-test-{uuid.uuid4().hex[:12]}"
    if not conf.parent.is_dir():
        pytest.skip("no /dev/shm")
    (tmp_path / "conf.c").write_text(SHM_CONFIG)
    try:
        conf.write_text("clean\n")
        args = ("check", "--build", "conf.c", "--tool", "asan", "--no-html", "--quiet")
        proc = lh(tmp_path, *args, "--out", "out1", env={"CONF": str(conf)})
        assert proc.returncode == 0, said(proc)
        conf.write_text("leak\n")
        proc = lh(tmp_path, *args, "--out", "out2", env={"CONF": str(conf)})
        job = job_of(tmp_path / "out2", "asan")
        assert job["cached"] is False and proc.returncode == 1 and len(leaks(job, 100, "main")) == 1, brief(job)
    finally:
        conf.unlink(missing_ok=True)


OPENAT2 = """\
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    struct open_how how = { .flags = O_RDONLY, .resolve = RESOLVE_BENEATH };
    char mode[8] = {0};
    int fd = (int)syscall(SYS_openat2, AT_FDCWD, "mode.conf", &how, sizeof how);
    if (fd >= 0) { if (read(fd, mode, sizeof mode - 1) < 0) mode[0] = 0; close(fd); }
    char *kept = malloc(32);
    if (strncmp(mode, "leak", 4) != 0) free(kept);
    return 0;
}
"""


def test_a_system_call_valgrind_does_not_implement_is_not_clean(tmp_path):
    """valgrind 3.19 does not implement openat2: under it the call fails with ENOSYS, the
    program reads no configuration and takes the path that frees; natively it leaks.  memcheck
    said clean (and stored it): the program it checked ran otherwise than the real one."""
    (tmp_path / "raw.c").write_text(OPENAT2)
    (tmp_path / "mode.conf").write_text("leak\n")
    proc = lh(tmp_path, "check", "--build", "raw.c", "--tool", "memcheck", "--tool", "asan", "--out", "out",
              "--no-html", "--quiet")
    memcheck, asan = job_of(tmp_path / "out", "memcheck"), job_of(tmp_path / "out", "asan")
    assert len(leaks(asan, 32, "main")) == 1, brief(asan)
    if memcheck["status"] == "ok" and len(leaks(memcheck, 32, "main")) == 1:
        pytest.skip("this valgrind implements openat2")
    assert proc.returncode == 1 and memcheck["status"] == "incomplete", f"{brief(memcheck)}\n{said(proc)}"
    assert "system call 437" in memcheck["message"] and "ENOSYS" in memcheck["message"], memcheck["message"]


MAKE_LIKE = """\
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
static char *regenerate(void) { char *index = malloc(200); memset(index, 0, 200); return index; }
int main(void) {
    struct stat data, stamp;
    if (stat("data.txt", &data) == 0 && stat("index.stamp", &stamp) == 0
        && data.st_mtim.tv_sec > stamp.st_mtim.tv_sec)
        regenerate();  /* the index is lost */
    return 0;
}
"""


def test_a_file_the_program_only_stats_is_keyed_by_its_time(tmp_path):
    """A make-like program stats data.txt and index.stamp and rebuilds its index (leaking it)
    when the data is newer.  A stat'ed file was keyed by type, mode and size: touched, it kept
    the cached clean result."""
    (tmp_path / "stale.c").write_text(MAKE_LIKE)
    data, stamp = tmp_path / "data.txt", tmp_path / "index.stamp"
    data.write_text("rows\n")
    stamp.write_text("")
    os.utime(data, (1_600_000_000, 1_600_000_000))
    os.utime(stamp, (1_700_000_000, 1_700_000_000))
    args = ("check", "--build", "stale.c", "--tool", "asan", "--no-html", "--quiet")
    proc = lh(tmp_path, *args, "--out", "out1")
    assert proc.returncode == 0, said(proc)
    os.utime(data, (1_800_000_000, 1_800_000_000))
    proc = lh(tmp_path, *args, "--out", "out2")
    job = job_of(tmp_path / "out2", "asan")
    assert job["cached"] is False and proc.returncode == 1 and len(leaks(job, 200, "regenerate")) == 1, brief(job)


PLUGIN_HOST = """\
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    void *plugin = dlopen(getenv("PLUGIN"), RTLD_NOW);
    if (!plugin) { fprintf(stderr, "%s\\n", dlerror()); return 2; }
    int (*run)(void) = (int (*)(void))dlsym(plugin, "plugin_run");
    int r = run();
    if (getenv("CLOSE")) dlclose(plugin);  /* else the plugin stays loaded: its frames stay named */
    return r == 'h' ? 0 : 3;
}
"""
PLUGIN = """\
char *helper_make(void);
void helper_drop(char *p);
int plugin_run(void) { char *p = helper_make(); int r = p[0]; helper_drop(p); return r; }
"""
PLUGIN_HELPER = """\
#include <stdlib.h>
#include <string.h>
char *helper_make(void) { char *p = malloc(64); strcpy(p, "helper"); return p; }
void helper_drop(char *p) {
#ifndef HELPER_LEAKS
    free(p);
#endif
}
"""


@pytest.mark.parametrize("closed", [False, True])
def test_a_library_a_dlopened_plugin_needs_is_an_input(tmp_path, closed):
    """A host dlopens its plugin by path; the plugin needs libhelper.so, which the loader finds
    through the plugin's RUNPATH with opens the recorder cannot see.  Only the plugin was keyed:
    libhelper.so rebuilt to leak kept the cached clean result.  The same when the host dlcloses
    the plugin before it ends (the libraries still loaded at the end were all the recorder saw)."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (tmp_path / "host.c").write_text(PLUGIN_HOST)
    (tmp_path / "plugin.c").write_text(PLUGIN)
    (tmp_path / "helper.c").write_text(PLUGIN_HELPER)

    def cc(*args):
        subprocess.run(["gcc", "-g", "-O0", "-shared", "-fPIC", *args], cwd=tmp_path, check=True,
                       stdin=subprocess.DEVNULL, timeout=120, start_new_session=True)

    cc("helper.c", "-o", "plugins/libhelper.so")
    cc("plugin.c", "-o", "plugins/plugin.so", "-Lplugins", "-lhelper", f"-Wl,-rpath,{plugins}")
    args = ("check", "--build", "host.c", "--ldflags", "-ldl", "--tool", "asan", "--no-html", "--quiet")
    env = {"PLUGIN": str(plugins / "plugin.so"), "CLOSE": "1" if closed else None}
    proc = lh(tmp_path, *args, "--out", "out1", env=env)
    assert proc.returncode == 0, said(proc)
    cc("-DHELPER_LEAKS", "helper.c", "-o", "plugins/libhelper.so")
    proc = lh(tmp_path, *args, "--out", "out2", env=env)
    job = job_of(tmp_path / "out2", "asan")
    # (a closed plugin's frames are no longer named at the leak check: only the block is)
    found = [f for f in job["findings"] if f["category"] == "leak" and f["bytes"] == 64] if closed else \
        leaks(job, 64, "helper_make")
    assert job["cached"] is False and proc.returncode == 1 and len(found) == 1, brief(job)


SOCKET_CLIENT = """\
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(void) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, getenv("SOCK"), sizeof addr.sun_path - 1);
    char mode[8] = {0};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0 && read(fd, mode, sizeof mode - 1) < 0)
        mode[0] = 0;
    char *kept = malloc(24);
    if (strncmp(mode, "leak", 4) != 0) free(kept);
    return 0;
}
"""


def test_what_a_program_receives_from_a_socket_is_never_reused(tmp_path):
    """A client asks a local daemon for its mode over a Unix socket: its result depends on
    another process, like a FIFO's reader, and is never stored.  It was: the daemon's answer
    changed, the cached clean result stayed."""
    import socket
    import threading

    (tmp_path / "client.c").write_text(SOCKET_CLIENT)
    path = tmp_path / "d.sock"
    answer = [b"clean\n"]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.sendall(answer[0])

    # Ended and joined before the test returns: a thread left running in this worker would make
    # the next test that forks (test_forked) refuse to.
    server_thread = threading.Thread(target=serve, daemon=True)
    server_thread.start()
    try:
        args = ("check", "--build", "client.c", "--tool", "asan", "--no-html", "--quiet")
        proc = lh(tmp_path, *args, "--out", "out1", env={"SOCK": str(path)})
        assert proc.returncode == 0 and "not cached" in proc.stdout and "socket" in proc.stdout, said(proc)
        answer[0] = b"leak\n"
        proc = lh(tmp_path, *args, "--out", "out2", env={"SOCK": str(path)})
        job = job_of(tmp_path / "out2", "asan")
        assert job["cached"] is False and proc.returncode == 1 and len(leaks(job, 24, "main")) == 1, brief(job)
    finally:
        stop.set()
        server_thread.join(10)
        server.close()
    assert not server_thread.is_alive()


REOPENED = """\
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    char mode[16] = {0}, link[64];
    int pinned = open("mode.conf", O_PATH | O_CLOEXEC);  /* pinned, then reopened: no second lookup */
    if (pinned < 0) return 2;
    snprintf(link, sizeof link, "/proc/self/fd/%d", pinned);
    int fd = open(link, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) { if (read(fd, mode, sizeof mode - 1) < 0) mode[0] = 0; close(fd); }
    char *kept = malloc(40);
    if (strncmp(mode, "leak", 4) != 0) free(kept);
    return 0;
}
"""


THROUGH_PROC = """\
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    char mode[16] = {0}, path[128];
    int dir = NEED_DIR ? open(".", O_RDONLY | O_DIRECTORY) : -1;  /* only where the path names it */
    (void)dir;
    snprintf(path, sizeof path, FORMAT);  /* the working folder, named through /proc or /dev/fd */
    FILE *f = fopen(path, "r");
    if (f) { if (!fgets(mode, sizeof mode, f)) mode[0] = 0; fclose(f); }
    char *kept = malloc(40);
    if (strncmp(mode, "leak", 4) != 0) free(kept);
    return 0;
}
"""
PROC_FORMATS = {
    "proc-self-cwd": '"/proc/self/cwd/mode.conf"',
    "proc-self-task-cwd": '"/proc/self/task/%d/cwd/mode.conf", (int)syscall(SYS_gettid)',
    "proc-self-fd-dir": '"/proc/self/fd/%d/mode.conf", dir',
    "dev-fd-dir": '"/dev/fd/%d/mode.conf", dir',
}


@pytest.mark.parametrize("source", [REOPENED, *(THROUGH_PROC.replace("FORMAT", f).replace("NEED_DIR", str(int("dir" in f)))
                                                 for f in PROC_FORMATS.values())],
                         ids=["proc-self-fd", *PROC_FORMATS])
def test_a_file_reopened_through_proc_self_fd_is_an_input(tmp_path, source):
    """systemd's O_PATH idiom: the file is opened with O_PATH (a probe: type, size), then read
    through /proc/self/fd/N, which the recorder left out with the rest of /proc.  Rewritten to
    the same size, the file kept the cached clean result.  The same for a file read through
    /proc/self/cwd/, a thread's /proc/self/task/TID/cwd/, or a folder's descriptor
    (/proc/self/fd/N/x, /dev/fd/N/x)."""
    (tmp_path / "reopen.c").write_text(source)
    conf = tmp_path / "mode.conf"
    conf.write_text("clean\n")
    os.utime(conf, (1_700_000_000, 1_700_000_000))
    args = ("check", "--build", "reopen.c", "--tool", "asan", "--no-html", "--quiet")
    proc = lh(tmp_path, *args, "--out", "out1")
    assert proc.returncode == 0, said(proc)
    conf.write_text("leak!\n")
    os.utime(conf, (1_700_000_000, 1_700_000_000))  # the same size and time: only the content tells
    proc = lh(tmp_path, *args, "--out", "out2")
    job = job_of(tmp_path / "out2", "asan")
    assert job["cached"] is False and proc.returncode == 1 and len(leaks(job, 40, "main")) == 1, brief(job)


EMBEDDED_SUPPRESSION = """\
#include <stdlib.h>
#include <string.h>
const char *__lsan_default_suppressions(void) { return "leak:main\\n"; }
int main(void) {
    char *lost = malloc(55);
    strcpy(lost, "lost");
    return 0;
}
"""


@pytest.mark.parametrize("env", [{}, {"LSAN_OPTIONS": "print_suppressions=0"}], ids=["default", "print_suppressions=0"])
def test_leaks_the_programs_own_lsan_suppressions_hide_are_said(tmp_path, env):
    """A program (or a library in it) that embeds LeakSanitizer suppressions: the leak is found
    and suppressed.  The job is clean, but says so: its log was taken for exit statistics alone,
    and the note went missing.  A user's print_suppressions=0 made it silent again."""
    (tmp_path / "supp.c").write_text(EMBEDDED_SUPPRESSION)
    proc = lh(tmp_path, "check", "--build", "supp.c", "--tool", "asan", "--out", "out", "--no-html", "--quiet",
              env=env)
    job = job_of(tmp_path / "out", "asan")
    assert proc.returncode == 0 and job["status"] == "ok", said(proc)
    assert any("only leaks that suppressions cover" in p for p in job["problems"]), job["problems"]


FORKED_WORKER = """\
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static void handle_request(void) { char *req = malloc(256); strcpy(req, "request"); }
int main(int argc, char **argv) {
    pid_t pid = fork();
    if (pid == 0) {
        handle_request();
        if (argv[1][0] == 'e') exit(0);
        if (argv[1][0] == '_') _exit(0);
        pause();  /* "k": the parent stops it */
    }
    if (argv[1][0] == 'k') { usleep(200000); kill(pid, SIGTERM); }
    int status;
    waitpid(pid, &status, 0);
    return 0;
}
"""


@pytest.mark.parametrize("how", ["_exit", "killed"])
def test_a_forked_child_whose_leak_check_never_ran_is_not_clean_under_asan(tmp_path, how):
    """A pre-fork worker: the child handles a request, loses 256 B and leaves by _exit (the
    usual way after fork), or is stopped by its parent's SIGTERM.  LeakSanitizer checks at
    exit() only, so ASan says nothing of the child: that was "clean", exit 0.  It is incomplete,
    naming the child; memcheck sees the leak; a child leaving by exit() shows it under ASan."""
    (tmp_path / "worker.c").write_text(FORKED_WORKER)
    proc = lh(tmp_path, "check", "--build", "worker.c", "--tool", "asan", "--tool", "memcheck", "--out", "out",
              "--no-html", "--quiet", "--", how[0])
    asan, memcheck = job_of(tmp_path / "out", "asan"), job_of(tmp_path / "out", "memcheck")
    assert proc.returncode == 1 and asan["status"] == "incomplete", f"{brief(asan)}\n{said(proc)}"
    assert "forked child" in asan["message"] and "were not checked" in asan["message"], asan["message"]
    assert len(leaks(memcheck, 256, "handle_request")) == 1, brief(memcheck)
    proc = lh(tmp_path, "check", "--build", "worker.c", "--tool", "asan", "--out", "out2", "--no-html", "--quiet",
              "--", "exit")
    asan = job_of(tmp_path / "out2", "asan")
    assert proc.returncode == 1 and len(leaks(asan, 256, "handle_request")) == 1, brief(asan)


RUNNER = """\
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int status = 0;
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[1], argv + 1);
        _exit(127);
    }
    waitpid(pid, &status, 0);
    return 0;
}
"""


def test_a_child_not_built_with_the_sanitizer_is_not_clean(tmp_path):
    """A program that runs a helper of the user's built without -fsanitize=address: ASan saw
    nothing of the helper (its 6000 B leak), and the job was clean and cached.  It is incomplete,
    naming the helper; a program of the distribution it runs (/bin/true) is not the program's."""
    (tmp_path / "runner.c").write_text(RUNNER)
    helper = compile_c(PROGRAMS / "leak6000.c", tmp_path / unique("helper"))
    proc = lh(tmp_path, "check", "--build", "runner.c", "--tool", "asan", "--out", "out", "--no-html", "--quiet",
              "--", f"./{helper.name}")
    job = job_of(tmp_path / "out", "asan")
    assert proc.returncode == 3, f"{brief(job)}\n{said(proc)}"
    assert_incomplete(job, f"ran {helper.name}, which is not built with -fsanitize=address")
    proc = lh(tmp_path, "check", "--build", "runner.c", "--tool", "asan", "--out", "out2", "--no-html", "--quiet",
              "--", "/bin/true")
    assert proc.returncode == 0 and job_of(tmp_path / "out2", "asan")["status"] == "ok", said(proc)


SAVED_MID_BUILD_APP = """\
#include <stdlib.h>
#include <string.h>
#include "state.h"
int main(void) {
    char *state = malloc(96);
    memset(state, 1, 96);
    if (FREE_STATE)
        free(state);
    return 0;
}
"""
# A compiler whose first compile is met by an editor saving the header (the fix), as cc1 reads it.
SAVING_CC = """\
#!/bin/sh
case " $* " in
*" -c "*|*" -o "*) case " $* " in *" -M"*) ;; *) [ -e saved ] || { echo '#define FREE_STATE 1' > state.h; : > saved; } ;; esac ;;
esac
exec gcc "$@"
"""


def test_a_header_saved_while_it_is_compiled_is_not_cached_under_its_old_text(tmp_path):
    """The build key hashed state.h (leaky), then the compiler read it saved fixed: the clean
    binary was stored under the leaky text's key, and once the header was leaky again (a checkout,
    an undo) the run reused it: clean (cached), a false clean.  Now a build whose inputs changed
    while it compiled is made again under their new key."""
    (tmp_path / "app.c").write_text(SAVED_MID_BUILD_APP)
    (tmp_path / "state.h").write_text("#define FREE_STATE 0\n")
    (tmp_path / "saving-cc").write_text(SAVING_CC)
    (tmp_path / "saving-cc").chmod(0o755)
    args = ("check", "--build", "app.c", "--cc", "./saving-cc", "--tool", "asan", "--no-html", "--quiet")
    proc = lh(tmp_path, *args, "--out", "out")
    assert proc.returncode == 0 and (tmp_path / "saved").exists(), said(proc)  # built from the saved fix
    (tmp_path / "state.h").write_text("#define FREE_STATE 0\n")  # leaky again
    proc = lh(tmp_path, *args, "--out", "out2")
    assert proc.returncode == 1 and len(leaks(job_of(tmp_path / "out2", "asan"), 96, "main")) == 1, said(proc)


KCONFIG_MAKEFILE = """\
-include ../.config
cache := $(if $(filter y,$(CONFIG_CACHE)),-DCONFIG_CACHE=1,)$(if $(WITH_CACHE), -DCONFIG_CACHE=1,)
$(OUT)/app: app.c
\techo built >> $(COUNTER)
\t$(CC) $(CFLAGS) $(cache) -o $@ app.c $(LDFLAGS)
"""
KCONFIG_APP = """\
#include <stdlib.h>
#include <string.h>
char *make_entry(void) { char *entry = malloc(48); memset(entry, 1, 48); return entry; }
int main(void) {
    char *entry = make_entry();
#ifndef CONFIG_CACHE
    free(entry);
#endif
    return 0;
}
"""


def test_a_project_build_changed_by_a_hidden_config_or_the_environment_builds_again(tmp_path):
    """A Kconfig-style project: src/Makefile includes ../.config, which the tree's hash leaves
    out (hidden), and reads $(WITH_CACHE) from the environment; either one turns on the code
    that loses the entry.  Each change must give a new build and the leak: both once kept the
    old binary's clean result, --fresh or not.  Unchanged, the build is reused."""
    root = tmp_path / "app"
    (root / "src").mkdir(parents=True)
    (root / "src" / "Makefile").write_text(KCONFIG_MAKEFILE)
    (root / "src" / "app.c").write_text(KCONFIG_APP)
    config, counter = root / ".config", tmp_path / "builds.txt"
    config.write_text("CONFIG_CACHE=n\n")
    (root / "leakharness.toml").write_text(
        'tools = ["asan"]\n[[target]]\nname = "app"\nprogram = "{builddir}/app"\n'
        f"build = \"make -s -C src CC={{cc}} CFLAGS='{{cflags}}' LDFLAGS='{{ldflags}}' OUT={{builddir}} "
        f"COUNTER={counter}\"\n")

    def run(n: int, env: dict | None = None):
        return run_project(tmp_path, root, n, env)

    proc, job = run(1)
    assert proc.returncode == 0 and job["status"] == "ok" and not job["findings"], said(proc)
    proc, job = run(2)
    assert job["cached"] and counter.read_text() == "built\n", said(proc)  # unchanged: neither built nor run
    proc, job = run(3, {"WITH_CACHE": "1"})
    assert counter.read_text() == "built\n" * 2, said(proc)
    assert proc.returncode == 1 and len(leaks(job, 48, "make_entry")) == 1, brief(job)
    config.write_text("CONFIG_CACHE=y\n")
    proc, job = run(4)
    assert counter.read_text() == "built\n" * 3, said(proc)
    assert proc.returncode == 1 and len(leaks(job, 48, "make_entry")) == 1, brief(job)


# A project build that gives the user time to save a file while it runs (the test does).
SAVED_MID_BUILD_MAKEFILE = """\
$(OUT)/app: app.c
\t$(WAIT)
\t$(CC) $(CFLAGS) -o $@ app.c $(LDFLAGS)
"""


def test_a_project_saved_while_it_builds_is_not_cached_under_its_old_files(tmp_path):
    """The project's key was taken from the leaky files, then the fix was saved as make ran: the
    fixed build was marked done under the leaky files' key, and reused once they were leaky again
    (a checkout, an undo): clean, a false clean.  The build is now made again under the new key."""
    root = tmp_path / "app"
    root.mkdir()
    (root / "Makefile").write_text(SAVED_MID_BUILD_MAKEFILE)
    (root / "app.c").write_text(SAVED_MID_BUILD_APP)
    (root / "state.h").write_text("#define FREE_STATE 0\n")
    marker = unique("wait")
    (root / "leakharness.toml").write_text(
        'tools = ["asan"]\n[[target]]\nname = "app"\nprogram = "{builddir}/app"\n'
        f"build = \"make -s CC={{cc}} CFLAGS='{{cflags}}' LDFLAGS='{{ldflags}}' OUT={{builddir}} "
        f"WAIT='sh -c \\\"[ -e {marker} ] || sleep 1.5\\\" {marker}'\"\n")
    run = subprocess.Popen([sys.executable, "-m", "harness", "run", "--out", "out1", "--no-html"], cwd=root,
                           env=_env(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for _ in range(600):  # make waits in its sleep: the user saves the fix now
            if subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        (root / "state.h").write_text("#define FREE_STATE 1\n")
        out, _ = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, 9)
    assert run.returncode == 0 and not job_of(root / "out1", "asan")["findings"], out
    (root / "state.h").write_text("#define FREE_STATE 0\n")  # leaky again
    proc, job = run_project(tmp_path, root, 2)
    assert proc.returncode == 1 and len(leaks(job, 96, "main")) == 1, brief(job)


def test_a_system_header_or_a_default_folders_archive_changed_builds_again(tmp_path):
    """What `check --build` compiles in from where the compiler looks of its own accord: a
    header of an -isystem folder (as /usr/local/include after a `make install`: `cc -MM` left
    such headers out of the key), and an archive -ldup finds through LIBRARY_PATH, no -L given
    (as /usr/local/lib).  Each changed to leak must give a new binary and the leak."""
    inc, lib = tmp_path / "inc", tmp_path / "lib"
    inc.mkdir()
    lib.mkdir()
    header = inc / "dup_inline.h"
    shutil.copy(PROGRAMS / "linked" / "dup_inline.h", header)
    shutil.copy(PROGRAMS / "linked" / "inline_main.c", tmp_path / "inline_main.c")
    shutil.copy(PROGRAMS / "linked" / "dup_main.c", tmp_path / "dup_main.c")
    source = lib / "dup.c"
    shutil.copy(PROGRAMS / "linked" / "dup.c", source)
    _archive(lib, source)
    env = {"LIBRARY_PATH": str(lib)}

    def check(n: int, *how):
        proc = lh(tmp_path, "check", "--build", *how, "--tool", "asan", "--out", f"out{n}", "--no-html", "--quiet",
                  env=env)
        return proc, job_of(tmp_path / f"out{n}", "asan")

    for n, how, function in ((1, ("inline_main.c", "--cflags", "-isystem inc"), "dup_inline"),
                             (3, ("dup_main.c", "--ldflags", "-ldup"), "dup_string")):
        proc, job = check(n, *how)
        assert proc.returncode == 0 and job["status"] == "ok" and not job["findings"], said(proc)
        changed = header if function == "dup_inline" else source
        changed.write_text(changed.read_text().replace("\tstrcpy(p, s);", "\tstrcpy(p, s);\n\tp = strdup(p);"))
        if changed is source:
            _archive(lib, source)
        proc, job = check(n + 1, *how)
        assert job["cached"] is False, f"served from the cache: {brief(job)}\n{said(proc)}"
        assert proc.returncode == 1 and len(leaks(job, 6, function)) == 1, brief(job)


LEAKY_APP = "#include <stdlib.h>\n#include <string.h>\nint main(void) {\n    char *p = malloc(96);\n    memset(p, 1, 96);\n    return p[0] == 2;\n}\n"


def test_a_projects_cached_program_replaced_is_built_again(tmp_path):
    """A project build in the cache whose program was replaced (here by a clean ASan build; a
    copy over it, a disk that cut it short, a `make clean` run there) was reused as it was, and
    the replacement checked: clean.  The build is made again, and the leak found."""
    root = tmp_path / "app"
    root.mkdir()
    (root / "app.c").write_text(LEAKY_APP)
    (root / "Makefile").write_text("$(OUT)/app: app.c\n\t$(CC) $(CFLAGS) -o $@ app.c $(LDFLAGS)\n")
    (root / "leakharness.toml").write_text(
        'tools = ["asan"]\n[[target]]\nname = "app"\nprogram = "{builddir}/app"\n'
        "build = \"make -s CC={cc} CFLAGS='{cflags}' LDFLAGS='{ldflags}' OUT={builddir}\"\n")
    proc, job = run_project(tmp_path, root, 1)
    assert proc.returncode == 1 and len(leaks(job, 96, "main")) == 1, brief(job)
    (program,) = (tmp_path / "cache" / "builds").glob("*/*/b/app")
    (tmp_path / "clean.c").write_text("int main(void) { return 0; }\n")
    shutil.copy(compile_c(tmp_path / "clean.c", tmp_path / "clean", "-fsanitize=address"), program)
    proc, job = run_project(tmp_path, root, 2)
    assert proc.returncode == 1 and len(leaks(job, 96, "main")) == 1, brief(job)


# A usual Makefile: its own CFLAGS (ours from the environment replaced), our LDFLAGS kept, and
# compile and link as two steps: linked with -fsanitize=address, compiled without it.
OWN_CFLAGS_MAKEFILE = """\
CFLAGS = -g -O0 -Wall
$(OUT)/app: $(OUT)/app.o
\t$(CC) -o $@ $< $(LDFLAGS)
$(OUT)/app.o: app.c
\t$(CC) $(CFLAGS) -c -o $@ $<
"""
OVERFLOW_APP = ("#include <stdlib.h>\n#include <string.h>\nint main(int argc, char **argv) {\n"
                "    char *p = malloc(16);\n    memset(p, 'a', 16);\n    volatile char c = p[16];\n"
                "    if (argc > 1) return c;  /* a leak as well: p never freed */\n"
                "    free(p);\n    return 0;\n}\n")


@pytest.mark.parametrize("leaking", [False, True], ids=["overflow", "overflow-and-leak"])
def test_a_program_linked_with_asan_but_not_compiled_with_it_is_not_clean(tmp_path, leaking):
    """A project whose Makefile sets its own CFLAGS and links with ours: the binary holds ASan's
    runtime, none of its code is instrumented, and its heap overflow went unseen: clean, exit 0.
    It is incomplete, saying why; a leak the runtime does see still fails it, said to be not all."""
    root = tmp_path / "app"
    root.mkdir()
    (root / "app.c").write_text(OVERFLOW_APP)
    (root / "Makefile").write_text(OWN_CFLAGS_MAKEFILE)
    (root / "leakharness.toml").write_text(
        'tools = ["asan"]\n[[target]]\nname = "app"\nprogram = "{builddir}/app"\nbuild = "make -s OUT={builddir}"\n'
        + ('args = ["leak"]\n' if leaking else ""))
    proc, job = run_project(tmp_path, root, 1)
    why = "is linked with -fsanitize=address but none of its code is compiled with it"
    if leaking:
        assert proc.returncode == 1 and len(leaks(job, 16, "main")) == 1, brief(job)
        assert any(why in p for p in job["problems"]), brief(job)
    else:
        assert proc.returncode == 3 and job["status"] == "incomplete" and why in job["message"], brief(job)


MODE_APP = ("#include <stdlib.h>\n#include <string.h>\nint main(void) {\n    const char *m = getenv(\"MODE\");\n"
            "    char *p = malloc(48);\n    memset(p, 1, 48);\n    if (!m || strcmp(m, \"leak:more\") != 0)\n"
            "        free(p);\n    return 0;\n}\n")


def cmake_project(root: Path, properties: str, tests: str = "") -> Path:
    """A CMake project whose one test, modes, leaks 48 B when it runs with MODE=leak:more."""
    root.mkdir()
    (root / "app.c").write_text(MODE_APP)
    (root / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.22)\nproject(m C)\nenable_testing()\nadd_executable(app app.c)\n"
        f"add_test(NAME modes COMMAND app)\nset_tests_properties(modes PROPERTIES {properties})\n")
    (root / "leakharness.toml").write_text(f'tools = ["asan"]\n[[ctest]]\nsource_dir = "."\n{tests}')
    return root


def test_ctest_environment_modification_is_run_as_ctest_runs_it(tmp_path):
    """A CTest test whose ENVIRONMENT_MODIFICATION makes it take its leaky path: leakharness read
    ENVIRONMENT alone, ran it without, and said clean.  It applies them in order, as ctest does; an
    entry it cannot follow (unset) makes the job incomplete, never clean."""
    root = cmake_project(tmp_path / "app", 'ENVIRONMENT "MODE=leak" ENVIRONMENT_MODIFICATION "MODE=string_append::more"')
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--out", "out", "--no-html"], cwd=root,
                          env=_env(tmp_path), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    job = job_of(root / "out", "asan")
    assert proc.returncode == 1 and len(leaks(job, 48, "main")) == 1, brief(job)
    root = cmake_project(tmp_path / "unset", 'ENVIRONMENT "MODE=leak:more" ENVIRONMENT_MODIFICATION "MODE=unset:"')
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--out", "out", "--no-html"], cwd=root,
                          env=_env(tmp_path), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    job = job_of(root / "out", "asan")
    assert proc.returncode == 3 and job["status"] == "incomplete" and "MODE=unset" in job["message"], brief(job)
    # The [[ctest]] table's env is the environment ctest runs the test in: the modification
    # appends to it (it was applied to leakharness's own, and the table's MODE then lost).
    root = cmake_project(tmp_path / "table", 'ENVIRONMENT_MODIFICATION "MODE=string_append::more"',
                         tests='env = { MODE = "leak" }\n')
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--out", "out", "--no-html"], cwd=root,
                          env=_env(tmp_path), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    job = job_of(root / "out", "asan")
    assert proc.returncode == 1 and len(leaks(job, 48, "main")) == 1, brief(job)


def test_a_ctest_test_named_but_not_listed_is_an_error_not_a_pass(tmp_path):
    """`tests = ["mdoes"]` (a typo, or a test renamed since): nothing was run for it and the run
    passed, exit 0.  It is one line naming the name and what CTest lists."""
    root = cmake_project(tmp_path / "app", 'ENVIRONMENT "MODE=leak:more"', tests='tests = ["mdoes"]\n[[target]]\n'
                         'name = "other"\nprogram = "true"\ntools = ["memcheck"]\n')
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--out", "out", "--no-html"], cwd=root,
                          env=_env(tmp_path), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2 and "tests: 'mdoes' is not a test CTest lists (it lists modes)" in proc.stderr, (
        proc.stdout + proc.stderr)


FORK_LEAK = ("#include <stdlib.h>\n#include <sys/wait.h>\n#include <unistd.h>\nint main(void) {\n"
             "    pid_t p = fork();\n    if (p == 0) { char *x = malloc(77); x[0] = 1; x = 0; return 0; }\n"
             "    waitpid(p, 0, 0);\n    return 0;\n}\n")


@pytest.mark.parametrize("where", ["VALGRIND_OPTS", "cwd-valgrindrc"])
def test_valgrinds_own_configuration_cannot_hide_a_forked_childs_leak(tmp_path, where):
    """--child-silent-after-fork=yes in VALGRIND_OPTS or the project's .valgrindrc: memcheck said
    nothing of the forked child, whose 77 B leak went unreported: clean.  leakharness's command
    line says no, and valgrind reads it last."""
    (tmp_path / "fork.c").write_text(FORK_LEAK)
    env = {}
    if where == "VALGRIND_OPTS":
        env["VALGRIND_OPTS"] = "--child-silent-after-fork=yes"
    else:
        (tmp_path / ".valgrindrc").write_text("--child-silent-after-fork=yes\n")
    proc = lh(tmp_path, "check", "--build", "fork.c", "--tool", "memcheck", "--out", "out", "--no-html", "--quiet",
              env=env)
    job = job_of(tmp_path / "out", "memcheck")
    assert proc.returncode == 1 and len(leaks(job, 77, "main")) == 1, brief(job)


def test_valgrinds_own_configuration_ignoring_addresses_is_not_clean(tmp_path):
    """--ignore-ranges in valgrind's own configuration (no later option takes it back): errors at
    those addresses go unreported, so a clean run is incomplete, and errors found still fail."""
    (tmp_path / "clean.c").write_text("int main(void) { return 0; }\n")
    env = {"VALGRIND_OPTS": "--ignore-ranges=0x1000-0x2000"}
    proc = lh(tmp_path, "check", "--build", "clean.c", "--tool", "memcheck", "--out", "out", "--no-html", "--quiet",
              env=env)
    job = job_of(tmp_path / "out", "memcheck")
    assert proc.returncode == 3 and job["status"] == "incomplete" and "--ignore-ranges" in job["message"], brief(job)
    (tmp_path / "fork.c").write_text(FORK_LEAK)
    proc = lh(tmp_path, "check", "--build", "fork.c", "--tool", "memcheck", "--out", "out2", "--no-html", "--quiet",
              env=env)
    job = job_of(tmp_path / "out2", "memcheck")
    assert proc.returncode == 1 and any("--ignore-ranges" in p for p in job["problems"]), brief(job)


def test_valgrinds_own_configuration_cannot_take_the_leaks_out_of_its_report(tmp_path):
    """--xtree-leak=yes in VALGRIND_OPTS: valgrind wrote the leak search to a file of its own and
    not one leak record to the XML: a 77 B leak was clean.  memcheck's command line says no."""
    (tmp_path / "fork.c").write_text(FORK_LEAK)
    proc = lh(tmp_path, "check", "--build", "fork.c", "--tool", "memcheck", "--out", "out", "--no-html", "--quiet",
              env={"VALGRIND_OPTS": "--xtree-leak=yes"})
    job = job_of(tmp_path / "out", "memcheck")
    assert proc.returncode == 1 and len(leaks(job, 77, "main")) == 1, brief(job)


@pytest.mark.parametrize("options,status", [
    ("--freelist-vol=0", "incomplete"),  # a freed block handed out again at once: its use after free unseen
    ("--keep-stacktraces=none", "incomplete"),
    ("--sim-hints=lax-ioctls", "incomplete"),
    ("--track-origins=yes --freelist-vol=50000000 --show-reachable=no --num-callers=8", "ok"),
])
def test_valgrinds_own_configuration_not_known_to_be_harmless_is_not_clean(tmp_path, options, status):
    """An option of valgrind's own configuration that may hide what memcheck reports, and that our
    command line does not take back, makes a clean job incomplete; options known to be harmless
    (or more checking, not less) leave it clean."""
    (tmp_path / ".valgrindrc").write_text("\n".join(options.split()) + "\n")
    (tmp_path / "clean.c").write_text("int main(void) { return 0; }\n")
    proc = lh(tmp_path, "check", "--build", "clean.c", "--tool", "memcheck", "--out", "out", "--no-html", "--quiet")
    job = job_of(tmp_path / "out", "memcheck")
    assert job["status"] == status and proc.returncode == (3 if status == "incomplete" else 0), brief(job)
    if status == "incomplete":
        assert options.split()[0] in job["message"], brief(job)


UNINIT = ("#include <stdlib.h>\n#include <stdio.h>\nint main(void) {\n    int *p = malloc(sizeof *p);\n"
          "    if (*p == 42) puts(\"42\");\n    free(p);\n    return 0;\n}\n")


def test_valgrinds_own_configuration_cannot_turn_memchecks_checks_off(tmp_path):
    """--undef-value-errors=no in a .valgrindrc: memcheck said nothing of a branch on
    uninitialised memory, and the job was clean.  memcheck's own options are on our command line."""
    (tmp_path / "uninit.c").write_text(UNINIT)
    (tmp_path / ".valgrindrc").write_text("--undef-value-errors=no\n--show-mismatched-frees=no\n")
    proc = lh(tmp_path, "check", "--build", "uninit.c", "--tool", "memcheck", "--out", "out", "--no-html", "--quiet")
    job = job_of(tmp_path / "out", "memcheck")
    assert proc.returncode == 1 and any(f["category"] == "uninitialized" for f in job["findings"]), brief(job)


GO_EMBED_MAIN = """\
package main

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/evp.h>
static void work(int keep) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
#ifndef LEAK
    if (!keep) EVP_MD_CTX_free(c);
#endif
}
*/
import "C"

import _ "embed"

//go:embed conf/mode.txt
var mode string

func main() {
	keep := 0
	if len(mode) > 0 && mode[0] == 'K' {
		keep = 1
	}
	C.work(C.int(keep))
}
"""


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")
@pytest.mark.parametrize("change", ["embedded file", "CGO_CPPFLAGS"])
def test_a_go_programs_build_changed_by_what_it_embeds_or_its_environment_builds_again(tmp_path, change):
    """A Go target's build key left out the files //go:embed compiles into the program and the
    environment cgo's compiler reads (CGO_CPPFLAGS=-DLEAK): the stale binary, built before the
    change, ran again and was clean.  Both are in the key now: the leak is found."""
    root = tmp_path / "proj"
    (root / "cmd" / "svc" / "conf").mkdir(parents=True)
    (root / "go.mod").write_text("module example.org/svc\n\ngo 1.19\n")
    (root / "cmd" / "svc" / "main.go").write_text(GO_EMBED_MAIN)
    (root / "cmd" / "svc" / "conf" / "mode.txt").write_text("FREE\n")
    (root / "leakharness.toml").write_text('tools = ["asan"]\n[[target]]\nname = "svc"\ngo = "cmd/svc"\n')

    def run(n: int, env: dict | None = None):
        proc = subprocess.run([sys.executable, "-m", "harness", "run", "--out", f"out{n}", "--no-html", "--quiet"],
                              cwd=root, env=_env(tmp_path, env), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=240, start_new_session=True)
        return proc, job_of(root / f"out{n}", "go-asan")

    proc, job = run(1)
    assert proc.returncode == 0 and job["status"] == "ok", brief(job)
    env = None
    if change == "embedded file":
        (root / "cmd" / "svc" / "conf" / "mode.txt").write_text("KEEP\n")
    else:
        env = {"CGO_CPPFLAGS": "-DLEAK"}
    proc, job = run(2, env)
    assert proc.returncode == 1 and len(leaks(job, 72, "work")) == 1, brief(job)


SHADOWED_LIB = ("#include <stdlib.h>\nvoid *foo_make(void) { return malloc(56); }\n"
                "void foo_done(void *p) {\n#ifndef FOO_LEAKS\n    free(p);\n#endif\n}\n")
SHADOWED_MAIN = "void *foo_make(void);\nvoid foo_done(void *);\nint main(void) { foo_done(foo_make()); return 0; }\n"


def test_a_library_put_ahead_in_the_loaders_search_is_an_input(tmp_path):
    """The program links libfoo.so from its RUNPATH folder; LD_LIBRARY_PATH names a folder searched
    first, empty at first.  A leaky libfoo.so installed there is the one loaded, but the note of
    the program's libraries (by its hash and the loader's variables) still named the old one: the
    cached clean result was reused.  The note now holds while every folder the loader looked in
    is unchanged."""
    system, dev = tmp_path / "sys", tmp_path / "devlib"
    system.mkdir()
    dev.mkdir()
    (tmp_path / "foo.c").write_text(SHADOWED_LIB)
    (tmp_path / "prog.c").write_text(SHADOWED_MAIN)

    def cc(*args):
        subprocess.run(["gcc", "-g", "-O0", "-shared", "-fPIC", "foo.c", *args], cwd=tmp_path, check=True,
                       stdin=subprocess.DEVNULL, timeout=120, start_new_session=True)

    cc("-o", "sys/libfoo.so")
    time.sleep(2.1)  # the folders settled, as in a project's life: their notes may be remembered
    args = ("check", "--build", "prog.c", "--ldflags", f"-L{system} -Wl,-rpath,{system} -lfoo", "--tool", "asan",
            "--no-html", "--quiet")
    env = {"LD_LIBRARY_PATH": str(dev)}
    proc = lh(tmp_path, *args, "--out", "out1", env=env)
    assert proc.returncode == 0, said(proc)
    proc = lh(tmp_path, *args, "--out", "out2", env=env)
    assert proc.returncode == 0 and job_of(tmp_path / "out2", "asan")["cached"] is True, said(proc)
    cc("-DFOO_LEAKS", "-o", "devlib/libfoo.so")  # `make install` of a patched build, ahead in the search
    proc = lh(tmp_path, *args, "--out", "out3", env=env)
    job = job_of(tmp_path / "out3", "asan")
    assert job["cached"] is False and proc.returncode == 1 and len(leaks(job, 56, "foo_make")) == 1, brief(job)


INCBIN_MAIN = """\
#include <stdlib.h>
__asm__(".section .rodata\\n.global lh_mode\\nlh_mode:\\n.incbin \\"mode.bin\\"\\n.byte 0\\n.previous\\n");
extern const char lh_mode[];
int main(void) {
    char *p = malloc(48);
#ifndef LEAK
    if (lh_mode[0] == 'F')
        free(p);
#endif
    return 0;
}
"""


@pytest.mark.parametrize("change", ["incbin", "response file"])
def test_a_file_the_compiler_reads_that_cc_m_does_not_list_rebuilds(tmp_path, change):
    """A data file compiled in by .incbin (an embedded certificate or config), and a gcc @response
    file of the flags: `cc -M` lists neither, so the build key missed an edit of either and the
    stale binary ran again, clean, even with --fresh."""
    (tmp_path / "prog.c").write_text(INCBIN_MAIN)
    (tmp_path / "mode.bin").write_text("FREE\n")
    (tmp_path / "flags.rsp").write_text("-DNOTHING\n")
    args = ("check", "--build", "prog.c", "--cflags", "@flags.rsp", "--tool", "asan", "--no-html", "--quiet")
    proc = lh(tmp_path, *args, "--out", "out1")
    assert proc.returncode == 0, said(proc)
    if change == "incbin":
        (tmp_path / "mode.bin").write_text("KEEP\n")
    else:
        (tmp_path / "flags.rsp").write_text("-DLEAK\n")
    proc = lh(tmp_path, *args, "--fresh", "--out", "out2")
    job = job_of(tmp_path / "out2", "asan")
    assert proc.returncode == 1 and len(leaks(job, 48, "main")) == 1, brief(job)


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")
@pytest.mark.parametrize("layout", ["included .inc", "linked package folder"])
def test_a_go_programs_c_reached_by_include_or_link_is_in_its_build_key(tmp_path, layout):
    """A cgo package's C file #includes body.inc (not a suffix the go command lists, nor one
    Go's cache tracks); an imported package's folder is a symbolic link out of the module (the
    module's walk did not follow it).  Either edited to drop a free: the stale binary ran, clean."""
    root = tmp_path / "proj"
    (root / "cmd" / "svc").mkdir(parents=True)
    (root / "go.mod").write_text("module example.org/svc\n\ngo 1.19\n")
    (root / "leakharness.toml").write_text('tools = ["asan"]\n[[target]]\nname = "svc"\ngo = "cmd/svc"\n')
    if layout == "included .inc":
        (root / "cmd" / "svc" / "main.go").write_text('package main\n\n// void work(void);\nimport "C"\n\n'
                                                      "func main() { C.work() }\n")
        (root / "cmd" / "svc" / "work.c").write_text('#include <stdlib.h>\nvoid work(void) {\n'
                                                     '    char *p = malloc(64);\n    p[0] = 1;\n#include "body.inc"\n}\n')
        edited = root / "cmd" / "svc" / "body.inc"
        edited.write_text("free(p);\n")
        dropped = "/* gone */\n"
    else:
        (tmp_path / "outside" / "lib").mkdir(parents=True)
        edited = tmp_path / "outside" / "lib" / "lib.go"
        edited.write_text('package lib\n\n// #include <stdlib.h>\n'
                          '// static void work(void) { char *p = malloc(64); p[0] = 1; free(p); }\n'
                          'import "C"\n\nfunc Work() { C.work() }\n')
        (root / "lib").symlink_to(tmp_path / "outside" / "lib")
        (root / "cmd" / "svc" / "main.go").write_text('package main\n\nimport "example.org/svc/lib"\n\n'
                                                      "func main() { lib.Work() }\n")
        dropped = edited.read_text().replace(" free(p);", " (void)p;")

    def run(n: int):
        proc = subprocess.run([sys.executable, "-m", "harness", "run", "--out", f"out{n}", "--no-html", "--quiet"],
                              cwd=root, env=_env(tmp_path), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=240, start_new_session=True)
        return proc, job_of(root / f"out{n}", "go-asan")

    proc, job = run(1)
    assert proc.returncode == 0 and job["status"] == "ok", brief(job)
    edited.write_text(dropped)
    proc, job = run(2)
    assert proc.returncode == 1 and len(leaks(job, 64, "work")) == 1, brief(job)


HEAP_OVERFLOW = ("#include <stdlib.h>\n#include <stdio.h>\n{default}int main(void) {{\n    char *p = malloc(8);\n"
                 "    volatile int i = 8;\n    p[i] = 1;\n    printf(\"%d\\n\", p[0]);\n    free(p);\n    return 0;\n}}\n")


@pytest.mark.parametrize("how", ["ASAN_OPTIONS=poison_heap=0", "__asan_default_options", "TSAN_OPTIONS=report_bugs=0",
                                 "TSan suppressions", "UBSan suppressions"])
def test_sanitizer_options_cannot_turn_a_check_off_unseen(tmp_path, how):
    """poison_heap=0 (in the environment, or compiled into the program by __asan_default_options)
    hid a heap overflow; report_bugs=0 a data race: each job clean.  Those options are set back
    last.  A TSan suppressions file is the user's to keep: what it covered is said, never a
    silent clean."""
    env = {}
    if how == "UBSan suppressions":  # UBSan lists no match: that they were in effect is said
        (tmp_path / "prog.c").write_text("#include <limits.h>\n#include <stdio.h>\nint main(int argc, char **argv) {\n"
                                         "    volatile int x = INT_MAX;\n    x = x + argc;\n    printf(\"%d\\n\", x);\n"
                                         "    return 0;\n}\n")
        (tmp_path / "ubsan.supp").write_text("signed-integer-overflow:prog.c\n")
        proc = lh(tmp_path, "check", "--build", "prog.c", "--tool", "ubsan", "--out", "out", "--no-html", "--quiet",
                  env={"UBSAN_OPTIONS": "suppressions=ubsan.supp"})
        job = job_of(tmp_path / "out", "ubsan")
        assert any("UBSan ran with suppressions (ubsan.supp)" in p for p in job["problems"]), brief(job)
        return
    if how.startswith("TSAN") or how.startswith("TSan"):
        shutil.copy(PROGRAMS / "race.c", tmp_path / "prog.c")
        tool, cflags = "tsan", ()
        if how.startswith("TSAN"):
            env["TSAN_OPTIONS"] = "report_bugs=0"
        else:
            (tmp_path / "tsan.supp").write_text("race:bump\n")
            env["TSAN_OPTIONS"] = "suppressions=tsan.supp"
    else:
        default = 'const char *__asan_default_options(void) { return "poison_heap=0"; }\n'
        (tmp_path / "prog.c").write_text(HEAP_OVERFLOW.format(default=default if how.startswith("__") else ""))
        tool = "asan"
        if how.startswith("ASAN"):
            env["ASAN_OPTIONS"] = "poison_heap=0"
    proc = lh(tmp_path, "check", "--build", "prog.c", "--tool", tool, "--out", "out", "--no-html", "--quiet", env=env)
    job = job_of(tmp_path / "out", tool)
    if how == "TSan suppressions":
        assert proc.returncode == 0 and any("only races that suppressions cover" in p for p in job["problems"]), \
            brief(job)
    elif tool == "tsan":
        assert proc.returncode == 1 and any(f["category"] == "data-race" for f in job["findings"]), brief(job)
    else:
        assert proc.returncode == 1 and any(f["category"] == "buffer-overflow" for f in job["findings"]), brief(job)


LOST_77 = ("#include <stdlib.h>\n#include <stdio.h>\nstatic void lose(void) { char *p = malloc(77); p[0] = 1; "
           "printf(\"%p\\n\", (void *)p); }\nint main(void) { lose(); return 0; }\n")


@pytest.mark.parametrize("how", ["quoted", "include", "beside the program", "compiled in"])
def test_a_sanitizer_suppressions_file_however_named_is_an_input(tmp_path, how):
    """The sanitizer runtime reads its suppressions with its own system calls: only the files
    named in its options are keyed.  A name in quotes, in an options file `include=` names, beside
    the program (where the runtime also looks for a relative name), or in options compiled into
    the program was not found: the suppression removed, the cached clean result stood."""
    source = LOST_77
    conf = tmp_path / "conf"
    conf.mkdir()
    supp = conf / "lsan.supp"
    env = {}
    if how == "quoted":
        env["LSAN_OPTIONS"] = "suppressions='conf/lsan.supp'"
    elif how == "include":
        (conf / "lsan.opts").write_text("suppressions=conf/lsan.supp\n")
        env["LSAN_OPTIONS"] = "include=conf/lsan.opts"
    elif how == "compiled in":
        source = 'const char *__lsan_default_options(void) { return "suppressions=conf/lsan.supp"; }\n' + LOST_77
    (tmp_path / "prog.c").write_text(source)
    supp.write_text("leak:lose\n")
    args = ["check", "--build", "prog.c", "--tool", "asan", "--no-html", "--quiet"]
    if how == "beside the program":
        # the program is a project's own build in bin/, the file beside it named relatively
        (tmp_path / "bin").mkdir()
        subprocess.run(["gcc", "-g", "-fsanitize=address", "-o", "bin/prog", "prog.c"], cwd=tmp_path, check=True,
                       stdin=subprocess.DEVNULL, timeout=120, start_new_session=True)
        supp = tmp_path / "bin" / "lsan.supp"
        supp.write_text("leak:lose\n")
        env["LSAN_OPTIONS"] = "suppressions=lsan.supp"
        args = ["check", "--tool", "asan", "--no-html", "--quiet"]
    program = ["--", "bin/prog"] if how == "beside the program" else []
    proc = lh(tmp_path, *args, "--out", "out1", *program, env=env)
    job = job_of(tmp_path / "out1", "asan")
    assert proc.returncode == 0 and any("suppressions cover" in p for p in job["problems"]), brief(job)
    # and on the terminal: a clean job's caveats are printed under it, never only in results.json
    assert re.search(r"^  but: sanitizer\.\d+: only leaks that suppressions cover$", proc.stdout, re.M), said(proc)
    supp.write_text("# none\n")
    proc = lh(tmp_path, *args, "--out", "out2", *program, env=env)
    job = job_of(tmp_path / "out2", "asan")
    assert job["cached"] is False and proc.returncode == 1 and len(leaks(job, 77, "lose")) == 1, brief(job)


SPAWN_WITH_INPUT = """\
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
int main(void) {
    int pfd[2];
    if (pipe(pfd) != 0) return 2;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "mode.conf", O_RDONLY, 0);  /* opened in the child */
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pfd[0]);
    pid_t pid;
    char *argv[] = {"cat", NULL};
    if (posix_spawn(&pid, "/bin/cat", &fa, NULL, argv, environ) != 0) return 3;
    close(pfd[1]);
    posix_spawn_file_actions_destroy(&fa);
    char buf[16] = {0};
    if (read(pfd[0], buf, sizeof buf - 1) < 0) buf[0] = 0;
    waitpid(pid, NULL, 0);
    char *p = malloc(22);
    p[0] = 0;
    if (strncmp(buf, "leak", 4) != 0) free(p);
    return 0;
}
"""


def test_a_file_a_spawned_child_gets_open_is_an_input(tmp_path):
    """posix_spawn_file_actions_addopen: glibc opens the file in the child, before its exec, with
    its own system call, which the recorder cannot see.  The file edited, the cached clean result
    stood.  The file is noted when the action is added."""
    (tmp_path / "spawn.c").write_text(SPAWN_WITH_INPUT)
    (tmp_path / "mode.conf").write_text("ok\n")
    args = ("check", "--build", "spawn.c", "--tool", "asan", "--no-html", "--quiet")
    proc = lh(tmp_path, *args, "--out", "out1")
    assert proc.returncode == 0, said(proc)
    (tmp_path / "mode.conf").write_text("leak\n")
    proc = lh(tmp_path, *args, "--out", "out2")
    job = job_of(tmp_path / "out2", "asan")
    assert job["cached"] is False and proc.returncode == 1 and len(leaks(job, 22, "main")) == 1, brief(job)


HELPER_CHAIN = """\
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static char *xmalloc(size_t n) { char *p = malloc(n); if (!p) abort(); return p; }
static char *buf_new(size_t n) { char *b = xmalloc(n); memset(b, 0, n); return b; }
static char *buf_dup(const char *s) { size_t n = strlen(s) + 1; char *b = buf_new(n); memcpy(b, s, n); return b; }
static void parse_header(void) { char *h = buf_dup("header"); printf("%s\\n", h); }
static void parse_body(void) { char *h = buf_dup("body"); printf("%s\\n", h); BODY_FREE }
int main(void) { parse_header(); parse_body(); return 0; }
"""


def test_nightly_says_a_second_leak_of_a_known_signature_is_new(tmp_path):
    """Night 1 leaks in parse_header through a three-deep helper chain; night 2 leaks in
    parse_body through the same chain: one signature (its top three frames), two records.  The
    nights were compared by signature alone: 2 bugs became 4 with no NEW line, exit 0."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "leakharness.toml").write_text('tools = ["asan"]\n[[target]]\nname = "prog"\nsources = ["prog.c"]\n')
    (root / "prog.c").write_text(HELPER_CHAIN.replace("BODY_FREE", "free(h);"))

    def night():
        return subprocess.run([sys.executable, "-m", "harness", "nightly", "--history", "nights", "--quiet"], cwd=root,
                              env=_env(tmp_path), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=240, start_new_session=True)

    first = night()
    assert first.returncode == 1 and "NEW " not in first.stdout, said(first)  # its leak fails from night 1 on
    time.sleep(1.1)  # nights are named by the second
    (root / "prog.c").write_text(HELPER_CHAIN.replace("BODY_FREE", ""))
    second = night()
    new = [ln for ln in second.stdout.splitlines() if ln.startswith("NEW ")]
    assert second.returncode == 1 and len(new) == 1, said(second)
    assert new[0].startswith("NEW leak:xmalloc>buf_new>buf_dup@") and "(2 records of it, 1 last night)" in new[0], new


IN_MAIN = ("#include <stdlib.h>\n#include <stdio.h>\nstatic void other(void) { char *q = malloc(33); q[0] = 1; "
           "OTHER_FREE }\nint main(void) {\n    char *p = malloc(21);\n    p[0] = 1;\n    other();\n    return 0;\n}\n")


@pytest.mark.parametrize("where", ["main", "start"])
def test_an_lsan_file_written_for_a_leak_in_main_hides_nothing_else_when_lsan_reads_it(tmp_path, where):
    """`suppressions --format lsan` wrote `leak:main` for a leak allocated right in main (or
    `leak:start` for one in a function named start, which is part of __libc_start_call_main); LSan
    matches a pattern against every frame, so a user who handed the file to LSan (LSAN_OPTIONS)
    hid every later leak of the program: clean.  Such a line is written as a comment to LSan that
    leakharness itself still reads, applying it with its signature."""
    source = IN_MAIN if where == "main" else IN_MAIN.replace(
        "int main(void) {\n    char *p = malloc(21);\n    p[0] = 1;\n",
        "static char *start(void) { char *p = malloc(21); p[0] = 1; return p; }\nint main(void) {\n"
        "    start();\n")
    assert source != IN_MAIN or where == "main"
    (tmp_path / "prog.c").write_text(source.replace("OTHER_FREE", "free(q);"))
    proc = lh(tmp_path, "check", "--build", "prog.c", "--tool", "asan", "--out", "first", "--no-html", "--quiet")
    assert proc.returncode == 1, said(proc)
    proc = lh(tmp_path, "suppressions", "first", "--format", "lsan", "--out", "lsan.supp")
    text = (tmp_path / "lsan.supp").read_text()
    assert proc.returncode == 0 and f"\nleak:{where}" not in text and f"leak:{where}" in text, text
    (tmp_path / "prog.c").write_text(source.replace("OTHER_FREE", ""))  # a new leak, in other()
    proc = lh(tmp_path, "check", "--build", "prog.c", "--tool", "asan", "--out", "lsan", "--no-html", "--quiet",
              env={"LSAN_OPTIONS": f"suppressions={tmp_path / 'lsan.supp'}"})
    job = job_of(tmp_path / "lsan", "asan")
    assert proc.returncode == 1 and len(leaks(job, 33, "other")) == 1, brief(job)
    proc = lh(tmp_path, "check", "--build", "prog.c", "--tool", "asan", "--out", "ours", "--no-html",
              "--suppressions", "lsan.supp")
    assert proc.returncode == 1 and "1 finding(s) suppressed" in proc.stdout, said(proc)
    assert "leak (definite) 33 B at other" in proc.stdout, said(proc)


TWO_IN_WORK = ("#include <stdlib.h>\n#include <string.h>\nstatic void work(void)\n{\n    char *a = malloc(16);\n"
               "    memset(a, 0, 16);\n    char *b = malloc(24);\n    memset(b, 0, 24);\n    free(b);\n}\n"
               "int main(void) { work(); return 0; }\n")


def test_a_known_leak_of_a_prefix_mapped_build_run_from_a_sub_folder_accepts_it_alone(tmp_path):
    """-ffile-prefix-map=ROOT=. (reproducible builds, Debian's default flags) names sources
    relative to the project; `run` from a sub-folder read no source line, the signatures had no
    line hash, and the known entry for one leak of work() accepted a new one in it.  The frames'
    files are found from the job's folder: the old leak is accepted, the new one fails."""
    root = tmp_path / "proj"
    (root / "src").mkdir(parents=True)
    (root / "sub").mkdir()
    (root / "src" / "w.c").write_text(TWO_IN_WORK)
    toml = f'tools = ["memcheck", "asan"]\n[[target]]\nname = "w"\nsources = ["src/w.c"]\n' \
           f'cflags = ["-ffile-prefix-map={root}=."]\n'
    (root / "leakharness.toml").write_text(toml)

    def run(where: Path, out: str):
        return subprocess.run([sys.executable, "-m", "harness", "run", "--out", str(root / out), "--no-html", "--quiet"],
                              cwd=where, env=_env(tmp_path), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=240, start_new_session=True)

    assert run(root, "out1").returncode == 1
    proc = lh(root, "suppressions", "out1", "--format", "known")
    known = sorted(set(re.findall(r'"(leak:work>main@[0-9a-f]{6})"', proc.stdout)))
    assert len(known) == 1, proc.stdout
    (root / "leakharness.toml").write_text(toml + f'known = ["{known[0]}"]\n')
    (root / "src" / "w.c").write_text(TWO_IN_WORK.replace("    free(b);\n", "    /* b kept */\n"))
    proc = run(root / "sub", "out2")
    assert proc.returncode == 1, said(proc)
    for tool in ("memcheck", "asan"):
        job = job_of(root / "out2", tool)
        assert len(leaks(job, 24, "work")) == 1 and not leaks(job, 24, "work")[0].get("suppressed"), brief(job)
        assert all(f["signature"].startswith("leak:work>main@") for f in job["findings"] if f["category"] == "leak"), \
            brief(job)


def test_a_child_programs_compiled_in_sanitizer_options_are_never_a_stale_result(tmp_path):
    """A program execs a child whose __lsan_default_options includes an options file.  Only the
    program's own compiled-in options were keyed: the child's file edited (use_globals=0 makes
    its kept block a leak), the cached clean result stood.  Such a result is not stored."""
    (tmp_path / "child.c").write_text(
        "#include <stdio.h>\n#include <stdlib.h>\nvoid *keep;\n"
        f'const char *__lsan_default_options(void) {{ return "include={tmp_path}/opts.txt"; }}\n'
        'int main(void) { keep = malloc(48); printf("%p\\n", keep); return 0; }\n')
    (tmp_path / "parent.c").write_text(
        f'#include <unistd.h>\nint main(void) {{ execl("{tmp_path}/child", "child", (char *)0); return 1; }}\n')
    for name in ("child", "parent"):
        subprocess.run(["gcc", "-g", "-fsanitize=address", "-o", name, f"{name}.c"], cwd=tmp_path, check=True,
                       stdin=subprocess.DEVNULL, timeout=120, start_new_session=True)
    (tmp_path / "opts.txt").write_text("")
    proc = lh(tmp_path, "check", "--tool", "asan", "--no-html", "--quiet", "--out", "out1", "--", "./parent")
    job = job_of(tmp_path / "out1", "asan")
    assert proc.returncode == 0 and "holds sanitizer options naming files" in (job.get("not_cached") or ""), brief(job)
    (tmp_path / "opts.txt").write_text("use_globals=0\n")
    proc = lh(tmp_path, "check", "--tool", "asan", "--no-html", "--quiet", "--out", "out2", "--", "./parent")
    job = job_of(tmp_path / "out2", "asan")
    assert job["cached"] is False and proc.returncode == 1 and leaks(job, 48, "main"), brief(job)


def test_hostile_response_files_and_embeds_are_one_line_never_a_traceback(tmp_path):
    """A gcc @response file that is a symbolic link to itself, or names a path with a NUL byte:
    Path.resolve raised RuntimeError or ValueError out of the build key, a traceback."""
    (tmp_path / "prog.c").write_text("int main(void) { return 0; }\n")
    (tmp_path / "loop.rsp").symlink_to("loop.rsp")
    (tmp_path / "nul.rsp").write_bytes(b"@a\x00b\n")
    for rsp in ("loop.rsp", "nul.rsp"):
        proc = lh(tmp_path, "check", "--build", "prog.c", "--cflags", f"@{rsp}", "--tool", "asan", "--no-html",
                  "--quiet", "--out", f"out-{rsp}")
        assert "Traceback" not in proc.stderr and proc.returncode in (0, 2, 3), said(proc)
