"""Nightly runs with history, CI outputs (JUnit, Markdown summary) and shards, from real runs of
two small patterns under memcheck and ASan (the result cache makes the later nights quick)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from lxml import etree
from lxml import html as lxml_html

from harness.report.junit import write_junit
from harness.report.markdown import write_summary_md
from harness.control import Session
from harness.errors import LeakHarnessError
from harness.nightly import nights, nightly
from harness.outdir import locked
from harness.report import write_report
from harness.results import load_results
from harness.orchestrate import load_durations
from harness.shard import parse_shard, select_shard
from harness.tasks import estimate

PATTERNS = ["x509_name_oneline", "plain_double_free"]
CHECKERS = ("memcheck", "asan")
T0 = dt.datetime(2026, 11, 24, 3, 0, tzinfo=dt.timezone.utc)


def session(cache: Path, out: Path | None = None) -> Session:
    return Session(out=out, cache=cache, jobs=2, progress=False)


def signatures(results) -> dict:
    return {(j.pattern, j.variant, j.tool): (j.verdict, sorted(f.signature for f in j.findings if f.is_error))
            for j in results.jobs}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def history(tmp_path_factory, cache):
    """Three nights: x509 only; both patterns (new findings); the same again (quiet), keep=2."""
    hist = tmp_path_factory.mktemp("nightly") / "history"
    s = session(cache)
    one = s.catalog(PATTERNS[:1])
    both = s.catalog(PATTERNS)
    first = nightly(s, hist, patterns=one, checkers=CHECKERS, now=T0)
    second = nightly(s, hist, patterns=both, checkers=CHECKERS, now=T0 + dt.timedelta(days=1))
    third = nightly(s, hist, keep=2, patterns=both, checkers=CHECKERS, now=T0 + dt.timedelta(days=2))
    return hist, (first, second, third)


def test_new_findings_regress_and_an_identical_night_does_not(history):
    hist, (first, second, third) = history
    assert first.night_dir.name == "2026-11-24T0300Z" and first.comparison.previous is None
    assert not first.regressed, first.comparison.reasons  # the first night: nothing to be new against

    assert second.regressed
    assert second.comparison.previous == "2026-11-24T0300Z"
    new = second.comparison.new_findings
    assert new and {c.job.split("::")[0] for c in new} == {"plain_double_free"}
    assert any("double-free" in c.summary and "format_field" in c.summary for c in new)
    assert any("new finding" in r for r in second.comparison.reasons)

    assert not third.regressed, third.comparison.reasons
    assert third.comparison.new_findings == () and third.comparison.resolved_findings == ()
    assert third.comparison.verdict_changes == () and third.comparison.missing_checkers == ()
    saved = json.loads((third.night_dir / "comparison.json").read_text())
    assert saved["regressed"] is False and saved["previous"] == "2026-11-25T0300Z"
    assert json.loads((second.night_dir / "comparison.json").read_text())["regressed"] is True


def test_keep_removes_the_oldest_and_the_index_lists_what_is_left(history):
    hist, (first, second, third) = history
    assert third.removed == ("2026-11-24T0300Z",)
    assert not first.night_dir.exists()
    assert nights(hist) == ["2026-11-25T0300Z", "2026-11-26T0300Z"]
    page = third.index_path.read_text()
    doc = lxml_html.fromstring(page)
    links = [a.get("href") for a in doc.iter("a")]
    assert links == ["2026-11-26T0300Z/index.html", "2026-11-25T0300Z/index.html"]  # newest first
    assert all((hist / link).is_file() for link in links)
    assert len(doc.findall(".//svg")) == 5
    assert len(doc.findall(".//polyline")) >= 5
    for el in doc.iter():
        for attr in ("src", "href"):
            assert "http" not in (el.get(attr) or ""), (el.tag, el.get(attr))
    assert not doc.findall(".//script") and not doc.findall(".//link")
    # the comparison with the previous night is at the top
    assert "Night 2026-11-26T0300Z against 2026-11-25T0300Z" in doc.text_content()
    assert "No regression" in doc.text_content()
    summary = json.loads((hist / "history.json").read_text())
    assert [e["night"] for e in summary["nights"]] == ["2026-11-25T0300Z", "2026-11-26T0300Z"]
    assert summary["nights"][1]["findings_by_checker"].keys() == {"memcheck", "asan"}
    assert summary["nights"][0]["regressed"] is True


def test_a_second_nightly_on_the_same_history_refuses_at_once(tmp_path, cache):
    hist = tmp_path / "history"
    s = session(cache)
    with locked(hist):
        with pytest.raises(LeakHarnessError) as err:
            nightly(s, hist, patterns=s.catalog(PATTERNS[:1]), checkers=("asan",), now=T0)
    message = str(err.value)
    assert "\n" not in message and "another leakharness run" in message and str(hist) in message
    assert nights(hist) == [] and not list(hist.glob("2026-*"))
    with pytest.raises(LeakHarnessError, match="--keep 0"):
        nightly(s, hist, keep=0, patterns=s.catalog(PATTERNS[:1]), checkers=("asan",), now=T0)


def test_a_lost_detection_and_a_job_that_could_not_be_checked_regress(history, tmp_path):
    """Tonight's results turned into what a broken checker gives: the leaky job of a pattern
    finds nothing (lost detection), another could not run (tool-missing)."""
    from harness.nightly import compare

    hist, (_, second, third) = history
    before = load_results(second.night_dir)
    now = load_results(third.night_dir)
    jobs = []
    for j in now.jobs:
        if (j.pattern, j.variant, j.tool) == ("x509_name_oneline", "leaky", "asan"):
            j = dataclasses.replace(j, findings=(), verdict="fail", reason="expected leak; found nothing")
        if (j.pattern, j.variant, j.tool) == ("plain_double_free", "fixed", "memcheck"):
            j = dataclasses.replace(j, status="tool-missing", verdict="fail", findings=(), message="no valgrind")
        jobs.append(j)
    comparison = compare("tonight", dataclasses.replace(now, jobs=tuple(jobs)), before, "before")
    assert comparison.regressed
    assert [c.job for c in comparison.lost_detections] == ["x509_name_oneline::leaky[asan]"]
    assert comparison.resolved_findings and not comparison.new_findings
    assert [(u.job, u.status) for u in comparison.incomplete] == [("plain_double_free::fixed[memcheck]",
                                                                    "tool-missing")]
    assert any("could not be checked" in r for r in comparison.reasons)
    # a checker that ran last night and is gone tonight is never a quiet night
    gone = compare("tonight", dataclasses.replace(now, jobs=tuple(j for j in now.jobs if j.tool != "asan")),
                   before, "before")
    assert gone.missing_checkers == ("asan",) and gone.regressed


def test_junit_has_one_testcase_per_job_named_as_pytest_names_them(history, tmp_path):
    hist, (_, _, third) = history
    results = load_results(third.night_dir)
    path = write_junit(results, tmp_path / "junit.xml")
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    root = etree.parse(str(path), parser).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == len(results.jobs) == 8
    names = {(c.get("classname"), c.get("name")) for c in cases}
    assert ("c_fixtures.x509_name_oneline", "leaky[memcheck]") in names
    assert ("c_fixtures.plain_double_free", "fixed[asan]") in names
    # and the properties the pytest plugin records for the same item
    first = cases[0].findall("properties/property")
    job = results.jobs[0]
    assert {p.get("name"): p.get("value") for p in first} == {"leakharness_job": job.name,
                                                               "leakharness_verdict": job.verdict}
    failed = {j.name for j in results.jobs if j.verdict == "fail"}
    assert int(root.find("testsuite").get("failures")) == len(failed)
    assert int(root.find("testsuite").get("tests")) == 8


def test_junit_failure_and_skipped_say_why_and_list_findings(history, tmp_path):
    hist, (_, _, third) = history
    results = load_results(third.night_dir)
    leaky = next(j for j in results.jobs if j.pattern == "x509_name_oneline" and j.variant == "leaky"
                 and j.tool == "memcheck")
    failing = dataclasses.replace(leaky, verdict="fail", reason="expected a leak of 9999 B\x01 <&>")
    blind = dataclasses.replace(leaky, variant="fixed", verdict="blind", reason="a known blind spot")
    check = dataclasses.replace(leaky, pattern="myprog", variant=None, verdict=None, reason="")
    path = write_junit(dataclasses.replace(results, jobs=(failing, blind, check)), tmp_path / "j.xml")
    root = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
    f, s, c = root.findall(".//testcase")
    assert f.find("failure").get("message").startswith("expected a leak of 9999 B")
    assert "X509_NAME_oneline" in f.find("failure").text and "leak (definite)" in f.find("failure").text
    assert s.find("skipped").get("message") == "a known blind spot"
    assert (c.get("classname"), c.get("name")) == ("check.myprog", "[memcheck]")
    assert "error(s)" in c.find("failure").get("message")


def test_summary_is_short_whatever_the_size(history, tmp_path):
    hist, (_, second, _) = history
    results = load_results(second.night_dir)
    text = write_summary_md(results, tmp_path / "s.md", title="nightly <b>").read_text()
    assert text.startswith("## nightly \\<b\\>")
    assert "**8 job(s)**" in text and "Largest findings" in text and "X509\\_NAME\\_oneline" in text
    # a thousand times the jobs (the real records multiplied), every one failing
    many = tuple(dataclasses.replace(j, pattern=f"{j.pattern}{i}", verdict="fail", reason="broken | <x>")
                 for i in range(1000) for j in results.jobs)
    big = write_summary_md(dataclasses.replace(results, jobs=many), tmp_path / "big.md").read_text()
    assert len(big.splitlines()) < 200
    assert "**8000 job(s)**" in big and "8000 failed" in big and "… and 7940 more" in big
    assert "<x>" not in big and "broken \\| \\<x\\>" in big


def test_parse_shard_and_bad_input():
    assert parse_shard("2/3") == (2, 3) and parse_shard(" 1 / 1 ") == (1, 1)
    for bad in ("0/3", "4/3", "1/0", "a/b", "2", "-1/3", "1/2/3", ""):
        with pytest.raises(LeakHarnessError) as err:
            parse_shard(bad)
        assert "\n" not in str(err.value) and "--shard" in str(err.value)
    with pytest.raises(LeakHarnessError):
        select_shard([], 4, 3, {})


def test_a_three_way_split_of_the_catalog_covers_every_task_once(cache):
    s = session(cache)
    tasks = s.catalog_tasks(s.catalog())
    names = [t.name for t in tasks]
    assert len(names) == len(set(names)) > 30
    durations = {name: (i * 7919 % 97) / 10 for i, name in enumerate(names)}  # some known, uneven
    del durations[names[0]], durations[names[5]]  # some unknown: estimated as orchestrate does
    for known in (durations, {}):
        shards = [select_shard(tasks, k, 3, known) for k in (1, 2, 3)]
        assert sorted(t.name for shard in shards for t in shard) == sorted(names)
        assert [[t.name for t in sh] for sh in shards] == [[t.name for t in select_shard(list(reversed(tasks)), k, 3,
                                                                                          dict(known))][::-1]
                                                            for k in (1, 2, 3)]  # the input order does not matter
        loads = [sum(estimate(t, known) for t in sh) for sh in shards]
        assert max(loads) - min(loads) <= max(estimate(t, known) for t in tasks) + 1e-6


def test_three_shards_run_apart_and_merged_equal_the_unsharded_run(history, cache, tmp_path):
    hist, (_, _, third) = history
    s = session(cache)
    tasks = s.catalog_tasks(s.catalog(PATTERNS), CHECKERS)
    durations = load_durations(cache)
    assert set(durations) >= {t.duration_key for t in tasks}  # the nights measured them
    folders = []
    for k in (1, 2, 3):
        shard = select_shard(tasks, k, 3, durations)
        assert shard, f"shard {k} is empty"
        out = tmp_path / f"shard{k}"
        session(cache, out).check(shard)
        folders.append(out)
    write_report(folders, tmp_path / "merged")
    merged = load_results(tmp_path / "merged")
    whole = load_results(third.night_dir)
    assert len(merged.jobs) == len(whole.jobs) == 8
    assert signatures(merged) == signatures(whole)
    assert (tmp_path / "merged" / "index.html").is_file()


def test_a_night_that_fails_leaves_the_last_good_index_and_a_lost_summary_is_rebuilt(history, cache):
    from harness.nightly import render_index

    hist, (_, _, third) = history
    page, summary = (hist / "index.html").read_bytes(), (hist / "history.json").read_bytes()
    s = session(cache)
    with pytest.raises(LeakHarnessError, match="nothing to run"):  # fails before any job ends
        nightly(s, hist, patterns=s.catalog(PATTERNS), checkers=("tsan",), now=T0 + dt.timedelta(days=3))
    assert (hist / "index.html").read_bytes() == page and (hist / "history.json").read_bytes() == summary
    assert nights(hist) == ["2026-11-25T0300Z", "2026-11-26T0300Z"]
    # history.json damaged: the index is rebuilt from the nights themselves, with the same numbers
    (hist / "history.json").write_text("{not json")
    render_index(hist)
    assert json.loads((hist / "history.json").read_text()) == json.loads(summary)
    assert third.index_path.read_text().count("/index.html\"") == 2
    # An entry edited to a wrong type (a string for seconds failed this night and, written back,
    # every later one), or nesting too deep to parse: that entry, or the file, is made again.
    for edit in ({"seconds": "x"}, {"failed": [1]}, {"findings_by_category": [1]}, {"interrupted": "yes"}):
        data = json.loads(summary)
        data["nights"][0].update(edit)
        (hist / "history.json").write_text(json.dumps(data))
        render_index(hist)
        assert json.loads((hist / "history.json").read_text()) == json.loads(summary), edit
    (hist / "history.json").write_text("[" * 100_000 + "]" * 100_000)
    render_index(hist)
    assert json.loads((hist / "history.json").read_text()) == json.loads(summary)


def test_the_index_escapes_what_programs_wrote(history, tmp_path):
    """A finding summary and a job name are a program's words: shown as text, never markup."""
    import shutil

    from harness.nightly import render_index

    hist, _ = history
    copy = tmp_path / "history"
    shutil.copytree(hist, copy)
    latest = copy / "2026-11-26T0300Z" / "comparison.json"
    data = json.loads(latest.read_text())
    hostile = "<img src=x onerror=\"document.title='pwned'\">"
    data["new_findings"] = [{"job": f"p::leaky[{hostile}]", "signature": hostile, "summary": hostile,
                             "verdict": "pass"}]
    data["reasons"] = [hostile]
    latest.write_text(json.dumps(data))
    page = render_index(copy).read_text()
    assert hostile not in page and "&lt;img src=x onerror=" in page
    doc = lxml_html.fromstring(page)
    assert not doc.findall(".//img") and len(doc.findall(".//svg")) == 5
