"""Tens of thousands of leak records in one process: `parse --format text`, `check`'s summary and
the report all group them by root cause (grouping.py), and each must finish and stay right.

The records come from real runs of a small program that leaks two trees (a definite root owning
three indirect blocks each), under valgrind and under ASan; its log's records are then copied,
as parse_bench.py copies them, until one process reports 50,000 of them: the size of a big
program's leak report.  Identical stacks in one process are the hardest case for the grouping
(every copy of a root is as good an owner as every other), and the one that crashed it
(a RecursionError after minutes).  Nothing here is timed: bench/ measures the speed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from realrun import compile_c, have, sanitizer, valgrind

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 50_000

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

_ERROR = re.compile(rb"<error>.*?</error>\n?", re.S)
_UNIQUE = re.compile(rb"<unique>0x[0-9a-f]+</unique>")
_LSAN_RECORD = re.compile(r"^(?:Direct|Indirect) leak of .*?\n\n", re.S | re.M)


def lh(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
                          start_new_session=True)


def multiplied_xml(real: Path, out: Path, records: int) -> Path:
    """The real file with its <error>s copied, each copy with its own <unique>, to `records`."""
    data = real.read_bytes()
    errors = _ERROR.findall(data)
    assert errors and records % len(errors) == 0, len(errors)
    first, last = _ERROR.search(data).start(), list(_ERROR.finditer(data))[-1].end()
    copies = []
    for n in range(records // len(errors)):
        for k, block in enumerate(errors):
            copies.append(_UNIQUE.sub(b"<unique>0x%x</unique>" % (n * len(errors) + k), block, count=1))
    out.write_bytes(data[:first] + b"".join(copies) + data[last:])
    return out


def multiplied_lsan(real: Path, out: Path, records: int) -> Path:
    text = real.read_text()
    found = _LSAN_RECORD.findall(text)
    assert found and records % len(found) == 0, found
    first = _LSAN_RECORD.search(text).start()
    last = list(_LSAN_RECORD.finditer(text))[-1].end()
    out.write_text(text[:first] + "".join(found) * (records // len(found)) + text[last:])
    return out


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> Path:
    if not (have("gcc") and have("valgrind")):
        pytest.skip("needs gcc and valgrind")
    folder = tmp_path_factory.mktemp("scale")
    (folder / "trees.c").write_text(TREES)
    return folder


def bug_rows(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("leak")]


def test_fifty_thousand_valgrind_records_each_root_owning_its_tree(trees):
    """valgrind says how many indirect bytes each root owns: every one of the 12,500 roots gets
    exactly its own tree (16 B + 916 B, or 16 B + 316 B), none left over."""
    binary = compile_c(trees / "trees.c", trees / "trees", "-O0")
    (xml,) = valgrind(binary, out_dir=trees / "vg")
    big = multiplied_xml(xml, trees / "trees-50000.xml", RECORDS)
    proc = lh("parse", big.name, "--format", "text", cwd=trees)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = bug_rows(proc.stdout)
    roots = RECORDS // 4  # each tree: one definite root, three indirect records
    assert len(rows) == roots and f"\n{roots} bug(s)\n" in proc.stdout, proc.stdout[-500:]
    sizes = sorted({re.split(r"\s{2,}", row)[1] for row in rows})
    assert sizes == ["16 + 316 indirect", "16 + 916 indirect"], sizes
    assert sum("916 indirect" in row for row in rows) == roots // 2
    assert "make_tree trees.c:7" in rows[0]


def test_fifty_thousand_leaksanitizer_records_all_owned(trees):
    """LeakSanitizer gives no totals: every indirect record goes to a root sharing its path from
    main (the longest), so none is left a root of its own and no byte is lost or counted twice."""
    binary = compile_c(trees / "trees.c", trees / "trees-asan", "-O0", "-fsanitize=address",
                       "-fno-omit-frame-pointer")
    (log,) = sanitizer(binary, out_dir=trees / "asan")
    big = multiplied_lsan(log, trees / "trees-50000.lsan", RECORDS)
    proc = lh("parse", big.name, "--format", "text", cwd=trees)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = bug_rows(proc.stdout)
    roots = RECORDS // 4
    assert len(rows) == roots and all(row.startswith("leak (definite)") for row in rows), rows[:3]
    total = 0
    for row in rows:
        m = re.match(r"\S+ \S+\s+(\d+)(?: \+ (\d+) indirect)?", row)
        total += int(m.group(1)) + int(m.group(2) or 0)
    assert total == (16 + 916 + 16 + 316) * (RECORDS // 8)


def test_report_of_fifty_thousand_records_is_whole_and_bounded(trees):
    """`report` of the 50,000-record valgrind file: every record in results.json and SARIF (up
    to code scanning's 25,000), each root cause shown once with its records summed, and pages
    that do not grow with the number of records (one badge per checker, not per record)."""
    import json

    from harness.report.sarif import MAX_RESULTS

    big = trees / "trees-50000.xml"
    if not big.is_file():
        binary = compile_c(trees / "trees.c", trees / "trees", "-O0")
        (xml,) = valgrind(binary, out_dir=trees / "vg")
        multiplied_xml(xml, big, RECORDS)
    proc = lh("report", big.name, "--out", "report", cwd=trees)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = trees / "report"
    (job,) = json.loads((out / "results.json").read_text())["jobs"]
    assert len(job["findings"]) == RECORDS
    sarif = json.loads((out / "leakharness.sarif").read_text())
    assert len(sarif["runs"][0]["results"]) == MAX_RESULTS
    page = (out / "patterns" / "trees-50000.xml.html").read_text()
    assert len(page) < 200_000, len(page)
    # Both trees' roots are allocated on one line of make_tree: one bug (one signature), shown
    # with the biggest tree, its 12,500 records summed in one badge: 16 B each, 316 B or 916 B
    # indirect each.
    assert page.count('class="badge saw">memcheck') == 1
    assert "leak (definite) 16 B + 916 B indirect at make_tree trees.c:7" in page
    assert "memcheck 195.3 KB + 7.3 MB ×12500" in page  # 12,500 x 16 B; 6,250 x (916 B + 316 B)
