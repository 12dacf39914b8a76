"""Reports: HTML, SARIF (validated against the official schema), suppressions and merged shards,
from real runs."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.catalog import load_catalog
from harness.control import Session, run_catalog, run_check
from harness.tasks import check_tasks
from harness.signatures import split_signature
from harness.report import CSP, write_report
from harness.report.sarif import document as sarif_document
from harness.results import Results, load_results, write_results
from realrun import PROGRAMS

SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "schemas" / "sarif-schema-2.1.0.json"
HOSTILE = "<img src=x onerror=\"document.title='pwned'\">"


def leakharness(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL, **kw)


@pytest.fixture(scope="module")
def catalog_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("catalog-run")
    patterns = load_catalog(ids=["ssl_error_path", "plain_double_free"])
    run_catalog(patterns, out, checkers=("memcheck", "asan"), progress=False)
    write_report([out], out)
    return out


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """A user's program whose file name is HTML: it lands in debug info, stacks and names."""
    work = tmp_path_factory.mktemp("hostile")
    source = work / f"{HOSTILE}.c"
    shutil.copyfile(PROGRAMS / "memory_bugs.c", source)
    out = work / "out"
    results = run_check(check_tasks(sources=(source,), checkers=("memcheck", "asan"), cflags=("-pthread",),
                                    args=("leaks",)), out, progress=False)
    assert {j.status for j in results.jobs} == {"ok"}
    write_report([out], out)
    return out


def test_index_has_the_matrix_and_loads_nothing_remote(catalog_run):
    page = (catalog_run / "index.html").read_text()
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert meta and html.unescape(meta.group(1)) == CSP and "default-src 'none'" in CSP
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert 'id="matrix"' in page
    for cell in ("ssl_error_path", "plain_double_free", "leak 42", "double-free"):
        assert cell in page
    pattern_page = (catalog_run / "patterns" / "ssl_error_path.html").read_text()
    assert 'class="hl"' in pattern_page  # allocation lines marked in the source
    assert "The fix: leaky → fixed" in pattern_page and "SSL_new" in pattern_page
    assert "library frame" in pattern_page  # OpenSSL frames folded
    for log in re.findall(r'href="\.\./([^"]+)"', pattern_page):
        if log.endswith((".xml",)) or "sanitizer." in log:
            assert (catalog_run / log).is_file(), log


def test_cross_checker_view_names_who_missed_and_why(catalog_run):
    page = (catalog_run / "signatures.html").read_text()
    assert "leak:SSL_new&gt;setup_connection&gt;main" in page or "leak:SSL_new" in page
    # plain_double_free: both memcheck and asan see the double free
    assert "double-free:" in page


def test_hostile_file_name_stays_text(hostile_run):
    pages = [hostile_run / "index.html", *sorted((hostile_run / "patterns").glob("*.html"))]
    for page in pages:
        text = page.read_text()
        assert HOSTILE not in text, page
        assert "&lt;img src=x onerror=" in text, page


def test_sarif_is_valid_and_located_at_the_program(catalog_run):
    data = json.loads((catalog_run / "leakharness.sarif").read_text())
    assert data == sarif_document(load_results(catalog_run), catalog_run)  # the stream says what the document says
    if not SCHEMA.is_file():
        pytest.skip(f"{SCHEMA} not present: the SARIF schema comes with ../shared/schemas")
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    run = data["runs"][0]
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} >= {"leak", "double-free"}
    leak = next(r for r in run["results"] if r["partialFingerprints"]["leakharness/signature/v2"].startswith("leak:SSL_new"))
    loc = leak["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"].endswith("ssl_error_path-leaky.c") and loc["region"]["startLine"] > 0


def test_suppressions_baseline_then_counted_not_failing(tmp_path):
    source = PROGRAMS / "memory_bugs.c"
    first = leakharness("check", "--quiet", "--no-html", "--build", source, "--cflags=-pthread", "--out", tmp_path / "a",
                        "--", "leaks")
    assert first.returncode == 1, first.stdout + first.stderr
    for fmt in ("valgrind", "lsan"):
        supp = tmp_path / f"base.{fmt}.supp"
        made = leakharness("suppressions", tmp_path / "a", "--format", fmt, "--out", supp)
        assert made.returncode == 0 and supp.read_text().strip()
    again = leakharness("check", "--quiet", "--no-html", "--build", source, "--cflags=-pthread", "--out", tmp_path / "b",
                        "--suppressions", tmp_path / "base.valgrind.supp", "--suppressions", tmp_path / "base.lsan.supp",
                        "--", "leaks")
    assert again.returncode == 0, again.stdout + again.stderr
    results = load_results(tmp_path / "b")
    for job in results.jobs:
        lost = [f for f in job.findings if f.category == "leak" and f.leak_kind in ("definite", "indirect")]
        assert lost and all(f.suppressed for f in lost), job.tool  # kept, marked, not dropped
    # The SARIF is written as a stream of pieces made once per signature and stack: it is what
    # the document says, suppressions included.
    from harness.report import sarif

    written = json.loads((tmp_path / "b" / "leakharness.sarif").read_text())
    assert written == sarif.document(results, tmp_path / "b")
    assert any(r.get("suppressions") for r in written["runs"][0]["results"])
    # A new leak is not covered by the baseline: the double free still fails.
    third = leakharness("check", "--quiet", "--no-html", "--build", source, "--cflags=-pthread", "--out", tmp_path / "c",
                        "--suppressions", tmp_path / "base.valgrind.supp", "--", "double-free")
    assert third.returncode == 1


def test_merging_shards_counts_each_job_once(tmp_path):
    patterns = load_catalog(ids=["x509_name_oneline", "i2d_alloc"])
    run_catalog(patterns[:1], tmp_path / "shard1", checkers=("asan",), progress=False)
    run_catalog(patterns, tmp_path / "shard2", checkers=("asan",), progress=False)
    proc = leakharness("report", tmp_path / "shard1", tmp_path / "shard2", "--out", tmp_path / "merged")
    assert proc.returncode == 0, proc.stderr
    merged = load_results(tmp_path / "merged")
    keys = [(j.pattern, j.variant, j.tool) for j in merged.jobs]
    assert len(keys) == len(set(keys)) == 4
    one = next(j for j in merged.jobs if j.pattern == "x509_name_oneline" and j.variant == "leaky")
    single = next(j for j in load_results(tmp_path / "shard1").jobs if j.variant == "leaky")
    assert len(one.findings) == len(single.findings)
    assert all((tmp_path / "merged" / log).is_file() for j in merged.jobs for log in j.logs)
    assert one.sources and all((tmp_path / "merged" / s.path).is_file() for j in merged.jobs for s in j.sources)


def test_report_of_a_raw_log_and_bad_input(tmp_path):
    bad = tmp_path / "nothing"
    proc = leakharness("report", bad, "--out", tmp_path / "r")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and str(bad) in proc.stderr


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (scripts/install-system-packages.sh --test)")
def test_in_headless_chromium(catalog_run, hostile_run, tmp_path):
    def browse(page: Path, *extra) -> str:
        proc = subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra,
                               page.as_uri()], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, start_new_session=True)
        return proc.stdout

    dom = browse(catalog_run / "index.html", "--dump-dom")
    assert 'id="matrix"' in dom and "ssl_error_path" in dom
    assert 'id="controls"' in dom and 'id="controls" hidden' not in dom  # the inline script ran (CSP hash)
    for page in [hostile_run / "index.html", *sorted((hostile_run / "patterns").glob("*.html"))]:
        dom = browse(page, "--dump-dom")
        title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
        written = re.search(r"<title>(.*?)</title>", page.read_text(), re.S).group(1)
        assert html.unescape(title) == html.unescape(written) != "pwned"  # no script of the program ran
        assert "<img" not in dom  # the file name is text, never an element
    shot = tmp_path / "index.png"
    browse(catalog_run / "index.html", f"--screenshot={shot}", "--window-size=1400,1000")
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_damaged_results_json_is_recovered_from_job_files(catalog_run, tmp_path):
    shard = tmp_path / "killed-run"
    shutil.copytree(catalog_run, shard)
    data = (shard / "results.json").read_bytes()
    (shard / "results.json").write_bytes(data[: len(data) // 2])  # killed while writing
    proc = leakharness("report", shard, "--out", tmp_path / "out")
    # Every job file is read back; whether they are the whole run, nothing says any more (a run
    # killed before it wrote results.json leaves only the jobs that finished): not exit 0.
    assert proc.returncode == 3 and "interrupted run" in proc.stderr, proc.stderr
    assert len(load_results(tmp_path / "out").jobs) == len(load_results(catalog_run).jobs)


def test_rendering_again_leaves_no_stale_pages(catalog_run, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(catalog_run, out)
    (out / "signatures-9.html").write_text("old")
    (out / "patterns" / "gone_pattern.html").write_text("old")
    write_report([out], out)
    assert not (out / "signatures-9.html").exists() and not (out / "patterns" / "gone_pattern.html").exists()
    assert (out / "patterns" / "ssl_error_path.html").is_file()


def test_signatures_agree_across_checkers(catalog_run):
    """The same leak, by valgrind and by LSan, is one row seen by both."""
    results = load_results(catalog_run)
    by_tool = {}
    for job in results.jobs:
        if job.pattern == "ssl_error_path" and job.variant == "leaky":
            by_tool[job.tool] = {f.signature for f in job.findings if f.is_error}
    assert by_tool["memcheck"] == by_tool["asan"]
    assert "leak:SSL_new>setup_connection>main" in {split_signature(s)[0] for s in by_tool["memcheck"]}


def test_big_runs_are_paginated(catalog_run, hostile_run, tmp_path, monkeypatch):
    import harness.report.html as report

    monkeypatch.setattr(report, "GROUPS_PER_PAGE", 1)
    out = tmp_path / "paged"
    shutil.copytree(catalog_run, out)
    write_report([out], out)
    pages = sorted(out.glob("signatures*.html"))
    assert len(pages) > 1
    first = (out / "signatures.html").read_text()
    assert 'href="signatures-2.html"' in first and "Page 1 of" in first
    # A user's program with several leaks: one bug a page.
    out = tmp_path / "paged-check"
    shutil.copytree(hostile_run, out)
    write_report([out], out)
    pattern_pages = sorted((out / "patterns").glob("*.html"))
    assert len(pattern_pages) > 1
    first = min(pattern_pages, key=lambda p: len(p.name))
    assert f'href="{first.stem}-2.html"' in first.read_text()


def _text(page: Path) -> str:
    """A page's text as a reader sees it (no script, style or menu choices)."""
    text = re.sub(r"<(script|select|style)\b.*?</\1>", " ", page.read_text(), flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


def test_root_cause_first_with_its_indirect_bytes_and_short_paths(catalog_run):
    page = (catalog_run / "patterns" / "ssl_error_path.html").read_text()
    headlines = [html.unescape(h) for h in re.findall(r"<h3>(.*?)</h3>", page, re.S)]
    memcheck = next(j for j in load_results(catalog_run).jobs
                    if (j.pattern, j.variant, j.tool) == ("ssl_error_path", "leaky", "memcheck"))
    ssl = next(f for f in memcheck.findings if f.leak_kind == "definite")
    assert headlines[0].startswith(f"leak (definite) {ssl.bytes} B + {ssl.indirect_bytes} B indirect at "
                                   "setup_connection ssl_error_path-leaky.c:"), headlines[:3]
    assert not [h for h in headlines if "(indirect)" in h]  # every indirect record has its owner
    assert "indirect leak record(s)" in page  # ... listed under it
    text = _text(catalog_run / "patterns" / "ssl_error_path.html")
    assert "setup_connection ssl_error_path-leaky.c:" in text
    assert "/builds/" not in page  # never the build cache's path


def test_pages_show_the_sources_that_ran_not_todays_template(catalog_run, tmp_path, monkeypatch):
    import harness.report.html as report

    out = tmp_path / "later"
    shutil.copytree(catalog_run, out)
    # The template changed after the run: the report must not show (or mark lines of) the new text.
    monkeypatch.setattr(report, "render", lambda pattern, variant: "/* CHANGED TEMPLATE */\n")
    monkeypatch.setattr(report, "pattern_diff", lambda pattern: "+CHANGED DIFF\n")
    write_report([out], out)
    page = _text(out / "patterns" / "ssl_error_path.html")
    assert "CHANGED" not in page
    assert "BUG: ssl, its BIOs and ctx are lost" in page and "goto err" in page  # stored leaky/fixed and their diff
    assert "older leakharness" not in page
    # Results without stored sources (an older run): the template, and the page says so.
    results = load_results(out)
    write_results(out, Results(results.started, results.finished, results.tools,
                               tuple(dataclasses.replace(j, sources=()) for j in results.jobs)))
    write_report([out], out)
    page = _text(out / "patterns" / "ssl_error_path.html")
    assert "CHANGED TEMPLATE" in page and "rendered from the pattern's template" in page


def test_index_names_tool_versions_plainly_and_check_runs_by_findings(catalog_run, hostile_run):
    index = _text(catalog_run / "index.html")
    assert re.search(r"valgrind \d+\.\d+", index) and "valgrind valgrind-" not in index
    assert "passed" in index
    check = _text(hostile_run / "index.html")
    assert "passed" not in check and "failed" not in check and "blind" not in check
    assert re.search(r"\d+ findings in \d+ of 2 jobs", check)


SLEEPY = """\
#include <stdlib.h>
#include <unistd.h>

int main(void) {
    char *p = malloc(33);
    p[0] = 1;
    sleep(60);
    return p[0] - 1;
}
"""


def test_a_job_not_fully_checked_is_never_shown_clean(tmp_path):
    source = tmp_path / "sleepy.c"
    source.write_text(SLEEPY)
    out = tmp_path / "out"
    proc = leakharness("check", "--quiet", "--build", source, "--tool", "asan", "--timeout", "2", "--out", out)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    (job,) = load_results(out).jobs
    assert job.status == "incomplete" and not [f for f in job.findings if f.is_error]
    index = (out / "index.html").read_text()
    # The matrix cell: the incomplete sign, why on hover, the job's row (with its stderr) a click away.
    cell = re.search(r'<td class="cell ([^" ]*)[^"]*" data-status="([^"]*)"[^>]*title="([^"]*)"[^>]*>(.*?)</td>',
                     index, re.S)
    assert cell.group(1) == "incomplete" and cell.group(2) == "incomplete", cell.group(0)
    assert "clean" not in cell.group(3).replace("not clean", "") and re.sub(r"<[^>]+>", "", cell.group(4)) == "?"
    assert "timed out" in html.unescape(cell.group(3))
    target, anchor = re.search(r'href="([^"#]*)#([^"]*)"', cell.group(4)).groups()
    page = (out / target).read_text()
    row = re.search(rf'<tr id="{anchor}">(.*?)</tr>', page, re.S).group(1)
    link = re.search(r'href="\.\./([^"]*stderr\.txt)"', row).group(1)
    assert (out / link).is_file()
    assert "not clean" in row and "timed out" in row


# --- which flags would have caught it ------------------------------------------------------------

@pytest.fixture(scope="module")
def flags_run(tmp_path_factory):
    """fortify_overflow and dangling_local_pointer under every default checker, and a copy of
    fortify_overflow that wrongly says ubsan finds the overflow (a real miss)."""
    work = tmp_path_factory.mktemp("flags")
    fixtures = work / "fixtures"
    source = Path(__file__).resolve().parents[1] / "c_fixtures"
    for name in ("_common", "fortify_overflow"):
        shutil.copytree(source / name, fixtures / name)
    toml = fixtures / "fortify_overflow" / "pattern.toml"
    text = toml.read_text()
    blind = re.search(r'\[expect\.leaky\.ubsan\]\nblind = "[^"]*"\n', text)
    toml.write_text(text.replace(blind.group(0), '[expect.leaky.ubsan]\ncategory = "buffer-overflow"\n'))
    session = Session(out=work / "out", cache=work / "cache", progress=False)
    session.run_catalog(load_catalog(ids=["fortify_overflow", "dangling_local_pointer"]), html=True)
    wrong = Session(out=work / "wrong", cache=work / "cache", progress=False, fixtures=fixtures)
    wrong.run_catalog(wrong.catalog(["fortify_overflow"]), ["ubsan", "asan"], html=True)
    return work


def flag_matrix_rows(page: Path) -> tuple[list[str], dict[str, dict]]:
    """The families in order, and per checker: family, build, outcome, detail, fixed."""
    table = re.search(r'<table id="flag-matrix">(.*?)</table>', page.read_text(), re.S)
    assert table, f"no flag matrix on {page}"
    families, rows = [], {}

    def text(cell: str) -> str:
        return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", cell))).strip()

    for body in re.findall(r"<tbody>(.*?)</tbody>", table.group(1), re.S):
        family = text(re.search(r'<tr class="family">(.*?)</tr>', body, re.S).group(1))
        families.append(family)
        for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S):
            cells = re.findall(r'<td(?: class="([^"]*)")?>(.*?)</td>', tr, re.S)
            checker, level, outcome, detail, fixed = cells
            assert outcome[0] == text(outcome[1])  # the cell's colour is its outcome
            rows[text(checker[1])] = {"family": family, "level": text(level[1]), "outcome": text(outcome[1]),
                                      "detail": text(detail[1]), "fixed": text(fixed[1])}
    return families, rows


def test_which_flags_catch_fortify_overflow(flags_run):
    page = flags_run / "out" / "patterns" / "fortify_overflow.html"
    families, rows = flag_matrix_rows(page)
    assert [f.split(":")[0] for f in families] == ["Valgrind", "Sanitizers", "Native hardened build"]
    (pattern,) = load_catalog(ids=["fortify_overflow"])
    # The hardened build (-O2 fortify) aborts in __memcpy_chk: caught, natively.
    assert rows["hardened"]["outcome"] == "caught" and rows["hardened"]["level"] == "-O2"
    assert rows["hardened"]["detail"].startswith("buffer-overflow") and "SIGABRT" in rows["hardened"]["detail"]
    assert rows["hardened"]["family"].startswith("Native hardened build")
    # valgrind cannot see stack arrays: blind, with the pattern's own reason, at -O0 and -O2.
    for checker in ("memcheck", "memcheck-O2"):
        assert rows[checker]["outcome"] == "blind" and rows[checker]["family"].startswith("Valgrind")
        assert rows[checker]["detail"] == pattern.expectation("leaky", checker).reason
    assert rows["asan"]["outcome"] == "caught" and rows["asan"]["level"] == "-O0"
    assert re.match(r"buffer-overflow at derive_key fortify_overflow-leaky\.c:\d+$", rows["asan"]["detail"])
    assert rows["asan-O2"]["outcome"] == "caught" and rows["ubsan"]["outcome"] == "blind"
    assert {r["fixed"] for r in rows.values()} == {"clean"}  # the fixed variant, checked and clean
    text = _text(page)
    assert "caught by asan, asan-O2, hardened" in text
    assert "valgrind: 2 blind" in text and "sanitizers: 2 caught, 1 blind" in text and "hardened: 1 caught" in text


def test_which_flags_catch_dangling_local_pointer_minus_o0_vs_o2(flags_run):
    page = flags_run / "out" / "patterns" / "dangling_local_pointer.html"
    _, rows = flag_matrix_rows(page)
    (pattern,) = load_catalog(ids=["dangling_local_pointer"])
    assert rows["memcheck"]["outcome"] == "blind"
    assert rows["memcheck"]["detail"] == pattern.expectation("leaky", "memcheck").reason
    assert rows["memcheck-O2"]["outcome"] == "caught"
    assert re.match(r"uninitialized ×\d+ at main dangling_local_pointer-leaky\.c:\d+$", rows["memcheck-O2"]["detail"])
    assert rows["asan"]["outcome"] == "caught" and rows["asan"]["detail"].startswith("use-after-free at main ")
    assert rows["hardened"]["outcome"] == "blind" and "dead stack frame" in rows["hardened"]["detail"]
    assert "-O level: memcheck: blind at -O0, caught at -O2" in _text(page)
    # Readable without JavaScript: the table is plain markup, nothing hidden for a script to show.
    assert not re.search(r'id="flag-matrix"[^>]*hidden', page.read_text())


def test_a_checker_that_missed_is_missed_with_the_verdicts_reason(flags_run):
    _, rows = flag_matrix_rows(flags_run / "wrong" / "patterns" / "fortify_overflow.html")
    assert rows["ubsan"]["outcome"] == "missed"
    assert rows["ubsan"]["detail"].startswith("expected buffer-overflow")
    assert rows["asan"]["outcome"] == "caught" and set(rows) == {"ubsan", "asan"}


def test_a_run_not_fully_checked_is_incomplete_never_missed_nor_clean(tmp_path):
    session = Session(out=tmp_path / "out", cache=tmp_path / "cache", progress=False, timeout=0.3)
    results = session.run_catalog(load_catalog(ids=["dangling_local_pointer"]), ["memcheck-O2"], html=True)
    assert {j.status for j in results.jobs} == {"incomplete"}  # valgrind needs more than 0.3 s to start
    page = tmp_path / "out" / "patterns" / "dangling_local_pointer.html"
    _, rows = flag_matrix_rows(page)
    row = rows["memcheck-O2"]
    assert row["outcome"] == "incomplete" and row["detail"].startswith("incomplete: timed out after 0.3 s")
    assert row["fixed"].startswith("incomplete") and "clean" not in row["fixed"]
    assert "no checker caught it" in _text(page)
