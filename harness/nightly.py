"""Nightly runs with history: each night a full catalog run in its own folder, compared with
the night before, and an index of all nights with trend charts.

    history/
      index.html            the nights, newest first; trends as inline SVG; last comparison on top
      history.json          each night's summary numbers (what the charts need)
      2026-11-26T0300Z/     one night: results.json, jobs/, logs/, its report, comparison.json

The comparison goes by finding signature per (pattern, variant, tool): new and resolved
findings, changed verdicts, checkers that went missing, jobs not fully checked.  A night
regresses when a new finding appears in a job that is not a known blind spot, a detection is
lost (a leaky job passed before and fails now; any pass that became a fail), a job could not
be checked, or a checker the previous night ran is gone: a failure to check never passes as a
quiet night.  The history folder is locked for the whole night (a second nightly refuses at
once), and index.html and history.json are replaced atomically, so a night killed at any
moment leaves the last good index.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from . import validate
from .errors import LeakHarnessError, os_problem
from .outdir import MARKER, locked
from .results import JobRecord, Results, load_results, write_atomic

HISTORY_SCHEMA = "leakharness/history/1"
COMPARISON_SCHEMA = "leakharness/comparison/1"
NIGHT_FORMAT = "%Y-%m-%dT%H%MZ"
NIGHT_FORMAT_SECONDS = "%Y-%m-%dT%H%M%SZ"  # when two nights start in the same minute
_NIGHT_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{4}(\d{2})?Z$")
UNCHECKED = ("incomplete", "tool-missing", "build-failed")


# --- nights: names and folders ----------------------------------------------------------------

def parse_night(name: str) -> dt.datetime | None:
    """The UTC time a night folder's name says, or None when it is not a night's name."""
    if not _NIGHT_NAME.match(name):
        return None
    fmt = NIGHT_FORMAT_SECONDS if len(name) == len("2026-11-26T030000Z") else NIGHT_FORMAT
    try:
        return dt.datetime.strptime(name, fmt).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def night_name(now: dt.datetime) -> str:
    if now.tzinfo is not None:
        now = now.astimezone(dt.timezone.utc)
    return now.strftime(NIGHT_FORMAT)


def nights(history: Path) -> list[str]:
    """The night folders of a history, oldest first: a night's name and a results.json."""
    found = []
    try:
        entries = list(Path(history).iterdir())
    except OSError:
        return []
    for p in entries:
        when = parse_night(p.name)
        if when is not None and p.is_dir() and not p.is_symlink() and (p / "results.json").is_file():
            found.append((when, p.name))
    return [name for _, name in sorted(found)]


# --- the comparison ---------------------------------------------------------------------------

@dataclass(frozen=True)
class FindingChange:
    job: str  # pattern::variant[tool]
    signature: str
    summary: str
    verdict: str | None  # the job's verdict in the night the finding is in

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "signature": self.signature, "summary": self.summary, "verdict": self.verdict}


@dataclass(frozen=True)
class VerdictChange:
    job: str
    before: str | None
    after: str | None
    reason: str  # tonight's reason

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "before": self.before, "after": self.after, "reason": self.reason}


@dataclass(frozen=True)
class Unchecked:
    job: str
    status: str
    verdict: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "status": self.status, "verdict": self.verdict, "message": self.message}


@dataclass(frozen=True)
class Comparison:
    night: str
    previous: str | None  # None for the first night of a history
    new_findings: tuple[FindingChange, ...] = ()
    resolved_findings: tuple[FindingChange, ...] = ()
    verdict_changes: tuple[VerdictChange, ...] = ()
    lost_detections: tuple[VerdictChange, ...] = ()  # a leaky job: pass -> fail, the detection is lost
    missing_checkers: tuple[str, ...] = ()
    incomplete: tuple[Unchecked, ...] = ()  # every job tonight that was not fully checked
    reasons: tuple[str, ...] = ()  # why it regressed; empty when it did not
    # The first night of a history (nothing to compare with): its failing jobs, one line each.
    # Not regressions, but never a green first night on a failing catalog.
    failures: tuple[str, ...] = ()

    @property
    def regressed(self) -> bool:
        return bool(self.reasons)

    @property
    def failed(self) -> bool:
        """What the exit code says: a regression, or failures on a first night."""
        return self.regressed or bool(self.failures)

    def headline(self) -> list[str]:
        """What the terminal, the Markdown summary and the index say of tonight, one line each."""
        lines = [f"REGRESSED {r}" for r in self.reasons]
        if self.failures:
            lines.append(f"FAILED {len(self.failures)} job(s) on the first night of this history (no earlier night "
                         f"to compare with: failures, not regressions): " + ", ".join(
                             f.split(":", 1)[0] for f in self.failures[:5]) + (" ..." if len(self.failures) > 5 else ""))
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": COMPARISON_SCHEMA, "night": self.night, "previous": self.previous,
            "regressed": self.regressed, "reasons": list(self.reasons),
            "new_findings": [c.to_dict() for c in self.new_findings],
            "resolved_findings": [c.to_dict() for c in self.resolved_findings],
            "verdict_changes": [c.to_dict() for c in self.verdict_changes],
            "lost_detections": [c.to_dict() for c in self.lost_detections],
            "missing_checkers": list(self.missing_checkers),
            "incomplete": [c.to_dict() for c in self.incomplete],
            "failures": list(self.failures),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Comparison":
        return cls(
            night=data["night"], previous=data.get("previous"),
            new_findings=tuple(FindingChange(**c) for c in data.get("new_findings", ())),
            resolved_findings=tuple(FindingChange(**c) for c in data.get("resolved_findings", ())),
            verdict_changes=tuple(VerdictChange(**c) for c in data.get("verdict_changes", ())),
            lost_detections=tuple(VerdictChange(**c) for c in data.get("lost_detections", ())),
            missing_checkers=tuple(data.get("missing_checkers", ())),
            incomplete=tuple(Unchecked(**c) for c in data.get("incomplete", ())),
            reasons=tuple(data.get("reasons", ())),
            failures=tuple(data.get("failures", ())),
        )


def _key(job: JobRecord) -> tuple:
    return (job.pattern, job.variant, job.tool)


def _signatures(job: JobRecord) -> dict[str, str]:
    """The job's bugs (memory errors, definite/indirect leaks, not suppressed) by signature."""
    found: dict[str, str] = {}
    for f in job.findings:
        if f.is_error:
            found.setdefault(f.signature, f.summary())
    return found


def _records(job: JobRecord) -> Counter:
    """How many distinct records (stacks) of each signature the job's bugs have: a second leak
    through the same three frames from another caller is a second record of one signature."""
    return Counter(f.signature for f in job.findings if f.is_error)


def _not_fully_checked(job: JobRecord) -> bool:
    return job.status not in ("ok", "crashed")  # incomplete, build-failed, tool-missing


def _expects_finding(job: JobRecord) -> bool:
    """A leaky job: one whose pass means the checker detected the bug."""
    outcome = (job.expected or {}).get("outcome") if isinstance(job.expected, dict) else None
    return outcome == "find" if outcome else job.variant == "leaky"


def compare(night: str, results: Results, previous: Results | None = None,
            previous_name: str | None = None) -> Comparison:
    """Tonight against the previous night (None: the first night, nothing is "new")."""
    now_jobs = {_key(j): j for j in results.jobs}
    incomplete = tuple(Unchecked(j.name, j.status, j.verdict, (j.message or j.reason).splitlines()[0]
                                 if (j.message or j.reason) else "")
                       for j in sorted(results.jobs, key=lambda j: j.name) if _not_fully_checked(j))
    reasons: list[str] = []
    unchecked = [u for u in incomplete if u.status in UNCHECKED and u.verdict != "blind"]
    if unchecked:
        reasons.append(f"{len(unchecked)} job(s) could not be checked: "
                       + ", ".join(f"{u.job} ({u.status})" for u in unchecked[:3])
                       + (" ..." if len(unchecked) > 3 else ""))
    if previous is None:
        from .judge import outcome

        failing = [(j, outcome(j)) for j in sorted(results.jobs, key=lambda j: j.name)]
        failures = tuple(f"{j.name}: {o.label}: {o.reason.splitlines()[0] if o.reason else ''}".rstrip(": ")
                         for j, o in failing if o.failing)
        return Comparison(night, previous_name, incomplete=incomplete, reasons=tuple(reasons), failures=failures)

    before_jobs = {_key(j): j for j in previous.jobs}
    new, resolved, changes, lost, broken, stale = [], [], [], [], [], []
    for key in sorted(set(now_jobs) | set(before_jobs), key=lambda k: tuple(str(x) for x in k)):
        now, before = now_jobs.get(key), before_jobs.get(key)
        now_sigs = _signatures(now) if now else {}
        before_sigs = _signatures(before) if before else {}
        if now is not None:
            for sig in sorted(set(now_sigs) - set(before_sigs)):
                new.append(FindingChange(now.name, sig, now_sigs[sig], now.verdict))
            if before is not None:  # more records of a signature known last night: a new bug among them
                now_n, before_n = _records(now), _records(before)
                for sig in sorted(s for s in set(now_sigs) & set(before_sigs) if now_n[s] > before_n[s]):
                    new.append(FindingChange(now.name, sig, f"{now_sigs[sig]} ({now_n[sig]} records of it, "
                                                            f"{before_n[sig]} last night)", now.verdict))
        if before is not None and now is not None:  # a job gone tonight resolved nothing
            for sig in sorted(set(before_sigs) - set(now_sigs)):
                resolved.append(FindingChange(now.name, sig, before_sigs[sig], now.verdict))
            if now.verdict != before.verdict:
                change = VerdictChange(now.name, before.verdict, now.verdict, now.reason)
                changes.append(change)
                if before.verdict == "pass" and now.verdict == "fail":
                    (lost if _expects_finding(now) else broken).append(change)
                if now.verdict == "stale":  # the expectation no longer describes the checker
                    stale.append(change)
    missing = tuple(sorted({j.tool for j in previous.jobs} - {j.tool for j in results.jobs}))

    counted = [c for c in new if c.verdict != "blind"]
    if counted:
        in_jobs = list(dict.fromkeys(c.job for c in counted))
        reasons.insert(0, f"{len(counted)} new finding(s) in {len(in_jobs)} job(s): " + ", ".join(in_jobs[:3])
                       + (" ..." if len(in_jobs) > 3 else ""))
    if lost:
        reasons.append(f"{len(lost)} job(s) passed last night and fail now: "
                       + ", ".join(c.job for c in lost[:3]) + (" ..." if len(lost) > 3 else ""))
    if broken:
        reasons.append(f"{len(broken)} job(s) expected clean passed last night and fail now: "
                       + ", ".join(c.job for c in broken[:3]) + (" ..." if len(broken) > 3 else ""))
    if stale:
        reasons.append(f"{len(stale)} expectation(s) went stale (the checker no longer does what pattern.toml says): "
                       + ", ".join(f"{c.job} ({c.before} -> stale)" for c in stale[:3])
                       + (" ..." if len(stale) > 3 else ""))
    if missing:
        reasons.append(f"checker(s) that ran last night did not run: {', '.join(missing)}")
    return Comparison(night, previous_name, tuple(new), tuple(resolved), tuple(changes), tuple(lost),
                      missing, incomplete, tuple(reasons))


# --- per-night summary numbers (history.json) -------------------------------------------------

def _seconds(results: Results) -> float:
    try:
        start = dt.datetime.fromisoformat(results.started)
        end = dt.datetime.fromisoformat(results.finished or "")
        return max(0.0, (end - start).total_seconds())
    except (TypeError, ValueError):
        return round(sum(j.duration_s for j in results.jobs), 3)


def summarize(name: str, results: Results, regressed: bool | None = None,
              interrupted: bool = False) -> dict[str, Any]:
    """The numbers of one night that the index's charts and table need.  An interrupted night
    is marked so: its numbers are of the jobs that finished, never a night's, and no chart
    draws them."""
    from .judge import outcome

    by_checker: Counter = Counter()
    by_category: Counter = Counter()
    for job in results.jobs:
        for f in job.findings:
            if f.is_error:
                by_checker[job.tool] += 1
                by_category[f.category] += 1
    return {
        "night": name,
        "started": results.started,
        "seconds": round(_seconds(results), 3),
        "jobs": len(results.jobs),
        # judge.outcome's decision, as the headline's: a project's job has no verdict, its bugs fail it.
        "failed": sum(1 for j in results.jobs if outcome(j).name in ("fail", "errors", "crashed")),
        "blind": sum(1 for j in results.jobs if j.verdict == "blind"),
        "incomplete": sum(1 for j in results.jobs if _not_fully_checked(j)),
        "findings": sum(by_checker.values()),
        "findings_by_checker": dict(sorted(by_checker.items())),
        "findings_by_category": dict(sorted(by_category.items())),
        "regressed": regressed,
        "interrupted": bool(interrupted or results.interrupted),
    }


def _read_history(history: Path) -> dict[str, dict]:
    try:
        data = validate.loads_json((history / "history.json").read_text(encoding="utf-8"))
        if data.get("schema") == HISTORY_SCHEMA:
            return {e["night"]: e for e in data.get("nights", ()) if _valid_entry(e)}
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        pass  # missing or damaged: rebuilt from the nights' own results
    return {}


def _valid_entry(entry: Any) -> bool:
    """A history.json entry as summarize() writes it (history.json is the folder's, and may have
    been edited): a wrong one is left out and made again from its night's own results, never
    drawn (a string for seconds once failed every later night)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("night"), str):
        return False
    counts = ("jobs", "failed", "blind", "incomplete", "findings")
    if any(isinstance(entry.get(k), bool) or not isinstance(entry.get(k), int) or entry[k] < 0 for k in counts):
        return False
    seconds = entry.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < 1e9:
        return False
    for k in ("findings_by_checker", "findings_by_category"):
        value = entry.get(k)
        if not isinstance(value, dict) or not all(isinstance(a, str) and type(b) is int and b >= 0
                                                  for a, b in value.items()):
            return False
    return (isinstance(entry.get("started"), str) and entry.get("regressed") in (True, False, None)
            and isinstance(entry.get("interrupted"), bool))


def _read_comparison(night_dir: Path) -> Comparison | None:
    try:
        return Comparison.from_dict(validate.loads_json((night_dir / "comparison.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _entries(history: Path) -> list[dict]:
    """Summary entries for the nights on disk, oldest first: from history.json where it has
    them, else read once from the night's results (and then kept in history.json)."""
    known = _read_history(history)
    entries = []
    for name in nights(history):
        entry = known.get(name)
        if entry is None:
            try:
                results = load_results(history / name)
            except LeakHarnessError:
                continue
            comparison = _read_comparison(history / name)
            # A night that never wrote its comparison did not end (killed, Ctrl-C): interrupted.
            entry = summarize(name, results, comparison.regressed if comparison else None,
                              interrupted=comparison is None)
        entries.append(entry)
    return entries


# --- the index page ---------------------------------------------------------------------------

def render_index(history: Path) -> Path:
    """Write history.json and index.html for the nights on disk (atomically, in that order)."""
    from .report.history import write_index

    history = Path(history)
    entries = _entries(history)
    write_atomic(history / "history.json",
                 json.dumps({"schema": HISTORY_SCHEMA, "nights": entries}, indent=1))
    ended = [e for e in entries if not e.get("interrupted")]
    latest = _read_comparison(history / ended[-1]["night"]) if ended else None
    return write_index(history, entries, latest)


# --- a night ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NightlyOutcome:
    night_dir: Path
    index_path: Path
    comparison: Comparison
    regressed: bool  # exit 1: a regression, or failures on the first night (comparison.failed)
    removed: tuple[str, ...] = field(default=())  # night folders --keep deleted


def _new_night_dir(history: Path, now: dt.datetime) -> Path:
    now = now.astimezone(dt.timezone.utc) if now.tzinfo else now
    for fmt in (NIGHT_FORMAT, NIGHT_FORMAT_SECONDS):
        candidate = history / now.strftime(fmt)
        if not candidate.exists():
            return candidate
    raise LeakHarnessError(f"{candidate}: a night of that name is already in the history; wait a second")


def prune(history: Path, keep: int, current: str | None = None) -> tuple[str, ...]:
    """Delete the oldest nights beyond `keep` (never `current`): only folders named as a night
    that hold a results.json and leakharness's mark, never anything else in the folder."""
    names = [n for n in nights(history) if (history / n / MARKER).is_file()]
    removable = [n for n in names if n != current]
    excess = len(names) - keep
    removed = []
    for name in removable[:max(0, excess)]:
        shutil.rmtree(history / name)
        removed.append(name)
    return tuple(removed)


def _check_keep(keep: int | None) -> int | None:
    if keep is None:
        return None
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise LeakHarnessError(f"--keep {keep}: the number of nights to keep must be a whole number, 1 or more")
    return keep


def nightly(session, history: Path, keep: int | None = None, patterns=None,
            checkers: Sequence[str] | None = None, now: dt.datetime | None = None,
            run: Callable[[Any], Results] | None = None) -> NightlyOutcome:
    """Run the catalog (or `run(session)`, a session whose --out is tonight's folder: a project's
    targets) into history/<UTC date-time>, compare with the previous night, write
    comparison.json, prune to `keep` nights, and rebuild history/index.html."""
    keep = _check_keep(keep)
    history = Path(history).expanduser()
    if not history.is_absolute():
        history = Path(session.cwd) / history
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        with locked(history) as history:
            before = nights(history)
            night_dir = _new_night_dir(history, now)
            # The last night that ended (it wrote comparison.json); one killed half-way would
            # make every job it never ran look new tonight.
            ended = [n for n in before if (history / n / "comparison.json").is_file()]
            # An interrupted night is no night to compare with: with none ended, tonight is the first.
            previous_name = (ended or [None])[-1]
            previous = None
            if previous_name:
                try:
                    previous = load_results(history / previous_name)
                except LeakHarnessError:
                    previous, previous_name = None, None  # a damaged night compares as no night
            tonight = copy.copy(session)
            tonight.out = night_dir
            if run is not None:
                results = run(tonight)
            else:
                if patterns is None:
                    patterns = tonight.catalog()
                results = tonight.run_catalog(patterns, checkers, html=True)
            comparison = compare(night_dir.name, results, previous, previous_name)
            write_atomic(night_dir / "comparison.json", json.dumps(comparison.to_dict(), indent=1))
            # The summary is kept now so that a later index never needs this night's results again.
            entries = _read_history(history)
            entries[night_dir.name] = summarize(night_dir.name, results, comparison.regressed)
            kept = [entries[n] for n in nights(history) if n in entries]
            write_atomic(history / "history.json", json.dumps({"schema": HISTORY_SCHEMA, "nights": kept}, indent=1))
            removed = prune(history, keep, night_dir.name) if keep else ()
            index = render_index(history)
    except OSError as exc:
        raise LeakHarnessError(os_problem(exc, history)) from None
    return NightlyOutcome(night_dir, index, comparison, comparison.failed, removed)
