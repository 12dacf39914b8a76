"""memcheck on a Go program: what it reports that is never the program's bug is left out (the
job's problems count it), and the program's own bug next to it is still reported.  Real
programs, real valgrind.

- Go's word-wide length search (C.GoString) reads past the end of a short string's block, which
  valgrind may call an invalid read; a read of a freed string is still a use-after-free, the
  length search's own read included.
- valgrind takes the stack memory below a stack pointer for dead, and Go hands a freed goroutine
  stack's memory to another, so Go's own reads and writes there were reported as invalid now and
  then (2 of 30 runs of cgo_shared_ctx_goroutines::fixed on busy cores: runtime.copystack,
  runtime.mallocgc, the program's own goroutine).  An access valgrind places in Go's heap is left
  out; a C overflow is still reported.  The program marks a Go slice no-access on purpose, so
  that it happens on every run."""

from __future__ import annotations

import shutil

import pytest

from projectrun import ROOT, errors, jobs, lh, said
from realrun import have

GO_PROGRAMS = ROOT / "tests" / "programs" / "go"

pytestmark = pytest.mark.skipif(not (have("go") and have("valgrind")), reason="needs go and valgrind")


def check_memcheck(tmp_path, program: str, *args: str, exit_code: int) -> dict:
    """`check --build main.go --tool memcheck [-- ARGS]` of a test program: its one job."""
    shutil.copy(GO_PROGRAMS / program / "main.go", tmp_path / "main.go")
    proc = lh("check", "--build", "main.go", "--tool", "memcheck", "--no-html", *(("--", *args) if args else ()),
              cwd=tmp_path, cache=tmp_path / "c")
    assert proc.returncode == exit_code, said(proc)
    (job,) = jobs(tmp_path / "reports" / "check").values()
    return job


def test_a_length_search_past_a_live_block_is_not_a_bug_a_freed_string_is(tmp_path):
    job = check_memcheck(tmp_path, "gostring_scan", exit_code=0)
    assert errors(job) == []
    job = check_memcheck(tmp_path, "gostring_scan", "use-after-free", exit_code=1)
    assert {f["category"] for f in errors(job)} == {"use-after-free"}
    # The length search's own read of the freed string is reported, not left out as an over-read.
    assert any(f["stack"][0]["function"] == "indexbytebody" and "free'd" in f["aux_stacks"][0]["text"]
               for f in errors(job)), [f["signature"] for f in errors(job)]


def test_go_heap_marked_no_access_is_not_reported_a_c_overflow_is(tmp_path):
    job = check_memcheck(tmp_path, "go_heap_no_access", exit_code=0)
    assert job["status"] == "ok" and errors(job) == [], [f["signature"] for f in errors(job)]
    job = check_memcheck(tmp_path, "go_heap_no_access", "c-overflow", exit_code=1)
    (bug,) = errors(job)
    assert bug["category"] == "buffer-overflow" and "size 1" in bug["message"], bug
    assert bug["stack"][0]["function"] in ("memset", "__memset_avx2_unaligned_erms") or \
        any(fr["function"] == "overflow" for fr in bug["stack"]), bug["stack"]
