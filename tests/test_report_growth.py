"""The report's leak growth views, from real `--growth` runs: x509_name_oneline's leaky variant
under asan at 1, 2 and 4 iterations (268 B lost per call), and `check --growth` of a small
program of our own whose file name is HTML, under memcheck."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from harness.catalog import load_catalog
from harness.control import Session
from harness.report import CSP, write_report
from harness.results import load_results
from realrun import compile_c

HOSTILE = "<img src=x onerror=\"document.title='pwned'\">"
HOSTILE_SIG = '"><script>alert(1)</script><img src=x onerror=alert(2)> operator<(a&b)'

# One leak per request (48 B lost each time), one at start-up (100 B, once); with -DSLOW the run
# at 4 requests or more sleeps past any sensible time limit.
SERVER = r"""
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((noinline)) static void setup(void)
{
    char *config = malloc(100);
    memset(config, 1, 100);
}

__attribute__((noinline)) static void handle_request(int i)
{
    char *reply = malloc(48);
    memset(reply, i, 48);
}

int main(int argc, char **argv)
{
    int n = (argc > 2 && strcmp(argv[1], "--n") == 0) ? atoi(argv[2]) : 1;
    setup();
#ifdef SLOW
    if (n >= 4)
        sleep(60);
#endif
    for (int i = 0; i < n; i++)
        handle_request(i);
    return 0;
}
"""


def leakharness(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def _text(page: Path) -> str:
    """A page's text as a reader sees it (no script, style or menu choices)."""
    text = re.sub(r"<(script|select|style)\b.*?</\1>", " ", page.read_text(), flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


def _section(text: str, start: str, end: str) -> str:
    i = text.index(start)
    j = text.find(end, i)
    return text[i:j if j >= 0 else None]


def _svgs(page: str) -> list[etree._Element]:
    """Every inline SVG of a page, parsed as XML with entities and network off."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return [etree.fromstring(s.encode(), parser) for s in re.findall(r"<svg\b.*?</svg>", page, re.S)]


@pytest.fixture(scope="module")
def growth_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("growth-report")
    session = Session(out=work / "out", cache=work / "cache", progress=False)
    results = session.run_catalog(load_catalog(ids=["x509_name_oneline"]), ["asan"], html=True,
                                  growth=("asan", (1, 2, 4)))
    assert {j.status for j in results.jobs} == {"ok"}
    assert [g["status"] for g in results.growth] == ["ok"]
    return work / "out"


def test_index_shows_the_rate_per_operation_and_the_one_time_bytes(growth_run):
    section = _section(_text(growth_run / "index.html"), "Leak growth", "Slowest jobs")
    # x509_name_oneline leaks X509_NAME_oneline's 268 B string on every call, nothing once.
    assert "x509_name_oneline leaky asan 1, 2, 4 268 B 0 B per-operation 1.000" in section, section
    page = (growth_run / "index.html").read_text()
    assert 'href="patterns/x509_name_oneline.html#growth"' in page
    # Rendering the report kept the fits in results.json.
    assert load_results(growth_run).growth[0]["total"]["rate_per_op"] == 268.0


def test_pattern_page_plots_each_signature_inline_and_loads_nothing(growth_run):
    page_path = growth_run / "patterns" / "x509_name_oneline.html"
    page = page_path.read_text()
    section = _section(_text(page_path), "Leak growth", "Findings by root cause")
    assert "268 B per operation , 0 B once (per-operation, R² 1.000)" in section, section
    assert re.search(r"leak:BUF_MEM_grow>X509_NAME_oneline>log_subject@[0-9a-f]+ 268 B 0 B per-operation 1\.000",
                     section), section
    svgs = _svgs(page)
    assert len(svgs) == 2  # the total's and the one signature's
    ns = "{http://www.w3.org/2000/svg}"
    for svg in svgs:
        assert len(svg.findall(f"{ns}circle")) == 3  # a point per iteration count
        assert "268 B per operation" in svg.findtext(f"{ns}title")
        # Markup drawn here, nothing fetched: no href, no image, no foreign content.
        assert not [el for el in svg.iter() if any("href" in k for k in el.attrib)]
        assert {el.tag for el in svg.iter()} <= {f"{ns}svg", f"{ns}title", f"{ns}line", f"{ns}circle"}
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert meta and html.unescape(meta.group(1)) == CSP and "default-src 'none'" in CSP
    assert not re.search(r"<(script|link|img|iframe|image|use)[^>]+(src|href)=", page)


def test_a_hostile_signature_stays_text(growth_run, tmp_path):
    out = tmp_path / "hostile"
    shutil.copytree(growth_run, out)
    data = json.loads((out / "results.json").read_text())
    (entry,) = data["growth"]
    entry["by_signature"] = {sig + HOSTILE_SIG: fit for sig, fit in entry["by_signature"].items()}
    (out / "results.json").write_text(json.dumps(data))
    write_report([out], out)
    page = (out / "patterns" / "x509_name_oneline.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    svg = _svgs(page)[1]  # the signature's plot: its title reads back as the signature
    assert HOSTILE_SIG in svg.findtext("{http://www.w3.org/2000/svg}title")
    assert HOSTILE_SIG in _text(out / "patterns" / "x509_name_oneline.html")  # shown as text


def test_merged_shards_keep_the_growth_once(growth_run, tmp_path):
    other = tmp_path / "other"
    Session(out=other, cache=tmp_path / "cache", progress=False).run_catalog(load_catalog(ids=["i2d_alloc"]), ["asan"])
    twin = tmp_path / "twin"
    shutil.copytree(growth_run, twin)  # the same growth entry in two shards: shown once
    proc = leakharness("report", growth_run, other, twin, "--out", tmp_path / "merged")
    assert proc.returncode == 0, proc.stderr
    merged = load_results(tmp_path / "merged")
    assert {j.pattern for j in merged.jobs} == {"x509_name_oneline", "i2d_alloc"}
    assert [(g["pattern"], g["total"]["rate_per_op"]) for g in merged.growth] == [("x509_name_oneline", 268.0)]
    section = _section(_text(tmp_path / "merged" / "index.html"), "Leak growth", "Slowest jobs")
    assert section.count("x509_name_oneline leaky asan 1, 2, 4 268 B") == 1, section


def test_an_unreadable_growth_entry_is_never_a_number(growth_run, tmp_path):
    out = tmp_path / "damaged"
    shutil.copytree(growth_run, out)
    data = json.loads((out / "results.json").read_text())
    del data["growth"][0]["total"]["points"]  # cut: the fit cannot be read back
    (out / "results.json").write_text(json.dumps(data))
    write_report([out], out)
    section = _section(_text(out / "index.html"), "Leak growth", "Slowest jobs")
    assert "unreadable: this growth entry of results.json cannot be read" in section, section
    assert " B per" not in section.replace("lost per operation", "") and "268" not in section
    assert "<svg" not in (out / "patterns" / "x509_name_oneline.html").read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server program, built as it is (memcheck runs it unchanged), named HOSTILE."""
    work = tmp_path_factory.mktemp("server")
    source = work / "server.c"
    source.write_text(SERVER)
    (work / "plain").mkdir()
    (work / "slow").mkdir()
    compile_c(source, work / "plain" / HOSTILE, "-O0")
    compile_c(source, work / "slow" / HOSTILE, "-O0", "-DSLOW")
    return work


def test_check_growth_of_a_program_named_in_html(server, tmp_path):
    env = {**os.environ, "LEAKHARNESS_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "out"
    proc = leakharness("check", "--quiet", "--tool", "memcheck", "--growth", "--n {n}", "--growth-iterations",
                       "1,2,4", "--out", out, "--", server / "plain" / HOSTILE, env=env)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    (entry,) = load_results(out).growth
    assert entry["status"] == "ok", entry
    index = _section(_text(out / "index.html"), "Leak growth", "Slowest jobs")
    # 48 B per request, 100 B once (the start-up config), as the program was written.
    assert f"{HOSTILE} check memcheck 1, 2, 4 48 B 100 B per-operation 1.000" in index, index
    pages = [out / "index.html", *sorted((out / "patterns").glob("*.html"))]
    for page in pages:
        text = page.read_text()
        assert HOSTILE not in text, page
    page = next(p for p in pages if "Leak growth" in _text(p) and p.parent.name == "patterns")
    section = _section(_text(page), "Leak growth", "Findings by root cause")
    assert re.search(r"leak:\S*handle_request>main@[0-9a-f]+ 48 B 0 B per-operation 1\.000", section), section
    assert re.search(r"leak:\S*setup>main@[0-9a-f]+ 0 B 100 B one-time 1\.000", section), section
    assert len(_svgs(page.read_text())) == 3


def test_a_growth_run_that_timed_out_shows_no_numbers(server, tmp_path):
    env = {**os.environ, "LEAKHARNESS_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "out"
    proc = leakharness("check", "--quiet", "--tool", "memcheck", "--timeout", "8", "--growth", "--n {n}",
                       "--growth-iterations", "1,2,4", "--out", out, "--", server / "slow" / HOSTILE, env=env)
    assert proc.returncode in (0, 1, 3), proc.stdout + proc.stderr
    (entry,) = load_results(out).growth
    assert entry["status"] == "incomplete" and "at 4 iterations" in entry["reason"], entry
    index = _section(_text(out / "index.html"), "Leak growth", "Slowest jobs")
    assert "incomplete: the run at 4 iterations is incomplete" in index, index
    assert " B per" not in index.replace("lost per operation", "")
    page = next(p for p in (out / "patterns").glob("*.html") if "Leak growth" in _text(p))
    assert "<svg" not in page.read_text() and "at 4 iterations" in _text(page)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (scripts/install-system-packages.sh --test)")
def test_in_headless_chromium_the_plots_draw_and_break_no_policy(growth_run, tmp_path):
    page = growth_run / "patterns" / "x509_name_oneline.html"
    proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
                           "--v=0", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          start_new_session=True)
    assert proc.stdout.count("<svg") == 2 and proc.stdout.count("<circle") == 6
    # The console says so when the Content-Security-Policy blocks anything (a remote load, a
    # script, a style): nothing on this page.
    assert "Content Security Policy" not in proc.stderr, proc.stderr
