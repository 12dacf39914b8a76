"""Go programs with cgo, for real: `go build` (plain and -asan), valgrind, LeakSanitizer and the Go
runtime's own crash output.  The Go catalog under every Go checker, in `run` and in pytest; the
leak-check helper against plain `go build -asan`; `check --build` on a user's Go program with a
C.CString leak, one that crashes inside C, one that ends with os.Exit, a module folder; no Go
installed; the Go crash parser on real output cut short.  Skipped, with the reason, without go."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from realrun import have, run, said

from harness import checkers
from harness.catalog import load_catalog
from harness.control import Session

pytest_plugins = ["pytester"]

pytestmark = [
    pytest.mark.skipif(not have("go"), reason="go is not installed (apt-get install golang-go)"),
    pytest.mark.skipif(not have("valgrind"), reason="valgrind is not installed"),
]

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "tests" / "programs" / "go"
LEAKHARNESS = [str(Path(os.sys.executable).parent / "leakharness")]
GO_PATTERNS = sorted(p.id for p in load_catalog() if p.language == "go")


@pytest.fixture(scope="module")
def go_cache(tmp_path_factory) -> Path:
    """One build and result cache (and GOCACHE) for the module: each Go build happens once."""
    return tmp_path_factory.mktemp("go-cache")


@pytest.fixture(scope="module")
def catalog_run(go_cache, tmp_path_factory):
    session = Session(out=tmp_path_factory.mktemp("go-run"), cache=go_cache, jobs=2, progress=False)
    results = session.run_catalog(session.catalog(GO_PATTERNS), html=True)
    return session, results


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*LEAKHARNESS, *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=600, start_new_session=True)


def _jobs(out: Path) -> dict[str, dict]:
    return {j["tool"]: j for j in json.loads((out / "results.json").read_text())["jobs"]}


def test_the_go_catalog_holds_under_every_go_checker(catalog_run):
    session, results = catalog_run
    assert len(GO_PATTERNS) >= 9
    by_name = {(j.pattern, j.variant, j.tool): j for j in results.jobs}
    assert len(by_name) == len(GO_PATTERNS) * 2 * len(checkers.check_defaults("go"))  # and no C checker on a Go pattern
    failed = [f"{j.name}: {j.reason}" for j in results.jobs if j.verdict == "fail"]
    assert not failed, "\n".join(failed)
    # What a user reads: the leak through cgo's allocator with its bytes (100 x 14 + 16 + 64) ...
    cstring = by_name[("cgo_cstring_no_free", "leaky", "go-asan")]
    leak = [f for f in cstring.findings if f.is_lost_leak]
    assert sum(f.bytes for f in leak) == 1480
    assert all(fr.function == "_Cfunc__Cmalloc" for f in leak for fr in f.stack[1:2])
    assert all("C.CString, C.CBytes or C.malloc" in f.message for f in leak)
    assert all("LeakSanitizer's stack stops at the cgo stack switch" in f.message for f in leak)  # a record names it
    assert not [f for f in leak if "_cgo_" in f.signature]  # the per-package hash is not part of the bug's name
    # The Go callers the stack switch hides, named from the go-asan build's record: all 102 blocks,
    # LeakSanitizer's one record three bugs, one per Go line, each named by its line.
    callers = {a.frames[0].function: (f, a.text) for f in leak for a in f.aux_stacks if a.label == "Go caller"}
    assert set(callers) == {"main.nidOf", "main.checksum", "main.scratch"} and len(leak) == 3
    nid, text = callers["main.nidOf"]
    assert "100 object(s), 1400 B" in text and (nid.bytes, nid.blocks) == (1400, 100)
    assert "(100 of the record's 102 object(s); its other Go callers are findings of their own)" in nid.message
    assert {f.signature.split("@")[0] for f in leak} == {"leak:_Cfunc__Cmalloc>main.nidOf",
                                                        "leak:_Cfunc__Cmalloc>main.checksum",
                                                        "leak:_Cfunc__Cmalloc>main.scratch"}
    memcheck = [f for f in by_name[("cgo_cstring_no_free", "leaky", "memcheck")].findings if f.is_lost_leak]
    assert sum(f.bytes for f in memcheck) == 1480
    assert {f.signature for f in memcheck} == {f.signature for f in leak}  # three bugs, their names, both tools
    # ... the crash inside C with the Go caller and the C function, under each Go checker ...
    for tool in checkers.check_defaults("go"):
        crash = by_name[("cgo_signal_in_c", "leaky", tool)]
        assert crash.status == "crashed" and crash.signal == "SIGSEGV"
        go = [f for f in crash.findings if f.tool == "go"]
        assert go and go[0].category == "crash"
        assert [fr.function for fr in go[0].stack[:3]] == ["ctx_state", "main._Cfunc_ctx_state",
                                                            "main.handshakeState"]
        assert "inside C function ctx_state, called from Go main.handshakeState" in go[0].message
    # ... cgocheck's verdict at the Go line that stored the pointer ...
    check = [f for f in by_name[("cgo_go_pointer_in_c", "leaky", "cgocheck")].findings if f.kind == "cgocheck"]
    assert check and check[0].stack[0].function == "main.attach" and check[0].stack[0].line
    # ... the use after free a finalizer causes without KeepAlive, under both memory checkers.
    for tool in ("memcheck", "go-asan"):
        uaf = by_name[("go_finalizer_keepalive", "leaky", tool)]
        assert any(f.category == "use-after-free" and "lh_digest_read" in f.functions() for f in uaf.findings)
    # memcheck sees the contexts a Go wrapper dropped (its build hides Go's memory from the exit-time
    # leak check, where dead wrappers still point at them): the same 3,160 B as LSan.
    for tool in ("memcheck", "go-asan"):
        lost = [f for f in by_name[("cgo_evp_ctx_leak", "leaky", tool)].findings if f.is_lost_leak]
        assert sum(f.bytes for f in lost) == 4000, tool  # 920 B + 3,080 B, as the same program in C
    # The report's page for the pattern shows the Go caller and the C function it entered.
    page = (session.out / "patterns" / "cgo_signal_in_c.html").read_text()
    assert "main.handshakeState" in page and "inside C function ctx_state" in page


def test_go_patterns_are_pytest_items(pytester, go_cache, catalog_run):
    """The same expectations as pytest items (the builds and results come from the cache)."""
    shutil.copytree(ROOT / "c_fixtures" / "cgo_cstring_no_free", pytester.path / "cgo_cstring_no_free")
    shutil.copytree(ROOT / "c_fixtures" / "cgo_go_pointer_in_c", pytester.path / "cgo_go_pointer_in_c")
    result = pytester.runpytest("-p", "no:cacheprovider", "--leak-cache", str(go_cache), "-v")
    result.assert_outcomes(passed=9, xfailed=3)
    result.stdout.fnmatch_lines(["*cgo_cstring_no_free::leaky?go-asan? PASSED*",
                                 "*cgo_go_pointer_in_c::leaky?cgocheck? PASSED*"])


def test_the_leak_check_helper_finds_what_plain_go_asan_misses(go_cache, tmp_path):
    source = PROGRAMS / "cstring_leak"
    env = {"GOCACHE": str(go_cache / "go-build"), "GOPROXY": "off", "GOTOOLCHAIN": "local", "CGO_ENABLED": "1",
           "GO111MODULE": "on"}
    proc = run(["go", "build", "-asan", "-o", tmp_path / "plain-asan", source / "main.go"], env=env)
    assert proc.returncode == 0, proc.stderr
    plain = run([tmp_path / "plain-asan"], env={"ASAN_OPTIONS": "detect_leaks=1", "LSAN_OPTIONS": "use_stacks=0"})
    assert plain.returncode == 0 and "LeakSanitizer" not in plain.stderr  # Go 1.19 never checks at exit
    session = Session(out=tmp_path / "out", cache=go_cache, progress=False)
    results = session.check(session.check_tasks(sources=[source / "main.go"], checkers=("go-asan",)))
    job = results.jobs[0]
    assert job.status == "ok"
    leaks = [f for f in job.findings if f.is_lost_leak]
    assert sum(f.bytes for f in leaks) == 21 and sum(f.blocks for f in leaks) == 3  # 3 x "sha256\0"
    assert (source / "main.go").read_text().count("func main()") == 1  # the user's file is untouched
    assert not (source / "zz_leakharness_leakcheck.go").exists()
    # Built elsewhere, under memcheck: the -asan build never reaches main under valgrind (ASan's
    # runtime aborts): incomplete.  The plain one's lost blocks may hide behind Go's memory: what it
    # found stands (here the 3 blocks), said to be not the whole of its leaks.
    for name, main in (("plain", source / "main.go"), ("reachable", PROGRAMS / "ssl_reachable" / "main.go")):
        proc = run(["go", "build", "-o", tmp_path / name, main], env=env)
        assert proc.returncode == 0, proc.stderr
    session = Session(out=tmp_path / "memcheck", cache=go_cache, progress=False)
    results = session.check([t for name in ("plain-asan", "plain", "reachable")
                             for t in session.check_tasks(program=[str(tmp_path / name)], checkers=("memcheck",))])
    asan, plain, reachable = results.jobs
    assert reachable.status == "incomplete" and "not built by leakharness" in reachable.message, reachable
    assert asan.status == "incomplete" and "built with AddressSanitizer" in asan.message, asan
    assert sum(f.blocks for f in plain.findings if f.is_lost_leak) == 3, plain
    assert any("not built by leakharness" in p for p in plain.problems), plain.problems


def test_check_build_on_a_go_program_with_a_cstring_leak(go_cache, tmp_path):
    proc = _cli("check", "--build", str(PROGRAMS / "cstring_leak" / "main.go"), "--out", str(tmp_path / "out"),
                "--cache", str(go_cache), "--no-html", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    jobs = _jobs(tmp_path / "out")
    assert set(jobs) == set(checkers.check_defaults("go"))  # Go sources: the Go checkers by default
    for tool in ("memcheck", "go-asan"):
        leaks = [f for f in jobs[tool]["findings"] if f["category"] == "leak" and f["leak_kind"] == "definite"]
        assert sum(f["bytes"] for f in leaks) == 21, tool
        assert leaks[0]["stack"][1]["function"] == "_Cfunc__Cmalloc" or any(
            fr["function"] == "_Cfunc__Cmalloc" for fr in leaks[0]["stack"])
        assert "C.CString" in leaks[0]["message"]
    assert jobs["cgocheck"]["status"] == "ok" and not jobs["cgocheck"]["findings"]
    # Both checkers' lines point at the Go call their builds recorded, not at cgo's stub (valgrind
    # splits the 3 blocks into records by the garbage past the stub: each is named).
    memcheck = [line.strip() for line in proc.stdout.splitlines() if "[memcheck] leak (definite)" in line]
    assert memcheck and all(line.endswith(" B at main.lookup main.go:15 (Go caller)") for line in memcheck), memcheck
    assert "[lsan] leak (definite) 21 B at main.lookup main.go:15 (Go caller)" in proc.stdout
    # go-asan also names the Go function that called C.CString, and its line.
    leak = next(f for f in jobs["go-asan"]["findings"] if f["leak_kind"] == "definite")
    caller = next(a for a in leak["aux_stacks"] if a["label"] == "Go caller")
    assert caller["frames"][0]["function"] == "main.lookup" and caller["frames"][0]["line"] == 15
    assert "main.lookup (main.go:15) 3 object(s) 21 B (3 of 3 object(s) named)" in leak["message"]


def test_check_build_on_a_go_program_that_crashes_inside_c(go_cache, tmp_path):
    proc = _cli("check", "--build", str(PROGRAMS / "crash_in_c"), "--out", str(tmp_path / "out"),
                "--cache", str(go_cache), "--no-html", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    jobs = _jobs(tmp_path / "out")
    for tool in checkers.check_defaults("go"):
        job = jobs[tool]
        assert job["status"] == "crashed" and job["signal"] == "SIGSEGV", tool
        crash = next(f for f in job["findings"] if f["tool"] == "go")
        names = [fr["function"] for fr in crash["stack"]]
        assert names[:3] == ["SSL_get_state", "main._Cfunc_SSL_get_state", "main.reportState"], tool
        assert crash["stack"][2]["file"].endswith("crash_in_c/main.go") and crash["stack"][2]["line"] == 17
        assert "inside C function SSL_get_state, called from Go main.reportState (main.go:17)" in crash["message"]
    # valgrind names the C frame itself too: the read through the nil pointer.
    assert any(f["category"] == "invalid-read" and f["stack"][0]["function"] == "SSL_get_state"
               for f in jobs["memcheck"]["findings"])


def test_go_asan_without_its_leak_check_is_incomplete_never_clean(go_cache, tmp_path):
    session = Session(out=tmp_path / "out", cache=go_cache, progress=False)
    results = session.check(session.check_tasks(sources=[PROGRAMS / "exits_early"], checkers=("go-asan", "memcheck")))
    jobs = {j.tool: j for j in results.jobs}
    assert jobs["go-asan"].status == "incomplete"
    assert "the leak check did not run" in jobs["go-asan"].message and "os.Exit" in jobs["go-asan"].message
    # memcheck's exit-time check runs anyway, and finds the 32 B no Go object holds.
    assert sum(f.bytes for f in jobs["memcheck"].findings if f.is_lost_leak) == 32
    # A block held through Go memory when the program leaves by os.Exit: Go's memory was never
    # hidden from valgrind, so "still reachable" proves nothing: incomplete, not clean.
    results = session.check(session.check_tasks(sources=[PROGRAMS / "exits_quiet"], checkers=("memcheck", "go-asan")))
    jobs = {j.tool: j for j in results.jobs}
    assert jobs["memcheck"].status == "incomplete" and "ended before main returned" in jobs["memcheck"].message
    assert not any(f.is_error for f in jobs["memcheck"].findings)
    assert jobs["go-asan"].status == "incomplete"


def test_recording_wrappers_leave_strings_and_other_integer_types_alone(go_cache, tmp_path):
    session = Session(out=tmp_path / "out", cache=go_cache, progress=False)
    results = session.check(session.check_tasks(sources=[PROGRAMS / "malloc_kinds"], checkers=("go-asan",)))
    job = results.jobs[0]
    assert job.status == "ok"
    stdout = tmp_path / "out" / "logs" / "malloc_kinds" / "check" / "go-asan" / "stdout.txt"
    assert stdout.read_text() == "true true C.malloc( C.free(\n"
    leaks = [f for f in job.findings if f.is_lost_leak]
    assert sum(f.bytes for f in leaks) == 24
    # One finding per Go line (LeakSanitizer's one record): each named by its line.
    lines = sorted(a.frames[0].line for f in leaks for a in f.aux_stacks if a.label == "Go caller")
    assert lines == [14, 15] and len(leaks) == 2
    assert all(a.frames[0].function == "main.main" for f in leaks for a in f.aux_stacks)
    assert len({f.signature for f in leaks}) == 2


def test_a_module_folder_and_a_prebuilt_go_binary(go_cache, tmp_path):
    session = Session(out=tmp_path / "out", cache=go_cache, progress=False)
    results = session.check(session.check_tasks(sources=[PROGRAMS / "module"], checkers=("go-asan",)))
    job = results.jobs[0]
    assert job.status == "ok"
    assert any("_Cfunc_EVP_MD_CTX_new" in f.functions() and f.bytes == 4 * 72 for f in job.findings if f.is_lost_leak)
    # A Go binary leakharness did not build: go-asan says it cannot check it, never clean.
    binary = tmp_path / "digest"
    env = {"GOCACHE": str(go_cache / "go-build"), "GOPROXY": "off", "GOTOOLCHAIN": "local"}
    proc = subprocess.run(["go", "build", "-asan", "-o", str(binary), "."], cwd=PROGRAMS / "module",
                          env={**os.environ, **env}, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=300, start_new_session=True)
    assert proc.returncode == 0, proc.stderr
    results = session.check(session.check_tasks(program=[str(binary)], checkers=("go-asan",)))
    assert results.jobs[0].status == "incomplete" and "no leakharness leak check" in results.jobs[0].message
    # A package that is no program: the same one line under every Go checker (cgocheck's plain
    # `go build` made an archive of it, then called that no Go program).
    results = session.check(session.check_tasks(sources=[PROGRAMS / "multi" / "digest"],
                                                checkers=checkers.check_defaults("go")))
    assert len(results.jobs) == 3 and all("no `func main()`" in j.message for j in results.jobs), results.jobs


def test_without_go_the_go_checkers_are_tool_missing(monkeypatch, tmp_path):
    from harness import gobuild

    monkeypatch.setattr(gobuild, "go_binary", lambda: None)
    gobuild.go_identity.cache_clear()
    try:
        session = Session(out=tmp_path / "out", cache=tmp_path / "cache", progress=False)
        results = session.check(session.check_tasks(sources=[PROGRAMS / "cstring_leak" / "main.go"],
                                                    checkers=checkers.check_defaults("go")))
    finally:
        gobuild.go_identity.cache_clear()
    assert {j.status for j in results.jobs} == {"tool-missing"}
    assert all("golang-go" in j.message for j in results.jobs)


def test_the_go_crash_parser_on_real_output_cut_short(go_cache, tmp_path):
    """The Go runtime's real crash output (from a run), whole, then cut inside the goroutine list
    and before it: the crash is kept; with no stack at all it is marked partial."""
    from harness.parsers.go import parse_go_crash
    from harness.parsers import parse_file

    session = Session(out=tmp_path / "out", cache=go_cache, progress=False)
    results = session.check(session.check_tasks(sources=[PROGRAMS / "crash_in_c"], checkers=("cgocheck",)))
    stderr = tmp_path / "out" / "logs" / "crash_in_c" / "check" / "cgocheck" / "stderr.txt"
    text = stderr.read_text()
    assert results.jobs[0].status == "crashed"
    whole = parse_file(str(stderr))  # sniffed as a Go crash, as `leakharness parse` would
    assert not whole.partial and whole.findings[0].stack[2].function == "main.reportState"
    cut = tmp_path / "cut.txt"
    cut.write_text(text[: text.index("goroutine 2 ")])
    assert parse_go_crash(str(cut)).findings[0].stack[2].function == "main.reportState"
    head = tmp_path / "head.txt"
    head.write_text(text[: text.index("goroutine 1 ")] + "goroutine 1 [syscall]:\n")
    cut_log = parse_go_crash(str(head))
    assert cut_log.partial and cut_log.findings[0].category == "crash"


def test_go_asan_leaves_out_the_runtimes_thread_start_not_the_programs_leak(go_cache, tmp_path):
    """A thread the Go runtime is still starting when the leak check runs holds its 24 B start
    arguments where LeakSanitizer does not look (seen once in CI, on cgo_go_pointer_in_c): go-asan's
    own suppressions leave that out, and only that. Without them this program shows the 24 B leak at
    x_cgo_thread_start in 9 runs of 10, so three runs would all miss it about once in a thousand."""
    session = Session(out=tmp_path / "out", cache=go_cache, progress=False)
    tasks = session.check_tasks(sources=[PROGRAMS / "thread_churn" / "main.go"], checkers=("go-asan",))
    for attempt in range(3):
        job = session.check(tasks).jobs[0]
        assert job.status == "ok", (attempt, job.problems)
        leaks = [(f.leak_kind, f.bytes, f.functions()[:2]) for f in job.findings if f.category == "leak"]
        assert leaks == [("definite", 40, ["__interceptor_malloc", "lose_session_id"])], attempt


def _go_caller_job(session, folder: Path):
    job = session.check(session.check_tasks(sources=[folder], checkers=("go-asan",))).jobs[0]
    assert job.status == "ok", (job.status, job.message, job.problems)
    leak = next(f for f in job.findings if f.is_lost_leak and "_Cfunc_EVP_MD_CTX_new" in f.functions())
    return job, leak


def test_go_asan_names_the_go_line_whose_c_call_leaked(go_cache, tmp_path):
    """Two Go functions call C.EVP_MD_CTX_new, one frees what it gets, one never does: LeakSanitizer's
    stacks of both end at the same cgo stub.  The go-asan build records what each C call returned to
    which Go line, and names the leaking one, with its caller; the shapes of C call the rewrite must
    leave alone (a void call, a dropped result, cgo's errno form, a conversion in a constant, defer)
    still build and the program prints what it prints without it."""
    from harness.grouping import group_findings

    session = Session(out=tmp_path / "out", cache=go_cache, progress=False)
    job, leak = _go_caller_job(session, PROGRAMS / "two_callers")
    stdout = tmp_path / "out" / "logs" / "two_callers" / "check" / "go-asan" / "stdout.txt"
    assert stdout.read_text() == "32 32\n" * 3 + "1 true 16 sha256\n"
    assert (leak.bytes, leak.blocks) == (3 * 72, 3)
    callers = [[(fr.function, fr.line) for fr in a.frames[:2]] for a in leak.aux_stacks if a.label == "Go caller"]
    assert callers == [[("main.newContext", 39), ("main.forgotten", 43)]]  # never main.hashed (line 29)
    assert "main.newContext (main.go:39, called from main.forgotten (main.go:43)) 3 object(s) 216 B" in leak.message
    assert "(3 of 3 object(s) named)" in leak.message
    # Where the bug is, as `check` and the report say it: the Go line, not the cgo stub.
    group = next(g for g in group_findings(job.findings) if g.root is leak)
    assert group.where() == "main.newContext main.go:39 (Go caller)"


def test_memcheck_names_the_go_line_whose_c_call_leaked(go_cache, tmp_path):
    """The same program under memcheck: valgrind's stacks also stop at the cgo stub, and its XML
    lists no addresses; the memcheck build records the same calls and lists the lost blocks
    (block_list), so each lost context is named at main.newContext, called from main.forgotten."""
    from harness.grouping import group_findings

    session = Session(out=tmp_path / "out", cache=go_cache, progress=False)
    job = session.check(session.check_tasks(sources=[PROGRAMS / "two_callers"], checkers=("memcheck",))).jobs[0]
    assert job.status == "ok", (job.status, job.message, job.problems)
    stdout = tmp_path / "out" / "logs" / "two_callers" / "check" / "memcheck" / "stdout.txt"
    assert stdout.read_text() == "32 32\n" * 3 + "1 true 16 sha256\n"
    leaks = [f for f in job.findings if f.leak_kind == "definite" and "_Cfunc_EVP_MD_CTX_new" in f.functions()]
    # valgrind may split them by the garbage past the stub: they are one again (merge_split_records)
    assert [(f.bytes, f.blocks) for f in leaks] == [(3 * 72, 3)]
    for leak in leaks:
        callers = [[(fr.function, fr.line) for fr in a.frames[:2]] for a in leak.aux_stacks if a.label == "Go caller"]
        assert callers == [[("main.newContext", 39), ("main.forgotten", 43)]], leak.message
        assert f"({leak.blocks} of {leak.blocks} object(s) named)" in leak.message
        assert "valgrind's stack stops at the cgo stack switch; the memcheck build recorded" in leak.message
    assert {g.where() for g in group_findings(job.findings) if g.root in leaks} == {"main.newContext main.go:39 (Go caller)"}


def test_each_go_line_is_one_leak_under_memcheck_and_go_asan_alike(go_cache, tmp_path):
    """1,000 C strings lost from two Go lines.  LeakSanitizer reports one record; valgrind splits
    the same blocks into several by the stale words it unwinds past cgo's stack switch (3 records
    at 50 iterations, 9 at 500, 31 at 25,000, their sizes changing from run to run).  memcheck's
    records that only that garbage told apart are one again, and then, as LeakSanitizer's, one
    finding per Go line the build recorded: both checkers report the same two leaks, by bytes,
    blocks and signature."""
    session = Session(out=tmp_path / "out", cache=go_cache, progress=False)
    result = session.check(session.check_tasks(sources=[PROGRAMS / "cstring_loop"], checkers=("memcheck", "go-asan")))
    assert sorted(job.tool for job in result.jobs) == ["go-asan", "memcheck"]
    seen = {}
    for job in result.jobs:
        assert job.status == "ok", (job.tool, job.status, job.message, job.problems)
        leaks = [f for f in job.findings if f.category == "leak" and "_Cfunc__Cmalloc" in f.functions()]
        assert [(f.leak_kind, f.bytes, f.blocks) for f in leaks] == [("definite", 4000, 500), ("definite", 3500, 500)]
        callers = [a.text.split(" (recorded")[0] for f in leaks for a in f.aux_stacks if a.label == "Go caller"]
        assert callers == ["main.other main.go:21: 500 object(s), 4000 B", "main.keep main.go:15: 500 object(s), 3500 B"]
        seen[job.tool] = [f.signature for f in leaks]
        if job.tool == "memcheck":
            for f in leaks:
                assert re.match(r"7,500 bytes in 1,000 blocks are definitely lost in loss records [\d, -]+ of \d+;",
                                f.message), f.message
    assert seen["memcheck"] == seen["go-asan"] and len(set(seen["memcheck"])) == 2


def test_a_known_go_leak_never_accepts_a_new_one_through_the_same_c_call(go_cache, tmp_path):
    """Every C.CString leak of a program has the same stack (cgo's stub, then the stack switch).
    Its signature used to be that stack's, `leak:_Cfunc__Cmalloc>runtime.asmcgocall`: a `known`
    entry or an LSan suppression written for one accepted every C.CString leak the program would
    ever add.  Named by the Go line the build recorded, the accepted leak stays accepted and a
    new one on another line fails, under both checkers."""
    from projectrun import lh

    project = tmp_path / "p"
    shutil.copytree(PROGRAMS / "known_line", project / "svc")
    (project / "leakharness.toml").write_text('[[target]]\nname = "svc"\ngo = "svc"\ntools = ["go-asan", "memcheck"]\n')
    proc = lh("run", "--no-html", cwd=project, cache=go_cache)
    assert proc.returncode == 1, said(proc)
    proc = lh("suppressions", "reports/latest", "--format", "known", "--out", "known.toml", cwd=project, cache=go_cache)
    listed = (project / "known.toml").read_text()
    assert re.search(r'"leak:_Cfunc__Cmalloc>main\.keep@[0-9a-f]{6}",  # \[go-asan, memcheck\] .* 7 B .*'
                     r'at _Cfunc__Cmalloc cgo < main\.keep main\.go:18', listed), listed
    proc = lh("suppressions", "reports/latest", "--format", "lsan", "--out", "lsan.supp", cwd=project, cache=go_cache)
    assert "\nleak:main.keep\n" in (project / "lsan.supp").read_text()
    with open(project / "leakharness.toml", "a") as fh:
        fh.write(listed)
    proc = lh("run", "--no-html", cwd=project, cache=go_cache)
    assert proc.returncode == 0, said(proc)
    # other's line now leaks too: the same C call, the same stack, another Go line.
    main_go = project / "svc" / "main.go"
    main_go.write_text(main_go.read_text().replace("C.free(unsafe.Pointer(cs)) // FREED", "_ = unsafe.Pointer(cs)"))
    proc = lh("run", "--no-html", cwd=project, cache=go_cache)
    assert proc.returncode == 1, said(proc)
    for tool in ("lsan", "memcheck"):
        assert f"  [{tool}] leak (definite) 7 B at main.other main.go:24 (Go caller)" in proc.stdout, said(proc)
        assert f"  known, accepted: [{tool}] leak (definite) 7 B at main.keep main.go:18 (Go caller)" in proc.stdout
    # The LSan suppression written for keep's leak suppresses it alone.
    proc = lh("check", "--build", "svc", "--tool", "go-asan", "--suppressions", "lsan.supp", "--no-html", "--out", "o",
              cwd=project, cache=go_cache)
    assert proc.returncode == 1 and "1 bug(s) in 1 record(s), 1 finding(s) suppressed" in proc.stdout, said(proc)
    assert "[lsan] leak (definite) 7 B at main.other main.go:24 (Go caller)" in proc.stdout


def test_a_module_at_go_1_17_builds_without_the_returns_record(go_cache, tmp_path):
    """Recording what C calls return takes a generic function, which a module at Go 1.17 cannot
    compile: such a module is built without it (its leaks found, their Go line not named)."""
    folder = tmp_path / "old"
    shutil.copytree(PROGRAMS / "two_callers", folder)
    (folder / "go.mod").write_text("module example.com/old\n\ngo 1.17\n")
    session = Session(out=tmp_path / "out", cache=go_cache, progress=False)
    job, leak = _go_caller_job(session, folder)
    assert (leak.bytes, leak.blocks) == (3 * 72, 3)
    assert not [a for a in leak.aux_stacks if a.label == "Go caller"]
    assert "the Go caller is hidden" in leak.message


def test_an_edit_in_another_package_or_a_replaced_module_rebuilds_the_program(go_cache, tmp_path):
    """A Go program's OpenSSL calls are often in its other packages (internal/hashing) or in a module
    beside it (go.mod's `replace ... => ../digest`).  Editing them must rebuild the program: a check
    after the edit reports what the edited program does, never what the cached binary did."""
    shutil.copytree(PROGRAMS / "multi", tmp_path / "src")
    app = tmp_path / "src" / "app"
    hashing = app / "internal" / "hashing" / "hashing.go"
    digest = tmp_path / "src" / "digest" / "digest.go"

    def check(n: int) -> tuple[int, list[dict]]:
        out = tmp_path / f"out{n}"
        proc = _cli("check", "--build", "cmd/app", "--tool", "go-asan", "--cache", str(go_cache), "--out", str(out),
                    cwd=app)
        job = _jobs(out)["go-asan"]
        assert job["status"] == "ok", proc.stdout + proc.stderr
        leaks = [f for f in job["findings"] if f["category"] == "leak" and f["leak_kind"] == "definite"]
        return proc.returncode, leaks

    code, leaks = check(1)  # internal/hashing's context leaks, named at its Go line (the package rewritten too)
    assert code == 1 and [f["bytes"] for f in leaks] == [72], leaks
    assert _go_callers(leaks[0]) == [("example.com/app/internal/hashing.newContext", "hashing.go", 13),
                                     ("example.com/app/internal/hashing.Sum", "hashing.go", 18)]
    hashing.write_text(hashing.read_text().replace("\treturn out[:n]", "\tC.EVP_MD_CTX_free(ctx)\n\treturn out[:n]"))
    code, leaks = check(2)  # fixed in the package: clean
    assert (code, leaks) == (0, [])
    digest.write_text(digest.read_text().replace("\tC.EVP_MD_CTX_free(ctx)\n", ""))
    code, leaks = check(3)  # a leak added in the replaced module
    assert code == 1 and [f["bytes"] for f in leaks] == [72], leaks
    assert _go_callers(leaks[0])[0] == ("example.com/digest.Size", "digest.go", 12)


def _go_callers(finding: dict) -> list[tuple[str, str, int]]:
    """The first two frames of a finding's "Go caller" stack (results.json): function, file name, line."""
    stacks = [a["frames"] for a in finding["aux_stacks"] if a["label"] == "Go caller"]
    assert len(stacks) == 1, finding["message"]
    return [(fr["function"], Path(fr["file"]).name, fr["line"]) for fr in stacks[0][:2]]


def test_a_package_test_binary_names_the_go_line_in_a_module_beside_it(go_cache, tmp_path):
    """go_test of internal/hashing, whose test calls the replaced module ../digest: the test binary
    records that module's C calls too (into the tested package's helper), so its leak is named at
    digest.Size's line, and hashing's own at newContext's."""
    shutil.copytree(PROGRAMS / "multi", tmp_path / "src")
    digest = tmp_path / "src" / "digest" / "digest.go"
    digest.write_text(digest.read_text().replace("\tC.EVP_MD_CTX_free(ctx)\n", ""))
    # Written here: a leakharness.toml in the repository is a test file to pytest's plugin.
    (tmp_path / "src" / "app" / "leakharness.toml").write_text(
        'tools = ["asan"]\n\n[[target]]\nname = "app"\ngo = "cmd/app"\n\n'
        '[[target]]\nname = "hashing-tests"\ngo_test = "internal/hashing"\n')
    out = tmp_path / "out"
    proc = _cli("run", "--cache", str(go_cache), "--out", str(out), cwd=tmp_path / "src" / "app")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    jobs = {j["pattern"]: j for j in json.loads((out / "results.json").read_text())["jobs"]}
    job = jobs["hashing-tests"]
    assert job["status"] == "ok", job
    leaks = sorted((f for f in job["findings"] if f["category"] == "leak" and f["leak_kind"] == "definite"),
                   key=lambda f: f["message"])
    assert [_go_callers(f)[0] for f in leaks] == [("example.com/app/internal/hashing.newContext", "hashing.go", 13),
                                                  ("example.com/digest.Size", "digest.go", 12)]
    assert "at example.com/digest.Size digest.go:12 (Go caller)" in proc.stdout


@pytest.mark.parametrize("include", ["-I", "-isystem "])
def test_a_header_or_library_outside_the_module_rebuilt_rebuilds_the_program(go_cache, tmp_path, include):
    """A cgo preamble's `#cgo CFLAGS: -I${SRCDIR}/../include` and `#cgo LDFLAGS: -L${SRCDIR}/../lib
    -lextra` reach outside the module: an edit to that header, or a new libextra.a, must make a new
    program, whose leak the check then finds.  With `-isystem` (a folder the compiler searches as
    it searches /usr/local/include) the header is found only by compiling the preamble (gcc -M)."""
    shutil.copytree(PROGRAMS / "outside", tmp_path / "src")
    src = tmp_path / "src"
    header, library = src / "include" / "extra.h", src / "lib" / "extra.c"
    main_go = src / "mod" / "main.go"
    main_go.write_text(main_go.read_text().replace("-I${SRCDIR}/../include", f"{include}${{SRCDIR}}/../include"))

    def archive() -> None:
        for argv in (["gcc", "-g", "-O0", "-fPIC", "-c", str(library), "-o", str(src / "lib" / "extra.o")],
                     ["ar", "rcs", str(src / "lib" / "libextra.a"), str(src / "lib" / "extra.o")]):
            subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)

    def check(n: int) -> tuple[int, list[tuple[int, str]]]:
        out = tmp_path / f"out{n}"
        proc = _cli("check", "--build", "mod", "--tool", "go-asan", "--cache", str(go_cache), "--out", str(out),
                    cwd=src)
        job = _jobs(out)["go-asan"]
        assert job["status"] == "ok", proc.stdout + proc.stderr
        return proc.returncode, [(f["bytes"], [fr["function"] for fr in f["stack"]])
                                 for f in job["findings"] if f["category"] == "leak" and f["leak_kind"] == "definite"]

    archive()
    assert check(1) == (0, [])
    header.write_text(header.read_text().replace("\treturn strdup(s);", "\tstrdup(s);\n\treturn strdup(s);"))
    code, leaks = check(2)  # the header's extra_copy now loses a copy
    assert code == 1 and [b for b, _ in leaks] == [6] and "extra_copy" in leaks[0][1], leaks
    header.write_text(header.read_text().replace("\tstrdup(s);\n", ""))
    library.write_text(library.read_text().replace("\treturn strdup(s);", "\tstrdup(s);\n\treturn strdup(s);"))
    archive()
    code, leaks = check(3)  # libextra.a's extra_dup now loses one
    assert code == 1 and [b for b, _ in leaks] == [6] and "extra_dup" in leaks[0][1], leaks


def test_a_linked_package_the_rewrite_breaks_leaves_the_others_recorded(go_cache, tmp_path):
    """../digest already declares a leakharnessKeep of its own, so its rewritten build does not
    compile: the build is made again without that package's record, and internal/hashing's leak is
    still named at its Go line; digest's is found, at the cgo stub."""
    shutil.copytree(PROGRAMS / "multi", tmp_path / "src")
    digest = tmp_path / "src" / "digest"
    (digest / "clash.go").write_text("package digest\n\nfunc leakharnessKeep() {}\n")
    (digest / "digest.go").write_text((digest / "digest.go").read_text().replace("\tC.EVP_MD_CTX_free(ctx)\n", ""))
    out = tmp_path / "out"
    proc = _cli("check", "--build", "cmd/app", "--tool", "go-asan", "--cache", str(go_cache), "--out", str(out),
                cwd=tmp_path / "src" / "app")
    job = _jobs(out)["go-asan"]
    assert proc.returncode == 1 and job["status"] == "ok", proc.stdout + proc.stderr
    leaks = [f for f in job["findings"] if f["category"] == "leak" and f["leak_kind"] == "definite"]
    named = [_go_callers(f)[0] for f in leaks if any(a["label"] == "Go caller" for a in f["aux_stacks"])]
    assert named == [("example.com/app/internal/hashing.newContext", "hashing.go", 13)], proc.stdout
    assert len(leaks) == 2 and "at _Cfunc_EVP_MD_CTX_new" in proc.stdout
