"""memcheck on a Go program reading C strings (C.GoString): Go's word-wide length search reads
past the end of a short string's block, which valgrind may call an invalid read; that is not the
program's bug and is left out, while a read of a freed string still is one (use-after-free), the
length search's own read included.  A real program, real valgrind."""

from __future__ import annotations

import shutil

import pytest

from projectrun import ROOT, errors, jobs, lh, said
from realrun import have

PROGRAM = ROOT / "tests" / "programs" / "go" / "gostring_scan" / "main.go"

pytestmark = pytest.mark.skipif(not (have("go") and have("valgrind")), reason="needs go and valgrind")


def test_a_length_search_past_a_live_block_is_not_a_bug_a_freed_string_is(tmp_path):
    shutil.copy(PROGRAM, tmp_path / "main.go")
    proc = lh("check", "--build", "main.go", "--tool", "memcheck", "--no-html", cwd=tmp_path, cache=tmp_path / "c")
    assert proc.returncode == 0, said(proc)
    (job,) = jobs(tmp_path / "reports" / "check").values()
    assert errors(job) == []
    proc = lh("check", "--build", "main.go", "--tool", "memcheck", "--no-html", "--", "use-after-free",
              cwd=tmp_path, cache=tmp_path / "c")
    assert proc.returncode == 1, said(proc)
    (job,) = jobs(tmp_path / "reports" / "check").values()
    assert {f["category"] for f in errors(job)} == {"use-after-free"}
    # The length search's own read of the freed string is reported, not left out as an over-read.
    assert any(f["stack"][0]["function"] == "indexbytebody" and "free'd" in f["aux_stacks"][0]["text"]
               for f in errors(job)), [f["signature"] for f in errors(job)]
