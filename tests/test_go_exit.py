"""A Go program must end, for the checkers, the way a C program does: C's exit() runs OpenSSL's
atexit cleanup (OPENSSL_cleanup) before LeakSanitizer's and valgrind's leak checks, so a reference
the program took and never gave back (EVP_MD_fetch without EVP_MD_free) is lost; a Go program
leaves through exit_group, the method store still points at everything, and the leak was
invisible ("ok, 0 error(s)" under go-asan and memcheck).  leakharness's Go builds now run
OpenSSL's cleanup after the program's main returns, before the leak check.

Every test runs the real CLI in a subprocess (`python -m harness check --build main.go`), from
its own working folder with relative paths, on programs from tests/programs/go/ under real
valgrind and `go build -asan`.  One cache for the module (LEAKHARNESS_CACHE), so each Go build
happens once.  Skipped, with the reason, without go or valgrind.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from realrun import have, lh

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "tests" / "programs" / "go"
# What a developer's shell may hold that would change what a checker does (as test_trust.py).
LOST = ("definite", "indirect")

pytestmark = [
    pytest.mark.skipif(not have("go"), reason="go is not installed (apt-get install golang-go)"),
    pytest.mark.skipif(not have("valgrind"), reason="valgrind is not installed"),
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One build cache (GOCACHE inside it) for the module: each build happens once."""
    return tmp_path_factory.mktemp("go-exit-cache")


def said(proc) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def check(program: str, *tools: str, cwd: Path, cache: Path, args: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, dict]:
    """`leakharness check --build FILE --tool ... [-- ARGS]` on a copy of tests/programs/go/PROGRAM
    in cwd (named by a relative path, as a user would); (the process, {tool: job from results.json})."""
    shutil.copytree(PROGRAMS / program, cwd / program, dirs_exist_ok=True)
    source = next(p for p in sorted((cwd / program).iterdir()) if p.suffix in (".go", ".c"))
    tool_args = [arg for tool in tools for arg in ("--tool", tool)]
    out = "-".join(("out", program, *args))
    proc = lh("check", "--build", source.relative_to(cwd), *tool_args, "--out", out, "--no-html",
              *(("--", *args) if args else ()), cwd=cwd, cache=cache)
    assert "Traceback" not in proc.stderr, said(proc)
    jobs = {j["tool"]: j for j in json.loads((cwd / out / "results.json").read_text())["jobs"]}
    assert set(jobs) == set(tools), said(proc)
    return proc, jobs


def lost(job: dict) -> list[dict]:
    return [f for f in job["findings"] if f["category"] == "leak" and f["leak_kind"] in LOST]


def functions(finding: dict) -> list[str]:
    return [fr["function"] for fr in finding["stack"] if fr["function"]]


def test_an_evp_md_reference_never_freed_is_lost_as_in_c(cache, tmp_path):
    proc, jobs = check("md_fetch_leak", "go-asan", "memcheck", cwd=tmp_path, cache=cache)
    assert proc.returncode == 1, said(proc)
    # The same five fetches in C, under the C twins of the two checkers: what Go must match.
    c_proc, c_jobs = check("md_fetch_c", "asan", "memcheck", cwd=tmp_path, cache=cache)
    assert c_proc.returncode == 1, said(c_proc)
    for go_tool, c_tool in (("go-asan", "asan"), ("memcheck", "memcheck")):
        job = jobs[go_tool]
        assert job["status"] == "ok", (go_tool, said(proc))
        definite = [f for f in lost(job) if f["leak_kind"] == "definite"]
        c_definite = [f for f in lost(c_jobs[c_tool]) if f["leak_kind"] == "definite"]
        # The EVP_MD itself, lost directly, with the fetch (and cgo's stub for it) in its stack.
        assert len(definite) == 1 and definite[0]["bytes"] > 0, (go_tool, definite)
        assert "EVP_MD_fetch" in functions(definite[0]) and "_Cfunc_EVP_MD_fetch" in functions(definite[0])
        # Byte for byte what C loses (240 B + 581 B indirect with OpenSSL 3.0.19): the method and
        # the provider objects it keeps.
        assert definite[0]["bytes"] == c_definite[0]["bytes"], go_tool
        total = sum(f["bytes"] for f in lost(job))
        assert total == sum(f["bytes"] for f in lost(c_jobs[c_tool])) and total > definite[0]["bytes"], go_tool
        assert all("EVP_MD_fetch" in functions(f) for f in lost(job)), go_tool
    # What the user reads on the terminal: the lost bytes at the Go line that fetched them, from
    # both checkers (each build records the Go call of what C.EVP_MD_fetch returned).
    indirect = total - definite[0]["bytes"]
    line = f"leak (definite) {definite[0]['bytes']} B + {indirect} B indirect at main.digest main.go:25 (Go caller)"
    assert proc.stdout.count(line) == 2, said(proc)


def test_the_fixed_twin_is_clean(cache, tmp_path):
    proc, jobs = check("md_fetch_fixed", "go-asan", "memcheck", cwd=tmp_path, cache=cache)
    assert proc.returncode == 0, said(proc)
    for tool, job in jobs.items():
        assert job["status"] == "ok" and not job["findings"], (tool, job["findings"])
        assert f"main[{tool}]: clean" in proc.stdout, said(proc)


def test_each_process_vouches_for_its_own_leak_check_only(cache, tmp_path):
    """A program that runs itself as a child (Go's helper-process idiom): one process's leak-check
    mark was taken for the other's.  A parent leaving by os.Exit after a child whose main returned,
    and a child leaving by os.Exit, were both clean under go-asan (memcheck saw the lost bytes)."""
    for how, why in (("parent-exits", "the leak check did not run"), ("child-exits", "a program it ran")):
        proc, jobs = check("self_exec", "go-asan", cwd=tmp_path, cache=cache, args=(how,))
        assert proc.returncode == 3, said(proc)
        job = jobs["go-asan"]
        assert job["status"] == "incomplete" and why in job["message"], (how, said(proc))


def test_findings_name_the_programs_own_main_and_its_closures(cache, tmp_path):
    """The build renames the program's main (to run the exit-time check after it): a closure's
    leak was named main.leakharnessUserMain.func2, a use after free in main
    main.leakharnessUserMain, so a `known` entry or baseline written for main.main never matched."""
    proc, jobs = check("main_names", "go-asan", cwd=tmp_path, cache=cache, args=("closure",))
    leaks = [f for f in lost(jobs["go-asan"]) if f["leak_kind"] == "definite"]
    assert sum(f["bytes"] for f in leaks) == 60, said(proc)
    assert "at main.main.func" in proc.stdout and "leakharnessUserMain" not in proc.stdout, said(proc)
    assert all(re.search(r">main\.main\.func\d+@", f["signature"]) for f in leaks), [f["signature"] for f in leaks]
    proc, jobs = check("main_names", "go-asan", cwd=tmp_path, cache=cache, args=("read",))
    (uaf,) = [f for f in jobs["go-asan"]["findings"] if f["category"] == "use-after-free"]
    assert "main.main" in functions(uaf) and uaf["signature"].startswith("use-after-free:main.main@"), uaf
    assert "leakharnessUserMain" not in json.dumps(jobs) + proc.stdout, said(proc)


def test_a_program_without_openssl_builds_and_checks_clean(cache, tmp_path):
    """The helpers look OpenSSL's cleanup up at run time: a cgo program that does not link OpenSSL
    builds (no undefined OPENSSL_cleanup) and runs to the end of the check under every Go checker."""
    proc, jobs = check("no_openssl", "go-asan", "memcheck", "cgocheck", cwd=tmp_path, cache=cache)
    assert proc.returncode == 0, said(proc)
    for tool, job in jobs.items():
        assert job["status"] == "ok" and not job["findings"], (tool, job["findings"])
    # The premise: the binaries the helpers were added to do not link libcrypto.
    source = str(tmp_path / "no_openssl" / "main.go")
    binaries = [Path(b.parent, json.loads(b.read_text())["name"]) for b in (cache / "builds").glob("*/*/build.json")
                if json.loads(b.read_text()).get("files") == [source]]
    assert len(binaries) == 3, binaries  # one build per checker
    for binary in binaries:
        needed = subprocess.run(["readelf", "-d", str(binary)], stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=60, start_new_session=True)
        assert needed.returncode == 0 and "(NEEDED)" in needed.stdout, needed.stderr
        assert "libcrypto" not in needed.stdout and "libssl" not in needed.stdout, needed.stdout
