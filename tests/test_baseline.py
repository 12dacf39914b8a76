"""Baselines: `leakharness suppressions` writes what a run found, `check --suppressions` then
reports only what is new.  Real programs, built by gcc, run under valgrind and ASan, through the
command line a user types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.results import load_results
from realrun import have

pytestmark = pytest.mark.skipif(not (have("gcc") and have("valgrind")), reason="needs gcc and valgrind")

# Two known leaks, one through a helper and one right in main.
OLD = """\
#include <stdlib.h>
#include <string.h>

static char *make_name(const char *s) {
    char *p = malloc(strlen(s) + 1);
    strcpy(p, s);
    return p;
}

int main(void) {
    char *name = make_name("known");
    char *buf = malloc(72);
    memset(buf, 0, 72);
    name = buf = NULL;
    return 0;
}
"""

# The next version: lines added above (the known leaks move down), and a new 4,096 B leak in
# main, the function that already leaks.
NEW = OLD.replace("int main(void) {\n", """\
/* The configuration, read once. */
static int verbose;

int main(void) {
    char *extra = malloc(4096);
    memset(extra, 1, 4096);
    extra = NULL;
""")
NEW_LINE = NEW.splitlines().index("    char *extra = malloc(4096);") + 1


def leakharness(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          timeout=900, stdin=subprocess.DEVNULL, start_new_session=True)


def check(source: Path, out: Path, *extra) -> subprocess.CompletedProcess:
    return leakharness("check", "--quiet", "--no-html", "--build", source, "--tool", "memcheck", "--tool", "asan",
                       "--out", out, *extra)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("baseline")
    source = work / "app.c"
    source.write_text(OLD)
    first = check(source, work / "first")
    assert first.returncode == 1, first.stdout + first.stderr
    files = {}
    for fmt in ("valgrind", "lsan"):
        files[fmt] = work / f"baseline.{fmt}.supp"
        made = leakharness("suppressions", work / "first", "--format", fmt, "--out", files[fmt])
        assert made.returncode == 0, made.stderr
    again = check(source, work / "again", "--suppressions", files["valgrind"])
    assert again.returncode == 0, again.stdout  # the baseline covers its own run, under both tools
    source.write_text(NEW)
    files["source"] = source
    files["work"] = work
    return files


@pytest.mark.parametrize("fmt", ["valgrind", "lsan"])
def test_only_the_new_leak_is_reported(baseline, fmt):
    out = baseline["work"] / f"new-{fmt}"
    proc = check(baseline["source"], out, "--suppressions", baseline[fmt])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = load_results(out)
    assert {j.tool for j in results.jobs} == {"memcheck", "asan"}
    for job in results.jobs:
        lost = [f for f in job.findings if f.is_lost_leak]
        new = [f for f in lost if not f.suppressed]
        assert len(new) == 1, (job.tool, [f.summary() for f in new])
        (leak,) = new
        own = next(fr for fr in leak.stack if fr.function == "main")
        assert (leak.bytes, own.line) == (4096, NEW_LINE), leak.summary()
        known = sorted(f.bytes for f in lost if f.suppressed)
        assert known == [6, 72], job.tool  # kept and marked, not dropped, though their lines moved
        assert "4096 B" in proc.stdout


def test_valgrind_baseline_holds_the_stack_up_to_main(baseline):
    text = baseline["valgrind"].read_text()
    entries = [e for e in text.split("}\n") if e.strip()]
    assert len(entries) == 2
    helper = next(e for e in entries if "make_name" in e)
    lines = [ln.strip() for ln in helper.splitlines()]
    assert lines[lines.index("match-leak-kinds: definite,indirect") + 1:] == ["fun:*malloc", "fun:make_name", "fun:main"]
    lsan = baseline["lsan"].read_text()
    assert "\nleak:make_name\n" in lsan and lsan.count("# leakharness:leak:") == 2


CLONED = """\
#include <stdlib.h>
#include <string.h>

static __attribute__((noinline)) char *make_buf(size_t n, int fill) {
    char *p = malloc(n);
    memset(p, fill, n);
    return p;
}

int main(int argc, char **argv) {
    char *a = make_buf(64, 1);
    char *b = make_buf(128, 1);
    (void)argv;
    if (argc > 5) {
        free(a);
        free(b);
    }
    return 0;
}
"""


def test_a_baseline_of_an_O2_build_matches_its_own_clones(tmp_path):
    source = tmp_path / "cloned.c"
    source.write_text(CLONED)

    def run(name, *extra):
        return leakharness("check", "--quiet", "--no-html", "--build", source, "--out", tmp_path / name, *extra)

    first = run("first", "--tool", "memcheck", "--cflags=-O2")
    assert first.returncode == 1, first.stdout + first.stderr
    functions = {fr.function for j in load_results(tmp_path / "first").jobs for f in j.findings for fr in f.stack}
    assert "make_buf.constprop.0" in functions  # gcc -O2 cloned it: the case to cover
    supp = tmp_path / "o2.supp"
    assert leakharness("suppressions", tmp_path / "first", "--format", "valgrind", "--out", supp).returncode == 0
    assert "fun:make_buf.constprop.0" in supp.read_text() and "fun:make_buf\n" not in supp.read_text()
    again = run("again", "--tool", "memcheck", "--cflags=-O2", "--suppressions", supp)
    assert again.returncode == 0, again.stdout + again.stderr
    # ... and an -O0 build of the same source, where there is no clone, under both tools.
    plain = run("plain", "--tool", "memcheck", "--tool", "asan", "--suppressions", supp)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    for job in load_results(tmp_path / "plain").jobs:
        lost = [f for f in job.findings if f.is_lost_leak]
        assert sorted(f.bytes for f in lost) == [64, 128] and all(f.suppressed for f in lost), job.tool


@pytest.mark.parametrize("fmt", ["valgrind", "lsan"])
def test_a_frame_name_holding_a_newline_writes_no_entry_of_its_own(baseline, tmp_path, fmt):
    """A results folder given to `suppressions` is untrusted.  A frame's function edited to hold
    a newline and an entry of its own (`fun:*` with match-leak-kinds: all; `leak:*`) made a file
    that hid every leak of every program.  Such a finding is left out, said on stderr and in
    the file; the real findings keep their entries."""
    import json
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(baseline["work"] / "first", copy)
    data = json.loads((copy / "results.json").read_text())
    injected = {"valgrind": "make_name\n}\n{\n   everything\n   Memcheck:Leak\n   match-leak-kinds: all\n   ...\n"
                            "   fun:*\n}\n{\n   tail\n   Memcheck:Leak\n   fun:x",
                "lsan": "make_name\nleak:*\n#"}[fmt]
    edited = 0
    for job in data["jobs"]:
        for finding in job["findings"]:
            for frame in finding["stack"]:
                if frame.get("function") == "make_name":
                    frame["function"] = injected
                    edited += 1
    assert edited
    (copy / "results.json").write_text(json.dumps(data))
    made = leakharness("suppressions", copy, "--format", fmt, "--out", tmp_path / "out.supp")
    assert made.returncode == 0, made.stderr
    text = (tmp_path / "out.supp").read_text()
    assert "fun:*\n" not in text and "leak:*" not in text and "everything" not in text, text
    assert "left out" in made.stderr and "control character" in made.stderr, made.stderr
    assert ("fun:main" in text) if fmt == "valgrind" else ("leak:main" in text), text
