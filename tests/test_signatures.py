"""Signatures and root-cause groups, on programs compiled and run for real under valgrind and ASan.

A signature must tell allocation sites apart (two leaks on two lines of main are two bugs),
stay the same across tools, runs and unrelated edits, and a definite leak must come with the
indirect leaks it owns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.findings import Finding
from harness.grouping import group_findings
from harness.signatures import signature_matches, split_signature
from harness.parsers import parse_file
from realrun import compile_c, have, sanitizer, valgrind

pytestmark = pytest.mark.skipif(not (have("gcc") and have("valgrind")), reason="needs gcc and valgrind")

# Three leaks in main on three lines, one through a helper: every one its own bug.
LEAKS = """\
#include <stdlib.h>
#include <string.h>

static char *make_name(const char *s) {
    char *p = malloc(strlen(s) + 1);
    strcpy(p, s);
    return p;
}

int main(void) {
    char *a = malloc(10);
    char *b = malloc(20);
    char *c = make_name("leak");
    a = b = c = NULL;
    return 0;
}
"""

# Two trees built by one function from two lines of main: each root owns its nodes.
TREES = """\
#include <stdlib.h>
#include <string.h>

struct node { char *name; struct node *child; };

static struct node *make_tree(size_t size) {
    struct node *n = calloc(1, sizeof *n);
    n->name = malloc(size);
    memset(n->name, 'x', size);
    n->child = calloc(1, sizeof *n);
    n->child->name = malloc(size * 2);
    return n;
}

int main(void) {
    struct node *small = make_tree(100);
    struct node *big = make_tree(300);
    small = big = NULL;
    return 0;
}
"""


def _findings(paths) -> list[Finding]:
    return [f for p in paths for f in parse_file(p).findings]


def _lost(findings) -> list[Finding]:
    return [f for f in findings if f.is_lost_leak]


def _run_both(tmp: Path, name: str, text: str, strip: bool = False) -> dict[str, list[Finding]]:
    tmp.mkdir(parents=True, exist_ok=True)
    source = tmp / f"{name}.c"
    source.write_text(text)
    plain = compile_c(source, tmp / name, "-O0")
    asan = compile_c(source, tmp / f"{name}-asan", "-O0", "-fsanitize=address", "-fno-omit-frame-pointer")
    if strip:
        for binary in (plain, asan):
            subprocess.run(["strip", str(binary)], check=True, stdin=subprocess.DEVNULL, timeout=60,
                           start_new_session=True)
    return {"memcheck": _findings(valgrind(plain, out_dir=tmp / "vg")),
            "asan": _findings(sanitizer(asan, out_dir=tmp / "asan"))}


@pytest.fixture(scope="module")
def leaks(tmp_path_factory) -> dict[str, list[Finding]]:
    return _run_both(tmp_path_factory.mktemp("leaks"), "leaks", LEAKS)


def test_leaks_on_different_lines_of_one_function_differ(leaks):
    memcheck = _lost(leaks["memcheck"])
    assert sorted(f.bytes for f in memcheck) == [5, 10, 20]
    sigs = {f.bytes: f.signature for f in memcheck}
    assert len(set(sigs.values())) == 3
    assert split_signature(sigs[10])[0] == split_signature(sigs[20])[0] == "leak:main"
    assert split_signature(sigs[5])[0] == "leak:make_name>main"
    assert all(split_signature(s)[1] for s in sigs.values())  # each carries its line's hash


def test_the_same_leaks_have_the_same_signatures_under_valgrind_and_asan(leaks):
    assert {f.signature for f in _lost(leaks["memcheck"])} == {f.signature for f in _lost(leaks["asan"])}


def test_unrelated_edits_keep_signatures_a_changed_line_does_not(tmp_path, leaks):
    before = {f.bytes: f.signature for f in _lost(leaks["memcheck"])}
    # Lines inserted above, the allocation lines re-indented: the same bugs.
    edited = LEAKS.replace("int main(void) {", "/* a comment\n   over two lines */\nint main(void) {\n    int unused = 0;\n    (void)unused;")
    edited = edited.replace("    char *a = malloc(10);", "        char *a   =  malloc(10);")
    after = {f.bytes: f.signature for f in _lost(_run_both(tmp_path / "edited", "leaks", edited)["memcheck"])}
    assert after == before
    # The allocation itself changed: another site.
    changed = LEAKS.replace("malloc(20)", "malloc(20 + 0)")
    again = {f.bytes: f.signature for f in _lost(_run_both(tmp_path / "changed", "leaks", changed)["memcheck"])}
    assert again[20] != before[20] and again[10] == before[10]


def test_unreadable_source_falls_back_to_frames_and_stored_hash_is_kept(tmp_path):
    """A finding whose source cannot be read is named by its frames alone.  A known entry with a
    line hash does not cover it (it could be any line of the function: a new leak beside the
    accepted one passed as known); one without a hash does."""
    runs = _run_both(tmp_path, "gone", LEAKS)
    stored = [f.to_dict() for f in _lost(runs["memcheck"])]
    (tmp_path / "gone.c").unlink()
    again = _lost(_findings(sorted((tmp_path / "vg").glob("vg.*.xml"))))
    assert {f.signature for f in again} == {"leak:main", "leak:make_name>main"}  # no hash, no error
    # Read back from results, a signature keeps the hash made when the source was there.
    reread = [Finding.from_dict(json.loads(json.dumps(d))) for d in stored]
    assert [f.signature for f in reread] == [d["signature"] for d in stored]
    assert not any(signature_matches(d["signature"], split_signature(d["signature"])[0]) for d in stored)
    assert all(signature_matches(split_signature(d["signature"])[0], d["signature"]) for d in stored)


def test_stripped_binary_leaks_are_told_apart_by_module_and_offset(tmp_path):
    runs = _run_both(tmp_path, "stripped", LEAKS, strip=True)
    for tool, findings in runs.items():
        lost = _lost(findings)
        assert len(lost) == 3, tool
        sigs = {f.signature for f in lost}
        assert len(sigs) == 3, (tool, sigs)
        assert all("stripped" in s for s in sigs), sigs
    # Another run of the same binary: the same names.
    again = _lost(_findings(valgrind(tmp_path / "stripped", out_dir=tmp_path / "vg2")))
    assert {f.signature for f in again} == {f.signature for f in _lost(runs["memcheck"])}


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, list[Finding]]:
    return _run_both(tmp_path_factory.mktemp("trees"), "trees", TREES)


@pytest.mark.parametrize("tool", ["memcheck", "asan"])
def test_each_definite_leak_owns_its_indirect_leaks(trees, tool):
    groups = group_findings(_lost(trees[tool]))
    assert len(groups) == 2, [g.headline() for g in groups]
    big, small = groups  # the most bytes first
    assert (big.root.leak_kind, big.bytes, big.indirect_bytes) == ("definite", 16, 300 + 16 + 600)
    assert (small.root.leak_kind, small.bytes, small.indirect_bytes) == ("definite", 16, 100 + 16 + 200)
    assert all(f.leak_kind == "indirect" for g in groups for f in g.owned)
    assert big.headline() == "leak (definite) 16 B + 916 B indirect at make_tree trees.c:7"
    # valgrind says what each root owns, and the assignment spends it exactly; LSan does not say.
    assert {g.checked for g in groups} == ({True} if tool == "memcheck" else {None})


def test_memory_errors_come_first_then_leaks_by_kind_and_bytes(trees):
    findings = list(trees["memcheck"])
    error = Finding(tool="memcheck", kind="InvalidRead", category="invalid-read", message="Invalid read of size 4",
                    stack=findings[0].stack)
    groups = group_findings(findings + [error])
    assert groups[0].root is error
    ranks = [g.root.leak_kind for g in groups[1:]]
    assert ranks == sorted(ranks, key=["definite", "indirect", "possible", "reachable"].index)


def leakharness(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          timeout=900, stdin=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture(scope="module")
def catalog_results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("catalog")
    proc = leakharness("run", "--quiet", "--no-html", "--pattern", "ssl_error_path", "--pattern", "peer_cert_get1",
                       "--tool", "memcheck", "--tool", "asan", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("pattern", ["ssl_error_path", "peer_cert_get1"])
def test_catalog_leak_signatures_agree_between_memcheck_and_asan(catalog_results, pattern):
    sigs = {}
    for job in catalog_results["jobs"]:
        if job["pattern"] == pattern and job["variant"] == "leaky":
            sigs[job["tool"]] = {f["signature"] for f in job["findings"]
                                 if f["category"] == "leak" and f["leak_kind"] in ("definite", "indirect")}
    assert sigs["memcheck"] and sigs["memcheck"] == sigs["asan"]
    assert all(split_signature(s)[1] for s in sigs["memcheck"])  # the fixtures' sources were read


def test_ssl_error_path_is_one_ssl_leak_with_its_indirect_bytes(catalog_results):
    for job in catalog_results["jobs"]:
        if job["pattern"] == "ssl_error_path" and job["variant"] == "leaky":
            groups = group_findings([Finding.from_dict(f) for f in job["findings"]])
            first = groups[0]
            assert first.root.leak_kind == "definite" and first.bytes == 15216, first.headline()
            assert first.headline().startswith("leak (definite) 15216 B + ")
            assert "setup_connection ssl_error_path-leaky.c:" in first.headline()
            assert not [g for g in groups if g.root.leak_kind == "indirect"]  # every indirect record owned
            if job["tool"] == "memcheck":
                assert first.checked and first.indirect_bytes == first.root.indirect_bytes > 10_000


TWICE = """\
#include <stdlib.h>
static char *kept[2];
void work(void) {
    char *p;
    p = malloc(32);
    kept[0] = KEEP_FIRST;
    p = malloc(32);
    kept[1] = KEEP_SECOND;
}
int main(void) { work(); return 0; }
"""


def test_the_same_text_on_two_lines_names_two_bugs(tmp_path):
    """`p = malloc(32);` twice in one function: the line hash named the text only, so a leak on
    the second line had the first's signature, and a known entry written for one accepted the
    other.  The second occurrence's hash says it is the second; the first keeps the hash it had."""
    import hashlib

    first = hashlib.sha1(b"p = malloc(32);").hexdigest()[:6]
    signatures = {}
    for leaking, text in (("first", TWICE.replace("KEEP_FIRST", "0").replace("KEEP_SECOND", "p")),
                          ("second", TWICE.replace("KEEP_FIRST", "p").replace("KEEP_SECOND", "0"))):
        runs = _run_both(tmp_path / leaking, "twice", text)
        for tool, findings in runs.items():
            lost = _lost(findings)
            assert len(lost) == 1, (tool, leaking, [f.signature for f in lost])
            signatures[(tool, leaking)] = lost[0].signature
    for tool in ("memcheck", "asan"):
        assert signatures[(tool, "first")] == f"leak:work>main@{first}", signatures
        assert signatures[(tool, "second")].startswith("leak:work>main@"), signatures
        assert signatures[(tool, "second")] != signatures[(tool, "first")], signatures
