"""JUnit XML for a run: one testcase per job, for a CI system's test view.

Each testcase is named as the pytest plugin names the same item (classname
`c_fixtures.<pattern>`, name `<variant>[<checker>]`), so a CI's history of a test carries over
between `pytest` and `leakharness run`; `check` jobs are `check.<program>` / `[<checker>]`.
What each job is comes from judge.outcome, as everywhere: a failed or stale expectation, and a
check job with errors or not fully checked, is a failure; a blind spot or a known-incomplete
run is skipped with its reason.  A job that was not fully checked is never a plain pass.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from ..judge import outcome
from ..results import JobRecord, Results, write_atomic

MAX_BODY_FINDINGS = 50  # finding lines in one testcase's failure text

# XML 1.0 forbids most control characters; a program's output may hold any byte.
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _xml_text(text: str) -> str:
    return _XML_BAD.sub("\ufffd", str(text))


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
        decided = outcome(job)
        reason, junit = decided.reason, decided.junit
        counts[junit] += 1
        total_time += job.duration_s
        classname, name = _names(job)
        case = ET.SubElement(suite, "testcase", classname=_xml_text(classname), name=_xml_text(name),
                             time=f"{job.duration_s:.3f}")
        # The same properties as the pytest plugin records for the item.
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="leakharness_job", value=_xml_text(job.name))
        ET.SubElement(props, "property", name="leakharness_verdict", value=_xml_text(decided.name))
        first_line = (reason.splitlines() or [""])[0]
        if junit == "fail":
            el = ET.SubElement(case, "failure", message=_xml_text(first_line[:1000]),
                               type=_xml_text(job.status))
            el.text = _xml_text("\n".join(x for x in (reason, _body(job)) if x))
        elif junit == "skip":
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
