"""Judge a run against what its pattern expects of that checker.

A run that was not fully checked (status "incomplete") is never a pass: not for a clean
expectation (nothing proves it clean), and not for a finding either (the expectation is about
a checker that ran).  Only a known blind spot stays "blind".
"""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import Expectation
from .findings import Finding, frame_key
from .run import RunResult


@dataclass(frozen=True)
class Verdict:
    verdict: str  # "pass", "fail" or "blind" (a known blind spot: not counted as pass or fail)
    reason: str
    matched: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        return self.verdict != "fail"


def errors_of(findings) -> list[Finding]:
    """What makes a run unclean: memory errors and definite or indirect leaks."""
    return [f for f in findings if f.is_error]


def matching(expect: Expectation, findings) -> list[Finding]:
    found = []
    for f in findings:
        if expect.category and f.category != expect.category:
            continue
        if f.category == "leak":
            if expect.leak_kind and f.leak_kind != expect.leak_kind:
                continue
            if not expect.leak_kind and not f.is_lost_leak:
                continue
        if expect.function and expect.function not in _functions(f):
            continue
        found.append(f)
    return found


def _functions(f: Finding) -> set[str]:
    names = set()
    for frame in f.stack:
        if frame.function:
            names.add(frame.function)
            names.add(frame_key(frame))  # gcc's clones: foo.isra.0 is foo
    return names


def describe_findings(findings, limit: int = 5) -> str:
    if not findings:
        return "nothing"
    lines = [f.summary() for f in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"... and {len(findings) - limit} more")
    return "; ".join(lines)


def judge(expect: Expectation, result: RunResult) -> Verdict:
    errors = errors_of(result.findings)
    if result.status in ("build-failed", "tool-missing"):
        if expect.outcome == "blind":
            return Verdict("blind", f"{expect.reason} (and the run did not happen: {result.status})")
        return Verdict("fail", f"{result.status}: {result.message.splitlines()[0] if result.message else ''}".strip())
    if expect.outcome == "blind":
        seen = f"; it reported {describe_findings(errors, 2)} anyway" if errors else ""
        return Verdict("blind", f"{expect.reason}{seen}", tuple(errors))
    if result.status == "incomplete":
        seen = f"; before that it reported {describe_findings(errors, 2)}" if errors else ""
        return Verdict("fail", f"not fully checked: {result.message}{seen}", tuple(errors))
    if expect.outcome == "clean":
        if errors:
            return Verdict("fail", f"expected clean, found {describe_findings(errors)}", tuple(errors))
        if result.status != "ok":
            return Verdict("fail", f"expected clean, but the run ended: {result.status_text}")
        return Verdict("pass", "clean")
    found = matching(expect, result.findings)
    if not found:
        return Verdict("fail", f"expected {expect.describe()}; found {describe_findings(errors)}"
                               + (f" (run ended: {result.status_text})" if result.status != "ok" else ""))
    if expect.min_bytes:
        total = sum(f.bytes or 0 for f in found)
        if total < expect.min_bytes:
            return Verdict("fail", f"expected {expect.describe()}; the matching records hold only "
                                   f"{total} B: {describe_findings(found)}", tuple(found))
        return Verdict("pass", f"{total} B in {len(found)} record(s) through {expect.function}", tuple(found))
    return Verdict("pass", describe_findings(found, 1), tuple(found))
