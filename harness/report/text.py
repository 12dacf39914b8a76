"""What the command line prints: `run`'s matrix and summary, `check`'s jobs and their bugs,
`parse --format text`'s table and `explain`'s answers.  Each job shows judge.outcome's decision,
as every format does; a bug the catalog knows (knowledge.py) has a line saying what it looks like
and the call that fixes it.
"""

from __future__ import annotations

import os
import re
from typing import IO, Iterable

from .. import checkers
from ..grouping import group_findings
from ..judge import errors_of, outcome
from ..suppress import KNOWN_PREFIX

# What a log or a program may hold that a terminal would act on: control characters (an escape
# sequence retitles the window, clears the screen) and the bidirectional overrides that reorder
# what is shown.  Written as escapes; newlines and tabs, the text's own layout, are kept.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# A line break inside one value (a frame, a job's name or reason) would print as a line of its own
# ("FAIL ..." where there is none): values are kept to their line.
_BREAKS = re.compile("[\n\r\u2028\u2029\x85]")


def _v(value) -> str:
    """A value from a log, a program or a results file, on one line."""
    return _BREAKS.sub(lambda m: repr(m.group())[1:-1], str(value))


class _Terminal:
    """A writer that shows what it is given, never lets it act on the terminal."""

    def __init__(self, out: IO[str]):
        self.out = out

    def write(self, text: str) -> int:
        return self.out.write(_UNSAFE.sub(lambda m: repr(m.group())[1:-1], text))


def findings_table(logs: Iterable, out: IO[str]) -> None:
    """One row per bug, root cause first: a definite leak with the indirect leaks it owns
    ("72 B + 933 B indirect"), memory errors before leaks, as `check` and the report show them."""
    out = _Terminal(out)
    rows = []
    from ..knowledge import Explainer, Sources  # on first use: not on the way to a check's first job

    explainer = Explainer(sources=Sources())  # the sources where the logs' stacks name them
    for log in logs:
        for g in group_findings(log.findings):
            f = g.root
            what = f.category + (f" ({f.leak_kind})" if f.leak_kind else "")
            size = "" if f.bytes is None else (f"{g.bytes} + {g.indirect_bytes} indirect" if g.indirect_bytes
                                               else str(g.bytes))
            known = explainer.explain(f)
            rows.append((_v(what), size, _v(g.where()), _v(os.path.basename(f.source or "")),
                         _v(known.line()) if known else ""))
    if not rows:
        out.write("no findings\n")
        return
    header = ("category", "bytes", "where (top frames, allocators left out)", "log")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    fmt = f"{{:<{widths[0]}}}  {{:>{widths[1]}}}  {{:<{widths[2]}}}  {{}}\n"
    out.write(fmt.format(*header))
    for r in rows:
        out.write(fmt.format(*r[:4]))
        if r[4]:
            out.write(f"  {r[4]}\n")
    out.write(f"{len(rows)} bug(s)\n")


def run_summary(results, results_path, out: IO[str]) -> None:
    """`run` and `nightly`: the pattern x checker matrix, the failures, stale expectations and
    jobs not checked, and one line of totals (how many results came from the cache)."""
    out = _Terminal(out)
    jobs = results.jobs
    names = [_v(n) for n in sorted({j.tool for j in jobs}, key=checkers.order_key)]
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for j in jobs:
        decided = outcome(j)
        cell = decided.label
        if j.status not in ("ok",) and decided.name not in ("blind", "known-incomplete"):
            cell += f" ({j.status})"
        rows.setdefault((_v(j.pattern), _v(j.variant or "-")), {})[_v(j.tool)] = cell
    width = max([len(f"{p} {v}") for p, v in rows] + [7])
    # Each column as wide as its widest cell ("pass (crashed)"), so the matrix stays in line.
    cols = [max([len(c), 6] + [len(cells.get(c, "")) for cells in rows.values()]) for c in names]
    out.write(f"{'pattern variant':<{width}}  " + "  ".join(f"{c:<{w}}" for c, w in zip(names, cols)) + "\n")
    for (pattern, variant), cells in sorted(rows.items()):
        out.write(f"{pattern + ' ' + variant:<{width}}  " +
                  "  ".join(f"{cells.get(c, '-'):<{w}}" for c, w in zip(names, cols)) + "\n")
    decided = [(j, outcome(j)) for j in jobs]
    for j, o in decided:
        if o.name == "fail":
            out.write(f"FAIL {_v(j.name)}: {_v(o.reason)}\n")
    for j, o in decided:
        if o.name == "stale":
            out.write(f"STALE {_v(j.name)}: {_v(o.reason)}\n")
    for j, o in decided:
        if o.name == "known-incomplete":
            out.write(f"known incomplete {_v(j.name)}: {_v(o.reason)}\n")
    counts = {v: sum(1 for _, o in decided if o.name == v) for v in ("pass", "fail", "stale", "blind",
                                                                      "known-incomplete")}
    cached = sum(1 for j in jobs if j.cached)
    suppressed = sum(1 for j in jobs for f in j.findings if f.suppressed)
    note = f", {suppressed} finding(s) suppressed" if suppressed else ""
    out.write(f"{len(jobs)} job(s): {counts['pass']} passed, {counts['fail']} failed, {counts['stale']} stale, "
              f"{counts['blind']} blind, {counts['known-incomplete']} known incomplete "
              f"({cached} of {len(jobs)} from cache{note}); results in {results_path}\n")


def check_summary(results, results_path, out: IO[str], bugs_per_job: int = 20) -> None:
    """`check`: each job's state and its bugs, grouped by root cause with the records behind
    them; never "ok" beside errors."""
    out = _Terminal(out)
    for job in results.jobs:
        decided = outcome(job)
        errors = [f for f in errors_of(job.findings) if not f.suppressed]
        accepted = [f for f in job.findings if (f.suppressed or "").startswith(KNOWN_PREFIX)]
        suppressed = sum(1 for f in job.findings if f.suppressed) - len(accepted)
        groups = group_findings(errors)
        note = f", {suppressed} finding(s) suppressed" if suppressed else ""
        note += f", {len(accepted)} known finding(s) accepted" if accepted else ""
        cached = " (cached)" if job.cached else ""
        if decided.name == "errors":
            state = f"{len(groups)} bug(s) in {len(errors)} record(s)"
        elif decided.name == "crashed":
            state = f"crashed ({job.signal}), {len(groups)} bug(s) in {len(errors)} record(s)"
        elif decided.name == "clean":
            state = "clean"
        else:
            state = job.status
        out.write(f"{_v(job.name)}: {_v(state)}{note}{cached}\n")
        if job.status == "build-failed":
            out.write("  " + "\n  ".join(job.message.splitlines()[:20]) + "\n")
        if job.status in ("tool-missing", "incomplete"):
            out.write(f"  {job.status}: {_v(job.message)}\n")
        if job.not_cached:
            out.write(f"  {_v(job.not_cached)}\n")
        if decided.name == "clean":  # what a clean job holds back (suppressions that matched, a tool's own setting)
            for problem in job.problems[:3]:
                out.write(f"  but: {_v(problem)}\n")
        # The program was checked just now: its sources are read where its stacks name them too.
        from ..knowledge import Explainer, Sources

        explainer = Explainer(sources=Sources(os.path.dirname(results_path), job.sources, named=True)) \
            if groups else None
        said: set[str] = set()
        for g in groups[:bugs_per_job]:
            records = f" ({len(g.findings)} records)" if len(g.findings) > 1 else ""
            out.write(f"  [{_v(g.root.tool)}] {_v(g.headline())}{records}\n")
            known = explainer.explain(g.root)
            if known is not None:  # one bug's many records: the whole line once, then a pointer to it
                line = _v(known.line())
                out.write(f"    {line}\n" if line not in said else
                          f"    {'looks like ' + known.pattern if known.pattern else 'the same ownership rule'}, as above\n")
                said.add(line)
        if len(groups) > bugs_per_job:
            out.write(f"  ... and {len(groups) - bugs_per_job} more bug(s): see the report\n")
        for g in group_findings(accepted)[:bugs_per_job]:
            out.write(f"  known, accepted: [{_v(g.root.tool)}] {_v(g.headline())}\n")
    cached = sum(1 for j in results.jobs if j.cached)
    out.write(f"{len(results.jobs)} job(s), {cached} from cache; results in {results_path}\n")


def explain_text(rows, out: IO[str], fixtures=None, per_job: int = 20) -> None:
    """`explain`: each bug with what the catalog knows of it, then each pattern named, once, at
    length (description, references, the fix as a diff)."""
    out = _Terminal(out)
    import textwrap

    from ..knowledge import details

    named: list[str] = []
    shown: dict[str | None, int] = {}
    for job, headline, known in rows:
        shown[job] = shown.get(job, 0) + 1
        if shown[job] > per_job:
            continue
        out.write(f"{_v(job)}: {_v(headline)}\n" if job else f"{_v(headline)}\n")
        if known is None:
            out.write("  nothing known: no catalog pattern matches and no OpenSSL ownership rule applies "
                      "(its stacks do not pass through OpenSSL)\n")
            continue
        out.write(f"  {_v(known.line())}\n")
        for pid in (known.pattern, *known.others):
            if pid and pid not in named:
                named.append(pid)
    for job, count in shown.items():
        if count > per_job:
            out.write(f"{_v(job)}: ... and {count - per_job} more bug(s)\n")
    for pid in named:
        info = details(pid, str(fixtures) if fixtures else None)
        if info is None:
            continue
        out.write(f"\n{pid}: {info['title']}\n")
        out.write(textwrap.fill(" ".join(info["description"].split()), width=100, initial_indent="  ",
                                subsequent_indent="  ") + "\n")
        for ref in info["references"]:
            out.write(f"  seen in: {ref}\n")
        if info["diff"]:
            out.write("  the fix (leaky -> fixed):\n")
            out.write("".join(f"    {line}\n" for line in info["diff"].splitlines()))


def bisect_text(outcome, out: IO[str]) -> None:
    """`bisect`: the first bad commit, its subject and the bug; or the commits it could be."""
    out = _Terminal(out)
    if outcome.first_bad:
        out.write(f"first bad commit: {_v(outcome.first_bad)} {_v(outcome.subject)}\n")
        for bug in outcome.bugs[:20]:
            out.write(f"  {_v(bug['job'])}: {_v(bug['headline'])}\n    signature {_v(bug['signature'])}\n")
            if bug.get("known"):
                out.write(f"    {_v(bug['known'])}\n")
        return
    out.write(f"undecided: commits that could not be checked leave {len(outcome.candidates)} candidate(s) "
              f"for the first bad commit:\n")
    for commit, subject in outcome.candidates:
        out.write(f"  {_v(commit)} {_v(subject)}\n")


def merge_notes(results, limit: int = 10) -> list[str]:
    """What `report` says on stderr of merged results that are not a whole run: the jobs of its
    plan that no part held (shown as not run), an interrupted run."""
    from ..shard import NOT_RUN
    from ..validate import printable

    lines = []
    missing = [j for j in results.jobs if NOT_RUN in j.problems]
    if missing:
        run = (results.run or {}).get("id", "?")
        lines.append(f"{len(missing)} job(s) of run {run} are in no part given (shown as not run): "
                     + ", ".join(printable(j.name) for j in missing[:limit]) + (" ..." if len(missing) > limit else ""))
        reasons = list(dict.fromkeys(j.message.removeprefix("not run: ") for j in missing))
        lines.extend(f"  {printable(why, 400)}" for why in reasons[:limit])
    if results.interrupted:
        lines.append("these results are of an interrupted run: only the jobs that finished are in them")
    return lines


def growth_lines(results, out: IO[str]) -> list[str]:
    """`--growth`: one line per fit, the rate of the complete ones and why the others are not;
    returns the lines of the fits that did not complete (they are in the exit code too)."""
    out = _Terminal(out)
    unfinished = []
    for entry in results.growth:
        name = _v(f"{entry.get('pattern')}" + (f"::{entry.get('variant')}" if entry.get("variant") else "")
                  + f"[{entry.get('checker')}]")
        if entry.get("status") == "ok":
            total = entry.get("total") or {}
            rate = total.get("rate_per_op") if isinstance(total, dict) else None
            fixed = total.get("fixed_bytes") if isinstance(total, dict) else None
            what = (f"{rate:.0f} B lost per operation, {fixed:.0f} B once"
                    if isinstance(rate, (int, float)) and isinstance(fixed, (int, float)) else "fitted")
            out.write(f"growth {name}: {what}\n")
        else:
            line = f"GROWTH INCOMPLETE {name}: {_v(entry.get('reason') or entry.get('status'))}"
            out.write(line + "\n")
            unfinished.append(line)
    return unfinished
