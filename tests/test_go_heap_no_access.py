"""memcheck on a Go program: valgrind takes the stack memory below a stack pointer for dead, and
Go hands a freed goroutine stack's memory to another, so Go's own reads and writes there were
reported as invalid now and then (2 of 30 runs of cgo_shared_ctx_goroutines::fixed on busy cores:
runtime.copystack, runtime.mallocgc, the program's own goroutine).  An access valgrind places in
Go's heap is left out; a C bug is still reported.  A real program, real valgrind: the marking is
done on purpose so that it happens on every run."""

from __future__ import annotations

import shutil

import pytest

from projectrun import ROOT, errors, jobs, lh, said
from realrun import have

PROGRAM = ROOT / "tests" / "programs" / "go" / "go_heap_no_access" / "main.go"

pytestmark = pytest.mark.skipif(not (have("go") and have("valgrind")), reason="needs go and valgrind")


def test_go_heap_marked_no_access_is_not_reported_a_c_overflow_is(tmp_path):
    shutil.copy(PROGRAM, tmp_path / "main.go")
    proc = lh("check", "--build", "main.go", "--tool", "memcheck", "--no-html", cwd=tmp_path, cache=tmp_path / "c")
    assert proc.returncode == 0, said(proc)
    (job,) = jobs(tmp_path / "reports" / "check").values()
    assert job["status"] == "ok" and errors(job) == [], [f["signature"] for f in errors(job)]
    proc = lh("check", "--build", "main.go", "--tool", "memcheck", "--no-html", "--", "c-overflow",
              cwd=tmp_path, cache=tmp_path / "c")
    assert proc.returncode == 1, said(proc)
    (job,) = jobs(tmp_path / "reports" / "check").values()
    (bug,) = errors(job)
    assert bug["category"] == "buffer-overflow" and "size 1" in bug["message"], bug
    assert bug["stack"][0]["function"] in ("memset", "__memset_avx2_unaligned_erms") or \
        any(fr["function"] == "overflow" for fr in bug["stack"]), bug["stack"]
