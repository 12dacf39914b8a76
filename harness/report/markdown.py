"""A short Markdown summary of a run, for a CI job page ($GITHUB_STEP_SUMMARY).

It stays under 200 lines whatever the size of the run (GitHub shows at most 1 MiB of a job
summary): totals, the failed or incomplete jobs (first ones), the largest findings.  What each
job is comes from judge.outcome, as everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..judge import errors_of, outcome
from ..results import Results, write_atomic

MAX_TABLE_ROWS = 60
MAX_TOP_FINDINGS = 15

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


def summary_md(results: Results, title: str = "leakharness", notes=()) -> str:
    """notes: lines said first, in bold (a nightly's regression or first-night failures, a merge
    missing parts, a growth fit that did not complete)."""
    jobs = results.jobs
    outcomes = [(job, outcome(job)) for job in jobs]
    passed = sum(1 for _, o in outcomes if o.name in ("pass", "clean"))
    failed = [(j, o) for j, o in outcomes if o.failing]
    stale = sum(1 for _, o in outcomes if o.name == "stale")
    blind = sum(1 for _, o in outcomes if o.name == "blind")
    known = sum(1 for _, o in outcomes if o.name == "known-incomplete")
    incomplete = sum(1 for j in jobs if j.status not in ("ok", "crashed"))
    errors = [(j, f) for j in jobs for f in errors_of(j.findings)]
    lost = sum(f.bytes or 0 for _, f in errors if f.category == "leak")
    lines = [f"## {_cell(title, 120)}", ""]
    if results.interrupted:
        lines += ["**Interrupted: only the jobs that finished are here, not the whole run.**", ""]
    for note in list(notes)[:20]:
        lines += [f"**{_cell(note, 400)}**", ""]
    lines.append(f"**{len(jobs)} job(s)**: {passed} passed, {len(failed) - stale} failed, {stale} stale, "
                 f"{blind} blind, {known} known incomplete, {incomplete} not fully checked; "
                 f"{len(errors)} finding(s), {_bytes(lost)} leaked.")
    lines.append("")
    if failed:
        lines += ["### Failed, stale or not fully checked", "", "| job | outcome | status | reason |",
                  "|---|---|---|---|"]
        for job, decided in failed[:MAX_TABLE_ROWS]:
            lines.append(f"| {_cell(job.name, 100)} | {_cell(decided.label, 20)} | {_cell(job.status, 20)} | "
                         f"{_cell(decided.reason)} |")
        if len(failed) > MAX_TABLE_ROWS:
            lines.append(f"| … and {len(failed) - MAX_TABLE_ROWS} more | | | |")
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
    if results.interrupted or notes:
        pass  # not the whole run: said above
    elif not failed and not incomplete:
        lines.append("Every job was fully checked and met its expectation.")
    elif not failed:
        lines.append(f"No expectation failed; {incomplete} job(s) hang or crash by design (known incomplete) "
                     f"and were not fully checked.")
    return "\n".join(lines).rstrip() + "\n"


def write_summary_md(results: Results, path: Path, title: str = "leakharness", notes=()) -> Path:
    """A short Markdown summary (for $GITHUB_STEP_SUMMARY), written atomically; returns the path."""
    path = Path(path)
    write_atomic(path, summary_md(results, title, notes))
    return path
