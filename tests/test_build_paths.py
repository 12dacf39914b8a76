"""A cached build is the binary of one place: the debug info names the folders its headers were
included from, and a signature's line hash reads them there.  A build made from a copy of the
fixtures (a test's, another checkout's) must not be reused for the catalog once the copy is gone:
its leaks would lose their line hashes (found by the full suite: peer_cert_get1's signatures, whose
own frame is lh_handshake in _common/lh_common.h, came back without @HASH)."""

from __future__ import annotations

import json
import shutil

from projectrun import ROOT, lh, said


def hashes(out) -> list[bool]:
    jobs = json.loads((out / "results.json").read_text())["jobs"]
    return ["@" in f["signature"] for j in jobs if j["variant"] == "leaky" for f in j["findings"]
            if f["category"] == "leak" and f["leak_kind"] == "definite"]


def test_a_build_from_a_deleted_copy_of_the_fixtures_is_not_reused(tmp_path):
    cache = tmp_path / "cache"
    copy = tmp_path / "fixtures"
    shutil.copytree(ROOT / "c_fixtures", copy)
    args = ("run", "--pattern", "peer_cert_get1", "--tool", "asan", "--no-html", "--quiet")
    proc = lh(*args, "--fixtures", copy, "--out", tmp_path / "from-copy", cwd=tmp_path, cache=cache)
    assert proc.returncode == 0, said(proc)
    shutil.rmtree(copy)
    proc = lh(*args, "--fresh", "--out", tmp_path / "built-in", cwd=tmp_path, cache=cache)  # run, not reused
    assert proc.returncode == 0, said(proc)
    found = hashes(tmp_path / "built-in")
    assert found and all(found), found
