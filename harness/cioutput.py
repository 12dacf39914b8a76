"""What a CI system reads from a run: JUnit XML (test results) and a short Markdown summary.

JUnit: one testcase per job, named as the pytest plugin names the same item (classname
`c_fixtures.<pattern>`, name `<variant>[<checker>]`), so a CI's history of a test carries over
between `pytest` and `leakharness run`.  `check` jobs are `check.<program>` / `[<checker>]`.
A failed expectation, and a check job with errors or not fully checked, is a failure; a known
blind spot is skipped.  A job that was not fully checked is never a plain pass.

The Markdown summary stays under 200 lines whatever the size of the run (GitHub shows at most
1 MiB of a job summary): totals, the failed or incomplete jobs (first ones), the largest findings.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .results import JobRecord, Results, write_atomic

MAX_BODY_FINDINGS = 50  # finding lines in one testcase's failure text
MAX_TABLE_ROWS = 60
MAX_TOP_FINDINGS = 15

# XML 1.0 forbids most control characters; a program's output may hold any byte.
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _xml_text(text: str) -> str:
    return _XML_BAD.sub("\ufffd", str(text))


def _errors(job: JobRecord) -> list:
    return [f for f in job.findings if f.is_error]


def job_outcome(job: JobRecord) -> tuple[str, str]:
    """('pass'|'fail'|'skip', reason): a catalog job by its verdict; a check job fails on any
    error and on anything short of a complete run."""
    if job.verdict == "blind":
        return "skip", job.reason or "a known blind spot of this checker"
    if job.verdict == "fail":
        return "fail", job.reason or f"failed ({job.status})"
    if job.verdict == "pass":
        if job.status not in ("ok", "crashed"):  # never seen, but never shown as a clean pass
            return "fail", f"not fully checked: {job.status}: {job.message}".strip()
        return "pass", job.reason
    # check jobs: no expectation
    if job.status not in ("ok", "crashed"):
        return "fail", f"not fully checked ({job.status}){': ' + job.message if job.message else ''}"
    errors = _errors(job)
    if errors:
        return "fail", f"{len(errors)} error(s): {errors[0].summary()}"
    if job.status == "crashed":
        return "fail", f"the program crashed ({job.signal or job.exit_code})"
    return "pass", "clean"


def _names(job: JobRecord) -> tuple[str, str]:
    if job.variant:
        return f"c_fixtures.{job.pattern}", f"{job.variant}[{job.tool}]"
    return f"check.{job.pattern}", f"[{job.tool}]"


def _body(job: JobRecord) -> str:
    shown = [f for f in job.findings if not f.suppressed]
    lines = [f.summary() for f in shown[:MAX_BODY_FINDINGS]]
    if len(shown) > MAX_BODY_FINDINGS:
        lines.append(f"... and {len(shown) - MAX_BODY_FINDINGS} more")
    if job.problems:
        lines.extend(f"problem: {p}" for p in job.problems[:10])
    return "\n".join(lines)


def junit_xml(results: Results) -> str:
    suite = ET.Element("testsuite", name="leakharness")
    counts = {"pass": 0, "fail": 0, "skip": 0}
    total_time = 0.0
    for job in results.jobs:
        outcome, reason = job_outcome(job)
        counts[outcome] += 1
        total_time += job.duration_s
        classname, name = _names(job)
        case = ET.SubElement(suite, "testcase", classname=_xml_text(classname), name=_xml_text(name),
                             time=f"{job.duration_s:.3f}")
        # The same properties as the pytest plugin records for the item.
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="leakharness_job", value=_xml_text(job.name))
        ET.SubElement(props, "property", name="leakharness_verdict", value=_xml_text(job.verdict or outcome))
        first_line = (reason.splitlines() or [""])[0]
        if outcome == "fail":
            el = ET.SubElement(case, "failure", message=_xml_text(first_line[:1000]),
                               type=_xml_text(job.status))
            el.text = _xml_text("\n".join(x for x in (reason, _body(job)) if x))
        elif outcome == "skip":
            el = ET.SubElement(case, "skipped", message=_xml_text(first_line[:1000]))
            body = _body(job)
            if body:
                el.text = _xml_text(body)
    suite.set("tests", str(len(results.jobs)))
    suite.set("failures", str(counts["fail"]))
    suite.set("errors", "0")
    suite.set("skipped", str(counts["skip"]))
    suite.set("time", f"{total_time:.3f}")
    if results.started:
        suite.set("timestamp", _xml_text(results.started))
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(results: Results, path: Path) -> Path:
    """JUnit XML for the run's jobs, written atomically; returns the path."""
    path = Path(path)
    write_atomic(path, junit_xml(results))
    return path


# --- Markdown ---------------------------------------------------------------------------------

# Backslash-escaped, so a file or function name stays text (no link, emphasis, HTML or column).
_MD_SPECIAL = re.compile(r"[\\`*_{}\[\]<>()#+!|~&]")


def _cell(text: str, limit: int = 160) -> str:
    """A table cell: one line, no markup from the program (GitHub renders HTML in Markdown)."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return _MD_SPECIAL.sub(r"\\\g<0>", text)


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def summary_md(results: Results, title: str = "leakharness") -> str:
    jobs = results.jobs
    outcomes = [(job, *job_outcome(job)) for job in jobs]
    passed = sum(1 for _, o, _ in outcomes if o == "pass")
    failed = [(j, r) for j, o, r in outcomes if o == "fail"]
    blind = sum(1 for _, o, _ in outcomes if o == "skip")
    incomplete = sum(1 for j in jobs if j.status not in ("ok", "crashed"))
    errors = [(j, f) for j in jobs for f in _errors(j)]
    lost = sum(f.bytes or 0 for _, f in errors if f.category == "leak")
    lines = [f"## {_cell(title, 120)}", ""]
    lines.append(f"**{len(jobs)} job(s)**: {passed} passed, {len(failed)} failed, {blind} blind, "
                 f"{incomplete} not fully checked; {len(errors)} finding(s), {_bytes(lost)} leaked.")
    lines.append("")
    if failed:
        lines += ["### Failed or not fully checked", "", "| job | status | reason |", "|---|---|---|"]
        for job, reason in failed[:MAX_TABLE_ROWS]:
            lines.append(f"| {_cell(job.name, 100)} | {_cell(job.status, 20)} | {_cell(reason)} |")
        if len(failed) > MAX_TABLE_ROWS:
            lines.append(f"| … and {len(failed) - MAX_TABLE_ROWS} more | | |")
        lines.append("")
    if errors:
        top = sorted(errors, key=lambda jf: (-((jf[1].bytes or 0) + jf[1].indirect_bytes), jf[0].name,
                                             jf[1].signature))[:MAX_TOP_FINDINGS]
        lines += ["### Largest findings", "", "| bytes | job | finding |", "|---:|---|---|"]
        for job, f in top:
            size = (f.bytes or 0) + f.indirect_bytes
            lines.append(f"| {size if f.bytes is not None else '–'} | {_cell(job.name, 100)} | {_cell(f.summary())} |")
        if len(errors) > MAX_TOP_FINDINGS:
            lines.append(f"| | … and {len(errors) - MAX_TOP_FINDINGS} more | |")
        lines.append("")
    if not failed and not incomplete:
        lines.append("Every job was fully checked and met its expectation.")
    return "\n".join(lines).rstrip() + "\n"


def write_summary_md(results: Results, path: Path, title: str = "leakharness") -> Path:
    """A short Markdown summary (for $GITHUB_STEP_SUMMARY), written atomically; returns the path."""
    path = Path(path)
    write_atomic(path, summary_md(results, title))
    return path
