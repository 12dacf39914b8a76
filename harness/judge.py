"""The one place a job's outcome is decided.

`judge(expectation, run)` gives a catalog job its verdict:
- pass: the checker found what the pattern expects of it (or, for a clean expectation, ran to
  its end and found nothing);
- fail: it did not; or the run was not fully checked (status "incomplete": nothing proves it
  clean, and a finding expected of a checker is about a checker that ran);
- blind: the pattern says the checker cannot see this bug, and a whole run indeed reported
  nothing of it (a crash of the program is not a report of the bug);
- stale: the pattern says blind, yet the checker reported the bug; or it says the run hangs or
  crashes by design, yet the run ended cleanly: the expectation no longer describes the
  checker and must be edited.  It fails a run, as a strict xfail fails pytest;
- known-incomplete: the pattern says the run hangs or crashes by design, and it did.  Never a
  pass: it is shown with its reason, as not checked.

`outcome(record)` is what every output shows for a stored job (CLI, JUnit, Markdown, HTML,
SARIF, nightly, pytest): the verdict for a catalog job, and for a job with no expectation (a
user's `check`) clean / errors / incomplete / set-up.  A job that was not fully checked is
never a pass, never clean.
"""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import Expectation
from .findings import Finding
from .jobs import Job, RunResult
from .memo import MISSING, IdentityMemo
from .signatures import frame_key

VERDICTS = ("pass", "fail", "stale", "known-incomplete", "blind")
FAILING = frozenset({"fail", "stale"})  # verdicts that fail a run (exit 1, a JUnit failure, a pytest failure)
# The statuses of a run that ended with the checker's report whole ("crashed" is a crash it reported).
COMPLETE = frozenset({"ok", "crashed"})
SETUP = frozenset({"build-failed", "tool-missing"})


@dataclass(frozen=True)
class Verdict:
    verdict: str  # one of VERDICTS
    reason: str
    matched: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        return self.verdict not in FAILING


def errors_of(findings) -> list[Finding]:
    """What makes a run unclean: memory errors and definite or indirect leaks."""
    return [f for f in findings if f.is_error]


def reported_bug(findings) -> list[Finding]:
    """What a checker reported of a bug: its errors, less a bare crash (a program that died is
    not a checker that saw why).  A blind expectation may name the bug's category; then only
    a report of that category makes it stale."""
    return [f for f in errors_of(findings) if f.category != "crash"]


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
    if result.status in SETUP:
        return Verdict("fail", f"{result.status}: {result.message.splitlines()[0] if result.message else ''}".strip())
    if expect.outcome == "blind":
        seen = [f for f in reported_bug(result.findings) if not expect.category or f.category == expect.category]
        if result.status not in COMPLETE:
            return Verdict("fail", f"expected a blind spot ({expect.reason}), but the run was not whole: "
                                   f"{result.message}; a run that hangs or crashes by design is "
                                   f"incomplete = \"why\" in pattern.toml", tuple(errors))
        if seen:
            return Verdict("stale", f"expected {result.job.checker} to be blind here ({expect.reason}), but it "
                                    f"reported {describe_findings(seen, 2)}: the blind spot is gone; update "
                                    f"pattern.toml", tuple(seen))
        ended = f" (the program {result.status_text})" if result.status != "ok" else ""
        return Verdict("blind", f"{expect.reason}{ended}")
    if expect.outcome == "incomplete":
        if result.status not in COMPLETE or result.status == "crashed":
            what = result.message or result.status_text
            return Verdict("known-incomplete", f"{expect.reason} ({what})", tuple(errors))
        if errors:  # a race that ends one way or another: this time the checker reported it
            return Verdict("pass", f"known to hang or crash, this run ended with a report: "
                                   f"{describe_findings(errors, 2)}", tuple(errors))
        return Verdict("stale", f"expected the run to hang or crash ({expect.reason}), but it ran to its end "
                                f"and reported nothing: update pattern.toml")
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
        if expect.category == "leak" and not expect.leak_kind:
            # memcheck calls a lost block "possibly lost" when a stale value (a dead frame's, a
            # register's) happens to point inside it, and the definite record that owned it then
            # no longer counts its bytes: the same leak, reported all the same.  Its bytes count
            # (seen once in CI: evp_cipher_ctx_error_path under memcheck-O2, 1328 B lost and
            # 960 B possibly lost, against 2288 B lost in every other run).
            found = found + [f for f in result.findings if f.category == "leak" and f.leak_kind == "possible"
                             and (not expect.function or expect.function in _functions(f))]
        total = sum(f.bytes or 0 for f in found)
        if total < expect.min_bytes:
            return Verdict("fail", f"expected {expect.describe()}; the matching records hold only "
                                   f"{total} B: {describe_findings(found)}", tuple(found))
        return Verdict("pass", f"{total} B in {len(found)} record(s) through {expect.function}", tuple(found))
    return Verdict("pass", describe_findings(found, 1), tuple(found))


# --- what every output shows ---------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """A stored job as every output shows it."""

    name: str  # a verdict (catalog), or clean / errors / incomplete / crashed / setup (check)
    failing: bool  # fails the run: exit 1 (or 2/3 for check), a JUnit failure, a pytest failure
    junit: str  # "pass", "fail" or "skip"
    reason: str
    checked: bool  # the checker ran to its end (whatever it found)

    @property
    def label(self) -> str:
        return {"known-incomplete": "known incomplete", "stale": "STALE", "fail": "FAIL"}.get(self.name, self.name)


_OUTCOMES = IdentityMemo(4096)


def outcome(job) -> Outcome:
    """The outcome of a stored job (results.JobRecord, or anything with its fields).  Every
    output asks it of every job, some more than once: a job's outcome is worked out once (a
    job is frozen; a `check` of 50,000 findings would otherwise walk them at every asking)."""
    known = _OUTCOMES.get(job)
    return _OUTCOMES.put(job, _outcome(job)) if known is MISSING else known


def _outcome(job) -> Outcome:
    checked = job.status in COMPLETE
    if job.verdict:
        verdict = job.verdict if job.verdict in VERDICTS else "fail"
        reason = job.reason or f"{verdict} ({job.status})"
        if verdict == "pass" and not checked:
            # never made by judge(); but a record edited by hand is never a clean pass
            return Outcome("fail", True, "fail", f"not fully checked: {job.status}: {job.message}".strip(), False)
        junit = "fail" if verdict in FAILING else "skip" if verdict in ("blind", "known-incomplete") else "pass"
        return Outcome(verdict, verdict in FAILING, junit, reason, checked)
    if job.status in SETUP:
        return Outcome("setup", True, "fail", f"{job.status}: {(job.message or '').strip()[:400]}", False)
    if not checked:
        return Outcome("incomplete", True, "fail",
                       f"not fully checked ({job.status}){': ' + job.message if job.message else ''}", False)
    errors = errors_of(job.findings)
    if errors:
        return Outcome("errors", True, "fail", f"{len(errors)} error(s): {errors[0].summary()}", True)
    if job.status == "crashed":
        return Outcome("crashed", True, "fail", f"the program crashed ({job.signal or job.exit_code})", True)
    return Outcome("clean", False, "pass", "clean", True)


def exit_code(jobs) -> int:
    """`run` and `nightly`: 1 when an expectation failed or is stale, else 0."""
    return 1 if any(outcome(j).failing for j in jobs) else 0


def check_exit_code(jobs) -> int:
    """`check`: 2 a set-up problem, 1 memory errors or leaks found, 3 not fully checked, 0 clean."""
    names = [outcome(j).name for j in jobs]
    if "setup" in names:
        return 2
    if any(f.is_error for j in jobs for f in j.findings):
        return 1
    if any(n != "clean" for n in names):
        return 3
    return 0


# --- stored jobs judged again (merges) -----------------------------------------------------------

def rejudge(job):
    """A stored catalog job (results.JobRecord) judged again from what it holds: its
    expectation, status and findings (suppressions already marked).  A merge shows this,
    never a verdict copied from a file that may have been edited, or made before the findings
    it now sits beside.  A job without an expectation (`check`) is returned as it is: its
    outcome() is decided from its findings every time."""
    import dataclasses
    from pathlib import Path

    if job.expected is None:
        return job
    expect = Expectation(**job.expected)
    run = Job(checker=job.tool, command=(job.pattern,), out_dir=Path("."), pattern=job.pattern, variant=job.variant)
    result = RunResult(run, job.status, tuple(job.findings), exit_code=job.exit_code, signal=job.signal,
                       duration_s=job.duration_s, partial=job.partial, problems=tuple(job.problems),
                       message=job.message)
    decided = judge(expect, result)
    reason = decided.reason
    if job.verdict and job.verdict != decided.verdict:
        reason = f"judged again: {reason} (the results file said {job.verdict})"
    return dataclasses.replace(job, verdict=decided.verdict, reason=reason)


def severity(job) -> int:
    """How bad a stored job's outcome is, to keep the worse of two copies of one job: failing,
    then not fully checked, then a known blind spot or known incomplete run, then pass/clean."""
    decided = outcome(job)
    if decided.failing:
        return 3 if decided.checked else 4  # not checked at all is worse than checked and failing
    if not decided.checked:
        return 2
    return 1 if decided.name in ("blind", "known-incomplete") else 0
