"""`leakharness parse`: what a user types and reads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.signatures import split_signature

from realrun import sanitizer, valgrind


def leakharness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def both_logs(memory_bugs, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    return valgrind(memory_bugs["plain"], "leaks", out_dir=out / "vg") + \
        sanitizer(memory_bugs["asan"], "leaks", out_dir=out / "asan")


def test_json_lists_findings_with_signatures(both_logs):
    proc = leakharness("parse", *both_logs)
    assert proc.returncode == 0, proc.stderr
    findings = json.loads(proc.stdout)
    lost = [f for f in findings if f["leak_kind"] in ("definite", "indirect")]
    assert {f["tool"] for f in lost} == {"memcheck", "lsan"}
    assert sum(f["bytes"] for f in lost if f["tool"] == "memcheck") == 228
    leak = next(f for f in findings if f["bytes"] == 100 and f["tool"] == "lsan")
    assert split_signature(leak["signature"])[0] == "leak:leak_direct>main"
    assert leak["stack"][1]["function"] == "leak_direct" and leak["stack"][1]["line"]
    assert leak["stack"][1]["address"].startswith("0x")


def test_text_table(both_logs):
    proc = leakharness("parse", "--format", "text", *both_logs)
    assert proc.returncode == 0
    assert "leak (definite)" in proc.stdout and "leak_direct memory_bugs.c:" in proc.stdout


def test_bad_input_is_one_line_naming_the_file(both_logs, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("nothing here\n")
    proc = leakharness("parse", both_logs[0], bad, tmp_path / "missing.xml")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in proc.stderr
    assert lines[0].startswith(f"leakharness: {bad}: not a valgrind XML file")
    assert str(tmp_path / "missing.xml") in lines[1] and "No such file" in lines[1]
    assert len(json.loads(proc.stdout)) > 0  # the good file's findings are not lost


def test_partial_file_is_reported_and_kept(both_logs, tmp_path):
    data = both_logs[0].read_bytes()
    cut = tmp_path / "cut.xml"
    cut.write_bytes(data[: data.rindex(b"<error>") + 10])
    proc = leakharness("parse", cut)
    assert proc.returncode == 0
    assert "partial" in proc.stderr and str(cut) in proc.stderr
    assert len(json.loads(proc.stdout)) == data.count(b"<error>") - 1


REPEATS = r"""
#include <stdlib.h>
#include <string.h>

static volatile long sink;

__attribute__((noinline)) static void read_past(int *p) { sink = p[4]; }

int main(void) {
    int *p = malloc(4 * sizeof *p);
    for (int i = 0; i < 3; i++)
        read_past(p);           /* one error, seen three times */
    char *q = malloc(8);
    free(q);
    sink = q[1];                /* use after free: a stack where it was freed, one where allocated */
    char *lost = malloc(24);
    memset(lost, 1, 24);
    lost = NULL;
    free(p);
    return 0;
}
"""


def test_json_is_each_findings_own_dict_with_its_count(tmp_path):
    """`parse` writes its JSON as it reads (no finding held), faster than json.dumps: it must be
    exactly what json.dumps makes of each Finding.to_dict(), counts from <errorcounts> included
    (which valgrind writes after the last error)."""
    from harness.parsers import parse_file
    from realrun import compile_c

    source = tmp_path / "repeats.c"
    source.write_text(REPEATS)
    (xml,) = valgrind(compile_c(source, tmp_path / "repeats", "-O0"), out_dir=tmp_path / "vg")
    proc = leakharness("parse", xml)
    assert proc.returncode == 0, proc.stderr
    findings = parse_file(str(xml)).findings
    assert proc.stdout == "[\n" + ",\n".join(json.dumps(f.to_dict()) for f in findings) + "\n]\n"
    shown = json.loads(proc.stdout)
    overflow = next(f for f in shown if f["category"] == "buffer-overflow")
    assert overflow["count"] == 3 and overflow["stack"][0]["function"] == "read_past"
    freed = next(f for f in shown if f["category"] == "use-after-free")
    assert [a["label"] for a in freed["aux_stacks"]] == ["freed", "allocated"]
    assert any(f["leak_kind"] == "definite" and f["bytes"] == 24 for f in shown)
